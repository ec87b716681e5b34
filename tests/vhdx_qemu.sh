#!/bin/sh
# VHDX interoperability with qemu-img, qemu-io and libvhdi, both ways.
. "$SOURCE_ROOT/tests/lib.sh"
need qemu-img qemu-io vhdiinfo vhdimount fusermount3 cmp
scratch
F=$FSVISOR
W=$VDISK_WRITER

# Seeded random data, as a sparse raw file of 300 MiB.
truncate -s 300M seed.raw
"$W" pattern 11 40 seed.raw unused.raw || fail "cannot make seed data"

# 1. Images made and filled by qemu read back byte-identical.
for sub in dynamic fixed; do
	for bs in 1M 8M 32M 256M; do
		for log in 1M 4M; do
			what="$sub, blocks $bs, log $log"
			rm -f q.vhdx ref.raw ours.raw
			qemu-img create -q -f vhdx \
				-o subformat=$sub,block_size=$bs,log_size=$log q.vhdx 300M ||
				fail "qemu-img create ($what)"
			qemu-img convert -n -f raw -O vhdx seed.raw q.vhdx ||
				fail "qemu-img convert into $what"
			qemu-io -f vhdx -c "write -P 0x5a 1234567 77777" \
				-c "write -P 0xa5 268435000 1000" q.vhdx >/dev/null ||
				fail "qemu-io ($what)"
			qemu-img convert -O raw q.vhdx ref.raw
			"$F" disk convert -O raw q.vhdx ours.raw ||
				fail "our convert of $what"
			cmp -s ref.raw ours.raw || fail "data differs: $what"
			out=$("$F" disk check q.vhdx) || fail "our check of $what: $out"
			"$F" disk info q.vhdx | grep -q "^type: *$sub" ||
				fail "info shows the wrong type for $what"
		done
	done
done

# 2. Images made and written by us pass qemu-img check, read back the same
#    through qemu and through libvhdi's vhdimount, and are described
#    correctly by vhdiinfo.  qemu (7.2) refuses VHDX logical sectors other
#    than 512 bytes ("Operation not supported"), so for 4096-byte sectors
#    libvhdi is the independent reader.
mkdir mnt
unmount()
{
	fusermount3 -u mnt 2>/dev/null || umount mnt 2>/dev/null
}
trap 'unmount; rm -rf "$SCRATCH"' EXIT
for type in dynamic fixed; do
	for lss in 512 4096; do
		for bs in 1M default; do
			what="$type, sector $lss, blocks $bs"
			rm -f o.vhdx shadow.raw back.raw
			opt="--type $type --sector-size $lss"
			[ "$bs" = default ] || opt="$opt --block-size $bs"
			# shellcheck disable=SC2086
			"$F" disk create $opt o.vhdx 200M || fail "create $what"
			"$W" pattern 5 60 o.vhdx shadow.raw || fail "writes to $what"
			if [ "$lss" = 512 ]; then
				qemu-img check -q o.vhdx || fail "qemu-img check of $what"
				qemu-img convert -O raw o.vhdx back.raw
				cmp -s back.raw shadow.raw ||
					fail "qemu reads other data from $what"
			fi
			vhdimount o.vhdx mnt >/dev/null || fail "vhdimount of $what"
			cmp -s mnt/vhdi1 shadow.raw
			same=$?
			unmount
			[ $same -eq 0 ] || fail "libvhdi reads other data from $what"
			info=$(vhdiinfo o.vhdx) || fail "vhdiinfo refuses $what"
			Type=$(echo "$type" | sed 's/^./\U&/')
			echo "$info" | grep -q "Disk type.*: $Type" ||
				fail "vhdiinfo type for $what: $info"
			echo "$info" | grep -q "Media size.*(209715200 bytes)" ||
				fail "vhdiinfo size for $what: $info"
			echo "$info" | grep -q "Bytes per sector.*: $lss bytes" ||
				fail "vhdiinfo sector size for $what: $info"
		done
	done
done

# 3. convert keeps sparse things sparse: three 64 KiB islands of data in
#    300 MiB become three 8 MiB blocks, and back three islands.
truncate -s 300M sparse.raw
for at in 3 100 250; do
	dd if=/dev/urandom of=sparse.raw bs=64K count=1 seek=$((at * 16)) \
		conv=notrunc status=none
done
rm -f o.vhdx back.raw
"$F" disk convert sparse.raw o.vhdx || fail "convert raw to vhdx"
"$F" disk info o.vhdx | grep -q "allocated: *24.0 MiB" ||
	fail "VHDX of sparse data: $("$F" disk info o.vhdx | grep allocated)"
size=$(stat -c %s o.vhdx)
[ "$size" -le $((28 * 1024 * 1024)) ] || fail "VHDX of sparse data is $size bytes"
"$F" disk convert -O raw o.vhdx back.raw || fail "convert vhdx to raw"
cmp -s sparse.raw back.raw || fail "raw round trip differs"
kib=$(du -k back.raw | cut -f1)
[ "$kib" -le 512 ] || fail "raw copy is not sparse ($kib KiB used)"
pass
