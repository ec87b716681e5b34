// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the switch engine's frame path: the first byte
 * picks the ingress port, the rest is the frame.  The ports cover every
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool seen[NPORTS] = { false };
	uint32_t in;
	uint8_t *frame;

	if (!sw)
		setup();
	if (size < 1)
		return 0;
	in = data[0] % NPORTS;
	/* An exact-size copy: a read past the frame's end is caught. */
	frame = malloc(size - 1 ? size - 1 : 1);
	if (!frame)
		abort();
	memcpy(frame, data + 1, size - 1);
	clock_ns += 1000 * data[0];
	vswitch_forward(sw, in, frame, size - 1, clock_ns, &v);
	free(frame);
	if (v.dropped && v.ndest)
		abort();
	if (!v.dropped && (v.payload_off > size - 1 ||
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
