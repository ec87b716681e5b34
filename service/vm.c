// SPDX-License-Identifier: MIT
/*
 * VM objects: the definition (vm.json in the VM's directory under
 * <state>/vms/), the files that show and change it, and what the worker
 * is given when the VM starts.  Running the VM is supervise.c's.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "service/integration.h"
#include "service/internal.h"
#include "vmm/vmm.h"

#define DEFAULT_MEMORY	(256ULL << 20)
#define MIN_MEMORY	(16ULL << 20)
#define DEFAULT_CMDLINE	"console=ttyS0"

static const char *const state_names[] = {
	[VMS_OFF] = "off",
	[VMS_STARTING] = "starting",
	[VMS_RUNNING] = "running",
	[VMS_PAUSED] = "paused",
	[VMS_STOPPING] = "stopping",
	[VMS_CRASHED] = "crashed",
	[VMS_SAVING] = "saving",
	[VMS_SAVED] = "saved",
};

const char *vm_state_name(enum vm_state st)
{
	return state_names[st];
}

/* A worker runs (or is about to, or is ending): not off, crashed or saved. */
bool vm_is_active(const struct vm_obj *vm)
{
	return vm->state != VMS_OFF && vm->state != VMS_CRASHED && vm->state != VMS_SAVED;
}

const char *vm_change_refused(const struct vm_obj *vm, const char *rule, char *buf,
			      size_t len)
{
	if (vm->state == VMS_SAVED)
		snprintf(buf, len,
			 "the VM is saved, and its saved state was made with this; start it, or discard the saved state (echo discard > ctl)");
	else if (vm_is_active(vm) || vm->busy)
		snprintf(buf, len, "the VM is %s; %s", vm_state_name(vm->state), rule);
	else
		return NULL;
	return buf;
}

void vm_free(struct vm_obj *vm)
{
	if (vm->dirfd >= 0)
		close(vm->dirfd);
	if (vm->watch_fd >= 0)
		close(vm->watch_fd);
	for (int i = 0; i < SLOTS; i++)
		free(vm->slot[i]);
	for (size_t i = 0; i < vm->nnics; i++)
		nic_free(vm->nics[i]);
	ic_free(vm->ic);
	free(vm->kernel);
	free(vm->initrd);
	free(vm->cmdline);
	free(vm->dir);
	pthread_cond_destroy(&vm->changed);
	free(vm);
}

static struct vm_obj *vm_alloc(struct service *s, const char *name)
{
	struct vm_obj *vm = calloc(1, sizeof(*vm));

	if (!vm)
		return NULL;
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	vm->dir = svc_path(s, "vms", name);
	vm->dirfd = -1;
	vm->watch_fd = -1;
	vm->watch_kind = WATCH_VM;
	vm->refs = 1;
	vm->cpus = 1;
	vm->memory = DEFAULT_MEMORY;
	vm->kernel = svc_strdup("");
	vm->initrd = svc_strdup("");
	vm->cmdline = svc_strdup(DEFAULT_CMDLINE);
	vm->ic = ic_alloc(vm);
	pthread_cond_init(&vm->changed, NULL);
	svc_touch(&vm->mtime);
	return vm;
}

/* ---- persistence ------------------------------------------------------ */

static json_t *definition_json(const struct vm_obj *vm)
{
	json_t *disks = json_object(), *nics = json_object(), *doc;
	char key[4];

	for (int i = 0; i < SLOTS; i++) {
		if (vm->slot[i]) {
			snprintf(key, sizeof(key), "%d", i);
			json_object_set_new(disks, key, json_string(vm->slot[i]));
		}
	}
	for (size_t i = 0; i < vm->nnics; i++)
		json_object_set_new(nics, vm->nics[i]->name, nic_to_json(vm->nics[i]));
	doc = json_pack("{s:s, s:i, s:I, s:{s:s, s:s, s:s}, s:o, s:o}",
			"name", vm->name,
			"cpus", (int)vm->cpus,
			"memory", (json_int_t)vm->memory,
			"boot", "kernel", vm->kernel, "initrd", vm->initrd,
			"cmdline", vm->cmdline,
			"disks", disks,
			"nics", nics);
	if (doc)
		ic_to_json(vm->ic, doc);
	return doc;
}

/*
 * The states that outlive the service, in vm.json: how the last run ended
 * (off, crashed), a saved state (saved, or saving: the worker may still
 * be writing it), or a worker to adopt (running).
 */
static const enum vm_state persisted[] = { VMS_OFF, VMS_CRASHED, VMS_SAVED, VMS_SAVING,
					   VMS_RUNNING };

static const char *persisted_state(const struct vm_obj *vm)
{
	switch (vm->state) {
	case VMS_OFF:
	case VMS_CRASHED:
	case VMS_SAVED:
	case VMS_SAVING:
		return state_names[vm->state];
	default:
		return "running";
	}
}

int vm_save(struct service *s, struct vm_obj *vm)
{
	json_t *doc = definition_json(vm);
	char *path;
	int ret;

	(void)s;
	/* A VM deleted while a change to it waited: its directory is gone, or another's. */
	if (vm->deleted) {
		json_decref(doc);
		return 0;
	}
	json_object_set_new(doc, "error", json_string(vm->error));
	/* How the last run ended survives a restart of the service. */
	json_object_set_new(doc, "state", json_string(persisted_state(vm)));
	json_object_set_new(doc, "ended", json_string(vm->ended));
	if (asprintf(&path, "%s/vm.json", vm->dir) < 0) {
		json_decref(doc);
		return -ENOMEM;
	}
	ret = json_file_save(path, doc);
	if (ret)
		log_error("vm %s: saving %s failed: %s", vm->name, path, strerror(-ret));
	free(path);
	json_decref(doc);
	return ret;
}

/* After a change: save it, tell the readers, and record an event. */
static int vm_changed(struct service *s, struct vm_obj *vm, const char *file,
		      const char *value)
{
	int ret;

	svc_touch(&vm->mtime);
	ret = vm_save(s, vm);
	/* The whole directory: its files' times changed with it (tree.h). */
	svc_notify(s, SVC_CHANGED, "vms/%s", vm->name);
	svc_event(s, "vm", vm->name, "%s %s", file, value);
	return ret;
}

static int open_dir(struct vm_obj *vm)
{
	vm->dirfd = open(vm->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return vm->dirfd < 0 ? -errno : 0;
}

int vm_define(struct service *s, const char *name)
{
	struct vm_obj *vm;
	char *json;
	int ret;

	if (vm_find(s, name))
		return -EEXIST;
	vm = vm_alloc(s, name);
	if (!vm)
		return -ENOMEM;
	vm->ic->cid = ic_cid_new(s, NULL);
	/*
	 * A directory without vm.json is left from an interrupted mkdir; one
	 * with a vm.json we could not load is the administrator's to look at.
	 */
	if (asprintf(&json, "%s/vm.json", vm->dir) < 0)
		abort();
	ret = access(json, F_OK) == 0 ? -EEXIST : 0;
	free(json);
	if (ret) {
		log_error("vm %s: %s holds a definition that could not be loaded; not replaced",
			  name, vm->dir);
		vm_put(vm);
		return ret;
	}
	svc_remove_dir(vm->dir);
	if (mkdir(vm->dir, 0700) < 0) {
		ret = -errno;
		log_error("vm %s: cannot create %s: %s", name, vm->dir, strerror(errno));
		vm_put(vm);
		return ret;
	}
	ret = open_dir(vm);
	if (!ret)
		ret = vm_save(s, vm);
	if (!ret)
		ret = svc_list_insert((void ***)&s->vms, &s->nvms, &s->vms_cap, vm);
	if (ret) {
		svc_remove_dir(vm->dir);
		vm_put(vm);
		return ret;
	}
	svc_event(s, "vm", name, "defined");
	return 0;
}

int vm_delete(struct service *s, struct vm_obj *vm)
{
	if (vm_is_active(vm) || vm->busy)
		return vm_fail(s, vm, -EBUSY, "rmdir: the VM is %s; stop it first",
			       vm_state_name(vm->state));
	svc_remove_dir(vm->dir);
	svc_list_remove((void **)s->vms, &s->nvms, vm->name);
	vm->deleted = true;
	svc_event(s, "vm", vm->name, "deleted");
	vm_put(vm);
	return 0;
}

static char *json_str(json_t *obj, const char *key, const char *def)
{
	const char *v = json_string_value(json_object_get(obj, key));

	return svc_strdup(v ? v : def);
}

static int vm_load(struct service *s, const char *name)
{
	struct vm_obj *vm = vm_alloc(s, name);
	char err[512], *path;
	json_t *doc, *boot, *disks, *v;
	bool cid_changed;
	const char *key;
	struct stat st;
	int ret;

	if (!vm)
		return -ENOMEM;
	if (asprintf(&path, "%s/vm.json", vm->dir) < 0)
		abort();
	ret = json_file_load(path, &doc, err, sizeof(err));
	if (ret == -ENOENT) {
		log_warn("vm %s: no vm.json (an interrupted mkdir): removing %s",
			 name, vm->dir);
		svc_remove_dir(vm->dir);
		free(path);
		vm_put(vm);
		return 0;
	}
	if (ret) {
		log_error("vm %s: %s: %s; left alone", name, path, err);
		free(path);
		vm_put(vm);
		return 0;
	}
	if (stat(path, &st) == 0)
		vm->mtime = st.st_mtim;
	free(path);
	v = json_object_get(doc, "cpus");
	if (json_integer_value(v) >= 1 && json_integer_value(v) <= VMM_MAX_CPUS)
		vm->cpus = (unsigned int)json_integer_value(v);
	v = json_object_get(doc, "memory");
	if (json_integer_value(v) >= (json_int_t)MIN_MEMORY)
		vm->memory = (uint64_t)json_integer_value(v);
	boot = json_object_get(doc, "boot");
	free(vm->kernel);
	free(vm->initrd);
	free(vm->cmdline);
	vm->kernel = json_str(boot, "kernel", "");
	vm->initrd = json_str(boot, "initrd", "");
	vm->cmdline = json_str(boot, "cmdline", DEFAULT_CMDLINE);
	disks = json_object_get(doc, "disks");
	json_object_foreach(disks, key, v) {
		char *end;
		long k = strtol(key, &end, 10);

		if (*end || k < 0 || k >= SLOTS || !json_is_string(v) ||
		    !name_valid(json_string_value(v))) {
			log_warn("vm %s: ignoring disk slot '%s'", name, key);
			continue;
		}
		vm->slot[k] = svc_strdup(json_string_value(v));
	}
	json_object_foreach(json_object_get(doc, "nics"), key, v)
		nic_from_json(s, vm, key, v);
	ic_from_json(s, vm, doc);
	cid_changed = json_integer_value(json_object_get(doc, "cid")) != vm->ic->cid;
	v = json_object_get(doc, "error");
	if (json_is_string(v))
		snprintf(vm->error, sizeof(vm->error), "%s", json_string_value(v));
	v = json_object_get(doc, "ended");
	if (json_is_string(v))
		snprintf(vm->ended, sizeof(vm->ended), "%s", json_string_value(v));
	/* "running" is checked by adoption: is the worker still there? */
	v = json_object_get(doc, "state");
	for (size_t i = 0; json_is_string(v) && i < ARRAY_SIZE(persisted); i++)
		if (strcmp(json_string_value(v), state_names[persisted[i]]) == 0)
			vm->state = persisted[i];
	json_decref(doc);
	ret = open_dir(vm);
	if (!ret)
		ret = svc_list_insert((void ***)&s->vms, &s->nvms, &s->vms_cap, vm);
	if (ret) {
		vm_put(vm);
		return ret;
	}
	/* A new CID is kept from now on. */
	if (cid_changed)
		vm_save(s, vm);
	return 0;
}

int vm_load_all(struct service *s)
{
	return svc_load_dir(s, "vms", vm_load);
}

/* ---- slots ---------------------------------------------------------- */

/* "../../../disks/NAME" or "<mount>/disks/NAME": the disk's name. */
static const char *link_target_disk(struct service *s, const char *target)
{
	static const char rel[] = "../../../disks/";
	size_t mlen = strlen(s->mount_point);

	if (strncmp(target, rel, strlen(rel)) == 0)
		return target + strlen(rel);
	if (target[0] == '/' && strncmp(target, s->mount_point, mlen) == 0 &&
	    strncmp(target + mlen, "/disks/", 7) == 0)
		return target + mlen + 7;
	return NULL;
}

int vm_attach(struct service *s, struct vm_obj *vm, unsigned int slot,
	      const char *target)
{
	const char *name = link_target_disk(s, target);
	struct vm_obj *user;
	char value[80], why[256];
	int uslot, ret;

	if (vm_change_refused(vm, "disks change only while it is off", why, sizeof(why)))
		return vm_fail(s, vm, -EBUSY, "disks/%u: %s", slot, why);
	if (!name || !name_valid(name))
		return vm_fail(s, vm, -EINVAL,
			       "disks/%u: the link must point at a disk: ../../../disks/NAME or %s/disks/NAME, not '%s'",
			       slot, s->mount_point, target);
	if (vm->slot[slot])
		return vm_fail(s, vm, -EEXIST, "disks/%u: the slot holds disk %s already",
			       slot, vm->slot[slot]);
	if (!disk_find(s, name))
		return vm_fail(s, vm, -ENOENT, "disks/%u: there is no disk '%s'", slot, name);
	user = disk_user(s, name, &uslot);
	if (user)
		return vm_fail(s, vm, -EBUSY, "disks/%u: disk %s is attached to VM %s (slot %d)",
			       slot, name, user->name, uslot);
	vm->slot[slot] = svc_strdup(name);
	snprintf(value, sizeof(value), "%s", name);
	ret = vm_save(s, vm);
	if (ret) {
		free(vm->slot[slot]);
		vm->slot[slot] = NULL;
		return vm_fail(s, vm, -EIO, "disks/%u: cannot save the definition: %s",
			       slot, strerror(-ret));
	}
	{
		char file[16];

		snprintf(file, sizeof(file), "disks/%u", slot);
		vm_changed(s, vm, file, value);
	}
	return 0;
}

int vm_detach(struct service *s, struct vm_obj *vm, unsigned int slot)
{
	char file[16], why[256];
	char *old = vm->slot[slot];
	int ret;

	if (vm_change_refused(vm, "disks change only while it is off", why, sizeof(why)))
		return vm_fail(s, vm, -EBUSY, "disks/%u: %s", slot, why);
	vm->slot[slot] = NULL;
	ret = vm_save(s, vm);
	if (ret) {
		vm->slot[slot] = old;
		return vm_fail(s, vm, -EIO, "disks/%u: cannot save the definition: %s",
			       slot, strerror(-ret));
	}
	free(old);
	snprintf(file, sizeof(file), "disks/%u", slot);
	vm_changed(s, vm, file, "none");
	return 0;
}

/* ---- the worker's configuration ----------------------------------------- */

json_t *vm_worker_config(struct service *s, struct vm_obj *vm, int *err,
			 char *why, size_t whylen)
{
	json_t *doc, *disks = json_array(), *nics = json_array();

	*err = -EINVAL;
	if (!vm->kernel[0]) {
		snprintf(why, whylen, "boot/kernel is not set");
		json_decref(disks);
		json_decref(nics);
		return NULL;
	}
	for (int i = 0; i < SLOTS; i++) {
		struct disk_obj *d;
		char serial[21];

		if (!vm->slot[i])
			continue;
		d = disk_find(s, vm->slot[i]);
		if (!d) {
			*err = -ENOENT;
			snprintf(why, whylen, "disks/%d: disk %s does not exist", i, vm->slot[i]);
		} else if (!d->file) {
			snprintf(why, whylen, "disks/%d: disk %s has no file yet (write its size or file)",
				 i, d->name);
		} else if (d->data_users || d->busy) {
			*err = -EBUSY;
			snprintf(why, whylen, "disks/%d: disk %s is in use (%s)", i, d->name,
				 d->data_users ? "its data file is open" : d->progress);
		} else {
			/* What the guest reads as the disk's serial: 20 bytes at most. */
			memcpy(serial, d->name, sizeof(serial) - 1);
			serial[sizeof(serial) - 1] = '\0';
			json_array_append_new(disks, json_pack("{s:s, s:s, s:s}",
				"path", d->file, "format", disk_format_name(d->format),
				"serial", serial));
			continue;
		}
		json_decref(disks);
		json_decref(nics);
		return NULL;
	}
	for (size_t i = 0; i < vm->nnics; i++) {
		struct nic_obj *nic = vm->nics[i];
		char mac[18];

		if (nic->sw[0] && !switch_find(s, nic->sw)) {
			*err = -ENOENT;
			snprintf(why, whylen, "nics/%s: switch %s does not exist", nic->name, nic->sw);
			json_decref(disks);
			json_decref(nics);
			return NULL;
		}
		nic_mac_format(nic->mac, mac, sizeof(mac));
		/* Connected once the worker runs (nic-connect). */
		json_array_append_new(nics, json_pack("{s:s}", "mac", mac));
	}
	doc = json_pack("{s:s, s:i, s:I, s:s, s:s, s:o, s:{s:I}}",
			"name", vm->name,
			"cpus", (int)vm->cpus,
			"memory", (json_int_t)vm->memory,
			"kernel", vm->kernel,
			"cmdline", vm->cmdline,
			"disks", disks,
			"vsock", "cid", (json_int_t)vm->ic->cid);
	if (vm->nnics)
		json_object_set_new(doc, "nics", nics);
	else
		json_decref(nics);
	if (vm->initrd[0])
		json_object_set_new(doc, "initrd", json_string(vm->initrd));
	*err = 0;
	return doc;
}

/* ---- files ---------------------------------------------------------- */

static int refuse_if_active(struct service *s, struct vm_obj *vm, const char *file)
{
	char why[256];

	if (vm_change_refused(vm, "this changes only while it is off", why, sizeof(why)))
		return vm_fail(s, vm, -EBUSY, "%s: %s", file, why);
	return 0;
}

/*
 * A start by someone other than the mount's owner: the worker reads the
 * kernel and initrd and reads and writes adopted disk files with the
 * service's rights, so each must be one the caller could open so.
 */
static int check_host_files(struct service *s, struct vm_obj *vm, void *ctx)
{
	const struct svc_caller *who = svc_caller_of(ctx);
	const char *boot[] = { vm->kernel, vm->initrd };
	int ret;

	for (int i = 0; i < 2; i++) {
		if (!boot[i][0])
			continue;
		ret = svc_caller_may_open(s, who, boot[i], O_RDONLY);
		if (ret)
			return vm_fail(s, vm, -EACCES,
				       "start: %s (boot/%s) is a host file you could not read yourself (%s)",
				       boot[i], i ? "initrd" : "kernel", strerror(-ret));
	}
	for (int k = 0; k < SLOTS; k++) {
		struct disk_obj *d = vm->slot[k] ? disk_find(s, vm->slot[k]) : NULL;

		if (!d || !d->file || !d->adopted)
			continue;
		ret = svc_caller_may_open(s, who, d->file, O_RDWR);
		if (ret)
			return vm_fail(s, vm, -EACCES,
				       "start: disk %s (disks/%d) is the host file %s, which you could not open for reading and writing yourself (%s)",
				       d->name, k, d->file, strerror(-ret));
	}
	return 0;
}

static int store_ctl(struct service *s, void *obj, const char *value,
		     svc_interrupted_fn intr, void *ctx)
{
	if (strcmp(value, "start") == 0 && !svc_caller_is_owner(s, ctx)) {
		int ret = check_host_files(s, obj, ctx);

		if (ret)
			return ret;
	}
	return vm_control(s, obj, value, intr, ctx);
}

static int show_state(struct service *s, void *obj, FILE *out)
{
	(void)s;
	fprintf(out, "%s\n", vm_state_name(((struct vm_obj *)obj)->state));
	return 0;
}

static int show_error(struct service *s, void *obj, FILE *out)
{
	struct vm_obj *vm = obj;

	(void)s;
	if (vm->error[0])
		fprintf(out, "%s\n", vm->error);
	return 0;
}

static void show_slots(const struct vm_obj *vm, FILE *out)
{
	bool any = false;

	for (int i = 0; i < SLOTS; i++) {
		if (vm->slot[i]) {
			fprintf(out, "%s%d=%s", any ? " " : "", i, vm->slot[i]);
			any = true;
		}
	}
	fprintf(out, "%s\n", any ? "" : "none");
}

static int show_status(struct service *s, void *obj, FILE *out)
{
	struct vm_obj *vm = obj;
	json_t *st = NULL;

	if (vm->state == VMS_RUNNING || vm->state == VMS_PAUSED)
		st = vm_worker_status(s, vm);
	fprintf(out, "name: %s\n", vm->name);
	fprintf(out, "state: %s\n", vm_state_name(vm->state));
	fprintf(out, "cpus: %u\n", vm->cpus);
	fprintf(out, "memory: %llu\n", (unsigned long long)vm->memory);
	fprintf(out, "disks: ");
	show_slots(vm, out);
	fprintf(out, "nics:");
	for (size_t i = 0; i < vm->nnics; i++)
		fprintf(out, " %s", vm->nics[i]->name);
	fprintf(out, "%s\n", vm->nnics ? "" : " none");
	fprintf(out, "kernel: %s\n", vm->kernel[0] ? vm->kernel : "(not set)");
	fprintf(out, "initrd: %s\n", vm->initrd[0] ? vm->initrd : "(none)");
	fprintf(out, "cmdline: %s\n", vm->cmdline);
	if (st) {
		fprintf(out, "pid: %lld\n",
			(long long)json_integer_value(json_object_get(st, "pid")));
		fprintf(out, "uptime: %lld\n",
			(long long)json_integer_value(json_object_get(st, "uptime_ms")) / 1000);
		fprintf(out, "resets: %lld\n",
			(long long)json_integer_value(json_object_get(st, "resets")));
		json_decref(st);
	} else if (vm_is_active(vm) && vm->pid) {
		fprintf(out, "pid: %d\n", (int)vm->pid);
	}
	if (!vm_is_active(vm) && vm->ended[0])
		fprintf(out, "last run: %s\n", vm->ended);
	if (vm->error[0])
		fprintf(out, "error: %s\n", vm->error);
	return 0;
}

/*
 * What `fsvisor ls` shows of a VM, as key: value lines that change only
 * through the service (so the page cache serves them): no uptime, but
 * when the run started.
 */
static int show_summary(struct service *s, void *obj, FILE *out)
{
	struct vm_obj *vm = obj;

	(void)s;
	fprintf(out, "name: %s\nstate: %s\ncpus: %u\nmemory: %llu\ndisks: ", vm->name,
		vm_state_name(vm->state), vm->cpus, (unsigned long long)vm->memory);
	show_slots(vm, out);
	fprintf(out, "nics:");
	for (size_t i = 0; i < vm->nnics; i++)
		fprintf(out, " %s", vm->nics[i]->name);
	fprintf(out, "%s\n", vm->nnics ? "" : " none");
	if (vm->run_started && vm_is_active(vm))
		fprintf(out, "started: %lld\n", (long long)vm->run_started);
	else
		fprintf(out, "started: -\n");
	return 0;
}

/* CPU time of a process in milliseconds, from /proc/PID/stat. */
static unsigned long long cpu_time_ms(int pid)
{
	unsigned long long ut = 0, st = 0;
	char buf[1024];
	const char *fields = svc_proc_stat(pid, buf, sizeof(buf));

	/* utime and stime: fields 14 and 15. */
	if (!fields || sscanf(fields, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
			      &ut, &st) != 2)
		return 0;
	return (ut + st) * 1000 / (unsigned long long)sysconf(_SC_CLK_TCK);
}

static int show_stats(struct service *s, void *obj, FILE *out)
{
	static const char *const exit_kinds[] = { "exits", "io", "mmio", "hlt", "intr", "other" };
	struct vm_obj *vm = obj;
	long long sums[ARRAY_SIZE(exit_kinds)] = { 0 };
	json_t *st = NULL, *v, *disks;
	size_t i, k;
	int slot_of[SLOTS], n = 0;

	if (vm->state == VMS_RUNNING || vm->state == VMS_PAUSED)
		st = vm_worker_status(s, vm);
	fprintf(out, "cpu_time_ms: %llu\n",
		st ? cpu_time_ms((int)json_integer_value(json_object_get(st, "pid"))) : 0ULL);
	json_array_foreach(json_object_get(st, "vcpus"), i, v)
		for (k = 0; k < ARRAY_SIZE(exit_kinds); k++)
			sums[k] += json_integer_value(json_object_get(v, exit_kinds[k]));
	fprintf(out, "exits: %lld\n", sums[0]);
	for (k = 1; k < ARRAY_SIZE(exit_kinds); k++)
		fprintf(out, "exits_%s: %lld\n", exit_kinds[k], sums[k]);
	fprintf(out, "resets: %lld\n",
		(long long)json_integer_value(json_object_get(st, "resets")));
	/* The worker lists the disks in slot order, without the gaps. */
	for (int sl = 0; sl < SLOTS; sl++)
		if (vm->slot[sl])
			slot_of[n++] = sl;
	disks = json_object_get(st, "disks");
	for (int d = 0; d < n; d++) {
		static const char *const keys[] = { "reads", "read_bytes", "writes",
			"write_bytes", "flushes", "discards", "errors" };
		json_t *dj = json_array_get(disks, (size_t)d);

		for (k = 0; k < ARRAY_SIZE(keys); k++)
			fprintf(out, "disk%d_%s: %lld\n", slot_of[d], keys[k],
				(long long)json_integer_value(json_object_get(dj, keys[k])));
	}
	json_decref(st);
	return 0;
}

static int show_config(struct service *s, void *obj, FILE *out)
{
	json_t *doc = definition_json(obj);
	char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	(void)s;
	json_decref(doc);
	if (!text)
		return -ENOMEM;
	fprintf(out, "%s\n", text);
	free(text);
	return 0;
}

static int show_cpus(struct service *s, void *obj, FILE *out)
{
	(void)s;
	fprintf(out, "%u\n", ((struct vm_obj *)obj)->cpus);
	return 0;
}

static int store_cpus(struct service *s, void *obj, const char *value,
		      svc_interrupted_fn intr, void *ctx)
{
	struct vm_obj *vm = obj;
	unsigned int max = vmm_max_cpus(), old = vm->cpus;
	unsigned long v;
	char *end;
	int ret;

	(void)intr;
	(void)ctx;
	ret = refuse_if_active(s, vm, "cpus");
	if (ret)
		return ret;
	errno = 0;
	v = strtoul(value, &end, 10);
	if (!value[0] || *end || value[0] < '0' || value[0] > '9' || errno)
		return vm_fail(s, vm, -EINVAL, "cpus: '%s' is not a whole number", value);
	if (v < 1 || v > max)
		return vm_fail(s, vm, -EINVAL, "cpus: %s is out of range: 1 to %u", value, max);
	vm->cpus = (unsigned int)v;
	ret = vm_changed(s, vm, "cpus", value);
	if (ret) {
		vm->cpus = old;
		return vm_fail(s, vm, -EIO, "cpus: cannot save the definition: %s",
			       strerror(-ret));
	}
	return 0;
}

static int show_memory(struct service *s, void *obj, FILE *out)
{
	(void)s;
	fprintf(out, "%llu\n", (unsigned long long)((struct vm_obj *)obj)->memory);
	return 0;
}

static uint64_t host_ram(void)
{
	struct sysinfo si;

	return sysinfo(&si) < 0 ? 0 : (uint64_t)si.totalram * si.mem_unit;
}

static int store_memory(struct service *s, void *obj, const char *value,
			svc_interrupted_fn intr, void *ctx)
{
	struct vm_obj *vm = obj;
	uint64_t v, old = vm->memory, host = host_ram();
	char a[SIZE_STR_MAX], b[SIZE_STR_MAX];
	int ret;

	(void)intr;
	(void)ctx;
	ret = refuse_if_active(s, vm, "memory/startup");
	if (ret)
		return ret;
	ret = size_parse(value, &v);
	if (ret)
		return vm_fail(s, vm, -EINVAL, "memory/startup: '%s' is not a size (like 512M or 2G)%s",
			       value, ret == -ERANGE ? ": too large" : "");
	if (v < MIN_MEMORY)
		return vm_fail(s, vm, -EINVAL, "memory/startup: %s is below the minimum of 16M",
			       value);
	if (v % 4096)
		return vm_fail(s, vm, -EINVAL, "memory/startup: %s is not a multiple of 4K", value);
	if (host && v > host)
		return vm_fail(s, vm, -EINVAL, "memory/startup: %s is more than the host has (%s)",
			       size_format(v, a, sizeof(a)), size_format_human(host, b, sizeof(b)));
	vm->memory = v;
	snprintf(a, sizeof(a), "%llu", (unsigned long long)v);
	ret = vm_changed(s, vm, "memory/startup", a);
	if (ret) {
		vm->memory = old;
		return vm_fail(s, vm, -EIO, "memory/startup: cannot save the definition: %s",
			       strerror(-ret));
	}
	return 0;
}

static int show_string(FILE *out, const char *str)
{
	fprintf(out, "%s\n", str);
	return 0;
}

static int show_kernel(struct service *s, void *obj, FILE *out)
{
	(void)s;
	return show_string(out, ((struct vm_obj *)obj)->kernel);
}

static int show_initrd(struct service *s, void *obj, FILE *out)
{
	(void)s;
	return show_string(out, ((struct vm_obj *)obj)->initrd);
}

static int show_cmdline(struct service *s, void *obj, FILE *out)
{
	(void)s;
	return show_string(out, ((struct vm_obj *)obj)->cmdline);
}

/* Replace a string setting, saving it; the old value stays on failure. */
static int set_string(struct service *s, struct vm_obj *vm, char **field,
		      const char *file, const char *value)
{
	char *old = *field;
	int ret;

	*field = svc_strdup(value);
	ret = vm_changed(s, vm, file, value[0] ? value : "none");
	if (ret) {
		free(*field);
		*field = old;
		return vm_fail(s, vm, -EIO, "%s: cannot save the definition: %s", file,
			       strerror(-ret));
	}
	free(old);
	return 0;
}

/* An absolute path to a readable regular file. */
static int check_boot_file(struct service *s, struct vm_obj *vm, const char *file,
			   const char *value)
{
	struct stat st;

	if (value[0] != '/')
		return vm_fail(s, vm, -EINVAL, "%s: '%s' is not an absolute path", file, value);
	if (stat(value, &st) < 0)
		return vm_fail(s, vm, errno == ENOENT ? -ENOENT : -EINVAL, "%s: %s: %s",
			       file, value, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return vm_fail(s, vm, -EINVAL, "%s: %s is not a regular file", file, value);
	if (access(value, R_OK) < 0)
		return vm_fail(s, vm, -EINVAL, "%s: %s is not readable", file, value);
	return 0;
}

static int store_kernel(struct service *s, void *obj, const char *value,
			svc_interrupted_fn intr, void *ctx)
{
	struct vm_obj *vm = obj;
	char why[512];
	int ret;

	(void)intr;
	ret = refuse_if_active(s, vm, "boot/kernel");
	if (ret)
		return ret;
	if (!svc_caller_is_owner(s, ctx))
		return vm_fail(s, vm, -EPERM,
			       "boot/kernel: only the mount's owner may name host files");
	if (value[0]) {
		ret = check_boot_file(s, vm, "boot/kernel", value);
		if (ret)
			return ret;
		if (vmm_kernel_check(value, why, sizeof(why)))
			return vm_fail(s, vm, -EINVAL, "boot/kernel: %s", why);
	}
	return set_string(s, vm, &vm->kernel, "boot/kernel", value);
}

static int store_initrd(struct service *s, void *obj, const char *value,
			svc_interrupted_fn intr, void *ctx)
{
	struct vm_obj *vm = obj;
	int ret;

	(void)intr;
	ret = refuse_if_active(s, vm, "boot/initrd");
	if (ret)
		return ret;
	if (!svc_caller_is_owner(s, ctx))
		return vm_fail(s, vm, -EPERM,
			       "boot/initrd: only the mount's owner may name host files");
	if (value[0]) {
		ret = check_boot_file(s, vm, "boot/initrd", value);
		if (ret)
			return ret;
	}
	return set_string(s, vm, &vm->initrd, "boot/initrd", value);
}

static int store_cmdline(struct service *s, void *obj, const char *value,
			 svc_interrupted_fn intr, void *ctx)
{
	struct vm_obj *vm = obj;
	int ret;

	(void)intr;
	(void)ctx;
	ret = refuse_if_active(s, vm, "boot/cmdline");
	if (ret)
		return ret;
	/* The write limit (VALUE_MAX, 4095 bytes) is the worker's limit too. */
	return set_string(s, vm, &vm->cmdline, "boot/cmdline", value);
}

/* ---- the console ----------------------------------------------------------- */

/* Its size (bytes ever printed) and when it was last written. */
static uint64_t console_size(struct service *s, void *obj, struct timespec *mtime)
{
	struct vm_obj *vm = obj;
	uint64_t head = 0, oldest;
	struct stat st;
	char *path;

	(void)s;
	if (asprintf(&path, "%s/console", vm->dir) < 0)
		return 0;
	if (ringfile_extent(path, &head, &oldest))
		head = 0;
	if (stat(path, &st) == 0)
		*mtime = st.st_mtim;
	free(path);
	return head;
}

static ssize_t console_fetch(struct service *s, void *obj, uint64_t *pos, void *buf,
			     size_t len)
{
	char *path;
	ssize_t ret;

	(void)s;
	if (asprintf(&path, "%s/console", ((struct vm_obj *)obj)->dir) < 0)
		return -ENOMEM;
	ret = ringfile_read(path, pos, buf, len);
	free(path);
	if (ret > 0)
		*pos -= (uint64_t)ret;	/* ringfile_read leaves it after the bytes */
	return ret == -ENOENT ? 0 : ret;	/* never started: nothing printed yet */
}

static int console_input(struct service *s, void *obj, const void *buf, size_t len)
{
	return vm_console_input(s, obj, buf, len);
}

static const struct log_ops console_log = {
	.size = console_size,
	.fetch = console_fetch,
	.input = console_input,
};

/* ---- disk slots: vms/NAME/disks/N ------------------------------------------- */

static int parse_slot(const char *str)
{
	char *end;
	long v;

	if (!str[0] || (str[0] == '0' && str[1]) || str[0] < '0' || str[0] > '9')
		return -1;
	v = strtol(str, &end, 10);
	return *end || v < 0 || v >= SLOTS ? -1 : (int)v;
}

static int slot_readlink(struct service *s, void *parent, const char *name, char *buf,
			 size_t len)
{
	struct vm_obj *vm = parent;
	int k = parse_slot(name);

	(void)s;
	if (k < 0 || !vm->slot[k])
		return -ENOENT;
	snprintf(buf, len, "../../../disks/%s", vm->slot[k]);
	return 0;
}

static int slot_list(struct service *s, void *parent, tree_each_fn fn, void *ctx)
{
	struct vm_obj *vm = parent;

	(void)s;
	for (int k = 0; k < SLOTS; k++) {
		char name[4];

		if (!vm->slot[k])
			continue;
		snprintf(name, sizeof(name), "%d", k);
		if (fn(ctx, name, NULL))
			return 1;
	}
	return 0;
}

static int slot_symlink(struct service *s, void *parent, const char *name,
			const char *target)
{
	struct vm_obj *vm = parent;
	int k = parse_slot(name);

	if (k < 0)
		return vm_fail(s, vm, -EINVAL, "disks/%s: slots are numbered 0 to %d", name,
			       SLOTS - 1);
	return vm_attach(s, vm, (unsigned int)k, target);
}

/*
 * `rm -r vms/NAME` changes nothing (docs/filesystem.md): it is refused
 * every file of the VM, and rm then leaves the directories above alone.
 * But it would still remove the disk links in disks/ on its way, which
 * detaches the disks from a VM that stays.  So a process that was just
 * refused a VM's file is also refused that VM's disk links for a while.
 */
#define REMOVAL_WINDOW_S 30

static void note_removal(void *obj, const struct svc_caller *who)
{
	struct vm_obj *vm = obj;

	if (!who)
		return;
	vm->removing_pid = who->pid;
	clock_gettime(CLOCK_MONOTONIC, &vm->removing_since);
}

static bool removing(const struct vm_obj *vm, const struct svc_caller *who)
{
	struct timespec now;

	if (!who || !vm->removing_pid || vm->removing_pid != who->pid)
		return false;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec - vm->removing_since.tv_sec < REMOVAL_WINDOW_S;
}

static int slot_unlink(struct service *s, void *parent, const char *name,
		       const struct svc_caller *who)
{
	struct vm_obj *vm = parent;
	int k = parse_slot(name);

	if (removing(vm, who))
		return vm_fail(s, vm, -EPERM,
			       "disks/%d: not detached: the same process was just refused removing this VM's files (rm -r?), and the VM stays; rmdir vms/%s deletes a VM, rm vms/%s/disks/%d alone detaches a disk",
			       k, vm->name, vm->name, k);
	return vm_detach(s, vm, (unsigned int)k);
}

/* ---- the kinds of directory -------------------------------------------------- */

static const struct attr memory_attrs[] = {
	{ "startup", A_READ | A_WRITE, show_memory, store_memory },
};

static const struct tree_kind memory_kind = {
	.name = "memory",
	.attrs = memory_attrs,
	.nattrs = ARRAY_SIZE(memory_attrs),
};

static const struct attr boot_attrs[] = {
	{ "kernel", A_READ | A_WRITE, show_kernel, store_kernel },
	{ "initrd", A_READ | A_WRITE, show_initrd, store_initrd },
	{ "cmdline", A_READ | A_WRITE, show_cmdline, store_cmdline },
};

static const struct tree_kind boot_kind = {
	.name = "boot",
	.attrs = boot_attrs,
	.nattrs = ARRAY_SIZE(boot_attrs),
};

static const struct tree_child slot_children[] = {
	{ TREE_LINKS, .readlink = slot_readlink, .list = slot_list,
	  .symlink = slot_symlink, .unlink = slot_unlink },
};

static const struct tree_kind slots_kind = {
	.name = "disks",
	.children = slot_children,
	.nchildren = ARRAY_SIZE(slot_children),
};

static const struct attr vm_attrs[] = {
	{ "ctl", A_WRITE | A_CTL, NULL, store_ctl },
	{ "state", A_READ, show_state },
	{ "status", A_READ | A_VOLATILE, show_status },
	{ "summary", A_READ, show_summary },
	{ "error", A_READ, show_error },
	{ "events", A_READ, .log = &vm_events_log },
	{ "cpus", A_READ | A_WRITE, show_cpus, store_cpus },
	{ "console", A_READ | A_WRITE, .log = &console_log },
	{ "stats", A_READ | A_VOLATILE, show_stats },
	{ "config.json", A_READ, show_config },
};

static const struct tree_child vm_children[] = {
	{ TREE_DIR, &memory_kind, "memory" },
	{ TREE_DIR, &boot_kind, "boot" },
	{ TREE_DIR, &slots_kind, "disks" },
	{ TREE_DIR, &nics_kind, "nics" },
	{ TREE_DIR, &integration_kind, "integration" },
};

static void vm_hold(void *obj)
{
	((struct vm_obj *)obj)->refs++;
}

static void vm_release(void *obj)
{
	vm_put(obj);
}

static int vm_rmdir(struct service *s, void *obj)
{
	return vm_delete(s, obj);
}

static int vm_refused(struct service *s, void *obj, int err, const char *msg)
{
	return vm_fail(s, (struct vm_obj *)obj, err, "%s", msg);
}

static struct timespec vm_mtime(void *obj)
{
	return ((struct vm_obj *)obj)->mtime;
}

static const struct tree_kind vm_kind = {
	.name = "vm",
	.attrs = vm_attrs,
	.nattrs = ARRAY_SIZE(vm_attrs),
	.children = vm_children,
	.nchildren = ARRAY_SIZE(vm_children),
	.hold = vm_hold,
	.put = vm_release,
	.rmdir = vm_rmdir,
	.fail = vm_refused,
	.mtime = vm_mtime,
	.removal_refused = note_removal,
};

static void *vms_lookup(struct service *s, void *parent, const char *name, void *local)
{
	(void)parent;
	(void)local;
	return vm_find(s, name);
}

static int vms_list(struct service *s, void *parent, tree_each_fn fn, void *ctx)
{
	(void)parent;
	for (size_t i = 0; i < s->nvms; i++)
		if (fn(ctx, s->vms[i]->name, s->vms[i]))
			return 1;
	return 0;
}

static size_t vms_count(struct service *s, void *parent)
{
	(void)parent;
	return s->nvms;
}

static int vms_mkdir(struct service *s, void *parent, const char *name)
{
	(void)parent;
	return vm_define(s, name);
}

static const struct tree_child vms_children[] = {
	{ TREE_SET, &vm_kind, .lookup = vms_lookup, .list = vms_list, .count = vms_count,
	  .mkdir = vms_mkdir },
};

const struct tree_kind vms_kind = {
	.name = "vms",
	.children = vms_children,
	.nchildren = ARRAY_SIZE(vms_children),
};
