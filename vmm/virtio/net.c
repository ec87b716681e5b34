// SPDX-License-Identifier: MIT
/*
 * virtio-net (virtio 1.2, 5.1): one queue pair, no offloads, no control
 * queue.  The backend is an AF_UNIX SOCK_SEQPACKET socket carrying one
 * plain Ethernet frame per message (the switch's port, or another VM's
 * NIC); the 12-byte virtio_net_hdr is added and stripped here.
 *
 * Each NIC has an I/O thread (never a vCPU) that sleeps on the two kick
 * eventfds, the socket and a control eventfd:
 *
 *  - transmit: chains are taken in batches, their frames sent in place
 *    from guest memory with one sendmmsg() per batch.  When the socket is
 *    full the thread keeps what it took, stops taking more and waits for
 *    EPOLLOUT: the guest's ring fills up and the guest is pushed back;
 *    nothing is dropped.
 *  - receive: each receive slot holds one guest chain; recvmmsg() writes
 *    frames straight into the chains after the header, with a bounce
 *    buffer behind each slot for the part of a frame that does not fit.
 *    With VIRTIO_NET_F_MRG_RXBUF that part is copied into further chains
 *    (num_buffers in the header says how many).  Without guest buffers
 *    the thread stops reading the socket until the guest adds some, so
 *    frames wait in the socket (and, when it is full, it is the switch
 *    that drops them).
 *
 * Every batch is published with at most one interrupt per queue.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_net.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "vmm/virtio/virtio.h"

#define NET_QUEUE_MAX	256
#define RXQ		0
#define TXQ		1
#define NET_BATCH	32		/* frames per recvmmsg/sendmmsg */
#define NET_ELEM_SEGS	128		/* buffers per chain, as virtio-blk */
#define HDR_LEN		sizeof(struct virtio_net_hdr_v1)
#define FRAME_MIN	14		/* an Ethernet header */
#define FRAME_MAX	65535
#define BOUNCE_SIZE	65536
/* Batches per wakeup before the other direction gets its turn. */
#define NET_ROUNDS	4
/* Frames counted (and dropped) from a socket we are letting go of. */
#define DRAIN_MAX	4096
/* Device configuration: mac, status, max_virtqueue_pairs (no MTU). */
#define NET_CONFIG_SIZE	offsetof(struct virtio_net_config, mtu)

enum ctl_cmd {
	CTL_NONE,
	CTL_RESET,
	CTL_STOP,
	CTL_CONNECT,
	CTL_DISCONNECT,
	CTL_PAUSE,		/* a capture: give back what was taken, stop */
};

enum tag {
	TAG_RX_KICK,
	TAG_TX_KICK,
	TAG_CTL,
	TAG_SOCK,		/* + the socket's generation << 8 */
};

enum slot_state {
	SLOT_EMPTY,		/* no chain */
	SLOT_READY,		/* a chain, waiting for a frame */
	SLOT_FULL,		/* a chain and a received frame */
	SLOT_LENT,		/* its chain is being tried as an extra buffer */
};

struct rx_slot {
	enum slot_state state;
	struct virtq_elem elem;
	struct iovec iov[NET_ELEM_SEGS];
	struct iovec msg_iov[NET_ELEM_SEGS + 1];
	uint8_t *bounce;		/* BOUNCE_SIZE bytes */
	uint32_t len;			/* the frame, when FULL */
};

struct tx_slot {
	struct virtq_elem elem;
	struct iovec iov[NET_ELEM_SEGS];
	struct iovec frame[NET_ELEM_SEGS];
	unsigned int nframe;
	uint32_t len;
};

/* A further buffer of a merged frame, taken on trial. */
struct extra {
	uint16_t head;
	int16_t slot;			/* lent by this slot, or -1: popped */
	uint32_t len;
};

struct virtio_net {
	struct virtio_dev dev;
	uint8_t mac[6];
	char name[32];			/* for the log */
	_Atomic uint16_t link;		/* VIRTIO_NET_S_LINK_UP or 0 */
	_Atomic bool active;		/* DRIVER_OK and not broken */

	pthread_t thread;
	bool thread_started;
	int epfd;
	int ctl_fd;
	int kick_fd[2];
	pthread_mutex_t lock;		/* ctl handshake */
	/*
	 * One request at a time: a vCPU resetting the device and the control
	 * socket connecting a backend must not overwrite each other's slot.
	 */
	pthread_mutex_t ctl_serial;
	pthread_cond_t cond;
	enum ctl_cmd ctl;
	int ctl_arg;			/* the socket for CTL_CONNECT */
	bool ctl_done;

	/* Owned by the I/O thread (or by the caller before it starts). */
	int sock;			/* the backend, or -1 */
	uint32_t sock_gen;
	uint32_t sock_events;		/* what epoll watches on it */

	struct rx_slot *rx;		/* NET_BATCH */
	uint8_t *bounce;		/* NET_BATCH * BOUNCE_SIZE, mapped */
	unsigned int pend[NET_BATCH];	/* FULL slots, in arrival order */
	unsigned int npend, pend_next;
	bool rx_starved;		/* waiting for the guest's buffers */
	uint16_t rx_wait_idx;		/* where the ring ran dry for a frame */
	struct virtq_elem scratch;
	struct iovec scratch_iov[NET_ELEM_SEGS];
	struct extra extras[NET_QUEUE_MAX + NET_BATCH];
	bool rx_publish;

	struct tx_slot *tx;		/* NET_BATCH */
	unsigned int tx_count, tx_next;	/* taken, and sent so far */
	bool tx_blocked;		/* the socket is full: wait for EPOLLOUT */
	/*
	 * The ring may hold more: set by kicks and by the end of a block
	 * (kicks seen while blocked were not acted on, and with EVENT_IDX
	 * the driver may not kick again); cleared when it is found empty.
	 */
	bool tx_more;
	bool tx_publish;

	/* Counters, written by the I/O thread, read by "status". */
	_Atomic uint64_t in_packets, in_bytes, out_packets, out_bytes;
	_Atomic uint64_t rx_dropped, tx_errors;
};

static bool is_active(struct virtio_net *n)
{
	return atomic_load(&n->active);
}

static void broken(struct virtio_net *n, const char *why)
{
	atomic_store(&n->active, false);
	virtio_dev_broken(&n->dev, why);
}

/* ---- completing transmit chains ------------------------------------------- */

static void tx_publish(struct virtio_net *n)
{
	struct virtq *q = &n->dev.vq[TXQ];

	if (!n->tx_publish || !is_active(n))
		return;
	n->tx_publish = false;
	virtq_publish(q);
	if (virtq_should_interrupt(q) && n->dev.transport.interrupt)
		n->dev.transport.interrupt(&n->dev, TXQ);
}

static void tx_complete(struct virtio_net *n, struct tx_slot *t, bool sent)
{
	if (sent) {
		atomic_fetch_add(&n->in_packets, 1);
		atomic_fetch_add(&n->in_bytes, t->len);
	} else {
		atomic_fetch_add(&n->tx_errors, 1);
	}
	/* The device wrote nothing into a transmit chain. */
	virtq_push(&n->dev.vq[TXQ], t->elem.head, 0);
	n->tx_publish = true;
}

/* Frames taken and not sent: given back to the guest as not sent. */
static void tx_drop_taken(struct virtio_net *n)
{
	if (is_active(n))
		for (unsigned int i = n->tx_next; i < n->tx_count; i++)
			tx_complete(n, &n->tx[i], false);
	n->tx_count = n->tx_next = 0;
}

/* ---- the backend socket --------------------------------------------------- */

static void sock_interest(struct virtio_net *n)
{
	struct epoll_event ev = { .data.u64 = TAG_SOCK | (uint64_t)n->sock_gen << 8 };

	if (n->sock < 0)
		return;
	ev.events = EPOLLRDHUP;
	if (is_active(n) && !n->rx_starved)
		ev.events |= EPOLLIN;
	if (n->tx_blocked)
		ev.events |= EPOLLOUT;
	if (ev.events == n->sock_events)
		return;
	if (epoll_ctl(n->epfd, EPOLL_CTL_MOD, n->sock, &ev) == 0)
		n->sock_events = ev.events;
}

/*
 * Let the backend go: what it had sent that the guest did not take yet
 * is counted as dropped, frames taken for it are dropped too.
 */
static void backend_close(struct virtio_net *n, const char *why, bool announce)
{
	unsigned int drained = 0;
	char byte;

	if (n->sock < 0)
		return;
	epoll_ctl(n->epfd, EPOLL_CTL_DEL, n->sock, NULL);
	while (drained < DRAIN_MAX &&
	       recv(n->sock, &byte, 1, MSG_DONTWAIT | MSG_TRUNC) > 0)
		drained++;
	atomic_fetch_add(&n->rx_dropped, drained);
	close(n->sock);
	n->sock = -1;
	n->sock_events = 0;
	n->tx_blocked = false;
	tx_drop_taken(n);
	tx_publish(n);
	if (!announce)
		return;
	log_info("%s: link down (%s)", n->name, why);
	atomic_store(&n->link, 0);
	virtio_config_changed(&n->dev);
}

static int backend_open(struct virtio_net *n, int fd)
{
	struct epoll_event ev;

	backend_close(n, "replaced", false);
	n->sock = fd;
	n->sock_gen++;
	n->sock_events = EPOLLRDHUP;
	ev.events = EPOLLRDHUP;
	ev.data.u64 = TAG_SOCK | (uint64_t)n->sock_gen << 8;
	if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int ret = -errno;

		close(fd);
		n->sock = -1;
		if (atomic_exchange(&n->link, 0))
			virtio_config_changed(&n->dev);
		return ret;
	}
	sock_interest(n);
	log_info("%s: link up", n->name);
	atomic_store(&n->link, VIRTIO_NET_S_LINK_UP);
	virtio_config_changed(&n->dev);
	return 0;
}

/* ---- transmit ------------------------------------------------------------ */

/*
 * Whether chain @t holds a frame we can send: a header asking for no
 * offload (none was offered) and 14 to 65535 bytes of frame.
 */
static bool tx_check(struct virtio_net *n, struct tx_slot *t)
{
	struct virtq_elem *e = &t->elem;
	struct virtio_net_hdr_v1 hdr;

	if (e->out_len < HDR_LEN || e->out_len - HDR_LEN < FRAME_MIN ||
	    e->out_len - HDR_LEN > FRAME_MAX) {
		log_debug("%s: dropping a transmit chain of %llu bytes", n->name,
			  (unsigned long long)e->out_len);
		return false;
	}
	iov_to_buf(e->iov, e->out_num, 0, &hdr, HDR_LEN);
	if (hdr.gso_type != VIRTIO_NET_HDR_GSO_NONE ||
	    (hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM))
		return false;
	t->len = (uint32_t)(e->out_len - HDR_LEN);
	t->nframe = iov_slice(e->iov, e->out_num, HDR_LEN, t->len, t->frame);
	return true;
}

/* Take up to a batch of frames; false if the ring was malformed. */
static bool tx_take(struct virtio_net *n)
{
	struct virtq *q = &n->dev.vq[TXQ];

	n->tx_count = n->tx_next = 0;
	while (n->tx_count < NET_BATCH) {
		struct tx_slot *t = &n->tx[n->tx_count];
		int ret = virtq_pop(q, &t->elem);

		if (ret == 0) {
			if (virtq_enable_notify(q))
				continue;	/* raced with the driver */
			n->tx_more = false;
			return true;
		}
		if (ret < 0) {
			broken(n, "malformed transmit descriptor chain");
			return false;
		}
		if (!tx_check(n, t) || n->sock < 0) {
			/* Malformed frames, and frames with no link, go nowhere. */
			tx_complete(n, t, false);
			continue;
		}
		n->tx_count++;
	}
	n->tx_more = true;
	return true;
}

/* Send what was taken; stops when the socket is full. */
static void tx_send(struct virtio_net *n)
{
	struct mmsghdr msgs[NET_BATCH];

	while (n->tx_next < n->tx_count) {
		unsigned int k = n->tx_count - n->tx_next;
		int ret;

		for (unsigned int i = 0; i < k; i++) {
			struct tx_slot *t = &n->tx[n->tx_next + i];

			msgs[i] = (struct mmsghdr){ .msg_hdr = {
				.msg_iov = t->frame, .msg_iovlen = t->nframe } };
		}
		ret = sendmmsg(n->sock, msgs, k, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (ret > 0) {
			for (int i = 0; i < ret; i++)
				tx_complete(n, &n->tx[n->tx_next + i], true);
			n->tx_next += (unsigned int)ret;
			continue;
		}
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
				errno == ENOBUFS)) {
			/* Full: keep the frames, push the guest back. */
			n->tx_blocked = true;
			sock_interest(n);
			return;
		}
		if (ret < 0 && errno == EMSGSIZE) {
			tx_complete(n, &n->tx[n->tx_next++], false);
			continue;
		}
		backend_close(n, ret < 0 ? strerror(errno) : "send failed", true);
		return;
	}
	n->tx_count = n->tx_next = 0;
}

static void tx_run(struct virtio_net *n)
{
	for (int round = 0; round < NET_ROUNDS && is_active(n) && !n->tx_blocked;
	     round++) {
		if (n->tx_next == n->tx_count) {
			if (!n->tx_more)
				break;
			if (!tx_take(n))
				return;
		}
		if (n->tx_next < n->tx_count)
			tx_send(n);
		tx_publish(n);
	}
	tx_publish(n);
}

/* More to do without waiting for an event? */
static bool tx_pending(struct virtio_net *n)
{
	return is_active(n) && !n->tx_blocked &&
	       (n->tx_more || n->tx_next < n->tx_count);
}

/* ---- receive ------------------------------------------------------------- */

static void rx_publish(struct virtio_net *n)
{
	struct virtq *q = &n->dev.vq[RXQ];

	if (!n->rx_publish || !is_active(n))
		return;
	n->rx_publish = false;
	virtq_publish(q);
	if (virtq_should_interrupt(q) && n->dev.transport.interrupt)
		n->dev.transport.interrupt(&n->dev, RXQ);
}

/*
 * The next chain of the receive ring: 1 taken, 0 none, -EINVAL the ring
 * is malformed or the chain cannot even hold the header (a driver must
 * give at least that much; virtio 1.2, 5.1.6.3.1).
 */
static int rx_pop(struct virtio_net *n, struct virtq_elem *e)
{
	int ret = virtq_pop(&n->dev.vq[RXQ], e);

	if (ret == 1 && e->in_len < HDR_LEN)
		return -EINVAL;
	return ret;
}

/* Give slots chains; the READY ones go into @order.  <0: malformed. */
static int rx_prepare(struct virtio_net *n, unsigned int *order)
{
	unsigned int count = 0;
	bool ring_empty = false;

	for (unsigned int i = 0; i < NET_BATCH; i++) {
		struct rx_slot *s = &n->rx[i];

		if (s->state == SLOT_EMPTY && !ring_empty) {
			int ret = rx_pop(n, &s->elem);

			if (ret < 0)
				return ret;
			if (ret == 1)
				s->state = SLOT_READY;
			else
				ring_empty = true;
		}
		if (s->state == SLOT_READY)
			order[count++] = i;
	}
	return (int)count;
}

static void rx_drop(struct virtio_net *n, struct rx_slot *s)
{
	atomic_fetch_add(&n->rx_dropped, 1);
	s->state = SLOT_READY;		/* the chain waits for the next frame */
}

/* Trial extras go back: lent chains to their slots, popped ones to the ring. */
static void rx_undo_extras(struct virtio_net *n, unsigned int nx, uint16_t popped)
{
	for (unsigned int i = 0; i < nx; i++)
		if (n->extras[i].slot >= 0)
			n->rx[n->extras[i].slot].state = SLOT_READY;
	virtq_rewind(&n->dev.vq[RXQ], popped);
}

/* A chain for the next piece of a merged frame; 0 if there is none. */
static int rx_take_extra(struct virtio_net *n, struct virtq_elem **e, int16_t *slot)
{
	for (unsigned int i = 0; i < NET_BATCH; i++) {
		if (n->rx[i].state == SLOT_READY) {
			n->rx[i].state = SLOT_LENT;
			*e = &n->rx[i].elem;
			*slot = (int16_t)i;
			return 1;
		}
	}
	*e = &n->scratch;
	*slot = -1;
	return rx_pop(n, &n->scratch);
}

/*
 * The part of a frame past its first chain, into further chains.
 * 1: all placed (*nx extras); 0: not enough buffers yet; 2: it can never
 * fit (the device holds every buffer of the ring); <0: malformed ring.
 */
static int rx_place_tail(struct virtio_net *n, struct rx_slot *s, size_t room,
			 unsigned int *nx)
{
	struct virtq *q = &n->dev.vq[RXQ];
	size_t done = room;
	uint16_t popped = 0;

	*nx = 0;
	while (done < s->len) {
		struct extra *x = &n->extras[*nx];
		struct virtq_elem *e;
		size_t chunk;
		int ret;

		if (*nx == ARRAY_SIZE(n->extras))
			ret = 0;
		else
			ret = rx_take_extra(n, &e, &x->slot);
		if (ret <= 0) {
			bool never = ret == 0 && virtq_held(q) >= q->size;

			/* Wait for buffers past those we are giving back. */
			n->rx_wait_idx = q->last_avail;
			rx_undo_extras(n, *nx, popped);
			return ret < 0 ? ret : never ? 2 : 0;
		}
		if (x->slot < 0)
			popped++;
		chunk = e->in_len < s->len - done ? e->in_len : s->len - done;
		/* A chain given back on trial may be written: it stays ours. */
		iov_from_buf(e->iov + e->out_num, e->in_num, 0, s->bounce + (done - room),
			     chunk);
		x->head = e->head;
		x->len = (uint32_t)chunk;
		done += chunk;
		(*nx)++;
	}
	return 1;
}

/* Deliver the frame in slot @s: 1 done (or dropped), 0 wait, <0 malformed. */
static int rx_deliver(struct virtio_net *n, struct rx_slot *s)
{
	struct virtq *q = &n->dev.vq[RXQ];
	struct virtq_elem *e = &s->elem;
	size_t room = e->in_len - HDR_LEN;
	struct virtio_net_hdr_v1 hdr = { .gso_type = VIRTIO_NET_HDR_GSO_NONE };
	unsigned int nx = 0;

	if (s->len > room) {
		int ret;

		/* Without mergeable buffers a frame must fit one chain. */
		if (!virtio_has_feature(&n->dev, VIRTIO_NET_F_MRG_RXBUF)) {
			rx_drop(n, s);
			return 1;
		}
		ret = rx_place_tail(n, s, room, &nx);
		if (ret == 2) {
			log_debug("%s: a %u-byte frame is larger than the receive ring",
				  n->name, s->len);
			rx_drop(n, s);
			return 1;
		}
		if (ret <= 0)
			return ret;
	}
	hdr.num_buffers = htole16((uint16_t)(1 + nx));
	iov_from_buf(e->iov + e->out_num, e->in_num, 0, &hdr, HDR_LEN);
	virtq_push(q, e->head, (uint32_t)(HDR_LEN + (s->len < room ? s->len : room)));
	for (unsigned int i = 0; i < nx; i++) {
		virtq_push(q, n->extras[i].head, n->extras[i].len);
		if (n->extras[i].slot >= 0)
			n->rx[n->extras[i].slot].state = SLOT_EMPTY;
	}
	s->state = SLOT_EMPTY;
	atomic_fetch_add(&n->out_packets, 1);
	atomic_fetch_add(&n->out_bytes, s->len);
	n->rx_publish = true;
	return 1;
}

/* Deliver received frames in order: 1 all, 0 waiting for buffers, <0. */
static int rx_flush(struct virtio_net *n)
{
	while (n->pend_next < n->npend) {
		int ret = rx_deliver(n, &n->rx[n->pend[n->pend_next]]);

		if (ret <= 0)
			return ret;
		n->pend_next++;
	}
	n->npend = n->pend_next = 0;
	return 1;
}

/* One recvmmsg() into the READY slots; returns the frames received. */
static int rx_receive(struct virtio_net *n, const unsigned int *order,
		      unsigned int count)
{
	struct mmsghdr msgs[NET_BATCH];
	bool eof = false;
	int m;

	for (unsigned int k = 0; k < count; k++) {
		struct rx_slot *s = &n->rx[order[k]];
		struct virtq_elem *e = &s->elem;
		unsigned int niov = iov_slice(e->iov + e->out_num, e->in_num, HDR_LEN,
					      e->in_len - HDR_LEN, s->msg_iov);

		s->msg_iov[niov].iov_base = s->bounce;
		s->msg_iov[niov].iov_len = BOUNCE_SIZE;
		msgs[k] = (struct mmsghdr){ .msg_hdr = {
			.msg_iov = s->msg_iov, .msg_iovlen = niov + 1 } };
	}
	do {
		m = recvmmsg(n->sock, msgs, count, MSG_DONTWAIT, NULL);
	} while (m < 0 && errno == EINTR);
	if (m < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			backend_close(n, strerror(errno), true);
		return 0;
	}
	for (int k = 0; k < m; k++) {
		struct rx_slot *s = &n->rx[order[k]];
		uint32_t len = msgs[k].msg_len;

		/* On a seqpacket socket an empty message is the end of file. */
		if (len == 0) {
			eof = true;
			break;
		}
		if ((msgs[k].msg_hdr.msg_flags & MSG_TRUNC) || len < FRAME_MIN ||
		    len > FRAME_MAX) {
			rx_drop(n, s);
			continue;
		}
		s->len = len;
		s->state = SLOT_FULL;
		n->pend[n->npend++] = order[k];
	}
	if (eof)
		backend_close(n, "the peer closed the connection", true);
	return m;
}

/*
 * Out of buffers: true if the guest added some meanwhile (go on).  @at is
 * where the ring ran dry, which for a merged frame lies past the buffers
 * it tried and gave back.
 */
static bool rx_wait_buffers(struct virtio_net *n, uint16_t at)
{
	if (virtq_enable_notify_at(&n->dev.vq[RXQ], at))
		return true;
	n->rx_starved = true;
	return false;
}

static void rx_run(struct virtio_net *n)
{
	unsigned int order[NET_BATCH];
	unsigned int batches = 0;

	while (is_active(n)) {
		int ret = rx_flush(n);

		rx_publish(n);
		if (ret < 0) {
			broken(n, "malformed receive descriptor chain");
			break;
		}
		if (ret == 0) {
			if (rx_wait_buffers(n, n->rx_wait_idx))
				continue;
			break;
		}
		if (n->sock < 0 || batches == NET_ROUNDS)
			break;
		ret = rx_prepare(n, order);
		if (ret < 0) {
			broken(n, "malformed receive descriptor chain");
			break;
		}
		if (ret == 0) {
			if (rx_wait_buffers(n, n->dev.vq[RXQ].last_avail))
				continue;
			break;
		}
		if (rx_receive(n, order, (unsigned int)ret) <= 0)
			break;
		batches++;
	}
}

/* ---- the I/O thread ------------------------------------------------------- */

/* Forget every chain: after a reset the rings are gone. */
static void quiesce(struct virtio_net *n)
{
	atomic_store(&n->active, false);
	for (unsigned int i = 0; i < NET_BATCH; i++) {
		if (n->rx[i].state == SLOT_FULL)
			atomic_fetch_add(&n->rx_dropped, 1);
		n->rx[i].state = SLOT_EMPTY;
	}
	n->npend = n->pend_next = 0;
	n->tx_count = n->tx_next = 0;
	n->rx_starved = n->tx_blocked = n->tx_more = false;
	n->rx_publish = n->tx_publish = false;
	sock_interest(n);
}

/*
 * Before a capture.  Frames not yet sent go back to the guest's transmit
 * ring (they are the last ones taken: transmit completes in order), so
 * that after a restore they are taken and sent again.  Receive buffers
 * the device holds stay held; their heads are saved with the device
 * (net_save) and taken up again on restore.  Frames received and not yet
 * delivered are dropped, as a wire may drop them.
 */
static void pause_for_capture(struct virtio_net *n)
{
	struct virtq *tq = &n->dev.vq[TXQ];
	uint16_t unsent = (uint16_t)(n->tx_count - n->tx_next);

	if (!is_active(n))
		return;
	rx_publish(n);
	tx_publish(n);
	for (unsigned int i = 0; i < NET_BATCH; i++) {
		if (n->rx[i].state == SLOT_FULL) {
			atomic_fetch_add(&n->rx_dropped, 1);
			n->rx[i].state = SLOT_READY;
		}
	}
	if (virtq_held(tq) == unsent) {
		virtq_rewind(tq, unsent);
	} else {
		tx_drop_taken(n);	/* cannot happen: transmit is in order */
		tx_publish(n);
	}
	atomic_store(&n->active, false);
	n->npend = n->pend_next = 0;
	n->tx_count = n->tx_next = 0;
	n->rx_starved = n->tx_blocked = n->tx_more = false;
	n->rx_publish = n->tx_publish = false;
	sock_interest(n);
}

static bool handle_ctl(struct virtio_net *n)
{
	enum ctl_cmd cmd;
	uint64_t discard;
	int arg;

	if (read(n->ctl_fd, &discard, sizeof(discard)) < 0)
		discard = 0;
	pthread_mutex_lock(&n->lock);
	cmd = n->ctl;
	arg = n->ctl_arg;
	pthread_mutex_unlock(&n->lock);
	switch (cmd) {
	case CTL_NONE:
		return false;
	case CTL_RESET:
	case CTL_STOP:
		quiesce(n);
		break;
	case CTL_CONNECT:
		arg = backend_open(n, arg);
		break;
	case CTL_DISCONNECT:
		backend_close(n, "disconnected", true);
		break;
	case CTL_PAUSE:
		pause_for_capture(n);
		break;
	}
	pthread_mutex_lock(&n->lock);
	n->ctl = CTL_NONE;
	n->ctl_arg = arg;
	n->ctl_done = true;
	pthread_cond_broadcast(&n->cond);
	pthread_mutex_unlock(&n->lock);
	return cmd == CTL_STOP;
}

static void *net_thread(void *arg)
{
	struct virtio_net *n = arg;

	pthread_setname_np(pthread_self(), "virtio-net");
	for (;;) {
		struct epoll_event evs[8];
		int nev = epoll_wait(n->epfd, evs, ARRAY_SIZE(evs), tx_pending(n) ? 0 : -1);
		bool rx = false, hup = false;

		for (int i = 0; i < nev; i++) {
			uint64_t tag = evs[i].data.u64, discard;

			switch (tag & 0xFF) {
			case TAG_RX_KICK:
				if (read(n->kick_fd[RXQ], &discard, sizeof(discard)) < 0)
					discard = 0;
				n->rx_starved = false;
				rx = true;
				break;
			case TAG_TX_KICK:
				if (read(n->kick_fd[TXQ], &discard, sizeof(discard)) < 0)
					discard = 0;
				n->tx_more = true;
				break;
			case TAG_CTL:
				if (handle_ctl(n))
					return NULL;
				break;
			case TAG_SOCK:
				/* Events of a socket already replaced are stale. */
				if (tag >> 8 != n->sock_gen || n->sock < 0)
					break;
				if (evs[i].events & EPOLLOUT) {
					n->tx_blocked = false;
					n->tx_more = true;
				}
				if (evs[i].events & EPOLLIN)
					rx = true;
				if (evs[i].events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR))
					hup = true;
				break;
			}
		}
		tx_run(n);
		if (rx)
			rx_run(n);
		/*
		 * The peer is gone.  While we read, the end of file comes in
		 * its turn after the last frame; while we cannot, now.
		 */
		if (hup && n->sock >= 0 && (!is_active(n) || n->rx_starved))
			backend_close(n, "the peer closed the connection", true);
		sock_interest(n);
	}
}

/* Ask the thread to act and wait until it has; returns its result. */
static int ctl_request(struct virtio_net *n, enum ctl_cmd cmd, int arg)
{
	uint64_t one = 1;
	int ret;

	pthread_mutex_lock(&n->ctl_serial);
	pthread_mutex_lock(&n->lock);
	n->ctl = cmd;
	n->ctl_arg = arg;
	n->ctl_done = false;
	if (write(n->ctl_fd, &one, sizeof(one)) < 0) {
		/* A pending wakeup is already there. */
	}
	while (!n->ctl_done)
		pthread_cond_wait(&n->cond, &n->lock);
	ret = n->ctl_arg;
	pthread_mutex_unlock(&n->lock);
	pthread_mutex_unlock(&n->ctl_serial);
	return ret;
}

/* ---- the device ------------------------------------------------------- */

static void net_config_read(struct virtio_dev *dev, uint32_t off, uint8_t *data,
			    unsigned int len)
{
	struct virtio_net *n = dev->impl;
	struct virtio_net_config c = { 0 };

	memcpy(c.mac, n->mac, sizeof(c.mac));
	c.status = htole16(atomic_load(&n->link));
	c.max_virtqueue_pairs = htole16(1);
	if (off + len <= NET_CONFIG_SIZE)
		memcpy(data, (uint8_t *)&c + off, len);
	else
		memset(data, 0, len);
}

static int net_activate(struct virtio_dev *dev)
{
	struct virtio_net *n = dev->impl;
	uint64_t one = 1;

	atomic_store(&n->active, true);
	/* Buffers and frames may already be waiting: look now. */
	for (int q = 0; q < 2; q++)
		if (n->kick_fd[q] >= 0 && write(n->kick_fd[q], &one, sizeof(one)) < 0) {
			/* Saturated: a kick is pending anyway. */
		}
	return 0;
}

static void net_reset(struct virtio_dev *dev)
{
	struct virtio_net *n = dev->impl;

	if (n->thread_started)
		ctl_request(n, CTL_RESET, -1);
	else
		quiesce(n);
}

/* ---- saved state ---------------------------------------------------------- */

enum { N_RX_HELD = 200 };

/* The receive chains the device holds (after pause_for_capture). */
static void net_save(struct virtio_dev *dev, struct ss_section *s)
{
	struct virtio_net *n = dev->impl;
	uint16_t heads[NET_BATCH];
	unsigned int k = 0;

	for (unsigned int i = 0; i < NET_BATCH; i++)
		if (n->rx[i].state != SLOT_EMPTY)
			heads[k++] = n->rx[i].elem.head;
	ss_put(s, N_RX_HELD, heads, k * sizeof(uint16_t));
}

static int net_restore(struct virtio_dev *dev, struct ss_rsection *s, char *err,
		       size_t errlen)
{
	struct virtio_net *n = dev->impl;
	struct virtq *q = &dev->vq[RXQ];
	const uint16_t *heads;
	const void *p;
	size_t len, k;

	if (ss_get_var(s, N_RX_HELD, &p, &len) || len % 2 || len / 2 > NET_BATCH)
		return vmm_fail(err, errlen, "%s: the receive buffers it held are malformed",
				n->name);
	heads = p;
	k = len / 2;
	if (k && (!q->enabled || virtq_held(q) != k))
		return vmm_fail(err, errlen, "%s: it held %zu receive buffers, the ring says %u",
				n->name, k, q->enabled ? virtq_held(q) : 0);
	for (size_t i = 0; i < k; i++) {
		struct rx_slot *slot = &n->rx[i];

		if (virtq_chain(q, heads[i], &slot->elem) || slot->elem.in_len < HDR_LEN)
			return vmm_fail(err, errlen, "%s: held receive buffer %u is not a valid chain",
					n->name, heads[i]);
		slot->state = SLOT_READY;
	}
	return 0;
}

static const struct virtio_dev_ops net_ops = {
	.name = "net",
	.device_id = VIRTIO_ID_NET,
	.pci_class = 0x020000,		/* network controller, Ethernet */
	.config_size = NET_CONFIG_SIZE,
	.config_read = net_config_read,
	.activate = net_activate,
	.reset = net_reset,
	.save = net_save,
	.restore = net_restore,
};

struct virtio_dev *virtio_net_dev(struct virtio_net *n)
{
	return &n->dev;
}

int virtio_net_create(const struct vm_nic_config *nic,
		      const struct guest_mem *mem, struct virtio_net **out,
		      char *err, size_t errlen)
{
	uint64_t features = (1ULL << VIRTIO_NET_F_MAC) |
			    (1ULL << VIRTIO_NET_F_STATUS) |
			    (1ULL << VIRTIO_NET_F_MRG_RXBUF);
	struct virtio_net *n = calloc(1, sizeof(*n));
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_CTL };
	char mac[18];
	int ret;

	if (!n)
		return -ENOMEM;
	memcpy(n->mac, nic->mac, sizeof(n->mac));
	snprintf(n->name, sizeof(n->name), "nic %s", mac_format(n->mac, mac));
	n->epfd = n->ctl_fd = n->sock = -1;
	n->kick_fd[0] = n->kick_fd[1] = -1;
	n->bounce = MAP_FAILED;
	pthread_mutex_init(&n->lock, NULL);
	pthread_mutex_init(&n->ctl_serial, NULL);
	pthread_cond_init(&n->cond, NULL);
	ret = virtio_dev_init(&n->dev, &net_ops, n, 2, NET_QUEUE_MAX, features, mem);
	if (ret)
		goto fail;
	ret = -ENOMEM;
	n->rx = calloc(NET_BATCH, sizeof(*n->rx));
	n->tx = calloc(NET_BATCH, sizeof(*n->tx));
	/* Touched only by frames larger than their first chain. */
	n->bounce = mmap(NULL, (size_t)NET_BATCH * BOUNCE_SIZE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	n->epfd = epoll_create1(EPOLL_CLOEXEC);
	n->ctl_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!n->rx || !n->tx || n->bounce == MAP_FAILED || n->epfd < 0 || n->ctl_fd < 0)
		goto fail;
	for (unsigned int i = 0; i < NET_BATCH; i++) {
		n->rx[i].elem.iov = n->rx[i].iov;
		n->rx[i].elem.cap = NET_ELEM_SEGS;
		n->rx[i].bounce = n->bounce + (size_t)i * BOUNCE_SIZE;
		n->tx[i].elem.iov = n->tx[i].iov;
		n->tx[i].elem.cap = NET_ELEM_SEGS;
	}
	n->scratch.iov = n->scratch_iov;
	n->scratch.cap = NET_ELEM_SEGS;
	if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, n->ctl_fd, &ev) < 0) {
		ret = -errno;
		goto fail;
	}
	*out = n;
	return 0;
fail:
	snprintf(err, errlen, "%s: cannot set up the device: %s", n->name,
		 strerror(-ret));
	virtio_net_destroy(n);
	return ret;
}

int virtio_net_start(struct virtio_net *n, int rx_kick_fd, int tx_kick_fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_RX_KICK };
	int ret;

	n->kick_fd[RXQ] = rx_kick_fd;
	n->kick_fd[TXQ] = tx_kick_fd;
	if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, rx_kick_fd, &ev) < 0)
		return -errno;
	ev.data.u64 = TAG_TX_KICK;
	if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, tx_kick_fd, &ev) < 0)
		return -errno;
	ret = pthread_create(&n->thread, NULL, net_thread, n);
	if (ret)
		return -ret;
	n->thread_started = true;
	return 0;
}

int virtio_net_connect(struct virtio_net *n, int fd)
{
	if (!n->thread_started)
		return backend_open(n, fd);
	return ctl_request(n, CTL_CONNECT, fd);
}

void virtio_net_disconnect(struct virtio_net *n)
{
	if (!n->thread_started)
		backend_close(n, "disconnected", true);
	else
		ctl_request(n, CTL_DISCONNECT, -1);
}

void virtio_net_get_stats(struct virtio_net *n, struct virtio_net_stats *st)
{
	st->link = atomic_load(&n->link) & VIRTIO_NET_S_LINK_UP;
	st->in_packets = atomic_load(&n->in_packets);
	st->in_bytes = atomic_load(&n->in_bytes);
	st->out_packets = atomic_load(&n->out_packets);
	st->out_bytes = atomic_load(&n->out_bytes);
	st->rx_dropped = atomic_load(&n->rx_dropped);
	st->tx_errors = atomic_load(&n->tx_errors);
}

void virtio_net_destroy(struct virtio_net *n)
{
	if (!n)
		return;
	if (n->thread_started) {
		ctl_request(n, CTL_STOP, -1);
		pthread_join(n->thread, NULL);
	}
	if (n->sock >= 0)
		close(n->sock);
	if (n->epfd >= 0)
		close(n->epfd);
	if (n->ctl_fd >= 0)
		close(n->ctl_fd);
	if (n->bounce != MAP_FAILED)
		munmap(n->bounce, (size_t)NET_BATCH * BOUNCE_SIZE);
	if (n->dev.vq)
		virtio_dev_destroy(&n->dev);
	free(n->rx);
	free(n->tx);
	pthread_mutex_destroy(&n->lock);
	pthread_mutex_destroy(&n->ctl_serial);
	pthread_cond_destroy(&n->cond);
	free(n);
}

/* ---- in a VM ------------------------------------------------------------ */

struct net_attachment {
	struct vm *vm;
	unsigned int index;
	struct virtio_net *net;
	struct virtio_pci *vp;
};

static void attachment_reset(void *opaque)
{
	struct net_attachment *a = opaque;

	virtio_pci_reset(a->vp);
}

static void attachment_destroy(void *opaque)
{
	struct net_attachment *a = opaque;

	if (a->vm->nics[a->index] == a->net)
		a->vm->nics[a->index] = NULL;
	/* The I/O thread stops before the transport goes. */
	virtio_net_destroy(a->net);
	virtio_pci_destroy(a->vp);
	free(a);
}

static void attachment_quiesce(void *opaque, bool on)
{
	struct virtio_net *n = ((struct net_attachment *)opaque)->net;

	if (on)
		ctl_request(n, CTL_PAUSE, -1);
	else if ((n->dev.status & VIRTIO_CONFIG_S_DRIVER_OK) && !n->dev.broken)
		net_activate(&n->dev);
}

int virtio_net_attach(struct vm *vm, const struct vm_nic_config *nic,
		      unsigned int index, char *err, size_t errlen)
{
	struct net_attachment *a = calloc(1, sizeof(*a));
	int ret;

	if (!a)
		return -ENOMEM;
	if (index >= VM_MAX_NICS) {
		free(a);
		return -EINVAL;
	}
	a->vm = vm;
	a->index = index;
	ret = virtio_net_create(nic, &vm->mem, &a->net, err, errlen);
	if (ret) {
		free(a);
		return ret;
	}
	a->vp = virtio_pci_create(vm, &a->net->dev, err, errlen);
	if (!a->vp) {
		virtio_net_destroy(a->net);
		free(a);
		return -ENOMEM;
	}
	ret = virtio_net_start(a->net, virtio_pci_kick_fd(a->vp, RXQ),
			       virtio_pci_kick_fd(a->vp, TXQ));
	if (!ret)
		ret = vm_add_device(vm, attachment_reset, attachment_destroy, NULL, a);
	if (!ret)
		vm_device_quiesce(vm, attachment_quiesce);
	if (ret) {
		snprintf(err, errlen, "%s: cannot start its I/O thread: %s",
			 a->net->name, strerror(-ret));
		attachment_destroy(a);
		return ret;
	}
	vm->nics[index] = a->net;
	if (vm->nnics <= index)
		vm->nnics = index + 1;
	return 0;
}

const char *vmm_nic_fd_problem(int fd)
{
	int type = 0, domain = 0;
	socklen_t len = sizeof(type);

	if (fd < 0 || fcntl(fd, F_GETFD) < 0)
		return "the descriptor is not open";
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return "the descriptor is not a socket";
	len = sizeof(domain);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
	    domain != AF_UNIX || type != SOCK_SEQPACKET)
		return "the socket is not AF_UNIX SOCK_SEQPACKET";
	return NULL;
}

static struct virtio_net *nic_at(struct vm *vm, unsigned int index, char *err,
				 size_t errlen)
{
	if (index < vm->nnics && vm->nics[index])
		return vm->nics[index];
	if (vm->nnics == 0)
		snprintf(err, errlen, "this VM has no NICs");
	else
		snprintf(err, errlen, "no NIC %u: this VM has %u, numbered from 0", index,
			 vm->nnics);
	return NULL;
}

int vm_nic_connect(struct vm *vm, unsigned int index, int fd, char *err,
		   size_t errlen)
{
	struct virtio_net *n = nic_at(vm, index, err, errlen);
	const char *why;
	int ret;

	if (!n) {
		close(fd);
		return -ENOENT;
	}
	why = vmm_nic_fd_problem(fd);
	if (why) {
		snprintf(err, errlen, "%s", why);
		close(fd);
		return -EINVAL;
	}
	ret = virtio_net_connect(n, fd);
	if (ret)
		snprintf(err, errlen, "%s: cannot use the socket: %s", n->name,
			 strerror(-ret));
	return ret;
}

int vm_nic_disconnect(struct vm *vm, unsigned int index, char *err, size_t errlen)
{
	struct virtio_net *n = nic_at(vm, index, err, errlen);

	if (!n)
		return -ENOENT;
	virtio_net_disconnect(n);
	return 0;
}

json_t *vm_nic_stats(struct vm *vm)
{
	json_t *list = json_array();

	for (unsigned int i = 0; i < vm->nnics; i++) {
		struct virtio_net_stats st;
		char mac[18];

		if (!vm->nics[i])
			continue;
		virtio_net_get_stats(vm->nics[i], &st);
		json_array_append_new(list, json_pack(
			"{s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I}",
			"mac", mac_format(vm->nics[i]->mac, mac),
			"link", st.link,
			"in_packets", (json_int_t)st.in_packets,
			"in_bytes", (json_int_t)st.in_bytes,
			"out_packets", (json_int_t)st.out_packets,
			"out_bytes", (json_int_t)st.out_bytes,
			"rx_dropped", (json_int_t)st.rx_dropped,
			"tx_errors", (json_int_t)st.tx_errors));
	}
	return list;
}
