// SPDX-License-Identifier: MIT
/*
 * fsvisor mount: bring up the service on a mount point.  By default it
 * goes into the background once the mount is ready (so `fsvisor mount X
 * && ls X` works) and logs to <state>/service.log.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "fsapi/fsapi.h"
#include "service/service.h"
#include "util/util.h"

static const char mount_usage[] =
	"usage: fsvisor mount [MOUNTPOINT] [--state DIR] [--foreground]\n"
	"                     [--allow-other GROUP] [--log-level LEVEL] [--debug]\n"
	"Serve VMs and disks as files under MOUNTPOINT (default: /mnt/fsvisor\n"
	"for root, ~/fsvisor otherwise), keeping them under DIR (default:\n"
	"/var/lib/fsvisor for root, $XDG_DATA_HOME/fsvisor otherwise).\n"
	"Unmounting (umount MOUNTPOINT) or SIGTERM stops the service; running\n"
	"VMs go on and are found again by the next `fsvisor mount`.\n";

char *cmd_default_mount(void)
{
	const char *env = getenv("FSVISOR_MOUNT"), *home = getenv("HOME");
	char *p;

	if (env && env[0])
		return strdup(env);
	if (geteuid() == 0 || !home)
		return strdup("/mnt/fsvisor");
	if (asprintf(&p, "%s/fsvisor", home) < 0)
		return NULL;
	return p;
}

static char *default_state(void)
{
	const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
	char *p;

	if (geteuid() == 0)
		return strdup("/var/lib/fsvisor");
	if (xdg && xdg[0]) {
		if (asprintf(&p, "%s/fsvisor", xdg) < 0)
			return NULL;
		return p;
	}
	if (asprintf(&p, "%s/.local/share/fsvisor", home ? home : "/tmp") < 0)
		return NULL;
	return p;
}

static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			if (mkdir(buf, 0755) < 0 && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	}
	if (mkdir(buf, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Is @path the mount point of a live or dead FUSE fsvisor mount? */
static bool is_fsvisor_mount(const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096], mnt[PATH_MAX], fstype[64];
	bool found = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		const char *sep = strstr(line, " - ");

		/* id parent major:minor root mountpoint ... - fstype source */
		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
		    sscanf(sep + 3, "%63s", fstype) != 1)
			continue;
		if (strcmp(mnt, path) == 0 && strcmp(fstype, "fuse.fsvisor") == 0)
			found = true;
	}
	fclose(f);
	return found;
}

enum pid_fate { PID_ALIVE, PID_DYING, PID_GONE };

/*
 * Is process @pid alive, dying (exiting, PF_EXITING, or with a SIGKILL
 * on its way), or gone (no longer there, or a zombie, which holds no
 * files)?
 */
static enum pid_fate pid_fate(pid_t pid)
{
	char path[64], buf[4096], state;
	enum pid_fate fate = PID_ALIVE;
	unsigned long flags;
	const char *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return PID_GONE;
	p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
	fclose(f);
	/* ") S ppid pgrp session tty tpgid flags" */
	if (!p || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %lu", &state, &flags) != 2 ||
	    state == 'Z' || state == 'X')
		return PID_GONE;
	if (flags & 0x4)	/* PF_EXITING */
		return PID_DYING;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return PID_GONE;
	while (fate == PID_ALIVE && fgets(buf, sizeof(buf), f)) {
		unsigned long long mask;

		if ((sscanf(buf, "ShdPnd: %llx", &mask) == 1 ||
		     sscanf(buf, "SigPnd: %llx", &mask) == 1) &&
		    (mask & (1ULL << (SIGKILL - 1))))
			fate = PID_DYING;
	}
	fclose(f);
	return fate;
}

/*
 * A service of @state_dir that has been killed but is not gone yet still
 * holds its FUSE connection: the kernel ends it only when the last of
 * the process's threads has exited, and until then the mount looks
 * alive.  Wait (a few seconds at most) for such a service to be gone.
 */
static void wait_for_killed_service(const char *state_dir)
{
	char path[PATH_MAX], pid[32];
	ssize_t n;
	pid_t old;
	int fd;

	snprintf(path, sizeof(path), "%s/lock", state_dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = pread(fd, pid, sizeof(pid) - 1, 0);
	pid[n > 0 ? n : 0] = '\0';
	old = (pid_t)atoi(pid);
	/* A lock nobody holds: no service at all. */
	if (old > 0 && flock(fd, LOCK_SH | LOCK_NB) < 0)
		for (int i = 0; i < 100 && pid_fate(old) == PID_DYING; i++)
			usleep(50000);
	close(fd);
}

/*
 * Make the mount point usable: create it, and clear what a service that
 * died without unmounting left behind ("Transport endpoint is not
 * connected").  A live fsvisor mount there is refused.
 */
static int prepare_mount_point(const char *path, const char *state_dir)
{
	struct statfs sf;
	struct stat st;
	int ret;

	wait_for_killed_service(state_dir);

	/* statfs always asks the server: cached attributes cannot hide a dead one. */
	if ((statfs(path, &sf) < 0 && errno == ENOTCONN) ||
	    (stat(path, &st) < 0 && errno == ENOTCONN)) {
		log_info("clearing the stale mount on %s", path);
		if (geteuid() == 0) {
			if (umount2(path, MNT_DETACH) < 0) {
				fprintf(stderr, "fsvisor mount: cannot clear the stale mount on %s: %s\n",
					path, strerror(errno));
				return -errno;
			}
		} else {
			pid_t pid = fork();
			int status;

			if (pid == 0) {
				execlp("fusermount3", "fusermount3", "-u", "-z", path, (char *)NULL);
				_exit(127);
			}
			if (pid < 0 || waitpid(pid, &status, 0) < 0 || status != 0) {
				fprintf(stderr, "fsvisor mount: cannot clear the stale mount on %s (fusermount3 -u -z failed)\n",
					path);
				return -EIO;
			}
		}
	} else if (is_fsvisor_mount(path)) {
		fprintf(stderr, "fsvisor mount: %s is already an fsvisor mount; unmount it first (umount %s)\n",
			path, path);
		return -EBUSY;
	}
	ret = mkdir_p(path);
	if (ret) {
		fprintf(stderr, "fsvisor mount: %s: %s\n", path, strerror(-ret));
		return ret;
	}
	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "fsvisor mount: %s is not a directory\n", path);
		return -ENOTDIR;
	}
	return 0;
}

struct mount_args {
	char *mount_point;
	char *state_dir;
	bool foreground;
	bool debug;
	bool allow_other;
	gid_t gid;
};

/* Open the service and mount; a sentence in @err on failure. */
static int bring_up(const struct mount_args *a, struct service **svc,
		    struct fsapi **fs, char *err, size_t errlen)
{
	struct service_opts so = {
		.state_dir = a->state_dir,
		.mount_point = a->mount_point,
		.worker_exe = "/proc/self/exe",
		.uid = geteuid(),
		.gid = a->allow_other ? a->gid : getegid(),
		.group_access = a->allow_other,
	};
	struct fsapi_opts fo = {
		.mount_point = a->mount_point,
		.allow_other = a->allow_other,
		.debug = a->debug,
	};
	int ret;

	ret = service_open(&so, svc, err, errlen);
	if (ret)
		return ret;
	ret = fsapi_mount(*svc, &fo, fs, err, errlen);
	if (ret) {
		service_close(*svc);
		*svc = NULL;
	}
	return ret;
}

static int serve(const struct mount_args *a, int ready_fd)
{
	struct service *svc = NULL;
	struct fsapi *fs = NULL;
	char err[1024] = "";
	int ret = bring_up(a, &svc, &fs, err, sizeof(err));

	if (ret) {
		log_error("fsvisor mount: %s", err);
		if (ready_fd >= 0) {
			if (write(ready_fd, err, strlen(err)) < 0)
				ret = -EIO;
			close(ready_fd);
		} else {
			fprintf(stderr, "fsvisor mount: %s\n", err);
		}
		return 1;
	}
	log_info("serving %s (state %s, pid %d)", a->mount_point, a->state_dir, (int)getpid());
	if (ready_fd >= 0) {
		if (write(ready_fd, "", 1) < 0)
			log_warn("the starting process went away");
		close(ready_fd);
	} else {
		fprintf(stderr, "fsvisor: serving %s (state %s, log %s/service.log)\n",
			a->mount_point, a->state_dir, a->state_dir);
	}
	ret = fsapi_run(fs);
	log_info("stopping: unmounting %s; running VMs go on", a->mount_point);
	fsapi_destroy(fs);
	service_close(svc);
	return ret ? 1 : 0;
}

/* Fork into the background; the parent returns when the mount is ready. */
static int daemonize(const struct mount_args *a)
{
	char msg[1024];
	int pipefd[2], status;
	ssize_t n;
	pid_t pid;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		close(pipefd[1]);
		n = read(pipefd[0], msg, sizeof(msg) - 1);
		close(pipefd[0]);
		if (n == 1 && msg[0] == '\0')
			return 0;
		msg[n > 0 ? n : 0] = '\0';
		fprintf(stderr, "fsvisor mount: %s\n",
			n > 0 ? msg : "the service stopped while starting (see its log)");
		waitpid(pid, &status, WNOHANG);
		return 1;
	}
	close(pipefd[0]);
	if (setsid() < 0 || chdir("/") < 0)
		_exit(1);
	{
		/* What goes to stderr anyway (a library's, a sanitizer's) is logged. */
		char *log_path = NULL;
		int null = open("/dev/null", O_RDWR | O_CLOEXEC), err = -1;

		if (asprintf(&log_path, "%s/service.log", a->state_dir) >= 0)
			err = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		free(log_path);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(err >= 0 ? err : null, 2);
			if (null > 2)
				close(null);
		}
		if (err > 2)
			close(err);
	}
	/* exit(), not _exit(): atexit work (a leak check in a sanitizer build) runs. */
	exit(serve(a, pipefd[1]));
}

int cmd_mount(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "allow-other", required_argument, NULL, 'g' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "debug", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct mount_args a = { 0 };
	char real[PATH_MAX], *log_path;
	enum log_level level;
	struct group *gr;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "fh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			a.state_dir = strdup(optarg);
			break;
		case 'f':
			a.foreground = true;
			break;
		case 'g':
			gr = getgrnam(optarg);
			if (!gr) {
				char *end;
				long gid = strtol(optarg, &end, 10);

				gr = *end || gid < 0 ? NULL : getgrgid((gid_t)gid);
			}
			if (!gr) {
				fprintf(stderr, "fsvisor mount: no group '%s'\n", optarg);
				return 1;
			}
			a.allow_other = true;
			a.gid = gr->gr_gid;
			break;
		case 'l':
			if (log_level_parse(optarg, &level)) {
				fprintf(stderr, "fsvisor mount: log level is one of error warn info debug\n");
				return EXIT_USAGE;
			}
			log_set_level(level);
			break;
		case 'd':
			a.debug = true;
			a.foreground = true;
			break;
		case 'h':
			printf("%s", mount_usage);
			return 0;
		default:
			fprintf(stderr, "%s", mount_usage);
			return EXIT_USAGE;
		}
	}
	if (argc - optind > 1) {
		fprintf(stderr, "%s", mount_usage);
		return EXIT_USAGE;
	}
	a.mount_point = argc - optind == 1 ? strdup(argv[optind]) : cmd_default_mount();
	if (!a.state_dir)
		a.state_dir = default_state();
	if (!a.mount_point || !a.state_dir)
		return 1;
	ret = prepare_mount_point(a.mount_point, a.state_dir);
	if (ret)
		return 1;
	/* Absolute paths: the service compares symlink targets with them. */
	if (realpath(a.mount_point, real)) {
		free(a.mount_point);
		a.mount_point = strdup(real);
	}
	if (mkdir_p(a.state_dir) == 0 && realpath(a.state_dir, real)) {
		free(a.state_dir);
		a.state_dir = strdup(real);
	}
	chmod(a.state_dir, 0700);
	if (asprintf(&log_path, "%s/service.log", a.state_dir) < 0)
		return 1;
	ret = log_set_file(log_path);
	free(log_path);
	if (ret) {
		fprintf(stderr, "fsvisor mount: cannot write the log in %s: %s\n", a.state_dir,
			strerror(-ret));
		return 1;
	}
	log_set_tag("service");
	if (a.foreground)
		ret = serve(&a, -1);
	else
		ret = daemonize(&a);
	free(a.mount_point);
	free(a.state_dir);
	return ret;
}
