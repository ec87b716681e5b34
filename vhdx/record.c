// SPDX-License-Identifier: MIT
/*
 * The merge record: a user metadata item (MS-VHDX 2.6.1.2, IsUser, not
 * required, so other readers skip it) in which a disk that a merge
 * changed keeps the DataWriteGuids it had before, with the merged child's
 * name and the time.  A child that links to one of them is stale for
 * that reason, and the open that refuses it says so (Hyper-V's
 * Merge-VHD leaves a parent's other children invalid in the same way).
 *
 * The item is one 4 KiB sector: "fsvmrgrc", version, count, entries of
 * 128 bytes (old DataWriteGuid, time, child's name), and a CRC-32C of
 * the rest in its last 4 bytes.  The newest MAX_ENTRIES are kept.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vhdx/state.h"

#define REC_MAGIC	"fsvmrgrc"
#define REC_HEAD	16
#define REC_ENTRY	128
#define REC_NAME	88
#define MAX_ENTRIES	((VHDX_SECTOR - REC_HEAD - 4) / REC_ENTRY)

static bool record_valid(const uint8_t *r)
{
	return memcmp(r, REC_MAGIC, 8) == 0 && get32(r + 8) == 1 &&
	       get32(r + 12) <= MAX_ENTRIES &&
	       crc32c(0, r, VHDX_SECTOR - 4) == get32(r + VHDX_SECTOR - 4);
}

/* Room for the item: after every other item, 4 KiB aligned. */
static int find_room(const uint8_t *table, uint32_t region_len, uint32_t *at)
{
	uint16_t count = get16(table + 10);
	uint64_t end = VHDX_METADATA_TABLE;

	if (count >= VHDX_MAX_METADATA ||
	    MT_HEADER_SIZE + (uint64_t)(count + 1) * MT_ENTRY_SIZE > VHDX_METADATA_TABLE)
		return -ENOSPC;
	for (uint16_t i = 0; i < count; i++) {
		const uint8_t *e = table + MT_HEADER_SIZE + i * MT_ENTRY_SIZE;
		uint64_t e_end = (uint64_t)get32(e + 16) + get32(e + 20);

		if (e_end > end)
			end = e_end;
	}
	end = (end + VHDX_SECTOR - 1) / VHDX_SECTOR * VHDX_SECTOR;
	if (end + VHDX_SECTOR > region_len)
		return -ENOSPC;
	*at = (uint32_t)end;
	return 0;
}

int vhdx_record_sectors(struct vhdx *v, const struct guid *old,
			const char *child, uint8_t *buf,
			struct log_sector *out, uint32_t *n)
{
	uint8_t *table = buf, *rec = buf + VHDX_SECTOR;
	uint32_t at = v->record_item, count;
	uint8_t *e;
	int ret;

	*n = 0;
	ret = vhdx_read_meta(v, table, VHDX_SECTOR, v->meta_offset);
	if (ret)
		return ret;
	if (at) {
		ret = vhdx_read_meta(v, rec, VHDX_SECTOR, v->meta_offset + at);
		if (ret)
			return ret;
		if (!record_valid(rec))
			memset(rec, 0, VHDX_SECTOR);
	} else {
		/* A new item, and its entry in the table's first sector. */
		if (get16(table + 10) >= (VHDX_SECTOR - MT_HEADER_SIZE) / MT_ENTRY_SIZE)
			return -ENOSPC;
		ret = find_room(table, v->meta_length, &at);
		if (ret)
			return ret;
		e = table + MT_HEADER_SIZE + get16(table + 10) * MT_ENTRY_SIZE;
		memset(e, 0, MT_ENTRY_SIZE);
		memcpy(e, guid_merge_record.b, 16);
		put32(e + 16, at);
		put32(e + 20, VHDX_SECTOR);
		put32(e + 24, MT_FLAG_IS_USER);
		put16(table + 10, (uint16_t)(get16(table + 10) + 1));
		out[(*n)++] = (struct log_sector){ v->meta_offset, table };
		memset(rec, 0, VHDX_SECTOR);
	}
	if (memcmp(rec, REC_MAGIC, 8) != 0) {
		memcpy(rec, REC_MAGIC, 8);
		put32(rec + 8, 1);
		put32(rec + 12, 0);
	}
	count = get32(rec + 12);
	if (count == MAX_ENTRIES) {
		/* The oldest goes. */
		memmove(rec + REC_HEAD, rec + REC_HEAD + REC_ENTRY,
			(MAX_ENTRIES - 1) * REC_ENTRY);
		count--;
	}
	e = rec + REC_HEAD + count * REC_ENTRY;
	memset(e, 0, REC_ENTRY);
	memcpy(e, old->b, 16);
	put64(e + 16, (uint64_t)time(NULL));
	snprintf((char *)e + 24, REC_NAME, "%s", child);
	put32(rec + 12, count + 1);
	put32(rec + VHDX_SECTOR - 4, crc32c(0, rec, VHDX_SECTOR - 4));
	out[(*n)++] = (struct log_sector){ v->meta_offset + at, rec };
	v->record_pending = at;
	return 0;
}

void vhdx_record_adopt(struct vhdx *v)
{
	if (v->record_pending)
		v->record_item = v->record_pending;
	v->record_pending = 0;
}

bool vhdx_stale_reason(struct vdisk *d, const struct guid *linkage,
		       char *buf, size_t len)
{
	struct vhdx *v = d->priv;
	uint8_t *rec;
	bool found = false;

	if (!v->record_item)
		return false;
	rec = vhdx_alloc(VHDX_SECTOR);
	if (!rec)
		return false;
	if (vhdx_read_meta(v, rec, VHDX_SECTOR, v->meta_offset + v->record_item) == 0 &&
	    record_valid(rec)) {
		for (uint32_t i = 0; i < get32(rec + 12) && !found; i++) {
			const uint8_t *e = rec + REC_HEAD + i * REC_ENTRY;
			char when[32], name[REC_NAME];
			time_t t = (time_t)get64(e + 16);
			struct tm tm;

			if (memcmp(e, linkage->b, 16) != 0)
				continue;
			memcpy(name, e + 24, REC_NAME);
			name[REC_NAME - 1] = 0;
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC",
				 gmtime_r(&t, &tm));
			snprintf(buf, len, "its parent %s was changed by merging %s into it on %s; a merge leaves the parent's other children invalid, as Hyper-V's Merge-VHD does",
				 d->path, name, when);
			found = true;
		}
	}
	free(rec);
	return found;
}
