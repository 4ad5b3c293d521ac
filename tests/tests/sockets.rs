//! Unix sockets connected to nothing: a server's listening sockets (bound
//! to a path and to an abstract name), a bound datagram socket and unbound
//! ones. The listeners workload holds them, is dumped and restored through
//! the installed helpers as an unprivileged user, and checks them itself by
//! connecting, accepting and sending. The socket files the dump left behind
//! (nobody listens on them any more) are replaced by a restore as the
//! caller, refused by a privileged one; a path still in use (the original
//! left running) fails the restore naming it, and the original carries on.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use ciborium::Value;
use ckpt_tests::image::{with_manifest, Layout};
use ckpt_tests::policy::PolicyGuard;
use ckpt_tests::syslog::Syslog;
use ckpt_tests::{
    exit, path_str, processes_mentioning, wait_until, workload_result, write_owned, Env, Proc,
    TestDir, Who, WAIT,
};

fn start(env: &Env, dir: &TestDir) -> (Proc, PathBuf) {
    let program = dir.compile(env, "listeners");
    let wdir = dir.work.join("l");
    fs::create_dir(&wdir).unwrap();
    std::os::unix::fs::chown(&wdir, Some(env.user.uid), Some(env.user.gid)).unwrap();
    let proc = Proc::spawn(
        env,
        Who::User(&env.user),
        &program,
        &[path_str(&wdir)],
        &wdir,
        &[],
        &dir.work.join("listeners.log"),
    );
    wait_until(WAIT, "listeners has written ready", || {
        fs::read_to_string(wdir.join("ready")).is_ok_and(|s| s == "ready\n")
    });
    (proc, wdir)
}

fn ask(proc: &mut Proc, wdir: &Path, log: &Path) -> String {
    fs::write(wdir.join("go"), b"go\n").unwrap();
    workload_result(proc, &wdir.join("result"), log, "listeners")
}

#[test]
fn listening_bound_and_unbound_unix_sockets_are_recreated() {
    let env = Env::require();
    let dir = TestDir::new(&env, "sockets");
    let (mut orig, wdir) = start(&env, &dir);
    let image = dir.work.join("l.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    let srv = wdir.join("srv.sock");
    assert!(
        srv.exists(),
        "the dump leaves the server's socket file behind"
    );

    let inspect = env.verify(&dir, &["inspect", path_str(&image)]);
    let line = |fd: &str| {
        inspect
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(fd))
            .unwrap_or_else(|| panic!("inspect lists {fd}\n{inspect}"))
            .to_string()
    };
    assert!(
        line("60:").contains(&format!(
            "stream, bound to {}, listening (backlog 17)",
            path_str(&srv)
        )),
        "inspect shows fd 60's name and backlog\n{inspect}"
    );
    assert!(
        line("61:").contains("seqpacket, bound to @ckpt-listeners-")
            && line("61:").contains("listening (backlog 5)"),
        "{inspect}"
    );
    assert!(line("63:").contains("datagram, unbound"), "{inspect}");

    let (run, mut restored) = env.restore_ok(&dir, &image, None);
    for f in ["srv.sock", "dg.sock"] {
        assert!(
            run.stderr.contains("removed the stale socket file")
                && run.stderr.contains(path_str(&wdir.join(f))),
            "the restore says it replaced the stale {f}\n{run}"
        );
    }
    let result = ask(&mut restored, &wdir, &dir.work.join("listeners.log"));
    assert_eq!(result, "OK\n", "listeners after restore reported: {result}");
}

/// With the original left running, its path is in use: the restore fails
/// naming it, leaves no process behind, and the original still serves.
#[test]
fn a_path_still_listened_on_fails_the_restore_naming_it() {
    let env = Env::require();
    let dir = TestDir::new(&env, "sockets-lr");
    let (mut orig, wdir) = start(&env, &dir);
    let image = dir.work.join("l.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &["--leave-running"]);
    orig.assert_untouched("--leave-running");
    let before = processes_mentioning(path_str(&wdir));
    let (run, restored) = env.restore(&dir, &image, None);
    assert!(restored.is_none(), "the restore must fail\n{run}");
    run.assert_code(exit::RESTORE_FAILED, "restore while the path is in use");
    let srv = wdir.join("srv.sock");
    assert!(
        run.stderr.contains("cannot bind fd socket:[")
            && run
                .stderr
                .contains(&format!("unix socket to {} again", path_str(&srv)))
            && run.stderr.contains("a socket listens there"),
        "the failure names the path\n{run}"
    );
    assert_eq!(
        processes_mentioning(path_str(&wdir)),
        before,
        "the failed restore left no process behind"
    );
    let result = ask(&mut orig, &wdir, &dir.work.join("listeners.log"));
    assert_eq!(
        result, "OK\n",
        "the original after the failed restore: {result}"
    );
}

/// A restore built as root (an `exe-link` grant) never removes a file: the
/// stale socket file fails it, naming the path; once the user removed the
/// files, the same restore recreates every socket.
#[test]
fn a_privileged_restore_refuses_a_stale_socket_file_then_recreates_them() {
    let env = Env::require();
    let syslog = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    guard.grant_exe_link("e2e-sockets", &env.user.name);
    let dir = TestDir::new(&env, "sockets-root");
    let (mut orig, wdir) = start(&env, &dir);
    let image = dir.work.join("l.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    let srv = wdir.join("srv.sock");

    let (run, restored) = env.restore(&dir, &image, None);
    assert!(restored.is_none(), "the restore must fail\n{run}");
    run.assert_code(exit::RESTORE_FAILED, "privileged restore over a stale file");
    assert!(
        run.stderr
            .contains(&format!("unix socket to {} again", path_str(&srv)))
            && run
                .stderr
                .contains("a privileged restore does not remove it"),
        "the failure names the path and says why\n{run}"
    );
    assert!(srv.exists(), "a privileged restore removes nothing");

    fs::remove_file(&srv).unwrap();
    fs::remove_file(wdir.join("dg.sock")).unwrap();
    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let pid_s = restored.pid.to_string();
    syslog.wait_for("the audit record of the granted restore", |r| {
        r.program == "ckpt-verify"
            && r.get("event") == Some("restore")
            && r.get("pid") == Some(pid_s.as_str())
            && r.get("grants") == Some("exe-link:e2e-sockets")
    });
    let result = ask(&mut restored, &wdir, &dir.work.join("listeners.log"));
    assert_eq!(
        result, "OK\n",
        "listeners after a privileged restore reported: {result}"
    );
    drop(guard);
}

fn entry<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let Value::Map(entries) = v else {
        return None;
    };
    entries
        .iter_mut()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

/// `m` with `key` set to `value` in the first `UnixSocket` description
/// (fd 60, the listener on a path).
fn with_edit(m: &Value, key: &str, value: Value) -> Vec<u8> {
    let mut m = m.clone();
    let Some(Value::Array(ds)) = entry(&mut m, "files") else {
        panic!("no file table")
    };
    let inner = ds
        .iter_mut()
        .find_map(|d| entry(entry(d, "kind")?, "UnixSocket"))
        .expect("a UnixSocket description");
    *entry(inner, key).unwrap_or_else(|| panic!("no {key}")) = value;
    let mut out = Vec::new();
    ciborium::ser::into_writer(&m, &mut out).unwrap();
    out
}

/// An image whose listening socket claims an absurd backlog, a name too
/// long or relative, or an unknown type is malformed: verify, inspect and
/// restore refuse it naming the field, and nothing runs.
#[test]
fn an_image_with_an_absurd_backlog_name_or_type_is_malformed() {
    let env = Env::require();
    let dir = TestDir::new(&env, "sockets-malformed");
    let (mut orig, _wdir) = start(&env, &dir);
    let unsigned = dir.work.join("u.ckpt");
    env.dump_ok(&dir, orig.pid, &unsigned, &["--unsigned"]);
    orig.wait_gone("dump kills the target");
    let bytes = fs::read(&unsigned).unwrap();
    let l = Layout::parse(&bytes).unwrap();
    let m: Value =
        ciborium::de::from_reader(&bytes[l.manifest.start as usize..l.manifest.end as usize])
            .unwrap();
    let control = dir.work.join("control.ckpt");
    write_owned(
        &control,
        &with_manifest(&bytes, &with_edit(&m, "backlog", Value::Integer(17.into()))).unwrap(),
        &env.user,
    );
    env.verify(&dir, &["verify", path_str(&control)])
        .assert_code(exit::UNSIGNED, "the unedited image");

    let long = format!("/{}", "a".repeat(200));
    for (name, key, value, field) in [
        (
            "backlog",
            "backlog",
            Value::Integer(u64::from(u32::MAX).into()),
            "kind.backlog",
        ),
        ("long", "name", Value::Text(long), "kind.name"),
        (
            "relative",
            "name",
            Value::Text("srv.sock".into()),
            "kind.name",
        ),
        (
            "type",
            "sock_type",
            Value::Integer(3.into()),
            "kind.sock_type",
        ),
    ] {
        let bad = dir.work.join(format!("{name}.ckpt"));
        write_owned(
            &bad,
            &with_manifest(&bytes, &with_edit(&m, key, value)).unwrap(),
            &env.user,
        );
        let pidfile = dir.work.join(format!("{name}.pid"));
        for args in [
            vec!["verify", path_str(&bad)],
            vec!["inspect", path_str(&bad)],
            vec!["restore", path_str(&bad), "--pidfile", path_str(&pidfile)],
        ] {
            let run = env.verify(&dir, &args);
            run.assert_code(exit::TAMPERED, &format!("{} of {name}", args[0]));
            assert!(
                run.stderr.contains("files[") && run.stderr.contains(field),
                "{} of {name}: the refusal names the field {field}\n{run}",
                args[0]
            );
        }
        assert!(!pidfile.exists(), "a refused restore wrote its pid file");
    }
}
