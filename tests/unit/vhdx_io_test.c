// SPDX-License-Identifier: MIT
/* The disk library: format helpers, creation, and I/O semantics. */
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
	snprintf(dir, sizeof(dir), "/tmp/fsvisor-vhdx-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

static const char *path_in(const char *name)
{
	static char p[4][160];
	static int i;

	i = (i + 1) % 4;
	snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
	return p[i];
}

static struct vdisk *open_ok(const char *path, bool ro)
{
	struct vdisk_open_opts o = { .read_only = ro };
	struct vdisk *d = NULL;
	char err[512] = "";

	cr_assert_eq(vdisk_open(path, &o, &d, err, sizeof(err)), 0, "%s", err);
	return d;
}

static void create_ok(const char *path, uint64_t size, enum vdisk_type type,
		      uint32_t block, uint32_t lss)
{
	struct vhdx_create_opts o = { .size = size, .type = type,
				      .block_size = block,
				      .logical_sector_size = lss };
	char err[512] = "";

	cr_assert_eq(vhdx_create(path, &o, err, sizeof(err)), 0, "%s", err);
}

TestSuite(vhdx, .init = setup, .fini = teardown, .timeout = 60);

Test(vhdx, crc32c_known_values)
{
	/* The standard check value of CRC-32C. */
	cr_assert_eq(crc32c(0, "123456789", 9), 0xE3069283u);
	cr_assert_eq(crc32c(0, "", 0), 0);
	/* Chaining gives the same as one call. */
	cr_assert_eq(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}

Test(vhdx, guid_text_round_trip)
{
	struct guid g, back;
	char text[40];

	cr_assert_eq(guid_parse("{2DC27766-F623-4200-9D64-115E9BFD4A08}", &g), 0);
	cr_assert(guid_equal(&g, &guid_bat_region));
	guid_format(&g, text);
	cr_assert_str_eq(text, "2dc27766-f623-4200-9d64-115e9bfd4a08");
	cr_assert_eq(guid_parse(text, &back), 0);
	cr_assert(guid_equal(&g, &back));
	/* On disk the first three fields are little-endian. */
	cr_assert_eq(g.b[0], 0x66);
	cr_assert_eq(g.b[3], 0x2D);
	cr_assert_eq(g.b[8], 0x9D);
	cr_assert_eq(guid_parse("2dc27766-f623-4200-9d64-115e9bfd4a0", &g), -EINVAL);
	cr_assert_eq(guid_parse("2dc27766xf623-4200-9d64-115e9bfd4a08", &g), -EINVAL);
	cr_assert_eq(guid_parse("{2dc27766-f623-4200-9d64-115e9bfd4a08", &g), -EINVAL);
	cr_assert_eq(guid_parse("2dc27766-f623-4200-9d64-115e9bfd4a08x", &g), -EINVAL);
	cr_assert_eq(guid_parse("", &g), -EINVAL);
	guid_generate(&g);
	guid_format(&g, text);
	cr_assert_eq(text[14], '4', "random GUIDs are version 4: %s", text);
}

Test(vhdx, create_validates_options)
{
	static const struct {
		struct vhdx_create_opts o;
		const char *why;
	} bad[] = {
		{ { .size = 0 }, "1 sector to 64 TiB" },
		{ { .size = 65 * TiB }, "1 sector to 64 TiB" },
		{ { .size = 1000 }, "multiple of the 512-byte sector" },
		{ { .size = MiB, .logical_sector_size = 4096, .block_size = MiB,
		    .log_size = MiB, .physical_sector_size = 4096 }, NULL },
		{ { .size = 4096 * 3 + 512, .logical_sector_size = 4096 },
		  "multiple of the 4096-byte sector" },
		{ { .size = MiB, .logical_sector_size = 1024 }, "must be 512 or 4096" },
		{ { .size = MiB, .physical_sector_size = 2048 }, "must be 512 or 4096" },
		{ { .size = MiB, .block_size = 3 * MiB }, "power of two" },
		{ { .size = MiB, .block_size = 512 * 1024 }, "power of two" },
		{ { .size = MiB, .block_size = 512 * MiB }, "power of two" },
		{ { .size = MiB, .log_size = 1000 }, "multiple of 1M" },
		{ { .size = MiB, .type = VDISK_TYPE_DIFFERENCING }, "needs a parent" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct vhdx_create_opts o = bad[i].o;
		char err[512] = "";
		int ret;

		if (o.type == 0 && i != 11)
			o.type = VDISK_TYPE_DYNAMIC;
		ret = vhdx_create(path_in("c.vhdx"), &o, err, sizeof(err));
		if (!bad[i].why) {
			cr_assert_eq(ret, 0, "case %zu: %s", i, err);
			unlink(path_in("c.vhdx"));
			continue;
		}
		cr_assert_eq(ret, -EINVAL, "case %zu should fail", i);
		cr_assert_not_null(strstr(err, bad[i].why), "case %zu: '%s'", i, err);
		cr_assert_eq(access(path_in("c.vhdx"), F_OK), -1,
			     "case %zu left a file", i);
	}
	create_ok(path_in("e.vhdx"), MiB, VDISK_TYPE_DYNAMIC, 0, 0);
	{
		struct vhdx_create_opts o = { .size = MiB, .type = VDISK_TYPE_DYNAMIC };
		char err[512];

		cr_assert_eq(vhdx_create(path_in("e.vhdx"), &o, err, sizeof(err)),
			     -EEXIST);
	}
}

Test(vhdx, default_block_sizes)
{
	cr_assert_eq(vhdx_default_block_size(GiB), 8 * MiB);
	cr_assert_eq(vhdx_default_block_size(20 * GiB), 16 * MiB);
	cr_assert_eq(vhdx_default_block_size(500 * GiB), 32 * MiB);
	cr_assert_eq(vhdx_default_block_size(40 * TiB), 64 * MiB);
}

Test(vhdx, info_of_created_disks)
{
	struct vdisk *d;
	const struct vdisk_info *in;

	create_ok(path_in("f.vhdx"), 10 * MiB, VDISK_TYPE_FIXED, MiB, 4096);
	d = open_ok(path_in("f.vhdx"), true);
	in = vdisk_info(d);
	cr_assert_eq(in->format, VDISK_FORMAT_VHDX);
	cr_assert_eq(in->type, VDISK_TYPE_FIXED);
	cr_assert_eq(in->virtual_size, 10 * MiB);
	cr_assert_eq(in->logical_sector_size, 4096);
	cr_assert_eq(in->block_size, MiB);
	cr_assert_eq(in->allocated, 10 * MiB);
	cr_assert_eq(in->file_size % MiB, 0);
	cr_assert_eq(vdisk_close(d), 0);

	create_ok(path_in("d.vhdx"), 10 * MiB, VDISK_TYPE_DYNAMIC, 0, 0);
	d = open_ok(path_in("d.vhdx"), true);
	in = vdisk_info(d);
	cr_assert_eq(in->type, VDISK_TYPE_DYNAMIC);
	cr_assert_eq(in->allocated, 0);
	cr_assert_eq(in->block_size, 8 * MiB);
	cr_assert_eq(in->logical_sector_size, 512);
	cr_assert_eq(strlen(in->disk_id), 36);
	cr_assert_eq(vdisk_close(d), 0);
}

/* Byte-granular writes across block boundaries, on both types. */
Test(vhdx, byte_io_across_blocks)
{
	static const enum vdisk_type types[] = { VDISK_TYPE_DYNAMIC,
						 VDISK_TYPE_FIXED };

	for (int t = 0; t < 2; t++) {
		const char *p = path_in(t ? "fx.vhdx" : "dy.vhdx");
		uint8_t *buf = malloc(3 * MiB), *back = malloc(3 * MiB);
		struct vdisk *d;

		create_ok(p, 8 * MiB, types[t], MiB, 512);
		d = open_ok(p, false);
		for (size_t i = 0; i < 3 * MiB; i++)
			buf[i] = (uint8_t)(i * 7 + 3);
		/* Unaligned, crossing two block boundaries. */
		cr_assert_eq(vdisk_pwrite(d, buf, 2 * MiB + 333, MiB - 17), 0);
		cr_assert_eq(vdisk_pwrite(d, "x", 1, 8 * MiB - 1), 0);
		cr_assert_eq(vdisk_pwrite(d, "x", 1, 8 * MiB), -EINVAL);
		cr_assert_eq(vdisk_close(d), 0);

		d = open_ok(p, true);
		cr_assert_eq(vdisk_pread(d, back, 3 * MiB, MiB - 1000), 0);
		for (size_t i = 0; i < 983; i++)
			cr_assert_eq(back[i], 0, "byte %zu before the write", i);
		cr_assert_eq(memcmp(back + 983, buf, 2 * MiB + 333), 0);
		for (size_t i = 983 + 2 * MiB + 333; i < 3 * MiB; i++)
			cr_assert_eq(back[i], 0, "byte %zu after the write", i);
		cr_assert_eq(vdisk_pread(d, back, 1, 8 * MiB - 1), 0);
		cr_assert_eq(back[0], 'x');
		if (types[t] == VDISK_TYPE_DYNAMIC)
			cr_assert_eq(vdisk_info(d)->allocated, 5 * MiB,
				     "blocks 0-3 and 7; got %llu",
				     (unsigned long long)vdisk_info(d)->allocated);
		cr_assert_eq(vdisk_pwrite(d, "y", 1, 0), -EROFS);
		cr_assert_eq(vdisk_close(d), 0);
		free(buf);
		free(back);
	}
}

struct done_count {
	int n;
	int err;
};

static void count_done(struct vdisk_req *req, int res)
{
	struct done_count *c = req->opaque;

	c->n++;
	if (res)
		c->err = res;
}

/* Two writes in flight to one unallocated block: one allocation. */
Test(vhdx, concurrent_writes_allocate_once)
{
	const char *p = path_in("cc.vhdx");
	struct done_count c = { 0 };
	struct vdisk_req r[4];
	struct iovec iov[4];
	char bufs[4][4096];
	uint64_t size_before;
	struct vdisk *d;

	create_ok(p, 64 * MiB, VDISK_TYPE_DYNAMIC, 2 * MiB, 512);
	d = open_ok(p, false);
	size_before = vdisk_info(d)->file_size;
	for (int i = 0; i < 4; i++) {
		memset(bufs[i], 'a' + i, sizeof(bufs[i]));
		iov[i] = (struct iovec){ bufs[i], sizeof(bufs[i]) };
		r[i] = (struct vdisk_req){ .op = VDISK_WRITE,
			.offset = 4 * MiB + (uint64_t)i * 8192, .iov = &iov[i],
			.iovcnt = 1, .done = count_done, .opaque = &c };
		cr_assert_eq(vdisk_submit(d, &r[i]), 0);
	}
	while (c.n < 4)
		cr_assert_geq(io_engine_run(vdisk_engine(d), 1), 0);
	cr_assert_eq(c.err, 0);
	cr_assert_eq(vdisk_info(d)->allocated, 2 * MiB);
	cr_assert_eq(vdisk_info(d)->file_size, size_before + 2 * MiB);
	for (int i = 0; i < 4; i++) {
		char got[4096];

		cr_assert_eq(vdisk_pread(d, got, sizeof(got), r[i].offset), 0);
		cr_assert_eq(memcmp(got, bufs[i], sizeof(got)), 0, "write %d", i);
	}
	cr_assert_eq(vdisk_close(d), 0);
}

Test(vhdx, submit_rejects_bad_requests)
{
	const char *p = path_in("r.vhdx");
	struct vdisk_req req;
	struct iovec iov;
	char buf[512];
	struct vdisk *d;

	create_ok(p, 8 * MiB, VDISK_TYPE_DYNAMIC, MiB, 512);
	d = open_ok(p, false);
	iov = (struct iovec){ buf, sizeof(buf) };
	req = (struct vdisk_req){ .op = VDISK_READ, .offset = 8 * MiB,
				  .iov = &iov, .iovcnt = 1, .done = count_done };
	cr_assert_eq(vdisk_submit(d, &req), -EINVAL);
	req.offset = UINT64_MAX - 100;
	cr_assert_eq(vdisk_submit(d, &req), -EINVAL);
	req.offset = 0;
	req.op = 77;
	cr_assert_eq(vdisk_submit(d, &req), -EINVAL);
	cr_assert_eq(vdisk_close(d), 0);
}

/* O_DIRECT: aligned requests go straight through, others bounce. */
Test(vhdx, direct_io)
{
	const char *p = path_in("dio.vhdx");
	struct vdisk_open_opts o = { .direct = true };
	uint8_t *buf = aligned_alloc(4096, 3 * MiB);
	char err[512], small[100];
	struct vdisk *d;

	create_ok(p, 16 * MiB, VDISK_TYPE_DYNAMIC, MiB, 512);
	cr_assert_eq(vdisk_open(p, &o, &d, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(vdisk_info(d)->alignment, 512);
	memset(buf, 0x5c, 3 * MiB);
	cr_assert_eq(vdisk_pwrite(d, buf, 3 * MiB, MiB / 2), 0);
	memset(small, 0x77, sizeof(small));
	cr_assert_eq(vdisk_pwrite(d, small, sizeof(small), 12345), 0);
	cr_assert_eq(vdisk_close(d), 0);

	d = open_ok(p, true);
	cr_assert_eq(vdisk_pread(d, buf, 3 * MiB, MiB / 2), 0);
	for (size_t i = 0; i < 3 * MiB; i++)
		cr_assert_eq(buf[i], 0x5c, "byte %zu", i);
	cr_assert_eq(vdisk_pread(d, small, sizeof(small), 12345), 0);
	for (size_t i = 0; i < sizeof(small); i++)
		cr_assert_eq((uint8_t)small[i], 0x77);
	cr_assert_eq(vdisk_close(d), 0);
	free(buf);
}

static uint64_t file_checksum(const char *p)
{
	int fd = open(p, O_RDONLY);
	uint8_t buf[65536];
	uint32_t crc = 0;
	ssize_t n;

	cr_assert_geq(fd, 0);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		crc = crc32c(crc, buf, (size_t)n);
	close(fd);
	return crc;
}

static void copy_file(const char *from, const char *to)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "cp --sparse=always '%s' '%s'", from, to);
	cr_assert_eq(system(cmd), 0);
}

/*
 * Leave a dirty log behind: flush (which commits through the log) and
 * copy the file while the disk is still open.
 */
static void make_dirty(const char *p, const char *copy)
{
	struct vdisk *d = open_ok(p, false);
	char data[3000];

	memset(data, 0x42, sizeof(data));
	cr_assert_eq(vdisk_pwrite(d, data, sizeof(data), 5 * MiB - 100), 0);
	cr_assert_eq(vdisk_pwrite(d, data, sizeof(data), 9 * MiB), 0);
	cr_assert_eq(vdisk_flush(d), 0);
	copy_file(p, copy);
	cr_assert_eq(vdisk_close(d), 0);
}

Test(vhdx, dirty_log_replay)
{
	const char *p = path_in("dl.vhdx"), *dirty = path_in("dirty.vhdx");
	struct vdisk *d;
	uint64_t before;
	char got[3000];

	create_ok(p, 16 * MiB, VDISK_TYPE_DYNAMIC, MiB, 512);
	make_dirty(p, dirty);

	/* Read-only: replayed in memory, the file stays as it is. */
	before = file_checksum(dirty);
	d = open_ok(dirty, true);
	cr_assert(vdisk_info(d)->log_replayed);
	cr_assert_eq(vdisk_pread(d, got, sizeof(got), 9 * MiB), 0);
	cr_assert_eq(got[0], 0x42);
	cr_assert_eq(got[2999], 0x42);
	cr_assert_eq(vdisk_info(d)->allocated, 3 * MiB);	/* blocks 4, 5, 9 */
	cr_assert_eq(vdisk_close(d), 0);
	cr_assert_eq(file_checksum(dirty), before, "read-only open changed the file");

	/* Read-write: replayed into the file, and the log is clean after. */
	d = open_ok(dirty, false);
	cr_assert(vdisk_info(d)->log_replayed);
	cr_assert_eq(vdisk_pread(d, got, sizeof(got), 5 * MiB - 100), 0);
	cr_assert_eq(got[1500], 0x42);
	cr_assert_eq(vdisk_close(d), 0);
	d = open_ok(dirty, true);
	cr_assert(!vdisk_info(d)->log_replayed);
	cr_assert_eq(vdisk_close(d), 0);
}

Test(vhdx, clean_close_leaves_empty_log)
{
	const char *p = path_in("cl.vhdx");
	struct vdisk *d;

	create_ok(p, 16 * MiB, VDISK_TYPE_DYNAMIC, MiB, 512);
	d = open_ok(p, false);
	cr_assert_eq(vdisk_pwrite(d, "abc", 3, 3 * MiB), 0);
	cr_assert_eq(vdisk_flush(d), 0);
	cr_assert_eq(vdisk_close(d), 0);
	d = open_ok(p, true);
	cr_assert(!vdisk_info(d)->log_replayed);
	cr_assert_eq(vdisk_close(d), 0);
}

Test(vhdx, raw_files)
{
	const char *p = path_in("disk.raw");
	int fd = open(p, O_CREAT | O_RDWR, 0644);
	struct vdisk *d;
	uint64_t len;
	bool alloc;
	char got[5];

	cr_assert_eq(ftruncate(fd, 64 * MiB), 0);
	close(fd);
	d = open_ok(p, false);
	cr_assert_eq(vdisk_info(d)->format, VDISK_FORMAT_RAW);
	cr_assert_eq(vdisk_info(d)->virtual_size, 64 * MiB);
	cr_assert_eq(vdisk_pwrite(d, "hello", 5, 10 * MiB + 1), 0);
	len = 64 * MiB;
	cr_assert_eq(vdisk_block_status(d, 0, &len, &alloc), 0);
	cr_assert(!alloc);
	cr_assert_leq(len, 10 * MiB + 1);
	cr_assert_eq(vdisk_pread(d, got, 5, 10 * MiB + 1), 0);
	cr_assert_eq(memcmp(got, "hello", 5), 0);
	cr_assert_eq(vdisk_close(d), 0);
}

Test(vhdx, open_errors_name_the_file)
{
	struct vdisk *d;
	char err[512] = "";

	cr_assert_eq(vdisk_open(path_in("missing"), NULL, &d, err, sizeof(err)),
		     -ENOENT);
	cr_assert_not_null(strstr(err, "missing"), "%s", err);
	cr_assert_eq(vdisk_open(dir, NULL, &d, err, sizeof(err)), -EISDIR);
	cr_assert_not_null(strstr(err, "Is a directory"), "%s", err);
	cr_assert_eq(vdisk_open("/dev/null", &(struct vdisk_open_opts){
				.read_only = true }, &d, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "not a regular file"), "%s", err);
}

struct hdr_guids {
	uint64_t seq;
	uint8_t file_guid[16], data_guid[16], log_guid[16];
};

/* The current header's sequence number and GUIDs. */
static struct hdr_guids read_current_header(const char *p)
{
	uint8_t h[2][4096];
	struct hdr_guids g;
	int fd = open(p, O_RDONLY), cur;

	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, h[0], 4096, VHDX_HEADER1_OFFSET), 4096);
	cr_assert_eq(pread(fd, h[1], 4096, VHDX_HEADER2_OFFSET), 4096);
	close(fd);
	cur = get64(h[1] + HDR_SEQUENCE) > get64(h[0] + HDR_SEQUENCE);
	g.seq = get64(h[cur] + HDR_SEQUENCE);
	memcpy(g.file_guid, h[cur] + HDR_FILE_WRITE_GUID, 16);
	memcpy(g.data_guid, h[cur] + HDR_DATA_WRITE_GUID, 16);
	memcpy(g.log_guid, h[cur] + HDR_LOG_GUID, 16);
	/* Both copies agree after every update we make. */
	cr_assert_eq(memcmp(h[0] + 16, h[1] + 16, 4096 - 16), 0);
	return g;
}

Test(vhdx, header_guids_follow_the_spec)
{
	static const uint8_t zero[16];
	const char *p = path_in("g.vhdx");
	struct hdr_guids a, b, c;
	struct vdisk *d;

	create_ok(p, 16 * MiB, VDISK_TYPE_DYNAMIC, MiB, 512);
	a = read_current_header(p);

	/* Opens that change nothing leave the headers alone. */
	vdisk_close(open_ok(p, true));
	vdisk_close(open_ok(p, false));
	b = read_current_header(p);
	cr_assert_eq(memcmp(&a, &b, sizeof(a)), 0);

	/* The first write takes new File- and DataWriteGuids. */
	d = open_ok(p, false);
	cr_assert_eq(vdisk_pwrite(d, "data", 4, 2 * MiB), 0);
	b = read_current_header(p);
	cr_assert_gt(b.seq, a.seq);
	cr_assert_neq(memcmp(a.file_guid, b.file_guid, 16), 0);
	cr_assert_neq(memcmp(a.data_guid, b.data_guid, 16), 0);
	/* While allocations are committed the header names the log... */
	cr_assert_eq(vdisk_flush(d), 0);
	c = read_current_header(p);
	cr_assert_neq(memcmp(c.log_guid, zero, 16), 0);
	/* ...and the session keeps its GUIDs. */
	cr_assert_eq(memcmp(c.file_guid, b.file_guid, 16), 0);
	cr_assert_eq(memcmp(c.data_guid, b.data_guid, 16), 0);
	cr_assert_eq(vdisk_close(d), 0);
	c = read_current_header(p);
	cr_assert_eq(memcmp(c.log_guid, zero, 16), 0, "a clean close empties the log");
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

Test(vhdx, discard_and_write_zeroes)
{
	const char *dyn = path_in("z.vhdx"), *fix = path_in("zf.vhdx");
	uint8_t *buf = malloc(4 * MiB), *back = malloc(4 * MiB);
	struct vdisk *d;

	memset(buf, 0x6b, 4 * MiB);
	create_ok(dyn, 16 * MiB, VDISK_TYPE_DYNAMIC, MiB, 512);
	d = open_ok(dyn, false);
	cr_assert_eq(vdisk_pwrite(d, buf, 4 * MiB, 0), 0);
	cr_assert_eq(vdisk_info(d)->allocated, 4 * MiB);
	/* Whole block 1: gone from the file; part of block 2: zeroed. */
	cr_assert_eq(vdisk_discard(d, MiB, MiB), 0);
	cr_assert_eq(vdisk_write_zeroes(d, 2 * MiB + 4096, 8192), 0);
	cr_assert_eq(vdisk_info(d)->allocated, 3 * MiB);
	/* Beyond the end: refused, nothing changes. */
	cr_assert_eq(vdisk_write_zeroes(d, 15 * MiB, 2 * MiB), -EINVAL);
	cr_assert_eq(vdisk_close(d), 0);

	d = open_ok(dyn, true);
	cr_assert_eq(vdisk_pread(d, back, 4 * MiB, 0), 0);
	cr_assert_eq(memcmp(back, buf, MiB), 0, "block 0 untouched");
	cr_assert(all_zero(back + MiB, MiB), "discarded block reads zeros");
	cr_assert_eq(memcmp(back + 2 * MiB, buf, 4096), 0);
	cr_assert(all_zero(back + 2 * MiB + 4096, 8192), "zeroed range");
	cr_assert_eq(memcmp(back + 2 * MiB + 12288, buf, 2 * MiB - 12288), 0);
	cr_assert_eq(vdisk_info(d)->allocated, 3 * MiB, "the ZERO state survived");
	cr_assert_eq(vdisk_close(d), 0);

	/* A fixed disk keeps every block allocated. */
	create_ok(fix, 4 * MiB, VDISK_TYPE_FIXED, MiB, 512);
	d = open_ok(fix, false);
	cr_assert_eq(vdisk_pwrite(d, buf, 4 * MiB, 0), 0);
	cr_assert_eq(vdisk_write_zeroes(d, MiB, MiB), 0);
	cr_assert_eq(vdisk_discard(d, 0, 4096), 0);
	cr_assert_eq(vdisk_info(d)->allocated, 4 * MiB);
	cr_assert_eq(vdisk_pread(d, back, 4 * MiB, 0), 0);
	cr_assert(all_zero(back, 4096));
	cr_assert(all_zero(back + MiB, MiB));
	cr_assert_eq(memcmp(back + 2 * MiB, buf, MiB), 0);
	cr_assert_eq(vdisk_close(d), 0);

	/* Read-only disks refuse both. */
	d = open_ok(dyn, true);
	cr_assert_eq(vdisk_discard(d, 0, 4096), -EROFS);
	cr_assert_eq(vdisk_write_zeroes(d, 0, 4096), -EROFS);
	cr_assert_eq(vdisk_close(d), 0);
	free(buf);
	free(back);
}

Test(vhdx, raw_discard)
{
	const char *p = path_in("d.raw");
	int fd = open(p, O_CREAT | O_RDWR, 0644);
	uint8_t buf[8192], back[8192];
	struct vdisk *d;

	cr_assert_eq(ftruncate(fd, 4 * MiB), 0);
	close(fd);
	memset(buf, 0x3c, sizeof(buf));
	d = open_ok(p, false);
	cr_assert_eq(vdisk_pwrite(d, buf, sizeof(buf), MiB), 0);
	cr_assert_eq(vdisk_write_zeroes(d, MiB + 4096, 4096), 0);
	cr_assert_eq(vdisk_pread(d, back, sizeof(back), MiB), 0);
	cr_assert_eq(memcmp(back, buf, 4096), 0);
	cr_assert(all_zero(back + 4096, 4096));
	cr_assert_eq(vdisk_close(d), 0);
}
