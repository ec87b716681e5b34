// SPDX-License-Identifier: MIT
/*
 * Maximum bandwidth: the bucket's burst, the wait it asks for, the rate
 * it holds over many frames, and live changes.  Time is the caller's
 * (now_ns), so the checks are exact, not timing-dependent.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>

#include "vswitch_frames.h"

#define SEC 1000000000ULL
#define BURST_MIN_BITS (65535ULL * 8)

static struct vswitch *sw;

static void teardown(void)
{
	vswitch_destroy(sw);
}

TestSuite(ratelimit, .fini = teardown, .timeout = 60);

static uint32_t limited_port(uint64_t bps)
{
	struct vswitch_port_config c = port_untagged();

	sw = vswitch_create(NULL);
	cr_assert(sw);
	c.bandwidth_max = bps;
	return add_port(sw, &c);
}

/* Frames of @len that pass at @now before the first wait. */
static unsigned int burst(uint32_t p, size_t len, uint64_t now, uint64_t *wait)
{
	unsigned int n = 0;

	while ((*wait = vswitch_port_throttle(sw, p, len, now)) == 0)
		n++;
	return n;
}

/* Send @frames frames, sleeping as told; the rate they achieved in bits/s. */
static double sustained(uint32_t p, size_t len, unsigned int frames,
			uint64_t *now)
{
	uint64_t start = *now, w;
	unsigned int sent = 0;

	while (sent < frames) {
		w = vswitch_port_throttle(sw, p, len, *now);
		if (w) {
			*now += w;
			continue;
		}
		sent++;
	}
	return (double)frames * len * 8 / ((double)(*now - start) / SEC);
}

Test(ratelimit, burst_then_wait)
{
	uint32_t p = limited_port(10000000);	/* 10 Mbit/s */
	uint64_t wait, now = 5 * SEC;
	unsigned int n;

	/* 10 ms at 10 Mbit/s is 100 kbit; the floor is one 64 KiB frame. */
	n = burst(p, 1500, now, &wait);
	cr_assert_eq(n, BURST_MIN_BITS / 12000, "burst of %u frames", n);
	/* What is missing for the next frame, at 10 bits per microsecond. */
	uint64_t left = BURST_MIN_BITS - n * 12000ULL;

	cr_assert_eq(wait, (12000 - left) * 100, "wait %llu ns",
		     (unsigned long long)wait);
	cr_assert_neq(vswitch_port_throttle(sw, p, 1500, now + wait - 1), 0);
	cr_assert_eq(vswitch_port_throttle(sw, p, 1500, now + wait), 0);
	now += wait;
	double rate = sustained(p, 1500, 2000, &now);

	cr_assert(rate > 10000000 * 0.99 && rate <= 10000000 * 1.01,
		  "sustained %.0f bit/s", rate);
	rate = sustained(p, 64, 20000, &now);
	cr_assert(rate > 10000000 * 0.99 && rate <= 10000000 * 1.01,
		  "sustained %.0f bit/s with 64-byte frames", rate);
	/* Idle for a minute: the bucket holds no more than its depth. */
	now += 60 * SEC;
	cr_assert_eq(burst(p, 1500, now, &wait), n);
}

Test(ratelimit, fast_rate_burst_is_10ms)
{
	uint32_t p = limited_port(1000000000ULL);	/* 1 Gbit/s */
	uint64_t wait, now = 0;
	unsigned int n;

	n = burst(p, 9000, now, &wait);
	cr_assert_eq(n, 10000000 / 72000, "burst of %u frames", n);
	double rate = sustained(p, 9000, 5000, &now);

	cr_assert(rate > 1e9 * 0.99 && rate <= 1e9 * 1.01, "%.0f", rate);
}

Test(ratelimit, slow_rate_and_big_frames)
{
	uint32_t p = limited_port(64000);		/* 64 kbit/s */
	uint64_t wait, now = 0;

	cr_assert_eq(vswitch_port_throttle(sw, p, 65535, now), 0,
		     "a full bucket lets the largest frame through");
	wait = vswitch_port_throttle(sw, p, 65535, now);
	cr_assert_eq(wait, 65535ULL * 8 * SEC / 64000, "%llu",
		     (unsigned long long)wait);
	cr_assert_eq(vswitch_port_throttle(sw, p, 65535, now + wait), 0);
	/* Larger than any frame: treated as the largest, never stuck. */
	wait = vswitch_port_throttle(sw, p, 1 << 20, now + wait);
	cr_assert_eq(vswitch_port_throttle(sw, p, 1 << 20, now + 3 * wait), 0);
}

Test(ratelimit, live_change)
{
	struct vswitch_port_config c = port_untagged();
	uint32_t p = limited_port(10000000);
	uint64_t wait, w2, now = 0;

	burst(p, 1500, now, &wait);
	/* Ten times faster: the same missing bits take a tenth of the time. */
	c.bandwidth_max = 100000000;
	cr_assert_eq(vswitch_port_set(sw, p, &c), 0);
	w2 = vswitch_port_throttle(sw, p, 1500, now);
	cr_assert_eq(w2, (wait + 9) / 10, "%llu then %llu",
		     (unsigned long long)wait, (unsigned long long)w2);
	double rate = sustained(p, 1500, 5000, &now);

	cr_assert(rate > 1e8 * 0.99 && rate <= 1e8 * 1.01, "%.0f", rate);
	/* Slower again: the bucket shrinks to the new depth. */
	c.bandwidth_max = 1000000;
	cr_assert_eq(vswitch_port_set(sw, p, &c), 0);
	rate = sustained(p, 1500, 500, &now);
	cr_assert(rate > 1e6 * 0.99 && rate <= 1e6 * 1.01, "%.0f", rate);
	/* Unlimited. */
	c.bandwidth_max = 0;
	cr_assert_eq(vswitch_port_set(sw, p, &c), 0);
	for (int i = 0; i < 100000; i++)
		cr_assert_eq(vswitch_port_throttle(sw, p, 65535, now), 0);
	/* Limited again: starts with a full bucket. */
	c.bandwidth_max = 10000000;
	cr_assert_eq(vswitch_port_set(sw, p, &c), 0);
	cr_assert_eq(burst(p, 1500, now, &wait), BURST_MIN_BITS / 12000);
}

Test(ratelimit, waits_round_up)
{
	uint32_t p = limited_port(3000000);	/* 3 bits per microsecond */
	uint64_t wait, now = 0;

	for (int i = 0; i < 50; i++) {
		burst(p, 1000 + i, now, &wait);
		cr_assert_neq(vswitch_port_throttle(sw, p, 1000 + i, now + wait - 1),
			      0, "frame %d, wait %llu", i, (unsigned long long)wait);
		cr_assert_eq(vswitch_port_throttle(sw, p, 1000 + i, now + wait), 0);
		now += wait;
	}
	double rate = sustained(p, 1001, 3000, &now);

	cr_assert(rate > 3e6 * 0.99 && rate <= 3e6 * 1.01, "%.0f", rate);
}

Test(ratelimit, lower_rate_shrinks_the_bucket)
{
	struct vswitch_port_config c = port_untagged();
	uint32_t p = limited_port(1000000000ULL);
	uint64_t wait;

	cr_assert_eq(vswitch_port_throttle(sw, p, 60, 0), 0);	/* fills it */
	c.bandwidth_max = 10000000;
	cr_assert_eq(vswitch_port_set(sw, p, &c), 0);
	cr_assert_eq(burst(p, 1500, 0, &wait), BURST_MIN_BITS / 12000);
}

Test(ratelimit, other_ports_and_ids)
{
	struct vswitch_port_config c = port_untagged();
	uint32_t p = limited_port(1000000), q;
	uint64_t wait;

	q = add_port(sw, &c);
	burst(p, 1500, 0, &wait);
	cr_assert_neq(wait, 0);
	cr_assert_eq(vswitch_port_throttle(sw, q, 1500, 0), 0);
	cr_assert_eq(vswitch_port_throttle(sw, 200, 1500, 0), 0);
	/* A clock that goes backwards adds nothing. */
	cr_assert_neq(vswitch_port_throttle(sw, p, 1500, 0), 0);
	cr_assert_neq(vswitch_port_throttle(sw, p, 1500, 0), 0);
}
