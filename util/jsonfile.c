// SPDX-License-Identifier: MIT
/* JSON documents on disk, replaced atomically. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"
#include "util/test_hooks.h"

void (*json_save_step_hook)(enum json_save_step step);
static unsigned int tmp_counter;

static void step(enum json_save_step s)
{
	if (json_save_step_hook)
		json_save_step_hook(s);
}

static int write_all(int fd, const char *buf, size_t len, bool hook_halfway)
{
	size_t done = 0;

	while (done < len) {
		size_t chunk = len - done;
		ssize_t n;

		/* Write in two parts so a test can stop us in between. */
		if (hook_halfway && done == 0 && len > 1)
			chunk = len / 2;
		n = write(fd, buf + done, chunk);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
		if (hook_halfway && done < len)
			step(JSON_SAVE_HALF_WRITTEN);
	}
	return 0;
}

static int fsync_dir_of(const char *path)
{
	char copy[PATH_MAX];
	int fd, ret = 0;

	if (snprintf(copy, sizeof(copy), "%s", path) >= (int)sizeof(copy))
		return -ENAMETOOLONG;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

int json_file_save(const char *path, const json_t *doc)
{
	char tmp[PATH_MAX];
	char *text;
	int fd, ret;

	text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!text)
		return -ENOMEM;
	/*
	 * Pid and counter keep concurrent writers apart: other processes and
	 * other threads of this one.
	 */
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d.%u", path, (int)getpid(),
		     __atomic_fetch_add(&tmp_counter, 1, __ATOMIC_RELAXED)) >=
	    (int)sizeof(tmp)) {
		free(text);
		return -ENAMETOOLONG;
	}

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		free(text);
		return ret;
	}
	step(JSON_SAVE_CREATED);
	ret = write_all(fd, text, strlen(text), true);
	if (!ret)
		ret = write_all(fd, "\n", 1, false);
	free(text);
	if (!ret) {
		step(JSON_SAVE_WRITTEN);
		if (fsync(fd) < 0)
			ret = -errno;
	}
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (ret)
		goto fail;
	step(JSON_SAVE_SYNCED);

	if (rename(tmp, path) < 0) {
		ret = -errno;
		goto fail;
	}
	step(JSON_SAVE_RENAMED);
	ret = fsync_dir_of(path);
	step(JSON_SAVE_DONE);
	return ret;

fail:
	unlink(tmp);
	return ret;
}

int json_file_load(const char *path, json_t **out, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *doc;
	FILE *f;

	f = fopen(path, "re");
	if (!f) {
		int ret = -errno;

		if (err)
			snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		return ret;
	}
	doc = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
	fclose(f);
	if (!doc) {
		if (err)
			snprintf(err, errlen, "%s:%d:%d: %s", path, jerr.line,
				 jerr.column, jerr.text);
		return -EINVAL;
	}
	*out = doc;
	return 0;
}
