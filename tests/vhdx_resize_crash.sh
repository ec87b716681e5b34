#!/bin/sh
# Crash safety of growing a VHDX.  The resize is killed with SIGKILL after
# each step of its metadata change in turn (every write and flush of its
# log commit, each header copy, each stage of the resize), through the
# library's test hook (vhdx/test_hooks.h, driven by tests/tools/
# resize_tool.c), and at random moments by timed kills of "fsvisor disk
# resize", as tests/vhdx_crash.sh does for writes.  After every kill:
#  - the image opens, read-only (replaying the log in memory) and
#    read-write (replaying it into the file), with its old size or its new
#    one and nothing else;
#  - the data written before the resize is intact and any new space reads
#    as zeros;
#  - our check and qemu-img check find no problem, and where the kill
#    left a log to replay, qemu's replay gives the same size as ours;
#  - running the resize again finishes the job.
#
# TIMED (default 15) sets the number of timed kills.
. "$SOURCE_ROOT/tests/lib.sh"
need qemu-img numfmt
scratch
F=$FSVISOR
W=$VDISK_WRITER
R=$RESIZE_TOOL
timed=${TIMED:-15}
dirty=0 was_old=0

bytes()		# SIZE[+N]: in bytes ("100M+512")
{
	case $1 in
	*+*) echo $(( $(numfmt --from=iec "${1%%+*}") + ${1#*+} )) ;;
	*) numfmt --from=iec "$1" ;;
	esac
}

info_field()	# FIELD FILE: a number from "disk info --json"
{
	"$F" disk info --json "$2" | sed -n "s/.*\"$1\": \\([0-9]*\\).*/\\1/p"
}

# The image is consistent and holds the old data; $1 says which kill, $2
# is "now" to run the resize again at once, on the file as the kill left
# it (a log to replay, perhaps), before looking at it.
after_kill()
{
	if [ "${2:-}" = now ]; then
		"$R" resize $how c.vhdx "$size" || fail "$1: resize at once"
		out=$("$R" compare c.vhdx shadow.raw 2>&1) ||
			fail "$1: after resize at once: $out"
	fi
	got=$(info_field virtual-size c.vhdx)
	[ "$got" = "$old" ] || [ "$got" = "$size" ] ||
		fail "$1: the disk has $got bytes, neither $old nor $size"
	[ "$got" = "$old" ] && was_old=$((was_old + 1))
	if [ "$lss" = 512 ] && "$F" disk info c.vhdx | grep -q "log:.*dirty"; then
		# qemu replays the same log (on a copy) to the same disk.
		dirty=$((dirty + 1))
		cp --sparse=always c.vhdx q.vhdx
		qemu-img check -q -r all q.vhdx >/dev/null 2>&1
		qemu-img check -q q.vhdx || fail "$1: qemu cannot replay our log"
		qemu-img info --output=json q.vhdx | grep -q "\"virtual-size\": $got," ||
			fail "$1: qemu's replay gives another size: $(qemu-img info q.vhdx)"
		rm -f q.vhdx
	fi
	out=$("$R" compare c.vhdx shadow.raw 2>&1) ||
		fail "$1: read-only open: $out"
	out=$("$R" compare --rw c.vhdx shadow.raw 2>&1) ||
		fail "$1: after replay: $out"
	[ "$(info_field virtual-size c.vhdx)" = "$got" ] ||
		fail "$1: the replay changed the size"
	out=$("$F" disk check c.vhdx 2>&1) || fail "$1: our check: $out"
	if [ "$lss" = 512 ]; then
		qemu-img check -q c.vhdx || fail "$1: qemu-img check"
	fi
	# The resize can be finished.
	"$R" resize $how c.vhdx "$size" || fail "$1: resize again"
	[ "$(info_field virtual-size c.vhdx)" = "$size" ] ||
		fail "$1: resize again gives $(info_field virtual-size c.vhdx) bytes"
	out=$("$R" compare c.vhdx shadow.raw 2>&1) || fail "$1: after resize again: $out"
	out=$("$F" disk check c.vhdx 2>&1) || fail "$1: our check after resize again: $out"
	if [ "$lss" = 512 ]; then
		qemu-img check -q c.vhdx || fail "$1: qemu-img check after resize again"
	fi
}

# crash_case TYPE LSS BS OLD NEW [sparse]: kill at every step in turn.
crash_case()
{
	type=$1 lss=$2 bs=$3 old=$(bytes "$4") size=$(bytes "$5")
	how=${6:+--$6}
	what="$type, $lss-byte sectors, $bs blocks, $4 -> $5"
	rm -f base.vhdx shadow.raw
	"$F" disk create --type "$type" --sector-size "$lss" --block-size "$bs" \
		base.vhdx "$old" || fail "create ($what)"
	# Leave the last block partly written when the size ends inside it.
	"$W" pattern "$lss" 12 base.vhdx shadow.raw || fail "writes ($what)"
	k=1
	while :; do
		rm -f c.vhdx
		cp --sparse=always base.vhdx c.vhdx
		"$R" crash $how $k c.vhdx "$size" > out.txt 2> step.txt
		st=$?
		if [ $st -eq 0 ]; then
			grep -q "completed" out.txt || fail "$what: $(cat out.txt)"
			[ "$(info_field virtual-size c.vhdx)" = "$size" ] ||
				fail "$what: finished with the wrong size"
			break
		fi
		[ $st -eq 137 ] || fail "$what: step $k: exit $st: $(cat step.txt)"
		after_kill "$what, $(cat step.txt)"
		if [ $((k % 3)) -eq 0 ]; then
			cp --sparse=always base.vhdx c.vhdx
			"$R" crash $how $k c.vhdx "$size" > /dev/null 2>&1
			after_kill "$what, again at once, $(cat step.txt)" now
		fi
		k=$((k + 1))
		[ $k -le 100 ] || fail "$what: the resize never finishes"
	done
	# A resize has at least: headers (2 copies), 3 stages, the commit's 4
	# steps and its header (2 copies), and the close (2 copies).
	[ $k -gt 12 ] || fail "$what: only $((k - 1)) steps: is the hook reached?"
	echo "ok: $what: killed after each of $((k - 1)) steps"
}

# The BAT moves (1 MiB holds 128 GiB of 1 MiB blocks), dynamic and fixed.
crash_case dynamic 512 1M 1G 2T
crash_case fixed 512 1M 200M 130G sparse
# In place: the BAT sector shared by old and new entries goes through the
# log; across a chunk boundary; a fixed disk with real space.
crash_case dynamic 512 32M 3G 9G
crash_case dynamic 512 1M 100M+512 300M
crash_case fixed 4096 32M 100M 1G

# Timed kills of the command itself, which the hook cannot reach: inside
# system calls, between the steps.
type=dynamic lss=512 old=$((1024 * 1024 * 1024)) size=$((2 * 1024 * 1024 * 1024 * 1024))
how=
rm -f base.vhdx shadow.raw
"$F" disk create --block-size 1M base.vhdx "$old" || fail "create"
"$W" pattern 7 12 base.vhdx shadow.raw || fail "writes"
was_old=0 i=0
while [ $i -lt "$timed" ]; do
	i=$((i + 1))
	rm -f c.vhdx
	cp --sparse=always base.vhdx c.vhdx
	"$F" disk resize c.vhdx 2T &
	pid=$!
	# 0-29 ms: a resize of 1 GiB to 2 TiB takes about 20 ms here.
	sleep "0.0$(( (i * 7) % 30 / 10 ))$(( (i * 7) % 10 ))"
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	after_kill "timed kill $i"
done
echo "ok: $timed timed kills: $was_old left the old size, $((timed - was_old)) the new"
echo "ok: $dirty kills in all left a log to replay, and qemu replayed each the same"
[ "$dirty" -gt 0 ] || fail "no kill left a log to replay"
pass
