#!/bin/sh
# The serial console: follow it with tail -f while typing to the guest.
#
#   examples/console.sh [MOUNTPOINT]
set -eu
M=${1:-${FSVISOR_MOUNT:-/mnt/fsvisor}}
GUEST=${FSVISOR_TESTGUEST:-/usr/local/share/fsvisor/testguest.elf}
cd "$M"

mkdir vms/talk
echo "$GUEST" > vms/talk/boot/kernel
echo "idle heartbeat=1" > vms/talk/boot/cmdline  # prints "alive N" every second,
echo start > vms/talk/ctl                        # and echoes each line it gets

out=$(mktemp)
timeout 4 tail -n +1 -f vms/talk/console > "$out" &
until grep -q "testguest: idle" "$out"; do sleep 0.1; done
echo "hello, guest" > vms/talk/console          # typed on its serial port
until grep -q "echo: hello, guest" "$out"; do sleep 0.1; done
until grep -q "alive 2" "$out"; do sleep 0.1; done
cat "$out"
rm -f "$out"

echo stop > vms/talk/ctl
rmdir vms/talk
