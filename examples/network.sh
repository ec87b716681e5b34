#!/bin/sh
# Two VMs on a private switch ping each other; then a VLAN apart, they
# cannot.  A switch is a directory; a NIC is a directory in the VM; the
# NIC's "switch" file plugs it in.
#
#   examples/network.sh [MOUNTPOINT]
set -eu
M=${1:-${FSVISOR_MOUNT:-/mnt/fsvisor}}
GUEST=${FSVISOR_TESTGUEST:-/usr/local/share/fsvisor/testguest.elf}
cd "$M"

mkdir switches/exlan                              # a private switch: VMs only
for vm in ex1 ex2; do
	mkdir vms/$vm vms/$vm/nics/eth0               # a NIC, with a generated MAC
	echo "$GUEST" > vms/$vm/boot/kernel
	echo 64M > vms/$vm/memory/startup
	echo exlan > vms/$vm/nics/eth0/switch
done
# The test guest answers ARP and ping for ip=, and pings peer= every second.
echo "tests=net ip=10.0.0.1 peer=10.0.0.2 idle ping_every=1" > vms/ex1/boot/cmdline
echo "tests=net ip=10.0.0.2 peer=10.0.0.1 idle" > vms/ex2/boot/cmdline
echo start > vms/ex1/ctl
echo start > vms/ex2/ctl
until grep -q "TEST net" vms/ex1/console; do sleep 0.2; done
grep "TEST net" vms/ex1/console
ls switches/exlan/ports                           # ex1:eth0 ex2:eth0
cat switches/exlan/macs                           # VLAN MAC PORT AGE

echo "access 10" > vms/ex2/nics/eth0/vlan         # live: ex2 moves to VLAN 10
lines=$(grep -c "net: " vms/ex1/console)
until [ "$(grep -c "net: no reply" vms/ex1/console)" -ge 1 ]; do sleep 0.2; done
tail -n +$((lines + 1)) vms/ex1/console | grep "net: " | head -3
grep "^port_out_packets\|^drops_vlan" vms/ex1/nics/eth0/stats

for vm in ex1 ex2; do
	echo stop > vms/$vm/ctl
	rmdir vms/$vm                                 # its NICs go with it
done
rmdir switches/exlan
