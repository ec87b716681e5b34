// SPDX-License-Identifier: MIT
/*
 * Snap mode ("snap" on the command line): a long run whose self-checks a
 * broken save or restore would trip, for tests/vm_snap.sh and the saved
 * states of the mount.  Every 10 ms LAPIC timer tick it
 *
 *   - rewrites one 1 KiB block of a 256 KiB area with a pattern of that
 *     tick and records its checksum, and checks another block against
 *     the checksum recorded for it (memory restored wrong, or not at all);
 *   - checks that the TSC never went backwards, and that ticks keep
 *     coming (a timer or an interrupt controller restored wrong);
 *   - keeps one disk request in flight when a disk is there: a write of
 *     a sector run with a pattern, then its read back, compared (a
 *     request lost, or completed twice, across a save);
 *   - answers pings and pings back with "ip=" (net.c), like idle mode.
 *
 * It prints "snap: alive ..." every second and "snap: FAIL <why>" for
 * any check that fails.  A host that restored it types "restored" on the
 * console; the guest counts those: "snap: restored, cycles N".
 */
#include "guest.h"

#define AREA		(256 * 1024)
#define BLOCK		1024
#define NBLOCKS		(AREA / BLOCK)
#define TICK_US		10000
#define DISK_SECTORS	16		/* 8 KiB a request */
#define DISK_RUNS	64		/* ... over a 512 KiB region */
#define DISK_BASE	8192		/* sector 8192: 4 MiB in, clear of "blk" */

static uint8_t area[AREA] __attribute__((aligned(4096)));
static uint64_t sums[NBLOCKS];
static uint8_t disk_buf[DISK_SECTORS * 512] __attribute__((aligned(4096)));

static volatile unsigned int ticks;
static volatile bool button;
static unsigned int failures, cycles;

static void tick_irq(void)
{
	ticks++;
}

static void button_irq(void)
{
	button = true;
}

static void fail(const char *what, uint64_t a, uint64_t b)
{
	failures++;
	printf("snap: FAIL %s (%lx, %lx)\n", what, a, b);
}

/* Words of a block's pattern for @tick: cheap to make, different per tick. */
static uint64_t word(unsigned int block, unsigned int tick, unsigned int i)
{
	return ((uint64_t)tick << 32 | (uint64_t)block << 16 | i) * 0x9e3779b97f4a7c15ULL;
}

static uint64_t checksum(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	uint64_t s = 0;

	for (unsigned int i = 0; i < BLOCK / 8; i++)
		s = (s ^ w[i]) * 0x100000001b3ULL;
	return s;
}

static void memory_step(unsigned int tick)
{
	unsigned int b = tick % NBLOCKS, c = (tick * 7 + 3) % NBLOCKS;
	uint64_t *w = (uint64_t *)(area + b * BLOCK);

	for (unsigned int i = 0; i < BLOCK / 8; i++)
		w[i] = word(b, tick, i);
	sums[b] = checksum(area + b * BLOCK);
	if (checksum(area + c * BLOCK) != sums[c])
		fail("memory checksum", c, sums[c]);
}

/* ---- the disk ----------------------------------------------------------------- */

static bool disk;
static bool disk_writing;
static unsigned int disk_run, disk_gen;
static uint64_t disk_ok;

static void disk_fill(unsigned int run, unsigned int gen)
{
	uint64_t *w = (uint64_t *)disk_buf;

	for (unsigned int i = 0; i < sizeof(disk_buf) / 8; i++)
		w[i] = ((uint64_t)gen << 40 | (uint64_t)run << 24 | i) * 0xc2b2ae3d27d4eb4fULL;
}

static void disk_start(void)
{
	uint64_t sector = DISK_BASE + (uint64_t)disk_run * DISK_SECTORS;

	if (disk_writing)
		disk_fill(disk_run, disk_gen);
	else
		memset(disk_buf, 0xEE, sizeof(disk_buf));
	blk_async_start(disk_writing, sector, disk_buf, sizeof(disk_buf));
}

static void disk_step(void)
{
	int st = blk_async_poll();

	if (st == 0)
		return;		/* still in flight: across a save, perhaps */
	if (st == -2)
		fail("disk request", disk_run, disk_writing);
	if (st == 1 && !disk_writing) {
		uint64_t *got = (uint64_t *)disk_buf;

		for (unsigned int i = 0; i < sizeof(disk_buf) / 8; i++) {
			uint64_t want = ((uint64_t)disk_gen << 40 | (uint64_t)disk_run << 24 | i) *
					0xc2b2ae3d27d4eb4fULL;

			if (got[i] != want) {
				fail("disk read back", disk_run, i);
				break;
			}
		}
		disk_ok++;
		if (++disk_run == DISK_RUNS) {
			disk_run = 0;
			disk_gen++;
		}
	}
	/* A write is followed by its read; a read by the next write. */
	disk_writing = st == 1 ? !disk_writing : disk_writing;
	disk_start();
}

/* ---- the loop ------------------------------------------------------------------- */

void snap_run(void)
{
	uint64_t last_tsc = rdtsc(), last_tick_tsc, per_tick;
	unsigned int seen = 0, round = 0;
	const char *line;
	bool net;
	char why[96];

	if (!acpi.ioapic) {
		printf("snap: needs an IOAPIC (%s)\n", acpi.why);
		acpi_poweroff();
	}
	pic_disable();
	irq_set_handler(VEC_PWRB, button_irq);
	ioapic_route(acpi.ioapic, 9, VEC_PWRB, lapic_id());
	serial_rx_start();
	net = net_idle_start();
	disk = blk_async_setup(why) == 0;
	if (disk) {
		disk_writing = true;
		disk_start();
	}
	for (unsigned int b = 0; b < NBLOCKS; b++)
		sums[b] = checksum(area + b * BLOCK);
	irq_set_handler(VEC_TIMER, tick_irq);
	lapic_timer_periodic(VEC_TIMER, TICK_US);
	per_tick = tsc_rate() * TICK_US;
	last_tick_tsc = rdtsc();
	printf("snap: running (disk %s, net %s)\n", disk ? "yes" : "no", net ? "yes" : "no");
	for (;;) {
		uint64_t now;

		__asm__ volatile("cli" : : : "memory");
		if (button || ticks != seen || serial_rx_pending() || (net && net_pending()))
			__asm__ volatile("sti" : : : "memory");
		else
			__asm__ volatile("sti; hlt" : : : "memory");
		if (button) {
			printf("snap: power button after %u rounds, %u cycles, %u failures\n",
			       round, cycles, failures);
			acpi_poweroff();
		}
		now = rdtsc();
		if (now < last_tsc)
			fail("the TSC went backwards", last_tsc, now);
		last_tsc = now;
		if (ticks != seen) {
			last_tick_tsc = now;
		} else if (now - last_tick_tsc > 100 * per_tick) {
			/* A second of TSC without a tick: the timer stopped. */
			fail("no timer tick for a second", seen, now - last_tick_tsc);
			last_tick_tsc = now;
		}
		/*
		 * One step a wakeup, however many ticks came: under an
		 * instruction emulator a step may take longer than a tick, and
		 * catching up would starve the console and the disk.
		 */
		if (seen != ticks) {
			unsigned int now_ticks = ticks;

			memory_step(now_ticks);
			if (now_ticks / 100 != seen / 100)
				printf("snap: alive round=%u ticks=%u cycles=%u disk=%lu failures=%u\n",
				       ++round, now_ticks, cycles, disk_ok, failures);
			seen = now_ticks;
		}
		if (disk)
			disk_step();
		if (net)
			net_idle_poll();
		while ((line = serial_getline())) {
			if (strncmp(line, "restored", 8) == 0)
				printf("snap: restored, cycles %u\n", ++cycles);
			else
				printf("echo: %s\n", line);
		}
	}
}
