// SPDX-License-Identifier: MIT
/*
 * Opening a VHD file (version 1): the footer (and, for dynamic and
 * differencing disks, its copy at the start), the dynamic disk header,
 * the BAT, the parent locators and the block bitmaps, every field
 * checked before it is used.  The same code serves "disk check".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "vhdx/vhd_state.h"

/* ---- geometry (the specification's appendix) ----------------------- */

void vhd_geometry(uint64_t sectors, uint16_t *cyl, uint8_t *heads,
		  uint8_t *spt)
{
	uint64_t cth, h, s;

	if (sectors > 65535ULL * 16 * 255)
		sectors = 65535ULL * 16 * 255;
	if (sectors >= 65535ULL * 16 * 63) {
		s = 255;
		h = 16;
		cth = sectors / s;
	} else {
		s = 17;
		cth = sectors / s;
		h = (cth + 1023) / 1024;
		if (h < 4)
			h = 4;
		if (cth >= h * 1024 || h > 16) {
			s = 31;
			h = 16;
			cth = sectors / s;
		}
		if (cth >= h * 1024) {
			s = 63;
			h = 16;
			cth = sectors / s;
		}
	}
	*cyl = (uint16_t)(cth / h);
	*heads = (uint8_t)h;
	*spt = (uint8_t)s;
}

static uint64_t chs_sectors(uint64_t sectors)
{
	uint16_t c;
	uint8_t h, s;

	vhd_geometry(sectors, &c, &h, &s);
	return (uint64_t)c * h * s;
}

uint64_t vhd_round_size(uint64_t size)
{
	uint64_t want = (size + VHD_SECTOR - 1) / VHD_SECTOR, t = want;

	/*
	 * Virtual PC and qemu take a disk's size from its geometry; a size
	 * the geometry describes exactly reads the same everywhere.  Past
	 * the largest geometry the footer's size is the only one.
	 */
	if (want >= 65535ULL * 16 * 255)
		return want * VHD_SECTOR;
	while (chs_sectors(t) < want)
		t++;
	return chs_sectors(t) * VHD_SECTOR;
}

void vhd_footer_build(uint8_t *f, enum vhd_type type, uint64_t size,
		      uint64_t data_offset, const struct guid *id)
{
	uint16_t c;
	uint8_t h, s;

	memset(f, 0, VHD_FOOTER_SIZE);
	memcpy(f + FT_COOKIE, VHD_COOKIE, 8);
	put_be32(f + FT_FEATURES, VHD_FEATURES_RESERVED);
	put_be32(f + FT_VERSION, VHD_VERSION);
	put_be64(f + FT_DATA_OFFSET, data_offset);
	put_be32(f + FT_TIMESTAMP, (uint32_t)(time(NULL) - VHD_EPOCH));
	memcpy(f + FT_CREATOR_APP, "fsvr", 4);
	put_be32(f + FT_CREATOR_VERSION, 0x00000001);
	/* The specification defines only "Wi2k" and "Mac ". */
	memcpy(f + FT_CREATOR_OS, "Wi2k", 4);
	put_be64(f + FT_ORIGINAL_SIZE, size);
	put_be64(f + FT_CURRENT_SIZE, size);
	vhd_geometry(size / VHD_SECTOR, &c, &h, &s);
	put_be16(f + FT_GEOMETRY, c);
	f[FT_GEOMETRY + 2] = h;
	f[FT_GEOMETRY + 3] = s;
	put_be32(f + FT_DISK_TYPE, type);
	memcpy(f + FT_UNIQUE_ID, id->b, 16);
	put_be32(f + FT_CHECKSUM, vhd_checksum(f, VHD_FOOTER_SIZE, FT_CHECKSUM));
}

/* ---- footer ---------------------------------------------------------- */

static const char *footer_why(const uint8_t *f)
{
	if (memcmp(f + FT_COOKIE, VHD_COOKIE, 8) != 0)
		return "bad cookie";
	if (vhd_checksum(f, VHD_FOOTER_SIZE, FT_CHECKSUM) != be32(f + FT_CHECKSUM))
		return "bad checksum";
	return NULL;
}

static int parse_footer(struct vhd *v, struct vhdx_report *r)
{
	uint8_t *copy = vhdx_alloc(VHD_FOOTER_SIZE);
	const char *end_why, *copy_why;
	uint32_t version, type;
	int ret = 0;

	if (!copy)
		return -ENOMEM;
	if (v->file_size < VHD_FOOTER_SIZE) {
		ret = vhdx_fail(r, "file is truncated: %llu bytes, shorter than a VHD footer",
				(unsigned long long)v->file_size);
		goto out;
	}
	v->footer_off = v->file_size - VHD_FOOTER_SIZE;
	if ((ret = file_pread(v->fd, v->footer, VHD_FOOTER_SIZE, v->footer_off)) ||
	    (ret = file_pread(v->fd, copy, VHD_FOOTER_SIZE, 0)))
		goto out;
	end_why = footer_why(v->footer);
	copy_why = footer_why(copy);
	if (end_why) {
		type = copy_why ? 0 : be32(copy + FT_DISK_TYPE);
		if (type != VHD_DYNAMIC && type != VHD_DIFF) {
			ret = vhdx_fail(r, "the VHD footer at the end of the file is not valid (%s)",
					end_why);
			goto out;
		}
		/* Dynamic disks keep a copy for just this (the spec, 2). */
		vhdx_warn(r, "the VHD footer at the end of the file is damaged (%s); the copy at the start is used",
			  end_why);
		memcpy(v->footer, copy, VHD_FOOTER_SIZE);
		v->copy_stale = true;
	}
	version = be32(v->footer + FT_VERSION);
	type = be32(v->footer + FT_DISK_TYPE);
	v->size = be64(v->footer + FT_CURRENT_SIZE);
	if (version >> 16 != 1) {
		ret = vhdx_fail(r, "unsupported VHD version %u.%u (only 1.x is defined)",
				version >> 16, version & 0xffff);
		goto out;
	}
	if (type != VHD_FIXED && type != VHD_DYNAMIC && type != VHD_DIFF) {
		ret = vhdx_fail(r, "VHD disk type %u is not fixed (2), dynamic (3) or differencing (4)",
				type);
		goto out;
	}
	v->type = type;
	if (v->size == 0 || v->size % VHD_SECTOR || v->size > VHD_MAX_SIZE) {
		ret = vhdx_fail(r, "VHD size %llu is zero, not a multiple of 512 or above 2040 GiB",
				(unsigned long long)v->size);
		goto out;
	}
	if (type == VHD_FIXED && v->size > v->footer_off) {
		ret = vhdx_fail(r, "the file is truncated: a fixed VHD of %llu bytes in %llu bytes",
				(unsigned long long)v->size,
				(unsigned long long)v->file_size);
		goto out;
	}
	if (type != VHD_FIXED && !end_why &&
	    (copy_why || memcmp(copy, v->footer, VHD_FOOTER_SIZE) != 0)) {
		vhdx_warn(r, "the footer copy at the start of the file differs from the footer (%s)",
			  copy_why ? copy_why : "other contents");
		v->copy_stale = true;
	}
out:
	free(copy);
	return ret;
}

/* ---- dynamic header ------------------------------------------------ */

static int parse_header(struct vhd *v, struct vhdx_report *r)
{
	uint8_t *h = v->header;
	uint64_t table_bytes;
	int ret;

	v->header_off = be64(v->footer + FT_DATA_OFFSET);
	if (v->header_off % VHD_SECTOR || v->header_off < VHD_FOOTER_SIZE ||
	    v->header_off > v->footer_off ||
	    v->footer_off - v->header_off < VHD_HEADER_SIZE)
		return vhdx_fail(r, "the dynamic disk header at %llu lies outside the file",
				 (unsigned long long)v->header_off);
	ret = file_pread(v->fd, h, VHD_HEADER_SIZE, v->header_off);
	if (ret)
		return ret;
	if (memcmp(h + DH_COOKIE, VHD_DYN_COOKIE, 8) != 0)
		return vhdx_fail(r, "the dynamic disk header has a bad cookie");
	if (vhd_checksum(h, VHD_HEADER_SIZE, DH_CHECKSUM) != be32(h + DH_CHECKSUM))
		return vhdx_fail(r, "the dynamic disk header has a bad checksum");
	if (be32(h + DH_VERSION) >> 16 != 1)
		return vhdx_fail(r, "unsupported dynamic disk header version %#x",
				 be32(h + DH_VERSION));
	v->block_size = be32(h + DH_BLOCK_SIZE);
	if (v->block_size < VHD_MIN_BLOCK || v->block_size > VHD_MAX_BLOCK ||
	    (v->block_size & (v->block_size - 1)))
		return vhdx_fail(r, "VHD block size %u is not a power of two from 512 bytes to 256 MiB",
				 v->block_size);
	v->blocks = (uint32_t)((v->size + v->block_size - 1) / v->block_size);
	v->max_entries = be32(h + DH_MAX_ENTRIES);
	if (v->max_entries < v->blocks)
		return vhdx_fail(r, "the BAT has %u entries, too few for %u blocks",
				 v->max_entries, v->blocks);
	v->bm_size = (v->block_size / VHD_SECTOR / 8 + VHD_SECTOR - 1) /
		     VHD_SECTOR * VHD_SECTOR;
	v->bat_off = be64(h + DH_TABLE_OFFSET);
	table_bytes = ((uint64_t)v->max_entries * 4 + VHD_SECTOR - 1) /
		      VHD_SECTOR * VHD_SECTOR;
	if (v->bat_off % VHD_SECTOR || v->bat_off < VHD_FOOTER_SIZE ||
	    v->bat_off > v->footer_off || table_bytes > v->footer_off - v->bat_off)
		return vhdx_fail(r, "the BAT at %llu (%u entries) lies outside the file",
				 (unsigned long long)v->bat_off, v->max_entries);
	if (v->bat_off < v->header_off + VHD_HEADER_SIZE &&
	    v->header_off < v->bat_off + table_bytes)
		return vhdx_fail(r, "the BAT overlaps the dynamic disk header");
	v->bat_bytes = (size_t)table_bytes;
	v->bat = vhdx_alloc(v->bat_bytes);
	if (!v->bat)
		return -ENOMEM;
	ret = file_pread(v->fd, v->bat, v->bat_bytes, v->bat_off);
	if (ret)
		return ret;
	return 0;
}

/* ---- parent locators ------------------------------------------------ */

/* Read locator @i into @out, or "" when it is not a W2ru/W2ku path. */
static int read_locator(struct vhd *v, struct vhdx_report *r, int i,
			uint32_t *code, char *out, size_t outlen)
{
	const uint8_t *e = v->header + DH_LOCATORS + i * PL_SIZE;
	uint32_t len = be32(e + PL_LENGTH);
	uint64_t off = be64(e + PL_OFFSET);
	uint8_t *buf;
	int ret;

	*code = be32(e + PL_CODE);
	out[0] = 0;
	if (*code == 0)
		return 0;
	if (len > PL_MAX_LENGTH || off > v->footer_off || len > v->footer_off - off)
		return vhdx_fail(r, "parent locator %d (%.4s) at %llu+%u lies outside the file",
				 i, (const char *)e, (unsigned long long)off, len);
	if (*code != PL_W2RU && *code != PL_W2KU)
		return 0;	/* deprecated and Macintosh forms */
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	ret = file_pread(v->fd, buf, len, off);
	if (!ret && (len % 2 || utf16_to_utf8(buf, len / 2, false, out, outlen)))
		ret = vhdx_fail(r, "parent locator %d (%.4s) is not a UTF-16 path",
				i, (const char *)e);
	free(buf);
	return ret;
}

static int parse_locators(struct vhd *v, struct vhdx_report *r)
{
	char *rel = calloc(1, PATH_MAX), *abs = calloc(1, PATH_MAX);
	char *name = calloc(1, PATH_MAX);
	int ret = 0;

	if (!rel || !abs || !name) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(v->d->linkage.b, v->header + DH_PARENT_ID, 16);
	for (int i = 0; i < DH_NLOCATORS && !ret; i++) {
		uint32_t code;

		ret = read_locator(v, r, i, &code, name, PATH_MAX);
		if (!ret && name[0] && code == PL_W2RU && !rel[0])
			snprintf(rel, PATH_MAX, "%s", name);
		if (!ret && name[0] && code == PL_W2KU && !abs[0])
			snprintf(abs, PATH_MAX, "%s", name);
	}
	/* Relative, absolute, then the parent's name next to the child. */
	if (!ret && rel[0])
		ret = vdisk_add_parent_ref(v->d, "W2ru", PARENT_RELATIVE, rel);
	if (!ret && abs[0])
		ret = vdisk_add_parent_ref(v->d, "W2ku", PARENT_ABSOLUTE, abs);
	if (!ret && utf16_to_utf8(v->header + DH_PARENT_NAME, DH_PARENT_NAME_LEN / 2,
				  true, name, PATH_MAX) == 0 && name[0])
		ret = vdisk_add_parent_ref(v->d, "parent name", PARENT_FILENAME, name);
out:
	free(rel);
	free(abs);
	free(name);
	return ret;
}

/* ---- BAT and bitmaps ------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static int bat_problem(struct vhd *v, struct vhdx_report *r, uint32_t b,
		       const char *what)
{
	int ret = vhdx_problem(r, "BAT entry %u (sector %u) %s", b,
			       vhd_bat_get(v, b), what);

	if (!ret && r->repairing) {
		put_be32(v->bat + (size_t)b * 4, VHD_UNUSED);
		vhd_mark_dirty(v, b / (VHD_SECTOR / 4));
	}
	return ret;
}

static int parse_bat(struct vhd *v, struct vhdx_report *r)
{
	uint64_t total = (uint64_t)v->bm_size + v->block_size;
	uint64_t *offs = calloc(v->blocks ? v->blocks : 1, sizeof(*offs));
	uint32_t n = 0;
	int ret = 0;

	if (!offs)
		return -ENOMEM;
	for (uint32_t b = 0; b < v->blocks && !ret; b++) {
		uint64_t off = vhd_block_off(v, b);

		if (vhd_bat_get(v, b) == VHD_UNUSED)
			continue;
		if (off < VHD_FOOTER_SIZE || off > v->footer_off ||
		    total > v->footer_off - off) {
			ret = bat_problem(v, r, b, "points past the end of the file");
			continue;
		}
		if (overlaps(off, total, v->header_off, VHD_HEADER_SIZE) ||
		    overlaps(off, total, v->bat_off, v->bat_bytes)) {
			ret = bat_problem(v, r, b, "overlaps the header or the BAT");
			continue;
		}
		offs[n++] = off;
	}
	qsort(offs, n, sizeof(*offs), cmp_u64);
	for (uint32_t i = 1; i < n && !ret; i++) {
		if (offs[i] < offs[i - 1] + total)
			ret = vhdx_problem(r, "blocks at sectors %llu and %llu overlap",
					   (unsigned long long)(offs[i - 1] / VHD_SECTOR),
					   (unsigned long long)(offs[i] / VHD_SECTOR));
	}
	v->allocated = 0;
	for (uint32_t b = 0; b < v->blocks; b++)
		if (vhd_bat_get(v, b) != VHD_UNUSED)
			v->allocated += v->block_size;
	free(offs);
	return ret;
}

static int load_bitmaps(struct vhd *v)
{
	v->bitmaps = calloc(v->blocks ? v->blocks : 1, sizeof(*v->bitmaps));
	if (!v->bitmaps)
		return -ENOMEM;
	for (uint32_t b = 0; b < v->blocks; b++) {
		int ret;

		if (vhd_bat_get(v, b) == VHD_UNUSED)
			continue;
		v->bitmaps[b] = vhdx_alloc(v->bm_size);
		if (!v->bitmaps[b])
			return -ENOMEM;
		ret = file_pread(v->fd, v->bitmaps[b], v->bm_size, vhd_block_off(v, b));
		if (ret)
			return ret;
	}
	return 0;
}

int vhd_dirty_alloc(struct vhd *v)
{
	uint64_t ids;

	v->bat_sectors = (uint32_t)(v->bat_bytes / VHD_SECTOR);
	ids = v->bat_sectors + (v->type == VHD_DIFF ?
				(uint64_t)v->blocks * (v->bm_size / VHD_SECTOR) : 0);
	free(v->dirty_map);
	free(v->dirty_list);
	v->dirty_map = calloc(ids ? ids : 1, 1);
	v->dirty_list = calloc(ids ? ids : 1, sizeof(uint32_t));
	v->ndirty = 0;
	return v->dirty_map && v->dirty_list ? 0 : -ENOMEM;
}

void vhd_mark_dirty(struct vhd *v, uint32_t id)
{
	if (v->dirty_map[id])
		return;
	v->dirty_map[id] = 1;
	v->dirty_list[v->ndirty++] = id;
}

int vhd_parse(struct vhd *v, struct vhdx_report *r)
{
	struct stat st;
	int ret;

	if (fstat(v->fd, &st) < 0)
		return -errno;
	v->file_size = (uint64_t)st.st_size;
	v->footer = vhdx_alloc(VHD_FOOTER_SIZE);
	v->header = vhdx_alloc(VHD_HEADER_SIZE);
	if (!v->footer || !v->header)
		return -ENOMEM;
	ret = parse_footer(v, r);
	if (ret || v->type == VHD_FIXED)
		return ret;
	ret = parse_header(v, r);
	if (!ret)
		ret = vhd_dirty_alloc(v);
	if (!ret && v->type == VHD_DIFF)
		ret = parse_locators(v, r);
	if (!ret)
		ret = parse_bat(v, r);
	if (!ret && v->type == VHD_DIFF && !v->d->no_io)
		ret = load_bitmaps(v);
	return ret;
}

void vhd_state_free(struct vhd *v)
{
	if (!v)
		return;
	for (uint32_t b = 0; v->bitmaps && b < v->blocks; b++)
		free(v->bitmaps[b]);
	free(v->bitmaps);
	free(v->footer);
	free(v->header);
	free(v->bat);
	free(v->dirty_map);
	free(v->dirty_list);
	free(v->csnap);
	free(v);
}
