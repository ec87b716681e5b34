/* SPDX-License-Identifier: MIT */
/*
 * What the test guest's "blk" test writes where, shared with the host
 * side (tests/tools/vdisk_writer.c "blkexpect") so both derive the same
 * expected disk contents from one definition.
 *
 *   1. the pattern over W, crossing the 1 MiB and 2 MiB block boundaries
 *   2. discard of D, the whole second 1 MiB block
 *   3. write-zeroes of Z, across the 2 MiB boundary
 *
 * Afterwards W reads as the pattern except D and Z, which read as zeros,
 * and everything else reads as zeros.
 */
#ifndef TESTGUEST_BLK_LAYOUT_H
#define TESTGUEST_BLK_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>

#define BLK_TEST_W0	(1024u * 1024 - 128 * 1024)
#define BLK_TEST_WLEN	(1024u * 1024 + 256 * 1024)
#define BLK_TEST_D0	(1024u * 1024)
#define BLK_TEST_DLEN	(1024u * 1024)
#define BLK_TEST_Z0	(2u * 1024 * 1024 - 8192)
#define BLK_TEST_ZLEN	16384u

/*
 * The pattern's 8 bytes at @off (a multiple of 8).  Each 512-byte sector
 * starts with its own offset (so a sector in the wrong place shows) and
 * goes on with a seeded template the same in every sector (so the guest,
 * which runs under an instruction emulator here, builds it by copying).
 */
static inline uint64_t blk_test_word(uint64_t seed, uint64_t off)
{
	if ((off & 511) == 0)
		return off ^ seed;
	return ((off & 511) * 0x9e3779b97f4a7c15ULL) ^ seed;
}

static inline bool blk_test_in(uint64_t off, uint64_t start, uint64_t len)
{
	return off >= start && off < start + len;
}

/* The byte at disk offset @off once the test has run. */
static inline uint8_t blk_test_expected(uint64_t seed, uint64_t off)
{
	if (!blk_test_in(off, BLK_TEST_W0, BLK_TEST_WLEN) ||
	    blk_test_in(off, BLK_TEST_D0, BLK_TEST_DLEN) ||
	    blk_test_in(off, BLK_TEST_Z0, BLK_TEST_ZLEN))
		return 0;
	return (uint8_t)(blk_test_word(seed, off & ~7ULL) >> (8 * (off & 7)));
}

#endif
