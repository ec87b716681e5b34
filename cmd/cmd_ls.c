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
#include <unistd.h>

#include "cmd/commands.h"
#include "util/util.h"


static const char ls_usage[] =
	"usage: fsvisor ls [--disks | --switches] [MOUNTPOINT]\n"
	"A table of the VMs (name, state, cpus, memory, disks, NICs, uptime), or\n"
	"with --disks of the disks, with --switches of the switches, read from the\n"
	"mount (default: $FSVISOR_MOUNT,\n"
	"else /mnt/fsvisor for root, ~/fsvisor otherwise).\n";

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

/* "key: value" out of a status file. */
static bool status_field(const char *dir, const char *key, char *buf, size_t len)
{
	char path[4096], line[1024];
	size_t klen = strlen(key);
	bool found = false;
	FILE *f;

	buf[0] = '\0';
	if (snprintf(path, sizeof(path), "%s/status", dir) >= (int)sizeof(path))
		return false;
	f = fopen(path, "re");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			line[strcspn(line, "\n")] = '\0';
			found = snprintf(buf, len, "%s", line + klen + 2) < (int)len;
		}
	}
	fclose(f);
	return found;
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

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static int list_vms(const char *mnt)
{
	char dir[4096], path[4096], state[64], cpus[32], mem[64], memh[SIZE_STR_MAX];
	char up[64], uph[32];
	char **names;
	size_t n;
	int ret;

	snprintf(dir, sizeof(dir), "%s/vms", mnt);
	ret = sorted_names(dir, &names, &n);
	if (ret)
		return ret;
	printf("%-24s %-9s %4s %8s %5s %4s %8s\n", "NAME", "STATE", "CPUS", "MEMORY", "DISKS",
	       "NICS", "UPTIME");
	for (size_t i = 0; i < n; i++) {
		if (snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= (int)sizeof(path))
			continue;
		read_value(path, "state", state, sizeof(state));
		read_value(path, "cpus", cpus, sizeof(cpus));
		read_value(path, "memory/startup", mem, sizeof(mem));
		human(mem, memh, sizeof(memh));
		{
			char disks[4096], nics[4096];

			if (snprintf(disks, sizeof(disks), "%s/disks", path) >= (int)sizeof(disks) ||
			    snprintf(nics, sizeof(nics), "%s/nics", path) >= (int)sizeof(nics))
				continue;
			if (status_field(path, "uptime", up, sizeof(up)))
				format_uptime(up, uph, sizeof(uph));
			else
				snprintf(uph, sizeof(uph), "-");
			printf("%-24s %-9s %4s %8s %5d %4d %8s\n", names[i], state, cpus, memh,
			       count_entries(disks), count_entries(nics), uph);
		}
		free(names[i]);
	}
	free(names);
	return 0;
}

static int list_disks(const char *mnt)
{
	char dir[4096], path[4096], type[32], format[32], size[64], used[64];
	char sizeh[SIZE_STR_MAX], usedh[SIZE_STR_MAX], file[4096];
	char **names;
	size_t n;
	int ret;

	snprintf(dir, sizeof(dir), "%s/disks", mnt);
	ret = sorted_names(dir, &names, &n);
	if (ret)
		return ret;
	printf("%-24s %-8s %-6s %8s %8s  %s\n", "NAME", "TYPE", "FORMAT", "SIZE", "USED", "FILE");
	for (size_t i = 0; i < n; i++) {
		if (snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= (int)sizeof(path))
			continue;
		read_value(path, "type", type, sizeof(type));
		read_value(path, "format", format, sizeof(format));
		read_value(path, "size", size, sizeof(size));
		read_value(path, "used", used, sizeof(used));
		read_value(path, "file", file, sizeof(file));
		human(size, sizeh, sizeof(sizeh));
		human(used, usedh, sizeof(usedh));
		printf("%-24s %-8s %-6s %8s %8s  %s\n", names[i], type, format, sizeh, usedh,
		       file[0] ? file : "-");
		free(names[i]);
	}
	free(names);
	return 0;
}

static int list_switches(const char *mnt)
{
	char dir[4096], path[4096], ports[4096], type[32], host_if[32], uplink[32];
	char **names;
	size_t n;
	int ret;

	snprintf(dir, sizeof(dir), "%s/switches", mnt);
	ret = sorted_names(dir, &names, &n);
	if (ret)
		return ret;
	printf("%-24s %-9s %-16s %-16s %5s\n", "NAME", "TYPE", "HOST_IF", "UPLINK", "PORTS");
	for (size_t i = 0; i < n; i++) {
		if (snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= (int)sizeof(path) ||
		    snprintf(ports, sizeof(ports), "%s/ports", path) >= (int)sizeof(ports))
			continue;
		read_value(path, "type", type, sizeof(type));
		read_value(path, "host_if", host_if, sizeof(host_if));
		read_value(path, "uplink", uplink, sizeof(uplink));
		printf("%-24s %-9s %-16s %-16s %5d\n", names[i], type, host_if[0] ? host_if : "-",
		       uplink[0] ? uplink : "-", count_entries(ports));
		free(names[i]);
	}
	free(names);
	return 0;
}

int cmd_ls(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "disks", no_argument, NULL, 'd' },
		{ "switches", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char version[64], *mnt;
	bool disks = false, switches = false;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "dsh", longopts, NULL)) != -1) {
		switch (c) {
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
	ret = disks ? list_disks(mnt) : switches ? list_switches(mnt) : list_vms(mnt);
	if (ret)
		fprintf(stderr, "fsvisor ls: %s: %s\n", mnt, strerror(-ret));
	free(mnt);
	return ret ? 1 : 0;
}
