// SPDX-License-Identifier: MIT
/*
 * Split virtqueues (virtio 1.2, 2.7).  The rings live in guest memory and
 * the guest may change them at any moment, so every field is read once
 * into a local copy and checked before use: ring indexes against the
 * queue size, descriptor addresses and lengths against guest RAM, chains
 * against loops and their length.  Anything malformed makes virtq_pop()
 * fail, and the device then stops using the queue.
 */
#include <errno.h>
#include <string.h>

#include "vmm/virtio/virtio.h"

/* Reads and writes of guest-shared fields, each exactly once. */
static uint16_t load16(const void *p)
{
	return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED);
}

static uint16_t load16_acquire(const void *p)
{
	return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}

static void store16(void *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)p, v, __ATOMIC_RELAXED);
}

static void read_desc(const void *p, struct vring_desc *d)
{
	/* Indirect tables need not be aligned: copy, do not dereference. */
	memcpy(d, p, sizeof(*d));
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
}

int virtq_enable(struct virtq *q, const struct guest_mem *mem)
{
	uint64_t n = q->size;
	void *desc, *avail, *used;

	if (!n || n > VIRTQ_MAX_SIZE || (n & (n - 1)))
		return -EINVAL;
	/* Alignment from the spec: 16, 2 and 4 bytes. */
	if (q->desc_gpa % 16 || q->avail_gpa % 2 || q->used_gpa % 4)
		return -EINVAL;
	desc = gpa_to_hva(mem, q->desc_gpa, 16 * n);
	avail = gpa_to_hva(mem, q->avail_gpa, 6 + 2 * n);
	used = gpa_to_hva(mem, q->used_gpa, 6 + 8 * n);
	if (!desc || !avail || !used)
		return -EINVAL;
	q->desc = desc;
	q->avail = avail;
	q->used = used;
	q->mem = mem;
	q->last_avail = 0;
	q->used_idx = 0;
	q->signalled = 0;
	q->ever_signalled = false;
	q->enabled = true;
	return 0;
}

void virtq_disable(struct virtq *q)
{
	q->enabled = false;
	q->desc = NULL;
	q->avail = NULL;
	q->used = NULL;
}

static int add_buffer(struct virtq_elem *e, const struct vring_desc *d,
		      const struct guest_mem *mem)
{
	bool writable = d->flags & VRING_DESC_F_WRITE;
	void *p;

	/* The device reads what it needs before it writes. */
	if (!writable && e->in_num)
		return -EINVAL;
	if (d->len == 0)
		return 0;		/* empty: nothing to map */
	if (e->out_num + e->in_num >= e->cap)
		return -EINVAL;
	p = gpa_to_hva(mem, d->addr, d->len);
	if (!p)
		return -EINVAL;
	e->iov[e->out_num + e->in_num].iov_base = p;
	e->iov[e->out_num + e->in_num].iov_len = d->len;
	if (writable) {
		e->in_num++;
		e->in_len += d->len;
	} else {
		e->out_num++;
		e->out_len += d->len;
	}
	/* A used length is 32 bits: keep requests within it. */
	if (e->in_len > UINT32_MAX || e->out_len > UINT32_MAX)
		return -EINVAL;
	return 0;
}

static int walk_chain(struct virtq *q, uint16_t head, struct virtq_elem *e)
{
	const uint8_t *table = (const uint8_t *)q->desc;
	unsigned int tsize = q->size, count = 0, idx = head;
	bool indirect = false;

	for (;;) {
		struct vring_desc d;
		int ret;

		/* A chain visits each descriptor once at most: no loops. */
		if (++count > tsize)
			return -EINVAL;
		read_desc(table + (size_t)idx * sizeof(d), &d);
		if (d.flags & VRING_DESC_F_INDIRECT) {
			if (!q->indirect || indirect || (d.flags & VRING_DESC_F_NEXT) ||
			    d.len == 0 || d.len % sizeof(d) ||
			    d.len / sizeof(d) > VIRTQ_MAX_INDIRECT)
				return -EINVAL;
			table = gpa_to_hva(q->mem, d.addr, d.len);
			if (!table)
				return -EINVAL;
			tsize = d.len / sizeof(d);
			indirect = true;
			count = 0;
			idx = 0;
			continue;
		}
		ret = add_buffer(e, &d, q->mem);
		if (ret)
			return ret;
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		idx = d.next;
		if (idx >= tsize)
			return -EINVAL;
	}
}

int virtq_pop(struct virtq *q, struct virtq_elem *e)
{
	uint16_t avail_idx, head;
	int ret;

	if (!q->enabled)
		return 0;
	avail_idx = load16_acquire(&q->avail->idx);
	if (avail_idx == q->last_avail)
		return 0;
	/* The driver cannot have more outstanding than the ring holds. */
	if ((uint16_t)(avail_idx - q->last_avail) > q->size)
		return -EINVAL;
	head = load16(&q->avail->ring[q->last_avail % q->size]);
	if (head >= q->size)
		return -EINVAL;
	e->head = head;
	e->out_num = e->in_num = 0;
	e->out_len = e->in_len = 0;
	ret = walk_chain(q, head, e);
	if (ret)
		return ret;
	q->last_avail++;
	return 1;
}

int virtq_chain(struct virtq *q, uint16_t head, struct virtq_elem *e)
{
	if (!q->enabled || head >= q->size)
		return -EINVAL;
	e->head = head;
	e->out_num = e->in_num = 0;
	e->out_len = e->in_len = 0;
	return walk_chain(q, head, e);
}

void virtq_rewind(struct virtq *q, uint16_t n)
{
	/* Only the avail side moves: the driver never saw these taken. */
	q->last_avail = (uint16_t)(q->last_avail - n);
}

uint16_t virtq_held(const struct virtq *q)
{
	return (uint16_t)(q->last_avail - q->used_idx);
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t len)
{
	struct vring_used_elem *u = &q->used->ring[q->used_idx % q->size];

	__atomic_store_n(&u->id, (uint32_t)head, __ATOMIC_RELAXED);
	__atomic_store_n(&u->len, len, __ATOMIC_RELAXED);
	q->used_idx++;
}

void virtq_publish(struct virtq *q)
{
	/* The entries are visible before the index that announces them. */
	__atomic_store_n(&q->used->idx, q->used_idx, __ATOMIC_RELEASE);
}

bool virtq_should_interrupt(struct virtq *q)
{
	uint16_t new = q->used_idx, old = q->signalled;
	bool fire;

	/* Our used->idx store must be seen before we read the driver's wish. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (q->event_idx) {
		uint16_t event = load16(&q->avail->ring[q->size]);	/* used_event */

		fire = !q->ever_signalled || vring_need_event(event, new, old);
	} else {
		fire = !(load16(&q->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
	}
	q->signalled = new;
	q->ever_signalled = true;
	return fire;
}

bool virtq_enable_notify_at(struct virtq *q, uint16_t idx)
{
	if (!q->enabled)
		return false;
	if (q->event_idx)
		store16(&q->used->ring[q->size], idx);	/* avail_event */
	else
		store16(&q->used->flags, 0);
	/* Publish the wish before looking again, or a kick is lost. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return load16_acquire(&q->avail->idx) != idx;
}

bool virtq_enable_notify(struct virtq *q)
{
	return virtq_enable_notify_at(q, q->last_avail);
}

void virtq_disable_notify(struct virtq *q)
{
	/* With EVENT_IDX, an avail_event left behind has the same effect. */
	if (q->enabled && !q->event_idx)
		store16(&q->used->flags, VRING_USED_F_NO_NOTIFY);
}

bool virtq_has_work(struct virtq *q)
{
	return q->enabled && load16_acquire(&q->avail->idx) != q->last_avail;
}
