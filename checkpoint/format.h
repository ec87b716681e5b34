/* SPDX-License-Identifier: MIT */
/*
 * The on-disk layout of a saved state, shared by the writer and the
 * reader (private to checkpoint/).
 *
 * "sections": one section after another, each 8-byte aligned:
 *   header (64 bytes, little-endian)
 *     0  magic "FSVSECT1"
 *     8  tag, NUL-padded (32 bytes)
 *    40  version (u32)
 *    44  reserved, zero (u32)
 *    48  payload length (u64)
 *    56  CRC-32C of the payload (u32)
 *    60  CRC-32C of bytes 0..59 (u32)
 *   payload: records, each 8-byte aligned:
 *     id (u32), length (u32), the bytes, zero padding to 8
 * "memory": guest RAM, the file's size is the RAM's; zero chunks are holes.
 * The "memory" section holds the RAM's size, the chunk size, and a
 * CRC-32C per chunk (0 for a zero chunk) with a bitmap of data chunks.
 */
#ifndef FSVISOR_CHECKPOINT_FORMAT_H
#define FSVISOR_CHECKPOINT_FORMAT_H

#include <stdint.h>
#include <string.h>

#define SECT_MAGIC		"FSVSECT1"
#define SECT_HEADER		64
#define SECTIONS_FILE		"sections"
#define MEMORY_FILE		"memory"
#define MANIFEST_FILE		"manifest.json"
#define MANIFEST_MAX		(4u << 20)

/* Records of the "memory" section. */
#define MEM_TAG			"memory"
#define MEM_VERSION		1
#define MEM_REC_SIZE		1	/* u64 */
#define MEM_REC_CHUNK		2	/* u32 */
#define MEM_REC_BITMAP		3	/* a bit per chunk: 1 = data */
#define MEM_REC_CRCS		4	/* u32 per chunk */

static inline void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline uint64_t align8(uint64_t v)
{
	return (v + 7) & ~7ULL;
}

/* Tags: [a-z0-9:._-]{1,31}, so they can be names in messages and files. */
static inline int tag_valid(const char *tag)
{
	size_t n = strnlen(tag, 32);

	if (!n || n > 31)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = tag[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ':' ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

#endif /* FSVISOR_CHECKPOINT_FORMAT_H */
