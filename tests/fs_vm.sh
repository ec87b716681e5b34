#!/bin/sh
# The filesystem API end to end: define a VM and a disk with mkdir and
# echo, attach the disk through a slot symlink, run the test guest, read
# its console, drive it through its states, and check what cat, ls -l and
# stat show along the way.
. "$SOURCE_ROOT/tests/lib.sh"
need qemu-img stat
scratch
mount_service
cd "$MNT" || fail "cannot enter the mount"

# ---- the top of the tree ------------------------------------------------
expect_value version "$("$FSVISOR" version | cut -d' ' -f2)"
grep -q "vms/NAME/" README || fail "README does not describe the tree"
expect_value host/cpus "$(nproc)"
case "$(cat host/kvm)" in
"api 12") ;;
*) fail "host/kvm reads '$(cat host/kvm)'" ;;
esac
[ "$(cat host/memory)" -gt "$(cat host/memory_free)" ] || fail "host/memory_free is not below host/memory"
[ "$(stat -c %a vms)" = 700 ] || fail "vms/ has mode $(stat -c %a vms)"
[ "$(stat -c %u version)" = "$(id -u)" ] || fail "files are not owned by the user who mounted"

# events: a log that a read finishes (tests/fs_tools.sh follows it).
timeout 5 cat events > /dev/null || fail "cat events did not finish"
[ "$(stat -c %s events)" -eq "$(cat events | wc -c)" ] || fail "the size of events is not its length"

# ---- define ---------------------------------------------------------------
mkdir vms/web1 disks/d1 || fail "mkdir failed"
for f in ctl state status error events cpus memory/startup boot/kernel \
	boot/initrd boot/cmdline console stats config.json; do
	[ -e "vms/web1/$f" ] || fail "vms/web1/$f is missing"
done
expect_value vms/web1/state off
expect_value vms/web1/cpus 1
expect_value disks/d1/type dynamic
expect_value disks/d1/format vhdx
expect_value disks/d1/size 0

# Modes: read-only 0400, read-write 0600, ctl write-only 0200.
[ "$(stat -c %a vms/web1/state)" = 400 ] || fail "state has mode $(stat -c %a vms/web1/state)"
[ "$(stat -c %a vms/web1/cpus)" = 600 ] || fail "cpus has mode $(stat -c %a vms/web1/cpus)"
[ "$(stat -c %a vms/web1/ctl)" = 200 ] || fail "ctl has mode $(stat -c %a vms/web1/ctl)"
# Sizes: what a read returns.
[ "$(stat -c %s vms/web1/state)" = 4 ] || fail "state has size $(stat -c %s vms/web1/state)"
[ "$(stat -c %s vms/web1/config.json)" = "$(wc -c < vms/web1/config.json)" ] ||
	fail "config.json's size is not its length"

echo 64M > disks/d1/size || fail "writing the size failed"
expect_value disks/d1/size 67108864
file=$(cat disks/d1/file)
[ "$(stat -c %a "$file")" = 600 ] || fail "the service's disk file has mode $(stat -c %a "$file")"
[ -f "$file" ] || fail "the disk file '$file' does not exist"
case "$file" in "$STATE"/*) ;; *) fail "the disk file is not under the state directory" ;; esac
qemu-img check -q "$file" || fail "qemu-img check of the new disk failed"
[ "$(stat -c %s disks/d1/data)" = 67108864 ] || fail "data's size is not the disk's"
expect_value disks/d1/progress "100% create"

ln -s ../../../disks/d1 vms/web1/disks/0 || fail "attaching the disk failed"
[ "$(readlink vms/web1/disks/0)" = ../../../disks/d1 ] || fail "readlink gives $(readlink vms/web1/disks/0)"
[ "$(cat vms/web1/disks/0/size)" = 67108864 ] || fail "the slot link does not lead to the disk"

echo "$TESTGUEST" > vms/web1/boot/kernel || fail "setting the kernel failed"
echo "tests=serial,blk idle heartbeat=1" > vms/web1/boot/cmdline
echo 2 > vms/web1/cpus
echo 128M > vms/web1/memory/startup
expect_value vms/web1/memory/startup 134217728
grep -q '"kernel": "'"$TESTGUEST"'"' vms/web1/config.json || fail "config.json lacks the kernel"
grep -q '"0": "d1"' vms/web1/config.json || fail "config.json lacks the disk"

# ---- run --------------------------------------------------------------------
echo start > vms/web1/ctl || fail "start failed: $(cat vms/web1/error)"
expect_value vms/web1/state running
# The kernel had state's size (4) cached: the change invalidated it.
[ "$(stat -c %s vms/web1/state)" = 8 ] || fail "stat shows a stale size: $(stat -c %s vms/web1/state)"
wait_for "waiting for a line" vms/web1/console 60 || fail "the guest did not ask for a line"
echo "hello from the mount" > vms/web1/console || fail "writing the console failed"
wait_for "TEST blk PASS" vms/web1/console 60 || fail "no blk PASS: $(tail -5 vms/web1/console)"
grep -q "TEST serial PASS" vms/web1/console || fail "no serial PASS"
grep -q "serial: echo 'hello from the mount'" vms/web1/console || fail "the guest did not get the line"
wait_for "testguest: idle" vms/web1/console 30 || fail "the guest did not go idle"

grep -q "^state: running" vms/web1/status || fail "status: $(cat vms/web1/status)"
grep -q "^pid: [0-9]" vms/web1/status || fail "status has no pid"
grep -q "^uptime: [0-9]" vms/web1/status || fail "status has no uptime"
# Every line the reference lists, set or not.
for k in name state cpus memory disks kernel initrd cmdline; do
	grep -q "^$k: " vms/web1/status || fail "status has no '$k:' line: $(cat vms/web1/status)"
done
reads=$(sed -n 's/^disk0_reads: //p' vms/web1/stats)
[ "${reads:-0}" -gt 0 ] || fail "stats show no disk reads: $(cat vms/web1/stats)"
grep -q "^exits: [1-9]" vms/web1/stats || fail "stats show no exits"
"$FSVISOR" ls "$MNT" | grep -q "^web1  *running  *2  *128M  *1 " ||
	fail "fsvisor ls: $("$FSVISOR" ls "$MNT")"

# The console grows while the guest prints; tail -f follows it.
timeout 4 tail -n0 -f vms/web1/console > "$SCRATCH/tail" &
sleep 1
echo "typed line" > vms/web1/console
wait_for "echo: typed line" "$SCRATCH/tail" 5 || fail "tail -f did not show the echo: $(cat "$SCRATCH/tail")"
wait_for "testguest: alive" "$SCRATCH/tail" 5 || fail "tail -f did not show the heartbeat"

# Settings that need the VM off.
expect_write vms/web1/cpus 1 EBUSY
expect_value vms/web1/cpus 2
grep -q "running" vms/web1/error || fail "error does not say why: $(cat vms/web1/error)"
expect_write vms/web1/ctl start EBUSY
rmdir vms/web1 2>/dev/null && fail "rmdir of a running VM succeeded"
rmdir disks/d1 2>/dev/null && fail "rmdir of a disk in use succeeded"
cat disks/d1/data > /dev/null 2>&1 && fail "data of a disk in use could be read"
# The file itself is locked while the worker has it open.
"$FSVISOR" disk resize "$file" 128M > "$SCRATCH/resize" 2>&1 && fail "resized a disk in use"
grep -q "in use" "$SCRATCH/resize" || fail "resizing a disk in use: $(cat "$SCRATCH/resize")"

# poll(): a reader of state wakes when it changes.
"$FSOP" poll vms/web1/state 10000 > "$SCRATCH/poll" &
poll_pid=$!
sleep 0.5
echo pause > vms/web1/ctl || fail "pause failed"
wait $poll_pid
[ "$(cat "$SCRATCH/poll")" = "changed paused" ] || fail "poll: $(cat "$SCRATCH/poll")"
expect_value vms/web1/state paused
"$FSOP" poll vms/web1/state 300 | grep -q timeout || fail "poll woke without a change"
echo resume > vms/web1/ctl
expect_value vms/web1/state running
echo reset > vms/web1/ctl || fail "reset failed"
grep -q "^resets: 1" vms/web1/status || fail "status after reset: $(cat vms/web1/status)"
wait_for "waiting for a line" vms/web1/console 60 || fail "the guest did not start again after reset"
echo again > vms/web1/console

echo stop > vms/web1/ctl || fail "stop failed: $(cat vms/web1/error)"
expect_value vms/web1/state off
grep -q "^last run: stopped" vms/web1/status || fail "status after stop: $(cat vms/web1/status)"
echo stop > vms/web1/ctl || fail "stop of an off VM is not a no-op"
sleep 0.3
cat vms/web1/events > "$SCRATCH/events"	# the VM's log: everything so far
for line in "vm web1 state starting" "vm web1 state running" "vm web1 state paused" \
	"vm web1 reset" "vm web1 state stopping" "vm web1 state off"; do
	grep -q "^$line" "$SCRATCH/events" || fail "events lack '$line': $(cat "$SCRATCH/events")"
done
grep -q "disk d1" "$SCRATCH/events" && fail "the VM's events show a disk's"

# ---- the disk's data, while no VM uses it -------------------------------------
head -c 1M /dev/urandom > "$SCRATCH/blob"
dd if="$SCRATCH/blob" of=disks/d1/data bs=64K seek=16 conv=notrunc status=none ||
	fail "writing data failed"
cmp -n 1048576 -i 0:1048576 "$SCRATCH/blob" disks/d1/data || fail "data reads back different"
qemu-img convert -O raw "$file" "$SCRATCH/raw" || fail "qemu-img cannot read the disk"
cmp -n 1048576 -i 0:1048576 "$SCRATCH/blob" "$SCRATCH/raw" || fail "qemu-img sees other data"
expect_write disks/d1/data x ok
dd if=/dev/zero of=disks/d1/data bs=512 seek=131072 count=1 conv=notrunc status=none 2>/dev/null &&
	fail "a write past the end succeeded"
echo check > disks/d1/ctl || fail "check failed: $(cat disks/d1/error)"
expect_value disks/d1/progress "100% check: clean"
[ "$(cat disks/d1/used)" -gt 1048576 ] || fail "used is $(cat disks/d1/used)"

# Growing: the file grows, the data stays.
echo 1G > disks/d1/size || fail "growing failed: $(cat disks/d1/error)"
expect_value disks/d1/size 1073741824
expect_value disks/d1/progress "100% grow"
[ "$(stat -c %s disks/d1/data)" = 1073741824 ] || fail "data did not grow"
qemu-img info "$file" | grep -q "virtual size: 1 GiB" || fail "qemu-img: $(qemu-img info "$file")"
qemu-img check -q "$file" || fail "qemu-img check after growing failed"
cmp -n 1048576 -i 0:1048576 "$SCRATCH/blob" disks/d1/data || fail "data changed by growing"

# ---- adopting a file, detaching, deleting ---------------------------------------
"$FSVISOR" disk create "$SCRATCH/adopted.vhdx" 32M > /dev/null || fail "disk create failed"
mkdir disks/a
echo "$SCRATCH/adopted.vhdx" > disks/a/file || fail "adopting failed: $(cat disks/a/error)"
expect_value disks/a/size 33554432
expect_value disks/a/format vhdx
rmdir disks/a || fail "rmdir of an adopted disk failed"
[ -f "$SCRATCH/adopted.vhdx" ] || fail "rmdir deleted an adopted file"

rm vms/web1/disks/0 || fail "detaching failed"
[ -e vms/web1/disks/0 ] && fail "the slot is still there"
rmdir disks/d1 || fail "rmdir of a detached disk failed: $(cat disks/d1/error 2>&1)"
[ -e "$file" ] && fail "rmdir left the disk's own file"
rmdir vms/web1 || fail "rmdir of an off VM failed"
[ -e vms/web1 ] && fail "vms/web1 is still there"
[ -e "$STATE/vms/web1" ] && fail "the VM's state directory is still there"
pass
