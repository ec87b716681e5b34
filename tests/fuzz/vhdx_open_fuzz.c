// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the VHDX open path: parsing, log replay (in memory
 * and into the file), check, and a little I/O on whatever opens.
 *
 * Input: byte 0 selects the mode.
 *   mode & 3 == 0	the rest of the input is the whole file
 *   otherwise		a valid image (clean, or with a dirty log when
 *			mode & 2) patched by the rest of the input: records
 *			of a 32-bit offset, a length byte and that many bytes;
 *			mode & 4 recomputes header checksums and mode & 8
 *			region table checksums after patching, so the fuzzer
 *			gets past them; mode & 16 truncates the file to the
 *			offset in the first record.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhdx/vhdx.h"
#include "vhdx/format.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *clean_img, *dirty_img;
static size_t clean_len, dirty_len;
static struct io_engine *engine;

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	uint8_t *buf;

	if (fd < 0 || fstat(fd, &st) < 0)
		abort();
	*len = (size_t)st.st_size;
	buf = malloc(*len);
	if (!buf || read(fd, buf, *len) != (ssize_t)*len)
		abort();
	close(fd);
	return buf;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct vhdx_create_opts o = { .size = 64 * MiB, .type = VDISK_TYPE_DYNAMIC,
				      .block_size = MiB };
	char dir[] = "/tmp/fsvisor-fuzz-XXXXXX", path[64], err[256];
	struct vdisk *d;
	char data[5000];

	(void)argc;
	(void)argv;
	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/base.vhdx", dir);
	if (vhdx_create(path, &o, err, sizeof(err)) ||
	    vdisk_open(path, NULL, &d, err, sizeof(err)))
		abort();
	memset(data, 0x61, sizeof(data));
	vdisk_pwrite(d, data, sizeof(data), MiB - 100);
	vdisk_pwrite(d, data, sizeof(data), 40 * MiB);
	vdisk_flush(d);
	/* Copied while open, after a commit: the log is dirty. */
	dirty_img = slurp(path, &dirty_len);
	vdisk_close(d);
	clean_img = slurp(path, &clean_len);
	unlink(path);
	rmdir(dir);
	if (io_engine_create(64, &engine))
		abort();
	return 0;
}

static void fix_checksums(uint8_t *img, size_t len, int mode)
{
	if ((mode & 4) && len >= VHDX_HEADER2_OFFSET + VHDX_HEADER_SIZE) {
		for (uint64_t off = VHDX_HEADER1_OFFSET; off <= VHDX_HEADER2_OFFSET;
		     off += VHDX_HEADER1_OFFSET)
			put32(img + off + 4, vhdx_checksum(img + off,
							   VHDX_HEADER_SIZE, 4));
	}
	if ((mode & 8) && len >= VHDX_REGION2_OFFSET + VHDX_REGION_SIZE) {
		for (uint64_t off = VHDX_REGION1_OFFSET; off <= VHDX_REGION2_OFFSET;
		     off += VHDX_REGION_SIZE)
			put32(img + off + 4, vhdx_checksum(img + off,
							   VHDX_REGION_SIZE, 4));
	}
}

static void exercise(const char *path, bool rw)
{
	struct vdisk_open_opts o = { .read_only = !rw, .engine = engine };
	struct vdisk *d;
	char err[512];
	uint8_t buf[8192];

	if (vdisk_open(path, &o, &d, err, sizeof(err)))
		return;
	for (uint64_t off = 0; off < vdisk_info(d)->virtual_size;) {
		uint64_t len = vdisk_info(d)->virtual_size - off;
		bool alloc;

		if (vdisk_block_status(d, off, &len, &alloc) || !len)
			break;
		if (alloc)
			vdisk_pread(d, buf, len < sizeof(buf) ? len : sizeof(buf), off);
		off += len;
	}
	if (rw) {
		memset(buf, 0x7e, sizeof(buf));
		vdisk_pwrite(d, buf, sizeof(buf), 3 * MiB - 77);
		vdisk_flush(d);
	}
	vdisk_close(d);
}

static void ignore_problem(void *ctx, const char *problem)
{
	(void)ctx;
	(void)problem;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vhdx_check_result res;
	uint8_t *img;
	size_t len;
	char path[64];
	int mode, fd;

	if (size < 1)
		return 0;
	mode = data[0];
	data++;
	size--;
	if ((mode & 3) == 0) {
		len = size;
		img = malloc(len ? len : 1);
		memcpy(img, data, len);
	} else {
		const uint8_t *base = (mode & 2) ? dirty_img : clean_img;

		len = (mode & 2) ? dirty_len : clean_len;
		img = malloc(len);
		memcpy(img, base, len);
		if ((mode & 16) && size >= 4) {
			size_t cut = get32(data) % len;

			len = cut;
		}
		while (size >= 5 && len) {
			size_t off = get32(data) % len, n = data[4];

			data += 5;
			size -= 5;
			if (n > size)
				n = size;
			if (n > len - off)
				n = len - off;
			memcpy(img + off, data, n);
			data += n;
			size -= n;
		}
		fix_checksums(img, len, mode);
	}

	fd = memfd_create("fuzz.vhdx", MFD_CLOEXEC);
	if (fd < 0 || write(fd, img, len) != (ssize_t)len)
		abort();
	free(img);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	exercise(path, false);
	vhdx_check(path, false, ignore_problem, NULL, &res);
	exercise(path, true);
	close(fd);
	return 0;
}
