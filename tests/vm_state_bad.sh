#!/bin/sh
# Saved states are untrusted: a table of damaged and foreign states, each
# made from one good state by one edit (tests/tools/ss_edit.c), is refused
# by `fsvisor vm state-info` and by `fsvisor vm run --restore`, each time
# with a message that names the problem, before any guest code runs (the
# damaged memory chunk: when it is loaded, and the VM ends).  The good
# state still restores afterwards: refusing changed nothing.
. "$SOURCE_ROOT/tests/lib.sh"
need timeout
[ -w /dev/kvm ] || fail "/dev/kvm is not usable here"
scratch
F=$FSVISOR
trap '[ -f vm.pid ] && kill_tree "$(cat vm.pid)"; rm -rf "$SCRATCH"' EXIT

truncate -s 16M disk.img
timeout 300 "$F" vm run --kernel "$TESTGUEST" --mem 64M --cpus 2 --name bad \
	--cmdline "idle" --disk disk.img --control vm.sock --no-console \
	--console-log console.txt </dev/null >vm.log 2>&1 &
echo $! >vm.pid
wait_for "idle" console.txt 60 || fail "the guest did not start: $(tail -3 vm.log)"
out=$("$F" vm ctl vm.sock save good --stop) || fail "save: $out"
wait "$(cat vm.pid)" 2>/dev/null
rm -f vm.pid
"$F" vm state-info good >info.json || fail "state-info of the good state: $(cat info.json)"
grep -q '"restorable": true' info.json || fail "the good state is not restorable: $(cat info.json)"

# case NAME EXPECT EDIT...: a copy of the good state with one edit.
checked=0
case_of()
{
	name=$1 expect=$2
	shift 2
	rm -rf "$name"
	cp -a --sparse=always good "$name" || fail "copying the state"
	"$SS_EDIT" "$name" "$@" || fail "$name: ss_edit $* failed"
	info=$("$F" vm state-info "$name" 2>&1)
	case $info in
	*'"restorable": true'*)
		[ "$name" = flip-memory ] ||
			fail "$name: state-info calls it restorable: $info" ;;
	*"$expect"*) ;;
	*) fail "$name: state-info does not say '$expect': $info" ;;
	esac
	timeout 120 "$F" vm run --restore "$name" --no-console --console-log "$name.txt" \
		</dev/null >"$name.log" 2>&1
	rc=$?
	[ $rc -ne 0 ] || fail "$name: the restore succeeded"
	[ $rc -ne 124 ] || fail "$name: the restore hung"
	grep -q -- "$expect" "$name.log" || fail "$name: the restore does not say '$expect': $(tail -3 "$name.log")"
	# No guest code ran: the console stays as it was saved (empty).
	[ "$name" = flip-memory ] || [ ! -s "$name.txt" ] ||
		fail "$name: the guest ran: $(cat "$name.txt")"
	checked=$((checked + 1))
}

case_of no-manifest "not a saved state" drop-manifest
case_of truncate-memory "truncated" truncate-memory
for tag in vm vcpu0 vcpu1 dev:serial dev:cmos dev:i8042 dev:pci pci:00 pci:08; do
	case_of "flip-$tag" "$tag" flip "$tag"
done
case_of format-99 "format version 99" format 99
case_of format-0 "format version 0" format 0
case_of cpu-feature "avx512f" cpu-feature
case_of tsc-rate "TSC" tsc-khz 2
case_of memory-size "the saved memory is" memory-size
case_of drop-disk "pci:08" drop-disk
case_of drop-vcpu1 "vcpu1" drop-section vcpu1
case_of drop-pci08 "pci:08" drop-section pci:08
case_of flip-memory "damaged" flip-memory
[ $checked -eq 20 ] || fail "only $checked cases ran"

# Refusing changed nothing: the good state restores and the guest runs.
timeout 120 "$F" vm run --restore good --control vm.sock --no-console \
	--console-log good.txt </dev/null >good.log 2>&1 &
echo $! >vm.pid
wait_for "restore: all" good.log 30 || fail "the good state no longer restores: $(tail -3 good.log)"
"$F" vm ctl vm.sock stop >/dev/null 2>&1
pass
