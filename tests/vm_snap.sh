#!/bin/sh
# Saved state end to end through `fsvisor vm run --restore`: a test guest
# in snap mode (2 vCPUs, a dynamic VHDX with a request always in flight,
# a NIC pinging a second VM) is saved and restored three times in a row,
# each restore of a VM that was itself restored; every self-check passes,
# the second VM's pings resume, and qemu-img finds the disk clean.
. "$SOURCE_ROOT/tests/lib.sh"
need timeout qemu-img
[ -w /dev/kvm ] || fail "/dev/kvm is not usable here"
scratch
F=$FSVISOR
NP=$NETPAIR
MAC_A=52:54:00:fe:01:0a
MAC_B=52:54:00:fe:01:0b
export F NP TESTGUEST MAC_A MAC_B SCRATCH

kill_vms()
{
	for p in "$SCRATCH"/*.pid; do
		[ -f "$p" ] && kill_tree "$(cat "$p")"
	done
}
trap 'kill_vms; rm -rf "$SCRATCH"' EXIT
fail_hook()
{
	for f in "$SCRATCH"/*.txt "$SCRATCH"/*.log; do
		[ -f "$f" ] && { echo "--- $f" >&2; tail -n 12 "$f" >&2; }
	done
}

qemu-img create -q -f vhdx "$SCRATCH/a.vhdx" 64M || fail "qemu-img create"
# A in snap mode, B answering and pinging, one socket pair between them.
"$NP" run sh -c '
	timeout 600 "$F" vm run --kernel "$TESTGUEST" --mem 128M --cpus 2 --name a \
		--cmdline "snap ip=10.0.0.1 peer=10.0.0.2" --disk "$SCRATCH/a.vhdx" \
		--control a.sock --no-console --console-log a.txt --nic "mac=$MAC_A,fd=3" \
		4<&- </dev/null >a.log 2>&1 &
	echo $! >a.pid
	timeout 600 "$F" vm run --kernel "$TESTGUEST" --mem 64M --name b \
		--cmdline "idle ip=10.0.0.2 peer=10.0.0.1 ping_every=1" --control b.sock \
		--no-console --console-log b.txt --nic "mac=$MAC_B,fd=4" 3<&- \
		</dev/null >b.log 2>&1 &
	echo $! >b.pid
' || fail "netpair run"
wait_for "snap: alive round=2" a.txt 60 || fail "A did not start its checks"
wait_for "net: reply from 10.0.0.1 seq 2" b.txt 60 || fail "B's pings are not answered"

cycle=0
while [ $cycle -lt 3 ]; do
	cycle=$((cycle + 1))
	dir=$SCRATCH/state$cycle
	out=$("$F" vm ctl a.sock save "$dir" --stop) || fail "save $cycle: $out"
	i=0
	while kill -0 "$(cat a.pid)" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	wait "$(cat a.pid)" 2>/dev/null
	grep -q "saved into $dir" a.log || fail "the worker did not say it saved: $(tail -3 a.log)"
	"$F" vm state-info "$dir" > info.json || fail "state-info $cycle: $(cat info.json)"
	grep -q '"restorable": true' info.json || fail "not restorable: $(cat info.json)"
	replies=$(grep -c "net: reply from 10.0.0.1" b.txt)
	mv a.log "a.$cycle.log"
	# The restored A and a new pair: B's end goes in live.
	"$NP" run sh -c '
		timeout 600 "$F" vm run --restore "'"$dir"'" --control a.sock --no-console \
			--console-log a.txt --nic "mac=$MAC_A,fd=3" 4<&- </dev/null >a.log 2>&1 &
		echo $! >a.pid
		i=0
		while [ ! -S a.sock ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
		"$F" vm ctl b.sock nic-connect 0 4 >/dev/null
	' || fail "restore $cycle"
	wait_for "restore: all" a.log 30 || fail "restore $cycle: $(tail -3 a.log)"
	"$F" vm ctl a.sock send 'restored\n' >/dev/null || fail "typing into the restored VM"
	wait_for "snap: restored, cycles $cycle" a.txt 30 || fail "the restored guest did not answer"
	alive=$(grep -c "snap: alive" a.txt)
	i=0
	while [ "$(grep -c "snap: alive" a.txt)" -lt $((alive + 2)) ] && [ $i -lt 300 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ "$(grep -c "snap: alive" a.txt)" -ge $((alive + 2)) ] ||
		fail "cycle $cycle: the restored guest's checks stopped"
	i=0
	while [ "$(grep -c "net: reply from 10.0.0.1" b.txt)" -le "$replies" ] && [ $i -lt 200 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ "$(grep -c "net: reply from 10.0.0.1" b.txt)" -gt "$replies" ] ||
		fail "cycle $cycle: B's pings did not resume"
	grep -q "snap: FAIL" a.txt && fail "cycle $cycle: $(grep "snap: FAIL" a.txt | head -3)"
	echo "cycle $cycle: saved ($(sed -n 's/.*saved into .* in \(.*\)/\1/p' "a.$cycle.log")), restored, checks pass"
done
# Each restore printed its cycle count once: 3 in all.
[ "$(grep -c "snap: restored" a.txt)" = 3 ] || fail "restores seen: $(grep -c "snap: restored" a.txt)"
grep -E "snap: alive" a.txt | tail -1
"$F" vm ctl a.sock stop >/dev/null 2>&1
"$F" vm ctl b.sock stop >/dev/null 2>&1
sleep 1
qemu-img check -q "$SCRATCH/a.vhdx" || fail "qemu-img check of the disk failed"
! grep -qE "Sanitizer|runtime error" ./*.log || fail "$(grep -h -A20 -E "Sanitizer|runtime error" ./*.log | head -30)"
pass
