// SPDX-License-Identifier: MIT
/*
 * The host-side cost of the virtio-vsock device model.  The guest is
 * emulated on the build machines and far too slow to measure, so this
 * harness plays the guest's driver (rings and buffers in guest memory, a
 * memfd, as in a VM; kicks and interrupts through eventfds; hybrid
 * polling: it watches the used ring for 50 us, then sleeps on the
 * interrupt) and the host program is a thread on the device's Unix
 * socket.  One stream each way:
 *
 *   to the guest    a host thread writes through DIR/vsock ("CONNECT");
 *                   the driver takes the data out of 64 KiB receive
 *                   buffers and gives credit back in 1 MiB steps
 *   from the guest  the driver sends 64 KiB packets within the device's
 *                   credit; a host thread reads them from DIR/vsock_PORT
 *
 * The peer is the same stream through a Unix socket pair: a thread
 * writes, another reads, with the same buffer sizes.
 *
 * The driver sleeps on the interrupt rather than polling, as Linux's
 * virtio-vsock driver does: on a machine with two CPUs a polling driver
 * takes one from the device's thread and the host program, which a
 * guest on a vCPU of its own would not.
 *
 *   vsock_bench [--bytes N] [--runs N]
 *
 * Prints "to_guest_mibs=... from_guest_mibs=... pair_mibs=... to_ratio=...
 * from_ratio=..." (medians of alternating runs, 5 by default).
 */
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <linux/virtio_vsock.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmm/virtio/virtio.h"

#define RAM (64 * 1024 * 1024)
#define QS 256
#define HDR ((uint32_t)sizeof(struct virtio_vsock_hdr))
#define CID 3
#define CHUNK (64 * 1024)
#define NBUF 128
#define GUEST_BUF (8 * 1024 * 1024)	/* the driver's receive window */
#define CREDIT_STEP (1024 * 1024)
#define SPIN_NS 0		/* interrupts only: see above */

#define G_RING(q)	(0x10000 + 0x10000 * (uint64_t)(q))
#define G_RX		0x100000
#define G_TX		(G_RX + (uint64_t)NBUF * (HDR + CHUNK + 64))
#define G_CTL		(G_TX + (uint64_t)NBUF * (HDR + CHUNK + 64))

static uint64_t total = 1ULL << 30;
static struct guest_mem mem;
static int irq_fd;
static char dir[] = "/tmp/fsvisor-vsock-bench.XXXXXX";
static uint8_t host_buf[CHUNK];

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "vsock_bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* ---- the driver ---------------------------------------------------------------- */

struct hq {
	uint16_t avail_idx, last_used, next_desc;
	int kick;
};

static struct virtio_vsock *vs;
static struct virtio_dev *dev;
static struct hq q[3];

static void on_interrupt(struct virtio_dev *d, int queue)
{
	uint64_t one = 1;

	(void)d;
	(void)queue;
	if (write(irq_fd, &one, sizeof(one)) < 0) {
		/* saturated: the driver looks anyway */
	}
}

static struct vring_desc *desc(int qi)
{
	return (struct vring_desc *)(mem.base + G_RING(qi));
}

static struct vring_avail *avail(int qi)
{
	return (struct vring_avail *)(mem.base + G_RING(qi) + 0x4000);
}

static struct vring_used *used(int qi)
{
	return (struct vring_used *)(mem.base + G_RING(qi) + 0x8000);
}

/* Put a buffer in the ring (published with publish()). */
static void add(int qi, uint16_t d, uint64_t addr, uint32_t len, bool writable)
{
	desc(qi)[d] = (struct vring_desc){ .addr = addr, .len = len,
					   .flags = writable ? VRING_DESC_F_WRITE : 0 };
	avail(qi)->ring[q[qi].avail_idx++ % QS] = d;
}

static void publish(int qi)
{
	uint64_t one = 1;

	__atomic_store_n(&avail(qi)->idx, q[qi].avail_idx, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!(__atomic_load_n(&used(qi)->flags, __ATOMIC_ACQUIRE) & VRING_USED_F_NO_NOTIFY) &&
	    write(q[qi].kick, &one, sizeof(one)) < 0)
		die("kick");
}

/* The next used entry of @qi, waiting as a polling guest does. */
static struct vring_used_elem next_used(int qi)
{
	struct vring_used *u = used(qi);
	double until = now() + SPIN_NS / 1e9;
	struct vring_used_elem e;

	while (__atomic_load_n(&u->idx, __ATOMIC_ACQUIRE) == q[qi].last_used) {
		uint64_t v;

		if (now() < until) {
			__builtin_ia32_pause();
			continue;
		}
		__atomic_store_n(&avail(0)->flags, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&avail(1)->flags, 0, __ATOMIC_RELEASE);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (__atomic_load_n(&u->idx, __ATOMIC_ACQUIRE) == q[qi].last_used &&
		    read(irq_fd, &v, sizeof(v)) < 0)
			die("interrupt");
		__atomic_store_n(&avail(0)->flags, VRING_AVAIL_F_NO_INTERRUPT, __ATOMIC_RELEASE);
		__atomic_store_n(&avail(1)->flags, VRING_AVAIL_F_NO_INTERRUPT, __ATOMIC_RELEASE);
		until = now() + SPIN_NS / 1e9;
	}
	e = u->ring[q[qi].last_used++ % QS];
	return e;
}

static bool has_used(int qi)
{
	return __atomic_load_n(&used(qi)->idx, __ATOMIC_ACQUIRE) != q[qi].last_used;
}

static void start_device(void)
{
	struct vm_vsock_config cfg = { .cid = CID };
	const uint8_t feat = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			     VIRTIO_CONFIG_S_FEATURES_OK;
	int kicks[3];
	char err[256];

	if (virtio_vsock_create(&cfg, dir, &mem, &vs, err, sizeof(err))) {
		fprintf(stderr, "vsock_bench: %s\n", err);
		exit(1);
	}
	memset(mem.base, 0, G_RX);
	dev = virtio_vsock_dev(vs);
	dev->transport.interrupt = on_interrupt;
	dev->guest_features = 1ULL << VIRTIO_F_VERSION_1;
	virtio_set_status(dev, feat);
	for (int i = 0; i < 3; i++) {
		q[i] = (struct hq){ .kick = eventfd(0, EFD_CLOEXEC) };
		kicks[i] = q[i].kick;
		dev->vq[i].size = QS;
		dev->vq[i].desc_gpa = G_RING(i);
		dev->vq[i].avail_gpa = G_RING(i) + 0x4000;
		dev->vq[i].used_gpa = G_RING(i) + 0x8000;
		if (virtio_queue_enable(dev, (unsigned int)i))
			die("queue");
	}
	if (virtio_vsock_start(vs, kicks))
		die("start");
	virtio_set_status(dev, feat | VIRTIO_CONFIG_S_DRIVER_OK);
	avail(0)->flags = avail(1)->flags = VRING_AVAIL_F_NO_INTERRUPT;
	/* Receive buffers, descriptor i on buffer i. */
	for (uint16_t i = 0; i < NBUF; i++)
		add(0, i, G_RX + (uint64_t)i * (HDR + CHUNK + 64), HDR + CHUNK, true);
	publish(0);
}

static void stop_device(void)
{
	virtio_vsock_destroy(vs);
	for (int i = 0; i < 3; i++)
		close(q[i].kick);
}

static struct virtio_vsock_hdr *rx_hdr(uint32_t id)
{
	return (struct virtio_vsock_hdr *)(mem.base + G_RX + (uint64_t)id * (HDR + CHUNK + 64));
}

/* A control packet from the driver, from the control buffers. */
static void send_ctl(uint32_t gport, uint32_t hport, uint16_t op, uint32_t buf_alloc,
		     uint32_t fwd)
{
	static uint16_t slot;
	uint16_t d = (uint16_t)(NBUF + slot++ % (QS - NBUF));
	uint64_t a = G_CTL + (uint64_t)(d - NBUF) * 64;
	struct virtio_vsock_hdr *h = (struct virtio_vsock_hdr *)(mem.base + a);

	*h = (struct virtio_vsock_hdr){
		.src_cid = htole64(CID), .dst_cid = htole64(2),
		.src_port = htole32(gport), .dst_port = htole32(hport),
		.type = htole16(VIRTIO_VSOCK_TYPE_STREAM), .op = htole16(op),
		.buf_alloc = htole32(buf_alloc), .fwd_cnt = htole32(fwd),
	};
	add(1, d, a, HDR, false);
	publish(1);
}

/* Give back transmit descriptors the device is done with. */
static void tx_reap(void)
{
	while (has_used(1))
		next_used(1);
}

/* Take the next receive packet; its buffer goes back to the ring. */
static struct virtio_vsock_hdr next_rx(uint32_t *len)
{
	struct vring_used_elem e = next_used(0);
	struct virtio_vsock_hdr h = *rx_hdr(e.id);

	*len = e.len - HDR;
	add(0, (uint16_t)e.id, G_RX + (uint64_t)e.id * (HDR + CHUNK + 64), HDR + CHUNK, true);
	return h;
}

/* ---- to the guest --------------------------------------------------------------- */

static int dial(const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir, name);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	return fd;
}

static void write_all(int fd, uint64_t n)
{
	while (n) {
		ssize_t k = write(fd, host_buf, n < CHUNK ? (size_t)n : CHUNK);

		if (k <= 0)
			die("write");
		n -= (uint64_t)k;
	}
}

static void *host_writer(void *arg)
{
	int fd = dial("vsock");
	char c;

	(void)arg;
	if (write(fd, "CONNECT 5000\n", 13) != 13)
		die("CONNECT");
	do {
		if (read(fd, &c, 1) != 1)
			die("OK");
	} while (c != '\n');
	write_all(fd, total);
	close(fd);
	return NULL;
}

static double run_to_guest(void)
{
	uint64_t got = 0, fwd_told = 0;
	uint32_t hport = 0, len;
	pthread_t t;
	double t0;

	start_device();
	if (pthread_create(&t, NULL, host_writer, NULL))
		die("thread");
	for (;;) {
		struct virtio_vsock_hdr h = next_rx(&len);

		if (le16toh(h.op) == VIRTIO_VSOCK_OP_REQUEST) {
			hport = le32toh(h.src_port);
			break;
		}
	}
	publish(0);
	send_ctl(5000, hport, VIRTIO_VSOCK_OP_RESPONSE, GUEST_BUF, 0);
	t0 = now();
	while (got < total) {
		struct virtio_vsock_hdr h = next_rx(&len);
		bool more = has_used(0);

		if (le16toh(h.op) == VIRTIO_VSOCK_OP_RW)
			got += len;
		/* A batch taken: the buffers back, and credit when it runs low. */
		if (!more) {
			publish(0);
			tx_reap();
			if (got - fwd_told >= CREDIT_STEP) {
				send_ctl(5000, hport, VIRTIO_VSOCK_OP_CREDIT_UPDATE, GUEST_BUF,
					 (uint32_t)got);
				fwd_told = got;
			}
		}
	}
	t0 = now() - t0;
	pthread_join(t, NULL);
	stop_device();
	return (double)total / 1048576.0 / t0;
}

/* ---- from the guest --------------------------------------------------------------- */

static int lfd = -1;

static void *host_reader(void *arg)
{
	static uint8_t buf[CHUNK];
	uint64_t n = 0;
	int fd = accept(lfd, NULL, NULL);

	(void)arg;
	if (fd < 0)
		die("accept");
	while (n < total) {
		ssize_t k = read(fd, buf, sizeof(buf));

		if (k <= 0)
			die("read");
		n += (uint64_t)k;
	}
	close(fd);
	return NULL;
}

/* Until the device used something of either ring, waiting as a polling guest does. */
static void wait_any(void)
{
	double until = now() + SPIN_NS / 1e9;

	while (!has_used(0) && !has_used(1)) {
		uint64_t v;

		if (now() < until) {
			__builtin_ia32_pause();
			continue;
		}
		__atomic_store_n(&avail(0)->flags, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&avail(1)->flags, 0, __ATOMIC_RELEASE);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (!has_used(0) && !has_used(1) && read(irq_fd, &v, sizeof(v)) < 0)
			die("interrupt");
		__atomic_store_n(&avail(0)->flags, VRING_AVAIL_F_NO_INTERRUPT, __ATOMIC_RELEASE);
		__atomic_store_n(&avail(1)->flags, VRING_AVAIL_F_NO_INTERRUPT, __ATOMIC_RELEASE);
		until = now() + SPIN_NS / 1e9;
	}
}

static double run_from_guest(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint64_t sent = 0, dev_fwd = 0, dev_buf = 0;
	unsigned int inflight = 0, unpublished = 0;
	uint16_t slot = 0;
	uint32_t len;
	pthread_t t;
	double t0;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/vsock_5001", dir);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	unlink(sa.sun_path);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 4))
		die("listen");
	start_device();
	if (pthread_create(&t, NULL, host_reader, NULL))
		die("thread");
	send_ctl(6000, 5001, VIRTIO_VSOCK_OP_REQUEST, 65536, 0);
	for (;;) {
		struct virtio_vsock_hdr h = next_rx(&len);

		if (le16toh(h.op) == VIRTIO_VSOCK_OP_RESPONSE) {
			dev_buf = le32toh(h.buf_alloc);
			break;
		}
	}
	publish(0);
	tx_reap();		/* the REQUEST's descriptor */
	t0 = now();
	while (sent < total) {
		bool rx = false;

		/* What the device says of its room, and the descriptors it gave back. */
		while (has_used(0)) {
			struct virtio_vsock_hdr h = next_rx(&len);

			dev_fwd += (uint32_t)(le32toh(h.fwd_cnt) - (uint32_t)dev_fwd);
			rx = true;
		}
		if (rx)
			publish(0);
		while (has_used(1)) {
			next_used(1);
			inflight--;
		}
		if (dev_buf - (sent - dev_fwd) >= CHUNK && inflight < NBUF) {
			uint64_t a = G_TX + (uint64_t)(slot % NBUF) * (HDR + CHUNK + 64);
			struct virtio_vsock_hdr *h = (struct virtio_vsock_hdr *)(mem.base + a);
			uint32_t n = total - sent < CHUNK ? (uint32_t)(total - sent) : CHUNK;

			*h = (struct virtio_vsock_hdr){
				.src_cid = htole64(CID), .dst_cid = htole64(2),
				.src_port = htole32(6000), .dst_port = htole32(5001),
				.len = htole32(n), .type = htole16(VIRTIO_VSOCK_TYPE_STREAM),
				.op = htole16(VIRTIO_VSOCK_OP_RW), .buf_alloc = htole32(65536),
			};
			add(1, (uint16_t)(slot % NBUF), a, HDR + n, false);
			slot++;
			inflight++;
			sent += n;
			/* A few packets a kick, as a driver's batch. */
			if (++unpublished == 4) {
				publish(1);
				unpublished = 0;
			}
			continue;
		}
		if (unpublished) {
			publish(1);
			unpublished = 0;
		}
		/* Out of credit or descriptors: the device says when there is more. */
		wait_any();
	}
	if (unpublished)
		publish(1);
	pthread_join(t, NULL);
	t0 = now() - t0;
	stop_device();
	close(lfd);
	return (double)total / 1048576.0 / t0;
}

/* ---- the peer: a Unix socket pair -------------------------------------------------- */

static int pair[2];

static void *pair_writer(void *arg)
{
	(void)arg;
	write_all(pair[0], total);
	return NULL;
}

static double run_pair(void)
{
	static uint8_t buf[CHUNK];
	uint64_t n = 0;
	pthread_t t;
	double t0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair))
		die("socketpair");
	t0 = now();
	if (pthread_create(&t, NULL, pair_writer, NULL))
		die("thread");
	while (n < total) {
		ssize_t k = read(pair[1], buf, sizeof(buf));

		if (k <= 0)
			die("read");
		n += (uint64_t)k;
	}
	t0 = now() - t0;
	pthread_join(t, NULL);
	close(pair[0]);
	close(pair[1]);
	return (double)total / 1048576.0 / t0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "bytes", required_argument, NULL, 'b' },
		{ "runs", required_argument, NULL, 'r' },
		{ 0 },
	};
	double to[15], from[15], peer[15], mto, mfrom, mpeer;
	char err[256];
	int c, runs = 5;

	while ((c = getopt_long(argc, argv, "b:r:", opts, NULL)) != -1) {
		if (c == 'b')
			total = strtoull(optarg, NULL, 0);
		else if (c == 'r')
			runs = atoi(optarg);
		else
			return 2;
	}
	if (optind != argc || total < CHUNK || runs < 1 || runs > 15) {
		fprintf(stderr, "usage: vsock_bench [--bytes N (at least 65536)] [--runs 1-15]\n");
		return 2;
	}
	if (!mkdtemp(dir) || mem_create(&mem, RAM, err, sizeof(err)))
		die("setup");
	irq_fd = eventfd(0, EFD_CLOEXEC);
	memset(host_buf, 0x5A, sizeof(host_buf));
	for (int i = 0; i < runs; i++) {
		to[i] = run_to_guest();
		from[i] = run_from_guest();
		peer[i] = run_pair();
	}
	mto = median(to, runs);
	mfrom = median(from, runs);
	mpeer = median(peer, runs);
	printf("to_guest_mibs=%.0f from_guest_mibs=%.0f pair_mibs=%.0f to_ratio=%.2f from_ratio=%.2f\n",
	       mto, mfrom, mpeer, mto / mpeer, mfrom / mpeer);
	mem_destroy(&mem);
	rmdir(dir);
	return 0;
}
