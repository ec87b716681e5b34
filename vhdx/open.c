// SPDX-License-Identifier: MIT
/*
 * Opening a VHDX file: file identifier, headers, log replay, region
 * table, metadata and BAT, every field checked before it is used.  The
 * same code serves "disk check", which keeps going after a problem.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhdx/state.h"

#define MAX_LOG_LENGTH (256 * MiB)

void overlay_apply(const struct vhdx *v, uint8_t *buf, size_t len, uint64_t off)
{
	/* Later entries of the replay win, so apply in order. */
	for (size_t i = 0; i < v->nov; i++) {
		const struct overlay *o = &v->ov[i];
		uint64_t s = o->off > off ? o->off : off;
		uint64_t e = o->off + o->len < off + len ? o->off + o->len :
							    off + len;

		if (s >= e)
			continue;
		if (o->data)
			memcpy(buf + (s - off), o->data + (s - o->off), e - s);
		else
			memset(buf + (s - off), 0, e - s);
	}
}

int vhdx_read_meta(struct vhdx *v, void *buf, size_t len, uint64_t off)
{
	int ret = file_pread(v->fd, buf, len, off);

	if (!ret && v->nov)
		overlay_apply(v, buf, len, off);
	return ret;
}

/* ---- headers -------------------------------------------------------- */

struct hdr_copy {
	uint8_t *buf;
	bool valid;
	uint64_t seq;
	const char *why;
};

static void header_check(struct hdr_copy *h)
{
	uint32_t want;

	h->valid = false;
	if (memcmp(h->buf + HDR_SIGNATURE, VHDX_SIG_HEAD, 4) != 0) {
		h->why = "bad signature";
		return;
	}
	want = get32(h->buf + HDR_CHECKSUM);
	if (vhdx_checksum(h->buf, VHDX_HEADER_SIZE, HDR_CHECKSUM) != want) {
		h->why = "bad checksum";
		return;
	}
	h->seq = get64(h->buf + HDR_SEQUENCE);
	h->valid = true;
}

static int parse_headers(struct vhdx *v, struct vhdx_report *r,
			 const uint8_t *section)
{
	struct hdr_copy h[2] = {
		{ .buf = (uint8_t *)section + VHDX_HEADER1_OFFSET },
		{ .buf = (uint8_t *)section + VHDX_HEADER2_OFFSET },
	};
	const uint8_t *cur;
	uint16_t version, log_version;

	for (int i = 0; i < 2; i++) {
		header_check(&h[i]);
		if (!h[i].valid) {
			vhdx_warn(r, "header %d is damaged (%s)", i + 1, h[i].why);
			v->rewrite_headers = true;
		}
	}
	if (!h[0].valid && !h[1].valid) {
		vhdx_fail(r, "neither header is valid: not a usable VHDX file");
		return -EINVAL;
	}
	if (h[0].valid && h[1].valid && h[0].seq == h[1].seq &&
	    memcmp(h[0].buf, h[1].buf, VHDX_HEADER_SIZE) != 0) {
		vhdx_fail(r, "both headers have sequence number %llu but differ",
			     (unsigned long long)h[0].seq);
		return -EINVAL;
	}
	if (!h[1].valid || (h[0].valid && h[0].seq >= h[1].seq))
		v->hdr_slot = 0;
	else
		v->hdr_slot = 1;
	cur = h[v->hdr_slot].buf;
	memcpy(v->hdr, cur, VHDX_HEADER_SIZE);
	v->hdr_seq = h[v->hdr_slot].seq;

	version = get16(cur + HDR_VERSION);
	log_version = get16(cur + HDR_LOG_VERSION);
	get_guid(&v->log_guid, cur + HDR_LOG_GUID);
	if (version != 1) {
		vhdx_fail(r, "unsupported VHDX version %u (only 1 is defined)",
			     version);
		return -EINVAL;
	}
	if (log_version != 0 && !guid_is_zero(&v->log_guid)) {
		vhdx_fail(r, "unsupported log version %u with a log to replay",
			     log_version);
		return -EINVAL;
	}
	v->log_length = get32(cur + HDR_LOG_LENGTH);
	v->log_offset = get64(cur + HDR_LOG_OFFSET);
	if (v->log_length % VHDX_ALIGN || v->log_offset % VHDX_ALIGN) {
		vhdx_fail(r, "log at %llu, %u bytes, is not 1 MiB aligned",
			     (unsigned long long)v->log_offset, v->log_length);
		return -EINVAL;
	}
	if (v->log_length && v->log_offset < VHDX_HEADER_SECTION) {
		vhdx_fail(r, "log at %llu overlaps the header section",
			     (unsigned long long)v->log_offset);
		return -EINVAL;
	}
	if (v->log_length > MAX_LOG_LENGTH) {
		vhdx_fail(r, "log of %u bytes is larger than %llu MiB",
			     v->log_length, MAX_LOG_LENGTH / MiB);
		return -EINVAL;
	}
	if (v->log_length && v->log_offset + v->log_length > v->file_size) {
		vhdx_fail(r, "log at %llu+%u lies past the end of the file (%llu bytes)",
			     (unsigned long long)v->log_offset, v->log_length,
			     (unsigned long long)v->file_size);
		return -EINVAL;
	}
	return 0;
}

/* ---- region table ---------------------------------------------------- */

static int region_table_check(const uint8_t *rt, const char **why)
{
	uint32_t count;

	if (memcmp(rt, VHDX_SIG_REGI, 4) != 0) {
		*why = "bad signature";
		return -EINVAL;
	}
	if (vhdx_checksum(rt, VHDX_REGION_SIZE, 4) != get32(rt + 4)) {
		*why = "bad checksum";
		return -EINVAL;
	}
	count = get32(rt + 8);
	if (count > VHDX_MAX_REGIONS) {
		*why = "too many entries";
		return -EINVAL;
	}
	return 0;
}

static int parse_regions(struct vhdx *v, struct vhdx_report *r)
{
	uint8_t *rt[2];
	const char *why[2] = { NULL, NULL };
	const uint8_t *tab;
	bool have_bat = false, have_meta = false;
	uint32_t count;
	int ret = 0;

	rt[0] = vhdx_alloc(VHDX_REGION_SIZE);
	rt[1] = vhdx_alloc(VHDX_REGION_SIZE);
	if (!rt[0] || !rt[1]) {
		ret = -ENOMEM;
		goto out;
	}
	if ((ret = vhdx_read_meta(v, rt[0], VHDX_REGION_SIZE, VHDX_REGION1_OFFSET)) ||
	    (ret = vhdx_read_meta(v, rt[1], VHDX_REGION_SIZE, VHDX_REGION2_OFFSET)))
		goto out;

	v->good_region = -1;
	for (int i = 0; i < 2; i++) {
		if (region_table_check(rt[i], &why[i]) == 0) {
			if (v->good_region < 0)
				v->good_region = i;
			continue;
		}
		v->rewrite_regions = true;
		vhdx_warn(r, "region table %d is damaged (%s)", i + 1, why[i]);
	}
	if (v->good_region < 0) {
		vhdx_fail(r, "neither region table is valid");
		ret = -EINVAL;
		goto out;
	}
	tab = rt[v->good_region];
	if (v->good_region == 0 && !why[1] &&
	    memcmp(rt[0], rt[1], VHDX_REGION_SIZE) != 0) {
		vhdx_warn(r, "the two region tables differ");
		v->rewrite_regions = true;
	}
	memcpy(v->region_good, tab, VHDX_REGION_SIZE);

	count = get32(tab + 8);
	v->regions = calloc(count + 1, sizeof(*v->regions));
	if (!v->regions) {
		ret = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *e = tab + RT_HEADER_SIZE + i * RT_ENTRY_SIZE;
		struct guid g;
		uint64_t off = get64(e + 16);
		uint32_t len = get32(e + 24);
		uint32_t required = get32(e + 28) & 1;
		char gs[40];

		get_guid(&g, e);
		guid_format(&g, gs);
		for (uint32_t j = 0; j < i; j++) {
			struct guid o;

			get_guid(&o, tab + RT_HEADER_SIZE + j * RT_ENTRY_SIZE);
			if (guid_equal(&g, &o)) {
				ret = vhdx_fail(r, "region %s is listed twice", gs);
				goto out;
			}
		}
		if (off % VHDX_ALIGN || len % VHDX_ALIGN || off < VHDX_HEADER_SECTION ||
		    len == 0) {
			ret = vhdx_fail(r, "region %s at %llu, %u bytes, is misaligned or inside the header section",
					   gs, (unsigned long long)off, len);
			goto out;
		}
		if (off + len > v->file_size) {
			ret = vhdx_fail(r, "region %s at %llu+%u lies past the end of the file (%llu bytes)",
					   gs, (unsigned long long)off, len,
					   (unsigned long long)v->file_size);
			goto out;
		}
		v->regions[v->nregions].off = off;
		v->regions[v->nregions++].len = len;
		if (guid_equal(&g, &guid_bat_region)) {
			v->bat_offset = off;
			v->bat_length = len;
			have_bat = true;
		} else if (guid_equal(&g, &guid_metadata_region)) {
			v->meta_offset = off;
			v->meta_length = len;
			have_meta = true;
		} else if (required) {
			ret = vhdx_fail(r, "unknown region %s is marked required", gs);
			goto out;
		}
	}
	if (!have_bat || !have_meta) {
		ret = vhdx_fail(r, "the region table has no %s region",
				   have_bat ? "metadata" : "BAT");
		goto out;
	}
	/* Regions may overlap neither each other nor the log. */
	if (v->log_length) {
		v->regions[v->nregions].off = v->log_offset;
		v->regions[v->nregions++].len = v->log_length;
	}
	for (uint32_t i = 0; i < v->nregions; i++) {
		for (uint32_t j = 0; j < i; j++) {
			const struct region *a = &v->regions[i], *b = &v->regions[j];

			if (a->off < b->off + b->len && b->off < a->off + a->len) {
				ret = vhdx_fail(r, "regions at %llu+%u and %llu+%u overlap",
						(unsigned long long)a->off, a->len,
						(unsigned long long)b->off, b->len);
				goto out;
			}
		}
	}
out:
	free(rt[0]);
	free(rt[1]);
	return ret;
}

/* ---- metadata ------------------------------------------------------- */

static int parse_parent_locator(struct vhdx *v, struct vhdx_report *r,
				const uint8_t *item, uint32_t len)
{
	struct vhdx_locator *loc = malloc(sizeof(*loc));
	char why[256];
	int ret;

	if (!loc)
		return -ENOMEM;
	ret = vhdx_locator_parse(item, len, loc, why, sizeof(why));
	if (ret)
		ret = vhdx_fail(r, "parent locator %s", why);
	else
		ret = vhdx_locator_refs(loc, v->d);
	free(loc);
	return ret;
}

struct meta_item {
	const struct guid *id;
	const char *name;
	uint32_t len;			/* exact length; 0: variable */
	bool found;
	uint32_t off, got_len;
};

static int parse_metadata(struct vhdx *v, struct vhdx_report *r)
{
	struct meta_item items[] = {
		{ &guid_file_parameters, "file parameters", 8 },
		{ &guid_virtual_disk_size, "virtual disk size", 8 },
		{ &guid_virtual_disk_id, "virtual disk id", 16 },
		{ &guid_logical_sector_size, "logical sector size", 4 },
		{ &guid_physical_sector_size, "physical sector size", 4 },
		{ &guid_parent_locator, "parent locator", 0 },
	};
	uint8_t *region;
	uint16_t count;
	uint32_t fp_flags;
	int ret = 0;

	if (v->meta_length < VHDX_METADATA_TABLE)
		return vhdx_fail(r, "metadata region is too small");
	/* The region holds the table and every item: at most a few MiB. */
	if (v->meta_length > 64 * MiB)
		return vhdx_fail(r, "metadata region of %u bytes is absurdly large",
				    v->meta_length);
	region = vhdx_alloc(v->meta_length);
	if (!region)
		return -ENOMEM;
	ret = vhdx_read_meta(v, region, v->meta_length, v->meta_offset);
	if (ret)
		goto out;
	if (memcmp(region, VHDX_SIG_METADATA, 8) != 0) {
		ret = vhdx_fail(r, "metadata table has a bad signature");
		goto out;
	}
	count = get16(region + 10);
	if (count > VHDX_MAX_METADATA) {
		ret = vhdx_fail(r, "metadata table has %u entries (at most 2047)",
				   count);
		goto out;
	}
	for (uint16_t i = 0; i < count; i++) {
		const uint8_t *e = region + MT_HEADER_SIZE + i * MT_ENTRY_SIZE;
		uint32_t off = get32(e + 16), len = get32(e + 20);
		uint32_t flags = get32(e + 24);
		struct meta_item *known = NULL;
		struct guid id;
		char gs[40];

		get_guid(&id, e);
		guid_format(&id, gs);
		if (len > VHDX_METADATA_ITEM_MAX ||
		    (len == 0 && off != 0) ||
		    (len && (off < VHDX_METADATA_TABLE ||
			     (uint64_t)off + len > v->meta_length))) {
			ret = vhdx_fail(r, "metadata item %s at %u+%u is out of bounds",
					   gs, off, len);
			goto out;
		}
		for (uint16_t j = 0; j < i; j++) {
			const uint8_t *o = region + MT_HEADER_SIZE + j * MT_ENTRY_SIZE;
			uint32_t ooff = get32(o + 16), olen = get32(o + 20);

			if (memcmp(o, e, 16) == 0 &&
			    ((get32(o + 24) ^ flags) & MT_FLAG_IS_USER) == 0) {
				ret = vhdx_fail(r, "metadata item %s is listed twice", gs);
				goto out;
			}
			if (len && olen && off < ooff + olen && ooff < off + len) {
				ret = vhdx_fail(r, "metadata items overlap at offset %u", off);
				goto out;
			}
		}
		if (flags & MT_FLAG_IS_USER) {
			if (guid_equal(&id, &guid_merge_record) && len == VHDX_SECTOR &&
			    off % VHDX_SECTOR == 0)
				v->record_item = off;
			continue;
		}
		for (size_t k = 0; k < ARRAY_SIZE(items); k++)
			if (guid_equal(&id, items[k].id))
				known = &items[k];
		if (!known) {
			if (flags & MT_FLAG_IS_REQUIRED) {
				ret = vhdx_fail(r, "unknown metadata item %s is marked required",
						   gs);
				goto out;
			}
			continue;
		}
		if (known->len && len != known->len) {
			ret = vhdx_fail(r, "metadata item '%s' is %u bytes, expected %u",
					   known->name, len, known->len);
			goto out;
		}
		known->found = true;
		known->off = off;
		known->got_len = len;
	}
	for (size_t k = 0; k < 5; k++) {
		if (!items[k].found) {
			ret = vhdx_fail(r, "metadata item '%s' is missing",
					   items[k].name);
				goto out;
		}
	}

	v->block_size = get32(region + items[0].off);
	fp_flags = get32(region + items[0].off + 4);
	v->has_parent = fp_flags & FP_HAS_PARENT;
	/* MS-VHDX 2.6.2.1: ignored when HasParent is set. */
	v->leave_allocated = (fp_flags & FP_LEAVE_BLOCKS_ALLOCATED) && !v->has_parent;
	v->vsize = get64(region + items[1].off);
	v->vsize_item = items[1].off;
	get_guid(&v->disk_id, region + items[2].off);
	v->lss = get32(region + items[3].off);
	v->pss = get32(region + items[4].off);

	if (v->block_size < VHDX_MIN_BLOCK || v->block_size > VHDX_MAX_BLOCK ||
	    (v->block_size & (v->block_size - 1))) {
		ret = vhdx_fail(r, "block size %u is not a power of two from 1 MiB to 256 MiB",
				   v->block_size);
		goto out;
	}
	if ((v->lss != 512 && v->lss != 4096) || (v->pss != 512 && v->pss != 4096)) {
		ret = vhdx_fail(r, "sector sizes %u/%u are not 512 or 4096",
				   v->lss, v->pss);
		goto out;
	}
	if (v->vsize == 0 || v->vsize > VHDX_MAX_DISK_SIZE || v->vsize % v->lss) {
		ret = vhdx_fail(r, "virtual disk size %llu is zero, above 64 TiB or not a multiple of the %u-byte sector",
				   (unsigned long long)v->vsize, v->lss);
		goto out;
	}
	if (v->has_parent) {
		if (!items[5].found) {
			ret = vhdx_fail(r, "differencing disk without a parent locator");
				goto out;
		}
		v->locator_item = items[5].off;
		v->locator_len = items[5].got_len;
		ret = parse_parent_locator(v, r, region + items[5].off,
					   items[5].got_len);
	}
out:
	free(region);
	return ret;
}

/* ---- BAT ----------------------------------------------------------- */

/* One bit per MiB of the file: which MiB belong to some structure. */
struct space_map {
	uint8_t *bits;
	uint64_t mb;
};

/* Claim [off, off+len); returns false if some MiB was already claimed. */
static bool space_claim(struct space_map *m, uint64_t off, uint64_t len)
{
	bool ok = true;

	for (uint64_t mb = off / MiB; mb < (off + len + MiB - 1) / MiB; mb++) {
		if (mb >= m->mb)
			return false;
		if (m->bits[mb / 8] & (1u << (mb % 8)))
			ok = false;
		m->bits[mb / 8] |= (uint8_t)(1u << (mb % 8));
	}
	return ok;
}

static int bat_entry_problem(struct vhdx *v, struct vhdx_report *r,
			     uint64_t idx, const char *what, uint64_t e)
{
	int ret = vhdx_problem(r, "BAT entry %llu %s (state %u, offset %llu MiB)",
			       (unsigned long long)idx, what,
			       (unsigned)(e & BAT_STATE_MASK),
			       (unsigned long long)(e >> BAT_OFFSET_SHIFT));

	if (!ret && v->repairing) {
		put64(v->bat + idx * 8, PAYLOAD_BLOCK_NOT_PRESENT);
		vhdx_mark_dirty(v, idx);
	}
	return ret;
}

static int parse_bat(struct vhdx *v, struct vhdx_report *r)
{
	struct space_map map;
	uint64_t bitmap_blocks;
	int ret = 0;

	v->chunk_ratio = (VHDX_CHUNK_SECTORS * v->lss) / v->block_size;
	v->data_blocks = (v->vsize + v->block_size - 1) / v->block_size;
	bitmap_blocks = (v->data_blocks + v->chunk_ratio - 1) / v->chunk_ratio;
	if (v->has_parent)
		v->bat_entries = bitmap_blocks * (v->chunk_ratio + 1);
	else
		v->bat_entries = v->data_blocks +
				 (v->data_blocks - 1) / v->chunk_ratio;
	if (v->bat_entries * 8 > v->bat_length)
		return vhdx_fail(r, "BAT region of %u bytes is too small for %llu entries",
				    v->bat_length, (unsigned long long)v->bat_entries);

	v->bat_bytes = (v->bat_entries * 8 + VHDX_SECTOR - 1) & ~(VHDX_SECTOR - 1);
	v->bat = vhdx_alloc(v->bat_bytes);
	if (!v->bat || vhdx_dirty_alloc(v))
		return -ENOMEM;
	ret = vhdx_read_meta(v, v->bat, v->bat_bytes, v->bat_offset);
	if (ret)
		return ret;

	/* Every structure and block must own its MiBs alone. */
	map.mb = (v->file_size + MiB - 1) / MiB;
	map.bits = calloc(map.mb / 8 + 1, 1);
	if (!map.bits)
		return -ENOMEM;
	/* Regions and the log were checked against each other already. */
	space_claim(&map, 0, VHDX_HEADER_SECTION);
	for (uint32_t i = 0; i < v->nregions; i++)
		space_claim(&map, v->regions[i].off, v->regions[i].len);

	v->alloc_end = v->file_size;
	v->allocated = 0;
	for (uint64_t idx = 0; idx < v->bat_entries; idx++) {
		uint64_t e = bat_get(v, idx);
		unsigned int state = e & BAT_STATE_MASK;
		uint64_t off = (e >> BAT_OFFSET_SHIFT) * MiB;
		bool bitmap = (idx % (v->chunk_ratio + 1)) == v->chunk_ratio;
		uint64_t len = bitmap ? MiB : v->block_size;

		if (bitmap) {
			if (state == SB_BLOCK_NOT_PRESENT)
				continue;
			if (!v->has_parent || state != SB_BLOCK_PRESENT) {
				ret = bat_entry_problem(v, r, idx,
					"is a sector bitmap entry in an invalid state", e);
				if (ret)
					goto out;
				continue;
			}
		} else {
			if (state == 4 || state == 5 ||
			    (state == PAYLOAD_BLOCK_PARTIALLY_PRESENT && !v->has_parent)) {
				ret = bat_entry_problem(v, r, idx, "has an invalid state", e);
				if (ret)
					goto out;
				continue;
			}
			if (state != PAYLOAD_BLOCK_FULLY_PRESENT &&
			    state != PAYLOAD_BLOCK_PARTIALLY_PRESENT)
				continue;
		}
		if (e & BAT_RESERVED_MASK) {
			ret = bat_entry_problem(v, r, idx, "has reserved bits set", e);
			if (ret)
				goto out;
			continue;
		}
		if (off < VHDX_HEADER_SECTION) {
			ret = bat_entry_problem(v, r, idx, "points into the header section", e);
			if (ret)
				goto out;
			continue;
		}
		if (off > v->file_size || len > v->file_size - off) {
			ret = bat_entry_problem(v, r, idx, "points past the end of the file", e);
			if (ret)
				goto out;
			continue;
		}
		if (!space_claim(&map, off, len)) {
			ret = bat_entry_problem(v, r, idx,
				"overlaps another block or region", e);
			if (ret)
				goto out;
			continue;
		}
		if (!bitmap)
			v->allocated += v->block_size;
	}
out:
	free(map.bits);
	return ret;
}

/* ---- the whole file ---------------------------------------------------- */

int vhdx_dirty_alloc(struct vhdx *v)
{
	uint64_t chunks = (v->data_blocks + v->chunk_ratio - 1) / v->chunk_ratio;
	uint64_t ids;

	v->bat_sectors = (uint32_t)(v->bat_bytes / VHDX_SECTOR);
	ids = v->bat_sectors + (v->has_parent ? chunks * SB_SECTORS : 0);
	free(v->dirty_map);
	free(v->dirty_list);
	v->dirty_map = calloc(ids, 1);
	v->dirty_list = calloc(ids, sizeof(uint32_t));
	v->ndirty = 0;
	return v->dirty_map && v->dirty_list ? 0 : -ENOMEM;
}

void vhdx_mark_dirty(struct vhdx *v, uint64_t bat_idx)
{
	uint32_t sector = (uint32_t)(bat_idx / BAT_ENTRIES_PER_SECTOR);

	if (v->dirty_map[sector])
		return;
	v->dirty_map[sector] = 1;
	v->dirty_list[v->ndirty++] = sector;
}

int vhdx_parse(struct vhdx *v, struct vhdx_report *r)
{
	uint8_t *section;
	struct stat st;
	int ret;

	if (fstat(v->fd, &st) < 0)
		return -errno;
	v->file_size = (uint64_t)st.st_size;
	if (v->file_size < VHDX_HEADER_SECTION) {
		vhdx_fail(r, "file is truncated: %llu bytes, shorter than the 1 MiB header section",
			     (unsigned long long)v->file_size);
		return -EINVAL;
	}
	v->hdr = vhdx_alloc(VHDX_HEADER_SIZE);
	v->region_good = vhdx_alloc(VHDX_REGION_SIZE);
	section = vhdx_alloc(VHDX_REGION1_OFFSET);
	if (!v->hdr || !v->region_good || !section) {
		free(section);
		return -ENOMEM;
	}
	/* File identifier and both headers: the first 192 KiB. */
	ret = file_pread(v->fd, section, VHDX_REGION1_OFFSET, 0);
	if (ret)
		goto out;
	if (memcmp(section, VHDX_SIG_FILE, 8) != 0) {
		vhdx_fail(r, "no VHDX file identifier (signature 'vhdxfile')");
		ret = -EINVAL;
		goto out;
	}
	ret = parse_headers(v, r, section);
	if (ret)
		goto out;
	if (!guid_is_zero(&v->log_guid)) {
		ret = vhdx_log_replay(v, r, v->d->read_only);
		if (ret)
			goto out;
	}
	ret = parse_regions(v, r);
	if (ret)
		goto out;
	ret = parse_metadata(v, r);
	if (ret)
		goto out;
	ret = parse_bat(v, r);
out:
	free(section);
	return ret;
}

void vhdx_state_free(struct vhdx *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->nov; i++)
		free(v->ov[i].data);
	free(v->ov);
	free(v->regions);
	free(v->hdr);
	free(v->region_good);
	free(v->bat);
	free(v->dirty_map);
	free(v->dirty_list);
	for (uint64_t c = 0; v->sb && c < v->nchunks; c++)
		free(v->sb[c]);
	free(v->sb);
	free(v->commit.entry);
	free(v->commit.snap);
	free(v);
}
