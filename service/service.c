// SPDX-License-Identifier: MIT
/*
 * The service: opening the state directory, loading the objects, and
 * the helpers the objects' files share.  The tree of paths is tree.c
 * (walking the kinds each object declares), open files are file.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "service/integration.h"
#include "service/internal.h"

/* ---- helpers shared by the service's files ------------------------------ */

void svc_lock(struct service *s)
{
	pthread_mutex_lock(&s->lock);
}

void svc_unlock(struct service *s)
{
	pthread_mutex_unlock(&s->lock);
}

void svc_notify(struct service *s, enum svc_change what, const char *fmt, ...)
{
	char path[512];
	va_list ap;

	if (!s->notify)
		return;
	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	s->notify(s->notify_ctx, what, path);
}

int svc_fail(struct service *s, const char *kind, const char *name,
	     char *error, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(error, ERROR_MAX, fmt, ap);
	va_end(ap);
	log_warn("%s %s: %s", kind, name, error);
	/* The error is part of the object: it survives a restart too. */
	if (strcmp(kind, "vm") == 0 && vm_find(s, name))
		vm_save(s, vm_find(s, name));
	else if (strcmp(kind, "disk") == 0 && disk_find(s, name))
		disk_save(disk_find(s, name));
	else if (strcmp(kind, "switch") == 0 && switch_find(s, name))
		switch_save(switch_find(s, name));
	svc_notify(s, SVC_CHANGED, "%s/%s/error",
		   strcmp(kind, "switch") == 0 ? "switches" : strcmp(kind, "vm") == 0 ? "vms" : "disks",
		   name);
	return err;
}

const struct svc_caller *svc_caller_of(void *ctx)
{
	return ((struct svc_call *)ctx)->who;
}

bool svc_caller_is_owner(struct service *s, void *ctx)
{
	return ((struct svc_call *)ctx)->who->uid == s->uid;
}

void svc_touch(struct timespec *t)
{
	clock_gettime(CLOCK_REALTIME, t);
}

char *svc_strdup(const char *str)
{
	char *p = strdup(str ? str : "");

	if (!p)
		abort();	/* a few bytes: nothing sensible to do without them */
	return p;
}

char *svc_path(struct service *s, const char *sub, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s/%s", s->state_dir, sub, name) < 0)
		abort();
	return p;
}

void svc_tail_text(int dirfd, const char *file, char *buf, size_t len)
{
	char text[4096];
	ssize_t n;
	int fd = openat(dirfd, file, O_RDONLY | O_CLOEXEC);
	off_t size;
	char *start, *end;

	buf[0] = '\0';
	if (fd < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	n = pread(fd, text, sizeof(text) - 1,
		  size > (off_t)sizeof(text) - 1 ? size - (off_t)sizeof(text) + 1 : 0);
	close(fd);
	if (n <= 0)
		return;
	text[n] = '\0';
	/* The last non-empty line, which is where the worker says why. */
	end = text + n;
	while (end > text && (end[-1] == '\n' || end[-1] == ' '))
		*--end = '\0';
	start = strrchr(text, '\n');
	start = start ? start + 1 : text;
	/* The worker prefixes its messages: keep the reason only. */
	if (strncmp(start, "fsvisor vm: ", 12) == 0)
		start += 12;
	snprintf(buf, len, "%s", start);
}

ssize_t svc_read_text(int dirfd, const char *path, char *buf, size_t len)
{
	int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return n;
}

const char *svc_proc_stat(pid_t pid, char *buf, size_t len)
{
	char path[64], *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (svc_read_text(AT_FDCWD, path, buf, len) < 0)
		return NULL;
	/* The command name is in parentheses and may hold anything. */
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p + 2 : NULL;
}

/* Everything in directory @fd (taken), subdirectories too; links are not followed. */
static void remove_contents(int fd, int depth)
{
	DIR *d = fdopendir(fd);
	struct dirent *e;

	if (!d) {
		close(fd);
		return;
	}
	while ((e = readdir(d))) {
		int sub;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(d), e->d_name, 0) == 0 || errno != EISDIR || depth > 8)
			continue;
		sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0)
			remove_contents(sub, depth + 1);
		unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
	}
	closedir(d);
}

void svc_remove_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd >= 0)
		remove_contents(fd, 0);
	if (rmdir(path) < 0 && errno != ENOENT)
		log_warn("cannot remove %s: %s", path, strerror(errno));
}

int svc_load_dir(struct service *s, const char *sub,
		 int (*load)(struct service *s, const char *name))
{
	char *dir = svc_path(s, sub, "");
	DIR *d = opendir(dir);
	struct dirent *e;
	int ret = 0;

	free(dir);
	if (!d)
		return -errno;
	while (!ret && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (!name_valid(e->d_name)) {
			log_warn("%s/%s: not a valid name; ignored", sub, e->d_name);
			continue;
		}
		ret = load(s, e->d_name);
	}
	closedir(d);
	return ret;
}

/* Binary search in a sorted array of objects (both start with the name). */
static size_t find_index(void **arr, size_t n, const char *name, bool *found)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		/* Every object starts with its name. */
		int c = strcmp((const char *)arr[mid], name);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

struct vm_obj *vm_find(struct service *s, const char *name)
{
	bool found;
	size_t i = find_index((void **)s->vms, s->nvms, name, &found);

	return found ? s->vms[i] : NULL;
}

struct disk_obj *disk_find(struct service *s, const char *name)
{
	bool found;
	size_t i = find_index((void **)s->disks, s->ndisks, name, &found);

	return found ? s->disks[i] : NULL;
}

struct switch_obj *switch_find(struct service *s, const char *name)
{
	bool found;
	size_t i = find_index((void **)s->switches, s->nswitches, name, &found);

	return found ? s->switches[i] : NULL;
}

int svc_list_insert(void ***arr, size_t *n, size_t *cap, void *obj)
{
	bool found;
	size_t i = find_index(*arr, *n, (const char *)obj, &found);

	if (found)
		return -EEXIST;
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		void **p = realloc(*arr, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		*arr = p;
		*cap = ncap;
	}
	memmove(*arr + i + 1, *arr + i, (*n - i) * sizeof(**arr));
	(*arr)[i] = obj;
	(*n)++;
	return 0;
}

void svc_list_remove(void **arr, size_t *n, const char *name)
{
	bool found;
	size_t i = find_index(arr, *n, name, &found);

	if (!found)
		return;
	memmove(arr + i, arr + i + 1, (*n - i - 1) * sizeof(*arr));
	(*n)--;
}

struct vm_obj *disk_user(struct service *s, const char *name, int *slot)
{
	for (size_t i = 0; i < s->nvms; i++) {
		for (int k = 0; k < SLOTS; k++) {
			if (s->vms[i]->slot[k] && strcmp(s->vms[i]->slot[k], name) == 0) {
				if (slot)
					*slot = k;
				return s->vms[i];
			}
		}
	}
	return NULL;
}

void vm_put(struct vm_obj *vm)
{
	if (--vm->refs == 0)
		vm_free(vm);
}

void disk_put(struct disk_obj *d)
{
	if (--d->refs == 0)
		disk_free(d);
}

int service_statfs(struct service *s, uint64_t *blocks, uint64_t *bfree,
		   uint64_t *bavail, uint32_t *bsize, uint64_t *files)
{
	struct statvfs v;

	if (statvfs(s->state_dir, &v) < 0)
		return -errno;
	*blocks = v.f_blocks;
	*bfree = v.f_bfree;
	*bavail = v.f_bavail;
	*bsize = (uint32_t)v.f_frsize;
	svc_lock(s);
	*files = s->nvms + s->ndisks + s->nswitches;
	svc_unlock(s);
	return 0;
}

/* ---- opening and closing ---------------------------------------------- */

void service_set_notify(struct service *s, svc_notify_fn fn, void *ctx)
{
	svc_lock(s);
	s->notify = fn;
	s->notify_ctx = ctx;
	svc_unlock(s);
}

static int mkdir_p(const char *path, mode_t mode)
{
	char *copy = svc_strdup(path);
	int ret = 0;

	for (char *p = copy + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;

			*p = '\0';
			if (mkdir(copy, mode) < 0 && errno != EEXIST) {
				ret = -errno;
				break;
			}
			*p = c;
			if (!c)
				break;
		}
	}
	free(copy);
	return ret;
}

static int take_lock(struct service *s, char *err, size_t errlen)
{
	char path[4096], pid[32];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/lock", s->state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	/*
	 * A service that was just unmounted may still be on its way out:
	 * give it a few seconds before calling the directory taken.
	 */
	for (int i = 0; i < 50 && flock(fd, LOCK_EX | LOCK_NB) < 0; i++)
		usleep(100000);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		snprintf(err, errlen, "another fsvisor service (pid %s) uses %s",
			 pid[0] ? pid : "?", s->state_dir);
		close(fd);
		return -EBUSY;
	}
	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, strlen(pid), 0) < 0)
		log_warn("%s: cannot record the pid", path);
	s->lock_fd = fd;
	return 0;
}

int service_open(const struct service_opts *opts, struct service **out,
		 char *err, size_t errlen)
{
	struct service *s = calloc(1, sizeof(*s));
	char *sub;
	int ret;

	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	s->lock_fd = -1;
	s->epfd = -1;
	s->wake_fd = -1;
	s->state_dir = svc_strdup(opts->state_dir);
	s->mount_point = svc_strdup(opts->mount_point);
	s->worker_exe = svc_strdup(opts->worker_exe);
	s->uid = opts->uid;
	s->gid = opts->gid;
	s->group_access = opts->group_access;
	svc_touch(&s->started);

	ret = mkdir_p(s->state_dir, 0700);
	if (ret) {
		snprintf(err, errlen, "state directory %s: %s", s->state_dir, strerror(-ret));
		goto fail;
	}
	ret = take_lock(s, err, errlen);
	if (ret)
		goto fail;
	for (int i = 0; i < 3; i++) {
		sub = svc_path(s, i == 2 ? "switches" : i ? "disks" : "vms", "");
		ret = mkdir_p(sub, 0700);
		free(sub);
		if (ret) {
			snprintf(err, errlen, "state directory %s: %s", s->state_dir,
				 strerror(-ret));
			goto fail;
		}
	}
	ret = disk_load_all(s);
	if (!ret)
		ret = switch_load_all(s);
	if (!ret)
		ret = vm_load_all(s);
	if (ret) {
		snprintf(err, errlen, "loading the objects in %s: %s", s->state_dir,
			 strerror(-ret));
		goto fail;
	}
	ret = supervisor_start(s);
	if (ret) {
		snprintf(err, errlen, "cannot start the supervisor: %s", strerror(-ret));
		goto fail;
	}
	ret = agent_hub_start(s);
	if (ret) {
		snprintf(err, errlen, "cannot start the integration services' thread: %s",
			 strerror(-ret));
		goto fail;
	}
	svc_lock(s);
	switches_start(s);
	for (size_t i = 0; i < s->nvms; i++)
		vm_adopt(s, s->vms[i]);
	svc_unlock(s);
	log_info("%zu VMs, %zu disks, %zu switches in %s", s->nvms, s->ndisks, s->nswitches,
		 s->state_dir);
	*out = s;
	return 0;
fail:
	service_close(s);
	return ret;
}

void service_close(struct service *s)
{
	if (!s)
		return;
	supervisor_stop(s);
	agent_hub_stop(s);
	svc_lock(s);
	s->notify = NULL;
	for (size_t i = 0; i < s->nvms; i++) {
		struct vm_obj *vm = s->vms[i];

		/* The worker runs on; the next service adopts it. */
		if (vm->watch_fd >= 0) {
			close(vm->watch_fd);
			vm->watch_fd = -1;
			vm->refs--;	/* the supervisor's; the list's is dropped below */
		}
		vm_put(vm);
	}
	for (size_t i = 0; i < s->ndisks; i++)
		disk_put(s->disks[i]);
	for (size_t i = 0; i < s->nswitches; i++) {
		struct switch_obj *sw = s->switches[i];

		/* The worker runs on, too. */
		if (sw->pidfd >= 0) {
			close(sw->pidfd);
			sw->pidfd = -1;
			sw->refs--;
		}
		switch_put(sw);
	}
	svc_events_free(s);
	svc_unlock(s);
	free(s->vms);
	free(s->disks);
	free(s->switches);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s->state_dir);
	free(s->mount_point);
	free(s->worker_exe);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
