// SPDX-License-Identifier: MIT
/*
 * Growing a VHD file.  VHD has no log, so each step leaves a file that
 * opens with the old size or the new one:
 *
 * Fixed: the new footer is written at the new end of the file, then the
 * old footer (inside the data now) is zeroed.  A crash between the two
 * leaves the new size with the old footer's 512 bytes at the old end.
 *
 * Dynamic: when the BAT has no room for the new blocks, a new BAT goes
 * past the last block, with a copy of the old footer after it (the file
 * still ends with a footer); then the header's first sector, which holds
 * the BAT offset, its length and the checksum, is rewritten in one
 * 512-byte write; then the new footer goes at the end and its copy at
 * the start.  Until the last step the footer gives the old size, which
 * the larger BAT describes as well.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhdx/vhd_state.h"
#include "vhdx/test_hooks.h"

static int sync_fd(int fd)
{
	return fdatasync(fd) < 0 ? -errno : 0;
}

/* A footer like the current one, for @size. */
static void new_footer(const struct vhd *v, uint8_t *f, uint64_t size)
{
	uint16_t c;
	uint8_t h, s;

	memcpy(f, v->footer, VHD_FOOTER_SIZE);
	put_be64(f + FT_CURRENT_SIZE, size);
	vhd_geometry(size / VHD_SECTOR, &c, &h, &s);
	put_be16(f + FT_GEOMETRY, c);
	f[FT_GEOMETRY + 2] = h;
	f[FT_GEOMETRY + 3] = s;
	put_be32(f + FT_CHECKSUM, 0);
	put_be32(f + FT_CHECKSUM, vhd_checksum(f, VHD_FOOTER_SIZE, FT_CHECKSUM));
}

static int grow_fixed(struct vhd *v, uint64_t size, const uint8_t *f)
{
	uint64_t old = v->size;
	int ret;

	ret = posix_fallocate(v->fd, (off_t)v->footer_off, (off_t)(size + VHD_FOOTER_SIZE - v->footer_off));
	if (ret == EOPNOTSUPP || ret == EINVAL)
		ret = ftruncate(v->fd, (off_t)(size + VHD_FOOTER_SIZE)) < 0 ? errno : 0;
	if (ret)
		return -ret;
	ret = file_pwrite(v->fd, f, VHD_FOOTER_SIZE, size);
	if (!ret)
		ret = sync_fd(v->fd);
	if (ret)
		return ret;
	vhdx_step("vhd resize: new footer written");
	/* The old footer is data now: it reads as zeros. */
	ret = file_write_zeros(v->fd, old, VHD_FOOTER_SIZE);
	if (!ret)
		ret = sync_fd(v->fd);
	if (ret)
		return ret;
	v->footer_off = size;
	v->file_size = size + VHD_FOOTER_SIZE;
	return 0;
}

/* Entries the BAT's sectors hold whose slots are unused: room to grow. */
static uint32_t bat_room(const struct vhd *v)
{
	uint32_t n = (uint32_t)(v->bat_bytes / 4);

	for (uint32_t i = v->max_entries; i < n; i++)
		if (be32(v->bat + (size_t)i * 4) != VHD_UNUSED)
			return v->max_entries;
	return n;
}

static int write_header_sector(struct vhd *v, uint64_t bat_off, uint32_t entries)
{
	uint8_t *h = vhdx_alloc(VHD_HEADER_SIZE);
	int ret;

	if (!h)
		return -ENOMEM;
	memcpy(h, v->header, VHD_HEADER_SIZE);
	put_be64(h + DH_TABLE_OFFSET, bat_off);
	put_be32(h + DH_MAX_ENTRIES, entries);
	put_be32(h + DH_CHECKSUM, 0);
	put_be32(h + DH_CHECKSUM, vhd_checksum(h, VHD_HEADER_SIZE, DH_CHECKSUM));
	/* Everything that changed is in the first sector: one atomic write. */
	ret = file_pwrite(v->fd, h, VHD_SECTOR, v->header_off);
	if (!ret)
		ret = sync_fd(v->fd);
	if (!ret)
		memcpy(v->header, h, VHD_HEADER_SIZE);
	free(h);
	return ret;
}

static int grow_dynamic(struct vhd *v, uint64_t size, const uint8_t *f)
{
	uint32_t entries = (uint32_t)((size + v->block_size - 1) / v->block_size);
	uint64_t bat_off = v->bat_off, bat_bytes = v->bat_bytes;
	uint8_t *bat = NULL;
	int ret;

	if (entries > bat_room(v)) {
		/* A new BAT past the last block, the old footer after it. */
		bat_bytes = ((uint64_t)entries * 4 + VHD_SECTOR - 1) / VHD_SECTOR * VHD_SECTOR;
		bat_off = v->footer_off;
		bat = vhdx_alloc(bat_bytes);
		if (!bat)
			return -ENOMEM;
		memset(bat, 0xff, bat_bytes);
		memcpy(bat, v->bat, (size_t)v->max_entries * 4);
		ret = file_pwrite(v->fd, v->footer, VHD_FOOTER_SIZE, bat_off + bat_bytes);
		if (!ret)
			ret = file_pwrite(v->fd, bat, bat_bytes, bat_off);
		if (!ret)
			ret = sync_fd(v->fd);
		if (ret)
			goto fail;
		vhdx_step("vhd resize: new BAT written");
		v->footer_off = bat_off + bat_bytes;
		v->file_size = v->footer_off + VHD_FOOTER_SIZE;
	}
	ret = write_header_sector(v, bat_off, entries);
	if (ret)
		goto fail;
	vhdx_step("vhd resize: header switched");
	ret = file_pwrite(v->fd, f, VHD_FOOTER_SIZE, v->footer_off);
	if (!ret)
		ret = sync_fd(v->fd);
	if (!ret)
		vhdx_step("vhd resize: footer written");
	if (!ret)
		ret = file_pwrite(v->fd, f, VHD_FOOTER_SIZE, 0);
	if (!ret)
		ret = sync_fd(v->fd);
	if (ret)
		goto fail;
	if (bat) {
		free(v->bat);
		v->bat = bat;
		v->bat_off = bat_off;
		v->bat_bytes = (size_t)bat_bytes;
	}
	v->max_entries = entries;
	v->blocks = entries;
	return vhd_dirty_alloc(v);
fail:
	free(bat);
	return ret;
}

int vhd_grow(struct vdisk *d, uint64_t new_size, char *err, size_t errlen)
{
	struct vhd *v = d->priv;
	uint8_t *f;
	int ret;

	if (v->type == VHD_DIFF) {
		snprintf(err, errlen, "a differencing disk's size follows its parent");
		return -ENOTSUP;
	}
	new_size = vhd_round_size(new_size);
	if (new_size > VHD_MAX_SIZE) {
		snprintf(err, errlen, "size %llu is more than the 2040 GiB a VHD disk holds",
			 (unsigned long long)new_size);
		return -EINVAL;
	}
	if (new_size <= v->size)
		return 0;
	ret = vhd_commit_all(v);
	if (ret) {
		snprintf(err, errlen, "cannot commit earlier changes: %s", strerror(-ret));
		return ret;
	}
	f = vhdx_alloc(VHD_FOOTER_SIZE);
	if (!f)
		return -ENOMEM;
	new_footer(v, f, new_size);
	ret = v->type == VHD_FIXED ? grow_fixed(v, new_size, f) :
				     grow_dynamic(v, new_size, f);
	if (ret) {
		snprintf(err, errlen, "cannot grow the disk (%s); it has its old size or its new one",
			 strerror(-ret));
	} else {
		memcpy(v->footer, f, VHD_FOOTER_SIZE);
		v->size = new_size;
		v->copy_stale = false;
		d->info.virtual_size = new_size;
		d->info.file_size = v->file_size;
		if (v->type == VHD_FIXED)
			d->info.allocated = new_size;
	}
	free(f);
	return ret;
}
