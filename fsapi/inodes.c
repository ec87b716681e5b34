// SPDX-License-Identifier: MIT
/*
 * The inode table: the kernel names files by number, the service by
 * path.  A path gets a number the first time the kernel looks it up and
 * keeps it while the kernel holds a reference (its lookup count); the
 * root is number 1 for ever.  Each inode also knows its parent and
 * children among those the kernel knows, so that a change to an object
 * can invalidate everything cached below its directory.
 */
#include <stdlib.h>
#include <string.h>

#include "fsapi/internal.h"

static uint32_t hash_path(const char *p)
{
	uint32_t h = 2166136261u;	/* FNV-1a */

	while (*p)
		h = (h ^ (uint8_t)*p++) * 16777619u;
	return h % INODE_BUCKETS;
}

void inodes_init(struct inode_table *t)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
	t->next_ino = FUSE_ROOT_ID;
	/* The root: never forgotten. */
	inode_get(t, "", 1);
}

void inodes_free(struct inode_table *t)
{
	for (size_t i = 0; i < INODE_BUCKETS; i++) {
		struct inode *n = t->by_ino[i];

		while (n) {
			struct inode *next = n->ino_next;

			free(n->path);
			free(n);
			n = next;
		}
	}
	pthread_mutex_destroy(&t->lock);
}

static struct inode *find_path(struct inode_table *t, const char *path)
{
	for (struct inode *n = t->by_path[hash_path(path)]; n; n = n->path_next)
		if (strcmp(n->path, path) == 0)
			return n;
	return NULL;
}

/* Hang @n below its parent, if the kernel knows the parent (it should). */
static void attach(struct inode_table *t, struct inode *n)
{
	const char *slash = strrchr(n->path, '/');
	char parent[4096];
	size_t len = slash ? (size_t)(slash - n->path) : 0;
	struct inode *p;

	if (!n->path[0] || len >= sizeof(parent))
		return;
	memcpy(parent, n->path, len);
	parent[len] = '\0';
	p = find_path(t, parent);
	if (!p)
		return;
	n->parent = p;
	n->sibling_next = p->child;
	if (p->child)
		p->child->sibling_prev = n;
	p->child = n;
}

static void detach(struct inode *n)
{
	if (n->parent) {
		if (n->sibling_prev)
			n->sibling_prev->sibling_next = n->sibling_next;
		else
			n->parent->child = n->sibling_next;
		if (n->sibling_next)
			n->sibling_next->sibling_prev = n->sibling_prev;
	}
	/* Children forgotten later than their parent: orphans, found by path only. */
	for (struct inode *c = n->child; c; c = c->sibling_next)
		c->parent = NULL;
	n->parent = NULL;
	n->child = NULL;
	n->sibling_prev = n->sibling_next = NULL;
}

static struct inode *find_ino(struct inode_table *t, fuse_ino_t ino)
{
	for (struct inode *n = t->by_ino[ino % INODE_BUCKETS]; n; n = n->ino_next)
		if (n->ino == ino)
			return n;
	return NULL;
}

struct inode *inode_get(struct inode_table *t, const char *path, uint64_t lookups)
{
	struct inode *n;

	pthread_mutex_lock(&t->lock);
	n = find_path(t, path);
	if (!n) {
		n = calloc(1, sizeof(*n));
		if (!n || !(n->path = strdup(path))) {
			free(n);
			pthread_mutex_unlock(&t->lock);
			return NULL;
		}
		n->ino = t->next_ino++;
		n->ino_next = t->by_ino[n->ino % INODE_BUCKETS];
		t->by_ino[n->ino % INODE_BUCKETS] = n;
		n->path_next = t->by_path[hash_path(path)];
		t->by_path[hash_path(path)] = n;
		attach(t, n);
	}
	n->nlookup += lookups;
	pthread_mutex_unlock(&t->lock);
	return n;
}

char *inode_path(struct inode_table *t, fuse_ino_t ino)
{
	struct inode *n;
	char *p = NULL;

	pthread_mutex_lock(&t->lock);
	n = find_ino(t, ino);
	if (n)
		p = strdup(n->path);
	pthread_mutex_unlock(&t->lock);
	return p;
}

fuse_ino_t inode_find(struct inode_table *t, const char *path)
{
	struct inode *n;
	fuse_ino_t ino = 0;

	pthread_mutex_lock(&t->lock);
	n = find_path(t, path);
	if (n)
		ino = n->ino;
	pthread_mutex_unlock(&t->lock);
	return ino;
}

static void unlink_node(struct inode_table *t, struct inode *n)
{
	struct inode **pp;

	for (pp = &t->by_ino[n->ino % INODE_BUCKETS]; *pp; pp = &(*pp)->ino_next) {
		if (*pp == n) {
			*pp = n->ino_next;
			break;
		}
	}
	for (pp = &t->by_path[hash_path(n->path)]; *pp; pp = &(*pp)->path_next) {
		if (*pp == n) {
			*pp = n->path_next;
			break;
		}
	}
}

void inode_forget(struct inode_table *t, fuse_ino_t ino, uint64_t count)
{
	struct inode *n;

	pthread_mutex_lock(&t->lock);
	n = find_ino(t, ino);
	if (n && ino != FUSE_ROOT_ID) {
		n->nlookup = count > n->nlookup ? 0 : n->nlookup - count;
		if (!n->nlookup) {
			detach(n);
			unlink_node(t, n);
			free(n->path);
			free(n);
		}
	}
	pthread_mutex_unlock(&t->lock);
}

static size_t collect(const struct inode *n, fuse_ino_t *out, size_t at, size_t max)
{
	if (at < max)
		out[at++] = n->ino;
	for (const struct inode *c = n->child; c && at < max; c = c->sibling_next)
		at = collect(c, out, at, max);
	return at;
}

size_t inode_subtree(struct inode_table *t, const char *path, fuse_ino_t *out, size_t max)
{
	struct inode *n;
	size_t count = 0;

	pthread_mutex_lock(&t->lock);
	n = find_path(t, path);
	if (n)
		count = collect(n, out, 0, max);
	pthread_mutex_unlock(&t->lock);
	return count;
}
