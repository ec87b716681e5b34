/* SPDX-License-Identifier: MIT */
/* The state of an open VHDX file, private to vhdx/. */
#ifndef FSVISOR_VHDX_STATE_H
#define FSVISOR_VHDX_STATE_H

#include "vhdx/internal.h"

/* Most BAT sectors one log entry carries: one descriptor sector's worth. */
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

/* One metadata transaction in flight: a log entry, then the BAT writes. */
struct commit {
	enum commit_phase phase;
	uint8_t *entry;			/* the log entry, linear */
	uint8_t *snap;			/* snapshot of the BAT sectors */
	uint32_t idx[COMMIT_MAX_SECTORS];
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
	char parent[512];

	uint64_t chunk_ratio;
	uint64_t data_blocks;
	uint64_t bat_entries;
	uint8_t *bat;			/* on-disk bytes, whole sectors */
	size_t bat_bytes;

	/* BAT sectors changed in memory and not yet committed. */
	uint8_t *dirty_map;		/* one byte per BAT sector */
	uint32_t *dirty_list;
	uint32_t ndirty;

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

static inline uint64_t bat_payload_index(const struct vhdx *v, uint64_t block)
{
	return block + block / v->chunk_ratio;
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
/* Build a log entry for @n BAT sectors from @snap into @entry. */
uint32_t vhdx_log_build(struct vhdx *v, uint8_t *entry, const uint8_t *snap,
			const uint32_t *idx, uint32_t n, uint64_t seq,
			uint32_t tail);

/* io.c */
void vhdx_commit_start(struct vhdx *v);
/* Commit every dirty BAT sector, waiting on the engine. */
int vhdx_commit_all(struct vhdx *v);

#endif /* FSVISOR_VHDX_STATE_H */
