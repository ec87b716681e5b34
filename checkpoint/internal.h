/* SPDX-License-Identifier: MIT */
/* Internals of checkpoint/, shared by the writer and the reader. */
#ifndef FSVISOR_CHECKPOINT_INTERNAL_H
#define FSVISOR_CHECKPOINT_INTERNAL_H

#include "checkpoint/checkpoint.h"
#include "checkpoint/format.h"
#include "util/util.h"

/* manifest.c */
json_t *host_to_json(const struct ss_host *h);
int host_from_json(json_t *j, struct ss_host *h, char *err, size_t errlen);
/* The checksum of a manifest's body, in its canonical form. */
int body_crc(const json_t *body, uint32_t *crc);

#endif /* FSVISOR_CHECKPOINT_INTERNAL_H */
