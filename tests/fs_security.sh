#!/bin/sh
# Who may use the tree: the user who mounted it, and with --allow-other
# GROUP that group's members too, as far as the modes allow; nobody else.
# Host paths (kernels, files to adopt) may be named by the owner only.
. "$SOURCE_ROOT/tests/lib.sh"
need setpriv getent md5sum cmp useradd userdel groupadd groupdel
[ "$(id -u)" = 0 ] || fail "this test switches users: run it as root"
scratch
chmod 755 "$SCRATCH"	# so that other users can reach the mount point
group=fsvg$$
user=fsvu$$
# A group and a non-root member of it, made here and removed at exit.
groupadd "$group" || fail "groupadd $group"
useradd -M -N -g "$group" -s /usr/sbin/nologin "$user" || { groupdel "$group"; fail "useradd $user"; }
gid=$(getent group $group | cut -d: -f3)
uid=$(id -u "$user")
remove_user()
{
	userdel "$user" 2>/dev/null
	groupdel "$group" 2>/dev/null
}
trap 'cleanup_service; remove_user' EXIT
# The test guest where the member may read it (the build tree may be private).
cp "$TESTGUEST" "$SCRATCH/testguest.elf" && chmod 644 "$SCRATCH/testguest.elf"
TESTGUEST=$SCRATCH/testguest.elf

# as UID GID CMD...: run CMD as that user, with that group only.
as()
{
	as_uid=$1 as_gid=$2
	shift 2
	setpriv --reuid="$as_uid" --regid="$as_gid" --clear-groups "$@"
}

# ---- a private mount -----------------------------------------------------------
mount_service
trap 'cleanup_service; remove_user' EXIT
as 65534 65534 cat "$MNT/version" > /dev/null 2>&1 && fail "another user read the private mount"
as "$uid" "$gid" cat "$MNT/version" > /dev/null 2>&1 && fail "a group member read the private mount"
[ "$(stat -c %a "$MNT/version")" = 400 ] || fail "version has mode $(stat -c %a "$MNT/version")"
cd "$SCRATCH" && stop_service

# ---- shared with a group -----------------------------------------------------
"$FSVISOR" mount "$MNT" --state "$STATE" --allow-other $group || fail "mount --allow-other failed"
[ "$(stat -c '%a %g' "$MNT/version")" = "440 $gid" ] || fail "version: $(stat -c '%a %g' "$MNT/version")"
[ "$(stat -c '%a %g' "$MNT/vms")" = "770 $gid" ] || fail "vms/: $(stat -c '%a %g' "$MNT/vms")"
[ "$(stat -c %U "$MNT/vms")" = root ] || fail "vms/ is not owned by the service's user"

# A member: reads, defines, sets, starts; cannot name host files.
as "$uid" "$gid" cat "$MNT/version" > /dev/null || fail "a member cannot read version"
[ "$(as "$uid" "$gid" "$FSOP" mkdir "$MNT/vms/g")" = ok ] || fail "a member cannot define a VM"
[ "$(as "$uid" "$gid" "$FSOP" write "$MNT/vms/g/cpus" 2)" = ok ] || fail "a member cannot set cpus"
[ "$(as "$uid" "$gid" "$FSOP" write "$MNT/vms/g/boot/kernel" "$TESTGUEST")" = EPERM ] ||
	fail "a member named a kernel"
grep -q "owner" "$MNT/vms/g/error" || fail "no reason for EPERM: $(cat "$MNT/vms/g/error")"
[ "$(as "$uid" "$gid" "$FSOP" mkdir "$MNT/disks/gd")" = ok ] || fail "a member cannot declare a disk"
[ "$(as "$uid" "$gid" "$FSOP" write "$MNT/disks/gd/file" /etc/shadow)" = EPERM ] ||
	fail "a member adopted /etc/shadow"
[ "$(as "$uid" "$gid" "$FSOP" write "$MNT/disks/gd/size" 1M)" = ok ] || fail "a member cannot create a disk"
[ "$(as "$uid" "$gid" "$FSOP" write "$MNT/version" x)" = EACCES ] || fail "a member wrote version"
# The owner names the kernel; the member runs the VM.
echo "$TESTGUEST" > "$MNT/vms/g/boot/kernel" || fail "the owner cannot set the kernel"
echo idle > "$MNT/vms/g/boot/cmdline"
[ "$(as "$uid" "$gid" "$FSOP" write "$MNT/vms/g/ctl" start)" = ok ] || fail "a member cannot start: $(cat "$MNT/vms/g/error")"
expect_value "$MNT/vms/g/state" running
[ "$(as "$uid" "$gid" "$FSOP" write "$MNT/vms/g/ctl" stop)" = ok ] || fail "a member cannot stop"

# ---- host files through the disk's data: only what the member could open ------
# A file that is not whole sectors is no raw disk (the old way to read /etc/shadow).
printf 'root:x:0:0\n' > "$SCRATCH/short"
mkdir "$MNT/disks/short"
expect_write "$MNT/disks/short/file" "$SCRATCH/short" EINVAL
grep -q "512-byte sectors" "$MNT/disks/short/error" || fail "no reason: $(cat "$MNT/disks/short/error")"
# Three adopted raw files: root's 0600, root's 0644, the member's 0600.
for f in rootonly rootread mine; do
	head -c 1M /dev/urandom > "$SCRATCH/$f.raw"
	mkdir "$MNT/disks/$f"
done
chmod 600 "$SCRATCH/rootonly.raw"
sum_rootonly=$(md5sum < "$SCRATCH/rootonly.raw")
chmod 644 "$SCRATCH/rootread.raw"
chown "$uid:$gid" "$SCRATCH/mine.raw" && chmod 600 "$SCRATCH/mine.raw"
for f in rootonly rootread mine; do
	echo "$SCRATCH/$f.raw" > "$MNT/disks/$f/file" || fail "the owner cannot adopt $f.raw"
done
as "$uid" "$gid" cat "$MNT/disks/rootonly/data" > /dev/null 2>&1 &&
	fail "a member read a root-only file through data"
grep -q "could not open for reading" "$MNT/disks/rootonly/error" ||
	fail "no reason for EACCES: $(cat "$MNT/disks/rootonly/error")"
[ "$(as "$uid" "$gid" "$FSOP" write "$MNT/disks/rootonly/data" x)" = EACCES ] ||
	fail "a member wrote a root-only file through data"
as "$uid" "$gid" cat "$MNT/disks/rootread/data" | cmp - "$SCRATCH/rootread.raw" ||
	fail "a member cannot read a world-readable file through data"
[ "$(as "$uid" "$gid" "$FSOP" pwrite "$MNT/disks/rootread/data" 0 x)" = EACCES ] ||
	fail "a member wrote a read-only file through data"
[ "$(as "$uid" "$gid" "$FSOP" pwrite "$MNT/disks/mine/data" 0 x)" = ok ] ||
	fail "a member cannot write their own file through data: $(cat "$MNT/disks/mine/error")"
[ "$(head -c1 "$SCRATCH/mine.raw")" = x ] || fail "the member's write did not reach the file"
# The owner may do what the service may.
cat "$MNT/disks/rootonly/data" | cmp - "$SCRATCH/rootonly.raw" || fail "the owner cannot read data"
# Checking the file is reading it; starting a VM is reading and writing it.
[ "$(as "$uid" "$gid" "$FSOP" write "$MNT/disks/rootonly/ctl" check)" = EACCES ] ||
	fail "a member checked a root-only file"
ln -s ../../../disks/rootonly "$MNT/vms/g/disks/0" || fail "attach"
[ "$(as "$uid" "$gid" "$FSOP" write "$MNT/vms/g/ctl" start)" = EACCES ] ||
	fail "a member started a VM on a root-only file"
grep -q "rootonly.raw, which you could not open" "$MNT/vms/g/error" ||
	fail "no reason for the refused start: $(cat "$MNT/vms/g/error")"
expect_value "$MNT/vms/g/state" off
rm "$MNT/vms/g/disks/0"
[ "$(md5sum < "$SCRATCH/rootonly.raw")" = "$sum_rootonly" ] || fail "the root-only file changed"

# Someone else: nothing at all.
as 65534 65534 cat "$MNT/version" > /dev/null 2>&1 && fail "a non-member read version"
[ "$(as 65534 65534 "$FSOP" mkdir "$MNT/vms/x")" = EACCES ] || fail "a non-member defined a VM"
[ "$(as 65534 65534 "$FSOP" write "$MNT/vms/g/cpus" 1)" = EACCES ] || fail "a non-member wrote cpus"

pass
