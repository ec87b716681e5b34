#!/bin/sh
# Benchmark: how fast the VM worker starts and how much memory it costs,
# for a 1 vCPU / 128 MiB VM running the test guest (which boots and powers
# off), next to Firecracker's published figures.
#
#   bench/vmm.sh [BUILD_DIR]      RUNS=20 by default
#
# Measured: from exec of `fsvisor vm run` to the first KVM_RUN (wall time,
# and the process's CPU time by then), and the worker's resident memory
# minus the guest RAM it touched (guest RAM is a memfd: RssShmem).
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
F=$(pwd)/$build/cmd/fsvisor
G=$(pwd)/$build/guest/testguest/testguest.elf
runs=${RUNS:-20}
[ -x "$F" ] && [ -f "$G" ] || { echo "bench: build first"; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
i=0
while [ $i -lt "$runs" ]; do
	i=$((i + 1))
	t0=$(date +%s%N)
	"$F" vm run --kernel "$G" --cmdline "tests=" --mem 128M --cpus 1 \
		--no-console --report-startup 2>"$tmp/err" >/dev/null
	sed -n 's/.*first_kvm_run_ms=\([0-9.]*\) cpu_ms=\([0-9.]*\) first_kvm_run_realtime_ns=\([0-9]*\).*/\1 \2 \3/p' \
		"$tmp/err" | while read -r inproc cpu rt; do
		echo "$(( (rt - t0) / 1000 )) $inproc $cpu" >> "$tmp/start"
	done
	sed -n 's/.*overhead_kib=\([0-9-]*\).*/\1/p' "$tmp/err" >> "$tmp/mem"
done

median()
{
	sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

exec_us=$(cut -d' ' -f1 "$tmp/start" | median)
inproc_ms=$(cut -d' ' -f2 "$tmp/start" | median)
cpu_ms=$(cut -d' ' -f3 "$tmp/start" | median)
mem_kib=$(median < "$tmp/mem")

echo "fsvisor VM worker start-up: 1 vCPU, 128 MiB, test guest; median of $runs runs"
echo
printf '%-44s %12s %26s %10s\n' "metric" "fsvisor" "Firecracker (published)" "target"
printf '%-44s %12s %26s %10s\n' "exec to first KVM_RUN, wall" \
	"$(awk "BEGIN { printf \"%.2f ms\", $exec_us / 1000 }")" "-" "< 10 ms"
printf '%-44s %12s %26s %10s\n' "main() to first KVM_RUN, wall" "$inproc_ms ms" "-" "-"
printf '%-44s %12s %26s %10s\n' "CPU time to first KVM_RUN" "$cpu_ms ms" \
	"< 8 CPU-ms to API ready" "< 10 ms"
printf '%-44s %12s %26s %10s\n' "resident memory minus guest RAM" \
	"$(awk "BEGIN { printf \"%.2f MiB\", $mem_kib / 1024 }")" "<= 5 MiB overhead" "< 5 MiB"
