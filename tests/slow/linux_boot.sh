#!/bin/sh
# Slow suite: boot Debian's cloud kernel (downloaded with apt-get, kept in
# the build directory, never committed) with a tiny initramfs.  Passes
# when the console shows the kernel's banner and the e820 map exactly as
# we built it; records how far the kernel got before the emulator of this
# machine stopped it (DESIGN.md section 4).  On a VMX/SVM host the same
# command boots to userspace ("init: hello from userspace").
#
# LINUX_TIMEOUT (seconds, default 900) bounds the boot.
. "$SOURCE_ROOT/tests/lib.sh"
need apt-get apt-cache dpkg-deb cpio gzip cc timeout
[ -w /dev/kvm ] || fail "/dev/kvm is not usable here"
cache=$BUILD_ROOT/slow-cache
mkdir -p "$cache"
scratch

pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
	awk '/Depends: linux-image-/ { print $2; exit }')
[ -n "$pkg" ] || fail "apt-cache does not know linux-image-cloud-amd64"
if ! ls "$cache"/"$pkg"_*.deb >/dev/null 2>&1; then
	(cd "$cache" && apt-get download "$pkg" >/dev/null 2>&1) ||
		fail "apt-get download $pkg failed (is the Debian archive reachable?)"
fi
dpkg-deb -x "$cache"/"$pkg"_*.deb kernel || fail "cannot unpack $pkg"
vmlinuz=$(ls kernel/boot/vmlinuz-*)
echo "kernel: $pkg ($vmlinuz)"

cc -static -O2 -o init "$SOURCE_ROOT/tests/slow/init.c" || fail "cannot build init"
mkdir root && cp init root/init
(cd root && find . | cpio -o -H newc 2>/dev/null) | gzip > initrd.gz

# Steer the kernel around what this machine's KVM emulator cannot run:
# cmpxchg16b (hidden through CPUID), XSAVE/POPCNT/AVX (which this KVM
# shows the guest whatever we say; Linux's own switches turn them off).
cmdline="console=ttyS0 earlyprintk=serial noxsave clearcpuid=popcnt,avx,avx2"
start=$(date +%s)
timeout "${LINUX_TIMEOUT:-900}" "$FSVISOR" vm run --kernel "$vmlinuz" \
	--initrd initrd.gz --cmdline "$cmdline" --mem 512M --cpus 1 \
	--cpu-mask cx16 </dev/null >console.log 2>worker.log
status=$?
secs=$(( $(date +%s) - start ))

echo "--- last console lines ---"
tail -n 5 console.log
echo "--- worker ---"
cat worker.log
echo "--------------"
case $status in
0) echo "result: the guest powered off after $secs s" ;;
3) echo "result: stopped by the emulator after $secs s: $(tail -1 worker.log)" ;;
124) echo "result: still running after $secs s (timeout)" ;;
*) echo "result: worker exit $status after $secs s" ;;
esac
grep -q "init: hello from userspace" console.log && echo "reached: userspace"
echo "reached: $(grep -c . console.log) console lines, last kernel time stamp $(grep -o '^\[ *[0-9.]*\]' console.log | tail -1)"

grep -q "Linux version" console.log || fail "no 'Linux version' banner"
for line in \
	"BIOS-e820: \[mem 0x0000000000000000-0x000000000009fbff\] usable" \
	"BIOS-e820: \[mem 0x000000000009fc00-0x00000000000fffff\] reserved" \
	"BIOS-e820: \[mem 0x0000000000100000-0x000000001fffffff\] usable"; do
	grep -q "$line" console.log || fail "e820 map differs: missing '$line'"
done
[ "$(grep -c 'BIOS-e820:' console.log)" -eq 3 ] || fail "the e820 map has extra entries"
grep -q "ACPI: RSDP 0x00000000000E0000" console.log || fail "the kernel did not find our RSDP"
pass
