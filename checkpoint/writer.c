// SPDX-License-Identifier: MIT
/*
 * Writing a saved state: sections as they come, guest RAM with its holes
 * and chunk checksums, and the manifest last.  Until ss_commit() has
 * renamed the manifest into place the directory is not a saved state,
 * and ss_writer_free() removes it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/internal.h"
#include "fsvisor_config.h"
#include "util/util.h"

struct index_entry {
	char tag[SS_TAG_MAX];
	uint32_t version;
	uint64_t offset, length;
	uint32_t crc;
};

struct ss_section {
	struct ss_writer *w;
	char tag[SS_TAG_MAX];
	uint32_t version;
	uint8_t *buf;
	size_t len, cap;
	bool failed;
};

struct ss_writer {
	char *dir;
	int dirfd;
	int sect_fd;
	int mem_fd;
	uint64_t sect_off;
	struct index_entry *index;
	size_t nindex, index_cap;
	uint64_t mem_size;
	bool have_memory;
	bool committed;
	char error[256];
};

static int fail(struct ss_writer *w, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->error, sizeof(w->error), fmt, ap);
	va_end(ap);
	return err;
}

const char *ss_writer_error(const struct ss_writer *w)
{
	return w->error;
}

int ss_create(const char *dir, struct ss_writer **out, char *err, size_t errlen)
{
	struct ss_writer *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->sect_fd = w->mem_fd = w->dirfd = -1;
	w->dir = strdup(dir);
	if (!w->dir || mkdir(dir, 0700) < 0) {
		int ret = w->dir ? -errno : -ENOMEM;

		snprintf(err, errlen, "%s: %s", dir, strerror(-ret));
		free(w->dir);
		free(w);
		return ret;
	}
	w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (w->dirfd >= 0)
		w->sect_fd = openat(w->dirfd, SECTIONS_FILE,
				    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (w->sect_fd < 0) {
		snprintf(err, errlen, "%s/%s: %s", dir, SECTIONS_FILE, strerror(errno));
		ss_writer_free(w);
		return -errno;
	}
	*out = w;
	return 0;
}

/* ---- sections ------------------------------------------------------------ */

struct ss_section *ss_section_begin(struct ss_writer *w, const char *tag,
				    uint32_t version)
{
	struct ss_section *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->w = w;
	snprintf(s->tag, sizeof(s->tag), "%s", tag);
	s->version = version;
	s->failed = !tag_valid(tag);
	return s;
}

static bool grow(struct ss_section *s, size_t more)
{
	size_t cap = s->cap ? s->cap : 4096;

	if (s->len + more <= s->cap)
		return true;
	if (s->len + more > SS_SECTION_MAX)
		return false;
	while (cap < s->len + more)
		cap *= 2;
	uint8_t *p = realloc(s->buf, cap);

	if (!p)
		return false;
	s->buf = p;
	s->cap = cap;
	return true;
}

void ss_put(struct ss_section *s, uint32_t id, const void *data, size_t len)
{
	size_t need = 8 + (size_t)align8(len);

	if (!s || s->failed)
		return;
	if (len > SS_RECORD_MAX || !grow(s, need)) {
		s->failed = true;
		return;
	}
	put_le32(s->buf + s->len, id);
	put_le32(s->buf + s->len + 4, (uint32_t)len);
	if (len)
		memcpy(s->buf + s->len + 8, data, len);
	memset(s->buf + s->len + 8 + len, 0, need - 8 - len);
	s->len += need;
}

void ss_put_u8(struct ss_section *s, uint32_t id, uint8_t v)
{
	ss_put(s, id, &v, 1);
}

void ss_put_u16(struct ss_section *s, uint32_t id, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

	ss_put(s, id, b, 2);
}

void ss_put_u32(struct ss_section *s, uint32_t id, uint32_t v)
{
	uint8_t b[4];

	put_le32(b, v);
	ss_put(s, id, b, 4);
}

void ss_put_u64(struct ss_section *s, uint32_t id, uint64_t v)
{
	uint8_t b[8];

	put_le64(b, v);
	ss_put(s, id, b, 8);
}

int ss_section_end(struct ss_section *s)
{
	struct ss_writer *w = s->w;
	uint8_t head[SECT_HEADER] = { 0 };
	struct index_entry *e;
	int ret;

	if (s->failed) {
		ret = fail(w, -ENOMEM, "section %s: too large, or a bad tag", s->tag);
		goto out;
	}
	if (w->nindex == w->index_cap) {
		size_t cap = w->index_cap ? w->index_cap * 2 : 32;
		void *p = realloc(w->index, cap * sizeof(*w->index));

		if (!p) {
			ret = -ENOMEM;
			goto out;
		}
		w->index = p;
		w->index_cap = cap;
	}
	e = &w->index[w->nindex];
	memcpy(head, SECT_MAGIC, 8);
	memcpy(head + 8, s->tag, strlen(s->tag));
	put_le32(head + 40, s->version);
	put_le64(head + 48, s->len);
	put_le32(head + 56, crc32c(0, s->buf, s->len));
	put_le32(head + 60, crc32c(0, head, 60));
	ret = pwrite_full(w->sect_fd, head, sizeof(head), w->sect_off);
	if (!ret && s->len)
		ret = pwrite_full(w->sect_fd, s->buf, s->len, w->sect_off + SECT_HEADER);
	if (ret) {
		fail(w, ret, "writing section %s: %s", s->tag, strerror(-ret));
		goto out;
	}
	snprintf(e->tag, sizeof(e->tag), "%s", s->tag);
	e->version = s->version;
	e->offset = w->sect_off;
	e->length = s->len;
	e->crc = get_le32(head + 56);
	w->nindex++;
	w->sect_off += SECT_HEADER + s->len;	/* payloads are 8-byte multiples */
out:
	free(s->buf);
	free(s);
	return ret;
}

/* ---- memory --------------------------------------------------------------- */

static bool all_zero(const uint8_t *p, size_t len)
{
	const uint64_t *w = (const uint64_t *)p;

	/* Words, eight at a time: pages are mostly all zero or soon not. */
	for (size_t i = 0; i < len / 8; i += 8)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] |
		    w[i + 6] | w[i + 7])
			return false;
	return true;
}

/* Data runs are written in pieces of this size at most. */
#define RUN_MAX (4u << 20)

struct mem_pass {
	struct ss_writer *w;
	const uint8_t *mem;
	uint8_t *bitmap, *crcs;
	uint64_t run_start, run_len;
};

static int flush_run(struct mem_pass *p)
{
	int ret = 0;

	if (p->run_len)
		ret = pwrite_full(p->w->mem_fd, p->mem + p->run_start, p->run_len, p->run_start);
	/* Start writing it back now: the disk works while the next run is read. */
	if (p->run_len && !ret)
		sync_file_range(p->w->mem_fd, (off_t)p->run_start, (off_t)p->run_len,
				SYNC_FILE_RANGE_WRITE);
	p->run_len = 0;
	return ret;
}

/* Chunks [@from, @to): zero ones stay holes, the others are written. */
static int save_extent(struct mem_pass *p, uint64_t from, uint64_t to)
{
	for (uint64_t off = from; off < to; off += SS_CHUNK) {
		uint64_t c = off / SS_CHUNK;
		int ret = 0;

		if (all_zero(p->mem + off, SS_CHUNK)) {
			ret = flush_run(p);
		} else {
			p->bitmap[c / 8] |= (uint8_t)(1u << (c % 8));
			put_le32(p->crcs + 4 * c, crc32c(0, p->mem + off, SS_CHUNK));
			if (!p->run_len)
				p->run_start = off;
			p->run_len += SS_CHUNK;
			if (p->run_len >= RUN_MAX)
				ret = flush_run(p);
		}
		if (ret)
			return ret;
	}
	return flush_run(p);
}

int ss_write_memory(struct ss_writer *w, const void *base, uint64_t size, int fd)
{
	uint64_t nchunks = size / SS_CHUNK, off = 0;
	size_t maplen = (size_t)((nchunks + 7) / 8);
	struct mem_pass p = { .w = w, .mem = base };
	struct ss_section *s;
	int ret = 0;

	if (size % SS_CHUNK || size > SS_MEMORY_MAX || !size)
		return fail(w, -EINVAL, "memory of %llu bytes is not whole 64 KiB chunks",
			    (unsigned long long)size);
	p.bitmap = calloc(1, maplen);
	p.crcs = calloc(nchunks, 4);
	if (!p.bitmap || !p.crcs)
		ret = -ENOMEM;
	if (!ret) {
		w->mem_fd = openat(w->dirfd, MEMORY_FILE, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
				   0600);
		if (w->mem_fd < 0 || ftruncate(w->mem_fd, (off_t)size) < 0)
			ret = fail(w, -errno, "%s/%s: %s", w->dir, MEMORY_FILE, strerror(errno));
	}
	/*
	 * The memfd's holes are pages the guest never wrote: skip them
	 * without reading, extent by extent.
	 */
	while (!ret && off < size) {
		uint64_t from = off, to = size;

		if (fd >= 0) {
			off_t d = lseek(fd, (off_t)off, SEEK_DATA), h;

			if (d < 0)
				break;		/* ENXIO: nothing but holes from here */
			from = (uint64_t)d & ~(uint64_t)(SS_CHUNK - 1);
			h = lseek(fd, d, SEEK_HOLE);
			to = h < 0 ? size : ((uint64_t)h + SS_CHUNK - 1) & ~(uint64_t)(SS_CHUNK - 1);
			if (to > size)
				to = size;
			if (to <= from)
				to = from + SS_CHUNK;
		}
		ret = save_extent(&p, from, to);
		off = to;
	}
	if (ret && !w->error[0])
		fail(w, ret, "writing the memory: %s", strerror(-ret));
	if (!ret) {
		s = ss_section_begin(w, MEM_TAG, MEM_VERSION);
		ss_put_u64(s, MEM_REC_SIZE, size);
		ss_put_u32(s, MEM_REC_CHUNK, SS_CHUNK);
		ss_put(s, MEM_REC_BITMAP, p.bitmap, maplen);
		ss_put(s, MEM_REC_CRCS, p.crcs, (size_t)nchunks * 4);
		ret = s ? ss_section_end(s) : -ENOMEM;
	}
	free(p.bitmap);
	free(p.crcs);
	if (!ret) {
		w->mem_size = size;
		w->have_memory = true;
	}
	return ret;
}

/* ---- the manifest ------------------------------------------------------------ */

static void iso_now(char *buf, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int ss_commit(struct ss_writer *w, const json_t *config, const struct ss_host *host,
	      char *err, size_t errlen)
{
	json_t *sections = json_array(), *body, *doc;
	char created[32], path[4096];
	uint32_t crc;
	int ret;

	if (!w->have_memory) {
		snprintf(err, errlen, "a saved state needs its memory");
		json_decref(sections);
		return -EINVAL;
	}
	/* Everything the manifest names is on the disk before the manifest. */
	if (fdatasync(w->sect_fd) < 0 || fdatasync(w->mem_fd) < 0) {
		ret = -errno;
		snprintf(err, errlen, "flushing the saved state: %s", strerror(errno));
		json_decref(sections);
		return ret;
	}
	for (size_t i = 0; i < w->nindex; i++)
		json_array_append_new(sections, json_pack("{s:s, s:I, s:I, s:I, s:I}",
			"tag", w->index[i].tag, "version", (json_int_t)w->index[i].version,
			"offset", (json_int_t)w->index[i].offset,
			"length", (json_int_t)w->index[i].length,
			"crc32c", (json_int_t)w->index[i].crc));
	iso_now(created, sizeof(created));
	body = json_pack("{s:i, s:s, s:s, s:o, s:O, s:{s:s, s:I, s:i}, s:o}",
			 "format", SS_FORMAT, "fsvisor", FSVISOR_VERSION, "created", created,
			 "host", host_to_json(host), "config", config,
			 "memory", "file", MEMORY_FILE, "size", (json_int_t)w->mem_size,
			 "chunk", SS_CHUNK, "sections", sections);
	if (!body || body_crc(body, &crc)) {
		json_decref(body);
		snprintf(err, errlen, "cannot build the manifest");
		return -ENOMEM;
	}
	doc = json_pack("{s:o, s:I}", "body", body, "crc32c", (json_int_t)crc);
	snprintf(path, sizeof(path), "%s/%s", w->dir, MANIFEST_FILE);
	ret = json_file_save(path, doc);	/* temp, fsync, rename, fsync dir */
	json_decref(doc);
	if (ret) {
		snprintf(err, errlen, "writing %s: %s", path, strerror(-ret));
		return ret;
	}
	w->committed = true;
	return 0;
}

/* A saved state that never got its manifest is removed whole. */
static void remove_dir(struct ss_writer *w)
{
	DIR *d;
	struct dirent *e;
	int fd = dup(w->dirfd);

	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(w->dirfd, e->d_name, 0);
	closedir(d);
	rmdir(w->dir);
}

void ss_writer_free(struct ss_writer *w)
{
	if (!w)
		return;
	if (w->sect_fd >= 0)
		close(w->sect_fd);
	if (w->mem_fd >= 0)
		close(w->mem_fd);
	if (!w->committed && w->dirfd >= 0)
		remove_dir(w);
	if (w->dirfd >= 0)
		close(w->dirfd);
	free(w->index);
	free(w->dir);
	free(w);
}

