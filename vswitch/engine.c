// SPDX-License-Identifier: MIT
/*
 * The switch engine: where a frame goes.  vswitch_forward() is the hot
 * path (one call per frame): it reads the frame's header, tests a few
 * bits precomputed by port.c and vlan.c, does two hash lookups and writes
 * the destinations.  No allocation and no loop longer than the port
 * bitmap's words.
 */
#include <errno.h>
#include <stdlib.h>

#include "vswitch/internal.h"

#define DEFAULT_TABLE_MAX 8192
#define DEFAULT_PORT_MAX 1024
#define DEFAULT_AGING_NS (300ULL * 1000000000ULL)
#define TABLE_MAX_LIMIT (1u << 24)

static const char *const drop_names[VSWITCH_DROP_NR] = {
	[VSWITCH_DROP_MALFORMED] = "malformed",
	[VSWITCH_DROP_VLAN] = "vlan",
	[VSWITCH_DROP_MAC_SPOOFING] = "mac_spoofing",
	[VSWITCH_DROP_DHCP_GUARD] = "dhcp_guard",
	[VSWITCH_DROP_ROUTER_GUARD] = "router_guard",
	[VSWITCH_DROP_NO_ROOM] = "no_room",
};

const char *vswitch_drop_name(enum vswitch_drop why)
{
	if ((unsigned int)why >= VSWITCH_DROP_NR)
		return "unknown";
	return drop_names[why];
}

struct vswitch *vswitch_create(const struct vswitch_opts *opts)
{
	struct vswitch_opts o = opts ? *opts : (struct vswitch_opts){ 0 };
	struct vswitch *sw;
	int err;

	if (!o.mac_table_max)
		o.mac_table_max = DEFAULT_TABLE_MAX;
	if (!o.mac_port_max)
		o.mac_port_max = DEFAULT_PORT_MAX;
	if (!o.aging_ns)
		o.aging_ns = DEFAULT_AGING_NS;
	if (o.mac_table_max > TABLE_MAX_LIMIT) {
		errno = EINVAL;
		return NULL;
	}
	sw = calloc(1, sizeof(*sw));
	if (!sw)
		return NULL;
	err = mactable_init(&sw->macs, o.mac_table_max, o.mac_port_max);
	if (err) {
		free(sw);
		errno = -err;
		return NULL;
	}
	sw->aging_ns = o.aging_ns;
	return sw;
}

void vswitch_destroy(struct vswitch *sw)
{
	if (!sw)
		return;
	mactable_free(&sw->macs);
	free(sw);
}

static void drop(struct vsw_port *p, struct vswitch_verdict *v,
		 enum vswitch_drop why)
{
	p->st.drops[why]++;
	v->dropped = true;
	v->drop = why;
}

static bool mac_bad_source(const uint8_t *mac)
{
	static const uint8_t zero[6];

	return (mac[0] & 1) || !memcmp(mac, zero, 6);
}

/* Every port of @vl but @in; @sent gets the same set as a bitmap. */
static unsigned int flood(const struct vsw_vlan *vl, uint32_t in,
			  struct vswitch_dest *dest, uint64_t *sent)
{
	unsigned int w, n = 0;
	uint64_t m;

	for (w = 0; w < VSW_WORDS; w++) {
		m = vl->member[w];
		if (w == in / 64)
			m &= ~(1ULL << (in % 64));
		sent[w] = m;
		for (; m; m &= m - 1) {
			unsigned int b = __builtin_ctzll(m);

			dest[n].port = w * 64 + b;
			dest[n].tagged = (vl->tagged[w] >> b) & 1;
			n++;
		}
	}
	return n;
}

/* Copies to the mirror destinations that do not have the frame yet. */
static unsigned int mirror(const struct vswitch *sw, uint32_t in,
			   uint16_t vlan, const uint64_t *sent,
			   struct vswitch_dest *dest, unsigned int n)
{
	unsigned int w;
	uint64_t m;

	for (w = 0; w < VSW_WORDS; w++) {
		m = sw->mirror_dst[w] & ~sent[w];
		if (w == in / 64)
			m &= ~(1ULL << (in % 64));
		for (; m; m &= m - 1) {
			dest[n].port = w * 64 + __builtin_ctzll(m);
			dest[n].tagged = vlan != 0;
			n++;
		}
	}
	return n;
}

void vswitch_forward(struct vswitch *sw, uint32_t in, const uint8_t *frame,
		     size_t len, uint64_t now_ns, struct vswitch_verdict *v)
{
	uint64_t sent[VSW_WORDS] = { 0 };
	const struct vsw_vlan *vl;
	struct vsw_port *p;
	enum vswitch_drop why;
	uint32_t out;
	bool mirrored;
	int vlan;
	unsigned int n = 0, w;

	v->vlan = 0;
	v->payload_off = 12;
	v->ndest = 0;
	v->dropped = false;
	v->drop = VSWITCH_DROP_MALFORMED;
	if (in >= VSWITCH_MAX_PORTS || !sw->ports[in].used) {
		v->dropped = true;	/* no port to count it on */
		return;
	}
	p = &sw->ports[in];
	if (len < VSWITCH_ETH_MIN || mac_bad_source(frame + 6)) {
		drop(p, v, VSWITCH_DROP_MALFORMED);
		return;
	}
	vlan = vlan_classify(p, frame, len, &v->payload_off, &why);
	if (vlan < 0) {
		drop(p, v, why);
		return;
	}
	v->vlan = (uint16_t)vlan;
	if (p->spoof_check && memcmp(frame + 6, p->cfg.mac, 6)) {
		drop(p, v, VSWITCH_DROP_MAC_SPOOFING);
		return;
	}
	if (p->guards && guard_drop(p, frame, len, v->payload_off, &why)) {
		drop(p, v, why);
		return;
	}
	p->st.in_packets++;
	p->st.in_bytes += len;
	mactable_learn(&sw->macs, mac_key(v->vlan, frame + 6), in, now_ns);

	vl = &sw->vlans[vlan];
	mirrored = bit_test(sw->mirror_src, in);
	out = MAC_NONE;
	if (!(frame[0] & 1))
		out = mactable_lookup(&sw->macs, mac_key(v->vlan, frame),
				      now_ns, sw->aging_ns);
	if (out == in) {
		/* The destination is on the port it came from. */
	} else if (out != MAC_NONE && bit_test(vl->member, out)) {
		v->dest[0].port = out;
		v->dest[0].tagged = bit_test(vl->tagged, out);
		bit_set(sent, out);
		n = 1;
		mirrored |= bit_test(sw->mirror_src, out);
	} else {
		n = flood(vl, in, v->dest, sent);
		for (w = 0; w < VSW_WORDS; w++)
			mirrored |= (sent[w] & sw->mirror_src[w]) != 0;
	}
	if (mirrored)
		n = mirror(sw, in, v->vlan, sent, v->dest, n);
	v->ndest = n;
}

void vswitch_age(struct vswitch *sw, uint64_t now_ns)
{
	mactable_age(&sw->macs, now_ns, sw->aging_ns);
}

int vswitch_macs(const struct vswitch *sw, uint64_t now_ns,
		 int (*fn)(const struct vswitch_mac_entry *e, void *arg), void *arg)
{
	const struct mactable *t = &sw->macs;
	struct vswitch_mac_entry e;
	uint32_t i;
	int ret;

	for (i = 0; i < t->cap; i++) {
		/* Expired entries are already unknown to forwarding. */
		if (!t->e[i].used ||
		    mac_expired(t->e[i].seen_ns, now_ns, sw->aging_ns))
			continue;
		mac_unkey(t->e[i].key, &e.vlan, e.mac);
		e.port = t->e[i].port;
		e.age_ns = now_ns > t->e[i].seen_ns ? now_ns - t->e[i].seen_ns : 0;
		ret = fn(&e, arg);
		if (ret)
			return ret;
	}
	return 0;
}

void vswitch_stats(const struct vswitch *sw, struct vswitch_stats *st)
{
	const struct mactable *t = &sw->macs;

	st->macs = t->count;
	st->learn_table_full = t->table_full;
	st->learn_port_full = t->port_full;
	st->mac_moves = t->moves;
	st->macs_aged = t->aged;
}
