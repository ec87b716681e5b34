// SPDX-License-Identifier: MIT
/*
 * virtio-blk (virtio 1.2, 5.2) on the disk library: VHDX or raw files,
 * through io_uring.  Each device has an I/O thread that waits on the
 * queue's kick eventfd, the disk engine's eventfd and a control eventfd:
 * kicks take requests off the ring and submit them (one system call per
 * batch); completions fill the used ring, which is published once per
 * pass with at most one interrupt.  vCPU threads never do disk I/O.
 */
#include <errno.h>
#include <linux/virtio_blk.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vhdx/vhdx.h"
#include "vmm/virtio/virtio.h"

#define BLK_QUEUE_MAX	256
#define BLK_SEG_MAX	126		/* data segments per request */
#define BLK_ELEM_SEGS	(BLK_SEG_MAX + 2)	/* + header + status */
#define BLK_MAX_RANGE	0x3FFFFF	/* sectors per discard/zeroes segment */
/*
 * After a busy pass with nothing left in flight, watch the ring this long
 * before sleeping (driver notifications off meanwhile): a busy device
 * then runs without a wakeup per batch.  QEMU's I/O threads poll likewise
 * (poll-max-ns, 32 us by default).
 */
#define POLL_NS		50000
/*
 * Requests taken per step: the completions of each step are published
 * (one interrupt) before the next is taken, so the driver refills the
 * ring while the device works on the rest.
 */
#define BLK_CHUNK	16
#define SECTOR		512ULL

enum ctl_cmd {
	CTL_NONE,
	CTL_RESET,
	CTL_STOP,
	CTL_QUIESCE,		/* finish, flush, take nothing more: a capture */
};

enum tag {
	TAG_KICK,
	TAG_ENGINE,
	TAG_CTL,
};

struct blk_req {
	struct vdisk_req vreq;
	struct virtio_blk *blk;
	struct virtq_elem elem;
	struct iovec iov[BLK_ELEM_SEGS];
	struct iovec data[BLK_ELEM_SEGS];
	uint8_t *status;
	uint32_t written;		/* bytes for the used ring */
	uint32_t type;
	uint64_t bytes;			/* data moved, for the counters */
	struct blk_req *next;
};

struct virtio_blk {
	struct virtio_dev dev;
	const struct vm_disk_config *cfg;
	struct vdisk *disk;
	struct io_engine *eng;
	struct virtio_blk_config config;
	uint64_t capacity;		/* in 512-byte sectors */

	pthread_t thread;
	bool thread_started;
	int epfd;
	int kick_fd;
	int ctl_fd;
	pthread_mutex_t lock;		/* ctl handshake */
	pthread_cond_t cond;
	enum ctl_cmd ctl;
	bool ctl_done;
	_Atomic bool active;		/* DRIVER_OK and not broken */

	/* Counters, written by the I/O thread, read by "status". */
	_Atomic uint64_t n_read, n_write, n_flush, n_discard, n_error;
	_Atomic uint64_t read_bytes, write_bytes;

	struct blk_req *reqs;
	struct blk_req *free_list;
	unsigned int inflight;
	bool need_publish;
};

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

/* ---- completion ------------------------------------------------------ */

static void complete(struct blk_req *r, uint8_t status)
{
	struct virtio_blk *b = r->blk;

	*r->status = status;
	if (status != VIRTIO_BLK_S_OK && status != VIRTIO_BLK_S_UNSUPP) {
		atomic_fetch_add(&b->n_error, 1);
	} else if (status == VIRTIO_BLK_S_OK) {
		switch (r->type) {
		case VIRTIO_BLK_T_IN:
			atomic_fetch_add(&b->n_read, 1);
			atomic_fetch_add(&b->read_bytes, r->bytes);
			break;
		case VIRTIO_BLK_T_OUT:
			atomic_fetch_add(&b->n_write, 1);
			atomic_fetch_add(&b->write_bytes, r->bytes);
			break;
		case VIRTIO_BLK_T_FLUSH:
			atomic_fetch_add(&b->n_flush, 1);
			break;
		case VIRTIO_BLK_T_DISCARD:
		case VIRTIO_BLK_T_WRITE_ZEROES:
			atomic_fetch_add(&b->n_discard, 1);
			break;
		}
	}
	virtq_push(&b->dev.vq[0], r->elem.head, r->written);
	b->need_publish = true;
	b->inflight--;
	r->next = b->free_list;
	b->free_list = r;
}

static void vreq_done(struct vdisk_req *vreq, int result)
{
	struct blk_req *r = container_of(vreq, struct blk_req, vreq);

	if (result)
		log_debug("virtio-blk %s: request type %u failed: %s",
			  r->blk->cfg->path, r->type, strerror(-result));
	complete(r, result ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
}

static void publish(struct virtio_blk *b)
{
	struct virtq *q = &b->dev.vq[0];

	if (!b->need_publish)
		return;
	b->need_publish = false;
	virtq_publish(q);
	if (virtq_should_interrupt(q) && b->dev.transport.interrupt)
		b->dev.transport.interrupt(&b->dev, 0);
}

/* ---- requests ------------------------------------------------------------ */

static bool in_range(struct virtio_blk *b, uint64_t sector, uint64_t bytes)
{
	return sector <= b->capacity && bytes / SECTOR <= b->capacity - sector &&
	       bytes % SECTOR == 0;
}

static void submit(struct blk_req *r, enum vdisk_op op, uint64_t offset,
		   unsigned int ndata, uint64_t len)
{
	int ret;

	r->vreq = (struct vdisk_req){
		.op = op, .offset = offset, .iov = r->data, .iovcnt = ndata,
		.len = len, .done = vreq_done,
	};
	ret = vdisk_submit(r->blk->disk, &r->vreq);
	if (ret)
		complete(r, VIRTIO_BLK_S_IOERR);
}

/* DISCARD and WRITE_ZEROES: one {sector, num_sectors, flags} segment. */
static void handle_range(struct virtio_blk *b, struct blk_req *r, uint32_t type)
{
	struct virtio_blk_discard_write_zeroes seg;
	uint64_t data_len = r->elem.out_len - sizeof(struct virtio_blk_outhdr);
	uint32_t flags, num;
	uint64_t sector;

	if (b->cfg->read_only) {
		complete(r, VIRTIO_BLK_S_IOERR);
		return;
	}
	if (data_len != sizeof(seg)) {
		complete(r, data_len % sizeof(seg) ? VIRTIO_BLK_S_IOERR :
						     VIRTIO_BLK_S_UNSUPP);
		return;
	}
	iov_to_buf(r->elem.iov, r->elem.out_num, sizeof(struct virtio_blk_outhdr),
		   &seg, sizeof(seg));
	sector = le64toh(seg.sector);
	num = le32toh(seg.num_sectors);
	flags = le32toh(seg.flags);
	/* Discard has no flags; write-zeroes only "unmap". */
	if ((type == VIRTIO_BLK_T_DISCARD && flags) ||
	    (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)) {
		complete(r, VIRTIO_BLK_S_UNSUPP);
		return;
	}
	if (num > BLK_MAX_RANGE || !in_range(b, sector, (uint64_t)num * SECTOR)) {
		complete(r, VIRTIO_BLK_S_IOERR);
		return;
	}
	submit(r, type == VIRTIO_BLK_T_DISCARD ? VDISK_DISCARD : VDISK_WRITE_ZEROES,
	       sector * SECTOR, 0, (uint64_t)num * SECTOR);
}

static void handle(struct virtio_blk *b, struct blk_req *r)
{
	struct virtq_elem *e = &r->elem;
	struct virtio_blk_outhdr hdr;
	const struct iovec *last;
	uint64_t sector, len;
	unsigned int n;

	last = &e->iov[e->out_num + e->in_num - 1];
	r->status = (uint8_t *)last->iov_base + last->iov_len - 1;
	r->written = 1;
	r->bytes = 0;
	iov_to_buf(e->iov, e->out_num, 0, &hdr, sizeof(hdr));
	r->type = le32toh(hdr.type);
	sector = le64toh(hdr.sector);

	switch (r->type) {
	case VIRTIO_BLK_T_IN:
		len = e->in_len - 1;
		if (!in_range(b, sector, len)) {
			complete(r, VIRTIO_BLK_S_IOERR);
			return;
		}
		n = iov_slice(e->iov + e->out_num, e->in_num, 0, len, r->data);
		r->written = (uint32_t)len + 1;
		r->bytes = len;
		submit(r, VDISK_READ, sector * SECTOR, n, 0);
		return;
	case VIRTIO_BLK_T_OUT:
		len = e->out_len - sizeof(hdr);
		if (b->cfg->read_only || !in_range(b, sector, len)) {
			complete(r, VIRTIO_BLK_S_IOERR);
			return;
		}
		n = iov_slice(e->iov, e->out_num, sizeof(hdr), len, r->data);
		r->bytes = len;
		submit(r, VDISK_WRITE, sector * SECTOR, n, 0);
		return;
	case VIRTIO_BLK_T_FLUSH:
		if (b->cfg->read_only)
			complete(r, VIRTIO_BLK_S_OK);	/* nothing to flush */
		else
			submit(r, VDISK_FLUSH, 0, 0, 0);
		return;
	case VIRTIO_BLK_T_GET_ID: {
		char id[VIRTIO_BLK_ID_BYTES] = { 0 };

		/* Up to 20 bytes, NUL-padded when shorter. */
		memcpy(id, b->cfg->serial, strlen(b->cfg->serial));
		len = e->in_len - 1 < sizeof(id) ? e->in_len - 1 : sizeof(id);
		iov_from_buf(e->iov + e->out_num, e->in_num, 0, id, len);
		r->written = (uint32_t)len + 1;
		complete(r, VIRTIO_BLK_S_OK);
		return;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		handle_range(b, r, r->type);
		return;
	default:
		complete(r, VIRTIO_BLK_S_UNSUPP);
		return;
	}
}

/* Take up to @max requests off the ring; returns how many. */
static unsigned int take(struct virtio_blk *b, unsigned int max)
{
	struct virtq *q = &b->dev.vq[0];
	unsigned int n = 0;

	while (n < max && atomic_load(&b->active) && b->free_list) {
		struct blk_req *r = b->free_list;
		int ret = virtq_pop(q, &r->elem);

		if (ret == 0) {
			if (virtq_enable_notify(q))
				continue;	/* raced with the driver */
			return n;
		}
		if (ret < 0 || r->elem.out_len < sizeof(struct virtio_blk_outhdr) ||
		    r->elem.in_len < 1) {
			/* Nowhere to put a status: nothing sane to answer. */
			atomic_store(&b->active, false);
			virtio_dev_broken(&b->dev, ret < 0 ?
					  "malformed descriptor chain" :
					  "request without header or status byte");
			return n;
		}
		b->free_list = r->next;
		b->inflight++;
		n++;
		handle(b, r);
	}
	return n;
}

static void process_queue(struct virtio_blk *b)
{
	take(b, BLK_QUEUE_MAX);
}

/* ---- the I/O thread -------------------------------------------------------- */

static void drain(struct virtio_blk *b)
{
	io_engine_submit(b->eng);
	while (b->inflight)
		if (io_engine_run(b->eng, 1) < 0)
			break;
	publish(b);
}

static void flush_done(struct vdisk_req *req, int result)
{
	*(int *)req->opaque = result ? result : 1;
}

/*
 * What the guest wrote is on the disk before a capture: a saved state
 * and its disks then agree, even after the host goes down.
 */
static void flush_disk(struct virtio_blk *b)
{
	int done = 0;
	struct vdisk_req req = { .op = VDISK_FLUSH, .done = flush_done, .opaque = &done };

	if (b->cfg->read_only || vdisk_submit(b->disk, &req))
		return;
	while (!done)
		if (io_engine_run(b->eng, 1) < 0)
			break;
	if (done < 0)
		log_warn("disk %s: flush before a capture failed: %s", b->cfg->path,
			 strerror(-done));
}

static bool handle_ctl(struct virtio_blk *b)
{
	enum ctl_cmd cmd;
	uint64_t discard;

	if (read(b->ctl_fd, &discard, sizeof(discard)) < 0)
		discard = 0;
	pthread_mutex_lock(&b->lock);
	cmd = b->ctl;
	pthread_mutex_unlock(&b->lock);
	if (cmd == CTL_NONE)
		return false;
	/* Finish what is in flight: after this, guest memory is left alone. */
	atomic_store(&b->active, false);
	drain(b);
	if (cmd == CTL_QUIESCE)
		flush_disk(b);
	pthread_mutex_lock(&b->lock);
	b->ctl = CTL_NONE;
	b->ctl_done = true;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	return cmd == CTL_STOP;
}

/*
 * Submit, then take what completed at once (cached reads complete inside
 * the submission), and go on while that frees room for waiting requests:
 * one wakeup then serves as many requests as it can.
 */
static void pump(struct virtio_blk *b)
{
	for (;;) {
		int done;

		io_engine_submit(b->eng);
		done = io_engine_run(b->eng, 0);
		/* What finished goes to the driver now: it refills meanwhile. */
		publish(b);
		if (take(b, BLK_CHUNK) == 0 && done <= 0)
			break;
	}
	io_engine_submit(b->eng);
}

/* Busy: keep serving without sleeping while work keeps coming. */
static void poll_for_work(struct virtio_blk *b)
{
	struct virtq *q = &b->dev.vq[0];
	uint64_t until = now_ns() + POLL_NS;

	virtq_disable_notify(q);
	while (atomic_load(&b->active) && now_ns() < until) {
		bool ring = virtq_has_work(q) && b->free_list;

		/*
		 * Requests out on slow I/O (io_uring's workers do buffered
		 * writes): spinning would only take their CPU.  Sleep.
		 */
		if (b->inflight && !ring && !io_engine_has_completions(b->eng))
			break;

		if (ring || io_engine_has_completions(b->eng)) {
			pump(b);
			until = now_ns() + POLL_NS;
			continue;
		}
		__builtin_ia32_pause();
	}
	/* Notifications back on; anything that slipped in is served now. */
	if (atomic_load(&b->active) && virtq_enable_notify(q)) {
		process_queue(b);
		pump(b);
	}
}

static void *blk_thread(void *arg)
{
	struct virtio_blk *b = arg;

	pthread_setname_np(pthread_self(), "virtio-blk");
	for (;;) {
		struct epoll_event evs[4];
		int n = epoll_wait(b->epfd, evs, ARRAY_SIZE(evs), -1);
		bool stop = false;

		for (int i = 0; i < n; i++) {
			uint64_t discard;

			switch (evs[i].data.u32) {
			case TAG_KICK:
				if (read(b->kick_fd, &discard, sizeof(discard)) < 0)
					discard = 0;
				take(b, BLK_CHUNK);
				break;
			case TAG_ENGINE:
				io_engine_run(b->eng, 0);
				/* Completions made room: take what is waiting. */
				process_queue(b);
				break;
			case TAG_CTL:
				stop = handle_ctl(b);
				break;
			}
		}
		if (stop)
			return NULL;
		pump(b);
		if (n > 0 && atomic_load(&b->active))
			poll_for_work(b);
	}
}

/* Ask the thread to quiesce (and maybe end), and wait until it has. */
static void ctl_request(struct virtio_blk *b, enum ctl_cmd cmd)
{
	uint64_t one = 1;

	if (!b->thread_started)
		return;
	pthread_mutex_lock(&b->lock);
	b->ctl = cmd;
	b->ctl_done = false;
	if (write(b->ctl_fd, &one, sizeof(one)) < 0) {
		/* A pending wakeup is already there. */
	}
	while (!b->ctl_done)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
}

/* ---- the device ------------------------------------------------------- */

static void blk_config_read(struct virtio_dev *dev, uint32_t off, uint8_t *data,
			    unsigned int len)
{
	struct virtio_blk *b = dev->impl;

	if (off + len <= sizeof(b->config))
		memcpy(data, (uint8_t *)&b->config + off, len);
	else
		memset(data, 0, len);
}

static int blk_activate(struct virtio_dev *dev)
{
	struct virtio_blk *b = dev->impl;
	uint64_t one = 1;

	atomic_store(&b->active, true);
	/* Requests may already be waiting: look at the ring now. */
	if (write(b->kick_fd, &one, sizeof(one)) < 0) {
		/* Saturated: a kick is pending anyway. */
	}
	return 0;
}

static void blk_reset(struct virtio_dev *dev)
{
	ctl_request(dev->impl, CTL_RESET);
}

static const struct virtio_dev_ops blk_ops = {
	.name = "blk",
	.device_id = VIRTIO_ID_BLOCK,
	.pci_class = 0x010000,		/* mass storage (SCSI), like QEMU's */
	.config_size = sizeof(struct virtio_blk_config),
	.config_read = blk_config_read,
	.activate = blk_activate,
	.reset = blk_reset,
};

static unsigned int log2u(uint32_t v)
{
	unsigned int n = 0;

	while (v > 1) {
		v >>= 1;
		n++;
	}
	return n;
}

static void fill_config(struct virtio_blk *b, const struct vdisk_info *in)
{
	struct virtio_blk_config *c = &b->config;
	uint32_t lss = in->logical_sector_size;
	/* Discards aligned to a VHDX block give space back. */
	uint32_t align = in->block_size ? in->block_size : lss;

	b->capacity = in->virtual_size / SECTOR;
	c->capacity = htole64(b->capacity);
	c->seg_max = htole32(BLK_SEG_MAX);
	c->blk_size = htole32(lss);
	c->physical_block_exp = (uint8_t)log2u(in->physical_sector_size / lss);
	c->min_io_size = htole16(1);
	c->opt_io_size = htole32(in->block_size ? in->block_size / lss : 0);
	c->num_queues = htole16(1);
	c->max_discard_sectors = htole32(BLK_MAX_RANGE);
	c->max_discard_seg = htole32(1);
	c->discard_sector_alignment = htole32(align / SECTOR);
	c->max_write_zeroes_sectors = htole32(BLK_MAX_RANGE);
	c->max_write_zeroes_seg = htole32(1);
	c->write_zeroes_may_unmap = 1;
}

struct virtio_dev *virtio_blk_dev(struct virtio_blk *b)
{
	return &b->dev;
}

int virtio_blk_create(const struct vm_disk_config *disk,
		      const struct guest_mem *mem, struct virtio_blk **out,
		      char *err, size_t errlen)
{
	struct vdisk_open_opts o = {
		.format = (enum vdisk_format)disk->format,
		.read_only = disk->read_only,
	};
	uint64_t features = (1ULL << VIRTIO_BLK_F_SEG_MAX) |
			    (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
			    (1ULL << VIRTIO_BLK_F_FLUSH) |
			    (1ULL << VIRTIO_BLK_F_TOPOLOGY);
	struct virtio_blk *b = calloc(1, sizeof(*b));
	struct epoll_event ev = { .events = EPOLLIN };
	char why[512];
	int ret;

	if (!b)
		return -ENOMEM;
	b->cfg = disk;
	b->epfd = b->kick_fd = b->ctl_fd = -1;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	ret = vdisk_open(disk->path, &o, &b->disk, why, sizeof(why));
	if (ret) {
		snprintf(err, errlen, "disk %s: %s", disk->path, why);
		free(b);
		return ret;
	}
	b->eng = vdisk_engine(b->disk);
	if (disk->read_only)
		features |= 1ULL << VIRTIO_BLK_F_RO;
	else
		features |= (1ULL << VIRTIO_BLK_F_DISCARD) |
			    (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
	fill_config(b, vdisk_info(b->disk));
	ret = virtio_dev_init(&b->dev, &blk_ops, b, 1, BLK_QUEUE_MAX, features, mem);
	if (ret)
		goto fail;
	b->reqs = calloc(BLK_QUEUE_MAX, sizeof(*b->reqs));
	b->epfd = epoll_create1(EPOLL_CLOEXEC);
	b->ctl_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!b->reqs || b->epfd < 0 || b->ctl_fd < 0) {
		ret = -ENOMEM;
		goto fail;
	}
	for (int i = BLK_QUEUE_MAX - 1; i >= 0; i--) {
		struct blk_req *r = &b->reqs[i];

		r->blk = b;
		r->elem.iov = r->iov;
		r->elem.cap = BLK_ELEM_SEGS;
		r->next = b->free_list;
		b->free_list = r;
	}
	ev.data.u32 = TAG_ENGINE;
	if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, io_engine_eventfd(b->eng), &ev) < 0)
		goto fail_errno;
	ev.data.u32 = TAG_CTL;
	if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->ctl_fd, &ev) < 0)
		goto fail_errno;
	*out = b;
	return 0;
fail_errno:
	ret = -errno;
fail:
	snprintf(err, errlen, "disk %s: cannot set up the device: %s", disk->path,
		 strerror(-ret));
	virtio_blk_destroy(b);
	return ret;
}

int virtio_blk_start(struct virtio_blk *b, int kick_fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = TAG_KICK };
	int ret;

	b->kick_fd = kick_fd;
	if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, kick_fd, &ev) < 0)
		return -errno;
	ret = pthread_create(&b->thread, NULL, blk_thread, b);
	if (ret)
		return -ret;
	b->thread_started = true;
	return 0;
}

void virtio_blk_destroy(struct virtio_blk *b)
{
	if (!b)
		return;
	if (b->thread_started) {
		ctl_request(b, CTL_STOP);
		pthread_join(b->thread, NULL);
	}
	/* Closing commits the VHDX metadata and leaves its log clean. */
	if (b->disk && vdisk_close(b->disk))
		log_error("disk %s: closing failed; run fsvisor disk check", b->cfg->path);
	if (b->epfd >= 0)
		close(b->epfd);
	if (b->ctl_fd >= 0)
		close(b->ctl_fd);
	if (b->dev.vq)
		virtio_dev_destroy(&b->dev);
	free(b->reqs);
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
	free(b);
}

/* ---- in a VM ------------------------------------------------------------ */

struct blk_attachment {
	struct virtio_blk *blk;
	struct virtio_pci *vp;
};

static void attachment_reset(void *opaque)
{
	struct blk_attachment *a = opaque;

	virtio_pci_reset(a->vp);
}

static json_t *attachment_stats(void *opaque)
{
	struct virtio_blk *b = ((struct blk_attachment *)opaque)->blk;

	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
		"path", b->cfg->path,
		"reads", (json_int_t)atomic_load(&b->n_read),
		"read_bytes", (json_int_t)atomic_load(&b->read_bytes),
		"writes", (json_int_t)atomic_load(&b->n_write),
		"write_bytes", (json_int_t)atomic_load(&b->write_bytes),
		"flushes", (json_int_t)atomic_load(&b->n_flush),
		"discards", (json_int_t)atomic_load(&b->n_discard),
		"errors", (json_int_t)atomic_load(&b->n_error));
}

/* A capture: nothing in flight, all of it on the disk; then on again. */
static void attachment_quiesce(void *opaque, bool on)
{
	struct virtio_blk *b = ((struct blk_attachment *)opaque)->blk;

	if (on)
		ctl_request(b, CTL_QUIESCE);
	else if ((b->dev.status & VIRTIO_CONFIG_S_DRIVER_OK) && !b->dev.broken)
		blk_activate(&b->dev);
}

static void attachment_destroy(void *opaque)
{
	struct blk_attachment *a = opaque;

	/* The I/O thread stops and the disk closes before the transport goes. */
	virtio_blk_destroy(a->blk);
	virtio_pci_destroy(a->vp);
	free(a);
}

int virtio_blk_attach(struct vm *vm, const struct vm_disk_config *disk, char *err,
		      size_t errlen)
{
	struct blk_attachment *a = calloc(1, sizeof(*a));
	int ret;

	if (!a)
		return -ENOMEM;
	ret = virtio_blk_create(disk, &vm->mem, &a->blk, err, errlen);
	if (ret) {
		free(a);
		return ret;
	}
	a->vp = virtio_pci_create(vm, &a->blk->dev, err, errlen);
	if (!a->vp) {
		virtio_blk_destroy(a->blk);
		free(a);
		return -ENOMEM;
	}
	ret = virtio_blk_start(a->blk, virtio_pci_kick_fd(a->vp, 0));
	if (!ret)
		ret = vm_add_device(vm, attachment_reset, attachment_destroy,
				    attachment_stats, a);
	if (!ret)
		vm_device_quiesce(vm, attachment_quiesce);
	if (ret) {
		snprintf(err, errlen, "disk %s: cannot start its I/O thread: %s",
			 disk->path, strerror(-ret));
		attachment_destroy(a);
	}
	return ret;
}
