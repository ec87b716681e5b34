#!/bin/sh
# Benchmark: the virtio-blk device model's host-side cost.  A harness
# (bench/blk_bench.c) plays the guest driver through rings in guest
# memory, 4 KiB random reads and writes at depth 32 on a fully allocated
# dynamic VHDX, against the same pattern submitted straight to the disk
# library.  Target: at least 80% of the direct rate.
#
#   bench/blk.sh [BUILD_DIR]      BENCH_DIR, BENCH_SIZE (1G), BENCH_COUNT (200000)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
F=$(pwd)/$build/cmd/fsvisor
B=$(pwd)/$build/bench/blk_bench
dir=${BENCH_DIR:-/var/tmp/fsvisor-bench}
size=${BENCH_SIZE:-1G}
count=${BENCH_COUNT:-200000}
[ -x "$B" ] || { echo "bench: build first ($B missing)"; exit 2; }
rm -rf "$dir"
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT
mib=$(( $(numfmt --from=iec "$size") / 1048576 ))
"$F" disk create --block-size 1M "$dir/disk.vhdx" "$size"
"$F" disk bench --rw write --bs 1M --qd 32 --count "$mib" "$dir/disk.vhdx" >/dev/null

echo "virtio-blk device model vs the disk library: 4K, QD 32, $size dynamic VHDX, $count requests, medians of 3"
echo
printf '%-12s %14s %14s %8s\n' "pattern" "virtio (IOPS)" "direct (IOPS)" "ratio"
for rw in randread randwrite; do
	out=$("$B" --rw $rw --qd 32 --count "$count" "$dir/disk.vhdx")
	v=$(echo "$out" | sed -n 's/.*virtio_iops=\([0-9]*\).*/\1/p')
	d=$(echo "$out" | sed -n 's/.*direct_iops=\([0-9]*\).*/\1/p')
	r=$(echo "$out" | sed -n 's/.*ratio=\([0-9.]*\).*/\1/p')
	printf '%-12s %14s %14s %8s\n' "$rw" "$v" "$d" "$r"
done
