// SPDX-License-Identifier: MIT
/*
 * The switch worker (`fsvisor switch run`): one process, one thread, one
 * loop on an io_uring (ring.c) that watches the VMs' ports and an epoll
 * descriptor for the rest: the TAP, the uplink, the control socket,
 * signals and two timers (MAC aging, held frames of rate-limited ports).
 * Everything the engine decides happens in this thread, which is what
 * lets the engine go without locks.  docs/vswitch.md describes the
 * process.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "vswitch/worker.h"

#define AGE_INTERVAL_S 1

static const char *const type_names[] = {
	[VSWITCH_PRIVATE] = "private",
	[VSWITCH_INTERNAL] = "internal",
	[VSWITCH_EXTERNAL] = "external",
};

int vswitch_type_parse(const char *s, enum vswitch_type *out)
{
	for (unsigned int i = 0; s && i < ARRAY_SIZE(type_names); i++) {
		if (strcmp(s, type_names[i]) == 0) {
			*out = (enum vswitch_type)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *vswitch_type_name(enum vswitch_type type)
{
	return (unsigned int)type < ARRAY_SIZE(type_names) ? type_names[type] : "?";
}

uint64_t wk_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int wk_epoll_set(struct worker *w, int fd, uint64_t tag, uint32_t events, int op)
{
	struct epoll_event ev = { .events = events, .data.u64 = tag };

	return epoll_ctl(w->epfd, op, fd, &ev) < 0 ? -errno : 0;
}

/* ---- the switch's type: its TAP and uplink ------------------------------ */

static unsigned int free_ports(struct worker *w)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < VSWITCH_MAX_PORTS; i++)
		n += !w->ports[i].used;
	return n;
}

/* Give a port a new descriptor, keeping its id, policy and counters. */
static void swap_fd(struct worker *w, struct wk_port *p, int fd)
{
	wk_port_unwatch(w, p);
	close(p->fd);
	p->fd = fd;
	p->dead = false;
	if (wk_port_watch(w, p) < 0)
		log_warn("port %s: cannot watch it", p->name);
}

static int attach(struct worker *w, enum wk_kind kind, int fd, char *err,
		  size_t errlen)
{
	int *slot = kind == WK_HOST ? &w->host_port : &w->uplink_port;
	struct vswitch_port_config cfg;
	int id;

	if (*slot >= 0) {
		swap_fd(w, &w->ports[*slot], fd);
		return 0;
	}
	wk_policy_default(&cfg);
	id = wk_port_open(w, kind, wk_kind_name(kind), fd, &cfg, err, errlen);
	if (id < 0) {
		close(fd);
		return id;
	}
	*slot = id;
	return 0;
}

int wk_configure(struct worker *w, enum vswitch_type type, const char *host_if,
		 const char *uplink, char *err, size_t errlen)
{
	bool need_tap, need_up;
	int tap_fd = -1, up_fd = -1, ret;

	if (w->reap) {
		wk_ports_reap(w);
		w->reap = false;
	}
	if (type != VSWITCH_PRIVATE && (!host_if || !host_if[0])) {
		snprintf(err, errlen, "an %s switch needs host_if, the name of the host's TAP device",
			 vswitch_type_name(type));
		return -EINVAL;
	}
	if (type == VSWITCH_EXTERNAL && (!uplink || !uplink[0])) {
		snprintf(err, errlen, "an external switch needs an uplink: the host NIC it is bound to");
		return -EINVAL;
	}
	if (type == VSWITCH_EXTERNAL && strcmp(uplink, host_if) == 0) {
		snprintf(err, errlen, "the uplink cannot be the switch's own host interface %s",
			 host_if);
		return -EINVAL;
	}
	need_tap = type != VSWITCH_PRIVATE &&
		   (w->host_port < 0 || strcmp(host_if, w->host_if) != 0);
	need_up = type == VSWITCH_EXTERNAL &&
		  (w->uplink_port < 0 || strcmp(uplink, w->uplink) != 0);
	if ((unsigned int)((need_tap && w->host_port < 0) + (need_up && w->uplink_port < 0)) >
	    free_ports(w)) {
		snprintf(err, errlen, "the switch has no free port (%d in use)",
			 VSWITCH_MAX_PORTS);
		return -ENOSPC;
	}
	/* Everything that can fail is opened before anything is changed. */
	if (need_up) {
		up_fd = wk_uplink_open(uplink, err, errlen);
		if (up_fd < 0)
			return up_fd;
	}
	if (need_tap) {
		tap_fd = wk_tap_open(host_if, err, errlen);
		if (tap_fd < 0) {
			if (up_fd >= 0)
				close(up_fd);
			return tap_fd;
		}
	}

	if (type != VSWITCH_EXTERNAL && w->uplink_port >= 0) {
		log_info("uplink %s released", w->uplink);
		wk_port_close(w, (uint32_t)w->uplink_port);
	}
	if (type == VSWITCH_PRIVATE && w->host_port >= 0) {
		log_info("host interface %s removed", w->host_if);
		wk_port_close(w, (uint32_t)w->host_port);
	}
	if (need_tap) {
		ret = attach(w, WK_HOST, tap_fd, err, errlen);
		if (ret) {
			if (up_fd >= 0)
				close(up_fd);
			return ret;
		}
		snprintf(w->host_if, sizeof(w->host_if), "%s", host_if);
		w->host_error[0] = 0;
		log_info("host interface %s created", host_if);
	}
	if (need_up) {
		ret = attach(w, WK_UPLINK, up_fd, err, errlen);
		if (ret)
			return ret;
		snprintf(w->uplink, sizeof(w->uplink), "%s", uplink);
		w->uplink_error[0] = 0;
		log_info("uplink %s bound", uplink);
	}
	w->type = type;
	return 0;
}

/* ---- the loop ----------------------------------------------------------- */

static void termination_signals(sigset_t *mask)
{
	sigemptyset(mask);
	sigaddset(mask, SIGTERM);
	sigaddset(mask, SIGINT);
	sigaddset(mask, SIGHUP);
}

static int setup(struct worker *w, char *err, size_t errlen)
{
	struct itimerspec age = {
		.it_interval.tv_sec = AGE_INTERVAL_S,
		.it_value.tv_sec = AGE_INTERVAL_S,
	};
	sigset_t mask;
	int ret;

	w->sw = vswitch_create(NULL);
	if (!w->sw) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ret = wk_datapath_init(w);
	if (ret) {
		snprintf(err, errlen, "receive buffers: %s", strerror(-ret));
		return ret;
	}
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd >= 0) {
		ret = wk_ring_init(w, err, errlen);
		if (ret)
			return ret;
	}
	termination_signals(&mask);
	w->sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	w->age_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	w->hold_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (w->epfd < 0 || w->sig_fd < 0 || w->age_fd < 0 || w->hold_fd < 0 ||
	    timerfd_settime(w->age_fd, 0, &age, NULL) < 0) {
		ret = -errno;
		snprintf(err, errlen, "event loop: %s", strerror(errno));
		return ret;
	}
	if ((ret = wk_epoll_set(w, w->sig_fd, WK_TAG(WK_TAG_SIGNAL, 0), EPOLLIN, EPOLL_CTL_ADD)) ||
	    (ret = wk_epoll_set(w, w->age_fd, WK_TAG(WK_TAG_AGE, 0), EPOLLIN, EPOLL_CTL_ADD)) ||
	    (ret = wk_epoll_set(w, w->hold_fd, WK_TAG(WK_TAG_HOLD, 0), EPOLLIN, EPOLL_CTL_ADD))) {
		snprintf(err, errlen, "event loop: %s", strerror(-ret));
		return ret;
	}
	ret = wk_control_open(w, err, errlen);
	if (ret)
		return ret;
	return wk_configure(w, w->opts->type, w->opts->host_if, w->opts->uplink,
			    err, errlen);
}

static void handle_signal(struct worker *w)
{
	struct signalfd_siginfo si;

	if (read(w->sig_fd, &si, sizeof(si)) != sizeof(si))
		return;
	log_info("signal %u: stopping", si.ssi_signo);
	w->exit_status = VSWITCH_EXIT_STOPPED;
	w->done = true;
}

static void handle_age(struct worker *w)
{
	uint64_t expirations;

	if (read(w->age_fd, &expirations, sizeof(expirations)) > 0)
		vswitch_age(w->sw, wk_now_ns());
}

static void dispatch(struct worker *w, const struct epoll_event *ev)
{
	uint32_t kind = (uint32_t)(ev->data.u64 >> 32);
	uint32_t idx = (uint32_t)ev->data.u64;

	switch (kind) {
	case WK_TAG_PORT:
		if (idx < VSWITCH_MAX_PORTS && w->ports[idx].used)
			wk_port_readable(w, &w->ports[idx], ev->events);
		break;
	case WK_TAG_CLIENT:
		if (idx < WK_MAX_CLIENTS && w->clients[idx].fd >= 0)
			wk_control_message(w, idx);
		break;
	case WK_TAG_LISTEN:
		wk_control_accept(w);
		break;
	case WK_TAG_SIGNAL:
		handle_signal(w);
		break;
	case WK_TAG_AGE:
		handle_age(w);
		break;
	case WK_TAG_HOLD:
		wk_held_timer(w);
		break;
	}
}

/*
 * The control plane's round: what epoll has ready now.  Its descriptors
 * are level-triggered, so while a round finds something the next one
 * looks again (a client may have sent two requests).
 */
static int control_round(struct worker *w)
{
	struct epoll_event evs[64];
	int n = epoll_wait(w->epfd, evs, ARRAY_SIZE(evs), 0);

	if (n < 0 && errno == EINTR)
		return 0;
	if (n < 0)
		return -errno;
	w->control_pending = n > 0;
	for (int i = 0; i < n && !w->done; i++)
		dispatch(w, &evs[i]);
	return 0;
}

/* The ports' frames, then the control plane; see ring.c. */
static void loop(struct worker *w)
{
	while (!w->done) {
		bool more = w->nbusy || w->control_pending;
		int ret = wk_ring_run(w, !more);

		if (!ret) {
			wk_ring_busy_turn(w);
			if (w->control_pending && !w->done)
				ret = control_round(w);
		}
		if (ret) {
			log_error("event loop: %s", strerror(-ret));
			w->exit_status = VSWITCH_EXIT_FAILED;
			return;
		}
		if (w->reap) {
			wk_ports_reap(w);
			w->reap = false;
		}
	}
}

static void teardown(struct worker *w)
{
	wk_control_close(w);
	/* Closing the TAP's descriptor removes the interface. */
	for (uint32_t i = 0; i < VSWITCH_MAX_PORTS; i++)
		wk_port_close(w, i);
	wk_datapath_free(w);
	wk_ring_free(w);
	if (w->hold_fd >= 0)
		close(w->hold_fd);
	if (w->age_fd >= 0)
		close(w->age_fd);
	if (w->sig_fd >= 0)
		close(w->sig_fd);
	if (w->epfd >= 0)
		close(w->epfd);
	if (w->sw)
		vswitch_destroy(w->sw);
}

int vswitch_worker_run(const struct vswitch_worker_opts *opts)
{
	static struct worker w;		/* large: the port table and receive batch */
	char tag[NAME_MAX_LEN + 16];
	char err[1024] = "";
	sigset_t mask;
	int ret;

	memset(&w, 0, sizeof(w));
	w.opts = opts;
	w.epfd = w.listen_fd = w.sig_fd = w.age_fd = w.hold_fd = -1;
	w.host_port = w.uplink_port = -1;
	w.started_ns = wk_now_ns();
	for (unsigned int i = 0; i < WK_MAX_CLIENTS; i++)
		w.clients[i].fd = -1;
	snprintf(tag, sizeof(tag), "switch %s", opts->name);
	log_set_tag(tag);

	termination_signals(&mask);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	ret = setup(&w, err, sizeof(err));
	if (ret) {
		log_error("%s", err[0] ? err : strerror(-ret));
		teardown(&w);
		return VSWITCH_EXIT_SETUP;
	}
	log_info("running: %s%s%s%s%s", vswitch_type_name(w.type),
		 w.host_port >= 0 ? ", host interface " : "",
		 w.host_port >= 0 ? w.host_if : "",
		 w.uplink_port >= 0 ? ", uplink " : "",
		 w.uplink_port >= 0 ? w.uplink : "");
	w.exit_status = VSWITCH_EXIT_STOPPED;
	loop(&w);
	teardown(&w);
	log_info("stopped");
	return w.exit_status;
}
