// SPDX-License-Identifier: MIT
/*
 * Merging into a VHDX ancestor (see vhdx/merge.c): new blocks go past
 * the end of the file, 1 MiB aligned; a differencing ancestor's sector
 * bitmaps are copied to new bitmap blocks on first change; one log
 * transaction switches the BAT.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhdx/merge.h"

static int vhdx_setup(struct vdisk_merge *m)
{
	struct vhdx *av = m->av;

	m->bs = av->block_size;
	m->nblocks = av->data_blocks;
	m->a_has_parent = av->has_parent;
	m->bat = vhdx_alloc(av->bat_bytes);
	m->sb = calloc(av->nchunks + 1, sizeof(*m->sb));
	m->sb_at = calloc(av->nchunks + 1, sizeof(*m->sb_at));
	if (!m->bat || !m->sb || !m->sb_at)
		return -ENOMEM;
	memcpy(m->bat, av->bat, av->bat_bytes);
	return 0;
}

static uint64_t vhdx_place(struct vdisk_merge *m, uint64_t b)
{
	if (!m->newoff[b])
		m->newoff[b] = merge_alloc(m, m->bs, VHDX_ALIGN, 0);
	return m->newoff[b];
}

static uint64_t vhdx_old_place(struct vdisk_merge *m, uint64_t b)
{
	uint64_t e = bat_get(m->av, bat_payload_index(m->av, b));

	if ((e & BAT_STATE_MASK) != PAYLOAD_BLOCK_FULLY_PRESENT &&
	    (e & BAT_STATE_MASK) != PAYLOAD_BLOCK_PARTIALLY_PRESENT)
		return 0;
	return (e >> BAT_OFFSET_SHIFT) * MiB;
}

/* A differencing A's new bitmap for @chunk, copied on first change. */
static int sb_cow(struct vdisk_merge *m, uint64_t chunk)
{
	struct vhdx *av = m->av;

	if (m->sb[chunk])
		return 0;
	m->sb[chunk] = vhdx_alloc(MiB);
	if (!m->sb[chunk])
		return -ENOMEM;
	if (av->sb[chunk])
		memcpy(m->sb[chunk], av->sb[chunk], MiB);
	else
		memset(m->sb[chunk], 0, MiB);
	m->sb_at[chunk] = merge_alloc(m, MiB, VHDX_ALIGN, 0);
	return 0;
}

/* Block @b is copied: its entry in the new BAT, ZERO when all zeros. */
static int vhdx_finish(struct vdisk_merge *m, struct job *j)
{
	struct vhdx *av = m->av;
	uint64_t b = j->b, idx = bat_payload_index(av, b), e;

	if (!j->nonzero && j->all && !av->leave_allocated && !m->newoff[b]) {
		e = PAYLOAD_BLOCK_ZERO;
	} else {
		e = vhdx_place(m, b) | (j->all ? PAYLOAD_BLOCK_FULLY_PRESENT :
						 PAYLOAD_BLOCK_PARTIALLY_PRESENT);
	}
	if (!j->all) {
		uint64_t chunk = b / av->chunk_ratio;
		uint64_t bits = m->bs / av->lss, first = (b % av->chunk_ratio) * bits;
		int ret = sb_cow(m, chunk);

		if (ret)
			return ret;
		memcpy(m->sb[chunk] + first / 8, j->mask, bits / 8);
	}
	put64(m->bat + idx * 8, e);
	return 0;
}

/*
 * Commit: the new bitmap blocks go where nothing refers to them, the
 * copies are flushed, then one log transaction carries every changed BAT
 * sector and the merge record; its header write, with a new
 * DataWriteGuid, is the commit point (vhdx/txn.c).
 */
static int vhdx_commit(struct vdisk_merge *m, bool *committed)
{
	struct vhdx *av = m->av;
	uint32_t cap = vhdx_txn_capacity(av), n = 0, nrec = 0;
	struct log_sector *s = calloc(cap + 2, sizeof(*s));
	uint8_t *recbuf = vhdx_alloc(2 * VHDX_SECTOR);
	const char *slash = strrchr(m->d->path, '/');
	int ret = 0;

	*committed = false;
	if (!s || !recbuf) {
		ret = -ENOMEM;
		goto out;
	}
	/* New bitmap blocks, written where nothing refers to them yet. */
	for (uint64_t c = 0; c < av->nchunks && !ret; c++) {
		if (!m->sb[c])
			continue;
		ret = file_pwrite(m->a->fd, m->sb[c], MiB, m->sb_at[c]);
		put64(m->bat + bat_bitmap_index(av, c) * 8, m->sb_at[c] | SB_BLOCK_PRESENT);
	}
	/* What was made ahead and not used goes. */
	if (!ret && m->extended > m->end && ftruncate(m->a->fd, (off_t)m->end) < 0)
		ret = -errno;
	if (!ret && fdatasync(m->a->fd) < 0)
		ret = -errno;
	if (ret)
		goto out;
	vhdx_step("merge: copies flushed");
	for (uint64_t i = 0; i < av->bat_bytes / VHDX_SECTOR; i++) {
		if (memcmp(m->bat + i * VHDX_SECTOR, av->bat + i * VHDX_SECTOR,
			   VHDX_SECTOR) == 0)
			continue;
		if (n == cap) {
			ret = -E2BIG;
			goto out;
		}
		s[n++] = (struct log_sector){ av->bat_offset + i * VHDX_SECTOR,
					      m->bat + i * VHDX_SECTOR };
	}
	if (n + 2 <= cap &&
	    vhdx_record_sectors(av, &m->old_dwg, slash ? slash + 1 : m->d->path,
				recbuf, s + n, &nrec) == 0)
		n += nrec;
	ret = vhdx_commit_atomic(av, s, n, m->end, committed);
out:
	if (ret == -E2BIG)
		log_error("merge: the change does not fit the log of %s (%u sectors)",
			  m->a->path, cap);
	free(s);
	free(recbuf);
	return ret;
}

/* A takes the new BAT and bitmaps; the space it no longer uses goes. */
static void vhdx_adopt(struct vdisk_merge *m)
{
	struct vhdx *av = m->av;
	uint64_t bs = av->block_size;
	struct punch p = { .fd = m->a->fd };

	for (uint64_t b = 0; b < av->data_blocks; b++) {
		uint64_t idx = bat_payload_index(av, b);
		uint64_t oe = bat_get(av, idx), ne = get64(m->bat + idx * 8);
		unsigned int st = oe & BAT_STATE_MASK;

		if ((st == PAYLOAD_BLOCK_FULLY_PRESENT || st == PAYLOAD_BLOCK_PARTIALLY_PRESENT) &&
		    (oe >> BAT_OFFSET_SHIFT) != (ne >> BAT_OFFSET_SHIFT))
			punch_add(&p, (oe >> BAT_OFFSET_SHIFT) * MiB, bs);
	}
	punch_flush(&p);
	for (uint64_t c = 0; c < av->nchunks; c++) {
		uint64_t oe = bat_get(av, bat_bitmap_index(av, c));

		if (!m->sb[c])
			continue;
		if ((oe & BAT_STATE_MASK) == SB_BLOCK_PRESENT)
			fallocate(m->a->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				  (off_t)((oe >> BAT_OFFSET_SHIFT) * MiB), (off_t)MiB);
		free(av->sb[c]);
		av->sb[c] = m->sb[c];
		m->sb[c] = NULL;
	}
	memcpy(av->bat, m->bat, av->bat_bytes);
	av->allocated = 0;
	for (uint64_t b = 0; b < av->data_blocks; b++) {
		unsigned int st = bat_get(av, bat_payload_index(av, b)) & BAT_STATE_MASK;

		if (st == PAYLOAD_BLOCK_FULLY_PRESENT || st == PAYLOAD_BLOCK_PARTIALLY_PRESENT)
			av->allocated += bs;
	}
	av->alloc_end = m->end;
	if (av->file_size < m->end)
		av->file_size = m->end;
	vhdx_record_adopt(av);
	m->a->info.allocated = av->allocated;
	m->a->info.file_size = av->file_size;
}


static void vhdx_release(struct vdisk_merge *m)
{
	for (uint64_t c = 0; m->sb && c < m->av->nchunks; c++)
		free(m->sb[c]);
	free(m->sb);
	free(m->sb_at);
	free(m->bat);
}

const struct merge_target merge_vhdx = {
	.setup = vhdx_setup,
	.place = vhdx_place,
	.finish = vhdx_finish,
	.old_place = vhdx_old_place,
	.commit = vhdx_commit,
	.adopt = vhdx_adopt,
	.release = vhdx_release,
};
