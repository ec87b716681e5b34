/* SPDX-License-Identifier: MIT */
/*
 * Hooks that let the unit tests stop a process at chosen points inside
 * util functions.  Not part of util's public interface.
 */
#ifndef FSVISOR_UTIL_TEST_HOOKS_H
#define FSVISOR_UTIL_TEST_HOOKS_H

enum json_save_step {
	JSON_SAVE_CREATED,	/* temporary file exists, empty */
	JSON_SAVE_HALF_WRITTEN,	/* part of the text is written */
	JSON_SAVE_WRITTEN,	/* all text written, not yet fsynced */
	JSON_SAVE_SYNCED,	/* temporary file fsynced */
	JSON_SAVE_RENAMED,	/* renamed over the target */
	JSON_SAVE_DONE,		/* directory fsynced */
	JSON_SAVE_STEPS
};

/* Called at each step of json_file_save() when set. */
extern void (*json_save_step_hook)(enum json_save_step step);

#endif
