// SPDX-License-Identifier: MIT
/*
 * Test driver for the disk library.
 *
 *   vdisk_writer pattern SEED COUNT IMAGE SHADOW
 *	COUNT seeded writes of random offset and length (unaligned, across
 *	block boundaries) to IMAGE through the library and to the raw file
 *	SHADOW with pwrite, then a clean close.
 *
 *   vdisk_writer mutate SEED COUNT IMAGE SHADOW
 *	Like pattern, but a fifth of the operations are write-zeroes and
 *	a tenth discards (whole logical sectors, some whole 2 MiB blocks), each
 *	applied to SHADOW as zeros.  SHADOW keeps what it held: copy the
 *	parent's shadow first to follow a differencing child.  With
 *	VDISK_WRITER_ALIGN=N in the environment every operation covers
 *	whole N-byte units.
 *
 *   vdisk_writer fill IMAGE OFFSET LENGTH BYTE
 *	Write LENGTH bytes of BYTE at OFFSET (data, even zeros: not a
 *	write-zeroes), and close.
 *
 *   vdisk_writer compare IMAGE MODEL
 *	Open IMAGE read-only (its chain too) and exit 0 if it reads exactly
 *	as the raw file MODEL, 1 if not, 2 if it cannot be opened (the
 *	reason on stderr).
 *
 *   vdisk_writer crash SEED IMAGE
 *	Non-overlapping seeded writes, QD 8, with a flush every few writes,
 *	until killed.  After each flush completes it prints "durable N":
 *	the first N writes were complete before that flush was issued.
 *
 *   vdisk_writer blkexpect SEED SIZE OUT
 *	Write the raw image the test guest's "blk" test must leave on a
 *	disk of SIZE bytes (guest/testguest/blk_layout.h), to compare with.
 *
 *   vdisk_writer verify [--read-only] SEED DURABLE IMAGE
 *	Open IMAGE (replaying its log) and check: the first DURABLE writes
 *	read back exactly, later ones hold their data or zeros, and every
 *	byte no write touched is zero.  Exit 0 if so.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest/testguest/blk_layout.h"
#include "vhdx/vhdx.h"

#define SLOT (384 * 1024)	/* not a divisor of 1 MiB: writes cross blocks */
#define QD 8

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void fill(uint8_t *buf, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i += 8) {
		uint8_t word[8];

		seed = mix(seed);
		memcpy(word, &seed, 8);
		for (int k = 0; k < 8; k++)
			if (word[k] == 0)
				word[k] = 1;	/* never zero: zero is "not written" */
		memcpy(buf + i, word, len - i < 8 ? len - i : 8);
	}
}

static struct vdisk *open_disk(const char *path, bool ro)
{
	struct vdisk_open_opts o = { .read_only = ro };
	struct vdisk *d;
	char err[512];

	if (vdisk_open(path, &o, &d, err, sizeof(err))) {
		fprintf(stderr, "vdisk_writer: %s\n", err);
		exit(2);
	}
	return d;
}

static int do_pattern(uint64_t seed, long count, const char *image,
		      const char *shadow)
{
	struct vdisk *d = open_disk(image, false);
	uint64_t size = vdisk_info(d)->virtual_size;
	int sfd = open(shadow, O_RDWR | O_CREAT, 0644);
	uint8_t *buf = malloc(3 * 1024 * 1024);

	if (sfd < 0 || ftruncate(sfd, (off_t)size) < 0 || !buf)
		return 2;
	for (long i = 0; i < count; i++) {
		uint64_t r = mix(seed * 1000003 + (uint64_t)i);
		uint64_t len = 1 + (r >> 40) % (3 * 1024 * 1024);
		uint64_t off = mix(r) % size;
		int ret;

		if (len > size - off)
			len = size - off;
		/* Some writes sector-aligned, some not at all. */
		if (r & 1) {
			off &= ~511ULL;
			len = (len + 511) & ~511ULL;
			if (len > size - off)
				len = size - off;
		}
		fill(buf, len, r);
		ret = vdisk_pwrite(d, buf, len, off);
		if (ret || pwrite(sfd, buf, len, (off_t)off) != (ssize_t)len) {
			fprintf(stderr, "write %ld at %llu+%llu failed: %s\n", i,
				(unsigned long long)off, (unsigned long long)len,
				strerror(-ret));
			return 1;
		}
		if (r % 7 == 0 && (ret = vdisk_flush(d))) {
			fprintf(stderr, "flush failed: %s\n", strerror(-ret));
			return 1;
		}
	}
	free(buf);
	close(sfd);
	return vdisk_close(d) ? 1 : 0;
}

static int do_mutate(uint64_t seed, long count, const char *image,
		     const char *shadow)
{
	struct vdisk *d = open_disk(image, false);
	uint64_t size = vdisk_info(d)->virtual_size;
	uint64_t lss = vdisk_info(d)->logical_sector_size;
	const char *align = getenv("VDISK_WRITER_ALIGN");
	uint64_t unit = align ? strtoull(align, NULL, 0) : 1;
	int sfd = open(shadow, O_RDWR | O_CREAT, 0644);
	uint8_t *buf = malloc(4 * 1024 * 1024);

	if (sfd < 0 || ftruncate(sfd, (off_t)size) < 0 || !buf)
		return 2;
	for (long i = 0; i < count; i++) {
		uint64_t r = mix(seed * 1000003 + (uint64_t)i);
		uint64_t kind = r % 10, len = 1 + (r >> 40) % (3 * 1024 * 1024);
		uint64_t off = mix(r) % size;
		int ret = 0;

		if (kind >= 7 && (r >> 8) % 3 == 0) {
			/* Whole 2 MiB blocks, the size of a child's. */
			off &= ~(2 * 1024 * 1024ULL - 1);
			len = 2 * 1024 * 1024ULL * (1 + (r >> 20) % 2);
		}
		if (kind >= 7 || unit > 1) {
			uint64_t a = unit > lss ? unit : lss;

			off -= off % a;
			len = (len + a - 1) / a * a;
		}
		if (len > size - off)
			len = size - off;
		if (kind < 7) {
			fill(buf, len, r);
			ret = vdisk_pwrite(d, buf, len, off);
		} else if (kind < 9) {
			memset(buf, 0, len);
			ret = vdisk_write_zeroes(d, off, len);
		} else {
			memset(buf, 0, len);
			ret = vdisk_discard(d, off, len);
		}
		if (ret || pwrite(sfd, buf, len, (off_t)off) != (ssize_t)len) {
			fprintf(stderr, "op %ld (kind %llu) at %llu+%llu failed: %s\n", i,
				(unsigned long long)kind, (unsigned long long)off,
				(unsigned long long)len, strerror(-ret));
			return 1;
		}
		if (r % 7 == 0 && (ret = vdisk_flush(d))) {
			fprintf(stderr, "flush failed: %s\n", strerror(-ret));
			return 1;
		}
	}
	free(buf);
	close(sfd);
	return vdisk_close(d) ? 1 : 0;
}

static int do_fill(const char *image, uint64_t off, uint64_t len, int byte)
{
	struct vdisk *d = open_disk(image, false);
	uint8_t *buf = malloc(1024 * 1024);
	int ret = 0;

	if (!buf)
		return 2;
	memset(buf, byte, 1024 * 1024);
	for (uint64_t pos = 0; pos < len && !ret; pos += 1024 * 1024) {
		uint64_t n = len - pos < 1024 * 1024 ? len - pos : 1024 * 1024;

		ret = vdisk_pwrite(d, buf, n, off + pos);
	}
	free(buf);
	if (ret)
		fprintf(stderr, "fill failed: %s\n", strerror(-ret));
	return vdisk_close(d) || ret ? 1 : 0;
}

static int do_compare(const char *image, const char *model)
{
	struct vdisk_open_opts o = { .read_only = true };
	int fd = open(model, O_RDONLY);
	uint8_t *a = malloc(1 << 20), *b = malloc(1 << 20);
	struct stat st;
	struct vdisk *d;
	char err[1024];
	int ret = 0;

	if (fd < 0 || !a || !b || fstat(fd, &st) < 0) {
		ret = 2;
		goto out;
	}
	if (vdisk_open(image, &o, &d, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		ret = 2;
		goto out;
	}
	if (vdisk_info(d)->virtual_size != (uint64_t)st.st_size)
		ret = 1;
	for (uint64_t off = 0; !ret && off < (uint64_t)st.st_size; off += 1 << 20) {
		size_t n = (uint64_t)st.st_size - off < (1 << 20) ?
			   (size_t)((uint64_t)st.st_size - off) : 1 << 20;

		if (vdisk_pread(d, a, n, off) || pread(fd, b, n, (off_t)off) != (ssize_t)n ||
		    memcmp(a, b, n))
			ret = 1;
	}
	vdisk_close(d);
out:
	if (fd >= 0)
		close(fd);
	free(a);
	free(b);
	return ret;
}

/* Write i of a crash run: its slot, offset and length. */
struct cwrite {
	uint64_t off, len, seed;
};

/* Requests must be whole units of this (a differencing disk's sectors). */
static uint64_t crash_align = 1;

static struct cwrite crash_write(uint64_t seed, uint64_t nslots, uint64_t i)
{
	/* A stride coprime to nslots visits every slot once, scattered. */
	uint64_t stride = 7919;
	uint64_t slot = (i * stride) % nslots;
	uint64_t r = mix(seed ^ (i * 0x100000001b3ULL));
	struct cwrite w;

	w.off = slot * SLOT + (r % (SLOT / 2));
	w.len = 1 + (r >> 20) % (SLOT / 2);
	if (crash_align > 1) {
		w.off -= w.off % crash_align;
		w.len = (1 + (r >> 20) % (SLOT / 2 - crash_align) + crash_align - 1) /
			crash_align * crash_align;
	}
	w.seed = r;
	return w;
}

static uint64_t slots_of(uint64_t size)
{
	uint64_t n = size / SLOT;

	/* Keep the stride coprime: 7919 is prime, avoid its multiples. */
	if (n % 7919 == 0)
		n--;
	return n;
}

struct crash_slot {
	struct vdisk_req req;
	struct iovec iov;
	uint8_t *buf;
	uint64_t index;
	bool busy;
};

struct crash {
	struct vdisk *d;
	uint64_t seed, nslots, next;
	uint64_t completed_upto;	/* writes [0, this) all complete */
	uint8_t *done;
	struct vdisk_req flush;
	bool flushing;
	uint64_t flush_covers;
};

static struct crash C;

static void advance_completed(void)
{
	while (C.completed_upto < C.next && C.done[C.completed_upto])
		C.completed_upto++;
}

static void flush_done(struct vdisk_req *req, int res)
{
	(void)req;
	if (res) {
		fprintf(stderr, "flush failed: %s\n", strerror(-res));
		exit(1);
	}
	printf("durable %llu\n", (unsigned long long)C.flush_covers);
	fflush(stdout);
	C.flushing = false;
}

static void write_done(struct vdisk_req *req, int res)
{
	struct crash_slot *s = (struct crash_slot *)req;

	if (res) {
		fprintf(stderr, "write failed: %s\n", strerror(-res));
		exit(1);
	}
	C.done[s->index] = 1;
	s->busy = false;
	advance_completed();
}

static int do_crash(uint64_t seed, const char *image)
{
	struct crash_slot slots[QD] = { 0 };

	C.d = open_disk(image, false);
	crash_align = vdisk_info(C.d)->alignment;
	C.seed = seed;
	C.nslots = slots_of(vdisk_info(C.d)->virtual_size);
	C.done = calloc(C.nslots, 1);
	for (int i = 0; i < QD; i++)
		slots[i].buf = malloc(SLOT);
	for (;;) {
		for (int i = 0; i < QD && C.next < C.nslots; i++) {
			struct crash_slot *s = &slots[i];
			struct cwrite w;

			if (s->busy)
				continue;
			w = crash_write(seed, C.nslots, C.next);
			fill(s->buf, w.len, w.seed);
			s->iov.iov_base = s->buf;
			s->iov.iov_len = w.len;
			s->req = (struct vdisk_req){ .op = VDISK_WRITE,
				.offset = w.off, .iov = &s->iov, .iovcnt = 1,
				.done = write_done };
			s->index = C.next++;
			s->busy = true;
			if (vdisk_submit(C.d, &s->req))
				return 1;
		}
		if (!C.flushing && mix(seed + C.next) % 5 == 0) {
			C.flush = (struct vdisk_req){ .op = VDISK_FLUSH,
						      .done = flush_done };
			C.flush_covers = C.completed_upto;
			C.flushing = true;
			if (vdisk_submit(C.d, &C.flush))
				return 1;
		}
		if (io_engine_run(vdisk_engine(C.d), 1) < 0)
			return 1;
		if (C.next >= C.nslots && !C.flushing) {
			/* Everything written: idle until killed. */
			pause();
		}
	}
}

/* Print the first difference; returns 1 for "bad". */
static int report(const uint8_t *got, const uint8_t *want, uint64_t len,
		  uint64_t pos, uint64_t write, const char *what)
{
	for (uint64_t k = 0; k < len; k++) {
		if (got[k] != want[k]) {
			fprintf(stderr, "byte %llu: got %u, want %u (write %llu, %s)\n",
				(unsigned long long)(pos + k), got[k], want[k],
				(unsigned long long)write, what);
			break;
		}
	}
	return 1;
}

static int do_verify(uint64_t seed, uint64_t durable, const char *image, bool ro)
{
	struct vdisk *d = open_disk(image, ro);
	uint64_t size = vdisk_info(d)->virtual_size, nslots = slots_of(size);
	uint8_t *slot = malloc(SLOT), *want = malloc(SLOT);

	crash_align = vdisk_info(d)->alignment;
	uint64_t *writer = malloc(sizeof(uint64_t) * nslots);
	int bad = 0;

	/* Which write went to each slot. */
	for (uint64_t s = 0; s < nslots; s++)
		writer[s] = UINT64_MAX;
	for (uint64_t i = 0; i < nslots; i++)
		writer[(i * 7919) % nslots] = i;

	for (uint64_t s = 0; s < size / SLOT + 1 && !bad; s++) {
		uint64_t base = s * SLOT, len = SLOT;
		bool durable_write;
		struct cwrite w;

		if (base >= size)
			break;
		if (len > size - base)
			len = size - base;
		if (vdisk_pread(d, slot, len, base)) {
			fprintf(stderr, "read at %llu failed\n", (unsigned long long)base);
			return 1;
		}
		if (s >= nslots) {
			/* The tail no write reaches: zeros. */
			memset(want, 0, len);
			if (memcmp(slot, want, len))
				bad = report(slot, want, len, base, 0, "never written");
			continue;
		}
		durable_write = writer[s] < durable;
		if (!durable_write) {
			/* Most slots were never reached: all zeros is fine. */
			memset(want, 0, len);
			if (memcmp(slot, want, len) == 0)
				continue;
		}
		w = crash_write(seed, nslots, writer[s]);
		/* What this slot holds if its write landed: data in zeros. */
		memset(want, 0, len);
		fill(want + (w.off - base), w.len, w.seed);
		if (memcmp(slot, want, len) == 0)
			continue;
		if (!durable_write) {
			/* May be absent, or in part: each byte data or zero. */
			for (uint64_t k = 0; k < len; k++)
				if (slot[k] && slot[k] != want[k]) {
					bad = report(slot + k, want + k, 1, base + k,
						     writer[s], "not durable");
					break;
				}
			continue;
		}
		bad = report(slot, want, len, base, writer[s], "durable");
	}
	if (vdisk_close(d))
		bad = 1;
	free(slot);
	free(want);
	free(writer);
	return bad;
}

static int do_blkexpect(uint64_t seed, uint64_t size, const char *out)
{
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	uint8_t buf[4096];

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		return 2;
	/* Only W can hold anything but zeros. */
	for (uint64_t off = BLK_TEST_W0; off < BLK_TEST_W0 + BLK_TEST_WLEN;
	     off += sizeof(buf)) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = blk_test_expected(seed, off + i);
		if (pwrite(fd, buf, sizeof(buf), (off_t)off) != (ssize_t)sizeof(buf))
			return 2;
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	bool ro = false;

	if (argc >= 3 && strcmp(argv[1], "verify") == 0 &&
	    strcmp(argv[2], "--read-only") == 0) {
		ro = true;
		argv[2] = argv[1];
		argv++;
		argc--;
	}
	if (argc == 6 && strcmp(argv[1], "pattern") == 0)
		return do_pattern(strtoull(argv[2], NULL, 0), atol(argv[3]),
				  argv[4], argv[5]);
	if (argc == 6 && strcmp(argv[1], "mutate") == 0)
		return do_mutate(strtoull(argv[2], NULL, 0), atol(argv[3]),
				 argv[4], argv[5]);
	if (argc == 4 && strcmp(argv[1], "compare") == 0)
		return do_compare(argv[2], argv[3]);
	if (argc == 6 && strcmp(argv[1], "fill") == 0)
		return do_fill(argv[2], strtoull(argv[3], NULL, 0),
			       strtoull(argv[4], NULL, 0), atoi(argv[5]));
	if (argc == 5 && strcmp(argv[1], "blkexpect") == 0)
		return do_blkexpect(strtoull(argv[2], NULL, 0), strtoull(argv[3], NULL, 0),
				    argv[4]);
	if (argc == 4 && strcmp(argv[1], "crash") == 0)
		return do_crash(strtoull(argv[2], NULL, 0), argv[3]);
	if (argc == 5 && strcmp(argv[1], "verify") == 0)
		return do_verify(strtoull(argv[2], NULL, 0),
				 strtoull(argv[3], NULL, 0), argv[4], ro);
	fprintf(stderr, "usage: see the comment at the top of vdisk_writer.c\n");
	return 2;
}
