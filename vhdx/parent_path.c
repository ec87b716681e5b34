// SPDX-License-Identifier: MIT
/*
 * How a child names its parent, and how those names are found again.
 *
 * Hyper-V writes three names in Windows form: a path relative to the
 * child's directory, a path on a volume named by its GUID, and an
 * absolute path.  Here a volume is a mounted file system, named by a GUID
 * made from its statfs() identifier, so the volume name still finds the
 * parent after the file system is mounted somewhere else.  Absolute paths
 * have no drive letter on Linux: we write "\dir\file.vhdx" (a rooted
 * Windows path) and, reading, drop a drive letter if there is one.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "vhdx/internal.h"

#define VOLUME_PREFIX "\\\\?\\Volume{"

static void to_backslashes(char *s)
{
	for (; *s; s++)
		if (*s == '/')
			*s = '\\';
}

static void to_slashes(char *s)
{
	for (; *s; s++)
		if (*s == '\\')
			*s = '/';
}

/* The directory part of @path (".", when it has none). */
void path_dirname(const char *path, char *out, size_t outlen)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		snprintf(out, outlen, ".");
	else if (slash == path)
		snprintf(out, outlen, "/");
	else
		snprintf(out, outlen, "%.*s", (int)(slash - path), path);
}

/* The volume GUID of the file system holding @path. */
static int volume_guid(const char *path, struct guid *g)
{
	struct statfs sf;
	int v[2];

	if (statfs(path, &sf) < 0)
		return -errno;
	memcpy(v, &sf.f_fsid, sizeof(v));
	put32(g->b, (uint32_t)v[0]);
	put32(g->b + 4, (uint32_t)v[1]);
	/* A fixed tail: these GUIDs never collide with random ones. */
	memcpy(g->b + 8, "fsvisorV", 8);
	return 0;
}

/* The mount point of the file system holding directory @dir. */
static int mount_point(const char *dir, char *out, size_t outlen)
{
	char cur[PATH_MAX], up[PATH_MAX];
	struct stat a, b;

	if (!realpath(dir, cur) || stat(cur, &a) < 0)
		return -errno;
	while (strcmp(cur, "/") != 0) {
		path_dirname(cur, up, sizeof(up));
		if (stat(up, &b) < 0 || b.st_dev != a.st_dev)
			break;
		snprintf(cur, sizeof(cur), "%s", up);
	}
	if (strlen(cur) >= outlen)
		return -ENAMETOOLONG;
	snprintf(out, outlen, "%s", cur);
	return 0;
}

/* Path from directory @from to file @to, both absolute and resolved. */
static int relative_path(const char *from, const char *to, char *out,
			 size_t outlen)
{
	size_t common = 0, i, o = 0;
	int n;

	/* The longest common prefix that ends at a directory boundary. */
	for (i = 0; from[i] && from[i] == to[i]; i++)
		if (from[i] == '/')
			common = i + 1;
	if ((!from[i] && to[i] == '/') || strcmp(from, "/") == 0) {
		/* @to is in @from itself. */
		n = snprintf(out, outlen, "./%s", to + (from[1] ? i + 1 : 1));
		return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
	}
	for (i = common; from[i]; i++) {
		if (i == common || from[i - 1] == '/') {
			if (o + 3 >= outlen)
				return -ENAMETOOLONG;
			memcpy(out + o, "../", 3);
			o += 3;
		}
	}
	n = snprintf(out + o, outlen - o, "%s", to + common);
	return n < 0 || (size_t)n >= outlen - o ? -ENAMETOOLONG : 0;
}

int parent_names_make(const char *child, const char *parent,
		      struct parent_names *pn, char *err, size_t errlen)
{
	char dir[PATH_MAX], cdir[PATH_MAX], pdir[PATH_MAX], mnt[PATH_MAX], gs[40];
	struct guid g;
	const char *inside;
	int ret;

	if (!realpath(parent, pn->real)) {
		ret = -errno;
		snprintf(err, errlen, "cannot find the parent %s: %s", parent,
			 strerror(errno));
		return ret;
	}
	path_dirname(child, dir, sizeof(dir));
	if (!realpath(dir, cdir)) {
		ret = -errno;
		snprintf(err, errlen, "cannot find the directory of %s: %s", child,
			 strerror(errno));
		return ret;
	}
	path_dirname(pn->real, pdir, sizeof(pdir));
	ret = relative_path(cdir, pn->real, pn->rel, sizeof(pn->rel));
	if (!ret)
		ret = volume_guid(pn->real, &g);
	if (!ret)
		ret = mount_point(pdir, mnt, sizeof(mnt));
	if (ret) {
		snprintf(err, errlen, "cannot name the parent %s: %s", pn->real,
			 strerror(-ret));
		return ret;
	}
	guid_format(&g, gs);
	inside = pn->real + (strcmp(mnt, "/") == 0 ? 1 : strlen(mnt) + 1);
	if ((size_t)snprintf(pn->vol, sizeof(pn->vol), VOLUME_PREFIX "%s}\\%s", gs,
			     inside) >= sizeof(pn->vol) ||
	    (size_t)snprintf(pn->abs, sizeof(pn->abs), "%s", pn->real) >=
	    sizeof(pn->abs)) {
		snprintf(err, errlen, "the path of the parent %s is too long", pn->real);
		return -ENAMETOOLONG;
	}
	to_backslashes(pn->rel);
	to_backslashes(pn->vol + strlen(VOLUME_PREFIX));
	to_backslashes(pn->abs);
	return 0;
}

/* Undo the octal escapes of /proc/self/mountinfo. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] && s[3]) {
			*o++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = 0;
}

/* The mount point of the volume with GUID @want; -ENOENT when none. */
static int find_volume(const struct guid *want, const char *near, char *out,
		       size_t outlen)
{
	char line[2 * PATH_MAX + 256];
	struct guid g;
	FILE *f;

	/* Usually the child's own file system: no need to read the table. */
	if (mount_point(near, out, outlen) == 0 && volume_guid(out, &g) == 0 &&
	    guid_equal(&g, want))
		return 0;
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		char *fld = line, *mp = NULL;

		for (int i = 0; i < 5 && fld; i++) {
			mp = fld;
			fld = strchr(fld, ' ');
			if (fld)
				*fld++ = 0;
		}
		if (!mp || !fld)
			continue;
		unescape(mp);
		if (volume_guid(mp, &g) == 0 && guid_equal(&g, want) &&
		    strlen(mp) < outlen) {
			snprintf(out, outlen, "%s", mp);
			fclose(f);
			return 0;
		}
	}
	fclose(f);
	return -ENOENT;
}

static int join(char *out, size_t outlen, const char *a, const char *b)
{
	int n = snprintf(out, outlen, "%s%s%s", a,
			 a[0] && a[strlen(a) - 1] == '/' ? "" : "/", b);

	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

int parent_name_resolve(enum parent_kind kind, const char *value,
			const char *child_dir, char *out, size_t outlen)
{
	char v[PATH_MAX], mnt[PATH_MAX];
	struct guid g;
	const char *rest;

	if (!value[0] || strlen(value) >= sizeof(v))
		return -ENOENT;
	snprintf(v, sizeof(v), "%s", value);
	switch (kind) {
	case PARENT_RELATIVE:
		to_slashes(v);
		if (v[0] == '/')
			return -ENOENT;
		return join(out, outlen, child_dir, v);
	case PARENT_FILENAME:
		to_slashes(v);
		rest = strrchr(v, '/');
		return join(out, outlen, child_dir, rest ? rest + 1 : v);
	case PARENT_ABSOLUTE:
		to_slashes(v);
		rest = v;
		if (((v[0] | 0x20) >= 'a' && (v[0] | 0x20) <= 'z') && v[1] == ':')
			rest = v + 2;	/* a drive letter names no place here */
		if (rest[0] != '/' || rest[1] == '/')
			return -ENOENT;	/* relative to a drive, or UNC */
		if (strlen(rest) >= outlen)
			return -ENAMETOOLONG;
		snprintf(out, outlen, "%s", rest);
		return 0;
	case PARENT_VOLUME:
		if (strncmp(v, VOLUME_PREFIX, strlen(VOLUME_PREFIX)) != 0)
			return -ENOENT;
		rest = strchr(v + strlen(VOLUME_PREFIX), '}');
		if (!rest || rest[1] != '\\')
			return -ENOENT;
		*(char *)rest = 0;
		if (guid_parse(v + strlen(VOLUME_PREFIX), &g) ||
		    find_volume(&g, child_dir, mnt, sizeof(mnt)))
			return -ENOENT;
		snprintf(v, sizeof(v), "%s", rest + 2);
		to_slashes(v);
		return join(out, outlen, mnt, v);
	}
	return -ENOENT;
}
