// SPDX-License-Identifier: MIT
/*
 * fsvisor-agent: connects to the host (vsock CID 2, port 18755, or a Unix
 * socket with --socket), says hello, and answers the host's requests;
 * connects again a second after a connection ends.  Everything runs in
 * one poll() loop: the connection, the guest's data exchange directory
 * (inotify), the freeze deadline (a timerfd).
 *
 *   fsvisor-agent [--socket PATH | --cid CID] [--port PORT] [--state-dir DIR]
 *                 [--freeze-mount PATH]... [--fake-clock SECONDS]
 *                 [--poweroff-cmd CMD] [--reboot-cmd CMD] [--verbose]
 *   fsvisor-agent kvp set KEY VALUE | kvp del KEY   [--state-dir DIR]
 *   fsvisor-agent --version
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define RETRY_MS		1000
#define INTRINSIC_EVERY_MS	60000
#define HELD_LOG_MAX		(64 * 1024)

struct agent_opts opts = {
	.cid = VMADDR_CID_HOST,
	.port = IC_PORT,
	.state_dir = AGENT_STATE_DIR,
};

static int sock = -1;
static bool connecting, hello_done;
static uint8_t in[IC_MAX_FRAME];
static size_t in_len;
static uint8_t *out;
static size_t out_off, out_len, out_cap;
static uint32_t next_id;
static char held_log[HELD_LOG_MAX];
static size_t held_len;
static volatile sig_atomic_t stop;

static uint64_t mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* ---- logging ------------------------------------------------------------------ */

static void log_line(const char *line)
{
	/* Frozen file systems may hold up the journal: keep it until the thaw. */
	if (freeze_active()) {
		size_t n = strlen(line);

		if (held_len + n + 1 < sizeof(held_log)) {
			memcpy(held_log + held_len, line, n);
			held_log[held_len + n] = '\n';
			held_len += n + 1;
		}
		return;
	}
	if (held_len) {
		fwrite(held_log, 1, held_len, stderr);
		held_len = 0;
	}
	fprintf(stderr, "%s\n", line);
}

void agent_log(const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_line(line);
}

void agent_log_kmsg(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int fd;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_line(line);
	/* The kernel's log is memory: it takes the line whatever is frozen. */
	fd = open("/dev/kmsg", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd >= 0) {
		dprintf(fd, "<5>fsvisor-agent: %s\n", line);
		close(fd);
	}
}

/* ---- sending -------------------------------------------------------------------- */

bool agent_connected(void)
{
	return sock >= 0 && !connecting && hello_done;
}

static void flush(void)
{
	while (sock >= 0 && !connecting && out_len) {
		ssize_t n = send(sock, out + out_off, out_len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n > 0) {
			out_off += (size_t)n;
			out_len -= (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else {
			break;
		}
	}
	if (!out_len)
		out_off = 0;
}

static bool queue(const uint8_t *frame, size_t len)
{
	if (sock < 0 || out_len + len > AGENT_OUT_MAX)
		return false;
	if (out_off + out_len + len > out_cap) {
		size_t cap = out_cap ? out_cap : 65536;
		uint8_t *p;

		if (out_len)
			memmove(out, out + out_off, out_len);
		out_off = 0;
		while (cap < out_len + len)
			cap *= 2;
		if (cap > out_cap) {
			p = realloc(out, cap);
			if (!p)
				return false;
			out = p;
			out_cap = cap;
		}
	}
	memcpy(out + out_off + out_len, frame, len);
	out_len += len;
	flush();
	return true;
}

bool agent_send(struct ic_writer *w)
{
	int len = ic_end(w);

	return len > 0 && queue(w->buf, (size_t)len);
}

void agent_reply(const struct ic_hdr *req, uint32_t status, const char *why)
{
	uint8_t frame[IC_HDR_LEN + 4 + IC_MESSAGE_MAX];
	struct ic_writer w;

	if (!req->id)
		return;
	ic_begin_reply(&w, frame, sizeof(frame), req, status);
	if (status && why)
		ic_put_str(&w, IC_T_MESSAGE, why);
	agent_send(&w);
}

/* ---- the connection ---------------------------------------------------------------- */

static void send_hello(void)
{
	uint8_t frame[256];
	struct ic_writer w;

	ic_begin(&w, frame, sizeof(frame), IC_HELLO, 0, ++next_id, 0);
	ic_put_u32(&w, IC_T_VERSION_MIN, IC_VERSION_MIN);
	ic_put_u32(&w, IC_T_VERSION_MAX, IC_VERSION_MAX);
	ic_put_u32(&w, IC_T_CAPS, IC_CAP_ALL);
	ic_put_str(&w, IC_T_AGENT, "fsvisor-agent " AGENT_VERSION);
	agent_send(&w);
}

static void disconnect(const char *why)
{
	if (sock < 0)
		return;
	if (hello_done)
		agent_log("disconnected: %s", why);
	close(sock);
	sock = -1;
	connecting = hello_done = false;
	in_len = out_len = out_off = 0;
	copy_abort_all();
}

static int open_socket(void)
{
	int fd;

	if (opts.socket) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", opts.socket);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 &&
		    errno != EINPROGRESS && errno != EAGAIN) {
			close(fd);
			return -1;
		}
		return fd;
	}
	{
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = opts.cid,
					  .svm_port = opts.port };

		fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 &&
		    errno != EINPROGRESS) {
			close(fd);
			return -1;
		}
		return fd;
	}
}

static void try_connect(void)
{
	sock = open_socket();
	if (sock < 0)
		return;
	connecting = true;
}

/* The non-blocking connect finished: say hello. */
static void connected(void)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(sock, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
		close(sock);
		sock = -1;
		connecting = false;
		return;
	}
	connecting = false;
	send_hello();
}

static void on_hello_reply(const struct ic_msg *m)
{
	if (m->h.status) {
		agent_log("the host refused the hello: %s", strerror((int)m->h.status));
		disconnect("refused");
		return;
	}
	hello_done = true;
	agent_log("connected to the host: protocol %llu, services %#llx",
		  (unsigned long long)m->num[IC_T_VERSION], (unsigned long long)m->num[IC_T_CAPS]);
	kvp_resync();
}

static void on_request(const struct ic_msg *m)
{
	const struct ic_hdr *h = &m->h;

	/* Frozen: status and thaw; host items wait for the thaw. */
	if (freeze_active() && h->type != IC_THAW && h->type != IC_BACKUP_STATUS &&
	    h->type != IC_KVP_SET && h->type != IC_KVP_DELETE && h->type != IC_KVP_CLEAR) {
		agent_reply(h, EBUSY, "the guest's file systems are frozen");
		return;
	}
	switch (h->type) {
	case IC_HEARTBEAT: {
		uint8_t frame[64];
		struct ic_writer w;

		ic_begin_reply(&w, frame, sizeof(frame), h, 0);
		ic_put_u64(&w, IC_T_SEQ, m->num[IC_T_SEQ]);
		agent_send(&w);
		return;
	}
	case IC_SHUTDOWN:
		shutdown_request(m);
		return;
	case IC_TIME:
		time_request(m);
		return;
	case IC_KVP_SET:
	case IC_KVP_DELETE:
	case IC_KVP_CLEAR:
		kvp_host_request(m);
		return;
	case IC_FREEZE:
	case IC_THAW:
	case IC_BACKUP_STATUS:
		freeze_request(m);
		return;
	case IC_FILE_OPEN:
	case IC_FILE_DATA:
	case IC_FILE_CLOSE:
		copy_request(m);
		return;
	default:
		agent_reply(h, ENOSYS, "the agent does not know this request");
		return;
	}
}

static void on_frame(const struct ic_hdr *h, const uint8_t *payload)
{
	static struct ic_msg m;
	const char *why;
	int ret = ic_parse(h, payload, &m, &why);

	if (ret == IC_BAD_FRAME) {
		disconnect(why);
		return;
	}
	if (h->flags & IC_F_REPLY) {
		if (h->type == IC_HELLO && !hello_done && (ret == IC_OK))
			on_hello_reply(&m);
		return;
	}
	if (ret) {
		agent_reply(h, ret == IC_BAD_TYPE ? ENOSYS : EINVAL, why);
		return;
	}
	on_request(&m);
}

static void receive(void)
{
	for (;;) {
		ssize_t n = recv(sock, in + in_len, sizeof(in) - in_len, MSG_DONTWAIT);
		size_t off = 0;

		if (n == 0) {
			disconnect("the host closed the connection");
			return;
		}
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				disconnect(strerror(errno));
			return;
		}
		in_len += (size_t)n;
		while (sock >= 0) {
			struct ic_hdr h;
			int ret = ic_hdr_decode(in + off, in_len - off, &h);

			if (ret < 0) {
				disconnect("the host sent something that is not a frame");
				return;
			}
			if (ret == 0 || in_len - off < IC_HDR_LEN + h.len)
				break;
			on_frame(&h, in + off + IC_HDR_LEN);
			off += IC_HDR_LEN + h.len;
		}
		if (sock < 0)
			return;
		memmove(in, in + off, in_len - off);
		in_len -= off;
	}
}

/* ---- the loop ---------------------------------------------------------------------- */

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int run(void)
{
	uint64_t retry_at = 0, intrinsic_at = mono_ms() + INTRINSIC_EVERY_MS;

	if (kvp_init())
		return 1;
	agent_log("fsvisor-agent %s: state in %s, host %s", AGENT_VERSION, opts.state_dir,
		  opts.socket ? opts.socket : "vsock CID 2");
	while (!stop) {
		struct pollfd p[3] = {
			{ .fd = sock, .events = (short)(POLLIN | (connecting || out_len ? POLLOUT : 0)) },
			{ .fd = kvp_guest_fd(), .events = POLLIN },
			{ .fd = freeze_timer_fd(), .events = POLLIN },
		};
		uint64_t now = mono_ms();
		int timeout = (int)(intrinsic_at > now ? intrinsic_at - now : 0);

		if (sock < 0) {
			if (now >= retry_at) {
				try_connect();
				retry_at = now + RETRY_MS;
				continue;
			}
			if (retry_at - now < (uint64_t)timeout)
				timeout = (int)(retry_at - now);
		}
		if (poll(p, 3, timeout) < 0 && errno != EINTR)
			return 1;
		if (p[2].revents)
			freeze_deadline();
		if (sock >= 0 && connecting && (p[0].revents & (POLLOUT | POLLERR | POLLHUP)))
			connected();
		else if (sock >= 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			receive();
		if (sock >= 0 && (p[0].revents & POLLOUT))
			flush();
		if (p[1].revents)
			kvp_guest_changed();
		if (mono_ms() >= intrinsic_at) {
			intrinsic_at = mono_ms() + INTRINSIC_EVERY_MS;
			kvp_intrinsic_refresh();
		}
		if (!out_len)
			power_run_pending();
	}
	freeze_thaw_all("the agent stops");
	return 0;
}

static int kvp_command(int argc, char **argv)
{
	int ret;

	if (argc == 4 && strcmp(argv[1], "set") == 0)
		ret = kvp_guest_store(argv[2], argv[3]);
	else if (argc == 3 && strcmp(argv[1], "del") == 0)
		ret = kvp_guest_store(argv[2], NULL);
	else {
		fprintf(stderr, "usage: fsvisor-agent kvp set KEY VALUE | kvp del KEY\n");
		return 2;
	}
	if (ret) {
		fprintf(stderr, "fsvisor-agent: %s\n", strerror(-ret));
		return 1;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: fsvisor-agent [--socket PATH | --cid CID] [--port PORT] [--state-dir DIR]\n"
		"                     [--freeze-mount PATH]... [--fake-clock SECONDS]\n"
		"                     [--poweroff-cmd CMD] [--reboot-cmd CMD] [--verbose]\n"
		"       fsvisor-agent [--state-dir DIR] kvp set KEY VALUE | kvp del KEY\n"
		"       fsvisor-agent --version\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "cid", required_argument, NULL, 'c' },
		{ "port", required_argument, NULL, 'p' },
		{ "state-dir", required_argument, NULL, 'd' },
		{ "freeze-mount", required_argument, NULL, 'f' },
		{ "fake-clock", required_argument, NULL, 'k' },
		{ "poweroff-cmd", required_argument, NULL, 'o' },
		{ "reboot-cmd", required_argument, NULL, 'r' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct sigaction sa = { .sa_handler = on_signal };
	int c;

	while ((c = getopt_long(argc, argv, "+s:c:p:d:f:k:o:r:vVh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			opts.socket = optarg;
			break;
		case 'c':
			opts.cid = (unsigned int)strtoul(optarg, NULL, 10);
			break;
		case 'p':
			opts.port = (unsigned int)strtoul(optarg, NULL, 10);
			break;
		case 'd':
			opts.state_dir = optarg;
			break;
		case 'f':
			if (opts.nfreeze == AGENT_MAX_FREEZE) {
				fprintf(stderr, "fsvisor-agent: at most %d --freeze-mount\n",
					AGENT_MAX_FREEZE);
				return 2;
			}
			opts.freeze[opts.nfreeze++] = optarg;
			break;
		case 'k':
			opts.fake_clock = true;
			opts.fake_offset_ns = strtoll(optarg, NULL, 10) * 1000000000LL;
			break;
		case 'o':
			opts.poweroff_cmd = optarg;
			break;
		case 'r':
			opts.reboot_cmd = optarg;
			break;
		case 'v':
			opts.verbose = true;
			break;
		case 'V':
			printf("fsvisor-agent %s\n", AGENT_VERSION);
			return 0;
		case 'h':
			usage();
			return 0;
		default:
			usage();
			return 2;
		}
	}
	if (optind < argc && strcmp(argv[optind], "kvp") == 0)
		return kvp_command(argc - optind, argv + optind);
	if (optind != argc) {
		usage();
		return 2;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stderr, NULL, _IOLBF, 0);
	return run();
}
