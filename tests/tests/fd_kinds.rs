//! eventfd, signalfd and timerfd: the fd_kinds workload holds each kind
//! (values, semaphore mode, signal mask, clocks, time left, period, unread
//! expirations, flags), is dumped and restored through the installed
//! helpers as an unprivileged user, and checks them itself.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use ckpt_tests::policy::{toml_str, PolicyGuard};
use ckpt_tests::syslog::Syslog;
use ckpt_tests::{
    exit, path_str, signal, user_dir, wait_until, workload_result, Env, Proc, TestDir, Who, WAIT,
};
use nix::sys::signal::Signal;

fn start(env: &Env, dir: &TestDir) -> (Proc, PathBuf) {
    let program = dir.compile(env, "fd_kinds");
    let wdir = user_dir(env, dir, "fdk");
    let proc = Proc::spawn(
        env,
        Who::User(&env.user),
        &program,
        &[path_str(&wdir)],
        &wdir,
        &[],
        &dir.work.join("fd_kinds.log"),
    );
    let ready = wdir.join("ready");
    wait_until(WAIT, "fd_kinds has written ready", || {
        fs::read_to_string(&ready).is_ok_and(|s| s == "ready\n")
    });
    (proc, wdir)
}

/// Queues SIGUSR1 for its signalfd, lets it check itself, and returns what
/// it wrote to its result file.
fn ask(proc: &mut Proc, wdir: &Path, log: &Path) -> String {
    signal(proc.pid, Signal::SIGUSR1);
    fs::write(wdir.join("go"), b"go\n").unwrap();
    workload_result(proc, &wdir.join("result"), log, "fd_kinds")
}

#[test]
fn eventfd_signalfd_timerfd_survive_dump_and_restore() {
    let env = Env::require();
    let dir = TestDir::new(&env, "fd-kinds");
    let (mut orig, wdir) = start(&env, &dir);
    let image = dir.work.join("fdk.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");

    // inspect shows each kind with its saved state.
    let run = env.verify(&dir, &["inspect", path_str(&image)]);
    run.assert_code(exit::OK, "inspect");
    for want in [
        "eventfd anon_inode:[eventfd] (flags 0o4002, offset 0, count 5, close-on-exec)",
        "eventfd anon_inode:[eventfd] (flags 0o2, offset 0, count 3, semaphore)",
        "signalfd anon_inode:[signalfd] (flags 0o4002, offset 0, sigmask 0x0000000400000200)",
        "timerfd anon_inode:[timerfd] (flags 0o4002, offset 0, clock 1, next in 0.000000000 s, \
         every 0.200000000 s, 1 unread)",
        "timerfd anon_inode:[timerfd] (flags 0o2, offset 0, clock 1, next in 99",
        "timerfd anon_inode:[timerfd] (flags 0o2, offset 0, clock 7, next in 0.000000000 s, \
         every 0.000000000 s, 1 unread)",
    ] {
        assert!(
            run.stdout.contains(want),
            "inspect does not show {want:?}\n{run}"
        );
    }

    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let result = ask(&mut restored, &wdir, &dir.work.join("fd_kinds.log"));
    assert_eq!(result, "OK\n", "fd_kinds after restore reported: {result}");
}

#[test]
fn fd_kinds_left_running_checks_itself_too() {
    let env = Env::require();
    let dir = TestDir::new(&env, "fd-kinds-lr");
    let (mut orig, wdir) = start(&env, &dir);
    let image = dir.work.join("fdk.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &["--leave-running"]);
    orig.assert_untouched("--leave-running");
    // Dumping read nothing from the fds: the original still sees its state.
    let log = dir.work.join("fd_kinds.log");
    let result = ask(&mut orig, &wdir, &log);
    assert_eq!(result, "OK\n", "fd_kinds left running reported: {result}");
    fs::remove_file(wdir.join("go")).unwrap();
    fs::remove_file(wdir.join("result")).unwrap();

    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let result = ask(&mut restored, &wdir, &log);
    assert_eq!(
        result, "OK\n",
        "fd_kinds restored from a --leave-running image reported: {result}"
    );
}

/// Through a restore built as root (an `exe-link` grant): the stub creates
/// the eventfds, the signalfd and the timerfds itself, with the
/// credentials the decision gave, and the workload finds them intact.
#[test]
fn a_privileged_restore_recreates_them_too() {
    let env = Env::require();
    let syslog = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    guard.policy(&format!(
        "[[rule]]\n\
         name = \"e2e-fd-kinds\"\n\
         signed_by = [\"this-host\"]\n\
         caller = [{}]\n\
         grant = [\"exe-link\"]\n",
        toml_str(&format!("user:{}", env.user.name))
    ));
    let dir = TestDir::new(&env, "fd-kinds-root");
    let (mut orig, wdir) = start(&env, &dir);
    let image = dir.work.join("fdk.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");

    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let pid_s = restored.pid.to_string();
    syslog.wait_for("the audit record of the granted restore", |r| {
        r.program == "ckpt-verify"
            && r.get("event") == Some("restore")
            && r.get("pid") == Some(pid_s.as_str())
            && r.get("grants") == Some("exe-link:e2e-fd-kinds")
    });
    let result = ask(&mut restored, &wdir, &dir.work.join("fd_kinds.log"));
    assert_eq!(
        result, "OK\n",
        "fd_kinds after a privileged restore reported: {result}"
    );
    drop(guard);
}
