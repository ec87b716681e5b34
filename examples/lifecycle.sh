#!/bin/sh
# A VM's life: start, pause, resume, reset, then an ACPI shutdown that the
# guest answers; the VM's events file (a log) tells the story.
#
#   examples/lifecycle.sh [MOUNTPOINT]
set -eu
M=${1:-${FSVISOR_MOUNT:-/mnt/fsvisor}}
GUEST=${FSVISOR_TESTGUEST:-/usr/local/share/fsvisor/testguest.elf}
cd "$M"

mkdir vms/life
echo "$GUEST" > vms/life/boot/kernel
echo "idle" > vms/life/boot/cmdline              # the test guest stays up, and
                                                  # powers off on the power button
echo start > vms/life/ctl
until grep -q "testguest: idle" vms/life/console; do sleep 0.1; done
echo pause > vms/life/ctl;  echo "after pause: $(cat vms/life/state)"
echo resume > vms/life/ctl; echo "after resume: $(cat vms/life/state)"
echo reset > vms/life/ctl
grep '^resets:' vms/life/status
until [ "$(grep -c 'testguest: idle' vms/life/console)" -ge 2 ]; do sleep 0.1; done
echo shutdown > vms/life/ctl                      # waits for the guest to power off
echo "after shutdown: $(cat vms/life/state)"
grep '^last run:' vms/life/status
echo "--- events ---"
cat vms/life/events                              # (fsvisor events vms/life follows them)
rmdir vms/life
