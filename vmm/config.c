// SPDX-License-Identifier: MIT
/*
 * The VM configuration: a JSON document, checked field by field before
 * anything is created.  The schema is in docs/vm-config.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "vhdx/vhdx.h"
#include "vmm/internal.h"
#include "vmm/virtio/virtio.h"

#define MIN_MEMORY (16 * MiB)

int vmm_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

void vm_config_free(struct vm_config *cfg)
{
	if (!cfg)
		return;
	for (unsigned int i = 0; i < cfg->ndisks; i++)
		free(cfg->disks[i].path);
	free(cfg->kernel);
	free(cfg->initrd);
	free(cfg->cmdline);
	for (size_t i = 0; i < cfg->ncpu_mask; i++)
		free(cfg->cpu_mask[i]);
	free(cfg->cpu_mask);
	free(cfg);
}

static uint64_t host_memory(void)
{
	struct sysinfo si;

	if (sysinfo(&si) < 0)
		return 0;
	return (uint64_t)si.totalram * si.mem_unit;
}

/* A readable regular file; a sentence otherwise. */
static int check_file(const char *what, const char *path, char *err,
		      size_t errlen)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return vmm_fail(err, errlen, "%s %s: %s", what, path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return vmm_fail(err, errlen, "%s %s is not a regular file", what, path);
	if (access(path, R_OK) < 0)
		return vmm_fail(err, errlen, "%s %s: %s", what, path, strerror(errno));
	return 0;
}

static int parse_memory(json_t *v, uint64_t *out, char *err, size_t errlen)
{
	uint64_t host = host_memory();
	char a[SIZE_STR_MAX], b[SIZE_STR_MAX];

	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0)
			return vmm_fail(err, errlen, "memory must not be negative");
		*out = (uint64_t)json_integer_value(v);
	} else if (json_is_string(v)) {
		if (size_parse(json_string_value(v), out))
			return vmm_fail(err, errlen, "memory '%s' is not a size (like 512M or 2G)",
				    json_string_value(v));
	} else {
		return vmm_fail(err, errlen, "memory must be a size: a number of bytes or a string like \"512M\"");
	}
	if (*out < MIN_MEMORY)
		return vmm_fail(err, errlen, "memory %s is too small: at least %s",
			    size_format(*out, a, sizeof(a)),
			    size_format(MIN_MEMORY, b, sizeof(b)));
	if (*out % (4 * KiB))
		return vmm_fail(err, errlen, "memory %llu is not a multiple of 4K",
			    (unsigned long long)*out);
	if (host && *out > host)
		return vmm_fail(err, errlen, "memory %s is more than the host has (%s)",
			    size_format(*out, a, sizeof(a)),
			    size_format(host - host % MiB, b, sizeof(b)));
	return 0;
}

static int parse_action(json_t *v, const char *key, enum fault_action *out,
			char *err, size_t errlen)
{
	const char *s = json_string_value(v);

	if (s && strcmp(s, "stop") == 0)
		*out = FAULT_STOP;
	else if (s && strcmp(s, "reset") == 0)
		*out = FAULT_RESET;
	else
		return vmm_fail(err, errlen, "%s must be \"stop\" or \"reset\"", key);
	return 0;
}

static int parse_cpu(json_t *v, struct vm_config *cfg, char *err, size_t errlen)
{
	const char *key;
	json_t *val, *item;
	size_t i;

	if (!json_is_object(v))
		return vmm_fail(err, errlen, "cpu must be an object like {\"mask\": [\"xsave\"]}");
	json_object_foreach(v, key, val) {
		const char *bad;

		if (strcmp(key, "mask") != 0)
			return vmm_fail(err, errlen, "unknown key cpu.%s", key);
		if (!json_is_array(val))
			return vmm_fail(err, errlen, "cpu.mask must be a list of CPUID feature names");
		cfg->cpu_mask = calloc(json_array_size(val) + 1, sizeof(char *));
		if (!cfg->cpu_mask)
			return -ENOMEM;
		json_array_foreach(val, i, item) {
			if (!json_is_string(item))
				return vmm_fail(err, errlen, "cpu.mask entries must be strings");
			cfg->cpu_mask[cfg->ncpu_mask++] = strdup(json_string_value(item));
		}
		bad = cpuid_unknown_feature(cfg->cpu_mask, cfg->ncpu_mask);
		if (bad)
			return vmm_fail(err, errlen, "cpu.mask: unknown CPUID feature '%s'", bad);
	}
	return 0;
}

static const char *const format_names[] = {
	[VDISK_FORMAT_AUTO] = "auto",
	[VDISK_FORMAT_VHDX] = "vhdx",
	[VDISK_FORMAT_RAW] = "raw",
};

/*
 * A file's path made absolute against the directory the worker starts
 * in: the configuration outlives that directory (a saved state carries
 * it, and is restored from anywhere).
 */
static char *absolute_path(const char *path)
{
	char cwd[PATH_MAX], *out;

	if (path[0] == '/' || !path[0] || !getcwd(cwd, sizeof(cwd)))
		return strdup(path);
	if (asprintf(&out, "%s/%s", cwd, path) < 0)
		return NULL;
	return out;
}

static int parse_disk(json_t *v, unsigned int n, struct vm_disk_config *d,
		      char *err, size_t errlen)
{
	struct vdisk_open_opts o = { .no_io = true };
	const char *key;
	json_t *val;
	struct vdisk *probe;
	char why[512];
	int ret;

	if (!json_is_object(v))
		return vmm_fail(err, errlen, "disks[%u] must be an object like {\"path\": \"...\"}", n);
	d->format = VDISK_FORMAT_AUTO;
	json_object_foreach(v, key, val) {
		if (strcmp(key, "path") == 0) {
			if (!json_is_string(val))
				return vmm_fail(err, errlen, "disks[%u].path must be a string", n);
			d->path = absolute_path(json_string_value(val));
		} else if (strcmp(key, "format") == 0) {
			const char *f = json_string_value(val);
			bool known = false;

			for (size_t i = 0; f && i < ARRAY_SIZE(format_names); i++) {
				if (strcmp(f, format_names[i]) == 0) {
					d->format = (int)i;
					known = true;
				}
			}
			if (!known)
				return vmm_fail(err, errlen, "disks[%u].format must be \"vhdx\", \"raw\" or \"auto\"", n);
		} else if (strcmp(key, "read_only") == 0) {
			if (!json_is_boolean(val))
				return vmm_fail(err, errlen, "disks[%u].read_only must be true or false", n);
			d->read_only = json_is_true(val);
		} else if (strcmp(key, "serial") == 0) {
			const char *s = json_string_value(val);

			if (!s || strlen(s) > DISK_SERIAL_MAX)
				return vmm_fail(err, errlen, "disks[%u].serial must be a string of at most %d characters",
					    n, DISK_SERIAL_MAX);
			for (const char *c = s; *c; c++)
				if (*c < 0x20 || *c > 0x7E)
					return vmm_fail(err, errlen, "disks[%u].serial must be printable ASCII", n);
			snprintf(d->serial, sizeof(d->serial), "%s", s);
		} else {
			return vmm_fail(err, errlen, "unknown key disks[%u].%s", n, key);
		}
	}
	if (!d->path)
		return vmm_fail(err, errlen, "disks[%u] has no path", n);
	/* Open its structure now: a disk we cannot use is a config error. */
	o.format = (enum vdisk_format)d->format;
	ret = vdisk_open(d->path, &o, &probe, why, sizeof(why));
	if (ret)
		return vmm_fail(err, errlen, "disks[%u]: %s", n, why);
	vdisk_close(probe);
	return 0;
}

static int parse_disks(json_t *v, struct vm_config *cfg, char *err, size_t errlen)
{
	json_t *item;
	size_t i;

	if (!json_is_array(v))
		return vmm_fail(err, errlen, "disks must be a list of objects");
	if (json_array_size(v) > VM_MAX_DISKS)
		return vmm_fail(err, errlen, "at most %d disks", VM_MAX_DISKS);
	json_array_foreach(v, i, item) {
		int ret = parse_disk(item, (unsigned int)i, &cfg->disks[i], err, errlen);

		cfg->ndisks = (unsigned int)i + 1;
		if (ret)
			return ret;
	}
	return 0;
}

int mac_parse(const char *s, uint8_t mac[6])
{
	for (int i = 0; i < 6; i++) {
		unsigned int v = 0;

		for (int k = 0; k < 2; k++, s++) {
			char c = *s;

			if (c >= '0' && c <= '9')
				v = v * 16 + (unsigned int)(c - '0');
			else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
				v = v * 16 + (unsigned int)((c | 0x20) - 'a' + 10);
			else
				return -EINVAL;
		}
		mac[i] = (uint8_t)v;
		if (*s != (i == 5 ? '\0' : ':'))
			return -EINVAL;
		s++;
	}
	return 0;
}

char *mac_format(const uint8_t mac[6], char *buf)
{
	snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2],
		 mac[3], mac[4], mac[5]);
	return buf;
}

static int parse_nic(json_t *v, unsigned int n, struct vm_nic_config *nic,
		     char *err, size_t errlen)
{
	static const uint8_t zero[6];
	const char *key, *text = NULL;
	json_t *val;

	if (!json_is_object(v))
		return vmm_fail(err, errlen, "nics[%u] must be an object like {\"mac\": \"52:54:00:12:34:56\"}", n);
	json_object_foreach(v, key, val) {
		if (strcmp(key, "mac") != 0)
			return vmm_fail(err, errlen, "unknown key nics[%u].%s", n, key);
		text = json_string_value(val);
		if (!text || mac_parse(text, nic->mac))
			return vmm_fail(err, errlen, "nics[%u].mac must be six hex octets like \"52:54:00:12:34:56\"", n);
	}
	if (!text)
		return vmm_fail(err, errlen, "nics[%u] has no mac", n);
	if (nic->mac[0] & 1)
		return vmm_fail(err, errlen, "nics[%u].mac %s is a multicast address; a NIC needs a unicast one (first octet even)",
			    n, text);
	if (memcmp(nic->mac, zero, 6) == 0)
		return vmm_fail(err, errlen, "nics[%u].mac must not be all zeros", n);
	return 0;
}

static int parse_nics(json_t *v, struct vm_config *cfg, char *err, size_t errlen)
{
	json_t *item;
	size_t i;

	if (!json_is_array(v))
		return vmm_fail(err, errlen, "nics must be a list of objects");
	if (json_array_size(v) > VM_MAX_NICS)
		return vmm_fail(err, errlen, "at most %d nics", VM_MAX_NICS);
	json_array_foreach(v, i, item) {
		int ret = parse_nic(item, (unsigned int)i, &cfg->nics[i], err, errlen);

		cfg->nnics = (unsigned int)i + 1;
		if (ret)
			return ret;
		/* Two NICs of one VM with one MAC would confuse every switch. */
		for (size_t k = 0; k < i; k++)
			if (memcmp(cfg->nics[k].mac, cfg->nics[i].mac, 6) == 0)
				return vmm_fail(err, errlen, "nics[%zu] has the same mac as nics[%zu]", i, k);
	}
	return 0;
}

/* "vsock": {"cid": N}: the device and the guest's address. */
static int parse_vsock(json_t *v, struct vm_config *cfg, char *err, size_t errlen)
{
	const char *key;
	json_t *val;

	if (!json_is_object(v))
		return vmm_fail(err, errlen, "vsock must be an object like {\"cid\": 3}");
	json_object_foreach(v, key, val) {
		if (strcmp(key, "cid") != 0)
			return vmm_fail(err, errlen, "unknown key vsock.%s", key);
		if (!json_is_integer(val) || json_integer_value(val) < 0 ||
		    !vsock_cid_valid((uint64_t)json_integer_value(val)))
			return vmm_fail(err, errlen,
					"vsock.cid must be a whole number from 3 to 4294967294 (0-2 and 4294967295 are reserved)");
		cfg->vsock.cid = (uint64_t)json_integer_value(val);
	}
	if (!cfg->vsock.cid)
		return vmm_fail(err, errlen, "vsock has no cid");
	return 0;
}

static int dup_string(json_t *v, const char *key, char **out, char *err,
		      size_t errlen)
{
	if (!json_is_string(v))
		return vmm_fail(err, errlen, "%s must be a string", key);
	*out = strdup(json_string_value(v));
	return *out ? 0 : -ENOMEM;
}

static int dup_path(json_t *v, const char *key, char **out, char *err, size_t errlen)
{
	if (!json_is_string(v))
		return vmm_fail(err, errlen, "%s must be a string", key);
	*out = absolute_path(json_string_value(v));
	return *out ? 0 : -ENOMEM;
}

static int parse_fields(const json_t *doc, struct vm_config *cfg, char *err,
			size_t errlen)
{
	const char *key;
	json_t *v;
	int ret = 0;

	json_object_foreach((json_t *)doc, key, v) {
		if (strcmp(key, "name") == 0) {
			const char *why;

			if (!json_is_string(v))
				return vmm_fail(err, errlen, "name must be a string");
			why = name_problem(json_string_value(v));
			if (why)
				return vmm_fail(err, errlen, "name: %s", why);
			snprintf(cfg->name, sizeof(cfg->name), "%s",
				 json_string_value(v));
		} else if (strcmp(key, "cpus") == 0) {
			json_int_t n = json_integer_value(v);

			if (!json_is_integer(v))
				return vmm_fail(err, errlen, "cpus must be a whole number");
			if (n < 1 || n > VMM_MAX_CPUS)
				return vmm_fail(err, errlen, "cpus %lld is out of range: 1 to %d",
					    (long long)n, VMM_MAX_CPUS);
			cfg->cpus = (unsigned int)n;
		} else if (strcmp(key, "memory") == 0) {
			ret = parse_memory(v, &cfg->memory, err, errlen);
		} else if (strcmp(key, "kernel") == 0) {
			ret = dup_path(v, key, &cfg->kernel, err, errlen);
		} else if (strcmp(key, "initrd") == 0) {
			ret = json_is_null(v) ? 0 : dup_path(v, key, &cfg->initrd, err, errlen);
		} else if (strcmp(key, "cmdline") == 0) {
			ret = dup_string(v, key, &cfg->cmdline, err, errlen);
		} else if (strcmp(key, "cpu") == 0) {
			ret = parse_cpu(v, cfg, err, errlen);
		} else if (strcmp(key, "on_triple_fault") == 0) {
			ret = parse_action(v, key, &cfg->on_triple_fault, err, errlen);
		} else if (strcmp(key, "on_reboot") == 0) {
			ret = parse_action(v, key, &cfg->on_reboot, err, errlen);
		} else if (strcmp(key, "disks") == 0) {
			ret = parse_disks(v, cfg, err, errlen);
		} else if (strcmp(key, "nics") == 0) {
			ret = parse_nics(v, cfg, err, errlen);
		} else if (strcmp(key, "vsock") == 0) {
			ret = json_is_null(v) ? 0 : parse_vsock(v, cfg, err, errlen);
		} else {
			return vmm_fail(err, errlen, "unknown key '%s'", key);
		}
		if (ret)
			return ret;
	}
	return 0;
}

static int parse(const json_t *doc, struct vm_config **out, bool saved, char *err,
		 size_t errlen);

int vm_config_parse(const json_t *doc, struct vm_config **out, char *err,
		    size_t errlen)
{
	return parse(doc, out, false, err, errlen);
}

int vm_config_parse_saved(const json_t *doc, struct vm_config **out, char *err,
			  size_t errlen)
{
	return parse(doc, out, true, err, errlen);
}

static int parse(const json_t *doc, struct vm_config **out, bool saved, char *err,
		 size_t errlen)
{
	struct vm_config *cfg;
	struct kernel_image k;
	int ret;

	if (!json_is_object(doc))
		return vmm_fail(err, errlen, "the configuration must be a JSON object");
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg)
		return -ENOMEM;
	snprintf(cfg->name, sizeof(cfg->name), "vm");
	cfg->cpus = 1;
	cfg->memory = 256 * MiB;
	cfg->on_triple_fault = FAULT_STOP;
	cfg->on_reboot = FAULT_RESET;

	ret = parse_fields(doc, cfg, err, errlen);
	if (ret)
		goto fail;
	if (!cfg->cmdline && !(cfg->cmdline = strdup("console=ttyS0"))) {
		ret = -ENOMEM;
		goto fail;
	}
	if (strlen(cfg->cmdline) >= CMDLINE_MAX) {
		ret = vmm_fail(err, errlen, "cmdline is %zu bytes: at most %d",
			   strlen(cfg->cmdline), CMDLINE_MAX - 1);
		goto fail;
	}
	cfg->restored = saved;
	if (saved && cfg->kernel) {
		/* Nothing boots now; a reset later reads the kernel then. */
		*out = cfg;
		return 0;
	}
	if (!cfg->kernel) {
		ret = vmm_fail(err, errlen, "no kernel: set \"kernel\" to a bzImage or ELF64 file");
		goto fail;
	}
	ret = check_file("kernel", cfg->kernel, err, errlen);
	if (ret)
		goto fail;
	/* Read it now: a kernel we cannot boot is a configuration error. */
	ret = kernel_load(cfg->kernel, &k, err, errlen);
	if (ret)
		goto fail;
	kernel_free(&k);
	if (cfg->initrd) {
		ret = check_file("initrd", cfg->initrd, err, errlen);
		if (ret)
			goto fail;
	}
	*out = cfg;
	return 0;
fail:
	vm_config_free(cfg);
	return ret;
}

unsigned int vm_config_pci_functions(const struct vm_config *cfg)
{
	return 1 + cfg->ndisks + cfg->nnics + (cfg->vsock.cid ? 1 : 0);
}

json_t *vm_config_to_json(const struct vm_config *cfg)
{
	static const char *const action[] = { "stop", "reset" };
	json_t *mask = json_array();
	json_t *o;

	for (size_t i = 0; i < cfg->ncpu_mask; i++)
		json_array_append_new(mask, json_string(cfg->cpu_mask[i]));
	o = json_pack("{s:s, s:i, s:I, s:s, s:s, s:{s:o}, s:s, s:s}",
		      "name", cfg->name,
		      "cpus", (int)cfg->cpus,
		      "memory", (json_int_t)cfg->memory,
		      "kernel", cfg->kernel,
		      "cmdline", cfg->cmdline,
		      "cpu", "mask", mask,
		      "on_triple_fault", action[cfg->on_triple_fault],
		      "on_reboot", action[cfg->on_reboot]);
	if (o && cfg->initrd)
		json_object_set_new(o, "initrd", json_string(cfg->initrd));
	if (o) {
		json_t *disks = json_array();

		for (unsigned int i = 0; i < cfg->ndisks; i++) {
			const struct vm_disk_config *d = &cfg->disks[i];

			json_array_append_new(disks, json_pack("{s:s, s:s, s:b, s:s}",
				"path", d->path, "format", format_names[d->format],
				"read_only", d->read_only, "serial", d->serial));
		}
		json_object_set_new(o, "disks", disks);
	}
	if (o) {
		json_t *nics = json_array();
		char mac[18];

		for (unsigned int i = 0; i < cfg->nnics; i++)
			json_array_append_new(nics, json_pack("{s:s}", "mac",
					      mac_format(cfg->nics[i].mac, mac)));
		json_object_set_new(o, "nics", nics);
	}
	if (o && cfg->vsock.cid)
		json_object_set_new(o, "vsock", json_pack("{s:I}", "cid",
							  (json_int_t)cfg->vsock.cid));
	return o;
}
