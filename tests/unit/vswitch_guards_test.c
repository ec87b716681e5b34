// SPDX-License-Identifier: MIT
/*
 * MAC spoofing, DHCP and router guards with crafted packets: each server
 * or router message is dropped from a guarded port and passes from an
 * unguarded one; IPv6 extension header chains are walked (and refused
 * when cut short or too long); IPv4 options and fragments are honoured.
 * A property test then sends random frames: whatever arrives, the
 * verdict is well formed and (under ASan) nothing is read past a frame.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "vswitch_frames.h"
#include "xorshift.h"

#define GUARDED 0	/* both guards, MAC spoofing refused */
#define OPEN 1		/* no guards */
#define DHCP_ONLY 3
#define ROUTER_ONLY 4

static struct vswitch *sw;
static struct vswitch_verdict v;
static struct frame f;
static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static uint8_t port_mac[6];

static void setup(void)
{
	struct vswitch_port_config g = port_untagged(), o = port_untagged();

	sw = vswitch_create(NULL);
	cr_assert(sw);
	mac_of(port_mac, 0x100);
	memcpy(g.mac, port_mac, 6);
	g.mac_spoofing = false;
	g.dhcp_guard = g.router_guard = true;
	cr_assert_eq(add_port(sw, &g), GUARDED);
	cr_assert_eq(add_port(sw, &o), OPEN);
	cr_assert_eq(add_port(sw, &o), 2);
	g.router_guard = false;
	cr_assert_eq(add_port(sw, &g), DHCP_ONLY);
	g.router_guard = true;
	g.dhcp_guard = false;
	cr_assert_eq(add_port(sw, &g), ROUTER_ONLY);
}

static void teardown(void)
{
	vswitch_destroy(sw);
}

/*
 * Every suite in unit-vswitch has the same timeout: criterion 2.4's runner
 * leaks when tests of one executable have different timeouts, and the
 * leak fails the ASan run.
 */
TestSuite(guards, .init = setup, .fini = teardown, .timeout = 60);

static const char *from(uint32_t port)
{
	fwd(sw, port, &f, 0, &v);
	return dests(&v);
}

/* The frame is dropped from @port for @why, and passes from OPEN. */
static void dropped(uint32_t port, const char *why, const char *what)
{
	cr_assert_str_eq(from(port), why, "%s from port %u", what, port);
	cr_assert_str_eq(from(OPEN), "0 2 3 4", "%s with the guard off", what);
}

static void passes(uint32_t port, const char *what)
{
	const char *d = from(port);

	cr_assert(!v.dropped, "%s from port %u: %s", what, port, d);
}

static void eth4(void)
{
	frame_eth(&f, bcast, port_mac, NO_TAG, 0x0800);
}

static void eth6(void)
{
	frame_eth(&f, bcast, port_mac, NO_TAG, 0x86dd);
}

static void bootp(uint8_t op)
{
	uint8_t b[240] = { op, 1, 6, 0 };

	memcpy(b + 236, "\x63\x82\x53\x63", 4);	/* magic cookie */
	frame_put(&f, b, sizeof(b));
}

static void dhcp_offer(unsigned int ihl)
{
	eth4();
	ip4_header(&f, 17, ihl, 0, false);
	udp_header(&f, 67, 68);
	bootp(2);
}

Test(guards, dhcp_offer)
{
	dhcp_offer(5);
	dropped(GUARDED, "drop:dhcp_guard", "offer");
	dropped(DHCP_ONLY, "drop:dhcp_guard", "offer");
	passes(ROUTER_ONLY, "offer");
	/* Behind IPv4 options: the header length is honoured. */
	dhcp_offer(6);
	dropped(GUARDED, "drop:dhcp_guard", "offer with options");
	dhcp_offer(15);
	dropped(GUARDED, "drop:dhcp_guard", "offer with 40 bytes of options");
	/* A server answering from another port still reaches clients. */
	eth4();
	ip4_header(&f, 17, 5, 0, false);
	udp_header(&f, 4067, 68);
	bootp(2);
	dropped(GUARDED, "drop:dhcp_guard", "offer from port 4067");
	/* A server answering a relay: 67 to 67. */
	eth4();
	ip4_header(&f, 17, 5, 0, false);
	udp_header(&f, 67, 67);
	bootp(2);
	dropped(GUARDED, "drop:dhcp_guard", "server to relay");
}

Test(guards, dhcp_client_passes)
{
	eth4();
	ip4_header(&f, 17, 5, 0, false);
	udp_header(&f, 68, 67);
	bootp(1);
	passes(GUARDED, "discover");
	eth4();
	ip4_header(&f, 17, 5, 0, false);
	udp_header(&f, 5353, 5353);
	passes(GUARDED, "mDNS");
}

Test(guards, dhcp_ipv4_fragments)
{
	/* Only the first fragment carries ports. */
	eth4();
	ip4_header(&f, 17, 5, 100, true);
	udp_header(&f, 67, 68);
	passes(GUARDED, "a later fragment");
	/* A first fragment too short for the ports. */
	eth4();
	ip4_header(&f, 17, 5, 0, true);
	frame_put(&f, "\x00\x43\x00", 3);
	dropped(GUARDED, "drop:dhcp_guard", "first fragment without ports");
	/* A header length past the frame's end. */
	eth4();
	ip4_header(&f, 17, 15, 0, false);
	f.len -= 8;
	dropped(GUARDED, "drop:dhcp_guard", "options cut short");
	/* A header length under 20 bytes is not IPv4 anyone accepts; the
	 * guard must not read ports inside the header (here: 67 -> 68). */
	eth4();
	ip4_header(&f, 17, 5, 0, false);
	f.b[14] = 0x44;
	memcpy(f.b + 14 + 16, "\x00\x43\x00\x44", 4);
	passes(GUARDED, "IHL 4");
	dhcp_offer(5);
	f.b[14] = 0x65;
	passes(GUARDED, "version 6 under the IPv4 ethertype");
	/* Not even an IP header: no host takes it. */
	eth4();
	frame_put(&f, "\x45\x00\x00", 3);
	passes(GUARDED, "a stub");
}

static void dhcp6(uint16_t sport, uint16_t dport, int type)
{
	eth6();
	ip6_header(&f, 17);
	udp_header(&f, sport, dport);
	if (type >= 0) {
		uint8_t m[4] = { (uint8_t)type, 1, 2, 3 };

		frame_put(&f, m, sizeof(m));
	}
}

Test(guards, dhcpv6)
{
	dhcp6(547, 546, 2);
	dropped(GUARDED, "drop:dhcp_guard", "advertise");
	passes(ROUTER_ONLY, "advertise");
	dhcp6(547, 546, 7);
	dropped(GUARDED, "drop:dhcp_guard", "reply");
	dhcp6(547, 546, 10);
	dropped(GUARDED, "drop:dhcp_guard", "reconfigure");
	dhcp6(547, 547, 13);
	dropped(GUARDED, "drop:dhcp_guard", "relay-repl");
	dhcp6(547, 547, 7);
	dropped(GUARDED, "drop:dhcp_guard", "reply to a relay");
	dhcp6(547, 547, 2);
	dropped(GUARDED, "drop:dhcp_guard", "advertise to a relay");
	dhcp6(1234, 547, 7);
	dropped(GUARDED, "drop:dhcp_guard", "reply to a relay from port 1234");
	dhcp6(547, 547, 10);
	dropped(GUARDED, "drop:dhcp_guard", "reconfigure to a relay");
	dhcp6(9999, 546, 2);
	dropped(GUARDED, "drop:dhcp_guard", "anything to the client port");
	dhcp6(547, 547, -1);
	dropped(GUARDED, "drop:dhcp_guard", "no message type to see");

	dhcp6(546, 547, 1);
	passes(GUARDED, "solicit");
	dhcp6(546, 547, 3);
	passes(GUARDED, "request");
	dhcp6(547, 547, 12);
	passes(GUARDED, "relay-forw");
	dhcp6(5353, 5353, 2);
	passes(GUARDED, "other UDP");
	/* Not IPv6 (version 4 under the IPv6 ethertype): nobody takes it. */
	dhcp6(547, 546, 2);
	f.b[14] = 0x40;
	passes(GUARDED, "wrong IP version");
}

Test(guards, dhcpv6_behind_extension_headers)
{
	uint8_t m[4] = { 2, 1, 2, 3 };

	eth6();
	ip6_header(&f, 0);
	ip6_ext(&f, 60, 2);
	ip6_ext(&f, 17, 0);
	udp_header(&f, 547, 546);
	frame_put(&f, m, sizeof(m));
	dropped(GUARDED, "drop:dhcp_guard", "advertise behind options");
	/* A later fragment of UDP: useless without the first. */
	eth6();
	ip6_header(&f, 44);
	ip6_frag(&f, 17, 32, false);
	udp_header(&f, 547, 546);
	passes(GUARDED, "a later UDP fragment");
	/* The first fragment carries the ports. */
	eth6();
	ip6_header(&f, 44);
	ip6_frag(&f, 17, 0, true);
	udp_header(&f, 547, 546);
	frame_put(&f, m, sizeof(m));
	dropped(GUARDED, "drop:dhcp_guard", "first fragment of an advertise");
}

static void icmp6_after_chain(uint8_t type)
{
	uint8_t icmp[16] = { type, 0 };

	eth6();
	ip6_header(&f, 0);		/* hop-by-hop */
	ip6_ext(&f, 60, 0);		/* destination options */
	ip6_ext(&f, 58, 1);
	frame_put(&f, icmp, sizeof(icmp));
}

Test(guards, router_advertisement_behind_chain)
{
	icmp6_after_chain(134);
	dropped(GUARDED, "drop:router_guard", "RA behind HBH + dest opts");
	dropped(ROUTER_ONLY, "drop:router_guard", "RA");
	passes(DHCP_ONLY, "RA");
	icmp6_after_chain(137);
	dropped(GUARDED, "drop:router_guard", "redirect");
	icmp6_after_chain(135);
	passes(GUARDED, "neighbor solicitation");
	icmp6_after_chain(133);
	passes(GUARDED, "router solicitation");
	icmp6_after_chain(128);
	passes(GUARDED, "echo request");
}

Test(guards, router_advertisement_behind_ah_and_routing)
{
	uint8_t ra[16] = { 134, 0 };

	/* AH counts its length in 4-byte units, plus 2. */
	eth6();
	ip6_header(&f, 51);
	ip6_ah(&f, 43, 4);
	ip6_ext(&f, 58, 2);		/* routing header */
	frame_put(&f, ra, sizeof(ra));
	dropped(GUARDED, "drop:router_guard", "RA behind AH and routing");
	/* Directly after the IPv6 header. */
	eth6();
	ip6_header(&f, 58);
	frame_put(&f, ra, sizeof(ra));
	dropped(GUARDED, "drop:router_guard", "plain RA");
	/* Behind an atomic fragment (offset 0, no more fragments). */
	eth6();
	ip6_header(&f, 44);
	ip6_frag(&f, 58, 0, false);
	frame_put(&f, ra, sizeof(ra));
	dropped(GUARDED, "drop:router_guard", "RA in an atomic fragment");
}

Test(guards, truncated_chains)
{
	/* A hop-by-hop header that claims 32 bytes where 16 are left. */
	eth6();
	ip6_header(&f, 0);
	ip6_ext(&f, 58, 1);
	f.b[f.len - 16 + 1] = 3;
	dropped(GUARDED, "drop:router_guard", "HBH past the end");
	dropped(DHCP_ONLY, "drop:dhcp_guard", "HBH past the end");
	/* Cut in the middle of an extension header's first two bytes. */
	eth6();
	ip6_header(&f, 60);
	f.b[f.len++] = 58;
	dropped(GUARDED, "drop:router_guard", "one byte of dest opts");
	/* The chain ends where ICMPv6 should start. */
	eth6();
	ip6_header(&f, 0);
	ip6_ext(&f, 58, 0);
	dropped(GUARDED, "drop:router_guard", "no ICMPv6 header");
	/* RFC 7113: a first fragment without the whole chain. */
	eth6();
	ip6_header(&f, 44);
	ip6_frag(&f, 60, 0, true);
	ip6_ext(&f, 58, 4);
	f.len -= 20;
	dropped(GUARDED, "drop:router_guard", "first fragment, chain cut");
	/* A later fragment of an ICMPv6 packet cannot be seen. */
	eth6();
	ip6_header(&f, 44);
	ip6_frag(&f, 58, 8, false);
	frame_put(&f, "\x80\0\0\0\0\0\0\0", 8);
	dropped(GUARDED, "drop:router_guard", "later ICMPv6 fragment");
	passes(DHCP_ONLY, "later ICMPv6 fragment");
	/* A fragment header cut short. */
	eth6();
	ip6_header(&f, 44);
	frame_put(&f, "\x3a\x00\x00", 3);
	dropped(GUARDED, "drop:router_guard", "fragment header cut");
}

Test(guards, chain_length_bound)
{
	uint8_t echo[8] = { 128, 0 };
	int i;

	eth6();
	ip6_header(&f, 60);
	for (i = 0; i < 10; i++)
		ip6_ext(&f, i < 9 ? 60 : 58, 0);
	frame_put(&f, echo, sizeof(echo));
	passes(GUARDED, "ten destination option headers");
	eth6();
	ip6_header(&f, 60);
	for (i = 0; i < 40; i++)
		ip6_ext(&f, i < 39 ? 60 : 58, 0);
	frame_put(&f, echo, sizeof(echo));
	dropped(GUARDED, "drop:router_guard", "forty headers");
}

static void icmp4(uint8_t type, uint16_t frag)
{
	uint8_t m[8] = { type, 1 };

	eth4();
	ip4_header(&f, 1, 5, frag, false);
	frame_put(&f, m, sizeof(m));
}

Test(guards, icmpv4)
{
	icmp4(5, 0);
	dropped(GUARDED, "drop:router_guard", "ICMP redirect");
	passes(DHCP_ONLY, "ICMP redirect");
	icmp4(9, 0);
	dropped(GUARDED, "drop:router_guard", "router advertisement");
	icmp4(8, 0);
	passes(GUARDED, "echo request");
	icmp4(5, 10);
	passes(GUARDED, "a later fragment");
	eth4();
	ip4_header(&f, 1, 5, 0, true);
	dropped(GUARDED, "drop:router_guard", "no ICMP type");
}

Test(guards, inside_a_vlan_tag)
{
	uint16_t allowed[] = { 10 };
	struct vswitch_port_config t = port_trunk(0, allowed, 1);
	uint8_t ra[16] = { 134, 0 };

	t.router_guard = true;
	cr_assert_eq(vswitch_port_set(sw, OPEN, &t), 0);
	frame_eth(&f, bcast, port_mac, 10, 0x86dd);
	ip6_header(&f, 58);
	frame_put(&f, ra, sizeof(ra));
	cr_assert_str_eq(from(OPEN), "drop:router_guard");
	t.router_guard = false;
	cr_assert_eq(vswitch_port_set(sw, OPEN, &t), 0);
	cr_assert_str_eq(from(OPEN), "");	/* nobody else in VLAN 10 */
	cr_assert(!v.dropped);
}

Test(guards, mac_spoofing)
{
	struct vswitch_port_config c = port_untagged();
	struct vswitch_port_stats st;
	uint8_t other[6];

	mac_of(other, 0x200);
	frame_simple(&f, bcast, other, NO_TAG);
	dropped(GUARDED, "drop:mac_spoofing", "spoofed source");
	frame_simple(&f, bcast, port_mac, NO_TAG);
	passes(GUARDED, "its own MAC");
	/* Allowed to spoof. */
	memcpy(c.mac, port_mac, 6);
	c.mac_spoofing = true;
	cr_assert_eq(vswitch_port_set(sw, GUARDED, &c), 0);
	frame_simple(&f, bcast, other, NO_TAG);
	passes(GUARDED, "spoofing allowed");
	/* No MAC (host, uplink): no check. */
	memset(c.mac, 0, 6);
	c.mac_spoofing = false;
	cr_assert_eq(vswitch_port_set(sw, GUARDED, &c), 0);
	passes(GUARDED, "a port without a MAC");
	cr_assert_eq(vswitch_port_stats(sw, GUARDED, &st), 0);
	cr_assert_eq(st.drops[VSWITCH_DROP_MAC_SPOOFING], 1);
	cr_assert_eq(st.in_packets, 3);
}

Test(guards, drops_are_counted)
{
	struct vswitch_port_stats st;

	dhcp_offer(5);
	from(GUARDED);
	from(GUARDED);
	icmp6_after_chain(134);
	from(GUARDED);
	cr_assert_eq(vswitch_port_stats(sw, GUARDED, &st), 0);
	cr_assert_eq(st.drops[VSWITCH_DROP_DHCP_GUARD], 2);
	cr_assert_eq(st.drops[VSWITCH_DROP_ROUTER_GUARD], 1);
	cr_assert_eq(st.in_packets, 0);
	cr_assert_eq(st.in_bytes, 0);
}

/* ---- random frames ---- */

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint32_t rnd(void)
{
	return (uint32_t)(xorshift64(&rng) >> 11);
}

/* Mostly plausible headers with random fields, so the parsers go deep. */
static void random_frame(void)
{
	static const uint16_t types[] = { 0x8100, 0x0800, 0x86dd, 0x88a8, 0x0806 };
	static const uint8_t nh[] = { 0, 43, 44, 51, 60, 58, 17, 6, 59, 50 };
	size_t len = rnd() % 200, i;

	for (i = 0; i < len; i++)
		f.b[i] = (uint8_t)rnd();
	f.len = len;
	if (len > 14 && rnd() % 4) {
		f.b[12] = (uint8_t)(types[rnd() % 5] >> 8);
		f.b[13] = (uint8_t)types[rnd() % 5];
		if (rnd() % 2)
			f.b[6] &= 0xfe;	/* a unicast source */
	}
	for (i = 14; i + 1 < len; i++) {
		unsigned int r = rnd() % 16;

		if (r == 0)
			f.b[i] = nh[rnd() % 10];
		else if (r == 1)
			f.b[i] = (uint8_t)(rnd() % 4);	/* small lengths */
		else if (r == 2)
			f.b[i] = rnd() % 2 ? 0x45 : 0x60;
	}
}

Test(guards, random_frames)
{
	uint16_t allowed[] = { 1, 2, 3, 100, 4094 };
	struct vswitch_port_config t = port_trunk(2, allowed, 5);
	struct vswitch_port_config a = port_access(3);
	struct vswitch_port_stats st;
	uint64_t in = 0, drops = 0;
	bool seen[VSWITCH_MAX_PORTS];

	t.dhcp_guard = t.router_guard = true;
	a.dhcp_guard = a.router_guard = true;
	t.mirror = VSWITCH_MIRROR_SOURCE;
	cr_assert_eq(add_port(sw, &t), 5);
	cr_assert_eq(add_port(sw, &a), 6);
	a.mirror = VSWITCH_MIRROR_DESTINATION;
	cr_assert_eq(add_port(sw, &a), 7);
	/* Checked without cr_assert in the loop: each passing assertion is a
	 * message to criterion's runner, and 300000 of them are slow. */
	for (int n = 0; n < 300000; n++) {
		uint32_t port = rnd() % 8;

		random_frame();
		fwd(sw, port, &f, (uint64_t)n * 1000, &v);
		if (v.dropped) {
			if (v.ndest || (unsigned int)v.drop >= VSWITCH_DROP_NR)
				cr_assert_fail("frame %d: bad drop verdict", n);
			continue;
		}
		if (v.payload_off > f.len || v.vlan > VSWITCH_VLAN_MAX ||
		    v.ndest > 7)
			cr_assert_fail("frame %d: off %zu vlan %u ndest %u", n,
				       v.payload_off, v.vlan, v.ndest);
		memset(seen, 0, sizeof(seen));
		for (unsigned int i = 0; i < v.ndest; i++) {
			uint32_t d = v.dest[i].port;

			if (d >= 8 || d == port || seen[d])
				cr_assert_fail("frame %d: destination %u", n, d);
			seen[d] = true;
		}
	}
	for (uint32_t p = 0; p < 8; p++) {
		cr_assert_eq(vswitch_port_stats(sw, p, &st), 0);
		in += st.in_packets;
		for (int i = 0; i < VSWITCH_DROP_NR; i++)
			drops += st.drops[i];
	}
	cr_assert_eq(in + drops, 300000);
	cr_assert_gt(in, 1000, "some frames should get through (%llu)",
		     (unsigned long long)in);
}
