#!/bin/sh
# Benchmark: the FUSE tree against tmpfs, in the same run.
#
#   bench/fsapi.sh [BUILD_DIR]        SECONDS=3 RUNS=3 VMS=1000 by default
#
# - open+read+close of vms/x/state, and stat of it, against a file with
#   the same content on tmpfs (/dev/shm): operations per second, medians.
# - ls -l vms with 1000 VMs defined: the first listing after they were
#   made (nothing cached) and the median of repeated ones, against ls -l
#   of 1000 directories on tmpfs.
# Targets (issue 6): open+read+close at least 30% of tmpfs's rate; the
# 1000-VM listing under 100 ms.
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
F=$(pwd)/$build/cmd/fsvisor
B=$(pwd)/$build/bench/fsapi_bench
secs=${SECONDS_EACH:-3}
runs=${RUNS:-3}
nvms=${VMS:-1000}
[ -x "$F" ] && [ -x "$B" ] || { echo "bench: build first"; exit 2; }

tmp=$(mktemp -d)
shm=$(mktemp -d /dev/shm/fsvisor-bench.XXXXXX)
mnt=$tmp/mnt
cleanup()
{
	cd /
	umount "$mnt" 2>/dev/null || true
	rm -rf "$tmp" "$shm"
}
trap cleanup EXIT
"$F" mount "$mnt" --state "$tmp/state" --log-level warn
mkdir "$mnt/vms/x"
mkdir -p "$shm/vms/x"
cat "$mnt/vms/x/state" > "$shm/vms/x/state"

median()
{
	sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

rate()	# OP PATH: median ops/s of $runs runs
{
	i=0
	while [ $i -lt "$runs" ]; do
		"$B" "$1" "$2" "$secs" | cut -d' ' -f1
		i=$((i + 1))
	done | median
}

orc_fs=$(rate open-read-close "$mnt/vms/x/state")
orc_tmp=$(rate open-read-close "$shm/vms/x/state")
stat_fs=$(rate stat "$mnt/vms/x/state")
stat_tmp=$(rate stat "$shm/vms/x/state")

ms()	# command...: wall time in ms
{
	t0=$(date +%s%N)
	"$@" > /dev/null
	t1=$(date +%s%N)
	echo $(( (t1 - t0) / 1000 ))
}

i=0
while [ $i -lt "$nvms" ]; do
	n=$(printf 'vm%04d' $i)
	echo "$mnt/vms/$n"
	echo "$shm/vms/$n" >&2
	i=$((i + 1))
done 2>"$tmp/shm.list" > "$tmp/fs.list"
t0=$(date +%s%N)
xargs mkdir < "$tmp/fs.list"
t1=$(date +%s%N)
mkdir_us=$(( (t1 - t0) / 1000 ))
xargs mkdir < "$tmp/shm.list"
[ "$(ls "$mnt/vms" | wc -l)" -eq $((nvms + 1)) ] || { echo "bench: mkdir of the VMs failed"; exit 1; }

# The first listing: remount, so that nothing is cached.
cd /
umount "$mnt"
sleep 0.5
"$F" mount "$mnt" --state "$tmp/state" --log-level warn
first_us=$(ms ls -l "$mnt/vms")
i=0
while [ $i -lt 5 ]; do
	ms ls -l "$mnt/vms"
	i=$((i + 1))
done | median > "$tmp/ls"
ls_us=$(cat "$tmp/ls")
i=0
while [ $i -lt 5 ]; do
	ms ls -l "$shm/vms"
	i=$((i + 1))
done | median > "$tmp/lstmp"
lstmp_us=$(cat "$tmp/lstmp")

pct()	# A B: A as a percentage of B
{
	awk "BEGIN { printf \"%.1f%%\", 100 * $1 / $2 }"
}
msf()
{
	awk "BEGIN { printf \"%.1f ms\", $1 / 1000 }"
}

echo "fsvisor mount vs tmpfs; medians of $runs runs of ${secs}s; $(nproc) CPUs"
echo
printf '%-40s %14s %14s %10s %10s\n' "operation" "fsvisor" "tmpfs" "ratio" "target"
printf '%-40s %14s %14s %10s %10s\n' "open+read+close vms/x/state (ops/s)" "$orc_fs" "$orc_tmp" \
	"$(pct "$orc_fs" "$orc_tmp")" ">= 30%"
printf '%-40s %14s %14s %10s %10s\n' "stat vms/x/state (ops/s)" "$stat_fs" "$stat_tmp" \
	"$(pct "$stat_fs" "$stat_tmp")" "-"
printf '%-40s %14s %14s %10s %10s\n' "ls -l vms, $nvms VMs, first" "$(msf "$first_us")" "-" "-" "< 100 ms"
printf '%-40s %14s %14s %10s %10s\n' "ls -l vms, $nvms VMs, again (median)" "$(msf "$ls_us")" \
	"$(msf "$lstmp_us")" "-" "< 100 ms"
printf '%-40s %14s %14s %10s %10s\n' "mkdir of $nvms VMs" "$(msf "$mkdir_us")" "-" "-" "-"
