// SPDX-License-Identifier: MIT
/*
 * The worker's loop runs on an io_uring: every VM port's socket has a
 * multishot poll in the ring, and so does the epoll descriptor that
 * gathers the rest (the host's TAP, the uplink, the control socket and
 * its clients, signals, timers), which worker.c serves.
 *
 * The TAP and the uplink stay with epoll because a poll in a ring holds
 * a reference to its file that the kernel drops only some milliseconds
 * after the process dies (the ring is torn down by a work queue): the
 * TAP device, which exists as long as its descriptor, would outlive a
 * killed worker and block the name for the restarted one.  A VM's peer
 * merely sees the hang-up that much later.
 *
 * Why not epoll for the ports too: measured on the development machine
 * (docs/vswitch.md), the same forwarding code moves 10-15% more 64-byte
 * frames per second when the ports are watched from a ring set up with
 * DEFER_TASKRUN.  A sender's wake-up then costs it an atomic and a list
 * insertion, where epoll takes its lock with interrupts off for every
 * frame; and completions are gathered until the worker asks for them.
 *
 * The ring's polls are edge-triggered (a completion per wake-up, none
 * for frames already waiting), so a port is read until a pass finds its
 * queue short of a full batch.  To keep one busy port from starving the
 * others, a port gets WK_DRAIN_PASSES passes per turn; if it still had
 * frames it goes on the busy list, served after the next look at the
 * ring, which then does not block.
 *
 * A poll's user_data names the port and a generation (counted for the
 * whole worker), so completions of a poll that was removed (the port
 * closed, its id reused, its events changed) are recognised and ignored.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>

#include "vswitch/worker.h"

#define RING_ENTRIES 256
#define GEN_MASK 0xffffffu

enum ring_tag {
	RING_IGNORE = 1,	/* completions of poll removals */
	RING_EPOLL,
	RING_PORT,
};

static uint64_t ring_data(enum ring_tag tag, uint32_t gen, uint32_t idx)
{
	return ((uint64_t)tag << 56) | ((uint64_t)(gen & GEN_MASK) << 32) | idx;
}

static struct io_uring_sqe *ring_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	if (!sqe) {
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe;
}

static int arm_epoll(struct worker *w)
{
	struct io_uring_sqe *sqe = ring_sqe(w);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_multishot(sqe, w->epfd, POLLIN);
	io_uring_sqe_set_data64(sqe, ring_data(RING_EPOLL, 0, 0));
	w->epfd_armed = true;
	return 0;
}

int wk_ring_init(struct worker *w, char *err, size_t errlen)
{
	struct io_uring_params params = {
		.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
	};
	int ret = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &params);

	if (ret == -EINVAL) {
		/* Kernels before 6.1 lack DEFER_TASKRUN: the plain ring works too. */
		memset(&params, 0, sizeof(params));
		ret = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &params);
	}
	if (ret < 0) {
		snprintf(err, errlen, "io_uring: %s", strerror(-ret));
		return ret;
	}
	w->ring_ready = true;
	ret = arm_epoll(w);
	if (!ret)
		ret = io_uring_submit(&w->ring) < 0 ? -EIO : 0;
	if (ret)
		snprintf(err, errlen, "io_uring: cannot watch the control plane");
	return ret;
}

void wk_ring_free(struct worker *w)
{
	if (w->ring_ready)
		io_uring_queue_exit(&w->ring);
	w->ring_ready = false;
}

static uint32_t port_events(const struct wk_port *p)
{
	/* Hang-ups are always wanted: a held port must still notice its peer go. */
	return (p->polling ? POLLIN : 0) | POLLRDHUP;
}

int wk_port_watch(struct worker *w, struct wk_port *p)
{
	struct io_uring_sqe *sqe;
	int ret;

	if (p->kind != WK_VM) {
		ret = wk_epoll_set(w, p->fd, WK_TAG(WK_TAG_PORT, p->id), port_events(p),
				   EPOLL_CTL_ADD);
		p->armed = !ret;
		return ret;
	}
	sqe = ring_sqe(w);
	if (!sqe)
		return -EBUSY;
	/* Worker-wide, so a reused port id does not reuse a generation. */
	p->gen = ++w->next_gen & GEN_MASK;
	io_uring_prep_poll_multishot(sqe, p->fd, port_events(p));
	io_uring_sqe_set_data64(sqe, ring_data(RING_PORT, p->gen, p->id));
	p->armed = true;
	ret = io_uring_submit(&w->ring);
	return ret < 0 ? ret : 0;
}

/* Off the busy list, so a port id is never on it twice. */
static void not_busy(struct worker *w, struct wk_port *p)
{
	for (unsigned int i = 0; i < w->nbusy; i++) {
		if (w->busy_list[i] == p->id) {
			w->busy_list[i] = w->busy_list[--w->nbusy];
			break;
		}
	}
	p->busy = false;
}

/*
 * Take the port's poll out of the ring before its descriptor is closed:
 * the poll holds a reference to the socket, which would otherwise stay
 * open (and the peer would not see the hang-up).
 */
void wk_port_unwatch(struct worker *w, struct wk_port *p)
{
	struct io_uring_sqe *sqe;

	if (p->busy)
		not_busy(w, p);
	if (!p->armed)
		return;
	if (p->kind != WK_VM) {
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, p->fd, NULL);
		p->armed = false;
		return;
	}
	sqe = ring_sqe(w);
	if (sqe) {
		io_uring_prep_poll_remove(sqe, ring_data(RING_PORT, p->gen, p->id));
		io_uring_sqe_set_data64(sqe, ring_data(RING_IGNORE, 0, 0));
		io_uring_submit(&w->ring);
	}
	p->armed = false;
	p->gen = ++w->next_gen & GEN_MASK;
}

void wk_port_busy(struct worker *w, struct wk_port *p)
{
	if (p->busy)
		return;
	p->busy = true;
	w->busy_list[w->nbusy++] = p->id;
}

/* One more turn for every port that still had frames after its last one. */
void wk_ring_busy_turn(struct worker *w)
{
	uint32_t list[VSWITCH_MAX_PORTS];
	unsigned int n = w->nbusy;

	memcpy(list, w->busy_list, n * sizeof(list[0]));
	w->nbusy = 0;
	for (unsigned int i = 0; i < n && !w->done; i++) {
		struct wk_port *p = &w->ports[list[i]];

		if (!p->used || !p->busy)
			continue;
		p->busy = false;
		if (wk_port_drain(w, p))
			wk_port_busy(w, p);
	}
}

static void port_completion(struct worker *w, uint32_t idx, uint32_t gen,
			    int res, uint32_t flags)
{
	struct wk_port *p;

	if (idx >= VSWITCH_MAX_PORTS)
		return;
	p = &w->ports[idx];
	if (!p->used || p->kind != WK_VM || !p->armed || p->gen != gen)
		return;		/* a poll that was removed */
	if (!(flags & IORING_CQE_F_MORE))
		p->armed = false;
	if (res < 0) {
		if (res != -ECANCELED)
			log_warn("port %s: poll: %s", p->name, strerror(-res));
	} else {
		wk_port_readable(w, p, (uint32_t)res);
	}
	/* The kernel ends a multishot poll now and then (overflow): re-arm. */
	if (p->used && !p->dead && !p->armed && p->gen == gen &&
	    wk_port_watch(w, p) < 0)
		log_warn("port %s: cannot watch it again", p->name);
}

/*
 * Submit what is queued, wait for at least one completion if @wait, and
 * handle every completion there is.  Port events are handled here;
 * control-plane events only set control_pending for worker.c.
 */
int wk_ring_run(struct worker *w, bool wait)
{
	struct io_uring_cqe *cqe;
	struct {
		uint64_t data;
		int res;
		uint32_t flags;
	} done[64];
	unsigned int head, n;
	int ret;

	ret = wait ? io_uring_submit_and_wait(&w->ring, 1) :
		     io_uring_submit_and_get_events(&w->ring);
	if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY && ret != -ETIME)
		return ret;
	do {
		/* Copied out first: handlers submit to the ring themselves. */
		n = 0;
		io_uring_for_each_cqe(&w->ring, head, cqe) {
			done[n].data = cqe->user_data;
			done[n].res = cqe->res;
			done[n].flags = cqe->flags;
			if (++n == ARRAY_SIZE(done))
				break;
		}
		io_uring_cq_advance(&w->ring, n);
		for (unsigned int i = 0; i < n && !w->done; i++) {
			uint64_t d = done[i].data;

			switch ((enum ring_tag)(d >> 56)) {
			case RING_EPOLL:
				w->control_pending = true;
				if (!(done[i].flags & IORING_CQE_F_MORE))
					w->epfd_armed = false;
				break;
			case RING_PORT:
				port_completion(w, (uint32_t)d, (uint32_t)(d >> 32) & GEN_MASK,
						done[i].res, done[i].flags);
				break;
			case RING_IGNORE:
			default:
				break;
			}
		}
	} while (n == ARRAY_SIZE(done) && !w->done);
	if (!w->epfd_armed && !w->done) {
		ret = arm_epoll(w);
		if (ret)
			return ret;
		/* It may have become ready while it was not watched. */
		w->control_pending = true;
	}
	return 0;
}
