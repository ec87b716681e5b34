// SPDX-License-Identifier: MIT
/*
 * Switches (switches/NAME/): the definition (switch.json under
 * <state>/switches/NAME/), its files, and its worker.
 *
 * A switch runs as long as it exists, like Hyper-V's: mkdir starts an
 * `fsvisor switch run` worker (through the same monitor as VM workers, in
 * the switch's directory: ctl.sock, worker.pid, worker.exit, worker.err)
 * and rmdir stops it.  The supervisor watches the worker through a pidfd.
 * A worker that dies is started again (at most once per RESTART_GAP_S),
 * and the NICs of running VMs get their ports back.  Workers outlive the
 * service, which adopts them when it starts.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "service/internal.h"

#define START_TIMEOUT_MS	10000
#define STOP_TIMEOUT_MS		5000
#define EXIT_RECORD_WAIT_MS	1000
#define CALL_TIMEOUT_MS		5000
#define RESTART_GAP_S		5
#define HOST_IF_PREFIX		"fsv-"

static const char *const type_names[] = {
	[SWITCH_PRIVATE] = "private",
	[SWITCH_INTERNAL] = "internal",
	[SWITCH_EXTERNAL] = "external",
};

const char *switch_type_name(enum switch_type t)
{
	return type_names[t];
}

void switch_free(struct switch_obj *sw)
{
	if (sw->dirfd >= 0)
		close(sw->dirfd);
	if (sw->pidfd >= 0)
		close(sw->pidfd);
	free(sw->dir);
	free(sw);
}

void switch_put(struct switch_obj *sw)
{
	if (--sw->refs == 0)
		switch_free(sw);
}

static struct switch_obj *switch_alloc(struct service *s, const char *name)
{
	struct switch_obj *sw = calloc(1, sizeof(*sw));

	if (!sw)
		abort();
	snprintf(sw->name, sizeof(sw->name), "%s", name);
	sw->watch_kind = WATCH_SWITCH;
	sw->dir = svc_path(s, "switches", name);
	sw->dirfd = -1;
	sw->pidfd = -1;
	sw->refs = 1;
	svc_touch(&sw->mtime);
	return sw;
}

/*
 * "fsv-NAME"; names too long for an interface (15 bytes) keep their
 * first 6 characters and a hash of the whole name, so two switches never
 * share a device.
 */
void switch_host_if(const struct switch_obj *sw, char *buf, size_t len)
{
	uint32_t h = 2166136261u;

	if (sw->type == SWITCH_PRIVATE) {
		snprintf(buf, len, "%s", "");
		return;
	}
	if (strlen(HOST_IF_PREFIX) + strlen(sw->name) <= IFNAME_MAX) {
		snprintf(buf, len, HOST_IF_PREFIX "%s", sw->name);
		return;
	}
	for (const char *p = sw->name; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	snprintf(buf, len, HOST_IF_PREFIX "%.6s-%04x", sw->name, h & 0xffff);
}

/* ---- persistence ------------------------------------------------------ */

int switch_save(struct switch_obj *sw)
{
	json_t *doc = json_pack("{s:s, s:s, s:s, s:s}", "name", sw->name,
				"type", type_names[sw->type], "uplink", sw->uplink,
				"error", sw->error);
	char *path;
	int ret;

	if (asprintf(&path, "%s/switch.json", sw->dir) < 0)
		abort();
	ret = json_file_save(path, doc);
	if (ret)
		log_error("switch %s: saving %s failed: %s", sw->name, path, strerror(-ret));
	free(path);
	json_decref(doc);
	return ret;
}

static void switch_changed(struct service *s, struct switch_obj *sw, const char *file,
			   const char *value)
{
	svc_touch(&sw->mtime);
	/* The whole directory: its files' times changed with it (tree.h). */
	svc_notify(s, SVC_CHANGED, "switches/%s", sw->name);
	svc_event(s, "switch", sw->name, "%s %s", file, value);
}

static int parse_type(const char *str, enum switch_type *t)
{
	for (size_t i = 0; i < ARRAY_SIZE(type_names); i++) {
		if (strcmp(str, type_names[i]) == 0) {
			*t = (enum switch_type)i;
			return 0;
		}
	}
	return -EINVAL;
}

static int switch_load(struct service *s, const char *name)
{
	struct switch_obj *sw = switch_alloc(s, name);
	char err[512], *path;
	const char *str;
	json_t *doc;
	struct stat st;
	int ret;

	if (asprintf(&path, "%s/switch.json", sw->dir) < 0)
		abort();
	ret = json_file_load(path, &doc, err, sizeof(err));
	if (ret == -ENOENT) {
		log_warn("switch %s: no switch.json (an interrupted mkdir): removing %s",
			 name, sw->dir);
		svc_remove_dir(sw->dir);
	} else if (ret) {
		log_error("switch %s: %s: %s; left alone", name, path, err);
	}
	if (ret) {
		free(path);
		switch_put(sw);
		return 0;
	}
	if (stat(path, &st) == 0)
		sw->mtime = st.st_mtim;
	free(path);
	str = json_string_value(json_object_get(doc, "type"));
	if (!str || parse_type(str, &sw->type))
		log_warn("switch %s: bad type; private", name);
	str = json_string_value(json_object_get(doc, "uplink"));
	if (str && strlen(str) <= IFNAME_MAX)
		snprintf(sw->uplink, sizeof(sw->uplink), "%s", str);
	if (sw->type == SWITCH_EXTERNAL && !sw->uplink[0]) {
		log_warn("switch %s: external without an uplink; private", name);
		sw->type = SWITCH_PRIVATE;
	}
	str = json_string_value(json_object_get(doc, "error"));
	if (str)
		snprintf(sw->error, sizeof(sw->error), "%s", str);
	json_decref(doc);
	sw->dirfd = open(sw->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ret = sw->dirfd < 0 ? -errno : 0;
	if (!ret)
		ret = svc_list_insert((void ***)&s->switches, &s->nswitches, &s->switches_cap, sw);
	if (ret)
		switch_put(sw);
	return ret;
}

int switch_load_all(struct service *s)
{
	return svc_load_dir(s, "switches", switch_load);
}

/* ---- the worker ----------------------------------------------------------- */

static int pidfd_of(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

int switch_call(struct service *s, struct switch_obj *sw, json_t *req,
		const int *fds, size_t nfds, json_t **reply)
{
	int ret;

	if (reply)
		*reply = NULL;
	if (sw->pidfd < 0)
		return -ENOTCONN;
	sw->refs++;
	svc_unlock(s);
	ret = worker_request(sw->dirfd, req, fds, nfds, reply, CALL_TIMEOUT_MS);
	svc_lock(s);
	switch_put(sw);
	return ret;
}

/* Port @port ("VM/NIC", "host", "uplink") in a status reply, or NULL. */
static json_t *status_port(json_t *status, const char *port)
{
	json_t *p;
	size_t i;

	json_array_foreach(json_object_get(status, "ports"), i, p) {
		const char *name = json_string_value(json_object_get(p, "name"));

		if (name && strcmp(name, port) == 0)
			return p;
	}
	return NULL;
}

json_t *switch_status(struct service *s, struct switch_obj *sw)
{
	json_t *req = json_pack("{s:s}", "cmd", "status"), *reply = NULL;

	sw->refs++;
	if (switch_call(s, sw, req, NULL, 0, &reply)) {
		json_decref(reply);
		reply = NULL;
	}
	json_decref(req);
	switch_put(sw);
	return reply;
}

bool switch_has_port(struct service *s, struct switch_obj *sw, const char *port)
{
	json_t *st = switch_status(s, sw);
	bool has = status_port(st, port) != NULL;

	json_decref(st);
	return has;
}

void switch_port_counters(struct service *s, struct switch_obj *sw, const char *port,
			  const char *prefix, FILE *out)
{
	json_t *st = switch_status(s, sw), *p = status_port(st, port), *v;
	const char *key;

	if (p) {
		fprintf(out, "%sin_packets: %lld\n%sin_bytes: %lld\n", prefix,
			svc_json_int(p, "in_packets"), prefix, svc_json_int(p, "in_bytes"));
		fprintf(out, "%sout_packets: %lld\n%sout_bytes: %lld\n", prefix,
			svc_json_int(p, "out_packets"), prefix, svc_json_int(p, "out_bytes"));
		json_object_foreach(json_object_get(p, "drops"), key, v)
			fprintf(out, "drops_%s: %lld\n", key, (long long)json_integer_value(v));
	}
	json_decref(st);
}

/* The worker answers on its socket: watch it.  Lock held. */
static int switch_watch(struct service *s, struct switch_obj *sw, pid_t pid)
{
	/* A new id for each watch: events of an earlier one find nothing. */
	static uint64_t last_id;
	int fd = pidfd_of(pid), ret;

	if (fd < 0)
		return -errno;
	sw->watch_id = ++last_id;
	ret = supervisor_watch_switch(s, fd, sw->watch_id);
	if (ret) {
		close(fd);
		return ret;
	}
	sw->pidfd = fd;
	sw->pid = pid;
	sw->refs++;		/* the supervisor's */
	return 0;
}

static void switch_unwatch(struct service *s, struct switch_obj *sw)
{
	if (sw->pidfd < 0)
		return;
	supervisor_unwatch(s, sw->pidfd);
	close(sw->pidfd);
	sw->pidfd = -1;
	sw->pid = 0;
	switch_put(sw);
}

static long elapsed_ms(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

/* Ask the worker for its status until it answers (lock dropped). */
static int wait_worker(struct service *s, struct switch_obj *sw, int timeout_ms,
		       pid_t *pid)
{
	json_t *req = json_pack("{s:s}", "cmd", "status"), *reply = NULL;
	struct timespec start;
	char kind[16];
	int ret = -ETIMEDOUT, code, step = 2;
	long left;

	clock_gettime(CLOCK_MONOTONIC, &start);
	sw->refs++;
	svc_unlock(s);
	/* Each attempt gets what is left, so a worker that never answers costs timeout_ms. */
	while ((left = timeout_ms - elapsed_ms(&start)) > 0) {
		ret = worker_request(sw->dirfd, req, NULL, 0, &reply, (int)left);
		if (ret == 0) {
			*pid = (pid_t)json_integer_value(json_object_get(reply, "pid"));
			break;
		}
		json_decref(reply);
		reply = NULL;
		if (ret == -EPROTO || worker_read_exit(sw->dirfd, kind, sizeof(kind), &code)) {
			ret = -ECONNRESET;
			break;
		}
		ret = -ETIMEDOUT;
		usleep((useconds_t)step * 1000);
		if (step < 50)
			step *= 2;
	}
	json_decref(reply);
	json_decref(req);
	svc_lock(s);
	switch_put(sw);
	return ret;
}

/* Start the worker and wait until it answers; lock held (dropped inside). */
static int switch_spawn(struct service *s, struct switch_obj *sw, char *why, size_t len)
{
	char host_if[IFNAME_MAX + 1], type[16];
	char *argv[16];
	int n = 0, ret;
	pid_t pid = 0;

	switch_host_if(sw, host_if, sizeof(host_if));
	snprintf(type, sizeof(type), "%s", type_names[sw->type]);
	argv[n++] = "switch";
	argv[n++] = "run";
	argv[n++] = "--name";
	argv[n++] = sw->name;
	argv[n++] = "--control";
	argv[n++] = "ctl.sock";
	argv[n++] = "--type";
	argv[n++] = type;
	if (host_if[0]) {
		argv[n++] = "--host-if";
		argv[n++] = host_if;
	}
	if (sw->type == SWITCH_EXTERNAL) {
		argv[n++] = "--uplink";
		argv[n++] = sw->uplink;
	}
	argv[n] = NULL;
	ret = worker_spawn(s, sw->dirfd, argv);
	if (ret) {
		snprintf(why, len, "cannot start the worker: %s", strerror(-ret));
		return ret;
	}
	clock_gettime(CLOCK_MONOTONIC, &sw->started);
	sw->busy = true;
	ret = wait_worker(s, sw, START_TIMEOUT_MS, &pid);
	sw->busy = false;
	if (!ret && pid > 0)
		ret = switch_watch(s, sw, pid);
	if (ret) {
		char reason[ERROR_MAX / 4];

		pid = worker_read_pid(sw->dirfd);
		if (pid > 0)
			kill(pid, SIGKILL);
		svc_tail_text(sw->dirfd, "worker.err", reason, sizeof(reason));
		snprintf(why, len, "the worker did not come up: %s",
			 reason[0] ? reason : strerror(-ret));
		return -EIO;
	}
	log_info("switch %s: worker started (pid %d)", sw->name, (int)sw->pid);
	return 0;
}

/* Is @pid an `fsvisor switch run` (and not a process that took its pid)? */
static bool is_switch_worker(pid_t pid)
{
	char path[64], args[512];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	n = svc_read_text(AT_FDCWD, path, args, sizeof(args));
	if (n < 0)
		return false;
	/* "fsvisor\0switch\0run\0..." */
	for (ssize_t i = 0; i < n; i++)
		if (args[i] == '\0')
			args[i] = ' ';
	return strstr(args, " switch run ") != NULL;
}

/* Find a worker left by an earlier service, or start one; at start-up. */
static void switch_start(struct service *s, struct switch_obj *sw)
{
	pid_t pid = worker_read_pid(sw->dirfd), answered = 0;
	char why[ERROR_MAX / 2], kind[16];
	int code;

	if (pid > 0 && kill(pid, 0) == 0 &&
	    !worker_read_exit(sw->dirfd, kind, sizeof(kind), &code) &&
	    wait_worker(s, sw, 2000, &answered) == 0 && answered == pid &&
	    switch_watch(s, sw, pid) == 0) {
		log_info("switch %s: adopted the running worker (pid %d)", sw->name, (int)pid);
		return;
	}
	/* One that is there but does not answer would keep the TAP: it goes. */
	if (pid > 0 && kill(pid, 0) == 0 && is_switch_worker(pid) &&
	    !worker_read_exit(sw->dirfd, kind, sizeof(kind), &code)) {
		log_warn("switch %s: the worker (pid %d) does not answer: killing it", sw->name,
			 (int)pid);
		kill(pid, SIGKILL);
		worker_wait_exit(sw->dirfd, 0, EXIT_RECORD_WAIT_MS, kind, sizeof(kind), &code);
	}
	if (switch_spawn(s, sw, why, sizeof(why)))
		switch_fail(s, sw, -EIO, "the switch is not running: %s", why);
}

void switches_start(struct service *s)
{
	for (size_t i = 0; i < s->nswitches; i++)
		switch_start(s, s->switches[i]);
}

static void switch_describe_exit(struct switch_obj *sw)
{
	char kind[16] = "";
	int code = 0;

	worker_wait_exit(sw->dirfd, 0, EXIT_RECORD_WAIT_MS, kind, sizeof(kind), &code);
	if (strcmp(kind, "signal") == 0)
		snprintf(sw->ended, sizeof(sw->ended), "was killed by signal %d (%s)", code,
			 strsignal(code));
	else if (kind[0])
		snprintf(sw->ended, sizeof(sw->ended), "exited with status %d", code);
	else
		snprintf(sw->ended, sizeof(sw->ended), "went away without an exit status");
}

/* The ports went with the worker: the NICs on it are unplugged until reconnected. */
static void switch_ports_lost(struct service *s, struct switch_obj *sw)
{
	for (size_t i = 0; i < s->nvms; i++)
		for (size_t k = 0; k < s->vms[i]->nnics; k++)
			if (strcmp(s->vms[i]->nics[k]->port_on, sw->name) == 0)
				s->vms[i]->nics[k]->port_on[0] = '\0';
	svc_notify(s, SVC_CHANGED, "switches/%s/ports", sw->name);
}

void switch_worker_gone(struct service *s, struct switch_obj *sw)
{
	struct timespec now;
	char why[ERROR_MAX / 2];

	switch_unwatch(s, sw);
	switch_ports_lost(s, sw);
	if (sw->deleted || sw->busy)
		return;
	sw->refs++;
	svc_unlock(s);
	switch_describe_exit(sw);
	svc_lock(s);
	log_error("switch %s: the worker %s", sw->name, sw->ended);
	svc_event(s, "switch", sw->name, "worker ended");
	clock_gettime(CLOCK_MONOTONIC, &now);
	/* Deleted, or started again (a write of type) while the lock was dropped. */
	if (sw->deleted || sw->busy || sw->pidfd >= 0) {
		switch_put(sw);
		return;
	}
	if (now.tv_sec - sw->started.tv_sec < RESTART_GAP_S) {
		switch_fail(s, sw, -EIO,
			    "crashed: the worker %s less than %d s after it started; not restarted (write type to try again)",
			    sw->ended, RESTART_GAP_S);
	} else if (switch_spawn(s, sw, why, sizeof(why))) {
		switch_fail(s, sw, -EIO, "crashed: the worker %s, and restarting it failed: %s",
			    sw->ended, why);
	} else {
		switch_fail(s, sw, 0, "the worker %s; restarted", sw->ended);
		svc_event(s, "switch", sw->name, "worker restarted");
		switch_reconnect_nics(s, sw);
	}
	svc_notify(s, SVC_CHANGED, "switches/%s/stats", sw->name);
	switch_put(sw);
}

/* Stop the worker and wait for it to go; lock held (dropped inside). */
static void switch_stop_worker(struct service *s, struct switch_obj *sw)
{
	json_t *req = json_pack("{s:s}", "cmd", "stop");
	pid_t pid = sw->pid;
	char kind[16];
	int code;

	switch_unwatch(s, sw);
	if (pid <= 0) {
		json_decref(req);
		return;
	}
	sw->refs++;
	svc_unlock(s);
	worker_request(sw->dirfd, req, NULL, 0, NULL, CALL_TIMEOUT_MS);
	for (int i = 0; i < STOP_TIMEOUT_MS / 10 && kill(pid, 0) == 0; i++)
		usleep(10000);
	if (kill(pid, 0) == 0) {
		log_warn("switch %s: the worker did not stop: killing it", sw->name);
		kill(pid, SIGKILL);
	}
	/*
	 * The monitor records worker.exit just after it reaps the worker; a
	 * directory removed before that would be left with that one file.
	 */
	worker_wait_exit(sw->dirfd, 0, EXIT_RECORD_WAIT_MS, kind, sizeof(kind), &code);
	svc_lock(s);
	switch_put(sw);
	json_decref(req);
}

/* ---- mkdir, rmdir ------------------------------------------------------ */

int switch_define(struct service *s, const char *name)
{
	struct switch_obj *sw;
	char why[ERROR_MAX / 2], *json;
	int ret;

	if (switch_find(s, name))
		return -EEXIST;
	sw = switch_alloc(s, name);
	if (asprintf(&json, "%s/switch.json", sw->dir) < 0)
		abort();
	ret = access(json, F_OK) == 0 ? -EEXIST : 0;
	free(json);
	if (ret) {
		log_error("switch %s: %s holds a definition that could not be loaded; not replaced",
			  name, sw->dir);
		switch_put(sw);
		return ret;
	}
	svc_remove_dir(sw->dir);
	if (mkdir(sw->dir, 0700) < 0) {
		ret = -errno;
		log_error("switch %s: cannot create %s: %s", name, sw->dir, strerror(errno));
		switch_put(sw);
		return ret;
	}
	sw->dirfd = open(sw->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ret = sw->dirfd < 0 ? -errno : switch_save(sw);
	if (!ret)
		ret = svc_list_insert((void ***)&s->switches, &s->nswitches, &s->switches_cap, sw);
	if (ret) {
		svc_remove_dir(sw->dir);
		switch_put(sw);
		return ret;
	}
	sw->refs++;
	ret = switch_spawn(s, sw, why, sizeof(why));
	if (ret) {
		/* No half-made switches: the definition goes again. */
		log_error("switch %s: %s", name, why);
		svc_list_remove((void **)s->switches, &s->nswitches, name);
		sw->deleted = true;
		svc_remove_dir(sw->dir);
		switch_put(sw);
		switch_put(sw);
		return -EIO;
	}
	switch_put(sw);
	svc_event(s, "switch", name, "defined");
	return 0;
}

int switch_delete(struct service *s, struct switch_obj *sw)
{
	char list[512];
	size_t n = nics_on_switch(s, sw->name, list, sizeof(list));

	if (n)
		return switch_fail(s, sw, -EBUSY, "rmdir: %zu NIC%s use%s the switch: %s",
				   n, n == 1 ? "" : "s", n == 1 ? "s" : "", list);
	if (sw->busy)
		return switch_fail(s, sw, -EBUSY, "rmdir: the switch is being restarted");
	sw->deleted = true;
	sw->refs++;
	svc_list_remove((void **)s->switches, &s->nswitches, sw->name);
	switch_stop_worker(s, sw);
	svc_remove_dir(sw->dir);
	svc_event(s, "switch", sw->name, "deleted");
	switch_put(sw);		/* the list's */
	switch_put(sw);
	return 0;
}

/* ---- files -------------------------------------------------------------- */

/* Tell the worker the new type/uplink; the lock is dropped inside. */
static int switch_configure(struct service *s, struct switch_obj *sw, const char *file)
{
	char host_if[IFNAME_MAX + 1], why[ERROR_MAX / 2];
	json_t *req, *reply = NULL;
	int ret;

	if (sw->pidfd < 0) {
		/* Not running (it crashed): writing the type starts it again. */
		ret = switch_spawn(s, sw, why, sizeof(why));
		if (ret)
			return switch_fail(s, sw, -EIO, "%s: the switch is not running and did not start: %s",
					   file, why);
		switch_reconnect_nics(s, sw);
		return 0;
	}
	switch_host_if(sw, host_if, sizeof(host_if));
	req = json_pack("{s:s, s:s}", "cmd", "configure", "type", type_names[sw->type]);
	if (host_if[0])
		json_object_set_new(req, "host_if", json_string(host_if));
	if (sw->type == SWITCH_EXTERNAL)
		json_object_set_new(req, "uplink", json_string(sw->uplink));
	sw->refs++;
	ret = switch_call(s, sw, req, NULL, 0, &reply);
	json_decref(req);
	if (ret) {
		const char *e = json_string_value(json_object_get(reply, "error"));

		ret = switch_fail(s, sw, -EIO, "%s: the switch did not take it: %s", file,
				  e ? e : strerror(-ret));
	}
	json_decref(reply);
	switch_put(sw);
	return ret;
}

static struct switch_obj *host_if_owner(struct service *s, const char *name);

static int show_type(struct service *s, void *obj, FILE *out)
{
	(void)s;
	fprintf(out, "%s\n", type_names[((struct switch_obj *)obj)->type]);
	return 0;
}

static int store_type(struct service *s, void *obj, const char *value,
		      svc_interrupted_fn intr, void *ctx)
{
	struct switch_obj *sw = obj;
	enum switch_type t, old = sw->type;
	int ret;

	(void)intr;
	(void)ctx;
	if (parse_type(value, &t))
		return switch_fail(s, sw, -EINVAL, "type: '%s' is not one of private, internal, external",
				   value);
	if (sw->busy)
		return switch_fail(s, sw, -EBUSY, "type: the switch's worker is being started; try again");
	if (t == SWITCH_EXTERNAL && !sw->uplink[0])
		return switch_fail(s, sw, -EINVAL,
				   "type: an external switch needs its host NIC: write uplink first");
	if (t == old && sw->pidfd >= 0)
		return 0;
	if (t != SWITCH_PRIVATE) {
		char mine[IFNAME_MAX + 1];
		struct switch_obj *other;

		sw->type = t;
		switch_host_if(sw, mine, sizeof(mine));
		sw->type = old;
		other = host_if_owner(s, mine);
		if (other && other != sw)
			return switch_fail(s, sw, -EEXIST,
					   "type: switch %s has the host device %s already (name the switch differently)",
					   other->name, mine);
	}
	sw->type = t;
	ret = switch_save(sw);
	if (ret) {
		sw->type = old;
		return switch_fail(s, sw, -EIO, "type: cannot save the definition: %s",
				   strerror(-ret));
	}
	sw->refs++;
	ret = switch_configure(s, sw, "type");
	if (ret && !sw->deleted) {
		sw->type = old;
		switch_save(sw);
	}
	if (!ret)
		switch_changed(s, sw, "type", value);
	switch_put(sw);
	return ret;
}

static int show_uplink(struct service *s, void *obj, FILE *out)
{
	(void)s;
	fprintf(out, "%s\n", ((struct switch_obj *)obj)->uplink);
	return 0;
}

/* Is @name the host device of one of our switches? */
static struct switch_obj *host_if_owner(struct service *s, const char *name)
{
	char host_if[IFNAME_MAX + 1];

	for (size_t i = 0; i < s->nswitches; i++) {
		switch_host_if(s->switches[i], host_if, sizeof(host_if));
		if (host_if[0] && strcmp(host_if, name) == 0)
			return s->switches[i];
	}
	return NULL;
}

static int store_uplink(struct service *s, void *obj, const char *value,
			svc_interrupted_fn intr, void *ctx)
{
	struct switch_obj *sw = obj;
	char old[IFNAME_MAX + 1];
	int ret;

	(void)intr;
	if (!svc_caller_is_owner(s, ctx))
		return switch_fail(s, sw, -EPERM, "uplink: only the mount's owner may bind host NICs");
	if (strcmp(value, "none") == 0)
		value = "";
	if (sw->busy)
		return switch_fail(s, sw, -EBUSY, "uplink: the switch's worker is being started; try again");
	if (!value[0] && sw->type == SWITCH_EXTERNAL)
		return switch_fail(s, sw, -EBUSY,
				   "uplink: an external switch needs one; make it internal or private first");
	if (value[0]) {
		if (strlen(value) > IFNAME_MAX || strchr(value, '/') || strchr(value, ':'))
			return switch_fail(s, sw, -EINVAL, "uplink: '%s' is not an interface name",
					   value);
		if (!if_nametoindex(value))
			return switch_fail(s, sw, -ENOENT, "uplink: the host has no interface '%s'",
					   value);
		if (strcmp(value, "lo") == 0)
			return switch_fail(s, sw, -EINVAL, "uplink: the loopback device carries no frames");
		if (host_if_owner(s, value))
			return switch_fail(s, sw, -EINVAL,
					   "uplink: %s is the host device of switch %s", value,
					   host_if_owner(s, value)->name);
		for (size_t i = 0; i < s->nswitches; i++)
			if (s->switches[i] != sw && strcmp(s->switches[i]->uplink, value) == 0)
				return switch_fail(s, sw, -EBUSY, "uplink: switch %s uses %s already",
						   s->switches[i]->name, value);
	}
	if (strcmp(value, sw->uplink) == 0)
		return 0;
	snprintf(old, sizeof(old), "%s", sw->uplink);
	snprintf(sw->uplink, sizeof(sw->uplink), "%s", value);
	ret = switch_save(sw);
	if (ret) {
		snprintf(sw->uplink, sizeof(sw->uplink), "%s", old);
		return switch_fail(s, sw, -EIO, "uplink: cannot save the definition: %s",
				   strerror(-ret));
	}
	if (sw->type == SWITCH_EXTERNAL) {
		sw->refs++;
		ret = switch_configure(s, sw, "uplink");
		if (ret && !sw->deleted) {
			snprintf(sw->uplink, sizeof(sw->uplink), "%s", old);
			switch_save(sw);
		}
		switch_put(sw);
		if (ret)
			return ret;
	}
	switch_changed(s, sw, "uplink", value[0] ? value : "none");
	return 0;
}

static int show_host_if(struct service *s, void *obj, FILE *out)
{
	char host_if[IFNAME_MAX + 1];

	(void)s;
	switch_host_if(obj, host_if, sizeof(host_if));
	fprintf(out, "%s\n", host_if);
	return 0;
}

static int show_switch_error(struct service *s, void *obj, FILE *out)
{
	struct switch_obj *sw = obj;

	(void)s;
	if (sw->error[0])
		fprintf(out, "%s\n", sw->error);
	return 0;
}


static int show_macs(struct service *s, void *obj, FILE *out)
{
	struct switch_obj *sw = obj;
	json_t *req = json_pack("{s:s}", "cmd", "macs"), *reply = NULL, *m;
	size_t i;

	sw->refs++;
	if (switch_call(s, sw, req, NULL, 0, &reply) == 0) {
		json_array_foreach(json_object_get(reply, "macs"), i, m) {
			char port[2 * NAME_MAX_LEN + 2];

			/* The worker's "VM/NIC" is ports/VM:NIC here. */
			snprintf(port, sizeof(port), "%s",
				 json_string_value(json_object_get(m, "port")) ?: "?");
			if (strchr(port, '/'))
				*strchr(port, '/') = ':';
			fprintf(out, "%lld %s %s %lld\n", svc_json_int(m, "vlan"),
				json_string_value(json_object_get(m, "mac")) ?: "?", port,
				svc_json_int(m, "age_ms") / 1000);
		}
	}
	json_decref(req);
	json_decref(reply);
	switch_put(sw);
	return 0;
}

static int show_switch_stats(struct service *s, void *obj, FILE *out)
{
	struct switch_obj *sw = obj;
	long long in_p = 0, in_b = 0, out_p = 0, out_b = 0;
	json_t *st, *p, *v, *drops = json_object();
	const char *key;
	size_t i;

	sw->refs++;
	st = switch_status(s, sw);
	fprintf(out, "type: %s\n", type_names[sw->type]);
	if (st)
		fprintf(out, "worker: running (pid %lld)\nuptime: %lld\n", svc_json_int(st, "pid"),
			svc_json_int(st, "uptime_ms") / 1000);
	else
		fprintf(out, "worker: not running%s%s\n", sw->ended[0] ? ": " : "", sw->ended);
	fprintf(out, "ports: %zu\n", json_array_size(json_object_get(st, "ports")));
	fprintf(out, "macs: %lld\n", svc_json_int(st, "mac_count"));
	json_array_foreach(json_object_get(st, "ports"), i, p) {
		in_p += svc_json_int(p, "in_packets");
		in_b += svc_json_int(p, "in_bytes");
		out_p += svc_json_int(p, "out_packets");
		out_b += svc_json_int(p, "out_bytes");
		json_object_foreach(json_object_get(p, "drops"), key, v)
			json_object_set_new(drops, key, json_integer(
				json_integer_value(json_object_get(drops, key)) +
				json_integer_value(v)));
	}
	fprintf(out, "in_packets: %lld\nin_bytes: %lld\nout_packets: %lld\nout_bytes: %lld\n",
		in_p, in_b, out_p, out_b);
	json_object_foreach(drops, key, v)
		fprintf(out, "drops_%s: %lld\n", key, (long long)json_integer_value(v));
	json_decref(drops);
	json_decref(st);
	switch_put(sw);
	return 0;
}


/* ---- ports ------------------------------------------------------------- */

int switch_ports(struct service *s, struct switch_obj *sw,
		 int (*fn)(struct port_view *p, void *arg), void *arg)
{
	struct port_view p = { .sw = sw };

	if (sw->type != SWITCH_PRIVATE) {
		snprintf(p.name, sizeof(p.name), "host");
		if (fn(&p, arg))
			return 1;
	}
	if (sw->type == SWITCH_EXTERNAL) {
		snprintf(p.name, sizeof(p.name), "uplink");
		if (fn(&p, arg))
			return 1;
	}
	for (size_t i = 0; i < s->nvms; i++)
		for (size_t k = 0; k < s->vms[i]->nnics; k++) {
			struct nic_obj *nic = s->vms[i]->nics[k];

			if (strcmp(nic->port_on, sw->name) != 0)
				continue;
			p.nic = nic;
			p.vm = nic->vm;
			snprintf(p.name, sizeof(p.name), "%s:%s", nic->vm->name, nic->name);
			if (fn(&p, arg))
				return 1;
		}
	return 0;
}

struct port_lookup {
	const char *name;
	struct port_view *out;
	bool found;
};

static int port_match(struct port_view *p, void *arg)
{
	struct port_lookup *l = arg;

	if (strcmp(p->name, l->name) != 0)
		return 0;
	*l->out = *p;
	l->found = true;
	return 1;
}

int switch_port_find(struct service *s, struct switch_obj *sw, const char *name,
		     struct port_view *p)
{
	struct port_lookup l = { .name = name, .out = p };

	switch_ports(s, sw, port_match, &l);
	return l.found ? 0 : -ENOENT;
}

static int show_port_vm(struct service *s, void *obj, FILE *out)
{
	struct port_view *p = obj;

	(void)s;
	fprintf(out, "%s\n", p->nic ? p->nic->vm->name : "");
	return 0;
}

static int show_port_nic(struct service *s, void *obj, FILE *out)
{
	struct port_view *p = obj;

	(void)s;
	fprintf(out, "%s\n", p->nic ? p->nic->name : "");
	return 0;
}

static int show_port_mac(struct service *s, void *obj, FILE *out)
{
	struct port_view *p = obj;
	char mac[18] = "";

	(void)s;
	if (p->nic)
		nic_mac_format(p->nic->mac, mac, sizeof(mac));
	fprintf(out, "%s\n", mac);
	return 0;
}

static int show_port_vlan(struct service *s, void *obj, FILE *out)
{
	struct port_view *p = obj;

	char vlan[VALUE_MAX + 32] = "untagged";

	(void)s;
	if (p->nic)
		nic_vlan_format(p->nic, vlan, sizeof(vlan));
	fprintf(out, "%s\n", vlan);
	return 0;
}

static int show_port_stats(struct service *s, void *obj, FILE *out)
{
	struct port_view *p = obj;
	struct switch_obj *sw = p->sw;
	char name[sizeof(p->name)];

	snprintf(name, sizeof(name), "%s", p->name);
	if (strchr(name, ':'))
		*strchr(name, ':') = '/';	/* the worker's name for it */
	sw->refs++;
	switch_port_counters(s, sw, name, "", out);
	switch_put(sw);
	return 0;
}

/* ---- the kinds of directory -------------------------------------------- */

/* A port's mac and vlan are its NIC's: views of another object, so volatile. */
static const struct attr port_attrs[] = {
	{ "vm", A_READ, show_port_vm },
	{ "nic", A_READ, show_port_nic },
	{ "mac", A_READ | A_VOLATILE, show_port_mac },
	{ "vlan", A_READ | A_VOLATILE, show_port_vlan },
	{ "stats", A_READ | A_VOLATILE, show_port_stats },
};

/* A port's NIC is kept in use (and its VM alive) while a file of it is used. */
static void port_hold(void *obj)
{
	struct port_view *p = obj;

	if (p->nic) {
		p->vm->refs++;
		p->nic->users++;
	}
}

static void port_release(void *obj)
{
	struct port_view *p = obj;

	if (p->nic) {
		p->nic->users--;
		vm_put(p->vm);
	}
}

static const struct tree_kind port_kind = {
	.name = "port",
	.attrs = port_attrs,
	.nattrs = ARRAY_SIZE(port_attrs),
	.hold = port_hold,
	.put = port_release,
};

static void *ports_lookup(struct service *s, void *parent, const char *name, void *local)
{
	_Static_assert(sizeof(struct port_view) <= LEVEL_LOCAL, "a port view fits a level");
	return switch_port_find(s, parent, name, local) ? NULL : local;
}

struct ports_each {
	tree_each_fn fn;
	void *ctx;
};

static int ports_each(struct port_view *p, void *arg)
{
	struct ports_each *e = arg;

	return e->fn(e->ctx, p->name, p);
}

static int ports_list(struct service *s, void *parent, tree_each_fn fn, void *ctx)
{
	struct ports_each e = { fn, ctx };

	return switch_ports(s, parent, ports_each, &e);
}

static int count_one(struct port_view *p, void *arg)
{
	(void)p;
	(*(size_t *)arg)++;
	return 0;
}

static size_t ports_count(struct service *s, void *parent)
{
	size_t n = 0;

	switch_ports(s, parent, count_one, &n);
	return n;
}

static const struct tree_child ports_children[] = {
	{ TREE_SET, &port_kind, .lookup = ports_lookup, .list = ports_list,
	  .count = ports_count },
};

static const struct tree_kind ports_kind = {
	.name = "ports",
	.children = ports_children,
	.nchildren = ARRAY_SIZE(ports_children),
};

static const struct attr switch_attrs[] = {
	{ "type", A_READ | A_WRITE, show_type, store_type },
	{ "uplink", A_READ | A_WRITE, show_uplink, store_uplink },
	{ "host_if", A_READ, show_host_if },
	{ "error", A_READ, show_switch_error },
	{ "macs", A_READ | A_VOLATILE, show_macs },
	{ "stats", A_READ | A_VOLATILE, show_switch_stats },
};

static const struct tree_child switch_children[] = {
	{ TREE_DIR, &ports_kind, "ports" },
};

static void switch_hold(void *obj)
{
	((struct switch_obj *)obj)->refs++;
}

static void switch_release(void *obj)
{
	switch_put(obj);
}

static int switch_rmdir(struct service *s, void *obj)
{
	return switch_delete(s, obj);
}

static int switch_refused(struct service *s, void *obj, int err, const char *msg)
{
	return switch_fail(s, (struct switch_obj *)obj, err, "%s", msg);
}

static struct timespec switch_mtime(void *obj)
{
	return ((struct switch_obj *)obj)->mtime;
}

static const struct tree_kind switch_kind = {
	.name = "switch",
	.attrs = switch_attrs,
	.nattrs = ARRAY_SIZE(switch_attrs),
	.children = switch_children,
	.nchildren = ARRAY_SIZE(switch_children),
	.hold = switch_hold,
	.put = switch_release,
	.rmdir = switch_rmdir,
	.fail = switch_refused,
	.mtime = switch_mtime,
};

static void *switches_lookup(struct service *s, void *parent, const char *name, void *local)
{
	(void)parent;
	(void)local;
	return switch_find(s, name);
}

static int switches_list(struct service *s, void *parent, tree_each_fn fn, void *ctx)
{
	(void)parent;
	for (size_t i = 0; i < s->nswitches; i++)
		if (fn(ctx, s->switches[i]->name, s->switches[i]))
			return 1;
	return 0;
}

static size_t switches_count(struct service *s, void *parent)
{
	(void)parent;
	return s->nswitches;
}

static int switches_mkdir(struct service *s, void *parent, const char *name)
{
	(void)parent;
	return switch_define(s, name);
}

static const struct tree_child switches_children[] = {
	{ TREE_SET, &switch_kind, .lookup = switches_lookup, .list = switches_list,
	  .count = switches_count, .mkdir = switches_mkdir },
};

const struct tree_kind switches_kind = {
	.name = "switches",
	.children = switches_children,
	.nchildren = ARRAY_SIZE(switches_children),
};
