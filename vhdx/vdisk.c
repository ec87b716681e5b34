// SPDX-License-Identifier: MIT
/*
 * The format-independent side of virtual disks: opening, request checks
 * and bookkeeping, and the synchronous API built on the asynchronous one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhdx/state.h"
#include "vhdx/test_hooks.h"
#include "vhdx/vhd_format.h"

#define DEFAULT_ENGINE_DEPTH 256
/* Synchronous requests are cut into pieces of at most this size. */
#define SYNC_CHUNK (256 * MiB)

void (*vhdx_step_hook)(const char *step);
int (*vhdx_reserve_hook)(int fd, uint64_t off, uint64_t len);

void vhdx_step(const char *what)
{
	if (vhdx_step_hook)
		vhdx_step_hook(what);
}

void *vhdx_alloc(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, VHDX_SECTOR, len ? len : VHDX_SECTOR))
		return NULL;
	return p;
}

int file_pread(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done,
				  (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) {
			memset((char *)buf + done, 0, len - done);
			break;
		}
		done += (size_t)n;
	}
	return 0;
}

int file_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done,
				   (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

int file_write_zeros(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[64 * 1024] __attribute__((aligned(4096)));

	while (len) {
		size_t n = len > sizeof(zeros) ? sizeof(zeros) : len;
		int ret = file_pwrite(fd, zeros, n, off);

		if (ret)
			return ret;
		off += n;
		len -= n;
	}
	return 0;
}

static int report_v(struct vhdx_report *r, bool fatal, const char *fmt,
		    va_list ap)
{
	char msg[512];

	if (!r->checking && !fatal)
		return 0;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	r->count++;
	if (r->fn)
		r->fn(r->ctx, msg);
	if (r->checking)
		return 0;
	if (r->err && r->count == 1)
		snprintf(r->err, r->errlen, "%s", msg);
	return -EINVAL;
}

int vhdx_problem(struct vhdx_report *r, const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = report_v(r, true, fmt, ap);
	va_end(ap);
	return ret;
}

int vhdx_fail(struct vhdx_report *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report_v(r, true, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

void vhdx_warn(struct vhdx_report *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report_v(r, false, fmt, ap);
	va_end(ap);
}

/* ---- request bookkeeping ------------------------------------------- */

static void req_guard_done(struct io_op *op, int res)
{
	struct vdisk_req *req = (struct vdisk_req *)((char *)op -
		offsetof(struct vdisk_req, io));

	vdisk_req_put(req, res);
}

void vdisk_req_begin(struct vdisk *d, struct vdisk_req *req)
{
	req->disk = d;
	req->pending = 1;	/* dropped by vdisk_req_launch() */
	req->error = 0;
	d->active++;
}

void vdisk_req_put(struct vdisk_req *req, int res)
{
	if (res < 0 && !req->error)
		req->error = res;
	if (--req->pending == 0) {
		struct vdisk *d = req->disk;

		d->active--;
		/*
		 * A merge copies what the disk holds; a change that has landed
		 * (not one merely submitted) is what it must copy again.
		 */
		if (d->merge && req->op != VDISK_READ && req->op != VDISK_FLUSH)
			merge_note_write(d->merge, req->offset, req->len);
		req->done(req, req->error);
	}
}

void vdisk_req_launch(struct vdisk_req *req, int res)
{
	req->io.cb = req_guard_done;
	io_engine_defer(req->disk->eng, &req->io, res);
}

struct vdisk_seg *vdisk_seg_get(struct vdisk *d, struct vdisk_req *req,
				unsigned int iovcnt)
{
	struct vdisk_seg *seg = d->seg_free;
	unsigned int cap = iovcnt < 4 ? 4 : iovcnt;

	if (seg && seg->cap >= iovcnt) {
		d->seg_free = seg->next_free;
	} else {
		seg = malloc(sizeof(*seg) + sizeof(struct iovec) * cap);
		if (!seg)
			return NULL;
		seg->cap = cap;
	}
	seg->req = req;
	seg->level = d;
	seg->reveal = false;
	seg->iovcnt = 0;
	seg->next_free = NULL;
	req->pending++;
	return seg;
}

void vdisk_seg_put(struct vdisk *d, struct vdisk_seg *seg)
{
	seg->next_free = d->seg_free;
	d->seg_free = seg;
}

/* ---- open and close ------------------------------------------------ */

/* VHDX by its identifier, VHD by its footer (or the copy at 0), else raw. */
int vdisk_detect_format(int fd, uint64_t size, enum vdisk_format *fmt)
{
	uint8_t *buf = vhdx_alloc(VHDX_SECTOR);
	int ret;

	if (!buf)
		return -ENOMEM;
	ret = file_pread(fd, buf, VHDX_SECTOR, 0);
	*fmt = VDISK_FORMAT_RAW;
	if (!ret && memcmp(buf, VHDX_SIG_FILE, 8) == 0) {
		*fmt = VDISK_FORMAT_VHDX;
	} else if (!ret && memcmp(buf, VHD_COOKIE, 8) == 0) {
		*fmt = VDISK_FORMAT_VHD;
	} else if (!ret && size >= VHD_FOOTER_SIZE) {
		ret = file_pread(fd, buf, VHD_FOOTER_SIZE, size - VHD_FOOTER_SIZE);
		if (!ret && memcmp(buf, VHD_COOKIE, 8) == 0)
			*fmt = VDISK_FORMAT_VHD;
	}
	free(buf);
	return ret;
}

int vdisk_add_parent_ref(struct vdisk *d, const char *key,
			 enum parent_kind kind, const char *value)
{
	struct parent_ref *r;

	if (d->nrefs >= MAX_PARENT_REFS)
		return 0;
	r = &d->refs[d->nrefs];
	r->value = strdup(value);
	if (!r->value)
		return -ENOMEM;
	r->key = key;
	r->kind = kind;
	d->nrefs++;
	return 0;
}

/* Free what an open made, after the format state is gone. */
static void vdisk_free(struct vdisk *d)
{
	while (d->seg_free) {
		struct vdisk_seg *s = d->seg_free;

		d->seg_free = s->next_free;
		free(s);
	}
	for (unsigned int i = 0; i < d->nrefs; i++)
		free(d->refs[i].value);
	free(d->path);
	free(d);
}

int vdisk_open(const char *path, const struct vdisk_open_opts *opts,
	       struct vdisk **out, char *err, size_t errlen)
{
	struct chain_ctx cc = { .n = 0 };

	return vdisk_open_in_chain(path, opts, &cc, out, err, errlen);
}

/* One writer or several readers per file, across processes. */
static int take_lock(struct vdisk *d, const char *path, bool shared,
		     char *err, size_t errlen)
{
	int ret = 0;

	/*
	 * A disk that a VM has open for writing cannot be opened again, by
	 * us or by `fsvisor disk`, until it is closed.  Structure-only opens
	 * (info, check) do not take part.  A process killed with requests in
	 * flight holds its files until the kernel has torn its io_uring
	 * down, a moment after it died: wait up to a second for that.
	 */
	for (int tries = 0; tries < 100; tries++) {
		ret = flock(d->fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0 ?
		      -errno : 0;
		if (ret != -EWOULDBLOCK)
			break;
		usleep(10000);
	}
	if (ret) {
		ret = ret == -EWOULDBLOCK ? -EBUSY : ret;
		snprintf(err, errlen, "%s is in use by another process (a running VM?)%s%s", path,
			 ret == -EBUSY ? "" : ": ", ret == -EBUSY ? "" : strerror(-ret));
	}
	return ret;
}

static int open_format(struct vdisk *d, char *err, size_t errlen)
{
	struct vhdx_report r = { .err = err, .errlen = errlen };

	switch (d->info.format) {
	case VDISK_FORMAT_VHDX:
		return vhdx_open_fd(d, &r);
	case VDISK_FORMAT_VHD:
		return vhd_open_fd(d, &r);
	default:
		return raw_open_fd(d, err, errlen);
	}
}

int vdisk_open_in_chain(const char *path, const struct vdisk_open_opts *opts,
			struct chain_ctx *cc, struct vdisk **out, char *err,
			size_t errlen)
{
	static const struct vdisk_open_opts defaults;
	struct vdisk *d;
	struct stat st;
	int flags, ret;

	if (!opts)
		opts = &defaults;
	flags = (opts->read_only || opts->no_io ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	if (opts->direct)
		flags |= O_DIRECT;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->path = strdup(path);
	d->fd = open(path, flags);
	if (!d->path || d->fd < 0) {
		ret = d->path ? -errno : -ENOMEM;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(-ret));
		if (d->fd >= 0)
			close(d->fd);
		free(d->path);
		free(d);
		return ret;
	}
	if (fstat(d->fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
		snprintf(err, errlen, "%s is not a regular file or block device",
			 path);
		ret = -EINVAL;
		goto fail;
	}
	d->dev = st.st_dev;
	d->ino = st.st_ino;
	if (cc->n < VDISK_MAX_CHAIN) {
		cc->dev[cc->n] = st.st_dev;
		cc->ino[cc->n++] = st.st_ino;
	}
	if (!opts->no_io) {
		ret = take_lock(d, path, opts->read_only, err, errlen);
		if (ret)
			goto fail;
	}
	d->held_tail = &d->held;
	d->read_only = opts->read_only || opts->no_io;
	d->direct = opts->direct;
	d->no_io = opts->no_io;
	d->info.format = opts->format;
	d->info.chain_depth = 1;
	if (d->info.format == VDISK_FORMAT_AUTO) {
		ret = vdisk_detect_format(d->fd, (uint64_t)st.st_size, &d->info.format);
		if (ret) {
			snprintf(err, errlen, "cannot read %s: %s", path,
				 strerror(-ret));
			goto fail;
		}
	}

	if (opts->engine) {
		d->eng = opts->engine;
	} else if (!d->no_io) {
		ret = io_engine_create(DEFAULT_ENGINE_DEPTH, &d->eng);
		if (ret) {
			snprintf(err, errlen, "cannot set up io_uring: %s",
				 strerror(-ret));
			goto fail;
		}
		d->own_engine = true;
	}

	ret = open_format(d, err, errlen);
	if (ret)
		goto fail;
	if (d->info.type == VDISK_TYPE_DIFFERENCING && (!d->no_io || cc->parents)) {
		ret = chain_open_parent(d, opts, cc, err, errlen);
		if (ret) {
			vdisk_close(d);
			return ret;
		}
	}
	*out = d;
	return 0;

fail:
	if (d->own_engine)
		io_engine_destroy(d->eng);
	close(d->fd);
	vdisk_free(d);
	return ret;
}

int vdisk_close(struct vdisk *d)
{
	int ret = 0, pret;

	if (!d)
		return 0;
	if (d->eng) {
		while (io_engine_inflight(d->eng))
			if (io_engine_run(d->eng, 1) < 0)
				break;
	}
	if (d->ops && d->ops->close)
		ret = d->ops->close(d);
	pret = vdisk_close(d->parent);
	if (pret && !ret)
		ret = pret;
	if (d->own_engine)
		io_engine_destroy(d->eng);
	if (close(d->fd) < 0 && !ret)
		ret = -errno;
	vdisk_free(d);
	return ret;
}

struct vdisk *vdisk_parent(struct vdisk *d)
{
	return d->parent;
}

const struct vdisk_info *vdisk_info(struct vdisk *d)
{
	return &d->info;
}

struct io_engine *vdisk_engine(struct vdisk *d)
{
	return d->eng;
}

int vdisk_submit(struct vdisk *d, struct vdisk_req *req)
{
	uint64_t len;

	if (d->no_io)
		return -EOPNOTSUPP;
	if (req->op == VDISK_FLUSH) {
		req->len = 0;
		if (d->read_only)
			return -EROFS;
		if (d->hold) {
			req->next = NULL;
			*d->held_tail = req;
			d->held_tail = &req->next;
			return 0;
		}
		return d->ops->submit(d, req);
	}
	if (req->op != VDISK_READ && req->op != VDISK_WRITE &&
	    req->op != VDISK_DISCARD && req->op != VDISK_WRITE_ZEROES)
		return -EINVAL;
	if (req->op != VDISK_READ && d->read_only)
		return -EROFS;
	if (req->op == VDISK_DISCARD || req->op == VDISK_WRITE_ZEROES)
		len = req->len;
	else
		len = iov_length(req->iov, req->iovcnt);
	if (req->offset > d->info.virtual_size ||
	    len > d->info.virtual_size - req->offset)
		return -EINVAL;
	if ((req->offset | len) % d->info.alignment)
		return -EINVAL;
	req->len = len;
	if (d->hold) {
		/* A merge is switching disks: this one goes after. */
		req->next = NULL;
		*d->held_tail = req;
		d->held_tail = &req->next;
		return 0;
	}
	return d->ops->submit(d, req);
}

void vdisk_release_held(struct vdisk *d)
{
	struct vdisk_req *list = d->held;

	d->hold = false;
	d->held = NULL;
	d->held_tail = &d->held;
	while (list) {
		struct vdisk_req *req = list;
		int ret;

		list = req->next;
		ret = vdisk_submit(d, req);
		if (ret)
			req->done(req, ret);	/* its submitter was told 0 */
	}
}

int vdisk_block_status(struct vdisk *d, uint64_t offset, uint64_t *len,
		       bool *allocated)
{
	if (offset >= d->info.virtual_size) {
		*len = 0;
		*allocated = false;
		return 0;
	}
	if (*len > d->info.virtual_size - offset)
		*len = d->info.virtual_size - offset;
	if (d->ops->block_status)
		return d->ops->block_status(d, offset, len, allocated);
	/* A structure-only open has no bitmaps and no parents to ask. */
	if (d->no_io)
		return -EOPNOTSUPP;
	return chain_block_status(d, offset, len, allocated);
}

/* ---- the synchronous API ------------------------------------------- */

struct sync_wait {
	bool done;
	int result;
};

static void sync_done(struct vdisk_req *req, int result)
{
	struct sync_wait *w = req->opaque;

	w->done = true;
	w->result = result;
}

static int sync_io(struct vdisk *d, enum vdisk_op op, void *buf, size_t len,
		   uint64_t offset)
{
	struct sync_wait w = { 0 };
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct vdisk_req req = {
		.op = op, .offset = offset, .iov = &iov, .iovcnt = 1,
		.done = sync_done, .opaque = &w,
	};
	int ret;

	ret = vdisk_submit(d, &req);
	if (ret)
		return ret;
	while (!w.done) {
		ret = io_engine_run(d->eng, 1);
		if (ret < 0)
			return ret;
	}
	return w.result;
}

static bool is_aligned(struct vdisk *d, const void *buf, size_t len,
		       uint64_t offset)
{
	uint32_t a = d->info.alignment;

	if (d->direct && ((uintptr_t)buf % a))
		return false;
	return (offset % a) == 0 && (len % a) == 0;
}

/*
 * An access that the disk cannot take as it is (O_DIRECT alignment):
 * widen it to whole aligned units through a bounce buffer.
 */
static int bounce_io(struct vdisk *d, bool write, void *buf, size_t len,
		     uint64_t offset)
{
	uint32_t a = d->info.alignment;
	uint64_t start = offset - offset % a;
	uint64_t end = offset + len;
	size_t span;
	uint8_t *tmp;
	int ret;

	end += (a - end % a) % a;
	span = (size_t)(end - start);
	tmp = vhdx_alloc(span);
	if (!tmp)
		return -ENOMEM;
	ret = sync_io(d, VDISK_READ, tmp, span, start);
	if (!ret && write) {
		memcpy(tmp + (offset - start), buf, len);
		ret = sync_io(d, VDISK_WRITE, tmp, span, start);
	} else if (!ret) {
		memcpy(buf, tmp + (offset - start), len);
	}
	free(tmp);
	return ret;
}

static int sync_rw(struct vdisk *d, bool write, void *buf, size_t len,
		   uint64_t offset)
{
	if (offset > d->info.virtual_size || len > d->info.virtual_size - offset)
		return -EINVAL;
	while (len) {
		size_t n = len > SYNC_CHUNK ? SYNC_CHUNK : len;
		int ret;

		if (is_aligned(d, buf, n, offset))
			ret = sync_io(d, write ? VDISK_WRITE : VDISK_READ, buf,
				      n, offset);
		else
			ret = bounce_io(d, write, buf, n, offset);
		if (ret)
			return ret;
		buf = (char *)buf + n;
		offset += n;
		len -= n;
	}
	return 0;
}

int vdisk_pread(struct vdisk *d, void *buf, size_t len, uint64_t offset)
{
	return sync_rw(d, false, buf, len, offset);
}

int vdisk_pwrite(struct vdisk *d, const void *buf, size_t len, uint64_t offset)
{
	return sync_rw(d, true, (void *)buf, len, offset);
}

int vdisk_flush(struct vdisk *d)
{
	return sync_io(d, VDISK_FLUSH, NULL, 0, 0);
}

static int sync_range(struct vdisk *d, enum vdisk_op op, uint64_t offset,
		      uint64_t len)
{
	struct sync_wait w = { 0 };
	struct vdisk_req req = {
		.op = op, .offset = offset, .len = len, .done = sync_done,
		.opaque = &w,
	};
	int ret = vdisk_submit(d, &req);

	if (ret)
		return ret;
	while (!w.done) {
		ret = io_engine_run(d->eng, 1);
		if (ret < 0)
			return ret;
	}
	return w.result;
}

int vdisk_discard(struct vdisk *d, uint64_t offset, uint64_t len)
{
	return sync_range(d, VDISK_DISCARD, offset, len);
}

int vdisk_write_zeroes(struct vdisk *d, uint64_t offset, uint64_t len)
{
	return sync_range(d, VDISK_WRITE_ZEROES, offset, len);
}
