// SPDX-License-Identifier: MIT
/*
 * Levelled logging to stderr or to a log file.  One write() per message, so
 * lines from several threads or processes sharing a file do not interleave.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

static enum log_level current_level = LOG_INFO;
static int log_fd = -1;		/* -1: stderr without timestamps */
static char log_tag[64];

static const char *const level_names[] = {
	[LOG_ERROR] = "error",
	[LOG_WARN] = "warn",
	[LOG_INFO] = "info",
	[LOG_DEBUG] = "debug",
};

void log_set_level(enum log_level level)
{
	current_level = level;
}

enum log_level log_get_level(void)
{
	return current_level;
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(level_names); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

int log_set_file(const char *path)
{
	int fd = -1;

	if (path) {
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd < 0)
			return -errno;
	}
	if (log_fd >= 0)
		close(log_fd);
	log_fd = fd;
	return 0;
}

void log_set_tag(const char *tag)
{
	snprintf(log_tag, sizeof(log_tag), "%s", tag ? tag : "");
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char line[2048];
	size_t n = 0;

	if (level > current_level)
		return;

	if (log_fd >= 0) {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		n += strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
		n += snprintf(line + n, sizeof(line) - n, ".%03ld ",
			      ts.tv_nsec / 1000000);
	}
	if (log_tag[0])
		n += snprintf(line + n, sizeof(line) - n, "%s: ", log_tag);
	if (level != LOG_INFO)
		n += snprintf(line + n, sizeof(line) - n, "%s: ",
			      level_names[level]);
	if (n < sizeof(line)) {
		int r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);

		n = r < 0 ? n : n + (size_t)r;
	}
	/* Keep room for the newline, even when the message was cut. */
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	if (n == 0 || line[n - 1] != '\n')
		line[n++] = '\n';

	/* Nothing useful can be done if the log itself cannot be written. */
	if (write(log_fd >= 0 ? log_fd : STDERR_FILENO, line, n) < 0)
		return;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}
