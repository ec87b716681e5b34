// SPDX-License-Identifier: MIT
/*
 * Data exchange (KVP) in the guest: a directory per pool under the state
 * directory, a file per item, its contents the value.
 *
 *   kvp/host/KEY    the host's items, written by the agent (read them)
 *   kvp/guest/KEY   the guest's items: write a file (or `fsvisor-agent
 *                   kvp set KEY VALUE`), the agent tells the host
 *
 * The guest directory is watched with inotify and compared with what the
 * host was last told, so any way of writing a file works and an event
 * lost to an overflow costs nothing.  Host items are written to a
 * temporary file and renamed, so readers see a whole value.  While the
 * file systems are frozen, host items wait in memory for the thaw.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define POOL_MAX	1024
#define NAME_MAX_KEY	255

struct item {
	char *key;
	char *value;
};

struct pool {
	struct item items[POOL_MAX];
	size_t n;
};

/* What the host was told of the guest's items, and of the intrinsic ones. */
static struct pool told, intrinsic_told;
/* Host changes that came while frozen: set (value), delete (NULL), or a clear first. */
static struct pool deferred;
static bool deferred_clear;
static int ino_fd = -1;
static char host_dir[4096], guest_dir[4096];

static bool key_ok(const char *key, size_t len)
{
	if (!len || len > NAME_MAX_KEY || (len == 1 && key[0] == '.') ||
	    (len == 2 && key[0] == '.' && key[1] == '.'))
		return false;
	for (size_t i = 0; i < len; i++)
		if (key[i] == '/' || (unsigned char)key[i] < 0x20)
			return false;
	return ic_utf8_valid((const uint8_t *)key, len);
}

static int mkdir_p(const char *path)
{
	char buf[4096];

	snprintf(buf, sizeof(buf), "%s", path);
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

static void dirs(void)
{
	snprintf(host_dir, sizeof(host_dir), "%s/kvp/host", opts.state_dir);
	snprintf(guest_dir, sizeof(guest_dir), "%s/kvp/guest", opts.state_dir);
}

int kvp_init(void)
{
	int ret;

	dirs();
	ret = mkdir_p(host_dir);
	if (!ret)
		ret = mkdir_p(guest_dir);
	if (ret) {
		agent_log("%s: %s", opts.state_dir, strerror(-ret));
		return ret;
	}
	ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (ino_fd < 0 || inotify_add_watch(ino_fd, guest_dir, IN_CLOSE_WRITE | IN_MOVED_TO |
					    IN_MOVED_FROM | IN_DELETE | IN_CREATE) < 0) {
		agent_log("cannot watch %s: %s", guest_dir, strerror(errno));
		return -errno;
	}
	return 0;
}

int kvp_guest_fd(void)
{
	return ino_fd;
}

/* ---- pools in memory ------------------------------------------------------------- */

static struct item *pool_find(struct pool *p, const char *key)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->items[i].key, key) == 0)
			return &p->items[i];
	return NULL;
}

static void pool_del(struct pool *p, struct item *it)
{
	free(it->key);
	free(it->value);
	*it = p->items[--p->n];
}

/* Set @key to @value (NULL: a deletion, kept as such in @p). */
static bool pool_set(struct pool *p, const char *key, const char *value)
{
	struct item *it = pool_find(p, key);

	if (!it) {
		if (p->n == POOL_MAX)
			return false;
		it = &p->items[p->n++];
		it->key = strdup(key);
		it->value = NULL;
	}
	free(it->value);
	it->value = value ? strdup(value) : NULL;
	return true;
}

static void pool_clear(struct pool *p)
{
	while (p->n)
		pool_del(p, &p->items[p->n - 1]);
}

/* ---- telling the host ------------------------------------------------------------ */

static void send_item(uint16_t type, uint32_t pool, const char *key, const char *value)
{
	uint8_t frame[IC_HDR_LEN + 32 + IC_KEY_MAX + IC_VALUE_MAX];
	struct ic_writer w;

	ic_begin(&w, frame, sizeof(frame), type, 0, 0, 0);
	ic_put_u32(&w, IC_T_POOL, pool);
	if (key)
		ic_put_str(&w, IC_T_KEY, key);
	if (value)
		ic_put_str(&w, IC_T_VALUE, value);
	agent_send(&w);
}

/* A guest item's file: its value (one final newline dropped), or NULL. */
static char *read_value(const char *dir, const char *name)
{
	char path[8192], *buf = malloc(IC_VALUE_MAX + 2);
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (!buf || fd < 0) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	n = read(fd, buf, IC_VALUE_MAX + 2);
	close(fd);
	if (n < 0)
		n = 0;
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n > IC_VALUE_MAX || !ic_utf8_valid((const uint8_t *)buf, (size_t)n)) {
		agent_log("guest item %s: not UTF-8 text of at most %d bytes: not sent", name,
			  IC_VALUE_MAX);
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

/* What the guest directory holds now, against what the host was told. */
static void guest_scan(bool all)
{
	static struct pool now;
	DIR *d = opendir(guest_dir);
	struct dirent *e;

	pool_clear(&now);
	while (d && (e = readdir(d))) {
		char *v;

		if (e->d_name[0] == '.' || !key_ok(e->d_name, strlen(e->d_name)) ||
		    (e->d_type != DT_REG && e->d_type != DT_UNKNOWN))
			continue;
		v = read_value(guest_dir, e->d_name);
		if (v && !pool_set(&now, e->d_name, v))
			agent_log("more than %d guest items: %s not sent", POOL_MAX, e->d_name);
		free(v);
	}
	if (d)
		closedir(d);
	if (!agent_connected())
		return;
	for (size_t i = 0; i < now.n; i++) {
		struct item *t = pool_find(&told, now.items[i].key);

		if (all || !t || strcmp(t->value, now.items[i].value)) {
			send_item(IC_KVP_SET, IC_POOL_GUEST, now.items[i].key, now.items[i].value);
			pool_set(&told, now.items[i].key, now.items[i].value);
		}
	}
	for (size_t i = 0; i < told.n; i++) {
		if (!pool_find(&now, told.items[i].key)) {
			send_item(IC_KVP_DELETE, IC_POOL_GUEST, told.items[i].key, NULL);
			pool_del(&told, &told.items[i--]);
		}
	}
}

void kvp_guest_changed(void)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	while (read(ino_fd, buf, sizeof(buf)) > 0)
		;
	guest_scan(false);
}

static void intrinsic_send(bool all)
{
	char value[IC_VALUE_MAX + 1];

	for (unsigned int i = 0; i < INTRINSIC_ITEMS; i++) {
		struct item *t = pool_find(&intrinsic_told, intrinsic_keys[i]);

		intrinsic_value(i, value, sizeof(value));
		if (!all && t && strcmp(t->value, value) == 0)
			continue;
		send_item(IC_KVP_SET, IC_POOL_INTRINSIC, intrinsic_keys[i], value);
		pool_set(&intrinsic_told, intrinsic_keys[i], value);
	}
}

void kvp_resync(void)
{
	pool_clear(&told);
	send_item(IC_KVP_CLEAR, IC_POOL_GUEST, NULL, NULL);
	guest_scan(true);
	pool_clear(&intrinsic_told);
	send_item(IC_KVP_CLEAR, IC_POOL_INTRINSIC, NULL, NULL);
	intrinsic_send(true);
}

void kvp_intrinsic_refresh(void)
{
	if (agent_connected())
		intrinsic_send(false);
}

/* ---- the host's items ------------------------------------------------------------ */

static int write_file(const char *dir, const char *key, const char *value, size_t len)
{
	char tmp[8192], path[8192];
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, key);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, key);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -errno;
	if (write(fd, value, len) != (ssize_t)len)
		ret = errno ? -errno : -EIO;
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path) < 0)
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

static void host_clear(void)
{
	DIR *d = opendir(host_dir);
	struct dirent *e;

	while (d && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dirfd(d), e->d_name, 0);
	if (d)
		closedir(d);
}

static int host_apply(const char *key, const char *value)
{
	char path[8192];

	if (value)
		return write_file(host_dir, key, value, strlen(value));
	snprintf(path, sizeof(path), "%s/%s", host_dir, key);
	return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

void kvp_apply_deferred(void)
{
	if (deferred_clear)
		host_clear();
	deferred_clear = false;
	for (size_t i = 0; i < deferred.n; i++)
		host_apply(deferred.items[i].key, deferred.items[i].value);
	pool_clear(&deferred);
}

void kvp_host_request(const struct ic_msg *m)
{
	char key[IC_KEY_MAX + 1], *value = NULL;
	int ret = 0;

	if (m->num[IC_T_POOL] != IC_POOL_HOST) {
		agent_reply(&m->h, EINVAL, "the host sets the host pool only");
		return;
	}
	if (m->h.type == IC_KVP_CLEAR) {
		if (freeze_active()) {
			pool_clear(&deferred);
			deferred_clear = true;
		} else {
			host_clear();
		}
		agent_reply(&m->h, 0, NULL);
		return;
	}
	if (!key_ok((const char *)m->str[IC_T_KEY].p, m->str[IC_T_KEY].len)) {
		agent_reply(&m->h, EINVAL, "a key here is a file name");
		return;
	}
	ic_str_copy(m, IC_T_KEY, key, sizeof(key));
	if (m->h.type == IC_KVP_SET) {
		value = malloc((size_t)m->str[IC_T_VALUE].len + 1);
		if (!value) {
			agent_reply(&m->h, ENOMEM, NULL);
			return;
		}
		ic_str_copy(m, IC_T_VALUE, value, (size_t)m->str[IC_T_VALUE].len + 1);
	}
	if (freeze_active()) {
		if (!pool_set(&deferred, key, value))
			ret = -ENOSPC;
	} else {
		ret = host_apply(key, value);
	}
	if (ret)
		agent_log("host item %s: %s", key, strerror(-ret));
	if (opts.verbose)
		agent_log("host item %s %s", key, value ? "set" : "deleted");
	agent_reply(&m->h, ret ? (uint32_t)-ret : 0, NULL);
	free(value);
}

int kvp_guest_store(const char *key, const char *value)
{
	char path[8192];

	dirs();
	if (!key_ok(key, strlen(key)))
		return -EINVAL;
	if (value && strlen(value) > IC_VALUE_MAX)
		return -E2BIG;
	if (mkdir_p(guest_dir))
		return -errno;
	if (value)
		return write_file(guest_dir, key, value, strlen(value));
	snprintf(path, sizeof(path), "%s/%s", guest_dir, key);
	return unlink(path) < 0 ? -errno : 0;
}
