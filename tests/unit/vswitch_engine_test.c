// SPDX-License-Identifier: MIT
/*
 * The vswitch engine with crafted frames: learning, moves, aging, table
 * bounds, flooding within a VLAN, VLAN modes and tagging, mirroring,
 * counters, port ids and configuration checks.  Guards and the rate limit
 * have their own files.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vswitch_frames.h"

#define SEC 1000000000ULL

static struct vswitch *sw;
static struct vswitch_verdict v;
static struct frame f;
static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const uint8_t mcast[6] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb };

static void teardown(void)
{
	vswitch_destroy(sw);
	sw = NULL;
}

static void make(unsigned int table_max, unsigned int port_max,
		 uint64_t aging_ns)
{
	struct vswitch_opts o = { .mac_table_max = table_max,
				  .mac_port_max = port_max,
				  .aging_ns = aging_ns };

	sw = vswitch_create(&o);
	cr_assert(sw);
}

/* Send a plain frame from MAC @from to MAC @to (numbers) on @in. */
static const char *send(uint32_t in, unsigned int from, unsigned int to,
			int vid, uint64_t now)
{
	uint8_t s[6], d[6];

	mac_of(s, from);
	mac_of(d, to);
	frame_simple(&f, d, s, vid);
	fwd(sw, in, &f, now, &v);
	return dests(&v);
}

static const char *send_to(uint32_t in, unsigned int from, const uint8_t *d,
			   int vid)
{
	uint8_t s[6];

	mac_of(s, from);
	frame_simple(&f, d, s, vid);
	fwd(sw, in, &f, 0, &v);
	return dests(&v);
}

struct listing {
	unsigned int n;
	struct vswitch_mac_entry e[64];
};

static int collect(const struct vswitch_mac_entry *e, void *arg)
{
	struct listing *l = arg;

	if (l->n < 64)
		l->e[l->n] = *e;
	l->n++;
	return 0;
}

static struct vswitch_stats stats(void)
{
	struct vswitch_stats st;

	memset(&st, 0xee, sizeof(st));
	vswitch_stats(sw, &st);
	return st;
}

TestSuite(learn, .fini = teardown, .timeout = 60);

Test(learn, flood_then_unicast)
{
	struct vswitch_port_config c = port_untagged();
	struct listing l = { 0 };
	uint8_t mac[6];

	make(0, 0, 0);
	add_port(sw, &c);
	add_port(sw, &c);
	add_port(sw, &c);
	cr_assert_str_eq(send(0, 10, 11, NO_TAG, 0), "1 2");	/* unknown */
	cr_assert_eq(v.vlan, 0);
	cr_assert_eq(v.payload_off, 12);
	cr_assert_str_eq(send(1, 11, 10, NO_TAG, 0), "0");	/* learned */
	cr_assert_str_eq(send(0, 10, 11, NO_TAG, 0), "1");
	cr_assert_str_eq(send(2, 12, 10, NO_TAG, 0), "0");
	/* Known, on the port it came from: nowhere, and not a drop. */
	cr_assert_str_eq(send(0, 13, 10, NO_TAG, 0), "");
	cr_assert(!v.dropped);

	cr_assert_eq(vswitch_macs(sw, 5 * SEC, collect, &l), 0);
	cr_assert_eq(l.n, 4);
	cr_assert_eq(stats().macs, 4);
	mac_of(mac, 11);
	for (unsigned int i = 0; i < l.n; i++) {
		if (memcmp(l.e[i].mac, mac, 6))
			continue;
		cr_assert_eq(l.e[i].port, 1);
		cr_assert_eq(l.e[i].vlan, 0);
		cr_assert_eq(l.e[i].age_ns, 5 * SEC);
		return;
	}
	cr_assert_fail("MAC 11 not listed");
}

static int stop_early(const struct vswitch_mac_entry *e, void *arg)
{
	(void)e;
	++*(int *)arg;
	return 7;
}

Test(learn, listing_stops_early)
{
	struct vswitch_port_config c = port_untagged();
	int calls = 0;

	make(0, 0, 0);
	add_port(sw, &c);
	add_port(sw, &c);
	send(0, 1, 2, NO_TAG, 0);
	send(0, 3, 2, NO_TAG, 0);
	cr_assert_eq(vswitch_macs(sw, 0, stop_early, &calls), 7);
	cr_assert_eq(calls, 1);
}

Test(learn, mac_moves)
{
	struct vswitch_port_config c = port_untagged();

	make(0, 0, 0);
	for (int i = 0; i < 3; i++)
		add_port(sw, &c);
	send(0, 10, 99, NO_TAG, 0);
	cr_assert_str_eq(send(1, 11, 10, NO_TAG, 0), "0");
	/* The VM behind port 0 migrates to port 2. */
	send(2, 10, 99, NO_TAG, 1);
	cr_assert_str_eq(send(1, 11, 10, NO_TAG, 2), "2");
	cr_assert_eq(stats().mac_moves, 1);
	cr_assert_eq(stats().macs, 2);
}

Test(learn, per_vlan_entries)
{
	uint16_t allowed[] = { 10, 20 };
	struct vswitch_port_config t = port_trunk(0, allowed, 2);
	struct vswitch_port_config a10 = port_access(10), a20 = port_access(20);

	make(0, 0, 0);
	add_port(sw, &t);	/* 0 */
	add_port(sw, &a10);	/* 1 */
	add_port(sw, &a20);	/* 2 */
	add_port(sw, &t);	/* 3 */
	/* The same MAC in two VLANs, behind different ports. */
	send(1, 50, 99, NO_TAG, 0);
	send(3, 50, 99, 20, 0);
	cr_assert_str_eq(send(0, 60, 50, 10, 0), "1");
	cr_assert_str_eq(send(0, 60, 50, 20, 0), "3t");
	cr_assert_eq(stats().macs, 4);	/* 50 twice, 60 twice */
}

Test(learn, aging)
{
	struct vswitch_port_config c = port_untagged();
	struct listing l = { 0 };

	make(0, 0, 1 * SEC);
	for (int i = 0; i < 3; i++)
		add_port(sw, &c);
	send(0, 10, 99, NO_TAG, 0);
	send(1, 11, 99, NO_TAG, SEC / 2);
	cr_assert_str_eq(send(2, 12, 10, NO_TAG, SEC / 2), "0");
	/* Not seen for the aging time: unknown at once, before any age(). */
	cr_assert_str_eq(send(2, 12, 10, NO_TAG, SEC), "0 1");
	cr_assert_str_eq(send(2, 12, 11, NO_TAG, SEC), "1");
	vswitch_macs(sw, SEC + SEC / 4, collect, &l);
	cr_assert_eq(l.n, 2, "an expired MAC is not listed, got %u", l.n);
	l.n = 0;
	vswitch_age(sw, SEC + SEC / 4);
	vswitch_macs(sw, SEC + SEC / 4, collect, &l);
	cr_assert_eq(l.n, 2, "MACs 11 and 12 stay, got %u", l.n);
	cr_assert_eq(stats().macs_aged, 1);
	cr_assert_eq(stats().macs, 2);
	/* Seen again: learned again. */
	send(0, 10, 99, NO_TAG, 2 * SEC);
	cr_assert_str_eq(send(2, 12, 10, NO_TAG, 2 * SEC), "0");
	/* A MAC that keeps sending stays known past its first sighting. */
	send(1, 11, 99, NO_TAG, 2 * SEC);
	send(1, 11, 99, NO_TAG, 2 * SEC + SEC / 2);
	cr_assert_str_eq(send(2, 12, 11, NO_TAG, 3 * SEC + SEC / 4), "1");
	vswitch_age(sw, 10 * SEC);
	cr_assert_eq(stats().macs, 0);
	cr_assert_str_eq(send(2, 12, 10, NO_TAG, 10 * SEC), "0 1");
}

Test(learn, table_bound)
{
	struct vswitch_port_config c = port_untagged();

	make(4, 0, 0);
	add_port(sw, &c);
	add_port(sw, &c);
	add_port(sw, &c);
	for (unsigned int m = 100; m < 106; m++)
		cr_assert_str_eq(send(0, m, 999, NO_TAG, 0), "1 2",
				 "frames are flooded even when not learned");
	cr_assert_eq(stats().macs, 4);
	cr_assert_eq(stats().learn_table_full, 2);
	cr_assert_str_eq(send(1, 7, 103, NO_TAG, 0), "0");
	cr_assert_str_eq(send(1, 7, 104, NO_TAG, 0), "0 2", "104 was not learned");
	/* Port 1's MAC 7 was not learned either: the table is full. */
	cr_assert_str_eq(send(0, 100, 7, NO_TAG, 0), "1 2");
	cr_assert_eq(stats().learn_table_full, 4);
}

Test(learn, port_bound)
{
	struct vswitch_port_config c = port_untagged();

	make(0, 2, 0);
	add_port(sw, &c);
	add_port(sw, &c);
	add_port(sw, &c);
	send(0, 100, 999, NO_TAG, 0);
	send(0, 101, 999, NO_TAG, 0);
	send(0, 102, 999, NO_TAG, 0);
	cr_assert_eq(stats().learn_port_full, 1);
	cr_assert_str_eq(send(1, 7, 101, NO_TAG, 0), "0");
	cr_assert_str_eq(send(1, 8, 102, NO_TAG, 0), "0 2");
	/* Port 1 learned 7 and 8 regardless of port 0 being full. */
	cr_assert_str_eq(send(0, 100, 8, NO_TAG, 0), "1");
	cr_assert_eq(stats().macs, 4);
	/* A MAC moving to a full port leaves its old entry and is not learned. */
	send(0, 7, 999, NO_TAG, 0);
	cr_assert_eq(stats().learn_port_full, 2);
	cr_assert_eq(stats().macs, 3);
	cr_assert_str_eq(send(2, 9, 7, NO_TAG, 0), "0 1");
}

Test(learn, bad_sources)
{
	struct vswitch_port_config c = port_untagged();
	struct vswitch_port_stats st;
	uint8_t zero[6] = { 0 }, d[6];

	make(0, 0, 0);
	add_port(sw, &c);
	add_port(sw, &c);
	mac_of(d, 1);
	frame_simple(&f, d, mcast, NO_TAG);
	fwd(sw, 0, &f, 0, &v);
	cr_assert_str_eq(dests(&v), "drop:malformed");
	frame_simple(&f, d, zero, NO_TAG);
	fwd(sw, 0, &f, 0, &v);
	cr_assert_str_eq(dests(&v), "drop:malformed");
	for (size_t len = 0; len < VSWITCH_ETH_MIN; len++) {
		frame_simple(&f, d, d, NO_TAG);
		f.len = len;
		fwd(sw, 0, &f, 0, &v);
		cr_assert_str_eq(dests(&v), "drop:malformed", "len %zu", len);
	}
	frame_simple(&f, bcast, d, NO_TAG);
	f.len = VSWITCH_ETH_MIN;
	fwd(sw, 0, &f, 0, &v);
	cr_assert_str_eq(dests(&v), "1", "a bare header is a frame");
	cr_assert_eq(stats().macs, 1);
	vswitch_port_stats(sw, 0, &st);
	cr_assert_eq(st.drops[VSWITCH_DROP_MALFORMED], 16);
	cr_assert_eq(st.in_packets, 1);
	/* A port that does not exist. */
	fwd(sw, 7, &f, 0, &v);
	cr_assert(v.dropped);
	cr_assert_eq(v.ndest, 0);
}

TestSuite(flood, .fini = teardown, .timeout = 60);

/*
 * 0: access 10, 1: access 10, 2: access 20, 3: untagged,
 * 4: trunk 10,20 native 0, 5: untagged.
 */
static void vlan_ports(void)
{
	uint16_t allowed[] = { 10, 20 };
	struct vswitch_port_config a10 = port_access(10), a20 = port_access(20);
	struct vswitch_port_config u = port_untagged();
	struct vswitch_port_config t = port_trunk(0, allowed, 2);

	make(0, 0, 0);
	add_port(sw, &a10);
	add_port(sw, &a10);
	add_port(sw, &a20);
	add_port(sw, &u);
	add_port(sw, &t);
	add_port(sw, &u);
}

Test(flood, within_the_vlan)
{
	vlan_ports();
	cr_assert_str_eq(send_to(0, 1, bcast, NO_TAG), "1 4t");
	cr_assert_eq(v.vlan, 10);
	cr_assert_str_eq(send_to(0, 1, mcast, NO_TAG), "1 4t");
	cr_assert_str_eq(send(0, 1, 777, NO_TAG, 0), "1 4t");
	cr_assert_str_eq(send_to(2, 2, bcast, NO_TAG), "4t");
	cr_assert_eq(v.vlan, 20);
	cr_assert_str_eq(send_to(3, 3, bcast, NO_TAG), "4 5");
	cr_assert_eq(v.vlan, 0);
	cr_assert_str_eq(send_to(4, 4, bcast, 10), "0 1");
	cr_assert_eq(v.payload_off, 16);
	cr_assert_str_eq(send_to(4, 4, bcast, 20), "2");
	cr_assert_str_eq(send_to(4, 4, bcast, NO_TAG), "3 5");
	cr_assert_eq(v.payload_off, 12);
}

Test(flood, vlans_are_isolated)
{
	vlan_ports();
	send(2, 20, 999, NO_TAG, 0);		/* MAC 20 lives in VLAN 20 */
	cr_assert_str_eq(send(0, 1, 20, NO_TAG, 0), "1 4t",
			 "VLAN 10 does not know VLAN 20's MAC");
	send(3, 30, 999, NO_TAG, 0);		/* MAC 30 in VLAN 0 */
	cr_assert_str_eq(send(0, 1, 30, NO_TAG, 0), "1 4t");
	cr_assert_str_eq(send(5, 5, 30, NO_TAG, 0), "3");
}

TestSuite(vlan, .fini = teardown, .timeout = 60);

Test(vlan, access_and_trunk_tagging)
{
	vlan_ports();
	send(4, 40, 999, 10, 0);		/* MAC 40 behind the trunk */
	cr_assert_str_eq(send(0, 1, 40, NO_TAG, 0), "4t");
	cr_assert_eq(v.vlan, 10);
	cr_assert_eq(v.payload_off, 12);
	cr_assert_str_eq(send(4, 40, 1, 10, 0), "0");
	cr_assert_eq(v.vlan, 10);
	cr_assert_eq(v.payload_off, 16, "the tag is stripped for port 0");
}

Test(vlan, native_vlan)
{
	uint16_t allowed[] = { 20, 30 };
	struct vswitch_port_config t = port_trunk(10, allowed, 2);
	struct vswitch_port_config a10 = port_access(10);
	struct vswitch_port_config u = port_untagged();
	struct vswitch_port_config t2 = port_trunk(0, allowed, 2);

	make(0, 0, 0);
	add_port(sw, &t);	/* 0: native 10, not in its allowed list */
	add_port(sw, &a10);	/* 1 */
	add_port(sw, &u);	/* 2 */
	add_port(sw, &t2);	/* 3 */
	cr_assert_str_eq(send_to(0, 1, bcast, NO_TAG), "1");
	cr_assert_eq(v.vlan, 10);
	cr_assert_str_eq(send_to(1, 2, bcast, NO_TAG), "0", "native leaves untagged");
	cr_assert_str_eq(send_to(0, 1, bcast, 10), "drop:vlan",
			 "VLAN 10 is not allowed tagged");
	cr_assert_str_eq(send_to(0, 1, bcast, 20), "3t");
	cr_assert_str_eq(send_to(3, 3, bcast, NO_TAG), "2");
	cr_assert_eq(v.vlan, 0);

	/* Native also in the allowed list: tagged accepted, sent untagged. */
	uint16_t with10[] = { 10, 20 };
	struct vswitch_port_config t3 = port_trunk(10, with10, 2);

	cr_assert_eq(vswitch_port_set(sw, 3, &t3), 0);
	cr_assert_str_eq(send_to(3, 3, bcast, 10), "0 1");
	cr_assert_str_eq(send_to(1, 2, bcast, NO_TAG), "0 3");
	cr_assert_str_eq(send_to(3, 3, bcast, 20), "0t");
}

Test(vlan, drops)
{
	struct vswitch_port_stats st;

	vlan_ports();
	cr_assert_str_eq(send_to(4, 4, bcast, 30), "drop:vlan");
	cr_assert_str_eq(send_to(0, 1, bcast, 10), "drop:vlan",
			 "tagged on an access port, even its own VLAN");
	cr_assert_str_eq(send_to(3, 1, bcast, 10), "drop:vlan");
	vswitch_port_stats(sw, 4, &st);
	cr_assert_eq(st.drops[VSWITCH_DROP_VLAN], 1);
	cr_assert_eq(st.in_packets, 0);
	vswitch_port_stats(sw, 0, &st);
	cr_assert_eq(st.drops[VSWITCH_DROP_VLAN], 1);
}

Test(vlan, priority_tags)
{
	vlan_ports();
	cr_assert_str_eq(send_to(0, 1, bcast, 0), "1 4t");
	cr_assert_eq(v.vlan, 10);
	cr_assert_eq(v.payload_off, 16, "the priority tag is not forwarded");
	cr_assert_str_eq(send_to(3, 1, bcast, 0), "4 5");
	cr_assert_str_eq(send_to(4, 1, bcast, 0), "3 5");
	cr_assert_eq(v.vlan, 0);
}

Test(vlan, bad_tags)
{
	uint8_t s[6];

	vlan_ports();
	mac_of(s, 1);
	cr_assert_str_eq(send_to(4, 1, bcast, 0xfff), "drop:malformed");
	/* A tag cut short. */
	frame_eth(&f, bcast, s, 10, 0x0800);
	f.len = 16;
	fwd(sw, 4, &f, 0, &v);
	cr_assert_str_eq(dests(&v), "drop:malformed");
	f.len = 17;
	fwd(sw, 4, &f, 0, &v);
	cr_assert_str_eq(dests(&v), "drop:malformed");
	f.len = 18;
	fwd(sw, 4, &f, 0, &v);
	cr_assert_str_eq(dests(&v), "0 1");
	/* Stacked 802.1Q tags (VLAN hopping), also behind a priority tag. */
	frame_eth(&f, bcast, s, 10, 0x8100);
	frame_put(&f, "\x00\x14\x08\x00", 4);
	fwd(sw, 4, &f, 0, &v);
	cr_assert_str_eq(dests(&v), "drop:malformed");
	frame_eth(&f, bcast, s, 0, 0x8100);
	frame_put(&f, "\x00\x14\x08\x00", 4);
	fwd(sw, 0, &f, 0, &v);
	cr_assert_str_eq(dests(&v), "drop:malformed");
	/* 0x88a8 is an ethertype like any other. */
	frame_eth(&f, bcast, s, NO_TAG, 0x88a8);
	frame_put(&f, "\x00\x14\x08\x00", 4);
	fwd(sw, 0, &f, 0, &v);
	cr_assert_str_eq(dests(&v), "1 4t");
}

Test(vlan, changing_vlans_forgets_macs)
{
	struct vswitch_port_config a20 = port_access(20), a10 = port_access(10);

	vlan_ports();
	send(0, 100, 999, NO_TAG, 0);
	cr_assert_str_eq(send(1, 101, 100, NO_TAG, 0), "0");
	/* A change that keeps the VLANs keeps the MACs. */
	a10.dhcp_guard = true;
	cr_assert_eq(vswitch_port_set(sw, 0, &a10), 0);
	cr_assert_str_eq(send(1, 101, 100, NO_TAG, 0), "0");
	cr_assert_eq(vswitch_port_set(sw, 0, &a20), 0);
	cr_assert_str_eq(send(1, 101, 100, NO_TAG, 0), "4t");
	cr_assert_str_eq(send_to(2, 2, bcast, NO_TAG), "0 4t");
	cr_assert_eq(stats().macs, 2);	/* 101 and 2 */
}

Test(vlan, changing_native_forgets_macs)
{
	uint16_t allowed[] = { 10, 20 };
	struct vswitch_port_config t = port_trunk(0, allowed, 2);

	vlan_ports();
	send(4, 100, 999, 10, 0);
	cr_assert_str_eq(send(0, 1, 100, NO_TAG, 0), "4t");
	t.native_vlan = 20;
	cr_assert_eq(vswitch_port_set(sw, 4, &t), 0);
	cr_assert_str_eq(send(0, 1, 100, NO_TAG, 0), "1 4t");
	send(4, 100, 999, 10, 0);
	t.trunk_allowed[0] = 1ULL << 10;
	cr_assert_eq(vswitch_port_set(sw, 4, &t), 0);
	cr_assert_str_eq(send(0, 1, 100, NO_TAG, 0), "1 4t");
}

TestSuite(mirror, .fini = teardown, .timeout = 60);

/* 0, 1: plain; 2: destination; 3: source; 4: destination, access 10. */
static void mirror_ports(void)
{
	struct vswitch_port_config u = port_untagged();
	struct vswitch_port_config d = port_untagged();
	struct vswitch_port_config s = port_untagged();
	struct vswitch_port_config d10 = port_access(10);

	d.mirror = d10.mirror = VSWITCH_MIRROR_DESTINATION;
	s.mirror = VSWITCH_MIRROR_SOURCE;
	make(0, 0, 0);
	add_port(sw, &u);
	add_port(sw, &u);
	add_port(sw, &d);
	add_port(sw, &s);
	add_port(sw, &d10);
	send(0, 100, 999, NO_TAG, 0);
	send(1, 101, 999, NO_TAG, 0);
	send(3, 103, 999, NO_TAG, 0);
	send(2, 102, 999, NO_TAG, 0);
}

Test(mirror, source_in_and_out)
{
	mirror_ports();
	cr_assert_str_eq(send(3, 103, 100, NO_TAG, 0), "0 2 4");
	cr_assert_str_eq(send(0, 100, 103, NO_TAG, 0), "2 3 4");
	cr_assert_str_eq(send(0, 100, 101, NO_TAG, 0), "1", "no source involved");
	/* A flood from the source: port 2 gets it once. */
	cr_assert_str_eq(send_to(3, 103, bcast, NO_TAG), "0 1 2 4");
	/* A flood reaching the source mirrors too; never back to the sender. */
	cr_assert_str_eq(send_to(2, 102, bcast, NO_TAG), "0 1 3 4");
	cr_assert_str_eq(send(2, 102, 103, NO_TAG, 0), "3 4");
}

Test(mirror, tagged_copies)
{
	uint16_t allowed[] = { 10 };
	struct vswitch_port_config t = port_trunk(0, allowed, 1);
	struct vswitch_port_config s10 = port_access(10);

	mirror_ports();
	t.mirror = VSWITCH_MIRROR_SOURCE;
	cr_assert_eq(vswitch_port_set(sw, 0, &t), 0);
	s10.mirror = VSWITCH_MIRROR_NONE;
	cr_assert_eq(vswitch_port_set(sw, 1, &s10), 0);
	/* VLAN 10 from the source trunk: port 4 is in VLAN 10 (untagged),
	 * port 2 is not and gets a tagged copy. */
	cr_assert_str_eq(send(0, 100, 101, 10, 0), "1 2t 4");
	/* VLAN 0: port 1 left it (and its MAC was forgotten). */
	cr_assert_str_eq(send(0, 100, 101, NO_TAG, 0), "2 3 4");
	/* No longer a source. */
	t.mirror = VSWITCH_MIRROR_NONE;
	cr_assert_eq(vswitch_port_set(sw, 0, &t), 0);
	cr_assert_str_eq(send(0, 100, 102, NO_TAG, 0), "2");
	vswitch_port_remove(sw, 3);
	cr_assert_str_eq(send_to(0, 100, bcast, NO_TAG), "2");
}

TestSuite(counters, .fini = teardown, .timeout = 60);

Test(counters, in_out_drops)
{
	struct vswitch_port_config c = port_untagged();
	struct vswitch_port_stats st;

	make(0, 0, 0);
	add_port(sw, &c);
	add_port(sw, &c);
	send(0, 1, 2, NO_TAG, 0);
	send(0, 1, 2, NO_TAG, 0);
	send(0, 1, 2, 5, 0);			/* dropped: VLAN */
	vswitch_port_sent(sw, 1, 60);
	vswitch_port_sent(sw, 1, 1500);
	vswitch_port_dropped(sw, 1, VSWITCH_DROP_NO_ROOM);
	vswitch_port_dropped(sw, 1, VSWITCH_DROP_NR);	/* ignored */
	vswitch_port_sent(sw, 200, 60);			/* no such port */
	vswitch_port_dropped(sw, 200, VSWITCH_DROP_NO_ROOM);
	cr_assert_eq(vswitch_port_stats(sw, 0, &st), 0);
	cr_assert_eq(st.in_packets, 2);
	cr_assert_eq(st.in_bytes, 2 * 60);
	cr_assert_eq(st.out_packets, 0);
	cr_assert_eq(st.drops[VSWITCH_DROP_VLAN], 1);
	cr_assert_eq(vswitch_port_stats(sw, 1, &st), 0);
	cr_assert_eq(st.in_packets, 0);
	cr_assert_eq(st.out_packets, 2);
	cr_assert_eq(st.out_bytes, 1560);
	cr_assert_eq(st.drops[VSWITCH_DROP_NO_ROOM], 1);
	for (int i = 0; i < VSWITCH_DROP_NR; i++)
		if (i != VSWITCH_DROP_NO_ROOM)
			cr_assert_eq(st.drops[i], 0);
	cr_assert_eq(vswitch_port_stats(sw, 2, &st), -ENOENT);
	cr_assert_eq(vswitch_port_stats(sw, 100000, &st), -ENOENT);
}

Test(counters, drop_names)
{
	cr_assert_str_eq(vswitch_drop_name(VSWITCH_DROP_MALFORMED), "malformed");
	cr_assert_str_eq(vswitch_drop_name(VSWITCH_DROP_VLAN), "vlan");
	cr_assert_str_eq(vswitch_drop_name(VSWITCH_DROP_MAC_SPOOFING),
			 "mac_spoofing");
	cr_assert_str_eq(vswitch_drop_name(VSWITCH_DROP_DHCP_GUARD), "dhcp_guard");
	cr_assert_str_eq(vswitch_drop_name(VSWITCH_DROP_ROUTER_GUARD),
			 "router_guard");
	cr_assert_str_eq(vswitch_drop_name(VSWITCH_DROP_NO_ROOM), "no_room");
	cr_assert_str_eq(vswitch_drop_name(VSWITCH_DROP_NR), "unknown");
}

TestSuite(ports, .fini = teardown, .timeout = 60);

Test(ports, ids_are_reused)
{
	struct vswitch_port_config c = port_untagged();
	struct vswitch_port_stats st;
	uint32_t id;

	make(0, 0, 0);
	cr_assert_eq(add_port(sw, &c), 0);
	cr_assert_eq(add_port(sw, &c), 1);
	cr_assert_eq(add_port(sw, &c), 2);
	send(0, 10, 999, NO_TAG, 0);
	send(2, 12, 999, NO_TAG, 0);
	for (unsigned int m = 0; m < 20; m++)
		send(1, 20 + m, 999, NO_TAG, 0);
	send(1, 11, 999, NO_TAG, 0);
	cr_assert_str_eq(send(0, 10, 11, NO_TAG, 0), "1");
	vswitch_port_remove(sw, 1);
	vswitch_port_remove(sw, 1);		/* twice: nothing */
	vswitch_port_remove(sw, 4000);
	cr_assert_str_eq(send(0, 10, 11, NO_TAG, 0), "2", "MAC 11 forgotten");
	cr_assert_eq(stats().macs, 2);
	cr_assert_eq(vswitch_port_set(sw, 1, &c), -ENOENT);
	cr_assert_eq(add_port(sw, &c), 1);
	cr_assert_eq(vswitch_port_stats(sw, 1, &st), 0);
	cr_assert_eq(st.in_packets, 0, "a reused id starts with fresh counters");
	cr_assert_str_eq(send(0, 10, 11, NO_TAG, 0), "1 2");
	for (uint32_t i = 3; i < VSWITCH_MAX_PORTS; i++)
		cr_assert_eq(add_port(sw, &c), i);
	cr_assert_eq(vswitch_port_add(sw, &c, &id), -ENOSPC);
	/* A flood over 256 ports. */
	cr_assert_eq(strlen(send_to(0, 10, bcast, NO_TAG)) > 0, 1);
	cr_assert_eq(v.ndest, VSWITCH_MAX_PORTS - 1);
	vswitch_port_remove(sw, 77);
	cr_assert_eq(add_port(sw, &c), 77);
}

Test(ports, config_problems)
{
	struct vswitch_port_config c = port_untagged(), bad;
	uint32_t id;

	make(0, 0, 0);
	cr_assert_null(vswitch_port_config_problem(&c));
	cr_assert_not_null(vswitch_port_config_problem(NULL));

	bad = port_access(0);
	cr_assert_not_null(vswitch_port_config_problem(&bad));
	bad = port_access(4095);
	cr_assert_not_null(vswitch_port_config_problem(&bad));
	bad = port_access(4094);
	cr_assert_null(vswitch_port_config_problem(&bad));
	bad = port_access(1);
	cr_assert_null(vswitch_port_config_problem(&bad));

	uint16_t v0[] = { 0 }, v4095[] = { 4095 }, ok[] = { 1, 4094 };

	bad = port_trunk(0, v0, 1);
	cr_assert_not_null(vswitch_port_config_problem(&bad));
	bad = port_trunk(0, v4095, 1);
	cr_assert_not_null(vswitch_port_config_problem(&bad));
	bad = port_trunk(4095, ok, 2);
	cr_assert_not_null(vswitch_port_config_problem(&bad));
	bad = port_trunk(4094, ok, 2);
	cr_assert_null(vswitch_port_config_problem(&bad));
	/* An untagged port's unused fields do not matter. */
	bad = port_untagged();
	bad.access_vlan = 9999;
	cr_assert_null(vswitch_port_config_problem(&bad));

	bad = c;
	bad.mac[0] = 0x01;
	cr_assert_not_null(vswitch_port_config_problem(&bad));
	bad.mac[0] = 0x02;
	cr_assert_null(vswitch_port_config_problem(&bad));
	bad = c;
	bad.vlan_mode = (enum vswitch_vlan_mode)3;
	cr_assert_not_null(vswitch_port_config_problem(&bad));
	bad = c;
	bad.mirror = (enum vswitch_mirror)3;
	cr_assert_not_null(vswitch_port_config_problem(&bad));

	cr_assert_eq(vswitch_port_add(sw, &bad, &id), -EINVAL);
	cr_assert_eq(add_port(sw, &c), 0);
	cr_assert_eq(vswitch_port_set(sw, 0, &bad), -EINVAL);
	/* Refused: the port is unchanged. */
	cr_assert_str_eq(send_to(0, 1, bcast, NO_TAG), "");
	cr_assert(!v.dropped);
}

Test(ports, create_options)
{
	struct vswitch_opts o = { .mac_table_max = (1u << 24) + 1 };

	cr_assert_null(vswitch_create(&o));
	cr_assert_eq(errno, EINVAL);
	sw = vswitch_create(NULL);
	cr_assert_not_null(sw);
	vswitch_destroy(NULL);
}

/* 8192 entries by default: fill them from 8 ports of 1024. */
Test(ports, default_bounds)
{
	struct vswitch_port_config c = port_untagged();

	make(0, 0, 0);
	for (int i = 0; i < 9; i++)
		add_port(sw, &c);
	for (unsigned int p = 0; p < 9; p++)
		for (unsigned int m = 0; m < 1100; m++)
			send(p, 1 + p * 1100 + m, 0xffff, NO_TAG, 0);
	cr_assert_eq(stats().macs, 8192);
	/* Port 7 filled the table: its last 76 found the table full. */
	cr_assert_eq(stats().learn_port_full, 7 * 76);
	cr_assert_eq(stats().learn_table_full, 76 + 1100);
}
