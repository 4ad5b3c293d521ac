//! The `same-pid` grant.
//!
//! The test user's counter, dumped by the user (host key):
//! * granted and free (the dump killed the original, so its pid is free):
//!   the restored process has the original pid and counts on;
//! * granted and taken (`--leave-running`: the original still holds it):
//!   exit 7 naming the pid, nothing created, the original untouched;
//! * not granted (no rule, or a rule for another caller): a new pid and a
//!   notice saying why.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;

use ckpt_tests::policy::{
    assert_denied, assert_granted, assert_record, explain, wait_new, PolicyGuard, RESTORE_FIELDS,
};
use ckpt_tests::syslog::Syslog;
use ckpt_tests::{exit, path_str, processes_mentioning, Counter, Env, Proc, Run, TestDir, Who};

fn rule(caller_uid: u32) -> String {
    format!(
        "[[rule]]\nname = \"e2e-same-pid\"\nsigned_by = [\"this-host\"]\n\
         caller = [\"uid:{caller_uid}\"]\ntarget = {{ uid = [{caller_uid}] }}\n\
         grant = [\"same-pid\"]\n"
    )
}

/// A counter of the user dumped by the user into `work/NAME.ckpt`.
fn dumped(env: &Env, dir: &TestDir, name: &str, extra: &[&str]) -> (Counter, PathBuf, String) {
    let c = Counter::start(env, dir, Who::User(&env.user), &dir.work, name);
    let image = dir.work.join(format!("{name}.ckpt"));
    env.dump_ok(dir, c.proc.pid, &image, extra);
    let (_run, v) = env.verify_json(dir, &image);
    let id = v["image_id"].as_str().expect("image id").to_string();
    (c, image, id)
}

fn adopt(run: &Run) -> Proc {
    let pid: i32 = run
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("restore prints the pid\n{run}"));
    Proc::adopt(pid, "restored counter")
        .unwrap_or_else(|| panic!("restored pid {pid} does not run\n{run}"))
}

#[test]
fn same_pid_granted_and_free_restores_the_original_pid() {
    let env = Env::require();
    let log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "same-pid-free");
    guard.policy(&rule(env.user.uid));
    let (mut c, image, id) = dumped(&env, &dir, "c", &[]);
    let p1 = c.proc.pid;
    c.proc.wait_gone("the dump kills the target");
    let n = c.lines().last().unwrap().0;

    let (run, v) = explain(&env, &dir, Who::User(&env.user), &image);
    assert_granted(&v, &run, "same-pid", "e2e-same-pid");
    assert_eq!(v["restore"]["same_pid"], true, "{run}");
    assert_eq!(
        v["restore"]["privileged"], false,
        "same-pid alone gives nothing more than the caller's ids\n{run}"
    );
    assert_eq!(v["decision"], "restore-with-grants", "{run}");

    let before = log.raw().len();
    let run = env.verify(&dir, &["restore", path_str(&image)]);
    run.assert_code(exit::OK, "restore with same-pid granted, pid free");
    let mut p = adopt(&run);
    assert_eq!(p.pid, p1, "the original pid is back\n{run}");
    assert!(
        !run.stderr.contains("new pid") && !run.stderr.contains("same-pid not granted"),
        "no new-pid notice\n{run}"
    );
    c.wait_for(p1, n + 10);
    let counts = c.assert_continuous(&[p1]);
    assert!(counts[0] >= n + 10);
    p.assert_untouched("restored with its pid");
    let rec = wait_new(log, before, "the same-pid restore", |r| {
        r.program == "ckpt-verify" && r.get("image_id") == Some(id.as_str())
    });
    let pid_s = p1.to_string();
    assert_record(
        &rec,
        &RESTORE_FIELDS,
        &[
            ("caller_uid", &env.user.uid.to_string()),
            ("signer_name", "this-host"),
            ("trusted", "yes"),
            ("grants", "same-pid:e2e-same-pid"),
            (
                "denied",
                "credentials,capabilities,exe-link,privileged-files",
            ),
            ("outcome", "ok"),
            ("pid", &pid_s),
            ("reason", "-"),
        ],
    );
}

#[test]
fn same_pid_granted_but_taken_fails_naming_the_pid() {
    let env = Env::require();
    let log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "same-pid-taken");
    guard.policy(&rule(env.user.uid));
    let (mut c, image, id) = dumped(&env, &dir, "c", &["--leave-running"]);
    let p1 = c.proc.pid;
    c.proc
        .assert_untouched("--leave-running: the original holds its pid");

    let (run, v) = explain(&env, &dir, Who::User(&env.user), &image);
    assert_granted(&v, &run, "same-pid", "e2e-same-pid");

    let before = log.raw().len();
    let run = env.verify(&dir, &["restore", path_str(&image)]);
    run.assert_code(
        exit::RESTORE_FAILED,
        "restore with same-pid granted, pid taken",
    );
    assert!(
        run.stderr.contains(&format!("pid {p1} is in use")),
        "the error names the pid\n{run}"
    );
    assert!(run.stdout.trim().is_empty(), "{run}");
    c.proc.assert_untouched("the holder of the pid");
    assert_eq!(
        processes_mentioning(path_str(&c.file)),
        vec![p1],
        "nothing but the original runs\n{run}"
    );
    let rec = wait_new(log, before, "the failed same-pid restore", |r| {
        r.program == "ckpt-verify" && r.get("image_id") == Some(id.as_str())
    });
    assert_eq!(rec.priority, 84, "{}", rec.raw);
    assert_record(
        &rec,
        &RESTORE_FIELDS,
        &[
            ("grants", "same-pid:e2e-same-pid"),
            ("outcome", "failed"),
            ("pid", "-"),
        ],
    );
    assert!(
        rec.get("reason")
            .unwrap()
            .contains(&format!("pid {p1} is in use")),
        "{}",
        rec.raw
    );
}

#[test]
fn same_pid_not_granted_gives_a_new_pid_and_a_notice() {
    let env = Env::require();
    let _log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "same-pid-denied");
    let (mut c, image, _id) = dumped(&env, &dir, "c", &[]);
    let p1 = c.proc.pid;
    c.proc.wait_gone("the dump kills the target");

    // No rule at all, then a rule for another caller.
    for (what, policy) in [
        ("no rule", None),
        ("a rule for another caller", Some(rule(env.other.uid))),
    ] {
        match &policy {
            Some(text) => {
                guard.policy(text);
            }
            None => guard.clear(),
        }
        let (run, v) = explain(&env, &dir, Who::User(&env.user), &image);
        assert_eq!(v["restore"]["same_pid"], false, "{what}\n{run}");
        let why = match policy {
            None => {
                assert_denied(&v, &run, "same-pid", "no-rule", None, &[]);
                "no rule grants same-pid".to_string()
            }
            Some(_) => {
                assert_denied(
                    &v,
                    &run,
                    "same-pid",
                    "caller",
                    Some("e2e-same-pid"),
                    &[&format!("uid:{}", env.other.uid)],
                );
                "rule \"e2e-same-pid\": caller:".to_string()
            }
        };
        let n = c
            .lines()
            .iter()
            .filter(|l| l.1 == p1)
            .map(|l| l.0)
            .max()
            .expect("the original counted");
        let run = env.verify(&dir, &["restore", path_str(&image)]);
        run.assert_code(exit::OK, &format!("restore, {what}"));
        let p = adopt(&run);
        assert_ne!(p.pid, p1, "{what}: a new pid\n{run}");
        assert!(
            run.stderr
                .contains(&format!("new pid {} (it was {p1})", p.pid)),
            "{what}: the notice names both pids\n{run}"
        );
        assert!(
            run.stderr.contains(&format!("same-pid not granted: {why}")),
            "{what}: the notice says why\n{run}"
        );
        c.wait_for(p.pid, n + 5);
        drop(p);
    }
}
