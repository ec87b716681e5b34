// SPDX-License-Identifier: MIT
/*
 * Whether a guest saved on one host can run on another: the same CPU
 * vendor, every CPU feature it was given offered here too, and the same
 * TSC rate (KVM here cannot set a guest's TSC rate: TSC_CONTROL is
 * absent, so a guest moved to another rate would keep time wrong).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "checkpoint/checkpoint.h"

/* The feature registers: a guest may use any bit that is set in them. */
struct feature_reg {
	uint32_t function, index;
	int reg;			/* 0 eax, 1 ebx, 2 ecx, 3 edx */
	uint32_t ignore;		/* bits the kernel or KVM set on their own */
	const char *name;
};

static const struct feature_reg feature_regs[] = {
	/* OSXSAVE (27) follows CR4; the hypervisor bit (31) is KVM's own. */
	{ 0x1, 0, 2, (1u << 27) | (1u << 31), "leaf 1 ecx" },
	/*
	 * APIC (9) follows the APIC base MSR's enable bit; HTT (28) is the
	 * topology the VMM describes, not a feature of the host.
	 */
	{ 0x1, 0, 3, (1u << 9) | (1u << 28), "leaf 1 edx" },
	{ 0x7, 0, 1, 0, "leaf 7 ebx" },
	/* OSPKE (4) follows CR4. */
	{ 0x7, 0, 2, 1u << 4, "leaf 7 ecx" },
	{ 0x7, 0, 3, 0, "leaf 7 edx" },
	{ 0x7, 1, 0, 0, "leaf 7.1 eax" },
	{ 0xD, 1, 0, 0, "leaf 0xd.1 eax" },
	{ 0x80000001, 0, 2, 0, "leaf 0x80000001 ecx" },
	{ 0x80000001, 0, 3, 0, "leaf 0x80000001 edx" },
	{ 0x80000007, 0, 3, 0, "leaf 0x80000007 edx" },
	{ 0x80000008, 0, 1, 0, "leaf 0x80000008 ebx" },
};

/* KVM_CPUID_FLAG_SIGNIFCANT_INDEX: the index matters for this function. */
#define CPUID_SIGNIFICANT_INDEX 1

static const struct ss_cpuid *find(const struct ss_host *h, uint32_t function,
				   uint32_t index)
{
	for (unsigned int i = 0; i < h->ncpuid; i++) {
		const struct ss_cpuid *c = &h->cpuid[i];

		if (c->function == function &&
		    (!(c->flags & CPUID_SIGNIFICANT_INDEX) || c->index == index))
			return c;
	}
	return NULL;
}

static uint32_t reg_of(const struct ss_cpuid *c, int reg)
{
	return reg == 0 ? c->eax : reg == 1 ? c->ebx : reg == 2 ? c->ecx : c->edx;
}

/* A name for the common features, so a refusal says what is missing. */
static const char *feature_name(uint32_t function, int reg, int bit)
{
	static const struct {
		uint32_t function;
		int reg, bit;
		const char *name;
	} names[] = {
		{ 1, 2, 0, "sse3" }, { 1, 2, 9, "ssse3" }, { 1, 2, 19, "sse4.1" },
		{ 1, 2, 20, "sse4.2" }, { 1, 2, 23, "popcnt" }, { 1, 2, 25, "aes" },
		{ 1, 2, 26, "xsave" }, { 1, 2, 28, "avx" }, { 1, 2, 30, "rdrand" },
		{ 1, 2, 12, "fma" }, { 1, 2, 21, "x2apic" }, { 1, 2, 24, "tsc-deadline" },
		{ 1, 3, 4, "tsc" }, { 1, 3, 25, "sse" }, { 1, 3, 26, "sse2" },
		{ 7, 1, 5, "avx2" }, { 7, 1, 3, "bmi1" }, { 7, 1, 8, "bmi2" },
		{ 7, 1, 16, "avx512f" }, { 7, 1, 18, "rdseed" }, { 7, 1, 19, "adx" },
		{ 7, 1, 29, "sha" }, { 7, 2, 1, "avx512vbmi" }, { 7, 3, 4, "fsrm" },
		{ 0x80000001, 3, 27, "rdtscp" }, { 0x80000001, 3, 26, "pdpe1gb" },
		{ 0x80000001, 2, 5, "lzcnt" }, { 0x80000007, 3, 8, "invtsc" },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].function == function && names[i].reg == reg &&
		    names[i].bit == bit)
			return names[i].name;
	return NULL;
}

int ss_host_compatible(const struct ss_host *saved, const struct ss_host *here,
		       char *err, size_t errlen)
{
	if (strcmp(saved->cpu_vendor, here->cpu_vendor) != 0) {
		snprintf(err, errlen, "the guest ran on a %s CPU; this host's is %s",
			 saved->cpu_vendor, here->cpu_vendor);
		return -EINVAL;
	}
	for (size_t i = 0; i < sizeof(feature_regs) / sizeof(feature_regs[0]); i++) {
		const struct feature_reg *f = &feature_regs[i];
		const struct ss_cpuid *g = find(saved, f->function, f->index);
		const struct ss_cpuid *h = find(here, f->function, f->index);
		uint32_t want, have, missing;

		if (!g)
			continue;
		want = reg_of(g, f->reg) & ~f->ignore;
		have = h ? reg_of(h, f->reg) : 0;
		missing = want & ~have;
		if (missing) {
			int bit = __builtin_ctz(missing);
			const char *name = feature_name(f->function, f->reg, bit);

			snprintf(err, errlen,
				 "CPU feature %s%s(%s bit %d) that the guest was given is missing on this host",
				 name ? name : "", name ? " " : "", f->name, bit);
			return -EINVAL;
		}
	}
	/* Within 250 ppm, as NTP tolerates, since no rate can be set here. */
	if (saved->tsc_khz && here->tsc_khz &&
	    (uint64_t)(saved->tsc_khz > here->tsc_khz ? saved->tsc_khz - here->tsc_khz :
			here->tsc_khz - saved->tsc_khz) * 4000 > saved->tsc_khz) {
		snprintf(err, errlen,
			 "the guest's TSC ran at %u kHz and this host's runs at %u kHz, which KVM here cannot make up for",
			 saved->tsc_khz, here->tsc_khz);
		return -EINVAL;
	}
	return 0;
}
