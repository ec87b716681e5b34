// SPDX-License-Identifier: MIT
/*
 * The host-side cost of the virtio-blk device model.  The guest is
 * emulated on the build machines and far too slow to measure, so this
 * harness plays the driver: it lays descriptor rings and buffers in guest
 * memory (a memfd, as in a VM), posts 4 KiB random reads or writes at a
 * fixed depth, and kicks the device's eventfd when the device asks for
 * kicks.  It waits for completions as a guest with hybrid polling does:
 * it watches the used ring for a while, then turns interrupts on and
 * sleeps on the device's interrupt.  The peer is the same pattern
 * submitted straight to the disk library.
 *
 *   blk_bench [--rw randread|randwrite] [--qd N] [--count N] IMAGE
 *
 * Prints "virtio_iops=... direct_iops=... ratio=..." (medians of 3
 * alternating runs).
 */
#include <errno.h>
#include <getopt.h>
#include <linux/virtio_blk.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "vhdx/vhdx.h"
#include "vmm/virtio/virtio.h"

#define BS 4096
#define QSIZE 256
#define RAM (64 * 1024 * 1024)

/* Guest-physical layout of the harness's structures. */
#define G_DESC	0x10000
#define G_AVAIL	0x20000
#define G_USED	0x30000
#define G_HDR	0x40000		/* 16 bytes per slot */
#define G_STATUS 0x50000	/* 1 byte per slot */
#define G_DATA	0x100000	/* 4 KiB per slot */

static uint64_t rng = 0x243F6A8885A308D3ULL;
static bool writes;
static uint64_t blocks;

static uint64_t next_offset(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (rng % blocks) * BS;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- through the device model ------------------------------------------- */

static int irq_fd;

static void on_interrupt(struct virtio_dev *dev, int queue)
{
	uint64_t one = 1;

	(void)dev;
	(void)queue;
	if (write(irq_fd, &one, sizeof(one)) < 0) {
		/* saturated: the driver will look anyway */
	}
}

static void post(struct guest_mem *m, uint16_t slot, uint16_t *avail_idx)
{
	struct vring_desc *d = (struct vring_desc *)(m->base + G_DESC) + 3 * slot;
	struct virtio_blk_outhdr *h =
		(struct virtio_blk_outhdr *)(m->base + G_HDR) + slot;
	struct vring_avail *a = (struct vring_avail *)(m->base + G_AVAIL);

	h->type = writes ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
	h->sector = next_offset() / 512;
	d[0] = (struct vring_desc){ G_HDR + 16ULL * slot, 16, VRING_DESC_F_NEXT,
				    (uint16_t)(3 * slot + 1) };
	d[1] = (struct vring_desc){ G_DATA + (uint64_t)BS * slot, BS,
				    (uint16_t)(VRING_DESC_F_NEXT | (writes ? 0 : VRING_DESC_F_WRITE)),
				    (uint16_t)(3 * slot + 2) };
	d[2] = (struct vring_desc){ G_STATUS + slot, 1, VRING_DESC_F_WRITE, 0 };
	a->ring[*avail_idx % QSIZE] = (uint16_t)(3 * slot);
	(*avail_idx)++;
}

#define SPIN_NS 50000

static uint16_t wait_used(struct vring_used *u, struct vring_avail *a, uint16_t seen)
{
	double until = now() + SPIN_NS / 1e9;
	uint16_t idx;

	while ((idx = __atomic_load_n(&u->idx, __ATOMIC_ACQUIRE)) == seen) {
		uint64_t v;

		if (now() < until) {
			__builtin_ia32_pause();
			continue;
		}
		/* Interrupts on, look once more, then sleep for one. */
		__atomic_store_n(&a->flags, 0, __ATOMIC_RELEASE);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (__atomic_load_n(&u->idx, __ATOMIC_ACQUIRE) == seen &&
		    read(irq_fd, &v, sizeof(v)) < 0)
			exit(1);
		__atomic_store_n(&a->flags, VRING_AVAIL_F_NO_INTERRUPT, __ATOMIC_RELEASE);
		until = now() + SPIN_NS / 1e9;
	}
	return idx;
}

static double run_virtio(const char *path, unsigned int qd, uint64_t count)
{
	struct vm_disk_config cfg = { .path = (char *)path };
	struct guest_mem m;
	struct virtio_blk *b;
	struct virtio_dev *dev;
	struct vring_avail *a;
	struct vring_used *u;
	uint16_t avail_idx = 0, used_seen = 0;
	uint64_t done = 0, issued = 0, one = 1;
	int kick = eventfd(0, EFD_CLOEXEC);
	char err[512];
	double t0, t;

	irq_fd = eventfd(0, EFD_CLOEXEC);
	if (mem_create(&m, RAM, err, sizeof(err)) ||
	    virtio_blk_create(&cfg, &m, &b, err, sizeof(err))) {
		fprintf(stderr, "blk_bench: %s\n", err);
		exit(1);
	}
	memset(m.base, 0, G_DATA);
	dev = virtio_blk_dev(b);
	dev->transport.interrupt = on_interrupt;
	/* No EVENT_IDX: every batch is kicked and interrupted. */
	dev->guest_features = (1ULL << VIRTIO_F_VERSION_1);
	virtio_set_status(dev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			       VIRTIO_CONFIG_S_FEATURES_OK);
	dev->vq[0].size = QSIZE;
	dev->vq[0].desc_gpa = G_DESC;
	dev->vq[0].avail_gpa = G_AVAIL;
	dev->vq[0].used_gpa = G_USED;
	if (virtio_queue_enable(dev, 0) || virtio_blk_start(b, kick)) {
		fprintf(stderr, "blk_bench: cannot start the device\n");
		exit(1);
	}
	virtio_set_status(dev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	a = (struct vring_avail *)(m.base + G_AVAIL);
	u = (struct vring_used *)(m.base + G_USED);
	/* A polling driver wants no interrupts. */
	a->flags = VRING_AVAIL_F_NO_INTERRUPT;

	t0 = now();
	for (unsigned int s = 0; s < qd && issued < count; s++, issued++)
		post(&m, (uint16_t)s, &avail_idx);
	__atomic_store_n(&a->idx, avail_idx, __ATOMIC_RELEASE);
	if (write(kick, &one, sizeof(one)) < 0)
		exit(1);
	while (done < count) {
		uint16_t used_idx;
		bool posted = false;

		/*
		 * Poll the used ring briefly, then sleep on the interrupt, as a
		 * guest with hybrid polling (or KVM's halt polling) would: the
		 * guest's own wakeups are not the device model's cost.
		 */
		used_idx = wait_used(u, a, used_seen);
		while (used_seen != used_idx) {
			uint16_t slot = (uint16_t)(u->ring[used_seen % QSIZE].id / 3);

			if (m.base[G_STATUS + slot] != VIRTIO_BLK_S_OK) {
				fprintf(stderr, "blk_bench: request failed\n");
				exit(1);
			}
			used_seen++;
			done++;
			if (issued < count) {
				post(&m, slot, &avail_idx);
				issued++;
				posted = true;
			}
		}
		if (posted) {
			__atomic_store_n(&a->idx, avail_idx, __ATOMIC_RELEASE);
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			/* Like Linux: no kick while the device says it polls. */
			if (!(__atomic_load_n(&u->flags, __ATOMIC_ACQUIRE) & VRING_USED_F_NO_NOTIFY) &&
			    write(kick, &one, sizeof(one)) < 0)
				exit(1);
		}
	}
	t = now() - t0;
	virtio_blk_destroy(b);
	mem_destroy(&m);
	close(kick);
	close(irq_fd);
	return (double)count / t;
}

/* ---- straight to the disk library ------------------------------------- */

struct slot {
	struct vdisk_req req;
	struct iovec iov;
};

static uint64_t d_done, d_issued, d_count;
static struct vdisk *d_disk;

static void direct_issue(struct slot *s)
{
	s->req.op = writes ? VDISK_WRITE : VDISK_READ;
	s->req.offset = next_offset();
	s->req.iov = &s->iov;
	s->req.iovcnt = 1;
	d_issued++;
	if (vdisk_submit(d_disk, &s->req))
		exit(1);
}

static void direct_done(struct vdisk_req *req, int res)
{
	if (res)
		exit(1);
	d_done++;
	if (d_issued < d_count)
		direct_issue((struct slot *)req);
}

static double run_direct(const char *path, unsigned int qd, uint64_t count)
{
	struct slot *slots = calloc(qd, sizeof(*slots));
	char err[512];
	double t0, t;

	if (vdisk_open(path, NULL, &d_disk, err, sizeof(err))) {
		fprintf(stderr, "blk_bench: %s\n", err);
		exit(1);
	}
	d_done = d_issued = 0;
	d_count = count;
	for (unsigned int i = 0; i < qd; i++) {
		slots[i].iov.iov_base = aligned_alloc(4096, BS);
		memset(slots[i].iov.iov_base, 0x5A, BS);
		slots[i].iov.iov_len = BS;
		slots[i].req.done = direct_done;
	}
	t0 = now();
	for (unsigned int i = 0; i < qd && d_issued < count; i++)
		direct_issue(&slots[i]);
	while (d_done < count)
		if (io_engine_run(vdisk_engine(d_disk), 1) < 0)
			exit(1);
	t = now() - t0;
	vdisk_close(d_disk);
	for (unsigned int i = 0; i < qd; i++)
		free(slots[i].iov.iov_base);
	free(slots);
	return (double)count / t;
}

static double median3(double a, double b, double c)
{
	if ((a <= b && b <= c) || (c <= b && b <= a))
		return b;
	if ((b <= a && a <= c) || (c <= a && a <= b))
		return a;
	return c;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "rw", required_argument, NULL, 'r' },
		{ "qd", required_argument, NULL, 'q' },
		{ "count", required_argument, NULL, 'c' },
		{ 0 },
	};
	unsigned int qd = 32;
	uint64_t count = 200000;
	double v[3], d[3];
	struct vdisk *probe;
	char err[512];
	int c;

	while ((c = getopt_long(argc, argv, "r:q:c:", opts, NULL)) != -1) {
		if (c == 'r')
			writes = strcmp(optarg, "randwrite") == 0;
		else if (c == 'q')
			qd = (unsigned int)atoi(optarg);
		else if (c == 'c')
			count = strtoull(optarg, NULL, 10);
		else
			return 2;
	}
	if (optind != argc - 1 || qd < 1 || qd > QSIZE / 3) {
		fprintf(stderr, "usage: blk_bench [--rw randread|randwrite] [--qd 1-85] [--count N] IMAGE\n");
		return 2;
	}
	if (vdisk_open(argv[optind], NULL, &probe, err, sizeof(err))) {
		fprintf(stderr, "blk_bench: %s\n", err);
		return 1;
	}
	blocks = vdisk_info(probe)->virtual_size / BS;
	vdisk_close(probe);
	for (int i = 0; i < 3; i++) {
		v[i] = run_virtio(argv[optind], qd, count);
		d[i] = run_direct(argv[optind], qd, count);
	}
	printf("virtio_iops=%.0f direct_iops=%.0f ratio=%.2f\n", median3(v[0], v[1], v[2]),
	       median3(d[0], d[1], d[2]), median3(v[0], v[1], v[2]) / median3(d[0], d[1], d[2]));
	return 0;
}
