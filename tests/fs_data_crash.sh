#!/bin/sh
# Durability of a disk's "data" file: writes acknowledged under O_DSYNC,
# O_SYNC, RWF_DSYNC, or before an fsync() that returned, survive a kill -9
# of the service at a random moment, byte for byte.  Each round also
# mounts again at once after the kill (a killed service's mount is stale
# a moment later, and must be cleared, not refused).
. "$SOURCE_ROOT/tests/lib.sh"
need timeout
scratch
mount_service
ROUNDS=${DATA_CRASH_ROUNDS:-13}	# per mode: 52 kills in all

mkdir "$MNT/disks/d" || fail "mkdir disks/d"
echo 1G > "$MNT/disks/d/size" || fail "size"

seed=$$
for mode in dsync sync rwf fsync; do
	r=0
	while [ $r -lt "$ROUNDS" ]; do
		seed=$((seed + 1))
		"$DURABLE_WRITER" write "$MNT/disks/d/data" $mode $seed "$SCRATCH/log" \
			>"$SCRATCH/writer.out" 2>&1 &
		wpid=$!
		# 20 to 400 ms of writes, then the service dies in the middle of them.
		sleep "0.$(printf '%03d' $((20 + seed * 7919 % 380)))"
		kill -9 "$(service_pid)"
		wait $wpid
		n=$(wc -l <"$SCRATCH/log")
		"$FSVISOR" mount "$MNT" --state "$STATE" ||
			fail "mount right after kill -9 (round $r, $mode) failed"
		out=$("$DURABLE_WRITER" verify "$MNT/disks/d/data" $seed "$SCRATCH/log" 2>&1) ||
			fail "$mode round $r: $out ($n writes acknowledged)"
		total=$((total + n))
		r=$((r + 1))
	done
	echo "$mode: $ROUNDS kills, every acknowledged write there"
done
echo "$total acknowledged writes checked"
pass
