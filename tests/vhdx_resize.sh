#!/bin/sh
# Growing disks: VHDX dynamic and fixed, 512- and 4096-byte sectors, 1 MiB
# and 32 MiB blocks, across sector bitmap chunk boundaries and with the BAT
# moved to the end of the file; raw files; and refusals.  Data written
# before the resize survives it, data written after lands in the new space,
# and independent readers agree: qemu-img (check, info, dd) for 512-byte
# sectors, libvhdi (vhdiinfo, vhdimount) for 4096-byte ones, which qemu
# 7.2 refuses.  Whole-disk reads of terabytes take minutes, so the other
# readers look at every written range and its surroundings, and our own
# reader compares the whole disk (tests/tools/resize_tool.c).
. "$SOURCE_ROOT/tests/lib.sh"
need qemu-img vhdiinfo vhdimount fusermount3 cmp numfmt md5sum
scratch
F=$FSVISOR
W=$VDISK_WRITER
R=$RESIZE_TOOL
mkdir mnt
unmount()
{
	fusermount3 -u mnt 2>/dev/null || umount mnt 2>/dev/null
}
trap 'unmount; rm -rf "$SCRATCH"' EXIT

bytes()		# SIZE[+N|-N]: in bytes ("100M+512")
{
	case $1 in
	*+*) echo $(( $(numfmt --from=iec "${1%%+*}") + ${1#*+} )) ;;
	*-*) echo $(( $(numfmt --from=iec "${1%%-*}") - ${1#*-} )) ;;
	*) numfmt --from=iec "$1" ;;
	esac
}

info_field()	# FIELD FILE: a number from "disk info --json"
{
	"$F" disk info --json "$2" | sed -n "s/.*\"$1\": \\([0-9]*\\).*/\\1/p"
}

# expect_error STATUS TEXT cmd...: fails with STATUS and says TEXT.
expect_error()
{
	want=$1 text=$2
	shift 2
	out=$("$@" 2>&1)
	got=$?
	[ "$got" -eq "$want" ] || fail "'$*' exited $got, expected $want: $out"
	echo "$out" | grep -q -- "$text" || fail "'$*' said '$out', not '$text'"
}

# same_range READER OFF LEN: READER's bytes of the disk at [OFF, OFF+LEN),
# widened by 64 KiB each side, equal the shadow's.  READER is "qemu" or a
# raw view of the disk (vhdimount's).
same_range()
{
	sr_s=$(( ($2 - $2 % 65536) / 512 ))
	[ $sr_s -ge 128 ] && sr_s=$((sr_s - 128))
	sr_e=$(( ($2 + $3 + 65535) / 65536 * 128 + 128 ))
	[ $sr_e -gt $((size / 512)) ] && sr_e=$((size / 512))
	rm -f piece.raw want.raw
	if [ "$1" = qemu ]; then
		# qemu-img dd's count is the end block, not a length.
		qemu-img dd -f vhdx -O raw bs=512 skip=$sr_s count=$sr_e \
			if=g.vhdx of=piece.raw 2>/dev/null || return 1
	else
		dd if="$1" of=piece.raw bs=512 skip=$sr_s count=$((sr_e - sr_s)) \
			status=none || return 1
	fi
	dd if=shadow.raw of=want.raw bs=512 skip=$sr_s count=$((sr_e - sr_s)) \
		status=none
	cmp -s piece.raw want.raw
}

# check_image WHAT: the grown g.vhdx against shadow.raw, by every reader;
# $size is the new size, writes.txt the ranges written since the resize.
check_image()
{
	out=$("$F" disk check g.vhdx) || fail "our check ($1): $out"
	out=$("$R" compare g.vhdx shadow.raw 2>&1) || fail "contents ($1): $out"
	[ "$(info_field virtual-size g.vhdx)" = "$size" ] ||
		fail "our size ($1): $(info_field virtual-size g.vhdx)"
	# The start, the old end and the new end, and every write since.
	{ echo "0 65536"; echo "$((old - 65536)) 131072"; echo "$((size - 4096)) 4096"
	  cat writes.txt; } > ranges.txt
	if [ "$lss" = 512 ]; then
		qemu-img check -q g.vhdx || fail "qemu-img check ($1)"
		qemu-img info --output=json g.vhdx |
			grep -q "\"virtual-size\": $size," ||
			fail "qemu-img info size ($1): $(qemu-img info g.vhdx)"
		while read -r off len; do
			same_range qemu "$off" "$len" ||
				fail "qemu reads other data at $off+$len ($1)"
		done < ranges.txt
	else
		info=$(vhdiinfo g.vhdx) || fail "vhdiinfo ($1)"
		echo "$info" | grep -q "Media size.*($size bytes)" ||
			fail "vhdiinfo size ($1): $info"
		echo "$info" | grep -q "Bytes per sector.*: 4096 bytes" ||
			fail "vhdiinfo sector size ($1): $info"
		# libvhdi (20210425) reads a fixed disk's BAT as if it had no
		# sector bitmap entries, so past the first chunk (32 GiB here)
		# it reads each block from the one before; MS-VHDX 2.5 says
		# the layout is the same for every type, and qemu agrees with
		# us on 512-byte sectors.  There it cannot judge fixed disks.
		chunk=$((8388608 * 4096))
		vhdimount g.vhdx mnt >/dev/null || fail "vhdimount ($1)"
		while read -r off len; do
			[ "$type" = fixed ] && [ $((off + len)) -gt $chunk ] &&
				continue
			if ! same_range mnt/vhdi1 "$off" "$len"; then
				unmount
				fail "libvhdi reads other data at $off+$len ($1)"
			fi
		done < ranges.txt
		unmount
	fi
}

# grow TYPE LSS BS OLD NEW [sparse]: create, write, grow, write in the new
# space, check.  "sparse" grows through resize_tool without reserving a
# fixed disk's new space, so terabytes fit this filesystem.
n=0
grow()
{
	type=$1 lss=$2 bs=$3 old=$(bytes "$4") size=$(bytes "$5")
	what="$type, $lss-byte sectors, $bs blocks, $4 -> $5"
	n=$((n + 1))
	rm -f g.vhdx shadow.raw writes.txt
	"$F" disk create --type "$type" --sector-size "$lss" --block-size "$bs" \
		g.vhdx "$old" || fail "create ($what)"
	"$W" pattern "$n" 12 g.vhdx shadow.raw || fail "writes before ($what)"
	if [ "${6:-}" = sparse ]; then
		"$R" resize --sparse g.vhdx "$size" || fail "resize ($what)"
	else
		"$F" disk resize g.vhdx "$size" || fail "resize ($what)"
	fi
	"$R" write "$n" 12 "$old" g.vhdx shadow.raw > writes.txt ||
		fail "writes after ($what)"
	check_image "$what"
	if [ "$type" = fixed ]; then
		b=$(bytes "$bs")
		want=$(( (size + b - 1) / b * b ))
		[ "$(info_field allocated g.vhdx)" = "$want" ] ||
			fail "a fixed disk has every block ($what): $(info_field allocated g.vhdx) of $want"
	fi
	echo "ok: $what"
}

# BAT moved: 1 GiB in 1 MiB blocks has a 1 MiB BAT; 2 TiB needs 17 MiB.
grow dynamic 512 1M 1G 2T
grow dynamic 4096 1M 1G 2T
grow fixed 512 1M 200M 130G sparse
# In place, across a sector bitmap chunk (4 GiB of 512-byte sectors,
# 32 GiB of 4096-byte ones), in both block sizes.
grow dynamic 512 32M 3G 9G
grow fixed 512 1M 3968M 4160M
grow fixed 512 32M 100M 4200M
grow dynamic 4096 32M 31G 33G
grow fixed 4096 1M 100M 33G sparse
grow fixed 4096 32M 100M 1G
# Sizes that end inside a block, and growth inside the last block.
grow dynamic 512 1M 100M+512 300M-512
grow fixed 512 32M 1000M+512 1000M+4096

# Grow again and again: in place, then the BAT moves, and moves once more.
rm -f g.vhdx shadow.raw
"$F" disk create --block-size 1M g.vhdx 100M || fail "create"
"$W" pattern 99 10 g.vhdx shadow.raw || fail "writes"
type=dynamic lss=512 old=$((100 * 1024 * 1024))
for to in 2G 300G 2T; do
	size=$(numfmt --from=iec $to)
	"$F" disk resize g.vhdx $to || fail "resize to $to"
	"$R" write $to 6 "$old" g.vhdx shadow.raw > writes.txt || fail "writes ($to)"
	check_image "grown again to $to"
	old=$size
done
echo "ok: grown three times"

# The same size changes nothing, not even the headers.
before=$(md5sum < g.vhdx)
"$F" disk resize g.vhdx 2T || fail "resize to the same size"
[ "$(md5sum < g.vhdx)" = "$before" ] || fail "a resize to the same size changed the file"

# Raw files grow sparse, data kept.
rm -f r.raw shadow.raw
truncate -s 10M r.raw
"$W" pattern 5 8 r.raw shadow.raw || fail "raw writes"
"$F" disk resize r.raw 3G || fail "raw resize"
[ "$(stat -c %s r.raw)" = $((3 * 1024 * 1024 * 1024)) ] || fail "raw size"
[ "$(du -k r.raw | cut -f1)" -le 20480 ] || fail "a grown raw file is not sparse"
out=$("$R" compare r.raw shadow.raw 2>&1) || fail "raw contents: $out"
expect_error 1 "shrinking a disk loses data" "$F" disk resize r.raw 1G
expect_error 1 "multiple of the 512-byte sector" "$F" disk resize r.raw $((4 * 1024 * 1024 * 1024 + 1))
echo "ok: raw"

# Refusals, each clear and leaving the file as it was.
rm -f b.vhdx c.vhdx
"$F" disk create --block-size 1M b.vhdx 1G || fail "create"
"$F" disk create --sector-size 4096 c.vhdx 1G || fail "create"
before=$(md5sum < b.vhdx) before_c=$(md5sum < c.vhdx)
expect_error 1 "shrinking a disk loses data; not supported" "$F" disk resize b.vhdx 512M
expect_error 1 "not a multiple of the 512-byte sector" "$F" disk resize b.vhdx 2000000001
expect_error 1 "not a multiple of the 4096-byte sector" "$F" disk resize c.vhdx $((2 * 1024 * 1024 * 1024 + 512))
expect_error 1 "more than the 64 TiB" "$F" disk resize b.vhdx 65T
expect_error 1 "more than the 64 TiB" "$F" disk resize c.vhdx $((64 * 1024 * 1024 * 1024 * 1024 + 4096))
expect_error 2 "resize needs FILE and SIZE" "$F" disk resize b.vhdx
expect_error 2 "'2Q' is not a size" "$F" disk resize b.vhdx 2Q
expect_error 1 "cannot open" "$F" disk resize missing.vhdx 2G
[ "$(md5sum < b.vhdx)" = "$before" ] || fail "a refused resize changed the file"
[ "$(md5sum < c.vhdx)" = "$before_c" ] || fail "a refused resize changed the file"
# 64 TiB exactly is allowed (1 MiB blocks: the BAT moves, 513 MiB).
"$F" disk resize b.vhdx 64T || fail "resize to 64 TiB"
[ "$(info_field virtual-size b.vhdx)" = $((64 * 1024 * 1024 * 1024 * 1024)) ] ||
	fail "64 TiB"
"$F" disk check b.vhdx > /dev/null || fail "check after 64 TiB"

# No space for a fixed disk's new blocks: the error says so, and the file
# is as it was but for the headers' write GUIDs (the hook fails the
# reservation; filling the real filesystem would disturb other tests).
rm -f b.vhdx b.copy
"$F" disk create --type fixed --block-size 1M b.vhdx 64M || fail "create"
cp b.vhdx b.copy
expect_error 1 "No space left on device" "$R" resize --enospc b.vhdx 2G
[ "$(stat -c %s b.vhdx)" = "$(stat -c %s b.copy)" ] || fail "a failed resize left the file longer"
cmp -s -i $((192 * 1024)) b.vhdx b.copy || fail "a failed resize changed more than the headers"
[ "$(info_field virtual-size b.vhdx)" = $((64 * 1024 * 1024)) ] || fail "size after ENOSPC"
"$F" disk check b.vhdx > /dev/null || fail "check after ENOSPC"

# Damaged files: refused with the problem named, untouched.
rm -f b.vhdx
"$F" disk create --block-size 1M b.vhdx 1G || fail "create"
printf 'XXXX' | dd of=b.vhdx bs=1 seek=$((192 * 1024)) conv=notrunc status=none
before=$(md5sum < b.vhdx)
expect_error 1 "region table 1 is damaged.*check --repair" "$F" disk resize b.vhdx 2G
[ "$(md5sum < b.vhdx)" = "$before" ] || fail "resize changed a damaged file"
printf 'XXXX' | dd of=b.vhdx bs=1 seek=$((64 * 1024)) conv=notrunc status=none
printf 'XXXX' | dd of=b.vhdx bs=1 seek=$((128 * 1024)) conv=notrunc status=none
before=$(md5sum < b.vhdx)
expect_error 1 "neither header is valid" "$F" disk resize b.vhdx 2G
[ "$(md5sum < b.vhdx)" = "$before" ] || fail "resize changed a file without headers"
rm -f b.vhdx
"$F" disk create --block-size 1M b.vhdx 1G || fail "create"
truncate -s 2M b.vhdx
before=$(md5sum < b.vhdx)
expect_error 1 "past the end of the file" "$F" disk resize b.vhdx 2G
[ "$(md5sum < b.vhdx)" = "$before" ] || fail "resize changed a truncated file"
pass
