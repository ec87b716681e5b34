// SPDX-License-Identifier: MIT
/*
 * The MAC table: (VLAN, MAC) -> port, with a bound on the whole table and
 * on each port, and aging.  Entries live in one array allocated at
 * creation; a chained hash over 32-bit indexes finds them in O(1) without
 * allocating per frame.  The hash is keyed with random secrets so that a
 * guest cannot choose source MACs that all land in one chain.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#include "vswitch/internal.h"

static uint32_t mac_hash(const struct mactable *t, uint64_t key)
{
	uint64_t x = (key ^ t->k0) * t->k1;

	x ^= x >> 31;
	x *= t->k2;
	return (uint32_t)(x >> t->shift);
}

static void random_keys(struct mactable *t)
{
	uint64_t k[3];
	struct timespec ts;

	if (getrandom(k, sizeof(k), GRND_NONBLOCK) != (ssize_t)sizeof(k)) {
		/* No entropy yet (early boot): the clock is better than nothing. */
		clock_gettime(CLOCK_MONOTONIC, &ts);
		k[0] = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL ^
		       (uint64_t)ts.tv_sec;
		k[1] = k[0] * 0xBF58476D1CE4E5B9ULL + (uintptr_t)t;
		k[2] = k[1] * 0x94D049BB133111EBULL + 1;
	}
	t->k0 = k[0];
	t->k1 = k[1] | 1;	/* odd multipliers keep every bit in play */
	t->k2 = k[2] | 1;
}

int mactable_init(struct mactable *t, uint32_t cap, uint32_t port_max)
{
	uint32_t nb = 16, i;
	unsigned int bits = 4;

	memset(t, 0, sizeof(*t));
	if (!cap || cap > (1u << 28))
		return -EINVAL;
	/* At least twice as many chains as entries: chains stay short. */
	while (nb < 2 * (uint64_t)cap) {
		nb <<= 1;
		bits++;
	}
	t->e = calloc(cap, sizeof(*t->e));
	t->bucket = malloc(nb * sizeof(*t->bucket));
	if (!t->e || !t->bucket) {
		mactable_free(t);
		return -ENOMEM;
	}
	for (i = 0; i < nb; i++)
		t->bucket[i] = MAC_NONE;
	for (i = 0; i < cap; i++)
		t->e[i].next = i + 1 < cap ? i + 1 : MAC_NONE;
	t->free_head = 0;
	t->cap = cap;
	t->port_max = port_max;
	t->shift = 64 - bits;
	random_keys(t);
	return 0;
}

void mactable_free(struct mactable *t)
{
	free(t->e);
	free(t->bucket);
	t->e = NULL;
	t->bucket = NULL;
}

static uint32_t find(const struct mactable *t, uint64_t key, uint32_t b)
{
	uint32_t i;

	for (i = t->bucket[b]; i != MAC_NONE; i = t->e[i].next)
		if (t->e[i].key == key)
			return i;
	return MAC_NONE;
}

static void unlink_entry(struct mactable *t, uint32_t i)
{
	struct mac_entry *e = &t->e[i];
	uint32_t *pp = &t->bucket[mac_hash(t, e->key)];

	while (*pp != i)
		pp = &t->e[*pp].next;
	*pp = e->next;
	t->port_count[e->port]--;
	t->count--;
	e->used = false;
	e->next = t->free_head;
	t->free_head = i;
}

void mactable_learn(struct mactable *t, uint64_t key, uint32_t port,
		    uint64_t now_ns)
{
	uint32_t b = mac_hash(t, key);
	uint32_t i = find(t, key, b);
	struct mac_entry *e;

	if (i != MAC_NONE) {
		e = &t->e[i];
		e->seen_ns = now_ns;
		if (e->port == port)
			return;
		if (t->port_count[port] >= t->port_max) {
			/* It left its old port but has no room on the new one. */
			unlink_entry(t, i);
			t->port_full++;
			return;
		}
		t->port_count[e->port]--;
		t->port_count[port]++;
		e->port = (uint16_t)port;
		t->moves++;
		return;
	}
	if (t->count >= t->cap) {
		t->table_full++;
		return;
	}
	if (t->port_count[port] >= t->port_max) {
		t->port_full++;
		return;
	}
	i = t->free_head;
	e = &t->e[i];
	t->free_head = e->next;
	e->key = key;
	e->seen_ns = now_ns;
	e->port = (uint16_t)port;
	e->used = true;
	e->next = t->bucket[b];
	t->bucket[b] = i;
	t->count++;
	t->port_count[port]++;
}

uint32_t mactable_lookup(const struct mactable *t, uint64_t key,
			 uint64_t now_ns, uint64_t aging_ns)
{
	uint32_t i = find(t, key, mac_hash(t, key));

	if (i == MAC_NONE || mac_expired(t->e[i].seen_ns, now_ns, aging_ns))
		return MAC_NONE;
	return t->e[i].port;
}

void mactable_forget_port(struct mactable *t, uint32_t port)
{
	uint32_t i;

	for (i = 0; i < t->cap && t->port_count[port]; i++)
		if (t->e[i].used && t->e[i].port == port)
			unlink_entry(t, i);
}

void mactable_age(struct mactable *t, uint64_t now_ns, uint64_t aging_ns)
{
	uint32_t i;

	for (i = 0; i < t->cap; i++) {
		if (t->e[i].used &&
		    mac_expired(t->e[i].seen_ns, now_ns, aging_ns)) {
			unlink_entry(t, i);
			t->aged++;
		}
	}
}
