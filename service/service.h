/* SPDX-License-Identifier: MIT */
/*
 * service: the management service (Hyper-V's VMMS).  It owns the objects
 * (VMs, disks), validates every change to them, keeps each one as a JSON
 * file under the state directory, and supervises one `fsvisor vm` worker
 * per running VM.  It never runs guest code.
 *
 * Its interface is the object tree that fsapi/ serves as a filesystem:
 * paths relative to the top of the tree ("vms/web1/state"), each a
 * directory, a file or a symbolic link.  Files hold one value each;
 * reading and writing them goes through an open handle.  All functions
 * are thread-safe and return 0 (or a count) or a negative errno; a
 * rejected write also leaves a sentence in the object's "error" file and
 * in the service log.
 */
#ifndef FSVISOR_SERVICE_H
#define FSVISOR_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct service;

struct service_opts {
	const char *state_dir;		/* created if missing */
	const char *mount_point;	/* absolute; symlink targets may use it */
	const char *worker_exe;		/* the fsvisor binary that runs VMs */
	/* Owner of the tree, and whether the group may use it too. */
	uid_t uid;
	gid_t gid;
	bool group_access;
};

/*
 * Take the state directory (one service per directory: -EBUSY if another
 * holds it), load every object and re-adopt the VM workers still running.
 */
int service_open(const struct service_opts *opts, struct service **out,
		 char *err, size_t errlen);
/* Stop serving.  Running VMs go on running, to be adopted next time. */
void service_close(struct service *s);

/* ---- change notification ------------------------------------------------ */

enum svc_change {
	SVC_CHANGED,	/* the file's value or attributes changed */
	SVC_ADDED,	/* a directory entry appeared at @path */
	SVC_REMOVED,	/* the entry at @path went away */
};

/*
 * Called (from any thread, with service locks held: it must only queue
 * the news) when something changes other than by the caller's own
 * request, and also for those, so caches can be dropped.
 */
typedef void (*svc_notify_fn)(void *ctx, enum svc_change what, const char *path);
void service_set_notify(struct service *s, svc_notify_fn fn, void *ctx);

/* ---- the tree ----------------------------------------------------------- */

/*
 * Who asks: the credentials FUSE reports for a request.  Requests that
 * read or write host files on the caller's behalf check them the way
 * the kernel would check the caller opening the file itself.
 */
struct svc_caller {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	const gid_t *groups;	/* supplementary groups */
	int ngroups;		/* -1: not known (then only uid/gid count) */
};

enum svc_kind {
	SVC_DIR,
	SVC_FILE,
	SVC_LINK,
};

struct svc_stat {
	enum svc_kind kind;
	mode_t mode;		/* permission bits */
	uid_t uid;
	gid_t gid;
	uint64_t size;
	unsigned int nlink;
	struct timespec mtime;
	/*
	 * The size or value changes without a notification (console, status,
	 * stats): attributes must not be cached.
	 */
	bool volatile_attrs;
	/*
	 * A value that changes only through the service, which notifies
	 * every change: the page cache may serve reads of it.
	 */
	bool cacheable;
};

int service_stat(struct service *s, const char *path, struct svc_stat *st);

/* Called for each entry of a directory, in order; non-zero stops. */
typedef int (*svc_dirent_fn)(void *ctx, const char *name,
			     const struct svc_stat *st);
int service_readdir(struct service *s, const char *path, svc_dirent_fn fn,
		    void *ctx);

int service_readlink(struct service *s, const char *path, char *buf,
		     size_t len);
int service_mkdir(struct service *s, const char *path);
int service_rmdir(struct service *s, const char *path);
/* Attach a disk to a VM slot: service_symlink(s, "../../../disks/d1", "vms/web1/disks/0"). */
int service_symlink(struct service *s, const char *target, const char *path);
int service_unlink(struct service *s, const char *path,
		   const struct svc_caller *who);
/*
 * A new file at @path (open with O_CREAT of a name that is not there):
 * where a directory holds a collection of files (kvp/host/KEY) it makes
 * the entry, empty; anywhere else it is refused (-EPERM) as
 * service_refuse() does.
 */
int service_create(struct service *s, const char *path, const struct svc_caller *who);
/* Truncation: to 0 is accepted (and ignored) so that `>` works. */
int service_truncate(struct service *s, const char *path, uint64_t size);
/*
 * chmod/chown: the service decides modes and owners, so only a change to
 * what they already are succeeds (what `cp -p` and `install` do); @mode
 * or @uid/@gid of -1 are left out of the comparison.
 */
int service_setattr(struct service *s, const char *path, mode_t mode,
		    uid_t uid, gid_t gid);
/*
 * A request the tree never allows (rename, link, creating a file):
 * recorded in the error file of the object @path belongs to, and in the
 * log.  Returns -EPERM.
 */
int service_refuse(struct service *s, const char *path, const char *what);
/* Statistics for statfs(): of the state directory's file system. */
int service_statfs(struct service *s, uint64_t *blocks, uint64_t *bfree,
		   uint64_t *bavail, uint32_t *bsize, uint64_t *files);

/* ---- open files ------------------------------------------------------- */

struct svc_file;

/*
 * @flags: O_RDONLY, O_WRONLY or O_RDWR (others are ignored).  A disk's
 * "data" of an adopted file opens only for a caller (other than the
 * mount's owner) who could open that file with the same access mode.
 */
int service_open_file(struct service *s, const char *path, int flags,
		      const struct svc_caller *who, struct svc_file **out);
void service_close_file(struct svc_file *f);
/* fsync(): a disk's data is flushed to its file. */
int service_flush_file(struct svc_file *f);
/* The path the handle was opened with (for matching notifications). */
const char *service_file_path(const struct svc_file *f);
/*
 * Reads of this handle may be served from the page cache (a stable value
 * opened read-only): every change is notified as SVC_CHANGED.
 */
bool service_file_cacheable(const struct svc_file *f);

/*
 * Read at @off.  Values are read from a snapshot taken by a read at
 * offset 0 (or the first read), so a file read in pieces is consistent.
 * Logs ("console", "events") are read at positions in everything they
 * ever held.  Returns the count (0 at the end) or a negative errno.
 */
ssize_t service_read(struct svc_file *f, uint64_t off, void *buf, size_t len);

/*
 * Asked while an operation waits (start, shutdown): true to give up
 * with -EINTR.  The operation itself goes on.
 */
typedef bool (*svc_interrupted_fn)(void *ctx);

/*
 * Write one value (at offset 0: a value is never written in pieces) or
 * one command (at any offset) for @who.  Control writes return when the
 * operation is done, or failed.
 */
ssize_t service_write(struct svc_file *f, uint64_t off, const void *buf,
		      size_t len, const struct svc_caller *who,
		      svc_interrupted_fn interrupted, void *ctx);

/*
 * poll(): POLLIN | POLLPRI when the value differs from what this handle
 * last read (a handle that read nothing yet is ready); logs ("events")
 * when they hold more than this handle has read.  0 otherwise: wait for
 * an SVC_CHANGED.
 */
unsigned int service_poll(struct svc_file *f);

/* ---- the monitor -------------------------------------------------------- */

/*
 * `fsvisor vm monitor -- fsvisor vm run ARGS...`: what the service starts
 * for each VM, in the VM's directory; it runs the worker (this program,
 * with those arguments) and records how it ended.
 */
int service_monitor(int argc, char **argv);

#endif /* FSVISOR_SERVICE_H */
