// SPDX-License-Identifier: MIT
/*
 * Property test of chains: random writes, discards and write-zeroes at
 * every level of chains of depth 1 to 8, every read compared with a flat
 * model; then merges at each depth (offline, online with writes going
 * on, into the parent and two levels up), compact, and convert round
 * trips (VHD and VHDX, flattened and kept as chains), all compared with
 * the model.  The same for VHD chains.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhdx/vhdx.h"
#include "vhdx/format.h"
#include "xorshift.h"

#define SIZE	(16 * MiB)

static char dir[64];
static uint64_t rng;
static uint8_t *model, *buf;

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/fsvisor-prop-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	model = calloc(1, 2 * SIZE);
	buf = malloc(2 * SIZE);
	cr_assert(model && buf);
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
	free(model);
	free(buf);
}

TestSuite(property, .init = setup, .fini = teardown, .timeout = 600);

static const char *at(const char *fmt, int n)
{
	static char p[8][160];
	static int i;
	char name[64];

	i = (i + 1) % 8;
	snprintf(name, sizeof(name), fmt, n);
	snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
	return p[i];
}

static uint64_t pick(uint64_t n)
{
	return xorshift64(&rng) % n;
}

static void create(const char *path, enum vdisk_format f, const char *parent,
		   uint32_t bs)
{
	struct vdisk_create_opts o = { .format = f, .type = VDISK_TYPE_DYNAMIC,
				       .size = SIZE, .parent = parent,
				       .block_size = bs };
	char err[1024] = "";

	cr_assert_eq(vdisk_create(path, &o, err, sizeof(err)), 0, "%s", err);
}

static struct vdisk *open_rw(const char *path, bool ro)
{
	struct vdisk *d;
	char err[1024] = "";

	cr_assert_eq(vdisk_open(path, &(struct vdisk_open_opts){ .read_only = ro },
				&d, err, sizeof(err)), 0, "%s: %s", path, err);
	return d;
}

/* A random range of the model read back from @d. */
static void check_some(struct vdisk *d, const char *what)
{
	uint64_t size = vdisk_info(d)->virtual_size;
	uint64_t off = pick(SIZE), len = 1 + pick(2 * MiB);

	if (len > SIZE - off)
		len = SIZE - off;
	cr_assert_eq(vdisk_pread(d, buf, len, off), 0);
	cr_assert(memcmp(buf, model + off, len) == 0, "%s: %llu+%llu differs",
		  what, (unsigned long long)off, (unsigned long long)len);
	(void)size;
}

static void check_all(struct vdisk *d, const char *what)
{
	uint64_t size = vdisk_info(d)->virtual_size;

	cr_assert_geq(size, SIZE, "%s: smaller than the model", what);
	cr_assert_eq(vdisk_pread(d, buf, size, 0), 0);
	/* The model is zero past SIZE, as the disk must be. */
	if (memcmp(buf, model, size) == 0)
		return;
	for (uint64_t i = 0; i < size; i++)
		cr_assert_eq(buf[i], i < SIZE ? model[i] : 0,
			     "%s: byte %llu is 0x%02x, the model has 0x%02x", what,
			     (unsigned long long)i, buf[i], i < SIZE ? model[i] : 0);
}

static void check_file(const char *path, const char *what)
{
	struct vdisk *d = open_rw(path, true);

	check_all(d, what);
	vdisk_close(d);
}

/* One random change, to the disk and to the model. */
static void one_op(struct vdisk *d)
{
	uint32_t lss = vdisk_info(d)->logical_sector_size;
	uint64_t kind = pick(10), off = pick(SIZE), len = 1 + pick(3 * MiB);

	if (kind >= 7) {
		/* Zeroing: whole sectors, sometimes whole 2 MiB blocks. */
		if (pick(3) == 0) {
			off &= ~(2 * MiB - 1);
			len = 2 * MiB * (1 + pick(2));
		}
		off -= off % lss;
		len = (len + lss - 1) / lss * lss;
	}
	if (len > SIZE - off)
		len = SIZE - off;
	if (kind < 7) {
		uint8_t tag = (uint8_t)(1 + pick(255));

		for (uint64_t i = 0; i < len; i++)
			buf[i] = (uint8_t)(tag + i * 31 + (i >> 9));
		cr_assert_eq(vdisk_pwrite(d, buf, len, off), 0);
		memcpy(model + off, buf, len);
	} else {
		cr_assert_eq(kind == 9 ? vdisk_discard(d, off, len) :
				   vdisk_write_zeroes(d, off, len), 0);
		memset(model + off, 0, len);
	}
	if (pick(6) == 0)
		cr_assert_eq(vdisk_flush(d), 0);
}

static void scribble(const char *path, int ops, const char *what)
{
	struct vdisk *d = open_rw(path, false);

	for (int i = 0; i < ops; i++) {
		one_op(d);
		check_some(d, what);
	}
	check_all(d, what);
	cr_assert_eq(vdisk_close(d), 0);
}

/* Merge @top into @into (NULL: its parent), online with writes when @live. */
static void merge(const char *top, const char *into, bool live, const char *what)
{
	struct vdisk_merge_opts o = { .into = into };
	char err[1024] = "";

	if (!live) {
		cr_assert_eq(vdisk_merge(top, &o, err, sizeof(err)), 0, "%s: %s", what, err);
		return;
	}
	{
		struct vdisk *d = open_rw(top, false);
		struct vdisk_merge *m;
		int ret;

		cr_assert_eq(vdisk_merge_begin(d, &o, &m, err, sizeof(err)), 0, "%s", err);
		do {
			one_op(d);
			check_some(d, what);
			ret = vdisk_merge_step(m, err, sizeof(err));
		} while (ret > 0);
		cr_assert_eq(ret, 0, "%s: %s", what, err);
		check_all(d, what);
		cr_assert_eq(vdisk_close(d), 0);
	}
}

static void convert(const char *src, const char *dst, enum vdisk_format f,
		    const char *parent)
{
	struct vdisk_convert_opts o = { .format = f, .type = VDISK_TYPE_DYNAMIC,
					.parent = parent };
	char err[1024] = "";

	unlink(dst);
	cr_assert_eq(vdisk_convert(src, dst, &o, err, sizeof(err)), 0, "%s -> %s: %s",
		     src, dst, err);
}

static void compact(const char *path, const char *what)
{
	char err[1024] = "";

	cr_assert_eq(vdisk_compact(path, NULL, NULL, err, sizeof(err)), 0, "%s: %s",
		     what, err);
	check_file(path, what);
}

Test(property, vhdx_chains_of_depth_1_to_8)
{
	char what[128];

	for (int depth = 1; depth <= 8; depth++) {
		char cmd[160];

		rng = 0x9e3779b97f4a7c15ULL * (uint64_t)depth;
		memset(model, 0, SIZE);
		snprintf(cmd, sizeof(cmd), "rm -f '%s'/*", dir);
		cr_assert_eq(system(cmd), 0);
		create(at("l%d.vhdx", 0), VDISK_FORMAT_VHDX, NULL, MiB);
		snprintf(what, sizeof(what), "depth %d, base", depth);
		scribble(at("l%d.vhdx", 0), 12, what);
		for (int l = 1; l <= depth; l++) {
			create(at("l%d.vhdx", l), VDISK_FORMAT_VHDX, at("l%d.vhdx", l - 1),
			       l % 2 ? 2 * MiB : MiB);
			snprintf(what, sizeof(what), "depth %d, level %d", depth, l);
			scribble(at("l%d.vhdx", l), 10, what);
		}
		/* Merges at each depth, down to the base. */
		for (int top = depth; top >= 1;) {
			bool two = top >= 2 && pick(3) == 0;
			bool live = pick(2) == 0;

			snprintf(what, sizeof(what), "depth %d, merging level %d%s%s", depth,
				 top, two ? " two levels down" : "", live ? " online" : "");
			merge(at("l%d.vhdx", top), two ? at("l%d.vhdx", top - 2) : NULL,
			      live, what);
			top -= two ? 2 : 1;
			check_file(at("l%d.vhdx", top), what);
			if (top) {
				snprintf(what, sizeof(what), "depth %d, level %d after a merge",
					 depth, top);
				scribble(at("l%d.vhdx", top), 3, what);
			}
		}
		snprintf(what, sizeof(what), "depth %d, compacted", depth);
		compact(at("l%d.vhdx", 0), what);
		/* Round trips: VHD, VHDX, raw, and a chain kept. */
		convert(at("l%d.vhdx", 0), at("r%d.vhd", 0), VDISK_FORMAT_VHD, NULL);
		check_file(at("r%d.vhd", 0), "as a VHD");
		convert(at("r%d.vhd", 0), at("r%d.vhdx", 1), VDISK_FORMAT_VHDX, NULL);
		check_file(at("r%d.vhdx", 1), "back to VHDX");
		convert(at("r%d.vhdx", 1), at("r%d.raw", 2), VDISK_FORMAT_RAW, NULL);
		check_file(at("r%d.raw", 2), "as raw");
		create(at("c%d.vhdx", 0), VDISK_FORMAT_VHDX, at("l%d.vhdx", 0), 0);
		scribble(at("c%d.vhdx", 0), 6, "a child for the kept chain");
		convert(at("c%d.vhdx", 0), at("k%d.vhd", 0), VDISK_FORMAT_VHD, at("r%d.vhd", 0));
		check_file(at("k%d.vhd", 0), "a chain kept as VHD");
	}
}

Test(property, vhd_chains_of_depth_1_to_4)
{
	char what[128];

	for (int depth = 1; depth <= 4; depth++) {
		char cmd[160];

		rng = 0x2545f4914f6cdd1dULL * (uint64_t)depth;
		memset(model, 0, 2 * SIZE);
		snprintf(cmd, sizeof(cmd), "rm -f '%s'/*", dir);
		cr_assert_eq(system(cmd), 0);
		create(at("v%d.vhd", 0), VDISK_FORMAT_VHD, NULL, 0);
		snprintf(what, sizeof(what), "VHD depth %d, base", depth);
		scribble(at("v%d.vhd", 0), 10, what);
		for (int l = 1; l <= depth; l++) {
			create(at("v%d.vhd", l), VDISK_FORMAT_VHD, at("v%d.vhd", l - 1), 0);
			snprintf(what, sizeof(what), "VHD depth %d, level %d", depth, l);
			scribble(at("v%d.vhd", l), 8, what);
		}
		snprintf(what, sizeof(what), "VHD depth %d, compacted", depth);
		compact(at("v%d.vhd", depth), what);
		{
			/* The base compacts under its children and reads the same. */
			struct vdisk *d = open_rw(at("v%d.vhd", 0), true);
			uint64_t size = vdisk_info(d)->virtual_size;
			uint8_t *before = malloc(size);
			char err[1024] = "";

			cr_assert_eq(vdisk_pread(d, before, size, 0), 0);
			vdisk_close(d);
			cr_assert_eq(vdisk_compact(at("v%d.vhd", 0), NULL, NULL, err,
						   sizeof(err)), 0, "%s", err);
			d = open_rw(at("v%d.vhd", 0), true);
			cr_assert_eq(vdisk_pread(d, buf, size, 0), 0);
			cr_assert(memcmp(buf, before, size) == 0, "the base changed");
			vdisk_close(d);
			free(before);
		}
		check_file(at("v%d.vhd", depth), "the VHD chain after compacting its base");
		convert(at("v%d.vhd", depth), at("x%d.vhdx", 0), VDISK_FORMAT_VHDX, NULL);
		check_file(at("x%d.vhdx", 0), "a VHD chain flattened into VHDX");
		/* Merges at each depth of the VHD chain, down to its base. */
		for (int top = depth; top >= 1; top--) {
			bool live = pick(2) == 0;

			snprintf(what, sizeof(what), "VHD depth %d, merging level %d%s",
				 depth, top, live ? " online" : "");
			merge(at("v%d.vhd", top), NULL, live, what);
			check_file(at("v%d.vhd", top - 1), what);
		}
		compact(at("v%d.vhd", 0), "the VHD base after its merges");
		/* A VHDX child of the merged VHD, merged into a VHDX copy of it. */
		convert(at("v%d.vhd", 0), at("x%d.vhdx", 1), VDISK_FORMAT_VHDX, NULL);
		create(at("y%d.vhdx", 0), VDISK_FORMAT_VHDX, at("x%d.vhdx", 1), 0);
		scribble(at("y%d.vhdx", 0), 5, "a VHDX child of the copy");
		merge(at("y%d.vhdx", 0), NULL, false, "merging into the copy");
		check_file(at("x%d.vhdx", 1), "the copy after the merge");
	}
}
