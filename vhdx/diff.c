// SPDX-License-Identifier: MIT
/*
 * Writes to a differencing VHDX: copy-on-write at sector granularity.
 *
 * A write to a block the child does not have allocates one, partially
 * present with every sector still the parent's, and writes the data
 * there; only when the write has completed are its sectors marked
 * present in the sector bitmap.  So a read never sees a sector that is
 * neither the parent's nor the new data, and a bitmap change reaches the
 * log only after the data it reveals was written (the commit flushes
 * that data before the log entry, vhdx/io.c).  Requests are whole
 * logical sectors (the disk's alignment), so no sector is ever half
 * the parent's.  Allocations and bitmap changes go through the log like
 * every other metadata change.
 */
#include <errno.h>
#include <string.h>

#include "vhdx/state.h"

int vhdx_diff_write(struct vhdx *v, struct vdisk_req *req, size_t done,
		    size_t n, uint64_t pos)
{
	uint64_t block = pos / v->block_size;
	uint64_t in_block = pos % v->block_size;
	uint64_t e = bat_get(v, bat_payload_index(v, block));
	uint64_t base = (e >> BAT_OFFSET_SHIFT) * MiB;
	int ret;

	switch (e & BAT_STATE_MASK) {
	case PAYLOAD_BLOCK_FULLY_PRESENT:
		return vhdx_queue_seg(v, req, done, n, base + in_block, pos, false);
	case PAYLOAD_BLOCK_PARTIALLY_PRESENT:
		return vhdx_queue_seg(v, req, done, n, base + in_block, pos, true);
	case PAYLOAD_BLOCK_NOT_PRESENT:
		ret = vhdx_alloc_block(v, block, PAYLOAD_BLOCK_PARTIALLY_PRESENT,
				       &base);
		if (ret)
			return ret;
		return vhdx_queue_seg(v, req, done, n, base + in_block, pos, true);
	default:
		/*
		 * ZERO (and the states that read as zeros) hides the parent:
		 * a new block of zeros, all of it present, is the same disk.
		 */
		ret = vhdx_alloc_block(v, block, PAYLOAD_BLOCK_FULLY_PRESENT, &base);
		if (ret)
			return ret;
		return vhdx_queue_seg(v, req, done, n, base + in_block, pos, false);
	}
}

/* A whole block reads as zeros from now on: ZERO, its space returned. */
static int zero_block(struct vhdx *v, struct vdisk_req *req, uint64_t block)
{
	uint64_t idx = bat_payload_index(v, block);
	uint64_t e = bat_get(v, idx);
	unsigned int state = e & BAT_STATE_MASK;
	int ret = 0;

	if (state == PAYLOAD_BLOCK_ZERO)
		return 0;
	if (state == PAYLOAD_BLOCK_FULLY_PRESENT ||
	    state == PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
		ret = vhdx_queue_zero(v, req, (e >> BAT_OFFSET_SHIFT) * MiB,
				      v->block_size, 0, false);
		v->allocated -= v->block_size;
		v->d->info.allocated = v->allocated;
	}
	put64(v->bat + idx * 8, PAYLOAD_BLOCK_ZERO);
	vhdx_mark_dirty(v, idx);
	return ret;
}

/* Part of a block reads as zeros, hiding the parent there. */
static int zero_part(struct vhdx *v, struct vdisk_req *req, uint64_t pos,
		     uint64_t n)
{
	uint64_t block = pos / v->block_size;
	uint64_t in_block = pos % v->block_size;
	uint64_t e = bat_get(v, bat_payload_index(v, block));
	uint64_t base = (e >> BAT_OFFSET_SHIFT) * MiB;
	int ret;

	switch (e & BAT_STATE_MASK) {
	case PAYLOAD_BLOCK_FULLY_PRESENT:
		return vhdx_queue_zero(v, req, base + in_block, n, pos, false);
	case PAYLOAD_BLOCK_PARTIALLY_PRESENT:
		/* Zero the sectors here, then take them from the parent's. */
		return vhdx_queue_zero(v, req, base + in_block, n, pos, true);
	case PAYLOAD_BLOCK_NOT_PRESENT:
		/* A new block is zeros already: mark the range present. */
		ret = vhdx_alloc_block(v, block, PAYLOAD_BLOCK_PARTIALLY_PRESENT,
				       &base);
		if (!ret)
			vhdx_mark_present(v, pos, n);
		return ret;
	default:
		return 0;	/* reads as zeros already */
	}
}

void vhdx_diff_zero_range(struct vhdx *v, struct vdisk_req *req)
{
	uint64_t pos = req->offset, end = req->offset + req->len;
	int ret = 0;

	while (pos < end && !ret) {
		uint64_t in_block = pos % v->block_size;
		uint64_t n = v->block_size - in_block;

		if (n > end - pos)
			n = end - pos;
		if (n == v->block_size)
			ret = zero_block(v, req, pos / v->block_size);
		else
			ret = zero_part(v, req, pos, n);
		pos += n;
	}
	if (v->ndirty >= COMMIT_THRESHOLD)
		vhdx_commit_start(v);
	vdisk_req_launch(req, ret);
}
