/* SPDX-License-Identifier: MIT */
/*
 * Hooks that let tests stop a process at chosen points inside the disk
 * library, and keep fixed disks sparse where a test cannot afford the
 * space.  Not part of vhdx's public interface (see util/test_hooks.h for
 * the same idea in util).
 */
#ifndef FSVISOR_VHDX_TEST_HOOKS_H
#define FSVISOR_VHDX_TEST_HOOKS_H

#include <stdint.h>

/*
 * Called, when set, after each step of a metadata change: every write
 * and flush of a commit, each header copy, each stage of a resize.  A
 * crash test kills the process from here to stop it between any two.
 */
extern void (*vhdx_step_hook)(const char *step);

/*
 * Called, when set, instead of posix_fallocate() to give a fixed disk's
 * new blocks their space; returns 0 or a negative errno.  Lets a test
 * grow a fixed disk to terabytes on a small filesystem.
 */
extern int (*vhdx_reserve_hook)(int fd, uint64_t off, uint64_t len);

#endif
