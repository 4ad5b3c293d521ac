//! Whatever the caller (or the caller's terminal) does to a helper, at any
//! instant, is harmless: the target of a `--leave-running` dump carries on
//! counting, no half-built (stub) process survives a restore, no temporary
//! file is left in the output directory, and an image under its final name
//! always verifies.
//!
//! Each test measures how long an undisturbed run takes, then runs the
//! helper 100 times, each time doing one of `lifecycle::ACTIONS` to it
//! after a random delay within that time: `SIGKILL`, `SIGTERM`, `SIGINT`
//! and `SIGSTOP`+`SIGCONT` sent by the caller (the kernel refuses them
//! while the helper is shielded, which is the point), `SIGINT`, `SIGHUP`,
//! `SIGTERM`, `SIGQUIT` and `SIGTSTP`+`SIGCONT` sent to the helper's
//! process group the way a terminal sends them, and closing its pipes.
//!
//! A third test kills the helpers outright (`SIGKILL` as root, standing for
//! the OOM killer or a `cgroup.kill`) at random instants: no temporary file
//! and no half-built process may remain.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use ckpt_tests::lifecycle::{Action, Rng, Running, ACTIONS};
use ckpt_tests::policy::PolicyGuard;
use ckpt_tests::syslog::Syslog;
use ckpt_tests::{
    exit, path_str, processes_mentioning, procfs, signal, status_ids, wait_until, Counter, Env,
    Proc, TestDir, Who, WAIT,
};

const ROUNDS: usize = 100;
/// Longest a single disturbed run may take.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// How each round ended, for the summary.
#[derive(Default, Debug)]
struct Tally {
    by_outcome: BTreeMap<String, usize>,
}

impl Tally {
    fn add(&mut self, action: Action, outcome: &str) {
        *self
            .by_outcome
            .entry(format!("{action:?} -> {outcome}"))
            .or_default() += 1;
    }
}

fn outcome_of(st: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown".into(),
    }
}

/// Kills a restored process (if it still runs) and waits until it is gone.
fn end(mut p: Proc) {
    if p.is_alive() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    p.wait_gone("killed by the test");
}

/// Asserts `dir` holds nothing but `allowed` (no temporary file).
fn only(dir: &Path, allowed: &[&str], what: &str) -> Vec<String> {
    let names = TestDir::list(dir);
    for n in &names {
        assert!(
            allowed.contains(&n.as_str()),
            "{what}: {} holds {n:?} (a temporary or partial file); all: {names:?}",
            dir.display()
        );
    }
    names
}

#[test]
fn leave_running_dump_target_survives_whatever_is_done_to_the_helper() {
    let env = Env::require();
    let dir = TestDir::new(&env, "killed-dump");
    let out = dir.dir("out", 0o755, Some(&env.user));
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let pid = c.proc.pid;
    let pid_s = pid.to_string();
    let mut rng = Rng::new("dump rounds");

    // An undisturbed dump, to know what "any instant" spans.
    let probe = out.join("probe.ckpt");
    let t = Instant::now();
    env.dump_ok(&dir, pid, &probe, &["--leave-running"]);
    let span = t.elapsed();
    fs::remove_file(&probe).unwrap();
    eprintln!("an undisturbed dump takes {span:?}");
    let span_us = (span.as_micros() as u64).max(1000) * 6 / 5;

    let mut tally = Tally::default();
    let mut images = 0;
    let started = Instant::now();
    for round in 0..ROUNDS {
        let action = ACTIONS[round % ACTIONS.len()];
        let name = format!("{round}.ckpt");
        let image = out.join(&name);
        let before = c.lines().last().map(|l| l.0).unwrap_or(0);
        let mut h = Running::start(
            &env,
            Who::User(&env.user),
            &env.sign_path(),
            &[
                "dump",
                "--pid",
                &pid_s,
                "-o",
                path_str(&image),
                "--leave-running",
            ],
            &dir.work,
        );
        std::thread::sleep(Duration::from_micros(rng.below(span_us)));
        h.act(&env, Who::User(&env.user), action);
        let st = h.wait(RUN_LIMIT, &format!("round {round} ({action:?})"));
        let outcome = outcome_of(&st);
        let what = format!("round {round}: {action:?}, helper {outcome}");

        // The target carries on, untouched, and keeps counting.
        c.proc
            .assert_untouched(&format!("{what}\n--- helper stderr:\n{}", h.stderr));
        c.wait_for(pid, before + 2);

        // No process but the counter mentions the test directory.
        let left: Vec<i32> = processes_mentioning(path_str(&dir.root))
            .into_iter()
            .filter(|&p| p != pid)
            .collect();
        assert!(left.is_empty(), "{what}: processes left: {left:?}");

        // Nothing but the image, complete and verified, in the output dir.
        let names = only(&out, &[&name], &what);
        if names.is_empty() {
            assert_ne!(
                st.code(),
                Some(exit::OK),
                "{what}: exit 0 without an image\n{}",
                h.stderr
            );
        } else {
            let run = env.verify(&dir, &["verify", path_str(&image)]);
            run.assert_code(exit::OK, &format!("{what}: the image under its final name"));
            fs::remove_file(&image).unwrap();
            images += 1;
        }
        if st.code() == Some(exit::INTERRUPTED) {
            assert!(
                h.stderr.contains("interrupted by"),
                "{what}: exit 10 says it was interrupted\n{}",
                h.stderr
            );
        }
        tally.add(action, &outcome);
    }
    eprintln!(
        "{ROUNDS} disturbed dumps in {:?}, {images} images: {:#?}",
        started.elapsed(),
        tally.by_outcome
    );
    // The whole run is one unbroken count by the one target.
    let last = c.assert_continuous(&[pid]);
    assert!(last[0] > 0);
}

#[test]
fn restore_leaves_no_stub_whatever_is_done_to_the_helper() {
    let env = Env::require();
    let log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "killed-restore");
    let pids = dir.dir("pids", 0o755, Some(&env.user));
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let image = dir.work.join("c.ckpt");
    env.dump_ok(&dir, c.proc.pid, &image, &[]);
    c.proc.wait_gone("dump kills the target");
    // `exe-link` makes the build privileged: the stub is root until the
    // last injected syscalls.
    guard.policy(&format!(
        "[[rule]]\nname = \"e2e-killed\"\nsigned_by = [\"this-host\"]\n\
         caller = [\"uid:{}\"]\ngrant = [\"exe-link\"]\n",
        env.user.uid
    ));
    let mut rng = Rng::new("restore rounds");

    let t = Instant::now();
    let (run, first) = env.restore_ok(&dir, &image, None);
    let span = t.elapsed();
    assert!(
        !run.stderr.contains("exe-link not granted"),
        "the rule grants exe-link\n{run}"
    );
    end(first);
    eprintln!("an undisturbed restore takes {span:?}");
    let span_us = (span.as_micros() as u64).max(1000) * 6 / 5;

    let mut tally = Tally::default();
    let mut restored = 0;
    let started = Instant::now();
    for round in 0..ROUNDS {
        let action = ACTIONS[round % ACTIONS.len()];
        let pidname = format!("{round}.pid");
        let pidfile = pids.join(&pidname);
        let mut h = Running::start(
            &env,
            Who::User(&env.user),
            &env.verify_path(),
            &["restore", path_str(&image), "--pidfile", path_str(&pidfile)],
            &dir.work,
        );
        std::thread::sleep(Duration::from_micros(rng.below(span_us)));
        h.act(&env, Who::User(&env.user), action);
        let st = h.wait(RUN_LIMIT, &format!("round {round} ({action:?})"));
        let outcome = outcome_of(&st);
        let what = format!("round {round}: {action:?}, helper {outcome}");

        // Whatever runs now is a complete, released process that counts,
        // and its restore is in the audit log.
        let left = processes_mentioning(path_str(&dir.root));
        assert!(left.len() <= 1, "{what}: several processes left: {left:?}");
        let mut procs = Vec::new();
        for p in left {
            let mut proc = Proc::adopt(p, "restored counter")
                .unwrap_or_else(|| panic!("{what}: process {p} vanished"));
            proc.assert_untouched(&format!("{what}: a left process (a stub?)"));
            let status = procfs::status(p).expect("status");
            assert_eq!(
                status_ids(&status, "Uid"),
                vec![u64::from(env.user.uid); 4],
                "{what}: the process left runs as the caller"
            );
            c.wait_for(p, 1);
            let ps = p.to_string();
            log.wait_for(&format!("{what}: the audit record of {p}"), |r| {
                r.program == "ckpt-verify"
                    && r.get("event") == Some("restore")
                    && r.get("outcome") == Some("ok")
                    && r.get("pid") == Some(ps.as_str())
            });
            procs.push(proc);
            restored += 1;
        }
        if st.code() == Some(exit::OK) {
            assert_eq!(procs.len(), 1, "{what}: exit 0 and a process runs");
        }
        if st.code() == Some(exit::INTERRUPTED) {
            assert!(procs.is_empty(), "{what}: interrupted, nothing runs");
            assert!(
                h.stderr.contains("interrupted by"),
                "{what}: exit 10 says it was interrupted\n{}",
                h.stderr
            );
        }

        // No temporary pid file; a pid file names the process.
        let names = only(&pids, &[&pidname], &what);
        if !names.is_empty() {
            let text = fs::read_to_string(&pidfile).unwrap();
            let named: i32 = text.trim().parse().expect("a pid file holds a pid");
            assert_eq!(
                procs.iter().map(|p| p.pid).collect::<Vec<_>>(),
                vec![named],
                "{what}: the pid file names the restored process"
            );
            fs::remove_file(&pidfile).unwrap();
        }
        procs.into_iter().for_each(end);
        tally.add(action, &outcome);
    }
    eprintln!(
        "{ROUNDS} disturbed restores in {:?}, {restored} restored: {:#?}",
        started.elapsed(),
        tally.by_outcome
    );
}

/// Killers the caller does not control (root here; the OOM killer or a
/// `cgroup.kill` alike) still leave no file and no half-built process: the
/// output is unnamed until it is linked into place, and the restore stub
/// dies with its helper at every instant before release.
#[test]
fn helper_killed_outright_leaves_no_file_and_no_stub() {
    const KILLS: usize = 40;
    let env = Env::require();
    let log = Syslog::start();
    let dir = TestDir::new(&env, "killed-outright");
    let out = dir.dir("out", 0o755, Some(&env.user));
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let image = dir.work.join("c.ckpt");
    env.dump_ok(&dir, c.proc.pid, &image, &[]);
    c.proc.wait_gone("dump kills the target");
    let mut rng = Rng::new("outright kills");
    let (_run, mut target) = env.restore_ok(&dir, &image, None);
    let t = Instant::now();
    env.dump_ok(&dir, target.pid, &out.join("probe"), &["--leave-running"]);
    let span_us = (t.elapsed().as_micros() as u64).max(1000) * 6 / 5;
    fs::remove_file(out.join("probe")).unwrap();

    // Dumps of a restored counter, killed by root at random instants. A
    // target whose tracer dies during the injected queries can be lost
    // (SECURITY.md §7: the caller cannot cause this to a setuid helper);
    // it is counted and replaced.
    let mut lost = 0;
    for round in 0..KILLS {
        if !target.is_alive() {
            lost += 1;
            target = env.restore_ok(&dir, &image, None).1;
        }
        let target_s = target.pid.to_string();
        let name = format!("{round}.ckpt");
        let mut h = Running::start(
            &env,
            Who::User(&env.user),
            &env.sign_path(),
            &[
                "dump",
                "--pid",
                &target_s,
                "-o",
                path_str(&out.join(&name)),
                "--leave-running",
            ],
            &dir.work,
        );
        std::thread::sleep(Duration::from_micros(rng.below(span_us)));
        signal(h.pid, nix::sys::signal::Signal::SIGKILL);
        h.wait(RUN_LIMIT, &format!("dump round {round}"));
        let what = format!("dump round {round}, helper killed by root");
        if !only(&out, &[&name], &what).is_empty() {
            let run = env.verify(&dir, &["verify", path_str(&out.join(&name))]);
            run.assert_code(exit::OK, &format!("{what}: the image under its final name"));
            fs::remove_file(out.join(&name)).unwrap();
        }
    }
    if !target.is_alive() {
        lost += 1;
    }
    drop(target);
    eprintln!("{KILLS} dumps killed outright: {lost} targets lost in the injection window");
    wait_until(WAIT, "the last target is gone", || {
        processes_mentioning(path_str(&dir.root)).is_empty()
    });

    // Restores, killed by root at random instants.
    let span_us = span_us * 2;
    for round in 0..KILLS {
        let pidname = format!("{round}.pid");
        let mut h = Running::start(
            &env,
            Who::User(&env.user),
            &env.verify_path(),
            &[
                "restore",
                path_str(&image),
                "--pidfile",
                path_str(&out.join(&pidname)),
            ],
            &dir.work,
        );
        std::thread::sleep(Duration::from_micros(rng.below(span_us)));
        signal(h.pid, nix::sys::signal::Signal::SIGKILL);
        h.wait(RUN_LIMIT, &format!("restore round {round}"));
        let what = format!("restore round {round}, helper killed by root");
        only(&out, &[&pidname], &what);
        let _ = fs::remove_file(out.join(&pidname));
        // Anything left must be a released process that counts, with its
        // audit record; a stub is killed by the kernel with its helper (it
        // may take a moment to go) and never counts.
        for p in processes_mentioning(path_str(&dir.root)) {
            let Some(mut proc) = Proc::adopt(p, "left process") else {
                continue;
            };
            wait_until(
                WAIT,
                &format!("{what}: process {p} is gone or counting (not a stub)"),
                || !proc.is_alive() || c.lines().iter().any(|l| l.1 == p),
            );
            if !proc.is_alive() {
                continue;
            }
            proc.assert_untouched(&format!("{what}: a left process (a stub?)"));
            let ps = p.to_string();
            log.wait_for(&format!("{what}: the audit record of {p}"), |r| {
                r.program == "ckpt-verify"
                    && r.get("event") == Some("restore")
                    && r.get("pid") == Some(ps.as_str())
            });
            end(proc);
        }
    }
}
