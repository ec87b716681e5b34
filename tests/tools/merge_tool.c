// SPDX-License-Identifier: MIT
/*
 * Test driver for merges (vdisk_merge).
 *
 *   merge_tool merge [--kill-at N] CHILD
 *	Merge CHILD into its parent, killing this process with SIGKILL at
 *	the Nth step of the library's metadata changes (vhdx/test_hooks.h);
 *	the step is named on stderr first.  Exit 0 with "completed after K
 *	steps" when the merge finishes before step N.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhdx/test_hooks.h"
#include "vhdx/vhdx.h"

static long kill_at, steps;

static void step_hook(const char *step)
{
	steps++;
	if (kill_at && steps == kill_at) {
		fprintf(stderr, "killed at step %ld: %s\n", steps, step);
		fflush(stderr);
		raise(SIGKILL);
	}
}

int main(int argc, char **argv)
{
	char err[1024];
	int i = 2;

	if (argc >= 3 && strcmp(argv[1], "merge") == 0) {
		if (argc == 5 && strcmp(argv[2], "--kill-at") == 0) {
			kill_at = atol(argv[3]);
			i = 4;
		}
		if (i != argc - 1)
			goto usage;
		vhdx_step_hook = step_hook;
		if (vdisk_merge(argv[i], NULL, err, sizeof(err))) {
			fprintf(stderr, "merge_tool: %s\n", err);
			return 1;
		}
		printf("completed after %ld steps\n", steps);
		return 0;
	}
usage:
	fprintf(stderr, "usage: see the comment at the top of merge_tool.c\n");
	return 2;
}
