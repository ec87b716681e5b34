// SPDX-License-Identifier: MIT
/*
 * ACPI as a guest OS reads it: the RSDP in the BIOS area, the XSDT, the
 * FADT (sleep control and reset registers), the DSDT's \_S5 package and
 * the MADT's CPUs and IOAPIC.  Every checksum is verified.
 */
#include "guest.h"

struct acpi_info acpi;

struct sdt {
	char sig[4];
	uint32_t len;
	uint8_t rev;
	uint8_t sum;
	char oem[6];
	char table[8];
	uint32_t oemrev;
	uint32_t creator;
	uint32_t creatorrev;
} __attribute__((packed));

static bool sum_ok(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint8_t s = 0;

	while (n--)
		s = (uint8_t)(s + *b++);
	return s == 0;
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static bool fail(const char *why)
{
	size_t n = strlen(why);

	if (n >= sizeof(acpi.why))
		n = sizeof(acpi.why) - 1;
	memcpy(acpi.why, why, n);
	acpi.why[n] = 0;
	acpi.ok = false;
	return false;
}

static const uint8_t *find_rsdp(void)
{
	for (uint64_t a = 0xE0000; a < 0x100000; a += 16) {
		const uint8_t *p = (const uint8_t *)a;

		if (memcmp(p, "RSD PTR ", 8) == 0 && sum_ok(p, 20) && p[15] >= 2 &&
		    sum_ok(p, rd32(p + 20)))
			return p;
	}
	return NULL;
}

/* The SLP_TYPa of \_S5: NameOp '_S5_' PackageOp PkgLength Count Data. */
static bool parse_s5(const struct sdt *dsdt)
{
	const uint8_t *p = (const uint8_t *)dsdt + sizeof(*dsdt);
	const uint8_t *end = (const uint8_t *)dsdt + dsdt->len;

	for (; p + 8 < end; p++) {
		const uint8_t *q;

		if (memcmp(p, "_S5_", 4) || p[4] != 0x12)
			continue;
		q = p + 5;
		q += 1 + (*q >> 6);		/* PkgLength */
		q++;				/* element count */
		if (*q == 0x0A)
			acpi.s5_type = q[1];
		else if (*q <= 1)
			acpi.s5_type = *q;	/* ZeroOp, OneOp */
		else
			return false;
		return true;
	}
	return false;
}

static bool parse_fadt(const uint8_t *f, uint32_t len)
{
	uint64_t dsdt;
	const struct sdt *d;

	if (len < 276)
		return fail("FADT is too short for ACPI 6");
	acpi.hw_reduced = rd32(f + 112) & (1u << 20);
	if (f[244] != 1 || !rd64(f + 248))
		return fail("FADT has no sleep control register in I/O space");
	acpi.sleep_control = (uint16_t)rd64(f + 248);
	if ((rd32(f + 112) & (1u << 10)) && f[116] == 1) {
		acpi.reset_port = (uint16_t)rd64(f + 120);
		acpi.reset_value = f[128];
	}
	dsdt = rd64(f + 140);
	if (!dsdt)
		dsdt = rd32(f + 40);
	d = (const struct sdt *)dsdt;
	if (!dsdt || memcmp(d->sig, "DSDT", 4) || !sum_ok(d, d->len))
		return fail("DSDT missing or bad checksum");
	if (!parse_s5(d))
		return fail("DSDT has no \\_S5 package");
	acpi.dsdt = (const uint8_t *)d;
	return true;
}

static void parse_madt(const uint8_t *m, uint32_t len)
{
	for (uint32_t off = 44; off + 2 <= len && m[off + 1];) {
		const uint8_t *e = m + off;

		if (e[0] == 0 && (rd32(e + 4) & 1) && acpi.ncpus < 64)
			acpi.apic_ids[acpi.ncpus++] = e[3];
		else if (e[0] == 1)
			acpi.ioapic = rd32(e + 4);
		off += e[1];
	}
}

void acpi_init(void)
{
	const uint8_t *rsdp = find_rsdp();
	const struct sdt *xsdt;
	bool fadt = false;

	acpi.ok = true;
	if (!rsdp) {
		fail("no valid RSDP between 0xE0000 and 0xFFFFF");
		return;
	}
	xsdt = (const struct sdt *)rd64(rsdp + 24);
	if (memcmp(xsdt->sig, "XSDT", 4) || !sum_ok(xsdt, xsdt->len)) {
		fail("XSDT missing or bad checksum");
		return;
	}
	for (uint32_t off = sizeof(*xsdt); off + 8 <= xsdt->len; off += 8) {
		const struct sdt *t = (const struct sdt *)rd64((const uint8_t *)xsdt + off);

		if (!sum_ok(t, t->len)) {
			fail("a table has a bad checksum");
			return;
		}
		if (memcmp(t->sig, "FACP", 4) == 0) {
			if (!parse_fadt((const uint8_t *)t, t->len))
				return;
			fadt = true;
		} else if (memcmp(t->sig, "APIC", 4) == 0) {
			parse_madt((const uint8_t *)t, t->len);
		}
	}
	if (!fadt)
		fail("no FADT");
	else if (!acpi.ncpus || !acpi.ioapic)
		fail("MADT lists no CPU or no IOAPIC");
}

void acpi_poweroff(void)
{
	if (acpi.ok) {
		/* SLP_TYP in bits 2-4, SLP_EN in bit 5. */
		outb(acpi.sleep_control, (uint8_t)((acpi.s5_type << 2) | (1u << 5)));
		udelay(1000000);
	}
	printf("poweroff failed (%s); halting\n", acpi.ok ? "no effect" : acpi.why);
	for (;;)
		__asm__ volatile("cli; hlt");
}

/*
 * The DSDT in hex, 32 bytes a line, for the host to disassemble: the
 * AML the VMM writes is checked by a real AML decoder, not by ours.
 */
void acpi_dump_dsdt(void)
{
	uint32_t len;

	if (!acpi.dsdt) {
		printf("dsdt: none (%s)\n", acpi.why);
		return;
	}
	len = rd32(acpi.dsdt + 4);
	printf("dsdt: %u bytes\n", len);
	for (uint32_t i = 0; i < len; i++) {
		if (i % 32 == 0)
			printf("%sdsdt ", i ? "\n" : "");
		printf("%02x", acpi.dsdt[i]);
	}
	printf("\n");
}

void acpi_reset(void)
{
	if (acpi.reset_port)
		outb(acpi.reset_port, acpi.reset_value);
	udelay(1000000);
	printf("reset failed; halting\n");
	for (;;)
		__asm__ volatile("cli; hlt");
}
