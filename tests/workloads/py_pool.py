"""A python3 ThreadPoolExecutor workload that keeps state, for the
real-programs end-to-end test.

Usage: python3 py_pool.py DIR

It starts a pool of 4 worker threads and runs batches of tasks on it. Each
task folds its number into a shared SHA-256 chain (under a lock, in task
order) and counts itself in its worker's thread-local counter. After 20
batches it writes DIR/ready and waits (polling, so the main thread sleeps
in nanosleep and the idle workers wait on the pool's queue) until DIR/go
exists. Then it runs 20 more batches and checks itself:

* the chain equals the same chain recomputed from scratch;
* the per-worker counters add up to the number of tasks run, and the
  workers are the same 4 threads as before (names and thread-local state
  carried over, no new worker started);
* a set of 100 000 ints built at start is intact.

It writes "OK" or "FAIL: <what differs>" to DIR/result and exits.
"""

import concurrent.futures
import hashlib
import os
import sys
import threading
import time

WORKERS = 4
BATCH = 50
BATCHES_BEFORE = 20
BATCHES_AFTER = 20


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.chain = hashlib.sha256(b"seed").digest()
        self.next_task = 0
        self.local = threading.local()
        self.per_worker = {}


def task(state, n):
    # Fold n into the chain in task order: a task waits for its turn.
    with state.cond:
        while state.next_task != n:
            state.cond.wait()
        state.chain = hashlib.sha256(state.chain + n.to_bytes(8, "little")).digest()
        state.next_task += 1
        state.cond.notify_all()
    count = getattr(state.local, "count", 0) + 1
    state.local.count = count
    with state.lock:
        state.per_worker[threading.current_thread().name] = count
    return n * n


def run_batches(pool, state, first_batch, batches):
    for b in range(first_batch, first_batch + batches):
        base = b * BATCH
        futures = [pool.submit(task, state, base + i) for i in range(BATCH)]
        for i, f in enumerate(futures):
            got = f.result(timeout=30)
            if got != (base + i) ** 2:
                raise RuntimeError(f"task {base + i} returned {got}")


def expected_chain(tasks):
    chain = hashlib.sha256(b"seed").digest()
    for n in range(tasks):
        chain = hashlib.sha256(chain + n.to_bytes(8, "little")).digest()
    return chain


def write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def main():
    wdir = sys.argv[1]
    big = set(range(0, 300000, 3))
    state = State()
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=WORKERS, thread_name_prefix="pool"
    )
    run_batches(pool, state, 0, BATCHES_BEFORE)
    workers_before = sorted(t.name for t in threading.enumerate() if t.name.startswith("pool"))
    write_atomically(os.path.join(wdir, "ready"), "ready\n")
    print(f"py_pool {os.getpid()}: ready, workers {workers_before}", flush=True)

    go = os.path.join(wdir, "go")
    while not os.path.exists(go):
        time.sleep(0.02)

    problems = []
    try:
        run_batches(pool, state, BATCHES_BEFORE, BATCHES_AFTER)
    except Exception as e:  # noqa: BLE001 - any failure is the report
        problems.append(f"the pool did not run the batches after go: {e!r}")
    total = (BATCHES_BEFORE + BATCHES_AFTER) * BATCH
    if not problems:
        if state.chain != expected_chain(total):
            problems.append("the task chain differs from the one recomputed")
        if state.next_task != total:
            problems.append(f"next_task is {state.next_task}, expected {total}")
        if sum(state.per_worker.values()) != total:
            problems.append(
                f"per-worker counts {state.per_worker} add up to "
                f"{sum(state.per_worker.values())}, expected {total}"
            )
    workers_after = sorted(t.name for t in threading.enumerate() if t.name.startswith("pool"))
    if workers_after != workers_before:
        problems.append(f"workers were {workers_before}, now {workers_after}")
    if sorted(state.per_worker) != workers_before:
        problems.append(f"tasks ran on {sorted(state.per_worker)}, not on {workers_before}")
    if len(big) != 100000 or sum(big) != 3 * 99999 * 100000 // 2:
        problems.append("the set of 100000 ints changed")
    pool.shutdown(wait=True)

    result = "OK\n" if not problems else "FAIL: " + "; ".join(problems) + "\n"
    print(f"py_pool {os.getpid()}: {result}", end="", flush=True)
    write_atomically(os.path.join(wdir, "result"), result)


if __name__ == "__main__":
    main()
