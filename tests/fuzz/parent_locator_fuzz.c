// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the VHDX parent locator: the item's parser (every
 * key and value offset checked against the item), then each path it
 * yields turned into a path to try, as an open of a child does.
 *
 * Input: byte 0 selects the mode.
 *   bit 0 clear	the rest is the whole item
 *   bit 0 set		a valid item (what create writes) patched by the rest:
 *			records of a 16-bit offset, a length byte and bytes.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vhdx/internal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ITEM_MAX (64 * 1024)

static uint8_t *valid;
static int valid_len;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static struct parent_names pn = {
		.real = "/var/lib/fsvisor/disks/base.vhdx",
		.rel = "..\\disks\\base.vhdx",
		.vol = "\\\\?\\Volume{8b7ca206-4790-4b9a-b8fe-575f050f886e}\\disks\\base.vhdx",
		.abs = "\\var\\lib\\fsvisor\\disks\\base.vhdx",
	};
	struct guid g;

	(void)argc;
	(void)argv;
	guid_generate(&g);
	valid = calloc(1, ITEM_MAX);
	if (!valid)
		abort();
	valid_len = vhdx_locator_build(valid, ITEM_MAX, &g, &pn);
	if (valid_len <= 0)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum parent_kind kinds[3] = { PARENT_RELATIVE, PARENT_VOLUME,
						   PARENT_ABSOLUTE };
	struct vhdx_locator *loc = malloc(sizeof(*loc));
	char why[256], out[PATH_MAX];
	uint8_t *item;
	size_t len;

	if (!loc || size < 1) {
		free(loc);
		return 0;
	}
	if (data[0] & 1) {
		len = (size_t)valid_len;
		item = malloc(len);
		memcpy(item, valid, len);
		data++;
		size--;
		while (size >= 3) {
			size_t off = ((size_t)data[0] | (size_t)data[1] << 8) % len;
			size_t n = data[2];

			data += 3;
			size -= 3;
			if (n > size)
				n = size;
			if (n > len - off)
				n = len - off;
			memcpy(item + off, data, n);
			data += n;
			size -= n;
		}
	} else {
		len = size - 1;
		item = malloc(len ? len : 1);
		memcpy(item, data + 1, len);
	}
	if (vhdx_locator_parse(item, (uint32_t)len, loc, why, sizeof(why)) == 0) {
		for (int k = 0; k < 3; k++)
			if (loc->path[k][0])
				parent_name_resolve(kinds[k], loc->path[k],
						    "/tmp/fsvisor-fuzz-child", out, sizeof(out));
	}
	free(item);
	free(loc);
	return 0;
}
