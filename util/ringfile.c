// SPDX-License-Identifier: MIT
/*
 * Ring files: a bounded log on disk that outlives its readers.  The VM
 * worker writes its console into one, so output goes on being kept while
 * the service restarts, and the service serves reads of "console" from
 * it.  Layout: a 4 KiB header (magic, capacity, head = bytes ever
 * written, little-endian) and @capacity bytes of data, byte n of the
 * stream at data[n % capacity].  The header is updated after the data.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"

#define RING_MAGIC "FSVRING1"
#define RING_HEADER 4096

struct ringfile {
	int fd;
	uint64_t capacity;
	uint64_t head;
};

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static int write_header(int fd, uint64_t capacity, uint64_t head)
{
	uint8_t h[24];

	memcpy(h, RING_MAGIC, 8);
	put64(h + 8, capacity);
	put64(h + 16, head);
	return pwrite(fd, h, sizeof(h), 0) == sizeof(h) ? 0 : -EIO;
}

static int read_header(int fd, uint64_t *capacity, uint64_t *head)
{
	uint8_t h[24];

	if (pread(fd, h, sizeof(h), 0) != sizeof(h) || memcmp(h, RING_MAGIC, 8))
		return -EINVAL;
	*capacity = get64(h + 8);
	*head = get64(h + 16);
	return *capacity ? 0 : -EINVAL;
}

int ringfile_create(const char *path, uint64_t capacity, struct ringfile **out)
{
	struct ringfile *r;
	uint64_t cap, head;
	int fd, ret;

	if (!capacity)
		return -EINVAL;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	r = calloc(1, sizeof(*r));
	if (!r) {
		close(fd);
		return -ENOMEM;
	}
	r->fd = fd;
	/* An existing ring of the same size goes on where it stopped. */
	if (read_header(fd, &cap, &head) == 0 && cap == capacity) {
		r->capacity = cap;
		r->head = head;
	} else {
		r->capacity = capacity;
		r->head = 0;
		ret = ftruncate(fd, (off_t)(RING_HEADER + capacity)) < 0 ? -errno :
		      write_header(fd, capacity, 0);
		if (ret) {
			ringfile_close(r);
			return ret;
		}
	}
	*out = r;
	return 0;
}

int ringfile_append(struct ringfile *r, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	/* Only the last capacity bytes would survive anyway. */
	if (len > r->capacity) {
		r->head += len - r->capacity;
		p += len - r->capacity;
		len = (size_t)r->capacity;
	}
	while (len) {
		uint64_t at = r->head % r->capacity;
		size_t n = (size_t)(r->capacity - at) < len ? (size_t)(r->capacity - at) : len;

		if (pwrite(r->fd, p, n, (off_t)(RING_HEADER + at)) != (ssize_t)n)
			return -EIO;
		r->head += n;
		p += n;
		len -= n;
	}
	return write_header(r->fd, r->capacity, r->head);
}

void ringfile_close(struct ringfile *r)
{
	if (!r)
		return;
	close(r->fd);
	free(r);
}

int ringfile_extent(const char *path, uint64_t *head, uint64_t *oldest)
{
	uint64_t cap;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret;

	if (fd < 0)
		return -errno;
	ret = read_header(fd, &cap, head);
	close(fd);
	if (!ret)
		*oldest = *head > cap ? *head - cap : 0;
	return ret;
}

ssize_t ringfile_read(const char *path, uint64_t *off, void *buf, size_t len)
{
	uint64_t cap, head, oldest;
	size_t done = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (read_header(fd, &cap, &head)) {
		close(fd);
		return -EINVAL;
	}
	oldest = head > cap ? head - cap : 0;
	if (*off < oldest)
		*off = oldest;
	if (*off >= head) {
		close(fd);
		return 0;
	}
	if (len > head - *off)
		len = (size_t)(head - *off);
	while (done < len) {
		uint64_t at = (*off + done) % cap;
		size_t n = (size_t)(cap - at) < len - done ? (size_t)(cap - at) : len - done;
		ssize_t got = pread(fd, (uint8_t *)buf + done, n, (off_t)(RING_HEADER + at));

		if (got <= 0)
			break;
		done += (size_t)got;
	}
	/*
	 * The writer may have wrapped over the start of what was just copied:
	 * drop the bytes that are no longer the stream's.
	 */
	if (done && read_header(fd, &cap, &head) == 0) {
		oldest = head > cap ? head - cap : 0;
		if (oldest > *off) {
			uint64_t lost = oldest - *off;

			if (lost >= done) {
				*off = oldest;
				done = 0;
			} else {
				memmove(buf, (uint8_t *)buf + lost, done - (size_t)lost);
				*off += lost;
				done -= (size_t)lost;
			}
		}
	}
	close(fd);
	*off += done;
	return (ssize_t)done;
}
