#!/bin/sh
# Benchmark: the virtio-vsock device model's host-side cost.  A harness
# (bench/vsock_bench.c) plays the guest's driver through rings in guest
# memory while a host thread uses the device's Unix sockets: a stream
# to the guest (DIR/vsock, CONNECT) and one from it (DIR/vsock_PORT),
# 64 KiB at a time, against the same stream through a Unix socket pair.
# Target: at least 80% of the pair's rate each way.
#
#   bench/vsock.sh [BUILD_DIR]      BENCH_BYTES (1G), BENCH_RUNS (5), BENCH_ROUNDS (3)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
B=$(pwd)/$build/bench/vsock_bench
bytes=${BENCH_BYTES:-1G}
runs=${BENCH_RUNS:-5}
rounds=${BENCH_ROUNDS:-3}
[ -x "$B" ] || { echo "bench: build first ($B missing)"; exit 2; }
n=$(numfmt --from=iec "$bytes")

echo "virtio-vsock device model vs a Unix socket pair: $bytes each way, 64 KiB writes, medians of $runs runs"
echo
printf '%-6s %14s %16s %12s %9s %11s\n' round "to guest MiB/s" "from guest MiB/s" "pair MiB/s" "to ratio" "from ratio"
r=1
while [ $r -le "$rounds" ]; do
	out=$("$B" --bytes "$n" --runs "$runs")
	get() { echo "$out" | sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
	printf '%-6s %14s %16s %12s %9s %11s\n' "$r" "$(get to_guest_mibs)" "$(get from_guest_mibs)" \
		"$(get pair_mibs)" "$(get to_ratio)" "$(get from_ratio)"
	r=$((r + 1))
done
