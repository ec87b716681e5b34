// SPDX-License-Identifier: MIT
/*
 * Capturing a VM, and building one back.
 *
 * Capture: every vCPU stops at an exit boundary (and completes a pending
 * I/O exit first, so no half-done instruction is left in KVM); the
 * devices quiesce (virtio-blk finishes and flushes what is in flight,
 * virtio-net hands back what it took from the guest's queues); then the
 * VM-wide KVM state, each vCPU, each device, and guest RAM; the manifest
 * last.  The VM stays paused: the caller resumes it or ends.
 *
 * Restore: everything in the saved state is checked before the VM is
 * made (the format by checkpoint/, every vCPU record's size, the host's
 * fingerprint, the configuration against the state); then the VM is
 * made from the saved configuration without booting anything, and the
 * state is applied in the order KVM needs.  A section nobody took is a
 * device this configuration lacks: refused.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "vmm/state/state.h"
#include "vmm/virtio/virtio.h"

enum {
	REC_PIT = 1,
	REC_CLOCK,
	REC_PIC_MASTER,
	REC_PIC_SLAVE,
	REC_IOAPIC,
};

/* ---- the host's fingerprint -------------------------------------------------- */

static void cpu_vendor(char *buf, size_t len)
{
	uint32_t a = 0, b, c, d;
	char v[13];

	__asm__ volatile("cpuid" : "+a"(a), "=b"(b), "=c"(c), "=d"(d));
	memcpy(v, &b, 4);
	memcpy(v + 4, &d, 4);
	memcpy(v + 8, &c, 4);
	v[12] = '\0';
	snprintf(buf, len, "%s", v);
}

static void fingerprint_common(struct ss_host *h)
{
	struct utsname u;

	cpu_vendor(h->cpu_vendor, sizeof(h->cpu_vendor));
	if (uname(&u) == 0)
		snprintf(h->kernel, sizeof(h->kernel), "%s", u.release);
}

static void copy_cpuid(struct ss_host *h, const struct kvm_cpuid2 *c)
{
	h->ncpuid = 0;
	for (uint32_t i = 0; i < c->nent && h->ncpuid < SS_CPUID_MAX; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];

		h->cpuid[h->ncpuid++] = (struct ss_cpuid){
			.function = e->function, .index = e->index, .flags = e->flags,
			.eax = e->eax, .ebx = e->ebx, .ecx = e->ecx, .edx = e->edx,
		};
	}
}

/* What the guest was given: vCPU 0's CPUID and TSC rate. */
int state_host_fingerprint(struct vm *vm, struct ss_host *h, char *err, size_t errlen)
{
	int khz = ioctl(vm->vcpus[0].fd, KVM_GET_TSC_KHZ, 0);

	memset(h, 0, sizeof(*h));
	fingerprint_common(h);
	if (khz <= 0)
		return vmm_fail(err, errlen, "KVM_GET_TSC_KHZ: %s", strerror(errno));
	h->tsc_khz = (uint32_t)khz;
	copy_cpuid(h, vm->vcpus[0].cpuid);
	return 0;
}

/*
 * What this host offers: the CPUID KVM supports, and the TSC rate a new
 * vCPU gets (from a VM made for the question and dropped).
 */
static int host_offers(struct ss_host *h, char *err, size_t errlen)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 256 * sizeof(c->entries[0]));
	int kvm_fd, vm_fd = -1, vcpu_fd = -1, khz = -1, ret = 0;

	memset(h, 0, sizeof(*h));
	fingerprint_common(h);
	if (!c)
		return -ENOMEM;
	ret = kvm_open(&kvm_fd, err, errlen);
	if (ret) {
		free(c);
		return ret;
	}
	c->nent = 256;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0)
		ret = vmm_fail(err, errlen, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
	if (!ret) {
		vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
		vcpu_fd = vm_fd >= 0 ? ioctl(vm_fd, KVM_CREATE_VCPU, 0) : -1;
		khz = vcpu_fd >= 0 ? ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0) : -1;
		if (khz <= 0)
			ret = vmm_fail(err, errlen, "cannot read this host's TSC rate: %s",
				       strerror(errno));
	}
	if (!ret) {
		h->tsc_khz = (uint32_t)khz;
		copy_cpuid(h, c);
	}
	if (vcpu_fd >= 0)
		close(vcpu_fd);
	if (vm_fd >= 0)
		close(vm_fd);
	close(kvm_fd);
	free(c);
	return ret;
}

/* ---- the VM-wide KVM state ------------------------------------------------------ */

static int save_vm_state(struct vm *vm, struct ss_writer *w, char *err, size_t errlen)
{
	struct kvm_irqchip chip[3] = { { .chip_id = KVM_IRQCHIP_PIC_MASTER },
				       { .chip_id = KVM_IRQCHIP_PIC_SLAVE },
				       { .chip_id = KVM_IRQCHIP_IOAPIC } };
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock = { 0 };
	struct ss_section *s;

	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0 ||
	    ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0)
		return vmm_fail(err, errlen, "KVM_GET_PIT2/KVM_GET_CLOCK: %s", strerror(errno));
	for (int i = 0; i < 3; i++)
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip[i]) < 0)
			return vmm_fail(err, errlen, "KVM_GET_IRQCHIP: %s", strerror(errno));
	s = ss_section_begin(w, "vm", STATE_VM_VERSION);
	ss_put(s, REC_PIT, &pit, sizeof(pit));
	ss_put(s, REC_CLOCK, &clock, sizeof(clock));
	ss_put(s, REC_PIC_MASTER, &chip[0], sizeof(chip[0]));
	ss_put(s, REC_PIC_SLAVE, &chip[1], sizeof(chip[1]));
	ss_put(s, REC_IOAPIC, &chip[2], sizeof(chip[2]));
	if (ss_section_end(s))
		return vmm_fail(err, errlen, "%s", ss_writer_error(w));
	return 0;
}

static int check_vm_state(struct ss_reader *r, char *err, size_t errlen)
{
	static const struct {
		uint32_t id;
		size_t size;
	} recs[] = {
		{ REC_PIT, sizeof(struct kvm_pit_state2) },
		{ REC_CLOCK, sizeof(struct kvm_clock_data) },
		{ REC_PIC_MASTER, sizeof(struct kvm_irqchip) },
		{ REC_PIC_SLAVE, sizeof(struct kvm_irqchip) },
		{ REC_IOAPIC, sizeof(struct kvm_irqchip) },
	};
	uint32_t version;
	struct ss_rsection *s = ss_section(r, "vm", &version);
	const void *p;
	size_t len;

	if (!s)
		return vmm_fail(err, errlen, "section vm is missing");
	if (version != STATE_VM_VERSION)
		return vmm_fail(err, errlen, "section vm has version %u; this fsvisor reads %u",
				version, STATE_VM_VERSION);
	for (size_t i = 0; i < ARRAY_SIZE(recs); i++)
		if (ss_get_var(s, recs[i].id, &p, &len) || len != recs[i].size)
			return vmm_fail(err, errlen, "section vm: record %u is missing or of the wrong size",
					recs[i].id);
	return 0;
}

static int restore_vm_state(struct vm *vm, struct ss_reader *r, char *err, size_t errlen)
{
	struct ss_rsection *s = ss_section(r, "vm", NULL);
	struct kvm_irqchip chip;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	static const uint32_t chips[] = { REC_PIC_MASTER, REC_PIC_SLAVE, REC_IOAPIC };

	for (size_t i = 0; i < ARRAY_SIZE(chips); i++) {
		ss_get(s, chips[i], &chip, sizeof(chip));
		if (chip.chip_id != (uint32_t)i)
			return vmm_fail(err, errlen, "section vm: irqchip %zu names chip %u", i,
					chip.chip_id);
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
			return vmm_fail(err, errlen, "KVM_SET_IRQCHIP refused the saved state: %s",
					strerror(errno));
	}
	ss_get(s, REC_PIT, &pit, sizeof(pit));
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0)
		return vmm_fail(err, errlen, "KVM_SET_PIT2 refused the saved state: %s",
				strerror(errno));
	/*
	 * The clock goes on from where it was by the host time since
	 * (KVM_CLOCK_REALTIME): a guest's kvmclock does not fall behind.
	 */
	ss_get(s, REC_CLOCK, &clock, sizeof(clock));
	clock.flags &= KVM_CLOCK_REALTIME;
	memset(clock.pad, 0, sizeof(clock.pad));
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0) {
		clock.flags = 0;	/* a host without the realtime flag */
		if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
			return vmm_fail(err, errlen, "KVM_SET_CLOCK refused the saved state: %s",
					strerror(errno));
	}
	return 0;
}

/* ---- capture ------------------------------------------------------------------ */

/*
 * Tests widen the window of a capture (FSVISOR_TEST_SAVE_STEP_US) to kill
 * a worker in the middle of one: a pause between its steps.
 */
static void test_step(void)
{
	static long us = -1;

	if (us < 0) {
		const char *v = getenv("FSVISOR_TEST_SAVE_STEP_US");

		us = v ? atol(v) : 0;
	}
	if (us > 0)
		usleep((useconds_t)us);
}

static void quiesce_devices(struct vm *vm, bool on)
{
	for (struct vm_device *d = vm->devices; d; d = d->next)
		if (d->quiesce)
			d->quiesce(d->opaque, on);
}

int vm_save_state(struct vm *vm, const char *dir, char *err, size_t errlen)
{
	struct ss_writer *w;
	struct ss_host host;
	json_t *config;
	int ret;

	/* A restored VM's RAM must be all in before it can be read whole. */
	state_memory_finish(vm, false);
	vm_pause_settled(vm);
	quiesce_devices(vm, true);
	ret = ss_create(dir, &w, err, errlen);
	if (ret)
		goto out;
	ret = state_host_fingerprint(vm, &host, err, errlen);
	if (!ret)
		ret = save_vm_state(vm, w, err, errlen);
	for (unsigned int i = 0; !ret && i < vm->ncpus; i++) {
		test_step();
		ret = state_save_vcpu(&vm->vcpus[i], w, err, errlen);
	}
	test_step();
	if (!ret)
		ret = serial_save(vm->com1, w);
	if (!ret)
		ret = cmos_save(vm->cmos, w);
	if (!ret)
		ret = i8042_save(vm->kbd, w);
	if (!ret)
		ret = pci_save(vm->pci, w);
	if (ret && !err[0])
		snprintf(err, errlen, "%s", ss_writer_error(w));
	test_step();
	if (!ret)
		ret = state_save_memory(vm, w, err, errlen);
	test_step();
	if (!ret) {
		config = vm_config_to_json(vm->cfg);
		ret = ss_commit(w, config, &host, err, errlen);
		json_decref(config);
	}
	ss_writer_free(w);	/* removes a state that did not get its manifest */
out:
	quiesce_devices(vm, false);
	return ret;
}

/* ---- restore ------------------------------------------------------------------ */

/*
 * The sections a VM of @cfg saves: the VM, each vCPU, the base devices,
 * the memory's chunk table (checkpoint/'s own, checked by ss_open()),
 * the PCI bus and one section per function (vm_config_pci_functions():
 * the host bridge at slot 0, then the disks, the NICs and the vsock
 * device, in the slots vm_build() gives them).
 */
static bool expected_section(const struct vm_config *cfg, const char *tag)
{
	static const char *const fixed[] = { "vm", "memory", "dev:serial", "dev:cmos",
					     "dev:i8042", "dev:pci" };
	unsigned int functions = vm_config_pci_functions(cfg);
	unsigned int id;
	char end;

	for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
		if (strcmp(tag, fixed[i]) == 0)
			return true;
	if (sscanf(tag, "vcpu%u%c", &id, &end) == 1)
		return id < cfg->cpus;
	if (sscanf(tag, "pci:%2x%c", &id, &end) == 1 && strlen(tag) == 6)
		return (id & 7) == 0 && id / 8 < functions;
	return false;
}

/* What the saved configuration must agree with: the state itself. */
static int check_config(const struct vm_config *cfg, struct ss_reader *r, char *err,
			size_t errlen)
{
	unsigned int functions = vm_config_pci_functions(cfg);
	char tag[16];

	if (ss_memory_size(r) != cfg->memory)
		return vmm_fail(err, errlen,
				"the saved memory is %llu bytes; the configuration has %llu",
				(unsigned long long)ss_memory_size(r),
				(unsigned long long)cfg->memory);
	for (size_t i = 0; i < ss_section_count(r); i++)
		if (!expected_section(cfg, ss_section_tag(r, i)))
			return vmm_fail(err, errlen,
					"section %s is for something the saved configuration does not have",
					ss_section_tag(r, i));
	for (unsigned int i = 0; i < cfg->cpus; i++) {
		snprintf(tag, sizeof(tag), "vcpu%u", i);
		if (!ss_section(r, tag, NULL))
			return vmm_fail(err, errlen, "section %s is missing (the configuration has %u vCPUs)",
					tag, cfg->cpus);
	}
	for (unsigned int i = 0; i < functions; i++) {
		snprintf(tag, sizeof(tag), "pci:%02x", i << 3);
		if (!ss_section(r, tag, NULL))
			return vmm_fail(err, errlen,
					"section %s is missing (the configuration has %u PCI functions: the host bridge, %u disk(s), %u NIC(s)%s)",
					tag, functions, cfg->ndisks, cfg->nnics,
					cfg->vsock.cid ? ", vsock" : "");
	}
	return 0;
}

int vm_state_check(const struct vm_config *cfg, struct ss_reader *r, char *err,
		   size_t errlen)
{
	struct ss_host here;
	int kvm_fd, ret, xsave;

	ret = check_config(cfg, r, err, errlen);
	if (!ret)
		ret = check_vm_state(r, err, errlen);
	if (!ret)
		ret = host_offers(&here, err, errlen);
	if (!ret && ss_host_compatible(ss_host(r), &here, err, errlen))
		ret = -EINVAL;
	if (ret)
		return ret;
	/* The XSAVE area KVM here uses for what the guest was given. */
	ret = kvm_open(&kvm_fd, err, errlen);
	if (ret)
		return ret;
	xsave = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	close(kvm_fd);
	if (xsave < (int)sizeof(struct kvm_xsave))
		xsave = (int)sizeof(struct kvm_xsave);
	for (unsigned int i = 0; !ret && i < cfg->cpus; i++)
		ret = state_check_vcpu(r, i, (size_t)xsave, err, errlen);
	return ret;
}

int vm_restore_state(struct vm *vm, struct ss_reader *r, char *err, size_t errlen)
{
	/* vm_state_check() has checked the state against the configuration. */
	int ret = state_memory_start(vm, r, err, errlen);

	if (!ret)
		ret = restore_vm_state(vm, r, err, errlen);
	for (unsigned int i = 0; !ret && i < vm->ncpus; i++)
		ret = state_restore_vcpu(&vm->vcpus[i], r, err, errlen);
	if (!ret)
		ret = serial_restore(vm->com1, r, err, errlen);
	if (!ret)
		ret = cmos_restore(vm->cmos, r, err, errlen);
	if (!ret)
		ret = i8042_restore(vm->kbd, r, err, errlen);
	if (!ret)
		ret = pci_restore(vm->pci, r, err, errlen);
	if (!ret)
		state_kvmclock_ctrl(vm);
	return ret;
}
