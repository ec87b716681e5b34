// SPDX-License-Identifier: MIT
/*
 * The FUSE requests: each one turns an inode number into the service's
 * path, asks the service, and answers.  Files are opened with direct I/O
 * (their size is not known until they are read, and a read must always
 * see the current value); names and stable attributes are cached by the
 * kernel until the service says they changed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsapi/internal.h"
#include "util/util.h"

static struct fsapi *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void to_stat(const struct svc_stat *st, fuse_ino_t ino, struct stat *out)
{
	memset(out, 0, sizeof(*out));
	out->st_ino = ino;
	out->st_mode = st->mode | (st->kind == SVC_DIR ? S_IFDIR :
				   st->kind == SVC_LINK ? S_IFLNK : S_IFREG);
	out->st_nlink = st->nlink;
	out->st_uid = st->uid;
	out->st_gid = st->gid;
	out->st_size = (off_t)st->size;
	out->st_blksize = 4096;
	out->st_blocks = (blkcnt_t)((st->size + 511) / 512);
	out->st_mtim = st->mtime;
	out->st_ctim = st->mtime;
	out->st_atim = st->mtime;
}

static char *join(const char *parent, const char *name)
{
	char *p;

	if (asprintf(&p, "%s%s%s", parent, parent[0] ? "/" : "", name) < 0)
		return NULL;
	return p;
}

/* Path of @parent + "/" + @name, or NULL after answering the error. */
static char *child_path(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	char *dir = inode_path(&fs_of(req)->inodes, parent), *p;

	if (!dir) {
		fuse_reply_err(req, ESTALE);
		return NULL;
	}
	p = join(dir, name);
	free(dir);
	if (!p)
		fuse_reply_err(req, ENOMEM);
	return p;
}

static char *node_path(fuse_req_t req, fuse_ino_t ino)
{
	char *p = inode_path(&fs_of(req)->inodes, ino);

	if (!p)
		fuse_reply_err(req, ESTALE);
	return p;
}

/*
 * The caller of @req.  Supplementary groups are looked up (a read of
 * /proc) only for callers other than the mount's owner, the only ones
 * whose rights the service checks.
 */
static void caller_of(fuse_req_t req, struct svc_caller *who, gid_t *groups, int max)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);

	who->pid = c->pid;
	who->uid = c->uid;
	who->gid = c->gid;
	who->groups = groups;
	who->ngroups = 0;
	if (c->uid != geteuid()) {
		int n = fuse_req_getgroups(req, max, groups);

		who->ngroups = n < 0 ? -1 : n > max ? max : n;
	}
}

/* Fill @e for @path (adding one lookup); 0 or a negative errno. */
static int make_entry(struct fsapi *fs, const char *path, const struct svc_stat *st,
		      struct fuse_entry_param *e)
{
	struct inode *n = inode_get(&fs->inodes, path, 1);

	if (!n)
		return -ENOMEM;
	memset(e, 0, sizeof(*e));
	e->ino = n->ino;
	e->generation = 1;
	to_stat(st, n->ino, &e->attr);
	e->attr_timeout = st->volatile_attrs ? 0 : ATTR_TTL;
	e->entry_timeout = ENTRY_TTL;
	return 0;
}

static void reply_entry(fuse_req_t req, const char *path)
{
	struct fsapi *fs = fs_of(req);
	struct fuse_entry_param e;
	struct svc_stat st;
	int ret = service_stat(fs->svc, path, &st);

	if (!ret)
		ret = make_entry(fs, path, &st, &e);
	if (ret)
		fuse_reply_err(req, -ret);
	else if (fuse_reply_entry(req, &e) == -ENOENT)
		inode_forget(&fs->inodes, e.ino, 1);	/* the caller went away */
}

/* ---- names ------------------------------------------------------------- */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	char *path = child_path(req, parent, name);

	if (!path)
		return;
	reply_entry(req, path);
	free(path);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	inode_forget(&fs_of(req)->inodes, ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		inode_forget(&fs_of(req)->inodes, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct svc_stat st;
	struct stat out;
	char *path = node_path(req, ino);
	int ret;

	(void)fi;
	if (!path)
		return;
	ret = service_stat(fs_of(req)->svc, path, &st);
	free(path);
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	to_stat(&st, ino, &out);
	fuse_reply_attr(req, &out, st.volatile_attrs ? 0 : ATTR_TTL);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	char *path = node_path(req, ino);
	int ret = 0;

	if (!path)
		return;
	/* Modes and owners are the service's: only a change to what they are succeeds. */
	if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
		ret = service_setattr(fs_of(req)->svc, path,
				      to_set & FUSE_SET_ATTR_MODE ? attr->st_mode : (mode_t)-1,
				      to_set & FUSE_SET_ATTR_UID ? attr->st_uid : (uid_t)-1,
				      to_set & FUSE_SET_ATTR_GID ? attr->st_gid : (gid_t)-1);
	if (!ret && (to_set & FUSE_SET_ATTR_SIZE))
		ret = service_truncate(fs_of(req)->svc, path, (uint64_t)attr->st_size);
	free(path);
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	/* Times are accepted and ignored: `touch` works, nothing changes. */
	op_getattr(req, ino, fi);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char *path = node_path(req, ino), buf[512];
	int ret;

	if (!path)
		return;
	ret = service_readlink(fs_of(req)->svc, path, buf, sizeof(buf));
	free(path);
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_readlink(req, buf);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	char *path = child_path(req, parent, name);
	int ret;

	(void)mode;
	if (!path)
		return;
	ret = service_mkdir(fs_of(req)->svc, path);
	notifier_barrier(fs_of(req));
	if (ret)
		fuse_reply_err(req, -ret);
	else
		reply_entry(req, path);
	free(path);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	char *path = child_path(req, parent, name);
	int ret;

	if (!path)
		return;
	ret = service_rmdir(fs_of(req)->svc, path);
	notifier_barrier(fs_of(req));
	fuse_reply_err(req, -ret);
	free(path);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	char *path = child_path(req, parent, name);
	int ret;

	if (!path)
		return;
	ret = service_symlink(fs_of(req)->svc, link, path);
	notifier_barrier(fs_of(req));
	if (ret)
		fuse_reply_err(req, -ret);
	else
		reply_entry(req, path);
	free(path);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	char *path = child_path(req, parent, name);
	struct svc_caller who;
	gid_t groups[64];
	int ret;

	if (!path)
		return;
	caller_of(req, &who, groups, 64);
	ret = service_unlink(fs_of(req)->svc, path, &who);
	notifier_barrier(fs_of(req));
	fuse_reply_err(req, -ret);
	free(path);
}

/*
 * New files, hard links, renames, devices: the tree is the service's.
 * Each refusal is recorded like any other (in the object's error).
 */
static void refuse_at(fuse_req_t req, fuse_ino_t parent, const char *name,
		      const char *what)
{
	char *path = name ? child_path(req, parent, name) : node_path(req, parent);

	if (!path)
		return;
	fuse_reply_err(req, -service_refuse(fs_of(req)->svc, path, what));
	free(path);
}


static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	(void)mode;
	(void)rdev;
	refuse_at(req, parent, name, "mknod");
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	(void)newparent;
	(void)newname;
	refuse_at(req, ino, NULL, "ln (hard link)");
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	(void)newparent;
	(void)newname;
	(void)flags;
	refuse_at(req, parent, name, "rename");
}

/* ---- files ------------------------------------------------------------ */

/*
 * Open @path (inode @ino) and answer: with the open file, or with the
 * entry @e too when the open created it.  Frees @path.
 */
static void open_path(fuse_req_t req, char *path, fuse_ino_t ino, struct fuse_file_info *fi,
		      const struct fuse_entry_param *e)
{
	struct fsapi *fs = fs_of(req);
	struct handle *h;
	int ret, sent;

	h = calloc(1, sizeof(*h));
	if (!h) {
		free(path);
		if (e)
			inode_forget(&fs->inodes, e->ino, 1);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	{
		struct svc_caller who;
		gid_t groups[64];

		caller_of(req, &who, groups, 64);
		ret = service_open_file(fs->svc, path, fi->flags, &who, &h->file);
	}
	free(path);
	if (ret) {
		free(h);
		if (e)
			inode_forget(&fs->inodes, e->ino, 1);
		fuse_reply_err(req, -ret);
		return;
	}
	h->ino = ino;
	h->sync = (fi->flags & (O_SYNC | O_DSYNC)) != 0;
	pthread_mutex_lock(&fs->lock);
	h->next = fs->handles.next;
	h->prev = &fs->handles;
	fs->handles.next->prev = h;
	fs->handles.next = h;
	pthread_mutex_unlock(&fs->lock);
	fi->fh = (uint64_t)(uintptr_t)h;
	/*
	 * Stable values opened for reading are served from the page cache,
	 * kept across opens: the notifier drops it when the value changes.
	 * Everything else goes to the service on every read (volatile values,
	 * logs, data) or write (so no write fills the page cache).
	 */
	if (service_file_cacheable(h->file)) {
		fi->direct_io = 0;
		fi->keep_cache = 1;
	} else {
		fi->direct_io = 1;
		fi->keep_cache = 0;
	}
	fi->noflush = 1;	/* close() needs no round trip */
	sent = e ? fuse_reply_create(req, e, fi) : fuse_reply_open(req, fi);
	if (sent == -ENOENT) {
		/* The opener went away before it got the file. */
		if (e)
			inode_forget(&fs->inodes, e->ino, 1);
		pthread_mutex_lock(&fs->lock);
		h->prev->next = h->next;
		h->next->prev = h->prev;
		pthread_mutex_unlock(&fs->lock);
		service_close_file(h->file);
		free(h);
	}
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	char *path = node_path(req, ino);

	if (path)
		open_path(req, path, ino, fi, NULL);
}

/*
 * A new file: only a collection of files makes one (kvp/host/KEY);
 * everywhere else the service refuses it, as before.
 */
static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	struct fsapi *fs = fs_of(req);
	char *path = child_path(req, parent, name);
	struct fuse_entry_param e;
	struct svc_caller who;
	struct svc_stat st;
	gid_t groups[64];
	int ret;

	(void)mode;
	if (!path)
		return;
	caller_of(req, &who, groups, 64);
	ret = service_create(fs->svc, path, &who);
	notifier_barrier(fs);
	if (!ret)
		ret = service_stat(fs->svc, path, &st);
	if (!ret)
		ret = make_entry(fs, path, &st, &e);
	if (ret) {
		free(path);
		fuse_reply_err(req, -ret);
		return;
	}
	open_path(req, path, e.ino, fi, &e);
}

static struct handle *handle_of(struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct handle *h = handle_of(fi);
	char *buf = malloc(size ? size : 1);
	ssize_t n;

	(void)ino;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = service_read(h->file, (uint64_t)off, buf, size);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static bool req_interrupted(void *ctx)
{
	return fuse_req_interrupted(ctx);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		     off_t off, struct fuse_file_info *fi)
{
	struct handle *h = handle_of(fi);
	struct svc_caller who;
	gid_t groups[64];
	ssize_t n;

	(void)ino;
	caller_of(req, &who, groups, 64);
	n = service_write(h->file, (uint64_t)off, buf, size, &who, req_interrupted, req);
	/* What the write changed is told to the kernel before it returns. */
	notifier_barrier(fs_of(req));
	/*
	 * O_SYNC/O_DSYNC (from open(), or RWF_DSYNC on this one write, which
	 * the kernel passes in the write's flags): the write is answered
	 * once it is durable, as on any file system.
	 */
	if (n > 0 && (h->sync || (fi->flags & (O_SYNC | O_DSYNC)))) {
		int ret = service_flush_file(h->file);

		if (ret)
			n = ret;
	}
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	fuse_reply_err(req, -service_flush_file(handle_of(fi)->file));
}

/* Directories hold nothing to flush; answered so that the kernel keeps asking. */
static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fsapi *fs = fs_of(req);
	struct handle *h = handle_of(fi);

	(void)ino;
	pthread_mutex_lock(&fs->lock);
	h->prev->next = h->next;
	h->next->prev = h->prev;
	if (h->ph)
		fuse_pollhandle_destroy(h->ph);
	pthread_mutex_unlock(&fs->lock);
	service_close_file(h->file);
	free(h);
	fuse_reply_err(req, 0);
}

static void op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		    struct fuse_pollhandle *ph)
{
	struct fsapi *fs = fs_of(req);
	struct handle *h = handle_of(fi);
	unsigned int revents;

	(void)ino;
	/* Armed before looking, so a change in between still wakes it. */
	if (ph) {
		pthread_mutex_lock(&fs->lock);
		if (h->ph)
			fuse_pollhandle_destroy(h->ph);
		h->ph = ph;
		pthread_mutex_unlock(&fs->lock);
	}
	revents = service_poll(h->file);
	fuse_reply_poll(req, revents);
}

/* ---- directories -------------------------------------------------------- */

struct dir_entry {
	char *name;
	struct svc_stat st;
};

struct dir_list {
	char *path;
	struct dir_entry *e;
	size_t n, cap;
};

static int collect(void *ctx, const char *name, const struct svc_stat *st)
{
	struct dir_list *d = ctx;

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 32;
		struct dir_entry *e = realloc(d->e, cap * sizeof(*e));

		if (!e)
			return 1;
		d->e = e;
		d->cap = cap;
	}
	d->e[d->n].name = strdup(name);
	d->e[d->n].st = *st;
	if (d->e[d->n].name)
		d->n++;
	return 0;
}

static void free_list(struct dir_list *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->e[i].name);
	free(d->e);
	free(d->path);
	free(d);
}

/* The listing is taken at opendir, so that offsets stay meaningful. */
static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dir_list *d = calloc(1, sizeof(*d));
	int ret;

	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	d->path = node_path(req, ino);
	if (!d->path) {
		free(d);
		return;
	}
	ret = service_readdir(fs_of(req)->svc, d->path, collect, d);
	if (ret) {
		free_list(d);
		fuse_reply_err(req, -ret);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT)
		free_list(d);
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi, bool plus)
{
	struct fsapi *fs = fs_of(req);
	struct dir_list *d = (struct dir_list *)(uintptr_t)fi->fh;
	char *buf = malloc(size), *path;
	size_t used = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* Offsets: 0 ".", 1 "..", 2 + i the listing's entry i. */
	for (size_t i = (size_t)off; i < d->n + 2; i++) {
		struct fuse_entry_param e = { 0 };
		const char *name = i == 0 ? "." : i == 1 ? ".." : d->e[i - 2].name;
		size_t need;

		need = plus ? fuse_add_direntry_plus(req, NULL, 0, name, NULL, 0)
			    : fuse_add_direntry(req, NULL, 0, name, NULL, 0);
		if (used + need > size)
			break;
		if (i < 2) {
			/* The kernel takes no reference for these two. */
			e.attr.st_ino = i == 0 ? ino : FUSE_ROOT_ID;
			e.attr.st_mode = S_IFDIR;
		} else {
			path = join(d->path, name);
			if (!path)
				break;
			if (plus) {
				if (make_entry(fs, path, &d->e[i - 2].st, &e)) {
					free(path);
					break;
				}
			} else {
				e.attr.st_ino = inode_find(&fs->inodes, path);
				e.attr.st_mode = d->e[i - 2].st.kind == SVC_DIR ? S_IFDIR :
						 d->e[i - 2].st.kind == SVC_LINK ? S_IFLNK : S_IFREG;
			}
			free(path);
		}
		if (plus)
			used += fuse_add_direntry_plus(req, buf + used, size - used, name,
						       &e, (off_t)i + 1);
		else
			used += fuse_add_direntry(req, buf + used, size - used, name,
						  &e.attr, (off_t)i + 1);
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	readdir_common(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	readdir_common(req, ino, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	free_list((struct dir_list *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs v = { 0 };
	uint64_t blocks, bfree, bavail, files;
	uint32_t bsize;
	int ret;

	(void)ino;
	ret = service_statfs(fs_of(req)->svc, &blocks, &bfree, &bavail, &bsize, &files);
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	v.f_bsize = bsize;
	v.f_frsize = bsize;
	v.f_blocks = blocks;
	v.f_bfree = bfree;
	v.f_bavail = bavail;
	v.f_files = files;
	v.f_namemax = NAME_MAX_LEN;
	fuse_reply_statfs(req, &v);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* `>` sends O_TRUNC with the open rather than a separate truncate. */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* ls -l gets names and attributes in one go, every time. */
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

const struct fuse_lowlevel_ops fsapi_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.fsyncdir = op_fsyncdir,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.statfs = op_statfs,
	.create = op_create,
	.poll = op_poll,
};
