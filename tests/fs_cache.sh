#!/bin/sh
# Stable values are served from the kernel's page cache, and a cached
# value is never stale: readers in other processes reading in a loop see
# every change once the write() that made it returned — values written
# from another process, a VM started and stopped, a worker killed (the
# VM becomes crashed: seen within one notification round trip), the
# service restarted.
. "$SOURCE_ROOT/tests/lib.sh"
need fincore timeout
scratch
mount_service
cd "$MNT" || fail "cannot enter the mount"

mkdir vms/x || fail "mkdir"
echo "$TESTGUEST" > vms/x/boot/kernel
echo idle > vms/x/boot/cmdline

# ---- reads of stable values are cached; volatile ones are not --------------------
cat vms/x/cpus vms/x/state vms/x/status > /dev/null
[ "$(fincore -n -o PAGES vms/x/cpus)" -ge 1 ] || fail "cpus is not in the page cache"
[ "$(fincore -n -o PAGES vms/x/state)" -ge 1 ] || fail "state is not in the page cache"
[ "$(fincore -n -o PAGES vms/x/status)" -eq 0 ] || fail "status (volatile) is in the page cache"

# ---- values written by another process; a VM started and stopped -----------------
# Twice: as it is, and with the notifier slowed down, where a write that
# returned before the kernel was told what changed would let the readers
# see an old value (the check fails without the writes' wait).
checks()	# BASE COUNT
{
	out=$("$CACHECHECK" values vms/x/memory/startup "$1" "$2") || fail "memory/startup: $out"
	echo "memory/startup: $out"
	expect_value vms/x/memory/startup $(($1 + $2 * 4096))
	out=$("$CACHECHECK" command vms/x/state vms/x/ctl start running) || fail "start: $out"
	echo "state across start: $out"
	# pause and resume change state once, at the end of the write: the
	# sharpest case (a write to one file changing another).
	c=0
	while [ $c -lt 5 ]; do
		out=$("$CACHECHECK" command vms/x/state vms/x/ctl pause paused) || fail "pause: $out"
		out=$("$CACHECHECK" command vms/x/state vms/x/ctl resume running) || fail "resume: $out"
		c=$((c + 1))
	done
	echo "state across 5 pauses and resumes: $out"
	out=$("$CACHECHECK" command vms/x/state vms/x/ctl stop off) || fail "stop: $out"
	echo "state across stop: $out"
}
checks $((64 << 20)) 300
cd "$SCRATCH" && stop_service
FSVISOR_TEST_NOTIFY_DELAY_US=3000 "$FSVISOR" mount "$MNT" --state "$STATE" || fail "mount"
cd "$MNT" || fail "cd"
echo "with a slow notifier:"
checks $((32 << 20)) 100
cd "$SCRATCH" && stop_service
"$FSVISOR" mount "$MNT" --state "$STATE" || fail "mount"
cd "$MNT" || fail "cd"
# A value read back in another form (128M -> bytes) is what the cache holds.
echo 128M > vms/x/memory/startup
expect_value vms/x/memory/startup 134217728

# ---- a worker killed: the service notices, and the cache follows at once --------------
echo start > vms/x/ctl || fail "start: $(cat vms/x/error)"
expect_value vms/x/state running
pid=$(sed -n 's/^pid: //p' vms/x/status)
[ -n "$pid" ] || fail "no pid in status"
kill -9 "$pid"
# status is never cached: once it says crashed, the service has changed state.
i=0
until grep -q "^state: crashed" vms/x/status; do
	i=$((i + 1))
	[ $i -lt 100 ] || fail "the VM did not become crashed: $(cat vms/x/status)"
	sleep 0.05
done
out=$("$CACHECHECK" wait vms/x/state crashed 200) || fail "after the crash: $out"
echo "crashed seen by a cached reader: $out"

# ---- the service restarted ---------------------------------------------------------------------
cat vms/x/state > /dev/null	# cached now
cd "$SCRATCH" || fail "cd"
stop_service -9
"$FSVISOR" mount "$MNT" --state "$STATE" || fail "mount again"
cd "$MNT" || fail "cd"
out=$("$CACHECHECK" wait vms/x/state crashed 50) || fail "after the restart: $out"
out=$("$CACHECHECK" command vms/x/state vms/x/ctl stop off) || fail "stop after the restart: $out"
echo "after the restart: $out"
pass
