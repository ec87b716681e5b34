// SPDX-License-Identifier: MIT
/*
 * The service's side of the agent protocol (docs/integration.md).
 *
 * While a VM runs the service listens on "vsock_18755" in the VM's
 * directory, which the worker's vsock device connects a guest's
 * connection to host port 18755 to.  One thread, the hub, owns those
 * listeners and the agents' connections: it reads frames, answers the
 * agent, and every 250 ms sends what is due (a heartbeat every 2 s, a
 * time sample every 5 s).  It does everything under the service lock,
 * but nothing it does there waits: every socket is non-blocking, what a
 * peer does not take at once waits in a bounded buffer, and a peer that
 * lets that fill is disconnected.  Requests made through the mount
 * (shutdown, freeze, copy) queue their frame the same way and then wait
 * for the answer with the lock dropped, so a guest that never answers
 * costs them their timeout and nobody else anything.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "service/integration.h"

#define HUB_TICK_MS		250
#define HEARTBEAT_MS		2000
#define HEARTBEAT_LOST_MS	(3 * HEARTBEAT_MS)
#define TIME_SAMPLE_MS		5000
#define HELLO_WAIT_MS		10000	/* a connection that does not say hello */
#define OUT_MAX			(4 * 1024 * 1024)
#define PENDING_MAX		64
#define INTERNAL_TIMEOUT_MS	10000	/* heartbeats and samples never answered */
#define SHUTDOWN_ACK_MS		5000
#define STATUS_WAIT_MS		2000
#define BACKUP_WAIT_MS		30000
#define FILE_WAIT_MS		10000
#define FRAMES_PER_PASS		256

enum hub_tag {
	HT_WAKE = 1,
	HT_TIMER,
	HT_LISTEN,
	HT_CONN,
};

#define TAG(kind, id)	((uint64_t)(kind) << 56 | (id))
#define TAG_KIND(t)	((unsigned int)((t) >> 56))
#define TAG_ID(t)	((t) & ((1ULL << 56) - 1))

struct ic_waiter {
	bool done;
	int err;			/* 0, or a negative errno */
	uint32_t have;
	uint64_t num[IC_TAG_MAX + 1];
	char message[IC_MESSAGE_MAX + 1];
	pthread_cond_t cond;
};

struct pending {
	uint32_t id;
	uint16_t type;
	bool step;			/* a time sample whose correction is a step */
	uint64_t sent_ms;		/* monotonic */
	int64_t sent_ns;		/* realtime, for a time sample */
	struct ic_waiter *w;		/* NULL: the service's own request */
};

struct agent_conn {
	struct vm_obj *vm;
	int fd;
	uint64_t id;
	uint64_t opened_ms;
	uint8_t *in;			/* IC_MAX_FRAME */
	size_t in_len;
	uint8_t *out;
	size_t out_off, out_len, out_cap;
	bool out_watched;		/* EPOLLOUT asked for */
	bool dead;
	char why[128];			/* why it is dead */
	uint32_t next_id;
	struct pending pend[PENDING_MAX];
	unsigned int npend;
};

struct agent_hub {
	pthread_t thread;
	bool started;
	bool stopping;
	int epfd, wake_fd, timer_fd;
	uint64_t next_id;
};

static uint64_t mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static int64_t real_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void hub_wake(struct agent_hub *hub)
{
	uint64_t one = 1;

	if (write(hub->wake_fd, &one, sizeof(one)) < 0) {
		/* A wakeup is pending already. */
	}
}

/* ---- sending ------------------------------------------------------------------- */

static void conn_kill(struct service *s, struct agent_conn *c, const char *why)
{
	if (c->dead)
		return;
	c->dead = true;
	snprintf(c->why, sizeof(c->why), "%s", why);
	/* The hub closes it at its next pass, which this brings forward. */
	hub_wake(s->hub);
}

static void conn_watch(struct service *s, struct agent_conn *c, bool out)
{
	struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0),
				  .data.u64 = TAG(HT_CONN, c->id) };

	if (out == c->out_watched)
		return;
	if (epoll_ctl(s->hub->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->out_watched = out;
}

static void conn_flush(struct service *s, struct agent_conn *c)
{
	while (c->out_len && !c->dead) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n > 0) {
			c->out_off += (size_t)n;
			c->out_len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		conn_kill(s, c, "the connection broke");
		return;
	}
	if (!c->out_len)
		c->out_off = 0;
	conn_watch(s, c, c->out_len > 0);
}

/* Queue a frame; never waits.  -ECONNRESET: the connection is (now) gone. */
static int conn_send(struct service *s, struct agent_conn *c, const uint8_t *frame,
		     size_t len)
{
	if (c->dead)
		return -ECONNRESET;
	if (c->out_len + len > OUT_MAX) {
		conn_kill(s, c, "the agent does not read what it is sent");
		return -ECONNRESET;
	}
	if (c->out_off + c->out_len + len > c->out_cap) {
		size_t need = c->out_len + len, cap = c->out_cap ? c->out_cap : 65536;
		uint8_t *p;

		if (c->out_len)
			memmove(c->out, c->out + c->out_off, c->out_len);
		c->out_off = 0;
		while (cap < need)
			cap *= 2;
		if (cap > c->out_cap) {
			p = realloc(c->out, cap);
			if (!p) {
				conn_kill(s, c, "out of memory");
				return -ECONNRESET;
			}
			c->out = p;
			c->out_cap = cap;
		}
	}
	memcpy(c->out + c->out_off + c->out_len, frame, len);
	c->out_len += len;
	conn_flush(s, c);
	return c->dead ? -ECONNRESET : 0;
}

static int send_writer(struct service *s, struct agent_conn *c, struct ic_writer *w)
{
	int len = ic_end(w);

	return len < 0 ? -EMSGSIZE : conn_send(s, c, w->buf, (size_t)len);
}

static void reply_error(struct service *s, struct agent_conn *c, const struct ic_hdr *req,
			uint32_t err, const char *why)
{
	uint8_t frame[IC_HDR_LEN + 4 + IC_MESSAGE_MAX];
	struct ic_writer w;

	if (!req->id)
		return;		/* a notification wants no answer */
	ic_begin_reply(&w, frame, sizeof(frame), req, err);
	if (why && why[0])
		ic_put_str(&w, IC_T_MESSAGE, why);
	send_writer(s, c, &w);
}

/* A request of ours: its id, registered as waiting for an answer; 0 when too many wait. */
static uint32_t pending_add(struct agent_conn *c, uint16_t type, struct ic_waiter *w)
{
	struct pending *p;

	if (c->npend == PENDING_MAX)
		return 0;
	if (++c->next_id == 0)
		c->next_id = 1;
	p = &c->pend[c->npend++];
	*p = (struct pending){ .id = c->next_id, .type = type, .sent_ms = mono_ms(),
			       .sent_ns = real_ns(), .w = w };
	return p->id;
}

static void pending_del(struct agent_conn *c, unsigned int i)
{
	c->pend[i] = c->pend[--c->npend];
}

static void waiter_done(struct ic_waiter *w, int err)
{
	w->err = err;
	w->done = true;
	pthread_cond_broadcast(&w->cond);
}

/* ---- the service's own requests ----------------------------------------------- */

static void send_heartbeat(struct service *s, struct vm_obj *vm, struct agent_conn *c)
{
	uint8_t frame[64];
	struct ic_writer w;
	uint32_t id = pending_add(c, IC_HEARTBEAT, NULL);

	if (!id)
		return;
	ic_begin(&w, frame, sizeof(frame), IC_HEARTBEAT, 0, id, 0);
	ic_put_u64(&w, IC_T_SEQ, ++vm->ic->hb_seq);
	send_writer(s, c, &w);
}

/*
 * A time sample: the guest answers with its clock, and the correction
 * (a step when @step or when it is more than 1 s off) follows from that.
 */
static void send_time(struct service *s, struct agent_conn *c, bool step)
{
	uint8_t frame[64];
	struct ic_writer w;
	uint32_t id = pending_add(c, IC_TIME, NULL);

	if (!id)
		return;
	c->pend[c->npend - 1].step = step;
	ic_begin(&w, frame, sizeof(frame), IC_TIME, 0, id, 0);
	ic_put_u64(&w, IC_T_TIME, (uint64_t)c->pend[c->npend - 1].sent_ns);
	ic_put_u32(&w, IC_T_MODE, IC_TIME_SAMPLE);
	send_writer(s, c, &w);
}

static void send_kvp(struct service *s, struct agent_conn *c, uint16_t type, const char *key,
		     const char *value)
{
	uint8_t frame[IC_HDR_LEN + 32 + IC_KEY_MAX + IC_VALUE_MAX];
	struct ic_writer w;

	ic_begin(&w, frame, sizeof(frame), type, 0, 0, 0);
	ic_put_u32(&w, IC_T_POOL, IC_POOL_HOST);
	if (key)
		ic_put_str(&w, IC_T_KEY, key);
	if (value)
		ic_put_str(&w, IC_T_VALUE, value);
	send_writer(s, c, &w);
}

static bool connected(struct vm_obj *vm)
{
	return vm->ic->conn && !vm->ic->conn->dead && vm->ic->agent_version;
}

/* After a hello: everything of ours the agent should know, from the start. */
static void resync(struct service *s, struct vm_obj *vm, struct agent_conn *c)
{
	struct ic_vm *ic = vm->ic;
	struct kvp_pool *host = &ic->pools[IC_POOL_HOST];
	uint64_t now = mono_ms();

	if (ic->enabled[ICS_KVP]) {
		send_kvp(s, c, IC_KVP_CLEAR, NULL, NULL);
		for (size_t i = 0; i < host->n; i++)
			send_kvp(s, c, IC_KVP_SET, host->items[i]->key, host->items[i]->value);
	}
	if (ic->enabled[ICS_TIME_SYNC])
		send_time(s, c, true);
	if (ic->enabled[ICS_HEARTBEAT] && vm->state == VMS_RUNNING)
		send_heartbeat(s, vm, c);
	ic->hb_next = now + HEARTBEAT_MS;
	ic->ts_next = now + TIME_SAMPLE_MS;
}

void agent_kvp_host(struct service *s, struct vm_obj *vm, const char *key, const char *value)
{
	if (!connected(vm) || !vm->ic->enabled[ICS_KVP])
		return;
	send_kvp(s, vm->ic->conn, value ? IC_KVP_SET : IC_KVP_DELETE, key, value);
}

void agent_service_changed(struct service *s, struct vm_obj *vm, enum ic_service svc)
{
	struct ic_vm *ic = vm->ic;

	if (!connected(vm) || !ic->enabled[svc])
		return;
	/* Back on: what the agent missed, now. */
	if (svc == ICS_KVP) {
		struct kvp_pool *host = &ic->pools[IC_POOL_HOST];

		send_kvp(s, ic->conn, IC_KVP_CLEAR, NULL, NULL);
		for (size_t i = 0; i < host->n; i++)
			send_kvp(s, ic->conn, IC_KVP_SET, host->items[i]->key,
				 host->items[i]->value);
	} else if (svc == ICS_TIME_SYNC) {
		send_time(s, ic->conn, true);
	} else if (svc == ICS_HEARTBEAT) {
		ic->hb_last = 0;	/* contact is made again, not assumed */
		if (vm->state == VMS_RUNNING)
			send_heartbeat(s, vm, ic->conn);
	}
}

/* ---- heartbeat ------------------------------------------------------------------- */

static void heartbeat_echo(struct ic_vm *ic)
{
	uint64_t now = mono_ms();

	if (!ic->hb_last || now - ic->hb_last > HEARTBEAT_LOST_MS)
		ic->hb_ok_since = time(NULL);
	ic->hb_last = now;
	ic->hb_last_real = time(NULL);
}

bool agent_heartbeat_ok(struct vm_obj *vm)
{
	time_t since;

	return strcmp(agent_heartbeat(vm, &since), "ok") == 0;
}

const char *agent_heartbeat(struct vm_obj *vm, time_t *since)
{
	struct ic_vm *ic = vm->ic;
	uint64_t now = mono_ms();

	if (!ic->enabled[ICS_HEARTBEAT]) {
		*since = ic->hb_setting_since;
		return "disabled";
	}
	if (vm->state == VMS_PAUSED && ic->paused_since) {
		*since = ic->paused_since;
		return "paused";
	}
	if (!ic->hb_last) {
		*since = ic->run_since > ic->hb_setting_since ? ic->run_since : ic->hb_setting_since;
		return "no-contact";
	}
	if (now - ic->hb_last <= HEARTBEAT_LOST_MS) {
		*since = ic->hb_ok_since;
		return "ok";
	}
	*since = ic->hb_last_real + HEARTBEAT_LOST_MS / 1000;
	return "lost";
}

/* ---- what the agent sends --------------------------------------------------------- */

#define SAMPLE_RTT_MAX_NS	1000000000LL	/* a slower answer measures nothing */
#define STEP_OVER_NS		1000000000LL	/* further off than this: a step */
#define SLEW_OVER_NS		1000000LL	/* nearer than this: left alone */

static void on_time_reply(struct service *s, struct vm_obj *vm, struct agent_conn *c,
			  const struct pending *p, const struct ic_msg *m)
{
	struct ic_vm *ic = vm->ic;
	int64_t now = real_ns(), rtt = now - p->sent_ns, offset, mag;
	uint8_t frame[64];
	struct ic_writer w;
	bool step;

	if (m->h.status || !ic_has(m, IC_T_GUEST_TIME) || rtt > SAMPLE_RTT_MAX_NS)
		return;
	/* Guest minus host, at the middle of the round trip. */
	offset = (int64_t)m->num[IC_T_GUEST_TIME] - (p->sent_ns + rtt / 2);
	ic->ts_offset_ns = offset;
	ic->ts_when = time(NULL);
	ic->ts_valid = true;
	mag = offset < 0 ? -offset : offset;
	step = p->step || mag > STEP_OVER_NS;
	if (mag < SLEW_OVER_NS || !ic->enabled[ICS_TIME_SYNC])
		return;
	/* The correction is relative: however late it comes, it is right. */
	ic_begin(&w, frame, sizeof(frame), IC_TIME, 0, 0, 0);
	ic_put_u64(&w, IC_T_TIME, (uint64_t)now);
	ic_put_u32(&w, IC_T_MODE, step ? IC_TIME_STEP : IC_TIME_SLEW);
	ic_put_u64(&w, IC_T_DELTA, (uint64_t)-offset);
	send_writer(s, c, &w);
}

static void on_reply(struct service *s, struct vm_obj *vm, struct agent_conn *c,
		     const struct ic_msg *m, int parsed)
{
	struct pending p;
	unsigned int i;

	for (i = 0; i < c->npend && c->pend[i].id != m->h.id; i++)
		;
	if (i == c->npend || c->pend[i].type != m->h.type)
		return;		/* late, or not ours: given up on already */
	p = c->pend[i];
	pending_del(c, i);
	if (p.w) {
		struct ic_waiter *w = p.w;
		int err = parsed ? -EPROTO : m->h.status ? -(int)m->h.status : 0;

		if (m->h.status >= 4096)
			err = -EPROTO;
		w->have = m->have;
		memcpy(w->num, m->num, sizeof(w->num));
		ic_str_copy(m, IC_T_MESSAGE, w->message, sizeof(w->message));
		if (parsed && !w->message[0])
			snprintf(w->message, sizeof(w->message), "the agent's answer is malformed");
		waiter_done(w, err);
		return;
	}
	if (parsed)
		return;
	/* A heartbeat refused because the agent is frozen still shows it alive. */
	if (p.type == IC_HEARTBEAT && (m->h.status == 0 || m->h.status == EBUSY))
		heartbeat_echo(vm->ic);
	else if (p.type == IC_TIME)
		on_time_reply(s, vm, c, &p, m);
}

static void on_hello(struct service *s, struct vm_obj *vm, struct agent_conn *c,
		     const struct ic_msg *m)
{
	struct ic_vm *ic = vm->ic;
	uint8_t frame[64];
	struct ic_writer w;
	uint64_t vmin = m->num[IC_T_VERSION_MIN], vmax = m->num[IC_T_VERSION_MAX];

	if (vmax < IC_VERSION_MIN || vmin > IC_VERSION_MAX || vmin > vmax) {
		reply_error(s, c, &m->h, EPROTO, "no protocol version in common (this host speaks 1)");
		conn_kill(s, c, "no protocol version in common");
		return;
	}
	ic->agent_version = vmax < IC_VERSION_MAX ? (uint32_t)vmax : IC_VERSION_MAX;
	ic->agent_caps = (uint32_t)m->num[IC_T_CAPS] & IC_CAP_ALL;
	ic_str_copy(m, IC_T_AGENT, ic->agent_name, sizeof(ic->agent_name));
	ic_begin_reply(&w, frame, sizeof(frame), &m->h, 0);
	ic_put_u32(&w, IC_T_VERSION, ic->agent_version);
	ic_put_u32(&w, IC_T_CAPS, ic_enabled_caps(ic));
	send_writer(s, c, &w);
	log_info("vm %s: agent connected (%s, protocol %u)", vm->name,
		 ic->agent_name[0] ? ic->agent_name : "unnamed", ic->agent_version);
	svc_event(s, "vm", vm->name, "integration agent connected");
	resync(s, vm, c);
}

static void on_kvp(struct service *s, struct vm_obj *vm, struct agent_conn *c,
		   const struct ic_msg *m)
{
	struct ic_vm *ic = vm->ic;
	uint64_t pool = m->num[IC_T_POOL];
	const char *key = (const char *)m->str[IC_T_KEY].p;
	size_t klen = m->str[IC_T_KEY].len;
	const char *why;
	int ret = 0;

	if (pool != IC_POOL_GUEST && pool != IC_POOL_INTRINSIC) {
		reply_error(s, c, &m->h, pool == IC_POOL_HOST ? EPERM : EINVAL,
			    "the agent sets the guest and intrinsic pools only");
		return;
	}
	if (!ic->enabled[ICS_KVP]) {
		reply_error(s, c, &m->h, EPERM, "data exchange is off for this VM");
		return;
	}
	if (m->h.type == IC_KVP_CLEAR) {
		kvp_clear(s, &ic->pools[pool]);
	} else if ((why = kvp_key_problem(key, klen))) {
		reply_error(s, c, &m->h, EINVAL, why);
		return;
	} else if (m->h.type == IC_KVP_DELETE) {
		kvp_delete(s, &ic->pools[pool], key, klen);
	} else {
		ret = kvp_set(s, &ic->pools[pool], key, klen, (const char *)m->str[IC_T_VALUE].p,
			      m->str[IC_T_VALUE].len);
	}
	if (ret) {
		reply_error(s, c, &m->h, (uint32_t)-ret, ret == -ENOSPC ?
			    "the pool holds 1024 items already" : "cannot keep the item");
		return;
	}
	if (m->h.id) {
		uint8_t frame[IC_HDR_LEN];
		struct ic_writer w;

		ic_begin_reply(&w, frame, sizeof(frame), &m->h, 0);
		send_writer(s, c, &w);
	}
}

static void on_frame(struct service *s, struct vm_obj *vm, struct agent_conn *c,
		     const struct ic_hdr *h, const uint8_t *payload)
{
	struct ic_msg m;
	const char *why;
	int ret = ic_parse(h, payload, &m, &why);

	if (ret == IC_BAD_FRAME) {
		conn_kill(s, c, why);
		return;
	}
	if (h->flags & IC_F_REPLY) {
		on_reply(s, vm, c, &m, ret);
		return;
	}
	if (ret) {
		reply_error(s, c, h, ret == IC_BAD_TYPE ? ENOSYS : EINVAL, why);
		return;
	}
	if (!vm->ic->agent_version && h->type != IC_HELLO) {
		reply_error(s, c, h, EPROTO, "the first message is a hello");
		conn_kill(s, c, "the agent did not say hello first");
		return;
	}
	switch (h->type) {
	case IC_HELLO:
		on_hello(s, vm, c, &m);
		break;
	case IC_KVP_SET:
	case IC_KVP_DELETE:
	case IC_KVP_CLEAR:
		on_kvp(s, vm, c, &m);
		break;
	default:
		reply_error(s, c, h, ENOSYS, "the host does not take this request");
		break;
	}
}

static void conn_read(struct service *s, struct vm_obj *vm, struct agent_conn *c)
{
	unsigned int frames = 0;

	while (!c->dead && frames < FRAMES_PER_PASS) {
		ssize_t n = recv(c->fd, c->in + c->in_len, IC_MAX_FRAME - c->in_len, MSG_DONTWAIT);
		size_t off = 0;

		if (n == 0) {
			conn_kill(s, c, "the agent closed the connection");
			return;
		}
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				conn_kill(s, c, "the connection broke");
			return;
		}
		c->in_len += (size_t)n;
		while (!c->dead) {
			struct ic_hdr h;
			int ret = ic_hdr_decode(c->in + off, c->in_len - off, &h);

			if (ret < 0) {
				conn_kill(s, c, "the agent sent something that is not a frame");
				return;
			}
			if (ret == 0 || c->in_len - off < IC_HDR_LEN + h.len)
				break;	/* the rest comes later (or never: that costs nothing) */
			on_frame(s, vm, c, &h, c->in + off + IC_HDR_LEN);
			off += IC_HDR_LEN + h.len;
			frames++;
		}
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
}

/* ---- connections ---------------------------------------------------------------- */

static void conn_close(struct service *s, struct vm_obj *vm, const char *why)
{
	struct ic_vm *ic = vm->ic;
	struct agent_conn *c = ic->conn;

	if (!c)
		return;
	epoll_ctl(s->hub->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	for (unsigned int i = 0; i < c->npend; i++)
		if (c->pend[i].w)
			waiter_done(c->pend[i].w, -ECONNRESET);
	if (ic->agent_version)
		svc_event(s, "vm", vm->name, "integration agent disconnected");
	log_info("vm %s: agent connection closed: %s", vm->name, why);
	ic->conn = NULL;
	ic->agent_version = 0;
	ic->agent_caps = 0;
	free(c->in);
	free(c->out);
	free(c);
	vm_put(vm);
}

static void hub_accept(struct service *s, struct vm_obj *vm)
{
	struct ic_vm *ic = vm->ic;

	for (;;) {
		int fd = accept4(ic->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN };
		struct agent_conn *c;

		if (fd < 0)
			return;
		/* A new connection from the guest: the agent started over. */
		conn_close(s, vm, "the agent connected again");
		c = calloc(1, sizeof(*c));
		if (c)
			c->in = malloc(IC_MAX_FRAME);
		if (!c || !c->in) {
			free(c);
			close(fd);
			continue;
		}
		c->vm = vm;
		c->fd = fd;
		c->id = ++s->hub->next_id;
		c->opened_ms = mono_ms();
		ev.data.u64 = TAG(HT_CONN, c->id);
		if (epoll_ctl(s->hub->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			free(c->in);
			free(c);
			close(fd);
			continue;
		}
		vm->refs++;
		ic->conn = c;
		ic->conn_gen++;
	}
}

static void listen_path(const struct vm_obj *vm, struct sockaddr_un *sa, char *name, size_t len)
{
	snprintf(name, len, "vsock_%u", IC_PORT);
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	/* Through the directory's descriptor: a long state directory fits. */
	snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", vm->dirfd, name);
}

static void listen_start(struct service *s, struct vm_obj *vm)
{
	struct ic_vm *ic = vm->ic;
	struct epoll_event ev = { .events = EPOLLIN };
	struct sockaddr_un sa;
	char name[32];
	int fd;

	if (ic->listen_fd >= 0 || !s->hub)
		return;
	listen_path(vm, &sa, name, sizeof(name));
	unlinkat(vm->dirfd, name, 0);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    fchmodat(vm->dirfd, name, 0600, 0) < 0 || listen(fd, 4) < 0) {
		log_error("vm %s: cannot listen for its agent on %s/%s: %s", vm->name, vm->dir,
			  name, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	ic->listen_id = ++s->hub->next_id;
	ev.data.u64 = TAG(HT_LISTEN, ic->listen_id);
	if (epoll_ctl(s->hub->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		close(fd);
		return;
	}
	ic->listen_fd = fd;
}

static void listen_stop(struct service *s, struct vm_obj *vm, bool remove)
{
	struct ic_vm *ic = vm->ic;
	char name[32];
	struct sockaddr_un sa;

	if (ic->listen_fd < 0)
		return;
	epoll_ctl(s->hub->epfd, EPOLL_CTL_DEL, ic->listen_fd, NULL);
	close(ic->listen_fd);
	ic->listen_fd = -1;
	listen_path(vm, &sa, name, sizeof(name));
	if (remove)
		unlinkat(vm->dirfd, name, 0);
}

void agent_guest_reset(struct service *s, struct vm_obj *vm)
{
	struct ic_vm *ic = vm->ic;

	(void)s;
	ic->hb_last = 0;
	ic->run_since = time(NULL);
	ic->ts_valid = false;
}

void agent_vm_prepare(struct service *s, struct vm_obj *vm)
{
	listen_start(s, vm);
}

void agent_vm_state(struct service *s, struct vm_obj *vm, enum vm_state old)
{
	struct ic_vm *ic = vm->ic;
	enum vm_state st = vm->state;

	if ((st == VMS_RUNNING || st == VMS_PAUSED) && !ic->running) {
		ic->running = true;
		ic->run_since = time(NULL);
		ic->hb_last = 0;
		ic->ts_valid = false;
		listen_start(s, vm);
	}
	if (st == VMS_PAUSED && old != VMS_PAUSED)
		ic->paused_since = time(NULL);
	if (st == VMS_RUNNING && old == VMS_PAUSED) {
		ic->paused_since = 0;
		/* The agent gets its usual time to answer again. */
		if (ic->hb_last) {
			ic->hb_last = mono_ms();
			ic->hb_last_real = time(NULL);
		}
		/* The guest's clock stood still: step it. */
		if (connected(vm) && ic->enabled[ICS_TIME_SYNC])
			send_time(s, ic->conn, true);
	}
	if (st == VMS_OFF || st == VMS_CRASHED) {
		bool was = ic->running || ic->listen_fd >= 0 || ic->conn;

		ic->running = false;
		ic->paused_since = 0;
		ic->hb_last = 0;
		ic->ts_valid = false;
		if (!was)
			return;
		ic->run_since = time(NULL);
		conn_close(s, vm, "the VM is off");
		listen_stop(s, vm, true);
		/* What the guest told us lives as long as its run. */
		kvp_clear(s, &ic->pools[IC_POOL_GUEST]);
		kvp_clear(s, &ic->pools[IC_POOL_INTRINSIC]);
	}
}

/* ---- the hub thread -------------------------------------------------------------- */

static struct vm_obj *vm_by_id(struct service *s, unsigned int kind, uint64_t id)
{
	for (size_t i = 0; i < s->nvms; i++) {
		struct ic_vm *ic = s->vms[i]->ic;

		if (kind == HT_LISTEN && ic->listen_fd >= 0 && ic->listen_id == id)
			return s->vms[i];
		if (kind == HT_CONN && ic->conn && ic->conn->id == id)
			return s->vms[i];
	}
	return NULL;
}

/* What is due for one VM's agent: heartbeats, samples, giving up on answers. */
static void tick_vm(struct service *s, struct vm_obj *vm, uint64_t now)
{
	struct ic_vm *ic = vm->ic;
	struct agent_conn *c = ic->conn;

	if (!c)
		return;
	if (!c->dead && !ic->agent_version && now - c->opened_ms > HELLO_WAIT_MS)
		conn_kill(s, c, "the agent did not say hello");
	if (c->dead) {
		conn_close(s, vm, c->why);
		return;
	}
	for (unsigned int i = 0; i < c->npend; i++) {
		if (!c->pend[i].w && now - c->pend[i].sent_ms > INTERNAL_TIMEOUT_MS)
			pending_del(c, i--);
	}
	if (!ic->agent_version || vm->state != VMS_RUNNING)
		return;
	if (ic->enabled[ICS_HEARTBEAT] && now >= ic->hb_next) {
		ic->hb_next = now + HEARTBEAT_MS;
		send_heartbeat(s, vm, c);
	}
	if (ic->enabled[ICS_TIME_SYNC] && now >= ic->ts_next) {
		ic->ts_next = now + TIME_SAMPLE_MS;
		send_time(s, c, false);
	}
}

static void hub_event(struct service *s, const struct epoll_event *ev)
{
	unsigned int kind = TAG_KIND(ev->data.u64);
	uint64_t discard;
	struct vm_obj *vm;

	switch (kind) {
	case HT_WAKE:
		if (read(s->hub->wake_fd, &discard, sizeof(discard)) < 0)
			discard = 0;
		return;
	case HT_TIMER:
		if (read(s->hub->timer_fd, &discard, sizeof(discard)) < 0)
			discard = 0;
		return;
	}
	/* Gone since (or replaced): the event is stale. */
	vm = vm_by_id(s, kind, TAG_ID(ev->data.u64));
	if (!vm)
		return;
	if (kind == HT_LISTEN) {
		hub_accept(s, vm);
		return;
	}
	if (ev->events & EPOLLOUT)
		conn_flush(s, vm->ic->conn);
	if (ev->events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		conn_read(s, vm, vm->ic->conn);
}

static void *hub_main(void *arg)
{
	struct service *s = arg;

	for (;;) {
		struct epoll_event evs[32];
		int n = epoll_wait(s->hub->epfd, evs, ARRAY_SIZE(evs), -1);
		uint64_t now;

		svc_lock(s);
		if (s->hub->stopping) {
			svc_unlock(s);
			return NULL;
		}
		for (int i = 0; i < n; i++)
			hub_event(s, &evs[i]);
		now = mono_ms();
		for (size_t i = 0; i < s->nvms; i++)
			tick_vm(s, s->vms[i], now);
		svc_unlock(s);
	}
}

int agent_hub_start(struct service *s)
{
	struct itimerspec its = { .it_interval.tv_nsec = HUB_TICK_MS * 1000000L,
				  .it_value.tv_nsec = HUB_TICK_MS * 1000000L };
	struct epoll_event ev = { .events = EPOLLIN };
	struct agent_hub *hub = calloc(1, sizeof(*hub));
	int ret;

	if (!hub)
		return -ENOMEM;
	s->hub = hub;
	hub->epfd = epoll_create1(EPOLL_CLOEXEC);
	hub->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	hub->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (hub->epfd < 0 || hub->wake_fd < 0 || hub->timer_fd < 0 ||
	    timerfd_settime(hub->timer_fd, 0, &its, NULL) < 0)
		return -errno;
	ev.data.u64 = TAG(HT_WAKE, 0);
	if (epoll_ctl(hub->epfd, EPOLL_CTL_ADD, hub->wake_fd, &ev) < 0)
		return -errno;
	ev.data.u64 = TAG(HT_TIMER, 0);
	if (epoll_ctl(hub->epfd, EPOLL_CTL_ADD, hub->timer_fd, &ev) < 0)
		return -errno;
	ret = pthread_create(&hub->thread, NULL, hub_main, s);
	if (ret)
		return -ret;
	hub->started = true;
	return 0;
}

void agent_hub_stop(struct service *s)
{
	struct agent_hub *hub = s->hub;

	if (!hub)
		return;
	if (hub->started) {
		svc_lock(s);
		hub->stopping = true;
		svc_unlock(s);
		hub_wake(hub);
		pthread_join(hub->thread, NULL);
	}
	svc_lock(s);
	/* The VMs run on: the next service listens again and their agents reconnect. */
	for (size_t i = 0; i < s->nvms; i++) {
		conn_close(s, s->vms[i], "the service stops");
		listen_stop(s, s->vms[i], false);
	}
	svc_unlock(s);
	if (hub->epfd >= 0)
		close(hub->epfd);
	if (hub->wake_fd >= 0)
		close(hub->wake_fd);
	if (hub->timer_fd >= 0)
		close(hub->timer_fd);
	free(hub);
	s->hub = NULL;
}

/* ---- requests made through the mount ----------------------------------------------- */

static void waiter_init(struct ic_waiter *w)
{
	pthread_condattr_t a;

	memset(w, 0, sizeof(*w));
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &a);
	pthread_condattr_destroy(&a);
}

/* Forget @w wherever it still waits (it gave up). */
static void waiter_drop(struct vm_obj *vm, struct ic_waiter *w)
{
	struct agent_conn *c = vm->ic->conn;

	for (unsigned int i = 0; c && i < c->npend; i++)
		if (c->pend[i].w == w)
			pending_del(c, i--);
	pthread_cond_destroy(&w->cond);
}

/*
 * Send the frame in @w (its id is @id, registered) and wait up to @ms for
 * the answer, the lock dropped meanwhile.  The caller holds @vm.
 */
static int wait_answer(struct service *s, struct vm_obj *vm, struct ic_waiter *w,
		       struct ic_writer *wr, int ms, char *why, size_t whylen)
{
	struct timespec deadline;
	int ret;

	ret = send_writer(s, vm->ic->conn, wr);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += ms / 1000;
	deadline.tv_nsec += (ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	while (!ret && !w->done) {
		if (pthread_cond_timedwait(&w->cond, &s->lock, &deadline) == ETIMEDOUT &&
		    !w->done) {
			snprintf(why, whylen, "the agent did not answer within %d s", ms / 1000);
			waiter_drop(vm, w);
			return -ETIMEDOUT;
		}
	}
	if (ret)
		snprintf(why, whylen, "the connection to the agent broke");
	else if (w->err == -ECONNRESET)
		snprintf(why, whylen, "the connection to the agent broke");
	else if (w->err)
		snprintf(why, whylen, "%s%s%s", strerror(-w->err), w->message[0] ? ": " : "",
			 w->message);
	ret = ret ? ret : w->err;
	waiter_drop(vm, w);
	return ret;
}

/* Start a request of @type to @vm's agent into @wr (@frame of @len bytes). */
static int request_begin(struct vm_obj *vm, struct ic_waiter *w, struct ic_writer *wr,
			 uint8_t *frame, size_t len, uint16_t type, char *why, size_t whylen)
{
	uint32_t id;

	waiter_init(w);
	if (!connected(vm)) {
		pthread_cond_destroy(&w->cond);
		snprintf(why, whylen, "no agent is connected");
		return -ENOTCONN;
	}
	id = pending_add(vm->ic->conn, type, w);
	if (!id) {
		pthread_cond_destroy(&w->cond);
		snprintf(why, whylen, "too many requests wait for the agent");
		return -EBUSY;
	}
	ic_begin(wr, frame, len, type, 0, id, 0);
	return 0;
}

int agent_shutdown(struct service *s, struct vm_obj *vm, bool reboot, const char *reason,
		   char *why, size_t whylen)
{
	uint8_t frame[IC_HDR_LEN + 16 + IC_REASON_MAX];
	struct ic_waiter w;
	struct ic_writer wr;
	char text[IC_REASON_MAX + 1];
	int ret = request_begin(vm, &w, &wr, frame, sizeof(frame), IC_SHUTDOWN, why, whylen);

	if (ret)
		return ret;
	snprintf(text, sizeof(text), "%s", reason);
	ic_put_u32(&wr, IC_T_MODE, reboot ? IC_SHUTDOWN_REBOOT : IC_SHUTDOWN_POWEROFF);
	ic_put_str(&wr, IC_T_REASON, text);
	return wait_answer(s, vm, &w, &wr, SHUTDOWN_ACK_MS, why, whylen);
}

int agent_freeze(struct service *s, struct vm_obj *vm, uint32_t timeout_ms, uint32_t *count,
		 char *why, size_t whylen)
{
	uint8_t frame[64];
	struct ic_waiter w;
	struct ic_writer wr;
	int ret = request_begin(vm, &w, &wr, frame, sizeof(frame), IC_FREEZE, why, whylen);

	if (ret)
		return ret;
	ic_put_u32(&wr, IC_T_TIMEOUT, timeout_ms);
	ret = wait_answer(s, vm, &w, &wr, BACKUP_WAIT_MS, why, whylen);
	*count = (uint32_t)w.num[IC_T_COUNT];
	return ret;
}

int agent_thaw(struct service *s, struct vm_obj *vm, uint32_t *count, char *why,
	       size_t whylen)
{
	uint8_t frame[64];
	struct ic_waiter w;
	struct ic_writer wr;
	int ret = request_begin(vm, &w, &wr, frame, sizeof(frame), IC_THAW, why, whylen);

	if (ret)
		return ret;
	ret = wait_answer(s, vm, &w, &wr, BACKUP_WAIT_MS, why, whylen);
	*count = (uint32_t)w.num[IC_T_COUNT];
	return ret;
}

int agent_backup_status(struct service *s, struct vm_obj *vm, uint32_t *state,
			uint32_t *remain_ms)
{
	uint8_t frame[64];
	struct ic_waiter w;
	struct ic_writer wr;
	char why[128];
	int ret = request_begin(vm, &w, &wr, frame, sizeof(frame), IC_BACKUP_STATUS, why,
				sizeof(why));

	if (ret)
		return ret;
	ret = wait_answer(s, vm, &w, &wr, STATUS_WAIT_MS, why, sizeof(why));
	*state = (uint32_t)w.num[IC_T_STATE];
	*remain_ms = (w.have & (1u << IC_T_REMAIN)) ? (uint32_t)w.num[IC_T_REMAIN] : 0;
	return ret;
}

/* One file request, answered; the same connection as @gen or -ECONNRESET. */
static int file_call(struct service *s, struct vm_obj *vm, unsigned int gen, uint16_t type,
		     uint32_t handle, uint64_t offset, const void *data, size_t len,
		     uint32_t flags, struct ic_waiter *w, char *why, size_t whylen)
{
	static uint8_t frame[IC_MAX_FRAME];	/* under the lock */
	struct ic_writer wr;
	int ret;

	if (vm->ic->conn_gen != gen || !connected(vm)) {
		snprintf(why, whylen, "the connection to the agent broke");
		return -ECONNRESET;
	}
	ret = request_begin(vm, w, &wr, frame, sizeof(frame), type, why, whylen);
	if (ret)
		return ret;
	ic_put_u32(&wr, IC_T_HANDLE, handle);
	if (type == IC_FILE_DATA) {
		ic_put_u64(&wr, IC_T_OFFSET, offset);
		ic_put_bytes(&wr, IC_T_DATA, data, len);
	} else {
		ic_put_u32(&wr, IC_T_FLAGS, flags);
	}
	return wait_answer(s, vm, w, &wr, FILE_WAIT_MS * (type == IC_FILE_CLOSE ? 3 : 1), why,
			   whylen);
}

int agent_copy(struct service *s, struct vm_obj *vm, int fd, const char *dest,
	       uint32_t flags, char *why, size_t whylen)
{
	uint8_t frame[IC_HDR_LEN + 64 + IC_PATH_MAX];
	struct ic_waiter w;
	struct ic_writer wr;
	uint8_t *buf = malloc(IC_DATA_MAX);
	unsigned int gen = vm->ic->conn_gen;
	uint64_t off = 0;
	uint32_t handle;
	struct stat st;
	int ret;

	if (!buf || fstat(fd, &st) < 0) {
		free(buf);
		snprintf(why, whylen, "cannot read the source");
		return -EIO;
	}
	ret = request_begin(vm, &w, &wr, frame, sizeof(frame), IC_FILE_OPEN, why, whylen);
	if (ret) {
		free(buf);
		return ret;
	}
	ic_put_str(&wr, IC_T_PATH, dest);
	ic_put_u64(&wr, IC_T_SIZE, (uint64_t)st.st_size);
	ic_put_u32(&wr, IC_T_FLAGS, flags);
	ic_put_u32(&wr, IC_T_FILE_MODE, st.st_mode & 0777);
	ret = wait_answer(s, vm, &w, &wr, FILE_WAIT_MS, why, whylen);
	if (ret) {
		free(buf);
		return ret;
	}
	handle = (uint32_t)w.num[IC_T_HANDLE];
	while (!ret && off < (uint64_t)st.st_size) {
		ssize_t n;

		/* The host file is read with the lock dropped too. */
		svc_unlock(s);
		n = pread(fd, buf, IC_DATA_MAX, (off_t)off);
		svc_lock(s);
		if (n <= 0) {
			snprintf(why, whylen, "the source ended early (it changed while copied?)");
			ret = -EIO;
			break;
		}
		ret = file_call(s, vm, gen, IC_FILE_DATA, handle, off, buf, (size_t)n, 0, &w,
				why, whylen);
		off += (uint64_t)n;
	}
	free(buf);
	if (ret) {
		/* Whatever came of it goes, if the agent is still there to hear it. */
		if (vm->ic->conn_gen == gen && connected(vm) && ret != -ECONNRESET) {
			char ignore[64];

			file_call(s, vm, gen, IC_FILE_CLOSE, handle, 0, NULL, 0, 0, &w, ignore,
				  sizeof(ignore));
		}
		return ret;
	}
	return file_call(s, vm, gen, IC_FILE_CLOSE, handle, 0, NULL, 0, IC_FILE_COMMIT, &w, why,
			 whylen);
}
