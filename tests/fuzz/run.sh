#!/bin/sh
# Run a libFuzzer target for a bounded time from a small seed corpus.
#   FUZZ_SECONDS (default 60)
set -eu
target=$1
seconds=${FUZZ_SECONDS:-60}
corpus=$(mktemp -d "${TMPDIR:-/tmp}/fsvisor-corpus.XXXXXX")
trap 'rm -rf "$corpus"' EXIT
# Seeds: for vhdx_open a clean image, a dirty one, with checksums fixed,
# and raw bytes; the other targets start from these bytes too.
printf '\001' > "$corpus/clean"
printf '\002' > "$corpus/dirty"
printf '\015\000\000\001\000\004abcd' > "$corpus/patched"
printf '\000vhdxfile' > "$corpus/raw"
exec "$target" -max_total_time="$seconds" -rss_limit_mb=4096 \
	-timeout=30 -print_final_stats=1 "$corpus"
