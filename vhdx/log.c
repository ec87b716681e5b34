// SPDX-License-Identifier: MIT
/*
 * The VHDX log (MS-VHDX 2.3): finding and replaying the active sequence
 * on open, and building the entries our own metadata commits write.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhdx/state.h"

/* Descriptor writes may not touch the file identifier or the headers. */
#define LOG_MIN_TARGET VHDX_REGION1_OFFSET
/* Nor reach beyond any size a VHDX file could have. */
#define LOG_MAX_TARGET (VHDX_MAX_DISK_SIZE * 2)

struct log_entry {
	uint32_t off;			/* within the log */
	uint32_t len;
	uint32_t tail;
	uint64_t seq;
	uint32_t ndesc;
	uint64_t flushed;
	uint64_t last;
};

/* Copy @len bytes at @off of the circular log into @out. */
static void log_copy(const uint8_t *log, uint32_t loglen, uint32_t off,
		     uint8_t *out, uint32_t len)
{
	uint32_t first = loglen - off < len ? loglen - off : len;

	memcpy(out, log + off, first);
	memcpy(out + first, log, len - first);
}

static uint32_t desc_sectors(uint32_t ndesc)
{
	return (LOG_HEADER_SIZE + ndesc * LOG_DESC_SIZE + VHDX_SECTOR - 1) /
	       VHDX_SECTOR;
}

/*
 * Is there a valid entry at @off?  Checks every field of the header and
 * the descriptors, the data sector stamps and the checksum.  @buf has room
 * for a whole log.
 */
static bool entry_valid(const uint8_t *log, uint32_t loglen, uint32_t off,
			const struct guid *log_guid, uint8_t *buf,
			struct log_entry *e)
{
	uint8_t head[LOG_HEADER_SIZE];
	uint32_t nsect, ndata = 0, dsect;
	struct guid g;

	log_copy(log, loglen, off, head, LOG_HEADER_SIZE);
	if (memcmp(head, VHDX_SIG_LOGE, 4) != 0)
		return false;
	e->off = off;
	e->len = get32(head + LE_ENTRY_LENGTH);
	e->tail = get32(head + LE_TAIL);
	e->seq = get64(head + LE_SEQUENCE);
	e->ndesc = get32(head + LE_DESC_COUNT);
	e->flushed = get64(head + LE_FLUSHED_OFFSET);
	e->last = get64(head + LE_LAST_OFFSET);
	get_guid(&g, head + LE_LOG_GUID);
	if (!guid_equal(&g, log_guid) || e->seq == 0 ||
	    e->len == 0 || e->len % VHDX_SECTOR || e->len > loglen ||
	    e->tail % VHDX_SECTOR || e->tail >= loglen ||
	    e->ndesc > loglen / LOG_DESC_SIZE ||
	    e->flushed % VHDX_ALIGN || e->last % VHDX_ALIGN)
		return false;
	nsect = e->len / VHDX_SECTOR;
	dsect = desc_sectors(e->ndesc);
	if (dsect > nsect)
		return false;

	log_copy(log, loglen, off, buf, e->len);
	if (vhdx_checksum(buf, e->len, LE_CHECKSUM) != get32(buf + LE_CHECKSUM))
		return false;
	for (uint32_t i = 0; i < e->ndesc; i++) {
		const uint8_t *d = buf + LOG_HEADER_SIZE + i * LOG_DESC_SIZE;
		uint64_t target = get64(d + 16);

		if (get64(d + 24) != e->seq || target % VHDX_SECTOR)
			return false;
		if (memcmp(d, VHDX_SIG_DESC, 4) == 0) {
			const uint8_t *ds;

			if (dsect + ndata >= nsect)
				return false;
			ds = buf + (dsect + ndata) * VHDX_SECTOR;
			if (memcmp(ds, VHDX_SIG_DATA, 4) != 0 ||
			    get32(ds + 4) != (uint32_t)(e->seq >> 32) ||
			    get32(ds + 4092) != (uint32_t)e->seq)
				return false;
			if (target < LOG_MIN_TARGET || target > LOG_MAX_TARGET)
				return false;
			ndata++;
		} else if (memcmp(d, VHDX_SIG_ZERO, 4) == 0) {
			uint64_t zlen = get64(d + 8);

			if (zlen % VHDX_SECTOR || target < LOG_MIN_TARGET ||
			    target > LOG_MAX_TARGET || zlen > LOG_MAX_TARGET)
				return false;
		} else {
			return false;
		}
	}
	return dsect + ndata == nsect;
}

/* The spec's scan for the newest valid and complete sequence. */
static int find_active(const uint8_t *log, uint32_t loglen,
		       const struct guid *log_guid, uint8_t *buf,
		       struct log_entry *seq, uint32_t *nseq)
{
	uint32_t max = loglen / VHDX_SECTOR;
	struct log_entry *cur = calloc(max, sizeof(*cur));
	uint64_t best_seq = 0;
	uint32_t cur_tail = 0, old_tail = 0, iterations = 0;

	if (!cur)
		return -ENOMEM;
	*nseq = 0;
	for (;;) {
		uint32_t n = 0, head = cur_tail;
		uint64_t span = 0;
		bool valid = false;
		struct log_entry e;

		/* A sequence can never be longer than the log itself. */
		while (n < max && entry_valid(log, loglen, head, log_guid, buf, &e) &&
		       (n == 0 || e.seq == cur[n - 1].seq + 1) &&
		       span + e.len <= loglen) {
			cur[n++] = e;
			span += e.len;
			head = (head + e.len) % loglen;
		}
		if (n) {
			uint32_t tail = cur[n - 1].tail;

			for (uint32_t i = 0; i < n; i++)
				if (cur[i].off == tail) {
					/* Replay starts at the tail entry. */
					valid = true;
					if (cur[n - 1].seq > best_seq) {
						best_seq = cur[n - 1].seq;
						*nseq = n - i;
						memcpy(seq, cur + i,
						       sizeof(*seq) * (n - i));
					}
					break;
				}
		}
		if (!n || !valid) {
			cur_tail += VHDX_SECTOR;
			if (cur_tail >= loglen)
				cur_tail = 0;
		} else {
			cur_tail = head;
		}
		if (cur_tail < old_tail || ++iterations > max)
			break;
		old_tail = cur_tail;
	}
	free(cur);
	return 0;
}

static int overlay_add(struct vhdx *v, uint64_t off, uint64_t len,
		       const uint8_t *data)
{
	struct overlay *ov = realloc(v->ov, sizeof(*ov) * (v->nov + 1));

	if (!ov)
		return -ENOMEM;
	v->ov = ov;
	ov[v->nov].off = off;
	ov[v->nov].len = len;
	ov[v->nov].data = NULL;
	if (data) {
		ov[v->nov].data = malloc(len);
		if (!ov[v->nov].data)
			return -ENOMEM;
		memcpy(ov[v->nov].data, data, len);
	}
	v->nov++;
	return 0;
}

static int zero_range(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[64 * 1024];

	while (len) {
		size_t n = len > sizeof(zeros) ? sizeof(zeros) : len;
		int ret = file_pwrite(fd, zeros, n, off);

		if (ret)
			return ret;
		off += n;
		len -= n;
	}
	return 0;
}

/* Apply one entry's descriptors, to the file or to the overlay. */
static int entry_apply(struct vhdx *v, const uint8_t *buf,
		       const struct log_entry *e, bool in_memory)
{
	uint32_t dsect = desc_sectors(e->ndesc), ndata = 0;
	uint8_t *sector = vhdx_alloc(VHDX_SECTOR);
	int ret = 0;

	if (!sector)
		return -ENOMEM;
	for (uint32_t i = 0; i < e->ndesc && !ret; i++) {
		const uint8_t *d = buf + LOG_HEADER_SIZE + i * LOG_DESC_SIZE;
		uint64_t target = get64(d + 16);

		if (memcmp(d, VHDX_SIG_DESC, 4) == 0) {
			const uint8_t *ds = buf + (dsect + ndata++) * VHDX_SECTOR;

			/* Leading 8 and trailing 4 bytes live in the descriptor. */
			memcpy(sector, d + 8, 8);
			memcpy(sector + 8, ds + 8, VHDX_SECTOR - 12);
			memcpy(sector + VHDX_SECTOR - 4, d + 4, 4);
			if (in_memory)
				ret = overlay_add(v, target, VHDX_SECTOR, sector);
			else
				ret = file_pwrite(v->fd, sector, VHDX_SECTOR, target);
		} else {
			uint64_t zlen = get64(d + 8);

			if (in_memory)
				ret = overlay_add(v, target, zlen, NULL);
			else
				ret = zero_range(v->fd, target, zlen);
		}
	}
	free(sector);
	return ret;
}

int vhdx_log_replay(struct vhdx *v, struct vhdx_report *r, bool in_memory)
{
	struct log_entry *seq = NULL;
	uint8_t *log = NULL, *buf = NULL;
	uint32_t nseq = 0;
	const struct log_entry *head;
	static const struct guid zero;
	int ret;

	if (!v->log_length)
		return vhdx_fail(r, "the header names a log to replay but the log is empty");
	if (r->checking && !v->repairing) {
		/* Check reports a dirty log; it does not replay it. */
		vhdx_problem(r, "%s", VHDX_MSG_LOG_DIRTY);
		in_memory = true;
	}

	log = vhdx_alloc(v->log_length);
	buf = vhdx_alloc(v->log_length);
	seq = calloc(v->log_length / VHDX_SECTOR, sizeof(*seq));
	if (!log || !buf || !seq) {
		ret = -ENOMEM;
		goto out;
	}
	ret = file_pread(v->fd, log, v->log_length, v->log_offset);
	if (ret)
		goto out;
	ret = find_active(log, v->log_length, &v->log_guid, buf, seq, &nseq);
	if (ret)
		goto out;
	if (nseq == 0) {
		/*
		 * A LogGuid without entries: the writer stopped between
		 * setting the GUID and writing its first entry.  Nothing can
		 * have been applied, so the log is empty in effect.
		 */
		vhdx_warn(r, "the header has a log GUID but the log holds no valid entry");
		goto clear;
	}
	head = &seq[nseq - 1];
	if (head->flushed > v->file_size) {
		ret = vhdx_fail(r, "the file is truncated: %llu bytes, the log says at least %llu",
				(unsigned long long)v->file_size,
				(unsigned long long)head->flushed);
		goto out;
	}
	if (!in_memory) {
		/* A new FileWriteGuid before the file changes (2.2.2). */
		ret = vhdx_header_update(v, true, &v->log_guid);
		if (ret)
			goto out;
	}
	for (uint32_t i = 0; i < nseq && !ret; i++) {
		log_copy(log, v->log_length, seq[i].off, buf, seq[i].len);
		ret = entry_apply(v, buf, &seq[i], in_memory);
	}
	if (ret)
		goto out;
	if (head->last > v->file_size) {
		if (!in_memory && ftruncate(v->fd, (off_t)head->last) < 0) {
			ret = -errno;
			goto out;
		}
		v->file_size = head->last;
	}
	if (!in_memory && fdatasync(v->fd) < 0) {
		ret = -errno;
		goto out;
	}
	v->d->info.log_replayed = true;
clear:
	if (!in_memory)
		ret = vhdx_header_update(v, false, &zero);
out:
	free(log);
	free(buf);
	free(seq);
	return ret;
}

uint32_t vhdx_log_build(uint8_t *entry, const struct log_entry_head *h,
			const struct log_sector *s, uint32_t n)
{
	uint32_t len = (1 + n) * VHDX_SECTOR;

	/* One descriptor sector: the writer's entries never need more. */
	if (n > LOG_DESC_FIRST_SECTOR)
		return 0;
	for (uint32_t i = 0; i < n; i++)
		if (s[i].off % VHDX_SECTOR || s[i].off < LOG_MIN_TARGET)
			return 0;

	memset(entry, 0, VHDX_SECTOR);
	memcpy(entry + LE_SIGNATURE, VHDX_SIG_LOGE, 4);
	put32(entry + LE_ENTRY_LENGTH, len);
	put32(entry + LE_TAIL, h->tail);
	put64(entry + LE_SEQUENCE, h->seq);
	put32(entry + LE_DESC_COUNT, n);
	memcpy(entry + LE_LOG_GUID, h->log_guid.b, 16);
	put64(entry + LE_FLUSHED_OFFSET, h->flushed);
	put64(entry + LE_LAST_OFFSET, h->last);

	for (uint32_t i = 0; i < n; i++) {
		uint8_t *d = entry + LOG_HEADER_SIZE + i * LOG_DESC_SIZE;
		uint8_t *ds = entry + (1 + i) * VHDX_SECTOR;
		const uint8_t *src = s[i].data;

		/*
		 * The data sector's first 8 and last 4 bytes carry its
		 * signature and sequence stamps, so the sector's own bytes
		 * there travel in the descriptor.
		 */
		memcpy(d, VHDX_SIG_DESC, 4);
		memcpy(d + 4, src + VHDX_SECTOR - 4, 4);	/* trailing */
		memcpy(d + 8, src, 8);				/* leading */
		put64(d + 16, s[i].off);
		put64(d + 24, h->seq);

		memcpy(ds, VHDX_SIG_DATA, 4);
		put32(ds + 4, (uint32_t)(h->seq >> 32));
		memcpy(ds + 8, src + 8, VHDX_SECTOR - 12);
		put32(ds + VHDX_SECTOR - 4, (uint32_t)h->seq);
	}
	put32(entry + LE_CHECKSUM, vhdx_checksum(entry, len, LE_CHECKSUM));
	return len;
}
