// SPDX-License-Identifier: MIT
/*
 * icpeer: a hostile "agent" for the tests: it connects to a VM's agent
 * socket (the Unix socket the service listens on in the VM's directory,
 * where the vsock device would connect the guest) and misbehaves.
 *
 *   icpeer SOCKET huge       a header with a 2 GiB length: the service
 *                            must close the connection (exit 0 if it does)
 *   icpeer SOCKET unknown    hello, then a request of an unknown type and
 *                            one with a field longer than its payload:
 *                            ENOSYS, then the connection closed
 *   icpeer SOCKET nohello    a heartbeat before any hello: closed
 *   icpeer SOCKET flood N    hello, then N requests as fast as it can,
 *                            reading nothing: the service answers until
 *                            its buffer is full, then closes (exit 0)
 *   icpeer SOCKET half SECS  hello, then half a frame and SECS of silence
 *   icpeer SOCKET hello      hello, print the host's answer, wait for a
 *                            heartbeat and echo it, then close
 * Prints what happened; exit 1 when the service did not do what it must.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "guest/proto/icproto.h"

static uint8_t buf[IC_MAX_FRAME];

static void die(const char *what)
{
	fprintf(stderr, "icpeer: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int dial(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	return fd;
}

static void send_all(int fd, const void *p, size_t len)
{
	if (send(fd, p, len, MSG_NOSIGNAL) != (ssize_t)len)
		die("send");
}

static void send_writer(int fd, struct ic_writer *w)
{
	int len = ic_end(w);

	send_all(fd, w->buf, (size_t)len);
}

/* The next frame within @ms: 1, 0 the connection closed, -1 nothing came. */
static int next_frame(int fd, struct ic_msg *m, int ms)
{
	static size_t have;
	struct ic_hdr h;
	const char *why;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (ic_hdr_decode(buf, have, &h) == 1 && have >= IC_HDR_LEN + h.len) {
			ic_parse(&h, buf + IC_HDR_LEN, m, &why);
			m->h = h;
			memmove(buf, buf + IC_HDR_LEN + h.len, have - IC_HDR_LEN - h.len);
			have -= IC_HDR_LEN + h.len;
			return 1;
		}
		if (poll(&p, 1, ms) <= 0)
			return -1;
		n = recv(fd, buf + have, sizeof(buf) - have, 0);
		if (n <= 0)
			return 0;
		have += (size_t)n;
	}
}

/* Wait for the service to close the connection, reading what it sends. */
static int expect_closed(int fd, int ms)
{
	struct ic_msg m;
	int ret;

	while ((ret = next_frame(fd, &m, ms)) == 1)
		;
	if (ret == 0) {
		printf("closed by the service\n");
		return 0;
	}
	printf("still open after %d ms\n", ms);
	return 1;
}

static void hello(int fd)
{
	uint8_t f[128];
	struct ic_writer w;
	struct ic_msg m;

	ic_begin(&w, f, sizeof(f), IC_HELLO, 0, 1, 0);
	ic_put_u32(&w, IC_T_VERSION_MIN, 1);
	ic_put_u32(&w, IC_T_VERSION_MAX, 1);
	ic_put_u32(&w, IC_T_CAPS, IC_CAP_HEARTBEAT);
	ic_put_str(&w, IC_T_AGENT, "icpeer");
	send_writer(fd, &w);
	while (next_frame(fd, &m, 5000) == 1)
		if (m.h.type == IC_HELLO && (m.h.flags & IC_F_REPLY)) {
			printf("hello: version %llu, caps %#llx, status %u\n",
			       (unsigned long long)m.num[IC_T_VERSION],
			       (unsigned long long)m.num[IC_T_CAPS], m.h.status);
			return;
		}
	fprintf(stderr, "icpeer: no answer to the hello\n");
	exit(1);
}

static int unknown(int fd)
{
	uint8_t f[64];
	struct ic_writer w;
	struct ic_msg m;
	/* A field whose length runs past the payload. */
	uint8_t bad[IC_HDR_LEN + 8] = { 8, 0, 0, 0, IC_HEARTBEAT, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0,
					IC_T_SEQ, 0, 200, 0, 1, 2, 3, 4 };

	hello(fd);
	ic_begin(&w, f, sizeof(f), 99, 0, 7, 0);
	send_writer(fd, &w);
	while (next_frame(fd, &m, 5000) == 1) {
		if ((m.h.flags & IC_F_REPLY) && m.h.id == 7) {
			printf("unknown type: status %u (%s)\n", m.h.status, strerror((int)m.h.status));
			if (m.h.status != ENOSYS)
				return 1;
			send_all(fd, bad, sizeof(bad));
			return expect_closed(fd, 5000);
		}
	}
	printf("no answer to a request of an unknown type\n");
	return 1;
}

static int flood(int fd, long n)
{
	uint8_t f[128];
	struct ic_writer w;
	long sent = 0;

	hello(fd);
	/* Requests the service answers (a refusal: the host pool is not ours). */
	for (; sent < n; sent++) {
		int len;

		ic_begin(&w, f, sizeof(f), IC_KVP_SET, 0, (uint32_t)sent + 2, 0);
		ic_put_u32(&w, IC_T_POOL, IC_POOL_HOST);
		ic_put_str(&w, IC_T_KEY, "k");
		ic_put_str(&w, IC_T_VALUE, "v");
		len = ic_end(&w);
		if (send(fd, f, (size_t)len, MSG_NOSIGNAL) != len)
			break;		/* closed by the service */
	}
	printf("flood: %ld requests sent\n", sent);
	return expect_closed(fd, 20000);
}

static int half(int fd, int secs)
{
	uint8_t f[IC_HDR_LEN] = { 40, 0, 0, 0, IC_KVP_SET, 0, 0, 0 };

	hello(fd);
	send_all(fd, f, 10);
	sleep((unsigned int)secs);
	printf("half: %d s of silence\n", secs);
	return 0;
}

static int echo(int fd)
{
	struct ic_msg m;

	hello(fd);
	while (next_frame(fd, &m, 10000) == 1) {
		uint8_t f[64];
		struct ic_writer w;

		if (m.h.type != IC_HEARTBEAT || (m.h.flags & IC_F_REPLY))
			continue;
		ic_begin_reply(&w, f, sizeof(f), &m.h, 0);
		ic_put_u64(&w, IC_T_SEQ, m.num[IC_T_SEQ]);
		send_writer(fd, &w);
		printf("heartbeat %llu echoed\n", (unsigned long long)m.num[IC_T_SEQ]);
		return 0;
	}
	printf("no heartbeat came\n");
	return 1;
}

int main(int argc, char **argv)
{
	int fd;

	if (argc < 3) {
		fprintf(stderr, "usage: icpeer SOCKET huge|unknown|nohello|flood N|half SECS|hello\n");
		return 2;
	}
	fd = dial(argv[1]);
	if (strcmp(argv[2], "huge") == 0) {
		uint8_t h[IC_HDR_LEN] = { 0xFF, 0xFF, 0xFF, 0x7F, IC_HELLO };

		send_all(fd, h, sizeof(h));
		return expect_closed(fd, 5000);
	}
	if (strcmp(argv[2], "nohello") == 0) {
		uint8_t f[64];
		struct ic_writer w;

		ic_begin(&w, f, sizeof(f), IC_HEARTBEAT, 0, 3, 0);
		ic_put_u64(&w, IC_T_SEQ, 1);
		send_writer(fd, &w);
		return expect_closed(fd, 5000);
	}
	if (strcmp(argv[2], "unknown") == 0)
		return unknown(fd);
	if (strcmp(argv[2], "flood") == 0 && argc == 4)
		return flood(fd, atol(argv[3]));
	if (strcmp(argv[2], "half") == 0 && argc == 4)
		return half(fd, atoi(argv[3]));
	if (strcmp(argv[2], "hello") == 0)
		return echo(fd);
	fprintf(stderr, "icpeer: unknown test '%s'\n", argv[2]);
	return 2;
}
