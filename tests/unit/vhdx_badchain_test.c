// SPDX-License-Identifier: MIT
/*
 * The bad-input table for differencing disks and VHD files: each case
 * builds a damaged or hostile chain, which must be refused with the
 * expected errno and an error that names the problem; check (which
 * looks at the chain too) must report it.
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
#include "vhdx/vhd_format.h"

static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/fsvisor-badchain-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(badchain, .init = setup, .fini = teardown, .timeout = 60);

static const char *at(const char *name)
{
	static char p[8][160];
	static int i;

	i = (i + 1) % 8;
	snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
	return p[i];
}

static void make(const char *name, enum vdisk_format f, uint64_t size,
		 uint32_t lss, const char *parent)
{
	struct vdisk_create_opts o = { .format = f, .type = VDISK_TYPE_DYNAMIC,
				       .size = size, .logical_sector_size = lss,
				       .parent = parent ? at(parent) : NULL };
	char err[1024] = "";

	cr_assert_eq(vdisk_create(at(name), &o, err, sizeof(err)), 0, "%s", err);
}

struct image {
	uint8_t *b;
	size_t len;
};

static struct image load(const char *name)
{
	struct image im;
	struct stat st;
	int fd = open(at(name), O_RDONLY);

	cr_assert_geq(fd, 0);
	fstat(fd, &st);
	im.len = (size_t)st.st_size;
	im.b = malloc(im.len);
	cr_assert_eq(read(fd, im.b, im.len), (ssize_t)im.len);
	close(fd);
	return im;
}

static void store(const char *name, struct image *im)
{
	int fd = open(at(name), O_WRONLY | O_CREAT | O_TRUNC, 0644);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, im->b, im->len), (ssize_t)im->len);
	close(fd);
	free(im->b);
}

/* The identity a disk's children link to, as text. */
static void identity(const char *name, char *out)
{
	struct vdisk *d;
	char err[512];

	cr_assert_eq(vdisk_open(at(name), &(struct vdisk_open_opts){ .no_io = true },
				&d, err, sizeof(err)), 0, "%s", err);
	snprintf(out, 40, "%s", vdisk_info(d)->identity);
	vdisk_close(d);
}

/* Where UTF-16LE @s is in @im (the first time from @from), or fail. */
static size_t find16(const struct image *im, const char *s, size_t from)
{
	size_t n = strlen(s);

	for (size_t i = from; i + 2 * n <= im->len; i++) {
		size_t k = 0;

		while (k < n && im->b[i + 2 * k] == (uint8_t)s[k] && !im->b[i + 2 * k + 1])
			k++;
		if (k == n)
			return i;
	}
	cr_assert_fail("'%s' is not in the image", s);
	return 0;
}

/* A VHDX child's linkage made to name @target's DataWriteGuid. */
static void relink(const char *child, const char *target)
{
	struct image im = load(child);
	char id[40];
	size_t at_;

	identity(target, id);
	/* The value follows its key: "{GUID}". */
	at_ = find16(&im, "{", find16(&im, "parent_linkage", 0));
	for (int k = 0; k < 36; k++)
		im.b[at_ + 2 + 2 * k] = (uint8_t)id[k];
	store(child, &im);
}

/* The parent locator item of a VHDX file made here: its offset. */
static size_t locator_at(const struct image *im)
{
	/* The locator type GUID starts the item. */
	for (size_t i = 0; i + 16 <= im->len; i += 4096)
		if (memcmp(im->b + i, guid_parent_locator_vhdx.b, 16) == 0)
			return i;
	cr_assert_fail("no parent locator");
	return 0;
}

/* ---- the cases ------------------------------------------------------ */

static void case_loop(void)
{
	make("b.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 0, NULL);
	make("a.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 0, "b.vhdx");
	make("bad.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 0, "a.vhdx");
	/* b's place taken by the child itself: bad -> a -> bad. */
	cr_assert_eq(unlink(at("b.vhdx")), 0);
	cr_assert_eq(link(at("bad.vhdx"), at("b.vhdx")), 0);
	relink("a.vhdx", "bad.vhdx");
}

static void case_self(void)
{
	make("b.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 0, NULL);
	make("bad.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 0, "b.vhdx");
	cr_assert_eq(unlink(at("b.vhdx")), 0);
	cr_assert_eq(link(at("bad.vhdx"), at("b.vhdx")), 0);
}

static void case_missing(void)
{
	make("b.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 0, NULL);
	make("bad.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 0, "b.vhdx");
	cr_assert_eq(unlink(at("b.vhdx")), 0);
}

static void case_other_size(void)
{
	make("b.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 0, NULL);
	make("bad.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 0, "b.vhdx");
	/* Another disk in b's place, linked to: only its size is wrong. */
	cr_assert_eq(unlink(at("b.vhdx")), 0);
	make("b.vhdx", VDISK_FORMAT_VHDX, 16 * MiB, 0, NULL);
	relink("bad.vhdx", "b.vhdx");
}

static void case_other_sector_size(void)
{
	make("b.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 0, NULL);
	make("bad.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 0, "b.vhdx");
	cr_assert_eq(unlink(at("b.vhdx")), 0);
	make("b.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 4096, NULL);
	relink("bad.vhdx", "b.vhdx");
}

static void case_stale(void)
{
	struct vdisk *d;
	char err[512], z[512] = { 1 };

	make("b.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 0, NULL);
	make("bad.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 0, "b.vhdx");
	/* The parent written after the child was made. */
	cr_assert_eq(vdisk_open(at("b.vhdx"), NULL, &d, err, sizeof(err)), 0);
	cr_assert_eq(vdisk_pwrite(d, z, sizeof(z), 0), 0);
	cr_assert_eq(vdisk_close(d), 0);
}

static void case_merged_into(void)
{
	char err[1024];

	make("b.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 0, NULL);
	make("bad.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 0, "b.vhdx");
	make("c.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 0, "b.vhdx");
	cr_assert_eq(vdisk_merge(at("c.vhdx"), NULL, err, sizeof(err)), 0, "%s", err);
}

/* A child whose locator is patched by @patch. */
static void locator_case(void (*patch)(uint8_t *item))
{
	struct image im;

	make("b.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 0, NULL);
	make("bad.vhdx", VDISK_FORMAT_VHDX, 8 * MiB, 0, "b.vhdx");
	im = load("bad.vhdx");
	patch(im.b + locator_at(&im));
	store("bad.vhdx", &im);
}

static void key_outside(uint8_t *item)
{
	put32(item + 20, 0xFFFFF0);		/* entry 0's key offset */
}

static void value_past_end(uint8_t *item)
{
	put16(item + 20 + 10, 0xFFFE);		/* entry 0's value length */
}

static void offset_in_header(uint8_t *item)
{
	put32(item + 20 + 12, 4);		/* entry 1's key inside the header */
}

static void no_linkage(uint8_t *item)
{
	/* parent_linkage -> parent_linkagX: an unknown key. */
	item[get32(item + 20) + 2 * 13] = 'X';
}

static void bad_linkage(uint8_t *item)
{
	item[get32(item + 24) + 2 * 5] = 'z';	/* not hex */
}

static void no_path(uint8_t *item)
{
	put16(item + 18, 1);			/* only the linkage is left */
}

static void entries_past_end(uint8_t *item)
{
	put16(item + 18, 0xFFFF);
}

static void case_key_outside(void) { locator_case(key_outside); }
static void case_value_past_end(void) { locator_case(value_past_end); }
static void case_offset_in_header(void) { locator_case(offset_in_header); }
static void case_no_linkage(void) { locator_case(no_linkage); }
static void case_bad_linkage(void) { locator_case(bad_linkage); }
static void case_no_path(void) { locator_case(no_path); }
static void case_entries_past_end(void) { locator_case(entries_past_end); }

/* ---- VHD ------------------------------------------------------------ */

/* A dynamic VHD child, patched by @patch (checksums fixed unless asked). */
static void vhd_case(void (*patch)(struct image *), bool fix)
{
	struct image im;

	make("b.vhd", VDISK_FORMAT_VHD, 8 * MiB, 0, NULL);
	make("bad.vhd", VDISK_FORMAT_VHD, 8 * MiB, 0, "b.vhd");
	{
		/* Blocks 2 and 3 written: the file holds more than its header. */
		struct vdisk *d;
		char err[512];
		uint8_t *data = calloc(1, 4 * MiB);

		cr_assert_eq(vdisk_open(at("bad.vhd"), NULL, &d, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(vdisk_pwrite(d, data, 4 * MiB, 4 * MiB), 0);
		cr_assert_eq(vdisk_close(d), 0);
		free(data);
	}
	im = load("bad.vhd");
	patch(&im);
	if (fix) {
		uint8_t *f = im.b + im.len - VHD_FOOTER_SIZE, *h = im.b + VHD_FOOTER_SIZE;

		put_be32(h + DH_CHECKSUM, vhd_checksum(h, VHD_HEADER_SIZE, DH_CHECKSUM));
		put_be32(f + FT_CHECKSUM, vhd_checksum(f, VHD_FOOTER_SIZE, FT_CHECKSUM));
		memcpy(im.b, f, VHD_FOOTER_SIZE);
	}
	store("bad.vhd", &im);
}

static void both_footers_cookie(struct image *im)
{
	im->b[im->len - VHD_FOOTER_SIZE] = 'X';
	im->b[0] = 'X';
}

static void both_footers_checksum(struct image *im)
{
	im->b[im->len - VHD_FOOTER_SIZE + 200] ^= 1;
	im->b[200] ^= 1;
}

static void header_cookie(struct image *im)
{
	im->b[VHD_FOOTER_SIZE + 1] = 'X';
}

static void header_checksum(struct image *im)
{
	im->b[VHD_FOOTER_SIZE + 700] ^= 1;
}

static void locator_outside(struct image *im)
{
	put_be64(im->b + VHD_FOOTER_SIZE + DH_LOCATORS + PL_OFFSET, 1ULL << 40);
}

static void locator_length(struct image *im)
{
	put_be32(im->b + VHD_FOOTER_SIZE + DH_LOCATORS + PL_LENGTH, 1u << 30);
}

static void bat_outside(struct image *im)
{
	uint64_t bat = be64(im->b + VHD_FOOTER_SIZE + DH_TABLE_OFFSET);

	put_be32(im->b + bat, 0x7FFFFFF0);
}

static void bat_overlap(struct image *im)
{
	uint64_t bat = be64(im->b + VHD_FOOTER_SIZE + DH_TABLE_OFFSET);

	put_be32(im->b + bat, 1);		/* sector 1: the header */
}

static void block_size(struct image *im)
{
	put_be32(im->b + VHD_FOOTER_SIZE + DH_BLOCK_SIZE, 3 << 20);
}

static void few_entries(struct image *im)
{
	put_be32(im->b + VHD_FOOTER_SIZE + DH_MAX_ENTRIES, 1);
}

static void disk_type(struct image *im)
{
	put_be32(im->b + im->len - VHD_FOOTER_SIZE + FT_DISK_TYPE, 5);
}

static void huge(struct image *im)
{
	put_be64(im->b + im->len - VHD_FOOTER_SIZE + FT_CURRENT_SIZE, 2041ULL << 30);
}

static void version(struct image *im)
{
	put_be32(im->b + im->len - VHD_FOOTER_SIZE + FT_VERSION, 0x00020000);
}

static void table_outside(struct image *im)
{
	put_be64(im->b + VHD_FOOTER_SIZE + DH_TABLE_OFFSET, 1ULL << 40);
}

static void case_vhd_cookie(void) { vhd_case(both_footers_cookie, false); }
static void case_vhd_checksum(void) { vhd_case(both_footers_checksum, false); }
static void case_vhd_header_cookie(void) { vhd_case(header_cookie, false); }
static void case_vhd_header_checksum(void) { vhd_case(header_checksum, false); }
static void case_vhd_locator_outside(void) { vhd_case(locator_outside, true); }
static void case_vhd_locator_length(void) { vhd_case(locator_length, true); }
static void case_vhd_bat_outside(void) { vhd_case(bat_outside, true); }
static void case_vhd_bat_overlap(void) { vhd_case(bat_overlap, true); }
static void case_vhd_block_size(void) { vhd_case(block_size, true); }
static void case_vhd_few_entries(void) { vhd_case(few_entries, true); }
static void case_vhd_disk_type(void) { vhd_case(disk_type, true); }
static void case_vhd_huge(void) { vhd_case(huge, true); }
static void case_vhd_version(void) { vhd_case(version, true); }
static void case_vhd_table_outside(void) { vhd_case(table_outside, true); }

static void case_vhd_stale(void)
{
	struct image im;

	make("b.vhd", VDISK_FORMAT_VHD, 8 * MiB, 0, NULL);
	make("bad.vhd", VDISK_FORMAT_VHD, 8 * MiB, 0, "b.vhd");
	/* Another VHD in the parent's place: another unique id. */
	cr_assert_eq(unlink(at("b.vhd")), 0);
	make("b.vhd", VDISK_FORMAT_VHD, 8 * MiB, 0, NULL);
	im = load("bad.vhd");
	store("bad.vhd", &im);
}

static const struct {
	const char *name;
	void (*build)(void);
	const char *file;
	int err;
	const char *why;
	/* Opened as VHD: without a cookie the file is a raw one. */
	bool as_vhd;
} cases[] = {
	{ "a chain that loops", case_loop, "bad.vhdx", -ELOOP, "loops" },
	{ "a child that names itself", case_self, "bad.vhdx", -ELOOP, "names itself" },
	{ "a missing parent", case_missing, "bad.vhdx", -ENOENT, "was not found: tried relative_path" },
	{ "a parent of another size", case_other_size, "bad.vhdx", -EINVAL, "is a disk of 16777216 bytes" },
	{ "a parent of another sector size", case_other_sector_size, "bad.vhdx", -EINVAL,
	  "in 4096-byte sectors" },
	{ "a stale linkage", case_stale, "bad.vhdx", -ESTALE, "has changed since it was made" },
	{ "a sibling of a merged child", case_merged_into, "bad.vhdx", -ESTALE,
	  "was changed by merging c.vhdx" },
	{ "a locator key outside the item", case_key_outside, "bad.vhdx", -EINVAL,
	  "outside the item" },
	{ "a locator value past the item", case_value_past_end, "bad.vhdx", -EINVAL,
	  "outside the item" },
	{ "a locator key in the item's header", case_offset_in_header, "bad.vhdx", -EINVAL,
	  "outside the item" },
	{ "a locator without parent_linkage", case_no_linkage, "bad.vhdx", -EINVAL,
	  "has no parent_linkage" },
	{ "a linkage that is not a GUID", case_bad_linkage, "bad.vhdx", -EINVAL,
	  "not a GUID in braces" },
	{ "a locator without a path", case_no_path, "bad.vhdx", -EINVAL, "no path to the parent" },
	{ "locator entries past the item", case_entries_past_end, "bad.vhdx", -EINVAL,
	  "lists 65535 entries" },
	{ "VHD footers with bad cookies", case_vhd_cookie, "bad.vhd", -EINVAL, "bad cookie", true },
	{ "VHD footers with bad checksums", case_vhd_checksum, "bad.vhd", -EINVAL, "bad checksum" },
	{ "a VHD header with a bad cookie", case_vhd_header_cookie, "bad.vhd", -EINVAL,
	  "header has a bad cookie" },
	{ "a VHD header with a bad checksum", case_vhd_header_checksum, "bad.vhd", -EINVAL,
	  "header has a bad checksum" },
	{ "a VHD locator outside the file", case_vhd_locator_outside, "bad.vhd", -EINVAL,
	  "lies outside the file" },
	{ "a VHD locator longer than the file", case_vhd_locator_length, "bad.vhd", -EINVAL,
	  "lies outside the file" },
	{ "a VHD BAT entry past the end", case_vhd_bat_outside, "bad.vhd", -EINVAL,
	  "points past the end of the file" },
	{ "a VHD BAT entry on the header", case_vhd_bat_overlap, "bad.vhd", -EINVAL,
	  "overlaps the header or the BAT" },
	{ "a VHD block size of 3 MiB", case_vhd_block_size, "bad.vhd", -EINVAL,
	  "not a power of two" },
	{ "a VHD BAT too short", case_vhd_few_entries, "bad.vhd", -EINVAL, "too few for" },
	{ "a VHD disk type 5", case_vhd_disk_type, "bad.vhd", -EINVAL, "disk type 5" },
	{ "a VHD above 2040 GiB", case_vhd_huge, "bad.vhd", -EINVAL, "above 2040 GiB" },
	{ "a VHD version 2", case_vhd_version, "bad.vhd", -EINVAL, "unsupported VHD version 2" },
	{ "a VHD BAT outside the file", case_vhd_table_outside, "bad.vhd", -EINVAL,
	  "lies outside the file" },
	{ "a stale VHD parent", case_vhd_stale, "bad.vhd", -ESTALE, "unique id" },
};

struct problems {
	char text[4096];
};

static void collect(void *ctx, const char *p)
{
	struct problems *l = ctx;

	strncat(l->text, p, sizeof(l->text) - strlen(l->text) - 2);
	strcat(l->text, "\n");
}

Test(badchain, every_case_is_refused_and_reported)
{
	char cmd[160];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vhdx_check_result res;
		struct problems l = { "" };
		struct vdisk *d = NULL;
		char err[1024] = "";
		int ret;

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'/*", dir);
		cr_assert_eq(system(cmd), 0);
		cases[i].build();
		ret = vdisk_open(at(cases[i].file), &(struct vdisk_open_opts){
				 .read_only = true, .format = cases[i].as_vhd ?
				 VDISK_FORMAT_VHD : VDISK_FORMAT_AUTO }, &d, err, sizeof(err));
		cr_assert_eq(ret, cases[i].err, "%s: open gave %d (%s), expected %d",
			     cases[i].name, ret, err, cases[i].err);
		cr_assert_not_null(strstr(err, cases[i].why), "%s: '%s' does not say '%s'",
				   cases[i].name, err, cases[i].why);
		/* Writable opens refuse too. */
		ret = vdisk_open(at(cases[i].file), &(struct vdisk_open_opts){
				 .format = cases[i].as_vhd ? VDISK_FORMAT_VHD :
				 VDISK_FORMAT_AUTO }, &d, err, sizeof(err));
		cr_assert_lt(ret, 0, "%s: a read-write open accepted it", cases[i].name);
		ret = vdisk_check(at(cases[i].file), false, collect, &l, &res);
		cr_assert_eq(ret, 0, "%s: check could not run (%d)", cases[i].name, ret);
		cr_assert_geq(res.problems, 1, "%s: check found nothing", cases[i].name);
		if (!cases[i].as_vhd)
			cr_assert_not_null(strstr(l.text, cases[i].why),
					   "%s: check said '%s'", cases[i].name, l.text);
	}
}
