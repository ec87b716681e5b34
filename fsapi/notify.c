// SPDX-License-Identifier: MIT
/*
 * The notifier: the service reports changes (with its lock held, so it
 * only queues them), and this thread tells the kernel.  Invalidations
 * are written to /dev/fuse, which may wait for kernel locks that a
 * request in progress holds; doing it here, never inside a request
 * handler, keeps that from deadlocking.  It also wakes armed poll()s and
 * answers "events" reads that were waiting.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
	if (fs->qtail)
		fs->qtail->next = n;
	else
		fs->qhead = n;
	fs->qtail = n;
	pthread_cond_signal(&fs->qcond);
	pthread_mutex_unlock(&fs->qlock);
}

/* ---- waiting reads ---------------------------------------------------- */

/* Try a parked read; true (and answered) if it had something. */
static bool try_pending(struct pending *p)
{
	char *buf = malloc(p->size);
	ssize_t n;

	if (!buf) {
		fuse_reply_err(p->req, ENOMEM);
		return true;
	}
	n = service_read(p->h->file, 0, buf, p->size);
	if (n == -EAGAIN) {
		free(buf);
		return false;
	}
	if (n < 0)
		fuse_reply_err(p->req, (int)-n);
	else
		fuse_reply_buf(p->req, buf, (size_t)n);
	free(buf);
	return true;
}

/* Take @p off the list if it is still there; true if we did. */
static bool pending_take(struct fsapi *fs, struct pending *p)
{
	for (struct pending **pp = &fs->pending; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			return true;
		}
	}
	return false;
}

/*
 * Ctrl-C on a blocked `cat events`.  The request may have been answered
 * meanwhile: find it by the request, never trust @data.
 */
static void pending_interrupted(fuse_req_t req, void *data)
{
	struct fsapi *fs = data;
	struct pending *found = NULL;

	pthread_mutex_lock(&fs->lock);
	for (struct pending **pp = &fs->pending; *pp; pp = &(*pp)->next) {
		if ((*pp)->req == req) {
			found = *pp;
			*pp = found->next;
			break;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	if (found) {
		fuse_reply_err(req, EINTR);
		free(found);
	}
}

void pending_add(struct fsapi *fs, fuse_req_t req, struct handle *h, size_t size)
{
	struct pending *p = calloc(1, sizeof(*p));
	bool done = false;

	if (!p) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	p->req = req;
	p->h = h;
	p->size = size;
	/* Registered before the request can be answered by anyone else. */
	fuse_req_interrupt_func(req, pending_interrupted, fs);
	pthread_mutex_lock(&fs->lock);
	p->next = fs->pending;
	fs->pending = p;
	/*
	 * An event may have come, or Ctrl-C, between the first try and now:
	 * look again, with the list locked so the notifier cannot race us.
	 */
	if (fuse_req_interrupted(req)) {
		if (pending_take(fs, p)) {
			fuse_reply_err(req, EINTR);
			done = true;
		}
	} else if (try_pending(p)) {
		pending_take(fs, p);
		done = true;
	}
	pthread_mutex_unlock(&fs->lock);
	if (done)
		free(p);
}

static void wake_pending(struct fsapi *fs, const char *path)
{
	struct pending **pp, *done = NULL;

	pthread_mutex_lock(&fs->lock);
	pp = &fs->pending;
	while (*pp) {
		struct pending *p = *pp;

		if (strcmp(service_file_path(p->h->file), path) == 0 && try_pending(p)) {
			*pp = p->next;
			p->next = done;
			done = p;
			continue;
		}
		pp = &p->next;
	}
	pthread_mutex_unlock(&fs->lock);
	while (done) {
		struct pending *next = done->next;

		free(done);
		done = next;
	}
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

static void handle_note(struct fsapi *fs, struct note *n)
{
	char parent[512];
	fuse_ino_t ino;

	if (n->what == SVC_CHANGED) {
		ino = inode_find(&fs->inodes, n->path);
		if (ino) {
			fuse_lowlevel_notify_inval_inode(fs->se, ino, 0, 0);
			wake_polls(fs, ino);
		}
		wake_pending(fs, n->path);
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
		handle_note(fs, n);
		free(n->path);
		free(n);
		pthread_mutex_lock(&fs->qlock);
	}
	pthread_mutex_unlock(&fs->qlock);
	return NULL;
}

int notifier_start(struct fsapi *fs)
{
	int ret;

	pthread_mutex_init(&fs->qlock, NULL);
	pthread_cond_init(&fs->qcond, NULL);
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
}
