// SPDX-License-Identifier: MIT
/*
 * ACPI tables, in the BIOS area at 0xE0000 where Linux also looks for
 * the RSDP: RSDP -> XSDT -> FADT (hardware-reduced, with sleep control
 * and status registers and a reset register) -> DSDT, and the MADT with
 * every vCPU and the IOAPIC.  The DSDT is written in AML by the small
 * encoder below: \_S5 (so power-off is S5 through the sleep control
 * register), the PCI root bridge and COM1.
 */
#include <string.h>

#include "vmm/internal.h"

#define RSDP_AT	GPA_ACPI
#define XSDT_AT	(GPA_ACPI + 0x40)
#define FADT_AT	(GPA_ACPI + 0x100)
#define MADT_AT	(GPA_ACPI + 0x400)
#define DSDT_AT	(GPA_ACPI + 0x1000)
#define DSDT_MAX 0x3000

#define FADT_LEN 276

struct buf {
	uint8_t *p;
	size_t len;
	size_t cap;
};

static void put8(struct buf *b, uint8_t v)
{
	if (b->len < b->cap)
		b->p[b->len] = v;
	b->len++;
}

static void putn(struct buf *b, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		put8(b, (uint8_t)(v >> (8 * i)));
}

static void putmem(struct buf *b, const void *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		put8(b, ((const uint8_t *)src)[i]);
}

static uint8_t checksum(const uint8_t *p, size_t n)
{
	uint8_t sum = 0;

	while (n--)
		sum = (uint8_t)(sum + *p++);
	return (uint8_t)-sum;
}

static void header(struct buf *b, const char *sig, uint8_t revision)
{
	putmem(b, sig, 4);
	putn(b, 0, 4);			/* length, patched by finish() */
	put8(b, revision);
	put8(b, 0);			/* checksum */
	putmem(b, "FSVISR", 6);
	putmem(b, "FSVISOR ", 8);
	putn(b, 1, 4);
	putmem(b, "FSVR", 4);
	putn(b, 1, 4);
}

static void finish(struct buf *b)
{
	b->p[4] = (uint8_t)b->len;
	b->p[5] = (uint8_t)(b->len >> 8);
	b->p[6] = (uint8_t)(b->len >> 16);
	b->p[7] = (uint8_t)(b->len >> 24);
	b->p[9] = 0;
	b->p[9] = checksum(b->p, b->len);
}

/* Generic Address Structure for one byte of system I/O space. */
static void gas_io(struct buf *b, uint16_t port)
{
	put8(b, 1);			/* system I/O */
	put8(b, 8);			/* bit width */
	put8(b, 0);			/* bit offset */
	put8(b, 1);			/* byte access */
	putn(b, port, 8);
}

static void gas_none(struct buf *b)
{
	for (int i = 0; i < 12; i++)
		put8(b, 0);
}

/* ---- AML ------------------------------------------------------------ */

#define AML_ZERO	0x00
#define AML_NAME	0x08
#define AML_BYTE	0x0A
#define AML_WORD	0x0B
#define AML_DWORD	0x0C
#define AML_SCOPE	0x10
#define AML_BUFFER	0x11
#define AML_PACKAGE	0x12
#define AML_EXT		0x5B
#define AML_DEVICE	0x82
#define AML_METHOD	0x14
#define AML_IF		0xA0
#define AML_LEQUAL	0x93
#define AML_NOTIFY	0x86
#define AML_ARG0	0x68
#define AML_STRING	0x0D
#define AML_DUALNAME	0x2E

/* Open a construct with a PkgLength; close with aml_close(). */
static size_t aml_open(struct buf *b)
{
	size_t at = b->len;

	/* Reserve the 4-byte form; aml_close() packs it. */
	putn(b, 0, 4);
	return at;
}

static void aml_close(struct buf *b, size_t at)
{
	size_t body = b->len - at - 4;
	size_t total;
	int n;

	/* The PkgLength counts itself: pick the smallest form that fits. */
	if (body + 1 < 0x40)
		n = 1;
	else if (body + 2 < 0x1000)
		n = 2;
	else
		n = 3;
	total = body + (size_t)n;
	if (n == 1) {
		b->p[at] = (uint8_t)total;
	} else {
		b->p[at] = (uint8_t)(((n - 1) << 6) | (total & 0xF));
		for (int i = 1; i < n; i++)
			b->p[at + i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	}
	memmove(b->p + at + n, b->p + at + 4, body);
	b->len -= (size_t)(4 - n);
}

static void aml_int(struct buf *b, uint64_t v)
{
	if (v == 0) {
		put8(b, AML_ZERO);
	} else if (v == 1) {
		put8(b, 0x01);
	} else if (v <= 0xFF) {
		put8(b, AML_BYTE);
		put8(b, (uint8_t)v);
	} else if (v <= 0xFFFF) {
		put8(b, AML_WORD);
		putn(b, v, 2);
	} else {
		put8(b, AML_DWORD);
		putn(b, v, 4);
	}
}

static void aml_name_int(struct buf *b, const char *name, uint64_t v)
{
	put8(b, AML_NAME);
	putmem(b, name, 4);
	aml_int(b, v);
}

/* "PNP0A03" in the compressed EISA form ACPI uses. */
static uint32_t eisa_id(const char *id)
{
	uint32_t v = (uint32_t)((id[0] - '@') << 10 | (id[1] - '@') << 5 |
				(id[2] - '@'));
	uint32_t product = 0;

	for (int i = 3; i < 7; i++) {
		char c = id[i];

		product = product << 4 |
			  (uint32_t)(c <= '9' ? c - '0' : c - 'A' + 10);
	}
	/* Bytes in order: vendor high, vendor low, product high, low. */
	return (v >> 8) | (v & 0xFF) << 8 | (product >> 8) << 16 |
	       (product & 0xFF) << 24;
}

static void aml_name_string(struct buf *b, const char *name, const char *value)
{
	put8(b, AML_NAME);
	putmem(b, name, 4);
	put8(b, AML_STRING);
	putmem(b, value, strlen(value) + 1);
}

static void aml_device_begin(struct buf *b, size_t *at, const char *name)
{
	put8(b, AML_EXT);
	put8(b, AML_DEVICE);
	*at = aml_open(b);
	putmem(b, name, 4);
}

/* Name(_CRS, ResourceTemplate() { ... }) from raw descriptors. */
static void aml_crs(struct buf *b, const struct buf *res)
{
	size_t at;

	put8(b, AML_NAME);
	putmem(b, "_CRS", 4);
	put8(b, AML_BUFFER);
	at = aml_open(b);
	aml_int(b, res->len + 2);
	putmem(b, res->p, res->len);
	put8(b, 0x79);			/* end tag */
	put8(b, 0);
	aml_close(b, at);
}

static void res_word(struct buf *r, uint8_t type, uint8_t tflags, uint16_t min,
		     uint16_t max)
{
	put8(r, 0x88);
	putn(r, 13, 2);
	put8(r, type);
	put8(r, 0x0C);			/* min and max fixed, producer */
	put8(r, tflags);
	putn(r, 0, 2);			/* granularity */
	putn(r, min, 2);
	putn(r, max, 2);
	putn(r, 0, 2);			/* translation */
	putn(r, (uint32_t)max - min + 1, 2);
}

static void res_dword_mem(struct buf *r, uint32_t min, uint32_t max)
{
	put8(r, 0x87);
	putn(r, 23, 2);
	put8(r, 0);			/* memory */
	put8(r, 0x0C);
	put8(r, 0x03);			/* read-write, cacheable */
	putn(r, 0, 4);
	putn(r, min, 4);
	putn(r, max, 4);
	putn(r, 0, 4);
	putn(r, (uint64_t)max - min + 1, 4);
}

static void res_qword_mem(struct buf *r, uint64_t min, uint64_t max)
{
	put8(r, 0x8A);
	putn(r, 43, 2);
	put8(r, 0);
	put8(r, 0x0C);
	put8(r, 0x03);
	putn(r, 0, 8);
	putn(r, min, 8);
	putn(r, max, 8);
	putn(r, 0, 8);
	putn(r, max - min + 1, 8);
}

static void res_io(struct buf *r, uint16_t port, uint8_t len)
{
	put8(r, 0x47);
	put8(r, 0x01);			/* 16-bit decode */
	putn(r, port, 2);
	putn(r, port, 2);
	put8(r, 1);
	put8(r, len);
}

static void build_dsdt(struct buf *b)
{
	uint8_t resbuf[256];
	struct buf res = { resbuf, 0, sizeof(resbuf) };
	size_t scope, dev, pkg;

	header(b, "DSDT", 2);

	/* Name (_S5, Package (4) { S5_TYPE, 0, 0, 0 }) */
	put8(b, AML_NAME);
	putmem(b, "_S5_", 4);
	put8(b, AML_PACKAGE);
	pkg = aml_open(b);
	put8(b, 4);
	aml_int(b, PM_S5_TYPE);
	aml_int(b, 0);
	aml_int(b, 0);
	aml_int(b, 0);
	aml_close(b, pkg);

	/* Scope (\_SB) */
	put8(b, AML_SCOPE);
	scope = aml_open(b);
	putmem(b, "\\_SB_", 5);

	aml_device_begin(b, &dev, "PCI0");
	aml_name_int(b, "_HID", eisa_id("PNP0A03"));
	aml_name_int(b, "_UID", 0);
	aml_name_int(b, "_SEG", 0);
	aml_name_int(b, "_BBN", 0);
	res_word(&res, 2, 0, 0, 0xFF);			/* buses 0-255 */
	res_io(&res, 0xCF8, 8);				/* config mechanism 1 */
	res_word(&res, 1, 0x03, 0x0000, 0x0CF7);	/* I/O windows */
	res_word(&res, 1, 0x03, 0x0D00, 0xFFFF);
	res_dword_mem(&res, (uint32_t)GPA_PCI_MMIO, (uint32_t)GPA_PCI_MMIO_END - 1);
	res_qword_mem(&res, 0x8000000000ULL, 0xFFFFFFFFFFULL);
	aml_crs(b, &res);
	aml_close(b, dev);

	res.len = 0;
	aml_device_begin(b, &dev, "COM1");
	aml_name_int(b, "_HID", eisa_id("PNP0501"));
	aml_name_int(b, "_UID", 1);
	res_io(&res, COM1_PORT, 8);
	put8(&res, 0x22);				/* IRQNoFlags */
	putn(&res, 1u << COM1_IRQ, 2);
	aml_crs(b, &res);
	aml_close(b, dev);

	/* The power button, and the Generic Event Device that presses it. */
	aml_device_begin(b, &dev, "PWRB");
	aml_name_int(b, "_HID", eisa_id("PNP0C0C"));
	aml_name_int(b, "_UID", 0);
	aml_close(b, dev);

	res.len = 0;
	aml_device_begin(b, &dev, "GED0");
	aml_name_string(b, "_HID", "ACPI0013");
	aml_name_int(b, "_UID", 0);
	put8(&res, 0x89);			/* extended interrupt */
	putn(&res, 6, 2);
	put8(&res, 0x03);			/* consumer, edge, high, exclusive */
	put8(&res, 1);
	putn(&res, GED_GSI, 4);
	aml_crs(b, &res);
	{
		size_t method, cond;

		/* Method (_EVT, 1) { If (Arg0 == GSI) { Notify (\_SB.PWRB, 0x80) } } */
		put8(b, AML_METHOD);
		method = aml_open(b);
		putmem(b, "_EVT", 4);
		put8(b, 1);			/* one argument, not serialized */
		put8(b, AML_IF);
		cond = aml_open(b);
		put8(b, AML_LEQUAL);
		put8(b, AML_ARG0);
		aml_int(b, GED_GSI);
		put8(b, AML_NOTIFY);
		put8(b, '\\');
		put8(b, AML_DUALNAME);
		putmem(b, "_SB_PWRB", 8);
		aml_int(b, 0x80);
		aml_close(b, cond);
		aml_close(b, method);
	}
	aml_close(b, dev);

	aml_close(b, scope);
	finish(b);
}

static void build_fadt(struct buf *b, uint64_t dsdt)
{
	header(b, "FACP", 6);
	putn(b, 0, 4);			/* FIRMWARE_CTRL */
	putn(b, (uint32_t)dsdt, 4);
	put8(b, 0);			/* reserved */
	put8(b, 0);			/* preferred PM profile: unspecified */
	/*
	 * SCI_INT: none.  A hardware-reduced platform has no SCI (ACPI 5.2.9:
	 * the OS ignores the field); the power button is the GED's own
	 * edge-triggered interrupt, which an old kernel taking 9 for a
	 * level-triggered SCI would fight over.
	 */
	putn(b, 0, 2);
	while (b->len < 109)
		put8(b, 0);		/* legacy PM blocks: none */
	putn(b, 0x3, 2);		/* IAPC_BOOT_ARCH: legacy devices, 8042 */
	put8(b, 0);
	/* Flags: WBINVD, power/sleep buttons as devices, reset register
	 * supported, hardware-reduced ACPI. */
	putn(b, (1u << 0) | (1u << 4) | (1u << 5) | (1u << 10) | (1u << 20), 4);
	gas_io(b, PM_RESET);		/* RESET_REG */
	put8(b, PM_RESET_VALUE);
	putn(b, 0, 2);			/* ARM_BOOT_ARCH */
	put8(b, 0);			/* minor version */
	putn(b, 0, 8);			/* X_FIRMWARE_CTRL */
	putn(b, dsdt, 8);		/* X_DSDT */
	for (int i = 0; i < 8; i++)
		gas_none(b);		/* X_PM1a_EVT_BLK .. X_GPE1_BLK */
	gas_io(b, PM_SLEEP_CONTROL);
	gas_io(b, PM_SLEEP_STATUS);
	putmem(b, "FSVISOR\0", 8);	/* hypervisor vendor identity */
	finish(b);
}

static void build_madt(struct buf *b, unsigned int ncpus)
{
	header(b, "APIC", 5);
	putn(b, GPA_LAPIC, 4);
	putn(b, 1, 4);			/* PCAT_COMPAT: 8259s present */
	for (unsigned int i = 0; i < ncpus; i++) {
		put8(b, 0);		/* processor local APIC */
		put8(b, 8);
		put8(b, (uint8_t)i);	/* ACPI processor UID */
		put8(b, (uint8_t)i);	/* APIC id */
		putn(b, 1, 4);		/* enabled */
	}
	put8(b, 1);			/* I/O APIC */
	put8(b, 12);
	put8(b, (uint8_t)ncpus);
	put8(b, 0);
	putn(b, GPA_IOAPIC, 4);
	putn(b, 0, 4);			/* GSI base */
	put8(b, 4);			/* local APIC NMI: LINT1 on all */
	put8(b, 6);
	put8(b, 0xFF);
	putn(b, 0, 2);
	put8(b, 1);
	finish(b);
}

static void build_xsdt(struct buf *b)
{
	header(b, "XSDT", 1);
	putn(b, FADT_AT, 8);
	putn(b, MADT_AT, 8);
	finish(b);
}

static void build_rsdp(uint8_t *p)
{
	memset(p, 0, 36);
	memcpy(p, "RSD PTR ", 8);
	memcpy(p + 9, "FSVISR", 6);
	p[15] = 2;			/* ACPI 2.0+ */
	/* RsdtAddress (16) stays 0: XSDT only. */
	p[20] = 36;			/* length */
	for (int i = 0; i < 8; i++)
		p[24 + i] = (uint8_t)(XSDT_AT >> (8 * i));
	p[8] = checksum(p, 20);
	p[32] = checksum(p, 36);
}

uint64_t acpi_build(struct vm *vm)
{
	uint8_t *area = gpa_to_hva(&vm->mem, GPA_ACPI, GPA_ACPI_END - GPA_ACPI);
	struct buf b;

	memset(area, 0, GPA_ACPI_END - GPA_ACPI);
	b = (struct buf){ area + (DSDT_AT - GPA_ACPI), 0, DSDT_MAX };
	build_dsdt(&b);
	b = (struct buf){ area + (FADT_AT - GPA_ACPI), 0, FADT_LEN };
	build_fadt(&b, DSDT_AT);
	b = (struct buf){ area + (MADT_AT - GPA_ACPI), 0, DSDT_AT - MADT_AT };
	build_madt(&b, vm->ncpus);
	b = (struct buf){ area + (XSDT_AT - GPA_ACPI), 0, FADT_AT - XSDT_AT };
	build_xsdt(&b);
	build_rsdp(area + (RSDP_AT - GPA_ACPI));
	return RSDP_AT;
}
