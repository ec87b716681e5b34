// SPDX-License-Identifier: MIT
/*
 * Disk objects: a virtual disk declared under disks/NAME, its definition
 * in <state>/disks/NAME/disk.json, and its file: one the service created
 * there (disk.vhdx or disk.raw) or one it adopted, which it never deletes.
 * "data" shows the virtual disk's contents through the disk library.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "service/internal.h"

#define MAX_DISK_SIZE	(64ULL << 40)	/* the VHDX limit */

const char *disk_format_name(enum vdisk_format f)
{
	return f == VDISK_FORMAT_RAW ? "raw" : "vhdx";
}

static const char *type_name(enum vdisk_type t)
{
	return t == VDISK_TYPE_FIXED ? "fixed" :
	       t == VDISK_TYPE_DIFFERENCING ? "differencing" : "dynamic";
}

void disk_free(struct disk_obj *d)
{
	if (d->data)
		vdisk_close(d->data);
	pthread_mutex_destroy(&d->data_lock);
	free(d->file);
	free(d->dir);
	free(d);
}

static struct disk_obj *disk_alloc(struct service *s, const char *name)
{
	struct disk_obj *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->dir = svc_path(s, "disks", name);
	d->refs = 1;
	d->type = VDISK_TYPE_DYNAMIC;
	d->format = VDISK_FORMAT_VHDX;
	pthread_mutex_init(&d->data_lock, NULL);
	svc_touch(&d->mtime);
	return d;
}

/* Why the disk cannot change now, as a sentence; NULL if it can. */
static const char *busy_reason(struct service *s, struct disk_obj *d, char *buf,
			       size_t len)
{
	struct vm_obj *vm = disk_user(s, d->name, NULL);

	if (vm && vm_is_active(vm))
		snprintf(buf, len, "VM %s, which uses it, is %s", vm->name,
			 vm_state_name(vm->state));
	else if (vm && vm->state == VMS_SAVED)
		snprintf(buf, len,
			 "VM %s, which uses it, is saved, and its saved state was made with the disk as it is",
			 vm->name);
	else if (d->data_users)
		snprintf(buf, len, "its data file is open");
	else if (d->busy)
		snprintf(buf, len, "it is busy (%s)", d->progress);
	else
		return NULL;
	return buf;
}

/*
 * Someone other than the mount's owner working on an adopted file: the
 * service reads (and writes) it with its own rights, so it must be a
 * file the caller could open so.
 */
static int refuse_for_caller(struct service *s, struct disk_obj *d, void *ctx,
			     const char *file, int acc)
{
	int ret;

	if (!d->file || !d->adopted)
		return 0;
	ret = svc_caller_may_open(s, svc_caller_of(ctx), d->file, acc);
	if (!ret)
		return 0;
	return disk_fail(s, d, -EACCES,
			 "%s: %s is a host file that you could not open %s yourself (%s)", file,
			 d->file, acc == O_RDONLY ? "for reading" : "for reading and writing",
			 strerror(-ret));
}

/* ---- persistence ------------------------------------------------------ */

int disk_save(struct disk_obj *d)
{
	json_t *doc = json_pack("{s:s, s:s, s:s, s:o, s:b, s:I, s:s, s:s}",
				"name", d->name,
				"type", type_name(d->type),
				"format", disk_format_name(d->format),
				"file", d->file ? json_string(d->file) : json_null(),
				"adopted", d->adopted,
				"size", (json_int_t)d->size,
				"error", d->error,
				"progress", d->progress);
	char *path;
	int ret;

	if (asprintf(&path, "%s/disk.json", d->dir) < 0) {
		json_decref(doc);
		return -ENOMEM;
	}
	ret = json_file_save(path, doc);
	if (ret)
		log_error("disk %s: saving %s failed: %s", d->name, path, strerror(-ret));
	free(path);
	json_decref(doc);
	return ret;
}

static void disk_changed(struct service *s, struct disk_obj *d, const char *file,
			 const char *value)
{
	svc_touch(&d->mtime);
	/* The whole directory: its files' times changed with it (tree.h). */
	svc_notify(s, SVC_CHANGED, "disks/%s", d->name);
	svc_event(s, "disk", d->name, "%s %s", file, value);
}

int disk_define(struct service *s, const char *name)
{
	struct disk_obj *d;
	char *json;
	int ret;

	if (disk_find(s, name))
		return -EEXIST;
	d = disk_alloc(s, name);
	if (!d)
		return -ENOMEM;
	/* Left by an interrupted mkdir, unless it holds what we could not load. */
	if (asprintf(&json, "%s/disk.json", d->dir) < 0)
		abort();
	ret = access(json, F_OK) == 0 ? -EEXIST : 0;
	free(json);
	if (ret) {
		log_error("disk %s: %s holds a definition that could not be loaded; not replaced",
			  name, d->dir);
		disk_put(d);
		return ret;
	}
	svc_remove_dir(d->dir);
	if (mkdir(d->dir, 0700) < 0) {
		ret = -errno;
		log_error("disk %s: cannot create %s: %s", name, d->dir, strerror(errno));
		disk_put(d);
		return ret;
	}
	ret = disk_save(d);
	if (!ret)
		ret = svc_list_insert((void ***)&s->disks, &s->ndisks, &s->disks_cap, d);
	if (ret) {
		svc_remove_dir(d->dir);
		disk_put(d);
		return ret;
	}
	svc_event(s, "disk", name, "defined");
	return 0;
}

int disk_delete(struct service *s, struct disk_obj *d)
{
	struct vm_obj *vm;
	char why[256];
	int slot;

	vm = disk_user(s, d->name, &slot);
	if (vm)
		return disk_fail(s, d, -EBUSY, "rmdir: VM %s uses it (disks/%d); remove the link first",
				 vm->name, slot);
	if (busy_reason(s, d, why, sizeof(why)))
		return disk_fail(s, d, -EBUSY, "rmdir: %s", why);
	/* Our own file goes with the disk; an adopted one stays. */
	if (d->file && !d->adopted && unlink(d->file) < 0 && errno != ENOENT)
		log_warn("disk %s: cannot remove %s: %s", d->name, d->file, strerror(errno));
	svc_remove_dir(d->dir);
	svc_list_remove((void **)s->disks, &s->ndisks, d->name);
	d->deleted = true;
	svc_event(s, "disk", d->name, "deleted");
	disk_put(d);
	return 0;
}

static int disk_load(struct service *s, const char *name)
{
	struct disk_obj *d = disk_alloc(s, name);
	json_t *doc, *v;
	char err[512], *path;
	struct stat st;
	int ret;

	if (!d)
		return -ENOMEM;
	if (asprintf(&path, "%s/disk.json", d->dir) < 0)
		abort();
	ret = json_file_load(path, &doc, err, sizeof(err));
	if (ret == -ENOENT) {
		log_warn("disk %s: no disk.json (an interrupted mkdir): removing %s",
			 name, d->dir);
		svc_remove_dir(d->dir);
		free(path);
		disk_put(d);
		return 0;
	}
	if (ret) {
		log_error("disk %s: %s: %s; left alone", name, path, err);
		free(path);
		disk_put(d);
		return 0;
	}
	if (stat(path, &st) == 0)
		d->mtime = st.st_mtim;
	free(path);
	v = json_object_get(doc, "type");
	if (json_is_string(v) && strcmp(json_string_value(v), "fixed") == 0)
		d->type = VDISK_TYPE_FIXED;
	v = json_object_get(doc, "format");
	if (json_is_string(v) && strcmp(json_string_value(v), "raw") == 0)
		d->format = VDISK_FORMAT_RAW;
	v = json_object_get(doc, "file");
	if (json_is_string(v))
		d->file = svc_strdup(json_string_value(v));
	d->adopted = json_is_true(json_object_get(doc, "adopted"));
	v = json_object_get(doc, "size");
	if (json_is_integer(v) && json_integer_value(v) >= 0)
		d->size = (uint64_t)json_integer_value(v);
	v = json_object_get(doc, "error");
	if (json_is_string(v))
		snprintf(d->error, sizeof(d->error), "%s", json_string_value(v));
	v = json_object_get(doc, "progress");
	if (json_is_string(v))
		snprintf(d->progress, sizeof(d->progress), "%s", json_string_value(v));
	json_decref(doc);

	/*
	 * A file of ours that the definition does not name was being created
	 * when the service stopped: the write never succeeded, so it goes.
	 */
	for (int i = 0; i < 4; i++) {
		static const char *const ours[] = { "disk.vhdx", "disk.raw",
						    "disk.vhdx.new", "disk.raw.new" };
		char *p;

		if (asprintf(&p, "%s/%s", d->dir, ours[i]) < 0)
			abort();
		if ((!d->file || strcmp(d->file, p) != 0) && unlink(p) == 0)
			log_warn("disk %s: removed %s, left by an interrupted create", name, p);
		free(p);
	}
	if (d->file && access(d->file, F_OK) < 0) {
		log_error("disk %s: its file %s is missing", name, d->file);
	} else if (d->file) {
		/* The file is the authority on its size (it may have grown since). */
		struct vdisk_open_opts o = { .format = d->format, .no_io = true };
		struct vdisk *vd;

		if (vdisk_open(d->file, &o, &vd, err, sizeof(err)) == 0) {
			d->size = vdisk_info(vd)->virtual_size;
			vdisk_close(vd);
		} else {
			log_error("disk %s: %s", name, err);
		}
	}
	ret = svc_list_insert((void ***)&s->disks, &s->ndisks, &s->disks_cap, d);
	if (ret)
		disk_put(d);
	return ret;
}

int disk_load_all(struct service *s)
{
	return svc_load_dir(s, "disks", disk_load);
}

/* ---- size: creating and growing ------------------------------------------- */

static int create_file(struct disk_obj *d, uint64_t size, char **out, char *why,
		       size_t whylen)
{
	char *path, *tmp;
	int ret = 0, fd;

	if (asprintf(&path, "%s/disk.%s", d->dir, disk_format_name(d->format)) < 0 ||
	    asprintf(&tmp, "%s.new", path) < 0)
		abort();
	unlink(tmp);
	if (d->format == VDISK_FORMAT_VHDX) {
		struct vhdx_create_opts o = { .size = size, .type = d->type };

		ret = vhdx_create(tmp, &o, why, whylen);
		/* Like everything under the state directory: the service's alone. */
		if (!ret && chmod(tmp, 0600) < 0) {
			ret = -errno;
			snprintf(why, whylen, "chmod: %s", strerror(errno));
		}
	} else {
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			ret = -errno;
		} else {
			if (ftruncate(fd, (off_t)size) < 0)
				ret = -errno;
			else if (d->type == VDISK_TYPE_FIXED)
				ret = -posix_fallocate(fd, 0, (off_t)size);
			if (!ret && fsync(fd) < 0)
				ret = -errno;
			close(fd);
		}
		if (ret)
			snprintf(why, whylen, "%s", strerror(-ret));
	}
	if (!ret && rename(tmp, path) < 0) {
		ret = -errno;
		snprintf(why, whylen, "%s", strerror(errno));
	}
	if (!ret) {
		/* The rename must be on disk before the definition names it. */
		int dfd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
		*out = path;
	} else {
		unlink(tmp);
		free(path);
	}
	free(tmp);
	return ret;
}

static int disk_grow(struct service *s, struct disk_obj *d, uint64_t size)
{
	char why[512], a[SIZE_STR_MAX], b[SIZE_STR_MAX];
	uint64_t old = d->size;
	int ret;

	if (d->type == VDISK_TYPE_FIXED) {
		struct statvfs v;

		if (statvfs(d->file, &v) == 0 && (uint64_t)v.f_bavail * v.f_frsize < size - old)
			return disk_fail(s, d, -ENOSPC,
					 "size: growing a fixed disk by %s needs that much space; %s is free",
					 size_format(size - old, a, sizeof(a)),
					 size_format_human((uint64_t)v.f_bavail * v.f_frsize,
							   b, sizeof(b)));
	}
	d->busy = true;
	snprintf(d->progress, sizeof(d->progress), "0%% grow");
	d->refs++;
	svc_unlock(s);
	ret = vdisk_resize(d->file, size, why, sizeof(why));
	svc_lock(s);
	d->busy = false;
	if (ret) {
		snprintf(d->progress, sizeof(d->progress), "grow failed");
		ret = disk_fail(s, d, ret == -ENOSPC ? -ENOSPC : ret == -EIO ? -EIO : -EINVAL,
				"size: growing the disk failed: %s", why);
		disk_put(d);
		return ret;
	}
	d->size = size;
	snprintf(d->progress, sizeof(d->progress), "100%% grow");
	ret = disk_save(d);
	if (ret)
		log_error("disk %s: grown to %llu bytes, but the definition was not saved: %s",
			  d->name, (unsigned long long)size, strerror(-ret));
	snprintf(a, sizeof(a), "%llu", (unsigned long long)size);
	disk_changed(s, d, "size", a);
	disk_changed(s, d, "progress", d->progress);
	disk_put(d);
	return 0;
}

static int store_size(struct service *s, void *obj, const char *value,
		      svc_interrupted_fn intr, void *ctx)
{
	struct disk_obj *d = obj;
	char why[512], a[SIZE_STR_MAX], b[SIZE_STR_MAX];
	uint64_t size;
	char *path = NULL;
	int ret;

	(void)intr;
	if (busy_reason(s, d, why, sizeof(why)))
		return disk_fail(s, d, -EBUSY, "size: %s", why);
	ret = size_parse(value, &size);
	if (ret)
		return disk_fail(s, d, -EINVAL, "size: '%s' is not a size (like 20G)%s", value,
				 ret == -ERANGE ? ": too large" : "");
	if (size == 0)
		return disk_fail(s, d, -EINVAL, "size: a disk needs more than 0 bytes");
	if (size % 512)
		return disk_fail(s, d, -EINVAL, "size: %s is not a multiple of 512 bytes", value);
	if (size > MAX_DISK_SIZE)
		return disk_fail(s, d, -EINVAL, "size: %s is over the VHDX limit of 64T", value);
	if (d->file) {
		if (size == d->size)
			return 0;
		ret = refuse_for_caller(s, d, ctx, "size", O_RDWR);
		if (ret)
			return ret;
		if (size < d->size)
			return disk_fail(s, d, -EINVAL,
					 "size: %s is smaller than the disk (%s); shrinking would lose data and is not supported",
					 size_format(size, a, sizeof(a)),
					 size_format(d->size, b, sizeof(b)));
		return disk_grow(s, d, size);
	}
	if (d->type == VDISK_TYPE_FIXED) {
		struct statvfs v;

		if (statvfs(d->dir, &v) == 0 && (uint64_t)v.f_bavail * v.f_frsize < size)
			return disk_fail(s, d, -ENOSPC,
					 "size: a fixed disk of %s needs that much space; %s is free",
					 size_format(size, a, sizeof(a)),
					 size_format_human((uint64_t)v.f_bavail * v.f_frsize,
							   b, sizeof(b)));
	}

	/* Creating a fixed disk takes a while: others may go on meanwhile. */
	d->busy = true;
	snprintf(d->progress, sizeof(d->progress), "0%% create");
	d->refs++;
	svc_unlock(s);
	ret = create_file(d, size, &path, why, sizeof(why));
	svc_lock(s);
	d->busy = false;
	if (ret) {
		snprintf(d->progress, sizeof(d->progress), "create failed");
		ret = disk_fail(s, d, ret == -ENOSPC ? -ENOSPC : -EIO, "size: creating the file failed: %s",
				why);
		disk_put(d);
		return ret;
	}
	d->file = path;
	d->adopted = false;
	d->size = size;
	snprintf(d->progress, sizeof(d->progress), "100%% create");
	ret = disk_save(d);
	if (ret) {
		unlink(path);
		free(d->file);
		d->file = NULL;
		d->size = 0;
		ret = disk_fail(s, d, -EIO, "size: cannot save the definition: %s", strerror(-ret));
		disk_put(d);
		return ret;
	}
	snprintf(a, sizeof(a), "%llu", (unsigned long long)size);
	disk_changed(s, d, "size", a);
	disk_changed(s, d, "file", path);
	disk_changed(s, d, "progress", d->progress);
	disk_put(d);
	return 0;
}

static int show_size(struct service *s, void *obj, FILE *out)
{
	(void)s;
	fprintf(out, "%llu\n", (unsigned long long)((struct disk_obj *)obj)->size);
	return 0;
}

/* ---- type and format ------------------------------------------------------ */

static int settable(struct service *s, struct disk_obj *d, const char *file)
{
	if (d->file)
		return disk_fail(s, d, -EBUSY,
				 "%s: the disk has its file (%s) already; this is set before 'size' (fsvisor disk convert makes a copy in another format)",
				 file, d->file);
	return 0;
}

static int store_type(struct service *s, void *obj, const char *value,
		      svc_interrupted_fn intr, void *ctx)
{
	struct disk_obj *d = obj;
	enum vdisk_type old = d->type;
	int ret;

	(void)intr;
	(void)ctx;
	ret = settable(s, d, "type");
	if (ret)
		return ret;
	if (strcmp(value, "dynamic") == 0)
		d->type = VDISK_TYPE_DYNAMIC;
	else if (strcmp(value, "fixed") == 0)
		d->type = VDISK_TYPE_FIXED;
	else if (strcmp(value, "differencing") == 0)
		return disk_fail(s, d, -EINVAL,
				 "type: differencing disks are not available yet (they come with checkpoints)");
	else
		return disk_fail(s, d, -EINVAL, "type: '%s' is not one of: dynamic fixed", value);
	ret = disk_save(d);
	if (ret) {
		d->type = old;
		return disk_fail(s, d, -EIO, "type: cannot save the definition: %s", strerror(-ret));
	}
	disk_changed(s, d, "type", value);
	return 0;
}

static int show_type(struct service *s, void *obj, FILE *out)
{
	(void)s;
	fprintf(out, "%s\n", type_name(((struct disk_obj *)obj)->type));
	return 0;
}

static int store_format(struct service *s, void *obj, const char *value,
			svc_interrupted_fn intr, void *ctx)
{
	struct disk_obj *d = obj;
	enum vdisk_format old = d->format;
	int ret;

	(void)intr;
	(void)ctx;
	ret = settable(s, d, "format");
	if (ret)
		return ret;
	if (strcmp(value, "vhdx") == 0)
		d->format = VDISK_FORMAT_VHDX;
	else if (strcmp(value, "raw") == 0)
		d->format = VDISK_FORMAT_RAW;
	else if (strcmp(value, "vhd") == 0)
		return disk_fail(s, d, -EINVAL,
				 "format: VHD is not available yet; use vhdx (or raw)");
	else
		return disk_fail(s, d, -EINVAL, "format: '%s' is not one of: vhdx raw", value);
	ret = disk_save(d);
	if (ret) {
		d->format = old;
		return disk_fail(s, d, -EIO, "format: cannot save the definition: %s",
				 strerror(-ret));
	}
	disk_changed(s, d, "format", value);
	return 0;
}

static int show_format(struct service *s, void *obj, FILE *out)
{
	(void)s;
	fprintf(out, "%s\n", disk_format_name(((struct disk_obj *)obj)->format));
	return 0;
}

/* ---- file: adopting ------------------------------------------------------ */

static int store_file(struct service *s, void *obj, const char *value,
		      svc_interrupted_fn intr, void *ctx)
{
	struct disk_obj *d = obj;
	struct vdisk_open_opts o = { .format = VDISK_FORMAT_AUTO, .no_io = true };
	const struct vdisk_info *info;
	char real[PATH_MAX], why[512];
	size_t slen = strlen(s->state_dir);
	struct vdisk *vd;
	struct stat st;
	int ret;

	(void)intr;
	if (d->file)
		return disk_fail(s, d, -EBUSY, "file: the disk has its file (%s) already", d->file);
	if (!svc_caller_is_owner(s, ctx))
		return disk_fail(s, d, -EPERM, "file: only the mount's owner may adopt host files");
	if (value[0] != '/')
		return disk_fail(s, d, -EINVAL, "file: '%s' is not an absolute path", value);
	if (!realpath(value, real))
		return disk_fail(s, d, errno == ENOENT ? -ENOENT : -EINVAL, "file: %s: %s",
				 value, strerror(errno));
	if (stat(real, &st) < 0 || (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)))
		return disk_fail(s, d, -EINVAL, "file: %s is not a regular file or block device",
				 value);
	if (strncmp(real, s->state_dir, slen) == 0 && real[slen] == '/')
		return disk_fail(s, d, -EINVAL,
				 "file: %s is inside the state directory, whose files are fsvisor's own",
				 value);
	for (size_t i = 0; i < s->ndisks; i++) {
		if (s->disks[i]->file && strcmp(s->disks[i]->file, real) == 0)
			return disk_fail(s, d, -EBUSY, "file: disk %s has %s already",
					 s->disks[i]->name, real);
	}
	if (access(real, R_OK | W_OK) < 0)
		return disk_fail(s, d, -EPERM, "file: %s: %s", value, strerror(errno));
	ret = vdisk_open(real, &o, &vd, why, sizeof(why));
	if (ret)
		return disk_fail(s, d, -EINVAL, "file: %s", why);
	info = vdisk_info(vd);
	/*
	 * Anything opens as raw; a file that is not whole sectors is no disk
	 * image (and /etc/shadow would otherwise be a 676-byte disk).
	 */
	if (info->format == VDISK_FORMAT_RAW && S_ISREG(st.st_mode) && st.st_size % 512) {
		vdisk_close(vd);
		return disk_fail(s, d, -EINVAL,
				 "file: %s is %lld bytes, not a whole number of 512-byte sectors, so it is not a raw disk image",
				 value, (long long)st.st_size);
	}
	if (info->type == VDISK_TYPE_DIFFERENCING) {
		vdisk_close(vd);
		return disk_fail(s, d, -EINVAL,
				 "file: %s is a differencing disk; those are not available yet", value);
	}
	d->file = svc_strdup(real);
	d->adopted = true;
	d->format = info->format == VDISK_FORMAT_RAW ? VDISK_FORMAT_RAW : VDISK_FORMAT_VHDX;
	d->type = info->type;
	d->size = info->virtual_size;
	vdisk_close(vd);
	ret = disk_save(d);
	if (ret) {
		free(d->file);
		d->file = NULL;
		d->adopted = false;
		d->size = 0;
		return disk_fail(s, d, -EIO, "file: cannot save the definition: %s", strerror(-ret));
	}
	disk_changed(s, d, "file", real);
	return 0;
}

static int show_file(struct service *s, void *obj, FILE *out)
{
	(void)s;
	fprintf(out, "%s\n", ((struct disk_obj *)obj)->file ? ((struct disk_obj *)obj)->file : "");
	return 0;
}

static int show_used(struct service *s, void *obj, FILE *out)
{
	struct disk_obj *d = obj;
	struct stat st;

	(void)s;
	fprintf(out, "%llu\n", d->file && stat(d->file, &st) == 0 ?
		(unsigned long long)st.st_blocks * 512 : 0ULL);
	return 0;
}

/* ---- ctl: check -------------------------------------------------------- */

struct problems {
	unsigned int n;
	char text[ERROR_MAX - 128];
};

static void collect(void *ctx, const char *problem)
{
	struct problems *p = ctx;
	size_t len = strlen(p->text);

	if (p->n++ == 0)
		snprintf(p->text, sizeof(p->text), "%s", problem);
	else if (len + 3 < sizeof(p->text))
		snprintf(p->text + len, sizeof(p->text) - len, "; %s", problem);
}

static int disk_check(struct service *s, struct disk_obj *d)
{
	struct vhdx_check_result res = { 0 };
	struct problems p = { 0 };
	char why[256];
	int ret;

	if (!d->file)
		return disk_fail(s, d, -EINVAL, "check: the disk has no file yet");
	if (busy_reason(s, d, why, sizeof(why)))
		return disk_fail(s, d, -EBUSY, "check: %s", why);
	if (d->format == VDISK_FORMAT_RAW) {
		snprintf(d->progress, sizeof(d->progress), "100%% check: raw, nothing to check");
		disk_changed(s, d, "progress", "check");
		return 0;
	}
	d->busy = true;
	snprintf(d->progress, sizeof(d->progress), "0%% check");
	d->refs++;
	svc_unlock(s);
	ret = vhdx_check(d->file, false, collect, &p, &res);
	svc_lock(s);
	d->busy = false;
	if (ret) {
		snprintf(d->progress, sizeof(d->progress), "check failed");
		ret = disk_fail(s, d, -EIO, "check: cannot read %s: %s", d->file, strerror(-ret));
	} else if (p.n) {
		snprintf(d->progress, sizeof(d->progress), "100%% check: %u problem%s", p.n,
			 p.n == 1 ? "" : "s");
		ret = disk_fail(s, d, -EIO, "check: %u problem%s: %s (fsvisor disk check --repair %s)",
				p.n, p.n == 1 ? "" : "s", p.text, d->file);
	} else {
		snprintf(d->progress, sizeof(d->progress), "100%% check: clean");
	}
	disk_save(d);
	disk_changed(s, d, "progress", d->progress);
	disk_put(d);
	return ret;
}

static int store_ctl(struct service *s, void *obj, const char *value,
		     svc_interrupted_fn intr, void *ctx)
{
	struct disk_obj *d = obj;
	int ret;

	(void)intr;
	if (strcmp(value, "check") == 0) {
		ret = refuse_for_caller(s, d, ctx, "check", O_RDONLY);
		return ret ? ret : disk_check(s, d);
	}
	if (strcmp(value, "compact") == 0 || strcmp(value, "merge") == 0)
		return disk_fail(s, d, -EINVAL, "ctl: '%s' is not available yet", value);
	return disk_fail(s, d, -EINVAL, "ctl: unknown command '%s'; disks take: check", value);
}

static int show_progress(struct service *s, void *obj, FILE *out)
{
	(void)s;
	fprintf(out, "%s\n", ((struct disk_obj *)obj)->progress);
	return 0;
}

static int show_error(struct service *s, void *obj, FILE *out)
{
	struct disk_obj *d = obj;

	(void)s;
	if (d->error[0])
		fprintf(out, "%s\n", d->error);
	return 0;
}

/* ---- data ------------------------------------------------------------- */

static int data_open(struct service *s, void *obj, int acc, const struct svc_caller *who)
{
	struct vdisk_open_opts o;
	struct disk_obj *d = obj;
	struct vm_obj *vm;
	char why[512];
	int ret;

	if (!d->file)
		return disk_fail(s, d, -EINVAL, "data: the disk has no file yet");
	vm = disk_user(s, d->name, NULL);
	/* A saved VM's disk may be read (a backup), not changed. */
	if ((vm && (vm_is_active(vm) || vm->busy ||
		    (vm->state == VMS_SAVED && acc != O_RDONLY))) || d->busy)
		return disk_fail(s, d, -EBUSY, "data: %s",
				 busy_reason(s, d, why, sizeof(why)) ? why : "in use");
	if (d->adopted) {
		ret = svc_caller_may_open(s, who, d->file, acc);
		if (ret)
			return disk_fail(s, d, -EACCES,
					 "data: %s is a host file that you could not open %s yourself, so it is not served to you (%s)",
					 d->file, acc == O_RDONLY ? "for reading" :
					 acc == O_WRONLY ? "for writing" : "for reading and writing",
					 strerror(-ret));
	}
	if (!d->data) {
		/* Read-write when we may: the disk is ours while no VM runs. */
		o = (struct vdisk_open_opts){ .format = d->format };
		o.read_only = access(d->file, W_OK) < 0;
		ret = vdisk_open(d->file, &o, &d->data, why, sizeof(why));
		if (ret)
			return disk_fail(s, d, ret == -ENOENT ? -ENOENT : -EIO, "data: %s", why);
		d->data_rw = !o.read_only;
	}
	d->data_users++;
	d->refs++;		/* the open keeps the disk */
	return 0;
}

static void data_close(struct service *s, void *obj)
{
	struct disk_obj *d = obj;

	if (--d->data_users == 0) {
		pthread_mutex_lock(&d->data_lock);
		if (vdisk_close(d->data))
			log_error("disk %s: closing %s failed; run fsvisor disk check", d->name,
				  d->file);
		d->data = NULL;
		pthread_mutex_unlock(&d->data_lock);
		svc_notify(s, SVC_CHANGED, "disks/%s/used", d->name);
	}
	disk_put(d);
}

static uint64_t data_size(void *obj)
{
	struct disk_obj *d = obj;

	return d->file ? d->size : 0;
}

static ssize_t data_read(void *obj, uint64_t off, void *buf, size_t len)
{
	struct disk_obj *d = obj;
	int ret;

	if (off >= d->size)
		return 0;
	if (len > d->size - off)
		len = (size_t)(d->size - off);
	pthread_mutex_lock(&d->data_lock);
	ret = vdisk_pread(d->data, buf, len, off);
	pthread_mutex_unlock(&d->data_lock);
	return ret ? ret : (ssize_t)len;
}

static ssize_t data_write(void *obj, uint64_t off, const void *buf, size_t len)
{
	struct disk_obj *d = obj;
	int ret;

	if (!d->data_rw)
		return -EROFS;
	/* Like a block device: the end is the end. */
	if (off >= d->size)
		return len ? -ENOSPC : 0;
	if (len > d->size - off)
		len = (size_t)(d->size - off);
	pthread_mutex_lock(&d->data_lock);
	ret = vdisk_pwrite(d->data, buf, len, off);
	pthread_mutex_unlock(&d->data_lock);
	return ret ? ret : (ssize_t)len;
}

static int data_flush(void *obj)
{
	struct disk_obj *d = obj;
	int ret;

	pthread_mutex_lock(&d->data_lock);
	ret = d->data ? vdisk_flush(d->data) : 0;
	pthread_mutex_unlock(&d->data_lock);
	return ret;
}

/* Like a block device: O_TRUNC is a no-op, the size is fixed. */
static int data_truncate(struct service *s, void *obj, uint64_t size)
{
	struct disk_obj *d = obj;

	if (size != 0 && size != d->size)
		return disk_fail(s, d, -EINVAL,
				 "data: the size is set through 'size', not by truncating");
	return 0;
}

static const struct data_ops disk_data = {
	.open = data_open,
	.close = data_close,
	.size = data_size,
	.read = data_read,
	.write = data_write,
	.flush = data_flush,
	.truncate = data_truncate,
};

/* ---- the kinds of directory ---------------------------------------------- */

static const struct attr disk_attrs[] = {
	{ "size", A_READ | A_WRITE, show_size, store_size },
	{ "type", A_READ | A_WRITE, show_type, store_type },
	{ "format", A_READ | A_WRITE, show_format, store_format },
	{ "file", A_READ | A_WRITE, show_file, store_file },
	{ "used", A_READ | A_VOLATILE, show_used },
	{ "ctl", A_WRITE | A_CTL, NULL, store_ctl },
	{ "progress", A_READ | A_VOLATILE, show_progress },	/* moves during an operation */
	{ "error", A_READ, show_error },
	{ "data", A_READ | A_WRITE, .data = &disk_data },
};

static void disk_hold(void *obj)
{
	((struct disk_obj *)obj)->refs++;
}

static void disk_release(void *obj)
{
	disk_put(obj);
}

static int disk_rmdir(struct service *s, void *obj)
{
	return disk_delete(s, obj);
}

static int disk_refused(struct service *s, void *obj, int err, const char *msg)
{
	return disk_fail(s, (struct disk_obj *)obj, err, "%s", msg);
}

static struct timespec disk_mtime(void *obj)
{
	return ((struct disk_obj *)obj)->mtime;
}

static const struct tree_kind disk_kind = {
	.name = "disk",
	.attrs = disk_attrs,
	.nattrs = ARRAY_SIZE(disk_attrs),
	.hold = disk_hold,
	.put = disk_release,
	.rmdir = disk_rmdir,
	.fail = disk_refused,
	.mtime = disk_mtime,
};

static void *disks_lookup(struct service *s, void *parent, const char *name, void *local)
{
	(void)parent;
	(void)local;
	return disk_find(s, name);
}

static int disks_list(struct service *s, void *parent, tree_each_fn fn, void *ctx)
{
	(void)parent;
	for (size_t i = 0; i < s->ndisks; i++)
		if (fn(ctx, s->disks[i]->name, s->disks[i]))
			return 1;
	return 0;
}

static size_t disks_count(struct service *s, void *parent)
{
	(void)parent;
	return s->ndisks;
}

static int disks_mkdir(struct service *s, void *parent, const char *name)
{
	(void)parent;
	return disk_define(s, name);
}

static const struct tree_child disks_children[] = {
	{ TREE_SET, &disk_kind, .lookup = disks_lookup, .list = disks_list,
	  .count = disks_count, .mkdir = disks_mkdir },
};

const struct tree_kind disks_kind = {
	.name = "disks",
	.children = disks_children,
	.nchildren = ARRAY_SIZE(disks_children),
};
