// SPDX-License-Identifier: MIT
/*
 * Guest RAM in a saved state.
 *
 * Saving writes the memfd into the state's sparse memory file: pages the
 * guest never wrote (the memfd's holes) are skipped without being read,
 * zero chunks stay holes, each chunk gets its checksum.
 *
 * Restoring does not read it all first: the cost of a restore would grow
 * with the guest's memory.  The memfd is registered with userfaultfd in
 * missing-page mode; a loader thread answers each first touch of a chunk
 * (by a vCPU, KVM, or a device thread) by reading that chunk from the
 * file, checking its CRC-32C and copying it in (UFFDIO_COPY), and loads
 * the other chunks in the background meanwhile.  A chunk whose checksum
 * does not match is never given to the guest: the VM stops with the
 * reason.  Decided against a private mapping of the file: that would give
 * the guest anonymous copy-on-write memory instead of its memfd (which
 * sharing, ballooning and handing memory to another worker need), and
 * nothing would check the data.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmm/state/state.h"

struct mem_loader {
	struct vm *vm;
	struct ss_reader *r;
	int uffd;
	int stop_fd;			/* eventfd-like pipe: stop loading */
	int stop_wr;
	uint64_t nchunks;
	uint8_t *loaded;		/* a bit per chunk */
	_Atomic uint64_t pending;	/* chunks not yet in */
	uint64_t next;			/* the background's next chunk */
	uint8_t *buf;			/* one chunk, read from the file */
	pthread_t thread;
	bool failed;
	char error[256];
};

int state_save_memory(struct vm *vm, struct ss_writer *w, char *err, size_t errlen)
{
	if (ss_write_memory(w, vm->mem.base, vm->mem.size, vm->mem.memfd))
		return vmm_fail(err, errlen, "%s", ss_writer_error(w));
	return 0;
}

static bool is_loaded(struct mem_loader *l, uint64_t c)
{
	return l->loaded[c / 8] & (1u << (c % 8));
}

/* Bring chunk @c in; false (with the reason) if it must not be. */
static bool load_chunk(struct mem_loader *l, uint64_t c)
{
	struct uffdio_copy copy = {
		.dst = (uint64_t)(uintptr_t)(l->vm->mem.base + c * SS_CHUNK),
		.src = (uint64_t)(uintptr_t)l->buf,
		.len = SS_CHUNK,
	};
	int n;

	if (is_loaded(l, c))
		return true;
	if (ss_memory_chunk_zero(l->r, c)) {
		memset(l->buf, 0, SS_CHUNK);
	} else {
		n = pread_full(ss_memory_fd(l->r), l->buf, SS_CHUNK, c * SS_CHUNK);
		if (n) {
			snprintf(l->error, sizeof(l->error),
				 "saved memory chunk %llu cannot be read: %s",
				 (unsigned long long)c, strerror(-n));
			return false;
		}
		if (!ss_memory_chunk_ok(l->r, c, l->buf)) {
			snprintf(l->error, sizeof(l->error),
				 "saved memory chunk %llu (guest RAM 0x%llx) is damaged: its checksum does not match",
				 (unsigned long long)c, (unsigned long long)(c * SS_CHUNK));
			return false;
		}
	}
	if (ioctl(l->uffd, UFFDIO_COPY, &copy) < 0 && errno != EEXIST) {
		snprintf(l->error, sizeof(l->error), "UFFDIO_COPY of chunk %llu: %s",
			 (unsigned long long)c, strerror(errno));
		return false;
	}
	l->loaded[c / 8] |= (uint8_t)(1u << (c % 8));
	atomic_fetch_sub(&l->pending, 1);
	return true;
}

/* A first touch: the chunk around it, then wake whoever waits. */
static bool serve_fault(struct mem_loader *l, const struct uffd_msg *msg)
{
	uint64_t addr = msg->arg.pagefault.address;
	uint64_t off = addr - (uint64_t)(uintptr_t)l->vm->mem.base;
	uint64_t c = off / SS_CHUNK;

	if (off >= l->vm->mem.size)
		return true;
	if (!load_chunk(l, c))
		return false;
	/* A chunk loaded by another's fault: this one still waits. */
	struct uffdio_range wake = { .start = (uint64_t)(uintptr_t)l->vm->mem.base +
					      c * SS_CHUNK, .len = SS_CHUNK };
	ioctl(l->uffd, UFFDIO_WAKE, &wake);
	return true;
}

static void fail_vm(struct mem_loader *l)
{
	l->failed = true;
	vm_post_event(l->vm, VMEV_FAILED, "restoring memory: %s", l->error);
}

static void *loader_thread(void *arg)
{
	struct mem_loader *l = arg;

	pthread_setname_np(pthread_self(), "memload");
	while (atomic_load(&l->pending) && !l->failed) {
		struct pollfd p[2] = { { .fd = l->uffd, .events = POLLIN },
				       { .fd = l->stop_fd, .events = POLLIN } };
		struct uffd_msg msg;

		/* Faults first; the background only while none waits. */
		if (poll(p, 2, 0) > 0) {
			if (p[1].revents)
				break;
			if (read(l->uffd, &msg, sizeof(msg)) == sizeof(msg) &&
			    msg.event == UFFD_EVENT_PAGEFAULT && !serve_fault(l, &msg))
				fail_vm(l);
			continue;
		}
		while (l->next < l->nchunks && is_loaded(l, l->next))
			l->next++;
		if (l->next < l->nchunks && !load_chunk(l, l->next))
			fail_vm(l);
	}
	if (!l->failed && !atomic_load(&l->pending)) {
		/*
		 * All in: RAM is an ordinary memfd again, whose holes (punched
		 * by a reset or a balloon later) read as zeros.
		 */
		struct uffdio_range range = {
			.start = (uint64_t)(uintptr_t)l->vm->mem.base, .len = l->vm->mem.size,
		};

		ioctl(l->uffd, UFFDIO_UNREGISTER, &range);
		log_info("restore: all %llu chunks of guest RAM are in",
			 (unsigned long long)l->nchunks);
	}
	/*
	 * A vCPU may still wait on a chunk of a failed restore: answer it
	 * with zeros so that it can stop (the VM does not run on).
	 */
	while (l->failed) {
		struct pollfd p[2] = { { .fd = l->uffd, .events = POLLIN },
				       { .fd = l->stop_fd, .events = POLLIN } };
		struct uffd_msg msg;
		struct uffdio_zeropage z;

		if (poll(p, 2, -1) <= 0 || p[1].revents)
			break;
		if (read(l->uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;
		z.range.start = msg.arg.pagefault.address & ~4095ULL;
		z.range.len = 4096;
		z.mode = 0;
		ioctl(l->uffd, UFFDIO_ZEROPAGE, &z);
	}
	return NULL;
}

int state_memory_start(struct vm *vm, struct ss_reader *r, char *err, size_t errlen)
{
	struct mem_loader *l = calloc(1, sizeof(*l));
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MISSING_SHMEM };
	struct uffdio_register reg = {
		.range = { .start = (uint64_t)(uintptr_t)vm->mem.base, .len = vm->mem.size },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	int pipefd[2] = { -1, -1 }, ret;

	if (!l)
		return -ENOMEM;
	l->vm = vm;
	l->r = r;
	l->nchunks = vm->mem.size / SS_CHUNK;
	atomic_store(&l->pending, l->nchunks);
	l->loaded = calloc(1, (size_t)(l->nchunks + 7) / 8);
	l->buf = aligned_alloc(4096, SS_CHUNK);
	l->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (!l->loaded || !l->buf || l->uffd < 0 || pipe2(pipefd, O_CLOEXEC) < 0) {
		ret = vmm_fail(err, errlen, "userfaultfd: %s", strerror(errno));
		goto fail;
	}
	l->stop_fd = pipefd[0];
	l->stop_wr = pipefd[1];
	if (ioctl(l->uffd, UFFDIO_API, &api) < 0 || ioctl(l->uffd, UFFDIO_REGISTER, &reg) < 0) {
		ret = vmm_fail(err, errlen, "userfaultfd on guest RAM: %s", strerror(errno));
		goto fail;
	}
	ret = pthread_create(&l->thread, NULL, loader_thread, l);
	if (ret) {
		ret = vmm_fail(err, errlen, "cannot start the memory loader: %s", strerror(ret));
		goto fail;
	}
	vm->loader = l;
	return 0;
fail:
	if (l->uffd >= 0)
		close(l->uffd);
	if (pipefd[0] >= 0) {
		close(pipefd[0]);
		close(pipefd[1]);
	}
	free(l->loaded);
	free(l->buf);
	free(l);
	return ret;
}

uint64_t state_memory_pending(struct vm *vm)
{
	return vm->loader ? atomic_load(&vm->loader->pending) : 0;
}

void state_memory_finish(struct vm *vm, bool discard)
{
	struct mem_loader *l = vm->loader;
	struct uffdio_range range;

	if (!l)
		return;
	if (discard && write(l->stop_wr, "x", 1) < 0)
		log_warn("cannot stop the memory loader");
	pthread_join(l->thread, NULL);
	range.start = (uint64_t)(uintptr_t)vm->mem.base;
	range.len = vm->mem.size;
	ioctl(l->uffd, UFFDIO_UNREGISTER, &range);
	close(l->uffd);
	close(l->stop_fd);
	close(l->stop_wr);
	ss_reader_free(l->r);
	free(l->loaded);
	free(l->buf);
	free(l);
	vm->loader = NULL;
}
