/* SPDX-License-Identifier: MIT */
/*
 * The VHDX on-disk format (MS-VHDX), private to vhdx/.
 *
 * All fields are little-endian.  Structures are read into and written from
 * byte buffers with the get/put helpers below rather than cast, so that a
 * hostile file can never cause an unaligned or out-of-bounds access.
 */
#ifndef FSVISOR_VHDX_FORMAT_H
#define FSVISOR_VHDX_FORMAT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "util/util.h"	/* crc32c() */

#define KiB (1024ULL)
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)
#define TiB (1024ULL * GiB)

/* Header section: file identifier, two headers, two region tables. */
#define VHDX_FILE_ID_OFFSET	0
#define VHDX_HEADER1_OFFSET	(64 * KiB)
#define VHDX_HEADER2_OFFSET	(128 * KiB)
#define VHDX_REGION1_OFFSET	(192 * KiB)
#define VHDX_REGION2_OFFSET	(256 * KiB)
#define VHDX_HEADER_SECTION	(1 * MiB)
#define VHDX_ALIGN		(1 * MiB)

#define VHDX_HEADER_SIZE	(4 * KiB)	/* checksummed part of a header */
#define VHDX_REGION_SIZE	(64 * KiB)
#define VHDX_METADATA_TABLE	(64 * KiB)
#define VHDX_SECTOR		(4 * KiB)	/* log and metadata sector */

#define VHDX_MAX_REGIONS	2047
#define VHDX_MAX_METADATA	2047
#define VHDX_MAX_DISK_SIZE	(64 * TiB)
#define VHDX_MIN_BLOCK		(1 * MiB)
#define VHDX_MAX_BLOCK		(256 * MiB)
#define VHDX_METADATA_ITEM_MAX	(1 * MiB)

/* Signatures, as the bytes appear in the file. */
#define VHDX_SIG_FILE		"vhdxfile"
#define VHDX_SIG_HEAD		"head"
#define VHDX_SIG_REGI		"regi"
#define VHDX_SIG_LOGE		"loge"
#define VHDX_SIG_ZERO		"zero"
#define VHDX_SIG_DESC		"desc"
#define VHDX_SIG_DATA		"data"
#define VHDX_SIG_METADATA	"metadata"

/* Header field offsets (within the 4 KiB header). */
#define HDR_SIGNATURE		0
#define HDR_CHECKSUM		4
#define HDR_SEQUENCE		8
#define HDR_FILE_WRITE_GUID	16
#define HDR_DATA_WRITE_GUID	32
#define HDR_LOG_GUID		48
#define HDR_LOG_VERSION		64
#define HDR_VERSION		66
#define HDR_LOG_LENGTH		68
#define HDR_LOG_OFFSET		72

/* Region table: 16-byte header, then 32-byte entries. */
#define RT_HEADER_SIZE		16
#define RT_ENTRY_SIZE		32

/* Metadata table: 32-byte header, then 32-byte entries. */
#define MT_HEADER_SIZE		32
#define MT_ENTRY_SIZE		32
#define MT_FLAG_IS_USER		(1u << 0)
#define MT_FLAG_IS_VIRTUAL_DISK	(1u << 1)
#define MT_FLAG_IS_REQUIRED	(1u << 2)

/* File parameters item flags. */
#define FP_LEAVE_BLOCKS_ALLOCATED (1u << 0)
#define FP_HAS_PARENT		(1u << 1)

/* Log entry header (64 bytes) and descriptors (32 bytes). */
#define LOG_HEADER_SIZE		64
#define LOG_DESC_SIZE		32
#define LOG_DESC_FIRST_SECTOR	126	/* descriptors after the header */
#define LOG_DESC_PER_SECTOR	128	/* in later descriptor sectors */
#define LE_SIGNATURE		0
#define LE_CHECKSUM		4
#define LE_ENTRY_LENGTH		8
#define LE_TAIL			12
#define LE_SEQUENCE		16
#define LE_DESC_COUNT		24
#define LE_LOG_GUID		32
#define LE_FLUSHED_OFFSET	48
#define LE_LAST_OFFSET		56

/* BAT entries. */
#define BAT_STATE_MASK		0x7ULL
#define BAT_RESERVED_MASK	0xFFFF8ULL	/* bits 3-19 */
#define BAT_OFFSET_SHIFT	20
#define BAT_ENTRIES_PER_SECTOR	(VHDX_SECTOR / 8)

enum bat_payload_state {
	PAYLOAD_BLOCK_NOT_PRESENT = 0,
	PAYLOAD_BLOCK_UNDEFINED = 1,
	PAYLOAD_BLOCK_ZERO = 2,
	PAYLOAD_BLOCK_UNMAPPED = 3,
	PAYLOAD_BLOCK_FULLY_PRESENT = 6,
	PAYLOAD_BLOCK_PARTIALLY_PRESENT = 7,
};

enum bat_bitmap_state {
	SB_BLOCK_NOT_PRESENT = 0,
	SB_BLOCK_PRESENT = 6,
};

/* Sectors described by one sector bitmap block: 2^23. */
#define VHDX_CHUNK_SECTORS	(1ULL << 23)

/* A GUID in its on-disk (Windows, mixed-endian) byte order. */
struct guid {
	uint8_t b[16];
};

/* Known region and metadata item GUIDs, in on-disk byte order. */
extern const struct guid guid_bat_region;
extern const struct guid guid_metadata_region;
extern const struct guid guid_file_parameters;
extern const struct guid guid_virtual_disk_size;
extern const struct guid guid_virtual_disk_id;
extern const struct guid guid_logical_sector_size;
extern const struct guid guid_physical_sector_size;
extern const struct guid guid_parent_locator;
extern const struct guid guid_parent_locator_vhdx;
extern const struct guid guid_merge_record;

static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static inline void get_guid(struct guid *g, const uint8_t *p)
{
	memcpy(g->b, p, 16);
}

static inline bool guid_equal(const struct guid *a, const struct guid *b)
{
	return memcmp(a->b, b->b, 16) == 0;
}

static inline bool guid_is_zero(const struct guid *g)
{
	static const struct guid zero;

	return guid_equal(g, &zero);
}

/* guid.c */
void guid_generate(struct guid *g);
/* "8b7ca206-4790-4b9a-b8fe-575f050f886e"; @buf holds at least 37 bytes. */
void guid_format(const struct guid *g, char *buf);
/* Parse the text form, with or without braces; -EINVAL on junk. */
int guid_parse(const char *s, struct guid *g);

/* The checksum of a structure whose checksum field is at @csum_off. */
uint32_t vhdx_checksum(const uint8_t *buf, size_t len, size_t csum_off);

#endif /* FSVISOR_VHDX_FORMAT_H */
