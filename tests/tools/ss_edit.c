// SPDX-License-Identifier: MIT
/*
 * ss_edit: damage a saved state in one chosen way, for the table of bad
 * states (tests/vm_state_bad.sh).  Manifest edits keep its checksum
 * valid, so that what is refused is the edit itself, not the checksum.
 *
 *   ss_edit DIR cpu-feature       the guest was given a feature no CPU has
 *   ss_edit DIR memory-size       the configuration's memory differs
 *   ss_edit DIR drop-disk         the configuration lost its disk
 *   ss_edit DIR drop-section TAG  the manifest no longer lists TAG
 *   ss_edit DIR format N          the format version is N
 *   ss_edit DIR flip TAG          one bit of section TAG's payload flips
 *   ss_edit DIR truncate-memory   the memory file loses its second half
 *   ss_edit DIR flip-memory       one bit of the first data chunk flips
 *   ss_edit DIR tsc-khz FACTOR    the guest's TSC ran FACTOR times faster
 *   ss_edit DIR drop-manifest     the saving never finished
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "util/util.h"

static json_t *doc;
static char path[4096];

static json_t *body(void)
{
	return json_object_get(doc, "body");
}

static int save(void)
{
	char *text = json_dumps(body(), JSON_COMPACT | JSON_SORT_KEYS);

	json_object_set_new(doc, "crc32c", json_integer(crc32c(0, text, strlen(text))));
	free(text);
	return json_dump_file(doc, path, JSON_INDENT(2)) ? 1 : 0;
}

static json_t *section(const char *tag, size_t *index)
{
	json_t *list = json_object_get(body(), "sections"), *e;
	size_t i;

	json_array_foreach(list, i, e) {
		if (strcmp(json_string_value(json_object_get(e, "tag")), tag) == 0) {
			if (index)
				*index = i;
			return e;
		}
	}
	return NULL;
}

static int flip_at(const char *dir, const char *file, off_t off)
{
	char p[4200];
	unsigned char b;
	int fd;

	snprintf(p, sizeof(p), "%s/%s", dir, file);
	fd = open(p, O_RDWR);
	if (fd < 0 || pread(fd, &b, 1, off) != 1)
		return 1;
	b ^= 0x04;
	if (pwrite(fd, &b, 1, off) != 1)
		return 1;
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 2 ? argv[1] : NULL, *what = argc > 2 ? argv[2] : "";
	json_t *cpuid, *e;
	size_t i;

	if (!dir) {
		fprintf(stderr, "usage: ss_edit DIR EDIT [ARG]\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	if (strcmp(what, "drop-manifest") == 0)
		return unlink(path) ? 1 : 0;
	doc = json_load_file(path, 0, NULL);
	if (!doc)
		return 1;
	if (strcmp(what, "cpu-feature") == 0) {
		/* Leaf 7 ebx bit 16 (avx512f) on a host that has none: every entry. */
		cpuid = json_object_get(json_object_get(body(), "host"), "cpuid");
		json_array_foreach(cpuid, i, e) {
			if (json_integer_value(json_array_get(e, 0)) == 7 &&
			    json_integer_value(json_array_get(e, 1)) == 0)
				json_array_set_new(e, 4, json_integer(json_integer_value(
					json_array_get(e, 4)) | (1 << 16) | (1 << 30)));
		}
		return save();
	}
	if (strcmp(what, "memory-size") == 0) {
		json_t *cfg = json_object_get(body(), "config");

		json_object_set_new(cfg, "memory",
				    json_integer(json_integer_value(json_object_get(cfg, "memory")) * 2));
		return save();
	}
	if (strcmp(what, "tsc-khz") == 0 && argc == 4) {
		json_t *host = json_object_get(body(), "host");

		json_object_set_new(host, "tsc_khz",
				    json_integer(json_integer_value(json_object_get(host, "tsc_khz")) *
						 atoi(argv[3])));
		return save();
	}
	if (strcmp(what, "drop-disk") == 0) {
		json_array_clear(json_object_get(json_object_get(body(), "config"), "disks"));
		return save();
	}
	if (strcmp(what, "drop-section") == 0 && argc == 4) {
		if (!section(argv[3], &i))
			return 1;
		json_array_remove(json_object_get(body(), "sections"), i);
		return save();
	}
	if (strcmp(what, "format") == 0 && argc == 4) {
		json_object_set_new(body(), "format", json_integer(atoi(argv[3])));
		return save();
	}
	if (strcmp(what, "flip") == 0 && argc == 4) {
		e = section(argv[3], NULL);
		if (!e)
			return 1;
		/* Past the 64-byte header, into the first record's bytes. */
		return flip_at(dir, "sections",
			       (off_t)json_integer_value(json_object_get(e, "offset")) + 64 + 9);
	}
	if (strcmp(what, "truncate-memory") == 0) {
		char p[4200];
		struct stat st;

		snprintf(p, sizeof(p), "%s/memory", dir);
		return stat(p, &st) || truncate(p, st.st_size / 2) ? 1 : 0;
	}
	if (strcmp(what, "flip-memory") == 0) {
		char p[4200];
		int fd;
		off_t data;

		snprintf(p, sizeof(p), "%s/memory", dir);
		fd = open(p, O_RDONLY);
		data = fd < 0 ? -1 : lseek(fd, 0, SEEK_DATA);
		if (fd >= 0)
			close(fd);
		return data < 0 ? 1 : flip_at(dir, "memory", data + 100);
	}
	fprintf(stderr, "ss_edit: unknown edit '%s'\n", what);
	return 2;
}
