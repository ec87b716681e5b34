// SPDX-License-Identifier: MIT
/*
 * Control messages: one JSON object per SOCK_SEQPACKET message, with file
 * descriptors riding along in SCM_RIGHTS.  Seqpacket keeps message
 * boundaries, so no framing is needed and a short read is a protocol error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/util.h"

int msg_send(int sock, const json_t *obj, const int *fds, size_t nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * MSG_MAX_FDS)];
		struct cmsghdr align;
	} control;
	struct msghdr mh = { 0 };
	struct iovec iov;
	char *text;
	size_t len;
	ssize_t n;
	int ret = 0;

	if (nfds > MSG_MAX_FDS || !json_is_object(obj))
		return -EINVAL;
	text = json_dumps(obj, JSON_COMPACT);
	if (!text)
		return -ENOMEM;
	len = strlen(text);
	if (len > MSG_MAX_BYTES) {
		free(text);
		return -EMSGSIZE;
	}

	iov.iov_base = text;
	iov.iov_len = len;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (nfds) {
		struct cmsghdr *cm;

		memset(&control, 0, sizeof(control));
		mh.msg_control = control.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}

	do {
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		ret = -errno;
	else if ((size_t)n != len)
		ret = -EMSGSIZE;
	free(text);
	return ret;
}

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

/* Collect SCM_RIGHTS descriptors; returns how many were stored. */
static size_t take_fds(struct msghdr *mh, int *fds, size_t max_fds,
		       bool *overflow)
{
	size_t count = 0;

	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm;
	     cm = CMSG_NXTHDR(mh, cm)) {
		size_t n;
		int *data;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		data = (int *)CMSG_DATA(cm);
		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, &data[i], sizeof(fd));
			if (count < max_fds) {
				fds[count++] = fd;
			} else {
				close(fd);
				*overflow = true;
			}
		}
	}
	return count;
}

int msg_recv(int sock, json_t **obj, int *fds, size_t *nfds, size_t max_fds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * MSG_MAX_FDS)];
		struct cmsghdr align;
	} control;
	struct msghdr mh = { 0 };
	struct iovec iov;
	json_error_t jerr;
	bool overflow = false;
	size_t got = 0;
	char *buf;
	ssize_t n;
	json_t *doc;
	int ret;

	if (nfds)
		*nfds = 0;
	if (max_fds > MSG_MAX_FDS || (max_fds && !fds))
		return -EINVAL;
	/* One spare byte tells a message of exactly the limit from a longer one. */
	buf = malloc(MSG_MAX_BYTES + 1);
	if (!buf)
		return -ENOMEM;
	iov.iov_base = buf;
	iov.iov_len = MSG_MAX_BYTES + 1;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = control.buf;
	mh.msg_controllen = sizeof(control.buf);

	do {
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		ret = -errno;
		goto out;
	}
	got = take_fds(&mh, fds, max_fds, &overflow);
	if (n == 0 && got == 0) {
		ret = -ECONNRESET;
		goto out;
	}
	if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || overflow ||
	    n > MSG_MAX_BYTES) {
		ret = -EMSGSIZE;
		goto drop_fds;
	}

	doc = json_loadb(buf, (size_t)n, 0, &jerr);
	if (!json_is_object(doc)) {
		json_decref(doc);
		ret = -EBADMSG;
		goto drop_fds;
	}
	*obj = doc;
	if (nfds)
		*nfds = got;
	ret = 0;
	goto out;

drop_fds:
	close_fds(fds, got);
out:
	free(buf);
	return ret;
}

int msg_call(int sock, const json_t *req, json_t **reply)
{
	int ret = msg_send(sock, req, NULL, 0);

	if (ret)
		return ret;
	return msg_recv(sock, reply, NULL, NULL, 0);
}

int msg_listen(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "control socket path is too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -errno;
	}
	/* A socket file left by a dead process is replaced; a live one is not. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(fd);
		snprintf(err, errlen, "control socket %s is in use by another worker", path);
		return -EADDRINUSE;
	}
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(path, 0600) < 0 || listen(fd, 8) < 0) {
		int e = errno;

		snprintf(err, errlen, "control socket %s: %s", path, strerror(e));
		close(fd);
		return -e;
	}
	return fd;
}

int msg_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, e;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = errno;
		close(fd);
		return -e;
	}
	return fd;
}
