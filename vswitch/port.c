// SPDX-License-Identifier: MIT
/*
 * Ports: checking a configuration, adding, changing and removing ports,
 * and their counters.  Whatever forwarding needs from a port's policy is
 * computed here (VLAN membership bitmaps, mirror bitmaps, guard flags),
 * so the frame path only tests bits.
 */
#include <errno.h>

#include "vswitch/internal.h"

static bool mac_zero(const uint8_t *mac)
{
	static const uint8_t zero[6];

	return !memcmp(mac, zero, 6);
}

const char *vswitch_port_config_problem(const struct vswitch_port_config *cfg)
{
	if (!cfg)
		return "no port configuration";
	if (cfg->mac[0] & 1)
		return "the port's MAC address is a multicast address";
	switch (cfg->vlan_mode) {
	case VSWITCH_VLAN_UNTAGGED:
		break;
	case VSWITCH_VLAN_ACCESS:
		if (cfg->access_vlan < 1 || cfg->access_vlan > VSWITCH_VLAN_MAX)
			return "an access port's VLAN must be 1..4094";
		break;
	case VSWITCH_VLAN_TRUNK:
		if (cfg->native_vlan > VSWITCH_VLAN_MAX)
			return "a trunk's native VLAN must be 0..4094";
		if (bit_test(cfg->trunk_allowed, 0) ||
		    bit_test(cfg->trunk_allowed, 4095))
			return "a trunk's allowed VLANs must be within 1..4094";
		break;
	default:
		return "the VLAN mode is not untagged, access or trunk";
	}
	switch (cfg->mirror) {
	case VSWITCH_MIRROR_NONE:
	case VSWITCH_MIRROR_SOURCE:
	case VSWITCH_MIRROR_DESTINATION:
		break;
	default:
		return "the mirroring mode is not none, source or destination";
	}
	return NULL;
}

static struct vsw_port *port_get(const struct vswitch *sw, uint32_t id)
{
	if (id >= VSWITCH_MAX_PORTS || !sw->ports[id].used)
		return NULL;
	return (struct vsw_port *)&sw->ports[id];
}

/* Everything but VLAN membership and the MAC table. */
static void port_apply(struct vswitch *sw, uint32_t id,
		       const struct vswitch_port_config *cfg)
{
	struct vsw_port *p = &sw->ports[id];

	p->cfg = *cfg;
	p->spoof_check = !cfg->mac_spoofing && !mac_zero(cfg->mac);
	p->guards = cfg->dhcp_guard || cfg->router_guard;
	bit_clear(sw->mirror_src, id);
	bit_clear(sw->mirror_dst, id);
	if (cfg->mirror == VSWITCH_MIRROR_SOURCE)
		bit_set(sw->mirror_src, id);
	else if (cfg->mirror == VSWITCH_MIRROR_DESTINATION)
		bit_set(sw->mirror_dst, id);
	ratelimit_set(&p->tb, cfg->bandwidth_max);
}

int vswitch_port_add(struct vswitch *sw, const struct vswitch_port_config *cfg,
		     uint32_t *id)
{
	uint32_t i;

	if (vswitch_port_config_problem(cfg))
		return -EINVAL;
	for (i = 0; i < VSWITCH_MAX_PORTS; i++)
		if (!sw->ports[i].used)
			break;
	if (i == VSWITCH_MAX_PORTS)
		return -ENOSPC;
	memset(&sw->ports[i], 0, sizeof(sw->ports[i]));
	sw->ports[i].used = true;
	port_apply(sw, i, cfg);
	vlan_membership(sw, i, cfg, true);
	*id = i;
	return 0;
}

int vswitch_port_set(struct vswitch *sw, uint32_t id,
		     const struct vswitch_port_config *cfg)
{
	struct vsw_port *p = port_get(sw, id);

	if (!p)
		return -ENOENT;
	if (vswitch_port_config_problem(cfg))
		return -EINVAL;
	if (!vlan_config_equal(&p->cfg, cfg)) {
		vlan_membership(sw, id, &p->cfg, false);
		vlan_membership(sw, id, cfg, true);
		mactable_forget_port(&sw->macs, id);
	}
	port_apply(sw, id, cfg);
	return 0;
}

void vswitch_port_remove(struct vswitch *sw, uint32_t id)
{
	struct vsw_port *p = port_get(sw, id);

	if (!p)
		return;
	vlan_membership(sw, id, &p->cfg, false);
	mactable_forget_port(&sw->macs, id);
	bit_clear(sw->mirror_src, id);
	bit_clear(sw->mirror_dst, id);
	memset(p, 0, sizeof(*p));
}

int vswitch_port_stats(const struct vswitch *sw, uint32_t id,
		       struct vswitch_port_stats *st)
{
	const struct vsw_port *p = port_get(sw, id);

	if (!p)
		return -ENOENT;
	*st = p->st;
	return 0;
}

void vswitch_port_sent(struct vswitch *sw, uint32_t id, size_t len)
{
	struct vsw_port *p = port_get(sw, id);

	if (!p)
		return;
	p->st.out_packets++;
	p->st.out_bytes += len;
}

void vswitch_port_dropped(struct vswitch *sw, uint32_t id, enum vswitch_drop why)
{
	struct vsw_port *p = port_get(sw, id);

	if (p && (unsigned int)why < VSWITCH_DROP_NR)
		p->st.drops[why]++;
}

uint64_t vswitch_port_throttle(struct vswitch *sw, uint32_t id, size_t len,
			       uint64_t now_ns)
{
	struct vsw_port *p = port_get(sw, id);

	return p ? ratelimit_take(&p->tb, len, now_ns) : 0;
}
