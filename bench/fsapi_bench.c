// SPDX-License-Identifier: MIT
/*
 * fsapi_bench: how many times a second a file can be opened, read and
 * closed, or stat()ed.  bench/fsapi.sh runs it on the mount and on tmpfs
 * in the same run.
 *
 *   fsapi_bench open-read-close|stat PATH [SECONDS]
 *   fsapi_bench dsync-write PATH [SECONDS]
 *	64 KiB writes through an O_DSYNC descriptor, one after the other
 *	over the first 256 MiB of PATH (a disk's "data", or a plain file).
 *
 * Prints "<operations per second> <operations>".
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

#define DSYNC_BLOCK	65536
#define DSYNC_SPAN	(256 << 20)

static int dsync_write(const char *path, double seconds)
{
	static char block[DSYNC_BLOCK];
	double start = now(), end = start + seconds;
	int fd = open(path, O_WRONLY | O_DSYNC);
	unsigned long n = 0;

	if (fd < 0) {
		perror(path);
		return 1;
	}
	memset(block, 0x5a, sizeof(block));
	do {
		off_t off = (off_t)(n % (DSYNC_SPAN / DSYNC_BLOCK)) * DSYNC_BLOCK;

		block[0] = (char)n;	/* never all zeros, never the same twice in a row */
		if (pwrite(fd, block, sizeof(block), off) != (ssize_t)sizeof(block)) {
			perror(path);
			return 1;
		}
		n++;
	} while (now() < end);
	printf("%.0f %lu\n", (double)n / (now() - start), n);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	double seconds = argc > 3 ? atof(argv[3]) : 2.0, start, end;
	bool do_stat;
	unsigned long n = 0;
	char buf[4096];

	if (argc >= 3 && strcmp(argv[1], "dsync-write") == 0)
		return dsync_write(argv[2], seconds);
	if (argc < 3 || (strcmp(argv[1], "open-read-close") && strcmp(argv[1], "stat"))) {
		fprintf(stderr, "usage: fsapi_bench open-read-close|stat|dsync-write PATH [SECONDS]\n");
		return 2;
	}
	do_stat = strcmp(argv[1], "stat") == 0;
	start = now();
	end = start + seconds;
	do {
		/* Check the clock every 256 operations only. */
		for (int i = 0; i < 256; i++, n++) {
			if (do_stat) {
				struct stat st;

				if (stat(argv[2], &st) < 0) {
					perror(argv[2]);
					return 1;
				}
			} else {
				int fd = open(argv[2], O_RDONLY);

				if (fd < 0 || read(fd, buf, sizeof(buf)) <= 0) {
					perror(argv[2]);
					return 1;
				}
				close(fd);
			}
		}
	} while (now() < end);
	printf("%.0f %lu\n", (double)n / (now() - start), n);
	return 0;
}
