// SPDX-License-Identifier: MIT
/*
 * Interrupts from devices that run outside the vCPU threads: each MSI-X
 * vector is a GSI with an irqfd, so the device thread injects by writing
 * an eventfd.  KVM_SET_GSI_ROUTING replaces the whole table, so we keep
 * KVM's default irqchip routes (GSI 0-15 on the PICs and the IOAPIC,
 * 16-23 on the IOAPIC) and add ours after them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm/internal.h"

#define FIRST_MSI_GSI 24

static int commit_routes(struct vm *vm)
{
	unsigned int n = 16 * 2 + 8 + vm->nroutes, k = 0;
	struct kvm_irq_routing *r = calloc(1, sizeof(*r) + n * sizeof(r->entries[0]));
	int ret;

	if (!r)
		return -ENOMEM;
	for (uint32_t gsi = 0; gsi < FIRST_MSI_GSI; gsi++) {
		r->entries[k].gsi = gsi;
		r->entries[k].type = KVM_IRQ_ROUTING_IRQCHIP;
		r->entries[k].u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
		r->entries[k++].u.irqchip.pin = gsi;
		if (gsi < 16) {
			r->entries[k].gsi = gsi;
			r->entries[k].type = KVM_IRQ_ROUTING_IRQCHIP;
			r->entries[k].u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER :
								    KVM_IRQCHIP_PIC_SLAVE;
			r->entries[k++].u.irqchip.pin = gsi % 8;
		}
	}
	for (unsigned int i = 0; i < vm->nroutes; i++) {
		const struct msi_route *m = &vm->routes[i];

		if (!m->valid)
			continue;
		r->entries[k].gsi = m->gsi;
		r->entries[k].type = KVM_IRQ_ROUTING_MSI;
		r->entries[k].u.msi.address_lo = (uint32_t)m->addr;
		r->entries[k].u.msi.address_hi = (uint32_t)(m->addr >> 32);
		r->entries[k++].u.msi.data = m->data;
	}
	r->nr = k;
	ret = ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, r) < 0 ? -errno : 0;
	free(r);
	return ret;
}

int vm_msi_alloc(struct vm *vm, uint32_t *gsi, int *efd)
{
	struct kvm_irqfd irqfd = { 0 };
	struct msi_route *routes;
	int fd, ret = 0;

	fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	pthread_mutex_lock(&vm->route_lock);
	routes = realloc(vm->routes, sizeof(*routes) * (vm->nroutes + 1));
	if (!routes) {
		ret = -ENOMEM;
		goto out;
	}
	vm->routes = routes;
	if (vm->next_gsi < FIRST_MSI_GSI)
		vm->next_gsi = FIRST_MSI_GSI;
	routes[vm->nroutes] = (struct msi_route){ .gsi = vm->next_gsi };
	irqfd.fd = (uint32_t)fd;
	irqfd.gsi = vm->next_gsi;
	if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0) {
		ret = -errno;
		goto out;
	}
	*gsi = vm->next_gsi++;
	*efd = fd;
	vm->nroutes++;
out:
	pthread_mutex_unlock(&vm->route_lock);
	if (ret)
		close(fd);
	return ret;
}

int vm_msi_route(struct vm *vm, uint32_t gsi, uint64_t addr, uint32_t data,
		 bool valid)
{
	int ret = -ENOENT;

	pthread_mutex_lock(&vm->route_lock);
	for (unsigned int i = 0; i < vm->nroutes; i++) {
		struct msi_route *m = &vm->routes[i];

		if (m->gsi != gsi)
			continue;
		if (m->valid == valid && (!valid || (m->addr == addr && m->data == data))) {
			ret = 0;	/* nothing changed: no ioctl */
			break;
		}
		m->addr = addr;
		m->data = data;
		m->valid = valid;
		ret = commit_routes(vm);
		break;
	}
	pthread_mutex_unlock(&vm->route_lock);
	return ret;
}

void vm_msi_free(struct vm *vm, uint32_t gsi, int efd)
{
	struct kvm_irqfd irqfd = { .fd = (uint32_t)efd, .gsi = gsi,
				   .flags = KVM_IRQFD_FLAG_DEASSIGN };

	ioctl(vm->vm_fd, KVM_IRQFD, &irqfd);
	close(efd);
	pthread_mutex_lock(&vm->route_lock);
	for (unsigned int i = 0; i < vm->nroutes; i++) {
		if (vm->routes[i].gsi == gsi) {
			vm->routes[i] = vm->routes[--vm->nroutes];
			break;
		}
	}
	pthread_mutex_unlock(&vm->route_lock);
}

int vm_ioeventfd(struct vm *vm, uint64_t addr, unsigned int len, int fd,
		 bool assign)
{
	struct kvm_ioeventfd io = {
		.addr = addr,
		.len = len,
		.fd = fd,
		.flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};

	return ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

int vm_add_device(struct vm *vm, void (*reset)(void *), void (*destroy)(void *),
		  json_t *(*stats)(void *), void *opaque)
{
	struct vm_device *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->reset = reset;
	d->destroy = destroy;
	d->stats = stats;
	d->opaque = opaque;
	d->next = vm->devices;
	vm->devices = d;
	return 0;
}

void vm_device_quiesce(struct vm *vm, void (*fn)(void *opaque, bool on))
{
	if (vm->devices)
		vm->devices->quiesce = fn;
}
