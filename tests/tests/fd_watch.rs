//! epoll, inotify and file locks: the fd_watch workload holds an epoll
//! (eventfd, timerfd and nested-epoll targets, a target under two fds, a
//! target whose fd was closed, a disarmed one-shot entry, an exclusive
//! one), an inotify with a gap in its wds, and flock, POSIX and OFD
//! locks; it is dumped and restored through the installed helpers as an
//! unprivileged user and checks everything itself. A lock someone else
//! holds fails the restore; what cannot be restored is refused at dump,
//! naming the fd.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use ckpt_tests::policy::PolicyGuard;
use ckpt_tests::syslog::Syslog;
use ckpt_tests::{
    exit, path_str, procfs, user_dir, wait_until, workload_result, Env, Proc, TestDir, Who, WAIT,
};

fn start(env: &Env, dir: &TestDir, mode: &str) -> (Proc, PathBuf, PathBuf) {
    let program = dir.compile(env, "fd_watch");
    let wdir = user_dir(env, dir, "fdw");
    let mut proc = Proc::spawn(
        env,
        Who::User(&env.user),
        &program,
        &[path_str(&wdir), mode],
        &wdir,
        &[],
        &dir.work.join("fd_watch.log"),
    );
    let ready = wdir.join("ready");
    wait_until(WAIT, "fd_watch has written ready", || {
        fs::read_to_string(&ready).is_ok_and(|s| s.starts_with("ready\n"))
    });
    if let Some(other) = fs::read_to_string(&ready).unwrap().lines().nth(1) {
        proc.kill_also(other.parse().unwrap());
    }
    (proc, wdir, program)
}

fn ask(proc: &mut Proc, wdir: &Path, log: &Path) -> String {
    fs::write(wdir.join("go"), b"go\n").unwrap();
    workload_result(proc, &wdir.join("result"), log, "fd_watch")
}

/// The lines of /proc/locks held by `pid`.
fn locks_of(pid: i32) -> Vec<String> {
    let pid = format!(" {pid} ");
    fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&pid))
        .map(str::to_string)
        .collect()
}

fn assert_locks_held(pid: i32) {
    let locks = locks_of(pid).join("\n");
    for want in [
        "FLOCK  ADVISORY  WRITE",
        "FLOCK  ADVISORY  READ",
        "POSIX  ADVISORY  WRITE",
        "POSIX  ADVISORY  READ",
    ] {
        assert!(
            locks.contains(want),
            "/proc/locks shows no {want:?} lock of pid {pid}:\n{locks}"
        );
    }
    assert!(
        fs::read_to_string("/proc/locks")
            .unwrap()
            .contains("OFDLCK ADVISORY  WRITE -1"),
        "/proc/locks shows no OFD write lock"
    );
}

#[test]
fn epoll_inotify_and_locks_survive_dump_and_restore() {
    let env = Env::require();
    let dir = TestDir::new(&env, "fd-watch");
    let (mut orig, wdir, _) = start(&env, &dir, "all");
    let image = dir.work.join("fdw.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");

    let run = env.verify(&dir, &["inspect", path_str(&image)]);
    run.assert_code(exit::OK, "inspect");
    let w = path_str(&wdir);
    for want in [
        "epoll anon_inode:[eventpoll] (flags 0o2, offset 0, watching [".to_string(),
        "data 0x1111222233334444".to_string(),
        "events 0x40000000 data 0x44".to_string(),
        format!("inotify anon_inode:inotify (flags 0o4000, offset 0, watches [wd 1 mask 0x100 {w}/w1; wd 3 mask 0x300 {w}/w2; wd 4 mask 0x2 {w}/file], close-on-exec)"),
        format!("{w}/lk1 (flags 0o100002, offset 0, locks [Flock write 0-EOF])"),
        format!("{w}/lk2 (flags 0o100002, offset 0, locks [Posix write 10-19; Posix read 100-EOF])"),
        format!("{w}/lk3 (flags 0o100002, offset 0, locks [Ofd write 0-9])"),
        format!("{w}/lk4 (flags 0o100000, offset 0, locks [Flock read 0-EOF])"),
    ] {
        assert!(
            run.stdout.contains(&want),
            "inspect does not show {want:?}\n{run}"
        );
    }

    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    assert_locks_held(restored.pid);
    let result = ask(&mut restored, &wdir, &dir.work.join("fd_watch.log"));
    assert_eq!(result, "OK\n", "fd_watch after restore reported: {result}");
}

/// The pids of live processes running `exe`.
fn running(exe: &Path) -> Vec<i32> {
    procfs::pids()
        .into_iter()
        .filter(|&p| {
            fs::read_link(format!("/proc/{p}/exe")).ok().as_deref() == Some(exe)
                && procfs::stat(p).is_some_and(|s| !matches!(s.state, 'Z' | 'X'))
        })
        .collect()
}

/// Dumped with `--leave-running`, the original still holds its locks: the
/// restore fails naming the file and the lock, and leaves no process.
/// Once the original is gone, the same image restores.
#[test]
fn a_lock_held_by_another_process_fails_the_restore() {
    let env = Env::require();
    let dir = TestDir::new(&env, "fd-watch-held");
    let (mut orig, wdir, program) = start(&env, &dir, "all");
    let image = dir.work.join("fdw.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &["--leave-running"]);
    orig.assert_untouched("--leave-running");
    assert_locks_held(orig.pid);

    let (run, proc) = env.restore(&dir, &image, None);
    assert!(proc.is_none(), "a failed restore yields no process\n{run}");
    run.assert_code(exit::RESTORE_FAILED, "restore while the locks are held");
    let lk1 = format!("{}/lk1", path_str(&wdir));
    assert!(
        run.stderr.contains(&format!(
            "cannot take the flock write lock on {lk1} again: another process holds a \
             conflicting lock"
        )),
        "the failure names the file and the lock\n{run}"
    );
    assert_eq!(
        running(&program),
        vec![orig.pid],
        "only the original runs after the failed restore"
    );

    // The dump read nothing away: the original still finds everything
    // (and then releases its locks and exits).
    let log = dir.work.join("fd_watch.log");
    let result = ask(&mut orig, &wdir, &log);
    assert_eq!(result, "OK\n", "fd_watch left running reported: {result}");
    orig.wait_gone("the original exits after its check");
    for f in ["go", "result"] {
        fs::remove_file(wdir.join(f)).unwrap();
    }
    for d in ["w1/new", "w2/new"] {
        fs::remove_dir(wdir.join(d)).unwrap();
    }
    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let result = ask(&mut restored, &wdir, &log);
    assert_eq!(
        result, "OK\n",
        "fd_watch restored once the locks were free reported: {result}"
    );
}

/// Through a restore built as root (an `exe-link` grant): the stub
/// recreates the epoll, adds the watches with the decided credentials
/// (paths opened without following symbolic links) and takes the locks.
#[test]
fn a_privileged_restore_recreates_them_too() {
    let env = Env::require();
    let syslog = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    guard.grant_exe_link("e2e-fd-watch", &env.user.name);
    let dir = TestDir::new(&env, "fd-watch-root");
    let (mut orig, wdir, _) = start(&env, &dir, "all");
    let image = dir.work.join("fdw.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");

    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let pid_s = restored.pid.to_string();
    syslog.wait_for("the audit record of the granted restore", |r| {
        r.program == "ckpt-verify"
            && r.get("event") == Some("restore")
            && r.get("pid") == Some(pid_s.as_str())
            && r.get("grants") == Some("exe-link:e2e-fd-watch")
    });
    assert_locks_held(restored.pid);
    let result = ask(&mut restored, &wdir, &dir.work.join("fd_watch.log"));
    assert_eq!(
        result, "OK\n",
        "fd_watch after a privileged restore reported: {result}"
    );
    drop(guard);
}

/// A refused dump: exit 6, the exact message, no image, the target
/// untouched.
fn refused(mode: &str, message: &str) {
    let env = Env::require();
    let dir = TestDir::new(&env, &format!("fd-watch-{mode}"));
    let (mut p, _wdir, _) = start(&env, &dir, mode);
    let image = dir.work.join("fdw.ckpt");
    let run = env.sign(
        &dir,
        &["dump", "--pid", &p.pid.to_string(), "-o", path_str(&image)],
    );
    run.assert_code(exit::DUMP_FAILED, &format!("dump in mode {mode}"));
    let want = format!("pid {}: cannot checkpoint {message}", p.pid);
    assert!(
        run.stderr.contains(&want),
        "the refusal must say {want:?}\n{run}"
    );
    assert!(!image.exists(), "refused dump left an image");
    p.assert_untouched(&format!("after a dump refused in mode {mode}"));
}

#[test]
fn dump_refuses_an_epoll_entry_whose_file_left_the_fd_table() {
    refused(
        "closed",
        "fd 3 (epoll): its entry for fd 4 (inode 0x40e) watches a file that is no longer \
         open in the process (fd 4 was closed while another process or a queued message \
         kept the file alive)",
    );
}

#[test]
fn dump_refuses_an_inotify_watch_on_a_removed_directory() {
    refused("gone", "fd 3 (anon_inode:inotify): watch 1 on inode 0x");
    // The rest of the message, without the inode number.
    let env = Env::require();
    let dir = TestDir::new(&env, "fd-watch-gone-2");
    let (p, _wdir, _) = start(&env, &dir, "gone");
    let image = dir.work.join("fdw.ckpt");
    let run = env.sign(
        &dir,
        &["dump", "--pid", &p.pid.to_string(), "-o", path_str(&image)],
    );
    run.assert_code(exit::DUMP_FAILED, "dump of a watch on a removed directory");
    assert!(
        run.stderr.contains(
            ": no path to it that the caller can see (the watched file or directory was \
             removed, or is out of the caller's reach)"
        ),
        "the refusal says why\n{run}"
    );
}

#[test]
fn dump_refuses_unread_inotify_events() {
    refused(
        "pending",
        "fd 3 (anon_inode:inotify) with 32 bytes of unread events (restore cannot queue them \
         again: checkpoint when the program has read them)",
    );
}

/// A file with the user as owner (so the user's processes can write it).
fn user_file(env: &Env, path: &Path) -> fs::File {
    let f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    std::os::unix::fs::chown(path, Some(env.user.uid), Some(env.user.gid)).unwrap();
    f
}

/// A fifo the user owns, opened read-write by the test (so neither end
/// blocks): what the sqlite3 shell reads its commands from.
fn user_fifo(env: &Env, path: &Path) -> fs::File {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    std::os::unix::fs::chown(path, Some(env.user.uid), Some(env.user.gid)).unwrap();
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

/// `sqlite3 DB SQL` as the user: its stdout and stderr.
fn sqlite_query(env: &Env, dir: &TestDir, db: &Path, sql: &str) -> String {
    let mut cmd = env.command(Who::User(&env.user), Path::new(SQLITE3));
    cmd.arg(db).arg(sql).current_dir(&dir.work);
    let run = dir.run(cmd);
    format!("{}{}", run.stdout, run.stderr)
}

const SQLITE3: &str = "/usr/bin/sqlite3";

/// A real program: the sqlite3 shell inside an exclusive transaction
/// holds POSIX locks on its database. Dumped and restored (its stdin, a
/// fifo, becomes the restore caller's: another fifo), it still holds them
/// (another sqlite3 finds the database locked), and then commits.
#[test]
fn sqlite3_in_a_transaction_keeps_its_lock() {
    use std::io::Write;
    let env = Env::require();
    assert!(
        Path::new(SQLITE3).exists(),
        "{SQLITE3} is needed by this test (apt-get install sqlite3)"
    );
    let dir = TestDir::new(&env, "fd-watch-sqlite");
    let wdir = user_dir(&env, &dir, "sq");
    let db = wdir.join("db");
    let out_path = wdir.join("out");
    let out = user_file(&env, &out_path);
    let mut in1 = user_fifo(&env, &wdir.join("in1"));
    let mut in2 = user_fifo(&env, &wdir.join("in2"));

    let mut cmd = env.command(Who::User(&env.user), Path::new("/usr/bin/setsid"));
    cmd.arg(SQLITE3)
        .arg(&db)
        .current_dir(&wdir)
        .stdin(in1.try_clone().unwrap())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let mut child = cmd.spawn().unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    wait_until(WAIT, "sqlite3 runs", || {
        fs::read_link(format!("/proc/{pid}/exe")).ok().as_deref() == Some(Path::new(SQLITE3))
    });
    let mut orig = Proc::adopt(pid, "sqlite3").unwrap();
    in1.write_all(
        b"CREATE TABLE t(x);\nINSERT INTO t VALUES(1);\nBEGIN EXCLUSIVE;\n\
          INSERT INTO t VALUES(2);\nSELECT 'in-tx', count(*) FROM t;\n",
    )
    .unwrap();
    wait_until(WAIT, "sqlite3 is inside its transaction", || {
        fs::read_to_string(&out_path).is_ok_and(|s| s.contains("in-tx|2"))
    });
    assert!(
        locks_of(pid)
            .iter()
            .any(|l| l.contains("POSIX  ADVISORY  WRITE")),
        "sqlite3 holds a POSIX write lock before the dump"
    );

    let image = dir.work.join("sq.ckpt");
    env.dump_ok(&dir, pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    let _ = child.wait();

    let mut cmd = env.command(Who::User(&env.user), &env.verify_path());
    cmd.args(["restore", path_str(&image)])
        .current_dir(&dir.work)
        .stdin(in2.try_clone().unwrap());
    let run = dir.run(cmd);
    run.assert_code(exit::OK, "restore of sqlite3");
    let rpid: i32 = run.stdout.trim().parse().unwrap();
    let mut restored = Proc::adopt(rpid, "restored sqlite3").unwrap();
    assert!(
        locks_of(rpid)
            .iter()
            .any(|l| l.contains("POSIX  ADVISORY  WRITE")),
        "the restored sqlite3 holds its POSIX write lock: {:?}",
        locks_of(rpid)
    );
    let other = sqlite_query(&env, &dir, &db, "SELECT count(*) FROM t;");
    assert!(
        other.contains("database is locked"),
        "another sqlite3 finds the database locked, got {other:?}"
    );

    in2.write_all(b"COMMIT;\nSELECT 'after-commit', count(*) FROM t;\n.quit\n")
        .unwrap();
    wait_until(WAIT, "the restored sqlite3 commits", || {
        fs::read_to_string(&out_path).is_ok_and(|s| s.contains("after-commit|2"))
    });
    restored.wait_gone("sqlite3 quits");
    let other = sqlite_query(&env, &dir, &db, "SELECT count(*) FROM t;");
    assert_eq!(other.trim(), "2", "the committed rows are there");
}
