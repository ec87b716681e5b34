// SPDX-License-Identifier: MIT
/*
 * The manifest's parts that both sides share: the host's fingerprint as
 * JSON and back, and the manifest's own checksum (a CRC-32C of its body
 * in a canonical form: compact, keys sorted).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/internal.h"

json_t *host_to_json(const struct ss_host *h)
{
	json_t *cpuid = json_array();

	for (unsigned int i = 0; i < h->ncpuid; i++) {
		const struct ss_cpuid *c = &h->cpuid[i];

		json_array_append_new(cpuid, json_pack("[I, I, I, I, I, I, I]",
			(json_int_t)c->function, (json_int_t)c->index, (json_int_t)c->flags,
			(json_int_t)c->eax, (json_int_t)c->ebx, (json_int_t)c->ecx,
			(json_int_t)c->edx));
	}
	return json_pack("{s:s, s:I, s:s, s:o}", "cpu_vendor", h->cpu_vendor,
			 "tsc_khz", (json_int_t)h->tsc_khz, "kernel", h->kernel, "cpuid", cpuid);
}

static int u32_of(json_t *v, uint32_t *out)
{
	json_int_t i;

	if (!json_is_integer(v))
		return -1;
	i = json_integer_value(v);
	if (i < 0 || i > 0xFFFFFFFFLL)
		return -1;
	*out = (uint32_t)i;
	return 0;
}

int host_from_json(json_t *j, struct ss_host *h, char *err, size_t errlen)
{
	const char *vendor = json_string_value(json_object_get(j, "cpu_vendor"));
	const char *kernel = json_string_value(json_object_get(j, "kernel"));
	json_t *cpuid = json_object_get(j, "cpuid"), *e;
	size_t i;

	memset(h, 0, sizeof(*h));
	if (!json_is_object(j) || !vendor || strlen(vendor) >= sizeof(h->cpu_vendor) ||
	    !kernel || u32_of(json_object_get(j, "tsc_khz"), &h->tsc_khz) ||
	    !json_is_array(cpuid) || json_array_size(cpuid) > SS_CPUID_MAX) {
		snprintf(err, errlen, "the manifest's host fingerprint is malformed");
		return -EINVAL;
	}
	snprintf(h->cpu_vendor, sizeof(h->cpu_vendor), "%s", vendor);
	snprintf(h->kernel, sizeof(h->kernel), "%s", kernel);
	json_array_foreach(cpuid, i, e) {
		struct ss_cpuid *c = &h->cpuid[i];

		if (!json_is_array(e) || json_array_size(e) != 7 ||
		    u32_of(json_array_get(e, 0), &c->function) ||
		    u32_of(json_array_get(e, 1), &c->index) ||
		    u32_of(json_array_get(e, 2), &c->flags) ||
		    u32_of(json_array_get(e, 3), &c->eax) ||
		    u32_of(json_array_get(e, 4), &c->ebx) ||
		    u32_of(json_array_get(e, 5), &c->ecx) ||
		    u32_of(json_array_get(e, 6), &c->edx)) {
			snprintf(err, errlen, "the manifest's CPUID entry %zu is malformed", i);
			return -EINVAL;
		}
	}
	h->ncpuid = (unsigned int)json_array_size(cpuid);
	return 0;
}

int body_crc(const json_t *body, uint32_t *crc)
{
	char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);

	if (!text)
		return -ENOMEM;
	*crc = crc32c(0, text, strlen(text));
	free(text);
	return 0;
}
