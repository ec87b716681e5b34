#!/bin/sh
# Disks: create dynamic and fixed VHDX disks and a raw one, adopt a file
# made elsewhere, look inside through "data", check, and clean up.
#
#   examples/disks.sh [MOUNTPOINT]
set -eu
M=${1:-${FSVISOR_MOUNT:-/mnt/fsvisor}}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$M"

mkdir disks/dyn disks/fix disks/plain
echo 1G > disks/dyn/size                        # dynamic VHDX: grows as it is written
echo fixed > disks/fix/type
echo 64M > disks/fix/size                       # fixed VHDX: all its space up front
echo raw > disks/plain/format
echo 16M > disks/plain/size                     # a sparse raw file
for d in dyn fix plain; do
	echo "$d: $(cat disks/$d/type) $(cat disks/$d/format), size $(cat disks/$d/size), used $(cat disks/$d/used)"
done

# Write through "data" (no VM uses the disk), read it back.
echo "hello, disk" | dd of=disks/dyn/data bs=512 seek=2048 conv=notrunc,sync status=none
dd if=disks/dyn/data bs=512 skip=2048 count=1 status=none | head -n1
echo check > disks/dyn/ctl && cat disks/dyn/progress
echo 4G > disks/dyn/size                        # grow it (shrinking is refused)
echo "dyn grown to $(cat disks/dyn/size) bytes, still '$(dd if=disks/dyn/data bs=512 skip=2048 count=1 status=none | head -n1)'"

# Adopt a file made with the disk tool; deleting the disk keeps the file.
fsvisor disk create "$work/made-elsewhere.vhdx" 256M > /dev/null
mkdir disks/adopted
echo "$work/made-elsewhere.vhdx" > disks/adopted/file
echo "adopted: $(cat disks/adopted/format), $(cat disks/adopted/size) bytes"
fsvisor ls --disks "$M"

# A bad value: refused, and the reason is in error.
if echo 1000 > disks/dyn/size 2>/dev/null; then
	echo "a size that is not a multiple of 512 was accepted" >&2
	exit 1
fi
echo "refused: $(cat disks/dyn/error)"

rmdir disks/dyn disks/fix disks/plain disks/adopted
ls "$work/made-elsewhere.vhdx" > /dev/null && echo "the adopted file is still there"
