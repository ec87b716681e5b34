// SPDX-License-Identifier: MIT
/*
 * The virtqueue parser against hostile drivers: targeted malformed chains
 * and a property test over random descriptor tables.  Whatever the guest
 * writes, virtq_pop() returns buffers inside guest RAM or refuses, and
 * never loops.  Run under ASan, any host access outside guest memory
 * would be caught too.  At the device level, a malformed chain marks
 * virtio-blk NEEDS_RESET.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/virtio/virtio.h"
#include "xorshift.h"

#define RAM (2 * 1024 * 1024)

static struct guest_mem mem;
static struct iovec iov[64];

static void setup(void)
{
	char err[256];

	cr_assert_eq(mem_create(&mem, RAM, err, sizeof(err)), 0, "%s", err);
}

static void teardown(void)
{
	mem_destroy(&mem);
}

TestSuite(virtq, .init = setup, .fini = teardown, .timeout = 120);

static void *gpa(uint64_t a)
{
	return mem.base + a;
}

/* A queue of @size with rings at fixed places in low memory. */
static struct virtq make_queue(uint16_t size, bool indirect)
{
	struct virtq q = { .size = size, .desc_gpa = 0x1000, .avail_gpa = 0x3000,
			   .used_gpa = 0x4000, .indirect = indirect };

	memset(gpa(0x1000), 0, 0x8000);
	cr_assert_eq(virtq_enable(&q, &mem), 0);
	return q;
}

static struct vring_desc *desc(int i)
{
	return (struct vring_desc *)gpa(0x1000) + i;
}

static void offer(struct virtq *q, uint16_t head)
{
	struct vring_avail *a = gpa(q->avail_gpa);

	a->ring[a->idx % q->size] = head;
	a->idx++;
}

static int pop(struct virtq *q, struct virtq_elem *e)
{
	e->iov = iov;
	e->cap = ARRAY_SIZE(iov);
	return virtq_pop(q, e);
}

static void set(int i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	*desc(i) = (struct vring_desc){ .addr = addr, .len = len, .flags = flags,
					.next = next };
}

Test(virtq, good_chain_and_used_ring)
{
	struct virtq q = make_queue(8, false);
	struct virtq_elem e;
	struct vring_used *u;

	set(0, 0x10000, 16, VRING_DESC_F_NEXT, 1);
	set(1, 0x20000, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
	set(2, 0x30000, 1, VRING_DESC_F_WRITE, 0);
	offer(&q, 0);
	cr_assert_eq(pop(&q, &e), 1);
	cr_assert_eq(e.out_num, 1);
	cr_assert_eq(e.in_num, 2);
	cr_assert_eq(e.in_len, 513);
	cr_assert_eq(e.iov[1].iov_base, gpa(0x20000));
	cr_assert_eq(pop(&q, &e), 0, "the ring is empty now");
	virtq_push(&q, e.head, 513);
	u = gpa(q.used_gpa);
	cr_assert_eq(u->idx, 0, "not visible before publishing");
	virtq_publish(&q);
	cr_assert_eq(u->idx, 1);
	cr_assert_eq(u->ring[0].id, 0);
	cr_assert_eq(u->ring[0].len, 513);
}

Test(virtq, malformed_chains_are_refused)
{
	struct virtq_elem e;
	struct virtq q;

	/* A loop: 0 -> 1 -> 0. */
	q = make_queue(8, false);
	set(0, 0x10000, 16, VRING_DESC_F_NEXT, 1);
	set(1, 0x10000, 16, VRING_DESC_F_NEXT, 0);
	offer(&q, 0);
	cr_assert_eq(pop(&q, &e), -EINVAL, "loop");

	/* A buffer outside guest RAM, and one running off its end. */
	q = make_queue(8, false);
	set(0, RAM + 4096, 16, 0, 0);
	offer(&q, 0);
	cr_assert_eq(pop(&q, &e), -EINVAL, "outside RAM");
	q = make_queue(8, false);
	set(0, RAM - 8, 16, 0, 0);
	offer(&q, 0);
	cr_assert_eq(pop(&q, &e), -EINVAL, "across the end of RAM");
	q = make_queue(8, false);
	set(0, UINT64_MAX - 4, 16, 0, 0);
	offer(&q, 0);
	cr_assert_eq(pop(&q, &e), -EINVAL, "wrapping address");

	/* next beyond the table; head beyond the table. */
	q = make_queue(8, false);
	set(0, 0x10000, 16, VRING_DESC_F_NEXT, 8);
	offer(&q, 0);
	cr_assert_eq(pop(&q, &e), -EINVAL, "next out of range");
	q = make_queue(8, false);
	offer(&q, 9);
	cr_assert_eq(pop(&q, &e), -EINVAL, "head out of range");

	/* Readable after writable. */
	q = make_queue(8, false);
	set(0, 0x10000, 16, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
	set(1, 0x10000, 16, 0, 0);
	offer(&q, 0);
	cr_assert_eq(pop(&q, &e), -EINVAL, "readable after writable");

	/* The driver claims more new entries than the ring holds. */
	q = make_queue(8, false);
	((struct vring_avail *)gpa(q.avail_gpa))->idx = 9;
	cr_assert_eq(pop(&q, &e), -EINVAL, "avail index too far ahead");

	/* Indirect: not negotiated; nested; with NEXT; bad length. */
	q = make_queue(8, false);
	set(0, 0x50000, 32, VRING_DESC_F_INDIRECT, 0);
	offer(&q, 0);
	cr_assert_eq(pop(&q, &e), -EINVAL, "indirect not negotiated");
	q = make_queue(8, true);
	set(0, 0x50000, 32, VRING_DESC_F_INDIRECT, 0);
	*(struct vring_desc *)gpa(0x50000) = (struct vring_desc){ 0x50000, 32,
								  VRING_DESC_F_INDIRECT, 0 };
	offer(&q, 0);
	cr_assert_eq(pop(&q, &e), -EINVAL, "nested indirect");
	q = make_queue(8, true);
	set(0, 0x50000, 32, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
	offer(&q, 0);
	cr_assert_eq(pop(&q, &e), -EINVAL, "indirect with NEXT");
	q = make_queue(8, true);
	set(0, 0x50000, 33, VRING_DESC_F_INDIRECT, 0);
	offer(&q, 0);
	cr_assert_eq(pop(&q, &e), -EINVAL, "indirect length not whole descriptors");

	/* More buffers than the element holds. */
	q = make_queue(128, false);
	for (int i = 0; i < 100; i++)
		set(i, 0x10000 + i * 16, 16, VRING_DESC_F_NEXT, (uint16_t)(i + 1));
	set(100, 0x10000, 16, 0, 0);
	offer(&q, 0);
	cr_assert_eq(pop(&q, &e), -EINVAL, "too many segments");
}

Test(virtq, zero_lengths_and_indirect)
{
	struct virtq q = make_queue(8, true);
	struct vring_desc *itab = gpa(0x50000);
	struct virtq_elem e;

	/* Zero-length buffers are allowed and simply not mapped. */
	set(0, RAM + 1000000, 0, VRING_DESC_F_NEXT, 1);
	set(1, 0x10000, 8, 0, 0);
	offer(&q, 0);
	cr_assert_eq(pop(&q, &e), 1);
	cr_assert_eq(e.out_num, 1);
	cr_assert_eq(e.out_len, 8);

	itab[0] = (struct vring_desc){ 0x11000, 16, VRING_DESC_F_NEXT, 1 };
	itab[1] = (struct vring_desc){ 0x12000, 4096, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2 };
	itab[2] = (struct vring_desc){ 0x13000, 1, VRING_DESC_F_WRITE, 0 };
	set(2, 0x50000, 3 * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
	offer(&q, 2);
	cr_assert_eq(pop(&q, &e), 1);
	cr_assert_eq(e.out_num, 1);
	cr_assert_eq(e.in_num, 2);
	cr_assert_eq(e.in_len, 4097);
	/* A loop inside the indirect table. */
	itab[2] = (struct vring_desc){ 0x13000, 1, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 0 };
	offer(&q, 2);
	cr_assert_eq(pop(&q, &e), -EINVAL, "loop in an indirect table");
}

static uint64_t rng;

static uint64_t rnd(void)
{
	return xorshift64(&rng);
}

/* Addresses that hit RAM, its edges, and far beyond. */
static uint64_t rnd_addr(void)
{
	switch (rnd() % 6) {
	case 0:
		return rnd();
	case 1:
		return RAM - rnd() % 64;
	case 2:
		return RAM + rnd() % 4096;
	default:
		return rnd() % RAM;
	}
}

static uint32_t rnd_len(void)
{
	switch (rnd() % 5) {
	case 0:
		return 0;
	case 1:
		return (uint32_t)rnd();
	case 2:
		return (uint32_t)(rnd() % (RAM * 2));
	default:
		return (uint32_t)(rnd() % 4096);
	}
}

static void rnd_descs(void *at, unsigned int n, unsigned int next_range)
{
	for (unsigned int i = 0; i < n; i++) {
		struct vring_desc d = {
			.addr = rnd_addr(),
			.len = rnd_len(),
			.flags = (uint16_t)(rnd() % 8),	/* NEXT, WRITE, INDIRECT */
			.next = (uint16_t)(rnd() % (next_range + 2)),
		};

		/* Indirect tables: point some into the table area. */
		if ((d.flags & VRING_DESC_F_INDIRECT) && rnd() % 2) {
			d.addr = 0x40000 + (rnd() % 64) * 16;
			d.len = (uint32_t)(rnd() % 32) * 16 + (rnd() % 8 == 0);
		}
		memcpy((char *)at + i * sizeof(d), &d, sizeof(d));
	}
}

static bool inside_ram(const struct iovec *v)
{
	const uint8_t *p = v->iov_base;

	return p >= mem.base && p + v->iov_len <= mem.base + mem.size &&
	       p + v->iov_len >= p;
}

Test(virtq, random_tables_property)
{
	unsigned int ok = 0, refused = 0;

	rng = 0x5eed5eed1234ULL;
	for (int trial = 0; trial < 20000; trial++) {
		uint16_t size = (uint16_t)(1u << (rnd() % 9));
		struct virtq q = { .size = size, .desc_gpa = 0x1000, .avail_gpa = 0x30000,
				   .used_gpa = 0x38000, .indirect = rnd() % 2 };
		struct vring_avail *a;

		rnd_descs(gpa(0x1000), size, size);
		rnd_descs(gpa(0x40000), 64, 64);
		cr_assert_eq(virtq_enable(&q, &mem), 0);
		a = gpa(q.avail_gpa);
		a->idx = (uint16_t)(rnd() % 4 ? rnd() % (size + 1) : rnd());
		for (unsigned int i = 0; i <= size; i++)
			a->ring[i] = (uint16_t)(rnd() % 4 ? rnd() % size : rnd());

		/* At most a ring's worth of requests: no endless popping. */
		for (unsigned int n = 0; n <= size; n++) {
			struct virtq_elem e;
			int ret = pop(&q, &e);

			if (ret <= 0) {
				refused += ret < 0;
				break;
			}
			ok++;
			cr_assert_leq(e.out_num + e.in_num, e.cap);
			for (unsigned int k = 0; k < e.out_num + e.in_num; k++)
				cr_assert(inside_ram(&e.iov[k]),
					  "trial %d: buffer %u outside guest RAM", trial, k);
		}
	}
	/* The generator must exercise both outcomes. */
	cr_assert_gt(ok, 1000, "only %u good chains", ok);
	cr_assert_gt(refused, 1000, "only %u refusals", refused);
}

Test(virtq, enable_checks_rings)
{
	struct virtq q = { .size = 8, .desc_gpa = RAM - 64, .avail_gpa = 0x3000,
			   .used_gpa = 0x4000 };

	cr_assert_eq(virtq_enable(&q, &mem), -EINVAL, "descriptor table off the end");
	q.desc_gpa = 0x1008;
	cr_assert_eq(virtq_enable(&q, &mem), -EINVAL, "misaligned descriptor table");
	q.desc_gpa = 0x1000;
	q.size = 6;
	cr_assert_eq(virtq_enable(&q, &mem), -EINVAL, "size not a power of two");
	q.size = 2048;
	cr_assert_eq(virtq_enable(&q, &mem), -EINVAL, "size too large");
	q.size = 8;
	q.used_gpa = 0x4002;
	cr_assert_eq(virtq_enable(&q, &mem), -EINVAL, "misaligned used ring");
}

/* ---- the device marks itself broken ------------------------------------------ */

static _Atomic int config_irqs;

static void count_irq(struct virtio_dev *dev, int queue)
{
	(void)dev;
	if (queue < 0)
		atomic_fetch_add(&config_irqs, 1);
}

Test(virtq, blk_device_goes_broken)
{
	char path[] = "/tmp/fsvisor-vq-XXXXXX", err[512];
	struct vm_disk_config cfg = { .format = 2 /* raw */ };
	int fd = mkstemp(path), kick = eventfd(0, EFD_CLOEXEC);
	struct virtio_blk *b;
	struct virtio_dev *dev;
	uint64_t one = 1;

	cr_assert_eq(ftruncate(fd, 1 << 20), 0);
	close(fd);
	cfg.path = path;
	cr_assert_eq(virtio_blk_create(&cfg, &mem, &b, err, sizeof(err)), 0, "%s", err);
	dev = virtio_blk_dev(b);
	dev->transport.interrupt = count_irq;
	dev->guest_features = dev->host_features;
	virtio_set_status(dev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			       VIRTIO_CONFIG_S_FEATURES_OK);
	dev->vq[0].size = 8;
	dev->vq[0].desc_gpa = 0x1000;
	dev->vq[0].avail_gpa = 0x3000;
	dev->vq[0].used_gpa = 0x4000;
	memset(gpa(0x1000), 0, 0x8000);
	cr_assert_eq(virtio_queue_enable(dev, 0), 0);
	cr_assert_eq(virtio_blk_start(b, kick), 0);
	virtio_set_status(dev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			       VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	/* A chain that loops on itself. */
	set(0, 0x10000, 16, VRING_DESC_F_NEXT, 0);
	{
		struct vring_avail *a = gpa(0x3000);

		a->ring[0] = 0;
		__atomic_store_n(&a->idx, 1, __ATOMIC_RELEASE);
	}
	cr_assert_eq(write(kick, &one, sizeof(one)), 8);
	for (int i = 0; i < 500 && !(dev->status & VIRTIO_CONFIG_S_NEEDS_RESET); i++)
		usleep(10000);
	cr_assert(dev->status & VIRTIO_CONFIG_S_NEEDS_RESET, "device not marked broken");
	cr_assert_geq(atomic_load(&config_irqs), 1, "no configuration interrupt");
	/* A reset makes it usable again. */
	virtio_set_status(dev, 0);
	cr_assert_eq(dev->status, 0);
	cr_assert(!dev->broken);
	virtio_blk_destroy(b);
	close(kick);
	unlink(path);
}

static void no_irq(struct virtio_dev *dev, int queue)
{
	(void)dev;
	(void)queue;
}

static const struct virtio_dev_ops test_ops = { .name = "test", .device_id = 99 };

Test(virtq, feature_negotiation)
{
	struct virtio_dev dev;
	const uint8_t want = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			     VIRTIO_CONFIG_S_FEATURES_OK;

	cr_assert_eq(virtio_dev_init(&dev, &test_ops, NULL, 1, 8, 1ULL << 5, &mem), 0);
	dev.transport.interrupt = no_irq;
	cr_assert(dev.host_features & (1ULL << VIRTIO_F_VERSION_1));

	/* Without VERSION_1 the device refuses FEATURES_OK. */
	dev.guest_features = 1ULL << 5;
	virtio_set_status(&dev, want);
	cr_assert(!(dev.status & VIRTIO_CONFIG_S_FEATURES_OK));

	/* Nor features it never offered. */
	virtio_set_status(&dev, 0);
	dev.guest_features = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << 7);
	virtio_set_status(&dev, want);
	cr_assert(!(dev.status & VIRTIO_CONFIG_S_FEATURES_OK));

	virtio_set_status(&dev, 0);
	dev.guest_features = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << 5);
	virtio_set_status(&dev, want);
	cr_assert(dev.status & VIRTIO_CONFIG_S_FEATURES_OK);

	/* NEEDS_RESET stays until a reset; the driver cannot clear it. */
	virtio_dev_broken(&dev, "test");
	virtio_set_status(&dev, want);
	cr_assert(dev.status & VIRTIO_CONFIG_S_NEEDS_RESET);
	virtio_set_status(&dev, 0);
	cr_assert_eq(dev.status, 0);
	virtio_dev_destroy(&dev);
}
