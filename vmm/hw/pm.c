// SPDX-License-Identifier: MIT
/*
 * ACPI hardware-reduced power management: the sleep control and status
 * registers and the reset register that the FADT points at.  Writing
 * SLP_TYP = S5 with SLP_EN powers the VM off; the reset value resets it.
 */
#include <stdlib.h>
#include <string.h>

#include "vmm/internal.h"

#define SLP_EN (1u << 5)

struct pm {
	struct vm *vm;
};

static void pm_io(void *opaque, uint64_t off, uint8_t *data, unsigned int len,
		  bool write)
{
	struct pm *pm = opaque;
	uint16_t port = (uint16_t)(PM_SLEEP_CONTROL + off);

	if (!write) {
		/* Sleep status: WAK_STS, as if just woken; others read 0. */
		memset(data, 0, len);
		if (port == PM_SLEEP_STATUS)
			data[0] = 0x80;
		return;
	}
	if (port == PM_SLEEP_CONTROL && (data[0] & SLP_EN)) {
		unsigned int type = (data[0] >> 2) & 7;

		if (type == PM_S5_TYPE)
			vm_post_event(pm->vm, VMEV_POWEROFF, "ACPI S5");
		else
			log_warn("guest asked for sleep type %u: not supported, ignored",
				 type);
	} else if (port == PM_RESET && data[0] == PM_RESET_VALUE) {
		vm_post_event(pm->vm, VMEV_RESET, "ACPI reset register");
	}
}

void pm_power_button(struct pm *pm)
{
	/* Edge-triggered, active high (the GED's _CRS says so). */
	vm_irq_line(pm->vm, GED_GSI, 1);
	vm_irq_line(pm->vm, GED_GSI, 0);
}

struct pm *pm_create(struct vm *vm)
{
	struct pm *pm = calloc(1, sizeof(*pm));

	if (!pm)
		return NULL;
	pm->vm = vm;
	if (bus_register(&vm->pio, PM_SLEEP_CONTROL, PM_RESET - PM_SLEEP_CONTROL + 1,
			 pm_io, pm, "acpi-pm")) {
		free(pm);
		return NULL;
	}
	return pm;
}

void pm_destroy(struct pm *pm)
{
	if (!pm)
		return;
	bus_unregister(&pm->vm->pio, PM_SLEEP_CONTROL, pm);
	free(pm);
}
