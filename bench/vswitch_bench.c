// SPDX-License-Identifier: MIT
/*
 * vswitch_bench: one sender and one receiver, for our switch and for a
 * Linux bridge alike, so both are measured by the same code.
 *
 *   vswitch_bench switch --control SOCKET [--count N] [--size BYTES]
 *       two socketpairs handed to a running `fsvisor switch run` as ports
 *   vswitch_bench packet --tx IF --rx IF [--count N] [--size BYTES]
 *       AF_PACKET sockets on two interfaces (the outer ends of veth pairs
 *       whose inner ends are in a bridge)
 *
 * The receiver first sends one frame from its own MAC so the switch (or
 * bridge) learns where it is; then a thread sends N frames of BYTES to it
 * as fast as the socket takes them (sendmmsg, 64 at a time) while the
 * main thread counts what arrives (recvmmsg).  Printed on one line:
 *   sent=N delivered=M send_fps=... delivered_fps=... seconds=...
 * delivered_fps is frames received over the time from the first send to
 * the last frame received.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

#define BATCH 64
#define ETHERTYPE_BENCH 0x88b6
#define IDLE_MS 300		/* the receiver stops after this long without frames */

static const uint8_t mac_a[6] = { 0x02, 0xbe, 0x4c, 0, 0, 0x0a };
static const uint8_t mac_b[6] = { 0x02, 0xbe, 0x4c, 0, 0, 0x0b };

struct run {
	int tx, rx;
	uint8_t dst[6], src[6];
	long count;
	size_t size;
	double t0, t_sent;
	long sent;
	int send_err;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "vswitch_bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void frame_fill(uint8_t *f, size_t size, const uint8_t *dst,
		       const uint8_t *src)
{
	memset(f, 0x5a, size);
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = ETHERTYPE_BENCH >> 8;
	f[13] = ETHERTYPE_BENCH & 0xff;
}

static void *sender(void *arg)
{
	struct run *r = arg;
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	uint8_t *frames = malloc(BATCH * r->size);
	long left = r->count;

	if (!frames)
		die("malloc");
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH; i++) {
		frame_fill(frames + (size_t)i * r->size, r->size, r->dst, r->src);
		iov[i].iov_base = frames + (size_t)i * r->size;
		iov[i].iov_len = r->size;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	while (left > 0) {
		int n = left < BATCH ? (int)left : BATCH;
		int k = sendmmsg(r->tx, msgs, (unsigned int)n, 0);

		if (k < 0 && (errno == EINTR || errno == ENOBUFS || errno == EAGAIN))
			continue;
		if (k < 0) {
			r->send_err = errno;
			break;
		}
		left -= k;
	}
	r->sent = r->count - left;
	r->t_sent = now_s();
	free(frames);
	return NULL;
}

static bool is_bench(const uint8_t *f, size_t len, const uint8_t *dst)
{
	return len >= 14 && memcmp(f, dst, 6) == 0 && f[12] == ETHERTYPE_BENCH >> 8 &&
	       f[13] == (ETHERTYPE_BENCH & 0xff);
}

static volatile bool done_flag;

static void *sender_thread(void *arg)
{
	sender(arg);
	__atomic_store_n(&done_flag, true, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * Count bench frames until @want, or until none came for IDLE_MS (once
 * the sender is done, if @wait_sender); *t_last: when the last came.
 */
static long receive(struct run *r, long want, double *t_last, bool wait_sender)
{
	static uint8_t bufs[BATCH][2048];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	long got = 0;

	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = sizeof(bufs[i]);
	}
	while (got < want) {
		struct pollfd pfd = { .fd = r->rx, .events = POLLIN };
		int n;

		if (poll(&pfd, 1, IDLE_MS) == 0) {
			if (!wait_sender || __atomic_load_n(&done_flag, __ATOMIC_ACQUIRE))
				break;
			continue;
		}
		memset(msgs, 0, sizeof(msgs));
		for (int i = 0; i < BATCH; i++) {
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
		}
		n = recvmmsg(r->rx, msgs, BATCH, MSG_DONTWAIT, NULL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			break;
		for (int i = 0; i < n; i++)
			if (is_bench(bufs[i], msgs[i].msg_len, r->dst))
				got++;
		*t_last = now_s();
	}
	return got;
}

static void measure(struct run *r)
{
	pthread_t th;
	double t_last;
	long got;

	/* The receiver announces itself: a frame from its MAC to the sender's. */
	{
		uint8_t f[64];
		double t_l;

		frame_fill(f, sizeof(f), r->src, r->dst);
		if (send(r->rx, f, sizeof(f), 0) < 0)
			die("learning frame");
		/* On the sender's side it is noise; drain it. */
		struct run back = *r;

		back.rx = r->tx;
		memcpy(back.dst, r->src, 6);
		receive(&back, 1, &t_l, false);
	}
	r->t0 = now_s();
	t_last = r->t0;
	done_flag = false;
	if (pthread_create(&th, NULL, sender_thread, r))
		die("pthread_create");
	got = receive(r, r->count, &t_last, true);
	pthread_join(th, NULL);
	if (r->send_err)
		fprintf(stderr, "vswitch_bench: send: %s\n", strerror(r->send_err));
	printf("sent=%ld delivered=%ld send_fps=%.0f delivered_fps=%.0f seconds=%.3f\n",
	       r->sent, got, r->sent / (r->t_sent - r->t0),
	       got / (t_last - r->t0), t_last - r->t0);
}

/* ---- our switch ------------------------------------------------------------ */

static int ctl_call(int ctl, const char *json, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { (void *)json, strlen(json) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	char reply[65536];
	ssize_t n;

	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(&cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = sizeof(cbuf.buf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	if (sendmsg(ctl, &mh, 0) < 0)
		die("control");
	n = recv(ctl, reply, sizeof(reply) - 1, 0);
	if (n <= 0)
		die("control reply");
	reply[n] = 0;
	if (!strstr(reply, "\"ok\":true")) {
		fprintf(stderr, "vswitch_bench: %s -> %s\n", json, reply);
		exit(1);
	}
	return 0;
}

static int add_port(int ctl, const char *name, const uint8_t *mac)
{
	char req[256];
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair");
	snprintf(req, sizeof(req),
		 "{\"cmd\":\"port-add\",\"name\":\"%s\",\"policy\":{\"mac\":\"%02x:%02x:%02x:%02x:%02x:%02x\"}}",
		 name, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
	ctl_call(ctl, req, sv[1]);
	close(sv[1]);
	return sv[0];
}

static void run_switch(const char *control, long count, size_t size)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct run r = { .count = count, .size = size };
	char name_a[64], name_b[64];
	int ctl;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", control);
	ctl = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (ctl < 0 || connect(ctl, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die(control);
	snprintf(name_a, sizeof(name_a), "bench%d/a", (int)getpid());
	snprintf(name_b, sizeof(name_b), "bench%d/b", (int)getpid());
	r.tx = add_port(ctl, name_a, mac_a);
	r.rx = add_port(ctl, name_b, mac_b);
	memcpy(r.src, mac_a, 6);
	memcpy(r.dst, mac_b, 6);
	measure(&r);
	close(r.tx);
	close(r.rx);
	close(ctl);
}

/* ---- AF_PACKET on two interfaces ---------------------------------------- */

static int packet_socket(const char *ifname, uint8_t *mac)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET };
	struct ifreq ifr = { 0 };
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	int one = 1, big = 1 << 20;

	if (fd < 0)
		die("packet socket");
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0)
		die(ifname);
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	sll.sll_protocol = htons(ETHERTYPE_BENCH);
	sll.sll_ifindex = (int)if_nametoindex(ifname);
	setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
	/* The same depth our switch gives a port's queue. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
		die("bind");
	return fd;
}

static void run_packet(const char *tx_if, const char *rx_if, long count, size_t size)
{
	struct run r = { .count = count, .size = size };

	r.tx = packet_socket(tx_if, r.src);
	r.rx = packet_socket(rx_if, r.dst);
	measure(&r);
	close(r.tx);
	close(r.rx);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "control", required_argument, NULL, 'c' },
		{ "tx", required_argument, NULL, 't' },
		{ "rx", required_argument, NULL, 'r' },
		{ "count", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 's' },
		{ 0 },
	};
	const char *control = NULL, *tx = NULL, *rx = NULL;
	long count = 1000000;
	size_t size = 64;
	int c;

	if (argc < 2) {
		fprintf(stderr, "usage: vswitch_bench switch|packet ...\n");
		return 2;
	}
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c': control = optarg; break;
		case 't': tx = optarg; break;
		case 'r': rx = optarg; break;
		case 'n': count = atol(optarg); break;
		case 's': size = (size_t)atol(optarg); break;
		default: return 2;
		}
	}
	if (size < 60 || size > 2000 || count <= 0) {
		fprintf(stderr, "vswitch_bench: --size 60..2000, --count > 0\n");
		return 2;
	}
	if (strcmp(argv[1], "switch") == 0 && control)
		run_switch(control, count, size);
	else if (strcmp(argv[1], "packet") == 0 && tx && rx)
		run_packet(tx, rx, count, size);
	else {
		fprintf(stderr, "usage: vswitch_bench switch --control SOCKET | packet --tx IF --rx IF\n");
		return 2;
	}
	return 0;
}
