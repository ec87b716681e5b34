// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the switch engine's frame path: the first byte
 * picks the ingress port, the second a start for the frame (nothing, or
 * an Ethernet header with or without a tag and the first byte of an IPv4
 * or IPv6 header, so the guards' parsers are reached at once), the rest
 * is the remainder of the frame.  The ports cover every
 * VLAN mode, both guards, MAC spoofing and mirroring.  Every verdict must
 * be well formed: no destination twice, never the ingress port, a
 * payload offset inside the frame; ASan checks that no byte past the
 * frame is read.
 */
#include <stdlib.h>
#include <string.h>

#include "vswitch/vswitch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NPORTS 6

static struct vswitch *sw;
static struct vswitch_verdict v;
static uint64_t clock_ns;

static void setup(void)
{
	struct vswitch_port_config c[NPORTS] = {
		{ .vlan_mode = VSWITCH_VLAN_UNTAGGED, .mac_spoofing = true },
		{ .vlan_mode = VSWITCH_VLAN_UNTAGGED, .dhcp_guard = true,
		  .router_guard = true, .mac = { 2, 0, 0, 0, 0, 1 } },
		{ .vlan_mode = VSWITCH_VLAN_ACCESS, .access_vlan = 5,
		  .dhcp_guard = true, .router_guard = true, .mac_spoofing = true,
		  .mirror = VSWITCH_MIRROR_SOURCE },
		{ .vlan_mode = VSWITCH_VLAN_TRUNK, .native_vlan = 0,
		  .router_guard = true, .mac_spoofing = true },
		{ .vlan_mode = VSWITCH_VLAN_TRUNK, .native_vlan = 5,
		  .dhcp_guard = true, .mac_spoofing = true },
		{ .vlan_mode = VSWITCH_VLAN_ACCESS, .access_vlan = 7,
		  .mac_spoofing = true, .mirror = VSWITCH_MIRROR_DESTINATION },
	};
	uint32_t id;

	c[3].trunk_allowed[0] = 0xfe;		/* VLANs 1..7 */
	c[3].trunk_allowed[63] = 1ULL << 62;	/* 4094 */
	c[4].trunk_allowed[0] = 0xa0;		/* 5, 7 */
	sw = vswitch_create(&(struct vswitch_opts){ .mac_table_max = 64,
						    .mac_port_max = 16,
						    .aging_ns = 1000000 });
	if (!sw)
		abort();
	for (int i = 0; i < NPORTS; i++)
		if (vswitch_port_add(sw, &c[i], &id) || id != (uint32_t)i)
			abort();
}

/* Ethernet from 02:00:00:00:00:01 (port 1's MAC) to broadcast. */
static size_t start(uint8_t kind, uint8_t *f)
{
	static const uint8_t eth[12] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
					 2, 0, 0, 0, 0, 1 };
	size_t n = 12;

	if (kind % 5 == 0)
		return 0;
	memcpy(f, eth, 12);
	if (kind % 5 >= 3) {
		memcpy(f + n, "\x81\x00\x00", 3);
		f[n + 3] = (uint8_t)(kind >> 4);	/* VID 0..15 */
		n += 4;
	}
	if (kind % 5 == 1 || kind % 5 == 3) {
		memcpy(f + n, "\x08\x00\x45", 3);
		return n + 3;
	}
	memcpy(f + n, "\x86\xdd\x60", 3);
	return n + 3;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool seen[NPORTS] = { false };
	uint32_t in;
	uint8_t *frame;
	size_t len, n;

	if (!sw)
		setup();
	if (size < 2)
		return 0;
	in = data[0] % NPORTS;
	/* An exact-size copy: a read past the frame's end is caught. */
	frame = malloc(19 + size);
	if (!frame)
		abort();
	n = start(data[1], frame);
	memcpy(frame + n, data + 2, size - 2);
	len = n + size - 2;
	frame = realloc(frame, len ? len : 1);
	if (!frame)
		abort();
	clock_ns += 1000 * data[0];
	vswitch_forward(sw, in, frame, len, clock_ns, &v);
	free(frame);
	if (v.dropped && v.ndest)
		abort();
	if (!v.dropped && (v.payload_off > len ||
			   v.vlan > VSWITCH_VLAN_MAX || v.ndest >= NPORTS))
		abort();
	for (unsigned int i = 0; i < v.ndest; i++) {
		uint32_t d = v.dest[i].port;

		if (d >= NPORTS || d == in || seen[d])
			abort();
		seen[d] = true;
	}
	if (data[0] == 0xff)
		vswitch_age(sw, clock_ns);
	return 0;
}
