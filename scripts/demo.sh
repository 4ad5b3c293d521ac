#!/usr/bin/env bash
# The ckpt demo, as root on a fresh Debian 12 that has the Rust toolchain:
#
#   builds ckpt (release, configuration directory /etc/ckpt), installs
#   ckpt-sign and ckpt-verify setuid root into /usr/local/bin (and the TPM
#   agent ckpt-tpm-agent, root 0755, into /usr/local/lib/ckpt), makes a host
#   key if there is none, then, as the unprivileged user ckpt-user:
#   starts a counter, checkpoints it (it stops), verifies and inspects the
#   signed image, restores it (it carries on from where it stopped), and
#   shows that a copy with one byte flipped is refused (exit code 4).
#
# Every command is printed before it runs. The script exits non-zero as soon
# as a step does not do what it should.
set -euo pipefail

DEMO_USER=ckpt-user
BIN=/usr/local/bin
PACKAGES=(gcc libc6-dev python3 util-linux procps passwd libtss2-dev pkg-config)

say() { printf '\n\033[1m## %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; }
run() { show "$*"; "$@" || die "exit code $? from: $*"; }
die() { printf '\ndemo.sh: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (sudo scripts/demo.sh): it installs setuid helpers"
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"
find_cargo

say "Install build and demo dependencies"
ensure_packages "${PACKAGES[@]}"

say "Audit log: the helpers log every dump and restore to syslog (/dev/log, authpriv)"
# A message that reaches /dev/log: a socket file is not enough (a daemon
# that has died leaves its socket behind).
syslog_listens() {
    [ -S /dev/log ] &&
        logger --socket-errors=on -u /dev/log -p authpriv.info "ckpt demo: syslog check" 2>/dev/null
}
if syslog_listens; then
    echo "/dev/log is there: a syslog daemon is listening"
else
    # No syslog daemon on this machine (no systemd-journald either), or
    # one that has died: start rsyslog, which writes authpriv to
    # /var/log/auth.log.
    ensure_packages rsyslog
    rm -f /dev/log
    run rsyslogd
    for _ in $(seq 50); do syslog_listens && break; sleep 0.1; done
    syslog_listens || die "rsyslogd does not listen on /dev/log"
fi

say "Build (release; configuration directory: the default, /etc/ckpt)"
unset CKPT_SYSCONFDIR CKPT_STATEDIR
# ckpt-sign starts the TPM agent from here (fixed at build time).
export CKPT_LIBEXECDIR=/usr/local/lib/ckpt
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
run cargo build --release --bins -p ckpt-sign -p ckpt-verify -p ckpt-tpm-agent

say "Install the helpers setuid root into $BIN"
for b in ckpt-sign ckpt-verify; do
    run install -o root -g root -m 4755 "$CARGO_TARGET_DIR/release/$b" "$BIN/$b"
done
run install -d -o root -g root -m 0755 "$CKPT_LIBEXECDIR"
run install -o root -g root -m 0755 "$CARGO_TARGET_DIR/release/ckpt-tpm-agent" "$CKPT_LIBEXECDIR/ckpt-tpm-agent"
run ls -l "$BIN/ckpt-sign" "$BIN/ckpt-verify" "$CKPT_LIBEXECDIR/ckpt-tpm-agent"

say "Host key"
if [ -e /etc/ckpt/keys/host.key ]; then
    echo "/etc/ckpt/keys/host.key exists; keeping it"
else
    run "$BIN/ckpt-sign" keygen
fi
run "$BIN/ckpt-sign" pubkey

say "Demo user $DEMO_USER"
if id -u "$DEMO_USER" >/dev/null 2>&1; then
    echo "$DEMO_USER exists"
else
    run useradd -m -s /bin/bash "$DEMO_USER"
fi
run id "$DEMO_USER"
as_user=(setpriv "--reuid=$DEMO_USER" "--regid=$DEMO_USER" --init-groups --)

# Workspace: root-owned dir with the program, a user-owned dir for the
# user's files (count, log, images).
DEMO=$(mktemp -d /tmp/ckpt-demo.XXXXXX)
chmod 0755 "$DEMO"
WORK=$DEMO/work
install -d -o "$DEMO_USER" -g "$DEMO_USER" -m 0755 "$WORK"
COUNT=$WORK/count.txt
IMG=$WORK/counter.ckpt
BAD=$WORK/tampered.ckpt
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

say "Compile the sample workload (tests/workloads/counter.c: appends \"<count> <pid>\" every 10 ms)"
run gcc -O2 -Wall -o "$DEMO/counter" tests/workloads/counter.c

alive() { [ -e "/proc/$1" ] && ! grep -q '^State:.*[ZX]' "/proc/$1/status" 2>/dev/null; }
gone() { ! alive "$1"; }
last_count() { tail -n 1 "$COUNT" | cut -d' ' -f1; }
# wait_for CONDITION...: poll up to 10 s
wait_for() {
    local i
    for i in $(seq 1 1000); do
        if "$@"; then return 0; fi
        sleep 0.01
    done
    return 1
}
has_lines_of() {
    local n
    n=$(grep -c " $1\$" "$COUNT" 2>/dev/null || true)
    [ "${n:-0}" -ge "$2" ]
}

say "Start the counter as $DEMO_USER, in its own session, output to $WORK"
# The log is the user's file: restore reopens it with the user's credentials.
install -o "$DEMO_USER" -g "$DEMO_USER" -m 0644 /dev/null "$WORK/counter.log"
show "cd $WORK && ${as_user[*]} setsid $DEMO/counter $COUNT >>counter.log 2>&1 </dev/null &"
cd "$WORK"
"${as_user[@]}" setsid "$DEMO/counter" "$COUNT" >>"$WORK/counter.log" 2>&1 </dev/null &
P1=$!
disown "$P1" # bash need not report the kill the dump does
cd "$repo"
pids+=("$P1")
wait_for has_lines_of "$P1" 50 || die "the counter did not start counting"
run ps -o pid,user,stat,cmd -p "$P1"
run tail -n 3 "$COUNT"

say "Checkpoint it as $DEMO_USER (signed with the host key; the counter stops)"
run "${as_user[@]}" "$BIN/ckpt-sign" dump --pid "$P1" -o "$IMG"
wait_for gone "$P1" || die "the counter (pid $P1) still runs after the dump"
echo "pid $P1 is gone"
N=$(last_count)
run ls -l "$IMG"
run tail -n 1 "$COUNT"
sleep 0.5
[ "$(last_count)" = "$N" ] || die "the count moved after the dump"
echo "the count stays at $N"

say "Verify the image (integrity, signer, trust)"
run "${as_user[@]}" "$BIN/ckpt-verify" verify "$IMG"
run "${as_user[@]}" "$BIN/ckpt-verify" verify "$IMG" --json

say "Inspect it (untrusted view of what the image holds)"
show "${as_user[*]} $BIN/ckpt-verify inspect $IMG | head -n 50"
"${as_user[@]}" "$BIN/ckpt-verify" inspect "$IMG" >"$DEMO/inspect.txt" ||
    die "inspect failed"
head -n 50 "$DEMO/inspect.txt"

say "Restore it as $DEMO_USER; it carries on from $N"
show "${as_user[*]} $BIN/ckpt-verify restore $IMG"
# stdout to a file, not a pipe: the restored process must not hold anything of ours.
"${as_user[@]}" "$BIN/ckpt-verify" restore "$IMG" >"$DEMO/restore.out" || die "restore failed (exit $?)"
P2=$(cat "$DEMO/restore.out")
echo "$P2"
[[ "$P2" =~ ^[0-9]+$ ]] || die "restore did not print a pid"
pids+=("$P2")
wait_for has_lines_of "$P2" 50 || die "the restored counter (pid $P2) does not count"
run ps -o pid,user,stat,cmd -p "$P2"
show "grep -n -C 2 '^$N ' $COUNT"
grep -n -A 2 -B 2 "^$N " "$COUNT"
FIRST=$(grep -m 1 " $P2\$" "$COUNT" | cut -d' ' -f1)
[ "$FIRST" = "$((N + 1))" ] || die "the restored counter started at $FIRST, expected $((N + 1))"
# Every line of the file: 1, 2, 3, ... with no restart and no gap.
awk '$1 != NR { print "line " NR ": " $0; bad = 1 } END { exit bad }' "$COUNT" ||
    die "the count is not continuous"
echo "the restored counter (pid $P2) went on from $N to $((N + 1)) and is now at $(last_count): no restart, no gap"

say "Tamper: flip one byte in the middle of a copy"
run cp "$IMG" "$BAD"
chown "$DEMO_USER:" "$BAD"
show "python3 -c '...flip the byte at size/2...' $BAD"
python3 - "$BAD" <<'EOF'
import os, sys
path = sys.argv[1]
off = os.path.getsize(path) // 2
with open(path, "r+b") as f:
    f.seek(off)
    b = f.read(1)[0]
    f.seek(off)
    f.write(bytes([b ^ 0xff]))
print(f"flipped byte {off}: {b:#04x} -> {b ^ 0xff:#04x}")
EOF
expect_exit() {
    local want=$1; shift
    show "$*"
    local rc=0
    "$@" || rc=$?
    echo "(exit code $rc)"
    [ "$rc" = "$want" ] || die "expected exit code $want from: $*"
}
expect_exit 4 "${as_user[@]}" "$BIN/ckpt-verify" verify "$BAD"
before=$(pgrep -u "$DEMO_USER" -c -f "$DEMO/counter" || true)
expect_exit 4 "${as_user[@]}" "$BIN/ckpt-verify" restore "$BAD"
after=$(pgrep -u "$DEMO_USER" -c -f "$DEMO/counter" || true)
[ "$before" = "$after" ] || die "a process was started from the tampered image"
echo "the tampered image was refused and nothing was started"

say "The audit trail of this demo"
if [ -r /var/log/auth.log ]; then
    run sh -c "grep -a 'ckpt-' /var/log/auth.log | tail -n 6"
    # The dump of this demo is there (the daemon may take a moment).
    id=$(sed -n 's/^image id: //p' "$DEMO/inspect.txt" | head -n 1)
    [ -n "$id" ] || die "inspect printed no image id"
    for _ in $(seq 50); do
        grep -aq "event=dump .*image_id=$id" /var/log/auth.log && break
        sleep 0.1
    done
    grep -aq "event=dump .*image_id=$id" /var/log/auth.log ||
        die "the audit log has no record of this demo's dump (image $id)"
    echo "the audit log records this demo's dump (image $id)"
else
    echo "(the syslog daemon on this machine keeps authpriv elsewhere: see journalctl -t ckpt-verify -t ckpt-sign)"
fi

say "Clean up"
run kill "$P2"
wait_for gone "$P2" || die "the restored counter did not stop"
rm -rf "$DEMO"
echo
echo "demo passed: checkpoint, verify, inspect, restore and tamper detection all behaved"
