// SPDX-License-Identifier: MIT
/*
 * Maximum bandwidth: a token bucket in bits.  The bucket holds 10 ms at
 * the configured rate, and never less than one largest frame (64 KiB), so
 * every frame can pass once the bucket is full; a frame is let through
 * only when the bucket holds all of its bits, so the long-run rate never
 * exceeds the limit.  Tokens keep a fraction of a bit (1e-9 bit units) so
 * that slow rates and small intervals do not round the rate away.
 */
#include "vswitch/internal.h"

#define NS 1000000000ULL
#define BURST_DIV 100				/* 1/100 s = 10 ms */
#define BURST_MIN ((uint64_t)VSWITCH_FRAME_MAX * 8)

typedef unsigned __int128 u128;

void ratelimit_set(struct vsw_bucket *b, uint64_t rate)
{
	uint64_t depth;

	if (rate == b->rate)
		return;
	b->rate = rate;
	if (!rate) {
		b->primed = false;
		return;
	}
	depth = rate / BURST_DIV;
	if (depth < BURST_MIN)
		depth = BURST_MIN;
	b->depth = depth;
	/* A live change keeps what was saved, up to the new depth. */
	if (b->tokens > depth) {
		b->tokens = depth;
		b->frac = 0;
	}
}

static void refill(struct vsw_bucket *b, uint64_t now_ns)
{
	u128 add, bits;

	if (!b->primed) {
		b->tokens = b->depth;
		b->frac = 0;
		b->last_ns = now_ns;
		b->primed = true;
		return;
	}
	if (now_ns <= b->last_ns)
		return;
	add = (u128)(now_ns - b->last_ns) * b->rate + b->frac;
	bits = add / NS;
	if (bits >= b->depth - b->tokens) {
		b->tokens = b->depth;
		b->frac = 0;
	} else {
		b->tokens += (uint64_t)bits;
		b->frac = (uint64_t)(add % NS);
	}
	b->last_ns = now_ns;
}

uint64_t ratelimit_take(struct vsw_bucket *b, size_t len, uint64_t now_ns)
{
	uint64_t need;
	u128 missing, wait;

	if (!b->rate)
		return 0;
	refill(b, now_ns);
	need = len > VSWITCH_FRAME_MAX ? b->depth : (uint64_t)len * 8;
	if (need > b->depth)
		need = b->depth;
	if (b->tokens >= need) {
		b->tokens -= need;
		return 0;
	}
	/* Time until the bucket holds @need bits, rounded up. */
	missing = (u128)(need - b->tokens) * NS - b->frac;
	wait = (missing + b->rate - 1) / b->rate;
	return wait > UINT64_MAX ? UINT64_MAX : (uint64_t)wait;
}
