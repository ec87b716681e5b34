// SPDX-License-Identifier: MIT
/*
 * The I/O engine: one io_uring, many operations in flight, submissions
 * batched until io_engine_submit() or io_engine_run().  Single-threaded:
 * the thread that queues operations also runs their completions.
 */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vhdx/internal.h"

struct io_engine {
	struct io_uring ring;
	int efd;
	unsigned int inflight;
	unsigned int queued;		/* SQEs prepared, not yet submitted */
	struct io_op *deferred;		/* completions without I/O, FIFO */
	struct io_op **deferred_tail;
};

int io_engine_create(unsigned int depth, struct io_engine **out)
{
	struct io_uring_params p = { 0 };
	struct io_engine *eng;
	int ret;

	if (depth == 0 || depth > 4096)
		return -EINVAL;
	eng = calloc(1, sizeof(*eng));
	if (!eng)
		return -ENOMEM;
	/* A roomy completion queue: linked metadata commits add entries. */
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = depth * 4;
	ret = io_uring_queue_init_params(depth, &eng->ring, &p);
	if (ret < 0) {
		free(eng);
		return ret;
	}
	eng->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (eng->efd < 0 || io_uring_register_eventfd(&eng->ring, eng->efd) < 0) {
		ret = eng->efd < 0 ? -errno : -EIO;
		if (eng->efd >= 0)
			close(eng->efd);
		io_uring_queue_exit(&eng->ring);
		free(eng);
		return ret;
	}
	eng->deferred_tail = &eng->deferred;
	*out = eng;
	return 0;
}

void io_engine_destroy(struct io_engine *eng)
{
	if (!eng)
		return;
	/* Let everything in flight land before the memory goes away. */
	while (eng->inflight || eng->deferred)
		if (io_engine_run(eng, 1) < 0)
			break;
	io_uring_queue_exit(&eng->ring);
	close(eng->efd);
	free(eng);
}

int io_engine_eventfd(struct io_engine *eng)
{
	return eng->efd;
}

unsigned int io_engine_inflight(const struct io_engine *eng)
{
	return eng->inflight;
}

bool io_engine_has_completions(struct io_engine *eng)
{
	return eng->deferred || io_uring_cq_ready(&eng->ring) > 0;
}

int io_engine_submit(struct io_engine *eng)
{
	int ret;

	if (!eng->queued)
		return 0;
	do {
		ret = io_uring_submit(&eng->ring);
	} while (ret == -EINTR);
	if (ret >= 0)
		eng->queued -= (unsigned int)ret > eng->queued ? eng->queued :
			       (unsigned int)ret;
	return ret;
}

static struct io_uring_sqe *get_sqe(struct io_engine *eng)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&eng->ring);

	if (!sqe) {
		/* Ring full: hand the batch to the kernel and try again. */
		io_engine_submit(eng);
		sqe = io_uring_get_sqe(&eng->ring);
	}
	return sqe;
}

static int queue_rw(struct io_engine *eng, struct io_op *op, unsigned int flags)
{
	const struct iovec *iov = op->rest ? op->rest : op->iov;
	unsigned int cnt = op->rest ? op->restcnt : op->iovcnt;
	struct io_uring_sqe *sqe = get_sqe(eng);

	if (!sqe)
		return -EBUSY;
	if (op->write)
		io_uring_prep_writev(sqe, op->fd, iov, cnt, op->offset + op->done);
	else
		io_uring_prep_readv(sqe, op->fd, iov, cnt, op->offset + op->done);
	if (flags & IO_LINK)
		sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data(sqe, op);
	eng->inflight++;
	eng->queued++;
	return 0;
}

int io_engine_rw(struct io_engine *eng, struct io_op *op, int fd, bool write,
		 const struct iovec *iov, unsigned int iovcnt, uint64_t offset,
		 unsigned int flags)
{
	op->fd = fd;
	op->write = write;
	op->iov = iov;
	op->iovcnt = iovcnt;
	op->offset = offset;
	op->total = iov_length(iov, iovcnt);
	op->done = 0;
	op->rest = NULL;
	op->restcnt = 0;
	return queue_rw(eng, op, flags);
}

int io_engine_fallocate(struct io_engine *eng, struct io_op *op, int fd,
			int mode, uint64_t offset, uint64_t len,
			unsigned int flags)
{
	struct io_uring_sqe *sqe = get_sqe(eng);

	if (!sqe)
		return -EBUSY;
	op->fd = fd;
	op->iov = NULL;
	op->total = 0;
	op->rest = NULL;
	io_uring_prep_fallocate(sqe, fd, mode, (off_t)offset, (off_t)len);
	if (flags & IO_LINK)
		sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data(sqe, op);
	eng->inflight++;
	eng->queued++;
	return 0;
}

int io_engine_fsync(struct io_engine *eng, struct io_op *op, int fd,
		    bool full, unsigned int flags)
{
	struct io_uring_sqe *sqe = get_sqe(eng);

	if (!sqe)
		return -EBUSY;
	op->fd = fd;
	op->iov = NULL;
	op->total = 0;
	op->rest = NULL;
	io_uring_prep_fsync(sqe, fd, full ? 0 : IORING_FSYNC_DATASYNC);
	if (flags & IO_LINK)
		sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data(sqe, op);
	eng->inflight++;
	eng->queued++;
	return 0;
}

void io_engine_defer(struct io_engine *eng, struct io_op *op, int res)
{
	op->res = res;
	op->next = NULL;
	*eng->deferred_tail = op;
	eng->deferred_tail = &op->next;
}

static void op_finish(struct io_op *op, int res)
{
	free(op->rest);
	op->rest = NULL;
	op->cb(op, res);
}

/*
 * A read or write moved fewer bytes than asked.  Reads that hit the end
 * of the file are filled with zeros; anything else is resumed from where
 * it stopped.
 */
static void op_short(struct io_engine *eng, struct io_op *op, int res)
{
	struct iovec *rest;

	if (res == 0) {
		if (op->write) {
			op_finish(op, -EIO);
			return;
		}
		iov_memset(op->iov, op->iovcnt, op->done, 0,
			   op->total - op->done);
		op_finish(op, (int)op->total);
		return;
	}
	op->done += (size_t)res;
	rest = malloc(sizeof(*rest) * op->iovcnt);
	if (!rest) {
		op_finish(op, -ENOMEM);
		return;
	}
	op->restcnt = iov_slice(op->iov, op->iovcnt, op->done,
				op->total - op->done, rest);
	free(op->rest);
	op->rest = rest;
	if (queue_rw(eng, op, 0) < 0)
		op_finish(op, -EBUSY);
}

static void handle_cqe(struct io_engine *eng, struct io_op *op, int res)
{
	eng->inflight--;
	if (op->iov && res >= 0 && (size_t)res + op->done < op->total) {
		op_short(eng, op, res);
		return;
	}
	if (op->iov && res >= 0)
		res = (int)op->total;
	op_finish(op, res);
}

static int run_deferred(struct io_engine *eng)
{
	int n = 0;

	while (eng->deferred) {
		struct io_op *op = eng->deferred;

		eng->deferred = op->next;
		if (!eng->deferred)
			eng->deferred_tail = &eng->deferred;
		op->cb(op, op->res);
		n++;
	}
	return n;
}

int io_engine_run(struct io_engine *eng, unsigned int min_complete)
{
	struct io_uring_cqe *cqes[64];
	uint64_t discard;
	int total;

	/*
	 * Reset the wakeup counter first: completions that arrive while we
	 * run signal it again, so a poller never sleeps on pending work.
	 */
	if (read(eng->efd, &discard, sizeof(discard)) < 0)
		discard = 0;
	total = run_deferred(eng);
	for (;;) {
		unsigned int n, wait = 0;
		int ret;

		if ((unsigned int)total < min_complete && eng->inflight)
			wait = 1;
		if (eng->queued || wait) {
			do {
				ret = io_uring_submit_and_wait(&eng->ring, wait);
			} while (ret == -EINTR);
			if (ret < 0 && ret != -EBUSY && ret != -EAGAIN)
				return ret;
			eng->queued = 0;
		}
		n = io_uring_peek_batch_cqe(&eng->ring, cqes, ARRAY_SIZE(cqes));
		for (unsigned int i = 0; i < n; i++) {
			struct io_op *op = io_uring_cqe_get_data(cqes[i]);
			int res = cqes[i]->res;

			io_uring_cqe_seen(&eng->ring, cqes[i]);
			handle_cqe(eng, op, res);
		}
		total += (int)n;
		total += run_deferred(eng);
		if (n == 0 && ((unsigned int)total >= min_complete ||
			       !eng->inflight) && !eng->queued)
			break;
	}
	return total;
}
