//! Process-wide settings through dump → restore, as the test user with the
//! installed helpers: `oom_score_adj`, the child-subreaper flag, memory
//! locks and madvise flags survive; a parent-death signal is recorded but
//! deliberately not restored (its parent is not part of the image), with a
//! notice. The `procstate` workload checks its own state and reports.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use ckpt_tests::{exit, path_str, signal, wait_until, Env, Proc, TestDir, Who, WAIT};
use nix::sys::signal::Signal;

fn start(env: &Env, dir: &TestDir, extra: &[&str]) -> (Proc, PathBuf, PathBuf) {
    let program = dir.compile(env, "procstate");
    let sdir = dir.work.join("ps");
    fs::create_dir(&sdir).unwrap();
    std::os::unix::fs::chown(&sdir, Some(env.user.uid), Some(env.user.gid)).unwrap();
    let log = dir.work.join("procstate.log");
    let mut args = vec![path_str(&sdir)];
    args.extend_from_slice(extra);
    let mut proc = Proc::spawn(env, Who::User(&env.user), &program, &args, &sdir, &[], &log);
    let ready = sdir.join("ready");
    wait_until(WAIT, "the procstate workload has written ready", || {
        fs::read_to_string(&ready).is_ok_and(|s| s == "ready\n") || !proc.is_alive()
    });
    assert!(
        proc.is_alive(),
        "procstate could not set its state up; log:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    (proc, sdir, log)
}

/// Sends SIGUSR1 and returns what the workload wrote to its result file.
fn ask(proc: &mut Proc, sdir: &Path, log: &Path) -> String {
    let result = sdir.join("result");
    signal(proc.pid, Signal::SIGUSR1);
    wait_until(WAIT, "procstate has written its result", || {
        result.exists() || !proc.is_alive()
    });
    let text = fs::read_to_string(&result).unwrap_or_default();
    assert!(
        !text.is_empty(),
        "procstate (pid {}) wrote no result; log:\n{}",
        proc.pid,
        fs::read_to_string(log).unwrap_or_default()
    );
    proc.wait_gone("procstate exits after reporting");
    text
}

/// The workload's own checks hold on a process nobody dumped (so a pass
/// after restore means the state came back, not that the checks are blind).
#[test]
fn procstate_checks_pass_on_the_untouched_process() {
    let env = Env::require();
    let dir = TestDir::new(&env, "procstate-orig");
    let (mut proc, sdir, log) = start(&env, &dir, &["keep-pdeathsig"]);
    let result = ask(&mut proc, &sdir, &log);
    assert_eq!(
        result, "OK\n",
        "procstate before any dump reported: {result}"
    );
}

#[test]
fn oom_score_adj_subreaper_mlock_and_madvise_flags_survive_restore() {
    let env = Env::require();
    let dir = TestDir::new(&env, "procstate");
    let (mut orig, sdir, log) = start(&env, &dir, &[]);
    let image = dir.work.join("ps.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");

    // inspect shows what was recorded.
    let run = env.verify(&dir, &["inspect", path_str(&image), "--json"]);
    run.assert_code(exit::OK, "inspect --json");
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let p = &json["process"];
    assert_eq!(p["oom_score_adj"], 500, "inspect: {p}");
    assert_eq!(p["child_subreaper"], true, "inspect: {p}");
    assert_eq!(p["pdeathsig"], Signal::SIGTERM as i32, "inspect: {p}");

    let (run, mut restored) = env.restore_ok(&dir, &image, None);
    // The parent-death signal is reported as not restored, naming it.
    let sigterm = Signal::SIGTERM as i32;
    assert!(
        run.stderr
            .contains(&format!("parent-death signal {sigterm} not restored")),
        "restore must say the parent-death signal is not restored\n{run}"
    );
    assert!(
        !run.stderr.contains("oom_score_adj") && !run.stderr.contains("not locked"),
        "raising oom_score_adj and a small mlock are within the user's rights\n{run}"
    );
    // The restorer has exited: a restored SIGTERM death signal would have
    // killed the process by now; it must still be running and answer.
    assert!(
        restored.is_alive(),
        "the restored process died after the restorer exited\n{run}"
    );
    let result = ask(&mut restored, &sdir, &log);
    assert_eq!(result, "OK\n", "procstate after restore reported: {result}");
}
