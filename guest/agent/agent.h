/* SPDX-License-Identifier: MIT */
/*
 * fsvisor-agent: the integration services' agent for Linux guests
 * (docs/integration.md).  One process, one thread, one poll() loop; built
 * statically so that it runs on any glibc Linux without packages.
 */
#ifndef FSVISOR_AGENT_H
#define FSVISOR_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "guest/proto/icproto.h"

#define AGENT_VERSION		"0.1.0"
#define AGENT_STATE_DIR		"/var/lib/fsvisor-agent"
#define AGENT_MAX_FREEZE	32		/* --freeze-mount paths */
#define AGENT_OUT_MAX		(4 * 1024 * 1024)

struct agent_opts {
	const char *socket;		/* a Unix socket instead of vsock (tests) */
	unsigned int cid, port;
	const char *state_dir;
	const char *freeze[AGENT_MAX_FREEZE];	/* only these; none: every mount */
	unsigned int nfreeze;
	bool fake_clock;
	int64_t fake_offset_ns;
	const char *poweroff_cmd, *reboot_cmd;
	bool verbose;
};

extern struct agent_opts opts;

/* ---- main.c: the connection ------------------------------------------------ */

/* Queue a frame for the host (nothing waits); false when it cannot go. */
bool agent_send(struct ic_writer *w);
/* Answer @req with @status (and @why, when it is a refusal). */
void agent_reply(const struct ic_hdr *req, uint32_t status, const char *why);
bool agent_connected(void);
/* Log for people: stderr (the journal), held back while file systems are frozen. */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same, and into the kernel's log. */
void agent_log_kmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- kvp.c: data exchange ---------------------------------------------------- */

int kvp_init(void);
/* The inotify descriptor that says the guest changed its items. */
int kvp_guest_fd(void);
/* The guest's items changed: tell the host. */
void kvp_guest_changed(void);
/* After the hello: every guest item and intrinsic item, from the start. */
void kvp_resync(void);
/* A host item set, deleted, or the host pool cleared. */
void kvp_host_request(const struct ic_msg *m);
/* Every minute: intrinsic items that changed (addresses, the name). */
void kvp_intrinsic_refresh(void);
/* After a thaw: the host items that came while frozen. */
void kvp_apply_deferred(void);
/* Write the guest item @key (the "kvp set" command), or delete it (@value NULL). */
int kvp_guest_store(const char *key, const char *value);

/* ---- intrinsic.c: what the guest is ------------------------------------------ */

#define INTRINSIC_ITEMS 8
extern const char *const intrinsic_keys[INTRINSIC_ITEMS];
/* Item @i's value into @buf (at most IC_VALUE_MAX bytes). */
void intrinsic_value(unsigned int i, char *buf, size_t len);

/* ---- freeze.c: backup ---------------------------------------------------------- */

bool freeze_active(void);
void freeze_request(const struct ic_msg *m);
/* A descriptor readable when the deadline passed (a timerfd). */
int freeze_timer_fd(void);
void freeze_deadline(void);
/* Thaw everything (at exit). */
void freeze_thaw_all(const char *why);

/* ---- clock.c: the one seam to the clock ----------------------------------------- */

int64_t clock_now_ns(void);
int clock_step(int64_t delta_ns);
int clock_slew(int64_t delta_ns);
void time_request(const struct ic_msg *m);

/* ---- copy.c: guest services (Copy-VMFile) ------------------------------------------ */

void copy_request(const struct ic_msg *m);
/* The connection ended: half-written files go. */
void copy_abort_all(void);

/* ---- power.c: shutdown and reboot ------------------------------------------------ */

void shutdown_request(const struct ic_msg *m);
/* A shutdown asked for and answered: run it once the answer went out. */
void power_run_pending(void);

#endif /* FSVISOR_AGENT_H */
