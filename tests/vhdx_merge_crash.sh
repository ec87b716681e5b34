#!/bin/sh
# Crash safety of merge: SIGKILL a merge after each of its steps and at
# random moments.  After every kill each disk of the chain reads as
# before, or (once the merge committed) the parent reads the merged
# result and the other child is refused as merged into; running the
# merge again finishes it, and the parent then reads the merged result
# and checks clean (ours and qemu-img's).
#
# TRIALS (default 100) sets the number of timed kills.
. "$SOURCE_ROOT/tests/lib.sh"
need qemu-img cmp
scratch
F=$FSVISOR
W=$VDISK_WRITER
M=$MERGE_TOOL
trials=${TRIALS:-100}

# The chain: a parent with data, the child to merge (about 30 MiB changed
# across it), and a second child of the parent.  It is made in w, where
# every trial runs (the children's absolute paths name w), and kept in t.
mkdir w
"$F" disk create --block-size 1M w/base.vhdx 48M || fail "create"
"$W" mutate 1 40 w/base.vhdx base.raw || fail "writes to the parent"
"$F" disk create --parent w/base.vhdx w/child.vhdx || fail "create the child"
"$F" disk create --parent w/base.vhdx w/sib.vhdx || fail "create the sibling"
cp base.raw child.raw
VDISK_WRITER_ALIGN=4096 "$W" mutate 2 30 w/child.vhdx child.raw || fail "writes to the child"
cp base.raw sib.raw
"$W" mutate 3 5 w/sib.vhdx sib.raw || fail "writes to the sibling"
cp -a --sparse=always w t

# reads IMAGE MODEL: IMAGE opens and reads as MODEL.
reads()
{
	"$W" compare "$1" "$2" 2>/dev/null
}

# check_after_kill WHAT: the state a kill left is one of the two allowed.
check_after_kill()
{
	if reads w/base.vhdx base.raw; then
		reads w/child.vhdx child.raw || fail "$1: the parent is as before but the child is not"
		reads w/sib.vhdx sib.raw || fail "$1: the parent is as before but the sibling is not"
		before=$((before + 1))
	elif reads w/base.vhdx child.raw; then
		out=$("$W" compare w/sib.vhdx sib.raw 2>&1)
		echo "$out" | grep -q "was changed by merging child.vhdx" ||
			fail "$1: the parent is merged, but the sibling: $out"
		if [ -e w/child.vhdx ]; then
			"$W" compare w/child.vhdx child.raw 2>/dev/null
			[ $? -eq 2 ] || fail "$1: the merged child still opens"
		fi
		after=$((after + 1))
	else
		fail "$1: the parent reads neither as before nor merged"
	fi
	# A kill after the child and the journal went found the merge done.
	if [ -e w/child.vhdx ] || [ -e w/child.vhdx.merge ]; then
		out=$("$F" disk merge w/child.vhdx 2>&1) || fail "$1: merging again: $out"
	fi
	reads w/base.vhdx child.raw || fail "$1: merging again left another parent"
	[ -e w/child.vhdx ] && fail "$1: merging again left the child"
	[ -e w/child.vhdx.merge ] && fail "$1: merging again left the journal"
	out=$("$F" disk check w/base.vhdx) || fail "$1: our check after merging again: $out"
	qemu-img check -q w/base.vhdx || fail "$1: qemu-img check after merging again"
}

fresh()
{
	rm -rf w
	cp -a --sparse=always t w
}

# 1. A kill after each step of the library's (count them on a copy).
fresh
steps=$("$M" merge w/child.vhdx | sed -n 's/^completed after \([0-9]*\) steps/\1/p')
[ "${steps:-0}" -gt 5 ] || fail "a merge takes only ${steps:-0} steps"
reads w/base.vhdx child.raw || fail "the merge gave another parent"
n=1
before=0 after=0
while [ $n -le "$steps" ]; do
	fresh
	"$M" merge --kill-at $n w/child.vhdx >/dev/null 2>step.txt
	check_after_kill "kill at step $n ($(sed -n 's/^killed at step [0-9]*: //p' step.txt))"
	n=$((n + 1))
done
echo "$steps step kills: $before left the chain as it was, $after merged"
[ $before -gt 0 ] && [ $after -gt 0 ] || fail "step kills did not reach both sides of the commit"

# 2. Timed kills of fsvisor disk merge, spread over its run time.
fresh
t0=$(date +%s%N)
"$F" disk merge w/child.vhdx || fail "a timed merge"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ $ms -gt 0 ] || ms=1
before=0 after=0
i=1
while [ $i -le "$trials" ]; do
	fresh
	delay=$(( (i * 7919) % (ms + ms / 4 + 1) ))
	"$F" disk merge w/child.vhdx >/dev/null 2>&1 &
	pid=$!
	sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	check_after_kill "timed kill $i after $delay ms (merge takes $ms ms)"
	i=$((i + 1))
done
echo "$trials timed kills over $ms ms: $before left the chain as it was, $after merged"
[ $before -gt 0 ] && [ $after -gt 0 ] || fail "timed kills did not reach both sides of the commit"
pass
