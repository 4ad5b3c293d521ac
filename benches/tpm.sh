#!/usr/bin/env bash
# TPM signing and quoting time per image, against a real software TPM
# (swtpm) started by this script on a free loopback port.
#
#   sudo benches/tpm.sh                 # 50 rounds, helpers from /opt/ckpt-test
#   sudo TPM_BENCH_N=200 benches/tpm.sh
#
# Two measurements:
#
# 1. In-process (tpm/examples/tpm_bench.rs): per image, exactly what a
#    TPM-signed, quoted `ckpt-sign dump` asks of the TPM: the plan's probe
#    (connect, load both keys), then connect, load, sign, quote sha256 PCRs
#    0-7; and what `ckpt-verify` adds in software to check the signature and
#    the quote. Median of N rounds.
# 2. End to end, when setuid helpers are installed in TPM_BENCH_PREFIX
#    (default /opt/ckpt-test, installed by scripts/test.sh): wall time of
#    `ckpt-sign dump --leave-running` of a 16 MiB workload as ckpt-user,
#    signed with the file key (no quote) and with the TPM key (and quote).
#    The script writes PREFIX/etc/ckpt.toml and the TPM key record, and puts
#    both back as they were when it exits.
#
# Output: a table on stdout and benches/results/tpm.json. A benchmark, not
# a test: it fails only when a step fails.
set -euo pipefail

N=${TPM_BENCH_N:-50}
PREFIX=${TPM_BENCH_PREFIX:-/opt/ckpt-test}
USER_NAME=${TPM_BENCH_USER:-ckpt-user}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out_json=${TPM_BENCH_OUT:-$repo/benches/results/tpm.json}
work=$(mktemp -d /tmp/ckpt-tpm-bench.XXXXXX)
chmod 0755 "$work"
swtpm_pid=
workload_pid=
restore_cfg=

cleanup() {
    [ -n "$workload_pid" ] && kill -KILL "$workload_pid" 2>/dev/null || true
    if [ -n "$swtpm_pid" ]; then kill -TERM "$swtpm_pid" 2>/dev/null || true; wait "$swtpm_pid" 2>/dev/null || true; fi
    if [ -n "$restore_cfg" ]; then
        rm -f "$PREFIX/etc/keys/tpm.key" "$PREFIX/etc/keys/tpm.pub" "$PREFIX/etc/keys/tpm-ak.pub"
        if [ -f "$work/ckpt.toml.saved" ]; then cp "$work/ckpt.toml.saved" "$PREFIX/etc/ckpt.toml"; else rm -f "$PREFIX/etc/ckpt.toml"; fi
    fi
    rm -rf "$work"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || { echo "tpm.sh: run as root" >&2; exit 1; }
command -v swtpm >/dev/null || { echo "tpm.sh: swtpm is not installed (apt-get install swtpm libtss2-dev)" >&2; exit 1; }

# A free port pair P, P+1 (the swtpm TCTI wants the control port at P+1).
free_pair() {
    python3 - <<'PY'
import socket
for _ in range(200):
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1)); print(p); break
    except OSError:
        pass
    finally:
        a.close(); b.close()
PY
}
port=$(free_pair)
mkdir -p "$work/state"
swtpm socket --tpm2 --tpmstate dir="$work/state" \
    --server type=tcp,port="$port",bindaddr=127.0.0.1 \
    --ctrl type=tcp,port="$((port + 1))",bindaddr=127.0.0.1 \
    --flags not-need-init,startup-clear >"$work/swtpm.log" 2>&1 &
swtpm_pid=$!
for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.01
done
tcti="swtpm:host=127.0.0.1,port=$port"
echo "swtpm $(swtpm --version 2>/dev/null | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -1) on $tcti"

echo "==> in-process: $N rounds"
cd "$repo"
micro=$(cargo run --release -q -p ckpt-tpm --example tpm_bench -- "$tcti" "$N")
echo "$micro"

e2e=null
if [ -u "$PREFIX/bin/ckpt-sign" ] && id "$USER_NAME" >/dev/null 2>&1 && [ -f "$PREFIX/etc/keys/host.pub" ]; then
    echo "==> end to end: ckpt-sign dump --leave-running of a 16 MiB workload as $USER_NAME, $N rounds per key"
    [ -f "$PREFIX/etc/ckpt.toml" ] && cp "$PREFIX/etc/ckpt.toml" "$work/ckpt.toml.saved"
    restore_cfg=1
    cfg() {
        printf '[signing]\nkey = "%s"\n[tpm]\ntcti = "%s"\n' "$1" "$tcti" >"$PREFIX/etc/ckpt.toml"
        chmod 0644 "$PREFIX/etc/ckpt.toml"
    }
    cfg tpm
    "$PREFIX/bin/ckpt-sign" keygen --tpm --force >/dev/null 2>"$work/keygen.err"
    gcc -O2 -o "$work/bigmem" "$repo/benches/workloads/bigmem.c"
    chmod 0755 "$work/bigmem"
    mkdir "$work/u" && chown "$USER_NAME:" "$work/u"
    (cd "$work/u" && exec setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --init-groups -- \
        "$work/bigmem" 16 "$work/u/status" </dev/null >/dev/null 2>&1) &
    disown $!
    for _ in $(seq 500); do [ -s "$work/u/status" ] && break; sleep 0.01; done
    workload_pid=$(awk '{print $2}' "$work/u/status")
    time_dumps() { # key-source: prints median ms
        local i t0 t1
        : >"$work/times"
        for i in $(seq "$N"); do
            rm -f "$work/u/img.ckpt"
            t0=$(date +%s%N)
            (cd "$work/u" && setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --init-groups -- \
                "$PREFIX/bin/ckpt-sign" dump --pid "$workload_pid" -o "$work/u/img.ckpt" --leave-running \
                >/dev/null 2>"$work/dump.err") || { cat "$work/dump.err" >&2; exit 1; }
            t1=$(date +%s%N)
            echo $(( (t1 - t0) / 1000 )) >>"$work/times"
        done
        sort -n "$work/times" | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)]/1000}'
    }
    # File key without a quote: no TPM key record at all.
    mv "$PREFIX/etc/keys/tpm.key" "$work/tpm.key.hold"
    cfg file
    file_ms=$(time_dumps)
    mv "$work/tpm.key.hold" "$PREFIX/etc/keys/tpm.key"
    cfg tpm
    tpm_ms=$(time_dumps)
    grep -q "TPM key, TPM quote" "$work/dump.err" || { echo "tpm.sh: the last dump was not TPM-signed and quoted:" >&2; cat "$work/dump.err" >&2; exit 1; }
    e2e=$(printf '{"workload_mib": 16, "n": %s, "dump_file_key_median_ms": %s, "dump_tpm_key_and_quote_median_ms": %s}' "$N" "$file_ms" "$tpm_ms")
    echo "$e2e"
else
    echo "==> end to end skipped: no setuid helpers in $PREFIX (run scripts/test.sh first) or no user $USER_NAME"
fi

mkdir -p "$(dirname "$out_json")"
commit=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
printf '{"git_commit": "%s", "date": "%s", "in_process": %s, "end_to_end": %s}\n' \
    "$commit" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$micro" "$e2e" >"$out_json"
echo "wrote $out_json"
