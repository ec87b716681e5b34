/* SPDX-License-Identifier: MIT */
/*
 * The switch worker's private types: the port table, the transports
 * (VM seqpacket sockets, the host's TAP, the uplink's AF_PACKET socket),
 * the batched datapath and the control socket.  See docs/vswitch.md.
 */
#ifndef FSVISOR_VSWITCH_WORKER_H
#define FSVISOR_VSWITCH_WORKER_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "util/util.h"
#include "vswitch/vswitch.h"

/* Frames taken from one port per pass, and sent to one port per flush. */
#define WK_BATCH 64
/* Passes over one port before the others get their turn. */
#define WK_DRAIN_PASSES 8
/* Room before each received frame, so the uplink can put back a VLAN tag. */
#define WK_HEADROOM 64
/* One receive slot: headroom, the largest frame, one byte to see longer ones. */
#define WK_SLOT (WK_HEADROOM + VSWITCH_FRAME_MAX + 1 + 63)
#define WK_MAX_CLIENTS 32
/* "VM/NIC": two names and the slash. */
#define WK_PORT_NAME_MAX (2 * NAME_MAX_LEN + 2)

enum wk_kind {
	WK_VM,		/* a VM's NIC: a SOCK_SEQPACKET socket */
	WK_HOST,	/* the host: our TAP device */
	WK_UPLINK,	/* the uplink NIC: an AF_PACKET socket */
};

/* What a port sends out in the current pass (iovecs into received frames). */
struct wk_out {
	struct iovec iov[3];
	uint8_t tag[4];
	uint32_t len;
};

/* Frames a rate-limited port sent that wait for tokens. */
struct wk_held {
	uint8_t *arena;			/* the frames, back to back */
	uint32_t off[WK_BATCH];
	uint32_t len[WK_BATCH];
	unsigned int n, next;
	uint64_t until_ns;		/* when the next one may go */
};

struct wk_port {
	bool used;
	bool dead;			/* hung up or failed: removed after the pass */
	bool hangup;			/* the peer closed: zero-length reads are EOF */
	bool polling;			/* EPOLLIN wanted */
	bool dirty;			/* on the flush list */
	bool busy;			/* on the busy list: frames left after its turn */
	bool armed;			/* its multishot poll is in the ring */
	uint32_t gen;			/* tells its poll's completions from stale ones */
	enum wk_kind kind;
	uint32_t id;			/* the engine's id, also our index */
	int fd;
	char name[WK_PORT_NAME_MAX];
	struct vswitch_port_config cfg;
	unsigned int nout;
	struct mmsghdr *msgs;		/* WK_BATCH, for sendmmsg */
	struct wk_out *out;		/* WK_BATCH */
	struct wk_held held;
	uint64_t tx_errors_logged;
};

struct wk_client {
	int fd;
};

struct worker {
	const struct vswitch_worker_opts *opts;
	struct vswitch *sw;
	enum vswitch_type type;
	char host_if[32];
	char uplink[32];
	char uplink_error[256];		/* why the uplink went away, if it did */
	char host_error[256];
	struct io_uring ring;		/* the loop: a multishot poll per port, one for epfd */
	bool ring_ready;
	int epfd;			/* the control plane: control socket, signals, timers */
	bool epfd_armed;
	bool control_pending;		/* epfd may have ready events */
	uint32_t next_gen;		/* for the ports' polls, never reused soon */
	int listen_fd;
	int sig_fd;
	int age_fd;			/* periodic: vswitch_age() */
	int hold_fd;			/* the earliest held frame may go */
	int host_port;			/* port id of the TAP, or -1 */
	int uplink_port;		/* port id of the uplink, or -1 */
	uint64_t started_ns;
	bool done;
	bool reap;			/* some port is dead: remove it after the pass */
	int exit_status;
	struct wk_port ports[VSWITCH_MAX_PORTS];
	uint32_t flush_list[VSWITCH_MAX_PORTS];
	unsigned int nflush;
	uint32_t busy_list[VSWITCH_MAX_PORTS];
	unsigned int nbusy;
	/* The receive batch, shared by every port (one port is read at a time). */
	uint8_t *rx_area;
	struct mmsghdr rx_msgs[WK_BATCH];
	struct iovec rx_iov[WK_BATCH];
	uint8_t rx_ctl[WK_BATCH][64];
	struct sockaddr_storage rx_addr[WK_BATCH];
	struct vswitch_verdict verdict;
	struct wk_client clients[WK_MAX_CLIENTS];
};

/* epoll tags (control plane): a kind in the high 32 bits, an index in the low ones. */
enum wk_tag {
	WK_TAG_LISTEN = 1,
	WK_TAG_SIGNAL,
	WK_TAG_AGE,
	WK_TAG_HOLD,
	WK_TAG_CLIENT,
	WK_TAG_PORT,		/* the host's TAP and the uplink */
};
#define WK_TAG(kind, idx) (((uint64_t)(kind) << 32) | (uint32_t)(idx))

uint64_t wk_now_ns(void);
int wk_epoll_set(struct worker *w, int fd, uint64_t tag, uint32_t events, int op);

/* ring.c: the loop; ports are watched by multishot polls in an io_uring */
int wk_ring_init(struct worker *w, char *err, size_t errlen);
void wk_ring_free(struct worker *w);
int wk_port_watch(struct worker *w, struct wk_port *p);
void wk_port_unwatch(struct worker *w, struct wk_port *p);
void wk_port_busy(struct worker *w, struct wk_port *p);
int wk_ring_run(struct worker *w, bool wait);
void wk_ring_busy_turn(struct worker *w);

/* ports.c: the port table */
int wk_port_open(struct worker *w, enum wk_kind kind, const char *name, int fd,
		 const struct vswitch_port_config *cfg, char *err, size_t errlen);
int wk_port_find(struct worker *w, const char *name);
void wk_port_close(struct worker *w, uint32_t id);
void wk_port_poll(struct worker *w, struct wk_port *p, bool on);
void wk_ports_reap(struct worker *w);
const char *wk_kind_name(enum wk_kind kind);

/* datapath.c: batched receive, forwarding and sending */
int wk_datapath_init(struct worker *w);
void wk_datapath_free(struct worker *w);
void wk_port_readable(struct worker *w, struct wk_port *p, uint32_t events);
bool wk_port_drain(struct worker *w, struct wk_port *p);
void wk_held_timer(struct worker *w);
void wk_held_drop(struct worker *w, struct wk_port *p);

/* tap.c: the host's TAP device */
int wk_tap_open(const char *ifname, char *err, size_t errlen);
bool wk_if_exists(const char *ifname);
bool wk_if_is_tun(const char *ifname);
int wk_if_set_up(const char *ifname);

/* uplink.c: the uplink NIC through AF_PACKET */
int wk_uplink_open(const char *ifname, char *err, size_t errlen);
bool wk_uplink_fixup(struct msghdr *mh, uint8_t **frame, uint32_t *len);

/* policy.c: port policies as JSON */
void wk_policy_default(struct vswitch_port_config *cfg);
int wk_policy_parse(const json_t *j, struct vswitch_port_config *cfg,
		    char *err, size_t errlen);
json_t *wk_policy_json(const struct vswitch_port_config *cfg, json_t *obj);
void wk_mac_format(const uint8_t mac[6], char out[18]);

/* control.c: the control socket */
int wk_control_open(struct worker *w, char *err, size_t errlen);
void wk_control_accept(struct worker *w);
void wk_control_message(struct worker *w, unsigned int i);
void wk_control_close(struct worker *w);

/* worker.c: changing the switch's type */
int wk_configure(struct worker *w, enum vswitch_type type, const char *host_if,
		 const char *uplink, char *err, size_t errlen);

#endif /* FSVISOR_VSWITCH_WORKER_H */
