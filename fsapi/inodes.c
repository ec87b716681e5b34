// SPDX-License-Identifier: MIT
/*
 * The inode table: the kernel names files by number, the service by
 * path.  A path gets a number the first time the kernel looks it up and
 * keeps it while the kernel holds a reference (its lookup count); the
 * root is number 1 for ever.
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
			unlink_node(t, n);
			free(n->path);
			free(n);
		}
	}
	pthread_mutex_unlock(&t->lock);
}
