// SPDX-License-Identifier: MIT
/*
 * "disk check": the open path in a mode that reports every problem and
 * keeps going, and, with --repair, fixes what can be fixed safely.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhdx/state.h"

static void count_only(void *ctx, const char *problem)
{
	(void)ctx;
	(void)problem;
}

/* Parse @path with @r; returns the number of problems or a -errno. */
static int check_pass(const char *path, struct vhdx_report *r, bool *log_dirty)
{
	struct vdisk *d = calloc(1, sizeof(*d));
	int ret;

	if (!d)
		return -ENOMEM;
	d->fd = open(path, (r->repairing ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (d->fd < 0) {
		ret = -errno;
		free(d);
		return ret;
	}
	d->read_only = !r->repairing;
	d->no_io = !r->repairing;
	d->info.format = VDISK_FORMAT_VHDX;
	if (r->repairing) {
		ret = io_engine_create(64, &d->eng);
		if (ret) {
			close(d->fd);
			free(d);
			return ret;
		}
		d->own_engine = true;
	}
	ret = vhdx_open_fd(d, r);
	if (ret == -ENOTSUP)
		ret = 0;	/* differencing: the structure was still checked */
	if (d->priv) {
		struct vhdx *v = d->priv;

		if (log_dirty)
			*log_dirty = !guid_is_zero(&v->log_guid);
	}
	if (ret < 0 && r->count == 0) {
		/* Not even the identifier could be read: not a problem list. */
		vdisk_close(d);
		return ret;
	}
	ret = vdisk_close(d);
	if (ret < 0 && r->repairing)
		return ret;
	return (int)r->count;
}

int vhdx_check(const char *path, bool repair, vhdx_problem_fn report,
	       void *ctx, struct vhdx_check_result *res)
{
	struct vhdx_report r = { .checking = true, .fn = report, .ctx = ctx };
	int found, ret;

	memset(res, 0, sizeof(*res));
	found = check_pass(path, &r, &res->log_dirty);
	if (found < 0)
		return found;
	res->problems = (unsigned int)found;
	if (!repair || found == 0)
		return 0;

	r = (struct vhdx_report){ .checking = true, .repairing = true,
				  .fn = count_only };
	ret = check_pass(path, &r, NULL);
	if (ret < 0)
		return ret;
	r = (struct vhdx_report){ .checking = true, .fn = count_only };
	ret = check_pass(path, &r, NULL);
	if (ret < 0)
		return ret;
	res->repaired = (unsigned int)found > (unsigned int)ret ?
			(unsigned int)(found - ret) : 0;
	return 0;
}

/* The chain of a differencing disk: one problem if it cannot be opened. */
static void check_chain(const char *path, vhdx_problem_fn report, void *ctx,
			struct vhdx_check_result *res)
{
	struct vdisk_chain_level lv;
	char err[1024], msg[1100];
	unsigned int n;

	if (vdisk_chain_list(path, &lv, 1, &n, err, sizeof(err)) == 0)
		return;
	snprintf(msg, sizeof(msg), "the parent chain cannot be used: %s", err);
	res->problems++;
	if (report)
		report(ctx, msg);
}

int vdisk_check(const char *path, bool repair, vhdx_problem_fn report,
		void *ctx, struct vhdx_check_result *res)
{
	enum vdisk_format fmt;
	struct stat st;
	int fd, ret;

	memset(res, 0, sizeof(*res));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = fstat(fd, &st) < 0 ? -errno :
	      vdisk_detect_format(fd, (uint64_t)st.st_size, &fmt);
	close(fd);
	if (ret)
		return ret;
	/* Anything that is not a VHD is checked as the VHDX it should be. */
	if (fmt == VDISK_FORMAT_VHD)
		ret = vhd_check(path, repair, report, ctx, res);
	else
		ret = vhdx_check(path, repair, report, ctx, res);
	if (ret == 0)
		check_chain(path, report, ctx, res);
	return ret;
}
