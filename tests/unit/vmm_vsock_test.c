// SPDX-License-Identifier: MIT
/*
 * virtio-vsock driven from the host: this file plays the guest's driver
 * (rings and buffers in a memfd "guest RAM", good and hostile packets)
 * and the host programs (Unix sockets in a scratch run directory), with
 * the device's own I/O thread in between.  Connections both ways, RST
 * for ports nobody listens on, credit in both directions, the transmit
 * ring drained while the guest gives no receive buffers, malformed
 * packets and floods, shutdowns and their timeout, the transport reset
 * a restore calls, and the device's saved state.
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_vsock.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmm/virtio/virtio.h"
#include "xorshift.h"

#define RAM (16 * 1024 * 1024)
#define HDR ((uint32_t)sizeof(struct virtio_vsock_hdr))
#define CID 7
#define RXQ 0
#define TXQ 1
#define EVQ 2
#define QSIZE 256

static struct guest_mem mem;
static struct virtio_vsock *vs;
static struct virtio_dev *dev;
static int kick[3] = { -1, -1, -1 };
static _Atomic int irqs[4];		/* rx, tx, event, config */
static char dir[] = "/tmp/fsvisor-vsock-test.XXXXXX";
static bool dir_made;

struct hq {
	uint16_t size;
	uint64_t desc, avail, used;
	uint16_t next_desc;
	uint16_t avail_idx;
	uint16_t last_used;
	uint64_t buf_of[QSIZE];		/* descriptor -> its buffer */
};

static struct hq q[3];
static uint64_t next_buf = 0x100000;

static void *gpa(uint64_t a)
{
	return mem.base + a;
}

static void count_irq(struct virtio_dev *d, int queue)
{
	(void)d;
	atomic_fetch_add(&irqs[queue < 0 ? 3 : queue], 1);
}

static uint64_t alloc_buf(uint32_t len)
{
	uint64_t a = next_buf;

	next_buf += (len + 63) & ~63u;
	cr_assert_lt(next_buf, RAM, "test buffer space exhausted");
	return a;
}

static const uint8_t up_to_features = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	VIRTIO_CONFIG_S_FEATURES_OK;

static void start_buf(uint32_t buf_alloc)
{
	char err[256];
	struct vm_vsock_config cfg = { .cid = CID };
	uint16_t sizes[3] = { QSIZE, QSIZE, 8 };

	cr_assert(mkdtemp(dir), "mkdtemp");
	dir_made = true;
	cr_assert_eq(mem_create(&mem, RAM, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(virtio_vsock_create(&cfg, dir, &mem, &vs, err, sizeof(err)), 0, "%s", err);
	if (buf_alloc)
		vsock_set_buf_alloc(vs, buf_alloc);
	dev = virtio_vsock_dev(vs);
	dev->transport.interrupt = count_irq;
	dev->guest_features = (1ULL << VIRTIO_F_VERSION_1);
	virtio_set_status(dev, up_to_features);
	cr_assert(dev->status & VIRTIO_CONFIG_S_FEATURES_OK, "features refused");
	for (int i = 0; i < 3; i++) {
		q[i] = (struct hq){ .size = sizes[i], .desc = 0x10000 + 0x10000 * (uint64_t)i,
				    .avail = 0x18000 + 0x10000 * (uint64_t)i,
				    .used = 0x1C000 + 0x10000 * (uint64_t)i };
		dev->vq[i].size = sizes[i];
		dev->vq[i].desc_gpa = q[i].desc;
		dev->vq[i].avail_gpa = q[i].avail;
		dev->vq[i].used_gpa = q[i].used;
		cr_assert_eq(virtio_queue_enable(dev, (unsigned int)i), 0);
		kick[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	}
	cr_assert_eq(virtio_vsock_start(vs, kick), 0);
	virtio_set_status(dev, up_to_features | VIRTIO_CONFIG_S_DRIVER_OK);
}

static void start(void)
{
	start_buf(0);
}

static void teardown(void)
{
	char cmd[128];

	if (vs)
		virtio_vsock_destroy(vs);
	vs = NULL;
	for (int i = 0; i < 3; i++)
		if (kick[i] >= 0)
			close(kick[i]);
	kick[0] = kick[1] = kick[2] = -1;
	for (int i = 0; i < 4; i++)
		atomic_store(&irqs[i], 0);
	next_buf = 0x100000;
	mem_destroy(&mem);
	if (dir_made) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd)) {
			/* a scratch directory left behind */
		}
		strcpy(dir, "/tmp/fsvisor-vsock-test.XXXXXX");
		dir_made = false;
	}
}

TestSuite(vsock, .fini = teardown, .timeout = 120);

/* ---- the driver's side -------------------------------------------------- */

static struct vring_desc *desc(int qi, uint16_t i)
{
	return (struct vring_desc *)gpa(q[qi].desc) + i;
}

static uint16_t add_desc(int qi, uint64_t addr, uint32_t len, uint16_t flags)
{
	uint16_t i = q[qi].next_desc++ % q[qi].size;

	*desc(qi, i) = (struct vring_desc){ .addr = addr, .len = len, .flags = flags };
	q[qi].buf_of[i] = addr;
	return i;
}

static void kick_q(int qi)
{
	uint64_t one = 1;

	cr_assert_eq(write(kick[qi], &one, sizeof(one)), 8);
}

static void offer(int qi, uint16_t head, bool do_kick)
{
	struct vring_avail *a = gpa(q[qi].avail);

	a->ring[q[qi].avail_idx % q[qi].size] = head;
	q[qi].avail_idx++;
	__atomic_store_n(&a->idx, q[qi].avail_idx, __ATOMIC_RELEASE);
	if (do_kick)
		kick_q(qi);
}

static uint16_t used_idx(int qi)
{
	return __atomic_load_n(&((struct vring_used *)gpa(q[qi].used))->idx, __ATOMIC_ACQUIRE);
}

static struct vring_used_elem used_elem(int qi, uint16_t n)
{
	return ((struct vring_used *)gpa(q[qi].used))->ring[n % q[qi].size];
}

static bool wait_used(int qi, uint16_t want, int ms)
{
	for (int i = 0; i < ms / 2; i++) {
		if ((uint16_t)(used_idx(qi) - want) < 0x8000)
			return true;
		usleep(2000);
	}
	return (uint16_t)(used_idx(qi) - want) < 0x8000;
}

/* Receive buffers: @n of @len bytes each. */
static void rx_give(unsigned int n, uint32_t len)
{
	for (unsigned int i = 0; i < n; i++)
		offer(RXQ, add_desc(RXQ, alloc_buf(len), len, VRING_DESC_F_WRITE), i + 1 == n);
}

struct pkt {
	struct virtio_vsock_hdr h;
	uint8_t data[65536];
	uint32_t len;			/* payload bytes */
};

/* The next packet the device sent; false if none came within @ms. */
static bool rx_next(struct pkt *p, int ms)
{
	struct vring_used_elem u;
	uint8_t *b;

	if (!wait_used(RXQ, (uint16_t)(q[RXQ].last_used + 1), ms))
		return false;
	u = used_elem(RXQ, q[RXQ].last_used++);
	cr_assert_lt(u.id, q[RXQ].size);
	cr_assert_geq(u.len, HDR, "a used receive buffer shorter than a header");
	b = gpa(q[RXQ].buf_of[u.id]);
	memcpy(&p->h, b, HDR);
	p->len = u.len - HDR;
	cr_assert_eq(le32toh(p->h.len), p->len, "header len %u, used %u", le32toh(p->h.len),
		     p->len);
	memcpy(p->data, b + HDR, p->len);
	cr_assert_eq(le64toh(p->h.src_cid), 2);
	cr_assert_eq(le64toh(p->h.dst_cid), CID);
	cr_assert_eq(le16toh(p->h.type), VIRTIO_VSOCK_TYPE_STREAM);
	return true;
}

static void expect_none(int ms)
{
	struct pkt p;

	cr_assert(!rx_next(&p, ms), "an unexpected packet: op %u", le16toh(p.h.op));
}

static struct virtio_vsock_hdr ghdr(uint32_t gport, uint32_t hport, uint16_t op,
				    uint32_t buf_alloc, uint32_t fwd_cnt)
{
	return (struct virtio_vsock_hdr){
		.src_cid = htole64(CID), .dst_cid = htole64(2),
		.src_port = htole32(gport), .dst_port = htole32(hport),
		.type = htole16(VIRTIO_VSOCK_TYPE_STREAM), .op = htole16(op),
		.buf_alloc = htole32(buf_alloc), .fwd_cnt = htole32(fwd_cnt),
	};
}

/* A packet from the guest: header and payload in one buffer (or two). */
static uint16_t tx_chain(const struct virtio_vsock_hdr *h, const void *data, uint32_t len,
			 uint32_t buf_len, bool split)
{
	uint64_t b = alloc_buf(HDR + buf_len);

	memcpy(gpa(b), h, HDR);
	if (len)
		memcpy(gpa(b + HDR), data, len);
	if (!split)
		return add_desc(TXQ, b, HDR + buf_len, 0);
	{
		uint16_t a = add_desc(TXQ, b, HDR, 0);
		uint16_t d = add_desc(TXQ, b + HDR, buf_len, 0);

		desc(TXQ, a)->flags |= VRING_DESC_F_NEXT;
		desc(TXQ, a)->next = d;
		return a;
	}
}

static void tx(const struct virtio_vsock_hdr *h, const void *data, uint32_t len)
{
	struct virtio_vsock_hdr hh = *h;

	hh.len = htole32(len);
	offer(TXQ, tx_chain(&hh, data, len, len, len > 100), true);
}

static void tx_op(uint32_t gport, uint32_t hport, uint16_t op, uint32_t buf_alloc,
		  uint32_t fwd_cnt)
{
	struct virtio_vsock_hdr h = ghdr(gport, hport, op, buf_alloc, fwd_cnt);

	tx(&h, NULL, 0);
}

static json_t *stats(void)
{
	return vsock_stats_json(vs);
}

static long long stat(const char *key)
{
	json_t *st = stats();
	long long v = json_integer_value(json_object_get(st, key));

	json_decref(st);
	return v;
}

/* Wait (up to 2 s) for a counter to be @want. */
static bool stat_is(const char *key, long long want)
{
	for (int i = 0; i < 400; i++) {
		if (stat(key) == want)
			return true;
		usleep(5000);
	}
	return false;
}

/* Wait (up to 2 s) for a counter to reach @want. */
static bool stat_reaches(const char *key, long long want)
{
	for (int i = 0; i < 400; i++) {
		if (stat(key) >= want)
			return true;
		usleep(5000);
	}
	return false;
}

/* ---- the host's side ------------------------------------------------------ */

static void addr_of(struct sockaddr_un *sa, const char *name)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/%s", dir, name);
}

static int host_listen(uint32_t port)
{
	struct sockaddr_un sa;
	char name[32];
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(name, sizeof(name), "vsock_%u", port);
	addr_of(&sa, name);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind: %s", strerror(errno));
	cr_assert_eq(listen(fd, 64), 0);
	return fd;
}

static int host_dial(void)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	addr_of(&sa, "vsock");
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s",
		     strerror(errno));
	return fd;
}

static void send_all(int fd, const void *buf, size_t len)
{
	cr_assert_eq(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Read exactly @len bytes within 2 s. */
static void recv_all(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		cr_assert_eq(poll(&p, 1, 2000), 1, "host read timed out at %zu of %zu", got, len);
		n = recv(fd, (char *)buf + got, len - got, 0);
		cr_assert_gt(n, 0, "host read: %zd (%s) at %zu of %zu", n, strerror(errno), got, len);
		got += (size_t)n;
	}
}

/* The host end sees an end of file (or a reset) within 2 s. */
static void expect_eof(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	cr_assert_eq(poll(&p, 1, 2000), 1, "no end of file");
	cr_assert_leq(recv(fd, &c, 1, MSG_DONTWAIT), 0, "data instead of an end of file");
}

/* A guest connection to host port @hport from guest port @gport, accepted. */
static int guest_connect(int lfd, uint32_t gport, uint32_t hport, uint32_t buf_alloc)
{
	struct pkt p;
	int fd;

	tx_op(gport, hport, VIRTIO_VSOCK_OP_REQUEST, buf_alloc, 0);
	cr_assert(rx_next(&p, 2000), "no answer to the REQUEST");
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_RESPONSE, "op %u", le16toh(p.h.op));
	cr_assert_eq(le32toh(p.h.src_port), hport);
	cr_assert_eq(le32toh(p.h.dst_port), gport);
	cr_assert_eq(le32toh(p.h.buf_alloc), 1024 * 1024);
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	cr_assert_geq(fd, 0);
	return fd;
}

/* A host connection to guest port @gport: the guest's REQUEST, answered. */
static int host_connect(uint32_t gport, uint32_t buf_alloc, uint32_t *host_port)
{
	char line[64], ok[32];
	struct pkt p;
	int fd = host_dial(), n;

	n = snprintf(line, sizeof(line), "CONNECT %u\n", gport);
	send_all(fd, line, (size_t)n);
	cr_assert(rx_next(&p, 2000), "no REQUEST for the host's CONNECT");
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_REQUEST);
	cr_assert_eq(le32toh(p.h.dst_port), gport);
	*host_port = le32toh(p.h.src_port);
	cr_assert_geq(*host_port, 1u << 30);
	tx_op(gport, *host_port, VIRTIO_VSOCK_OP_RESPONSE, buf_alloc, 0);
	n = snprintf(ok, sizeof(ok), "OK %u\n", *host_port);
	recv_all(fd, line, (size_t)n);
	cr_assert(memcmp(line, ok, (size_t)n) == 0, "the host got '%.*s'", n, line);
	return fd;
}

/*
 * The host socket closed: SHUTDOWN (both).  An end of file read before
 * the close was seen may have brought a SHUTDOWN (SEND) first.
 */
static void expect_shutdown_both(uint32_t gport)
{
	struct pkt p;

	do {
		cr_assert(rx_next(&p, 2000), "no SHUTDOWN");
		cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_SHUTDOWN, "op %u", le16toh(p.h.op));
		cr_assert_eq(le32toh(p.h.dst_port), gport);
	} while (le32toh(p.h.flags) == VIRTIO_VSOCK_SHUTDOWN_SEND);
	cr_assert_eq(le32toh(p.h.flags), VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND);
}

/* ---- connections ---------------------------------------------------------- */

Test(vsock, guest_connects_to_a_host_listener)
{
	int lfd, fd;
	char buf[16];
	struct pkt p;

	start();
	cr_assert_eq(dev->ops->config_size, 8);
	{
		uint64_t cid = 0;

		dev->ops->config_read(dev, 0, (uint8_t *)&cid, 8);
		cr_assert_eq(le64toh(cid), CID);
	}
	rx_give(16, 4096);
	lfd = host_listen(1234);
	fd = guest_connect(lfd, 5000, 1234, 65536);
	{
		struct virtio_vsock_hdr h = ghdr(5000, 1234, VIRTIO_VSOCK_OP_RW, 65536, 0);

		tx(&h, "hello", 5);
	}
	recv_all(fd, buf, 5);
	cr_assert(memcmp(buf, "hello", 5) == 0);
	send_all(fd, "world!", 6);
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_RW);
	cr_assert_eq(p.len, 6);
	cr_assert(memcmp(p.data, "world!", 6) == 0);
	/* Our credit: the whole buffer, 5 bytes consumed. */
	cr_assert_eq(le32toh(p.h.buf_alloc), 1024 * 1024);
	cr_assert_eq(le32toh(p.h.fwd_cnt), 5);
	cr_assert_eq(stat("guest_connects"), 1);
	cr_assert_eq(stat("connections"), 1);
	cr_assert_eq(stat("from_guest_bytes"), 5);
	cr_assert_eq(stat("to_guest_bytes"), 6);
	cr_assert_geq(atomic_load(&irqs[RXQ]), 1);
	cr_assert_geq(atomic_load(&irqs[TXQ]), 1);
	close(fd);
	close(lfd);
}

Test(vsock, rst_for_a_port_nobody_listens_on)
{
	struct pkt p;

	start();
	rx_give(4, 4096);
	tx_op(5001, 4321, VIRTIO_VSOCK_OP_REQUEST, 65536, 0);
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_RST);
	cr_assert_eq(le32toh(p.h.src_port), 4321);
	cr_assert_eq(le32toh(p.h.dst_port), 5001);
	cr_assert_eq(stat("refused"), 1);
	cr_assert_eq(stat("connections"), 0);
	/* Data on a connection that does not exist is reset too. */
	tx_op(5002, 4321, VIRTIO_VSOCK_OP_CREDIT_REQUEST, 65536, 0);
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_RST);
	/* A reset is never answered. */
	tx_op(5003, 4321, VIRTIO_VSOCK_OP_RST, 0, 0);
	expect_none(200);
}

Test(vsock, host_connects_to_the_guest)
{
	uint32_t hport;
	char buf[16];
	struct pkt p;
	int fd, fd2, n;

	start();
	rx_give(16, 4096);
	fd = host_dial();
	/* The stream's first bytes may come with the CONNECT line. */
	send_all(fd, "CONNECT 80\nearly", 16);
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_REQUEST);
	cr_assert_eq(le32toh(p.h.dst_port), 80);
	hport = le32toh(p.h.src_port);
	cr_assert_geq(hport, 1u << 30);
	/* Nothing reaches the guest before it accepted. */
	expect_none(100);
	tx_op(80, hport, VIRTIO_VSOCK_OP_RESPONSE, 65536, 0);
	n = snprintf(buf, sizeof(buf), "OK %u\n", hport);
	{
		char got[16];

		recv_all(fd, got, (size_t)n);
		cr_assert(memcmp(got, buf, (size_t)n) == 0);
	}
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_RW);
	cr_assert_eq(p.len, 5);
	cr_assert(memcmp(p.data, "early", 5) == 0);
	{
		struct virtio_vsock_hdr h = ghdr(80, hport, VIRTIO_VSOCK_OP_RW, 65536, 5);

		tx(&h, "reply", 5);
	}
	recv_all(fd, buf, 5);
	cr_assert(memcmp(buf, "reply", 5) == 0);
	cr_assert_eq(stat("host_connects"), 1);
	/* A second connection to the same port gets another host port. */
	{
		uint32_t hport2;

		fd2 = host_connect(80, 65536, &hport2);
		cr_assert_neq(hport2, hport);
		close(fd2);
		/* Its close: the guest hears both directions are gone, and resets. */
		expect_shutdown_both(80);
		tx_op(80, hport2, VIRTIO_VSOCK_OP_RST, 0, 0);
	}
	/* The guest refuses: the host client is closed without an OK. */
	send_all(fd2 = host_dial(), "CONNECT 81\n", 11);
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_REQUEST);
	tx_op(81, le32toh(p.h.src_port), VIRTIO_VSOCK_OP_RST, 0, 0);
	expect_eof(fd2);
	close(fd2);
	close(fd);
}

Test(vsock, host_clients_that_give_up_or_send_junk)
{
	const char *bad[] = { "CONNECT\n", "CONNECT abc\n", "CONNECT 99999999999\n",
			      "connect 5\n", "CONNECT 5 6\n", "CONNECT -1\n" };
	char longline[64];
	uint32_t hport;
	int fd;

	start();
	rx_give(16, 4096);
	/* Closed before the line ends. */
	fd = host_dial();
	send_all(fd, "CONN", 4);
	usleep(50000);
	close(fd);
	cr_assert(stat_reaches("host_aborted", 1));
	/* Closed at once. */
	close(host_dial());
	cr_assert(stat_reaches("host_aborted", 2));
	/* Junk, and a line that never ends. */
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		fd = host_dial();
		send_all(fd, bad[i], strlen(bad[i]));
		expect_eof(fd);
		close(fd);
	}
	memset(longline, 'x', sizeof(longline));
	fd = host_dial();
	send_all(fd, longline, sizeof(longline));
	expect_eof(fd);
	close(fd);
	cr_assert(stat_reaches("host_aborted", 3 + ARRAY_SIZE(bad)));
	/* None of it reached the guest, and the next client is served. */
	expect_none(100);
	fd = host_connect(22, 65536, &hport);
	close(fd);
	cr_assert_eq(stat("connections"), 1);
}

Test(vsock, a_silent_host_client_times_out)
{
	int fd;

	start();
	fd = host_dial();
	send_all(fd, "CONNECT 7", 9);	/* and nothing more */
	expect_none(100);
	{
		struct pollfd p = { .fd = fd, .events = POLLIN };

		cr_assert_eq(poll(&p, 1, 7000), 1, "not closed after the timeout");
	}
	cr_assert_eq(stat("timeouts"), 1);
	cr_assert_eq(stat("connections"), 0);
	close(fd);
}

/* ---- credit ---------------------------------------------------------------- */

Test(vsock, nothing_beyond_the_guests_credit)
{
	static uint8_t data[20000], got[20000];
	uint32_t hport, received = 0, fwd = 0;
	uint64_t rng = 42;
	int fd;

	start();
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)xorshift64(&rng);
	rx_give(64, 4096);
	/* The guest has a tiny receive buffer: 1000 bytes. */
	fd = host_connect(9, 1000, &hport);
	send_all(fd, data, sizeof(data));
	while (received < sizeof(data)) {
		uint32_t window = 0;
		struct pkt p;

		/* Until the guest says it consumed some, at most its buffer arrives. */
		while (rx_next(&p, 300)) {
			cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_RW);
			memcpy(got + received, p.data, p.len);
			received += p.len;
			window += p.len;
		}
		cr_assert_gt(window, 0, "stalled at %u bytes", received);
		cr_assert_leq(received - fwd, 1000, "%u bytes in flight for a 1000-byte buffer",
			      received - fwd);
		/* Consumed: tell the device. */
		fwd = received;
		tx_op(9, hport, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 1000, fwd);
		if (q[RXQ].avail_idx - q[RXQ].last_used < 32)
			rx_give(32, 4096);
	}
	cr_assert(memcmp(got, data, sizeof(data)) == 0, "the bytes differ");
	close(fd);
}

/* A sending guest's view of one connection: what our packets told it. */
struct gsend {
	uint32_t gport, hport;
	uint32_t sent;			/* bytes it sent */
	uint32_t fwd;			/* our fwd_cnt, as last heard */
	uint32_t buf_alloc;		/* ours, as last heard */
};

/* Listen to the device for up to @ms (credit updates only), and keep it in buffers. */
static void hear(struct gsend *g, int ms)
{
	struct pkt p;

	while (rx_next(&p, ms)) {
		cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_CREDIT_UPDATE, "op %u",
			     le16toh(p.h.op));
		cr_assert_eq(le32toh(p.h.dst_port), g->gport);
		g->fwd = le32toh(p.h.fwd_cnt);
		g->buf_alloc = le32toh(p.h.buf_alloc);
		ms = 0;
	}
	if ((uint16_t)(q[RXQ].avail_idx - q[RXQ].last_used) < 16)
		rx_give(64, 256);
}

static uint32_t room(const struct gsend *g)
{
	uint32_t used = g->sent - g->fwd;

	return used >= g->buf_alloc ? 0 : g->buf_alloc - used;
}

/* Send @len bytes of @data as the credit allows; false when stuck for 200 ms. */
static bool send_within_credit(struct gsend *g, const uint8_t *data, uint32_t len)
{
	hear(g, 0);
	if (room(g) < len) {
		hear(g, 200);
		if (room(g) < len)
			return false;
	}
	{
		struct virtio_vsock_hdr h = ghdr(g->gport, g->hport, VIRTIO_VSOCK_OP_RW, 65536, 0);
		uint16_t want = (uint16_t)(used_idx(TXQ) + 1);

		tx(&h, data, len);
		cr_assert(wait_used(TXQ, want, 2000));
	}
	g->sent += len;
	return true;
}

Test(vsock, the_guest_is_held_to_our_credit)
{
	static uint8_t block[4096];
	struct gsend g = { .gport = 6000, .hport = 700, .buf_alloc = 8192 };
	struct pkt p;
	int lfd, fd;

	/* 8 KiB per connection, and a host that does not read. */
	start_buf(8192);
	rx_give(64, 256);
	lfd = host_listen(700);
	tx_op(6000, 700, VIRTIO_VSOCK_OP_REQUEST, 65536, 0);
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_RESPONSE);
	cr_assert_eq(le32toh(p.h.buf_alloc), 8192);
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	/* Send within the credit it is told until the host socket is full. */
	while (send_within_credit(&g, block, sizeof(block)))
		cr_assert_lt(g.sent, 64 * 1024 * 1024, "the host socket never filled");
	cr_assert_gt(g.sent, 8192);
	cr_assert_eq(stat("credit_violations"), 0);
	cr_assert_eq(stat("connections"), 1);
	/* One more block is more than it was given: the connection is reset. */
	{
		struct virtio_vsock_hdr h = ghdr(6000, 700, VIRTIO_VSOCK_OP_RW, 65536, 0);

		tx(&h, block, sizeof(block));
	}
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_RST);
	cr_assert_eq(stat("credit_violations"), 1);
	cr_assert_eq(stat("connections"), 0);
	close(fd);
	close(lfd);
}

#define HELD_TOTAL (4 * 1024 * 1024)

struct reader {
	int fd;
	uint8_t *buf;
};

static void *read_all(void *arg)
{
	struct reader *r = arg;
	size_t got = 0;

	while (got < HELD_TOTAL) {
		ssize_t n = recv(r->fd, r->buf + got, HELD_TOTAL - got, 0);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return (void *)got;
}

Test(vsock, held_bytes_reach_the_host_and_credit_returns)
{
	static uint8_t data[HELD_TOTAL], got[HELD_TOTAL];
	struct gsend g = { .gport = 6001, .hport = 701, .buf_alloc = 1024 * 1024 };
	struct reader r = { .buf = got };
	uint64_t rng = 7;
	pthread_t t;
	void *n;
	int lfd;

	start();
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)xorshift64(&rng);
	rx_give(64, 256);
	lfd = host_listen(701);
	r.fd = guest_connect(lfd, 6001, 701, 65536);
	/* The host does not read: the socket fills, then our buffer, then the credit ends. */
	while (g.sent < HELD_TOTAL && send_within_credit(&g, data + g.sent, 8192))
		;
	cr_assert_lt(g.sent, HELD_TOTAL, "4 MiB went without the host reading");
	cr_assert_leq(g.sent - g.fwd, 1024 * 1024);
	/* The host reads: what waited arrives, credit returns, the rest follows. */
	cr_assert_eq(pthread_create(&t, NULL, read_all, &r), 0);
	while (g.sent < HELD_TOTAL)
		cr_assert(send_within_credit(&g, data + g.sent, 8192), "stuck at %u", g.sent);
	pthread_join(t, &n);
	cr_assert_eq((size_t)n, HELD_TOTAL);
	cr_assert(memcmp(got, data, sizeof(data)) == 0, "the bytes differ");
	cr_assert_eq(stat("credit_violations"), 0);
	cr_assert_eq(stat("from_guest_bytes"), HELD_TOTAL);
	close(r.fd);
	close(lfd);
}

/* ---- transmit keeps going while receive is full ------------------------- */

Test(vsock, transmit_is_drained_while_the_guest_gives_no_receive_buffers)
{
	int lfd, fd = -1;
	char buf[64 * 80];
	struct pkt p;
	unsigned int rsts = 0;

	start();
	lfd = host_listen(702);
	/* A connection, then no receive buffers at all. */
	rx_give(1, 4096);
	fd = guest_connect(lfd, 6002, 702, 65536);
	/* Requests nobody answers, data, credit requests: all taken at once. */
	for (int i = 0; i < 80; i++) {
		struct virtio_vsock_hdr h = ghdr(6002, 702, VIRTIO_VSOCK_OP_RW, 65536, 0);

		tx_op(7000 + (uint32_t)i, 9999, VIRTIO_VSOCK_OP_REQUEST, 65536, 0);
		tx(&h, "0123456789012345678901234567890123456789012345678901234567890123", 64);
		tx_op(6002, 702, VIRTIO_VSOCK_OP_CREDIT_REQUEST, 65536, 0);
	}
	cr_assert(wait_used(TXQ, q[TXQ].avail_idx, 3000),
		  "the device stopped taking transmits: %u of %u",
		  used_idx(TXQ), q[TXQ].avail_idx);
	recv_all(fd, buf, sizeof(buf));
	/* Now buffers: the resets it owes, and one credit update. */
	rx_give(200, 256);
	while (rx_next(&p, 300))
		if (le16toh(p.h.op) == VIRTIO_VSOCK_OP_RST)
			rsts++;
	cr_assert_eq(rsts, 80);
	cr_assert_eq(stat("connections"), 1);
	close(fd);
	close(lfd);
}

/* ---- hostile packets --------------------------------------------------------- */

Test(vsock, malformed_packets_are_refused_and_counted)
{
	int lfd, fd;
	struct pkt p;
	struct virtio_vsock_hdr h;
	long long before;

	start();
	rx_give(64, 4096);
	lfd = host_listen(703);
	fd = guest_connect(lfd, 6003, 703, 65536);

	/* A length past the buffer: the connection is reset. */
	h = ghdr(6003, 703, VIRTIO_VSOCK_OP_RW, 65536, 0);
	h.len = htole32(1000);
	offer(TXQ, tx_chain(&h, "abc", 3, 3, false), true);
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_RST);
	expect_eof(fd);
	close(fd);
	cr_assert_eq(stat("malformed"), 1);
	cr_assert_eq(stat("connections"), 0);

	/* Over 64 KiB in one packet. */
	h = ghdr(6004, 703, VIRTIO_VSOCK_OP_RW, 65536, 0);
	h.len = htole32(70000);
	offer(TXQ, tx_chain(&h, NULL, 0, 70000, true), true);
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_RST);
	/* An unknown op, and INVALID. */
	tx_op(6005, 703, 99, 0, 0);
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_RST);
	tx_op(6005, 703, VIRTIO_VSOCK_OP_INVALID, 0, 0);
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_RST);
	/* Seqpacket (not offered) and a destination that is not the host. */
	h = ghdr(6006, 703, VIRTIO_VSOCK_OP_REQUEST, 65536, 0);
	h.type = htole16(VIRTIO_VSOCK_TYPE_SEQPACKET);
	tx(&h, NULL, 0);
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_RST);
	h = ghdr(6007, 703, VIRTIO_VSOCK_OP_REQUEST, 65536, 0);
	h.dst_cid = htole64(9);
	tx(&h, NULL, 0);
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_RST);
	/* Payload on a control packet. */
	h = ghdr(6008, 703, VIRTIO_VSOCK_OP_REQUEST, 65536, 0);
	tx(&h, "x", 1);
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_RST);
	before = stat("malformed");
	/* Another source CID, and a chain shorter than a header: dropped unanswered. */
	h = ghdr(6009, 703, VIRTIO_VSOCK_OP_REQUEST, 65536, 0);
	h.src_cid = htole64(CID + 1);
	tx(&h, NULL, 0);
	offer(TXQ, add_desc(TXQ, alloc_buf(20), 20, 0), true);
	expect_none(200);
	cr_assert_eq(stat("malformed"), before + 2);
	cr_assert_eq(stat("connections"), 0);
	/* Every chain came back, and the device still works. */
	cr_assert(wait_used(TXQ, q[TXQ].avail_idx, 2000));
	cr_assert(!(dev->status & VIRTIO_CONFIG_S_NEEDS_RESET));
	fd = guest_connect(lfd, 6010, 703, 65536);
	close(fd);
	close(lfd);
}

Test(vsock, a_flood_of_requests_is_bounded)
{
	int lfd;
	struct pkt p;
	unsigned int got = 0;

	start();
	lfd = host_listen(704);
	/* 1500 requests to a listener that never accepts, and no buffers. */
	for (int i = 0; i < 1500; i++) {
		tx_op(10000 + (uint32_t)i, i % 2 ? 704 : 705, VIRTIO_VSOCK_OP_REQUEST, 65536, 0);
		if (i % 200 == 199)
			cr_assert(wait_used(TXQ, q[TXQ].avail_idx, 3000), "stuck at %d", i);
	}
	cr_assert(wait_used(TXQ, q[TXQ].avail_idx, 3000));
	/* Connections up to the table's size; resets up to their ring's. */
	cr_assert_leq(stat("connections"), 256);
	cr_assert_gt(stat("rst_dropped"), 0);
	rx_give(QSIZE, 128);
	while (rx_next(&p, 300))
		got++;
	cr_assert_gt(got, 0);
	cr_assert(!(dev->status & VIRTIO_CONFIG_S_NEEDS_RESET));
	close(lfd);
}

Test(vsock, a_malformed_ring_asks_for_a_reset)
{
	start();
	/* A receive chain too small for a header. */
	offer(RXQ, add_desc(RXQ, alloc_buf(16), 16, VRING_DESC_F_WRITE), true);
	tx_op(5001, 4321, VIRTIO_VSOCK_OP_REQUEST, 65536, 0);
	for (int i = 0; i < 200 && !(dev->status & VIRTIO_CONFIG_S_NEEDS_RESET); i++)
		usleep(5000);
	cr_assert(dev->status & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_geq(atomic_load(&irqs[3]), 1, "no configuration interrupt");
}

/* ---- closing ---------------------------------------------------------------- */

Test(vsock, the_host_closes_then_the_guest_resets)
{
	int lfd, fd;
	struct pkt p;

	start();
	rx_give(16, 4096);
	lfd = host_listen(705);
	fd = guest_connect(lfd, 6011, 705, 65536);
	send_all(fd, "last", 4);
	close(fd);
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_RW);
	expect_shutdown_both(6011);
	cr_assert_eq(stat("connections"), 1);
	tx_op(6011, 705, VIRTIO_VSOCK_OP_RST, 0, 0);
	cr_assert(stat_is("connections", 0), "%lld connections", stat("connections"));
	expect_none(100);
	close(lfd);
}

Test(vsock, a_guest_that_never_resets_is_reset_after_a_while)
{
	int lfd, fd;
	struct pkt p;

	start();
	rx_give(16, 4096);
	lfd = host_listen(706);
	fd = guest_connect(lfd, 6012, 706, 65536);
	close(fd);
	expect_shutdown_both(6012);
	cr_assert(rx_next(&p, 7000), "no reset after the close timeout");
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_RST);
	cr_assert_eq(stat("connections"), 0);
	cr_assert_eq(stat("timeouts"), 1);
	close(lfd);
}

Test(vsock, half_closes_both_ways)
{
	int lfd, fd;
	struct pkt p;
	char buf[8];

	start();
	rx_give(16, 4096);
	lfd = host_listen(707);
	fd = guest_connect(lfd, 6013, 707, 65536);
	/* The host sends no more, and still reads. */
	shutdown(fd, SHUT_WR);
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_SHUTDOWN);
	cr_assert_eq(le32toh(p.h.flags), VIRTIO_VSOCK_SHUTDOWN_SEND);
	{
		struct virtio_vsock_hdr h = ghdr(6013, 707, VIRTIO_VSOCK_OP_RW, 65536, 0);

		tx(&h, "after", 5);
	}
	recv_all(fd, buf, 5);
	cr_assert(memcmp(buf, "after", 5) == 0);
	/* The guest sends no more: the host reads an end of file. */
	{
		struct virtio_vsock_hdr h = ghdr(6013, 707, VIRTIO_VSOCK_OP_SHUTDOWN, 65536, 0);

		h.flags = htole32(VIRTIO_VSOCK_SHUTDOWN_SEND);
		tx(&h, NULL, 0);
	}
	expect_eof(fd);
	/* Both directions are shut now: the guest is told, so it can close. */
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_SHUTDOWN);
	cr_assert_eq(le32toh(p.h.flags), VIRTIO_VSOCK_SHUTDOWN_SEND | VIRTIO_VSOCK_SHUTDOWN_RCV);
	/* It closes: a reset, and the connection is gone. */
	{
		struct virtio_vsock_hdr h = ghdr(6013, 707, VIRTIO_VSOCK_OP_SHUTDOWN, 65536, 0);

		h.flags = htole32(VIRTIO_VSOCK_SHUTDOWN_SEND | VIRTIO_VSOCK_SHUTDOWN_RCV);
		tx(&h, NULL, 0);
	}
	cr_assert(rx_next(&p, 2000));
	cr_assert_eq(le16toh(p.h.op), VIRTIO_VSOCK_OP_RST);
	cr_assert(stat_is("connections", 0), "%lld connections", stat("connections"));
	close(fd);
	close(lfd);
}

Test(vsock, a_driver_reset_closes_every_connection)
{
	int lfd, fd;

	start();
	rx_give(16, 4096);
	lfd = host_listen(708);
	fd = guest_connect(lfd, 6014, 708, 65536);
	virtio_set_status(dev, 0);
	expect_eof(fd);
	cr_assert_eq(stat("connections"), 0);
	close(fd);
	close(lfd);
}

/* ---- restore ------------------------------------------------------------------ */

static void ev_give(void)
{
	offer(EVQ, add_desc(EVQ, alloc_buf(4), 4, VRING_DESC_F_WRITE), true);
}

static uint32_t ev_id(uint16_t n)
{
	struct vring_used_elem u = used_elem(EVQ, n);

	cr_assert_eq(u.len, 4);
	return le32toh(*(uint32_t *)gpa(q[EVQ].buf_of[u.id]));
}

Test(vsock, transport_reset_resets_connections_and_keeps_listeners)
{
	int lfd, gfd, hfd;
	uint32_t hport;

	start();
	rx_give(32, 4096);
	ev_give();
	lfd = host_listen(709);
	gfd = guest_connect(lfd, 6015, 709, 65536);
	hfd = host_connect(23, 65536, &hport);
	cr_assert_eq(stat("connections"), 2);
	vsock_transport_reset(vs);
	/* Both host ends see the connection go, the guest hears of it once. */
	expect_eof(gfd);
	expect_eof(hfd);
	close(gfd);
	close(hfd);
	cr_assert(wait_used(EVQ, 1, 2000), "no event");
	cr_assert_eq(ev_id(0), VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
	cr_assert_geq(atomic_load(&irqs[EVQ]), 1);
	cr_assert_eq(stat("connections"), 0);
	cr_assert_eq(stat("transport_resets"), 1);
	expect_none(100);
	/* The "vsock" listener and the host's listeners work as before. */
	hfd = host_connect(23, 65536, &hport);
	gfd = guest_connect(lfd, 6016, 709, 65536);
	close(gfd);
	close(hfd);
	close(lfd);
}

Test(vsock, a_transport_reset_waits_for_an_event_buffer)
{
	start();
	vsock_transport_reset(vs);
	usleep(50000);
	cr_assert_eq(used_idx(EVQ), 0);
	ev_give();
	cr_assert(wait_used(EVQ, 1, 2000), "the owed event did not come");
	cr_assert_eq(ev_id(0), VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
	/* Owed once, delivered once. */
	ev_give();
	usleep(50000);
	cr_assert_eq(used_idx(EVQ), 1);
}

Test(vsock, saved_state)
{
	json_t *st = NULL, *bad;
	char err[256];

	start();
	ev_give();
	vsock_transport_reset(vs);
	cr_assert(wait_used(EVQ, 1, 2000));
	cr_assert_eq(vsock_state_save(vs, &st), 0);
	cr_assert_eq(json_integer_value(json_object_get(st, "version")), 1);
	cr_assert_eq(json_integer_value(json_object_get(st, "guest_cid")), CID);
	cr_assert(json_is_false(json_object_get(st, "event_pending")));
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(st, "event_queue"),
							"used_idx")), 1);
	cr_assert_eq(vsock_state_restore(vs, st, err, sizeof(err)), 0, "%s", err);
	bad = json_deep_copy(st);
	json_object_set_new(bad, "guest_cid", json_integer(CID + 1));
	cr_assert_eq(vsock_state_restore(vs, bad, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "CID"), "%s", err);
	json_object_set_new(bad, "guest_cid", json_integer(CID));
	json_object_set_new(bad, "version", json_integer(2));
	cr_assert_eq(vsock_state_restore(vs, bad, err, sizeof(err)), -EINVAL);
	json_object_set_new(bad, "version", json_integer(1));
	json_object_set_new(bad, "next_host_port", json_integer(5));
	cr_assert_eq(vsock_state_restore(vs, bad, err, sizeof(err)), -EINVAL);
	json_decref(bad);
	json_decref(st);
}

Test(vsock, reserved_cids_are_refused)
{
	struct vm_vsock_config cfg = { .cid = 2 };
	char err[256];

	cr_assert(mkdtemp(dir));
	dir_made = true;
	cr_assert_eq(mem_create(&mem, RAM, err, sizeof(err)), 0);
	cr_assert_eq(virtio_vsock_create(&cfg, dir, &mem, &vs, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "reserved"), "%s", err);
	vs = NULL;
}
