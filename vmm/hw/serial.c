// SPDX-License-Identifier: MIT
/*
 * A 16550A UART (8250 family): divisor latch, 16-byte FIFOs, loopback,
 * and the interrupts Linux's 8250 driver uses (received data,
 * transmitter empty), on an ISA IRQ line.  Output goes to the console
 * ring.  Input beyond the 16-byte receive FIFO waits outside the UART
 * (in the worker), which refills the FIFO when the guest drains it, so a
 * guest that resets its FIFO loses at most what a real one would.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "vmm/internal.h"

#define RX_QUEUE 16	/* the 16550A receive FIFO */

#define UART_RBR 0
#define UART_IER 1
#define UART_IIR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xC0
#define LCR_DLAB 0x80
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02

struct serial {
	struct vm *vm;
	struct console *out;
	uint16_t port;
	int irq;
	pthread_mutex_t lock;
	uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
	bool thr_pending;		/* transmitter-empty interrupt owed */
	int line;			/* current IRQ level */
	uint8_t rx[RX_QUEUE];
	size_t rx_head, rx_count;
	int room_fd;			/* signalled when the FIFO empties */
};

static uint8_t iir_now(struct serial *s)
{
	uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO : 0;

	if ((s->ier & IER_RDI) && s->rx_count)
		return IIR_RDI | fifo;
	if ((s->ier & IER_THRI) && s->thr_pending)
		return IIR_THRI | fifo;
	return IIR_NONE | fifo;
}

/* Call with the lock held; raises or lowers the line on a change. */
static void update_irq(struct serial *s)
{
	int level = !(iir_now(s) & IIR_NONE);

	if (level != s->line) {
		s->line = level;
		vm_irq_line(s->vm, s->irq, level);
	}
}

static void rx_push(struct serial *s, uint8_t c)
{
	if (s->rx_count == RX_QUEUE)
		return;
	s->rx[(s->rx_head + s->rx_count) % RX_QUEUE] = c;
	s->rx_count++;
}

/* Tell the worker the FIFO has room for more of its queued input. */
static void signal_room(struct serial *s)
{
	uint64_t one = 1;

	if (s->room_fd >= 0 && write(s->room_fd, &one, sizeof(one)) < 0) {
		/* The counter is saturated: a wakeup is pending anyway. */
	}
}

static uint8_t msr_now(struct serial *s)
{
	if (s->mcr & MCR_LOOP) {
		/* Loopback: CTS=RTS, DSR=DTR, RI=OUT1, DCD=OUT2. */
		return (uint8_t)(((s->mcr & 0x02) << 3) | ((s->mcr & 0x01) << 5) |
				 ((s->mcr & 0x04) << 4) | ((s->mcr & 0x08) << 4));
	}
	return 0xB0;			/* DCD, DSR, CTS: a cable is there */
}

static void serial_io(void *opaque, uint64_t off, uint8_t *data,
		      unsigned int len, bool write)
{
	struct serial *s = opaque;
	uint8_t v = write ? data[0] : 0;
	bool dlab;

	if (len != 1) {
		if (!write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&s->lock);
	dlab = s->lcr & LCR_DLAB;
	if (write) {
		switch (off) {
		case UART_RBR:
			if (dlab) {
				s->dll = v;
			} else if (s->mcr & MCR_LOOP) {
				rx_push(s, v);
				s->thr_pending = true;
			} else {
				/* Sent at once: the transmitter is empty again. */
				console_write(s->out, &v, 1);
				s->thr_pending = true;
			}
			break;
		case UART_IER:
			if (dlab) {
				s->dlm = v;
			} else {
				/* Enabling THRI with an empty THR interrupts. */
				if ((v & IER_THRI) && !(s->ier & IER_THRI))
					s->thr_pending = true;
				s->ier = v & 0x0F;
			}
			break;
		case UART_IIR:		/* FCR */
			s->fcr = v & 0xC9;
			if (v & FCR_CLEAR_RX) {
				s->rx_count = 0;
				signal_room(s);
			}
			break;
		case UART_LCR:
			s->lcr = v;
			break;
		case UART_MCR:
			s->mcr = v & 0x1F;
			break;
		case UART_SCR:
			s->scr = v;
			break;
		default:
			break;	/* LSR and MSR are read-only */
		}
	} else {
		switch (off) {
		case UART_RBR:
			if (dlab) {
				v = s->dll;
			} else if (s->rx_count) {
				v = s->rx[s->rx_head];
				s->rx_head = (s->rx_head + 1) % RX_QUEUE;
				if (--s->rx_count == 0)
					signal_room(s);
			}
			break;
		case UART_IER:
			v = dlab ? s->dlm : s->ier;
			break;
		case UART_IIR:
			v = iir_now(s);
			/* Reading IIR acknowledges a THRE interrupt. */
			if ((v & 0x0F) == IIR_THRI)
				s->thr_pending = false;
			break;
		case UART_LCR:
			v = s->lcr;
			break;
		case UART_MCR:
			v = s->mcr;
			break;
		case UART_LSR:
			v = LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0);
			break;
		case UART_MSR:
			v = msr_now(s);
			break;
		case UART_SCR:
			v = s->scr;
			break;
		}
		data[0] = v;
	}
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

size_t serial_input(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	while (n < len && s->rx_count < RX_QUEUE && !(s->mcr & MCR_LOOP))
		rx_push(s, buf[n++]);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

void serial_reset(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	s->ier = s->lcr = s->mcr = s->scr = s->fcr = 0;
	s->dll = 12;			/* 9600 baud */
	s->dlm = 0;
	s->thr_pending = false;
	s->rx_count = 0;
	signal_room(s);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

void serial_set_room_fd(struct serial *s, int fd)
{
	pthread_mutex_lock(&s->lock);
	s->room_fd = fd;
	pthread_mutex_unlock(&s->lock);
}

struct serial *serial_create(struct vm *vm, uint16_t port, int irq,
			     struct console *out)
{
	struct serial *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->vm = vm;
	s->out = out;
	s->port = port;
	s->irq = irq;
	s->dll = 12;
	s->room_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	if (bus_register(&vm->pio, port, 8, serial_io, s, "serial")) {
		free(s);
		return NULL;
	}
	return s;
}

void serial_destroy(struct serial *s)
{
	if (!s)
		return;
	bus_unregister(&s->vm->pio, s->port, s);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* ---- saved state --------------------------------------------------------- */

enum { S_REGS = 1, S_THR_PENDING, S_LINE, S_RX, S_RX_HEAD, S_RX_COUNT };

int serial_save(struct serial *s, struct ss_writer *w)
{
	uint8_t regs[7];
	struct ss_section *sec = ss_section_begin(w, "dev:serial", 1);

	pthread_mutex_lock(&s->lock);
	regs[0] = s->ier, regs[1] = s->lcr, regs[2] = s->mcr, regs[3] = s->scr;
	regs[4] = s->fcr, regs[5] = s->dll, regs[6] = s->dlm;
	ss_put(sec, S_REGS, regs, sizeof(regs));
	ss_put_u8(sec, S_THR_PENDING, s->thr_pending);
	ss_put_u8(sec, S_LINE, (uint8_t)s->line);
	ss_put(sec, S_RX, s->rx, sizeof(s->rx));
	ss_put_u32(sec, S_RX_HEAD, (uint32_t)s->rx_head);
	ss_put_u32(sec, S_RX_COUNT, (uint32_t)s->rx_count);
	pthread_mutex_unlock(&s->lock);
	return ss_section_end(sec);
}

int serial_restore(struct serial *s, struct ss_reader *r, char *err, size_t errlen)
{
	struct ss_rsection *sec;
	uint8_t regs[7], thr, line;
	uint32_t head, count, version;

	sec = ss_section(r, "dev:serial", &version);
	if (!sec || version != 1)
		return vmm_fail(err, errlen, "section dev:serial is missing or of an unknown version");
	if (ss_get(sec, S_REGS, regs, sizeof(regs)) || ss_get_u8(sec, S_THR_PENDING, &thr) ||
	    ss_get_u8(sec, S_LINE, &line) || ss_get(sec, S_RX, s->rx, sizeof(s->rx)) ||
	    ss_get_u32(sec, S_RX_HEAD, &head) || ss_get_u32(sec, S_RX_COUNT, &count))
		return vmm_fail(err, errlen, "%s", ss_reader_error(r));
	if (head >= RX_QUEUE || count > RX_QUEUE || thr > 1 || line > 1)
		return vmm_fail(err, errlen, "section dev:serial: the FIFO state is out of range");
	pthread_mutex_lock(&s->lock);
	s->ier = regs[0], s->lcr = regs[1], s->mcr = regs[2], s->scr = regs[3];
	s->fcr = regs[4], s->dll = regs[5], s->dlm = regs[6];
	s->thr_pending = thr;
	s->rx_head = head;
	s->rx_count = count;
	/* The irqchips came back with the line as it was; KVM's count of it too. */
	s->line = line;
	if (line)
		vm_irq_line(s->vm, s->irq, 1);
	pthread_mutex_unlock(&s->lock);
	return 0;
}
