// SPDX-License-Identifier: MIT
/*
 * The cost of one vswitch_forward() call, without any I/O: the engine's
 * share of what the switch worker spends per frame.  Cases:
 *   unicast     a learned 64-byte unicast frame between two of 8 ports
 *   guarded     the same as an IPv4/UDP frame, with MAC spoofing, DHCP and
 *               router guards on the sending port
 *   tagged      a tagged frame from a trunk to an access port
 *   flood       a broadcast to the 6 other ports of VLAN 0
 *   table       unicast among 2 x 4096 learned MACs (misses in the table)
 * Usage: vswitch_engine_bench [frames]   (default 20 million per case)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vswitch/vswitch.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void mac(uint8_t *m, unsigned int n)
{
	m[0] = 0x02;
	m[1] = 0;
	m[2] = (uint8_t)(n >> 24);
	m[3] = (uint8_t)(n >> 16);
	m[4] = (uint8_t)(n >> 8);
	m[5] = (uint8_t)n;
}

/* A 64-byte frame: 14 (or 18) bytes of Ethernet, then IPv4/UDP. */
static void frame(uint8_t *f, unsigned int dst, unsigned int src, int vid)
{
	size_t o = 12;

	memset(f, 0, 64);
	mac(f, dst);
	mac(f + 6, src);
	if (vid >= 0) {
		f[12] = 0x81;
		f[14] = (uint8_t)(vid >> 8);
		f[15] = (uint8_t)vid;
		o = 16;
	}
	f[o] = 0x08;
	f[o + 2] = 0x45;
	f[o + 2 + 9] = 17;
	f[o + 2 + 20] = 0x30;	/* UDP 12345 -> 12346 */
	f[o + 2 + 21] = 0x39;
	f[o + 2 + 22] = 0x30;
	f[o + 2 + 23] = 0x3a;
}

static struct vswitch_verdict v;
static uint64_t T;	/* the engine's clock: one instant for the whole run */

static void run(const char *name, struct vswitch *sw, uint32_t in,
		uint8_t (*frames)[64], unsigned int nframes, unsigned long n)
{
	uint64_t t0, t1, sink = 0;

	for (unsigned int i = 0; i < nframes; i++)	/* learn, warm up */
		vswitch_forward(sw, in, frames[i], 64, T, &v);
	t0 = now_ns();
	for (unsigned long i = 0; i < n; i++) {
		vswitch_forward(sw, in, frames[i % nframes], 64, T, &v);
		sink += v.ndest;
	}
	t1 = now_ns();
	printf("%-8s %6.1f ns/frame  %6.2f Mframes/s  (%lu destinations)\n",
	       name, (double)(t1 - t0) / n, n * 1e3 / (double)(t1 - t0),
	       (unsigned long)(sink / n));
}

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 20000000UL;
	struct vswitch_port_config c = { .vlan_mode = VSWITCH_VLAN_UNTAGGED,
					 .mac_spoofing = true };
	struct vswitch *sw = vswitch_create(NULL);
	static uint8_t frames[4096][64];
	uint32_t id;

	if (!sw || !n)
		return 1;
	T = now_ns();
	for (int i = 0; i < 8; i++)
		vswitch_port_add(sw, &c, &id);

	frame(frames[0], 0x100, 2, -1);
	vswitch_forward(sw, 1, frames[0], 64, T, &v);	/* MAC 2 on port 1 */
	frame(frames[0], 2, 0x100, -1);
	vswitch_forward(sw, 0, frames[0], 64, T, &v);	/* MAC 0x100 on port 0 */
	run("unicast", sw, 0, frames, 1, n);

	c.mac_spoofing = false;
	c.dhcp_guard = c.router_guard = true;
	mac(c.mac, 0x100);
	vswitch_port_set(sw, 0, &c);
	run("guarded", sw, 0, frames, 1, n);

	c = (struct vswitch_port_config){ .vlan_mode = VSWITCH_VLAN_ACCESS,
					  .access_vlan = 10, .mac_spoofing = true };
	vswitch_port_set(sw, 2, &c);
	c = (struct vswitch_port_config){ .vlan_mode = VSWITCH_VLAN_TRUNK,
					  .mac_spoofing = true };
	c.trunk_allowed[0] = 1ULL << 10;
	vswitch_port_set(sw, 3, &c);
	frame(frames[0], 3, 3, -1);
	vswitch_forward(sw, 2, frames[0], 64, T, &v);	/* MAC 3, VLAN 10 */
	frame(frames[0], 3, 0x200, 10);
	run("tagged", sw, 3, frames, 1, n);

	frame(frames[0], 0, 0x300, -1);
	memset(frames[0], 0xff, 6);
	run("flood", sw, 6, frames, 1, n / 4);
	vswitch_destroy(sw);

	/* Room for 4096 MACs on each of two ports. */
	sw = vswitch_create(&(struct vswitch_opts){ .mac_table_max = 16384,
						    .mac_port_max = 8192 });
	if (!sw)
		return 1;
	c = (struct vswitch_port_config){ .vlan_mode = VSWITCH_VLAN_UNTAGGED,
					  .mac_spoofing = true };
	for (int i = 0; i < 8; i++)
		vswitch_port_add(sw, &c, &id);
	for (unsigned int i = 0; i < 4096; i++) {
		frame(frames[i], 0x10000 + i, 0x20000 + i, -1);
		vswitch_forward(sw, 4, frames[i], 64, T, &v);
		frame(frames[i], 0x20000 + i, 0x10000 + i, -1);
	}
	run("table", sw, 5, frames, 4096, n);
	vswitch_destroy(sw);
	return 0;
}
