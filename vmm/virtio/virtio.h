/* SPDX-License-Identifier: MIT */
/*
 * Virtio inside the worker: split virtqueues, the device core shared by
 * every virtio device, and the transport hooks.  The device core knows
 * nothing of PCI or KVM, so a device model can also be driven by a host
 * harness (bench/blk.sh) through the same code.
 */
#ifndef FSVISOR_VMM_VIRTIO_H
#define FSVISOR_VMM_VIRTIO_H

#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <sys/uio.h>

#include "vmm/internal.h"

#define VIRTQ_MAX_SIZE 1024
/* Queues of one device. */
#define VIRTQ_MAX_QUEUES 64
/* Longest indirect table we follow. */
#define VIRTQ_MAX_INDIRECT 1024

/* ---- split virtqueues (virtqueue.c) ------------------------------------ */

struct virtq {
	uint16_t size;			/* power of two, set by the driver */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool enabled;
	bool event_idx;			/* VIRTIO_RING_F_EVENT_IDX negotiated */
	bool indirect;			/* VIRTIO_RING_F_INDIRECT_DESC */

	/* Host views of the rings, checked when the queue is enabled. */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	const struct guest_mem *mem;

	uint16_t last_avail;		/* next ring slot to take */
	uint16_t used_idx;		/* next used slot (published or not) */
	uint16_t signalled;		/* used_idx at the last interrupt */
	bool ever_signalled;
};

/*
 * One request taken from the ring: device-readable buffers, then
 * writable ones, in @iov (room for @cap, set by the owner).
 */
struct virtq_elem {
	uint16_t head;
	unsigned int out_num;		/* readable (driver to device) */
	unsigned int in_num;		/* writable (device to driver) */
	uint64_t out_len;
	uint64_t in_len;		/* bytes the device may write */
	unsigned int cap;
	struct iovec *iov;
};

/*
 * Check the ring addresses against guest memory and alignment and make
 * the queue usable; -EINVAL with nothing changed when they are bad.
 */
int virtq_enable(struct virtq *q, const struct guest_mem *mem);
void virtq_disable(struct virtq *q);
/*
 * Take the next request.  1: @e holds it; 0: the ring is empty; -EINVAL:
 * the driver wrote something malformed (the device must stop using the
 * queue and ask for a reset).  Addresses, lengths, indexes, loops and
 * chain lengths are all checked; no access leaves guest RAM.
 */
int virtq_pop(struct virtq *q, struct virtq_elem *e);
/*
 * The request starting at descriptor @head, taken earlier (a restored
 * device's requests in flight): checked as virtq_pop() checks.
 */
int virtq_chain(struct virtq *q, uint16_t head, struct virtq_elem *e);
/*
 * Give back the last @n requests taken and not yet returned, as if they
 * had never been popped (the device found it cannot use them yet).
 */
void virtq_rewind(struct virtq *q, uint16_t n);
/* Requests taken and not yet returned (pushed). */
uint16_t virtq_held(const struct virtq *q);
/* Return @head with @len bytes written; visible after virtq_publish(). */
void virtq_push(struct virtq *q, uint16_t head, uint32_t len);
/* Make pushed entries visible to the driver (one store of used->idx). */
void virtq_publish(struct virtq *q);
/* After publishing: does the driver want an interrupt for what is new? */
bool virtq_should_interrupt(struct virtq *q);
/*
 * Before sleeping on an empty ring: ask the driver to notify us of new
 * requests.  Returns true if some arrived meanwhile (do not sleep).
 */
bool virtq_enable_notify(struct virtq *q);
/*
 * The same when the device needs more than the ring holds now: notify
 * once the avail index passes @idx (taken requests were given back with
 * virtq_rewind(), so they do not count as new).
 */
bool virtq_enable_notify_at(struct virtq *q, uint16_t idx);
/* While the device polls the ring, the driver need not notify. */
void virtq_disable_notify(struct virtq *q);
/* Requests waiting in the ring (a cheap look, for polling). */
bool virtq_has_work(struct virtq *q);

/* ---- the device core (virtio.c) --------------------------------------- */

struct virtio_dev;

/* What a transport offers the device core. */
struct virtio_transport {
	/* Interrupt the driver: a queue's vector, or the config vector (-1). */
	void (*interrupt)(struct virtio_dev *dev, int queue);
	void *opaque;
};

struct virtio_dev_ops {
	const char *name;
	uint32_t device_id;
	uint32_t pci_class;		/* class, subclass, prog-if */
	size_t config_size;
	void (*config_read)(struct virtio_dev *dev, uint32_t off, uint8_t *data,
			    unsigned int len);
	void (*config_write)(struct virtio_dev *dev, uint32_t off,
			     const uint8_t *data, unsigned int len);
	/* The driver set DRIVER_OK: queues may start. */
	int (*activate)(struct virtio_dev *dev);
	/*
	 * Back to the reset state.  Must not return while a request is
	 * still being processed: after it, guest memory is not touched.
	 */
	void (*reset)(struct virtio_dev *dev);
	/*
	 * Saved state beyond the transport and the queues (records from 200
	 * on in the function's section), and back; both optional.
	 */
	void (*save)(struct virtio_dev *dev, struct ss_section *s);
	int (*restore)(struct virtio_dev *dev, struct ss_rsection *s, char *err,
		       size_t errlen);
};

struct virtio_dev {
	const struct virtio_dev_ops *ops;
	void *impl;
	struct virtio_transport transport;
	const struct guest_mem *mem;

	pthread_mutex_t lock;
	uint64_t host_features;
	uint64_t guest_features;	/* as written by the driver */
	uint8_t status;
	uint8_t config_generation;
	unsigned int nqueues;
	uint16_t queue_max;
	struct virtq *vq;
	bool broken;
};

int virtio_dev_init(struct virtio_dev *dev, const struct virtio_dev_ops *ops,
		    void *impl, unsigned int nqueues, uint16_t queue_max,
		    uint64_t features, const struct guest_mem *mem);
void virtio_dev_destroy(struct virtio_dev *dev);
/* Driver wrote the status byte: negotiation checks, DRIVER_OK, reset. */
void virtio_set_status(struct virtio_dev *dev, uint8_t status);
/* Enable queue @n with the addresses the driver set; -EINVAL if bad. */
int virtio_queue_enable(struct virtio_dev *dev, unsigned int n);
/*
 * The driver broke the rules: stop using the device, set NEEDS_RESET and
 * tell the driver through a configuration interrupt.
 */
void virtio_dev_broken(struct virtio_dev *dev, const char *why);
bool virtio_has_feature(const struct virtio_dev *dev, unsigned int bit);
/* The device's config changed: new generation, config interrupt. */
void virtio_config_changed(struct virtio_dev *dev);

/* ---- virtio over PCI (virtio_pci.c) ----------------------------------- */

struct virtio_pci;
/* Put @dev on the VM's PCI bus, with MSI-X and ioeventfd kicks. */
struct virtio_pci *virtio_pci_create(struct vm *vm, struct virtio_dev *dev,
				     char *err, size_t errlen);
void virtio_pci_destroy(struct virtio_pci *vp);
/*
 * The eventfd KVM signals when the driver notifies queue @n; devices
 * poll it in their own threads.
 */
int virtio_pci_kick_fd(struct virtio_pci *vp, unsigned int n);
/* Power-on state: the device reset, MSI-X vectors masked. */
void virtio_pci_reset(void *vp);

/* ---- virtio-blk (virtio_blk.c) ---------------------------------------- */

struct vm_disk_config;
struct virtio_blk;

/*
 * A virtio-blk device on @disk.  @kick_fds[n] is signalled when the
 * driver notifies queue n; the device runs its own I/O thread.
 */
int virtio_blk_create(const struct vm_disk_config *disk,
		      const struct guest_mem *mem, struct virtio_blk **out,
		      char *err, size_t errlen);
struct virtio_dev *virtio_blk_dev(struct virtio_blk *b);
/* Start the I/O thread, polling @kick_fd for queue 0. */
int virtio_blk_start(struct virtio_blk *b, int kick_fd);
void virtio_blk_destroy(struct virtio_blk *b);
/* Create, put on the VM's PCI bus and start a virtio-blk for @disk. */
int virtio_blk_attach(struct vm *vm, const struct vm_disk_config *disk, char *err,
		      size_t errlen);

/* ---- virtio-net (virtio_net.c) ------------------------------------------ */

struct vm_nic_config;
struct virtio_net;

/* Counters of one NIC: "in" came from the guest, "out" went to it. */
struct virtio_net_stats {
	bool link;
	uint64_t in_packets, in_bytes;
	uint64_t out_packets, out_bytes;
	uint64_t rx_dropped;		/* frames for the guest it never got */
	uint64_t tx_errors;		/* frames from the guest never sent */
};

/*
 * A virtio-net device with @nic's MAC and no backend (link down).  Queue
 * 0 is receiveq1, queue 1 transmitq1; the device runs its own I/O thread.
 */
int virtio_net_create(const struct vm_nic_config *nic,
		      const struct guest_mem *mem, struct virtio_net **out,
		      char *err, size_t errlen);
struct virtio_dev *virtio_net_dev(struct virtio_net *n);
/* Start the I/O thread, polling the kick eventfds of both queues. */
int virtio_net_start(struct virtio_net *n, int rx_kick_fd, int tx_kick_fd);
/*
 * Use @fd (AF_UNIX SOCK_SEQPACKET, one Ethernet frame per message) as
 * the backend: link up, replacing any previous backend.  The NIC owns
 * @fd from here on, also on failure.
 */
int virtio_net_connect(struct virtio_net *n, int fd);
/* Close the backend: link down.  Nothing happens without one. */
void virtio_net_disconnect(struct virtio_net *n);
void virtio_net_get_stats(struct virtio_net *n, struct virtio_net_stats *st);
void virtio_net_destroy(struct virtio_net *n);
/* Create, put on the VM's PCI bus and start NIC number @index. */
int virtio_net_attach(struct vm *vm, const struct vm_nic_config *nic,
		      unsigned int index, char *err, size_t errlen);

/* ---- virtio-vsock (vsock.c, vsock_host.c) --------------------------------- */

struct vm_vsock_config;
struct virtio_vsock;

/* Guest CIDs a VM may have: 3 to 2^32 - 2. */
bool vsock_cid_valid(uint64_t cid);
/*
 * A virtio-vsock device for guest CID @cfg->cid whose host side is Unix
 * sockets in directory @dir (it listens on @dir/vsock at once).  Queue 0
 * is rx, 1 tx, 2 the event queue; the device runs its own I/O thread.
 */
int virtio_vsock_create(const struct vm_vsock_config *cfg, const char *dir,
			const struct guest_mem *mem, struct virtio_vsock **out,
			char *err, size_t errlen);
struct virtio_dev *virtio_vsock_dev(struct virtio_vsock *v);
/* Start the I/O thread, polling the kick eventfds of the three queues. */
int virtio_vsock_start(struct virtio_vsock *v, const int kick_fds[3]);
void virtio_vsock_destroy(struct virtio_vsock *v);
/* Create, put on the VM's PCI bus and start the VM's vsock device. */
int virtio_vsock_attach(struct vm *vm, const struct vm_vsock_config *cfg,
			const char *dir, char *err, size_t errlen);
/*
 * After a restore: every connection is reset (host sockets closed) and
 * the guest gets VIRTIO_VSOCK_EVENT_TRANSPORT_RESET on the event queue
 * (now, or when it next gives an event buffer).  Listening sockets, the
 * guest's and the host's "vsock", are kept.
 */
void vsock_transport_reset(struct virtio_vsock *v);
/*
 * The device's part of a saved state, and back: the guest CID, the next
 * host port, the event queue's position and whether a TRANSPORT_RESET
 * is owed.  Connections are not saved: a restore resets them (call
 * vsock_transport_reset() once the VM's queues are restored).
 */
int vsock_state_save(struct virtio_vsock *v, json_t **out);
int vsock_state_restore(struct virtio_vsock *v, const json_t *in, char *err,
			size_t errlen);
/* Counters for "status". */
json_t *vsock_stats_json(struct virtio_vsock *v);
/* Tests and benchmarks: the receive buffer each connection advertises. */
void vsock_set_buf_alloc(struct virtio_vsock *v, uint32_t bytes);
/*
 * Fuzzing, on a device whose thread was never started: one pass of the
 * I/O thread's loop (events ready now, the transmit and receive rings).
 */
void vsock_run_once(struct virtio_vsock *v);

#endif /* FSVISOR_VMM_VIRTIO_H */
