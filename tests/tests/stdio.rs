//! Descriptors connected outside the image (the shell-job case): a program
//! whose stdout is a terminal or a pipe into another program is dumped, and
//! its fds 0-2 are connected at restore to the restore caller's own fds
//! 0-2, with a notice. Such an object on another fd (a pipe a job runner
//! left on fd 7, a leaked fd 251) becomes `/dev/null` at restore, or the
//! restore caller's fd of that number with `--inherit-fd`, with a notice at
//! dump and at restore. Both ends of one pipe are still refused; an image
//! whose external fd names no printable object is malformed (exit 4).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use ciborium::Value;
use ckpt_tests::image::{with_manifest, Layout};
use ckpt_tests::policy::{toml_str, PolicyGuard};
use ckpt_tests::syslog::Syslog;
use ckpt_tests::{
    counter_lines, exit, path_str, procfs, wait_until, workload_result, write_owned, Counter, Env,
    Proc, Run, TestDir, Who, HELPER_TIMEOUT, WAIT,
};

/// Waits for `child` (a helper run with stdio of the test's choosing),
/// killing it after [`HELPER_TIMEOUT`]; stderr was sent to `err`.
fn finish(mut child: Child, desc: &str, out: String, err: &Path) -> Run {
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for helper") {
            break st;
        }
        if start.elapsed() > HELPER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {HELPER_TIMEOUT:?}; killed");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    Run {
        cmd: desc.to_string(),
        code: status.code(),
        status,
        stdout: out,
        stderr: fs::read_to_string(err).unwrap_or_default(),
    }
}

/// Everything read from a pty master until every terminal side is closed.
struct Drain {
    data: Arc<Mutex<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl Drain {
    fn start(master: OwnedFd) -> Drain {
        let data = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&data);
        let thread = std::thread::spawn(move || {
            let mut f = fs::File::from(master);
            let mut buf = [0u8; 4096];
            // EIO once no terminal side is open any more.
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Drain {
            data,
            thread: Some(thread),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data.lock().unwrap()).into_owned()
    }

    /// Waits until the reader saw the end (every terminal side closed).
    fn join(&mut self) -> String {
        if let Some(t) = self.thread.take() {
            t.join().expect("pty reader");
        }
        self.text()
    }
}

/// Counter lines ("COUNT PID") in `text`; other lines (the pid restore
/// prints on the same stdout) are skipped. A pty writes "\r\n".
fn count_lines(text: &str) -> Vec<(u64, i32)> {
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete
        .lines()
        .filter_map(|l| {
            let mut it = l.trim_end_matches('\r').split_whitespace();
            let c = it.next()?.parse().ok()?;
            let p = it.next()?.parse().ok()?;
            it.next().is_none().then_some((c, p))
        })
        .collect()
}

/// `lines` is the unbroken count `first`, `first + 1`, ... by `pid` alone.
fn assert_counts_from(lines: &[(u64, i32)], first: u64, pid: i32, what: &str) {
    assert!(!lines.is_empty(), "{what}: no count at all");
    for (i, &(c, p)) in lines.iter().enumerate() {
        assert_eq!(
            (c, p),
            (first + i as u64, pid),
            "{what}: line {} breaks the count (neighbourhood {:?})",
            i + 1,
            &lines[i.saturating_sub(3)..(i + 3).min(lines.len())]
        );
    }
}

/// The restore's notice about fd `n` names what it was connected to.
fn assert_notice(run: &Run, n: i32, was: &str) {
    let want = format!("fd {n} was connected to {was} at dump; it is now connected to your fd {n}");
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("notice:") && l.contains(&want)),
        "restore must say that fd {n} (was {was}) is now the caller's fd {n}\n{run}"
    );
}

/// The restored process leads its own session and has no controlling
/// terminal (so it is never the terminal's foreground job).
fn assert_own_session(pid: i32) {
    let st = procfs::stat(pid).expect("stat of the restored process");
    assert_eq!(
        st.session, pid,
        "the restored process leads its own session"
    );
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &text[text.rfind(')').unwrap() + 1..];
    let tty_nr: i64 = rest.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert_eq!(
        tty_nr, 0,
        "the restored process has no controlling terminal"
    );
}

fn link_of(fd: &OwnedFd) -> String {
    fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_counter_writing_to_its_terminal_continues_on_the_restore_callers_terminal() {
    let env = Env::require();
    let dir = TestDir::new(&env, "stdio-pty");
    let counter = dir.compile(&env, "counter");

    // The program's terminal: a pty, its controlling terminal, on fds 0-2.
    let first = nix::pty::openpty(None, None).expect("openpty");
    let first_tty = link_of(&first.slave);
    let mut cmd = env.command(Who::User(&env.user), Path::new("/usr/bin/setsid"));
    cmd.arg("--ctty")
        .arg(&counter)
        .arg("-")
        .current_dir(&dir.work)
        .stdin(first.slave.try_clone().unwrap())
        .stdout(first.slave.try_clone().unwrap())
        .stderr(first.slave);
    let mut child = cmd.spawn().expect("start the counter on its terminal");
    // Only the counter holds the terminal side now.
    drop(cmd);
    let mut p1 = Proc::adopt(child.id() as i32, "counter on a terminal").unwrap();
    let mut seen = Drain::start(first.master);
    wait_until(
        WAIT,
        "the counter has counted to 10 on its terminal",
        || count_lines(&seen.text()).len() >= 10,
    );
    let pid1 = p1.pid;
    assert_eq!(
        fs::read_link(format!("/proc/{pid1}/fd/1"))
            .unwrap()
            .to_string_lossy(),
        first_tty,
        "the counter's stdout is its terminal"
    );

    let image = dir.work.join("pty.ckpt");
    env.dump_ok(&dir, pid1, &image, &[]);
    p1.wait_gone("dump kills the target");
    let _ = child.wait();
    let before = count_lines(&seen.join());
    assert_counts_from(&before, 1, pid1, "the count on the first terminal");
    let n = before.last().unwrap().0;

    let inspect = env.verify(&dir, &["inspect", path_str(&image)]);
    inspect.assert_code(exit::OK, "inspect");
    assert!(
        inspect
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with("1: external") && l.contains(&first_tty)),
        "inspect shows fd 1 as external, connected to {first_tty}\n{inspect}"
    );

    // The restore caller's stdout is another terminal.
    let second = nix::pty::openpty(None, None).expect("openpty");
    let err = dir.root.join("restore.err");
    let mut cmd = env.command(Who::User(&env.user), &env.verify_path());
    cmd.args(["restore", path_str(&image)])
        .current_dir(&dir.work)
        .stdout(second.slave.try_clone().unwrap())
        .stderr(fs::File::create(&err).unwrap());
    let helper = cmd.spawn().expect("start restore");
    drop(cmd);
    drop(second.slave);
    let now = Drain::start(second.master);
    let run = finish(
        helper,
        "ckpt-verify restore (stdout on a pty)",
        String::new(),
        &err,
    );
    run.assert_code(exit::OK, "restore with stdout on another terminal");
    wait_until(
        WAIT,
        "restore printed its pid on the caller's terminal",
        || {
            now.text()
                .lines()
                .any(|l| l.trim_end_matches('\r').parse::<i32>().is_ok())
        },
    );
    let pid2: i32 = now
        .text()
        .lines()
        .find_map(|l| l.trim_end_matches('\r').parse().ok())
        .unwrap();
    let _p2 = Proc::adopt(pid2, "restored counter").expect("the restored counter runs");
    wait_until(
        WAIT,
        "the restored counter counts on the caller's terminal",
        || count_lines(&now.text()).len() >= 20,
    );
    assert_counts_from(
        &count_lines(&now.text()),
        n + 1,
        pid2,
        "the count on the restore caller's terminal",
    );
    for fd in 0..=2 {
        assert_notice(&run, fd, &first_tty);
    }
    assert_own_session(pid2);
    assert_eq!(
        fs::read_link(format!("/proc/{pid2}/fd/0")).unwrap(),
        PathBuf::from("/dev/null"),
        "fd 0 is the caller's fd 0 (/dev/null here)"
    );
    assert_eq!(
        fs::read_link(format!("/proc/{pid2}/fd/2")).unwrap(),
        err,
        "fd 2 is the caller's fd 2"
    );
}

/// The pid of the running process whose executable is `exe`.
fn pid_running(exe: &Path) -> i32 {
    let mut found = None;
    wait_until(WAIT, &format!("{} runs", exe.display()), || {
        found = procfs::pids().into_iter().find(|&p| {
            fs::read_link(format!("/proc/{p}/exe")).ok().as_deref() == Some(exe)
                && procfs::stat(p).is_some_and(|s| !matches!(s.state, 'Z' | 'X'))
        });
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn a_counter_piped_into_cat_continues_on_the_restore_callers_stdout() {
    piped_counter(false);
}

/// The same through a restore built as root (an `exe-link` grant): the
/// caller's own fds 0-2 are handed over there too.
#[test]
fn a_privileged_restore_also_connects_the_callers_stdout() {
    piped_counter(true);
}

fn piped_counter(privileged: bool) {
    let env = Env::require();
    let guard = privileged.then(|| {
        Syslog::start();
        let guard = PolicyGuard::lock(&env);
        guard.policy(&format!(
            "[[rule]]\n\
             name = \"e2e-stdio\"\n\
             signed_by = [\"this-host\"]\n\
             caller = [{}]\n\
             grant = [\"exe-link\"]\n",
            toml_str(&format!("user:{}", env.user.name))
        ));
        guard
    });
    let dir = TestDir::new(
        &env,
        if privileged {
            "stdio-pipe-root"
        } else {
            "stdio-pipe"
        },
    );
    let counter = dir.compile(&env, "counter");
    let catted = dir.work.join("catted");
    let sh = fs::canonicalize("/bin/sh").unwrap();
    let script = format!("{} - | cat > {}", path_str(&counter), path_str(&catted));
    let mut shell = Proc::spawn(
        &env,
        Who::User(&env.user),
        &sh,
        &["-c", &script],
        &dir.work,
        &[],
        &dir.work.join("sh.log"),
    );
    let pid1 = pid_running(&counter);
    let mut p1 = Proc::adopt(pid1, "counter piped into cat").unwrap();
    shell.kill_also(pid1);
    wait_until(WAIT, "the counter has counted to 10 through cat", || {
        counter_lines(&catted).len() >= 10
    });
    let link = fs::read_link(format!("/proc/{pid1}/fd/1"))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(link.starts_with("pipe:["), "stdout is a pipe: {link}");

    let image = dir.work.join("pipe.ckpt");
    env.dump_ok(&dir, pid1, &image, &[]);
    p1.wait_gone("dump kills the counter");
    shell.wait_gone("cat sees the end of its pipe, and the shell ends");
    let before = counter_lines(&catted);
    assert_counts_from(&before, 1, pid1, "the count through cat");
    let n = before.last().unwrap().0;

    // The restore caller's stdout is a file.
    let out = dir.root.join("restore.out");
    let err = dir.root.join("restore.err");
    let out_file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(&out)
        .unwrap();
    let mut cmd: Command = env.command(Who::User(&env.user), &env.verify_path());
    cmd.args(["restore", path_str(&image)])
        .current_dir(&dir.work)
        .stdout(out_file)
        .stderr(fs::File::create(&err).unwrap());
    let helper = cmd.spawn().expect("start restore");
    let run = finish(
        helper,
        "ckpt-verify restore (stdout on a file)",
        String::new(),
        &err,
    );
    run.assert_code(exit::OK, "restore with stdout on a file");
    let text = fs::read_to_string(&out).unwrap();
    let pid2: i32 = text
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("restore printed no pid on its stdout: {text:?}\n{run}"));
    let _p2 = Proc::adopt(pid2, "restored counter").expect("the restored counter runs");
    wait_until(
        WAIT,
        "the restored counter counts on the caller's stdout",
        || count_lines(&fs::read_to_string(&out).unwrap()).len() >= 20,
    );
    assert_counts_from(
        &count_lines(&fs::read_to_string(&out).unwrap()),
        n + 1,
        pid2,
        "the count on the restore caller's stdout (no gap after the count through cat)",
    );
    assert_notice(&run, 1, &link);
    assert!(
        run.stderr
            .contains("its file status flags are yours, not the dump's: O_APPEND on"),
        "the notice says the caller's O_APPEND (the pipe had none) is kept\n{run}"
    );
    assert_own_session(pid2);
    assert_eq!(
        fs::read_link(format!("/proc/{pid2}/fd/1")).unwrap(),
        out,
        "fd 1 is the caller's stdout"
    );
    if privileged {
        // A granted exe-link makes the restore one built as root.
        let pid_s = pid2.to_string();
        Syslog::start().wait_for("the audit record of the granted restore", |r| {
            r.program == "ckpt-verify"
                && r.get("event") == Some("restore")
                && r.get("pid") == Some(pid_s.as_str())
                && r.get("grants") == Some("exe-link:e2e-stdio")
        });
    }
    drop(guard);
    assert_eq!(
        counter_lines(&catted).len() as u64,
        n,
        "nothing more arrives at the old pipe's reader"
    );
}

/// A workload started by bash with fd 7 the write end of a pipe into one
/// `cat` and fd 251 the write end of a pipe into another, dumped: (the
/// test dir, the workload's dir, the image, the dump's run, the link of its
/// fd 7).
fn dump_inherited(name: &str) -> (TestDir, PathBuf, Run, String) {
    let env = Env::require();
    let dir = TestDir::new(&env, name);
    let program = dir.compile(&env, "inherited");
    let bash = fs::canonicalize("/bin/bash").unwrap();
    let (before7, before251) = (dir.work.join("before7"), dir.work.join("before251"));
    let log = dir.work.join("inherited.log");
    // The process substitution is bash's child, not the workload's.
    let script =
        r#"exec 4> >(exec cat >"$3"); "$0" "$1" 7>&1 251>&4 4>&- >>"$4" 2>&1 | exec cat >"$2""#;
    let mut shell = Proc::spawn(
        &env,
        Who::User(&env.user),
        &bash,
        &[
            "-c",
            script,
            path_str(&program),
            path_str(&dir.work),
            path_str(&before7),
            path_str(&before251),
            path_str(&log),
        ],
        &dir.work,
        &[],
        &dir.work.join("bash.log"),
    );
    let pid1 = pid_running(&program);
    let mut p1 = Proc::adopt(pid1, "inherited").unwrap();
    shell.kill_also(pid1);
    wait_until(WAIT, "the workload is ready", || {
        fs::read_to_string(dir.work.join("ready")).is_ok_and(|s| s == "ready\n")
    });
    let link7 = fs::read_link(format!("/proc/{pid1}/fd/7"))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let link251 = fs::read_link(format!("/proc/{pid1}/fd/251"))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        link7.starts_with("pipe:[") && link251.starts_with("pipe:[") && link7 != link251,
        "fds 7 ({link7}) and 251 ({link251}) are two pipes"
    );
    let image = dir.work.join("inherited.ckpt");
    let run = env.dump_ok(&dir, pid1, &image, &[]);
    for (fd, link) in [(7, &link7), (251, &link251)] {
        let want = format!(
            "notice: fd {fd} is connected outside the process ({link}); restore connects it to \
             /dev/null, or to the restore caller's fd {fd} with --inherit-fd {fd}"
        );
        assert!(
            run.stderr.contains(&want),
            "the dump names fd {fd} and its pipe\n{run}"
        );
    }
    p1.wait_gone("dump kills the workload");
    wait_until(WAIT, "both readers saw the end of their pipes", || {
        fs::read_to_string(&before7).is_ok_and(|s| s == "before-7\n")
            && fs::read_to_string(&before251).is_ok_and(|s| s == "before-251\n")
    });
    shell.wait_gone("the shell ends with its cats");
    let inspect = env.verify(&dir, &["inspect", path_str(&image)]);
    assert!(
        inspect.stdout.lines().any(|l| l.contains(" 7:")
            && l.contains("external")
            && l.contains("with --inherit-fd, otherwise to /dev/null")),
        "inspect says what restore does with fd 7\n{inspect}"
    );
    let work = dir.work.clone();
    (dir, work, run, link7)
}

/// Without `--inherit-fd` the fds a job runner left become /dev/null, each
/// with a notice saying so and how to hand over one's own.
#[test]
fn fds_above_2_connected_outside_become_dev_null_with_a_notice() {
    let env = Env::require();
    let (dir, work, _dump, link7) = dump_inherited("stdio-inherit-null");
    let (run, mut p2) = env.restore_ok(&dir, &work.join("inherited.ckpt"), None);
    let want = format!(
        "fd 7 was connected to {link7} at dump; it is /dev/null now (pass --inherit-fd 7 to \
         hand over yours)"
    );
    assert!(run.stderr.contains(&want), "the notice for fd 7\n{run}");
    assert!(
        run.stderr.contains("fd 251 was connected to pipe:[")
            && run
                .stderr
                .contains("(pass --inherit-fd 251 to hand over yours)"),
        "the notice for fd 251\n{run}"
    );
    fs::write(work.join("go"), "null\n").unwrap();
    let result = workload_result(
        &mut p2,
        &work.join("result"),
        &work.join("inherited.log"),
        "the restored workload",
    );
    assert_eq!(result, "OK\n", "the workload's own check");
}

/// With `--inherit-fd 7` the restored process writes into the restore
/// caller's own pipe on fd 7; fd 251, not handed over, is /dev/null.
#[test]
fn inherit_fd_hands_the_callers_pipe_to_the_restored_process() {
    let env = Env::require();
    let (dir, work, _dump, link7) = dump_inherited("stdio-inherit-7");
    let image = work.join("inherited.ckpt");
    let after7 = work.join("after7");
    let bash = fs::canonicalize("/bin/bash").unwrap();
    let mut cmd = env.command(Who::User(&env.user), &bash);
    cmd.args([
        "-c",
        // The reader is bash's child, not the helper's.
        r#"exec 7> >(exec cat >"$2"); "$0" restore "$1" --inherit-fd 7"#,
        path_str(&env.verify_path()),
        path_str(&image),
        path_str(&after7),
    ])
    .current_dir(&work);
    let run = dir.run(cmd);
    run.assert_code(exit::OK, "restore --inherit-fd 7");
    let pid2: i32 = run
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("restore prints the pid\n{run}"));
    let mut p2 = Proc::adopt(pid2, "restored inherited").expect("the restored process runs");
    assert!(
        run.stderr.contains(&format!(
            "fd 7 was connected to {link7} at dump; it is now connected to your fd 7 \
             (--inherit-fd)"
        )) && run.stderr.contains("fd 251 was connected to pipe:["),
        "the notices for fds 7 and 251\n{run}"
    );
    fs::write(work.join("go"), "inherit7\n").unwrap();
    let result = workload_result(
        &mut p2,
        &work.join("result"),
        &work.join("inherited.log"),
        "the restored workload",
    );
    assert_eq!(result, "OK\n", "the workload's own check");
    wait_until(
        WAIT,
        "the caller's pipe carried the restored process's line",
        || fs::read_to_string(&after7).is_ok_and(|s| s == format!("after-7 {pid2}\n")),
    );
}

/// `--inherit-fd` refuses fds 0-2, numbers above 1023, and an fd the
/// caller does not have open (so never one the helper opened itself).
#[test]
fn inherit_fd_refuses_std_fds_and_fds_the_caller_has_not_open() {
    let env = Env::require();
    let dir = TestDir::new(&env, "stdio-inherit-refused");
    let image = dir.work.join("none.ckpt");
    for (n, says) in [
        ("2", "fds 0-2 are always connected to yours"),
        ("1024", "above 1023"),
        ("9", "fd 9 is not open"),
    ] {
        let run = env.verify(&dir, &["restore", path_str(&image), "--inherit-fd", n]);
        run.assert_code(exit::USAGE, &format!("--inherit-fd {n}"));
        assert!(
            run.stderr.contains(&format!("--inherit-fd {n}")) && run.stderr.contains(says),
            "the refusal of --inherit-fd {n} says why\n{run}"
        );
    }
}

/// Both ends of one pipe on fd 0 and fd 1 are inside the image: a pipe
/// restore recreates, not one connected to the caller's fds.
#[test]
fn both_ends_of_one_pipe_on_fd_0_and_fd_1_are_one_pipe_after_restore() {
    let env = Env::require();
    let dir = TestDir::new(&env, "stdio-stdpipe");
    let program = dir.compile(&env, "unsupported");
    let ready = dir.work.join("ready");
    let mut p = Proc::spawn(
        &env,
        Who::User(&env.user),
        &program,
        &["stdpipe", path_str(&ready)],
        &dir.work,
        &[],
        &dir.work.join("unsupported.log"),
    );
    wait_until(WAIT, "the workload is ready", || {
        fs::read_to_string(&ready).is_ok_and(|s| s.starts_with("ready\n"))
    });
    let image = dir.work.join("u.ckpt");
    env.dump_ok(&dir, p.pid, &image, &[]);
    p.wait_gone("dump kills the target");
    let (_run, restored) = env.restore_ok(&dir, &image, None);
    let link = |fd: i32| {
        fs::read_link(format!("/proc/{}/fd/{fd}", restored.pid))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let (zero, one) = (link(0), link(1));
    assert!(
        zero.starts_with("pipe:[") && zero == one,
        "fd 0 ({zero}) and fd 1 ({one}) must be the two ends of one new pipe"
    );
}

fn field<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    let Value::Map(entries) = v else {
        panic!("not a map looking for {key}: {v:?}")
    };
    entries
        .iter_mut()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no field {key}"))
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// `m` with one more description, External (connected to a pipe), and fd
/// `fd` naming it: appended, or replacing that fd's entry.
fn with_external_fd(m: &Value, fd: u64, to: &str) -> Vec<u8> {
    let mut m = m.clone();
    let Value::Array(descriptions) = field(&mut m, "files") else {
        panic!("the file table is not an array")
    };
    let index = descriptions.len() as u64;
    descriptions.push(Value::Map(vec![
        (
            text("kind"),
            Value::Map(vec![(
                text("External"),
                Value::Map(vec![(text("connected_to"), text(to))]),
            )]),
        ),
        (text("path"), text("pipe:[4242]")),
        (text("flags"), Value::Integer(1.into())),
        (text("offset"), Value::Integer(0.into())),
        (text("dev"), Value::Integer(0.into())),
        (text("ino"), Value::Integer(4242.into())),
    ]));
    let Value::Array(tasks) = field(&mut m, "tasks") else {
        panic!("tasks is not an array")
    };
    let Value::Array(fds) = field(&mut tasks[0], "fds") else {
        panic!("fds is not an array")
    };
    fds.retain_mut(|f| field(f, "fd").as_integer() != Some(fd.into()));
    fds.push(Value::Map(vec![
        (text("fd"), Value::Integer(fd.into())),
        (text("description"), Value::Integer(index.into())),
        (text("cloexec"), Value::Bool(false)),
    ]));
    let mut out = Vec::new();
    ciborium::ser::into_writer(&m, &mut out).unwrap();
    out
}

#[test]
fn an_image_whose_external_fd_names_no_printable_object_is_malformed() {
    let env = Env::require();
    let dir = TestDir::new(&env, "stdio-malformed");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let unsigned = dir.work.join("u.ckpt");
    env.dump_ok(&dir, c.proc.pid, &unsigned, &["--unsigned"]);
    c.proc.wait_gone("dump kills the target");
    let bytes = fs::read(&unsigned).unwrap();
    let l = Layout::parse(&bytes).unwrap();
    let m: Value =
        ciborium::de::from_reader(&bytes[l.manifest.start as usize..l.manifest.end as usize])
            .unwrap();

    // The control: an external fd 5 naming a pipe is a well-formed
    // (unsigned) image.
    let control = dir.work.join("fd2.ckpt");
    write_owned(
        &control,
        &with_manifest(&bytes, &with_external_fd(&m, 5, "pipe:[4242]")).unwrap(),
        &env.user,
    );
    env.verify(&dir, &["verify", path_str(&control)])
        .assert_code(exit::UNSIGNED, "External on fd 5");

    let bad = dir.work.join("fd5.ckpt");
    write_owned(
        &bad,
        &with_manifest(&bytes, &with_external_fd(&m, 5, "pipe:[4242]\0x")).unwrap(),
        &env.user,
    );
    let count_before = fs::read(&c.file).unwrap();
    let pidfile = dir.work.join("fd5.pid");
    for args in [
        vec!["verify", path_str(&bad)],
        vec!["inspect", path_str(&bad)],
        vec!["restore", path_str(&bad), "--pidfile", path_str(&pidfile)],
    ] {
        let run = env.verify(&dir, &args);
        run.assert_code(exit::TAMPERED, &format!("{} of External on fd 5", args[0]));
        assert!(
            run.stderr.contains("kind.connected_to"),
            "{}: the refusal names the field\n{run}",
            args[0]
        );
    }
    assert!(!pidfile.exists(), "a refused restore wrote its pid file");
    assert_eq!(
        fs::read(&c.file).unwrap(),
        count_before,
        "a refused image ran"
    );
}
