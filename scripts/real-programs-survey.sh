#!/usr/bin/env bash
# Survey of the real programs the end-to-end tests checkpoint
# (tests/tests/real_programs.rs): starts each one as the test user, the way
# the tests do, records the kernel state it holds (threads, every fd with
# its fdinfo, unusual mappings, POSIX timers, seccomp, signals, scheduling
# policy, namespaces) and tries `ckpt-sign dump --leave-running` on it with
# the installed helper, printing the first refusal. docs/REAL-PROGRAMS.md
# is written from its output.
#
# Usage: sudo scripts/real-programs-survey.sh [PREFIX]   (default /opt/ckpt-test)
# Needs the installed helpers (scripts/test.sh installs them), the test
# user, and the packages scripts/test.sh installs (python3, golang-go,
# default-jre-headless, sqlite3, util-linux).
set -u
PREFIX=${1:-${CKPT_TEST_PREFIX:-/opt/ckpt-test}}
USER_NAME=${CKPT_TEST_USER:-ckpt-user}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=$(mktemp -d /tmp/ckpt-survey.XXXXXX)
chmod 755 "$W"
chown "$USER_NAME": "$W"
# A plain command prefix (not a function), so that `$!` of a background
# job is the program itself: setpriv and setsid exec in place.
AS_USER=(setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --init-groups --)
export PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8
# Programs must not inherit the caller's other fds (a dump would see them).
for fd in $(ls /proc/$$/fd); do
    [ "$fd" -gt 2 ] && eval "exec $fd>&-"
done 2>/dev/null

wait_file() {
    local i
    for i in $(seq 1 600); do [ -e "$1" ] && return 0; sleep 0.1; done
    echo "timed out waiting for $1" >&2
    return 1
}

report() {
    local name=$1 pid=$2
    echo
    echo "################ $name (pid $pid)"
    echo "exe: $(readlink "/proc/$pid/exe")"
    echo "threads: $(ls "/proc/$pid/task" | wc -l)"
    echo "thread names: $(cat /proc/"$pid"/task/*/comm | sort | uniq -c | awk '{c=$1; $1=""; printf "%s%s, ", (c>1?c"x":""), substr($0,2)}')"
    grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs|SigPnd|ShdPnd|SigBlk|SigIgn|SigCgt|CapEff):' "/proc/$pid/status"
    echo "sched (policy prio nice): $(awk '{print $41, $40, $19}' "/proc/$pid/stat")"
    echo "personality: $(cat "/proc/$pid/personality" 2>/dev/null)"
    echo "oom_score_adj: $(cat "/proc/$pid/oom_score_adj")"
    echo "timers:"
    sed 's/^/    /' "/proc/$pid/timers" 2>/dev/null
    echo "namespaces differing from the survey's own:"
    for ns in /proc/"$pid"/ns/*; do
        [ "$(readlink "$ns")" = "$(readlink "/proc/$$/ns/$(basename "$ns")")" ] || echo "    $(basename "$ns") $(readlink "$ns")"
    done
    echo "fds:"
    for fd in $(ls "/proc/$pid/fd" | sort -n); do
        printf '    %s -> %s\n' "$fd" "$(readlink "/proc/$pid/fd/$fd")"
        grep -vE '^(pos|mnt_id|ino):' "/proc/$pid/fdinfo/$fd" | sed 's/^/        /'
    done
    echo "sockets:"
    ss -a -x -t -u -p 2>/dev/null | grep "pid=$pid," | sed 's/^/    /'
    echo "unusual mappings (shared, device, memfd, deleted, SYSV):"
    awk '$2 ~ /s/ || $6 ~ /^\/dev\// || $6 ~ /memfd|SYSV/ || /\(deleted\)/' "/proc/$pid/maps" | sed 's/^/    /'
    echo "mappings: $(wc -l < "/proc/$pid/maps"), rss: $(awk '/VmRSS/{print $2, $3}' "/proc/$pid/status")"
    echo "VmFlags seen (besides rd wr ex mr mw me ac sd): $(grep VmFlags "/proc/$pid/smaps" | tr ' ' '\n' | grep -vE '^(VmFlags:|rd|wr|ex|mr|mw|me|ac|sd|)$' | sort | uniq -c | tr '\n' ' ')"
    echo "dump --leave-running:"
    local t0=$SECONDS
    local rc
    (cd "$W" && "${AS_USER[@]}" "$PREFIX/bin/ckpt-sign" dump --pid "$pid" -o "$W/$name.ckpt" --leave-running --force >"$W/dump.out" 2>&1)
    rc=$?
    grep -v 'audit log unavailable' "$W/dump.out" | sed 's/^/    /'
    echo "    (exit $rc, $((SECONDS - t0)) s)"
    [ -e "$W/$name.ckpt" ] && echo "    image: $(stat -c %s "$W/$name.ckpt") bytes"
}

stop() { kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

# python3 ThreadPoolExecutor
mkdir -m 755 "$W/py" && chown "$USER_NAME": "$W/py"
"${AS_USER[@]}" setsid python3 "$repo/tests/workloads/py_pool.py" "$W/py" >"$W/py.log" 2>&1 &
pid=$!
wait_file "$W/py/ready" && report python3 "$pid"
stop "$pid"

# Rust std thread pool (built by cargo as a bin of the tests crate)
rp=${CARGO_TARGET_DIR:-$repo/target/e2e}/release/rust_pool
if [ -x "$rp" ]; then
    install -m 755 "$rp" "$W/rust_pool"
    mkdir -m 755 "$W/rs" && chown "$USER_NAME": "$W/rs"
    "${AS_USER[@]}" setsid "$W/rust_pool" "$W/rs" >"$W/rs.log" 2>&1 &
    pid=$!
    wait_file "$W/rs/ready" && report rust_pool "$pid"
    stop "$pid"
else
    echo "no $rp: build it with cargo build --release -p ckpt-tests --bin rust_pool" >&2
fi

# Go HTTP server on a unix socket
mkdir -m 755 "$W/go" && chown "$USER_NAME": "$W/go"
HOME=$W GOCACHE=$W/gocache GOPATH=$W/gopath GO111MODULE=off GOPROXY=off CGO_ENABLED=0 \
    go build -o "$W/server" "$repo/tests/workloads/go/server.go"
"${AS_USER[@]}" setsid "$W/server" "$W/go/s.sock" "$W/go" >"$W/go.log" 2>&1 &
pid=$!
wait_file "$W/go/ready" && report go-server "$pid"
stop "$pid"

# sqlite3 holding an exclusive lock, commands on a pipe
"${AS_USER[@]}" sqlite3 "$W/db" 'CREATE TABLE t(x); INSERT INTO t VALUES(1);'
mkfifo -m 600 "$W/sq.in" && chown "$USER_NAME": "$W/sq.in"
"${AS_USER[@]}" setsid sqlite3 "$W/db" <"$W/sq.in" >"$W/sq.out" 2>&1 &
pid=$!
exec 7>"$W/sq.in"
printf "BEGIN EXCLUSIVE;\nINSERT INTO t VALUES(2);\nSELECT 'ready';\n" >&7
for _ in $(seq 1 100); do grep -q ready "$W/sq.out" && break; sleep 0.1; done
report sqlite3 "$pid"
exec 7>&-
stop "$pid"

# Java on the JRE, single-file source launch
mkdir -m 755 "$W/java" && chown "$USER_NAME": "$W/java"
"${AS_USER[@]}" setsid /usr/lib/jvm/default-java/bin/java -Xmx128m "$repo/tests/workloads/java/Warm.java" "$W/java" >"$W/java.log" 2>&1 &
pid=$!
wait_file "$W/java/ready" && report java "$pid"
stop "$pid"

# sleep 1000 started from a pty (script gives it a terminal)
"${AS_USER[@]}" setsid script -qfc "sleep 1000" /dev/null </dev/null >"$W/script.log" 2>&1 &
pid=$!
spid=
for _ in $(seq 1 50); do
    spid=$(pgrep -P "$pid" -x sleep) && break
    sleep 0.1
done
report sleep-on-pty "$spid"
stop "$spid"
stop "$pid"

rm -rf "$W"
