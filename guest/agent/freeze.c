// SPDX-License-Identifier: MIT
/*
 * Backup: freezing and thawing the guest's file systems for a
 * production checkpoint, as Hyper-V's VSS integration does.  FIFREEZE on
 * every mounted file system that can be frozen (a block-device file
 * system mounted read-write; each superblock once), the root last, and a
 * deadline after which the agent thaws them by itself, so a host that
 * never says "thaw" cannot leave the guest stuck.  Thawed in the reverse
 * order.  --freeze-mount PATH (repeatable) restricts it to those mounts.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define MAX_MOUNTS	64
#define MAX_TIMEOUT_MS	600000

static const char *const freezable[] = {
	"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "reiserfs", "vfat", "exfat",
};

static int frozen_fd[MAX_MOUNTS];
static char *frozen_path[MAX_MOUNTS];
static unsigned int nfrozen;
static bool active;
static int timer_fd = -1;
static struct timespec deadline;	/* CLOCK_MONOTONIC */

bool freeze_active(void)
{
	return active;
}

int freeze_timer_fd(void)
{
	if (timer_fd < 0)
		timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	return timer_fd;
}

static bool is_freezable(const char *type)
{
	for (size_t i = 0; i < sizeof(freezable) / sizeof(freezable[0]); i++)
		if (strcmp(type, freezable[i]) == 0)
			return true;
	return false;
}

/* /proc/self/mounts escapes blanks and backslashes as \ooo. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* The mount points to freeze, in order, the root last; their count. */
static unsigned int mounts(char *out[MAX_MOUNTS])
{
	dev_t seen[MAX_MOUNTS];
	unsigned int n = 0;
	char *root = NULL;
	char line[4096];
	FILE *f;

	if (opts.nfreeze) {
		for (unsigned int i = 0; i < opts.nfreeze && n < MAX_MOUNTS; i++)
			out[n++] = strdup(opts.freeze[i]);
		return n;
	}
	f = fopen("/proc/self/mounts", "re");
	while (f && fgets(line, sizeof(line), f) && n < MAX_MOUNTS) {
		char dev[1024], dir[2048], type[64], flags[1024];
		struct stat st;
		bool dup = false;

		if (sscanf(line, "%1023s %2047s %63s %1023s", dev, dir, type, flags) != 4)
			continue;
		unescape(dir);
		if (!is_freezable(type) || dev[0] != '/' || strncmp(flags, "ro", 2) == 0 ||
		    stat(dir, &st) < 0)
			continue;
		for (unsigned int i = 0; i < n; i++)
			dup |= seen[i] == st.st_dev;
		if (dup || (root && strcmp(dir, "/") == 0))
			continue;
		if (strcmp(dir, "/") == 0) {
			root = strdup(dir);
			seen[n] = st.st_dev;	/* counted, placed last */
			continue;
		}
		seen[n] = st.st_dev;
		out[n++] = strdup(dir);
	}
	if (f)
		fclose(f);
	if (root && n < MAX_MOUNTS)
		out[n++] = root;
	else
		free(root);
	return n;
}

static void arm(uint32_t ms)
{
	struct itimerspec its = { .it_value = { .tv_sec = ms / 1000,
						.tv_nsec = (long)(ms % 1000) * 1000000L } };

	timerfd_settime(freeze_timer_fd(), 0, &its, NULL);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += its.it_value.tv_sec;
	deadline.tv_nsec += its.it_value.tv_nsec;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
}

static void disarm(void)
{
	struct itimerspec its = { 0 };

	timerfd_settime(freeze_timer_fd(), 0, &its, NULL);
}

/* Thaw in the reverse order; the count thawed. */
static unsigned int thaw(void)
{
	unsigned int count = 0;

	while (nfrozen) {
		unsigned int i = --nfrozen;

		if (ioctl(frozen_fd[i], FITHAW, 0) == 0)
			count++;
		else
			agent_log_kmsg("thawing %s: %s", frozen_path[i], strerror(errno));
		close(frozen_fd[i]);
		free(frozen_path[i]);
	}
	active = false;
	disarm();
	kvp_apply_deferred();
	return count;
}

/* Freeze every mount; 0, or the first failure (with what was frozen thawed). */
static int freeze(char *why, size_t whylen)
{
	char *list[MAX_MOUNTS];
	unsigned int n = mounts(list);
	int ret = 0;

	for (unsigned int i = 0; i < n; i++) {
		int fd = ret ? -1 : open(list[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (!ret && fd < 0) {
			ret = -errno;
			snprintf(why, whylen, "%s: %s", list[i], strerror(errno));
		} else if (!ret && ioctl(fd, FIFREEZE, 0) < 0) {
			ret = -errno;
			snprintf(why, whylen, "freezing %s: %s", list[i], strerror(errno));
			close(fd);
		} else if (!ret) {
			frozen_fd[nfrozen] = fd;
			frozen_path[nfrozen++] = list[i];
			active = true;
			continue;
		}
		free(list[i]);
	}
	if (ret)
		thaw();
	return ret;
}

static uint32_t remain_ms(void)
{
	struct timespec now;
	int64_t ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (deadline.tv_sec - now.tv_sec) * 1000 + (deadline.tv_nsec - now.tv_nsec) / 1000000;
	return ms > 0 ? (uint32_t)ms : 0;
}

void freeze_request(const struct ic_msg *m)
{
	uint8_t frame[64];
	struct ic_writer w;
	char why[256] = "";
	uint32_t count = 0;

	switch (m->h.type) {
	case IC_FREEZE: {
		uint32_t ms = (uint32_t)m->num[IC_T_TIMEOUT];
		int ret;

		if (active) {
			agent_reply(&m->h, EBUSY, "frozen already");
			return;
		}
		if (ms == 0 || ms > MAX_TIMEOUT_MS) {
			agent_reply(&m->h, EINVAL, "a freeze lasts 1 ms to 600 s");
			return;
		}
		/* The deadline runs from before the first freeze. */
		arm(ms);
		ret = freeze(why, sizeof(why));
		if (ret) {
			agent_log_kmsg("freeze failed: %s", why);
			agent_reply(&m->h, (uint32_t)-ret, why);
			return;
		}
		count = nfrozen;
		agent_log_kmsg("froze %u file systems for at most %u ms", count, ms);
		break;
	}
	case IC_THAW:
		count = thaw();
		agent_log_kmsg("thawed %u file systems", count);
		break;
	case IC_BACKUP_STATUS:
		ic_begin_reply(&w, frame, sizeof(frame), &m->h, 0);
		ic_put_u32(&w, IC_T_STATE, active ? IC_BACKUP_FROZEN : IC_BACKUP_THAWED);
		ic_put_u32(&w, IC_T_REMAIN, active ? remain_ms() : 0);
		agent_send(&w);
		return;
	}
	ic_begin_reply(&w, frame, sizeof(frame), &m->h, 0);
	ic_put_u32(&w, IC_T_COUNT, count);
	agent_send(&w);
}

void freeze_deadline(void)
{
	uint64_t ticks;

	if (read(freeze_timer_fd(), &ticks, sizeof(ticks)) < 0)
		ticks = 0;
	if (active) {
		unsigned int n = thaw();

		agent_log_kmsg("the host did not thaw in time: thawed %u file systems by itself", n);
	}
}

void freeze_thaw_all(const char *why)
{
	if (active) {
		unsigned int n = thaw();

		agent_log_kmsg("%s: thawed %u file systems", why, n);
	}
}
