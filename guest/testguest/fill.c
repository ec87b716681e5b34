// SPDX-License-Identifier: MIT
/*
 * "fill=N" on the command line: before anything else runs, the guest
 * writes N percent of its RAM (counted from the e820 map), from 16 MiB up,
 * a different value in every 4 KiB page, and prints "fill: K MiB".  It
 * gives bench/snapshot.sh a guest whose memory is partly written, as a
 * guest that has run a while has it.
 */
#include "guest.h"

#define FILL_FROM	(16ULL << 20)
#define PAGE		4096ULL

static unsigned int fill_percent(void)
{
	const char *p = cmdline_arg("fill");
	unsigned int n = 0;

	while (p && *p >= '0' && *p <= '9' && n < 1000)
		n = n * 10 + (unsigned int)(*p++ - '0');
	return n > 100 ? 100 : n;
}

void fill_run(const uint8_t *boot_params)
{
	unsigned int percent = fill_percent(), entries = boot_params[ZP_E820_ENTRIES];
	uint64_t total = 0, want, done = 0;

	if (!percent)
		return;
	for (unsigned int i = 0; i < entries && i < 128; i++) {
		const uint8_t *e = boot_params + ZP_E820_TABLE + i * 20;

		if (*(const uint32_t *)(e + 16) == 1)
			total += *(const uint64_t *)(e + 8);
	}
	want = total / 100 * percent;
	for (unsigned int i = 0; i < entries && i < 128 && done < want; i++) {
		const uint8_t *e = boot_params + ZP_E820_TABLE + i * 20;
		uint64_t base = *(const uint64_t *)e, end = base + *(const uint64_t *)(e + 8);

		if (*(const uint32_t *)(e + 16) != 1)
			continue;
		if (base < FILL_FROM)
			base = FILL_FROM;
		/* The identity map covers 4 GiB. */
		if (end > (4ULL << 30))
			end = 4ULL << 30;
		for (uint64_t page = base; page + PAGE <= end && done < want; page += PAGE) {
			uint64_t *p = (uint64_t *)page, v = page | 0x5A5A000000000001ULL, n = PAGE / 8;

			__asm__ volatile("rep stosq" : "+D"(p), "+c"(n) : "a"(v) : "memory");
			done += PAGE;
		}
	}
	printf("fill: %lu MiB\n", (unsigned long)(done >> 20));
}
