/* SPDX-License-Identifier: MIT */
/*
 * Crafted Ethernet frames and verdict helpers for the vswitch engine
 * tests.  Frames are built byte by byte from the protocol layouts
 * (802.1Q, IPv4, IPv6 and its extension headers, UDP, ICMP), and sent
 * through vswitch_forward() from an exact-size heap copy, so a read past
 * the frame's end is caught by ASan.
 */
#ifndef FSVISOR_TESTS_VSWITCH_FRAMES_H
#define FSVISOR_TESTS_VSWITCH_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#include "vswitch/vswitch.h"

#define NO_TAG (-1)

struct frame {
	uint8_t b[2048];
	size_t len;
};

/* 02:00:00:00:hi:lo, a unicast locally administered address. */
void mac_of(uint8_t *mac, unsigned int n);

/* Ethernet header, optional 802.1Q tag (vid NO_TAG: none), ethertype. */
void frame_eth(struct frame *f, const uint8_t *dst, const uint8_t *src,
	       int vid, uint16_t ethertype);
void frame_put(struct frame *f, const void *data, size_t len);
/* A plain unicast/broadcast frame with some payload. */
void frame_simple(struct frame *f, const uint8_t *dst, const uint8_t *src,
		  int vid);

/* IPv4 header (ihl in 32-bit words, frag_off in 8-byte units). */
void ip4_header(struct frame *f, uint8_t proto, unsigned int ihl,
		uint16_t frag_off, bool more_frags);
void udp_header(struct frame *f, uint16_t sport, uint16_t dport);
/* IPv6 header with the first next-header value. */
void ip6_header(struct frame *f, uint8_t next);
/* Hop-by-hop, routing or destination options: 8 * (1 + hlen) bytes. */
void ip6_ext(struct frame *f, uint8_t next, uint8_t hlen);
void ip6_ah(struct frame *f, uint8_t next, uint8_t plen);
void ip6_frag(struct frame *f, uint8_t next, uint16_t offset8, bool more);

/* Forward from an exact-size heap copy of @f. */
void fwd(struct vswitch *sw, uint32_t in, const struct frame *f, uint64_t now,
	 struct vswitch_verdict *v);
/* Destinations as "1 2t 5" sorted by port; "drop:NAME" when dropped. */
const char *dests(const struct vswitch_verdict *v);

/* A port configuration: untagged, no MAC, nothing on. */
struct vswitch_port_config port_untagged(void);
struct vswitch_port_config port_access(uint16_t vlan);
struct vswitch_port_config port_trunk(uint16_t native, const uint16_t *allowed,
				      unsigned int n);
uint32_t add_port(struct vswitch *sw, const struct vswitch_port_config *c);

#endif
