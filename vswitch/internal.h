/* SPDX-License-Identifier: MIT */
/*
 * vswitch engine internals: one struct vswitch holds the ports, the
 * per-VLAN membership bitmaps that forwarding reads, and the MAC table.
 * Everything a frame needs is precomputed when ports change, so
 * vswitch_forward() never allocates and never walks all VLANs or ports.
 */
#ifndef FSVISOR_VSWITCH_INTERNAL_H
#define FSVISOR_VSWITCH_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vswitch/vswitch.h"

#define VSW_WORDS (VSWITCH_MAX_PORTS / 64)	/* words of a port bitmap */
#define VSW_VLANS 4096				/* indexes 0..4094 are used */

#define ETHTYPE_8021Q 0x8100
#define ETHTYPE_IPV4 0x0800
#define ETHTYPE_IPV6 0x86DD

static inline uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline bool bit_test(const uint64_t *map, unsigned int n)
{
	return (map[n / 64] >> (n % 64)) & 1;
}

static inline void bit_set(uint64_t *map, unsigned int n)
{
	map[n / 64] |= 1ULL << (n % 64);
}

static inline void bit_clear(uint64_t *map, unsigned int n)
{
	map[n / 64] &= ~(1ULL << (n % 64));
}

/* ---- rate limiting (ratelimit.c) ---- */

struct vsw_bucket {
	uint64_t rate;		/* bits per second; 0 = unlimited */
	uint64_t depth;		/* bits the bucket holds when full */
	uint64_t tokens;	/* bits available */
	uint64_t frac;		/* and a fraction of a bit, in 1e-9 bits */
	uint64_t last_ns;
	bool primed;		/* false: fill on first use */
};

void ratelimit_set(struct vsw_bucket *b, uint64_t rate);
uint64_t ratelimit_take(struct vsw_bucket *b, size_t len, uint64_t now_ns);

/* ---- the MAC table (mactable.c) ---- */

#define MAC_NONE UINT32_MAX

struct mac_entry {
	uint64_t key;		/* mac_key(): VLAN and MAC */
	uint64_t seen_ns;
	uint32_t next;		/* hash chain, or the free list */
	uint16_t port;
	bool used;
};

struct mactable {
	struct mac_entry *e;	/* cap entries */
	uint32_t *bucket;	/* heads of hash chains */
	unsigned int shift;	/* 64 - log2(number of buckets) */
	uint32_t cap, count, free_head;
	uint32_t port_max;
	uint64_t k0, k1, k2;	/* secret hash keys */
	uint32_t port_count[VSWITCH_MAX_PORTS];
	uint64_t table_full, port_full, moves, aged;
};

/* The VLAN in the top 16 bits, the MAC below; byte order is private. */
static inline uint64_t mac_key(uint16_t vlan, const uint8_t *mac)
{
	uint32_t a;
	uint16_t b;

	memcpy(&a, mac, 4);
	memcpy(&b, mac + 4, 2);
	return (uint64_t)a | (uint64_t)b << 32 | (uint64_t)vlan << 48;
}

static inline void mac_unkey(uint64_t key, uint16_t *vlan, uint8_t *mac)
{
	uint32_t a = (uint32_t)key;
	uint16_t b = (uint16_t)(key >> 32);

	memcpy(mac, &a, 4);
	memcpy(mac + 4, &b, 2);
	*vlan = (uint16_t)(key >> 48);
}

int mactable_init(struct mactable *t, uint32_t cap, uint32_t port_max);
void mactable_free(struct mactable *t);
void mactable_learn(struct mactable *t, uint64_t key, uint32_t port,
		    uint64_t now_ns);
/* The port that owns @key, or MAC_NONE (unknown or older than @aging_ns). */
uint32_t mactable_lookup(const struct mactable *t, uint64_t key,
			 uint64_t now_ns, uint64_t aging_ns);
void mactable_forget_port(struct mactable *t, uint32_t port);
void mactable_age(struct mactable *t, uint64_t now_ns, uint64_t aging_ns);

static inline bool mac_expired(uint64_t seen_ns, uint64_t now_ns,
			       uint64_t aging_ns)
{
	/* A clock that went backwards never expires anything. */
	return now_ns > seen_ns && now_ns - seen_ns >= aging_ns;
}

/* ---- ports and VLANs (port.c, vlan.c) ---- */

struct vsw_port {
	bool used;
	bool spoof_check;	/* !mac_spoofing and a non-zero mac */
	bool guards;		/* dhcp_guard or router_guard */
	struct vswitch_port_config cfg;
	struct vswitch_port_stats st;
	struct vsw_bucket tb;
};

/* Which ports carry a VLAN, and which of them want it tagged. */
struct vsw_vlan {
	uint64_t member[VSW_WORDS];
	uint64_t tagged[VSW_WORDS];
};

struct vswitch {
	uint64_t aging_ns;
	uint64_t mirror_src[VSW_WORDS];
	uint64_t mirror_dst[VSW_WORDS];
	struct mactable macs;
	struct vsw_port ports[VSWITCH_MAX_PORTS];
	struct vsw_vlan vlans[VSW_VLANS];
};

/*
 * The VLAN of a frame received on @p, or -1 with *why set.  *payload_off
 * is the offset of the ethertype after any tag.
 */
int vlan_classify(const struct vsw_port *p, const uint8_t *f, size_t len,
		  size_t *payload_off, enum vswitch_drop *why);
/* Add (@on) or remove port @id in the membership of the VLANs @cfg names. */
void vlan_membership(struct vswitch *sw, uint32_t id,
		     const struct vswitch_port_config *cfg, bool on);
bool vlan_config_equal(const struct vswitch_port_config *a,
		       const struct vswitch_port_config *b);

/* ---- guards (guards.c) ---- */

/*
 * Whether a frame from @p must be dropped by its DHCP or router guard;
 * f[off..off+2) is the ethertype inside any VLAN tag.
 */
bool guard_drop(const struct vsw_port *p, const uint8_t *f, size_t len,
		size_t off, enum vswitch_drop *why);

#endif /* FSVISOR_VSWITCH_INTERNAL_H */
