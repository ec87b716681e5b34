// SPDX-License-Identifier: MIT
/* fsvisor vm: run one VM in this process, like `lkvm run`. */
#include <errno.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "util/util.h"
#include "service/service.h"
#include "vmm/vmm.h"

static const char vm_usage[] =
	"usage: fsvisor vm run [--config VM.json] [--kernel FILE] [--initrd FILE]\n"
	"                      [--cmdline TEXT] [--mem SIZE] [--cpus N] [--name NAME]\n"
	"                      [--disk PATH[,ro][,format=vhdx|raw][,serial=S]]...\n"
	"                      [--nic mac=MAC[,fd=N]]... [--vsock CID] [--vsock-dir DIR]\n"
	"                      [--cpu-mask FEATURE,...] [--on-reboot reset|stop]\n"
	"                      [--on-triple-fault stop|reset] [--control SOCKET]\n"
	"                      [--console-log FILE] [--console-ring FILE] [--no-console]\n"
	"                      [--report-startup]\n"
	"       fsvisor vm run --restore DIR [--nic mac=MAC,fd=N]... [--vsock-dir DIR] [--control SOCKET]\n"
	"                      [--console-log FILE] [--console-ring FILE] [--no-console]\n"
	"       fsvisor vm check [--config VM.json] [options as for run]\n"
	"       fsvisor vm state-info DIR                what a saved state is, and whether\n"
	"                                                this host can restore it\n"
	"       fsvisor vm ctl SOCKET status|pause|resume|reset|shutdown|stop|kill|vsock-reset\n"
	"       fsvisor vm ctl SOCKET console [--all]    follow the console\n"
	"       fsvisor vm ctl SOCKET send TEXT           type TEXT (\\n for Enter)\n"
	"       fsvisor vm ctl SOCKET nic-connect N FD    NIC N's backend: socket FD\n"
	"       fsvisor vm ctl SOCKET nic-disconnect N    NIC N's link down\n"
	"       fsvisor vm ctl SOCKET save DIR [--stop]   save the VM's state into DIR\n"
	"                                                (new); --stop ends it, else it runs on\n"
	"The console is on stdin/stdout; on a terminal, Ctrl-a x quits.\n"
	"Flags override the same fields of --config.  Exit status: 0 the guest\n"
	"powered off, 1 bad configuration, 2 usage, 3 the VM failed, 4 killed,\n"
	"5 saved (and stopped).\n";

static int usage_error(const char *msg, const char *arg)
{
	fprintf(stderr, "fsvisor vm: ");
	fprintf(stderr, msg, arg);
	fprintf(stderr, "\n%s", vm_usage);
	return EXIT_USAGE;
}

static json_t *mask_list(const char *csv)
{
	json_t *a = json_array();
	char *copy = strdup(csv), *save = NULL;

	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
		json_array_append_new(a, json_string(t));
	free(copy);
	return a;
}

/* PATH[,ro][,format=F][,serial=S] as a disks[] entry; NULL if malformed. */
static json_t *disk_spec(const char *spec)
{
	char *copy = strdup(spec), *save = NULL, *part;
	json_t *d = json_object();
	bool first = true;

	for (part = strtok_r(copy, ",", &save); part; part = strtok_r(NULL, ",", &save)) {
		if (first) {
			json_object_set_new(d, "path", json_string(part));
			first = false;
		} else if (strcmp(part, "ro") == 0) {
			json_object_set_new(d, "read_only", json_true());
		} else if (strncmp(part, "format=", 7) == 0) {
			json_object_set_new(d, "format", json_string(part + 7));
		} else if (strncmp(part, "serial=", 7) == 0) {
			json_object_set_new(d, "serial", json_string(part + 7));
		} else {
			json_decref(d);
			d = NULL;
			break;
		}
	}
	if (d && first) {
		json_decref(d);
		d = NULL;
	}
	free(copy);
	return d;
}

/* "fd=N" as a number, or -1. */
static int parse_fd(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s < '0' || *s > '9' || *end || v > 1000000)
		return -1;
	return (int)v;
}

/*
 * mac=MAC[,fd=N] as a nics[] entry and its backend descriptor (-1 for
 * none); NULL if malformed.
 */
static json_t *nic_spec(const char *spec, int *fd)
{
	char *copy = strdup(spec), *save = NULL, *part;
	json_t *n = json_object();

	*fd = -1;
	for (part = strtok_r(copy, ",", &save); part; part = strtok_r(NULL, ",", &save)) {
		if (strncmp(part, "mac=", 4) == 0) {
			json_object_set_new(n, "mac", json_string(part + 4));
		} else if (strncmp(part, "fd=", 3) == 0 && parse_fd(part + 3) >= 0) {
			*fd = parse_fd(part + 3);
		} else {
			json_decref(n);
			n = NULL;
			break;
		}
	}
	if (n && !json_object_get(n, "mac")) {
		json_decref(n);
		n = NULL;
	}
	free(copy);
	return n;
}

static int vm_run_or_check(int argc, char **argv, bool run)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'f' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "cmdline", required_argument, NULL, 'c' },
		{ "mem", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'p' },
		{ "name", required_argument, NULL, 'n' },
		{ "cpu-mask", required_argument, NULL, 'M' },
		{ "on-reboot", required_argument, NULL, 'R' },
		{ "on-triple-fault", required_argument, NULL, 'T' },
		{ "control", required_argument, NULL, 'C' },
		{ "console-log", required_argument, NULL, 'L' },
		{ "console-ring", required_argument, NULL, 'G' },
		{ "no-console", no_argument, NULL, 'N' },
		{ "report-startup", no_argument, NULL, 'S' },
		{ "disk", required_argument, NULL, 'd' },
		{ "nic", required_argument, NULL, 'e' },
		{ "restore", required_argument, NULL, 'r' },
		{ "vsock", required_argument, NULL, 'V' },
		{ "vsock-dir", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vm_worker_opts wo = { .stdio_console = true };
	json_t *disks = NULL, *nics = NULL;
	json_t *doc = NULL, *over = json_object();
	int nic_fds[VMM_MAX_NICS];
	unsigned int n_nic_fds = 0;
	struct vm_config *cfg;
	const char *config_path = NULL;
	char err[1024];
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "f:k:i:c:m:p:n:M:R:T:C:L:NSd:e:r:V:D:h", longopts,
				NULL)) != -1) {
		switch (c) {
		case 'r':
			wo.restore_dir = optarg;
			break;
		case 'f':
			config_path = optarg;
			break;
		case 'k':
			json_object_set_new(over, "kernel", json_string(optarg));
			break;
		case 'i':
			json_object_set_new(over, "initrd", json_string(optarg));
			break;
		case 'c':
			json_object_set_new(over, "cmdline", json_string(optarg));
			break;
		case 'm':
			json_object_set_new(over, "memory", json_string(optarg));
			break;
		case 'p': {
			char *end;
			long n = strtol(optarg, &end, 10);

			if (*end || end == optarg)
				return usage_error("--cpus '%s' is not a number", optarg);
			json_object_set_new(over, "cpus", json_integer(n));
			break;
		}
		case 'n':
			json_object_set_new(over, "name", json_string(optarg));
			break;
		case 'M':
			json_object_set_new(over, "cpu", json_pack("{s:o}", "mask",
								   mask_list(optarg)));
			break;
		case 'R':
			json_object_set_new(over, "on_reboot", json_string(optarg));
			break;
		case 'T':
			json_object_set_new(over, "on_triple_fault", json_string(optarg));
			break;
		case 'C':
			wo.control_path = optarg;
			break;
		case 'L':
			wo.console_log = optarg;
			break;
		case 'G':
			wo.console_ring = optarg;
			break;
		case 'N':
			wo.stdio_console = false;
			break;
		case 'S':
			wo.report_startup = true;
			break;
		case 'd': {
			json_t *d = disk_spec(optarg);

			if (!d) {
				json_decref(over);
				json_decref(disks);
				return usage_error("--disk '%s': expected PATH[,ro][,format=vhdx|raw][,serial=S]",
						   optarg);
			}
			if (!disks)
				disks = json_array();
			json_array_append_new(disks, d);
			break;
		}
		case 'e': {
			int fd;
			json_t *nic = nic_spec(optarg, &fd);
			const char *why;

			if (!nic || n_nic_fds == VMM_MAX_NICS) {
				json_decref(nic);
				json_decref(over);
				json_decref(disks);
				json_decref(nics);
				return nic ? usage_error("at most %s --nic options", "8") :
					     usage_error("--nic '%s': expected mac=MAC[,fd=N]", optarg);
			}
			why = fd >= 0 ? vmm_nic_fd_problem(fd) : NULL;
			if (why) {
				fprintf(stderr, "fsvisor vm: --nic %s: %s\n", optarg, why);
				json_decref(nic);
				json_decref(over);
				json_decref(disks);
				json_decref(nics);
				return 1;
			}
			if (!nics)
				nics = json_array();
			json_array_append_new(nics, nic);
			nic_fds[n_nic_fds++] = fd;
			break;
		}
		case 'V': {
			char *end;
			unsigned long long cid = strtoull(optarg, &end, 10);

			if (*end || end == optarg || optarg[0] == '-')
				return usage_error("--vsock '%s' is not a guest CID", optarg);
			json_object_set_new(over, "vsock", json_pack("{s:I}", "cid",
								     (json_int_t)cid));
			break;
		}
		case 'D':
			wo.vsock_dir = optarg;
			break;
		case 'h':
			printf("%s", vm_usage);
			json_decref(over);
			return 0;
		default:
			json_decref(over);
			return usage_error("bad option%s", "");
		}
	}
	if (disks)
		json_object_set_new(over, "disks", disks);
	if (nics) {
		json_object_set_new(over, "nics", nics);
		wo.nic_fds = nic_fds;
		wo.n_nic_fds = n_nic_fds;
	}
	if (optind != argc) {
		json_decref(over);
		return usage_error("unexpected argument '%s'", argv[optind]);
	}
	if (wo.restore_dir) {
		/* The configuration is the state's; NICs here only bring their sockets. */
		json_object_del(over, "nics");
		if (config_path || json_object_size(over) || !run) {
			json_decref(over);
			return usage_error("--restore takes its configuration from the state: only --nic, --vsock-dir, --control and the console options go with it%s",
					   "");
		}
		json_decref(over);
		return vm_worker_run(NULL, &wo);
	}
	if (config_path) {
		ret = json_file_load(config_path, &doc, err, sizeof(err));
		if (ret) {
			fprintf(stderr, "fsvisor vm: %s\n", err);
			json_decref(over);
			return 1;
		}
		json_object_update(doc, over);
		json_decref(over);
	} else {
		doc = over;
	}
	ret = vm_config_parse(doc, &cfg, err, sizeof(err));
	json_decref(doc);
	if (ret) {
		fprintf(stderr, "fsvisor vm: %s\n", err);
		return 1;
	}
	if (!run) {
		json_t *full = vm_config_to_json(cfg);
		char *text = json_dumps(full, JSON_INDENT(2) | JSON_SORT_KEYS);

		printf("%s\n", text);
		free(text);
		json_decref(full);
		vm_config_free(cfg);
		return 0;
	}
	ret = vm_worker_run(cfg, &wo);
	vm_config_free(cfg);
	return ret;
}

/* Unescape \n, \r, \t and \\ in TEXT for "send". */
static size_t unescape(const char *in, char *out)
{
	size_t n = 0;

	for (; *in; in++) {
		if (*in == '\\' && in[1]) {
			in++;
			out[n++] = *in == 'n' ? '\n' : *in == 'r' ? '\r' :
				   *in == 't' ? '\t' : *in;
		} else {
			out[n++] = *in;
		}
	}
	return n;
}

static int ctl_console(int fd, bool all)
{
	json_t *req = json_pack("{s:s, s:s}", "cmd", "console-subscribe",
				"from", all ? "oldest" : "now");
	json_t *m = NULL;
	int ret = msg_call(fd, req, &m);

	json_decref(req);
	if (ret || !json_is_true(json_object_get(m, "ok"))) {
		fprintf(stderr, "fsvisor vm ctl: subscribe failed\n");
		json_decref(m);
		return 1;
	}
	json_decref(m);
	/* Until the worker goes away. */
	while (msg_recv(fd, &m, NULL, NULL, 0) == 0) {
		const char *ev = json_string_value(json_object_get(m, "event"));
		const char *data = json_string_value(json_object_get(m, "data"));
		uint8_t *bytes;
		size_t n;

		if (ev && strcmp(ev, "console") == 0 && data &&
		    base64_decode(data, &bytes, &n) == 0) {
			fwrite(bytes, 1, n, stdout);
			fflush(stdout);
			free(bytes);
		} else if (ev && strcmp(ev, "state") == 0) {
			fprintf(stderr, "[state %s: %s]\n",
				json_string_value(json_object_get(m, "state")),
				json_string_value(json_object_get(m, "reason")));
		}
		json_decref(m);
	}
	return 0;
}

static int vm_ctl(int argc, char **argv)
{
	json_t *req, *reply = NULL;
	int fd, ret, nic_fd = -1;

	if (argc < 3)
		return usage_error("ctl needs SOCKET and a command%s", "");
	fd = msg_connect(argv[1]);
	if (fd < 0) {
		fprintf(stderr, "fsvisor vm ctl: cannot connect to %s: %s\n", argv[1],
			strerror(-fd));
		return 1;
	}
	if (strcmp(argv[2], "console") == 0) {
		ret = ctl_console(fd, argc > 3 && strcmp(argv[3], "--all") == 0);
		close(fd);
		return ret;
	}
	if (strcmp(argv[2], "send") == 0) {
		char *buf;
		char *b64;
		size_t n;

		if (argc != 4) {
			close(fd);
			return usage_error("send needs TEXT%s", "");
		}
		buf = malloc(strlen(argv[3]) + 1);
		n = unescape(argv[3], buf);
		b64 = base64_encode(buf, n);
		req = json_pack("{s:s, s:s}", "cmd", "console-input", "data", b64);
		free(buf);
		free(b64);
	} else if (strcmp(argv[2], "nic-connect") == 0 ||
		   strcmp(argv[2], "nic-disconnect") == 0) {
		bool connect = strcmp(argv[2], "nic-connect") == 0;
		int index = argc > 3 ? parse_fd(argv[3]) : -1;

		nic_fd = connect && argc > 4 ? parse_fd(argv[4]) : -1;
		if (index < 0 || argc != (connect ? 5 : 4) || (connect && nic_fd < 0)) {
			close(fd);
			return usage_error(connect ? "nic-connect needs N (the NIC) and FD (a socket)%s" :
					   "nic-disconnect needs N (the NIC)%s", "");
		}
		req = json_pack("{s:s, s:i}", "cmd", argv[2], "nic", index);
	} else if (strcmp(argv[2], "save") == 0) {
		bool stop = argc == 5 && strcmp(argv[4], "--stop") == 0;
		char dir[2 * PATH_MAX], cwd[PATH_MAX];

		if (argc < 4 || argc > 5 || (argc == 5 && !stop)) {
			close(fd);
			return usage_error("save needs DIR, and maybe --stop%s", "");
		}
		/* The worker's directory is not ours: a relative DIR is made whole here. */
		if (argv[3][0] != '/' && !getcwd(cwd, sizeof(cwd))) {
			close(fd);
			return usage_error("save: cannot tell the current directory: %s",
					   strerror(errno));
		}
		if ((size_t)snprintf(dir, sizeof(dir), "%s%s%s", argv[3][0] != '/' ? cwd : "",
				     argv[3][0] != '/' ? "/" : "", argv[3]) >= sizeof(dir)) {
			close(fd);
			return usage_error("save: DIR is longer than PATH_MAX%s", "");
		}
		req = json_pack("{s:s, s:s, s:s}", "cmd", "save", "dir", dir, "then",
				stop ? "stop" : "resume");
	} else {
		req = json_pack("{s:s}", "cmd", argv[2]);
	}
	ret = msg_send(fd, req, nic_fd >= 0 ? &nic_fd : NULL, nic_fd >= 0 ? 1 : 0);
	if (!ret)
		ret = msg_recv(fd, &reply, NULL, NULL, 0);
	json_decref(req);
	close(fd);
	if (ret) {
		/* stop and kill end the worker: no reply is fine. */
		if (strcmp(argv[2], "kill") == 0 || strcmp(argv[2], "stop") == 0)
			return 0;
		fprintf(stderr, "fsvisor vm ctl: %s\n", strerror(-ret));
		return 1;
	}
	return cmd_print_reply(reply);
}

static int state_info(int argc, char **argv)
{
	char err[1024];
	json_t *info;
	char *text;
	bool ok;

	if (argc != 2)
		return usage_error("state-info needs DIR%s", "");
	info = vmm_state_info(argv[1], err, sizeof(err));
	if (!info) {
		fprintf(stderr, "fsvisor vm state-info: %s: %s\n", argv[1], err);
		return 1;
	}
	ok = json_is_true(json_object_get(info, "restorable"));
	text = json_dumps(info, JSON_INDENT(2) | JSON_SORT_KEYS);
	printf("%s\n", text);
	free(text);
	json_decref(info);
	return ok ? 0 : 3;
}

int cmd_vm(int argc, char **argv)
{
	/* Started by the service, not by people: not in the usage. */
	if (argc >= 2 && strcmp(argv[1], "monitor") == 0)
		return service_monitor(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "ctl") == 0)
		return vm_ctl(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "run") == 0)
		return vm_run_or_check(argc - 1, argv + 1, true);
	if (argc >= 2 && strcmp(argv[1], "check") == 0)
		return vm_run_or_check(argc - 1, argv + 1, false);
	if (argc >= 2 && strcmp(argv[1], "state-info") == 0)
		return state_info(argc - 1, argv + 1);
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		printf("%s", vm_usage);
		return 0;
	}
	if (argc < 2)
		return usage_error("which command?%s", "");
	return usage_error("unknown command '%s'", argv[1]);
}
