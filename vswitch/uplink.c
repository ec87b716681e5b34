// SPDX-License-Identifier: MIT
/*
 * The uplink of an external switch: a host NIC read and written through
 * an AF_PACKET socket (docs/vswitch.md says why not a Linux bridge).
 *
 * The NIC is put in promiscuous mode through a packet membership, which
 * the kernel counts and drops when the socket closes, so a crashed worker
 * leaves the NIC as it found it.  PACKET_IGNORE_OUTGOING keeps what we
 * (and the host) transmit on the NIC from coming back to us.  The kernel
 * takes VLAN tags off received frames before packet sockets see them and
 * reports them in PACKET_AUXDATA; we put them back, into the headroom
 * before the frame, so the engine sees the frame as it was on the wire.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vswitch/worker.h"

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

/* An Ethernet interface that is not a loopback or a TUN/TAP device. */
static int check_nic(const char *ifname, char *err, size_t errlen)
{
	struct ifreq ifr = { 0 };
	int s, ret = 0;

	if (!ifname[0] || strlen(ifname) >= IFNAMSIZ || !wk_if_exists(ifname)) {
		snprintf(err, errlen, "there is no interface named '%s'", ifname);
		return -ENODEV;
	}
	if (wk_if_is_tun(ifname)) {
		snprintf(err, errlen, "%s is a TUN/TAP device, not a NIC: an uplink must be a host NIC (a TAP, such as a switch's host interface, would loop frames back into a switch)",
			 ifname);
		return -EINVAL;
	}
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_LOOPBACK)) {
		snprintf(err, errlen, "%s is the loopback interface", ifname);
		ret = -EINVAL;
	} else if (ioctl(s, SIOCGIFHWADDR, &ifr) == 0 &&
		   ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
		snprintf(err, errlen, "%s is not an Ethernet interface", ifname);
		ret = -EINVAL;
	}
	close(s);
	return ret;
}

static int set_int(int fd, int level, int opt, int val)
{
	return setsockopt(fd, level, opt, &val, sizeof(val)) < 0 ? -errno : 0;
}

int wk_uplink_open(const char *ifname, char *err, size_t errlen)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET };
	struct packet_mreq mr = { .mr_type = PACKET_MR_PROMISC };
	int fd, ret;

	ret = check_nic(ifname, err, errlen);
	if (ret)
		return ret;
	/* Protocol 0: nothing is queued until bind() names the interface. */
	fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "packet socket: %s", strerror(errno));
		return ret;
	}
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = (int)if_nametoindex(ifname);
	mr.mr_ifindex = sll.sll_ifindex;
	if ((ret = set_int(fd, SOL_PACKET, PACKET_AUXDATA, 1)) ||
	    (ret = set_int(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1))) {
		snprintf(err, errlen, "packet socket options: %s", strerror(-ret));
		goto fail;
	}
	/* Deeper queues than the defaults absorb bursts; best effort. */
	if (set_int(fd, SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20))
		set_int(fd, SOL_SOCKET, SO_RCVBUF, 4 << 20);
	if (set_int(fd, SOL_SOCKET, SO_SNDBUFFORCE, 4 << 20))
		set_int(fd, SOL_SOCKET, SO_SNDBUF, 4 << 20);
	/* Up before bind(): binding to a down NIC leaves an ENETDOWN error. */
	ret = wk_if_set_up(ifname);
	if (ret) {
		snprintf(err, errlen, "bringing %s up: %s", ifname, strerror(-ret));
		goto fail;
	}
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		ret = -errno;
		snprintf(err, errlen, "binding to %s: %s", ifname, strerror(errno));
		goto fail;
	}
	if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr)) < 0) {
		ret = -errno;
		snprintf(err, errlen, "promiscuous mode on %s: %s", ifname, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return ret;
}

/*
 * Make a received message a frame as it was on the wire: false for our
 * own transmissions (if the kernel could not ignore them); a VLAN tag the
 * kernel took off is written back in front of the frame's type field.
 */
bool wk_uplink_fixup(struct msghdr *mh, uint8_t **frame, uint32_t *len)
{
	const struct sockaddr_ll *sll = mh->msg_name;
	struct cmsghdr *cm;

	if (mh->msg_namelen >= sizeof(*sll) && sll->sll_pkttype == PACKET_OUTGOING)
		return false;
	for (cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		struct tpacket_auxdata aux;
		uint16_t tpid;
		uint8_t *f;

		if (cm->cmsg_level != SOL_PACKET || cm->cmsg_type != PACKET_AUXDATA ||
		    cm->cmsg_len < CMSG_LEN(sizeof(aux)))
			continue;
		memcpy(&aux, CMSG_DATA(cm), sizeof(aux));
		if (!(aux.tp_status & TP_STATUS_VLAN_VALID) || *len < 12)
			break;
		tpid = (aux.tp_status & TP_STATUS_VLAN_TPID_VALID) ?
			aux.tp_vlan_tpid : ETH_P_8021Q;
		/* The receive slot keeps WK_HEADROOM bytes free before the frame. */
		f = *frame - 4;
		memmove(f, *frame, 12);
		f[12] = (uint8_t)(tpid >> 8);
		f[13] = (uint8_t)tpid;
		f[14] = (uint8_t)(aux.tp_vlan_tci >> 8);
		f[15] = (uint8_t)aux.tp_vlan_tci;
		*frame = f;
		*len += 4;
		break;
	}
	return true;
}
