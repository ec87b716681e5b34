// SPDX-License-Identifier: MIT
/*
 * The i8042 keyboard controller, as much as guests need: its status and
 * command bytes, self tests, and the CPU reset line (command 0xFE, or
 * bit 0 of the output port cleared), which is how many guests reboot.
 * There is no keyboard behind it.
 */
#include <stdlib.h>
#include <string.h>

#include "checkpoint/checkpoint.h"
#include "vmm/internal.h"

#define STATUS_OBF 0x01
#define STATUS_SYS 0x04
#define STATUS_CMD 0x08

struct i8042 {
	struct vm *vm;
	pthread_mutex_t lock;
	uint8_t cmd_byte;
	uint8_t out_port;
	uint8_t pending;		/* command waiting for a data byte */
	uint8_t obuf[4];
	int olen;
	bool last_was_cmd;
};

static void reply(struct i8042 *k, uint8_t v)
{
	if (k->olen < (int)sizeof(k->obuf))
		k->obuf[k->olen++] = v;
}

static void command(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case 0x20:
		reply(k, k->cmd_byte);
		break;
	case 0x60:			/* write command byte */
	case 0xD1:			/* write output port */
	case 0xD2:			/* write keyboard output buffer */
	case 0xD3:
	case 0xD4:			/* write to the aux device */
		k->pending = cmd;
		break;
	case 0xA7:
		k->cmd_byte |= 0x20;
		break;
	case 0xA8:
		k->cmd_byte &= (uint8_t)~0x20;
		break;
	case 0xA9:			/* aux interface test: passed */
	case 0xAB:			/* keyboard interface test */
		reply(k, 0x00);
		break;
	case 0xAA:			/* controller self test */
		reply(k, 0x55);
		break;
	case 0xAD:
		k->cmd_byte |= 0x10;
		break;
	case 0xAE:
		k->cmd_byte &= (uint8_t)~0x10;
		break;
	case 0xD0:
		reply(k, k->out_port);
		break;
	default:
		/* 0xF0-0xFF pulse output lines; line 0 is CPU reset. */
		if (cmd >= 0xF0 && !(cmd & 1))
			vm_post_event(k->vm, VMEV_RESET, "i8042 reset line");
		break;
	}
}

static void data_in(struct i8042 *k, uint8_t v)
{
	uint8_t p = k->pending;

	k->pending = 0;
	switch (p) {
	case 0x60:
		k->cmd_byte = v;
		break;
	case 0xD1:
		k->out_port = v;
		if (!(v & 1))
			vm_post_event(k->vm, VMEV_RESET, "i8042 output port reset");
		break;
	case 0xD2:
	case 0xD3:
		reply(k, v);
		break;
	case 0xD4:
		reply(k, 0xFE);		/* no mouse: resend */
		break;
	default:
		/* A keyboard command: acknowledge; reset also passes BAT. */
		reply(k, 0xFA);
		if (v == 0xFF)
			reply(k, 0xAA);
		break;
	}
}

static void i8042_io(void *opaque, uint64_t off, uint8_t *data,
		     unsigned int len, bool write)
{
	struct i8042 *k = opaque;

	if (len != 1) {
		if (!write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&k->lock);
	if (off == 0) {			/* port 0x60 */
		if (write) {
			data_in(k, data[0]);
			k->last_was_cmd = false;
		} else if (k->olen) {
			data[0] = k->obuf[0];
			memmove(k->obuf, k->obuf + 1, (size_t)--k->olen);
		} else {
			data[0] = 0;
		}
	} else {			/* port 0x64 */
		if (write) {
			command(k, data[0]);
			k->last_was_cmd = true;
		} else {
			data[0] = STATUS_SYS | (k->olen ? STATUS_OBF : 0) |
				  (k->last_was_cmd ? STATUS_CMD : 0);
		}
	}
	pthread_mutex_unlock(&k->lock);
}

static void i8042_port64(void *opaque, uint64_t off, uint8_t *data,
			 unsigned int len, bool write)
{
	(void)off;
	i8042_io(opaque, 4, data, len, write);
}

struct i8042 *i8042_create(struct vm *vm)
{
	struct i8042 *k = calloc(1, sizeof(*k));

	if (!k)
		return NULL;
	k->vm = vm;
	k->cmd_byte = 0x47;		/* interrupts on, system flag, translate */
	k->out_port = 0x01;		/* reset line high (inactive) */
	pthread_mutex_init(&k->lock, NULL);
	if (bus_register(&vm->pio, 0x60, 1, i8042_io, k, "i8042") ||
	    bus_register(&vm->pio, 0x64, 1, i8042_port64, k, "i8042")) {
		bus_unregister(&vm->pio, 0x60, k);
		free(k);
		return NULL;
	}
	return k;
}

void i8042_destroy(struct i8042 *k)
{
	if (!k)
		return;
	bus_unregister(&k->vm->pio, 0x60, k);
	bus_unregister(&k->vm->pio, 0x64, k);
	pthread_mutex_destroy(&k->lock);
	free(k);
}

/* ---- saved state --------------------------------------------------------- */

enum { K_CMD = 1, K_OUT_PORT, K_PENDING, K_OBUF, K_OLEN, K_LAST_CMD };

int i8042_save(struct i8042 *k, struct ss_writer *w)
{
	struct ss_section *s = ss_section_begin(w, "dev:i8042", 1);

	pthread_mutex_lock(&k->lock);
	ss_put_u8(s, K_CMD, k->cmd_byte);
	ss_put_u8(s, K_OUT_PORT, k->out_port);
	ss_put_u8(s, K_PENDING, k->pending);
	ss_put(s, K_OBUF, k->obuf, sizeof(k->obuf));
	ss_put_u8(s, K_OLEN, (uint8_t)k->olen);
	ss_put_u8(s, K_LAST_CMD, k->last_was_cmd);
	pthread_mutex_unlock(&k->lock);
	return ss_section_end(s);
}

int i8042_restore(struct i8042 *k, struct ss_reader *r, char *err, size_t errlen)
{
	struct ss_rsection *s;
	uint8_t cmd, out, pending, obuf[4], olen, last;
	uint32_t version;

	s = ss_section(r, "dev:i8042", &version);
	if (!s || version != 1)
		return vmm_fail(err, errlen, "section dev:i8042 is missing or of an unknown version");
	if (ss_get_u8(s, K_CMD, &cmd) || ss_get_u8(s, K_OUT_PORT, &out) ||
	    ss_get_u8(s, K_PENDING, &pending) || ss_get(s, K_OBUF, obuf, sizeof(obuf)) ||
	    ss_get_u8(s, K_OLEN, &olen) || ss_get_u8(s, K_LAST_CMD, &last))
		return vmm_fail(err, errlen, "%s", ss_reader_error(r));
	if (olen > sizeof(k->obuf) || last > 1)
		return vmm_fail(err, errlen, "section dev:i8042: the output buffer is out of range");
	pthread_mutex_lock(&k->lock);
	k->cmd_byte = cmd;
	k->out_port = out;
	k->pending = pending;
	memcpy(k->obuf, obuf, sizeof(obuf));
	k->olen = olen;
	k->last_was_cmd = last;
	pthread_mutex_unlock(&k->lock);
	return 0;
}
