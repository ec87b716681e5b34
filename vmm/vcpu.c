// SPDX-License-Identifier: MIT
/*
 * vCPUs: one thread each, looping on KVM_RUN and handing exits to the
 * buses.  To stop or pause them the VM sets a request, sets
 * immediate_exit in every kvm_run and sends each thread a signal: a vCPU
 * inside KVM_RUN returns with EINTR, one about to enter returns at once,
 * and both then see the request.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "vmm/internal.h"

#define SIG_KICK SIGUSR1

#define MSR_IA32_TSC		0x10
#define MSR_IA32_SYSENTER_CS	0x174
#define MSR_IA32_SYSENTER_ESP	0x175
#define MSR_IA32_SYSENTER_EIP	0x176
#define MSR_IA32_MISC_ENABLE	0x1A0
#define MSR_MTRR_DEF_TYPE	0x2FF
#define MSR_STAR		0xC0000081
#define MSR_LSTAR		0xC0000082
#define MSR_CSTAR		0xC0000083
#define MSR_SYSCALL_MASK	0xC0000084
#define MSR_KERNEL_GS_BASE	0xC0000102

#define APIC_LVT_LINT0		0x350
#define APIC_LVT_LINT1		0x360
#define APIC_MODE_EXTINT	0x7
#define APIC_MODE_NMI		0x4

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void kick_handler(int sig)
{
	(void)sig;
}

static void kick_handler_init(void)
{
	struct sigaction sa = { .sa_handler = kick_handler };

	/* No SA_RESTART: KVM_RUN must come back with EINTR. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIG_KICK, &sa, NULL);
}

static void install_kick_handler(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, kick_handler_init);
}

/* Power-on MSR values: fast strings on, MTRRs on with write-back. */
static int set_default_msrs(int fd)
{
	static const struct {
		uint32_t index;
		uint64_t value;
	} defaults[] = {
		{ MSR_IA32_SYSENTER_CS, 0 }, { MSR_IA32_SYSENTER_ESP, 0 },
		{ MSR_IA32_SYSENTER_EIP, 0 }, { MSR_STAR, 0 }, { MSR_LSTAR, 0 },
		{ MSR_CSTAR, 0 }, { MSR_SYSCALL_MASK, 0 },
		{ MSR_KERNEL_GS_BASE, 0 }, { MSR_IA32_MISC_ENABLE, 1 },
		{ MSR_MTRR_DEF_TYPE, (1u << 11) | 6 },
	};
	struct kvm_msrs *msrs = calloc(1, sizeof(*msrs) +
				       sizeof(msrs->entries[0]) * ARRAY_SIZE(defaults));
	int n;

	if (!msrs)
		return -ENOMEM;
	for (size_t i = 0; i < ARRAY_SIZE(defaults); i++) {
		msrs->entries[i].index = defaults[i].index;
		msrs->entries[i].data = defaults[i].value;
	}
	msrs->nmsrs = ARRAY_SIZE(defaults);
	n = ioctl(fd, KVM_SET_MSRS, msrs);
	if (n >= 0 && (size_t)n < ARRAY_SIZE(defaults))
		log_debug("KVM took %d of %zu default MSRs (0x%x refused)", n,
			  ARRAY_SIZE(defaults), msrs->entries[n].index);
	free(msrs);
	return n < 0 ? -errno : 0;
}

static int set_default_fpu(int fd)
{
	struct kvm_fpu fpu = { .fcw = 0x37F, .mxcsr = 0x1F80 };

	return ioctl(fd, KVM_SET_FPU, &fpu) < 0 ? -errno : 0;
}

static void lapic_set_lvt(struct kvm_lapic_state *l, unsigned int reg,
			  uint32_t mode)
{
	uint32_t v;

	memcpy(&v, l->regs + reg, 4);
	v = (v & ~0x700u) | (mode << 8);
	memcpy(l->regs + reg, &v, 4);
}

int vcpu_create(struct vm *vm, struct vcpu *v, unsigned int id, char *err,
		size_t errlen)
{
	int ret;

	memset(v, 0, sizeof(*v));
	install_kick_handler();
	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (v->fd < 0) {
		snprintf(err, errlen, "cannot create vCPU %u: %s", id, strerror(errno));
		return -errno;
	}
	v->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE,
		      MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		snprintf(err, errlen, "cannot map vCPU %u: %s", id, strerror(errno));
		return -errno;
	}
	if (vm->restore_cpuid) {
		/* Exactly what the guest had, checked against this host before. */
		v->cpuid = vm->restore_cpuid[id];
		vm->restore_cpuid[id] = NULL;
		ret = ioctl(v->fd, KVM_SET_CPUID2, v->cpuid) < 0 ? -errno : 0;
		if (ret)
			snprintf(err, errlen, "vCPU %u: KVM_SET_CPUID2 of the saved CPUID: %s", id,
				 strerror(-ret));
	} else {
		ret = cpuid_setup(vm, v->fd, id, err, errlen);
	}
	if (ret)
		return ret;
	ret = set_default_msrs(v->fd);
	if (!ret)
		ret = set_default_fpu(v->fd);
	if (ret) {
		snprintf(err, errlen, "vCPU %u: cannot set MSRs or FPU: %s", id,
			 strerror(-ret));
		return ret;
	}
	/* LINT0 takes the 8259's ExtINT, LINT1 NMI, as on a PC. */
	if (ioctl(v->fd, KVM_GET_LAPIC, &v->lapic0) < 0) {
		snprintf(err, errlen, "vCPU %u: KVM_GET_LAPIC: %s", id, strerror(errno));
		return -errno;
	}
	lapic_set_lvt(&v->lapic0, APIC_LVT_LINT0, APIC_MODE_EXTINT);
	lapic_set_lvt(&v->lapic0, APIC_LVT_LINT1, APIC_MODE_NMI);
	if (ioctl(v->fd, KVM_SET_LAPIC, &v->lapic0) < 0) {
		snprintf(err, errlen, "vCPU %u: KVM_SET_LAPIC: %s", id, strerror(errno));
		return -errno;
	}
	return 0;
}

void vcpu_destroy(struct vcpu *v)
{
	free(v->cpuid);
	v->cpuid = NULL;
	if (v->run)
		munmap(v->run, (size_t)v->vm->run_size);
	if (v->fd > 0)
		close(v->fd);
	v->run = NULL;
	v->fd = -1;
}

int vcpu_reset(struct vcpu *v, const struct boot_state *bs)
{
	struct kvm_mp_state mp = {
		.mp_state = v->id == 0 ? KVM_MP_STATE_RUNNABLE :
					 KVM_MP_STATE_UNINITIALIZED,
	};
	int ret;

	if (ioctl(v->fd, KVM_SET_LAPIC, &v->lapic0) < 0 ||
	    ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
		return -errno;
	ret = set_default_msrs(v->fd);
	if (!ret)
		ret = set_default_fpu(v->fd);
	if (!ret && v->id == 0)
		ret = boot_set_regs(v->fd, bs);
	return ret;
}

void vcpu_kick(struct vcpu *v)
{
	if (v->run)
		v->run->immediate_exit = 1;
	if (v->started)
		pthread_kill(v->thread, SIG_KICK);
}

/* ---- exits ----------------------------------------------------------- */

static void handle_io(struct vcpu *v)
{
	struct kvm_run *r = v->run;
	uint8_t *data = (uint8_t *)r + r->io.data_offset;
	bool write = r->io.direction == KVM_EXIT_IO_OUT;

	/* String I/O repeats; each item is io.size bytes. */
	for (uint32_t i = 0; i < r->io.count; i++) {
		bus_dispatch(&v->vm->pio, r->io.port, data, r->io.size, write);
		data += r->io.size;
	}
}

static void handle_mmio(struct vcpu *v)
{
	struct kvm_run *r = v->run;
	unsigned int len = r->mmio.len > 8 ? 8 : r->mmio.len;

	bus_dispatch(&v->vm->mmio, r->mmio.phys_addr, r->mmio.data, len,
		     r->mmio.is_write);
}

/* Read up to @n instruction bytes at the guest's RIP, through its paging. */
static int read_insn(struct vcpu *v, uint64_t *rip, uint8_t *buf, int n)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	int got = 0;

	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0 ||
	    ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return -1;
	*rip = regs.rip;
	while (got < n) {
		struct kvm_translation t = { .linear_address = sregs.cs.base + regs.rip +
						(uint64_t)got };
		uint8_t *p;
		int chunk;

		if (ioctl(v->fd, KVM_TRANSLATE, &t) < 0 || !t.valid)
			break;
		chunk = (int)(4096 - (t.physical_address & 4095));
		if (chunk > n - got)
			chunk = n - got;
		p = gpa_to_hva(&v->vm->mem, t.physical_address, (uint64_t)chunk);
		if (!p)
			break;
		memcpy(buf + got, p, (size_t)chunk);
		got += chunk;
	}
	return got;
}

static void describe_insn(struct vcpu *v, char *out, size_t len)
{
	uint8_t bytes[15];
	uint64_t rip = 0;
	int n = read_insn(v, &rip, bytes, (int)sizeof(bytes));
	size_t o;

	o = (size_t)snprintf(out, len, "RIP 0x%llx, instruction bytes",
			     (unsigned long long)rip);
	if (n <= 0)
		snprintf(out + o, len - o, " unreadable");
	for (int i = 0; i < n && o < len; i++)
		o += (size_t)snprintf(out + o, len - o, " %02x", bytes[i]);
}

static void handle_internal_error(struct vcpu *v)
{
	struct kvm_run *r = v->run;
	char where[160];
	const char *what;

	switch (r->internal.suberror) {
	case KVM_INTERNAL_ERROR_EMULATION:
		what = "emulation failure";
		break;
	case KVM_INTERNAL_ERROR_SIMUL_EX:
		what = "exception while delivering an exception";
		break;
	case KVM_INTERNAL_ERROR_DELIVERY_EV:
		what = "event delivery failed";
		break;
	default:
		what = "internal error";
		break;
	}
	describe_insn(v, where, sizeof(where));
	vm_post_event(v->vm, VMEV_FAILED, "KVM %s (exit reason %u, suberror %u) on vCPU %u at %s",
		      what, r->exit_reason, r->internal.suberror, v->id, where);
}

static void handle_shutdown(struct vcpu *v)
{
	char where[160];

	describe_insn(v, where, sizeof(where));
	if (v->vm->cfg->on_triple_fault == FAULT_RESET)
		vm_post_event(v->vm, VMEV_RESET, "triple fault on vCPU %u at %s",
			      v->id, where);
	else
		vm_post_event(v->vm, VMEV_FAILED,
			      "triple fault (CPU shutdown) on vCPU %u at %s", v->id,
			      where);
}

static void handle_exit(struct vcpu *v)
{
	struct kvm_run *r = v->run;

	atomic_fetch_add(&v->stats.total, 1);
	switch (r->exit_reason) {
	case KVM_EXIT_IO:
		atomic_fetch_add(&v->stats.io, 1);
		handle_io(v);
		break;
	case KVM_EXIT_MMIO:
		atomic_fetch_add(&v->stats.mmio, 1);
		handle_mmio(v);
		break;
	case KVM_EXIT_HLT:
		atomic_fetch_add(&v->stats.hlt, 1);
		break;
	case KVM_EXIT_INTR:
		atomic_fetch_add(&v->stats.intr, 1);
		break;
	case KVM_EXIT_SHUTDOWN:
		atomic_fetch_add(&v->stats.other, 1);
		handle_shutdown(v);
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		atomic_fetch_add(&v->stats.other, 1);
		handle_internal_error(v);
		break;
	case KVM_EXIT_FAIL_ENTRY:
		atomic_fetch_add(&v->stats.other, 1);
		vm_post_event(v->vm, VMEV_FAILED,
			      "vCPU %u: VM entry failed (hardware reason 0x%llx)", v->id,
			      (unsigned long long)r->fail_entry.hardware_entry_failure_reason);
		break;
	case KVM_EXIT_SYSTEM_EVENT:
		atomic_fetch_add(&v->stats.other, 1);
		if (r->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN)
			vm_post_event(v->vm, VMEV_POWEROFF, "system event: shutdown");
		else if (r->system_event.type == KVM_SYSTEM_EVENT_RESET)
			vm_post_event(v->vm, VMEV_RESET, "system event: reset");
		else
			vm_post_event(v->vm, VMEV_FAILED, "vCPU %u: system event %u",
				      v->id, r->system_event.type);
		break;
	default:
		atomic_fetch_add(&v->stats.other, 1);
		vm_post_event(v->vm, VMEV_FAILED, "vCPU %u: unexpected KVM exit %u",
			      v->id, r->exit_reason);
		break;
	}
}

/* Wait while paused; returns true when the vCPU should end. */
static bool vcpu_wait(struct vcpu *v)
{
	struct vm *vm = v->vm;
	bool stop;

	pthread_mutex_lock(&vm->lock);
	while (vm->request == REQ_PAUSE) {
		if (v->settled != vm->settle_gen) {
			/*
			 * An I/O exit is complete only once KVM_RUN is entered
			 * again: enter with immediate_exit set, which finishes it
			 * and runs no guest instruction, so the state is whole.
			 */
			unsigned int gen = vm->settle_gen;

			v->parked = false;
			pthread_mutex_unlock(&vm->lock);
			v->run->immediate_exit = 1;
			ioctl(v->fd, KVM_RUN, 0);
			pthread_mutex_lock(&vm->lock);
			v->settled = gen;
			continue;
		}
		v->parked = true;
		pthread_cond_broadcast(&vm->cond);
		pthread_cond_wait(&vm->cond, &vm->lock);
	}
	v->parked = false;
	stop = vm->request == REQ_STOP;
	if (!stop)
		v->run->immediate_exit = 0;
	pthread_mutex_unlock(&vm->lock);
	return stop;
}

void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	char name[16];

	snprintf(name, sizeof(name), "vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name);
	while (!vcpu_wait(v)) {
		int ret;

		if (v->id == 0 && !atomic_load(&v->vm->first_run_seen)) {
			struct rusage ru;

			getrusage(RUSAGE_SELF, &ru);
			v->vm->first_run_cpu_us =
				(uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
				(uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
			v->vm->first_run_ns = now_ns();
			atomic_store(&v->vm->first_run_seen, true);
		}
		ret = ioctl(v->fd, KVM_RUN, 0);
		if (ret < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				atomic_fetch_add(&v->stats.intr, 1);
				continue;
			}
			vm_post_event(v->vm, VMEV_FAILED, "vCPU %u: KVM_RUN: %s", v->id,
				      strerror(errno));
			continue;
		}
		handle_exit(v);
	}
	pthread_mutex_lock(&v->vm->lock);
	v->parked = true;
	pthread_cond_broadcast(&v->vm->cond);
	pthread_mutex_unlock(&v->vm->lock);
	return NULL;
}
