/* SPDX-License-Identifier: MIT */
/*
 * vmm: the VM worker.  One process runs one VM on KVM: guest RAM, vCPU
 * threads, the boot of a Linux bzImage or ELF64 kernel, ACPI tables and
 * the base devices, with the console on stdio and/or a control socket.
 *
 * The configuration is a JSON document (docs/vm-config.md); everything
 * in it is checked before any guest code runs.
 */
#ifndef FSVISOR_VMM_H
#define FSVISOR_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define VMM_MAX_CPUS 64
/* NICs of one VM. */
#define VMM_MAX_NICS 8
/* Size of the console ring file (--console-ring). */
#define CONSOLE_RING_FILE (1024 * 1024)

struct vm_config;

/*
 * Parse and check a configuration: types, ranges, that the kernel and
 * initrd are readable files and the kernel is one we can boot, that the
 * memory fits the host.  On failure, a sentence naming the problem.
 */
int vm_config_parse(const json_t *doc, struct vm_config **out, char *err,
		    size_t errlen);
/*
 * The same for the configuration a saved state holds: nothing is booted,
 * so the kernel and initrd are not required any more.
 */
int vm_config_parse_saved(const json_t *doc, struct vm_config **out, char *err,
			  size_t errlen);
void vm_config_free(struct vm_config *cfg);
/* The configuration with every default filled in. */
json_t *vm_config_to_json(const struct vm_config *cfg);

/* Why /dev/kvm cannot be used, or NULL if it can (API version in *api). */
const char *vmm_kvm_problem(int *api);
/* Most vCPUs a VM may have here: VMM_MAX_CPUS or less if KVM says so. */
unsigned int vmm_max_cpus(void);
/*
 * Whether @path is a kernel we can boot (bzImage with a 64-bit entry, or
 * ELF64 x86-64); a sentence saying why not otherwise.
 */
int vmm_kernel_check(const char *path, char *err, size_t errlen);

/*
 * Why @fd cannot be a NIC's backend (it must be an open AF_UNIX
 * SOCK_SEQPACKET socket), or NULL if it can.
 */
const char *vmm_nic_fd_problem(int fd);

struct vm_worker_opts {
	/* Console on stdin/stdout (the terminal in raw mode if it is one). */
	bool stdio_console;
	/* SOCK_SEQPACKET control socket to listen on, or NULL. */
	const char *control_path;
	/* Append console output to this file, or NULL. */
	const char *console_log;
	/*
	 * Keep console output in this ring file (util.h: ringfile), or NULL:
	 * what the service serves as a VM's "console".
	 */
	const char *console_ring;
	/* Report start-up timing and memory on stderr (bench/vmm.sh). */
	bool report_startup;
	/*
	 * Backend sockets for the NICs at start, by slot: nic_fds[i] connects
	 * NIC i (-1: none, link down).  The worker takes them over.
	 */
	const int *nic_fds;
	unsigned int n_nic_fds;
	/*
	 * Restore from this saved state (docs/saved-state.md) instead of
	 * booting: the configuration comes from it (the vm_config given is
	 * then NULL).
	 */
	const char *restore_dir;
	/*
	 * Where the vsock device's host sockets are ("vsock", "vsock_PORT"):
	 * NULL for the current directory.
	 */
	const char *vsock_dir;
};

/* Exit statuses of a worker, as `fsvisor vm run` returns them. */
enum vm_exit_status {
	VM_EXIT_POWEROFF = 0,	/* the guest powered off, or "stop" */
	VM_EXIT_SETUP = 1,	/* bad configuration or host problem */
	VM_EXIT_USAGE = 2,
	VM_EXIT_FAILED = 3,	/* emulation failure, internal error, triple fault */
	VM_EXIT_KILLED = 4,	/* "kill" on the control socket, or Ctrl-a x */
	VM_EXIT_SAVED = 5,	/* "save" with "then": "stop": the state is saved */
};

/* Run the VM until it ends; returns an enum vm_exit_status. */
int vm_worker_run(const struct vm_config *cfg, const struct vm_worker_opts *opts);

/*
 * What a saved state is and whether this host can restore it: the
 * manifest's summary plus "restorable" (true or false) and "why not".
 * NULL with a reason when it is not a readable saved state at all.
 */
json_t *vmm_state_info(const char *dir, char *err, size_t errlen);

#endif /* FSVISOR_VMM_H */
