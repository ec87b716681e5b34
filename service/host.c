// SPDX-License-Identifier: MIT
/*
 * The files at the top of the tree (README, version, events) and host/:
 * what a script needs to know about the machine before it defines VMs.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "fsvisor_config.h"
#include "service/internal.h"
#include "vmm/vmm.h"

static const char readme[] =
	"fsvisor: virtual machines and disks as files.\n"
	"\n"
	"  vms/NAME/     mkdir = define a VM, rmdir = delete it\n"
	"    ctl         write: start stop shutdown kill pause resume reset\n"
	"    state       off starting running paused stopping crashed\n"
	"    status      a summary; stats: counters\n"
	"    cpus, memory/startup, boot/kernel, boot/initrd, boot/cmdline\n"
	"    disks/N     ln -s ../../../disks/DISK vms/NAME/disks/0\n"
	"    console     serial output (tail -f); write to type\n"
	"    error       why the last write failed; events: what happened\n"
	"    nics/NIC/   mkdir = add a NIC: mac switch vlan mac_spoofing dhcp_guard\n"
	"                router_guard mirror bandwidth_max stats\n"
	"  disks/NAME/   mkdir = declare a disk\n"
	"    type format (before size), size (creates the file, then grows it),\n"
	"    file (write a path to adopt a file), used, ctl (check), data\n"
	"  switches/NAME/ mkdir = make a switch: type (private internal external)\n"
	"    uplink host_if macs stats ports/\n"
	"  host/         cpus memory memory_free kvm\n"
	"  events        every event, one line each: a log (tail -f, fsvisor events)\n"
	"\n"
	"Sizes take K M G T suffixes and read back in bytes.  A bad write fails\n"
	"with an errno and the reason goes to the object's error file.\n"
	"Reference: docs/filesystem.md in the fsvisor sources.\n";

static int show_readme(struct service *s, void *obj, FILE *out)
{
	(void)s;
	(void)obj;
	fputs(readme, out);
	return 0;
}

static int show_version(struct service *s, void *obj, FILE *out)
{
	(void)s;
	(void)obj;
	fprintf(out, "%s\n", FSVISOR_VERSION);
	return 0;
}

static const struct attr root_attrs[] = {
	{ "README", A_READ, show_readme },
	{ "version", A_READ, show_version },
	{ "events", A_READ, .log = &events_log },
};

static const struct tree_child root_children[] = {
	{ TREE_DIR, &host_kind, "host" },
	{ TREE_DIR, &vms_kind, "vms" },
	{ TREE_DIR, &disks_kind, "disks" },
	{ TREE_DIR, &switches_kind, "switches" },
};

const struct tree_kind root_kind = {
	.name = "root",
	.attrs = root_attrs,
	.nattrs = ARRAY_SIZE(root_attrs),
	.children = root_children,
	.nchildren = ARRAY_SIZE(root_children),
};

static int show_cpus(struct service *s, void *obj, FILE *out)
{
	(void)s;
	(void)obj;
	fprintf(out, "%ld\n", sysconf(_SC_NPROCESSORS_ONLN));
	return 0;
}

static int show_memory(struct service *s, void *obj, FILE *out)
{
	struct sysinfo si;

	(void)s;
	(void)obj;
	if (sysinfo(&si) < 0)
		return -errno;
	fprintf(out, "%llu\n", (unsigned long long)si.totalram * si.mem_unit);
	return 0;
}

/* MemAvailable: what can be given to guests without swapping. */
static int show_memory_free(struct service *s, void *obj, FILE *out)
{
	FILE *f = fopen("/proc/meminfo", "re");
	unsigned long long kib = 0;
	char line[256];

	(void)s;
	(void)obj;
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
			break;
	fclose(f);
	fprintf(out, "%llu\n", kib * 1024);
	return 0;
}

static int show_kvm(struct service *s, void *obj, FILE *out)
{
	const char *why;
	int api = 0;

	(void)s;
	(void)obj;
	why = vmm_kvm_problem(&api);
	if (why)
		fprintf(out, "unusable: %s\n", why);
	else
		fprintf(out, "api %d\n", api);
	return 0;
}

static const struct attr host_attrs[] = {
	{ "cpus", A_READ | A_VOLATILE, show_cpus },
	{ "memory", A_READ | A_VOLATILE, show_memory },
	{ "memory_free", A_READ | A_VOLATILE, show_memory_free },
	{ "kvm", A_READ | A_VOLATILE, show_kvm },
};

const struct tree_kind host_kind = {
	.name = "host",
	.attrs = host_attrs,
	.nattrs = ARRAY_SIZE(host_attrs),
};
