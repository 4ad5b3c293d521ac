# shellcheck shell=bash
# CRIU 4.1.1's source, as Debian publishes it for trixie. Shared by
# benches/run.sh (which builds CRIU itself) and tests/conformance/run.sh
# (which builds CRIU's ZDTM tests). Sourced, not run; needs root.
#
# Debian 12's criu 3.17 does not work on current kernels, so the source is
# trixie's: a `Types: deb-src` entry for `trixie main` on the mirror apt
# already uses (source indexes only: no binary package comes from trixie),
# then `apt-get source --download-only criu/trixie`. That command exits
# non-zero (the .dsc and debian.tar.xz are missing on the mirror) but the
# orig tarball arrives; apt checks it against the signed Sources index and
# criu_source checks the pinned SHA-256 below too.

CRIU_VERSION=4.1.1
CRIU_TARBALL=criu_${CRIU_VERSION}.orig.tar.xz
CRIU_SHA256=f80a66cb3726bb2116266d4759ce3bcbfab7abdb6b6d430bf20dd41911717afe
# What building CRIU, or its test suite, needs from Debian 12.
# (libprotobuf-dev: google/protobuf/descriptor.proto.)
# shellcheck disable=SC2034 # used by the scripts that source this file
CRIU_BUILD_DEPS=(libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev protobuf-compiler
	libnl-3-dev libnet1-dev libcap-dev libbsd-dev libaio-dev libgnutls28-dev libnftables-dev
	uuid-dev pkg-config python3-protobuf gcc make xz-utils)
CRIU_SRC_LIST=/etc/apt/sources.list.d/ckpt-bench-trixie-src.sources

# The Debian mirror the machine's apt sources already use (main archive
# entry for this release, not -security / -updates). CRIU_DEBIAN_MIRROR
# overrides it.
criu_debian_mirror() {
	if [[ -n ${CRIU_DEBIAN_MIRROR:-} ]]; then
		echo "$CRIU_DEBIAN_MIRROR"
		return
	fi
	local codename uri f
	# shellcheck disable=SC1091
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -e $f ]] || continue
		# deb822: stanzas separated by blank lines.
		uri=$(awk -v cn="$codename" '
			BEGIN { RS = ""; FS = "\n" }
			{
				types = ""; uris = ""; suites = ""
				for (i = 1; i <= NF; i++) {
					if ($i ~ /^Types:/) types = $i
					else if ($i ~ /^URIs:/) uris = $i
					else if ($i ~ /^Suites:/) suites = $i
				}
				if (types !~ /(^|[ \t])deb([ \t]|$)/) next
				if (suites !~ ("[ \t]" cn "([ \t]|$)")) next
				sub(/^URIs:[ \t]*/, "", uris); split(uris, u, /[ \t]+/)
				print u[1]; exit
			}' "$f")
		[[ -n $uri ]] && { echo "$uri"; return; }
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -e $f ]] || continue
		uri=$(awk -v cn="$codename" '
			$1 == "deb" {
				i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
				if ($(i + 1) == cn) { print $i; exit }
			}' "$f")
		[[ -n $uri ]] && { echo "$uri"; return; }
	done
	echo "http://deb.debian.org/debian"
}

# criu_source TARBALL_DIR TREE_PARENT: makes sure TARBALL_DIR holds the
# checked orig tarball (downloading it if needed) and that
# TREE_PARENT/criu-$CRIU_VERSION holds its unpacked tree. Prints progress to
# stderr; returns non-zero with a message on failure. Does not install the
# build dependencies (CRIU_BUILD_DEPS) nor build anything.
criu_source() {
	local tdir=$1 parent=$2 tarball=$1/$CRIU_TARBALL
	mkdir -p "$tdir" "$parent"
	if [[ ! -f $tarball ]]; then
		if ! apt-cache showsrc "criu=$CRIU_VERSION-1" 2>/dev/null | grep -q "^Version: $CRIU_VERSION"; then
			local mirror
			mirror=$(criu_debian_mirror)
			printf 'criu-src: adding deb-src trixie from %s (%s)\n' "$mirror" "$CRIU_SRC_LIST" >&2
			cat >"$CRIU_SRC_LIST" <<-EOF
				Types: deb-src
				URIs: $mirror
				Suites: trixie
				Components: main
				Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
			EOF
			apt-get update -q >&2 || return 1
		fi
		# Exits non-zero when the .dsc / debian.tar.xz are missing on the
		# mirror; the orig tarball is all that is needed.
		(cd "$tdir" && apt-get source --download-only "criu/trixie" >&2) || true
		if [[ ! -f $tarball ]]; then
			printf 'criu-src: apt-get source did not fetch %s\n' "$CRIU_TARBALL" >&2
			return 1
		fi
	fi
	if ! echo "$CRIU_SHA256  $tarball" | sha256sum -c --quiet -; then
		printf 'criu-src: %s: sha256 mismatch\n' "$tarball" >&2
		return 1
	fi
	if [[ ! -d $parent/criu-$CRIU_VERSION ]]; then
		rm -rf "$parent/criu-$CRIU_VERSION.tmp"
		mkdir -p "$parent/criu-$CRIU_VERSION.tmp"
		tar -C "$parent/criu-$CRIU_VERSION.tmp" -xf "$tarball" || return 1
		mv "$parent/criu-$CRIU_VERSION.tmp/criu-$CRIU_VERSION" "$parent/criu-$CRIU_VERSION" || return 1
		rmdir "$parent/criu-$CRIU_VERSION.tmp"
	fi
}
