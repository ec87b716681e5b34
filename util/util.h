/* SPDX-License-Identifier: MIT */
/*
 * util: helpers shared by several parts of fsvisor.
 *
 * Logging, size strings, object names, crash-safe JSON files and the
 * SOCK_SEQPACKET + JSON control messages that the service and its workers
 * exchange.  Functions return 0 or a negative errno; none of them exits.
 */
#ifndef FSVISOR_UTIL_H
#define FSVISOR_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
/* The structure holding @ptr, a pointer to its @member. */
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

/* ---- logging (log.c) ---------------------------------------------------- */

enum log_level {
	LOG_ERROR,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};

/* Messages above @level are dropped.  The default is LOG_INFO. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parse "error", "warn", "info" or "debug"; -EINVAL otherwise. */
int log_level_parse(const char *s, enum log_level *out);
/*
 * Send messages to @path (appended, with timestamps) instead of stderr.
 * NULL goes back to stderr.
 */
int log_set_file(const char *path);
/* A short tag printed before every message, e.g. "vm web1". */
void log_set_tag(const char *tag);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)					\
	do {						\
		if (log_get_level() >= LOG_DEBUG)	\
			log_msg(LOG_DEBUG, __VA_ARGS__);\
	} while (0)

/* ---- sizes (size.c) ----------------------------------------------------- */

/*
 * Parse a size: decimal digits with an optional K, M, G, T, P or E suffix
 * (powers of 1024, case-insensitive, an optional trailing "B" or "iB"), and
 * surrounding whitespace including one trailing newline.  Signs, fractions,
 * junk and values that overflow 64 bits give -EINVAL or -ERANGE.
 */
int size_parse(const char *s, uint64_t *out);
/*
 * Print @bytes with the largest suffix that divides it exactly ("20G",
 * "1536K", "512"); buffers of SIZE_STR_MAX always suffice.
 */
#define SIZE_STR_MAX 24
char *size_format(uint64_t bytes, char *buf, size_t len);
/* Print @bytes for people, rounded to 3 significant digits: "1.50 GiB". */
char *size_format_human(uint64_t bytes, char *buf, size_t len);

/* ---- object names (name.c) ---------------------------------------------- */

#define NAME_MAX_LEN 64

/* True for [A-Za-z0-9._-]{1,64} that does not start with a dot. */
bool name_valid(const char *name);
/* Like name_valid(), with a sentence saying what is wrong (or NULL). */
const char *name_problem(const char *name);

/* ---- crash-safe JSON files (jsonfile.c) --------------------------------- */

/*
 * Replace @path with @doc so that a crash at any moment leaves either the
 * old file or the new one: write a temporary file in the same directory,
 * fsync it, rename it over @path, fsync the directory.
 */
int json_file_save(const char *path, const json_t *doc);
/* Load @path; -ENOENT if absent, -EINVAL (message in @err) if malformed. */
int json_file_load(const char *path, json_t **out, char *err, size_t errlen);

/* ---- scatter/gather lists (iov.c) -------------------------------------- */

struct iovec;

size_t iov_length(const struct iovec *iov, unsigned int cnt);
/* Describe bytes [skip, skip + len) of @src in @dst; returns the count. */
unsigned int iov_slice(const struct iovec *src, unsigned int cnt, size_t skip,
		       size_t len, struct iovec *dst);
void iov_memset(const struct iovec *iov, unsigned int cnt, size_t skip,
		int c, size_t len);
/* Copy between a list and a flat buffer; return the bytes copied. */
size_t iov_to_buf(const struct iovec *iov, unsigned int cnt, size_t skip,
		  void *buf, size_t len);
size_t iov_from_buf(const struct iovec *iov, unsigned int cnt, size_t skip,
		    const void *buf, size_t len);

/*
 * All @len bytes at @off, or a negative errno (-EIO for a file that ends
 * first); EINTR is retried.
 */
int pread_full(int fd, void *buf, size_t len, uint64_t off);
int pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/* ---- base64 (base64.c) ------------------------------------------------ */

/* Encode @len bytes; returns a new NUL-terminated string or NULL. */
char *base64_encode(const void *data, size_t len);
/*
 * Decode @text into a new buffer of *len bytes; -EINVAL for anything
 * that is not base64 (RFC 4648 alphabet, '=' padding).
 */
int base64_decode(const char *text, uint8_t **out, size_t *len);

/* ---- CRC-32C (crc32c.c) ---------------------------------------------------- */

/* CRC-32C (Castagnoli), as iSCSI, ext4 and VHDX use it; @crc starts at 0. */
uint32_t crc32c(uint32_t crc, const void *data, size_t len);

/* ---- ring files (ringfile.c) -------------------------------------------- */

/*
 * A bounded log on disk: a 4 KiB header (magic, capacity, bytes ever
 * written) and a data area used as a ring.  One process appends (the VM
 * worker, console output); others read it at absolute offsets, of which
 * the last @capacity bytes are kept.
 */
struct ringfile;

int ringfile_create(const char *path, uint64_t capacity, struct ringfile **out);
int ringfile_append(struct ringfile *r, const void *buf, size_t len);
void ringfile_close(struct ringfile *r);
/* Bytes ever written, and the oldest absolute offset still kept. */
int ringfile_extent(const char *path, uint64_t *head, uint64_t *oldest);
/*
 * Read up to @len bytes from absolute offset *@off (moved up to the
 * oldest kept byte if it is older); returns the count, 0 at the end.
 */
ssize_t ringfile_read(const char *path, uint64_t *off, void *buf, size_t len);

/* ---- control messages (msg.c) ------------------------------------------- */

/* Largest JSON text in one message, and most descriptors with it. */
#define MSG_MAX_BYTES (256 * 1024)
#define MSG_MAX_FDS 16

/*
 * Send @obj as one SOCK_SEQPACKET message, with @nfds descriptors attached
 * through SCM_RIGHTS.  The descriptors stay open in the caller.
 */
int msg_send(int sock, const json_t *obj, const int *fds, size_t nfds);
/*
 * Receive one message.  On success *obj holds a new reference to a JSON
 * object and up to @max_fds received descriptors are in @fds, *nfds of
 * them, owned by the caller.  Returns -ECONNRESET on orderly shutdown,
 * -EMSGSIZE for truncated data or descriptors (any received descriptors
 * are closed), -EBADMSG for text that is not a JSON object.
 */
int msg_recv(int sock, json_t **obj, int *fds, size_t *nfds, size_t max_fds);
/* Send a request and wait for one reply on the same socket. */
int msg_call(int sock, const json_t *req, json_t **reply);
/*
 * Listen on a SOCK_SEQPACKET socket at @path (non-blocking, close-on-exec,
 * mode 0600).  A socket file nobody answers on (left by a dead process) is
 * replaced; a live one gives -EADDRINUSE.  Returns the descriptor, or a
 * negative errno with a sentence in @err.
 */
int msg_listen(const char *path, char *err, size_t errlen);
/* Connect to the SOCK_SEQPACKET socket at @path: a descriptor or -errno. */
int msg_connect(const char *path);

#endif /* FSVISOR_UTIL_H */
