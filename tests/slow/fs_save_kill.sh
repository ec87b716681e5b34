#!/bin/sh
# kill -9 during a Save through the mount, at random moments (the worker
# pauses FSVISOR_TEST_SAVE_STEP_US between its steps, so a kill can land
# in each): SAVE_KILLS tries (default 12) of each kind.
#   the service: after a new mount the VM is saved (the worker finished
#     on its own) or running (the kill came before the save began) -
#     never lost;
#   the worker: the VM is saved, or crashed with a reason that says it
#     died while saving and that the unfinished state was removed.
# A saved VM is started again, and the snap guest's checks must pass.
. "$SOURCE_ROOT/tests/lib.sh"
need timeout
[ -w /dev/kvm ] || fail "/dev/kvm is not usable here"
scratch
TRIES=${SAVE_KILLS:-12}
export FSVISOR_TEST_SAVE_STEP_US=20000
mount_service
cd "$MNT" || fail "cannot enter the mount"

mkdir disks/d vms/a || fail "mkdir"
echo 32M > disks/d/size || fail "disk: $(cat disks/d/error)"
ln -s ../../../disks/d vms/a/disks/0 || fail "attach"
echo "$TESTGUEST" > vms/a/boot/kernel
echo 2 > vms/a/cpus
echo 64M > vms/a/memory/startup
echo snap > vms/a/boot/cmdline

# Until the state is one of $1 (a |-list); the state read, or fail.
settle()
{
	i=0
	while [ $i -lt 300 ]; do
		st=$(cat vms/a/state 2>/dev/null)
		case "|$1|" in *"|$st|"*) return 0 ;; esac
		sleep 0.1
		i=$((i + 1))
	done
	fail "the VM stays '$st' (expected $1): $(cat vms/a/error)"
}

# The guest runs and its checks pass (typing into it after a restore).
check_guest()
{
	mark=$(grep -ac "snap: alive" vms/a/console)
	if [ "$1" = restored ]; then
		echo restored > vms/a/console || fail "typing into the restored VM"
		wait_for "snap: restored" vms/a/console 30 || fail "try $try: the restored guest does not answer"
	fi
	i=0
	while [ "$(grep -ac "snap: alive" vms/a/console)" -lt $((mark + 2)) ] && [ $i -lt 300 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ "$(grep -ac "snap: alive" vms/a/console)" -ge $((mark + 2)) ] ||
		fail "try $try: the guest's checks stopped"
	grep -aq "snap: FAIL" vms/a/console && fail "try $try: $(grep -a "snap: FAIL" vms/a/console | head -3)"
	return 0
}

saved=0 running=0 crashed=0
for victim in service worker; do
	try=0
	while [ $try -lt "$TRIES" ]; do
		try=$((try + 1))
		st=$(cat vms/a/state)
		if [ "$st" = saved ]; then
			echo start > vms/a/ctl || fail "start from the saved state: $(cat vms/a/error)"
			check_guest restored
		elif [ "$st" != running ]; then
			echo start > vms/a/ctl || fail "start: $(cat vms/a/error)"
			wait_for "snap: alive round=1" vms/a/console 60 || fail "the guest does not start"
		fi
		pid=$(cat "$STATE/vms/a/worker.pid")
		(echo save > vms/a/ctl) 2>/dev/null &
		saver=$!
		# 0 to ~150 ms: before the save, in each of its steps, after it.
		sleep "0.$(awk -v s="$$$try" 'BEGIN { srand(s); printf "%03d", rand() * 150 }')"
		if [ $victim = service ]; then
			kill -9 "$(service_pid)"
			wait $saver 2>/dev/null
			cd "$SCRATCH" || fail "cd"
			stop_service -9
			"$FSVISOR" mount "$MNT" --state "$STATE" || fail "mounting again"
			cd "$MNT" || fail "cannot enter the mount"
			settle "saved|running"
		else
			kill -9 "$pid"
			wait $saver 2>/dev/null
			settle "saved|crashed|running"
		fi
		st=$(cat vms/a/state)
		case $st in
		saved) saved=$((saved + 1)) ;;
		running)
			[ $victim = service ] || fail "try $try: the worker was killed, yet the VM runs"
			running=$((running + 1))
			check_guest running ;;
		crashed)
			crashed=$((crashed + 1))
			# Killed while saving, or before the save began.
			grep -q "killed by signal 9" vms/a/error || fail "try $try: the reason: $(cat vms/a/error)"
			grep -q "while it was saving" vms/a/error && ! grep -q "the unfinished saved state was removed" vms/a/error &&
				fail "try $try: the reason: $(cat vms/a/error)"
			[ -e "$STATE/vms/a/saved" ] && fail "try $try: the unfinished state is still there"
			;;
		esac
	done
	echo "$victim killed $TRIES times: so far $saved saved, $running running, $crashed crashed"
done
[ "$(cat vms/a/state)" = saved ] && { echo start > vms/a/ctl && check_guest restored; }
[ $saved -gt 0 ] || fail "no try ended saved: the kills did not test restoring"
pass
