// SPDX-License-Identifier: MIT
/* fsvisor switch: run one virtual switch in this process, or talk to one. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "util/util.h"
#include "vswitch/vswitch.h"

static const char switch_usage[] =
	"usage: fsvisor switch run --name NAME --control SOCKET\n"
	"                          [--type private|internal|external]\n"
	"                          [--host-if IF] [--uplink IF] [--log-level LEVEL]\n"
	"       fsvisor switch ctl SOCKET status|macs|stop|JSON\n"
	"run stays in the foreground, logging on stderr.  internal and external\n"
	"switches create the TAP device --host-if; external ones bind --uplink.\n"
	"ctl sends one request (a word, or a JSON object) and prints the reply.\n"
	"Exit status of run: 0 stopped (stop, SIGTERM, SIGINT, SIGHUP), 1 could\n"
	"not start, 2 usage, 3 failed while running.  ctl: 0 ok, 1 an error reply\n"
	"or no answer, 2 usage.\n";

static int usage_error(const char *msg, const char *arg)
{
	fprintf(stderr, "fsvisor switch: ");
	fprintf(stderr, msg, arg);
	fprintf(stderr, "\n%s", switch_usage);
	return EXIT_USAGE;
}

static int switch_run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "control", required_argument, NULL, 'C' },
		{ "type", required_argument, NULL, 't' },
		{ "host-if", required_argument, NULL, 'H' },
		{ "uplink", required_argument, NULL, 'u' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vswitch_worker_opts o = { .type = VSWITCH_PRIVATE };
	enum log_level level;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "n:C:t:H:u:l:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			o.name = optarg;
			break;
		case 'C':
			o.control_path = optarg;
			break;
		case 't':
			if (vswitch_type_parse(optarg, &o.type))
				return usage_error("--type '%s': private, internal or external", optarg);
			break;
		case 'H':
			o.host_if = optarg;
			break;
		case 'u':
			o.uplink = optarg;
			break;
		case 'l':
			if (log_level_parse(optarg, &level))
				return usage_error("--log-level '%s': error, warn, info or debug", optarg);
			log_set_level(level);
			break;
		case 'h':
			printf("%s", switch_usage);
			return 0;
		default:
			return usage_error("bad option%s", "");
		}
	}
	if (optind != argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (!o.name || !name_valid(o.name))
		return usage_error("--name: %s", o.name ? name_problem(o.name) : "missing");
	if (!o.control_path)
		return usage_error("--control SOCKET is required%s", "");
	if (o.type == VSWITCH_PRIVATE && (o.host_if || o.uplink))
		return usage_error("a private switch has no host interface or uplink%s", "");
	if (o.type != VSWITCH_PRIVATE && !o.host_if)
		return usage_error("an internal or external switch needs --host-if%s", "");
	if (o.type == VSWITCH_INTERNAL && o.uplink)
		return usage_error("only an external switch has an --uplink%s", "");
	if (o.type == VSWITCH_EXTERNAL && !o.uplink)
		return usage_error("an external switch needs --uplink%s", "");
	return vswitch_worker_run(&o);
}

static int switch_ctl(int argc, char **argv)
{
	json_t *req, *reply = NULL;
	json_error_t jerr;
	int fd, ret;

	if (argc != 3)
		return usage_error("ctl needs SOCKET and one request%s", "");
	if (argv[2][0] == '{') {
		req = json_loads(argv[2], 0, &jerr);
		if (!json_is_object(req)) {
			json_decref(req);
			return usage_error("the request is not a JSON object: %s", jerr.text);
		}
	} else if (strcmp(argv[2], "status") == 0 || strcmp(argv[2], "macs") == 0 ||
		   strcmp(argv[2], "stop") == 0) {
		req = json_pack("{s:s}", "cmd", argv[2]);
	} else {
		return usage_error("unknown request '%s' (status, macs, stop or JSON)", argv[2]);
	}
	fd = msg_connect(argv[1]);
	if (fd < 0) {
		fprintf(stderr, "fsvisor switch ctl: cannot connect to %s: %s\n", argv[1],
			strerror(-fd));
		json_decref(req);
		return 1;
	}
	ret = msg_call(fd, req, &reply);
	json_decref(req);
	close(fd);
	if (ret) {
		fprintf(stderr, "fsvisor switch ctl: %s\n", strerror(-ret));
		return 1;
	}
	return cmd_print_reply(reply);
}

int cmd_switch(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "run") == 0)
		return switch_run(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "ctl") == 0)
		return switch_ctl(argc - 1, argv + 1);
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		printf("%s", switch_usage);
		return 0;
	}
	if (argc < 2)
		return usage_error("which command?%s", "");
	return usage_error("unknown command '%s'", argv[1]);
}
