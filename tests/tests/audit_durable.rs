//! The audit record of a decision is in the log before its effect: a
//! granted restore before the restored process runs, a host-signed dump
//! before the image has its final name.
//!
//! The attack: the caller puts stdout and stderr on a full pipe, so the
//! helper blocks the first time it prints, and `SIGKILL`s it (as the
//! caller) once the effect is there. Whenever the effect exists afterwards,
//! its audit record must exist too.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use ckpt_tests::lifecycle::{full_pipe, kill_as, Running};
use ckpt_tests::policy::PolicyGuard;
use ckpt_tests::syslog::Syslog;
use ckpt_tests::{path_str, Counter, Env, Proc, TestDir, Who};
use nix::sys::signal::Signal;

/// Sends `SIGKILL` as the caller every 20 ms until the helper is gone;
/// panics when it is not gone after `limit`.
fn kill_until_gone(env: &Env, h: &mut Running, limit: Duration) {
    let start = Instant::now();
    loop {
        if h.child.try_wait().expect("wait").is_some() {
            return;
        }
        kill_as(env, Who::User(&env.user), h.pid, Signal::SIGKILL);
        if start.elapsed() > limit {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(h.pid), Signal::SIGKILL);
            let _ = h.child.wait();
            panic!(
                "the helper (pid {}) could not be ended within {limit:?}",
                h.pid
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn granted_restore_on_a_full_pipe_is_audited_before_the_process_runs() {
    let env = Env::require();
    let log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "audit-full-restore");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let image = dir.work.join("c.ckpt");
    env.dump_ok(&dir, c.proc.pid, &image, &[]);
    c.proc.wait_gone("dump kills the target");
    guard.policy(&format!(
        "[[rule]]\nname = \"e2e-durable\"\nsigned_by = [\"this-host\"]\n\
         caller = [\"uid:{}\"]\ngrant = [\"exe-link\"]\n",
        env.user.uid
    ));

    let (read_end, write_end) = full_pipe();
    let mut h = Running::start_on(
        &env,
        Who::User(&env.user),
        &env.verify_path(),
        &["restore", path_str(&image)],
        &dir.work,
        &write_end,
    );
    drop(write_end);
    // Wait for the effect: a restored process counting in the file.
    let original = c.proc.pid;
    let start = Instant::now();
    let pid = loop {
        if let Some(&(_, p)) = c.lines().iter().find(|l| l.1 != original) {
            break p;
        }
        assert!(
            h.child.try_wait().expect("wait").is_none(),
            "the granted restore on a full pipe ended before any process ran"
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no restored process within 30 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let proc = Proc::adopt(pid, "restored counter").expect("the restored process runs");
    // The caller kills the helper, which blocks on its full pipe.
    kill_until_gone(&env, &mut h, Duration::from_secs(20));
    drop(read_end);

    // The effect is there: the granted process runs (and counts) ...
    let before = c
        .lines()
        .iter()
        .filter(|l| l.1 == pid)
        .map(|l| l.0)
        .max()
        .unwrap_or(0);
    c.wait_for(pid, before + 1);
    // ... and so is its audit record, with its grant and its pid.
    let ps = pid.to_string();
    let rec = log.wait_for(&format!("the audit record of restored pid {pid}"), |r| {
        r.program == "ckpt-verify"
            && r.get("event") == Some("restore")
            && r.get("pid") == Some(ps.as_str())
    });
    assert_eq!(rec.get("outcome"), Some("ok"), "{}", rec.raw);
    assert_eq!(
        rec.get("grants"),
        Some("exe-link:e2e-durable"),
        "{}",
        rec.raw
    );
    drop(proc);
}

#[test]
fn host_signed_dump_on_a_full_pipe_is_audited_before_the_image_is_in_place() {
    let env = Env::require();
    let log = Syslog::start();
    let dir = TestDir::new(&env, "audit-full-dump");
    let c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let pid = c.proc.pid.to_string();
    let image = dir.work.join("c.ckpt");

    let (read_end, write_end) = full_pipe();
    let mut h = Running::start_on(
        &env,
        Who::User(&env.user),
        &env.sign_path(),
        &[
            "dump",
            "--pid",
            &pid,
            "-o",
            path_str(&image),
            "--leave-running",
        ],
        &dir.work,
        &write_end,
    );
    drop(write_end);
    // Wait for the effect: the image under its final name.
    let start = Instant::now();
    while !image.exists() {
        assert!(
            h.child.try_wait().expect("wait").is_none() || image.exists(),
            "the dump on a full pipe ended without an image"
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no image within 30 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    kill_until_gone(&env, &mut h, Duration::from_secs(20));
    drop(read_end);

    // The image is there and verifies; its dump record is in the log.
    let (run, json) = env.verify_json(&dir, &image);
    run.assert_code(ckpt_tests::exit::OK, "the image in place verifies");
    let image_id = json["image_id"].as_str().expect("image_id").to_string();
    let rec = log.wait_for(&format!("the dump record of image {image_id}"), |r| {
        r.program == "ckpt-sign"
            && r.get("event") == Some("dump")
            && r.get("image_id") == Some(image_id.as_str())
    });
    assert_eq!(rec.get("outcome"), Some("ok"), "{}", rec.raw);
    assert_eq!(rec.get("pid"), Some(pid.as_str()), "{}", rec.raw);
    assert_eq!(rec.get("signer_name"), Some("host-key"), "{}", rec.raw);
}
