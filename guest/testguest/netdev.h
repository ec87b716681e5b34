/* SPDX-License-Identifier: MIT */
/* The test guest's virtio-net driver (netdev.c). */
#ifndef TESTGUEST_NETDEV_H
#define TESTGUEST_NETDEV_H

#include "guest.h"

/* Largest frame we send or take in one piece (jumbo, 9000 bytes of IP). */
#define NETDEV_FRAME_MAX 9216

/* The MAC we use: the device's, or netmac= from the command line. */
extern uint8_t netdev_mac[6];

/* Find and start the first NIC; -1 with a reason in @why. */
int netdev_init(char *why, size_t whylen);
/* LINK_UP in the device configuration (one MMIO read). */
bool netdev_link_up(void);
/* Configuration-change interrupts so far, and queue interrupts. */
unsigned int netdev_config_changes(void);
unsigned int netdev_interrupts(void);
bool netdev_broken(void);
/*
 * A transmit buffer for one frame (NULL while the ring is full); fill it
 * and send it with netdev_tx_commit(length).
 */
uint8_t *netdev_tx_begin(void);
void netdev_tx_commit(uint32_t len);
/* Every frame sent has been completed by the device. */
bool netdev_tx_idle(void);
/* A received frame waits. */
bool netdev_pending(void);
/*
 * The next frame into @buf: its length, 0 if none, -2 if it was larger
 * than @cap (dropped), -1 if the device wrote something impossible.
 */
int netdev_recv(uint8_t *buf, uint32_t cap);

#endif
