//! Process-wide settings through dump → restore, as the test user with the
//! installed helpers: `oom_score_adj`, the child-subreaper flag, memory
//! locks and madvise flags (`dc`, `wf`, `dd`, `hg`, `nh`, `mg`) survive; a parent-death signal is recorded but
//! deliberately not restored (its parent is not part of the image), with a
//! notice. The `procstate` workload checks its own state and reports; so
//! does `sigstate`, for what the dump asks of the task itself (signal
//! dispositions, resource limits, interval timers), with and without a
//! trampoline.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use ciborium::Value;
use ckpt_tests::image::{with_manifest, Layout};
use ckpt_tests::{
    exit, path_str, signal, wait_until, workload_result, write_owned, Env, Proc, TestDir, Who, WAIT,
};
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
    signal(proc.pid, Signal::SIGUSR1);
    workload_result(proc, &sdir.join("result"), log, "procstate")
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

/// The image as the dump wrote it, with `tasks[0].<key>` set to `value`
/// (an unsigned image: its manifest can be rewritten, as a caller could).
fn with_process_field(image: &[u8], key: &str, value: Value) -> Vec<u8> {
    let l = Layout::parse(image).unwrap();
    let mut m: Value =
        ciborium::de::from_reader(&image[l.manifest.start as usize..l.manifest.end as usize])
            .unwrap();
    let Value::Map(top) = &mut m else {
        panic!("the manifest is not a map")
    };
    let process = top
        .iter_mut()
        .find(|(k, _)| k.as_text() == Some("tasks"))
        .and_then(|(_, v)| match v {
            Value::Array(tasks) => tasks.first_mut(),
            _ => None,
        })
        .expect("the manifest has a task");
    let Value::Map(fields) = process else {
        panic!("process is not a map")
    };
    fields.retain(|(k, _)| k.as_text() != Some(key));
    fields.push((Value::Text(key.into()), value));
    let mut out = Vec::new();
    ciborium::ser::into_writer(&m, &mut out).unwrap();
    with_manifest(image, &out).unwrap()
}

/// A value the restored credentials may not set is a notice, not a failed
/// restore. Nobody here may lower oom_score_adj below 0 (even root lacks
/// `CAP_SYS_RESOURCE`), so the image says -500 by a rewritten unsigned
/// manifest; the user restoring it may not go below the value the stub
/// inherits (its floor is 0 here), so the process keeps that and restore
/// names -500. An
/// out-of-range value is a malformed image.
#[test]
fn oom_score_adj_the_caller_may_not_set_is_a_notice() {
    let env = Env::require();
    let dir = TestDir::new(&env, "procstate-oom");
    let (mut orig, sdir, log) = start(&env, &dir, &[]);
    let unsigned = dir.work.join("ps-unsigned.ckpt");
    env.dump_ok(&dir, orig.pid, &unsigned, &["--unsigned"]);
    orig.wait_gone("dump kills the target");
    let bytes = fs::read(&unsigned).unwrap();

    let absurd = dir.work.join("ps-2000.ckpt");
    write_owned(
        &absurd,
        &with_process_field(&bytes, "oom_score_adj", Value::Integer(2000.into())),
        &env.user,
    );
    let run = env.verify(&dir, &["restore", path_str(&absurd)]);
    run.assert_code(exit::TAMPERED, "oom_score_adj 2000");
    assert!(
        run.stderr.contains("tasks[0].oom_score_adj"),
        "the refusal names the field\n{run}"
    );

    let image = dir.work.join("ps-minus.ckpt");
    write_owned(
        &image,
        &with_process_field(&bytes, "oom_score_adj", Value::Integer((-500).into())),
        &env.user,
    );
    let inherited: i32 = fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        inherited > -500,
        "the test must run with oom_score_adj above -500 (it has {inherited})"
    );
    let (run, mut restored) = env.restore_ok(&dir, &image, None);
    assert!(
        run.stderr.contains("oom_score_adj -500 not restored"),
        "restore must name the oom_score_adj it could not set\n{run}"
    );
    let pid = restored.pid;
    let now = fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
    assert_eq!(
        now.trim(),
        inherited.to_string(),
        "the value inherited from the restorer stays"
    );
    let result = ask(&mut restored, &sdir, &log);
    assert_eq!(
        result,
        format!("FAIL: oom_score_adj {inherited}, expected 500\n"),
        "only oom_score_adj may differ"
    );
}

/// Starts the `sigstate` workload (with `extra` arguments) and waits for
/// it to be ready.
fn start_sigstate(env: &Env, dir: &TestDir, extra: &[&str]) -> (Proc, PathBuf, PathBuf) {
    let program = dir.compile(env, "sigstate");
    let sdir = dir.work.join("ss");
    fs::create_dir(&sdir).unwrap();
    std::os::unix::fs::chown(&sdir, Some(env.user.uid), Some(env.user.gid)).unwrap();
    let log = dir.work.join("sigstate.log");
    let mut args = vec![path_str(&sdir)];
    args.extend_from_slice(extra);
    let mut proc = Proc::spawn(env, Who::User(&env.user), &program, &args, &sdir, &[], &log);
    wait_until(WAIT, "the sigstate workload has written ready", || {
        fs::read_to_string(sdir.join("ready")).is_ok_and(|s| s == "ready\n") || !proc.is_alive()
    });
    assert!(
        proc.is_alive(),
        "sigstate could not set its state up; log:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    (proc, sdir, log)
}

/// Dumps the `sigstate` workload, restores it, and returns its own check.
fn sigstate_round_trip(name: &str, extra: &[&str]) -> String {
    let env = Env::require();
    let dir = TestDir::new(&env, name);
    let (mut orig, sdir, log) = start_sigstate(&env, &dir, extra);
    let image = dir.work.join("ss.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    signal(restored.pid, Signal::SIGUSR1);
    workload_result(&mut restored, &sdir.join("result"), &log, "sigstate")
}

/// What the dump asks of the task itself (62 signal dispositions, each
/// with its own handler, flags and mask; resource limits; an interval
/// timer), asked in batches from a trampoline, comes back signal for
/// signal.
#[test]
fn signal_dispositions_limits_and_timers_survive_restore() {
    let result = sigstate_round_trip("sigstate", &[]);
    assert_eq!(result, "OK\n", "sigstate after restore reported: {result}");
}

/// A process that may not map writable and executable memory
/// (`PR_SET_MDWE`) is asked the same through a plain scratch page, one
/// syscall at a time, with the same result. (The flag itself is not part
/// of the image: the restored process does not have it.)
#[test]
fn a_process_refusing_write_execute_memory_is_asked_without_a_trampoline() {
    let result = sigstate_round_trip("sigstate-mdwe", &["mdwe"]);
    assert_eq!(result, "OK\n", "sigstate after restore reported: {result}");
}
