/* SPDX-License-Identifier: MIT */
/* The state of an open VHD file, private to vhdx/. */
#ifndef FSVISOR_VHD_STATE_H
#define FSVISOR_VHD_STATE_H

#include "vhdx/internal.h"
#include "vhdx/vhd_format.h"

/* Metadata sectors one commit writes at most (the rest wait). */
#define VHD_COMMIT_MAX		256
/* Dirty sectors that start a commit without waiting for a flush. */
#define VHD_COMMIT_THRESHOLD	64

enum vhd_commit_phase {
	VHD_COMMIT_IDLE,
	VHD_COMMIT_DATA_SYNC,		/* what the sectors point at, first */
	VHD_COMMIT_WRITE,		/* the BAT and bitmap sectors in place */
	VHD_COMMIT_SYNC,
};

struct vhd_commit_io {
	struct io_op op;
	struct vhd *v;
	struct iovec iov;
};

struct vhd {
	struct vdisk *d;
	int fd;
	uint8_t *footer;		/* VHD_FOOTER_SIZE bytes, as in the file */
	uint8_t *header;		/* VHD_HEADER_SIZE bytes (dynamic, differencing) */
	enum vhd_type type;
	uint64_t size;
	uint64_t file_size;
	uint64_t footer_off;		/* where the footer is: after the last block */
	bool copy_stale;		/* the footer copy at 0 differs (dynamic) */

	/* Dynamic and differencing disks. */
	uint64_t header_off;
	uint64_t bat_off;
	uint32_t max_entries;
	uint32_t block_size;
	uint32_t bm_size;		/* a block's sector bitmap, whole sectors */
	uint32_t blocks;		/* blocks the disk's size needs */
	uint8_t *bat;			/* as in the file, whole sectors */
	size_t bat_bytes;
	uint8_t **bitmaps;		/* differencing: each present block's */
	uint64_t allocated;

	/*
	 * Metadata sectors changed in memory and not written yet, by id:
	 * BAT sectors (0 .. bat_sectors - 1), then each block's bitmap
	 * sectors (bm_size / 512 per block).
	 */
	uint8_t *dirty_map;
	uint32_t *dirty_list;
	uint32_t ndirty;
	uint32_t bat_sectors;

	/*
	 * Writes of sectors in place, after a flush of the data: VHD has
	 * no log, so a commit is that flush, the sectors, and a flush.  A
	 * 512-byte sector write is atomic, BAT entries and bitmap bits are
	 * independent of each other, and a new block's footer and bitmap
	 * are written before its BAT entry, so a crash leaves each entry
	 * and each bit either old or new.
	 */
	enum vhd_commit_phase phase;
	int pending;
	int cerror;
	uint32_t cn;
	uint64_t ctarget[VHD_COMMIT_MAX];
	uint8_t *csnap;
	struct vhd_commit_io cio[VHD_COMMIT_MAX + 1];
	struct vdisk_req *waiters;
	struct vdisk_req *next_waiters;
	int broken;
};

static inline uint32_t vhd_bat_get(const struct vhd *v, uint32_t block)
{
	return be32(v->bat + (size_t)block * 4);
}

static inline uint64_t vhd_block_off(const struct vhd *v, uint32_t block)
{
	return (uint64_t)vhd_bat_get(v, block) * VHD_SECTOR;
}

/* vhd.c */
int vhd_parse(struct vhd *v, struct vhdx_report *r);
void vhd_state_free(struct vhd *v);
/* CHS as the specification's appendix computes it, for @sectors. */
void vhd_geometry(uint64_t sectors, uint16_t *cyl, uint8_t *heads,
		  uint8_t *spt);
/* The size a new disk gets: @size rounded up to whole cylinders. */
uint64_t vhd_round_size(uint64_t size);
/* Fill in a footer for a new disk (or a grown one). */
void vhd_footer_build(uint8_t *f, enum vhd_type type, uint64_t size,
		      uint64_t data_offset, const struct guid *id);
void vhd_mark_dirty(struct vhd *v, uint32_t id);
int vhd_dirty_alloc(struct vhd *v);

/* vhd_io.c */
extern const struct vdisk_ops vhd_ops;
void vhd_commit_start(struct vhd *v);
int vhd_commit_all(struct vhd *v);

#endif /* FSVISOR_VHD_STATE_H */
