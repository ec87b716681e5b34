// SPDX-License-Identifier: MIT
/*
 * VM configurations and kernels that cannot work are refused before any
 * guest code runs, with a message naming the problem.
 */
#include <criterion/criterion.h>
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/internal.h"

static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/fsvisor-vmcfg-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(vmcfg, .init = setup, .fini = teardown);

static const char *file_in(const char *name)
{
	static char p[4][160];
	static int i;

	i = (i + 1) % 4;
	snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
	return p[i];
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	cr_assert_not_null(f);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* A well-formed bzImage header around a small "kernel". */
static uint8_t *fake_bzimage(size_t *len)
{
	size_t size = 5 * 512 + 64 * 1024;
	uint8_t *b = calloc(1, size);

	b[0x1F1] = 4;					/* setup_sects */
	b[0x1F4] = (uint8_t)((64 * 1024 / 16) & 0xFF);	/* syssize */
	b[0x1F5] = (uint8_t)((64 * 1024 / 16) >> 8);
	b[0x1FE] = 0x55;
	b[0x1FF] = 0xAA;
	b[0x200] = 0xEB;
	b[0x201] = 0x6A;				/* header length */
	memcpy(b + 0x202, "HdrS", 4);
	b[0x206] = 0x0F;				/* protocol 2.15 */
	b[0x207] = 0x02;
	b[0x234] = 1;					/* relocatable */
	b[0x236] = 0x01;				/* XLF_KERNEL_64 */
	b[0x238] = 0xFF;				/* cmdline_size */
	b[0x239] = 0x07;
	b[0x260] = 0x00;				/* init_size: 1 MiB */
	b[0x262] = 0x10;
	*len = size;
	return b;
}

static void expect_kernel_error(const void *data, size_t len, const char *why)
{
	struct kernel_image k;
	char err[512] = "";
	const char *p = file_in("k");

	write_file(p, data, len);
	cr_assert_lt(kernel_load(p, &k, err, sizeof(err)), 0, "accepted (%s)", why);
	cr_assert_not_null(strstr(err, why), "said '%s', not '%s'", err, why);
}

Test(vmcfg, bzimage_checks)
{
	struct kernel_image k;
	size_t len;
	uint8_t *b = fake_bzimage(&len);
	char err[512] = "";

	write_file(file_in("ok"), b, len);
	cr_assert_eq(kernel_load(file_in("ok"), &k, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(k.kind, KERNEL_BZIMAGE);
	cr_assert_eq(k.entry, 0x100000 + 0x200);
	cr_assert_eq(k.protocol, 0x020F);
	kernel_free(&k);

	expect_kernel_error(b, len - 1000, "truncated bzImage");
	expect_kernel_error(b, 0x300, "truncated bzImage");
	b[0x206] = 0x0A;			/* 2.10 */
	expect_kernel_error(b, len, "boot protocol 2.10 is older than 2.12");
	b[0x206] = 0x0F;
	b[0x236] = 0;
	expect_kernel_error(b, len, "no 64-bit entry point");
	b[0x236] = 1;
	b[0x1FE] = 0;
	expect_kernel_error(b, len, "0xAA55");
	free(b);
}

Test(vmcfg, not_a_kernel)
{
	static const char text[] = "#!/bin/sh\necho this is not a kernel\n";
	Elf64_Ehdr eh = { 0 };

	expect_kernel_error(text, sizeof(text), "is not a kernel");
	expect_kernel_error("", 0, "is not a kernel");

	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS32;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_machine = EM_386;
	expect_kernel_error(&eh, sizeof(eh), "not a 64-bit");

	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_machine = EM_X86_64;
	eh.e_type = ET_DYN;
	expect_kernel_error(&eh, sizeof(eh), "not an executable");

	eh.e_type = ET_EXEC;
	eh.e_phentsize = sizeof(Elf64_Phdr);
	eh.e_phnum = 1;
	eh.e_phoff = 4096;			/* beyond the file */
	expect_kernel_error(&eh, sizeof(eh), "program headers");
}

Test(vmcfg, elf_entry_outside)
{
	struct {
		Elf64_Ehdr eh;
		Elf64_Phdr ph;
		uint8_t code[16];
	} f = { 0 };

	memcpy(f.eh.e_ident, ELFMAG, SELFMAG);
	f.eh.e_ident[EI_CLASS] = ELFCLASS64;
	f.eh.e_ident[EI_DATA] = ELFDATA2LSB;
	f.eh.e_type = ET_EXEC;
	f.eh.e_machine = EM_X86_64;
	f.eh.e_phoff = sizeof(Elf64_Ehdr);
	f.eh.e_phentsize = sizeof(Elf64_Phdr);
	f.eh.e_phnum = 1;
	f.eh.e_entry = 0x900000;
	f.ph.p_type = PT_LOAD;
	f.ph.p_offset = offsetof(typeof(f), code);
	f.ph.p_paddr = f.ph.p_vaddr = 0x100000;
	f.ph.p_filesz = f.ph.p_memsz = sizeof(f.code);
	expect_kernel_error(&f, sizeof(f), "outside the loaded segments");
	f.ph.p_filesz = 64;
	f.ph.p_memsz = 64;
	f.eh.e_entry = 0x100000;
	expect_kernel_error(&f, sizeof(f), "past the end of the file");
}

static void expect_config_error(const char *json, const char *why)
{
	json_error_t jerr;
	json_t *doc = json_loads(json, 0, &jerr);
	struct vm_config *cfg = NULL;
	char err[512] = "";

	cr_assert_not_null(doc, "bad test JSON: %s", jerr.text);
	cr_assert_lt(vm_config_parse(doc, &cfg, err, sizeof(err)), 0,
		     "accepted %s", json);
	cr_assert_null(cfg);
	cr_assert_not_null(strstr(err, why), "'%s' said '%s', not '%s'", json, err, why);
	json_decref(doc);
}

Test(vmcfg, bad_configs)
{
	const char *g = getenv("TESTGUEST");
	char buf[1024];

	cr_assert_not_null(g, "TESTGUEST must name the test guest");
#define CFG(extra) (snprintf(buf, sizeof(buf), "{\"kernel\": \"%s\"%s}", g, extra), buf)
	expect_config_error(CFG(", \"memory\": 0"), "too small");
	expect_config_error(CFG(", \"memory\": \"0\""), "too small");
	expect_config_error(CFG(", \"memory\": \"64T\""), "more than the host has");
	expect_config_error(CFG(", \"memory\": \"lots\""), "is not a size");
	expect_config_error(CFG(", \"memory\": -5"), "negative");
	expect_config_error(CFG(", \"memory\": 16777217"), "multiple of 4K");
	expect_config_error(CFG(", \"cpus\": 0"), "cpus 0 is out of range");
	expect_config_error(CFG(", \"cpus\": 1000"), "cpus 1000 is out of range");
	expect_config_error(CFG(", \"cpus\": \"2\""), "whole number");
	expect_config_error(CFG(", \"cpu\": {\"mask\": [\"warp-drive\"]}"),
			    "unknown CPUID feature 'warp-drive'");
	expect_config_error(CFG(", \"frobnicate\": 1"), "unknown key 'frobnicate'");
	expect_config_error(CFG(", \"name\": \"../etc\""), "name:");
	expect_config_error(CFG(", \"on_reboot\": \"explode\""), "\"stop\" or \"reset\"");
	expect_config_error(CFG(", \"initrd\": \"/nonexistent/initrd\""),
			    "initrd /nonexistent/initrd");
	expect_config_error("{\"cpus\": 1}", "no kernel");
	expect_config_error("{\"kernel\": \"/nonexistent/vmlinuz\"}",
			    "kernel /nonexistent/vmlinuz: No such file");
	expect_config_error("{\"kernel\": \"/etc/hostname\"}", "is not a kernel");
	expect_config_error("{\"kernel\": \"/tmp\"}", "not a regular file");
	expect_config_error("[1, 2]", "must be a JSON object");
	expect_config_error(CFG(", \"vsock\": {\"cid\": 2}"), "vsock.cid must be");
	expect_config_error(CFG(", \"vsock\": {\"cid\": 4294967295}"), "vsock.cid must be");
	expect_config_error(CFG(", \"vsock\": {\"cid\": \"3\"}"), "vsock.cid must be");
	expect_config_error(CFG(", \"vsock\": {\"port\": 3}"), "unknown key vsock.port");
	expect_config_error(CFG(", \"vsock\": {}"), "vsock has no cid");
	expect_config_error(CFG(", \"vsock\": 3"), "vsock must be an object");
#undef CFG
}

Test(vmcfg, good_config_defaults)
{
	const char *g = getenv("TESTGUEST");
	json_t *doc = json_pack("{s:s, s:s, s:{s:[s,s]}}", "kernel", g, "memory", "64M",
				"cpu", "mask", "xsave", "cx16");
	struct vm_config *cfg;
	char err[512];
	json_t *back;

	cr_assert_eq(vm_config_parse(doc, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg->memory, 64 * MiB);
	cr_assert_eq(cfg->cpus, 1);
	cr_assert_str_eq(cfg->cmdline, "console=ttyS0");
	cr_assert_eq(cfg->on_reboot, FAULT_RESET);
	cr_assert_eq(cfg->on_triple_fault, FAULT_STOP);
	back = vm_config_to_json(cfg);
	cr_assert_eq(json_integer_value(json_object_get(back, "memory")), 64 * MiB);
	cr_assert_eq(json_array_size(json_object_get(json_object_get(back, "cpu"), "mask")), 2);
	cr_assert_null(json_object_get(back, "vsock"), "a vsock device nobody asked for");
	json_decref(back);
	vm_config_free(cfg);
	json_object_set_new(doc, "vsock", json_pack("{s:i}", "cid", 42));
	cr_assert_eq(vm_config_parse(doc, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg->vsock.cid, 42);
	back = vm_config_to_json(cfg);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(back, "vsock"), "cid")), 42);
	json_decref(back);
	json_decref(doc);
	vm_config_free(cfg);
}

static void nop_io(void *opaque, uint64_t off, uint8_t *data, unsigned int len,
		   bool write)
{
	(void)off;
	(void)write;
	memset(data, 0x42, len);
	(*(int *)opaque)++;
}

Test(vmcfg, bus_dispatch)
{
	struct io_bus bus;
	int a = 0, b = 0;
	uint8_t d[4];

	bus_init(&bus, "test");
	cr_assert_eq(bus_register(&bus, 0x100, 8, nop_io, &a, "a"), 0);
	cr_assert_eq(bus_register(&bus, 0x200, 4, nop_io, &b, "b"), 0);
	cr_assert_eq(bus_register(&bus, 0x104, 8, nop_io, &b, "overlap"), -EEXIST);
	cr_assert_eq(bus_register(&bus, 0xF8, 9, nop_io, &b, "overlap"), -EEXIST);
	cr_assert_eq(bus_register(&bus, 0x108, 8, nop_io, &b, "adjacent"), 0);
	cr_assert(bus_dispatch(&bus, 0x107, d, 1, false));
	cr_assert_eq(a, 1);
	/* Unclaimed reads are all ones, and counted. */
	cr_assert(!bus_dispatch(&bus, 0x300, d, 4, false));
	cr_assert_eq(d[0], 0xff);
	cr_assert_eq(d[3], 0xff);
	/* An access straddling the end of a range is not the device's. */
	cr_assert(!bus_dispatch(&bus, 0x203, d, 2, false));
	cr_assert_eq(atomic_load(&bus.unclaimed), 2);
	cr_assert_eq(bus_unregister(&bus, 0x200, &b), 0);
	cr_assert(!bus_dispatch(&bus, 0x200, d, 1, false));
	bus_destroy(&bus);
}
