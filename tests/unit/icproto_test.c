// SPDX-License-Identifier: MIT
/*
 * The integration protocol's frames and fields: what is written reads
 * back, and every way a peer can lie about lengths, kinds and limits is
 * caught before a value is used.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "guest/proto/icproto.h"

static uint8_t buf[IC_MAX_FRAME + 64];

static int decode(const uint8_t *frame, size_t len, struct ic_msg *m, const char **why)
{
	struct ic_hdr h;

	cr_assert_eq(ic_hdr_decode(frame, len, &h), 1);
	cr_assert_eq(h.len + IC_HDR_LEN, len);
	return ic_parse(&h, frame + IC_HDR_LEN, m, why);
}

Test(icproto, a_frame_reads_back)
{
	struct ic_writer w;
	struct ic_msg m;
	const char *why;
	char key[16];
	int n;

	ic_begin(&w, buf, sizeof(buf), IC_KVP_SET, 0, 77, 0);
	ic_put_u32(&w, IC_T_POOL, IC_POOL_GUEST);
	ic_put_str(&w, IC_T_KEY, "OSName");
	ic_put_str(&w, IC_T_VALUE, "Debian GNU/Linux \xc3\xa9");
	n = ic_end(&w);
	cr_assert_gt(n, IC_HDR_LEN);
	cr_assert_eq(decode(buf, (size_t)n, &m, &why), IC_OK, "%s", why);
	cr_assert_eq(m.h.type, IC_KVP_SET);
	cr_assert_eq(m.h.id, 77);
	cr_assert_eq(m.num[IC_T_POOL], IC_POOL_GUEST);
	cr_assert(ic_str_eq(&m, IC_T_KEY, "OSName"));
	cr_assert(!ic_str_eq(&m, IC_T_KEY, "OSNam"));
	cr_assert(!ic_str_eq(&m, IC_T_KEY, "OSNames"));
	ic_str_copy(&m, IC_T_KEY, key, 4);
	cr_assert_str_eq(key, "OSN");
	cr_assert_eq(m.str[IC_T_VALUE].len, 19);
}

Test(icproto, u64_and_replies)
{
	struct ic_writer w;
	struct ic_msg m;
	struct ic_hdr req = { .type = IC_TIME, .id = 9 };
	const char *why;
	int n;

	ic_begin_reply(&w, buf, sizeof(buf), &req, 0);
	ic_put_u64(&w, IC_T_GUEST_TIME, 0x123456789ABCDEF0ULL);
	n = ic_end(&w);
	cr_assert_eq(decode(buf, (size_t)n, &m, &why), IC_OK, "%s", why);
	cr_assert_eq(m.h.flags, IC_F_REPLY);
	cr_assert_eq(m.h.id, 9);
	cr_assert_eq(m.num[IC_T_GUEST_TIME], 0x123456789ABCDEF0ULL);
	/* A refusal needs no fields; a success does. */
	req.type = IC_HEARTBEAT;
	ic_begin_reply(&w, buf, sizeof(buf), &req, 16);
	n = ic_end(&w);
	cr_assert_eq(decode(buf, (size_t)n, &m, &why), IC_OK);
	cr_assert_eq(m.h.status, 16);
	ic_begin_reply(&w, buf, sizeof(buf), &req, 0);
	n = ic_end(&w);
	cr_assert_eq(decode(buf, (size_t)n, &m, &why), IC_MISSING);
	/* A signed correction travels as its two's complement. */
	ic_begin(&w, buf, sizeof(buf), IC_TIME, 0, 3, 0);
	ic_put_u64(&w, IC_T_TIME, 1);
	ic_put_u32(&w, IC_T_MODE, IC_TIME_STEP);
	ic_put_u64(&w, IC_T_DELTA, (uint64_t)-3600000000000LL);
	n = ic_end(&w);
	cr_assert_eq(decode(buf, (size_t)n, &m, &why), IC_OK, "%s", why);
	cr_assert_eq((int64_t)m.num[IC_T_DELTA], -3600000000000LL);
}

Test(icproto, headers)
{
	struct ic_hdr h;
	uint8_t b[IC_HDR_LEN] = { 0 };

	cr_assert_eq(ic_hdr_decode(b, IC_HDR_LEN - 1, &h), 0, "a half header is not a header");
	cr_assert_eq(ic_hdr_decode(b, IC_HDR_LEN, &h), 1);
	/* 65536 is the cap; one more is not this protocol. */
	b[2] = 1;
	cr_assert_eq(ic_hdr_decode(b, IC_HDR_LEN, &h), 1);
	cr_assert_eq(h.len, 65536);
	b[0] = 1;
	cr_assert_eq(ic_hdr_decode(b, IC_HDR_LEN, &h), -1);
	b[0] = b[2] = 0;
	b[3] = 0x80;
	cr_assert_eq(ic_hdr_decode(b, IC_HDR_LEN, &h), -1, "a 2 GiB length");
	b[3] = 0;
	b[6] = 0x04;
	cr_assert_eq(ic_hdr_decode(b, IC_HDR_LEN, &h), -1, "unknown flags");
}

/* A frame of @type with raw payload bytes. */
static int raw(uint16_t type, uint16_t flags, const void *payload, size_t len,
	       struct ic_msg *m, const char **why)
{
	struct ic_hdr h = { .len = (uint32_t)len, .type = type, .flags = flags };

	return ic_parse(&h, payload, m, why);
}

Test(icproto, lying_fields)
{
	struct ic_msg m;
	const char *why;
	/* tag 6 (seq), length 8, but 4 bytes of payload. */
	const uint8_t past[] = { 6, 0, 8, 0, 1, 2, 3, 4 };
	const uint8_t half_header[] = { 6, 0 };
	const uint8_t wrong_size[] = { 6, 0, 4, 0, 1, 2, 3, 4 };
	const uint8_t twice[] = { 6, 0, 8, 0, 1, 0, 0, 0, 0, 0, 0, 0,
				  6, 0, 8, 0, 2, 0, 0, 0, 0, 0, 0, 0 };
	const uint8_t unknown[] = { 200, 0, 3, 0, 'a', 'b', 'c', 6, 0, 8, 0, 9, 0, 0, 0, 0, 0, 0, 0 };

	cr_assert_eq(raw(IC_HEARTBEAT, 0, past, sizeof(past), &m, &why), IC_BAD_FRAME);
	cr_assert_eq(raw(IC_HEARTBEAT, 0, half_header, sizeof(half_header), &m, &why),
		     IC_BAD_FRAME);
	cr_assert_eq(raw(IC_HEARTBEAT, 0, wrong_size, sizeof(wrong_size), &m, &why),
		     IC_BAD_FIELD);
	cr_assert_eq(raw(IC_HEARTBEAT, 0, twice, sizeof(twice), &m, &why), IC_BAD_FIELD);
	/* Tags of a later version are skipped. */
	cr_assert_eq(raw(IC_HEARTBEAT, 0, unknown, sizeof(unknown), &m, &why), IC_OK, "%s", why);
	cr_assert_eq(m.num[IC_T_SEQ], 9);
	cr_assert_eq(raw(IC_HEARTBEAT, 0, NULL, 0, &m, &why), IC_MISSING);
	cr_assert_eq(raw(0, 0, NULL, 0, &m, &why), IC_BAD_TYPE);
	cr_assert_eq(raw(IC_TYPE_MAX + 1, 0, unknown, sizeof(unknown), &m, &why), IC_BAD_TYPE);
}

static int kvp(const char *key, size_t klen, const char *value, size_t vlen)
{
	struct ic_writer w;
	struct ic_msg m;
	const char *why;
	int n;

	ic_begin(&w, buf, sizeof(buf), IC_KVP_SET, 0, 1, 0);
	ic_put_u32(&w, IC_T_POOL, IC_POOL_HOST);
	ic_put_bytes(&w, IC_T_KEY, key, klen);
	ic_put_bytes(&w, IC_T_VALUE, value, vlen);
	n = ic_end(&w);
	cr_assert_gt(n, 0);
	return decode(buf, (size_t)n, &m, &why);
}

Test(icproto, kvp_limits_as_hyper_v)
{
	static char big[4096];

	memset(big, 'k', sizeof(big));
	cr_assert_eq(kvp(big, 512, big, 2048), IC_OK);
	cr_assert_eq(kvp(big, 513, "v", 1), IC_BAD_FIELD, "a 513-byte key");
	cr_assert_eq(kvp(big, 1, big, 2049), IC_BAD_FIELD, "a 2049-byte value");
	cr_assert_eq(kvp("", 0, "v", 1), IC_BAD_FIELD, "an empty key");
	cr_assert_eq(kvp("k", 1, "", 0), IC_OK, "an empty value");
	cr_assert_eq(kvp("a\0b", 3, "v", 1), IC_BAD_FIELD, "a NUL in a key");
	cr_assert_eq(kvp("k", 1, "\xff", 1), IC_BAD_FIELD, "not UTF-8");
	cr_assert_eq(kvp("k", 1, "\xc0\xaf", 2), IC_BAD_FIELD, "an overlong form");
	cr_assert_eq(kvp("k", 1, "\xed\xa0\x80", 3), IC_BAD_FIELD, "a surrogate");
	cr_assert_eq(kvp("k", 1, "\xe2\x82", 2), IC_BAD_FIELD, "a cut sequence");
	cr_assert_eq(kvp("\xe2\x82\xac", 3, "\xf0\x9f\x98\x80", 4), IC_OK, "euro, emoji");
}

Test(icproto, the_writer_never_overflows)
{
	static uint8_t small[40], data[IC_DATA_MAX + 1];
	struct ic_writer w;

	ic_begin(&w, small, sizeof(small), IC_KVP_SET, 0, 1, 0);
	ic_put_str(&w, IC_T_KEY, "0123456789012345678901234567890123456789");
	cr_assert_eq(ic_end(&w), -1);
	ic_begin(&w, small, 8, IC_HEARTBEAT, 0, 1, 0);
	cr_assert_eq(ic_end(&w), -1);
	/* A frame is at most IC_MAX_FRAME, whatever the buffer. */
	ic_begin(&w, buf, sizeof(buf), IC_FILE_DATA, 0, 1, 0);
	ic_put_bytes(&w, IC_T_DATA, data, 65535);
	ic_put_bytes(&w, IC_T_DATA, data, 10);
	cr_assert_eq(ic_end(&w), -1);
	/* And a data field over its limit does not parse. */
	{
		struct ic_msg m;
		const char *why;
		int n;

		ic_begin(&w, buf, sizeof(buf), IC_FILE_DATA, 0, 1, 0);
		ic_put_u32(&w, IC_T_HANDLE, 1);
		ic_put_u64(&w, IC_T_OFFSET, 0);
		ic_put_bytes(&w, IC_T_DATA, data, sizeof(data));
		n = ic_end(&w);
		cr_assert_gt(n, 0);
		cr_assert_eq(decode(buf, (size_t)n, &m, &why), IC_BAD_FIELD);
	}
}
