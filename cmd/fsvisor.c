// SPDX-License-Identifier: MIT
/*
 * fsvisor: one binary, git-style subcommands.  The subcommands are thin;
 * the work is done by the parts they call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsvisor_config.h"
#include "cmd/commands.h"
#include "util/util.h"

int cmd_print_reply(json_t *reply)
{
	char *text = json_dumps(reply, JSON_INDENT(2) | JSON_SORT_KEYS);
	int ret = json_is_true(json_object_get(reply, "ok")) ? 0 : 1;

	printf("%s\n", text ? text : "null");
	free(text);
	json_decref(reply);
	return ret;
}

static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv);

static const struct command commands[] = {
	{ "help", "show the subcommands, or help for one", cmd_help },
	{ "version", "print the version", cmd_version },
	{ "disk", "create, inspect, check, convert, benchmark disk images", cmd_disk },
	{ "mount", "bring up the service: VMs and disks as files under a mount", cmd_mount },
	{ "ls", "list the VMs (or disks) of a mount", cmd_ls },
	{ "events", "follow the events of a mount, or of one VM", cmd_events },
	{ "vm", "run one VM in this process (console on stdio)", cmd_vm },
	{ "switch", "run one virtual switch in this process, or talk to one", cmd_switch },
	{ "agent", "install the integration services' agent into a Linux guest's root", cmd_agent },
};

static const struct command *command_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	}
	return NULL;
}

static void usage_line(FILE *f)
{
	fprintf(f, "usage: fsvisor <command> [args...]   (fsvisor help lists them)\n");
}

static int cmd_help(int argc, char **argv)
{
	if (argc > 1) {
		const struct command *c = command_find(argv[1]);
		char *sub_argv[] = { argv[1], "--help", NULL };

		if (!c) {
			fprintf(stderr, "fsvisor: unknown command '%s'\n", argv[1]);
			usage_line(stderr);
			return EXIT_USAGE;
		}
		if (c->run == cmd_help || c->run == cmd_version) {
			printf("fsvisor %s: %s\n", c->name, c->summary);
			return 0;
		}
		return c->run(2, sub_argv);
	}

	printf("fsvisor %s - virtual machines, switches and disks as a filesystem\n\n",
	       FSVISOR_VERSION);
	usage_line(stdout);
	printf("\ncommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		printf("  %-10s %s\n", commands[i].name, commands[i].summary);
	return 0;
}

static int cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("fsvisor %s\n", FSVISOR_VERSION);
	return 0;
}

int main(int argc, char **argv)
{
	const struct command *c;

	if (argc < 2) {
		usage_line(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
		return cmd_help(1, argv + 1);
	if (strcmp(argv[1], "--version") == 0)
		return cmd_version(1, argv + 1);

	c = command_find(argv[1]);
	if (!c) {
		fprintf(stderr, "fsvisor: unknown command '%s'\n", argv[1]);
		usage_line(stderr);
		return EXIT_USAGE;
	}
	return c->run(argc - 1, argv + 1);
}
