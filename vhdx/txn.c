// SPDX-License-Identifier: MIT
/*
 * One atomic metadata transaction of any size the log holds: the log
 * entries of a sequence under a new LogGuid, a flush, then the header
 * names that LogGuid (and gets a new DataWriteGuid) in one header write:
 * that write is the commit point.  Before it, the LogGuid in the header
 * is another one and replay ignores the entries: the file is as it was.
 * After it, replay applies the whole sequence.  Then the sectors are
 * written in place, flushed, and the log is emptied.
 *
 * A merge commits with this (vhdx/merge.c): many BAT sectors, and the
 * new DataWriteGuid that tells the disk's other children it changed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhdx/state.h"

static int cmp_sector(const void *a, const void *b)
{
	const struct log_sector *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

uint32_t vhdx_txn_capacity(const struct vhdx *v)
{
	uint32_t sectors = v->log_length / VHDX_SECTOR;

	/* One descriptor sector for every LOG_DESC_FIRST_SECTOR data sectors. */
	return sectors - (sectors + LOG_DESC_FIRST_SECTOR) / (LOG_DESC_FIRST_SECTOR + 1);
}

/* Write the sequence for @s (sorted) at the start of the log. */
static int write_entries(struct vhdx *v, const struct log_sector *s, uint32_t n,
			 const struct guid *g, uint64_t last)
{
	uint8_t *entry = vhdx_alloc((LOG_DESC_FIRST_SECTOR + 1) * VHDX_SECTOR);
	uint32_t at = 0;
	uint64_t seq = 1;
	int ret = 0;

	if (!entry)
		return -ENOMEM;
	for (uint32_t i = 0; i < n && !ret; i += LOG_DESC_FIRST_SECTOR, seq++) {
		uint32_t k = n - i < LOG_DESC_FIRST_SECTOR ? n - i : LOG_DESC_FIRST_SECTOR;
		struct log_entry_head h = {
			.log_guid = *g,
			.seq = seq,
			.tail = 0,	/* the sequence starts at the first entry */
			.flushed = last,
			.last = last,
		};
		uint32_t len = vhdx_log_build(entry, &h, s + i, k);

		if (!len || at + len > v->log_length) {
			ret = -E2BIG;
			break;
		}
		ret = file_pwrite(v->fd, entry, len, v->log_offset + at);
		at += len;
	}
	free(entry);
	return ret;
}

int vhdx_commit_atomic(struct vhdx *v, const struct log_sector *s, uint32_t n,
		       uint64_t last, bool *committed)
{
	static const struct guid zero;
	struct log_sector *sorted;
	struct stat st;
	struct guid g;
	int ret;

	*committed = false;
	if (n > vhdx_txn_capacity(v))
		return -E2BIG;
	ret = vhdx_commit_all(v);
	if (ret)
		return ret;
	sorted = malloc(sizeof(*sorted) * (n ? n : 1));
	if (!sorted)
		return -ENOMEM;
	memcpy(sorted, s, sizeof(*s) * n);
	qsort(sorted, n, sizeof(*s), cmp_sector);
	for (uint32_t i = 0; i < n; i++) {
		if (sorted[i].off % VHDX_SECTOR || (i && sorted[i].off == sorted[i - 1].off)) {
			free(sorted);
			return -EINVAL;
		}
	}
	last = (last + VHDX_ALIGN - 1) & ~(VHDX_ALIGN - 1);
	/* The entries say the file is that long: make it so first. */
	if (fstat(v->fd, &st) < 0 ||
	    ((uint64_t)st.st_size < last && ftruncate(v->fd, (off_t)last) < 0)) {
		ret = -errno;
		goto out;
	}
	guid_generate(&g);
	ret = write_entries(v, sorted, n, &g, last);
	if (!ret && fdatasync(v->fd) < 0)
		ret = -errno;
	if (ret)
		goto out;
	vhdx_step("txn: log entries flushed");
	/* The commit point. */
	ret = vhdx_header_update(v, true, &g);
	if (ret)
		goto out;
	*committed = true;
	vhdx_step("txn: committed");
	for (uint32_t i = 0; i < n && !ret; i++)
		ret = file_pwrite(v->fd, sorted[i].data, VHDX_SECTOR, sorted[i].off);
	if (!ret && fdatasync(v->fd) < 0)
		ret = -errno;
	if (!ret)
		vhdx_step("txn: sectors in place");
	if (!ret)
		ret = vhdx_header_update(v, false, &zero);
	if (ret) {
		/* Replay at the next open finishes it; no more writes now. */
		v->broken = ret;
		goto out;
	}
	/* The next commit starts a sequence of its own. */
	memset(&v->session_log_guid, 0, sizeof(v->session_log_guid));
	v->log_head = 0;
	v->log_seq = 0;
	if (last > v->file_size)
		v->file_size = last;
	v->durable_size = v->file_size;
out:
	free(sorted);
	return ret;
}
