// SPDX-License-Identifier: MIT
/*
 * The worker's port table.  A port is the engine's port id (also our
 * index), a descriptor of one of three kinds, the policy we gave the
 * engine (it keeps no copy we can read back) and the send queue of the
 * current pass.  Ports are removed only between passes, so no queued
 * frame ever points at a port that went away.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vswitch/worker.h"

const char *wk_kind_name(enum wk_kind kind)
{
	switch (kind) {
	case WK_HOST:
		return "host";
	case WK_UPLINK:
		return "uplink";
	case WK_VM:
	default:
		return "vm";
	}
}

int wk_port_find(struct worker *w, const char *name)
{
	for (int i = 0; i < VSWITCH_MAX_PORTS; i++)
		if (w->ports[i].used && strcmp(w->ports[i].name, name) == 0)
			return i;
	return -1;
}

void wk_port_poll(struct worker *w, struct wk_port *p, bool on)
{
	if (p->polling == on)
		return;
	p->polling = on;
	/* A new poll looks at the socket first: frames that waited are seen. */
	wk_port_unwatch(w, p);
	if (wk_port_watch(w, p) < 0)
		log_warn("port %s: cannot watch it", p->name);
}

int wk_port_open(struct worker *w, enum wk_kind kind, const char *name, int fd,
		 const struct vswitch_port_config *cfg, char *err, size_t errlen)
{
	struct wk_port *p;
	uint32_t id;
	int ret;

	ret = vswitch_port_add(w->sw, cfg, &id);
	if (ret == -ENOSPC) {
		snprintf(err, errlen, "the switch has no free port (%d in use)",
			 VSWITCH_MAX_PORTS);
		return ret;
	}
	if (ret || id >= VSWITCH_MAX_PORTS) {
		const char *why = vswitch_port_config_problem(cfg);

		snprintf(err, errlen, "%s", why ? why : "the switch refused the port");
		if (!ret)
			vswitch_port_remove(w->sw, id);
		return ret ? ret : -EINVAL;
	}
	p = &w->ports[id];
	memset(p, 0, sizeof(*p));
	p->msgs = calloc(WK_BATCH, sizeof(*p->msgs));
	p->out = calloc(WK_BATCH, sizeof(*p->out));
	if (!p->msgs || !p->out) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (unsigned int i = 0; i < WK_BATCH; i++)
		p->msgs[i].msg_hdr.msg_iov = p->out[i].iov;
	p->used = true;
	p->kind = kind;
	p->id = id;
	p->fd = fd;
	p->cfg = *cfg;
	p->polling = true;
	snprintf(p->name, sizeof(p->name), "%s", name);
	ret = wk_port_watch(w, p);
	if (ret) {
		snprintf(err, errlen, "io_uring: %s", strerror(-ret));
		goto fail;
	}
	return (int)id;
fail:
	free(p->msgs);
	free(p->out);
	memset(p, 0, sizeof(*p));
	vswitch_port_remove(w->sw, id);
	return ret;
}

void wk_port_close(struct worker *w, uint32_t id)
{
	struct wk_port *p = &w->ports[id];

	if (!p->used)
		return;
	wk_held_drop(w, p);
	wk_port_unwatch(w, p);
	close(p->fd);
	vswitch_port_remove(w->sw, id);
	if (w->host_port == (int)id)
		w->host_port = -1;
	if (w->uplink_port == (int)id)
		w->uplink_port = -1;
	free(p->msgs);
	free(p->out);
	memset(p, 0, sizeof(*p));
}

void wk_ports_reap(struct worker *w)
{
	for (uint32_t i = 0; i < VSWITCH_MAX_PORTS; i++) {
		struct wk_port *p = &w->ports[i];

		if (!p->used || !p->dead)
			continue;
		if (p->kind == WK_VM)
			log_info("port %s went away: removed", p->name);
		wk_port_close(w, i);
	}
}
