// SPDX-License-Identifier: MIT
/*
 * Events: one line per thing that happened ("vm web1 state running"),
 * kept in a ring of the newest EVENT_RING for the readers of the
 * "events" files.  A reader that falls a whole ring behind skips ahead.
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
	if (asprintf(&e->line, "%s %s %s\n", kind, name, text) < 0)
		e->line = NULL;
	e->seq = s->event_seq++;
	snprintf(e->kind, sizeof(e->kind), "%s", kind);
	snprintf(e->name, sizeof(e->name), "%s", name);
	log_info("event: %s %s %s", kind, name, text);
	svc_notify(s, SVC_CHANGED, "events");
	if (strcmp(kind, "vm") == 0)
		svc_notify(s, SVC_CHANGED, "vms/%s/events", name);
}

static bool matches(const struct event *e, const char *vm)
{
	return !vm || (strcmp(e->kind, "vm") == 0 && strcmp(e->name, vm) == 0);
}

ssize_t svc_events_read(struct service *s, uint64_t *cursor, const char *vm,
			char *buf, size_t len)
{
	size_t done = 0;

	if (s->event_seq - *cursor > EVENT_RING)
		*cursor = s->event_seq - EVENT_RING;
	while (*cursor < s->event_seq) {
		const struct event *e = &s->events[*cursor % EVENT_RING];
		size_t n = e->line ? strlen(e->line) : 0;

		if (matches(e, vm) && n) {
			/* Whole lines only; a line longer than the buffer is cut. */
			if (done + n > len) {
				if (done)
					break;
				n = len;
			}
			memcpy(buf + done, e->line, n);
			done += n;
		}
		(*cursor)++;
	}
	return done ? (ssize_t)done : -EAGAIN;
}

bool svc_events_pending(struct service *s, uint64_t cursor, const char *vm)
{
	if (s->event_seq - cursor > EVENT_RING)
		cursor = s->event_seq - EVENT_RING;
	for (; cursor < s->event_seq; cursor++)
		if (matches(&s->events[cursor % EVENT_RING], vm))
			return true;
	return false;
}

void svc_events_free(struct service *s)
{
	for (size_t i = 0; i < EVENT_RING; i++) {
		free(s->events[i].line);
		s->events[i].line = NULL;
	}
}
