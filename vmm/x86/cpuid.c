// SPDX-License-Identifier: MIT
/*
 * CPUID for each vCPU: what KVM supports, with the topology filled in for
 * the VM's CPU count (one thread per core, one package), the hypervisor
 * bit set, and the features of the VM's cpu.mask hidden.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/internal.h"

enum reg { EAX, EBX, ECX, EDX };

struct feature {
	const char *name;
	uint32_t leaf;
	uint32_t subleaf;
	enum reg reg;
	unsigned int bit;
};

/* Names as /proc/cpuinfo spells them. */
static const struct feature features[] = {
	{ "fpu", 1, 0, EDX, 0 }, { "vme", 1, 0, EDX, 1 }, { "de", 1, 0, EDX, 2 },
	{ "pse", 1, 0, EDX, 3 }, { "tsc", 1, 0, EDX, 4 }, { "msr", 1, 0, EDX, 5 },
	{ "pae", 1, 0, EDX, 6 }, { "mce", 1, 0, EDX, 7 }, { "cx8", 1, 0, EDX, 8 },
	{ "apic", 1, 0, EDX, 9 }, { "sep", 1, 0, EDX, 11 }, { "mtrr", 1, 0, EDX, 12 },
	{ "pge", 1, 0, EDX, 13 }, { "mca", 1, 0, EDX, 14 }, { "cmov", 1, 0, EDX, 15 },
	{ "pat", 1, 0, EDX, 16 }, { "pse36", 1, 0, EDX, 17 },
	{ "clflush", 1, 0, EDX, 19 }, { "mmx", 1, 0, EDX, 23 },
	{ "fxsr", 1, 0, EDX, 24 }, { "sse", 1, 0, EDX, 25 }, { "sse2", 1, 0, EDX, 26 },
	{ "ht", 1, 0, EDX, 28 },
	{ "pni", 1, 0, ECX, 0 }, { "sse3", 1, 0, ECX, 0 },
	{ "pclmulqdq", 1, 0, ECX, 1 }, { "monitor", 1, 0, ECX, 3 },
	{ "vmx", 1, 0, ECX, 5 }, { "ssse3", 1, 0, ECX, 9 }, { "fma", 1, 0, ECX, 12 },
	{ "cx16", 1, 0, ECX, 13 }, { "pdcm", 1, 0, ECX, 15 }, { "pcid", 1, 0, ECX, 17 },
	{ "sse4_1", 1, 0, ECX, 19 }, { "sse4_2", 1, 0, ECX, 20 },
	{ "x2apic", 1, 0, ECX, 21 }, { "movbe", 1, 0, ECX, 22 },
	{ "popcnt", 1, 0, ECX, 23 }, { "tsc_deadline_timer", 1, 0, ECX, 24 },
	{ "aes", 1, 0, ECX, 25 }, { "xsave", 1, 0, ECX, 26 },
	{ "avx", 1, 0, ECX, 28 }, { "f16c", 1, 0, ECX, 29 },
	{ "rdrand", 1, 0, ECX, 30 },
	{ "fsgsbase", 7, 0, EBX, 0 }, { "bmi1", 7, 0, EBX, 3 }, { "hle", 7, 0, EBX, 4 },
	{ "avx2", 7, 0, EBX, 5 }, { "smep", 7, 0, EBX, 7 }, { "bmi2", 7, 0, EBX, 8 },
	{ "erms", 7, 0, EBX, 9 }, { "invpcid", 7, 0, EBX, 10 }, { "rtm", 7, 0, EBX, 11 },
	{ "avx512f", 7, 0, EBX, 16 }, { "avx512dq", 7, 0, EBX, 17 },
	{ "rdseed", 7, 0, EBX, 18 }, { "adx", 7, 0, EBX, 19 }, { "smap", 7, 0, EBX, 20 },
	{ "avx512ifma", 7, 0, EBX, 21 }, { "clflushopt", 7, 0, EBX, 23 },
	{ "clwb", 7, 0, EBX, 24 }, { "avx512cd", 7, 0, EBX, 28 },
	{ "sha_ni", 7, 0, EBX, 29 }, { "avx512bw", 7, 0, EBX, 30 },
	{ "avx512vl", 7, 0, EBX, 31 },
	{ "avx512vbmi", 7, 0, ECX, 1 }, { "umip", 7, 0, ECX, 2 }, { "pku", 7, 0, ECX, 3 },
	{ "waitpkg", 7, 0, ECX, 5 }, { "avx512_vbmi2", 7, 0, ECX, 6 },
	{ "gfni", 7, 0, ECX, 8 }, { "vaes", 7, 0, ECX, 9 },
	{ "vpclmulqdq", 7, 0, ECX, 10 }, { "avx512_vnni", 7, 0, ECX, 11 },
	{ "rdpid", 7, 0, ECX, 22 }, { "fsrm", 7, 0, EDX, 4 },
	{ "md_clear", 7, 0, EDX, 10 }, { "spec_ctrl", 7, 0, EDX, 26 },
	{ "xsaveopt", 0xD, 1, EAX, 0 }, { "xsavec", 0xD, 1, EAX, 1 },
	{ "xsaves", 0xD, 1, EAX, 3 },
	{ "lahf_lm", 0x80000001, 0, ECX, 0 }, { "svm", 0x80000001, 0, ECX, 2 },
	{ "abm", 0x80000001, 0, ECX, 5 }, { "sse4a", 0x80000001, 0, ECX, 6 },
	{ "misalignsse", 0x80000001, 0, ECX, 7 },
	{ "3dnowprefetch", 0x80000001, 0, ECX, 8 }, { "xop", 0x80000001, 0, ECX, 11 },
	{ "fma4", 0x80000001, 0, ECX, 16 }, { "tbm", 0x80000001, 0, ECX, 21 },
	{ "syscall", 0x80000001, 0, EDX, 11 }, { "nx", 0x80000001, 0, EDX, 20 },
	{ "mmxext", 0x80000001, 0, EDX, 22 }, { "pdpe1gb", 0x80000001, 0, EDX, 26 },
	{ "rdtscp", 0x80000001, 0, EDX, 27 }, { "lm", 0x80000001, 0, EDX, 29 },
};

/*
 * Hiding a feature hides what needs it, so a guest never sees AVX without
 * the XSAVE that manages its state.
 */
static const struct {
	const char *feature;
	const char *needs;
} dependencies[] = {
	{ "avx", "xsave" }, { "fma", "avx" }, { "f16c", "avx" }, { "avx2", "avx" },
	{ "avx512f", "avx2" }, { "avx512dq", "avx512f" }, { "avx512cd", "avx512f" },
	{ "avx512bw", "avx512f" }, { "avx512vl", "avx512f" },
	{ "avx512ifma", "avx512f" }, { "avx512vbmi", "avx512f" },
	{ "avx512_vbmi2", "avx512f" }, { "avx512_vnni", "avx512f" },
	{ "vaes", "avx" }, { "vpclmulqdq", "avx" }, { "xsaveopt", "xsave" },
	{ "xsavec", "xsave" }, { "xsaves", "xsave" }, { "fma4", "avx" },
	{ "xop", "avx" }, { "sse4_2", "sse4_1" }, { "sse4_1", "ssse3" },
	{ "ssse3", "sse3" }, { "aes", "sse2" }, { "pclmulqdq", "sse2" },
};

static const struct feature *feature_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(features); i++)
		if (strcmp(features[i].name, name) == 0)
			return &features[i];
	return NULL;
}

const char *cpuid_unknown_feature(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!feature_find(names[i]))
			return names[i];
	return NULL;
}

static uint32_t *reg_of(struct kvm_cpuid_entry2 *e, enum reg r)
{
	switch (r) {
	case EAX:
		return &e->eax;
	case EBX:
		return &e->ebx;
	case ECX:
		return &e->ecx;
	case EDX:
		return &e->edx;
	}
	return &e->eax;
}

static struct kvm_cpuid_entry2 *entry_find(struct kvm_cpuid2 *c, uint32_t leaf,
					   uint32_t subleaf)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == leaf &&
		    (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == subleaf))
			return e;
	}
	return NULL;
}

/* Hide @name and, transitively, everything that needs it. */
static void mask_feature(struct kvm_cpuid2 *c, const char *name, int depth)
{
	const struct feature *f;
	struct kvm_cpuid_entry2 *e;

	if (strcmp(name, "pni") == 0)
		name = "sse3";	/* one bit, two names */
	f = feature_find(name);
	if (!f || depth > 8)
		return;
	e = entry_find(c, f->leaf, f->subleaf);
	if (e)
		*reg_of(e, f->reg) &= ~(1u << f->bit);
	for (size_t i = 0; i < ARRAY_SIZE(dependencies); i++)
		if (strcmp(dependencies[i].needs, name) == 0)
			mask_feature(c, dependencies[i].feature, depth + 1);
	if (strcmp(name, "xsave") == 0) {
		/* No XSAVE: the whole state enumeration leaf goes. */
		for (uint32_t i = 0; i < c->nent; i++)
			if (c->entries[i].function == 0xD)
				c->entries[i].eax = c->entries[i].ebx =
				c->entries[i].ecx = c->entries[i].edx = 0;
	}
}

static unsigned int bits_for(unsigned int n)
{
	unsigned int b = 0;

	while ((1u << b) < n)
		b++;
	return b;
}

static void set_topology(struct kvm_cpuid2 *c, unsigned int id, unsigned int n)
{
	unsigned int shift = bits_for(n);

	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 1:
			/* APIC id, logical processors per package, HTT. */
			e->ebx = (e->ebx & 0x0000ffffu) | (id << 24) |
				 ((1u << shift) << 16);
			e->ecx |= 1u << 31;	/* running under a hypervisor */
			if (n > 1)
				e->edx |= 1u << 28;
			else
				e->edx &= ~(1u << 28);
			break;
		case 4:
			/* Cache leaves (Intel): cores per package, sharing. */
			if ((e->eax & 0x1f) == 0)
				break;
			e->eax &= 0x3fff;
			e->eax |= (uint32_t)((1u << shift) - 1) << 26;
			if (((e->eax >> 5) & 7) == 3)	/* L3: shared by all */
				e->eax |= (uint32_t)(n - 1) << 14;
			break;
		case 0xB:
		case 0x1F:
			/* x2APIC topology: thread level, then core level. */
			e->edx = id;
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1u << 8) | 0;
			} else if (e->index == 1) {
				e->eax = shift;
				e->ebx = n;
				e->ecx = (2u << 8) | 1;
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index;
			}
			break;
		case 0x80000008:
			/* AMD: cores per package and the APIC id bits for them. */
			e->ecx = (e->ecx & ~0xf0ffu) | (n - 1) | (shift << 12);
			break;
		case 0x8000001E:
			/* AMD: extended APIC id, core id, one thread per core. */
			e->eax = id;
			e->ebx = id & 0xff;
			e->ecx = 0;
			break;
		}
	}
}

int cpuid_setup(struct vm *vm, int vcpu_fd, unsigned int vcpu_id, char *err,
		size_t errlen)
{
	uint32_t nent = 128;
	struct kvm_cpuid2 *c;
	int ret;

	for (;;) {
		c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));
		if (!c)
			return -ENOMEM;
		c->nent = nent;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			break;
		ret = -errno;
		free(c);
		if (ret != -E2BIG || nent >= 4096) {
			snprintf(err, errlen, "KVM_GET_SUPPORTED_CPUID: %s", strerror(-ret));
			return ret;
		}
		nent *= 2;
	}
	/* 0xB subleaf 1 must exist for the core level. */
	if (entry_find(c, 0xB, 0) && !entry_find(c, 0xB, 1) && c->nent < nent) {
		struct kvm_cpuid_entry2 *e = &c->entries[c->nent++];

		*e = *entry_find(c, 0xB, 0);
		e->index = 1;
	}
	set_topology(c, vcpu_id, vm->ncpus);
	for (size_t i = 0; i < vm->cfg->ncpu_mask; i++)
		mask_feature(c, vm->cfg->cpu_mask[i], 0);

	ret = ioctl(vcpu_fd, KVM_SET_CPUID2, c) < 0 ? -errno : 0;
	if (ret) {
		snprintf(err, errlen, "KVM_SET_CPUID2: %s", strerror(-ret));
		free(c);
		return ret;
	}
	/* Kept: a saved state records what the guest was given. */
	vm->vcpus[vcpu_id].cpuid = c;
	return 0;
}
