#!/bin/sh
# Quick start: make a disk, a VM that runs the test guest from it, start
# it, show its console, stop it, and clean up.
#
#   examples/quickstart.sh [MOUNTPOINT]
#
# MOUNTPOINT defaults to $FSVISOR_MOUNT, else /mnt/fsvisor (scripts/up
# brings the service up there); the test guest is $FSVISOR_TESTGUEST,
# else the one scripts/up installs.
set -eu
M=${1:-${FSVISOR_MOUNT:-/mnt/fsvisor}}
GUEST=${FSVISOR_TESTGUEST:-/usr/local/share/fsvisor/testguest.elf}
cd "$M"

mkdir disks/quick                       # declare a disk ...
echo 64M > disks/quick/size             # ... and create its VHDX file
mkdir vms/quick                         # define a VM
ln -s ../../../disks/quick vms/quick/disks/0
echo "$GUEST" > vms/quick/boot/kernel
echo "tests=blk idle" > vms/quick/boot/cmdline
echo 2 > vms/quick/cpus
echo 128M > vms/quick/memory/startup

echo start > vms/quick/ctl              # returns once the guest runs
echo "state: $(cat vms/quick/state)"
i=0
until grep -q "testguest: idle" vms/quick/console; do
	i=$((i + 1))
	[ $i -lt 300 ] || { echo "the guest did not finish its tests" >&2; exit 1; }
	sleep 0.1
done
echo "--- console ---"
cat vms/quick/console
echo "---------------"
fsvisor ls "$M"

echo stop > vms/quick/ctl
echo "state: $(cat vms/quick/state)"

rm vms/quick/disks/0                    # detach, then delete both
rmdir vms/quick disks/quick
