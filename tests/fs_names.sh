#!/bin/sh
# Object names are [A-Za-z0-9._-]{1,64} without a leading dot: anything
# else is refused, so nothing can escape the state directory.  And writes
# are atomic: several shells writing one file leave one whole value.
. "$SOURCE_ROOT/tests/lib.sh"
scratch
mount_service
cd "$MNT" || fail "cannot enter the mount"

name64=$(head -c 64 /dev/zero | tr '\0' a)
name65=$(head -c 65 /dev/zero | tr '\0' b)

# vms/a/nics exists once vms/a is made, in the first round.
for dir in vms disks switches vms/a/nics; do
	for name in .hidden . "$name65" "a b" "$(printf 'a\001b')" "$(printf 'tab\there')" \
		"é" 'a*b' 'semi;colon' 'back\slash' '$x' '~home'; do
		got=$("$FSOP" mkdir "$dir/$name")
		case "$got" in
		EINVAL) ;;
		EEXIST) [ "$name" = . ] || fail "mkdir '$dir/$name' gave EEXIST" ;;
		*) fail "mkdir '$dir/$name' gave $got, expected EINVAL" ;;
		esac
	done
	# ".." is the parent: the kernel answers that one.
	[ "$("$FSOP" mkdir "$dir/..")" = EEXIST ] || fail "mkdir $dir/.. was not refused"
	# "/" separates names: a/b looks for a directory a.
	[ "$("$FSOP" mkdir "$dir/nosuch/b")" = ENOENT ] || fail "mkdir $dir/nosuch/b"
	for name in "$name64" a A.b-c_d 0 x.vhdx; do
		[ "$("$FSOP" mkdir "$dir/$name")" = ok ] || fail "mkdir '$dir/$name' was refused"
	done
	[ "$("$FSOP" mkdir "$dir/a")" = EEXIST ] || fail "mkdir of an existing $dir/a"
done
# Nothing else appeared in the state directory.
for f in "$STATE"/vms/* "$STATE"/disks/* "$STATE"/switches/*; do
	case "$(basename "$f")" in
	"$name64" | a | A.b-c_d | 0 | x.vhdx) ;;
	*) fail "unexpected entry in the state directory: $f" ;;
	esac
done
[ "$(ls vms | wc -l)" = 5 ] || fail "vms/ holds $(ls vms | wc -l) entries"
[ "$(ls vms/a/nics | wc -l)" = 5 ] || fail "vms/a/nics/ holds $(ls vms/a/nics | wc -l) entries"
for name in "$name64" a A.b-c_d 0 x.vhdx; do
	rmdir "switches/$name" || fail "rmdir switches/$name"
done
[ "$(stat -c %h vms)" = 7 ] || fail "vms/ has link count $(stat -c %h vms)"
mkdir "vms/$name64/sub" 2>/dev/null && fail "mkdir inside a VM succeeded"

# ---- concurrent writes ------------------------------------------------------
# Eight shells, each writing its own value many times: the file ends up
# holding exactly one of them.
for n in 1 2 3 4 5 6 7 8; do
	(
		value=$(head -c 3000 /dev/zero | tr '\0' "$n")
		i=0
		while [ $i -lt 40 ]; do
			echo "$value" > vms/a/boot/cmdline
			echo "$n" > vms/a/cpus
			i=$((i + 1))
		done
	) &
done
wait
v=$(cat vms/a/boot/cmdline)
[ ${#v} = 3000 ] || fail "cmdline has ${#v} bytes after concurrent writes"
c=$(printf '%s' "$v" | cut -c1)
[ "$(printf '%s' "$v" | tr -d "$c")" = "" ] || fail "cmdline is a mix of writes"
case "$(cat vms/a/cpus)" in
[1-8]) ;;
*) fail "cpus reads '$(cat vms/a/cpus)' after concurrent writes" ;;
esac
# And the saved definition is the same value.
grep -q "\"cmdline\": \"$v\"" vms/a/config.json || fail "config.json disagrees"
cd "$SCRATCH" && stop_service
"$FSVISOR" mount "$MNT" --state "$STATE" || fail "remount failed"
cd "$MNT" || fail "cannot enter the mount again"
[ "$(cat vms/a/boot/cmdline)" = "$v" ] || fail "the saved cmdline differs after a restart"

# Concurrent mkdir of the same name: one wins.
for n in 1 2 3 4 5 6; do
	"$FSOP" mkdir vms/race > "$SCRATCH/race.$n" &
done
wait
[ "$(cat "$SCRATCH"/race.* | grep -c '^ok$')" = 1 ] || fail "mkdir race: $(cat "$SCRATCH"/race.*)"
[ "$(cat "$SCRATCH"/race.* | grep -c '^EEXIST$')" = 5 ] || fail "mkdir race: $(cat "$SCRATCH"/race.*)"
pass
