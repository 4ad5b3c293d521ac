//! Dump modes: --unsigned and --leave-running.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use ckpt_tests::{exit, path_str, Counter, Env, TestDir, Who};
use serde_json::Value;

#[test]
fn unsigned_image_verifies_as_unsigned_and_restores_with_a_notice() {
    let env = Env::require();
    let dir = TestDir::new(&env, "unsigned");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let p1 = c.proc.pid;
    let image = dir.work.join("u.ckpt");
    env.dump_ok(&dir, p1, &image, &["--unsigned"]);
    c.proc.wait_gone("dump kills the target");

    let (run, json) = env.verify_json(&dir, &image);
    run.assert_code(exit::UNSIGNED, "verify of an unsigned image");
    assert_eq!(json["integrity"], "ok", "{run}");
    assert_eq!(json["signed"], false, "{run}");
    assert_eq!(json["key_id"], Value::Null, "{run}");
    assert_eq!(json["trusted"], false, "{run}");
    env.verify(&dir, &["verify", path_str(&image)])
        .assert_code(exit::UNSIGNED, "verify (text) of an unsigned image");

    let n = c.lines().last().unwrap().0;
    let (run, p2) = env.restore_ok(&dir, &image, None);
    assert!(
        run.stderr.to_lowercase().contains("unsigned"),
        "restore of an unsigned image must say so on stderr\n{run}"
    );
    c.wait_for(p2.pid, n + 10);
    c.assert_continuous(&[p1, p2.pid]);
}

#[test]
fn leave_running_keeps_the_target_and_the_image_restores_as_a_second_process() {
    let env = Env::require();
    let dir = TestDir::new(&env, "leave-running");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let p1 = c.proc.pid;
    let image = dir.work.join("lr.ckpt");
    let before = c.lines().last().unwrap().0;
    env.dump_ok(&dir, p1, &image, &["--leave-running"]);
    let after = c.lines().last().unwrap().0;
    c.proc.assert_untouched("dump --leave-running");
    c.wait_for(p1, after + 20);

    let (_run, mut p2) = env.restore_ok(&dir, &image, None);
    let now = c.lines().last().unwrap().0;
    c.wait_for(p2.pid, before + 20);
    c.wait_for(p1, now + 20);
    assert!(c.proc.is_alive() && p2.is_alive(), "both processes run");

    // Each process's own sequence is unbroken; the restored one starts
    // right after the count the original had reached during the dump.
    let lines = c.lines();
    let seq = |pid: i32| {
        lines
            .iter()
            .filter(|l| l.1 == pid)
            .map(|l| l.0)
            .collect::<Vec<u64>>()
    };
    let (s1, s2) = (seq(p1), seq(p2.pid));
    assert!(
        s1.windows(2).all(|w| w[1] == w[0] + 1),
        "original's count is unbroken: {s1:?}"
    );
    assert!(
        s2.windows(2).all(|w| w[1] == w[0] + 1),
        "restored count is unbroken: {s2:?}"
    );
    assert_eq!(s1.first(), Some(&1));
    let start = s2[0];
    assert!(
        start > before && start <= after + 1,
        "restored counter starts at {start}; at the dump the original was between {before} and {after}"
    );
}
