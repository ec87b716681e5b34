// SPDX-License-Identifier: MIT
/*
 * fsvisor disk: create, inspect, check, grow, convert and benchmark
 * virtual disks, in the manner of qemu-img.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "util/util.h"
#include "vhdx/vhdx.h"

static const char disk_usage[] =
	"usage: fsvisor disk <command> ...\n"
	"  create [--format vhdx|vhd] [--type dynamic|fixed] [--block-size N]\n"
	"         [--sector-size 512|4096] [--log-size N] FILE SIZE\n"
	"  create [--format vhdx|vhd] --parent PARENT [--block-size N] FILE\n"
	"                                 a differencing child (.vhd: VHD, else VHDX)\n"
	"  help                           this text\n"
	"  info [--json] FILE             a differencing disk's chain too\n"
	"  check [--repair] FILE          exit 0: clean, 1: problems, 2: cannot check\n"
	"  resize FILE SIZE               grow a VHDX or raw disk (never shrinks)\n"
	"  convert [-O vhdx|vhd|raw] [--type dynamic|fixed] [--block-size N]\n"
	"          [--parent PARENT] SRC DST   copy, flattening a chain or keeping\n"
	"                                 it: a child of PARENT with what differs\n"
	"  merge [--into ANCESTOR] [--keep] CHILD\n"
	"                                 CHILD's data into its parent (or ANCESTOR);\n"
	"                                 CHILD (and the disks between) are removed\n"
	"  compact FILE                   free blocks of zeros, shrink a dynamic or\n"
	"                                 differencing disk's file\n"
	"  bench [--rw read|write|randread|randwrite] [--bs N] [--qd N] [--direct]\n"
	"        [--count N] [--step N] [--offset N] [--seed N] FILE\n";

static int usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fsvisor disk: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n%s", disk_usage);
	return EXIT_USAGE;
}

static int parse_size_arg(const char *what, const char *s, uint64_t *out)
{
	int ret = size_parse(s, out);

	if (ret)
		fprintf(stderr, "fsvisor disk: %s '%s' is not a size (like 512, 64K, 20G)%s\n",
			what, s, ret == -ERANGE ? ": too large" : "");
	return ret;
}

static int parse_u32_size(const char *what, const char *s, uint32_t *out)
{
	uint64_t v;

	if (parse_size_arg(what, s, &v))
		return -EINVAL;
	if (v > UINT32_MAX) {
		fprintf(stderr, "fsvisor disk: %s '%s' is too large\n", what, s);
		return -ERANGE;
	}
	*out = (uint32_t)v;
	return 0;
}

static int parse_type(const char *s, enum vdisk_type *t)
{
	if (strcmp(s, "dynamic") == 0)
		*t = VDISK_TYPE_DYNAMIC;
	else if (strcmp(s, "fixed") == 0)
		*t = VDISK_TYPE_FIXED;
	else
		return -EINVAL;
	return 0;
}

static const char *format_name(enum vdisk_format f)
{
	switch (f) {
	case VDISK_FORMAT_VHDX:
		return "vhdx";
	case VDISK_FORMAT_VHD:
		return "vhd";
	case VDISK_FORMAT_RAW:
		return "raw";
	case VDISK_FORMAT_AUTO:
		break;
	}
	return "?";
}

/* --format, or by the file's name: .vhd and .avhd are VHD, others VHDX. */
static int pick_format(const char *opt, const char *path, enum vdisk_format *f)
{
	const char *dot = strrchr(path, '.');

	if (opt && strcmp(opt, "vhdx") == 0)
		*f = VDISK_FORMAT_VHDX;
	else if (opt && strcmp(opt, "vhd") == 0)
		*f = VDISK_FORMAT_VHD;
	else if (opt)
		return -EINVAL;
	else if (dot && (strcasecmp(dot, ".vhd") == 0 || strcasecmp(dot, ".avhd") == 0))
		*f = VDISK_FORMAT_VHD;
	else
		*f = VDISK_FORMAT_VHDX;
	return 0;
}

static const char *type_name(enum vdisk_type t)
{
	switch (t) {
	case VDISK_TYPE_FIXED:
		return "fixed";
	case VDISK_TYPE_DYNAMIC:
		return "dynamic";
	case VDISK_TYPE_DIFFERENCING:
		return "differencing";
	}
	return "?";
}

/* ---- create -------------------------------------------------------- */

static int disk_create(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "type", required_argument, NULL, 't' },
		{ "block-size", required_argument, NULL, 'b' },
		{ "sector-size", required_argument, NULL, 's' },
		{ "physical-sector-size", required_argument, NULL, 'p' },
		{ "log-size", required_argument, NULL, 'l' },
		{ "parent", required_argument, NULL, 'P' },
		{ "format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vdisk_create_opts o = { .type = VDISK_TYPE_DYNAMIC };
	const char *format = NULL;
	bool type_given = false;
	char err[1024];
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "t:b:s:p:l:P:f:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			format = optarg;
			break;
		case 't':
			if (parse_type(optarg, &o.type))
				return usage_error("--type must be dynamic or fixed, not '%s'",
						   optarg);
			type_given = true;
			break;
		case 'P':
			o.parent = optarg;
			break;
		case 'b':
			if (parse_u32_size("block size", optarg, &o.block_size))
				return EXIT_USAGE;
			break;
		case 's':
			if (parse_u32_size("sector size", optarg, &o.logical_sector_size))
				return EXIT_USAGE;
			break;
		case 'p':
			if (parse_u32_size("physical sector size", optarg,
					   &o.physical_sector_size))
				return EXIT_USAGE;
			break;
		case 'l':
			if (parse_u32_size("log size", optarg, &o.log_size))
				return EXIT_USAGE;
			break;
		case 'h':
			printf("%s", disk_usage);
			return 0;
		default:
			return usage_error("bad option");
		}
	}
	if (o.parent) {
		if (type_given)
			return usage_error("a disk with --parent is a differencing disk: no --type");
		if (argc - optind != 1)
			return usage_error("create --parent needs FILE only: the size is the parent's");
		o.type = VDISK_TYPE_DIFFERENCING;
	} else {
		if (argc - optind != 2)
			return usage_error("create needs FILE and SIZE");
		if (parse_size_arg("size", argv[optind + 1], &o.size))
			return EXIT_USAGE;
	}
	if (pick_format(format, argv[optind], &o.format))
		return usage_error("--format must be vhdx or vhd, not '%s'", format);
	ret = vdisk_create(argv[optind], &o, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "fsvisor disk create: %s\n", err);
		return 1;
	}
	return 0;
}

/* ---- info ---------------------------------------------------------- */

#define MAX_LEVELS 64

/* The chain below a differencing disk, or why it cannot be opened. */
struct chain_view {
	struct vdisk_chain_level levels[MAX_LEVELS];
	unsigned int n;
	char err[1024];
	int ret;
};

static void chain_view(const char *path, struct chain_view *c)
{
	c->err[0] = 0;
	c->ret = vdisk_chain_list(path, c->levels, MAX_LEVELS, &c->n, c->err,
				  sizeof(c->err));
	if (c->n > MAX_LEVELS)
		c->n = MAX_LEVELS;
}

static void info_json(const char *path, const struct vdisk_info *in)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:i, s:i}",
		"filename", path,
		"format", format_name(in->format),
		"type", type_name(in->type),
		"virtual-size", (json_int_t)in->virtual_size,
		"file-size", (json_int_t)in->file_size,
		"allocated", (json_int_t)in->allocated,
		"logical-sector-size", (int)in->logical_sector_size,
		"physical-sector-size", (int)in->physical_sector_size);
	char *text;

	if (in->format != VDISK_FORMAT_RAW) {
		json_object_set_new(o, "block-size", json_integer(in->block_size));
		json_object_set_new(o, "disk-id", json_string(in->disk_id));
		/* What a child made of this disk links to. */
		json_object_set_new(o, in->format == VDISK_FORMAT_VHD ? "unique-id" :
				    "data-write-guid", json_string(in->identity));
	}
	if (in->format == VDISK_FORMAT_VHDX) {
		json_object_set_new(o, "log-size", json_integer(in->log_length));
		json_object_set_new(o, "log-dirty", json_boolean(in->log_replayed));
	}
	if (in->type == VDISK_TYPE_DIFFERENCING) {
		struct chain_view *c = calloc(1, sizeof(*c));
		json_t *chain = json_array();

		json_object_set_new(o, "parent", json_string(in->parent));
		if (c) {
			chain_view(path, c);
			for (unsigned int i = 1; i < c->n; i++)
				json_array_append_new(chain, json_pack("{s:s, s:s, s:s}",
					"filename", c->levels[i].path,
					"format", format_name(c->levels[i].format),
					"type", type_name(c->levels[i].type)));
			if (c->ret)
				json_object_set_new(o, "chain-error", json_string(c->err));
			else
				json_object_set_new(o, "chain-depth", json_integer(c->n));
		}
		json_object_set_new(o, "backing-chain", chain);
		free(c);
	}
	text = json_dumps(o, JSON_INDENT(2));
	printf("%s\n", text);
	free(text);
	json_decref(o);
}

static void info_text(const char *path, const struct vdisk_info *in)
{
	char a[32], b[32];

	printf("file:          %s\n", path);
	printf("format:        %s\n", format_name(in->format));
	if (in->format != VDISK_FORMAT_RAW)
		printf("type:          %s\n", type_name(in->type));
	printf("virtual size:  %s (%" PRIu64 " bytes)\n",
	       size_format_human(in->virtual_size, a, sizeof(a)), in->virtual_size);
	printf("file size:     %s (%" PRIu64 " bytes)\n",
	       size_format_human(in->file_size, a, sizeof(a)), in->file_size);
	printf("allocated:     %s\n", size_format_human(in->allocated, a, sizeof(a)));
	if (in->format == VDISK_FORMAT_RAW)
		return;
	if (in->block_size)
		printf("block size:    %s\n", size_format_human(in->block_size, a, sizeof(a)));
	printf("sector size:   %u logical, %u physical\n",
	       in->logical_sector_size, in->physical_sector_size);
	printf("disk id:       %s\n", in->disk_id);
	if (in->format == VDISK_FORMAT_VHDX)
		printf("log:           %s, %s\n",
		       size_format_human(in->log_length, b, sizeof(b)),
		       in->log_replayed ?
		       "dirty (replayed in memory here; a read-write open replays it)" :
		       "clean");
	if (in->type == VDISK_TYPE_DIFFERENCING) {
		struct chain_view *c = calloc(1, sizeof(*c));

		printf("parent:        %s\n", in->parent);
		if (!c)
			return;
		chain_view(path, c);
		for (unsigned int i = 1; i < c->n; i++)
			printf("chain %-7u %s (%s %s)\n", i, c->levels[i].path,
			       format_name(c->levels[i].format),
			       type_name(c->levels[i].type));
		if (c->ret)
			printf("chain:         cannot be opened: %s\n", c->err);
		free(c);
	}
}

static int disk_info(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const struct vdisk_info *in;
	struct vdisk *d;
	bool json = false;
	char err[1024];
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "jh", longopts, NULL)) != -1) {
		if (c == 'j')
			json = true;
		else if (c == 'h')
			return printf("%s", disk_usage) < 0;
		else
			return usage_error("bad option");
	}
	if (argc - optind != 1)
		return usage_error("info needs FILE");
	ret = vdisk_open(argv[optind], &(struct vdisk_open_opts){ .no_io = true },
			 &d, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "fsvisor disk info: %s\n", err);
		return 1;
	}
	in = vdisk_info(d);
	if (json)
		info_json(argv[optind], in);
	else
		info_text(argv[optind], in);
	vdisk_close(d);
	return 0;
}

/* ---- check --------------------------------------------------------- */

static void print_problem(void *ctx, const char *problem)
{
	(void)ctx;
	printf("problem: %s\n", problem);
}

static int disk_check(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "repair", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vhdx_check_result res;
	bool repair = false;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "rh", longopts, NULL)) != -1) {
		if (c == 'r')
			repair = true;
		else if (c == 'h')
			return printf("%s", disk_usage) < 0;
		else
			return usage_error("bad option");
	}
	if (argc - optind != 1)
		return usage_error("check needs FILE");
	ret = vdisk_check(argv[optind], repair, print_problem, NULL, &res);
	if (ret) {
		fprintf(stderr, "fsvisor disk check: cannot check %s: %s\n",
			argv[optind], strerror(-ret));
		return 2;
	}
	if (res.problems == 0) {
		printf("No problems found.\n");
		return 0;
	}
	printf("%u problem%s found", res.problems, res.problems == 1 ? "" : "s");
	if (repair)
		printf(", %u repaired", res.repaired);
	printf(".\n");
	return repair && res.repaired == res.problems ? 0 : 1;
}

/* ---- resize -------------------------------------------------------- */

static int disk_resize(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	uint64_t size;
	char err[512];
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == 'h')
			return printf("%s", disk_usage) < 0;
		return usage_error("bad option");
	}
	if (argc - optind != 2)
		return usage_error("resize needs FILE and SIZE");
	if (parse_size_arg("size", argv[optind + 1], &size))
		return EXIT_USAGE;
	if (vdisk_resize(argv[optind], size, err, sizeof(err))) {
		fprintf(stderr, "fsvisor disk resize: %s\n", err);
		return 1;
	}
	return 0;
}

/* ---- progress ------------------------------------------------------ */

/* A bar on stderr when it is a terminal; nothing otherwise. */
struct bar {
	const char *what;
	int last;
};

static bool bar_show(void *ctx, uint64_t done, uint64_t total)
{
	struct bar *b = ctx;
	int pct = total ? (int)(done * 100 / total) : 100;
	char cells[41];

	if (pct == b->last)
		return true;
	b->last = pct;
	for (int i = 0; i < 40; i++)
		cells[i] = i < pct * 40 / 100 ? '#' : '.';
	cells[40] = 0;
	fprintf(stderr, "\r%s [%s] %3d%%", b->what, cells, pct);
	if (done >= total)
		fprintf(stderr, "\n");
	return true;
}

/* The callback for a long operation: the bar on a terminal, else none. */
static vdisk_progress_fn progress_for(struct bar *b, const char *what)
{
	b->what = what;
	b->last = -1;
	return isatty(STDERR_FILENO) ? bar_show : NULL;
}

/* After a failure, a bar left open gets its line ended. */
static void bar_end(const struct bar *b)
{
	if (b->last >= 0 && b->last < 100)
		fprintf(stderr, "\n");
}

/* ---- convert ------------------------------------------------------- */

static int disk_convert(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "output-format", required_argument, NULL, 'O' },
		{ "type", required_argument, NULL, 't' },
		{ "block-size", required_argument, NULL, 'b' },
		{ "parent", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vdisk_convert_opts o = { .type = VDISK_TYPE_DYNAMIC };
	const char *fmt = NULL;
	struct bar bar;
	char err[1024];
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "O:t:b:P:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'O':
			fmt = optarg;
			if (strcmp(fmt, "vhdx") && strcmp(fmt, "raw") && strcmp(fmt, "vhd"))
				return usage_error("-O must be vhdx, vhd or raw, not '%s'", fmt);
			break;
		case 't':
			if (strcmp(optarg, "differencing") == 0)
				o.type = VDISK_TYPE_DIFFERENCING;
			else if (parse_type(optarg, &o.type))
				return usage_error("--type must be dynamic, fixed or differencing");
			break;
		case 'b':
			if (parse_u32_size("block size", optarg, &o.block_size))
				return EXIT_USAGE;
			break;
		case 'P':
			o.parent = optarg;
			break;
		case 'h':
			return printf("%s", disk_usage) < 0;
		default:
			return usage_error("bad option");
		}
	}
	if (argc - optind != 2)
		return usage_error("convert needs SRC and DST");
	if (fmt && strcmp(fmt, "raw") == 0)
		o.format = VDISK_FORMAT_RAW;
	else if (pick_format(fmt, argv[optind + 1], &o.format))
		return EXIT_USAGE;
	if (o.type == VDISK_TYPE_DIFFERENCING && !o.parent)
		return usage_error("--type differencing needs --parent");
	if (o.parent)
		o.type = VDISK_TYPE_DIFFERENCING;
	if (o.parent && o.format == VDISK_FORMAT_RAW)
		return usage_error("a raw file has no parent: no --parent with -O raw");
	o.progress = progress_for(&bar, "convert");
	o.progress_ctx = &bar;
	ret = vdisk_convert(argv[optind], argv[optind + 1], &o, err, sizeof(err));
	if (ret) {
		bar_end(&bar);
		fprintf(stderr, "fsvisor disk convert: %s\n", err);
		return 1;
	}
	return 0;
}

/* ---- merge ---------------------------------------------------------- */

static int disk_merge(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "into", required_argument, NULL, 'i' },
		{ "keep", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vdisk_merge_opts o = { 0 };
	struct bar bar;
	char err[1024];
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "i:kh", longopts, NULL)) != -1) {
		switch (c) {
		case 'i':
			o.into = optarg;
			break;
		case 'k':
			o.keep_files = true;
			break;
		case 'h':
			return printf("%s", disk_usage) < 0;
		default:
			return usage_error("bad option");
		}
	}
	if (argc - optind != 1)
		return usage_error("merge needs CHILD");
	o.progress = progress_for(&bar, "merge");
	o.progress_ctx = &bar;
	if (vdisk_merge(argv[optind], &o, err, sizeof(err))) {
		bar_end(&bar);
		fprintf(stderr, "fsvisor disk merge: %s\n", err);
		return 1;
	}
	return 0;
}

/* ---- compact -------------------------------------------------------- */

static int disk_compact(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vdisk_compact_opts o = { 0 };
	struct vdisk_compact_result res;
	struct bar bar;
	char err[1024], a[32], b[32];
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == 'h')
			return printf("%s", disk_usage) < 0;
		return usage_error("bad option");
	}
	if (argc - optind != 1)
		return usage_error("compact needs FILE");
	o.progress = progress_for(&bar, "compact");
	o.progress_ctx = &bar;
	if (vdisk_compact(argv[optind], &o, &res, err, sizeof(err))) {
		bar_end(&bar);
		fprintf(stderr, "fsvisor disk compact: %s\n", err);
		return 1;
	}
	if (isatty(STDOUT_FILENO))
		printf("%s -> %s: %" PRIu64 " blocks of zeros freed, %" PRIu64 " moved\n",
		       size_format_human(res.file_size_before, a, sizeof(a)),
		       size_format_human(res.file_size_after, b, sizeof(b)),
		       res.freed_blocks, res.moved_blocks);
	return 0;
}

/* ---- bench --------------------------------------------------------- */

struct bench {
	struct vdisk *d;
	bool write, random;
	uint64_t bs, step, span, start, next_off, count, issued, completed;
	uint64_t rng;
	int error;
};

struct bench_slot {
	struct vdisk_req req;
	struct iovec iov;
	struct bench *b;
};

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void bench_issue(struct bench_slot *s);

static void bench_done(struct vdisk_req *req, int res)
{
	struct bench_slot *s = (struct bench_slot *)req;
	struct bench *b = s->b;

	if (res && !b->error)
		b->error = res;
	b->completed++;
	if (b->issued < b->count && !b->error)
		bench_issue(s);
}

static void bench_issue(struct bench_slot *s)
{
	struct bench *b = s->b;
	uint64_t off;
	int ret;

	if (b->random) {
		off = (xorshift(&b->rng) % (b->span / b->bs)) * b->bs;
	} else {
		/* Like qemu-img bench: walk with a step, wrap at the end. */
		if (b->next_off + b->bs > b->span)
			b->next_off = b->start;
		off = b->next_off;
		b->next_off += b->step;
	}
	s->req.op = b->write ? VDISK_WRITE : VDISK_READ;
	s->req.offset = off;
	s->req.iov = &s->iov;
	s->req.iovcnt = 1;
	s->req.done = bench_done;
	b->issued++;
	ret = vdisk_submit(b->d, &s->req);
	if (ret) {
		b->error = ret;
		b->completed++;
	}
}

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int disk_bench(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "rw", required_argument, NULL, 'r' },
		{ "bs", required_argument, NULL, 'b' },
		{ "qd", required_argument, NULL, 'q' },
		{ "direct", no_argument, NULL, 'd' },
		{ "count", required_argument, NULL, 'c' },
		{ "step", required_argument, NULL, 's' },
		{ "seed", required_argument, NULL, 'S' },
		{ "offset", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct bench b = { .bs = 4096, .count = 75000, .rng = 0x9e3779b97f4a7c15ULL };
	struct vdisk_open_opts oo = { 0 };
	const char *rw = "read";
	struct bench_slot *slots;
	uint64_t qd = 64, v;
	char err[512];
	double t0, t;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "r:b:q:dc:s:S:o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'r':
			rw = optarg;
			break;
		case 'b':
			if (parse_size_arg("block size", optarg, &b.bs))
				return EXIT_USAGE;
			break;
		case 'q':
			if (parse_size_arg("queue depth", optarg, &qd))
				return EXIT_USAGE;
			break;
		case 'd':
			oo.direct = true;
			break;
		case 'c':
			if (parse_size_arg("count", optarg, &b.count))
				return EXIT_USAGE;
			break;
		case 's':
			if (parse_size_arg("step", optarg, &b.step))
				return EXIT_USAGE;
			break;
		case 'S':
			if (parse_size_arg("seed", optarg, &v))
				return EXIT_USAGE;
			b.rng = v ? v : 1;
			break;
		case 'o':
			if (parse_size_arg("offset", optarg, &b.start))
				return EXIT_USAGE;
			break;
		case 'h':
			return printf("%s", disk_usage) < 0;
		default:
			return usage_error("bad option");
		}
	}
	if (argc - optind != 1)
		return usage_error("bench needs FILE");
	if (strcmp(rw, "read") == 0) {
	} else if (strcmp(rw, "write") == 0) {
		b.write = true;
	} else if (strcmp(rw, "randread") == 0) {
		b.random = true;
	} else if (strcmp(rw, "randwrite") == 0) {
		b.write = b.random = true;
	} else {
		return usage_error("--rw must be read, write, randread or randwrite");
	}
	if (qd == 0 || qd > 1024 || b.bs == 0 || b.bs > 64 * 1024 * 1024 ||
	    b.count == 0)
		return usage_error("--qd must be 1-1024, --bs up to 64M, --count at least 1");
	if (!b.step)
		b.step = b.bs;
	oo.read_only = !b.write;
	ret = io_engine_create((unsigned int)qd * 2, &oo.engine);
	if (ret) {
		fprintf(stderr, "fsvisor disk bench: io_uring: %s\n", strerror(-ret));
		return 1;
	}
	ret = vdisk_open(argv[optind], &oo, &b.d, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "fsvisor disk bench: %s\n", err);
		io_engine_destroy(oo.engine);
		return 1;
	}
	b.span = vdisk_info(b.d)->virtual_size;
	b.next_off = b.start;
	if (b.bs > b.span || b.bs % vdisk_info(b.d)->alignment ||
	    b.start > b.span - b.bs || b.start % vdisk_info(b.d)->alignment) {
		fprintf(stderr, "fsvisor disk bench: block size must fit the disk and be a multiple of %u\n",
			vdisk_info(b.d)->alignment);
		vdisk_close(b.d);
		io_engine_destroy(oo.engine);
		return EXIT_USAGE;
	}

	slots = calloc(qd, sizeof(*slots));
	for (uint64_t i = 0; slots && i < qd; i++) {
		if (posix_memalign(&slots[i].iov.iov_base, 4096, b.bs)) {
			ret = -ENOMEM;
			break;
		}
		memset(slots[i].iov.iov_base, 0xA5 ^ (int)i, b.bs);
		slots[i].iov.iov_len = b.bs;
		slots[i].b = &b;
	}
	t0 = now_sec();
	for (uint64_t i = 0; slots && i < qd && b.issued < b.count; i++)
		bench_issue(&slots[i]);
	while (b.completed < b.issued && !ret) {
		ret = io_engine_run(oo.engine, 1);
		ret = ret < 0 ? ret : 0;
	}
	if (!ret && b.write)
		ret = vdisk_flush(b.d);
	t = now_sec() - t0;
	if (!ret)
		ret = b.error;
	if (!ret)
		ret = vdisk_close(b.d);
	else
		vdisk_close(b.d);
	for (uint64_t i = 0; slots && i < qd; i++)
		free(slots[i].iov.iov_base);
	free(slots);
	io_engine_destroy(oo.engine);
	if (ret) {
		fprintf(stderr, "fsvisor disk bench: %s\n", strerror(-ret));
		return 1;
	}
	printf("%s: %" PRIu64 " requests of %" PRIu64 " bytes, depth %" PRIu64
	       "%s: %.3f s\n", rw, b.count, b.bs, qd, oo.direct ? ", O_DIRECT" : "", t);
	printf("iops=%.0f mib_per_s=%.1f seconds=%.3f\n", (double)b.count / t,
	       (double)b.count * (double)b.bs / t / (1024.0 * 1024.0), t);
	return 0;
}

int cmd_disk(int argc, char **argv)
{
	static const struct command sub[] = {
		{ "create", "create a VHDX file", disk_create },
		{ "info", "describe a disk image", disk_info },
		{ "check", "check (and repair) a VHDX file", disk_check },
		{ "resize", "grow a disk", disk_resize },
		{ "convert", "copy an image to VHDX, VHD or raw", disk_convert },
		{ "merge", "merge a differencing disk into its parent", disk_merge },
		{ "compact", "free blocks of zeros and shrink the file", disk_compact },
		{ "bench", "measure I/O rates", disk_bench },
	};

	if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		printf("%s", disk_usage);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(sub); i++)
		if (strcmp(argv[1], sub[i].name) == 0)
			return sub[i].run(argc - 1, argv + 1);
	return usage_error("unknown command '%s'", argv[1]);
}
