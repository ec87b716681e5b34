#!/bin/sh
# The service can die (kill -9) or be restarted while VMs run: the new one
# finds every object as it was and re-adopts the running workers, whose
# consoles go on streaming.  A worker that dies shows "crashed" and
# disturbs nothing else.
. "$SOURCE_ROOT/tests/lib.sh"
scratch
mount_service
cd "$MNT" || fail "cannot enter the mount"

# Everything a VM and a disk show, except what changes on its own.
snapshot()
{
	for f in vms/a/state vms/a/cpus vms/a/memory/startup vms/a/boot/kernel \
		vms/a/boot/cmdline vms/a/config.json vms/b/state vms/b/error \
		disks/d/size disks/d/type disks/d/format disks/d/file disks/d/progress; do
		echo "== $f"
		cat "$f"
	done
	ls -l vms/a/disks | sed 1d | awk '{ print $9, $10, $11 }'
	ls vms disks
}

mkdir vms/a vms/b disks/d
echo 16M > disks/d/size
ln -s ../../../disks/d vms/a/disks/2
for vm in a b; do
	echo "$TESTGUEST" > vms/$vm/boot/kernel
	echo "tests=blk idle heartbeat=1" > vms/$vm/boot/cmdline
	echo 64M > vms/$vm/memory/startup
done
echo 2 > vms/a/cpus
echo start > vms/a/ctl || fail "start a: $(cat vms/a/error)"
echo start > vms/b/ctl || fail "start b: $(cat vms/b/error)"
expect_value vms/b/state running
# An error to carry across restarts.
"$FSOP" write vms/b/cpus 0 > /dev/null
wait_for "testguest: alive 1" vms/a/console 30 || fail "a does not print its heartbeat"
snapshot > "$SCRATCH/before"
pid_a=$(sed -n 's/^pid: //p' vms/a/status)

# ---- kill -9 the service -------------------------------------------------------
cd "$SCRATCH" || fail "cd"
stop_service -9
kill -0 "$pid_a" || fail "killing the service killed a's worker"
"$FSVISOR" mount "$MNT" --state "$STATE" || fail "the service did not come back"
cd "$MNT" || fail "cannot enter the mount again"
expect_value vms/a/state running
expect_value vms/b/state running
snapshot > "$SCRATCH/after"
diff "$SCRATCH/before" "$SCRATCH/after" > "$SCRATCH/diff" ||
	fail "objects differ after the restart: $(cat "$SCRATCH/diff")"
[ "$(sed -n 's/^pid: //p' vms/a/status)" = "$pid_a" ] || fail "a has another worker"

# The console goes on streaming, and typing still reaches the guest.
size=$(stat -c %s vms/a/console)
sleep 2.5
[ "$(stat -c %s vms/a/console)" -gt "$size" ] || fail "a's console stopped growing"
echo "after the restart" > vms/a/console || fail "writing a's console failed"
wait_for "echo: after the restart" vms/a/console 10 || fail "a did not echo after the restart"
# Events of the new service, from now on.
"$FSVISOR" events "$MNT" > "$SCRATCH/events" &
ev=$!
sleep 0.3

# ---- a worker dies -------------------------------------------------------------------
kill -9 "$pid_a"
i=0
while [ "$(cat vms/a/state)" != crashed ] && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
expect_value vms/a/state crashed
grep -q "signal 9" vms/a/error || fail "a's error: $(cat vms/a/error)"
grep -q "^last run: the worker was killed by signal 9" vms/a/status || fail "a's status: $(cat vms/a/status)"
expect_value vms/b/state running
grep -q "testguest: alive" vms/b/console || fail "b stopped"
sleep 0.3
kill $ev
grep -q "^vm a state crashed" "$SCRATCH/events" || fail "no crash event: $(cat "$SCRATCH/events")"
grep -q "^vm b" "$SCRATCH/events" && fail "b had events: $(cat "$SCRATCH/events")"

# Crashed survives a clean restart too; b goes on running.
cd "$SCRATCH" || fail "cd"
stop_service
"$FSVISOR" mount "$MNT" --state "$STATE" || fail "the service did not come back"
cd "$MNT" || fail "cd"
expect_value vms/a/state crashed
expect_value vms/b/state running
# A crashed VM starts again (its disk closed cleanly or not, it opens).
echo start > vms/a/ctl || fail "restarting a crashed VM failed: $(cat vms/a/error)"
wait_for "TEST blk PASS" vms/a/console 60 || fail "a's second run did not pass blk"
echo stop > vms/a/ctl

# ---- a VM whose guest fails ---------------------------------------------------------
mkdir vms/c
echo "$TESTGUEST" > vms/c/boot/kernel
echo "tests=triplefault" > vms/c/boot/cmdline
# It may crash before or after the start returns.
"$FSOP" write vms/c/ctl start | grep -qE "^(ok|EIO)$" || fail "start c: $(cat vms/c/error)"
i=0
while [ "$(cat vms/c/state)" != crashed ] && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
expect_value vms/c/state crashed
grep -qi "triple fault" vms/c/error || fail "c's error: $(cat vms/c/error)"
expect_value vms/b/state running
# shutdown of a crashed VM acknowledges the crash, as stop does.
echo shutdown > vms/c/ctl || fail "shutdown of a crashed VM failed: $(cat vms/c/error)"
expect_value vms/c/state off

# SIGTERM stops the service, unmounts, and leaves the VMs running.
pid_b=$(sed -n 's/^pid: //p' vms/b/status)
svc=$(service_pid)
cd "$SCRATCH" || fail "cd"
kill -TERM "$svc"
i=0
while kill -0 "$svc" 2>/dev/null && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
kill -0 "$svc" 2>/dev/null && fail "the service did not stop on SIGTERM"
awk -v m="$MNT" '$5 == m' /proc/self/mountinfo | grep -q . && fail "SIGTERM left the mount"
kill -0 "$pid_b" || fail "SIGTERM to the service stopped b"
"$FSVISOR" mount "$MNT" --state "$STATE" || fail "the service did not come back"
cd "$MNT" || fail "cd"
expect_value vms/b/state running

# shutdown asks the guest (ACPI power button) and waits for it.
echo shutdown > vms/b/ctl || fail "shutdown failed: $(cat vms/b/error)"
expect_value vms/b/state off
grep -q "testguest: power button" vms/b/console || fail "b did not see the power button"
grep -q "^last run: shut down" vms/b/status || fail "b's status: $(cat vms/b/status)"
# A definition the service cannot read is left alone: not listed, not replaced.
echo stop > vms/b/ctl
cd "$SCRATCH" || fail "cd"
stop_service
echo '{ "cpus": ' > "$STATE/vms/c/vm.json"
"$FSVISOR" mount "$MNT" --state "$STATE" || fail "the service did not come back"
cd "$MNT" || fail "cd"
[ -e vms/c ] && fail "a damaged vm.json was loaded"
grep -q "vm.json" "$STATE/service.log" || fail "the log does not name the damaged file"
"$FSOP" mkdir vms/c | grep -qx EEXIST || fail "mkdir over a damaged definition did not fail with EEXIST"
[ "$(cat "$STATE/vms/c/vm.json")" = '{ "cpus": ' ] || fail "the damaged vm.json was replaced"
pass
