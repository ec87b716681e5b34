// SPDX-License-Identifier: MIT
/*
 * The device tests.  Each returns true for PASS, or false with the
 * reason in @why.  Timeouts are real time (the TSC), so a test never
 * hangs the guest, however slowly the CPU is emulated.
 */
#include "guest.h"

static void set_why(char *why, const char *s)
{
	size_t n = strlen(s);

	if (n > 95)
		n = 95;
	memcpy(why, s, n);
	why[n] = 0;
}

/* ---- serial: a line in through IRQ 4, echoed back ------------------------- */

bool test_serial(char *why)
{
	const char *line = NULL;
	uint64_t deadline;

	if (!acpi.ioapic) {
		set_why(why, "no IOAPIC to route IRQ 4 through");
		return false;
	}
	pic_disable();
	serial_rx_start();
	printf("serial: waiting for a line\n");
	__asm__ volatile("sti");
	deadline = uptime_us() + 30000000;
	while (!(line = serial_getline()) && uptime_us() < deadline)
		__asm__ volatile("pause");
	__asm__ volatile("cli");
	serial_rx_stop();
	if (!line) {
		set_why(why, "no line arrived within 30 s");
		return false;
	}
	printf("serial: echo '%s'\n", line);
	return true;
}

/* ---- smp: every AP comes up through INIT-SIPI-SIPI and checks in ------------ */

extern uint64_t tramp_cr3, tramp_stack, tramp_entry;
static volatile int checked_in;
static volatile unsigned int seen_ids[64];
static uint8_t ap_stacks[64][4096] __attribute__((aligned(16)));

static void ap_main(void)
{
	int n = __atomic_fetch_add(&checked_in, 1, __ATOMIC_SEQ_CST);

	seen_ids[n] = lapic_id();
	for (;;)
		__asm__ volatile("cli; hlt");
}

static void send_ipi(unsigned int apic_id, uint32_t low)
{
	lapic_write(LAPIC_ICR_HI, apic_id << 24);
	lapic_write(LAPIC_ICR_LO, low);
	while (lapic_read(LAPIC_ICR_LO) & (1u << 12))
		__asm__ volatile("pause");
}

bool test_smp(char *why)
{
	unsigned int me = lapic_id(), started = 0;
	uint64_t cr3;

	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	for (unsigned int i = 0; i < acpi.ncpus; i++) {
		unsigned int id = acpi.apic_ids[i];
		uint64_t deadline;

		if (id == me)
			continue;
		tramp_cr3 = cr3;
		tramp_stack = (uint64_t)&ap_stacks[started + 1][4096];
		tramp_entry = (uint64_t)ap_main;
		send_ipi(id, 0x4500);			/* INIT */
		udelay(10000);
		send_ipi(id, 0x4600 | 0x03);		/* SIPI, vector 3 */
		udelay(200);
		send_ipi(id, 0x4600 | 0x03);
		started++;
		deadline = uptime_us() + 5000000;
		while (checked_in < (int)started && uptime_us() < deadline)
			__asm__ volatile("pause");
		if (checked_in < (int)started) {
			set_why(why, "an application processor did not check in within 5 s");
			return false;
		}
	}
	printf("smp: %u cpus: bsp %u", acpi.ncpus, me);
	for (int i = 0; i < checked_in; i++)
		printf(", ap %u", seen_ids[i]);
	printf("\n");
	return true;
}

/* ---- timer: LAPIC timer interrupts arrive, periodically ---------------- */

static volatile unsigned int ticks;

static void timer_irq(void)
{
	ticks++;
}

bool test_timer(char *why)
{
	uint64_t t0, deadline;

	irq_set_handler(VEC_TIMER, timer_irq);
	lapic_write(LAPIC_TIMER_DIV, 0x3);		/* divide by 16 */
	lapic_write(LAPIC_LVT_TIMER, (1u << 17) | VEC_TIMER);	/* periodic */
	lapic_write(LAPIC_TIMER_INIT, 200000);
	t0 = uptime_us();
	deadline = t0 + 10000000;
	__asm__ volatile("sti");
	while (ticks < 5 && uptime_us() < deadline)
		__asm__ volatile("pause");
	__asm__ volatile("cli");
	lapic_write(LAPIC_LVT_TIMER, 1u << 16);	/* masked */
	lapic_write(LAPIC_TIMER_INIT, 0);
	if (ticks < 5) {
		set_why(why, "fewer than 5 LAPIC timer interrupts in 10 s");
		return false;
	}
	printf("timer: %u ticks in %lu us\n", ticks, uptime_us() - t0);
	return true;
}

/* ---- pci: the bus enumerates, the host bridge is there -------------------- */

static uint32_t pci_read(unsigned int dev, unsigned int reg)
{
	outl(0xCF8, 0x80000000u | dev << 11 | (reg & 0xFC));
	return inl(0xCFC);
}

bool test_pci(char *why)
{
	bool bridge = false;
	int found = 0;

	for (unsigned int dev = 0; dev < 32; dev++) {
		uint32_t id = pci_read(dev, 0);
		uint32_t class;

		if ((id & 0xFFFF) == 0xFFFF)
			continue;
		class = pci_read(dev, 8) >> 8;
		printf("pci: 00:%02x.0 %04x:%04x class %06x\n", dev, id & 0xFFFF,
		       id >> 16, class);
		if (dev == 0 && (class >> 8) == 0x0600)
			bridge = true;
		found++;
	}
	/* Nothing answers on a bus that does not exist. */
	outl(0xCF8, 0x80000000u | 7 << 16);
	if (inl(0xCFC) != 0xFFFFFFFF) {
		set_why(why, "bus 7 answered");
		return false;
	}
	if (!bridge) {
		set_why(why, "no host bridge at 00:00.0");
		return false;
	}
	printf("pci: %d devices\n", found);
	return true;
}

/* ---- acpi: the tables this guest powers off with -------------------------- */

bool test_acpi(char *why)
{
	if (!acpi.ok) {
		set_why(why, acpi.why);
		return false;
	}
	if (!acpi.hw_reduced) {
		set_why(why, "the FADT is not hardware-reduced");
		return false;
	}
	printf("acpi: %u cpus, ioapic %lx, sleep control port %x, S5 type %u, reset port %x\n",
	       acpi.ncpus, acpi.ioapic, acpi.sleep_control, acpi.s5_type,
	       acpi.reset_port);
	return true;
}

/* ---- reboot: CMOS RAM remembers that we already reset once ---------------- */

#define CMOS_MARK 0x50

static uint8_t cmos_read(uint8_t reg)
{
	outb(0x70, reg);
	return inb(0x71);
}

static void cmos_write(uint8_t reg, uint8_t v)
{
	outb(0x70, reg);
	outb(0x71, v);
}

/* First boot: mark CMOS and reset by @how; second boot: PASS. */
static bool reboot_via(const char *name, bool kbd, char *why)
{
	if (cmos_read(CMOS_MARK) == 0xA5) {
		cmos_write(CMOS_MARK, 0);
		printf("%s: back after a reset\n", name);
		return true;
	}
	if (!kbd && !acpi.reset_port) {
		set_why(why, "no ACPI reset register");
		return false;
	}
	cmos_write(CMOS_MARK, 0xA5);
	printf("%s: resetting\n", name);
	if (kbd) {
		/* The i8042's "pulse output line 0": the CPU reset line. */
		while (inb(0x64) & 0x02)
			;
		outb(0x64, 0xFE);
		udelay(1000000);
		set_why(why, "the i8042 reset line did nothing");
		return false;
	}
	acpi_reset();
	return false;
}

bool test_reboot(char *why)
{
	return reboot_via("reboot", false, why);
}

bool test_kbdreset(char *why)
{
	return reboot_via("kbdreset", true, why);
}

/* ---- rtc: the CMOS clock, printed for the host to compare ------------------ */

static int bcd(uint8_t v)
{
	return (v >> 4) * 10 + (v & 0xF);
}

bool test_rtc(char *why)
{
	uint8_t sec, min, hour, day, mon, year, cent, b;

	/* Read twice until stable, as a driver does across an update. */
	do {
		sec = cmos_read(0x00);
		min = cmos_read(0x02);
		hour = cmos_read(0x04);
		day = cmos_read(0x07);
		mon = cmos_read(0x08);
		year = cmos_read(0x09);
		cent = cmos_read(0x32);
	} while (sec != cmos_read(0x00));
	b = cmos_read(0x0B);
	if (!(b & 0x02)) {
		set_why(why, "the RTC is not in 24-hour mode");
		return false;
	}
	if (!(b & 0x04)) {
		sec = (uint8_t)bcd(sec);
		min = (uint8_t)bcd(min);
		hour = (uint8_t)bcd(hour);
		day = (uint8_t)bcd(day);
		mon = (uint8_t)bcd(mon);
		year = (uint8_t)bcd(year);
		cent = (uint8_t)bcd(cent);
	}
	if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 ||
	    sec > 59) {
		set_why(why, "the RTC holds an impossible date");
		return false;
	}
	printf("rtc: %02u%02u-%02u-%02u %02u:%02u:%02u UTC\n", cent, year, mon, day,
	       hour, min, sec);
	return true;
}

/* ---- deliberate crashes ----------------------------------------------------- */

void crash_triple_fault(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) none = { 0, 0 };

	printf("triplefault: loading an empty IDT and faulting\n");
	__asm__ volatile("lidt %0; ud2" : : "m"(none));
}

void crash_bad_instruction(void)
{
	uint64_t v;

	/*
	 * popcnt with an operand in unbacked MMIO space: KVM must emulate
	 * it (on any host) and its emulator has no popcnt.
	 */
	printf("badinsn: popcnt from MMIO\n");
	__asm__ volatile(".byte 0xf3, 0x48, 0x0f, 0xb8, 0x04, 0x25; .long 0xD0000000"
			 : "=a"(v) : : "memory");
	printf("badinsn: survived (%lx)\n", v);
}
