// SPDX-License-Identifier: MIT
/*
 * UTF-16 strings in disk files: VHDX parent locators (little-endian),
 * VHD parent names (big-endian) and locators (little-endian).  Paths in
 * the library are UTF-8.
 */
#include <errno.h>

#include "vhdx/internal.h"

static uint32_t unit_get(const uint8_t *p, bool be)
{
	return be ? (uint32_t)(p[0] << 8 | p[1]) : (uint32_t)(p[0] | p[1] << 8);
}

static void unit_put(uint8_t *p, uint32_t u, bool be)
{
	p[be ? 1 : 0] = (uint8_t)u;
	p[be ? 0 : 1] = (uint8_t)(u >> 8);
}

/* Append code point @c to @out; false when it does not fit. */
static bool put_utf8(char *out, size_t outlen, size_t *o, uint32_t c)
{
	size_t n = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;

	if (*o + n >= outlen)
		return false;
	if (n == 1) {
		out[(*o)++] = (char)c;
		return true;
	}
	out[(*o)++] = (char)(n == 2 ? 0xC0 | c >> 6 : n == 3 ? 0xE0 | c >> 12 :
				      0xF0 | c >> 18);
	if (n == 4)
		out[(*o)++] = (char)(0x80 | ((c >> 12) & 0x3F));
	if (n >= 3)
		out[(*o)++] = (char)(0x80 | ((c >> 6) & 0x3F));
	out[(*o)++] = (char)(0x80 | (c & 0x3F));
	return true;
}

int utf16_to_utf8(const uint8_t *in, size_t units, bool be, char *out,
		  size_t outlen)
{
	size_t o = 0;

	if (!outlen)
		return -ENAMETOOLONG;
	for (size_t i = 0; i < units; i++) {
		uint32_t c = unit_get(in + 2 * i, be);

		if (c == 0)
			break;		/* some writers terminate their strings */
		if (c >= 0xD800 && c <= 0xDBFF && i + 1 < units) {
			uint32_t lo = unit_get(in + 2 * (i + 1), be);

			if (lo >= 0xDC00 && lo <= 0xDFFF) {
				c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
				i++;
			} else {
				c = 0xFFFD;
			}
		} else if (c >= 0xD800 && c <= 0xDFFF) {
			c = 0xFFFD;
		}
		if (!put_utf8(out, outlen, &o, c)) {
			out[o] = 0;
			return -ENAMETOOLONG;
		}
	}
	out[o] = 0;
	return 0;
}

/* The next code point of UTF-8 @s at *i, or -1 for a malformed one. */
static int32_t next_utf8(const unsigned char *s, size_t *i)
{
	uint32_t c = s[*i], n, min;

	if (c < 0x80) {
		(*i)++;
		return (int32_t)c;
	}
	if ((c & 0xE0) == 0xC0) {
		n = 1, min = 0x80, c &= 0x1F;
	} else if ((c & 0xF0) == 0xE0) {
		n = 2, min = 0x800, c &= 0x0F;
	} else if ((c & 0xF8) == 0xF0) {
		n = 3, min = 0x10000, c &= 0x07;
	} else {
		return -1;
	}
	for (uint32_t k = 1; k <= n; k++) {
		if ((s[*i + k] & 0xC0) != 0x80)
			return -1;
		c = c << 6 | (s[*i + k] & 0x3F);
	}
	if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		return -1;
	*i += n + 1;
	return (int32_t)c;
}

int utf8_to_utf16(const char *in, bool be, uint8_t *out, size_t max_units)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t i = 0, u = 0;

	while (s[i]) {
		int32_t c = next_utf8(s, &i);

		if (c < 0)
			return -EINVAL;
		if (u + (c >= 0x10000 ? 2 : 1) > max_units)
			return -ENAMETOOLONG;
		if (c >= 0x10000) {
			c -= 0x10000;
			unit_put(out + 2 * u++, 0xD800 + ((uint32_t)c >> 10), be);
			unit_put(out + 2 * u++, 0xDC00 + ((uint32_t)c & 0x3FF), be);
		} else {
			unit_put(out + 2 * u++, (uint32_t)c, be);
		}
	}
	return (int)u;
}
