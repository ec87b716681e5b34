// SPDX-License-Identifier: MIT
/*
 * Header updates (MS-VHDX 2.2.2.1): the non-current header is overwritten
 * with the new one and flushed, then the same again, so both copies end
 * up current and a torn write can only ever damage the copy being written.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhdx/state.h"

static const uint64_t header_offset[2] = { VHDX_HEADER1_OFFSET,
					   VHDX_HEADER2_OFFSET };

int vhdx_header_update(struct vhdx *v, bool data_change,
		       const struct guid *log_guid)
{
	uint8_t *h = vhdx_alloc(VHDX_HEADER_SIZE);
	int ret = 0;

	if (!h)
		return -ENOMEM;
	memcpy(h, v->hdr, VHDX_HEADER_SIZE);
	if (!v->file_guid_done) {
		struct guid g;

		guid_generate(&g);
		memcpy(h + HDR_FILE_WRITE_GUID, g.b, 16);
	}
	if (data_change && !v->data_guid_done) {
		struct guid g;

		guid_generate(&g);
		memcpy(h + HDR_DATA_WRITE_GUID, g.b, 16);
	}
	memcpy(h + HDR_LOG_GUID, log_guid->b, 16);

	for (int i = 0; i < 2; i++) {
		int slot = !v->hdr_slot;
		uint64_t seq = v->hdr_seq + 1;

		put64(h + HDR_SEQUENCE, seq);
		put32(h + HDR_CHECKSUM, 0);
		put32(h + HDR_CHECKSUM, vhdx_checksum(h, VHDX_HEADER_SIZE,
						      HDR_CHECKSUM));
		ret = file_pwrite(v->fd, h, VHDX_HEADER_SIZE, header_offset[slot]);
		if (!ret && fdatasync(v->fd) < 0)
			ret = -errno;
		if (ret)
			break;
		v->hdr_slot = slot;
		v->hdr_seq = seq;
		memcpy(v->hdr, h, VHDX_HEADER_SIZE);
		vhdx_step("header: one copy written and flushed");
	}
	if (!ret) {
		v->file_guid_done = true;
		if (data_change)
			v->data_guid_done = true;
		v->log_guid = *log_guid;
		v->rewrite_headers = false;
		/* What a child made from this disk now would link to. */
		get_guid(&v->d->identity, v->hdr + HDR_DATA_WRITE_GUID);
		guid_format(&v->d->identity, v->d->info.identity);
	}
	free(h);
	return ret;
}
