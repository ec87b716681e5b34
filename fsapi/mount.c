// SPDX-License-Identifier: MIT
/*
 * Mounting: a FUSE session named "fsvisor", with the kernel checking
 * permissions against the modes the service gives (default_permissions),
 * served by libfuse's multithreaded loop.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fsapi/internal.h"
#include "util/util.h"

/*
 * Control writes wait (a start for the guest to run, a shutdown for the
 * guest to power off); each one holds a thread, so allow plenty.
 */
#define MAX_THREADS 64

int fsapi_mount(struct service *svc, const struct fsapi_opts *opts,
		struct fsapi **out, char *err, size_t errlen)
{
	struct fsapi *fs = calloc(1, sizeof(*fs));
	char *argv[8];
	int argc = 0, ret;
	struct fuse_args args;

	if (!fs)
		return -ENOMEM;
	fs->svc = svc;
	fs->mount_point = strdup(opts->mount_point);
	inodes_init(&fs->inodes);
	pthread_mutex_init(&fs->lock, NULL);
	fs->handles.next = fs->handles.prev = &fs->handles;

	argv[argc++] = "fsvisor";
	argv[argc++] = "-o";
	argv[argc++] = opts->allow_other ?
		"fsname=fsvisor,subtype=fsvisor,default_permissions,allow_other" :
		"fsname=fsvisor,subtype=fsvisor,default_permissions";
	if (opts->debug)
		argv[argc++] = "-d";
	argv[argc] = NULL;
	args = (struct fuse_args)FUSE_ARGS_INIT(argc, argv);
	fs->se = fuse_session_new(&args, &fsapi_ops, sizeof(fsapi_ops), fs);
	fuse_opt_free_args(&args);
	if (!fs->se) {
		snprintf(err, errlen, "cannot create the FUSE session");
		fsapi_destroy(fs);
		return -EIO;
	}
	ret = notifier_start(fs);
	if (ret) {
		snprintf(err, errlen, "cannot start the notifier: %s", strerror(-ret));
		fsapi_destroy(fs);
		return ret;
	}
	if (fuse_session_mount(fs->se, fs->mount_point) != 0) {
		snprintf(err, errlen, "cannot mount on %s (is /dev/fuse there, and %s a directory?)",
			 fs->mount_point, fs->mount_point);
		fsapi_destroy(fs);
		return -EIO;
	}
	fs->mounted = true;
	service_set_notify(svc, notifier_queue, fs);
	*out = fs;
	return 0;
}

int fsapi_run(struct fsapi *fs)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	int ret;

	if (!cfg)
		return -ENOMEM;
	fuse_loop_cfg_set_max_threads(cfg, MAX_THREADS);
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	if (fuse_set_signal_handlers(fs->se) != 0) {
		fuse_loop_cfg_destroy(cfg);
		return -EIO;
	}
	ret = fuse_session_loop_mt(fs->se, cfg);
	fuse_remove_signal_handlers(fs->se);
	fuse_loop_cfg_destroy(cfg);
	return ret < 0 ? ret : 0;
}

void fsapi_destroy(struct fsapi *fs)
{
	if (!fs)
		return;
	if (fs->svc)
		service_set_notify(fs->svc, NULL, NULL);
	notifier_stop(fs);
	if (fs->se) {
		if (fs->mounted)
			fuse_session_unmount(fs->se);
		fuse_session_destroy(fs->se);
	}
	/* Files still open when the session ended. */
	while (fs->handles.next != &fs->handles) {
		struct handle *h = fs->handles.next;

		h->next->prev = &fs->handles;
		fs->handles.next = h->next;
		if (h->ph)
			fuse_pollhandle_destroy(h->ph);
		service_close_file(h->file);
		free(h);
	}
	inodes_free(&fs->inodes);
	pthread_mutex_destroy(&fs->lock);
	free(fs->mount_point);
	free(fs);
}
