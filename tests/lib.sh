# Helpers shared by the end-to-end shell tests.  Source it; every test ends
# with pass, and any failed check calls fail with a reason.
set -u

TEST_NAME=$(basename "$0" .sh)
# A signal (meson's timeout sends TERM) ends the test through exit, so its
# EXIT trap cleans up then too.
trap 'exit 143' TERM
trap 'exit 130' INT

fail()
{
	echo "FAIL $TEST_NAME: $*" >&2
	command -v fail_hook >/dev/null 2>&1 && fail_hook
	exit 1
}

pass()
{
	echo "PASS $TEST_NAME"
	exit 0
}

# expect_status N cmd...: run cmd, fail unless it exits with N.
expect_status()
{
	want=$1
	shift
	"$@" >/dev/null 2>&1
	got=$?
	[ "$got" -eq "$want" ] || fail "'$*' exited $got, expected $want"
}

# need TOOL...: fail (not skip) when a tool the suite depends on is missing;
# scripts/bootstrap installs all of them.
need()
{
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 ||
			fail "$t is not installed (run scripts/bootstrap)"
	done
}

# kill_tree PID...: kill -9 each process and its children (a worker
# started through timeout(1) is the child of the pid that $! gave).
kill_tree()
{
	for kt_pid in "$@"; do
		kt_kids=$(cat /proc/"$kt_pid"/task/*/children 2>/dev/null)
		kill -9 "$kt_pid" $kt_kids 2>/dev/null
	done
	return 0
}

# A scratch directory removed when the test exits.
scratch()
{
	SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/fsvisor-$TEST_NAME.XXXXXX")
	trap 'rm -rf "$SCRATCH"' EXIT
	cd "$SCRATCH" || fail "cannot enter $SCRATCH"
}

# wait_for TEXT FILE SECONDS: until FILE contains TEXT; false on timeout.
wait_for()
{
	i=0
	while [ $i -lt $(($3 * 10)) ]; do
		grep -q -- "$1" "$2" 2>/dev/null && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# boot_guest CPUS TESTS OUT [fsvisor vm run options...]: boot the test
# guest with tests=TESTS, console to OUT; answer the serial test's prompt.
# Sets $status to the worker's exit status.
boot_guest()
{
	bg_cpus=$1 bg_tests=$2 bg_out=$3
	shift 3
	rm -f bg.fifo
	mkfifo bg.fifo
	exec 3<>bg.fifo
	timeout 120 "$FSVISOR" vm run --kernel "$TESTGUEST" \
		--cmdline "tests=$bg_tests" --mem 128M --cpus "$bg_cpus" "$@" \
		<&3 >"$bg_out" 2>&1 &
	bg_pid=$!
	case ",$bg_tests," in
	*,serial,*)
		wait_for "waiting for a line" "$bg_out" 60 &&
			echo "ping from the host" >&3
		;;
	esac
	wait $bg_pid
	status=$?
	exec 3>&-
	rm -f bg.fifo
}

# expect_passes OUT TEST...: every TEST printed PASS in OUT.
expect_passes()
{
	ep_out=$1
	shift
	for t in "$@"; do
		grep -q "^TEST $t PASS" "$ep_out" ||
			fail "TEST $t did not pass: $(grep "TEST $t" "$ep_out" || tail -5 "$ep_out")"
	done
}

# ---- a mounted service ---------------------------------------------------

# mount_service: bring up the service on $SCRATCH/mnt with its state in
# $SCRATCH/state (after scratch); sets MNT and STATE.  On exit the VMs'
# workers are killed, the mount goes and the scratch directory with it.
mount_service()
{
	MNT=$SCRATCH/mnt
	STATE=$SCRATCH/state
	trap cleanup_service EXIT
	"$FSVISOR" mount "$MNT" --state "$STATE" || fail "fsvisor mount failed"
}

# alive PID: the process is there and not a zombie (a zombie holds
# nothing, and an orphan's reaper may take its time).
alive()
{
	[ -e "/proc/$1" ] && ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null
}

# The service's pid, from its lock file.
service_pid()
{
	head -n1 "$STATE/lock" 2>/dev/null
}

# stop_service [-9]: unmount (or kill -9) and wait for the service to go.
stop_service()
{
	ss_pid=$(service_pid)
	if [ "${1:-}" = -9 ]; then
		kill -9 "$ss_pid" 2>/dev/null
	else
		umount "$MNT" 2>/dev/null || fusermount3 -u "$MNT" 2>/dev/null
	fi
	i=0
	while alive "$ss_pid" && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if alive "$ss_pid"; then
		# What it waits on, for the report: each thread's kernel wait.
		for t in /proc/"$ss_pid"/task/*; do
			echo "thread $(basename "$t") ($(cat "$t/comm" 2>/dev/null)): $(cat "$t/wchan" 2>/dev/null)" >&2
		done
		grep -q " $MNT " /proc/mounts && echo "the mount is still there" >&2
		fail "the service (pid $ss_pid) did not stop"
	fi
	return 0
}

cleanup_service()
{
	if [ -n "${STATE:-}" ]; then
		pid=$(service_pid)
		# The service first: it would start a killed switch worker again.
		umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
		i=0
		while [ -n "$pid" ] && alive "$pid" && [ $i -lt 50 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
		for p in "$STATE"/vms/*/worker.pid "$STATE"/switches/*/worker.pid; do
			[ -f "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null
		done
		# A sanitizer's report (the service's stderr goes to its log).
		if grep -qE "Sanitizer|runtime error" "$STATE/service.log" 2>/dev/null; then
			echo "FAIL $TEST_NAME: the service log has a sanitizer report:" >&2
			grep -A30 -E "Sanitizer|runtime error" "$STATE/service.log" | head -60 >&2
			rm -rf "$SCRATCH"
			exit 1
		fi
	fi
	rm -rf "$SCRATCH"
}

# Show the service's log when a test fails.
fail_hook()
{
	if [ -n "${STATE:-}" ] && [ -f "$STATE/service.log" ]; then
		echo "--- service log (last 30 lines) ---" >&2
		tail -n 30 "$STATE/service.log" >&2
	fi
}

# expect_value FILE VALUE: FILE reads VALUE (one line).
expect_value()
{
	ev_got=$(cat "$1" 2>&1)
	[ "$ev_got" = "$2" ] || fail "$1 reads '$ev_got', expected '$2'"
}

# expect_write FILE VALUE ERRNO: one write of VALUE gets ERRNO ("ok" for
# success).
expect_write()
{
	ew_got=$("$FSOP" write "$1" "$2")
	[ "$ew_got" = "$3" ] || fail "writing '$(printf '%.60s' "$2")' to $1 gave $ew_got, expected $3"
}
