#!/bin/sh
# virtio-vsock end to end through `fsvisor vm run` (no service): the test
# guest's driver and echo server, host programs on the run directory's
# Unix sockets (tests/tools/vsockcat.c).
#  1. the guest connects out: RST for a port nobody listens on, bytes
#     to a host listener (vsock_PORT)
#  2. load: connections at once to the guest's echo server, each moving
#     BYTES both ways, hashes compared (50 x 4 MiB by default; the full
#     50 x 20 MiB with VSOCK_LOAD_FULL=1 or the argument "full", as the
#     slow suite's vm_vsock_full runs it)
#  3. credit exhaustion: the guest's receive buffer is 1 KiB a connection
#  4. host clients that close before their CONNECT line ends, or send
#     junk: counted, and the next client is served
#  5. a transport reset (what a restore does) in the middle of a load:
#     the connections are reset, the listeners stay, the guest hears it;
#     then a real save in the middle of a load and a restore: the same,
#     and loads go on afterwards
#  6. bad settings are refused with a reason
. "$SOURCE_ROOT/tests/lib.sh"
need timeout grep sed
[ -w /dev/kvm ] || fail "/dev/kvm is not usable here"
scratch
F=$FSVISOR
V=$VSOCKCAT
if [ "${VSOCK_LOAD_FULL:-0}" = 1 ] || [ "${1:-}" = full ]; then
	conns=50 bytes=20971520
else
	conns=${VSOCK_LOAD_CONNS:-50} bytes=${VSOCK_LOAD_BYTES:-4194304}
fi

# start NAME CMDLINE: a test guest with a vsock device (CID 42), run
# directory NAME.run, control socket NAME.sock, console NAME.txt.
start()
{
	mkdir -p "$1.run"
	timeout 600 "$F" vm run --kernel "$TESTGUEST" --mem 128M --name "$1" \
		--cmdline "$2" --vsock 42 --vsock-dir "$1.run" --control "$1.sock" \
		--no-console --console-log "$1.txt" </dev/null >"$1.log" 2>&1 &
	echo $! >"$1.pid"
	wait_for "testguest: idle" "$1.txt" 30 || fail "$1 did not go idle: $(tail -5 "$1.txt")"
}

stop()
{
	"$F" vm ctl "$1.sock" stop >/dev/null 2>&1
	i=0
	while kill -0 "$(cat "$1.pid")" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	! kill -0 "$(cat "$1.pid")" 2>/dev/null || fail "VM $1 did not stop"
	rm -f "$1.pid"
	! grep -qE "Sanitizer|runtime error" "$1.log" ||
		fail "VM $1: $(grep -A20 -E "Sanitizer|runtime error" "$1.log" | head -30)"
}

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

# counter NAME KEY: the vsock device's counter KEY.
counter()
{
	"$F" vm ctl "$1.sock" status | sed -n "s/^ *\"$2\": \([0-9]*\),*$/\1/p"
}

# ---- 1. the guest connects out ---------------------------------------------------
mkdir -p a.run
"$V" listen a.run 5001 from_guest.txt &
lpid=$!
start a "tests=vsockrst,vsocksend vsock_closed_port=4 vsock_send_port=5001 idle vsock_echo=5000"
expect_passes a.txt vsockrst vsocksend
wait $lpid || fail "the host listener failed"
[ "$(cat from_guest.txt)" = "hello from the guest" ] ||
	fail "the host got '$(cat from_guest.txt)'"
[ "$(counter a refused)" = 1 ] || fail "refused: $(counter a refused)"
[ "$(counter a guest_connects)" = 1 ] || fail "guest_connects: $(counter a guest_connects)"
[ -S a.run/vsock ] || fail "no a.run/vsock"
[ "$(stat -c %a a.run/vsock)" = 600 ] || fail "a.run/vsock has mode $(stat -c %a a.run/vsock)"

# ---- 2. load ---------------------------------------------------------------------
out=$("$V" load a.run 5000 "$conns" "$bytes") || fail "load $conns x $bytes: $out"
echo "vm_vsock: $out"
moved=$(counter a to_guest_bytes)
[ "$moved" -ge $((conns * bytes)) ] || fail "to_guest_bytes $moved"
[ "$(counter a credit_violations)" = 0 ] || fail "credit violations"
[ "$(counter a malformed)" = 0 ] || fail "malformed packets"
# The guest's echo server is told every connection ended; none is left.
i=0
while [ "$(counter a connections)" != 0 ] && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
[ "$(counter a connections)" = 0 ] || fail "$(counter a connections) connections left"

# ---- 4. host clients that give up ------------------------------------------------
before=$(counter a host_aborted)
"$V" abort a.run "CONNE" || fail "abort failed"
"$V" abort a.run "" || fail "abort failed"
"$V" abort a.run "CONNECT x
" || fail "abort failed"
i=0
while [ "$(counter a host_aborted)" -lt $((before + 3)) ] && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
[ "$(counter a host_aborted)" -ge $((before + 3)) ] ||
	fail "host_aborted $(counter a host_aborted), was $before"
out=$("$V" load a.run 5000 1 65536) || fail "the next client was not served: $out"
# A port the guest does not listen on: closed without an OK.
echo | "$V" connect a.run 4444 2>refused.txt && fail "a connection to a closed guest port"
grep -q refused refused.txt || fail "vsockcat connect: $(cat refused.txt)"

# ---- 5. a transport reset in the middle of a load ---------------------------------
"$V" load a.run 5000 8 104857600 >reset_load.txt 2>&1 &
load_pid=$!
sleep 1
"$F" vm ctl a.sock vsock-reset | grep -q '"ok": true' || fail "vsock-reset failed"
wait $load_pid && fail "the load went on through a transport reset: $(cat reset_load.txt)"
wait_for "vsock: transport reset" a.txt 10 || fail "the guest did not hear of the reset"
[ "$(counter a transport_resets)" = 1 ] || fail "transport_resets $(counter a transport_resets)"
[ "$(counter a connections)" = 0 ] || fail "connections survived the reset"
# The listeners stay: the host's "vsock" and the guest's echo port.
out=$("$V" load a.run 5000 4 1048576) || fail "no load after the reset: $out"

# ---- 5b. a save in the middle of a load, and a restore -----------------------------
"$V" load a.run 5000 8 104857600 >save_load.txt 2>&1 &
load_pid=$!
sleep 1
out=$("$F" vm ctl a.sock save "$SCRATCH/a.state" --stop) || fail "save: $out"
i=0
while kill -0 "$(cat a.pid)" 2>/dev/null && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
wait $load_pid && fail "the load went on through a save: $(cat save_load.txt)"
resets=$(grep -c "vsock: transport reset" a.txt)
timeout 600 "$F" vm run --restore "$SCRATCH/a.state" --vsock-dir a.run --control a.sock \
	--no-console --console-log a.txt </dev/null >a.log 2>&1 &
echo $! >a.pid
i=0
while [ "$(grep -c "vsock: transport reset" a.txt)" -le "$resets" ] && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
[ "$(grep -c "vsock: transport reset" a.txt)" -gt "$resets" ] ||
	fail "the restored guest did not hear of the transport reset: $(tail -3 a.log)"
[ "$(counter a transport_resets)" = 1 ] || fail "restored: transport_resets $(counter a transport_resets)"
# The guest's listener and the host's socket are there again; data flows.
out=$("$V" load a.run 5000 4 1048576) || fail "no load after the restore: $out"
echo "vm_vsock (after a restore): $out"
stop a

# ---- 3. credit exhaustion ----------------------------------------------------------
start b "idle vsock_echo=5000 vsockbuf=1024"
grep -q "1024 bytes of receive buffer" b.txt || fail "vsockbuf was not taken"
out=$("$V" load b.run 5000 4 262144) || fail "load with 1 KiB of credit: $out"
echo "vm_vsock (1 KiB credit): $out"
[ "$(counter b credit_violations)" = 0 ] || fail "credit violations"
! grep -q "past its credit" b.txt || fail "the device sent past the guest's credit"
stop b

# ---- 6. bad settings ---------------------------------------------------------------
for cid in 0 1 2 4294967295 -3 x; do
	"$F" vm run --kernel "$TESTGUEST" --vsock "$cid" --no-console </dev/null >bad.txt 2>&1 &&
		fail "--vsock $cid was accepted"
	grep -qE "vsock.cid must be|not a guest CID" bad.txt || fail "--vsock $cid: $(cat bad.txt)"
done
"$F" vm run --kernel "$TESTGUEST" --vsock 3 --vsock-dir /nonexistent --no-console </dev/null \
	>bad.txt 2>&1 && fail "a missing run directory was accepted"
grep -q "run directory /nonexistent" bad.txt || fail "--vsock-dir: $(cat bad.txt)"
pass
