// SPDX-License-Identifier: MIT
/*
 * Saved states of VMs: Hyper-V's Save, Start from a saved state, and
 * Delete Saved State.
 *
 * A VM's saved state is the directory "saved" in its own directory,
 * written by its worker (checkpoint/: it exists once its manifest does).
 * `echo save > ctl` asks the worker to capture the VM into it and end
 * (VMS_SAVING, then VMS_SAVED when the worker has ended and the state
 * reads back); `echo start` starts a worker from it, and the state is
 * removed as soon as that worker runs the guest: from then on the guest
 * has moved on (its disks too), so the state could only take it back in
 * time.  A worker that ends while saving leaves either a complete state
 * (saved) or an unfinished one, which is removed (crashed, with why).
 * vm.json keeps "saved" and "saving", so both survive the service.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "service/internal.h"

/* Writing a guest's memory: far longer than a command, bounded all the same. */
#define SAVE_TIMEOUT_MS		(10 * 60 * 1000)
#define END_TIMEOUT_MS		10000

int vm_saved_check(const struct vm_obj *vm, char *why, size_t len)
{
	struct ss_reader *r;
	char *dir;
	int ret;

	if (asprintf(&dir, "%s/saved", vm->dir) < 0)
		return -ENOMEM;
	ret = ss_open(dir, &r, why, len);
	free(dir);
	if (!ret)
		ss_reader_free(r);
	return ret;
}

void vm_saved_remove(const struct vm_obj *vm)
{
	char *dir;

	if (asprintf(&dir, "%s/saved", vm->dir) < 0)
		return;
	svc_remove_dir(dir);
	free(dir);
}

/*
 * Save: the worker captures the VM into "saved" and ends.  Under the lock,
 * dropped while the worker works; the VM is saved when this returns 0.
 */
int vm_save_run(struct service *s, struct vm_obj *vm)
{
	enum vm_state before = vm->state;
	json_t *req, *reply = NULL;
	pid_t pid = vm->pid;
	char *dir;
	int ret;

	if (vm->state != VMS_RUNNING && vm->state != VMS_PAUSED)
		return vm_fail(s, vm, -EBUSY, "save: the VM is %s; a running or paused VM is saved",
			       vm_state_name(vm->state));
	if (asprintf(&dir, "%s/saved", vm->dir) < 0)
		return -ENOMEM;
	/* What an earlier save left unfinished. */
	vm_saved_remove(vm);
	vm->end_requested = "save";
	vm_set_state(s, vm, VMS_SAVING);
	req = json_pack("{s:s, s:s, s:s}", "cmd", "save", "dir", dir, "then", "stop");
	free(dir);
	vm->refs++;
	svc_unlock(s);
	ret = worker_request(vm->dirfd, req, NULL, 0, &reply, SAVE_TIMEOUT_MS);
	svc_lock(s);
	json_decref(req);
	if (ret == -EPROTO && vm->state == VMS_SAVING) {
		/* Refused or failed: the worker goes on running the guest. */
		char why[512];

		snprintf(why, sizeof(why), "%s",
			 json_string_value(json_object_get(reply, "error")) ?: "no reason given");
		json_decref(reply);
		vm->end_requested = NULL;
		vm_set_state(s, vm, before);
		vm_saved_remove(vm);
		vm_put(vm);
		return vm_fail(s, vm, -EIO, "save: %s; the VM goes on %s", why,
			       vm_state_name(before));
	}
	json_decref(reply);
	if (ret == -EAGAIN && pid > 0 && vm_is_active(vm)) {
		log_warn("vm %s: the save did not finish within %d s: ending the worker", vm->name,
			 SAVE_TIMEOUT_MS / 1000);
		kill(pid, SIGKILL);
	}
	/* Saved or not, the worker ends now; apply_exit() tells which. */
	if (!vm_wait_ended(s, vm, END_TIMEOUT_MS) && pid > 0) {
		kill(pid, SIGKILL);
		vm_wait_ended(s, vm, END_TIMEOUT_MS);
	}
	vm_put(vm);
	if (vm->state == VMS_SAVED)
		return 0;
	return vm_fail(s, vm, -EIO, "save: %s", vm->ended[0] ? vm->ended : "the worker ended");
}

/* Delete Saved State: the VM is off, as if it had been shut down. */
int vm_discard(struct service *s, struct vm_obj *vm)
{
	if (vm->state != VMS_SAVED)
		return vm_fail(s, vm, -EINVAL, "discard: the VM is %s; only a saved state is discarded",
			       vm_state_name(vm->state));
	vm_saved_remove(vm);
	snprintf(vm->ended, sizeof(vm->ended), "its saved state was discarded");
	vm->error[0] = '\0';
	vm_set_state(s, vm, VMS_OFF);
	return 0;
}

/*
 * A worker that was saving has ended (@ended says how): is there a saved
 * state now?  If so the VM is saved; if not, the unfinished one goes and
 * @ended says so.  Under the lock.
 */
bool vm_saved_settle(struct vm_obj *vm, char *ended, size_t len)
{
	char why[512];
	size_t n;

	if (vm_saved_check(vm, why, sizeof(why)) == 0) {
		snprintf(ended, len, "saved");
		return true;
	}
	vm_saved_remove(vm);
	n = strlen(ended);
	snprintf(ended + n, len - n, " while it was saving; the unfinished saved state was removed (%s)",
		 why);
	return false;
}
