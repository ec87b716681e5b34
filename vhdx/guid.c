// SPDX-License-Identifier: MIT
/*
 * GUIDs as VHDX stores them: the first three fields little-endian, the
 * last eight bytes in order (the Windows GUID layout).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <uuid/uuid.h>

#include "vhdx/format.h"

#define GUID_INIT(d1, d2, d3, b0, b1, b2, b3, b4, b5, b6, b7)		\
	{ { (d1) & 0xff, ((d1) >> 8) & 0xff, ((d1) >> 16) & 0xff,	\
	    ((d1) >> 24) & 0xff, (d2) & 0xff, ((d2) >> 8) & 0xff,	\
	    (d3) & 0xff, ((d3) >> 8) & 0xff,				\
	    b0, b1, b2, b3, b4, b5, b6, b7 } }

const struct guid guid_bat_region = GUID_INIT(0x2DC27766, 0xF623, 0x4200,
	0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08);
const struct guid guid_metadata_region = GUID_INIT(0x8B7CA206, 0x4790, 0x4B9A,
	0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E);
const struct guid guid_file_parameters = GUID_INIT(0xCAA16737, 0xFA36, 0x4D43,
	0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B);
const struct guid guid_virtual_disk_size = GUID_INIT(0x2FA54224, 0xCD1B, 0x4876,
	0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8);
const struct guid guid_virtual_disk_id = GUID_INIT(0xBECA12AB, 0xB2E6, 0x4523,
	0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46);
const struct guid guid_logical_sector_size = GUID_INIT(0x8141BF1D, 0xA96F,
	0x4709, 0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F);
const struct guid guid_physical_sector_size = GUID_INIT(0xCDA348C7, 0x445D,
	0x4471, 0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56);
const struct guid guid_parent_locator = GUID_INIT(0xA8D35F2D, 0xB30B, 0x454D,
	0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C);
const struct guid guid_parent_locator_vhdx = GUID_INIT(0xB04AEFB7, 0xD19E,
	0x4A81, 0xB7, 0x89, 0x25, 0xB8, 0xE9, 0x44, 0x59, 0x13);
/* Ours: the merge record (vhdx/record.c), a user item. */
const struct guid guid_merge_record = GUID_INIT(0x5A0E7C21, 0x3B6D, 0x4F1E,
	0x9C, 0x42, 0x66, 0x73, 0x76, 0x6D, 0x72, 0x67);

/* Byte positions of the text form's hex pairs, in on-disk order. */
static const int text_order[16] = { 3, 2, 1, 0, 5, 4, 7, 6,
				    8, 9, 10, 11, 12, 13, 14, 15 };

void guid_generate(struct guid *g)
{
	uuid_t u;

	/* uuid_t is in text order; store it so it prints back the same. */
	uuid_generate_random(u);
	for (int i = 0; i < 16; i++)
		g->b[text_order[i]] = u[i];
}

void guid_format(const struct guid *g, char *buf)
{
	int n = 0;

	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			buf[n++] = '-';
		n += sprintf(buf + n, "%02x", g->b[text_order[i]]);
	}
	buf[n] = 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int guid_parse(const char *s, struct guid *g)
{
	struct guid out;
	bool braces = (*s == '{');
	int nibbles = 0;

	if (braces)
		s++;
	for (int pos = 0; pos < 36; pos++) {
		int v;

		if (pos == 8 || pos == 13 || pos == 18 || pos == 23) {
			if (s[pos] != '-')
				return -EINVAL;
			continue;
		}
		v = hexval(s[pos]);
		if (v < 0)
			return -EINVAL;
		if (nibbles % 2 == 0)
			out.b[text_order[nibbles / 2]] = (uint8_t)(v << 4);
		else
			out.b[text_order[nibbles / 2]] |= (uint8_t)v;
		nibbles++;
	}
	s += 36;
	if (braces && *s++ != '}')
		return -EINVAL;
	if (*s)
		return -EINVAL;
	*g = out;
	return 0;
}
