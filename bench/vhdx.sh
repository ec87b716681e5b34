#!/bin/sh
# Benchmark: our VHDX and VHD I/O against qemu-img bench, a raw file, a flat
# disk (for chains) and dd (for merges), same run,
# same files, same parameters.  Prints each ratio.
#
#   bench/vhdx.sh [BUILD_DIR]      (default: build)
#
# Env: BENCH_DIR (scratch space, default /var/tmp/fsvisor-bench),
#      BENCH_SIZE (disk size, default 4G), BENCH_COUNT (4K requests, 200000),
#      BENCH_CHAIN_SIZE (the depth-8 chain's size, 1G), BENCH_MERGE_MIB
#      (1024), BENCH_ONLY (the sections to run, say "4 5 6"; default all)
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

# want N: section N is to run.
want()
{
	case " ${BENCH_ONLY:-1 2 3 4 5 6} " in
	*" $1 "*) return 0;;
	esac
	return 1
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

if want 1 || want 2; then
# A fully allocated dynamic disk (ours) and a raw file with the same data.
"$F" disk create --block-size 1M "$dir/full.vhdx" "$size"
"$F" disk bench --rw write --bs 1M --qd 32 --direct --count "$mib" "$dir/full.vhdx" >/dev/null
qemu-img convert -O raw "$dir/full.vhdx" "$dir/full.raw"

# 1. 4K sequential-with-step I/O, QD 32, O_DIRECT: ours vs qemu-img bench.
want 1 && pair "4K read, QD32, direct (IOPS) vs qemu-img" \
	'ours --rw read --bs 4K --qd 32 --direct --count $count $dir/full.vhdx' \
	'qemu $count -d 32 -s 4K -f vhdx $dir/full.vhdx'
want 1 && pair "4K write, QD32, direct (IOPS) vs qemu-img" \
	'ours --rw write --bs 4K --qd 32 --direct --count $count $dir/full.vhdx' \
	'qemu $count -d 32 -s 4K -w -f vhdx $dir/full.vhdx'

# 2. Random 4K on the VHDX against the raw file, with our tool.
want 2 && pair "4K randread, QD32, direct (IOPS) vs raw file" \
	'ours --rw randread --bs 4K --qd 32 --direct --count $count $dir/full.vhdx' \
	'ours --rw randread --bs 4K --qd 32 --direct --count $count $dir/full.raw'
want 2 && pair "4K randwrite, QD32, direct (IOPS) vs raw file" \
	'ours --rw randwrite --bs 4K --qd 32 --direct --count $count $dir/full.vhdx' \
	'ours --rw randwrite --bs 4K --qd 32 --direct --count $count $dir/full.raw'
rm -f "$dir/full.vhdx" "$dir/full.raw"
fi

# 3. Allocating 1M sequential writes (MiB/s) into fresh dynamic disks,
#    with 1 MiB blocks and with the default block size for this size.
for bs in 1M default; do
	want 3 || break
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

# 4. 4K random reads, QD32, O_DIRECT, through a chain of depth 8 whose
#    every level holds part of the data (each child 64 KiB stripes, one
#    in nine, over a full base), against a flat dynamic VHDX with the
#    same content (a convert of the chain).
if want 4; then
chain=${BENCH_CHAIN_SIZE:-1G}
cbytes=$(numfmt --from=iec "$chain")
cmib=$((cbytes / 1048576))
"$F" disk create --block-size 1M "$dir/l0.vhdx" "$chain"
"$F" disk bench --rw write --bs 1M --qd 32 --direct --count "$cmib" "$dir/l0.vhdx" >/dev/null
for i in 1 2 3 4 5 6 7 8; do
	"$F" disk create --parent "$dir/l$((i - 1)).vhdx" "$dir/l$i.vhdx"
	"$F" disk bench --rw write --bs 64K --step 576K --offset $((i * 64))K --qd 32 \
		--count $((cbytes / 589824)) --seed $i "$dir/l$i.vhdx" >/dev/null
done
"$F" disk convert "$dir/l8.vhdx" "$dir/flat.vhdx"
pair "4K randread, QD32, direct, chain of 8 vs flat VHDX" \
	'ours --rw randread --bs 4K --qd 32 --direct --count $count $dir/l8.vhdx' \
	'ours --rw randread --bs 4K --qd 32 --direct --count $count $dir/flat.vhdx'
rm -f "$dir"/l*.vhdx "$dir/flat.vhdx"
fi

# 5. Merging 1 GiB of changed data (a child written whole over a full
#    parent) against dd copying the same 1 GiB on the same file system,
#    both flushed, in MiB/s.
if want 5; then
merge_mib=${BENCH_MERGE_MIB:-1024}
merge_setup="rm -f $dir/mb.vhdx $dir/mc.vhdx $dir/copy.raw;
	$F disk create --block-size 8M $dir/mb.vhdx ${merge_mib}M;
	$F disk bench --rw write --bs 1M --qd 32 --count $merge_mib $dir/mb.vhdx >/dev/null;
	$F disk create --parent $dir/mb.vhdx $dir/mc.vhdx;
	$F disk bench --rw write --bs 1M --qd 32 --count $merge_mib --seed 7 $dir/mc.vhdx >/dev/null;
	sync"
timed_mib()
{
	t0=$(date +%s%N)
	eval "$1" >/dev/null 2>&1
	echo "$merge_mib $(( $(date +%s%N) - t0 ))" | awk '{ printf "%.0f\n", $1 / ($2 / 1e9) }'
}
pair "merge 1 GiB of changes (MiB/s) vs dd of 1 GiB" \
	'timed_mib "$F disk merge $dir/mc.vhdx"' \
	'timed_mib "dd if=$dir/mc.vhdx of=$dir/copy.raw bs=1M count=$merge_mib conv=fsync status=none"' \
	"$merge_setup"
# The merge drops the page cache of what it has copied (it goes away);
# dd can too, and where the page cache is full that is much faster.
pair "merge 1 GiB (MiB/s) vs dd iflag=nocache oflag=nocache" \
	'timed_mib "$F disk merge $dir/mc.vhdx"' \
	'timed_mib "dd if=$dir/mc.vhdx of=$dir/copy.raw bs=1M count=$merge_mib conv=fsync iflag=nocache oflag=nocache status=none"' \
	"$merge_setup"
rm -f "$dir/mb.vhdx" "$dir/mc.vhdx" "$dir/copy.raw"
fi

# 6. A dynamic VHD: 4K QD32 O_DIRECT reads and writes, ours against
#    qemu-img bench -f vpc on the same (fully written) file.
if want 6; then
"$F" disk create "$dir/full.vhd" "$size"
vbytes=$("$F" disk info --json "$dir/full.vhd" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
"$F" disk bench --rw write --bs 1M --qd 32 --direct --count $((vbytes / 1048576)) "$dir/full.vhd" >/dev/null
pair "VHD 4K read, QD32, direct (IOPS) vs qemu-img" \
	'ours --rw read --bs 4K --qd 32 --direct --count $count $dir/full.vhd' \
	'qemu $count -d 32 -s 4K -f vpc $dir/full.vhd'
pair "VHD 4K write, QD32, direct (IOPS) vs qemu-img" \
	'ours --rw write --bs 4K --qd 32 --direct --count $count $dir/full.vhd' \
	'qemu $count -d 32 -s 4K -w -f vpc $dir/full.vhd'
rm -f "$dir/full.vhd"
fi
