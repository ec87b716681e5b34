/* SPDX-License-Identifier: MIT */
/*
 * Saved state inside the worker (private to vmm/): capturing a running
 * VM into checkpoint/'s format and building one back from it.
 *
 *   save.c     the order of a capture and of a restore; the VM-wide KVM
 *              state (PIT, clock, the three irqchips)
 *   cpu.c      each vCPU's KVM state
 *   memory.c   guest RAM: written with its holes; loaded lazily on
 *              restore through userfaultfd, each chunk checked
 *
 * Devices save and restore themselves (serial.c, cmos.c, i8042.c, pci.c,
 * virtio/pci.c), each into a section of its own with its own version.
 */
#ifndef FSVISOR_VMM_STATE_H
#define FSVISOR_VMM_STATE_H

#include "checkpoint/checkpoint.h"
#include "vmm/internal.h"

#define STATE_VCPU_VERSION	1
#define STATE_VM_VERSION	1

/* cpu.c */
int state_msr_list(struct vm *vm, char *err, size_t errlen);
int state_xsave_size(struct vm *vm);
int state_save_vcpu(struct vcpu *v, struct ss_writer *w, char *err, size_t errlen);
/* Every record of vCPU @id's section there, at its size (no KVM call). */
int state_check_vcpu(struct ss_reader *r, unsigned int id, size_t xsave_size, char *err,
		     size_t errlen);
/* The CPUID vCPU @id was given (to set before its first KVM_RUN). */
struct kvm_cpuid2 *state_vcpu_cpuid(struct ss_reader *r, unsigned int id);
int state_restore_vcpu(struct vcpu *v, struct ss_reader *r, char *err, size_t errlen);
void state_kvmclock_ctrl(struct vm *vm);

/* memory.c */
int state_save_memory(struct vm *vm, struct ss_writer *w, char *err, size_t errlen);
/*
 * Serve guest RAM from the saved state lazily: chunks are loaded (and
 * checked) when first touched, and the rest in the background.  The
 * reader stays open until every chunk is in.
 */
int state_memory_start(struct vm *vm, struct ss_reader *r, char *err, size_t errlen);
/* Wait until every chunk is in (or stop loading: @discard, for a reset). */
void state_memory_finish(struct vm *vm, bool discard);
/* Chunks still to load (0 when done), for "status". */
uint64_t state_memory_pending(struct vm *vm);

/* save.c */
int state_host_fingerprint(struct vm *vm, struct ss_host *h, char *err, size_t errlen);

#endif /* FSVISOR_VMM_STATE_H */
