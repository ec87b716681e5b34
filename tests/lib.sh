# Helpers shared by the end-to-end shell tests.  Source it; every test ends
# with pass, and any failed check calls fail with a reason.
set -u

TEST_NAME=$(basename "$0" .sh)

fail()
{
	echo "FAIL $TEST_NAME: $*" >&2
	exit 1
}

pass()
{
	echo "PASS $TEST_NAME"
	exit 0
}

# expect_status N cmd...: run cmd, fail unless it exits with N.
expect_status()
{
	want=$1
	shift
	"$@" >/dev/null 2>&1
	got=$?
	[ "$got" -eq "$want" ] || fail "'$*' exited $got, expected $want"
}

# need TOOL...: fail (not skip) when a tool the suite depends on is missing;
# scripts/bootstrap installs all of them.
need()
{
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 ||
			fail "$t is not installed (run scripts/bootstrap)"
	done
}

# A scratch directory removed when the test exits.
scratch()
{
	SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/fsvisor-$TEST_NAME.XXXXXX")
	trap 'rm -rf "$SCRATCH"' EXIT
	cd "$SCRATCH" || fail "cannot enter $SCRATCH"
}
