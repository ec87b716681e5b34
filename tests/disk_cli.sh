#!/bin/sh
# fsvisor disk: usage errors, bad values and refusals are clear and
# change nothing.
. "$SOURCE_ROOT/tests/lib.sh"
scratch
F=$FSVISOR

# expect_error STATUS TEXT cmd...: fails with STATUS and says TEXT.
expect_error()
{
	want=$1 text=$2
	shift 2
	out=$("$@" 2>&1)
	got=$?
	[ "$got" -eq "$want" ] || fail "'$*' exited $got, expected $want: $out"
	echo "$out" | grep -q -- "$text" || fail "'$*' said '$out', not '$text'"
}

need script
expect_error 2 "usage: fsvisor disk" "$F" disk
expect_error 2 "unknown command 'frobnicate'" "$F" disk frobnicate
"$F" disk help | grep -q "^usage: fsvisor disk" || fail "disk help prints no usage"
"$F" disk help | grep -q "  merge " || fail "disk help does not list merge"
"$F" disk help | grep -q "  compact " || fail "disk help does not list compact"
expect_error 2 "create needs FILE and SIZE" "$F" disk create a.vhdx
expect_error 2 "'10Q' is not a size" "$F" disk create a.vhdx 10Q
expect_error 2 "'-1' is not a size" "$F" disk create a.vhdx -- -1
expect_error 2 "too large" "$F" disk create a.vhdx 99999999999T
expect_error 2 "must be dynamic or fixed" "$F" disk create --type sparse a.vhdx 1G
expect_error 1 "1 sector to 64 TiB" "$F" disk create a.vhdx 65T
expect_error 1 "1 sector to 64 TiB" "$F" disk create a.vhdx 0
expect_error 1 "power of two" "$F" disk create --block-size 3M a.vhdx 1G
expect_error 1 "512 or 4096" "$F" disk create --sector-size 1024 a.vhdx 1G
expect_error 1 "multiple of the 512-byte sector" "$F" disk create a.vhdx 1000
[ -e a.vhdx ] && fail "a failed create left a file"

"$F" disk create a.vhdx 1G || fail "create"
before=$(md5sum a.vhdx)
expect_error 1 "File exists" "$F" disk create a.vhdx 2G
[ "$(md5sum a.vhdx)" = "$before" ] || fail "a refused create changed the file"

"$F" disk info --json a.vhdx > info.json || fail "info --json"
grep -q '"virtual-size": 1073741824' info.json || fail "info --json: $(cat info.json)"
grep -q '"type": "dynamic"' info.json || fail "info --json type"
expect_error 1 "cannot open" "$F" disk info missing.vhdx

printf 'not a disk image at all' > junk.vhdx
truncate -s 2M junk.vhdx
expect_error 2 "cannot check" "$F" disk check missing.vhdx
expect_error 1 "vhdxfile" "$F" disk check junk.vhdx
"$F" disk check a.vhdx | grep -q "No problems found" || fail "check of a good file"

# Differencing children take everything from the parent.
expect_error 2 "needs FILE only" "$F" disk create --parent a.vhdx c.vhdx 1G
expect_error 2 "no --type" "$F" disk create --parent a.vhdx --type fixed c.vhdx
expect_error 1 "cannot open missing.vhdx" "$F" disk create --parent missing.vhdx c.vhdx
[ -e c.vhdx ] && fail "a failed create --parent left a file"
"$F" disk create --parent a.vhdx c.vhdx || fail "create --parent"
"$F" disk info c.vhdx | grep -q "^type: *differencing" || fail "info of a child"
"$F" disk info c.vhdx | grep -q '^parent: *\.\\a\.vhdx' || fail "info shows the parent: $("$F" disk info c.vhdx)"
expect_error 1 "File exists" "$F" disk create --parent a.vhdx c.vhdx
expect_error 1 "its size follows its parent" "$F" disk resize c.vhdx 2G

# VHD by name or by --format.
expect_error 2 "--format must be vhdx or vhd" "$F" disk create --format qcow2 v.vhd 1G
expect_error 1 "1 sector to 2040 GiB" "$F" disk create v.vhd 2041G
expect_error 1 "512-byte sectors" "$F" disk create --sector-size 4096 v.vhd 1G
"$F" disk create v.vhd 1G || fail "create a VHD"
"$F" disk info v.vhd | grep -q "^format: *vhd$" || fail "a .vhd file is a VHD: $("$F" disk info v.vhd)"
"$F" disk create --format vhd --type fixed v.img 10M || fail "create --format vhd"
"$F" disk info --json v.img | grep -q '"format": "vhd"' || fail "info --json of a VHD"
"$F" disk check v.vhd | grep -q "No problems found" || fail "check of a VHD"
"$F" disk create --parent v.vhd cv.vhd || fail "create a VHD child"
expect_error 1 "must be a VHD file" "$F" disk create --parent a.vhdx cv2.vhd

# info --json of the new types, and a child's chain.
"$F" disk info --json cv.vhd > cv.json || fail "info --json of a VHD child"
grep -q '"type": "differencing"' cv.json || fail "info --json type: $(cat cv.json)"
grep -q '"chain-depth": 2' cv.json || fail "info --json chain: $(cat cv.json)"
grep -q '"unique-id"' cv.json || fail "info --json unique id: $(cat cv.json)"
grep -q '"data-write-guid"' info.json || fail "info --json DataWriteGuid: $(cat info.json)"
mv v.vhd v.gone
"$F" disk info --json cv.vhd | grep -q '"chain-error": ".*not found' || fail "info --json of a broken chain"
"$F" disk info cv.vhd | grep -q "^chain: *cannot be opened" || fail "info of a broken chain"
mv v.gone v.vhd

# Progress bars on a terminal only: convert, merge, compact.
"$F" disk create --parent a.vhdx pc.vhdx || fail "create for progress"
"$F" disk convert pc.vhdx p1.vhdx 2> quiet.txt || fail "convert"
[ -s quiet.txt ] && fail "convert printed progress off a terminal: $(cat quiet.txt)"
script -qec "$F disk convert pc.vhdx p2.vhdx" /dev/null > tty.txt || fail "convert on a tty"
grep -q "convert \[#*\] 100%" tty.txt || fail "no progress bar on a terminal: $(cat tty.txt)"
script -qec "$F disk compact p2.vhdx" /dev/null > tty.txt || fail "compact on a tty"
grep -q "compact \[#*\] 100%" tty.txt || fail "no compact bar: $(cat tty.txt)"
script -qec "$F disk merge pc.vhdx" /dev/null > tty.txt || fail "merge on a tty"
grep -q "merge \[#*\] 100%" tty.txt || fail "no merge bar: $(cat tty.txt)"
"$F" disk create --parent a.vhdx pd.vhdx && "$F" disk merge pd.vhdx 2> quiet.txt ||
	fail "merge off a terminal"
[ -s quiet.txt ] && fail "merge printed progress off a terminal"
expect_error 2 "merge needs CHILD" "$F" disk merge
expect_error 1 "not a differencing disk" "$F" disk merge a.vhdx
expect_error 1 "only dynamic and differencing" "$F" disk compact v.img

expect_error 1 "already exists" "$F" disk convert a.vhdx a.vhdx
expect_error 2 "-O must be vhdx, vhd or raw" "$F" disk convert -O qcow2 a.vhdx b
expect_error 2 "--rw must be" "$F" disk bench --rw sideways a.vhdx
"$F" disk bench --rw randwrite --count 100 --qd 4 a.vhdx | grep -q '^iops=' ||
	fail "bench output"
pass
