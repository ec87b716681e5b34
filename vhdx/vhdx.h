/* SPDX-License-Identifier: MIT */
/*
 * vhdx: virtual disks (VHDX, VHD and raw files, differencing chains of
 * VHDX and VHD) and the io_uring I/O engine.
 *
 * A struct vdisk is driven by one thread at a time: requests are submitted
 * and their completions delivered on the thread that calls
 * io_engine_run().  Several disks may share one engine.
 *
 * Asynchronous use:
 *
 *	struct io_engine *eng;
 *	io_engine_create(256, &eng);
 *	vdisk_open(path, &(struct vdisk_open_opts){ .engine = eng }, &d, ...);
 *	req->op = VDISK_READ; req->offset = ...; req->iov = ...;
 *	req->done = my_callback;
 *	vdisk_submit(d, req);		// queue, repeat for a batch
 *	io_engine_submit(eng);		// one system call for the batch
 *	io_engine_run(eng, 1);		// wait; callbacks run here
 *
 * Synchronous use: vdisk_pread(), vdisk_pwrite(), vdisk_flush().
 */
#ifndef FSVISOR_VHDX_H
#define FSVISOR_VHDX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* ---- I/O engine ------------------------------------------------------ */

struct io_engine;

/*
 * One asynchronous operation.  Embed it in your own structure; @cb runs
 * from io_engine_run() with the result (bytes transferred, or a negative
 * errno).  Reads and writes are completed in full: short transfers are
 * resumed, and reads past the end of the file return zeros.
 */
struct io_op {
	void (*cb)(struct io_op *op, int res);
	/* Private to the engine. */
	struct io_op *next;
	int res;
	int fd;
	bool write;
	const struct iovec *iov;
	unsigned int iovcnt;
	uint64_t offset;
	size_t total;
	size_t done;
	struct iovec *rest;		/* remainder after a short transfer */
	unsigned int restcnt;
};

/* Flags for io_engine_rw()/io_engine_fsync(). */
#define IO_LINK 1u	/* the next operation queued starts after this one */

/* A ring with room for @depth requests in flight (rounded to a power of 2). */
int io_engine_create(unsigned int depth, struct io_engine **out);
void io_engine_destroy(struct io_engine *eng);
/* Push queued requests to the kernel; returns how many were submitted. */
int io_engine_submit(struct io_engine *eng);
/*
 * Submit what is queued, wait until at least @min_complete completions
 * have arrived (0: do not wait), and run their callbacks.  Returns the
 * number of callbacks run.
 */
int io_engine_run(struct io_engine *eng, unsigned int min_complete);
/* An eventfd that becomes readable when completions wait to be run. */
int io_engine_eventfd(struct io_engine *eng);
/* Requests submitted to the kernel and not yet completed. */
unsigned int io_engine_inflight(const struct io_engine *eng);
/* Completions waiting to be run (a cheap look, for polling). */
bool io_engine_has_completions(struct io_engine *eng);

/* Queue a vectored read or write of the whole of @iov at @offset. */
int io_engine_rw(struct io_engine *eng, struct io_op *op, int fd, bool write,
		 const struct iovec *iov, unsigned int iovcnt, uint64_t offset,
		 unsigned int flags);
/* Queue fallocate(@fd, @mode, @offset, @len). */
int io_engine_fallocate(struct io_engine *eng, struct io_op *op, int fd,
			int mode, uint64_t offset, uint64_t len,
			unsigned int flags);
/* Queue an fdatasync (or fsync, when @full) of @fd. */
int io_engine_fsync(struct io_engine *eng, struct io_op *op, int fd,
		    bool full, unsigned int flags);
/* Complete @op with @res from the next io_engine_run(), without I/O. */
void io_engine_defer(struct io_engine *eng, struct io_op *op, int res);

/* ---- virtual disks --------------------------------------------------- */

enum vdisk_format {
	VDISK_FORMAT_AUTO,	/* by signature: VHDX, VHD, else raw */
	VDISK_FORMAT_VHDX,
	VDISK_FORMAT_RAW,
	VDISK_FORMAT_VHD,	/* VHD version 1 (Virtual PC, Hyper-V) */
};

enum vdisk_type {
	VDISK_TYPE_FIXED,
	VDISK_TYPE_DYNAMIC,
	VDISK_TYPE_DIFFERENCING,
};

struct vdisk_info {
	enum vdisk_format format;
	enum vdisk_type type;
	uint64_t virtual_size;
	uint32_t logical_sector_size;
	uint32_t physical_sector_size;
	uint32_t block_size;		/* VHDX payload block; 0 for raw */
	uint64_t file_size;
	uint64_t allocated;		/* bytes of payload present in the file */
	char disk_id[40];		/* VHDX virtual disk id, text form */
	uint32_t log_length;
	bool log_replayed;		/* a dirty log was replayed at open */
	/*
	 * Differencing disks: the parent's path.  With the chain open, the
	 * file that was opened; without (no_io), the first name the
	 * locator gives, as written.
	 */
	char parent[4096];
	/* Disks in the chain from this one down: 1 without a parent. */
	unsigned int chain_depth;
	/*
	 * What a child of this disk links to, as text: a VHDX file's
	 * DataWriteGuid, a VHD file's unique id.  Empty for raw files.
	 */
	char identity[40];
	/* Offsets and lengths of requests must be multiples of this. */
	uint32_t alignment;
};

struct vdisk;
struct vdisk_req;

struct vdisk_open_opts {
	enum vdisk_format format;
	bool read_only;
	bool direct;			/* O_DIRECT */
	/* Engine for asynchronous I/O; NULL: the disk makes its own. */
	struct io_engine *engine;
	/*
	 * Read the structure only (for "disk info"): I/O is refused, and
	 * differencing disks, whose parents are not opened, are accepted.
	 */
	bool no_io;
};

/*
 * Differencing disks open their whole chain: each parent is found by
 * the names the child gives it (for VHDX relative_path, volume_path,
 * absolute_win32_path, in that order; for VHD its W2ru and W2ku
 * locators, then its parent name), checked against the child's linkage
 * (the parent's DataWriteGuid or unique id), size and sector size, and
 * opened read-only on the same engine.  An open fails with -ENOENT for
 * a missing parent, -ESTALE for one that changed since the child was
 * made (a merge into it, say), -ELOOP for a chain that loops or names
 * itself, -EINVAL for a parent of another size or sector size; @err
 * names the disk and the reason.
 */

enum vdisk_op {
	VDISK_READ,
	VDISK_WRITE,
	VDISK_FLUSH,
	/*
	 * For these two, @len gives the byte range and @iov is unused.
	 * DISCARD: the guest no longer needs the range (it reads as zeros
	 * afterwards here); WRITE_ZEROES: the range must read as zeros.
	 * Whole blocks of a dynamic VHDX give their space back.
	 */
	VDISK_DISCARD,
	VDISK_WRITE_ZEROES,
};

typedef void (*vdisk_done_fn)(struct vdisk_req *req, int result);

/*
 * One request.  The caller fills the public fields and keeps the request
 * (and the iovec array and buffers) alive until @done runs.  @result is 0
 * or a negative errno.
 */
struct vdisk_req {
	enum vdisk_op op;
	uint64_t offset;
	const struct iovec *iov;
	unsigned int iovcnt;
	vdisk_done_fn done;
	void *opaque;

	/* DISCARD and WRITE_ZEROES: bytes from @offset. */
	uint64_t len;

	/* Private to vdisk. */
	struct io_op io;
	struct vdisk *disk;
	int pending;
	int error;
	struct vdisk_req *next;
};

/*
 * Open @path.  On failure returns a negative errno and, in @err, a
 * sentence saying what is wrong with the file.
 */
int vdisk_open(const char *path, const struct vdisk_open_opts *opts,
	       struct vdisk **out, char *err, size_t errlen);
/*
 * Finish outstanding work, commit metadata, mark the log clean and close.
 * Returns the first error met while doing so.
 */
int vdisk_close(struct vdisk *d);
const struct vdisk_info *vdisk_info(struct vdisk *d);
struct io_engine *vdisk_engine(struct vdisk *d);
/* The opened parent of a differencing disk (read-only), or NULL. */
struct vdisk *vdisk_parent(struct vdisk *d);

/* One disk of a chain, as vdisk_chain_list() describes it. */
struct vdisk_chain_level {
	char path[4096];
	enum vdisk_format format;
	enum vdisk_type type;
	uint64_t virtual_size;
	uint64_t file_size;
	char identity[40];
};

/*
 * Describe the chain of @path, top first, in @levels (room for @max);
 * *n is set to the number of disks.  Every parent is found and checked
 * as an open does (errors as for vdisk_open), but no file is locked or
 * changed, so a chain in use by a running VM can be listed.
 */
int vdisk_chain_list(const char *path, struct vdisk_chain_level *levels,
		     unsigned int max, unsigned int *n, char *err,
		     size_t errlen);

/*
 * Queue @req.  Returns 0 when @req->done will be called, or a negative
 * errno (bad range or alignment, read-only disk) when it will not.
 */
int vdisk_submit(struct vdisk *d, struct vdisk_req *req);

/* Synchronous I/O at any byte offset; return 0 or a negative errno. */
int vdisk_pread(struct vdisk *d, void *buf, size_t len, uint64_t offset);
int vdisk_pwrite(struct vdisk *d, const void *buf, size_t len,
		 uint64_t offset);
int vdisk_flush(struct vdisk *d);
int vdisk_discard(struct vdisk *d, uint64_t offset, uint64_t len);
int vdisk_write_zeroes(struct vdisk *d, uint64_t offset, uint64_t len);

/*
 * Where the data is: sets *allocated to whether [offset, offset+*len)
 * starts with data that may be non-zero, and shortens *len to the run of
 * the same kind.  Unallocated runs read as zeros.  Through a chain, data
 * in any level counts.  -EOPNOTSUPP for a VHDX or VHD opened with no_io.
 */
int vdisk_block_status(struct vdisk *d, uint64_t offset, uint64_t *len,
		       bool *allocated);

/*
 * Grow the disk at @path, a VHDX or raw file that is not open elsewhere,
 * to @new_size bytes.  The same size changes nothing.  A smaller size,
 * a size that is not a multiple of the logical sector size or larger
 * than 64 TiB fail with -EINVAL; a differencing disk or a block device
 * with -ENOTSUP; a VHDX file with problems that check would report
 * (other than a log to replay) with -EINVAL, untouched.
 *
 * VHDX: the new space reads as zeros.  A fixed disk gets its new blocks
 * allocated; a dynamic one gets none.  When the BAT region is too small
 * for the new size the BAT moves to a new region at the end of the file.
 * The change goes through the log: after a crash the file opens with its
 * old size or its new one, and its data intact either way.
 * Raw: the file is extended, sparse.
 *
 * On failure returns a negative errno and a sentence in @err.
 */
int vdisk_resize(const char *path, uint64_t new_size, char *err,
		 size_t errlen);

/* ---- VHDX creation and checking ------------------------------------- */

struct vhdx_create_opts {
	uint64_t size;			/* virtual size, bytes; 0 with a parent */
	enum vdisk_type type;		/* fixed, dynamic or differencing */
	/*
	 * Differencing: the parent, a VHDX or VHD file.  The child takes its
	 * size and sector sizes; @type may be left 0 (fixed) or differencing.
	 */
	const char *parent;
	uint32_t block_size;		/* 0: by size (2 MiB for a child) */
	uint32_t logical_sector_size;	/* 512 (default) or 4096 */
	uint32_t physical_sector_size;	/* 4096 (default) or 512 */
	uint32_t log_size;		/* 0: 1 MiB */
};

/* The block size chosen for a disk of @size when none is given. */
uint32_t vhdx_default_block_size(uint64_t size);
/*
 * Create a new VHDX file at @path; fails with -EEXIST if it exists.  A
 * differencing disk names its parent as Hyper-V does (parent_linkage,
 * relative_path, volume_path, absolute_win32_path).
 */
int vhdx_create(const char *path, const struct vhdx_create_opts *opts,
		char *err, size_t errlen);

/* ---- creating any disk --------------------------------------------- */

struct vdisk_create_opts {
	enum vdisk_format format;	/* VHDX (AUTO means VHDX too) or VHD */
	enum vdisk_type type;		/* fixed, dynamic, differencing */
	uint64_t size;			/* bytes; unused with a parent */
	/*
	 * Differencing: the parent's path.  A VHDX child may have a VHDX or
	 * VHD parent, a VHD child only a VHD one; the child takes the
	 * parent's size and sector sizes.
	 */
	const char *parent;
	uint32_t block_size;		/* 0: the format's default */
	uint32_t logical_sector_size;	/* VHDX: 512 or 4096; VHD: 512 */
	uint32_t physical_sector_size;	/* VHDX only */
	uint32_t log_size;		/* VHDX only */
};

/*
 * Create a disk at @path (-EEXIST if there is a file).  A VHD disk of
 * less than 127 GiB is rounded up to whole cylinders of its CHS
 * geometry, so every reader agrees on its size; VHD disks hold up to
 * 2040 GiB.  On failure @err says why and nothing is left behind.
 */
int vdisk_create(const char *path, const struct vdisk_create_opts *o,
		 char *err, size_t errlen);

/* ---- long operations: convert, merge, compact ----------------------- */

/*
 * Progress of a long operation, called now and then on the thread that
 * runs it, with the work done and the whole of it (bytes of the virtual
 * disk); return false to cancel the operation, which then undoes what it
 * did and fails with -ECANCELED.  A service runs these operations on a
 * thread of its own and cancels through a flag its callback reads.
 */
typedef bool (*vdisk_progress_fn)(void *ctx, uint64_t done, uint64_t total);

struct vdisk_convert_opts {
	enum vdisk_format format;	/* of the copy: VHDX, VHD or RAW */
	enum vdisk_type type;		/* fixed or dynamic (not for raw) */
	uint32_t block_size;		/* 0: the format's default */
	/*
	 * Keep a chain: the copy is a differencing disk of @parent (which
	 * must read like the source's parent, or any disk of its size) and
	 * holds only where the source differs from it.  NULL flattens.
	 */
	const char *parent;
	vdisk_progress_fn progress;
	void *progress_ctx;
};

/*
 * Copy the disk (or chain) @src into a new disk @dst, which must not
 * exist.  Unallocated runs are skipped and zeros not written, so sparse
 * stays sparse.  A VHD copy may be a little larger (its size is rounded
 * to whole cylinders); the extra reads as zeros.  On failure @dst is
 * removed and @err says why.
 */
int vdisk_convert(const char *src, const char *dst,
		  const struct vdisk_convert_opts *o, char *err, size_t errlen);

struct vdisk_merge_opts {
	/* The ancestor to merge into (a path); NULL: the parent. */
	const char *into;
	/*
	 * Leave the merged child and the disks between it and the ancestor
	 * in place (they are invalid afterwards) instead of removing them,
	 * as Hyper-V's Merge-VHD does.
	 */
	bool keep_files;
	/*
	 * Online merges: the most each vdisk_merge_step() copies (0: 64
	 * MiB).  A step runs on the caller's thread; a VM's new requests
	 * wait for it, so a worker picks a few MiB.
	 */
	uint64_t step_bytes;
	vdisk_progress_fn progress;
	void *progress_ctx;
};

/*
 * Merge the differencing disk @child into its parent (or @o->into):
 * afterwards the ancestor reads exactly what @child read, and @child
 * and the disks between are removed.  Crash-safe: until the merge
 * commits every disk of the chain reads as before; after, the ancestor
 * reads the merged result.  A merge that was interrupted (a kill, a
 * power cut) is finished or undone by running it again.  The ancestor's
 * other children are invalid afterwards: opening one fails with -ESTALE
 * and says it was merged into (a VHD one that its parent changed).  The
 * ancestor is a VHDX file or a dynamic or differencing VHD (a fixed VHD
 * is refused, -ENOTSUP).
 */
int vdisk_merge(const char *child, const struct vdisk_merge_opts *o,
		char *err, size_t errlen);

/*
 * Online merge, on a disk a VM is using (open read-write; a chain).
 * vdisk_merge_begin() starts it (the ancestor must not be open in
 * another process); then call vdisk_merge_step() from the thread that
 * drives the disk, between requests, until it returns 0: each step
 * copies a bounded amount (@o->step_bytes) on the disk's engine, so guest
 * I/O goes on meanwhile (a write to a block already copied has it copied
 * again).  When all is copied, one more step holds new requests back,
 * waits for those in flight, commits, and switches @d to the ancestor: from then on @d
 * reads and writes the ancestor, and the held requests go there.
 * Returns 1 while work remains, 0 when done (the merge is freed), or a
 * negative errno with @err set (the merge was undone and freed; @d is
 * as before).  vdisk_merge_cancel() undoes and frees a merge under way.
 */
struct vdisk_merge;
int vdisk_merge_begin(struct vdisk *d, const struct vdisk_merge_opts *o,
		      struct vdisk_merge **out, char *err, size_t errlen);
int vdisk_merge_step(struct vdisk_merge *m, char *err, size_t errlen);
void vdisk_merge_cancel(struct vdisk_merge *m);
/* Bytes of the virtual disk the merge has gone through, of @total. */
void vdisk_merge_progress(const struct vdisk_merge *m, uint64_t *done,
			  uint64_t *total);

struct vdisk_compact_opts {
	vdisk_progress_fn progress;
	void *progress_ctx;
};

struct vdisk_compact_result {
	uint64_t file_size_before, file_size_after;
	uint64_t freed_blocks;		/* of zeros, now unallocated */
	uint64_t moved_blocks;		/* moved down into holes */
};

/*
 * Compact the dynamic or differencing disk at @path (not open
 * elsewhere), as Optimize-VHD does: blocks that read as zeros (written
 * zeros, or discarded by the guest) are freed, blocks move down into the
 * holes, and the file is cut after the last one.  The disk reads the same
 * throughout; a crash leaves each block at its old place or its new one.
 * Fixed and raw disks are refused (-EINVAL).  A differencing VHD keeps
 * its blocks of zeros (only blocks move).  @res may be NULL.
 */
int vdisk_compact(const char *path, const struct vdisk_compact_opts *o,
		  struct vdisk_compact_result *res, char *err, size_t errlen);

/* A problem that check found: one line of text. */
typedef void (*vhdx_problem_fn)(void *ctx, const char *problem);

struct vhdx_check_result {
	unsigned int problems;		/* found */
	unsigned int repaired;		/* of those, fixed by --repair */
	bool log_dirty;
};

/*
 * Check the structure of the VHDX file at @path, calling @report for each
 * problem.  With @repair, fix what can be fixed without guessing: replay a
 * dirty log, rewrite a damaged header or region table from the good copy,
 * and drop BAT entries that are invalid, point past the end of the file
 * or overlap other structures.  Returns 0 when the check ran (whatever it
 * found) or a negative errno when the file could not be read at all.
 */
int vhdx_check(const char *path, bool repair, vhdx_problem_fn report,
	       void *ctx, struct vhdx_check_result *res);
/*
 * The same for any disk: VHDX as above; VHD (footer and its copy,
 * header, BAT; --repair rewrites a damaged footer copy and drops BAT
 * entries outside the file); anything else is checked as VHDX.  A
 * differencing disk whose parent chain cannot be opened (missing, stale,
 * looping, another size) has that as one more problem.
 */
int vdisk_check(const char *path, bool repair, vhdx_problem_fn report,
		void *ctx, struct vhdx_check_result *res);

#endif /* FSVISOR_VHDX_H */
