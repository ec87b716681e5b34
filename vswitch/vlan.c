// SPDX-License-Identifier: MIT
/*
 * VLAN rules (Hyper-V semantics, 802.1Q tags with TPID 0x8100 only):
 *  - untagged port: untagged frames are VLAN 0; tagged frames are dropped;
 *  - access port: untagged frames are its access VLAN; tagged dropped;
 *  - trunk: a tagged frame keeps its VID if the VID is allowed, else it is
 *    dropped; untagged frames are the native VLAN (0 = the untagged
 *    network).  The native VLAN is carried whether or not it is in the
 *    allowed list, and leaves the trunk untagged.
 * A tag with VID 0 (priority tag) counts as no tag.  A second 0x8100 tag
 * inside the first is refused: stacked tags would come out of an access
 * port or a native VLAN still tagged, which is how VLAN hopping works.
 */
#include "vswitch/internal.h"

int vlan_classify(const struct vsw_port *p, const uint8_t *f, size_t len,
		  size_t *payload_off, enum vswitch_drop *why)
{
	const struct vswitch_port_config *c = &p->cfg;
	uint16_t vid = 0;
	bool tagged = false;

	*payload_off = 12;
	if (rd16(f + 12) == ETHTYPE_8021Q) {
		if (len < 18 || rd16(f + 16) == ETHTYPE_8021Q)
			goto malformed;
		vid = rd16(f + 14) & 0x0fff;
		if (vid == 0x0fff)
			goto malformed;
		*payload_off = 16;
		tagged = vid != 0;
	}
	switch (c->vlan_mode) {
	case VSWITCH_VLAN_UNTAGGED:
		if (tagged)
			break;
		return 0;
	case VSWITCH_VLAN_ACCESS:
		if (tagged)
			break;
		return c->access_vlan;
	case VSWITCH_VLAN_TRUNK:
		if (!tagged)
			return c->native_vlan;
		if (bit_test(c->trunk_allowed, vid))
			return vid;
		break;
	}
	*why = VSWITCH_DROP_VLAN;
	return -1;
malformed:
	*why = VSWITCH_DROP_MALFORMED;
	return -1;
}

static void member(struct vswitch *sw, uint32_t id, uint16_t vlan,
		   bool tagged, bool on)
{
	struct vsw_vlan *v = &sw->vlans[vlan];

	if (on) {
		bit_set(v->member, id);
		if (tagged)
			bit_set(v->tagged, id);
		else
			bit_clear(v->tagged, id);
	} else {
		bit_clear(v->member, id);
		bit_clear(v->tagged, id);
	}
}

void vlan_membership(struct vswitch *sw, uint32_t id,
		     const struct vswitch_port_config *cfg, bool on)
{
	unsigned int w;
	uint64_t m;

	switch (cfg->vlan_mode) {
	case VSWITCH_VLAN_UNTAGGED:
		member(sw, id, 0, false, on);
		break;
	case VSWITCH_VLAN_ACCESS:
		member(sw, id, cfg->access_vlan, false, on);
		break;
	case VSWITCH_VLAN_TRUNK:
		for (w = 0; w < VSW_VLANS / 64; w++) {
			for (m = cfg->trunk_allowed[w]; m; m &= m - 1) {
				unsigned int vid = w * 64 + __builtin_ctzll(m);

				if (vid >= 1 && vid <= VSWITCH_VLAN_MAX &&
				    vid != cfg->native_vlan)
					member(sw, id, (uint16_t)vid, true, on);
			}
		}
		member(sw, id, cfg->native_vlan, false, on);
		break;
	}
}

bool vlan_config_equal(const struct vswitch_port_config *a,
		       const struct vswitch_port_config *b)
{
	if (a->vlan_mode != b->vlan_mode)
		return false;
	switch (a->vlan_mode) {
	case VSWITCH_VLAN_ACCESS:
		return a->access_vlan == b->access_vlan;
	case VSWITCH_VLAN_TRUNK:
		return a->native_vlan == b->native_vlan &&
		       !memcmp(a->trunk_allowed, b->trunk_allowed,
			       sizeof(a->trunk_allowed));
	default:
		return true;
	}
}
