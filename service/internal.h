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
#include "util/util.h"
#include "vhdx/vhdx.h"

#define SLOTS		16		/* disk slots per VM */
#define VALUE_MAX	4096		/* longest value a write may carry */
#define ERROR_MAX	1024
#define EVENT_RING	1024		/* events kept for readers */

/* ---- objects ------------------------------------------------------------ */

enum vm_state {
	VMS_OFF,
	VMS_STARTING,
	VMS_RUNNING,
	VMS_PAUSED,
	VMS_STOPPING,
	VMS_CRASHED,
};

struct vm_obj {
	char name[NAME_MAX_LEN + 1];
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
	char error[ERROR_MAX];

	/* The run. */
	enum vm_state state;
	bool busy;			/* start/stop/... in progress */
	/* "stop", "kill", "shutdown": an exit now is "off", not "crashed". */
	const char *end_requested;
	pid_t pid;
	pid_t monitor_pid;		/* the worker's parent, which records its end */
	int watch_fd;			/* subscribed to the worker's events */
	char ended[512];		/* how the last run ended */
	struct timespec mtime;
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

struct event {
	uint64_t seq;
	char *line;			/* "vm web1 state running" */
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

	svc_notify_fn notify;
	void *notify_ctx;

	struct event events[EVENT_RING];
	uint64_t event_seq;		/* of the next event */

	/* The supervisor: watches running workers. */
	pthread_t supervisor;
	bool supervisor_started;
	int epfd;
	int wake_fd;
	bool stopping;
};

/* ---- files of an object ------------------------------------------------ */

enum attr_flags {
	A_READ = 1 << 0,
	A_WRITE = 1 << 1,
	A_VOLATILE = 1 << 2,		/* changes without notification */
	A_EVENTS = 1 << 3,		/* blocking stream of event lines */
	A_CONSOLE = 1 << 4,		/* the console ring */
	A_DATA = 1 << 5,		/* a disk's contents */
	A_CTL = 1 << 6,			/* commands, not a value */
};

/*
 * Who writes, and how to tell that they gave up: what a store's @ctx
 * points to (its @intr takes it as it is).
 */
struct svc_call {
	svc_interrupted_fn intr;
	void *ctx;
	uid_t uid;
};

/*
 * Host paths (a kernel, a disk file to adopt) are read with the service's
 * rights, so only the mount's owner may name them: with --allow-other,
 * anyone else could otherwise read any file through a VM.
 */
bool svc_caller_is_owner(struct service *s, void *ctx);

/*
 * A file of an object: @path is relative to the object ("cpus",
 * "memory/startup").  @show prints the value (newline-terminated) under
 * the lock; @store checks and applies one written value under the lock
 * (control writes may drop it while they wait) and reports problems with
 * svc_fail().
 */
struct attr {
	const char *path;
	unsigned int flags;
	int (*show)(struct service *s, void *obj, FILE *out);
	int (*store)(struct service *s, void *obj, const char *value,
		     svc_interrupted_fn intr, void *ctx);
};

/* Tables: the root (README, version, events), host/, a VM, a disk. */
extern const struct attr root_attrs[];
extern const size_t n_root_attrs;
extern const struct attr host_attrs[];
extern const size_t n_host_attrs;
extern const struct attr vm_attrs[];
extern const size_t n_vm_attrs;
extern const struct attr disk_attrs[];
extern const size_t n_disk_attrs;

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
void svc_touch(struct timespec *t);
char *svc_strdup(const char *str);
/* "<state>/sub/name" */
char *svc_path(struct service *s, const char *sub, const char *name);
/* The last non-empty lines of a text file, for error messages. */
void svc_tail_text(int dirfd, const char *file, char *buf, size_t len);

/* Sorted lists of objects (each starts with its name). */
int svc_list_insert(void ***arr, size_t *n, size_t *cap, void *obj);
void svc_list_remove(void **arr, size_t *n, const char *name);
struct vm_obj *vm_find(struct service *s, const char *name);
struct disk_obj *disk_find(struct service *s, const char *name);
void vm_put(struct vm_obj *vm);
void disk_put(struct disk_obj *d);
/* Which VM and slot use disk @name, or NULL. */
struct vm_obj *disk_user(struct service *s, const char *name, int *slot);

/* ---- events (events.c) ----------------------------------------------- */

/* Record an event ("<kind> <name> <text>") and wake its readers. */
void svc_event(struct service *s, const char *kind, const char *name,
	       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/*
 * Copy event lines after *cursor (for @vm only, or all when NULL) into
 * @buf; advances *cursor.  Returns the count, -EAGAIN when none.
 */
ssize_t svc_events_read(struct service *s, uint64_t *cursor, const char *vm,
			char *buf, size_t len);
bool svc_events_pending(struct service *s, uint64_t cursor, const char *vm);
void svc_events_free(struct service *s);

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
void vm_free(struct vm_obj *vm);
/* The worker's configuration for this VM, or NULL with a reason. */
json_t *vm_worker_config(struct service *s, struct vm_obj *vm, int *err,
			 char *why, size_t whylen);

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
/* Type console input; -EBUSY when the VM is not running. */
int vm_console_input(struct service *s, struct vm_obj *vm, const void *buf,
		     size_t len);

/* ---- disks (disk.c) --------------------------------------------------- */

int disk_define(struct service *s, const char *name);	/* mkdir */
int disk_delete(struct service *s, struct disk_obj *d);	/* rmdir */
int disk_load_all(struct service *s);
int disk_save(struct disk_obj *d);
void disk_free(struct disk_obj *d);
bool disk_in_use(struct service *s, struct disk_obj *d);
const char *disk_format_name(enum vdisk_format f);
/* Open/close the "data" view; I/O on it. */
int disk_data_open(struct service *s, struct disk_obj *d, bool write);
void disk_data_close(struct service *s, struct disk_obj *d);
ssize_t disk_data_read(struct disk_obj *d, uint64_t off, void *buf, size_t len);
ssize_t disk_data_write(struct disk_obj *d, uint64_t off, const void *buf,
			size_t len);
int disk_data_flush(struct disk_obj *d);

#endif /* FSVISOR_SERVICE_INTERNAL_H */
