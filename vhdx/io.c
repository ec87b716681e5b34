// SPDX-License-Identifier: MIT
/*
 * VHDX I/O: requests are cut at block boundaries; present blocks go
 * straight to the file, absent ones read as zeros, and a write to an
 * absent block allocates one at the end of the file.
 *
 * Allocation changes the BAT in memory at once, so every later request
 * (including a concurrent one to the same block) sees the new block and
 * the block is allocated exactly once.  The on-disk BAT follows through
 * the log, in the background: a commit writes the changed BAT sectors as
 * one log entry, flushes, writes them in place and flushes again.  A
 * flush request completes only after a commit that covers every
 * allocation made before it, which is what makes a completed flush
 * durable.  The same machinery carries other metadata sectors for a
 * resize (vhdx_commit_sectors()).  New blocks lie past the old end of the file, so until their
 * BAT entry is committed a crash merely forgets them, and once it is,
 * LastFileOffset in the log entry guarantees the file covers them.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhdx/state.h"

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

/* ---- metadata commits ---------------------------------------------- */

static void commit_advance(struct vhdx *v);
static void commit_launch(struct vhdx *v);

static void commit_io_done(struct io_op *op, int res)
{
	struct commit_io *cio = container_of(op, struct commit_io, op);
	struct vhdx *v = cio->v;

	if (res < 0 && !v->commit.error)
		v->commit.error = res;
	if (--v->commit.pending == 0)
		commit_advance(v);
}

static void commit_queue_write(struct vhdx *v, int slot, void *buf,
			       size_t len, uint64_t off)
{
	struct commit_io *cio = &v->commit.io[slot];
	int ret;

	cio->v = v;
	cio->op.cb = commit_io_done;
	cio->iov.iov_base = buf;
	cio->iov.iov_len = len;
	v->commit.pending++;
	ret = io_engine_rw(v->d->eng, &cio->op, v->fd, true, &cio->iov, 1,
			   off, 0);
	if (ret)
		io_engine_defer(v->d->eng, &cio->op, ret);
}

static void commit_queue_sync(struct vhdx *v)
{
	struct commit_io *cio = &v->commit.io[0];
	int ret;

	cio->v = v;
	cio->op.cb = commit_io_done;
	v->commit.pending++;
	ret = io_engine_fsync(v->d->eng, &cio->op, v->fd, false, 0);
	if (ret)
		io_engine_defer(v->d->eng, &cio->op, ret);
}

static void fail_waiters(struct vdisk_req **list, int err)
{
	while (*list) {
		struct vdisk_req *req = *list;

		*list = req->next;
		vdisk_req_put(req, err);
	}
}

static void commit_finish(struct vhdx *v, int err)
{
	struct commit *c = &v->commit;

	c->phase = COMMIT_IDLE;
	if (err && !v->broken) {
		v->broken = err;
		log_error("vhdx: metadata commit failed (%s); the disk now refuses writes",
			  strerror(-err));
	}
	fail_waiters(&c->waiters, err);
	if (v->next_waiters || v->ndirty >= COMMIT_THRESHOLD)
		vhdx_commit_start(v);
}

/* Write the snapshot's sectors in place, one write per run of neighbours. */
static void commit_apply(struct vhdx *v)
{
	struct commit *c = &v->commit;
	int slot = 1;

	for (uint32_t i = 0; i < c->n;) {
		uint32_t j = i + 1;

		while (j < c->n && c->target[j] == c->target[j - 1] + VHDX_SECTOR)
			j++;
		commit_queue_write(v, slot++, c->snap + (size_t)i * VHDX_SECTOR,
				   (size_t)(j - i) * VHDX_SECTOR, c->target[i]);
		i = j;
	}
}

static void commit_advance(struct vhdx *v)
{
	struct commit *c = &v->commit;
	int ret;

	if (c->error) {
		commit_finish(v, c->error);
		return;
	}
	switch (c->phase) {
	case COMMIT_DATA_SYNC:
		vhdx_step("commit: data flushed");
		commit_launch(v);
		break;
	case COMMIT_LOG_WRITE:
		vhdx_step("commit: log entry written");
		c->phase = COMMIT_LOG_SYNC;
		commit_queue_sync(v);
		break;
	case COMMIT_LOG_SYNC:
		vhdx_step("commit: log entry flushed");
		/* The file size in the entry is stable now. */
		v->durable_size = get64(c->entry + LE_LAST_OFFSET);
		/*
		 * The entry is on disk; only now does the header point at the
		 * log, so a crash before this leaves a file whose log is
		 * empty and whose metadata is untouched.
		 */
		if (!guid_equal(&v->log_guid, &v->session_log_guid)) {
			ret = vhdx_header_update(v, true, &v->session_log_guid);
			if (ret) {
				commit_finish(v, ret);
				return;
			}
		}
		c->phase = COMMIT_BAT_WRITE;
		commit_apply(v);
		break;
	case COMMIT_BAT_WRITE:
		vhdx_step("commit: sectors written in place");
		c->phase = COMMIT_BAT_SYNC;
		commit_queue_sync(v);
		break;
	case COMMIT_BAT_SYNC:
		vhdx_step("commit: done");
		commit_finish(v, 0);
		break;
	case COMMIT_IDLE:
		break;
	}
}

/* Where dirty sector @id goes in the file, and its contents in memory. */
static void dirty_locate(struct vhdx *v, uint32_t id, struct log_sector *out)
{
	uint64_t chunk, e;

	if (id < v->bat_sectors) {
		out->off = v->bat_offset + (uint64_t)id * VHDX_SECTOR;
		out->data = v->bat + (size_t)id * VHDX_SECTOR;
		return;
	}
	id -= v->bat_sectors;
	chunk = id / SB_SECTORS;
	e = bat_get(v, bat_bitmap_index(v, chunk));
	out->off = (e >> BAT_OFFSET_SHIFT) * MiB + (uint64_t)(id % SB_SECTORS) * VHDX_SECTOR;
	out->data = v->sb[chunk] + (size_t)(id % SB_SECTORS) * VHDX_SECTOR;
}

static int cmp_sector(const void *a, const void *b)
{
	const struct log_sector *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* Buffers and the session's LogGuid, before the first entry. */
static int commit_prepare(struct vhdx *v)
{
	struct commit *c = &v->commit;

	if (!c->entry) {
		c->entry = vhdx_alloc((COMMIT_MAX_SECTORS + 1) * VHDX_SECTOR);
		c->snap = vhdx_alloc(COMMIT_MAX_SECTORS * VHDX_SECTOR);
		if (!c->entry || !c->snap)
			return -ENOMEM;
	}
	if (guid_is_zero(&v->session_log_guid)) {
		guid_generate(&v->session_log_guid);
		v->log_seq = 0;
	}
	c->error = 0;
	c->pending = 0;
	return 0;
}

/* Build the entry for the c->n sectors in c->snap and queue its write. */
static void commit_launch(struct vhdx *v)
{
	struct commit *c = &v->commit;
	struct log_sector s[COMMIT_MAX_SECTORS];
	struct log_entry_head h = {
		.log_guid = v->session_log_guid,
		.seq = ++v->log_seq,
		/* Every earlier entry is applied and flushed: none to replay. */
		.tail = v->log_head,
		.flushed = v->durable_size - v->durable_size % VHDX_ALIGN,
		.last = v->alloc_end,
	};
	uint32_t len, first;

	for (uint32_t i = 0; i < c->n; i++) {
		s[i].off = c->target[i];
		s[i].data = c->snap + (size_t)i * VHDX_SECTOR;
	}
	len = vhdx_log_build(c->entry, &h, s, c->n);
	first = v->log_length - v->log_head;
	if (first > len)
		first = len;
	c->phase = COMMIT_LOG_WRITE;
	commit_queue_write(v, 0, c->entry, first, v->log_offset + v->log_head);
	if (first < len)
		commit_queue_write(v, 1, c->entry + first, len - first,
				   v->log_offset);
	v->log_head = (v->log_head + len) % v->log_length;
}

void vhdx_commit_start(struct vhdx *v)
{
	struct commit *c = &v->commit;
	struct log_sector s[COMMIT_MAX_SECTORS];
	uint32_t n;
	int ret;

	if (c->phase != COMMIT_IDLE)
		return;
	if (v->broken) {
		fail_waiters(&v->next_waiters, v->broken);
		return;
	}
	if (!v->ndirty && !v->next_waiters)
		return;
	c->error = 0;
	c->pending = 0;
	c->n = 0;
	if (!v->ndirty) {
		/* Nothing to log: the waiting flushes need only a flush. */
		c->waiters = v->next_waiters;
		v->next_waiters = NULL;
		c->phase = COMMIT_BAT_SYNC;
		commit_queue_sync(v);
		return;
	}
	ret = commit_prepare(v);
	if (ret) {
		v->broken = ret;
		fail_waiters(&v->next_waiters, ret);
		return;
	}

	n = v->ndirty < COMMIT_MAX_SECTORS ? v->ndirty : COMMIT_MAX_SECTORS;
	for (uint32_t i = 0; i < n; i++) {
		v->dirty_map[v->dirty_list[i]] = 0;
		dirty_locate(v, v->dirty_list[i], &s[i]);
	}
	v->ndirty -= n;
	memmove(v->dirty_list, v->dirty_list + n, v->ndirty * sizeof(uint32_t));
	qsort(s, n, sizeof(*s), cmp_sector);
	for (uint32_t i = 0; i < n; i++) {
		c->target[i] = s[i].off;
		memcpy(c->snap + (size_t)i * VHDX_SECTOR, s[i].data, VHDX_SECTOR);
	}
	c->n = n;
	/* Flushes wait for the commit that empties the dirty set. */
	if (!v->ndirty) {
		c->waiters = v->next_waiters;
		v->next_waiters = NULL;
	}
	if (v->need_data_sync) {
		/* Bits that reveal written data: that data goes first. */
		v->need_data_sync = false;
		c->phase = COMMIT_DATA_SYNC;
		commit_queue_sync(v);
		return;
	}
	commit_launch(v);
}

int vhdx_commit_all(struct vhdx *v)
{
	while (v->commit.phase != COMMIT_IDLE || v->ndirty) {
		int ret;

		vhdx_commit_start(v);
		if (v->broken)
			return v->broken;
		ret = io_engine_run(v->d->eng, 1);
		if (ret < 0)
			return ret;
	}
	return v->broken;
}

int vhdx_commit_sectors(struct vhdx *v, const struct log_sector *s,
			uint32_t n)
{
	struct commit *c = &v->commit;
	struct log_sector sorted[COMMIT_MAX_SECTORS];
	int ret;

	if (n > COMMIT_MAX_SECTORS)
		return -E2BIG;
	/* Commits are applied in order: earlier BAT changes go first. */
	ret = vhdx_commit_all(v);
	if (ret || !n)
		return ret;
	memcpy(sorted, s, n * sizeof(*s));
	qsort(sorted, n, sizeof(*s), cmp_sector);
	for (uint32_t i = 0; i < n; i++) {
		/* Two versions of one sector in an entry: which one wins? */
		if (sorted[i].off % VHDX_SECTOR ||
		    (i && sorted[i].off == sorted[i - 1].off))
			return -EINVAL;
	}
	ret = commit_prepare(v);
	if (ret)
		return ret;
	for (uint32_t i = 0; i < n; i++) {
		c->target[i] = sorted[i].off;
		memcpy(c->snap + (size_t)i * VHDX_SECTOR, sorted[i].data,
		       VHDX_SECTOR);
	}
	c->n = n;
	c->waiters = NULL;
	commit_launch(v);
	while (c->phase != COMMIT_IDLE) {
		ret = io_engine_run(v->d->eng, 1);
		if (ret < 0)
			return ret;
	}
	return v->broken;
}

/* ---- requests ------------------------------------------------------ */

int vhdx_alloc_block(struct vhdx *v, uint64_t block, unsigned int state,
		     uint64_t *off)
{
	uint64_t idx = bat_payload_index(v, block);
	uint64_t o;
	int ret;

	if (v->broken)
		return v->broken;
	/*
	 * Entries as large as half the log would let one entry overwrite
	 * the previous one; the smallest legal log (1 MiB) is just enough.
	 */
	if (v->log_length < 2 * (COMMIT_MAX_SECTORS + 1) * VHDX_SECTOR)
		return -EIO;
	if (v->has_parent) {
		ret = vhdx_bitmap_ensure(v, block / v->chunk_ratio);
		if (ret)
			return ret;
		if (state == PAYLOAD_BLOCK_PARTIALLY_PRESENT)
			vhdx_bitmap_clear_block(v, block);
	}
	o = (v->alloc_end + VHDX_ALIGN - 1) & ~(VHDX_ALIGN - 1);
	if (o + v->block_size > v->file_size) {
		if (ftruncate(v->fd, (off_t)(o + v->block_size)) < 0)
			return -errno;
		v->file_size = o + v->block_size;
	}
	v->alloc_end = o + v->block_size;
	put64(v->bat + idx * 8, o | state);
	vhdx_mark_dirty(v, idx);
	v->allocated += v->block_size;
	v->d->info.allocated = v->allocated;
	v->d->info.file_size = v->file_size;
	if (v->ndirty >= COMMIT_THRESHOLD)
		vhdx_commit_start(v);
	*off = o;
	return 0;
}

/* Reads of a file whose log was replayed in memory see the replay. */
static void seg_apply_overlay(struct vhdx *v, struct vdisk_seg *seg,
			      uint64_t file_off)
{
	size_t len = iov_length(seg->iov, seg->iovcnt);
	uint8_t *tmp = malloc(len);

	if (!tmp)
		return;
	iov_to_buf(seg->iov, seg->iovcnt, 0, tmp, len);
	overlay_apply(v, tmp, len, file_off);
	iov_from_buf(seg->iov, seg->iovcnt, 0, tmp, len);
	free(tmp);
}

static void seg_done(struct io_op *op, int res)
{
	struct vdisk_seg *seg = (struct vdisk_seg *)op;
	struct vdisk_req *req = seg->req;
	struct vhdx *v = seg->level->priv;

	if (res >= 0 && v->nov && req->op == VDISK_READ)
		seg_apply_overlay(v, seg, seg->file_off);
	if (res >= 0 && seg->reveal)
		vhdx_mark_present(v, seg->voff, seg->len);
	vdisk_seg_put(req->disk, seg);
	vdisk_req_put(req, res < 0 ? res : 0);
}

/* A piece of @req on the file of level @d (the top, or a parent). */
static int queue_rw(struct vdisk *d, struct vdisk_req *req, size_t skip,
		    size_t len, uint64_t file_off, uint64_t voff, bool reveal)
{
	struct vdisk_seg *seg = vdisk_seg_get(req->disk, req, req->iovcnt);
	int ret;

	if (!seg)
		return -ENOMEM;
	seg->op.cb = seg_done;
	seg->level = d;
	seg->file_off = file_off;
	seg->voff = voff;
	seg->len = len;
	seg->reveal = reveal;
	seg->iovcnt = iov_slice(req->iov, req->iovcnt, skip, len, seg->iov);
	ret = io_engine_rw(d->eng, &seg->op, d->fd, req->op == VDISK_WRITE,
			   seg->iov, seg->iovcnt, file_off, 0);
	if (ret) {
		vdisk_seg_put(req->disk, seg);
		req->pending--;
	}
	return ret;
}

int vhdx_queue_seg(struct vhdx *v, struct vdisk_req *req, size_t skip,
		   size_t len, uint64_t file_off, uint64_t voff, bool reveal)
{
	return queue_rw(v->d, req, skip, len, file_off, voff, reveal);
}

static int vhdx_read_file(struct vdisk *d, struct vdisk_req *req, size_t skip,
			  size_t len, uint64_t file_off)
{
	return queue_rw(d, req, skip, len, file_off, 0, false);
}

/* ---- discard and write-zeroes ------------------------------------------ */

static void zero_seg_done(struct io_op *op, int res)
{
	struct vdisk_seg *seg = (struct vdisk_seg *)op;
	struct vdisk_req *req = seg->req;
	struct vhdx *v = req->disk->priv;

	if (res == -EOPNOTSUPP || res == -EINVAL) {
		/* Neither zero-range nor hole punching: write the zeros. */
		res = file_write_zeros(v->fd, seg->file_off, seg->len);
	}
	if (res >= 0 && seg->reveal)
		vhdx_mark_present(v, seg->voff, seg->len);
	vdisk_seg_put(req->disk, seg);
	vdisk_req_put(req, res < 0 ? res : 0);
}

int vhdx_queue_zero(struct vhdx *v, struct vdisk_req *req, uint64_t file_off,
		    uint64_t len, uint64_t voff, bool reveal)
{
	struct vdisk_seg *seg = vdisk_seg_get(v->d, req, 0);
	/* A fixed disk keeps its space; a dynamic one gives it back. */
	int mode = v->leave_allocated ? FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE :
					FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	int ret;

	if (!seg)
		return -ENOMEM;
	seg->op.cb = zero_seg_done;
	seg->file_off = file_off;
	seg->len = len;
	seg->voff = voff;
	seg->reveal = reveal;
	ret = io_engine_fallocate(v->d->eng, &seg->op, v->fd, mode, file_off, len, 0);
	if (ret) {
		vdisk_seg_put(v->d, seg);
		req->pending--;
	}
	return ret;
}

static void vhdx_zero_range(struct vhdx *v, struct vdisk_req *req)
{
	uint64_t pos = req->offset, end = req->offset + req->len;
	bool can_log = v->log_length >= 2 * (COMMIT_MAX_SECTORS + 1) * VHDX_SECTOR;
	int ret = 0;

	while (pos < end && !ret) {
		uint64_t block = pos / v->block_size;
		uint64_t in_block = pos % v->block_size;
		uint64_t n = v->block_size - in_block;
		uint64_t idx = bat_payload_index(v, block);
		uint64_t e = bat_get(v, idx);
		bool present = (e & BAT_STATE_MASK) == PAYLOAD_BLOCK_FULLY_PRESENT;
		uint64_t file_off = (e >> BAT_OFFSET_SHIFT) * MiB;

		if (n > end - pos)
			n = end - pos;
		if (n == v->block_size && !v->leave_allocated && can_log) {
			/* A whole block: ZERO state (offset 0), through the log. */
			if (present) {
				ret = vhdx_queue_zero(v, req, file_off, n, 0, false);
				v->allocated -= v->block_size;
				v->d->info.allocated = v->allocated;
			}
			if ((e & BAT_STATE_MASK) != PAYLOAD_BLOCK_ZERO) {
				put64(v->bat + idx * 8, PAYLOAD_BLOCK_ZERO);
				vhdx_mark_dirty(v, idx);
			}
		} else if (present) {
			ret = vhdx_queue_zero(v, req, file_off + in_block, n, 0, false);
		}
		/* Absent, zero and unmapped blocks read as zeros already. */
		pos += n;
	}
	if (v->ndirty >= COMMIT_THRESHOLD)
		vhdx_commit_start(v);
	vdisk_req_launch(req, ret);
}

static void vhdx_flush(struct vhdx *v, struct vdisk_req *req)
{
	struct vdisk_seg *seg;
	int ret;

	if (v->broken) {
		vdisk_req_launch(req, v->broken);
		return;
	}
	if (v->commit.phase != COMMIT_IDLE || v->ndirty) {
		/* Completed by the commit that covers everything before it. */
		req->pending++;
		req->next = v->next_waiters;
		v->next_waiters = req;
		vhdx_commit_start(v);
		vdisk_req_launch(req, 0);
		return;
	}
	seg = vdisk_seg_get(v->d, req, 0);
	if (!seg) {
		vdisk_req_launch(req, -ENOMEM);
		return;
	}
	seg->op.cb = seg_done;
	ret = io_engine_fsync(v->d->eng, &seg->op, v->fd, false, 0);
	if (ret) {
		vdisk_seg_put(v->d, seg);
		req->pending--;
	}
	vdisk_req_launch(req, ret);
}

static int vhdx_submit(struct vdisk *d, struct vdisk_req *req)
{
	struct vhdx *v = d->priv;
	uint64_t pos = req->offset;
	size_t done = 0;
	int ret = 0;

	vdisk_req_begin(d, req);
	if (req->op == VDISK_FLUSH) {
		vhdx_flush(v, req);
		return 0;
	}
	if (req->op != VDISK_READ) {
		if (v->broken) {
			vdisk_req_launch(req, v->broken);
			return 0;
		}
		if (!v->data_guid_done) {
			/* New File/DataWriteGuid before the first change. */
			ret = vhdx_header_update(v, true, &v->log_guid);
			if (ret) {
				vdisk_req_launch(req, ret);
				return 0;
			}
		}
	}
	if (req->op == VDISK_DISCARD || req->op == VDISK_WRITE_ZEROES) {
		if (v->has_parent)
			vhdx_diff_zero_range(v, req);
		else
			vhdx_zero_range(v, req);
		return 0;
	}
	if (req->op == VDISK_READ) {
		vdisk_req_launch(req, vdisk_chain_read(d, req));
		return 0;
	}

	while (done < req->len && !ret) {
		uint64_t block = pos / v->block_size;
		uint64_t in_block = pos % v->block_size;
		size_t n = v->block_size - in_block;
		uint64_t e = bat_get(v, bat_payload_index(v, block));
		uint64_t file_off = 0;

		if (n > req->len - done)
			n = req->len - done;
		if (v->has_parent) {
			ret = vhdx_diff_write(v, req, done, n, pos);
		} else if ((e & BAT_STATE_MASK) == PAYLOAD_BLOCK_FULLY_PRESENT) {
			file_off = (e >> BAT_OFFSET_SHIFT) * MiB + in_block;
			ret = vhdx_queue_seg(v, req, done, n, file_off, pos, false);
		} else {
			ret = vhdx_alloc_block(v, block, PAYLOAD_BLOCK_FULLY_PRESENT,
					       &file_off);
			if (!ret)
				ret = vhdx_queue_seg(v, req, done, n,
						     file_off + in_block, pos, false);
		}
		pos += n;
		done += n;
	}
	vdisk_req_launch(req, ret);
	return 0;
}

static int rewrite_damaged_copies(struct vhdx *v)
{
	static const uint64_t region_off[2] = { VHDX_REGION1_OFFSET,
						VHDX_REGION2_OFFSET };
	int ret = 0;

	if (v->rewrite_headers)
		ret = vhdx_header_update(v, false, &v->log_guid);
	if (!ret && v->rewrite_regions) {
		/* The good copy stays untouched while the other is written. */
		ret = file_pwrite(v->fd, v->region_good, VHDX_REGION_SIZE,
				  region_off[!v->good_region]);
		if (!ret && fdatasync(v->fd) < 0)
			ret = -errno;
	}
	return ret;
}

static int vhdx_close(struct vdisk *d)
{
	static const struct guid zero;
	struct vhdx *v = d->priv;
	int ret = 0;

	if (!d->read_only && !d->no_io) {
		ret = vhdx_commit_all(v);
		if (!ret && v->repairing)
			ret = rewrite_damaged_copies(v);
		/* Everything is in place: a clean close leaves no log. */
		if (!ret && !guid_is_zero(&v->log_guid))
			ret = vhdx_header_update(v, false, &zero);
	}
	vhdx_state_free(v);
	d->priv = NULL;
	return ret;
}

const struct vdisk_ops vhdx_ops = {
	.submit = vhdx_submit,
	.map = vhdx_map,
	.read_file = vhdx_read_file,
	.close = vhdx_close,
	.stale_reason = vhdx_stale_reason,
};

int vhdx_open_fd(struct vdisk *d, struct vhdx_report *r)
{
	struct vhdx *v = calloc(1, sizeof(*v));
	int ret;

	if (!v)
		return -ENOMEM;
	v->d = d;
	v->fd = d->fd;
	v->repairing = r->repairing;
	d->priv = v;
	d->ops = &vhdx_ops;

	ret = vhdx_parse(v, r);
	if (!ret && v->has_parent && !d->no_io)
		ret = vhdx_load_bitmaps(v, r);
	if (ret)
		goto fail;
	v->durable_size = v->file_size;
	v->alloc_end = (v->file_size + VHDX_ALIGN - 1) & ~(VHDX_ALIGN - 1);

	d->info.format = VDISK_FORMAT_VHDX;
	d->info.type = v->has_parent ? VDISK_TYPE_DIFFERENCING :
		       v->leave_allocated ? VDISK_TYPE_FIXED : VDISK_TYPE_DYNAMIC;
	d->info.virtual_size = v->vsize;
	d->info.logical_sector_size = v->lss;
	d->info.physical_sector_size = v->pss;
	d->info.block_size = v->block_size;
	d->info.file_size = v->file_size;
	d->info.allocated = v->allocated;
	d->info.log_length = v->log_length;
	guid_format(&v->disk_id, d->info.disk_id);
	get_guid(&d->identity, v->hdr + HDR_DATA_WRITE_GUID);
	guid_format(&d->identity, d->info.identity);
	if (d->nrefs)
		snprintf(d->info.parent, sizeof(d->info.parent), "%s",
			 d->refs[0].value);
	/* A differencing disk writes whole sectors: the rest is the parent's. */
	d->info.alignment = d->direct || v->has_parent ? v->lss : 1;
	return 0;

fail:
	vhdx_state_free(v);
	d->priv = NULL;
	d->ops = NULL;
	return ret;
}
