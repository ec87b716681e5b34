#!/bin/sh
# Independent readers agree with us on differencing chains made here.
# DESIGN.md section 4: 7-Zip reads VHDX and VHD chains correctly; libvhdi
# reads VHD chains (not VHDX differencing images); qemu-img reads fixed
# and dynamic VHD only.
. "$SOURCE_ROOT/tests/lib.sh"
need 7zz cmp
scratch
F=$FSVISOR
W=$VDISK_WRITER

# same IMAGE SHADOW WHAT: 7-Zip and we read IMAGE as SHADOW.
same_7z()
{
	rm -f ours.raw z.raw
	"$F" disk convert -O raw "$1" ours.raw || fail "our convert of $3"
	cmp -s ours.raw "$2" || fail "we read other data from $3"
	7zz e "-t$4" -so "$1" > z.raw 2>z.err || fail "7zz refuses $3: $(tail -3 z.err)"
	cmp -s z.raw "$2" || fail "7-Zip reads other data from $3"
}

# 1. VHDX chains of depth 1 to 4 over dynamic and fixed bases, 512- and
#    4096-byte sectors: writes, write-zeroes and discards at every level.
for base in dynamic fixed; do
	for lss in 512 4096; do
		rm -f l*.vhdx l*.raw
		"$F" disk create --type $base --block-size 1M --sector-size $lss \
			l0.vhdx 80M || fail "create $base"
		"$W" mutate 1 30 l0.vhdx l0.raw || fail "writes to the $base base"
		p=l0
		for i in 1 2 3 4; do
			"$F" disk create --parent $p.vhdx l$i.vhdx ||
				fail "create level $i over $base, sector $lss"
			cp l$((i - 1)).raw l$i.raw
			"$W" mutate $((i * 10 + 1)) 25 l$i.vhdx l$i.raw ||
				fail "writes to level $i over $base, sector $lss"
			p=l$i
		done
		for i in 0 1 2 3 4; do
			same_7z l$i.vhdx l$i.raw "level $i over a $base base, sector $lss" vhdx
		done
	done
done
pass
