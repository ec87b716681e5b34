// SPDX-License-Identifier: MIT
/* Hardware the guest drives: COM1, the TSC, the IDT, LAPIC and IOAPIC. */
#include "guest.h"

#define COM1 0x3F8

void serial_init(void)
{
	outb(COM1 + 1, 0x00);		/* no interrupts yet */
	outb(COM1 + 3, 0x80);		/* DLAB */
	outb(COM1 + 0, 1);		/* 115200 baud */
	outb(COM1 + 1, 0);
	outb(COM1 + 3, 0x03);		/* 8N1 */
	outb(COM1 + 2, 0x07);		/* FIFOs on, cleared */
	outb(COM1 + 4, 0x0B);		/* DTR, RTS, OUT2 */
}

void serial_putc(char c)
{
	while (!(inb(COM1 + 5) & 0x20))
		;
	outb(COM1, (uint8_t)c);
}

/*
 * Input: the interrupt handler only moves bytes from the UART to a ring
 * and always empties the FIFO, because IRQ 4 is an edge: a line left
 * high would never interrupt again.  Lines are put together outside the
 * handler, so several can arrive before the main loop gets to them.
 */
#define RX_RING 256

static volatile char rx_ring[RX_RING];
static volatile unsigned int rx_head, rx_tail;

static void com1_irq(void)
{
	while (inb(COM1 + 5) & 0x01) {
		char c = (char)inb(COM1);

		if (rx_head - rx_tail < RX_RING)
			rx_ring[rx_head++ % RX_RING] = c;
	}
}

void serial_rx_start(void)
{
	irq_set_handler(VEC_COM1, com1_irq);
	ioapic_route(acpi.ioapic, 4, VEC_COM1, lapic_id());
	outb(COM1 + 1, 0x01);		/* received-data interrupts */
}

void serial_rx_stop(void)
{
	outb(COM1 + 1, 0x00);
}

bool serial_rx_pending(void)
{
	return rx_head != rx_tail;
}

const char *serial_getline(void)
{
	static char line[128];
	static unsigned int len;

	while (rx_tail != rx_head) {
		char c = rx_ring[rx_tail % RX_RING];

		rx_tail++;
		if (c == '\r' || c == '\n') {
			/* "\r\n" and empty lines end nothing. */
			if (!len)
				continue;
			line[len] = 0;
			len = 0;
			return line;
		}
		if (len < sizeof(line) - 1)
			line[len++] = c;
	}
	return NULL;
}

/* ---- time: the TSC, calibrated once against the LAPIC timer --------------- */

/*
 * KVM's virtual LAPIC timer counts at 1 GHz (one count per nanosecond)
 * with divide-by-1, whatever the host: a better ruler than the PIT.
 */
#define LAPIC_COUNTS_PER_US 1000

static uint64_t tsc_per_us = 1000;
static uint64_t tsc_start;

void delay_calibrate(void)
{
	uint32_t c0, c;
	uint64_t t0, t1;

	lapic_write(LAPIC_TIMER_DIV, 0xB);		/* divide by 1 */
	lapic_write(LAPIC_LVT_TIMER, 1u << 16);	/* masked, one shot */
	lapic_write(LAPIC_TIMER_INIT, 0xFFFFFFFF);
	c0 = lapic_read(LAPIC_TIMER_CUR);
	t0 = rdtsc();
	do {
		c = lapic_read(LAPIC_TIMER_CUR);
	} while (c0 - c < 10000 * LAPIC_COUNTS_PER_US);	/* 10 ms */
	t1 = rdtsc();
	lapic_write(LAPIC_TIMER_INIT, 0);
	if ((t1 - t0) / (c0 - c) * LAPIC_COUNTS_PER_US > 0)
		tsc_per_us = (t1 - t0) * LAPIC_COUNTS_PER_US / (c0 - c);
	tsc_start = rdtsc();
}

void lapic_timer_periodic(unsigned int vector, uint64_t us)
{
	/* Divide by 128, so that 32 bits of count reach past nine minutes. */
	uint64_t count = us * LAPIC_COUNTS_PER_US / 128;

	if (count > 0xFFFFFFFF)
		count = 0xFFFFFFFF;
	lapic_write(LAPIC_TIMER_INIT, 0);
	if (!us) {
		lapic_write(LAPIC_LVT_TIMER, 1u << 16);	/* masked */
		return;
	}
	lapic_write(LAPIC_TIMER_DIV, 0xA);
	lapic_write(LAPIC_LVT_TIMER, (1u << 17) | vector);
	lapic_write(LAPIC_TIMER_INIT, count ? (uint32_t)count : 1);
}

void udelay(uint64_t us)
{
	uint64_t end = rdtsc() + us * tsc_per_us;

	while (rdtsc() < end)
		__asm__ volatile("pause");
}

uint64_t tsc_rate(void)
{
	return tsc_per_us;
}

uint64_t uptime_us(void)
{
	return (rdtsc() - tsc_start) / tsc_per_us;
}

/* ---- interrupts ---------------------------------------------------------- */

struct idt_entry {
	uint16_t off_lo;
	uint16_t sel;
	uint8_t ist;
	uint8_t type;
	uint16_t off_mid;
	uint32_t off_hi;
	uint32_t zero;
} __attribute__((packed));

static struct idt_entry idt[256] __attribute__((aligned(16)));
static irq_fn handlers[256];

#define STUB(n) extern char isr_##n[];
STUB(0) STUB(1) STUB(2) STUB(3) STUB(4) STUB(5) STUB(6) STUB(7) STUB(8)
STUB(9) STUB(10) STUB(11) STUB(12) STUB(13) STUB(14) STUB(16) STUB(17)
STUB(18) STUB(19) STUB(36) STUB(41) STUB(64) STUB(80) STUB(81) STUB(82)
STUB(83) STUB(255)

static void idt_set(unsigned int v, void *fn)
{
	uint64_t a = (uint64_t)fn;
	uint16_t cs;

	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	idt[v].off_lo = (uint16_t)a;
	idt[v].sel = cs;
	idt[v].ist = 0;
	idt[v].type = 0x8E;		/* present, interrupt gate */
	idt[v].off_mid = (uint16_t)(a >> 16);
	idt[v].off_hi = (uint32_t)(a >> 32);
	idt[v].zero = 0;
}

void idt_init(void)
{
	static const struct {
		unsigned int v;
		char *fn;
	} stubs[] = {
		{ 0, isr_0 }, { 1, isr_1 }, { 2, isr_2 }, { 3, isr_3 }, { 4, isr_4 },
		{ 5, isr_5 }, { 6, isr_6 }, { 7, isr_7 }, { 8, isr_8 }, { 9, isr_9 },
		{ 10, isr_10 }, { 11, isr_11 }, { 12, isr_12 }, { 13, isr_13 },
		{ 14, isr_14 }, { 16, isr_16 }, { 17, isr_17 }, { 18, isr_18 },
		{ 19, isr_19 }, { 36, isr_36 }, { 41, isr_41 }, { 64, isr_64 },
		{ 80, isr_80 }, { 81, isr_81 }, { 82, isr_82 }, { 83, isr_83 },
		{ 255, isr_255 },
	};
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) d = { sizeof(idt) - 1, (uint64_t)idt };

	for (size_t i = 0; i < ARRAY_SIZE(stubs); i++)
		idt_set(stubs[i].v, stubs[i].fn);
	__asm__ volatile("lidt %0" : : "m"(d));
}

void irq_set_handler(unsigned int vector, irq_fn fn)
{
	handlers[vector] = fn;
}

void isr_dispatch(uint64_t vector, uint64_t error, uint64_t rip);
void isr_dispatch(uint64_t vector, uint64_t error, uint64_t rip)
{
	if (vector < 32) {
		/* Say so and power off: a hung guest only makes tests slow. */
		printf("exception %lu (error %lx) at rip %lx\n", vector, error, rip);
		acpi_poweroff();
	}
	if (handlers[vector])
		handlers[vector]();
	if (vector != 255)
		lapic_write(LAPIC_EOI, 0);
}

/* ---- APICs ------------------------------------------------------------------ */

uint32_t lapic_read(unsigned int reg)
{
	return mmio_read32(LAPIC_BASE + reg);
}

void lapic_write(unsigned int reg, uint32_t v)
{
	mmio_write32(LAPIC_BASE + reg, v);
}

void lapic_enable(void)
{
	lapic_write(LAPIC_SVR, 0x100 | 0xFF);	/* enabled, spurious 0xFF */
}

unsigned int lapic_id(void)
{
	return lapic_read(LAPIC_ID) >> 24;
}

/* The IOAPIC delivers every interrupt; the 8259s must not as well. */
void pic_disable(void)
{
	outb(0x21, 0xFF);
	outb(0xA1, 0xFF);
}

void ioapic_route(uint64_t base, unsigned int pin, unsigned int vector,
		  unsigned int dest)
{
	/*
	 * High dword first: destination; then low: vector, fixed delivery,
	 * edge, active high, unmasked (ISA IRQs and the GED's GSI 9 alike).
	 */
	mmio_write32(base, 0x11 + 2 * pin);
	mmio_write32(base + 0x10, dest << 24);
	mmio_write32(base, 0x10 + 2 * pin);
	mmio_write32(base + 0x10, vector);
}
