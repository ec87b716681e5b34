// SPDX-License-Identifier: MIT
/*
 * A small virtio-pci (modern) driver for the test guest: finds a device
 * on bus 0, negotiates features, sets up one split virtqueue with MSI-X,
 * and submits batches of descriptor chains (direct or indirect).
 */
#include <linux/virtio_config.h>
#include <linux/virtio_pci.h>

#include "guest.h"
#include "virtio.h"

#define PCI_VENDOR_VIRTIO 0x1AF4

static uint32_t pci_cfg_read32(unsigned int dev, unsigned int reg)
{
	outl(0xCF8, 0x80000000u | dev << 11 | (reg & 0xFC));
	return inl(0xCFC);
}

static void pci_cfg_write32(unsigned int dev, unsigned int reg, uint32_t v)
{
	outl(0xCF8, 0x80000000u | dev << 11 | (reg & 0xFC));
	outl(0xCFC, v);
}

static uint8_t pci_cfg_read8(unsigned int dev, unsigned int reg)
{
	return (uint8_t)(pci_cfg_read32(dev, reg) >> (8 * (reg & 3)));
}

static uint64_t bar_address(unsigned int dev, unsigned int bar)
{
	uint32_t lo = pci_cfg_read32(dev, 0x10 + 4 * bar);
	uint64_t a = lo & ~0xFull;

	if ((lo & 0x6) == 0x4)		/* 64-bit memory BAR */
		a |= (uint64_t)pci_cfg_read32(dev, 0x14 + 4 * bar) << 32;
	return a;
}

static volatile unsigned int virtio_irqs;

static void virtio_irq(void)
{
	virtio_irqs++;
}

unsigned int virtio_interrupts(void)
{
	return virtio_irqs;
}

#define COMMON(v, field) ((v)->common + __builtin_offsetof(struct virtio_pci_common_cfg, field))

static void w8(uint64_t a, uint8_t v)
{
	*(volatile uint8_t *)a = v;
}

static void w16(uint64_t a, uint16_t v)
{
	*(volatile uint16_t *)a = v;
}

static void w32(uint64_t a, uint32_t v)
{
	*(volatile uint32_t *)a = v;
}

static uint8_t r8(uint64_t a)
{
	return *(volatile uint8_t *)a;
}

static uint16_t r16(uint64_t a)
{
	return *(volatile uint16_t *)a;
}

static uint32_t r32(uint64_t a)
{
	return *(volatile uint32_t *)a;
}

static void find_caps(struct vdev *v)
{
	for (unsigned int p = pci_cfg_read8(v->devfn, 0x34); p; p = pci_cfg_read8(v->devfn, p + 1)) {
		uint8_t id = pci_cfg_read8(v->devfn, p);

		if (id == 0x11) {		/* MSI-X */
			uint32_t t = pci_cfg_read32(v->devfn, p + 4);

			v->msix_cap = p;
			v->msix_table = bar_address(v->devfn, t & 7) + (t & ~7u);
		} else if (id == 0x09) {	/* virtio vendor capability */
			uint8_t type = pci_cfg_read8(v->devfn, p + 3);
			uint8_t bar = pci_cfg_read8(v->devfn, p + 4);
			uint64_t a = bar_address(v->devfn, bar) + pci_cfg_read32(v->devfn, p + 8);

			if (type == VIRTIO_PCI_CAP_COMMON_CFG)
				v->common = a;
			else if (type == VIRTIO_PCI_CAP_ISR_CFG)
				v->isr = a;
			else if (type == VIRTIO_PCI_CAP_DEVICE_CFG) {
				v->device = a;
				v->device_bar = bar;
				v->device_off = pci_cfg_read32(v->devfn, p + 8);
			}
			else if (type == VIRTIO_PCI_CAP_PCI_CFG)
				v->cfg_cap = p;
			else if (type == VIRTIO_PCI_CAP_NOTIFY_CFG) {
				v->notify = a;
				v->notify_mult = pci_cfg_read32(v->devfn, p + 16);
			}
		}
	}
}

int virtio_find(uint16_t device_id, unsigned int nth, struct vdev *v)
{
	unsigned int seen = 0;

	memset(v, 0, sizeof(*v));
	for (unsigned int dev = 0; dev < 32; dev++) {
		uint32_t id = pci_cfg_read32(dev, 0);

		if ((id & 0xFFFF) != PCI_VENDOR_VIRTIO || (id >> 16) != 0x1040u + device_id)
			continue;
		if (seen++ != nth)
			continue;
		v->devfn = dev;
		find_caps(v);
		return v->common && v->notify && v->device && v->msix_table ? 0 : -1;
	}
	return -1;
}

uint64_t virtio_features(struct vdev *v)
{
	uint64_t f;

	w32(COMMON(v, device_feature_select), 0);
	f = r32(COMMON(v, device_feature));
	w32(COMMON(v, device_feature_select), 1);
	return f | (uint64_t)r32(COMMON(v, device_feature)) << 32;
}

static void msix_entry(struct vdev *v, unsigned int n, unsigned int vector)
{
	uint64_t e = v->msix_table + 16 * n;

	w32(e + 0, 0xFEE00000u | (lapic_id() << 12));
	w32(e + 4, 0);
	w32(e + 8, vector);
	w32(e + 12, 0);
}

/* Queue @n on @q's rings (q->desc, avail, used set), MSI-X entry @n. */
static int queue_setup(struct vdev *v, unsigned int n, struct virtq_g *q, uint16_t qsize)
{
	uint16_t max;

	w16(COMMON(v, queue_select), (uint16_t)n);
	max = r16(COMMON(v, queue_size));
	if (qsize > max)
		qsize = max;
	w16(COMMON(v, queue_size), qsize);
	w16(COMMON(v, queue_msix_vector), (uint16_t)n);
	if (r16(COMMON(v, queue_msix_vector)) != n)
		return -3;
	q->size = qsize;
	memset(q->desc, 0, sizeof(struct vring_desc) * qsize);
	memset((void *)q->avail, 0, 6 + 2 * qsize);
	memset((void *)q->used, 0, 6 + 8 * qsize);
	w32(COMMON(v, queue_desc_lo), (uint32_t)(uint64_t)q->desc);
	w32(COMMON(v, queue_desc_hi), (uint32_t)((uint64_t)q->desc >> 32));
	w32(COMMON(v, queue_avail_lo), (uint32_t)(uint64_t)q->avail);
	w32(COMMON(v, queue_avail_hi), (uint32_t)((uint64_t)q->avail >> 32));
	w32(COMMON(v, queue_used_lo), (uint32_t)(uint64_t)q->used);
	w32(COMMON(v, queue_used_hi), (uint32_t)((uint64_t)q->used >> 32));
	w16(COMMON(v, queue_enable), 1);
	q->notify_addr = v->notify + (uint64_t)r16(COMMON(v, queue_notify_off)) * v->notify_mult;
	q->last_used = 0;
	return 0;
}

int virtio_init_queues(struct vdev *v, uint64_t want, struct virtq_g *const *qs,
		       const uint16_t *qsizes, const unsigned int *vectors,
		       unsigned int nq, int config_vector)
{
	uint64_t have;
	int ret;

	/* Memory decoding and bus mastering on. */
	pci_cfg_write32(v->devfn, 0x04, pci_cfg_read32(v->devfn, 0x04) | 0x6);
	w8(COMMON(v, device_status), 0);
	if (r8(COMMON(v, device_status)) != 0)
		return -1;
	w8(COMMON(v, device_status), VIRTIO_CONFIG_S_ACKNOWLEDGE);
	w8(COMMON(v, device_status), VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	have = virtio_features(v);
	v->features = have & want;
	w32(COMMON(v, guest_feature_select), 0);
	w32(COMMON(v, guest_feature), (uint32_t)v->features);
	w32(COMMON(v, guest_feature_select), 1);
	w32(COMMON(v, guest_feature), (uint32_t)(v->features >> 32));
	w8(COMMON(v, device_status), VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				     VIRTIO_CONFIG_S_FEATURES_OK);
	if (!(r8(COMMON(v, device_status)) & VIRTIO_CONFIG_S_FEATURES_OK))
		return -2;

	/* MSI-X: entry n for queue n, entry nq for configuration changes. */
	for (unsigned int n = 0; n < nq; n++)
		msix_entry(v, n, vectors[n]);
	if (config_vector >= 0)
		msix_entry(v, nq, (unsigned int)config_vector);
	pci_cfg_write32(v->devfn, v->msix_cap,
			pci_cfg_read32(v->devfn, v->msix_cap) | (0x8000u << 16));
	w16(COMMON(v, msix_config), config_vector >= 0 ? (uint16_t)nq : VIRTIO_MSI_NO_VECTOR);
	if (config_vector >= 0 && r16(COMMON(v, msix_config)) != nq)
		return -3;
	for (unsigned int n = 0; n < nq; n++) {
		ret = queue_setup(v, n, qs[n], qsizes[n]);
		if (ret)
			return ret;
	}
	w8(COMMON(v, device_status), VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				     VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	if (r8(COMMON(v, device_status)) & VIRTIO_CONFIG_S_NEEDS_RESET)
		return -4;
	return 0;
}

int virtio_init(struct vdev *v, uint64_t want, uint16_t qsize)
{
	struct virtq_g *q = &v->q;
	const unsigned int vector = VEC_VIRTIO;

	irq_set_handler(VEC_VIRTIO, virtio_irq);
	return virtio_init_queues(v, want, &q, &qsize, &vector, 1, -1);
}

void virtio_notify(struct virtq_g *q, uint16_t n)
{
	w16(q->notify_addr, n);
}

/*
 * Read through the PCI-configuration-access capability: point its window
 * (bar, offset, length) at the device configuration and read the data.
 */
uint32_t virtio_cfg_window_read(struct vdev *v, unsigned int bar, uint32_t off)
{
	uint32_t dw = pci_cfg_read32(v->devfn, v->cfg_cap + 4);

	pci_cfg_write32(v->devfn, v->cfg_cap + 4, (dw & ~0xFFu) | bar);
	pci_cfg_write32(v->devfn, v->cfg_cap + 8, off);
	pci_cfg_write32(v->devfn, v->cfg_cap + 12, 4);
	return pci_cfg_read32(v->devfn, v->cfg_cap + 16);
}

uint8_t virtio_status(struct vdev *v)
{
	return r8(COMMON(v, device_status));
}

void virtio_config_read(struct vdev *v, unsigned int off, void *out, unsigned int len)
{
	for (unsigned int i = 0; i < len; i++)
		((uint8_t *)out)[i] = r8(v->device + off + i);
}

/* Put the chains given as heads in the avail ring and notify once. */
void virtio_kick(struct vdev *v, const uint16_t *heads, unsigned int n)
{
	struct virtq_g *q = &v->q;
	uint16_t idx = q->avail->idx;

	for (unsigned int i = 0; i < n; i++)
		q->avail->ring[(uint16_t)(idx + i) % q->size] = heads[i];
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	q->avail->idx = (uint16_t)(idx + n);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	w16(q->notify_addr, 0);
}

int virtio_wait(struct vdev *v, unsigned int n, uint64_t timeout_us)
{
	struct virtq_g *q = &v->q;
	uint16_t want = (uint16_t)(q->last_used + n);
	uint64_t deadline = uptime_us() + timeout_us;

	/* With EVENT_IDX, ask for an interrupt when the last one is used. */
	*(volatile uint16_t *)&q->avail->ring[q->size] = (uint16_t)(want - 1);
	__asm__ volatile("sti");
	while (*(volatile uint16_t *)&q->used->idx != want && uptime_us() < deadline)
		__asm__ volatile("pause");
	__asm__ volatile("cli");
	if (*(volatile uint16_t *)&q->used->idx != want)
		return -1;
	q->last_used = want;
	return 0;
}

uint32_t virtio_used_len(struct vdev *v, uint16_t slot)
{
	return v->q.used->ring[slot % v->q.size].len;
}
