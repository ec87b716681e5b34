// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for virtio-vsock's packet path: the input is a run
 * of packets the guest puts in its transmit ring (headers as they come,
 * or with the addresses made right so connections get somewhere), with
 * receive buffers given now and then and host programs that connect,
 * write and close in between.  The device runs without its thread, one
 * pass at a time (vsock_run_once).  Nothing it does may touch memory
 * outside guest RAM or its own (the sanitizers watch), and every used
 * length must fit the buffer it was given.
 */
#include <endian.h>
#include <fcntl.h>
#include <linux/virtio_vsock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/virtio/virtio.h"

#define RAM (4 * 1024 * 1024)
#define QS 64
#define HDR ((uint32_t)sizeof(struct virtio_vsock_hdr))
#define CID 3
#define RXBUF 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct guest_mem mem;
static struct virtio_vsock *vs;
static struct virtio_dev *dev;
static char dir[] = "/tmp/fsvisor-vsock-fuzz.XXXXXX";
static int listener = -1;
static uint16_t avail[3], next_desc[3];
static uint64_t next_buf;
static const uint64_t qbase[3] = { 0x10000, 0x20000, 0x30000 };

static struct vring_desc *desc(int q, uint16_t i)
{
	return (struct vring_desc *)(mem.base + qbase[q]) + i;
}

static void offer(int q, uint64_t addr, uint32_t len, uint16_t flags)
{
	struct vring_avail *a = (struct vring_avail *)(mem.base + qbase[q] + 0x4000);
	uint16_t i = next_desc[q]++ % QS;

	*desc(q, i) = (struct vring_desc){ .addr = addr, .len = len, .flags = flags };
	a->ring[avail[q] % QS] = i;
	avail[q]++;
	__atomic_store_n(&a->idx, avail[q], __ATOMIC_RELEASE);
}

static uint64_t buf_alloc(uint32_t len)
{
	uint64_t a;

	if (next_buf + len > RAM)
		next_buf = 0x100000;
	a = next_buf;
	next_buf += (len + 63) & ~63u;
	return a;
}

static void setup(void)
{
	struct vm_vsock_config cfg = { .cid = CID };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char err[256];

	if (mem_create(&mem, RAM, err, sizeof(err)) || !mkdtemp(dir) ||
	    virtio_vsock_create(&cfg, dir, &mem, &vs, err, sizeof(err)))
		abort();
	dev = virtio_vsock_dev(vs);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/vsock_1", dir);
	listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (bind(listener, (struct sockaddr *)&sa, sizeof(sa)) || listen(listener, 512))
		abort();
}

/* A fresh driver: the device reset (its connections gone), queues set up. */
static void restart(void)
{
	const uint8_t feat = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			     VIRTIO_CONFIG_S_FEATURES_OK;

	virtio_set_status(dev, 0);
	memset(mem.base, 0, 0x40000);
	dev->guest_features = 1ULL << VIRTIO_F_VERSION_1;
	virtio_set_status(dev, feat);
	for (int q = 0; q < 3; q++) {
		dev->vq[q].size = QS;
		dev->vq[q].desc_gpa = qbase[q];
		dev->vq[q].avail_gpa = qbase[q] + 0x4000;
		dev->vq[q].used_gpa = qbase[q] + 0x8000;
		if (virtio_queue_enable(dev, (unsigned int)q))
			abort();
		avail[q] = next_desc[q] = 0;
	}
	virtio_set_status(dev, feat | VIRTIO_CONFIG_S_DRIVER_OK);
	next_buf = 0x100000;
}

/* Host programs: take what connected to vsock_1, write to it or close it. */
static void host_side(uint8_t what)
{
	int fd;

	while ((fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		if (what & 1) {
			if (send(fd, "host bytes", 10, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
				/* gone already */
			}
		}
		if (what & 2)
			close(fd);
		else
			close(fd);	/* one way or another: no descriptors pile up */
	}
	if (what & 4) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/vsock", dir);
		if (connect(c, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		    send(c, "CONNECT 5\nxyz", what & 8 ? 13 : 6, MSG_NOSIGNAL) < 0) {
			/* refused */
		}
		close(c);
	}
}

static void check_used(void)
{
	struct vring_used *u = (struct vring_used *)(mem.base + qbase[0] + 0x8000);
	uint16_t n = __atomic_load_n(&u->idx, __ATOMIC_ACQUIRE);

	for (uint16_t i = 0; i < n && i < QS; i++)
		if (u->ring[i].len > RXBUF)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!vs)
		setup();
	restart();
	while (size >= 3 + HDR) {
		uint8_t flags = data[0];
		uint32_t len = (uint32_t)(data[1] | data[2] << 8) % 2048;
		struct virtio_vsock_hdr h;
		uint64_t b;

		memcpy(&h, data + 3, HDR);
		data += 3 + HDR;
		size -= 3 + HDR;
		if (len > size)
			len = (uint32_t)size;
		if (flags & 1) {
			h.src_cid = htole64(CID);
			h.dst_cid = htole64(2);
			h.type = htole16(VIRTIO_VSOCK_TYPE_STREAM);
			h.op = htole16((uint16_t)(le16toh(h.op) % 8));
			h.dst_port = htole32(le32toh(h.dst_port) % 3);
		}
		if (flags & 2)
			h.len = htole32(len);
		b = buf_alloc(HDR + len);
		memcpy(mem.base + b, &h, HDR);
		memcpy(mem.base + b + HDR, data, len);
		data += len;
		size -= len;
		if (flags & 4) {
			/* Header and payload in two descriptors. */
			uint16_t first = next_desc[1] % QS;

			offer(1, b, HDR, VRING_DESC_F_NEXT);
			desc(1, first)->next = (uint16_t)((first + 1) % QS);
			*desc(1, (uint16_t)((first + 1) % QS)) =
				(struct vring_desc){ .addr = b + HDR, .len = len };
			next_desc[1]++;
		} else {
			offer(1, b, HDR + len, 0);
		}
		if (flags & 8)
			for (int i = 0; i < 4; i++)
				offer(0, buf_alloc(RXBUF), RXBUF, VRING_DESC_F_WRITE);
		if (flags & 16)
			offer(2, buf_alloc(4), 4, VRING_DESC_F_WRITE);
		if (flags & 32)
			host_side(flags >> 6 | (uint8_t)(len & 12));
		if (flags & 64)
			vsock_transport_reset(vs);
		/* The driver never has more outstanding than the ring holds. */
		if ((uint16_t)(avail[1] + 2) >= QS || (flags & 128) || avail[0] + 8 >= QS) {
			vsock_run_once(vs);
			vsock_run_once(vs);
			check_used();
			restart();
		}
	}
	vsock_run_once(vs);
	vsock_run_once(vs);
	check_used();
	return 0;
}
