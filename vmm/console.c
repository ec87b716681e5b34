// SPDX-License-Identifier: MIT
/*
 * Console output: a ring of the newest bytes the guest wrote.  Writers
 * (vCPU threads, through the UART) never block; readers (stdout, the log,
 * control-socket subscribers) each keep their own cursor, and a reader
 * that falls more than a ring behind skips to the oldest byte kept.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/internal.h"

#define CONSOLE_RING (256 * 1024)

struct console {
	pthread_mutex_t lock;
	uint8_t *ring;
	uint64_t head;			/* total bytes ever written */
	int efd;
};

struct console *console_create(void)
{
	struct console *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->ring = malloc(CONSOLE_RING);
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!c->ring || c->efd < 0) {
		free(c->ring);
		if (c->efd >= 0)
			close(c->efd);
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

void console_destroy(struct console *c)
{
	if (!c)
		return;
	close(c->efd);
	free(c->ring);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void console_write(struct console *c, const uint8_t *buf, size_t len)
{
	uint64_t one = 1;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < len; i++)
		c->ring[(c->head + i) % CONSOLE_RING] = buf[i];
	c->head += len;
	pthread_mutex_unlock(&c->lock);
	if (write(c->efd, &one, sizeof(one)) < 0)
		return;	/* the counter is saturated: a wakeup is pending */
}

int console_eventfd(struct console *c)
{
	return c->efd;
}

uint64_t console_oldest(struct console *c)
{
	uint64_t oldest;

	pthread_mutex_lock(&c->lock);
	oldest = c->head > CONSOLE_RING ? c->head - CONSOLE_RING : 0;
	pthread_mutex_unlock(&c->lock);
	return oldest;
}

uint64_t console_head(struct console *c)
{
	uint64_t head;

	pthread_mutex_lock(&c->lock);
	head = c->head;
	pthread_mutex_unlock(&c->lock);
	return head;
}

size_t console_read(struct console *c, uint64_t *cursor, uint8_t *buf,
		    size_t len)
{
	size_t n;

	pthread_mutex_lock(&c->lock);
	if (c->head - *cursor > CONSOLE_RING)
		*cursor = c->head - CONSOLE_RING;
	n = c->head - *cursor;
	if (n > len)
		n = len;
	for (size_t i = 0; i < n; i++)
		buf[i] = c->ring[(*cursor + i) % CONSOLE_RING];
	*cursor += n;
	pthread_mutex_unlock(&c->lock);
	return n;
}
