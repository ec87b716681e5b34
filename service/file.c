// SPDX-License-Identifier: MIT
/*
 * Open files of the tree: values (read from a snapshot, written whole),
 * logs (read at positions), data (read and written without the service
 * lock), and poll().  Which a file is comes from its struct attr.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "service/internal.h"

struct svc_file {
	struct service *s;
	char *path;
	const struct attr *attr;	/* static: outlives any object */
	bool can_write;
	bool cacheable;
	char *snap;			/* value as last read */
	size_t snap_len;
	bool snapped;
	char *base;			/* poll(): the value a change is measured from */
	size_t base_len;
	bool based;
	uint64_t log_next;		/* logs: file offset expected next */
	uint64_t log_delta;		/* ... and its distance to the log's position */
	void *data_obj;			/* data: kept by the open */
};

const char *service_file_path(const struct svc_file *f)
{
	return f->path;
}

bool service_file_cacheable(const struct svc_file *f)
{
	return f->cacheable;
}

static void set_base(struct svc_file *f, char *text, size_t len)
{
	free(f->base);
	f->base = text;
	f->base_len = len;
	f->based = true;
}

int service_open_file(struct service *s, const char *path, int flags,
		      const struct svc_caller *who, struct svc_file **out)
{
	int acc = flags & O_ACCMODE;
	const struct attr *a;
	struct svc_file *f;
	struct tree_node n;
	int ret;

	svc_lock(s);
	ret = tree_resolve(s, path, &n);
	if (ret)
		goto out;
	a = n.attr;
	if (!a) {
		ret = n.links ? -ELOOP : -EISDIR;
		goto out;
	}
	if ((acc != O_WRONLY && !(a->flags & A_READ) && !(a->flags & A_CTL)) ||
	    (acc != O_RDONLY && !(a->flags & A_WRITE))) {
		ret = -EACCES;
		goto out;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		ret = -ENOMEM;
		goto out;
	}
	f->s = s;
	f->attr = a;
	f->can_write = acc != O_RDONLY;
	tree_hold(&n);
	if (a->data) {
		ret = a->data->open(s, tree_obj(&n), acc, who);
		if (ret) {
			tree_release(&n);
			free(f);
			goto out;
		}
		f->data_obj = tree_obj(&n);
	} else if (a->show && !(a->flags & (A_VOLATILE | A_CTL))) {
		char *text;
		size_t len;

		/* poll() reports changes from here on. */
		if (tree_value(s, a, tree_obj(&n), &text, &len) == 0)
			set_base(f, text, len);
	}
	f->cacheable = tree_cacheable(a) && acc == O_RDONLY;
	tree_release(&n);
	f->path = svc_strdup(path);
	*out = f;
out:
	svc_unlock(s);
	return ret;
}

int service_flush_file(struct svc_file *f)
{
	return f->data_obj ? f->attr->data->flush(f->data_obj) : 0;
}

void service_close_file(struct svc_file *f)
{
	if (!f)
		return;
	if (f->data_obj) {
		svc_lock(f->s);
		f->attr->data->close(f->s, f->data_obj);
		svc_unlock(f->s);
	}
	free(f->snap);
	free(f->base);
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

/*
 * Logs (console, events) are read at positions in everything they ever
 * held, of which only the newest part is kept.  A reader that starts
 * before it reads on from the oldest byte kept, and its later offsets
 * follow on from there.
 */
static ssize_t read_log(struct svc_file *f, void *obj, uint64_t off, void *buf, size_t len)
{
	uint64_t pos;
	ssize_t ret;

	if (off != f->log_next)
		f->log_delta = 0;
	pos = off + f->log_delta;
	ret = f->attr->log->fetch(f->s, obj, &pos, buf, len);
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
	const struct attr *a = f->attr;
	struct tree_node n;
	ssize_t ret;

	if (f->data_obj)
		return a->data->read(f->data_obj, off, buf, len);

	svc_lock(s);
	ret = tree_resolve(s, f->path, &n);
	if (ret)
		goto out;
	tree_hold(&n);
	if (a->flags & A_CTL) {
		ret = 0;
	} else if (a->log) {
		ret = read_log(f, tree_obj(&n), off, buf, len);
	} else {
		if (off == 0 || !f->snapped) {
			char *text;
			size_t tlen;

			ret = tree_value(s, a, tree_obj(&n), &text, &tlen);
			if (ret)
				goto release;
			free(f->snap);
			f->snap = text;
			f->snap_len = tlen;
			f->snapped = true;
			/* What this reader has seen: poll() measures from it. */
			if (f->based) {
				char *copy = malloc(tlen ? tlen : 1);

				if (copy) {
					memcpy(copy, text, tlen);
					set_base(f, copy, tlen);
				}
			}
		}
		ret = copy_out(f->snap, f->snap_len, off, buf, len);
	}
release:
	tree_release(&n);
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

/* One write at a time where a directory along @n asks for it. */
static int begin_write(struct service *s, struct tree_node *n)
{
	for (int i = 0; i < n->depth; i++) {
		const struct tree_kind *k = n->lv[i].kind;
		int ret;

		if (!k->begin_write)
			continue;
		ret = k->begin_write(s, n->lv[i].obj, n->attr->name);
		if (ret) {
			while (--i >= 0)
				if (n->lv[i].kind->end_write)
					n->lv[i].kind->end_write(n->lv[i].obj);
			return ret;
		}
	}
	return 0;
}

static void end_write(struct tree_node *n)
{
	for (int i = n->depth - 1; i >= 0; i--)
		if (n->lv[i].kind->end_write)
			n->lv[i].kind->end_write(n->lv[i].obj);
}

ssize_t service_write(struct svc_file *f, uint64_t off, const void *buf,
		      size_t len, const struct svc_caller *who,
		      svc_interrupted_fn intr, void *ctx)
{
	struct svc_call call = { .intr = intr, .ctx = ctx, .who = who };
	struct service *s = f->s;
	const struct attr *a = f->attr;
	char value[VALUE_MAX + 1];
	const char *why = NULL;
	struct tree_node n;
	ssize_t ret;

	if (f->data_obj)
		return a->data->write(f->data_obj, off, buf, len);

	svc_lock(s);
	ret = tree_resolve(s, f->path, &n);
	if (ret)
		goto out;
	tree_hold(&n);
	if (a->log) {
		ret = a->log->input ? a->log->input(s, tree_obj(&n), buf, len) : -EACCES;
		goto release;
	}
	/*
	 * A value is one write at offset 0.  Anything else is a value in
	 * pieces (`dd bs=1`, two writes of one line) or `>>`, and taking a
	 * piece for the whole would store half a value.  A command is one
	 * write at any offset, so a descriptor kept open can send several.
	 */
	if (off != 0 && !(a->flags & A_CTL)) {
		char msg[160];

		snprintf(msg, sizeof(msg),
			 "a value is written whole, in one write() at offset 0 (this one came at offset %llu: a value in pieces, or '>>' where '>' is meant)",
			 (unsigned long long)off);
		ret = tree_refuse(s, &n, -EINVAL, NULL, msg);
		goto release;
	}
	ret = clean_value(buf, len, value, &why);
	if (ret) {
		tree_refuse(s, &n, (int)ret, NULL, why);
		goto release;
	}
	ret = begin_write(s, &n);
	if (ret)
		goto release;
	ret = a->store(s, tree_obj(&n), value, call_interrupted, &call);
	end_write(&n);
release:
	tree_release(&n);
out:
	svc_unlock(s);
	return ret ? ret : (ssize_t)len;
}

unsigned int service_poll(struct svc_file *f)
{
	struct service *s = f->s;
	const struct attr *a = f->attr;
	unsigned int revents = 0;
	struct tree_node n;

	if (f->data_obj || (!a->log && (a->flags & A_VOLATILE)))
		return POLLIN | (f->can_write ? POLLOUT : 0);
	svc_lock(s);
	if (tree_resolve(s, f->path, &n)) {
		svc_unlock(s);
		return POLLERR;
	}
	tree_hold(&n);
	if (a->log) {
		/* More than this handle has read (or skipped to). */
		struct timespec t;

		if (a->log->size(s, tree_obj(&n), &t) > f->log_next)
			revents = POLLIN;
	} else if (a->flags & A_CTL) {
		revents = POLLOUT;
	} else {
		char *text;
		size_t len;

		/*
		 * A change since the open, the last read that reached the
		 * service, or the last poll that reported one (reads the page
		 * cache serves do not reach the service).
		 */
		if (tree_value(s, a, tree_obj(&n), &text, &len) == 0) {
			if (!f->based || len != f->base_len || memcmp(text, f->base, len)) {
				revents = POLLIN | POLLPRI;
				set_base(f, text, len);
			} else {
				free(text);
			}
		}
	}
	if (f->can_write)
		revents |= POLLOUT;
	tree_release(&n);
	svc_unlock(s);
	return revents;
}
