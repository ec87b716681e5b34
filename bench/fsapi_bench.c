// SPDX-License-Identifier: MIT
/*
 * fsapi_bench: how many times a second a file can be opened, read and
 * closed, or stat()ed.  bench/fsapi.sh runs it on the mount and on tmpfs
 * in the same run.
 *
 *   fsapi_bench open-read-close|stat PATH [SECONDS]
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

int main(int argc, char **argv)
{
	double seconds = argc > 3 ? atof(argv[3]) : 2.0, start, end;
	bool do_stat;
	unsigned long n = 0;
	char buf[4096];

	if (argc < 3 || (strcmp(argv[1], "open-read-close") && strcmp(argv[1], "stat"))) {
		fprintf(stderr, "usage: fsapi_bench open-read-close|stat PATH [SECONDS]\n");
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
