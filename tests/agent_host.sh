#!/bin/sh
# The Linux agent (guest/agent/, fsvisor-agent) on the host, against the
# service's side of the protocol: a real mount with a running VM whose
# guest runs no agent, and fsvisor-agent connected with --socket to the
# Unix socket the service listens on for that VM (what the vsock device
# would connect a guest's connection to), over the same frames.
#  1. it is built statically; `fsvisor agent install` puts it and its
#     unit, enabled, into a root directory
#  2. hello and heartbeat; data exchange both ways (files in its state
#     directory, and `fsvisor-agent kvp set`); the intrinsic items
#     against what the host itself reports (hostname -f, os-release,
#     uname, ip -j addr)
#  3. time: a clock an hour off (--fake-clock, the agent's one seam to
#     the clock) is stepped to the host's
#  4. freeze and thaw of a loop-mounted ext4 (--freeze-mount): a write
#     waits while it is frozen; the deadline thaws it by itself; host
#     items that came meanwhile are written after the thaw
#  5. Copy-VMFile: a file with its mode, directories made, overwrite
#  6. shutdown through the agent, with the reason
. "$SOURCE_ROOT/tests/lib.sh"
need timeout grep sed sort tr jq ip hostname uname ldd sha256sum head stat cmp truncate
need mkfs.ext4 losetup mount umount fsfreeze
[ "$(id -u)" = 0 ] || fail "this test needs root (loop devices, FIFREEZE)"
scratch
A=$BUILD_ROOT/guest/agent/fsvisor-agent
[ -x "$A" ] || fail "no $A"
loop=""
agent_pid=""
STATE=""

cleanup_all()
{
	[ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null
	# Whatever happened, nothing stays frozen or mounted.
	[ -d "$SCRATCH/fs" ] && fsfreeze -u "$SCRATCH/fs" 2>/dev/null
	[ -d "$SCRATCH/fs" ] && umount "$SCRATCH/fs" 2>/dev/null
	[ -n "$loop" ] && losetup -d "$loop" 2>/dev/null
	if [ -n "$STATE" ]; then
		cleanup_service
	else
		rm -rf "$SCRATCH"
	fi
}

fail_hook()
{
	echo "--- agent log ---" >&2
	tail -n 20 "$SCRATCH/agent.log" >&2
	echo "--- service log (last 20 lines) ---" >&2
	tail -n 20 "$STATE/service.log" >&2
}

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

trap cleanup_all EXIT

# ---- 1. built statically; installed into a root -----------------------------------
ldd "$A" > ldd.txt 2>&1 && fail "fsvisor-agent is dynamically linked: $(cat ldd.txt)"
grep -q "not a dynamic executable" ldd.txt || fail "ldd: $(cat ldd.txt)"
"$A" --version | grep -q "^fsvisor-agent " || fail "--version: $("$A" --version)"
mkdir root
"$FSVISOR" agent install root > install.txt || fail "agent install: $(cat install.txt)"
cmp root/usr/local/sbin/fsvisor-agent "$A" || fail "the installed agent differs"
[ "$(stat -c %a root/usr/local/sbin/fsvisor-agent)" = 755 ] || fail "mode of the installed agent"
grep -q "^ExecStart=/usr/local/sbin/fsvisor-agent" root/etc/systemd/system/fsvisor-agent.service ||
	fail "the unit: $(cat root/etc/systemd/system/fsvisor-agent.service)"
[ "$(readlink root/etc/systemd/system/multi-user.target.wants/fsvisor-agent.service)" = \
	../fsvisor-agent.service ] || fail "the unit is not enabled"
"$FSVISOR" agent install "$SCRATCH/nonexistent" 2>/dev/null && fail "install into a missing root"

# ---- a VM without an agent of its own, and ours on its socket ------------------------
truncate -s 64M fs.img
mkfs.ext4 -q -F fs.img || fail "mkfs.ext4"
loop=$(losetup -f --show fs.img) || fail "losetup"
mkdir fs
mount "$loop" fs || fail "mount $loop"
mount_service
trap cleanup_all EXIT
cd "$MNT" || fail "cannot enter the mount"
I=vms/g/integration
mkdir vms/g
echo "$TESTGUEST" > vms/g/boot/kernel
echo idle > vms/g/boot/cmdline
echo 128M > vms/g/memory/startup
echo start > vms/g/ctl || fail "start: $(cat vms/g/error)"
S=$STATE/vms/g/vsock_18755
[ -S "$S" ] || fail "the service does not listen on $S"
"$A" --socket "$S" --state-dir "$SCRATCH/agent" --fake-clock 3600 --freeze-mount "$SCRATCH/fs" \
	--poweroff-cmd "echo \"\$FSVISOR_REASON\" > $SCRATCH/reason; $FSVISOR vm ctl $STATE/vms/g/ctl.sock stop" \
	> "$SCRATCH/agent.log" 2>&1 &
agent_pid=$!

# ---- 2. hello, heartbeat, data exchange ------------------------------------------------
wait_value "$I/agent" "fsvisor-agent $("$A" --version | cut -d' ' -f2), offers heartbeat shutdown time_sync kvp backup guest_services" 5 ||
	fail "agent: $(cat "$I/agent")"
wait_value "$I/heartbeat" "^ok since" 5 || fail "heartbeat: $(cat "$I/heartbeat")"
echo "from the host" > "$I/kvp/host/Greeting"
i=0
while [ "$(cat "$SCRATCH/agent/kvp/host/Greeting" 2>/dev/null)" != "from the host" ] && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
[ "$(cat "$SCRATCH/agent/kvp/host/Greeting" 2>/dev/null)" = "from the host" ] ||
	fail "the agent did not write the host item"
rm "$I/kvp/host/Greeting"
i=0
while [ -e "$SCRATCH/agent/kvp/host/Greeting" ] && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
[ -e "$SCRATCH/agent/kvp/host/Greeting" ] && fail "the agent kept a deleted host item"
echo "from the guest" > "$SCRATCH/agent/kvp/guest/Color"
wait_value "$I/kvp/guest/Color" "^from the guest$" 5 || fail "kvp/guest/Color: $(cat "$I/kvp/guest/Color" 2>&1)"
"$A" --state-dir "$SCRATCH/agent" kvp set Shape round || fail "fsvisor-agent kvp set"
wait_value "$I/kvp/guest/Shape" "^round$" 5 || fail "kvp/guest/Shape"
"$A" --state-dir "$SCRATCH/agent" kvp del Shape || fail "fsvisor-agent kvp del"
i=0
while [ -e "$I/kvp/guest/Shape" ] && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
[ -e "$I/kvp/guest/Shape" ] && fail "the guest's deletion did not reach the host"
"$A" --state-dir "$SCRATCH/agent" kvp set "bad/key" x 2>/dev/null && fail "a key with a /"

# The intrinsic items, against what the host itself says.
expect_value "$I/kvp/intrinsic/FullyQualifiedDomainName" "$(hostname -f 2>/dev/null || hostname)"
name=$(. /etc/os-release && echo "$NAME") version=$(. /etc/os-release && echo "${VERSION_ID:-}")
expect_value "$I/kvp/intrinsic/OSName" "$name"
expect_value "$I/kvp/intrinsic/OSVersion" "$version"
expect_value "$I/kvp/intrinsic/OSBuildNumber" "$(uname -r)"
expect_value "$I/kvp/intrinsic/ProcessorArchitecture" "$(uname -m)"
expect_value "$I/kvp/intrinsic/IntegrationServicesVersion" "$("$A" --version | cut -d' ' -f2)"
for fam in inet inet6; do
	want=$(ip -j addr | jq -r --arg f $fam '.[] | select(.ifname != "lo") | .addr_info[] |
		select(.family == $f) | .local' | sort)
	k=NetworkAddressIPv4
	[ $fam = inet6 ] && k=NetworkAddressIPv6
	got=$(tr ';' '\n' < "$I/kvp/intrinsic/$k" | sed '/^$/d' | sort)
	[ "$got" = "$want" ] || fail "$k: '$(cat "$I/kvp/intrinsic/$k")', ip says '$(echo $want)'"
done

# ---- 3. time ---------------------------------------------------------------------------
# An hour, give or take the measurement: -3600.000 or -3599.999 s.
i=0
while ! grep -qE "clock stepped by -(3600|3599)\." "$SCRATCH/agent.log" && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
grep -qE "clock stepped by -(3600|3599)\." "$SCRATCH/agent.log" ||
	fail "the clock was not stepped by an hour: $(grep stepped "$SCRATCH/agent.log")"
wait_value "$I/time_sync" "^[-+]0\.[0-9]+ s at " 12 || fail "time_sync: $(cat "$I/time_sync")"

# ---- 4. freeze and thaw -----------------------------------------------------------------
echo "freeze 30" > "$I/backup" || fail "freeze: $(cat vms/g/error)"
expect_value "$I/backup" frozen
# A write waits while the file system is frozen (unkillable: it is waited for).
( echo written > "$SCRATCH/fs/during" ) &
writer=$!
sleep 1
[ -s "$SCRATCH/fs/during" ] && fail "a write went through a frozen file system"
kill -0 $writer 2>/dev/null || fail "the write did not wait"
# Frozen: a host item waits for the thaw; the heartbeat stays ok (refused, but answered).
echo later > "$I/kvp/host/Later"
# Past the 6 s a heartbeat may go unanswered: refused while frozen, it still counts.
sleep 6.5
[ -e "$SCRATCH/agent/kvp/host/Later" ] && fail "a host item was written while frozen"
grep -q "^ok since" "$I/heartbeat" || fail "heartbeat while frozen: $(cat "$I/heartbeat")"
expect_write "$I/backup" freeze EBUSY
echo thaw > "$I/backup" || fail "thaw: $(cat vms/g/error)"
wait $writer || fail "the waiting write failed"
[ "$(cat "$SCRATCH/fs/during")" = written ] || fail "the write after the thaw"
expect_value "$I/backup" thawed
[ "$(cat "$SCRATCH/agent/kvp/host/Later" 2>/dev/null)" = later ] || fail "the item that came while frozen"
# The deadline: the agent thaws by itself.
echo "freeze 2" > "$I/backup" || fail "freeze 2: $(cat vms/g/error)"
expect_value "$I/backup" frozen
wait_value "$I/backup" "^thawed$" 6 || fail "not thawed after the deadline: $(cat "$I/backup")"
grep -q "did not thaw in time: thawed 1 file systems by itself" "$SCRATCH/agent.log" ||
	fail "no word of the thaw by itself: $(tail -3 "$SCRATCH/agent.log")"
echo after > "$SCRATCH/fs/after" || fail "a write after the deadline"

# ---- 5. Copy-VMFile -------------------------------------------------------------------
head -c 300000 /dev/urandom > "$SCRATCH/src.bin"
chmod 640 "$SCRATCH/src.bin"
expect_write "$I/copy" "$SCRATCH/src.bin $SCRATCH/dst/sub/copy.bin" EPERM	# off by default
echo on > "$I/enabled/guest_services"
expect_write "$I/copy" "$SCRATCH/src.bin $SCRATCH/dst/sub/copy.bin" ENOENT	# no directory
echo "$SCRATCH/src.bin $SCRATCH/dst/sub/copy.bin mkdirs" > "$I/copy" || fail "copy: $(cat vms/g/error)"
[ "$(sha256sum < "$SCRATCH/dst/sub/copy.bin")" = "$(sha256sum < "$SCRATCH/src.bin")" ] ||
	fail "the copy differs"
[ "$(stat -c %a "$SCRATCH/dst/sub/copy.bin")" = 640 ] || fail "the copy's mode"
expect_write "$I/copy" "$SCRATCH/src.bin $SCRATCH/dst/sub/copy.bin" EEXIST
echo small > "$SCRATCH/src2.txt"
echo "$SCRATCH/src2.txt $SCRATCH/dst/sub/copy.bin overwrite" > "$I/copy" || fail "overwrite"
[ "$(cat "$SCRATCH/dst/sub/copy.bin")" = small ] || fail "overwrite did not replace"
ls -a "$SCRATCH/dst/sub" | grep -q fsvisor-copy && fail "a temporary file was left"

# ---- 6. shutdown through the agent --------------------------------------------------------
echo "shutdown the agent's test" > vms/g/ctl || fail "shutdown: $(cat vms/g/error)"
expect_value vms/g/state off
[ "$(cat "$SCRATCH/reason")" = "the agent's test" ] || fail "the reason: $(cat "$SCRATCH/reason")"
grep -q "shutdown requested by the host: the agent's test" "$SCRATCH/agent.log" ||
	fail "the agent did not log the reason"
kill "$agent_pid"
wait "$agent_pid"
agent_pid=""
grep -qE "Sanitizer|runtime error" "$SCRATCH/agent.log" && fail "the agent: $(cat "$SCRATCH/agent.log")"
pass
