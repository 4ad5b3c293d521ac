//! Resources the engine cannot restore yet (pipes, sockets,
//! children) make dump refuse, naming the resource, and leave the target
//! running and untouched, with no image.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;

use ckpt_tests::{path_str, wait_until, Env, Proc, TestDir, Who, WAIT};

fn refused(mode: &str, words: &[&str]) {
    let env = Env::require();
    let dir = TestDir::new(&env, &format!("unsupported-{mode}"));
    let program = dir.compile(&env, "unsupported");
    let ready = dir.work.join("ready");
    let mut p = Proc::spawn(
        &env,
        Who::User(&env.user),
        &program,
        &[mode, path_str(&ready)],
        &dir.work,
        &[],
        &dir.work.join("unsupported.log"),
    );
    wait_until(WAIT, "the workload is ready", || {
        fs::read_to_string(&ready).is_ok_and(|s| s.starts_with("ready\n"))
    });
    if let Some(child) = fs::read_to_string(&ready).unwrap().lines().nth(1) {
        p.kill_also(child.parse().unwrap());
    }
    let image = dir.work.join("u.ckpt");
    let run = env.sign(
        &dir,
        &["dump", "--pid", &p.pid.to_string(), "-o", path_str(&image)],
    );
    run.assert_refused(&format!("dump of a process holding a {mode}"));
    run.assert_code(
        ckpt_tests::exit::DUMP_FAILED,
        &format!("dump of a process holding a {mode} (SECURITY.md §6)"),
    );
    let msg = run.stderr.to_lowercase();
    assert!(
        words.iter().any(|w| msg.contains(w)),
        "the refusal must name the resource (one of {words:?})\n{run}"
    );
    assert!(!image.exists(), "refused dump left an image");
    p.assert_untouched(&format!("after a dump refused for a {mode}"));
}

#[test]
fn dump_refuses_a_pipe() {
    refused("pipe", &["pipe"]);
}

#[test]
fn dump_refuses_a_tcp_socket() {
    refused("socket", &["socket", "tcp"]);
}

#[test]
fn dump_refuses_a_unix_socket() {
    refused("unix", &["socket", "unix"]);
}

#[test]
fn dump_refuses_a_child_process() {
    refused("child", &["child"]);
}
