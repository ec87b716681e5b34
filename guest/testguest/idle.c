// SPDX-License-Identifier: MIT
/*
 * Idle mode ("idle" on the command line): instead of powering off after
 * its tests, the guest stays up like a long-running VM.  It sleeps in
 * hlt and wakes for three things: a console line (answered with
 * "echo: <line>", so a host can check input still reaches it), the
 * ACPI power button (it powers off through S5, as an OS would) and, with
 * "heartbeat=N", a LAPIC timer tick every N seconds ("testguest: alive
 * K" for the K-th tick), so the console keeps moving.  With "ip=" it
 * also keeps a network end up (net.c): ARP and ping answers, link
 * changes, "ping_every=N"; the timer then ticks every 100 ms and the
 * heartbeat follows the clock.
 */
#include "guest.h"
#include "vsock.h"

static volatile bool button;
static volatile unsigned int beats;

static void power_button_irq(void)
{
	button = true;
}

static void heartbeat_irq(void)
{
	beats++;
}

static unsigned int heartbeat_seconds(void)
{
	const char *p = cmdline_arg("heartbeat");
	unsigned int n = 0;

	while (p && *p >= '0' && *p <= '9' && n < 100000)
		n = n * 10 + (unsigned int)(*p++ - '0');
	return n;
}

static bool work_pending(unsigned int beats_seen, bool net)
{
	return button || beats != beats_seen || serial_rx_pending() ||
	       (net && net_pending()) || vsock_pending() || agent_pending();
}

/* With "vsock_echo=PORT" (or "vsock"): the device, answering connections. */
static void vsock_idle_start(void)
{
	char why[96] = "";

	if (!cmdline_arg("vsock_echo") && !cmdline_has("vsock"))
		return;
	if (vsock_init(why))
		printf("vsock: %s\n", why);
}

void idle_run(void)
{
	unsigned int period = heartbeat_seconds(), seen = 0, ticks_seen = 0;
	uint64_t next_beat = 0;
	const char *line;
	bool net;

	if (!acpi.ioapic) {
		printf("testguest: idle needs an IOAPIC (%s)\n", acpi.why);
		acpi_poweroff();
	}
	pic_disable();
	/*
	 * The GED's _CRS says GSI 9, edge, active high: the same IOAPIC
	 * entry an ISA IRQ gets.  Presses before this point are lost, as
	 * they would be on a machine whose OS has not booted yet.
	 */
	irq_set_handler(VEC_PWRB, power_button_irq);
	ioapic_route(acpi.ioapic, 9, VEC_PWRB, lapic_id());
	serial_rx_start();
	net = net_idle_start();
	vsock_idle_start();
	/* The agent's retries and deadlines need a clock that ticks, as the network's. */
	if (agent_start())
		net = true;
	if (net) {
		irq_set_handler(VEC_TIMER, heartbeat_irq);
		lapic_timer_periodic(VEC_TIMER, 100000);
		next_beat = uptime_us() + (uint64_t)period * 1000000;
	} else if (period) {
		irq_set_handler(VEC_TIMER, heartbeat_irq);
		lapic_timer_periodic(VEC_TIMER, (uint64_t)period * 1000000);
	}
	printf("testguest: idle\n");
	for (;;) {
		/*
		 * Check with interrupts off, then "sti; hlt": the STI shadow
		 * holds interrupts until hlt has begun, so a wakeup that
		 * arrives after the check is not slept through.
		 */
		__asm__ volatile("cli" : : : "memory");
		if (work_pending(net ? ticks_seen : seen, net))
			__asm__ volatile("sti" : : : "memory");
		else
			__asm__ volatile("sti; hlt" : : : "memory");
		if (button) {
			printf("testguest: power button\n");
			acpi_poweroff();
		}
		if (!net) {
			while (seen != beats)
				printf("testguest: alive %u\n", ++seen);
		} else {
			ticks_seen = beats;
			while (period && uptime_us() >= next_beat) {
				printf("testguest: alive %u\n", ++seen);
				next_beat += (uint64_t)period * 1000000;
			}
			net_idle_poll();
		}
		vsock_poll();
		agent_poll();
		while ((line = serial_getline()))
			if (!agent_command(line))
				printf("echo: %s\n", line);
	}
}
