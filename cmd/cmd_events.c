// SPDX-License-Identifier: MIT
/*
 * fsvisor events: follow an event log of a mount (its top "events", or
 * a VM's), as `tail -f` would, but woken by poll() instead of looking
 * once a second.  Only the mount is used, like any other client.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/commands.h"

static const char events_usage[] =
	"usage: fsvisor events [--all] [--no-follow] [PATH]\n"
	"Print the events of a mount as they happen: PATH is an events file, or a\n"
	"directory holding one (the mount, or vms/NAME); default: the events of\n"
	"the mount at $FSVISOR_MOUNT (or /mnt/fsvisor).\n"
	"  --all        first print the events kept so far (the newest 1024)\n"
	"  --no-follow  stop at the end instead of waiting for more\n";

static char *events_path(const char *arg)
{
	struct stat st;
	char *p, *mnt;

	if (arg) {
		if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) {
			if (asprintf(&p, "%s/events", arg) < 0)
				return NULL;
			return p;
		}
		return strdup(arg);
	}
	mnt = cmd_default_mount();
	if (!mnt || asprintf(&p, "%s/events", mnt) < 0)
		p = NULL;
	free(mnt);
	return p;
}

static int write_all(const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(STDOUT_FILENO, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Copy the log from @pos on; 0, or -1 on an error (said on stderr). */
static int follow(int fd, const char *path, off_t pos, bool forever)
{
	char buf[65536];

	for (;;) {
		ssize_t n = pread(fd, buf, sizeof(buf), pos);
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "fsvisor events: %s: %s\n", path, strerror(errno));
			return -1;
		}
		if (n > 0) {
			if (write_all(buf, (size_t)n))
				return 0;	/* the reader went away */
			pos += n;
			continue;
		}
		if (!forever)
			return 0;
		/* At the end: the service wakes us when the log grows. */
		if (poll(&p, 1, -1) < 0 && errno != EINTR) {
			fprintf(stderr, "fsvisor events: poll: %s\n", strerror(errno));
			return -1;
		}
		if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) {
			fprintf(stderr, "fsvisor events: %s went away (the service stopped?)\n", path);
			return -1;
		}
	}
}

int cmd_events(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "no-follow", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool all = false, forever = true;
	struct stat st;
	char *path;
	int c, fd, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "anh", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			all = true;
			break;
		case 'n':
			forever = false;
			break;
		case 'h':
			printf("%s", events_usage);
			return 0;
		default:
			fprintf(stderr, "%s", events_usage);
			return EXIT_USAGE;
		}
	}
	if (argc - optind > 1) {
		fprintf(stderr, "%s", events_usage);
		return EXIT_USAGE;
	}
	path = events_path(argc - optind ? argv[optind] : NULL);
	if (!path)
		return 1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "fsvisor events: %s: %s\n", path, strerror(errno));
		free(path);
		return 1;
	}
	/* Its size is what it ever held: from there on is what happens next. */
	ret = follow(fd, path, all ? 0 : st.st_size, forever);
	close(fd);
	free(path);
	return ret ? 1 : 0;
}
