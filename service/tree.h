/* SPDX-License-Identifier: MIT */
/*
 * The object tree as data.  Each kind of directory (the root, a VM, a
 * VM's nics/, a NIC ...) is declared once, next to its object's code, as
 * a struct tree_kind: its files (a table of struct attr), its
 * subdirectories and links (struct tree_child: a fixed name, or a
 * collection with lookup and list functions), and its hooks (rmdir,
 * where refusals are recorded, how its object is held).  tree.c walks
 * these declarations to resolve paths, stat, list, make and remove, and
 * has no branch for any particular kind: adding a kind of directory is a
 * new declaration and one line in its parent's list of children
 * (docs/ARCHITECTURE.md shows how).  Private to service/.
 */
#ifndef FSVISOR_SERVICE_TREE_H
#define FSVISOR_SERVICE_TREE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include "service/service.h"

struct service;
struct tree_node;

/* ---- files -------------------------------------------------------------- */

enum attr_flags {
	A_READ = 1 << 0,
	A_WRITE = 1 << 1,
	/*
	 * The value changes without the service saying so (counters, an
	 * uptime, what a worker reports): never cached.  Every other value
	 * changes only through the service, which notifies each change, so
	 * the kernel's page cache may serve it.
	 */
	A_VOLATILE = 1 << 2,
	A_CTL = 1 << 3,			/* commands, not a value */
};

/*
 * A log (console, events): read at positions in everything it ever held,
 * of which the newest part is kept; under the service lock.
 */
struct log_ops {
	/* Bytes it ever held, and when it last grew. */
	uint64_t (*size)(struct service *s, void *obj, struct timespec *mtime);
	/* Bytes from *pos on, which moves up to the oldest kept; 0 at the end. */
	ssize_t (*fetch)(struct service *s, void *obj, uint64_t *pos, void *buf,
			 size_t len);
	/* What a write sends (console input); NULL: writes are refused. */
	int (*input)(struct service *s, void *obj, const void *buf, size_t len);
};

/*
 * Raw contents (a disk's data): opened and closed under the lock, read
 * and written without it (the open keeps the object).
 */
struct data_ops {
	int (*open)(struct service *s, void *obj, int acc, const struct svc_caller *who);
	void (*close)(struct service *s, void *obj);
	uint64_t (*size)(void *obj);
	ssize_t (*read)(void *obj, uint64_t off, void *buf, size_t len);
	ssize_t (*write)(void *obj, uint64_t off, const void *buf, size_t len);
	int (*flush)(void *obj);
	/* A truncation to @size (under the lock): 0 to accept it, as a no-op. */
	int (*truncate)(struct service *s, void *obj, uint64_t size);
};

/*
 * A file of a directory.  A value file has @show (prints the value,
 * newline-terminated, under the lock) and, if writable, @store (checks
 * and applies one written value under the lock; control writes may drop
 * it while they wait; problems go to svc_fail()).  A log has @log, a
 * data file @data.  @obj is the object of the directory the file is in.
 */
struct attr {
	const char *name;
	unsigned int flags;
	int (*show)(struct service *s, void *obj, FILE *out);
	int (*store)(struct service *s, void *obj, const char *value,
		     svc_interrupted_fn intr, void *ctx);
	const struct log_ops *log;
	const struct data_ops *data;
};

/* ---- directories ------------------------------------------------------- */

/* Called for each entry of a collection, with its object; non-zero stops. */
typedef int (*tree_each_fn)(void *ctx, const char *name, void *obj);

enum tree_child_type {
	TREE_DIR,	/* one subdirectory called @name */
	TREE_SET,	/* a directory per object of a collection (vms/NAME) */
	TREE_LINKS,	/* a symbolic link per entry of a collection (disks/N) */
	TREE_FILES,	/* a file per entry of a collection (kvp/host/KEY) */
};

struct tree_child {
	enum tree_child_type type;
	const struct tree_kind *kind;	/* TREE_DIR, TREE_SET */
	/* TREE_DIR: its name, and its object from its parent's (NULL: the same). */
	const char *name;
	void *(*object)(struct service *s, void *parent);
	/*
	 * TREE_SET, TREE_FILES: the entry @name's object, or NULL; @local
	 * (LEVEL_LOCAL bytes, aligned) may hold it when it is a view made on
	 * demand.
	 */
	void *(*lookup)(struct service *s, void *parent, const char *name, void *local);
	/* TREE_SET, TREE_LINKS, TREE_FILES: each entry, in the order listings show. */
	int (*list)(struct service *s, void *parent, tree_each_fn fn, void *ctx);
	/*
	 * TREE_FILES: what each entry is (its show and store get the entry's
	 * object), and creating one (open with O_CREAT of a new name); its
	 * removal is @unlink.
	 */
	const struct attr *file;
	int (*create)(struct service *s, void *parent, const char *name,
		      const struct svc_caller *who);
	/* TREE_SET: how many (for a directory's link count). */
	size_t (*count)(struct service *s, void *parent);
	/* TREE_SET: mkdir of a new entry. */
	int (*mkdir)(struct service *s, void *parent, const char *name);
	/* TREE_LINKS: the target of link @name, or -ENOENT. */
	int (*readlink)(struct service *s, void *parent, const char *name, char *buf,
			size_t len);
	int (*symlink)(struct service *s, void *parent, const char *name,
		       const char *target);
	/* TREE_LINKS, TREE_FILES */
	int (*unlink)(struct service *s, void *parent, const char *name,
		      const struct svc_caller *who);
};

struct tree_kind {
	const char *name;			/* "vm", "nic": for messages */
	const struct attr *attrs;
	size_t nattrs;
	const struct tree_child *children;
	size_t nchildren;
	/*
	 * Keep the object alive while the lock is dropped (a file's show or
	 * store may wait for a worker, and the object be removed meanwhile).
	 */
	void (*hold)(void *obj);
	void (*put)(void *obj);
	/* rmdir; NULL: EPERM.  The object itself is not held for it. */
	int (*rmdir)(struct service *s, void *obj);
	/*
	 * Record a refusal of something in this directory or below in the
	 * object's error (the message starts with the path below it: "nics/
	 * eth0/vlan: ..."); NULL: the directory above records it.
	 */
	int (*fail)(struct service *s, void *obj, int err, const char *msg);
	/* The time shown for it and what is below it; NULL: its parent's. */
	struct timespec (*mtime)(void *obj);
	/* One write at a time under it (-EBUSY otherwise); with @end_write. */
	int (*begin_write)(struct service *s, void *obj, const char *file);
	void (*end_write)(void *obj);
	/*
	 * A process was refused removing a file here (rm -r): the hook may
	 * refuse that process's removal of links below for a while.
	 */
	void (*removal_refused)(void *obj, const struct svc_caller *who);
};

/* The kinds at the top of the tree (each declared with its object). */
extern const struct tree_kind root_kind;	/* host.c */
extern const struct tree_kind host_kind;	/* host.c */
extern const struct tree_kind vms_kind;		/* vm.c */
extern const struct tree_kind disks_kind;	/* disk.c */
extern const struct tree_kind switches_kind;	/* switch.c */
extern const struct tree_kind nics_kind;	/* nic.c: a VM's nics/ */
extern const struct tree_kind integration_kind;	/* integration.c: a VM's integration/ */

/* ---- resolved paths ----------------------------------------------------- */

#define TREE_DEPTH	8
#define LEVEL_LOCAL	256

struct tree_level {
	const struct tree_kind *kind;
	void *obj;
	const char *name;		/* its path component ("" for the root) */
	_Alignas(16) unsigned char local[LEVEL_LOCAL];
};

/*
 * A path resolved to its directories, and at the end a file (@attr) or a
 * link (@links, @link_name) or nothing (a directory).
 */
struct tree_node {
	struct tree_level lv[TREE_DEPTH];
	int depth;			/* directories in lv[] (the root is lv[0]) */
	const struct attr *attr;
	const struct tree_child *links;
	const char *link_name;
	/* A file of a TREE_FILES collection: where it came from, its name, its object. */
	const struct tree_child *files;
	const char *file_name;
	void *file_obj;
	_Alignas(16) unsigned char file_local[LEVEL_LOCAL];
	char path[512];			/* the components point into it */
	bool held;
};

int tree_resolve(struct service *s, const char *path, struct tree_node *n);
/* Hold every object along @n (or undo it). */
void tree_hold(struct tree_node *n);
void tree_release(struct tree_node *n);
/*
 * The object of the directory @n ends in (or holds its file); for a file
 * of a TREE_FILES collection, the file's own.
 */
static inline void *tree_obj(const struct tree_node *n)
{
	return n->files && n->attr ? n->file_obj : n->lv[n->depth - 1].obj;
}
/* The name @n's file has in its directory. */
static inline const char *tree_file_name(const struct tree_node *n)
{
	return n->files ? n->file_name : n->attr->name;
}
/*
 * A refusal on @n: "FILE: OP: WHY" (@op may be NULL) recorded where its
 * nearest directory with a fail hook records them, and in the log.
 */
int tree_refuse(struct service *s, struct tree_node *n, int err, const char *op,
		const char *why);
/* A value that changes only through the service: the page cache may hold it. */
static inline bool tree_cacheable(const struct attr *a)
{
	return a->show && !a->log && !a->data && !(a->flags & (A_VOLATILE | A_CTL));
}
/* stat of @n; under the lock. */
void tree_stat(struct service *s, struct tree_node *n, struct svc_stat *st);
/* A value file's text (a new buffer); under the lock. */
int tree_value(struct service *s, const struct attr *a, void *obj, char **text,
	       size_t *len);

#endif /* FSVISOR_SERVICE_TREE_H */
