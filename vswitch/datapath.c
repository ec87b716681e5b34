// SPDX-License-Identifier: MIT
/*
 * The datapath: one pass takes up to WK_BATCH frames from one port
 * (recvmmsg, or read() for the TAP), asks the engine where each goes,
 * queues it on every destination port as iovecs into the receive buffers
 * (a tag is added or removed by choosing iovecs, never by copying), and
 * then sends each destination's queue at once (sendmmsg, or writev() for
 * the TAP).  Nothing blocks: a destination that is full loses the frames
 * that do not fit (VSWITCH_DROP_NO_ROOM on that port), because waiting for
 * one slow VM would stall every other port.
 *
 * A rate-limited sender is treated the other way round: frames beyond its
 * budget are held, and the port is not read again until the engine's
 * token bucket lets them go, so the sender's own socket fills and pushes
 * back on it instead of frames being lost.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "vswitch/worker.h"

int wk_datapath_init(struct worker *w)
{
	/* 4 MiB of address space; only the pages frames land in are touched. */
	void *area = mmap(NULL, (size_t)WK_BATCH * WK_SLOT, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (area == MAP_FAILED)
		return -errno;
	w->rx_area = area;
	for (unsigned int i = 0; i < WK_BATCH; i++) {
		w->rx_iov[i].iov_base = w->rx_area + (size_t)i * WK_SLOT + WK_HEADROOM;
		/* One byte more than a frame may have: longer ones show as such. */
		w->rx_iov[i].iov_len = VSWITCH_FRAME_MAX + 1;
		w->rx_msgs[i].msg_hdr.msg_iov = &w->rx_iov[i];
		w->rx_msgs[i].msg_hdr.msg_iovlen = 1;
	}
	return 0;
}

void wk_datapath_free(struct worker *w)
{
	if (w->rx_area)
		munmap(w->rx_area, (size_t)WK_BATCH * WK_SLOT);
	w->rx_area = NULL;
}

static void port_failed(struct worker *w, struct wk_port *p, int err)
{
	if (p->dead)
		return;
	p->dead = true;
	w->reap = true;
	if (p->kind == WK_HOST) {
		snprintf(w->host_error, sizeof(w->host_error), "the TAP device %s failed: %s",
			 w->host_if, strerror(err));
		log_error("%s", w->host_error);
	} else if (p->kind == WK_UPLINK) {
		snprintf(w->uplink_error, sizeof(w->uplink_error), "the uplink %s failed: %s",
			 w->uplink, strerror(err));
		log_error("%s", w->uplink_error);
	} else if (err && err != ECONNRESET && err != EPIPE) {
		log_warn("port %s: %s", p->name, strerror(err));
	}
}

/* ---- sending ------------------------------------------------------------ */

static void account(struct worker *w, struct wk_port *p, unsigned int from,
		    unsigned int to, bool sent)
{
	for (unsigned int i = from; i < to; i++) {
		if (sent)
			vswitch_port_sent(w->sw, p->id, p->out[i].len);
		else
			vswitch_port_dropped(w->sw, p->id, VSWITCH_DROP_NO_ROOM);
	}
}

static void flush_socket(struct worker *w, struct wk_port *p)
{
	unsigned int done = 0;

	while (done < p->nout) {
		int r = sendmmsg(p->fd, p->msgs + done, p->nout - done,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (r > 0) {
			account(w, p, done, done + (unsigned int)r, true);
			done += (unsigned int)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EMSGSIZE) {
			/* Longer than the uplink's MTU: this frame only. */
			account(w, p, done, done + 1, false);
			done++;
			continue;
		}
		if (r < 0 && errno != EAGAIN && errno != ENOBUFS) {
			port_failed(w, p, errno);
			return;
		}
		/* Full: the rest of the queue would not fit either. */
		account(w, p, done, p->nout, false);
		return;
	}
}

static void flush_tap(struct worker *w, struct wk_port *p)
{
	for (unsigned int i = 0; i < p->nout; i++) {
		struct msghdr *m = &p->msgs[i].msg_hdr;
		ssize_t r;

		do {
			r = writev(p->fd, m->msg_iov, (int)m->msg_iovlen);
		} while (r < 0 && errno == EINTR);
		if (r >= 0) {
			vswitch_port_sent(w->sw, p->id, p->out[i].len);
		} else if (errno == EAGAIN || errno == ENOBUFS || errno == EIO ||
			   errno == EINVAL || errno == ENOMEM) {
			/* EIO: the interface is down; EINVAL: too long for it. */
			vswitch_port_dropped(w->sw, p->id, VSWITCH_DROP_NO_ROOM);
		} else {
			port_failed(w, p, errno);
			return;
		}
	}
}

static void flush_all(struct worker *w)
{
	for (unsigned int i = 0; i < w->nflush; i++) {
		struct wk_port *p = &w->ports[w->flush_list[i]];

		if (!p->dead) {
			if (p->kind == WK_HOST)
				flush_tap(w, p);
			else
				flush_socket(w, p);
		}
		p->nout = 0;
		p->dirty = false;
	}
	w->nflush = 0;
}

static void flush_one(struct worker *w, struct wk_port *p)
{
	if (!p->dead) {
		if (p->kind == WK_HOST)
			flush_tap(w, p);
		else
			flush_socket(w, p);
	}
	p->nout = 0;		/* stays on the flush list; nothing more to send */
}

/*
 * Queue @frame on @p: frame[0..12), an optional 802.1Q tag, then
 * frame[payload_off..len), as iovecs.
 */
static void queue(struct worker *w, struct wk_port *p, uint8_t *frame,
		  uint32_t len, const struct vswitch_verdict *v, bool tagged)
{
	size_t off = v->payload_off;
	struct wk_out *o;
	unsigned int k = 0;

	if (!p->used || p->dead || off < 12 || off > len)
		return;
	if (p->nout == WK_BATCH)
		flush_one(w, p);
	o = &p->out[p->nout];
	if (!tagged && off == 12) {
		o->iov[k++] = (struct iovec){ frame, len };
		o->len = len;
	} else {
		o->iov[k++] = (struct iovec){ frame, 12 };
		o->len = 12 + (uint32_t)(len - off);
		if (tagged) {
			/* Keep the priority bits of the tag the frame came with. */
			uint16_t tci = v->vlan & 0x0fff;

			if (off >= 16 && frame[12] == 0x81 && frame[13] == 0x00)
				tci |= (uint16_t)((frame[14] & 0xf0) << 8);
			o->tag[0] = 0x81;
			o->tag[1] = 0x00;
			o->tag[2] = (uint8_t)(tci >> 8);
			o->tag[3] = (uint8_t)tci;
			o->iov[k++] = (struct iovec){ o->tag, 4 };
			o->len += 4;
		}
		o->iov[k++] = (struct iovec){ frame + off, len - off };
	}
	p->msgs[p->nout].msg_hdr.msg_iovlen = k;
	p->nout++;
	if (!p->dirty) {
		p->dirty = true;
		w->flush_list[w->nflush++] = p->id;
	}
}

/*
 * Forward frames that came in on @in; returns how many were taken.  When
 * @in's bandwidth is used up, the rest are not taken and *wait says for
 * how long.
 */
static unsigned int forward(struct worker *w, struct wk_port *in, uint8_t **frames,
			    uint32_t *lens, unsigned int n, uint64_t now,
			    uint64_t *wait)
{
	struct vswitch_verdict *v = &w->verdict;

	for (unsigned int i = 0; i < n; i++) {
		if (in->cfg.bandwidth_max) {
			uint64_t t = vswitch_port_throttle(w->sw, in->id, lens[i], now);

			if (t) {
				*wait = t;
				return i;
			}
		}
		vswitch_forward(w->sw, in->id, frames[i], lens[i], now, v);
		for (unsigned int d = 0; d < v->ndest && d < VSWITCH_MAX_PORTS; d++) {
			uint32_t out = v->dest[d].port;

			if (out < VSWITCH_MAX_PORTS && out != in->id)
				queue(w, &w->ports[out], frames[i], lens[i], v,
				      v->dest[d].tagged);
		}
	}
	return n;
}

/* ---- holding frames of a rate-limited port ------------------------------ */

static void arm_hold_timer(struct worker *w)
{
	struct itimerspec its = { 0 };
	uint64_t first = UINT64_MAX;

	for (unsigned int i = 0; i < VSWITCH_MAX_PORTS; i++)
		if (w->ports[i].used && w->ports[i].held.n &&
		    w->ports[i].held.until_ns < first)
			first = w->ports[i].held.until_ns;
	if (first != UINT64_MAX) {
		/* 0 would disarm the timer; "now" is always past 1 ns. */
		if (!first)
			first = 1;
		its.it_value.tv_sec = (time_t)(first / 1000000000ULL);
		its.it_value.tv_nsec = (long)(first % 1000000000ULL);
	}
	timerfd_settime(w->hold_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

void wk_held_drop(struct worker *w, struct wk_port *p)
{
	(void)w;
	free(p->held.arena);
	p->held.arena = NULL;
	p->held.n = p->held.next = 0;
}

static void hold(struct worker *w, struct wk_port *p, uint8_t **frames,
		 uint32_t *lens, unsigned int n, uint64_t until)
{
	struct wk_held *h = &p->held;
	size_t total = 0;

	for (unsigned int i = 0; i < n; i++)
		total += lens[i];
	h->arena = malloc(total ? total : 1);
	if (!h->arena) {
		log_warn("port %s: no memory to hold %u frames: dropped", p->name, n);
		return;
	}
	total = 0;
	for (unsigned int i = 0; i < n; i++) {
		memcpy(h->arena + total, frames[i], lens[i]);
		h->off[i] = (uint32_t)total;
		h->len[i] = lens[i];
		total += lens[i];
	}
	h->n = n;
	h->next = 0;
	h->until_ns = until;
	wk_port_poll(w, p, false);
	arm_hold_timer(w);
}

void wk_held_timer(struct worker *w)
{
	uint64_t expirations, now = wk_now_ns();

	if (read(w->hold_fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		log_warn("hold timer: %s", strerror(errno));
	for (unsigned int i = 0; i < VSWITCH_MAX_PORTS; i++) {
		struct wk_port *p = &w->ports[i];
		struct wk_held *h = &p->held;
		uint8_t *frames[WK_BATCH];
		uint64_t wait = 0;
		unsigned int n;

		if (!p->used || p->dead || !h->n || h->until_ns > now)
			continue;
		n = h->n - h->next;
		for (unsigned int k = 0; k < n; k++)
			frames[k] = h->arena + h->off[h->next + k];
		h->next += forward(w, p, frames, h->len + h->next, n, now, &wait);
		/* The arena is still referenced by the queues: send first. */
		flush_all(w);
		if (h->next == h->n) {
			wk_held_drop(w, p);
			wk_port_poll(w, p, true);
		} else {
			h->until_ns = now + wait;
		}
	}
	arm_hold_timer(w);
}

/* ---- receiving ---------------------------------------------------------- */

static void set_rx_addr(struct worker *w, bool uplink)
{
	for (unsigned int i = 0; i < WK_BATCH; i++) {
		struct msghdr *m = &w->rx_msgs[i].msg_hdr;

		m->msg_name = uplink ? &w->rx_addr[i] : NULL;
		m->msg_namelen = uplink ? sizeof(w->rx_addr[i]) : 0;
		m->msg_control = uplink ? w->rx_ctl[i] : NULL;
		m->msg_controllen = uplink ? sizeof(w->rx_ctl[i]) : 0;
		m->msg_flags = 0;
	}
}

static void malformed(struct worker *w, struct wk_port *p)
{
	vswitch_port_dropped(w->sw, p->id, VSWITCH_DROP_MALFORMED);
}

/*
 * Up to WK_BATCH frames; a negative errno when the port is unusable.
 * *full: WK_BATCH were read, so more may be waiting.
 */
static int receive(struct worker *w, struct wk_port *p, uint8_t **frames,
		   uint32_t *lens, bool *full)
{
	unsigned int n = 0;
	int r;

	*full = false;
	if (p->kind == WK_HOST) {
		unsigned int i;

		for (i = 0; i < WK_BATCH; i++) {
			ssize_t len = read(p->fd, w->rx_iov[i].iov_base, w->rx_iov[i].iov_len);

			if (len < 0 && errno == EINTR)
				continue;
			if (len < 0 && errno == EAGAIN)
				break;
			if (len < 0)
				return -errno;
			if (len < VSWITCH_ETH_MIN || len > VSWITCH_FRAME_MAX) {
				malformed(w, p);
				continue;
			}
			frames[n] = w->rx_iov[i].iov_base;
			lens[n++] = (uint32_t)len;
		}
		*full = i == WK_BATCH;
		return (int)n;
	}

	set_rx_addr(w, p->kind == WK_UPLINK);
	do {
		r = recvmmsg(p->fd, w->rx_msgs, WK_BATCH, MSG_DONTWAIT, NULL);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == EAGAIN ? 0 : -errno;
	*full = r == WK_BATCH;
	for (int i = 0; i < r; i++) {
		struct msghdr *m = &w->rx_msgs[i].msg_hdr;
		uint32_t len = w->rx_msgs[i].msg_len;
		uint8_t *f = w->rx_iov[i].iov_base;

		/* After a hang-up, recvmmsg() reports end-of-file as empty messages. */
		if (len == 0 && p->hangup) {
			*full = false;
			break;
		}
		if ((m->msg_flags & MSG_TRUNC) || len > VSWITCH_FRAME_MAX) {
			malformed(w, p);
			continue;
		}
		if (p->kind == WK_UPLINK && !wk_uplink_fixup(m, &f, &len))
			continue;
		/* Runts go to the engine, which counts them as malformed. */
		frames[n] = f;
		lens[n++] = len;
	}
	return (int)n;
}

/* One batch from @p; true when it was a full one, so more may be waiting. */
static bool pass(struct worker *w, struct wk_port *p)
{
	uint8_t *frames[WK_BATCH];
	uint32_t lens[WK_BATCH];
	uint64_t now, wait = 0;
	unsigned int taken;
	bool full;
	int n = receive(w, p, frames, lens, &full);

	if (n < 0) {
		port_failed(w, p, -n);
		return false;
	}
	if (n == 0)
		return full;
	now = wk_now_ns();
	taken = forward(w, p, frames, lens, (unsigned int)n, now, &wait);
	if (taken < (unsigned int)n)
		hold(w, p, frames + taken, lens + taken, (unsigned int)n - taken,
		     now + wait);
	flush_all(w);
	return full;
}

/*
 * A port's turn: passes until its queue is short of a full batch (the
 * ring's polls are edge-triggered: nothing says so again for frames that
 * are already waiting), at most WK_DRAIN_PASSES.  True when frames may
 * be left, for another turn after the other ports'.
 */
bool wk_port_drain(struct worker *w, struct wk_port *p)
{
	for (unsigned int i = 0; i < WK_DRAIN_PASSES; i++)
		if (!p->polling || p->dead || !pass(w, p))
			return false;
	return true;
}

static void socket_error(struct worker *w, struct wk_port *p)
{
	int err = 0;
	socklen_t len = sizeof(err);

	getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len);
	/*
	 * A packet socket reports ENETDOWN when its NIC goes down and carries
	 * on when it comes back; only a NIC that is gone ends the uplink.
	 */
	if (p->kind == WK_UPLINK && wk_if_exists(w->uplink)) {
		if (err)
			log_warn("uplink %s: %s", w->uplink, strerror(err));
		return;
	}
	port_failed(w, p, err ? err : ENODEV);
}

void wk_port_readable(struct worker *w, struct wk_port *p, uint32_t events)
{
	if (p->dead)
		return;
	if (events & EPOLLERR) {
		if (p->kind == WK_HOST) {
			port_failed(w, p, ENODEV);
			return;
		}
		socket_error(w, p);
		if (p->dead)
			return;
	}
	if (p->kind == WK_VM && (events & (EPOLLHUP | EPOLLRDHUP))) {
		/* What the peer sent before it went still goes through. */
		p->hangup = true;
		for (int i = 0; i < 64 && p->polling && !p->dead && pass(w, p); i++)
			;
		port_failed(w, p, 0);
		return;
	}
	if (p->polling && (events & EPOLLIN) && wk_port_drain(w, p))
		wk_port_busy(w, p);
}
