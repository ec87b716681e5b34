// SPDX-License-Identifier: MIT
/* The whole userspace of the slow test's initramfs: say so, power off. */
#include <stdio.h>
#include <sys/reboot.h>
#include <unistd.h>

int main(void)
{
	printf("init: hello from userspace\n");
	fflush(stdout);
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}
