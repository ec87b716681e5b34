// SPDX-License-Identifier: MIT
/*
 * The host side of virtio-vsock: the connection table and the Unix
 * stream sockets behind it, in the VM's run directory.
 *
 *   vsock_P   a host program listening for guest connections to port P
 *   vsock     ours: host programs connect here and write "CONNECT P\n"
 *             to reach the guest's port P; "OK <host port>\n" comes back
 *             once the guest accepted, and the socket is the stream
 *
 * Every socket is non-blocking and registered edge-triggered once, so a
 * connection keeps what it learnt (readable, writable) in flags and
 * nothing is polled that has nothing to give.  Bytes from the guest that
 * the host socket does not take at once wait in a ring of the size we
 * advertised as buf_alloc; the guest is never given credit for more.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/virtio/vsock.h"

#define LISTEN_NAME	"vsock"
#define LISTEN_BACKLOG	128

static void dir_path(struct virtio_vsock *v, struct sockaddr_un *sa, const char *name)
{
	/* Through the directory's descriptor: a long run directory fits. */
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", v->dirfd, name);
}

/* A socket file left by a dead worker is replaced; a live one is not. */
static int clear_stale(struct virtio_vsock *v, const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), ret = 0;

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		ret = -EADDRINUSE;
	else if (errno == ECONNREFUSED)
		unlinkat(v->dirfd, LISTEN_NAME, 0);
	close(fd);
	return ret;
}

int vsock_host_open(struct virtio_vsock *v, const char *dir, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	int ret;

	v->dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (v->dirfd < 0) {
		ret = -errno;
		snprintf(err, errlen, "vsock: the run directory %s: %s", dir, strerror(errno));
		return ret;
	}
	dir_path(v, &sa, LISTEN_NAME);
	ret = clear_stale(v, &sa);
	if (ret) {
		snprintf(err, errlen, "vsock: %s/%s is in use by another process", dir,
			 LISTEN_NAME);
		return ret;
	}
	v->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (v->listen_fd < 0 ||
	    bind(v->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    fchmodat(v->dirfd, LISTEN_NAME, 0600, 0) < 0 ||
	    listen(v->listen_fd, LISTEN_BACKLOG) < 0) {
		ret = -errno;
		snprintf(err, errlen, "vsock: listening on %s/%s: %s", dir, LISTEN_NAME,
			 strerror(errno));
		return ret;
	}
	return 0;
}

void vsock_host_close(struct virtio_vsock *v)
{
	if (v->listen_fd >= 0) {
		close(v->listen_fd);
		unlinkat(v->dirfd, LISTEN_NAME, 0);
		v->listen_fd = -1;
	}
	if (v->dirfd >= 0)
		close(v->dirfd);
	v->dirfd = -1;
}

/* ---- the connection table ------------------------------------------------ */

static unsigned int hash_of(uint32_t host_port, uint32_t guest_port)
{
	return ((host_port * 0x9E3779B1u) ^ (guest_port * 0x85EBCA77u)) % VSOCK_HASH;
}

int vsock_conn_index(struct virtio_vsock *v, const struct vconn *c)
{
	return (int)(c - v->conns);
}

void vsock_conns_init(struct virtio_vsock *v)
{
	for (int i = 0; i < VSOCK_HASH; i++)
		v->hash[i] = -1;
	for (int i = 0; i < VSOCK_MAX_CONNS; i++) {
		v->conns[i].state = VC_FREE;
		v->conns[i].fd = -1;
		v->conns[i].lnext = i + 1 < VSOCK_MAX_CONNS ? i + 1 : -1;
		v->conns[i].hnext = -1;
	}
	v->free_head = 0;
	v->ready_head = v->ready_tail = -1;
	v->nconns = 0;
}

static bool hashed(const struct vconn *c)
{
	return c->state == VC_GUEST_WAIT || c->state == VC_OPEN || c->state == VC_CLOSING;
}

static void hash_add(struct virtio_vsock *v, struct vconn *c)
{
	unsigned int h = hash_of(c->host_port, c->guest_port);

	c->hnext = v->hash[h];
	v->hash[h] = vsock_conn_index(v, c);
}

static void hash_del(struct virtio_vsock *v, struct vconn *c)
{
	int *p = &v->hash[hash_of(c->host_port, c->guest_port)];
	int self = vsock_conn_index(v, c);

	while (*p >= 0) {
		if (*p == self) {
			*p = c->hnext;
			c->hnext = -1;
			return;
		}
		p = &v->conns[*p].hnext;
	}
}

struct vconn *vsock_conn_find(struct virtio_vsock *v, uint32_t host_port,
			      uint32_t guest_port)
{
	for (int i = v->hash[hash_of(host_port, guest_port)]; i >= 0; i = v->conns[i].hnext) {
		struct vconn *c = &v->conns[i];

		if (c->host_port == host_port && c->guest_port == guest_port)
			return c;
	}
	return NULL;
}

void vsock_conn_set_deadline(struct virtio_vsock *v, struct vconn *c, uint64_t ms)
{
	if (!c->deadline && ms)
		v->deadlines++;
	else if (c->deadline && !ms)
		v->deadlines--;
	c->deadline = ms;
}

static int watch_fd(struct virtio_vsock *v, struct vconn *c)
{
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
		.data.u64 = VTAG_CONN | (uint64_t)vsock_conn_index(v, c) << 8 |
			    (uint64_t)c->gen << 32,
	};

	return epoll_ctl(v->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0 ? -errno : 0;
}

struct vconn *vsock_conn_new(struct virtio_vsock *v, int fd, enum vconn_state st,
			     uint32_t host_port, uint32_t guest_port)
{
	struct vconn *c;
	uint32_t gen;

	if (v->free_head < 0)
		return NULL;
	c = &v->conns[v->free_head];
	v->free_head = c->lnext;
	gen = c->gen + 1;
	memset(c, 0, offsetof(struct vconn, line));
	c->gen = gen;
	c->state = st;
	c->fd = fd;
	c->host_port = host_port;
	c->guest_port = guest_port;
	c->hnext = c->lnext = -1;
	v->nconns++;
	atomic_store(&v->count.conns, v->nconns);
	if (hashed(c))
		hash_add(v, c);
	if (fd >= 0 && watch_fd(v, c)) {
		c->fd = -1;		/* the caller's still */
		vsock_conn_free(v, c);
		return NULL;
	}
	return c;
}

/* Off the ready list, wherever it is on it. */
static void ready_del(struct virtio_vsock *v, struct vconn *c)
{
	int self = vsock_conn_index(v, c), prev = -1;

	if (!c->ready)
		return;
	for (int i = v->ready_head; i >= 0; prev = i, i = v->conns[i].lnext) {
		if (i != self)
			continue;
		if (prev < 0)
			v->ready_head = c->lnext;
		else
			v->conns[prev].lnext = c->lnext;
		if (v->ready_tail == self)
			v->ready_tail = prev;
		break;
	}
	c->ready = false;
	c->lnext = -1;
}

void vsock_conn_free(struct virtio_vsock *v, struct vconn *c)
{
	if (c->state == VC_FREE)
		return;
	ready_del(v, c);
	if (hashed(c))
		hash_del(v, c);
	vsock_conn_set_deadline(v, c, 0);
	if (c->fd >= 0)
		close(c->fd);	/* and out of the epoll set with it */
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	c->state = VC_FREE;
	c->gen++;
	c->lnext = v->free_head;
	v->free_head = vsock_conn_index(v, c);
	v->nconns--;
	atomic_store(&v->count.conns, v->nconns);
}

void vsock_conn_unhash(struct virtio_vsock *v, struct vconn *c)
{
	if (hashed(c))
		hash_del(v, c);
}

void vsock_conns_reset(struct virtio_vsock *v)
{
	for (int i = 0; i < VSOCK_MAX_CONNS; i++)
		vsock_conn_free(v, &v->conns[i]);
	v->ready_head = v->ready_tail = -1;
}

/* ---- guest connections to the host ------------------------------------- */

int vsock_host_connect(struct virtio_vsock *v, uint32_t port, int *out)
{
	struct sockaddr_un sa;
	char name[32];
	int fd, ret;

	snprintf(name, sizeof(name), "vsock_%u", port);
	dir_path(v, &sa, name);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/*
	 * A Unix stream connect completes at once or fails: EAGAIN is a
	 * full backlog, which for the guest is a refusal like any other.
	 */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = errno == EAGAIN ? -ECONNREFUSED : -errno;
		close(fd);
		return ret;
	}
	*out = fd;
	return 0;
}

/* ---- host connections to the guest ------------------------------------- */

void vsock_host_accept(struct virtio_vsock *v)
{
	for (;;) {
		int fd = accept4(v->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct vconn *c;

		if (fd < 0)
			return;		/* EAGAIN, or a client already gone */
		c = vsock_conn_new(v, fd, VC_LINE, 0, 0);
		if (!c) {
			atomic_fetch_add(&v->count.refused, 1);
			close(fd);
			continue;
		}
		vsock_conn_set_deadline(v, c, v->now + VSOCK_TIMEOUT_MS);
	}
}

/* "CONNECT P\n" (or "\r\n"): the port, or -1. */
static int64_t parse_line(const char *line, size_t len)
{
	uint64_t port = 0;
	size_t i = 8;

	if (len < 10 || memcmp(line, "CONNECT ", 8) != 0)
		return -1;
	if (line[len - 2] == '\r')
		len--;
	if (i == len - 1)
		return -1;
	for (; i < len - 1; i++) {
		if (line[i] < '0' || line[i] > '9')
			return -1;
		port = port * 10 + (uint64_t)(line[i] - '0');
		if (port > UINT32_MAX)
			return -1;
	}
	return (int64_t)port;
}

/* A host port for a connection to guest port @guest_port. */
static uint32_t host_port_for(struct virtio_vsock *v, uint32_t guest_port)
{
	for (;;) {
		uint32_t p = v->next_host_port++;

		if (v->next_host_port < VSOCK_HOST_PORT_FIRST)
			v->next_host_port = VSOCK_HOST_PORT_FIRST;
		if (p >= VSOCK_HOST_PORT_FIRST && !vsock_conn_find(v, p, guest_port))
			return p;
	}
}

static void host_client_gone(struct virtio_vsock *v, struct vconn *c)
{
	atomic_fetch_add(&v->count.host_aborted, 1);
	vsock_conn_free(v, c);
}

void vsock_host_line(struct virtio_vsock *v, struct vconn *c, bool hup)
{
	char buf[VSOCK_LINE_MAX];
	ssize_t n;
	char *nl;
	int64_t port;

	/*
	 * Peek, and take only the line: what the client sends after it is
	 * the stream's first bytes and stays in the socket for the guest.
	 */
	n = recv(c->fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		host_client_gone(v, c);		/* closed before its line ended */
		return;
	}
	nl = memchr(buf, '\n', (size_t)n);
	if (!nl) {
		/* No line is that long; and one cut short by a close never ends. */
		if (n == (ssize_t)sizeof(buf) || hup)
			host_client_gone(v, c);
		return;
	}
	n = recv(c->fd, c->line, (size_t)(nl - buf + 1), MSG_DONTWAIT);
	port = n > 0 ? parse_line(c->line, (size_t)n) : -1;
	if (port < 0) {
		log_debug("%s: a host client sent a bad CONNECT line", v->name);
		host_client_gone(v, c);
		return;
	}
	c->guest_port = (uint32_t)port;
	c->host_port = host_port_for(v, c->guest_port);
	c->state = VC_GUEST_WAIT;
	hash_add(v, c);
	c->owe |= OWE_REQUEST;
	vsock_conn_set_deadline(v, c, v->now + VSOCK_TIMEOUT_MS);
	vsock_mark_ready(v, c);
}

int vsock_host_ok(struct vconn *c)
{
	char msg[24];
	int len = snprintf(msg, sizeof(msg), "OK %u\n", c->host_port);

	/* A fresh socket has room for a line. */
	return send(c->fd, msg, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL) == len ? 0 : -EIO;
}

/* ---- bytes from the guest to the host ---------------------------------- */

/* Send as much as the socket takes: the count, or -EPIPE when it is gone. */
static ssize_t send_some(int fd, const struct iovec *iov, unsigned int n)
{
	struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = n };
	ssize_t ret;

	do {
		ret = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	} while (ret < 0 && errno == EINTR);
	if (ret >= 0)
		return ret;
	return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -EPIPE;
}

static void ring_put(struct virtio_vsock *v, struct vconn *c, const struct iovec *iov,
		     unsigned int n, size_t skip, size_t len)
{
	uint32_t cap = v->buf_alloc;

	while (len) {
		uint32_t tail = (c->head + c->len) % cap;
		size_t chunk = cap - tail;

		if (chunk > len)
			chunk = len;
		iov_to_buf(iov, n, skip, c->buf + tail, chunk);
		c->len += (uint32_t)chunk;
		skip += chunk;
		len -= chunk;
	}
}

int vsock_host_write(struct virtio_vsock *v, struct vconn *c,
		     const struct iovec *iov, unsigned int n, uint32_t len)
{
	size_t done = 0;

	if ((uint64_t)c->len + len > v->buf_alloc)
		return -ENOBUFS;
	/* In order: only an empty ring lets bytes past it. */
	while (!c->len && done < len) {
		struct iovec rest[VSOCK_SEGS];
		unsigned int k = iov_slice(iov, n, done, len - done, rest);
		ssize_t sent = send_some(c->fd, rest, k);

		if (sent < 0)
			return (int)sent;
		if (sent == 0)
			break;
		done += (size_t)sent;
		c->fwd_cnt += (uint32_t)sent;
	}
	if (done == len)
		return 0;
	if (!c->buf) {
		c->buf = malloc(v->buf_alloc);
		if (!c->buf)
			return -ENOMEM;
	}
	ring_put(v, c, iov, n, done, len - done);
	return 0;
}

int vsock_host_flush(struct virtio_vsock *v, struct vconn *c)
{
	while (c->len) {
		uint32_t chunk = v->buf_alloc - c->head;
		struct iovec iov;
		ssize_t sent;

		if (chunk > c->len)
			chunk = c->len;
		iov.iov_base = c->buf + c->head;
		iov.iov_len = chunk;
		sent = send_some(c->fd, &iov, 1);
		if (sent < 0)
			return (int)sent;
		if (sent == 0)
			return 0;
		c->head = (uint32_t)((c->head + (uint32_t)sent) % v->buf_alloc);
		c->len -= (uint32_t)sent;
		c->fwd_cnt += (uint32_t)sent;
	}
	c->head = 0;
	/* The guest said it sends no more: the host reads an end of file. */
	if (c->peer_no_send && !c->wr_shut) {
		shutdown(c->fd, SHUT_WR);
		c->wr_shut = true;
	}
	return 0;
}
