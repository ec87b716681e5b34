// SPDX-License-Identifier: MIT
/*
 * Events: one line per thing that happened ("vm web1 state running"),
 * kept in a ring of the newest EVENT_RING.  The "events" files are logs,
 * not pipes: a file's size is the number of bytes of event lines it ever
 * held (since the service started), a read at an offset returns the
 * lines from there and ends at the end, and poll() or a growing size
 * tells a follower there is more.  So `cat`, `cp -r`, `grep -r` and `tar`
 * finish, and `tail -f` or `fsvisor events` follow.
 *
 * Each event has its position in two streams: every event (the top
 * "events"), and its VM's (vms/NAME/events) when it is about a VM.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "service/internal.h"

void svc_event(struct service *s, const char *kind, const char *name,
	       const char *fmt, ...)
{
	struct event *e = &s->events[s->event_seq % EVENT_RING];
	struct vm_obj *vm = strcmp(kind, "vm") == 0 ? vm_find(s, name) : NULL;
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	/* One line each: whatever the text holds, keep it on its line. */
	for (char *p = text; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	free(e->line);
	if (asprintf(&e->line, "%s %s %s\n", kind, name, text) < 0) {
		e->line = NULL;
		e->len = 0;
	} else {
		e->len = strlen(e->line);
	}
	e->seq = s->event_seq++;
	e->off = s->events_bytes;
	s->events_bytes += e->len;
	e->vm_off = vm ? vm->event_bytes : 0;
	e->for_vm = vm != NULL;
	svc_touch(&s->events_time);
	if (vm) {
		vm->event_bytes += e->len;
		vm->events_time = s->events_time;
	}
	snprintf(e->kind, sizeof(e->kind), "%s", kind);
	snprintf(e->name, sizeof(e->name), "%s", name);
	log_info("event: %s %s %s", kind, name, text);
	svc_notify(s, SVC_CHANGED, "events");
	if (vm)
		svc_notify(s, SVC_CHANGED, "vms/%s/events", name);
}

static bool matches(const struct event *e, const char *vm)
{
	return !vm || (e->for_vm && strcmp(e->name, vm) == 0);
}

/* Where @e starts in the stream of @vm (all events when NULL). */
static uint64_t stream_off(const struct event *e, const char *vm)
{
	return vm ? e->vm_off : e->off;
}

ssize_t svc_events_read(struct service *s, const char *vm, uint64_t *pos,
			char *buf, size_t len)
{
	uint64_t first = s->event_seq > EVENT_RING ? s->event_seq - EVENT_RING : 0;
	size_t done = 0;

	for (uint64_t seq = first; seq < s->event_seq && done < len; seq++) {
		const struct event *e = &s->events[seq % EVENT_RING];
		uint64_t start = stream_off(e, vm);
		size_t skip, n;

		if (!matches(e, vm) || !e->len || start + e->len <= *pos)
			continue;
		/* Only before the oldest line kept can there be a gap: skip it. */
		if (start > *pos && !done)
			*pos = start;
		skip = (size_t)(*pos + done - start);
		n = e->len - skip;
		if (n > len - done)
			n = len - done;
		memcpy(buf + done, e->line + skip, n);
		done += n;
	}
	return (ssize_t)done;
}

void svc_events_free(struct service *s)
{
	for (size_t i = 0; i < EVENT_RING; i++) {
		free(s->events[i].line);
		s->events[i].line = NULL;
	}
}

/* ---- the logs' files ------------------------------------------------------ */

static uint64_t all_size(struct service *s, void *obj, struct timespec *mtime)
{
	(void)obj;
	if (s->events_bytes)
		*mtime = s->events_time;
	return s->events_bytes;
}

static ssize_t all_fetch(struct service *s, void *obj, uint64_t *pos, void *buf, size_t len)
{
	(void)obj;
	return svc_events_read(s, NULL, pos, buf, len);
}

const struct log_ops events_log = { .size = all_size, .fetch = all_fetch };

static uint64_t vm_size(struct service *s, void *obj, struct timespec *mtime)
{
	struct vm_obj *vm = obj;

	(void)s;
	if (vm->event_bytes)
		*mtime = vm->events_time;
	return vm->event_bytes;
}

static ssize_t vm_fetch(struct service *s, void *obj, uint64_t *pos, void *buf, size_t len)
{
	return svc_events_read(s, ((struct vm_obj *)obj)->name, pos, buf, len);
}

const struct log_ops vm_events_log = { .size = vm_size, .fetch = vm_fetch };
