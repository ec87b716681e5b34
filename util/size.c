// SPDX-License-Identifier: MIT
/* Size strings: "512", "64K", "20G", "1T" (powers of 1024). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/util.h"

static const char suffixes[] = "KMGTPE";

static int suffix_shift(char c)
{
	const char *p = strchr(suffixes, toupper((unsigned char)c));

	return p && c ? (int)(p - suffixes + 1) * 10 : -1;
}

int size_parse(const char *s, uint64_t *out)
{
	uint64_t value = 0;
	int shift = 0;
	const char *p = s;

	if (!s)
		return -EINVAL;
	while (isspace((unsigned char)*p))
		p++;
	if (!isdigit((unsigned char)*p))
		return -EINVAL;		/* empty, sign, or junk */

	for (; isdigit((unsigned char)*p); p++) {
		unsigned digit = (unsigned)(*p - '0');

		if (value > (UINT64_MAX - digit) / 10)
			return -ERANGE;
		value = value * 10 + digit;
	}

	if (*p && !isspace((unsigned char)*p)) {
		shift = suffix_shift(*p);
		if (shift < 0)
			return -EINVAL;
		p++;
		/* Accept "G", "GB" and "GiB" alike: all mean 2^30. */
		if (*p == 'i' && (p[1] == 'B' || p[1] == 'b'))
			p += 2;
		else if (*p == 'B' || *p == 'b')
			p++;
	}
	while (isspace((unsigned char)*p))
		p++;
	if (*p)
		return -EINVAL;

	if (shift && value > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = value << shift;
	return 0;
}

char *size_format(uint64_t bytes, char *buf, size_t len)
{
	int shift = 0;

	while (bytes && shift < 60 && (bytes & ((1ULL << (shift + 10)) - 1)) == 0)
		shift += 10;
	if (shift)
		snprintf(buf, len, "%llu%c",
			 (unsigned long long)(bytes >> shift),
			 suffixes[shift / 10 - 1]);
	else
		snprintf(buf, len, "%llu", (unsigned long long)bytes);
	return buf;
}

char *size_format_human(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = {
		"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"
	};
	double v = (double)bytes;
	size_t u = 0;

	while (v >= 1024.0 && u < ARRAY_SIZE(units) - 1) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else if (v >= 100.0)
		snprintf(buf, len, "%.0f %s", v, units[u]);
	else if (v >= 10.0)
		snprintf(buf, len, "%.1f %s", v, units[u]);
	else
		snprintf(buf, len, "%.2f %s", v, units[u]);
	return buf;
}
