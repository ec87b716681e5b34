// SPDX-License-Identifier: MIT
/*
 * Reading a saved state.  Nothing in it is trusted: the manifest, every
 * offset, length, tag, record and checksum is checked when it is opened,
 * before anyone acts on it, and the first problem is named.  Sections
 * are small and read whole; memory stays in its file and is checked
 * chunk by chunk as the restore loads it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint/internal.h"

struct record {
	uint32_t id;
	uint32_t len;
	const uint8_t *data;
};

struct ss_rsection {
	struct ss_reader *r;
	char tag[SS_TAG_MAX];
	uint32_t version;
	uint8_t *payload;
	uint64_t length;
	struct record *rec;
	size_t nrec;
};

struct ss_reader {
	json_t *manifest;		/* the body */
	struct ss_host host;
	uint32_t format;
	struct ss_rsection *sect;
	size_t nsect;
	int mem_fd;
	uint64_t mem_size;
	const uint8_t *bitmap;		/* into the memory section */
	const uint8_t *crcs;
	char error[256];
};

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* The manifest: its checksum, then its body. */
static int load_manifest(struct ss_reader *r, int dirfd, char *err, size_t errlen)
{
	json_error_t je;
	json_t *doc, *body;
	uint32_t crc;
	struct stat st;
	int fd = openat(dirfd, MANIFEST_FILE, O_RDONLY | O_CLOEXEC);
	json_int_t want;
	char *text;
	int n;

	if (fd < 0) {
		snprintf(err, errlen, "no %s: not a saved state (or one whose saving never finished)",
			 MANIFEST_FILE);
		return -ENOENT;
	}
	if (fstat(fd, &st) < 0 || st.st_size > MANIFEST_MAX) {
		close(fd);
		return fail(err, errlen, "%s is larger than %u bytes", MANIFEST_FILE, MANIFEST_MAX);
	}
	/* In one read: json_loadfd() reads a byte a syscall. */
	text = malloc((size_t)st.st_size + 1);
	n = text ? pread_full(fd, text, (size_t)st.st_size, 0) : -ENOMEM;
	close(fd);
	if (n) {
		free(text);
		return fail(err, errlen, "%s cannot be read: %s", MANIFEST_FILE, strerror(-n));
	}
	doc = json_loadb(text, (size_t)st.st_size, JSON_REJECT_DUPLICATES, &je);
	free(text);
	if (!doc)
		return fail(err, errlen, "%s is not JSON (line %d: %s)", MANIFEST_FILE, je.line,
			    je.text);
	body = json_object_get(doc, "body");
	want = json_integer_value(json_object_get(doc, "crc32c"));
	if (!json_is_object(body) || !json_is_integer(json_object_get(doc, "crc32c"))) {
		json_decref(doc);
		return fail(err, errlen, "%s has no body and checksum", MANIFEST_FILE);
	}
	if (body_crc(body, &crc) || (json_int_t)crc != want) {
		json_decref(doc);
		return fail(err, errlen, "%s is damaged: its checksum does not match", MANIFEST_FILE);
	}
	r->manifest = json_incref(body);
	json_decref(doc);
	return 0;
}

static int json_u64(json_t *v, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

/* Records of a section's payload, each inside it. */
static int index_records(struct ss_rsection *s, char *err, size_t errlen)
{
	size_t cap = 0;
	uint64_t off = 0;

	while (off < s->length) {
		uint32_t id, len;

		if (s->length - off < 8)
			return fail(err, errlen, "section %s: a record header runs past its end", s->tag);
		id = get_le32(s->payload + off);
		len = get_le32(s->payload + off + 4);
		if (len > SS_RECORD_MAX || align8(len) > s->length - off - 8)
			return fail(err, errlen, "section %s: record %u of %u bytes runs past its end",
				    s->tag, id, len);
		if (s->nrec == cap) {
			cap = cap ? cap * 2 : 16;
			void *p = realloc(s->rec, cap * sizeof(*s->rec));

			if (!p)
				return -ENOMEM;
			s->rec = p;
		}
		for (size_t i = 0; i < s->nrec; i++)
			if (s->rec[i].id == id)
				return fail(err, errlen, "section %s: record %u appears twice", s->tag, id);
		s->rec[s->nrec++] = (struct record){ id, len, s->payload + off + 8 };
		off += 8 + align8(len);
	}
	return 0;
}

/* One section: the manifest's entry against the header in the file. */
static int load_section(struct ss_reader *r, int fd, uint64_t file_size, json_t *e,
			struct ss_rsection *s, char *err, size_t errlen)
{
	const char *tag = json_string_value(json_object_get(e, "tag"));
	uint64_t version, offset, length, crc;
	uint8_t head[SECT_HEADER];
	char htag[SS_TAG_MAX + 1] = "";

	if (!tag || !tag_valid(tag) || json_u64(json_object_get(e, "version"), &version) ||
	    json_u64(json_object_get(e, "offset"), &offset) ||
	    json_u64(json_object_get(e, "length"), &length) ||
	    json_u64(json_object_get(e, "crc32c"), &crc) || version > 0xFFFFFFFFu ||
	    crc > 0xFFFFFFFFu)
		return fail(err, errlen, "a section entry of the manifest is malformed");
	snprintf(s->tag, sizeof(s->tag), "%s", tag);
	s->version = (uint32_t)version;
	s->r = r;
	if (length > SS_SECTION_MAX || length % 8 || offset % 8 || offset > file_size ||
	    file_size - offset < SECT_HEADER + length)
		return fail(err, errlen, "section %s: %llu bytes at %llu lie outside the sections file (%llu bytes)",
			    tag, (unsigned long long)length, (unsigned long long)offset,
			    (unsigned long long)file_size);
	if (pread_full(fd, head, sizeof(head), offset))
		return fail(err, errlen, "section %s: cannot read its header", tag);
	memcpy(htag, head + 8, SS_TAG_MAX);
	if (memcmp(head, SECT_MAGIC, 8) || get_le32(head + 60) != crc32c(0, head, 60))
		return fail(err, errlen, "section %s: its header is damaged", tag);
	if (strcmp(htag, tag) || get_le32(head + 40) != version || get_le64(head + 48) != length ||
	    get_le32(head + 56) != crc)
		return fail(err, errlen, "section %s: the header in the file (%s) disagrees with the manifest",
			    tag, htag);
	s->length = length;
	s->payload = malloc(length ? length : 1);
	if (!s->payload)
		return -ENOMEM;
	if (pread_full(fd, s->payload, length, offset + SECT_HEADER))
		return fail(err, errlen, "section %s: cannot read it", tag);
	if (crc32c(0, s->payload, length) != crc)
		return fail(err, errlen, "section %s is damaged: its checksum does not match", tag);
	return index_records(s, err, errlen);
}

static int load_sections(struct ss_reader *r, int dirfd, char *err, size_t errlen)
{
	json_t *list = json_object_get(r->manifest, "sections"), *e;
	uint64_t end = 0;
	struct stat st;
	size_t i;
	int fd, ret = 0;

	if (!json_is_array(list) || json_array_size(list) > 4096)
		return fail(err, errlen, "the manifest lists no sections");
	fd = openat(dirfd, SECTIONS_FILE, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return fail(err, errlen, "the sections file is missing: %s", strerror(errno));
	}
	r->sect = calloc(json_array_size(list) + 1, sizeof(*r->sect));
	if (!r->sect) {
		close(fd);
		return -ENOMEM;
	}
	json_array_foreach(list, i, e) {
		struct ss_rsection *s = &r->sect[i];

		ret = load_section(r, fd, (uint64_t)st.st_size, e, s, err, errlen);
		r->nsect = i + 1;
		if (ret)
			break;
		/* In order and apart: one section cannot be read as another. */
		if (json_integer_value(json_object_get(e, "offset")) < (json_int_t)end) {
			ret = fail(err, errlen, "section %s overlaps the one before it", s->tag);
			break;
		}
		end = (uint64_t)json_integer_value(json_object_get(e, "offset")) + SECT_HEADER +
		      s->length;
		for (size_t k = 0; k < i; k++)
			if (strcmp(r->sect[k].tag, s->tag) == 0)
				ret = fail(err, errlen, "section %s appears twice", s->tag);
		if (ret)
			break;
	}
	close(fd);
	return ret;
}

/* The memory section against the memory file. */
static int load_memory(struct ss_reader *r, int dirfd, char *err, size_t errlen)
{
	json_t *m = json_object_get(r->manifest, "memory");
	uint64_t size, nchunks, chunk64;
	struct ss_rsection *s;
	uint32_t chunk, version;
	const void *p;
	size_t len;
	struct stat st;

	if (!json_is_object(m) || json_u64(json_object_get(m, "size"), &size) ||
	    json_u64(json_object_get(m, "chunk"), &chunk64))
		return fail(err, errlen, "the manifest does not describe the memory");
	s = ss_section(r, MEM_TAG, &version);
	if (!s)
		return fail(err, errlen, "section %s is missing", MEM_TAG);
	if (version != MEM_VERSION)
		return fail(err, errlen, "section %s has version %u; this fsvisor reads %u",
			    MEM_TAG, version, MEM_VERSION);
	if (ss_get_u64(s, MEM_REC_SIZE, &r->mem_size) || ss_get_u32(s, MEM_REC_CHUNK, &chunk))
		return fail(err, errlen, "section %s: %s", MEM_TAG, r->error);
	if (r->mem_size != size || chunk != chunk64 || chunk != SS_CHUNK || !size ||
	    size % SS_CHUNK || size > SS_MEMORY_MAX)
		return fail(err, errlen, "the memory is %llu bytes in chunks of %u, which the manifest (%llu in %llu) or this fsvisor (%u) does not agree with",
			    (unsigned long long)r->mem_size, chunk, (unsigned long long)size,
			    (unsigned long long)chunk64, SS_CHUNK);
	nchunks = size / SS_CHUNK;
	if (ss_get_var(s, MEM_REC_BITMAP, &p, &len) || len != (nchunks + 7) / 8)
		return fail(err, errlen, "section %s: the chunk bitmap is missing or of the wrong size",
			    MEM_TAG);
	r->bitmap = p;
	if (ss_get_var(s, MEM_REC_CRCS, &p, &len) || len != nchunks * 4)
		return fail(err, errlen, "section %s: the chunk checksums are missing or of the wrong size",
			    MEM_TAG);
	r->crcs = p;
	r->mem_fd = openat(dirfd, MEMORY_FILE, O_RDONLY | O_CLOEXEC);
	if (r->mem_fd < 0 || fstat(r->mem_fd, &st) < 0)
		return fail(err, errlen, "the memory file is missing: %s", strerror(errno));
	if ((uint64_t)st.st_size != size)
		return fail(err, errlen, "the memory file is %llu bytes; the guest had %llu (truncated?)",
			    (unsigned long long)st.st_size, (unsigned long long)size);
	return 0;
}

int ss_open(const char *dir, struct ss_reader **out, char *err, size_t errlen)
{
	struct ss_reader *r = calloc(1, sizeof(*r));
	json_int_t format;
	int dirfd, ret;

	if (!r)
		return -ENOMEM;
	r->mem_fd = -1;
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		ret = errno == ENOENT ? -ENOENT : -EINVAL;
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		free(r);
		return ret;
	}
	ret = load_manifest(r, dirfd, err, errlen);
	if (!ret) {
		format = json_integer_value(json_object_get(r->manifest, "format"));
		if (!json_is_integer(json_object_get(r->manifest, "format")) ||
		    format < SS_FORMAT_OLDEST || format > SS_FORMAT)
			ret = fail(err, errlen,
				   "format version %lld: this fsvisor reads versions %d to %d",
				   (long long)format, SS_FORMAT_OLDEST, SS_FORMAT);
		r->format = (uint32_t)format;
	}
	if (!ret && (!json_is_object(json_object_get(r->manifest, "config")) ||
		     !json_is_string(json_object_get(r->manifest, "created")) ||
		     !json_is_string(json_object_get(r->manifest, "fsvisor"))))
		ret = fail(err, errlen, "the manifest lacks the configuration, its time or its version");
	if (!ret)
		ret = host_from_json(json_object_get(r->manifest, "host"), &r->host, err, errlen);
	if (!ret)
		ret = load_sections(r, dirfd, err, errlen);
	if (!ret)
		ret = load_memory(r, dirfd, err, errlen);
	close(dirfd);
	if (ret) {
		ss_reader_free(r);
		return ret;
	}
	*out = r;
	return 0;
}

void ss_reader_free(struct ss_reader *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nsect; i++) {
		free(r->sect[i].payload);
		free(r->sect[i].rec);
	}
	free(r->sect);
	if (r->mem_fd >= 0)
		close(r->mem_fd);
	json_decref(r->manifest);
	free(r);
}

uint32_t ss_format(const struct ss_reader *r)
{
	return r->format;
}

const json_t *ss_config(const struct ss_reader *r)
{
	return json_object_get(r->manifest, "config");
}

const struct ss_host *ss_host(const struct ss_reader *r)
{
	return &r->host;
}

const char *ss_created(const struct ss_reader *r)
{
	return json_string_value(json_object_get(r->manifest, "created"));
}

const char *ss_fsvisor_version(const struct ss_reader *r)
{
	return json_string_value(json_object_get(r->manifest, "fsvisor"));
}

const char *ss_reader_error(const struct ss_reader *r)
{
	return r->error;
}

struct ss_rsection *ss_section(struct ss_reader *r, const char *tag, uint32_t *version)
{
	for (size_t i = 0; i < r->nsect; i++) {
		if (strcmp(r->sect[i].tag, tag) == 0) {
			if (version)
				*version = r->sect[i].version;
			return &r->sect[i];
		}
	}
	return NULL;
}

size_t ss_section_count(const struct ss_reader *r)
{
	return r->nsect;
}

const char *ss_section_tag(const struct ss_reader *r, size_t i)
{
	return i < r->nsect ? r->sect[i].tag : NULL;
}

static const struct record *find_record(struct ss_rsection *s, uint32_t id)
{
	for (size_t i = 0; i < s->nrec; i++)
		if (s->rec[i].id == id)
			return &s->rec[i];
	return NULL;
}

bool ss_has(struct ss_rsection *s, uint32_t id)
{
	return find_record(s, id) != NULL;
}

int ss_get_var(struct ss_rsection *s, uint32_t id, const void **data, size_t *len)
{
	const struct record *rec = find_record(s, id);

	if (!rec) {
		snprintf(s->r->error, sizeof(s->r->error), "section %s lacks record %u", s->tag, id);
		return -EINVAL;
	}
	*data = rec->data;
	*len = rec->len;
	return 0;
}

int ss_get(struct ss_rsection *s, uint32_t id, void *out, size_t len)
{
	const void *data;
	size_t have;

	if (ss_get_var(s, id, &data, &have))
		return -EINVAL;
	if (have != len) {
		snprintf(s->r->error, sizeof(s->r->error),
			 "section %s: record %u is %zu bytes, not %zu", s->tag, id, have, len);
		return -EINVAL;
	}
	memcpy(out, data, len);
	return 0;
}

int ss_get_u8(struct ss_rsection *s, uint32_t id, uint8_t *v)
{
	return ss_get(s, id, v, 1);
}

int ss_get_u16(struct ss_rsection *s, uint32_t id, uint16_t *v)
{
	uint8_t b[2];

	if (ss_get(s, id, b, 2))
		return -EINVAL;
	*v = (uint16_t)(b[0] | b[1] << 8);
	return 0;
}

int ss_get_u32(struct ss_rsection *s, uint32_t id, uint32_t *v)
{
	uint8_t b[4];

	if (ss_get(s, id, b, 4))
		return -EINVAL;
	*v = get_le32(b);
	return 0;
}

int ss_get_u64(struct ss_rsection *s, uint32_t id, uint64_t *v)
{
	uint8_t b[8];

	if (ss_get(s, id, b, 8))
		return -EINVAL;
	*v = get_le64(b);
	return 0;
}

uint64_t ss_memory_size(const struct ss_reader *r)
{
	return r->mem_size;
}

int ss_memory_fd(const struct ss_reader *r)
{
	return r->mem_fd;
}

bool ss_memory_chunk_zero(const struct ss_reader *r, uint64_t i)
{
	return !(r->bitmap[i / 8] & (1u << (i % 8)));
}

bool ss_memory_chunk_ok(const struct ss_reader *r, uint64_t i, const void *data)
{
	return crc32c(0, data, SS_CHUNK) == get_le32(r->crcs + 4 * i);
}

json_t *ss_describe(const struct ss_reader *r)
{
	json_t *d = json_deep_copy(r->manifest);

	json_object_set_new(d, "valid", json_true());
	return d;
}
