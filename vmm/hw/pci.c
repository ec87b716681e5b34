// SPDX-License-Identifier: MIT
/*
 * PCI: a host bridge at 00:00.0, configuration mechanism 1 (ports 0xCF8
 * and 0xCFC-0xCFF), and a registry of devices on bus 0.  We assign BAR
 * addresses when a device is added, as firmware would, and (re)map a BAR
 * on the I/O or MMIO bus whenever the guest moves it or turns decoding on
 * or off.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/checkpoint.h"
#include "vmm/internal.h"

#define CFG_ADDR_PORT 0xCF8
#define CFG_DATA_PORT 0xCFC

#define PCI_VENDOR 0x00
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION 0x08
#define PCI_CLASS 0x09
#define PCI_HEADER_TYPE 0x0E
#define PCI_BAR0 0x10
#define PCI_CAP_PTR 0x34
#define PCI_INT_LINE 0x3C

#define CMD_IO 0x1
#define CMD_MEM 0x2
#define STATUS_CAP_LIST 0x10

#define IO_WINDOW 0xC000
#define IO_WINDOW_END 0x10000

struct pci_bus {
	struct vm *vm;
	pthread_mutex_t lock;
	uint32_t addr;
	struct pci_device *slot[32];
	struct pci_device host;
	uint64_t mmio_next;
	uint64_t io_next;
};

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void wr32(uint8_t *p, uint32_t v)
{
	wr16(p, (uint16_t)v);
	wr16(p + 2, (uint16_t)(v >> 16));
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

void pci_set_id(struct pci_device *dev, uint16_t vendor, uint16_t device,
		uint32_t class_code, uint8_t revision)
{
	wr16(dev->cfg + PCI_VENDOR, vendor);
	wr16(dev->cfg + PCI_VENDOR + 2, device);
	dev->cfg[PCI_REVISION] = revision;
	dev->cfg[PCI_CLASS] = (uint8_t)class_code;		/* prog-if */
	dev->cfg[PCI_CLASS + 1] = (uint8_t)(class_code >> 8);	/* subclass */
	dev->cfg[PCI_CLASS + 2] = (uint8_t)(class_code >> 16);	/* class */
	/* The guest may set: command bits, cache line, latency, IRQ line. */
	wr16(dev->wmask + PCI_COMMAND, 0x0407);
	dev->wmask[0x0C] = 0xFF;
	dev->wmask[0x0D] = 0xFF;
	dev->wmask[PCI_INT_LINE] = 0xFF;
}

void pci_set_bar(struct pci_device *dev, int n, enum pci_bar_type type,
		 uint64_t size, io_fn fn, void *opaque)
{
	struct pci_bar *b = &dev->bar[n];

	b->type = type;
	b->size = size;
	b->fn = fn;
	b->opaque = opaque;
}

int pci_add_capability(struct pci_device *dev, uint8_t id, unsigned int len)
{
	unsigned int at = dev->cap_next ? dev->cap_next : 0x40;

	if (len < 2 || at + len > PCI_CFG_SIZE)
		return -ENOSPC;
	dev->cfg[at] = id;
	dev->cfg[at + 1] = 0;			/* end of the list */
	if (dev->cap_last)
		dev->cfg[dev->cap_last + 1] = (uint8_t)at;
	else
		dev->cfg[PCI_CAP_PTR] = (uint8_t)at;
	dev->cap_last = at;
	dev->cap_next = (at + len + 3) & ~3u;
	dev->cfg[PCI_STATUS] |= STATUS_CAP_LIST;
	return (int)at;
}

/* ---- BAR mapping ----------------------------------------------------- */

static uint64_t bar_addr(const struct pci_device *dev, int n)
{
	const struct pci_bar *b = &dev->bar[n];
	uint64_t a = rd32(dev->cfg + PCI_BAR0 + 4 * n);

	if (b->type == PCI_BAR_IO)
		return a & ~0x3ULL;
	a &= ~0xFULL;
	if (b->type == PCI_BAR_MEM64)
		a |= (uint64_t)rd32(dev->cfg + PCI_BAR0 + 4 * (n + 1)) << 32;
	return a;
}

/* Map each BAR where its register and the command register say. */
static void remap_bars(struct pci_bus *pci, struct pci_device *dev)
{
	uint16_t cmd = (uint16_t)(dev->cfg[PCI_COMMAND] | dev->cfg[PCI_COMMAND + 1] << 8);

	for (int n = 0; n < 6; n++) {
		struct pci_bar *b = &dev->bar[n];
		struct io_bus *bus = b->type == PCI_BAR_IO ? &pci->vm->pio : &pci->vm->mmio;
		bool enable = b->type == PCI_BAR_IO ? (cmd & CMD_IO) : (cmd & CMD_MEM);
		uint64_t addr;

		if (b->type == PCI_BAR_NONE)
			continue;
		addr = bar_addr(dev, n);
		/* A BAR being sized holds all ones: not a place to map. */
		if (addr == 0 || addr + b->size - 1 < addr ||
		    (b->type == PCI_BAR_IO && addr + b->size > IO_WINDOW_END))
			enable = false;
		if (b->mapped && (!enable || addr != b->addr)) {
			bus_unregister(bus, b->addr, b->opaque);
			b->mapped = false;
			if (dev->bar_moved)
				dev->bar_moved(dev, n, b->addr, false);
		}
		if (enable && !b->mapped) {
			if (bus_register(bus, addr, b->size, b->fn, b->opaque,
					 dev->name) == 0) {
				b->addr = addr;
				b->mapped = true;
				if (dev->bar_moved)
					dev->bar_moved(dev, n, addr, true);
			} else {
				log_warn("pci %s: BAR%d at 0x%llx overlaps another device; not mapped",
					 dev->name, n, (unsigned long long)addr);
			}
		}
		if (b->type == PCI_BAR_MEM64)
			n++;
	}
}

/* ---- configuration space access ---------------------------------------- */

static struct pci_device *target(struct pci_bus *pci, unsigned int *reg)
{
	uint32_t a = pci->addr;

	if (!(a & 0x80000000u) || ((a >> 16) & 0xFF) != 0 || ((a >> 8) & 7) != 0)
		return NULL;
	*reg = a & 0xFC;
	return pci->slot[(a >> 11) & 31];
}

static void cfg_access(struct pci_bus *pci, unsigned int off, uint8_t *data,
		       unsigned int len, bool write)
{
	unsigned int reg;
	struct pci_device *dev = target(pci, &reg);

	reg += off;
	if (!dev || reg + len > PCI_CFG_SIZE) {
		if (!write)
			memset(data, 0xff, len);
		return;
	}
	if (!write) {
		if (dev->cfg_read)
			dev->cfg_read(dev, reg, len);
		memcpy(data, dev->cfg + reg, len);
		return;
	}
	for (unsigned int i = 0; i < len; i++) {
		uint8_t m = dev->wmask[reg + i];

		dev->cfg[reg + i] = (uint8_t)((dev->cfg[reg + i] & ~m) | (data[i] & m));
	}
	if ((reg < PCI_BAR0 + 24 && reg + len > PCI_BAR0) ||
	    (reg <= PCI_COMMAND && reg + len > PCI_COMMAND))
		remap_bars(pci, dev);
	if (dev->cfg_written)
		dev->cfg_written(dev, reg, len);
}

static void pci_cfg_io(void *opaque, uint64_t off, uint8_t *data,
		       unsigned int len, bool write)
{
	struct pci_bus *pci = opaque;

	pthread_mutex_lock(&pci->lock);
	if (off < 4) {
		/* The address register takes whole dwords only. */
		if (off == 0 && len == 4) {
			if (write)
				pci->addr = rd32(data);
			else
				wr32(data, pci->addr);
		} else if (!write) {
			memset(data, 0xff, len);
		}
	} else {
		cfg_access(pci, (unsigned int)(off - 4), data, len, write);
	}
	pthread_mutex_unlock(&pci->lock);
}

/* ---- the registry ------------------------------------------------------ */

static int assign_bars(struct pci_bus *pci, struct pci_device *dev)
{
	for (int n = 0; n < 6; n++) {
		struct pci_bar *b = &dev->bar[n];
		uint64_t addr, *next;
		uint32_t lowbits;

		if (b->type == PCI_BAR_NONE)
			continue;
		if (b->size & (b->size - 1) || b->size < (b->type == PCI_BAR_IO ? 4 : 16) ||
		    (b->type == PCI_BAR_MEM64 && n == 5))
			return -EINVAL;
		next = b->type == PCI_BAR_IO ? &pci->io_next : &pci->mmio_next;
		addr = (*next + b->size - 1) & ~(b->size - 1);
		if (addr + b->size > (b->type == PCI_BAR_IO ? IO_WINDOW_END : GPA_PCI_MMIO_END))
			return -ENOSPC;
		*next = addr + b->size;
		lowbits = b->type == PCI_BAR_IO ? 0x1 : b->type == PCI_BAR_MEM64 ? 0x4 : 0x0;
		wr32(dev->cfg + PCI_BAR0 + 4 * n, (uint32_t)addr | lowbits);
		/* Writable bits: the address bits above the size. */
		wr32(dev->wmask + PCI_BAR0 + 4 * n,
		     (uint32_t)~(b->size - 1) & (b->type == PCI_BAR_IO ? ~0x3u : ~0xFu));
		if (b->type == PCI_BAR_MEM64) {
			wr32(dev->cfg + PCI_BAR0 + 4 * (n + 1), (uint32_t)(addr >> 32));
			wr32(dev->wmask + PCI_BAR0 + 4 * (n + 1), 0xFFFFFFFF);
			n++;
		}
	}
	return 0;
}

int pci_add(struct pci_bus *pci, struct pci_device *dev)
{
	int slot, ret;

	pthread_mutex_lock(&pci->lock);
	for (slot = 1; slot < 32 && pci->slot[slot]; slot++)
		;
	if (slot == 32) {
		pthread_mutex_unlock(&pci->lock);
		return -ENOSPC;
	}
	ret = assign_bars(pci, dev);
	if (ret) {
		pthread_mutex_unlock(&pci->lock);
		return ret;
	}
	dev->devfn = (unsigned int)slot << 3;
	dev->bus = pci;
	/* Decoding on, as firmware leaves it. */
	dev->cfg[PCI_COMMAND] |= CMD_IO | CMD_MEM;
	pci->slot[slot] = dev;
	remap_bars(pci, dev);
	pthread_mutex_unlock(&pci->lock);
	return 0;
}

void pci_reset_devices(struct pci_bus *pci)
{
	/* Reset leaves addresses as firmware set them; decoding stays on. */
	pthread_mutex_lock(&pci->lock);
	pci->addr = 0;
	pthread_mutex_unlock(&pci->lock);
}

struct pci_bus *pci_create(struct vm *vm)
{
	struct pci_bus *pci = calloc(1, sizeof(*pci));

	if (!pci)
		return NULL;
	pci->vm = vm;
	pci->mmio_next = GPA_PCI_MMIO;
	pci->io_next = IO_WINDOW;
	pthread_mutex_init(&pci->lock, NULL);
	/* A generic host bridge (Red Hat's PCIe host bridge id). */
	pci_set_id(&pci->host, 0x1b36, 0x0008, 0x060000, 0);
	pci->host.name = "host-bridge";
	pci->host.bus = pci;
	pci->slot[0] = &pci->host;
	if (bus_register(&vm->pio, CFG_ADDR_PORT, 8, pci_cfg_io, pci, "pci-config")) {
		free(pci);
		return NULL;
	}
	return pci;
}

void pci_destroy(struct pci_bus *pci)
{
	if (!pci)
		return;
	bus_unregister(&pci->vm->pio, CFG_ADDR_PORT, pci);
	pthread_mutex_destroy(&pci->lock);
	free(pci);
}

/* ---- saved state --------------------------------------------------------- */

enum { P_ADDR = 1 };
enum { F_CFG = 1 };	/* a function's records; its own start at 100 */

int pci_save(struct pci_bus *pci, struct ss_writer *w)
{
	struct ss_section *s = ss_section_begin(w, "dev:pci", 1);
	int ret;

	pthread_mutex_lock(&pci->lock);
	ss_put_u32(s, P_ADDR, pci->addr);
	ret = ss_section_end(s);
	for (unsigned int slot = 0; !ret && slot < 32; slot++) {
		struct pci_device *dev = pci->slot[slot];
		char tag[16];

		if (!dev)
			continue;
		snprintf(tag, sizeof(tag), "pci:%02x", slot << 3);
		s = ss_section_begin(w, tag, 1);
		ss_put(s, F_CFG, dev->cfg, PCI_CFG_SIZE);
		if (dev->save)
			dev->save(dev, s);
		ret = ss_section_end(s);
	}
	pthread_mutex_unlock(&pci->lock);
	return ret;
}

/* The identity a function must have in both: ids, class, header type. */
static bool same_function(const uint8_t *a, const uint8_t *b)
{
	return memcmp(a, b, 4) == 0 && memcmp(a + 0x08, b + 0x08, 4) == 0 &&
	       a[0x0E] == b[0x0E];
}

int pci_restore(struct pci_bus *pci, struct ss_reader *r, char *err, size_t errlen)
{
	struct ss_rsection *s = ss_section(r, "dev:pci", NULL);
	uint8_t cfg[PCI_CFG_SIZE];
	uint32_t addr;
	int ret = 0;

	if (!s || ss_get_u32(s, P_ADDR, &addr))
		return vmm_fail(err, errlen, "section dev:pci is missing or incomplete");
	pthread_mutex_lock(&pci->lock);
	pci->addr = addr;
	for (unsigned int slot = 0; !ret && slot < 32; slot++) {
		struct pci_device *dev = pci->slot[slot];
		char tag[16];

		if (!dev)
			continue;
		snprintf(tag, sizeof(tag), "pci:%02x", slot << 3);
		s = ss_section(r, tag, NULL);
		if (!s || ss_get(s, F_CFG, cfg, sizeof(cfg))) {
			ret = vmm_fail(err, errlen, "section %s (%s) is missing or incomplete", tag,
				       dev->name);
			break;
		}
		if (!same_function(cfg, dev->cfg)) {
			ret = vmm_fail(err, errlen,
				       "section %s holds another kind of device than this configuration's %s",
				       tag, dev->name);
			break;
		}
		/* Only what the guest could have written differs from ours. */
		for (unsigned int i = 0; i < PCI_CFG_SIZE; i++)
			dev->cfg[i] = (uint8_t)((dev->cfg[i] & ~dev->wmask[i]) | (cfg[i] & dev->wmask[i]));
		remap_bars(pci, dev);
		/* Not cfg_written: that would replay the guest's last write. */
		if (dev->restore)
			ret = dev->restore(dev, s, err, errlen);
	}
	pthread_mutex_unlock(&pci->lock);
	return ret;
}
