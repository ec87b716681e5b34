#!/bin/sh
# The fsvisor command line: help lists what exists, bad usage exits 2.
. "$SOURCE_ROOT/tests/lib.sh"

out=$("$FSVISOR" help) || fail "help failed"
echo "$out" | grep -q '^  help ' || fail "help does not list help"
echo "$out" | grep -q '^  version ' || fail "help does not list version"

"$FSVISOR" version | grep -qx 'fsvisor [0-9][0-9.]*' || fail "version output"
"$FSVISOR" --version >/dev/null || fail "--version"

expect_status 2 "$FSVISOR" no-such-command
err=$("$FSVISOR" no-such-command 2>&1 >/dev/null)
echo "$err" | grep -q "unknown command 'no-such-command'" || fail "no reason: $err"
echo "$err" | grep -q '^usage: fsvisor' || fail "no usage line: $err"
expect_status 2 "$FSVISOR"
expect_status 2 "$FSVISOR" help no-such-command
"$FSVISOR" help version | grep -q 'print the version' || fail "help version"
pass
