// SPDX-License-Identifier: MIT
/*
 * VHD (version 1): creation (geometry, limits), I/O of fixed, dynamic
 * and differencing disks against a model, growth, the footer copy, and
 * damaged files refused with a reason or repaired.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhdx/vhdx.h"
#include "vhdx/format.h"
#include "vhdx/vhd_state.h"

static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/fsvisor-vhd-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(vhd, .init = setup, .fini = teardown, .timeout = 120);

static const char *at(const char *name)
{
	static char p[8][160];
	static int i;

	i = (i + 1) % 8;
	snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
	return p[i];
}

static void create_ok(const char *name, enum vdisk_type type, uint64_t size,
		      const char *parent)
{
	struct vdisk_create_opts o = { .format = VDISK_FORMAT_VHD, .type = type,
				       .size = size,
				       .parent = parent ? at(parent) : NULL };
	char err[1024] = "";

	cr_assert_eq(vdisk_create(at(name), &o, err, sizeof(err)), 0, "%s", err);
}

static struct vdisk *open_ok(const char *name, bool ro)
{
	struct vdisk *d = NULL;
	char err[1024] = "";

	cr_assert_eq(vdisk_open(at(name), &(struct vdisk_open_opts){ .read_only = ro },
				&d, err, sizeof(err)), 0, "%s", err);
	return d;
}

static void fill(uint8_t *b, size_t n, uint8_t tag)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(tag + i * 13 + (i >> 9));
}

static void expect_model(struct vdisk *d, const uint8_t *model, uint64_t size)
{
	uint8_t *b = malloc(size);

	cr_assert_eq(vdisk_pread(d, b, size, 0), 0);
	for (uint64_t i = 0; i < size; i++)
		cr_assert_eq(b[i], model[i], "byte %llu: 0x%02x, expected 0x%02x",
			     (unsigned long long)i, b[i], model[i]);
	free(b);
}

Test(vhd, geometry_and_sizes)
{
	uint16_t c;
	uint8_t h, s;
	struct vdisk *d;

	/* The specification's appendix, at its branches. */
	vhd_geometry(20480, &c, &h, &s);
	cr_assert(c == 301 && h == 4 && s == 17, "%u/%u/%u", c, h, s);
	vhd_geometry(2097152, &c, &h, &s);
	cr_assert(c == 2080 && h == 16 && s == 63, "%u/%u/%u", c, h, s);
	vhd_geometry(65535ULL * 16 * 255 + 1000, &c, &h, &s);
	cr_assert(c == 65535 && h == 16 && s == 255, "%u/%u/%u", c, h, s);
	/* Sizes round up to whole cylinders; past the largest geometry not. */
	cr_assert_eq(vhd_round_size(10 * MiB), 302 * 4 * 17 * 512ULL);
	cr_assert_eq(vhd_round_size(GiB), 2081 * 16 * 63 * 512ULL);
	cr_assert_eq(vhd_round_size(200 * GiB), 200 * GiB);

	create_ok("a.vhd", VDISK_TYPE_DYNAMIC, GiB, NULL);
	d = open_ok("a.vhd", true);
	cr_assert_eq(vdisk_info(d)->virtual_size, 2081 * 16 * 63 * 512ULL);
	cr_assert_eq(vdisk_info(d)->format, VDISK_FORMAT_VHD);
	cr_assert_eq(vdisk_info(d)->type, VDISK_TYPE_DYNAMIC);
	cr_assert_eq(vdisk_info(d)->block_size, 2 * MiB);
	cr_assert_eq(vdisk_info(d)->logical_sector_size, 512);
	cr_assert_eq(vdisk_info(d)->file_size, 512 + 1024 + 2560 + 512,
		     "copy, header, BAT of 513 entries, footer");
	vdisk_close(d);
}

Test(vhd, create_refuses)
{
	static const struct {
		struct vdisk_create_opts o;
		const char *why;
	} bad[] = {
		{ { .size = 0, .type = VDISK_TYPE_DYNAMIC }, "1 sector to 2040 GiB" },
		{ { .size = 2041 * GiB, .type = VDISK_TYPE_DYNAMIC }, "1 sector to 2040 GiB" },
		{ { .size = MiB, .type = VDISK_TYPE_DYNAMIC, .logical_sector_size = 4096 },
		  "512-byte sectors" },
		{ { .size = MiB, .type = VDISK_TYPE_DYNAMIC, .block_size = 3 * MiB },
		  "power of two" },
		{ { .size = MiB, .type = VDISK_TYPE_DIFFERENCING }, "needs a parent" },
	};
	char err[512];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct vdisk_create_opts o = bad[i].o;

		o.format = VDISK_FORMAT_VHD;
		err[0] = 0;
		cr_assert_lt(vdisk_create(at("x.vhd"), &o, err, sizeof(err)), 0, "case %zu", i);
		cr_assert_not_null(strstr(err, bad[i].why), "case %zu: %s", i, err);
		cr_assert_eq(access(at("x.vhd"), F_OK), -1, "case %zu left a file", i);
	}
	/* A VHD child needs a VHD parent. */
	{
		struct vhdx_create_opts x = { .size = 8 * MiB, .type = VDISK_TYPE_DYNAMIC };
		struct vdisk_create_opts o = { .format = VDISK_FORMAT_VHD,
					       .parent = at("p.vhdx") };

		cr_assert_eq(vhdx_create(at("p.vhdx"), &x, err, sizeof(err)), 0);
		cr_assert_lt(vdisk_create(at("x.vhd"), &o, err, sizeof(err)), 0);
		cr_assert_not_null(strstr(err, "must be a VHD file"), "%s", err);
	}
}

/* Random writes and zeroing on @name, mirrored into @model. */
static void scribble(const char *name, uint8_t *model, uint64_t size,
		     unsigned int seed)
{
	struct vdisk *d = open_ok(name, false);
	uint8_t *b = malloc(3 * MiB);

	srand(seed);
	for (int i = 0; i < 40; i++) {
		uint64_t off = ((uint64_t)rand() << 8 ^ (uint64_t)rand()) % size;
		uint64_t len = 1 + (uint64_t)rand() % (3 * MiB);
		int kind = rand() % 5;

		if (kind == 4) {
			/* A whole 2 MiB block, or sectors. */
			off &= ~(rand() % 2 ? 2 * MiB - 1 : 511ULL);
			len = rand() % 2 ? 2 * MiB : (len + 511) & ~511ULL;
		}
		if (len > size - off)
			len = size - off;
		if (kind == 4) {
			cr_assert_eq(vdisk_write_zeroes(d, off, len), 0);
			memset(model + off, 0, len);
		} else {
			fill(b, len, (uint8_t)(seed + i));
			cr_assert_eq(vdisk_pwrite(d, b, len, off), 0);
			memcpy(model + off, b, len);
		}
		if (i % 9 == 0)
			cr_assert_eq(vdisk_flush(d), 0);
	}
	expect_model(d, model, size);
	cr_assert_eq(vdisk_close(d), 0);
	free(b);
}

Test(vhd, io_of_every_type)
{
	const uint64_t size = 12 * MiB;	/* 12 MiB exactly: 24576 = 96 x 16 x 16 */
	uint8_t *fixed = calloc(1, 16 * MiB), *dyn = calloc(1, 16 * MiB);
	uint8_t *diff;
	struct vdisk *d;
	uint64_t vs;

	create_ok("f.vhd", VDISK_TYPE_FIXED, size, NULL);
	create_ok("d.vhd", VDISK_TYPE_DYNAMIC, size, NULL);
	d = open_ok("d.vhd", true);
	vs = vdisk_info(d)->virtual_size;
	vdisk_close(d);
	scribble("f.vhd", fixed, vs, 1);
	scribble("d.vhd", dyn, vs, 2);
	d = open_ok("f.vhd", true);
	expect_model(d, fixed, vs);
	vdisk_close(d);

	/* Two levels of children over the dynamic disk. */
	diff = malloc(16 * MiB);
	memcpy(diff, dyn, vs);
	create_ok("c1.vhd", VDISK_TYPE_DIFFERENCING, 0, "d.vhd");
	scribble("c1.vhd", diff, vs, 3);
	create_ok("c2.vhd", VDISK_TYPE_DIFFERENCING, 0, "c1.vhd");
	scribble("c2.vhd", diff, vs, 4);
	d = open_ok("c2.vhd", true);
	cr_assert_eq(vdisk_info(d)->chain_depth, 3);
	cr_assert_eq(vdisk_info(d)->alignment, 512);
	expect_model(d, diff, vs);
	vdisk_close(d);
	/* The base is untouched by its children. */
	d = open_ok("d.vhd", true);
	expect_model(d, dyn, vs);
	vdisk_close(d);
	free(fixed);
	free(dyn);
	free(diff);
}

static uint8_t *slurp(const char *name, size_t *len)
{
	struct stat st;
	int fd = open(at(name), O_RDONLY);
	uint8_t *b;

	cr_assert_geq(fd, 0);
	fstat(fd, &st);
	*len = (size_t)st.st_size;
	b = malloc(*len);
	cr_assert_eq(read(fd, b, *len), (ssize_t)*len);
	close(fd);
	return b;
}

static void spill(const char *name, const uint8_t *b, size_t len)
{
	int fd = open(at(name), O_WRONLY | O_CREAT | O_TRUNC, 0644);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, b, len), (ssize_t)len);
	close(fd);
}

Test(vhd, grow_fixed_and_dynamic)
{
	uint8_t *model = calloc(1, 64 * MiB), *b = malloc(MiB);
	char err[512];
	struct vdisk *d;

	for (int t = 0; t < 2; t++) {
		const char *name = t ? "g.vhd" : "gf.vhd";
		uint64_t vs;

		memset(model, 0, 64 * MiB);
		create_ok(name, t ? VDISK_TYPE_DYNAMIC : VDISK_TYPE_FIXED, 4 * MiB, NULL);
		d = open_ok(name, false);
		vs = vdisk_info(d)->virtual_size;
		fill(b, MiB, 7);
		cr_assert_eq(vdisk_pwrite(d, b, MiB, vs - MiB), 0);
		memcpy(model + vs - MiB, b, MiB);
		cr_assert_eq(vdisk_close(d), 0);
		/* Far enough that a dynamic disk's BAT has to move. */
		cr_assert_eq(vdisk_resize(at(name), 60 * MiB, err, sizeof(err)), 0, "%s", err);
		d = open_ok(name, false);
		cr_assert_geq(vdisk_info(d)->virtual_size, 60 * MiB);
		vs = vdisk_info(d)->virtual_size;
		fill(b, MiB, 8);
		cr_assert_eq(vdisk_pwrite(d, b, MiB, vs - MiB), 0);
		memcpy(model + vs - MiB, b, MiB);
		expect_model(d, model, vs);
		cr_assert_eq(vdisk_close(d), 0);
		{
			struct vhdx_check_result res;

			cr_assert_eq(vdisk_check(at(name), false, NULL, NULL, &res), 0);
			cr_assert_eq(res.problems, 0, "%s after growing", name);
		}
	}
	free(model);
	free(b);
}

struct problems {
	char text[2048];
};

static void collect(void *ctx, const char *p)
{
	struct problems *l = ctx;

	strncat(l->text, p, sizeof(l->text) - strlen(l->text) - 2);
	strcat(l->text, "\n");
}

/* @name must be refused saying @why, and check must say it too. */
static void refused(const char *name, const char *why)
{
	struct vhdx_check_result res;
	struct problems l = { "" };
	struct vdisk *d = NULL;
	char err[1024] = "";

	cr_assert_lt(vdisk_open(at(name), &(struct vdisk_open_opts){ .read_only = true },
				&d, err, sizeof(err)), 0, "%s opened (%s)", name, why);
	cr_assert_not_null(strstr(err, why), "'%s' does not say '%s'", err, why);
	if (vdisk_check(at(name), false, collect, &l, &res) == 0) {
		cr_assert_geq(res.problems, 1);
		cr_assert_not_null(strstr(l.text, why), "check: '%s', not '%s'", l.text, why);
	}
}

Test(vhd, damaged_footers_and_headers)
{
	struct vhdx_check_result res;
	struct problems l = { "" };
	uint8_t *img;
	size_t len;
	struct vdisk *d;

	create_ok("d.vhd", VDISK_TYPE_DYNAMIC, 8 * MiB, NULL);
	create_ok("f.vhd", VDISK_TYPE_FIXED, 8 * MiB, NULL);

	/*
	 * Fixed: the footer is the only copy, and without its cookie the
	 * file is a raw one; opened as VHD it is refused.
	 */
	img = slurp("f.vhd", &len);
	for (int k = 0; k < 2; k++) {
		size_t at_byte = len - 512 + (k ? 100 : 3);

		img[at_byte] ^= 1;
		spill("bad.vhd", img, len);
		cr_assert_lt(vdisk_open(at("bad.vhd"), &(struct vdisk_open_opts){
				.read_only = true, .format = VDISK_FORMAT_VHD }, &d,
				l.text, sizeof(l.text)), 0);
		cr_assert_not_null(strstr(l.text, k ? "bad checksum" : "bad cookie"),
				   "%s", l.text);
		img[at_byte] ^= 1;
	}
	free(img);

	/* Dynamic: a damaged footer falls back to the copy, check says so. */
	img = slurp("d.vhd", &len);
	img[len - 512 + 100] ^= 1;
	spill("bad.vhd", img, len);
	d = open_ok("bad.vhd", true);
	vdisk_close(d);
	l.text[0] = 0;
	cr_assert_eq(vdisk_check(at("bad.vhd"), false, collect, &l, &res), 0);
	cr_assert_not_null(strstr(l.text, "footer at the end of the file is damaged (bad checksum)"),
			   "%s", l.text);
	cr_assert_eq(vdisk_check(at("bad.vhd"), true, NULL, NULL, &res), 0);
	cr_assert_eq(res.repaired, res.problems);
	cr_assert_eq(vdisk_check(at("bad.vhd"), false, NULL, NULL, &res), 0);
	cr_assert_eq(res.problems, 0, "the repair left problems");
	img[len - 512 + 100] ^= 1;

	/* A stale copy at the start: reported, repaired. */
	img[100] ^= 1;
	spill("bad.vhd", img, len);
	l.text[0] = 0;
	cr_assert_eq(vdisk_check(at("bad.vhd"), false, collect, &l, &res), 0);
	cr_assert_not_null(strstr(l.text, "footer copy at the start"), "%s", l.text);
	cr_assert_eq(vdisk_check(at("bad.vhd"), true, NULL, NULL, &res), 0);
	cr_assert_eq(vdisk_check(at("bad.vhd"), false, NULL, NULL, &res), 0);
	cr_assert_eq(res.problems, 0);
	img[100] ^= 1;

	/* The dynamic header: cookie, checksum. */
	img[512 + 2] ^= 1;
	spill("bad.vhd", img, len);
	refused("bad.vhd", "dynamic disk header has a bad cookie");
	img[512 + 2] ^= 1;
	img[512 + 900] ^= 1;
	spill("bad.vhd", img, len);
	refused("bad.vhd", "dynamic disk header has a bad checksum");
	img[512 + 900] ^= 1;
	free(img);
}
