// SPDX-License-Identifier: MIT
/*
 * A VM: the KVM VM and its vCPUs, guest RAM, the buses and base devices,
 * and the run control (start, pause, resume, stop, reset) shared by the
 * vCPU threads and the worker's event loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/internal.h"
#include "vmm/state/state.h"
#include "vmm/virtio/virtio.h"

void vm_post_event(struct vm *vm, enum vm_event ev, const char *fmt, ...)
{
	uint64_t one = 1;
	va_list ap;

	pthread_mutex_lock(&vm->lock);
	/* The first event wins: a failure is not hidden by what follows. */
	if (vm->event == VMEV_NONE) {
		vm->event = ev;
		va_start(ap, fmt);
		vsnprintf(vm->error, sizeof(vm->error), fmt, ap);
		va_end(ap);
	}
	/* No vCPU runs guest code again until the event loop decides. */
	if (vm->request == REQ_NONE) {
		vm->request = REQ_PAUSE;
		for (unsigned int i = 0; i < vm->ncpus; i++)
			vcpu_kick(&vm->vcpus[i]);
	}
	pthread_mutex_unlock(&vm->lock);
	if (write(vm->event_fd, &one, sizeof(one)) < 0)
		return;
}

enum vm_event vm_take_event(struct vm *vm, char *msg, size_t len)
{
	enum vm_event ev;
	uint64_t discard;

	if (read(vm->event_fd, &discard, sizeof(discard)) < 0)
		discard = 0;
	pthread_mutex_lock(&vm->lock);
	ev = vm->event;
	if (msg)
		snprintf(msg, len, "%s", vm->error);
	vm->event = VMEV_NONE;
	pthread_mutex_unlock(&vm->lock);
	return ev;
}

int vm_irq_line(struct vm *vm, int gsi, int level)
{
	struct kvm_irq_level l = { .irq = (uint32_t)gsi, .level = (uint32_t)level };

	return ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0 ? -errno : 0;
}

static int read_initrd(struct vm *vm, const char *path, char *err, size_t errlen)
{
	struct stat st;
	size_t done = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "initrd %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	vm->initrd_size = (size_t)st.st_size;
	vm->initrd = malloc(vm->initrd_size ? vm->initrd_size : 1);
	while (vm->initrd && done < vm->initrd_size) {
		ssize_t n = read(fd, vm->initrd + done, vm->initrd_size - done);

		if (n <= 0)
			break;
		done += (size_t)n;
	}
	close(fd);
	if (!vm->initrd || done < vm->initrd_size) {
		snprintf(err, errlen, "initrd %s: read failed", path);
		return -EIO;
	}
	return 0;
}

static int create_kvm_vm(struct vm *vm, char *err, size_t errlen)
{
	uint64_t idmap = GPA_IDENTITY_MAP;
	struct kvm_pit_config pit = { .flags = 0 };
	int max;

	max = kvm_max_vcpus(vm->kvm_fd);
	if ((int)vm->ncpus > max) {
		snprintf(err, errlen, "cpus %u is more than KVM allows here (%d)",
			 vm->ncpus, max);
		return -EINVAL;
	}
	do {
		vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	} while (vm->vm_fd < 0 && errno == EINTR);
	if (vm->vm_fd < 0) {
		snprintf(err, errlen, "KVM_CREATE_VM: %s", strerror(errno));
		return -errno;
	}
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size <= 0 ||
	    ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)GPA_TSS) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0 ||
	    ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0 ||
	    ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		snprintf(err, errlen, "setting up the KVM VM: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

static int save_irqchip(struct vm *vm)
{
	for (int i = 0; i < 2; i++) {
		vm->pic0[i].chip_id = (uint32_t)i;
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &vm->pic0[i]) < 0)
			return -errno;
	}
	vm->ioapic0.chip_id = KVM_IRQCHIP_IOAPIC;
	if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &vm->ioapic0) < 0 ||
	    ioctl(vm->vm_fd, KVM_GET_PIT2, &vm->pit0) < 0)
		return -errno;
	return 0;
}

static int restore_irqchip(struct vm *vm)
{
	for (int i = 0; i < 2; i++)
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &vm->pic0[i]) < 0)
			return -errno;
	if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &vm->ioapic0) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_PIT2, &vm->pit0) < 0)
		return -errno;
	return 0;
}

static int create_devices(struct vm *vm, char *err, size_t errlen)
{
	vm->console = console_create();
	if (!vm->console)
		goto fail;
	vm->com1 = serial_create(vm, COM1_PORT, COM1_IRQ, vm->console);
	vm->cmos = cmos_create(vm);
	vm->kbd = i8042_create(vm);
	vm->pm = pm_create(vm);
	vm->pci = pci_create(vm);
	if (!vm->com1 || !vm->cmos || !vm->kbd || !vm->pm || !vm->pci)
		goto fail;
	/* In the order vm_config_pci_functions() describes (saved states rely on it). */
	for (unsigned int i = 0; i < vm->cfg->ndisks; i++) {
		int ret = virtio_blk_attach(vm, &vm->cfg->disks[i], err, errlen);

		if (ret)
			return ret;
	}
	/* NICs take the slots after the disks. */
	for (unsigned int i = 0; i < vm->cfg->nnics; i++) {
		int ret = virtio_net_attach(vm, &vm->cfg->nics[i], i, err, errlen);

		if (ret)
			return ret;
	}
	/* The vsock device comes last. */
	if (vm->cfg->vsock.cid)
		return virtio_vsock_attach(vm, &vm->cfg->vsock, vm->vsock_dir, err, errlen);
	return 0;
fail:
	snprintf(err, errlen, "cannot create the base devices");
	return -ENOMEM;
}

/* The kernel and initrd, read when a boot needs them (not for a restore). */
static int load_boot_files(struct vm *vm, char *err, size_t errlen)
{
	int ret = 0;

	if (vm->kernel.data)
		return 0;
	ret = kernel_load(vm->cfg->kernel, &vm->kernel, err, errlen);
	if (!ret && vm->cfg->initrd && !vm->initrd)
		ret = read_initrd(vm, vm->cfg->initrd, err, errlen);
	return ret;
}

/* The VM, its RAM, devices and vCPUs; booted, or to be restored from @r. */
static int vm_build(const struct vm_config *cfg, const char *vsock_dir, struct ss_reader *r,
		    struct vm **out, char *err, size_t errlen)
{
	struct boot_state bs;
	struct vm *vm = calloc(1, sizeof(*vm));
	int ret;

	if (!vm)
		return -ENOMEM;
	vm->cfg = cfg;
	vm->vsock_dir = vsock_dir ? vsock_dir : ".";
	vm->ncpus = cfg->cpus;
	vm->kvm_fd = vm->vm_fd = vm->event_fd = -1;
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	pthread_mutex_init(&vm->route_lock, NULL);
	vm->started_ns = now_ns();
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	vm->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->event_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}

	ret = r ? 0 : load_boot_files(vm, err, errlen);
	if (!ret)
		ret = kvm_open(&vm->kvm_fd, err, errlen);
	if (!ret)
		ret = create_kvm_vm(vm, err, errlen);
	if (!ret)
		ret = mem_create(&vm->mem, cfg->memory, err, errlen);
	if (!ret && (ret = mem_register(&vm->mem, vm->vm_fd)))
		snprintf(err, errlen, "KVM_SET_USER_MEMORY_REGION: %s", strerror(-ret));
	if (!ret && (ret = save_irqchip(vm)))
		snprintf(err, errlen, "saving the irqchip state: %s", strerror(-ret));
	if (!ret)
		ret = state_msr_list(vm, err, errlen);
	if (!ret)
		ret = create_devices(vm, err, errlen);
	if (ret)
		goto fail;

	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		ret = -ENOMEM;
		goto fail;
	}
	if (r) {
		vm->restore_cpuid = calloc(vm->ncpus, sizeof(*vm->restore_cpuid));
		for (unsigned int i = 0; vm->restore_cpuid && i < vm->ncpus; i++)
			vm->restore_cpuid[i] = state_vcpu_cpuid(r, i);
		for (unsigned int i = 0; vm->restore_cpuid && i < vm->ncpus; i++)
			if (!vm->restore_cpuid[i])
				ret = -ENOMEM;
		if (!vm->restore_cpuid || ret) {
			ret = -ENOMEM;
			goto fail;
		}
	}
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		ret = vcpu_create(vm, &vm->vcpus[i], i, err, errlen);
		if (ret)
			goto fail;
	}
	if (r) {
		ret = vm_restore_state(vm, r, err, errlen);
		if (ret)
			goto fail;
		*out = vm;
		return 0;
	}
	ret = boot_prepare(vm, &bs, err, errlen);
	if (ret)
		goto fail;
	ret = boot_set_regs(vm->vcpus[0].fd, &bs);
	if (ret) {
		snprintf(err, errlen, "setting the boot registers: %s", strerror(-ret));
		goto fail;
	}
	*out = vm;
	return 0;
fail:
	vm_destroy(vm);
	return ret;
}

int vm_create(const struct vm_config *cfg, const char *vsock_dir, struct vm **out,
	      char *err, size_t errlen)
{
	return vm_build(cfg, vsock_dir, NULL, out, err, errlen);
}

int vm_create_restored(const struct vm_config *cfg, const char *vsock_dir,
		       struct ss_reader *r, struct vm **out, char *err, size_t errlen)
{
	return vm_build(cfg, vsock_dir, r, out, err, errlen);
}

int vm_start(struct vm *vm, char *err, size_t errlen)
{
	vm->request = REQ_NONE;
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		int ret = pthread_create(&v->thread, NULL, vcpu_thread, v);

		if (ret) {
			snprintf(err, errlen, "cannot start vCPU %u: %s", i, strerror(ret));
			vm_stop(vm);
			return -ret;
		}
		v->started = true;
	}
	return 0;
}

static bool all_parked(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->ncpus; i++)
		if (vm->vcpus[i].started && !vm->vcpus[i].parked)
			return false;
	return true;
}

void vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->request == REQ_NONE)
		vm->request = REQ_PAUSE;
	for (unsigned int i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	while (!all_parked(vm))
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
}

static bool all_settled(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (v->started && (!v->parked || v->settled != vm->settle_gen))
			return false;
	}
	return true;
}

void vm_pause_settled(struct vm *vm)
{
	/* Parked vCPUs too may sit after an I/O exit: each settles once, paused. */
	pthread_mutex_lock(&vm->lock);
	vm->settle_gen++;
	if (vm->request == REQ_NONE)
		vm->request = REQ_PAUSE;
	for (unsigned int i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	pthread_cond_broadcast(&vm->cond);
	while (!all_settled(vm))
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->request == REQ_PAUSE)
		vm->request = REQ_NONE;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

void vm_stop(struct vm *vm)
{
	if (!vm->vcpus)
		return;
	pthread_mutex_lock(&vm->lock);
	vm->request = REQ_STOP;
	for (unsigned int i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		if (vm->vcpus[i].started) {
			pthread_join(vm->vcpus[i].thread, NULL);
			vm->vcpus[i].started = false;
		}
	}
}

int vm_reset(struct vm *vm, char *err, size_t errlen)
{
	struct boot_state bs;
	int ret;

	vm_pause(vm);
	/* A restored VM boots a kernel now, for the first time. */
	ret = load_boot_files(vm, err, errlen);
	if (ret)
		return ret;
	/*
	 * Devices first: their I/O threads may still write guest memory (a
	 * frame arriving, a read completing) until their reset returns, and
	 * that must not land in the RAM laid out for the new boot.
	 */
	serial_reset(vm->com1);
	pci_reset_devices(vm->pci);
	for (struct vm_device *d = vm->devices; d; d = d->next)
		if (d->reset)
			d->reset(d->opaque);
	/* RAM still coming from a saved state: it is all zero now instead. */
	state_memory_finish(vm, true);
	mem_clear(&vm->mem);
	ret = restore_irqchip(vm);
	if (ret) {
		snprintf(err, errlen, "resetting the irqchip: %s", strerror(-ret));
		return ret;
	}
	ret = boot_prepare(vm, &bs, err, errlen);
	if (ret)
		return ret;
	for (unsigned int i = 0; i < vm->ncpus; i++) {
		ret = vcpu_reset(&vm->vcpus[i], &bs);
		if (ret) {
			snprintf(err, errlen, "resetting vCPU %u: %s", i, strerror(-ret));
			return ret;
		}
	}
	vm->resets++;
	if (!vm->paused)
		vm_resume(vm);
	return 0;
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	vm_stop(vm);
	while (vm->devices) {
		struct vm_device *d = vm->devices;

		vm->devices = d->next;
		if (d->destroy)
			d->destroy(d->opaque);
		free(d);
	}
	/* After the devices: their threads may still wait on RAM being loaded. */
	state_memory_finish(vm, true);
	for (unsigned int i = 0; vm->vcpus && i < vm->ncpus; i++)
		vcpu_destroy(&vm->vcpus[i]);
	for (unsigned int i = 0; vm->restore_cpuid && i < vm->ncpus; i++)
		free(vm->restore_cpuid[i]);
	free(vm->restore_cpuid);
	free(vm->vcpus);
	free(vm->routes);
	pci_destroy(vm->pci);
	pm_destroy(vm->pm);
	i8042_destroy(vm->kbd);
	cmos_destroy(vm->cmos);
	serial_destroy(vm->com1);
	console_destroy(vm->console);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	mem_destroy(&vm->mem);
	kernel_free(&vm->kernel);
	free(vm->initrd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->event_fd >= 0)
		close(vm->event_fd);
	pthread_mutex_destroy(&vm->lock);
	pthread_mutex_destroy(&vm->route_lock);
	pthread_cond_destroy(&vm->cond);
	free(vm);
}
