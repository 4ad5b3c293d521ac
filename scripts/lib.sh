# Shared by scripts/demo.sh and scripts/test.sh (sourced, not run).

# Put the Rust toolchain on PATH (sudo may reset PATH); fail if there is none.
find_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        local d
        for d in "${CARGO_HOME:-$HOME/.cargo}/bin" /root/.cargo/bin /usr/local/cargo/bin; do
            if [ -x "$d/cargo" ]; then PATH="$d:$PATH"; break; fi
        done
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain first"
}

# Install whichever of the named Debian packages are missing.
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        echo "already installed: $*"
    fi
}
