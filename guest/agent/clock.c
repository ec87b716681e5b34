// SPDX-License-Identifier: MIT
/*
 * Time synchronisation: the host's UTC, stepped to or slewed towards.
 * Every use of the clock goes through the three functions at the top,
 * the one seam a test replaces (--fake-clock SECONDS: a clock that
 * many seconds off the real one, moved only in the agent), since
 * CLOCK_REALTIME cannot be given a namespace of its own.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "agent.h"

#define STEP_OVER_NS	1000000000LL	/* a sample further off than 1 s is stepped */

int64_t clock_now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec + (opts.fake_clock ? opts.fake_offset_ns : 0);
}

int clock_step(int64_t delta_ns)
{
	struct timespec t;
	int64_t ns;

	if (opts.fake_clock) {
		opts.fake_offset_ns += delta_ns;
		return 0;
	}
	ns = clock_now_ns() + delta_ns;
	t.tv_sec = ns / 1000000000LL;
	t.tv_nsec = ns % 1000000000LL;
	return clock_settime(CLOCK_REALTIME, &t) < 0 ? -errno : 0;
}

int clock_slew(int64_t delta_ns)
{
	struct timeval tv;

	if (opts.fake_clock) {
		opts.fake_offset_ns += delta_ns;
		return 0;
	}
	tv.tv_sec = delta_ns / 1000000000LL;
	tv.tv_usec = (delta_ns % 1000000000LL) / 1000;
	/* adjtime(3): the kernel slews gradually (ADJ_OFFSET_SINGLESHOT). */
	return adjtime(&tv, NULL) < 0 ? -errno : 0;
}

/*
 * A sample is answered with the clock as it read when the request came;
 * a step or a slew moves the clock by the correction the host worked out
 * from one (relative, so a late request is no less right).
 */
void time_request(const struct ic_msg *m)
{
	uint8_t frame[64];
	struct ic_writer w;
	int64_t delta = (int64_t)m->num[IC_T_DELTA];
	bool step = m->num[IC_T_MODE] == IC_TIME_STEP;
	int ret;

	if (m->num[IC_T_MODE] == IC_TIME_SAMPLE) {
		ic_begin_reply(&w, frame, sizeof(frame), &m->h, 0);
		ic_put_u64(&w, IC_T_GUEST_TIME, (uint64_t)clock_now_ns());
		agent_send(&w);
		return;
	}
	if (!(m->have & (1u << IC_T_DELTA)) || m->num[IC_T_MODE] > IC_TIME_SLEW) {
		agent_reply(&m->h, EINVAL, "a step or a slew needs a correction");
		return;
	}
	ret = step ? clock_step(delta) : clock_slew(delta);
	if (ret)
		agent_log("cannot %s the clock: %s", step ? "step" : "slew", strerror(-ret));
	else if (step && llabs(delta) > STEP_OVER_NS)
		agent_log("clock stepped by %+.3f s to the host's", (double)delta / 1e9);
	agent_reply(&m->h, ret ? (uint32_t)-ret : 0, ret ? strerror(-ret) : NULL);
}
