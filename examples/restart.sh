#!/bin/sh
# The service is not the VMs: restart it and they go on running.
#
#   examples/restart.sh [MOUNTPOINT]
#
# Needs the state directory the service was started with in
# $FSVISOR_STATE (default: /var/lib/fsvisor).
set -eu
M=${1:-${FSVISOR_MOUNT:-/mnt/fsvisor}}
S=${FSVISOR_STATE:-/var/lib/fsvisor}
GUEST=${FSVISOR_TESTGUEST:-/usr/local/share/fsvisor/testguest.elf}
cd "$M"

mkdir vms/survivor
echo "$GUEST" > vms/survivor/boot/kernel
echo "idle heartbeat=1" > vms/survivor/boot/cmdline
echo start > vms/survivor/ctl
pid=$(sed -n 's/^pid: //p' vms/survivor/status)
echo "running, worker pid $pid"

cd /
umount "$M"                                     # the service stops ...
kill -0 "$pid" && echo "... and the worker runs on"
fsvisor mount "$M" --state "$S"                 # a new service adopts it
cd "$M"
echo "after the restart: $(cat vms/survivor/state), worker pid $(sed -n 's/^pid: //p' vms/survivor/status)"
tail -n 2 vms/survivor/console

echo stop > vms/survivor/ctl
rmdir vms/survivor
