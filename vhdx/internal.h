/* SPDX-License-Identifier: MIT */
/* Internals shared by the files of vhdx/.  Not part of the interface. */
#ifndef FSVISOR_VHDX_INTERNAL_H
#define FSVISOR_VHDX_INTERNAL_H

#include <limits.h>
#include <stdarg.h>
#include <sys/types.h>

#include "util/util.h"
#include "vhdx/vhdx.h"
#include "vhdx/format.h"

/* What one level of a chain holds at a virtual offset. */
enum vmap {
	VMAP_DATA,		/* in this level's file */
	VMAP_ZERO,		/* zeros, hiding the levels below */
	VMAP_BELOW,		/* not here: the parent's (zeros without one) */
};

/* The kinds of names a child gives its parent. */
enum parent_kind {
	PARENT_RELATIVE,	/* to the child's directory, Windows form */
	PARENT_VOLUME,		/* \\?\Volume{GUID}\path */
	PARENT_ABSOLUTE,	/* absolute, Windows form */
	PARENT_FILENAME,	/* a file name in the child's directory */
};

#define MAX_PARENT_REFS	8

/* One name of the parent, in the order the format says to try them. */
struct parent_ref {
	const char *key;		/* its name in the file, for messages */
	enum parent_kind kind;
	char *value;			/* as written */
};

struct vdisk_ops {
	/* Writes, discards and flushes; reads too, calling vdisk_chain_read(). */
	int (*submit)(struct vdisk *d, struct vdisk_req *req);
	/*
	 * What this level holds at @off: the kind of the first part of
	 * [off, off + *len), *len shortened to the run of that kind (never
	 * to 0) and, for data, where the run starts in the file.
	 */
	enum vmap (*map)(struct vdisk *d, uint64_t off, uint64_t *len,
			 uint64_t *file_off);
	/*
	 * Queue a read of @len bytes at @file_off of this level's file into
	 * @req's buffers at @skip.  @req belongs to the top of the chain.
	 */
	int (*read_file)(struct vdisk *d, struct vdisk_req *req, size_t skip,
			 size_t len, uint64_t file_off);
	/* Optional: the format's own (raw files: SEEK_DATA). */
	int (*block_status)(struct vdisk *d, uint64_t offset, uint64_t *len,
			    bool *allocated);
	/* Commit and release format state; the fd is closed by vdisk. */
	int (*close)(struct vdisk *d);
	/*
	 * Optional: why a child that links to @linkage no longer matches
	 * this disk, when the disk knows (a merge changed it), in @buf.
	 */
	bool (*stale_reason)(struct vdisk *d, const struct guid *linkage,
			     char *buf, size_t len);
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

	char *path;			/* as opened */
	dev_t dev;
	ino_t ino;
	/* What children link to: a VHDX DataWriteGuid, a VHD UniqueId. */
	struct guid identity;
	/* Differencing disks: the opened parent, and how to find it. */
	struct vdisk *parent;
	struct parent_ref refs[MAX_PARENT_REFS];
	unsigned int nrefs;
	struct guid linkage;		/* the identity the parent must have */
	struct guid linkage2;		/* or this one, when there is one */
	bool has_linkage2;

	/* An online merge (vhdx/merge.c) is told of every change. */
	struct vdisk_merge *merge;
	/* Requests held while a merge commits, and requests in flight. */
	bool hold;
	struct vdisk_req *held;
	struct vdisk_req **held_tail;
	unsigned int active;
};

/* Chains deeper than this are refused (a loop the files hide). */
#define VDISK_MAX_CHAIN	64

/* The files of a chain being opened, to find loops. */
struct chain_ctx {
	bool parents;			/* open parents even without I/O */
	unsigned int n;
	dev_t dev[VDISK_MAX_CHAIN];
	ino_t ino[VDISK_MAX_CHAIN];
};

/* vdisk.c */
int vdisk_detect_format(int fd, uint64_t size, enum vdisk_format *fmt);
int vdisk_open_in_chain(const char *path, const struct vdisk_open_opts *opts,
			struct chain_ctx *cc, struct vdisk **out, char *err,
			size_t errlen);
/* Record a name of the parent (the value is copied). */
int vdisk_add_parent_ref(struct vdisk *d, const char *key,
			 enum parent_kind kind, const char *value);

/* merge.c: a write of [off, off + len) reached the merging disk. */
void merge_note_write(struct vdisk_merge *m, uint64_t off, uint64_t len);
/* Submit the requests a merge held back. */
void vdisk_release_held(struct vdisk *d);

/* chain.c */
/* Find, open (like @opts, read-only) and check the parent of @d. */
int chain_open_parent(struct vdisk *d, const struct vdisk_open_opts *opts,
		      struct chain_ctx *cc, char *err, size_t errlen);
/* Queue the pieces of read @req of @top, resolved through its chain. */
int vdisk_chain_read(struct vdisk *top, struct vdisk_req *req);
/* Block status through the chain: data in any level counts. */
int chain_block_status(struct vdisk *top, uint64_t offset, uint64_t *len,
		       bool *allocated);
/* What the chain from @d down holds at @off (see vdisk_ops.map). */
enum vmap chain_map(struct vdisk *d, uint64_t off, uint64_t *len,
		    struct vdisk **level, uint64_t *file_off);

/* parent_path.c */
struct parent_names {
	char real[PATH_MAX];		/* the parent, resolved */
	char rel[PATH_MAX];		/* relative_path */
	char vol[PATH_MAX];		/* volume_path */
	char abs[PATH_MAX];		/* absolute_win32_path */
};
void path_dirname(const char *path, char *out, size_t outlen);
/* The names a child at @child (which need not exist yet) gives @parent. */
int parent_names_make(const char *child, const char *parent,
		      struct parent_names *pn, char *err, size_t errlen);
/* A name turned into a path to try here; -ENOENT when it names none. */
int parent_name_resolve(enum parent_kind kind, const char *value,
			const char *child_dir, char *out, size_t outlen);

/* utf16.c: return 0 / units written, or -ENAMETOOLONG, -EINVAL (bad UTF-8). */
int utf16_to_utf8(const uint8_t *in, size_t units, bool be, char *out,
		  size_t outlen);
int utf8_to_utf16(const char *in, bool be, uint8_t *out, size_t max_units);

/* locator.c: the VHDX parent locator item. */
struct vhdx_locator {
	struct guid linkage, linkage2;
	bool has_linkage, has_linkage2;
	/* relative_path, volume_path, absolute_win32_path, or "". */
	char path[3][PATH_MAX];
};
/* Parse (every offset checked); on failure a phrase in @why. */
int vhdx_locator_parse(const uint8_t *item, uint32_t len,
		       struct vhdx_locator *loc, char *why, size_t whylen);
/* Give @d the locator's names and linkage. */
int vhdx_locator_refs(const struct vhdx_locator *loc, struct vdisk *d);
/* Build the item Hyper-V writes; returns its length or a -errno. */
int vhdx_locator_build(uint8_t *item, size_t cap, const struct guid *linkage,
		       const struct parent_names *pn);

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
	struct vdisk *level;		/* whose file: the top, or a parent */
	uint64_t file_off;
	uint64_t len;
	uint64_t voff;			/* differencing writes: virtual offset */
	bool reveal;			/* on success, mark the sectors present */
	struct vdisk_seg *next_free;
	unsigned int cap;		/* iovec capacity */
	unsigned int iovcnt;
	struct iovec iov[];
};

/* A segment for @req with room for @iovcnt iovecs; NULL when out of memory. */
struct vdisk_seg *vdisk_seg_get(struct vdisk *d, struct vdisk_req *req,
				unsigned int iovcnt);
void vdisk_seg_put(struct vdisk *d, struct vdisk_seg *seg);


/* Test hooks (vhdx/test_hooks.h): report a step of a metadata change. */
void vhdx_step(const char *what);

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
/* vhd_io.c: the VHD format behind struct vdisk. */
int vhd_open_fd(struct vdisk *d, struct vhdx_report *r);
/* Write the footer's copy at the start again, if it differs. */
int vhd_footer_sync(struct vdisk *d);
/* vhd_create.c */
int vhd_create(const char *path, const struct vdisk_create_opts *o,
	       char *err, size_t errlen);
/* vhd_check.c: see vhdx_check(). */
int vhd_check(const char *path, bool repair, vhdx_problem_fn report,
	      void *ctx, struct vhdx_check_result *res);
/* vhd_resize.c: grow the open VHD disk @d (see vdisk_resize()). */
int vhd_grow(struct vdisk *d, uint64_t new_size, char *err, size_t errlen);

#endif /* FSVISOR_VHDX_INTERNAL_H */
