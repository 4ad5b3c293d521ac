//! memfds and files unlinked while open: the memfd workload holds a sealed
//! memfd (mapped shared read-only), a memfd mapped shared and private, and
//! an unlinked file; it is dumped and restored through the installed
//! helpers as an unprivileged user, and checks itself: names, content,
//! offsets, seals still enforced, the shared mapping and the fd one object,
//! the private mapping's own page, the unlinked file's mode.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use ckpt_tests::policy::PolicyGuard;
use ckpt_tests::syslog::Syslog;
use ckpt_tests::{exit, path_str, wait_until, workload_result, Env, Proc, TestDir, Who, WAIT};

fn start(env: &Env, dir: &TestDir) -> (Proc, PathBuf) {
    let program = dir.compile(env, "memfd");
    let wdir = dir.work.join("mfd");
    fs::create_dir(&wdir).unwrap();
    std::os::unix::fs::chown(&wdir, Some(env.user.uid), Some(env.user.gid)).unwrap();
    let proc = Proc::spawn(
        env,
        Who::User(&env.user),
        &program,
        &[path_str(&wdir)],
        &wdir,
        &[],
        &dir.work.join("memfd.log"),
    );
    let ready = wdir.join("ready");
    wait_until(WAIT, "memfd has written ready", || {
        fs::read_to_string(&ready).is_ok_and(|s| s == "ready\n")
    });
    (proc, wdir)
}

fn ask(proc: &mut Proc, wdir: &Path, log: &Path) -> String {
    fs::write(wdir.join("go"), b"go\n").unwrap();
    workload_result(proc, &wdir.join("result"), log, "memfd")
}

#[test]
fn memfds_and_unlinked_files_survive_dump_and_restore() {
    let env = Env::require();
    let dir = TestDir::new(&env, "memfd");
    let (mut orig, wdir) = start(&env, &dir);
    let image = dir.work.join("mfd.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");

    let run = env.verify(&dir, &["inspect", path_str(&image), "--json"]);
    run.assert_code(exit::OK, "inspect --json");
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let kinds: Vec<String> = json["fds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "memfd").count(),
        2,
        "two memfd fds: {kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "unlinked-file").count(),
        1,
        "one unlinked file: {kinds:?}"
    );
    // The memory space and three file spaces.
    assert_eq!(json["spaces"], 4, "{json}");
    let spaces: Vec<String> = json["file_spaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["content"].as_str().unwrap().to_string())
        .collect();
    assert!(
        spaces
            .iter()
            .any(|s| s.starts_with("memfd ckpt-sealed, 12388 bytes, seals 0xf")),
        "{spaces:?}"
    );
    assert!(
        spaces
            .iter()
            .any(|s| s.starts_with("memfd ckpt-shared, 65536 bytes, seals 0x1")),
        "{spaces:?}"
    );
    assert!(
        spaces
            .iter()
            .any(|s| s.contains("/gone, 10000 bytes, mode 0640")),
        "{spaces:?}"
    );

    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let result = ask(&mut restored, &wdir, &dir.work.join("memfd.log"));
    assert_eq!(result, "OK\n", "memfd after restore reported: {result}");
}

#[test]
fn a_left_running_memfd_process_is_untouched_and_its_image_restores() {
    let env = Env::require();
    let dir = TestDir::new(&env, "memfd-lr");
    let (mut orig, wdir) = start(&env, &dir);
    let image = dir.work.join("mfd.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &["--leave-running"]);
    orig.assert_untouched("--leave-running");
    // Dumping read the files through copies of their fds (pread): the
    // original's offsets and content are as they were.
    let log = dir.work.join("memfd.log");
    let result = ask(&mut orig, &wdir, &log);
    assert_eq!(result, "OK\n", "memfd left running reported: {result}");
    fs::remove_file(wdir.join("go")).unwrap();
    fs::remove_file(wdir.join("result")).unwrap();

    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let result = ask(&mut restored, &wdir, &log);
    assert_eq!(
        result, "OK\n",
        "memfd restored from a --leave-running image reported: {result}"
    );
}

/// Through a restore built as root (an `exe-link` grant): the stub creates
/// the memfds and the unlinked file itself, with the credentials the
/// decision gave (the unlinked file in its pinned directory), and the
/// workload finds them intact.
#[test]
fn a_privileged_restore_recreates_them_too() {
    let env = Env::require();
    let syslog = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    guard.grant_exe_link("e2e-memfd", &env.user.name);
    let dir = TestDir::new(&env, "memfd-root");
    let (mut orig, wdir) = start(&env, &dir);
    let image = dir.work.join("mfd.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");

    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let pid_s = restored.pid.to_string();
    syslog.wait_for("the audit record of the granted restore", |r| {
        r.program == "ckpt-verify"
            && r.get("event") == Some("restore")
            && r.get("pid") == Some(pid_s.as_str())
            && r.get("grants") == Some("exe-link:e2e-memfd")
    });
    let result = ask(&mut restored, &wdir, &dir.work.join("memfd.log"));
    assert_eq!(
        result, "OK\n",
        "memfd after a privileged restore reported: {result}"
    );
    drop(guard);
}
