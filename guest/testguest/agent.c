// SPDX-License-Identifier: MIT
/*
 * The test guest's integration agent ("agent" in idle mode): the basics
 * of the protocol (docs/integration.md) over its vsock driver, so that
 * the path device -> worker -> service -> files is tested with a real
 * guest.  It connects to host port 18755 (again a second after a
 * connection ends), says hello and resynchronises its data exchange
 * pools, echoes heartbeats, shuts down or reboots through ACPI with the
 * reason on the console, keeps a clock (the CMOS time at boot plus the
 * TSC, "clockskew=SECONDS" off) that the host steps, keeps host items
 * and its own ("kvp=KEY=VALUE"), and acknowledges freeze and thaw (it
 * has no file systems) with their deadline.
 *
 * Console lines it takes: "hb stop", "hb start" (stop or resume
 * answering heartbeats), "date" (prints "date: SECONDS"), "kvp set KEY
 * VALUE", "kvp del KEY", and to test the host's side with a hostile
 * guest, "evil huge" (a header with a 2 GiB length), "evil unknown" (a
 * request of an unknown type), "evil flood N" (N requests at once),
 * "evil half" (half a frame, then nothing more on that connection).
 */
#include "../proto/icproto.h"
#include "guest.h"
#include "vsock.h"

#define NKVP 16
#define KEY_MAX 64
#define VALUE_MAX 128
#define OUT_SIZE (128 * 1024)
#define RETRY_US 1000000

struct item {
	bool used;
	char key[KEY_MAX];
	char value[VALUE_MAX];
};

static struct {
	bool on;
	struct gvconn *conn;
	bool connected, hello;
	uint64_t retry_at;
	bool hb_stopped;
	bool frozen;
	uint64_t thaw_at;		/* uptime_us */
	bool power_off, reboot;		/* once the answer went */
	/* The clock: unix ns at boot, plus what the host's steps added. */
	int64_t boot_ns;
	int64_t adjust_ns;
	uint32_t next_id;
} ag;

static struct item host_items[NKVP], guest_items[NKVP];
static uint8_t in[IC_MAX_FRAME];
static uint32_t in_len;
static uint8_t out[OUT_SIZE];
static uint32_t out_len;
static uint8_t frame[IC_HDR_LEN + 4096];

/* ---- the clock ------------------------------------------------------------------- */

static uint8_t cmos(uint8_t reg)
{
	outb(0x70, reg);
	return inb(0x71);
}

static int from_bcd(uint8_t v, bool binary)
{
	return binary ? v : (v >> 4) * 10 + (v & 0xF);
}

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int64_t rtc_unix(void)
{
	uint8_t sec, min, hour, day, mon, year, cent;
	bool bin;

	do {
		sec = cmos(0x00);
		min = cmos(0x02);
		hour = cmos(0x04);
		day = cmos(0x07);
		mon = cmos(0x08);
		year = cmos(0x09);
		cent = cmos(0x32);
	} while (sec != cmos(0x00));
	bin = cmos(0x0B) & 0x04;
	return (days_from_civil(from_bcd(cent, bin) * 100 + from_bcd(year, bin), from_bcd(mon, bin),
				from_bcd(day, bin)) * 86400 +
		from_bcd(hour, bin) * 3600 + from_bcd(min, bin) * 60 + from_bcd(sec, bin));
}

static int64_t clock_ns(void)
{
	return ag.boot_ns + (int64_t)uptime_us() * 1000 + ag.adjust_ns;
}

static int64_t arg_signed(const char *key)
{
	const char *p = cmdline_arg(key);
	int64_t v = 0;
	bool neg = false;

	if (!p)
		return 0;
	if (*p == '-') {
		neg = true;
		p++;
	}
	while (*p >= '0' && *p <= '9' && v < 100000000)
		v = v * 10 + (*p++ - '0');
	return neg ? -v : v;
}

/* ---- sending ---------------------------------------------------------------------- */

static bool evil_stalled;

static void flush(void)
{
	uint32_t n;

	if (!ag.connected || !out_len || evil_stalled)
		return;
	n = vsock_send(ag.conn, out, out_len);
	memcpy(out, out + n, out_len - n);
	out_len -= n;
}

static void send_frame(struct ic_writer *w)
{
	int len = ic_end(w);

	if (len < 0 || (uint32_t)len > OUT_SIZE - out_len) {
		printf("agent: a frame does not fit (%d bytes)\n", len);
		return;
	}
	memcpy(out + out_len, w->buf, (size_t)len);
	out_len += (uint32_t)len;
	flush();
}

static void reply(const struct ic_hdr *req, uint32_t status)
{
	struct ic_writer w;

	if (!req->id)
		return;
	ic_begin_reply(&w, frame, sizeof(frame), req, status);
	send_frame(&w);
}

static void send_item(uint16_t type, uint32_t pool, const char *key, const char *value)
{
	struct ic_writer w;

	ic_begin(&w, frame, sizeof(frame), type, 0, 0, 0);
	ic_put_u32(&w, IC_T_POOL, pool);
	if (key)
		ic_put_str(&w, IC_T_KEY, key);
	if (value)
		ic_put_str(&w, IC_T_VALUE, value);
	send_frame(&w);
}

static void send_hello(void)
{
	struct ic_writer w;

	ic_begin(&w, frame, sizeof(frame), IC_HELLO, 0, ++ag.next_id, 0);
	ic_put_u32(&w, IC_T_VERSION_MIN, 1);
	ic_put_u32(&w, IC_T_VERSION_MAX, 1);
	ic_put_u32(&w, IC_T_CAPS, IC_CAP_HEARTBEAT | IC_CAP_SHUTDOWN | IC_CAP_TIMESYNC |
				   IC_CAP_KVP | IC_CAP_BACKUP);
	ic_put_str(&w, IC_T_AGENT, "fsvisor testguest agent");
	send_frame(&w);
}

/* ---- data exchange ---------------------------------------------------------------- */

static size_t cstrlen(const char *s)
{
	return strlen(s);
}

static void copy_text(char *dst, size_t cap, const char *src, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	memcpy(dst, src, len);
	dst[len] = 0;
}

static struct item *item_find(struct item *t, const char *key, size_t klen)
{
	for (int i = 0; i < NKVP; i++)
		if (t[i].used && cstrlen(t[i].key) == klen && memcmp(t[i].key, key, klen) == 0)
			return &t[i];
	return NULL;
}

static struct item *item_set(struct item *t, const char *key, size_t klen, const char *value,
			     size_t vlen)
{
	struct item *it = item_find(t, key, klen);

	for (int i = 0; !it && i < NKVP; i++)
		if (!t[i].used)
			it = &t[i];
	if (!it)
		return NULL;
	it->used = true;
	copy_text(it->key, sizeof(it->key), key, klen);
	copy_text(it->value, sizeof(it->value), value, vlen);
	return it;
}

static void resync(void)
{
	static const char *const intrinsic[][2] = {
		{ "FullyQualifiedDomainName", "testguest.fsvisor" },
		{ "OSName", "fsvisor test guest" },
		{ "OSVersion", "1" },
		{ "OSBuildNumber", "1" },
		{ "ProcessorArchitecture", "x86_64" },
		{ "NetworkAddressIPv4", "" },
		{ "NetworkAddressIPv6", "" },
		{ "IntegrationServicesVersion", "1" },
	};

	send_item(IC_KVP_CLEAR, IC_POOL_GUEST, NULL, NULL);
	for (int i = 0; i < NKVP; i++)
		if (guest_items[i].used)
			send_item(IC_KVP_SET, IC_POOL_GUEST, guest_items[i].key,
				  guest_items[i].value);
	send_item(IC_KVP_CLEAR, IC_POOL_INTRINSIC, NULL, NULL);
	for (size_t i = 0; i < ARRAY_SIZE(intrinsic); i++) {
		const char *v = intrinsic[i][1];

		if (i == 5 && cmdline_arg("ip")) {
			static char ip[16];
			const char *p = cmdline_arg("ip");
			size_t n = 0;

			while (p[n] && p[n] != ' ' && n < sizeof(ip) - 1) {
				ip[n] = p[n];
				n++;
			}
			ip[n] = 0;
			v = ip;
		}
		send_item(IC_KVP_SET, IC_POOL_INTRINSIC, intrinsic[i][0], v);
	}
}

/* ---- what the host asks --------------------------------------------------------------- */

static void on_time(const struct ic_msg *m)
{
	struct ic_writer w;
	int64_t delta = (int64_t)m->num[IC_T_DELTA];

	if (m->num[IC_T_MODE] == IC_TIME_SAMPLE) {
		ic_begin_reply(&w, frame, sizeof(frame), &m->h, 0);
		ic_put_u64(&w, IC_T_GUEST_TIME, (uint64_t)clock_ns());
		send_frame(&w);
		return;
	}
	if (!ic_has(m, IC_T_DELTA) || m->num[IC_T_MODE] > IC_TIME_SLEW) {
		reply(&m->h, 22);	/* EINVAL */
		return;
	}
	/* No slewing here: a slew is a step too. */
	ag.adjust_ns += delta;
	if (m->num[IC_T_MODE] == IC_TIME_STEP && (delta > 1000000000LL || delta < -1000000000LL))
		printf("time: stepped by %ld ms\n", delta / 1000000);
	reply(&m->h, 0);
}

static void on_kvp(const struct ic_msg *m)
{
	const char *key = (const char *)m->str[IC_T_KEY].p;
	size_t klen = m->str[IC_T_KEY].len;
	struct item *it;

	if (m->num[IC_T_POOL] != IC_POOL_HOST) {
		reply(&m->h, 22);	/* EINVAL */
		return;
	}
	if (m->h.type == IC_KVP_CLEAR) {
		for (int i = 0; i < NKVP; i++)
			host_items[i].used = false;
	} else if (m->h.type == IC_KVP_DELETE) {
		it = item_find(host_items, key, klen);
		if (it) {
			it->used = false;
			printf("kvp: host %s deleted\n", it->key);
		}
	} else {
		it = item_set(host_items, key, klen, (const char *)m->str[IC_T_VALUE].p,
			      m->str[IC_T_VALUE].len);
		if (!it) {
			reply(&m->h, 28);	/* ENOSPC */
			return;
		}
		printf("kvp: host %s=%s\n", it->key, it->value);
	}
	reply(&m->h, 0);
}

static void on_backup(const struct ic_msg *m)
{
	struct ic_writer w;

	if (m->h.type == IC_FREEZE && ag.frozen) {
		reply(&m->h, 16);	/* EBUSY */
		return;
	}
	ic_begin_reply(&w, frame, sizeof(frame), &m->h, 0);
	if (m->h.type == IC_FREEZE) {
		ag.frozen = true;
		ag.thaw_at = uptime_us() + m->num[IC_T_TIMEOUT] * 1000;
		printf("agent: frozen for at most %lu ms\n", m->num[IC_T_TIMEOUT]);
		ic_put_u32(&w, IC_T_COUNT, 0);
	} else if (m->h.type == IC_THAW) {
		if (ag.frozen)
			printf("agent: thawed\n");
		ag.frozen = false;
		ic_put_u32(&w, IC_T_COUNT, 0);
	} else {
		ic_put_u32(&w, IC_T_STATE, ag.frozen ? IC_BACKUP_FROZEN : IC_BACKUP_THAWED);
		ic_put_u32(&w, IC_T_REMAIN, ag.frozen ? (uint32_t)((ag.thaw_at - uptime_us()) / 1000) : 0);
	}
	send_frame(&w);
}

static void on_request(const struct ic_msg *m)
{
	char reason[IC_REASON_MAX + 1];

	/* Frozen: status and thaw only. */
	if (ag.frozen && m->h.type != IC_THAW && m->h.type != IC_BACKUP_STATUS) {
		reply(&m->h, 16);	/* EBUSY */
		return;
	}
	switch (m->h.type) {
	case IC_HEARTBEAT:
		if (!ag.hb_stopped) {
			struct ic_writer w;

			ic_begin_reply(&w, frame, sizeof(frame), &m->h, 0);
			ic_put_u64(&w, IC_T_SEQ, m->num[IC_T_SEQ]);
			send_frame(&w);
		}
		return;
	case IC_SHUTDOWN:
		ic_str_copy(m, IC_T_REASON, reason, sizeof(reason));
		printf("agent: %s requested by the host: %s\n",
		       m->num[IC_T_MODE] == IC_SHUTDOWN_REBOOT ? "reboot" : "shutdown", reason);
		reply(&m->h, 0);
		if (m->num[IC_T_MODE] == IC_SHUTDOWN_REBOOT)
			ag.reboot = true;
		else
			ag.power_off = true;
		return;
	case IC_TIME:
		on_time(m);
		return;
	case IC_KVP_SET:
	case IC_KVP_DELETE:
	case IC_KVP_CLEAR:
		on_kvp(m);
		return;
	case IC_FREEZE:
	case IC_THAW:
	case IC_BACKUP_STATUS:
		on_backup(m);
		return;
	default:
		reply(&m->h, 38);	/* ENOSYS */
		return;
	}
}

static void on_frame(const struct ic_hdr *h, const uint8_t *payload)
{
	static struct ic_msg m;
	const char *why;
	int ret = ic_parse(h, payload, &m, &why);

	if (h->flags & IC_F_REPLY) {
		if (h->type == IC_HELLO && ret == IC_OK && !h->status) {
			ag.hello = true;
			printf("agent: connected, protocol %lu\n", m.num[IC_T_VERSION]);
			resync();
		}
		return;
	}
	if (ret) {
		printf("agent: a bad %s from the host: %s\n", ic_type_name(h->type), why);
		reply(h, ret == IC_BAD_TYPE ? 38 : 22);
		return;
	}
	on_request(&m);
}

/* ---- the connection ------------------------------------------------------------------ */

static void on_connected(struct gvconn *c)
{
	(void)c;
	ag.connected = true;
	in_len = out_len = 0;
	send_hello();
}

static void on_data(struct gvconn *c, const uint8_t *buf, uint32_t len)
{
	uint32_t off = 0;

	(void)c;
	if (len > sizeof(in) - in_len) {
		printf("agent: more than a frame at once: closing\n");
		vsock_close(ag.conn);
		return;
	}
	memcpy(in + in_len, buf, len);
	in_len += len;
	for (;;) {
		struct ic_hdr h;
		int ret = ic_hdr_decode(in + off, in_len - off, &h);

		if (ret < 0) {
			printf("agent: the host sent something that is not a frame\n");
			vsock_close(ag.conn);
			in_len = 0;
			return;
		}
		if (ret == 0 || in_len - off < IC_HDR_LEN + h.len)
			break;
		on_frame(&h, in + off + IC_HDR_LEN);
		off += IC_HDR_LEN + h.len;
	}
	memcpy(in, in + off, in_len - off);
	in_len -= off;
}

static void on_closed(struct gvconn *c)
{
	(void)c;
	evil_stalled = false;
	if (ag.connected)
		printf("agent: disconnected\n");
	ag.conn = NULL;
	ag.connected = ag.hello = false;
	ag.retry_at = uptime_us() + RETRY_US;
}

static const struct gv_ops agent_ops = {
	.connected = on_connected,
	.data = on_data,
	.closed = on_closed,
};

static void try_connect(void)
{
	ag.conn = vsock_connect(IC_PORT, &agent_ops);
	if (!ag.conn)
		ag.retry_at = uptime_us() + RETRY_US;
}

/* ---- idle mode ------------------------------------------------------------------------ */

bool agent_start(void)
{
	char why[96] = "";
	const char *kv = cmdline_arg("kvp");

	if (!cmdline_has("agent"))
		return false;
	if (vsock_init(why)) {
		printf("agent: %s\n", why);
		return false;
	}
	ag.on = true;
	ag.boot_ns = (rtc_unix() + arg_signed("clockskew")) * 1000000000LL -
		     (int64_t)uptime_us() * 1000;
	if (kv) {
		size_t k = 0, v;

		while (kv[k] && kv[k] != '=' && kv[k] != ' ')
			k++;
		for (v = k + 1; kv[k] == '=' && kv[v] && kv[v] != ' '; v++)
			;
		if (kv[k] == '=')
			item_set(guest_items, kv, k, kv + k + 1, v - k - 1);
	}
	try_connect();
	return true;
}

bool agent_pending(void)
{
	return ag.on && ((!ag.conn && uptime_us() >= ag.retry_at) || ag.power_off ||
			 ag.reboot || (ag.frozen && uptime_us() >= ag.thaw_at) ||
			 (ag.connected && out_len));
}

void agent_poll(void)
{
	if (!ag.on)
		return;
	if (!ag.conn && uptime_us() >= ag.retry_at)
		try_connect();
	flush();
	if (ag.frozen && uptime_us() >= ag.thaw_at) {
		ag.frozen = false;
		printf("agent: thawed by itself (the deadline passed)\n");
	}
	if ((ag.power_off || ag.reboot) && !out_len) {
		/* The answer went out: give the device a moment to take it. */
		for (int i = 0; i < 20; i++) {
			vsock_poll();
			udelay(1000);
		}
		if (ag.reboot) {
			printf("agent: rebooting\n");
			acpi_reset();
		}
		printf("agent: powering off\n");
		acpi_poweroff();
	}
}

/* ---- a hostile guest, on request ------------------------------------------------ */

static void raw(const void *p, uint32_t len)
{
	if (len <= OUT_SIZE - out_len) {
		memcpy(out + out_len, p, len);
		out_len += len;
	}
	flush();
}

static void evil(const char *what)
{
	struct ic_writer w;

	if (!ag.hello) {
		printf("agent: evil: not connected\n");
		return;
	}
	if (!strncmp(what, "huge", 4)) {
		uint8_t h[IC_HDR_LEN] = { 0xFF, 0xFF, 0xFF, 0x7F, IC_KVP_SET };

		raw(h, sizeof(h));
	} else if (!strncmp(what, "unknown", 7)) {
		ic_begin(&w, frame, sizeof(frame), 99, 0, ++ag.next_id, 0);
		send_frame(&w);
	} else if (!strncmp(what, "flood ", 6)) {
		uint32_t n = 0;

		for (const char *p = what + 6; *p >= '0' && *p <= '9'; p++)
			n = n * 10 + (uint32_t)(*p - '0');
		for (uint32_t i = 0; i < n; i++) {
			ic_begin(&w, frame, sizeof(frame), IC_KVP_SET, 0, ++ag.next_id, 0);
			ic_put_u32(&w, IC_T_POOL, IC_POOL_HOST);	/* refused: not ours */
			ic_put_str(&w, IC_T_KEY, "k");
			ic_put_str(&w, IC_T_VALUE, "v");
			send_frame(&w);
			if (out_len > OUT_SIZE / 2) {
				/* Let the device take some: the ring is the limit here. */
				for (int k = 0; k < 50 && out_len; k++) {
					vsock_poll();
					flush();
				}
			}
		}
	} else if (!strncmp(what, "half", 4)) {
		uint8_t h[10] = { 40, 0, 0, 0, IC_KVP_SET };

		raw(h, sizeof(h));
		evil_stalled = true;
	} else {
		printf("agent: evil: huge, unknown, flood N or half\n");
		return;
	}
	printf("agent: evil %s sent\n", what);
}

static bool word(const char **p, const char *w)
{
	size_t n = strlen(w);

	if (strncmp(*p, w, n) || ((*p)[n] && (*p)[n] != ' '))
		return false;
	*p += n;
	while (**p == ' ')
		(*p)++;
	return true;
}

bool agent_command(const char *line)
{
	const char *p = line;

	if (!ag.on)
		return false;
	if (word(&p, "hb")) {
		if (word(&p, "stop"))
			ag.hb_stopped = true;
		else if (word(&p, "start"))
			ag.hb_stopped = false;
		else
			return false;
		printf("agent: heartbeat %s\n", ag.hb_stopped ? "stopped" : "answered");
		return true;
	}
	if (word(&p, "evil")) {
		evil(p);
		return true;
	}
	if (word(&p, "date")) {
		printf("date: %ld\n", (long)(clock_ns() / 1000000000LL));
		return true;
	}
	if (word(&p, "kvp")) {
		bool set = word(&p, "set");
		const char *key, *value;
		size_t k = 0;
		struct item *it;

		if (!set && !word(&p, "del"))
			return false;
		key = p;
		while (key[k] && key[k] != ' ')
			k++;
		value = key[k] ? key + k + 1 : key + k;
		if (set) {
			it = item_set(guest_items, key, k, value, strlen(value));
			if (it && ag.hello)
				send_item(IC_KVP_SET, IC_POOL_GUEST, it->key, it->value);
			printf("kvp: guest %s=%s\n", it ? it->key : "?", it ? it->value : "?");
		} else {
			it = item_find(guest_items, key, k);
			if (it) {
				it->used = false;
				if (ag.hello)
					send_item(IC_KVP_DELETE, IC_POOL_GUEST, it->key, NULL);
			}
			printf("kvp: guest item deleted\n");
		}
		return true;
	}
	return false;
}
