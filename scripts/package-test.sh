#!/usr/bin/env bash
# The Debian package round trip, as root on Debian 12 (scripts/test.sh runs
# it after the cargo tests; it fails loudly and never skips):
#
#   1. builds the package (scripts/package.sh) and installs it with dpkg -i;
#   2. checks what it installed: both helpers setuid root in /usr/bin, the
#      host key made by the postinst, the default policy (it grants
#      nothing: `policy check` says 0 rules), the state directory, the man
#      pages (`man ckpt-verify`) and the completions;
#   3. as the unprivileged user ckpt-user, through /usr/bin: starts a
#      counter (tests/workloads/counter.c), dumps it, verifies the image
#      (signed by the host key, trusted: exit 0), restores it and checks
#      that it counts on from where it stopped;
#   4. installs the package again (the key is kept), removes it (keys,
#      policy and state stay), installs it once more (the same key is
#      used, not a new one), then purges it (keys, policy and state are
#      gone).
#
# /etc/ckpt and /var/lib/ckpt may exist already (scripts/demo.sh makes
# /etc/ckpt): they are moved aside for the test and put back afterwards,
# even when it fails. The test refuses to run when a package named ckpt
# is already installed (it would purge it).
#
# Environment: CKPT_DEB_TARGET_DIR (see scripts/package.sh).
set -euo pipefail

USER_NAME=${CKPT_TEST_USER:-ckpt-user}
SAVED_SUFFIX=.ckpt-package-test
DIRS=(/etc/ckpt /var/lib/ckpt)

started=$SECONDS
step() { printf '\n==> package test [%3ds] %s\n' "$((SECONDS - started))" "$*"; }
die() { printf '\npackage-test.sh: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root: it installs and purges the ckpt package"
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
id -u "$USER_NAME" >/dev/null 2>&1 || die "user $USER_NAME is missing (scripts/test.sh creates it)"
command -v man >/dev/null || die "man is missing: apt-get install man-db"

# One package test at a time on this machine.
exec 9>/run/ckpt-package-test.lock
flock -n 9 || die "another package test holds /run/ckpt-package-test.lock"

if dpkg-query -W -f='${Status}' ckpt 2>/dev/null | grep -q 'installed\|config-files'; then
    die "a package named ckpt is already installed (or its configuration is kept): this test installs and purges it; dpkg --purge ckpt first"
fi
for d in "${DIRS[@]}"; do
    if [ -e "$d$SAVED_SUFFIX" ] || [ -L "$d$SAVED_SUFFIX" ]; then
        die "$d$SAVED_SUFFIX exists (left by an interrupted package test?): put it back as $d or remove it"
    fi
done

work=$(mktemp -d /tmp/ckpt-package-test.XXXXXX)
chmod 0755 "$work"
installed=0
pids=()
moved=()
cleanup() {
    local rc=$? p d
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    if [ "$installed" = 1 ]; then
        dpkg --purge ckpt >/dev/null 2>&1 || echo "cleanup: dpkg --purge ckpt failed" >&2
    fi
    for d in "${moved[@]}"; do
        rm -rf "$d"
        mv "$d$SAVED_SUFFIX" "$d" && echo "put back $d"
    done
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

step "move aside what exists of ${DIRS[*]}"
for d in "${DIRS[@]}"; do
    if [ -e "$d" ] || [ -L "$d" ]; then
        mv "$d" "$d$SAVED_SUFFIX"
        moved+=("$d")
        echo "moved $d to $d$SAVED_SUFFIX (put back at the end)"
    fi
done

step "build the package (scripts/package.sh)"
deb=$(scripts/package.sh | tail -n 1)
[ -f "$deb" ] || die "scripts/package.sh printed no package path"
ls -l "$deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb"
deps=$(dpkg-deb --field "$deb" Depends)
echo "Depends: $deps"
grep -q 'libtss2-esys' <<<"$deps" || die "the package does not depend on libtss2-esys (its TPM agent links it)"

# A dpkg configured to leave out man pages (slim images) still installs ours.
dpkg_install() { dpkg --path-include='/usr/share/man/man[15]/ckpt*' -i "$1"; }

step "dpkg -i $(basename "$deb")"
installed=1
dpkg_install "$deb"
dpkg-query -W -f='${Package} ${Version} ${Status}\n' ckpt

step "what the package installed"
for b in ckpt-sign ckpt-verify; do
    st=$(stat -c '%a %U %G' "/usr/bin/$b")
    echo "/usr/bin/$b: $st"
    [ "$st" = "4755 root root" ] || die "/usr/bin/$b is $st, not setuid root (4755 root root)"
done
# The TPM agent: root-owned 0755, not setuid, where ckpt-sign looks for it.
st=$(stat -c '%a %U %G' /usr/lib/ckpt/ckpt-tpm-agent) || die "the package installed no TPM agent"
echo "/usr/lib/ckpt/ckpt-tpm-agent: $st"
[ "$st" = "755 root root" ] || die "/usr/lib/ckpt/ckpt-tpm-agent is $st, not 755 root root"
if findmnt -n -o OPTIONS -T /usr/bin | tr ',' '\n' | grep -qx nosuid; then
    die "/usr/bin is on a nosuid mount: the setuid helpers cannot work there"
fi
st=$(stat -c '%a %U' /etc/ckpt/keys/host.key) || die "the postinst made no host key"
[ "$st" = "600 root" ] || die "/etc/ckpt/keys/host.key is $st, not 600 root"
pub=$(cat /etc/ckpt/keys/host.pub)
echo "host key: $pub"
[ "$(/usr/bin/ckpt-sign pubkey)" = "$pub" ] || die "ckpt-sign pubkey does not print keys/host.pub"
st=$(stat -c '%a %U' /var/lib/ckpt)
[ "$st" = "700 root" ] || die "/var/lib/ckpt is $st, not 700 root"
dpkg-query -W -f='${Conffiles}\n' ckpt | grep -q '/etc/ckpt/policy.toml' ||
    die "/etc/ckpt/policy.toml is not a conffile"
out=$(/usr/bin/ckpt-verify policy check) || die "policy check of the default policy failed"
echo "policy check: $out"
grep -q ': OK (.* 0 rules)$' <<<"$out" || die "the default policy is not empty of rules: $out"
MANPAGER=cat MANWIDTH=80 man ckpt-verify >"$work/man.txt" 2>&1 || die "man ckpt-verify failed: $(cat "$work/man.txt")"
for s in 'EXIT STATUS' FILES SECURITY EXAMPLES 'ckpt-verify restore' '--inherit-fd'; do
    grep -q -e "$s" "$work/man.txt" || die "man ckpt-verify has no '$s'"
done
for page in "1 ckpt-sign" "5 ckpt-policy" "5 ckpt.toml"; do
    # shellcheck disable=SC2086 # section and name
    man -P cat $page 2>/dev/null | grep -q 'NAME' || die "man $page shows nothing"
done
echo "man pages: ckpt-sign(1) ckpt-verify(1) ckpt-policy(5) ckpt.toml(5)"
for f in /usr/share/bash-completion/completions/ckpt-{sign,verify} \
    /usr/share/zsh/vendor-completions/_ckpt-{sign,verify} \
    /usr/share/fish/vendor_completions.d/ckpt-{sign,verify}.fish; do
    [ -s "$f" ] || die "completion $f is missing"
done
# shellcheck disable=SC1091
words=$(bash -c '. /usr/share/bash-completion/completions/ckpt-verify
    COMP_WORDS=(ckpt-verify re); COMP_CWORD=1; COMP_LINE="ckpt-verify re"; COMP_POINT=${#COMP_LINE}
    f=$(complete -p ckpt-verify | sed -n "s/.* -F \([^ ]*\) .*/\1/p")
    "$f" ckpt-verify re ckpt-verify; echo "${COMPREPLY[*]}"')
[ "$words" = restore ] || die "bash completion of 'ckpt-verify re' gave '$words', not 'restore'"
echo "completions: bash (ckpt-verify re<TAB> -> restore), zsh, fish"

step "dump, verify, restore as $USER_NAME through /usr/bin"
as_user=(setpriv "--reuid=$USER_NAME" "--regid=$USER_NAME" --init-groups --)
gcc -O2 -o "$work/counter" tests/workloads/counter.c
install -d -o "$USER_NAME" -g "$USER_NAME" -m 0755 "$work/u"
count=$work/u/count.txt
img=$work/u/counter.ckpt
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:.*[ZX]' "/proc/$1/status" 2>/dev/null; }
lines_of() { grep -c " $1\$" "$count" 2>/dev/null || true; }
wait_lines() {
    local _
    for _ in $(seq 1 500); do
        [ "$(lines_of "$1")" -ge "$2" ] && return 0
        sleep 0.01
    done
    return 1
}
(cd "$work/u" && exec "${as_user[@]}" setsid "$work/counter" "$count" </dev/null >/dev/null 2>&1) &
p1=$!
disown "$p1" # the dump kills it: no "Killed" line from bash
pids+=("$p1")
wait_lines "$p1" 20 || die "the counter did not start"
"${as_user[@]}" /usr/bin/ckpt-sign dump --pid "$p1" -o "$img" || die "dump failed (exit $?)"
for _ in $(seq 1 500); do alive "$p1" || break; sleep 0.01; done
alive "$p1" && die "the counter (pid $p1) still runs after the dump"
n=$(tail -n 1 "$count" | cut -d' ' -f1)
echo "dumped pid $p1 at count $n: $(stat -c %s "$img") bytes"
"${as_user[@]}" /usr/bin/ckpt-verify verify "$img" || die "verify exited $? (0: signed by this host's key, trusted)"
"${as_user[@]}" /usr/bin/ckpt-verify restore "$img" >"$work/restore.out" || die "restore failed (exit $?)"
p2=$(cat "$work/restore.out")
[[ "$p2" =~ ^[0-9]+$ ]] || die "restore printed '$p2', not a pid"
pids+=("$p2")
wait_lines "$p2" 20 || die "the restored counter (pid $p2) does not count"
first=$(grep -m 1 " $p2\$" "$count" | cut -d' ' -f1)
[ "$first" = "$((n + 1))" ] || die "the restored counter started at $first, not $((n + 1))"
[ "$(stat -c %U "/proc/$p2")" = "$USER_NAME" ] || die "the restored counter does not run as $USER_NAME"
echo "restored as pid $p2: counts on from $((n + 1)), as $USER_NAME"
kill -KILL "$p2"

step "install again: the host key is kept"
dpkg_install "$deb" >/dev/null
[ "$(cat /etc/ckpt/keys/host.pub)" = "$pub" ] || die "reinstalling the package replaced the host key"
echo "same key after reinstall"

step "dpkg -r ckpt: keys, policy and state stay"
dpkg -r ckpt
for f in /usr/bin/ckpt-sign /usr/bin/ckpt-verify /usr/share/man/man1/ckpt-verify.1.gz; do
    [ ! -e "$f" ] || die "$f is still there after dpkg -r"
done
for f in /etc/ckpt/keys/host.key /etc/ckpt/keys/host.pub /etc/ckpt/policy.toml /var/lib/ckpt; do
    [ -e "$f" ] || die "dpkg -r removed $f"
done
echo "kept: /etc/ckpt/keys/host.key, host.pub, /etc/ckpt/policy.toml, /var/lib/ckpt"
dpkg_install "$deb" >/dev/null
[ "$(cat /etc/ckpt/keys/host.pub)" = "$pub" ] || die "installing after dpkg -r made a new host key"
echo "installed again: the same host key"

step "dpkg --purge ckpt: keys, policy and state are gone"
dpkg --purge ckpt
installed=0
for f in /usr/bin/ckpt-sign /etc/ckpt /var/lib/ckpt; do
    [ ! -e "$f" ] || die "$f is still there after dpkg --purge"
done
if dpkg-query -W -f='${Status}' ckpt 2>/dev/null | grep -q 'installed\|config-files'; then
    die "dpkg still knows ckpt after the purge"
fi
echo "purged: no /etc/ckpt, no /var/lib/ckpt, no helpers"

step "package round trip passed ($(stat -c %s "$deb") bytes)"
