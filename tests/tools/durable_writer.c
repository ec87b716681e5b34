// SPDX-License-Identifier: MIT
/*
 * durable_writer: acknowledged writes, for the crash test of a disk's
 * "data" file (tests/fs_data_crash.sh).
 *
 *   durable_writer write FILE MODE SEED LOG
 *	MODE: dsync (O_DSYNC), sync (O_SYNC), rwf (pwritev2 with RWF_DSYNC
 *	on an ordinary descriptor) or fsync (batches of plain writes, each
 *	followed by fsync).  Writes 64 KiB blocks of a pattern made from
 *	SEED and the offset, at distinct block offsets in FILE, until a
 *	write fails (the service was killed).  Each write (each batch, for
 *	fsync) is recorded in LOG only after the call that makes it durable
 *	returned: what LOG names, the file must hold.
 *   durable_writer verify FILE SEED LOG
 *	Reads back every block LOG names and compares it byte for byte;
 *	prints "ok N" or the first block that differs, and exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define BLOCK	65536
#define BATCH	8

static void fill(uint8_t *buf, uint64_t seed, uint64_t off)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ULL ^ off ^ 0xD1B54A32D192ED03ULL;

	for (size_t i = 0; i < BLOCK; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(buf + i, &x, 8);
	}
}

static int log_offsets(int logfd, const uint64_t *offs, size_t n)
{
	char line[32 * BATCH];
	size_t len = 0;

	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(line + len, sizeof(line) - len, "%llu\n",
				       (unsigned long long)offs[i]);
	return write(logfd, line, len) == (ssize_t)len ? 0 : -1;
}

static int do_write(const char *file, const char *mode, uint64_t seed, const char *log)
{
	static uint8_t buf[BLOCK];
	int flags = O_RDWR | O_CLOEXEC;
	uint64_t slots, stride, first, offs[BATCH];
	size_t pending = 0, done = 0;
	struct stat st;
	int fd, logfd;

	if (strcmp(mode, "dsync") == 0)
		flags |= O_DSYNC;
	else if (strcmp(mode, "sync") == 0)
		flags |= O_SYNC;
	else if (strcmp(mode, "fsync") != 0 && strcmp(mode, "rwf") != 0)
		return 2;
	fd = open(file, flags);
	logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0 || logfd < 0 || fstat(fd, &st) < 0) {
		perror(file);
		return 1;
	}
	slots = (uint64_t)st.st_size / BLOCK;
	/* Distinct blocks: an odd stride through a power-of-two count visits each once. */
	stride = (seed * 2 + 1) % slots | 1;
	first = seed * 7919 % slots;
	for (uint64_t i = 0; i < slots; i++) {
		uint64_t off = (first + i * stride) % slots * BLOCK;
		struct iovec iov = { buf, BLOCK };
		ssize_t n;

		fill(buf, seed, off);
		if (strcmp(mode, "rwf") == 0)
			n = pwritev2(fd, &iov, 1, (off_t)off, RWF_DSYNC);
		else
			n = pwrite(fd, buf, BLOCK, (off_t)off);
		if (n != BLOCK)
			break;
		offs[pending++] = off;
		if (strcmp(mode, "fsync") == 0 && pending < BATCH)
			continue;
		if (strcmp(mode, "fsync") == 0 && fsync(fd) < 0)
			break;
		if (log_offsets(logfd, offs, pending))
			break;
		done += pending;
		pending = 0;
	}
	printf("wrote %zu\n", done);
	close(fd);
	close(logfd);
	return 0;
}

static int do_verify(const char *file, uint64_t seed, const char *log)
{
	static uint8_t want[BLOCK], got[BLOCK];
	unsigned long long off;
	size_t n = 0;
	FILE *f = fopen(log, "r");
	int fd = open(file, O_RDONLY | O_CLOEXEC);

	if (!f || fd < 0) {
		perror(file);
		return 1;
	}
	while (fscanf(f, "%llu", &off) == 1) {
		fill(want, seed, off);
		if (pread(fd, got, BLOCK, (off_t)off) != BLOCK || memcmp(want, got, BLOCK)) {
			size_t at = 0;

			while (at < BLOCK && want[at] == got[at])
				at++;
			printf("block at %llu differs from byte %zu (acknowledged write %zu lost)\n",
			       off, at, n + 1);
			fclose(f);
			close(fd);
			return 1;
		}
		n++;
	}
	printf("ok %zu\n", n);
	fclose(f);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 6 && strcmp(argv[1], "write") == 0)
		return do_write(argv[2], argv[3], strtoull(argv[4], NULL, 10), argv[5]);
	if (argc == 5 && strcmp(argv[1], "verify") == 0)
		return do_verify(argv[2], strtoull(argv[3], NULL, 10), argv[4]);
	fprintf(stderr, "usage: durable_writer write FILE MODE SEED LOG | verify FILE SEED LOG\n");
	return 2;
}
