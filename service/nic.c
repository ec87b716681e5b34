// SPDX-License-Identifier: MIT
/*
 * NICs: a VM's network adapters (vms/VM/nics/NAME/), kept in the VM's
 * definition, and the wiring of a running VM's NICs to switch ports.
 *
 * A NIC of a running VM that names a switch has a port there: the
 * service makes a SOCK_SEQPACKET pair, hands one end to the switch
 * worker ("port-add") and the other to the VM worker ("nic-connect"),
 * and keeps neither.  Either worker can die or the service restart
 * without the other noticing more than a hang-up; the service connects
 * again what is missing (after a start, an adoption, a switch restart).
 * Policies (VLAN, guards, mirroring, bandwidth) change live ("port-set").
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "service/internal.h"

#define VLAN_MAX		4094
#define BANDWIDTH_LIMIT		(1000ULL * 1000 * 1000 * 1000 * 1000)	/* 1 Pbit/s */
#define WORKER_TIMEOUT_MS	5000

static const char *const mirror_names[] = {
	[NIC_MIRROR_NONE] = "none",
	[NIC_MIRROR_SOURCE] = "source",
	[NIC_MIRROR_DESTINATION] = "destination",
};

void nic_mac_format(const uint8_t mac[6], char *buf, size_t len)
{
	snprintf(buf, len, "%02x:%02x:%02x:%02x:%02x:%02x",
		 mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

static int mac_parse(const char *str, uint8_t mac[6])
{
	unsigned int b[6];
	char tail;

	if (strlen(str) != 17)
		return -EINVAL;
	/* sscanf's %x would take signs and blanks: only hex digits and colons. */
	for (int i = 0; i < 17; i++)
		if (i % 3 == 2 ? str[i] != ':' : !isxdigit((unsigned char)str[i]))
			return -EINVAL;
	if (sscanf(str, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3],
		   &b[4], &b[5], &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		if (str[i * 3 + 2] != (i < 5 ? ':' : '\0'))
			return -EINVAL;
		mac[i] = (uint8_t)b[i];
	}
	return 0;
}

/* Which NIC (other than @self) has @mac. */
static struct nic_obj *mac_owner(struct service *s, const uint8_t mac[6],
				 const struct nic_obj *self)
{
	for (size_t i = 0; i < s->nvms; i++)
		for (size_t k = 0; k < s->vms[i]->nnics; k++) {
			struct nic_obj *n = s->vms[i]->nics[k];

			if (n != self && memcmp(n->mac, mac, 6) == 0)
				return n;
		}
	return NULL;
}

/*
 * A new MAC: locally administered unicast (02:...), so it can never be a
 * real vendor's, and unique among this service's NICs.
 */
static void mac_generate(struct service *s, uint8_t mac[6])
{
	do {
		if (getrandom(mac, 6, 0) != 6) {
			struct timespec t;

			clock_gettime(CLOCK_REALTIME, &t);
			for (int i = 0; i < 6; i++)
				mac[i] = (uint8_t)(t.tv_nsec >> (i * 5)) ^ (uint8_t)rand();
		}
		mac[0] = 0x02;
	} while (mac_owner(s, mac, NULL));
}

/* While a VM loads it is not in the service's list yet: its own NICs. */
static bool mac_in_vm(const struct vm_obj *vm, const uint8_t mac[6])
{
	for (size_t i = 0; i < vm->nnics; i++)
		if (memcmp(vm->nics[i]->mac, mac, 6) == 0)
			return true;
	return false;
}

struct nic_obj *nic_find(struct vm_obj *vm, const char *name)
{
	for (size_t i = 0; i < vm->nnics; i++)
		if (strcmp(vm->nics[i]->name, name) == 0)
			return vm->nics[i];
	return NULL;
}

static size_t nic_index(const struct nic_obj *nic)
{
	for (size_t i = 0; i < nic->vm->nnics; i++)
		if (nic->vm->nics[i] == nic)
			return i;
	return 0;
}

void nic_free(struct nic_obj *nic)
{
	if (!nic)
		return;
	free(nic->sw);
	free(nic->trunk);
	free(nic);
}

static struct nic_obj *nic_alloc(struct vm_obj *vm, const char *name)
{
	struct nic_obj *nic = calloc(1, sizeof(*nic));

	if (!nic)
		abort();
	snprintf(nic->name, sizeof(nic->name), "%s", name);
	nic->vm = vm;
	nic->sw = svc_strdup("");
	nic->trunk = svc_strdup("");
	return nic;
}

/* Keep the list sorted: it is the order the worker numbers the NICs in. */
static void nic_insert(struct vm_obj *vm, struct nic_obj *nic)
{
	size_t i = vm->nnics;

	while (i > 0 && strcmp(vm->nics[i - 1]->name, nic->name) > 0) {
		vm->nics[i] = vm->nics[i - 1];
		i--;
	}
	vm->nics[i] = nic;
	vm->nnics++;
}

static void nic_remove(struct vm_obj *vm, struct nic_obj *nic)
{
	size_t i = nic_index(nic);

	memmove(&vm->nics[i], &vm->nics[i + 1], (vm->nnics - i - 1) * sizeof(vm->nics[0]));
	vm->nnics--;
}

static void nic_changed(struct service *s, struct nic_obj *nic, const char *file,
			const char *value)
{
	svc_touch(&nic->vm->mtime);
	/* The whole directory: its files' times changed with it (tree.h). */
	svc_notify(s, SVC_CHANGED, "vms/%s", nic->vm->name);
	svc_event(s, "vm", nic->vm->name, "nic %s %s %s", nic->name, file, value);
}

int nic_define(struct service *s, struct vm_obj *vm, const char *name)
{
	struct nic_obj *nic;
	char why[256];
	int ret;

	if (nic_find(vm, name))
		return -EEXIST;
	if (vm_change_refused(vm, "NICs are added while it is off", why, sizeof(why)))
		return vm_fail(s, vm, -EBUSY, "nics/%s: %s", name, why);
	if (vm->nnics == NICS_MAX)
		return vm_fail(s, vm, -ENOSPC, "nics/%s: a VM has at most %d NICs", name, NICS_MAX);
	nic = nic_alloc(vm, name);
	mac_generate(s, nic->mac);
	nic_insert(vm, nic);
	ret = vm_save(s, vm);
	if (ret) {
		nic_remove(vm, nic);
		nic_free(nic);
		return vm_fail(s, vm, -EIO, "nics/%s: cannot save the definition: %s", name,
			       strerror(-ret));
	}
	svc_touch(&vm->mtime);
	svc_notify(s, SVC_CHANGED, "vms/%s", vm->name);
	svc_event(s, "vm", vm->name, "nic %s added", name);
	return 0;
}

int nic_delete(struct service *s, struct nic_obj *nic)
{
	struct vm_obj *vm = nic->vm;
	char why[256];
	int ret;

	if (vm_change_refused(vm, "NICs are removed while it is off", why, sizeof(why)))
		return nic_fail(s, nic, -EBUSY, ": %s", why);
	if (nic->users || nic->changing)
		return nic_fail(s, nic, -EBUSY, ": the NIC is in use (a change or a read in progress)");
	nic_remove(vm, nic);
	ret = vm_save(s, vm);
	if (ret) {
		nic_insert(vm, nic);
		return nic_fail(s, nic, -EIO, ": cannot save the definition: %s", strerror(-ret));
	}
	svc_event(s, "vm", vm->name, "nic %s removed", nic->name);
	svc_touch(&vm->mtime);
	svc_notify(s, SVC_CHANGED, "vms/%s", vm->name);
	nic_free(nic);
	return 0;
}

/* ---- VLAN settings --------------------------------------------------------- */

static int parse_vlan_id(const char *str, unsigned int min, unsigned int *out)
{
	char *end;
	unsigned long v;

	if (str[0] < '0' || str[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(str, &end, 10);
	if (*end || errno || v < min || v > VLAN_MAX)
		return -EINVAL;
	*out = (unsigned int)v;
	return 0;
}

/* "1-100,200": canonical (sorted, merged ranges) in @canon. */
static int parse_trunk_list(const char *list, char *canon, size_t clen, const char **why)
{
	char copy[VALUE_MAX + 1], *save = NULL, *tok;
	uint64_t bits[4096 / 64] = { 0 };
	size_t used = 0;

	snprintf(copy, sizeof(copy), "%s", list);
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *dash = strchr(tok, '-');
		unsigned int lo, hi;

		if (dash)
			*dash = '\0';
		if (parse_vlan_id(tok, 1, &lo) || (dash && parse_vlan_id(dash + 1, 1, &hi))) {
			*why = "allowed VLANs are numbers 1 to 4094 or ranges like 1-100, separated by commas";
			return -EINVAL;
		}
		if (!dash)
			hi = lo;
		if (hi < lo) {
			*why = "a VLAN range runs from low to high";
			return -EINVAL;
		}
		for (unsigned int v = lo; v <= hi; v++)
			bits[v / 64] |= 1ULL << (v % 64);
	}
	canon[0] = '\0';
	for (unsigned int v = 1; v <= VLAN_MAX; v++) {
		unsigned int end = v;

		if (!(bits[v / 64] & (1ULL << (v % 64))))
			continue;
		while (end < VLAN_MAX && (bits[(end + 1) / 64] & (1ULL << ((end + 1) % 64))))
			end++;
		used += (size_t)snprintf(canon + used, used < clen ? clen - used : 0,
					 end == v ? "%s%u" : "%s%u-%u", used ? "," : "", v, end);
		v = end;
	}
	if (!canon[0]) {
		*why = "a trunk needs its allowed VLANs: trunk 1-100,200 [native N]";
		return -EINVAL;
	}
	if (used >= clen) {
		*why = "the allowed VLAN list is too long";
		return -EINVAL;
	}
	return 0;
}

/*
 * "untagged", "access N" (or just N), "trunk LIST [native N]", as
 * Set-VMNetworkAdapterVlan's -Untagged, -Access -VlanId and -Trunk
 * -AllowedVlanIdList -NativeVlanId.
 */
static int parse_vlan(const char *value, enum nic_vlan_mode *mode, uint16_t *id,
		      char *trunk, size_t tlen, const char **why)
{
	char copy[VALUE_MAX + 1], *save = NULL, *w[5];
	unsigned int n = 0, v;

	snprintf(copy, sizeof(copy), "%s", value);
	for (char *t = strtok_r(copy, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
		if (n == ARRAY_SIZE(w)) {
			*why = "too many words";
			return -EINVAL;
		}
		w[n++] = t;
	}
	trunk[0] = '\0';
	if (n == 1 && strcmp(w[0], "untagged") == 0) {
		*mode = NIC_VLAN_UNTAGGED;
		*id = 0;
		return 0;
	}
	if ((n == 1 && w[0][0] >= '0' && w[0][0] <= '9') ||
	    (n == 2 && strcmp(w[0], "access") == 0)) {
		if (parse_vlan_id(w[n - 1], 1, &v)) {
			*why = "an access VLAN is a number from 1 to 4094";
			return -EINVAL;
		}
		*mode = NIC_VLAN_ACCESS;
		*id = (uint16_t)v;
		return 0;
	}
	if ((n == 2 || n == 4) && strcmp(w[0], "trunk") == 0) {
		/* Room for "trunk " and " native 4094" around it in a value. */
		if (parse_trunk_list(w[1], trunk, tlen > 32 ? tlen - 32 : tlen, why))
			return -EINVAL;
		v = 0;
		if (n == 4 && (strcmp(w[2], "native") != 0 || parse_vlan_id(w[3], 0, &v))) {
			*why = "the native VLAN is given as 'native N', N from 0 (untagged) to 4094";
			return -EINVAL;
		}
		*mode = NIC_VLAN_TRUNK;
		*id = (uint16_t)v;
		return 0;
	}
	*why = "one of: untagged | access N | trunk LIST [native N] (LIST like 1-100,200)";
	return -EINVAL;
}

void nic_vlan_format(const struct nic_obj *nic, char *buf, size_t len)
{
	switch (nic->vlan_mode) {
	case NIC_VLAN_UNTAGGED:
		snprintf(buf, len, "untagged");
		break;
	case NIC_VLAN_ACCESS:
		snprintf(buf, len, "access %u", nic->vlan_id);
		break;
	case NIC_VLAN_TRUNK:
		snprintf(buf, len, "trunk %s native %u", nic->trunk, nic->vlan_id);
		break;
	}
}

/* ---- persistence ------------------------------------------------------- */

json_t *nic_to_json(const struct nic_obj *nic)
{
	char mac[18], vlan[VALUE_MAX + 32];

	nic_mac_format(nic->mac, mac, sizeof(mac));
	nic_vlan_format(nic, vlan, sizeof(vlan));
	return json_pack("{s:s, s:s, s:s, s:b, s:b, s:b, s:s, s:I}",
			 "mac", mac, "switch", nic->sw, "vlan", vlan,
			 "mac_spoofing", nic->mac_spoofing, "dhcp_guard", nic->dhcp_guard,
			 "router_guard", nic->router_guard,
			 "mirror", mirror_names[nic->mirror],
			 "bandwidth_max", (json_int_t)nic->bandwidth_max);
}

int nic_from_json(struct service *s, struct vm_obj *vm, const char *name, json_t *obj)
{
	struct nic_obj *nic;
	const char *str, *why = "";
	char trunk[VALUE_MAX + 1];
	json_t *v;

	if (!name_valid(name) || nic_find(vm, name) || vm->nnics == NICS_MAX) {
		log_warn("vm %s: ignoring NIC '%s'", vm->name, name);
		return 0;
	}
	nic = nic_alloc(vm, name);
	str = json_string_value(json_object_get(obj, "mac"));
	if (!str || mac_parse(str, nic->mac) || (nic->mac[0] & 1) ||
	    !(nic->mac[0] | nic->mac[1] | nic->mac[2] | nic->mac[3] | nic->mac[4] | nic->mac[5]) ||
	    mac_owner(s, nic->mac, NULL) || mac_in_vm(vm, nic->mac)) {
		log_warn("vm %s: NIC %s: bad or duplicate MAC; a new one is generated",
			 vm->name, name);
		mac_generate(s, nic->mac);
	}
	str = json_string_value(json_object_get(obj, "switch"));
	if (str && (!str[0] || name_valid(str))) {
		free(nic->sw);
		nic->sw = svc_strdup(str);
	}
	str = json_string_value(json_object_get(obj, "vlan"));
	if (str && parse_vlan(str, &nic->vlan_mode, &nic->vlan_id, trunk, sizeof(trunk), &why) == 0) {
		free(nic->trunk);
		nic->trunk = svc_strdup(trunk);
	} else if (str) {
		log_warn("vm %s: NIC %s: vlan '%.40s': %s; untagged", vm->name, name, str, why);
	}
	nic->mac_spoofing = json_is_true(json_object_get(obj, "mac_spoofing"));
	nic->dhcp_guard = json_is_true(json_object_get(obj, "dhcp_guard"));
	nic->router_guard = json_is_true(json_object_get(obj, "router_guard"));
	str = json_string_value(json_object_get(obj, "mirror"));
	for (size_t i = 0; str && i < ARRAY_SIZE(mirror_names); i++)
		if (strcmp(str, mirror_names[i]) == 0)
			nic->mirror = (enum nic_mirror)i;
	v = json_object_get(obj, "bandwidth_max");
	if (json_integer_value(v) >= 8000 && (uint64_t)json_integer_value(v) <= BANDWIDTH_LIMIT)
		nic->bandwidth_max = (uint64_t)json_integer_value(v);
	nic_insert(vm, nic);
	return 0;
}

json_t *nic_policy_json(const struct nic_obj *nic)
{
	char mac[18];
	json_t *vlan;

	nic_mac_format(nic->mac, mac, sizeof(mac));
	switch (nic->vlan_mode) {
	case NIC_VLAN_ACCESS:
		vlan = json_pack("{s:s, s:i}", "mode", "access", "id", nic->vlan_id);
		break;
	case NIC_VLAN_TRUNK: {
		json_t *allowed = json_array();
		char copy[VALUE_MAX + 1], *save = NULL;

		snprintf(copy, sizeof(copy), "%s", nic->trunk);
		for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			unsigned int lo, hi;

			if (sscanf(t, "%u-%u", &lo, &hi) != 2)
				hi = lo = (unsigned int)atoi(t);
			json_array_append_new(allowed, json_pack("[i, i]", lo, hi));
		}
		vlan = json_pack("{s:s, s:o, s:i}", "mode", "trunk", "allowed", allowed,
				 "native", nic->vlan_id);
		break;
	}
	default:
		vlan = json_pack("{s:s}", "mode", "untagged");
		break;
	}
	return json_pack("{s:s, s:o, s:b, s:b, s:b, s:s, s:I}",
			 "mac", mac, "vlan", vlan,
			 "mac_spoofing", nic->mac_spoofing, "dhcp_guard", nic->dhcp_guard,
			 "router_guard", nic->router_guard,
			 "mirror", mirror_names[nic->mirror],
			 "bandwidth_max", (json_int_t)nic->bandwidth_max);
}

size_t nics_on_switch(struct service *s, const char *name, char *list, size_t len)
{
	size_t count = 0, used = 0;

	if (len)
		list[0] = '\0';
	for (size_t i = 0; i < s->nvms; i++)
		for (size_t k = 0; k < s->vms[i]->nnics; k++) {
			struct nic_obj *n = s->vms[i]->nics[k];

			if (strcmp(n->sw, name) != 0)
				continue;
			if (used < len)
				used += (size_t)snprintf(list + used, len - used, "%svms/%s/nics/%s",
							 count ? ", " : "", n->vm->name, n->name);
			count++;
		}
	return count;
}

/* ---- ports --------------------------------------------------------------- */

/* The port's name for the switch worker: "VM/NIC" (ports/VM:NIC in the tree). */
static void port_name(const struct nic_obj *nic, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", nic->vm->name, nic->name);
}

static bool vm_has_worker(const struct vm_obj *vm)
{
	return vm->state == VMS_RUNNING || vm->state == VMS_PAUSED;
}

/* A request to the VM's worker with the lock dropped. */
static int vm_request(struct service *s, struct vm_obj *vm, json_t *req,
		      const int *fds, size_t nfds, json_t **reply)
{
	int ret;

	vm->refs++;
	svc_unlock(s);
	ret = worker_request(vm->dirfd, req, fds, nfds, reply, WORKER_TIMEOUT_MS);
	svc_lock(s);
	vm_put(vm);
	return ret;
}

static const char *reply_error(json_t *reply, int ret)
{
	const char *e = json_string_value(json_object_get(reply, "error"));

	return e ? e : strerror(-ret);
}

int nic_connect(struct service *s, struct nic_obj *nic)
{
	struct vm_obj *vm = nic->vm;
	struct switch_obj *sw = switch_find(s, nic->sw);
	char port[2 * NAME_MAX_LEN + 2];
	json_t *req, *reply = NULL;
	int sv[2], ret;

	if (!nic->sw[0] || !vm_has_worker(vm) || nic->port_on[0])
		return 0;
	if (!sw)
		return nic_fail(s, nic, -ENOENT, "switch: there is no switch '%s'", nic->sw);
	port_name(nic, port, sizeof(port));
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return nic_fail(s, nic, -errno, "switch: cannot make a socket pair: %s",
				strerror(errno));
	req = json_pack("{s:s, s:s, s:o}", "cmd", "port-add", "name", port,
			"policy", nic_policy_json(nic));
	sw->refs++;
	ret = switch_call(s, sw, req, &sv[0], 1, &reply);
	json_decref(req);
	close(sv[0]);
	if (ret) {
		ret = nic_fail(s, nic, -EIO, "switch: switch %s did not take the port: %s", sw->name,
			       ret == -ENOTCONN ? "its worker is not running (see its error file)" :
			       reply_error(reply, ret));
		json_decref(reply);
		close(sv[1]);
		switch_put(sw);
		return ret;
	}
	json_decref(reply);
	reply = NULL;
	req = json_pack("{s:s, s:i}", "cmd", "nic-connect", "nic", (int)nic_index(nic));
	ret = vm_has_worker(vm) ? vm_request(s, vm, req, &sv[1], 1, &reply) : -ENOTCONN;
	json_decref(req);
	close(sv[1]);
	if (ret) {
		/* Take the half-made port away again. */
		req = json_pack("{s:s, s:s}", "cmd", "port-remove", "name", port);
		switch_call(s, sw, req, NULL, 0, NULL);
		json_decref(req);
		ret = nic_fail(s, nic, -EIO, "switch: the VM's worker did not take the NIC: %s",
			       reply_error(reply, ret));
		json_decref(reply);
		switch_put(sw);
		return ret;
	}
	json_decref(reply);
	snprintf(nic->port_on, sizeof(nic->port_on), "%s", sw->name);
	log_info("vm %s: NIC %s connected to switch %s", vm->name, nic->name, sw->name);
	svc_notify(s, SVC_ADDED, "switches/%s/ports/%s:%s", sw->name, vm->name, nic->name);
	svc_notify(s, SVC_CHANGED, "switches/%s/ports", sw->name);
	switch_put(sw);
	return 0;
}

void nic_disconnect(struct service *s, struct nic_obj *nic)
{
	struct vm_obj *vm = nic->vm;
	struct switch_obj *sw = switch_find(s, nic->port_on);
	char port[2 * NAME_MAX_LEN + 2];
	json_t *req;

	if (!nic->port_on[0])
		return;
	nic->port_on[0] = '\0';
	port_name(nic, port, sizeof(port));
	/* Held across the lock drops below: an rmdir may take it off the list. */
	if (sw)
		sw->refs++;
	if (vm_has_worker(vm)) {
		req = json_pack("{s:s, s:i}", "cmd", "nic-disconnect", "nic", (int)nic_index(nic));
		vm_request(s, vm, req, NULL, 0, NULL);
		json_decref(req);
	}
	if (sw) {
		req = json_pack("{s:s, s:s}", "cmd", "port-remove", "name", port);
		switch_call(s, sw, req, NULL, 0, NULL);
		json_decref(req);
		svc_notify(s, SVC_REMOVED, "switches/%s/ports/%s:%s", sw->name, vm->name,
			   nic->name);
		svc_notify(s, SVC_CHANGED, "switches/%s/ports", sw->name);
		switch_put(sw);
	}
}

/* Does the switch's worker have this NIC's port already (after a restart)? */
static bool port_exists(struct service *s, struct nic_obj *nic, struct switch_obj *sw)
{
	char port[2 * NAME_MAX_LEN + 2];

	port_name(nic, port, sizeof(port));
	return switch_has_port(s, sw, port);
}

void vm_connect_nics(struct service *s, struct vm_obj *vm, bool adopted)
{
	vm->refs++;
	/* NICs come and go only while the VM is off: the list holds while it runs. */
	for (size_t i = 0; i < vm->nnics && vm_has_worker(vm) && !vm->deleted; i++) {
		struct nic_obj *nic = vm->nics[i];
		struct switch_obj *sw = switch_find(s, nic->sw);

		/* A write to the NIC in progress connects it itself. */
		if (!nic->sw[0] || nic->port_on[0] || nic->changing)
			continue;
		nic->users++;
		/* Both workers outlived the service: the port is still there. */
		if (adopted && sw) {
			sw->refs++;
			if (port_exists(s, nic, sw) && !sw->deleted && !nic->port_on[0])
				snprintf(nic->port_on, sizeof(nic->port_on), "%s", sw->name);
			switch_put(sw);
		}
		if (!nic->port_on[0])
			nic_connect(s, nic);
		nic->users--;
	}
	vm_put(vm);
}

void switch_reconnect_nics(struct service *s, struct switch_obj *sw)
{
	char (*names)[NAME_MAX_LEN + 1] = NULL;
	size_t n = 0;

	/* The list may change while the lock is dropped: go by name. */
	names = calloc(s->nvms ? s->nvms : 1, sizeof(*names));
	if (!names)
		return;
	for (size_t i = 0; i < s->nvms; i++) {
		struct vm_obj *vm = s->vms[i];
		bool wanted = false;

		/* Their old ports went with the worker (switch_worker_gone). */
		for (size_t k = 0; k < vm->nnics; k++)
			wanted |= strcmp(vm->nics[k]->sw, sw->name) == 0;
		if (wanted && vm_has_worker(vm))
			snprintf(names[n++], sizeof(names[0]), "%s", vm->name);
	}
	for (size_t i = 0; i < n; i++) {
		struct vm_obj *vm = vm_find(s, names[i]);

		if (vm)
			vm_connect_nics(s, vm, false);
	}
	free(names);
}

/* ---- files ---------------------------------------------------------------- */

/* Save the VM's definition after a change to @nic; false if it failed. */
static int nic_save(struct service *s, struct nic_obj *nic, const char *file)
{
	int ret = vm_save(s, nic->vm);

	if (ret)
		return nic_fail(s, nic, -EIO, "%s: cannot save the definition: %s", file,
				strerror(-ret));
	return 0;
}

/* Give the port its new policy; under the lock. */
static int nic_apply(struct service *s, struct nic_obj *nic, const char *file)
{
	struct switch_obj *sw = switch_find(s, nic->port_on);
	char port[2 * NAME_MAX_LEN + 2];
	json_t *req, *reply = NULL;
	int ret;

	if (!nic->port_on[0] || !sw)
		return 0;
	port_name(nic, port, sizeof(port));
	req = json_pack("{s:s, s:s, s:o}", "cmd", "port-set", "name", port,
			"policy", nic_policy_json(nic));
	sw->refs++;
	ret = switch_call(s, sw, req, NULL, 0, &reply);
	json_decref(req);
	if (ret)
		ret = nic_fail(s, nic, -EIO, "%s: switch %s did not apply it: %s", file,
			       sw->name, reply_error(reply, ret));
	json_decref(reply);
	switch_put(sw);
	return ret;
}

/*
 * A live policy change: save the VM's definition, then give the port the
 * new policy.  On failure the caller puts its field back and saves again.
 */
static int nic_commit(struct service *s, struct nic_obj *nic, const char *file)
{
	int ret = nic_save(s, nic, file);

	return ret ? ret : nic_apply(s, nic, file);
}

static int show_mac(struct service *s, void *obj, FILE *out)
{
	char mac[18];

	(void)s;
	nic_mac_format(((struct nic_obj *)obj)->mac, mac, sizeof(mac));
	fprintf(out, "%s\n", mac);
	return 0;
}

static int store_mac(struct service *s, void *obj, const char *value,
		     svc_interrupted_fn intr, void *ctx)
{
	struct nic_obj *nic = obj, *owner;
	uint8_t mac[6], old[6];
	char why[256];
	int ret;

	(void)intr;
	(void)ctx;
	if (vm_change_refused(nic->vm, "the MAC changes while it is off", why, sizeof(why)))
		return nic_fail(s, nic, -EBUSY, "mac: %s", why);
	if (mac_parse(value, mac))
		return nic_fail(s, nic, -EINVAL, "mac: '%s' is not a MAC address like 52:54:00:12:34:56",
				value);
	if (mac[0] & 1)
		return nic_fail(s, nic, -EINVAL, "mac: %s is a multicast address", value);
	if (!(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]))
		return nic_fail(s, nic, -EINVAL, "mac: the all-zeros address is not a NIC's");
	owner = mac_owner(s, mac, nic);
	if (owner)
		return nic_fail(s, nic, -EEXIST, "mac: %s is the MAC of vms/%s/nics/%s already",
				value, owner->vm->name, owner->name);
	memcpy(old, nic->mac, 6);
	memcpy(nic->mac, mac, 6);
	ret = nic_save(s, nic, "mac");
	if (ret) {
		memcpy(nic->mac, old, 6);
		return ret;
	}
	nic_changed(s, nic, "mac", value);
	return 0;
}

static int show_switch(struct service *s, void *obj, FILE *out)
{
	(void)s;
	fprintf(out, "%s\n", ((struct nic_obj *)obj)->sw);
	return 0;
}

static int store_switch(struct service *s, void *obj, const char *value,
			svc_interrupted_fn intr, void *ctx)
{
	struct nic_obj *nic = obj;
	char *old;
	int ret;

	(void)intr;
	(void)ctx;
	if (strcmp(value, "none") == 0)
		value = "";
	if (value[0] && name_problem(value))
		return nic_fail(s, nic, -EINVAL, "switch: '%s' is not a switch name: %s", value,
				name_problem(value));
	if (value[0] && !switch_find(s, value))
		return nic_fail(s, nic, -ENOENT, "switch: there is no switch '%s'", value);
	/* The same switch again: connect it if an earlier attempt failed. */
	if (strcmp(value, nic->sw) == 0)
		return nic->port_on[0] ? 0 : nic_connect(s, nic);
	old = nic->sw;
	nic->sw = svc_strdup(value);
	ret = nic_save(s, nic, "switch");
	if (ret) {
		free(nic->sw);
		nic->sw = old;
		return ret;
	}
	/* Live: off the old switch, onto the new one. */
	nic_disconnect(s, nic);
	ret = nic_connect(s, nic);
	if (ret) {
		/* Refused: back where it was, as far as the switches let us. */
		free(nic->sw);
		nic->sw = old;
		vm_save(s, nic->vm);
		nic_connect(s, nic);
		return ret;
	}
	free(old);
	nic_changed(s, nic, "switch", value[0] ? value : "none");
	return 0;
}

static int show_vlan(struct service *s, void *obj, FILE *out)
{
	char vlan[VALUE_MAX + 32];

	(void)s;
	nic_vlan_format(obj, vlan, sizeof(vlan));
	fprintf(out, "%s\n", vlan);
	return 0;
}

static int store_vlan(struct service *s, void *obj, const char *value,
		      svc_interrupted_fn intr, void *ctx)
{
	struct nic_obj *nic = obj;
	char trunk[VALUE_MAX + 1], canon[VALUE_MAX + 32];
	enum nic_vlan_mode mode, old_mode = nic->vlan_mode;
	uint16_t id, old_id = nic->vlan_id;
	char *old_trunk = nic->trunk;
	const char *why = "";
	int ret;

	(void)intr;
	(void)ctx;
	if (parse_vlan(value, &mode, &id, trunk, sizeof(trunk), &why))
		return nic_fail(s, nic, -EINVAL, "vlan: '%s': %s", value, why);
	nic->vlan_mode = mode;
	nic->vlan_id = id;
	nic->trunk = svc_strdup(trunk);
	ret = nic_commit(s, nic, "vlan");
	if (ret) {
		free(nic->trunk);
		nic->trunk = old_trunk;
		nic->vlan_mode = old_mode;
		nic->vlan_id = old_id;
		vm_save(s, nic->vm);
		return ret;
	}
	free(old_trunk);
	nic_vlan_format(nic, canon, sizeof(canon));
	nic_changed(s, nic, "vlan", canon);
	return 0;
}

/* The on/off settings, by their offset in the NIC. */
static int show_flag(FILE *out, bool v)
{
	fprintf(out, "%s\n", v ? "on" : "off");
	return 0;
}

static int store_flag(struct service *s, struct nic_obj *nic, bool *field,
		      const char *file, const char *value)
{
	bool v, old = *field;
	int ret;

	if (strcmp(value, "on") == 0 || strcmp(value, "1") == 0 || strcmp(value, "true") == 0)
		v = true;
	else if (strcmp(value, "off") == 0 || strcmp(value, "0") == 0 ||
		 strcmp(value, "false") == 0)
		v = false;
	else
		return nic_fail(s, nic, -EINVAL, "%s: '%s' is not on or off", file, value);
	if (v == old)
		return 0;
	*field = v;
	ret = nic_commit(s, nic, file);
	if (ret) {
		*field = old;
		vm_save(s, nic->vm);
		return ret;
	}
	nic_changed(s, nic, file, v ? "on" : "off");
	return 0;
}

#define FLAG_FILE(field)							\
static int show_##field(struct service *s, void *obj, FILE *out)		\
{										\
	(void)s;								\
	return show_flag(out, ((struct nic_obj *)obj)->field);			\
}										\
static int store_##field(struct service *s, void *obj, const char *value,	\
			 svc_interrupted_fn intr, void *ctx)			\
{										\
	(void)intr;								\
	(void)ctx;								\
	return store_flag(s, obj, &((struct nic_obj *)obj)->field, #field, value); \
}

FLAG_FILE(mac_spoofing)
FLAG_FILE(dhcp_guard)
FLAG_FILE(router_guard)

static int show_mirror(struct service *s, void *obj, FILE *out)
{
	(void)s;
	fprintf(out, "%s\n", mirror_names[((struct nic_obj *)obj)->mirror]);
	return 0;
}

static int store_mirror(struct service *s, void *obj, const char *value,
			svc_interrupted_fn intr, void *ctx)
{
	struct nic_obj *nic = obj;
	enum nic_mirror old = nic->mirror;
	int ret = -EINVAL;

	(void)intr;
	(void)ctx;
	for (size_t i = 0; i < ARRAY_SIZE(mirror_names); i++) {
		if (strcmp(value, mirror_names[i]) == 0) {
			nic->mirror = (enum nic_mirror)i;
			ret = 0;
		}
	}
	if (ret)
		return nic_fail(s, nic, -EINVAL, "mirror: '%s' is not one of none, source, destination",
				value);
	if (nic->mirror == old)
		return 0;
	ret = nic_commit(s, nic, "mirror");
	if (ret) {
		nic->mirror = old;
		vm_save(s, nic->vm);
		return ret;
	}
	nic_changed(s, nic, "mirror", value);
	return 0;
}

static int show_bandwidth(struct service *s, void *obj, FILE *out)
{
	(void)s;
	fprintf(out, "%llu\n", (unsigned long long)((struct nic_obj *)obj)->bandwidth_max);
	return 0;
}

/* Bits per second with SI suffixes (k, M, G, T: powers of 1000, as for links). */
static int parse_rate(const char *value, uint64_t *out)
{
	static const char suffixes[] = "kMGT";
	uint64_t v, mult = 1;
	const char *p;
	char *end;

	if (value[0] < '0' || value[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(value, &end, 10);
	if (errno)
		return -ERANGE;
	if (*end) {
		p = strchr(suffixes, *end == 'K' ? 'k' : *end);
		if (!p || end[1])
			return -EINVAL;
		for (long i = 0; i <= p - suffixes; i++)
			mult *= 1000;
	}
	if (v > BANDWIDTH_LIMIT / mult)
		return -ERANGE;
	*out = v * mult;
	return 0;
}

static int store_bandwidth(struct service *s, void *obj, const char *value,
			   svc_interrupted_fn intr, void *ctx)
{
	struct nic_obj *nic = obj;
	uint64_t v, old = nic->bandwidth_max;
	char text[32];
	int ret;

	(void)intr;
	(void)ctx;
	ret = parse_rate(value, &v);
	if (ret)
		return nic_fail(s, nic, -EINVAL,
				"bandwidth_max: '%s' is not a rate in bits per second (like 100M; 0 = no limit)%s",
				value, ret == -ERANGE ? ": too large" : "");
	if (v && v < 8000)
		return nic_fail(s, nic, -EINVAL,
				"bandwidth_max: %s is below the smallest limit, 8k (bits per second)",
				value);
	if (v == old)
		return 0;
	nic->bandwidth_max = v;
	ret = nic_commit(s, nic, "bandwidth_max");
	if (ret) {
		nic->bandwidth_max = old;
		vm_save(s, nic->vm);
		return ret;
	}
	snprintf(text, sizeof(text), "%llu", (unsigned long long)v);
	nic_changed(s, nic, "bandwidth_max", text);
	return 0;
}


static int show_nic_stats(struct service *s, void *obj, FILE *out)
{
	struct nic_obj *nic = obj;
	struct vm_obj *vm = nic->vm;
	json_t *st = NULL, *n;
	size_t index = nic_index(nic);

	vm->refs++;
	if (vm_has_worker(vm))
		st = vm_worker_status(s, vm);
	/* The NIC is still there: the file access holds it (rmdir is EBUSY). */
	n = json_array_get(json_object_get(st, "nics"), index);
	fprintf(out, "link: %s\n", json_is_true(json_object_get(n, "link")) ? "up" : "down");
	fprintf(out, "switch: %s\n", nic->port_on[0] ? nic->port_on : "none");
	fprintf(out, "in_packets: %lld\n", svc_json_int(n, "in_packets"));
	fprintf(out, "in_bytes: %lld\n", svc_json_int(n, "in_bytes"));
	fprintf(out, "out_packets: %lld\n", svc_json_int(n, "out_packets"));
	fprintf(out, "out_bytes: %lld\n", svc_json_int(n, "out_bytes"));
	fprintf(out, "rx_dropped: %lld\n", svc_json_int(n, "rx_dropped"));
	fprintf(out, "tx_errors: %lld\n", svc_json_int(n, "tx_errors"));
	json_decref(st);
	if (nic->port_on[0] && switch_find(s, nic->port_on)) {
		struct switch_obj *sw = switch_find(s, nic->port_on);
		char port[2 * NAME_MAX_LEN + 2];

		port_name(nic, port, sizeof(port));
		sw->refs++;
		switch_port_counters(s, sw, port, "port_", out);
		switch_put(sw);
	}
	vm_put(vm);
	return 0;
}

static const struct attr nic_attrs[] = {
	{ "mac", A_READ | A_WRITE, show_mac, store_mac },
	{ "switch", A_READ | A_WRITE, show_switch, store_switch },
	{ "vlan", A_READ | A_WRITE, show_vlan, store_vlan },
	{ "mac_spoofing", A_READ | A_WRITE, show_mac_spoofing, store_mac_spoofing },
	{ "dhcp_guard", A_READ | A_WRITE, show_dhcp_guard, store_dhcp_guard },
	{ "router_guard", A_READ | A_WRITE, show_router_guard, store_router_guard },
	{ "mirror", A_READ | A_WRITE, show_mirror, store_mirror },
	{ "bandwidth_max", A_READ | A_WRITE, show_bandwidth, store_bandwidth },
	{ "stats", A_READ | A_VOLATILE, show_nic_stats },
};

/* A NIC in use is not removed (rmdir is EBUSY); it lives as long as its VM. */
static void nic_hold(void *obj)
{
	((struct nic_obj *)obj)->users++;
}

static void nic_release(void *obj)
{
	((struct nic_obj *)obj)->users--;
}

static int nic_rmdir(struct service *s, void *obj)
{
	return nic_delete(s, obj);
}

/* One change at a time to a NIC: its writes drop the lock to talk to workers. */
static int nic_begin_write(struct service *s, void *obj, const char *file)
{
	struct nic_obj *nic = obj;

	if (nic->changing)
		return nic_fail(s, nic, -EBUSY, "%s: another change to this NIC is in progress",
				file);
	nic->changing = true;
	return 0;
}

static void nic_end_write(void *obj)
{
	((struct nic_obj *)obj)->changing = false;
}

static const struct tree_kind nic_kind = {
	.name = "nic",
	.attrs = nic_attrs,
	.nattrs = ARRAY_SIZE(nic_attrs),
	.hold = nic_hold,
	.put = nic_release,
	.rmdir = nic_rmdir,
	.begin_write = nic_begin_write,
	.end_write = nic_end_write,
};

static void *nics_lookup(struct service *s, void *parent, const char *name, void *local)
{
	(void)s;
	(void)local;
	return nic_find(parent, name);
}

static int nics_list(struct service *s, void *parent, tree_each_fn fn, void *ctx)
{
	struct vm_obj *vm = parent;

	(void)s;
	for (size_t i = 0; i < vm->nnics; i++)
		if (fn(ctx, vm->nics[i]->name, vm->nics[i]))
			return 1;
	return 0;
}

static size_t nics_count(struct service *s, void *parent)
{
	(void)s;
	return ((struct vm_obj *)parent)->nnics;
}

static int nics_mkdir(struct service *s, void *parent, const char *name)
{
	return nic_define(s, parent, name);
}

static const struct tree_child nics_children[] = {
	{ TREE_SET, &nic_kind, .lookup = nics_lookup, .list = nics_list, .count = nics_count,
	  .mkdir = nics_mkdir },
};

const struct tree_kind nics_kind = {
	.name = "nics",
	.children = nics_children,
	.nchildren = ARRAY_SIZE(nics_children),
};
