/* SPDX-License-Identifier: MIT */
/*
 * The state of a merge (vhdx/merge.c), shared with the code for each
 * format of ancestor: vhdx/merge_vhdx.c and vhdx/merge_vhd.c.
 */
#ifndef FSVISOR_MERGE_H
#define FSVISOR_MERGE_H

#include "vhdx/state.h"
#include "vhdx/vhd_state.h"

#define UNIT_MAX	(1 * MiB)	/* one read and one write of a copy */
#define DEPTH		8		/* units in flight */
#define JOBS		4		/* blocks in flight */
#define STEP_BYTES	(64 * MiB)	/* copied per step, unless told */
#define DIRTY_ROUNDS	4		/* steps of copying again, at most */
#define EXTEND_AHEAD	(256 * MiB)	/* A grows ahead of its copies by this */
#define JOURNAL_MAGIC	"fsvmergj"
#define JOURNAL_MAX	(64 * KiB)

enum block_state {
	B_TODO,				/* not reached by the main pass */
	B_DONE,
	B_DIRTY,			/* written since it was copied */
};

/* A block of A being copied: several are in flight at once. */
struct job {
	uint64_t b;
	bool active;
	bool all;			/* the result holds every sector */
	bool nonzero, recopy;
	bool redo;			/* written meanwhile: copy it again */
	uint8_t *mask;			/* sectors the result holds (differencing A) */
	uint64_t next_unit, end;
	unsigned int pending;		/* its units in flight */
};

struct unit {
	struct vdisk_req req;		/* the chain read */
	struct iovec iov;
	struct io_op wop;		/* the write into A */
	struct iovec wiov;
	struct vdisk_merge *m;
	struct job *job;
	uint8_t *buf;
	uint64_t off, len;		/* virtual */
	bool busy;
};

struct vdisk_merge;

/* What a merge does that depends on the ancestor's format. */
struct merge_target {
	/* Block size and count, a copy of the BAT, what the commit needs. */
	int (*setup)(struct vdisk_merge *m);
	/* Where the data of block @b's new copy begins (placed on first use). */
	uint64_t (*place)(struct vdisk_merge *m, uint64_t b);
	/* Block @b is copied: its entry in the new BAT (and its bitmap). */
	int (*finish)(struct vdisk_merge *m, struct job *j);
	/* Where block @b's data is in A now, or 0. */
	uint64_t (*old_place)(struct vdisk_merge *m, uint64_t b);
	/* Flush the copies and switch A to them atomically (see each). */
	int (*commit)(struct vdisk_merge *m, bool *committed);
	/* A's open state takes the new layout; unused space goes. */
	void (*adopt)(struct vdisk_merge *m);
	void (*release)(struct vdisk_merge *m);
};

extern const struct merge_target merge_vhdx;
extern const struct merge_target merge_vhd;

struct vdisk_merge {
	const struct merge_target *t;
	struct vdisk *d;		/* the open child, the top */
	struct vdisk *a;		/* the ancestor merged into */
	struct vhdx *av;		/* A's state, when it is a VHDX file */
	struct vhd *vv;			/* or a VHD file */
	bool a_has_parent;		/* A is differencing itself */
	struct vdisk *above[VDISK_MAX_CHAIN];	/* d .. A's child */
	unsigned int nabove;
	bool offline;
	bool keep_files;
	uint64_t step_bytes;		/* copied per step at most */
	char *journal;
	char *files[VDISK_MAX_CHAIN];	/* removed when it is done */
	unsigned int nfiles;
	struct guid old_dwg;
	uint64_t orig_size;		/* A's size before: the rollback point */
	uint64_t end;			/* where the next new block goes */
	uint64_t extended;		/* A's file size, made ahead */

	uint64_t bs, nblocks, cursor;
	uint8_t *bstate;
	uint64_t *newoff;		/* each block's copy in A (0: none) */
	uint8_t *bat;			/* A's BAT as the merge leaves it */
	uint8_t **sb;			/* VHDX: a differencing A's new bitmaps */
	uint64_t *sb_at;
	/* VHD: where the commit puts the new BAT, header and footer. */
	uint64_t vbat_at, vhdr_at, vfooter_at;
	uint8_t *vheader, *vfooter;
	uint64_t todo;			/* blocks to copy again */
	uint64_t scan;			/* where the search for them goes on */
	unsigned int rounds;		/* steps spent copying again */

	struct job jobs[JOBS];
	unsigned int inflight;		/* units */
	uint32_t unit_len;
	struct unit units[DEPTH];
	int error;
};


/* merge.c */
/* @len bytes of new space in A, after everything else; its offset. */
uint64_t merge_alloc(struct vdisk_merge *m, uint64_t len, uint64_t align,
		     uint64_t before);
/* Punch out [off, off + len) of A, neighbouring ranges as one. */
struct punch {
	int fd;
	uint64_t off, len;
};
void punch_add(struct punch *p, uint64_t off, uint64_t len);
void punch_flush(struct punch *p);

#endif /* FSVISOR_MERGE_H */
