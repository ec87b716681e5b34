// SPDX-License-Identifier: MIT
/*
 * Damaged and hostile VHDX files: every one is refused (or, where the
 * format allows it, opened from the good copy), with an error that names
 * the problem, and check reports it.
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
static char good[128], bad[128];

/* The layout vhdx_create uses for a disk with a 1 MiB log. */
#define META_OFF (2 * MiB)
#define BAT_OFF (3 * MiB)

static void setup(void)
{
	struct vhdx_create_opts o = { .size = 64 * MiB, .type = VDISK_TYPE_DYNAMIC,
				      .block_size = MiB };
	struct vdisk *d;
	char err[512], data[4096];

	snprintf(dir, sizeof(dir), "/tmp/fsvisor-bad-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(good, sizeof(good), "%s/good.vhdx", dir);
	snprintf(bad, sizeof(bad), "%s/bad.vhdx", dir);
	cr_assert_eq(vhdx_create(good, &o, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(vdisk_open(good, NULL, &d, err, sizeof(err)), 0, "%s", err);
	memset(data, 0x33, sizeof(data));
	/* Blocks 0, 1 and 5 present. */
	cr_assert_eq(vdisk_pwrite(d, data, sizeof(data), 0), 0);
	cr_assert_eq(vdisk_pwrite(d, data, sizeof(data), MiB), 0);
	cr_assert_eq(vdisk_pwrite(d, data, sizeof(data), 5 * MiB), 0);
	cr_assert_eq(vdisk_close(d), 0);
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(bad, .init = setup, .fini = teardown, .timeout = 60);

struct image {
	uint8_t *b;
	size_t len;
};

static struct image load(void)
{
	struct image im;
	struct stat st;
	int fd = open(good, O_RDONLY);

	cr_assert_geq(fd, 0);
	fstat(fd, &st);
	im.len = (size_t)st.st_size;
	im.b = malloc(im.len);
	cr_assert_eq(read(fd, im.b, im.len), (ssize_t)im.len);
	close(fd);
	return im;
}

static void store(struct image *im)
{
	int fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, im->b, im->len), (ssize_t)im->len);
	close(fd);
	free(im->b);
}

static void fix_headers(struct image *im)
{
	for (uint64_t off = VHDX_HEADER1_OFFSET; off <= VHDX_HEADER2_OFFSET;
	     off += VHDX_HEADER1_OFFSET)
		put32(im->b + off + 4, vhdx_checksum(im->b + off, VHDX_HEADER_SIZE, 4));
}

static void fix_regions(struct image *im)
{
	put32(im->b + VHDX_REGION1_OFFSET + 4,
	      vhdx_checksum(im->b + VHDX_REGION1_OFFSET, VHDX_REGION_SIZE, 4));
	memcpy(im->b + VHDX_REGION2_OFFSET, im->b + VHDX_REGION1_OFFSET,
	       VHDX_REGION_SIZE);
}

struct problem_log {
	char text[4096];
};

static void collect(void *ctx, const char *problem)
{
	struct problem_log *l = ctx;

	strncat(l->text, problem, sizeof(l->text) - strlen(l->text) - 2);
	strcat(l->text, "\n");
}

/* @bad must be refused with @why; check must report it too. */
static void expect_refused(const char *why)
{
	struct vhdx_check_result res;
	struct problem_log log = { "" };
	char err[512] = "";
	struct vdisk *d = NULL;
	int ret;

	ret = vdisk_open(bad, &(struct vdisk_open_opts){ .read_only = true,
			 .format = VDISK_FORMAT_VHDX }, &d, err, sizeof(err));
	cr_assert_lt(ret, 0, "opened a file that should be refused (%s)", why);
	cr_assert_not_null(strstr(err, why), "error '%s' does not say '%s'", err, why);
	ret = vdisk_open(bad, &(struct vdisk_open_opts){ .format = VDISK_FORMAT_VHDX },
			 &d, err, sizeof(err));
	cr_assert_lt(ret, 0, "read-write open accepted it (%s)", why);

	ret = vhdx_check(bad, false, collect, &log, &res);
	if (ret == 0) {
		cr_assert_geq(res.problems, 1, "check found nothing (%s)", why);
		cr_assert_not_null(strstr(log.text, why), "check said '%s', not '%s'",
				   log.text, why);
	}
}

/* @bad opens (the good copy is used), but check reports @why. */
static void expect_opens_but_reported(const char *why)
{
	struct vhdx_check_result res;
	struct problem_log log = { "" };
	char err[512] = "", data[16];
	struct vdisk *d = NULL;

	cr_assert_eq(vdisk_open(bad, &(struct vdisk_open_opts){ .read_only = true },
				&d, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(vdisk_pread(d, data, sizeof(data), MiB), 0);
	cr_assert_eq(data[0], 0x33);
	cr_assert_eq(vdisk_close(d), 0);
	cr_assert_eq(vhdx_check(bad, false, collect, &log, &res), 0);
	cr_assert_geq(res.problems, 1, "check found nothing (%s)", why);
	cr_assert_not_null(strstr(log.text, why), "check said '%s'", log.text);
}

Test(bad, good_image_is_clean)
{
	struct vhdx_check_result res;
	struct problem_log log = { "" };

	cr_assert_eq(vhdx_check(good, false, collect, &log, &res), 0);
	cr_assert_eq(res.problems, 0, "%s", log.text);
}

Test(bad, truncated_files)
{
	struct image im = load();

	im.len = 512 * 1024;
	store(&im);
	expect_refused("truncated");

	im = load();
	im.len = BAT_OFF + 4096;	/* the BAT region is cut */
	store(&im);
	expect_refused("past the end of the file");

	im = load();
	im.len = 0;
	store(&im);
	expect_refused("truncated");
}

Test(bad, file_signature)
{
	struct image im = load();

	memcpy(im.b, "vhdxfilX", 8);
	store(&im);
	expect_refused("vhdxfile");
}

Test(bad, header_checksums)
{
	struct image im = load();

	im.b[VHDX_HEADER1_OFFSET + 100] ^= 1;
	store(&im);
	expect_opens_but_reported("header 1 is damaged (bad checksum)");

	im = load();
	im.b[VHDX_HEADER1_OFFSET + 100] ^= 1;
	im.b[VHDX_HEADER2_OFFSET + 100] ^= 1;
	store(&im);
	expect_refused("neither header is valid");

	im = load();
	memcpy(im.b + VHDX_HEADER2_OFFSET, "heed", 4);
	store(&im);
	expect_opens_but_reported("header 2 is damaged (bad signature)");
}

Test(bad, headers_equal_sequence_but_different)
{
	struct image im = load();

	put64(im.b + VHDX_HEADER1_OFFSET + HDR_SEQUENCE, 9);
	put64(im.b + VHDX_HEADER2_OFFSET + HDR_SEQUENCE, 9);
	im.b[VHDX_HEADER2_OFFSET + 200] = 1;	/* reserved, but different */
	fix_headers(&im);
	store(&im);
	expect_refused("both headers have sequence number 9 but differ");
}

Test(bad, header_version)
{
	struct image im = load();

	for (uint64_t off = VHDX_HEADER1_OFFSET; off <= VHDX_HEADER2_OFFSET;
	     off += VHDX_HEADER1_OFFSET)
		put16(im.b + off + HDR_VERSION, 2);
	fix_headers(&im);
	store(&im);
	expect_refused("unsupported VHDX version 2");
}

Test(bad, log_past_end)
{
	struct image im = load();

	for (uint64_t off = VHDX_HEADER1_OFFSET; off <= VHDX_HEADER2_OFFSET;
	     off += VHDX_HEADER1_OFFSET)
		put64(im.b + off + HDR_LOG_OFFSET, 4000 * MiB);
	fix_headers(&im);
	store(&im);
	expect_refused("log at");
}

Test(bad, region_tables)
{
	struct image im = load();

	im.b[VHDX_REGION1_OFFSET + 40] ^= 0xff;
	store(&im);
	expect_opens_but_reported("region table 1 is damaged (bad checksum)");

	im = load();
	im.b[VHDX_REGION1_OFFSET + 40] ^= 0xff;
	im.b[VHDX_REGION2_OFFSET + 40] ^= 0xff;
	store(&im);
	expect_refused("neither region table is valid");
}

Test(bad, unknown_required_region)
{
	struct image im = load();
	uint8_t *rt = im.b + VHDX_REGION1_OFFSET;
	uint8_t *e = rt + RT_HEADER_SIZE + 2 * RT_ENTRY_SIZE;

	/* One more MiB at the end of the file for the new region. */
	im.b = realloc(im.b, im.len + MiB);
	memset(im.b + im.len, 0, MiB);
	rt = im.b + VHDX_REGION1_OFFSET;
	e = rt + RT_HEADER_SIZE + 2 * RT_ENTRY_SIZE;
	put32(rt + 8, 3);
	memset(e, 0xAB, 16);
	put64(e + 16, im.len);
	put32(e + 24, MiB);
	put32(e + 28, 1);
	im.len += MiB;
	fix_regions(&im);
	store(&im);
	expect_refused("is marked required");

	/* The same region, not required, is ignored... */
	im = load();
	im.b = realloc(im.b, im.len + MiB);
	memset(im.b + im.len, 0, MiB);
	rt = im.b + VHDX_REGION1_OFFSET;
	e = rt + RT_HEADER_SIZE + 2 * RT_ENTRY_SIZE;
	put32(rt + 8, 3);
	memset(e, 0xAB, 16);
	put64(e + 16, im.len);
	put32(e + 24, MiB);
	put32(e + 28, 0);
	im.len += MiB;
	fix_regions(&im);
	store(&im);
	{
		char err[512];
		struct vdisk *d;

		cr_assert_eq(vdisk_open(bad, NULL, &d, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(vdisk_close(d), 0);
	}

	/* ...but it still may not lie on top of a payload block. */
	im = load();
	rt = im.b + VHDX_REGION1_OFFSET;
	e = rt + RT_HEADER_SIZE + 2 * RT_ENTRY_SIZE;
	put32(rt + 8, 3);
	memset(e, 0xAB, 16);
	put64(e + 16, im.len - MiB);
	put32(e + 24, MiB);
	fix_regions(&im);
	store(&im);
	expect_refused("overlaps another block or region");
}

Test(bad, overlapping_regions)
{
	struct image im = load();
	uint8_t *rt = im.b + VHDX_REGION1_OFFSET;

	/* The metadata region moved on top of the BAT. */
	put64(rt + RT_HEADER_SIZE + RT_ENTRY_SIZE + 16, BAT_OFF);
	fix_regions(&im);
	store(&im);
	expect_refused("overlap");

	/* The BAT moved onto the log. */
	im = load();
	rt = im.b + VHDX_REGION1_OFFSET;
	put64(rt + RT_HEADER_SIZE + 16, MiB);
	fix_regions(&im);
	store(&im);
	expect_refused("overlap");
}

Test(bad, duplicate_region)
{
	struct image im = load();
	uint8_t *rt = im.b + VHDX_REGION1_OFFSET;

	memcpy(rt + RT_HEADER_SIZE + RT_ENTRY_SIZE, rt + RT_HEADER_SIZE, 16);
	fix_regions(&im);
	store(&im);
	expect_refused("listed twice");
}

static uint8_t *meta_entry(struct image *im, int i)
{
	return im->b + META_OFF + MT_HEADER_SIZE + i * MT_ENTRY_SIZE;
}

static uint8_t *meta_item(struct image *im, int i)
{
	return im->b + META_OFF + get32(meta_entry(im, i) + 16);
}

Test(bad, absurd_sizes)
{
	struct image im = load();

	put64(meta_item(&im, 1), 1ULL << 60);
	store(&im);
	expect_refused("above 64 TiB");

	im = load();
	put64(meta_item(&im, 1), 0);
	store(&im);
	expect_refused("is zero");

	im = load();
	put32(meta_item(&im, 0), 3 * MiB);
	store(&im);
	expect_refused("not a power of two");

	im = load();
	put32(meta_item(&im, 3), 1024);
	store(&im);
	expect_refused("not 512 or 4096");

	/* A BAT region far too small for the disk it claims. */
	im = load();
	put64(meta_item(&im, 1), 60 * TiB);
	store(&im);
	expect_refused("too small");
}

Test(bad, metadata_table)
{
	struct image im = load();

	memcpy(im.b + META_OFF, "metadatX", 8);
	store(&im);
	expect_refused("metadata table has a bad signature");

	im = load();
	put32(meta_entry(&im, 1) + 16, 2 * MiB);	/* past the region */
	store(&im);
	expect_refused("out of bounds");

	im = load();
	memset(meta_entry(&im, 4), 0xCD, 16);	/* physical sector size: unknown */
	store(&im);
	expect_refused("unknown metadata item");

	im = load();
	put32(meta_entry(&im, 4) + 24, 0);	/* ...and no longer required */
	memset(meta_entry(&im, 4), 0xCD, 16);
	store(&im);
	expect_refused("'physical sector size' is missing");

	im = load();
	put32(meta_entry(&im, 2) + 20, 8);	/* disk id of 8 bytes */
	store(&im);
	expect_refused("is 8 bytes, expected 16");
}

Test(bad, bat_entries)
{
	struct image im = load();
	uint64_t e0 = get64(im.b + BAT_OFF);

	put64(im.b + BAT_OFF + 8, (1000 * MiB) | PAYLOAD_BLOCK_FULLY_PRESENT);
	store(&im);
	expect_refused("points past the end of the file");

	im = load();
	put64(im.b + BAT_OFF + 8, e0);		/* block 1 on top of block 0 */
	store(&im);
	expect_refused("overlaps another block or region");

	im = load();
	put64(im.b + BAT_OFF + 8, (3 * MiB) | PAYLOAD_BLOCK_FULLY_PRESENT);
	store(&im);
	expect_refused("overlaps another block or region");	/* the BAT itself */

	im = load();
	put64(im.b + BAT_OFF + 16, 4);		/* reserved state */
	store(&im);
	expect_refused("has an invalid state");

	im = load();
	put64(im.b + BAT_OFF + 16, PAYLOAD_BLOCK_PARTIALLY_PRESENT | (40 * MiB));
	store(&im);
	expect_refused("has an invalid state");

	im = load();
	put64(im.b + BAT_OFF, e0 | (1 << 5));
	store(&im);
	expect_refused("reserved bits");
}

Test(bad, garbage_log_guid)
{
	struct image im = load();

	for (uint64_t off = VHDX_HEADER1_OFFSET; off <= VHDX_HEADER2_OFFSET;
	     off += VHDX_HEADER1_OFFSET)
		memset(im.b + off + HDR_LOG_GUID, 0x5A, 16);
	fix_headers(&im);
	store(&im);
	/* No entry carries that GUID: the log is empty in effect. */
	expect_opens_but_reported("log GUID but the log holds no valid entry");
}

Test(bad, repair_fixes_bat_and_copies)
{
	struct vhdx_check_result res;
	struct problem_log log = { "" };
	struct image im = load();

	put64(im.b + BAT_OFF + 8, (1000 * MiB) | PAYLOAD_BLOCK_FULLY_PRESENT);
	im.b[VHDX_HEADER1_OFFSET + 100] ^= 1;
	im.b[VHDX_REGION2_OFFSET + 40] ^= 0xff;
	store(&im);
	cr_assert_eq(vhdx_check(bad, true, collect, &log, &res), 0);
	cr_assert_eq(res.problems, 3, "%s", log.text);
	cr_assert_eq(res.repaired, 3, "%s", log.text);
	memset(&log, 0, sizeof(log));
	cr_assert_eq(vhdx_check(bad, false, collect, &log, &res), 0);
	cr_assert_eq(res.problems, 0, "after repair: %s", log.text);
	{
		struct vdisk *d;
		char err[512], data[8];

		cr_assert_eq(vdisk_open(bad, NULL, &d, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(vdisk_pread(d, data, 8, 0), 0);
		cr_assert_eq(data[0], 0x33, "block 0 survived the repair");
		cr_assert_eq(vdisk_pread(d, data, 8, MiB), 0);
		cr_assert_eq(data[0], 0, "the bad block 1 was dropped");
		cr_assert_eq(vdisk_close(d), 0);
	}
}
