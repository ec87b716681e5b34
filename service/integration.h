/* SPDX-License-Identifier: MIT */
/*
 * Integration services inside the service: a VM's settings and data
 * exchange pools (integration.c, kept in vm.json) and the connection to
 * its guest agent (agent.c).  Private to service/; everything here is
 * guarded by the service lock.
 */
#ifndef FSVISOR_SERVICE_INTEGRATION_H
#define FSVISOR_SERVICE_INTEGRATION_H

#include <time.h>

#include "guest/proto/icproto.h"
#include "service/internal.h"

/* The services, as Hyper-V's Enable-/Disable-VMIntegrationService name them. */
enum ic_service {
	ICS_HEARTBEAT,
	ICS_SHUTDOWN,
	ICS_TIME_SYNC,
	ICS_KVP,
	ICS_BACKUP,
	ICS_GUEST_SERVICES,
	ICS_COUNT,
};

#define KVP_POOL_ITEMS	1024		/* items in one pool */
#define KVP_NAME_MAX	255		/* keys that are file names */

struct kvp_pool;

struct kvp_item {
	char *key;
	char *value;
	struct kvp_pool *pool;
};

/* One of a VM's three pools: host items, the guest's, its intrinsic items. */
struct kvp_pool {
	struct vm_obj *vm;
	unsigned int which;		/* IC_POOL_* */
	struct kvp_item **items;	/* sorted by key */
	size_t n, cap;
};

enum backup_state {
	BACKUP_THAWED,
	BACKUP_FROZEN,
};

struct agent_conn;
struct ic_waiter;

struct ic_vm {
	/* The definition (vm.json). */
	bool enabled[ICS_COUNT];
	uint32_t cid;			/* the guest's vsock address, unique here */
	struct kvp_pool pools[IC_POOL_MAX + 1];

	/* The run (agent.c). */
	int listen_fd;			/* vsock_18755 in the VM's directory */
	uint64_t listen_id;		/* how the hub's epoll names it */
	struct agent_conn *conn;	/* the agent's connection, or NULL */
	unsigned int conn_gen;		/* bumped with each connection */
	bool running;			/* a worker runs the VM */
	time_t run_since;		/* realtime: when it started */
	time_t paused_since;		/* ... when it was paused, or 0 */
	/* Heartbeat: monotonic ms of the last echo (0: none this run). */
	uint64_t hb_last;
	time_t hb_last_real;		/* ... and in realtime */
	time_t hb_ok_since;		/* realtime: when it last became ok */
	time_t hb_setting_since;	/* realtime: when the setting last changed */
	uint64_t hb_seq;
	uint64_t hb_next, ts_next;	/* monotonic ms of the next heartbeat and sample */
	/* Time synchronisation: the last offset measured (guest - host). */
	bool ts_valid;
	int64_t ts_offset_ns;
	time_t ts_when;
	/* What the agent said in its hello. */
	uint32_t agent_version, agent_caps;
	char agent_name[IC_AGENT_MAX + 1];
};

extern const char *const ic_service_names[ICS_COUNT];

/* ---- integration.c -------------------------------------------------------- */

struct ic_vm *ic_alloc(struct vm_obj *vm);
void ic_free(struct ic_vm *ic);
/* The VM's part of vm.json, and back; a missing or taken CID gets a new one. */
void ic_to_json(const struct ic_vm *ic, json_t *doc);
void ic_from_json(struct service *s, struct vm_obj *vm, json_t *doc);
/* A CID no other VM of this service has (3 and up). */
uint32_t ic_cid_new(struct service *s, const struct vm_obj *except);
/* The bit of each service that is on (IC_CAP_*). */
uint32_t ic_enabled_caps(const struct ic_vm *ic);

struct kvp_item *kvp_find(struct kvp_pool *p, const char *key, size_t keylen);
/*
 * Set (or add) an item, or delete it; with notifications of the entry
 * (added, removed) and, for the host pool, of the VM.  -ENOSPC: the pool
 * is full.
 */
int kvp_set(struct service *s, struct kvp_pool *p, const char *key, size_t keylen,
	    const char *value, size_t vlen);
void kvp_delete(struct service *s, struct kvp_pool *p, const char *key, size_t keylen);
void kvp_clear(struct service *s, struct kvp_pool *p);
/* Why @key (@len bytes) cannot be a file name here, or NULL. */
const char *kvp_key_problem(const char *key, size_t len);

/* ---- agent.c ---------------------------------------------------------------- */

int agent_hub_start(struct service *s);
void agent_hub_stop(struct service *s);
/*
 * The VM's state changed from @old (under the lock): listen for its
 * agent from the start on, note pauses, step the guest's clock after a
 * resume, let it all go when the run ends.
 */
void agent_vm_state(struct service *s, struct vm_obj *vm, enum vm_state old);
/* The guest reset (rebooted): its agent starts over, contact is made again. */
void agent_guest_reset(struct service *s, struct vm_obj *vm);
/* Listen before the worker starts, so an agent that is quick finds us. */
void agent_vm_prepare(struct service *s, struct vm_obj *vm);
/* A host item changed (@value NULL: deleted): tell the agent. */
void agent_kvp_host(struct service *s, struct vm_obj *vm, const char *key, const char *value);
/* A service was switched on or off. */
void agent_service_changed(struct service *s, struct vm_obj *vm, enum ic_service svc);

/* "ok", "lost", ... and since when. */
const char *agent_heartbeat(struct vm_obj *vm, time_t *since);
bool agent_heartbeat_ok(struct vm_obj *vm);
/*
 * Requests that wait for the agent's answer: the lock is dropped while
 * they wait (the caller holds @vm).  0, or a negative errno with the
 * reason in @why.
 */
int agent_shutdown(struct service *s, struct vm_obj *vm, bool reboot, const char *reason,
		   char *why, size_t whylen);
int agent_freeze(struct service *s, struct vm_obj *vm, uint32_t timeout_ms, uint32_t *count,
		 char *why, size_t whylen);
int agent_thaw(struct service *s, struct vm_obj *vm, uint32_t *count, char *why,
	       size_t whylen);
int agent_backup_status(struct service *s, struct vm_obj *vm, uint32_t *state,
			uint32_t *remain_ms);
/* Copy-VMFile: the host file open on @fd to @dest in the guest. */
int agent_copy(struct service *s, struct vm_obj *vm, int fd, const char *dest,
	       uint32_t flags, char *why, size_t whylen);

#endif /* FSVISOR_SERVICE_INTEGRATION_H */
