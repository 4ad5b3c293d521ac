//! Unix sockets connected to nothing: a server's listening sockets (bound
//! to a path and to an abstract name), a bound datagram socket and unbound
//! ones. The listeners workload holds them, is dumped and restored through
//! the installed helpers as an unprivileged user, and checks them itself by
//! connecting, accepting and sending. The socket files the dump left behind
//! (nobody listens on them any more) are replaced by a restore as the
//! caller, and by a privileged one only when they are the original's own;
//! a path still in use (the original left running) fails the restore
//! naming it, and the original carries on. The unix_peers workload holds
//! sockets connected to each other by name (datagram clients and servers,
//! a relative name, a connection waiting to be accepted).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use ciborium::Value;
use ckpt_tests::image::{with_manifest, Layout};
use ckpt_tests::policy::PolicyGuard;
use ckpt_tests::syslog::Syslog;
use ckpt_tests::{
    exit, path_str, processes_mentioning, user_dir, wait_ready, workload_result, write_owned, Env,
    Proc, TestDir, Who,
};

fn start(env: &Env, dir: &TestDir) -> (Proc, PathBuf) {
    let program = dir.compile(env, "listeners");
    let wdir = user_dir(env, dir, "l");
    let proc = Proc::spawn(
        env,
        Who::User(&env.user),
        &program,
        &[path_str(&wdir)],
        &wdir,
        &[],
        &dir.work.join("listeners.log"),
    );
    wait_ready(&wdir, "listeners");
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

/// A restore built as root (an `exe-link` grant) removes a stale socket
/// file only if it is the one the original bound (its inode is in the
/// signed image): a socket file put there since fails it, naming the path
/// and left in place; once the user removed that one, the same restore
/// replaces the original's stale files and recreates every socket.
#[test]
fn a_privileged_restore_refuses_a_replaced_socket_file_then_recreates_them() {
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
    // Another socket file at the same path: not the original's (made
    // while the original's still exists, so it cannot reuse its inode).
    let other = wdir.join("other.sock");
    drop(std::os::unix::net::UnixListener::bind(&other).unwrap());
    fs::rename(&other, &srv).unwrap();
    let replaced = fs::symlink_metadata(&srv).unwrap();

    let (run, restored) = env.restore(&dir, &image, None);
    assert!(restored.is_none(), "the restore must fail\n{run}");
    run.assert_code(
        exit::RESTORE_FAILED,
        "privileged restore over a replaced file",
    );
    assert!(
        run.stderr
            .contains(&format!("unix socket to {} again", path_str(&srv)))
            && run.stderr.contains("not the one saved at dump")
            && run
                .stderr
                .contains("a privileged restore does not remove it"),
        "the failure names the path and says why\n{run}"
    );
    let still = fs::symlink_metadata(&srv).expect("the replaced file is left");
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&still),
        std::os::unix::fs::MetadataExt::ino(&replaced),
        "a privileged restore removes nothing but the original's socket file"
    );

    fs::remove_file(&srv).unwrap();
    let (run, mut restored) = env.restore_ok(&dir, &image, None);
    assert!(
        run.stderr.contains("removed the stale socket file")
            && run.stderr.contains(path_str(&wdir.join("dg.sock"))),
        "the privileged restore replaced the original's own stale dg.sock\n{run}"
    );
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

/// The unix_peers workload (datagram clients connected one way to bound
/// servers, with queued datagrams and their senders; a datagram socket
/// connected to itself; a listener bound to a relative name; a listener
/// with an accepted connection and one waiting to be accepted, its socket
/// file of mode 0640), started in `DIR/p` as the test user.
fn start_peers(env: &Env, dir: &TestDir) -> (Proc, PathBuf) {
    let program = dir.compile(env, "unix_peers");
    let wdir = user_dir(env, dir, "p");
    let proc = Proc::spawn(
        env,
        Who::User(&env.user),
        &program,
        &[path_str(&wdir)],
        &wdir,
        &[],
        &dir.work.join("unix_peers.log"),
    );
    wait_ready(&wdir, "unix_peers");
    (proc, wdir)
}

fn peers_restored(env: &Env, dir: &TestDir, wdir: &Path, image: &Path) {
    let (run, mut restored) = env.restore_ok(dir, image, None);
    for f in ["srv.dg", "rel.sock", "lsn.sock"] {
        assert!(
            run.stderr.contains("removed the stale socket file") && run.stderr.contains(f),
            "the restore says it replaced the stale {f}\n{run}"
        );
    }
    fs::write(wdir.join("go"), b"go\n").unwrap();
    let result = workload_result(
        &mut restored,
        &wdir.join("result"),
        &dir.work.join("unix_peers.log"),
        "unix_peers",
    );
    assert_eq!(
        result, "OK\n",
        "unix_peers after restore reported: {result}"
    );
}

/// Sockets connected by name inside the process come back connected, with
/// their queued datagrams and senders, the relative name bound again in
/// its directory, the waiting connection waiting again: restored as the
/// caller.
#[test]
fn unix_sockets_connected_by_name_are_restored() {
    let env = Env::require();
    let dir = TestDir::new(&env, "sockets-peers");
    let (mut orig, wdir) = start_peers(&env, &dir);
    let image = dir.work.join("p.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    let inspect = env.verify(&dir, &["inspect", path_str(&image)]);
    assert!(
        inspect
            .stdout
            .contains("stream, bound to rel.sock, listening (backlog 7)"),
        "inspect shows the relative name\n{inspect}"
    );
    peers_restored(&env, &dir, &wdir, &image);
}

/// The same, restored by a root-built stub (an `exe-link` grant): the
/// stale socket files are the original's own, so they are replaced.
#[test]
fn unix_sockets_connected_by_name_are_restored_by_a_privileged_restore() {
    let env = Env::require();
    let guard = PolicyGuard::lock(&env);
    guard.grant_exe_link("e2e-sockets-peers", &env.user.name);
    let dir = TestDir::new(&env, "sockets-peers-root");
    let (mut orig, wdir) = start_peers(&env, &dir);
    let image = dir.work.join("p.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    peers_restored(&env, &dir, &wdir, &image);
    drop(guard);
}

/// A relative name whose socket file is not in the working directory (the
/// process changed directory after binding) is refused at dump, naming
/// the name and the directory; a connection waiting on a listener from a
/// socket outside the process still is too.
#[test]
fn a_relative_name_bound_elsewhere_is_refused_at_dump() {
    let env = Env::require();
    let dir = TestDir::new(&env, "sockets-rel-moved");
    let program = dir.compile(&env, "unix_peers");
    let wdir = dir.work.join("p");
    let other = dir.work.join("elsewhere");
    for d in [&wdir, &other] {
        fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(env.user.uid), Some(env.user.gid)).unwrap();
    }
    // Started in `elsewhere` with DIR = p: rel.sock is bound in
    // `elsewhere`, and the process moves to p before saying ready.
    let mut orig = Proc::spawn(
        &env,
        Who::User(&env.user),
        &program,
        &[path_str(&wdir)],
        &other,
        &[("UNIX_PEERS_CHDIR", path_str(&wdir))],
        &dir.work.join("unix_peers.log"),
    );
    wait_ready(&wdir, "unix_peers");
    let image = dir.work.join("p.ckpt");
    let run = env.sign(
        &dir,
        &[
            "dump",
            "--pid",
            &orig.pid.to_string(),
            "-o",
            path_str(&image),
        ],
    );
    run.assert_code(exit::DUMP_FAILED, "dump of a relative name bound elsewhere");
    assert!(
        run.stderr
            .contains("bound to the relative name \"rel.sock\"")
            && run
                .stderr
                .contains(&format!("is not {}/rel.sock", path_str(&wdir))),
        "the refusal names the name and where it looked\n{run}"
    );
    assert!(!image.exists(), "a refused dump leaves no image");
    orig.assert_untouched("a refused dump");
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

/// A connection waiting to be accepted whose client already wrote to it:
/// those bytes sit in a socket nothing can read without accepting it, so
/// the dump refuses, naming the fd and why, and the process carries on.
#[test]
fn a_waiting_connection_that_sent_data_is_refused_at_dump() {
    let env = Env::require();
    let dir = TestDir::new(&env, "sockets-early");
    let program = dir.compile(&env, "unix_peers");
    let wdir = user_dir(&env, &dir, "p");
    let mut orig = Proc::spawn(
        &env,
        Who::User(&env.user),
        &program,
        &[path_str(&wdir)],
        &wdir,
        &[("UNIX_PEERS_EARLY_DATA", "1")],
        &dir.work.join("unix_peers.log"),
    );
    wait_ready(&wdir, "unix_peers");
    let image = dir.work.join("p.ckpt");
    let run = env.sign(
        &dir,
        &[
            "dump",
            "--pid",
            &orig.pid.to_string(),
            "-o",
            path_str(&image),
        ],
    );
    run.assert_code(exit::DUMP_FAILED, "dump of a waiting connection with data");
    assert!(
        run.stderr.contains("cannot checkpoint fd 80 (socket:[")
            && run
                .stderr
                .contains("whose connection waits to be accepted, with data sent on it"),
        "the refusal names the fd and why\n{run}"
    );
    assert!(!image.exists(), "a refused dump leaves no image");
    orig.assert_untouched("a refused dump");
}
