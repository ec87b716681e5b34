// SPDX-License-Identifier: MIT
/*
 * Merging a differencing disk into its parent or an older ancestor, on
 * an open disk, while it is in use if need be.
 *
 * Every disk of the chain reads as before until the merge commits, and
 * the ancestor reads as the child did once it has:
 *
 * - Copy.  For each block of the ancestor A that the levels above it
 *   touch, what the child reads there (the chain's view) is written to a
 *   new block past A's end; A's BAT is changed only in a copy, and a
 *   differencing A's sector bitmaps likewise go to new bitmap blocks.
 *   Nothing A's readers see changes.
 * - Commit.  A's data is flushed, then one log transaction (vhdx/txn.c)
 *   carries every changed BAT sector and the merge record; the header
 *   write that names its log, with a new DataWriteGuid, is the commit
 *   point.  A's other children link to the old DataWriteGuid, so they
 *   are refused from then on, and the record says why (vhdx/record.c).
 * - Switch.  The open disk continues on A (now read-write), the child
 *   and the disks between are closed and, unless kept, removed.
 *
 * A journal next to the child (CHILD.merge: A, its size and DataWriteGuid
 * before, the files a finished merge removes) lets vdisk_merge() finish
 * or undo an interrupted merge: with A's DataWriteGuid unchanged nothing
 * was committed, and A is cut back to its old size; with it changed the
 * merge committed, and only the removal is left.
 *
 * Online, guest writes go on to the child: a write that completes on a
 * block already copied (or being copied) marks it to be copied again.  When everything is copied the
 * disk holds new requests back, waits for those in flight, copies what
 * they changed, commits and switches; then the held requests go to A.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhdx/merge.h"

/* ---- the journal -------------------------------------------------- */

static int put_str(uint8_t *b, size_t *at, const char *s)
{
	size_t n = strlen(s);

	if (*at + 4 + n + 4 > JOURNAL_MAX)
		return -ENAMETOOLONG;
	put32(b + *at, (uint32_t)n);
	memcpy(b + *at + 4, s, n);
	*at += 4 + n;
	return 0;
}

static int get_str(const uint8_t *b, size_t len, size_t *at, char *out,
		   size_t outlen)
{
	uint32_t n;

	if (*at + 4 > len)
		return -EINVAL;
	n = get32(b + *at);
	if (n >= outlen || *at + 4 + n > len)
		return -EINVAL;
	memcpy(out, b + *at + 4, n);
	out[n] = 0;
	*at += 4 + n;
	return 0;
}

static int sync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	int fd, ret = 0;

	path_dirname(path, dir, sizeof(dir));
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* Written whole or not at all: a new file renamed over the name. */
static int journal_write(struct vdisk_merge *m)
{
	uint8_t *b = calloc(1, JOURNAL_MAX);
	char tmp[PATH_MAX + 8];
	size_t at = 40;
	int fd, ret = 0;

	if (!b)
		return -ENOMEM;
	memcpy(b, JOURNAL_MAGIC, 8);
	put32(b + 8, 1);
	put32(b + 12, m->nfiles);
	put64(b + 16, m->orig_size);
	memcpy(b + 24, m->old_dwg.b, 16);
	ret = put_str(b, &at, m->a->path);
	for (unsigned int i = 0; i < m->nfiles && !ret; i++)
		ret = put_str(b, &at, m->files[i]);
	if (ret)
		goto out;
	put32(b + at, crc32c(0, b, at));
	at += 4;
	snprintf(tmp, sizeof(tmp), "%s.tmp", m->journal);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	ret = file_pwrite(fd, b, at, 0);
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	close(fd);
	if (!ret && rename(tmp, m->journal) < 0)
		ret = -errno;
	if (!ret)
		ret = sync_dir_of(m->journal);
	if (ret)
		unlink(tmp);
out:
	free(b);
	return ret;
}

struct journal {
	uint64_t orig_size;
	struct guid old_dwg;
	char target[PATH_MAX];
	unsigned int nfiles;
	char files[VDISK_MAX_CHAIN][PATH_MAX];
};

static int journal_read(const char *path, struct journal *j)
{
	uint8_t *b = malloc(JOURNAL_MAX);
	size_t at = 40, len;
	ssize_t n;
	int fd, ret = -EINVAL;

	if (!b)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		free(b);
		return ret;
	}
	n = pread(fd, b, JOURNAL_MAX, 0);
	close(fd);
	if (n < 44)
		goto out;
	len = (size_t)n - 4;
	if (memcmp(b, JOURNAL_MAGIC, 8) != 0 || get32(b + 8) != 1 ||
	    crc32c(0, b, len) != get32(b + len))
		goto out;
	j->nfiles = get32(b + 12);
	j->orig_size = get64(b + 16);
	memcpy(j->old_dwg.b, b + 24, 16);
	if (j->nfiles > VDISK_MAX_CHAIN ||
	    get_str(b, len, &at, j->target, sizeof(j->target)))
		goto out;
	for (unsigned int i = 0; i < j->nfiles; i++)
		if (get_str(b, len, &at, j->files[i], sizeof(j->files[i])))
			goto out;
	ret = 0;
out:
	free(b);
	return ret;
}

static void remove_file(const char *p)
{
	if (unlink(p) < 0 && errno != ENOENT)
		log_error("merge: cannot remove %s: %s", p, strerror(errno));
}

/*
 * An interrupted merge of @child: 1 when it had committed and is finished
 * now, 0 when there was none or it was undone, or a -errno.
 */
static int merge_recover(const char *child, const struct vdisk_merge_opts *o,
			 char *err, size_t errlen)
{
	char path[PATH_MAX + 8];
	struct journal *j = malloc(sizeof(*j));
	struct vdisk *a;
	int ret, fd;
	struct stat st;

	if (!j)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s.merge", child);
	ret = journal_read(path, j);
	if (ret == -ENOENT) {
		free(j);
		return 0;
	}
	if (ret) {
		snprintf(err, errlen, "%s is not a merge journal we can read; remove it to merge again",
			 path);
		free(j);
		return -EINVAL;
	}
	ret = vdisk_open(j->target, &(struct vdisk_open_opts){ .no_io = true }, &a,
			 err, errlen);
	if (ret) {
		free(j);
		return ret;
	}
	if (!guid_equal(&a->identity, &j->old_dwg)) {
		/*
		 * Committed: a read-write open replays what the log still
		 * holds, and what is left is removing the merged files.
		 */
		vdisk_close(a);
		ret = vdisk_open(j->target, NULL, &a, err, errlen);
		if (!ret && a->info.format == VDISK_FORMAT_VHD)
			ret = vhd_footer_sync(a);
		if (!ret)
			ret = vdisk_close(a);
		else
			vdisk_close(a);
		if (ret) {
			free(j);
			return ret;
		}
		for (unsigned int i = 0; i < j->nfiles && !o->keep_files; i++)
			remove_file(j->files[i]);
		unlink(path);
		sync_dir_of(path);
		free(j);
		return 1;
	}
	vdisk_close(a);
	/* Not committed: the copies past A's old end go. */
	fd = open(j->target, O_RDWR | O_CLOEXEC);
	ret = fd < 0 ? -errno : 0;
	if (!ret && fstat(fd, &st) == 0 && (uint64_t)st.st_size > j->orig_size &&
	    (ftruncate(fd, (off_t)j->orig_size) < 0 || fsync(fd) < 0))
		ret = -errno;
	if (fd >= 0)
		close(fd);
	if (ret) {
		snprintf(err, errlen, "cannot undo the interrupted merge into %s: %s",
			 j->target, strerror(-ret));
		free(j);
		return ret;
	}
	unlink(path);
	sync_dir_of(path);
	free(j);
	return 0;
}

/* ---- copying one block of A ---------------------------------------- */

static void mask_set(uint8_t *mask, uint64_t first, uint64_t n)
{
	for (uint64_t i = first; i < first + n; i++)
		mask[i >> 3] |= (uint8_t)(1u << (i & 7));
}

/* Which sectors of block @b the levels above A (and A) hold. */
static bool block_plan(struct vdisk_merge *m, uint64_t b, uint8_t *mask,
		       bool *all)
{
	uint64_t r0 = b * m->bs, rlen = m->a->info.virtual_size - r0;
	uint32_t lss = m->a->info.logical_sector_size;
	bool touched = false;

	if (rlen > m->bs)
		rlen = m->bs;
	memset(mask, 0, m->bs / lss / 8);
	for (unsigned int i = 0; i <= m->nabove; i++) {
		struct vdisk *l = i < m->nabove ? m->above[i] : m->a;

		if (i == m->nabove && (!touched || !m->a_has_parent))
			break;
		for (uint64_t pos = r0; pos < r0 + rlen;) {
			uint64_t n = r0 + rlen - pos, fo;

			if (l->ops->map(l, pos, &n, &fo) != VMAP_BELOW) {
				if (i < m->nabove)
					touched = true;
				mask_set(mask, (pos - r0) / lss, (n + lss - 1) / lss);
			}
			pos += n;
		}
	}
	*all = !m->a_has_parent;
	if (touched && m->a_has_parent) {
		uint64_t bits = rlen / lss;

		*all = true;
		for (uint64_t i = 0; i < bits && *all; i++)
			*all = (mask[i >> 3] >> (i & 7)) & 1;
	}
	return touched;
}

uint64_t merge_alloc(struct vdisk_merge *m, uint64_t len, uint64_t align,
		     uint64_t before)
{
	/* @before bytes precede an @align-aligned start (a VHD bitmap). */
	uint64_t o = (m->end + before + align - 1) / align * align - before;

	m->end = o + len;
	/*
	 * The file is made longer ahead of the copies: writes inside the
	 * file's size take the file system's fast path, those that extend
	 * it do not.  The commit cuts the file back to what is used.
	 */
	if (m->end > m->extended) {
		uint64_t want = m->end + EXTEND_AHEAD;

		if (ftruncate(m->a->fd, (off_t)want) == 0) {
			m->extended = want;
			/* A VHD file ends with its footer, whatever happens. */
			if (m->vv)
				file_pwrite(m->a->fd, m->vv->footer, VHD_FOOTER_SIZE,
					    want - VHD_FOOTER_SIZE);
		}
	}
	return o;
}

void punch_flush(struct punch *p)
{
	if (p->len)
		fallocate(p->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  (off_t)p->off, (off_t)p->len);
	p->len = 0;
}

void punch_add(struct punch *p, uint64_t off, uint64_t len)
{
	if (p->len && off == p->off + p->len) {
		p->len += len;
		return;
	}
	punch_flush(p);
	p->off = off;
	p->len = len;
}

static void unit_free(struct unit *u, int res)
{
	struct vdisk_merge *m = u->m;

	if (res < 0 && !m->error)
		m->error = res;
	u->busy = false;
	u->job->pending--;
	m->inflight--;
}

static void write_done(struct io_op *op, int res)
{
	unit_free(container_of(op, struct unit, wop), res);
}

static void read_done(struct vdisk_req *req, int res)
{
	struct unit *u = container_of(req, struct unit, req);
	struct vdisk_merge *m = u->m;
	struct job *j = u->job;
	bool zero;
	int ret;

	if (res < 0 || m->error) {
		unit_free(u, res);
		return;
	}
	zero = u->buf[0] == 0 && memcmp(u->buf, u->buf + 1, u->len - 1) == 0;
	if (zero && !j->recopy) {
		/* A new block reads as zeros already. */
		unit_free(u, 0);
		return;
	}
	j->nonzero |= !zero;
	u->wiov.iov_base = u->buf;
	u->wiov.iov_len = u->len;
	u->wop.cb = write_done;
	ret = io_engine_rw(m->d->eng, &u->wop, m->a->fd, true, &u->wiov, 1,
			   m->t->place(m, j->b) + u->off % m->bs, 0);
	if (ret)
		io_engine_defer(m->d->eng, &u->wop, ret);
}

/* Start reads for the jobs' units, as far as the units go. */
static void units_issue(struct vdisk_merge *m)
{
	for (int i = 0, k = 0; i < DEPTH && !m->error; i++) {
		struct unit *u = &m->units[i];
		struct job *j = NULL;
		uint64_t len;
		int ret;

		if (u->busy)
			continue;
		for (int t = 0; t < JOBS && !j; t++, k++) {
			struct job *c = &m->jobs[k % JOBS];

			if (c->active && c->next_unit < c->end)
				j = c;
		}
		if (!j)
			return;
		len = j->end - j->next_unit;
		if (len > m->unit_len)
			len = m->unit_len;
		u->job = j;
		u->off = j->next_unit;
		u->len = len;
		u->iov.iov_base = u->buf;
		u->iov.iov_len = len;
		u->req = (struct vdisk_req){ .op = VDISK_READ, .offset = u->off,
			.iov = &u->iov, .iovcnt = 1, .len = len, .done = read_done };
		u->busy = true;
		j->pending++;
		m->inflight++;
		j->next_unit += len;
		/* Straight to the format: no merge hook, no hold. */
		ret = m->d->ops->submit(m->d, &u->req);
		if (ret)
			unit_free(u, ret);
	}
}

/*
 * The block's old pages leave the page cache now, while the copies of
 * the next blocks run: the punch of A's old blocks and the removal of
 * the merged files would otherwise drop them all at the end.  Nothing is
 * lost: a later read finds the same data on disk.  Offline, the copy's
 * own pages go too (their write-back starts at once).
 */
static void drop_cached(struct vdisk_merge *m, uint64_t b)
{
	uint64_t r0 = b * m->bs, end = r0 + m->bs, oe;

	if (end > m->a->info.virtual_size)
		end = m->a->info.virtual_size;
	for (unsigned int i = 0; i < m->nabove && m->offline; i++) {
		struct vdisk *l = m->above[i];

		for (uint64_t pos = r0; pos < end;) {
			uint64_t n = end - pos, fo;

			if (l->ops->map(l, pos, &n, &fo) == VMAP_DATA)
				posix_fadvise(l->fd, (off_t)fo, (off_t)n, POSIX_FADV_DONTNEED);
			pos += n;
		}
	}
	oe = m->t->old_place(m, b);
	if (oe)
		posix_fadvise(m->a->fd, (off_t)oe, (off_t)m->bs, POSIX_FADV_DONTNEED);
	/* The copy's write-back starts now too, not all at the commit. */
	if (m->newoff[b] && m->offline)
		posix_fadvise(m->a->fd, (off_t)m->t->place(m, b), (off_t)m->bs,
			      POSIX_FADV_DONTNEED);
}

/* The job's block is copied: its entry, then the cache, then its state. */
static int job_finish(struct vdisk_merge *m, struct job *j)
{
	uint64_t b = j->b;
	int ret;

	j->active = false;
	ret = m->t->finish(m, j);
	if (ret)
		return ret;
	drop_cached(m, b);
	if (j->redo) {
		m->bstate[b] = B_DIRTY;
		m->todo++;
	} else {
		m->bstate[b] = B_DONE;
	}
	return 0;
}

/* Start copying block @b, if any level above A touches it. */
static bool job_start(struct vdisk_merge *m, uint64_t b)
{
	struct job *j = NULL;

	for (int i = 0; i < JOBS && !j; i++)
		if (!m->jobs[i].active)
			j = &m->jobs[i];
	if (!block_plan(m, b, j->mask, &j->all)) {
		m->bstate[b] = B_DONE;
		return false;
	}
	j->b = b;
	j->active = true;
	j->nonzero = false;
	j->redo = false;
	j->recopy = m->newoff[b] != 0;
	j->pending = 0;
	j->next_unit = b * m->bs;
	j->end = j->next_unit + m->bs;
	if (j->end > m->a->info.virtual_size)
		j->end = m->a->info.virtual_size;
	return true;
}

static bool job_free(const struct vdisk_merge *m)
{
	for (int i = 0; i < JOBS; i++)
		if (!m->jobs[i].active)
			return true;
	return false;
}

/* The next block to copy: the main pass's, else one written again. */
static bool next_block(struct vdisk_merge *m, bool dirty_too, uint64_t *b)
{
	if (m->cursor < m->nblocks) {
		*b = m->cursor++;
		return true;
	}
	while (dirty_too && m->todo) {
		uint64_t c = m->scan++ % m->nblocks;

		if (m->bstate[c] != B_DIRTY)
			continue;
		m->todo--;
		m->bstate[c] = B_TODO;
		*b = c;
		return true;
	}
	return false;
}

/*
 * Copy blocks, several in flight, until @budget bytes of blocks were
 * started and all of them are done.  With @dirty_too, blocks written
 * again are copied as well once the main pass is through.
 */
static int copy_blocks(struct vdisk_merge *m, uint64_t budget, bool dirty_too)
{
	bool more = true;

	for (;;) {
		uint64_t b;
		int ret;

		while (more && budget && job_free(m)) {
			more = next_block(m, dirty_too, &b);
			if (more && job_start(m, b))
				budget = budget > m->bs ? budget - m->bs : 0;
		}
		units_issue(m);
		for (int i = 0; i < JOBS; i++) {
			struct job *j = &m->jobs[i];

			if (j->active && !j->pending && j->next_unit >= j->end &&
			    !m->error && (ret = job_finish(m, j)))
				m->error = ret;
		}
		if (!m->inflight && (m->error || !more || !budget || !job_free(m))) {
			bool busy = false;

			for (int i = 0; i < JOBS; i++)
				busy |= m->jobs[i].active;
			if (!busy || m->error)
				break;
		}
		if (m->inflight) {
			ret = io_engine_run(m->d->eng, 1);
			if (ret < 0 && !m->error)
				m->error = ret;
		}
	}
	while (m->inflight)
		io_engine_run(m->d->eng, 1);
	for (int i = 0; i < JOBS; i++)
		m->jobs[i].active = false;
	return m->error;
}

void merge_note_write(struct vdisk_merge *m, uint64_t off, uint64_t len)
{
	uint64_t last = (off + (len ? len : 1) - 1) / m->bs;

	for (uint64_t b = off / m->bs; b <= last && b < m->nblocks; b++) {
		bool in_flight = false;

		for (int i = 0; i < JOBS; i++) {
			if (m->jobs[i].active && m->jobs[i].b == b) {
				m->jobs[i].redo = true;
				in_flight = true;
			}
		}
		if (!in_flight && m->bstate[b] == B_DONE) {
			m->bstate[b] = B_DIRTY;
			m->todo++;
		}
	}
}

/* The format state starts with its disk: point it at @d. */
static void rebind(struct vdisk *d)
{
	if (d->priv)
		*(struct vdisk **)d->priv = d;
}

/* The open disk goes on as A; the merged levels are closed. */
static void switch_to_target(struct vdisk_merge *m)
{
	struct vdisk *d = m->d, *a = m->a, *old = calloc(1, sizeof(*old));

	m->above[m->nabove - 1]->parent = NULL;
	if (old) {
		*old = *d;
		old->own_engine = false;
		old->seg_free = NULL;
		old->merge = NULL;
		old->hold = false;
		old->held = NULL;
		old->held_tail = &old->held;
		old->active = 0;
		rebind(old);
	}
	d->ops = a->ops;
	d->priv = a->priv;
	d->fd = a->fd;
	d->info = a->info;
	d->path = a->path;
	d->dev = a->dev;
	d->ino = a->ino;
	d->identity = a->identity;
	d->parent = a->parent;
	memcpy(d->refs, a->refs, sizeof(d->refs));
	d->nrefs = a->nrefs;
	d->linkage = a->linkage;
	d->linkage2 = a->linkage2;
	d->has_linkage2 = a->has_linkage2;
	d->read_only = false;
	d->merge = NULL;
	rebind(d);
	free(a);
	if (old)
		vdisk_close(old);
}

/* ---- the job ------------------------------------------------------- */

static int find_target(struct vdisk *d, const char *into, struct vdisk **out,
		       char *err, size_t errlen)
{
	struct stat st;

	if (!into) {
		*out = d->parent;
		return 0;
	}
	if (stat(into, &st) < 0) {
		snprintf(err, errlen, "cannot find %s: %s", into, strerror(errno));
		return -errno;
	}
	for (struct vdisk *l = d->parent; l; l = l->parent) {
		if (l->dev == st.st_dev && l->ino == st.st_ino) {
			*out = l;
			return 0;
		}
	}
	snprintf(err, errlen, "%s is not an ancestor of %s", into, d->path);
	return -EINVAL;
}

/* A's descriptor becomes a read-write one, locked for us alone. */
static int take_target(struct vdisk_merge *m, char *err, size_t errlen)
{
	struct vdisk *a = m->a;
	int fd, flags = O_RDWR | O_CLOEXEC | (m->d->direct ? O_DIRECT : 0);

	if (flock(a->fd, LOCK_EX | LOCK_NB) < 0) {
		snprintf(err, errlen, "%s is in use by another process (another disk's chain, a VM?)",
			 a->path);
		return -EBUSY;
	}
	fd = open(a->path, flags);
	if (fd < 0) {
		int ret = -errno;

		snprintf(err, errlen, "cannot open %s for writing: %s", a->path,
			 strerror(errno));
		flock(a->fd, LOCK_SH);
		return ret;
	}
	flock(a->fd, LOCK_UN);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		snprintf(err, errlen, "%s was opened by another process just now", a->path);
		close(fd);
		flock(a->fd, LOCK_SH);
		return -EBUSY;
	}
	close(a->fd);
	a->fd = fd;
	if (m->av)
		m->av->fd = fd;
	else
		m->vv->fd = fd;
	return 0;
}

static void merge_free(struct vdisk_merge *m)
{
	for (int i = 0; i < DEPTH; i++)
		free(m->units[i].buf);
	for (unsigned int i = 0; i < m->nfiles; i++)
		free(m->files[i]);
	m->t->release(m);
	free(m->bstate);
	free(m->newoff);
	for (int i = 0; i < JOBS; i++)
		free(m->jobs[i].mask);
	free(m->journal);
	free(m);
}

static int setup(struct vdisk_merge *m)
{
	uint32_t lss = m->a->info.logical_sector_size;
	char real[PATH_MAX];
	struct stat st;
	int ret;

	if (fstat(m->a->fd, &st) < 0)
		return -errno;
	m->orig_size = (uint64_t)st.st_size;
	m->end = (m->orig_size + VHDX_ALIGN - 1) & ~(VHDX_ALIGN - 1);
	m->extended = m->orig_size;
	ret = m->t->setup(m);
	if (ret)
		return ret;
	m->unit_len = m->bs < UNIT_MAX ? (uint32_t)m->bs : (uint32_t)UNIT_MAX;
	m->bstate = calloc(m->nblocks, 1);
	m->newoff = calloc(m->nblocks, sizeof(*m->newoff));
	for (int i = 0; i < JOBS; i++) {
		m->jobs[i].mask = calloc(1, m->bs / lss / 8 + 8);
		if (!m->jobs[i].mask)
			return -ENOMEM;
	}
	for (int i = 0; i < DEPTH; i++) {
		m->units[i].m = m;
		m->units[i].buf = vhdx_alloc(m->unit_len);
		if (!m->units[i].buf)
			return -ENOMEM;
	}
	if (!m->bstate || !m->newoff)
		return -ENOMEM;
	m->old_dwg = m->a->identity;
	for (unsigned int i = 0; i < m->nabove; i++) {
		const char *p = m->above[i]->path;

		m->files[m->nfiles] = strdup(realpath(p, real) ? real : p);
		if (!m->files[m->nfiles++])
			return -ENOMEM;
	}
	m->journal = malloc(strlen(m->d->path) + 8);
	if (!m->journal)
		return -ENOMEM;
	sprintf(m->journal, "%s.merge", m->d->path);
	return 0;
}

static int merge_begin(struct vdisk *d, const struct vdisk_merge_opts *o,
		       bool offline, struct vdisk_merge **out, char *err,
		       size_t errlen)
{
	struct vdisk_merge *m;
	struct vdisk *a = NULL;
	int ret;

	if (d->read_only || d->no_io || !d->parent) {
		snprintf(err, errlen, "%s is not a differencing disk open for writing",
			 d->path);
		return -EINVAL;
	}
	if (d->merge) {
		snprintf(err, errlen, "%s is being merged already", d->path);
		return -EBUSY;
	}
	ret = find_target(d, o ? o->into : NULL, &a, err, errlen);
	if (ret)
		return ret;
	if (a->info.format == VDISK_FORMAT_VHD && a->info.type == VDISK_TYPE_FIXED) {
		snprintf(err, errlen, "merging into %s, a fixed VHD, is not supported: it has no BAT to switch (convert it to a dynamic VHD or to VHDX first)",
			 a->path);
		return -ENOTSUP;
	}
	if (a->info.format == VDISK_FORMAT_VHDX && ((struct vhdx *)a->priv)->nov) {
		snprintf(err, errlen, "%s has a log to replay first (open it read-write once, or check --repair)",
			 a->path);
		return -EBUSY;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->d = d;
	m->a = a;
	if (a->info.format == VDISK_FORMAT_VHDX) {
		m->t = &merge_vhdx;
		m->av = a->priv;
	} else {
		m->t = &merge_vhd;
		m->vv = a->priv;
	}
	m->offline = offline;
	m->keep_files = o && o->keep_files;
	m->step_bytes = o && o->step_bytes ? o->step_bytes : STEP_BYTES;
	for (struct vdisk *l = d; l != a; l = l->parent)
		m->above[m->nabove++] = l;
	ret = setup(m);
	if (ret) {
		snprintf(err, errlen, "cannot start the merge: %s", strerror(-ret));
		merge_free(m);
		return ret;
	}
	ret = take_target(m, err, errlen);
	if (ret) {
		merge_free(m);
		return ret;
	}
	ret = journal_write(m);
	if (ret) {
		snprintf(err, errlen, "cannot write the merge journal %s: %s",
			 m->journal, strerror(-ret));
		flock(a->fd, LOCK_SH);
		merge_free(m);
		return ret;
	}
	vhdx_step("merge: journal written");
	d->merge = m;
	*out = m;
	return 0;
}

int vdisk_merge_begin(struct vdisk *d, const struct vdisk_merge_opts *o,
		      struct vdisk_merge **out, char *err, size_t errlen)
{
	return merge_begin(d, o, false, out, err, errlen);
}

void vdisk_merge_progress(const struct vdisk_merge *m, uint64_t *done,
			  uint64_t *total)
{
	*total = m->nblocks * m->bs;
	*done = m->cursor * m->bs;
}

/* Undo: A's new space goes, A is a read-only parent again. */
static void rollback(struct vdisk_merge *m)
{
	if (ftruncate(m->a->fd, (off_t)m->orig_size) < 0 || fsync(m->a->fd) < 0)
		log_error("merge: cannot cut %s back to %llu bytes: %s", m->a->path,
			  (unsigned long long)m->orig_size, strerror(errno));
	flock(m->a->fd, LOCK_SH);
	unlink(m->journal);
	sync_dir_of(m->journal);
}

void vdisk_merge_cancel(struct vdisk_merge *m)
{
	if (!m)
		return;
	m->d->merge = NULL;
	rollback(m);
	if (m->d->hold)
		vdisk_release_held(m->d);
	merge_free(m);
}

static int finish(struct vdisk_merge *m, char *err, size_t errlen)
{
	struct vdisk *d = m->d;
	bool committed = false;
	int ret;

	if (!m->offline) {
		/* Nothing new goes out; what is in flight lands. */
		d->hold = true;
		while (d->active)
			if (io_engine_run(d->eng, 1) < 0)
				break;
	}
	ret = copy_blocks(m, UINT64_MAX, true);
	if (!ret)
		ret = m->t->commit(m, &committed);
	if (ret) {
		snprintf(err, errlen, "%s: %s", committed ?
			 "the merge committed but could not finish; the ancestor's log completes it at its next open" :
			 "the merge was undone", strerror(-ret));
		if (!committed) {
			d->merge = NULL;
			rollback(m);
			vdisk_release_held(d);
			merge_free(m);
			return ret;
		}
	}
	vhdx_step("merge: committed");
	m->t->adopt(m);
	switch_to_target(m);
	vhdx_step("merge: switched");
	for (unsigned int i = 0; i < m->nfiles && !m->keep_files; i++)
		remove_file(m->files[i]);
	unlink(m->journal);
	sync_dir_of(m->journal);
	vhdx_step("merge: done");
	vdisk_release_held(d);
	merge_free(m);
	return ret;
}

int vdisk_merge_step(struct vdisk_merge *m, char *err, size_t errlen)
{
	uint64_t budget = m->step_bytes;
	int ret = 0;

	/*
	 * The commit has a step of its own (until then it can be
	 * cancelled); it comes when nothing is left to copy, or after a few
	 * rounds of copying again what writes changed meanwhile, the rest
	 * then being copied with requests held back.
	 */
	if (m->cursor == m->nblocks && (!m->todo || m->rounds >= DIRTY_ROUNDS))
		return finish(m, err, errlen);
	if (m->cursor == m->nblocks)
		m->rounds++;
	ret = copy_blocks(m, budget, true);
	if (ret) {
		snprintf(err, errlen, "merge into %s failed: %s; it was undone",
			 m->a->path, strerror(-ret));
		m->d->merge = NULL;
		rollback(m);
		merge_free(m);
		return ret;
	}
	return 1;
}

int vdisk_merge(const char *child, const struct vdisk_merge_opts *o,
		char *err, size_t errlen)
{
	static const struct vdisk_merge_opts none;
	struct vdisk_merge *m;
	struct vdisk *d;
	int ret, cret;

	if (!o)
		o = &none;
	ret = merge_recover(child, o, err, errlen);
	if (ret)
		return ret < 0 ? ret : 0;
	ret = vdisk_open(child, NULL, &d, err, errlen);
	if (ret)
		return ret;
	ret = merge_begin(d, o, true, &m, err, errlen);
	while (!ret) {
		uint64_t done, total;

		vdisk_merge_progress(m, &done, &total);
		if (o->progress && !o->progress(o->progress_ctx, done, total)) {
			vdisk_merge_cancel(m);
			snprintf(err, errlen, "cancelled; the merge was undone");
			ret = -ECANCELED;
			break;
		}
		ret = vdisk_merge_step(m, err, errlen);
		if (ret == 0) {
			if (o->progress)
				o->progress(o->progress_ctx, total, total);
			break;
		}
		ret = ret > 0 ? 0 : ret;
	}
	cret = vdisk_close(d);
	if (!ret && cret) {
		snprintf(err, errlen, "closing the merged disk: %s", strerror(-cret));
		ret = cret;
	}
	return ret;
}
