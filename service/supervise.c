// SPDX-License-Identifier: MIT
/*
 * Supervision: starting VM workers, talking to them, noticing when they
 * end, and finding them again after the service restarts.
 *
 * A VM's run lives in its directory (<state>/vms/NAME/):
 *   worker.json  the configuration the worker was started with
 *   ctl.sock     the worker's control socket
 *   console      the console ring the worker writes
 *   worker.err   the worker's stderr: why it failed, if it did
 *   worker.pid   written by the monitor when the worker starts
 *   worker.exit  written by the monitor when the worker ends
 * The monitor (monitor.c) is a small process in the worker's own session
 * that waits for the worker and records how it ended, so the outcome is
 * known even if the service was down at the time.
 *
 * The service keeps one connection per running worker subscribed to its
 * state events; the supervisor thread watches them.  Commands go over a
 * fresh connection each, so a slow answer never holds up the events.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "service/integration.h"
#include "service/internal.h"
#include "vmm/vmm.h"

#define START_TIMEOUT_MS	30000
#define STOP_TIMEOUT_MS		10000
#define SHUTDOWN_TIMEOUT_MS	60000
#define COMMAND_TIMEOUT_MS	5000
#define EXIT_FILE_WAIT_MS	3000
/* A worker found saving at service start: a save is bounded by this. */
#define SAVE_WAIT_MS		(10 * 60 * 1000)

/* ---- talking to a worker ------------------------------------------------ */

static void set_timeout(int fd, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/*
 * Connect to the worker's socket in directory @dirfd.  Through the
 * directory descriptor, so a long state directory path does not
 * overflow sun_path.
 */
static int connect_dir(int dirfd, int timeout_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/ctl.sock", dirfd);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	set_timeout(fd, timeout_ms);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

static int connect_worker(struct vm_obj *vm, int timeout_ms)
{
	return connect_dir(vm->dirfd, timeout_ms);
}

/*
 * Send @req (with @fds) and wait for its reply, skipping event messages.
 * -EPROTO when the worker refused; the reply is kept for its reason.
 */
static int call_fds(int fd, const json_t *req, const int *fds, size_t nfds,
		    json_t **reply)
{
	int ret = msg_send(fd, req, fds, nfds);

	*reply = NULL;
	while (!ret) {
		ret = msg_recv(fd, reply, NULL, NULL, 0);
		if (ret)
			break;
		if (!json_object_get(*reply, "event"))
			return json_is_true(json_object_get(*reply, "ok")) ? 0 : -EPROTO;
		json_decref(*reply);
	}
	*reply = NULL;
	return ret;
}

static int call(int fd, const json_t *req, json_t **reply)
{
	int ret = call_fds(fd, req, NULL, 0, reply);

	if (ret == -EPROTO) {
		json_decref(*reply);
		*reply = NULL;
	}
	return ret;
}

int worker_request(int dirfd, json_t *req, const int *fds, size_t nfds,
		   json_t **reply, int timeout_ms)
{
	json_t *r = NULL;
	int fd = connect_dir(dirfd, timeout_ms), ret;

	if (reply)
		*reply = NULL;
	if (fd < 0)
		return fd;
	ret = call_fds(fd, req, fds, nfds, &r);
	close(fd);
	if (reply)
		*reply = r;
	else
		json_decref(r);
	return ret;
}

/* One command on its own connection; no locks held. */
static int worker_command(struct vm_obj *vm, const char *cmd, json_t *extra,
			  json_t **reply_out)
{
	json_t *req = json_pack("{s:s}", "cmd", cmd), *reply = NULL;
	int fd = connect_worker(vm, COMMAND_TIMEOUT_MS), ret;

	if (extra)
		json_object_update(req, extra);
	if (fd < 0) {
		json_decref(req);
		return fd;
	}
	ret = call(fd, req, &reply);
	close(fd);
	json_decref(req);
	if (reply_out)
		*reply_out = reply;
	else
		json_decref(reply);
	return ret;
}

json_t *vm_worker_status(struct service *s, struct vm_obj *vm)
{
	json_t *reply = NULL;

	vm->refs++;
	svc_unlock(s);
	if (worker_command(vm, "status", NULL, &reply)) {
		json_decref(reply);
		reply = NULL;
	}
	svc_lock(s);
	vm_put(vm);
	return reply;
}

int vm_console_input(struct service *s, struct vm_obj *vm, const void *buf,
		     size_t len)
{
	char *b64;
	json_t *extra;
	int ret;

	if (vm->state != VMS_RUNNING && vm->state != VMS_PAUSED)
		return vm_fail(s, vm, -EBUSY, "console: the VM is %s; input goes to a running guest",
			       vm_state_name(vm->state));
	b64 = base64_encode(buf, len);
	if (!b64)
		return -ENOMEM;
	extra = json_pack("{s:s}", "data", b64);
	free(b64);
	vm->refs++;
	svc_unlock(s);
	ret = worker_command(vm, "console-input", extra, NULL);
	svc_lock(s);
	json_decref(extra);
	if (ret)
		ret = vm_fail(s, vm, -EIO, "console: the worker did not take the input: %s",
			      strerror(-ret));
	vm_put(vm);
	return ret;
}

/* ---- state ----------------------------------------------------------- */

void vm_set_state(struct service *s, struct vm_obj *vm, enum vm_state st)
{
	enum vm_state old = vm->state;

	if (old == st)
		return;
	vm->state = st;
	agent_vm_state(s, vm, old);
	if (st == VMS_OFF || st == VMS_CRASHED)
		vm->run_started = 0;
	svc_touch(&vm->mtime);
	/* What outlives the service is kept with the definition (vm.c). */
	if (st == VMS_OFF || st == VMS_CRASHED || st == VMS_RUNNING || st == VMS_SAVING ||
	    st == VMS_SAVED)
		vm_save(s, vm);
	/* The whole directory: its files' times changed with it (tree.h). */
	svc_notify(s, SVC_CHANGED, "vms/%s", vm->name);
	svc_event(s, "vm", vm->name, "state %s", vm_state_name(st));
	pthread_cond_broadcast(&vm->changed);
}

/* Wait (the lock held) until @pred holds or @ms pass; false on timeout. */
static bool wait_state(struct service *s, struct vm_obj *vm, bool (*pred)(struct vm_obj *),
		       int ms, svc_interrupted_fn intr, void *ctx, bool *interrupted)
{
	struct timespec deadline, now;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += ms / 1000;
	deadline.tv_nsec += (ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	while (!pred(vm)) {
		struct timespec slice;

		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > deadline.tv_sec ||
		    (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec))
			return false;
		if (intr && intr(ctx)) {
			*interrupted = true;
			return false;
		}
		/* Wake up now and then to look for an interrupt. */
		slice = now;
		slice.tv_nsec += 100 * 1000000L;
		if (slice.tv_nsec >= 1000000000L) {
			slice.tv_sec++;
			slice.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&vm->changed, &s->lock, &slice);
	}
	return true;
}

static bool is_ended(struct vm_obj *vm)
{
	return !vm_is_active(vm);
}

bool vm_wait_ended(struct service *s, struct vm_obj *vm, int ms)
{
	bool intr = false;

	return wait_state(s, vm, is_ended, ms, NULL, NULL, &intr);
}

/* ---- how a run ended ---------------------------------------------------- */

/* Read worker.exit: "exit N" or "signal N". */
bool worker_read_exit(int dirfd, char *kind, size_t klen, int *code)
{
	char buf[64];

	if (svc_read_text(dirfd, "worker.exit", buf, sizeof(buf)) < 0 ||
	    sscanf(buf, "%15s %d", kind, code) != 2)
		return false;
	kind[klen - 1] = '\0';
	return true;
}

static bool read_exit(struct vm_obj *vm, char *kind, size_t klen, int *code)
{
	return worker_read_exit(vm->dirfd, kind, klen, code);
}

/*
 * The monitor writes worker.exit a moment after it reaps the worker: wait
 * up to @ms for it, or until @monitor (if known, else 0) is gone.
 */
bool worker_wait_exit(int dirfd, pid_t monitor, int ms, char *kind, size_t klen,
		      int *code)
{
	for (int waited = 0; ; waited += 5) {
		bool monitor_gone = monitor > 0 && kill(monitor, 0) < 0 && errno == ESRCH;

		if (worker_read_exit(dirfd, kind, klen, code))
			return true;
		/* Nobody left to write it. */
		if (waited >= ms || monitor_gone)
			return worker_read_exit(dirfd, kind, klen, code);
		usleep(5000);
	}
}

static bool wait_exit_file(struct vm_obj *vm, int ms, char *kind, size_t klen,
			   int *code)
{
	return worker_wait_exit(vm->dirfd, vm->monitor_pid, ms, kind, klen, code);
}

/* The parent of @pid (its monitor), from /proc. */
static pid_t parent_of(pid_t pid)
{
	char buf[512];
	const char *fields = svc_proc_stat(pid, buf, sizeof(buf));
	int ppid = 0;

	if (!fields || sscanf(fields, "%*c %d", &ppid) != 1)
		return 0;
	return ppid > 1 ? (pid_t)ppid : 0;
}

/*
 * Decide off or crashed from the exit record; under the lock.  The exit
 * file stays until the next start, so a restarted service that finds it
 * comes to the same verdict.
 */
static void apply_exit(struct service *s, struct vm_obj *vm, bool have_exit,
		       const char *kind, int code)
{
	char reason[sizeof(vm->ended) - 64];
	bool crashed = true, saving = vm->state == VMS_SAVING, saved = false;

	svc_tail_text(vm->dirfd, "worker.err", reason, sizeof(reason));
	if (!have_exit) {
		snprintf(vm->ended, sizeof(vm->ended),
			 "the worker went away without an exit status");
	} else if (strcmp(kind, "signal") == 0) {
		snprintf(vm->ended, sizeof(vm->ended), "the worker was killed by signal %d (%s)",
			 code, strsignal(code));
		crashed = !vm->end_requested;
	} else if (code == VM_EXIT_POWEROFF) {
		snprintf(vm->ended, sizeof(vm->ended), "%s",
			 !vm->end_requested ? "the guest powered off" :
			 strcmp(vm->end_requested, "shutdown") == 0 ?
			 "shut down (the guest powered off)" : "stopped (powered off)");
		crashed = false;
	} else if (code == VM_EXIT_KILLED) {
		snprintf(vm->ended, sizeof(vm->ended), "%s",
			 vm->end_requested ? "killed" : "the worker was stopped by a signal");
		crashed = !vm->end_requested;
	} else if (code == VM_EXIT_SAVED) {
		snprintf(vm->ended, sizeof(vm->ended), "the worker ended");
		saving = true;
	} else if (code == VM_EXIT_FAILED) {
		snprintf(vm->ended, sizeof(vm->ended), "the VM failed: %s",
			 reason[0] ? reason : "no reason given");
	} else {
		snprintf(vm->ended, sizeof(vm->ended), "the worker exited with status %d%s%s",
			 code, reason[0] ? ": " : "", reason);
	}
	/* Ended while saving, or saved: which it is, the state itself says. */
	if (saving) {
		saved = vm_saved_settle(vm, vm->ended, sizeof(vm->ended));
		crashed = !saved;
	}
	if (crashed) {
		snprintf(vm->error, sizeof(vm->error), "crashed: %s", vm->ended);
		svc_notify(s, SVC_CHANGED, "vms/%s/error", vm->name);
		log_error("vm %s: %s", vm->name, vm->ended);
	} else {
		log_info("vm %s: %s", vm->name, vm->ended);
	}
	vm->pid = 0;
	vm->monitor_pid = 0;
	vm->end_requested = NULL;
	/* The switches drop the ports when the worker's ends close. */
	for (size_t i = 0; i < vm->nnics; i++)
		vm->nics[i]->port_on[0] = '\0';
	vm_set_state(s, vm, saved ? VMS_SAVED : crashed ? VMS_CRASHED : VMS_OFF);
	/* The verdict is saved with the definition now; the record is done. */
	unlinkat(vm->dirfd, "worker.exit", 0);
	unlinkat(vm->dirfd, "worker.pid", 0);
}

int supervisor_watch(struct service *s, int fd, enum watch_kind *kind)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = kind };

	return epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* Switch ids carry the top bit; a VM's pointer (user space) never does. */
#define WATCH_SWITCH_BIT (1ULL << 63)

int supervisor_watch_switch(struct service *s, int fd, uint64_t id)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = WATCH_SWITCH_BIT | id };

	return epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static struct switch_obj *switch_by_watch_id(struct service *s, uint64_t id)
{
	for (size_t i = 0; i < s->nswitches; i++)
		if (s->switches[i]->watch_id == id)
			return s->switches[i];
	return NULL;
}

void supervisor_unwatch(struct service *s, int fd)
{
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
}

static void unwatch(struct service *s, struct vm_obj *vm)
{
	if (vm->watch_fd < 0)
		return;
	supervisor_unwatch(s, vm->watch_fd);
	close(vm->watch_fd);
	vm->watch_fd = -1;
	vm_put(vm);		/* the supervisor's reference */
}

static int watch(struct service *s, struct vm_obj *vm, int fd)
{
	int ret;

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	ret = supervisor_watch(s, fd, &vm->watch_kind);
	if (ret)
		return ret;
	vm->watch_fd = fd;
	vm->refs++;
	return 0;
}

/* The worker's connection closed: it has ended.  Under the lock. */
static void worker_gone(struct service *s, struct vm_obj *vm)
{
	char kind[16] = "";
	int code = 0;
	bool have;

	unwatch(s, vm);
	vm->refs++;
	svc_unlock(s);
	/* The monitor writes the record a moment after the worker exits. */
	have = wait_exit_file(vm, EXIT_FILE_WAIT_MS, kind, sizeof(kind), &code);
	svc_lock(s);
	if (!vm->deleted)
		apply_exit(s, vm, have, kind, code);
	vm_put(vm);
}

static void worker_message(struct service *s, struct vm_obj *vm)
{
	for (;;) {
		json_t *m = NULL;
		const char *ev, *st, *why;
		int ret = msg_recv(vm->watch_fd, &m, NULL, NULL, 0);

		if (ret == -EAGAIN)
			return;
		if (ret == -EBADMSG)
			continue;
		if (ret) {
			worker_gone(s, vm);
			return;
		}
		ev = json_string_value(json_object_get(m, "event"));
		st = json_string_value(json_object_get(m, "state"));
		why = json_string_value(json_object_get(m, "reason"));
		if (ev && strcmp(ev, "state") == 0 && st) {
			if (strcmp(st, "running") == 0) {
				svc_event(s, "vm", vm->name, "reset%s%s%s", why ? " (" : "",
					  why ? why : "", why ? ")" : "");
				/* A reboot waits for this. */
				vm->resets_seen++;
				agent_guest_reset(s, vm);
				pthread_cond_broadcast(&vm->changed);
			}
			else if (why)
				snprintf(vm->ended, sizeof(vm->ended), "%s", why);
		}
		json_decref(m);
	}
}

static void *supervisor_main(void *arg)
{
	struct service *s = arg;

	for (;;) {
		struct epoll_event evs[16];
		int n = epoll_wait(s->epfd, evs, ARRAY_SIZE(evs), -1);

		svc_lock(s);
		if (s->stopping) {
			svc_unlock(s);
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			enum watch_kind *kind = evs[i].data.ptr;

			if (!kind)
				continue;	/* the wake-up */
			if (evs[i].data.u64 & WATCH_SWITCH_BIT) {
				struct switch_obj *sw = switch_by_watch_id(s,
					evs[i].data.u64 & ~WATCH_SWITCH_BIT);

				/* Gone, or unwatched since: nothing to do. */
				if (sw && sw->pidfd >= 0)
					switch_worker_gone(s, sw);
				continue;
			}
			struct vm_obj *vm = container_of(kind, struct vm_obj, watch_kind);

			/* An earlier event in this batch may have ended it. */
			if (vm->watch_fd >= 0)
				worker_message(s, vm);
		}
		svc_unlock(s);
	}
}

int supervisor_start(struct service *s)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	int ret;

	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->epfd < 0 || s->wake_fd < 0 ||
	    epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->wake_fd, &ev) < 0)
		return -errno;
	ret = pthread_create(&s->supervisor, NULL, supervisor_main, s);
	if (ret)
		return -ret;
	s->supervisor_started = true;
	return 0;
}

void supervisor_stop(struct service *s)
{
	uint64_t one = 1;

	if (s->supervisor_started) {
		svc_lock(s);
		s->stopping = true;
		svc_unlock(s);
		if (write(s->wake_fd, &one, sizeof(one)) < 0)
			log_warn("cannot wake the supervisor");
		pthread_join(s->supervisor, NULL);
		s->supervisor_started = false;
	}
	if (s->epfd >= 0)
		close(s->epfd);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	s->epfd = s->wake_fd = -1;
}

/* ---- starting ------------------------------------------------------- */

pid_t worker_read_pid(int dirfd)
{
	char buf[32];

	if (svc_read_text(dirfd, "worker.pid", buf, sizeof(buf)) < 0)
		return 0;
	return (pid_t)atoi(buf);
}

static pid_t read_pid(struct vm_obj *vm)
{
	return worker_read_pid(vm->dirfd);
}

/*
 * Fork the monitor in a session of its own.  Between fork and exec only
 * async-signal-safe calls: the service has other threads.  The middle
 * process exits at once, so the monitor belongs to init, not to us.
 */
int worker_spawn(struct service *s, int dirfd, char *const argv[])
{
	char *args[32] = { "fsvisor", "vm", "monitor", "--", "fsvisor" };
	int errfd, nullfd, status, n = 5, err = 0;
	sigset_t none;
	pid_t pid;

	for (int i = 0; argv[i]; i++) {
		if (n == (int)ARRAY_SIZE(args) - 1)
			return -E2BIG;
		args[n++] = argv[i];
	}
	args[n] = NULL;
	unlinkat(dirfd, "ctl.sock", 0);
	unlinkat(dirfd, "worker.exit", 0);
	unlinkat(dirfd, "worker.pid", 0);
	errfd = openat(dirfd, "worker.err", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND |
		       O_CLOEXEC, 0600);
	nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (errfd < 0 || nullfd < 0) {
		err = -errno;
		goto out;
	}
	sigemptyset(&none);
	pid = fork();
	if (pid < 0) {
		err = -errno;
		goto out;
	}
	if (pid == 0) {
		if (setsid() < 0 || fork() != 0)
			_exit(0);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (fchdir(dirfd) < 0)
			_exit(126);
		dup2(nullfd, 0);
		dup2(errfd, 1);
		dup2(errfd, 2);
		/* Nothing of the service's, its FUSE connection least of all. */
		close_range(3, ~0U, 0);
		execv(s->worker_exe, args);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
out:
	if (errfd >= 0)
		close(errfd);
	if (nullfd >= 0)
		close(nullfd);
	return err;
}

/* A worker that boots worker.json, or (@restore) resumes "saved". */
static int spawn_monitor(struct service *s, struct vm_obj *vm, bool restore)
{
	char *boot[] = {
		"vm", "run", "--name", vm->name,
		"--config", "worker.json", "--control", "ctl.sock",
		"--console-ring", "console", "--no-console", NULL,
	};
	char *resume[] = {
		"vm", "run", "--restore", "saved", "--control", "ctl.sock",
		"--console-ring", "console", "--no-console", NULL,
	};

	return worker_spawn(s, vm->dirfd, restore ? resume : boot);
}

/* Connect, subscribe, and see the worker answer: it runs the guest. */
static int wait_for_worker(struct vm_obj *vm, int timeout_ms, int *out_fd,
			   json_t **status)
{
	json_t *req;
	char kind[16];
	int code, fd, ret;

	for (int waited = 0, step = 2; waited < timeout_ms; waited += step) {
		fd = connect_worker(vm, timeout_ms);
		if (fd >= 0) {
			json_t *reply = NULL;

			/* Replies come once the worker's loop runs: after vm_start. */
			req = json_pack("{s:s}", "cmd", "subscribe");
			ret = call(fd, req, &reply);
			json_decref(req);
			json_decref(reply);
			if (!ret) {
				req = json_pack("{s:s}", "cmd", "status");
				ret = call(fd, req, status);
				json_decref(req);
			}
			if (!ret) {
				*out_fd = fd;
				return 0;
			}
			close(fd);
			return ret == -EAGAIN ? -ETIMEDOUT : -ECONNRESET;
		}
		if (read_exit(vm, kind, sizeof(kind), &code))
			return -ECONNRESET;
		usleep((useconds_t)step * 1000);
		if (step < 50)
			step *= 2;
	}
	return -ETIMEDOUT;
}

static int vm_start(struct service *s, struct vm_obj *vm)
{
	char why[ERROR_MAX - 64], kind[16];
	bool restore = vm->state == VMS_SAVED, exited;
	json_t *cfg, *status = NULL;
	int err, fd = -1, code;
	char *path;
	pid_t pid;

	if (vm->state != VMS_OFF && vm->state != VMS_CRASHED && !restore)
		return vm_fail(s, vm, -EBUSY, "start: the VM is %s already",
			       vm_state_name(vm->state));
	/* From a saved state too: its disks and switches must be there. */
	cfg = vm_worker_config(s, vm, &err, why, sizeof(why));
	if (!cfg)
		return vm_fail(s, vm, err, "start: %s", why);
	if (asprintf(&path, "%s/worker.json", vm->dir) < 0)
		abort();
	/* A restored worker takes its configuration from the state. */
	err = restore ? 0 : json_file_save(path, cfg);
	free(path);
	json_decref(cfg);
	if (err)
		return vm_fail(s, vm, -EIO, "start: cannot write worker.json: %s", strerror(-err));
	vm->end_requested = NULL;
	vm->ended[0] = '\0';
	vm_set_state(s, vm, VMS_STARTING);
	/* Listening before the guest runs: a quick agent finds the service. */
	agent_vm_prepare(s, vm);
	err = spawn_monitor(s, vm, restore);
	if (err) {
		vm_set_state(s, vm, restore ? VMS_SAVED : VMS_OFF);
		return vm_fail(s, vm, -EIO, "start: cannot start the worker: %s", strerror(-err));
	}

	vm->refs++;
	svc_unlock(s);
	err = wait_for_worker(vm, START_TIMEOUT_MS, &fd, &status);
	svc_lock(s);
	vm_put(vm);

	if (!err) {
		vm->pid = (pid_t)json_integer_value(json_object_get(status, "pid"));
		vm->monitor_pid = parent_of(vm->pid);
		json_decref(status);
		err = watch(s, vm, fd);
		if (!err) {
			/* The guest runs on from it: the state would take it back in time. */
			if (restore)
				vm_saved_remove(vm);
			log_info("vm %s: %s, worker pid %d", vm->name,
				 restore ? "started from its saved state" : "started", (int)vm->pid);
			vm->run_started = time(NULL);
			vm_set_state(s, vm, VMS_RUNNING);
			vm_connect_nics(s, vm, false);
			return 0;
		}
		close(fd);
	}
	/* It did not come up: make sure nothing is left, and say why. */
	pid = read_pid(vm);
	if (pid > 0 && !read_exit(vm, kind, sizeof(kind), &code))
		kill(pid, SIGKILL);
	vm->refs++;
	svc_unlock(s);
	exited = wait_exit_file(vm, EXIT_FILE_WAIT_MS, kind, sizeof(kind), &code);
	svc_lock(s);
	vm_put(vm);
	svc_tail_text(vm->dirfd, "worker.err", why, sizeof(why));
	if (exited && strcmp(kind, "exit") == 0 && code == VM_EXIT_FAILED) {
		/* The guest ran, and failed at once: that is a crash. */
		apply_exit(s, vm, true, kind, code);
		if (restore)
			vm_saved_remove(vm);
		return vm_fail(s, vm, -EIO, "start: the VM failed at once: %s%s",
			       why[0] ? why : "no reason given",
			       restore ? " (its saved state was used, and is gone)" : "");
	}
	unlinkat(vm->dirfd, "worker.exit", 0);
	unlinkat(vm->dirfd, "worker.pid", 0);
	if (restore) {
		/* Refused before any guest code ran: the state stays, to retry or discard. */
		vm_set_state(s, vm, VMS_SAVED);
		return vm_fail(s, vm, err == -ETIMEDOUT ? -ETIMEDOUT : -EINVAL,
			       "start: the saved state cannot be restored: %s; it stays (echo discard > ctl deletes it)",
			       why[0] ? why : err == -ETIMEDOUT ? "the worker did not come up" :
			       "the worker failed");
	}
	vm_set_state(s, vm, VMS_OFF);
	if (err == -ETIMEDOUT)
		return vm_fail(s, vm, -ETIMEDOUT, "start: the worker did not come up within %d s%s%s",
			       START_TIMEOUT_MS / 1000, why[0] ? ": " : "", why);
	return vm_fail(s, vm, -EINVAL, "start: %s", why[0] ? why : "the worker failed");
}

/* ---- the other commands ---------------------------------------------- */

static int command(struct service *s, struct vm_obj *vm, const char *cmd)
{
	int ret;

	vm->refs++;
	svc_unlock(s);
	ret = worker_command(vm, cmd, NULL, NULL);
	svc_lock(s);
	vm_put(vm);
	if (ret)
		return vm_fail(s, vm, -EIO, "%s: the worker did not answer: %s", cmd,
			       strerror(-ret));
	return 0;
}

/* Power off (stop) or end the worker (kill), and wait until it has. */
static int vm_end(struct service *s, struct vm_obj *vm, bool kill_it)
{
	const char *cmd = kill_it ? "kill" : "stop";
	bool intr = false;
	pid_t pid = vm->pid;

	if (vm->state == VMS_OFF)
		return 0;		/* already there */
	if (vm->state == VMS_CRASHED) {
		vm->ended[0] = '\0';
		vm_set_state(s, vm, VMS_OFF);
		return 0;
	}
	if (vm->state == VMS_STARTING || vm->state == VMS_SAVING)
		return vm_fail(s, vm, -EBUSY, "%s: the VM is %s; try again when it is done", cmd,
			       vm_state_name(vm->state));
	if (vm->state == VMS_SAVED)
		return vm_fail(s, vm, -EBUSY,
			       "%s: the VM is saved, not running; start it, or discard its saved state (echo discard > ctl)",
			       cmd);
	vm->end_requested = cmd;
	vm_set_state(s, vm, VMS_STOPPING);
	if (!kill_it) {
		vm->refs++;
		svc_unlock(s);
		worker_command(vm, "stop", NULL, NULL);
		svc_lock(s);
		vm_put(vm);
		if (wait_state(s, vm, is_ended, STOP_TIMEOUT_MS, NULL, NULL, &intr))
			return 0;
		log_warn("vm %s: the worker did not stop within %d s: killing it",
			 vm->name, STOP_TIMEOUT_MS / 1000);
	}
	/* The worker only: its monitor stays to record the end. */
	if (pid > 0)
		kill(pid, SIGKILL);
	if (wait_state(s, vm, is_ended, STOP_TIMEOUT_MS, NULL, NULL, &intr))
		return 0;
	return vm_fail(s, vm, -EIO, "%s: the worker (pid %d) does not go away", cmd, (int)pid);
}

/*
 * Ask the guest's agent for a clean shutdown (or reboot): 0 when it took
 * it.  Only with the shutdown service on, an agent that offers it and a
 * heartbeat that is ok: a guest that does not answer its heartbeat would
 * not shut down either.
 */
static int agent_first(struct service *s, struct vm_obj *vm, bool reboot, const char *reason)
{
	const char *what = reboot ? "reboot" : "shutdown";
	char why[256];
	int ret;

	if (!vm->ic->enabled[ICS_SHUTDOWN] || !(vm->ic->agent_caps & IC_CAP_SHUTDOWN) ||
	    !agent_heartbeat_ok(vm))
		return -ENOTCONN;
	vm->refs++;
	ret = agent_shutdown(s, vm, reboot, reason, why, sizeof(why));
	vm_put(vm);
	/* The request went, then the connection: a guest on its way down. */
	if (ret == -ECONNRESET)
		ret = 0;
	if (ret)
		log_warn("vm %s: the agent did not take the %s (%s)", vm->name, what, why);
	else
		log_info("vm %s: %s through the agent: %s", vm->name, what, reason);
	return ret;
}

static int vm_shutdown(struct service *s, struct vm_obj *vm, svc_interrupted_fn intr,
		       void *ctx, const char *reason)
{
	bool interrupted = false;
	int ret;

	/* Like stop: already off, or acknowledging a crash, is done at once. */
	if (vm->state == VMS_OFF || vm->state == VMS_CRASHED || vm->state == VMS_SAVED)
		return vm_end(s, vm, false);
	if (vm->state != VMS_RUNNING)
		return vm_fail(s, vm, -EBUSY, "shutdown: the VM is %s%s",
			       vm_state_name(vm->state),
			       vm->state == VMS_PAUSED ? "; resume it first" : "");
	/* The agent first; the ACPI power button when there is none that answers. */
	if (agent_first(s, vm, false, reason) == 0) {
		/* It may be off already: the lock was dropped meanwhile. */
		if (vm->state != VMS_RUNNING)
			return vm_is_active(vm) ? vm_fail(s, vm, -EBUSY, "shutdown: the VM is %s",
							  vm_state_name(vm->state)) : 0;
	} else {
		ret = command(s, vm, "shutdown");
		if (ret)
			return ret;
	}
	vm->end_requested = "shutdown";
	vm_set_state(s, vm, VMS_STOPPING);
	if (wait_state(s, vm, is_ended, SHUTDOWN_TIMEOUT_MS, intr, ctx, &interrupted))
		return 0;
	/* The guest may still do it; until then it is running. */
	if (vm->state == VMS_STOPPING) {
		vm->end_requested = NULL;
		vm_set_state(s, vm, VMS_RUNNING);
	}
	if (interrupted)
		return -EINTR;
	return vm_fail(s, vm, -ETIMEDOUT,
		       "shutdown: the guest did not power off within %d s (it may not handle the ACPI power button); 'stop' powers it off",
		       SHUTDOWN_TIMEOUT_MS / 1000);
}

static bool was_reset(struct vm_obj *vm)
{
	return vm->resets_seen != vm->resets_mark || !vm_is_active(vm);
}

/*
 * A clean reboot: the agent's, and the worker's reset ends the wait; with
 * no agent, a shutdown by the power button and a start.
 */
static int vm_reboot(struct service *s, struct vm_obj *vm, svc_interrupted_fn intr,
		     void *ctx, const char *reason)
{
	bool interrupted = false;
	int ret;

	if (vm->state != VMS_RUNNING)
		return vm_fail(s, vm, -EBUSY, "reboot: the VM is %s", vm_state_name(vm->state));
	vm->resets_mark = vm->resets_seen;
	if (agent_first(s, vm, true, reason) == 0) {
		if (wait_state(s, vm, was_reset, SHUTDOWN_TIMEOUT_MS, intr, ctx, &interrupted) &&
		    vm->resets_seen != vm->resets_mark)
			return 0;
		if (interrupted)
			return -EINTR;
		if (vm_is_active(vm))
			return vm_fail(s, vm, -ETIMEDOUT, "reboot: the guest did not restart within %d s",
				       SHUTDOWN_TIMEOUT_MS / 1000);
		/* It powered off instead (on_reboot stop): start it again. */
		return vm_start(s, vm);
	}
	ret = vm_shutdown(s, vm, intr, ctx, reason);
	if (ret)
		return ret;
	return vm_start(s, vm);
}

#define DEFAULT_REASON	"requested on the host"

/* "shutdown [REASON]", "reboot [REASON]": the reason, or NULL for another command. */
static const char *reason_of(const char *cmd, const char *word)
{
	size_t n = strlen(word);

	if (strncmp(cmd, word, n) != 0 || (cmd[n] && cmd[n] != ' '))
		return NULL;
	return cmd[n] ? cmd + n + 1 : DEFAULT_REASON;
}

int vm_control(struct service *s, struct vm_obj *vm, const char *cmd,
	       svc_interrupted_fn intr, void *ctx)
{
	const char *reason;
	int ret;

	if (strcmp(cmd, "start") == 0)
		return vm_start(s, vm);
	if (strcmp(cmd, "stop") == 0)
		return vm_end(s, vm, false);
	if (strcmp(cmd, "kill") == 0)
		return vm_end(s, vm, true);
	if ((reason = reason_of(cmd, "shutdown")) || (reason = reason_of(cmd, "reboot"))) {
		if (strlen(reason) > IC_REASON_MAX)
			return vm_fail(s, vm, -EINVAL, "%s: a reason is at most %d bytes",
				       cmd[0] == 's' ? "shutdown" : "reboot", IC_REASON_MAX);
		if (cmd[0] == 's')
			return vm_shutdown(s, vm, intr, ctx, reason);
		return vm_reboot(s, vm, intr, ctx, reason);
	}
	if (strcmp(cmd, "pause") == 0 || strcmp(cmd, "resume") == 0 ||
	    strcmp(cmd, "reset") == 0) {
		bool pause = cmd[0] == 'p', resume = cmd[1] == 'e' && cmd[2] == 's' && cmd[3] == 'u';

		if (vm->state != VMS_RUNNING && vm->state != VMS_PAUSED)
			return vm_fail(s, vm, -EBUSY, "%s: the VM is %s", cmd,
				       vm_state_name(vm->state));
		if ((pause && vm->state == VMS_PAUSED) || (resume && vm->state == VMS_RUNNING))
			return 0;
		ret = command(s, vm, cmd);
		if (ret)
			return ret;
		if (pause && vm->state == VMS_RUNNING)
			vm_set_state(s, vm, VMS_PAUSED);
		else if (resume && vm->state == VMS_PAUSED)
			vm_set_state(s, vm, VMS_RUNNING);
		return 0;
	}
	if (strcmp(cmd, "save") == 0)
		return vm_save_run(s, vm);
	if (strcmp(cmd, "discard") == 0)
		return vm_discard(s, vm);
	return vm_fail(s, vm, -EINVAL,
		       "ctl: unknown command '%s'; one of: start stop shutdown [REASON] reboot [REASON] kill pause resume reset save discard",
		       cmd);
}

/* ---- adoption ----------------------------------------------------------- */

/*
 * A VM that was saving when the service went: its worker may still be
 * writing (it ends when it is done), may have ended, or went with the host.
 */
static void adopt_saving(struct service *s, struct vm_obj *vm, pid_t pid, bool exited,
			 const char *kind, int code)
{
	char k[16];
	int c;

	if (!exited && pid > 0 && kill(pid, 0) == 0) {
		log_info("vm %s: its worker (pid %d) is saving; waiting for it", vm->name, (int)pid);
		exited = worker_wait_exit(vm->dirfd, parent_of(pid), SAVE_WAIT_MS, k, sizeof(k), &c);
		if (!exited) {
			kill(pid, SIGKILL);
			exited = wait_exit_file(vm, EXIT_FILE_WAIT_MS, k, sizeof(k), &c);
		}
		kind = k;
		code = c;
	}
	if (exited) {
		apply_exit(s, vm, true, kind, code);
		return;
	}
	snprintf(vm->ended, sizeof(vm->ended), "the worker went away (the host restarted?)");
	if (vm_saved_settle(vm, vm->ended, sizeof(vm->ended))) {
		vm_set_state(s, vm, VMS_SAVED);
	} else {
		snprintf(vm->error, sizeof(vm->error), "crashed: %s", vm->ended);
		vm_set_state(s, vm, VMS_CRASHED);
	}
}

/*
 * A saved VM: a worker started from the state before the service went
 * (running now: the state is used; or refused, and the state stays), or
 * just the state, which must still be there.
 */
static bool adopt_saved(struct service *s, struct vm_obj *vm, bool exited, const char *kind,
			int code)
{
	if (exited && strcmp(kind, "exit") == 0 && code == VM_EXIT_SETUP) {
		unlinkat(vm->dirfd, "worker.exit", 0);
		unlinkat(vm->dirfd, "worker.pid", 0);
		return true;
	}
	if (exited) {
		vm_saved_remove(vm);
		return false;	/* it ran from the state: how it ended counts */
	}
	if (faccessat(vm->dirfd, "saved/manifest.json", F_OK, 0) < 0) {
		snprintf(vm->ended, sizeof(vm->ended), "its saved state is gone");
		vm_set_state(s, vm, VMS_OFF);
	}
	return true;
}

void vm_adopt(struct service *s, struct vm_obj *vm)
{
	char kind[16] = "";
	json_t *status = NULL;
	int fd = -1, code = 0, ret = -ENOENT;
	pid_t pid = read_pid(vm);
	bool exited = read_exit(vm, kind, sizeof(kind), &code);
	bool alive = !exited && pid > 0 && kill(pid, 0) == 0;

	if (vm->state == VMS_SAVING) {
		adopt_saving(s, vm, pid, exited, kind, code);
		return;
	}
	if (vm->state == VMS_SAVED && !alive && adopt_saved(s, vm, exited, kind, code))
		return;

	/*
	 * A worker that is there, or still coming up, is waited for briefly.
	 * One is coming up only after a spawn (which makes worker.err) that
	 * nothing has recorded the end of: a VM never started has none, so a
	 * host with a thousand VMs defined starts at once.
	 */
	if (alive)
		ret = wait_for_worker(vm, 5000, &fd, &status);
	else if (!exited && faccessat(vm->dirfd, "worker.err", F_OK, 0) == 0)
		ret = wait_for_worker(vm, 50, &fd, &status);
	/* It was there, and went while we waited: how it ended. */
	if (ret && alive)
		exited = wait_exit_file(vm, EXIT_FILE_WAIT_MS, kind, sizeof(kind), &code);
	if (!ret) {
		const char *st = json_string_value(json_object_get(status, "state"));
		bool paused = st && strcmp(st, "paused") == 0;

		vm->pid = (pid_t)json_integer_value(json_object_get(status, "pid"));
		vm->monitor_pid = parent_of(vm->pid);
		vm->run_started = time(NULL) - svc_json_int(status, "uptime_ms") / 1000;
		json_decref(status);
		if (watch(s, vm, fd)) {
			close(fd);
		} else {
			/* Started from its saved state just before the service went. */
			if (vm->state == VMS_SAVED)
				vm_saved_remove(vm);
			vm->state = paused ? VMS_PAUSED : VMS_RUNNING;
			vm_save(s, vm);
			agent_vm_state(s, vm, VMS_OFF);
			log_info("vm %s: adopted the running worker (pid %d)", vm->name,
				 (int)vm->pid);
			vm_connect_nics(s, vm, true);
			return;
		}
	}
	if (exited) {
		/* It ended while no service was watching. */
		vm->state = VMS_STARTING;
		apply_exit(s, vm, true, kind, code);
		return;
	}
	/* No worker: what was saved (off, or crashed with its reason). */
	if (vm->state == VMS_RUNNING) {
		snprintf(vm->ended, sizeof(vm->ended),
			 "not running when the service started (the host restarted?)");
		vm_set_state(s, vm, VMS_OFF);
	}
}
