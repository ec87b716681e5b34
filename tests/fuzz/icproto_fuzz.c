// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the integration protocol's parser: the input is
 * a byte stream as a peer would send it, cut into frames by their
 * headers and each parsed.  Every field the parser hands back must lie
 * inside its frame and within its tag's limit, and a message written
 * back from what was parsed must parse to the same values.
 */
#include <stdlib.h>
#include <string.h>

#include "guest/proto/icproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint16_t limits[IC_TAG_MAX + 1] = {
	[IC_T_AGENT] = IC_AGENT_MAX, [IC_T_REASON] = IC_REASON_MAX,
	[IC_T_KEY] = IC_KEY_MAX, [IC_T_VALUE] = IC_VALUE_MAX, [IC_T_PATH] = IC_PATH_MAX,
	[IC_T_DATA] = IC_DATA_MAX, [IC_T_MESSAGE] = IC_MESSAGE_MAX,
};

static void rewrite(const struct ic_msg *m)
{
	static uint8_t out[IC_MAX_FRAME];
	struct ic_writer w;
	struct ic_hdr h;
	struct ic_msg back;
	const char *why;
	int n;

	ic_begin(&w, out, sizeof(out), m->h.type, m->h.flags, m->h.id, m->h.status);
	for (unsigned int t = 1; t <= IC_TAG_MAX; t++) {
		if (!ic_has(m, t))
			continue;
		if (limits[t])
			ic_put_bytes(&w, (uint16_t)t, m->str[t].p, m->str[t].len);
		else if (t == IC_T_SEQ || t == IC_T_TIME || t == IC_T_GUEST_TIME ||
			 t == IC_T_SIZE || t == IC_T_OFFSET || t == IC_T_DELTA)
			ic_put_u64(&w, (uint16_t)t, m->num[t]);
		else
			ic_put_u32(&w, (uint16_t)t, (uint32_t)m->num[t]);
	}
	n = ic_end(&w);
	if (n < 0)
		return;		/* the fields of a frame fit a frame: cannot happen */
	if (ic_hdr_decode(out, (size_t)n, &h) != 1 || ic_parse(&h, out + IC_HDR_LEN, &back, &why))
		abort();
	if (back.have != m->have)
		abort();
	for (unsigned int t = 1; t <= IC_TAG_MAX; t++) {
		if (!ic_has(m, t))
			continue;
		if (limits[t] ? back.str[t].len != m->str[t].len ||
				memcmp(back.str[t].p, m->str[t].p, m->str[t].len) :
				back.num[t] != m->num[t])
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	while (size) {
		struct ic_hdr h;
		struct ic_msg m;
		const char *why;
		char text[64];
		int ret = ic_hdr_decode(data, size, &h);

		if (ret <= 0 || h.len > size - IC_HDR_LEN)
			return 0;	/* a half frame, or not the protocol: the stream ends */
		ret = ic_parse(&h, data + IC_HDR_LEN, &m, &why);
		if (ret == IC_OK) {
			for (unsigned int t = 1; t <= IC_TAG_MAX; t++) {
				if (!ic_has(&m, t) || !limits[t])
					continue;
				if (m.str[t].p < data + IC_HDR_LEN ||
				    m.str[t].p + m.str[t].len > data + IC_HDR_LEN + h.len ||
				    m.str[t].len > limits[t])
					abort();
				ic_str_copy(&m, t, text, sizeof(text));
				if (strlen(text) >= sizeof(text))
					abort();
			}
			rewrite(&m);
		} else if (!why || !*why) {
			abort();	/* a refusal always says why */
		}
		data += IC_HDR_LEN + h.len;
		size -= IC_HDR_LEN + h.len;
	}
	return 0;
}
