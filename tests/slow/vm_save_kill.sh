#!/bin/sh
# kill -9 of a worker at random moments while it saves its VM (50 tries
# by default, SAVE_KILLS=N): afterwards the state either restores with
# every self-check of the snap guest passing, or is refused with a clear
# message (no manifest: it never existed) - never a hang, never a guest on
# wrong memory.
. "$SOURCE_ROOT/tests/lib.sh"
need timeout
[ -w /dev/kvm ] || fail "/dev/kvm is not usable here"
scratch
F=$FSVISOR
TRIES=${SAVE_KILLS:-50}

kill_vm()
{
	[ -f vm.pid ] && kill -9 "$(cat vm.pid)" 2>/dev/null
	rm -f vm.pid
}
trap 'kill_vm; rm -rf "$SCRATCH"' EXIT
fail_hook()
{
	for f in "$SCRATCH"/*.txt "$SCRATCH"/*.log; do
		[ -f "$f" ] && { echo "--- $f" >&2; tail -n 8 "$f" >&2; }
	done
}

# start ARGS...: a worker in the background (console con.txt, log vm.log);
# its own pid in vm.pid (no timeout wrapper: the kill must reach the worker).
start()
{
	rm -f con.txt vm.sock
	"$F" vm run "$@" --control vm.sock --no-console --console-log con.txt \
		</dev/null >vm.log 2>&1 &
	echo $! >vm.pid
}

# Until the worker's control socket is there (after it restored).
wait_sock()
{
	i=0
	while [ ! -S vm.sock ] && [ $i -lt 300 ]; do
		sleep 0.02
		i=$((i + 1))
	done
	[ -S vm.sock ] || fail "$1: no control socket: $(tail -2 vm.log)"
}

wait_gone()
{
	i=0
	while kill -0 "$(cat vm.pid)" 2>/dev/null && [ $i -lt 200 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	kill -0 "$(cat vm.pid)" 2>/dev/null && fail "the worker did not end ($1)"
	wait "$(cat vm.pid)" 2>/dev/null
	rm -f vm.pid
}

# A state to start every try from: a snap guest that has run a while.
start --kernel "$TESTGUEST" --mem 256M --cpus 2 --cmdline snap
wait_for "snap: alive round=2" con.txt 60 || fail "the guest did not start"
"$F" vm ctl vm.sock save "$SCRATCH/base" --stop >/dev/null || fail "the first save failed"
wait_gone "first save"

# Each step of a capture takes 10 ms more from here on: kills land in them.
FSVISOR_TEST_SAVE_STEP_US=10000
export FSVISOR_TEST_SAVE_STEP_US
restored=0 refused=0 before=0 t=0
while [ $t -lt "$TRIES" ]; do
	t=$((t + 1))
	start --restore "$SCRATCH/base"
	wait_sock "try $t, the base state"
	# A save first waits for the restored RAM to be all in: not the window.
	wait_for "restore: all" vm.log 30 || fail "try $t: the base state's RAM did not come in"
	dir=$SCRATCH/try$t
	"$F" vm ctl vm.sock save "$dir" --stop >/dev/null 2>&1 &
	saver=$!
	# 0 to 99 ms into the save (about 60 ms long): before it, during it, or after.
	sleep "0.0$(printf '%02d' $(( (t * 37 + $$) % 100 )))"
	kill -9 "$(cat vm.pid)" 2>/dev/null
	wait $saver 2>/dev/null
	wait_gone "try $t"
	if [ ! -e "$dir" ]; then
		before=$((before + 1))
		continue
	fi
	if [ -f "$dir/manifest.json" ]; then
		start --restore "$dir"
		wait_sock "try $t, a complete state"
		"$F" vm ctl vm.sock send 'restored\n' >/dev/null
		wait_for "snap: restored, cycles 1" con.txt 30 || fail "try $t: the guest does not answer"
		wait_for "snap: alive" con.txt 10 || fail "try $t: the guest's checks stopped"
		grep -q "snap: FAIL" con.txt && fail "try $t: $(grep "snap: FAIL" con.txt | head -2)"
		"$F" vm ctl vm.sock stop >/dev/null 2>&1
		wait_gone "try $t, restored"
		restored=$((restored + 1))
	else
		# Half written: not a saved state, and each tool says so at once.
		out=$(timeout 10 "$F" vm state-info "$dir" 2>&1)
		[ $? = 1 ] || fail "try $t: state-info of a half-written state: $out"
		case "$out" in
		*"no manifest.json"*) ;;
		*) fail "try $t: state-info does not say why: $out" ;;
		esac
		out=$(timeout 10 "$F" vm run --restore "$dir" --no-console 2>&1)
		[ $? = 1 ] || fail "try $t: a restore of a half-written state: $out"
		case "$out" in
		*"cannot restore"*manifest*) ;;
		*) fail "try $t: the restore does not say why: $out" ;;
		esac
		refused=$((refused + 1))
	fi
	rm -rf "$dir"
done
echo "$TRIES kills: $restored during or after the save restored with every check passing,"
echo "$refused left a half-written state that was refused, $before came before the save"
[ $restored -gt 0 ] || fail "no kill came after a save: the test saw only one side"
[ $refused -gt 0 ] || fail "no kill came during a save: widen the window"
pass
