#!/bin/sh
# Benchmark: saved states, for 128 MiB and 1 GiB test guests with about a
# quarter of their memory written ("fill=25": every 4 KiB page of it a
# different value).
#
#   bench/snapshot.sh [BUILD_DIR]     RUNS=10 restores per size; SAVES=5 saves
#                                     per size; SIZES="128M 1G";
#                                     SNAPSHOT_DIR: where states go ($TMPDIR)
#
# Measured, in one run:
#   save: `save DIR` on the worker's socket (pause, every vCPU and device,
#     RAM, fsync of every file, the manifest; the VM then resumes; median of
#     SAVES, the command's whole wall time), against dd writing
#     the same number of bytes (the memory file's allocated size) to the
#     same file system with conv=fsync: the rate ratio (target >= 0.8x).
#   restore: exec of `fsvisor vm run --restore` to the first KVM_RUN
#     (median of RUNS), at 128 MiB and at 1 GiB (target < 10 ms, and the
#     1 GiB figure within 1.5x of the 128 MiB one), next to a fresh boot's
#     exec to first KVM_RUN in the same run, and Firecracker's published
#     P50 (2.8 ms at 128 MiB, 3.3 ms at 1 GiB, bare metal).
# Filling a guest's memory takes a while on hosts whose KVM emulates
# instructions (about 80 s for 256 MiB): the fill is not measured.
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
F=$(pwd)/$build/cmd/fsvisor
G=$(pwd)/$build/guest/testguest/testguest.elf
runs=${RUNS:-10}
[ -x "$F" ] && [ -f "$G" ] || { echo "bench: build first"; exit 2; }

tmp=$(mktemp -d "${SNAPSHOT_DIR:-${TMPDIR:-/tmp}}/fsvisor-snapshot.XXXXXX")
cleanup()
{
	for p in "$tmp"/*.pid; do
		[ -f "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp"

median()
{
	sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# wait_text TEXT FILE SECONDS
wait_text()
{
	w=0
	while ! grep -q -- "$1" "$2" 2>/dev/null; do
		w=$((w + 1))
		[ $w -lt $(($3 * 100)) ] || { echo "bench: no '$1' in $2: $(tail -3 "$2")"; exit 1; }
		sleep 0.01
	done
}

# first_run_us CMD...: exec to first KVM_RUN of one worker, in µs; the
# worker is stopped afterwards.
first_run_us()
{
	rm -f run.sock run.err
	t0=$(date +%s%N)
	"$@" --control run.sock --no-console --report-startup </dev/null >/dev/null 2>run.err &
	echo $! > run.pid
	wait_text first_kvm_run_realtime_ns run.err 30
	rt=$(sed -n 's/.*first_kvm_run_realtime_ns=\([0-9]*\).*/\1/p' run.err)
	kill -9 "$(cat run.pid)" 2>/dev/null
	wait "$(cat run.pid)" 2>/dev/null || true
	rm -f run.pid
	echo $(((rt - t0) / 1000))
}

printf '%-10s %10s %12s %12s %9s   %-14s %12s %12s %9s\n' "guest" "written" "save" "dd" "ratio" \
	"" "restore" "boot" "1G/128M"
for size in ${SIZES:-128M 1G}; do
	"$F" vm run --kernel "$G" --mem $size --cmdline "fill=25 idle" --control fill.sock \
		--no-console --console-log fill.txt </dev/null >fill.log 2>&1 &
	echo $! > fill.pid
	wait_text "fill:" fill.txt 600
	# SAVES saves of the running VM (it resumes after each, as for a
	# checkpoint), each followed by dd of as many bytes; medians.
	: > save.$size
	: > dd.$size
	k=0
	while [ $k -lt "${SAVES:-5}" ]; do
		k=$((k + 1))
		rm -rf "state-$size"
		sync
		t0=$(date +%s%N)
		"$F" vm ctl fill.sock save "$tmp/state-$size" > save.json
		t1=$(date +%s%N)
		echo $(((t1 - t0) / 1000)) >> save.$size
		bytes=$(($(stat -c %b "state-$size/memory") * $(stat -c %B "state-$size/memory")))
		mib=$((bytes >> 20))
		sync
		t0=$(date +%s%N)
		dd if=/dev/zero of=dd.out bs=1M count=$mib conv=fsync status=none
		t1=$(date +%s%N)
		echo $(((t1 - t0) / 1000)) >> dd.$size
		rm -f dd.out
	done
	"$F" vm ctl fill.sock stop >/dev/null 2>&1 || true
	wait "$(cat fill.pid)" 2>/dev/null || true
	rm -f fill.pid fill.txt
	save_us=$(median < save.$size)
	dd_us=$(median < dd.$size)
	i=0
	: > restore.$size
	: > boot.$size
	while [ $i -lt "$runs" ]; do
		i=$((i + 1))
		first_run_us "$F" vm run --restore "$tmp/state-$size" >> restore.$size
		first_run_us "$F" vm run --kernel "$G" --mem $size --cmdline idle >> boot.$size
	done
	restore_us=$(median < restore.$size)
	boot_us=$(median < boot.$size)
	eval "restore_$size=$restore_us"
	printf '%-10s %7s MiB %9.1f ms %9.1f ms %8.2fx   %-14s %9.2f ms %9.2f ms\n' "$size" "$mib" \
		"$(awk "BEGIN { print $save_us / 1000 }")" "$(awk "BEGIN { print $dd_us / 1000 }")" \
		"$(awk "BEGIN { print $dd_us / $save_us }")" "(median of $runs)" \
		"$(awk "BEGIN { print $restore_us / 1000 }")" "$(awk "BEGIN { print $boot_us / 1000 }")"
	rm -rf "state-$size"
done
echo
echo "save ratio: dd's time over save's for the same bytes (>= 0.8x: save at least 80% of dd's rate)"
[ -n "${restore_1G:-}" ] && [ -n "${restore_128M:-}" ] &&
	printf 'restore at 1G over restore at 128M: %.2fx (target <= 1.5x)\n' \
		"$(awk "BEGIN { print $restore_1G / $restore_128M }")"
echo "Firecracker (published, bare metal): restore P50 2.8 ms at 128 MiB, 3.3 ms at 1 GiB"
