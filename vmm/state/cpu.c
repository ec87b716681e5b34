// SPDX-License-Identifier: MIT
/*
 * A vCPU's KVM state in a saved state, one section per vCPU ("vcpu0").
 * Saved in the order KVM's documentation asks for: MP_STATE first, then
 * REGS, SREGS2, XSAVE, XCRS, DEBUGREGS, LAPIC, the TSC rate, the MSRs
 * that matter, and VCPU_EVENTS last.  Restored in the order KVM needs:
 * (CPUID at creation), MP_STATE, REGS, SREGS2, XSAVE, XCRS, DEBUGREGS,
 * LAPIC (after SREGS, before the MSRs), the MSRs with TSC_DEADLINE after
 * TSC, VCPU_EVENTS after REGS.  Every record's size is checked first.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/internal.h"
#include "vmm/state/state.h"

enum {
	REC_MP_STATE = 1,
	REC_REGS,
	REC_SREGS2,
	REC_XSAVE,
	REC_XCRS,
	REC_DEBUGREGS,
	REC_LAPIC,
	REC_TSC_KHZ,
	REC_MSRS,
	REC_EVENTS,
	REC_CPUID,
};

#define MSR_IA32_TSC		0x10
#define MSR_IA32_TSC_DEADLINE	0x6E0

/*
 * What a guest's state is made of (and nothing the host owns): the TSC
 * and its offsets, the APIC base, EFER and the syscall MSRs, the segment
 * bases, the MTRRs and PAT, speculation control, XSS, and KVM's own
 * paravirtual MSRs (kvmclock, async page faults, steal time, PV EOI).
 */
static bool msr_wanted(uint32_t m)
{
	return m == MSR_IA32_TSC || m == 0x3B /* TSC_ADJUST */ || m == MSR_IA32_TSC_DEADLINE ||
	       m == 0x1B /* APIC_BASE */ || m == 0x48 /* SPEC_CTRL */ ||
	       m == 0x1A0 /* MISC_ENABLE */ || (m >= 0x174 && m <= 0x176) /* SYSENTER */ ||
	       m == 0x277 /* PAT */ || m == 0x2FF /* MTRR_DEF_TYPE */ ||
	       (m >= 0x200 && m <= 0x21F) /* variable MTRRs */ ||
	       m == 0x250 || m == 0x258 || m == 0x259 || (m >= 0x268 && m <= 0x26F) ||
	       m == 0xDA0 /* XSS */ || m == 0xC0000080 /* EFER */ ||
	       (m >= 0xC0000081 && m <= 0xC0000084) /* STAR LSTAR CSTAR SFMASK */ ||
	       (m >= 0xC0000100 && m <= 0xC0000103) /* FS GS KERNEL_GS TSC_AUX */ ||
	       m == 0x11 || m == 0x12 /* kvmclock, first version */ ||
	       (m >= 0x4B564D00 && m <= 0x4B564D08) /* KVM paravirtual */;
}

int state_msr_list(struct vm *vm, char *err, size_t errlen)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *list;
	uint32_t n = 0;

	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG) {
		snprintf(err, errlen, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
		return -errno;
	}
	list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
	if (!list)
		return -ENOMEM;
	list->nmsrs = probe.nmsrs;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		snprintf(err, errlen, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
		free(list);
		return -errno;
	}
	for (uint32_t i = 0; i < list->nmsrs && n < STATE_MSRS_MAX; i++)
		if (msr_wanted(list->indices[i]))
			vm->state_msrs[n++] = list->indices[i];
	vm->nstate_msrs = n;
	free(list);
	return 0;
}

static int get(int fd, unsigned long req, void *arg, const char *what, char *err,
	       size_t errlen)
{
	if (ioctl(fd, req, arg) < 0) {
		snprintf(err, errlen, "%s: %s", what, strerror(errno));
		return -errno;
	}
	return 0;
}

int state_xsave_size(struct vm *vm)
{
	/* Asked of the VM: the size depends on what its vCPUs were given. */
	int n = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);

	return n > (int)sizeof(struct kvm_xsave) ? n : (int)sizeof(struct kvm_xsave);
}

int state_save_vcpu(struct vcpu *v, struct ss_writer *w, char *err, size_t errlen)
{
	struct vm *vm = v->vm;
	size_t xsize = (size_t)state_xsave_size(vm);
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs2 sregs;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dbg;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_xsave *xsave = calloc(1, xsize);
	struct kvm_msrs *msrs = calloc(1, sizeof(*msrs) +
				       vm->nstate_msrs * sizeof(struct kvm_msr_entry));
	struct ss_section *s;
	char tag[16];
	int khz, ret, n;

	if (!xsave || !msrs) {
		free(xsave);
		free(msrs);
		return -ENOMEM;
	}
	for (unsigned int i = 0; i < vm->nstate_msrs; i++)
		msrs->entries[i].index = vm->state_msrs[i];
	msrs->nmsrs = vm->nstate_msrs;
	ret = get(v->fd, KVM_GET_MP_STATE, &mp, "KVM_GET_MP_STATE", err, errlen);
	if (!ret)
		ret = get(v->fd, KVM_GET_REGS, &regs, "KVM_GET_REGS", err, errlen);
	if (!ret)
		ret = get(v->fd, KVM_GET_SREGS2, &sregs, "KVM_GET_SREGS2", err, errlen);
	if (!ret)
		ret = get(v->fd, KVM_GET_XSAVE2, xsave, "KVM_GET_XSAVE2", err, errlen);
	if (!ret)
		ret = get(v->fd, KVM_GET_XCRS, &xcrs, "KVM_GET_XCRS", err, errlen);
	if (!ret)
		ret = get(v->fd, KVM_GET_DEBUGREGS, &dbg, "KVM_GET_DEBUGREGS", err, errlen);
	if (!ret)
		ret = get(v->fd, KVM_GET_LAPIC, &lapic, "KVM_GET_LAPIC", err, errlen);
	khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
	if (!ret && khz <= 0)
		ret = get(v->fd, KVM_GET_TSC_KHZ, NULL, "KVM_GET_TSC_KHZ", err, errlen);
	n = ret ? 0 : ioctl(v->fd, KVM_GET_MSRS, msrs);
	if (!ret && n != (int)msrs->nmsrs) {
		snprintf(err, errlen, "KVM_GET_MSRS: %d of %u MSRs (0x%x failed)", n, msrs->nmsrs,
			 n >= 0 && (unsigned int)n < msrs->nmsrs ? msrs->entries[n].index : 0);
		ret = -EIO;
	}
	/* Last: what the others' reads may have changed. */
	if (!ret)
		ret = get(v->fd, KVM_GET_VCPU_EVENTS, &events, "KVM_GET_VCPU_EVENTS", err, errlen);
	if (!ret) {
		snprintf(tag, sizeof(tag), "vcpu%u", v->id);
		s = ss_section_begin(w, tag, STATE_VCPU_VERSION);
		ss_put(s, REC_MP_STATE, &mp, sizeof(mp));
		ss_put(s, REC_REGS, &regs, sizeof(regs));
		ss_put(s, REC_SREGS2, &sregs, sizeof(sregs));
		ss_put(s, REC_XSAVE, xsave, xsize);
		ss_put(s, REC_XCRS, &xcrs, sizeof(xcrs));
		ss_put(s, REC_DEBUGREGS, &dbg, sizeof(dbg));
		ss_put(s, REC_LAPIC, &lapic, sizeof(lapic));
		ss_put_u32(s, REC_TSC_KHZ, (uint32_t)khz);
		ss_put(s, REC_MSRS, msrs->entries, msrs->nmsrs * sizeof(struct kvm_msr_entry));
		ss_put(s, REC_EVENTS, &events, sizeof(events));
		ss_put(s, REC_CPUID, v->cpuid->entries,
		       v->cpuid->nent * sizeof(struct kvm_cpuid_entry2));
		ret = ss_section_end(s);
		if (ret)
			snprintf(err, errlen, "%s", ss_writer_error(w));
	}
	free(xsave);
	free(msrs);
	return ret;
}

/* ---- restoring -------------------------------------------------------------- */

int state_check_vcpu(struct ss_reader *r, unsigned int id, size_t xsave_size, char *err,
		     size_t errlen)
{
	static const struct {
		uint32_t id;
		size_t size;
		const char *name;
	} fixed[] = {
		{ REC_MP_STATE, sizeof(struct kvm_mp_state), "MP_STATE" },
		{ REC_REGS, sizeof(struct kvm_regs), "REGS" },
		{ REC_SREGS2, sizeof(struct kvm_sregs2), "SREGS2" },
		{ REC_XCRS, sizeof(struct kvm_xcrs), "XCRS" },
		{ REC_DEBUGREGS, sizeof(struct kvm_debugregs), "DEBUGREGS" },
		{ REC_LAPIC, sizeof(struct kvm_lapic_state), "LAPIC" },
		{ REC_TSC_KHZ, 4, "TSC rate" },
		{ REC_EVENTS, sizeof(struct kvm_vcpu_events), "VCPU_EVENTS" },
	};
	struct ss_rsection *s;
	const void *p;
	size_t len;
	uint32_t version;
	char tag[16];

	snprintf(tag, sizeof(tag), "vcpu%u", id);
	s = ss_section(r, tag, &version);
	if (!s)
		return vmm_fail(err, errlen, "section %s is missing", tag);
	if (version != STATE_VCPU_VERSION)
		return vmm_fail(err, errlen, "section %s has version %u; this fsvisor reads %u", tag,
				version, STATE_VCPU_VERSION);
	for (size_t i = 0; i < ARRAY_SIZE(fixed); i++) {
		if (ss_get_var(s, fixed[i].id, &p, &len) || len != fixed[i].size)
			return vmm_fail(err, errlen, "section %s: %s is missing or of the wrong size",
					tag, fixed[i].name);
	}
	if (ss_get_var(s, REC_XSAVE, &p, &len) || len != xsave_size)
		return vmm_fail(err, errlen,
				"section %s: the XSAVE area is %zu bytes, this host's KVM uses %zu",
				tag, len, xsave_size);
	if (ss_get_var(s, REC_MSRS, &p, &len) || len % sizeof(struct kvm_msr_entry) ||
	    len / sizeof(struct kvm_msr_entry) > STATE_MSRS_MAX)
		return vmm_fail(err, errlen, "section %s: the MSR list is malformed", tag);
	if (ss_get_var(s, REC_CPUID, &p, &len) || len % sizeof(struct kvm_cpuid_entry2) ||
	    !len || len / sizeof(struct kvm_cpuid_entry2) > SS_CPUID_MAX)
		return vmm_fail(err, errlen, "section %s: the CPUID list is malformed", tag);
	return 0;
}

struct kvm_cpuid2 *state_vcpu_cpuid(struct ss_reader *r, unsigned int id)
{
	struct ss_rsection *s;
	struct kvm_cpuid2 *c;
	const void *p;
	size_t len;
	char tag[16];

	snprintf(tag, sizeof(tag), "vcpu%u", id);
	s = ss_section(r, tag, NULL);
	if (!s || ss_get_var(s, REC_CPUID, &p, &len))
		return NULL;
	c = calloc(1, sizeof(*c) + len);
	if (!c)
		return NULL;
	c->nent = (uint32_t)(len / sizeof(struct kvm_cpuid_entry2));
	memcpy(c->entries, p, len);
	return c;
}

static int set(int fd, unsigned long req, const void *arg, const char *what,
	       const char *tag, char *err, size_t errlen)
{
	if (ioctl(fd, req, arg) < 0) {
		snprintf(err, errlen, "%s: %s refused the saved state: %s", tag, what,
			 strerror(errno));
		return -errno;
	}
	return 0;
}

/* The MSRs in two passes: everything, then TSC_DEADLINE (it needs TSC). */
static int set_msrs(struct vcpu *v, const struct kvm_msr_entry *e, size_t n,
		    const char *tag, char *err, size_t errlen)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + n * sizeof(*e));
	int ret = 0;

	if (!m)
		return -ENOMEM;
	for (int pass = 0; pass < 2 && !ret; pass++) {
		int done;

		m->nmsrs = 0;
		for (size_t i = 0; i < n; i++)
			if ((e[i].index == MSR_IA32_TSC_DEADLINE) == (pass == 1))
				m->entries[m->nmsrs++] = e[i];
		if (!m->nmsrs)
			continue;
		done = ioctl(v->fd, KVM_SET_MSRS, m);
		if (done != (int)m->nmsrs) {
			snprintf(err, errlen, "%s: KVM_SET_MSRS took %d of %u MSRs (0x%x refused)",
				 tag, done, m->nmsrs,
				 done >= 0 && (unsigned int)done < m->nmsrs ?
				 m->entries[done].index : 0);
			ret = -EINVAL;
		}
	}
	free(m);
	return ret;
}

int state_restore_vcpu(struct vcpu *v, struct ss_reader *r, char *err, size_t errlen)
{
	struct ss_rsection *s;
	const void *p;
	size_t len;
	char tag[16];
	int ret;

	snprintf(tag, sizeof(tag), "vcpu%u", v->id);
	s = ss_section(r, tag, NULL);
	if (!s)
		return vmm_fail(err, errlen, "section %s is missing", tag);
	/* Sizes were checked by state_check_vcpu(). */
#define SET(rec, req, what) \
	(ss_get_var(s, rec, &p, &len) ? vmm_fail(err, errlen, "%s lacks %s", tag, what) : \
	 set(v->fd, req, p, what, tag, err, errlen))
	ret = SET(REC_MP_STATE, KVM_SET_MP_STATE, "KVM_SET_MP_STATE");
	if (!ret)
		ret = SET(REC_REGS, KVM_SET_REGS, "KVM_SET_REGS");
	if (!ret)
		ret = SET(REC_SREGS2, KVM_SET_SREGS2, "KVM_SET_SREGS2");
	if (!ret)
		ret = SET(REC_XSAVE, KVM_SET_XSAVE, "KVM_SET_XSAVE");
	if (!ret)
		ret = SET(REC_XCRS, KVM_SET_XCRS, "KVM_SET_XCRS");
	if (!ret)
		ret = SET(REC_DEBUGREGS, KVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS");
	if (!ret)
		ret = SET(REC_LAPIC, KVM_SET_LAPIC, "KVM_SET_LAPIC");
	if (!ret && !ss_get_var(s, REC_MSRS, &p, &len))
		ret = set_msrs(v, p, len / sizeof(struct kvm_msr_entry), tag, err, errlen);
	if (!ret)
		ret = SET(REC_EVENTS, KVM_SET_VCPU_EVENTS, "KVM_SET_VCPU_EVENTS");
#undef SET
	return ret;
}

/*
 * Tell a guest with kvmclock that it was stopped, so its watchdogs do not
 * take the gap for a hang.  EINVAL: the guest does not use kvmclock.
 */
void state_kvmclock_ctrl(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->ncpus; i++)
		if (ioctl(vm->vcpus[i].fd, KVM_KVMCLOCK_CTRL, 0) < 0 && errno != EINVAL)
			log_debug("vcpu%u: KVM_KVMCLOCK_CTRL: %s", i, strerror(errno));
}
