// SPDX-License-Identifier: MIT
/*
 * The generic tree: paths resolved by walking the kinds of directory
 * (tree.h) from the root, and the directory operations fsapi maps file
 * system requests to.  Nothing here knows any particular kind: what a
 * directory holds, and what its mkdir, rmdir, links and files do, is in
 * its kind's declaration next to its object's code.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "service/internal.h"

/* ---- resolving ------------------------------------------------------------ */

static const struct attr *find_attr(const struct tree_kind *k, const char *name)
{
	for (size_t i = 0; i < k->nattrs; i++)
		if (strcmp(k->attrs[i].name, name) == 0)
			return &k->attrs[i];
	return NULL;
}

static void push(struct tree_node *n, const struct tree_kind *k, void *obj, const char *name)
{
	struct tree_level *l = &n->lv[n->depth++];

	l->kind = k;
	l->obj = obj;
	l->name = name;
}

/* Step from the directory @n ends in to its entry @name; 0 or -ENOENT. */
static int step(struct service *s, struct tree_node *n, const char *name)
{
	struct tree_level *dir = &n->lv[n->depth - 1];
	const struct tree_kind *k = dir->kind;
	char target[8];

	n->attr = find_attr(k, name);
	if (n->attr)
		return 0;
	for (size_t i = 0; i < k->nchildren; i++) {
		const struct tree_child *c = &k->children[i];

		if (c->type == TREE_DIR && strcmp(c->name, name) == 0) {
			push(n, c->kind, c->object ? c->object(s, dir->obj) : dir->obj, name);
			return 0;
		}
	}
	for (size_t i = 0; i < k->nchildren; i++) {
		const struct tree_child *c = &k->children[i];
		void *obj;

		if (c->type == TREE_FILES) {
			obj = c->lookup(s, dir->obj, name, n->file_local);
			if (obj) {
				n->attr = c->file;
				n->files = c;
				n->file_name = name;
				n->file_obj = obj;
				return 0;
			}
		} else if (c->type == TREE_SET) {
			obj = c->lookup(s, dir->obj, name, n->lv[n->depth].local);
			if (obj) {
				push(n, c->kind, obj, name);
				return 0;
			}
		} else if (c->type == TREE_LINKS &&
			   c->readlink(s, dir->obj, name, target, sizeof(target)) == 0) {
			n->links = c;
			n->link_name = name;
			return 0;
		}
	}
	return -ENOENT;
}

int tree_resolve(struct service *s, const char *path, struct tree_node *n)
{
	char *p;

	n->depth = 0;
	n->attr = NULL;
	n->links = NULL;
	n->link_name = NULL;
	n->files = NULL;
	n->file_name = NULL;
	n->file_obj = NULL;
	n->held = false;
	if (strlen(path) >= sizeof(n->path))
		return -ENOENT;
	strcpy(n->path, path);
	push(n, &root_kind, NULL, "");
	p = n->path;
	while (*p) {
		char *end = strchr(p, '/');

		if (end)
			*end = '\0';
		/* Nothing is below a file or a link; nothing is empty; the tree has a floor. */
		if (!*p || n->attr || n->links || n->depth == TREE_DEPTH)
			return -ENOENT;
		if (step(s, n, p))
			return -ENOENT;
		if (!end)
			break;
		p = end + 1;
	}
	return 0;
}

void tree_hold(struct tree_node *n)
{
	for (int i = 0; i < n->depth; i++)
		if (n->lv[i].kind->hold)
			n->lv[i].kind->hold(n->lv[i].obj);
	n->held = true;
}

void tree_release(struct tree_node *n)
{
	if (!n->held)
		return;
	for (int i = n->depth - 1; i >= 0; i--)
		if (n->lv[i].kind->put)
			n->lv[i].kind->put(n->lv[i].obj);
	n->held = false;
}

/* ---- refusals ------------------------------------------------------------- */

int tree_refuse(struct service *s, struct tree_node *n, int err, const char *op,
		const char *why)
{
	char msg[ERROR_MAX];
	size_t len = 0;
	int at = n->depth - 1;

	/* The nearest directory that records refusals; the path below it names the file. */
	while (at > 0 && !n->lv[at].kind->fail)
		at--;
	msg[0] = '\0';
	for (int i = at + 1; i < n->depth; i++)
		len += (size_t)snprintf(msg + len, sizeof(msg) - len, "%s/", n->lv[i].name);
	if (n->attr || n->links)
		len += (size_t)snprintf(msg + len, sizeof(msg) - len, "%s",
					n->attr ? tree_file_name(n) : n->link_name);
	else if (len)
		msg[--len] = '\0';	/* the directory itself: no trailing slash */
	if (len >= sizeof(msg))
		len = sizeof(msg) - 1;
	snprintf(msg + len, sizeof(msg) - len, "%s%s%s%s", len ? ": " : "", op ? op : "",
		 op ? ": " : "", why);
	if (n->lv[at].kind->fail)
		return n->lv[at].kind->fail(s, n->lv[at].obj, err, msg);
	log_warn("%s: %s", n->path[0] ? n->path : "/", msg);
	return err;
}

/* ---- attributes ----------------------------------------------------------- */

static mode_t file_mode(const struct service *s, const struct attr *a)
{
	mode_t m = 0;

	if (a->flags & A_READ)
		m |= 0400;
	if (a->flags & A_WRITE)
		m |= 0200;
	return s->group_access ? m | (m >> 3) : m;
}

static mode_t dir_mode(const struct service *s)
{
	return s->group_access ? 0770 : 0700;
}

int tree_value(struct service *s, const struct attr *a, void *obj, char **text,
	       size_t *len)
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

static void file_stat(struct service *s, struct tree_node *n, struct svc_stat *st)
{
	const struct attr *a = n->attr;
	void *obj = tree_obj(n);

	st->kind = SVC_FILE;
	st->nlink = 1;
	st->mode = file_mode(s, a);
	st->volatile_attrs = (a->flags & A_VOLATILE) || a->log;
	st->cacheable = tree_cacheable(a);
	/*
	 * Volatile values change without a notification, but their times are
	 * kept steady (the object's, or when a log last grew), so that tar,
	 * rsync and make see a file change only when it did.
	 */
	if (a->log) {
		st->size = a->log->size(s, obj, &st->mtime);
	} else if (a->data) {
		st->size = a->data->size(obj);
	} else if ((a->flags & A_READ) && !(a->flags & A_CTL)) {
		char *text;
		size_t len;

		if (tree_value(s, a, obj, &text, &len) == 0) {
			st->size = len;
			free(text);
		}
	}
}

/* How many subdirectories the directory @n ends in has. */
static unsigned int subdirs(struct service *s, struct tree_node *n)
{
	const struct tree_kind *k = n->lv[n->depth - 1].kind;
	void *obj = tree_obj(n);
	unsigned int count = 0;

	for (size_t i = 0; i < k->nchildren; i++) {
		if (k->children[i].type == TREE_DIR)
			count++;
		else if (k->children[i].type == TREE_SET)
			count += (unsigned int)k->children[i].count(s, obj);
	}
	return count;
}

void tree_stat(struct service *s, struct tree_node *n, struct svc_stat *st)
{
	memset(st, 0, sizeof(*st));
	st->uid = s->uid;
	st->gid = s->gid;
	st->mtime = s->started;
	for (int i = n->depth - 1; i >= 0; i--) {
		if (n->lv[i].kind->mtime) {
			st->mtime = n->lv[i].kind->mtime(n->lv[i].obj);
			break;
		}
	}
	if (n->attr) {
		file_stat(s, n, st);
	} else if (n->links) {
		char target[512] = "";

		n->links->readlink(s, tree_obj(n), n->link_name, target, sizeof(target));
		st->kind = SVC_LINK;
		st->nlink = 1;
		st->mode = 0777;
		st->size = strlen(target);
	} else {
		st->kind = SVC_DIR;
		st->nlink = 2 + subdirs(s, n);
		st->mode = dir_mode(s);
	}
}

/* ---- the operations --------------------------------------------------------- */

int service_stat(struct service *s, const char *path, struct svc_stat *st)
{
	struct tree_node n;
	int ret;

	svc_lock(s);
	ret = tree_resolve(s, path, &n);
	if (!ret) {
		tree_hold(&n);
		tree_stat(s, &n, st);
		tree_release(&n);
	}
	svc_unlock(s);
	return ret;
}

struct listing {
	struct service *s;
	struct tree_node *n;
	const struct tree_child *child;
	svc_dirent_fn fn;
	void *ctx;
};

static int list_entry(void *arg, const char *name, void *obj)
{
	struct listing *l = arg;
	struct tree_node *n = l->n;
	struct svc_stat st;
	int ret;

	if (l->child->type == TREE_LINKS) {
		n->links = l->child;
		n->link_name = name;
		tree_stat(l->s, n, &st);
		n->links = NULL;
		return l->fn(l->ctx, name, &st);
	}
	if (l->child->type == TREE_FILES) {
		n->attr = l->child->file;
		n->files = l->child;
		n->file_name = name;
		n->file_obj = obj;
		tree_stat(l->s, n, &st);
		n->attr = NULL;
		n->files = NULL;
		return l->fn(l->ctx, name, &st);
	}
	push(n, l->child->kind, obj, name);
	tree_stat(l->s, n, &st);
	n->depth--;
	ret = l->fn(l->ctx, name, &st);
	return ret;
}

int service_readdir(struct service *s, const char *path, svc_dirent_fn fn, void *ctx)
{
	struct svc_stat st;
	struct tree_node n;
	const struct tree_kind *k;
	void *obj;
	int ret;

	svc_lock(s);
	ret = tree_resolve(s, path, &n);
	if (ret)
		goto out;
	if (n.attr || n.links) {
		ret = -ENOTDIR;
		goto out;
	}
	tree_hold(&n);
	k = n.lv[n.depth - 1].kind;
	obj = tree_obj(&n);
	/* Files first, then subdirectories, then the collection's entries. */
	for (size_t i = 0; i < k->nattrs; i++) {
		n.attr = &k->attrs[i];
		tree_stat(s, &n, &st);
		n.attr = NULL;
		if (fn(ctx, k->attrs[i].name, &st))
			goto done;
	}
	for (size_t i = 0; i < k->nchildren; i++) {
		const struct tree_child *c = &k->children[i];

		if (c->type != TREE_DIR)
			continue;
		push(&n, c->kind, c->object ? c->object(s, obj) : obj, c->name);
		tree_stat(s, &n, &st);
		n.depth--;
		if (fn(ctx, c->name, &st))
			goto done;
	}
	for (size_t i = 0; i < k->nchildren; i++) {
		struct listing l = { .s = s, .n = &n, .child = &k->children[i], .fn = fn,
				     .ctx = ctx };

		if (l.child->type != TREE_DIR && l.child->list(s, obj, list_entry, &l))
			break;
	}
done:
	tree_release(&n);
out:
	svc_unlock(s);
	return ret;
}

int service_readlink(struct service *s, const char *path, char *buf, size_t len)
{
	struct tree_node n;
	int ret;

	svc_lock(s);
	ret = tree_resolve(s, path, &n);
	if (!ret && !n.links)
		ret = -EINVAL;
	if (!ret)
		ret = n.links->readlink(s, tree_obj(&n), n.link_name, buf, len);
	svc_unlock(s);
	return ret;
}

/* The parent of @path and its last component. */
static int split_last(const char *path, char *parent, size_t plen, const char **last)
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

/* The child of the directory @n ends in that is a @type with hook @want. */
static const struct tree_child *child_of(struct tree_node *n, enum tree_child_type type)
{
	const struct tree_kind *k = n->lv[n->depth - 1].kind;

	if (n->attr || n->links)
		return NULL;
	for (size_t i = 0; i < k->nchildren; i++)
		if (k->children[i].type == type)
			return &k->children[i];
	return NULL;
}

/* mkdir (@type TREE_SET) or symlink (TREE_LINKS, to @target): the parent's hook. */
static int add_child(struct service *s, const char *path, enum tree_child_type type,
		     const char *target)
{
	bool dir = type == TREE_SET;
	const struct tree_child *c;
	char parent[512];
	const char *name;
	struct tree_node n;
	int ret;

	if (split_last(path, parent, sizeof(parent), &name))
		return -ENAMETOOLONG;
	svc_lock(s);
	ret = tree_resolve(s, parent, &n);
	if (ret)
		goto out;
	c = child_of(&n, type);
	if (!c || (dir ? !c->mkdir : !c->symlink)) {
		ret = -EPERM;
		log_warn("%s %s: %s/ takes no %s", dir ? "mkdir" : "symlink", path, parent,
			 dir ? "new directories" : "links");
		goto out;
	}
	if (dir && name_problem(name)) {
		log_warn("mkdir %s: %s", path, name_problem(name));
		ret = -EINVAL;
		goto out;
	}
	tree_hold(&n);
	ret = dir ? c->mkdir(s, tree_obj(&n), name) : c->symlink(s, tree_obj(&n), name, target);
	tree_release(&n);
	if (!ret)
		svc_notify(s, SVC_ADDED, "%s", path);
out:
	svc_unlock(s);
	return ret;
}

int service_mkdir(struct service *s, const char *path)
{
	return add_child(s, path, TREE_SET, NULL);
}

int service_rmdir(struct service *s, const char *path)
{
	const struct tree_kind *k;
	struct tree_node n;
	int ret;

	svc_lock(s);
	ret = tree_resolve(s, path, &n);
	if (ret)
		goto out;
	if (n.attr || n.links) {
		ret = -ENOTDIR;
		goto out;
	}
	k = n.lv[n.depth - 1].kind;
	if (!k->rmdir) {
		ret = -EPERM;
		goto out;
	}
	/* Its parents are held; the object itself is the hook's to free. */
	n.depth--;
	tree_hold(&n);
	n.depth++;
	ret = k->rmdir(s, tree_obj(&n));
	n.depth--;
	tree_release(&n);
	if (!ret)
		svc_notify(s, SVC_REMOVED, "%s", path);
out:
	svc_unlock(s);
	return ret;
}

int service_symlink(struct service *s, const char *target, const char *path)
{
	return add_child(s, path, TREE_LINKS, target);
}

int service_unlink(struct service *s, const char *path, const struct svc_caller *who)
{
	struct tree_node n;
	int ret;

	svc_lock(s);
	ret = tree_resolve(s, path, &n);
	if (ret)
		goto out;
	if (n.links) {
		ret = n.links->unlink ? n.links->unlink(s, tree_obj(&n), n.link_name, who)
				      : -EPERM;
	} else if (n.files && n.files->unlink) {
		tree_hold(&n);
		ret = n.files->unlink(s, n.lv[n.depth - 1].obj, n.file_name, who);
		tree_release(&n);
	} else if (n.attr) {
		for (int i = 0; i < n.depth; i++)
			if (n.lv[i].kind->removal_refused)
				n.lv[i].kind->removal_refused(n.lv[i].obj, who);
		ret = tree_refuse(s, &n, -EPERM, "rm",
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

int service_create(struct service *s, const char *path, const struct svc_caller *who)
{
	const struct tree_child *c;
	char parent[512];
	const char *name;
	struct tree_node n;
	int ret;

	if (split_last(path, parent, sizeof(parent), &name))
		return -ENAMETOOLONG;
	svc_lock(s);
	ret = tree_resolve(s, parent, &n);
	if (ret)
		goto out;
	c = child_of(&n, TREE_FILES);
	tree_hold(&n);
	if (!c || !c->create) {
		/* As before there were collections of files: the tree's names are the service's. */
		ret = tree_refuse(s, &n, -EPERM, "creating a file",
				  "the tree's names are the service's to make");
	} else {
		ret = c->create(s, tree_obj(&n), name, who);
	}
	tree_release(&n);
	if (!ret)
		svc_notify(s, SVC_ADDED, "%s", path);
out:
	svc_unlock(s);
	return ret;
}

int service_setattr(struct service *s, const char *path, mode_t mode, uid_t uid,
		    gid_t gid)
{
	struct svc_stat st;
	struct tree_node n;
	char why[256];
	int ret;

	svc_lock(s);
	ret = tree_resolve(s, path, &n);
	if (ret)
		goto out;
	tree_hold(&n);
	tree_stat(s, &n, &st);
	if (mode != (mode_t)-1 && (mode & 07777) != (st.mode & 07777)) {
		snprintf(why, sizeof(why),
			 "modes are the service's (this is %04o; the tree's modes follow who may do what, see docs/filesystem.md)",
			 (unsigned int)st.mode & 07777);
		ret = tree_refuse(s, &n, -EPERM, "chmod", why);
	} else if ((uid != (uid_t)-1 && uid != st.uid) || (gid != (gid_t)-1 && gid != st.gid)) {
		snprintf(why, sizeof(why),
			 "owners are the service's (this belongs to %u:%u, the mount's owner and group)",
			 (unsigned int)st.uid, (unsigned int)st.gid);
		ret = tree_refuse(s, &n, -EPERM, "chown", why);
	}
	tree_release(&n);
out:
	svc_unlock(s);
	return ret;
}

int service_refuse(struct service *s, const char *path, const char *what)
{
	char parent[512];
	const char *name;
	struct tree_node n;
	int ret;

	svc_lock(s);
	/* The object of the path, or of its directory for what is not there yet. */
	if (tree_resolve(s, path, &n) != 0 &&
	    (split_last(path, parent, sizeof(parent), &name) || tree_resolve(s, parent, &n) != 0))
		tree_resolve(s, "", &n);
	tree_hold(&n);
	ret = tree_refuse(s, &n, -EPERM, what, "the tree's names are the service's to make");
	tree_release(&n);
	svc_unlock(s);
	return ret;
}

int service_truncate(struct service *s, const char *path, uint64_t size)
{
	struct tree_node n;
	int ret;

	svc_lock(s);
	ret = tree_resolve(s, path, &n);
	if (ret)
		goto out;
	if (!n.attr)
		ret = -EISDIR;
	else if (!(n.attr->flags & A_WRITE))
		ret = -EACCES;
	else if (n.attr->data)
		ret = n.attr->data->truncate(s, tree_obj(&n), size);
	else if (size != 0)
		ret = -EINVAL;
out:
	svc_unlock(s);
	return ret;
}
