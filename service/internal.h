/* SPDX-License-Identifier: MIT */
/*
 * service internals: the objects, their files, and what the parts of the
 * service share.  One mutex (service.lock) guards every object; long
 * operations (starting a VM, waiting for a shutdown, creating a disk) mark
 * the object busy and drop the lock while they wait.
 */
#ifndef FSVISOR_SERVICE_INTERNAL_H
#define FSVISOR_SERVICE_INTERNAL_H

#include <pthread.h>
#include <stdio.h>

#include "service/service.h"
#include "service/tree.h"
#include "util/util.h"
#include "vhdx/vhdx.h"

#define SLOTS		16		/* disk slots per VM */
#define VALUE_MAX	4095		/* longest value a write may carry ... */
#define VALUE_MAX_TEXT	"4095"		/* ... as messages quote it */
#define ERROR_MAX	1024
#define EVENT_RING	1024		/* events kept for readers */
#define NICS_MAX	8		/* NICs per VM */
#define IFNAME_MAX	15		/* a Linux interface name */

/*
 * What the supervisor's epoll entries point at: a VM's subscribed
 * connection, or a switch worker's pidfd.
 */
enum watch_kind {
	WATCH_VM,
	WATCH_SWITCH,
};

/* ---- objects ------------------------------------------------------------ */

enum vm_state {
	VMS_OFF,
	VMS_STARTING,
	VMS_RUNNING,
	VMS_PAUSED,
	VMS_STOPPING,
	VMS_CRASHED,
	VMS_SAVING,		/* the worker writes the saved state, then ends */
	VMS_SAVED,		/* no worker; "saved/" holds the state to start from */
};

struct nic_obj;
struct ic_vm;
struct agent_hub;

struct vm_obj {
	char name[NAME_MAX_LEN + 1];
	enum watch_kind watch_kind;
	char *dir;			/* <state>/vms/NAME */
	int dirfd;
	unsigned int refs;		/* the list's, and each user's */
	bool deleted;

	/* The definition (vm.json). */
	unsigned int cpus;
	uint64_t memory;
	char *kernel;			/* "" when unset */
	char *initrd;
	char *cmdline;
	char *slot[SLOTS];		/* disk names, NULL when empty */
	struct nic_obj *nics[NICS_MAX];	/* sorted by name: the worker's NIC order */
	size_t nnics;
	/* Integration services: settings, data exchange, the agent (integration.h). */
	struct ic_vm *ic;
	char error[ERROR_MAX];

	/* The run. */
	enum vm_state state;
	bool busy;			/* start/stop/... in progress */
	unsigned int resets_seen;	/* guest resets the worker reported */
	unsigned int resets_mark;	/* ... when a reboot began */
	/* "stop", "kill", "shutdown": an exit now is "off", not "crashed". */
	const char *end_requested;
	pid_t pid;
	pid_t monitor_pid;		/* the worker's parent, which records its end */
	int watch_fd;			/* subscribed to the worker's events */
	char ended[512];		/* how the last run ended */
	struct timespec mtime;
	time_t run_started;		/* when the running worker started; 0 when none */
	uint64_t event_bytes;		/* the size of its "events" */
	struct timespec events_time;	/* ... and when it last grew */
	/* A process refused removing the VM's files (rm -r): see service_unlink. */
	pid_t removing_pid;
	struct timespec removing_since;	/* CLOCK_MONOTONIC */
	pthread_cond_t changed;		/* state changes, busy cleared */
};

struct disk_obj {
	char name[NAME_MAX_LEN + 1];
	char *dir;			/* <state>/disks/NAME */
	unsigned int refs;
	bool deleted;

	enum vdisk_type type;
	enum vdisk_format format;
	char *file;			/* NULL until created or adopted */
	bool adopted;			/* not ours: never deleted */
	uint64_t size;
	char error[ERROR_MAX];
	char progress[128];
	bool busy;			/* being created, resized or checked */
	struct timespec mtime;

	/* The "data" file: one open disk shared by its open handles. */
	struct vdisk *data;
	unsigned int data_users;
	bool data_rw;
	pthread_mutex_t data_lock;	/* serialises I/O on @data */
};

enum nic_vlan_mode {
	NIC_VLAN_UNTAGGED,
	NIC_VLAN_ACCESS,
	NIC_VLAN_TRUNK,
};

enum nic_mirror {
	NIC_MIRROR_NONE,
	NIC_MIRROR_SOURCE,
	NIC_MIRROR_DESTINATION,
};

/* A VM's network adapter (vms/VM/nics/NAME/), part of the VM's definition. */
struct nic_obj {
	char name[NAME_MAX_LEN + 1];
	struct vm_obj *vm;
	uint8_t mac[6];
	char *sw;			/* switch name, "" when not connected */
	enum nic_vlan_mode vlan_mode;
	uint16_t vlan_id;		/* access VLAN, or a trunk's native VLAN */
	char *trunk;			/* a trunk's allowed list, "1-100,200" */
	bool mac_spoofing;
	bool dhcp_guard;
	bool router_guard;
	enum nic_mirror mirror;
	uint64_t bandwidth_max;		/* bits per second, 0 = unlimited */

	/* The run: the switch this NIC's port is on now, "" when none. */
	char port_on[NAME_MAX_LEN + 1];
	/*
	 * Operations that may drop the service lock while they use this NIC
	 * (file accesses, connecting): rmdir waits for none (EBUSY).  A write
	 * in progress: another write to the same NIC is EBUSY.
	 */
	unsigned int users;
	bool changing;
};

enum switch_type {
	SWITCH_PRIVATE,
	SWITCH_INTERNAL,
	SWITCH_EXTERNAL,
};

/* A virtual switch (switches/NAME/), run by its own worker while it exists. */
struct switch_obj {
	char name[NAME_MAX_LEN + 1];
	enum watch_kind watch_kind;
	char *dir;			/* <state>/switches/NAME */
	int dirfd;
	unsigned int refs;
	bool deleted;

	enum switch_type type;
	char uplink[IFNAME_MAX + 1];	/* "" when none */
	char error[ERROR_MAX];
	struct timespec mtime;

	/* The worker. */
	pid_t pid;
	int pidfd;			/* watched by the supervisor */
	uint64_t watch_id;		/* how the supervisor's epoll names it */
	bool busy;			/* being (re)started */
	struct timespec started;	/* CLOCK_MONOTONIC */
	char ended[256];		/* how its last worker ended */
};

struct event {
	uint64_t seq;
	char *line;			/* "vm web1 state running\n" */
	size_t len;
	uint64_t off;			/* where it starts in the stream of all events */
	uint64_t vm_off;		/* ... and in its VM's (for_vm) */
	bool for_vm;
	char kind[8];			/* "vm", "disk" */
	char name[NAME_MAX_LEN + 1];
};

struct service {
	pthread_mutex_t lock;
	char *state_dir;
	char *mount_point;
	char *worker_exe;
	uid_t uid;
	gid_t gid;
	bool group_access;
	int lock_fd;
	struct timespec started;

	struct vm_obj **vms;		/* sorted by name */
	size_t nvms, vms_cap;
	struct disk_obj **disks;	/* sorted by name */
	size_t ndisks, disks_cap;
	struct switch_obj **switches;	/* sorted by name */
	size_t nswitches, switches_cap;

	svc_notify_fn notify;
	void *notify_ctx;

	struct event events[EVENT_RING];
	uint64_t event_seq;		/* of the next event */
	uint64_t events_bytes;		/* the size of "events" */
	struct timespec events_time;	/* ... and when it last grew */

	/* The connections to the VMs' guest agents (agent.c). */
	struct agent_hub *hub;

	/* The supervisor: watches running workers. */
	pthread_t supervisor;
	bool supervisor_started;
	int epfd;
	int wake_fd;
	bool stopping;
};

/*
 * Who writes, and how to tell that they gave up: what a store's @ctx
 * points to (its @intr takes it as it is).
 */
struct svc_call {
	svc_interrupted_fn intr;
	void *ctx;
	const struct svc_caller *who;
};

/*
 * Host paths (a kernel, a disk file to adopt) are read with the service's
 * rights, so only the mount's owner may name them: with --allow-other,
 * anyone else could otherwise read any file through a VM.
 */
bool svc_caller_is_owner(struct service *s, void *ctx);
/* The caller behind a store's @ctx. */
const struct svc_caller *svc_caller_of(void *ctx);
/*
 * Could @who open host file @path with access mode @acc (O_RDONLY,
 * O_WRONLY, O_RDWR) themselves?  0 when yes (or @who is the mount's
 * owner), else a negative errno (-EACCES) (access.c).
 */
int svc_caller_may_open(struct service *s, const struct svc_caller *who,
			const char *path, int acc);

/*
 * What a switch's port directory (switches/NAME/ports/PORT/) shows: a VM's
 * NIC, or the switch's host or uplink port.
 */
struct port_view {
	struct switch_obj *sw;
	char name[2 * NAME_MAX_LEN + 2];	/* "VM:NIC", "host", "uplink" */
	struct nic_obj *nic;			/* NULL for host and uplink */
	struct vm_obj *vm;			/* the NIC's VM */
};

/* ---- shared helpers (service.c) ------------------------------------------ */

void svc_lock(struct service *s);
void svc_unlock(struct service *s);
void svc_notify(struct service *s, enum svc_change what, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/*
 * Refuse a write: record "what: why" as the object's error (and in the
 * log), notify readers of "error", and return @err (a negative errno).
 */
int svc_fail(struct service *s, const char *kind, const char *name,
	     char *error, int err, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
#define vm_fail(s, vm, err, ...) \
	svc_fail(s, "vm", (vm)->name, (vm)->error, err, __VA_ARGS__)
#define disk_fail(s, d, err, ...) \
	svc_fail(s, "disk", (d)->name, (d)->error, err, __VA_ARGS__)
#define switch_fail(s, sw, err, ...) \
	svc_fail(s, "switch", (sw)->name, (sw)->error, err, __VA_ARGS__)
/* A NIC's errors are its VM's: "nics/eth0/vlan: ..." in vms/VM/error. */
#define nic_fail(s, nic, err, fmt, ...) \
	svc_fail(s, "vm", (nic)->vm->name, (nic)->vm->error, err, "nics/%s/" fmt, \
		 (nic)->name, ##__VA_ARGS__)
void svc_touch(struct timespec *t);
char *svc_strdup(const char *str);
/* "<state>/sub/name" */
char *svc_path(struct service *s, const char *sub, const char *name);
/*
 * A small file (@path relative to @dirfd, or AT_FDCWD) into @buf,
 * NUL-terminated: its length, or -1 when it is missing or empty.
 */
ssize_t svc_read_text(int dirfd, const char *path, char *buf, size_t len);
/* The fields of /proc/PID/stat after the command name ("S 1 ..."), or NULL. */
const char *svc_proc_stat(pid_t pid, char *buf, size_t len);
/* A number in a worker's reply (0 when absent). */
static inline long long svc_json_int(json_t *obj, const char *key)
{
	return (long long)json_integer_value(json_object_get(obj, key));
}
/* Remove an object's directory and everything in it (links not followed). */
void svc_remove_dir(const char *path);
/* Call @load for each validly named entry of <state>/@sub. */
int svc_load_dir(struct service *s, const char *sub,
		 int (*load)(struct service *s, const char *name));
/* The last non-empty lines of a text file, for error messages. */
void svc_tail_text(int dirfd, const char *file, char *buf, size_t len);

/* Sorted lists of objects (each starts with its name). */
int svc_list_insert(void ***arr, size_t *n, size_t *cap, void *obj);
void svc_list_remove(void **arr, size_t *n, const char *name);
struct vm_obj *vm_find(struct service *s, const char *name);
struct disk_obj *disk_find(struct service *s, const char *name);
struct switch_obj *switch_find(struct service *s, const char *name);
void vm_put(struct vm_obj *vm);
void disk_put(struct disk_obj *d);
void switch_put(struct switch_obj *sw);
/* Which VM and slot use disk @name, or NULL. */
struct vm_obj *disk_user(struct service *s, const char *name, int *slot);

/* ---- events (events.c) ----------------------------------------------- */

/* Record an event ("<kind> <name> <text>") and wake its readers. */
void svc_event(struct service *s, const char *kind, const char *name,
	       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/*
 * Copy the log from position *pos into @buf.  A position before the
 * oldest line kept moves forward to it (*pos says where the bytes
 * start).  Returns the count: 0 at the end.
 */
ssize_t svc_events_read(struct service *s, const char *vm, uint64_t *pos,
			char *buf, size_t len);
void svc_events_free(struct service *s);
/* The files: every event (the top "events"), a VM's (its object). */
extern const struct log_ops events_log;
extern const struct log_ops vm_events_log;

/* ---- VMs (vm.c) ----------------------------------------------------- */

const char *vm_state_name(enum vm_state st);
int vm_define(struct service *s, const char *name);	/* mkdir */
int vm_delete(struct service *s, struct vm_obj *vm);	/* rmdir */
int vm_load_all(struct service *s);
int vm_save(struct service *s, struct vm_obj *vm);
int vm_attach(struct service *s, struct vm_obj *vm, unsigned int slot,
	      const char *target);
int vm_detach(struct service *s, struct vm_obj *vm, unsigned int slot);
bool vm_is_active(const struct vm_obj *vm);
/*
 * Why the VM's definition (@what: "cpus", "disks/0") cannot change now,
 * in @buf, or NULL when it can: a worker runs it, or a saved state was
 * made with it.  @rule says when it can ("disks change only while it is off").
 */
const char *vm_change_refused(const struct vm_obj *vm, const char *rule, char *buf,
			      size_t len);
void vm_free(struct vm_obj *vm);
/* The worker's configuration for this VM, or NULL with a reason. */
json_t *vm_worker_config(struct service *s, struct vm_obj *vm, int *err,
			 char *why, size_t whylen);

/* ---- NICs (nic.c) ------------------------------------------------------ */

struct nic_obj *nic_find(struct vm_obj *vm, const char *name);
int nic_define(struct service *s, struct vm_obj *vm, const char *name);	/* mkdir */
int nic_delete(struct service *s, struct nic_obj *nic);			/* rmdir */
void nic_free(struct nic_obj *nic);
/* The NIC's part of vm.json, and back (bad fields get defaults, logged). */
json_t *nic_to_json(const struct nic_obj *nic);
int nic_from_json(struct service *s, struct vm_obj *vm, const char *name,
		  json_t *obj);
/* "52:54:00:12:34:56" */
void nic_mac_format(const uint8_t mac[6], char *buf, size_t len);
/* "untagged", "access 10", "trunk 1-100,200 native 0" */
void nic_vlan_format(const struct nic_obj *nic, char *buf, size_t len);
/* The port policy the switch worker is given (docs/vswitch.md). */
json_t *nic_policy_json(const struct nic_obj *nic);
/* Which NICs name switch @name, for refusing its deletion (count). */
size_t nics_on_switch(struct service *s, const char *name, char *list, size_t len);
/*
 * Give a running VM's NIC its port on its switch (a socketpair: one end
 * to the switch worker, the other to the VM worker), or take it away.
 * Under the lock, which they drop while they talk to the workers.
 */
int nic_connect(struct service *s, struct nic_obj *nic);
void nic_disconnect(struct service *s, struct nic_obj *nic);
/*
 * Connect every NIC of a VM that has just started, or was adopted
 * (@adopted: ports the switch still has are taken as they are).
 */
void vm_connect_nics(struct service *s, struct vm_obj *vm, bool adopted);
/* Ports of switch @sw that a worker restart lost: connect them again. */
void switch_reconnect_nics(struct service *s, struct switch_obj *sw);

/* ---- switches (switch.c) ------------------------------------------------- */

const char *switch_type_name(enum switch_type t);
int switch_define(struct service *s, const char *name);	/* mkdir */
int switch_delete(struct service *s, struct switch_obj *sw);	/* rmdir */
int switch_load_all(struct service *s);
int switch_save(struct switch_obj *sw);
void switch_free(struct switch_obj *sw);
/* The host's TAP device of switch @sw ("" for a private switch). */
void switch_host_if(const struct switch_obj *sw, char *buf, size_t len);
/* Start (or adopt) every switch's worker; at service start. */
void switches_start(struct service *s);
/* The supervisor saw the worker's pidfd: it ended.  Under the lock. */
void switch_worker_gone(struct service *s, struct switch_obj *sw);
/*
 * A request to the switch's worker (lock dropped while waiting); the
 * reply in *reply when wanted.  -ENOTCONN when no worker runs.
 */
int switch_call(struct service *s, struct switch_obj *sw, json_t *req,
		const int *fds, size_t nfds, json_t **reply);
/* The worker's status reply, or NULL (lock dropped; the caller holds @sw). */
json_t *switch_status(struct service *s, struct switch_obj *sw);
/* Does the worker have a port called @port ("VM/NIC")? */
bool switch_has_port(struct service *s, struct switch_obj *sw, const char *port);
/*
 * Port @port's counters, "PREFIXin_packets: N" ... and "drops_WHY: N"
 * lines; nothing when the worker does not answer or has no such port.
 */
void switch_port_counters(struct service *s, struct switch_obj *sw, const char *port,
			  const char *prefix, FILE *out);
/* Which ports a switch shows: its host/uplink ports and connected NICs. */
int switch_ports(struct service *s, struct switch_obj *sw,
		 int (*fn)(struct port_view *p, void *arg), void *arg);
int switch_port_find(struct service *s, struct switch_obj *sw, const char *name,
		     struct port_view *p);

/* ---- workers (supervise.c) --------------------------------------------- */

/*
 * One request on a fresh connection to the worker socket "ctl.sock" in
 * directory @dirfd, with file descriptors; no locks held.
 */
int worker_request(int dirfd, json_t *req, const int *fds, size_t nfds,
		   json_t **reply, int timeout_ms);
/*
 * Start `fsvisor vm monitor -- fsvisor ARGV...` in directory @dirfd, in a
 * session of its own, stdout/stderr to "worker.err" there.
 */
int worker_spawn(struct service *s, int dirfd, char *const argv[]);
pid_t worker_read_pid(int dirfd);
bool worker_read_exit(int dirfd, char *kind, size_t klen, int *code);
bool worker_wait_exit(int dirfd, pid_t monitor, int ms, char *kind, size_t klen,
		      int *code);
/* The supervisor watches @fd for the object behind @kind. */
int supervisor_watch(struct service *s, int fd, enum watch_kind *kind);
/*
 * ... or for the switch whose watch_id is @id: objects other threads may
 * unwatch and free are named by id, so a stale event finds nothing.
 */
int supervisor_watch_switch(struct service *s, int fd, uint64_t id);
void supervisor_unwatch(struct service *s, int fd);

/* ---- supervision (supervise.c) ------------------------------------------ */

int supervisor_start(struct service *s);
void supervisor_stop(struct service *s);
/* Re-adopt a worker left running by an earlier service; under the lock. */
void vm_adopt(struct service *s, struct vm_obj *vm);
/* "start", "stop", ...: under the lock, which they may drop while waiting. */
int vm_control(struct service *s, struct vm_obj *vm, const char *cmd,
	       svc_interrupted_fn intr, void *ctx);
void vm_set_state(struct service *s, struct vm_obj *vm, enum vm_state st);
/* The worker's status reply, or NULL if it is not running (lock dropped). */
json_t *vm_worker_status(struct service *s, struct vm_obj *vm);
/* Wait (the lock held, dropped meanwhile) until no worker runs it; false on timeout. */
bool vm_wait_ended(struct service *s, struct vm_obj *vm, int ms);
/* Type console input; -EBUSY when the VM is not running. */
int vm_console_input(struct service *s, struct vm_obj *vm, const void *buf,
		     size_t len);

/* ---- saved states (saved.c) ---------------------------------------------- */

/* Save: capture into "saved", the worker ends; under the lock. */
int vm_save_run(struct service *s, struct vm_obj *vm);
/* Delete Saved State: the VM is off. */
int vm_discard(struct service *s, struct vm_obj *vm);
/* Does "saved" read back (ss_open)?  0, -ENOENT, or -EINVAL with why. */
int vm_saved_check(const struct vm_obj *vm, char *why, size_t len);
void vm_saved_remove(const struct vm_obj *vm);
/*
 * A worker that was saving ended (@ended, how): true if it left a saved
 * state; if not, the unfinished one is removed and @ended says so.
 */
bool vm_saved_settle(struct vm_obj *vm, char *ended, size_t len);

/* ---- disks (disk.c) --------------------------------------------------- */

int disk_define(struct service *s, const char *name);	/* mkdir */
int disk_delete(struct service *s, struct disk_obj *d);	/* rmdir */
int disk_load_all(struct service *s);
int disk_save(struct disk_obj *d);
void disk_free(struct disk_obj *d);
const char *disk_format_name(enum vdisk_format f);

#endif /* FSVISOR_SERVICE_INTERNAL_H */
