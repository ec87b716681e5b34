// SPDX-License-Identifier: MIT
/*
 * Growing a disk: raw files are truncated up; a VHDX file gets a larger
 * Virtual Disk Size and, when its BAT region cannot describe the new
 * blocks, a new BAT region at the end of the file.
 *
 * A VHDX resize is one metadata transaction, done in three stages so a
 * crash at any point leaves the old disk or the new one, never a mix:
 *
 * 1. Invisible preparation.  Everything written here lies where the old
 *    disk does not look: past the old end of the file (a relocated BAT,
 *    a fixed disk's new blocks), in BAT sectors wholly past the old
 *    entries, or in the unaddressable tail of the old last block.  Then
 *    a flush.  A crash leaves the old disk plus unreferenced space.
 *
 * 2. The switch, through the log as every metadata change is: one entry
 *    carries the sector holding the Virtual Disk Size item, the changed
 *    sectors of both region table copies when the BAT moves, and the one
 *    BAT sector that holds both old and new entries.  Write the entry,
 *    flush, point the header at the log, write the sectors in place,
 *    flush.  Before the entry is complete a crash leaves the old disk;
 *    after, replay gives the new one.
 *
 * 3. Clean-up: the old BAT region, unreferenced now, is punched out.
 *
 * The BAT layout follows MS-VHDX 2.5: the chunk ratio depends only on the
 * block and logical sector sizes, which a resize keeps, so the old
 * entries keep their indexes and the new payload and sector bitmap
 * entries continue the same interleaving after them.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhdx/state.h"
#include "vhdx/test_hooks.h"

#define RT_SECTORS (VHDX_REGION_SIZE / VHDX_SECTOR)
/*
 * What the switch logs at most: both region table copies, the size item
 * (two sectors if it straddles), one BAT sector.
 */
#define RESIZE_MAX_SECTORS (2 * RT_SECTORS + 2 + 1)

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) / a * a;
}

/* The new layout, and the sectors the switch will log. */
struct grow {
	struct vhdx *v;
	uint64_t size;
	uint64_t data_blocks;
	uint64_t entries;
	size_t bat_bytes;		/* whole sectors */
	uint8_t *bat;			/* the new BAT */
	bool relocate;
	uint64_t bat_offset;
	uint32_t bat_length;
	uint64_t blocks_at;		/* where a fixed disk's new blocks go */
	uint64_t new_blocks;		/* of those */
	uint64_t end;			/* the file's new size */
	uint64_t old_file_size;
	uint8_t *rt;			/* the new region table */
	uint8_t *meta;			/* sectors holding the size item */
	struct log_sector sect[RESIZE_MAX_SECTORS];
	uint32_t nsect;
};

static void log_add(struct grow *g, uint64_t off, const uint8_t *data)
{
	g->sect[g->nsect].off = off;
	g->sect[g->nsect++].data = data;
}

static int plan(struct grow *g, char *err, size_t errlen)
{
	struct vhdx *v = g->v;
	uint64_t old_end = align_up(v->file_size, VHDX_ALIGN);
	uint64_t len;

	g->data_blocks = (g->size + v->block_size - 1) / v->block_size;
	g->entries = g->data_blocks + (g->data_blocks - 1) / v->chunk_ratio;
	g->bat_bytes = align_up(g->entries * 8, VHDX_SECTOR);
	g->relocate = g->entries * 8 > v->bat_length;
	g->bat_offset = v->bat_offset;
	g->bat_length = v->bat_length;
	g->blocks_at = old_end;
	if (g->relocate) {
		/* At most 512 MiB for 64 TiB in 1 MiB blocks: fits 32 bits. */
		len = align_up(g->entries * 8, VHDX_ALIGN);
		g->bat_offset = old_end;
		g->bat_length = (uint32_t)len;
		g->blocks_at = old_end + len;
	}
	g->old_file_size = v->file_size;
	g->end = g->relocate ? g->blocks_at : v->file_size;
	if (v->leave_allocated) {
		g->new_blocks = g->data_blocks - v->data_blocks;
		g->end = g->blocks_at + g->new_blocks * v->block_size;
	}

	g->bat = vhdx_alloc(g->bat_bytes);
	g->rt = vhdx_alloc(VHDX_REGION_SIZE);
	g->meta = vhdx_alloc(2 * VHDX_SECTOR);
	if (!g->bat || !g->rt || !g->meta) {
		snprintf(err, errlen, "out of memory for a BAT of %llu entries",
			 (unsigned long long)g->entries);
		return -ENOMEM;
	}
	memset(g->bat, 0, g->bat_bytes);
	memcpy(g->bat, v->bat, v->bat_entries * 8);
	if (!v->leave_allocated)
		return 0;
	/* A fixed disk has every block, in order after what is there. */
	for (uint64_t b = v->data_blocks; b < g->data_blocks; b++) {
		uint64_t off = g->blocks_at +
			       (b - v->data_blocks) * v->block_size;

		put64(g->bat + bat_payload_index(v, b) * 8,
		      off | PAYLOAD_BLOCK_FULLY_PRESENT);
	}
	return 0;
}

/* The sector (or two) holding Virtual Disk Size, with the new value. */
static int plan_size_item(struct grow *g)
{
	struct vhdx *v = g->v;
	uint64_t item = v->meta_offset + v->vsize_item;
	uint64_t first = item - item % VHDX_SECTOR;
	uint32_t n = (uint32_t)((item + 7) / VHDX_SECTOR - first / VHDX_SECTOR + 1);
	int ret = vhdx_read_meta(v, g->meta, n * VHDX_SECTOR, first);

	if (ret)
		return ret;
	put64(g->meta + (item - first), g->size);
	for (uint32_t i = 0; i < n; i++)
		log_add(g, first + i * VHDX_SECTOR, g->meta + i * VHDX_SECTOR);
	return 0;
}

/* Both region table copies, naming the new BAT region: changed sectors only. */
static int plan_region_tables(struct grow *g, char *err, size_t errlen)
{
	static const uint64_t copy_off[2] = { VHDX_REGION1_OFFSET,
					      VHDX_REGION2_OFFSET };
	struct vhdx *v = g->v;
	uint32_t count = get32(v->region_good + 8);
	uint8_t *disk = vhdx_alloc(VHDX_REGION_SIZE);
	bool found = false;
	int ret = 0;

	if (!disk)
		return -ENOMEM;
	memcpy(g->rt, v->region_good, VHDX_REGION_SIZE);
	for (uint32_t i = 0; i < count; i++) {
		uint8_t *e = g->rt + RT_HEADER_SIZE + i * RT_ENTRY_SIZE;
		struct guid id;

		get_guid(&id, e);
		if (guid_equal(&id, &guid_bat_region)) {
			put64(e + 16, g->bat_offset);
			put32(e + 24, g->bat_length);
			found = true;
		}
	}
	if (!found) {
		snprintf(err, errlen, "the region table lost its BAT entry");
		ret = -EINVAL;
		goto out;
	}
	put32(g->rt + 4, 0);
	put32(g->rt + 4, vhdx_checksum(g->rt, VHDX_REGION_SIZE, 4));
	for (int c = 0; c < 2 && !ret; c++) {
		ret = vhdx_read_meta(v, disk, VHDX_REGION_SIZE, copy_off[c]);
		for (uint32_t s = 0; s < RT_SECTORS && !ret; s++) {
			size_t o = (size_t)s * VHDX_SECTOR;

			if (memcmp(disk + o, g->rt + o, VHDX_SECTOR))
				log_add(g, copy_off[c] + o, g->rt + o);
		}
	}
out:
	free(disk);
	return ret;
}

/* Give [off, off + len) real space; the file grows to cover it. */
static int reserve(int fd, uint64_t off, uint64_t len)
{
	int ret;

	if (!len)
		return 0;
	if (vhdx_reserve_hook)
		return vhdx_reserve_hook(fd, off, len);
	ret = posix_fallocate(fd, (off_t)off, (off_t)len);
	if (ret == EOPNOTSUPP || ret == EINVAL) {
		/* No fallocate here: a sparse extension still reads zeros. */
		struct stat st;

		if (fstat(fd, &st) < 0)
			return -errno;
		if ((uint64_t)st.st_size < off + len &&
		    ftruncate(fd, (off_t)(off + len)) < 0)
			return -errno;
		ret = 0;
	}
	return -ret;
}

/*
 * The old last block, when the old size ended inside it, may hold
 * anything past that end (another tool's leftovers); the new size makes
 * those bytes visible, so they become zeros first.
 */
static int zero_old_tail(struct grow *g)
{
	struct vhdx *v = g->v;
	uint64_t last = v->data_blocks - 1;
	uint64_t e = bat_get(v, bat_payload_index(v, last));
	uint64_t in_block = v->vsize - last * v->block_size;
	uint64_t off = (e >> BAT_OFFSET_SHIFT) * MiB + in_block;
	uint64_t len = v->block_size - in_block;

	if (in_block == v->block_size ||
	    (e & BAT_STATE_MASK) != PAYLOAD_BLOCK_FULLY_PRESENT)
		return 0;
	if (fallocate(v->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
		      (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != EINVAL)
		return -errno;
	return file_write_zeros(v->fd, off, len);
}

/* Stage 1: everything the old disk cannot see, then a flush. */
static int prepare(struct grow *g, char *err, size_t errlen)
{
	struct vhdx *v = g->v;
	uint64_t from, upto;
	struct stat st;
	int ret;

	ret = zero_old_tail(g);
	if (ret) {
		snprintf(err, errlen, "cannot clear the end of the last block: %s",
			 strerror(-ret));
		return ret;
	}
	if (g->relocate)
		ret = reserve(v->fd, g->bat_offset, g->bat_length);
	if (!ret)
		ret = reserve(v->fd, g->blocks_at, g->new_blocks * v->block_size);
	if (!ret && fstat(v->fd, &st) < 0)
		ret = -errno;
	if (!ret && (uint64_t)st.st_size < g->end &&
	    ftruncate(v->fd, (off_t)g->end) < 0)
		ret = -errno;
	if (ret) {
		snprintf(err, errlen, "cannot extend the file to %llu bytes: %s",
			 (unsigned long long)g->end, strerror(-ret));
		return ret;
	}
	vhdx_step("resize: file extended");

	if (g->relocate) {
		/* Fresh space reads as zeros: only entries that are not. */
		from = 0;
		upto = v->leave_allocated ? g->bat_bytes : v->bat_bytes;
	} else {
		/* Sectors without an old entry; the shared one is logged. */
		from = align_up(v->bat_entries * 8, VHDX_SECTOR);
		upto = g->bat_bytes;
	}
	if (from < upto)
		ret = file_pwrite(v->fd, g->bat + from, upto - from,
				  g->bat_offset + from);
	if (ret) {
		snprintf(err, errlen, "cannot write the new BAT entries: %s",
			 strerror(-ret));
		return ret;
	}
	vhdx_step("resize: new BAT sectors written");
	if (fsync(v->fd) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot flush the new space: %s",
			 strerror(errno));
		return ret;
	}
	vhdx_step("resize: new space flushed");
	if (g->end > v->file_size)
		v->file_size = g->end;
	/* LastFileOffset of the entry: replay makes the file this long. */
	v->alloc_end = align_up(v->file_size, VHDX_ALIGN);
	v->durable_size = v->file_size;
	return 0;
}

/* The transaction is in place: the open disk takes the new layout. */
static int adopt(struct grow *g)
{
	struct vhdx *v = g->v;
	free(v->bat);
	v->bat = g->bat;
	g->bat = NULL;
	v->bat_bytes = g->bat_bytes;
	v->bat_entries = g->entries;
	v->data_blocks = g->data_blocks;
	if (vhdx_dirty_alloc(v))
		return -ENOMEM;
	for (uint32_t i = 0; i < v->nregions; i++)
		if (v->regions[i].off == v->bat_offset &&
		    v->regions[i].len == v->bat_length) {
			v->regions[i].off = g->bat_offset;
			v->regions[i].len = g->bat_length;
		}
	v->bat_offset = g->bat_offset;
	v->bat_length = g->bat_length;
	memcpy(v->region_good, g->rt, VHDX_REGION_SIZE);
	v->vsize = g->size;
	v->allocated += g->new_blocks * v->block_size;
	v->d->info.virtual_size = v->vsize;
	v->d->info.file_size = v->file_size;
	v->d->info.allocated = v->allocated;
	return 0;
}

int vhdx_grow(struct vhdx *v, uint64_t new_size, char *err, size_t errlen)
{
	struct grow g = { .v = v, .size = new_size };
	uint64_t old_bat = v->bat_offset, old_bat_len = v->bat_length;
	int ret;

	if (errlen)
		err[0] = 0;
	if (v->d->read_only || v->has_parent) {
		snprintf(err, errlen, "only fixed and dynamic disks opened for writing can grow");
		return -EROFS;
	}
	if (new_size == v->vsize)
		return 0;
	if (new_size < v->vsize || new_size > VHDX_MAX_DISK_SIZE ||
	    new_size % v->lss) {
		snprintf(err, errlen, "cannot grow a disk of %llu bytes to %llu",
			 (unsigned long long)v->vsize, (unsigned long long)new_size);
		return -EINVAL;
	}
	/* As for allocations: an entry may be at most half the log. */
	if (v->log_length < 2 * (COMMIT_MAX_SECTORS + 1) * VHDX_SECTOR) {
		snprintf(err, errlen, "the log (%u bytes) is too small to change the disk safely",
			 v->log_length);
		return -ENOTSUP;
	}
	if (v->broken) {
		snprintf(err, errlen, "the disk failed an earlier write: %s",
			 strerror(-v->broken));
		return v->broken;
	}
	/* Earlier allocations are committed on their own first. */
	ret = vhdx_commit_all(v);
	if (ret) {
		snprintf(err, errlen, "cannot commit earlier changes: %s",
			 strerror(-ret));
		return ret;
	}

	ret = plan(&g, err, errlen);
	if (!ret)
		ret = plan_size_item(&g);
	if (!ret && g.relocate)
		ret = plan_region_tables(&g, err, errlen);
	if (!ret && !g.relocate && (v->bat_entries * 8) % VHDX_SECTOR) {
		uint64_t s = v->bat_entries * 8 / VHDX_SECTOR;

		log_add(&g, v->bat_offset + s * VHDX_SECTOR,
			g.bat + s * VHDX_SECTOR);
	}
	if (ret) {
		if (!err[0])
			snprintf(err, errlen, "cannot read the metadata: %s",
				 strerror(-ret));
		goto out;
	}

	/* New File and DataWriteGuids before the first change (2.2.2). */
	if (!v->data_guid_done) {
		ret = vhdx_header_update(v, true, &v->log_guid);
		if (ret) {
			snprintf(err, errlen, "cannot update the headers: %s",
				 strerror(-ret));
			goto out;
		}
	}
	ret = prepare(&g, err, errlen);
	if (ret) {
		/* Nothing refers to the new space yet: give it back. */
		if (ftruncate(v->fd, (off_t)g.old_file_size) < 0)
			log_error("vhdx: cannot trim %s after a failed resize",
				  strerror(errno));
		goto out;
	}

	ret = vhdx_commit_sectors(v, g.sect, g.nsect);
	if (ret) {
		snprintf(err, errlen, "cannot commit the new size (%s); the disk has its old or its new size, whichever the log holds when it is next opened",
			 strerror(-ret));
		goto out;
	}
	vhdx_step("resize: committed");
	ret = adopt(&g);
	if (ret) {
		snprintf(err, errlen, "out of memory after the resize");
		v->broken = ret;
		goto out;
	}
	if (g.relocate) {
		/* Unreferenced now; its space goes back (best effort). */
		if (fallocate(v->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)old_bat, (off_t)old_bat_len) < 0 &&
		    errno != EOPNOTSUPP)
			log_error("vhdx: cannot release the old BAT region: %s",
				  strerror(errno));
		vhdx_step("resize: old BAT region released");
	}
out:
	free(g.bat);
	free(g.rt);
	free(g.meta);
	return ret;
}

/* ---- the public entry point ---------------------------------------- */

static int raw_grow(const char *path, uint64_t new_size, char *err,
		    size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	struct stat st;
	int ret = 0;

	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return ret;
	}
	/* The size was read through another descriptor: look again. */
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size > new_size) {
		snprintf(err, errlen, "%s changed while it was being resized", path);
		ret = -EAGAIN;
	} else if (ftruncate(fd, (off_t)new_size) < 0 || fsync(fd) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot grow %s: %s", path, strerror(errno));
	}
	if (close(fd) < 0 && !ret) {
		ret = -errno;
		snprintf(err, errlen, "cannot grow %s: %s", path, strerror(errno));
	}
	return ret;
}

/* 1: @new_size is a growth; 0: no change; else why not. */
static int size_ok(const char *path, const struct vdisk_info *in, bool blkdev,
		   uint64_t new_size, char *err, size_t errlen)
{
	if (blkdev) {
		snprintf(err, errlen, "%s is a block device: its size is the device's",
			 path);
		return -ENOTSUP;
	}
	if (in->type == VDISK_TYPE_DIFFERENCING) {
		snprintf(err, errlen, "%s is a differencing disk: its size follows its parent",
			 path);
		return -ENOTSUP;
	}
	if (new_size < in->virtual_size) {
		snprintf(err, errlen, "shrinking a disk loses data; not supported (%s holds %llu bytes, %llu asked for)",
			 path, (unsigned long long)in->virtual_size,
			 (unsigned long long)new_size);
		return -EINVAL;
	}
	if (new_size % in->logical_sector_size) {
		snprintf(err, errlen, "size %llu is not a multiple of the %u-byte sector",
			 (unsigned long long)new_size, in->logical_sector_size);
		return -EINVAL;
	}
	/* Raw disks too: any disk can then be converted to VHDX. */
	if (new_size > VHDX_MAX_DISK_SIZE) {
		snprintf(err, errlen, "size %llu is more than the 64 TiB a disk can hold",
			 (unsigned long long)new_size);
		return -EINVAL;
	}
	return new_size > in->virtual_size;
}

struct first_problem {
	char text[256];
	unsigned int count;
};

static void note_problem(void *ctx, const char *problem)
{
	struct first_problem *p = ctx;

	/* A log left by a crash is normal: the open replays it. */
	if (strcmp(problem, VHDX_MSG_LOG_DIRTY) == 0)
		return;
	if (!p->count++)
		snprintf(p->text, sizeof(p->text), "%s", problem);
}

/* A resize rewrites metadata: only from a structure check finds sound. */
static int vhdx_sound(const char *path, char *err, size_t errlen)
{
	struct first_problem p = { .count = 0 };
	struct vhdx_check_result res;
	int ret = vdisk_check(path, false, note_problem, &p, &res);

	if (ret) {
		snprintf(err, errlen, "cannot check %s: %s", path, strerror(-ret));
		return ret;
	}
	if (p.count) {
		snprintf(err, errlen, "%s has %u problem%s (%s); run 'fsvisor disk check --repair' first",
			 path, p.count, p.count == 1 ? "" : "s", p.text);
		return -EINVAL;
	}
	return 0;
}

int vdisk_resize(const char *path, uint64_t new_size, char *err, size_t errlen)
{
	struct vdisk_info in;
	struct vdisk *d;
	struct stat st;
	bool blkdev;
	int ret, cret;

	if (errlen)
		err[0] = 0;
	ret = vdisk_open(path, &(struct vdisk_open_opts){ .no_io = true }, &d,
			 err, errlen);
	if (ret)
		return ret;
	in = *vdisk_info(d);
	blkdev = fstat(d->fd, &st) == 0 && S_ISBLK(st.st_mode);
	vdisk_close(d);
	ret = size_ok(path, &in, blkdev, new_size, err, errlen);
	if (ret <= 0)
		return ret;
	if (in.format == VDISK_FORMAT_RAW)
		return raw_grow(path, new_size, err, errlen);

	ret = vhdx_sound(path, err, errlen);
	if (!ret && in.format == VDISK_FORMAT_VHD) {
		ret = vdisk_open(path, NULL, &d, err, errlen);
		if (ret)
			return ret;
		ret = vhd_grow(d, new_size, err, errlen);
		cret = vdisk_close(d);
		if (!ret && cret) {
			snprintf(err, errlen, "cannot close %s after the resize: %s",
				 path, strerror(-cret));
			ret = cret;
		}
		return ret;
	}
	if (ret)
		return ret;
	ret = vdisk_open(path, NULL, &d, err, errlen);
	if (ret)
		return ret;
	ret = vhdx_grow(d->priv, new_size, err, errlen);
	cret = vdisk_close(d);
	if (!ret && cret) {
		snprintf(err, errlen, "cannot close %s after the resize: %s", path,
			 strerror(-cret));
		ret = cret;
	}
	return ret;
}
