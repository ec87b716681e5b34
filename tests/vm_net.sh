#!/bin/sh
# virtio-net end to end, two test-guest VMs wired together by one
# SOCK_SEQPACKET socket pair (tests/tools/netpair.c), no switch:
#  1. started connected (--nic ...,fd=N): each pings the other (ARP, ICMP;
#     one with 6000-byte pings, whose replies span several receive
#     buffers); the counters say what went through.
#  2. started link down, connected live with nic-connect: the pings pass;
#     nic-disconnect takes both links down (the peer sees the hang-up),
#     pings stop being answered, a new pair brings them back.
#     A guest reboots while connected and passes again.
#  3. push-back: a guest floods a peer that does not read; it is held
#     back with nothing dropped, then every frame arrives in order, from
#     the MAC given by netmac= rather than the device's.
#  4. drops: frames larger than a guest's buffers (no MRG_RXBUF) are
#     counted in rx_dropped; a 65535-byte frame still reaches a guest
#     with mergeable buffers.
#  5. bad NIC settings are refused with a reason.
. "$SOURCE_ROOT/tests/lib.sh"
need timeout sed
[ -w /dev/kvm ] || fail "/dev/kvm is not usable here"
scratch
F=$FSVISOR
NP=$NETPAIR
MAC_A=52:54:00:fe:00:0a
MAC_B=52:54:00:fe:00:0b
export F NP TESTGUEST MAC_A MAC_B

# launch.sh NAME CMDLINE NIC-OPTION...: a test guest in the background
# (console in NAME.txt, the worker's messages in NAME.log, control socket
# NAME.sock, pid in NAME.pid); also
# usable from inside "netpair run", where the sockets are.
cat >launch.sh <<'EOF2'
name=$1 cmd=$2
shift 2
timeout 300 "$F" vm run --kernel "$TESTGUEST" --mem 64M --name "$name" \
	--cmdline "$cmd" --control "$name.sock" --no-console --console-log "$name.txt" \
	"$@" </dev/null >"$name.log" 2>&1 &
echo $! >"$name.pid"
EOF2

kill_vms()
{
	for p in "$SCRATCH"/*.pid; do
		[ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null
	done
}
trap 'kill_vms; rm -rf "$SCRATCH"' EXIT

fail_hook()
{
	for f in "$SCRATCH"/*.txt "$SCRATCH"/*.log; do
		[ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }
	done
}

# gone NAME: wait (up to 20 s) for VM NAME's worker to end; its output
# must be free of sanitizer reports.
gone()
{
	i=0
	while kill -0 "$(cat "$1.pid")" 2>/dev/null && [ $i -lt 200 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	! kill -0 "$(cat "$1.pid")" 2>/dev/null || fail "VM $1 did not end"
	rm -f "$1.pid"
	# In a sanitizer build, a report in the worker's output fails the test.
	! grep -qE "Sanitizer|runtime error" "$1.log" ||
		fail "VM $1: $(grep -A20 -E "Sanitizer|runtime error" "$1.log" | head -30)"
}

stop_vms()
{
	for v in "$@"; do
		"$F" vm ctl "$v.sock" stop >/dev/null 2>&1
		gone "$v"
	done
	rm -f ./*.txt ./*.log
}

# nic_field VM FIELD: a counter of the VM's only NIC, from "status".
nic_field()
{
	"$F" vm ctl "$1.sock" status | sed -n "s/.*\"$2\": \([a-z0-9]*\).*/\1/p" | head -n1
}

# wait_field VM FIELD VALUE SECONDS
wait_field()
{
	i=0
	while [ $i -lt $(($4 * 10)) ]; do
		[ "$(nic_field "$1" "$2")" = "$3" ] && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# ---- 1. two VMs, connected from the start -----------------------------------
"$NP" run sh -c '
	sh launch.sh a "tests=net,reboot ip=10.0.0.1 peer=10.0.0.2 pingsize=6000 idle" \
		--nic "mac=$MAC_A,fd=3" 4<&-
	sh launch.sh b "tests=net ip=10.0.0.2 peer=10.0.0.1 idle" \
		--nic "mac=$MAC_B,fd=4" 3<&-
' || fail "netpair run"
wait_for "TEST reboot" a.txt 90 && wait_for "TEST net" b.txt 60 ||
	fail "the net test did not finish"
expect_passes a.txt net reboot
expect_passes b.txt net
# Once before the reset and once after: the device was reset under traffic.
[ "$(grep -c "TEST net PASS" a.txt)" = 2 ] || fail "A's second net test did not pass"
grep -q "came in [3-9] buffers" a.txt ||
	fail "the 6000-byte echo reply did not span several buffers"
grep -q "mac $MAC_A" a.txt || fail "guest A did not read its MAC from the device"
[ "$(nic_field a link)" = true ] || fail "A's link is not up in status"
for v in a b; do
	for c in in_packets out_packets; do
		[ "$(nic_field $v $c)" -ge 2 ] || fail "$v: $c is $(nic_field $v $c)"
	done
	[ "$(nic_field $v rx_dropped)" = 0 ] || fail "$v: frames dropped"
	[ "$(nic_field $v tx_errors)" = 0 ] || fail "$v: transmit errors"
done
# Bytes add up: A sent a 6042-byte echo request at least.
[ "$(nic_field a in_bytes)" -ge 6042 ] || fail "A's in_bytes: $(nic_field a in_bytes)"
[ "$(nic_field b out_bytes)" -ge 6042 ] || fail "B's out_bytes: $(nic_field b out_bytes)"
# A powers off: B's NIC sees the hang-up, and so does the guest.
"$F" vm ctl a.sock stop >/dev/null 2>&1
gone a
wait_field b link false 10 || fail "B's link stayed up after A went away"
wait_for "net: link down" b.txt 10 || fail "B's guest was not told the link went down"
stop_vms b

# ---- 2. started link down, connected live -------------------------------------
sh launch.sh a "tests=net ip=10.0.0.1 peer=10.0.0.2 idle ping_every=1" --nic mac=$MAC_A
sh launch.sh b "tests=net ip=10.0.0.2 peer=10.0.0.1 idle" --nic mac=$MAC_B
wait_for "net: link down" a.txt 60 && wait_for "net: link down" b.txt 60 ||
	fail "the guests did not wait for the link"
[ "$(nic_field a link)" = false ] || fail "A's link is up with no backend"
"$NP" run sh -c '"$F" vm ctl a.sock nic-connect 0 3 && "$F" vm ctl b.sock nic-connect 0 4' \
	>/dev/null || fail "nic-connect failed"
wait_for "TEST net" a.txt 60 && wait_for "TEST net" b.txt 60 ||
	fail "the net test did not finish after nic-connect"
expect_passes a.txt net
expect_passes b.txt net
grep -q "net: link up" a.txt || fail "A's guest saw no configuration interrupt"
wait_for "net: reply from 10.0.0.2 seq 2" a.txt 20 || fail "idle pings are not answered"
# Disconnect A: both links go down, A's pings go unanswered.
"$F" vm ctl a.sock nic-disconnect 0 >/dev/null || fail "nic-disconnect"
[ "$(nic_field a link)" = false ] || fail "A's link is up after nic-disconnect"
wait_field b link false 10 || fail "B's link stayed up after A let go"
wait_for "net: link down" b.txt 10 || fail "B's guest was not told"
wait_for "net: no reply from 10.0.0.2" a.txt 20 || fail "pings still answered after the disconnect"
# A new pair: the pings come back.
before=$(grep -c "net: reply from" a.txt)
"$NP" run sh -c '"$F" vm ctl a.sock nic-connect 0 3 && "$F" vm ctl b.sock nic-connect 0 4' \
	>/dev/null || fail "reconnect failed"
i=0
while [ "$(grep -c "net: reply from" a.txt)" -le "$before" ] && [ $i -lt 200 ]; do
	sleep 0.1
	i=$((i + 1))
done
[ "$(grep -c "net: reply from" a.txt)" -gt "$before" ] || fail "no replies after reconnecting"
# Errors of the control commands.
out=$("$F" vm ctl a.sock nic-disconnect 3 2>&1)
echo "$out" | grep -q "no NIC 3" || fail "nic-disconnect of a missing NIC: $out"
out=$("$NP" run -t stream "$F" vm ctl a.sock nic-connect 0 3 2>&1)
echo "$out" | grep -q "not AF_UNIX SOCK_SEQPACKET" || fail "a stream socket was taken: $out"
[ "$(nic_field a link)" = true ] || fail "a refused nic-connect dropped the link"
stop_vms a b

# ---- 3. push-back: a flood into a peer that does not read yet ------------------------
sh launch.sh a "tests=netflood floodcount=3000 ip=10.0.0.1 netmac=52:54:00:fe:00:cc" \
	--nic mac=$MAC_A
wait_for "net: link down" a.txt 60 || fail "flood guest did not start"
"$NP" run sh -c '
	"$F" vm ctl a.sock nic-connect 0 3 >/dev/null || exit 1
	exec 3<&-
	sleep 3
	"$F" vm ctl a.sock status >st1.json
	sleep 1
	"$F" vm ctl a.sock status >st2.json
	"$NP" drain 4 3000 200 52:54:00:fe:00:cc >drain.txt
' || fail "draining the flood: $(cat drain.txt 2>/dev/null)"
gone a
expect_passes a.txt netflood
field() { sed -n "s/.*\"$2\": \([0-9]*\).*/\1/p" "$1"; }
n1=$(field st1.json in_packets)
n2=$(field st2.json in_packets)
[ "$n1" -gt 0 ] && [ "$n1" -lt 3000 ] || fail "no push-back seen: $n1 frames went while nobody read"
[ "$n1" = "$n2" ] || fail "frames kept going ($n1, then $n2) with nobody reading"
[ "$(field st2.json tx_errors)" = 0 ] || fail "frames were dropped instead of held"
grep -q "drained 3000 frames in order" drain.txt || fail "drain: $(cat drain.txt)"
echo "flood: $n1 frames held in the socket; $(cat drain.txt)"
rm -f a.txt a.log

# ---- 4. drops counted; a 65535-byte frame delivered -------------------------------
sh launch.sh a "ip=10.0.0.1 netnomrg idle" --nic mac=$MAC_A
sh launch.sh b "ip=10.0.0.2 idle" --nic mac=$MAC_B
wait_for "testguest: idle" a.txt 60 && wait_for "testguest: idle" b.txt 60 ||
	fail "the guests did not start"
# From the host's end of a pair: frames too big for A's 2 KiB buffers.
"$NP" run sh -c '
	"$F" vm ctl a.sock nic-connect 0 3 >/dev/null || exit 1
	exec 3<&-
	"$NP" send 4 3000 5 && "$NP" send 4 100 3 && sleep 2
' || fail "sending to A"
[ "$(nic_field a rx_dropped)" = 5 ] || fail "A's rx_dropped is $(nic_field a rx_dropped), expected 5"
[ "$(nic_field a out_packets)" = 3 ] || fail "A's out_packets: $(nic_field a out_packets)"
"$NP" run sh -c '
	"$F" vm ctl b.sock nic-connect 0 3 >/dev/null || exit 1
	exec 3<&-
	"$NP" send 4 65535 1 && sleep 2
' || fail "sending to B"
[ "$(nic_field b out_bytes)" = 65535 ] || fail "B's out_bytes: $(nic_field b out_bytes)"
[ "$(nic_field b rx_dropped)" = 0 ] || fail "B dropped the 64 KiB frame"
grep -q "65535-byte frame in 33 buffers" b.txt || fail "B's guest did not see 33 buffers"
stop_vms a b

# ---- 5. bad settings ------------------------------------------------------------
bad()
{
	out=$("$@" 2>&1)
	st=$?
	[ $st -eq 1 ] || fail "'$*' exited $st: $out"
	echo "$out"
}
run_vm() { "$F" vm run --no-console --kernel "$TESTGUEST" "$@"; }
bad run_vm --nic mac=01:00:5e:00:00:01 | grep -q "multicast" || fail "multicast MAC taken"
bad run_vm --nic mac=00:00:00:00:00:00 | grep -q "all zeros" || fail "zero MAC taken"
bad run_vm --nic mac=52:54:00:12:34 | grep -q "six hex octets" || fail "short MAC taken"
bad run_vm --nic mac=52:54:00:12:34:5g | grep -q "six hex octets" || fail "bad hex taken"
bad run_vm --nic mac=$MAC_A --nic mac=$MAC_A | grep -q "same mac" || fail "duplicate MAC taken"
bad run_vm --nic mac=$MAC_A,fd=9 | grep -q "not open" || fail "closed fd taken"
: >plain
bad run_vm --nic mac=$MAC_A,fd=5 5<plain | grep -q "not a socket" || fail "file taken"
out=$("$NP" run -t stream "$F" vm run --no-console --kernel "$TESTGUEST" \
	--nic mac=$MAC_A,fd=3 2>&1)
[ $? -eq 1 ] && echo "$out" | grep -q "not AF_UNIX SOCK_SEQPACKET" ||
	fail "stream socket taken: $out"
expect_status 2 run_vm --nic fd=3
expect_status 2 run_vm --nic mac=$MAC_A,speed=10
cat >nine.json <<EOF
{ "kernel": "$TESTGUEST", "nics": [
  {"mac": "52:54:00:00:00:01"}, {"mac": "52:54:00:00:00:02"}, {"mac": "52:54:00:00:00:03"},
  {"mac": "52:54:00:00:00:04"}, {"mac": "52:54:00:00:00:05"}, {"mac": "52:54:00:00:00:06"},
  {"mac": "52:54:00:00:00:07"}, {"mac": "52:54:00:00:00:08"}, {"mac": "52:54:00:00:00:09"} ] }
EOF
bad "$F" vm check --config nine.json | grep -q "at most 8 nics" || fail "nine NICs taken"
printf '{ "kernel": "%s", "nics": [ {"mac": "%s", "vlan": 3} ] }\n' "$TESTGUEST" $MAC_A >k.json
bad "$F" vm check --config k.json | grep -q "unknown key nics\[0\].vlan" || fail "unknown key taken"
"$F" vm check --kernel "$TESTGUEST" --nic mac=52:54:00:AB:cd:01 | grep -q '"mac": "52:54:00:ab:cd:01"' ||
	fail "vm check does not show the NIC"
pass
