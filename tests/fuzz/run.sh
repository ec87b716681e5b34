#!/bin/sh
# Run a libFuzzer target for a bounded time from a small seed corpus.
#   FUZZ_SECONDS (default 60)
set -eu
target=$1
seconds=${FUZZ_SECONDS:-60}
corpus=$(mktemp -d "${TMPDIR:-/tmp}/fsvisor-corpus.XXXXXX")
trap 'rm -rf "$corpus"' EXIT
# A signal (meson's timeout sends TERM) ends the shell through exit, so the
# EXIT trap runs then too.
trap 'exit 143' TERM
trap 'exit 130' INT
# Seeds: for vhdx_open a clean image, a dirty one, with checksums fixed,
# and raw bytes; for vhd_open the dynamic (1), child (2) and fixed (3)
# images; for parent_locator the valid item (odd first byte); the other
# targets start from these bytes too.
printf '\001' > "$corpus/clean"
printf '\002' > "$corpus/dirty"
printf '\003' > "$corpus/third"
printf '\015\000\000\001\000\004abcd' > "$corpus/patched"
printf '\016\000\002\000\000\004abcd' > "$corpus/patched2"
printf '\000vhdxfile' > "$corpus/raw"
printf '\000conectix' > "$corpus/vhd"
# A child, not exec: exec would replace this shell and its EXIT trap with
# it, leaving the corpus (which libFuzzer grows) in $TMPDIR after every run.
status=0
"$target" -max_total_time="$seconds" -rss_limit_mb=4096 \
	-timeout=30 -print_final_stats=1 "$corpus" || status=$?
exit $status
