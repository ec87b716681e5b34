// SPDX-License-Identifier: MIT
/*
 * fsvisor ls: a table of the VMs (disks, switches) built only from reading the
 * mount, as any script could: the file system is the whole API.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "util/util.h"


static const char ls_usage[] =
	"usage: fsvisor ls [--disks | --switches] [--json] [MOUNTPOINT]\n"
	"A table of the VMs (name, state, cpus, memory, disks, NICs, uptime), or\n"
	"with --disks of the disks, with --switches of the switches, read from the\n"
	"mount (default: $FSVISOR_MOUNT, else /mnt/fsvisor for root, ~/fsvisor\n"
	"otherwise).  --json prints a JSON array of objects instead, with numbers\n"
	"as numbers (sizes in bytes, uptime in seconds) and null for what is not\n"
	"there: a form for scripts that stays as it is.\n";

/* How a table prints: a row of text, or one object of a JSON array. */
static bool as_json;
static json_t *json_rows;

/* The first line of a file under the mount, without its newline. */
static bool read_value(const char *dir, const char *file, char *buf, size_t len)
{
	char path[4096];
	ssize_t n;
	int fd;

	buf[0] = '\0';
	if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return false;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return true;
}

/*
 * A VM's summary file: everything the table shows, in one read, of a
 * file the page cache serves (docs/filesystem.md).
 */
struct status {
	char text[16384];
};

static bool read_status(const char *dir, struct status *st)
{
	char path[4096];
	size_t done = 0;
	int fd;

	st->text[0] = '\0';
	if (snprintf(path, sizeof(path), "%s/summary", dir) >= (int)sizeof(path))
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	for (;;) {
		ssize_t n = read(fd, st->text + done, sizeof(st->text) - 1 - done);

		if (n <= 0)
			break;
		done += (size_t)n;
	}
	close(fd);
	st->text[done] = '\0';
	return done > 0;
}

/* The value of the "key: value" line of @st, or NULL. */
static const char *status_field(const struct status *st, const char *key, char *buf,
				size_t len)
{
	size_t klen = strlen(key);

	for (const char *line = st->text; *line; ) {
		const char *end = strchr(line, '\n');
		size_t llen = end ? (size_t)(end - line) : strlen(line);

		if (llen > klen + 1 && strncmp(line, key, klen) == 0 && line[klen] == ':') {
			snprintf(buf, len, "%.*s", (int)(llen - klen - 2), line + klen + 2);
			return buf;
		}
		line += llen + (end ? 1 : 0);
	}
	return NULL;
}

/* Entries of a list like "0=d1 3=d2" or "eth0 eth1" ("none": 0). */
static int count_words(const char *list)
{
	int n = 0;

	if (!list || strcmp(list, "none") == 0)
		return 0;
	for (const char *p = list; *p; p++)
		n += *p != ' ' && (p == list || p[-1] == ' ');
	return n;
}

static void format_uptime(const char *secs, char *buf, size_t len)
{
	long s = strtol(secs, NULL, 10);

	if (s >= 86400)
		snprintf(buf, len, "%ldd%02ldh", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(buf, len, "%ldh%02ldm", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(buf, len, "%ldm%02lds", s / 60, s % 60);
	else
		snprintf(buf, len, "%lds", s);
}

static void human(const char *bytes, char *buf, size_t len)
{
	char *end;
	unsigned long long v = strtoull(bytes, &end, 10);

	if (!bytes[0] || *end)
		snprintf(buf, len, "%s", bytes[0] ? bytes : "-");
	else
		size_format(v, buf, len);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int sorted_names(const char *dir, char ***out, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t cap = 0;

	*n = 0;
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof(*names));
			if (!names)
				abort();
		}
		names[(*n)++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, *n, sizeof(*names), cmp_str);
	*out = names;
	return 0;
}

/* Entries of the directory @sub under @dir (a VM's disks/ or nics/, a switch's ports/). */
static int count_entries(const char *dir, const char *sub)
{
	char path[4096];
	struct dirent *e;
	int n = 0;
	DIR *d;

	if (snprintf(path, sizeof(path), "%s/%s", dir, sub) >= (int)sizeof(path))
		return 0;
	d = opendir(path);
	if (!d)
		return 0;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* One table: @header, then @row for each object in MNT/@kind, by name. */
static int list_table(const char *mnt, const char *kind, const char *header,
		      void (*row)(const char *name, const char *path))
{
	char dir[4096], path[4096];
	char **names = NULL;
	size_t n;
	int ret;

	snprintf(dir, sizeof(dir), "%s/%s", mnt, kind);
	ret = sorted_names(dir, &names, &n);
	if (ret)
		return ret;
	if (!as_json)
		printf("%s\n", header);
	for (size_t i = 0; i < n; i++) {
		if (snprintf(path, sizeof(path), "%s/%s", dir, names[i]) < (int)sizeof(path))
			row(names[i], path);
		free(names[i]);
	}
	free(names);
	return 0;
}


static json_t *json_size(const char *text)
{
	char *end;
	unsigned long long v = strtoull(text, &end, 10);

	return text[0] && !*end ? json_integer((json_int_t)v) : json_null();
}

static json_t *json_text(const char *text)
{
	return text && text[0] ? json_string(text) : json_null();
}

static void vm_row(const char *name, const char *path)
{
	char state[64] = "", cpus[32] = "", mem[64] = "", disks[1024], nics[1024], up[64];
	char memh[SIZE_STR_MAX], uph[32];
	const char *have_up;
	struct status st;

	read_status(path, &st);
	status_field(&st, "state", state, sizeof(state));
	status_field(&st, "cpus", cpus, sizeof(cpus));
	status_field(&st, "memory", mem, sizeof(mem));
	have_up = status_field(&st, "started", up, sizeof(up));
	if (have_up && strcmp(up, "-") == 0)
		have_up = NULL;
	if (have_up) {
		long long started = strtoll(up, NULL, 10), now = (long long)time(NULL);

		snprintf(up, sizeof(up), "%lld", now > started ? now - started : 0);
	}
	if (as_json) {
		json_array_append_new(json_rows, json_pack("{s:s, s:o, s:o, s:o, s:i, s:i, s:o}",
			"name", name, "state", json_text(state), "cpus", json_size(cpus),
			"memory", json_size(mem),
			"disks", count_words(status_field(&st, "disks", disks, sizeof(disks))),
			"nics", count_words(status_field(&st, "nics", nics, sizeof(nics))),
			"uptime", have_up ? json_size(up) : json_null()));
		return;
	}
	human(mem, memh, sizeof(memh));
	if (have_up)
		format_uptime(up, uph, sizeof(uph));
	else
		snprintf(uph, sizeof(uph), "-");
	printf("%-24s %-9s %4s %8s %5d %4d %8s\n", name, state, cpus, memh,
	       count_words(status_field(&st, "disks", disks, sizeof(disks))),
	       count_words(status_field(&st, "nics", nics, sizeof(nics))), uph);
}

static void disk_row(const char *name, const char *path)
{
	char type[32], format[32], size[64], used[64], file[4096];
	char sizeh[SIZE_STR_MAX], usedh[SIZE_STR_MAX];

	read_value(path, "type", type, sizeof(type));
	read_value(path, "format", format, sizeof(format));
	read_value(path, "size", size, sizeof(size));
	read_value(path, "used", used, sizeof(used));
	read_value(path, "file", file, sizeof(file));
	if (as_json) {
		json_array_append_new(json_rows, json_pack("{s:s, s:o, s:o, s:o, s:o, s:o}",
			"name", name, "type", json_text(type), "format", json_text(format),
			"size", json_size(size), "used", json_size(used), "file", json_text(file)));
		return;
	}
	human(size, sizeh, sizeof(sizeh));
	human(used, usedh, sizeof(usedh));
	printf("%-24s %-8s %-6s %8s %8s  %s\n", name, type, format, sizeh, usedh,
	       file[0] ? file : "-");
}

static void switch_row(const char *name, const char *path)
{
	char type[32], host_if[32], uplink[32];

	read_value(path, "type", type, sizeof(type));
	read_value(path, "host_if", host_if, sizeof(host_if));
	read_value(path, "uplink", uplink, sizeof(uplink));
	if (as_json) {
		json_array_append_new(json_rows, json_pack("{s:s, s:o, s:o, s:o, s:i}",
			"name", name, "type", json_text(type), "host_if", json_text(host_if),
			"uplink", json_text(uplink), "ports", count_entries(path, "ports")));
		return;
	}
	printf("%-24s %-9s %-16s %-16s %5d\n", name, type, host_if[0] ? host_if : "-",
	       uplink[0] ? uplink : "-", count_entries(path, "ports"));
}

int cmd_ls(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "disks", no_argument, NULL, 'd' },
		{ "switches", no_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char version[64], header[128], *mnt;
	bool disks = false, switches = false;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "dsjh", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			as_json = true;
			break;
		case 'd':
			disks = true;
			break;
		case 's':
			switches = true;
			break;
		case 'h':
			printf("%s", ls_usage);
			return 0;
		default:
			fprintf(stderr, "%s", ls_usage);
			return EXIT_USAGE;
		}
	}
	if (argc - optind > 1 || (disks && switches)) {
		fprintf(stderr, "%s", ls_usage);
		return EXIT_USAGE;
	}
	mnt = argc - optind == 1 ? strdup(argv[optind]) : cmd_default_mount();
	if (!mnt)
		return 1;
	if (!read_value(mnt, "version", version, sizeof(version))) {
		fprintf(stderr, "fsvisor ls: %s is not an fsvisor mount (is the service up? fsvisor mount %s)\n",
			mnt, mnt);
		free(mnt);
		return 1;
	}
	if (as_json)
		json_rows = json_array();
	/* Headers in the rows' formats. */
	if (disks) {
		snprintf(header, sizeof(header), "%-24s %-8s %-6s %8s %8s  %s", "NAME", "TYPE",
			 "FORMAT", "SIZE", "USED", "FILE");
		ret = list_table(mnt, "disks", header, disk_row);
	} else if (switches) {
		snprintf(header, sizeof(header), "%-24s %-9s %-16s %-16s %5s", "NAME", "TYPE",
			 "HOST_IF", "UPLINK", "PORTS");
		ret = list_table(mnt, "switches", header, switch_row);
	} else {
		snprintf(header, sizeof(header), "%-24s %-9s %4s %8s %5s %4s %8s", "NAME", "STATE",
			 "CPUS", "MEMORY", "DISKS", "NICS", "UPTIME");
		ret = list_table(mnt, "vms", header, vm_row);
	}
	if (ret)
		fprintf(stderr, "fsvisor ls: %s: %s\n", mnt, strerror(-ret));
	if (as_json && !ret) {
		char *text = json_dumps(json_rows, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		printf("%s\n", text ? text : "[]");
		free(text);
	}
	json_decref(json_rows);
	free(mnt);
	return ret ? 1 : 0;
}
