#!/usr/bin/env bash
# benches/run.sh: dump / verify / restore throughput and helper peak RSS of
# ckpt, next to CRIU 4.1.1 on the same workload. Run as root:
#
#   sudo benches/run.sh
#
# See benches/README.md for what it measures and how. Knobs (environment):
#   BENCH_MIB    workload size in MiB (default 1024)
#   BENCH_THREADS  threads in the workload (default 1); the memory is split
#                evenly between them
#   BENCH_PROCS  if set (N >= 2): a process tree instead of one process:
#                the root and N - 1 children, each holding its own
#                BENCH_MIB_PER_PROC MiB (default 1); both tools dump the tree
#   BENCH_SHARED_MIB  if set (M): a process tree (BENCH_SHARED_PROCS
#                processes, default 5) sharing one MAP_SHARED anonymous
#                region of M MiB; both tools dump the tree
#   BENCH_REPS   repetitions per tool; the median is reported (default 3)
#   BENCH_TOOLS  "ckpt criu" (default), or one of them
#   BENCH_DIR    where images are written, same filesystem for both tools
#                (default /var/tmp/ckpt-bench)
#   BENCH_DEBIAN_MIRROR  Debian mirror for CRIU's source (default: the one
#                apt already uses)
#   BENCH_JOBS   make -j for CRIU (default 2)
#   BENCH_SOURCE tree (default): build ckpt from the working tree, as it is;
#                head: build from a clean export of the committed HEAD, so
#                that the results describe exactly the commit they name
#   BENCH_WAIT_LOAD  if set (e.g. 1.0), before each run wait up to
#                BENCH_WAIT_MAX seconds (default 900) for the 1-minute load
#                average to drop below it
#   BENCH_OUT    JSON output (default benches/results/latest.json)
set -euo pipefail
export LC_ALL=C

BENCH_MIB=${BENCH_MIB:-1024}
BENCH_THREADS=${BENCH_THREADS:-1}
BENCH_REPS=${BENCH_REPS:-3}
BENCH_TOOLS=${BENCH_TOOLS:-ckpt criu}
BENCH_DIR=${BENCH_DIR:-/var/tmp/ckpt-bench}
BENCH_JOBS=${BENCH_JOBS:-2}
BENCH_SOURCE=${BENCH_SOURCE:-tree}
BENCH_PROCS=${BENCH_PROCS:-}
BENCH_MIB_PER_PROC=${BENCH_MIB_PER_PROC:-1}
BENCH_SHARED_MIB=${BENCH_SHARED_MIB:-}
BENCH_SHARED_PROCS=${BENCH_SHARED_PROCS:-5}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_OUT=${BENCH_OUT:-$REPO/benches/results/latest.json}
CACHE=/var/cache/ckpt-bench
PREFIX=${BENCH_PREFIX:-/opt/ckpt-bench}
BENCH_BUILD=${BENCH_BUILD:-1}
BENCH_LEAVE_RUNNING=${BENCH_LEAVE_RUNNING:-0}
BENCH_DATA=${BENCH_DATA:-random}
BENCH_CACHE=${BENCH_CACHE:-warm}
BENCH_RESERVE_MIB=${BENCH_RESERVE_MIB:-0}
BENCH_CKPT_DUMP_ARGS=${BENCH_CKPT_DUMP_ARGS:-}
SYSCONFDIR=$PREFIX/etc
STATEDIR=$PREFIX/var
BENCH_USER=ckpt-user

# CRIU's version, tarball, pinned SHA-256, build dependencies and the
# deb-src download: shared with tests/conformance/run.sh.
# shellcheck source=scripts/criu-src.sh
. "$REPO/scripts/criu-src.sh"
export CRIU_DEBIAN_MIRROR=${BENCH_DEBIAN_MIRROR:-}
CRIU_SRC=$CACHE/criu-$CRIU_VERSION
CRIU=$CRIU_SRC/criu/criu
HARNESS_DEPS=(gcc util-linux passwd procps openssl python3)

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (sudo benches/run.sh)"
[[ $BENCH_MIB =~ ^[1-9][0-9]*$ ]] || die "BENCH_MIB must be a positive integer"
[[ $BENCH_THREADS =~ ^[1-9][0-9]*$ ]] || die "BENCH_THREADS must be a positive integer"
[[ $BENCH_REPS =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPS must be a positive integer"
[[ $BENCH_SOURCE == tree || $BENCH_SOURCE == head ]] || die "BENCH_SOURCE must be tree or head"
[[ $BENCH_DATA == random || $BENCH_DATA == text || $BENCH_DATA == python ]] ||
	die "BENCH_DATA must be random, text or python"
if [[ $BENCH_DATA == python ]]; then
	[[ $BENCH_THREADS == 1 && $BENCH_RESERVE_MIB == 0 ]] ||
		die "BENCH_DATA=python: one thread, no reservation (BENCH_THREADS, BENCH_RESERVE_MIB)"
fi
[[ $BENCH_CACHE == warm || $BENCH_CACHE == cold ]] || die "BENCH_CACHE must be warm or cold"
[[ $BENCH_RESERVE_MIB =~ ^[0-9]+$ ]] || die "BENCH_RESERVE_MIB must be a number"
for t in $BENCH_TOOLS; do
	[[ $t == ckpt || $t == criu ]] || die "BENCH_TOOLS: unknown tool '$t'"
done
# The workload: one process (bigmem, the default), or a tree (bigtree).
# WL_KIND single|procs|shared; WL_NPROCS processes; WL_MIB MiB of workload
# memory in all (shared memory counted once).
WL_KIND=single
WL_NPROCS=1
WL_MIB=$BENCH_MIB
if [[ -n $BENCH_PROCS && -n $BENCH_SHARED_MIB ]]; then
	die "BENCH_PROCS and BENCH_SHARED_MIB select different workloads: set one"
fi
if [[ -n $BENCH_PROCS || -n $BENCH_SHARED_MIB ]]; then
	[[ $BENCH_THREADS == 1 ]] || die "BENCH_THREADS applies to the one-process workload only"
fi
if [[ -n $BENCH_PROCS ]]; then
	[[ $BENCH_PROCS =~ ^[1-9][0-9]*$ && $BENCH_PROCS -ge 2 && $BENCH_PROCS -le 4096 ]] ||
		die "BENCH_PROCS must be an integer from 2 to 4096"
	[[ $BENCH_MIB_PER_PROC =~ ^[1-9][0-9]*$ ]] || die "BENCH_MIB_PER_PROC must be a positive integer"
	WL_KIND=procs
	WL_NPROCS=$BENCH_PROCS
	WL_MIB=$((BENCH_PROCS * BENCH_MIB_PER_PROC))
elif [[ -n $BENCH_SHARED_MIB ]]; then
	[[ $BENCH_SHARED_MIB =~ ^[1-9][0-9]*$ ]] || die "BENCH_SHARED_MIB must be a positive integer"
	[[ $BENCH_SHARED_PROCS =~ ^[1-9][0-9]*$ && $BENCH_SHARED_PROCS -ge 2 && $BENCH_SHARED_PROCS -le 4096 ]] ||
		die "BENCH_SHARED_PROCS must be an integer from 2 to 4096"
	WL_KIND=shared
	WL_NPROCS=$BENCH_SHARED_PROCS
	WL_MIB=$BENCH_SHARED_MIB
fi
is_tree() { [[ $WL_KIND != single ]]; }
case $WL_KIND in
single) WL_DESC="$BENCH_MIB MiB ($BENCH_DATA$( ((BENCH_RESERVE_MIB > BENCH_MIB)) && echo ", in a $BENCH_RESERVE_MIB MiB reservation" || true)) in $BENCH_THREADS thread(s)" ;;
procs) WL_DESC="tree of $WL_NPROCS processes, $BENCH_MIB_PER_PROC MiB each" ;;
shared) WL_DESC="tree of $WL_NPROCS processes sharing $BENCH_SHARED_MIB MiB" ;;
esac
want() { [[ " $BENCH_TOOLS " == *" $1 "* ]]; }

mkdir -p "$CACHE"
chmod 0755 "$CACHE"
exec 9>"$CACHE/run.lock"
flock -n 9 || die "another benches/run.sh is running"

# ---------------------------------------------------------------- cleanup
WORKLOAD_PIDS=()
# Kill only processes we started, and only while they still run bigmem,
# bigtree or pyheap.py (guards against pid reuse): the workload's root and, for a tree,
# every descendant that runs one of them too.
runs_workload() {
	[[ -r /proc/$1/cmdline ]] &&
		tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qE "$CACHE/bin/(big(mem|tree)|pyheap\.py) "
}
# descendants PID: every descendant of PID, parents before children.
descendants() {
	local c
	local c f
	for f in /proc/"$1"/task/*/children; do
		[[ -r $f ]] || continue
		for c in $(<"$f"); do
			echo "$c"
			descendants "$c"
		done
	done 2>/dev/null
}
# gone PID...: wait (up to 5 s) until each PID has exited (a zombie we are
# not the parent of goes away when init reaps it).
gone() {
	local pid i
	for pid in "$@"; do
		for ((i = 0; i < 100; i++)); do
			[[ -e /proc/$pid ]] || break
			[[ $(awk '/^State:/{print $2}' "/proc/$pid/status" 2>/dev/null) == Z ]] && break
			sleep 0.05
		done
	done
}
kill_workload() {
	local pid=$1 p
	if [[ -z $pid ]] || ! runs_workload "$pid"; then return 0; fi
	local -a tree=("$pid")
	for p in $(descendants "$pid"); do
		runs_workload "$p" && tree+=("$p")
	done
	kill -KILL "${tree[@]}" 2>/dev/null || true
	gone "${tree[@]}"
}
cleanup() {
	local pid
	for pid in "${WORKLOAD_PIDS[@]}"; do
		kill_workload "$pid"
	done
	# Images are large: remove them; keep the logs in $BENCH_DIR/run.
	if [[ -n ${BENCH_DIR:-} && -d $BENCH_DIR/run ]]; then
		rm -f "$BENCH_DIR/run/ckpt/image.ckpt"
		find "$BENCH_DIR/run" -name 'pages-*.img' -delete 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- apt
APT_UPDATED=0
apt_install() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	((${#missing[@]})) || return 0
	if ((!APT_UPDATED)); then
		apt-get update -q >&2
		APT_UPDATED=1
	fi
	log "apt-get install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
}

# ---------------------------------------------------------------- CRIU
criu_ok() {
	[[ -x $CRIU ]] && "$CRIU" --version 2>/dev/null | grep -q "^Version: $CRIU_VERSION\$"
}

ensure_criu() {
	if criu_ok; then
		log "CRIU $CRIU_VERSION already built: $CRIU"
		return
	fi
	criu_source "$CACHE/src" "$CACHE" || die "could not get CRIU $CRIU_VERSION's source"
	apt_install "${CRIU_BUILD_DEPS[@]}"
	log "building CRIU $CRIU_VERSION (nice -n 19 make -j$BENCH_JOBS criu; log: $CACHE/criu-build.log)"
	if ! (cd "$CRIU_SRC" && nice -n 19 make -j"$BENCH_JOBS" criu) >"$CACHE/criu-build.log" 2>&1; then
		tail -30 "$CACHE/criu-build.log" >&2
		die "CRIU build failed (full log: $CACHE/criu-build.log)"
	fi
	criu_ok || die "built CRIU does not report version $CRIU_VERSION"
	log "CRIU built: $CRIU"
}

# ---------------------------------------------------------------- ckpt
find_cargo() {
	local c
	if [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
		local home
		home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
		for c in "$home/.cargo/bin/cargo" /usr/local/cargo/bin/cargo; do
			[[ -x $c ]] && { echo "$c"; return; }
		done
	fi
	c=$(command -v cargo || true)
	[[ -n $c ]] && { echo "$c"; return; }
	for c in /root/.cargo/bin/cargo /usr/local/cargo/bin/cargo; do
		[[ -x $c ]] && { echo "$c"; return; }
	done
	die "cargo not found (install the Rust toolchain)"
}

build_ckpt() {
	local cargo builder=root target=$CACHE/target
	cargo=$(find_cargo)
	# Build as the invoking user under sudo (their toolchain, no root-owned
	# files in their tree). A separate target dir keeps the bench's build-time
	# CKPT_SYSCONFDIR from invalidating everyone's target/ cache.
	[[ -n ${SUDO_USER:-} && $SUDO_USER != root ]] && builder=$SUDO_USER
	mkdir -p "$target"
	[[ $(stat -c %U "$target") == "$builder" ]] || chown -R "$builder" "$target"
	local src=$REPO
	if [[ $BENCH_SOURCE == head ]]; then
		src=$CACHE/ckpt-src
		rm -rf "$src"
		mkdir -p "$src"
		git -c safe.directory="$REPO" -C "$REPO" archive --format=tar HEAD | tar -x -C "$src"
		chown -R "$builder" "$src"
	fi
	log "building ckpt (release, CKPT_SYSCONFDIR=$SYSCONFDIR) from $src ($BENCH_SOURCE) as $builder"
	local -a env=(CKPT_SYSCONFDIR="$SYSCONFDIR" CKPT_STATEDIR="$STATEDIR"
		CKPT_LIBEXECDIR="$PREFIX/lib/ckpt"
		CARGO_TARGET_DIR="$target" PATH="$(dirname "$cargo"):$PATH")
	if [[ $builder == root ]]; then
		(cd "$src" && env "${env[@]}" nice -n 19 "$cargo" build --release -j2 \
			-p ckpt-sign -p ckpt-verify -p ckpt-tpm-agent) >&2
	else
		(cd "$src" && setpriv --reuid="$builder" --regid="$builder" --init-groups \
			env HOME="$(getent passwd "$builder" | cut -d: -f6)" "${env[@]}" \
			nice -n 19 "$cargo" build --release -j2 -p ckpt-sign -p ckpt-verify -p ckpt-tpm-agent) >&2
	fi
	install -d -o root -g root -m 0755 "$PREFIX" "$PREFIX/bin" "$SYSCONFDIR" "$STATEDIR"
	install -o root -g root -m 4755 "$target/release/ckpt-sign" "$PREFIX/bin/ckpt-sign"
	install -o root -g root -m 4755 "$target/release/ckpt-verify" "$PREFIX/bin/ckpt-verify"
	# The TPM agent ckpt-sign starts when a TPM is configured: root, 0755.
	install -d -o root -g root -m 0755 "$PREFIX/lib" "$PREFIX/lib/ckpt"
	install -o root -g root -m 0755 "$target/release/ckpt-tpm-agent" "$PREFIX/lib/ckpt/ckpt-tpm-agent"
	log "host key: $PREFIX/bin/ckpt-sign keygen --force"
	"$PREFIX/bin/ckpt-sign" keygen --force >&2
}

ensure_user() {
	if ! id "$BENCH_USER" >/dev/null 2>&1; then
		log "creating user $BENCH_USER"
		useradd --system --user-group --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin "$BENCH_USER"
	fi
	BENCH_UID=$(id -u "$BENCH_USER")
}

build_tools() {
	mkdir -p "$CACHE/bin"
	chmod 0755 "$CACHE/bin"
	gcc -O2 -Wall -Wextra -Werror -pthread -o "$CACHE/bin/bigmem" "$REPO/benches/workloads/bigmem.c"
	gcc -O2 -Wall -Wextra -Werror -o "$CACHE/bin/bigtree" "$REPO/benches/workloads/bigtree.c"
	gcc -O2 -Wall -Wextra -Werror -o "$CACHE/bin/measure" "$REPO/benches/tools/measure.c"
	chmod 0755 "$CACHE/bin/bigmem" "$CACHE/bin/bigtree" "$CACHE/bin/measure"
	install -m 0644 "$REPO/benches/workloads/pyheap.py" "$CACHE/bin/pyheap.py"
}

# ---------------------------------------------------------------- helpers
as_user() {
	setpriv --reuid="$BENCH_USER" --regid="$BENCH_USER" --init-groups -- "$@"
}

# wait_for FILE SECONDS [PID]: wait until FILE exists (and PID, if given,
# is still alive).
wait_for() {
	local file=$1 secs=$2 pid=${3:-} i
	for ((i = 0; i < secs * 20; i++)); do
		[[ -s $file ]] && return 0
		if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
			return 1
		fi
		sleep 0.05
	done
	return 1
}

# The workload's command line, for a status file.
workload_cmd() {
	case $WL_KIND in
	single)
		if [[ $BENCH_DATA == python ]]; then
			echo /usr/bin/python3 "$CACHE/bin/pyheap.py" "$BENCH_MIB" "$1"
		else
			echo "$CACHE/bin/bigmem" "$BENCH_MIB" "$1" "$BENCH_THREADS" "$BENCH_DATA" "$BENCH_RESERVE_MIB"
		fi
		;;
	procs) echo "$CACHE/bin/bigtree" procs "$WL_NPROCS" "$BENCH_MIB_PER_PROC" "$1" ;;
	shared) echo "$CACHE/bin/bigtree" shared "$WL_NPROCS" "$BENCH_SHARED_MIB" "$1" ;;
	esac
}

# start_workload DIR USER: starts the workload (bigmem, or bigtree's root)
# as USER in DIR (its cwd; the dir is USER's, so a restore with USER's
# credentials can chdir back). Sets WL_PID, WL_SUM and WL_KIDS (a tree's
# other processes).
start_workload() {
	local dir=$1 user=$2 status=$1/status
	rm -rf "$status" "$status.check" "$status.d"
	: >"$dir/workload.err"
	chown "$user:" "$dir/workload.err"
	local -a cmd
	read -r -a cmd <<<"$(workload_cmd "$status")"
	# 9>&-: the workload must not inherit the harness's lock fd.
	(cd "$dir" && exec 9>&- && exec setpriv --reuid="$user" --regid="$user" --init-groups -- \
		"${cmd[@]}" </dev/null >/dev/null 2>"$dir/workload.err") &
	WL_PID=$!
	# Not a job: bash still reaps it when it dies, without a "Killed" notice.
	disown "$WL_PID"
	WORKLOAD_PIDS+=("$WL_PID")
	wait_for "$status" 600 "$WL_PID" || {
		cat "$dir/workload.err" >&2
		die "workload did not become ready"
	}
	local word pid sum
	read -r word pid sum _ <"$status"
	[[ $word == ready && $pid == "$WL_PID" ]] || die "workload status: $(cat "$status")"
	WL_SUM=$sum
	read -r -a WL_KIDS <<<"$(descendants "$WL_PID" | tr '\n' ' ')"
	((${#WL_KIDS[@]} + 1 == WL_NPROCS)) ||
		die "workload $WL_PID: ${#WL_KIDS[@]} other processes, expected $((WL_NPROCS - 1))"
}

# reap PID: after a dump killed the workload, wait until bash has reaped it
# (it is our child) so its pid is free again (CRIU restores with the same pid).
# Both tools kill the target after a dump; a large process takes a moment to
# exit (its memory is freed first).
reap() {
	local pid i
	for pid in "$@"; do
		for ((i = 0; i < 200; i++)); do
			[[ -e /proc/$pid ]] || continue 2
			sleep 0.05
		done
		log "note: workload $pid still running 10 s after dump; killing it"
		if runs_workload "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
		for ((i = 0; i < 200; i++)); do
			[[ -e /proc/$pid ]] || continue 2
			sleep 0.05
		done
		die "workload $pid was not reaped"
	done
}

# check_restored PID DIR EXPECTED_SUM UID: the restored process runs as UID
# and its memory checksum matches the one computed before the dump.
check_restored() {
	local pid=$1 dir=$2 want=$3 want_uid=$4 uid word rpid got
	kill -0 "$pid" 2>/dev/null || die "restored process $pid is not running"
	uid=$(awk '/^Uid:/{print $2}' "/proc/$pid/status")
	[[ $uid == "$want_uid" ]] || die "restored process $pid runs as uid $uid, expected $want_uid"
	if is_tree; then
		local -a kids
		local k
		read -r -a kids <<<"$(descendants "$pid" | tr '\n' ' ')"
		((${#kids[@]} + 1 == WL_NPROCS)) ||
			die "restored tree $pid: ${#kids[@]} other processes, expected $((WL_NPROCS - 1))"
		for k in "${kids[@]}"; do
			uid=$(awk '/^Uid:/{print $2}' "/proc/$k/status")
			[[ $uid == "$want_uid" ]] || die "restored process $k runs as uid $uid, expected $want_uid"
		done
	fi
	rm -f "$dir/status.check"
	kill -USR1 "$pid"
	wait_for "$dir/status.check" 300 "$pid" || die "restored process $pid did not answer SIGUSR1"
	read -r word rpid got _ <"$dir/status.check"
	[[ $word == ok && $rpid == "$pid" && $got == "$want" ]] ||
		die "restored $(is_tree && echo tree || echo process) $pid: memory check failed: $(cat "$dir/status.check") (want $want)"
}

# measure user|root CMD...: runs CMD under the measure tool (as the bench
# user or as root), sets MEASURE_LAST to "seconds peak_kib cpu_seconds".
MEASURE_LAST=""
measure() {
	local who=$1
	shift
	local out=$RUN/measure.out
	rm -f "$out"
	if [[ $who == user ]]; then
		(cd "$RUN" && as_user "$CACHE/bin/measure" "$out" -- "$@") 9>&-
	else
		(cd "$RUN" && "$CACHE/bin/measure" "$out" -- "$@") 9>&-
	fi
	local secs kib code cpu
	read -r secs kib code cpu <"$out"
	if [[ $code != 0 ]]; then
		log "command failed with exit code $code: $*"
		return 1
	fi
	MEASURE_LAST="$secs $kib $cpu"
}

declare -A SAMPLES # key "tool.step" -> "secs kib cpu;secs kib cpu;..."
declare -A IMGSIZE
add_sample() { SAMPLES[$1]+="${SAMPLES[$1]:+;}$2"; }

leave_running() { [[ $BENCH_LEAVE_RUNNING == 1 ]]; }

# page_cache PATH: puts the image (a file, or CRIU's directory) in the page
# cache (warm, the default: both tools write through the page cache, but
# whatever memory pressure evicted is read again), or drops the
# page cache (BENCH_CACHE=cold: the whole machine's clean pages), before a
# verify or restore is measured. Not timed.
page_cache() {
	if [[ $BENCH_CACHE == cold ]]; then
		sync
		echo 3 >/proc/sys/vm/drop_caches
	elif [[ -d $1 ]]; then
		cat "$1"/* >/dev/null
	else
		cat "$1" >/dev/null
	fi
}

# kill_tree PID: the workload left running by a --leave-running dump, and
# its descendants (the image has them; the restore makes new ones).
kill_tree() {
	local k
	for k in $(descendants "$1") "$1"; do
		if runs_workload "$k"; then kill -KILL "$k" 2>/dev/null || true; fi
	done
}

# criu_frozen_ms STATS: CRIU's own record of how long the tasks were frozen
# (dump_stats_entry.frozen_time, microseconds, in the stats-dump image: a
# magic, a length-prefixed stats_entry whose field 1 is the dump's), in ms.
criu_frozen_ms() {
	python3 - "$1" <<'PY'
import struct, sys
d = open(sys.argv[1], 'rb').read()
i = 0
while i + 4 <= len(d) and struct.unpack_from('<I', d, i)[0] in (0x54564319, 0x55105940, 0x57093306):
    i += 4
n = struct.unpack_from('<I', d, i)[0]
msg = d[i + 4:i + 4 + n]
def varint(b, j):
    v = s = 0
    while True:
        c = b[j]; j += 1; v |= (c & 0x7f) << s; s += 7
        if c < 0x80:
            return v, j
def fields(b):
    j = 0
    while j < len(b):
        key, j = varint(b, j)
        f, t = key >> 3, key & 7
        if t == 0:
            v, j = varint(b, j)
        elif t == 2:
            l, j = varint(b, j); v = b[j:j + l]; j += l
        elif t == 5:
            v = b[j:j + 4]; j += 4
        elif t == 1:
            v = b[j:j + 8]; j += 8
        else:
            raise SystemExit("bad wire type")
        yield f, v
for f, v in fields(msg):
    if f == 1:
        for g, w in fields(v):
            if g == 2:
                print("%.3f" % (w / 1000.0))
                raise SystemExit(0)
raise SystemExit("no frozen_time")
PY
}

# ---------------------------------------------------------------- one rep
run_ckpt_rep() {
	local rep=$1 dir=$RUN/ckpt
	mkdir -p "$dir"
	chown "$BENCH_USER:" "$dir"
	chmod 0700 "$dir"
	local img=$dir/image.ckpt pidfile=$dir/restored.pid
	rm -f "$img" "$pidfile"
	start_workload "$dir" "$BENCH_USER"
	log "ckpt rep $rep: workload pid $WL_PID ready ($WL_DESC, sum $WL_SUM)"

	local -a tree=()
	is_tree && tree=(--tree)
	leave_running && tree+=(--leave-running)
	local -a extra=()
	read -r -a extra <<<"$BENCH_CKPT_DUMP_ARGS"
	tree+=("${extra[@]}")
	measure user "$PREFIX/bin/ckpt-sign" dump "${tree[@]}" --pid "$WL_PID" -o "$img" 2>"$dir/dump.err" ||
		{ cat "$dir/dump.err" >&2; die "ckpt-sign dump failed"; }
	add_sample ckpt.dump "$MEASURE_LAST"
	if leave_running; then
		local frozen
		frozen=$(sed -n 's/.* was frozen for \([0-9.]*\) ms$/\1/p' "$dir/dump.err" | head -1)
		[[ -n $frozen ]] || die "ckpt-sign dump --leave-running did not say how long pid $WL_PID was frozen"
		add_sample ckpt.frozen "$(awk -v m="$frozen" 'BEGIN{print m / 1000}') 0 0"
		kill_tree "$WL_PID"
	fi
	reap "$WL_PID" "${WL_KIDS[@]}"
	IMGSIZE[ckpt]=$(stat -c %s "$img")

	page_cache "$img"
	measure user "$PREFIX/bin/ckpt-verify" verify "$img" >"$dir/verify.out" ||
		{ cat "$dir/verify.out" >&2; die "ckpt-verify verify failed"; }
	add_sample ckpt.verify "$MEASURE_LAST"

	page_cache "$img"
	measure user "$PREFIX/bin/ckpt-verify" restore "$img" --pidfile "$pidfile" >"$dir/restore.out" ||
		{ cat "$dir/restore.out" >&2; die "ckpt-verify restore failed"; }
	add_sample ckpt.restore "$MEASURE_LAST"
	wait_for "$pidfile" 10 || die "ckpt-verify restore wrote no pidfile"
	local rpid
	rpid=$(tr -dc 0-9 <"$pidfile")
	WORKLOAD_PIDS+=("$rpid")
	check_restored "$rpid" "$dir" "$WL_SUM" "$BENCH_UID"
	log "ckpt rep $rep: restored pid $rpid alive, memory checksum matches$(is_tree && echo " in all $WL_NPROCS processes")"

	# Reference for verify: one core's SHA-256 (OpenSSL, SHA-NI when the CPU
	# has it) over the same bytes, warm. coreutils' sha256sum is no reference:
	# Debian's has no SHA-NI code and runs at a fraction of this speed.
	measure root openssl dgst -sha256 "$img" >/dev/null || die "openssl dgst failed"
	add_sample ref.sha256 "$MEASURE_LAST"

	kill_workload "$rpid"
	rm -f "$img"
}

run_criu_rep() {
	local rep=$1 dir=$RUN/criu
	mkdir -p "$dir"
	chmod 0700 "$dir"
	local img=$dir/images pidfile=$dir/restored.pid
	rm -rf "$img" "$pidfile"
	mkdir -p "$img"
	# Same program, but run as root: CRIU itself must run as root, and root
	# here lacks CAP_SYS_RESOURCE, without which criu dump cannot read another
	# uid's rlimits (prlimit: "Can't get rlimit 0: Operation not permitted").
	start_workload "$dir" root
	log "criu rep $rep: workload pid $WL_PID ready"

	# Started with setsid and no tty: no --shell-job needed. criu dump -t
	# takes the task's whole subtree: a tree needs no other option.
	local -a lr=()
	leave_running && lr=(--leave-running)
	measure root "$CRIU" dump "${lr[@]}" -t "$WL_PID" -D "$img" -o dump.log ||
		{ tail -20 "$img/dump.log" >&2; die "criu dump failed"; }
	add_sample criu.dump "$MEASURE_LAST"
	# "CRIU followed by sync": the dump, then fsync of every file it wrote
	# (timed separately, added up; ckpt's dump includes its own fsync).
	local dump_s sync_s
	dump_s=${MEASURE_LAST%% *}
	measure root sync "$img"/* || die "sync of CRIU's image failed"
	sync_s=${MEASURE_LAST%% *}
	add_sample criu.dump_sync "$(awk -v a="$dump_s" -v b="$sync_s" 'BEGIN{print a + b}') 0 0"
	if leave_running; then
		local frozen
		frozen=$(criu_frozen_ms "$img/stats-dump") || die "cannot read frozen_time from $img/stats-dump"
		add_sample criu.frozen "$(awk -v m="$frozen" 'BEGIN{print m / 1000}') 0 0"
		kill_tree "$WL_PID"
	fi
	reap "$WL_PID" "${WL_KIDS[@]}"
	IMGSIZE[criu]=$(du -sb "$img" | cut -f1)

	page_cache "$img"
	measure root "$CRIU" restore -D "$img" -o restore.log -d --pidfile "$pidfile" ||
		{ tail -20 "$img/restore.log" >&2; die "criu restore failed"; }
	add_sample criu.restore "$MEASURE_LAST"
	local rpid
	rpid=$(tr -dc 0-9 <"$pidfile")
	WORKLOAD_PIDS+=("$rpid")
	check_restored "$rpid" "$dir" "$WL_SUM" 0
	log "criu rep $rep: restored pid $rpid alive, memory checksum matches$(is_tree && echo " in all $WL_NPROCS processes")"

	kill_workload "$rpid"
	rm -rf "$img"
}

# ---------------------------------------------------------------- stats
# median_field "a b;c d;..." FIELD(1|2)
median_field() {
	tr ';' '\n' <<<"$1" | awk -v f="$2" '{print $f}' | sort -g |
		awk '{v[NR] = $1} END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
fieldlist() { tr ';' '\n' <<<"$1" | awk -v f="$2" -v s="$3" 'BEGIN{ORS=""} {print (NR > 1 ? ", " : "") $f * s}'; }

# ---------------------------------------------------------------- main
apt_install "${HARNESS_DEPS[@]}"
if want criu; then ensure_criu; fi
ensure_user
build_tools
if want ckpt; then
	if [[ $BENCH_BUILD == 1 ]]; then
		build_ckpt
	else
		# Helpers already installed setuid in BENCH_PREFIX (e.g. by
		# scripts/test.sh with CKPT_TEST_PREFIX): use them as they are.
		[[ -u $PREFIX/bin/ckpt-sign && -u $PREFIX/bin/ckpt-verify ]] ||
			die "BENCH_BUILD=0: no setuid ckpt-sign and ckpt-verify in $PREFIX/bin"
		log "using the installed helpers in $PREFIX/bin (BENCH_BUILD=0)"
		"$PREFIX/bin/ckpt-sign" keygen --force >&2
	fi
fi

mkdir -p "$BENCH_DIR"
chmod 0755 "$BENCH_DIR"
RUN=$BENCH_DIR/run
rm -rf "$RUN"
mkdir -p "$RUN"
chmod 0755 "$RUN"
chown "$BENCH_USER:" "$RUN"
FS="$(df -P "$BENCH_DIR" | awk 'NR == 2 {print $1}') ($(stat -f -c %T "$BENCH_DIR"))"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
REP_LOADS=()
log "workload: $WL_DESC, $BENCH_REPS reps, tools: $BENCH_TOOLS, images on $BENCH_DIR: $FS"
log "load average at start: $LOAD_START (2 shared cores: numbers are noisy when others build)"

wait_quiet() {
	[[ -n ${BENCH_WAIT_LOAD:-} ]] || return 0
	local waited=0 max=${BENCH_WAIT_MAX:-900} load
	while :; do
		load=$(cut -d' ' -f1 /proc/loadavg)
		if awk -v l="$load" -v t="$BENCH_WAIT_LOAD" 'BEGIN{exit !(l < t)}'; then
			return 0
		fi
		if ((waited >= max)); then
			log "load average still $load after ${max}s; measuring anyway"
			return 0
		fi
		((waited == 0)) && log "load average $load >= $BENCH_WAIT_LOAD; waiting"
		sleep 10
		waited=$((waited + 10))
	done
}

for ((rep = 1; rep <= BENCH_REPS; rep++)); do
	wait_quiet
	REP_LOADS+=("$(cut -d' ' -f1 /proc/loadavg)")
	if want ckpt; then run_ckpt_rep "$rep"; fi
	if want criu; then run_criu_rep "$rep"; fi
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

BYTES=$((WL_MIB * 1048576))
# Columns per tool/step: median seconds, MB/s (10^6 bytes of workload memory
# per second), median peak RSS MiB.
stat_of() { # tool.step -> "secs mbps rss_mib" or "- - -"
	local s=${SAMPLES[$1]:-}
	if [[ -z $s ]]; then
		echo "- - -"
		return
	fi
	local secs kib
	secs=$(median_field "$s" 1)
	kib=$(median_field "$s" 2)
	awk -v s="$secs" -v k="$kib" -v b="$BYTES" 'BEGIN { printf "%.3f %.0f %.1f\n", s, b / 1e6 / s, k / 1024 }'
}

# ms_per_proc SECONDS: milliseconds per process of the workload.
ms_per_proc() {
	if [[ $1 == - || $1 == n/a ]]; then
		echo "$1"
	else
		awk -v s="$1" -v n="$WL_NPROCS" 'BEGIN{printf "%.1f", s * 1000 / n}'
	fi
}
if is_tree; then
	printf '\nckpt vs CRIU %s: %s (%d MiB of resident pseudo-random memory in all), median of %d, %s page cache\n' \
		"$CRIU_VERSION" "$WL_DESC" "$WL_MIB" "$BENCH_REPS" "$BENCH_CACHE"
	printf 'ms/proc = median seconds / %d processes; MB/s = 10^6 bytes of workload memory per second;\n' "$WL_NPROCS"
	printf 'RSS = helper peak (ru_maxrss); ckpt/criu = CRIU seconds / ckpt seconds (> 1: ckpt faster)\n\n'
	printf '%-8s %8s %8s %9s %10s %8s %8s %9s %10s %10s\n' step "ckpt s" "ms/proc" "ckpt MB/s" "ckpt RSS" \
		"criu s" "ms/proc" "criu MB/s" "criu RSS" "ckpt/criu"
else
	printf '\nckpt vs CRIU %s: %d MiB resident memory (%s), %d thread(s), median of %d, %s page cache\n' \
		"$CRIU_VERSION" "$BENCH_MIB" "$BENCH_DATA" "$BENCH_THREADS" "$BENCH_REPS" "$BENCH_CACHE"
	printf 'MB/s = 10^6 bytes of workload memory per second; RSS = helper peak (ru_maxrss)\n\n'
	printf '%-8s %9s %9s %10s %9s %9s %10s %12s\n' step "ckpt s" "ckpt MB/s" "ckpt RSS" \
		"criu s" "criu MB/s" "criu RSS" "ckpt/criu"
fi
for step in dump verify restore; do
	read -r cs cm cr <<<"$(stat_of "ckpt.$step")"
	read -r rs rmb rr <<<"$(stat_of "criu.$step")"
	ratio=-
	if [[ $cm != - && $rmb != - ]]; then
		ratio=$(awk -v a="$cm" -v b="$rmb" 'BEGIN{printf "%.2f", a / b}')
	fi
	if [[ $cr != - ]]; then cr="$cr MiB"; fi
	if [[ $rr != - ]]; then rr="$rr MiB"; fi
	if [[ $step == verify ]] && want criu; then rs=n/a rmb=n/a rr=n/a; fi
	if is_tree; then
		printf '%-8s %8s %8s %9s %10s %8s %8s %9s %10s %10s\n' "$step" "$cs" "$(ms_per_proc "$cs")" "$cm" "$cr" \
			"$rs" "$(ms_per_proc "$rs")" "$rmb" "$rr" "$ratio"
	else
		printf '%-8s %9s %9s %10s %9s %9s %10s %12s\n' "$step" "$cs" "$cm" "$cr" "$rs" "$rmb" "$rr" "$ratio"
	fi
done
if [[ -n ${SAMPLES[criu.dump_sync]:-} ]]; then
	read -r ds dm _ <<<"$(stat_of criu.dump_sync)"
	read -r _ cm _ <<<"$(stat_of ckpt.dump)"
	printf '\nCRIU dump followed by fsync of its image files: %s s, %s MB/s; ckpt/criu+sync: %s\n' "$ds" "$dm" \
		"$([[ $cm != - ]] && awk -v a="$cm" -v b="$dm" 'BEGIN{printf "%.2f", a / b}' || echo -)"
fi
if leave_running; then
	printf '\nfrozen (dump --leave-running: how long the target was stopped; median ms): ckpt %s, criu %s\n' \
		"$(m=$(median_field "${SAMPLES[ckpt.frozen]:-}" 1); [[ -n $m ]] && awk -v m="$m" 'BEGIN{printf "%.1f", m * 1000}' || echo -)" \
		"$(m=$(median_field "${SAMPLES[criu.frozen]:-}" 1); [[ -n $m ]] && awk -v m="$m" 'BEGIN{printf "%.1f", m * 1000}' || echo -)"
fi
printf '\nCPU seconds (user+sys, all threads; median):'
for k in ckpt.dump ckpt.verify ckpt.restore criu.dump criu.restore; do
	if [[ -n ${SAMPLES[$k]:-} ]]; then
		printf ' %s %.3f' "$k" "$(median_field "${SAMPLES[$k]}" 3)"
	fi
done
printf '\n'
if [[ -n ${SAMPLES[ref.sha256]:-} ]]; then
	read -r hs hm hr <<<"$(stat_of ref.sha256)"
	printf 'reference: openssl dgst -sha256 of the ckpt image (warm, 1 core): %s s, %s MB/s, %s MiB RSS\n' "$hs" "$hm" "$hr"
fi
printf 'CRIU has no verify step (it does not sign or check images).\n'
for t in ckpt criu; do
	if [[ -n ${IMGSIZE[$t]:-} ]]; then printf 'image size %s: %s bytes\n' "$t" "${IMGSIZE[$t]}"; fi
done
printf 'machine: %s CPUs (%s), %s MiB RAM, kernel %s; images on %s\n' "$(nproc)" \
	"$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)" \
	"$(awk '/^MemTotal:/{printf "%d", $2 / 1024}' /proc/meminfo)" "$(uname -r)" "$FS"
printf 'load average: start %s, end %s; 1-minute at the start of each run: %s\n' \
	"$LOAD_START" "$LOAD_END" "${REP_LOADS[*]}"

# The performance targets (benches/README.md, "Performance targets"; ckpt
# only, the one-process workload), and for a
# tree: its restore takes less time than CRIU's, in the same run.
TARGETS_JSON=""
if is_tree; then
	if want ckpt && want criu; then
		read -r cs _ _ <<<"$(stat_of ckpt.restore)"
		read -r rs _ _ <<<"$(stat_of criu.restore)"
		t_tree=$(awk -v a="$cs" -v b="$rs" 'BEGIN{print (a < b) ? "true" : "false"}')
		printf '\ntarget: restoring the tree takes less time than CRIU (same run): %s (%s s vs %s s)\n' \
			"$t_tree" "$cs" "$rs"
		TARGETS_JSON=$(printf '"targets": {"tree_restore_faster_than_criu": %s},' "$t_tree")
	fi
elif want ckpt; then
	read -r _ dm _ <<<"$(stat_of ckpt.dump)"
	read -r _ vm vr <<<"$(stat_of ckpt.verify)"
	read -r _ _ rr <<<"$(stat_of ckpt.restore)"
	t_dump=$(awk -v v="$dm" 'BEGIN{print (v >= 1000) ? "true" : "false"}')
	t_verify=$(awk -v v="$vm" 'BEGIN{print (v >= 1000) ? "true" : "false"}')
	t_vrss=$(awk -v v="$vr" 'BEGIN{print (v < 64) ? "true" : "false"}')
	t_rrss=$(awk -v v="$rr" 'BEGIN{print (v < 64) ? "true" : "false"}')
	printf '\ntargets: dump >= 1000 MB/s: %s; verify >= 1000 MB/s: %s; verify RSS < 64 MiB: %s; restore RSS < 64 MiB: %s\n' \
		"$t_dump" "$t_verify" "$t_vrss" "$t_rrss"
	TARGETS_JSON=$(printf '"targets": {"dump_mbps_ge_1000": %s, "verify_mbps_ge_1000": %s, "verify_rss_lt_64mib": %s, "restore_rss_lt_64mib": %s},' \
		"$t_dump" "$t_verify" "$t_vrss" "$t_rrss")
fi

# ---------------------------------------------------------------- JSON
json_step() { # tool.step
	local s=${SAMPLES[$1]:-}
	if [[ -z $s ]]; then
		printf 'null'
		return
	fi
	read -r secs mbps rss <<<"$(stat_of "$1")"
	local per=""
	if is_tree; then per=$(printf '"ms_per_process_median": %s, ' "$(ms_per_proc "$secs")"); fi
	printf '{"seconds_median": %s, %s"mbps": %s, "peak_rss_mib_median": %s, "cpu_seconds_median": %s, "seconds": [%s], "peak_rss_kib": [%s], "cpu_seconds": [%s]}' \
		"$secs" "$per" "$mbps" "$rss" "$(median_field "$s" 3)" "$(fieldlist "$s" 1 1)" "$(fieldlist "$s" 2 1)" "$(fieldlist "$s" 3 1)"
}
git_rev=$(git -c safe.directory="$REPO" -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)
git_dirty=false
if [[ -n $(git -c safe.directory="$REPO" -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
	git_dirty=true
fi
mkdir -p "$(dirname "$BENCH_OUT")"
{
	printf '{\n'
	printf '  "date": "%s",\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	printf '  "git_commit": "%s", "git_dirty": %s, "built_from": "%s",\n' "$git_rev" "$git_dirty" \
		"$([[ $BENCH_SOURCE == head ]] && echo "clean export of git_commit" || echo "working tree")"
	printf '  "kernel": "%s", "cpu": "%s", "cpus": %s, "memory_kib": %s,\n' "$(uname -r)" \
		"$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)" "$(nproc)" \
		"$(awk '/^MemTotal:/{print $2}' /proc/meminfo)"
	printf '  "image_dir_mount": "%s",\n' "$(findmnt -n -o SOURCE,FSTYPE,OPTIONS --target "$BENCH_DIR" | head -1 | tr -s ' ' | tr '"' "'")"
	printf '  "load_average_start": "%s", "load_average_end": "%s", "load_average_1min_per_rep": [%s],\n' \
		"$LOAD_START" "$LOAD_END" "$(loads="${REP_LOADS[*]}"; echo "${loads// /, }")"
	if is_tree; then
		printf '  "workload": "%s", "workload_processes": %s, %s\n' "$WL_KIND" "$WL_NPROCS" \
			"$([[ $WL_KIND == procs ]] && echo "\"workload_mib_per_process\": $BENCH_MIB_PER_PROC," ||
				echo "\"workload_shared_mib\": $BENCH_SHARED_MIB,")"
		printf '  "workload_mib": %s, "workload_bytes": %s, "reps": %s,\n' "$WL_MIB" "$BYTES" "$BENCH_REPS"
		printf '  "ckpt_dump_options": "--tree", "criu_dump_options": "-t ROOT (whole subtree)",\n'
	else
		printf '  "workload_data": "%s", "workload_reserved_mib": %s, "ckpt_dump_options": "%s",\n' \
			"$BENCH_DATA" "$BENCH_RESERVE_MIB" "$BENCH_CKPT_DUMP_ARGS"
		printf '  "workload_mib": %s, "workload_threads": %s, "workload_bytes": %s, "reps": %s,\n' \
			"$BENCH_MIB" "$BENCH_THREADS" "$BYTES" "$BENCH_REPS"
	fi
	printf '  "image_dir_fs": "%s", "page_cache": "%s",\n' "$FS" "$BENCH_CACHE"
	printf '  "mbps_unit": "1e6 bytes of workload memory per second (median seconds)",\n'
	printf '  "image_bytes": {"ckpt": %s, "criu": %s},\n' "${IMGSIZE[ckpt]:-null}" "${IMGSIZE[criu]:-null}"
	if [[ -n $TARGETS_JSON ]]; then printf '  %s\n' "$TARGETS_JSON"; fi
	printf '  "leave_running": %s,\n' "$(leave_running && echo true || echo false)"
	printf '  "ckpt": {"dump": %s, "verify": %s, "restore": %s, "frozen": %s},\n' \
		"$(json_step ckpt.dump)" "$(json_step ckpt.verify)" "$(json_step ckpt.restore)" "$(json_step ckpt.frozen)"
	printf '  "criu": {"version": "%s", "dump": %s, "dump_then_sync": %s, "verify": null, "restore": %s, "frozen": %s},\n' \
		"$CRIU_VERSION" "$(json_step criu.dump)" "$(json_step criu.dump_sync)" "$(json_step criu.restore)" "$(json_step criu.frozen)"
	printf '  "reference_openssl_sha256_of_ckpt_image": %s\n' "$(json_step ref.sha256)"
	printf '}\n'
} >"$BENCH_OUT.tmp"
mv "$BENCH_OUT.tmp" "$BENCH_OUT"
log "wrote $BENCH_OUT"
