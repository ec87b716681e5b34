// SPDX-License-Identifier: MIT
/*
 * Creating VHDX files.  Layout, every structure 1 MiB aligned:
 *
 *	0	header section (identifier, headers, region tables)
 *	1 MiB	log
 *	+log	metadata region (1 MiB)
 *	+1 MiB	BAT
 *	...	payload blocks (fixed disks: all of them, in order)
 *
 * A differencing disk takes its size and sector sizes from its parent
 * and carries a parent locator naming it (vhdx/locator.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsvisor_config.h"
#include "vhdx/state.h"

#define METADATA_LENGTH	(1 * MiB)
#define DEFAULT_LOG	(1 * MiB)
#define MAX_LOG		(256 * MiB)
/* Hyper-V's block size for differencing disks: copy-on-write is cheap. */
#define CHILD_BLOCK	(2 * MiB)
/* Where the parent locator item goes, its own sectors. */
#define LOCATOR_AT	(VHDX_METADATA_TABLE + VHDX_SECTOR)
#define LOCATOR_MAX	(64 * KiB)

/* What a child needs of its parent. */
struct parent_info {
	struct guid linkage;
	struct parent_names names;
	uint8_t *locator;
	int locator_len;
};

uint32_t vhdx_default_block_size(uint64_t size)
{
	/* Larger disks get larger blocks, as qemu-img and Hyper-V do. */
	if (size > 32 * TiB)
		return 64 * MiB;
	if (size > 100 * GiB)
		return 32 * MiB;
	if (size > 1 * GiB)
		return 16 * MiB;
	return 8 * MiB;
}

static int check_opts(struct vhdx_create_opts *o, char *err, size_t errlen)
{
	if (o->logical_sector_size == 0)
		o->logical_sector_size = 512;
	if (o->physical_sector_size == 0)
		o->physical_sector_size = 4096;
	if (o->block_size == 0)
		o->block_size = vhdx_default_block_size(o->size);
	if (o->log_size == 0)
		o->log_size = DEFAULT_LOG;

	if (o->type == VDISK_TYPE_DIFFERENCING && !o->parent) {
		snprintf(err, errlen, "a differencing disk needs a parent");
		return -EINVAL;
	}
	if (o->type != VDISK_TYPE_FIXED && o->type != VDISK_TYPE_DYNAMIC &&
	    o->type != VDISK_TYPE_DIFFERENCING) {
		snprintf(err, errlen, "only fixed, dynamic and differencing disks can be created");
		return -EINVAL;
	}
	if (o->logical_sector_size != 512 && o->logical_sector_size != 4096) {
		snprintf(err, errlen, "sector size %u: it must be 512 or 4096",
			 o->logical_sector_size);
		return -EINVAL;
	}
	if (o->physical_sector_size != 512 && o->physical_sector_size != 4096) {
		snprintf(err, errlen, "physical sector size %u: it must be 512 or 4096",
			 o->physical_sector_size);
		return -EINVAL;
	}
	if (o->size == 0 || o->size > VHDX_MAX_DISK_SIZE) {
		snprintf(err, errlen, "size %llu: a VHDX disk holds 1 sector to 64 TiB",
			 (unsigned long long)o->size);
		return -EINVAL;
	}
	if (o->size % o->logical_sector_size) {
		snprintf(err, errlen, "size %llu is not a multiple of the %u-byte sector",
			 (unsigned long long)o->size, o->logical_sector_size);
		return -EINVAL;
	}
	if (o->block_size < VHDX_MIN_BLOCK || o->block_size > VHDX_MAX_BLOCK ||
	    (o->block_size & (o->block_size - 1))) {
		snprintf(err, errlen, "block size %u: it must be a power of two from 1M to 256M",
			 o->block_size);
		return -EINVAL;
	}
	if (o->log_size % MiB || o->log_size > MAX_LOG) {
		snprintf(err, errlen, "log size %u: it must be a multiple of 1M, at most 256M",
			 o->log_size);
		return -EINVAL;
	}
	return 0;
}

static void put_header(uint8_t *h, uint64_t seq, const struct guid *file_guid,
		       const struct guid *data_guid, uint32_t log_len,
		       uint64_t log_off)
{
	memset(h, 0, VHDX_HEADER_SIZE);
	memcpy(h + HDR_SIGNATURE, VHDX_SIG_HEAD, 4);
	put64(h + HDR_SEQUENCE, seq);
	memcpy(h + HDR_FILE_WRITE_GUID, file_guid->b, 16);
	memcpy(h + HDR_DATA_WRITE_GUID, data_guid->b, 16);
	put16(h + HDR_LOG_VERSION, 0);
	put16(h + HDR_VERSION, 1);
	put32(h + HDR_LOG_LENGTH, log_len);
	put64(h + HDR_LOG_OFFSET, log_off);
	put32(h + HDR_CHECKSUM, vhdx_checksum(h, VHDX_HEADER_SIZE, HDR_CHECKSUM));
}

static void put_region_entry(uint8_t *e, const struct guid *g, uint64_t off,
			     uint32_t len)
{
	memcpy(e, g->b, 16);
	put64(e + 16, off);
	put32(e + 24, len);
	put32(e + 28, 1);	/* required */
}

static void put_meta_entry(uint8_t *e, const struct guid *g, uint32_t off,
			   uint32_t len, uint32_t flags)
{
	memcpy(e, g->b, 16);
	put32(e + 16, off);
	put32(e + 20, len);
	put32(e + 24, flags);
}

/* The whole header section: identifier, two headers, two region tables. */
static void build_header_section(uint8_t *s, const struct vhdx_create_opts *o,
				 uint64_t meta_off, uint64_t bat_off,
				 uint32_t bat_len)
{
	static const char creator[] = "fsvisor " FSVISOR_VERSION;
	struct guid file_guid, data_guid;
	uint8_t *rt = s + VHDX_REGION1_OFFSET;

	memcpy(s, VHDX_SIG_FILE, 8);
	for (size_t i = 0; i < sizeof(creator) - 1; i++)
		put16(s + 8 + 2 * i, (uint16_t)creator[i]);

	guid_generate(&file_guid);
	guid_generate(&data_guid);
	put_header(s + VHDX_HEADER1_OFFSET, 1, &file_guid, &data_guid,
		   o->log_size, VHDX_HEADER_SECTION);
	put_header(s + VHDX_HEADER2_OFFSET, 2, &file_guid, &data_guid,
		   o->log_size, VHDX_HEADER_SECTION);

	memcpy(rt, VHDX_SIG_REGI, 4);
	put32(rt + 8, 2);
	put_region_entry(rt + RT_HEADER_SIZE, &guid_bat_region, bat_off, bat_len);
	put_region_entry(rt + RT_HEADER_SIZE + RT_ENTRY_SIZE, &guid_metadata_region,
			 meta_off, METADATA_LENGTH);
	put32(rt + 4, vhdx_checksum(rt, VHDX_REGION_SIZE, 4));
	memcpy(s + VHDX_REGION2_OFFSET, rt, VHDX_REGION_SIZE);
}

static void build_metadata(uint8_t *m, const struct vhdx_create_opts *o,
			   const struct parent_info *pi)
{
	const uint32_t vd = MT_FLAG_IS_VIRTUAL_DISK | MT_FLAG_IS_REQUIRED;
	uint8_t *item = m + VHDX_METADATA_TABLE;
	struct guid disk_id;
	uint32_t flags = o->type == VDISK_TYPE_FIXED ? FP_LEAVE_BLOCKS_ALLOCATED :
			 o->type == VDISK_TYPE_DIFFERENCING ? FP_HAS_PARENT : 0;

	memcpy(m, VHDX_SIG_METADATA, 8);
	put16(m + 10, pi ? 6 : 5);
	if (pi) {
		put_meta_entry(m + MT_HEADER_SIZE + 160, &guid_parent_locator,
			       LOCATOR_AT, (uint32_t)pi->locator_len,
			       MT_FLAG_IS_REQUIRED);
		memcpy(m + LOCATOR_AT, pi->locator, (size_t)pi->locator_len);
	}
	put_meta_entry(m + MT_HEADER_SIZE, &guid_file_parameters,
		       VHDX_METADATA_TABLE, 8, MT_FLAG_IS_REQUIRED);
	put_meta_entry(m + MT_HEADER_SIZE + 32, &guid_virtual_disk_size,
		       VHDX_METADATA_TABLE + 8, 8, vd);
	put_meta_entry(m + MT_HEADER_SIZE + 64, &guid_virtual_disk_id,
		       VHDX_METADATA_TABLE + 16, 16, vd);
	put_meta_entry(m + MT_HEADER_SIZE + 96, &guid_logical_sector_size,
		       VHDX_METADATA_TABLE + 32, 4, vd);
	put_meta_entry(m + MT_HEADER_SIZE + 128, &guid_physical_sector_size,
		       VHDX_METADATA_TABLE + 36, 4, vd);

	put32(item, o->block_size);
	put32(item + 4, flags);
	put64(item + 8, o->size);
	guid_generate(&disk_id);
	memcpy(item + 16, disk_id.b, 16);
	put32(item + 32, o->logical_sector_size);
	put32(item + 36, o->physical_sector_size);
}

/*
 * Open the parent's chain (structure only: every level found and
 * checked) and take the child's size, sector sizes and locator from it.
 */
static int parent_prepare(const char *path, struct vhdx_create_opts *o,
			  struct parent_info *pi, char *err, size_t errlen)
{
	struct chain_ctx cc = { .parents = true };
	struct vdisk_open_opts po = { .no_io = true };
	const struct vdisk_info *in;
	struct vdisk *p;
	char why[1024];
	int ret;

	ret = vdisk_open_in_chain(o->parent, &po, &cc, &p, why, sizeof(why));
	if (ret) {
		snprintf(err, errlen, "parent %s: %s", o->parent, why);
		return ret;
	}
	in = vdisk_info(p);
	if (in->format != VDISK_FORMAT_VHDX && in->format != VDISK_FORMAT_VHD) {
		snprintf(err, errlen, "the parent %s is not a VHDX or VHD file",
			 o->parent);
		vdisk_close(p);
		return -EINVAL;
	}
	if (o->logical_sector_size && o->logical_sector_size != in->logical_sector_size) {
		snprintf(err, errlen, "a child has its parent's %u-byte sectors",
			 in->logical_sector_size);
		vdisk_close(p);
		return -EINVAL;
	}
	o->size = in->virtual_size;
	o->logical_sector_size = in->logical_sector_size;
	o->physical_sector_size = in->physical_sector_size;
	o->type = VDISK_TYPE_DIFFERENCING;
	if (!o->block_size)
		o->block_size = CHILD_BLOCK;
	pi->linkage = p->identity;
	vdisk_close(p);

	ret = parent_names_make(path, o->parent, &pi->names, err, errlen);
	if (ret)
		return ret;
	pi->locator = calloc(1, LOCATOR_MAX);
	if (!pi->locator)
		return -ENOMEM;
	pi->locator_len = vhdx_locator_build(pi->locator, LOCATOR_MAX,
					     &pi->linkage, &pi->names);
	if (pi->locator_len < 0) {
		snprintf(err, errlen, "the parent's path %s does not fit a parent locator",
			 pi->names.real);
		return pi->locator_len;
	}
	return 0;
}

int vhdx_create(const char *path, const struct vhdx_create_opts *opts,
		char *err, size_t errlen)
{
	struct vhdx_create_opts o = *opts;
	uint64_t data_blocks, chunk_ratio, entries, meta_off, bat_off, end;
	uint32_t bat_len;
	uint8_t *section = NULL, *meta = NULL, *bat = NULL;
	struct parent_info *pi = NULL;
	size_t bat_bytes;
	int fd, ret;

	if (o.parent) {
		if (access(path, F_OK) == 0) {
			snprintf(err, errlen, "cannot create %s: %s", path,
				 strerror(EEXIST));
			return -EEXIST;
		}
		pi = calloc(1, sizeof(*pi));
		if (!pi)
			return -ENOMEM;
		ret = parent_prepare(path, &o, pi, err, errlen);
		if (ret)
			goto out;
	}
	ret = check_opts(&o, err, errlen);
	if (ret)
		goto out;
	chunk_ratio = (VHDX_CHUNK_SECTORS * o.logical_sector_size) / o.block_size;
	data_blocks = (o.size + o.block_size - 1) / o.block_size;
	if (pi)	/* a sector bitmap entry for every chunk, the last one too */
		entries = (data_blocks + chunk_ratio - 1) / chunk_ratio * (chunk_ratio + 1);
	else
		entries = data_blocks + (data_blocks - 1) / chunk_ratio;
	bat_bytes = (entries * 8 + VHDX_SECTOR - 1) & ~(VHDX_SECTOR - 1);
	bat_len = (uint32_t)((entries * 8 + VHDX_ALIGN - 1) & ~(VHDX_ALIGN - 1));
	meta_off = VHDX_HEADER_SECTION + o.log_size;
	bat_off = meta_off + METADATA_LENGTH;
	end = bat_off + bat_len;

	section = vhdx_alloc(VHDX_HEADER_SECTION);
	meta = vhdx_alloc(METADATA_LENGTH);
	bat = vhdx_alloc(bat_bytes);
	if (!section || !meta || !bat) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	memset(section, 0, VHDX_HEADER_SECTION);
	memset(meta, 0, METADATA_LENGTH);
	memset(bat, 0, bat_bytes);
	build_header_section(section, &o, meta_off, bat_off, bat_len);
	build_metadata(meta, &o, pi);
	if (o.type == VDISK_TYPE_FIXED) {
		for (uint64_t b = 0; b < data_blocks; b++) {
			uint64_t idx = b + b / chunk_ratio;

			put64(bat + idx * 8, end | PAYLOAD_BLOCK_FULLY_PRESENT);
			end += o.block_size;
		}
	}

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		goto out;
	}
	if (o.type == VDISK_TYPE_FIXED) {
		/* A fixed disk owns its space up front, as its name says. */
		ret = posix_fallocate(fd, 0, (off_t)end);
		if (ret == EOPNOTSUPP || ret == EINVAL)
			ret = ftruncate(fd, (off_t)end) < 0 ? errno : 0;
		ret = -ret;
	} else {
		ret = ftruncate(fd, (off_t)end) < 0 ? -errno : 0;
	}
	if (!ret)
		ret = file_pwrite(fd, section, VHDX_HEADER_SECTION, 0);
	if (!ret)
		ret = file_pwrite(fd, meta, METADATA_LENGTH, meta_off);
	if (!ret)
		ret = file_pwrite(fd, bat, bat_bytes, bat_off);
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (ret) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(-ret));
		unlink(path);
	}
out:
	if (pi)
		free(pi->locator);
	free(pi);
	free(section);
	free(meta);
	free(bat);
	return ret;
}

int vdisk_create(const char *path, const struct vdisk_create_opts *o,
		 char *err, size_t errlen)
{
	struct vhdx_create_opts x = {
		.size = o->size, .type = o->type, .parent = o->parent,
		.block_size = o->block_size,
		.logical_sector_size = o->logical_sector_size,
		.physical_sector_size = o->physical_sector_size,
		.log_size = o->log_size,
	};

	if (o->format == VDISK_FORMAT_VHD)
		return vhd_create(path, o, err, errlen);
	if (o->format != VDISK_FORMAT_VHDX && o->format != VDISK_FORMAT_AUTO) {
		snprintf(err, errlen, "only VHDX and VHD disks can be created");
		return -EINVAL;
	}
	return vhdx_create(path, &x, err, errlen);
}
