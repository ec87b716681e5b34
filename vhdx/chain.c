// SPDX-License-Identifier: MIT
/*
 * Differencing chains: finding and checking a disk's parent, and reads
 * resolved through the levels.
 *
 * Every level keeps its whole allocation map in memory (a VHDX BAT and
 * sector bitmaps, a VHD BAT and block bitmaps), loaded once at open, so
 * finding which level holds a run costs a few memory look-ups per level
 * and the data comes from one read of the file that holds it.  Parents
 * are opened read-only, share the child's engine, and are never written.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vhdx/internal.h"

enum vmap chain_map(struct vdisk *d, uint64_t off, uint64_t *len,
		    struct vdisk **level, uint64_t *file_off)
{
	for (; d; d = d->parent) {
		enum vmap k = d->ops->map(d, off, len, file_off);

		if (k != VMAP_BELOW) {
			*level = d;
			return k;
		}
	}
	*level = NULL;
	return VMAP_ZERO;
}

int vdisk_chain_read(struct vdisk *top, struct vdisk_req *req)
{
	uint64_t pos = req->offset;
	size_t done = 0;

	while (done < req->len) {
		uint64_t n = req->len - done, file_off = 0;
		struct vdisk *level;
		int ret;

		if (chain_map(top, pos, &n, &level, &file_off) == VMAP_DATA) {
			ret = level->ops->read_file(level, req, done, (size_t)n,
						    file_off);
			if (ret)
				return ret;
		} else {
			iov_memset(req->iov, req->iovcnt, done, 0, (size_t)n);
		}
		pos += n;
		done += (size_t)n;
	}
	return 0;
}

int chain_block_status(struct vdisk *top, uint64_t offset, uint64_t *len,
		       bool *allocated)
{
	uint64_t pos = offset, end = offset + *len, file_off;
	struct vdisk *level;
	bool first = false;

	while (pos < end) {
		uint64_t n = end - pos;
		bool data = chain_map(top, pos, &n, &level, &file_off) == VMAP_DATA;

		if (pos == offset)
			first = data;
		else if (data != first)
			break;
		pos += n;
	}
	*len = pos - offset;
	*allocated = first;
	return 0;
}

/* ---- finding the parent ------------------------------------------- */

/* What the names tried said, for the error when none works. */
struct tried {
	char text[1024];
	size_t len;
};

static void tried_add(struct tried *t, const struct parent_ref *r,
		      const char *path, const char *what)
{
	int n = snprintf(t->text + t->len, sizeof(t->text) - t->len, "%s%s '%s'%s%s%s%s",
			 t->len ? "; " : "", r->key, r->value,
			 path ? " (" : "", path ? path : "", path ? ")" : "", what);

	if (n > 0 && t->len + (size_t)n < sizeof(t->text))
		t->len += (size_t)n;
}

static bool linkage_ok(const struct vdisk *child, const struct vdisk *parent)
{
	return guid_equal(&parent->identity, &child->linkage) ||
	       (child->has_linkage2 &&
		guid_equal(&parent->identity, &child->linkage2));
}

static int stale_error(struct vdisk *d, struct vdisk *p, char *err,
		       size_t errlen)
{
	char why[512], want[40], have[40];

	if (p->ops->stale_reason &&
	    p->ops->stale_reason(p, &d->linkage, why, sizeof(why))) {
		snprintf(err, errlen, "%s is no longer valid: %s", d->path, why);
		return -ESTALE;
	}
	guid_format(&d->linkage, want);
	guid_format(&p->identity, have);
	snprintf(err, errlen, "%s is no longer valid: its parent %s has changed since it was made (the parent's %s is %s, the child was made from %s)",
		 d->path, p->path,
		 p->info.format == VDISK_FORMAT_VHD ? "unique id" : "DataWriteGuid",
		 have, want);
	return -ESTALE;
}

/*
 * Open the parent at @path for @d: 0, or 1 when it is a different disk
 * (*out is set for both), or a -errno with @err set; *exists says
 * whether there is a file at @path at all.
 */
static int try_parent(struct vdisk *d, const char *path,
		      const struct vdisk_open_opts *opts, struct chain_ctx *cc,
		      bool *exists, struct vdisk **out, char *err,
		      size_t errlen)
{
	struct vdisk_open_opts po = *opts;
	char inner[768], real[PATH_MAX];
	struct vdisk *p;
	struct stat st;
	int ret;

	*exists = stat(path, &st) == 0;
	if (!*exists)
		return -errno;
	/* Open it by its real name: messages and children see that one. */
	if (realpath(path, real))
		path = real;
	if (st.st_dev == d->dev && st.st_ino == d->ino) {
		snprintf(err, errlen, "%s names itself as its parent", d->path);
		return -ELOOP;
	}
	for (unsigned int i = 0; i < cc->n; i++) {
		if (cc->dev[i] == st.st_dev && cc->ino[i] == st.st_ino) {
			snprintf(err, errlen, "the parent chain of %s loops: its parent %s is also a child in the chain",
				 d->path, path);
			return -ELOOP;
		}
	}
	if (cc->n >= VDISK_MAX_CHAIN) {
		snprintf(err, errlen, "the parent chain of %s is more than %d disks deep",
			 d->path, VDISK_MAX_CHAIN);
		return -ELOOP;
	}
	po.read_only = true;
	po.format = VDISK_FORMAT_AUTO;
	po.engine = d->eng;
	ret = vdisk_open_in_chain(path, &po, cc, &p, inner, sizeof(inner));
	if (ret) {
		/* Loops and stale links further down say so themselves. */
		if (ret == -ELOOP || ret == -ESTALE)
			snprintf(err, errlen, "%s", inner);
		else
			snprintf(err, errlen, "cannot open %s, the parent of %s: %s",
				 path, d->path, inner);
		return ret < 0 ? ret : -EINVAL;
	}
	if (p->info.format != VDISK_FORMAT_VHDX &&
	    p->info.format != VDISK_FORMAT_VHD) {
		snprintf(err, errlen, "the parent of %s, %s, is not a VHDX or VHD file",
			 d->path, path);
		vdisk_close(p);
		return -EINVAL;
	}
	if (!linkage_ok(d, p)) {
		*out = p;
		return 1;
	}
	if (p->info.virtual_size != d->info.virtual_size ||
	    p->info.logical_sector_size != d->info.logical_sector_size) {
		snprintf(err, errlen, "the parent %s is a disk of %llu bytes in %u-byte sectors, but %s is one of %llu bytes in %u-byte sectors",
			 path, (unsigned long long)p->info.virtual_size,
			 p->info.logical_sector_size, d->path,
			 (unsigned long long)d->info.virtual_size,
			 d->info.logical_sector_size);
		vdisk_close(p);
		return -EINVAL;
	}
	*out = p;
	return 0;
}

int chain_open_parent(struct vdisk *d, const struct vdisk_open_opts *opts,
		      struct chain_ctx *cc, char *err, size_t errlen)
{
	char dir[PATH_MAX], path[PATH_MAX];
	struct vdisk *stale = NULL;
	struct tried t = { .len = 0 };
	int ret;

	path_dirname(d->path, dir, sizeof(dir));
	for (unsigned int i = 0; i < d->nrefs; i++) {
		const struct parent_ref *r = &d->refs[i];
		struct vdisk *p;
		unsigned int mark = cc->n;
		bool exists;

		if (parent_name_resolve(r->kind, r->value, dir, path, sizeof(path))) {
			tried_add(&t, r, NULL, ": names no file here");
			continue;
		}
		ret = try_parent(d, path, opts, cc, &exists, &p, err, errlen);
		if (ret)
			cc->n = mark;	/* the levels of a file we did not keep */
		if (!exists) {
			tried_add(&t, r, path, ": not found");
			continue;
		}
		if (ret < 0) {
			vdisk_close(stale);
			return ret;
		}
		if (ret == 1) {
			/* Another name may still find the right file. */
			tried_add(&t, r, path, ": a different disk");
			if (stale)
				vdisk_close(p);
			else
				stale = p;
			continue;
		}
		vdisk_close(stale);
		d->parent = p;
		d->info.chain_depth = p->info.chain_depth + 1;
		snprintf(d->info.parent, sizeof(d->info.parent), "%s", p->path);
		return 0;
	}
	if (stale) {
		ret = stale_error(d, stale, err, errlen);
		vdisk_close(stale);
		return ret;
	}
	if (!d->nrefs)
		snprintf(err, errlen, "%s is a differencing disk that names no parent",
			 d->path);
	else
		snprintf(err, errlen, "the parent of %s was not found: tried %s",
			 d->path, t.text);
	return -ENOENT;
}

int vdisk_chain_list(const char *path, struct vdisk_chain_level *levels,
		     unsigned int max, unsigned int *n, char *err,
		     size_t errlen)
{
	struct chain_ctx cc = { .parents = true };
	struct vdisk_open_opts o = { .no_io = true };
	struct vdisk *top, *d;
	unsigned int i = 0;
	int ret;

	*n = 0;
	ret = vdisk_open_in_chain(path, &o, &cc, &top, err, errlen);
	if (ret)
		return ret;
	for (d = top; d; d = d->parent, i++) {
		struct vdisk_chain_level *l;

		if (i >= max)
			continue;
		l = &levels[i];
		snprintf(l->path, sizeof(l->path), "%s", d->path);
		l->format = d->info.format;
		l->type = d->info.type;
		l->virtual_size = d->info.virtual_size;
		l->file_size = d->info.file_size;
		snprintf(l->identity, sizeof(l->identity), "%s", d->info.identity);
	}
	*n = i;
	vdisk_close(top);
	return 0;
}
