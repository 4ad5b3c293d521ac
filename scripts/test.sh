#!/usr/bin/env bash
# Runs every test of ckpt, as root, on a fresh Debian 12 that has the Rust
# toolchain (cargo, rustfmt, clippy):
#
#   1. installs the packages the build and the tests need (PACKAGES below:
#      the C toolchain for the workloads, libtss2 for the TPM code, swtpm
#      for the TPM tests, setpriv, ps, and the real programs that
#      tests/tests/real_programs.rs checkpoints: python3, golang-go,
#      default-jre-headless, sqlite3, and make and tmux for
#      tests/tests/trees.rs) and creates the users ckpt-user and
#      ckpt-other if they are missing;
#   2. checks formatting (cargo fmt --check), lints
#      (cargo clippy --all-targets -- -D warnings) and the MSRV (the
#      workspace's rust-version toolchain, installed with rustup when
#      missing, checks everything against the committed Cargo.lock);
#   3. builds the workspace once, in release mode, with the test prefix's
#      configuration directory baked in (CKPT_SYSCONFDIR=/opt/ckpt-test/etc,
#      and the audit socket the tests listen on, CKPT_SYSLOG_SOCKET);
#   4. installs ckpt-sign and ckpt-verify setuid root (4755) into
#      /opt/ckpt-test/bin, the TPM agent ckpt-tpm-agent root-owned 0755
#      (not setuid) into /opt/ckpt-test/lib/ckpt (CKPT_LIBEXECDIR, where
#      ckpt-sign looks for it), and makes a fresh host key;
#   5. runs `cargo test --release --workspace`: every crate's unit tests and
#      the end-to-end tests in tests/, which drive the installed setuid
#      helpers as ckpt-user;
#   6. runs the Debian package round trip (scripts/package-test.sh: builds
#      the package with the default /etc/ckpt in the same target directory,
#      so only the workspace's own crates are built again; dpkg -i, dump,
#      verify and restore as ckpt-user through /usr/bin, remove, purge).
#
# It exits non-zero if any step fails; formatting, lint and test failures
# are all reported before it exits. It never touches /usr/local, and
# leaves /etc/ckpt as it found it: the package round trip moves an
# existing /etc/ckpt (the demo's, scripts/demo.sh) aside and puts it back.
#
# Environment (optional): CARGO_TARGET_DIR (default target/e2e, kept apart
# from the demo's build because the configuration directory differs),
# CKPT_TEST_KEEP=1 keeps every test's directory under /tmp,
# CKPT_TEST_PREFIX (default /opt/ckpt-test) to keep two checkouts' installs
# apart.
#
# Arguments (optional, for development): when any are given, formatting and
# lints are not checked, `cargo test --release ARGS...` runs instead of
# the whole workspace, e.g. `scripts/test.sh -p ckpt-tests --test hostile`,
# and the package round trip does not run (run scripts/package-test.sh).
set -euo pipefail

PREFIX=${CKPT_TEST_PREFIX:-/opt/ckpt-test}
TEST_USER=ckpt-user
OTHER_USER=ckpt-other
THIRD_USER=ckpt-third
# golang-go, default-jre-headless and sqlite3 are the real programs of
# tests/tests/real_programs.rs (Go builds its server there, offline; the
# JRE runs a single-file Java source, its runtime image has the compiler
# module, so no JDK). On a fresh Debian 12 they add about 125 MB to fetch
# (golang 1.19 with its sources, openjdk-17-jre-headless) and 20-40 s.
# make and tmux are the real programs of tests/tests/trees.rs (a make -j2
# build and a tmux server dumped with --tree).
# man-db is for the package round trip (`man ckpt-verify` after dpkg -i).
PACKAGES=(gcc libc6-dev python3 util-linux procps passwd swtpm libtss2-dev pkg-config
    golang-go default-jre-headless sqlite3 make tmux man-db)

started=$SECONDS
step() { printf '\n==> [%4ds] %s\n' "$((SECONDS - started))" "$*"; }
die() { printf 'test.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (sudo scripts/test.sh): it installs setuid helpers and creates users"
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"
find_cargo

step "packages: ${PACKAGES[*]}"
ensure_packages "${PACKAGES[@]}"

step "users: $TEST_USER, $OTHER_USER, $THIRD_USER"
for u in "$TEST_USER" "$OTHER_USER" "$THIRD_USER"; do
    if id -u "$u" >/dev/null 2>&1; then
        echo "$u exists: $(id "$u")"
    else
        useradd -m -s /bin/bash "$u"
        echo "created $u: $(id "$u")"
    fi
done

# One configuration for every cargo call below, so the release build of the
# helpers and the test build share their artifacts and nothing is rebuilt
# with another configuration directory in between.
export CKPT_SYSCONFDIR=$PREFIX/etc
export CKPT_STATEDIR=$PREFIX/state
# The helpers' audit records go to this socket; the tests bind it and read them.
export CKPT_SYSLOG_SOCKET=$PREFIX/run/syslog.sock
# Where ckpt-sign finds the TPM agent (baked in, like the directories above).
export CKPT_LIBEXECDIR=$PREFIX/lib/ckpt
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target/e2e}
export CARGO_TERM_COLOR=never
echo "CKPT_SYSCONFDIR=$CKPT_SYSCONFDIR CKPT_STATEDIR=$CKPT_STATEDIR CKPT_SYSLOG_SOCKET=$CKPT_SYSLOG_SOCKET CKPT_LIBEXECDIR=$CKPT_LIBEXECDIR"
echo "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
cargo --version
rustc --version

failed=()
full=0
[ "$#" -eq 0 ] && full=1

if [ "$#" -eq 0 ]; then
    step "cargo fmt --all --check"
    if ! cargo fmt --all --check; then
        failed+=("cargo fmt --check")
    fi

    step "cargo clippy --all-targets -- -D warnings"
    if ! cargo clippy --workspace --all-targets -- -D warnings; then
        failed+=("cargo clippy")
    fi

    # The MSRV (rust-version in Cargo.toml): that toolchain must build
    # every crate and test with the committed Cargo.lock.
    msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
    step "MSRV: cargo +$msrv check --locked --workspace --all-targets"
    if ! { rustup toolchain list | grep -q "^$msrv" ||
        rustup toolchain install "$msrv" --profile minimal; } ||
        ! cargo "+$msrv" check --locked --workspace --all-targets \
            --target-dir "$CARGO_TARGET_DIR/msrv"; then
        failed+=("MSRV $msrv check")
    fi
fi

step "cargo build --release --workspace --bins"
cargo build --release --workspace --bins

step "install the helpers setuid root into $PREFIX/bin"
install -d -o root -g root -m 0755 "$PREFIX" "$PREFIX/bin"
rm -rf "$PREFIX/etc" "$PREFIX/state" "$PREFIX/run"
install -d -o root -g root -m 0755 "$PREFIX/etc" "$PREFIX/run"
install -d -o root -g root -m 0700 "$PREFIX/state"
for b in ckpt-sign ckpt-verify; do
    rm -f "$PREFIX/bin/$b"
    install -o root -g root -m 4755 "$CARGO_TARGET_DIR/release/$b" "$PREFIX/bin/$b"
done
# The TPM agent: root-owned, 0755, not setuid (ckpt-sign starts it as
# root and refuses it if group or others could write it).
install -d -o root -g root -m 0755 "$PREFIX/lib" "$CKPT_LIBEXECDIR"
rm -f "$CKPT_LIBEXECDIR/ckpt-tpm-agent"
install -o root -g root -m 0755 "$CARGO_TARGET_DIR/release/ckpt-tpm-agent" "$CKPT_LIBEXECDIR/ckpt-tpm-agent"
ls -l "$PREFIX/bin" "$CKPT_LIBEXECDIR"
if findmnt -n -o OPTIONS -T "$PREFIX/bin" | tr ',' '\n' | grep -qx nosuid; then
    die "$PREFIX is on a nosuid mount: the setuid tests cannot run there"
fi

step "host key: ckpt-sign keygen --force"
"$PREFIX/bin/ckpt-sign" keygen --force
ls -l "$PREFIX/etc/keys"
"$PREFIX/bin/ckpt-sign" pubkey

if [ "$#" -eq 0 ]; then
    set -- --workspace --no-fail-fast
fi
step "cargo test --release $* (unit tests and end-to-end tests as $TEST_USER)"
if ! CKPT_TEST_BIN=$PREFIX/bin CKPT_TEST_USER=$TEST_USER CKPT_TEST_OTHER=$OTHER_USER \
    CKPT_TEST_THIRD=$THIRD_USER cargo test --release "$@"; then
    failed+=("cargo test")
fi

if [ "$full" = 1 ]; then
    step "Debian package round trip (scripts/package-test.sh)"
    # The same target directory as the tests' build: only the workspace's
    # own crates are built again (with the default /etc/ckpt), not their
    # dependencies.
    if ! CKPT_DEB_TARGET_DIR=$CARGO_TARGET_DIR scripts/package-test.sh; then
        failed+=("package round trip")
    fi
fi

step "done in $((SECONDS - started)) s"
if [ "${#failed[@]}" -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "all checks passed"
