/* SPDX-License-Identifier: MIT */
/*
 * fsapi: the service's object tree as a FUSE file system, on libfuse3's
 * low-level API with its multithreaded loop.  The contract it serves is
 * docs/filesystem.md.
 */
#ifndef FSVISOR_FSAPI_H
#define FSVISOR_FSAPI_H

#include <stdbool.h>
#include <stddef.h>

struct service;
struct fsapi;

struct fsapi_opts {
	const char *mount_point;
	/* Let other users through (the modes still decide): --allow-other. */
	bool allow_other;
	/* libfuse's request tracing on stderr. */
	bool debug;
};

/* Mount @svc at the mount point; a sentence in @err on failure. */
int fsapi_mount(struct service *svc, const struct fsapi_opts *opts,
		struct fsapi **out, char *err, size_t errlen);
/*
 * Serve requests until the file system is unmounted or SIGTERM, SIGINT
 * or SIGHUP arrives.
 */
int fsapi_run(struct fsapi *fs);
/* Unmount (if still mounted) and free; the service stays open. */
void fsapi_destroy(struct fsapi *fs);

#endif /* FSVISOR_FSAPI_H */
