/* SPDX-License-Identifier: MIT */
/* The state of an open VHDX file, private to vhdx/. */
#ifndef FSVISOR_VHDX_STATE_H
#define FSVISOR_VHDX_STATE_H

#include "vhdx/internal.h"

/* Most sectors one log entry carries: one descriptor sector's worth. */
#define COMMIT_MAX_SECTORS	LOG_DESC_FIRST_SECTOR
/* Dirty BAT sectors that start a commit without waiting for a flush. */
#define COMMIT_THRESHOLD	64

/* A range of the file as the replayed log says it should be. */
struct overlay {
	uint64_t off;
	uint64_t len;
	uint8_t *data;			/* NULL: zeros */
};

enum commit_phase {
	COMMIT_IDLE,
	COMMIT_DATA_SYNC,		/* data the entry makes visible, first */
	COMMIT_LOG_WRITE,
	COMMIT_LOG_SYNC,
	COMMIT_BAT_WRITE,
	COMMIT_BAT_SYNC,
};

struct commit_io {
	struct io_op op;
	struct vhdx *v;
	struct iovec iov;
};

/* One 4 KiB sector of the file, as a log entry carries it. */
struct log_sector {
	uint64_t off;			/* where it goes: 4 KiB aligned */
	const uint8_t *data;		/* VHDX_SECTOR bytes */
};

/* The header fields of a log entry (MS-VHDX 2.3.1.1). */
struct log_entry_head {
	struct guid log_guid;
	uint64_t seq;
	uint32_t tail;			/* log offset of the oldest live entry */
	uint64_t flushed;		/* FlushedFileOffset */
	uint64_t last;			/* LastFileOffset */
};

/*
 * One metadata transaction in flight: a log entry, then the in-place
 * writes of its sectors (BAT sectors, or any others for a resize).
 */
struct commit {
	enum commit_phase phase;
	uint8_t *entry;			/* the log entry, linear */
	uint8_t *snap;			/* the sectors' new contents */
	uint64_t target[COMMIT_MAX_SECTORS];	/* ascending file offsets */
	uint32_t n;
	int pending;			/* I/O of the current phase */
	int error;
	struct commit_io io[COMMIT_MAX_SECTORS + 2];
	struct vdisk_req *waiters;	/* flushes this commit completes */
};

struct vhdx {
	struct vdisk *d;
	int fd;
	uint64_t file_size;		/* as far as we know (or replayed) */

	/* The current header, and the session's header updates. */
	uint8_t *hdr;			/* VHDX_HEADER_SIZE bytes */
	int hdr_slot;			/* 0: at 64 KiB, 1: at 128 KiB */
	uint64_t hdr_seq;
	bool file_guid_done;
	bool data_guid_done;
	struct guid log_guid;		/* as in the current header */

	uint64_t log_offset;
	uint32_t log_length;
	uint64_t bat_offset;
	uint32_t bat_length;
	uint64_t meta_offset;
	uint32_t meta_length;
	int good_region;		/* copy the region table was read from */
	struct region {
		uint64_t off;
		uint32_t len;
	} *regions;			/* every region, known or not */
	uint32_t nregions;

	/* Metadata items. */
	uint32_t block_size;
	uint32_t lss;			/* logical sector size */
	uint32_t pss;			/* physical sector size */
	uint64_t vsize;
	struct guid disk_id;
	bool has_parent;
	bool leave_allocated;
	uint32_t vsize_item;		/* offset of Virtual Disk Size in the region */
	uint32_t locator_item;		/* the parent locator's offset and */
	uint32_t locator_len;		/* length in the region (0: none) */
	uint32_t record_item;		/* the merge record's offset (0: none) */
	uint32_t record_pending;	/* the same, for a transaction under way */

	uint64_t chunk_ratio;
	uint64_t data_blocks;
	uint64_t bat_entries;
	uint8_t *bat;			/* on-disk bytes, whole sectors */
	size_t bat_bytes;

	/*
	 * Differencing: each chunk's sector bitmap block (1 MiB), in
	 * memory whole, or NULL when the chunk has none.
	 */
	uint8_t **sb;
	uint64_t nchunks;

	/*
	 * Metadata sectors changed in memory and not yet committed, by id:
	 * BAT sectors first (0 .. bat_sectors - 1), then the sectors of
	 * each chunk's bitmap (SB_SECTORS per chunk).
	 */
	uint8_t *dirty_map;		/* one byte per id */
	uint32_t *dirty_list;
	uint32_t ndirty;
	uint32_t bat_sectors;
	/*
	 * Dirty sectors that make written data visible (sector bitmap
	 * bits): the data must be on disk before the log entry is.
	 */
	bool need_data_sync;

	uint64_t alloc_end;		/* where the next block goes */
	uint64_t durable_size;		/* file size known to be stable */
	uint64_t allocated;		/* payload bytes present */

	/* Log writer. */
	struct guid session_log_guid;	/* LogGuid of this session's entries */
	uint64_t log_seq;
	uint32_t log_head;
	struct commit commit;
	struct vdisk_req *next_waiters;	/* flushes for the next commit */
	int broken;			/* a failed commit: all I/O fails */

	/* Read-only open of a file with a dirty log: the replay, in memory. */
	struct overlay *ov;
	size_t nov;

	/* Repair mode (check --repair): what to rewrite at close. */
	bool repairing;
	bool rewrite_headers;
	bool rewrite_regions;
	uint8_t *region_good;		/* VHDX_REGION_SIZE bytes */
};

/* 4 KiB sectors in a 1 MiB sector bitmap block. */
#define SB_SECTORS	(MiB / VHDX_SECTOR)

static inline uint64_t bat_payload_index(const struct vhdx *v, uint64_t block)
{
	return block + block / v->chunk_ratio;
}

static inline uint64_t bat_bitmap_index(const struct vhdx *v, uint64_t chunk)
{
	return chunk * (v->chunk_ratio + 1) + v->chunk_ratio;
}

static inline uint64_t bat_get(const struct vhdx *v, uint64_t idx)
{
	return get64(v->bat + idx * 8);
}

/* open.c */
/* Read @len bytes at @off as the (replayed) file has them. */
int vhdx_read_meta(struct vhdx *v, void *buf, size_t len, uint64_t off);
void overlay_apply(const struct vhdx *v, uint8_t *buf, size_t len,
		   uint64_t off);
/* Parse everything; used by open and by check. */
int vhdx_parse(struct vhdx *v, struct vhdx_report *r);
void vhdx_state_free(struct vhdx *v);
void vhdx_mark_dirty(struct vhdx *v, uint64_t bat_idx);
/* The dirty set, sized for the BAT and (differencing) the bitmaps. */
int vhdx_dirty_alloc(struct vhdx *v);
/* Load every present sector bitmap block (differencing disks). */
int vhdx_load_bitmaps(struct vhdx *v, struct vhdx_report *r);

/* header.c */
/*
 * Write a new current header, twice so both copies agree.  The first
 * update of a session takes a new FileWriteGuid; @data_change a new
 * DataWriteGuid (once); @log_guid becomes the LogGuid.
 */
int vhdx_header_update(struct vhdx *v, bool data_change,
		       const struct guid *log_guid);

/* log.c */
/* Replay a dirty log: into the file, or into v->ov when read-only. */
int vhdx_log_replay(struct vhdx *v, struct vhdx_report *r, bool in_memory);
/*
 * Build into @entry (room for 1 + @n sectors) a log entry with header
 * @h that writes the @n sectors @s, any sectors of the file.  Returns the
 * entry's length, or 0 when @n is more than one descriptor sector holds
 * or a target is not 4 KiB aligned.
 */
uint32_t vhdx_log_build(uint8_t *entry, const struct log_entry_head *h,
			const struct log_sector *s, uint32_t n);

/* io.c */
/*
 * Queue a read or write (as @req says) of @len bytes at @file_off of
 * the file, from @req's buffers at @skip.  With @reveal, a write marks
 * its sectors present in the sector bitmap once it has completed.
 */
int vhdx_queue_seg(struct vhdx *v, struct vdisk_req *req, size_t skip,
		   size_t len, uint64_t file_off, uint64_t voff, bool reveal);
/* Make [file_off, file_off + len) read as zeros; @reveal as above. */
int vhdx_queue_zero(struct vhdx *v, struct vdisk_req *req, uint64_t file_off,
		    uint64_t len, uint64_t voff, bool reveal);
/* A new block for @block at the end of the file, in @state. */
int vhdx_alloc_block(struct vhdx *v, uint64_t block, unsigned int state,
		     uint64_t *off);
void vhdx_commit_start(struct vhdx *v);
/* Commit every dirty BAT sector, waiting on the engine. */
int vhdx_commit_all(struct vhdx *v);
/*
 * Commit @n sectors of the file (at most COMMIT_MAX_SECTORS, distinct
 * targets) as one log entry, after any dirty BAT sectors, and wait until
 * they are in place and flushed.  All or none of them survive a crash.
 */
int vhdx_commit_sectors(struct vhdx *v, const struct log_sector *s,
			uint32_t n);

/* bitmap.c: sector bitmaps of differencing disks. */
/* See vdisk_ops.map. */
enum vmap vhdx_map(struct vdisk *d, uint64_t off, uint64_t *len,
		   uint64_t *file_off);
/* The sectors of [voff, voff + len) are present now (a write landed). */
void vhdx_mark_present(struct vhdx *v, uint64_t voff, uint64_t len);
/* Give chunk @chunk a sector bitmap block, if it has none. */
int vhdx_bitmap_ensure(struct vhdx *v, uint64_t chunk);
/* Clear the bits of @block (before it becomes partially present). */
void vhdx_bitmap_clear_block(struct vhdx *v, uint64_t block);

/* diff.c: writes and zeroing on differencing disks. */
int vhdx_diff_write(struct vhdx *v, struct vdisk_req *req, size_t done,
		    size_t n, uint64_t pos);
void vhdx_diff_zero_range(struct vhdx *v, struct vdisk_req *req);

/* txn.c */
/* Sectors one atomic transaction can carry in this file's log. */
uint32_t vhdx_txn_capacity(const struct vhdx *v);
/*
 * Write @n sectors of the file as one transaction (see txn.c), the file
 * at least @last bytes long afterwards, with a new DataWriteGuid.
 * *committed says whether it passed its commit point: if so and it
 * failed after, the next open's replay finishes it.
 */
int vhdx_commit_atomic(struct vhdx *v, const struct log_sector *s, uint32_t n,
		       uint64_t last, bool *committed);

/* record.c: the merge record, a user metadata item. */
/*
 * The sectors (in @buf, 2 x VHDX_SECTOR) that add an entry for a merge
 * that changed DataWriteGuid @old (merging @child into this disk) to
 * the record; *n of them in @out.  0, or -ENOSPC when the metadata
 * region has no room for the item (the merge goes on without it).
 */
int vhdx_record_sectors(struct vhdx *v, const struct guid *old,
			const char *child, uint8_t *buf,
			struct log_sector *out, uint32_t *n);
/* Where the record lives, once the transaction carrying it is in place. */
void vhdx_record_adopt(struct vhdx *v);
bool vhdx_stale_reason(struct vdisk *d, const struct guid *linkage,
		       char *buf, size_t len);

/* resize.c */
/* Grow the open disk to @new_size; see vdisk_resize(). */
int vhdx_grow(struct vhdx *v, uint64_t new_size, char *err, size_t errlen);

#endif /* FSVISOR_VHDX_STATE_H */
