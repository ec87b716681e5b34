// SPDX-License-Identifier: MIT
/*
 * Port policies as JSON, for the control socket:
 *   {"mac":"52:54:00:12:34:56",
 *    "vlan":{"mode":"untagged"} | {"mode":"access","id":10} |
 *           {"mode":"trunk","allowed":[[1,100],200],"native":5},
 *    "mac_spoofing":false, "dhcp_guard":false, "router_guard":false,
 *    "mirror":"none"|"source"|"destination", "bandwidth_max":BITS_PER_S}
 * Every field is optional: parsing changes only the fields present, so the
 * same code fills a new port's defaults and changes a live port.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vswitch/worker.h"

void wk_policy_default(struct vswitch_port_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->vlan_mode = VSWITCH_VLAN_UNTAGGED;
	cfg->mirror = VSWITCH_MIRROR_NONE;
}

void wk_mac_format(const uint8_t mac[6], char out[18])
{
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x",
		 mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Exactly six pairs of hex digits separated by colons. */
static int mac_parse(const char *s, uint8_t mac[6])
{
	if (strlen(s) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		int hi = hexval(s[3 * i]), lo = hexval(s[3 * i + 1]);

		if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':'))
			return -EINVAL;
		mac[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static int fail(char *err, size_t errlen, const char *fmt, const char *arg)
{
	snprintf(err, errlen, fmt, arg);
	return -EINVAL;
}

/* A VLAN id in [lo, hi], or -1. */
static long vlan_number(const json_t *v, long lo, long hi)
{
	json_int_t n;

	if (!json_is_integer(v))
		return -1;
	n = json_integer_value(v);
	return n < lo || n > hi ? -1 : (long)n;
}

static void allow(uint64_t *bits, long lo, long hi)
{
	for (long v = lo; v <= hi; v++)
		bits[v / 64] |= 1ULL << (v % 64);
}

static int parse_allowed(const json_t *list, uint64_t *bits, char *err,
			 size_t errlen)
{
	size_t i;
	json_t *e;

	if (!json_is_array(list))
		return fail(err, errlen, "\"allowed\" must be a list of VLAN ids or [first,last] ranges%s", "");
	memset(bits, 0, sizeof(uint64_t) * (4096 / 64));
	json_array_foreach(list, i, e) {
		long lo, hi;

		if (json_is_array(e)) {
			if (json_array_size(e) != 2)
				return fail(err, errlen, "a VLAN range in \"allowed\" is [first,last]%s", "");
			lo = vlan_number(json_array_get(e, 0), 1, VSWITCH_VLAN_MAX);
			hi = vlan_number(json_array_get(e, 1), 1, VSWITCH_VLAN_MAX);
		} else {
			lo = hi = vlan_number(e, 1, VSWITCH_VLAN_MAX);
		}
		if (lo < 0 || hi < 0)
			return fail(err, errlen, "VLAN ids in \"allowed\" are 1 to 4094%s", "");
		if (lo > hi)
			return fail(err, errlen, "a VLAN range in \"allowed\" goes from low to high%s", "");
		allow(bits, lo, hi);
	}
	return 0;
}

static int parse_vlan(const json_t *v, struct vswitch_port_config *cfg,
		      char *err, size_t errlen)
{
	const char *mode = json_string_value(json_object_get(v, "mode"));
	const char *key;
	json_t *val;

	if (!json_is_object(v) || !mode)
		return fail(err, errlen, "\"vlan\" must be an object with a \"mode\": untagged, access or trunk%s", "");
	json_object_foreach((json_t *)v, key, val) {
		bool known = strcmp(key, "mode") == 0 ||
			(strcmp(mode, "access") == 0 && strcmp(key, "id") == 0) ||
			(strcmp(mode, "trunk") == 0 &&
			 (strcmp(key, "allowed") == 0 || strcmp(key, "native") == 0));

		if (!known)
			return fail(err, errlen, "\"vlan\" has no field '%s' in this mode", key);
	}
	if (strcmp(mode, "untagged") == 0) {
		cfg->vlan_mode = VSWITCH_VLAN_UNTAGGED;
	} else if (strcmp(mode, "access") == 0) {
		long id = vlan_number(json_object_get(v, "id"), 1, VSWITCH_VLAN_MAX);

		if (id < 0)
			return fail(err, errlen, "an access port needs an \"id\" from 1 to 4094%s", "");
		cfg->vlan_mode = VSWITCH_VLAN_ACCESS;
		cfg->access_vlan = (uint16_t)id;
	} else if (strcmp(mode, "trunk") == 0) {
		json_t *nat = json_object_get(v, "native");
		long native = nat ? vlan_number(nat, 0, VSWITCH_VLAN_MAX) : 0;
		int ret;

		if (native < 0)
			return fail(err, errlen, "\"native\" is a VLAN id from 0 (the untagged network) to 4094%s", "");
		if (!json_object_get(v, "allowed"))
			return fail(err, errlen, "a trunk needs \"allowed\": the VLANs it carries%s", "");
		ret = parse_allowed(json_object_get(v, "allowed"), cfg->trunk_allowed,
				    err, errlen);
		if (ret)
			return ret;
		cfg->vlan_mode = VSWITCH_VLAN_TRUNK;
		cfg->native_vlan = (uint16_t)native;
	} else {
		return fail(err, errlen, "unknown VLAN mode '%s' (untagged, access or trunk)", mode);
	}
	return 0;
}

static int parse_bool(const json_t *v, const char *key, bool *out, char *err,
		      size_t errlen)
{
	if (!json_is_boolean(v))
		return fail(err, errlen, "\"%s\" must be true or false", key);
	*out = json_is_true(v);
	return 0;
}

static int parse_field(const char *key, const json_t *v,
		       struct vswitch_port_config *cfg, char *err, size_t errlen)
{
	if (strcmp(key, "mac") == 0) {
		if (!json_is_string(v) || mac_parse(json_string_value(v), cfg->mac))
			return fail(err, errlen, "\"mac\" must look like 52:54:00:12:34:56%s", "");
		return 0;
	}
	if (strcmp(key, "vlan") == 0)
		return parse_vlan(v, cfg, err, errlen);
	if (strcmp(key, "mac_spoofing") == 0)
		return parse_bool(v, key, &cfg->mac_spoofing, err, errlen);
	if (strcmp(key, "dhcp_guard") == 0)
		return parse_bool(v, key, &cfg->dhcp_guard, err, errlen);
	if (strcmp(key, "router_guard") == 0)
		return parse_bool(v, key, &cfg->router_guard, err, errlen);
	if (strcmp(key, "mirror") == 0) {
		const char *m = json_string_value(v);

		if (m && strcmp(m, "none") == 0)
			cfg->mirror = VSWITCH_MIRROR_NONE;
		else if (m && strcmp(m, "source") == 0)
			cfg->mirror = VSWITCH_MIRROR_SOURCE;
		else if (m && strcmp(m, "destination") == 0)
			cfg->mirror = VSWITCH_MIRROR_DESTINATION;
		else
			return fail(err, errlen, "\"mirror\" is none, source or destination%s", "");
		return 0;
	}
	if (strcmp(key, "bandwidth_max") == 0) {
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return fail(err, errlen, "\"bandwidth_max\" is a whole number of bits per second (0: no limit)%s", "");
		cfg->bandwidth_max = (uint64_t)json_integer_value(v);
		return 0;
	}
	return fail(err, errlen, "unknown policy field '%s'", key);
}

int wk_policy_parse(const json_t *j, struct vswitch_port_config *cfg,
		    char *err, size_t errlen)
{
	struct vswitch_port_config next = *cfg;
	const char *key, *problem;
	json_t *v;
	int ret;

	if (!j)
		return 0;
	if (!json_is_object(j))
		return fail(err, errlen, "\"policy\" must be an object%s", "");
	json_object_foreach((json_t *)j, key, v) {
		ret = parse_field(key, v, &next, err, errlen);
		if (ret)
			return ret;
	}
	problem = vswitch_port_config_problem(&next);
	if (problem)
		return fail(err, errlen, "%s", problem);
	*cfg = next;
	return 0;
}

static bool allowed(const uint64_t *bits, unsigned int v)
{
	return bits[v / 64] >> (v % 64) & 1;
}

static json_t *vlan_json(const struct vswitch_port_config *cfg)
{
	json_t *ranges;

	switch (cfg->vlan_mode) {
	case VSWITCH_VLAN_ACCESS:
		return json_pack("{s:s, s:i}", "mode", "access", "id",
				 (int)cfg->access_vlan);
	case VSWITCH_VLAN_TRUNK:
		ranges = json_array();
		for (unsigned int v = 1; v <= VSWITCH_VLAN_MAX; v++) {
			unsigned int last = v;

			if (!allowed(cfg->trunk_allowed, v))
				continue;
			while (last < VSWITCH_VLAN_MAX && allowed(cfg->trunk_allowed, last + 1))
				last++;
			json_array_append_new(ranges, json_pack("[i, i]", (int)v, (int)last));
			v = last;
		}
		return json_pack("{s:s, s:o, s:i}", "mode", "trunk", "allowed", ranges,
				 "native", (int)cfg->native_vlan);
	case VSWITCH_VLAN_UNTAGGED:
	default:
		return json_pack("{s:s}", "mode", "untagged");
	}
}

static const char *const mirror_names[] = {
	[VSWITCH_MIRROR_NONE] = "none",
	[VSWITCH_MIRROR_SOURCE] = "source",
	[VSWITCH_MIRROR_DESTINATION] = "destination",
};

json_t *wk_policy_json(const struct vswitch_port_config *cfg, json_t *obj)
{
	json_object_set_new(obj, "vlan", vlan_json(cfg));
	json_object_set_new(obj, "mac_spoofing", json_boolean(cfg->mac_spoofing));
	json_object_set_new(obj, "dhcp_guard", json_boolean(cfg->dhcp_guard));
	json_object_set_new(obj, "router_guard", json_boolean(cfg->router_guard));
	json_object_set_new(obj, "mirror", json_string(
		(unsigned int)cfg->mirror < ARRAY_SIZE(mirror_names) ?
		mirror_names[cfg->mirror] : "none"));
	json_object_set_new(obj, "bandwidth_max", json_integer((json_int_t)cfg->bandwidth_max));
	return obj;
}
