// SPDX-License-Identifier: MIT
/*
 * Port I/O and MMIO dispatch by address range, in one place.  Ranges are
 * kept sorted and disjoint; lookups take a read lock, so devices can map
 * and unmap (PCI BARs move) while vCPUs run.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/internal.h"

void bus_init(struct io_bus *bus, const char *name)
{
	memset(bus, 0, sizeof(*bus));
	pthread_rwlock_init(&bus->lock, NULL);
	bus->name = name;
}

void bus_destroy(struct io_bus *bus)
{
	free(bus->ranges);
	pthread_rwlock_destroy(&bus->lock);
}

int bus_register(struct io_bus *bus, uint64_t base, uint64_t len, io_fn fn,
		 void *opaque, const char *name)
{
	struct io_range *r;
	size_t pos = 0;
	int ret = 0;

	if (!len || base + len < base)
		return -EINVAL;
	pthread_rwlock_wrlock(&bus->lock);
	while (pos < bus->n && bus->ranges[pos].base < base)
		pos++;
	if ((pos > 0 && bus->ranges[pos - 1].base + bus->ranges[pos - 1].len > base) ||
	    (pos < bus->n && base + len > bus->ranges[pos].base)) {
		ret = -EEXIST;
		goto out;
	}
	r = realloc(bus->ranges, sizeof(*r) * (bus->n + 1));
	if (!r) {
		ret = -ENOMEM;
		goto out;
	}
	bus->ranges = r;
	memmove(&r[pos + 1], &r[pos], sizeof(*r) * (bus->n - pos));
	r[pos] = (struct io_range){ base, len, fn, opaque, name };
	bus->n++;
out:
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

int bus_unregister(struct io_bus *bus, uint64_t base, void *opaque)
{
	int ret = -ENOENT;

	pthread_rwlock_wrlock(&bus->lock);
	for (size_t i = 0; i < bus->n; i++) {
		if (bus->ranges[i].base == base && bus->ranges[i].opaque == opaque) {
			memmove(&bus->ranges[i], &bus->ranges[i + 1],
				sizeof(bus->ranges[0]) * (bus->n - i - 1));
			bus->n--;
			ret = 0;
			break;
		}
	}
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

bool bus_dispatch(struct io_bus *bus, uint64_t addr, uint8_t *data,
		  unsigned int len, bool write)
{
	size_t lo = 0, hi;
	bool found = false;

	pthread_rwlock_rdlock(&bus->lock);
	hi = bus->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const struct io_range *r = &bus->ranges[mid];

		if (addr < r->base) {
			hi = mid;
		} else if (addr - r->base >= r->len) {
			lo = mid + 1;
		} else {
			/* An access must fit inside the range it starts in. */
			if (len <= r->len - (addr - r->base)) {
				r->fn(r->opaque, addr - r->base, data, len, write);
				found = true;
			}
			break;
		}
	}
	pthread_rwlock_unlock(&bus->lock);
	if (!found) {
		atomic_fetch_add(&bus->unclaimed, 1);
		if (!write)
			memset(data, 0xff, len);
	}
	return found;
}
