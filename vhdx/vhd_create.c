// SPDX-License-Identifier: MIT
/*
 * Creating VHD files.
 *
 *	fixed:	data, then the footer
 *	dynamic and differencing:
 *	0	a copy of the footer
 *	512	the dynamic disk header
 *	1536	the BAT, every entry unused
 *	...	differencing: the parent locators, W2ru then W2ku
 *	...	the footer; blocks are added before it as they are written
 *
 * The size is rounded up to whole cylinders of the specification's CHS
 * geometry (vhd_round_size()), so that readers that take the size from
 * the geometry (Virtual PC, qemu) see the same disk as those that take it
 * from the footer.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhdx/vhd_state.h"

struct vhd_layout {
	enum vhd_type type;
	uint64_t size;
	uint32_t block_size;
	uint32_t entries;
	uint64_t bat_bytes;
	uint64_t end;			/* where the footer goes */
	uint8_t *footer, *header, *bat;
	/* Differencing: the parent and the two locators. */
	struct guid parent_id;
	uint32_t parent_time;
	struct parent_names names;
	uint8_t *loc[2];
	uint32_t loc_len[2];
	uint64_t loc_off[2];
};

static int vhd_parent(const char *path, const char *parent,
		      struct vhd_layout *l, char *err, size_t errlen)
{
	struct chain_ctx cc = { .parents = true };
	struct vdisk *p;
	struct stat st;
	char why[1024];
	int ret;

	ret = vdisk_open_in_chain(parent, &(struct vdisk_open_opts){ .no_io = true },
				  &cc, &p, why, sizeof(why));
	if (ret) {
		snprintf(err, errlen, "parent %s: %s", parent, why);
		return ret;
	}
	if (p->info.format != VDISK_FORMAT_VHD) {
		snprintf(err, errlen, "the parent of a VHD differencing disk must be a VHD file; %s is not (a VHDX child can have it)",
			 parent);
		vdisk_close(p);
		return -EINVAL;
	}
	l->size = p->info.virtual_size;
	l->parent_id = p->identity;
	l->parent_time = fstat(p->fd, &st) == 0 && st.st_mtime > VHD_EPOCH ?
			 (uint32_t)(st.st_mtime - VHD_EPOCH) : 0;
	vdisk_close(p);
	return parent_names_make(path, parent, &l->names, err, errlen);
}

static int check(const struct vdisk_create_opts *o, struct vhd_layout *l,
		 char *err, size_t errlen)
{
	if (o->logical_sector_size && o->logical_sector_size != VHD_SECTOR) {
		snprintf(err, errlen, "sector size %u: a VHD disk has 512-byte sectors",
			 o->logical_sector_size);
		return -EINVAL;
	}
	if (l->size == 0 || l->size > VHD_MAX_SIZE) {
		snprintf(err, errlen, "size %llu: a VHD disk holds 1 sector to 2040 GiB",
			 (unsigned long long)l->size);
		return -EINVAL;
	}
	if (l->size % VHD_SECTOR) {
		snprintf(err, errlen, "size %llu is not a multiple of the 512-byte sector",
			 (unsigned long long)l->size);
		return -EINVAL;
	}
	l->block_size = o->block_size ? o->block_size : VHD_DEFAULT_BLOCK;
	if (l->block_size < 4096 || l->block_size > VHD_MAX_BLOCK ||
	    (l->block_size & (l->block_size - 1))) {
		snprintf(err, errlen, "block size %u: it must be a power of two from 4K to 256M",
			 l->block_size);
		return -EINVAL;
	}
	return 0;
}

/* UTF-16LE locator data for @name; its length in bytes. */
static int locator(const char *name, uint8_t **out, uint32_t *len)
{
	int units;

	*out = calloc(1, PL_MAX_LENGTH);
	if (!*out)
		return -ENOMEM;
	units = utf8_to_utf16(name, false, *out, PL_MAX_LENGTH / 2);
	if (units <= 0)
		return units ? units : -EINVAL;
	*len = (uint32_t)units * 2;
	return 0;
}

static int build(struct vhd_layout *l)
{
	struct guid id;
	uint64_t at;
	char base[PATH_MAX];
	const char *slash;
	int ret;

	guid_generate(&id);
	l->footer = vhdx_alloc(VHD_FOOTER_SIZE);
	if (!l->footer)
		return -ENOMEM;
	if (l->type == VHD_FIXED) {
		vhd_footer_build(l->footer, l->type, l->size, ~0ULL, &id);
		l->end = l->size;
		return 0;
	}
	l->entries = (uint32_t)((l->size + l->block_size - 1) / l->block_size);
	l->bat_bytes = ((uint64_t)l->entries * 4 + VHD_SECTOR - 1) / VHD_SECTOR * VHD_SECTOR;
	l->header = vhdx_alloc(VHD_HEADER_SIZE);
	l->bat = vhdx_alloc(l->bat_bytes);
	if (!l->header || !l->bat)
		return -ENOMEM;
	memset(l->bat, 0xff, l->bat_bytes);
	at = VHD_FOOTER_SIZE + VHD_HEADER_SIZE + l->bat_bytes;

	memset(l->header, 0, VHD_HEADER_SIZE);
	memcpy(l->header + DH_COOKIE, VHD_DYN_COOKIE, 8);
	put_be64(l->header + DH_DATA_OFFSET, ~0ULL);
	put_be64(l->header + DH_TABLE_OFFSET, VHD_FOOTER_SIZE + VHD_HEADER_SIZE);
	put_be32(l->header + DH_VERSION, VHD_VERSION);
	put_be32(l->header + DH_MAX_ENTRIES, l->entries);
	put_be32(l->header + DH_BLOCK_SIZE, l->block_size);
	if (l->type == VHD_DIFF) {
		const char *names[2] = { l->names.rel, l->names.abs };
		const uint32_t codes[2] = { PL_W2RU, PL_W2KU };

		memcpy(l->header + DH_PARENT_ID, l->parent_id.b, 16);
		put_be32(l->header + DH_PARENT_TIME, l->parent_time);
		slash = strrchr(l->names.real, '/');
		snprintf(base, sizeof(base), "%s", slash ? slash + 1 : l->names.real);
		if (utf8_to_utf16(base, true, l->header + DH_PARENT_NAME,
				  DH_PARENT_NAME_LEN / 2) < 0)
			memset(l->header + DH_PARENT_NAME, 0, DH_PARENT_NAME_LEN);
		for (int i = 0; i < 2; i++) {
			uint8_t *e = l->header + DH_LOCATORS + i * PL_SIZE;
			uint32_t space;

			ret = locator(names[i], &l->loc[i], &l->loc_len[i]);
			if (ret)
				return ret;
			space = (l->loc_len[i] + VHD_SECTOR - 1) / VHD_SECTOR * VHD_SECTOR;
			l->loc_off[i] = at;
			put_be32(e + PL_CODE, codes[i]);
			/* Bytes, as Hyper-V and Virtual PC write it. */
			put_be32(e + PL_SPACE, space);
			put_be32(e + PL_LENGTH, l->loc_len[i]);
			put_be64(e + PL_OFFSET, at);
			at += space;
		}
	}
	put_be32(l->header + DH_CHECKSUM, vhd_checksum(l->header, VHD_HEADER_SIZE,
						       DH_CHECKSUM));
	vhd_footer_build(l->footer, l->type, l->size, VHD_FOOTER_SIZE, &id);
	l->end = at;
	return 0;
}

static int write_file(const char *path, const struct vhd_layout *l,
		      char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	int ret = 0;

	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return ret;
	}
	if (l->type == VHD_FIXED) {
		/* A fixed disk owns its space up front. */
		ret = posix_fallocate(fd, 0, (off_t)(l->end + VHD_FOOTER_SIZE));
		if (ret == EOPNOTSUPP || ret == EINVAL)
			ret = ftruncate(fd, (off_t)(l->end + VHD_FOOTER_SIZE)) < 0 ?
			      errno : 0;
		ret = -ret;
	} else {
		ret = file_pwrite(fd, l->footer, VHD_FOOTER_SIZE, 0);
		if (!ret)
			ret = file_pwrite(fd, l->header, VHD_HEADER_SIZE, VHD_FOOTER_SIZE);
		if (!ret)
			ret = file_pwrite(fd, l->bat, l->bat_bytes,
					  VHD_FOOTER_SIZE + VHD_HEADER_SIZE);
		for (int i = 0; i < 2 && !ret && l->type == VHD_DIFF; i++)
			ret = file_pwrite(fd, l->loc[i], l->loc_len[i], l->loc_off[i]);
	}
	if (!ret)
		ret = file_pwrite(fd, l->footer, VHD_FOOTER_SIZE, l->end);
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (ret) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(-ret));
		unlink(path);
	}
	return ret;
}

int vhd_create(const char *path, const struct vdisk_create_opts *o,
	       char *err, size_t errlen)
{
	struct vhd_layout *l = calloc(1, sizeof(*l));
	int ret;

	if (!l)
		return -ENOMEM;
	l->size = o->size;
	l->type = o->type == VDISK_TYPE_FIXED ? VHD_FIXED :
		  o->type == VDISK_TYPE_DYNAMIC ? VHD_DYNAMIC : VHD_DIFF;
	if (o->parent || l->type == VHD_DIFF) {
		if (!o->parent) {
			snprintf(err, errlen, "a differencing disk needs a parent");
			ret = -EINVAL;
			goto out;
		}
		if (access(path, F_OK) == 0) {
			snprintf(err, errlen, "cannot create %s: %s", path, strerror(EEXIST));
			ret = -EEXIST;
			goto out;
		}
		l->type = VHD_DIFF;
		ret = vhd_parent(path, o->parent, l, err, errlen);
		if (ret)
			goto out;
	}
	ret = check(o, l, err, errlen);
	if (ret)
		goto out;
	if (l->type != VHD_DIFF)
		l->size = vhd_round_size(l->size);
	ret = build(l);
	if (ret == -ENAMETOOLONG || ret == -EINVAL)
		snprintf(err, errlen, "the parent's path does not fit a VHD parent locator");
	else if (ret)
		snprintf(err, errlen, "cannot build the VHD structures: %s",
			 strerror(-ret));
	if (ret)
		goto out;
	ret = write_file(path, l, err, errlen);
out:
	free(l->footer);
	free(l->header);
	free(l->bat);
	free(l->loc[0]);
	free(l->loc[1]);
	free(l);
	return ret;
}
