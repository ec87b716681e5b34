// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the virtqueue parser: the input is a driver's view
 * of the rings (queue size, features, descriptor table, avail ring, an
 * indirect table area) laid into guest RAM.  Every buffer virtq_pop()
 * hands back must lie inside guest RAM, and popping must end.
 */
#include <stdlib.h>
#include <string.h>

#include "vmm/virtio/virtio.h"

#define RAM (1024 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct guest_mem mem;
static struct iovec iov[256];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	struct virtq q;
	char err[128];

	if (!ready) {
		if (mem_create(&mem, RAM, err, sizeof(err)))
			abort();
		ready = true;
	}
	if (size < 4)
		return 0;
	memset(mem.base, 0, 0x60000);
	q = (struct virtq){
		.size = (uint16_t)(1u << (data[0] % 10)),
		.indirect = data[1] & 1,
		.event_idx = data[1] & 2,
		.desc_gpa = 0x1000, .avail_gpa = 0x10000, .used_gpa = 0x20000,
	};
	data += 2;
	size -= 2;
	/* Descriptors, then the avail ring, then indirect tables. */
	{
		size_t n = size < 0x50000 ? size : 0x50000;

		memcpy(mem.base + 0x1000, data, n < 0xF000 ? n : 0xF000);
		if (n > 0xF000)
			memcpy(mem.base + 0x10000, data + 0xF000,
			       n - 0xF000 < 0x1000 ? n - 0xF000 : 0x1000);
		if (n > 0x10000)
			memcpy(mem.base + 0x30000, data + 0x10000, n - 0x10000);
	}
	if (virtq_enable(&q, &mem))
		return 0;
	for (unsigned int i = 0; i <= q.size; i++) {
		struct virtq_elem e = { .iov = iov, .cap = ARRAY_SIZE(iov) };

		if (virtq_pop(&q, &e) <= 0)
			break;
		for (unsigned int k = 0; k < e.out_num + e.in_num; k++) {
			const uint8_t *p = e.iov[k].iov_base;

			if (p < mem.base || p + e.iov[k].iov_len > mem.base + RAM)
				abort();
		}
		virtq_push(&q, e.head, 0);
	}
	virtq_publish(&q);
	virtq_should_interrupt(&q);
	return 0;
}
