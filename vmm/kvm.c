// SPDX-License-Identifier: MIT
/* /dev/kvm: can we use it, and does it have what we need? */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm/internal.h"

static const struct {
	int cap;
	const char *name;
} required_caps[] = {
	{ KVM_CAP_IRQCHIP, "in-kernel irqchip" },
	{ KVM_CAP_USER_MEMORY, "user memory regions" },
	{ KVM_CAP_SET_TSS_ADDR, "KVM_SET_TSS_ADDR" },
	{ KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_SET_IDENTITY_MAP_ADDR" },
	{ KVM_CAP_EXT_CPUID, "KVM_GET_SUPPORTED_CPUID" },
	{ KVM_CAP_PIT2, "in-kernel PIT" },
	{ KVM_CAP_IMMEDIATE_EXIT, "immediate_exit" },
	{ KVM_CAP_MP_STATE, "multiprocessor state" },
	{ KVM_CAP_IRQFD, "irqfd" },
	{ KVM_CAP_IOEVENTFD, "ioeventfd" },
	{ KVM_CAP_IRQ_ROUTING, "GSI routing" },
	{ KVM_CAP_SIGNAL_MSI, "MSI injection" },
};

int kvm_open(int *kvm_fd, char *err, size_t errlen)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int api;

	if (fd < 0) {
		int e = errno;

		if (e == ENOENT)
			snprintf(err, errlen, "/dev/kvm does not exist: load the kvm-intel or kvm-amd module, or enable virtualization in the firmware");
		else if (e == EACCES || e == EPERM)
			snprintf(err, errlen, "/dev/kvm: permission denied (run as root or join the kvm group)");
		else
			snprintf(err, errlen, "/dev/kvm: %s", strerror(e));
		return -e;
	}
	api = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (api < 0) {
		snprintf(err, errlen, "/dev/kvm is not a KVM device (KVM_GET_API_VERSION: %s)",
			 strerror(errno));
		close(fd);
		return -ENOTSUP;
	}
	if (api != KVM_API_VERSION) {
		snprintf(err, errlen, "/dev/kvm speaks API version %d, we need %d",
			 api, KVM_API_VERSION);
		close(fd);
		return -ENOTSUP;
	}
	for (size_t i = 0; i < ARRAY_SIZE(required_caps); i++) {
		if (ioctl(fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0) {
			snprintf(err, errlen, "/dev/kvm lacks %s", required_caps[i].name);
			close(fd);
			return -ENOTSUP;
		}
	}
	*kvm_fd = fd;
	return 0;
}

int kvm_max_vcpus(int kvm_fd)
{
	int n = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);

	if (n <= 0)
		n = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	return n > 0 ? n : 4;
}

const char *vmm_kvm_problem(int *api)
{
	static char why[256];
	int fd;

	if (kvm_open(&fd, why, sizeof(why)))
		return why;
	if (api)
		*api = ioctl(fd, KVM_GET_API_VERSION, 0);
	close(fd);
	return NULL;
}

unsigned int vmm_max_cpus(void)
{
	char why[256];
	int fd, n;

	if (kvm_open(&fd, why, sizeof(why)))
		return VMM_MAX_CPUS;
	n = kvm_max_vcpus(fd);
	close(fd);
	return n < VMM_MAX_CPUS ? (unsigned int)n : VMM_MAX_CPUS;
}
