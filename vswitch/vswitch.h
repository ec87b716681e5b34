/* SPDX-License-Identifier: MIT */
/*
 * vswitch: the layer-2 switch of a Hyper-V-style virtual switch.
 *
 * Two layers share this header:
 *  - the engine (vswitch_create .. vswitch_macs): pure decisions on frames,
 *    no I/O, no clock of its own, not thread-safe (one caller: the worker's
 *    loop).  It learns MACs per (VLAN, MAC), floods within a VLAN, applies
 *    each port's VLAN mode and guards, and keeps per-port counters.
 *  - the worker (vswitch_worker_run): one process per switch that moves
 *    frames between port sockets, the host's TAP device and an uplink NIC,
 *    driven over a control socket (docs/vswitch.md).
 *
 * VLAN numbering: 0 is the untagged network (frames without a tag on
 * untagged ports, or on a trunk whose native VLAN is 0); 1..4094 are
 * 802.1Q VLANs.
 */
#ifndef FSVISOR_VSWITCH_H
#define FSVISOR_VSWITCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VSWITCH_MAX_PORTS 256
#define VSWITCH_VLAN_MAX 4094
#define VSWITCH_ETH_MIN 14		/* shorter frames are malformed */
#define VSWITCH_FRAME_MAX 65535		/* one frame per message, at most */

enum vswitch_vlan_mode {
	VSWITCH_VLAN_UNTAGGED,	/* the untagged network only; tagged frames dropped */
	VSWITCH_VLAN_ACCESS,	/* untagged frames belong to access_vlan */
	VSWITCH_VLAN_TRUNK,	/* tagged frames of allowed VLANs; untagged = native */
};

enum vswitch_mirror {
	VSWITCH_MIRROR_NONE,
	VSWITCH_MIRROR_SOURCE,		/* its traffic (in and out) is copied ... */
	VSWITCH_MIRROR_DESTINATION,	/* ... to every destination port */
};

/* Why a frame was dropped; counted per port. */
enum vswitch_drop {
	VSWITCH_DROP_MALFORMED,		/* runt, multicast source, bad tag */
	VSWITCH_DROP_VLAN,		/* not allowed by the port's VLAN mode */
	VSWITCH_DROP_MAC_SPOOFING,	/* source MAC is not the port's */
	VSWITCH_DROP_DHCP_GUARD,	/* DHCP/DHCPv6 server message from a guarded port */
	VSWITCH_DROP_ROUTER_GUARD,	/* router advertisement or redirect */
	VSWITCH_DROP_NO_ROOM,		/* the egress socket was full (counted by the worker) */
	VSWITCH_DROP_NR
};

/* Names for files and JSON: "malformed", "vlan", "mac_spoofing", ... */
const char *vswitch_drop_name(enum vswitch_drop why);

struct vswitch_port_config {
	/* The NIC's MAC; all zeros for the host and uplink ports (no spoofing guard). */
	uint8_t mac[6];
	enum vswitch_vlan_mode vlan_mode;
	uint16_t access_vlan;			/* ACCESS: 1..4094 */
	uint16_t native_vlan;			/* TRUNK: 0..4094, VLAN of untagged frames */
	uint64_t trunk_allowed[4096 / 64];	/* TRUNK: bit N = VLAN N allowed */
	/* Hyper-V's MacAddressSpoofing: true lets the port send other source MACs. */
	bool mac_spoofing;
	bool dhcp_guard;
	bool router_guard;
	enum vswitch_mirror mirror;
	uint64_t bandwidth_max;			/* bits per second; 0 = unlimited */
};

struct vswitch_port_stats {
	/* "in": received from the port into the switch; "out": sent to it. */
	uint64_t in_packets, in_bytes;
	uint64_t out_packets, out_bytes;
	uint64_t drops[VSWITCH_DROP_NR];	/* counted on the port that sent the frame,
						 * except NO_ROOM: on the port that could not take it */
};

struct vswitch_opts {
	unsigned int mac_table_max;	/* whole table; 0 = default (8192) */
	unsigned int mac_port_max;	/* entries one port may own; 0 = default (1024) */
	uint64_t aging_ns;		/* 0 = default (300 s) */
};

struct vswitch;

struct vswitch *vswitch_create(const struct vswitch_opts *opts);
void vswitch_destroy(struct vswitch *sw);

/*
 * Add a port; its id (0..VSWITCH_MAX_PORTS-1, reused after removal) in *id.
 * -EINVAL for a bad configuration, -ENOSPC when every id is taken.
 */
int vswitch_port_add(struct vswitch *sw, const struct vswitch_port_config *cfg,
		     uint32_t *id);
/* Change a port's policy live; MACs it learned are forgotten if its VLANs change. */
int vswitch_port_set(struct vswitch *sw, uint32_t id,
		     const struct vswitch_port_config *cfg);
/* Remove a port and forget the MACs learned on it. */
void vswitch_port_remove(struct vswitch *sw, uint32_t id);
int vswitch_port_stats(const struct vswitch *sw, uint32_t id,
		       struct vswitch_port_stats *st);

/* Check a configuration; a sentence saying what is wrong, or NULL. */
const char *vswitch_port_config_problem(const struct vswitch_port_config *cfg);

struct vswitch_dest {
	uint32_t port;
	bool tagged;		/* send with an 802.1Q tag carrying the frame's VLAN */
};

struct vswitch_verdict {
	uint16_t vlan;		/* the frame's VLAN (0 = untagged network) */
	/*
	 * The frame without any tag it arrived with is
	 * frame[0..12) followed by frame[payload_off..len).
	 */
	size_t payload_off;
	unsigned int ndest;	/* 0: dropped (see drop) or nowhere to go */
	bool dropped;
	enum vswitch_drop drop;
	struct vswitch_dest dest[VSWITCH_MAX_PORTS];
};

/*
 * Decide where a frame received on port @in goes: VLAN classification,
 * guards, learning of its source, then the known port or a flood within
 * the VLAN, plus mirror copies.  Counts the frame in @in's "in" counters
 * (or its drop).  The caller sends to each destination and reports with
 * vswitch_port_sent() or vswitch_port_dropped().
 */
void vswitch_forward(struct vswitch *sw, uint32_t in, const uint8_t *frame,
		     size_t len, uint64_t now_ns, struct vswitch_verdict *v);

void vswitch_port_sent(struct vswitch *sw, uint32_t id, size_t len);
void vswitch_port_dropped(struct vswitch *sw, uint32_t id, enum vswitch_drop why);

/*
 * Maximum bandwidth as a token bucket on what a port sends into the
 * switch: 0 when a frame of @len bytes may go now (the tokens are taken),
 * else the nanoseconds to wait.  The worker then holds the frame and stops
 * reading the port, so the sender is pushed back instead of losing frames.
 */
uint64_t vswitch_port_throttle(struct vswitch *sw, uint32_t id, size_t len,
			       uint64_t now_ns);

/* Forget entries not seen for the aging time. */
void vswitch_age(struct vswitch *sw, uint64_t now_ns);

struct vswitch_mac_entry {
	uint16_t vlan;
	uint8_t mac[6];
	uint32_t port;
	uint64_t age_ns;	/* since the MAC was last seen */
};

/* Call @fn for every learned MAC (stops early if it returns non-zero). */
int vswitch_macs(const struct vswitch *sw, uint64_t now_ns,
		 int (*fn)(const struct vswitch_mac_entry *e, void *arg), void *arg);

/* Switch-wide counters of the MAC table. */
struct vswitch_stats {
	uint64_t macs;			/* entries in the table now */
	uint64_t learn_table_full;	/* frames whose source was not learned:
					 * the table held mac_table_max entries */
	uint64_t learn_port_full;	/* ... the port owned mac_port_max entries */
	uint64_t mac_moves;		/* learned MACs seen again on another port */
	uint64_t macs_aged;		/* entries forgotten by vswitch_age() */
};

void vswitch_stats(const struct vswitch *sw, struct vswitch_stats *st);

/* ---- the worker: `fsvisor switch run` ---- */

enum vswitch_type {
	VSWITCH_PRIVATE,	/* VMs only */
	VSWITCH_INTERNAL,	/* VMs and the host (a TAP device) */
	VSWITCH_EXTERNAL,	/* VMs, the host and an uplink NIC */
};

struct vswitch_worker_opts {
	const char *name;		/* the switch's name */
	const char *control_path;	/* SOCK_SEQPACKET control socket */
	enum vswitch_type type;
	/* The host's TAP device (internal, external), chosen by the service: "fsv-" + name. */
	const char *host_if;
	const char *uplink;		/* host NIC for an external switch */
};

/* "private", "internal", "external"; -EINVAL for anything else. */
int vswitch_type_parse(const char *s, enum vswitch_type *out);
const char *vswitch_type_name(enum vswitch_type type);

/* Exit statuses of the worker (and of `fsvisor switch run`). */
#define VSWITCH_EXIT_STOPPED 0	/* "stop", SIGTERM, SIGINT or SIGHUP */
#define VSWITCH_EXIT_SETUP 1	/* could not start: socket in use, TAP, uplink */
#define VSWITCH_EXIT_USAGE 2	/* bad command line (cmd/) */
#define VSWITCH_EXIT_FAILED 3	/* the event loop failed while running */

/* Run the switch until "stop" or SIGTERM; returns the exit status. */
int vswitch_worker_run(const struct vswitch_worker_opts *opts);

#endif /* FSVISOR_VSWITCH_H */
