// SPDX-License-Identifier: MIT
/*
 * fsvisor agent install ROOTDIR: put fsvisor-agent and its systemd unit
 * into a Linux guest's root file system (mounted at ROOTDIR), enabled, so
 * the guest runs it at its next boot.
 *
 *   ROOTDIR/usr/local/sbin/fsvisor-agent
 *   ROOTDIR/etc/systemd/system/fsvisor-agent.service
 *   ROOTDIR/etc/systemd/system/multi-user.target.wants/fsvisor-agent.service -> ../fsvisor-agent.service
 *
 * The agent is found with --agent PATH, $FSVISOR_AGENT, next to this
 * program in a build tree (guest/agent/) or in PREFIX/share/fsvisor.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/commands.h"

static const char agent_usage[] =
	"usage: fsvisor agent install [--agent FILE] ROOTDIR\n"
	"Installs fsvisor-agent (statically linked) and its systemd unit, enabled,\n"
	"into the guest root file system mounted at ROOTDIR.\n";

/* @name in the build tree next to us, or in the installed share directory. */
static int find_file(const char *name, char *out, size_t len)
{
	char exe[PATH_MAX], dir[PATH_MAX];
	const char *const where[] = { "%s/../guest/agent/%s", "%s/../share/fsvisor/%s" };
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n < 0)
		return -errno;
	exe[n] = '\0';
	snprintf(dir, sizeof(dir), "%s", dirname(exe));
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		char *p;

		if (asprintf(&p, where[i], dir, name) < 0)
			return -ENOMEM;
		if (access(p, R_OK) == 0 && strlen(p) < len) {
			strcpy(out, p);
			free(p);
			return 0;
		}
		free(p);
	}
	return -ENOENT;
}

static int mkdirs(const char *path)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return mkdir(buf, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

/* Copy @from to @to (mode @mode), through a temporary file and a rename. */
static int copy_file(const char *from, const char *to, mode_t mode)
{
	char tmp[PATH_MAX], buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC), out, ret = 0;
	ssize_t n;

	if (in < 0)
		return -errno;
	snprintf(tmp, sizeof(tmp), "%s.tmp", to);
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (out < 0) {
		ret = -errno;
		close(in);
		return ret;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n) {
			ret = errno ? -errno : -EIO;
			break;
		}
	if (n < 0)
		ret = -errno;
	if (!ret && (fchmod(out, mode) < 0 || fsync(out) < 0))
		ret = -errno;
	close(in);
	if (close(out) < 0 && !ret)
		ret = -errno;
	if (!ret && rename(tmp, to) < 0)
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

static int fail(const char *what, const char *path, int err)
{
	fprintf(stderr, "fsvisor agent: %s %s: %s\n", what, path, strerror(-err));
	return 1;
}

static int install(const char *agent, const char *root)
{
	char unit[PATH_MAX + 32], path[PATH_MAX + 64], dir[PATH_MAX], link[PATH_MAX + 64];
	struct stat st;
	int ret;

	if (stat(root, &st) < 0 || !S_ISDIR(st.st_mode))
		return fail("the root", root, stat(root, &st) < 0 ? -errno : -ENOTDIR);
	if (!agent) {
		static char found[PATH_MAX];

		agent = getenv("FSVISOR_AGENT");
		if (!agent && find_file("fsvisor-agent", found, sizeof(found)) == 0)
			agent = found;
		if (!agent) {
			fprintf(stderr, "fsvisor agent: cannot find fsvisor-agent (give --agent FILE)\n");
			return 1;
		}
	}
	snprintf(dir, sizeof(dir), "%s", agent);
	snprintf(unit, sizeof(unit), "%s/fsvisor-agent.service", dirname(dir));
	if (access(unit, R_OK) < 0 && find_file("fsvisor-agent.service", unit, sizeof(unit)))
		return fail("the unit file next to", agent, -ENOENT);

	snprintf(dir, sizeof(dir), "%s/usr/local/sbin", root);
	snprintf(path, sizeof(path), "%s/fsvisor-agent", dir);
	if ((ret = mkdirs(dir)) || (ret = copy_file(agent, path, 0755)))
		return fail("installing", path, ret);
	printf("%s\n", path);
	snprintf(dir, sizeof(dir), "%s/etc/systemd/system/multi-user.target.wants", root);
	snprintf(path, sizeof(path), "%s/etc/systemd/system/fsvisor-agent.service", root);
	if ((ret = mkdirs(dir)) || (ret = copy_file(unit, path, 0644)))
		return fail("installing", path, ret);
	printf("%s\n", path);
	/* Enabled, as `systemctl enable` would, without running anything of the guest's. */
	snprintf(link, sizeof(link), "%s/fsvisor-agent.service", dir);
	unlink(link);
	if (symlink("../fsvisor-agent.service", link) < 0)
		return fail("enabling", link, -errno);
	printf("%s -> ../fsvisor-agent.service\n", link);
	return 0;
}

int cmd_agent(int argc, char **argv)
{
	const char *agent = NULL;
	int i = 1;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		printf("%s", agent_usage);
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "install") != 0) {
		fprintf(stderr, "%s", agent_usage);
		return EXIT_USAGE;
	}
	for (i = 2; i < argc - 1; i++) {
		if (strcmp(argv[i], "--agent") == 0 && i + 1 < argc - 1) {
			agent = argv[++i];
		} else {
			fprintf(stderr, "%s", agent_usage);
			return EXIT_USAGE;
		}
	}
	if (i != argc - 1) {
		fprintf(stderr, "%s", agent_usage);
		return EXIT_USAGE;
	}
	return install(agent, argv[argc - 1]);
}
