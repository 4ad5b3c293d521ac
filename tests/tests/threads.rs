//! Multi-threaded processes, dumped and restored through the installed
//! helpers by the unprivileged test user. The `threads` workload checks its
//! own threads after restore (counters, names, masks, altstacks, TLS, a
//! pending thread-directed signal, a condition variable, a sleeper, an
//! eventfd reader, a robust mutex, pthread_kill and pthread_join) and
//! reports pass or fail itself; the tests check from outside what only the
//! outside can see (every thread's credentials, exact tids with same-pid,
//! that no thread was missed while threads kept being created).
//!
//! Every test holds the configuration lock: one of them installs a
//! same-pid grant for the test user, which would change every other
//! restore made meanwhile.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ckpt_tests::policy::PolicyGuard;
use ckpt_tests::syslog::Syslog;
use ckpt_tests::{
    exit, path_str, procfs, wait_ready, wait_until, workload_result, Env, Proc, TestDir, Who, WAIT,
};

fn workdir(env: &Env, dir: &TestDir, name: &str) -> PathBuf {
    let wdir = dir.work.join(name);
    fs::create_dir(&wdir).unwrap();
    std::os::unix::fs::chown(&wdir, Some(env.user.uid), Some(env.user.gid)).unwrap();
    wdir
}

/// The `threads` workload in `mode` (with `args`), as the test user, once
/// it has written `ready`.
fn start(env: &Env, dir: &TestDir, name: &str, mode: &str, args: &[&str]) -> (Proc, PathBuf) {
    let program = dir.compile(env, "threads");
    let wdir = workdir(env, dir, name);
    let mut all = vec![path_str(&wdir), mode];
    all.extend_from_slice(args);
    let proc = Proc::spawn(
        env,
        Who::User(&env.user),
        &program,
        &all,
        &wdir,
        &[],
        &dir.work.join(format!("{name}.log")),
    );
    let ready = wdir.join("ready");
    wait_until(WAIT, "threads has written ready", || {
        fs::read_to_string(&ready).is_ok_and(|s| s == "ready\n")
    });
    (proc, wdir)
}

/// Tells the check workload to check itself; its result.
fn ask(dir: &TestDir, proc: &mut Proc, wdir: &Path, name: &str) -> String {
    fs::write(wdir.join("go"), b"go\n").unwrap();
    workload_result(
        proc,
        &wdir.join("result"),
        &dir.work.join(format!("{name}.log")),
        "threads",
    )
}

fn tids(pid: i32) -> BTreeSet<i32> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect()
}

/// Every thread of `pid` holds exactly the test user's credentials: ids,
/// groups, no capability, as the leader does. Credentials are per thread
/// in Linux; a thread left with the stub's root credentials would be an
/// escalation.
fn assert_every_thread_is_the_user(env: &Env, pid: i32, want_threads: usize) {
    let all = tids(pid);
    assert_eq!(all.len(), want_threads, "threads of {pid}: {all:?}");
    let leader = procfs::status(pid).expect("leader status");
    let uid = u64::from(env.user.uid);
    let gid = u64::from(env.user.gid);
    for tid in all {
        let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
        let st: std::collections::BTreeMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect();
        assert_eq!(
            ckpt_tests::status_ids(&st, "Uid"),
            vec![uid; 4],
            "thread {tid}\n{text}"
        );
        assert_eq!(
            ckpt_tests::status_ids(&st, "Gid"),
            vec![gid; 4],
            "thread {tid}\n{text}"
        );
        for cap in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
            assert_eq!(
                ckpt_tests::status_ids(&st, cap),
                vec![0],
                "thread {tid} {cap}\n{text}"
            );
        }
        for same in ["Groups", "CapBnd", "NoNewPrivs", "Seccomp"] {
            assert_eq!(
                st.get(same),
                leader.get(same),
                "thread {tid} {same}\n{text}"
            );
        }
    }
}

fn inspect_json(env: &Env, dir: &TestDir, image: &Path) -> serde_json::Value {
    let run = env.verify(dir, &["inspect", path_str(image), "--json"]);
    run.assert_code(ckpt_tests::exit::OK, "inspect --json");
    serde_json::from_str(run.stdout.trim()).unwrap()
}

#[test]
fn threads_check_themselves_after_restore() {
    let env = Env::require();
    // The default policy: a same-pid grant by another test of this file
    // would change how these restores go.
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "threads");
    let (mut orig, wdir) = start(&env, &dir, "t", "check", &["0"]);
    let image = dir.work.join("t.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");

    let v = inspect_json(&env, &dir, &image);
    let p = &v["process"];
    assert_eq!(p["threads"], 7, "{v}");
    let list = p["thread_list"].as_array().unwrap();
    let named = |n: &str| {
        list.iter()
            .find(|t| t["name"] == n)
            .unwrap_or_else(|| panic!("no thread named {n} in {v}"))
    };
    assert_eq!(named("robust")["robust_futexes"], 1, "{v}");
    assert_eq!(named("sigwait")["pending"], 1, "{v}");
    assert!(
        list.iter().all(|t| t["cached_tid"] == true),
        "glibc's cached tid verified for every thread: {v}"
    );

    let (run, mut restored) = env.restore_ok(&dir, &image, None);
    assert!(run.stderr.contains("new tids"), "{run}");
    assert_every_thread_is_the_user(&env, restored.pid, 7);
    let result = ask(&dir, &mut restored, &wdir, "t");
    assert_eq!(result, "OK\n", "threads after restore reported: {result}");
}

#[test]
fn sixty_four_threads() {
    let env = Env::require();
    // The default policy: a same-pid grant by another test of this file
    // would change how these restores go.
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "threads-64");
    let (mut orig, wdir) = start(&env, &dir, "t64", "check", &["57"]);
    let image = dir.work.join("t64.ckpt");
    let t0 = Instant::now();
    env.dump_ok(&dir, orig.pid, &image, &[]);
    let dump_time = t0.elapsed();
    orig.wait_gone("dump kills the target");
    let t0 = Instant::now();
    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let restore_time = t0.elapsed();
    eprintln!("64 threads: dump {dump_time:?}, restore {restore_time:?} (helper run times)");
    assert_eq!(tids(restored.pid).len(), 64);
    let result = ask(&dir, &mut restored, &wdir, "t64");
    assert_eq!(
        result, "OK\n",
        "64 threads after restore reported: {result}"
    );
}

#[test]
fn left_running_threads_carry_on() {
    let env = Env::require();
    // The default policy: a same-pid grant by another test of this file
    // would change how these restores go.
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "threads-lr");
    let (mut orig, wdir) = start(&env, &dir, "lr", "check", &["4"]);
    let before = tids(orig.pid);
    let image = dir.work.join("lr.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &["--leave-running"]);
    orig.assert_untouched("--leave-running");
    assert_eq!(tids(orig.pid), before, "the same threads run on");
    for tid in &before {
        let text = fs::read_to_string(format!("/proc/{}/task/{tid}/status", orig.pid)).unwrap();
        assert!(
            text.lines().any(|l| l == "TracerPid:\t0")
                && !text
                    .lines()
                    .any(|l| l.starts_with("State:\tt") || l.starts_with("State:\tT")),
            "thread {tid} is left traced or stopped\n{text}"
        );
    }
    let result = ask(&dir, &mut orig, &wdir, "lr");
    assert_eq!(result, "OK\n", "threads left running reported: {result}");
    fs::remove_file(wdir.join("go")).unwrap();
    fs::remove_file(wdir.join("result")).unwrap();

    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let result = ask(&dir, &mut restored, &wdir, "lr");
    assert_eq!(
        result, "OK\n",
        "threads restored from a --leave-running image reported: {result}"
    );
}

fn gens(wdir: &Path) -> Vec<u64> {
    fs::read_to_string(wdir.join("gens"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// Every chain's generation grows past `from`.
fn wait_chains_advance(wdir: &Path, from: &[u64], what: &str) {
    wait_until(WAIT, what, || {
        let now = gens(wdir);
        now.len() == 8 && now.iter().zip(from).all(|(n, f)| n > f)
    });
}

/// Eight chains of threads, each creating its successor and exiting, are
/// dumped again and again while they run: every image holds at least one
/// thread of every chain plus main (each chain always has a live thread,
/// so fewer means a thread was missed), the process carries on after each
/// dump, and a process restored from the last image carries on too.
#[test]
fn a_thread_storm_is_frozen_whole() {
    let env = Env::require();
    // The default policy: a same-pid grant by another test of this file
    // would change how these restores go.
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "threads-storm");
    let (mut orig, wdir) = start(&env, &dir, "storm", "storm", &[]);
    for i in 0..6 {
        let image = dir.work.join(format!("storm{i}.ckpt"));
        env.dump_ok(&dir, orig.pid, &image, &["--leave-running"]);
        assert!(orig.is_alive(), "storm survives dump {i}");
        let v = inspect_json(&env, &dir, &image);
        let n = v["process"]["threads"].as_u64().unwrap();
        assert!(
            n >= 9,
            "dump {i}: {n} threads: main and at least one per chain expected\n{v}"
        );
        let before = gens(&wdir);
        wait_chains_advance(&wdir, &before, "every chain carries on after the dump");
    }
    let image = dir.work.join("storm.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    let before = gens(&wdir);
    let (_run, restored) = env.restore_ok(&dir, &image, None);
    wait_chains_advance(&wdir, &before, "every chain carries on after restore");
    drop(restored);
}

/// Through a restore built as root (an `exe-link` grant): the stub is root
/// until its final credentials are set, and the threads are created only
/// after that, so every one of them is the user.
#[test]
fn a_privileged_restore_leaves_no_thread_with_root_credentials() {
    let env = Env::require();
    let syslog = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    guard.grant_exe_link("e2e-threads", &env.user.name);
    let dir = TestDir::new(&env, "threads-root");
    let (mut orig, wdir) = start(&env, &dir, "tr", "check", &["2"]);
    let image = dir.work.join("tr.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let pid_s = restored.pid.to_string();
    syslog.wait_for("the audit record of the granted restore", |r| {
        r.program == "ckpt-verify"
            && r.get("event") == Some("restore")
            && r.get("pid") == Some(pid_s.as_str())
            && r.get("grants") == Some("exe-link:e2e-threads")
    });
    assert_every_thread_is_the_user(&env, restored.pid, 9);
    let result = ask(&dir, &mut restored, &wdir, "tr");
    assert_eq!(
        result, "OK\n",
        "threads after a privileged restore: {result}"
    );
    drop(guard);
}

/// With a `same-pid` grant every thread gets its saved tid back.
#[test]
fn same_pid_restores_every_tid() {
    let env = Env::require();
    let _syslog = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    guard.policy(&format!(
        "[[rule]]\nname = \"e2e-threads-same-pid\"\nsigned_by = [\"this-host\"]\n\
         caller = [\"uid:{0}\"]\ntarget = {{ uid = [{0}] }}\n\
         grant = [\"same-pid\"]\n",
        env.user.uid
    ));
    // pid_max is small here and other tests start processes all the time:
    // an unrelated process may take a saved id between the dump and the
    // restore. The restore must then fail naming that id (every id or
    // none); the scenario is run again, at most three times, only then.
    for attempt in 1..=3 {
        let dir = TestDir::new(&env, &format!("threads-same-pid-{attempt}"));
        let (mut orig, wdir) = start(&env, &dir, "sp", "check", &["3"]);
        let pid = orig.pid;
        let saved = tids(pid);
        let image = dir.work.join("sp.ckpt");
        env.dump_ok(&dir, pid, &image, &[]);
        orig.wait_gone("dump kills the target");
        // The tids are free once the dumped process is reaped.
        let deadline = Instant::now() + Duration::from_secs(10);
        while saved
            .iter()
            .any(|t| Path::new(&format!("/proc/{t}")).exists())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let (run, restored) = env.restore(&dir, &image, None);
        let taken_by_another = run.code == Some(exit::RESTORE_FAILED)
            && run.stderr.contains("is in use")
            && saved
                .iter()
                .any(|t| run.stderr.contains(&format!("pid {t} is in use")));
        if taken_by_another && attempt < 3 {
            eprintln!("attempt {attempt}: an id was taken meanwhile, again\n{run}");
            continue;
        }
        run.assert_code(exit::OK, "restore");
        let mut restored = restored.expect("restore exit 0 yields a process");
        assert_eq!(restored.pid, pid, "the original pid\n{run}");
        assert_eq!(tids(pid), saved, "every original tid\n{run}");
        assert!(!run.stderr.contains("new tids"), "{run}");
        let result = ask(&dir, &mut restored, &wdir, "sp");
        assert_eq!(result, "OK\n", "threads with their own tids: {result}");
        break;
    }
    drop(guard);
}

/// A program nobody here wrote: python3 with a `ThreadPoolExecutor` of four
/// workers that keeps state (a counter under a lock, who did what). It
/// holds no descriptor but its stdio and the files it rewrites; its threads
/// wait in futexes (the GIL's timed condition wait, the pool's queue).
#[test]
fn python_thread_pool_carries_on() {
    let env = Env::require();
    // The default policy: a same-pid grant by another test of this file
    // would change how these restores go.
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "threads-python");
    let wdir = workdir(&env, &dir, "py");
    let script = wdir.join("thread_pool.py");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/thread_pool.py"),
        &script,
    )
    .unwrap();
    // The real file (its /proc/PID/exe), not the python3 symlink.
    let python = fs::canonicalize("/usr/bin/python3").expect("python3 is needed for this test");
    let mut orig = Proc::spawn(
        &env,
        Who::User(&env.user),
        &python,
        &[path_str(&script), path_str(&wdir)],
        &wdir,
        &[],
        &dir.work.join("py.log"),
    );
    wait_ready(&wdir, "the pool");
    assert_eq!(tids(orig.pid).len(), 5, "main and four pool workers");
    let image = dir.work.join("py.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    let done = || -> u64 {
        fs::read_to_string(wdir.join("n"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = done();
    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    assert_eq!(tids(restored.pid).len(), 5);
    wait_until(WAIT, "the restored pool runs more tasks", || {
        done() > before
    });
    let result = ask(&dir, &mut restored, &wdir, "py");
    assert_eq!(
        result, "OK\n",
        "python's pool after restore reported: {result}"
    );
}
