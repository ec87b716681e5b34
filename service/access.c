// SPDX-License-Identifier: MIT
/*
 * Host files opened on a caller's behalf.  The service (and its workers)
 * open host files — an adopted disk's file, a kernel — with the service's
 * rights, which for a root service are every right.  When someone other
 * than the mount's owner asks for such a file (a group member reading a
 * disk's "data" under --allow-other, starting a VM), the service first
 * checks that the caller could open the file themselves, with the same
 * access mode.
 *
 * A root service asks the kernel: the checking thread takes the caller's
 * file-system identity (fsuid, fsgid, supplementary groups: all three
 * per thread when set with the raw system calls, unlike glibc's
 * setgroups(), which changes every thread), opens the file, and takes its
 * own identity back.  The kernel then applies everything it would to the
 * caller: modes along the path, ACLs, LSMs.  A service that is not root
 * cannot take another identity; it checks the mode bits of the file and
 * of each directory above it instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "service/internal.h"

static bool in_groups(const struct svc_caller *who, gid_t gid)
{
	if (who->gid == gid)
		return true;
	for (int i = 0; i < who->ngroups; i++)
		if (who->groups[i] == gid)
			return true;
	return false;
}

/* May @who do @want (R_OK, W_OK, X_OK bits) to what @st describes? */
static bool mode_allows(const struct svc_caller *who, const struct stat *st, int want)
{
	unsigned int bits;

	if (who->uid == 0)
		return !(want & X_OK) || (st->st_mode & 0111) || S_ISDIR(st->st_mode);
	if (who->uid == st->st_uid)
		bits = (st->st_mode >> 6) & 7;
	else if (in_groups(who, st->st_gid))
		bits = (st->st_mode >> 3) & 7;
	else
		bits = st->st_mode & 7;
	return (bits & (unsigned int)want) == (unsigned int)want;
}

static int check_modes(const struct svc_caller *who, const char *path, int acc)
{
	int want = acc == O_RDONLY ? R_OK : acc == O_WRONLY ? W_OK : R_OK | W_OK;
	char dir[PATH_MAX];
	struct stat st;

	if (stat(path, &st) < 0)
		return -errno;
	if (!mode_allows(who, &st, want))
		return -EACCES;
	snprintf(dir, sizeof(dir), "%s", path);
	for (char *slash = strrchr(dir, '/'); slash; slash = strrchr(dir, '/')) {
		*slash = '\0';
		if (stat(dir[0] ? dir : "/", &st) < 0)
			return -errno;
		if (!mode_allows(who, &st, X_OK))
			return -EACCES;
	}
	return 0;
}

/* Take the caller's file-system identity on this thread, open, and return. */
static int open_as(const struct svc_caller *who, const char *path, int acc)
{
	gid_t saved[NGROUPS_MAX];
	int nsaved = getgroups(NGROUPS_MAX, saved), fd, err = 0;
	/* setfsuid(-1) changes nothing and says what the identity is. */
	long fsuid = syscall(SYS_setfsuid, -1), fsgid = syscall(SYS_setfsgid, -1);

	if (nsaved < 0)
		return -errno;
	if (syscall(SYS_setgroups, who->ngroups > 0 ? who->ngroups : 0, who->groups) < 0)
		return -errno;
	syscall(SYS_setfsgid, who->gid);
	syscall(SYS_setfsuid, who->uid);
	/* Non-blocking: a FIFO put where the file was must not hang us. */
	fd = open(path, acc | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		err = -errno;
	else
		close(fd);
	syscall(SYS_setfsuid, fsuid);
	syscall(SYS_setfsgid, fsgid);
	/*
	 * A thread left with someone else's identity would serve the next
	 * request with it: nothing is safe to do after that.
	 */
	if (syscall(SYS_setgroups, nsaved, saved) < 0 || syscall(SYS_setfsuid, -1) != fsuid ||
	    syscall(SYS_setfsgid, -1) != fsgid)
		abort();
	return err;
}

int svc_caller_may_open(struct service *s, const struct svc_caller *who,
			const char *path, int acc)
{
	if (!who || who->uid == s->uid)
		return 0;
	if (geteuid() == 0)
		return open_as(who, path, acc & O_ACCMODE);
	return check_modes(who, path, acc & O_ACCMODE);
}
