// SPDX-License-Identifier: MIT
/*
 * Compacting a dynamic or differencing disk (vdisk_compact()), as
 * Hyper-V's Optimize-VHD does: blocks that hold only zeros, or that the
 * guest discarded, are freed, and the file shrinks, its contents
 * unchanged.
 *
 * 1. Free.  Every present block is read; one of zeros becomes a ZERO
 *    block (VHDX) or an unused entry (dynamic VHD) through the normal
 *    zeroing path, its space punched out.  A differencing VHD keeps its
 *    blocks (an unused entry would show the parent's data).
 * 2. Move.  Blocks past the first hole are copied into holes, lowest
 *    first, from the end of the file down.  The copy lands where nothing
 *    refers to it; then the BAT entry changes (through the log for VHDX,
 *    in place after a flush for VHD), so a crash leaves the block at its
 *    old place or its new one.  A block's old place is written again only
 *    after that change is on disk.
 * 3. Cut.  The file is truncated after the last thing in use (for VHD
 *    after its footer has been written there).
 *
 * The disk's contents stay, so its DataWriteGuid does (MS-VHDX 2.2.2
 * asks for a new one when what the disk reads changes): a parent can be
 * compacted without invalidating its children.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhdx/state.h"
#include "vhdx/vhd_state.h"

#define MOVE_BATCH	64		/* blocks moved per commit */

struct compact {
	struct vdisk *d;
	const struct vdisk_compact_opts *o;
	uint8_t *buf;
	uint64_t done, total;
	struct vdisk_compact_result *res;
};

static bool progress(struct compact *c, uint64_t step)
{
	c->done += step;
	if (c->done > c->total)
		c->done = c->total;
	return !c->o->progress || c->o->progress(c->o->progress_ctx, c->done, c->total);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Synchronous I/O through the disk's engine. */
struct sync_op {
	struct io_op op;
	bool done;
	int res;
};

static void sync_op_done(struct io_op *op, int res)
{
	struct sync_op *s = container_of(op, struct sync_op, op);

	s->done = true;
	s->res = res;
}

static int engine_rw(struct vdisk *d, bool write, void *buf, size_t len,
		     uint64_t off)
{
	struct sync_op s = { .op.cb = sync_op_done };
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	int ret = io_engine_rw(d->eng, &s.op, d->fd, write, &iov, 1, off, 0);

	if (ret)
		return ret;
	while (!s.done) {
		ret = io_engine_run(d->eng, 1);
		if (ret < 0)
			return ret;
	}
	return s.res < 0 ? s.res : 0;
}

/* ---- step 1: free blocks of zeros --------------------------------- */

static int free_zero_blocks(struct compact *c, uint64_t bs, bool (*present)(struct vdisk *, uint64_t))
{
	struct vdisk *d = c->d;
	uint64_t size = d->info.virtual_size;

	for (uint64_t off = 0; off < size; off += bs) {
		uint64_t len = size - off < bs ? size - off : bs;
		bool zero = true;
		int ret;

		if (present(d, off / bs)) {
			for (uint64_t pos = 0; pos < len && zero; pos += 4 * MiB) {
				uint64_t n = len - pos < 4 * MiB ? len - pos : 4 * MiB;

				ret = vdisk_pread(d, c->buf, n, off + pos);
				if (ret)
					return ret;
				zero = all_zero(c->buf, n);
			}
			if (zero && len == bs) {
				ret = vdisk_discard(d, off, len);
				if (ret)
					return ret;
				c->res->freed_blocks++;
			}
		}
		if (!progress(c, len / 2))
			return -ECANCELED;
	}
	return vdisk_flush(d);
}

/* ---- VHDX ----------------------------------------------------------- */

static bool vhdx_block_present(struct vdisk *d, uint64_t b)
{
	struct vhdx *v = d->priv;

	/* Partially present blocks mix the parent in: they stay. */
	return (bat_get(v, bat_payload_index(v, b)) & BAT_STATE_MASK) ==
	       PAYLOAD_BLOCK_FULLY_PRESENT;
}

/* Something that lives in whole MiB of the file: a block, a bitmap. */
struct piece {
	uint64_t idx;			/* its BAT entry */
	uint64_t off, len;
};

static int cmp_piece_desc(const void *a, const void *b)
{
	const struct piece *x = a, *y = b;

	return x->off < y->off ? 1 : x->off > y->off ? -1 : 0;
}

/* One bit per MiB of the file: used by a region or a piece. */
struct mib_map {
	uint8_t *bits;
	uint64_t n;
};

static void map_mark(struct mib_map *m, uint64_t off, uint64_t len, bool used)
{
	for (uint64_t i = off / MiB; i < (off + len + MiB - 1) / MiB && i < m->n; i++) {
		if (used)
			m->bits[i / 8] |= (uint8_t)(1u << (i % 8));
		else
			m->bits[i / 8] &= (uint8_t)~(1u << (i % 8));
	}
}

/*
 * The lowest free run of @len bytes below @limit, or 0.  Space is only
 * ever taken here, so the answer for a length never moves down: *from
 * remembers where the search got to.
 */
static uint64_t map_find(const struct mib_map *m, uint64_t len, uint64_t limit,
			 uint64_t *from)
{
	uint64_t need = len / MiB, run = 0;

	for (uint64_t i = *from; i < m->n && i * MiB + len <= limit; i++) {
		run = (m->bits[i / 8] >> (i % 8)) & 1 ? 0 : run + 1;
		if (run == need) {
			*from = i + 1 - need;
			return (i + 1 - need) * MiB;
		}
	}
	return 0;
}

static int vhdx_pieces(struct vhdx *v, struct piece **out, size_t *n)
{
	struct piece *p = calloc(v->bat_entries + 1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	*n = 0;
	for (uint64_t idx = 0; idx < v->bat_entries; idx++) {
		uint64_t e = bat_get(v, idx);
		unsigned int st = e & BAT_STATE_MASK;
		bool bitmap = (idx % (v->chunk_ratio + 1)) == v->chunk_ratio;

		if (bitmap ? st != SB_BLOCK_PRESENT :
			     st != PAYLOAD_BLOCK_FULLY_PRESENT &&
			     st != PAYLOAD_BLOCK_PARTIALLY_PRESENT)
			continue;
		p[*n].idx = idx;
		p[*n].off = (e >> BAT_OFFSET_SHIFT) * MiB;
		p[(*n)++].len = bitmap ? MiB : v->block_size;
	}
	*out = p;
	return 0;
}

static int vhdx_move(struct compact *c, struct vhdx *v)
{
	struct mib_map map = { .n = (v->file_size + MiB - 1) / MiB + 1 };
	struct piece *p;
	size_t n, moved = 0;
	uint64_t end = VHDX_HEADER_SECTION, from_block = 0, from_bitmap = 0;
	int ret;

	ret = vhdx_pieces(v, &p, &n);
	if (ret)
		return ret;
	map.bits = calloc(map.n / 8 + 1, 1);
	if (!map.bits) {
		free(p);
		return -ENOMEM;
	}
	map_mark(&map, 0, VHDX_HEADER_SECTION, true);
	for (uint32_t i = 0; i < v->nregions; i++)
		map_mark(&map, v->regions[i].off, v->regions[i].len, true);
	for (size_t i = 0; i < n; i++)
		map_mark(&map, p[i].off, p[i].len, true);
	qsort(p, n, sizeof(*p), cmp_piece_desc);
	for (size_t i = 0; i < n && !ret; i++) {
		uint64_t to = map_find(&map, p[i].len, p[i].off,
				       p[i].len == MiB ? &from_bitmap : &from_block);
		uint64_t e = bat_get(v, p[i].idx);

		if (!to)
			continue;
		/* Copy: into space nothing refers to. */
		for (uint64_t pos = 0; pos < p[i].len && !ret; pos += 4 * MiB) {
			uint64_t k = p[i].len - pos < 4 * MiB ? p[i].len - pos : 4 * MiB;

			ret = engine_rw(c->d, false, c->buf, k, p[i].off + pos);
			if (!ret)
				ret = engine_rw(c->d, true, c->buf, k, to + pos);
		}
		if (ret)
			break;
		map_mark(&map, to, p[i].len, true);
		put64(v->bat + p[i].idx * 8, to | (e & BAT_STATE_MASK));
		vhdx_mark_dirty(v, p[i].idx);
		p[i].off = to;
		c->res->moved_blocks++;
		if (++moved % MOVE_BATCH == 0) {
			/* The copies first, then the entries, through the log. */
			v->need_data_sync = true;
			ret = vhdx_commit_all(v);
		}
	}
	if (!ret) {
		static const struct guid zero;

		v->need_data_sync = true;
		ret = vhdx_commit_all(v);
		/*
		 * An empty log before the file shrinks: no entry may claim the
		 * file was once longer.
		 */
		if (!ret && !guid_is_zero(&v->log_guid))
			ret = vhdx_header_update(v, false, &zero);
		memset(&v->session_log_guid, 0, sizeof(v->session_log_guid));
	}
	/* The file ends after the last thing in use. */
	for (uint32_t i = 0; i < v->nregions; i++)
		if (v->regions[i].off + v->regions[i].len > end)
			end = v->regions[i].off + v->regions[i].len;
	for (size_t i = 0; i < n; i++)
		if (p[i].off + p[i].len > end)
			end = p[i].off + p[i].len;
	if (!ret && end < v->file_size) {
		if (ftruncate(v->fd, (off_t)end) < 0)
			ret = -errno;
		else
			v->file_size = v->alloc_end = v->durable_size = end;
		v->d->info.file_size = v->file_size;
	}
	free(map.bits);
	free(p);
	return ret;
}

/* ---- VHD ------------------------------------------------------------ */

static bool vhd_block_present(struct vdisk *d, uint64_t b)
{
	return vhd_bat_get(d->priv, (uint32_t)b) != VHD_UNUSED;
}

struct range {
	uint64_t off, len;
	uint32_t block;			/* UINT32_MAX: not a block */
};

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* Everything of @v that lives in the file, sorted. */
static int vhd_ranges(struct vhd *v, struct range **out, size_t *n)
{
	struct range *r = calloc(v->blocks + DH_NLOCATORS + 4, sizeof(*r));

	if (!r)
		return -ENOMEM;
	*n = 0;
	r[(*n)++] = (struct range){ 0, VHD_FOOTER_SIZE, UINT32_MAX };
	r[(*n)++] = (struct range){ v->header_off, VHD_HEADER_SIZE, UINT32_MAX };
	r[(*n)++] = (struct range){ v->bat_off, v->bat_bytes, UINT32_MAX };
	for (int i = 0; i < DH_NLOCATORS; i++) {
		const uint8_t *e = v->header + DH_LOCATORS + i * PL_SIZE;
		uint64_t space = be32(e + PL_SPACE), len = be32(e + PL_LENGTH);

		if (!be32(e + PL_CODE))
			continue;
		/* The space is in bytes or sectors, by writer: the larger. */
		if (space * VHD_SECTOR < v->footer_off && space < len)
			space *= VHD_SECTOR;
		if (space < len)
			space = len;
		r[(*n)++] = (struct range){ be64(e + PL_OFFSET), space, UINT32_MAX };
	}
	for (uint32_t b = 0; b < v->blocks; b++)
		if (vhd_bat_get(v, b) != VHD_UNUSED)
			r[(*n)++] = (struct range){ vhd_block_off(v, b),
						    v->bm_size + v->block_size, b };
	qsort(r, *n, sizeof(*r), cmp_range);
	*out = r;
	return 0;
}

/* The lowest place for a block before @limit, its data 4 KiB aligned. */
static uint64_t vhd_gap(const struct range *r, size_t n, uint64_t need,
			uint32_t bm, uint64_t limit)
{
	for (size_t i = 0; i + 1 < n; i++) {
		uint64_t from = r[i].off + r[i].len;
		uint64_t start = (from + bm + 4095) / 4096 * 4096 - bm;

		if (start + need <= r[i + 1].off && start + need <= limit)
			return start;
	}
	return 0;
}

static int vhd_move(struct compact *c, struct vhd *v)
{
	uint64_t total = (uint64_t)v->bm_size + v->block_size, end = 0;
	struct range *r = NULL;
	size_t n = 0, moved = 0;
	int ret;

	ret = vhd_ranges(v, &r, &n);
	for (size_t i = n; i-- > 0 && !ret;) {
		uint64_t to, from = r[i].off;

		if (r[i].block == UINT32_MAX)
			continue;
		to = vhd_gap(r, n, total, v->bm_size, from);
		if (!to)
			continue;
		for (uint64_t pos = 0; pos < total && !ret; pos += 4 * MiB) {
			uint64_t k = total - pos < 4 * MiB ? total - pos : 4 * MiB;

			ret = engine_rw(c->d, false, c->buf, k, from + pos);
			if (!ret)
				ret = engine_rw(c->d, true, c->buf, k, to + pos);
		}
		if (ret)
			break;
		put_be32(v->bat + (size_t)r[i].block * 4, (uint32_t)(to / VHD_SECTOR));
		vhd_mark_dirty(v, r[i].block / (VHD_SECTOR / 4));
		/* Into its new place in the list; the next one moves up to i. */
		{
			struct range moved_r = r[i];
			size_t k = 0;

			moved_r.off = to;
			while (k < i && r[k].off < to)
				k++;
			memmove(r + k + 1, r + k, (i - k) * sizeof(*r));
			r[k] = moved_r;
			i++;
		}
		c->res->moved_blocks++;
		if (++moved % MOVE_BATCH == 0)
			ret = vhd_commit_all(v);
	}
	if (!ret)
		ret = vhd_commit_all(v);
	for (size_t i = 0; i < n; i++)
		if (r[i].off + r[i].len > end)
			end = r[i].off + r[i].len;
	end = (end + VHD_SECTOR - 1) / VHD_SECTOR * VHD_SECTOR;
	if (!ret && end < v->footer_off) {
		/* The footer first, where the file will end; then the cut. */
		ret = file_pwrite(v->fd, v->footer, VHD_FOOTER_SIZE, end);
		if (!ret && fdatasync(v->fd) < 0)
			ret = -errno;
		if (!ret && ftruncate(v->fd, (off_t)(end + VHD_FOOTER_SIZE)) < 0)
			ret = -errno;
		if (!ret) {
			v->footer_off = end;
			v->file_size = end + VHD_FOOTER_SIZE;
			v->d->info.file_size = v->file_size;
		}
	}
	free(r);
	return ret;
}

int vdisk_compact(const char *path, const struct vdisk_compact_opts *o,
		  struct vdisk_compact_result *res, char *err, size_t errlen)
{
	static const struct vdisk_compact_opts none;
	struct vdisk_compact_result local;
	struct compact c = { .o = o ? o : &none, .res = res ? res : &local };
	const struct vdisk_info *in;
	uint64_t before;
	int ret, cret;

	memset(c.res, 0, sizeof(*c.res));
	ret = vdisk_open(path, NULL, &c.d, err, errlen);
	if (ret)
		return ret;
	in = vdisk_info(c.d);
	before = in->file_size;
	if (in->format == VDISK_FORMAT_RAW || in->type == VDISK_TYPE_FIXED) {
		snprintf(err, errlen, "%s is a %s disk: only dynamic and differencing disks are compacted",
			 path, in->format == VDISK_FORMAT_RAW ? "raw" : "fixed");
		vdisk_close(c.d);
		return -EINVAL;
	}
	c.buf = vhdx_alloc(4 * MiB);
	if (!c.buf) {
		vdisk_close(c.d);
		return -ENOMEM;
	}
	c.total = in->virtual_size;
	if (in->format == VDISK_FORMAT_VHDX) {
		/*
		 * What the disk reads does not change: a new FileWriteGuid,
		 * but the DataWriteGuid stays, so its children stay valid.
		 */
		((struct vhdx *)c.d->priv)->data_guid_done = true;
		ret = free_zero_blocks(&c, in->block_size, vhdx_block_present);
		if (!ret)
			ret = vhdx_move(&c, c.d->priv);
	} else {
		if (in->type == VDISK_TYPE_DYNAMIC)
			ret = free_zero_blocks(&c, in->block_size, vhd_block_present);
		else
			c.done = c.total / 2;
		if (!ret)
			ret = vhd_move(&c, c.d->priv);
	}
	if (!ret)
		progress(&c, c.total);
	c.res->file_size_before = before;
	c.res->file_size_after = vdisk_info(c.d)->file_size;
	free(c.buf);
	cret = vdisk_close(c.d);
	if (ret == -ECANCELED)
		snprintf(err, errlen, "cancelled (what was done stays: the disk reads the same)");
	else if (ret)
		snprintf(err, errlen, "cannot compact %s: %s", path, strerror(-ret));
	else if (cret)
		snprintf(err, errlen, "closing %s: %s", path, strerror(-cret));
	return ret ? ret : cret;
}
