// SPDX-License-Identifier: MIT
/*
 * The log entry builder with sectors from anywhere in the file (region
 * tables, metadata, BAT), and commits of such sectors: the entries are
 * well formed, replay puts every sector in place, and a torn entry
 * changes nothing.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhdx/state.h"

#define LOG_AT (1 * MiB)	/* where vhdx_create puts the log */
#define META_AT (2 * MiB)	/* and the metadata region */
#define SIZE_ITEM (META_AT + VHDX_METADATA_TABLE + 8)

static char dir[64];
static char path[160];

static void setup(void)
{
	struct vhdx_create_opts o = { .size = 64 * MiB, .block_size = 1 * MiB,
				      .type = VDISK_TYPE_DYNAMIC };
	char err[256];

	snprintf(dir, sizeof(dir), "/tmp/fsvisor-vhdxlog-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a.vhdx", dir);
	cr_assert_eq(vhdx_create(path, &o, err, sizeof(err)), 0, "%s", err);
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

static void pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	cr_assert_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
}

static void pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	cr_assert_eq(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
}

/* A sector whose every byte says where it is, and which sector it is. */
static void pattern(uint8_t *s, unsigned int tag)
{
	for (unsigned int i = 0; i < VHDX_SECTOR; i++)
		s[i] = (uint8_t)(tag * 31 + i * 7 + (i >> 8));
}

Test(log, entry_fields_and_layout, .init = setup, .fini = teardown)
{
	static uint8_t data[3][VHDX_SECTOR], entry[4 * VHDX_SECTOR];
	const uint64_t where[3] = { VHDX_REGION1_OFFSET, META_AT, 3 * MiB + 8192 };
	struct log_sector s[3];
	struct log_entry_head h = { .seq = 0x1234567890ULL, .tail = 8192,
				    .flushed = 4 * MiB, .last = 5 * MiB };

	memset(h.log_guid.b, 0xAB, 16);
	for (int i = 0; i < 3; i++) {
		pattern(data[i], (unsigned int)i);
		s[i].off = where[i];
		s[i].data = data[i];
	}
	cr_assert_eq(vhdx_log_build(entry, &h, s, 3), 4 * VHDX_SECTOR);
	cr_assert_eq(memcmp(entry, "loge", 4), 0);
	cr_assert_eq(get32(entry + LE_CHECKSUM),
		     vhdx_checksum(entry, 4 * VHDX_SECTOR, LE_CHECKSUM));
	cr_assert_eq(get32(entry + LE_ENTRY_LENGTH), 4 * VHDX_SECTOR);
	cr_assert_eq(get32(entry + LE_TAIL), 8192);
	cr_assert_eq(get64(entry + LE_SEQUENCE), h.seq);
	cr_assert_eq(get32(entry + LE_DESC_COUNT), 3);
	cr_assert_eq(memcmp(entry + LE_LOG_GUID, h.log_guid.b, 16), 0);
	cr_assert_eq(get64(entry + LE_FLUSHED_OFFSET), 4 * MiB);
	cr_assert_eq(get64(entry + LE_LAST_OFFSET), 5 * MiB);
	for (int i = 0; i < 3; i++) {
		const uint8_t *d = entry + LOG_HEADER_SIZE + i * LOG_DESC_SIZE;
		const uint8_t *ds = entry + (1 + i) * VHDX_SECTOR;

		cr_assert_eq(memcmp(d, "desc", 4), 0);
		cr_assert_eq(memcmp(d + 4, data[i] + VHDX_SECTOR - 4, 4), 0);
		cr_assert_eq(memcmp(d + 8, data[i], 8), 0);
		cr_assert_eq(get64(d + 16), where[i]);
		cr_assert_eq(get64(d + 24), h.seq);
		cr_assert_eq(memcmp(ds, "data", 4), 0);
		cr_assert_eq(get32(ds + 4), (uint32_t)(h.seq >> 32));
		cr_assert_eq(get32(ds + VHDX_SECTOR - 4), (uint32_t)h.seq);
		cr_assert_eq(memcmp(ds + 8, data[i] + 8, VHDX_SECTOR - 12), 0);
	}
}

Test(log, entry_refuses_what_it_cannot_carry)
{
	static uint8_t data[VHDX_SECTOR];
	static uint8_t entry[(COMMIT_MAX_SECTORS + 2) * VHDX_SECTOR];
	static struct log_sector s[COMMIT_MAX_SECTORS + 1];
	struct log_entry_head h = { .seq = 1 };

	for (int i = 0; i <= COMMIT_MAX_SECTORS; i++) {
		s[i].off = 4 * MiB + (uint64_t)i * VHDX_SECTOR;
		s[i].data = data;
	}
	cr_assert_eq(vhdx_log_build(entry, &h, s, COMMIT_MAX_SECTORS),
		     (COMMIT_MAX_SECTORS + 1) * VHDX_SECTOR);
	cr_assert_eq(vhdx_log_build(entry, &h, s, COMMIT_MAX_SECTORS + 1), 0,
		     "more descriptors than one sector holds");
	s[0].off = 4 * MiB + 512;
	cr_assert_eq(vhdx_log_build(entry, &h, s, 1), 0, "unaligned target");
	s[0].off = VHDX_HEADER2_OFFSET;
	cr_assert_eq(vhdx_log_build(entry, &h, s, 1), 0, "the headers are never logged");
}

/*
 * Write an entry that sets the disk's size to 128 MiB (metadata sector)
 * and rewrites region table 2 (same contents) into the log, and point
 * both headers at it, as a writer killed after its log flush leaves it.
 */
static void leave_dirty_log(bool torn)
{
	static uint8_t meta[VHDX_SECTOR], rt[VHDX_SECTOR];
	static uint8_t entry[3 * VHDX_SECTOR], hdr[VHDX_HEADER_SIZE];
	uint64_t meta_sector = SIZE_ITEM - SIZE_ITEM % VHDX_SECTOR;
	struct log_sector s[2] = {
		{ VHDX_REGION2_OFFSET, rt }, { meta_sector, meta },
	};
	struct log_entry_head h = { .seq = 7 };
	int fd = open(path, O_RDWR);
	uint32_t len;

	cr_assert_geq(fd, 0);
	pread_all(fd, meta, VHDX_SECTOR, meta_sector);
	pread_all(fd, rt, VHDX_SECTOR, VHDX_REGION1_OFFSET);
	put64(meta + SIZE_ITEM % VHDX_SECTOR, 128 * MiB);
	guid_generate(&h.log_guid);
	h.flushed = h.last = 4 * MiB;
	len = vhdx_log_build(entry, &h, s, 2);
	cr_assert_eq(len, 3 * VHDX_SECTOR);
	if (torn)
		entry[2 * VHDX_SECTOR + 100] ^= 1;
	pwrite_all(fd, entry, len, LOG_AT);
	for (int i = 0; i < 2; i++) {
		uint64_t at = i ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET;

		pread_all(fd, hdr, VHDX_HEADER_SIZE, at);
		memcpy(hdr + HDR_LOG_GUID, h.log_guid.b, 16);
		put64(hdr + HDR_SEQUENCE, get64(hdr + HDR_SEQUENCE) + 10);
		put32(hdr + HDR_CHECKSUM, 0);
		put32(hdr + HDR_CHECKSUM,
		      vhdx_checksum(hdr, VHDX_HEADER_SIZE, HDR_CHECKSUM));
		pwrite_all(fd, hdr, VHDX_HEADER_SIZE, at);
	}
	close(fd);
}

static uint64_t disk_size(bool ro, bool *replayed)
{
	struct vdisk_open_opts o = { .read_only = ro };
	struct vdisk *d;
	char err[256];
	uint64_t size;

	cr_assert_eq(vdisk_open(path, &o, &d, err, sizeof(err)), 0, "%s", err);
	size = vdisk_info(d)->virtual_size;
	if (replayed)
		*replayed = vdisk_info(d)->log_replayed;
	cr_assert_eq(vdisk_close(d), 0);
	return size;
}

Test(log, replay_writes_metadata_and_region_sectors, .init = setup, .fini = teardown)
{
	bool replayed;

	leave_dirty_log(false);
	cr_assert_eq(disk_size(true, &replayed), 128 * MiB, "read-only replay");
	cr_assert(replayed);
	cr_assert_eq(disk_size(false, &replayed), 128 * MiB, "replay into the file");
	cr_assert(replayed);
	cr_assert_eq(disk_size(true, &replayed), 128 * MiB);
	cr_assert_not(replayed, "the replay emptied the log");
}

Test(log, torn_entry_changes_nothing, .init = setup, .fini = teardown)
{
	leave_dirty_log(true);
	cr_assert_eq(disk_size(true, NULL), 64 * MiB);
	cr_assert_eq(disk_size(false, NULL), 64 * MiB);
}

Test(log, commit_sectors_through_an_open_disk, .init = setup, .fini = teardown)
{
	static uint8_t meta[VHDX_SECTOR], rt[VHDX_SECTOR];
	uint64_t meta_sector = SIZE_ITEM - SIZE_ITEM % VHDX_SECTOR;
	struct log_sector s[3] = {
		{ meta_sector, meta }, { VHDX_REGION2_OFFSET, rt },
		{ meta_sector, meta },
	};
	struct vdisk *d;
	char err[256];
	int fd = open(path, O_RDONLY);

	cr_assert_geq(fd, 0);
	pread_all(fd, meta, VHDX_SECTOR, meta_sector);
	pread_all(fd, rt, VHDX_SECTOR, VHDX_REGION1_OFFSET);
	close(fd);
	put64(meta + SIZE_ITEM % VHDX_SECTOR, 96 * MiB);

	cr_assert_eq(vdisk_open(path, NULL, &d, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(vhdx_commit_sectors(d->priv, s, 3), -EINVAL,
		     "two versions of one sector");
	cr_assert_eq(vhdx_commit_sectors(d->priv, s, 2), 0);
	cr_assert_eq(vdisk_close(d), 0);
	cr_assert_eq(disk_size(true, NULL), 96 * MiB);
}
