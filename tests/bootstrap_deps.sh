#!/bin/sh
# Every tool that a test, benchmark or example asks for with "need" comes
# from a package that scripts/bootstrap installs (named there, or pulled in
# as a dependency of one named there), or from one that every Debian 12
# root has: debootstrap --variant=minbase installs the Essential and
# Priority: required packages.  So a "need foo" added without foo's package
# fails here, on any machine, and not only on a fresh one
# (tests/slow/fresh_root.sh finds the rest).
. "$SOURCE_ROOT/tests/lib.sh"
need apt-cache dpkg-query readlink find sed sort awk
src=$SOURCE_ROOT
scratch
cd "$src" || fail "cannot enter $src"

# The words after "need" up to a comment or the end of the command; the
# definition in lib.sh ("need()") does not match.
tools=$(find tests bench examples -name '*.sh' -exec \
	sed -n 's/^[[:space:]]*need[[:space:]]\{1,\}\([^#;&|]*\).*/\1/p' {} + |
	tr -s '[:space:]' '\n' | grep -v '^$' | sort -u)
cd "$SCRATCH" || fail "cannot enter $SCRATCH"
[ -n "$tools" ] || fail "no need lines under tests/, bench/, examples/"

pkgs=$("$src/scripts/bootstrap" --list) ||
	fail "scripts/bootstrap --list failed"
[ -n "$pkgs" ] || fail "scripts/bootstrap --list printed nothing"
# What installing them brings along.  --installed keeps apt from following
# alternatives that nothing here chose; the names at the start of a line
# are the packages it visited.
# shellcheck disable=SC2086
closure=$(apt-cache depends --recurse --installed --no-recommends \
	--no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances \
	$pkgs 2>/dev/null | sed -n 's/^\([a-z0-9][^ :]*\).*/\1/p' | sort -u)
[ -n "$closure" ] || fail "apt-cache depends found nothing for: $pkgs"

# Where each tool lives, as "TOOL FILE" lines, under every name dpkg may
# know it by.  Only system directories count: a fresh root's PATH has no
# /usr/local or ~/.pyenv.  Usrmerge moved /bin to /usr/bin, but dpkg still
# knows most files by their old name; an alternative (awk, cc) is owned by
# the file its links end at.
for t in $tools; do
	for d in /usr/sbin /usr/bin /sbin /bin; do
		[ -x "$d/$t" ] || continue
		real=$(readlink -f "$d/$t")
		for f in "$d/$t" "${d#/usr}/$t" "/usr${d#/usr}/$t" \
			"$real" "${real#/usr}"; do
			echo "$t $f"
		done
	done
done | sort -u > files
# One search for all of them: each one reads dpkg's whole file list.
# Lines are "pkg1, pkg2:amd64: /path"; diversions are not owners.
# shellcheck disable=SC2046
dpkg-query -S $(cut -d' ' -f2 files | sort -u) 2>/dev/null |
	grep -v '^diversion ' > owned

# owners TOOL: the packages that own one of TOOL's files.
owners()
{
	awk -v t="$1" 'FNR == NR { if ($1 == t) want[$2] = 1; next }
		{
			k = index($0, ": /")
			if (!(substr($0, k + 2) in want))
				next
			n = split(substr($0, 1, k - 1), p, ", ")
			for (i = 1; i <= n; i++) {
				sub(/:.*/, "", p[i])
				print p[i]
			}
		}' files owned | sort -u
}

# A package that a minbase root has already.
in_minbase()
{
	case "$(dpkg-query -W -f='${Essential} ${Priority}' "$1" 2>/dev/null)" in
	"yes "* | *" required") return 0 ;;
	esac
	return 1
}

missing=""
for t in $tools; do
	case $t in
	*[!A-Za-z0-9._+-]*)
		missing="$missing
  '$t': a need line must name its tools literally"
		continue
		;;
	esac
	from=$(owners "$t")
	if [ -z "$from" ]; then
		missing="$missing
  $t: no Debian package installed it in /usr/sbin, /usr/bin, /sbin or /bin"
		continue
	fi
	how=""
	for p in $from; do
		if printf '%s\n' "$closure" | grep -qxF "$p"; then
			how="$p, from scripts/bootstrap"
		elif [ -z "$how" ] && in_minbase "$p"; then
			how="$p, in every minbase root"
		fi
	done
	if [ -z "$how" ]; then
		missing="$missing
  $t: from $(printf '%s\n' "$from" | paste -sd' '), which scripts/bootstrap does not install"
		continue
	fi
	echo "ok $t ($how)"
done
[ -z "$missing" ] ||
	fail "tools that tests need but scripts/bootstrap does not install:$missing"
pass
