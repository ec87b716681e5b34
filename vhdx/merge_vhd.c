// SPDX-License-Identifier: MIT
/*
 * Merging into a VHD ancestor (dynamic or differencing; see
 * vhdx/merge.c).  VHD has no log, so the switch is one sector write: the
 * footer.
 *
 * New blocks go after the old footer, which stays where it is (and a
 * copy of it at the end whenever the file grows), so until the commit
 * the file is the old disk plus space nothing refers to.  Then a new BAT
 * and a new dynamic disk header pointing at it are written after the new
 * blocks, and a copy of the old footer after them, where the file now
 * ends; a flush.  The commit point overwrites that last sector with the
 * new footer: its Data Offset names the new header, and it has a new
 * unique id, so the ancestor's other children no longer link to it.
 * Before that write lands a reader finds the old footer (or, if the
 * sector is torn, the copy at the start), the old header and the old
 * BAT; after it, the new ones.  The copy at the start follows.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhdx/merge.h"

static int vhd_setup(struct vdisk_merge *m)
{
	struct vhd *v = m->vv;

	m->bs = v->block_size;
	m->nblocks = v->blocks;
	m->a_has_parent = v->type == VHD_DIFF;
	/* After the old footer, which stays until the commit. */
	m->end = v->footer_off + VHD_FOOTER_SIZE;
	m->bat = vhdx_alloc(v->bat_bytes);
	m->sb = calloc(v->blocks + 1, sizeof(*m->sb));	/* new bitmaps */
	m->vheader = vhdx_alloc(VHD_HEADER_SIZE);
	m->vfooter = vhdx_alloc(VHD_FOOTER_SIZE);
	if (!m->bat || !m->sb || !m->vheader || !m->vfooter)
		return -ENOMEM;
	memcpy(m->bat, v->bat, v->bat_bytes);
	return 0;
}

/* A new block: its bitmap just before a 4 KiB boundary, then the data. */
static uint64_t vhd_place(struct vdisk_merge *m, uint64_t b)
{
	struct vhd *v = m->vv;

	if (!m->newoff[b])
		m->newoff[b] = merge_alloc(m, (uint64_t)v->bm_size + v->block_size,
					   4096, v->bm_size);
	return m->newoff[b] + v->bm_size;
}

static uint64_t vhd_old_place(struct vdisk_merge *m, uint64_t b)
{
	struct vhd *v = m->vv;

	if (vhd_bat_get(v, (uint32_t)b) == VHD_UNUSED)
		return 0;
	return vhd_block_off(v, (uint32_t)b) + v->bm_size;
}

/* The sectors the result holds, the most significant bit first. */
static void bitmap_from_mask(uint8_t *bm, uint32_t size, const uint8_t *mask,
			     uint64_t sectors, bool all)
{
	memset(bm, all ? 0xff : 0, size);
	if (all)
		return;
	for (uint64_t i = 0; i < sectors; i++)
		if ((mask[i >> 3] >> (i & 7)) & 1)
			bm[i >> 3] |= (uint8_t)(0x80 >> (i & 7));
}

static int vhd_finish(struct vdisk_merge *m, struct job *j)
{
	struct vhd *v = m->vv;
	uint64_t b = j->b;
	uint8_t *bm;
	int ret;

	/* Zeros everywhere in a dynamic disk: no block at all. */
	if (!j->nonzero && j->all && v->type == VHD_DYNAMIC && !m->newoff[b]) {
		put_be32(m->bat + b * 4, VHD_UNUSED);
		return 0;
	}
	vhd_place(m, b);
	bm = m->sb[b] ? m->sb[b] : vhdx_alloc(v->bm_size);
	if (!bm)
		return -ENOMEM;
	bitmap_from_mask(bm, v->bm_size, j->mask, m->bs / VHD_SECTOR,
			 j->all || v->type == VHD_DYNAMIC);
	ret = file_pwrite(m->a->fd, bm, v->bm_size, m->newoff[b]);
	if (v->type == VHD_DIFF)
		m->sb[b] = bm;
	else
		free(bm);
	if (ret)
		return ret;
	put_be32(m->bat + b * 4, (uint32_t)(m->newoff[b] / VHD_SECTOR));
	return 0;
}

static int sync_fd(int fd)
{
	return fdatasync(fd) < 0 ? -errno : 0;
}

static int vhd_commit(struct vdisk_merge *m, bool *committed)
{
	struct vhd *v = m->vv;
	int fd = m->a->fd, ret;
	struct guid id;

	*committed = false;
	if (m->end / VHD_SECTOR >= VHD_UNUSED)
		return -EFBIG;
	m->vbat_at = merge_alloc(m, v->bat_bytes, VHD_SECTOR, 0);
	m->vhdr_at = merge_alloc(m, VHD_HEADER_SIZE, VHD_SECTOR, 0);
	m->vfooter_at = merge_alloc(m, VHD_FOOTER_SIZE, VHD_SECTOR, 0);
	memcpy(m->vheader, v->header, VHD_HEADER_SIZE);
	put_be64(m->vheader + DH_TABLE_OFFSET, m->vbat_at);
	put_be32(m->vheader + DH_CHECKSUM, 0);
	put_be32(m->vheader + DH_CHECKSUM,
		 vhd_checksum(m->vheader, VHD_HEADER_SIZE, DH_CHECKSUM));
	/* The old footer where the file will end, then the cut. */
	ret = file_pwrite(fd, m->bat, v->bat_bytes, m->vbat_at);
	if (!ret)
		ret = file_pwrite(fd, m->vheader, VHD_HEADER_SIZE, m->vhdr_at);
	if (!ret)
		ret = file_pwrite(fd, v->footer, VHD_FOOTER_SIZE, m->vfooter_at);
	if (!ret && ftruncate(fd, (off_t)(m->vfooter_at + VHD_FOOTER_SIZE)) < 0)
		ret = -errno;
	if (!ret)
		ret = sync_fd(fd);
	if (ret)
		return ret;
	vhdx_step("merge: copies flushed");
	memcpy(m->vfooter, v->footer, VHD_FOOTER_SIZE);
	put_be64(m->vfooter + FT_DATA_OFFSET, m->vhdr_at);
	guid_generate(&id);
	memcpy(m->vfooter + FT_UNIQUE_ID, id.b, 16);
	put_be32(m->vfooter + FT_CHECKSUM, 0);
	put_be32(m->vfooter + FT_CHECKSUM,
		 vhd_checksum(m->vfooter, VHD_FOOTER_SIZE, FT_CHECKSUM));
	/* The commit point. */
	ret = file_pwrite(fd, m->vfooter, VHD_FOOTER_SIZE, m->vfooter_at);
	if (!ret)
		ret = sync_fd(fd);
	if (ret)
		return ret;
	*committed = true;
	vhdx_step("merge: footer switched");
	ret = file_pwrite(fd, m->vfooter, VHD_FOOTER_SIZE, 0);
	if (!ret)
		ret = sync_fd(fd);
	return ret;
}

static void vhd_adopt(struct vdisk_merge *m)
{
	struct vhd *v = m->vv;
	struct punch p = { .fd = m->a->fd };
	uint64_t total = (uint64_t)v->bm_size + v->block_size;

	for (uint32_t b = 0; b < v->blocks; b++) {
		uint32_t o = vhd_bat_get(v, b), n = be32(m->bat + (size_t)b * 4);

		if (o != VHD_UNUSED && o != n)
			punch_add(&p, (uint64_t)o * VHD_SECTOR, total);
		if (m->sb[b]) {
			free(v->bitmaps[b]);
			v->bitmaps[b] = m->sb[b];
			m->sb[b] = NULL;
		}
	}
	punch_flush(&p);
	memcpy(v->bat, m->bat, v->bat_bytes);
	memcpy(v->header, m->vheader, VHD_HEADER_SIZE);
	memcpy(v->footer, m->vfooter, VHD_FOOTER_SIZE);
	v->bat_off = m->vbat_at;
	v->header_off = m->vhdr_at;
	v->footer_off = m->vfooter_at;
	v->file_size = m->vfooter_at + VHD_FOOTER_SIZE;
	v->copy_stale = false;
	v->allocated = 0;
	for (uint32_t b = 0; b < v->blocks; b++)
		if (vhd_bat_get(v, b) != VHD_UNUSED)
			v->allocated += v->block_size;
	memcpy(m->a->identity.b, v->footer + FT_UNIQUE_ID, 16);
	guid_format(&m->a->identity, m->a->info.identity);
	snprintf(m->a->info.disk_id, sizeof(m->a->info.disk_id), "%s",
		 m->a->info.identity);
	m->a->info.allocated = v->allocated;
	m->a->info.file_size = v->file_size;
}

static void vhd_release(struct vdisk_merge *m)
{
	for (uint64_t b = 0; m->sb && b < m->nblocks; b++)
		free(m->sb[b]);
	free(m->sb);
	free(m->bat);
	free(m->vheader);
	free(m->vfooter);
}

const struct merge_target merge_vhd = {
	.setup = vhd_setup,
	.place = vhd_place,
	.finish = vhd_finish,
	.old_place = vhd_old_place,
	.commit = vhd_commit,
	.adopt = vhd_adopt,
	.release = vhd_release,
};
