/* SPDX-License-Identifier: MIT */
/*
 * xorshift64 (Marsaglia): the property tests' repeatable random numbers.
 * Each test file keeps its own state, so its sequence depends only on
 * its seed.
 */
#ifndef FSVISOR_TESTS_XORSHIFT_H
#define FSVISOR_TESTS_XORSHIFT_H

#include <stdint.h>

static inline uint64_t xorshift64(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*state = x;
	return x;
}

#endif /* FSVISOR_TESTS_XORSHIFT_H */
