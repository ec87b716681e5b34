#!/bin/sh
# Slow suite: scripts/bootstrap, the build, the unit suite and end-to-end
# tests in a fresh Debian 12 root (debootstrap --variant=minbase bookworm),
# so that a package the bootstrap forgets fails here and not on the next
# new machine.  The root sees none of the host's packages: only /proc,
# /sys and /dev (for /dev/kvm, /dev/fuse, /dev/net/tun) come from the host.
#
# The debootstrapped root is cached as a tarball for 30 days; each run
# unpacks its own copy, whose apt cache holds what the bootstrap fetched,
# and deletes it afterwards.  Stage logs and the inner meson log are kept
# in $BUILD_ROOT/fresh_root/.
#
#   FRESH_ROOT_TESTS   tests run after the unit suite
#                      (default: "fs_vm bootstrap_deps")
#   FRESH_ROOT_MIRROR  Debian mirror (default: the host's apt sources)
#   FRESH_ROOT_CACHE   cache directory (default: /var/cache/fsvisor-test)
#   FRESH_ROOT_WORK    where the copies go (default: /var/tmp)
. "$SOURCE_ROOT/tests/lib.sh"
need unshare debootstrap chroot mount umount tar awk tac
[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, chroot, mounts)"
for d in /dev/kvm /dev/fuse /dev/net/tun; do
	[ -c "$d" ] || fail "$d is missing"
done

# Everything below runs in a mount namespace of its own.  The cleanup
# unmounts what it mounted, but whatever it cannot reach (this shell
# killed with SIGKILL, as meson does 0.5 s after a timeout's TERM) goes
# away with the last process in the namespace, and a bind of the host's
# /dev is visible to no one else meanwhile.
if [ -z "${FRESH_ROOT_NS:-}" ]; then
	FRESH_ROOT_NS=$$ exec unshare --mount --propagation private \
		sh "$0" "$@"
fi

cache=${FRESH_ROOT_CACHE:-/var/cache/fsvisor-test}
tarball=$cache/bookworm-minbase.tar
max_days=30
tests=${FRESH_ROOT_TESTS:-fs_vm bootstrap_deps}
logs=$BUILD_ROOT/fresh_root
rm -rf "$logs"
mkdir -p "$logs" "$cache" || fail "cannot make $logs and $cache"

# ---- cleanup, on every way out ---------------------------------------------

work=""		# this run's copy of the root
cache_tmp=""	# a cache being built
child=""	# the stage running now

# mounts_under DIR: mount points at or below DIR, most recent first, so
# that children come before the mounts they sit on.
mounts_under()
{
	awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' \
		/proc/self/mounts | tac
}

unmount_under()
{
	for m in $(mounts_under "$1"); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null ||
			echo "fresh_root: cannot unmount $m" >&2
	done
}

# The cleanup must be quick: after a timeout's TERM meson waits 0.5 s
# before it sends KILL.  So each of these reads /proc in one process, not
# one per process.

# kill_tree PID: PID and everything it started (setsid or not), children
# first.
kill_tree()
{
	# "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v top="$1" '
		{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); up[$1] = f[2] }
		END {
			n = 1; tree[1] = top
			for (i = 1; i <= n; i++)
				for (p in up)
					if (up[p] == tree[i])
						tree[++n] = p
			for (i = n; i >= 1; i--)
				print tree[i]
		}' | xargs -r kill -9 2>/dev/null
}

# kill_chrooted DIR: processes whose root is DIR or below, which would
# keep its mounts busy (a service a test left running, a dpkg of
# debootstrap's).
kill_chrooted()
{
	pids=$(find /proc/[0-9]*/root -maxdepth 0 \( -lname "$1" -o \
		-lname "$1/*" \) 2>/dev/null | sed 's|^/proc/\([0-9]*\)/root$|\1|')
	[ -n "$pids" ] || return 0
	# shellcheck disable=SC2086
	kill -9 $pids 2>/dev/null
	echo "fresh_root: killed $(printf '%s\n' "$pids" | wc -l) processes left in $1"
}

# remove DIR: unmount what is below DIR, then delete it, but never through
# a mount that is still there; --one-file-system as a second fence.
remove()
{
	[ -n "$1" ] && [ -d "$1" ] || return 0
	kill_chrooted "$1"
	unmount_under "$1"
	left=$(mounts_under "$1")
	if [ -n "$left" ]; then
		echo "fresh_root: still mounted, $1 is kept:" "$left" >&2
		return 1
	fi
	rm -rf --one-file-system "$1"
}

cleanup()
{
	rc=$?
	trap - EXIT
	trap '' INT TERM
	[ -n "$child" ] && kill_tree "$child"
	# The mounts first, all of them, then the slow part.
	for d in "$work" "$cache_tmp"; do
		[ -n "$d" ] || continue
		kill_chrooted "$d"
		unmount_under "$d"
	done
	if [ -n "$work" ] && [ -f "$work/root/src/build/meson-logs/testlog.txt" ]; then
		cp "$work/root/src/build/meson-logs/testlog.txt" "$logs/meson-testlog.txt"
	fi
	remove "$work" || rc=1
	remove "$cache_tmp" || rc=1
	exit "$rc"
}
trap cleanup EXIT
# A signal ends the shell through exit, so that the EXIT trap runs.
trap 'exit 143' TERM
trap 'exit 130' INT

# ---- stages ----------------------------------------------------------------

total_start=$(date +%s)

# stage NAME CMD...: run CMD, its output in $logs/NAME.log, and print how
# long it took.  In the background, so that a signal is seen at once.
stage()
{
	st_name=$1
	shift
	st_start=$(date +%s)
	"$@" > "$logs/$st_name.log" 2>&1 &
	child=$!
	wait $child
	st_rc=$?
	child=""
	echo "stage $st_name: $(($(date +%s) - st_start)) s (exit $st_rc)"
	if [ $st_rc -ne 0 ]; then
		# The tests' own reasons first: a long log buries them.
		grep "^FAIL " "$logs/$st_name.log"
		echo "--- $st_name: last lines of its log ---"
		tail -n 40 "$logs/$st_name.log"
	fi
	return $st_rc
}

# in_root CMD: run CMD with sh in the root's /src, with an environment of
# its own: nothing of the host's PATH (/usr/local, ~/.pyenv) comes along.
in_root()
{
	chroot "$work/root" /usr/bin/env -i \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LC_ALL=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive \
		/bin/sh -c "cd /src && $1"
}

# The Debian mirror this machine's apt uses for bookworm: deb822 stanzas
# in *.sources first, then one-line entries.
host_mirror()
{
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk 'function flush() {
				if (uri != "" && deb && suite && !off)
					print uri
				uri = ""; deb = suite = off = 0
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			{ k = tolower($1) }
			k == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
			k == "uris:" { uri = $2 }
			k == "suites:" { for (i = 2; i <= NF; i++) if ($i == "bookworm") suite = 1 }
			k == "enabled:" { off = tolower($2) == "no" }
			END { flush() }' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		# deb [options] URI SUITE COMPONENTS...
		awk '$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) {
					while (i < NF && $i !~ /\]$/)
						i++
					i++
				}
				if ($(i + 1) == "bookworm")
					print $i
			}' "$f"
	done
}

mirror=${FRESH_ROOT_MIRROR:-$(host_mirror | grep -E '^https?://' | head -n1)}
[ -n "$mirror" ] ||
	fail "no bookworm mirror in the host's apt sources (set FRESH_ROOT_MIRROR)"
echo "mirror: $mirror"

# debootstrap into a directory of its own, tar it, and rename the tarball
# into place: an interrupted build is never taken for the cache.
build_cache()
{
	debootstrap --variant=minbase bookworm "$cache_tmp/root" "$mirror" &&
		rm -f "$cache_tmp"/root/var/cache/apt/archives/*.deb &&
		tar -C "$cache_tmp/root" --numeric-owner --xattrs \
			--xattrs-include='*' -cf "$cache_tmp/root.tar" . &&
		mv "$cache_tmp/root.tar" "$tarball"
}

if [ -f "$tarball" ] && [ -n "$(find "$tarball" -mtime -$max_days)" ]; then
	echo "cache: $tarball ($(du -m "$tarball" | cut -f1) MiB, from $(date -r "$tarball" +%F))"
else
	cache_tmp=$(mktemp -d "$cache/build.XXXXXX") ||
		fail "cannot make a directory in $cache"
	stage debootstrap build_cache || fail "debootstrap failed"
	remove "$cache_tmp" || fail "cannot remove $cache_tmp"
	cache_tmp=""
	echo "cache: built $tarball ($(du -m "$tarball" | cut -f1) MiB)"
fi

# Copies that killed runs left behind (mounts never outlive their
# namespace, the directories do), unless a process still works in one.
for old in "${FRESH_ROOT_WORK:-/var/tmp}"/fsvisor-fresh.*; do
	[ -f "$old/pid" ] || continue
	kill -0 "$(cat "$old/pid")" 2>/dev/null && continue
	[ -z "$(find /proc/[0-9]*/root -maxdepth 0 -lname "$old/*" 2>/dev/null)" ] ||
		continue
	echo "removing $old, left by an earlier run"
	remove "$old"
done

work=$(mktemp -d "${FRESH_ROOT_WORK:-/var/tmp}/fsvisor-fresh.XXXXXX") ||
	fail "cannot make the work directory"
echo "$FRESH_ROOT_NS" > "$work/pid"
root=$work/root
mkdir "$root"

# The root, its network configuration, and the sources as they are in
# this tree (tracked or not; no build directories, no .git).
unpack()
{
	tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' \
		-xf "$tarball" &&
		cp /etc/resolv.conf /etc/hosts "$root/etc/" &&
		echo "deb $mirror bookworm main" > "$root/etc/apt/sources.list" &&
		# No package may start a daemon here: it would keep the
		# mounts busy and outlive the test.
		printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d" &&
		chmod 755 "$root/usr/sbin/policy-rc.d" &&
		mkdir "$root/src" &&
		tar -C "$SOURCE_ROOT" --exclude=./.git --exclude='./build*' \
			--exclude='*.tmp.*' -cf - . | tar -C "$root/src" -xf -
}
stage unpack unpack || fail "cannot unpack the root into $root"

# A fresh root: none of what the bootstrap installs is there on its own.
# Minbase holds some of those packages because others of it depend on
# them (util-linux-extra, of priority standard): a package another
# installed one depends on does not count.
needed=$(in_root "dpkg-query -W -f='\${db:Status-Abbrev} \${Depends}, \${Pre-Depends}\n'" |
	awk '/^ii/ { $1 = ""; print }' | tr ',|' '\n\n' | sed 's/^ *//; s/[ (].*//; s/:any$//; /^$/d' |
	sort -u)
have=$(in_root "dpkg-query -W -f='\${db:Status-Abbrev} \${Package}\n' \
	\$(scripts/bootstrap --list) 2>/dev/null" | awk '/^ii/ { print $2 }' |
	while read -r pkg; do
		printf '%s\n' "$needed" | grep -qx "$pkg" || printf '%s ' "$pkg"
	done)
[ -z "$have" ] || fail "the root is not fresh, it has: $have"
echo "root: $(in_root "dpkg-query -W | wc -l") packages before the bootstrap"

for d in proc sys dev; do
	# Recursive for /dev/pts, /dev/shm and the cgroups below /sys.
	mount --rbind "/$d" "$root/$d" || fail "cannot bind /$d into $root"
done

stage bootstrap in_root scripts/bootstrap ||
	fail "scripts/bootstrap failed in a fresh root"
grep "^bootstrap:" "$logs/bootstrap.log"
grep -E "^Need to get|^After this operation" "$logs/bootstrap.log"
# All it installed is what it asked for: a second run finds nothing missing.
stage bootstrap-again in_root scripts/bootstrap ||
	fail "scripts/bootstrap failed when run again"
[ ! -s "$logs/bootstrap-again.log" ] ||
	fail "a second scripts/bootstrap still installed: $(cat "$logs/bootstrap-again.log")"

stage build in_root "scripts/build build" ||
	fail "scripts/build failed in the fresh root"

stage unit in_root "meson test -C build --suite unit --print-errorlogs" ||
	fail "the unit suite failed in the fresh root"
grep -E "^(Ok|Fail|Skipped|Timeout):" "$logs/unit.log"

stage e2e in_root "meson test -C build --print-errorlogs $tests" ||
	fail "end-to-end tests failed in the fresh root: $tests"
grep -E "^ *[0-9]+/[0-9]+ " "$logs/e2e.log"

echo "total: $(($(date +%s) - total_start)) s"
pass
