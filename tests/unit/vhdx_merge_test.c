// SPDX-License-Identifier: MIT
/*
 * Merging: into the parent and into older ancestors, of every type;
 * zero blocks that hide the parent; siblings refused afterwards with the
 * reason; online merges with writes between and during steps; cancelled
 * merges that leave everything as it was; and the refusals.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhdx/vhdx.h"
#include "vhdx/format.h"

#define SIZE	(24 * MiB)

static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/fsvisor-merge-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(merge, .init = setup, .fini = teardown, .timeout = 120);

static const char *at(const char *name)
{
	static char p[8][160];
	static int i;

	i = (i + 1) % 8;
	snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
	return p[i];
}

static void make(const char *name, enum vdisk_format f, enum vdisk_type t,
		 const char *parent)
{
	struct vdisk_create_opts o = { .format = f, .type = t, .size = SIZE,
				       .block_size = f == VDISK_FORMAT_VHDX && !parent ? MiB : 0,
				       .parent = parent ? at(parent) : NULL };
	char err[1024] = "";

	cr_assert_eq(vdisk_create(at(name), &o, err, sizeof(err)), 0, "%s", err);
}

static struct vdisk *open_ok(const char *name, bool ro)
{
	struct vdisk *d = NULL;
	char err[1024] = "";

	cr_assert_eq(vdisk_open(at(name), &(struct vdisk_open_opts){ .read_only = ro },
				&d, err, sizeof(err)), 0, "%s", err);
	return d;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Writes and zeroing, mirrored into @model (sector-aligned). */
static void scribble_open(struct vdisk *d, uint8_t *model, uint64_t seed, int n)
{
	uint8_t *b = malloc(3 * MiB);
	uint64_t s = seed * 2654435761ULL + 1;

	for (int i = 0; i < n; i++) {
		uint64_t off = rnd(&s) % SIZE & ~511ULL, len = (rnd(&s) % (3 * MiB) + 512) & ~511ULL;

		if (len > SIZE - off)
			len = SIZE - off;
		if (rnd(&s) % 5 == 0) {
			if (rnd(&s) % 2) {
				off &= ~(2 * MiB - 1);
				len = 2 * MiB;
			}
			cr_assert_eq(vdisk_write_zeroes(d, off, len), 0);
			memset(model + off, 0, len);
		} else {
			for (uint64_t k = 0; k < len; k++)
				b[k] = (uint8_t)(seed + i + k * 7 + (k >> 9));
			cr_assert_eq(vdisk_pwrite(d, b, len, off), 0);
			memcpy(model + off, b, len);
		}
	}
	free(b);
}

static void scribble(const char *name, uint8_t *model, uint64_t seed, int n)
{
	struct vdisk *d = open_ok(name, false);

	scribble_open(d, model, seed, n);
	cr_assert_eq(vdisk_close(d), 0);
}

static void expect_model_open(struct vdisk *d, const uint8_t *model)
{
	uint8_t *b = malloc(SIZE);

	cr_assert_eq(vdisk_pread(d, b, SIZE, 0), 0);
	for (uint64_t i = 0; i < SIZE; i++)
		cr_assert_eq(b[i], model[i], "byte %llu: 0x%02x, expected 0x%02x",
			     (unsigned long long)i, b[i], model[i]);
	free(b);
}

static void expect_model(const char *name, const uint8_t *model)
{
	struct vdisk *d = open_ok(name, true);

	expect_model_open(d, model);
	vdisk_close(d);
}

static void expect_clean(const char *name)
{
	struct vhdx_check_result res;

	cr_assert_eq(vdisk_check(at(name), false, NULL, NULL, &res), 0);
	cr_assert_eq(res.problems, 0, "%s has problems after the merge", name);
}

static void merge_ok(const char *child, const char *into)
{
	struct vdisk_merge_opts o = { .into = into ? at(into) : NULL };
	char err[1024] = "";

	cr_assert_eq(vdisk_merge(at(child), &o, err, sizeof(err)), 0, "%s", err);
}

Test(merge, into_the_parent_of_every_type)
{
	static const struct {
		enum vdisk_format f;
		enum vdisk_type t;
	} bases[] = {
		{ VDISK_FORMAT_VHDX, VDISK_TYPE_DYNAMIC },
		{ VDISK_FORMAT_VHDX, VDISK_TYPE_FIXED },
	};
	uint8_t *base = calloc(1, SIZE), *child = malloc(SIZE);

	for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
		memset(base, 0, SIZE);
		unlink(at("b.vhdx"));
		make("b.vhdx", bases[i].f, bases[i].t, NULL);
		scribble("b.vhdx", base, 1, 12);
		make("c.vhdx", VDISK_FORMAT_VHDX, 0, "b.vhdx");
		make("s.vhdx", VDISK_FORMAT_VHDX, 0, "b.vhdx");
		memcpy(child, base, SIZE);
		scribble("c.vhdx", child, 2, 12);
		merge_ok("c.vhdx", NULL);
		expect_model("b.vhdx", child);
		expect_clean("b.vhdx");
		cr_assert_eq(access(at("c.vhdx"), F_OK), -1, "the merged child stays");
		cr_assert_eq(access(at("c.vhdx.merge"), F_OK), -1, "the journal stays");
		/* The sibling is invalid now, and says why. */
		{
			struct vdisk *d;
			char err[1024] = "";
			int ret = vdisk_open(at("s.vhdx"), &(struct vdisk_open_opts){
					     .read_only = true }, &d, err, sizeof(err));

			cr_assert_eq(ret, -ESTALE, "%d %s", ret, err);
			cr_assert_not_null(strstr(err, "was changed by merging c.vhdx into it"),
					   "%s", err);
		}
		unlink(at("s.vhdx"));
	}
	free(base);
	free(child);
}

Test(merge, through_a_chain_into_an_ancestor)
{
	uint8_t *m = calloc(1, SIZE), *mid;
	struct vdisk_merge_opts keep = { .keep_files = true };
	char err[1024];

	make("b.vhdx", VDISK_FORMAT_VHDX, VDISK_TYPE_DYNAMIC, NULL);
	scribble("b.vhdx", m, 1, 10);
	make("l1.vhdx", VDISK_FORMAT_VHDX, 0, "b.vhdx");
	scribble("l1.vhdx", m, 2, 10);
	make("l2.vhdx", VDISK_FORMAT_VHDX, 0, "l1.vhdx");
	scribble("l2.vhdx", m, 3, 10);
	mid = malloc(SIZE);
	memcpy(mid, m, SIZE);
	make("l3.vhdx", VDISK_FORMAT_VHDX, 0, "l2.vhdx");
	scribble("l3.vhdx", m, 4, 10);

	/* Into a differencing ancestor, keeping the merged files. */
	cr_assert_eq(vdisk_merge(at("l3.vhdx"), &keep, err, sizeof(err)), 0, "%s", err);
	expect_model("l2.vhdx", m);
	expect_clean("l2.vhdx");
	cr_assert_eq(access(at("l3.vhdx"), F_OK), 0, "--keep removed the child");
	{
		struct vdisk *d;

		cr_assert_eq(vdisk_open(at("l3.vhdx"), &(struct vdisk_open_opts){
				.read_only = true }, &d, err, sizeof(err)), -ESTALE);
	}
	/* Then two levels at once, into the root. */
	merge_ok("l2.vhdx", "b.vhdx");
	expect_model("b.vhdx", m);
	expect_clean("b.vhdx");
	cr_assert_eq(access(at("l1.vhdx"), F_OK), -1, "the disk between stays");
	cr_assert_eq(access(at("l2.vhdx"), F_OK), -1);
	free(m);
	free(mid);
}

/* A VHD's size is rounded to its geometry: the models are that long. */
static uint64_t vhd_size(const char *name)
{
	struct vdisk *d = open_ok(name, true);
	uint64_t size = vdisk_info(d)->virtual_size;

	vdisk_close(d);
	return size;
}

Test(merge, into_vhd_ancestors)
{
	uint8_t *m = calloc(1, SIZE), *base = malloc(SIZE);
	struct vdisk *d;
	char err[1024];

	make("b.vhd", VDISK_FORMAT_VHD, VDISK_TYPE_DYNAMIC, NULL);
	cr_assert_geq(vhd_size("b.vhd"), SIZE);
	scribble("b.vhd", m, 1, 10);
	memcpy(base, m, SIZE);
	make("l1.vhd", VDISK_FORMAT_VHD, 0, "b.vhd");
	scribble("l1.vhd", m, 2, 10);
	make("s.vhd", VDISK_FORMAT_VHD, 0, "b.vhd");
	/* A VHDX child of the VHD chain, into its differencing VHD parent. */
	make("l2.vhdx", VDISK_FORMAT_VHDX, 0, "l1.vhd");
	scribble("l2.vhdx", m, 3, 10);
	merge_ok("l2.vhdx", NULL);
	expect_model("l1.vhd", m);
	expect_clean("l1.vhd");
	/* The differencing VHD into the dynamic base. */
	merge_ok("l1.vhd", NULL);
	expect_model("b.vhd", m);
	expect_clean("b.vhd");
	cr_assert_eq(access(at("l1.vhd"), F_OK), -1);
	/* Its other child links to the old unique id: refused. */
	cr_assert_eq(vdisk_open(at("s.vhd"), &(struct vdisk_open_opts){ .read_only = true },
				&d, err, sizeof(err)), -ESTALE);
	cr_assert_not_null(strstr(err, "unique id"), "%s", err);
	/* A VHD merged into keeps taking writes and merges. */
	make("l3.vhd", VDISK_FORMAT_VHD, 0, "b.vhd");
	scribble("l3.vhd", m, 4, 6);
	merge_ok("l3.vhd", NULL);
	expect_model("b.vhd", m);
	expect_clean("b.vhd");
	free(m);
	free(base);
}

Test(merge, zero_blocks_hide_the_parent_after_a_merge)
{
	uint8_t *m = calloc(1, SIZE);
	struct vdisk *d;

	make("b.vhdx", VDISK_FORMAT_VHDX, VDISK_TYPE_DYNAMIC, NULL);
	d = open_ok("b.vhdx", false);
	memset(m, 0x5a, SIZE);
	cr_assert_eq(vdisk_pwrite(d, m, SIZE, 0), 0);
	cr_assert_eq(vdisk_close(d), 0);
	make("c.vhdx", VDISK_FORMAT_VHDX, 0, "b.vhdx");
	d = open_ok("c.vhdx", false);
	cr_assert_eq(vdisk_discard(d, 4 * MiB, 4 * MiB), 0);
	cr_assert_eq(vdisk_write_zeroes(d, 10 * MiB + 512, 1024), 0);
	cr_assert_eq(vdisk_close(d), 0);
	memset(m + 4 * MiB, 0, 4 * MiB);
	memset(m + 10 * MiB + 512, 0, 1024);
	merge_ok("c.vhdx", NULL);
	expect_model("b.vhdx", m);
	free(m);
}

/* An async write of @len bytes of @tag at @off, counted in *left. */
struct pending {
	struct vdisk_req req;
	struct iovec iov;
	uint8_t *buf;
	int *left;
};

static void pending_done(struct vdisk_req *req, int res)
{
	struct pending *p = (struct pending *)req;

	cr_assert_eq(res, 0);
	(*p->left)--;
	free(p->buf);
	free(p);
}

static void submit_write(struct vdisk *d, uint8_t *model, uint64_t off,
			 uint64_t len, uint8_t tag, int *left)
{
	struct pending *p = calloc(1, sizeof(*p));

	p->buf = malloc(len);
	memset(p->buf, tag, len);
	memcpy(model + off, p->buf, len);
	p->iov = (struct iovec){ p->buf, len };
	p->req = (struct vdisk_req){ .op = VDISK_WRITE, .offset = off, .iov = &p->iov,
				     .iovcnt = 1, .done = pending_done };
	p->left = left;
	(*left)++;
	cr_assert_eq(vdisk_submit(d, &p->req), 0);
}

Test(merge, online_with_writes_between_and_during_steps)
{
	uint8_t *m = calloc(1, SIZE);
	struct vdisk_merge *mg;
	struct vdisk *d;
	char err[1024] = "";
	int ret, steps = 0, left = 0;

	make("b.vhdx", VDISK_FORMAT_VHDX, VDISK_TYPE_DYNAMIC, NULL);
	scribble("b.vhdx", m, 1, 10);
	make("c.vhdx", VDISK_FORMAT_VHDX, 0, "b.vhdx");
	d = open_ok("c.vhdx", false);
	scribble_open(d, m, 2, 10);
	cr_assert_eq(vdisk_merge_begin(d, NULL, &mg, err, sizeof(err)), 0, "%s", err);
	do {
		/* Behind the copy, ahead of it, and left in flight. */
		scribble_open(d, m, 100 + (uint64_t)steps, 2);
		submit_write(d, m, (uint64_t)steps * 3 * MiB % SIZE, 64 * KiB,
			     (uint8_t)(0x40 + steps), &left);
		ret = vdisk_merge_step(mg, err, sizeof(err));
		steps++;
	} while (ret > 0);
	cr_assert_eq(ret, 0, "%s", err);
	while (left)
		io_engine_run(vdisk_engine(d), 1);
	/* The open disk is the parent now, read-write. */
	cr_assert_eq(vdisk_info(d)->type, VDISK_TYPE_DYNAMIC);
	cr_assert_eq(vdisk_parent(d), NULL);
	expect_model_open(d, m);
	scribble_open(d, m, 7, 4);
	cr_assert_eq(vdisk_close(d), 0);
	expect_model("b.vhdx", m);
	expect_clean("b.vhdx");
	cr_assert_eq(access(at("c.vhdx"), F_OK), -1);
	free(m);
}

Test(merge, cancel_leaves_everything_as_it_was)
{
	uint8_t *bm = calloc(1, SIZE), *cm;
	struct vdisk_merge *mg;
	struct vdisk *d;
	struct stat before, after;
	char err[1024] = "";

	make("b.vhdx", VDISK_FORMAT_VHDX, VDISK_TYPE_DYNAMIC, NULL);
	scribble("b.vhdx", bm, 1, 10);
	make("c.vhdx", VDISK_FORMAT_VHDX, 0, "b.vhdx");
	cm = malloc(SIZE);
	memcpy(cm, bm, SIZE);
	scribble("c.vhdx", cm, 2, 20);
	cr_assert_eq(stat(at("b.vhdx"), &before), 0);
	d = open_ok("c.vhdx", false);
	cr_assert_eq(vdisk_merge_begin(d, NULL, &mg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(access(at("c.vhdx.merge"), F_OK), 0, "no journal");
	cr_assert_eq(vdisk_merge_step(mg, err, sizeof(err)), 1, "one step did it all");
	vdisk_merge_cancel(mg);
	expect_model_open(d, cm);
	cr_assert_eq(vdisk_close(d), 0);
	cr_assert_eq(stat(at("b.vhdx"), &after), 0);
	cr_assert_eq(after.st_size, before.st_size, "the parent kept the copies");
	cr_assert_eq(access(at("c.vhdx.merge"), F_OK), -1, "the journal stays");
	expect_model("b.vhdx", bm);
	expect_model("c.vhdx", cm);
	free(bm);
	free(cm);
}

Test(merge, refusals)
{
	struct vdisk_merge_opts into = { 0 };
	char err[1024] = "";
	struct vdisk *d;
	int fd;

	make("b.vhdx", VDISK_FORMAT_VHDX, VDISK_TYPE_DYNAMIC, NULL);
	make("c.vhdx", VDISK_FORMAT_VHDX, 0, "b.vhdx");
	/* Not a child. */
	cr_assert_eq(vdisk_merge(at("b.vhdx"), NULL, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "not a differencing disk"), "%s", err);
	/* Not an ancestor. */
	make("x.vhdx", VDISK_FORMAT_VHDX, VDISK_TYPE_DYNAMIC, NULL);
	into.into = at("x.vhdx");
	cr_assert_eq(vdisk_merge(at("c.vhdx"), &into, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "is not an ancestor"), "%s", err);
	/* The parent in use by another process (here: another descriptor). */
	fd = open(at("b.vhdx"), O_RDONLY);
	cr_assert_eq(flock(fd, LOCK_SH), 0);
	cr_assert_eq(vdisk_merge(at("c.vhdx"), NULL, err, sizeof(err)), -EBUSY);
	cr_assert_not_null(strstr(err, "in use by another process"), "%s", err);
	close(fd);
	cr_assert_eq(access(at("c.vhdx.merge"), F_OK), -1);
	/* Into a fixed VHD: no BAT to switch. */
	make("v.vhd", VDISK_FORMAT_VHD, VDISK_TYPE_FIXED, NULL);
	make("cv.vhdx", VDISK_FORMAT_VHDX, 0, "v.vhd");
	cr_assert_eq(vdisk_merge(at("cv.vhdx"), NULL, err, sizeof(err)), -ENOTSUP);
	cr_assert_not_null(strstr(err, "a fixed VHD"), "%s", err);
	d = open_ok("c.vhdx", true);
	vdisk_close(d);
}
