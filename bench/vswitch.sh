#!/bin/sh
# Benchmark: frames per second from one port to another through our switch
# (`fsvisor switch run`, private, two socketpair ports) against a Linux
# bridge joining two veth pairs in a network namespace (AF_PACKET on the
# outer ends).  One program, bench/vswitch_bench.c, sends and receives in
# both cases; runs alternate between the two, and medians are printed.
# Target: at least the bridge's delivered rate at 64 bytes.
#
#   bench/vswitch.sh [BUILD_DIR]     BENCH_COUNT (500000), BENCH_REPS (5)
# Needs root (a network namespace, a bridge, veth pairs).
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
F=$(pwd)/$build/cmd/fsvisor
B=$(pwd)/$build/bench/vswitch_bench
count=${BENCH_COUNT:-500000}
reps=${BENCH_REPS:-5}
[ -x "$B" ] || { echo "bench: build first ($B missing)"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench: needs root"; exit 2; }
NS=fsvWbench$$
dir=$(mktemp -d /tmp/fsvW-bench.XXXXXX)
sw_pid=
cleanup()
{
	[ -n "$sw_pid" ] && kill "$sw_pid" 2>/dev/null && wait "$sw_pid" 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

"$F" switch run --name bench --control "$dir/sw.sock" 2>"$dir/sw.log" &
sw_pid=$!
i=0
until "$F" switch ctl "$dir/sw.sock" status >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 50 ] || { echo "bench: the switch did not start"; cat "$dir/sw.log"; exit 1; }
	sleep 0.1
done

# The interfaces live in their own namespace, so their names cannot clash.
ip netns add "$NS"
ip -n "$NS" link add br0 type bridge
ip -n "$NS" link add a0 type veth peer name a1
ip -n "$NS" link add b0 type veth peer name b1
ip -n "$NS" link set a1 master br0
ip -n "$NS" link set b1 master br0
for i in lo br0 a0 a1 b0 b1; do
	ip -n "$NS" link set "$i" up
done

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "one sender, one receiver: $count frames per run, medians of $reps runs (frames/s)"
echo
printf '%-6s %22s %22s %7s\n' "size" "switch: delivered/sent" "bridge: delivered/sent" "ratio"
for size in 64 1500; do
	: >"$dir/ours" ; : >"$dir/ours_sent"; : >"$dir/br"; : >"$dir/br_sent"
	r=0
	while [ $r -lt "$reps" ]; do
		out=$("$B" switch --control "$dir/sw.sock" --count "$count" --size "$size")
		echo "$out" | field delivered_fps >>"$dir/ours"
		echo "$out" | field send_fps >>"$dir/ours_sent"
		out=$(ip netns exec "$NS" "$B" packet --tx a0 --rx b0 --count "$count" --size "$size")
		echo "$out" | field delivered_fps >>"$dir/br"
		echo "$out" | field send_fps >>"$dir/br_sent"
		r=$((r + 1))
	done
	o=$(median <"$dir/ours"); os=$(median <"$dir/ours_sent")
	b=$(median <"$dir/br"); bs=$(median <"$dir/br_sent")
	printf '%-6s %22s %22s %7s\n' "$size" "$o / $os" "$b / $bs" \
		"$(awk -v o="$o" -v b="$b" 'BEGIN { printf "%.2f", o / b }')"
done
