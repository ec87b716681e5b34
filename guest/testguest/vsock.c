// SPDX-License-Identifier: MIT
/*
 * The test guest's virtio-vsock driver (1af4:1053): rx, tx and event
 * queues on MSI-X (all on VEC_VSOCK), VERSION_1 | F_STREAM, and stream
 * connections with credit both ways.
 *
 * Every instruction costs about half a microsecond under KVM's
 * emulator, so the echo server copies nothing: a received packet's
 * buffer is sent back as it is, its header rewritten in place, and goes
 * back to the receive ring once the device has taken it.  What a
 * connection holds that way is what it was given credit for
 * ("vsockbuf=N" bytes, 64 KiB by default), so the device can never
 * fill the buffer pool with one connection's data; the pool (384
 * buffers of 32 KiB) is larger than the ring, so credit updates and
 * other control packets always find a buffer.
 *
 * Client connections (the agent's) get their bytes through a callback,
 * copied out, and send through buffers of the transmit ring's own.
 */
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_vsock.h>

#include "guest.h"
#include "virtio.h"
#include "vsock.h"

#define RXQ_SIZE 256
#define TXQ_SIZE 256
#define EVQ_SIZE 4
#define HDR ((uint32_t)sizeof(struct virtio_vsock_hdr))
#define NRXBUF 384
#define RX_DATA (32 * 1024)
#define RXBUF_SIZE ((HDR + RX_DATA + 63) & ~63u)
#define TXBUF_SIZE 4096
#define NCONN 64
#define DEFAULT_BUF_ALLOC (64 * 1024)
#define MAX_ECHO_PORTS 4
#define FIRST_LOCAL_PORT 1024

#define RING(name, n)								\
	static struct vring_desc name##_desc[n] __attribute__((aligned(4096)));	\
	static struct {								\
		uint16_t flags, idx, ring[n], used_event;			\
	} name##_avail __attribute__((aligned(4096)));				\
	static struct {								\
		uint16_t flags, idx;						\
		struct vring_used_elem ring[n];					\
		uint16_t avail_event;						\
	} name##_used __attribute__((aligned(4096)))

RING(rx, RXQ_SIZE);
RING(tx, TXQ_SIZE);
RING(ev, EVQ_SIZE);

enum gv_state {
	GV_FREE,
	GV_CONNECTING,
	GV_OPEN,
	GV_CLOSING,		/* our SHUTDOWN sent: waiting for the host's RST */
};

struct gvconn {
	enum gv_state state;
	uint32_t gen;
	bool echo;
	uint32_t lport, pport;		/* ours, the host's */
	const struct gv_ops *ops;
	/* What we receive. */
	uint32_t rx_cnt, fwd_cnt, fwd_told;
	/* What we send: the host's credit. */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	/* Echo: held receive buffers waiting for credit, in order. */
	int pend_head, pend_tail;
	bool peer_done;			/* the host sends no more */
	bool done_sent;			/* our SHUTDOWN (SEND) went */
	bool want_credit;
	bool want_rst;
};

static struct vdev dev;
static struct virtq_g rxq, txq, evq;
static uint8_t rxbuf[NRXBUF][RXBUF_SIZE] __attribute__((aligned(64)));
static uint8_t txbuf[TXQ_SIZE][TXBUF_SIZE] __attribute__((aligned(64)));
static uint32_t evbuf[EVQ_SIZE];

/* Receive buffers: free, in the ring, or held by an echo. */
static int16_t buf_free[NRXBUF];
static unsigned int nbuf_free;
static int16_t desc_buf[RXQ_SIZE];	/* rx descriptor -> its buffer */
static uint16_t rx_desc_free[RXQ_SIZE];
static unsigned int nrx_desc_free;
static int16_t buf_next[NRXBUF];	/* a connection's pending echoes */
static uint32_t buf_len[NRXBUF];
static int16_t buf_conn[NRXBUF];
static uint32_t buf_gen[NRXBUF];

/* Transmit descriptors: free, or in flight with a copy or an echoed buffer. */
static uint16_t tx_free[TXQ_SIZE];
static unsigned int ntx_free;
static int16_t tx_owner[TXQ_SIZE];	/* the echoed buffer, or -1 */

static struct gvconn conns[NCONN];
static uint32_t echo_ports[MAX_ECHO_PORTS];
static unsigned int nechos;
static uint32_t buf_alloc = DEFAULT_BUF_ALLOC;
static uint32_t next_port = FIRST_LOCAL_PORT;
static uint64_t cid;
static bool up, rx_dirty, tx_dirty;
static unsigned int resets;
static volatile unsigned int irqs;

static void vsock_irq(void)
{
	irqs++;
}

static uint16_t load16(const volatile uint16_t *p)
{
	return *p;
}

static void publish(struct virtq_g *q, uint16_t *avail_idx, uint16_t new, uint16_t n)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	*(volatile uint16_t *)avail_idx = new;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	virtio_notify(q, n);
}

/* ---- receive buffers ------------------------------------------------------- */

static void buf_release(int b)
{
	buf_free[nbuf_free++] = (int16_t)b;
	rx_dirty = true;
}

/* Free buffers into free descriptors of the ring. */
static void rx_refill(void)
{
	uint16_t idx = rx_avail.idx, start = idx;

	while (nbuf_free && nrx_desc_free) {
		uint16_t d = rx_desc_free[--nrx_desc_free];
		int b = buf_free[--nbuf_free];

		desc_buf[d] = (int16_t)b;
		rx_desc[d].addr = (uint64_t)rxbuf[b];
		rx_desc[d].len = HDR + RX_DATA;
		rx_desc[d].flags = VRING_DESC_F_WRITE;
		rx_avail.ring[idx++ % RXQ_SIZE] = d;
	}
	if (idx != start)
		publish(&rxq, &rx_avail.idx, idx, 0);
	rx_dirty = false;
}

/* ---- sending ------------------------------------------------------------- */

static int conn_index(const struct gvconn *c)
{
	return (int)(c - conns);
}

static uint32_t peer_credit(const struct gvconn *c)
{
	uint32_t used = c->tx_cnt - c->peer_fwd_cnt;

	return used >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - used;
}

static void hdr_fill(struct virtio_vsock_hdr *h, uint32_t lport, uint32_t pport,
		     uint16_t op, uint32_t len)
{
	memset(h, 0, HDR);
	h->src_cid = cid;
	h->dst_cid = GV_HOST_CID;
	h->src_port = lport;
	h->dst_port = pport;
	h->len = len;
	h->type = VIRTIO_VSOCK_TYPE_STREAM;
	h->op = op;
	h->buf_alloc = buf_alloc;
}

static void conn_hdr(struct gvconn *c, struct virtio_vsock_hdr *h, uint16_t op, uint32_t len)
{
	hdr_fill(h, c->lport, c->pport, op, len);
	h->fwd_cnt = c->fwd_cnt;
	c->fwd_told = c->fwd_cnt;
	c->want_credit = false;
}

static void tx_queue(uint16_t j, uint64_t addr, uint32_t len, int owner)
{
	uint16_t idx = tx_avail.idx;

	tx_desc[j].addr = addr;
	tx_desc[j].len = len;
	tx_desc[j].flags = 0;
	tx_desc[j].next = 0;
	tx_owner[j] = (int16_t)owner;
	tx_avail.ring[idx % TXQ_SIZE] = j;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	tx_avail.idx = (uint16_t)(idx + 1);
	tx_dirty = true;
}

/* A packet of ours (control, or copied data); false when no descriptor is free. */
static bool send_copy(struct gvconn *c, uint32_t lport, uint32_t pport, uint16_t op,
		      uint32_t flags, const void *data, uint32_t len)
{
	struct virtio_vsock_hdr *h;
	uint16_t j;

	if (!ntx_free)
		return false;
	j = tx_free[--ntx_free];
	h = (struct virtio_vsock_hdr *)txbuf[j];
	if (c)
		conn_hdr(c, h, op, len);
	else
		hdr_fill(h, lport, pport, op, len);
	h->flags = flags;
	if (len)
		memcpy(txbuf[j] + HDR, data, len);
	tx_queue(j, (uint64_t)txbuf[j], HDR + len, -1);
	return true;
}

static bool send_ctl(struct gvconn *c, uint16_t op, uint32_t flags)
{
	return send_copy(c, 0, 0, op, flags, NULL, 0);
}

/* Echo held buffers while the host's credit and the ring allow. */
static void echo_flush(struct gvconn *c)
{
	while (c->pend_head >= 0 && ntx_free) {
		int b = c->pend_head;
		uint32_t len = buf_len[b];
		struct virtio_vsock_hdr *h = (struct virtio_vsock_hdr *)rxbuf[b];

		if (len > peer_credit(c))
			return;
		c->pend_head = buf_next[b];
		if (c->pend_head < 0)
			c->pend_tail = -1;
		conn_hdr(c, h, VIRTIO_VSOCK_OP_RW, len);
		c->tx_cnt += len;
		tx_queue(tx_free[--ntx_free], (uint64_t)rxbuf[b], HDR + len, b);
	}
	/* The host said it was done and everything went back: so are we. */
	if (c->peer_done && c->pend_head < 0 && !c->done_sent &&
	    send_ctl(c, VIRTIO_VSOCK_OP_SHUTDOWN, VIRTIO_VSOCK_SHUTDOWN_SEND))
		c->done_sent = true;
}

uint32_t vsock_send(struct gvconn *c, const void *buf, uint32_t len)
{
	uint32_t done = 0;

	if (c->state != GV_OPEN)
		return 0;
	while (done < len && ntx_free) {
		uint32_t n = len - done, credit = peer_credit(c);

		if (n > TXBUF_SIZE - HDR)
			n = TXBUF_SIZE - HDR;
		if (n > credit)
			n = credit;
		if (!n)
			break;
		send_copy(c, 0, 0, VIRTIO_VSOCK_OP_RW, 0, (const uint8_t *)buf + done, n);
		c->tx_cnt += n;
		done += n;
	}
	return done;
}

/* ---- connections ----------------------------------------------------------- */

static struct gvconn *conn_find(uint32_t lport, uint32_t pport)
{
	for (int i = 0; i < NCONN; i++)
		if (conns[i].state != GV_FREE && conns[i].lport == lport &&
		    conns[i].pport == pport)
			return &conns[i];
	return NULL;
}

static struct gvconn *conn_new(uint32_t lport, uint32_t pport)
{
	for (int i = 0; i < NCONN; i++) {
		struct gvconn *c = &conns[i];

		if (c->state != GV_FREE)
			continue;
		uint32_t gen = c->gen + 1;

		memset(c, 0, sizeof(*c));
		c->gen = gen;
		c->lport = lport;
		c->pport = pport;
		c->pend_head = c->pend_tail = -1;
		return c;
	}
	return NULL;
}

static void conn_free(struct gvconn *c)
{
	const struct gv_ops *ops = c->ops;

	/* Echoes not sent yet: their buffers go back. */
	while (c->pend_head >= 0) {
		int b = c->pend_head;

		c->pend_head = buf_next[b];
		buf_release(b);
	}
	c->state = GV_FREE;
	c->gen++;
	if (ops && ops->closed)
		ops->closed(c);
}

static bool is_echo_port(uint32_t port)
{
	for (unsigned int i = 0; i < nechos; i++)
		if (echo_ports[i] == port)
			return true;
	return false;
}

void vsock_listen_echo(uint32_t port)
{
	if (nechos < MAX_ECHO_PORTS)
		echo_ports[nechos++] = port;
}

struct gvconn *vsock_connect(uint32_t port, const struct gv_ops *ops)
{
	struct gvconn *c;

	if (!up)
		return NULL;
	do {
		if (++next_port < FIRST_LOCAL_PORT)
			next_port = FIRST_LOCAL_PORT;
	} while (conn_find(next_port, port));
	c = conn_new(next_port, port);
	if (!c)
		return NULL;
	c->state = GV_CONNECTING;
	c->ops = ops;
	if (!send_ctl(c, VIRTIO_VSOCK_OP_REQUEST, 0)) {
		c->state = GV_FREE;
		return NULL;
	}
	return c;
}

void vsock_close(struct gvconn *c)
{
	if (c->state == GV_OPEN && send_ctl(c, VIRTIO_VSOCK_OP_SHUTDOWN,
					    VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND))
		c->state = GV_CLOSING;
}

/* ---- received packets ------------------------------------------------------- */

static void on_request(struct virtio_vsock_hdr *h)
{
	struct gvconn *c;

	if (!is_echo_port(h->dst_port) || conn_find(h->dst_port, h->src_port) ||
	    !(c = conn_new(h->dst_port, h->src_port))) {
		send_copy(NULL, h->dst_port, h->src_port, VIRTIO_VSOCK_OP_RST, 0, NULL, 0);
		return;
	}
	c->state = GV_OPEN;
	c->echo = true;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	if (!send_ctl(c, VIRTIO_VSOCK_OP_RESPONSE, 0))
		c->state = GV_FREE;
}

static void on_shutdown(struct gvconn *c, uint32_t flags)
{
	if ((flags & (VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND)) ==
	    (VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND) || c->state == GV_CLOSING) {
		/* The host is gone: as Linux does, reset and forget. */
		c->want_rst = true;
		return;
	}
	if (flags & VIRTIO_VSOCK_SHUTDOWN_SEND)
		c->peer_done = true;
}

/* Data for @c in buffer @b: true if the buffer stays held (an echo). */
static bool on_data(struct gvconn *c, int b, uint32_t len)
{
	c->rx_cnt += len;
	if (c->rx_cnt - c->fwd_cnt > buf_alloc) {
		printf("vsock: port %u got %u bytes past its credit\n", c->lport,
		       c->rx_cnt - c->fwd_cnt - buf_alloc);
		c->want_rst = true;
		return false;
	}
	if (!c->echo) {
		if (c->ops && c->ops->data)
			c->ops->data(c, rxbuf[b] + HDR, len);
		c->fwd_cnt += len;
		return false;
	}
	buf_len[b] = len;
	buf_conn[b] = (int16_t)conn_index(c);
	buf_gen[b] = c->gen;
	buf_next[b] = -1;
	if (c->pend_tail >= 0)
		buf_next[c->pend_tail] = (int16_t)b;
	else
		c->pend_head = (int16_t)b;
	c->pend_tail = (int16_t)b;
	return true;
}

/* One packet in buffer @b: true if the buffer stays held. */
static bool on_packet(int b, uint32_t used_len)
{
	struct virtio_vsock_hdr *h = (struct virtio_vsock_hdr *)rxbuf[b];
	uint32_t len = used_len - HDR;
	struct gvconn *c;

	if (used_len < HDR || used_len > HDR + RX_DATA || h->len != len ||
	    h->src_cid != GV_HOST_CID || h->dst_cid != cid ||
	    h->type != VIRTIO_VSOCK_TYPE_STREAM) {
		printf("vsock: a malformed packet (op %u, len %u of %u)\n", h->op, h->len, len);
		return false;
	}
	c = conn_find(h->dst_port, h->src_port);
	if (h->op == VIRTIO_VSOCK_OP_REQUEST) {
		on_request(h);
		return false;
	}
	if (!c) {
		if (h->op != VIRTIO_VSOCK_OP_RST)
			send_copy(NULL, h->dst_port, h->src_port, VIRTIO_VSOCK_OP_RST, 0, NULL, 0);
		return false;
	}
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	switch (h->op) {
	case VIRTIO_VSOCK_OP_RESPONSE:
		if (c->state == GV_CONNECTING) {
			c->state = GV_OPEN;
			if (c->ops && c->ops->connected)
				c->ops->connected(c);
		}
		return false;
	case VIRTIO_VSOCK_OP_RST:
		conn_free(c);
		return false;
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		on_shutdown(c, h->flags);
		return false;
	case VIRTIO_VSOCK_OP_RW:
		return c->state == GV_OPEN && on_data(c, b, len);
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		c->want_credit = true;
		return false;
	default:
		return false;
	}
}

static void rx_poll(void)
{
	while (rxq.last_used != load16(&rx_used.idx)) {
		struct vring_used_elem e = rx_used.ring[rxq.last_used % RXQ_SIZE];
		int b;

		rxq.last_used++;
		if (e.id >= RXQ_SIZE || desc_buf[e.id] < 0) {
			printf("vsock: bad used entry %u\n", e.id);
			continue;
		}
		b = desc_buf[e.id];
		desc_buf[e.id] = -1;
		rx_desc_free[nrx_desc_free++] = (uint16_t)e.id;
		if (!on_packet(b, e.len))
			buf_release(b);
	}
}

static void tx_poll(void)
{
	while (txq.last_used != load16(&tx_used.idx)) {
		struct vring_used_elem e = tx_used.ring[txq.last_used % TXQ_SIZE];
		int b;

		txq.last_used++;
		if (e.id >= TXQ_SIZE)
			continue;
		b = tx_owner[e.id];
		tx_owner[e.id] = -1;
		tx_free[ntx_free++] = (uint16_t)e.id;
		if (b < 0)
			continue;
		/* An echo the device took: its bytes are consumed, the buffer is free. */
		if (conns[buf_conn[b]].gen == buf_gen[b])
			conns[buf_conn[b]].fwd_cnt += buf_len[b];
		buf_release(b);
	}
}

static void ev_post(uint16_t d)
{
	uint16_t idx = ev_avail.idx;

	ev_desc[d].addr = (uint64_t)&evbuf[d];
	ev_desc[d].len = sizeof(evbuf[d]);
	ev_desc[d].flags = VRING_DESC_F_WRITE;
	ev_avail.ring[idx % EVQ_SIZE] = d;
	publish(&evq, &ev_avail.idx, (uint16_t)(idx + 1), 2);
}

static void transport_reset(void)
{
	/* Every connection is gone; listeners stay; the CID may be new. */
	resets++;
	printf("vsock: transport reset\n");
	for (int i = 0; i < NCONN; i++)
		if (conns[i].state != GV_FREE)
			conn_free(&conns[i]);
	virtio_config_read(&dev, 0, &cid, sizeof(cid));
}

static void ev_poll(void)
{
	while (evq.last_used != load16(&ev_used.idx)) {
		struct vring_used_elem e = ev_used.ring[evq.last_used % EVQ_SIZE];

		evq.last_used++;
		if (e.id >= EVQ_SIZE)
			continue;
		if (evbuf[e.id] == VIRTIO_VSOCK_EVENT_TRANSPORT_RESET)
			transport_reset();
		ev_post((uint16_t)e.id);
	}
}

/* What each connection owes the host: echoes, credit, resets. */
static void conns_poll(void)
{
	for (int i = 0; i < NCONN; i++) {
		struct gvconn *c = &conns[i];

		if (c->state == GV_FREE)
			continue;
		if (c->want_rst) {
			if (!send_ctl(c, VIRTIO_VSOCK_OP_RST, 0))
				continue;
			conn_free(c);
			continue;
		}
		if (c->echo)
			echo_flush(c);
		/* Tell the host once half of what it thinks we hold is free. */
		if ((c->want_credit || c->fwd_cnt - c->fwd_told >= buf_alloc / 2) &&
		    c->state == GV_OPEN)
			send_ctl(c, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0);
	}
}

bool vsock_pending(void)
{
	return up && (rxq.last_used != load16(&rx_used.idx) ||
		      txq.last_used != load16(&tx_used.idx) ||
		      evq.last_used != load16(&ev_used.idx));
}

void vsock_poll(void)
{
	if (!up)
		return;
	ev_poll();
	tx_poll();
	rx_poll();
	conns_poll();
	if (tx_dirty) {
		tx_dirty = false;
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		virtio_notify(&txq, 1);
	}
	if (rx_dirty)
		rx_refill();
}

/* ---- the device ------------------------------------------------------------- */

static uint32_t arg_u32(const char *key, uint32_t def, uint32_t min, uint32_t max)
{
	const char *p = cmdline_arg(key);
	uint64_t n = 0;

	if (!p || *p < '0' || *p > '9')
		return def;
	while (*p >= '0' && *p <= '9' && n <= max)
		n = n * 10 + (uint64_t)(*p++ - '0');
	return n < min ? min : n > max ? max : (uint32_t)n;
}

int vsock_init(char *why)
{
	struct virtq_g *qs[3] = { &rxq, &txq, &evq };
	const uint16_t sizes[3] = { RXQ_SIZE, TXQ_SIZE, EVQ_SIZE };
	const unsigned int vectors[3] = { VEC_VSOCK, VEC_VSOCK, VEC_VSOCK };
	uint64_t want = (1ULL << VIRTIO_F_VERSION_1) | 1ULL;	/* VIRTIO_VSOCK_F_STREAM */
	int ret;

	if (up)
		return 0;
	if (virtio_find(VIRTIO_ID_VSOCK, 0, &dev)) {
		memcpy(why, "no virtio-vsock device", 23);
		return -1;
	}
	rxq.desc = rx_desc;
	rxq.avail = (struct vring_avail *)&rx_avail;
	rxq.used = (struct vring_used *)&rx_used;
	txq.desc = tx_desc;
	txq.avail = (struct vring_avail *)&tx_avail;
	txq.used = (struct vring_used *)&tx_used;
	evq.desc = ev_desc;
	evq.avail = (struct vring_avail *)&ev_avail;
	evq.used = (struct vring_used *)&ev_used;
	irq_set_handler(VEC_VSOCK, vsock_irq);
	ret = virtio_init_queues(&dev, want, qs, sizes, vectors, 3, -1);
	if (ret) {
		printf("vsock: virtio_init failed at step %d\n", -ret);
		memcpy(why, "device initialization failed", 29);
		return -1;
	}
	virtio_config_read(&dev, 0, &cid, sizeof(cid));
	buf_alloc = arg_u32("vsockbuf", DEFAULT_BUF_ALLOC, 64, 16 * 1024 * 1024);
	for (int i = 0; i < NRXBUF; i++)
		buf_free[nbuf_free++] = (int16_t)i;
	for (int d = 0; d < RXQ_SIZE; d++) {
		desc_buf[d] = -1;
		rx_desc_free[nrx_desc_free++] = (uint16_t)(RXQ_SIZE - 1 - d);
	}
	for (int j = 0; j < TXQ_SIZE; j++) {
		tx_free[ntx_free++] = (uint16_t)(TXQ_SIZE - 1 - j);
		tx_owner[j] = -1;
	}
	up = true;
	rx_refill();
	for (uint16_t d = 0; d < EVQ_SIZE; d++)
		ev_post(d);
	printf("vsock: cid %lu, %u bytes of receive buffer a connection\n", cid, buf_alloc);
	{
		uint32_t port = arg_u32("vsock_echo", 0, 1, 0xFFFFFFFE);

		if (port) {
			vsock_listen_echo(port);
			printf("vsock: echo on port %u\n", port);
		}
	}
	return 0;
}

bool vsock_up(void)
{
	return up;
}

uint64_t vsock_cid(void)
{
	return cid;
}

unsigned int vsock_transport_resets(void)
{
	return resets;
}

/* ---- tests=vsockrst: a port nobody listens on --------------------------------- */

static bool ended;

static void rst_closed(struct gvconn *c)
{
	(void)c;
	ended = true;
}

static const struct gv_ops rst_ops = { .closed = rst_closed };

bool test_vsockrst(char *why)
{
	uint32_t port = arg_u32("vsock_closed_port", 4, 1, 0xFFFFFFFE);
	uint64_t deadline;

	if (vsock_init(why))
		return false;
	if (!vsock_connect(port, &rst_ops)) {
		memcpy(why, "no connection slot", 19);
		return false;
	}
	vsock_poll();
	deadline = uptime_us() + 10000000;
	while (!ended && uptime_us() < deadline) {
		__asm__ volatile("pause");
		vsock_poll();
	}
	if (!ended) {
		memcpy(why, "no RST within 10 s", 19);
		return false;
	}
	printf("vsockrst: host port %u refused with RST\n", port);
	return true;
}

/* ---- tests=vsocksend: a guest connection to a host listener ------------------ */

static bool send_connected, send_closed;

static void send_on_connected(struct gvconn *c)
{
	(void)c;
	send_connected = true;
}

static const struct gv_ops send_ops = { .connected = send_on_connected, .closed = rst_closed };

bool test_vsocksend(char *why)
{
	static const char msg[] = "hello from the guest\n";
	uint32_t port = arg_u32("vsock_send_port", 5001, 1, 0xFFFFFFFE);
	struct gvconn *c;
	uint64_t deadline = uptime_us() + 10000000;
	uint32_t sent = 0;

	if (vsock_init(why))
		return false;
	ended = false;
	c = vsock_connect(port, &send_ops);
	while (c && !ended && sent < sizeof(msg) - 1 && uptime_us() < deadline) {
		vsock_poll();
		if (send_connected)
			sent += vsock_send(c, msg + sent, (uint32_t)(sizeof(msg) - 1 - sent));
	}
	if (!c || ended || sent < sizeof(msg) - 1) {
		memcpy(why, ended ? "refused" : "not connected within 10 s", 26);
		return false;
	}
	vsock_close(c);
	/* The host's RST ends it. */
	while (!ended && uptime_us() < deadline)
		vsock_poll();
	send_closed = ended;
	if (!send_closed) {
		memcpy(why, "no RST after the close", 23);
		return false;
	}
	printf("vsocksend: %u bytes to host port %u\n", sent, port);
	return true;
}
