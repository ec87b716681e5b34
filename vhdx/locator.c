// SPDX-License-Identifier: MIT
/*
 * The VHDX parent locator (MS-VHDX 2.6.2.6): a metadata item holding
 * key/value pairs, both UTF-16LE, that name a differencing disk's parent
 * and the parent's DataWriteGuid (the linkage).  Every offset and length
 * is checked against the item before anything is read.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vhdx/internal.h"

#define LOC_HEADER	20
#define LOC_ENTRY	12
/* Keys are short; values are paths. */
#define KEY_MAX		64

/* The path keys, in the order MS-VHDX says to try them. */
static const struct {
	const char *key;
	enum parent_kind kind;
} path_keys[] = {
	{ "relative_path", PARENT_RELATIVE },
	{ "volume_path", PARENT_VOLUME },
	{ "absolute_win32_path", PARENT_ABSOLUTE },
};

static int linkage_parse(const char *val, struct guid *g)
{
	size_t n = strlen(val);

	/* Written with braces: "{01234567-89ab-cdef-0123-456789abcdef}". */
	if (n != 38 || val[0] != '{' || val[37] != '}')
		return -EINVAL;
	return guid_parse(val, g);
}

int vhdx_locator_parse(const uint8_t *item, uint32_t len,
		       struct vhdx_locator *loc, char *why, size_t whylen)
{
	struct guid type;
	uint16_t count;
	bool seen[3] = { false, false, false };

	memset(loc, 0, sizeof(*loc));
	if (len < LOC_HEADER) {
		snprintf(why, whylen, "is %u bytes, too short", len);
		return -EINVAL;
	}
	get_guid(&type, item);
	if (!guid_equal(&type, &guid_parent_locator_vhdx)) {
		snprintf(why, whylen, "has an unknown locator type");
		return -EINVAL;
	}
	count = get16(item + 18);
	if (LOC_HEADER + (uint64_t)count * LOC_ENTRY > len) {
		snprintf(why, whylen, "lists %u entries in %u bytes", count, len);
		return -EINVAL;
	}
	for (uint16_t i = 0; i < count; i++) {
		const uint8_t *e = item + LOC_HEADER + i * LOC_ENTRY;
		uint32_t ko = get32(e), vo = get32(e + 4);
		uint16_t kl = get16(e + 8), vl = get16(e + 10);
		char key[KEY_MAX], val[PATH_MAX];
		struct guid g;

		if (!kl || !vl || kl % 2 || vl % 2 ||
		    ko < LOC_HEADER || vo < LOC_HEADER ||
		    (uint64_t)ko + kl > len || (uint64_t)vo + vl > len) {
			snprintf(why, whylen, "entry %u has a key or value outside the item (key %u+%u, value %u+%u, item %u bytes)",
				 i, ko, kl, vo, vl, len);
			return -EINVAL;
		}
		if (utf16_to_utf8(item + ko, kl / 2, false, key, sizeof(key)))
			continue;	/* no key we know is that long */
		if (utf16_to_utf8(item + vo, vl / 2, false, val, sizeof(val))) {
			snprintf(why, whylen, "entry '%s' has a value longer than a path can be",
				 key);
			return -EINVAL;
		}
		if (strcmp(key, "parent_linkage") == 0 ||
		    strcmp(key, "parent_linkage2") == 0) {
			bool two = key[14] == '2';

			if (linkage_parse(val, &g)) {
				snprintf(why, whylen, "has a %s that is not a GUID in braces ('%.60s')",
					 key, val);
				return -EINVAL;
			}
			if ((two ? loc->has_linkage2 : loc->has_linkage)) {
				snprintf(why, whylen, "lists %s twice", key);
				return -EINVAL;
			}
			if (two) {
				loc->linkage2 = g;
				loc->has_linkage2 = true;
			} else {
				loc->linkage = g;
				loc->has_linkage = true;
			}
			continue;
		}
		for (size_t k = 0; k < ARRAY_SIZE(path_keys); k++) {
			if (strcmp(key, path_keys[k].key) != 0)
				continue;
			if (seen[k]) {
				snprintf(why, whylen, "lists %s twice", key);
				return -EINVAL;
			}
			seen[k] = true;
			snprintf(loc->path[k], sizeof(loc->path[k]), "%s", val);
		}
	}
	if (!loc->has_linkage) {
		snprintf(why, whylen, "has no parent_linkage");
		return -EINVAL;
	}
	if (!seen[0] && !seen[1] && !seen[2]) {
		snprintf(why, whylen, "has no path to the parent");
		return -EINVAL;
	}
	return 0;
}

int vhdx_locator_refs(const struct vhdx_locator *loc, struct vdisk *d)
{
	for (size_t k = 0; k < ARRAY_SIZE(path_keys); k++) {
		int ret;

		if (!loc->path[k][0])
			continue;
		ret = vdisk_add_parent_ref(d, path_keys[k].key, path_keys[k].kind,
					   loc->path[k]);
		if (ret)
			return ret;
	}
	d->linkage = loc->linkage;
	d->linkage2 = loc->linkage2;
	d->has_linkage2 = loc->has_linkage2;
	return 0;
}

/* Append one UTF-16LE string at *at; returns its byte length or -errno. */
static int put_string(uint8_t *item, size_t cap, uint32_t *at, const char *s)
{
	int units = utf8_to_utf16(s, false, item + *at, (cap - *at) / 2);

	if (units <= 0)
		return units ? units : -EINVAL;
	if (units * 2 > UINT16_MAX)
		return -ENAMETOOLONG;
	*at += (uint32_t)units * 2;
	return units * 2;
}

int vhdx_locator_build(uint8_t *item, size_t cap, const struct guid *linkage,
		       const struct parent_names *pn)
{
	const char *keys[4] = { "parent_linkage", "relative_path", "volume_path",
				"absolute_win32_path" };
	const char *vals[4] = { NULL, pn->rel, pn->vol, pn->abs };
	char gs[40], braced[42];
	uint32_t at = LOC_HEADER + 4 * LOC_ENTRY;

	if (cap < at)
		return -ENOSPC;
	memset(item, 0, cap);
	guid_format(linkage, gs);
	snprintf(braced, sizeof(braced), "{%s}", gs);
	vals[0] = braced;
	memcpy(item, guid_parent_locator_vhdx.b, 16);
	put16(item + 18, 4);
	for (int i = 0; i < 4; i++) {
		uint8_t *e = item + LOC_HEADER + i * LOC_ENTRY;
		uint32_t ko = at, vo;
		int kl, vl;

		kl = put_string(item, cap, &at, keys[i]);
		vo = at;
		vl = kl < 0 ? kl : put_string(item, cap, &at, vals[i]);
		if (kl < 0 || vl < 0)
			return kl < 0 ? kl : vl;
		put32(e, ko);
		put32(e + 4, vo);
		put16(e + 8, (uint16_t)kl);
		put16(e + 10, (uint16_t)vl);
	}
	return (int)at;
}
