// SPDX-License-Identifier: MIT
/*
 * CMOS RTC and NVRAM at ports 0x70/0x71.  The clock reads the host's
 * time (UTC, BCD, 24-hour); a guest that sets it gets an offset kept from
 * then on.  The other 114 bytes are RAM that survives a VM reset, as
 * CMOS does on real hardware.  The memory-size bytes are filled in as a
 * BIOS would.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint/checkpoint.h"
#include "vmm/internal.h"

#define REG_SEC 0x00
#define REG_MIN 0x02
#define REG_HOUR 0x04
#define REG_WDAY 0x06
#define REG_MDAY 0x07
#define REG_MON 0x08
#define REG_YEAR 0x09
#define REG_A 0x0A
#define REG_B 0x0B
#define REG_C 0x0C
#define REG_D 0x0D
#define REG_CENTURY 0x32

#define B_24H 0x02
#define B_BINARY 0x04
#define B_SET 0x80

struct cmos {
	struct vm *vm;
	pthread_mutex_t lock;
	uint8_t index;
	uint8_t ram[128];
	int64_t offset;			/* guest clock minus host clock, s */
	struct tm set;			/* fields written while SET */
};

static uint8_t to_bcd(int v)
{
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static int from_bcd(uint8_t v)
{
	return (v >> 4) * 10 + (v & 0xF);
}

static uint8_t encode(struct cmos *c, int v)
{
	return (c->ram[REG_B] & B_BINARY) ? (uint8_t)v : to_bcd(v);
}

static int decode(struct cmos *c, uint8_t v)
{
	return (c->ram[REG_B] & B_BINARY) ? v : from_bcd(v);
}

static uint8_t clock_read(struct cmos *c, uint8_t reg)
{
	time_t t = time(NULL) + c->offset;
	struct tm tm;

	gmtime_r(&t, &tm);
	switch (reg) {
	case REG_SEC:
		return encode(c, tm.tm_sec);
	case REG_MIN:
		return encode(c, tm.tm_min);
	case REG_HOUR:
		if (c->ram[REG_B] & B_24H)
			return encode(c, tm.tm_hour);
		/* 12-hour: PM is bit 7. */
		return (uint8_t)(encode(c, tm.tm_hour % 12 ? tm.tm_hour % 12 : 12) |
				 (tm.tm_hour >= 12 ? 0x80 : 0));
	case REG_WDAY:
		return encode(c, tm.tm_wday + 1);
	case REG_MDAY:
		return encode(c, tm.tm_mday);
	case REG_MON:
		return encode(c, tm.tm_mon + 1);
	case REG_YEAR:
		return encode(c, tm.tm_year % 100);
	case REG_CENTURY:
		return encode(c, (tm.tm_year + 1900) / 100);
	}
	return 0;
}

static bool is_clock(uint8_t reg)
{
	return reg <= REG_YEAR || reg == REG_CENTURY;
}

/* The guest finished setting the clock: remember how far off it is. */
static void clock_commit(struct cmos *c)
{
	time_t guest = timegm(&c->set);

	if (guest != (time_t)-1)
		c->offset = (int64_t)guest - (int64_t)time(NULL);
}

static void clock_write(struct cmos *c, uint8_t reg, uint8_t v)
{
	int x = decode(c, v & (reg == REG_HOUR ? 0x7F : 0xFF));

	switch (reg) {
	case REG_SEC:
		c->set.tm_sec = x;
		break;
	case REG_MIN:
		c->set.tm_min = x;
		break;
	case REG_HOUR:
		c->set.tm_hour = x;
		break;
	case REG_MDAY:
		c->set.tm_mday = x;
		break;
	case REG_MON:
		c->set.tm_mon = x - 1;
		break;
	case REG_YEAR:
		c->set.tm_year = (c->set.tm_year / 100) * 100 + x;
		break;
	case REG_CENTURY:
		c->set.tm_year = (x - 19) * 100 + c->set.tm_year % 100;
		break;
	}
	if (!(c->ram[REG_B] & B_SET))
		clock_commit(c);
}

static void cmos_io(void *opaque, uint64_t off, uint8_t *data, unsigned int len,
		    bool write)
{
	struct cmos *c = opaque;

	if (len != 1) {
		if (!write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&c->lock);
	if (off == 0) {
		if (write)
			c->index = data[0] & 0x7F;	/* bit 7: NMI mask */
		else
			data[0] = 0xFF;
	} else if (write) {
		uint8_t reg = c->index;

		if (is_clock(reg)) {
			if (reg != REG_WDAY) {
				if (c->set.tm_mday == 0) {
					time_t t = time(NULL) + c->offset;

					gmtime_r(&t, &c->set);
				}
				clock_write(c, reg, data[0]);
			}
		} else if (reg == REG_B) {
			bool was_set = c->ram[REG_B] & B_SET;

			c->ram[REG_B] = data[0];
			if (was_set && !(data[0] & B_SET))
				clock_commit(c);
		} else if (reg != REG_C && reg != REG_D) {
			c->ram[reg] = data[0];
		}
	} else {
		uint8_t reg = c->index;

		if (is_clock(reg))
			data[0] = clock_read(c, reg);
		else if (reg == REG_A)
			data[0] = c->ram[REG_A] & 0x7F;	/* never mid-update */
		else if (reg == REG_C)
			data[0] = 0;
		else if (reg == REG_D)
			data[0] = 0x80;			/* battery good */
		else
			data[0] = c->ram[reg];
	}
	pthread_mutex_unlock(&c->lock);
}

struct cmos *cmos_create(struct vm *vm)
{
	struct cmos *c = calloc(1, sizeof(*c));
	uint64_t low = vm->mem.region[0].size;
	uint64_t high = vm->mem.nregions > 1 ? vm->mem.region[1].size : 0;
	uint64_t ext_k = (low - MiB) / KiB;
	uint64_t above16 = low > 16 * MiB ? (low - 16 * MiB) / (64 * KiB) : 0;

	if (!c)
		return NULL;
	c->vm = vm;
	pthread_mutex_init(&c->lock, NULL);
	c->ram[REG_A] = 0x26;
	c->ram[REG_B] = B_24H;
	/* Memory sizes, as a PC BIOS records them. */
	c->ram[0x15] = 640 & 0xFF;
	c->ram[0x16] = 640 >> 8;
	if (ext_k > 0xFFFF)
		ext_k = 0xFFFF;
	c->ram[0x17] = c->ram[0x30] = (uint8_t)ext_k;
	c->ram[0x18] = c->ram[0x31] = (uint8_t)(ext_k >> 8);
	if (above16 > 0xFFFF)
		above16 = 0xFFFF;
	c->ram[0x34] = (uint8_t)above16;
	c->ram[0x35] = (uint8_t)(above16 >> 8);
	high /= 64 * KiB;
	c->ram[0x5B] = (uint8_t)high;
	c->ram[0x5C] = (uint8_t)(high >> 8);
	c->ram[0x5D] = (uint8_t)(high >> 16);
	if (bus_register(&vm->pio, 0x70, 2, cmos_io, c, "cmos")) {
		free(c);
		return NULL;
	}
	return c;
}

void cmos_destroy(struct cmos *c)
{
	if (!c)
		return;
	bus_unregister(&c->vm->pio, 0x70, c);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* ---- saved state --------------------------------------------------------- */

enum { C_INDEX = 1, C_RAM, C_OFFSET, C_SET };

int cmos_save(struct cmos *c, struct ss_writer *w)
{
	struct ss_section *s = ss_section_begin(w, "dev:cmos", 1);
	int32_t set[6];

	pthread_mutex_lock(&c->lock);
	set[0] = c->set.tm_sec, set[1] = c->set.tm_min, set[2] = c->set.tm_hour;
	set[3] = c->set.tm_mday, set[4] = c->set.tm_mon, set[5] = c->set.tm_year;
	ss_put_u8(s, C_INDEX, c->index);
	ss_put(s, C_RAM, c->ram, sizeof(c->ram));
	/* The guest's clock as an offset from the host's: it is read live again. */
	ss_put_u64(s, C_OFFSET, (uint64_t)c->offset);
	ss_put(s, C_SET, set, sizeof(set));
	pthread_mutex_unlock(&c->lock);
	return ss_section_end(s);
}

int cmos_restore(struct cmos *c, struct ss_reader *r, char *err, size_t errlen)
{
	struct ss_rsection *s;
	uint32_t version;
	uint64_t offset;
	int32_t set[6];
	uint8_t index;

	s = ss_section(r, "dev:cmos", &version);
	if (!s || version != 1)
		return vmm_fail(err, errlen, "section dev:cmos is missing or of an unknown version");
	if (ss_get_u8(s, C_INDEX, &index) || ss_get_u64(s, C_OFFSET, &offset) ||
	    ss_get(s, C_SET, set, sizeof(set)))
		return vmm_fail(err, errlen, "%s", ss_reader_error(r));
	/* A century either way is the most a guest can have set. */
	if ((int64_t)offset > 3155760000LL || (int64_t)offset < -3155760000LL)
		return vmm_fail(err, errlen, "section dev:cmos: the clock offset is out of range");
	pthread_mutex_lock(&c->lock);
	if (ss_get(s, C_RAM, c->ram, sizeof(c->ram))) {
		pthread_mutex_unlock(&c->lock);
		return vmm_fail(err, errlen, "%s", ss_reader_error(r));
	}
	c->index = index & 0x7F;
	c->offset = (int64_t)offset;
	c->set.tm_sec = set[0], c->set.tm_min = set[1], c->set.tm_hour = set[2];
	c->set.tm_mday = set[3], c->set.tm_mon = set[4], c->set.tm_year = set[5];
	pthread_mutex_unlock(&c->lock);
	return 0;
}
