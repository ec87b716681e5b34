// SPDX-License-Identifier: MIT
/*
 * The virtio device core: feature negotiation, the status byte, queue
 * setup and the broken state.  Transports (virtio_pci.c) turn register
 * accesses into these calls; device models (virtio_blk.c) fill in the
 * ops.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/virtio/virtio.h"

/* Features every device of ours offers. */
#define COMMON_FEATURES ((1ULL << VIRTIO_F_VERSION_1) | \
			 (1ULL << VIRTIO_RING_F_INDIRECT_DESC) | \
			 (1ULL << VIRTIO_RING_F_EVENT_IDX))

int virtio_dev_init(struct virtio_dev *dev, const struct virtio_dev_ops *ops,
		    void *impl, unsigned int nqueues, uint16_t queue_max,
		    uint64_t features, const struct guest_mem *mem)
{
	memset(dev, 0, sizeof(*dev));
	dev->vq = calloc(nqueues, sizeof(*dev->vq));
	if (!dev->vq)
		return -ENOMEM;
	dev->ops = ops;
	dev->impl = impl;
	dev->mem = mem;
	dev->nqueues = nqueues;
	dev->queue_max = queue_max;
	dev->host_features = features | COMMON_FEATURES;
	pthread_mutex_init(&dev->lock, NULL);
	for (unsigned int i = 0; i < nqueues; i++)
		dev->vq[i].size = queue_max;
	return 0;
}

void virtio_dev_destroy(struct virtio_dev *dev)
{
	free(dev->vq);
	dev->vq = NULL;
	pthread_mutex_destroy(&dev->lock);
}

bool virtio_has_feature(const struct virtio_dev *dev, unsigned int bit)
{
	return dev->guest_features & (1ULL << bit);
}

static void reset(struct virtio_dev *dev)
{
	/* The device model drains first: no more guest memory accesses. */
	if (dev->ops->reset)
		dev->ops->reset(dev);
	pthread_mutex_lock(&dev->lock);
	for (unsigned int i = 0; i < dev->nqueues; i++) {
		virtq_disable(&dev->vq[i]);
		memset(&dev->vq[i], 0, sizeof(dev->vq[i]));
		dev->vq[i].size = dev->queue_max;
	}
	dev->status = 0;
	dev->guest_features = 0;
	dev->broken = false;
	dev->config_generation++;
	pthread_mutex_unlock(&dev->lock);
}

void virtio_set_status(struct virtio_dev *dev, uint8_t status)
{
	uint8_t old;

	if (status == 0) {
		reset(dev);
		return;
	}
	pthread_mutex_lock(&dev->lock);
	old = dev->status;
	if ((status & VIRTIO_CONFIG_S_FEATURES_OK) &&
	    !(old & VIRTIO_CONFIG_S_FEATURES_OK)) {
		/* Only what we offered, and never without VERSION_1. */
		if ((dev->guest_features & ~dev->host_features) ||
		    !(dev->guest_features & (1ULL << VIRTIO_F_VERSION_1)))
			status &= (uint8_t)~VIRTIO_CONFIG_S_FEATURES_OK;
	}
	/* NEEDS_RESET is ours to set; the driver cannot clear it. */
	dev->status = (uint8_t)(status | (old & VIRTIO_CONFIG_S_NEEDS_RESET));
	pthread_mutex_unlock(&dev->lock);

	if ((status & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK) &&
	    !dev->broken && dev->ops->activate)
		dev->ops->activate(dev);
}

int virtio_queue_enable(struct virtio_dev *dev, unsigned int n)
{
	struct virtq *q;
	int ret;

	if (n >= dev->nqueues)
		return -EINVAL;
	pthread_mutex_lock(&dev->lock);
	q = &dev->vq[n];
	q->event_idx = virtio_has_feature(dev, VIRTIO_RING_F_EVENT_IDX);
	q->indirect = virtio_has_feature(dev, VIRTIO_RING_F_INDIRECT_DESC);
	ret = virtq_enable(q, dev->mem);
	pthread_mutex_unlock(&dev->lock);
	return ret;
}

void virtio_dev_broken(struct virtio_dev *dev, const char *why)
{
	pthread_mutex_lock(&dev->lock);
	if (dev->broken) {
		pthread_mutex_unlock(&dev->lock);
		return;
	}
	dev->broken = true;
	dev->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	pthread_mutex_unlock(&dev->lock);
	log_warn("virtio %s: %s; the device needs a reset", dev->ops->name, why);
	if (dev->transport.interrupt)
		dev->transport.interrupt(dev, -1);
}

void virtio_config_changed(struct virtio_dev *dev)
{
	pthread_mutex_lock(&dev->lock);
	dev->config_generation++;
	pthread_mutex_unlock(&dev->lock);
	if (dev->transport.interrupt)
		dev->transport.interrupt(dev, -1);
}
