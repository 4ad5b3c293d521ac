#!/usr/bin/env bash
# Builds the Debian package of ckpt, as root or not, on Debian 12 with the
# Rust toolchain and libtss2-dev:
#
#   1. builds ckpt-sign, ckpt-verify, the TPM agent ckpt-tpm-agent and the
#      page generator ckpt-man in release mode with the default directories
#      baked in (/etc/ckpt, /var/lib/ckpt, /dev/log, /usr/lib/ckpt:
#      CKPT_SYSCONFDIR, CKPT_STATEDIR, CKPT_SYSLOG_SOCKET and
#      CKPT_LIBEXECDIR are unset), in their own target directory
#      (target/deb, or CKPT_DEB_TARGET_DIR), so the test build in
#      target/e2e, made with the test prefix's directories, is not rebuilt;
#   2. writes the man pages (gzipped) and the bash, zsh and fish
#      completions with ckpt-man into <target>/release/ckpt-gen/;
#   3. packs them with cargo-deb (the metadata is in man/Cargo.toml, the
#      maintainer scripts and the default policy in debian/), installing
#      cargo-deb first if `cargo deb` is missing.
#
# Prints the path of the .deb as its last line.
set -euo pipefail

CARGO_DEB_VERSION=3.8.0

die() { printf 'package.sh: %s\n' "$*" >&2; exit 1; }
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"
find_cargo

unset CKPT_SYSCONFDIR CKPT_STATEDIR CKPT_SYSLOG_SOCKET CKPT_LIBEXECDIR
export CARGO_TARGET_DIR=${CKPT_DEB_TARGET_DIR:-$repo/target/deb}

if ! cargo deb --version >/dev/null 2>&1; then
    echo "cargo-deb is missing: cargo install cargo-deb --locked --version $CARGO_DEB_VERSION"
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi

echo "building the helpers, the TPM agent and ckpt-man (release, /etc/ckpt) in $CARGO_TARGET_DIR"
cargo build --release -p ckpt-sign -p ckpt-verify -p ckpt-tpm-agent -p ckpt-man

gen=$CARGO_TARGET_DIR/release/ckpt-gen
rm -rf "$gen"
"$CARGO_TARGET_DIR/release/ckpt-man" "$gen"
gzip -9n "$gen"/man1/*.1 "$gen"/man5/*.5

# The binaries must carry the default configuration directory.
for b in ckpt-sign ckpt-verify; do
    grep -q -a -F /etc/ckpt "$CARGO_TARGET_DIR/release/$b" ||
        die "$b was not built with the configuration directory /etc/ckpt"
    if grep -q -a -F /opt/ckpt- "$CARGO_TARGET_DIR/release/$b"; then
        die "$b holds a test prefix path (/opt/ckpt-...): built with CKPT_SYSCONFDIR set"
    fi
done

# ckpt-sign must look for the TPM agent where the package puts it, and
# must not link libtss2 (only the agent does).
grep -q -a -F /usr/lib/ckpt "$CARGO_TARGET_DIR/release/ckpt-sign" ||
    die "ckpt-sign was not built with the agent directory /usr/lib/ckpt"
if readelf -d "$CARGO_TARGET_DIR/release/ckpt-sign" | grep -q 'NEEDED.*libtss2'; then
    die "ckpt-sign links libtss2 (only ckpt-tpm-agent may)"
fi

out=$CARGO_TARGET_DIR/debian
rm -rf "$out"
mkdir -p "$out"
cargo deb -p ckpt-man --no-build --output "$out" >&2
deb=$(ls "$out"/ckpt_*.deb)
[ -f "$deb" ] || die "cargo deb wrote no package into $out"
echo "$deb"
