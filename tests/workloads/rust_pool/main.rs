//! A multi-threaded Rust workload for the real-programs end-to-end test: a
//! pool of std threads fed through channels, keeping state.
//!
//! Usage: rust_pool DIR
//!
//! Four named workers ("pool-0" .. "pool-3") take jobs from one shared
//! `mpsc` receiver (behind a mutex) and send results back on another
//! channel; each keeps its own count in a thread-local. A fifth thread
//! ("parked") waits on a condition variable for the whole run, and a sixth
//! ("sleeper") sleeps in short `nanosleep`s, counting its wake-ups. The
//! main thread runs batches of jobs, folds the results into a running
//! checksum, writes DIR/ready after 20 batches and polls for DIR/go. Then
//! it runs 20 more batches and checks itself:
//!
//! * the checksum equals the one recomputed from scratch;
//! * every job came back exactly once, from one of the four workers, and
//!   the workers' own counts add up;
//! * the threads are the same: 6 tasks in /proc/self/task, with the names
//!   they were given;
//! * the parked thread wakes when notified, and the sleeper kept sleeping
//!   and waking;
//! * a 64 MiB buffer filled at start is intact.
//!
//! It writes "OK" or "FAIL: <what differs>" to DIR/result and exits.
// A test workload: a failure to start is a panic with a message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

const WORKERS: usize = 4;
const BATCH: u64 = 64;
const BEFORE: u64 = 20;
const AFTER: u64 = 20;

thread_local! {
    static DONE: Cell<u64> = const { Cell::new(0) };
}

struct Job {
    n: u64,
}

struct Done {
    n: u64,
    value: u64,
    worker: usize,
    worker_count: u64,
}

/// The work one job does: a few thousand rounds of a mixing function.
fn work(n: u64) -> u64 {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    for _ in 0..4000 {
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 29;
    }
    x
}

fn fold(sum: u64, n: u64, value: u64) -> u64 {
    sum.rotate_left(7) ^ value.wrapping_add(n)
}

fn thread_names() -> BTreeMap<i32, String> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir("/proc/self/task").expect("read /proc/self/task") {
        let e = e.expect("task entry");
        let tid: i32 = e.file_name().to_string_lossy().parse().expect("tid");
        let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        out.insert(tid, comm.trim_end().to_string());
    }
    out
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).expect("write result");
    fs::rename(&tmp, path).expect("rename result");
}

#[allow(clippy::too_many_lines)]
fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: rust_pool DIR"));
    let big: Vec<u64> = (0..8 * 1024 * 1024u64).map(|i| i * 3 + 1).collect();

    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let rx = Arc::clone(&job_rx);
        let tx = done_tx.clone();
        workers.push(
            thread::Builder::new()
                .name(format!("pool-{w}"))
                .spawn(move || loop {
                    let job = rx.lock().expect("job queue lock").recv();
                    let Ok(job) = job else { return };
                    let count = DONE.with(|c| {
                        c.set(c.get() + 1);
                        c.get()
                    });
                    let done = Done {
                        n: job.n,
                        value: work(job.n),
                        worker: w,
                        worker_count: count,
                    };
                    if tx.send(done).is_err() {
                        return;
                    }
                })
                .expect("spawn worker"),
        );
    }
    drop(done_tx);

    let parked = Arc::new((Mutex::new(false), Condvar::new()));
    let parked_woke = Arc::new(AtomicBool::new(false));
    let parked_thread = {
        let parked = Arc::clone(&parked);
        let woke = Arc::clone(&parked_woke);
        thread::Builder::new()
            .name("parked".into())
            .spawn(move || {
                let (lock, cv) = &*parked;
                let mut go = lock.lock().expect("parked lock");
                while !*go {
                    go = cv.wait(go).expect("parked wait");
                }
                woke.store(true, Ordering::SeqCst);
            })
            .expect("spawn parked")
    };
    let stop = Arc::new(AtomicBool::new(false));
    let naps = Arc::new(AtomicU64::new(0));
    let sleeper = {
        let stop = Arc::clone(&stop);
        let naps = Arc::clone(&naps);
        thread::Builder::new()
            .name("sleeper".into())
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(10));
                    naps.fetch_add(1, Ordering::SeqCst);
                }
            })
            .expect("spawn sleeper")
    };

    let mut sum = 0u64;
    let mut seen = vec![false; usize::try_from((BEFORE + AFTER) * BATCH).unwrap()];
    let mut last_count = [0u64; WORKERS];
    let mut problems = Vec::new();
    let mut run = |from: u64, batches: u64, problems: &mut Vec<String>| {
        for b in from..from + batches {
            for i in 0..BATCH {
                job_tx.send(Job { n: b * BATCH + i }).expect("send job");
            }
            let mut results = Vec::new();
            for _ in 0..BATCH {
                match done_rx.recv_timeout(Duration::from_secs(30)) {
                    Ok(d) => results.push(d),
                    Err(e) => {
                        problems.push(format!("batch {b}: no result within 30 s ({e})"));
                        return;
                    }
                }
            }
            results.sort_by_key(|d| d.n);
            for d in results {
                let slot = &mut seen[usize::try_from(d.n).unwrap()];
                if *slot {
                    problems.push(format!("job {} came back twice", d.n));
                }
                *slot = true;
                if d.value != work(d.n) {
                    problems.push(format!("job {} has a wrong value", d.n));
                }
                last_count[d.worker] = last_count[d.worker].max(d.worker_count);
                sum = fold(sum, d.n, d.value);
            }
        }
    };

    run(0, BEFORE, &mut problems);
    let names_before = thread_names();
    write_atomically(&dir.join("ready"), "ready\n");
    println!(
        "rust_pool {}: ready, threads {names_before:?}",
        std::process::id()
    );
    let naps_at_ready = naps.load(Ordering::SeqCst);

    while !dir.join("go").exists() {
        thread::sleep(Duration::from_millis(20));
    }
    let names_after = thread_names();
    run(BEFORE, AFTER, &mut problems);

    let total = (BEFORE + AFTER) * BATCH;
    let expected = (0..total).fold(0u64, |s, n| fold(s, n, work(n)));
    if sum != expected {
        problems.push(format!("checksum {sum:#x}, recomputed {expected:#x}"));
    }
    if seen.iter().any(|s| !s) {
        problems.push("some job never came back".into());
    }
    if last_count.iter().sum::<u64>() != total {
        problems.push(format!(
            "the workers' own counts {last_count:?} do not add up to {total}"
        ));
    }
    // Tids may differ after a restore; the set of names and their number must not.
    let names = |m: &BTreeMap<i32, String>| {
        let mut v: Vec<String> = m.values().cloned().collect();
        v.sort();
        v
    };
    if names(&names_after) != names(&names_before) || names_before.len() != WORKERS + 3 {
        problems.push(format!(
            "threads were {names_before:?} at ready, {names_after:?} after go"
        ));
    }
    if naps.load(Ordering::SeqCst) <= naps_at_ready {
        problems.push("the sleeper thread stopped waking".into());
    }
    {
        let (lock, cv) = &*parked;
        *lock.lock().expect("parked lock") = true;
        cv.notify_all();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !parked_woke.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    if !parked_woke.load(Ordering::SeqCst) {
        problems.push("the thread parked on a condition variable did not wake".into());
    }
    if big.iter().enumerate().any(|(i, &v)| v != i as u64 * 3 + 1) {
        problems.push("the 64 MiB buffer changed".into());
    }

    stop.store(true, Ordering::SeqCst);
    drop(job_tx);
    for w in workers {
        let _ = w.join();
    }
    let _ = parked_thread.join();
    let _ = sleeper.join();

    let result = if problems.is_empty() {
        "OK\n".to_string()
    } else {
        format!("FAIL: {}\n", problems.join("; "))
    };
    print!("rust_pool {}: {result}", std::process::id());
    write_atomically(&dir.join("result"), &result);
}
