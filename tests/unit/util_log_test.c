// SPDX-License-Identifier: MIT
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	static char buf[8192];
	size_t n;

	cr_assert_not_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

Test(log, levels_parse)
{
	enum log_level l;

	cr_assert_eq(log_level_parse("debug", &l), 0);
	cr_assert_eq(l, LOG_DEBUG);
	cr_assert_eq(log_level_parse("error", &l), 0);
	cr_assert_eq(l, LOG_ERROR);
	cr_assert_eq(log_level_parse("verbose", &l), -EINVAL);
	cr_assert_eq(log_level_parse("", &l), -EINVAL);
}

Test(log, file_filter_and_tag)
{
	char path[] = "/tmp/fsvisor-log-XXXXXX";
	int fd = mkstemp(path);
	char *text;

	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(log_set_file(path), 0);
	log_set_tag("vm web1");
	log_set_level(LOG_WARN);
	log_info("not shown %d", 1);
	log_warn("disk %s is %d%% full", "d0", 93);
	log_error("no newline needed\n");
	log_debug("never %s", "shown");
	log_set_level(LOG_DEBUG);
	log_debug("now shown");
	cr_assert_eq(log_set_file(NULL), 0);

	text = slurp(path);
	unlink(path);
	cr_assert_null(strstr(text, "not shown"));
	cr_assert_null(strstr(text, "never"));
	cr_assert_not_null(strstr(text, "vm web1: warn: disk d0 is 93% full\n"));
	cr_assert_not_null(strstr(text, "vm web1: error: no newline needed\n"));
	cr_assert_not_null(strstr(text, "debug: now shown\n"));
	/* Timestamped: lines start with a year. */
	cr_assert(text[0] == '2' && text[4] == '-', "%s", text);
	/* Exactly one newline per message. */
	cr_assert_null(strstr(text, "\n\n"));
}

Test(log, long_message_is_cut_not_overflowed)
{
	char path[] = "/tmp/fsvisor-log-XXXXXX";
	int fd = mkstemp(path);
	char *big = malloc(10000);
	char *text;

	memset(big, 'x', 9999);
	big[9999] = 0;
	close(fd);
	log_set_file(path);
	log_set_tag(NULL);
	log_error("%s", big);
	log_set_file(NULL);
	text = slurp(path);
	unlink(path);
	cr_assert_lt(strlen(text), 2100);
	cr_assert_eq(text[strlen(text) - 1], '\n');
	free(big);
}

Test(log, bad_file)
{
	cr_assert_eq(log_set_file("/nonexistent-dir/x.log"), -ENOENT);
}
