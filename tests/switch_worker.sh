#!/bin/sh
# The switch worker end to end, with real sockets, a real TAP device and a
# veth pair as the uplink: learning and flooding, VLANs, guards, mirroring,
# rate-limit push-back, full destinations, hang-ups, bad requests, live
# type changes, and clean exits.  tests/tools/frames.c holds the far ends
# of the ports and the packet sockets; it answers one line per command.
. "$SOURCE_ROOT/tests/lib.sh"
need ip jq timeout
[ "$(id -u)" = 0 ] || fail "needs root (TAP devices, network namespaces)"
scratch
F=$FSVISOR
n=$(($$ % 10000))
TAP=fsvW${n}t
TAP2=fsvW${n}s
UP=fsvW${n}u
PEER=fsvW${n}v
NS=fsvW${n}n
SOCK=$SCRATCH/sw.sock
SW_PID=
T_PID=

cleanup()
{
	[ -n "$T_PID" ] && kill "$T_PID" 2>/dev/null
	[ -n "$SW_PID" ] && kill -9 "$SW_PID" 2>/dev/null
	ip link del "$UP" 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	for i in "$TAP" "$TAP2"; do
		ip link del "$i" 2>/dev/null
	done
	cd /
	rm -rf "$SCRATCH"
}
trap cleanup EXIT
fail_hook()
{
	echo "--- switch log:" >&2
	tail -20 "$SCRATCH/sw.log" >&2
}

start_switch()
{
	"$F" switch run --name sw --control "$SOCK" "$@" 2>>"$SCRATCH/sw.log" &
	SW_PID=$!
	i=0
	while ! "$F" switch ctl "$SOCK" status >/dev/null 2>&1 && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	"$F" switch ctl "$SOCK" status >/dev/null 2>&1 || fail "the switch does not answer"
}

# stop_switch STATUS: wait for the worker to end with STATUS.
wait_switch()
{
	i=0
	while kill -0 "$SW_PID" 2>/dev/null && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	wait "$SW_PID"
	st=$?
	SW_PID=
	[ "$st" -eq "$1" ] || fail "the switch exited $st, expected $1"
}

start_frames()
{
	rm -f t.in t.out
	mkfifo t.in t.out
	"$FRAMES" --control "$SOCK" <t.in >t.out 2>t.err &
	T_PID=$!
	exec 3>t.in 4<t.out
}

stop_frames()
{
	echo quit >&3
	exec 3>&- 4<&-
	wait "$T_PID"
	T_PID=
}

# t COMMAND...: one command to the frames tool; its answer in $R.
t()
{
	echo "$*" >&3
	read -r R <&4 || fail "the frames tool died: $(cat t.err)"
}
tok()
{
	t "$@"
	case $R in ok*) ;; *) fail "$*: $R" ;; esac
}
# got END TEXT [MS]: the next test frame on END matches TEXT.
got()
{
	t recv "$1" "${3:-2000}"
	case "$R" in *"$2"*) ;; *) fail "on $1 expected a frame with '$2', got '$R'" ;; esac
}
nothing()
{
	t recv "$1" "${2:-300}"
	[ "$R" = none ] || fail "$1 got a frame it should not have: $R"
}
# error_has JSON-REQUEST TEXT: the reply is an error containing TEXT.
error_has()
{
	t ctl "$1"
	case "$R" in *'"ok":false'*"$2"*) ;; *) fail "$1: expected an error with '$2', got '$R'" ;; esac
}
status() { "$F" switch ctl "$SOCK" status; }
# The kernel counts promiscuity users; ip's flags show only the user's own.
promisc() { ip -d link show "$UP" | grep -q 'promiscuity [1-9]'; }
# drops PORT WHY: a port's drop counter.
drops() { status | jq -r ".ports[] | select(.name == \"$1\") | .drops.$2"; }
pstat() { status | jq -r ".ports[] | select(.name == \"$1\") | .$2"; }
policy() { tok ctl "{\"cmd\":\"port-set\",\"name\":\"$1\",\"policy\":$2}"; }

A=02:00:00:00:00:0a
B=02:00:00:00:00:0b
C=02:00:00:00:00:0c
D=02:00:00:00:00:0d
E=02:00:00:00:00:0e
M=02:00:00:00:00:0f
V=02:00:00:00:00:01
H=02:00:00:00:00:02
BC=ff:ff:ff:ff:ff:ff

# ---- command line --------------------------------------------------------
expect_status 2 "$F" switch run --control "$SOCK"
expect_status 2 "$F" switch run --name sw
expect_status 2 "$F" switch run --name 'bad/name' --control "$SOCK"
expect_status 2 "$F" switch run --name sw --control "$SOCK" --type bogus
expect_status 2 "$F" switch run --name sw --control "$SOCK" --type internal
expect_status 2 "$F" switch run --name sw --control "$SOCK" --type external --host-if "$TAP"
expect_status 2 "$F" switch run --name sw --control "$SOCK" --host-if "$TAP"
expect_status 2 "$F" switch ctl "$SOCK" dance
"$F" switch --help | grep -q 'fsvisor switch run' || fail "switch --help"

# ---- a private switch: learning and flooding ----------------------------
start_switch
expect_status 1 "$F" switch run --name sw2 --control "$SOCK"
"$F" switch run --name sw2 --control "$SOCK" 2>&1 | grep -q "in use" ||
	fail "a live control socket is not reported as in use"
[ "$(stat -c %a "$SOCK")" = 600 ] || fail "control socket mode $(stat -c %a "$SOCK")"
status | jq -e '.ok and .type == "private" and .host_if == null and .ports == []' >/dev/null ||
	fail "status of a new private switch: $(status)"
start_frames
tok port a/0 "{\"mac\":\"$A\"}"
tok port b/0 "{\"mac\":\"$B\"}"
tok port c/0 "{\"mac\":\"$C\"}"

# Unknown destination: flooded to every other port.
tok send a/0 $B $A id=1
got b/0 "dst=$B src=$A vlan=none len=60 id=1"
got c/0 "id=1"
nothing a/0
# B answers: A is known, so only A gets it; then A to B reaches B alone.
tok send b/0 $A $B id=2
got a/0 "src=$B vlan=none len=60 id=2"
nothing c/0
tok send a/0 $B $A id=3
got b/0 "id=3"
nothing c/0
"$F" switch ctl "$SOCK" macs | jq -e --arg a $A --arg b $B \
	'[.macs[] | select(.mac == $a and .port == "a/0" and .vlan == 0)] | length == 1' >/dev/null ||
	fail "macs does not show A on a/0: $("$F" switch ctl "$SOCK" macs)"
status | jq -e '.mac_count == 2' >/dev/null || fail "mac_count: $(status | jq .mac_count)"
# Broadcast reaches everyone else.
tok send c/0 $BC $C id=4
got a/0 "dst=$BC src=$C" && got b/0 "id=4"
nothing c/0
[ "$(pstat a/0 in_packets)" = 2 ] || fail "a/0 in_packets $(pstat a/0 in_packets)"
[ "$(pstat b/0 out_packets)" = 3 ] || fail "b/0 out_packets $(pstat b/0 out_packets)"

# ---- VLANs ------------------------------------------------------------------
policy a/0 '{"vlan":{"mode":"access","id":10}}'
policy b/0 '{"vlan":{"mode":"access","id":10}}'
policy c/0 '{"vlan":{"mode":"access","id":20}}'
tok port d/0 "{\"mac\":\"$D\",\"vlan\":{\"mode\":\"trunk\",\"allowed\":[[10,20]],\"native\":0}}"
tok port e/0 "{\"mac\":\"$E\",\"vlan\":{\"mode\":\"trunk\",\"allowed\":[10],\"native\":0}}"
tok send a/0 $BC $A id=10
got b/0 "vlan=none len=60 id=10"
got d/0 "vlan=10 prio=0 len=64 id=10"
got e/0 "vlan=10"
nothing c/0
tok send c/0 $BC $C id=11
got d/0 "vlan=20 prio=0 len=64 id=11"
nothing a/0 && nothing b/0 && nothing e/0
# A tagged frame leaves access ports untagged and keeps its priority on trunks.
tok send d/0 $BC $D vlan=10 prio=5 id=12
got a/0 "vlan=none len=56 id=12" && got b/0 "id=12"
got e/0 "vlan=10 prio=5 len=60 id=12"
nothing c/0
tok send d/0 $BC $D vlan=30 id=13
nothing a/0 && nothing c/0 && nothing e/0
[ "$(drops d/0 vlan)" = 1 ] || fail "d/0 vlan drops: $(drops d/0 vlan)"
status | jq -e '.ports[] | select(.name == "d/0") | .vlan == {"mode":"trunk","allowed":[[10,20]],"native":0}' >/dev/null ||
	fail "d/0 vlan in status: $(status | jq -c '.ports[] | select(.name == "d/0") | .vlan')"
for p in a/0 b/0 c/0; do policy $p '{"vlan":{"mode":"untagged"}}'; done
tok ctl '{"cmd":"port-remove","name":"d/0"}'
tok ctl '{"cmd":"port-remove","name":"e/0"}'
status | jq -e '[.ports[].name] == ["a/0","b/0","c/0"]' >/dev/null ||
	fail "ports after port-remove: $(status | jq -c '[.ports[].name]')"

# ---- MAC spoofing, guards, mirroring -------------------------------------
tok send a/0 $BC 02:00:00:00:00:99 id=20
nothing b/0 && nothing c/0
[ "$(drops a/0 mac_spoofing)" = 1 ] || fail "mac_spoofing drops: $(drops a/0 mac_spoofing)"
policy a/0 '{"mac_spoofing":true}'
tok send a/0 $BC 02:00:00:00:00:99 id=21
got b/0 "src=02:00:00:00:00:99 vlan=none len=60 id=21" && got c/0 "id=21"
policy a/0 '{"mac_spoofing":false,"dhcp_guard":true,"router_guard":true}'
tok send a/0 $BC $A kind=dhcp id=22
tok send a/0 $BC $A kind=ra id=23
nothing b/0 && nothing c/0
[ "$(drops a/0 dhcp_guard)" = 1 ] || fail "dhcp_guard drops: $(drops a/0 dhcp_guard)"
[ "$(drops a/0 router_guard)" = 1 ] || fail "router_guard drops: $(drops a/0 router_guard)"
tok send c/0 $BC $C kind=dhcp id=24
got a/0 "id=24" && got b/0 "id=24"
tok send a/0 $C $A id=26
got c/0 "id=26"
nothing b/0
tok port m/0 "{\"mac\":\"$M\",\"mirror\":\"destination\"}"
policy a/0 '{"mirror":"source"}'
tok send b/0 $A $B id=25
got a/0 "id=25" && got m/0 "dst=$A src=$B vlan=none len=60 id=25"
nothing c/0
policy a/0 '{"mirror":"none","dhcp_guard":false,"router_guard":false}'
tok close m/0

# ---- rate limit: push-back, not loss ------------------------------------
tok send b/0 $A $B id=30
got a/0 "id=30"
policy a/0 '{"bandwidth_max":4000000}'
status | jq -e '.ports[] | select(.name == "a/0") | .bandwidth_max == 4000000' >/dev/null ||
	fail "bandwidth_max not in status"
in0=$(pstat a/0 in_packets)
tok flood a/0 $B $A 400 1000
tok count b/0 1500
set -- $R
[ "$2" = 400 ] || fail "rate-limited flood: b/0 got $2 of 400 frames"
# 400 kB at 4 Mbit/s, less the 64 KiB the bucket starts with: about 0.67 s.
awk -v s="$3" 'BEGIN { exit !(s >= 0.55 && s < 5) }' ||
	fail "400 frames of 1000 bytes at 4 Mbit/s arrived in $3 s"
[ $(( $(pstat a/0 in_packets) - in0 )) = 400 ] || fail "a/0 in_packets after the flood"
[ "$(drops b/0 no_room)" = 0 ] || fail "no_room drops under a rate limit: $(drops b/0 no_room)"
policy a/0 '{"bandwidth_max":0}'

# ---- a backlog longer than one turn (8 passes of 64) ----------------------
# The worker's polls are edge-triggered: frames left after a port's turn
# must get another turn without a new wake-up.  A rate limit stops
# reading a/0 once its bucket (64 KiB) is spent, so about 900 of 1000
# frames queue behind it; lifting the limit must deliver every one.
tok sndbuf a/0 8388608
policy a/0 '{"bandwidth_max":8000}'
tok flood a/0 $B $A 1000 600
policy a/0 '{"bandwidth_max":0}'
tok count b/0 1500
set -- $R
[ "$2" = 1000 ] || fail "a backlog of 1000 frames: b/0 got $2"
[ "$(drops b/0 no_room)" = 0 ] || fail "no_room drops from the backlog: $(drops b/0 no_room)"

# ---- a destination that does not read: no_room --------------------------
tok flood a/0 $B $A 3000 1000
tok count b/0 500
set -- $R
got=$2
nr=$(drops b/0 no_room)
[ "$got" -lt 3000 ] && [ "$nr" -gt 0 ] && [ $((got + nr)) -eq 3000 ] ||
	fail "full destination: received $got, no_room $nr, of 3000"
[ "$(drops a/0 no_room)" = 0 ] || fail "no_room counted on the sender"

# ---- hang-up ---------------------------------------------------------------
tok close b/0
i=0
while status | jq -e '.ports[] | select(.name == "b/0")' >/dev/null && [ $i -lt 20 ]; do
	sleep 0.1
	i=$((i + 1))
done
status | jq -e '[.ports[].name] == ["a/0","c/0"]' >/dev/null ||
	fail "b/0 still listed after its peer hung up: $(status | jq -c '[.ports[].name]')"
"$F" switch ctl "$SOCK" macs | jq -e '[.macs[] | select(.port == "b/0")] == []' >/dev/null ||
	fail "b/0's MACs outlived it"
tok send a/0 $B $A id=40
got c/0 "id=40"
# The largest frame passes; one byte more is malformed.
tok send a/0 $B $A len=65535 id=41
got c/0 "dst=$B src=$A vlan=none len=65535 id=41"
tok send a/0 $B $A len=65536 id=42
nothing c/0
[ "$(drops a/0 malformed)" = 1 ] || fail "a 65536-byte frame: malformed drops $(drops a/0 malformed)"
# A name whose peer hung up can be connected again at once.
tok port b/0 "{\"mac\":\"$B\"}"
tok close b/0
tok port b/0 "{\"mac\":\"$B\"}"
tok close b/0

# ---- bad requests ------------------------------------------------------------
error_has '{"cmd":"nope"}' "unknown command 'nope'"
error_has '{"hello":1}' 'needs a \"cmd\"'
error_has '{"cmd":"port-add","name":"x/0","policy":{"mac":"02:00:00:00:01:01"}}' "exactly one socket"
t addfd pipe x/0 '{"mac":"02:00:00:00:01:01"}'
case "$R" in *AF_UNIX\ SOCK_SEQPACKET*) ;; *) fail "pipe as a port: $R" ;; esac
t addfd stream x/0 '{"mac":"02:00:00:00:01:01"}'
case "$R" in *AF_UNIX\ SOCK_SEQPACKET*) ;; *) fail "stream socket as a port: $R" ;; esac
t addfd dgram x/0 '{"mac":"02:00:00:00:01:01"}'
case "$R" in *AF_UNIX\ SOCK_SEQPACKET*) ;; *) fail "datagram socket as a port: $R" ;; esac
t addfd two x/0 '{"mac":"02:00:00:00:01:01"}'
case "$R" in *"exactly one socket"*"got 2"*) ;; *) fail "two descriptors: $R" ;; esac
t addfd stream a/0 '{"mac":"02:00:00:00:01:01"}'
case "$R" in *"already connected"*) ;; *) fail "a name in use: $R" ;; esac
for bad in 'noslash|VM/NIC' '/x|VM/NIC' 'a/.x|VM/NIC'; do
	t addfd two "${bad%%|*}" '{"mac":"02:00:00:00:01:01"}'
	case "$R" in *"${bad#*|}"*) ;; *) fail "port name ${bad%%|*}: $R" ;; esac
done
for bad in '{"mac":"zz:00:00:00:00:01"}|52:54:00:12:34:56' \
	'{}|needs its NIC' \
	'{"mac":"02:00:00:00:01:01","vlan":{"mode":"access"}}|needs an \"id\"' \
	'{"mac":"02:00:00:00:01:01","vlan":{"mode":"access","id":5000}}|1 to 4094' \
	'{"mac":"02:00:00:00:01:01","vlan":{"mode":"trunk"}}|needs \"allowed\"' \
	'{"mac":"02:00:00:00:01:01","vlan":{"mode":"trunk","allowed":[[20,10]]}}|low to high' \
	'{"mac":"02:00:00:00:01:01","vlan":{"mode":"trunk","allowed":[1],"native":4095}}|native' \
	'{"mac":"02:00:00:00:01:01","vlan":{"mode":"untagged","id":3}}|no field' \
	'{"mac":"02:00:00:00:01:01","vlan":{"mode":"hybrid"}}|unknown VLAN mode' \
	'{"mac":"02:00:00:00:01:01","mirror":"both"}|none, source or destination' \
	'{"mac":"02:00:00:00:01:01","bandwidth_max":-1}|whole number' \
	'{"mac":"02:00:00:00:01:01","dhcp_guard":"yes"}|true or false' \
	'{"mac":"02:00:00:00:01:01","colour":"blue"}|unknown policy field' \
	'[1]|must be an object'; do
	t port x/0 "${bad%%|*}"
	case "$R" in error*"${bad#*|}"*) ;; *) fail "policy ${bad%%|*}: $R" ;; esac
done
# The engine's own check speaks too (a multicast MAC for a NIC).
t port x/0 '{"mac":"03:00:00:00:00:01"}'
case "$R" in error*) ;; *) fail "a multicast NIC MAC was accepted: $R" ;; esac
error_has '{"cmd":"port-set","name":"zz/0","policy":{}}' "no port named zz/0"
error_has '{"cmd":"port-set","name":"a/0"}' 'needs a \"policy\"'
error_has '{"cmd":"port-set","name":"a/0","policy":{"vlan":{"mode":"access","id":0}}}' "1 to 4094"
error_has '{"cmd":"port-remove","name":"zz/0"}' "no port named zz/0"
error_has '{"cmd":"configure","type":"public"}' "private, internal or external"
error_has '{"cmd":"configure","type":"internal"}' "needs host_if"
error_has "{\"cmd\":\"configure\",\"type\":\"external\",\"host_if\":\"$TAP\"}" "needs an uplink"
error_has "{\"cmd\":\"configure\",\"type\":\"internal\",\"host_if\":\"$TAP\",\"uplink\":\"lo\"}" "only an external"
error_has "{\"cmd\":\"configure\",\"type\":\"external\",\"host_if\":\"$TAP\",\"uplink\":\"fsvWnone\"}" "no interface named 'fsvWnone'"
error_has "{\"cmd\":\"configure\",\"type\":\"external\",\"host_if\":\"$TAP\",\"uplink\":\"lo\"}" "loopback"
error_has "{\"cmd\":\"configure\",\"type\":\"internal\",\"host_if\":\"lo\"}" "already exists"
error_has "{\"cmd\":\"configure\",\"type\":\"internal\",\"host_if\":\"much-too-long-name\"}" "not a usable interface name"
error_has '{"cmd":"status"}x' "one JSON object"
status | jq -e '.type == "private" and ([.ports[].name] == ["a/0","c/0"])' >/dev/null ||
	fail "failed requests changed the switch: $(status | jq -c '[.type, [.ports[].name]]')"
ip link show "$TAP" >/dev/null 2>&1 && fail "a refused configure left $TAP behind"

# ---- internal: the host's TAP -------------------------------------------
tok ctl "{\"cmd\":\"configure\",\"type\":\"internal\",\"host_if\":\"$TAP\"}"
ip -o link show "$TAP" | grep -q '<[^>]*UP' || fail "$TAP is not up: $(ip -o link show "$TAP")"
[ -e "/sys/class/net/$TAP/tun_flags" ] || fail "$TAP is not a TAP device"
status | jq -e --arg t "$TAP" '.type == "internal" and .host_if == $t and
	([.ports[] | select(.kind == "host" and .name == "host")] | length == 1)' >/dev/null ||
	fail "status of an internal switch: $(status | jq -c '[.type, .host_if, [.ports[].name]]')"
tok packet host "$TAP"
tok send a/0 $BC $A id=50
got host "dst=$BC src=$A vlan=none len=60 id=50"
got c/0 "id=50"
tok send host $A $H id=51
got a/0 "dst=$A src=$H vlan=none len=60 id=51"
nothing c/0
error_has '{"cmd":"port-set","name":"host","policy":{"mac":"02:00:00:00:00:02"}}' "no MAC of its own"
error_has '{"cmd":"port-remove","name":"host"}' "configure"
error_has '{"cmd":"port-add","name":"host","policy":{}}' "VM/NIC"
# A new host_if replaces the TAP, keeping the host port's policy.
policy host '{"vlan":{"mode":"access","id":7}}'
tok ctl "{\"cmd\":\"configure\",\"type\":\"internal\",\"host_if\":\"$TAP2\"}"
ip link show "$TAP" >/dev/null 2>&1 && fail "the old TAP $TAP is still there"
ip link show "$TAP2" >/dev/null 2>&1 || fail "the new TAP $TAP2 is missing"
status | jq -e '.ports[] | select(.name == "host") | .vlan.id == 7' >/dev/null ||
	fail "the host port lost its policy"
tok close host
tok ctl '{"cmd":"configure","type":"private"}'
ip link show "$TAP2" >/dev/null 2>&1 && fail "$TAP2 outlived the change to private"
status | jq -e '.type == "private" and .host_if == null and ([.ports[] | select(.kind == "host")] == [])' >/dev/null ||
	fail "status after configure private: $(status | jq -c .)"

# ---- external: a veth pair as the uplink --------------------------------
ip netns add "$NS" || fail "ip netns add"
ip link add "$UP" type veth peer name "$PEER" || fail "ip link add veth"
ip link set "$PEER" netns "$NS" && ip -n "$NS" link set "$PEER" up || fail "veth into $NS"
error_has "{\"cmd\":\"configure\",\"type\":\"internal\",\"host_if\":\"$UP\"}" "already exists"
tok ctl "{\"cmd\":\"configure\",\"type\":\"external\",\"host_if\":\"$TAP\",\"uplink\":\"$UP\"}"
promisc || fail "$UP is not promiscuous"
status | jq -e --arg u "$UP" '.type == "external" and .uplink == $u and
	([.ports[] | select(.kind == "uplink" and .name == "uplink")] | length == 1)' >/dev/null ||
	fail "status of an external switch: $(status | jq -c '[.type, .uplink, [.ports[].name]]')"
error_has "{\"cmd\":\"configure\",\"type\":\"external\",\"host_if\":\"$TAP\",\"uplink\":\"$TAP\"}" "own host interface"
tok packet wire "$PEER" "$NS"
tok packet host "$TAP"
tok send a/0 $BC $A id=60
got wire "dst=$BC src=$A vlan=none len=60 id=60"
got host "id=60" && got c/0 "id=60"
nothing a/0
tok send wire $A $V id=61
got a/0 "dst=$A src=$V vlan=none len=60 id=61"
nothing c/0 && nothing host
# Tags the kernel takes off frames on the uplink are put back.
policy uplink '{"vlan":{"mode":"trunk","allowed":[10],"native":0}}'
policy a/0 '{"vlan":{"mode":"access","id":10}}'
tok send wire $A $V vlan=10 prio=3 id=62
got a/0 "dst=$A src=$V vlan=none len=56 id=62"
tok send a/0 $V $A id=63
got wire "dst=$V src=$A vlan=10 prio=0 len=64 id=63"
nothing c/0
# Untagged on the trunk is the native (untagged) network, where A is not.
tok send wire $A $V id=64
nothing a/0
got c/0 "id=64" && got host "id=64"
# Nothing we send on the uplink comes back in, and neither does what the
# host itself sends out of that NIC (it reaches VMs through its TAP).
[ "$(pstat uplink in_packets)" -lt 20 ] || fail "uplink in_packets $(pstat uplink in_packets)"
tok packet hostnic "$UP"
tok send hostnic $BC 02:00:00:00:00:03 id=65
got wire "src=02:00:00:00:00:03 vlan=none len=60 id=65"
nothing c/0 && nothing host
tok close hostnic
tok ctl "{\"cmd\":\"configure\",\"type\":\"internal\",\"host_if\":\"$TAP\"}"
promisc && fail "$UP stayed promiscuous after unbinding"
status | jq -e '.uplink == null and ([.ports[] | select(.kind == "uplink")] == [])' >/dev/null ||
	fail "uplink still listed after configure internal"
tok ctl "{\"cmd\":\"configure\",\"type\":\"external\",\"host_if\":\"$TAP\",\"uplink\":\"$UP\"}"
promisc || fail "$UP is not promiscuous again"
stop_frames

# ---- SIGTERM: exit 0, TAP removed, promiscuity dropped, socket removed -----
kill -TERM "$SW_PID"
wait_switch 0
ip link show "$TAP" >/dev/null 2>&1 && fail "$TAP outlived SIGTERM"
promisc && fail "$UP stayed promiscuous after exit"
[ -e "$SOCK" ] && fail "the control socket outlived the worker"

# ---- started external; a stale socket is replaced; "stop" exits 0 -----------
start_switch --type external --host-if "$TAP" --uplink "$UP"
status | jq -e '.type == "external"' >/dev/null || fail "started external: $(status)"
ip link show "$TAP" >/dev/null 2>&1 || fail "--host-if $TAP was not created"
kill -9 "$SW_PID"
wait "$SW_PID" 2>/dev/null
SW_PID=
[ -S "$SOCK" ] || fail "no stale socket to test with"
ip link show "$TAP" >/dev/null 2>&1 && fail "$TAP outlived a killed worker"
start_switch --type internal --host-if "$TAP"
"$F" switch ctl "$SOCK" stop >/dev/null || fail "stop"
wait_switch 0
ip link show "$TAP" >/dev/null 2>&1 && fail "$TAP outlived stop"
# A TAP name in use: the worker cannot start.
ip tuntap add dev "$TAP2" mode tap || fail "ip tuntap add"
"$F" switch run --name sw --control "$SOCK" --type internal --host-if "$TAP2" 2>err.txt
[ $? -eq 1 ] || fail "a taken --host-if did not exit 1"
grep -q "already exists" err.txt || fail "no reason for the taken TAP: $(cat err.txt)"
ip link show "$TAP2" >/dev/null 2>&1 || fail "the worker removed a TAP that was not its own"
ip link del "$TAP2"
if grep -qE "Sanitizer|runtime error" "$SCRATCH/sw.log"; then
	grep -A30 -E "Sanitizer|runtime error" "$SCRATCH/sw.log" | head -60 >&2
	fail "the switch log has a sanitizer report"
fi
pass
