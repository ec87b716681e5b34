#!/bin/sh
# Switches and NICs on a real mount: two test guests on a private switch
# ping each other; VLANs keep them apart; the MAC-spoofing guard stops a
# spoofing guest live, and the drop counter says why; with an internal
# switch the host reaches a VM through fsv-<switch> (addressed inside a
# network namespace); an external switch bound to a veth pair reaches an
# address on the far side.  Everything made on the host is removed.
. "$SOURCE_ROOT/tests/lib.sh"
need ip ping
scratch
mount_service
cd "$MNT" || fail "cannot enter the mount"

sw=t$$			# short: the TAP is fsv-$sw
ns=fsvt$$
veth=fsvt$$
net_cleanup()
{
	ip netns del "$ns" 2>/dev/null
	ip link del "${veth}a" 2>/dev/null
	cleanup_service
}
trap net_cleanup EXIT

# guest NAME IP PEER [cmdline words]: a test-guest VM on switch $sw.
guest()
{
	mkdir vms/$1 vms/$1/nics/eth0 || fail "mkdir $1"
	echo "$TESTGUEST" > vms/$1/boot/kernel
	echo 64M > vms/$1/memory/startup
	echo "tests=net ip=$2 peer=$3 idle $4" > vms/$1/boot/cmdline
	echo $sw > vms/$1/nics/eth0/switch || fail "plugging $1 in: $(cat vms/$1/error)"
}

# after FILE: what FILE gained since mark FILE.
mark() { stat -c %s "$1" > "$SCRATCH/mark.$(basename "$(dirname "$1")")"; }
since() { tail -c +$(($(cat "$SCRATCH/mark.$(basename "$(dirname "$1")")") + 1)) "$1"; }
# wait_new TEXT FILE SECONDS: TEXT appears in FILE after its mark.
wait_new()
{
	i=0
	while [ $i -lt $(($3 * 10)) ]; do
		since "$2" | grep -q -- "$1" && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# ---- a private switch ---------------------------------------------------------
mkdir switches/$sw || fail "mkdir switches/$sw: $(tail -3 "$STATE/service.log")"
expect_value switches/$sw/type private
expect_value switches/$sw/host_if ""
guest a 10.0.0.1 10.0.0.2 "ping_every=1"
guest b 10.0.0.2 10.0.0.1 ""
for vm in a b; do
	echo start > vms/$vm/ctl || fail "start $vm: $(cat vms/$vm/error)"
done
for vm in a b; do
	wait_for "TEST net PASS" vms/$vm/console 60 ||
		fail "$vm did not pass net: $(grep -a 'net' vms/$vm/console | tail -3)"
done
[ "$(ls switches/$sw/ports | sort | tr '\n' ' ')" = "a:eth0 b:eth0 " ] ||
	fail "ports: $(ls switches/$sw/ports)"
expect_value switches/$sw/ports/a:eth0/mac "$(cat vms/a/nics/eth0/mac)"
"$FSVISOR" ls --switches "$MNT" | grep -q "^$sw  *private  *-  *-  *2$" ||
	fail "fsvisor ls --switches: $("$FSVISOR" ls --switches "$MNT")"
"$FSVISOR" ls "$MNT" | grep -q "^a  *running  *1  *64M  *0  *1 " ||
	fail "fsvisor ls: $("$FSVISOR" ls "$MNT")"
grep -q " $(cat vms/b/nics/eth0/mac) b:eth0 " switches/$sw/macs ||
	fail "b's MAC is not learned: $(cat switches/$sw/macs)"
grep -q "^link: up" vms/a/nics/eth0/stats || fail "a's link: $(cat vms/a/nics/eth0/stats)"
grep -qE "^port_in_packets: [1-9]" vms/a/nics/eth0/stats || fail "no port counters"
op_is() { [ "$("$FSOP" "$@" | tail -1)" = "$1" ]; }
[ "$("$FSOP" rmdir switches/$sw)" = EBUSY ] || fail "rmdir of a switch in use did not fail with EBUSY"
grep -q "vms/a/nics/eth0" switches/$sw/error || fail "the switch error: $(cat switches/$sw/error)"

# ---- restarts: the service (kill -9), then the switch's worker ----------------------
cd "$SCRATCH" || fail "cd"
stop_service -9
"$FSVISOR" mount "$MNT" --state "$STATE" || fail "the service did not come back"
cd "$MNT" || fail "cd"
[ "$(ls switches/$sw/ports | sort | tr '\n' ' ')" = "a:eth0 b:eth0 " ] ||
	fail "ports after a restart of the service: $(ls switches/$sw/ports)"
mark vms/a/console
wait_new "net: reply from 10.0.0.2" vms/a/console 10 || fail "a lost b when the service restarted"
sleep 5		# a worker that dies young is not restarted
kill -9 "$(cat "$STATE/switches/$sw/worker.pid")"
i=0
until grep -q restarted switches/$sw/error 2>/dev/null || [ $i -ge 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
grep -q "killed by signal 9.*restarted" switches/$sw/error || fail "switch error: $(cat switches/$sw/error)"
mark vms/a/console
wait_new "net: reply from 10.0.0.2" vms/a/console 20 || fail "a does not reach b after the switch restarted"

# ---- VLANs, live ----------------------------------------------------------------
mark vms/a/console
echo "access 10" > vms/a/nics/eth0/vlan || fail "vlan: $(cat vms/a/error)"
echo "access 20" > vms/b/nics/eth0/vlan || fail "vlan: $(cat vms/b/error)"
mark vms/a/console
wait_new "net: no reply from 10.0.0.2" vms/a/console 20 || fail "a still reaches b across VLANs"
mark vms/a/console
sleep 3
since vms/a/console | grep -q "net: reply from" && fail "a reached b on another VLAN"
echo 20 > vms/a/nics/eth0/vlan || fail "vlan: $(cat vms/a/error)"
wait_new "net: reply from 10.0.0.2" vms/a/console 20 || fail "a does not reach b on the same VLAN"
echo untagged > vms/a/nics/eth0/vlan
echo untagged > vms/b/nics/eth0/vlan

# ---- a switch that is down: plugging into it is refused, nothing changes ----------
sw2=u$$
mkdir switches/$sw2 || fail "mkdir switches/$sw2"
kill -9 "$(cat "$STATE/switches/$sw2/worker.pid")"	# young: not restarted
i=0
until grep -q "not restarted" switches/$sw2/error 2>/dev/null || [ $i -ge 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
grep -q "^worker: not running" switches/$sw2/stats || fail "stats: $(cat switches/$sw2/stats)"
expect_write vms/b/nics/eth0/switch $sw2 EIO
expect_value vms/b/nics/eth0/switch $sw
grep -q "^link: up" vms/b/nics/eth0/stats || fail "b lost its port: $(cat vms/b/nics/eth0/stats)"
echo private > switches/$sw2/type || fail "restarting $sw2: $(cat switches/$sw2/error)"
echo $sw2 > vms/b/nics/eth0/switch || fail "moving b: $(cat vms/b/error)"
[ "$(ls switches/$sw2/ports)" = b:eth0 ] || fail "$sw2 ports: $(ls switches/$sw2/ports)"
echo $sw > vms/b/nics/eth0/switch || fail "moving b back: $(cat vms/b/error)"
rmdir switches/$sw2 || fail "rmdir $sw2: $(cat switches/$sw2/error)"
mark vms/a/console
wait_new "net: reply from 10.0.0.2" vms/a/console 20 || fail "a does not reach b after b moved back"

# ---- the MAC-spoofing guard, live --------------------------------------------------
# c sends as 02:00:00:00:00:99, not its NIC's MAC; spoofing is allowed first.
mkdir vms/c vms/c/nics/eth0
echo "$TESTGUEST" > vms/c/boot/kernel
echo 64M > vms/c/memory/startup
echo "tests=net ip=10.0.0.3 peer=10.0.0.2 netmac=02:00:00:00:00:99 idle ping_every=1" > vms/c/boot/cmdline
echo on > vms/c/nics/eth0/mac_spoofing
echo $sw > vms/c/nics/eth0/switch
echo start > vms/c/ctl || fail "start c: $(cat vms/c/error)"
wait_for "TEST net PASS" vms/c/console 60 || fail "c (spoofing allowed) did not pass net"
echo off > vms/c/nics/eth0/mac_spoofing || fail "mac_spoofing: $(cat vms/c/error)"
mark vms/c/console
wait_new "net: no reply from" vms/c/console 20 || fail "the guard did not stop c"
grep -qE "^drops_mac_spoofing: [1-9]" vms/c/nics/eth0/stats ||
	fail "no mac_spoofing drops: $(cat vms/c/nics/eth0/stats)"
echo stop > vms/c/ctl

# ---- an internal switch: the host reaches a VM ------------------------------------
echo internal > switches/$sw/type || fail "type internal: $(cat switches/$sw/error)"
expect_value switches/$sw/host_if fsv-$sw
ip link show fsv-$sw > /dev/null 2>&1 || fail "no fsv-$sw on the host"
[ -d switches/$sw/ports/host ] || fail "no host port: $(ls switches/$sw/ports)"
ip netns add "$ns" || fail "ip netns add"
ip link set fsv-$sw netns "$ns" || fail "moving fsv-$sw"
ip -n "$ns" addr add 10.0.0.9/24 dev fsv-$sw
ip -n "$ns" link set fsv-$sw up
ip netns exec "$ns" ping -c 3 -W 5 10.0.0.2 > "$SCRATCH/ping" 2>&1 ||
	fail "the host cannot ping b: $(cat "$SCRATCH/ping")"
# Home again, so the switch can remove its device.
ip -n "$ns" link set fsv-$sw netns 1
ip netns del "$ns"

# ---- an external switch bound to a veth pair ----------------------------------------
echo private > switches/$sw/type || fail "type private: $(cat switches/$sw/error)"
ip netns add "$ns" || fail "ip netns add"
ip link add "${veth}a" type veth peer name "${veth}b" netns "$ns" || fail "ip link add veth"
ip link set "${veth}a" up
ip -n "$ns" addr add 10.0.0.8/24 dev "${veth}b"
ip -n "$ns" link set "${veth}b" up
echo "${veth}a" > switches/$sw/uplink || fail "uplink: $(cat switches/$sw/error)"
echo external > switches/$sw/type || fail "type external: $(cat switches/$sw/error)"
mkdir vms/e vms/e/nics/eth0
echo "$TESTGUEST" > vms/e/boot/kernel
echo 64M > vms/e/memory/startup
echo "tests=net ip=10.0.0.5 peer=10.0.0.8" > vms/e/boot/cmdline
echo $sw > vms/e/nics/eth0/switch
echo start > vms/e/ctl || fail "start e: $(cat vms/e/error)"
wait_for "TEST net" vms/e/console 60
grep -q "TEST net PASS" vms/e/console ||
	fail "e did not reach 10.0.0.8 through the uplink: $(grep -a 'TEST net' vms/e/console)"
[ -d switches/$sw/ports/uplink ] || fail "no uplink port"

# ---- the end: stop, unplug, delete -----------------------------------------------
for vm in a b e; do echo stop > vms/$vm/ctl; done
for vm in a b c e; do echo > vms/$vm/nics/eth0/switch; done
rmdir switches/$sw || fail "rmdir switches/$sw: $(cat switches/$sw/error 2>&1)"
ip link show "fsv-$sw" > /dev/null 2>&1 && fail "fsv-$sw outlived its switch"
# rmdir leaves nothing in the state directory, not even the monitor's
# worker.exit written just after the worker ends (it did, 2 times in 15).
for i in 1 2 3 4 5 6 7 8 9 10; do
	mkdir switches/gone$i && rmdir switches/gone$i || fail "mkdir/rmdir switches/gone$i"
done
left=$(ls "$STATE/switches")
[ -z "$left" ] || fail "rmdir left state behind: $left: $(ls "$STATE/switches/"*)"
pass
