// SPDX-License-Identifier: MIT
/*
 * What a VHDX file holds at a virtual offset, and the sector bitmaps of
 * differencing disks (MS-VHDX 2.4): one bit per logical sector, bit 0 of
 * byte 0 first, 1 where the sector is in this file and 0 where it is the
 * parent's.  A 1 MiB bitmap block describes a chunk of 2^23 sectors.
 *
 * Bits only mean something in a PARTIALLY_PRESENT block; a block's bits
 * are cleared before it becomes one, so whatever they held before (a
 * block that was zeroed, another writer's leftovers) never shows.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhdx/state.h"

static bool bit_get(const uint8_t *bm, uint64_t i)
{
	return (bm[i >> 3] >> (i & 7)) & 1;
}

/* Bits from @start with the value of the first, at most @max of them. */
static uint64_t bit_run(const uint8_t *bm, uint64_t start, uint64_t max,
			bool *value)
{
	bool v = bit_get(bm, start);
	uint64_t want = v ? ~0ULL : 0, i = start, end = start + max;

	while (i < end) {
		if ((i & 63) == 0 && end - i >= 64 && get64(bm + (i >> 3)) == want) {
			i += 64;
			continue;
		}
		if (bit_get(bm, i) != v)
			break;
		i++;
	}
	*value = v;
	return i - start;
}

/* A PARTIALLY_PRESENT block: the run of present or absent sectors. */
static enum vmap partial_map(struct vhdx *v, uint64_t off, uint64_t *len,
			     uint64_t file_off, uint64_t *out)
{
	uint64_t sector = off / v->lss;
	uint64_t chunk = sector / VHDX_CHUNK_SECTORS;
	uint64_t last = (off + *len + v->lss - 1) / v->lss;
	const uint8_t *bm = chunk < v->nchunks ? v->sb[chunk] : NULL;
	uint64_t run, end;
	bool present;

	if (!bm)
		return VMAP_BELOW;
	run = bit_run(bm, sector % VHDX_CHUNK_SECTORS, last - sector, &present);
	end = (sector + run) * v->lss;
	if (end < off + *len)
		*len = end - off;
	*out = file_off;
	return present ? VMAP_DATA : VMAP_BELOW;
}

enum vmap vhdx_map(struct vdisk *d, uint64_t off, uint64_t *len,
		   uint64_t *file_off)
{
	struct vhdx *v = d->priv;
	uint64_t block = off / v->block_size;
	uint64_t in_block = off % v->block_size;
	uint64_t e = bat_get(v, bat_payload_index(v, block));
	uint64_t base = (e >> BAT_OFFSET_SHIFT) * MiB;

	if (*len > v->block_size - in_block)
		*len = v->block_size - in_block;
	switch (e & BAT_STATE_MASK) {
	case PAYLOAD_BLOCK_FULLY_PRESENT:
		*file_off = base + in_block;
		return VMAP_DATA;
	case PAYLOAD_BLOCK_PARTIALLY_PRESENT:
		return partial_map(v, off, len, base + in_block, file_off);
	case PAYLOAD_BLOCK_NOT_PRESENT:
		return v->has_parent ? VMAP_BELOW : VMAP_ZERO;
	default:
		/* ZERO; UNDEFINED and UNMAPPED may read as anything: zeros. */
		return VMAP_ZERO;
	}
}

int vhdx_load_bitmaps(struct vhdx *v, struct vhdx_report *r)
{
	v->nchunks = (v->data_blocks + v->chunk_ratio - 1) / v->chunk_ratio;
	v->sb = calloc(v->nchunks, sizeof(*v->sb));
	if (!v->sb)
		return -ENOMEM;
	for (uint64_t c = 0; c < v->nchunks; c++) {
		uint64_t e = bat_get(v, bat_bitmap_index(v, c));
		int ret;

		if ((e & BAT_STATE_MASK) != SB_BLOCK_PRESENT)
			continue;
		v->sb[c] = vhdx_alloc(MiB);
		if (!v->sb[c])
			return -ENOMEM;
		ret = vhdx_read_meta(v, v->sb[c], MiB, (e >> BAT_OFFSET_SHIFT) * MiB);
		if (ret)
			return ret;
	}
	/* A partially present block needs its chunk's bitmap. */
	for (uint64_t b = 0; b < v->data_blocks; b++) {
		uint64_t idx = bat_payload_index(v, b);
		uint64_t e = bat_get(v, idx);

		if ((e & BAT_STATE_MASK) == PAYLOAD_BLOCK_PARTIALLY_PRESENT &&
		    !v->sb[b / v->chunk_ratio]) {
			int ret = vhdx_problem(r, "BAT entry %llu is partially present but its chunk has no sector bitmap",
					       (unsigned long long)idx);

			if (ret)
				return ret;
		}
	}
	return 0;
}

static void mark_sb_dirty(struct vhdx *v, uint64_t chunk, uint64_t byte)
{
	uint32_t id = v->bat_sectors + (uint32_t)(chunk * SB_SECTORS +
						  byte / VHDX_SECTOR);

	if (v->dirty_map[id])
		return;
	v->dirty_map[id] = 1;
	v->dirty_list[v->ndirty++] = id;
}

int vhdx_bitmap_ensure(struct vhdx *v, uint64_t chunk)
{
	uint64_t idx = bat_bitmap_index(v, chunk);
	uint64_t o = (v->alloc_end + VHDX_ALIGN - 1) & ~(VHDX_ALIGN - 1);

	if (v->sb[chunk])
		return 0;
	v->sb[chunk] = vhdx_alloc(MiB);
	if (!v->sb[chunk])
		return -ENOMEM;
	memset(v->sb[chunk], 0, MiB);
	/* New space past the end of the file reads as zeros: all absent. */
	if (o + MiB > v->file_size) {
		if (ftruncate(v->fd, (off_t)(o + MiB)) < 0) {
			free(v->sb[chunk]);
			v->sb[chunk] = NULL;
			return -errno;
		}
		v->file_size = o + MiB;
	}
	v->alloc_end = o + MiB;
	put64(v->bat + idx * 8, o | SB_BLOCK_PRESENT);
	vhdx_mark_dirty(v, idx);
	return 0;
}

void vhdx_bitmap_clear_block(struct vhdx *v, uint64_t block)
{
	uint64_t chunk = block / v->chunk_ratio;
	uint64_t bits = v->block_size / v->lss;
	uint64_t first = (block % v->chunk_ratio) * bits / 8;
	uint8_t *bm = v->sb[chunk];

	for (uint64_t b = first; b < first + bits / 8; b++) {
		if (!bm[b])
			continue;
		memset(bm + b, 0, first + bits / 8 - b);
		for (uint64_t s = b - b % VHDX_SECTOR; s < first + bits / 8;
		     s += VHDX_SECTOR)
			mark_sb_dirty(v, chunk, s);
		return;
	}
}

/* Are all of @block's bits set? */
static bool block_full(const struct vhdx *v, uint64_t block)
{
	uint64_t bytes = v->block_size / v->lss / 8;
	const uint8_t *p = v->sb[block / v->chunk_ratio] +
			   (block % v->chunk_ratio) * bytes;

	return p[0] == 0xff && memcmp(p, p + 1, bytes - 1) == 0;
}

void vhdx_mark_present(struct vhdx *v, uint64_t voff, uint64_t len)
{
	uint64_t first = voff / v->lss, end = (voff + len) / v->lss;
	uint64_t block = voff / v->block_size;
	uint64_t chunk = first / VHDX_CHUNK_SECTORS;
	uint8_t *bm = v->sb[chunk];
	uint64_t idx = bat_payload_index(v, block);

	for (uint64_t s = first; s < end; s++) {
		uint64_t i = s % VHDX_CHUNK_SECTORS;

		bm[i >> 3] |= (uint8_t)(1u << (i & 7));
		if (s == first || (i & (8 * VHDX_SECTOR - 1)) == 0)
			mark_sb_dirty(v, chunk, i >> 3);
	}
	v->need_data_sync = true;
	/* Every sector of the block here: it is simply present from now on. */
	if ((bat_get(v, idx) & BAT_STATE_MASK) == PAYLOAD_BLOCK_PARTIALLY_PRESENT &&
	    block_full(v, block)) {
		put64(v->bat + idx * 8, (bat_get(v, idx) & ~BAT_STATE_MASK) |
					PAYLOAD_BLOCK_FULLY_PRESENT);
		vhdx_mark_dirty(v, idx);
	}
	if (v->ndirty >= COMMIT_THRESHOLD)
		vhdx_commit_start(v);
}
