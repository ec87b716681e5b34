// SPDX-License-Identifier: MIT
/*
 * virtio-vsock (virtio 1.2, 5.10): stream sockets between the guest and
 * programs on the host, whose side is Unix sockets (vsock_host.c).
 * Queue 0 is rx (to the guest), 1 tx (from it), 2 the event queue.
 *
 * One I/O thread (never a vCPU) sleeps on the three kick eventfds, a
 * control eventfd, a timer, the "vsock" listener and every connection's
 * socket.  Each pass:
 *
 *  - transmit: every chain the guest gave is taken and acted on at once:
 *    connects, data written to the host socket (or kept, within the
 *    credit we gave), shutdowns, resets.  Whatever must be answered is
 *    noted on the connection (a bit per kind of packet) or, for packets
 *    that belong to no connection, in a bounded ring of resets, so the
 *    transmit ring is drained even while the guest gives no receive
 *    buffers: a driver that waits for its transmits before it refills
 *    its receive ring cannot deadlock us.
 *  - receive: resets first, then connections with something to say, in
 *    turn: control packets, then data read straight from the host
 *    socket into the guest's buffer, never more than the guest's credit
 *    (buf_alloc - (sent - fwd_cnt), from the last header it sent).
 *
 * Every header the guest writes is copied once and checked: lengths past
 * its buffer or over 64 KiB, unknown ops and types, a wrong source or
 * destination CID, data beyond our credit.  Such packets are dropped or
 * answered with RST and counted; nothing the guest sends stops the
 * thread.  A malformed ring sets NEEDS_RESET, as for the other devices.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "vmm/virtio/vsock.h"

#define RX_ROUNDS	256		/* packets per pass before the others get a turn */
#define TX_ROUNDS	4		/* batches of chains per pass */
#define TX_BATCH	32
#define SHUT_BOTH	(VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND)

static uint64_t mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static bool is_active(struct virtio_vsock *v)
{
	return atomic_load(&v->active);
}

static void broken(struct virtio_vsock *v, const char *why)
{
	atomic_store(&v->active, false);
	virtio_dev_broken(&v->dev, why);
}

static void malformed(struct virtio_vsock *v, const char *what)
{
	atomic_fetch_add(&v->count.malformed, 1);
	log_debug("%s: %s", v->name, what);
}

/* ---- packets to the guest ---------------------------------------------- */

static void hdr_fill(struct virtio_vsock *v, struct virtio_vsock_hdr *h, uint32_t host_port,
		     uint32_t guest_port, uint16_t op)
{
	memset(h, 0, sizeof(*h));
	h->src_cid = htole64(VSOCK_HOST_CID);
	h->dst_cid = htole64(v->cid);
	h->src_port = htole32(host_port);
	h->dst_port = htole32(guest_port);
	h->type = htole16(VIRTIO_VSOCK_TYPE_STREAM);
	h->op = htole16(op);
}

/* Every packet of a connection carries our credit: the guest is told now. */
static void conn_hdr(struct virtio_vsock *v, struct vconn *c, struct virtio_vsock_hdr *h,
		     uint16_t op)
{
	hdr_fill(v, h, c->host_port, c->guest_port, op);
	h->buf_alloc = htole32(v->buf_alloc);
	h->fwd_cnt = htole32(c->fwd_cnt);
	c->fwd_told = c->fwd_cnt;
	c->owe &= ~(unsigned int)OWE_CREDIT;
}

static void rx_push(struct virtio_vsock *v, struct virtq_elem *e,
		    const struct virtio_vsock_hdr *h, uint32_t payload)
{
	iov_from_buf(e->iov + e->out_num, e->in_num, 0, h, VSOCK_HDR_LEN);
	virtq_push(&v->dev.vq[VSOCK_RXQ], e->head, VSOCK_HDR_LEN + payload);
	v->rx_publish = true;
}

/* What the guest lets us send: its buffer less what it has not consumed. */
static uint32_t peer_credit(const struct vconn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static bool can_send_data(const struct vconn *c)
{
	return c->state == VC_OPEN && c->readable && !c->peer_no_recv && !c->host_eof &&
	       peer_credit(c) > 0;
}

static bool wants_rx(const struct vconn *c)
{
	return c->owe || can_send_data(c);
}

void vsock_mark_ready(struct virtio_vsock *v, struct vconn *c)
{
	int self = vsock_conn_index(v, c);

	if (c->ready || c->state == VC_FREE || !wants_rx(c))
		return;
	c->ready = true;
	c->lnext = -1;
	if (v->ready_tail >= 0)
		v->conns[v->ready_tail].lnext = self;
	else
		v->ready_head = self;
	v->ready_tail = self;
}

static struct vconn *ready_pop(struct virtio_vsock *v)
{
	struct vconn *c;

	if (v->ready_head < 0)
		return NULL;
	c = &v->conns[v->ready_head];
	v->ready_head = c->lnext;
	if (v->ready_head < 0)
		v->ready_tail = -1;
	c->ready = false;
	c->lnext = -1;
	return c;
}

void vsock_owe_rst(struct virtio_vsock *v, uint32_t host_port, uint32_t guest_port)
{
	if (v->rst_len == VSOCK_RST_RING) {
		/* A flood: the guest's connect times out instead. */
		atomic_fetch_add(&v->count.rst_dropped, 1);
		return;
	}
	v->rst[(v->rst_head + v->rst_len++) % VSOCK_RST_RING] =
		(struct vsock_rst){ host_port, guest_port };
}

/* End a connection at once: the guest gets a reset, the host socket is closed. */
static void conn_abort(struct virtio_vsock *v, struct vconn *c)
{
	bool guest_knows = c->state == VC_OPEN || c->state == VC_CLOSING ||
			   (c->state == VC_GUEST_WAIT && !(c->owe & OWE_REQUEST));

	if (guest_knows)
		vsock_owe_rst(v, c->host_port, c->guest_port);
	vsock_conn_free(v, c);
}

void vsock_credit_check(struct virtio_vsock *v, struct vconn *c)
{
	uint32_t unheard = c->fwd_cnt - c->fwd_told;
	/* Bytes the guest counts as still in our buffer. */
	uint32_t in_use = unheard + c->len;
	uint32_t free_told = in_use >= v->buf_alloc ? 0 : v->buf_alloc - in_use;

	/* Like Linux: tell it once the room it knows of runs low. */
	if (unheard && (free_told < v->buf_alloc / 2 || free_told < VSOCK_PKT_MAX) &&
	    c->state == VC_OPEN) {
		c->owe |= OWE_CREDIT;
		vsock_mark_ready(v, c);
	}
}

/* ---- receive: packets for the guest ----------------------------------- */

static void host_eof(struct vconn *c)
{
	c->host_eof = true;
	c->readable = false;
	c->owe |= OWE_SHUTDOWN;
	c->shutdown_flags |= VIRTIO_VSOCK_SHUTDOWN_SEND;
	if (c->host_hup)
		c->shutdown_flags |= VIRTIO_VSOCK_SHUTDOWN_RCV;
}

/* What a chain can carry of the credit left, at most a packet. */
static uint32_t chain_room(const struct virtq_elem *e, uint32_t credit)
{
	uint32_t room = (uint32_t)e->in_len - VSOCK_HDR_LEN;

	if (room > credit)
		room = credit;
	return room > VSOCK_PKT_MAX ? VSOCK_PKT_MAX : room;
}

/*
 * More chains for the read into @e, while the guest's credit goes past
 * them: their count (the first is @e), their rooms in @room, and their
 * payload areas appended to v->slice (*niov entries in all).
 */
static unsigned int more_chains(struct virtio_vsock *v, struct virtq_elem *e, uint32_t credit,
				uint32_t *room, unsigned int *niov)
{
	unsigned int n = 1;

	room[0] = chain_room(e, credit);
	credit -= room[0];
	*niov = iov_slice(e->iov + e->out_num, e->in_num, VSOCK_HDR_LEN, room[0], v->slice);
	while (n < VSOCK_READ_CHAINS && credit >= VSOCK_PKT_MAX / 16) {
		struct virtq_elem *x = &v->more[n - 1];

		if (virtq_pop(&v->dev.vq[VSOCK_RXQ], x) != 1)
			break;	/* none (or malformed: found when it is popped again) */
		if (x->in_len <= VSOCK_HDR_LEN) {
			virtq_rewind(&v->dev.vq[VSOCK_RXQ], 1);
			break;
		}
		room[n] = chain_room(x, credit);
		credit -= room[n];
		*niov += iov_slice(x->iov + x->out_num, x->in_num, VSOCK_HDR_LEN, room[n],
				   v->slice + *niov);
		n++;
	}
	return n;
}

/*
 * Data from the host socket into @e, and further chains when the credit
 * goes past it (one read for several packets): the bytes, 0 none now,
 * -1 the connection is gone.
 */
static ssize_t conn_read(struct virtio_vsock *v, struct vconn *c, struct virtq_elem *e)
{
	uint32_t room[VSOCK_READ_CHAINS], credit = peer_credit(c);
	unsigned int niov, nch;
	ssize_t n;

	if (!chain_room(e, credit))
		return 0;
	nch = more_chains(v, e, credit, room, &niov);
	do {
		n = readv(c->fd, v->slice, (int)niov);
	} while (n < 0 && errno == EINTR);
	if (n > 0) {
		size_t left = (size_t)n;
		unsigned int used = 0;

		for (unsigned int i = 0; i < nch && left; i++, used++) {
			struct virtq_elem *x = i ? &v->more[i - 1] : e;
			uint32_t part = left < room[i] ? (uint32_t)left : room[i];
			struct virtio_vsock_hdr h;

			conn_hdr(v, c, &h, VIRTIO_VSOCK_OP_RW);
			h.len = htole32(part);
			rx_push(v, x, &h, part);
			c->tx_cnt += part;
			left -= part;
		}
		/* The chains the read did not reach go back, the last popped. */
		virtq_rewind(&v->dev.vq[VSOCK_RXQ], (uint16_t)(nch - used));
		atomic_fetch_add(&v->count.to_guest_bytes, (uint64_t)n);
		return n;
	}
	virtq_rewind(&v->dev.vq[VSOCK_RXQ], (uint16_t)(nch - 1));
	if (n == 0) {
		host_eof(c);
		return 0;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		c->readable = false;
		return 0;
	}
	conn_abort(v, c);
	return -1;
}

static void emit_ctl(struct virtio_vsock *v, struct vconn *c, struct virtq_elem *e,
		     uint16_t op, uint32_t flags)
{
	struct virtio_vsock_hdr h;

	conn_hdr(v, c, &h, op);
	h.flags = htole32(flags);
	rx_push(v, e, &h, 0);
}

/* One packet of @c into @e: true if @e was used. */
static bool conn_emit(struct virtio_vsock *v, struct vconn *c, struct virtq_elem *e)
{
	if (c->owe & OWE_REQUEST) {
		c->owe &= ~(unsigned int)OWE_REQUEST;
		emit_ctl(v, c, e, VIRTIO_VSOCK_OP_REQUEST, 0);
		return true;
	}
	if (c->owe & OWE_RESPONSE) {
		c->owe &= ~(unsigned int)OWE_RESPONSE;
		emit_ctl(v, c, e, VIRTIO_VSOCK_OP_RESPONSE, 0);
		return true;
	}
	if (can_send_data(c)) {
		ssize_t n = conn_read(v, c, e);

		if (n > 0)
			return true;
		if (n < 0)
			return false;
	}
	/* After the data: the host's end of file comes last. */
	if ((c->owe & OWE_SHUTDOWN) && (c->host_eof || c->host_hup)) {
		c->owe &= ~(unsigned int)OWE_SHUTDOWN;
		emit_ctl(v, c, e, VIRTIO_VSOCK_OP_SHUTDOWN, c->shutdown_flags);
		if ((c->shutdown_flags & SHUT_BOTH) == SHUT_BOTH) {
			/* The host is gone: the guest closes and resets. */
			c->state = VC_CLOSING;
			vsock_conn_set_deadline(v, c, v->now + VSOCK_TIMEOUT_MS);
		}
		return true;
	}
	if (c->owe & OWE_CREDIT) {
		emit_ctl(v, c, e, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0);
		return true;
	}
	return false;
}

static void emit_rst(struct virtio_vsock *v, struct virtq_elem *e)
{
	struct vsock_rst r = v->rst[v->rst_head];
	struct virtio_vsock_hdr h;

	v->rst_head = (v->rst_head + 1) % VSOCK_RST_RING;
	v->rst_len--;
	hdr_fill(v, &h, r.host_port, r.guest_port, VIRTIO_VSOCK_OP_RST);
	rx_push(v, e, &h, 0);
	atomic_fetch_add(&v->count.rst_sent, 1);
}

static void rx_publish(struct virtio_vsock *v)
{
	struct virtq *q = &v->dev.vq[VSOCK_RXQ];

	if (!v->rx_publish || !is_active(v))
		return;
	v->rx_publish = false;
	virtq_publish(q);
	if (virtq_should_interrupt(q) && v->dev.transport.interrupt)
		v->dev.transport.interrupt(&v->dev, VSOCK_RXQ);
}

/* The next receive chain: 1, 0 none (notify asked for), -1 broken. */
static int rx_pop(struct virtio_vsock *v, struct virtq_elem *e)
{
	struct virtq *q = &v->dev.vq[VSOCK_RXQ];

	for (;;) {
		int ret = virtq_pop(q, e);

		if (ret < 0 || (ret == 1 && e->in_len < VSOCK_HDR_LEN)) {
			broken(v, ret < 0 ? "malformed receive descriptor chain" :
			       "a receive buffer too small for a packet header");
			return -1;
		}
		if (ret == 1)
			return 1;
		if (!virtq_enable_notify(q)) {
			v->rx_starved = true;
			return 0;
		}
	}
}

static void rx_run(struct virtio_vsock *v)
{
	struct virtq_elem *e = &v->elem;

	for (int n = 0; n < RX_ROUNDS && is_active(v) && !v->rx_starved; n++) {
		struct vconn *c;

		if (!v->rst_len && v->ready_head < 0)
			break;
		if (rx_pop(v, e) <= 0)
			break;
		if (v->rst_len) {
			emit_rst(v, e);
			continue;
		}
		/* A connection with nothing it can say now leaves the list. */
		while ((c = ready_pop(v)) && !conn_emit(v, c, e))
			;
		if (!c) {
			virtq_rewind(&v->dev.vq[VSOCK_RXQ], 1);
			break;
		}
		vsock_mark_ready(v, c);
		/* Let the guest start on a long run of packets. */
		if (n % 32 == 31)
			rx_publish(v);
	}
	rx_publish(v);
}

/* ---- the event queue ----------------------------------------------------- */

static void ev_run(struct virtio_vsock *v)
{
	struct virtq *q = &v->dev.vq[VSOCK_EVQ];
	struct virtio_vsock_event ev = { .id = htole32(VIRTIO_VSOCK_EVENT_TRANSPORT_RESET) };
	struct virtq_elem *e = &v->elem;
	int ret;

	if (!v->event_pending || !is_active(v))
		return;
	do {
		ret = virtq_pop(q, e);
	} while (ret == 0 && virtq_enable_notify(q));
	if (ret == 0)
		return;		/* delivered when the guest gives a buffer */
	if (ret < 0 || e->in_len < sizeof(ev)) {
		broken(v, "malformed event queue buffer");
		return;
	}
	iov_from_buf(e->iov + e->out_num, e->in_num, 0, &ev, sizeof(ev));
	virtq_push(q, e->head, sizeof(ev));
	virtq_publish(q);
	v->event_pending = false;
	if (virtq_should_interrupt(q) && v->dev.transport.interrupt)
		v->dev.transport.interrupt(&v->dev, VSOCK_EVQ);
}

/* ---- transmit: packets from the guest ------------------------------------ */

static void credit_from(struct virtio_vsock *v, struct vconn *c,
			const struct virtio_vsock_hdr *h)
{
	c->peer_buf_alloc = le32toh(h->buf_alloc);
	c->peer_fwd_cnt = le32toh(h->fwd_cnt);
	vsock_mark_ready(v, c);
}

/* Something we cannot act on: reset it, unless it is a reset itself. */
static void refuse(struct virtio_vsock *v, struct vconn *c, uint32_t host_port,
		   uint32_t guest_port, uint16_t op)
{
	if (op == VIRTIO_VSOCK_OP_RST)
		return;
	if (c)
		conn_abort(v, c);
	else
		vsock_owe_rst(v, host_port, guest_port);
}

static void guest_request(struct virtio_vsock *v, const struct virtio_vsock_hdr *h,
			  uint32_t host_port, uint32_t guest_port)
{
	struct vconn *c;
	int fd = -1, ret;

	ret = v->free_head < 0 ? -EMFILE : vsock_host_connect(v, host_port, &fd);
	if (!ret) {
		c = vsock_conn_new(v, fd, VC_OPEN, host_port, guest_port);
		if (!c) {
			close(fd);
			ret = -EMFILE;
		}
	}
	if (ret) {
		/* Nobody listens on vsock_PORT (or too many connections). */
		log_debug("%s: guest port %u to host port %u: %s", v->name, guest_port,
			  host_port, strerror(-ret));
		atomic_fetch_add(&v->count.refused, 1);
		vsock_owe_rst(v, host_port, guest_port);
		return;
	}
	atomic_fetch_add(&v->count.guest_connects, 1);
	c->owe |= OWE_RESPONSE;
	credit_from(v, c, h);
}

static void guest_response(struct virtio_vsock *v, struct vconn *c)
{
	if (vsock_host_ok(c)) {
		conn_abort(v, c);
		return;
	}
	c->state = VC_OPEN;
	vsock_conn_set_deadline(v, c, 0);
	atomic_fetch_add(&v->count.host_connects, 1);
	vsock_mark_ready(v, c);
}

static void guest_shutdown(struct virtio_vsock *v, struct vconn *c, uint32_t flags)
{
	if (flags & VIRTIO_VSOCK_SHUTDOWN_RCV)
		c->peer_no_recv = true;
	if (flags & VIRTIO_VSOCK_SHUTDOWN_SEND) {
		c->peer_no_send = true;
		if (!c->len && !c->wr_shut) {
			shutdown(c->fd, SHUT_WR);
			c->wr_shut = true;
		}
	}
	if (!(c->peer_no_recv && c->peer_no_send) && c->state != VC_CLOSING)
		return;
	/* The guest closed its socket and waits for our reset. */
	vsock_owe_rst(v, c->host_port, c->guest_port);
	if (!c->len) {
		vsock_conn_free(v, c);
		return;
	}
	/* What it sent before still goes to the host, for a while. */
	vsock_conn_unhash(v, c);
	c->state = VC_LINGER;
	c->owe = 0;
	vsock_conn_set_deadline(v, c, v->now + VSOCK_TIMEOUT_MS);
}

static void guest_data(struct virtio_vsock *v, struct vconn *c, struct virtq_elem *e,
		       uint32_t len)
{
	/* Bytes the guest may have in our buffer: what it sent past our last word. */
	uint32_t in_use = c->fwd_cnt - c->fwd_told + c->len;
	unsigned int niov;
	int ret;

	if (!len)
		return;
	if ((uint64_t)in_use + len > v->buf_alloc) {
		atomic_fetch_add(&v->count.credit_violations, 1);
		log_debug("%s: guest port %u sent %u bytes past the credit it had", v->name,
			  c->guest_port, len);
		conn_abort(v, c);
		return;
	}
	niov = iov_slice(e->iov, e->out_num, VSOCK_HDR_LEN, len, v->slice);
	ret = vsock_host_write(v, c, v->slice, niov, len);
	if (ret) {
		conn_abort(v, c);
		return;
	}
	atomic_fetch_add(&v->count.from_guest_bytes, len);
	vsock_credit_check(v, c);
}

static void tx_packet(struct virtio_vsock *v, struct virtq_elem *e)
{
	struct virtio_vsock_hdr h;
	uint32_t len, host_port, guest_port;
	uint16_t op;
	struct vconn *c;

	if (e->out_len < VSOCK_HDR_LEN) {
		malformed(v, "a transmit buffer shorter than a packet header");
		return;
	}
	iov_to_buf(e->iov, e->out_num, 0, &h, VSOCK_HDR_LEN);
	len = le32toh(h.len);
	op = le16toh(h.op);
	guest_port = le32toh(h.src_port);
	host_port = le32toh(h.dst_port);
	if (le64toh(h.src_cid) != v->cid) {
		/* Not from this guest's address: nothing to answer to. */
		malformed(v, "a packet with another source CID");
		return;
	}
	if (le64toh(h.dst_cid) != VSOCK_HOST_CID ||
	    le16toh(h.type) != VIRTIO_VSOCK_TYPE_STREAM) {
		malformed(v, "a packet for another CID, or not a stream");
		refuse(v, NULL, host_port, guest_port, op);
		return;
	}
	c = vsock_conn_find(v, host_port, guest_port);
	if (len > e->out_len - VSOCK_HDR_LEN || len > VSOCK_PKT_MAX ||
	    (len && op != VIRTIO_VSOCK_OP_RW)) {
		malformed(v, "a packet length past its buffer or over 64 KiB");
		refuse(v, c, host_port, guest_port, op);
		return;
	}
	if (c && op != VIRTIO_VSOCK_OP_REQUEST)
		credit_from(v, c, &h);
	switch (op) {
	case VIRTIO_VSOCK_OP_REQUEST:
		if (c)
			refuse(v, c, host_port, guest_port, op);	/* already connected */
		else
			guest_request(v, &h, host_port, guest_port);
		return;
	case VIRTIO_VSOCK_OP_RESPONSE:
		if (c && c->state == VC_GUEST_WAIT && !(c->owe & OWE_REQUEST))
			guest_response(v, c);
		else
			refuse(v, c, host_port, guest_port, op);
		return;
	case VIRTIO_VSOCK_OP_RST:
		if (c)
			vsock_conn_free(v, c);
		return;
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		if (c && (c->state == VC_OPEN || c->state == VC_CLOSING))
			guest_shutdown(v, c, le32toh(h.flags));
		else
			refuse(v, c, host_port, guest_port, op);
		return;
	case VIRTIO_VSOCK_OP_RW:
		if (c && c->state == VC_OPEN && !c->peer_no_send)
			guest_data(v, c, e, len);
		else
			refuse(v, c, host_port, guest_port, op);
		return;
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
		if (!c)
			refuse(v, c, host_port, guest_port, op);
		return;
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		if (c) {
			c->owe |= OWE_CREDIT;
			vsock_mark_ready(v, c);
		} else {
			refuse(v, c, host_port, guest_port, op);
		}
		return;
	default:
		malformed(v, "a packet with an unknown op");
		refuse(v, c, host_port, guest_port, op);
		return;
	}
}

static void tx_publish(struct virtio_vsock *v)
{
	struct virtq *q = &v->dev.vq[VSOCK_TXQ];

	if (!v->tx_publish || !is_active(v))
		return;
	v->tx_publish = false;
	virtq_publish(q);
	if (virtq_should_interrupt(q) && v->dev.transport.interrupt)
		v->dev.transport.interrupt(&v->dev, VSOCK_TXQ);
}

static void tx_run(struct virtio_vsock *v)
{
	struct virtq *q = &v->dev.vq[VSOCK_TXQ];
	struct virtq_elem *e = &v->elem;

	for (int round = 0; round < TX_ROUNDS && v->tx_more && is_active(v); round++) {
		for (int n = 0; n < TX_BATCH; n++) {
			int ret = virtq_pop(q, e);

			if (ret < 0) {
				broken(v, "malformed transmit descriptor chain");
				return;
			}
			if (ret == 0) {
				if (virtq_enable_notify(q))
					continue;
				v->tx_more = false;
				break;
			}
			tx_packet(v, e);
			/* The device writes nothing into a transmit chain. */
			virtq_push(q, e->head, 0);
			v->tx_publish = true;
		}
		tx_publish(v);
	}
}

/* ---- the host's side of connections ------------------------------------ */

/* The host socket is closed (both ways): tell the guest once its data is out. */
static void host_gone(struct virtio_vsock *v, struct vconn *c)
{
	c->host_hup = true;
	c->readable = true;		/* read to the end of file */
	if (c->state == VC_GUEST_WAIT) {
		/* The client left before the guest answered. */
		conn_abort(v, c);
		return;
	}
	if (c->state == VC_LINGER) {
		vsock_conn_free(v, c);
		return;
	}
	if (c->host_eof || c->peer_no_recv) {
		/* Even a guest done sending hears it: that ends its socket. */
		c->host_eof = true;
		c->owe |= OWE_SHUTDOWN;
		c->shutdown_flags |= SHUT_BOTH;
	}
}

static void conn_event(struct virtio_vsock *v, uint64_t tag, uint32_t events)
{
	uint32_t slot = (uint32_t)(tag >> 8) & 0xFFFFFF, gen = (uint32_t)(tag >> 32);
	struct vconn *c;

	if (slot >= VSOCK_MAX_CONNS)
		return;
	c = &v->conns[slot];
	/* Freed (and perhaps reused) since: the event is stale. */
	if (c->state == VC_FREE || c->gen != gen)
		return;
	if (c->state == VC_LINE) {
		vsock_host_line(v, c, events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR));
		/* The rest of the event is the new connection's (bytes after the line, a close). */
		if (c->state != VC_GUEST_WAIT || c->gen != gen)
			return;
	}
	if ((events & EPOLLOUT) && c->len) {
		if (vsock_host_flush(v, c)) {
			if (c->state == VC_LINGER)
				vsock_conn_free(v, c);
			else
				conn_abort(v, c);
			return;
		}
		if (c->state == VC_LINGER && !c->len) {
			vsock_conn_free(v, c);
			return;
		}
		vsock_credit_check(v, c);
	}
	if (events & EPOLLIN)
		c->readable = true;
	if (events & (EPOLLHUP | EPOLLERR)) {
		host_gone(v, c);
		if (c->state == VC_FREE || c->gen != gen)
			return;
	}
	vsock_mark_ready(v, c);
}

static void deadlines(struct virtio_vsock *v)
{
	for (int i = 0; i < VSOCK_MAX_CONNS && v->deadlines; i++) {
		struct vconn *c = &v->conns[i];

		if (c->state == VC_FREE || !c->deadline || c->deadline > v->now)
			continue;
		atomic_fetch_add(&v->count.timeouts, 1);
		switch (c->state) {
		case VC_LINE:
			atomic_fetch_add(&v->count.host_aborted, 1);
			vsock_conn_free(v, c);
			break;
		case VC_CLOSING:
			/* The guest did not reset after our SHUTDOWN: we do. */
			vsock_owe_rst(v, c->host_port, c->guest_port);
			vsock_conn_free(v, c);
			break;
		default:
			conn_abort(v, c);
			break;
		}
	}
}

static void timer_update(struct virtio_vsock *v)
{
	struct itimerspec its = { 0 };
	bool want = v->deadlines > 0;

	if (want == v->timer_on)
		return;
	if (want) {
		its.it_interval.tv_nsec = VSOCK_TICK_MS * 1000000L;
		its.it_value = its.it_interval;
	}
	if (timerfd_settime(v->timer_fd, 0, &its, NULL) == 0)
		v->timer_on = want;
}

/* ---- the I/O thread ------------------------------------------------------- */

/* Forget every chain and connection: after a reset the rings are gone. */
static void quiesce(struct virtio_vsock *v)
{
	atomic_store(&v->active, false);
	vsock_conns_reset(v);
	v->rst_head = v->rst_len = 0;
	v->rx_starved = v->tx_more = false;
	v->rx_publish = v->tx_publish = false;
	v->event_pending = false;
}

static void transport_reset(struct virtio_vsock *v)
{
	/*
	 * After a restore the guest's connections point at host sockets that
	 * are gone; it resets them itself on this event, and keeps its
	 * listening sockets.  Ours are reset without a word (no RST: the
	 * event says it for all of them).
	 */
	vsock_conns_reset(v);
	v->rst_head = v->rst_len = 0;
	v->event_pending = true;
	atomic_fetch_add(&v->count.transport_resets, 1);
	ev_run(v);
}

static int state_save(struct virtio_vsock *v, json_t **out)
{
	struct virtq *q = &v->dev.vq[VSOCK_EVQ];

	*out = json_pack("{s:i, s:I, s:I, s:b, s:{s:i, s:i}}",
			 "version", 1,
			 "guest_cid", (json_int_t)v->cid,
			 "next_host_port", (json_int_t)v->next_host_port,
			 "event_pending", v->event_pending,
			 "event_queue", "last_avail", (int)q->last_avail,
			 "used_idx", (int)q->used_idx);
	return *out ? 0 : -ENOMEM;
}

struct restore_arg {
	const json_t *in;
	char *err;
	size_t errlen;
};

static int state_restore(struct virtio_vsock *v, struct restore_arg *a)
{
	json_t *evq = json_object_get(a->in, "event_queue");
	json_int_t cid = json_integer_value(json_object_get(a->in, "guest_cid"));
	json_int_t port = json_integer_value(json_object_get(a->in, "next_host_port"));
	json_t *la = json_object_get(evq, "last_avail"), *ui = json_object_get(evq, "used_idx");
	struct virtq *q = &v->dev.vq[VSOCK_EVQ];

	if (json_integer_value(json_object_get(a->in, "version")) != 1)
		return vmm_fail(a->err, a->errlen, "vsock state: unknown version");
	if (cid != (json_int_t)v->cid)
		return vmm_fail(a->err, a->errlen,
				"vsock state: saved with guest CID %lld, configured with %llu",
				(long long)cid, (unsigned long long)v->cid);
	if (port < VSOCK_HOST_PORT_FIRST || port > UINT32_MAX ||
	    !json_is_boolean(json_object_get(a->in, "event_pending")) ||
	    !json_is_integer(la) || !json_is_integer(ui) ||
	    json_integer_value(la) < 0 || json_integer_value(la) > 0xFFFF ||
	    json_integer_value(ui) < 0 || json_integer_value(ui) > 0xFFFF)
		return vmm_fail(a->err, a->errlen, "vsock state: a field is missing or out of range");
	v->next_host_port = (uint32_t)port;
	v->event_pending = json_is_true(json_object_get(a->in, "event_pending"));
	/* The event queue's position, where the guest's rings say it is. */
	if (q->enabled) {
		q->last_avail = (uint16_t)json_integer_value(la);
		q->used_idx = (uint16_t)json_integer_value(ui);
		q->signalled = q->used_idx;
	}
	return 0;
}

static bool handle_ctl(struct virtio_vsock *v)
{
	enum vsock_ctl cmd;
	uint64_t discard;
	void *arg;
	int ret = 0;

	if (read(v->ctl_fd, &discard, sizeof(discard)) < 0)
		discard = 0;
	pthread_mutex_lock(&v->lock);
	cmd = v->ctl;
	arg = v->ctl_arg;
	pthread_mutex_unlock(&v->lock);
	switch (cmd) {
	case VCTL_NONE:
		return false;
	case VCTL_RESET:
	case VCTL_STOP:
		quiesce(v);
		break;
	case VCTL_TRANSPORT_RESET:
		transport_reset(v);
		break;
	case VCTL_SAVE:
		ret = state_save(v, arg);
		break;
	case VCTL_RESTORE:
		ret = state_restore(v, arg);
		break;
	case VCTL_PAUSE:
		v->paused = true;
		break;
	case VCTL_RESUME:
		v->paused = false;
		break;
	}
	pthread_mutex_lock(&v->lock);
	v->ctl = VCTL_NONE;
	v->ctl_ret = ret;
	v->ctl_done = true;
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
	return cmd == VCTL_STOP;
}

static void drain(int fd)
{
	uint64_t discard;

	if (read(fd, &discard, sizeof(discard)) < 0)
		discard = 0;
}

/* Work that needs no event to go on with. */
static bool work_pending(struct virtio_vsock *v)
{
	return is_active(v) && (v->tx_more ||
				(!v->rx_starved && (v->rst_len || v->ready_head >= 0)));
}

static bool handle_event(struct virtio_vsock *v, const struct epoll_event *ev)
{
	uint64_t tag = ev->data.u64;

	switch (tag & 0xFF) {
	case VTAG_KICK_RX:
		drain(v->kick_fd[VSOCK_RXQ]);
		v->rx_starved = false;
		break;
	case VTAG_KICK_TX:
		drain(v->kick_fd[VSOCK_TXQ]);
		v->tx_more = true;
		break;
	case VTAG_KICK_EV:
		drain(v->kick_fd[VSOCK_EVQ]);
		ev_run(v);
		break;
	case VTAG_CTL:
		return handle_ctl(v);
	case VTAG_TIMER:
		drain(v->timer_fd);
		deadlines(v);
		break;
	case VTAG_LISTEN:
		vsock_host_accept(v);
		break;
	case VTAG_CONN:
		conn_event(v, tag, ev->events);
		break;
	}
	return false;
}

static void *vsock_thread(void *arg)
{
	struct virtio_vsock *v = arg;

	pthread_setname_np(pthread_self(), "virtio-vsock");
	for (;;) {
		struct epoll_event evs[64];
		int n;

		/*
		 * Paused for a capture: requests only.  The other events stay
		 * in epoll's ready list (edge-triggered ones too, since they
		 * are not collected) until it resumes.
		 */
		if (v->paused) {
			struct pollfd p = { .fd = v->ctl_fd, .events = POLLIN };

			if (poll(&p, 1, -1) > 0 && handle_ctl(v))
				return NULL;
			continue;
		}
		n = epoll_wait(v->epfd, evs, ARRAY_SIZE(evs), work_pending(v) ? 0 : -1);

		v->now = mono_ms();
		for (int i = 0; i < n; i++)
			if (handle_event(v, &evs[i]))
				return NULL;
		tx_run(v);
		rx_run(v);
		timer_update(v);
	}
}

void vsock_run_once(struct virtio_vsock *v)
{
	struct epoll_event evs[64];
	int n = epoll_wait(v->epfd, evs, ARRAY_SIZE(evs), 0);

	v->now = mono_ms();
	for (int i = 0; i < n; i++)
		handle_event(v, &evs[i]);
	tx_run(v);
	rx_run(v);
	timer_update(v);
}

/* Ask the thread to act and wait until it has; returns its result. */
static int ctl_request(struct virtio_vsock *v, enum vsock_ctl cmd, void *arg)
{
	uint64_t one = 1;
	int ret;

	pthread_mutex_lock(&v->ctl_serial);
	pthread_mutex_lock(&v->lock);
	v->ctl = cmd;
	v->ctl_arg = arg;
	v->ctl_done = false;
	if (write(v->ctl_fd, &one, sizeof(one)) < 0) {
		/* A wakeup is pending already. */
	}
	while (!v->ctl_done)
		pthread_cond_wait(&v->cond, &v->lock);
	ret = v->ctl_ret;
	pthread_mutex_unlock(&v->lock);
	pthread_mutex_unlock(&v->ctl_serial);
	return ret;
}

/* Run @cmd in the I/O thread, or here when there is none yet. */
static int run_ctl(struct virtio_vsock *v, enum vsock_ctl cmd, void *arg)
{
	if (v->thread_started)
		return ctl_request(v, cmd, arg);
	switch (cmd) {
	case VCTL_RESET:
	case VCTL_STOP:
		quiesce(v);
		return 0;
	case VCTL_TRANSPORT_RESET:
		transport_reset(v);
		return 0;
	case VCTL_SAVE:
		return state_save(v, arg);
	case VCTL_RESTORE:
		return state_restore(v, arg);
	case VCTL_PAUSE:
	case VCTL_RESUME:
		v->paused = cmd == VCTL_PAUSE;
		return 0;
	default:
		return 0;
	}
}

/* ---- the device -------------------------------------------------------- */

static void vsock_config_read(struct virtio_dev *dev, uint32_t off, uint8_t *data,
			      unsigned int len)
{
	struct virtio_vsock *v = dev->impl;
	struct virtio_vsock_config c = { .guest_cid = htole64(v->cid) };

	if (off + len <= sizeof(c))
		memcpy(data, (uint8_t *)&c + off, len);
	else
		memset(data, 0, len);
}

static int vsock_activate(struct virtio_dev *dev)
{
	struct virtio_vsock *v = dev->impl;
	uint64_t one = 1;

	atomic_store(&v->active, true);
	/* Buffers, packets and an owed event may be waiting: look now. */
	for (int q = 0; q < VSOCK_NQUEUES; q++)
		if (v->kick_fd[q] >= 0 && write(v->kick_fd[q], &one, sizeof(one)) < 0) {
			/* Saturated: a kick is pending anyway. */
		}
	return 0;
}

static void vsock_reset(struct virtio_dev *dev)
{
	run_ctl(dev->impl, VCTL_RESET, NULL);
}

/* The device's record in its PCI function's section (docs/saved-state.md). */
enum { REC_VSOCK_STATE = 200 };

static void vsock_dev_save(struct virtio_dev *dev, struct ss_section *s)
{
	json_t *state = NULL;
	char *text;

	if (run_ctl(dev->impl, VCTL_SAVE, &state))
		return;		/* no record: the restore refuses it by name */
	text = json_dumps(state, JSON_COMPACT | JSON_SORT_KEYS);
	if (text)
		ss_put(s, REC_VSOCK_STATE, text, strlen(text));
	free(text);
	json_decref(state);
}

/*
 * Connections are not saved: the host sockets they went to are gone.
 * The guest hears a TRANSPORT_RESET once the device runs again, and
 * resets its own (its listening sockets stay), as after a migration.
 */
static int vsock_dev_restore(struct virtio_dev *dev, struct ss_rsection *s, char *err,
			     size_t errlen)
{
	struct virtio_vsock *v = dev->impl;
	const void *text;
	json_t *state;
	size_t len;
	int ret;

	if (ss_get_var(s, REC_VSOCK_STATE, &text, &len))
		return vmm_fail(err, errlen, "%s: the saved state has no vsock record", v->name);
	state = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(state)) {
		json_decref(state);
		return vmm_fail(err, errlen, "%s: the saved vsock record is not a JSON object",
				v->name);
	}
	ret = vsock_state_restore(v, state, err, errlen);
	json_decref(state);
	if (!ret)
		vsock_transport_reset(v);
	return ret;
}

static const struct virtio_dev_ops vsock_ops = {
	.name = "vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.pci_class = 0x078000,		/* communication controller, other */
	.config_size = sizeof(struct virtio_vsock_config),
	.config_read = vsock_config_read,
	.activate = vsock_activate,
	.reset = vsock_reset,
	.save = vsock_dev_save,
	.restore = vsock_dev_restore,
};

struct virtio_dev *virtio_vsock_dev(struct virtio_vsock *v)
{
	return &v->dev;
}

bool vsock_cid_valid(uint64_t cid)
{
	/* 0-2 are the hypervisor, local and host; -1U is "any". */
	return cid >= 3 && cid < UINT32_MAX;
}

static int add_watch(struct virtio_vsock *v, int fd, uint64_t tag, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.u64 = tag };

	return epoll_ctl(v->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int virtio_vsock_create(const struct vm_vsock_config *cfg, const char *dir,
			const struct guest_mem *mem, struct virtio_vsock **out,
			char *err, size_t errlen)
{
	struct virtio_vsock *v;
	int ret;

	if (!vsock_cid_valid(cfg->cid))
		return vmm_fail(err, errlen, "vsock: guest CID %llu is reserved: 3 to 4294967294",
				(unsigned long long)cfg->cid);
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->cid = cfg->cid;
	v->buf_alloc = VSOCK_BUF_ALLOC;
	v->next_host_port = VSOCK_HOST_PORT_FIRST;
	snprintf(v->name, sizeof(v->name), "vsock cid %llu", (unsigned long long)v->cid);
	v->epfd = v->ctl_fd = v->timer_fd = v->dirfd = v->listen_fd = -1;
	for (int q = 0; q < VSOCK_NQUEUES; q++)
		v->kick_fd[q] = -1;
	pthread_mutex_init(&v->lock, NULL);
	pthread_mutex_init(&v->ctl_serial, NULL);
	pthread_cond_init(&v->cond, NULL);
	v->elem.iov = v->iov;
	v->elem.cap = VSOCK_SEGS;
	ret = virtio_dev_init(&v->dev, &vsock_ops, v, VSOCK_NQUEUES, VSOCK_QUEUE_MAX,
			      1ULL << VSOCK_STREAM_FEATURE, mem);
	if (ret)
		goto fail;
	v->conns = calloc(VSOCK_MAX_CONNS, sizeof(*v->conns));
	v->epfd = epoll_create1(EPOLL_CLOEXEC);
	v->ctl_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	v->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	ret = -ENOMEM;
	if (!v->conns || v->epfd < 0 || v->ctl_fd < 0 || v->timer_fd < 0)
		goto fail;
	vsock_conns_init(v);
	ret = vsock_host_open(v, dir, err, errlen);
	if (ret) {
		virtio_vsock_destroy(v);
		return ret;
	}
	if ((ret = add_watch(v, v->ctl_fd, VTAG_CTL, EPOLLIN)) ||
	    (ret = add_watch(v, v->timer_fd, VTAG_TIMER, EPOLLIN)) ||
	    (ret = add_watch(v, v->listen_fd, VTAG_LISTEN, EPOLLIN | EPOLLET)))
		goto fail;
	*out = v;
	return 0;
fail:
	snprintf(err, errlen, "%s: cannot set up the device: %s", v->name, strerror(-ret));
	virtio_vsock_destroy(v);
	return ret;
}

void vsock_set_buf_alloc(struct virtio_vsock *v, uint32_t bytes)
{
	v->buf_alloc = bytes;
}

int virtio_vsock_start(struct virtio_vsock *v, const int kick_fds[3])
{
	static const enum vsock_tag tags[] = { VTAG_KICK_RX, VTAG_KICK_TX, VTAG_KICK_EV };
	int ret;

	for (int q = 0; q < VSOCK_NQUEUES; q++) {
		v->kick_fd[q] = kick_fds[q];
		ret = add_watch(v, kick_fds[q], tags[q], EPOLLIN);
		if (ret)
			return ret;
	}
	ret = pthread_create(&v->thread, NULL, vsock_thread, v);
	if (ret)
		return -ret;
	v->thread_started = true;
	return 0;
}

void vsock_transport_reset(struct virtio_vsock *v)
{
	run_ctl(v, VCTL_TRANSPORT_RESET, NULL);
}

int vsock_state_save(struct virtio_vsock *v, json_t **out)
{
	return run_ctl(v, VCTL_SAVE, out);
}

int vsock_state_restore(struct virtio_vsock *v, const json_t *in, char *err, size_t errlen)
{
	struct restore_arg a = { .in = in, .err = err, .errlen = errlen };

	return run_ctl(v, VCTL_RESTORE, &a);
}

json_t *vsock_stats_json(struct virtio_vsock *v)
{
	struct vsock_counters *c = &v->count;

	return json_pack("{s:I, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
		"cid", (json_int_t)v->cid,
		"connections", (int)atomic_load(&c->conns),
		"guest_connects", (json_int_t)atomic_load(&c->guest_connects),
		"host_connects", (json_int_t)atomic_load(&c->host_connects),
		"refused", (json_int_t)atomic_load(&c->refused),
		"to_guest_bytes", (json_int_t)atomic_load(&c->to_guest_bytes),
		"from_guest_bytes", (json_int_t)atomic_load(&c->from_guest_bytes),
		"rst_sent", (json_int_t)atomic_load(&c->rst_sent),
		"rst_dropped", (json_int_t)atomic_load(&c->rst_dropped),
		"malformed", (json_int_t)atomic_load(&c->malformed),
		"credit_violations", (json_int_t)atomic_load(&c->credit_violations),
		"host_aborted", (json_int_t)atomic_load(&c->host_aborted),
		"timeouts", (json_int_t)atomic_load(&c->timeouts),
		"transport_resets", (json_int_t)atomic_load(&c->transport_resets));
}

void virtio_vsock_destroy(struct virtio_vsock *v)
{
	if (!v)
		return;
	if (v->thread_started) {
		ctl_request(v, VCTL_STOP, NULL);
		pthread_join(v->thread, NULL);
	}
	if (v->conns)
		vsock_conns_reset(v);
	vsock_host_close(v);
	if (v->epfd >= 0)
		close(v->epfd);
	if (v->ctl_fd >= 0)
		close(v->ctl_fd);
	if (v->timer_fd >= 0)
		close(v->timer_fd);
	if (v->dev.vq)
		virtio_dev_destroy(&v->dev);
	free(v->conns);
	pthread_mutex_destroy(&v->lock);
	pthread_mutex_destroy(&v->ctl_serial);
	pthread_cond_destroy(&v->cond);
	free(v);
}

/* ---- in a VM ------------------------------------------------------------ */

struct vsock_attachment {
	struct vm *vm;
	struct virtio_vsock *vsock;
	struct virtio_pci *vp;
};

static void attachment_reset(void *opaque)
{
	struct vsock_attachment *a = opaque;

	virtio_pci_reset(a->vp);
}

/* A capture: the device stops touching guest memory until it is over. */
static void attachment_quiesce(void *opaque, bool on)
{
	run_ctl(((struct vsock_attachment *)opaque)->vsock, on ? VCTL_PAUSE : VCTL_RESUME, NULL);
}

static void attachment_destroy(void *opaque)
{
	struct vsock_attachment *a = opaque;

	if (a->vm->vsock == a->vsock)
		a->vm->vsock = NULL;
	/* The I/O thread stops before the transport goes. */
	virtio_vsock_destroy(a->vsock);
	virtio_pci_destroy(a->vp);
	free(a);
}

int virtio_vsock_attach(struct vm *vm, const struct vm_vsock_config *cfg, const char *dir,
			char *err, size_t errlen)
{
	struct vsock_attachment *a = calloc(1, sizeof(*a));
	int kicks[VSOCK_NQUEUES], ret;

	if (!a)
		return -ENOMEM;
	a->vm = vm;
	ret = virtio_vsock_create(cfg, dir, &vm->mem, &a->vsock, err, errlen);
	if (ret) {
		free(a);
		return ret;
	}
	a->vp = virtio_pci_create(vm, &a->vsock->dev, err, errlen);
	if (!a->vp) {
		virtio_vsock_destroy(a->vsock);
		free(a);
		return -ENOMEM;
	}
	for (int q = 0; q < VSOCK_NQUEUES; q++)
		kicks[q] = virtio_pci_kick_fd(a->vp, (unsigned int)q);
	ret = virtio_vsock_start(a->vsock, kicks);
	if (!ret)
		ret = vm_add_device(vm, attachment_reset, attachment_destroy, NULL, a);
	if (!ret)
		vm_device_quiesce(vm, attachment_quiesce);
	if (ret) {
		snprintf(err, errlen, "%s: cannot start its I/O thread: %s", a->vsock->name,
			 strerror(-ret));
		attachment_destroy(a);
		return ret;
	}
	vm->vsock = a->vsock;
	return 0;
}
