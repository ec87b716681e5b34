// SPDX-License-Identifier: MIT
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

static int sv[2];

static void setup(void)
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
}

static void teardown(void)
{
	close(sv[0]);
	close(sv[1]);
}

TestSuite(msg, .init = setup, .fini = teardown);

static int open_fd_count(void)
{
	int n = 0;

	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

Test(msg, roundtrip_with_fds)
{
	json_t *req = json_pack("{s:s, s:i}", "cmd", "attach", "port", 3);
	json_t *got = NULL;
	int p[2], fds[4];
	size_t nfds = 99;
	char c;

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(msg_send(sv[0], req, p, 2), 0);
	cr_assert_eq(msg_recv(sv[1], &got, fds, &nfds, 4), 0);
	cr_assert(json_equal(req, got));
	cr_assert_eq(nfds, 2);
	/* The received write end feeds the original read end. */
	cr_assert_eq(write(fds[1], "z", 1), 1);
	cr_assert_eq(read(p[0], &c, 1), 1);
	cr_assert_eq(c, 'z');
	cr_assert(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
	for (int i = 0; i < 2; i++) {
		close(fds[i]);
		close(p[i]);
	}
	json_decref(req);
	json_decref(got);
}

Test(msg, many_messages_keep_boundaries)
{
	for (int i = 0; i < 50; i++) {
		json_t *m = json_pack("{s:i}", "seq", i);

		cr_assert_eq(msg_send(sv[0], m, NULL, 0), 0);
		json_decref(m);
	}
	for (int i = 0; i < 50; i++) {
		json_t *m = NULL;

		cr_assert_eq(msg_recv(sv[1], &m, NULL, NULL, 0), 0);
		cr_assert_eq(json_integer_value(json_object_get(m, "seq")), i);
		json_decref(m);
	}
}

Test(msg, send_rejects_bad_arguments)
{
	json_t *arr = json_array();
	json_t *obj = json_object();
	int fds[MSG_MAX_FDS + 1] = { 0 };

	cr_assert_eq(msg_send(sv[0], arr, NULL, 0), -EINVAL);
	cr_assert_eq(msg_send(sv[0], obj, fds, MSG_MAX_FDS + 1), -EINVAL);
	json_decref(arr);
	json_decref(obj);
}

Test(msg, send_too_big)
{
	size_t len = MSG_MAX_BYTES + 10;
	char *big = malloc(len);
	json_t *m;

	memset(big, 'q', len - 1);
	big[len - 1] = 0;
	m = json_pack("{s:s}", "big", big);
	cr_assert_eq(msg_send(sv[0], m, NULL, 0), -EMSGSIZE);
	json_decref(m);
	free(big);
}

Test(msg, recv_rejects_non_objects)
{
	static const char *const bad[] = { "[1,2]", "garbage", "{\"a\":", "42" };
	json_t *m = NULL;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		cr_assert_eq(send(sv[0], bad[i], strlen(bad[i]), 0),
			     (ssize_t)strlen(bad[i]));
		cr_assert_eq(msg_recv(sv[1], &m, NULL, NULL, 0), -EBADMSG, "%s", bad[i]);
	}
	/* The socket is still usable afterwards. */
	cr_assert_eq(send(sv[0], "{}", 2, 0), 2);
	cr_assert_eq(msg_recv(sv[1], &m, NULL, NULL, 0), 0);
	json_decref(m);
}

Test(msg, recv_oversized_raw_message)
{
	size_t len = MSG_MAX_BYTES + 100;
	char *big = malloc(len);
	json_t *m = NULL;
	int sndbuf = (int)len * 2;

	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	memset(big, ' ', len);
	big[0] = '{';
	big[len - 1] = '}';
	cr_assert_eq(send(sv[0], big, len, 0), (ssize_t)len);
	cr_assert_eq(msg_recv(sv[1], &m, NULL, NULL, 0), -EMSGSIZE);
	free(big);
}

Test(msg, surplus_fds_are_closed)
{
	json_t *m = json_object(), *got = NULL;
	int p[2], fds[1];
	size_t nfds;
	int before;

	cr_assert_eq(pipe(p), 0);
	before = open_fd_count();
	cr_assert_eq(msg_send(sv[0], m, p, 2), 0);
	cr_assert_eq(msg_recv(sv[1], &got, fds, &nfds, 1), -EMSGSIZE);
	cr_assert_eq(nfds, 0);
	cr_assert_eq(open_fd_count(), before, "received descriptors leaked");
	close(p[0]);
	close(p[1]);
	json_decref(m);
}

Test(msg, peer_closed)
{
	json_t *m = NULL;

	close(sv[0]);
	sv[0] = -1;
	cr_assert_eq(msg_recv(sv[1], &m, NULL, NULL, 0), -ECONNRESET);
}

Test(msg, call_gets_reply)
{
	json_t *req = json_pack("{s:s}", "cmd", "status");
	json_t *reply = NULL, *seen = NULL;
	pid_t pid = fork();

	if (pid == 0) {
		json_t *r;

		if (msg_recv(sv[1], &seen, NULL, NULL, 0))
			_exit(1);
		r = json_pack("{s:s, s:O}", "ok", "yes", "echo", seen);
		_exit(msg_send(sv[1], r, NULL, 0) ? 1 : 0);
	}
	cr_assert_eq(msg_call(sv[0], req, &reply), 0);
	cr_assert_str_eq(json_string_value(json_object_get(reply, "ok")), "yes");
	cr_assert(json_equal(json_object_get(reply, "echo"), req));
	json_decref(req);
	json_decref(reply);
}

Test(ringfile, wraps_and_keeps_the_newest)
{
	char path[] = "/tmp/fsvisor-ring-XXXXXX";
	int fd = mkstemp(path);
	struct ringfile *r;
	uint64_t head, oldest, off = 0;
	char buf[64];
	ssize_t n;

	close(fd);
	cr_assert_eq(ringfile_create(path, 16, &r), 0);
	cr_assert_eq(ringfile_append(r, "0123456789", 10), 0);
	cr_assert_eq(ringfile_extent(path, &head, &oldest), 0);
	cr_assert_eq(head, 10);
	cr_assert_eq(oldest, 0);
	n = ringfile_read(path, &off, buf, sizeof(buf));
	cr_assert_eq(n, 10);
	cr_assert_eq(memcmp(buf, "0123456789", 10), 0);
	cr_assert_eq(ringfile_read(path, &off, buf, sizeof(buf)), 0, "end");

	/* Past the capacity: the oldest bytes go, offsets stay absolute. */
	cr_assert_eq(ringfile_append(r, "abcdefghij", 10), 0);
	cr_assert_eq(ringfile_extent(path, &head, &oldest), 0);
	cr_assert_eq(head, 20);
	cr_assert_eq(oldest, 4);
	off = 0;
	n = ringfile_read(path, &off, buf, sizeof(buf));
	cr_assert_eq(n, 16);
	cr_assert_eq(memcmp(buf, "456789abcdefghij", 16), 0);
	cr_assert_eq(off, 20);
	off = 12;
	cr_assert_eq(ringfile_read(path, &off, buf, 3), 3);
	cr_assert_eq(memcmp(buf, "cde", 3), 0);

	/* A write bigger than the ring keeps its tail. */
	cr_assert_eq(ringfile_append(r, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", 26), 0);
	off = 0;
	cr_assert_eq(ringfile_read(path, &off, buf, sizeof(buf)), 16);
	cr_assert_eq(memcmp(buf, "KLMNOPQRSTUVWXYZ", 16), 0);
	ringfile_close(r);

	/* Reopened with the same size, it goes on; not a ring: refused. */
	cr_assert_eq(ringfile_create(path, 16, &r), 0);
	cr_assert_eq(ringfile_append(r, "!", 1), 0);
	ringfile_close(r);
	cr_assert_eq(ringfile_extent(path, &head, &oldest), 0);
	cr_assert_eq(head, 47);
	cr_assert_eq(ringfile_extent("/etc/hostname", &head, &oldest), -EINVAL);
	unlink(path);
}

/* msg_listen: a live socket is refused, a stale one replaced, mode 0600. */
Test(msg, listen_stale_and_live)
{
	char dir[] = "/tmp/fsvisor-msg-XXXXXX", path[128], err[256];
	struct stat st;
	json_t *got = NULL, *req = json_pack("{s:s}", "cmd", "status");
	int l1, l2, c, s, ret;

	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ctl.sock", dir);
	l1 = msg_listen(path, err, sizeof(err));
	cr_assert_geq(l1, 0, "%s", err);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	c = msg_connect(path);
	cr_assert_geq(c, 0);
	cr_assert_eq(msg_send(c, req, NULL, 0), 0);
	s = accept(l1, NULL, NULL);
	cr_assert_geq(s, 0);
	ret = msg_recv(s, &got, NULL, NULL, 0);
	cr_assert_eq(ret, 0, "msg_recv: %d", ret);
	cr_assert(json_equal(req, got));
	close(s);
	close(c);
	cr_assert_eq(msg_listen(path, err, sizeof(err)), -EADDRINUSE);
	cr_assert(strstr(err, "in use"));
	/* Closed without unlink: the file stays, nobody answers. */
	close(l1);
	cr_assert_eq(msg_connect(path), -ECONNREFUSED);
	l2 = msg_listen(path, err, sizeof(err));
	cr_assert_geq(l2, 0, "%s", err);
	close(l2);
	unlink(path);
	rmdir(dir);
	json_decref(req);
	json_decref(got);
}

Test(msg, listen_path_too_long)
{
	char path[200], err[256];

	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = 0;
	cr_assert_eq(msg_listen(path, err, sizeof(err)), -ENAMETOOLONG);
	cr_assert(strstr(err, "too long"));
	cr_assert_eq(msg_connect(path), -ENAMETOOLONG);
}
