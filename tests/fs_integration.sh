#!/bin/sh
# Integration services end to end on a real mount, with the test guest's
# agent on the other side of its virtio-vsock (device -> worker ->
# service -> files):
#  1. integration/ before a start: Hyper-V's defaults, a CID unique and
#     kept across a restart of the service
#  2. the heartbeat is ok within 3 s of the start, lost within 8 s of the
#     guest no longer answering, ok again; paused with the VM
#  3. a guest clock an hour off is stepped; time_sync shows the offset,
#     then about none; the guest's clock then reads the host's
#  4. data exchange both ways, with Hyper-V's limits; the intrinsic items
#  5. backup: freeze and thaw, the deadline after which the agent thaws
#  6. a transport reset (what a restore does): the agent reconnects; a
#     Save and a start from the saved state: the same
#  7. a restart of the service: the agent connects to the new one
#  8. shutdown through the agent (the reason in the console), reboot
#     through it, and the ACPI power button when shutdown is off
#  9. a hostile peer on the agent socket: huge lengths, unknown types, a
#     request before the hello, a flood, half a frame then silence; the
#     service and the worker go on
# 10. the same from the guest, through the vsock device and the worker
. "$SOURCE_ROOT/tests/lib.sh"
need timeout grep sed date fincore
[ -w /dev/kvm ] || fail "/dev/kvm is not usable here"
scratch
mount_service
cd "$MNT" || fail "cannot enter the mount"
I=vms/a/integration

fail_hook()
{
	for v in a b; do
		echo "--- vms/$v/console (last 15 lines) ---" >&2
		tail -n 15 "$MNT/vms/$v/console" >&2
	done
	echo "--- service log (last 40 lines) ---" >&2
	tail -n 40 "$STATE/service.log" >&2
}

# wait_value FILE PATTERN SECONDS: until FILE's value matches the grep PATTERN.
wait_value()
{
	wv_i=0
	while [ $wv_i -lt $(($3 * 10)) ]; do
		grep -qE -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
		wv_i=$((wv_i + 1))
	done
	return 1
}

# reconnected BEFORE: the agent said "connected" more than BEFORE times (5 s).
reconnected()
{
	rc_i=0
	while [ "$(grep -c "agent: connected" vms/a/console)" -le "$1" ] && [ $rc_i -lt 50 ]; do
		sleep 0.1
		rc_i=$((rc_i + 1))
	done
	[ "$(grep -c "agent: connected" vms/a/console)" -gt "$1" ]
}

define()
{
	mkdir "vms/$1" || fail "mkdir vms/$1"
	echo "$TESTGUEST" > "vms/$1/boot/kernel"
	echo 128M > "vms/$1/memory/startup"
	echo "$2" > "vms/$1/boot/cmdline"
}

# ---- 1. before a start ------------------------------------------------------------
define a "idle agent clockskew=3600 kvp=Color=blue"
define b "idle"
for f in agent cid heartbeat time_sync backup copy enabled/heartbeat enabled/shutdown \
	enabled/time_sync enabled/kvp enabled/backup enabled/guest_services; do
	[ -e "$I/$f" ] || fail "$I/$f is missing"
done
for d in host guest intrinsic; do
	[ -d "$I/kvp/$d" ] || fail "$I/kvp/$d is missing"
done
for s in heartbeat shutdown time_sync kvp backup; do
	expect_value "$I/enabled/$s" on
done
expect_value "$I/enabled/guest_services" off
expect_value "$I/agent" "not connected"
grep -q "^no-contact since " "$I/heartbeat" || fail "heartbeat: $(cat "$I/heartbeat")"
cid_a=$(cat "$I/cid") cid_b=$(cat vms/b/integration/cid)
[ "$cid_a" -ge 3 ] && [ "$cid_b" -ge 3 ] && [ "$cid_a" != "$cid_b" ] ||
	fail "CIDs $cid_a and $cid_b"
[ "$(stat -c %a "$I/copy")" = 200 ] || fail "copy has mode $(stat -c %a "$I/copy")"
[ "$(stat -c %a "$I/heartbeat")" = 400 ] || fail "heartbeat has mode $(stat -c %a "$I/heartbeat")"
echo "from the host" > "$I/kvp/host/Greeting" || fail "cannot make a host item"
expect_value "$I/kvp/host/Greeting" "from the host"
grep -q '"Greeting": "from the host"' vms/a/config.json || fail "config.json lacks the item"

# ---- 2. start: the heartbeat ------------------------------------------------------
t0=$(date +%s%N)
echo start > vms/a/ctl || fail "start: $(cat vms/a/error)"
wait_value "$I/heartbeat" "^ok since" 3 ||
	fail "heartbeat not ok 3 s after the start: $(cat "$I/heartbeat")"
echo "fs_integration: heartbeat ok $((($(date +%s%N) - t0) / 1000000)) ms after the start"
grep -q "^connected: protocol 1, fsvisor testguest agent, offers heartbeat shutdown time_sync kvp backup" \
	"$I/agent" || fail "agent: $(cat "$I/agent")"
[ "$(cat "$I/cid")" = "$cid_a" ] || fail "the CID changed"
grep -q '"vsock": {' "$STATE/vms/a/worker.json" || fail "the worker has no vsock device"

echo "hb stop" > vms/a/console
wait_for "agent: heartbeat stopped" vms/a/console 5 || fail "the guest did not take 'hb stop'"
wait_value "$I/heartbeat" "^lost since" 8 ||
	fail "heartbeat not lost 8 s after the guest stopped: $(cat "$I/heartbeat")"
echo "hb start" > vms/a/console
wait_value "$I/heartbeat" "^ok since" 5 || fail "heartbeat not ok again: $(cat "$I/heartbeat")"
echo pause > vms/a/ctl || fail "pause"
grep -q "^paused since" "$I/heartbeat" || fail "heartbeat while paused: $(cat "$I/heartbeat")"
echo resume > vms/a/ctl || fail "resume"
wait_value "$I/heartbeat" "^ok since" 5 || fail "heartbeat after resume: $(cat "$I/heartbeat")"
echo off > "$I/enabled/heartbeat"
grep -q "^disabled since" "$I/heartbeat" || fail "heartbeat when off: $(cat "$I/heartbeat")"
echo on > "$I/enabled/heartbeat"
wait_value "$I/heartbeat" "^ok since" 5 || fail "heartbeat on again: $(cat "$I/heartbeat")"

# ---- 3. time ------------------------------------------------------------------------
wait_for "time: stepped by -3" vms/a/console 5 || fail "the clock was not stepped: $(tail -5 vms/a/console)"
# The first sample after the step measures what is left: about nothing.
wait_value "$I/time_sync" "^[-+]0\.[0-9]+ s at " 12 || fail "time_sync: $(cat "$I/time_sync")"
echo date > vms/a/console
wait_for "^date: " vms/a/console 5 || fail "no date from the guest"
guest=$(sed -n 's/^date: \([0-9]*\).*/\1/p' vms/a/console | tail -1)
host=$(date +%s)
[ $((host - guest)) -le 2 ] && [ $((guest - host)) -le 2 ] ||
	fail "the guest's clock reads $guest, the host's $host"

# ---- 4. data exchange ------------------------------------------------------------------
wait_for "kvp: host Greeting=from the host" vms/a/console 5 || fail "the guest did not get Greeting"
echo "second value" > "$I/kvp/host/Greeting"
wait_for "kvp: host Greeting=second value" vms/a/console 5 || fail "the guest did not get the change"
echo 42 > "$I/kvp/host/Answer"
wait_for "kvp: host Answer=42" vms/a/console 5 || fail "the guest did not get Answer"
rm "$I/kvp/host/Answer" || fail "rm of a host item"
wait_for "kvp: host Answer deleted" vms/a/console 5 || fail "the guest did not hear of the deletion"
[ -e "$I/kvp/host/Answer" ] && fail "Answer is still there"
expect_value "$I/kvp/guest/Color" blue
echo "kvp set Shape round" > vms/a/console
wait_value "$I/kvp/guest/Shape" "^round$" 5 || fail "kvp/guest/Shape: $(cat "$I/kvp/guest/Shape" 2>&1)"
echo "kvp set Shape square" > vms/a/console
wait_value "$I/kvp/guest/Shape" "^square$" 5 || fail "the guest's change did not show"
echo "kvp del Shape" > vms/a/console
i=0
while [ -e "$I/kvp/guest/Shape" ] && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
[ -e "$I/kvp/guest/Shape" ] && fail "the guest's deletion did not show"
expect_value "$I/kvp/intrinsic/OSName" "fsvisor test guest"
for k in FullyQualifiedDomainName OSName OSVersion OSBuildNumber ProcessorArchitecture \
	NetworkAddressIPv4 NetworkAddressIPv6 IntegrationServicesVersion; do
	[ -e "$I/kvp/intrinsic/$k" ] || fail "no intrinsic item $k"
done
expect_write "$I/kvp/guest/Color" red EACCES
# Hyper-V's limits: values up to 2048 bytes; keys are also file names here.
v2048=$(head -c 2048 /dev/zero | tr '\0' v)
echo "$v2048" > "$I/kvp/host/Big" || fail "a 2048-byte value was refused"
expect_write "$I/kvp/host/Big" "$v2048"x EINVAL
[ "$(wc -c < "$I/kvp/host/Big")" = 2049 ] || fail "Big changed after a refused write"
grep -q "at most 2048 bytes" vms/a/error || fail "error: $(cat vms/a/error)"
op=$("$FSOP" create "$I/kvp/host/$(printf 'bad\001key')")
[ "$op" = EINVAL ] || fail "a key with a control character: $op"
op=$("$FSOP" create "$I/kvp/guest/Mine")
[ "$op" = EPERM ] || fail "creating a guest item: $op"
op=$("$FSOP" unlink "$I/kvp/guest/Color")
[ "$op" = EPERM ] || fail "removing a guest item: $op"
op=$("$FSOP" create "$I/newfile")
[ "$op" = EPERM ] || fail "creating a file in integration/: $op"
# Host items are stable (cached, every change notified); the guest's are not.
cat "$I/kvp/host/Greeting" "$I/kvp/guest/Color" "$I/enabled/kvp" > /dev/null
[ "$(fincore -n -o PAGES "$I/kvp/host/Greeting")" -ge 1 ] || fail "a host item is not cached"
[ "$(fincore -n -o PAGES "$I/enabled/kvp")" -ge 1 ] || fail "enabled/kvp is not cached"
[ "$(fincore -n -o PAGES "$I/kvp/guest/Color")" -eq 0 ] || fail "a guest item is cached"
echo 0 > "$I/kvp/host/Counter"
out=$("$CACHECHECK" values "$I/kvp/host/Counter" 0 100) || fail "a cached host item went stale: $out"
wait_for "kvp: host Counter=409600" vms/a/console 5 || fail "the guest did not get the last value"
rm "$I/kvp/host/Counter"

# ---- 5. backup ---------------------------------------------------------------------------
expect_value "$I/backup" thawed
echo "freeze 3" > "$I/backup" || fail "freeze: $(cat vms/a/error)"
expect_value "$I/backup" frozen
expect_write "$I/backup" freeze EBUSY
wait_value "$I/backup" "^thawed$" 6 || fail "no thaw after the deadline: $(cat "$I/backup")"
wait_for "agent: thawed by itself" vms/a/console 2 || fail "the guest did not thaw by itself"
echo freeze > "$I/backup" || fail "freeze"
echo thaw > "$I/backup" || fail "thaw: $(cat vms/a/error)"
expect_value "$I/backup" thawed
echo off > "$I/enabled/backup"
expect_write "$I/backup" freeze EPERM
expect_value "$I/backup" disabled
echo on > "$I/enabled/backup"
# Guest services are off by default, as in Hyper-V; the test guest has none.
expect_write "$I/copy" "/etc/hostname /tmp/x" EPERM
echo on > "$I/enabled/guest_services"
expect_write "$I/copy" "/etc/hostname /tmp/x" EBUSY
grep -q "does not offer guest_services" vms/a/error || fail "error: $(cat vms/a/error)"
echo off > "$I/enabled/guest_services"

# ---- 6. a transport reset: what a restore does -------------------------------------------
before=$(grep -c "agent: connected" vms/a/console)
"$FSVISOR" vm ctl "$STATE/vms/a/ctl.sock" vsock-reset | grep -q '"ok": true' || fail "vsock-reset"
wait_for "vsock: transport reset" vms/a/console 5 || fail "the guest did not hear of the reset"
reconnected "$before" || fail "the agent did not reconnect"
wait_value "$I/heartbeat" "^ok since" 5 || fail "heartbeat after the reset: $(cat "$I/heartbeat")"
# The agent sets its items again after its hello.
wait_value "$I/kvp/guest/Color" "^blue$" 5 || fail "the guest's items after the reset"
expect_value "$I/kvp/guest/Color" blue

# A real one: Save, then start from the saved state.  The agent finds
# the service again (its hello), the heartbeat is ok and the items come
# back.
before=$(grep -c "agent: connected" vms/a/console)
echo save > vms/a/ctl || fail "save: $(cat vms/a/error)"
expect_value vms/a/state saved
expect_value "$I/heartbeat" "$(cat "$I/heartbeat")"	# readable while saved
sleep 2
echo start > vms/a/ctl || fail "start from the saved state: $(cat vms/a/error)"
reconnected "$before" || fail "the agent did not reconnect after the restore"
wait_value "$I/heartbeat" "^ok since" 5 || fail "heartbeat after the restore: $(cat "$I/heartbeat")"
wait_value "$I/kvp/guest/Color" "^blue$" 5 || fail "the guest's items after the restore"

# ---- 7. a restart of the service ----------------------------------------------------------
cd "$SCRATCH" || fail "cd"
stop_service
"$FSVISOR" mount "$MNT" --state "$STATE" || fail "fsvisor mount again failed"
cd "$MNT" || fail "cd"
expect_value vms/a/state running
[ "$(cat "$I/cid")" = "$cid_a" ] || fail "the CID changed over a restart"
[ "$(cat vms/b/integration/cid)" = "$cid_b" ] || fail "b's CID changed over a restart"
expect_value "$I/kvp/host/Greeting" "second value"
wait_value "$I/heartbeat" "^ok since" 8 || fail "heartbeat after a restart: $(cat "$I/heartbeat")"
wait_value "$I/kvp/guest/Color" "^blue$" 5 || fail "the guest's items did not come back"

# ---- 9. a hostile peer (b runs no agent: the socket is free) ---------------------------------
echo start > vms/b/ctl || fail "start b: $(cat vms/b/error)"
S=$STATE/vms/b/vsock_18755
[ -S "$S" ] || fail "the service does not listen on $S"
out=$("$ICPEER" "$S" huge) || fail "huge: $out"
out=$("$ICPEER" "$S" nohello) || fail "nohello: $out"
out=$("$ICPEER" "$S" unknown) || fail "unknown: $out"
# One connection at a time: a new one replaces the last, as an agent's restart does.
for t in "flood 200000" "half 3"; do
	# shellcheck disable=SC2086
	"$ICPEER" "$S" $t > "$SCRATCH/peer.txt" 2>&1 &
	ppid=$!
	# Meanwhile the service answers, at once.
	for i in 1 2 3 4 5; do
		timeout 2 cat vms/b/state vms/b/integration/heartbeat > /dev/null ||
			fail "the service did not answer during '$t'"
		sleep 0.2
	done
	wait $ppid || fail "$t: $(cat "$SCRATCH/peer.txt")"
done
out=$("$ICPEER" "$S" hello) || fail "a well-behaved peer after all that: $out"
echo "$out" | grep -q "heartbeat [0-9]* echoed" || fail "hello: $out"
"$FSVISOR" vm ctl "$STATE/vms/b/ctl.sock" status > /dev/null || fail "b's worker does not answer"
expect_value vms/b/state running
echo kill > vms/b/ctl

# ---- 10. a hostile guest, through the device and the worker ------------------------------
for e in "evil unknown" "evil flood 2000" "evil huge"; do
	echo "$e" > vms/a/console
	wait_for "agent: $e sent" vms/a/console 30 || fail "the guest did not send '$e'"
	timeout 2 cat vms/a/state "$I/agent" > /dev/null || fail "the service did not answer after '$e'"
done
# The huge length ended the connection; the agent made a new one.
wait_for "the agent sent something that is not a frame" "$STATE/service.log" 5 ||
	fail "the service did not close the connection of a huge frame"
wait_value "$I/agent" "^connected" 5 || fail "the agent did not reconnect: $(cat "$I/agent")"
echo "evil half" > vms/a/console
wait_for "agent: evil half sent" vms/a/console 10 || fail "the guest did not send half a frame"
sleep 1
timeout 2 cat vms/a/state "$I/heartbeat" > /dev/null || fail "the service waits on half a frame"
"$FSVISOR" vm ctl "$STATE/vms/a/ctl.sock" status > "$SCRATCH/status.json" || fail "the worker does not answer"
grep -q '"malformed": 0' "$SCRATCH/status.json" || fail "the device saw malformed packets"
expect_value vms/a/state running
# A reset of the transport (as a restore) ends the stalled connection.
before=$(grep -c "agent: connected" vms/a/console)
"$FSVISOR" vm ctl "$STATE/vms/a/ctl.sock" vsock-reset > /dev/null || fail "vsock-reset"
reconnected "$before" || fail "the agent did not reconnect after the stall"
wait_value "$I/agent" "^connected" 5 || fail "agent: $(cat "$I/agent")"
wait_value "$I/heartbeat" "^ok since" 8 || fail "heartbeat after the hostile guest: $(cat "$I/heartbeat")"

# ---- 8. shutdown, reboot -------------------------------------------------------------------
echo "reboot for the test" > vms/a/ctl || fail "reboot: $(cat vms/a/error)"
wait_for "agent: reboot requested by the host: for the test" vms/a/console 2 ||
	fail "no reboot reason in the console"
expect_value vms/a/state running
wait_value "$I/heartbeat" "^ok since" 8 || fail "heartbeat after the reboot: $(cat "$I/heartbeat")"
echo "shutdown for the end of the test" > vms/a/ctl || fail "shutdown: $(cat vms/a/error)"
expect_value vms/a/state off
grep -q "agent: shutdown requested by the host: for the end of the test" vms/a/console ||
	fail "no shutdown reason in the console: $(tail -5 vms/a/console)"
grep -q "shut down (the guest powered off)" vms/a/status || fail "status: $(cat vms/a/status)"
grep -q "^no-contact since" "$I/heartbeat" || fail "heartbeat when off: $(cat "$I/heartbeat")"
[ -e "$I/kvp/guest/Color" ] && fail "the guest's items outlived its run"
# With shutdown off: the power button.
echo off > "$I/enabled/shutdown"
echo start > vms/a/ctl || fail "start"
wait_value "$I/heartbeat" "^ok since" 3 || fail "heartbeat: $(cat "$I/heartbeat")"
echo shutdown > vms/a/ctl || fail "shutdown by ACPI: $(cat vms/a/error)"
expect_value vms/a/state off
tail -3 vms/a/console | grep -q "testguest: power button" || fail "no power button: $(tail -3 vms/a/console)"
grep -q '"shutdown": false' "$STATE/vms/a/vm.json" || fail "vm.json lacks the setting"

# ---- bad values ----------------------------------------------------------------------------
expect_write "$I/enabled/kvp" maybe EINVAL
expect_write "$I/backup" "freeze 0" EINVAL
expect_write "$I/backup" "freeze 601" EINVAL
expect_write "$I/backup" "unfreeze" EINVAL
expect_write "$I/backup" freeze EBUSY
expect_write "$I/copy" "relative /tmp/x" EINVAL
expect_write vms/a/ctl "shutdown $(head -c 300 /dev/zero | tr '\0' r)" EINVAL
pass
