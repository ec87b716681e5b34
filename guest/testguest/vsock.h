/* SPDX-License-Identifier: MIT */
/*
 * The test guest's virtio-vsock driver (vsock.c): stream connections
 * with credit both ways, an echo server, and what the agent (agent.c)
 * connects with.
 */
#ifndef TESTGUEST_VSOCK_H
#define TESTGUEST_VSOCK_H

#include "guest.h"

#define GV_HOST_CID 2

struct gvconn;

/* What a client connection (the agent's) hears. */
struct gv_ops {
	void (*connected)(struct gvconn *c);
	/* Bytes in order; the buffer is the driver's and goes back after the call. */
	void (*data)(struct gvconn *c, const uint8_t *buf, uint32_t len);
	/* Refused, reset or closed by the host; @c is gone after the call. */
	void (*closed)(struct gvconn *c);
};

/* Find and start the device; -1 with a reason in @why. */
int vsock_init(char *why);
bool vsock_up(void);
uint64_t vsock_cid(void);
/* Echo every byte of connections to @port back to their sender. */
void vsock_listen_echo(uint32_t port);
/* Connect to host port @port; NULL when no connection slot is free. */
struct gvconn *vsock_connect(uint32_t port, const struct gv_ops *ops);
/*
 * Queue @len bytes for @c: how many were taken (fewer when the host's
 * credit or the transmit buffers run short; the rest is the caller's to
 * send again after vsock_poll()).
 */
uint32_t vsock_send(struct gvconn *c, const void *buf, uint32_t len);
/* Close @c: SHUTDOWN, then the host's RST ends it (its ops->closed runs). */
void vsock_close(struct gvconn *c);
/* Something for vsock_poll() to do? */
bool vsock_pending(void);
void vsock_poll(void);
/* TRANSPORT_RESET events seen. */
unsigned int vsock_transport_resets(void);

#endif
