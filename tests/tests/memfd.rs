//! memfds and files unlinked while open: the memfd workload holds a sealed
//! memfd (mapped shared read-only), a memfd mapped shared and private, and
//! an unlinked file; it is dumped and restored through the installed
//! helpers as an unprivileged user, and checks itself: names, content,
//! offsets, seals still enforced, the shared mapping and the fd one object,
//! the private mapping's own page, the unlinked file's mode, and a file
//! unlinked while open write-only (its content read at dump through a
//! read-only open made as the caller). Root restoring an unlinked file it
//! had given to another user gives it back to them; a write-only file the
//! caller may not read is refused at dump, naming the fd and the path.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use ckpt_tests::policy::PolicyGuard;
use ckpt_tests::syslog::Syslog;
use std::os::unix::fs::PermissionsExt;

use ckpt_tests::{
    exit, path_str, user_dir, wait_ready, wait_until, workload_result, Env, Proc, TestDir, Who,
    WAIT,
};

fn start(env: &Env, dir: &TestDir) -> (Proc, PathBuf) {
    start_as(env, dir, Who::User(&env.user), &[])
}

fn start_as(env: &Env, dir: &TestDir, who: Who, extra: &[&str]) -> (Proc, PathBuf) {
    let program = dir.compile(env, "memfd");
    let wdir = user_dir(env, dir, "mfd");
    let mut args = vec![path_str(&wdir)];
    args.extend_from_slice(extra);
    let proc = Proc::spawn(
        env,
        who,
        &program,
        &args,
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
        2,
        "two unlinked files (one write-only): {kinds:?}"
    );
    // The memory space and four file spaces.
    assert_eq!(json["spaces"], 5, "{json}");
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
    // The write-only one's content was saved, and its owner recorded.
    let owner = format!("owner {}:{}", env.user.uid, env.user.gid);
    assert!(
        spaces
            .iter()
            .any(|s| s.contains("/wronly, 5000 bytes, mode 0600") && s.ends_with(&owner)),
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

/// Root's own process gave its unlinked file to another user (fchown, as
/// CRIU's unlink_fstat00 does); root dumps it and restores it in caller
/// mode: root may chown, so the recreated file belongs to that user again
/// (the workload checks the owner, and everything else, itself).
#[test]
fn root_restoring_an_unlinked_file_gives_it_its_owner_back() {
    let env = Env::require();
    let dir = TestDir::new(&env, "memfd-owner");
    let uid = env.other.uid.to_string();
    let gid = env.other.gid.to_string();
    let (mut orig, wdir) = start_as(&env, &dir, Who::Root, &["chown", &uid, &gid]);
    let image = dir.work.join("mfd.ckpt");
    let pid_s = orig.pid.to_string();
    let run = env.sign_as(
        Who::Root,
        &dir,
        &["dump", "--pid", &pid_s, "-o", path_str(&image)],
    );
    run.assert_code(exit::OK, "root's dump of its own process");
    orig.wait_gone("dump kills the target");
    let inspect = env.verify_as(Who::Root, &dir, &["inspect", path_str(&image)]);
    let owner = format!("owner {uid}:{gid}");
    assert!(
        inspect.stdout.contains(&owner),
        "inspect does not show {owner:?}\n{inspect}"
    );

    let run = env.verify_as(Who::Root, &dir, &["restore", path_str(&image)]);
    run.assert_code(exit::OK, "root's restore of its own image");
    let pid: i32 = run
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("restore prints the pid\n{run}"));
    let mut restored = Proc::adopt(pid, "restored process").expect("the restored process runs");
    let result = ask(&mut restored, &wdir, &dir.work.join("memfd.log"));
    assert_eq!(
        result, "OK\n",
        "memfd after root's restore reported: {result}"
    );
}

/// The hostile case: the user's process holds, write-only, a file of
/// another user that the user may write but not read (mode 0622), and
/// unlinked it. The dump (setuid root) must not read it for them: it is
/// refused, exit 6, naming the fd and the path, and the target is left
/// running untouched; no image is written.
#[test]
fn a_write_only_unlinked_file_the_caller_cannot_read_is_refused() {
    let env = Env::require();
    let dir = TestDir::new(&env, "memfd-noread");
    let program = dir.compile(&env, "memfd");
    let wdir = user_dir(&env, &dir, "mfd");
    let secret = wdir.join("secret");
    fs::write(&secret, b"not for ckpt-user\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o622)).unwrap();
    std::os::unix::fs::chown(&secret, Some(env.other.uid), Some(env.other.gid)).unwrap();
    let mut orig = Proc::spawn(
        &env,
        Who::User(&env.user),
        &program,
        &[path_str(&wdir), "hold", path_str(&secret)],
        &wdir,
        &[],
        &dir.work.join("memfd.log"),
    );
    wait_ready(&wdir, "memfd hold");
    assert!(!secret.exists(), "the workload unlinked the file");
    let image = dir.work.join("mfd.ckpt");
    let pid_s = orig.pid.to_string();
    let run = env.sign(&dir, &["dump", "--pid", &pid_s, "-o", path_str(&image)]);
    run.assert_code(
        exit::DUMP_FAILED,
        "dump of a write-only file the caller cannot read",
    );
    let path = path_str(&secret);
    for want in ["fd 3", path, "write-only", "Permission denied"] {
        assert!(
            run.stderr.contains(want),
            "the refusal does not name {want:?}\n{run}"
        );
    }
    assert!(!image.exists(), "no image after a refusal");
    orig.assert_untouched("a refused dump");
}

/// `dump --compress`: the memfds' and unlinked files' contents go in
/// compressed, with their zero pages left out (restore creates each file
/// at its size, so those read as zeros), and the restored process finds
/// every byte as it was.
#[test]
fn memfds_and_unlinked_files_survive_a_compressed_image() {
    let env = Env::require();
    let dir = TestDir::new(&env, "memfd-compress");
    let (mut orig, wdir) = start(&env, &dir);
    let image = dir.work.join("mfd.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &["--compress"]);
    orig.wait_gone("dump kills the target");
    let run = env.verify(&dir, &["inspect", path_str(&image), "--json"]);
    run.assert_code(exit::OK, "inspect --json");
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(json["compression"], "lz4-blocks", "{json}");

    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let result = ask(&mut restored, &wdir, &dir.work.join("memfd.log"));
    assert_eq!(
        result, "OK\n",
        "memfd restored from a compressed image reported: {result}"
    );
}
