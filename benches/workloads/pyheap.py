"""pyheap: benchmark workload for benches/run.sh (BENCH_DATA=python).

    python3 pyheap.py MIB STATUS_FILE

A Python process holding MIB MiB of live objects, the kind of heap a data
service keeps: a list of records (dicts) of ints, floats, short strings from
small vocabularies (cities, tags, status words), unique strings built from
them (names, e-mail addresses, paths) and small lists. A pseudo-random
generator with a fixed seed picks the values, so every run holds the same
objects. It grows the heap until its resident set reaches MIB MiB, computes
a checksum over every record, writes "ready PID CHECKSUM MIB" to STATUS_FILE
(atomically: temp file then rename) and sleeps.

On SIGUSR1 it recomputes the checksum over the same records and writes
"ok PID CHECKSUM" (or "bad PID CHECKSUM EXPECTED") to STATUS_FILE.check, the
protocol bigmem.c follows: after a restore the harness compares the two.

Only the standard library; no threads, no sockets. It closes every
descriptor above 2 it inherited and starts a session of its own.
"""

import os
import random
import signal
import sys
import zlib

CITIES = [
    "Amsterdam", "Berlin", "Cairo", "Dakar", "Edinburgh", "Florence", "Geneva",
    "Helsinki", "Istanbul", "Jakarta", "Kyoto", "Lisbon", "Montreal", "Nairobi",
    "Oslo", "Porto", "Quito", "Riga", "Seoul", "Tallinn", "Utrecht", "Valencia",
    "Warsaw", "Xiamen", "Yerevan", "Zagreb",
]
WORDS = [
    "alpha", "bravo", "cache", "delta", "error", "fetch", "queue", "index",
    "kernel", "local", "mirror", "node", "order", "proxy", "query", "route",
    "shard", "token", "update", "vector", "worker", "batch", "client", "stream",
]
STATUS = ["active", "pending", "suspended", "closed", "archived"]
DOMAINS = ["example.org", "mail.example.com", "corp.example.net", "users.example.io"]


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make_record(rng, i):
    first = rng.choice(WORDS).capitalize()
    last = rng.choice(CITIES)
    name = f"{first} {last}-{i}"
    return {
        "id": i,
        "name": name,
        "email": f"{first.lower()}.{i}@{rng.choice(DOMAINS)}",
        "city": rng.choice(CITIES),
        "status": rng.choice(STATUS),
        "score": round(rng.random() * 1000, 3),
        "visits": rng.randrange(0, 100000),
        "tags": [rng.choice(WORDS) for _ in range(rng.randrange(1, 6))],
        "path": f"/srv/data/{rng.choice(WORDS)}/{i % 997}/{i}.json",
        "history": [rng.randrange(0, 1 << 20) for _ in range(rng.randrange(0, 8))],
    }


def checksum(records):
    crc = 0
    for r in records:
        line = "%d|%s|%s|%s|%s|%r|%d|%s|%s|%s\n" % (
            r["id"], r["name"], r["email"], r["city"], r["status"], r["score"],
            r["visits"], ",".join(r["tags"]), r["path"],
            ",".join(map(str, r["history"])),
        )
        crc = zlib.crc32(line.encode(), crc)
    return "%08x%08x" % (crc, len(records) & 0xFFFFFFFF)


def write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: pyheap.py MIB STATUS_FILE\n")
        return 2
    mib = int(sys.argv[1])
    status = sys.argv[2]
    os.closerange(3, 65536)
    try:
        os.setsid()
    except OSError:
        pass
    # Blocked, and taken with sigwait: no window in which a SIGUSR1 is lost.
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])

    rng = random.Random(20261207)
    target = mib << 20
    records = []
    i = 0
    while True:
        for _ in range(10000):
            records.append(make_record(rng, i))
            i += 1
        if rss_bytes() >= target:
            break
    expected = checksum(records)
    write_atomically(status, "ready %d %s %d\n" % (os.getpid(), expected, mib))
    while True:
        signal.sigwait([signal.SIGUSR1])
        got = checksum(records)
        word = "ok" if got == expected else "bad"
        extra = "" if got == expected else " " + expected
        write_atomically(status + ".check", "%s %d %s%s\n" % (word, os.getpid(), got, extra))


if __name__ == "__main__":
    sys.exit(main())
