/* SPDX-License-Identifier: MIT */
/*
 * The integration-services protocol between the service and a guest
 * agent (docs/integration.md): length-prefixed frames with a type, a
 * request id and a status, whose payload is a list of tagged fields.
 *
 * This encoder and parser are shared by the service, the Linux agent and
 * the freestanding test guest, so they use nothing of a C library: no
 * allocation, no string functions.  Every length the peer sends is
 * checked before it is used.
 */
#ifndef FSVISOR_ICPROTO_H
#define FSVISOR_ICPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The host port the agent connects to (vsock CID 2): "IC" in ASCII. */
#define IC_PORT			0x4943
#define IC_VERSION_MIN		1
#define IC_VERSION_MAX		1

#define IC_HDR_LEN		16
/* The largest payload of one frame; a longer length is a protocol error. */
#define IC_MAX_PAYLOAD		65536
#define IC_MAX_FRAME		(IC_HDR_LEN + IC_MAX_PAYLOAD)

/* Limits of fields, in bytes (Hyper-V's for KVP). */
#define IC_KEY_MAX		512
#define IC_VALUE_MAX		2048
#define IC_REASON_MAX		256
#define IC_AGENT_MAX		128
#define IC_PATH_MAX		4096
#define IC_MESSAGE_MAX		512
#define IC_DATA_MAX		61440

enum ic_type {
	IC_HELLO = 1,
	IC_HEARTBEAT = 2,
	IC_SHUTDOWN = 3,
	IC_TIME = 4,
	IC_KVP_SET = 5,
	IC_KVP_DELETE = 6,
	IC_KVP_CLEAR = 7,
	IC_FREEZE = 8,
	IC_THAW = 9,
	IC_BACKUP_STATUS = 10,
	IC_FILE_OPEN = 11,
	IC_FILE_DATA = 12,
	IC_FILE_CLOSE = 13,
	IC_TYPE_MAX = 13,
};

/* Header flags. */
#define IC_F_REPLY		0x0001	/* answers request @id */

enum ic_tag {
	IC_T_VERSION_MIN = 1,	/* u32 */
	IC_T_VERSION_MAX = 2,	/* u32 */
	IC_T_VERSION = 3,	/* u32 */
	IC_T_CAPS = 4,		/* u32, IC_CAP_* */
	IC_T_AGENT = 5,		/* string: the agent's name and version */
	IC_T_SEQ = 6,		/* u64 */
	IC_T_MODE = 7,		/* u32: IC_SHUTDOWN_*, IC_TIME_* */
	IC_T_REASON = 8,	/* string */
	IC_T_TIME = 9,		/* u64: the host's UTC, ns since 1970 */
	IC_T_GUEST_TIME = 10,	/* u64: the guest's UTC when the request came */
	IC_T_POOL = 11,		/* u32: IC_POOL_* */
	IC_T_KEY = 12,		/* string, 1 to IC_KEY_MAX bytes */
	IC_T_VALUE = 13,	/* string, up to IC_VALUE_MAX bytes */
	IC_T_TIMEOUT = 14,	/* u32: ms */
	IC_T_COUNT = 15,	/* u32 */
	IC_T_STATE = 16,	/* u32: IC_BACKUP_* */
	IC_T_PATH = 17,		/* string: an absolute path in the guest */
	IC_T_SIZE = 18,		/* u64 */
	IC_T_FLAGS = 19,	/* u32: IC_FILE_* */
	IC_T_HANDLE = 20,	/* u32 */
	IC_T_OFFSET = 21,	/* u64 */
	IC_T_DATA = 22,		/* bytes */
	IC_T_MESSAGE = 23,	/* string: why a request failed */
	IC_T_ADJUST = 24,	/* u32: IC_ADJUST_* */
	IC_T_REMAIN = 25,	/* u32: ms */
	IC_T_FILE_MODE = 26,	/* u32: permission bits */
	IC_T_DELTA = 27,	/* u64: a signed (two's complement) ns correction */
	IC_TAG_MAX = 27,
};

/* Services (IC_T_CAPS): what the agent can do, what the host enables. */
#define IC_CAP_HEARTBEAT	0x01
#define IC_CAP_SHUTDOWN		0x02
#define IC_CAP_TIMESYNC		0x04
#define IC_CAP_KVP		0x08
#define IC_CAP_BACKUP		0x10
#define IC_CAP_FILECOPY		0x20
#define IC_CAP_ALL		0x3F

#define IC_SHUTDOWN_POWEROFF	0
#define IC_SHUTDOWN_REBOOT	1

/*
 * IC_TIME: a sample measures (the guest answers with its clock and changes
 * nothing); a step or a slew moves the guest's clock by IC_T_DELTA, which
 * the host worked out from a sample.  A correction is relative, so a
 * request that came late moves the clock no less right.
 */
#define IC_TIME_SAMPLE		0
#define IC_TIME_STEP		1
#define IC_TIME_SLEW		2

#define IC_ADJUST_NONE		0
#define IC_ADJUST_SLEW		1
#define IC_ADJUST_STEP		2

/* KVP pools (Hyper-V's): host to guest, set by the guest, the guest's intrinsic items. */
#define IC_POOL_HOST		0
#define IC_POOL_GUEST		1
#define IC_POOL_INTRINSIC	2
#define IC_POOL_MAX		2

#define IC_BACKUP_THAWED	0
#define IC_BACKUP_FROZEN	1

#define IC_FILE_OVERWRITE	0x1
#define IC_FILE_MKDIRS		0x2
#define IC_FILE_COMMIT		0x1	/* IC_FILE_CLOSE: keep what was written */

struct ic_hdr {
	uint32_t len;			/* payload bytes */
	uint16_t type;
	uint16_t flags;
	uint32_t id;			/* 0: no reply wanted */
	uint32_t status;		/* replies: 0, or a Linux errno number */
};

/* ---- reading ---------------------------------------------------------------- */

/*
 * The header at the start of @buf (@len bytes there so far):
 *   1   a header, and h->len payload bytes follow it
 *   0   fewer than IC_HDR_LEN bytes: wait for more
 *  -1   a payload over IC_MAX_PAYLOAD or unknown flags: the stream is
 *       not this protocol (or is corrupt); close it
 */
int ic_hdr_decode(const uint8_t *buf, size_t len, struct ic_hdr *h);

struct ic_str {
	const uint8_t *p;		/* into the payload; not NUL-terminated */
	uint16_t len;
};

/* A parsed message: which fields it had, and their values. */
struct ic_msg {
	struct ic_hdr h;
	uint32_t have;			/* bit (1 << tag) for each field present */
	uint64_t num[IC_TAG_MAX + 1];	/* u32 and u64 fields */
	struct ic_str str[IC_TAG_MAX + 1];	/* strings and bytes */
};

enum ic_parse_result {
	IC_OK = 0,
	IC_BAD_FRAME = -1,	/* a field past the payload: close the stream */
	IC_BAD_TYPE = -2,	/* a type this side does not know: ENOSYS */
	IC_BAD_FIELD = -3,	/* a field of the wrong size, twice, not UTF-8, too long: EINVAL */
	IC_MISSING = -4,	/* a field this message needs is not there: EINVAL */
};

/*
 * Parse the payload of a frame whose header is @h: every field's length
 * is checked against the payload and its tag's kind, strings must be
 * UTF-8 without NUL bytes; unknown tags are skipped.  A reply with an
 * error status needs no fields.  On failure *@why says what was wrong.
 */
int ic_parse(const struct ic_hdr *h, const uint8_t *payload, struct ic_msg *m,
	     const char **why);

static inline bool ic_has(const struct ic_msg *m, unsigned int tag)
{
	return tag <= IC_TAG_MAX && (m->have & (1u << tag));
}

/* Copy string field @tag into @buf (NUL-terminated, cut to @len - 1). */
void ic_str_copy(const struct ic_msg *m, unsigned int tag, char *buf, size_t len);
/* Whether string field @tag equals @s. */
bool ic_str_eq(const struct ic_msg *m, unsigned int tag, const char *s);
/* Strict UTF-8 without NUL (no overlong forms, no surrogates). */
bool ic_utf8_valid(const uint8_t *p, size_t len);

/* ---- writing ---------------------------------------------------------------- */

struct ic_writer {
	uint8_t *buf;
	size_t cap, len;
	bool overflow;
};

/* Start a frame in @buf (@cap bytes, at most IC_MAX_FRAME are used). */
void ic_begin(struct ic_writer *w, uint8_t *buf, size_t cap, uint16_t type,
	      uint16_t flags, uint32_t id, uint32_t status);
void ic_put_u32(struct ic_writer *w, uint16_t tag, uint32_t v);
void ic_put_u64(struct ic_writer *w, uint16_t tag, uint64_t v);
void ic_put_bytes(struct ic_writer *w, uint16_t tag, const void *p, size_t len);
void ic_put_str(struct ic_writer *w, uint16_t tag, const char *s);
/* Finish the frame: its length in bytes, or -1 when it did not fit. */
int ic_end(struct ic_writer *w);

/* A reply to @req's header: REPLY, the same id, and @status. */
void ic_begin_reply(struct ic_writer *w, uint8_t *buf, size_t cap,
		    const struct ic_hdr *req, uint32_t status);

const char *ic_type_name(unsigned int type);

#endif /* FSVISOR_ICPROTO_H */
