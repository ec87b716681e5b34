/* SPDX-License-Identifier: MIT */
/* The fsvisor subcommands: each takes argc/argv from its own name on. */
#ifndef FSVISOR_CMD_COMMANDS_H
#define FSVISOR_CMD_COMMANDS_H

#include <jansson.h>

struct command {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv);
};

/* Exit status for bad usage, as with most command-line tools. */
#define EXIT_USAGE 2

int cmd_disk(int argc, char **argv);
int cmd_vm(int argc, char **argv);
int cmd_switch(int argc, char **argv);
int cmd_agent(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_events(int argc, char **argv);
/* The mount point when none is given: $FSVISOR_MOUNT, or by user. */
char *cmd_default_mount(void);

/*
 * The ctl clients' ending: print a worker's reply as indented JSON (and
 * release it); 0 when it says "ok", else 1.
 */
int cmd_print_reply(json_t *reply);

#endif
