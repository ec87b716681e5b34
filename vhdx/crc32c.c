// SPDX-License-Identifier: MIT
/*
 * CRC-32C (Castagnoli), as used by every VHDX checksum.  The SSE4.2 crc32
 * instruction does it in hardware on the host; a table is the fallback.
 */
#include <cpuid.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "vhdx/format.h"

#define CRC32C_POLY_REFLECTED 0x82F63B78u

static uint32_t table[256];
static bool have_sse42;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void crc32c_init(void)
{
	unsigned int eax, ebx, ecx, edx;

	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ CRC32C_POLY_REFLECTED : c >> 1;
		table[i] = c;
	}
	if (__get_cpuid(1, &eax, &ebx, &ecx, &edx))
		have_sse42 = (ecx & bit_SSE4_2) != 0;
}

static uint32_t crc32c_table(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = crc;

	while (len >= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		len -= 8;
	}
	crc = (uint32_t)c;
	while (len--)
		crc = __builtin_ia32_crc32qi(crc, *p++);
	return crc;
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&init_once, crc32c_init);
	crc = ~crc;
	if (have_sse42)
		crc = crc32c_hw(crc, buf, len);
	else
		crc = crc32c_table(crc, buf, len);
	return ~crc;
}

uint32_t vhdx_checksum(const uint8_t *buf, size_t len, size_t csum_off)
{
	static const uint8_t zero[4];
	uint32_t crc;

	crc = crc32c(0, buf, csum_off);
	crc = crc32c(crc, zero, 4);
	return crc32c(crc, buf + csum_off + 4, len - csum_off - 4);
}
