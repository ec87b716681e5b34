// SPDX-License-Identifier: MIT
/* Raw disk images: the file is the disk, byte for byte. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhdx/internal.h"

/* Block devices and some filesystems punch no holes: zeros are written. */
static void raw_seg_done(struct io_op *op, int res)
{
	struct vdisk_seg *seg = (struct vdisk_seg *)op;
	struct vdisk_req *req = seg->req;

	if ((res == -EOPNOTSUPP || res == -EINVAL) &&
	    (req->op == VDISK_DISCARD || req->op == VDISK_WRITE_ZEROES))
		res = req->op == VDISK_DISCARD ? 0 :
		      file_write_zeros(req->disk->fd, req->offset, req->len);

	vdisk_seg_put(req->disk, seg);
	vdisk_req_put(req, res < 0 ? res : 0);
}

static int raw_submit(struct vdisk *d, struct vdisk_req *req)
{
	struct vdisk_seg *seg;
	int ret;

	vdisk_req_begin(d, req);
	seg = vdisk_seg_get(d, req, 0);
	if (!seg) {
		vdisk_req_launch(req, -ENOMEM);
		return 0;
	}
	seg->op.cb = raw_seg_done;
	if (req->op == VDISK_FLUSH)
		ret = io_engine_fsync(d->eng, &seg->op, d->fd, false, 0);
	else if (req->op == VDISK_DISCARD || req->op == VDISK_WRITE_ZEROES)
		/* A hole reads as zeros and gives the space back. */
		ret = io_engine_fallocate(d->eng, &seg->op, d->fd,
					  FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					  req->offset, req->len, 0);
	else
		ret = io_engine_rw(d->eng, &seg->op, d->fd,
				   req->op == VDISK_WRITE, req->iov,
				   req->iovcnt, req->offset, 0);
	if (ret) {
		vdisk_seg_put(d, seg);
		req->pending--;
	}
	vdisk_req_launch(req, ret);
	return 0;
}

static int raw_block_status(struct vdisk *d, uint64_t offset, uint64_t *len,
			    bool *allocated)
{
	off_t data = lseek(d->fd, (off_t)offset, SEEK_DATA);
	off_t end = (off_t)(offset + *len);

	if (data < 0 && errno == ENXIO) {
		/* No data from here to the end of the file. */
		*allocated = false;
		return 0;
	}
	if (data < 0) {
		/* SEEK_DATA unsupported: call everything data. */
		*allocated = true;
		return 0;
	}
	if ((uint64_t)data > offset) {
		*allocated = false;
		if (data < end)
			*len = (uint64_t)data - offset;
		return 0;
	}
	*allocated = true;
	{
		off_t hole = lseek(d->fd, (off_t)offset, SEEK_HOLE);

		if (hole > (off_t)offset && hole < end)
			*len = (uint64_t)hole - offset;
	}
	return 0;
}

static int raw_close(struct vdisk *d)
{
	if (d->read_only)
		return 0;
	return fdatasync(d->fd) < 0 ? -errno : 0;
}

static const struct vdisk_ops raw_ops = {
	.submit = raw_submit,
	.block_status = raw_block_status,
	.close = raw_close,
};

int raw_open_fd(struct vdisk *d, char *err, size_t errlen)
{
	struct stat st;
	uint32_t lbs = 512;

	if (fstat(d->fd, &st) < 0) {
		snprintf(err, errlen, "cannot stat raw image: %s", strerror(errno));
		return -errno;
	}
	d->ops = &raw_ops;
	d->info.format = VDISK_FORMAT_RAW;
	d->info.type = VDISK_TYPE_FIXED;
	if (S_ISBLK(st.st_mode)) {
		uint64_t size = 0;
		int ssz = 0;

		if (ioctl(d->fd, BLKGETSIZE64, &size) < 0) {
			snprintf(err, errlen, "cannot get block device size: %s",
				 strerror(errno));
			return -errno;
		}
		if (ioctl(d->fd, BLKSSZGET, &ssz) == 0 && ssz > 0)
			lbs = (uint32_t)ssz;
		d->info.virtual_size = size;
		d->info.file_size = size;
		d->info.allocated = size;
	} else {
		d->info.virtual_size = (uint64_t)st.st_size;
		d->info.file_size = (uint64_t)st.st_size;
		d->info.allocated = (uint64_t)st.st_blocks * 512;
	}
	d->info.logical_sector_size = lbs;
	d->info.physical_sector_size = lbs < 4096 ? 4096 : lbs;
	/* O_DIRECT needs whole logical blocks of the host device. */
	d->info.alignment = d->direct ? lbs : 1;
	return 0;
}
