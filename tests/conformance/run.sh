#!/usr/bin/env bash
# tests/conformance/run.sh: CRIU's ZDTM static tests (core.list and
# extra.list next to this script) through the installed ckpt helpers, in
# three modes. A measurement, not a CI gate: it exits 0 whatever the score,
# non-zero only when it cannot measure. Run as root:
#
#   CKPT_TEST_PREFIX=/opt/ckpt-test tests/conformance/run.sh [MODE...]
#
# MODE: root, root-same-pid, user, user-same-pid, user-pidns (default: all five). See
# tests/conformance/README.md. Environment (optional):
#   CKPT_TEST_PREFIX  where scripts/test.sh installed the helpers (default /opt/ckpt-test)
#   ZDTM_ONLY         comma-separated test names (default: every test of the lists)
#   ZDTM_TIMEOUT      seconds allowed per step of a test (default 30)
#   ZDTM_OUT          JSON result (default tests/conformance/results/latest.json)
#   ZDTM_WORKDIR      per-test directories (default /var/tmp/ckpt-zdtm)
#   ZDTM_USER         the unprivileged caller (default ckpt-user)
#   ZDTM_JOBS         make -j for the tests (default 2)
#   CRIU_DEBIAN_MIRROR  Debian mirror for CRIU's source (default: the one apt uses)
set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/tests/conformance
PREFIX=${CKPT_TEST_PREFIX:-/opt/ckpt-test}
ZDTM_OUT=${ZDTM_OUT:-$HERE/results/latest.json}
ZDTM_WORKDIR=${ZDTM_WORKDIR:-/var/tmp/ckpt-zdtm}
ZDTM_USER=${ZDTM_USER:-ckpt-user}
ZDTM_TIMEOUT=${ZDTM_TIMEOUT:-30}
ZDTM_JOBS=${ZDTM_JOBS:-2}
# The orig tarball is shared with benches/run.sh (same download); the
# unpacked tree and the test build are this runner's own.
TARBALL_DIR=/var/cache/ckpt-bench/src
CACHE=/var/cache/ckpt-zdtm

log() { printf '[zdtm] %s\n' "$*" >&2; }
die() { printf '[zdtm] error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root: it builds in $CACHE, starts tests as root and as $ZDTM_USER, and writes $PREFIX/etc/policy.toml for the same-pid mode"
[[ $ZDTM_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "ZDTM_TIMEOUT must be a positive integer"
MODES=()
for m in "$@"; do
	case $m in
	root | root-same-pid | user | user-same-pid | user-pidns) MODES+=("$m") ;;
	*) die "unknown mode '$m' (root, root-same-pid, user, user-same-pid, user-pidns)" ;;
	esac
done
((${#MODES[@]})) || MODES=(root root-same-pid user user-same-pid user-pidns)

# shellcheck source=scripts/criu-src.sh
. "$REPO/scripts/criu-src.sh"
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
ZDTM=$CACHE/criu-$CRIU_VERSION/test/zdtm
STATIC=$ZDTM/static

# ---------------------------------------------------------------- the helpers
for b in ckpt-sign ckpt-verify; do
	f=$PREFIX/bin/$b
	if [[ ! -x $f || $(stat -c '%U %a' "$f") != "root 4755" ]]; then
		die "$f is not an installed setuid-root helper. Install one with scripts/test.sh, e.g.
    CKPT_TEST_PREFIX=$PREFIX scripts/test.sh -p ckpt-policy --lib
(any targeted run builds, installs the helpers setuid into the prefix and makes a host key)"
	fi
done
[[ -f $PREFIX/etc/keys/host.pub ]] || die "$PREFIX/etc/keys/host.pub missing: run $PREFIX/bin/ckpt-sign keygen"
id -u "$ZDTM_USER" >/dev/null 2>&1 || die "user $ZDTM_USER does not exist (scripts/test.sh creates it)"
if [[ -e $PREFIX/etc/policy.toml ]] || compgen -G "$PREFIX/etc/policy.d/*.toml" >/dev/null; then
	log "note: $PREFIX has a policy installed; the root and user modes run under it"
fi

mkdir -p "$CACHE"
chmod 0755 "$CACHE"
exec 9>"$CACHE/run.lock"
flock -n 9 || die "another tests/conformance/run.sh is running"

# ---------------------------------------------------------------- the tests
# Built once per CRIU version; the stamp records a finished build.
STAMP=$CACHE/zdtm-built-$CRIU_VERSION
if [[ ! -f $STAMP ]]; then
	criu_source "$TARBALL_DIR" "$CACHE" || die "could not get CRIU $CRIU_VERSION's source"
	ensure_packages "${CRIU_BUILD_DEPS[@]}" build-essential util-linux >&2
	log "building ZDTM (make -C test/zdtm/lib; make -k -C test/zdtm/static; log: $CACHE/zdtm-build.log)"
	{
		nice -n 19 make -j"$ZDTM_JOBS" -C "$ZDTM/lib" &&
			{ nice -n 19 make -j"$ZDTM_JOBS" -k -C "$STATIC" || true; }
	} >"$CACHE/zdtm-build.log" 2>&1 || {
		tail -30 "$CACHE/zdtm-build.log" >&2
		die "test/zdtm/lib did not build (log: $CACHE/zdtm-build.log)"
	}
	# Only netns_sub_veth is known not to build; every listed test must.
	missing=()
	while read -r t; do
		[[ -x $STATIC/$t ]] || missing+=("$t")
	done < <(grep -hv '^#' "$HERE/core.list" "$HERE/extra.list" | awk 'NF {print $1}')
	((${#missing[@]} == 0)) || log "warning: not built (they will fail as such): ${missing[*]}"
	touch "$STAMP"
fi
# Test binaries and their directories must be reachable by the unprivileged
# caller (the restore reopens the executable with its credentials).
chmod 0755 "$CACHE" "$CACHE/criu-$CRIU_VERSION"

# ---------------------------------------------------------------- run
git_rev=$(git -c safe.directory="$REPO" -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)
git_dirty=false
if [[ -n $(git -c safe.directory="$REPO" -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
	git_dirty=true
fi
helpers_sha=$(sha256sum "$PREFIX/bin/ckpt-sign" "$PREFIX/bin/ckpt-verify" | awk '{printf "%s\"%s\": \"%s\"", (NR > 1 ? ", " : ""), $2, $1}')
meta=$(printf '{"git_commit": "%s", "git_dirty": %s, "criu_version": "%s", "helpers_sha256": {%s}}' \
	"$git_rev" "$git_dirty" "$CRIU_VERSION" "$helpers_sha")

modes=$(
	IFS=,
	echo "${MODES[*]}"
)
log "modes: $modes; helpers: $PREFIX/bin; tests: $STATIC; per-test directories: $ZDTM_WORKDIR"
# python3 keeps fd 9 (the lock) for the run; the processes it starts do not
# inherit it (subprocess closes other fds).
exec python3 "$HERE/zdtm.py" --static "$STATIC" --prefix "$PREFIX" --lists "$HERE" \
	--modes "$modes" --user "$ZDTM_USER" --workdir "$ZDTM_WORKDIR" --out "$ZDTM_OUT" \
	--timeout "$ZDTM_TIMEOUT" --only "${ZDTM_ONLY:-}" --meta "$meta"
