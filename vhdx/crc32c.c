// SPDX-License-Identifier: MIT
/*
 * VHDX checksums: CRC-32C (util/crc32c.c) over a structure whose own
 * checksum field counts as zero.
 */
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"
#include "vhdx/format.h"

uint32_t vhdx_checksum(const uint8_t *buf, size_t len, size_t csum_off)
{
	static const uint8_t zero[4];
	uint32_t crc;

	crc = crc32c(0, buf, csum_off);
	crc = crc32c(crc, zero, 4);
	return crc32c(crc, buf + csum_off + 4, len - csum_off - 4);
}
