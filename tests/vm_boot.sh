#!/bin/sh
# The VM worker boots the test guest through the Linux boot path, with 1
# and 2 vCPUs; every device test passes and the guest powers off cleanly.
# Crashes end with the reason, reboots reset, bad configs are refused.
# In idle mode the guest stays up, answers the console and obeys the
# ACPI power button; SIGTERM kills a worker with status 4.
. "$SOURCE_ROOT/tests/lib.sh"
need timeout mkfifo iasl xxd
[ -w /dev/kvm ] || fail "/dev/kvm is not usable here"
scratch
F=$FSVISOR

# An idle guest never stops by itself: kill what is left if a check fails.
workers=
trap 'for p in $workers; do kill -KILL $p 2>/dev/null; done; rm -rf "$SCRATCH"' EXIT

# wait_worker PID SECONDS: wait for the worker PID and set $status to its
# exit status; one still running after SECONDS is killed (status 137).
wait_worker()
{
	( sleep "$2"; kill -KILL "$1" ) >/dev/null 2>&1 &
	ww_dog=$!
	wait "$1"
	status=$?
	kill "$ww_dog" 2>/dev/null
}
all=serial,smp,timer,pci,acpi

for cpus in 1 2; do
	boot_guest $cpus $all out$cpus.txt
	[ "$status" -eq 0 ] || fail "$cpus vCPU(s): exit $status: $(tail -5 out$cpus.txt)"
	expect_passes out$cpus.txt serial smp timer pci acpi
	grep -q "serial: echo 'ping from the host'" out$cpus.txt || fail "no echo"
	grep -q "acpi: $cpus cpus" out$cpus.txt || fail "ACPI does not list $cpus CPUs"
	grep -q "guest powered off (ACPI S5)" out$cpus.txt || fail "no ACPI power-off"
done
grep -q "smp: 2 cpus: bsp 0, ap 1" out2.txt || fail "the AP did not check in: $(grep smp out2.txt)"

# A triple fault stops the VM with where it happened.
boot_guest 1 triplefault tf.txt
[ "$status" -eq 3 ] || fail "triple fault: exit $status"
grep -q "triple fault (CPU shutdown) on vCPU 0 at RIP 0x[0-9a-f]*, instruction bytes 0f 0b" tf.txt ||
	fail "triple fault message: $(tail -2 tf.txt)"

# ...or resets it, when configured to (again and again, in this case).
timeout 5 "$F" vm run --kernel "$TESTGUEST" --cmdline tests=triplefault \
	--mem 64M --on-triple-fault reset </dev/null >tfr.txt 2>&1
[ "$(grep -c 'guest reset (triple fault on vCPU 0' tfr.txt)" -ge 2 ] ||
	fail "triple fault with on_triple_fault reset: $(tail -3 tfr.txt)"

# An instruction KVM cannot emulate: the exit reason, RIP and bytes.
boot_guest 1 badinsn bi.txt
[ "$status" -eq 3 ] || fail "emulation failure: exit $status"
grep -q "KVM emulation failure (exit reason 17, suberror 1) on vCPU 0 at RIP 0x[0-9a-f]*, instruction bytes f3 48 0f b8 04 25" bi.txt ||
	fail "emulation failure message: $(tail -2 bi.txt)"

# The guest resets itself through the ACPI reset register and comes back.
boot_guest 1 reboot rb.txt
[ "$status" -eq 0 ] || fail "reboot: exit $status"
expect_passes rb.txt reboot
[ "$(grep -c 'testguest: command line' rb.txt)" -eq 2 ] || fail "did not boot twice"
# ...unless told to stop on reboot.
boot_guest 1 reboot rs.txt --on-reboot stop
[ "$status" -eq 0 ] || fail "reboot with on-reboot stop: exit $status"
[ "$(grep -c 'testguest: command line' rs.txt)" -eq 1 ] || fail "rebooted anyway"

# The i8042's reset line resets too; CMOS RAM survives it.
boot_guest 1 kbdreset kr.txt
[ "$status" -eq 0 ] || fail "kbdreset: exit $status"
expect_passes kr.txt kbdreset
grep -q "guest reset (i8042 reset line)" kr.txt || fail "no i8042 reset"

# The RTC runs on the host's clock (UTC).
boot_guest 1 rtc rtc.txt
expect_passes rtc.txt rtc
guest_time=$(sed -n 's/^rtc: \(.*\) UTC.*/\1/p' rtc.txt | tr -d '\r')
diff=$(( $(date -u +%s) - $(date -u -d "$guest_time" +%s) ))
[ "${diff#-}" -le 5 ] || fail "the guest's clock is $diff s off ($guest_time)"

# The control socket: status, pause/resume, console input and output.
"$F" vm run --kernel "$TESTGUEST" --cmdline "tests=serial,timer" --mem 64M \
	--cpus 2 --no-console --control ctl.sock --console-log con.log \
	>worker.out 2>&1 &
wpid=$!
wait_for "waiting for a line" con.log 60 || fail "no prompt on the console log"
"$F" vm ctl ctl.sock status > st.json || fail "status"
grep -q '"state": "running"' st.json || fail "status: $(cat st.json)"
[ "$(grep -c '"exits":' st.json)" -eq 2 ] || fail "no per-vCPU exit counts"
"$F" vm ctl ctl.sock pause >/dev/null || fail "pause"
"$F" vm ctl ctl.sock status | grep -q '"state": "paused"' || fail "not paused"
"$F" vm ctl ctl.sock resume >/dev/null || fail "resume"
"$F" vm ctl ctl.sock frobnicate > bad.json && fail "an unknown command succeeded"
grep -q "unknown command 'frobnicate'" bad.json || fail "unknown command: $(cat bad.json)"
timeout 30 "$F" vm ctl ctl.sock console --all > follow.txt &
fpid=$!
"$F" vm ctl ctl.sock send 'typed over the socket\n' >/dev/null || fail "send"
wait $wpid
[ $? -eq 0 ] || fail "controlled worker exit"
wait $fpid
grep -q "serial: echo 'typed over the socket'" con.log || fail "input via the socket"
grep -q "TEST timer PASS" follow.txt || fail "console follow: $(cat follow.txt)"
grep -q "waiting for a line" follow.txt || fail "console --all missed the start"
[ -e ctl.sock ] && fail "the control socket was left behind"

# Idle mode: after its tests the guest stays up, answers console lines
# and powers off when the ACPI power button (the GED, GSI 9) is pressed.
"$F" vm run --kernel "$TESTGUEST" --cmdline "tests=serial idle" --mem 64M \
	--no-console --control idle.sock --console-log idle.log >idle.out 2>&1 &
wpid=$!
workers="$workers $wpid"
wait_for "waiting for a line" idle.log 60 || fail "idle: no prompt: $(tail -3 idle.log)"
"$F" vm ctl idle.sock send 'hello\n' >/dev/null || fail "idle: send"
wait_for "testguest: idle" idle.log 30 || fail "idle: not idle: $(tail -3 idle.log)"
expect_passes idle.log serial
grep -q "serial: echo 'hello'" idle.log || fail "idle: the serial test's line"
"$F" vm ctl idle.sock send 'still there?\n' >/dev/null || fail "idle: send"
wait_for "^echo: still there?" idle.log 30 || fail "idle: no echo: $(tail -3 idle.log)"
"$F" vm ctl idle.sock status | grep -q '"state": "running"' || fail "idle: not running"
"$F" vm ctl idle.sock shutdown >/dev/null || fail "shutdown command"
wait_worker $wpid 30
[ "$status" -eq 0 ] || fail "power button: exit $status: $(tail -3 idle.out)"
grep -q "testguest: power button" idle.log || fail "power button: $(tail -3 idle.log)"
grep -q "guest powered off (ACPI S5)" idle.out || fail "power button: $(cat idle.out)"

# SIGTERM stops a worker with status 4, whatever its threads are doing;
# the idle guest's heartbeat shows the vCPUs still running until then.
"$F" vm run --kernel "$TESTGUEST" --cmdline "idle heartbeat=1" --mem 64M \
	--cpus 2 --no-console --console-log term.log >term.out 2>&1 &
wpid=$!
workers="$workers $wpid"
wait_for "testguest: alive 2" term.log 60 || fail "heartbeat: $(tail -3 term.log)"
kill -TERM $wpid
wait_worker $wpid 10
[ "$status" -eq 4 ] || fail "SIGTERM: exit $status, expected 4: $(tail -3 term.out)"

# The DSDT's AML, checked by ACPICA's disassembler (acpica-tools): the
# guest prints the table in hex.
boot_guest 1 "acpi dumpdsdt" dsdt.txt
[ "$status" -eq 0 ] || fail "dumpdsdt: exit $status"
sed -n 's/^dsdt \([0-9a-f]*\).*/\1/p' dsdt.txt | tr -d '\r\n' | xxd -r -p > dsdt.dat
len=$(sed -n 's/^dsdt: \([0-9]*\) bytes.*/\1/p' dsdt.txt)
[ "$(wc -c < dsdt.dat)" -eq "${len:-0}" ] || fail "dumpdsdt: $len bytes announced"
iasl -d dsdt.dat > iasl.out 2>&1 || fail "iasl -d: $(tail -5 iasl.out)"
# iasl decodes misnested AML without complaint: check what is where.
block()
{
	awk -v dev="Device ($1)" 'index($0, dev) { on = 1 }
		on { print; o = gsub(/[{]/, "&"); c = gsub(/[}]/, "&");
		     n += o - c; if (c && n == 0) exit }' dsdt.dsl
}
block GED0 > ged.asl
block PWRB > pwrb.asl
for want in 'Name (_HID, "ACPI0013"' \
	'Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )' \
	'0x00000009,' 'Method (_EVT, 1, NotSerialized)' \
	'If ((Arg0 == 0x09))' 'Notify (\_SB.PWRB, 0x80)'; do
	grep -qF "$want" ged.asl || fail "DSDT: GED0 has no '$want': $(cat ged.asl)"
done
grep -qF 'EisaId ("PNP0C0C")' pwrb.asl || fail "DSDT: PWRB: $(cat pwrb.asl)"
grep -qF 'Name (_S5, Package (0x04)' dsdt.dsl || fail "DSDT: no _S5"
# ...and what it decoded compiles again without a warning.
iasl -p again dsdt.dsl > iasl2.out 2>&1 || fail "iasl: $(tail -5 iasl2.out)"
grep -q " 0 Errors, 0 Warnings, 0 Remarks" iasl2.out ||
	fail "iasl: $(grep -i 'error\|warning\|remark' iasl2.out)"

# Bad configurations are refused before anything runs.
expect_bad()
{
	text=$1
	shift
	out=$("$F" vm run --no-console "$@" 2>&1)
	st=$?
	[ $st -eq 1 ] || fail "'$*' exited $st, expected 1: $out"
	echo "$out" | grep -q -- "$text" || fail "'$*' said '$out', not '$text'"
}
expect_bad "too small" --kernel "$TESTGUEST" --mem 0
expect_bad "more than the host has" --kernel "$TESTGUEST" --mem 100T
expect_bad "cpus 0 is out of range" --kernel "$TESTGUEST" --cpus 0
expect_bad "cpus 1000 is out of range" --kernel "$TESTGUEST" --cpus 1000
expect_bad "No such file" --kernel /nonexistent
expect_bad "is not a kernel" --kernel /etc/hostname
head -c 3000 "$TESTGUEST" > short.elf
expect_bad "past the end of the file" --kernel short.elf
expect_bad "no kernel" --mem 64M
echo '{"kernel": "x", ' > broken.json
expect_bad "broken.json" --config broken.json
# Without a usable /dev/kvm: a clear reason, before anything runs.
if command -v unshare >/dev/null && unshare --mount true 2>/dev/null; then
	out=$(unshare --mount sh -c "mount --bind /dev/null /dev/kvm &&
		'$F' vm run --no-console --kernel '$TESTGUEST'" 2>&1)
	st=$?
	[ $st -eq 1 ] || fail "with /dev/kvm unusable: exit $st: $out"
	echo "$out" | grep -q "/dev/kvm is not a KVM device" || fail "unusable /dev/kvm: $out"
fi
expect_status 2 "$F" vm run --bogus-flag
expect_status 2 "$F" vm
pass
