// SPDX-License-Identifier: MIT
/*
 * Test driver for growing disks (vdisk_resize).
 *
 *   resize_tool resize [--sparse|--enospc] IMAGE SIZE
 *	Grow IMAGE.  --sparse: a fixed disk's new space is not reserved
 *	(ftruncate instead of fallocate), so terabytes fit a small disk.
 *	--enospc: reserving space fails as on a full filesystem.
 *
 *   resize_tool crash [--sparse] N IMAGE SIZE
 *	Grow IMAGE, killing this process with SIGKILL at the Nth step of
 *	the library's metadata changes (vhdx/test_hooks.h); the step is
 *	named on stderr first.  Exit 0 with "completed after K steps" when
 *	the resize finishes before step N.
 *
 *   resize_tool write SEED COUNT FROM IMAGE SHADOW
 *	COUNT seeded writes of random offset and length at or after FROM
 *	(the first one straddles FROM), through the library to IMAGE and
 *	with pwrite to the raw file SHADOW, which is extended to the disk's
 *	size.  Prints each write as "OFFSET LENGTH".
 *
 *   resize_tool compare [--rw] IMAGE SHADOW
 *	IMAGE (opened read-only, replaying a dirty log in memory; --rw
 *	replays it into the file) must hold SHADOW's bytes, and zeros past
 *	SHADOW's end.  Data of SHADOW is compared byte for byte; in its
 *	holes, what IMAGE reports allocated is read in full, or, in long
 *	runs, probed in every part.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"
#include "vhdx/vhdx.h"
#include "vhdx/test_hooks.h"

#define MAX_WRITE (3 * 1024 * 1024)
#define CHUNK (4 * 1024 * 1024)
#define FULL_READ (64 * 1024 * 1024)	/* allocated holes read in full */
#define PROBES 8192			/* else at most this many probes */
#define PROBE 4096

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void fill(uint8_t *buf, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++) {
		if (i % 8 == 0)
			seed = mix(seed);
		buf[i] = (uint8_t)(seed >> (8 * (i % 8))) | 1;
	}
}

static struct vdisk *open_disk(const char *path, bool ro)
{
	struct vdisk_open_opts o = { .read_only = ro };
	struct vdisk *d;
	char err[512];

	if (vdisk_open(path, &o, &d, err, sizeof(err))) {
		fprintf(stderr, "resize_tool: %s\n", err);
		exit(2);
	}
	return d;
}

static int sparse_reserve(int fd, uint64_t off, uint64_t len)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size < off + len &&
	    ftruncate(fd, (off_t)(off + len)) < 0)
		return -errno;
	return 0;
}

static int no_space(int fd, uint64_t off, uint64_t len)
{
	(void)fd;
	(void)off;
	(void)len;
	return -ENOSPC;
}

static unsigned long kill_at, steps;

static void kill_hook(const char *step)
{
	if (++steps == kill_at) {
		fprintf(stderr, "killed at step %lu: %s\n", steps, step);
		raise(SIGKILL);
	}
}

static int do_resize(const char *image, const char *size_text)
{
	uint64_t size;
	char err[512];

	if (size_parse(size_text, &size)) {
		fprintf(stderr, "resize_tool: bad size '%s'\n", size_text);
		return 2;
	}
	if (vdisk_resize(image, size, err, sizeof(err))) {
		fprintf(stderr, "resize_tool: %s\n", err);
		return 1;
	}
	if (kill_at)
		printf("completed after %lu steps\n", steps);
	return 0;
}

static int do_write(uint64_t seed, long count, uint64_t from,
		    const char *image, const char *shadow)
{
	struct vdisk *d = open_disk(image, false);
	uint64_t size = vdisk_info(d)->virtual_size;
	uint64_t span;
	int sfd = open(shadow, O_RDWR | O_CREAT, 0644);
	uint8_t *buf = malloc(MAX_WRITE);

	if (sfd < 0 || ftruncate(sfd, (off_t)size) < 0 || !buf || from >= size)
		return 2;
	span = size - from;
	for (long i = 0; i < count; i++) {
		uint64_t r = mix(seed * 1000003 + (uint64_t)i);
		uint64_t len = 1 + (r >> 40) % MAX_WRITE;
		uint64_t off = from + mix(r) % span;
		int ret;

		if (i == 0)	/* across the old end, when there is one */
			off = from > len / 2 ? from - len / 2 : 0;
		if (r & 1) {
			/* Some writes sector-aligned, some not at all. */
			off &= ~511ULL;
			len = (len + 511) & ~511ULL;
		}
		if (len > size - off)
			len = size - off;
		fill(buf, len, r);
		ret = vdisk_pwrite(d, buf, len, off);
		if (ret || pwrite(sfd, buf, len, (off_t)off) != (ssize_t)len) {
			fprintf(stderr, "write %ld at %llu+%llu failed: %s\n", i,
				(unsigned long long)off, (unsigned long long)len,
				strerror(-ret));
			return 1;
		}
		if (r % 5 == 0 && (ret = vdisk_flush(d))) {
			fprintf(stderr, "flush failed: %s\n", strerror(-ret));
			return 1;
		}
		printf("%llu %llu\n", (unsigned long long)off,
		       (unsigned long long)len);
	}
	free(buf);
	close(sfd);
	return vdisk_close(d) ? 1 : 0;
}

struct cmp {
	struct vdisk *d;
	int sfd;
	uint8_t *a, *b;
	uint64_t compared, probed;
};

static int differ(const uint8_t *got, const uint8_t *want, size_t len,
		  uint64_t pos)
{
	for (size_t k = 0; k < len; k++)
		if (got[k] != want[k]) {
			fprintf(stderr, "byte %llu: image has %u, expected %u\n",
				(unsigned long long)(pos + k), got[k], want[k]);
			return 1;
		}
	return 0;
}

/* [off, off + len) of the image must equal the shadow (or zeros). */
static int cmp_range(struct cmp *c, uint64_t off, uint64_t len, bool zeros)
{
	while (len) {
		size_t n = len > CHUNK ? CHUNK : len;

		if (vdisk_pread(c->d, c->a, n, off)) {
			fprintf(stderr, "read at %llu failed\n", (unsigned long long)off);
			return 1;
		}
		if (zeros)
			memset(c->b, 0, n);
		else if (pread(c->sfd, c->b, n, (off_t)off) != (ssize_t)n)
			return 1;
		if (differ(c->a, c->b, n, off))
			return 1;
		c->compared += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* A hole of the shadow: the image must read zeros there. */
static int cmp_hole(struct cmp *c, uint64_t off, uint64_t end)
{
	while (off < end) {
		uint64_t len = end - off, stride;
		bool alloc;

		if (vdisk_block_status(c->d, off, &len, &alloc) || !len)
			return 1;
		if (!alloc) {
			off += len;
			continue;
		}
		if (len <= FULL_READ) {
			if (cmp_range(c, off, len, true))
				return 1;
			off += len;
			continue;
		}
		/* Long allocated runs (fixed disks): one probe per stride. */
		stride = len / PROBES;
		stride = stride < 1024 * 1024 ? 1024 * 1024 : stride & ~4095ULL;
		for (uint64_t p = 0; p < len; p += stride) {
			uint64_t at = off + p + mix(p) % (stride - PROBE + 1) / 512 * 512;

			if (at + PROBE > off + len)
				at = off + len - PROBE;
			if (cmp_range(c, at, PROBE, true))
				return 1;
			c->probed++;
		}
		if (cmp_range(c, off + len - PROBE, PROBE, true))
			return 1;
		off += len;
	}
	return 0;
}

static int do_compare(const char *image, const char *shadow, bool rw)
{
	struct cmp c = { .d = open_disk(image, !rw) };
	uint64_t size = vdisk_info(c.d)->virtual_size, ssize, pos = 0;
	struct stat st;
	int bad = 0;

	c.sfd = open(shadow, O_RDONLY);
	c.a = malloc(CHUNK);
	c.b = malloc(CHUNK);
	if (c.sfd < 0 || fstat(c.sfd, &st) < 0 || !c.a || !c.b)
		return 2;
	ssize = (uint64_t)st.st_size;
	if (ssize > size) {
		fprintf(stderr, "the image holds %llu bytes, the shadow %llu\n",
			(unsigned long long)size, (unsigned long long)ssize);
		return 1;
	}
	while (pos < ssize && !bad) {
		off_t data = lseek(c.sfd, (off_t)pos, SEEK_DATA);
		off_t hole;

		if (data < 0)
			data = (off_t)ssize;	/* ENXIO: holes to the end */
		bad = cmp_hole(&c, pos, (uint64_t)data);
		if (bad || (uint64_t)data >= ssize)
			break;
		hole = lseek(c.sfd, data, SEEK_HOLE);
		if (hole < 0)
			hole = (off_t)ssize;
		bad = cmp_range(&c, (uint64_t)data, (uint64_t)(hole - data), false);
		pos = (uint64_t)hole;
	}
	if (!bad)
		bad = cmp_hole(&c, ssize, size);
	if (vdisk_close(c.d))
		bad = 1;
	if (!bad)
		printf("same: %llu bytes compared, %llu probes\n",
		       (unsigned long long)c.compared,
		       (unsigned long long)c.probed);
	free(c.a);
	free(c.b);
	close(c.sfd);
	return bad;
}

int main(int argc, char **argv)
{
	bool rw = argc >= 3 && strcmp(argv[2], "--rw") == 0;
	bool sparse = argc >= 3 && strcmp(argv[2], "--sparse") == 0;
	bool enospc = argc >= 3 && strcmp(argv[2], "--enospc") == 0;

	if (rw || sparse || enospc) {
		if (sparse)
			vhdx_reserve_hook = sparse_reserve;
		if (enospc)
			vhdx_reserve_hook = no_space;
		argv[2] = argv[1];
		argv++;
		argc--;
	}
	if (argc == 4 && strcmp(argv[1], "resize") == 0)
		return do_resize(argv[2], argv[3]);
	if (argc == 5 && strcmp(argv[1], "crash") == 0) {
		kill_at = strtoul(argv[2], NULL, 0);
		if (!kill_at)
			return 2;
		vhdx_step_hook = kill_hook;
		return do_resize(argv[3], argv[4]);
	}
	if (argc == 7 && strcmp(argv[1], "write") == 0)
		return do_write(strtoull(argv[2], NULL, 0), atol(argv[3]),
				strtoull(argv[4], NULL, 0), argv[5], argv[6]);
	if (argc == 4 && strcmp(argv[1], "compare") == 0)
		return do_compare(argv[2], argv[3], rw);
	fprintf(stderr, "usage: see the comment at the top of resize_tool.c\n");
	return 2;
}
