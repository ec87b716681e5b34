/* SPDX-License-Identifier: MIT */
/* Internals shared by the files of vhdx/.  Not part of the interface. */
#ifndef FSVISOR_VHDX_INTERNAL_H
#define FSVISOR_VHDX_INTERNAL_H

#include <stdarg.h>

#include "util/util.h"
#include "vhdx/vhdx.h"
#include "vhdx/format.h"

struct vdisk_ops {
	int (*submit)(struct vdisk *d, struct vdisk_req *req);
	int (*block_status)(struct vdisk *d, uint64_t offset, uint64_t *len,
			    bool *allocated);
	/* Commit and release format state; the fd is closed by vdisk. */
	int (*close)(struct vdisk *d);
};

struct vdisk {
	const struct vdisk_ops *ops;
	struct vdisk_info info;
	struct io_engine *eng;
	bool own_engine;
	int fd;
	bool read_only;
	bool direct;
	bool no_io;
	void *priv;			/* format state */
	struct vdisk_seg *seg_free;	/* recycled segments */
};

/* vdisk.c: request bookkeeping for the formats. */
void vdisk_req_begin(struct vdisk *d, struct vdisk_req *req);
/* Drop one reference on @req, recording @res if it is an error. */
void vdisk_req_put(struct vdisk_req *req, int res);
/*
 * All pieces of @req are queued: drop the reference taken by
 * vdisk_req_begin() from the engine's run loop (so a request never
 * completes inside vdisk_submit()), recording @res.
 */
void vdisk_req_launch(struct vdisk_req *req, int res);

/* One piece of a request: a contiguous range of the file. */
struct vdisk_seg {
	struct io_op op;
	struct vdisk_req *req;
	uint64_t file_off;
	uint64_t len;
	struct vdisk_seg *next_free;
	unsigned int cap;		/* iovec capacity */
	unsigned int iovcnt;
	struct iovec iov[];
};

/* A segment for @req with room for @iovcnt iovecs; NULL when out of memory. */
struct vdisk_seg *vdisk_seg_get(struct vdisk *d, struct vdisk_req *req,
				unsigned int iovcnt);
void vdisk_seg_put(struct vdisk *d, struct vdisk_seg *seg);


/* Aligned buffers for metadata I/O (safe with O_DIRECT). */
void *vhdx_alloc(size_t len);

/* Synchronous, complete pread/pwrite; reads past EOF return zeros. */
int file_pread(int fd, void *buf, size_t len, uint64_t off);
int file_pwrite(int fd, const void *buf, size_t len, uint64_t off);
/* Write zeros over [off, off + len): for files that punch no holes. */
int file_write_zeros(int fd, uint64_t off, uint64_t len);

/*
 * Problems found while parsing a VHDX file go through a report: when
 * opening, the first one fails the open with its text; when checking,
 * each is counted and passed on, and parsing goes on where it can.
 */
struct vhdx_report {
	char *err;
	size_t errlen;
	bool checking;
	bool repairing;			/* check --repair: fix as we go */
	vhdx_problem_fn fn;
	void *ctx;
	unsigned int count;
};

/* What check says of a log a crash left (resize lets that one pass). */
#define VHDX_MSG_LOG_DIRTY "the log has not been replayed (the file was not closed cleanly)"

/* Record a problem; returns -EINVAL (fatal when opening), else 0. */
int vhdx_problem(struct vhdx_report *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* A problem after which nothing more can be parsed: always -EINVAL. */
int vhdx_fail(struct vhdx_report *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/*
 * A problem that does not stop the file from being used (a damaged copy
 * of a structure that has a good twin): reported by check only.
 */
void vhdx_warn(struct vhdx_report *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* vhdx.c: the VHDX format behind struct vdisk. */
int vhdx_open_fd(struct vdisk *d, struct vhdx_report *r);
extern const struct vdisk_ops vhdx_ops;
/* raw.c */
int raw_open_fd(struct vdisk *d, char *err, size_t errlen);

#endif /* FSVISOR_VHDX_INTERNAL_H */
