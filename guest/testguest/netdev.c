// SPDX-License-Identifier: MIT
/*
 * The test guest's virtio-net driver: the first NIC (1af4:1041), one
 * queue pair with MSI-X (both queues on VEC_NET, configuration changes
 * on VEC_NET_CONFIG), VERSION_1 | MAC | STATUS | MRG_RXBUF | EVENT_IDX
 * ("netnomrg" on the command line leaves MRG_RXBUF out).  Every receive
 * buffer is 2 KiB, one descriptor, always back in the ring once read; a
 * frame merged over several comes out in one piece.  Notifications and
 * interrupts follow EVENT_IDX both ways.
 */
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>

#include "guest.h"
#include "netdev.h"
#include "virtio.h"

#define RXQ_SIZE 64
#define TXQ_SIZE 64
#define RX_BUF 2048
#define HDR 12

#define RING(name, n)								\
	static struct vring_desc name##_desc[n] __attribute__((aligned(4096)));	\
	static struct {								\
		uint16_t flags, idx, ring[n], used_event;			\
	} name##_avail __attribute__((aligned(4096)));				\
	static struct {								\
		uint16_t flags, idx;						\
		struct vring_used_elem ring[n];					\
		uint16_t avail_event;						\
	} name##_used __attribute__((aligned(4096)))

RING(rx, RXQ_SIZE);
RING(tx, TXQ_SIZE);

static struct vdev nic;
static struct virtq_g rxq, txq;
static uint8_t rxbuf[RXQ_SIZE][RX_BUF] __attribute__((aligned(64)));
static uint8_t txbuf[TXQ_SIZE][HDR + NETDEV_FRAME_MAX] __attribute__((aligned(64)));
static uint16_t tx_free[TXQ_SIZE];
static unsigned int tx_nfree;
static int tx_open = -1;		/* the slot between begin and commit */
static bool mergeable, told_merged;
static volatile unsigned int queue_irqs, config_irqs;

uint8_t netdev_mac[6];

static void queue_irq(void)
{
	queue_irqs++;
}

static void config_irq(void)
{
	config_irqs++;
}

static uint16_t load16(const volatile uint16_t *p)
{
	return *p;
}

/* Publish avail entries [old, new) and notify if the device asked. */
static void publish(struct virtq_g *q, uint16_t *avail_idx, uint16_t old, uint16_t new,
		    const volatile uint16_t *avail_event, const volatile uint16_t *used_flags,
		    uint16_t qn)
{
	bool kick;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	*(volatile uint16_t *)avail_idx = new;
	/* The new index is visible before we read the device's wish. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (nic.features & (1ULL << VIRTIO_RING_F_EVENT_IDX))
		kick = vring_need_event(load16(avail_event), new, old);
	else
		kick = !(load16(used_flags) & VRING_USED_F_NO_NOTIFY);
	if (kick)
		virtio_notify(q, qn);
}

static int parse_mac(const char *s, uint8_t *mac)
{
	for (int i = 0; i < 6; i++) {
		unsigned int v = 0;

		for (int k = 0; k < 2; k++, s++) {
			char c = (char)(*s | 0x20);

			if (*s >= '0' && *s <= '9')
				v = v * 16 + (unsigned int)(*s - '0');
			else if (c >= 'a' && c <= 'f')
				v = v * 16 + (unsigned int)(c - 'a' + 10);
			else
				return -1;
		}
		mac[i] = (uint8_t)v;
		if (i < 5 && *s++ != ':')
			return -1;
	}
	return 0;
}

int netdev_init(char *why, size_t whylen)
{
	struct virtq_g *qs[2] = { &rxq, &txq };
	const uint16_t sizes[2] = { RXQ_SIZE, TXQ_SIZE };
	const unsigned int vectors[2] = { VEC_NET, VEC_NET };
	uint64_t want = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_NET_F_MAC) |
			(1ULL << VIRTIO_NET_F_STATUS) | (1ULL << VIRTIO_RING_F_EVENT_IDX);
	const char *override = cmdline_arg("netmac");
	int ret;

	(void)whylen;
	if (!cmdline_has("netnomrg"))
		want |= 1ULL << VIRTIO_NET_F_MRG_RXBUF;
	if (virtio_find(VIRTIO_ID_NET, 0, &nic)) {
		memcpy(why, "no virtio-net device", 21);
		return -1;
	}
	rxq.desc = rx_desc;
	rxq.avail = (struct vring_avail *)&rx_avail;
	rxq.used = (struct vring_used *)&rx_used;
	txq.desc = tx_desc;
	txq.avail = (struct vring_avail *)&tx_avail;
	txq.used = (struct vring_used *)&tx_used;
	irq_set_handler(VEC_NET, queue_irq);
	irq_set_handler(VEC_NET_CONFIG, config_irq);
	ret = virtio_init_queues(&nic, want, qs, sizes, vectors, 2, VEC_NET_CONFIG);
	if (ret) {
		printf("net: virtio_init failed at step %d\n", -ret);
		memcpy(why, "device initialization failed", 29);
		return -1;
	}
	if (!(nic.features & (1ULL << VIRTIO_NET_F_STATUS)) ||
	    !(nic.features & (1ULL << VIRTIO_NET_F_MAC))) {
		memcpy(why, "the device offers no MAC or STATUS", 35);
		return -1;
	}
	mergeable = nic.features & (1ULL << VIRTIO_NET_F_MRG_RXBUF);
	if (override && parse_mac(override, netdev_mac) == 0)
		printf("net: using MAC %s instead of the device's\n", override);
	else
		virtio_config_read(&nic, 0, netdev_mac, 6);

	/* Every receive buffer in the ring, descriptor i on buffer i. */
	for (uint16_t i = 0; i < RXQ_SIZE; i++) {
		rx_desc[i].addr = (uint64_t)rxbuf[i];
		rx_desc[i].len = RX_BUF;
		rx_desc[i].flags = VRING_DESC_F_WRITE;
		rx_avail.ring[i] = i;
	}
	rx_avail.used_event = 0;
	tx_avail.used_event = 0;
	publish(&rxq, &rx_avail.idx, 0, RXQ_SIZE, &rx_used.avail_event, &rx_used.flags, 0);
	for (uint16_t i = 0; i < TXQ_SIZE; i++)
		tx_free[i] = i;
	tx_nfree = TXQ_SIZE;
	return 0;
}

bool netdev_link_up(void)
{
	uint16_t status;

	virtio_config_read(&nic, 6, &status, 2);
	return status & VIRTIO_NET_S_LINK_UP;
}

unsigned int netdev_config_changes(void)
{
	return config_irqs;
}

unsigned int netdev_interrupts(void)
{
	return queue_irqs;
}

bool netdev_broken(void)
{
	return virtio_status(&nic) & VIRTIO_CONFIG_S_NEEDS_RESET;
}

/* Completed transmits back on the free list. */
static void tx_reclaim(void)
{
	while (txq.last_used != load16(&tx_used.idx)) {
		uint32_t id = tx_used.ring[txq.last_used % TXQ_SIZE].id;

		if (id < TXQ_SIZE && tx_nfree < TXQ_SIZE)
			tx_free[tx_nfree++] = (uint16_t)id;
		txq.last_used++;
	}
	/* An interrupt for the next completion, for who waits on one. */
	*(volatile uint16_t *)&tx_avail.used_event = txq.last_used;
}

uint8_t *netdev_tx_begin(void)
{
	tx_reclaim();
	if (!tx_nfree)
		return NULL;
	tx_open = tx_free[--tx_nfree];
	memset(txbuf[tx_open], 0, HDR);
	return txbuf[tx_open] + HDR;
}

void netdev_tx_commit(uint32_t len)
{
	uint16_t i = (uint16_t)tx_open, idx = tx_avail.idx;

	tx_desc[i].addr = (uint64_t)txbuf[i];
	tx_desc[i].len = HDR + len;
	tx_desc[i].flags = 0;
	tx_desc[i].next = 0;
	tx_avail.ring[idx % TXQ_SIZE] = i;
	tx_open = -1;
	publish(&txq, &tx_avail.idx, idx, (uint16_t)(idx + 1), &tx_used.avail_event,
		&tx_used.flags, 1);
}

bool netdev_tx_idle(void)
{
	tx_reclaim();
	return tx_nfree == TXQ_SIZE;
}

bool netdev_pending(void)
{
	return load16(&rx_used.idx) != rxq.last_used;
}

int netdev_recv(uint8_t *buf, uint32_t cap)
{
	uint16_t avail = rx_avail.idx, old = avail;
	uint16_t ready = (uint16_t)(load16(&rx_used.idx) - rxq.last_used);
	struct vring_used_elem e;
	uint32_t total = 0;
	uint16_t nb = 1;
	bool fits = true;

	if (!ready) {
		/* An interrupt when the next frame comes. */
		*(volatile uint16_t *)&rx_avail.used_event = rxq.last_used;
		return 0;
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	e = rx_used.ring[rxq.last_used % RXQ_SIZE];
	if (e.id >= RXQ_SIZE || e.len < HDR || e.len > RX_BUF) {
		printf("net: bad used entry id %u len %u\n", e.id, e.len);
		return -1;
	}
	if (mergeable)
		nb = ((struct virtio_net_hdr_v1 *)rxbuf[e.id])->num_buffers;
	if (nb == 0 || nb > RXQ_SIZE) {
		printf("net: bad num_buffers %u\n", nb);
		return -1;
	}
	if (ready < nb)
		return 0;	/* the device publishes a frame whole: not yet */
	for (uint16_t k = 0; k < nb; k++) {
		uint32_t skip = k ? 0 : HDR, len;

		e = rx_used.ring[(uint16_t)(rxq.last_used + k) % RXQ_SIZE];
		if (e.id >= RXQ_SIZE || e.len < skip || e.len > RX_BUF)
			return -1;
		len = e.len - skip;
		if (total + len > cap)
			fits = false;
		if (fits)
			memcpy(buf + total, rxbuf[e.id] + skip, len);
		total += len;
		rx_avail.ring[avail++ % RXQ_SIZE] = (uint16_t)e.id;
	}
	rxq.last_used = (uint16_t)(rxq.last_used + nb);
	*(volatile uint16_t *)&rx_avail.used_event = rxq.last_used;
	publish(&rxq, &rx_avail.idx, old, avail, &rx_used.avail_event, &rx_used.flags, 0);
	if (!fits) {
		printf("net: a %u-byte frame in %u buffers is larger than %u: dropped\n",
		       total, nb, cap);
		return -2;
	}
	if (nb > 1 && !told_merged) {
		/* Once: the evidence that merged buffers work, not a log. */
		printf("net: a %u-byte frame came in %u buffers\n", total, nb);
		told_merged = true;
	}
	return (int)total;
}
