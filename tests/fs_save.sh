#!/bin/sh
# Save through the mount: a test guest in snap mode (2 vCPUs, a dynamic
# VHDX, a NIC on a private switch pinging a second VM) is saved with
# `echo save > ctl` and started again three times in a row (the second
# and third saves are of a VM that was itself restored); every self-check
# passes, the second VM's pings resume, and qemu-img finds the disk clean.
# While saved: no worker runs, the settings the state depends on refuse
# changes with EBUSY and say why, stop and pause refuse, the state
# survives a restart of the service, the disk can be read but not
# written.  Discard makes the VM off and it boots afresh.
. "$SOURCE_ROOT/tests/lib.sh"
need qemu-img
[ -w /dev/kvm ] || fail "/dev/kvm is not usable here"
scratch
mount_service
cd "$MNT" || fail "cannot enter the mount"
sw=s$$

mkdir switches/$sw disks/d vms/a vms/a/nics/eth0 vms/b vms/b/nics/eth0 ||
	fail "mkdir: $(tail -3 "$STATE/service.log")"
echo 64M > disks/d/size || fail "disk size: $(cat disks/d/error)"
ln -s ../../../disks/d vms/a/disks/0 || fail "attach: $(cat vms/a/error)"
for vm in a b; do
	echo "$TESTGUEST" > vms/$vm/boot/kernel
	echo $sw > vms/$vm/nics/eth0/switch || fail "plugging $vm in: $(cat vms/$vm/error)"
done
echo 2 > vms/a/cpus
echo 128M > vms/a/memory/startup
echo "snap ip=10.0.0.1 peer=10.0.0.2" > vms/a/boot/cmdline
echo 64M > vms/b/memory/startup
echo "idle ip=10.0.0.2 peer=10.0.0.1 ping_every=1" > vms/b/boot/cmdline

# What is refused before there is anything to save, or to discard.
expect_write vms/a/ctl save EBUSY
grep -q "save: the VM is off" vms/a/error || fail "save of an off VM: $(cat vms/a/error)"
expect_write vms/a/ctl discard EINVAL
grep -q "discard: the VM is off" vms/a/error || fail "discard: $(cat vms/a/error)"

for vm in a b; do
	echo start > vms/$vm/ctl || fail "start $vm: $(cat vms/$vm/error)"
done
wait_for "snap: alive round=2" vms/a/console 60 || fail "A did not start its checks"
wait_for "net: reply from 10.0.0.1 seq 2" vms/b/console 60 || fail "B's pings are not answered"

replies() { grep -ac "net: reply from 10.0.0.1" vms/b/console; }
cycle=0
while [ $cycle -lt 3 ]; do
	cycle=$((cycle + 1))
	pid=$(cat "$STATE/vms/a/worker.pid")
	echo save > vms/a/ctl || fail "save $cycle: $(cat vms/a/error)"
	expect_value vms/a/state saved
	alive "$pid" && fail "save $cycle: the worker (pid $pid) is still there"
	[ -f "$STATE/vms/a/saved/manifest.json" ] || fail "save $cycle: no saved state"
	grep -q "^state: saved" vms/a/status || fail "status: $(cat vms/a/status)"
	"$FSVISOR" ls "$MNT" | grep -q "^a  *saved " || fail "fsvisor ls: $("$FSVISOR" ls "$MNT")"
	if [ $cycle = 1 ]; then
		# Everything the saved state depends on stays as it is.
		expect_write vms/a/cpus 4 EBUSY
		grep -q "cpus: the VM is saved, and its saved state was made with this" vms/a/error ||
			fail "cpus while saved: $(cat vms/a/error)"
		expect_write vms/a/memory/startup 256M EBUSY
		expect_write vms/a/boot/cmdline "snap" EBUSY
		expect_write vms/a/nics/eth0/mac 52:54:00:aa:bb:cc EBUSY
		[ "$("$FSOP" unlink vms/a/disks/0)" = EBUSY ] || fail "detaching the disk of a saved VM"
		[ "$("$FSOP" mkdir vms/a/nics/eth1)" = EBUSY ] || fail "adding a NIC to a saved VM"
		expect_write disks/d/size 128M EBUSY
		grep -q "VM a, which uses it, is saved" disks/d/error || fail "disk size: $(cat disks/d/error)"
		# Its disk is consistent: it may be read (a backup), not written.
		head -c 4096 disks/d/data >/dev/null || fail "reading a saved VM's disk"
		expect_write disks/d/data x EBUSY
		expect_write vms/a/ctl stop EBUSY
		grep -q "stop: the VM is saved, not running" vms/a/error || fail "stop: $(cat vms/a/error)"
		expect_write vms/a/ctl pause EBUSY
		expect_write vms/a/ctl save EBUSY
		# The state outlives the service.
		cd "$SCRATCH" || fail "cd"
		stop_service
		"$FSVISOR" mount "$MNT" --state "$STATE" || fail "mounting again"
		cd "$MNT" || fail "cannot enter the mount"
		expect_value vms/a/state saved
		"$FSVISOR" vm state-info "$STATE/vms/a/saved" | grep -q '"restorable": true' ||
			fail "state-info: $("$FSVISOR" vm state-info "$STATE/vms/a/saved")"
	fi
	before=$(replies)
	echo start > vms/a/ctl || fail "start $cycle from the saved state: $(cat vms/a/error)"
	expect_value vms/a/state running
	[ -e "$STATE/vms/a/saved" ] && fail "start $cycle: the used state is still there"
	echo restored > vms/a/console || fail "typing into the restored VM"
	wait_for "snap: restored, cycles $cycle" vms/a/console 30 ||
		fail "the restored guest did not answer: $(tail -3 vms/a/console)"
	alive=$(grep -ac "snap: alive" vms/a/console)
	i=0
	while [ "$(grep -ac "snap: alive" vms/a/console)" -lt $((alive + 2)) ] && [ $i -lt 300 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ "$(grep -ac "snap: alive" vms/a/console)" -ge $((alive + 2)) ] ||
		fail "cycle $cycle: the restored guest's checks stopped"
	i=0
	while [ "$(replies)" -le "$before" ] && [ $i -lt 200 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ "$(replies)" -gt "$before" ] || fail "cycle $cycle: B's pings did not resume"
	grep -aq "snap: FAIL" vms/a/console && fail "cycle $cycle: $(grep -a "snap: FAIL" vms/a/console | head -3)"
	echo "cycle $cycle: saved, started again, checks pass"
done
grep -a "snap: alive" vms/a/console | tail -1

# Discard: off, and the next start boots.
echo save > vms/a/ctl || fail "save: $(cat vms/a/error)"
echo discard > vms/a/ctl || fail "discard: $(cat vms/a/error)"
expect_value vms/a/state off
[ -e "$STATE/vms/a/saved" ] && fail "discard left the saved state"
grep -q "last run: its saved state was discarded" vms/a/status || fail "status: $(cat vms/a/status)"
echo 4 > vms/a/cpus || fail "cpus after discard: $(cat vms/a/error)"
echo 2 > vms/a/cpus
for vm in a b; do
	echo stop > vms/$vm/ctl || fail "stop $vm: $(cat vms/$vm/error)"
done
qemu-img check -q "$STATE/disks/d/disk.vhdx" || fail "qemu-img check of the disk failed"
# A saved VM is removed (rmdir) with its saved state.
echo start > vms/b/ctl && echo save > vms/b/ctl || fail "save b: $(cat vms/b/error)"
[ "$("$FSOP" rmdir vms/b/nics/eth0)" = EBUSY ] || fail "removing a saved VM's NIC"
rmdir vms/b || fail "rmdir of a saved VM: $(cat vms/b/error 2>&1)"
[ -e "$STATE/vms/b" ] && fail "the saved VM's directory is still there"
pass
