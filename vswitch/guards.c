// SPDX-License-Identifier: MIT
/*
 * DHCP guard and router guard: drop server and router messages sent by a
 * port that is not trusted to send them.  Frames come from guests, so
 * every read is checked against the frame's length.
 *
 * What is dropped (by the guard that is on):
 *  - DHCP (IPv4): UDP from port 67 or to port 68, i.e. anything a server
 *    or relay sends to clients.  Clients accept offers from any source
 *    port, so the destination matters as much as the source.
 *  - DHCPv6 (RFC 7610): UDP to the client port 546, and ADVERTISE, REPLY,
 *    RECONFIGURE and RELAY-REPL messages from or to port 547.
 *  - router (IPv4): ICMP redirect (5) and router advertisement (9).
 *  - router (IPv6, RFC 7113): ICMPv6 router advertisement (134) and
 *    redirect (137), found after walking the extension headers.
 * A packet whose relevant upper-layer header the guard cannot see is
 * dropped too: an IPv6 header chain cut short or too long, a first
 * fragment without the whole chain, a non-first IPv6 fragment of an
 * ICMPv6 (router guard) packet, and an IPv4 first fragment too short to
 * hold the UDP ports or the ICMP type.  Only IPv4 first fragments carry
 * ports; later IPv4 fragments cannot be reassembled without the first.
 * A frame too short to be an IP header at all is left alone: no host
 * accepts it.
 */
#include "vswitch/internal.h"

#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_ICMP_ 1
#define IPPROTO_UDP_ 17
#define IPPROTO_ROUTING_ 43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_AH_ 51
#define IPPROTO_ICMPV6_ 58
#define IPPROTO_DSTOPTS_ 60

/* More extension headers than any real packet carries. */
#define EXT_MAX 16

struct l4 {
	uint8_t proto;		/* upper-layer protocol */
	size_t off;		/* where its header starts */
	bool blind;		/* its header is not in this packet */
};

static bool dhcp4_server(const uint8_t *u)
{
	return rd16(u) == 67 || rd16(u + 2) == 68;
}

static bool dhcp6_server(const uint8_t *u, size_t avail, bool *blind)
{
	uint16_t sport = rd16(u), dport = rd16(u + 2);
	uint8_t type;

	if (dport == 546)
		return true;
	if (sport != 547 && dport != 547)
		return false;
	if (avail < 9) {
		*blind = true;	/* the message type is not here */
		return false;
	}
	type = u[8];
	return type == 2 || type == 7 || type == 10 || type == 13;
}

static bool drop(enum vswitch_drop *why, enum vswitch_drop reason)
{
	*why = reason;
	return true;
}

static bool guard_ipv4(const struct vsw_port *p, const uint8_t *f, size_t len,
		       size_t ip, enum vswitch_drop *why)
{
	size_t hl, l4;
	uint8_t proto;

	if (len - ip < 20 || f[ip] >> 4 != 4)
		return false;
	hl = (size_t)(f[ip] & 0x0f) * 4;
	if (hl < 20)
		return false;
	if (rd16(f + ip + 6) & 0x1fff)
		return false;	/* not the first fragment: no ports here */
	proto = f[ip + 9];
	l4 = ip + hl;
	if (proto == IPPROTO_UDP_ && p->cfg.dhcp_guard) {
		if (l4 > len || len - l4 < 4 || dhcp4_server(f + l4))
			return drop(why, VSWITCH_DROP_DHCP_GUARD);
	} else if (proto == IPPROTO_ICMP_ && p->cfg.router_guard) {
		if (l4 >= len || f[l4] == 5 || f[l4] == 9)
			return drop(why, VSWITCH_DROP_ROUTER_GUARD);
	}
	return false;
}

/* Walk the IPv6 header chain; false if it cannot be followed to its end. */
static bool ipv6_chain(const uint8_t *f, size_t len, size_t ip, struct l4 *r)
{
	uint8_t nh = f[ip + 6];
	size_t off = ip + 40, hl;
	unsigned int n;

	r->blind = false;
	for (n = 0; n <= EXT_MAX; n++) {
		switch (nh) {
		case IPPROTO_FRAGMENT_:
			if (len - off < 8)
				return false;
			if (rd16(f + off + 2) & 0xfff8) {
				/* A later fragment: only its protocol is known. */
				r->proto = f[off];
				r->off = off + 8;
				r->blind = true;
				return true;
			}
			nh = f[off];
			off += 8;
			continue;
		case IPPROTO_HOPOPTS_:
		case IPPROTO_ROUTING_:
		case IPPROTO_DSTOPTS_:
		case IPPROTO_AH_:
			if (len - off < 2)
				return false;
			if (nh == IPPROTO_AH_)
				hl = ((size_t)f[off + 1] + 2) * 4;
			else
				hl = ((size_t)f[off + 1] + 1) * 8;
			if (len - off < hl)
				return false;
			nh = f[off];
			off += hl;
			continue;
		default:
			r->proto = nh;
			r->off = off;
			return true;
		}
	}
	return false;
}

static bool guard_ipv6(const struct vsw_port *p, const uint8_t *f, size_t len,
		       size_t ip, enum vswitch_drop *why)
{
	enum vswitch_drop reason = p->cfg.router_guard ?
		VSWITCH_DROP_ROUTER_GUARD : VSWITCH_DROP_DHCP_GUARD;
	struct l4 r;
	size_t avail;
	bool blind = false;

	if (len - ip < 40 || f[ip] >> 4 != 6)
		return false;
	if (!ipv6_chain(f, len, ip, &r))
		return drop(why, reason);
	avail = len - r.off;	/* r.off <= len: the walk checked */
	if (r.proto == IPPROTO_ICMPV6_ && p->cfg.router_guard) {
		if (r.blind || avail < 1 || f[r.off] == 134 || f[r.off] == 137)
			return drop(why, VSWITCH_DROP_ROUTER_GUARD);
	} else if (r.proto == IPPROTO_UDP_ && p->cfg.dhcp_guard && !r.blind) {
		/* Later UDP fragments are useless without the first. */
		if (avail < 4 || dhcp6_server(f + r.off, avail, &blind) || blind)
			return drop(why, VSWITCH_DROP_DHCP_GUARD);
	}
	return false;
}

bool guard_drop(const struct vsw_port *p, const uint8_t *f, size_t len,
		size_t off, enum vswitch_drop *why)
{
	uint16_t type;

	if (len - off < 2)
		return false;
	type = rd16(f + off);
	if (type == ETHTYPE_IPV4)
		return guard_ipv4(p, f, len, off + 2, why);
	if (type == ETHTYPE_IPV6)
		return guard_ipv6(p, f, len, off + 2, why);
	return false;
}
