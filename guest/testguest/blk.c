// SPDX-License-Identifier: MIT
/*
 * The virtio-blk tests.  "blk" writes a seeded pattern across VHDX block
 * boundaries with several requests in flight and multi-segment chains,
 * reads it back (one chain indirect), flushes, discards a whole block,
 * writes zeros across a boundary, checks the result, the serial number
 * and the errors for bad requests.  The host checks the disk afterwards
 * (blk_layout.h says what it must hold).  "blkro" checks that a
 * read-only disk refuses writes with IOERR.
 */
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>

#include "blk_layout.h"
#include "guest.h"
#include "virtio.h"

#define QSIZE 64
#define SECTOR 512u
#define TIMEOUT_US 30000000

static struct vring_desc ring_desc[QSIZE] __attribute__((aligned(4096)));
static struct {
	uint16_t flags, idx, ring[QSIZE], used_event;
} ring_avail __attribute__((aligned(4096)));
static struct {
	uint16_t flags, idx;
	struct vring_used_elem ring[QSIZE];
	uint16_t avail_event;
} ring_used __attribute__((aligned(4096)));

struct slot {
	struct virtio_blk_outhdr hdr;
	uint8_t status;
	struct virtio_blk_discard_write_zeroes range;
	struct vring_desc itab[8];
};

static struct slot slots[16] __attribute__((aligned(64)));
static uint8_t wbuf[BLK_TEST_WLEN] __attribute__((aligned(4096)));
static uint8_t rbuf[BLK_TEST_WLEN] __attribute__((aligned(4096)));
static uint16_t next_desc;

struct seg {
	void *addr;
	uint32_t len;
};

static uint16_t desc_add(struct vring_desc *table, uint16_t *n, const void *addr,
			 uint32_t len, uint16_t flags)
{
	uint16_t i = (*n)++;

	table[i].addr = (uint64_t)addr;
	table[i].len = len;
	table[i].flags = flags;
	table[i].next = (uint16_t)(i + 1);
	return i;
}

/* header, data segments, status: in @table from *@n on. */
static uint16_t build_chain(struct vring_desc *table, uint16_t *n, struct slot *s,
			    const struct seg *segs, unsigned int nseg,
			    bool device_writes)
{
	uint16_t head = desc_add(table, n, &s->hdr, sizeof(s->hdr), VRING_DESC_F_NEXT);

	for (unsigned int i = 0; i < nseg; i++)
		desc_add(table, n, segs[i].addr, segs[i].len,
			 VRING_DESC_F_NEXT | (device_writes ? VRING_DESC_F_WRITE : 0));
	desc_add(table, n, &s->status, 1, VRING_DESC_F_WRITE);
	s->status = 0xEE;
	return head;
}

static uint16_t request(struct slot *s, uint32_t type, uint64_t sector,
			const struct seg *segs, unsigned int nseg, bool device_writes,
			bool indirect)
{
	s->hdr.type = type;
	s->hdr.ioprio = 0;
	s->hdr.sector = sector;
	if (indirect) {
		uint16_t n = 0;

		build_chain(s->itab, &n, s, segs, nseg, device_writes);
		return desc_add(ring_desc, &next_desc, s->itab,
				(uint32_t)(n * sizeof(struct vring_desc)), VRING_DESC_F_INDIRECT);
	}
	return build_chain(ring_desc, &next_desc, s, segs, nseg, device_writes);
}

/* Submit @n prepared chains at once; wait for all. */
static bool run_batch(struct vdev *v, const uint16_t *heads, unsigned int n, char *why,
		      const char *what)
{
	virtio_kick(v, heads, n);
	if (virtio_wait(v, n, TIMEOUT_US)) {
		printf("blk: %s timed out (status %x)\n", what, virtio_status(v));
		memcpy(why, "a request never completed", 26);
		return false;
	}
	next_desc = 0;
	return true;
}

static bool one(struct vdev *v, uint32_t type, uint64_t sector, void *buf,
		uint32_t len, bool device_writes, uint8_t want, char *why,
		const char *what)
{
	struct seg s = { buf, len };
	uint16_t head = request(&slots[0], type, sector, &s, buf ? 1 : 0,
				device_writes, false);

	if (!run_batch(v, &head, 1, why, what))
		return false;
	if (slots[0].status != want) {
		printf("blk: %s: status %u, expected %u\n", what, slots[0].status, want);
		memcpy(why, "wrong status", 13);
		return false;
	}
	return true;
}

static uint64_t arg_u64(const char *name, uint64_t dflt)
{
	const char *p = cmdline_arg(name);
	uint64_t v = 0;

	if (!p)
		return dflt;
	if (p[0] == '0' && p[1] == 'x') {
		for (p += 2; *p && *p != ' '; p++)
			v = v * 16 + (uint64_t)(*p <= '9' ? *p - '0' : (*p | 0x20) - 'a' + 10);
		return v;
	}
	for (; *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (uint64_t)(*p - '0');
	return v;
}

/* @a equals the word at @b (which ends at a space or the end). */
static bool same_word(const char *a, const char *b)
{
	size_t n = 0;

	while (b[n] && b[n] != ' ')
		n++;
	return strlen(a) == n && strncmp(a, b, n) == 0;
}

/* The pattern of W in wbuf: a template sector copied, its offset stamped. */
static void fill_pattern(uint64_t seed)
{
	uint64_t tmpl[SECTOR / 8];

	for (unsigned int i = 1; i < SECTOR / 8; i++)
		tmpl[i] = blk_test_word(seed, i * 8);
	for (uint64_t off = 0; off < BLK_TEST_WLEN; off += SECTOR) {
		tmpl[0] = blk_test_word(seed, BLK_TEST_W0 + off);
		memcpy(wbuf + off, tmpl, SECTOR);
	}
}

/* Where rbuf and wbuf first differ, for the message. */
static void report_mismatch(void)
{
	for (uint64_t off = 0; off < BLK_TEST_WLEN; off += 8) {
		uint64_t got, want;

		memcpy(&got, rbuf + off, 8);
		memcpy(&want, wbuf + off, 8);
		if (got != want) {
			printf("blk: mismatch at disk offset %lx: %lx, expected %lx\n",
			       BLK_TEST_W0 + off, got, want);
			return;
		}
	}
}

static int check_read(void)
{
	if (memcmp(rbuf, wbuf, BLK_TEST_WLEN) == 0)
		return 0;
	report_mismatch();
	return -1;
}

/* Read all of W back: 128 KiB requests, 5 in flight, one indirect. */
static bool read_back(struct vdev *v, char *why)
{
	const uint32_t chunk = 128 * 1024;

	memset(rbuf, 0xAA, sizeof(rbuf));
	for (uint32_t done = 0; done < BLK_TEST_WLEN;) {
		uint16_t heads[5];
		unsigned int n = 0;

		while (n < 5 && done < BLK_TEST_WLEN) {
			struct seg s = { rbuf + done, chunk };

			heads[n] = request(&slots[n], VIRTIO_BLK_T_IN,
					   (BLK_TEST_W0 + done) / SECTOR, &s, 1, true, n == 2);
			n++;
			done += chunk;
		}
		if (!run_batch(v, heads, n, why, "read"))
			return false;
		for (unsigned int i = 0; i < n; i++)
			if (slots[i].status != VIRTIO_BLK_S_OK) {
				memcpy(why, "a read failed", 14);
				return false;
			}
	}
	return true;
}

static bool write_pattern(struct vdev *v, char *why)
{
	const uint32_t chunk = 64 * 1024;

	for (uint32_t done = 0; done < BLK_TEST_WLEN;) {
		uint16_t heads[4];
		unsigned int n = 0;

		/* Four in flight, each in two segments. */
		while (n < 4 && done < BLK_TEST_WLEN) {
			struct seg s[2] = { { wbuf + done, chunk / 2 },
					    { wbuf + done + chunk / 2, chunk / 2 } };

			heads[n] = request(&slots[n], VIRTIO_BLK_T_OUT,
					   (BLK_TEST_W0 + done) / SECTOR, s, 2, false, false);
			n++;
			done += chunk;
		}
		if (!run_batch(v, heads, n, why, "write"))
			return false;
		for (unsigned int i = 0; i < n; i++)
			if (slots[i].status != VIRTIO_BLK_S_OK) {
				memcpy(why, "a write failed", 15);
				return false;
			}
	}
	return true;
}

static bool range_op(struct vdev *v, uint32_t type, uint64_t start, uint64_t len,
		     char *why, const char *what)
{
	slots[1].range.sector = start / SECTOR;
	slots[1].range.num_sectors = (uint32_t)(len / SECTOR);
	slots[1].range.flags = 0;
	return one(v, type, 0, &slots[1].range, sizeof(slots[1].range), false,
		   VIRTIO_BLK_S_OK, why, what);
}

static int setup(struct vdev *v, bool want_ro, char *why)
{
	uint64_t want = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_INDIRECT_DESC) |
			(1ULL << VIRTIO_RING_F_EVENT_IDX) | (1ULL << VIRTIO_BLK_F_FLUSH) |
			(1ULL << VIRTIO_BLK_F_BLK_SIZE) | (1ULL << VIRTIO_BLK_F_SEG_MAX) |
			(1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES) |
			(1ULL << VIRTIO_BLK_F_RO);
	int ret;

	for (unsigned int nth = 0; nth < 8; nth++) {
		if (virtio_find(VIRTIO_ID_BLOCK, nth, v)) {
			memcpy(why, "no such virtio-blk device", 26);
			return -1;
		}
		if (!!(virtio_features(v) & (1ULL << VIRTIO_BLK_F_RO)) == want_ro)
			break;
	}
	v->q.desc = ring_desc;
	v->q.avail = (struct vring_avail *)&ring_avail;
	v->q.used = (struct vring_used *)&ring_used;
	ret = virtio_init(v, want, QSIZE);
	if (ret) {
		printf("blk: virtio_init failed at step %d\n", -ret);
		memcpy(why, "device initialization failed", 29);
		return -1;
	}
	return 0;
}

bool test_blk(char *why)
{
	uint64_t seed = arg_u64("blkseed", 0x5eed), capacity;
	const char *serial = cmdline_arg("blkserial");
	char id[VIRTIO_BLK_ID_BYTES + 1] = { 0 };
	unsigned int irq0;
	struct vdev v;

	if (setup(&v, false, why))
		return false;
	virtio_config_read(&v, 0, &capacity, 8);
	printf("blk: %lu sectors, features %lx\n", capacity, v.features);
	/* The same through the PCI configuration access window. */
	if (!v.cfg_cap ||
	    virtio_cfg_window_read(&v, v.device_bar, v.device_off) != (uint32_t)capacity) {
		memcpy(why, "the PCI config access window disagrees", 39);
		return false;
	}
	if (!(v.features & (1ULL << VIRTIO_BLK_F_DISCARD)) ||
	    !(v.features & (1ULL << VIRTIO_BLK_F_WRITE_ZEROES)) ||
	    !(v.features & (1ULL << VIRTIO_BLK_F_FLUSH))) {
		memcpy(why, "flush, discard or write-zeroes not offered", 43);
		return false;
	}
	irq0 = virtio_interrupts();

	if (!one(&v, VIRTIO_BLK_T_GET_ID, 0, id, VIRTIO_BLK_ID_BYTES, true,
		 VIRTIO_BLK_S_OK, why, "get id"))
		return false;
	printf("blk: serial '%s'\n", id);
	if (serial && !same_word(id, serial)) {
		memcpy(why, "wrong serial number", 20);
		return false;
	}

	fill_pattern(seed);
	if (!write_pattern(&v, why) || !read_back(&v, why))
		return false;
	if (check_read()) {
		memcpy(why, "read back other data", 21);
		return false;
	}
	if (!one(&v, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false, VIRTIO_BLK_S_OK, why, "flush") ||
	    !range_op(&v, VIRTIO_BLK_T_DISCARD, BLK_TEST_D0, BLK_TEST_DLEN, why, "discard") ||
	    !range_op(&v, VIRTIO_BLK_T_WRITE_ZEROES, BLK_TEST_Z0, BLK_TEST_ZLEN, why,
		      "write zeroes") ||
	    !read_back(&v, why))
		return false;
	/* What discard and write-zeroes should have left. */
	memset(wbuf + (BLK_TEST_D0 - BLK_TEST_W0), 0, BLK_TEST_DLEN);
	memset(wbuf + (BLK_TEST_Z0 - BLK_TEST_W0), 0, BLK_TEST_ZLEN);
	if (check_read()) {
		memcpy(why, "discard or write-zeroes went wrong", 35);
		return false;
	}
	/* Errors: past the end; a request type nobody knows. */
	if (!one(&v, VIRTIO_BLK_T_IN, capacity, rbuf, SECTOR, true, VIRTIO_BLK_S_IOERR,
		 why, "read past the end") ||
	    !one(&v, 99, 0, rbuf, SECTOR, true, VIRTIO_BLK_S_UNSUPP, why, "unknown type") ||
	    !one(&v, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false, VIRTIO_BLK_S_OK, why, "flush"))
		return false;
	printf("blk: %u interrupts\n", virtio_interrupts() - irq0);
	return true;
}

bool test_blkro(char *why)
{
	struct vdev v;

	if (setup(&v, true, why))
		return false;
	if (!(v.features & (1ULL << VIRTIO_BLK_F_RO))) {
		memcpy(why, "the device does not say it is read-only", 40);
		return false;
	}
	memset(wbuf, 0x77, SECTOR);
	if (!one(&v, VIRTIO_BLK_T_IN, 0, rbuf, SECTOR, true, VIRTIO_BLK_S_OK, why, "read") ||
	    !one(&v, VIRTIO_BLK_T_OUT, 0, wbuf, SECTOR, false, VIRTIO_BLK_S_IOERR, why,
		 "write to a read-only disk") ||
	    !one(&v, VIRTIO_BLK_T_OUT, 8, wbuf, SECTOR, false, VIRTIO_BLK_S_IOERR, why,
		 "second write to a read-only disk"))
		return false;
	printf("blkro: writes refused with IOERR\n");
	return true;
}

/* ---- one request at a time, without waiting (snap.c) ---------------------- */

static struct vdev async_dev;
static bool async_busy;

int blk_async_setup(char *why)
{
	return setup(&async_dev, false, why);
}

void blk_async_start(bool write, uint64_t sector, void *buf, uint32_t len)
{
	struct seg s = { buf, len };
	uint16_t head;

	next_desc = 0;
	head = request(&slots[0], write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, sector, &s, 1,
		       !write, false);
	async_busy = true;
	/* An interrupt when it is used, to wake the loop from hlt. */
	*(volatile uint16_t *)&async_dev.q.avail->ring[async_dev.q.size] = async_dev.q.last_used;
	virtio_kick(&async_dev, &head, 1);
}

int blk_async_poll(void)
{
	struct virtq_g *q = &async_dev.q;

	if (!async_busy)
		return -1;
	if (*(volatile uint16_t *)&q->used->idx == q->last_used)
		return 0;
	q->last_used++;
	async_busy = false;
	return slots[0].status == VIRTIO_BLK_S_OK ? 1 : -2;
}
