/* SPDX-License-Identifier: MIT */
/* The test guest's virtio-pci driver. */
#ifndef TESTGUEST_VIRTIO_H
#define TESTGUEST_VIRTIO_H

#include <linux/virtio_ring.h>

#include "guest.h"

struct virtq_g {
	uint16_t size;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t last_used;
	uint64_t notify_addr;
};

struct vdev {
	unsigned int devfn;
	uint64_t common, isr, device, notify;
	uint32_t notify_mult;
	unsigned int msix_cap;
	unsigned int cfg_cap;
	unsigned int device_bar;
	uint32_t device_off;
	uint64_t msix_table;
	uint64_t features;
	struct virtq_g q;
};

/* The @nth device of type @device_id (virtio ids: 2 = block). */
int virtio_find(uint16_t device_id, unsigned int nth, struct vdev *v);
uint64_t virtio_features(struct vdev *v);
/* Reset, negotiate @want, set up queue 0 with MSI-X, DRIVER_OK. */
int virtio_init(struct vdev *v, uint64_t want, uint16_t qsize);
/*
 * The same for @nq queues (rings already pointed to by qs[n]): queue n
 * interrupts on IDT vector vectors[n] through MSI-X entry n, and
 * configuration changes on @config_vector (entry nq) unless it is < 0.
 */
int virtio_init_queues(struct vdev *v, uint64_t want, struct virtq_g *const *qs,
		       const uint16_t *qsizes, const unsigned int *vectors,
		       unsigned int nq, int config_vector);
/* Write queue @n's notification register. */
void virtio_notify(struct virtq_g *q, uint16_t n);
uint8_t virtio_status(struct vdev *v);
uint32_t virtio_cfg_window_read(struct vdev *v, unsigned int bar, uint32_t off);
void virtio_config_read(struct vdev *v, unsigned int off, void *out, unsigned int len);
void virtio_kick(struct vdev *v, const uint16_t *heads, unsigned int n);
/* Wait for @n more used entries; -1 on timeout. */
int virtio_wait(struct vdev *v, unsigned int n, uint64_t timeout_us);
uint32_t virtio_used_len(struct vdev *v, uint16_t slot);
unsigned int virtio_interrupts(void);

#endif
