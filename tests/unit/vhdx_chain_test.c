// SPDX-License-Identifier: MIT
/*
 * Differencing chains: creating children, reads resolved through the
 * levels, copy-on-write at sector granularity, zeroing that hides the
 * parent, finding parents by each of their names, and the chains that
 * must be refused.
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

static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/fsvisor-chain-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(chain, .init = setup, .fini = teardown, .timeout = 120);

static const char *at(const char *name)
{
	static char p[8][160];
	static int i;

	i = (i + 1) % 8;
	snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
	return p[i];
}

static void make_base(const char *name, uint64_t size, uint32_t lss)
{
	struct vhdx_create_opts o = { .size = size, .type = VDISK_TYPE_DYNAMIC,
				      .block_size = MiB, .logical_sector_size = lss };
	char err[512] = "";

	cr_assert_eq(vhdx_create(at(name), &o, err, sizeof(err)), 0, "%s", err);
}

static void make_child(const char *name, const char *parent)
{
	struct vhdx_create_opts o = { .parent = at(parent) };
	char err[1024] = "";

	cr_assert_eq(vhdx_create(at(name), &o, err, sizeof(err)), 0, "%s", err);
}

static struct vdisk *open_ok(const char *name, bool ro)
{
	struct vdisk_open_opts o = { .read_only = ro };
	struct vdisk *d = NULL;
	char err[1024] = "";

	cr_assert_eq(vdisk_open(at(name), &o, &d, err, sizeof(err)), 0, "%s", err);
	return d;
}

/* Open must fail with @want and say @why. */
static void open_fails(const char *name, int want, const char *why)
{
	struct vdisk *d = NULL;
	char err[1024] = "";
	int ret = vdisk_open(at(name), &(struct vdisk_open_opts){ .read_only = true },
			     &d, err, sizeof(err));

	cr_assert_eq(ret, want, "open of %s gave %d (%s), expected %d", name,
		     ret, err, want);
	cr_assert_not_null(strstr(err, why), "error '%s' does not say '%s'", err, why);
}

static void fill(uint8_t *b, size_t n, uint8_t tag)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(tag + i * 7 + (i >> 9));
}

static void write_ok(const char *name, uint64_t off, size_t len, uint8_t tag)
{
	struct vdisk *d = open_ok(name, false);
	uint8_t *b = malloc(len);

	fill(b, len, tag);
	cr_assert_eq(vdisk_pwrite(d, b, len, off), 0);
	cr_assert_eq(vdisk_close(d), 0);
	free(b);
}

/* @len bytes at @off of the disk read as @want. */
static void expect_bytes(struct vdisk *d, uint64_t off, const uint8_t *want,
			 size_t len)
{
	uint8_t *b = malloc(len);

	cr_assert_eq(vdisk_pread(d, b, len, off), 0);
	for (size_t i = 0; i < len; i++)
		cr_assert_eq(b[i], want[i], "byte %llu: 0x%02x, expected 0x%02x",
			     (unsigned long long)(off + i), b[i], want[i]);
	free(b);
}

Test(chain, child_takes_the_parents_geometry)
{
	struct vdisk *d;
	const struct vdisk_info *in;

	make_base("b.vhdx", 48 * MiB, 4096);
	make_child("c.vhdx", "b.vhdx");
	d = open_ok("c.vhdx", true);
	in = vdisk_info(d);
	cr_assert_eq(in->type, VDISK_TYPE_DIFFERENCING);
	cr_assert_eq(in->virtual_size, 48 * MiB);
	cr_assert_eq(in->logical_sector_size, 4096);
	cr_assert_eq(in->block_size, 2 * MiB);
	cr_assert_eq(in->chain_depth, 2);
	cr_assert_eq(in->alignment, 4096, "a child writes whole sectors");
	cr_assert_str_eq(in->parent, at("b.vhdx"));
	cr_assert_not_null(vdisk_parent(d));
	cr_assert_eq(vdisk_info(vdisk_parent(d))->chain_depth, 1);
	vdisk_close(d);
}

Test(chain, reads_resolve_and_writes_copy_on_write)
{
	uint8_t *model = calloc(1, 16 * MiB), *b = malloc(5 * MiB);
	struct vdisk *d;

	make_base("b.vhdx", 16 * MiB, 512);
	write_ok("b.vhdx", 0, 5 * MiB, 1);
	fill(model, 5 * MiB, 1);
	make_child("c.vhdx", "b.vhdx");

	/* Before any write the child reads as its parent. */
	d = open_ok("c.vhdx", true);
	expect_bytes(d, 0, model, 16 * MiB);
	vdisk_close(d);

	/* Sector-sized writes, one straddling blocks, one unaligned. */
	d = open_ok("c.vhdx", false);
	fill(b, 4096, 50);
	cr_assert_eq(vdisk_pwrite(d, b, 4096, 512), 0);
	memcpy(model + 512, b, 4096);
	fill(b, 3 * MiB, 60);
	cr_assert_eq(vdisk_pwrite(d, b, 3 * MiB, 3 * MiB - 1024), 0);
	memcpy(model + 3 * MiB - 1024, b, 3 * MiB);
	fill(b, 100, 70);
	cr_assert_eq(vdisk_pwrite(d, b, 100, 9 * MiB + 77), 0);
	memcpy(model + 9 * MiB + 77, b, 100);
	expect_bytes(d, 0, model, 16 * MiB);
	cr_assert_eq(vdisk_close(d), 0);

	/* The bitmaps survive a close; the parent was never written. */
	d = open_ok("c.vhdx", true);
	expect_bytes(d, 0, model, 16 * MiB);
	vdisk_close(d);
	fill(b, 5 * MiB, 1);
	d = open_ok("b.vhdx", true);
	expect_bytes(d, 0, b, 5 * MiB);
	vdisk_close(d);
	free(model);
	free(b);
}

Test(chain, zeroing_hides_the_parent)
{
	uint8_t *model = calloc(1, 16 * MiB);
	struct vdisk *d;

	make_base("b.vhdx", 16 * MiB, 512);
	write_ok("b.vhdx", 0, 16 * MiB, 9);
	fill(model, 16 * MiB, 9);
	make_child("c.vhdx", "b.vhdx");
	write_ok("c.vhdx", 6 * MiB, 2 * MiB, 20);
	fill(model + 6 * MiB, 2 * MiB, 20);

	d = open_ok("c.vhdx", false);
	/* Whole blocks (2 MiB): one the child has, one it does not. */
	cr_assert_eq(vdisk_write_zeroes(d, 6 * MiB, 2 * MiB), 0);
	cr_assert_eq(vdisk_discard(d, 2 * MiB, 2 * MiB), 0);
	/* Parts of blocks: allocated, absent. */
	cr_assert_eq(vdisk_write_zeroes(d, 10 * MiB + 4096, 8192), 0);
	cr_assert_eq(vdisk_write_zeroes(d, 13 * MiB, 512), 0);
	memset(model + 6 * MiB, 0, 2 * MiB);
	memset(model + 2 * MiB, 0, 2 * MiB);
	memset(model + 10 * MiB + 4096, 0, 8192);
	memset(model + 13 * MiB, 0, 512);
	expect_bytes(d, 0, model, 16 * MiB);
	cr_assert_eq(vdisk_close(d), 0);
	d = open_ok("c.vhdx", true);
	expect_bytes(d, 0, model, 16 * MiB);
	vdisk_close(d);
	free(model);
}

Test(chain, block_status_sees_every_level)
{
	struct vdisk *d;
	uint64_t len;
	bool alloc;

	make_base("b.vhdx", 16 * MiB, 512);
	write_ok("b.vhdx", 0, MiB, 3);
	make_child("c.vhdx", "b.vhdx");
	write_ok("c.vhdx", 8 * MiB, 4096, 4);
	d = open_ok("c.vhdx", true);
	len = 16 * MiB;
	cr_assert_eq(vdisk_block_status(d, 0, &len, &alloc), 0);
	cr_assert(alloc);
	cr_assert_eq(len, MiB);
	len = 16 * MiB - MiB;
	cr_assert_eq(vdisk_block_status(d, MiB, &len, &alloc), 0);
	cr_assert(!alloc);
	cr_assert_eq(len, 7 * MiB);
	len = 8 * MiB;
	cr_assert_eq(vdisk_block_status(d, 8 * MiB, &len, &alloc), 0);
	cr_assert(alloc);
	cr_assert_eq(len, 4096);
	vdisk_close(d);
}

Test(chain, sixteen_levels)
{
	uint8_t *model = calloc(1, 8 * MiB), *b = malloc(MiB);
	char name[32], parent[32] = "l0.vhdx";
	struct vdisk *d;
	unsigned int n;
	struct vdisk_chain_level levels[20];
	char err[512];

	make_base("l0.vhdx", 8 * MiB, 512);
	write_ok("l0.vhdx", 0, 8 * MiB, 1);
	fill(model, 8 * MiB, 1);
	for (int i = 1; i <= 16; i++) {
		snprintf(name, sizeof(name), "l%d.vhdx", i);
		make_child(name, parent);
		/* Each level holds its own sectors, some over earlier ones. */
		write_ok(name, (uint64_t)i * 384 * 1024, 4096 * (size_t)i, (uint8_t)(i * 11));
		fill(b, 4096 * (size_t)i, (uint8_t)(i * 11));
		memcpy(model + i * 384 * 1024, b, 4096 * (size_t)i);
		snprintf(parent, sizeof(parent), "%s", name);
	}
	d = open_ok("l16.vhdx", true);
	cr_assert_eq(vdisk_info(d)->chain_depth, 17);
	expect_bytes(d, 0, model, 8 * MiB);
	vdisk_close(d);
	cr_assert_eq(vdisk_chain_list(at("l16.vhdx"), levels, 20, &n, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(n, 17);
	cr_assert_str_eq(levels[16].path, at("l0.vhdx"));
	cr_assert_eq(levels[0].type, VDISK_TYPE_DIFFERENCING);
	cr_assert_eq(levels[16].type, VDISK_TYPE_DYNAMIC);
	free(model);
	free(b);
}

/* Replace UTF-16LE text @from by @to (as long) in file @name. */
static void patch_utf16(const char *name, const char *from, const char *to)
{
	int fd = open(at(name), O_RDWR);
	size_t n = strlen(from), found = 0;
	struct stat st;
	uint8_t *img;

	cr_assert_geq(fd, 0);
	cr_assert_eq(strlen(to), n);
	fstat(fd, &st);
	img = malloc((size_t)st.st_size);
	cr_assert_eq(pread(fd, img, (size_t)st.st_size, 0), st.st_size);
	for (size_t i = 0; i + 2 * n < (size_t)st.st_size; i++) {
		size_t k = 0;

		while (k < n && img[i + 2 * k] == (uint8_t)from[k] && !img[i + 2 * k + 1])
			k++;
		if (k < n)
			continue;
		for (k = 0; k < n; k++)
			img[i + 2 * k] = (uint8_t)to[k];
		found++;
	}
	cr_assert_gt(found, 0, "'%s' is not in %s", from, name);
	cr_assert_eq(pwrite(fd, img, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	free(img);
}

Test(chain, parents_are_found_by_every_name)
{
	char cmd[512], moved[160];
	struct vdisk *d;

	make_base("b.vhdx", 8 * MiB, 512);
	make_child("c.vhdx", "b.vhdx");
	/* The volume path, with the relative one broken. */
	cr_assert_eq(mkdir(at("sub"), 0755), 0);
	cr_assert_eq(rename(at("c.vhdx"), at("sub/c.vhdx")), 0);
	d = open_ok("sub/c.vhdx", true);
	cr_assert_str_eq(vdisk_info(d)->parent, at("b.vhdx"));
	vdisk_close(d);
	/* The absolute path, with the volume's GUID wrong too. */
	/* The GUID's tail is "fsvisorV" (vhdx/parent_path.c), in hex. */
	patch_utf16("sub/c.vhdx", "7669736f7256", "7669736f7257");
	d = open_ok("sub/c.vhdx", true);
	cr_assert_str_eq(vdisk_info(d)->parent, at("b.vhdx"));
	vdisk_close(d);
	patch_utf16("sub/c.vhdx", "Volume{", "Volumx{");
	d = open_ok("sub/c.vhdx", true);
	cr_assert_str_eq(vdisk_info(d)->parent, at("b.vhdx"));
	vdisk_close(d);
	/* The relative path, the directory moved as a whole. */
	cr_assert_eq(rename(at("sub/c.vhdx"), at("c.vhdx")), 0);
	snprintf(moved, sizeof(moved), "%s.moved", dir);
	snprintf(cmd, sizeof(cmd), "mv '%s' '%s' && mkdir '%s'", dir, moved, dir);
	cr_assert_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s/c.vhdx", moved);
	{
		struct vdisk_open_opts o = { .read_only = true };
		char err[1024];
		char want[200];

		cr_assert_eq(vdisk_open(cmd, &o, &d, err, sizeof(err)), 0, "%s", err);
		snprintf(want, sizeof(want), "%s/b.vhdx", moved);
		cr_assert_str_eq(vdisk_info(d)->parent, want);
		vdisk_close(d);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", moved);
	cr_assert_eq(system(cmd), 0);
}

Test(chain, refused_chains_say_why)
{
	char cmd[512];

	make_base("b.vhdx", 8 * MiB, 512);
	make_child("c.vhdx", "b.vhdx");
	/* Missing: every name tried is listed. */
	cr_assert_eq(rename(at("b.vhdx"), at("gone.vhdx")), 0);
	open_fails("c.vhdx", -ENOENT, "relative_path '.\\b.vhdx'");
	open_fails("c.vhdx", -ENOENT, "absolute_win32_path");
	open_fails("c.vhdx", -ENOENT, "volume_path");

	/* Stale: another disk where the parent was. */
	make_base("b.vhdx", 8 * MiB, 512);
	open_fails("c.vhdx", -ESTALE, "has changed since it was made");

	/* Another size, another sector size. */
	cr_assert_eq(rename(at("gone.vhdx"), at("b.vhdx")), 0);
	make_child("c2.vhdx", "b.vhdx");
	make_base("big.vhdx", 16 * MiB, 512);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", at("b.vhdx"), at("keep.vhdx"));
	cr_assert_eq(system(cmd), 0);
	write_ok("b.vhdx", 0, 512, 1);	/* a write gives a new DataWriteGuid */
	open_fails("c2.vhdx", -ESTALE, "DataWriteGuid");
	cr_assert_eq(rename(at("keep.vhdx"), at("b.vhdx")), 0);
	{
		struct vdisk *d = open_ok("c2.vhdx", true);

		vdisk_close(d);
	}
}

/* Patch the linkage of @child so it names the DataWriteGuid of @target. */
static void relink(const char *child, const char *target)
{
	struct vdisk *d = NULL;
	char err[512];
	char want[40];
	int fd;
	struct stat st;
	uint8_t *img;
	char *hit = NULL;

	cr_assert_eq(vdisk_open(at(target), &(struct vdisk_open_opts){ .no_io = true },
				&d, err, sizeof(err)), 0, "%s", err);
	snprintf(want, sizeof(want), "%s", vdisk_info(d)->identity);
	vdisk_close(d);
	fd = open(at(child), O_RDWR);
	cr_assert_geq(fd, 0);
	fstat(fd, &st);
	img = malloc((size_t)st.st_size);
	cr_assert_eq(pread(fd, img, (size_t)st.st_size, 0), st.st_size);
	/* The linkage is "{GUID}" in UTF-16LE in the locator. */
	for (size_t i = 2 * MiB; i + 76 < (size_t)st.st_size && !hit; i += 2)
		if (img[i] == '{' && img[i + 1] == 0 && img[i + 74] == '}')
			hit = (char *)img + i + 2;
	cr_assert_not_null(hit);
	for (int k = 0; k < 36; k++)
		hit[2 * k] = (char)(want[k] >= 'a' && want[k] <= 'f' ? want[k] - 32 : want[k]);
	cr_assert_eq(pwrite(fd, img, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	free(img);
}

Test(chain, loops_and_self_references)
{
	char cmd[512];

	make_base("b.vhdx", 8 * MiB, 512);
	make_child("a.vhdx", "b.vhdx");
	make_child("c.vhdx", "a.vhdx");
	/* a names itself: swap b for a copy of a under b's name. */
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && cp '%s' '%s'", at("b.vhdx"),
		 at("b0.vhdx"), at("a.vhdx"), at("a0.vhdx"));
	cr_assert_eq(system(cmd), 0);
	cr_assert_eq(unlink(at("b.vhdx")), 0);
	cr_assert_eq(link(at("a.vhdx"), at("b.vhdx")), 0);
	relink("a.vhdx", "a.vhdx");
	open_fails("a.vhdx", -ELOOP, "names itself as its parent");

	/* c -> a -> b where b is c: a loop two levels down. */
	cr_assert_eq(unlink(at("b.vhdx")), 0);
	cr_assert_eq(unlink(at("a.vhdx")), 0);
	cr_assert_eq(rename(at("a0.vhdx"), at("a.vhdx")), 0);
	cr_assert_eq(link(at("c.vhdx"), at("b.vhdx")), 0);
	relink("a.vhdx", "c.vhdx");
	open_fails("c.vhdx", -ELOOP, "loops");
}
