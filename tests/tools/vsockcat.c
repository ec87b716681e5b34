// SPDX-License-Identifier: MIT
/*
 * vsockcat: a host program for a VM's vsock (the Unix sockets in its run
 * directory), for the tests.
 *
 *   vsockcat load DIR PORT CONNS BYTES   CONNS connections to guest port
 *            PORT at once (an echo server), each sending BYTES random
 *            bytes while it reads them back; the FNV-1a hashes of what
 *            went and what came back are compared.  Prints
 *            "load: CONNS x BYTES ok, R MiB/s each way, S s" or fails.
 *   vsockcat connect DIR PORT            one connection: "OK <port>" on
 *            stderr, then stdin to the guest and the guest to stdout
 *            until both ends are done (exit 1: refused).
 *   vsockcat abort DIR TEXT              write TEXT (part of a CONNECT
 *            line) and close
 *   vsockcat listen DIR PORT FILE        accept one guest connection on
 *            DIR/vsock_PORT and write what it sends to FILE
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 256
#define CHUNK (64 * 1024)

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "vsockcat: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	exit(1);
}

static int dial(const char *dir, const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir, name) >=
	    sizeof(sa.sun_path))
		die("%s: path too long", dir);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect: %s", strerror(errno));
	return fd;
}

/* Connect to guest port @port; the descriptor, or -1 when refused. */
static int vsock_open(const char *dir, const char *port)
{
	char line[64];
	size_t got = 0;
	int fd = dial(dir, "vsock"), n;

	n = snprintf(line, sizeof(line), "CONNECT %s\n", port);
	if (write(fd, line, (size_t)n) != n)
		die("write: %s", strerror(errno));
	/* Byte by byte: what follows the line is the guest's. */
	while (got < sizeof(line) - 1) {
		ssize_t r = read(fd, line + got, 1);

		if (r <= 0) {
			close(fd);
			return -1;
		}
		if (line[got++] == '\n')
			break;
	}
	line[got] = '\0';
	if (strncmp(line, "OK ", 3) != 0)
		die("unexpected answer '%s'", line);
	return fd;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

struct stream {
	int fd;
	uint64_t rng;			/* what we send */
	uint64_t sent, got, total;
	uint64_t hash_out, hash_in;
	uint8_t out[CHUNK];
	size_t out_off, out_len;
	bool wr_done;
};

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

static void refill(struct stream *s)
{
	size_t n = s->total - s->sent < CHUNK ? (size_t)(s->total - s->sent) : CHUNK;

	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = xorshift(&s->rng);

		memcpy(s->out + i, &v, n - i < 8 ? n - i : 8);
	}
	s->hash_out = fnv(s->hash_out, s->out, n);
	s->out_off = 0;
	s->out_len = n;
}

static void stream_write(struct stream *s)
{
	while (!s->wr_done) {
		ssize_t n;

		if (s->out_off == s->out_len) {
			if (s->sent == s->total) {
				shutdown(s->fd, SHUT_WR);
				s->wr_done = true;
				return;
			}
			refill(s);
		}
		n = send(s->fd, s->out + s->out_off, s->out_len - s->out_off,
			 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n < 0)
			die("send: %s", strerror(errno));
		s->out_off += (size_t)n;
		s->sent += (uint64_t)n;
	}
}

static bool stream_read(struct stream *s, uint8_t *buf)
{
	ssize_t n = recv(s->fd, buf, CHUNK, MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	if (n < 0)
		die("recv: %s", strerror(errno));
	if (n == 0)
		return false;
	s->hash_in = fnv(s->hash_in, buf, (size_t)n);
	s->got += (uint64_t)n;
	if (s->got > s->total)
		die("more came back than went%s", "");
	return true;
}

static int load(const char *dir, const char *port, int nconns, uint64_t bytes)
{
	static struct stream st[MAX_CONNS];
	static uint8_t buf[CHUNK];
	struct pollfd pfd[MAX_CONNS];
	int open = nconns;
	double t0;

	if (nconns < 1 || nconns > MAX_CONNS)
		die("CONNS must be 1 to 256%s", "");
	for (int i = 0; i < nconns; i++) {
		st[i] = (struct stream){ .rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1),
					 .total = bytes, .hash_out = 0xcbf29ce484222325ULL,
					 .hash_in = 0xcbf29ce484222325ULL };
		st[i].fd = vsock_open(dir, port);
		if (st[i].fd < 0)
			die("connection refused by guest port %s", port);
		fcntl(st[i].fd, F_SETFL, O_NONBLOCK);
	}
	t0 = now();
	while (open) {
		for (int i = 0; i < nconns; i++) {
			pfd[i].fd = st[i].fd;
			pfd[i].events = (short)(st[i].fd >= 0 ? POLLIN | (st[i].wr_done ? 0 : POLLOUT) : 0);
		}
		if (poll(pfd, (nfds_t)nconns, 60000) <= 0)
			die("no progress in 60 s%s", "");
		for (int i = 0; i < nconns; i++) {
			if (st[i].fd < 0)
				continue;
			if (pfd[i].revents & POLLOUT)
				stream_write(&st[i]);
			if ((pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) && !stream_read(&st[i], buf)) {
				close(st[i].fd);
				st[i].fd = -1;
				open--;
			}
		}
	}
	for (int i = 0; i < nconns; i++) {
		if (st[i].got != bytes) {
			fprintf(stderr, "vsockcat: connection %d: %llu of %llu bytes came back\n", i,
				(unsigned long long)st[i].got, (unsigned long long)bytes);
			return 1;
		}
		if (st[i].hash_in != st[i].hash_out) {
			fprintf(stderr, "vsockcat: connection %d: hash %016llx back, %016llx sent\n", i,
				(unsigned long long)st[i].hash_in, (unsigned long long)st[i].hash_out);
			return 1;
		}
	}
	{
		double t = now() - t0;

		printf("load: %d x %llu ok, %.2f MiB/s each way, %.1f s\n", nconns,
		       (unsigned long long)bytes, (double)nconns * (double)bytes / 1048576.0 / t, t);
	}
	return 0;
}

static int cat(const char *dir, const char *port)
{
	int fd = vsock_open(dir, port);
	bool in_open = true, out_open = true;
	char buf[65536];

	if (fd < 0) {
		fprintf(stderr, "vsockcat: refused\n");
		return 1;
	}
	fprintf(stderr, "OK\n");
	while (out_open) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
				       { .fd = 0, .events = in_open ? POLLIN : 0 } };
		ssize_t n;

		if (poll(p, 2, -1) < 0)
			return 1;
		if (p[0].revents) {
			n = read(fd, buf, sizeof(buf));
			if (n <= 0)
				out_open = false;
			else if (write(1, buf, (size_t)n) != n)
				return 1;
		}
		if (in_open && p[1].revents) {
			n = read(0, buf, sizeof(buf));
			if (n <= 0) {
				shutdown(fd, SHUT_WR);
				in_open = false;
			} else if (write(fd, buf, (size_t)n) != n) {
				return 1;
			}
		}
	}
	return 0;
}

static int listen_one(const char *dir, const char *port, const char *file)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), fd, out;
	char buf[65536];
	ssize_t n;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/vsock_%s", dir, port);
	unlink(sa.sun_path);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4) < 0)
		die("listen: %s", strerror(errno));
	fd = accept(lfd, NULL, NULL);
	out = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || out < 0)
		die("accept: %s", strerror(errno));
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			return 1;
	close(out);
	unlink(sa.sun_path);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 6 && strcmp(argv[1], "load") == 0)
		return load(argv[2], argv[3], atoi(argv[4]), strtoull(argv[5], NULL, 0));
	if (argc == 4 && strcmp(argv[1], "connect") == 0)
		return cat(argv[2], argv[3]);
	if (argc == 4 && strcmp(argv[1], "abort") == 0) {
		int fd = dial(argv[2], "vsock");

		if (write(fd, argv[3], strlen(argv[3])) < 0)
			return 1;
		close(fd);
		return 0;
	}
	if (argc == 5 && strcmp(argv[1], "listen") == 0)
		return listen_one(argv[2], argv[3], argv[4]);
	fprintf(stderr, "usage: vsockcat load DIR PORT CONNS BYTES | connect DIR PORT |\n"
			"       abort DIR TEXT | listen DIR PORT FILE\n");
	return 2;
}
