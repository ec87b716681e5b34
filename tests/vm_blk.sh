#!/bin/sh
# virtio-blk end to end: the test guest's "blk" test on a dynamic VHDX, a
# fixed VHDX and a raw file.  Afterwards the image is clean for qemu-img
# check and holds exactly what the guest wrote (guest/testguest/
# blk_layout.h, rebuilt here by vdisk_writer blkexpect).  A read-only disk
# refuses writes with IOERR and its bytes do not change.
. "$SOURCE_ROOT/tests/lib.sh"
need qemu-img cmp md5sum timeout
[ -w /dev/kvm ] || fail "/dev/kvm is not usable here"
scratch
F=$FSVISOR
W=$VDISK_WRITER
seed=0x51ed
"$W" blkexpect $seed $((64 * 1024 * 1024)) expected.raw || fail "blkexpect"

for kind in dynamic fixed raw; do
	case $kind in
	raw) truncate -s 64M disk.raw; disk=disk.raw ;;
	*) rm -f disk.vhdx
	   "$F" disk create --type $kind --block-size 1M disk.vhdx 64M || fail "create"
	   disk=disk.vhdx ;;
	esac
	timeout 120 "$F" vm run --kernel "$TESTGUEST" --mem 128M \
		--cmdline "tests=blk blkseed=$seed blkserial=serial-$kind" \
		--disk "$disk,serial=serial-$kind" </dev/null >out.txt 2>&1
	st=$?
	[ $st -eq 0 ] || fail "$kind: exit $st: $(tail -5 out.txt)"
	expect_passes out.txt blk
	grep -q "blk: serial 'serial-$kind'" out.txt || fail "$kind: serial"
	if [ $kind = raw ]; then
		cmp -s disk.raw expected.raw || fail "raw: the disk holds other data"
	else
		qemu-img check -q disk.vhdx || fail "$kind: qemu-img check"
		"$F" disk check disk.vhdx >/dev/null || fail "$kind: our check"
		rm -f back.raw
		qemu-img convert -O raw disk.vhdx back.raw
		cmp -s back.raw expected.raw || fail "$kind: qemu reads other data than the guest wrote"
		"$F" disk info disk.vhdx | grep -q "log:.*clean" || fail "$kind: log left dirty"
	fi
	rm -f disk.raw
done
# The discarded block of the dynamic disk went back to the filesystem.
"$F" disk create --block-size 1M d.vhdx 64M
timeout 120 "$F" vm run --kernel "$TESTGUEST" --mem 128M --cmdline "tests=blk" \
	--disk d.vhdx </dev/null >/dev/null 2>&1 || fail "second dynamic run"
"$F" disk info d.vhdx | grep -q "allocated: *2.00 MiB" ||
	fail "discard did not free the block: $("$F" disk info d.vhdx | grep allocated)"

# Read-only: the guest's writes fail with IOERR, the file stays as it was.
head -c 1048576 /dev/urandom > ro.raw
truncate -s 16M ro.raw
before=$(md5sum < ro.raw)
truncate -s 64M rw.raw
timeout 120 "$F" vm run --kernel "$TESTGUEST" --mem 128M --cmdline "tests=blkro" \
	--disk rw.raw --disk ro.raw,ro,format=raw </dev/null >ro.txt 2>&1 ||
	fail "read-only run: $(tail -3 ro.txt)"
expect_passes ro.txt blkro
[ "$(md5sum < ro.raw)" = "$before" ] || fail "the read-only disk changed"

# Bad disk settings are refused before the VM starts.
out=$("$F" vm run --no-console --kernel "$TESTGUEST" --disk missing.vhdx 2>&1)
[ $? -eq 1 ] && echo "$out" | grep -q "disks\[0\]: cannot open [^ ]*/missing.vhdx: No such file" ||
	fail "missing disk: $out"
printf 'not a vhdx' > junk.vhdx
truncate -s 2M junk.vhdx
out=$("$F" vm run --no-console --kernel "$TESTGUEST" --disk junk.vhdx,format=vhdx 2>&1)
[ $? -eq 1 ] && echo "$out" | grep -q "vhdxfile" || fail "junk disk: $out"
out=$("$F" vm run --no-console --kernel "$TESTGUEST" \
	--disk "rw.raw,serial=this-serial-is-far-too-long" 2>&1)
[ $? -eq 1 ] && echo "$out" | grep -q "at most 20" || fail "long serial: $out"
expect_status 2 "$F" vm run --no-console --kernel "$TESTGUEST" --disk "rw.raw,bogus"
pass
