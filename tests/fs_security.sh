#!/bin/sh
# Who may use the tree: the user who mounted it, and with --allow-other
# GROUP that group's members too, as far as the modes allow; nobody else.
# Host paths (kernels, files to adopt) may be named by the owner only.
. "$SOURCE_ROOT/tests/lib.sh"
need setpriv getent
[ "$(id -u)" = 0 ] || fail "this test switches users: run it as root"
scratch
chmod 755 "$SCRATCH"	# so that other users can reach the mount point
group=users
gid=$(getent group $group | cut -d: -f3)
[ -n "$gid" ] || fail "no group '$group'"

# as UID GID CMD...: run CMD as that user, with that group only.
as()
{
	as_uid=$1 as_gid=$2
	shift 2
	setpriv --reuid="$as_uid" --regid="$as_gid" --clear-groups "$@"
}

# ---- a private mount -----------------------------------------------------------
mount_service
as 65534 65534 cat "$MNT/version" > /dev/null 2>&1 && fail "another user read the private mount"
as 65534 "$gid" cat "$MNT/version" > /dev/null 2>&1 && fail "a group member read the private mount"
[ "$(stat -c %a "$MNT/version")" = 400 ] || fail "version has mode $(stat -c %a "$MNT/version")"
cd "$SCRATCH" && stop_service

# ---- shared with a group -----------------------------------------------------
"$FSVISOR" mount "$MNT" --state "$STATE" --allow-other $group || fail "mount --allow-other failed"
[ "$(stat -c '%a %g' "$MNT/version")" = "440 $gid" ] || fail "version: $(stat -c '%a %g' "$MNT/version")"
[ "$(stat -c '%a %g' "$MNT/vms")" = "770 $gid" ] || fail "vms/: $(stat -c '%a %g' "$MNT/vms")"
[ "$(stat -c %U "$MNT/vms")" = root ] || fail "vms/ is not owned by the service's user"

# A member: reads, defines, sets, starts; cannot name host files.
as 65534 "$gid" cat "$MNT/version" > /dev/null || fail "a member cannot read version"
[ "$(as 65534 "$gid" "$FSOP" mkdir "$MNT/vms/g")" = ok ] || fail "a member cannot define a VM"
[ "$(as 65534 "$gid" "$FSOP" write "$MNT/vms/g/cpus" 2)" = ok ] || fail "a member cannot set cpus"
[ "$(as 65534 "$gid" "$FSOP" write "$MNT/vms/g/boot/kernel" "$TESTGUEST")" = EPERM ] ||
	fail "a member named a kernel"
grep -q "owner" "$MNT/vms/g/error" || fail "no reason for EPERM: $(cat "$MNT/vms/g/error")"
[ "$(as 65534 "$gid" "$FSOP" mkdir "$MNT/disks/gd")" = ok ] || fail "a member cannot declare a disk"
[ "$(as 65534 "$gid" "$FSOP" write "$MNT/disks/gd/file" /etc/shadow)" = EPERM ] ||
	fail "a member adopted /etc/shadow"
[ "$(as 65534 "$gid" "$FSOP" write "$MNT/disks/gd/size" 1M)" = ok ] || fail "a member cannot create a disk"
[ "$(as 65534 "$gid" "$FSOP" write "$MNT/version" x)" = EACCES ] || fail "a member wrote version"
# The owner names the kernel; the member runs the VM.
echo "$TESTGUEST" > "$MNT/vms/g/boot/kernel" || fail "the owner cannot set the kernel"
echo idle > "$MNT/vms/g/boot/cmdline"
[ "$(as 65534 "$gid" "$FSOP" write "$MNT/vms/g/ctl" start)" = ok ] || fail "a member cannot start: $(cat "$MNT/vms/g/error")"
expect_value "$MNT/vms/g/state" running
[ "$(as 65534 "$gid" "$FSOP" write "$MNT/vms/g/ctl" stop)" = ok ] || fail "a member cannot stop"

# Someone else: nothing at all.
as 65534 65534 cat "$MNT/version" > /dev/null 2>&1 && fail "a non-member read version"
[ "$(as 65534 65534 "$FSOP" mkdir "$MNT/vms/x")" = EACCES ] || fail "a non-member defined a VM"
[ "$(as 65534 65534 "$FSOP" write "$MNT/vms/g/cpus" 1)" = EACCES ] || fail "a non-member wrote cpus"

pass
