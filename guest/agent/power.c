// SPDX-License-Identifier: MIT
/*
 * Shutdown and reboot asked for by the host: the reason goes to the
 * kernel's log and the journal, the answer to the host, and then, once
 * the answer is out, the OS is asked as an administrator would
 * (`systemctl poweroff` / `reboot`; --poweroff-cmd and --reboot-cmd in
 * tests), with the reason in FSVISOR_REASON.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

static enum { NONE, POWEROFF, REBOOT } pending;
static char reason[IC_REASON_MAX + 1];
static bool done;

void shutdown_request(const struct ic_msg *m)
{
	bool reboot = m->num[IC_T_MODE] == IC_SHUTDOWN_REBOOT;

	if (m->num[IC_T_MODE] > IC_SHUTDOWN_REBOOT) {
		agent_reply(&m->h, EINVAL, "mode 0 powers off, 1 reboots");
		return;
	}
	if (pending != NONE || done) {
		agent_reply(&m->h, EBUSY, "a shutdown is under way");
		return;
	}
	ic_str_copy(m, IC_T_REASON, reason, sizeof(reason));
	agent_log_kmsg("%s requested by the host: %s", reboot ? "reboot" : "shutdown",
		       reason[0] ? reason : "(no reason given)");
	agent_reply(&m->h, 0, NULL);
	pending = reboot ? REBOOT : POWEROFF;
}

void power_run_pending(void)
{
	const char *cmd;
	pid_t pid;

	if (pending == NONE)
		return;
	cmd = pending == REBOOT ? (opts.reboot_cmd ? opts.reboot_cmd : "systemctl reboot || reboot")
				: (opts.poweroff_cmd ? opts.poweroff_cmd : "systemctl poweroff || poweroff");
	pending = NONE;
	done = true;
	setenv("FSVISOR_REASON", reason, 1);
	pid = fork();
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	if (pid < 0) {
		agent_log_kmsg("cannot run '%s': %s", cmd, strerror(errno));
		done = false;
		return;
	}
	/* The OS takes over from here; a test's command may let us go on. */
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	done = false;
}
