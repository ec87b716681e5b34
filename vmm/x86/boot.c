// SPDX-License-Identifier: MIT
/*
 * Booting a kernel: a Linux bzImage through the 64-bit boot protocol
 * (Documentation/arch/x86/boot.rst), or an ELF64 image (vmlinux, the
 * test guest) entered the same way.  We build what a boot loader would:
 * the zero page (struct boot_params: setup header, e820 map, command
 * line, initrd, RSDP), identity page tables for the first 4 GiB and a
 * GDT with __BOOT_CS (0x10) and __BOOT_DS (0x18); the BSP starts in long
 * mode at the entry point with %rsi pointing at the zero page.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/internal.h"

/* Setup header fields, by offset in the bzImage and in the zero page. */
#define HDR_START		0x1F1
#define HDR_SETUP_SECTS		0x1F1
#define HDR_SYSSIZE		0x1F4
#define HDR_VID_MODE		0x1FA
#define HDR_BOOT_FLAG		0x1FE
#define HDR_JUMP		0x200
#define HDR_MAGIC		0x202
#define HDR_VERSION		0x206
#define HDR_TYPE_OF_LOADER	0x210
#define HDR_LOADFLAGS		0x211
#define HDR_RAMDISK_IMAGE	0x218
#define HDR_RAMDISK_SIZE	0x21C
#define HDR_CMD_LINE_PTR	0x228
#define HDR_INITRD_ADDR_MAX	0x22C
#define HDR_KERNEL_ALIGNMENT	0x230
#define HDR_RELOCATABLE		0x234
#define HDR_XLOADFLAGS		0x236
#define HDR_CMDLINE_SIZE	0x238
#define HDR_PREF_ADDRESS	0x258
#define HDR_INIT_SIZE		0x260

#define ZP_ACPI_RSDP		0x070
#define ZP_EXT_RAMDISK_IMAGE	0x0C0
#define ZP_EXT_RAMDISK_SIZE	0x0C4
#define ZP_EXT_CMD_LINE_PTR	0x0C8
#define ZP_E820_ENTRIES		0x1E8
#define ZP_E820_TABLE		0x2D0
#define ZP_E820_MAX		128

#define BOOT_MAGIC		0x53726448	/* "HdrS" */
#define XLF_KERNEL_64		(1u << 0)
#define LOADED_HIGH		(1u << 0)
#define MIN_PROTOCOL		0x020C	/* 2.12: xloadflags, 64-bit entry */
#define ENTRY_64_OFFSET		0x200
#define BOOT_STACK		0x8FF0ULL

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16;
}

static uint64_t rd64(const uint8_t *p)
{
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void wr32(uint8_t *p, uint32_t v)
{
	wr16(p, (uint16_t)v);
	wr16(p + 2, (uint16_t)(v >> 16));
}

static void wr64(uint8_t *p, uint64_t v)
{
	wr32(p, (uint32_t)v);
	wr32(p + 4, (uint32_t)(v >> 32));
}

static int read_file(const char *path, uint8_t **data, size_t *size, char *err,
		     size_t errlen)
{
	struct stat st;
	size_t done = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return vmm_fail(err, errlen, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return vmm_fail(err, errlen, "%s is not a regular file", path);
	}
	*size = (size_t)st.st_size;
	*data = malloc(*size ? *size : 1);
	if (!*data) {
		close(fd);
		return -ENOMEM;
	}
	while (done < *size) {
		ssize_t n = read(fd, *data + done, *size - done);

		if (n <= 0) {
			free(*data);
			close(fd);
			return vmm_fail(err, errlen, "%s: read failed", path);
		}
		done += (size_t)n;
	}
	close(fd);
	return 0;
}

/* ---- parsing ------------------------------------------------------------ */

static int parse_bzimage(struct kernel_image *k, const char *path, char *err,
			 size_t errlen)
{
	const uint8_t *d = k->data;
	unsigned int setup_sects;
	uint64_t pm_size, need;
	uint8_t xloadflags;

	if (k->size < HDR_INIT_SIZE + 4)
		return vmm_fail(err, errlen, "%s: truncated bzImage (%zu bytes, shorter than the setup header)",
			    path, k->size);
	k->protocol = rd16(d + HDR_VERSION);
	if (k->protocol < MIN_PROTOCOL)
		return vmm_fail(err, errlen, "%s: boot protocol %u.%02u is older than 2.12 and has no 64-bit entry point",
			    path, k->protocol >> 8, k->protocol & 0xff);
	xloadflags = d[HDR_XLOADFLAGS];
	if (!(xloadflags & XLF_KERNEL_64))
		return vmm_fail(err, errlen, "%s: this bzImage has no 64-bit entry point (xloadflags bit 0 is clear)",
			    path);
	setup_sects = d[HDR_SETUP_SECTS] ? d[HDR_SETUP_SECTS] : 4;
	k->setup_size = (size_t)(setup_sects + 1) * 512;
	pm_size = (uint64_t)rd32(d + HDR_SYSSIZE) * 16;
	need = k->setup_size + pm_size;
	if (k->size < need)
		return vmm_fail(err, errlen, "%s: truncated bzImage: %zu bytes, the header says %llu",
			    path, k->size, (unsigned long long)need);
	k->initrd_addr_max = rd32(d + HDR_INITRD_ADDR_MAX);
	k->cmdline_size = rd32(d + HDR_CMDLINE_SIZE);
	k->kernel_alignment = rd32(d + HDR_KERNEL_ALIGNMENT);
	k->init_size = rd32(d + HDR_INIT_SIZE);
	/* A relocatable kernel goes at 1 MiB; others where they want. */
	k->entry = GPA_KERNEL;
	if (!d[HDR_RELOCATABLE] && rd64(d + HDR_PREF_ADDRESS) >= GPA_KERNEL)
		k->entry = rd64(d + HDR_PREF_ADDRESS);
	k->entry += ENTRY_64_OFFSET;
	k->kind = KERNEL_BZIMAGE;
	return 0;
}

/* Program headers of a checked ELF64 image. */
static const Elf64_Phdr *elf_phdr(const struct kernel_image *k, int i)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)k->data;

	return (const Elf64_Phdr *)(k->data + eh->e_phoff + (size_t)i * eh->e_phentsize);
}

static int parse_elf(struct kernel_image *k, const char *path, char *err,
		     size_t errlen)
{
	Elf64_Ehdr eh;
	bool entry_found = false;
	int loads = 0;

	if (k->size < sizeof(eh))
		return vmm_fail(err, errlen, "%s: truncated ELF file", path);
	memcpy(&eh, k->data, sizeof(eh));
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh.e_machine != EM_X86_64)
		return vmm_fail(err, errlen, "%s: not a 64-bit little-endian x86-64 ELF file", path);
	if (eh.e_type != ET_EXEC)
		return vmm_fail(err, errlen, "%s: not an executable ELF image (type %u)",
			    path, eh.e_type);
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
	    eh.e_phoff > k->size ||
	    (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > k->size - eh.e_phoff ||
	    eh.e_phoff % 8)
		return vmm_fail(err, errlen, "%s: ELF program headers are missing or out of bounds",
			    path);
	k->entry = eh.e_entry;
	for (int i = 0; i < eh.e_phnum; i++) {
		const Elf64_Phdr *ph = elf_phdr(k, i);

		if (ph->p_type != PT_LOAD)
			continue;
		loads++;
		if (ph->p_offset > k->size || ph->p_filesz > k->size - ph->p_offset)
			return vmm_fail(err, errlen, "%s: segment %d lies past the end of the file",
				    path, i);
		if (ph->p_filesz > ph->p_memsz)
			return vmm_fail(err, errlen, "%s: segment %d has more file than memory bytes",
				    path, i);
		if (ph->p_paddr + ph->p_memsz < ph->p_paddr)
			return vmm_fail(err, errlen, "%s: segment %d wraps around", path, i);
		if (eh.e_entry >= ph->p_paddr && eh.e_entry - ph->p_paddr < ph->p_memsz)
			entry_found = true;
		else if (!entry_found && eh.e_entry >= ph->p_vaddr &&
			 eh.e_entry - ph->p_vaddr < ph->p_memsz) {
			/* A virtual entry address: use its physical twin. */
			k->entry = eh.e_entry - ph->p_vaddr + ph->p_paddr;
			entry_found = true;
		}
	}
	if (!loads)
		return vmm_fail(err, errlen, "%s: no loadable segments", path);
	if (!entry_found)
		return vmm_fail(err, errlen, "%s: entry point 0x%llx is outside the loaded segments",
			    path, (unsigned long long)eh.e_entry);
	k->kind = KERNEL_ELF;
	return 0;
}

int kernel_load(const char *path, struct kernel_image *k, char *err,
		size_t errlen)
{
	int ret;

	memset(k, 0, sizeof(*k));
	ret = read_file(path, &k->data, &k->size, err, errlen);
	if (ret)
		return ret;
	if (k->size >= 4 && memcmp(k->data, ELFMAG, SELFMAG) == 0)
		ret = parse_elf(k, path, err, errlen);
	else if (k->size >= HDR_MAGIC + 4 && rd32(k->data + HDR_MAGIC) == BOOT_MAGIC &&
		 rd16(k->data + HDR_BOOT_FLAG) == 0xAA55)
		ret = parse_bzimage(k, path, err, errlen);
	else if (k->size >= HDR_MAGIC + 4 && rd32(k->data + HDR_MAGIC) == BOOT_MAGIC)
		ret = vmm_fail(err, errlen, "%s: bzImage without the 0xAA55 boot flag", path);
	else
		ret = vmm_fail(err, errlen, "%s is not a kernel: no bzImage header ('HdrS') and no ELF magic",
			   path);
	if (ret)
		kernel_free(k);
	return ret;
}

int vmm_kernel_check(const char *path, char *err, size_t errlen)
{
	struct kernel_image k;
	int ret = kernel_load(path, &k, err, errlen);

	if (!ret)
		kernel_free(&k);
	return ret;
}

void kernel_free(struct kernel_image *k)
{
	free(k->data);
	k->data = NULL;
}

/* ---- laying it out in RAM -------------------------------------------- */

static int copy_in(struct vm *vm, uint64_t gpa, const void *src, uint64_t len,
		   uint64_t zero_after, char *err, size_t errlen)
{
	uint8_t *p = gpa_to_hva(&vm->mem, gpa, len + zero_after);

	if (!p)
		return vmm_fail(err, errlen, "%llu bytes at 0x%llx do not fit the VM's %llu MiB of RAM",
			    (unsigned long long)(len + zero_after),
			    (unsigned long long)gpa,
			    (unsigned long long)(vm->mem.size / MiB));
	memcpy(p, src, len);
	memset(p + len, 0, zero_after);
	return 0;
}

/* Our own boot structures live here; a kernel may not load over them. */
static bool overlaps_boot_area(uint64_t start, uint64_t len)
{
	static const uint64_t area[][2] = {
		{ GPA_GDT, GPA_GDT + 0x100 },
		{ GPA_ZERO_PAGE, GPA_PML4 },		/* and the boot stack */
		{ GPA_PML4, GPA_PAGE_TABLES_END },
		{ GPA_CMDLINE, GPA_CMDLINE + CMDLINE_MAX },
		{ GPA_ACPI, GPA_ACPI_END },
	};

	for (size_t i = 0; i < ARRAY_SIZE(area); i++)
		if (start < area[i][1] && area[i][0] < start + len)
			return true;
	return false;
}

static int load_elf(struct vm *vm, const struct kernel_image *k, uint64_t *end,
		    char *err, size_t errlen)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)k->data;

	*end = 0;
	for (int i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = elf_phdr(k, i);
		int ret;

		if (ph->p_type != PT_LOAD)
			continue;
		if (overlaps_boot_area(ph->p_paddr, ph->p_memsz))
			return vmm_fail(err, errlen, "ELF segment %d at 0x%llx overlaps the boot structures below 1 MiB",
				    i, (unsigned long long)ph->p_paddr);
		ret = copy_in(vm, ph->p_paddr, k->data + ph->p_offset, ph->p_filesz,
			      ph->p_memsz - ph->p_filesz, err, errlen);
		if (ret)
			return ret;
		if (ph->p_paddr + ph->p_memsz > *end)
			*end = ph->p_paddr + ph->p_memsz;
	}
	return 0;
}

static void build_page_tables(struct vm *vm)
{
	uint64_t *pml4 = gpa_to_hva(&vm->mem, GPA_PML4, 4096);
	uint64_t *pdpt = gpa_to_hva(&vm->mem, GPA_PDPT, 4096);
	uint64_t *pd = gpa_to_hva(&vm->mem, GPA_PD, 4 * 4096);

	/* Identity map of the first 4 GiB in 2 MiB pages. */
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = GPA_PDPT | 0x3;			/* present, writable */
	for (uint64_t i = 0; i < 4; i++) {
		pdpt[i] = (GPA_PD + i * 4096) | 0x3;
		for (uint64_t j = 0; j < 512; j++)
			pd[i * 512 + j] = ((i << 30) | (j << 21)) | 0x83;	/* + 2 MiB */
	}
}

static void build_gdt(struct vm *vm)
{
	uint64_t *gdt = gpa_to_hva(&vm->mem, GPA_GDT, 4 * 8);

	gdt[0] = 0;
	gdt[1] = 0;
	gdt[2] = 0x00AF9B000000FFFFULL;	/* 0x10: 64-bit code, execute/read */
	gdt[3] = 0x00CF93000000FFFFULL;	/* 0x18: flat data, read/write */
}

static int build_zero_page(struct vm *vm, const struct kernel_image *k,
			   uint64_t initrd_gpa, uint64_t rsdp, char *err,
			   size_t errlen)
{
	uint8_t *zp = gpa_to_hva(&vm->mem, GPA_ZERO_PAGE, 4096);
	struct e820_entry map[8];
	const char *cmdline = vm->cfg->cmdline;
	size_t cmdlen = strlen(cmdline);
	int n;

	memset(zp, 0, 4096);
	if (k->kind == KERNEL_BZIMAGE) {
		/* The setup header, copied as the kernel wrote it. */
		size_t hdr_end = HDR_JUMP + 2 + k->data[HDR_JUMP + 1];

		if (hdr_end > k->size || hdr_end > 4096)
			return vmm_fail(err, errlen, "bzImage setup header is too long");
		memcpy(zp + HDR_START, k->data + HDR_START, hdr_end - HDR_START);
		if (k->cmdline_size && cmdlen > k->cmdline_size)
			return vmm_fail(err, errlen, "cmdline is %zu bytes; this kernel takes at most %u",
				    cmdlen, k->cmdline_size);
	} else {
		/* vmlinux and the test guest: a minimal header of our own. */
		wr16(zp + HDR_BOOT_FLAG, 0xAA55);
		wr32(zp + HDR_MAGIC, BOOT_MAGIC);
		wr16(zp + HDR_VERSION, MIN_PROTOCOL);
		wr32(zp + HDR_KERNEL_ALIGNMENT, 0x1000000);
	}
	zp[HDR_TYPE_OF_LOADER] = 0xFF;
	zp[HDR_LOADFLAGS] |= LOADED_HIGH;
	wr16(zp + HDR_VID_MODE, 0xFFFF);
	wr32(zp + HDR_CMD_LINE_PTR, (uint32_t)GPA_CMDLINE);
	wr32(zp + ZP_EXT_CMD_LINE_PTR, 0);
	if (vm->initrd_size) {
		wr32(zp + HDR_RAMDISK_IMAGE, (uint32_t)initrd_gpa);
		wr32(zp + HDR_RAMDISK_SIZE, (uint32_t)vm->initrd_size);
		wr32(zp + ZP_EXT_RAMDISK_IMAGE, (uint32_t)(initrd_gpa >> 32));
		wr32(zp + ZP_EXT_RAMDISK_SIZE, (uint32_t)((uint64_t)vm->initrd_size >> 32));
	}
	wr64(zp + ZP_ACPI_RSDP, rsdp);

	n = mem_e820(&vm->mem, map, ARRAY_SIZE(map));
	zp[ZP_E820_ENTRIES] = (uint8_t)n;
	for (int i = 0; i < n; i++) {
		uint8_t *e = zp + ZP_E820_TABLE + i * 20;

		wr64(e, map[i].addr);
		wr64(e + 8, map[i].size);
		wr32(e + 16, map[i].type);
	}
	return copy_in(vm, GPA_CMDLINE, cmdline, cmdlen, 1, err, errlen);
}

int boot_prepare(struct vm *vm, struct boot_state *bs, char *err, size_t errlen)
{
	const struct kernel_image *k = &vm->kernel;
	uint64_t kernel_end, initrd_gpa = 0, rsdp;
	uint64_t low_end = vm->mem.region[0].size;
	int ret;

	if (k->kind == KERNEL_BZIMAGE) {
		uint64_t load = k->entry - ENTRY_64_OFFSET;
		uint64_t pm_size = k->size - k->setup_size;
		uint64_t span = pm_size > k->init_size ? pm_size : k->init_size;

		if (load + span > low_end)
			return vmm_fail(err, errlen, "the kernel needs %llu MiB from 0x%llx; the VM has %llu MiB",
				    (unsigned long long)(span / MiB + 1),
				    (unsigned long long)load,
				    (unsigned long long)(vm->mem.size / MiB));
		ret = copy_in(vm, load, k->data + k->setup_size, pm_size, 0, err,
			      errlen);
		kernel_end = load + span;
	} else {
		ret = load_elf(vm, k, &kernel_end, err, errlen);
	}
	if (ret)
		return ret;

	if (vm->initrd_size) {
		/* As high as the kernel allows, page aligned. */
		uint64_t top = low_end;

		if (k->kind == KERNEL_BZIMAGE && k->initrd_addr_max &&
		    (uint64_t)k->initrd_addr_max + 1 < top)
			top = (uint64_t)k->initrd_addr_max + 1;
		if (vm->initrd_size > top || top - vm->initrd_size < kernel_end)
			return vmm_fail(err, errlen, "the initrd (%zu bytes) does not fit between the kernel and 0x%llx",
				    vm->initrd_size, (unsigned long long)top);
		initrd_gpa = (top - vm->initrd_size) & ~0xFFFULL;
		ret = copy_in(vm, initrd_gpa, vm->initrd, vm->initrd_size, 0, err,
			      errlen);
		if (ret)
			return ret;
	}
	rsdp = acpi_build(vm);
	build_page_tables(vm);
	build_gdt(vm);
	ret = build_zero_page(vm, k, initrd_gpa, rsdp, err, errlen);
	if (ret)
		return ret;
	bs->entry = k->entry;
	bs->zero_page = GPA_ZERO_PAGE;
	bs->cr3 = GPA_PML4;
	return 0;
}

static void set_seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xFFFFFFFF;
	s->selector = sel;
	s->type = type;
	s->present = 1;
	s->s = 1;
	s->g = 1;
	s->l = code;
	s->db = !code;
}

int boot_set_regs(int vcpu_fd, const struct boot_state *bs)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	set_seg(&sregs.cs, 0x10, 0xB, true);
	set_seg(&sregs.ds, 0x18, 0x3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.gdt.base = GPA_GDT;
	sregs.gdt.limit = 4 * 8 - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cr0 = 0x80000031;		/* PG, NE, ET, PE */
	sregs.cr3 = bs->cr3;
	sregs.cr4 = 0x20;		/* PAE */
	sregs.efer = 0x500;		/* LMA, LME */
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;

	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2;
	regs.rip = bs->entry;
	regs.rsi = bs->zero_page;
	regs.rsp = BOOT_STACK;
	regs.rbp = BOOT_STACK;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}
