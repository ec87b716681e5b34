// SPDX-License-Identifier: MIT
/*
 * "disk check" for VHD files: the open path in its checking mode, and
 * with --repair: the footer copy (or the footer) rewritten from the good
 * one, and BAT entries that point outside the file dropped (the block
 * reads as zeros, or as the parent's, afterwards).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhdx/vhd_state.h"

static int repair(struct vhd *v)
{
	int ret = 0;

	if (v->copy_stale && v->type != VHD_FIXED) {
		/* Both places get the footer that was used. */
		ret = file_pwrite(v->fd, v->footer, VHD_FOOTER_SIZE, 0);
		if (!ret)
			ret = file_pwrite(v->fd, v->footer, VHD_FOOTER_SIZE, v->footer_off);
		if (!ret && fdatasync(v->fd) < 0)
			ret = -errno;
	}
	if (!ret && v->type != VHD_FIXED)
		ret = vhd_commit_all(v);
	return ret;
}

/* Parse @path with @r; returns the number of problems or a -errno. */
static int check_pass(const char *path, struct vhdx_report *r)
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
	d->info.format = VDISK_FORMAT_VHD;
	d->path = strdup(path);
	if (r->repairing) {
		ret = io_engine_create(64, &d->eng);
		if (ret) {
			close(d->fd);
			free(d->path);
			free(d);
			return ret;
		}
		d->own_engine = true;
	}
	ret = vhd_open_fd(d, r);
	if (!ret && r->repairing)
		ret = repair(d->priv);
	if (ret < 0 && r->count == 0) {
		vdisk_close(d);
		return ret;
	}
	ret = vdisk_close(d);
	if (ret < 0 && r->repairing)
		return ret;
	return (int)r->count;
}

static void count_only(void *ctx, const char *problem)
{
	(void)ctx;
	(void)problem;
}

int vhd_check(const char *path, bool repair_it, vhdx_problem_fn report,
	      void *ctx, struct vhdx_check_result *res)
{
	struct vhdx_report r = { .checking = true, .fn = report, .ctx = ctx };
	int found, ret;

	memset(res, 0, sizeof(*res));
	found = check_pass(path, &r);
	if (found < 0)
		return found;
	res->problems = (unsigned int)found;
	if (!repair_it || found == 0)
		return 0;
	r = (struct vhdx_report){ .checking = true, .repairing = true,
				  .fn = count_only };
	ret = check_pass(path, &r);
	if (ret < 0)
		return ret;
	r = (struct vhdx_report){ .checking = true, .fn = count_only };
	ret = check_pass(path, &r);
	if (ret < 0)
		return ret;
	res->repaired = (unsigned int)found > (unsigned int)ret ?
			(unsigned int)(found - ret) : 0;
	return 0;
}
