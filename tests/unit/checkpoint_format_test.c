// SPDX-License-Identifier: MIT
/*
 * The saved-state format: what is written reads back, zero memory is
 * holes, and every kind of damage is refused with the problem named,
 * before anything would act on it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "util/util.h"

#define MEM (4u << 20)

static char dir[256];
static uint8_t *mem;

static void host_fill(struct ss_host *h)
{
	memset(h, 0, sizeof(*h));
	snprintf(h->cpu_vendor, sizeof(h->cpu_vendor), "GenuineIntel");
	snprintf(h->kernel, sizeof(h->kernel), "6.1.0-test");
	h->tsc_khz = 2000000;
	h->cpuid[0] = (struct ss_cpuid){ .function = 1, .ecx = 1u << 20, .edx = 1u << 4 };
	h->cpuid[1] = (struct ss_cpuid){ .function = 7, .index = 0, .flags = 1,
					 .ebx = 1u << 5 };
	h->ncpuid = 2;
}

/* A state with two sections and 4 MiB of memory, a quarter written. */
static void write_state(void)
{
	struct ss_writer *w;
	struct ss_section *s;
	struct ss_host h;
	char err[256];
	json_t *cfg = json_pack("{s:s, s:I}", "name", "t", "memory", (json_int_t)MEM);

	snprintf(dir, sizeof(dir), "/tmp/fsvisor-cp-test.%d/state", (int)getpid());
	mem = calloc(1, MEM);
	cr_assert(mem);
	for (size_t i = 0; i < MEM / 4; i++)
		mem[MEM / 2 + i] = (uint8_t)(i * 7 + 1);
	mem[100] = 42;
	host_fill(&h);
	cr_assert_eq(ss_create(dir, &w, err, sizeof(err)), 0, "%s", err);
	s = ss_section_begin(w, "vcpu0", 3);
	ss_put_u64(s, 1, 0x1122334455667788ULL);
	ss_put(s, 2, "hello", 5);
	cr_assert_eq(ss_section_end(s), 0);
	s = ss_section_begin(w, "dev:serial", 1);
	ss_put_u8(s, 7, 9);
	ss_put_u16(s, 8, 0xBEEF);
	ss_put_u32(s, 9, 0xDEADBEEF);
	cr_assert_eq(ss_section_end(s), 0);
	cr_assert_eq(ss_write_memory(w, mem, MEM, -1), 0, "%s", ss_writer_error(w));
	cr_assert_eq(ss_commit(w, cfg, &h, err, sizeof(err)), 0, "%s", err);
	ss_writer_free(w);
	json_decref(cfg);
}

static void setup(void)
{
	char parent[256];

	snprintf(parent, sizeof(parent), "/tmp/fsvisor-cp-test.%d", (int)getpid());
	mkdir(parent, 0700);
	write_state();
}

static void teardown(void)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf /tmp/fsvisor-cp-test.%d", (int)getpid());
	cr_assert_eq(system(cmd), 0);
	free(mem);
}

TestSuite(checkpoint, .init = setup, .fini = teardown);

Test(checkpoint, crc32c_check_value)
{
	/* The standard check value of CRC-32C. */
	cr_assert_eq(crc32c(0, "123456789", 9), 0xE3069283u);
	cr_assert_eq(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}

Test(checkpoint, round_trip)
{
	struct ss_reader *r;
	struct ss_rsection *s;
	uint32_t version, v32;
	uint64_t v64;
	uint16_t v16;
	uint8_t v8;
	const void *p;
	size_t len;
	char err[256];
	struct stat st;
	char path[300];

	cr_assert_eq(ss_open(dir, &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(ss_format(r), SS_FORMAT);
	cr_assert_str_eq(json_string_value(json_object_get(ss_config(r), "name")), "t");
	cr_assert_str_eq(ss_host(r)->cpu_vendor, "GenuineIntel");
	cr_assert_eq(ss_host(r)->ncpuid, 2);
	s = ss_section(r, "vcpu0", &version);
	cr_assert(s);
	cr_assert_eq(version, 3);
	cr_assert_eq(ss_get_u64(s, 1, &v64), 0);
	cr_assert_eq(v64, 0x1122334455667788ULL);
	cr_assert_eq(ss_get_var(s, 2, &p, &len), 0);
	cr_assert_eq(len, 5);
	cr_assert_eq(memcmp(p, "hello", 5), 0);
	cr_assert_neq(ss_get_u32(s, 1, &v32), 0, "a record read at the wrong size");
	cr_assert_neq(ss_get_u32(s, 99, &v32), 0, "a missing record");
	s = ss_section(r, "dev:serial", NULL);
	cr_assert(s);
	cr_assert(ss_get_u8(s, 7, &v8) == 0 && v8 == 9);
	cr_assert(ss_get_u16(s, 8, &v16) == 0 && v16 == 0xBEEF);
	cr_assert(ss_get_u32(s, 9, &v32) == 0 && v32 == 0xDEADBEEF);
	cr_assert_null(ss_section(r, "nosuch", NULL));
	cr_assert_eq(ss_memory_size(r), MEM);
	/* Chunk checks: zero ones are zero, data ones match, a changed one does not. */
	cr_assert(!ss_memory_chunk_zero(r, 0));
	cr_assert(ss_memory_chunk_zero(r, 1));
	cr_assert(ss_memory_chunk_ok(r, 0, mem));
	cr_assert(ss_memory_chunk_ok(r, MEM / 2 / SS_CHUNK, mem + MEM / 2));
	mem[MEM / 2 + 5] ^= 1;
	cr_assert(!ss_memory_chunk_ok(r, MEM / 2 / SS_CHUNK, mem + MEM / 2));
	mem[MEM / 2 + 5] ^= 1;
	ss_reader_free(r);
	/* Holes: far fewer blocks than bytes. */
	snprintf(path, sizeof(path), "%s/memory", dir);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, MEM);
	cr_assert_lt((uint64_t)st.st_blocks * 512, MEM / 2, "zero memory was written");
}

/* Corrupt one byte of @file at @off (negative: from its end). */
static void flip(const char *file, long off, uint8_t mask)
{
	char path[300];
	uint8_t b;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	if (off < 0)
		off += lseek(fd, 0, SEEK_END);
	cr_assert_eq(pread(fd, &b, 1, off), 1);
	b ^= mask;
	cr_assert_eq(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

static void expect_refused(const char *what, const char *needle)
{
	struct ss_reader *r = NULL;
	char err[256] = "";
	int ret = ss_open(dir, &r, err, sizeof(err));

	cr_assert_neq(ret, 0, "%s: a damaged state was accepted", what);
	cr_assert_null(r);
	cr_assert(strstr(err, needle), "%s: the reason '%s' does not say '%s'", what, err,
		  needle);
}

Test(checkpoint, flipped_bit_in_each_section)
{
	/* Section payloads start after the 64-byte header; each is refused. */
	struct ss_reader *r;
	char err[256];
	json_t *m, *list, *e;
	size_t i;
	char path[300];

	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	m = json_load_file(path, 0, NULL);
	list = json_object_get(json_object_get(m, "body"), "sections");
	json_array_foreach(list, i, e) {
		const char *tag = json_string_value(json_object_get(e, "tag"));
		long off = (long)json_integer_value(json_object_get(e, "offset")) + 64 + 3;
		char needle[64];

		flip("sections", off, 0x10);
		snprintf(needle, sizeof(needle), "section %s is damaged", tag);
		expect_refused(tag, needle);
		flip("sections", off, 0x10);
		/* The header too. */
		flip("sections", off - 64 - 3 + 41, 0x01);
		expect_refused(tag, "header");
		flip("sections", off - 64 - 3 + 41, 0x01);
	}
	json_decref(m);
	cr_assert_eq(ss_open(dir, &r, err, sizeof(err)), 0, "%s", err);
	ss_reader_free(r);
}

Test(checkpoint, damaged_manifest)
{
	flip("manifest.json", 40, 0x01);
	expect_refused("manifest", "manifest.json");
}

Test(checkpoint, truncated_memory)
{
	char path[300];

	snprintf(path, sizeof(path), "%s/memory", dir);
	cr_assert_eq(truncate(path, MEM / 2), 0);
	expect_refused("memory", "truncated");
}

Test(checkpoint, no_manifest_is_no_state)
{
	char path[300], err[256];
	struct ss_reader *r;

	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	cr_assert_eq(unlink(path), 0);
	cr_assert_eq(ss_open(dir, &r, err, sizeof(err)), -ENOENT);
}

/* Rewrite the manifest's body with @edit applied, with a valid checksum. */
static void rewrite_manifest(void (*edit)(json_t *body))
{
	char path[300], *text;
	json_t *m, *body;

	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	m = json_load_file(path, 0, NULL);
	body = json_object_get(m, "body");
	edit(body);
	text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
	json_object_set_new(m, "crc32c", json_integer(crc32c(0, text, strlen(text))));
	free(text);
	cr_assert_eq(json_dump_file(m, path, 0), 0);
	json_decref(m);
}

static void future_format(json_t *body)
{
	json_object_set_new(body, "format", json_integer(SS_FORMAT + 1));
}

static void section_gone(json_t *body)
{
	json_array_remove(json_object_get(body, "sections"), 0);
}

static void section_outside(json_t *body)
{
	json_t *e = json_array_get(json_object_get(body, "sections"), 1);

	json_object_set_new(e, "offset", json_integer(1 << 30));
}

static void memory_size(json_t *body)
{
	json_object_set_new(json_object_get(body, "memory"), "size", json_integer(MEM * 2));
}

Test(checkpoint, unknown_format_version)
{
	rewrite_manifest(future_format);
	expect_refused("format", "format version 2");
}

Test(checkpoint, section_outside_the_file)
{
	rewrite_manifest(section_outside);
	expect_refused("offset", "outside the sections file");
}

Test(checkpoint, memory_size_disagrees)
{
	rewrite_manifest(memory_size);
	expect_refused("memory", "does not agree");
}

Test(checkpoint, a_section_missing_is_seen_by_its_reader)
{
	struct ss_reader *r;
	char err[256];

	/* The index lost vcpu0: the state opens, and vcpu0 is not there. */
	rewrite_manifest(section_gone);
	cr_assert_eq(ss_open(dir, &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_null(ss_section(r, "vcpu0", NULL));
	ss_reader_free(r);
}

Test(checkpoint, host_compatibility)
{
	struct ss_host saved, here;
	char err[256];

	host_fill(&saved);
	host_fill(&here);
	cr_assert_eq(ss_host_compatible(&saved, &here, err, sizeof(err)), 0, "%s", err);
	here.cpuid[1].ebx = 0;	/* no avx2 here */
	cr_assert_neq(ss_host_compatible(&saved, &here, err, sizeof(err)), 0);
	cr_assert(strstr(err, "avx2"), "%s", err);
	host_fill(&here);
	snprintf(here.cpu_vendor, sizeof(here.cpu_vendor), "AuthenticAMD");
	cr_assert_neq(ss_host_compatible(&saved, &here, err, sizeof(err)), 0);
	host_fill(&here);
	here.tsc_khz = 2100000;
	cr_assert_neq(ss_host_compatible(&saved, &here, err, sizeof(err)), 0);
	cr_assert(strstr(err, "TSC"), "%s", err);
	here.tsc_khz = 2000100;	/* 50 ppm: as close as two crystals are */
	cr_assert_eq(ss_host_compatible(&saved, &here, err, sizeof(err)), 0, "%s", err);
}

Test(checkpoint, an_unfinished_state_is_removed)
{
	struct ss_writer *w;
	char err[256], other[300];
	struct stat st;

	snprintf(other, sizeof(other), "%s.2", dir);
	cr_assert_eq(ss_create(other, &w, err, sizeof(err)), 0, "%s", err);
	ss_writer_free(w);	/* never committed */
	cr_assert_neq(stat(other, &st), 0, "an unfinished state was left behind");
}
