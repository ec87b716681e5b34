#!/bin/sh
# Crash safety: SIGKILL a writer at random moments during allocating
# writes.  The image must always open, pass our check and qemu-img check,
# and hold every write that a completed flush covered.  Where the kill
# left a dirty log, our replay and qemu's must agree.  Every fourth trial
# writes to a differencing child of an empty parent instead (its sector
# bitmaps go through the log too; qemu reads no VHDX children).
#
# TRIALS (default 200) sets the number of kills.
. "$SOURCE_ROOT/tests/lib.sh"
need qemu-img cmp
scratch
F=$FSVISOR
W=$VDISK_WRITER
trials=${TRIALS:-200}
dirty=0 compared=0

i=0
while [ $i -lt "$trials" ]; do
	i=$((i + 1))
	seed=$((i * 7 + 3))
	rm -f c.vhdx p.vhdx q.vhdx c.out a.raw b.raw
	child=$((i % 4 == 0))
	if [ $child = 1 ]; then
		"$F" disk create --block-size 1M p.vhdx 512M || fail "create"
		"$F" disk create --block-size 1M --parent p.vhdx c.vhdx || fail "create a child"
	else
		"$F" disk create --block-size 1M c.vhdx 512M || fail "create"
	fi
	"$W" crash "$seed" c.vhdx > c.out &
	pid=$!
	# 0-49 ms: early kills hit the first commits, later ones the steady state.
	sleep "0.0$(( (i * 37) % 50 / 10 ))$(( (i * 37) % 10 ))"
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	durable=$(sed -n 's/^durable //p' c.out | tail -1)
	durable=${durable:-0}
	if "$F" disk info c.vhdx | grep -q "log:.*dirty"; then
		dirty=$((dirty + 1))
		cp --sparse=always c.vhdx q.vhdx
	fi
	"$W" verify --read-only "$seed" "$durable" c.vhdx ||
		fail "trial $i: read-only open lost flushed data (seed $seed, durable $durable)"
	"$W" verify "$seed" "$durable" c.vhdx ||
		fail "trial $i: lost flushed data after replay (seed $seed, durable $durable)"
	out=$("$F" disk check c.vhdx) || fail "trial $i: our check: $out"
	[ $child = 1 ] && continue
	qemu-img check -q c.vhdx || fail "trial $i: qemu-img check"
	if [ -f q.vhdx ] && [ $((dirty % 5)) -eq 1 ]; then
		# qemu replays the same dirty log on a read-write open.
		qemu-img check -q -r all q.vhdx >/dev/null 2>&1
		qemu-img check -q q.vhdx || fail "trial $i: qemu cannot replay our log"
		qemu-img convert -O raw c.vhdx a.raw
		qemu-img convert -O raw q.vhdx b.raw
		cmp -s a.raw b.raw || fail "trial $i: qemu's replay differs from ours"
		compared=$((compared + 1))
	fi
done
echo "$trials kills, $dirty left a dirty log, $compared replays compared with qemu"
[ "$dirty" -gt $((trials / 4)) ] || fail "too few kills left a dirty log ($dirty)"
pass
