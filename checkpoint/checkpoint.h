/* SPDX-License-Identifier: MIT */
/*
 * checkpoint: the saved-state format, one format for Save, standard
 * checkpoints, restore and live migration.  A saved state is a directory:
 *
 *   sections     binary sections, each tagged with what it belongs to
 *                ("vcpu0", "vm", "dev:serial") and that part's own
 *                version: a header, then records (an id, a length, bytes)
 *   memory       guest RAM as a sparse file: zero pages are holes
 *   manifest.json  written last and atomically: the format version, the
 *                fsvisor version, when, the host's fingerprint, the VM's
 *                configuration, each section's offset, length and
 *                CRC-32C, and the memory's chunk table
 *
 * A state without a valid manifest does not exist.  The reader checks
 * all of it (manifest, every section's size and checksum, the memory
 * file's size) before anyone touches KVM, and names the problem when it
 * refuses.  Memory is checked chunk by chunk (64 KiB, a CRC-32C each) as
 * it is loaded, so a restore need not read it all first.
 *
 * This part knows nothing of KVM: vmm/ fills sections with KVM's state and
 * restores from them; the service reads manifests.
 */
#ifndef FSVISOR_CHECKPOINT_H
#define FSVISOR_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* The format this code writes; it reads this one and the one before. */
#define SS_FORMAT		1
#define SS_FORMAT_OLDEST	1

#define SS_CHUNK		65536	/* memory is checked per chunk */
#define SS_TAG_MAX		32
#define SS_SECTION_MAX		(64u << 20)	/* no section is larger */
#define SS_RECORD_MAX		(16u << 20)
#define SS_MEMORY_MAX		(1ULL << 40)

/* ---- the host's fingerprint ------------------------------------------------ */

struct ss_cpuid {
	uint32_t function, index, flags;
	uint32_t eax, ebx, ecx, edx;
};

#define SS_CPUID_MAX 128

struct ss_host {
	char cpu_vendor[16];		/* "GenuineIntel", "AuthenticAMD" */
	/* The CPUID the guest was given (on a reader: what this host offers). */
	struct ss_cpuid cpuid[SS_CPUID_MAX];
	unsigned int ncpuid;
	uint32_t tsc_khz;
	char kernel[128];		/* uname -r */
};

/*
 * Can a guest that was given @saved's CPUID and TSC rate run on @here
 * (whose cpuid[] is what KVM supports here)?  0, or -EINVAL and the
 * first problem in @err ("CPU feature avx512f (leaf 7 ebx bit 16) is
 * missing on this host").
 */
int ss_host_compatible(const struct ss_host *saved, const struct ss_host *here,
		       char *err, size_t errlen);

/* ---- writing ------------------------------------------------------------------ */

struct ss_writer;
struct ss_section;

/* Start a saved state in @dir, which must not exist (its parent must). */
int ss_create(const char *dir, struct ss_writer **out, char *err, size_t errlen);
/*
 * A section: records are collected in memory and written, with their
 * checksum, by ss_section_end().
 */
struct ss_section *ss_section_begin(struct ss_writer *w, const char *tag,
				    uint32_t version);
void ss_put(struct ss_section *s, uint32_t id, const void *data, size_t len);
void ss_put_u8(struct ss_section *s, uint32_t id, uint8_t v);
void ss_put_u16(struct ss_section *s, uint32_t id, uint16_t v);
void ss_put_u32(struct ss_section *s, uint32_t id, uint32_t v);
void ss_put_u64(struct ss_section *s, uint32_t id, uint64_t v);
int ss_section_end(struct ss_section *s);
/*
 * Guest RAM from @base (@size bytes): zero pages are left as holes, each
 * chunk's checksum goes into the manifest.  @fd, when not -1, is the file
 * behind @base (a memfd): its holes are skipped without being read.
 */
int ss_write_memory(struct ss_writer *w, const void *base, uint64_t size, int fd);
/*
 * Make it real: flush every file, then write the manifest (with @config,
 * the VM's configuration, and @host) atomically.  After this the state
 * exists; before it, a crash leaves a directory that does not count.
 */
int ss_commit(struct ss_writer *w, const json_t *config, const struct ss_host *host,
	      char *err, size_t errlen);
/* Forget it (after ss_commit, only frees; before, removes the directory too). */
void ss_writer_free(struct ss_writer *w);
/* What went wrong while writing (after a failed call). */
const char *ss_writer_error(const struct ss_writer *w);

/* ---- reading ------------------------------------------------------------------ */

struct ss_reader;
struct ss_rsection;

/*
 * Open and check a saved state: the manifest and its checksum, the
 * format version, every section (header, tag, length, checksum), the
 * memory file's size and chunk table.  -ENOENT when there is none
 * (no manifest), -EINVAL with the problem in @err when it is damaged.
 */
int ss_open(const char *dir, struct ss_reader **out, char *err, size_t errlen);
void ss_reader_free(struct ss_reader *r);

uint32_t ss_format(const struct ss_reader *r);
const json_t *ss_config(const struct ss_reader *r);
const struct ss_host *ss_host(const struct ss_reader *r);
const char *ss_created(const struct ss_reader *r);
const char *ss_fsvisor_version(const struct ss_reader *r);

/* A section by tag, or NULL; its version in *version. */
struct ss_rsection *ss_section(struct ss_reader *r, const char *tag, uint32_t *version);
/* Tags of every section, in order (for checking that each is known). */
size_t ss_section_count(const struct ss_reader *r);
const char *ss_section_tag(const struct ss_reader *r, size_t i);
/*
 * Record @id of a section: exactly @len bytes into @out (-EINVAL, and a
 * reason from ss_reader_error(), when it is missing or of another size).
 */
int ss_get(struct ss_rsection *s, uint32_t id, void *out, size_t len);
int ss_get_u8(struct ss_rsection *s, uint32_t id, uint8_t *v);
int ss_get_u16(struct ss_rsection *s, uint32_t id, uint16_t *v);
int ss_get_u32(struct ss_rsection *s, uint32_t id, uint32_t *v);
int ss_get_u64(struct ss_rsection *s, uint32_t id, uint64_t *v);
/* A record of any length: a pointer into the section (valid while @r lives). */
int ss_get_var(struct ss_rsection *s, uint32_t id, const void **data, size_t *len);
bool ss_has(struct ss_rsection *s, uint32_t id);
const char *ss_reader_error(const struct ss_reader *r);

/* Guest RAM. */
uint64_t ss_memory_size(const struct ss_reader *r);
/* The memory file, open read-only (owned by the reader). */
int ss_memory_fd(const struct ss_reader *r);
/* Is chunk @i all zeros (a hole when it was saved)? */
bool ss_memory_chunk_zero(const struct ss_reader *r, uint64_t i);
/* Check @data (chunk @i as read from the file) against its checksum. */
bool ss_memory_chunk_ok(const struct ss_reader *r, uint64_t i, const void *data);

/* The manifest as JSON, for `fsvisor vm state-info`. */
json_t *ss_describe(const struct ss_reader *r);

#endif /* FSVISOR_CHECKPOINT_H */
