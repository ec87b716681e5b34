// SPDX-License-Identifier: MIT
/*
 * Guest RAM: one memfd mapped shared (so it can be shared and saved),
 * split around the PCI hole: the first part below 3 GiB, the rest from
 * 4 GiB up.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/internal.h"

int mem_create(struct guest_mem *m, uint64_t size, char *err, size_t errlen)
{
	uint64_t low = size < GPA_PCI_HOLE ? size : GPA_PCI_HOLE;

	memset(m, 0, sizeof(*m));
	m->memfd = memfd_create("guest-ram", MFD_CLOEXEC);
	if (m->memfd < 0 || ftruncate(m->memfd, (off_t)size) < 0) {
		snprintf(err, errlen, "cannot create guest RAM: %s", strerror(errno));
		if (m->memfd >= 0)
			close(m->memfd);
		return -errno;
	}
	m->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
		       m->memfd, 0);
	if (m->base == MAP_FAILED) {
		snprintf(err, errlen, "cannot map %llu bytes of guest RAM: %s",
			 (unsigned long long)size, strerror(errno));
		close(m->memfd);
		return -errno;
	}
	/* Hugepages where the host offers them (transparent, best effort). */
	madvise(m->base, size, MADV_HUGEPAGE);
	m->size = size;
	m->region[0] = (struct guest_region){ 0, low, m->base };
	m->nregions = 1;
	if (size > low) {
		m->region[1] = (struct guest_region){ GPA_4G, size - low, m->base + low };
		m->nregions = 2;
	}
	return 0;
}

int mem_register(struct guest_mem *m, int vm_fd)
{
	for (int i = 0; i < m->nregions; i++) {
		struct kvm_userspace_memory_region r = {
			.slot = (uint32_t)i,
			.guest_phys_addr = m->region[i].gpa,
			.memory_size = m->region[i].size,
			.userspace_addr = (uint64_t)(uintptr_t)m->region[i].hva,
		};

		if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
			return -errno;
	}
	return 0;
}

void mem_destroy(struct guest_mem *m)
{
	if (m->base)
		munmap(m->base, m->size);
	if (m->memfd > 0)
		close(m->memfd);
	memset(m, 0, sizeof(*m));
}

int mem_clear(struct guest_mem *m)
{
	/* Punching a hole zeroes the range and returns the pages. */
	if (fallocate(m->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
		      (off_t)m->size) == 0)
		return 0;
	memset(m->base, 0, m->size);
	return 0;
}

void *gpa_to_hva(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	for (int i = 0; i < m->nregions; i++) {
		const struct guest_region *r = &m->region[i];

		if (gpa >= r->gpa && gpa - r->gpa <= r->size &&
		    len <= r->size - (gpa - r->gpa))
			return r->hva + (gpa - r->gpa);
	}
	return NULL;
}

int mem_e820(const struct guest_mem *m, struct e820_entry *out, int max)
{
	int n = 0;

	if (max < 5)
		return -EINVAL;
	/* Low RAM up to the EBDA; the BIOS area (with our ACPI tables). */
	out[n++] = (struct e820_entry){ 0, GPA_EBDA, E820_RAM };
	out[n++] = (struct e820_entry){ GPA_EBDA, GPA_KERNEL - GPA_EBDA,
					E820_RESERVED };
	out[n++] = (struct e820_entry){ GPA_KERNEL, m->region[0].size - GPA_KERNEL,
					E820_RAM };
	if (m->nregions > 1)
		out[n++] = (struct e820_entry){ GPA_4G, m->region[1].size, E820_RAM };
	return n;
}
