// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for reading saved states: checkpoint/'s reader (the
 * manifest, the section table, every section, the memory's chunk table)
 * and the worker's parse of the configuration a state carries.  Whatever
 * opens is then read the way a restore reads it: every record of every
 * section, every memory chunk checked, the description for state-info.
 *
 * Input: byte 0 selects the mode.
 *   mode & 3 == 0	the rest is manifest.json, as it is
 *   mode & 3 == 1	the rest is the manifest's body: its checksum is
 *			computed, so the fuzzer gets past it
 *   otherwise		a valid state whose files are patched by the rest:
 *			records of a file byte (0 sections, 1 memory, 2 the
 *			body's JSON text, checksum fixed), a 16-bit offset,
 *			a length byte and that many bytes
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "util/util.h"
#include "vmm/vmm.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MEM (256u << 10)

static char base[64], work[80];
static uint8_t *sections, *memory;
static size_t sections_len, memory_len;
static char *body_text;		/* the good manifest's body, compact */

static uint8_t *slurp(const char *dir, const char *name, size_t *len)
{
	char p[128];
	struct stat st;
	uint8_t *buf;
	int fd;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	fd = open(p, O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0)
		abort();
	*len = (size_t)st.st_size;
	buf = malloc(*len + 1);
	if (!buf || pread(fd, buf, *len, 0) != (ssize_t)*len)
		abort();
	close(fd);
	return buf;
}

static void spill(const char *name, const void *data, size_t len)
{
	char p[128];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", work, name);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		abort();
	close(fd);
}

/* A manifest around @body (any bytes) with the checksum the reader wants. */
static void spill_manifest(const char *body, size_t len)
{
	json_t *b = json_loadb(body, len, 0, NULL);
	char *text, *doc;

	if (!b) {
		spill("manifest.json", body, len);
		return;
	}
	text = json_dumps(b, JSON_COMPACT | JSON_SORT_KEYS);
	if (asprintf(&doc, "{\"crc32c\": %u, \"body\": %s}", crc32c(0, text, strlen(text)),
		     text) < 0)
		abort();
	spill("manifest.json", doc, strlen(doc));
	free(doc);
	free(text);
	json_decref(b);
}

static void remove_base(void)
{
	char cmd[96];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	json_t *cfg, *m;
	struct ss_writer *w;
	struct ss_section *s;
	struct ss_host h = { .cpu_vendor = "GenuineIntel", .kernel = "6.1.0", .tsc_khz = 2000000 };
	uint8_t *ram = calloc(1, MEM);
	char err[256];

	(void)argc;
	(void)argv;
	/* In memory where there is a tmpfs: three times the runs a second. */
	snprintf(base, sizeof(base), "/dev/shm/fsvisor-ssfuzz.%d", (int)getpid());
	if (mkdir(base, 0700) < 0)
		snprintf(base, sizeof(base), "/tmp/fsvisor-ssfuzz.%d", (int)getpid());
	mkdir(base, 0700);
	snprintf(work, sizeof(work), "%s/work", base);
	mkdir(work, 0700);
	atexit(remove_base);
	h.cpuid[0] = (struct ss_cpuid){ .function = 1, .ecx = 1u << 20 };
	h.ncpuid = 1;
	for (size_t i = 0; i < MEM / 4; i++)
		ram[MEM / 2 + i] = (uint8_t)(i * 13 + 1);
	snprintf(err, sizeof(err), "%s/good", base);
	if (ss_create(err, &w, err, sizeof(err)))
		abort();
	s = ss_section_begin(w, "vm", 1);
	ss_put_u64(s, 1, 42);
	ss_put(s, 2, "irqchip", 7);
	ss_section_end(s);
	s = ss_section_begin(w, "vcpu0", 1);
	ss_put_u32(s, 1, 7);
	ss_section_end(s);
	ss_write_memory(w, ram, MEM, -1);
	cfg = json_pack("{s:s, s:i, s:I, s:s, s:[{s:s, s:s}], s:[{s:s}]}", "name", "fuzz",
			"cpus", 1, "memory", (json_int_t)MEM, "kernel", "/nonexistent",
			"disks", "path", "/tmp/d.img", "format", "raw", "nics", "mac",
			"52:54:00:00:00:01");
	if (ss_commit(w, cfg, &h, err, sizeof(err)))
		abort();
	ss_writer_free(w);
	json_decref(cfg);
	free(ram);
	snprintf(err, sizeof(err), "%s/good", base);
	sections = slurp(err, "sections", &sections_len);
	memory = slurp(err, "memory", &memory_len);
	m = json_load_file(strcat(err, "/manifest.json"), 0, NULL);
	if (!m)
		abort();
	body_text = json_dumps(json_object_get(m, "body"), JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(m);
	return 0;
}

/* Read what opened the way a restore would. */
static void exercise(struct ss_reader *r)
{
	struct vm_config *cfg = NULL;
	char err[512];
	json_t *info;

	for (size_t i = 0; i < ss_section_count(r); i++) {
		struct ss_rsection *s = ss_section(r, ss_section_tag(r, i), NULL);
		const void *p;
		size_t len;
		uint64_t v;

		for (uint32_t id = 0; s && id < 8; id++) {
			ss_get_var(s, id, &p, &len);
			ss_get_u64(s, id, &v);
		}
	}
	for (uint64_t c = 0; c < ss_memory_size(r) / SS_CHUNK; c++) {
		uint8_t buf[SS_CHUNK];

		if (!ss_memory_chunk_zero(r, c) &&
		    pread(ss_memory_fd(r), buf, SS_CHUNK, (off_t)(c * SS_CHUNK)) == SS_CHUNK)
			ss_memory_chunk_ok(r, c, buf);
	}
	if (vm_config_parse_saved(ss_config(r), &cfg, err, sizeof(err)) == 0)
		vm_config_free(cfg);
	info = ss_describe(r);
	json_decref(info);
}

static void patch(uint8_t *buf, size_t len, size_t off, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n && off + i < len; i++)
		buf[off + i] = p[i];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ss_reader *r;
	char err[512];
	uint8_t mode;

	if (size < 1)
		return 0;
	mode = data[0];
	data++;
	size--;
	spill("sections", sections, sections_len);
	spill("memory", memory, memory_len);
	if ((mode & 3) == 0) {
		spill("manifest.json", data, size);
	} else if ((mode & 3) == 1) {
		spill_manifest((const char *)data, size);
	} else {
		uint8_t *sec = malloc(sections_len), *mem = malloc(memory_len);
		size_t blen = strlen(body_text);
		char *body = malloc(blen + 1);

		memcpy(sec, sections, sections_len);
		memcpy(mem, memory, memory_len);
		memcpy(body, body_text, blen + 1);
		while (size >= 4) {
			size_t off = (size_t)data[1] | (size_t)data[2] << 8, n = data[3];

			if (n > size - 4)
				n = size - 4;
			if (data[0] % 3 == 0)
				patch(sec, sections_len, off, data + 4, n);
			else if (data[0] % 3 == 1)
				patch(mem, memory_len, off * 64, data + 4, n);
			else
				patch((uint8_t *)body, blen, off, data + 4, n);
			data += 4 + n;
			size -= 4 + n;
		}
		spill("sections", sec, sections_len);
		spill("memory", mem, memory_len);
		spill_manifest(body, blen);
		free(sec);
		free(mem);
		free(body);
	}
	if (ss_open(work, &r, err, sizeof(err)) == 0) {
		exercise(r);
		ss_reader_free(r);
	}
	return 0;
}
