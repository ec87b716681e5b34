// SPDX-License-Identifier: MIT
/*
 * VHD I/O.  A fixed disk is its data followed by the footer.  A dynamic
 * or differencing disk maps blocks through the BAT; each block is a
 * sector bitmap (one bit per sector, the most significant bit of byte 0
 * first) followed by the data.  In a dynamic disk every block we
 * allocate is wholly present (its bitmap all ones) and reads ignore the
 * bitmap, as qemu does; in a differencing disk a bit of 0 sends the
 * sector to the parent.
 *
 * A new block goes where the footer was, its data 4 KiB aligned: the
 * footer is first written at the new end of the file, then the block's
 * bitmap, both before the request's data, so the file always ends with
 * a footer; the BAT entry follows at the next commit (vhd_state.h), and
 * until then a crash only forgets the block.  As for VHDX, bitmap bits
 * are set once the write they reveal has completed, and a flush
 * completes after a commit covering every change made before it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhdx/vhd_state.h"

/* ---- mapping -------------------------------------------------------- */

static bool bit_get(const uint8_t *bm, uint64_t i)
{
	return (bm[i >> 3] >> (7 - (i & 7))) & 1;
}

static enum vmap vhd_map(struct vdisk *d, uint64_t off, uint64_t *len,
			 uint64_t *file_off)
{
	struct vhd *v = d->priv;
	uint32_t block;
	uint64_t in_block, data, first, last, i;
	bool present;

	if (v->type == VHD_FIXED) {
		*file_off = off;
		return VMAP_DATA;
	}
	block = (uint32_t)(off / v->block_size);
	in_block = off % v->block_size;
	if (*len > v->block_size - in_block)
		*len = v->block_size - in_block;
	if (vhd_bat_get(v, block) == VHD_UNUSED)
		return v->type == VHD_DIFF ? VMAP_BELOW : VMAP_ZERO;
	data = vhd_block_off(v, block) + v->bm_size + in_block;
	*file_off = data;
	if (v->type == VHD_DYNAMIC)
		return VMAP_DATA;
	first = in_block / VHD_SECTOR;
	last = (in_block + *len + VHD_SECTOR - 1) / VHD_SECTOR;
	present = bit_get(v->bitmaps[block], first);
	for (i = first + 1; i < last; i++)
		if (bit_get(v->bitmaps[block], i) != present)
			break;
	if ((i - first) * VHD_SECTOR - in_block % VHD_SECTOR < *len)
		*len = (i - first) * VHD_SECTOR - in_block % VHD_SECTOR;
	return present ? VMAP_DATA : VMAP_BELOW;
}

/* Mark the sectors [voff, voff + len) of a differencing disk present. */
static void mark_present(struct vhd *v, uint64_t voff, uint64_t len)
{
	uint32_t block = (uint32_t)(voff / v->block_size);
	uint64_t first = voff % v->block_size / VHD_SECTOR;
	uint64_t end = first + len / VHD_SECTOR;
	uint8_t *bm = v->bitmaps[block];

	for (uint64_t i = first; i < end; i++) {
		bm[i >> 3] |= (uint8_t)(0x80 >> (i & 7));
		if (i == first || (i & (8 * VHD_SECTOR - 1)) == 0)
			vhd_mark_dirty(v, v->bat_sectors + block * (v->bm_size / VHD_SECTOR) +
					  (uint32_t)(i / (8 * VHD_SECTOR)));
	}
	if (v->ndirty >= VHD_COMMIT_THRESHOLD)
		vhd_commit_start(v);
}

/* ---- commits --------------------------------------------------------- */

static void commit_advance(struct vhd *v);

static void commit_io_done(struct io_op *op, int res)
{
	struct vhd_commit_io *cio = container_of(op, struct vhd_commit_io, op);
	struct vhd *v = cio->v;

	if (res < 0 && !v->cerror)
		v->cerror = res;
	if (--v->pending == 0)
		commit_advance(v);
}

static void queue_write(struct vhd *v, int slot, void *buf, size_t len,
			uint64_t off)
{
	struct vhd_commit_io *cio = &v->cio[slot];
	int ret;

	cio->v = v;
	cio->op.cb = commit_io_done;
	cio->iov.iov_base = buf;
	cio->iov.iov_len = len;
	v->pending++;
	ret = io_engine_rw(v->d->eng, &cio->op, v->fd, true, &cio->iov, 1, off, 0);
	if (ret)
		io_engine_defer(v->d->eng, &cio->op, ret);
}

static void queue_sync(struct vhd *v)
{
	struct vhd_commit_io *cio = &v->cio[0];
	int ret;

	cio->v = v;
	cio->op.cb = commit_io_done;
	v->pending++;
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

static void commit_finish(struct vhd *v, int err)
{
	v->phase = VHD_COMMIT_IDLE;
	if (err && !v->broken) {
		v->broken = err;
		log_error("vhd: metadata commit failed (%s); the disk now refuses writes",
			  strerror(-err));
	}
	fail_waiters(&v->waiters, err);
	if (v->next_waiters || v->ndirty >= VHD_COMMIT_THRESHOLD)
		vhd_commit_start(v);
}

static void commit_apply(struct vhd *v)
{
	int slot = 1;

	for (uint32_t i = 0; i < v->cn;) {
		uint32_t j = i + 1;

		while (j < v->cn && v->ctarget[j] == v->ctarget[j - 1] + VHD_SECTOR)
			j++;
		queue_write(v, slot++, v->csnap + (size_t)i * VHD_SECTOR,
			    (size_t)(j - i) * VHD_SECTOR, v->ctarget[i]);
		i = j;
	}
}

static void commit_advance(struct vhd *v)
{
	if (v->cerror) {
		commit_finish(v, v->cerror);
		return;
	}
	switch (v->phase) {
	case VHD_COMMIT_DATA_SYNC:
		vhdx_step("vhd commit: data flushed");
		if (!v->cn) {
			commit_finish(v, 0);
			break;
		}
		v->phase = VHD_COMMIT_WRITE;
		commit_apply(v);
		break;
	case VHD_COMMIT_WRITE:
		vhdx_step("vhd commit: sectors written in place");
		v->phase = VHD_COMMIT_SYNC;
		queue_sync(v);
		break;
	case VHD_COMMIT_SYNC:
		vhdx_step("vhd commit: done");
		commit_finish(v, 0);
		break;
	case VHD_COMMIT_IDLE:
		break;
	}
}

/* Where dirty sector @id goes, and its contents now. */
static void dirty_locate(struct vhd *v, uint32_t id, uint64_t *off,
			 const uint8_t **data)
{
	uint32_t per = v->bm_size / VHD_SECTOR, block, s;

	if (id < v->bat_sectors) {
		*off = v->bat_off + (uint64_t)id * VHD_SECTOR;
		*data = v->bat + (size_t)id * VHD_SECTOR;
		return;
	}
	block = (id - v->bat_sectors) / per;
	s = (id - v->bat_sectors) % per;
	*off = vhd_block_off(v, block) + (uint64_t)s * VHD_SECTOR;
	*data = v->bitmaps[block] + (size_t)s * VHD_SECTOR;
}

struct sector_ref {
	uint64_t off;
	const uint8_t *data;
};

static int cmp_ref(const void *a, const void *b)
{
	const struct sector_ref *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

void vhd_commit_start(struct vhd *v)
{
	struct sector_ref refs[VHD_COMMIT_MAX];
	uint32_t n;

	if (v->phase != VHD_COMMIT_IDLE)
		return;
	if (v->broken) {
		fail_waiters(&v->next_waiters, v->broken);
		return;
	}
	if (!v->ndirty && !v->next_waiters)
		return;
	if (!v->csnap) {
		v->csnap = vhdx_alloc(VHD_COMMIT_MAX * VHD_SECTOR);
		if (!v->csnap) {
			v->broken = -ENOMEM;
			fail_waiters(&v->next_waiters, -ENOMEM);
			return;
		}
	}
	n = v->ndirty < VHD_COMMIT_MAX ? v->ndirty : VHD_COMMIT_MAX;
	for (uint32_t i = 0; i < n; i++) {
		v->dirty_map[v->dirty_list[i]] = 0;
		dirty_locate(v, v->dirty_list[i], &refs[i].off, &refs[i].data);
	}
	v->ndirty -= n;
	memmove(v->dirty_list, v->dirty_list + n, v->ndirty * sizeof(uint32_t));
	qsort(refs, n, sizeof(*refs), cmp_ref);
	for (uint32_t i = 0; i < n; i++) {
		v->ctarget[i] = refs[i].off;
		memcpy(v->csnap + (size_t)i * VHD_SECTOR, refs[i].data, VHD_SECTOR);
	}
	v->cn = n;
	v->cerror = 0;
	v->pending = 0;
	if (!v->ndirty) {
		v->waiters = v->next_waiters;
		v->next_waiters = NULL;
	}
	v->phase = VHD_COMMIT_DATA_SYNC;
	queue_sync(v);
}

int vhd_commit_all(struct vhd *v)
{
	while (v->phase != VHD_COMMIT_IDLE || v->ndirty) {
		int ret;

		vhd_commit_start(v);
		if (v->broken)
			return v->broken;
		ret = io_engine_run(v->d->eng, 1);
		if (ret < 0)
			return ret;
	}
	return v->broken;
}

/* ---- allocation ------------------------------------------------------- */

static int alloc_block(struct vhd *v, uint32_t block, uint64_t *data_off)
{
	/* Data 4 KiB aligned: the bitmap just before a 4 KiB boundary. */
	uint64_t start = (v->footer_off + v->bm_size + 4095) / 4096 * 4096 - v->bm_size;
	uint64_t end = start + v->bm_size + v->block_size;
	uint8_t *bm;
	int ret;

	if (v->broken)
		return v->broken;
	if (start / VHD_SECTOR >= VHD_UNUSED)
		return -EFBIG;
	bm = vhdx_alloc(v->bm_size);
	if (!bm)
		return -ENOMEM;
	/* The file keeps ending with a footer, whatever happens next. */
	ret = file_pwrite(v->fd, v->footer, VHD_FOOTER_SIZE, end);
	memset(bm, v->type == VHD_DIFF ? 0x00 : 0xff, v->bm_size);
	if (!ret)
		ret = file_pwrite(v->fd, bm, v->bm_size, start);
	if (ret) {
		free(bm);
		return ret;
	}
	v->footer_off = end;
	v->file_size = end + VHD_FOOTER_SIZE;
	put_be32(v->bat + (size_t)block * 4, (uint32_t)(start / VHD_SECTOR));
	vhd_mark_dirty(v, block / (VHD_SECTOR / 4));
	if (v->type == VHD_DIFF) {
		v->bitmaps[block] = bm;
	} else {
		free(bm);
	}
	v->allocated += v->block_size;
	v->d->info.allocated = v->allocated;
	v->d->info.file_size = v->file_size;
	if (v->ndirty >= VHD_COMMIT_THRESHOLD)
		vhd_commit_start(v);
	*data_off = start + v->bm_size;
	return 0;
}

/* ---- requests --------------------------------------------------------- */

static void seg_done(struct io_op *op, int res)
{
	struct vdisk_seg *seg = (struct vdisk_seg *)op;
	struct vdisk_req *req = seg->req;
	struct vhd *v = seg->level->priv;

	if (res == -EOPNOTSUPP || res == -EINVAL) {
		/* A zeroing the file system cannot do: write the zeros. */
		if (req->op == VDISK_DISCARD || req->op == VDISK_WRITE_ZEROES)
			res = file_write_zeros(v->fd, seg->file_off, seg->len);
	}
	if (res >= 0 && seg->reveal)
		mark_present(v, seg->voff, seg->len);
	vdisk_seg_put(req->disk, seg);
	vdisk_req_put(req, res < 0 ? res : 0);
}

static struct vdisk_seg *seg_new(struct vdisk *level, struct vdisk_req *req,
				 unsigned int iovcnt, uint64_t file_off,
				 uint64_t len, uint64_t voff, bool reveal)
{
	struct vdisk_seg *seg = vdisk_seg_get(req->disk, req, iovcnt);

	if (!seg)
		return NULL;
	seg->op.cb = seg_done;
	seg->level = level;
	seg->file_off = file_off;
	seg->len = len;
	seg->voff = voff;
	seg->reveal = reveal;
	return seg;
}

static int queue_rw(struct vdisk *level, struct vdisk_req *req, size_t skip,
		    size_t len, uint64_t file_off, uint64_t voff, bool reveal)
{
	struct vdisk_seg *seg = seg_new(level, req, req->iovcnt, file_off, len,
					voff, reveal);
	int ret;

	if (!seg)
		return -ENOMEM;
	seg->iovcnt = iov_slice(req->iov, req->iovcnt, skip, len, seg->iov);
	ret = io_engine_rw(level->eng, &seg->op, level->fd, req->op == VDISK_WRITE,
			   seg->iov, seg->iovcnt, file_off, 0);
	if (ret) {
		vdisk_seg_put(req->disk, seg);
		req->pending--;
	}
	return ret;
}

static int vhd_read_file(struct vdisk *d, struct vdisk_req *req, size_t skip,
			 size_t len, uint64_t file_off)
{
	return queue_rw(d, req, skip, len, file_off, 0, false);
}

/* Make [file_off, file_off + len) read as zeros. */
static int queue_zero(struct vhd *v, struct vdisk_req *req, uint64_t file_off,
		      uint64_t len, uint64_t voff, bool reveal)
{
	struct vdisk_seg *seg = seg_new(v->d, req, 0, file_off, len, voff, reveal);
	/* A fixed disk keeps its space; the others give it back. */
	int mode = (v->type == VHD_FIXED ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE) |
		   FALLOC_FL_KEEP_SIZE;
	int ret;

	if (!seg)
		return -ENOMEM;
	ret = io_engine_fallocate(v->d->eng, &seg->op, v->fd, mode, file_off, len, 0);
	if (ret) {
		vdisk_seg_put(v->d, seg);
		req->pending--;
	}
	return ret;
}

static int write_piece(struct vhd *v, struct vdisk_req *req, size_t done,
		       size_t n, uint64_t pos)
{
	uint32_t block;
	uint64_t in_block, data;
	int ret;

	if (v->type == VHD_FIXED)
		return queue_rw(v->d, req, done, n, pos, pos, false);
	block = (uint32_t)(pos / v->block_size);
	in_block = pos % v->block_size;
	if (vhd_bat_get(v, block) == VHD_UNUSED) {
		ret = alloc_block(v, block, &data);
		if (ret)
			return ret;
	} else {
		data = vhd_block_off(v, block) + v->bm_size;
	}
	return queue_rw(v->d, req, done, n, data + in_block, pos,
			v->type == VHD_DIFF);
}

static int zero_piece(struct vhd *v, struct vdisk_req *req, uint64_t pos,
		      uint64_t n)
{
	uint32_t block;
	uint64_t in_block, data;
	int ret;

	if (v->type == VHD_FIXED)
		return queue_zero(v, req, pos, n, pos, false);
	block = (uint32_t)(pos / v->block_size);
	in_block = pos % v->block_size;
	if (vhd_bat_get(v, block) == VHD_UNUSED) {
		if (v->type == VHD_DYNAMIC)
			return 0;	/* reads as zeros already */
		/* A new block is zeros: the sectors are present at once. */
		ret = alloc_block(v, block, &data);
		if (!ret)
			mark_present(v, pos, n);
		return ret;
	}
	data = vhd_block_off(v, block) + v->bm_size;
	if (v->type == VHD_DYNAMIC && n == v->block_size) {
		/* The whole block goes; its entry changes at the next commit. */
		ret = queue_zero(v, req, vhd_block_off(v, block),
				 v->bm_size + v->block_size, pos, false);
		put_be32(v->bat + (size_t)block * 4, VHD_UNUSED);
		vhd_mark_dirty(v, block / (VHD_SECTOR / 4));
		v->allocated -= v->block_size;
		v->d->info.allocated = v->allocated;
		return ret;
	}
	return queue_zero(v, req, data + in_block, n, pos, v->type == VHD_DIFF);
}

static void vhd_flush(struct vhd *v, struct vdisk_req *req)
{
	struct vdisk_seg *seg;
	int ret;

	if (v->broken) {
		vdisk_req_launch(req, v->broken);
		return;
	}
	if (v->phase != VHD_COMMIT_IDLE || v->ndirty) {
		req->pending++;
		req->next = v->next_waiters;
		v->next_waiters = req;
		vhd_commit_start(v);
		vdisk_req_launch(req, 0);
		return;
	}
	seg = seg_new(v->d, req, 0, 0, 0, 0, false);
	if (!seg) {
		vdisk_req_launch(req, -ENOMEM);
		return;
	}
	ret = io_engine_fsync(v->d->eng, &seg->op, v->fd, false, 0);
	if (ret) {
		vdisk_seg_put(v->d, seg);
		req->pending--;
	}
	vdisk_req_launch(req, ret);
}

static int vhd_submit(struct vdisk *d, struct vdisk_req *req)
{
	struct vhd *v = d->priv;
	uint64_t pos = req->offset;
	size_t done = 0;
	int ret = 0;

	vdisk_req_begin(d, req);
	if (req->op == VDISK_FLUSH) {
		vhd_flush(v, req);
		return 0;
	}
	if (req->op == VDISK_READ) {
		vdisk_req_launch(req, vdisk_chain_read(d, req));
		return 0;
	}
	if (v->broken) {
		vdisk_req_launch(req, v->broken);
		return 0;
	}
	while (done < req->len && !ret) {
		uint64_t n = v->type == VHD_FIXED ? req->len :
			     v->block_size - pos % v->block_size;

		if (n > req->len - done)
			n = req->len - done;
		if (req->op == VDISK_WRITE)
			ret = write_piece(v, req, done, (size_t)n, pos);
		else
			ret = zero_piece(v, req, pos, n);
		pos += n;
		done += (size_t)n;
	}
	if (v->ndirty >= VHD_COMMIT_THRESHOLD)
		vhd_commit_start(v);
	vdisk_req_launch(req, ret);
	return 0;
}

static int vhd_close(struct vdisk *d)
{
	struct vhd *v = d->priv;
	int ret = 0;

	if (!d->read_only && !d->no_io && v->type != VHD_FIXED)
		ret = vhd_commit_all(v);
	vhd_state_free(v);
	d->priv = NULL;
	return ret;
}

int vhd_footer_sync(struct vdisk *d)
{
	struct vhd *v = d->priv;
	int ret;

	if (v->type == VHD_FIXED || !v->copy_stale || d->read_only)
		return 0;
	ret = file_pwrite(v->fd, v->footer, VHD_FOOTER_SIZE, 0);
	if (!ret && fdatasync(v->fd) < 0)
		ret = -errno;
	if (!ret)
		v->copy_stale = false;
	return ret;
}

const struct vdisk_ops vhd_ops = {
	.submit = vhd_submit,
	.map = vhd_map,
	.read_file = vhd_read_file,
	.close = vhd_close,
};

int vhd_open_fd(struct vdisk *d, struct vhdx_report *r)
{
	struct vhd *v = calloc(1, sizeof(*v));
	int ret;

	if (!v)
		return -ENOMEM;
	v->d = d;
	v->fd = d->fd;
	d->priv = v;
	d->ops = &vhd_ops;
	ret = vhd_parse(v, r);
	if (ret) {
		vhd_state_free(v);
		d->priv = NULL;
		d->ops = NULL;
		return ret;
	}
	d->info.format = VDISK_FORMAT_VHD;
	d->info.type = v->type == VHD_FIXED ? VDISK_TYPE_FIXED :
		       v->type == VHD_DYNAMIC ? VDISK_TYPE_DYNAMIC :
						VDISK_TYPE_DIFFERENCING;
	d->info.virtual_size = v->size;
	d->info.logical_sector_size = VHD_SECTOR;
	d->info.physical_sector_size = VHD_SECTOR;
	d->info.block_size = v->type == VHD_FIXED ? 0 : v->block_size;
	d->info.file_size = v->file_size;
	d->info.allocated = v->type == VHD_FIXED ? v->size : v->allocated;
	memcpy(d->identity.b, v->footer + FT_UNIQUE_ID, 16);
	guid_format(&d->identity, d->info.identity);
	snprintf(d->info.disk_id, sizeof(d->info.disk_id), "%s", d->info.identity);
	if (d->nrefs)
		snprintf(d->info.parent, sizeof(d->info.parent), "%s",
			 d->refs[0].value);
	d->info.alignment = d->direct || v->type == VHD_DIFF ? VHD_SECTOR : 1;
	return 0;
}
