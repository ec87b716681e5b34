// SPDX-License-Identifier: MIT
/*
 * fsop: file operations whose errno the shell cannot show, for the tests
 * of the mount.
 *
 *   fsop write FILE VALUE        one write(2) of VALUE; prints "ok" or the
 *                                errno's name (EINVAL, EBUSY, ...)
 *   fsop poll FILE MS            read FILE, then poll(2) it for a change for
 *                                up to MS ms; prints "changed VALUE" or
 *                                "timeout"
 *   fsop read-nonblock FILE      one O_NONBLOCK read; prints the errno name
 *                                or the bytes
 *   fsop read FILE               one blocking read, with a SIGINT handler (as a
 *                                program that catches Ctrl-C has): prints the
 *                                bytes or the errno name (EINTR)
 *   fsop pwrite FILE OFFSET VALUE
 *                                one pwrite(2) of VALUE at OFFSET (no
 *                                O_TRUNC); prints "ok" or the errno's name
 *   fsop mkdir|rmdir|unlink PATH, fsop symlink TARGET PATH, fsop create PATH,
 *   fsop rename|link FROM TO, fsop chmod PATH MODE (octal),
 *   fsop chown PATH UID GID
 *                                the call; prints "ok" or the errno name
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int do_write(const char *file, const char *value)
{
	int fd = open(file, O_WRONLY | O_TRUNC);
	ssize_t n;

	if (fd < 0) {
		printf("%s\n", strerrorname_np(errno));
		return 0;
	}
	n = write(fd, value, strlen(value));
	if (n < 0)
		printf("%s\n", strerrorname_np(errno));
	else if ((size_t)n != strlen(value))
		printf("short %zd\n", n);
	else
		printf("ok\n");
	close(fd);
	return 0;
}

static int do_pwrite(const char *file, const char *off, const char *value)
{
	int fd = open(file, O_WRONLY);
	ssize_t n;

	if (fd < 0) {
		printf("%s\n", strerrorname_np(errno));
		return 0;
	}
	n = pwrite(fd, value, strlen(value), (off_t)strtoll(off, NULL, 10));
	printf("%s\n", n < 0 ? strerrorname_np(errno) : "ok");
	close(fd);
	return 0;
}

static int do_poll(const char *file, int ms)
{
	char buf[4096];
	struct pollfd p;
	ssize_t n;
	int fd = open(file, O_RDONLY);

	if (fd < 0 || read(fd, buf, sizeof(buf)) < 0) {
		printf("%s\n", strerrorname_np(errno));
		return 1;
	}
	p.fd = fd;
	p.events = POLLIN | POLLPRI;
	if (poll(&p, 1, ms) <= 0) {
		printf("timeout\n");
		return 0;
	}
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	printf("changed %s", buf);
	return 0;
}

static int do_read_nonblock(const char *file)
{
	char buf[4096];
	ssize_t n;
	int fd = open(file, O_RDONLY | O_NONBLOCK);

	if (fd < 0) {
		printf("%s\n", strerrorname_np(errno));
		return 0;
	}
	n = read(fd, buf, sizeof(buf));
	if (n < 0)
		printf("%s\n", strerrorname_np(errno));
	else
		fwrite(buf, 1, (size_t)n, stdout);
	return 0;
}

static void on_sigint(int sig)
{
	(void)sig;
}

static int do_read(const char *file)
{
	struct sigaction sa = { .sa_handler = on_sigint };	/* no SA_RESTART */
	char buf[4096];
	ssize_t n;
	int fd = open(file, O_RDONLY);

	sigaction(SIGINT, &sa, NULL);
	if (fd < 0) {
		printf("%s\n", strerrorname_np(errno));
		return 0;
	}
	n = read(fd, buf, sizeof(buf));
	if (n < 0)
		printf("%s\n", strerrorname_np(errno));
	else
		fwrite(buf, 1, (size_t)n, stdout);
	return 0;
}

static int result(int ret)
{
	printf("%s\n", ret < 0 ? strerrorname_np(errno) : "ok");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "read") == 0)
		return do_read(argv[2]);
	if (argc == 3 && strcmp(argv[1], "mkdir") == 0)
		return result(mkdir(argv[2], 0755));
	if (argc == 3 && strcmp(argv[1], "rmdir") == 0)
		return result(rmdir(argv[2]));
	if (argc == 3 && strcmp(argv[1], "unlink") == 0)
		return result(unlink(argv[2]));
	if (argc == 3 && strcmp(argv[1], "create") == 0)
		return result(open(argv[2], O_WRONLY | O_CREAT | O_EXCL, 0644));
	if (argc == 4 && strcmp(argv[1], "symlink") == 0)
		return result(symlink(argv[2], argv[3]));
	if (argc == 4 && strcmp(argv[1], "rename") == 0)
		return result(rename(argv[2], argv[3]));
	if (argc == 4 && strcmp(argv[1], "link") == 0)
		return result(link(argv[2], argv[3]));
	if (argc == 4 && strcmp(argv[1], "chmod") == 0)
		return result(chmod(argv[2], (mode_t)strtol(argv[3], NULL, 8)));
	if (argc == 5 && strcmp(argv[1], "chown") == 0)
		return result(chown(argv[2], (uid_t)atoi(argv[3]), (gid_t)atoi(argv[4])));
	if (argc == 5 && strcmp(argv[1], "pwrite") == 0)
		return do_pwrite(argv[2], argv[3], argv[4]);
	if (argc == 4 && strcmp(argv[1], "write") == 0)
		return do_write(argv[2], argv[3]);
	if (argc == 4 && strcmp(argv[1], "poll") == 0)
		return do_poll(argv[2], atoi(argv[3]));
	if (argc == 3 && strcmp(argv[1], "read-nonblock") == 0)
		return do_read_nonblock(argv[2]);
	fprintf(stderr, "usage: fsop write FILE VALUE | poll FILE MS | read-nonblock FILE\n");
	return 2;
}
