// SPDX-License-Identifier: MIT
/*
 * netpair: socket pairs and frames for the virtio-net tests.
 *
 *   netpair run [-t seqpacket|stream|dgram] CMD [ARG...]
 *	make an AF_UNIX socket pair (SOCK_SEQPACKET unless -t says
 *	otherwise) and exec CMD with its ends as descriptors 3 and 4.
 *   netpair send FD LEN COUNT
 *	send COUNT broadcast frames of LEN bytes (ethertype 0x88B6) on the
 *	inherited socket FD.
 *   netpair drain FD COUNT SECONDS [SRC-MAC]
 *	read the test guest's "netflood" frames from FD until COUNT have
 *	come, checking that they arrive in order with nothing missing (and
 *	come from SRC-MAC, aa:bb:cc:dd:ee:ff); print "drained COUNT frames
 *	in order" (exit 0) or what went wrong (exit 1).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int usage(void)
{
	fprintf(stderr, "usage: netpair run [-t seqpacket|stream|dgram] CMD [ARG...]\n"
			"       netpair send FD LEN COUNT\n"
			"       netpair drain FD COUNT SECONDS [SRC-MAC]\n");
	return 2;
}

static long number(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	return *s && !*end && v >= 0 ? v : -1;
}

static int run(int argc, char **argv)
{
	int type = SOCK_SEQPACKET, sv[2];

	if (argc >= 2 && strcmp(argv[0], "-t") == 0) {
		if (strcmp(argv[1], "stream") == 0)
			type = SOCK_STREAM;
		else if (strcmp(argv[1], "dgram") == 0)
			type = SOCK_DGRAM;
		else if (strcmp(argv[1], "seqpacket") != 0)
			return usage();
		argc -= 2;
		argv += 2;
	}
	if (argc < 1)
		return usage();
	if (socketpair(AF_UNIX, type, 0, sv) < 0) {
		perror("netpair: socketpair");
		return 1;
	}
	/* Put the ends at 3 and 4 whatever numbers they got. */
	{
		int a = fcntl(sv[0], F_DUPFD, 10), b = fcntl(sv[1], F_DUPFD, 10);

		close(sv[0]);
		close(sv[1]);
		if (a < 0 || b < 0 || dup2(a, 3) < 0 || dup2(b, 4) < 0) {
			perror("netpair: dup");
			return 1;
		}
		close(a);
		close(b);
	}
	execvp(argv[0], argv);
	perror("netpair: exec");
	return 127;
}

static int send_frames(int argc, char **argv)
{
	long fd, len, count;
	unsigned char *f;

	if (argc != 3 || (fd = number(argv[0])) < 0 || (len = number(argv[1])) < 14 ||
	    len > 65535 || (count = number(argv[2])) < 0)
		return usage();
	f = calloc(1, (size_t)len);
	if (!f)
		return 1;
	memset(f, 0xFF, 6);
	memcpy(f + 6, "\x02\x00\x00\x00\x00\x01", 6);
	f[12] = 0x88;
	f[13] = 0xB6;
	for (long i = 0; i < count; i++) {
		f[14] = (unsigned char)i;
		if (send((int)fd, f, (size_t)len, 0) != len) {
			perror("netpair: send");
			free(f);
			return 1;
		}
	}
	free(f);
	return 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int drain(int argc, char **argv)
{
	long fd, count, seconds, got = 0;
	unsigned char f[65536], src[6];
	double t0 = now(), end;

	if ((argc != 3 && argc != 4) || (fd = number(argv[0])) < 0 ||
	    (count = number(argv[1])) < 0 || (seconds = number(argv[2])) < 0)
		return usage();
	if (argc == 4 && sscanf(argv[3], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &src[0], &src[1],
				&src[2], &src[3], &src[4], &src[5]) != 6)
		return usage();
	end = t0 + (double)seconds;
	while (got < count) {
		struct pollfd p = { .fd = (int)fd, .events = POLLIN };
		int left = (int)((end - now()) * 1000);
		ssize_t n;
		unsigned long seq;

		if (left <= 0 || poll(&p, 1, left) <= 0) {
			printf("timed out after %ld of %ld frames\n", got, count);
			return 1;
		}
		n = recv((int)fd, f, sizeof(f), MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n <= 0) {
			printf("the connection ended after %ld of %ld frames\n", got, count);
			return 1;
		}
		/* Anything else the guest says (ARP) is not ours to count. */
		if (n != 60 || f[12] != 0x88 || f[13] != 0xB5 || memcmp(f + 14, "FSVFLOOD", 8))
			continue;
		seq = (unsigned long)f[22] << 24 | (unsigned long)f[23] << 16 |
		      (unsigned long)f[24] << 8 | f[25];
		if (argc == 4 && memcmp(f + 6, src, 6) != 0) {
			printf("frame %lu came from %02x:%02x:%02x:%02x:%02x:%02x, not %s\n", seq,
			       f[6], f[7], f[8], f[9], f[10], f[11], argv[3]);
			return 1;
		}
		if (seq != (unsigned long)got) {
			printf("frame %lu came where %ld was due: lost or reordered\n", seq, got);
			return 1;
		}
		got++;
	}
	printf("drained %ld frames in order in %.3f s (%.0f frames/s)\n", got,
	       now() - t0, (double)got / (now() - t0));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	if (strcmp(argv[1], "run") == 0)
		return run(argc - 2, argv + 2);
	if (strcmp(argv[1], "send") == 0)
		return send_frames(argc - 2, argv + 2);
	if (strcmp(argv[1], "drain") == 0)
		return drain(argc - 2, argv + 2);
	return usage();
}
