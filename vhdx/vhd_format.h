/* SPDX-License-Identifier: MIT */
/*
 * The VHD format (Virtual Hard Disk Image Format Specification, version
 * 1.0), private to vhdx/.  Every field is big-endian, read and written
 * with the helpers below.
 */
#ifndef FSVISOR_VHD_FORMAT_H
#define FSVISOR_VHD_FORMAT_H

#include <stdint.h>

#define VHD_COOKIE		"conectix"
#define VHD_DYN_COOKIE		"cxsparse"
#define VHD_FOOTER_SIZE		512
#define VHD_HEADER_SIZE		1024
#define VHD_SECTOR		512

/* Hyper-V's limit, which the specification's 32-bit BAT allows. */
#define VHD_MAX_SIZE		(2040ULL << 30)
#define VHD_DEFAULT_BLOCK	(2U << 20)
#define VHD_MIN_BLOCK		512U
#define VHD_MAX_BLOCK		(256U << 20)
#define VHD_UNUSED		0xFFFFFFFFu

/* Footer fields. */
#define FT_COOKIE		0
#define FT_FEATURES		8
#define FT_VERSION		12
#define FT_DATA_OFFSET		16
#define FT_TIMESTAMP		24
#define FT_CREATOR_APP		28
#define FT_CREATOR_VERSION	32
#define FT_CREATOR_OS		36
#define FT_ORIGINAL_SIZE	40
#define FT_CURRENT_SIZE		48
#define FT_GEOMETRY		56	/* cylinders (2), heads, sectors/track */
#define FT_DISK_TYPE		60
#define FT_CHECKSUM		64
#define FT_UNIQUE_ID		68
#define FT_SAVED_STATE		84

#define VHD_FEATURES_RESERVED	0x2u	/* "always set" */
#define VHD_VERSION		0x00010000u

enum vhd_type {
	VHD_FIXED = 2,
	VHD_DYNAMIC = 3,
	VHD_DIFF = 4,
};

/* Dynamic disk header fields. */
#define DH_COOKIE		0
#define DH_DATA_OFFSET		8
#define DH_TABLE_OFFSET		16
#define DH_VERSION		24
#define DH_MAX_ENTRIES		28
#define DH_BLOCK_SIZE		32
#define DH_CHECKSUM		36
#define DH_PARENT_ID		40
#define DH_PARENT_TIME		56
#define DH_PARENT_NAME		64	/* 512 bytes, UTF-16 big-endian */
#define DH_PARENT_NAME_LEN	512
#define DH_LOCATORS		576	/* 8 entries of 24 bytes */
#define DH_NLOCATORS		8
#define PL_SIZE			24
#define PL_CODE			0
#define PL_SPACE		4	/* reserved bytes (Hyper-V; the spec says sectors) */
#define PL_LENGTH		8
#define PL_OFFSET		16

/* Parent locator platform codes. */
#define PL_W2RU			0x57327275u	/* "W2ru": relative, UTF-16LE */
#define PL_W2KU			0x57326B75u	/* "W2ku": absolute, UTF-16LE */
/* Longest locator we read: a path of PATH_MAX UTF-16 units. */
#define PL_MAX_LENGTH		(8U << 10)

/* Seconds from the Unix epoch to the VHD epoch, 2000-01-01 00:00 UTC. */
#define VHD_EPOCH		946684800LL

static inline uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static inline void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

/* The specification's checksum: the ones' complement of the byte sum. */
static inline uint32_t vhd_checksum(const uint8_t *buf, size_t len,
				    size_t csum_off)
{
	uint32_t sum = 0;

	for (size_t i = 0; i < len; i++)
		if (i < csum_off || i >= csum_off + 4)
			sum += buf[i];
	return ~sum;
}

#endif /* FSVISOR_VHD_FORMAT_H */
