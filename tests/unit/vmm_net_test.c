// SPDX-License-Identifier: MIT
/*
 * virtio-net driven from the host: rings in a memfd "guest RAM" built by
 * hand (good and hostile chains), a real SOCK_SEQPACKET socketpair as the
 * backend, the device's own I/O thread in between.  Transmit and receive
 * paths, mergeable buffers, frames waiting for buffers, push-back when
 * the socket is full, drops and their counters, the link state and
 * EVENT_IDX interrupt suppression.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <pthread.h>
#include <errno.h>
#include <linux/virtio_net.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmm/virtio/virtio.h"
#include "xorshift.h"

#define RAM (4 * 1024 * 1024)
#define HDR 12

static struct guest_mem mem;
static struct virtio_net *net;
static struct virtio_dev *dev;
static int kick[2] = { -1, -1 };
static int peer = -1;		/* the far end of the backend */
static _Atomic int irqs[3];	/* rx, tx, config */

/* A driver-side view of one queue. */
struct hq {
	uint16_t size;
	uint64_t desc, avail, used;
	uint16_t next_desc;		/* descriptors handed out round-robin */
	uint16_t avail_idx;
	uint16_t last_used;
};

static struct hq q[2];
static uint64_t next_buf = 0x100000;	/* buffer space, from 1 MiB */

static void *gpa(uint64_t a)
{
	return mem.base + a;
}

static void count_irq(struct virtio_dev *d, int queue)
{
	(void)d;
	atomic_fetch_add(&irqs[queue < 0 ? 2 : queue], 1);
}

static uint64_t alloc_buf(uint32_t len)
{
	uint64_t a = next_buf;

	next_buf += (len + 63) & ~63u;
	cr_assert_lt(next_buf, RAM, "test buffer space exhausted");
	return a;
}

static const uint8_t status_up_to_features = VIRTIO_CONFIG_S_ACKNOWLEDGE |
	VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;

/* Bring the device up with @features and queues of @rx_size/@tx_size. */
static void start(uint64_t features, uint16_t rx_size, uint16_t tx_size)
{
	struct vm_nic_config cfg = { .mac = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 } };
	char err[256];
	uint16_t sizes[2] = { rx_size, tx_size };

	cr_assert_eq(mem_create(&mem, RAM, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(virtio_net_create(&cfg, &mem, &net, err, sizeof(err)), 0, "%s", err);
	dev = virtio_net_dev(net);
	dev->transport.interrupt = count_irq;
	dev->guest_features = features;
	virtio_set_status(dev, status_up_to_features);
	cr_assert(dev->status & VIRTIO_CONFIG_S_FEATURES_OK, "features refused");
	for (int i = 0; i < 2; i++) {
		q[i] = (struct hq){ .size = sizes[i], .desc = 0x10000 + 0x20000 * (uint64_t)i,
				    .avail = 0x18000 + 0x20000 * (uint64_t)i,
				    .used = 0x1C000 + 0x20000 * (uint64_t)i };
		dev->vq[i].size = sizes[i];
		dev->vq[i].desc_gpa = q[i].desc;
		dev->vq[i].avail_gpa = q[i].avail;
		dev->vq[i].used_gpa = q[i].used;
		cr_assert_eq(virtio_queue_enable(dev, (unsigned int)i), 0);
		kick[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	}
	cr_assert_eq(virtio_net_start(net, kick[0], kick[1]), 0);
	virtio_set_status(dev, status_up_to_features | VIRTIO_CONFIG_S_DRIVER_OK);
}

static uint64_t default_features(void)
{
	return (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_NET_F_MAC) |
	       (1ULL << VIRTIO_NET_F_STATUS) | (1ULL << VIRTIO_NET_F_MRG_RXBUF) |
	       (1ULL << VIRTIO_RING_F_INDIRECT_DESC);
}

static void connect_peer(void)
{
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(virtio_net_connect(net, sv[0]), 0);
	peer = sv[1];
}

static void teardown(void)
{
	if (net)
		virtio_net_destroy(net);
	net = NULL;
	for (int i = 0; i < 2; i++)
		if (kick[i] >= 0)
			close(kick[i]);
	kick[0] = kick[1] = -1;
	if (peer >= 0)
		close(peer);
	peer = -1;
	for (int i = 0; i < 3; i++)
		atomic_store(&irqs[i], 0);
	next_buf = 0x100000;
	mem_destroy(&mem);
}

TestSuite(net, .fini = teardown, .timeout = 120);

static struct vring_desc *desc(int qi, uint16_t i)
{
	return (struct vring_desc *)gpa(q[qi].desc) + i;
}

static uint16_t add_desc(int qi, uint64_t addr, uint32_t len, uint16_t flags)
{
	uint16_t i = q[qi].next_desc++ % q[qi].size;

	*desc(qi, i) = (struct vring_desc){ .addr = addr, .len = len, .flags = flags };
	return i;
}

/* Chain descriptor @a to @b. */
static void link_desc(int qi, uint16_t a, uint16_t b)
{
	desc(qi, a)->flags |= VRING_DESC_F_NEXT;
	desc(qi, a)->next = b;
}

static void offer(int qi, uint16_t head, bool do_kick)
{
	struct vring_avail *a = gpa(q[qi].avail);
	uint64_t one = 1;

	a->ring[q[qi].avail_idx % q[qi].size] = head;
	q[qi].avail_idx++;
	__atomic_store_n(&a->idx, q[qi].avail_idx, __ATOMIC_RELEASE);
	if (do_kick)
		cr_assert_eq(write(kick[qi], &one, sizeof(one)), 8);
}

static uint16_t used_idx(int qi)
{
	return __atomic_load_n(&((struct vring_used *)gpa(q[qi].used))->idx,
			       __ATOMIC_ACQUIRE);
}

/* Wait until the used index reaches @want; false after ~2 s. */
static bool wait_used(int qi, uint16_t want)
{
	for (int i = 0; i < 400; i++) {
		if (used_idx(qi) == want)
			return true;
		usleep(5000);
	}
	return used_idx(qi) == want;
}

static struct vring_used_elem used_elem(int qi, uint16_t n)
{
	return ((struct vring_used *)gpa(q[qi].used))->ring[n % q[qi].size];
}

static void fill(uint8_t *p, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed * 31 + i * 7);
}

static void stats(struct virtio_net_stats *st)
{
	virtio_net_get_stats(net, st);
}

/* A transmit chain: header and frame in one buffer (or split in two). */
static uint16_t tx_chain(const uint8_t *frame, uint32_t len, bool split)
{
	uint64_t b = alloc_buf(HDR + len);

	memset(gpa(b), 0, HDR);
	memcpy(gpa(b + HDR), frame, len);
	if (!split)
		return add_desc(1, b, HDR + len, 0);
	{
		uint16_t h = add_desc(1, b, HDR, 0);
		uint16_t d = add_desc(1, b + HDR, len, 0);

		link_desc(1, h, d);
		return h;
	}
}

/* A receive buffer of @len bytes; returns its guest address. */
static uint64_t rx_buffer(uint32_t len, bool do_kick)
{
	uint64_t b = alloc_buf(len);

	memset(gpa(b), 0xEE, len);
	offer(0, add_desc(0, b, len, VRING_DESC_F_WRITE), do_kick);
	return b;
}

static void peer_send(const uint8_t *frame, size_t len)
{
	cr_assert_eq(send(peer, frame, len, MSG_DONTWAIT), (ssize_t)len);
}

Test(net, transmit)
{
	uint8_t f[3][1500], got[2000];
	uint32_t lens[3] = { 60, 1500, 14 };
	struct virtio_net_stats st;

	start(default_features(), 64, 64);
	connect_peer();
	for (int i = 0; i < 3; i++) {
		fill(f[i], lens[i], (unsigned int)i);
		offer(1, tx_chain(f[i], lens[i], i == 1), i == 2);
	}
	cr_assert(wait_used(1, 3), "transmit chains not returned");
	for (int i = 0; i < 3; i++) {
		ssize_t n = recv(peer, got, sizeof(got), MSG_DONTWAIT);

		cr_assert_eq(n, lens[i], "frame %d: %zd bytes", i, n);
		cr_assert(memcmp(got, f[i], lens[i]) == 0, "frame %d differs", i);
		cr_assert_eq(used_elem(1, (uint16_t)i).len, 0);
	}
	stats(&st);
	cr_assert_eq(st.in_packets, 3);
	cr_assert_eq(st.in_bytes, 60 + 1500 + 14);
	cr_assert_eq(st.tx_errors, 0);
	cr_assert_geq(atomic_load(&irqs[1]), 1);
}

Test(net, transmit_bad_frames_are_dropped_and_counted)
{
	uint8_t f[70000] = { 0 };
	struct virtio_net_stats st;
	uint64_t b;
	uint16_t h;

	start(default_features(), 64, 64);
	connect_peer();
	/* Shorter than the header. */
	b = alloc_buf(8);
	offer(1, add_desc(1, b, 8, 0), false);
	/* A 13-byte frame: not Ethernet. */
	offer(1, tx_chain(f, 13, false), false);
	/* Larger than 65535 bytes. */
	offer(1, tx_chain(f, 65536, true), false);
	/* A header asking for checksum offload, which was not offered. */
	h = tx_chain(f, 100, false);
	((struct virtio_net_hdr_v1 *)gpa(desc(1, h)->addr))->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	offer(1, h, false);
	/* And a good one, which still goes. */
	offer(1, tx_chain(f, 64, false), true);
	cr_assert(wait_used(1, 5));
	stats(&st);
	cr_assert_eq(st.tx_errors, 4);
	cr_assert_eq(st.in_packets, 1);
	cr_assert_eq(recv(peer, f, sizeof(f), MSG_DONTWAIT), 64);
	cr_assert_eq(recv(peer, f, sizeof(f), MSG_DONTWAIT), -1, "a bad frame was sent");
	cr_assert(!(dev->status & VIRTIO_CONFIG_S_NEEDS_RESET));
}

Test(net, receive_merges_buffers)
{
	uint8_t frame[2500], got[2500];
	uint64_t b[4];
	struct virtio_net_hdr_v1 *hdr;
	struct virtio_net_stats st;

	start(default_features(), 64, 64);
	connect_peer();
	for (int i = 0; i < 4; i++)
		b[i] = rx_buffer(1024, i == 3);
	fill(frame, sizeof(frame), 9);
	peer_send(frame, sizeof(frame));
	cr_assert(wait_used(0, 3), "used %u", used_idx(0));
	/* 1012 + 1024 + 464 bytes of frame, the header in the first. */
	cr_assert_eq(used_elem(0, 0).len, 1024);
	cr_assert_eq(used_elem(0, 1).len, 1024);
	cr_assert_eq(used_elem(0, 2).len, 2500 + HDR - 2048);
	hdr = gpa(b[used_elem(0, 0).id]);
	cr_assert_eq(hdr->num_buffers, 3);
	cr_assert_eq(hdr->flags, 0);
	cr_assert_eq(hdr->gso_type, VIRTIO_NET_HDR_GSO_NONE);
	memcpy(got, gpa(b[used_elem(0, 0).id] + HDR), 1012);
	memcpy(got + 1012, gpa(b[used_elem(0, 1).id]), 1024);
	memcpy(got + 2036, gpa(b[used_elem(0, 2).id]), 464);
	cr_assert(memcmp(got, frame, sizeof(got)) == 0, "the merged frame differs");
	/* A small one takes one buffer, num_buffers 1. */
	peer_send(frame, 60);
	cr_assert(wait_used(0, 4));
	cr_assert_eq(used_elem(0, 3).len, 60 + HDR);
	cr_assert_eq(((struct virtio_net_hdr_v1 *)gpa(b[used_elem(0, 3).id]))->num_buffers, 1);
	stats(&st);
	cr_assert_eq(st.out_packets, 2);
	cr_assert_eq(st.out_bytes, 2560);
	cr_assert_eq(st.rx_dropped, 0);
}

Test(net, frames_wait_for_buffers)
{
	uint8_t frame[100];
	uint64_t b;

	start(default_features(), 64, 64);
	connect_peer();
	fill(frame, sizeof(frame), 1);
	for (int i = 0; i < 5; i++) {
		frame[20] = (uint8_t)i;
		peer_send(frame, sizeof(frame));
	}
	usleep(100000);
	cr_assert_eq(used_idx(0), 0);
	/* A merged frame waiting for its second buffer blocks the rest. */
	b = rx_buffer(64, true);
	usleep(100000);
	cr_assert_eq(used_idx(0), 0, "a frame went out without its tail");
	for (int i = 0; i < 10; i++)
		rx_buffer(512, i == 9);
	cr_assert(wait_used(0, 6), "used %u", used_idx(0));
	/* In order, nothing lost: 64 + 48 for the first frame, then one each. */
	cr_assert_eq(used_elem(0, 0).id, 0);
	cr_assert_eq(used_elem(0, 0).len, 64);
	cr_assert_eq(((struct virtio_net_hdr_v1 *)gpa(b))->num_buffers, 2);
	for (uint16_t i = 2; i < 6; i++)
		cr_assert_eq(used_elem(0, i).len, 100 + HDR);
	{
		struct virtio_net_stats st;

		stats(&st);
		cr_assert_eq(st.out_packets, 5);
		cr_assert_eq(st.rx_dropped, 0);
	}
}

Test(net, without_mergeable_buffers_a_frame_must_fit)
{
	uint8_t frame[2000];
	struct virtio_net_stats st;
	uint64_t b;

	start(default_features() & ~(1ULL << VIRTIO_NET_F_MRG_RXBUF), 64, 64);
	connect_peer();
	b = rx_buffer(1024, true);
	fill(frame, sizeof(frame), 3);
	peer_send(frame, sizeof(frame));
	peer_send(frame, 500);
	cr_assert(wait_used(0, 1));
	cr_assert_eq(used_elem(0, 0).len, 500 + HDR);
	cr_assert_eq(((struct virtio_net_hdr_v1 *)gpa(b))->num_buffers, 1);
	cr_assert(memcmp(gpa(b + HDR), frame, 500) == 0);
	stats(&st);
	cr_assert_eq(st.rx_dropped, 1);
	cr_assert_eq(st.out_packets, 1);
}

Test(net, frames_larger_than_the_ring_are_dropped)
{
	uint8_t frame[1000];
	struct virtio_net_stats st;

	start(default_features(), 4, 64);
	connect_peer();
	for (int i = 0; i < 4; i++)
		rx_buffer(64, i == 3);
	fill(frame, sizeof(frame), 5);
	peer_send(frame, sizeof(frame));	/* 4 x 64 bytes cannot hold it */
	peer_send(frame, 40);
	cr_assert(wait_used(0, 1), "used %u", used_idx(0));
	cr_assert_eq(used_elem(0, 0).len, 40 + HDR);
	stats(&st);
	cr_assert_eq(st.rx_dropped, 1);
}

Test(net, runts_and_an_empty_receive_chain)
{
	uint8_t frame[64] = { 0 };
	struct virtio_net_stats st;

	start(default_features(), 64, 64);
	connect_peer();
	rx_buffer(256, false);
	peer_send(frame, 10);			/* a runt: dropped */
	peer_send(frame, 64);
	rx_buffer(256, true);
	cr_assert(wait_used(0, 1));
	stats(&st);
	cr_assert_eq(st.rx_dropped, 1);
	/* A receive chain too short for the header: the driver broke the rules. */
	offer(0, add_desc(0, alloc_buf(8), 8, VRING_DESC_F_WRITE), true);
	peer_send(frame, 64);
	peer_send(frame, 64);
	for (int i = 0; i < 200 && !(dev->status & VIRTIO_CONFIG_S_NEEDS_RESET); i++)
		usleep(5000);
	cr_assert(dev->status & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_geq(atomic_load(&irqs[2]), 1);
	/* A reset makes it usable again. */
	virtio_set_status(dev, 0);
	cr_assert(!(dev->status & VIRTIO_CONFIG_S_NEEDS_RESET));
}

Test(net, transmit_is_pushed_back_not_dropped)
{
	enum { N = 200, LEN = 1400 };
	uint8_t frame[LEN], got[LEN + 1];
	struct virtio_net_stats st;
	uint16_t stalled;

	start(default_features(), 64, 256);
	connect_peer();
	for (int i = 0; i < N; i++) {
		fill(frame, LEN, (unsigned int)i);
		offer(1, tx_chain(frame, LEN, false), i % 16 == 15 || i == N - 1);
	}
	/* 200 x 1400 bytes is more than the socket holds: the device waits. */
	usleep(300000);
	stalled = used_idx(1);
	cr_assert_lt(stalled, N, "all %u sent: no back-pressure to see", stalled);
	usleep(100000);
	cr_assert_eq(used_idx(1), stalled, "the device kept completing chains");
	stats(&st);
	cr_assert_eq(st.tx_errors, 0);
	/* The peer reads: everything arrives, in order. */
	for (int i = 0; i < N; i++) {
		ssize_t n;

		for (int t = 0; t < 200; t++) {
			n = recv(peer, got, sizeof(got), MSG_DONTWAIT);
			if (n >= 0 || errno != EAGAIN)
				break;
			usleep(5000);
		}
		fill(frame, LEN, (unsigned int)i);
		cr_assert_eq(n, LEN, "frame %d: %zd", i, n);
		cr_assert(memcmp(got, frame, LEN) == 0, "frame %d out of order or damaged", i);
	}
	cr_assert(wait_used(1, N));
	stats(&st);
	cr_assert_eq(st.in_packets, N);
	cr_assert_eq(st.tx_errors, 0);
}

static uint16_t config_status(void)
{
	uint8_t c[10];

	dev->ops->config_read(dev, 0, c, sizeof(c));
	return (uint16_t)(c[6] | c[7] << 8);
}

Test(net, link_follows_the_backend)
{
	uint8_t c[10], frame[64] = { 0 };
	int cfg0, sv[2];

	start(default_features(), 64, 64);
	dev->ops->config_read(dev, 0, c, sizeof(c));
	cr_assert(memcmp(c, "\x52\x54\x00\x12\x34\x56", 6) == 0);
	cr_assert_eq(c[8] | c[9] << 8, 1, "max_virtqueue_pairs");
	cr_assert_eq(config_status(), 0, "link up without a backend");
	/* Frames sent without a link go nowhere and are counted. */
	offer(1, tx_chain(frame, 64, false), true);
	cr_assert(wait_used(1, 1));
	cfg0 = atomic_load(&irqs[2]);
	connect_peer();
	cr_assert_eq(config_status(), VIRTIO_NET_S_LINK_UP);
	cr_assert_gt(atomic_load(&irqs[2]), cfg0, "no configuration interrupt");
	/* The peer goes away: link down, and the frames it left are counted. */
	peer_send(frame, 64);
	cfg0 = atomic_load(&irqs[2]);
	close(peer);
	peer = -1;
	for (int i = 0; i < 200 && config_status(); i++)
		usleep(5000);
	cr_assert_eq(config_status(), 0, "link still up after the peer closed");
	cr_assert_gt(atomic_load(&irqs[2]), cfg0);
	{
		struct virtio_net_stats st;

		stats(&st);
		cr_assert_eq(st.tx_errors, 1);
		cr_assert_eq(st.rx_dropped, 1);
		cr_assert(!st.link);
	}
	/* A socket of another kind is not taken. */
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_not_null(vmm_nic_fd_problem(sv[0]));
	close(sv[0]);
	close(sv[1]);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	cr_assert_null(vmm_nic_fd_problem(sv[0]));
	close(sv[0]);
	close(sv[1]);
	cr_assert_not_null(vmm_nic_fd_problem(12345));
}

Test(net, frames_before_the_close_are_delivered)
{
	uint8_t frame[64] = { 0 };
	struct virtio_net_stats st;

	start(default_features(), 64, 64);
	connect_peer();
	for (int i = 0; i < 4; i++)
		rx_buffer(256, i == 3);
	usleep(20000);
	peer_send(frame, 64);
	peer_send(frame, 64);
	close(peer);
	peer = -1;
	cr_assert(wait_used(0, 2));
	for (int i = 0; i < 200 && config_status(); i++)
		usleep(5000);
	cr_assert_eq(config_status(), 0);
	stats(&st);
	cr_assert_eq(st.out_packets, 2);
	cr_assert_eq(st.rx_dropped, 0);
}

Test(net, event_idx_suppresses_interrupts)
{
	uint8_t frame[64] = { 0 };
	uint16_t *used_event;
	int before;

	start(default_features() | (1ULL << VIRTIO_RING_F_EVENT_IDX), 64, 64);
	used_event = &((struct vring_avail *)gpa(q[1].avail))->ring[q[1].size];
	connect_peer();
	offer(1, tx_chain(frame, 64, false), true);
	cr_assert(wait_used(1, 1));
	cr_assert_eq(atomic_load(&irqs[1]), 1);
	/* The driver wants an interrupt only after the 4th from now. */
	*used_event = 4;
	for (int i = 0; i < 3; i++) {
		offer(1, tx_chain(frame, 64, false), true);
		cr_assert(wait_used(1, (uint16_t)(2 + i)));
	}
	usleep(20000);
	cr_assert_eq(atomic_load(&irqs[1]), 1, "interrupts despite used_event");
	before = atomic_load(&irqs[1]);
	offer(1, tx_chain(frame, 64, false), true);
	cr_assert(wait_used(1, 5));
	usleep(20000);
	cr_assert_eq(atomic_load(&irqs[1]), before + 1, "no interrupt at used_event");
}

Test(net, reset_drops_what_waits)
{
	uint8_t frame[2500] = { 0 };
	struct virtio_net_stats st;

	start(default_features(), 64, 64);
	connect_peer();
	rx_buffer(1024, true);
	peer_send(frame, sizeof(frame));	/* waits for two more buffers */
	usleep(100000);
	virtio_set_status(dev, 0);
	stats(&st);
	cr_assert_eq(st.rx_dropped, 1);
	cr_assert(st.link, "a reset of the device does not take the link down");
}

/*
 * A guest resetting the device (a vCPU) while the control socket connects
 * a backend (the worker's loop): each request gets its own answer, and
 * every connect takes its socket.
 */
static atomic_bool resetting;

static void *reset_loop(void *arg)
{
	(void)arg;
	while (atomic_load(&resetting))
		virtio_set_status(dev, 0);
	return NULL;
}

Test(net, resets_and_connects_at_once)
{
	int refused = 0, first_err = 0;
	pthread_t t;

	start(default_features(), 64, 64);
	atomic_store(&resetting, true);
	cr_assert_eq(pthread_create(&t, NULL, reset_loop, NULL), 0);
	for (int i = 0; i < 2000; i++) {
		int sv[2], ret;

		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
			break;
		ret = virtio_net_connect(net, sv[0]);
		if (ret) {
			refused++;
			first_err = first_err ? first_err : ret;
		}
		close(sv[1]);
	}
	/* Asserted after the join, so a failure does not leave the thread running. */
	atomic_store(&resetting, false);
	pthread_join(t, NULL);
	cr_assert_eq(refused, 0, "%d of 2000 connects were refused (first: %s)", refused,
		     strerror(-first_err));
}

/* ---- property test: random chains, random frames ---------------------------- */

static uint64_t rng;

static uint64_t rnd(void)
{
	return xorshift64(&rng);
}

#define AREA 0x100000ULL		/* buffers live in [AREA, RAM) */

/* A trial may get one hostile descriptor. */
static bool hostile, stray_next;
#define CANARY 0xA5

struct offered {
	uint16_t head;
	uint32_t writable;		/* bytes the device may write */
};

/* Back to a fresh driver: reset, renegotiate, rings cleared, queues on. */
static void restart(uint64_t features)
{
	virtio_set_status(dev, 0);
	dev->guest_features = features;
	virtio_set_status(dev, status_up_to_features);
	for (int i = 0; i < 2; i++) {
		memset(gpa(q[i].desc), 0, 0x10000);	/* table, avail, used */
		q[i].next_desc = q[i].avail_idx = q[i].last_used = 0;
		dev->vq[i].size = q[i].size;
		dev->vq[i].desc_gpa = q[i].desc;
		dev->vq[i].avail_gpa = q[i].avail;
		dev->vq[i].used_gpa = q[i].used;
		cr_assert_eq(virtio_queue_enable(dev, (unsigned int)i), 0);
	}
	virtio_set_status(dev, status_up_to_features | VIRTIO_CONFIG_S_DRIVER_OK);
}

/* A chain of 1-3 buffers, now and then a hostile one; returns its head. */
static uint16_t random_chain(int qi, struct offered *o, uint64_t *bump)
{
	unsigned int nbuf = (qi == 1 ? 2 : 1) + (unsigned int)(rnd() % 3);
	uint16_t head = 0, prev = 0;

	o->writable = 0;
	for (unsigned int k = 0; k < nbuf; k++) {
		uint32_t len = (uint32_t)(rnd() % 3 ? rnd() % 2048 : rnd() % 9000);
		uint16_t flags = qi == 0 ? VRING_DESC_F_WRITE : 0;
		uint64_t addr = *bump;
		uint16_t d;

		if (hostile && rnd() % 8 == 0) {
			hostile = false;
			switch (rnd() % 4) {
			case 0:
				addr = RAM - rnd() % 64;	/* across the end */
				len += 64;
				break;
			case 1:
				flags ^= VRING_DESC_F_WRITE;	/* the wrong way */
				break;
			case 2:
				len = (uint32_t)(rnd() % HDR);	/* too short */
				break;
			default:
				stray_next = true;		/* next: whatever it says */
				break;
			}
		}
		/* A transmit chain starts with a clean header, outside the canaries. */
		if (qi == 1 && k == 0 && addr == *bump) {
			addr = 0x80000 + 16 * (uint64_t)(q[1].next_desc % q[1].size);
			memset(gpa(addr), 0, 16);
			len = len % 2 ? HDR : HDR + len % 4;
		}
		if (addr + len > RAM && addr == *bump)
			len = 0;
		if (addr == *bump)
			*bump += (len + 15) & ~15u;
		d = add_desc(qi, addr, len, flags);
		if (flags & VRING_DESC_F_WRITE)
			o->writable += len;
		if (k == 0)
			head = d;
		else
			link_desc(qi, prev, d);
		prev = d;
	}
	if (stray_next) {
		desc(qi, prev)->flags |= VRING_DESC_F_NEXT;
		stray_next = false;
	}
	o->head = head;
	return head;
}

/*
 * The writable bytes of the receive chain at @head as the table really
 * links it (a stray NEXT runs into other chains), marked in @written.
 */
static uint32_t chain_walk(uint16_t head, uint8_t *written)
{
	uint32_t total = 0;
	uint16_t d = head;

	for (unsigned int steps = 0; steps < q[0].size; steps++) {
		struct vring_desc *vd = desc(0, d);

		if ((vd->flags & VRING_DESC_F_WRITE) && vd->addr < RAM &&
		    vd->len <= RAM - vd->addr) {
			memset(written + vd->addr, 1, vd->len);
			total += vd->len;
		}
		if (!(vd->flags & VRING_DESC_F_NEXT) || vd->next >= q[0].size)
			break;
		d = vd->next;
	}
	return total;
}

/* Wait until neither used index has moved for 30 ms. */
static void settle(void)
{
	uint16_t u0, u1;

	do {
		u0 = used_idx(0);
		u1 = used_idx(1);
		usleep(30000);
	} while (u0 != used_idx(0) || u1 != used_idx(1));
}

Test(net, random_chains_and_frames)
{
	static uint8_t frame[65536], sink[70000];
	uint64_t features = default_features() | (1ULL << VIRTIO_RING_F_EVENT_IDX);
	unsigned int broke = 0, delivered = 0, sent = 0;
	struct rusage ru0, ru1;
	uint64_t t0 = now_ns();

	getrusage(RUSAGE_SELF, &ru0);
	rng = 0x5eed0fce11ULL;
	start(features, 64, 64);
	connect_peer();
	for (int trial = 0; trial < 150; trial++) {
		struct offered rx[40];
		uint8_t *written;
		uint64_t bump = AREA;
		unsigned int nrx = 1 + (unsigned int)(rnd() % 40), ntx = (unsigned int)(rnd() % 20);

		restart(rnd() % 4 ? features : features & ~(1ULL << VIRTIO_NET_F_MRG_RXBUF));
		hostile = rnd() % 3 == 0;
		memset(gpa(AREA), CANARY, RAM - AREA);
		for (unsigned int i = 0; i < nrx; i++)
			offer(0, random_chain(0, &rx[i], &bump), i == nrx - 1);
		for (unsigned int i = 0; i < ntx; i++) {
			struct offered o;

			offer(1, random_chain(1, &o, &bump), i == ntx - 1);
		}
		for (unsigned int i = 0, n = 1 + (unsigned int)(rnd() % 8); i < n; i++) {
			size_t len = rnd() % 8 ? 14 + rnd() % 3000 : rnd() % 65536;

			if (send(peer, frame, len, MSG_DONTWAIT) < 0 && errno != EAGAIN &&
			    errno != EMSGSIZE)
				cr_assert_fail("send: %s", strerror(errno));
		}
		settle();
		while (recv(peer, sink, sizeof(sink), MSG_DONTWAIT) > 0)
			sent++;
		if (dev->status & VIRTIO_CONFIG_S_NEEDS_RESET) {
			broke++;
			continue;
		}
		/*
		 * Every writable buffer offered is the device's to write (it may
		 * hold chains, or fill one on trial and give it back); nothing
		 * else is.
		 */
		written = calloc(1, RAM);
		for (unsigned int k = 0; k < nrx; k++)
			rx[k].writable = chain_walk(rx[k].head, written);
		/* Used entries name offered chains and stay within them. */
		for (uint16_t u = 0; u < used_idx(0); u++) {
			struct vring_used_elem e = used_elem(0, u);
			unsigned int k;

			for (k = 0; k < nrx && rx[k].head != e.id; k++)
				;
			cr_assert_lt(k, nrx, "trial %d: used id %u was never offered", trial, e.id);
			cr_assert_leq(e.len, rx[k].writable, "trial %d: %u bytes into %u",
				      trial, e.len, rx[k].writable);
			delivered++;
		}
		/* Nothing outside them was touched. */
		for (uint64_t a = AREA; a < RAM; a++)
			if (!written[a] && *(uint8_t *)gpa(a) != CANARY)
				cr_assert_fail("trial %d: the device wrote at %#lx, outside "
					       "every buffer it was given", trial, (unsigned long)a);
		free(written);
	}
	/* An I/O thread that spins instead of sleeping shows as CPU time. */
	getrusage(RUSAGE_SELF, &ru1);
	{
		double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
			     (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6;
		double wall = (double)(now_ns() - t0) / 1e9;

		cr_assert_lt(cpu, wall / 2, "%.1f s of CPU in %.1f s: something spins", cpu, wall);
	}
	/* Both outcomes must be exercised. */
	cr_assert_gt(broke, 5, "only %u trials broke the device", broke);
	cr_assert_gt(delivered, 100, "only %u receive chains used", delivered);
	cr_assert_gt(sent, 100, "only %u frames transmitted", sent);

}
