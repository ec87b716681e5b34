// SPDX-License-Identifier: MIT
/*
 * The worker's event loop: one thread that owns the console (stdio and a
 * log file), the control socket and its clients, and the VM's events;
 * the vCPUs run in their own threads.  The control protocol (one JSON
 * object per SOCK_SEQPACKET message) is described in docs/vm-worker.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "vmm/internal.h"
#include "vmm/state/state.h"
#include "vmm/virtio/virtio.h"

#define MAX_CLIENTS 32
#define CTRL_A 0x01

enum tag {
	TAG_CONSOLE = 1,
	TAG_EVENT,
	TAG_STDIN,
	TAG_LISTEN,
	TAG_SIGNAL,
	TAG_ROOM,
	TAG_CLIENT,		/* + client index */
};

struct client {
	int fd;
	bool console;		/* subscribed to console output */
	bool events;		/* subscribed to state events */
	uint64_t cursor;
};

struct worker {
	struct vm *vm;
	const struct vm_worker_opts *opts;
	int epfd;
	int listen_fd;
	int sig_fd;
	int log_fd;
	struct ringfile *ring;	/* --console-ring */
	int room_fd;		/* the UART took input: feed it more */
	bool stdin_open;
	bool stdin_tty;
	bool ctrl_a;
	struct termios saved_tty;
	bool tty_saved;
	uint64_t out_cursor;	/* stdout */
	uint64_t log_cursor;
	uint64_t ring_cursor;
	struct client clients[MAX_CLIENTS];
	uint8_t pending[65536];	/* input the UART has not taken yet */
	size_t npending;
	int exit_status;
	bool done;
};

static struct worker *tty_owner;

static void restore_tty(void)
{
	if (tty_owner && tty_owner->tty_saved) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &tty_owner->saved_tty);
		tty_owner->tty_saved = false;
	}
}

static void raw_tty(struct worker *w)
{
	struct termios t;

	if (tcgetattr(STDIN_FILENO, &w->saved_tty) < 0)
		return;
	t = w->saved_tty;
	cfmakeraw(&t);
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) < 0)
		return;
	w->tty_saved = true;
	tty_owner = w;
	atexit(restore_tty);
}

static int epoll_add(struct worker *w, int fd, uint64_t tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };

	return epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static void write_all(int fd, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		buf += n;
		len -= (size_t)n;
	}
}

/* ---- console ------------------------------------------------------------ */

static void client_close(struct worker *w, int i)
{
	epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->clients[i].fd, NULL);
	close(w->clients[i].fd);
	w->clients[i].fd = -1;
	w->clients[i].console = false;
	w->clients[i].events = false;
}

static void send_console(struct worker *w, int i)
{
	struct client *c = &w->clients[i];
	uint8_t buf[16384];
	size_t n;

	while ((n = console_read(w->vm->console, &c->cursor, buf, sizeof(buf)))) {
		char *b64 = base64_encode(buf, n);
		json_t *m = json_pack("{s:s, s:s}", "event", "console", "data", b64);
		int ret = msg_send(c->fd, m, NULL, 0);

		json_decref(m);
		free(b64);
		if (ret && ret != -EAGAIN) {
			client_close(w, i);
			return;
		}
	}
}

static void drain_console(struct worker *w)
{
	uint8_t buf[16384];
	uint64_t discard;
	size_t n;

	if (read(console_eventfd(w->vm->console), &discard, sizeof(discard)) < 0)
		discard = 0;
	if (w->opts->stdio_console) {
		while ((n = console_read(w->vm->console, &w->out_cursor, buf, sizeof(buf))))
			write_all(STDOUT_FILENO, buf, n);
	}
	if (w->log_fd >= 0) {
		while ((n = console_read(w->vm->console, &w->log_cursor, buf, sizeof(buf))))
			write_all(w->log_fd, buf, n);
	}
	if (w->ring) {
		while ((n = console_read(w->vm->console, &w->ring_cursor, buf, sizeof(buf))))
			if (ringfile_append(w->ring, buf, n))
				log_warn("console ring %s: write failed", w->opts->console_ring);
	}
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (w->clients[i].fd >= 0 && w->clients[i].console)
			send_console(w, i);
}

/* Give queued input to the UART; returns true when all of it went. */
static bool feed_pending(struct worker *w)
{
	size_t took = serial_input(w->vm->com1, w->pending, w->npending);

	memmove(w->pending, w->pending + took, w->npending - took);
	w->npending -= took;
	return w->npending == 0;
}

static void take_room(struct worker *w)
{
	uint64_t discard;

	if (read(w->room_fd, &discard, sizeof(discard)) < 0)
		discard = 0;
	if (w->npending)
		feed_pending(w);
}

static void queue_input(struct worker *w, const uint8_t *buf, size_t len)
{
	if (len > sizeof(w->pending) - w->npending)
		len = sizeof(w->pending) - w->npending;
	memcpy(w->pending + w->npending, buf, len);
	w->npending += len;
	feed_pending(w);
}

static void read_stdin(struct worker *w)
{
	uint8_t buf[1024], out[1024];
	size_t nout = 0;
	ssize_t n;

	if (w->npending >= sizeof(w->pending) - sizeof(buf))
		return;		/* the guest is not reading: stop reading too */
	n = read(STDIN_FILENO, buf, sizeof(buf));
	if (n <= 0) {
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			return;
		/* End of input: the VM runs on without it. */
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, STDIN_FILENO, NULL);
		w->stdin_open = false;
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		uint8_t c = buf[i];

		if (!w->stdin_tty) {
			out[nout++] = c;
			continue;
		}
		/* Ctrl-a x quits; Ctrl-a Ctrl-a sends one Ctrl-a. */
		if (w->ctrl_a) {
			w->ctrl_a = false;
			if (c == 'x') {
				fprintf(stderr, "\r\n[fsvisor: quit]\r\n");
				w->exit_status = VM_EXIT_KILLED;
				w->done = true;
				return;
			}
			if (c != CTRL_A)
				out[nout++] = CTRL_A;
			out[nout++] = c;
		} else if (c == CTRL_A) {
			w->ctrl_a = true;
		} else {
			out[nout++] = c;
		}
	}
	queue_input(w, out, nout);
}

/* ---- control --------------------------------------------------------- */

/* Counters of the devices that keep them (the disks), in slot order. */
static json_t *device_stats(struct vm *vm)
{
	json_t *list = json_array();

	/* The list is newest first: insert each at the front. */
	for (struct vm_device *d = vm->devices; d; d = d->next) {
		json_t *st = d->stats ? d->stats(d->opaque) : NULL;

		if (st)
			json_array_insert_new(list, 0, st);
	}
	return list;
}

static json_t *status_json(struct worker *w)
{
	struct vm *vm = w->vm;
	json_t *cpus = json_array(), *st;

	for (unsigned int i = 0; i < vm->ncpus; i++) {
		struct vcpu_stats *s = &vm->vcpus[i].stats;

		json_array_append_new(cpus, json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:I}",
			"id", (int)i,
			"exits", (json_int_t)atomic_load(&s->total),
			"io", (json_int_t)atomic_load(&s->io),
			"mmio", (json_int_t)atomic_load(&s->mmio),
			"hlt", (json_int_t)atomic_load(&s->hlt),
			"intr", (json_int_t)atomic_load(&s->intr),
			"other", (json_int_t)atomic_load(&s->other)));
	}
	st = json_pack("{s:b, s:s, s:s, s:i, s:i, s:I, s:I, s:i, s:I, s:I, s:I, s:o, s:o, s:o}",
		"ok", 1,
		"state", vm->paused ? "paused" : "running",
		"name", vm->cfg->name,
		"pid", (int)getpid(),
		"cpus", (int)vm->ncpus,
		"memory", (json_int_t)vm->mem.size,
		"uptime_ms", (json_int_t)((now_ns() - vm->started_ns) / 1000000),
		"resets", (int)vm->resets,
		"unclaimed_port_accesses", (json_int_t)atomic_load(&vm->pio.unclaimed),
		"unclaimed_mmio_accesses", (json_int_t)atomic_load(&vm->mmio.unclaimed),
		/* Chunks of a restored VM's RAM still to load from its saved state. */
		"memory_loading", (json_int_t)state_memory_pending(vm),
		"vcpus", cpus,
		"disks", device_stats(vm),
		"nics", vm_nic_stats(vm));
	if (st && vm->vsock)
		json_object_set_new(st, "vsock", vsock_stats_json(vm->vsock));
	return st;
}

static json_t *error_reply(const char *fmt, const char *arg)
{
	char msg[256];

	snprintf(msg, sizeof(msg), fmt, arg);
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

/* The "nic" of a request: a NIC index, or -1 with an error in @reply. */
static int nic_index(json_t *req, json_t **reply)
{
	json_t *v = json_object_get(req, "nic");

	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) >= VM_MAX_NICS) {
		*reply = error_reply("\"nic\" must be a NIC index (0 for the first)%s", "");
		return -1;
	}
	return (int)json_integer_value(v);
}

static json_t *nic_command(struct worker *w, json_t *req, const char *cmd,
			   int *fd)
{
	char err[256];
	json_t *reply = NULL;
	int index = nic_index(req, &reply), ret;

	if (index < 0)
		return reply;
	if (strcmp(cmd, "nic-connect") == 0) {
		if (*fd < 0)
			return error_reply("nic-connect needs one socket passed with SCM_RIGHTS%s", "");
		ret = vm_nic_connect(w->vm, (unsigned int)index, *fd, err, sizeof(err));
		*fd = -1;	/* taken over, also on failure */
	} else {
		ret = vm_nic_disconnect(w->vm, (unsigned int)index, err, sizeof(err));
	}
	if (ret)
		return error_reply("%s", err);
	return json_pack("{s:b}", "ok", 1);
}

static void broadcast_state(struct worker *w, const char *state, const char *why);

/*
 * "save": capture the VM into the new directory "dir"; then stop (the
 * worker ends with VM_EXIT_SAVED: Hyper-V's Save) or resume (a
 * checkpoint).  The loop waits meanwhile: the VM is paused anyway.
 */
static json_t *save_command(struct worker *w, json_t *req)
{
	const char *dir = json_string_value(json_object_get(req, "dir"));
	const char *then = json_string_value(json_object_get(req, "then"));
	bool stop = then && strcmp(then, "stop") == 0;
	uint64_t t0 = now_ns();
	char err[1024] = "";
	int ret;

	if (!dir || dir[0] != '/')
		return error_reply("save needs \"dir\", an absolute path that does not exist yet%s", "");
	if (then && !stop && strcmp(then, "resume") != 0)
		return error_reply("\"then\" is stop or resume, not '%s'", then);
	ret = vm_save_state(w->vm, dir, err, sizeof(err));
	if (ret) {
		if (!w->vm->paused)
			vm_resume(w->vm);
		log_error("save into %s failed: %s", dir, err);
		return error_reply("save failed: %s", err);
	}
	log_info("saved into %s in %.1f ms", dir, (double)(now_ns() - t0) / 1e6);
	if (stop) {
		broadcast_state(w, "saved", dir);
		w->exit_status = VM_EXIT_SAVED;
		w->done = true;
	} else if (!w->vm->paused) {
		vm_resume(w->vm);
	}
	return json_pack("{s:b, s:s, s:I}", "ok", 1, "dir", dir,
			 "ms", (json_int_t)((now_ns() - t0) / 1000000));
}

static json_t *handle_command(struct worker *w, int i, json_t *req, int *fd)
{
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	struct vm *vm = w->vm;

	if (!cmd)
		return error_reply("a request needs a \"cmd\" string%s", "");
	if (strcmp(cmd, "nic-connect") == 0 || strcmp(cmd, "nic-disconnect") == 0)
		return nic_command(w, req, cmd, fd);
	if (strcmp(cmd, "status") == 0)
		return status_json(w);
	if (strcmp(cmd, "save") == 0)
		return save_command(w, req);
	if (strcmp(cmd, "pause") == 0) {
		vm->paused = true;
		vm_pause(vm);
	} else if (strcmp(cmd, "resume") == 0) {
		vm->paused = false;
		vm_resume(vm);
	} else if (strcmp(cmd, "reset") == 0) {
		vm_post_event(vm, VMEV_RESET, "reset requested");
	} else if (strcmp(cmd, "vsock-reset") == 0) {
		/* What a restore does: every connection reset, the guest told. */
		if (!vm->vsock)
			return error_reply("this VM has no vsock device%s", "");
		vsock_transport_reset(vm->vsock);
	} else if (strcmp(cmd, "shutdown") == 0) {
		/* Ask the guest: it powers off (or not) in its own time. */
		pm_power_button(vm->pm);
	} else if (strcmp(cmd, "subscribe") == 0) {
		w->clients[i].events = true;
	} else if (strcmp(cmd, "stop") == 0) {
		w->exit_status = VM_EXIT_POWEROFF;
		w->done = true;
	} else if (strcmp(cmd, "kill") == 0) {
		w->exit_status = VM_EXIT_KILLED;
		w->done = true;
	} else if (strcmp(cmd, "console-subscribe") == 0) {
		const char *from = json_string_value(json_object_get(req, "from"));

		w->clients[i].console = true;
		w->clients[i].events = true;
		/* "oldest": replay what the ring still holds; default: now. */
		if (from && strcmp(from, "oldest") == 0)
			w->clients[i].cursor = console_oldest(vm->console);
		else
			w->clients[i].cursor = console_head(vm->console);
	} else if (strcmp(cmd, "console-input") == 0) {
		const char *data = json_string_value(json_object_get(req, "data"));
		uint8_t *bytes;
		size_t n;

		if (!data || base64_decode(data, &bytes, &n))
			return error_reply("console-input needs \"data\" in base64%s", "");
		queue_input(w, bytes, n);
		free(bytes);
	} else {
		return error_reply("unknown command '%s'", cmd);
	}
	return json_pack("{s:b}", "ok", 1);
}

static void client_message(struct worker *w, int i)
{
	json_t *req = NULL, *reply;
	size_t nfds = 0;
	int fd = -1;
	int ret = msg_recv(w->clients[i].fd, &req, &fd, &nfds, 1);

	if (ret == -EAGAIN)
		return;
	if (ret == -EBADMSG) {
		reply = error_reply("not a JSON object%s", "");
	} else if (ret == -EMSGSIZE) {
		reply = error_reply("message too long, or more than one descriptor%s", "");
	} else if (ret) {
		client_close(w, i);
		return;
	} else {
		if (!nfds)
			fd = -1;
		reply = handle_command(w, i, req, &fd);
		json_decref(req);
		/* A descriptor nobody asked for. */
		if (fd >= 0)
			close(fd);
	}
	msg_send(w->clients[i].fd, reply, NULL, 0);
	json_decref(reply);
	if (w->clients[i].console)
		send_console(w, i);
}

static void accept_client(struct worker *w)
{
	int fd = accept4(w->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	for (int i = 0; i < MAX_CLIENTS; i++) {
		if (w->clients[i].fd < 0) {
			w->clients[i] = (struct client){ .fd = fd };
			if (epoll_add(w, fd, TAG_CLIENT + (uint64_t)i) == 0)
				return;
			w->clients[i].fd = -1;
			break;
		}
	}
	close(fd);		/* too many clients */
}

static void broadcast_state(struct worker *w, const char *state, const char *why)
{
	json_t *m = json_pack("{s:s, s:s, s:s}", "event", "state", "state", state,
			      "reason", why);

	for (int i = 0; i < MAX_CLIENTS; i++)
		if (w->clients[i].fd >= 0 && w->clients[i].events)
			msg_send(w->clients[i].fd, m, NULL, 0);
	json_decref(m);
}

static int open_control(struct worker *w, const char *path, char *err,
			size_t errlen)
{
	/* A socket file left by a dead worker is replaced; a live one is not. */
	int fd = msg_listen(path, err, errlen);

	if (fd < 0)
		return fd;
	w->listen_fd = fd;
	return epoll_add(w, fd, TAG_LISTEN);
}

/* ---- events from the VM ------------------------------------------------- */

static void handle_vm_event(struct worker *w)
{
	char msg[1024], err[512];
	enum vm_event ev = vm_take_event(w->vm, msg, sizeof(msg));

	switch (ev) {
	case VMEV_NONE:
		break;
	case VMEV_POWEROFF:
		log_info("guest powered off (%s)", msg);
		broadcast_state(w, "off", msg);
		w->exit_status = VM_EXIT_POWEROFF;
		w->done = true;
		break;
	case VMEV_RESET:
		if (w->vm->cfg->on_reboot == FAULT_STOP) {
			log_info("guest reset (%s): stopping, as configured", msg);
			broadcast_state(w, "off", msg);
			w->exit_status = VM_EXIT_POWEROFF;
			w->done = true;
			break;
		}
		log_info("guest reset (%s)", msg);
		if (vm_reset(w->vm, err, sizeof(err))) {
			log_error("reset failed: %s", err);
			broadcast_state(w, "crashed", err);
			w->exit_status = VM_EXIT_FAILED;
			w->done = true;
		} else {
			broadcast_state(w, "running", msg);
		}
		break;
	case VMEV_FAILED:
		broadcast_state(w, "crashed", msg);
		w->exit_status = VM_EXIT_FAILED;
		w->done = true;
		break;
	}
}

static void handle_signal(struct worker *w)
{
	struct signalfd_siginfo si;

	if (read(w->sig_fd, &si, sizeof(si)) != sizeof(si))
		return;
	log_info("signal %u: stopping the VM", si.ssi_signo);
	w->exit_status = VM_EXIT_KILLED;
	w->done = true;
}

/* ---- start-up report ------------------------------------------------ */

static long status_kib(const char *key)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, strlen(key)) == 0)
			v = strtol(line + strlen(key), NULL, 10);
	fclose(f);
	return v;
}

static void report_startup(struct worker *w, uint64_t t_main)
{
	struct vm *vm = w->vm;
	struct timespec rt;

	for (int i = 0; i < 1000 && !atomic_load(&vm->first_run_seen); i++)
		usleep(1000);
	clock_gettime(CLOCK_REALTIME, &rt);
	fprintf(stderr, "startup: first_kvm_run_ms=%.3f cpu_ms=%.3f first_kvm_run_realtime_ns=%llu\n",
		(double)(vm->first_run_ns - t_main) / 1e6,
		(double)vm->first_run_cpu_us / 1e3,
		(unsigned long long)((uint64_t)rt.tv_sec * 1000000000ULL +
				     (uint64_t)rt.tv_nsec -
				     (now_ns() - vm->first_run_ns)));
}

static void report_memory(void)
{
	long rss = status_kib("VmRSS:"), shmem = status_kib("RssShmem:");

	/* Guest RAM is the memfd: shared memory.  The rest is ours. */
	fprintf(stderr, "memory: rss_kib=%ld guest_ram_resident_kib=%ld overhead_kib=%ld\n",
		rss, shmem, rss - shmem);
}

/* ---- the loop --------------------------------------------------------- */

static void termination_signals(sigset_t *mask)
{
	sigemptyset(mask);
	sigaddset(mask, SIGTERM);
	sigaddset(mask, SIGINT);
	sigaddset(mask, SIGHUP);
}

static int setup(struct worker *w, char *err, size_t errlen)
{
	sigset_t mask;
	int ret;

	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0)
		return -errno;
	termination_signals(&mask);
	w->sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (w->sig_fd < 0 || epoll_add(w, w->sig_fd, TAG_SIGNAL) ||
	    epoll_add(w, console_eventfd(w->vm->console), TAG_CONSOLE) ||
	    epoll_add(w, w->vm->event_fd, TAG_EVENT))
		return -errno;
	w->room_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->room_fd < 0 || epoll_add(w, w->room_fd, TAG_ROOM))
		return -errno;
	serial_set_room_fd(w->vm->com1, w->room_fd);
	if (w->opts->console_log) {
		w->log_fd = open(w->opts->console_log,
				 O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		if (w->log_fd < 0) {
			snprintf(err, errlen, "console log %s: %s", w->opts->console_log,
				 strerror(errno));
			return -errno;
		}
	}
	if (w->opts->console_ring) {
		ret = ringfile_create(w->opts->console_ring, CONSOLE_RING_FILE, &w->ring);
		if (ret) {
			snprintf(err, errlen, "console ring %s: %s", w->opts->console_ring,
				 strerror(-ret));
			return ret;
		}
	}
	if (w->opts->control_path) {
		ret = open_control(w, w->opts->control_path, err, errlen);
		if (ret)
			return ret;
	}
	for (unsigned int i = 0; i < w->opts->n_nic_fds; i++) {
		int fd = w->opts->nic_fds[i];

		if (fd < 0)
			continue;
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		ret = vm_nic_connect(w->vm, i, fd, err, errlen);
		if (ret)
			return ret;
	}
	if (w->opts->stdio_console) {
		w->stdin_tty = isatty(STDIN_FILENO);
		if (w->stdin_tty)
			raw_tty(w);
		if (epoll_add(w, STDIN_FILENO, TAG_STDIN) == 0)
			w->stdin_open = true;
	}
	return 0;
}

static void loop(struct worker *w)
{
	while (!w->done) {
		struct epoll_event evs[16];
		int n = epoll_wait(w->epfd, evs, ARRAY_SIZE(evs), -1);

		for (int i = 0; i < n && !w->done; i++) {
			uint64_t tag = evs[i].data.u64;

			if (tag == TAG_CONSOLE)
				drain_console(w);
			else if (tag == TAG_EVENT)
				handle_vm_event(w);
			else if (tag == TAG_STDIN)
				read_stdin(w);
			else if (tag == TAG_LISTEN)
				accept_client(w);
			else if (tag == TAG_SIGNAL)
				handle_signal(w);
			else if (tag == TAG_ROOM)
				take_room(w);
			else if (tag >= TAG_CLIENT && w->clients[tag - TAG_CLIENT].fd >= 0)
				client_message(w, (int)(tag - TAG_CLIENT));
		}
	}
}

/*
 * A VM from a saved state: everything checked before it is made, then
 * made without booting (the configuration is the state's).
 */
static int restore(const char *dir, const char *vsock_dir, struct vm_config **cfg,
		   struct vm **vm, char *err, size_t errlen)
{
	struct ss_reader *r;
	int ret = ss_open(dir, &r, err, errlen);

	if (ret)
		return ret;
	ret = vm_config_parse_saved(ss_config(r), cfg, err, errlen);
	if (!ret)
		ret = vm_state_check(*cfg, r, err, errlen);
	if (!ret)
		ret = vm_create_restored(*cfg, vsock_dir, r, vm, err, errlen);
	/* A VM made keeps the reader until its RAM is all in. */
	if (ret) {
		ss_reader_free(r);
		vm_config_free(*cfg);
		*cfg = NULL;
	}
	return ret;
}

int vm_worker_run(const struct vm_config *cfg, const struct vm_worker_opts *opts)
{
	struct vm_config *restored = NULL;
	uint64_t t_main = now_ns();
	struct worker w = { .opts = opts, .epfd = -1, .listen_fd = -1,
			    .sig_fd = -1, .log_fd = -1, .room_fd = -1 };
	char err[1024] = "";
	int ret;

	sigset_t mask;

	/*
	 * Blocked before any thread exists, so every thread (the vCPUs and
	 * I/O threads too) inherits it and the signals reach the signalfd.
	 */
	termination_signals(&mask);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < MAX_CLIENTS; i++)
		w.clients[i].fd = -1;
	if (opts->restore_dir)
		ret = restore(opts->restore_dir, opts->vsock_dir, &restored, &w.vm, err,
			      sizeof(err));
	else
		ret = vm_create(cfg, opts->vsock_dir, &w.vm, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "fsvisor vm: %s%s\n", opts->restore_dir ? "cannot restore: " : "",
			err);
		return VM_EXIT_SETUP;
	}
	ret = setup(&w, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "fsvisor vm: %s\n", err[0] ? err : strerror(-ret));
		w.exit_status = VM_EXIT_SETUP;
		goto out;
	}
	ret = vm_start(w.vm, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "fsvisor vm: %s\n", err);
		w.exit_status = VM_EXIT_SETUP;
		goto out;
	}
	if (opts->report_startup)
		report_startup(&w, t_main);
	loop(&w);
	if (opts->report_startup)
		report_memory();
	vm_stop(w.vm);
	drain_console(&w);
	if (w.exit_status == VM_EXIT_FAILED) {
		restore_tty();
		fprintf(stderr, "fsvisor vm: %s\n", w.vm->error);
	}
out:
	restore_tty();
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (w.clients[i].fd >= 0)
			close(w.clients[i].fd);
	if (w.listen_fd >= 0) {
		close(w.listen_fd);
		unlink(opts->control_path);
	}
	if (w.log_fd >= 0)
		close(w.log_fd);
	ringfile_close(w.ring);
	if (w.room_fd >= 0)
		close(w.room_fd);
	if (w.sig_fd >= 0)
		close(w.sig_fd);
	if (w.epfd >= 0)
		close(w.epfd);
	vm_destroy(w.vm);
	vm_config_free(restored);
	return w.exit_status;
}

json_t *vmm_state_info(const char *dir, char *err, size_t errlen)
{
	struct vm_config *cfg = NULL;
	struct ss_reader *r;
	char why[1024] = "";
	json_t *info;

	if (ss_open(dir, &r, err, errlen))
		return NULL;
	info = ss_describe(r);
	if (vm_config_parse_saved(ss_config(r), &cfg, why, sizeof(why)) == 0)
		vm_state_check(cfg, r, why, sizeof(why));
	json_object_set_new(info, "restorable", json_boolean(!why[0]));
	if (why[0])
		json_object_set_new(info, "why_not", json_string(why));
	vm_config_free(cfg);
	ss_reader_free(r);
	return info;
}
