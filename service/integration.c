// SPDX-License-Identifier: MIT
/*
 * A VM's integration services as files (vms/NAME/integration/): which
 * services are on (kept in vm.json with the VM, as are its guest CID
 * and its host-to-guest data exchange items), what the agent reports,
 * and the requests people make of it.  Talking to the agent is agent.c's.
 *
 *   integration/agent          the agent, as its hello said (volatile)
 *   integration/cid            the guest's vsock address
 *   integration/heartbeat      ok | lost | no-contact | paused | disabled, since when
 *   integration/time_sync      the last offset measured (volatile)
 *   integration/backup         thawed | frozen | ...; write freeze [SECONDS] | thaw
 *   integration/copy           write SOURCE DEST [overwrite] [mkdirs] (Copy-VMFile)
 *   integration/enabled/NAME   on | off, one file per service
 *   integration/kvp/host/KEY   items for the guest: echo > makes one, rm deletes it
 *   integration/kvp/guest/KEY  items the guest set (read-only, volatile)
 *   integration/kvp/intrinsic/KEY  the guest's intrinsic items (read-only, volatile)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "service/integration.h"

#define FREEZE_DEFAULT_S	10
#define FREEZE_MAX_S		600

const char *const ic_service_names[ICS_COUNT] = {
	[ICS_HEARTBEAT] = "heartbeat",
	[ICS_SHUTDOWN] = "shutdown",
	[ICS_TIME_SYNC] = "time_sync",
	[ICS_KVP] = "kvp",
	[ICS_BACKUP] = "backup",
	[ICS_GUEST_SERVICES] = "guest_services",
};

static const uint32_t service_caps[ICS_COUNT] = {
	[ICS_HEARTBEAT] = IC_CAP_HEARTBEAT,
	[ICS_SHUTDOWN] = IC_CAP_SHUTDOWN,
	[ICS_TIME_SYNC] = IC_CAP_TIMESYNC,
	[ICS_KVP] = IC_CAP_KVP,
	[ICS_BACKUP] = IC_CAP_BACKUP,
	[ICS_GUEST_SERVICES] = IC_CAP_FILECOPY,
};

static const char *const pool_names[IC_POOL_MAX + 1] = {
	[IC_POOL_HOST] = "host",
	[IC_POOL_GUEST] = "guest",
	[IC_POOL_INTRINSIC] = "intrinsic",
};

struct ic_vm *ic_alloc(struct vm_obj *vm)
{
	struct ic_vm *ic = calloc(1, sizeof(*ic));

	if (!ic)
		abort();
	/* Hyper-V's defaults: everything but the guest service interface. */
	for (int i = 0; i < ICS_COUNT; i++)
		ic->enabled[i] = i != ICS_GUEST_SERVICES;
	for (unsigned int p = 0; p <= IC_POOL_MAX; p++) {
		ic->pools[p].vm = vm;
		ic->pools[p].which = p;
	}
	ic->listen_fd = -1;
	ic->hb_setting_since = time(NULL);
	return ic;
}

static void pool_free(struct kvp_pool *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->items[i]->key);
		free(p->items[i]->value);
		free(p->items[i]);
	}
	free(p->items);
	p->items = NULL;
	p->n = p->cap = 0;
}

void ic_free(struct ic_vm *ic)
{
	if (!ic)
		return;
	for (unsigned int p = 0; p <= IC_POOL_MAX; p++)
		pool_free(&ic->pools[p]);
	free(ic);
}

uint32_t ic_enabled_caps(const struct ic_vm *ic)
{
	uint32_t caps = 0;

	for (int i = 0; i < ICS_COUNT; i++)
		if (ic->enabled[i])
			caps |= service_caps[i];
	return caps;
}

/* ---- data exchange pools ----------------------------------------------------- */

static int key_cmp(const char *a, const char *key, size_t keylen)
{
	int c = strncmp(a, key, keylen);

	return c ? c : a[keylen] ? 1 : 0;
}

/* Where @key is, or would go. */
static size_t pool_index(struct kvp_pool *p, const char *key, size_t keylen, bool *found)
{
	size_t lo = 0, hi = p->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = key_cmp(p->items[mid]->key, key, keylen);

		if (!c) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

struct kvp_item *kvp_find(struct kvp_pool *p, const char *key, size_t keylen)
{
	bool found;
	size_t i = pool_index(p, key, keylen, &found);

	return found ? p->items[i] : NULL;
}

static char *dup_n(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (!p)
		abort();
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static void pool_notify(struct service *s, struct kvp_pool *p, enum svc_change what,
			const char *key)
{
	svc_notify(s, what, "vms/%s/integration/kvp/%s/%s", p->vm->name, pool_names[p->which],
		   key);
	/* Host items are cached values: the VM's directory changed with them. */
	if (p->which == IC_POOL_HOST)
		svc_notify(s, SVC_CHANGED, "vms/%s", p->vm->name);
}

int kvp_set(struct service *s, struct kvp_pool *p, const char *key, size_t keylen,
	    const char *value, size_t vlen)
{
	bool found;
	size_t i = pool_index(p, key, keylen, &found);
	struct kvp_item *it;

	if (found) {
		it = p->items[i];
		if (strlen(it->value) == vlen && memcmp(it->value, value, vlen) == 0)
			return 0;
		free(it->value);
		it->value = dup_n(value, vlen);
		if (p->which == IC_POOL_HOST)
			svc_notify(s, SVC_CHANGED, "vms/%s", p->vm->name);
		return 0;
	}
	if (p->n == KVP_POOL_ITEMS)
		return -ENOSPC;
	if (p->n == p->cap) {
		size_t ncap = p->cap ? p->cap * 2 : 16;
		struct kvp_item **items = realloc(p->items, ncap * sizeof(*items));

		if (!items)
			return -ENOMEM;
		p->items = items;
		p->cap = ncap;
	}
	it = calloc(1, sizeof(*it));
	if (!it)
		return -ENOMEM;
	it->key = dup_n(key, keylen);
	it->value = dup_n(value, vlen);
	it->pool = p;
	memmove(&p->items[i + 1], &p->items[i], (p->n - i) * sizeof(*p->items));
	p->items[i] = it;
	p->n++;
	pool_notify(s, p, SVC_ADDED, it->key);
	return 0;
}

void kvp_delete(struct service *s, struct kvp_pool *p, const char *key, size_t keylen)
{
	bool found;
	size_t i = pool_index(p, key, keylen, &found);
	struct kvp_item *it;

	if (!found)
		return;
	it = p->items[i];
	memmove(&p->items[i], &p->items[i + 1], (p->n - i - 1) * sizeof(*p->items));
	p->n--;
	pool_notify(s, p, SVC_REMOVED, it->key);
	free(it->key);
	free(it->value);
	free(it);
}

void kvp_clear(struct service *s, struct kvp_pool *p)
{
	while (p->n)
		kvp_delete(s, p, p->items[p->n - 1]->key, strlen(p->items[p->n - 1]->key));
}

const char *kvp_key_problem(const char *key, size_t len)
{
	if (len == 0)
		return "a key must not be empty";
	if (len > KVP_NAME_MAX)
		return "a key that names a file is at most 255 bytes";
	if ((len == 1 && key[0] == '.') || (len == 2 && key[0] == '.' && key[1] == '.'))
		return "a key cannot be '.' or '..'";
	for (size_t i = 0; i < len; i++) {
		if (key[i] == '/')
			return "a key cannot hold '/'";
		if ((unsigned char)key[i] < 0x20 || key[i] == 0x7F)
			return "a key cannot hold control characters";
	}
	if (!ic_utf8_valid((const uint8_t *)key, len))
		return "a key must be UTF-8 text";
	return NULL;
}

/* ---- persistence --------------------------------------------------------------- */

void ic_to_json(const struct ic_vm *ic, json_t *doc)
{
	json_t *svc = json_object(), *kvp = json_object();
	const struct kvp_pool *host = &ic->pools[IC_POOL_HOST];

	for (int i = 0; i < ICS_COUNT; i++)
		json_object_set_new(svc, ic_service_names[i], json_boolean(ic->enabled[i]));
	for (size_t i = 0; i < host->n; i++)
		json_object_set_new(kvp, host->items[i]->key, json_string(host->items[i]->value));
	json_object_set_new(doc, "cid", json_integer(ic->cid));
	json_object_set_new(doc, "integration", svc);
	json_object_set_new(doc, "kvp", kvp);
}

static bool cid_taken(struct service *s, uint32_t cid, const struct vm_obj *except)
{
	for (size_t i = 0; i < s->nvms; i++)
		if (s->vms[i] != except && s->vms[i]->ic->cid == cid)
			return true;
	return false;
}

uint32_t ic_cid_new(struct service *s, const struct vm_obj *except)
{
	uint32_t cid = 3;

	while (cid_taken(s, cid, except))
		cid++;
	return cid;
}

void ic_from_json(struct service *s, struct vm_obj *vm, json_t *doc)
{
	struct ic_vm *ic = vm->ic;
	json_t *svc = json_object_get(doc, "integration"), *v;
	json_int_t cid = json_integer_value(json_object_get(doc, "cid"));
	const char *key;

	for (int i = 0; i < ICS_COUNT; i++) {
		v = json_object_get(svc, ic_service_names[i]);
		if (json_is_boolean(v))
			ic->enabled[i] = json_is_true(v);
	}
	/* Kept across restarts; a VM from before CIDs, or a clash, gets a new one. */
	if (cid >= 3 && cid < UINT32_MAX && !cid_taken(s, (uint32_t)cid, vm)) {
		ic->cid = (uint32_t)cid;
	} else {
		ic->cid = ic_cid_new(s, vm);
		log_info("vm %s: guest CID %u", vm->name, ic->cid);
	}
	json_object_foreach(json_object_get(doc, "kvp"), key, v) {
		const char *val = json_string_value(v);

		if (!val || kvp_key_problem(key, strlen(key)) || strlen(val) > IC_VALUE_MAX ||
		    kvp_set(s, &ic->pools[IC_POOL_HOST], key, strlen(key), val, strlen(val))) {
			log_warn("vm %s: ignoring data exchange item '%s'", vm->name, key);
			continue;
		}
	}
}

/* ---- files ------------------------------------------------------------------ */

static void print_time(FILE *out, time_t t)
{
	struct tm tm;
	char buf[32];

	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fputs(buf, out);
}

/* A change made through the mount: saved, notified, an event. */
static int ic_changed(struct service *s, struct vm_obj *vm, const char *file,
		      const char *value)
{
	int ret;

	svc_touch(&vm->mtime);
	ret = vm_save(s, vm);
	svc_notify(s, SVC_CHANGED, "vms/%s", vm->name);
	svc_event(s, "vm", vm->name, "integration/%s %s", file, value);
	return ret;
}

static int show_agent(struct service *s, void *obj, FILE *out)
{
	struct ic_vm *ic = ((struct vm_obj *)obj)->ic;

	(void)s;
	if (!ic->conn || !ic->agent_version) {
		fprintf(out, "not connected\n");
		return 0;
	}
	fprintf(out, "connected: protocol %u, %s, offers", ic->agent_version,
		ic->agent_name[0] ? ic->agent_name : "an agent");
	for (int i = 0; i < ICS_COUNT; i++)
		if (ic->agent_caps & service_caps[i])
			fprintf(out, " %s", ic_service_names[i]);
	fprintf(out, "\n");
	return 0;
}

static int show_cid(struct service *s, void *obj, FILE *out)
{
	(void)s;
	fprintf(out, "%u\n", ((struct vm_obj *)obj)->ic->cid);
	return 0;
}

static int show_heartbeat(struct service *s, void *obj, FILE *out)
{
	time_t since;
	const char *st = agent_heartbeat(obj, &since);

	(void)s;
	fprintf(out, "%s since ", st);
	print_time(out, since);
	fprintf(out, "\n");
	return 0;
}

static int show_time_sync(struct service *s, void *obj, FILE *out)
{
	struct ic_vm *ic = ((struct vm_obj *)obj)->ic;

	(void)s;
	if (!ic->enabled[ICS_TIME_SYNC]) {
		fprintf(out, "disabled\n");
	} else if (!ic->ts_valid) {
		fprintf(out, "none\n");
	} else {
		fprintf(out, "%+.6f s at ", (double)ic->ts_offset_ns / 1e9);
		print_time(out, ic->ts_when);
		fprintf(out, "\n");
	}
	return 0;
}

static bool agent_has(struct ic_vm *ic, uint32_t cap)
{
	return ic->conn && ic->agent_version && (ic->agent_caps & cap);
}

static int show_backup(struct service *s, void *obj, FILE *out)
{
	struct vm_obj *vm = obj;
	uint32_t state, remain;

	if (!vm->ic->enabled[ICS_BACKUP]) {
		fprintf(out, "disabled\n");
		return 0;
	}
	if (!agent_has(vm->ic, IC_CAP_BACKUP)) {
		fprintf(out, "unavailable\n");
		return 0;
	}
	if (agent_backup_status(s, vm, &state, &remain))
		fprintf(out, "unknown\n");
	else
		fprintf(out, "%s\n", state == IC_BACKUP_FROZEN ? "frozen" : "thawed");
	return 0;
}

/* Why a request of the agent's @svc cannot go now, or 0. */
static int agent_ready(struct service *s, struct vm_obj *vm, enum ic_service svc,
		       uint32_t cap, const char *file)
{
	if (!vm->ic->enabled[svc])
		return vm_fail(s, vm, -EPERM, "integration/%s: the %s service is off for this VM (echo on > integration/enabled/%s)",
			       file, ic_service_names[svc], ic_service_names[svc]);
	if (vm->state != VMS_RUNNING)
		return vm_fail(s, vm, -EBUSY, "integration/%s: the VM is %s", file,
			       vm_state_name(vm->state));
	if (!vm->ic->conn || !vm->ic->agent_version)
		return vm_fail(s, vm, -EBUSY, "integration/%s: no agent is connected", file);
	if (!(vm->ic->agent_caps & cap))
		return vm_fail(s, vm, -EBUSY, "integration/%s: the agent does not offer %s", file,
			       ic_service_names[svc]);
	return 0;
}

static int parse_seconds(const char *s, unsigned long *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoul(s, &end, 10);
	return *end || errno ? -EINVAL : 0;
}

static int store_backup(struct service *s, void *obj, const char *value,
			svc_interrupted_fn intr, void *ctx)
{
	struct vm_obj *vm = obj;
	unsigned long secs = FREEZE_DEFAULT_S;
	char why[256];
	uint32_t count;
	int ret;

	(void)intr;
	(void)ctx;
	if (strcmp(value, "thaw") != 0 && strcmp(value, "freeze") != 0 &&
	    (strncmp(value, "freeze ", 7) != 0 || parse_seconds(value + 7, &secs)))
		return vm_fail(s, vm, -EINVAL,
			       "integration/backup: '%s' is not 'freeze', 'freeze SECONDS' or 'thaw'", value);
	if (secs < 1 || secs > FREEZE_MAX_S)
		return vm_fail(s, vm, -EINVAL,
			       "integration/backup: a freeze lasts 1 to %d seconds, not %s", FREEZE_MAX_S,
			       value + 7);
	ret = agent_ready(s, vm, ICS_BACKUP, IC_CAP_BACKUP, "backup");
	if (ret)
		return ret;
	if (value[0] == 't')
		ret = agent_thaw(s, vm, &count, why, sizeof(why));
	else
		ret = agent_freeze(s, vm, (uint32_t)secs * 1000, &count, why, sizeof(why));
	if (ret)
		return vm_fail(s, vm, ret == -ETIMEDOUT ? -ETIMEDOUT : ret == -EBUSY ? -EBUSY : -EIO,
			       "integration/backup: %s: %s", value, why);
	log_info("vm %s: %s: %u file systems", vm->name, value[0] == 't' ? "thawed" : "frozen",
		 count);
	svc_event(s, "vm", vm->name, "integration/backup %s %u", value[0] == 't' ? "thawed" : "frozen",
		  count);
	return 0;
}

/* "SOURCE DEST [overwrite] [mkdirs]" */
static int store_copy(struct service *s, void *obj, const char *value,
		      svc_interrupted_fn intr, void *ctx)
{
	struct vm_obj *vm = obj;
	char *copy = svc_strdup(value), *save = NULL, *src, *dest, *opt, why[512];
	uint32_t flags = 0;
	struct stat st;
	int ret, fd = -1;

	(void)intr;
	src = strtok_r(copy, " ", &save);
	dest = src ? strtok_r(NULL, " ", &save) : NULL;
	ret = 0;
	while (dest && !ret && (opt = strtok_r(NULL, " ", &save))) {
		if (strcmp(opt, "overwrite") == 0)
			flags |= IC_FILE_OVERWRITE;
		else if (strcmp(opt, "mkdirs") == 0)
			flags |= IC_FILE_MKDIRS;
		else
			ret = vm_fail(s, vm, -EINVAL, "integration/copy: unknown option '%s' (overwrite, mkdirs)",
				      opt);
	}
	if (!ret && (!src || !dest))
		ret = vm_fail(s, vm, -EINVAL, "integration/copy: write 'SOURCE DEST [overwrite] [mkdirs]'");
	if (!ret && (src[0] != '/' || dest[0] != '/'))
		ret = vm_fail(s, vm, -EINVAL, "integration/copy: both paths must be absolute");
	if (!ret && strlen(dest) > IC_PATH_MAX)
		ret = vm_fail(s, vm, -EINVAL, "integration/copy: the destination is longer than %d bytes",
			      IC_PATH_MAX);
	if (!ret && (ret = svc_caller_may_open(s, svc_caller_of(ctx), src, O_RDONLY)))
		ret = vm_fail(s, vm, ret == -ENOENT ? -ENOENT : -EACCES,
			      "integration/copy: %s: you could not read it yourself (%s)", src,
			      strerror(-ret));
	if (!ret) {
		fd = open(src, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
		if (fd < 0)
			ret = vm_fail(s, vm, errno == ENOENT ? -ENOENT : -EINVAL,
				      "integration/copy: %s: %s", src, strerror(errno));
		else if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
			ret = vm_fail(s, vm, -EINVAL, "integration/copy: %s is not a regular file", src);
	}
	if (!ret)
		ret = agent_ready(s, vm, ICS_GUEST_SERVICES, IC_CAP_FILECOPY, "copy");
	if (!ret) {
		ret = agent_copy(s, vm, fd, dest, flags, why, sizeof(why));
		if (ret)
			ret = vm_fail(s, vm, ret == -EEXIST || ret == -ENOENT || ret == -ENOSPC ||
				      ret == -ETIMEDOUT ? ret : -EIO,
				      "integration/copy: %s to %s: %s", src, dest, why);
		else
			svc_event(s, "vm", vm->name, "integration/copy %s", dest);
	}
	if (fd >= 0)
		close(fd);
	free(copy);
	return ret;
}

/* ---- enabled/: a file per service ------------------------------------------------ */

static int show_enabled(struct vm_obj *vm, enum ic_service svc, FILE *out)
{
	fprintf(out, "%s\n", vm->ic->enabled[svc] ? "on" : "off");
	return 0;
}

static int store_enabled(struct service *s, struct vm_obj *vm, enum ic_service svc,
			 const char *value)
{
	bool on = strcmp(value, "on") == 0, old = vm->ic->enabled[svc];
	char file[32];
	int ret;

	snprintf(file, sizeof(file), "enabled/%s", ic_service_names[svc]);
	if (!on && strcmp(value, "off") != 0)
		return vm_fail(s, vm, -EINVAL, "integration/%s: '%s' is not 'on' or 'off'", file,
			       value);
	if (on == old)
		return 0;
	vm->ic->enabled[svc] = on;
	ret = ic_changed(s, vm, file, value);
	if (ret) {
		vm->ic->enabled[svc] = old;
		vm_save(s, vm);
		return vm_fail(s, vm, -EIO, "integration/%s: cannot save the definition: %s", file,
			       strerror(-ret));
	}
	if (svc == ICS_HEARTBEAT)
		vm->ic->hb_setting_since = time(NULL);
	agent_service_changed(s, vm, svc);
	return 0;
}

#define ENABLED_FILE(svc, id)								\
	static int show_##id(struct service *s, void *obj, FILE *out)			\
	{										\
		(void)s;								\
		return show_enabled(obj, svc, out);					\
	}										\
	static int store_##id(struct service *s, void *obj, const char *value,		\
			      svc_interrupted_fn intr, void *ctx)			\
	{										\
		(void)intr;								\
		(void)ctx;								\
		return store_enabled(s, obj, svc, value);				\
	}

ENABLED_FILE(ICS_HEARTBEAT, en_heartbeat)
ENABLED_FILE(ICS_SHUTDOWN, en_shutdown)
ENABLED_FILE(ICS_TIME_SYNC, en_time_sync)
ENABLED_FILE(ICS_KVP, en_kvp)
ENABLED_FILE(ICS_BACKUP, en_backup)
ENABLED_FILE(ICS_GUEST_SERVICES, en_guest_services)

static const struct attr enabled_attrs[] = {
	{ "heartbeat", A_READ | A_WRITE, show_en_heartbeat, store_en_heartbeat },
	{ "shutdown", A_READ | A_WRITE, show_en_shutdown, store_en_shutdown },
	{ "time_sync", A_READ | A_WRITE, show_en_time_sync, store_en_time_sync },
	{ "kvp", A_READ | A_WRITE, show_en_kvp, store_en_kvp },
	{ "backup", A_READ | A_WRITE, show_en_backup, store_en_backup },
	{ "guest_services", A_READ | A_WRITE, show_en_guest_services, store_en_guest_services },
};

static const struct tree_kind enabled_kind = {
	.name = "enabled",
	.attrs = enabled_attrs,
	.nattrs = ARRAY_SIZE(enabled_attrs),
};

/* ---- kvp/: the three pools ------------------------------------------------------ */

static int show_item(struct service *s, void *obj, FILE *out)
{
	(void)s;
	fprintf(out, "%s\n", ((struct kvp_item *)obj)->value);
	return 0;
}

static int store_item(struct service *s, void *obj, const char *value,
		      svc_interrupted_fn intr, void *ctx)
{
	struct kvp_item *it = obj;
	struct vm_obj *vm = it->pool->vm;
	char *old, file[300];
	int ret;

	(void)intr;
	(void)ctx;
	snprintf(file, sizeof(file), "kvp/host/%s", it->key);
	if (strlen(value) > IC_VALUE_MAX)
		return vm_fail(s, vm, -EINVAL,
			       "integration/%s: a value is at most %d bytes (as Hyper-V's), not %zu",
			       file, IC_VALUE_MAX, strlen(value));
	old = svc_strdup(it->value);
	kvp_set(s, it->pool, it->key, strlen(it->key), value, strlen(value));
	ret = ic_changed(s, vm, file, "set");
	if (ret) {
		kvp_set(s, it->pool, it->key, strlen(it->key), old, strlen(old));
		vm_save(s, vm);
		free(old);
		return vm_fail(s, vm, -EIO, "integration/%s: cannot save the definition: %s",
			       file, strerror(-ret));
	}
	free(old);
	agent_kvp_host(s, vm, it->key, it->value);
	return 0;
}

static const struct attr host_item_attr = {
	"KEY", A_READ | A_WRITE, show_item, store_item,
};

/* What the guest set changes on its own: never cached. */
static const struct attr guest_item_attr = {
	"KEY", A_READ | A_VOLATILE, show_item,
};

static void *item_lookup(struct service *s, void *parent, const char *name, void *local)
{
	(void)s;
	(void)local;
	return kvp_find(parent, name, strlen(name));
}

static int item_list(struct service *s, void *parent, tree_each_fn fn, void *ctx)
{
	struct kvp_pool *p = parent;

	(void)s;
	for (size_t i = 0; i < p->n; i++)
		if (fn(ctx, p->items[i]->key, p->items[i]))
			return 1;
	return 0;
}

static int item_create(struct service *s, void *parent, const char *name,
		       const struct svc_caller *who)
{
	struct kvp_pool *p = parent;
	struct vm_obj *vm = p->vm;
	const char *why = kvp_key_problem(name, strlen(name));
	int ret;

	(void)who;
	if (why)
		return vm_fail(s, vm, -EINVAL, "integration/kvp/host: '%s': %s", name, why);
	if (kvp_find(p, name, strlen(name)))
		return -EEXIST;
	ret = kvp_set(s, p, name, strlen(name), "", 0);
	if (ret == -ENOSPC)
		return vm_fail(s, vm, -ENOSPC, "integration/kvp/host/%s: a pool holds at most %d items",
			       name, KVP_POOL_ITEMS);
	if (ret)
		return ret;
	ret = ic_changed(s, vm, "kvp/host", name);
	if (ret) {
		kvp_delete(s, p, name, strlen(name));
		vm_save(s, vm);
		return vm_fail(s, vm, -EIO, "integration/kvp/host/%s: cannot save the definition: %s",
			       name, strerror(-ret));
	}
	agent_kvp_host(s, vm, name, "");
	return 0;
}

static int item_unlink(struct service *s, void *parent, const char *name,
		       const struct svc_caller *who)
{
	struct kvp_pool *p = parent;
	struct vm_obj *vm = p->vm;
	struct kvp_item *it = kvp_find(p, name, strlen(name));
	char *value;
	int ret;

	(void)who;
	if (!it)
		return -ENOENT;
	value = svc_strdup(it->value);
	kvp_delete(s, p, name, strlen(name));
	ret = ic_changed(s, vm, "kvp/host", "deleted");
	if (ret) {
		kvp_set(s, p, name, strlen(name), value, strlen(value));
		vm_save(s, vm);
		free(value);
		return vm_fail(s, vm, -EIO, "integration/kvp/host/%s: cannot save the definition: %s",
			       name, strerror(-ret));
	}
	free(value);
	agent_kvp_host(s, vm, name, NULL);
	return 0;
}

static const struct tree_child host_items[] = {
	{ TREE_FILES, .lookup = item_lookup, .list = item_list, .file = &host_item_attr,
	  .create = item_create, .unlink = item_unlink },
};

static const struct tree_child guest_items[] = {
	{ TREE_FILES, .lookup = item_lookup, .list = item_list, .file = &guest_item_attr },
};

static const struct tree_kind host_pool_kind = {
	.name = "host",
	.children = host_items,
	.nchildren = ARRAY_SIZE(host_items),
};

static const struct tree_kind guest_pool_kind = {
	.name = "guest",
	.children = guest_items,
	.nchildren = ARRAY_SIZE(guest_items),
};

static void *host_pool(struct service *s, void *vm)
{
	(void)s;
	return &((struct vm_obj *)vm)->ic->pools[IC_POOL_HOST];
}

static void *guest_pool(struct service *s, void *vm)
{
	(void)s;
	return &((struct vm_obj *)vm)->ic->pools[IC_POOL_GUEST];
}

static void *intrinsic_pool(struct service *s, void *vm)
{
	(void)s;
	return &((struct vm_obj *)vm)->ic->pools[IC_POOL_INTRINSIC];
}

static const struct tree_child kvp_children[] = {
	{ TREE_DIR, &host_pool_kind, "host", .object = host_pool },
	{ TREE_DIR, &guest_pool_kind, "guest", .object = guest_pool },
	{ TREE_DIR, &guest_pool_kind, "intrinsic", .object = intrinsic_pool },
};

static const struct tree_kind kvp_kind = {
	.name = "kvp",
	.children = kvp_children,
	.nchildren = ARRAY_SIZE(kvp_children),
};

/* ---- integration/ ------------------------------------------------------------- */

static const struct attr integration_attrs[] = {
	{ "agent", A_READ | A_VOLATILE, show_agent },
	{ "cid", A_READ, show_cid },
	{ "heartbeat", A_READ | A_VOLATILE, show_heartbeat },
	{ "time_sync", A_READ | A_VOLATILE, show_time_sync },
	{ "backup", A_READ | A_WRITE | A_VOLATILE, show_backup, store_backup },
	{ "copy", A_WRITE | A_CTL, NULL, store_copy },
};

static const struct tree_child integration_children[] = {
	{ TREE_DIR, &enabled_kind, "enabled" },
	{ TREE_DIR, &kvp_kind, "kvp" },
};

const struct tree_kind integration_kind = {
	.name = "integration",
	.attrs = integration_attrs,
	.nattrs = ARRAY_SIZE(integration_attrs),
	.children = integration_children,
	.nchildren = ARRAY_SIZE(integration_children),
};
