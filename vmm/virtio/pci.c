// SPDX-License-Identifier: MIT
/*
 * Virtio over PCI, the modern (1.0+) transport: vendor 0x1af4, device
 * 0x1040 + the virtio device id.
 *
 *	BAR1 (32-bit memory, 4 KiB): MSI-X table at 0, PBA at 0x800
 *	BAR4 (64-bit memory, 16 KiB):
 *		0x0000 common configuration	(VIRTIO_PCI_CAP_COMMON_CFG)
 *		0x1000 ISR			(VIRTIO_PCI_CAP_ISR_CFG)
 *		0x2000 device configuration	(VIRTIO_PCI_CAP_DEVICE_CFG)
 *		0x3000 notifications, 4 bytes per queue (VIRTIO_PCI_CAP_NOTIFY_CFG)
 *	plus the PCI-configuration-access capability (VIRTIO_PCI_CAP_PCI_CFG).
 *
 * Notifications reach the device through ioeventfds (KVM completes the
 * guest's write without an exit and signals an eventfd the device thread
 * polls); interrupts leave through MSI-X vectors, each a GSI route with
 * an irqfd.  There is no INTx: drivers use MSI-X.
 */
#include <errno.h>
#include <linux/virtio_pci.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "vmm/virtio/virtio.h"

#define VP_BAR_MSIX	1
#define VP_BAR_CFG	4
#define VP_MSIX_SIZE	0x1000
#define VP_PBA		0x800
#define VP_CFG_SIZE	0x4000
#define VP_COMMON	0x0000
#define VP_ISR		0x1000
#define VP_DEVICE	0x2000
#define VP_NOTIFY	0x3000
#define VP_NOTIFY_MULT	4

#define PCI_CAP_ID_VNDR	0x09
#define PCI_CAP_ID_MSIX	0x11
#define MSIX_ENABLE	(1u << 15)
#define MSIX_FUNC_MASK	(1u << 14)
#define MSIX_ENTRY_MASKED 1u

struct msix_vec {
	uint32_t addr_lo, addr_hi, data, ctrl;
	bool pending;
	uint32_t gsi;
	int efd;
};

struct virtio_pci {
	struct vm *vm;
	struct virtio_dev *dev;
	struct pci_device pci;
	pthread_mutex_t lock;		/* MSI-X state, selectors, ISR */
	unsigned int nvec;
	unsigned int nqueues;		/* a copy: the device may go first */
	struct msix_vec *vec;
	uint16_t config_vector;
	uint16_t *queue_vector;
	uint32_t dfselect, gfselect;
	uint16_t queue_sel;
	uint8_t isr;
	int *kick_fd;
	uint64_t notify_base;		/* where BAR4's notify area is mapped */
	bool notify_mapped;
	int msix_cap;
	int cfg_cap;
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get_le(const uint8_t *p, unsigned int len)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < len; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* ---- MSI-X ------------------------------------------------------------ */

static uint16_t msix_control(struct virtio_pci *vp)
{
	return (uint16_t)(vp->pci.cfg[vp->msix_cap + 2] |
			  vp->pci.cfg[vp->msix_cap + 3] << 8);
}

static bool vec_masked(struct virtio_pci *vp, unsigned int v)
{
	return (msix_control(vp) & MSIX_FUNC_MASK) ||
	       (vp->vec[v].ctrl & MSIX_ENTRY_MASKED);
}

static void vec_fire(struct virtio_pci *vp, unsigned int v)
{
	uint64_t one = 1;

	if (write(vp->vec[v].efd, &one, sizeof(one)) < 0) {
		/* Saturated counter: an interrupt is pending anyway. */
	}
}

/* Deliver what became deliverable (unmasking, enabling). */
static void msix_flush_pending(struct virtio_pci *vp)
{
	if (!(msix_control(vp) & MSIX_ENABLE))
		return;
	for (unsigned int v = 0; v < vp->nvec; v++) {
		if (vp->vec[v].pending && !vec_masked(vp, v)) {
			vp->vec[v].pending = false;
			vec_fire(vp, v);
		}
	}
}

static void vp_interrupt(struct virtio_dev *dev, int queue)
{
	struct virtio_pci *vp = dev->transport.opaque;
	uint16_t vector;

	pthread_mutex_lock(&vp->lock);
	vp->isr |= queue < 0 ? VIRTIO_PCI_ISR_CONFIG : 1;
	vector = queue < 0 ? vp->config_vector : vp->queue_vector[queue];
	if ((msix_control(vp) & MSIX_ENABLE) && vector < vp->nvec) {
		if (vec_masked(vp, vector))
			vp->vec[vector].pending = true;
		else
			vec_fire(vp, vector);
	}
	pthread_mutex_unlock(&vp->lock);
}

static void msix_io(void *opaque, uint64_t off, uint8_t *data, unsigned int len,
		    bool write)
{
	struct virtio_pci *vp = opaque;

	pthread_mutex_lock(&vp->lock);
	if (off >= VP_PBA) {
		/* Pending bits, read-only. */
		if (!write) {
			memset(data, 0, len);
			for (unsigned int i = 0; i < len * 8; i++) {
				unsigned int v = (unsigned int)(off - VP_PBA) * 8 + i;

				if (v < vp->nvec && vp->vec[v].pending)
					data[i / 8] |= (uint8_t)(1u << (i % 8));
			}
		}
	} else if (off / 16 < vp->nvec && (len == 4 || len == 8) && off % len == 0) {
		struct msix_vec *e = &vp->vec[off / 16];
		uint8_t raw[16];

		put32(raw, e->addr_lo);
		put32(raw + 4, e->addr_hi);
		put32(raw + 8, e->data);
		put32(raw + 12, e->ctrl);
		if (!write) {
			memcpy(data, raw + off % 16, len);
		} else {
			memcpy(raw + off % 16, data, len);
			e->addr_lo = get32(raw);
			e->addr_hi = get32(raw + 4);
			e->data = get32(raw + 8);
			e->ctrl = get32(raw + 12) & MSIX_ENTRY_MASKED;
			vm_msi_route(vp->vm, e->gsi,
				     (uint64_t)e->addr_hi << 32 | e->addr_lo, e->data,
				     e->addr_lo != 0);
			msix_flush_pending(vp);
		}
	} else if (!write) {
		memset(data, 0, len);
	}
	pthread_mutex_unlock(&vp->lock);
}

/* ---- the common configuration -------------------------------------------- */

enum field {
	F_DFSELECT, F_DF, F_GFSELECT, F_GF, F_MSIX_CONFIG, F_NUM_QUEUES,
	F_STATUS, F_GENERATION, F_Q_SELECT, F_Q_SIZE, F_Q_MSIX, F_Q_ENABLE,
	F_Q_NOTIFY_OFF, F_Q_DESC_LO, F_Q_DESC_HI, F_Q_AVAIL_LO, F_Q_AVAIL_HI,
	F_Q_USED_LO, F_Q_USED_HI, F_COUNT
};

static const struct {
	uint8_t off;
	uint8_t size;
} fields[F_COUNT] = {
	[F_DFSELECT] = { 0x00, 4 }, [F_DF] = { 0x04, 4 },
	[F_GFSELECT] = { 0x08, 4 }, [F_GF] = { 0x0C, 4 },
	[F_MSIX_CONFIG] = { 0x10, 2 }, [F_NUM_QUEUES] = { 0x12, 2 },
	[F_STATUS] = { 0x14, 1 }, [F_GENERATION] = { 0x15, 1 },
	[F_Q_SELECT] = { 0x16, 2 }, [F_Q_SIZE] = { 0x18, 2 },
	[F_Q_MSIX] = { 0x1A, 2 }, [F_Q_ENABLE] = { 0x1C, 2 },
	[F_Q_NOTIFY_OFF] = { 0x1E, 2 }, [F_Q_DESC_LO] = { 0x20, 4 },
	[F_Q_DESC_HI] = { 0x24, 4 }, [F_Q_AVAIL_LO] = { 0x28, 4 },
	[F_Q_AVAIL_HI] = { 0x2C, 4 }, [F_Q_USED_LO] = { 0x30, 4 },
	[F_Q_USED_HI] = { 0x34, 4 },
};
#define COMMON_LEN 0x38

/* The selected queue, or NULL when the selector points past the end. */
static struct virtq *sel_queue(struct virtio_pci *vp)
{
	return vp->queue_sel < vp->dev->nqueues ? &vp->dev->vq[vp->queue_sel] : NULL;
}

static uint64_t field_read(struct virtio_pci *vp, enum field f)
{
	struct virtio_dev *dev = vp->dev;
	struct virtq *q = sel_queue(vp);

	switch (f) {
	case F_DFSELECT:
		return vp->dfselect;
	case F_DF:
		return vp->dfselect < 2 ? (uint32_t)(dev->host_features >> (32 * vp->dfselect)) : 0;
	case F_GFSELECT:
		return vp->gfselect;
	case F_GF:
		return vp->gfselect < 2 ? (uint32_t)(dev->guest_features >> (32 * vp->gfselect)) : 0;
	case F_MSIX_CONFIG:
		return vp->config_vector;
	case F_NUM_QUEUES:
		return dev->nqueues;
	case F_STATUS:
		return dev->status;
	case F_GENERATION:
		return dev->config_generation;
	case F_Q_SELECT:
		return vp->queue_sel;
	case F_Q_SIZE:
		return q ? q->size : 0;
	case F_Q_MSIX:
		return q ? vp->queue_vector[vp->queue_sel] : VIRTIO_MSI_NO_VECTOR;
	case F_Q_ENABLE:
		return q ? q->enabled : 0;
	case F_Q_NOTIFY_OFF:
		return q ? vp->queue_sel : 0;
	case F_Q_DESC_LO:
		return q ? (uint32_t)q->desc_gpa : 0;
	case F_Q_DESC_HI:
		return q ? (uint32_t)(q->desc_gpa >> 32) : 0;
	case F_Q_AVAIL_LO:
		return q ? (uint32_t)q->avail_gpa : 0;
	case F_Q_AVAIL_HI:
		return q ? (uint32_t)(q->avail_gpa >> 32) : 0;
	case F_Q_USED_LO:
		return q ? (uint32_t)q->used_gpa : 0;
	case F_Q_USED_HI:
		return q ? (uint32_t)(q->used_gpa >> 32) : 0;
	case F_COUNT:
		break;
	}
	return 0;
}

static void set_half(uint64_t *addr, uint32_t v, bool high)
{
	if (high)
		*addr = (*addr & 0xFFFFFFFFULL) | (uint64_t)v << 32;
	else
		*addr = (*addr & ~0xFFFFFFFFULL) | v;
}

/* Returns a status to apply once the lock is dropped, or -1. */
static int field_write(struct virtio_pci *vp, enum field f, uint32_t v)
{
	struct virtio_dev *dev = vp->dev;
	struct virtq *q = sel_queue(vp);
	bool features_locked = dev->status & VIRTIO_CONFIG_S_FEATURES_OK;

	switch (f) {
	case F_DFSELECT:
		vp->dfselect = v;
		break;
	case F_GFSELECT:
		vp->gfselect = v;
		break;
	case F_GF:
		if (vp->gfselect < 2 && !features_locked) {
			uint64_t mask = 0xFFFFFFFFULL << (32 * vp->gfselect);

			dev->guest_features = (dev->guest_features & ~mask) |
					      ((uint64_t)v << (32 * vp->gfselect));
		}
		break;
	case F_MSIX_CONFIG:
		/* A vector we do not have reads back as NO_VECTOR. */
		vp->config_vector = v < vp->nvec ? (uint16_t)v : VIRTIO_MSI_NO_VECTOR;
		break;
	case F_STATUS:
		return (int)(v & 0xFF);
	case F_Q_SELECT:
		vp->queue_sel = (uint16_t)v;
		break;
	case F_Q_SIZE:
		/* Smaller is allowed, never larger; only while disabled. */
		if (q && !q->enabled && v && v <= dev->queue_max && !(v & (v - 1)))
			q->size = (uint16_t)v;
		break;
	case F_Q_MSIX:
		if (q)
			vp->queue_vector[vp->queue_sel] =
				v < vp->nvec ? (uint16_t)v : VIRTIO_MSI_NO_VECTOR;
		break;
	case F_Q_ENABLE:
		if (q && v == 1 && !q->enabled) {
			pthread_mutex_unlock(&vp->lock);
			if (virtio_queue_enable(dev, vp->queue_sel))
				virtio_dev_broken(dev, "a queue's rings are outside guest memory or misaligned");
			pthread_mutex_lock(&vp->lock);
		}
		break;
	case F_Q_DESC_LO:
	case F_Q_DESC_HI:
		if (q && !q->enabled)
			set_half(&q->desc_gpa, v, f == F_Q_DESC_HI);
		break;
	case F_Q_AVAIL_LO:
	case F_Q_AVAIL_HI:
		if (q && !q->enabled)
			set_half(&q->avail_gpa, v, f == F_Q_AVAIL_HI);
		break;
	case F_Q_USED_LO:
	case F_Q_USED_HI:
		if (q && !q->enabled)
			set_half(&q->used_gpa, v, f == F_Q_USED_HI);
		break;
	default:
		break;		/* read-only */
	}
	return -1;
}

static void common_io(struct virtio_pci *vp, uint64_t off, uint8_t *data,
		      unsigned int len, bool write)
{
	int status = -1;

	pthread_mutex_lock(&vp->lock);
	if (!write) {
		/* Any access size: assemble the bytes field by field. */
		for (unsigned int i = 0; i < len; i++) {
			uint64_t o = off + i;

			data[i] = 0;
			for (int f = 0; f < F_COUNT; f++) {
				if (o >= fields[f].off && o < fields[f].off + fields[f].size) {
					data[i] = (uint8_t)(field_read(vp, (enum field)f) >>
							    (8 * (o - fields[f].off)));
					break;
				}
			}
		}
	} else {
		/* Writes are natural-size to one field; others are ignored. */
		for (int f = 0; f < F_COUNT; f++)
			if (off == fields[f].off && len == fields[f].size)
				status = field_write(vp, (enum field)f,
						     (uint32_t)get_le(data, len));
	}
	pthread_mutex_unlock(&vp->lock);
	/* Status changes may reset the device and wait: no lock held. */
	if (status >= 0)
		virtio_set_status(vp->dev, (uint8_t)status);
}

/* ---- BAR4 ------------------------------------------------------------ */

static void cfg_bar_io(void *opaque, uint64_t off, uint8_t *data, unsigned int len,
		       bool is_write)
{
	struct virtio_pci *vp = opaque;
	struct virtio_dev *dev = vp->dev;

	if (off < VP_COMMON + COMMON_LEN) {
		common_io(vp, off - VP_COMMON, data, len, is_write);
	} else if (off >= VP_ISR && off < VP_ISR + 4) {
		if (!is_write) {
			pthread_mutex_lock(&vp->lock);
			memset(data, 0, len);
			if (off == VP_ISR) {
				data[0] = vp->isr;
				vp->isr = 0;		/* reading acknowledges */
			}
			pthread_mutex_unlock(&vp->lock);
		}
	} else if (off >= VP_DEVICE && off - VP_DEVICE + len <= dev->ops->config_size) {
		if (is_write) {
			if (dev->ops->config_write)
				dev->ops->config_write(dev, (uint32_t)(off - VP_DEVICE), data, len);
		} else {
			dev->ops->config_read(dev, (uint32_t)(off - VP_DEVICE), data, len);
		}
	} else if (off >= VP_NOTIFY && off < VP_NOTIFY + VP_NOTIFY_MULT * dev->nqueues) {
		/* Only when KVM did not take the write (another size). */
		if (is_write) {
			uint64_t one = 1;

			if (write(vp->kick_fd[(off - VP_NOTIFY) / VP_NOTIFY_MULT], &one,
				  sizeof(one)) < 0) {
				/* Saturated: a kick is pending anyway. */
			}
		} else {
			memset(data, 0, len);
		}
	} else if (!is_write) {
		memset(data, 0, len);
	}
}

/* ioeventfds follow BAR4 wherever the guest puts it. */
static void bar_moved(struct pci_device *pci, int n, uint64_t addr, bool mapped)
{
	struct virtio_pci *vp = pci->opaque;

	if (n != VP_BAR_CFG)
		return;
	for (unsigned int q = 0; q < vp->nqueues; q++) {
		uint64_t a = addr + VP_NOTIFY + (uint64_t)q * VP_NOTIFY_MULT;

		if (vm_ioeventfd(vp->vm, a, 2, vp->kick_fd[q], mapped) && mapped)
			log_warn("virtio %s: no ioeventfd for queue %u; notifications take exits",
				 vp->pci.name, q);
	}
	vp->notify_base = addr + VP_NOTIFY;
	vp->notify_mapped = mapped;
}

/* ---- PCI configuration space --------------------------------------------- */

static int add_vendor_cap(struct pci_device *pci, uint8_t type, uint8_t bar,
			  uint32_t off, uint32_t len, unsigned int size)
{
	int at = pci_add_capability(pci, PCI_CAP_ID_VNDR, size);

	if (at < 0)
		return at;
	pci->cfg[at + 2] = (uint8_t)size;	/* cap_len */
	pci->cfg[at + 3] = type;
	pci->cfg[at + 4] = bar;
	put32(pci->cfg + at + 8, off);
	put32(pci->cfg + at + 12, len);
	return at;
}

/* Window into the BARs through configuration space (VIRTIO_PCI_CAP_PCI_CFG). */
static void pci_cfg_window(struct virtio_pci *vp, bool write)
{
	uint8_t *cap = vp->pci.cfg + vp->cfg_cap;
	uint32_t off = get32(cap + 8), len = get32(cap + 12);

	if (cap[4] != VP_BAR_CFG || (len != 1 && len != 2 && len != 4) ||
	    off >= VP_CFG_SIZE || off % len)
		return;
	cfg_bar_io(vp, off, cap + 16, len, write);
}

static void cfg_written(struct pci_device *pci, unsigned int off, unsigned int len)
{
	struct virtio_pci *vp = pci->opaque;

	if (off < (unsigned int)vp->msix_cap + 4 && off + len > (unsigned int)vp->msix_cap + 2) {
		pthread_mutex_lock(&vp->lock);
		msix_flush_pending(vp);
		pthread_mutex_unlock(&vp->lock);
	}
	if (off < (unsigned int)vp->cfg_cap + 20 && off + len > (unsigned int)vp->cfg_cap + 16)
		pci_cfg_window(vp, true);
}

static void cfg_read(struct pci_device *pci, unsigned int off, unsigned int len)
{
	struct virtio_pci *vp = pci->opaque;

	if (off < (unsigned int)vp->cfg_cap + 20 && off + len > (unsigned int)vp->cfg_cap + 16)
		pci_cfg_window(vp, false);
}

/* ---- saved state ----------------------------------------------------------- */

/*
 * Records of a virtio function's section, after pci.c's configuration
 * space: the transport (MSI-X, selectors, ISR), the device core
 * (features, status, each queue), and from 200 on the device's own.
 */
enum {
	V_NVEC = 100, V_VECTORS, V_CONFIG_VECTOR, V_QUEUE_VECTORS, V_SELECTORS, V_ISR,
	V_HOST_FEATURES = 110, V_GUEST_FEATURES, V_STATUS, V_GENERATION, V_BROKEN,
	V_NQUEUES, V_QUEUE0 = 120,	/* one record a queue */
};

#define VEC_BYTES	17	/* addr_lo addr_hi data ctrl, pending */
#define QUEUE_BYTES	40

static void vp_save(struct pci_device *pci, struct ss_section *s)
{
	struct virtio_pci *vp = pci->opaque;
	struct virtio_dev *dev = vp->dev;
	uint8_t *vecs = calloc(vp->nvec, VEC_BYTES), sel[10];
	uint16_t qv[VIRTQ_MAX_QUEUES];

	pthread_mutex_lock(&vp->lock);
	ss_put_u32(s, V_NVEC, vp->nvec);
	for (unsigned int v = 0; vecs && v < vp->nvec; v++) {
		uint8_t *e = vecs + v * VEC_BYTES;

		put32(e, vp->vec[v].addr_lo);
		put32(e + 4, vp->vec[v].addr_hi);
		put32(e + 8, vp->vec[v].data);
		put32(e + 12, vp->vec[v].ctrl);
		e[16] = vp->vec[v].pending;
	}
	if (vecs)
		ss_put(s, V_VECTORS, vecs, vp->nvec * VEC_BYTES);
	ss_put_u16(s, V_CONFIG_VECTOR, vp->config_vector);
	for (unsigned int q = 0; q < vp->nqueues && q < VIRTQ_MAX_QUEUES; q++)
		qv[q] = vp->queue_vector[q];
	ss_put(s, V_QUEUE_VECTORS, qv, vp->nqueues * sizeof(uint16_t));
	put32(sel, vp->dfselect);
	put32(sel + 4, vp->gfselect);
	put16(sel + 8, vp->queue_sel);
	ss_put(s, V_SELECTORS, sel, sizeof(sel));
	ss_put_u8(s, V_ISR, vp->isr);
	pthread_mutex_unlock(&vp->lock);
	free(vecs);

	pthread_mutex_lock(&dev->lock);
	ss_put_u64(s, V_HOST_FEATURES, dev->host_features);
	ss_put_u64(s, V_GUEST_FEATURES, dev->guest_features);
	ss_put_u8(s, V_STATUS, dev->status);
	ss_put_u8(s, V_GENERATION, dev->config_generation);
	ss_put_u8(s, V_BROKEN, dev->broken);
	ss_put_u32(s, V_NQUEUES, dev->nqueues);
	for (unsigned int q = 0; q < dev->nqueues; q++) {
		const struct virtq *vq = &dev->vq[q];
		uint8_t b[QUEUE_BYTES] = { 0 };

		put16(b, vq->size);
		b[2] = vq->enabled;
		b[3] = vq->ever_signalled;
		put32(b + 4, (uint32_t)vq->desc_gpa);
		put32(b + 8, (uint32_t)(vq->desc_gpa >> 32));
		put32(b + 12, (uint32_t)vq->avail_gpa);
		put32(b + 16, (uint32_t)(vq->avail_gpa >> 32));
		put32(b + 20, (uint32_t)vq->used_gpa);
		put32(b + 24, (uint32_t)(vq->used_gpa >> 32));
		put16(b + 28, vq->last_avail);
		put16(b + 30, vq->used_idx);
		put16(b + 32, vq->signalled);
		ss_put(s, V_QUEUE0 + q, b, sizeof(b));
	}
	pthread_mutex_unlock(&dev->lock);
	if (dev->ops->save)
		dev->ops->save(dev, s);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static int restore_queue(struct virtio_pci *vp, struct ss_rsection *s, unsigned int q,
			 char *err, size_t errlen)
{
	struct virtio_dev *dev = vp->dev;
	struct virtq *vq = &dev->vq[q];
	uint8_t b[QUEUE_BYTES];
	uint16_t size;

	if (ss_get(s, V_QUEUE0 + q, b, sizeof(b)))
		return vmm_fail(err, errlen, "virtio %s: queue %u is missing from the state",
				vp->pci.name, q);
	size = get16(b);
	if (!size || size > dev->queue_max || (size & (size - 1)) || b[2] > 1)
		return vmm_fail(err, errlen, "virtio %s: queue %u has size %u, out of range",
				vp->pci.name, q, size);
	vq->size = size;
	vq->desc_gpa = get32(b + 4) | (uint64_t)get32(b + 8) << 32;
	vq->avail_gpa = get32(b + 12) | (uint64_t)get32(b + 16) << 32;
	vq->used_gpa = get32(b + 20) | (uint64_t)get32(b + 24) << 32;
	if (!b[2])
		return 0;
	/* The rings are checked against guest RAM as the driver's would be. */
	if (virtio_queue_enable(dev, q))
		return vmm_fail(err, errlen,
				"virtio %s: queue %u's rings lie outside guest RAM or are misaligned",
				vp->pci.name, q);
	vq->last_avail = get16(b + 28);
	vq->used_idx = get16(b + 30);
	vq->signalled = get16(b + 32);
	vq->ever_signalled = b[3];
	return 0;
}

static int vp_restore(struct pci_device *pci, struct ss_rsection *s, char *err,
		      size_t errlen)
{
	struct virtio_pci *vp = pci->opaque;
	struct virtio_dev *dev = vp->dev;
	uint64_t host, guest;
	uint32_t nvec, nqueues;
	uint8_t sel[10], status, gen, broken, isr;
	uint16_t cv;
	const void *p;
	size_t len;
	int ret;

	if (ss_get_u32(s, V_NVEC, &nvec) || ss_get_u32(s, V_NQUEUES, &nqueues) ||
	    ss_get_u64(s, V_HOST_FEATURES, &host) || ss_get_u64(s, V_GUEST_FEATURES, &guest) ||
	    ss_get_u8(s, V_STATUS, &status) || ss_get_u8(s, V_GENERATION, &gen) ||
	    ss_get_u8(s, V_BROKEN, &broken) || ss_get_u16(s, V_CONFIG_VECTOR, &cv) ||
	    ss_get(s, V_SELECTORS, sel, sizeof(sel)) || ss_get_u8(s, V_ISR, &isr))
		return vmm_fail(err, errlen, "virtio %s: the transport's state is incomplete",
				pci->name);
	if (nvec != vp->nvec || nqueues != dev->nqueues)
		return vmm_fail(err, errlen, "virtio %s: the state has %u vectors and %u queues, the device %u and %u",
				pci->name, nvec, nqueues, vp->nvec, dev->nqueues);
	if (host != dev->host_features || (guest & ~host) || broken > 1)
		return vmm_fail(err, errlen,
				"virtio %s: the saved features (0x%llx) are not what this device offers (0x%llx)",
				pci->name, (unsigned long long)host,
				(unsigned long long)dev->host_features);
	if (ss_get_var(s, V_VECTORS, &p, &len) || len != nvec * VEC_BYTES)
		return vmm_fail(err, errlen, "virtio %s: the MSI-X table is malformed", pci->name);
	pthread_mutex_lock(&vp->lock);
	for (unsigned int v = 0; v < vp->nvec; v++) {
		const uint8_t *e = (const uint8_t *)p + v * VEC_BYTES;
		struct msix_vec *m = &vp->vec[v];

		m->addr_lo = get32(e);
		m->addr_hi = get32(e + 4);
		m->data = get32(e + 8);
		m->ctrl = get32(e + 12) & MSIX_ENTRY_MASKED;
		m->pending = e[16] & 1;
		/* The route the guest programmed, on the irqfd we already have. */
		vm_msi_route(vp->vm, m->gsi, (uint64_t)m->addr_hi << 32 | m->addr_lo, m->data,
			     m->addr_lo != 0);
	}
	vp->config_vector = cv < vp->nvec ? cv : VIRTIO_MSI_NO_VECTOR;
	if (ss_get_var(s, V_QUEUE_VECTORS, &p, &len) || len != nqueues * sizeof(uint16_t)) {
		pthread_mutex_unlock(&vp->lock);
		return vmm_fail(err, errlen, "virtio %s: the queue vectors are malformed", pci->name);
	}
	for (unsigned int q = 0; q < vp->nqueues; q++) {
		uint16_t v = get16((const uint8_t *)p + 2 * q);

		vp->queue_vector[q] = v < vp->nvec ? v : VIRTIO_MSI_NO_VECTOR;
	}
	vp->dfselect = get32(sel);
	vp->gfselect = get32(sel + 4);
	vp->queue_sel = get16(sel + 8);
	vp->isr = isr;
	pthread_mutex_unlock(&vp->lock);

	pthread_mutex_lock(&dev->lock);
	dev->guest_features = guest;
	dev->status = status;
	dev->config_generation = gen;
	dev->broken = broken;
	pthread_mutex_unlock(&dev->lock);
	for (unsigned int q = 0; q < dev->nqueues; q++) {
		ret = restore_queue(vp, s, q, err, errlen);
		if (ret)
			return ret;
	}
	if (dev->ops->restore) {
		ret = dev->ops->restore(dev, s, err, errlen);
		if (ret)
			return ret;
	}
	pthread_mutex_lock(&vp->lock);
	msix_flush_pending(vp);
	pthread_mutex_unlock(&vp->lock);
	/* A device the driver had started goes on where it was. */
	if ((status & VIRTIO_CONFIG_S_DRIVER_OK) && !broken && dev->ops->activate)
		dev->ops->activate(dev);
	return 0;
}

static int build_config_space(struct virtio_pci *vp)
{
	struct pci_device *pci = &vp->pci;
	const struct virtio_dev_ops *ops = vp->dev->ops;
	int at;

	pci_set_id(pci, 0x1AF4, (uint16_t)(0x1040 + ops->device_id), ops->pci_class, 1);
	put16(pci->cfg + 0x2C, 0x1AF4);		/* subsystem vendor */
	put16(pci->cfg + 0x2E, 0x40);		/* subsystem: modern only */
	pci_set_bar(pci, VP_BAR_MSIX, PCI_BAR_MEM32, VP_MSIX_SIZE, msix_io, vp);
	pci_set_bar(pci, VP_BAR_CFG, PCI_BAR_MEM64, VP_CFG_SIZE, cfg_bar_io, vp);

	at = pci_add_capability(pci, PCI_CAP_ID_MSIX, 12);
	if (at < 0)
		return at;
	vp->msix_cap = at;
	put16(pci->cfg + at + 2, (uint16_t)(vp->nvec - 1));	/* table size */
	put32(pci->cfg + at + 4, 0 | VP_BAR_MSIX);		/* table: BAR1 + 0 */
	put32(pci->cfg + at + 8, VP_PBA | VP_BAR_MSIX);		/* PBA: BAR1 + 0x800 */
	put16(pci->wmask + at + 2, MSIX_ENABLE | MSIX_FUNC_MASK);

	if (add_vendor_cap(pci, VIRTIO_PCI_CAP_COMMON_CFG, VP_BAR_CFG, VP_COMMON,
			   COMMON_LEN, 16) < 0 ||
	    add_vendor_cap(pci, VIRTIO_PCI_CAP_ISR_CFG, VP_BAR_CFG, VP_ISR, 4, 16) < 0 ||
	    add_vendor_cap(pci, VIRTIO_PCI_CAP_DEVICE_CFG, VP_BAR_CFG, VP_DEVICE,
			   (uint32_t)ops->config_size, 16) < 0)
		return -ENOSPC;
	at = add_vendor_cap(pci, VIRTIO_PCI_CAP_NOTIFY_CFG, VP_BAR_CFG, VP_NOTIFY,
			    VP_NOTIFY_MULT * vp->dev->nqueues, 20);
	if (at < 0)
		return at;
	put32(pci->cfg + at + 16, VP_NOTIFY_MULT);	/* notify_off_multiplier */
	at = add_vendor_cap(pci, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 0, 20);
	if (at < 0)
		return at;
	vp->cfg_cap = at;
	/* The driver chooses bar, offset and length, and moves data. */
	pci->wmask[at + 4] = 0xFF;
	put32(pci->wmask + at + 8, 0xFFFFFFFF);
	put32(pci->wmask + at + 12, 0xFFFFFFFF);
	put32(pci->wmask + at + 16, 0xFFFFFFFF);
	return 0;
}

static void vp_reset(void *opaque)
{
	struct virtio_pci *vp = opaque;

	virtio_set_status(vp->dev, 0);
	pthread_mutex_lock(&vp->lock);
	for (unsigned int v = 0; v < vp->nvec; v++) {
		vp->vec[v].addr_lo = vp->vec[v].addr_hi = vp->vec[v].data = 0;
		vp->vec[v].ctrl = MSIX_ENTRY_MASKED;
		vp->vec[v].pending = false;
	}
	put16(vp->pci.cfg + vp->msix_cap + 2, (uint16_t)(vp->nvec - 1));
	vp->config_vector = VIRTIO_MSI_NO_VECTOR;
	for (unsigned int q = 0; q < vp->dev->nqueues; q++)
		vp->queue_vector[q] = VIRTIO_MSI_NO_VECTOR;
	vp->dfselect = vp->gfselect = 0;
	vp->queue_sel = 0;
	vp->isr = 0;
	pthread_mutex_unlock(&vp->lock);
}

struct virtio_pci *virtio_pci_create(struct vm *vm, struct virtio_dev *dev,
				     char *err, size_t errlen)
{
	struct virtio_pci *vp = calloc(1, sizeof(*vp));
	int ret;

	if (!vp)
		return NULL;
	vp->vm = vm;
	vp->dev = dev;
	vp->nvec = dev->nqueues + 1;
	vp->nqueues = dev->nqueues;
	pthread_mutex_init(&vp->lock, NULL);
	vp->vec = calloc(vp->nvec, sizeof(*vp->vec));
	vp->queue_vector = calloc(dev->nqueues, sizeof(uint16_t));
	vp->kick_fd = calloc(dev->nqueues, sizeof(int));
	if (!vp->vec || !vp->queue_vector || !vp->kick_fd)
		goto fail;
	for (unsigned int q = 0; q < dev->nqueues; q++) {
		vp->kick_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vp->kick_fd[q] < 0)
			goto fail;
	}
	for (unsigned int v = 0; v < vp->nvec; v++) {
		vp->vec[v].efd = -1;
		ret = vm_msi_alloc(vm, &vp->vec[v].gsi, &vp->vec[v].efd);
		if (ret) {
			snprintf(err, errlen, "virtio %s: cannot set up MSI-X: %s",
				 dev->ops->name, strerror(-ret));
			goto fail_quiet;
		}
	}
	dev->transport.interrupt = vp_interrupt;
	dev->transport.opaque = vp;
	vp->pci.name = dev->ops->name;
	vp->pci.opaque = vp;
	vp->pci.cfg_written = cfg_written;
	vp->pci.cfg_read = cfg_read;
	vp->pci.bar_moved = bar_moved;
	vp->pci.save = vp_save;
	vp->pci.restore = vp_restore;
	ret = build_config_space(vp);
	if (!ret)
		ret = pci_add(vm->pci, &vp->pci);
	if (ret) {
		snprintf(err, errlen, "virtio %s: cannot add the PCI device: %s",
			 dev->ops->name, strerror(-ret));
		goto fail_quiet;
	}
	vp_reset(vp);
	return vp;
fail:
	snprintf(err, errlen, "virtio %s: out of memory or eventfds", dev->ops->name);
fail_quiet:
	virtio_pci_destroy(vp);
	return NULL;
}

int virtio_pci_kick_fd(struct virtio_pci *vp, unsigned int n)
{
	return n < vp->nqueues ? vp->kick_fd[n] : -1;
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
	if (!vp)
		return;
	if (vp->notify_mapped)
		bar_moved(&vp->pci, VP_BAR_CFG, vp->notify_base - VP_NOTIFY, false);
	for (unsigned int v = 0; vp->vec && v < vp->nvec; v++)
		if (vp->vec[v].efd >= 0)
			vm_msi_free(vp->vm, vp->vec[v].gsi, vp->vec[v].efd);
	for (unsigned int q = 0; vp->kick_fd && q < vp->nqueues; q++)
		if (vp->kick_fd[q] > 0)
			close(vp->kick_fd[q]);
	free(vp->vec);
	free(vp->queue_vector);
	free(vp->kick_fd);
	pthread_mutex_destroy(&vp->lock);
	free(vp);
}

void virtio_pci_reset(void *opaque)
{
	vp_reset(opaque);
}
