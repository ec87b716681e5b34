// SPDX-License-Identifier: MIT
/*
 * Guest services: Copy-VMFile.  The host opens a file (FILE_OPEN), sends
 * its blocks (FILE_DATA) and closes it (FILE_CLOSE); the bytes go to a
 * temporary file in the destination's directory, which is synced and
 * renamed into place only when all of them came, so the destination
 * never holds half a file.  An aborted copy, or a lost connection,
 * removes the temporary file.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define MAX_FILES 4

struct copy {
	bool used;
	int fd;
	char tmp[IC_PATH_MAX + 32];
	char dest[IC_PATH_MAX + 1];
	uint64_t size;
	uint32_t mode;
};

static struct copy files[MAX_FILES];

static void copy_drop(struct copy *c)
{
	close(c->fd);
	unlink(c->tmp);
	c->used = false;
}

void copy_abort_all(void)
{
	for (int i = 0; i < MAX_FILES; i++)
		if (files[i].used)
			copy_drop(&files[i]);
}

static int mkdirs(const char *dir)
{
	char buf[IC_PATH_MAX + 1];

	snprintf(buf, sizeof(buf), "%s", dir);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return mkdir(buf, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

static void open_file(const struct ic_msg *m)
{
	uint32_t flags = (uint32_t)m->num[IC_T_FLAGS];
	char dir[IC_PATH_MAX + 1], path[IC_PATH_MAX + 1];
	struct copy *c = NULL;
	uint8_t frame[64];
	struct ic_writer w;
	struct stat st;
	int ret;

	for (int i = 0; i < MAX_FILES && !c; i++)
		if (!files[i].used)
			c = &files[i];
	if (!c) {
		agent_reply(&m->h, EMFILE, "four copies at once at most");
		return;
	}
	ic_str_copy(m, IC_T_PATH, c->dest, sizeof(c->dest));
	if (c->dest[0] != '/' || c->dest[strlen(c->dest) - 1] == '/') {
		agent_reply(&m->h, EINVAL, "the destination must be an absolute file name");
		return;
	}
	if (!(flags & IC_FILE_OVERWRITE) && lstat(c->dest, &st) == 0) {
		agent_reply(&m->h, EEXIST, "the destination exists (overwrite replaces it)");
		return;
	}
	snprintf(path, sizeof(path), "%s", c->dest);
	snprintf(dir, sizeof(dir), "%s", dirname(path));
	if (stat(dir, &st) < 0) {
		ret = (flags & IC_FILE_MKDIRS) ? mkdirs(dir) : -errno;
		if (ret) {
			agent_reply(&m->h, (uint32_t)-ret, ret == -ENOENT ?
				    "the destination's directory does not exist (mkdirs makes it)" : dir);
			return;
		}
	}
	snprintf(c->tmp, sizeof(c->tmp), "%s/.fsvisor-copy.XXXXXX", dir);
	c->fd = mkstemp(c->tmp);
	if (c->fd < 0) {
		ret = errno;
		agent_reply(&m->h, (uint32_t)ret, strerror(ret));
		return;
	}
	c->used = true;
	c->size = m->num[IC_T_SIZE];
	c->mode = (uint32_t)m->num[IC_T_FILE_MODE] & 07777;
	ic_begin_reply(&w, frame, sizeof(frame), &m->h, 0);
	ic_put_u32(&w, IC_T_HANDLE, (uint32_t)(c - files) + 1);
	agent_send(&w);
}

static struct copy *handle(const struct ic_msg *m)
{
	uint64_t h = m->num[IC_T_HANDLE];

	if (h < 1 || h > MAX_FILES || !files[h - 1].used) {
		agent_reply(&m->h, EBADF, "no such copy");
		return NULL;
	}
	return &files[h - 1];
}

static void write_block(const struct ic_msg *m)
{
	struct copy *c = handle(m);
	uint64_t off = m->num[IC_T_OFFSET];
	size_t len = m->str[IC_T_DATA].len;

	if (!c)
		return;
	if (off > c->size || len > c->size - off) {
		agent_reply(&m->h, EINVAL, "a block past the size the copy said");
		return;
	}
	if (pwrite(c->fd, m->str[IC_T_DATA].p, len, (off_t)off) != (ssize_t)len) {
		int err = errno ? errno : EIO;

		agent_reply(&m->h, (uint32_t)err, strerror(err));
		return;
	}
	agent_reply(&m->h, 0, NULL);
}

static void close_file(const struct ic_msg *m)
{
	struct copy *c = handle(m);
	struct stat st;
	char dir[IC_PATH_MAX + 1];
	int dfd;

	if (!c)
		return;
	if (!(m->num[IC_T_FLAGS] & IC_FILE_COMMIT)) {
		copy_drop(c);
		agent_reply(&m->h, 0, NULL);
		return;
	}
	if (fstat(c->fd, &st) < 0 || (uint64_t)st.st_size != c->size) {
		copy_drop(c);
		agent_reply(&m->h, EIO, "fewer bytes came than the copy said");
		return;
	}
	if (fchmod(c->fd, c->mode) < 0 || fsync(c->fd) < 0 || rename(c->tmp, c->dest) < 0) {
		int err = errno;

		copy_drop(c);
		agent_reply(&m->h, (uint32_t)err, strerror(err));
		return;
	}
	close(c->fd);
	c->used = false;
	snprintf(dir, sizeof(dir), "%s", c->dest);
	dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	agent_log("copied %llu bytes from the host to %s", (unsigned long long)c->size, c->dest);
	agent_reply(&m->h, 0, NULL);
}

void copy_request(const struct ic_msg *m)
{
	if (m->h.type == IC_FILE_OPEN)
		open_file(m);
	else if (m->h.type == IC_FILE_DATA)
		write_block(m);
	else
		close_file(m);
}
