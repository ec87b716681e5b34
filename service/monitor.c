// SPDX-License-Identifier: MIT
/*
 * The monitor: `fsvisor vm monitor -- fsvisor vm run ...`, started by the
 * service in the VM's directory and in a session of its own.  It starts
 * the worker, records its pid, waits for it, and records how it ended
 * (worker.exit: "exit N" or "signal N"), so that the service learns the
 * outcome even if it was not running at the time.  It outlives the
 * service, and signals meant for the session do not stop it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "service/service.h"
#include "util/util.h"

/* Write @text to @name in the current directory, atomically. */
static void record(const char *name, const char *text)
{
	char tmp[64];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text) || fsync(fd) < 0) {
		close(fd);
		unlink(tmp);
		return;
	}
	close(fd);
	if (rename(tmp, name) < 0)
		unlink(tmp);
}

int service_monitor(int argc, char **argv)
{
	char text[64];
	int status, i;
	pid_t pid;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		;
	if (i + 1 >= argc) {
		fprintf(stderr, "usage: fsvisor vm monitor -- fsvisor vm run [ARGS...]\n");
		return 2;
	}
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "fsvisor vm: cannot start the worker: %s\n", strerror(errno));
		record("worker.exit", "exit 1\n");
		return 1;
	}
	if (pid == 0) {
		/* The worker is this same program, whatever its name now. */
		execv("/proc/self/exe", argv + i + 1);
		fprintf(stderr, "fsvisor vm: cannot run the worker: %s\n", strerror(errno));
		_exit(1);
	}
	/* Ignored only here: the worker keeps the usual meaning of these. */
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	snprintf(text, sizeof(text), "%d\n", (int)pid);
	record("worker.pid", text);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			record("worker.exit", "exit 1\n");
			return 1;
		}
	}
	if (WIFSIGNALED(status))
		snprintf(text, sizeof(text), "signal %d\n", WTERMSIG(status));
	else
		snprintf(text, sizeof(text), "exit %d\n", WEXITSTATUS(status));
	record("worker.exit", text);
	return 0;
}
