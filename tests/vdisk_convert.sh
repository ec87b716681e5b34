#!/bin/sh
# convert: every source format and type into every destination format
# and type, flattening chains and keeping them, sparse-aware; each copy
# reads as its model, and qemu or 7-Zip agree where they can read it.
. "$SOURCE_ROOT/tests/lib.sh"
need qemu-img 7zz cmp
scratch
F=$FSVISOR
W=$VDISK_WRITER

# reads_as IMAGE MODEL WHAT: we read IMAGE as MODEL, past MODEL's end zeros.
reads_as()
{
	rm -f back.raw
	"$F" disk convert -O raw "$1" back.raw || fail "reading back $3"
	msize=$(stat -c %s "$2")
	bsize=$(stat -c %s back.raw)
	[ "$bsize" -ge "$msize" ] || fail "$3 is smaller ($bsize) than its source ($msize)"
	cmp -s -n "$msize" back.raw "$2" || fail "$3 reads other data than its source"
	if [ "$bsize" -gt "$msize" ]; then
		[ "$(tail -c $((bsize - msize)) back.raw | tr -d '\0' | wc -c)" -eq 0 ] ||
			fail "$3 has data past its source's end"
	fi
}

# Sources: a raw file, VHDX and VHD of each type, and a chain of each.
truncate -s 40M src.raw
"$W" mutate 1 30 src.raw src.model || fail "writes to a raw file"
"$F" disk create --type dynamic --block-size 1M sd.vhdx 40M
"$F" disk create --type fixed sf.vhdx 40M
"$F" disk create --type dynamic sd.vhd 40M
"$F" disk create --type fixed sf.vhd 40M
for s in sd.vhdx sf.vhdx sd.vhd sf.vhd; do
	"$W" mutate 2 30 $s $s.model || fail "writes to $s"
done
"$F" disk create --parent sd.vhdx sc.vhdx && cp sd.vhdx.model sc.vhdx.model &&
	"$W" mutate 3 25 sc.vhdx sc.vhdx.model || fail "VHDX child"
"$F" disk create --parent sd.vhd sc.vhd && cp sd.vhd.model sc.vhd.model &&
	"$W" mutate 4 25 sc.vhd sc.vhd.model || fail "VHD child"

# 1. Flattening into every format and type.
for s in src.raw sd.vhdx sf.vhdx sd.vhd sf.vhd sc.vhdx sc.vhd; do
	model=$s.model
	[ $s = src.raw ] && model=src.model
	for out in "raw -" "vhdx dynamic" "vhdx fixed" "vhd dynamic" "vhd fixed"; do
		set -- $out
		rm -f dst
		opt="-O $1"
		[ "$2" = - ] || opt="$opt --type $2"
		# shellcheck disable=SC2086
		"$F" disk convert $opt $s dst || fail "convert $s to $out"
		reads_as dst $model "$s as $out"
		case "$1 $2" in
		"vhdx dynamic"|"vhd dynamic")
			qf=vhdx
			[ $1 = vhd ] && qf=vpc
			qemu-img convert -f $qf -O raw dst q.raw || fail "qemu reads no $s as $out"
			cmp -s -n "$(stat -c %s $model)" q.raw $model ||
				fail "qemu reads $s as $out differently";;
		esac
	done
done

# 2. Sparse: a raw file with three islands stays three blocks' worth.
truncate -s 300M sparse.raw
for at in 3 100 250; do
	dd if=/dev/urandom of=sparse.raw bs=64K count=1 seek=$((at * 16)) \
		conv=notrunc status=none
done
for f in vhdx vhd; do
	rm -f sp
	"$F" disk convert -O $f sparse.raw sp || fail "convert sparse to $f"
	used=$(du -k sp | cut -f1)
	[ "$used" -le $((3 * 8 * 1024 + 2048)) ] || fail "a $f copy of sparse data uses $used KiB"
	reads_as sp sparse.raw "sparse as $f"
done

# 3. Keeping a chain: convert the base, then the child as a child of the
#    copy; the copied child holds only what differs, in every pairing.
for pair in "vhdx vhdx" "vhdx vhd" "vhd vhd" "vhd vhdx"; do
	set -- $pair
	rm -f nb nc
	"$F" disk convert -O $2 sd.$1 nb || fail "convert base $1 to $2"
	# A VHD child needs a VHD parent; a VHDX child takes either.
	childfmt=$2
	"$F" disk convert -O $childfmt --parent nb sc.$1 nc ||
		fail "convert child $1 keeping the chain, to $2"
	"$F" disk info nc | grep -q "^type: *differencing" || fail "the copied child is not a child"
	reads_as nc sc.$1.model "child $1 kept as a $2 chain"
	reads_as nb sd.$1.model "base $1 as $2"
	cu=$(du -k nc | cut -f1)
	ou=$(du -k sc.$1 | cut -f1)
	[ "$cu" -le $((ou + 4096)) ] || fail "the kept child uses $cu KiB, its source $ou"
	if [ $2 = vhd ]; then
		7zz e -tvhd -so nc > z.raw 2>/dev/null || fail "7-Zip refuses the kept VHD chain"
		cmp -s -n "$(stat -c %s sc.$1.model)" z.raw sc.$1.model ||
			fail "7-Zip reads the kept VHD chain differently"
	fi
done

# 4. Refusals.
"$F" disk convert -O raw --parent nb sc.vhdx x 2>/dev/null && fail "raw with a parent"
"$F" disk convert --type differencing sc.vhdx x.vhdx 2>/dev/null && fail "differencing without a parent"
[ -e x ] || [ -e x.vhdx ] && fail "a refused convert left a file"
pass
