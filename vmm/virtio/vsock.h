/* SPDX-License-Identifier: MIT */
/*
 * virtio-vsock inside the worker: what the device (vsock.c) and its host
 * side (vsock_host.c) share.  Private to those two files; everyone else
 * uses the functions declared in virtio.h.
 *
 * The host side is Unix stream sockets in the VM's run directory, as
 * Firecracker does it: a guest connection to host port P is connected to
 * "vsock_P" there, and a host process reaches guest port P by connecting
 * to "vsock" and writing "CONNECT P\n" (answered "OK <host port>\n").
 *
 * One I/O thread owns the rings, the connections and their sockets.
 */
#ifndef FSVISOR_VMM_VSOCK_H
#define FSVISOR_VMM_VSOCK_H

#include <linux/virtio_vsock.h>

#include "vmm/virtio/virtio.h"

#define VSOCK_HOST_CID		2
#define VSOCK_QUEUE_MAX		256
#define VSOCK_RXQ		0
#define VSOCK_TXQ		1
#define VSOCK_EVQ		2
#define VSOCK_NQUEUES		3
#define VSOCK_HDR_LEN		((uint32_t)sizeof(struct virtio_vsock_hdr))
/* Payload of one packet, either way (Linux's largest is 64 KiB too). */
#define VSOCK_PKT_MAX		(64 * 1024)
/* What each connection holds for a host socket that is not reading. */
#define VSOCK_BUF_ALLOC		(1024 * 1024)
/* Connections at once; more requests are refused with RST. */
#define VSOCK_MAX_CONNS		256
#define VSOCK_HASH		512
/* Resets owed for packets that belong to no connection. */
#define VSOCK_RST_RING		256
/* "CONNECT 4294967295\n" with room to spare. */
#define VSOCK_LINE_MAX		32
#define VSOCK_SEGS		128
/* Receive chains one read from a host socket may fill. */
#define VSOCK_READ_CHAINS	8
/* Host ports of host-initiated connections start here (as Firecracker's). */
#define VSOCK_HOST_PORT_FIRST	(1u << 30)
/* How long a CONNECT line, a guest's answer, or a close may take. */
#define VSOCK_TIMEOUT_MS	5000
#define VSOCK_TICK_MS		250
#define VSOCK_STREAM_FEATURE	0	/* VIRTIO_VSOCK_F_STREAM (virtio 1.2) */

enum vconn_state {
	VC_FREE,
	VC_LINE,		/* a host client; its CONNECT line is not in yet */
	VC_GUEST_WAIT,		/* REQUEST sent to the guest, no RESPONSE yet */
	VC_OPEN,		/* established */
	VC_CLOSING,		/* SHUTDOWN (both) sent: waiting for the guest's RST */
	VC_LINGER,		/* reset, flushing what the guest sent to the host */
};

/* Control packets a connection owes the guest, sent as rx buffers allow. */
enum vconn_owe {
	OWE_REQUEST = 1 << 0,
	OWE_RESPONSE = 1 << 1,
	OWE_SHUTDOWN = 1 << 2,
	OWE_CREDIT = 1 << 3,
};

struct vconn {
	enum vconn_state state;
	int fd;
	uint32_t gen;			/* bumped on reuse: stale epoll events miss */
	uint32_t host_port, guest_port;
	int hnext;			/* hash chain */
	int lnext;			/* free list, ready list */
	bool ready;			/* on the ready list */
	uint64_t deadline;		/* monotonic ms, 0: none */

	unsigned int owe;
	uint32_t shutdown_flags;	/* of the SHUTDOWN owed */

	/* Host to guest. */
	bool readable;			/* an EPOLLIN edge not yet drained */
	bool host_eof;			/* the host will send no more */
	bool host_hup;			/* ... and takes nothing more either */
	uint32_t peer_buf_alloc;	/* the guest's receive buffer */
	uint32_t peer_fwd_cnt;		/* bytes the guest has consumed */
	uint32_t tx_cnt;		/* bytes we sent the guest */
	bool peer_no_recv;		/* the guest said SHUTDOWN RCV */

	/* Guest to host. */
	uint8_t *buf;			/* ring of buf_alloc bytes, made when needed */
	uint32_t head, len;
	uint32_t fwd_cnt;		/* bytes delivered to the host socket */
	uint32_t fwd_told;		/* fwd_cnt as the guest last heard it */
	bool peer_no_send;		/* the guest said SHUTDOWN SEND */
	bool wr_shut;			/* shutdown(SHUT_WR) done */

	char line[VSOCK_LINE_MAX];	/* VC_LINE: the CONNECT line so far */
};

struct vsock_rst {
	uint32_t host_port, guest_port;
};

/* Counters for "status"; written by the I/O thread. */
struct vsock_counters {
	_Atomic uint64_t guest_connects;	/* guest REQUESTs accepted */
	_Atomic uint64_t host_connects;		/* CONNECTs the guest accepted */
	_Atomic uint64_t refused;		/* requests answered with RST */
	_Atomic uint64_t to_guest_bytes, from_guest_bytes;
	_Atomic uint64_t rst_sent;
	_Atomic uint64_t rst_dropped;		/* owed with no room to keep them */
	_Atomic uint64_t malformed;		/* bad lengths, ops, types, addresses */
	_Atomic uint64_t credit_violations;	/* more than we allowed */
	_Atomic uint64_t host_aborted;		/* clients gone before "CONNECT P\n" */
	_Atomic uint64_t timeouts;
	_Atomic uint64_t transport_resets;
	_Atomic unsigned int conns;
};

/* What the I/O thread's epoll entries are: the low byte, and for a connection its slot and generation. */
enum vsock_tag {
	VTAG_KICK_RX,
	VTAG_KICK_TX,
	VTAG_KICK_EV,
	VTAG_CTL,
	VTAG_TIMER,
	VTAG_LISTEN,
	VTAG_CONN,		/* | slot << 8 | gen << 32 */
};

enum vsock_ctl {
	VCTL_NONE,
	VCTL_RESET,		/* the driver reset the device */
	VCTL_STOP,
	VCTL_TRANSPORT_RESET,	/* after a restore */
	VCTL_SAVE,
	VCTL_RESTORE,
	VCTL_PAUSE,		/* a capture: touch no guest memory until RESUME */
	VCTL_RESUME,
};

struct virtio_vsock {
	struct virtio_dev dev;
	uint64_t cid;
	int dirfd;			/* the run directory */
	int listen_fd;			/* "vsock" there */
	uint32_t buf_alloc;		/* advertised per connection */
	char name[32];
	_Atomic bool active;		/* DRIVER_OK and not broken */

	pthread_t thread;
	bool thread_started;
	int epfd, ctl_fd, timer_fd;
	int kick_fd[VSOCK_NQUEUES];
	pthread_mutex_t lock;		/* the ctl handshake */
	pthread_mutex_t ctl_serial;	/* one request at a time */
	pthread_cond_t cond;
	enum vsock_ctl ctl;
	void *ctl_arg;
	int ctl_ret;
	bool ctl_done;

	/* Owned by the I/O thread. */
	struct vconn *conns;		/* VSOCK_MAX_CONNS */
	int hash[VSOCK_HASH];
	int free_head;
	int ready_head, ready_tail;
	unsigned int nconns;
	struct vsock_rst rst[VSOCK_RST_RING];
	unsigned int rst_head, rst_len;
	uint32_t next_host_port;
	unsigned int deadlines;		/* connections with one */
	bool timer_on;
	bool rx_starved;		/* no guest buffers: wait for a kick */
	bool tx_more;			/* the transmit ring may hold more */
	bool rx_publish, tx_publish;
	bool event_pending;		/* TRANSPORT_RESET not delivered yet */
	bool paused;			/* VCTL_PAUSE: requests only */
	uint64_t now;			/* monotonic ms of this pass */

	struct virtq_elem elem;
	struct iovec iov[VSOCK_SEGS];
	struct iovec slice[VSOCK_SEGS * VSOCK_READ_CHAINS];
	/* Further receive chains for one read. */
	struct virtq_elem more[VSOCK_READ_CHAINS - 1];
	struct iovec more_iov[VSOCK_READ_CHAINS - 1][VSOCK_SEGS];

	struct vsock_counters count;
};

/* ---- vsock_host.c: connections and the host's sockets ------------------- */

int vsock_host_open(struct virtio_vsock *v, const char *dir, char *err, size_t errlen);
void vsock_host_close(struct virtio_vsock *v);
void vsock_conns_init(struct virtio_vsock *v);
struct vconn *vsock_conn_find(struct virtio_vsock *v, uint32_t host_port,
			      uint32_t guest_port);
/*
 * A new connection on @fd (-1: none yet), or NULL when the table is full
 * (@fd is then still the caller's).
 */
struct vconn *vsock_conn_new(struct virtio_vsock *v, int fd, enum vconn_state st,
			     uint32_t host_port, uint32_t guest_port);
void vsock_conn_free(struct virtio_vsock *v, struct vconn *c);
/* Leave the hash (the port pair may be used again) but keep the socket. */
void vsock_conn_unhash(struct virtio_vsock *v, struct vconn *c);
void vsock_conn_set_deadline(struct virtio_vsock *v, struct vconn *c, uint64_t ms);
/* Every connection goes; their host sockets are closed. */
void vsock_conns_reset(struct virtio_vsock *v);
int vsock_conn_index(struct virtio_vsock *v, const struct vconn *c);

/* The guest asks for host port @port: 0 connected, or -errno. */
int vsock_host_connect(struct virtio_vsock *v, uint32_t port, int *fd);
/* The listener is readable: take the clients waiting. */
void vsock_host_accept(struct virtio_vsock *v);
/*
 * A VC_LINE client sent something (its CONNECT line, perhaps) or went
 * away (@hup: it shut its end).
 */
void vsock_host_line(struct virtio_vsock *v, struct vconn *c, bool hup);
/* Tell a host client its connection is up: "OK <port>\n". */
int vsock_host_ok(struct vconn *c);
/*
 * Bytes from the guest for the host socket: written, or kept in the
 * connection's buffer.  -ENOBUFS: more than the credit we gave.
 */
int vsock_host_write(struct virtio_vsock *v, struct vconn *c,
		     const struct iovec *iov, unsigned int n, uint32_t len);
/* The host socket took more: write out what waits.  -EPIPE: it is gone. */
int vsock_host_flush(struct virtio_vsock *v, struct vconn *c);

/* ---- vsock.c: what the host side asks of the device ------------------ */

/* Put @c on the list of connections with something for the guest. */
void vsock_mark_ready(struct virtio_vsock *v, struct vconn *c);
/* Owe the guest a reset for a port pair, with or without a connection. */
void vsock_owe_rst(struct virtio_vsock *v, uint32_t host_port, uint32_t guest_port);
/* After the guest's data went out: tell it about the room, if it needs to know. */
void vsock_credit_check(struct virtio_vsock *v, struct vconn *c);

#endif /* FSVISOR_VMM_VSOCK_H */
