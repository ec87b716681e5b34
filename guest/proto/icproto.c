// SPDX-License-Identifier: MIT
/*
 * The integration-services protocol: frames, fields, and the checks a
 * receiver makes before it believes any of it (docs/integration.md).
 * Freestanding: the test guest builds this file too.
 */
#include "icproto.h"

enum kind {
	K_NONE,
	K_U32,
	K_U64,
	K_STR,			/* UTF-8, no NUL */
	K_BYTES,
};

struct tag_info {
	enum kind kind;
	uint16_t max;		/* strings and bytes */
	uint16_t min;
};

static const struct tag_info tags[IC_TAG_MAX + 1] = {
	[IC_T_VERSION_MIN] = { K_U32, 0, 0 },
	[IC_T_VERSION_MAX] = { K_U32, 0, 0 },
	[IC_T_VERSION] = { K_U32, 0, 0 },
	[IC_T_CAPS] = { K_U32, 0, 0 },
	[IC_T_AGENT] = { K_STR, IC_AGENT_MAX, 0 },
	[IC_T_SEQ] = { K_U64, 0, 0 },
	[IC_T_MODE] = { K_U32, 0, 0 },
	[IC_T_REASON] = { K_STR, IC_REASON_MAX, 0 },
	[IC_T_TIME] = { K_U64, 0, 0 },
	[IC_T_GUEST_TIME] = { K_U64, 0, 0 },
	[IC_T_POOL] = { K_U32, 0, 0 },
	[IC_T_KEY] = { K_STR, IC_KEY_MAX, 1 },
	[IC_T_VALUE] = { K_STR, IC_VALUE_MAX, 0 },
	[IC_T_TIMEOUT] = { K_U32, 0, 0 },
	[IC_T_COUNT] = { K_U32, 0, 0 },
	[IC_T_STATE] = { K_U32, 0, 0 },
	[IC_T_PATH] = { K_STR, IC_PATH_MAX, 1 },
	[IC_T_SIZE] = { K_U64, 0, 0 },
	[IC_T_FLAGS] = { K_U32, 0, 0 },
	[IC_T_HANDLE] = { K_U32, 0, 0 },
	[IC_T_OFFSET] = { K_U64, 0, 0 },
	[IC_T_DATA] = { K_BYTES, IC_DATA_MAX, 0 },
	[IC_T_MESSAGE] = { K_STR, IC_MESSAGE_MAX, 0 },
	[IC_T_ADJUST] = { K_U32, 0, 0 },
	[IC_T_REMAIN] = { K_U32, 0, 0 },
	[IC_T_FILE_MODE] = { K_U32, 0, 0 },
	[IC_T_DELTA] = { K_U64, 0, 0 },
};

#define B(t) (1u << (t))

/* The fields each message needs: [type][0] requests, [type][1] replies. */
static const uint32_t needs[IC_TYPE_MAX + 1][2] = {
	[IC_HELLO] = { B(IC_T_VERSION_MIN) | B(IC_T_VERSION_MAX) | B(IC_T_CAPS),
		       B(IC_T_VERSION) | B(IC_T_CAPS) },
	[IC_HEARTBEAT] = { B(IC_T_SEQ), B(IC_T_SEQ) },
	[IC_SHUTDOWN] = { B(IC_T_MODE), 0 },
	[IC_TIME] = { B(IC_T_TIME) | B(IC_T_MODE), 0 },
	[IC_KVP_SET] = { B(IC_T_POOL) | B(IC_T_KEY) | B(IC_T_VALUE), 0 },
	[IC_KVP_DELETE] = { B(IC_T_POOL) | B(IC_T_KEY), 0 },
	[IC_KVP_CLEAR] = { B(IC_T_POOL), 0 },
	[IC_FREEZE] = { B(IC_T_TIMEOUT), B(IC_T_COUNT) },
	[IC_THAW] = { 0, B(IC_T_COUNT) },
	[IC_BACKUP_STATUS] = { 0, B(IC_T_STATE) },
	[IC_FILE_OPEN] = { B(IC_T_PATH) | B(IC_T_SIZE) | B(IC_T_FLAGS) | B(IC_T_FILE_MODE),
			   B(IC_T_HANDLE) },
	[IC_FILE_DATA] = { B(IC_T_HANDLE) | B(IC_T_OFFSET) | B(IC_T_DATA), 0 },
	[IC_FILE_CLOSE] = { B(IC_T_HANDLE) | B(IC_T_FLAGS), 0 },
};

static const char *const type_names[IC_TYPE_MAX + 1] = {
	[IC_HELLO] = "hello",
	[IC_HEARTBEAT] = "heartbeat",
	[IC_SHUTDOWN] = "shutdown",
	[IC_TIME] = "time",
	[IC_KVP_SET] = "kvp-set",
	[IC_KVP_DELETE] = "kvp-delete",
	[IC_KVP_CLEAR] = "kvp-clear",
	[IC_FREEZE] = "freeze",
	[IC_THAW] = "thaw",
	[IC_BACKUP_STATUS] = "backup-status",
	[IC_FILE_OPEN] = "file-open",
	[IC_FILE_DATA] = "file-data",
	[IC_FILE_CLOSE] = "file-close",
};

const char *ic_type_name(unsigned int type)
{
	return type >= 1 && type <= IC_TYPE_MAX ? type_names[type] : "unknown";
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

int ic_hdr_decode(const uint8_t *buf, size_t len, struct ic_hdr *h)
{
	if (len < IC_HDR_LEN)
		return 0;
	h->len = get32(buf);
	h->type = get16(buf + 4);
	h->flags = get16(buf + 6);
	h->id = get32(buf + 8);
	h->status = get32(buf + 12);
	if (h->len > IC_MAX_PAYLOAD || (h->flags & ~IC_F_REPLY))
		return -1;
	return 1;
}

bool ic_utf8_valid(const uint8_t *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = p[i];
		size_t n;
		uint32_t cp;

		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			n = 1;
			cp = c & 0x1F;
		} else if (c >= 0xE0 && c <= 0xEF) {
			n = 2;
			cp = c & 0x0F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (len - i <= n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((p[i + k] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3F);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += n + 1;
	}
	return true;
}

/* One field at @p (@left bytes of payload): its size, or the reason it is bad. */
static int field(struct ic_msg *m, const uint8_t *p, size_t left, const char **why)
{
	uint16_t tag, len;
	const struct tag_info *t;

	if (left < 4) {
		*why = "a field header past the end of the payload";
		return IC_BAD_FRAME;
	}
	tag = get16(p);
	len = get16(p + 2);
	if ((size_t)len > left - 4) {
		*why = "a field longer than what is left of the payload";
		return IC_BAD_FRAME;
	}
	if (tag == 0 || tag > IC_TAG_MAX)
		return 4 + len;		/* from a later version: skipped */
	t = &tags[tag];
	if (m->have & B(tag)) {
		*why = "a field given twice";
		return IC_BAD_FIELD;
	}
	p += 4;
	switch (t->kind) {
	case K_U32:
		if (len != 4)
			goto bad_size;
		m->num[tag] = get32(p);
		break;
	case K_U64:
		if (len != 8)
			goto bad_size;
		m->num[tag] = get64(p);
		break;
	case K_STR:
		if (!ic_utf8_valid(p, len)) {
			*why = "a text field that is not UTF-8 (or holds a NUL)";
			return IC_BAD_FIELD;
		}
		/* fall through */
	case K_BYTES:
		if (len > t->max || len < t->min)
			goto bad_size;
		m->str[tag].p = p;
		m->str[tag].len = len;
		break;
	case K_NONE:
		return 4 + len;
	}
	m->have |= B(tag);
	return 4 + len;
bad_size:
	*why = "a field of the wrong size (or over its limit)";
	return IC_BAD_FIELD;
}

int ic_parse(const struct ic_hdr *h, const uint8_t *payload, struct ic_msg *m,
	     const char **why)
{
	size_t off = 0;
	uint32_t need;

	m->h = *h;
	m->have = 0;
	*why = "";
	while (off < h->len) {
		int n = field(m, payload + off, h->len - off, why);

		if (n < 0)
			return n;
		off += (size_t)n;
	}
	if (h->type == 0 || h->type > IC_TYPE_MAX) {
		*why = "an unknown message type";
		return IC_BAD_TYPE;
	}
	/* A refusal says only why. */
	if ((h->flags & IC_F_REPLY) && h->status)
		return IC_OK;
	need = needs[h->type][(h->flags & IC_F_REPLY) ? 1 : 0];
	if ((m->have & need) != need) {
		*why = "a field the message needs is missing";
		return IC_MISSING;
	}
	return IC_OK;
}

void ic_str_copy(const struct ic_msg *m, unsigned int tag, char *buf, size_t len)
{
	size_t n = 0;

	if (!len)
		return;
	if (ic_has(m, tag))
		for (; n < m->str[tag].len && n < len - 1; n++)
			buf[n] = (char)m->str[tag].p[n];
	buf[n] = '\0';
}

bool ic_str_eq(const struct ic_msg *m, unsigned int tag, const char *s)
{
	size_t n = 0;

	if (!ic_has(m, tag))
		return false;
	for (; s[n]; n++)
		if (n >= m->str[tag].len || m->str[tag].p[n] != (uint8_t)s[n])
			return false;
	return n == m->str[tag].len;
}

/* ---- writing ---------------------------------------------------------------- */

void ic_begin(struct ic_writer *w, uint8_t *buf, size_t cap, uint16_t type,
	      uint16_t flags, uint32_t id, uint32_t status)
{
	w->buf = buf;
	w->cap = cap < IC_MAX_FRAME ? cap : IC_MAX_FRAME;
	w->len = IC_HDR_LEN;
	w->overflow = cap < IC_HDR_LEN;
	if (w->overflow)
		return;
	put32(buf, 0);
	put16(buf + 4, type);
	put16(buf + 6, flags);
	put32(buf + 8, id);
	put32(buf + 12, status);
}

void ic_begin_reply(struct ic_writer *w, uint8_t *buf, size_t cap,
		    const struct ic_hdr *req, uint32_t status)
{
	ic_begin(w, buf, cap, req->type, IC_F_REPLY, req->id, status);
}

static uint8_t *room(struct ic_writer *w, uint16_t tag, size_t len)
{
	uint8_t *p;

	if (w->overflow || len > 0xFFFF || w->cap - w->len < 4 + len) {
		w->overflow = true;
		return NULL;
	}
	p = w->buf + w->len;
	put16(p, tag);
	put16(p + 2, (uint16_t)len);
	w->len += 4 + len;
	return p + 4;
}

void ic_put_u32(struct ic_writer *w, uint16_t tag, uint32_t v)
{
	uint8_t *p = room(w, tag, 4);

	if (p)
		put32(p, v);
}

void ic_put_u64(struct ic_writer *w, uint16_t tag, uint64_t v)
{
	uint8_t *p = room(w, tag, 8);

	if (p)
		put64(p, v);
}

void ic_put_bytes(struct ic_writer *w, uint16_t tag, const void *data, size_t len)
{
	uint8_t *p = room(w, tag, len);
	const uint8_t *s = data;

	for (size_t i = 0; p && i < len; i++)
		p[i] = s[i];
}

void ic_put_str(struct ic_writer *w, uint16_t tag, const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	ic_put_bytes(w, tag, s, n);
}

int ic_end(struct ic_writer *w)
{
	if (w->overflow)
		return -1;
	put32(w->buf, (uint32_t)(w->len - IC_HDR_LEN));
	return (int)w->len;
}
