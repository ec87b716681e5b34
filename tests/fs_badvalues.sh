#!/bin/sh
# Every writable file refuses bad values: the write fails with the errno of
# DESIGN.md section 3, the value stays as it was, and the object's error
# file says why.  One table per object and state.
. "$SOURCE_ROOT/tests/lib.sh"
scratch
mount_service
cd "$MNT" || fail "cannot enter the mount"

long=$(head -c 5000 /dev/zero | tr '\0' 1)
huge=$(head -c 120000 /dev/zero | tr '\0' 7)	# under the 128K limit of one argument
nl='
'

# bad FILE ERRNO VALUE...: each VALUE written to FILE fails with ERRNO,
# leaves FILE's value alone and puts a reason in the object's error file.
bad()
{
	b_file=$1 b_errno=$2
	shift 2
	b_obj=$(echo "$b_file" | cut -d/ -f1-2)
	for b_value in "$@"; do
		b_before=$(cat "$b_file" 2>/dev/null)
		expect_write "$b_file" "$b_value" "$b_errno"
		b_after=$(cat "$b_file" 2>/dev/null)
		[ "$b_before" = "$b_after" ] ||
			fail "$b_file changed from '$b_before' to '$b_after' after a refused write"
		[ -s "$b_obj/error" ] || fail "$b_obj/error is empty after a refused write to $b_file"
		b_err=$(cat "$b_obj/error")
		case "$b_err" in
		*"$(basename "$b_file")"* | start:* | stop:* | pause:* | resume:* | reset:* | \
		shutdown:* | reboot:* | check:* | console:* | save:* | discard:*) ;;
		*) fail "$b_obj/error does not name the file or command: '$b_err'" ;;
		esac
		grep -qF "$(echo "$b_err" | cut -c1-60)" "$STATE/service.log" ||
			fail "the service log lacks '$b_err'"
	done
}

# op_is ERRNO fsop-args...: a call (mkdir, symlink, ...) fails with ERRNO.
op_is()
{
	oi_want=$1
	shift
	oi_got=$("$FSOP" "$@")
	[ "$oi_got" = "$oi_want" ] || fail "fsop $* gave $oi_got, expected $oi_want"
}

mkdir vms/v disks/d disks/e disks/f || fail "mkdir failed"

# ---- a VM that is off ----------------------------------------------------------
bad vms/v/cpus EINVAL abc 0 -1 1.5 0x2 "2 3" "1${nl}2" 99999999999999999999 65 1000 \
	"$nl" "$long" "$huge" "$(printf '1\001')"
bad vms/v/memory/startup EINVAL abc 0 15M 1Q -1 1.5G 16385K 4000T "$nl" "$long" "$huge" \
	99999999999999999999T
bad vms/v/boot/kernel EINVAL relative/path /etc /etc/hostname "$long"
bad vms/v/boot/kernel ENOENT /nonexistent/kernel
bad vms/v/boot/initrd EINVAL x / /dev/null
bad vms/v/boot/initrd ENOENT /nonexistent/initrd
bad vms/v/boot/cmdline EINVAL "$(head -c 4096 /dev/zero | tr '\0' a)" "$(printf 'a\tb')" \
	"$huge"
bad vms/v/ctl EINVAL bogus "$nl" START "start now" "$huge"
bad vms/v/ctl EINVAL start			# no kernel yet
bad vms/v/ctl EBUSY pause resume reset save	# need a guest that runs
bad vms/v/ctl EINVAL discard			# there is no saved state
# Commands that end in "off" are done already on an off VM.
for c in stop shutdown kill; do
	expect_write vms/v/ctl $c ok
done
expect_value vms/v/state off
bad vms/v/console EBUSY hello
expect_write vms/v/state running EACCES
expect_write vms/v/status x EACCES
# Not UTF-8 (definitions are JSON text): EINVAL with the reason, never EIO.
xff=$(printf '\377') xfe=$(printf '\376') overlong=$(printf '\300\257')
bad vms/v/boot/kernel EINVAL "/tmp/k${xff}.elf"
bad vms/v/boot/cmdline EINVAL "${xff}${xfe}" "a${overlong}b" "$(printf '\355\240\200')"
grep -q "not valid UTF-8" vms/v/error || fail "no UTF-8 reason: $(cat vms/v/error)"
expect_write vms/v/boot/cmdline "console=ttyS0 caf$(printf '\303\251')" ok
expect_value vms/v/boot/cmdline "console=ttyS0 caf$(printf '\303\251')"
# One limit for a value, quoted the same wherever it is refused.
bad vms/v/boot/cmdline EINVAL "$(head -c 4096 /dev/zero | tr '\0' a)" "$long"
grep -q "at most 4095 bytes" vms/v/error || fail "cmdline limit: $(cat vms/v/error)"
grep -q "4096" vms/v/error && fail "a second limit is quoted: $(cat vms/v/error)"
expect_write vms/v/boot/cmdline "$(head -c 4095 /dev/zero | tr '\0' a)" ok
echo console=ttyS0 > vms/v/boot/cmdline
# A value is one write at offset 0: never a piece of one, never appended.
expect_write vms/v/cpus 1 ok
[ "$("$FSOP" pwrite vms/v/cpus 1 6)" = EINVAL ] || fail "a write at offset 1 was taken"
grep -q "offset 0" vms/v/error || fail "no reason for the offset: $(cat vms/v/error)"
printf 16 | dd of=vms/v/cpus bs=1 status=none 2>/dev/null && fail "dd bs=1 of a value succeeded"
expect_value vms/v/cpus 1
echo 3 >> vms/v/cpus 2>/dev/null && fail "appending to a value succeeded"
expect_value vms/v/cpus 1
( printf 'console=' && sleep 0.1 && printf 'ttyS1\n' ) > vms/v/boot/cmdline 2>/dev/null &&
	fail "a value in two writes succeeded"
expect_value vms/v/boot/cmdline console=
echo console=ttyS0 > vms/v/boot/cmdline
# A command may come at any offset: a descriptor held open sends several.
[ "$("$FSOP" pwrite vms/v/ctl 7 stop)" = ok ] || fail "a command at an offset was refused"
op_is EPERM create vms/v/newfile
op_is EPERM mkdir vms/v/newdir
op_is EPERM unlink vms/v/cpus

# Integration services (their errors are the VM's).
I=vms/v/integration
for f in heartbeat shutdown time_sync kvp backup guest_services; do
	bad $I/enabled/$f EINVAL yes 1 ON "on off" "$nl" "$long"
done
bad $I/backup EINVAL unfreeze "freeze 0" "freeze 601" "freeze x" "freeze -1" "thaw now" "$nl" \
	"$long"
bad $I/backup EBUSY freeze "freeze 5" thaw		# no agent: the VM is off
bad $I/copy EINVAL x /etc/hostname "relative /tmp/x" "/etc/hostname relative" \
	"/etc/hostname /tmp/x bogus" "$nl" "$long"
bad $I/copy EPERM "/etc/hostname /tmp/x"		# guest services are off
echo on > $I/enabled/guest_services
bad $I/copy EBUSY "/etc/hostname /tmp/x"		# the VM is off
bad $I/copy ENOENT "/nonexistent /tmp/x"
echo off > $I/enabled/guest_services
for f in agent cid heartbeat time_sync; do
	expect_write $I/$f x EACCES
done
echo value > $I/kvp/host/Key || fail "making a host item failed: $(cat vms/v/error)"
bad $I/kvp/host/Key EINVAL "$(head -c 2049 /dev/zero | tr '\0' k)"
grep -q "at most 2048 bytes" vms/v/error || fail "the value limit: $(cat vms/v/error)"
bad $I/kvp/host/Key EINVAL "$long" "$(printf 'a\001b')"
op_is EINVAL create "$I/kvp/host/$(printf 'a\001b')"
op_is EINVAL create "$I/kvp/host/a${xff}b"
op_is EPERM create $I/kvp/guest/Key
op_is EPERM create $I/kvp/intrinsic/Key
op_is EPERM create $I/newfile
op_is EPERM mkdir $I/kvp/host/dir
op_is EPERM unlink $I/heartbeat
rm $I/kvp/host/Key || fail "rm of a host item failed"
[ -e $I/kvp/host/Key ] && fail "the host item outlived its rm"
bad vms/v/ctl EINVAL "shutdown $(head -c 257 /dev/zero | tr '\0' r)" \
	"reboot $(head -c 257 /dev/zero | tr '\0' r)"
bad vms/v/ctl EBUSY reboot "reboot now"		# needs a guest that runs

# NICs (their errors are the VM's).
mkdir vms/v/nics/eth0 vms/v/nics/eth1 || fail "mkdir of NICs failed"
bad vms/v/nics/eth0/mac EINVAL abc 01:00:5e:00:00:01 00:00:00:00:00:00 52:54:00:12:34 \
	52:54:00:12:34:5g 52-54-00-12-34-56 "52:54:00:12:34:56:78" "$nl" "$long" "$huge"
bad vms/v/nics/eth0/mac EEXIST "$(cat vms/v/nics/eth1/mac)"
bad vms/v/nics/eth0/switch EINVAL ../x .hidden "a/b" "$long"
bad vms/v/nics/eth0/switch ENOENT nosuch
bad vms/v/nics/eth0/vlan EINVAL 0 4095 access "access 0" "access 10 20" trunk "trunk 0-5" \
	"trunk 5-1" "trunk 1-10 native 4095" "trunk 1 nat 3" "trunk a-b" abc -1 "$nl" "$long"
for f in mac_spoofing dhcp_guard router_guard; do
	bad vms/v/nics/eth0/$f EINVAL yes 2 ON "on off" "$nl"
done
bad vms/v/nics/eth0/mirror EINVAL both None "$nl"
bad vms/v/nics/eth0/bandwidth_max EINVAL abc -1 1.5M 100X 7999 99999999999999999999 2000T "$nl"
expect_write vms/v/nics/eth0/stats x EACCES
for i in 2 3 4 5 6 7; do mkdir vms/v/nics/eth$i || fail "mkdir eth$i"; done
op_is ENOSPC mkdir vms/v/nics/eth8
op_is EINVAL mkdir vms/v/nics/.x
op_is EEXIST mkdir vms/v/nics/eth1
op_is EPERM mkdir vms/v/nics/eth1/sub
for i in 1 2 3 4 5 6 7; do rmdir vms/v/nics/eth$i || fail "rmdir eth$i"; done
[ "$(ls vms/v/nics)" = eth0 ] || fail "nics/ holds $(ls vms/v/nics)"

# Slots.
op_is EINVAL symlink ../../../disks/d vms/v/disks/16
op_is EINVAL symlink ../../../disks/d vms/v/disks/abc
op_is EINVAL symlink ../../../disks/d vms/v/disks/01
op_is EINVAL symlink /etc/passwd vms/v/disks/0
op_is EINVAL symlink ../../../vms/v vms/v/disks/0
op_is ENOENT symlink ../../../disks/nosuch vms/v/disks/0
[ -s vms/v/error ] || fail "no error for a bad link"
op_is ok symlink ../../../disks/d vms/v/disks/0
op_is EEXIST symlink ../../../disks/e vms/v/disks/0
mkdir vms/w
op_is EBUSY symlink ../../../disks/d vms/w/disks/0	# d belongs to v
op_is ok symlink "$MNT/disks/e" vms/w/disks/3		# the absolute form
[ "$(readlink vms/w/disks/3)" = ../../../disks/e ] || fail "readlink of an absolute link"

# ---- disks -----------------------------------------------------------------------
bad disks/d/size EINVAL abc 0 1000 65T -5 "$nl" 1.5G "$long" "$huge"
bad disks/d/type EINVAL bogus differencing "$nl" Fixed
bad disks/d/format EINVAL qcow2 vhd "$nl"
bad disks/d/file EINVAL relative /etc /dev/null "$STATE/lock"
bad disks/d/file ENOENT /nonexistent/disk.vhdx
bad disks/d/file EINVAL "/tmp/d${xff}.vhdx"
bad disks/d/ctl EINVAL bogus compact merge "$nl"
bad disks/d/ctl EINVAL check		# no file yet
op_is EINVAL write disks/d/data x	# no file yet: cannot even open
# A damaged VHDX is refused, not taken for raw.
head -c 1M /dev/zero > "$SCRATCH/bad.vhdx"
printf 'vhdxfile' | dd of="$SCRATCH/bad.vhdx" conv=notrunc status=none
bad disks/d/file EINVAL "$SCRATCH/bad.vhdx"
# A fixed disk larger than the free space.
echo fixed > disks/f/type
bad disks/f/size ENOSPC 60T
[ -e "$STATE/disks/f/disk.vhdx" ] && fail "a refused fixed disk left a file"

echo 32M > disks/d/size || fail "creating d failed"
bad disks/d/size EINVAL 16M 1000
bad disks/d/type EBUSY fixed dynamic
bad disks/d/format EBUSY raw
bad disks/d/file EBUSY "$SCRATCH/bad.vhdx"
echo raw > disks/e/format && echo 1M > disks/e/size || fail "creating a raw disk failed"
bad disks/d/file EBUSY "$(cat disks/e/file)"	# another disk's file

# ---- switches ---------------------------------------------------------------------
# Names unique to this run: an internal or external switch makes fsv-NAME.
dummy=fsvbv$$ s=bs$$ t=bt$$	# dummy: one end of a veth pair
ip link add "$dummy" type veth peer name "${dummy}p" || fail "ip link add veth"
trap 'ip link del "$dummy" 2>/dev/null; cleanup_service' EXIT
mkdir switches/$s switches/$t || fail "mkdir switches failed: $(tail -2 "$STATE/service.log")"
bad switches/$s/type EINVAL bogus Private "$nl" "$long" "private internal"
bad switches/$s/type EINVAL external		# no uplink yet
bad switches/$s/uplink ENOENT nosuchif0
bad switches/$s/uplink EINVAL lo a/b "a:b" abcdefghijklmnop "$long" "$huge"
echo "$dummy" > switches/$s/uplink || fail "uplink: $(cat switches/$s/error)"
bad switches/$t/uplink EBUSY "$dummy"		# $s has it
echo external > switches/$s/type || fail "type external: $(cat switches/$s/error)"
bad switches/$s/uplink EBUSY "$nl" none		# an external switch needs one
bad switches/$t/uplink EINVAL "fsv-$s"		# a switch's own device
expect_write switches/$s/host_if x EACCES
expect_write switches/$s/macs x EACCES
expect_write switches/$s/stats x EACCES
op_is EPERM mkdir switches/$s/ports/x
op_is EPERM mkdir switches/$s/sub
op_is EINVAL mkdir switches/.x
op_is EEXIST mkdir switches/$s
echo $s > vms/v/nics/eth0/switch || fail "plugging in: $(cat vms/v/error)"
op_is EBUSY rmdir switches/$s
grep -q "vms/v/nics/eth0" switches/$s/error || fail "switch error: $(cat switches/$s/error)"
echo none > vms/v/nics/eth0/switch
rmdir switches/$s switches/$t || fail "rmdir: $(cat switches/$s/error)"
ip link show "fsv-$s" > /dev/null 2>&1 && fail "fsv-$s outlived its switch"

# ---- a VM that runs ------------------------------------------------------------------
echo "$TESTGUEST" > vms/v/boot/kernel
echo "idle" > vms/v/boot/cmdline
echo start > vms/v/ctl || fail "start failed: $(cat vms/v/error)"
bad vms/v/cpus EBUSY 2
bad vms/v/memory/startup EBUSY 64M
bad vms/v/boot/kernel EBUSY "$TESTGUEST"
bad vms/v/boot/initrd EBUSY "$nl"
bad vms/v/boot/cmdline EBUSY quiet
bad vms/v/ctl EBUSY start
bad disks/d/size EBUSY 64M
bad disks/d/ctl EBUSY check
op_is EBUSY write disks/d/data x
op_is EBUSY unlink vms/v/disks/0
op_is EBUSY symlink ../../../disks/f vms/v/disks/1
op_is EBUSY rmdir vms/v
op_is EBUSY rmdir disks/d
bad vms/v/nics/eth0/mac EBUSY 02:00:00:00:00:01
op_is EBUSY mkdir vms/v/nics/eth1
op_is EBUSY rmdir vms/v/nics/eth0
echo stop > vms/v/ctl || fail "stop failed"
op_is EBUSY rmdir disks/d	# still attached
pass
