#!/bin/sh
# Every examples/*.sh runs against a real mount, succeeds, and leaves the
# tree as it found it.
. "$SOURCE_ROOT/tests/lib.sh"
scratch
mount_service
PATH=$(dirname "$FSVISOR"):$PATH
export PATH FSVISOR_MOUNT="$MNT" FSVISOR_STATE="$STATE" FSVISOR_TESTGUEST="$TESTGUEST"
n=0
for ex in "$SOURCE_ROOT"/examples/*.sh; do
	name=$(basename "$ex")
	timeout 120 sh "$ex" "$MNT" > "$SCRATCH/$name.out" 2>&1 ||
		fail "$name failed (status $?):
$(tail -n 20 "$SCRATCH/$name.out")"
	[ -z "$(ls "$MNT/vms" "$MNT/disks" "$MNT/switches" | grep -v ':$' | grep -v '^$')" ] ||
		fail "$name left objects behind: $(ls "$MNT/vms" "$MNT/disks" "$MNT/switches")"
	echo "ok $name"
	n=$((n + 1))
done
[ $n -ge 5 ] || fail "only $n examples found"
pass
