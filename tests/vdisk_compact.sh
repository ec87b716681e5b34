#!/bin/sh
# compact: blocks of zeros (written or discarded) are freed and the file
# shrinks, the contents unchanged, for dynamic and differencing VHDX and
# VHD; fixed disks are refused; a compact killed at random moments
# leaves a disk that reads the same, checks clean, and compacts again.
. "$SOURCE_ROOT/tests/lib.sh"
need qemu-img 7zz cmp
scratch
F=$FSVISOR
W=$VDISK_WRITER

reads()
{
	rm -f r.raw
	"$F" disk convert -O raw "$1" r.raw && cmp -s r.raw "$2"
}

# prepare NAME PARENT: a disk with data, 60 MiB of written zeros and a
# discarded stretch, and its model.
prepare()
{
	if [ "$2" = - ]; then
		"$F" disk create --block-size 2M "$1" 200M || fail "create $1"
		rm -f "$1.raw"
	else
		"$F" disk create --parent "$2" "$1" || fail "create $1"
		cp "$2.raw" "$1.raw"
	fi
	"$W" mutate 1 60 "$1" "$1.raw" || fail "writes to $1"
	"$W" fill "$1" $((20 << 20)) $((60 << 20)) 0 || fail "zeros into $1"
	dd if=/dev/zero bs=1M count=60 seek=20 conv=notrunc of="$1.raw" status=none
}

for f in vhdx vhd; do
	rm -f base.$f child.$f base.$f.raw child.$f.raw
	prepare base.$f -
	prepare child.$f base.$f
	for disk in base.$f child.$f; do
		before=$(stat -c %s $disk)
		"$F" disk compact $disk || fail "compact $disk"
		after=$(stat -c %s $disk)
		reads $disk $disk.raw || fail "$disk reads differently after compact"
		out=$("$F" disk check $disk) || fail "check of $disk after compact: $out"
		echo "$disk: $before -> $after bytes"
		case $disk in
		child.vhd) [ "$after" -le "$before" ] || fail "compact grew $disk";;
		*) [ "$after" -lt $((before - 40 * 1048576)) ] ||
			fail "compact of $disk: $before -> $after bytes";;
		esac
	done
	if [ $f = vhdx ]; then
		qemu-img check -q base.vhdx || fail "qemu-img check after compact"
		7zz e -tvhdx -so child.vhdx > z.raw 2>/dev/null && cmp -s z.raw child.vhdx.raw ||
			fail "7-Zip reads the compacted VHDX chain differently"
	else
		qemu-img convert -f vpc -O raw base.vhd q.raw && cmp -s q.raw base.vhd.raw ||
			fail "qemu reads the compacted VHD differently"
		7zz e -tvhd -so child.vhd > z.raw 2>/dev/null && cmp -s z.raw child.vhd.raw ||
			fail "7-Zip reads the compacted VHD chain differently"
	fi
done

# Refusals: fixed and raw disks.
"$F" disk create --type fixed fx.vhdx 10M
out=$("$F" disk compact fx.vhdx 2>&1) && fail "compacted a fixed disk"
echo "$out" | grep -q "only dynamic and differencing" || fail "fixed: $out"

# Kills at random moments: the disk reads the same and compacts again.
for f in vhdx vhd; do
	rm -f k.$f k.$f.raw
	prepare k.$f -
	cp --sparse=always k.$f keep.$f
	t0=$(date +%s%N)
	"$F" disk compact k.$f || fail "timed compact"
	ms=$(( ($(date +%s%N) - t0) / 1000000 + 1 ))
	i=1
	while [ $i -le 10 ]; do
		cp --sparse=always keep.$f k.$f
		delay=$(( (i * 7919) % (ms + 1) ))
		"$F" disk compact k.$f >/dev/null 2>&1 &
		pid=$!
		sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
		kill -9 $pid 2>/dev/null
		wait $pid 2>/dev/null
		reads k.$f k.$f.raw || fail "$f compact killed after $delay ms: other data"
		"$F" disk compact k.$f || fail "$f compact after a kill at $delay ms"
		reads k.$f k.$f.raw || fail "$f compact after a kill at $delay ms: other data"
		out=$("$F" disk check k.$f) || fail "$f check after a killed compact: $out"
		i=$((i + 1))
	done
done
pass
