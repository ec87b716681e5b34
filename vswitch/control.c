// SPDX-License-Identifier: MIT
/*
 * The control socket: one JSON object per SOCK_SEQPACKET message, one
 * reply each, in order.  Port sockets arrive with "port-add" as
 * SCM_RIGHTS.  The requests and replies are listed in docs/vswitch.md.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vswitch/worker.h"

static json_t *error_reply(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static json_t *error_reply(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

static json_t *ok_reply(void)
{
	return json_pack("{s:b}", "ok", 1);
}

/* ---- status and macs ---------------------------------------------------- */

static json_t *port_json(struct worker *w, struct wk_port *p)
{
	struct vswitch_port_stats st = { 0 };
	json_t *o, *drops = json_object();
	char mac[18];

	vswitch_port_stats(w->sw, p->id, &st);
	for (int i = 0; i < VSWITCH_DROP_NR; i++)
		json_object_set_new(drops, vswitch_drop_name((enum vswitch_drop)i),
				    json_integer((json_int_t)st.drops[i]));
	wk_mac_format(p->cfg.mac, mac);
	o = json_pack("{s:s, s:i, s:s, s:o}", "name", p->name, "id", (int)p->id,
		      "kind", wk_kind_name(p->kind),
		      "mac", p->kind == WK_VM ? json_string(mac) : json_null());
	wk_policy_json(&p->cfg, o);
	json_object_set_new(o, "held_frames", json_integer(p->held.n - p->held.next));
	json_object_set_new(o, "in_packets", json_integer((json_int_t)st.in_packets));
	json_object_set_new(o, "in_bytes", json_integer((json_int_t)st.in_bytes));
	json_object_set_new(o, "out_packets", json_integer((json_int_t)st.out_packets));
	json_object_set_new(o, "out_bytes", json_integer((json_int_t)st.out_bytes));
	json_object_set_new(o, "drops", drops);
	return o;
}

static json_t *opt_string(const char *s)
{
	return s && s[0] ? json_string(s) : json_null();
}

static json_t *status(struct worker *w)
{
	struct vswitch_stats st;
	json_t *ports = json_array(), *r;

	for (unsigned int i = 0; i < VSWITCH_MAX_PORTS; i++)
		if (w->ports[i].used && !w->ports[i].dead)
			json_array_append_new(ports, port_json(w, &w->ports[i]));
	vswitch_stats(w->sw, &st);
	r = json_pack("{s:b, s:s, s:i, s:s, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
		      "ok", 1, "name", w->opts->name, "pid", (int)getpid(),
		      "type", vswitch_type_name(w->type),
		      "host_if", opt_string(w->type != VSWITCH_PRIVATE ? w->host_if : NULL),
		      "uplink", opt_string(w->type == VSWITCH_EXTERNAL ? w->uplink : NULL),
		      "uptime_ms", (json_int_t)((wk_now_ns() - w->started_ns) / 1000000),
		      "mac_count", (json_int_t)st.macs,
		      "learn_table_full", (json_int_t)st.learn_table_full,
		      "learn_port_full", (json_int_t)st.learn_port_full,
		      "mac_moves", (json_int_t)st.mac_moves,
		      "macs_aged", (json_int_t)st.macs_aged,
		      "ports", ports);
	if (w->host_error[0])
		json_object_set_new(r, "host_error", json_string(w->host_error));
	if (w->uplink_error[0])
		json_object_set_new(r, "uplink_error", json_string(w->uplink_error));
	return r;
}

/* Entries in one "macs" reply: about 80 bytes each, well inside a message. */
#define MACS_REPLY_MAX 2000

struct macs_ctx {
	struct worker *w;
	json_t *list;
	unsigned long total;
};

static int add_mac(const struct vswitch_mac_entry *e, void *arg)
{
	struct macs_ctx *c = arg;
	const char *port = e->port < VSWITCH_MAX_PORTS && c->w->ports[e->port].used ?
			   c->w->ports[e->port].name : "?";
	char mac[18];

	if (c->total++ >= MACS_REPLY_MAX)
		return 0;
	wk_mac_format(e->mac, mac);
	json_array_append_new(c->list, json_pack("{s:i, s:s, s:s, s:I}",
		"vlan", (int)e->vlan, "mac", mac, "port", port,
		"age_ms", (json_int_t)(e->age_ns / 1000000)));
	return 0;
}

static json_t *macs(struct worker *w)
{
	struct macs_ctx c = { w, json_array(), 0 };

	vswitch_macs(w->sw, wk_now_ns(), add_mac, &c);
	return json_pack("{s:b, s:o, s:I, s:b}", "ok", 1, "macs", c.list,
			 "total", (json_int_t)c.total, "truncated", c.total > MACS_REPLY_MAX);
}

/* ---- ports -------------------------------------------------------------- */

/* "VM/NIC": two object names. */
static bool vm_port_name_valid(const char *name)
{
	const char *slash = strchr(name, '/');
	char vm[NAME_MAX_LEN + 2];
	size_t n;

	if (!slash)
		return false;
	n = (size_t)(slash - name);
	if (n == 0 || n > NAME_MAX_LEN)
		return false;
	memcpy(vm, name, n);
	vm[n] = 0;
	return name_valid(vm) && name_valid(slash + 1);
}

static const char *name_arg(json_t *req)
{
	return json_string_value(json_object_get(req, "name"));
}

/* Only SOCK_SEQPACKET sockets of the AF_UNIX family carry frames for us. */
static const char *port_fd_problem(int fd)
{
	int type = 0, domain = 0;
	socklen_t len = sizeof(int);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return "the descriptor is not a socket: a port needs an AF_UNIX SOCK_SEQPACKET socket";
	len = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
	    domain != AF_UNIX || type != SOCK_SEQPACKET)
		return "the descriptor must be an AF_UNIX SOCK_SEQPACKET socket";
	return NULL;
}

static bool peer_gone(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLRDHUP };

	return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLRDHUP | POLLERR));
}

static json_t *port_add(struct worker *w, json_t *req, int *fds, size_t nfds)
{
	const char *name = name_arg(req);
	struct vswitch_port_config cfg;
	const char *problem;
	char err[512];
	int id, one = 1 << 20;

	if (!name || !vm_port_name_valid(name))
		return error_reply("port-add needs a \"name\" VM/NIC, two names of letters, digits, '.', '_' and '-'");
	id = wk_port_find(w, name);
	if (id >= 0 && peer_gone(w->ports[id].fd)) {
		/* A restarted VM can be quicker than the old socket's hang-up event. */
		log_info("port %s went away: replaced", name);
		wk_port_close(w, (uint32_t)id);
	} else if (id >= 0) {
		return error_reply("a port named %s is already connected", name);
	}
	if (nfds != 1)
		return error_reply("port-add needs exactly one socket descriptor (SCM_RIGHTS), got %zu", nfds);
	problem = port_fd_problem(fds[0]);
	if (problem)
		return error_reply("%s", problem);
	wk_policy_default(&cfg);
	if (wk_policy_parse(json_object_get(req, "policy"), &cfg, err, sizeof(err)))
		return error_reply("%s", err);
	if (!memcmp(cfg.mac, (uint8_t[6]){ 0 }, 6))
		return error_reply("a VM port needs its NIC's \"mac\" in its policy");
	/* Room for bursts towards a VM that reads in batches; best effort. */
	if (setsockopt(fds[0], SOL_SOCKET, SO_SNDBUFFORCE, &one, sizeof(one)) < 0)
		setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof(one));
	id = wk_port_open(w, WK_VM, name, fds[0], &cfg, err, sizeof(err));
	if (id < 0)
		return error_reply("%s", err);
	fds[0] = -1;		/* the port owns it now */
	log_info("port %s connected (id %d)", name, id);
	return json_pack("{s:b, s:i}", "ok", 1, "id", id);
}

static json_t *port_set(struct worker *w, json_t *req)
{
	const char *name = name_arg(req);
	json_t *policy = json_object_get(req, "policy");
	struct vswitch_port_config cfg;
	struct wk_port *p;
	char err[512];
	int id, ret;

	if (!name)
		return error_reply("port-set needs the port's \"name\"");
	id = wk_port_find(w, name);
	if (id < 0)
		return error_reply("there is no port named %s", name);
	p = &w->ports[id];
	if (!json_is_object(policy))
		return error_reply("port-set needs a \"policy\" object with the fields to change");
	if (p->kind != WK_VM && json_object_get(policy, "mac"))
		return error_reply("the %s port has no MAC of its own to set", p->name);
	cfg = p->cfg;
	if (wk_policy_parse(policy, &cfg, err, sizeof(err)))
		return error_reply("%s", err);
	ret = vswitch_port_set(w->sw, p->id, &cfg);
	if (ret)
		return error_reply("the switch refused the policy: %s", strerror(-ret));
	p->cfg = cfg;
	/* A lifted limit lets held frames go at once. */
	if (p->held.n && !cfg.bandwidth_max) {
		p->held.until_ns = 0;
		wk_held_timer(w);
	}
	return ok_reply();
}

static json_t *port_remove(struct worker *w, json_t *req)
{
	const char *name = name_arg(req);
	int id;

	if (!name)
		return error_reply("port-remove needs the port's \"name\"");
	id = wk_port_find(w, name);
	if (id < 0)
		return error_reply("there is no port named %s", name);
	if (w->ports[id].kind != WK_VM)
		return error_reply("the %s port goes with the switch's type (use configure)",
				   name);
	log_info("port %s removed", name);
	wk_port_close(w, (uint32_t)id);
	return ok_reply();
}

/* ---- configure ---------------------------------------------------------- */

static json_t *configure(struct worker *w, json_t *req)
{
	const char *type_s = json_string_value(json_object_get(req, "type"));
	json_t *host_j = json_object_get(req, "host_if");
	json_t *up_j = json_object_get(req, "uplink");
	const char *host_if, *uplink;
	enum vswitch_type type;
	char err[512];

	if (!type_s || vswitch_type_parse(type_s, &type))
		return error_reply("configure needs a \"type\": private, internal or external");
	if ((host_j && !json_is_string(host_j)) || (up_j && !json_is_string(up_j)))
		return error_reply("\"host_if\" and \"uplink\" are interface names");
	host_if = host_j ? json_string_value(host_j) : (w->host_if[0] ? w->host_if : NULL);
	uplink = up_j ? json_string_value(up_j) : NULL;
	if (type != VSWITCH_EXTERNAL && uplink)
		return error_reply("only an external switch has an uplink");
	if (type == VSWITCH_EXTERNAL && !uplink && w->uplink[0])
		uplink = w->uplink;
	if (wk_configure(w, type, host_if, uplink, err, sizeof(err)))
		return error_reply("%s", err);
	return ok_reply();
}

/* ---- requests ----------------------------------------------------------- */

static json_t *handle(struct worker *w, json_t *req, int *fds, size_t nfds)
{
	const char *cmd = json_string_value(json_object_get(req, "cmd"));

	if (!cmd)
		return error_reply("a request needs a \"cmd\" string");
	/* Ports that hung up in this pass are not seen by requests. */
	if (w->reap) {
		wk_ports_reap(w);
		w->reap = false;
	}
	if (strcmp(cmd, "port-add") == 0)
		return port_add(w, req, fds, nfds);
	if (nfds)
		return error_reply("%s takes no descriptors", cmd);
	if (strcmp(cmd, "status") == 0)
		return status(w);
	if (strcmp(cmd, "macs") == 0)
		return macs(w);
	if (strcmp(cmd, "port-set") == 0)
		return port_set(w, req);
	if (strcmp(cmd, "port-remove") == 0)
		return port_remove(w, req);
	if (strcmp(cmd, "configure") == 0)
		return configure(w, req);
	if (strcmp(cmd, "stop") == 0) {
		log_info("stop requested");
		w->done = true;
		w->exit_status = VSWITCH_EXIT_STOPPED;
		return ok_reply();
	}
	return error_reply("unknown command '%s'", cmd);
}

static void client_close(struct worker *w, unsigned int i)
{
	epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->clients[i].fd, NULL);
	close(w->clients[i].fd);
	w->clients[i].fd = -1;
}

void wk_control_message(struct worker *w, unsigned int i)
{
	int fds[MSG_MAX_FDS];
	json_t *req = NULL, *reply;
	size_t nfds = 0;
	int ret = msg_recv(w->clients[i].fd, &req, fds, &nfds, MSG_MAX_FDS);

	if (ret == -EAGAIN)
		return;
	if (ret == -EBADMSG || ret == -EMSGSIZE) {
		reply = error_reply("a request is one JSON object of at most %d bytes, with at most %d descriptors",
				    MSG_MAX_BYTES, MSG_MAX_FDS);
	} else if (ret) {
		client_close(w, i);
		return;
	} else {
		reply = handle(w, req, fds, nfds);
		json_decref(req);
	}
	for (size_t k = 0; k < nfds; k++)
		if (fds[k] >= 0)
			close(fds[k]);
	msg_send(w->clients[i].fd, reply, NULL, 0);
	json_decref(reply);
}

void wk_control_accept(struct worker *w)
{
	int fd = accept4(w->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	int room = 2 * MSG_MAX_BYTES;

	/* A reply is one message: the send buffer must hold the largest. */
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &room, sizeof(room));
	for (unsigned int i = 0; i < WK_MAX_CLIENTS; i++) {
		if (w->clients[i].fd >= 0)
			continue;
		if (wk_epoll_set(w, fd, WK_TAG(WK_TAG_CLIENT, i), EPOLLIN,
				 EPOLL_CTL_ADD) == 0) {
			w->clients[i].fd = fd;
			return;
		}
		break;
	}
	close(fd);		/* too many clients */
}

int wk_control_open(struct worker *w, char *err, size_t errlen)
{
	int fd = msg_listen(w->opts->control_path, err, errlen);

	if (fd < 0)
		return fd;
	w->listen_fd = fd;
	return wk_epoll_set(w, fd, WK_TAG(WK_TAG_LISTEN, 0), EPOLLIN, EPOLL_CTL_ADD);
}

void wk_control_close(struct worker *w)
{
	for (unsigned int i = 0; i < WK_MAX_CLIENTS; i++)
		if (w->clients[i].fd >= 0)
			client_close(w, i);
	if (w->listen_fd >= 0) {
		close(w->listen_fd);
		unlink(w->opts->control_path);
		w->listen_fd = -1;
	}
}
