/* SPDX-License-Identifier: MIT */
/*
 * fsapi internals: the inode table (paths the kernel knows, by number),
 * open handles, and the notifier that turns service changes into cache
 * invalidations, poll wake-ups and answers to waiting "events" reads.
 */
#ifndef FSVISOR_FSAPI_INTERNAL_H
#define FSVISOR_FSAPI_INTERNAL_H

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdint.h>

#include "fsapi/fsapi.h"
#include "service/service.h"

/* How long the kernel may keep names and attributes that we invalidate. */
#define ENTRY_TTL 30.0
#define ATTR_TTL 30.0

struct inode {
	fuse_ino_t ino;
	uint64_t nlookup;
	char *path;			/* "" for the root, "vms/web1/state" */
	struct inode *ino_next;
	struct inode *path_next;
	/* The tree the kernel knows: to invalidate everything below a directory. */
	struct inode *parent;
	struct inode *child;		/* first child */
	struct inode *sibling_prev, *sibling_next;
};

#define INODE_BUCKETS 65536

struct inode_table {
	pthread_mutex_t lock;
	fuse_ino_t next_ino;
	struct inode *by_ino[INODE_BUCKETS];
	struct inode *by_path[INODE_BUCKETS];
};

/* An open file. */
struct handle {
	struct svc_file *file;
	fuse_ino_t ino;
	struct fuse_pollhandle *ph;	/* armed poll() */
	bool sync;			/* opened O_SYNC or O_DSYNC */
	struct handle *next, *prev;	/* all open handles */
};

struct note {
	enum svc_change what;
	char *path;
	uint64_t seq;
	struct note *next;
};

struct fsapi {
	struct service *svc;
	struct fuse_session *se;
	char *mount_point;
	bool mounted;
	struct inode_table inodes;

	pthread_mutex_t lock;		/* handles */
	struct handle handles;		/* list head */

	/* The notifier thread and its queue. */
	pthread_t notifier;
	bool notifier_started;
	pthread_mutex_t qlock;
	pthread_cond_t qcond;
	struct note *qhead, *qtail;
	bool quit;
	/* Notes queued and done: a write waits until what it changed is told. */
	uint64_t queued, done;
	pthread_cond_t done_cond;
};

/* inodes.c */
void inodes_init(struct inode_table *t);
void inodes_free(struct inode_table *t);
/* The inode for @path, created if new; adds @lookups to its count. */
struct inode *inode_get(struct inode_table *t, const char *path, uint64_t lookups);
/* The path of @ino (a copy to free), or NULL. */
char *inode_path(struct inode_table *t, fuse_ino_t ino);
/* The number of @path if the kernel knows it, or 0. */
fuse_ino_t inode_find(struct inode_table *t, const char *path);
void inode_forget(struct inode_table *t, fuse_ino_t ino, uint64_t n);
/*
 * The numbers of @path and of everything the kernel knows below it (at
 * most @max), for invalidating a directory's whole subtree; the count.
 */
size_t inode_subtree(struct inode_table *t, const char *path, fuse_ino_t *out, size_t max);

/* notify.c */
int notifier_start(struct fsapi *fs);
void notifier_stop(struct fsapi *fs);
void notifier_queue(void *ctx, enum svc_change what, const char *path);
/*
 * Wait until every change queued so far has been told to the kernel, so
 * that a write returns only when no reader can see an old value.
 */
void notifier_barrier(struct fsapi *fs);

/* ops.c */
extern const struct fuse_lowlevel_ops fsapi_ops;

#endif /* FSVISOR_FSAPI_INTERNAL_H */
