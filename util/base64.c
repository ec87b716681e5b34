// SPDX-License-Identifier: MIT
/*
 * Base64 (RFC 4648), for bytes that travel inside JSON: console output
 * and input is arbitrary binary, and JSON strings must be valid UTF-8.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

static const char alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *base64_encode(const void *data, size_t len)
{
	const uint8_t *in = data;
	char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		*o++ = alphabet[(v >> 18) & 63];
		*o++ = alphabet[(v >> 12) & 63];
		*o++ = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
		*o++ = i + 2 < len ? alphabet[v & 63] : '=';
	}
	*o = 0;
	return out;
}

static int value_of(char c)
{
	const char *p = c ? strchr(alphabet, c) : NULL;

	return p ? (int)(p - alphabet) : -1;
}

int base64_decode(const char *text, uint8_t **out, size_t *len)
{
	size_t n = strlen(text), o = 0;
	uint8_t *buf;

	if (n % 4)
		return -EINVAL;
	buf = malloc(n / 4 * 3 + 1);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];

		for (int k = 0; k < 4; k++) {
			v[k] = value_of(text[i + k]);
			/* '=' only as padding at the very end. */
			if (v[k] < 0 && !(text[i + k] == '=' && i + 4 == n && k >= 2 &&
					  (k == 3 || text[i + 3] == '='))) {
				free(buf);
				return -EINVAL;
			}
		}
		buf[o++] = (uint8_t)(v[0] << 2 | v[1] >> 4);
		if (v[2] >= 0)
			buf[o++] = (uint8_t)(v[1] << 4 | v[2] >> 2);
		if (v[3] >= 0)
			buf[o++] = (uint8_t)(v[2] << 6 | v[3]);
	}
	*out = buf;
	*len = o;
	return 0;
}
