//! Pseudo-terminal pairs inside the image: a process that holds a pty
//! master and its slave (the `pty` workload, and a `python3` program using
//! the standard `pty` module) is dumped and restored by an unprivileged
//! user through the installed helpers. The pair is recreated from the
//! multiplexer with its settings, window size, packet and exclusive modes,
//! and is the process's controlling terminal again; the restore names the
//! old and the new `/dev/pts` name. Bytes queued in the terminal at dump
//! are not saved: the dump and the restore both say how many.
//! (A slave of the *caller's* terminal stays external: `stdio.rs`.)
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ckpt_tests::policy::PolicyGuard;
use ckpt_tests::syslog::Syslog;
use ckpt_tests::{
    exit, path_str, user_dir, wait_ready, wait_until, workload_result, Env, Proc, Run, TestDir,
    Who, WAIT,
};

/// Starts the `pty` workload (with `extra` arguments) in a directory the
/// user owns; waits until it is ready. (process, its directory, the
/// slave's name at dump)
fn start(env: &Env, dir: &TestDir, extra: &[&str]) -> (Proc, PathBuf, String) {
    let program = dir.compile(env, "pty");
    let wdir = user_dir(env, dir, "pty");
    let mut args = vec![path_str(&wdir)];
    args.extend_from_slice(extra);
    let proc = Proc::spawn(
        env,
        Who::User(&env.user),
        &program,
        &args,
        &wdir,
        &[],
        &dir.work.join("pty.log"),
    );
    let ready = wdir.join("ready");
    wait_until(WAIT, "pty has written ready", || {
        fs::read_to_string(&ready).is_ok_and(|s| s == "ready\n")
    });
    let before = fs::read_to_string(wdir.join("before")).unwrap();
    let before = before.trim_end().to_string();
    assert!(before.starts_with("/dev/pts/"), "slave name {before:?}");
    (proc, wdir, before)
}

/// Every line of a helper's output (both streams).
fn lines(run: &Run) -> Vec<String> {
    run.stdout
        .lines()
        .chain(run.stderr.lines())
        .map(str::to_string)
        .collect()
}

/// The restore's notice about the pseudo-terminal once called `before`.
fn pty_notice(run: &Run, before: &str) -> String {
    let want = format!("the pseudo-terminal {before} (its master in the image) is /dev/pts/");
    lines(run)
        .into_iter()
        .find(|l| l.contains("notice:") && l.contains(&want))
        .unwrap_or_else(|| panic!("restore names {before} and the new slave\n{run}"))
}

#[test]
fn a_pty_pair_is_restored_with_its_settings_as_the_controlling_terminal() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tty-pair");
    let (mut orig, wdir, before) = start(&env, &dir, &[]);
    let pid1 = orig.pid;
    let image = dir.work.join("pty.ckpt");
    let dump = env.dump_ok(&dir, pid1, &image, &[]);
    orig.wait_gone("dump kills the target");
    assert!(
        !lines(&dump).iter().any(|l| l.contains("queued bytes")),
        "nothing was queued, nothing is said to be lost\n{dump}"
    );

    // inspect: fd 10 the master, 11 and 12 its slave, the state shown.
    let run = env.verify(&dir, &["inspect", path_str(&image), "--json"]);
    run.assert_code(exit::OK, "inspect --json");
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let fds = json["fds"].as_array().unwrap();
    let kind_of = |n: i64| {
        fds.iter()
            .find(|f| f["fd"].as_i64() == Some(n))
            .map(|f| f["kind"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(kind_of(10).as_deref(), Some("pty-master"), "{json}");
    assert_eq!(kind_of(11).as_deref(), Some("pty-slave"), "{json}");
    assert_eq!(kind_of(12).as_deref(), Some("pty-slave"), "{json}");
    // fd 13 was opened as /dev/tty: a description of the slave too.
    assert_eq!(kind_of(13).as_deref(), Some("pty-slave"), "{json}");
    let text = env.verify(&dir, &["inspect", path_str(&image)]);
    text.assert_code(exit::OK, "inspect");
    assert!(
        text.stdout.lines().any(
            |l| l.trim_start().starts_with("13: pty-slave") && l.contains("opened as /dev/tty")
        ),
        "inspect shows fd 13 as the slave opened as /dev/tty\n{text}"
    );
    let index = before.trim_start_matches("/dev/pts/");
    let master_line = text
        .stdout
        .lines()
        .find(|l| l.contains("pty-master"))
        .unwrap_or_else(|| panic!("inspect shows the master\n{text}"));
    for want in [
        format!("/dev/pts/{index} (37x101)"),
        "packet mode".to_string(),
        "slave exclusive".to_string(),
        "slave mode 0640".to_string(),
        format!("controlling terminal of session {pid1}"),
        format!("foreground group {pid1}"),
    ] {
        assert!(
            master_line.contains(&want),
            "inspect shows {want:?}: {master_line}"
        );
    }

    let (run, mut restored) = env.restore_ok(&dir, &image, None);
    let pid2 = restored.pid;
    fs::write(wdir.join("go"), b"go\n").unwrap();
    let result = workload_result(
        &mut restored,
        &wdir.join("result"),
        &dir.work.join("pty.log"),
        "pty",
    );
    assert_eq!(result, "OK\n", "pty after restore reported: {result}");
    let after = fs::read_to_string(wdir.join("after")).unwrap();
    let notice = pty_notice(&run, &before);
    assert!(
        notice.contains(&format!(
            "is {} now; it is the controlling terminal again, with the process's group in the \
             foreground",
            after.trim_end()
        )),
        "the notice names the new slave {after:?} and the controlling terminal: {notice}"
    );
    assert!(!notice.contains("not saved"), "nothing lost: {notice}");
    assert_ne!(pid2, pid1, "a caller-mode restore gets a new pid");
}

/// The same through a restore built as root (an `exe-link` grant): the
/// stub opens `/dev/ptmx` with `RESOLVE_NO_SYMLINKS` and its file
/// credentials, so the new slave belongs to the user.
#[test]
fn a_privileged_restore_also_recreates_the_pty_pair() {
    let env = Env::require();
    let syslog = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    guard.grant_exe_link("e2e-terminals", &env.user.name);
    let dir = TestDir::new(&env, "tty-root");
    let (mut orig, wdir, before) = start(&env, &dir, &[]);
    let image = dir.work.join("pty.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    let (run, mut restored) = env.restore_ok(&dir, &image, None);
    let pid_s = restored.pid.to_string();
    syslog.wait_for("the audit record of the granted restore", |r| {
        r.program == "ckpt-verify"
            && r.get("event") == Some("restore")
            && r.get("pid") == Some(pid_s.as_str())
            && r.get("grants") == Some("exe-link:e2e-terminals")
    });
    let notice = pty_notice(&run, &before);
    let new = notice
        .split(" is ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .to_string();
    let md = fs::metadata(&new).unwrap();
    assert_eq!(
        (md.uid(), md.gid()),
        (env.user.uid, env.user.gid),
        "the new slave {new} belongs to the user"
    );
    fs::write(wdir.join("go"), b"go\n").unwrap();
    let result = workload_result(
        &mut restored,
        &wdir.join("result"),
        &dir.work.join("pty.log"),
        "pty",
    );
    assert_eq!(
        result, "OK\n",
        "pty after a privileged restore reported: {result}"
    );
    drop(guard);
}

#[test]
fn bytes_queued_in_the_terminal_are_named_as_lost_at_dump_and_restore() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tty-lost");
    let (mut orig, wdir, before) = start(&env, &dir, &["lost"]);
    let image = dir.work.join("pty.ckpt");
    let dump = env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    // "unread" (6 bytes) written to the master, waiting for the slave.
    let want = format!(
        "the pseudo-terminal {before} held 6 queued bytes (0 unread by the master, 6 unread by \
         the slave)"
    );
    assert!(
        lines(&dump)
            .iter()
            .any(|l| l.contains("notice:") && l.contains(&want)),
        "dump names the 6 bytes it cannot save\n{dump}"
    );
    let (run, mut restored) = env.restore_ok(&dir, &image, None);
    fs::write(wdir.join("go"), b"go\n").unwrap();
    let result = workload_result(
        &mut restored,
        &wdir.join("result"),
        &dir.work.join("pty.log"),
        "pty",
    );
    assert_eq!(
        result, "OK\n",
        "pty (lost) after restore reported: {result}"
    );
    let notice = pty_notice(&run, &before);
    assert!(
        notice.contains("6 bytes queued in it at dump were not saved (0 unread by the master, 6 unread by the slave"),
        "the restore says the 6 bytes are lost: {notice}"
    );
}

/// The `pty` workload started with its stdout and stderr on the *test's*
/// terminal (a pty whose master the test holds): that terminal stays
/// external (connected at restore to the restore caller's fds), while the
/// workload's own pair is inside the image.
#[test]
fn the_callers_terminal_stays_external_next_to_a_pair_inside() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tty-mixed");
    let program = dir.compile(&env, "pty");
    let wdir = user_dir(&env, &dir, "pty");
    let outer = nix::pty::openpty(None, None).expect("openpty");
    // Only the terminal side is handed on (as fds 1 and 2): openpty's fds
    // are inherited otherwise, and a process holding the master of its
    // own terminal has that pair inside the image.
    for fd in [&outer.master, &outer.slave] {
        nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .unwrap();
    }
    let outer_name = fs::read_link(format!("/proc/self/fd/{}", outer.slave.as_raw_fd()))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut cmd = env.command(Who::User(&env.user), Path::new("/usr/bin/setsid"));
    cmd.arg(&program)
        .arg(&wdir)
        .current_dir(&wdir)
        .stdin(std::process::Stdio::null())
        .stdout(outer.slave.try_clone().unwrap())
        .stderr(outer.slave);
    let mut child = cmd.spawn().expect("start pty on the test's terminal");
    drop(cmd);
    let mut orig = Proc::adopt(child.id() as i32, "pty on the test's terminal").unwrap();
    wait_ready(&wdir, "pty");
    let image = dir.work.join("pty.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    let _ = child.wait();

    let run = env.verify(&dir, &["inspect", path_str(&image), "--json"]);
    run.assert_code(exit::OK, "inspect --json");
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let fds = json["fds"].as_array().unwrap();
    let kind_of = |n: i64| {
        fds.iter()
            .find(|f| f["fd"].as_i64() == Some(n))
            .map(|f| f["kind"].as_str().unwrap_or("").to_string())
    };
    for (fd, want) in [
        (1, "external"),
        (2, "external"),
        (10, "pty-master"),
        (11, "pty-slave"),
    ] {
        assert_eq!(kind_of(fd).as_deref(), Some(want), "fd {fd}: {json}");
    }
    let (run, mut restored) = env.restore_ok(&dir, &image, None);
    assert!(
        lines(&run).iter().any(|l| l.contains(&format!(
            "fd 1 was connected to {outer_name} at dump; it is now connected to your fd 1"
        ))),
        "the test's terminal {outer_name} is the restore caller's fd 1 now\n{run}"
    );
    fs::write(wdir.join("go"), b"go\n").unwrap();
    let result = workload_result(
        &mut restored,
        &wdir.join("result"),
        &dir.work.join("pty.log"),
        "pty",
    );
    assert_eq!(result, "OK\n", "pty after restore reported: {result}");
    drop(outer.master);
}

/// The `unsupported` workload's `ptmx` (a master alone on fd 3, never
/// unlocked) and `pts` (the slave on fd 3, its master on fd 100) modes,
/// once refused, are dumped and restored: the master stays locked, and
/// fd 3 is the slave of fd 100 again.
#[test]
fn a_lone_locked_master_and_a_pair_above_fd_2_are_restored() {
    let env = Env::require();
    for mode in ["ptmx", "pts"] {
        let dir = TestDir::new(&env, &format!("tty-{mode}"));
        let program = dir.compile(&env, "unsupported");
        let ready = dir.work.join("ready");
        let mut orig = Proc::spawn(
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
        let image = dir.work.join("u.ckpt");
        env.dump_ok(&dir, orig.pid, &image, &[]);
        orig.wait_gone("dump kills the target");
        let text = env.verify(&dir, &["inspect", path_str(&image)]);
        text.assert_code(exit::OK, "inspect");
        let master = text
            .stdout
            .lines()
            .find(|l| l.contains("pty-master"))
            .unwrap_or_else(|| panic!("{mode}: inspect shows the master\n{text}"));
        assert_eq!(
            master.contains("locked"),
            mode == "ptmx",
            "{mode}: only the never-unlocked master is locked: {master}"
        );
        let (run, mut restored) = env.restore_ok(&dir, &image, None);
        let pid = restored.pid;
        let link = |fd: i32| {
            fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let master_fd = if mode == "ptmx" { 3 } else { 100 };
        assert_eq!(
            link(master_fd),
            "/dev/ptmx",
            "{mode}: fd {master_fd} is a master"
        );
        if mode == "pts" {
            let notice = lines(&run)
                .into_iter()
                .find(|l| l.contains("notice: the pseudo-terminal /dev/pts/"))
                .unwrap_or_else(|| panic!("restore names the new slave\n{run}"));
            let new = notice
                .split(" is ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap()
                .to_string();
            assert_eq!(
                link(3),
                new,
                "fd 3 is the new slave the notice names: {notice}"
            );
        }
        assert!(restored.is_alive(), "{mode}: the restored workload runs");
    }
}

/// A program nobody here wrote the terminal code of: `python3` with the
/// standard `pty` and `tty` modules holding both ends of a raw pty, sending
/// a count through it and logging what came out of the master and the
/// slave's name (`os.ttyname`).
const PY_PTY: &str = r#"
import os, pty, select, sys, time, tty
m, s = pty.openpty()
tty.setraw(s)
log = open(sys.argv[1], "a", buffering=1)
i = 0
while True:
    i += 1
    os.write(s, b"%d\n" % i)
    r, _, _ = select.select([m], [], [], 2)
    got = os.read(m, 64).decode().strip() if r else "lost"
    rows, cols = os.get_terminal_size(s)
    log.write("%d %s %s %dx%d\n" % (i, got, os.ttyname(s), rows, cols))
    time.sleep(0.02)
"#;

/// (count, what the master read, slave name, size) lines of the log.
fn py_lines(path: &Path) -> Vec<(u64, String, String, String)> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let i = it.next()?.parse().ok()?;
            Some((
                i,
                it.next()?.to_string(),
                it.next()?.to_string(),
                it.next()?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn python_holding_a_pty_pair_carries_on_after_restore() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tty-python");
    let script = dir.work.join("pty_loop.py");
    fs::write(&script, PY_PTY).unwrap();
    let log = dir.work.join("py.out");
    fs::write(&log, b"").unwrap();
    std::os::unix::fs::chown(&log, Some(env.user.uid), Some(env.user.gid)).unwrap();
    let python = fs::canonicalize("/usr/bin/python3").expect("python3 is installed");
    let mut orig = Proc::spawn(
        &env,
        Who::User(&env.user),
        &python,
        &[path_str(&script), path_str(&log)],
        &dir.work,
        &[],
        &dir.work.join("py.log"),
    );
    wait_until(WAIT, "python has sent 10 lines through its pty", || {
        py_lines(&log).len() >= 10
    });
    let image = dir.work.join("py.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills python");
    let before = py_lines(&log);
    let n = before.last().unwrap().0;
    for (i, got, _, _) in &before {
        assert_eq!(
            got,
            &i.to_string(),
            "before the dump, line {i} came through"
        );
    }
    let old_name = before.last().unwrap().2.clone();

    let (run, _restored) = env.restore_ok(&dir, &image, None);
    wait_until(WAIT, "restored python sends 10 more lines", || {
        py_lines(&log).len() as u64 >= n + 10
    });
    let after: Vec<_> = py_lines(&log).into_iter().skip(before.len()).collect();
    for (k, (i, got, name, size)) in after.iter().enumerate() {
        assert_eq!(*i, n + 1 + k as u64, "the count goes on: {after:?}");
        // The line sent while the dump froze python may have been queued
        // in the terminal: lost (the restore says so), and only that one.
        if !(k == 0 && got == "lost") {
            assert_eq!(
                got,
                &i.to_string(),
                "line {i} came through the restored pty"
            );
        }
        assert_eq!(size, &before[0].3, "the window size is kept");
        assert!(name.starts_with("/dev/pts/"), "{name}");
    }
    let new_name = &after[0].2;
    let notice = pty_notice(&run, &old_name);
    assert!(
        notice.contains(&format!("is {new_name} now")),
        "the notice names the new slave {new_name}: {notice}"
    );
}
