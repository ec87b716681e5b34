// SPDX-License-Identifier: MIT
/*
 * A very small IPv4 end on the first NIC: it answers ARP requests and
 * ICMP echo requests for its own address ("ip=A.B.C.D"), and pings
 * "peer=A.B.C.D" (ARP first).
 *
 * Tests:
 *  - "net": ARP for the peer, echo requests every ~500 ms until the first
 *    reply (PASS) or for ~15 s (FAIL no reply from PEER).  "pingsize=N"
 *    sets the echo payload (default 56; up to 8972 makes frames that span
 *    several receive buffers).
 *  - "netflood": "floodcount=N" (default 2000) broadcast frames of
 *    ethertype 0x88B5 carrying a sequence number, as fast as the ring
 *    takes them; PASS once the device has completed all of them.  A host
 *    peer that reads slowly pushes the guest back: nothing may be lost.
 * Both wait for the link first ("net: link down" once, then the
 * configuration interrupt that says it is up; at most "linkwait=N"
 * seconds, default 60).
 *
 * In idle mode the guest keeps answering, reports link changes and, with
 * "ping_every=N", pings the peer every N seconds ("net: reply from PEER
 * seq K" or "net: no reply from PEER seq K").  "netmac=MAC" sends and
 * answers with that MAC instead of the device's.
 */
#include "guest.h"
#include "netdev.h"

#define ETH_ARP 0x0806
#define ETH_IP 0x0800
#define ETH_FLOOD 0x88B5		/* IEEE local experimental */
#define PING_ID 0x4653
#define PING_MAX 8972			/* 9000-byte IP packets */
#define RETRY_US 500000
#define TICK_US 100000

static const uint8_t broadcast[6] = { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF };

static struct {
	bool up;
	bool link;
	unsigned int config_seen;
	uint32_t ip, peer;
	uint8_t peer_mac[6];
	bool peer_known;
	uint16_t ip_id;
	uint32_t pingsize;
	/* The echo request in flight. */
	uint16_t seq;
	bool outstanding;
	bool sent;			/* the request itself left (not just ARP) */
	bool replied;
	unsigned int replies;
	char peer_text[16];
} st;

static uint8_t rxframe[16384];
static volatile unsigned int ticks;

static void tick_irq(void)
{
	ticks++;
}

/* ---- bytes ------------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

/* The Internet checksum (RFC 1071) of @len bytes. */
static uint16_t csum(const uint8_t *p, uint32_t len)
{
	uint32_t sum = 0;

	for (uint32_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xFFFF) + (sum >> 16);
	return (uint16_t)~sum;
}

static bool parse_ip(const char *s, uint32_t *out)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++) {
		unsigned int octet = 0, digits = 0;

		while (s && *s >= '0' && *s <= '9' && digits < 4) {
			octet = octet * 10 + (unsigned int)(*s++ - '0');
			digits++;
		}
		if (!digits || octet > 255)
			return false;
		v = v << 8 | octet;
		if (i < 3 && *s++ != '.')
			return false;
	}
	*out = v;
	return true;
}

static uint32_t arg_num(const char *key, uint32_t dflt, uint32_t max)
{
	const char *p = cmdline_arg(key);
	uint32_t v = 0;

	if (!p || *p < '0' || *p > '9')
		return dflt;
	while (*p >= '0' && *p <= '9' && v <= max)
		v = v * 10 + (uint32_t)(*p++ - '0');
	return v > max ? max : v;
}

static void format_ip(uint32_t ip, char *out)
{
	char *p = out;

	for (int i = 3; i >= 0; i--) {
		unsigned int o = (ip >> (8 * i)) & 0xFF;

		if (o >= 100)
			*p++ = (char)('0' + o / 100);
		if (o >= 10)
			*p++ = (char)('0' + o / 10 % 10);
		*p++ = (char)('0' + o % 10);
		if (i)
			*p++ = '.';
	}
	*p = 0;
}

/* ---- sending ------------------------------------------------------------ */

static uint8_t *eth_begin(const uint8_t *dst, uint16_t type)
{
	uint8_t *f = netdev_tx_begin();

	if (!f)
		return NULL;
	memcpy(f, dst, 6);
	memcpy(f + 6, netdev_mac, 6);
	put16(f + 12, type);
	return f;
}

static void arp_send(uint16_t oper, const uint8_t *tha, uint32_t tpa, const uint8_t *dst)
{
	uint8_t *f = eth_begin(dst, ETH_ARP), *a;

	if (!f)
		return;
	a = f + 14;
	put16(a, 1);			/* Ethernet */
	put16(a + 2, ETH_IP);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, oper);
	memcpy(a + 8, netdev_mac, 6);
	put32(a + 14, st.ip);
	memcpy(a + 18, tha, 6);
	put32(a + 24, tpa);
	/* Padded to the Ethernet minimum, as NICs do. */
	memset(f + 42, 0, 18);
	netdev_tx_commit(60);
}

static void ip_header(uint8_t *ip, uint32_t total, uint8_t proto, uint32_t dst)
{
	ip[0] = 0x45;
	ip[1] = 0;
	put16(ip + 2, (uint16_t)total);
	put16(ip + 4, st.ip_id++);
	put16(ip + 6, 0);
	ip[8] = 64;
	ip[9] = proto;
	put16(ip + 10, 0);
	put32(ip + 12, st.ip);
	put32(ip + 16, dst);
	put16(ip + 10, csum(ip, 20));
}

static uint8_t pattern(uint16_t seq, uint32_t i)
{
	return (uint8_t)(seq * 7 + i);
}

/* Send echo request st.seq (or ARP for the peer first); false if no room. */
static bool ping_send(void)
{
	uint8_t *f, *icmp;
	uint32_t n = st.pingsize;

	if (!st.peer_known) {
		arp_send(1, (const uint8_t[6]){ 0 }, st.peer, broadcast);
		return true;
	}
	f = eth_begin(st.peer_mac, ETH_IP);
	if (!f)
		return false;
	icmp = f + 34;
	icmp[0] = 8;
	icmp[1] = 0;
	put16(icmp + 2, 0);
	put16(icmp + 4, PING_ID);
	put16(icmp + 6, st.seq);
	for (uint32_t i = 0; i < n; i++)
		icmp[8 + i] = pattern(st.seq, i);
	put16(icmp + 2, csum(icmp, 8 + n));
	ip_header(f + 14, 28 + n, 1, st.peer);
	netdev_tx_commit(14 + 28 + n);
	st.sent = true;
	return true;
}

/* ---- receiving ----------------------------------------------------------- */

static void handle_arp(const uint8_t *f, uint32_t len)
{
	const uint8_t *a = f + 14;
	uint32_t spa, tpa;

	if (len < 42 || get16(a) != 1 || get16(a + 2) != ETH_IP || a[4] != 6 || a[5] != 4)
		return;
	spa = get32(a + 14);
	tpa = get32(a + 24);
	if (spa == st.peer && st.peer) {
		bool first = !st.peer_known;

		memcpy(st.peer_mac, a + 8, 6);
		st.peer_known = true;
		/* The echo request that waited for the address goes now. */
		if (first && st.outstanding && !st.sent)
			ping_send();
	}
	if (get16(a + 6) == 1 && tpa == st.ip)
		arp_send(2, a + 8, spa, a + 8);
}

static void echo_reply(const uint8_t *f, uint32_t iplen, uint32_t ihl)
{
	uint32_t icmplen = iplen - ihl;
	uint8_t *r, *icmp;

	if (icmplen + 34 > NETDEV_FRAME_MAX)
		return;
	r = eth_begin(f + 6, ETH_IP);
	if (!r)
		return;		/* no room: the peer asks again */
	icmp = r + 34;
	memcpy(icmp, f + 14 + ihl, icmplen);
	icmp[0] = 0;
	put16(icmp + 2, 0);
	put16(icmp + 2, csum(icmp, icmplen));
	ip_header(r + 14, 20 + icmplen, 1, get32(f + 14 + 12));
	netdev_tx_commit(34 + icmplen);
}

static void echo_got(const uint8_t *icmp, uint32_t len, uint32_t src)
{
	uint16_t seq = get16(icmp + 6);

	if (get16(icmp + 4) != PING_ID || src != st.peer || !st.outstanding || seq != st.seq)
		return;
	if (len - 8 != st.pingsize) {
		printf("net: reply from %s seq %u with %u bytes, sent %u\n", st.peer_text, seq,
		       len - 8, st.pingsize);
		return;
	}
	for (uint32_t i = 0; i < st.pingsize; i++) {
		if (icmp[8 + i] != pattern(seq, i)) {
			printf("net: reply from %s seq %u damaged at byte %u\n", st.peer_text,
			       seq, i);
			return;
		}
	}
	st.outstanding = false;
	st.replied = true;
	st.replies++;
	printf("net: reply from %s seq %u\n", st.peer_text, seq);
}

static void handle_ip(const uint8_t *f, uint32_t len)
{
	const uint8_t *ip = f + 14, *icmp;
	uint32_t ihl, total;

	if (len < 34 || (ip[0] >> 4) != 4)
		return;
	ihl = (uint32_t)(ip[0] & 0xF) * 4;
	total = get16(ip + 2);
	if (ihl < 20 || total < ihl + 8 || total > len - 14 || csum(ip, ihl) != 0 ||
	    get32(ip + 16) != st.ip || ip[9] != 1 || (get16(ip + 6) & 0x3FFF))
		return;
	icmp = ip + ihl;
	if (csum(icmp, total - ihl) != 0)
		return;
	if (icmp[0] == 8 && icmp[1] == 0)
		echo_reply(f, total, ihl);
	else if (icmp[0] == 0 && icmp[1] == 0)
		echo_got(icmp, total - ihl, get32(ip + 12));
}

static void net_poll(void)
{
	int len;

	while ((len = netdev_recv(rxframe, sizeof(rxframe))) != 0) {
		if (len < 14)
			continue;
		if (memcmp(rxframe, netdev_mac, 6) != 0 && memcmp(rxframe, broadcast, 6) != 0)
			continue;
		if (get16(rxframe + 12) == ETH_ARP)
			handle_arp(rxframe, (uint32_t)len);
		else if (get16(rxframe + 12) == ETH_IP)
			handle_ip(rxframe, (uint32_t)len);
	}
}

/* ---- start, link, waiting ------------------------------------------------- */

static bool net_setup(char *why)
{
	char mac[6 * 3], ip[16];

	if (st.up)
		return true;
	if (!parse_ip(cmdline_arg("ip"), &st.ip)) {
		memcpy(why, "no ip=A.B.C.D on the command line", 34);
		return false;
	}
	if (cmdline_arg("peer") && !parse_ip(cmdline_arg("peer"), &st.peer)) {
		memcpy(why, "peer= is not an IPv4 address", 29);
		return false;
	}
	format_ip(st.peer, st.peer_text);
	st.pingsize = arg_num("pingsize", 56, PING_MAX);
	if (netdev_init(why, 96))
		return false;
	for (int i = 0; i < 6; i++) {
		const char *hex = "0123456789abcdef";

		mac[3 * i] = hex[netdev_mac[i] >> 4];
		mac[3 * i + 1] = hex[netdev_mac[i] & 15];
		mac[3 * i + 2] = i < 5 ? ':' : 0;
	}
	format_ip(st.ip, ip);
	printf("net: ip %s, mac %s\n", ip, mac);
	st.config_seen = netdev_config_changes();
	st.link = netdev_link_up();
	st.up = true;
	return true;
}

static void timer_start(void)
{
	irq_set_handler(VEC_TIMER, tick_irq);
	lapic_timer_periodic(VEC_TIMER, TICK_US);
}

/* Sleep until an interrupt (a frame, a tick, a configuration change). */
static void wait_event(void)
{
	__asm__ volatile("cli" : : : "memory");
	if (netdev_pending() || netdev_config_changes() != st.config_seen)
		__asm__ volatile("sti" : : : "memory");
	else
		__asm__ volatile("sti; hlt" : : : "memory");
	__asm__ volatile("cli" : : : "memory");
}

/* Re-read the link after a configuration interrupt; say when it changed. */
static void link_check(void)
{
	bool up;

	if (netdev_config_changes() == st.config_seen)
		return;
	st.config_seen = netdev_config_changes();
	up = netdev_link_up();
	if (up != st.link)
		printf("net: link %s\n", up ? "up" : "down");
	st.link = up;
}

static bool wait_link(char *why)
{
	uint64_t deadline = uptime_us() + (uint64_t)arg_num("linkwait", 60, 100000) * 1000000;

	if (st.link)
		return true;
	printf("net: link down\n");
	while (!st.link && uptime_us() < deadline) {
		wait_event();
		link_check();
	}
	if (!st.link) {
		memcpy(why, "link down", 10);
		return false;
	}
	return true;
}

/* ---- tests ---------------------------------------------------------------- */

static bool start_test(char *why)
{
	if (!net_setup(why))
		return false;
	/* Only MSI-X and the LAPIC timer may interrupt. */
	pic_disable();
	timer_start();
	return wait_link(why);
}

static void stop_test(void)
{
	lapic_timer_periodic(VEC_TIMER, 0);
	__asm__ volatile("cli");
}

bool test_net(char *why)
{
	uint64_t deadline, next = 0;
	bool ok;

	if (!start_test(why)) {
		stop_test();
		return false;
	}
	if (!st.peer) {
		stop_test();
		memcpy(why, "no peer=A.B.C.D on the command line", 36);
		return false;
	}
	deadline = uptime_us() + 15000000;
	while (!st.replied && uptime_us() < deadline && !netdev_broken()) {
		net_poll();
		link_check();
		if (!st.replied && uptime_us() >= next) {
			/* A new request each time; a late reply to an old one is ignored. */
			st.seq++;
			st.outstanding = true;
			st.sent = false;
			ping_send();
			next = uptime_us() + RETRY_US;
		}
		if (!st.replied)
			wait_event();
	}
	stop_test();
	ok = st.replied;
	if (!ok) {
		const char *pre = netdev_broken() ? "the device needs a reset; " : "";
		size_t n = strlen(pre);

		memcpy(why, pre, n);
		memcpy(why + n, "no reply from ", 14);
		memcpy(why + n + 14, st.peer_text, strlen(st.peer_text) + 1);
	}
	return ok;
}

bool test_netflood(char *why)
{
	uint32_t count = arg_num("floodcount", 2000, 10000000), sent = 0;
	uint64_t t0, deadline;

	if (!start_test(why)) {
		stop_test();
		return false;
	}
	t0 = uptime_us();
	deadline = t0 + 120000000;
	while ((sent < count || !netdev_tx_idle()) && uptime_us() < deadline &&
	       st.link && !netdev_broken()) {
		uint8_t *f = sent < count ? eth_begin(broadcast, ETH_FLOOD) : NULL;

		if (!f) {
			/* The ring is full (or all sent): wait for completions. */
			net_poll();
			link_check();
			wait_event();
			continue;
		}
		memcpy(f + 14, "FSVFLOOD", 8);
		put32(f + 22, sent);
		memset(f + 26, 0, 34);
		netdev_tx_commit(60);
		sent++;
	}
	stop_test();
	printf("netflood: %u of %u frames sent in %lu ms\n", sent, count,
	       (uptime_us() - t0) / 1000);
	if (sent < count || !netdev_tx_idle()) {
		memcpy(why, "not every frame was sent", 25);
		return false;
	}
	return true;
}

/* ---- idle ---------------------------------------------------------------- */

static uint32_t ping_every;
static uint64_t next_ping;

bool net_idle_start(void)
{
	char why[96] = "";

	if (!cmdline_arg("ip"))
		return false;
	if (!net_setup(why)) {
		printf("net: %s\n", why);
		return false;
	}
	if (!st.link)
		printf("net: link down\n");
	ping_every = arg_num("ping_every", 0, 100000);
	next_ping = uptime_us() + (uint64_t)ping_every * 1000000;
	return true;
}

bool net_pending(void)
{
	return st.up && (netdev_pending() || netdev_config_changes() != st.config_seen ||
			 (ping_every && uptime_us() >= next_ping));
}

void net_idle_poll(void)
{
	if (!st.up)
		return;
	link_check();
	net_poll();
	if (!ping_every || uptime_us() < next_ping)
		return;
	next_ping += (uint64_t)ping_every * 1000000;
	if (st.outstanding) {
		printf("net: no reply from %s seq %u\n", st.peer_text, st.seq);
		/* The peer may have changed: ask for its address again. */
		st.peer_known = false;
	}
	st.seq++;
	st.outstanding = true;
	st.sent = false;
	if (st.link && st.peer)
		ping_send();
}
