// SPDX-License-Identifier: MIT
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vswitch_frames.h"

void mac_of(uint8_t *mac, unsigned int n)
{
	mac[0] = 0x02;
	mac[1] = mac[2] = mac[3] = 0;
	mac[4] = (uint8_t)(n >> 8);
	mac[5] = (uint8_t)n;
}

static void put16(struct frame *f, uint16_t v)
{
	f->b[f->len++] = (uint8_t)(v >> 8);
	f->b[f->len++] = (uint8_t)v;
}

void frame_put(struct frame *f, const void *data, size_t len)
{
	if (f->len + len > sizeof(f->b))
		cr_assert_fail("frame too long");
	memcpy(f->b + f->len, data, len);
	f->len += len;
}

void frame_eth(struct frame *f, const uint8_t *dst, const uint8_t *src,
	       int vid, uint16_t ethertype)
{
	f->len = 0;
	frame_put(f, dst, 6);
	frame_put(f, src, 6);
	if (vid != NO_TAG) {
		put16(f, 0x8100);
		put16(f, (uint16_t)(0x2000 | vid));	/* PCP 1 */
	}
	put16(f, ethertype);
}

void frame_simple(struct frame *f, const uint8_t *dst, const uint8_t *src,
		  int vid)
{
	static const uint8_t pad[46] = { 0xab };

	frame_eth(f, dst, src, vid, 0x0800 + 0x0100);	/* 0x0900: no guard */
	frame_put(f, pad, sizeof(pad));
}

void ip4_header(struct frame *f, uint8_t proto, unsigned int ihl,
		uint16_t frag_off, bool more_frags)
{
	uint8_t h[60] = { 0 };

	h[0] = (uint8_t)(0x40 | ihl);
	h[2] = 0;
	h[3] = 200;			/* total length: not checked by the guard */
	h[6] = (uint8_t)((more_frags ? 0x20 : 0) | (frag_off >> 8));
	h[7] = (uint8_t)frag_off;
	h[8] = 64;
	h[9] = proto;
	memcpy(h + 12, "\x0a\x00\x00\x01\xff\xff\xff\xff", 8);
	for (unsigned int i = 20; i < ihl * 4; i++)
		h[i] = 1;		/* NOP options */
	frame_put(f, h, ihl * 4);
}

void udp_header(struct frame *f, uint16_t sport, uint16_t dport)
{
	put16(f, sport);
	put16(f, dport);
	put16(f, 100);
	put16(f, 0);
}

void ip6_header(struct frame *f, uint8_t next)
{
	uint8_t h[40] = { 0x60 };

	h[5] = 100;			/* payload length: not checked */
	h[6] = next;
	h[7] = 255;
	h[8] = 0xfe;			/* fe80::1 -> ff02::1 */
	h[9] = 0x80;
	h[23] = 1;
	h[24] = 0xff;
	h[25] = 0x02;
	h[39] = 1;
	frame_put(f, h, sizeof(h));
}

void ip6_ext(struct frame *f, uint8_t next, uint8_t hlen)
{
	uint8_t h[2048] = { 0 };
	size_t n = 8 * ((size_t)hlen + 1);

	h[0] = next;
	h[1] = hlen;
	h[2] = 1;			/* PadN option filling the rest */
	h[3] = (uint8_t)(n - 4);
	frame_put(f, h, n);
}

void ip6_ah(struct frame *f, uint8_t next, uint8_t plen)
{
	uint8_t h[1024] = { 0 };

	h[0] = next;
	h[1] = plen;
	h[7] = 0x42;			/* SPI */
	frame_put(f, h, 4 * ((size_t)plen + 2));
}

void ip6_frag(struct frame *f, uint8_t next, uint16_t offset8, bool more)
{
	uint8_t h[8] = { next, 0 };
	uint16_t v = (uint16_t)(offset8 << 3 | (more ? 1 : 0));

	h[2] = (uint8_t)(v >> 8);
	h[3] = (uint8_t)v;
	h[7] = 7;			/* identification */
	frame_put(f, h, sizeof(h));
}

void fwd(struct vswitch *sw, uint32_t in, const struct frame *f, uint64_t now,
	 struct vswitch_verdict *v)
{
	uint8_t *copy = malloc(f->len ? f->len : 1);

	if (!copy)	/* assertions that pass cost a message each: test first */
		cr_assert_fail("out of memory");
	memcpy(copy, f->b, f->len);
	memset(v, 0x5a, sizeof(*v));
	vswitch_forward(sw, in, copy, f->len, now, v);
	free(copy);
}

const char *dests(const struct vswitch_verdict *v)
{
	static char buf[4096];
	bool seen[VSWITCH_MAX_PORTS] = { false };
	bool tag[VSWITCH_MAX_PORTS] = { false };
	size_t n = 0;

	if (v->dropped) {
		snprintf(buf, sizeof(buf), "drop:%s", vswitch_drop_name(v->drop));
		return buf;
	}
	for (unsigned int i = 0; i < v->ndest; i++) {
		cr_assert_lt(v->dest[i].port, VSWITCH_MAX_PORTS);
		cr_assert(!seen[v->dest[i].port], "port %u twice",
			  v->dest[i].port);
		seen[v->dest[i].port] = true;
		tag[v->dest[i].port] = v->dest[i].tagged;
	}
	buf[0] = 0;
	for (unsigned int p = 0; p < VSWITCH_MAX_PORTS; p++)
		if (seen[p])
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%u%s",
					      n ? " " : "", p, tag[p] ? "t" : "");
	return buf;
}

struct vswitch_port_config port_untagged(void)
{
	return (struct vswitch_port_config){ .vlan_mode = VSWITCH_VLAN_UNTAGGED,
					     .mac_spoofing = true };
}

struct vswitch_port_config port_access(uint16_t vlan)
{
	struct vswitch_port_config c = port_untagged();

	c.vlan_mode = VSWITCH_VLAN_ACCESS;
	c.access_vlan = vlan;
	return c;
}

struct vswitch_port_config port_trunk(uint16_t native, const uint16_t *allowed,
				      unsigned int n)
{
	struct vswitch_port_config c = port_untagged();

	c.vlan_mode = VSWITCH_VLAN_TRUNK;
	c.native_vlan = native;
	for (unsigned int i = 0; i < n; i++)
		c.trunk_allowed[allowed[i] / 64] |= 1ULL << (allowed[i] % 64);
	return c;
}

uint32_t add_port(struct vswitch *sw, const struct vswitch_port_config *c)
{
	uint32_t id = 9999;

	cr_assert_eq(vswitch_port_add(sw, c, &id), 0);
	return id;
}
