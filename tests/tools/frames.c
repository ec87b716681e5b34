// SPDX-License-Identifier: MIT
/*
 * frames: a test driver for the switch worker.  It holds the far ends of
 * port sockets (and AF_PACKET sockets on interfaces) for a test script,
 * which sends it one command per line on stdin and reads one line back
 * for each: "ok ..." or "error ...".
 *
 *   frames --control SOCKET
 *
 *   port NAME POLICY-JSON        socketpair; port-add NAME with one end
 *   addfd KIND NAME POLICY-JSON  port-add with KIND of descriptor: pipe,
 *                                stream, dgram, none or two (prints the reply)
 *   ctl JSON                     any request (prints the reply)
 *   packet NAME IFNAME [NETNS]   an AF_PACKET socket on IFNAME (in NETNS)
 *   send NAME DST SRC [vlan=V] [prio=P] [len=L] [id=N] [kind=plain|dhcp|ra]
 *   recv NAME [MS]               the next test frame: "ok dst=.. src=..
 *                                vlan=V|none prio=P len=L id=N", or "none"
 *   count NAME MS                test frames until none came for MS, and
 *                                the seconds from the last flood's start
 *                                to the last one
 *   flood NAME DST SRC N LEN     N frames as fast as the socket takes
 *                                them (blocking); prints the seconds taken
 *   close NAME                   close our end (the switch sees a hang-up)
 *   sndbuf NAME BYTES            SO_SNDBUFFORCE on our end (a deep backlog)
 *   quit
 *
 * Test frames end with a trailer (magic and id), so frames the host's own
 * stack sends through a TAP or veth (IPv6 autoconfiguration) are ignored.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

#define MAGIC "FSVWTEST"
#define TRAILER 12		/* magic and a 32-bit id */
#define MAX_ENDS 64

struct end {
	char name[160];
	int fd;
	bool packet;
};

static struct end ends[MAX_ENDS];
static int nends;
static int ctl_fd = -1;
static double flood_start;	/* when the last flood began */

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void reply(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct end *find(const char *name)
{
	for (int i = 0; i < nends; i++)
		if (ends[i].fd >= 0 && strcmp(ends[i].name, name) == 0)
			return &ends[i];
	return NULL;
}

static struct end *add_end(const char *name, int fd, bool packet)
{
	struct end *e = NULL;

	for (int i = 0; i < nends; i++)
		if (ends[i].fd < 0)
			e = &ends[i];
	if (!e && nends < MAX_ENDS)
		e = &ends[nends++];
	if (!e)
		return NULL;
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->fd = fd;
	e->packet = packet;
	return e;
}

/* ---- control requests (with descriptors) ---------------------------- */

static int ctl_call(const char *json, const int *fds, int nfds, char *out,
		    size_t outlen)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 2)];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { (void *)json, strlen(json) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds) {
		struct cmsghdr *cm;

		memset(&cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
	}
	if (sendmsg(ctl_fd, &mh, MSG_NOSIGNAL) < 0)
		return -errno;
	n = recv(ctl_fd, out, outlen - 1, 0);
	if (n <= 0)
		return n < 0 ? -errno : -ECONNRESET;
	out[n] = 0;
	return 0;
}

static bool reply_ok(const char *r)
{
	return strstr(r, "\"ok\":true") != NULL || strstr(r, "\"ok\": true") != NULL;
}

/* {"cmd":"port-add","name":NAME,"policy":POLICY} */
static void port_add_json(char *buf, size_t len, const char *name, const char *policy)
{
	snprintf(buf, len, "{\"cmd\":\"port-add\",\"name\":\"%s\",\"policy\":%s}",
		 name, policy);
}

static void cmd_port(char *name, char *policy)
{
	char req[4096], r[65536];
	int sv[2], ret;

	if (!name || !policy) {
		reply("error usage: port NAME POLICY-JSON");
		return;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		reply("error socketpair: %s", strerror(errno));
		return;
	}
	port_add_json(req, sizeof(req), name, policy);
	ret = ctl_call(req, &sv[1], 1, r, sizeof(r));
	close(sv[1]);
	if (ret || !reply_ok(r)) {
		close(sv[0]);
		reply("error %s", ret ? strerror(-ret) : r);
		return;
	}
	add_end(name, sv[0], false);
	reply("ok %s", r);
}

static void cmd_addfd(char *kind, char *name, char *policy)
{
	char req[4096], r[65536];
	int fds[2] = { -1, -1 }, n = 1, sv[2], p[2], ret;

	if (!kind || !name || !policy) {
		reply("error usage: addfd KIND NAME POLICY-JSON");
		return;
	}
	if (strcmp(kind, "pipe") == 0 && pipe(p) == 0) {
		fds[0] = p[0];
		close(p[1]);
	} else if (strcmp(kind, "stream") == 0 &&
		   socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0) {
		fds[0] = sv[0];
		close(sv[1]);
	} else if (strcmp(kind, "dgram") == 0 &&
		   socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0) {
		fds[0] = sv[0];
		close(sv[1]);
	} else if (strcmp(kind, "two") == 0 &&
		   socketpair(AF_UNIX, SOCK_SEQPACKET, 0, fds) == 0) {
		n = 2;
	} else if (strcmp(kind, "none") == 0) {
		n = 0;
	} else {
		reply("error unknown descriptor kind %s", kind);
		return;
	}
	port_add_json(req, sizeof(req), name, policy);
	ret = ctl_call(req, fds, n, r, sizeof(r));
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (ret)
		reply("error %s", strerror(-ret));
	else
		reply("ok %s", r);
}

static void cmd_ctl(char *json)
{
	char r[262144];
	int ret;

	if (!json) {
		reply("error usage: ctl JSON");
		return;
	}
	ret = ctl_call(json, NULL, 0, r, sizeof(r));
	if (ret)
		reply("error %s", strerror(-ret));
	else
		reply("ok %s", r);
}

/* ---- AF_PACKET endpoints ------------------------------------------------ */

static int enter_netns(const char *netns, int *saved)
{
	char path[256];
	int fd;

	*saved = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	snprintf(path, sizeof(path), "/run/netns/%s", netns);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || *saved < 0 || setns(fd, CLONE_NEWNET) < 0) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		return -e;
	}
	close(fd);
	return 0;
}

static void cmd_packet(char *name, char *ifname, char *netns)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET };
	int one = 1, saved = -1, fd, ret;

	if (!name || !ifname) {
		reply("error usage: packet NAME IFNAME [NETNS]");
		return;
	}
	if (netns && (ret = enter_netns(netns, &saved))) {
		reply("error netns %s: %s", netns, strerror(-ret));
		return;
	}
	fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = (int)if_nametoindex(ifname);
	if (fd < 0 || !sll.sll_ifindex ||
	    setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		reply("error packet socket on %s: %s", ifname, strerror(errno));
		if (fd >= 0)
			close(fd);
	} else {
		add_end(name, fd, true);
		reply("ok");
	}
	if (saved >= 0) {
		setns(saved, CLONE_NEWNET);
		close(saved);
	}
}

/* ---- frames ------------------------------------------------------------- */

static int mac_parse(const char *s, uint8_t *mac)
{
	unsigned int b[6];

	if (!s || sscanf(s, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4],
			 &b[5]) != 6)
		return -1;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
	return 0;
}

struct spec {
	uint8_t dst[6], src[6];
	int vlan;		/* -1: untagged */
	int prio;
	size_t len;
	uint32_t id;
	const char *kind;
};

static int parse_spec(char **args, int nargs, struct spec *s)
{
	memset(s, 0, sizeof(*s));
	s->vlan = -1;
	s->len = 60;
	s->kind = "plain";
	if (nargs < 2 || mac_parse(args[0], s->dst) || mac_parse(args[1], s->src))
		return -1;
	for (int i = 2; i < nargs; i++) {
		char *v = strchr(args[i], '=');

		if (!v)
			return -1;
		*v++ = 0;
		if (strcmp(args[i], "vlan") == 0)
			s->vlan = atoi(v);
		else if (strcmp(args[i], "prio") == 0)
			s->prio = atoi(v);
		else if (strcmp(args[i], "len") == 0)
			s->len = (size_t)atol(v);
		else if (strcmp(args[i], "id") == 0)
			s->id = (uint32_t)strtoul(v, NULL, 0);
		else if (strcmp(args[i], "kind") == 0)
			s->kind = v;
		else
			return -1;
	}
	return 0;
}

static size_t build(const struct spec *s, uint8_t *f, size_t cap)
{
	size_t off = 12, min;

	memset(f, 0, cap);
	memcpy(f, s->dst, 6);
	memcpy(f + 6, s->src, 6);
	if (s->vlan >= 0) {
		f[12] = 0x81;
		f[13] = 0x00;
		f[14] = (uint8_t)((s->prio << 5) | ((s->vlan >> 8) & 0x0f));
		f[15] = (uint8_t)s->vlan;
		off = 16;
	}
	if (strcmp(s->kind, "dhcp") == 0) {
		/* IPv4, UDP from the server port 67 to the client port 68. */
		f[off] = 0x08;
		f[off + 1] = 0x00;
		f[off + 2] = 0x45;
		f[off + 2 + 9] = 17;
		f[off + 2 + 20] = 0;
		f[off + 2 + 21] = 67;
		f[off + 2 + 22] = 0;
		f[off + 2 + 23] = 68;
		min = off + 2 + 28;
	} else if (strcmp(s->kind, "ra") == 0) {
		/* IPv6, ICMPv6 router advertisement (type 134). */
		f[off] = 0x86;
		f[off + 1] = 0xdd;
		f[off + 2] = 0x60;
		f[off + 2 + 6] = 58;
		f[off + 2 + 7] = 255;
		f[off + 2 + 40] = 134;
		min = off + 2 + 48;
	} else {
		f[off] = 0x88;
		f[off + 1] = 0xb5;
		min = off + 2;
	}
	min += TRAILER;
	if (min < s->len)
		min = s->len;
	if (min > cap)
		min = cap;
	memcpy(f + min - TRAILER, MAGIC, 8);
	f[min - 4] = (uint8_t)(s->id >> 24);
	f[min - 3] = (uint8_t)(s->id >> 16);
	f[min - 2] = (uint8_t)(s->id >> 8);
	f[min - 1] = (uint8_t)s->id;
	return min;
}

static void cmd_send(char **args, int nargs)
{
	struct end *e = nargs ? find(args[0]) : NULL;
	uint8_t f[65536];
	struct spec s;
	size_t len;

	if (!e || parse_spec(args + 1, nargs - 1, &s)) {
		reply("error usage: send NAME DST SRC [vlan=V] [prio=P] [len=L] [id=N] [kind=K]");
		return;
	}
	len = build(&s, f, sizeof(f));
	if (send(e->fd, f, len, MSG_NOSIGNAL) != (ssize_t)len)
		reply("error send: %s", strerror(errno));
	else
		reply("ok");
}

/* One received frame, the tag put back from auxdata on packet sockets. */
static ssize_t receive(struct end *e, uint8_t *buf, size_t cap, int ms)
{
	union {
		char b[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
		struct cmsghdr align;
	} cbuf;
	struct pollfd pfd = { .fd = e->fd, .events = POLLIN };
	struct iovec iov = { buf + 4, cap - 4 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (poll(&pfd, 1, ms) <= 0)
		return 0;
	mh.msg_control = cbuf.b;
	mh.msg_controllen = sizeof(cbuf.b);
	n = recvmsg(e->fd, &mh, MSG_DONTWAIT);
	if (n <= 0)
		return n;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		struct tpacket_auxdata aux;

		if (cm->cmsg_level != SOL_PACKET || cm->cmsg_type != PACKET_AUXDATA)
			continue;
		memcpy(&aux, CMSG_DATA(cm), sizeof(aux));
		if ((aux.tp_status & TP_STATUS_VLAN_VALID) && n >= 12) {
			memmove(buf, buf + 4, 12);
			buf[12] = 0x81;
			buf[13] = 0x00;
			buf[14] = (uint8_t)(aux.tp_vlan_tci >> 8);
			buf[15] = (uint8_t)aux.tp_vlan_tci;
			return n + 4;
		}
	}
	memmove(buf, buf + 4, (size_t)n);
	return n;
}

static bool is_test_frame(const uint8_t *f, ssize_t n)
{
	return n >= 14 + TRAILER && memcmp(f + n - TRAILER, MAGIC, 8) == 0;
}

/* The next test frame within @ms; 0 if none came. */
static ssize_t next_test_frame(struct end *e, uint8_t *buf, size_t cap, int ms)
{
	double end = now_s() + ms / 1000.0;

	for (;;) {
		int left = (int)((end - now_s()) * 1000);
		ssize_t n;

		if (left < 0)
			return 0;
		n = receive(e, buf, cap, left);
		if (n < 0)
			return n;
		if (n == 0) {
			if (!e->packet && left > 0) {
				/* A seqpacket end at EOF polls readable: the peer hung up. */
				struct pollfd pfd = { .fd = e->fd, .events = POLLIN };

				if (poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLHUP))
					return -ECONNRESET;
			}
			continue;
		}
		if (is_test_frame(buf, n))
			return n;
	}
}

static void cmd_recv(char *name, char *ms_s)
{
	struct end *e = name ? find(name) : NULL;
	uint8_t f[65536 + 8];
	int ms = ms_s ? atoi(ms_s) : 1000;
	char dst[18], src[18];
	int vlan = -1, prio = 0;
	ssize_t n;

	if (!e) {
		reply("error usage: recv NAME [MS]");
		return;
	}
	n = next_test_frame(e, f, sizeof(f), ms);
	if (n < 0) {
		reply("error %s", strerror((int)-n));
		return;
	}
	if (n == 0) {
		reply("none");
		return;
	}
	snprintf(dst, sizeof(dst), "%02x:%02x:%02x:%02x:%02x:%02x",
		 f[0], f[1], f[2], f[3], f[4], f[5]);
	snprintf(src, sizeof(src), "%02x:%02x:%02x:%02x:%02x:%02x",
		 f[6], f[7], f[8], f[9], f[10], f[11]);
	if (f[12] == 0x81 && f[13] == 0x00) {
		vlan = ((f[14] & 0x0f) << 8) | f[15];
		prio = f[14] >> 5;
	}
	if (vlan < 0)
		reply("ok dst=%s src=%s vlan=none len=%zd id=%u", dst, src, n,
		      (unsigned int)(f[n - 4] << 24 | f[n - 3] << 16 | f[n - 2] << 8 | f[n - 1]));
	else
		reply("ok dst=%s src=%s vlan=%d prio=%d len=%zd id=%u", dst, src, vlan,
		      prio, n,
		      (unsigned int)(f[n - 4] << 24 | f[n - 3] << 16 | f[n - 2] << 8 | f[n - 1]));
}

static void cmd_count(char *name, char *ms_s)
{
	struct end *e = name ? find(name) : NULL;
	uint8_t f[65536 + 8];
	long count = 0;
	double last = 0;

	if (!e || !ms_s) {
		reply("error usage: count NAME MS");
		return;
	}
	/* Until nothing came for MS. */
	while (next_test_frame(e, f, sizeof(f), atoi(ms_s)) > 0) {
		count++;
		last = now_s();
	}
	reply("ok %ld %.3f", count, count ? last - flood_start : 0.0);
}

static void cmd_flood(char **args, int nargs)
{
	struct end *e = nargs ? find(args[0]) : NULL;
	uint8_t f[65536];
	struct spec s;
	double t0;
	long n;
	char lenarg[32];
	char *specargs[3];

	if (!e || nargs != 5) {
		reply("error usage: flood NAME DST SRC N LEN");
		return;
	}
	snprintf(lenarg, sizeof(lenarg), "len=%s", args[4]);
	specargs[0] = args[1];
	specargs[1] = args[2];
	specargs[2] = lenarg;
	if (parse_spec(specargs, 3, &s)) {
		reply("error bad frame");
		return;
	}
	n = atol(args[3]);
	t0 = flood_start = now_s();
	for (long i = 0; i < n; i++) {
		size_t len;

		s.id = (uint32_t)i;
		len = build(&s, f, sizeof(f));
		if (send(e->fd, f, len, MSG_NOSIGNAL) != (ssize_t)len) {
			reply("error send: %s", strerror(errno));
			return;
		}
	}
	reply("ok %.3f", now_s() - t0);
}

static void cmd_close(char *name)
{
	struct end *e = name ? find(name) : NULL;

	if (!e) {
		reply("error no end named %s", name ? name : "");
		return;
	}
	close(e->fd);
	e->fd = -1;
	reply("ok");
}

static void cmd_sndbuf(char *name, char *bytes_s)
{
	struct end *e = name ? find(name) : NULL;
	int bytes = bytes_s ? atoi(bytes_s) : 0;

	if (!e || bytes <= 0) {
		reply("error usage: sndbuf NAME BYTES");
		return;
	}
	if (setsockopt(e->fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof(bytes)) < 0) {
		reply("error SO_SNDBUFFORCE: %s", strerror(errno));
		return;
	}
	reply("ok");
}

/* Split on spaces; a JSON argument (from '{') runs to the end of the line. */
static int split(char *line, char **args, int max)
{
	int n = 0;

	while (*line && n < max) {
		while (*line == ' ')
			line++;
		if (!*line)
			break;
		args[n++] = line;
		if (*line == '{')
			break;
		while (*line && *line != ' ')
			line++;
		if (*line)
			*line++ = 0;
	}
	return n;
}

int main(int argc, char **argv)
{
	char line[8192];

	if (argc != 3 || strcmp(argv[1], "--control") != 0) {
		fprintf(stderr, "usage: frames --control SOCKET\n");
		return 2;
	}
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[2]);
		ctl_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (ctl_fd < 0 || connect(ctl_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			fprintf(stderr, "frames: cannot connect to %s: %s\n", argv[2],
				strerror(errno));
			return 1;
		}
	}
	while (fgets(line, sizeof(line), stdin)) {
		char *args[16] = { 0 };
		int n;

		line[strcspn(line, "\n")] = 0;
		n = split(line, args, 16);
		if (n == 0)
			continue;
		if (strcmp(args[0], "quit") == 0)
			break;
		if (strcmp(args[0], "port") == 0)
			cmd_port(args[1], args[2]);
		else if (strcmp(args[0], "addfd") == 0)
			cmd_addfd(args[1], args[2], args[3]);
		else if (strcmp(args[0], "ctl") == 0)
			cmd_ctl(args[1]);
		else if (strcmp(args[0], "packet") == 0)
			cmd_packet(args[1], args[2], args[3]);
		else if (strcmp(args[0], "send") == 0)
			cmd_send(args + 1, n - 1);
		else if (strcmp(args[0], "recv") == 0)
			cmd_recv(args[1], args[2]);
		else if (strcmp(args[0], "count") == 0)
			cmd_count(args[1], args[2]);
		else if (strcmp(args[0], "flood") == 0)
			cmd_flood(args + 1, n - 1);
		else if (strcmp(args[0], "close") == 0)
			cmd_close(args[1]);
		else if (strcmp(args[0], "sndbuf") == 0)
			cmd_sndbuf(args[1], args[2]);
		else
			reply("error unknown command %s", args[0]);
	}
	return 0;
}
