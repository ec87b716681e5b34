// SPDX-License-Identifier: MIT
/* Helpers for scatter/gather lists, and whole reads and writes at an offset. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "util/util.h"

size_t iov_length(const struct iovec *iov, unsigned int cnt)
{
	size_t len = 0;

	for (unsigned int i = 0; i < cnt; i++)
		len += iov[i].iov_len;
	return len;
}

unsigned int iov_slice(const struct iovec *src, unsigned int cnt, size_t skip,
		       size_t len, struct iovec *dst)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < cnt && len; i++) {
		size_t take;

		if (skip >= src[i].iov_len) {
			skip -= src[i].iov_len;
			continue;
		}
		take = src[i].iov_len - skip;
		if (take > len)
			take = len;
		dst[n].iov_base = (char *)src[i].iov_base + skip;
		dst[n].iov_len = take;
		n++;
		len -= take;
		skip = 0;
	}
	return n;
}

/* Walk [skip, skip + len) of @iov, calling @fn on each contiguous piece. */
static size_t iov_walk(const struct iovec *iov, unsigned int cnt, size_t skip,
		       size_t len, void (*fn)(void *piece, size_t n, size_t pos,
					      void *arg), void *arg)
{
	size_t pos = 0;

	for (unsigned int i = 0; i < cnt && len; i++) {
		size_t take;

		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		take = iov[i].iov_len - skip;
		if (take > len)
			take = len;
		fn((char *)iov[i].iov_base + skip, take, pos, arg);
		pos += take;
		len -= take;
		skip = 0;
	}
	return pos;
}

static void piece_set(void *piece, size_t n, size_t pos, void *arg)
{
	(void)pos;
	memset(piece, *(int *)arg, n);
}

void iov_memset(const struct iovec *iov, unsigned int cnt, size_t skip,
		int c, size_t len)
{
	iov_walk(iov, cnt, skip, len, piece_set, &c);
}

static void piece_to_buf(void *piece, size_t n, size_t pos, void *arg)
{
	memcpy((char *)arg + pos, piece, n);
}

size_t iov_to_buf(const struct iovec *iov, unsigned int cnt, size_t skip,
		  void *buf, size_t len)
{
	return iov_walk(iov, cnt, skip, len, piece_to_buf, buf);
}

static void piece_from_buf(void *piece, size_t n, size_t pos, void *arg)
{
	memcpy(piece, (const char *)arg + pos, n);
}

size_t iov_from_buf(const struct iovec *iov, unsigned int cnt, size_t skip,
		    const void *buf, size_t len)
{
	return iov_walk(iov, cnt, skip, len, piece_from_buf, (void *)buf);
}

static int io_full(int fd, uint8_t *p, size_t len, uint64_t off, bool write)
{
	while (len) {
		ssize_t n = write ? pwrite(fd, p, len, (off_t)off) : pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	return io_full(fd, buf, len, off, false);
}

int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	return io_full(fd, (uint8_t *)buf, len, off, true);
}
