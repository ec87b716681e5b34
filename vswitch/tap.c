// SPDX-License-Identifier: MIT
/*
 * The host's side of an internal or external switch: a TAP device.
 *
 * The device is not made persistent, so it exists exactly as long as our
 * descriptor: closing it (at stop, when the switch becomes private, or
 * when the process dies in any way) removes the interface.  A name that
 * is already taken is refused instead of attached to, so we never adopt,
 * and later delete, somebody else's device.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vswitch/worker.h"

bool wk_if_exists(const char *ifname)
{
	return if_nametoindex(ifname) != 0;
}

/* A TUN/TAP device has tun_flags in sysfs. */
bool wk_if_is_tun(const char *ifname)
{
	char path[96];
	struct stat st;

	snprintf(path, sizeof(path), "/sys/class/net/%s/tun_flags", ifname);
	return stat(path, &st) == 0;
}

int wk_if_set_up(const char *ifname)
{
	struct ifreq ifr = { 0 };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int ret = 0;

	if (s < 0)
		return -errno;
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		ret = -errno;
	} else if (!(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
			ret = -errno;
	}
	close(s);
	return ret;
}

int wk_tap_open(const char *ifname, char *err, size_t errlen)
{
	struct ifreq ifr = { 0 };
	int fd, ret;

	if (!ifname || !ifname[0] || strlen(ifname) >= IFNAMSIZ ||
	    strchr(ifname, '/') || strchr(ifname, ' ') || strchr(ifname, ':')) {
		snprintf(err, errlen, "'%s' is not a usable interface name (1 to %d characters, no '/', ':' or spaces)",
			 ifname ? ifname : "", IFNAMSIZ - 1);
		return -EINVAL;
	}
	if (wk_if_exists(ifname)) {
		snprintf(err, errlen, "an interface named %s already exists", ifname);
		return -EEXIST;
	}
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "/dev/net/tun: %s", strerror(errno));
		return ret;
	}
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		ret = -errno;
		snprintf(err, errlen, "creating the TAP device %s: %s", ifname, strerror(errno));
		close(fd);
		return ret;
	}
	/* Someone made a persistent TAP of that name since we looked: not ours. */
	if (ioctl(fd, TUNGETIFF, &ifr) == 0 && (ifr.ifr_flags & IFF_PERSIST)) {
		snprintf(err, errlen, "an interface named %s already exists", ifname);
		close(fd);
		return -EEXIST;
	}
	ret = wk_if_set_up(ifname);
	if (ret) {
		snprintf(err, errlen, "bringing %s up: %s", ifname, strerror(-ret));
		close(fd);
		return ret;
	}
	return fd;
}
