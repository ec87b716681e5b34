// SPDX-License-Identifier: MIT
/*
 * The service's object tree: opening the state directory, resolving
 * paths to objects and their files, and the operations fsapi maps file
 * system requests to.  What a file means is in its object's attribute
 * table (vm.c, disk.c, host.c); this file only routes.
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
	svc_notify(s, SVC_CHANGED, "%ss/%s/error", kind, name);
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

void svc_remove_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;

	if (d) {
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlinkat(dirfd(d), e->d_name, 0);
		closedir(d);
	}
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

/* ---- resolving paths ------------------------------------------------ */

enum node_type {
	N_ROOT,
	N_ROOTFILE,
	N_HOST,
	N_HOSTFILE,
	N_VMS,
	N_VM,
	N_VMDIR,		/* memory/, boot/ */
	N_VMFILE,
	N_SLOTS,		/* vms/NAME/disks/ */
	N_SLOT,
	N_DISKS,
	N_DISK,
	N_DISKFILE,
	N_NICS,			/* vms/NAME/nics/ */
	N_NIC,
	N_NICFILE,
	N_SWITCHES,
	N_SWITCH,
	N_SWITCHFILE,
	N_PORTS,		/* switches/NAME/ports/ */
	N_PORT,
	N_PORTFILE,
};

struct node {
	enum node_type type;
	const struct attr *attr;
	struct vm_obj *vm;
	struct disk_obj *disk;
	struct nic_obj *nic;
	struct switch_obj *sw;
	struct port_view port;	/* N_PORT, N_PORTFILE */
	int slot;
	const char *sub;	/* N_VMDIR: the directory's name in @rest */
	size_t sublen;
};

#define MAX_DEPTH 5

static int split(const char *path, char comp[MAX_DEPTH][NAME_MAX_LEN * 2 + 2],
		 int *n)
{
	*n = 0;
	while (*path) {
		const char *end = strchr(path, '/');
		size_t len = end ? (size_t)(end - path) : strlen(path);

		if (*n == MAX_DEPTH || len == 0 || len >= NAME_MAX_LEN * 2 + 2)
			return -ENOENT;
		memcpy(comp[*n], path, len);
		comp[*n][len] = '\0';
		(*n)++;
		path += len;
		if (*path == '/')
			path++;
	}
	return 0;
}

static const struct attr *attr_find(const struct attr *tab, size_t n,
				    const char *path)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(tab[i].path, path) == 0)
			return &tab[i];
	return NULL;
}

/* Is @dir ("memory") a directory of the table's files ("memory/startup")? */
static bool attr_dir(const struct attr *tab, size_t n, const char *dir)
{
	size_t len = strlen(dir);

	for (size_t i = 0; i < n; i++)
		if (strncmp(tab[i].path, dir, len) == 0 && tab[i].path[len] == '/')
			return true;
	return false;
}

static int parse_slot(const char *str)
{
	char *end;
	long v;

	if (!str[0] || (str[0] == '0' && str[1]) || str[0] < '0' || str[0] > '9')
		return -1;
	v = strtol(str, &end, 10);
	return *end || v < 0 || v >= SLOTS ? -1 : (int)v;
}

static int resolve_switch(struct service *s, char c[MAX_DEPTH][NAME_MAX_LEN * 2 + 2],
			  int depth, struct node *n)
{
	if (depth == 1) {
		n->type = N_SWITCHES;
		return 0;
	}
	n->sw = switch_find(s, c[1]);
	if (!n->sw)
		return -ENOENT;
	if (depth == 2) {
		n->type = N_SWITCH;
		return 0;
	}
	if (strcmp(c[2], "ports") != 0) {
		n->attr = depth == 3 ? attr_find(switch_attrs, n_switch_attrs, c[2]) : NULL;
		n->type = N_SWITCHFILE;
		return n->attr ? 0 : -ENOENT;
	}
	if (depth == 3) {
		n->type = N_PORTS;
		return 0;
	}
	if (switch_port_find(s, n->sw, c[3], &n->port))
		return -ENOENT;
	if (depth == 4) {
		n->type = N_PORT;
		return 0;
	}
	n->attr = attr_find(port_attrs, n_port_attrs, c[4]);
	n->type = N_PORTFILE;
	return n->attr ? 0 : -ENOENT;
}

static int resolve(struct service *s, const char *path, struct node *n)
{
	char c[MAX_DEPTH][NAME_MAX_LEN * 2 + 2];
	char rest[NAME_MAX_LEN * 8];
	int depth;

	memset(n, 0, sizeof(*n));
	if (split(path, c, &depth))
		return -ENOENT;
	if (depth == 0) {
		n->type = N_ROOT;
		return 0;
	}
	if (strcmp(c[0], "host") == 0) {
		if (depth == 1) {
			n->type = N_HOST;
			return 0;
		}
		n->attr = depth == 2 ? attr_find(host_attrs, n_host_attrs, c[1]) : NULL;
		n->type = N_HOSTFILE;
		return n->attr ? 0 : -ENOENT;
	}
	if (strcmp(c[0], "vms") == 0) {
		if (depth == 1) {
			n->type = N_VMS;
			return 0;
		}
		n->vm = vm_find(s, c[1]);
		if (!n->vm)
			return -ENOENT;
		if (depth == 2) {
			n->type = N_VM;
			return 0;
		}
		if (strcmp(c[2], "nics") == 0) {
			if (depth == 3) {
				n->type = N_NICS;
				return 0;
			}
			n->nic = nic_find(n->vm, c[3]);
			if (!n->nic)
				return -ENOENT;
			if (depth == 4) {
				n->type = N_NIC;
				return 0;
			}
			n->attr = attr_find(nic_attrs, n_nic_attrs, c[4]);
			n->type = N_NICFILE;
			return n->attr ? 0 : -ENOENT;
		}
		if (strcmp(c[2], "disks") == 0) {
			if (depth == 3) {
				n->type = N_SLOTS;
				return 0;
			}
			n->slot = parse_slot(c[3]);
			if (depth > 4 || n->slot < 0 || !n->vm->slot[n->slot])
				return -ENOENT;
			n->type = N_SLOT;
			return 0;
		}
		if (depth == 3 && attr_dir(vm_attrs, n_vm_attrs, c[2])) {
			n->type = N_VMDIR;
			n->sub = path + strlen("vms/") + strlen(c[1]) + 1;
			return 0;
		}
		if (depth > 4)
			return -ENOENT;
		snprintf(rest, sizeof(rest), "%s%s%s", c[2], depth == 4 ? "/" : "",
			 depth == 4 ? c[3] : "");
		n->attr = attr_find(vm_attrs, n_vm_attrs, rest);
		n->type = N_VMFILE;
		return n->attr ? 0 : -ENOENT;
	}
	if (strcmp(c[0], "disks") == 0) {
		if (depth == 1) {
			n->type = N_DISKS;
			return 0;
		}
		n->disk = disk_find(s, c[1]);
		if (!n->disk)
			return -ENOENT;
		if (depth == 2) {
			n->type = N_DISK;
			return 0;
		}
		n->attr = depth == 3 ? attr_find(disk_attrs, n_disk_attrs, c[2]) : NULL;
		n->type = N_DISKFILE;
		return n->attr ? 0 : -ENOENT;
	}
	if (strcmp(c[0], "switches") == 0)
		return resolve_switch(s, c, depth, n);
	if (depth == 1) {
		n->attr = attr_find(root_attrs, n_root_attrs, c[0]);
		n->type = N_ROOTFILE;
		return n->attr ? 0 : -ENOENT;
	}
	return -ENOENT;
}

/*
 * Keep the node's object while the lock may be dropped (a file's show or
 * store may wait for a worker, and the object be deleted meanwhile).
 */
static void node_hold(struct node *n)
{
	if (n->vm)
		n->vm->refs++;
	if (n->disk)
		n->disk->refs++;
	if (n->sw)
		n->sw->refs++;
	/* A NIC in use is not removed (rmdir is EBUSY); it lives as long as its VM. */
	if (n->nic && (n->type == N_NICFILE || n->type == N_NIC))
		n->nic->users++;
	if (n->port.nic) {
		n->port.vm->refs++;
		n->port.nic->users++;
	}
}

static void node_release(struct node *n)
{
	if (n->nic && (n->type == N_NICFILE || n->type == N_NIC))
		n->nic->users--;
	if (n->port.nic) {
		n->port.nic->users--;
		vm_put(n->port.vm);
	}
	if (n->vm)
		vm_put(n->vm);
	if (n->disk)
		disk_put(n->disk);
	if (n->sw)
		switch_put(n->sw);
}

static void *node_object(struct node *n)
{
	if (n->type == N_PORT || n->type == N_PORTFILE)
		return &n->port;
	if (n->nic)
		return n->nic;
	if (n->vm)
		return n->vm;
	if (n->disk)
		return n->disk;
	if (n->sw)
		return n->sw;
	return NULL;
}

/* ---- attributes of tree nodes -------------------------------------------- */

static mode_t file_mode(const struct service *s, unsigned int flags)
{
	mode_t m = 0;

	if (flags & A_READ)
		m |= 0400;
	if (flags & A_WRITE)
		m |= 0200;
	return s->group_access ? m | (m >> 3) : m;
}

static mode_t dir_mode(const struct service *s)
{
	return s->group_access ? 0770 : 0700;
}

/* The value of a file as text (a new buffer); under the lock. */
static int attr_value(struct service *s, const struct attr *a, void *obj,
		      char **text, size_t *len)
{
	FILE *f;
	int ret;

	*text = NULL;
	*len = 0;
	f = open_memstream(text, len);
	if (!f)
		return -ENOMEM;
	ret = a->show ? a->show(s, obj, f) : 0;
	if (fclose(f) && !ret)
		ret = -ENOMEM;
	if (ret) {
		free(*text);
		*text = NULL;
		*len = 0;
	}
	return ret;
}

/* The console's size (bytes ever printed) and when it was last written. */
static uint64_t console_size(struct vm_obj *vm, struct timespec *mtime)
{
	uint64_t head = 0, oldest;
	struct stat st;
	char *path;

	if (asprintf(&path, "%s/console", vm->dir) < 0)
		return 0;
	if (ringfile_extent(path, &head, &oldest))
		head = 0;
	if (stat(path, &st) == 0)
		*mtime = st.st_mtim;
	free(path);
	return head;
}

static void node_stat(struct service *s, struct node *n, struct svc_stat *st)
{
	void *obj = node_object(n);

	memset(st, 0, sizeof(*st));
	st->uid = s->uid;
	st->gid = s->gid;
	st->mtime = s->started;
	if (n->vm)
		st->mtime = n->vm->mtime;
	else if (n->disk)
		st->mtime = n->disk->mtime;
	else if (n->sw)
		st->mtime = n->sw->mtime;

	switch (n->type) {
	case N_ROOT:
		st->kind = SVC_DIR;
		st->nlink = 6;
		break;
	case N_SWITCHES:
		st->kind = SVC_DIR;
		st->nlink = 2 + (unsigned int)s->nswitches;
		break;
	case N_NICS:
		st->kind = SVC_DIR;
		st->nlink = 2 + (unsigned int)n->vm->nnics;
		break;
	case N_SWITCH:
		st->kind = SVC_DIR;
		st->nlink = 3;		/* ports/ */
		break;
	case N_PORTS:
	case N_PORT:
	case N_NIC:
		st->kind = SVC_DIR;
		st->nlink = 2;
		break;
	case N_VMS:
	case N_DISKS:
		st->kind = SVC_DIR;
		st->nlink = 2 + (unsigned int)(n->type == N_VMS ? s->nvms : s->ndisks);
		break;
	case N_HOST:
	case N_DISK:
	case N_VMDIR:
	case N_SLOTS:
		st->kind = SVC_DIR;
		st->nlink = 2;
		break;
	case N_VM:
		st->kind = SVC_DIR;
		st->nlink = 6;		/* memory/, boot/, disks/, nics/ */
		break;
	case N_SLOT:
		st->kind = SVC_LINK;
		st->nlink = 1;
		st->mode = 0777;
		st->size = strlen("../../../disks/") + strlen(n->vm->slot[n->slot]);
		return;
	case N_ROOTFILE:
	case N_HOSTFILE:
	case N_VMFILE:
	case N_NICFILE:
	case N_SWITCHFILE:
	case N_PORTFILE:
	case N_DISKFILE: {
		const struct attr *a = n->attr;

		st->kind = SVC_FILE;
		st->nlink = 1;
		st->mode = file_mode(s, a->flags);
		st->volatile_attrs = (a->flags & (A_VOLATILE | A_CONSOLE | A_EVENTS)) != 0;
		/*
		 * Volatile values change without a notification, but their times
		 * are kept steady (the object's, or when a log last grew), so
		 * that tar, rsync and make see a file change only when it did.
		 */
		if (a->flags & A_CONSOLE) {
			st->size = console_size(n->vm, &st->mtime);
		} else if (a->flags & A_EVENTS) {
			st->size = svc_events_size(s, n->vm ? n->vm->name : NULL);
			if (st->size)
				st->mtime = n->vm ? n->vm->events_time : s->events_time;
		} else if (a->flags & A_DATA) {
			st->size = n->disk->file ? n->disk->size : 0;
		} else if ((a->flags & A_READ) && !(a->flags & (A_EVENTS | A_CTL))) {
			char *text;
			size_t len;

			if (attr_value(s, a, obj, &text, &len) == 0) {
				st->size = len;
				free(text);
			}
		}
		return;
	}
	}
	st->mode = dir_mode(s);
}

int service_stat(struct service *s, const char *path, struct svc_stat *st)
{
	struct node n;
	int ret;

	svc_lock(s);
	ret = resolve(s, path, &n);
	if (!ret) {
		node_hold(&n);
		node_stat(s, &n, st);
		node_release(&n);
	}
	svc_unlock(s);
	return ret;
}

/* ---- directories ------------------------------------------------------- */

static int list_attrs(struct service *s, const struct attr *tab, size_t count,
		      void *obj, const char *prefix, struct node *base,
		      svc_dirent_fn fn, void *ctx)
{
	size_t plen = strlen(prefix);
	char seen[8][16];
	int nseen = 0;

	for (size_t i = 0; i < count; i++) {
		const char *p = tab[i].path, *slash;
		struct node n = *base;
		struct svc_stat st;
		char dir[16];

		if (strncmp(p, prefix, plen) != 0)
			continue;
		p += plen;
		slash = strchr(p, '/');
		if (!slash) {
			n.attr = &tab[i];
			n.type = base->type == N_ROOT ? N_ROOTFILE :
				 base->type == N_HOST ? N_HOSTFILE :
				 base->type == N_DISK ? N_DISKFILE :
				 base->type == N_NIC ? N_NICFILE :
				 base->type == N_SWITCH ? N_SWITCHFILE :
				 base->type == N_PORT ? N_PORTFILE : N_VMFILE;
			node_stat(s, &n, &st);
			if (fn(ctx, p, &st))
				return 1;
			continue;
		}
		/* A subdirectory: list it once. */
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - p), p);
		bool dup = false;

		for (int k = 0; k < nseen; k++)
			dup |= strcmp(seen[k], dir) == 0;
		if (dup || nseen == 8)
			continue;
		strcpy(seen[nseen++], dir);
		n.type = N_VMDIR;
		node_stat(s, &n, &st);
		(void)obj;
		if (fn(ctx, dir, &st))
			return 1;
	}
	return 0;
}

struct port_list {
	struct service *s;
	svc_dirent_fn fn;
	void *ctx;
};

static int list_port(struct port_view *p, void *arg)
{
	struct port_list *pl = arg;
	struct node c = { .type = N_PORT, .sw = p->sw, .port = *p };
	struct svc_stat st;

	node_stat(pl->s, &c, &st);
	return pl->fn(pl->ctx, p->name, &st);
}

int service_readdir(struct service *s, const char *path, svc_dirent_fn fn,
		    void *ctx)
{
	struct svc_stat st;
	struct node n, c;
	int ret;

	svc_lock(s);
	ret = resolve(s, path, &n);
	if (ret)
		goto out;
	node_hold(&n);
	switch (n.type) {
	case N_ROOT:
		if (list_attrs(s, root_attrs, n_root_attrs, NULL, "", &n, fn, ctx))
			break;
		c = (struct node){ .type = N_HOST };
		node_stat(s, &c, &st);
		if (fn(ctx, "host", &st))
			break;
		c.type = N_VMS;
		node_stat(s, &c, &st);
		if (fn(ctx, "vms", &st))
			break;
		c.type = N_DISKS;
		node_stat(s, &c, &st);
		if (fn(ctx, "disks", &st))
			break;
		c.type = N_SWITCHES;
		node_stat(s, &c, &st);
		fn(ctx, "switches", &st);
		break;
	case N_SWITCHES:
		for (size_t i = 0; i < s->nswitches; i++) {
			c = (struct node){ .type = N_SWITCH, .sw = s->switches[i] };
			node_stat(s, &c, &st);
			if (fn(ctx, s->switches[i]->name, &st))
				break;
		}
		break;
	case N_SWITCH:
		if (list_attrs(s, switch_attrs, n_switch_attrs, n.sw, "", &n, fn, ctx))
			break;
		c = (struct node){ .type = N_PORTS, .sw = n.sw };
		node_stat(s, &c, &st);
		fn(ctx, "ports", &st);
		break;
	case N_PORTS: {
		struct port_list pl = { .s = s, .fn = fn, .ctx = ctx };

		switch_ports(s, n.sw, list_port, &pl);
		break;
	}
	case N_PORT:
		list_attrs(s, port_attrs, n_port_attrs, &n.port, "", &n, fn, ctx);
		break;
	case N_NICS:
		for (size_t i = 0; i < n.vm->nnics; i++) {
			c = (struct node){ .type = N_NIC, .vm = n.vm, .nic = n.vm->nics[i] };
			node_stat(s, &c, &st);
			if (fn(ctx, n.vm->nics[i]->name, &st))
				break;
		}
		break;
	case N_NIC:
		list_attrs(s, nic_attrs, n_nic_attrs, n.nic, "", &n, fn, ctx);
		break;
	case N_HOST:
		list_attrs(s, host_attrs, n_host_attrs, NULL, "", &n, fn, ctx);
		break;
	case N_VMS:
		for (size_t i = 0; i < s->nvms; i++) {
			c = (struct node){ .type = N_VM, .vm = s->vms[i] };
			node_stat(s, &c, &st);
			if (fn(ctx, s->vms[i]->name, &st))
				break;
		}
		break;
	case N_DISKS:
		for (size_t i = 0; i < s->ndisks; i++) {
			c = (struct node){ .type = N_DISK, .disk = s->disks[i] };
			node_stat(s, &c, &st);
			if (fn(ctx, s->disks[i]->name, &st))
				break;
		}
		break;
	case N_VM:
		if (list_attrs(s, vm_attrs, n_vm_attrs, n.vm, "", &n, fn, ctx))
			break;
		c = (struct node){ .type = N_SLOTS, .vm = n.vm };
		node_stat(s, &c, &st);
		if (fn(ctx, "disks", &st))
			break;
		c.type = N_NICS;
		node_stat(s, &c, &st);
		fn(ctx, "nics", &st);
		break;
	case N_VMDIR: {
		char prefix[32];

		snprintf(prefix, sizeof(prefix), "%s/", n.sub);
		list_attrs(s, vm_attrs, n_vm_attrs, n.vm, prefix, &n, fn, ctx);
		break;
	}
	case N_SLOTS:
		for (int k = 0; k < SLOTS; k++) {
			char name[4];

			if (!n.vm->slot[k])
				continue;
			c = (struct node){ .type = N_SLOT, .vm = n.vm, .slot = k };
			node_stat(s, &c, &st);
			snprintf(name, sizeof(name), "%d", k);
			if (fn(ctx, name, &st))
				break;
		}
		break;
	case N_DISK:
		list_attrs(s, disk_attrs, n_disk_attrs, n.disk, "", &n, fn, ctx);
		break;
	default:
		ret = -ENOTDIR;
		break;
	}
	node_release(&n);
out:
	svc_unlock(s);
	return ret;
}

int service_readlink(struct service *s, const char *path, char *buf, size_t len)
{
	struct node n;
	int ret;

	svc_lock(s);
	ret = resolve(s, path, &n);
	if (!ret && n.type != N_SLOT)
		ret = -EINVAL;
	if (!ret)
		snprintf(buf, len, "../../../disks/%s", n.vm->slot[n.slot]);
	svc_unlock(s);
	return ret;
}

/* The parent of @path and its last component. */
static int split_last(const char *path, char *parent, size_t plen,
		      const char **last)
{
	const char *slash = strrchr(path, '/');

	if (!slash) {
		*last = path;
		parent[0] = '\0';
		return 0;
	}
	if ((size_t)(slash - path) >= plen)
		return -ENAMETOOLONG;
	memcpy(parent, path, (size_t)(slash - path));
	parent[slash - path] = '\0';
	*last = slash + 1;
	return 0;
}

int service_mkdir(struct service *s, const char *path)
{
	char parent[256];
	const char *name;
	struct node n;
	int ret;

	if (split_last(path, parent, sizeof(parent), &name))
		return -ENAMETOOLONG;
	svc_lock(s);
	ret = resolve(s, parent, &n);
	if (ret)
		goto out;
	if (n.type != N_VMS && n.type != N_DISKS && n.type != N_SWITCHES && n.type != N_NICS) {
		ret = -EPERM;
		log_warn("mkdir %s: only vms/, disks/, switches/ and vms/NAME/nics/ take new directories",
			 path);
		goto out;
	}
	if (name_problem(name)) {
		log_warn("mkdir %s: %s", path, name_problem(name));
		ret = -EINVAL;
		goto out;
	}
	node_hold(&n);
	ret = n.type == N_VMS ? vm_define(s, name) :
	      n.type == N_DISKS ? disk_define(s, name) :
	      n.type == N_SWITCHES ? switch_define(s, name) : nic_define(s, n.vm, name);
	node_release(&n);
	if (!ret)
		svc_notify(s, SVC_ADDED, "%s", path);
out:
	svc_unlock(s);
	return ret;
}

int service_rmdir(struct service *s, const char *path)
{
	struct node n;
	int ret;

	svc_lock(s);
	ret = resolve(s, path, &n);
	if (ret)
		goto out;
	/* Not held: a NIC that someone holds is not removed. */
	if (n.type == N_NIC) {
		ret = nic_delete(s, n.nic);
		goto done;
	}
	node_hold(&n);
	if (n.type == N_VM)
		ret = vm_delete(s, n.vm);
	else if (n.type == N_DISK)
		ret = disk_delete(s, n.disk);
	else if (n.type == N_SWITCH)
		ret = switch_delete(s, n.sw);
	else
		ret = n.type == N_SLOT || n.attr ? -ENOTDIR : -EPERM;
	node_release(&n);
done:
	if (!ret)
		svc_notify(s, SVC_REMOVED, "%s", path);
out:
	svc_unlock(s);
	return ret;
}

int service_symlink(struct service *s, const char *target, const char *path)
{
	char parent[256];
	const char *name;
	struct node n;
	int ret, slot;

	if (split_last(path, parent, sizeof(parent), &name))
		return -ENAMETOOLONG;
	svc_lock(s);
	ret = resolve(s, parent, &n);
	if (ret)
		goto out;
	if (n.type != N_SLOTS) {
		ret = -EPERM;
		log_warn("symlink %s: links go in a VM's disks/ directory", path);
		goto out;
	}
	slot = parse_slot(name);
	if (slot < 0) {
		ret = vm_fail(s, n.vm, -EINVAL,
			      "disks/%s: slots are numbered 0 to %d", name, SLOTS - 1);
		goto out;
	}
	ret = vm_attach(s, n.vm, (unsigned int)slot, target);
	if (!ret)
		svc_notify(s, SVC_ADDED, "%s", path);
out:
	svc_unlock(s);
	return ret;
}

/*
 * A refused request on node @n ("rm", "chmod": @why), recorded in its
 * object's error as "FILE: OP: WHY" and in the log.
 */
static int refuse(struct service *s, struct node *n, int err, const char *op,
		  const char *why)
{
	bool port = n->type == N_PORT || n->type == N_PORTFILE;
	char where[2 * NAME_MAX_LEN + 160] = "";
	size_t len;

	if (port)
		snprintf(where, sizeof(where), "ports/%s%s", n->port.name, n->attr ? "/" : ": ");
	len = strlen(where);
	if (n->attr)
		snprintf(where + len, sizeof(where) - len, "%s: ", n->attr->path);
	len = strlen(where);
	if (op)
		snprintf(where + len, sizeof(where) - len, "%s: ", op);
	if (n->nic && !port)
		return nic_fail(s, n->nic, err, "%s%s", where, why);
	if (n->vm && !port)
		return vm_fail(s, n->vm, err, "%s%s", where, why);
	if (n->disk)
		return disk_fail(s, n->disk, err, "%s%s", where, why);
	if (n->sw)
		return switch_fail(s, n->sw, err, "%s%s", where, why);
	log_warn("%s%s", where, why);
	return err;
}

/*
 * `rm -r vms/NAME` changes nothing (docs/filesystem.md): it is refused
 * every file of the VM, and rm then leaves the directories above alone.
 * But it would still remove the disk links in disks/ on its way, which
 * detaches the disks from a VM that stays.  So a process that was just
 * refused a VM's file is also refused that VM's disk links for a while.
 */
#define REMOVAL_WINDOW_S 30

static void note_removal(struct vm_obj *vm, const struct svc_caller *who)
{
	if (!vm || !who)
		return;
	vm->removing_pid = who->pid;
	clock_gettime(CLOCK_MONOTONIC, &vm->removing_since);
}

static bool removing(const struct vm_obj *vm, const struct svc_caller *who)
{
	struct timespec now;

	if (!who || !vm->removing_pid || vm->removing_pid != who->pid)
		return false;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec - vm->removing_since.tv_sec < REMOVAL_WINDOW_S;
}

int service_unlink(struct service *s, const char *path, const struct svc_caller *who)
{
	struct node n;
	int ret;

	svc_lock(s);
	ret = resolve(s, path, &n);
	if (ret)
		goto out;
	if (n.type == N_SLOT && removing(n.vm, who)) {
		ret = vm_fail(s, n.vm, -EPERM,
			      "disks/%d: not detached: the same process was just refused removing this VM's files (rm -r?), and the VM stays; rmdir vms/%s deletes a VM, rm vms/%s/disks/%d alone detaches a disk",
			      n.slot, n.vm->name, n.vm->name, n.slot);
	} else if (n.type == N_SLOT) {
		ret = vm_detach(s, n.vm, (unsigned int)n.slot);
	} else if (n.attr) {
		note_removal(n.vm ? n.vm : n.port.vm, who);
		ret = refuse(s, &n, -EPERM, "rm",
			     "the files of an object cannot be removed (rmdir removes the object)");
	} else {
		ret = -EISDIR;
	}
	if (!ret)
		svc_notify(s, SVC_REMOVED, "%s", path);
out:
	svc_unlock(s);
	return ret;
}

int service_setattr(struct service *s, const char *path, mode_t mode, uid_t uid,
		    gid_t gid)
{
	struct svc_stat st;
	struct node n;
	char why[256];
	int ret;

	svc_lock(s);
	ret = resolve(s, path, &n);
	if (ret)
		goto out;
	node_hold(&n);
	node_stat(s, &n, &st);
	if (mode != (mode_t)-1 && (mode & 07777) != (st.mode & 07777)) {
		snprintf(why, sizeof(why),
			 "modes are the service's (this is %04o; the tree's modes follow who may do what, see docs/filesystem.md)",
			 (unsigned int)st.mode & 07777);
		ret = refuse(s, &n, -EPERM, "chmod", why);
	} else if ((uid != (uid_t)-1 && uid != st.uid) || (gid != (gid_t)-1 && gid != st.gid)) {
		snprintf(why, sizeof(why),
			 "owners are the service's (this belongs to %u:%u, the mount's owner and group)",
			 (unsigned int)st.uid, (unsigned int)st.gid);
		ret = refuse(s, &n, -EPERM, "chown", why);
	}
	node_release(&n);
out:
	svc_unlock(s);
	return ret;
}

int service_refuse(struct service *s, const char *path, const char *what)
{
	char parent[256];
	const char *name;
	struct node n;
	int ret = -EPERM;

	svc_lock(s);
	/* The object of the path, or of its directory for what is not there yet. */
	if (resolve(s, path, &n) != 0 &&
	    (split_last(path, parent, sizeof(parent), &name) || resolve(s, parent, &n) != 0))
		memset(&n, 0, sizeof(n));
	node_hold(&n);
	ret = refuse(s, &n, -EPERM, what, "the tree's names are the service's to make");
	node_release(&n);
	svc_unlock(s);
	return ret;
}

int service_truncate(struct service *s, const char *path, uint64_t size)
{
	struct node n;
	int ret;

	svc_lock(s);
	ret = resolve(s, path, &n);
	if (ret)
		goto out;
	if (!n.attr) {
		ret = -EISDIR;
	} else if (!(n.attr->flags & A_WRITE)) {
		ret = -EACCES;
	} else if (n.attr->flags & A_DATA) {
		/* Like a block device: O_TRUNC is a no-op, the size is fixed. */
		if (size != 0 && size != n.disk->size)
			ret = disk_fail(s, n.disk, -EINVAL,
					"data: the size is set through 'size', not by truncating");
	} else if (size != 0) {
		ret = -EINVAL;
	}
out:
	svc_unlock(s);
	return ret;
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

/* ---- open files ------------------------------------------------------- */

struct svc_file {
	struct service *s;
	char *path;
	unsigned int flags;		/* the attribute's */
	bool can_write;
	char *snap;			/* value as last read */
	size_t snap_len;
	bool snapped;
	char vm_filter[NAME_MAX_LEN + 1];	/* events: this VM's only */
	uint64_t log_next;		/* logs: file offset expected next */
	uint64_t log_delta;		/* ... and its distance to the log's position */
	struct disk_obj *disk;		/* data */
};

const char *service_file_path(const struct svc_file *f)
{
	return f->path;
}

int service_open_file(struct service *s, const char *path, int flags,
		      const struct svc_caller *who, struct svc_file **out)
{
	int acc = flags & O_ACCMODE;
	struct svc_file *f;
	struct node n;
	int ret;

	svc_lock(s);
	ret = resolve(s, path, &n);
	if (ret)
		goto out;
	if (!n.attr) {
		ret = n.type == N_SLOT ? -ELOOP : -EISDIR;
		goto out;
	}
	if ((acc != O_WRONLY && !(n.attr->flags & A_READ) && !(n.attr->flags & A_CTL)) ||
	    (acc != O_RDONLY && !(n.attr->flags & A_WRITE))) {
		ret = -EACCES;
		goto out;
	}
	if ((n.attr->flags & A_DATA) && n.disk->file && n.disk->adopted) {
		ret = svc_caller_may_open(s, who, n.disk->file, acc);
		if (ret) {
			ret = disk_fail(s, n.disk, -EACCES,
					"data: %s is a host file that you could not open %s yourself, so it is not served to you (%s)",
					n.disk->file, acc == O_RDONLY ? "for reading" :
					acc == O_WRONLY ? "for writing" : "for reading and writing",
					strerror(-ret));
			goto out;
		}
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		ret = -ENOMEM;
		goto out;
	}
	f->s = s;
	f->path = svc_strdup(path);
	f->flags = n.attr->flags;
	f->can_write = acc != O_RDONLY;
	if ((f->flags & A_EVENTS) && n.vm)
		snprintf(f->vm_filter, sizeof(f->vm_filter), "%s", n.vm->name);
	if (f->flags & A_DATA) {
		ret = disk_data_open(s, n.disk, f->can_write);
		if (ret) {
			free(f->path);
			free(f);
			goto out;
		}
		f->disk = n.disk;
		n.disk->refs++;
	}
	*out = f;
out:
	svc_unlock(s);
	return ret;
}

int service_flush_file(struct svc_file *f)
{
	return f->disk ? disk_data_flush(f->disk) : 0;
}

void service_close_file(struct svc_file *f)
{
	struct service *s;

	if (!f)
		return;
	s = f->s;
	if (f->disk) {
		svc_lock(s);
		disk_data_close(s, f->disk);
		disk_put(f->disk);
		svc_unlock(s);
	}
	free(f->snap);
	free(f->path);
	free(f);
}

static ssize_t copy_out(const char *text, size_t len, uint64_t off, void *buf,
			size_t size)
{
	if (off >= len)
		return 0;
	if (size > len - off)
		size = (size_t)(len - off);
	memcpy(buf, text + off, size);
	return (ssize_t)size;
}

/* Bytes of a log from *pos (moved forward past what is no longer kept). */
typedef ssize_t (*log_fetch_fn)(struct svc_file *f, struct node *n, uint64_t *pos,
				void *buf, size_t len);

static ssize_t fetch_console(struct svc_file *f, struct node *n, uint64_t *pos,
			     void *buf, size_t len)
{
	char *path;
	ssize_t ret;

	(void)f;
	if (asprintf(&path, "%s/console", n->vm->dir) < 0)
		return -ENOMEM;
	ret = ringfile_read(path, pos, buf, len);
	free(path);
	if (ret > 0)
		*pos -= (uint64_t)ret;	/* ringfile_read leaves it after the bytes */
	return ret == -ENOENT ? 0 : ret;	/* never started: nothing printed yet */
}

static ssize_t fetch_events(struct svc_file *f, struct node *n, uint64_t *pos,
			    void *buf, size_t len)
{
	(void)n;
	return svc_events_read(f->s, f->vm_filter[0] ? f->vm_filter : NULL, pos, buf, len);
}

/*
 * Logs (console, events) are read at positions in everything they ever
 * held, of which only the newest part is kept.  A reader that starts
 * before it reads on from the oldest byte kept, and its later offsets
 * follow on from there.
 */
static ssize_t read_log(struct svc_file *f, struct node *n, uint64_t off, void *buf,
			size_t len, log_fetch_fn fetch)
{
	uint64_t pos;
	ssize_t ret;

	if (off != f->log_next)
		f->log_delta = 0;
	pos = off + f->log_delta;
	ret = fetch(f, n, &pos, buf, len);
	if (ret < 0)
		return ret;
	if (ret > 0)
		f->log_delta = pos - off;
	f->log_next = off + (uint64_t)ret;
	return ret;
}

ssize_t service_read(struct svc_file *f, uint64_t off, void *buf, size_t len)
{
	struct service *s = f->s;
	struct disk_obj *d = f->disk;
	struct node n;
	ssize_t ret;

	if (f->flags & A_DATA)
		return disk_data_read(d, off, buf, len);

	svc_lock(s);
	ret = resolve(s, f->path, &n);
	if (ret)
		goto out;
	node_hold(&n);
	if (f->flags & A_CTL) {
		ret = 0;
	} else if (f->flags & A_EVENTS) {
		ret = read_log(f, &n, off, buf, len, fetch_events);
	} else if (f->flags & A_CONSOLE) {
		ret = read_log(f, &n, off, buf, len, fetch_console);
	} else {
		if (off == 0 || !f->snapped) {
			char *text;
			size_t tlen;

			ret = attr_value(s, n.attr, node_object(&n), &text, &tlen);
			if (ret)
				goto release;
			free(f->snap);
			f->snap = text;
			f->snap_len = tlen;
			f->snapped = true;
		}
		ret = copy_out(f->snap, f->snap_len, off, buf, len);
	}
release:
	node_release(&n);
out:
	svc_unlock(s);
	return ret;
}

/*
 * Strict UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF):
 * definitions are JSON text, which holds nothing else.
 */
static bool utf8_valid(const unsigned char *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = p[i];
		size_t n;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			n = 1, cp = c & 0x1F;
		else if (c >= 0xE0 && c <= 0xEF)
			n = 2, cp = c & 0x0F;
		else if (c >= 0xF0 && c <= 0xF4)
			n = 3, cp = c & 0x07;
		else
			return false;
		if (len - i <= n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((p[i + k] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3F);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += n + 1;
	}
	return true;
}

/* One written value: trimmed, checked for what no file accepts. */
static int clean_value(const char *buf, size_t len, char *out, const char **why)
{
	size_t start = 0, end = len;

	while (start < end && (buf[start] == ' ' || buf[start] == '\t' ||
			       buf[start] == '\n' || buf[start] == '\r'))
		start++;
	while (end > start && (buf[end - 1] == ' ' || buf[end - 1] == '\t' ||
			       buf[end - 1] == '\n' || buf[end - 1] == '\r'))
		end--;
	if (end - start > VALUE_MAX) {
		*why = "the value is too long (at most " VALUE_MAX_TEXT " bytes)";
		return -EINVAL;
	}
	for (size_t i = start; i < end; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c < 0x20 || c == 0x7F) {
			*why = c == '\n' ? "one value per write: the value has several lines"
					 : "the value contains control characters";
			return -EINVAL;
		}
	}
	if (!utf8_valid((const unsigned char *)buf + start, end - start)) {
		*why = "the value is not valid UTF-8 text (definitions are kept as JSON, which holds only UTF-8; for a host path, use a link with a UTF-8 name)";
		return -EINVAL;
	}
	memcpy(out, buf + start, end - start);
	out[end - start] = '\0';
	return 0;
}

static bool call_interrupted(void *ctx)
{
	struct svc_call *call = ctx;

	return call->intr && call->intr(call->ctx);
}

ssize_t service_write(struct svc_file *f, uint64_t off, const void *buf,
		      size_t len, const struct svc_caller *who,
		      svc_interrupted_fn intr, void *ctx)
{
	struct svc_call call = { .intr = intr, .ctx = ctx, .who = who };
	struct service *s = f->s;
	char value[VALUE_MAX + 1];
	const char *why = NULL;
	struct node n;
	ssize_t ret;

	if (f->flags & A_DATA)
		return disk_data_write(f->disk, off, buf, len);

	svc_lock(s);
	ret = resolve(s, f->path, &n);
	if (ret)
		goto out;
	node_hold(&n);
	if (f->flags & A_CONSOLE) {
		ret = vm_console_input(s, n.vm, buf, len);
		goto release;
	}
	/*
	 * A value is one write at offset 0.  Anything else is a value in
	 * pieces (`dd bs=1`, two writes of one line) or `>>`, and taking a
	 * piece for the whole would store half a value.  A command is one
	 * write at any offset, so a descriptor kept open can send several.
	 */
	if (off != 0 && !(f->flags & A_CTL)) {
		char msg[160];

		snprintf(msg, sizeof(msg),
			 "a value is written whole, in one write() at offset 0 (this one came at offset %llu: a value in pieces, or '>>' where '>' is meant)",
			 (unsigned long long)off);
		ret = refuse(s, &n, -EINVAL, NULL, msg);
		goto release;
	}
	ret = clean_value(buf, len, value, &why);
	if (ret) {
		refuse(s, &n, (int)ret, NULL, why);
		goto release;
	}
	/* One change at a time to a NIC: its writes drop the lock to talk to workers. */
	if (n.nic && n.nic->changing) {
		ret = nic_fail(s, n.nic, -EBUSY, "%s: another change to this NIC is in progress",
			       n.attr->path);
		goto release;
	}
	if (n.nic)
		n.nic->changing = true;
	ret = n.attr->store(s, node_object(&n), value, call_interrupted, &call);
	if (n.nic)
		n.nic->changing = false;
release:
	node_release(&n);
out:
	svc_unlock(s);
	return ret ? ret : (ssize_t)len;
}

unsigned int service_poll(struct svc_file *f)
{
	struct service *s = f->s;
	unsigned int revents = 0;
	struct node n;

	if (!(f->flags & (A_EVENTS | A_CTL)) && (f->flags & A_VOLATILE ||
						 f->flags & (A_CONSOLE | A_DATA)))
		return POLLIN | (f->can_write ? POLLOUT : 0);
	svc_lock(s);
	if (resolve(s, f->path, &n)) {
		revents = POLLERR;
		svc_unlock(s);
		return revents;
	}
	node_hold(&n);
	if (f->flags & A_EVENTS) {
		/* More than this handle has read (or skipped to). */
		if (svc_events_size(s, f->vm_filter[0] ? f->vm_filter : NULL) > f->log_next)
			revents = POLLIN;
	} else if (f->flags & A_CTL) {
		revents = POLLOUT;
	} else if (!f->snapped) {
		revents = POLLIN | POLLPRI;
	} else {
		char *text;
		size_t len;

		if (attr_value(s, n.attr, node_object(&n), &text, &len) == 0) {
			if (len != f->snap_len || memcmp(text, f->snap, len))
				revents = POLLIN | POLLPRI;
			free(text);
		}
	}
	if (f->can_write)
		revents |= POLLOUT;
	node_release(&n);
	svc_unlock(s);
	return revents;
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
