//! More process state through dump → restore, as the test user with the
//! installed helpers, each group checked by the `procmisc` workload itself
//! after restore: POSIX timers (every clock and notification kind, their
//! ids, the time left and the period), the seccomp filter chain (still
//! enforced), personality, scheduling policy and nice value, and the
//! mapping flags VM_MAYWRITE and MAP_NORESERVE, and a removed working
//! directory.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use ckpt_tests::{
    exit, path_str, signal, wait_until, workload_result, Env, Proc, TestDir, Who, WAIT,
};
use nix::sys::signal::Signal;

/// Starts `procmisc DIR MODE` as the test user and waits until it is ready.
fn start(env: &Env, dir: &TestDir, mode: &str) -> (Proc, PathBuf, PathBuf) {
    let program = dir.compile(env, "procmisc");
    let sdir = dir.work.join("pm");
    fs::create_dir(&sdir).unwrap();
    std::os::unix::fs::chown(&sdir, Some(env.user.uid), Some(env.user.gid)).unwrap();
    let log = dir.work.join("procmisc.log");
    let mut proc = Proc::spawn(
        env,
        Who::User(&env.user),
        &program,
        &[path_str(&sdir), mode],
        &sdir,
        &[],
        &log,
    );
    let ready = sdir.join("ready");
    wait_until(WAIT, "the procmisc workload has written ready", || {
        fs::read_to_string(&ready).is_ok_and(|s| s == "ready\n") || !proc.is_alive()
    });
    assert!(
        proc.is_alive(),
        "procmisc {mode} could not set its state up; log:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    (proc, sdir, log)
}

/// Sends SIGUSR1 and returns what the workload wrote to its result file.
fn ask(proc: &mut Proc, sdir: &Path, log: &Path) -> String {
    signal(proc.pid, Signal::SIGUSR1);
    workload_result(proc, &sdir.join("result"), log, "procmisc")
}

/// The workload's checks pass on a process nobody dumped (so a pass after
/// restore means the state came back, not that the checks are blind).
fn passes_untouched(mode: &str) {
    let env = Env::require();
    let dir = TestDir::new(&env, &format!("procmisc-{mode}-orig"));
    let (mut proc, sdir, log) = start(&env, &dir, mode);
    let result = ask(&mut proc, &sdir, &log);
    assert_eq!(result, "OK\n", "procmisc {mode} before any dump: {result}");
}

/// Dump (the target is killed), restore, and let the workload check
/// itself; returns the restore's run for its notices.
fn round_trip(mode: &str) -> ckpt_tests::Run {
    let env = Env::require();
    let dir = TestDir::new(&env, &format!("procmisc-{mode}"));
    let (mut orig, sdir, log) = start(&env, &dir, mode);
    let image = dir.work.join("pm.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    let (run, mut restored) = env.restore_ok(&dir, &image, None);
    let result = ask(&mut restored, &sdir, &log);
    assert_eq!(
        result, "OK\n",
        "procmisc {mode} after restore: {result}\n{run}"
    );
    run
}

#[test]
fn posix_timer_checks_pass_on_the_untouched_process() {
    passes_untouched("timers");
}

#[test]
fn posix_timers_keep_ids_clocks_notification_and_time_left() {
    let env = Env::require();
    let dir = TestDir::new(&env, "procmisc-timers-inspect");
    let (mut orig, _sdir, _log) = start(&env, &dir, "timers");
    let image = dir.work.join("t.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &["--leave-running"]);
    orig.assert_untouched("dump --leave-running resumes the target");
    // inspect shows the timers as recorded: seven, with gaps in the ids.
    let run = env.verify(&dir, &["inspect", path_str(&image), "--json"]);
    run.assert_code(exit::OK, "inspect --json");
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let timers = json["process"]["posix_timers"]
        .as_array()
        .unwrap_or_else(|| panic!("inspect shows posix_timers: {json}"));
    assert_eq!(timers.len(), 8, "{timers:?}");
    let overrun: Vec<&serde_json::Value> = timers
        .iter()
        .filter(|t| t["overrun"].as_i64().unwrap() >= 5)
        .collect();
    assert_eq!(overrun.len(), 1, "one timer has an overrun: {timers:?}");
    let overrun_id = overrun[0]["id"].as_i64().unwrap();
    let ids: Vec<i64> = timers.iter().map(|t| t["id"].as_i64().unwrap()).collect();
    assert!(
        ids.windows(2).any(|w| w[1] > w[0] + 1),
        "the fillers left gaps in the ids: {ids:?}"
    );
    drop(orig);

    let run = round_trip("timers");
    // The overrun count is the one thing not restored, and restore says so
    // (the ids are allocated the same way in every run).
    assert!(
        run.stderr
            .contains(&format!("POSIX timer {overrun_id}: overrun count ")),
        "restore names the overrun it cannot set\n{run}"
    );
    assert_eq!(
        run.stderr.matches("POSIX timer").count(),
        1,
        "every other timer is restored exactly (no other notice)\n{run}"
    );
}

#[test]
fn seccomp_checks_pass_on_the_untouched_process() {
    passes_untouched("seccomp");
}

/// The filter chain is restored, never dropped: the restored process still
/// gets EPERM for the denied syscall and is killed for the other.
#[test]
fn seccomp_filters_survive_restore() {
    let run = round_trip("seccomp");
    assert!(
        !run.stderr.contains("no_new_privs set"),
        "the process had no_new_privs itself\n{run}"
    );
}

#[test]
fn sched_checks_pass_on_the_untouched_process() {
    passes_untouched("sched");
}

/// Personality, SCHED_BATCH, nice 7 and reset-on-fork are within the
/// user's rights: restored without a notice.
#[test]
fn personality_policy_and_nice_survive_restore() {
    let run = round_trip("sched");
    assert!(
        !run.stderr.contains("scheduling policy"),
        "lowering the priority needs no privilege\n{run}"
    );
}

#[test]
fn maps_checks_pass_on_the_untouched_process() {
    passes_untouched("maps");
}

/// A shared file mapping opened read-write keeps VM_MAYWRITE (it can be
/// made writable and writes reach the file), and MAP_NORESERVE is kept.
#[test]
fn shared_mapping_keeps_maywrite_and_noreserve_is_kept() {
    let run = round_trip("maps");
    assert!(
        !run.stderr.contains("mapped shared read-only"),
        "the user may open its own file for writing\n{run}"
    );
}

/// The image as the dump wrote it, with `process.sched.nice` set to
/// `nice` (an unsigned image: its manifest can be rewritten, as a caller
/// could).
fn with_sched_nice(image: &[u8], nice: i64) -> Vec<u8> {
    use ciborium::Value;
    use ckpt_tests::image::{with_manifest, Layout};
    let l = Layout::parse(image).unwrap();
    let mut m: Value =
        ciborium::de::from_reader(&image[l.manifest.start as usize..l.manifest.end as usize])
            .unwrap();
    fn get<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
        let Value::Map(entries) = v else {
            panic!("not a map where {key} should be")
        };
        entries
            .iter_mut()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no {key} in the manifest"))
    }
    let Value::Array(tasks) = get(&mut m, "tasks") else {
        panic!("no tasks in the manifest")
    };
    let n = get(get(&mut tasks[0], "sched"), "nice");
    *n = Value::Integer(nice.into());
    let mut out = Vec::new();
    ciborium::ser::into_writer(&m, &mut out).unwrap();
    with_manifest(image, &out).unwrap()
}

/// A priority the restoring user may not set (nice -5: raising the
/// priority needs CAP_SYS_NICE or RLIMIT_NICE) is a notice naming it, not
/// a failed restore; the process keeps the restorer's scheduling.
#[test]
fn a_priority_the_caller_may_not_set_is_a_notice() {
    let env = Env::require();
    let dir = TestDir::new(&env, "procmisc-sched-deny");
    let (mut orig, sdir, log) = start(&env, &dir, "sched");
    let unsigned = dir.work.join("s-unsigned.ckpt");
    env.dump_ok(&dir, orig.pid, &unsigned, &["--unsigned"]);
    orig.wait_gone("dump kills the target");
    let image = dir.work.join("s-minus5.ckpt");
    ckpt_tests::write_owned(
        &image,
        &with_sched_nice(&fs::read(&unsigned).unwrap(), -5),
        &env.user,
    );
    let (run, mut restored) = env.restore_ok(&dir, &image, None);
    assert!(
        run.stderr
            .contains("scheduling policy 3 priority 0 nice -5 (reset on fork) not restored"),
        "restore must name the scheduling it could not set\n{run}"
    );
    let result = ask(&mut restored, &sdir, &log);
    assert!(
        result.starts_with("FAIL: policy 0, expected SCHED_BATCH; nice 0, expected 7"),
        "the restorer's scheduling stays, the rest is restored: {result}"
    );
    assert!(
        !result.contains("personality"),
        "the personality is restored: {result}"
    );
}

/// Through a restore built as root (an `exe-link` grant): timers, the
/// seccomp chain, scheduling and the mapping flags come back the same way
/// (timers, scheduling and the chain are set by the stub after it dropped
/// to its final credentials). A removed working directory is refused
/// there (no directory is made by a stub built as root).
#[test]
fn a_privileged_restore_restores_them_too() {
    use ckpt_tests::policy::PolicyGuard;
    use ckpt_tests::syslog::Syslog;
    let env = Env::require();
    let syslog = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    guard.grant_exe_link("e2e-procmisc", &env.user.name);
    for mode in ["timers", "seccomp", "sched", "maps"] {
        let dir = TestDir::new(&env, &format!("procmisc-{mode}-root"));
        let (mut orig, sdir, log) = start(&env, &dir, mode);
        let image = dir.work.join("pm.ckpt");
        env.dump_ok(&dir, orig.pid, &image, &[]);
        orig.wait_gone("dump kills the target");
        let (run, mut restored) = env.restore_ok(&dir, &image, None);
        let pid_s = restored.pid.to_string();
        syslog.wait_for("the audit record of the granted restore", |r| {
            r.program == "ckpt-verify"
                && r.get("event") == Some("restore")
                && r.get("pid") == Some(pid_s.as_str())
                && r.get("grants") == Some("exe-link:e2e-procmisc")
        });
        let result = ask(&mut restored, &sdir, &log);
        assert_eq!(
            result, "OK\n",
            "procmisc {mode} after a privileged restore: {result}\n{run}"
        );
    }
    // A removed working directory is not made by a stub built as root.
    let dir = TestDir::new(&env, "procmisc-cwd-root");
    let (mut orig, _sdir, _log) = start(&env, &dir, "cwd");
    let image = dir.work.join("pm.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    let (run, _) = env.restore(&dir, &image, None);
    run.assert_code(
        exit::RESTORE_FAILED,
        "a removed cwd in a restore built as root",
    );
    assert!(
        run.stderr.contains("a removed working directory"),
        "refused, naming it\n{run}"
    );
    drop(guard);
}

#[test]
fn removed_cwd_checks_pass_on_the_untouched_process() {
    passes_untouched("cwd");
}

/// A working directory removed before the dump is made, entered and
/// removed again by the restore: the process works in a removed directory
/// of the same name under the same parent.
#[test]
fn a_removed_working_directory_is_restored_removed() {
    // The default policy (no grant): a plain restore, the only kind that
    // recreates a removed directory.
    let _plain = ckpt_tests::policy::PolicyGuard::lock(&Env::require());
    let run = round_trip("cwd");
    assert!(
        !run.stderr.contains("working directory"),
        "the name was free: no notice\n{run}"
    );
}

/// When the removed directory's name is taken again at restore, a sibling
/// is made (and removed) instead, with a notice naming both.
#[test]
fn a_removed_working_directory_whose_name_is_taken_gets_a_sibling() {
    let env = Env::require();
    let _plain = ckpt_tests::policy::PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "procmisc-cwd-taken");
    let (mut orig, sdir, log) = start(&env, &dir, "cwd");
    let image = dir.work.join("pm.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    let gone = sdir.join("gone");
    fs::create_dir(&gone).unwrap();
    let (run, mut restored) = env.restore_ok(&dir, &image, None);
    assert!(
        run.stderr.contains(&format!(
            "the working directory {} had been removed; gone exists now",
            gone.display()
        )),
        "restore names the directory it used instead\n{run}"
    );
    assert!(
        gone.is_dir(),
        "the directory that took the name is left alone"
    );
    let result = ask(&mut restored, &sdir, &log);
    assert_eq!(
        result, "OK\n",
        "procmisc cwd after restore: {result}\n{run}"
    );
}
