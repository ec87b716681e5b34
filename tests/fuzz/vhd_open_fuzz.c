// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for the VHD parser: footer (and its copy), dynamic
 * header, BAT, parent locators and block bitmaps; check, a little I/O on
 * whatever opens, and a write and flush through a read-write open.
 *
 * Input: byte 0 selects the mode.
 *   mode & 3 == 0	the rest of the input is the whole file
 *   otherwise		a valid image (dynamic when mode & 3 == 1, a
 *			differencing child when 2, fixed when 3) patched by
 *			the rest of the input: records of a 32-bit offset, a
 *			length byte and that many bytes; mode & 4 recomputes
 *			the footer checksums (both copies) and mode & 8 the
 *			header's after patching, so the fuzzer gets past
 *			them; mode & 16 truncates the file to the offset in
 *			the first record.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhdx/vhdx.h"
#include "vhdx/vhd_format.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *img[4];
static size_t img_len[4];
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

static void make(const char *path, enum vdisk_type t, const char *parent)
{
	struct vdisk_create_opts o = { .format = VDISK_FORMAT_VHD, .type = t,
				       .size = 8 << 20, .block_size = 1 << 20,
				       .parent = parent };
	struct vdisk *d;
	char err[512], data[5000];

	if (vdisk_create(path, &o, err, sizeof(err)) ||
	    vdisk_open(path, NULL, &d, err, sizeof(err)))
		abort();
	memset(data, 0x61, sizeof(data));
	vdisk_pwrite(d, data, sizeof(data), (1 << 20) - 512);
	vdisk_pwrite(d, data, 1024, 5 << 20);
	vdisk_close(d);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char dir[] = "/tmp/fsvisor-fuzz-XXXXXX", p[3][64];

	(void)argc;
	(void)argv;
	if (!mkdtemp(dir))
		abort();
	snprintf(p[0], sizeof(p[0]), "%s/d.vhd", dir);
	snprintf(p[1], sizeof(p[1]), "%s/c.vhd", dir);
	snprintf(p[2], sizeof(p[2]), "%s/f.vhd", dir);
	make(p[0], VDISK_TYPE_DYNAMIC, NULL);
	make(p[1], VDISK_TYPE_DIFFERENCING, p[0]);
	make(p[2], VDISK_TYPE_FIXED, NULL);
	for (int i = 0; i < 3; i++) {
		img[i + 1] = slurp(p[i], &img_len[i + 1]);
		unlink(p[i]);
	}
	rmdir(dir);
	if (io_engine_create(64, &engine))
		abort();
	return 0;
}

static void fix_checksums(uint8_t *b, size_t len, int mode)
{
	if ((mode & 4) && len >= VHD_FOOTER_SIZE) {
		uint8_t *f = b + len - VHD_FOOTER_SIZE;

		put_be32(f + FT_CHECKSUM, vhd_checksum(f, VHD_FOOTER_SIZE, FT_CHECKSUM));
		put_be32(b + FT_CHECKSUM, vhd_checksum(b, VHD_FOOTER_SIZE, FT_CHECKSUM));
	}
	if ((mode & 8) && len >= VHD_FOOTER_SIZE + VHD_HEADER_SIZE) {
		uint8_t *h = b + VHD_FOOTER_SIZE;

		put_be32(h + DH_CHECKSUM, vhd_checksum(h, VHD_HEADER_SIZE, DH_CHECKSUM));
	}
}

static void exercise(const char *path, bool rw)
{
	struct vdisk_open_opts o = { .read_only = !rw, .engine = engine,
				     .format = VDISK_FORMAT_VHD };
	struct vdisk *d;
	char err[1024];
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
		vdisk_pwrite(d, buf, sizeof(buf), (3 << 20) - 512);
		vdisk_write_zeroes(d, 0, 1 << 20);
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
	uint8_t *b;
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
		b = malloc(len ? len : 1);
		memcpy(b, data, len);
	} else {
		len = img_len[mode & 3];
		b = malloc(len);
		memcpy(b, img[mode & 3], len);
		if ((mode & 16) && size >= 4)
			len = ((size_t)data[0] | (size_t)data[1] << 8 |
			       (size_t)data[2] << 16 | (size_t)data[3] << 24) % len;
		while (size >= 5 && len) {
			size_t off = ((size_t)data[0] | (size_t)data[1] << 8 |
				      (size_t)data[2] << 16 | (size_t)data[3] << 24) % len;
			size_t n = data[4];

			data += 5;
			size -= 5;
			if (n > size)
				n = size;
			if (n > len - off)
				n = len - off;
			memcpy(b + off, data, n);
			data += n;
			size -= n;
		}
		fix_checksums(b, len, mode);
	}
	fd = memfd_create("fuzz.vhd", MFD_CLOEXEC);
	if (fd < 0 || write(fd, b, len) != (ssize_t)len)
		abort();
	free(b);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	exercise(path, false);
	vdisk_check(path, false, ignore_problem, NULL, &res);
	exercise(path, true);
	close(fd);
	return 0;
}
