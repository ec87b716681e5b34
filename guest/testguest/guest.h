/* SPDX-License-Identifier: MIT */
/* The test guest: freestanding, 64-bit, no libc. */
#ifndef TESTGUEST_H
#define TESTGUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* lib.c */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);
void printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vprintf(const char *fmt, va_list ap);

/* hw.c */
static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;

	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static inline void mmio_write32(uint64_t addr, uint32_t v)
{
	*(volatile uint32_t *)addr = v;
}

static inline uint32_t mmio_read32(uint64_t addr)
{
	return *(volatile uint32_t *)addr;
}

void serial_putc(char c);
void serial_init(void);
/*
 * COM1 input through IOAPIC pin 4: received bytes go to a ring, lines
 * come out of serial_getline() (NULL until a whole one is there; valid
 * until the next call).
 */
void serial_rx_start(void);
void serial_rx_stop(void);
bool serial_rx_pending(void);
const char *serial_getline(void);
/* Busy-wait for about @us microseconds (TSC, calibrated by the PIT). */
void udelay(uint64_t us);
void delay_calibrate(void);
/* Microseconds since delay_calibrate(). */
uint64_t uptime_us(void);
uint64_t tsc_rate(void);

/* Interrupt vectors: legacy IRQ n through the IOAPIC at 0x20 + n. */
#define VEC_COM1 0x24
#define VEC_PWRB 0x29		/* GSI 9: the GED's ACPI power button */
#define VEC_TIMER 0x40
#define VEC_VIRTIO 0x50		/* virtio-blk's queue */
#define VEC_NET 0x51		/* virtio-net's queues */
#define VEC_NET_CONFIG 0x52	/* virtio-net's configuration changes */
#define VEC_VSOCK 0x53		/* virtio-vsock's queues */

void idt_init(void);
typedef void (*irq_fn)(void);
void irq_set_handler(unsigned int vector, irq_fn fn);

#define LAPIC_BASE 0xFEE00000ULL
#define LAPIC_ID 0x20
#define LAPIC_EOI 0xB0
#define LAPIC_SVR 0xF0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR 0x390
#define LAPIC_TIMER_DIV 0x3E0

uint32_t lapic_read(unsigned int reg);
void lapic_write(unsigned int reg, uint32_t v);
void lapic_enable(void);
/* Periodic LAPIC timer interrupts on @vector every @us; 0 stops it. */
void lapic_timer_periodic(unsigned int vector, uint64_t us);
unsigned int lapic_id(void);
void ioapic_route(uint64_t base, unsigned int pin, unsigned int vector,
		  unsigned int dest);
void pic_disable(void);

/* acpi.c */
struct acpi_info {
	bool ok;
	char why[96];
	unsigned int ncpus;
	uint8_t apic_ids[64];
	uint64_t ioapic;
	uint16_t sleep_control;
	uint16_t reset_port;
	uint8_t reset_value;
	uint8_t s5_type;
	bool hw_reduced;
	const uint8_t *dsdt;
};

extern struct acpi_info acpi;
void acpi_init(void);
void acpi_poweroff(void);
void acpi_reset(void);
void acpi_dump_dsdt(void);

/* idle.c */
void idle_run(void);

/* agent.c: the integration agent ("agent" on the command line, idle mode). */
bool agent_start(void);
bool agent_pending(void);
void agent_poll(void);
/* A console line for the agent ("hb stop", "date", ...): true if it took it. */
bool agent_command(const char *line);

/* net.c: the IPv4 end (ARP, ICMP echo) on the first virtio-net NIC. */
bool test_net(char *why);
bool test_netflood(char *why);
/* For idle mode: start answering (no wait for the link); false if no NIC. */
bool net_idle_start(void);
/* Something for net_idle_poll() to do? */
bool net_pending(void);
/* Answer, report link changes, ping every ping_every=N seconds. */
void net_idle_poll(void);

/*
 * blk.c, for snap.c: one request at a time on the first writable disk.
 * poll: 0 in flight, 1 done, -2 failed, -1 none started.
 */
int blk_async_setup(char *why);
void blk_async_start(bool write, uint64_t sector, void *buf, uint32_t len);
int blk_async_poll(void);

/* snap.c: "snap" mode, a long run of self-checks across saves and restores. */
void snap_run(void);

/* fill.c: "fill=N", N percent of RAM written (zero-page offsets below). */
#define ZP_E820_ENTRIES	0x1E8
#define ZP_E820_TABLE	0x2D0
void fill_run(const uint8_t *boot_params);

/* main.c: the value after "key=" on the command line, or NULL. */
const char *cmdline_arg(const char *key);
/* Whether the command line has @word on its own ("idle"). */
bool cmdline_has(const char *word);

/* tests.c */
bool test_serial(char *why);
bool test_smp(char *why);
bool test_timer(char *why);
bool test_pci(char *why);
bool test_acpi(char *why);
bool test_reboot(char *why);
bool test_kbdreset(char *why);
bool test_rtc(char *why);
bool test_blk(char *why);
bool test_blkro(char *why);
bool test_vsockrst(char *why);
bool test_vsocksend(char *why);
void crash_triple_fault(void);
void crash_bad_instruction(void);

#endif
