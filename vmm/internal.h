/* SPDX-License-Identifier: MIT */
/* Internals of the VM worker, shared by the files of vmm/. */
#ifndef FSVISOR_VMM_INTERNAL_H
#define FSVISOR_VMM_INTERNAL_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/util.h"
#include "vmm/vmm.h"

#define KiB (1024ULL)
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)

/* ---- the guest physical address map -------------------------------- */

#define GPA_GDT		0x500ULL	/* boot GDT */
#define GPA_ZERO_PAGE	0x7000ULL	/* struct boot_params */
#define GPA_PML4	0x9000ULL	/* boot page tables: PML4, PDPT, 4 PDs */
#define GPA_PDPT	0xA000ULL
#define GPA_PD		0xB000ULL
#define GPA_PAGE_TABLES_END 0xF000ULL
#define GPA_CMDLINE	0x20000ULL
#define CMDLINE_MAX	4096
#define GPA_EBDA	0x9FC00ULL	/* low RAM ends here */
#define GPA_ACPI	0xE0000ULL	/* RSDP and tables, in the BIOS area */
#define GPA_ACPI_END	0x100000ULL
#define GPA_KERNEL	0x100000ULL	/* bzImage protected-mode code */
#define GPA_PCI_HOLE	0xC0000000ULL	/* RAM below 4 GiB ends here */
#define GPA_PCI_MMIO	0xC0000000ULL	/* 32-bit BAR window */
#define GPA_PCI_MMIO_END 0xFE000000ULL
#define GPA_IDENTITY_MAP 0xFEFFC000ULL	/* KVM_SET_IDENTITY_MAP_ADDR, 1 page */
#define GPA_TSS		0xFEFFD000ULL	/* KVM_SET_TSS_ADDR, 3 pages */
#define GPA_IOAPIC	0xFEC00000ULL
#define GPA_LAPIC	0xFEE00000ULL
#define GPA_4G		0x100000000ULL

/* I/O ports of our ACPI hardware-reduced power management. */
#define PM_SLEEP_CONTROL 0x600
#define PM_SLEEP_STATUS	0x601
#define PM_RESET	0x604
#define PM_RESET_VALUE	0x01
#define PM_S5_TYPE	5	/* SLP_TYP of \_S5 */
/* The Generic Event Device's interrupt: the power button. */
#define GED_GSI		9

#define COM1_PORT	0x3F8
#define COM1_IRQ	4

/* ---- configuration (config.c) ---------------------------------------- */

enum fault_action {
	FAULT_STOP,
	FAULT_RESET,
};

#define VM_MAX_DISKS 16
#define DISK_SERIAL_MAX 20	/* virtio-blk GET_ID: 20 bytes */

struct vm_disk_config {
	char *path;
	int format;			/* enum vdisk_format */
	bool read_only;
	char serial[DISK_SERIAL_MAX + 1];
};

#define VM_MAX_NICS VMM_MAX_NICS

struct vm_nic_config {
	uint8_t mac[6];
};

/* The vsock device: a guest CID, or 0 for none. */
struct vm_vsock_config {
	uint64_t cid;
};

struct vm_config {
	char name[NAME_MAX_LEN + 1];
	/* From a saved state: nothing is booted, so no kernel is needed. */
	bool restored;
	unsigned int cpus;
	uint64_t memory;
	char *kernel;
	char *initrd;
	char *cmdline;
	char **cpu_mask;		/* CPUID features to hide */
	size_t ncpu_mask;
	enum fault_action on_triple_fault;
	enum fault_action on_reboot;
	struct vm_disk_config disks[VM_MAX_DISKS];
	unsigned int ndisks;
	struct vm_nic_config nics[VM_MAX_NICS];
	unsigned int nnics;
	struct vm_vsock_config vsock;	/* cid 0: no vsock device */
};

/*
 * The PCI functions a VM of @cfg has, in slot order from 0: the host
 * bridge, each disk, each NIC, the vsock device (vm_build() adds them so;
 * a saved state has a section for each).
 */
unsigned int vm_config_pci_functions(const struct vm_config *cfg);

/* "52:54:00:12:34:56" into @mac; -EINVAL unless six hex octets. */
int mac_parse(const char *s, uint8_t mac[6]);
/* "52:54:00:12:34:56"; @buf holds at least 18 bytes. */
char *mac_format(const uint8_t mac[6], char *buf);

/* A refused configuration or kernel: the reason into @err, -EINVAL (config.c). */
int vmm_fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- /dev/kvm (kvm.c) ------------------------------------------------ */

/* Open /dev/kvm and check what we need; -errno and a reason otherwise. */
int kvm_open(int *kvm_fd, char *err, size_t errlen);
int kvm_max_vcpus(int kvm_fd);

/* ---- guest memory (memory.c) -------------------------------------------- */

struct guest_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
};

struct guest_mem {
	int memfd;
	uint8_t *base;			/* the whole memfd, mapped shared */
	uint64_t size;
	struct guest_region region[2];	/* below the PCI hole, above 4 GiB */
	int nregions;
};

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};

#define E820_RAM	1
#define E820_RESERVED	2

int mem_create(struct guest_mem *m, uint64_t size, char *err, size_t errlen);
int mem_register(struct guest_mem *m, int vm_fd);
void mem_destroy(struct guest_mem *m);
/* Zero all of RAM (and give the host its pages back), for a reset. */
int mem_clear(struct guest_mem *m);
/*
 * Host pointer for guest bytes [gpa, gpa+len), or NULL unless they lie
 * entirely inside one RAM region.  Every guest-supplied address goes
 * through here.
 */
void *gpa_to_hva(const struct guest_mem *m, uint64_t gpa, uint64_t len);
int mem_e820(const struct guest_mem *m, struct e820_entry *out, int max);

/* ---- port and MMIO dispatch (bus.c) ------------------------------------ */

/* A device's handler: @offset is from the start of its range. */
typedef void (*io_fn)(void *opaque, uint64_t offset, uint8_t *data,
		      unsigned int len, bool write);

struct io_range {
	uint64_t base;
	uint64_t len;
	io_fn fn;
	void *opaque;
	const char *name;
};

struct io_bus {
	pthread_rwlock_t lock;
	struct io_range *ranges;	/* sorted by base, never overlapping */
	size_t n;
	const char *name;
	_Atomic uint64_t unclaimed;	/* accesses nobody answered */
};

void bus_init(struct io_bus *bus, const char *name);
void bus_destroy(struct io_bus *bus);
int bus_register(struct io_bus *bus, uint64_t base, uint64_t len, io_fn fn,
		 void *opaque, const char *name);
int bus_unregister(struct io_bus *bus, uint64_t base, void *opaque);
/* Returns false for an unclaimed address (reads then see all-ones). */
bool bus_dispatch(struct io_bus *bus, uint64_t addr, uint8_t *data,
		  unsigned int len, bool write);

/* ---- console (console.c) -------------------------------------------- */

/*
 * Serial output collects here, in a ring; the worker's event loop drains
 * it to stdout, the log file and control-socket subscribers.
 */
struct console;

struct console *console_create(void);
void console_destroy(struct console *c);
void console_write(struct console *c, const uint8_t *buf, size_t len);
/* An eventfd readable while output waits to be drained. */
int console_eventfd(struct console *c);
/* Copy up to @len new bytes after *cursor; returns the count (0: none). */
size_t console_read(struct console *c, uint64_t *cursor, uint8_t *buf,
		    size_t len);
/* The oldest byte still in the ring, and the next one to be written. */
uint64_t console_oldest(struct console *c);
uint64_t console_head(struct console *c);

/* ---- devices -------------------------------------------------------- */

struct vm;
struct ss_writer;
struct ss_reader;
struct ss_section;
struct ss_rsection;
struct mem_loader;

#define STATE_MSRS_MAX 128

struct serial;
struct serial *serial_create(struct vm *vm, uint16_t port, int irq,
			     struct console *out);
void serial_destroy(struct serial *s);
/* Put input into the receive FIFO; returns how many bytes fit. */
size_t serial_input(struct serial *s, const uint8_t *buf, size_t len);
/* An eventfd to signal whenever the guest empties the receive FIFO. */
void serial_set_room_fd(struct serial *s, int fd);
void serial_reset(struct serial *s);
/* Saved state: each base device in a section of its own ("dev:serial"). */
int serial_save(struct serial *s, struct ss_writer *w);
int serial_restore(struct serial *s, struct ss_reader *r, char *err, size_t errlen);

struct cmos;
struct cmos *cmos_create(struct vm *vm);
void cmos_destroy(struct cmos *c);
int cmos_save(struct cmos *c, struct ss_writer *w);
int cmos_restore(struct cmos *c, struct ss_reader *r, char *err, size_t errlen);

struct i8042;
struct i8042 *i8042_create(struct vm *vm);
void i8042_destroy(struct i8042 *k);
int i8042_save(struct i8042 *k, struct ss_writer *w);
int i8042_restore(struct i8042 *k, struct ss_reader *r, char *err, size_t errlen);

struct pm;
struct pm *pm_create(struct vm *vm);
void pm_destroy(struct pm *pm);
/* Press the ACPI power button: an edge on the GED's interrupt. */
void pm_power_button(struct pm *pm);

/* PCI (pci.c) */
#define PCI_CFG_SIZE 256

struct pci_device;
typedef void (*pci_cfg_hook)(struct pci_device *dev, unsigned int off,
			     unsigned int len);

enum pci_bar_type {
	PCI_BAR_NONE,
	PCI_BAR_IO,
	PCI_BAR_MEM32,
	PCI_BAR_MEM64,
};

struct pci_bar {
	enum pci_bar_type type;
	uint64_t size;			/* power of two */
	uint64_t addr;			/* as assigned */
	io_fn fn;
	void *opaque;
	bool mapped;
};

struct pci_device {
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];	/* bits the guest may write */
	struct pci_bar bar[6];
	unsigned int cap_next;		/* where the next capability goes */
	unsigned int cap_last;		/* offset of the last one, or 0 */
	unsigned int devfn;
	const char *name;
	/* Called after the guest writes config space (already applied). */
	pci_cfg_hook cfg_written;
	/* Called before a config space read, to fill in live values. */
	pci_cfg_hook cfg_read;
	/* A BAR was mapped at @addr, or unmapped (@mapped false). */
	void (*bar_moved)(struct pci_device *dev, int n, uint64_t addr,
			  bool mapped);
	/* Saved state: what the function adds to its section, and back. */
	void (*save)(struct pci_device *dev, struct ss_section *s);
	int (*restore)(struct pci_device *dev, struct ss_rsection *s, char *err,
		       size_t errlen);
	void *opaque;
	struct pci_bus *bus;
};

struct pci_bus;
struct pci_bus *pci_create(struct vm *vm);
void pci_destroy(struct pci_bus *pci);
/*
 * Add @dev in the next free slot.  Fill vendor, device, class and BARs
 * first; BARs get addresses here, as firmware would assign them.
 */
int pci_add(struct pci_bus *pci, struct pci_device *dev);
void pci_set_id(struct pci_device *dev, uint16_t vendor, uint16_t device,
		uint32_t class_code, uint8_t revision);
void pci_set_bar(struct pci_device *dev, int n, enum pci_bar_type type,
		 uint64_t size, io_fn fn, void *opaque);
/* Add a capability of @len bytes; returns its offset in config space. */
int pci_add_capability(struct pci_device *dev, uint8_t id, unsigned int len);
void pci_reset_devices(struct pci_bus *pci);
/*
 * Saved state: the bus ("dev:pci") and each function ("pci:DEVFN": its
 * configuration space, then what its @save adds).  Restoring writes the
 * configuration space back, maps the BARs where it says, then calls the
 * function's @restore.
 */
int pci_save(struct pci_bus *pci, struct ss_writer *w);
int pci_restore(struct pci_bus *pci, struct ss_reader *r, char *err, size_t errlen);

/* ---- CPUID (cpuid.c) ------------------------------------------------ */

/* Check the feature names of a mask; returns the first unknown one. */
const char *cpuid_unknown_feature(char **names, size_t n);
int cpuid_setup(struct vm *vm, int vcpu_fd, unsigned int vcpu_id, char *err,
		size_t errlen);

/* ---- boot (boot.c) ---------------------------------------------------- */

enum kernel_kind {
	KERNEL_BZIMAGE,
	KERNEL_ELF,
};

struct kernel_image {
	enum kernel_kind kind;
	uint8_t *data;
	size_t size;
	uint64_t entry;			/* guest physical */
	/* bzImage */
	uint16_t protocol;
	size_t setup_size;
	uint32_t initrd_addr_max;
	uint32_t cmdline_size;
	uint32_t kernel_alignment;
	uint32_t init_size;
};

/* Read and check a kernel; a sentence saying why it cannot boot. */
int kernel_load(const char *path, struct kernel_image *k, char *err,
		size_t errlen);
void kernel_free(struct kernel_image *k);

struct boot_state {
	uint64_t entry;
	uint64_t zero_page;
	uint64_t cr3;
};

/* Lay the kernel, initrd, command line, zero page and tables in RAM. */
int boot_prepare(struct vm *vm, struct boot_state *bs, char *err,
		 size_t errlen);
/* Registers and segments for the BSP's 64-bit entry. */
int boot_set_regs(int vcpu_fd, const struct boot_state *bs);

/* ACPI tables (acpi.c); returns the RSDP's address. */
uint64_t acpi_build(struct vm *vm);

/* ---- the VM (vm.c, vcpu.c) --------------------------------------------- */

struct vcpu_stats {
	_Atomic uint64_t total;
	_Atomic uint64_t io;
	_Atomic uint64_t mmio;
	_Atomic uint64_t hlt;
	_Atomic uint64_t intr;
	_Atomic uint64_t other;
};

struct vcpu {
	struct vm *vm;
	unsigned int id;
	int fd;
	struct kvm_cpuid2 *cpuid;	/* what it was given (saved states keep it) */
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	bool parked;
	unsigned int settled;		/* the VM's settle_gen it has settled for */
	struct vcpu_stats stats;
	struct kvm_lapic_state lapic0;	/* as created: restored on reset */
};

enum vm_request {
	REQ_NONE,
	REQ_PAUSE,
	REQ_STOP,
};

/* What a vCPU asks the worker's event loop to do. */
enum vm_event {
	VMEV_NONE,
	VMEV_POWEROFF,
	VMEV_RESET,
	VMEV_FAILED,
};

struct vm {
	const struct vm_config *cfg;
	int kvm_fd;
	int vm_fd;
	int run_size;
	struct guest_mem mem;
	struct io_bus pio;
	struct io_bus mmio;
	struct vcpu *vcpus;
	unsigned int ncpus;
	struct kernel_image kernel;
	uint8_t *initrd;
	size_t initrd_size;

	struct console *console;
	struct serial *com1;
	struct cmos *cmos;
	struct i8042 *kbd;
	struct pm *pm;
	struct pci_bus *pci;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum vm_request request;
	bool paused;			/* by a control command */
	/* A pause for a capture: each vCPU completes its I/O exit, once per round. */
	unsigned int settle_gen;

	int event_fd;			/* wakes the event loop */
	enum vm_event event;		/* under lock */
	char error[1024];		/* why VMEV_FAILED */

	/* Initial in-kernel irqchip and PIT state, restored on reset. */
	struct kvm_irqchip pic0[2];
	struct kvm_irqchip ioapic0;
	struct kvm_pit_state2 pit0;

	/* MSI routes for irqfds (irq.c), under route_lock. */
	pthread_mutex_t route_lock;
	struct msi_route *routes;
	unsigned int nroutes;
	unsigned int next_gsi;

	/* Devices on the PCI bus that need a reset or teardown. */
	struct vm_device *devices;
	/* The NICs, in slot order (also among the devices). */
	struct virtio_net *nics[VM_MAX_NICS];
	unsigned int nnics;
	/* The vsock device (also among the devices), or NULL; its host sockets' directory. */
	struct virtio_vsock *vsock;
	const char *vsock_dir;

	/* Saved state (state/): the MSRs that make a vCPU's state; the loader. */
	uint32_t state_msrs[STATE_MSRS_MAX];
	unsigned int nstate_msrs;
	struct mem_loader *loader;
	/* Restoring: the CPUID each vCPU gets, from the state. */
	struct kvm_cpuid2 **restore_cpuid;

	uint64_t started_ns;
	unsigned int resets;
	uint64_t first_run_ns;		/* when the BSP first entered KVM_RUN */
	uint64_t first_run_cpu_us;	/* process CPU time by then */
	_Atomic bool first_run_seen;
};

/* @vsock_dir: where the vsock device's host sockets go (when it has one). */
int vm_create(const struct vm_config *cfg, const char *vsock_dir, struct vm **out,
	      char *err, size_t errlen);
void vm_destroy(struct vm *vm);
/* Start (or restart) the vCPU threads. */
int vm_start(struct vm *vm, char *err, size_t errlen);
/* Park every vCPU; returns once they are parked. */
void vm_pause(struct vm *vm);
/*
 * The same, and each vCPU first completes an I/O exit it was in (KVM
 * finishes it only on the next KVM_RUN): its state is then whole.
 */
void vm_pause_settled(struct vm *vm);
void vm_resume(struct vm *vm);
/* Stop the vCPU threads for good and wait for them. */
void vm_stop(struct vm *vm);
/* Back to power-on state: RAM, registers, irqchip, devices; then boot. */
int vm_reset(struct vm *vm, char *err, size_t errlen);

/* For devices and vCPUs: ask the event loop to act. */
void vm_post_event(struct vm *vm, enum vm_event ev, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
enum vm_event vm_take_event(struct vm *vm, char *msg, size_t len);
int vm_irq_line(struct vm *vm, int gsi, int level);

/* irq.c: MSI through GSI routes and irqfds; ioeventfds. */
struct msi_route {
	uint32_t gsi;
	uint64_t addr;
	uint32_t data;
	bool valid;
};

/*
 * A new GSI for MSI with an irqfd: writing 1 to *efd injects the MSI the
 * route currently says (nothing while the route is invalid).
 */
int vm_msi_alloc(struct vm *vm, uint32_t *gsi, int *efd);
int vm_msi_route(struct vm *vm, uint32_t gsi, uint64_t addr, uint32_t data,
		 bool valid);
void vm_msi_free(struct vm *vm, uint32_t gsi, int efd);
/* Have KVM signal @fd for @len-byte writes to MMIO @addr, or stop it. */
int vm_ioeventfd(struct vm *vm, uint64_t addr, unsigned int len, int fd,
		 bool assign);

/* A device to reset with the VM and to destroy with it. */
struct vm_device {
	void (*reset)(void *opaque);
	/*
	 * Before a capture: finish and flush what is in flight, take nothing
	 * more (@on); after it, go on.  Guest memory is not touched between.
	 */
	void (*quiesce)(void *opaque, bool on);
	void (*destroy)(void *opaque);
	/* Counters for "status", or NULL. */
	json_t *(*stats)(void *opaque);
	void *opaque;
	struct vm_device *next;
};

int vm_add_device(struct vm *vm, void (*reset)(void *), void (*destroy)(void *),
		  json_t *(*stats)(void *), void *opaque);
/* The device just added quiesces for a capture with @fn. */
void vm_device_quiesce(struct vm *vm, void (*fn)(void *opaque, bool on));

/* ---- saved state (state/save.c) --------------------------------------------- */

/*
 * Capture the VM into a new saved state @dir.  The vCPUs are left paused
 * (vm->paused is the caller's to change); the devices go on.
 */
int vm_save_state(struct vm *vm, const char *dir, char *err, size_t errlen);
/*
 * Before a VM is made from @r: the configuration against it, the host's
 * fingerprint, every vCPU record.  No KVM state is touched.
 */
int vm_state_check(const struct vm_config *cfg, struct ss_reader *r, char *err,
		   size_t errlen);
/*
 * Make a VM from @cfg (cfg->restored) and @r (checked): nothing booted, all
 * of the state applied, RAM loaded lazily.  The VM keeps @r until RAM is
 * all in.
 */
int vm_create_restored(const struct vm_config *cfg, const char *vsock_dir,
		       struct ss_reader *r, struct vm **out, char *err, size_t errlen);
int vm_restore_state(struct vm *vm, struct ss_reader *r, char *err, size_t errlen);

/*
 * NICs (virtio_net.c), for the worker's control commands: connect NIC
 * @index to the backend socket @fd (taken over: closed by the NIC when
 * it is done with it, or here on failure), disconnect it, and the
 * counters of every NIC for "status".
 */
struct virtio_net;
int vm_nic_connect(struct vm *vm, unsigned int index, int fd, char *err,
		   size_t errlen);
int vm_nic_disconnect(struct vm *vm, unsigned int index, char *err,
		      size_t errlen);
json_t *vm_nic_stats(struct vm *vm);

/* vcpu.c */
int vcpu_create(struct vm *vm, struct vcpu *v, unsigned int id, char *err,
		size_t errlen);
void vcpu_destroy(struct vcpu *v);
void *vcpu_thread(void *arg);
/* Make a vCPU leave KVM_RUN soon (called with vm->lock held). */
void vcpu_kick(struct vcpu *v);
/* Restore the power-on state of a vCPU. */
int vcpu_reset(struct vcpu *v, const struct boot_state *bs);

uint64_t now_ns(void);

#endif /* FSVISOR_VMM_INTERNAL_H */
