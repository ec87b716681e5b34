// SPDX-License-Identifier: MIT
/*
 * The notifier: the service reports changes (with its lock held, so it
 * only queues them), and this thread tells the kernel.  Invalidations
 * are written to /dev/fuse, which may wait for kernel locks that a
 * request in progress holds; doing it here, never inside a request
 * handler, keeps that from deadlocking.  It also wakes armed poll()s.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsapi/internal.h"
#include "util/util.h"

void notifier_queue(void *ctx, enum svc_change what, const char *path)
{
	struct fsapi *fs = ctx;
	struct note *n = malloc(sizeof(*n));

	if (!n)
		return;		/* a cache stays stale until its TTL: survivable */
	n->what = what;
	n->path = strdup(path);
	n->next = NULL;
	if (!n->path) {
		free(n);
		return;
	}
	pthread_mutex_lock(&fs->qlock);
	n->seq = ++fs->queued;
	if (fs->qtail)
		fs->qtail->next = n;
	else
		fs->qhead = n;
	fs->qtail = n;
	pthread_cond_signal(&fs->qcond);
	pthread_mutex_unlock(&fs->qlock);
}

static void wake_polls(struct fsapi *fs, fuse_ino_t ino)
{
	pthread_mutex_lock(&fs->lock);
	for (struct handle *h = fs->handles.next; h != &fs->handles; h = h->next) {
		if (h->ino == ino && h->ph) {
			fuse_lowlevel_notify_poll(h->ph);
			fuse_pollhandle_destroy(h->ph);
			h->ph = NULL;
		}
	}
	pthread_mutex_unlock(&fs->lock);
}

/* ---- the thread ------------------------------------------------------ */

static void parent_of(const char *path, char *buf, size_t len)
{
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 0;

	if (n >= len)
		n = len - 1;
	memcpy(buf, path, n);
	buf[n] = '\0';
}

void notifier_barrier(struct fsapi *fs)
{
	uint64_t target;

	pthread_mutex_lock(&fs->qlock);
	target = fs->queued;
	while (fs->done < target && !fs->quit)
		pthread_cond_wait(&fs->done_cond, &fs->qlock);
	pthread_mutex_unlock(&fs->qlock);
}

/* Enough for any one object's directory. */
#define SUBTREE_MAX 4096

static void handle_note(struct fsapi *fs, struct note *n)
{
	static fuse_ino_t inos[SUBTREE_MAX];	/* this thread's alone */
	char parent[512];
	fuse_ino_t ino;

	if (n->what == SVC_CHANGED) {
		/*
		 * A file, or an object's directory: then everything below it
		 * (the page cache of its values, their sizes) is stale.
		 */
		size_t count = inode_subtree(&fs->inodes, n->path, inos, SUBTREE_MAX);

		for (size_t i = 0; i < count; i++) {
			fuse_lowlevel_notify_inval_inode(fs->se, inos[i], 0, 0);
			wake_polls(fs, inos[i]);
		}
		return;
	}
	/*
	 * Entries come and go through our own mkdir, rmdir, symlink and
	 * unlink, which the kernel has seen: only the parent's attributes
	 * (link count, time) are stale.
	 */
	parent_of(n->path, parent, sizeof(parent));
	ino = inode_find(&fs->inodes, parent);
	if (ino)
		fuse_lowlevel_notify_inval_inode(fs->se, ino, -1, 0);
}

static void *notifier_main(void *arg)
{
	/*
	 * Tests slow the notifier down (FSVISOR_TEST_NOTIFY_DELAY_US) to show
	 * that writes wait for it: without that, a reader would see old values.
	 */
	const char *delay = getenv("FSVISOR_TEST_NOTIFY_DELAY_US");
	useconds_t delay_us = delay ? (useconds_t)atoi(delay) : 0;
	struct fsapi *fs = arg;

	pthread_mutex_lock(&fs->qlock);
	for (;;) {
		struct note *n;

		while (!fs->qhead && !fs->quit)
			pthread_cond_wait(&fs->qcond, &fs->qlock);
		if (fs->quit)
			break;
		n = fs->qhead;
		fs->qhead = n->next;
		if (!fs->qhead)
			fs->qtail = NULL;
		pthread_mutex_unlock(&fs->qlock);
		if (delay_us)
			usleep(delay_us);
		handle_note(fs, n);
		pthread_mutex_lock(&fs->qlock);
		fs->done = n->seq;
		pthread_cond_broadcast(&fs->done_cond);
		free(n->path);
		free(n);
	}
	pthread_mutex_unlock(&fs->qlock);
	return NULL;
}

int notifier_start(struct fsapi *fs)
{
	int ret;

	pthread_mutex_init(&fs->qlock, NULL);
	pthread_cond_init(&fs->qcond, NULL);
	pthread_cond_init(&fs->done_cond, NULL);
	ret = pthread_create(&fs->notifier, NULL, notifier_main, fs);
	if (ret)
		return -ret;
	fs->notifier_started = true;
	return 0;
}

void notifier_stop(struct fsapi *fs)
{
	if (!fs->notifier_started)
		return;
	pthread_mutex_lock(&fs->qlock);
	fs->quit = true;
	pthread_cond_signal(&fs->qcond);
	pthread_cond_broadcast(&fs->done_cond);
	pthread_mutex_unlock(&fs->qlock);
	pthread_join(fs->notifier, NULL);
	fs->notifier_started = false;
	while (fs->qhead) {
		struct note *n = fs->qhead;

		fs->qhead = n->next;
		free(n->path);
		free(n);
	}
	fs->qtail = NULL;
	pthread_mutex_destroy(&fs->qlock);
	pthread_cond_destroy(&fs->qcond);
	pthread_cond_destroy(&fs->done_cond);
}
