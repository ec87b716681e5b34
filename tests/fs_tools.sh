#!/bin/sh
# Ordinary tools on the tree: the tree walkers (cp -r, grep -r, tar,
# rsync, find -exec cat, mv out of the mount) finish; the event logs end
# at their end and are followed by tail -f, poll() and `fsvisor events`;
# rm -r of an object changes nothing; chmod/chown that change nothing
# succeed, and every refused metadata change is recorded like any other
# refusal.
. "$SOURCE_ROOT/tests/lib.sh"
need timeout tar rsync find grep tail
scratch
mount_service
cd "$MNT" || fail "cannot enter the mount"

# A VM with a disk in a slot and a NIC on a switch, a disk, a switch.
mkdir vms/a vms/b disks/d1 disks/d2 switches/s1 || fail "mkdir failed"
echo 64M > disks/d1/size && echo 64M > disks/d2/size || fail "size"
ln -s ../../../disks/d1 vms/a/disks/0 || fail "attach"
mkdir vms/a/nics/eth0 && echo s1 > vms/a/nics/eth0/switch || fail "nic"
echo 2 > vms/a/cpus

# ---- tree walkers finish ---------------------------------------------------
walk()	# what...: the command finishes within 20 s
{
	timeout 20 "$@" >/dev/null 2>"$SCRATCH/walk.err"
	w_rc=$?
	[ $w_rc -eq 124 ] && fail "'$*' did not finish (stuck in a file?)"
	return $w_rc
}
walk cp -r vms/a "$SCRATCH/cp" || fail "cp -r vms/a failed: $(cat "$SCRATCH/walk.err")"
[ "$(cat "$SCRATCH/cp/cpus")" = 2 ] || fail "cp -r copied cpus as '$(cat "$SCRATCH/cp/cpus")'"
grep -q "vm a defined" "$SCRATCH/cp/events" || fail "cp -r did not copy the VM's events"
walk grep -r "cpus 2" . || fail "grep -r did not find the event: $(cat "$SCRATCH/walk.err")"
walk tar cf "$SCRATCH/t.tar" vms switches || fail "tar failed: $(cat "$SCRATCH/walk.err")"
tar tf "$SCRATCH/t.tar" | grep -q '^vms/a/events$' || fail "tar left out vms/a/events"
walk rsync -r vms/ "$SCRATCH/rs" || fail "rsync failed: $(cat "$SCRATCH/walk.err")"
[ "$(cat "$SCRATCH/rs/a/cpus")" = 2 ] || fail "rsync copied cpus as '$(cat "$SCRATCH/rs/a/cpus")'"
walk find . -type f -name events -exec cat {} + || fail "find -exec cat failed"
walk sh -c "find vms -type f | xargs cat" || fail "find | xargs cat failed"

# mv out of the mount copies, then cannot remove the source: the VM stays whole.
walk mv vms/b "$SCRATCH/mv" && fail "mv of a VM out of the mount claimed success"
[ -d vms/b ] || fail "mv out of the mount removed vms/b"
[ -f "$SCRATCH/mv/cpus" ] || fail "mv out of the mount copied nothing"

# ---- the event logs --------------------------------------------------------
size=$(stat -c %s events)
[ "$size" -gt 0 ] || fail "events has size $size"
[ "$(cat events | wc -c)" -eq "$size" ] || fail "cat events read $(cat events | wc -c) bytes of $size"
grep -q "^vm a cpus 2$" vms/a/events || fail "vms/a/events lacks 'vm a cpus 2': $(cat vms/a/events)"
grep -q "disk d1" vms/a/events && fail "vms/a/events shows a disk's events"
# tail -f follows (by size: the file grows), poll() wakes `fsvisor events`.
tail -n0 -f events > "$SCRATCH/tail" 2>&1 &
tail_pid=$!
"$FSVISOR" events "$MNT" > "$SCRATCH/follow" 2>&1 &
follow_pid=$!
"$FSVISOR" events "$MNT/vms/a" > "$SCRATCH/follow_a" 2>&1 &
follow_a_pid=$!
sleep 0.5
echo 3 > vms/a/cpus
echo 128M > disks/d2/size
wait_for "vm a cpus 3" "$SCRATCH/follow" 2 || fail "fsvisor events did not see 'vm a cpus 3': $(cat "$SCRATCH/follow")"
wait_for "disk d2 size" "$SCRATCH/follow" 2 || fail "fsvisor events did not see the disk"
wait_for "vm a cpus 3" "$SCRATCH/follow_a" 2 || fail "fsvisor events vms/a did not see 'vm a cpus 3'"
grep -q "disk d2" "$SCRATCH/follow_a" && fail "fsvisor events vms/a showed a disk's event"
wait_for "vm a cpus 3" "$SCRATCH/tail" 4 || fail "tail -f events did not see 'vm a cpus 3': $(cat "$SCRATCH/tail")"
grep -q "vm a cpus 2" "$SCRATCH/follow" && fail "fsvisor events (following) printed an old event"
kill $tail_pid $follow_pid $follow_a_pid 2>/dev/null
wait 2>/dev/null
"$FSVISOR" events --all --no-follow "$MNT" | grep -q "^vm a defined$" ||
	fail "fsvisor events --all --no-follow lacks 'vm a defined'"
# A read of the log from an offset returns what follows it.
off=$(grep -b "^vm a cpus 3$" events | cut -d: -f1)
[ "$(tail -c +$((off + 1)) events | head -n1)" = "vm a cpus 3" ] ||
	fail "reading events at offset $off gave '$(tail -c +$((off + 1)) events | head -n1)'"

# ---- rm -r changes nothing -------------------------------------------------
rm -rf vms/a 2>"$SCRATCH/rm.err" && fail "rm -rf vms/a claimed success"
[ -L vms/a/disks/0 ] || fail "rm -rf vms/a detached its disk"
[ -d vms/a/nics/eth0 ] || fail "rm -rf vms/a removed its NIC"
expect_value vms/a/cpus 3
grep -q "vm a: disks/0: not detached" "$STATE/service.log" ||
	fail "the log does not say why the link stayed"
grep -q "rm: the files of an object cannot be removed" vms/a/error ||
	fail "vms/a/error does not say why rm failed: $(cat vms/a/error)"
rm -rf disks/d2 2>/dev/null && fail "rm -rf disks/d2 claimed success"
expect_value disks/d2/size 134217728
rm -rf switches/s1 2>/dev/null && fail "rm -rf switches/s1 claimed success"
[ -d switches/s1 ] || fail "rm -rf switches/s1 removed it"
# The same process alone removing the link: allowed (it was not refused a file).
rm vms/a/disks/0 || fail "rm of a disk link failed: $(cat vms/a/error)"
ln -s ../../../disks/d1 vms/a/disks/0 || fail "attach again"
# rm -r of the links directory is how to detach every disk.
rm -rf vms/a/disks 2>/dev/null
[ -e vms/a/disks/0 ] && fail "rm -r vms/a/disks did not detach the disks"
[ -d vms/a/disks ] || fail "rm -r vms/a/disks removed the directory"
rmdir vms/a/nics/eth0 && rmdir vms/a || fail "rmdir of the VM failed: $(cat vms/a/error 2>/dev/null)"

# ---- metadata: no-ops succeed, changes are refused and recorded --------------
expect_op()	# WANT fsop-args...
{
	eo_want=$1
	shift
	eo_got=$("$FSOP" "$@")
	[ "$eo_got" = "$eo_want" ] || fail "fsop $* gave $eo_got, expected $eo_want"
}
expect_op ok chmod vms/b/cpus 600
expect_op ok chmod vms/b 700
expect_op ok chown vms/b/cpus "$(id -u)" "$(id -g)"
chmod 600 vms/b/cpus || fail "chmod to the same mode failed"
chown "$(id -u):$(id -g)" vms/b/cpus || fail "chown to the same owner failed"
expect_op EPERM chmod vms/b/cpus 644
grep -q "cpus: chmod: " vms/b/error || fail "a refused chmod is not in error: $(cat vms/b/error)"
expect_op EPERM chown vms/b/cpus 1 1
grep -q "cpus: chown: " vms/b/error || fail "a refused chown is not in error: $(cat vms/b/error)"
expect_op EPERM rename vms/b/cpus vms/b/cpus2
grep -q "cpus: rename: " vms/b/error || fail "a refused rename is not in error: $(cat vms/b/error)"
expect_op EPERM link vms/b/cpus vms/b/cpus3
grep -q "cpus: ln" vms/b/error || fail "a refused link is not in error: $(cat vms/b/error)"
expect_op EPERM create vms/b/newfile
grep -q "creating a file" vms/b/error || fail "a refused create is not in error: $(cat vms/b/error)"
expect_op EPERM unlink disks/d2/size
grep -q "size: rm: " disks/d2/error || fail "a refused rm is not in error: $(cat disks/d2/error)"
grep -q "vm b: cpus: chmod" "$STATE/service.log" || fail "the log lacks the refused chmod"
# cp -p and install-like tools copying out keep working.
cp -p vms/b/cpus "$SCRATCH/cpus.p" || fail "cp -p out of the mount failed"
pass
