#!/bin/sh
# Crash safety of merge: SIGKILL a merge after each of its steps and at
# random moments, into a VHDX parent and into a VHD one.  After every
# kill each disk of the chain reads as before, or (once the merge
# committed) the parent reads the merged result and the other child is
# refused as stale; running the merge again finishes it, and the parent
# then reads the merged result and checks clean (ours; qemu-img check
# for VHDX, qemu's reading for VHD).
#
# TRIALS (default 100) sets the number of timed kills into VHDX; VHD
# gets a third of them.
. "$SOURCE_ROOT/tests/lib.sh"
need qemu-img cmp
scratch
F=$FSVISOR
W=$VDISK_WRITER
M=$MERGE_TOOL
trials=${TRIALS:-100}

# reads IMAGE MODEL: IMAGE opens and reads as MODEL.
reads()
{
	"$W" compare "$1" "$2" 2>/dev/null
}

# check_after_kill WHAT: the state a kill left is one of the two allowed.
check_after_kill()
{
	if reads w/base.$x base.raw; then
		reads w/child.$x child.raw || fail "$1: the parent is as before but the child is not"
		reads w/sib.$x sib.raw || fail "$1: the parent is as before but the sibling is not"
		before=$((before + 1))
	elif reads w/base.$x child.raw; then
		out=$("$W" compare w/sib.$x sib.raw 2>&1)
		echo "$out" | grep -q "$stale" ||
			fail "$1: the parent is merged, but the sibling: $out"
		if [ -e w/child.$x ]; then
			"$W" compare w/child.$x child.raw 2>/dev/null
			[ $? -eq 2 ] || fail "$1: the merged child still opens"
		fi
		after=$((after + 1))
	else
		fail "$1: the parent reads neither as before nor merged"
	fi
	# A kill after the child and the journal went found the merge done.
	if [ -e w/child.$x ] || [ -e w/child.$x.merge ]; then
		out=$("$F" disk merge w/child.$x 2>&1) || fail "$1: merging again: $out"
	fi
	reads w/base.$x child.raw || fail "$1: merging again left another parent"
	[ -e w/child.$x ] && fail "$1: merging again left the child"
	[ -e w/child.$x.merge ] && fail "$1: merging again left the journal"
	out=$("$F" disk check w/base.$x) || fail "$1: our check after merging again: $out"
	if [ $x = vhdx ]; then
		qemu-img check -q w/base.vhdx || fail "$1: qemu-img check after merging again"
	else
		rm -f q.raw
		qemu-img convert -f vpc -O raw w/base.vhd q.raw && cmp -s q.raw child.raw ||
			fail "$1: qemu reads the merged VHD differently"
	fi
}

fresh()
{
	rm -rf w
	cp -a --sparse=always t w
}

# suite EXT TIMED STALE: the chain in format EXT (a dynamic parent, the
# child to merge with about 30 MiB changed, a sibling), every step kill
# and TIMED timed kills; a refused sibling says STALE.
suite()
{
	x=$1 timed=$2 stale=$3
	rm -rf w t base.raw child.raw sib.raw
	mkdir w
	# The chain is made in w, where every trial runs (the children's
	# absolute paths name w), and kept in t.
	"$F" disk create --block-size 1M w/base.$x 48M || fail "create"
	"$W" mutate 1 40 w/base.$x base.raw || fail "writes to the parent"
	"$F" disk create --parent w/base.$x w/child.$x || fail "create the child"
	"$F" disk create --parent w/base.$x w/sib.$x || fail "create the sibling"
	cp base.raw child.raw
	VDISK_WRITER_ALIGN=4096 "$W" mutate 2 30 w/child.$x child.raw ||
		fail "writes to the child"
	cp base.raw sib.raw
	"$W" mutate 3 5 w/sib.$x sib.raw || fail "writes to the sibling"
	cp -a --sparse=always w t

	# 1. A kill after each step of the library's (count them on a copy).
	fresh
	steps=$("$M" merge w/child.$x | sed -n 's/^completed after \([0-9]*\) steps/\1/p')
	[ "${steps:-0}" -gt 5 ] || fail "a merge into $x takes only ${steps:-0} steps"
	reads w/base.$x child.raw || fail "the merge into $x gave another parent"
	n=1
	before=0 after=0
	while [ $n -le "$steps" ]; do
		fresh
		"$M" merge --kill-at $n w/child.$x >/dev/null 2>step.txt
		check_after_kill "$x: kill at step $n ($(sed -n 's/^killed at step [0-9]*: //p' step.txt))"
		n=$((n + 1))
	done
	echo "$x: $steps step kills: $before left the chain as it was, $after merged"
	[ $before -gt 0 ] && [ $after -gt 0 ] ||
		fail "$x: step kills did not reach both sides of the commit"

	# 2. Timed kills of fsvisor disk merge, spread over its run time.
	fresh
	t0=$(date +%s%N)
	"$F" disk merge w/child.$x || fail "a timed merge into $x"
	ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	[ $ms -gt 0 ] || ms=1
	before=0 after=0
	i=1
	while [ $i -le "$timed" ]; do
		fresh
		# Kill i falls in the i-th of TIMED equal slices of the run
		# (and a quarter more), at a scattered point inside it.
		span=$((ms + ms / 4 + 1))
		delay=$(( (i - 1) * span / timed + (i * 7919) % (span / timed + 1) ))
		"$F" disk merge w/child.$x >/dev/null 2>&1 &
		pid=$!
		sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
		kill -9 $pid 2>/dev/null
		wait $pid 2>/dev/null
		check_after_kill "$x: timed kill $i after $delay ms (merge takes $ms ms)"
		i=$((i + 1))
	done
	echo "$x: $timed timed kills over $ms ms: $before left the chain as it was, $after merged"
	[ $before -gt 0 ] && [ $after -gt 0 ] ||
		fail "$x: timed kills did not reach both sides of the commit"
}

suite vhdx "$trials" "was changed by merging child.vhdx"
suite vhd $(( (trials + 2) / 3 )) "has changed since it was made (the parent's unique id"
pass
