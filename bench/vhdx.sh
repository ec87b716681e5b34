#!/bin/sh
# Benchmark: our VHDX I/O against qemu-img bench and a raw file, same run,
# same files, same parameters.  Prints each ratio.
#
#   bench/vhdx.sh [BUILD_DIR]      (default: build)
#
# Env: BENCH_DIR (scratch space, default /var/tmp/fsvisor-bench),
#      BENCH_SIZE (disk size, default 4G), BENCH_COUNT (4K requests, 200000)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
F=$(pwd)/$build/cmd/fsvisor
dir=${BENCH_DIR:-/var/tmp/fsvisor-bench}
size=${BENCH_SIZE:-4G}
count=${BENCH_COUNT:-200000}
command -v qemu-img >/dev/null || { echo "bench: qemu-img is missing (scripts/bootstrap)"; exit 2; }
[ -x "$F" ] || { echo "bench: build first ($F missing)"; exit 2; }

rm -rf "$dir"
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT
bytes=$(numfmt --from=iec "$size")
mib=$((bytes / 1048576))

aio=io_uring
truncate -s 1M "$dir/probe.raw"
qemu-img bench -c 1 -i io_uring -t none -f raw "$dir/probe.raw" >/dev/null 2>&1 || aio=native
rm -f "$dir/probe.raw"

# Rate in requests per second from our tool and from qemu-img bench.
ours()
{
	"$F" disk bench "$@" | sed -n 's/^iops=\([0-9.]*\).*/\1/p'
}

qemu()
{
	# "Run completed in 1.234 seconds." with -c requests
	n=$1
	shift
	t=$(qemu-img bench -q -c "$n" -i "$aio" -t none "$@" 2>&1 |
	    sed -n 's/.*completed in \([0-9.]*\) seconds.*/\1/p')
	echo "$n $t" | awk '{ printf "%.0f\n", $1 / $2 }'
}

median3()
{
	printf '%s\n' "$@" | sort -n | sed -n 2p
}

# pair "label" "ours-cmd" "peer-cmd" [setup-cmd]: run ours and the peer
# alternately three times (setup before each run) and print the medians.
pair()
{
	label=$1 ocmd=$2 pcmd=$3 setup=${4:-true}
	o1= o2= o3= p1= p2= p3=
	for i in 1 2 3; do
		eval "$setup"
		o=$(eval "$ocmd")
		eval "$setup"
		p=$(eval "$pcmd")
		eval "o$i=\$o p$i=\$p"
	done
	a=$(median3 "$o1" "$o2" "$o3")
	b=$(median3 "$p1" "$p2" "$p3")
	row "$label" "$a" "$b" "$(ratio "$a" "$b")"
}

ratio()
{
	echo "$1 $2" | awk '{ printf "%.2f", $1 / $2 }'
}

row()
{
	printf '%-52s %10s %10s   %s\n' "$1" "$2" "$3" "$4"
}

echo "fsvisor VHDX benchmark: disk $size, 4K count $count, qemu aio=$aio, $(nproc) CPUs"
echo "filesystem: $(df -T "$dir" | awk 'NR==2 {print $2}')"
echo
row "test" "ours" "peer" "ratio (ours/peer)"

# A fully allocated dynamic disk (ours) and a raw file with the same data.
"$F" disk create --block-size 1M "$dir/full.vhdx" "$size"
"$F" disk bench --rw write --bs 1M --qd 32 --direct --count "$mib" "$dir/full.vhdx" >/dev/null
qemu-img convert -O raw "$dir/full.vhdx" "$dir/full.raw"

# 1. 4K sequential-with-step I/O, QD 32, O_DIRECT: ours vs qemu-img bench.
pair "4K read, QD32, direct (IOPS) vs qemu-img" \
	'ours --rw read --bs 4K --qd 32 --direct --count $count $dir/full.vhdx' \
	'qemu $count -d 32 -s 4K -f vhdx $dir/full.vhdx'
pair "4K write, QD32, direct (IOPS) vs qemu-img" \
	'ours --rw write --bs 4K --qd 32 --direct --count $count $dir/full.vhdx' \
	'qemu $count -d 32 -s 4K -w -f vhdx $dir/full.vhdx'

# 2. Random 4K on the VHDX against the raw file, with our tool.
pair "4K randread, QD32, direct (IOPS) vs raw file" \
	'ours --rw randread --bs 4K --qd 32 --direct --count $count $dir/full.vhdx' \
	'ours --rw randread --bs 4K --qd 32 --direct --count $count $dir/full.raw'
pair "4K randwrite, QD32, direct (IOPS) vs raw file" \
	'ours --rw randwrite --bs 4K --qd 32 --direct --count $count $dir/full.vhdx' \
	'ours --rw randwrite --bs 4K --qd 32 --direct --count $count $dir/full.raw'
rm -f "$dir/full.vhdx" "$dir/full.raw"

# 3. Allocating 1M sequential writes (MiB/s) into fresh dynamic disks,
#    with 1 MiB blocks and with the default block size for this size.
for bs in 1M default; do
	opt=""
	qopt="subformat=dynamic"
	if [ "$bs" != default ]; then
		opt="--block-size $bs"
		qopt="$qopt,block_size=$bs"
	fi
	fresh="rm -f $dir/ours.vhdx $dir/qemu.vhdx $dir/fresh.raw;
		$F disk create $opt $dir/ours.vhdx $size;
		qemu-img create -q -f vhdx -o $qopt $dir/qemu.vhdx $size;
		truncate -s $size $dir/fresh.raw"
	pair "1M alloc write, $bs blocks vs qemu-img" \
		'ours --rw write --bs 1M --qd 32 --direct --count $mib $dir/ours.vhdx' \
		'qemu $mib -d 32 -s 1M -w -f vhdx $dir/qemu.vhdx' "$fresh"
	pair "1M alloc write, $bs blocks vs raw file" \
		'ours --rw write --bs 1M --qd 32 --direct --count $mib $dir/ours.vhdx' \
		'ours --rw write --bs 1M --qd 32 --direct --count $mib $dir/fresh.raw' "$fresh"
done
