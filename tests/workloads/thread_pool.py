"""A Python ThreadPoolExecutor that keeps state, for the threads e2e test.

python3 thread_pool.py DIR: four pool workers add to a shared counter under
a lock and record which worker did each task; main runs batches of tasks,
checks every batch's results, and rewrites DIR/n with the number of tasks
done. DIR/ready appears once every worker has taken part. When DIR/go
appears, main runs one more batch, checks that the counter equals the tasks
done and that all four workers still take tasks, shuts the pool down
(joining its threads), and writes "OK\\n" or the failures to DIR/result.
"""
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

d = sys.argv[1]
lock = threading.Lock()
state = {"n": 0, "by": {}}
failures = []


def write(name, text):
    tmp = os.path.join(d, "." + name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(d, name))


def work(i):
    with lock:
        state["n"] += 1
        who = threading.current_thread().name
        state["by"][who] = state["by"].get(who, 0) + 1
    time.sleep(0.002)
    return i * i


pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pool")
done = 0
ready = False


def batch():
    global done
    got = list(pool.map(work, range(32)))
    if got != [i * i for i in range(32)]:
        failures.append("a batch returned %r" % got)
    done += 32


while not os.path.exists(os.path.join(d, "go")):
    batch()
    write("n", "%d\n" % done)
    if not ready and len(state["by"]) == 4:
        write("ready", "ready\n")
        ready = True

before = dict(state["by"])
for _ in range(20):
    batch()
if state["n"] != done:
    failures.append("counter %d, tasks done %d" % (state["n"], done))
if len(state["by"]) != 4:
    failures.append("workers: %r" % state["by"])
idle = [w for w in state["by"] if state["by"][w] == before.get(w, 0)]
if idle:
    failures.append("workers that took no task after restore: %r" % idle)
pool.shutdown(wait=True)
alive = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
if alive:
    failures.append("threads left after shutdown: %r" % alive)
write("result", "".join(f + "\n" for f in failures) or "OK\n")
