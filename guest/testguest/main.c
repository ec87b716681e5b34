// SPDX-License-Identifier: MIT
/*
 * The test guest: reads "tests=a,b,c" from its command line, runs the
 * named tests, prints "TEST <name> PASS" or "TEST <name> FAIL <why>" for
 * each, and powers off through ACPI, or with "idle" stays up (idle.c).
 * "dumpdsdt" prints the DSDT in hex first.
 */
#include "guest.h"

#define ZP_CMD_LINE_PTR 0x228

struct test {
	const char *name;
	bool (*run)(char *why);
};

static const struct test tests[] = {
	{ "serial", test_serial },
	{ "smp", test_smp },
	{ "timer", test_timer },
	{ "pci", test_pci },
	{ "acpi", test_acpi },
	{ "reboot", test_reboot },
	{ "kbdreset", test_kbdreset },
	{ "rtc", test_rtc },
	{ "blk", test_blk },
	{ "blkro", test_blkro },
	{ "net", test_net },
	{ "netflood", test_netflood },
	{ "vsockrst", test_vsockrst },
	{ "vsocksend", test_vsocksend },
};

static const char *cmdline;

static const char *find_arg(const char *line, const char *key)
{
	size_t k = strlen(key);

	for (const char *p = line; *p; p++) {
		if ((p == line || p[-1] == ' ') && strncmp(p, key, k) == 0 &&
		    p[k] == '=')
			return p + k + 1;
	}
	return NULL;
}

static void run_test(const char *name, size_t len)
{
	char why[96] = "";

	if (len == 11 && strncmp(name, "triplefault", 11) == 0) {
		crash_triple_fault();
		return;
	}
	if (len == 7 && strncmp(name, "badinsn", 7) == 0) {
		crash_bad_instruction();
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(tests); i++) {
		if (strlen(tests[i].name) == len &&
		    strncmp(tests[i].name, name, len) == 0) {
			if (tests[i].run(why))
				printf("TEST %s PASS\n", tests[i].name);
			else
				printf("TEST %s FAIL %s\n", tests[i].name, why);
			return;
		}
	}
	printf("TEST ");
	for (size_t i = 0; i < len; i++)
		printf("%c", name[i]);
	printf(" FAIL no such test\n");
}

void guest_main(const uint8_t *boot_params);
const char *cmdline_arg(const char *key)
{
	return find_arg(cmdline, key);
}

bool cmdline_has(const char *word)
{
	size_t k = strlen(word);

	for (const char *p = cmdline; *p; p++) {
		if ((p == cmdline || p[-1] == ' ') && strncmp(p, word, k) == 0 &&
		    (p[k] == ' ' || !p[k]))
			return true;
	}
	return false;
}

void guest_main(const uint8_t *boot_params)
{
	const char *list;

	cmdline = (const char *)(uint64_t)(*(const uint32_t *)(boot_params + ZP_CMD_LINE_PTR));

	serial_init();
	printf("testguest: command line '%s'\n", cmdline);
	lapic_enable();
	delay_calibrate();
	printf("testguest: tsc %lu per us\n", tsc_rate());
	idt_init();
	acpi_init();
	fill_run(boot_params);
	if (cmdline_has("dumpdsdt"))
		acpi_dump_dsdt();
	list = find_arg(cmdline, "tests");
	while (list && *list && *list != ' ') {
		const char *end = list;

		while (*end && *end != ',' && *end != ' ')
			end++;
		run_test(list, (size_t)(end - list));
		list = *end == ',' ? end + 1 : end;
	}
	if (cmdline_has("snap"))
		snap_run();
	if (cmdline_has("idle"))
		idle_run();
	printf("testguest: done\n");
	acpi_poweroff();
}
