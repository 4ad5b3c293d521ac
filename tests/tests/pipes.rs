//! Pipes, FIFOs and unix socket pairs with unread data: the pipes workload
//! holds each (sizes, flags, dup'ed ends, packet mode, a closed write end,
//! stream / datagram / seqpacket pairs with queued data both ways, a
//! shutdown, SO_PASSCRED, pipe ends reopened through /proc with their own
//! flags, a FIFO opened twice), is dumped and restored through the installed
//! helpers as an unprivileged user, and checks them itself. A dump leaves
//! the data in place (`--leave-running`). A socket pair whose other end
//! was closed keeps its queue. A pipe or socket connected to another
//! process is taken as connected outside the image (see stdio.rs); what
//! cannot be restored yet is refused naming the fd.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use ciborium::Value;
use ckpt_tests::image::{with_manifest, Layout};
use ckpt_tests::policy::PolicyGuard;
use ckpt_tests::syslog::Syslog;
use ckpt_tests::{
    exit, path_str, user_dir, wait_ready, wait_until, workload_result, write_owned, Env, Proc,
    TestDir, Who, WAIT,
};

fn start(env: &Env, dir: &TestDir) -> (Proc, PathBuf) {
    let program = dir.compile(env, "pipes");
    let wdir = user_dir(env, dir, "pipes");
    let proc = Proc::spawn(
        env,
        Who::User(&env.user),
        &program,
        &[path_str(&wdir)],
        &wdir,
        &[],
        &dir.work.join("pipes.log"),
    );
    let ready = wdir.join("ready");
    wait_until(WAIT, "pipes has written ready", || {
        fs::read_to_string(&ready).is_ok_and(|s| s == "ready\n")
    });
    (proc, wdir)
}

fn ask(proc: &mut Proc, wdir: &Path, log: &Path) -> String {
    fs::write(wdir.join("go"), b"go\n").unwrap();
    workload_result(proc, &wdir.join("result"), log, "pipes")
}

#[test]
fn pipes_fifos_and_socket_pairs_keep_their_data() {
    let env = Env::require();
    let dir = TestDir::new(&env, "pipes");
    let (mut orig, wdir) = start(&env, &dir);
    let image = dir.work.join("pipes.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");

    let run = env.verify(&dir, &["inspect", path_str(&image)]);
    run.assert_code(exit::OK, "inspect");
    for want in [
        "pipe pipe:[",
        "size 262144, 200000 bytes queued",
        "5 bytes queued in 2 packets",
        "fifo ",
        "unix-socket socket:[",
        "stream, peer socket:[",
        "1 messages (5000 bytes) queued, shut down for writing",
        "datagram, peer socket:[",
        "3 messages (70019 bytes) queued",
        "seqpacket, peer socket:[",
    ] {
        assert!(
            run.stdout.contains(want),
            "inspect does not show {want:?}\n{run}"
        );
    }

    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let result = ask(&mut restored, &wdir, &dir.work.join("pipes.log"));
    assert_eq!(result, "OK\n", "pipes after restore reported: {result}");
}

#[test]
fn a_dump_leaves_the_data_where_it_was() {
    let env = Env::require();
    let dir = TestDir::new(&env, "pipes-lr");
    let (mut orig, wdir) = start(&env, &dir);
    let image = dir.work.join("pipes.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &["--leave-running"]);
    orig.assert_untouched("--leave-running");
    let log = dir.work.join("pipes.log");
    let result = ask(&mut orig, &wdir, &log);
    assert_eq!(result, "OK\n", "pipes left running reported: {result}");
    fs::remove_file(wdir.join("go")).unwrap();
    fs::remove_file(wdir.join("result")).unwrap();

    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let result = ask(&mut restored, &wdir, &log);
    assert_eq!(
        result, "OK\n",
        "pipes restored from a --leave-running image reported: {result}"
    );
}

/// Through a restore built as root (an `exe-link` grant): pipes and
/// sockets are created by the stub, the FIFO reopened by path with
/// `RESOLVE_NO_SYMLINKS`, and the workload finds them intact.
#[test]
fn a_privileged_restore_recreates_them_too() {
    let env = Env::require();
    let syslog = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    guard.grant_exe_link("e2e-pipes", &env.user.name);
    let dir = TestDir::new(&env, "pipes-root");
    let (mut orig, wdir) = start(&env, &dir);
    let image = dir.work.join("pipes.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");

    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let pid_s = restored.pid.to_string();
    syslog.wait_for("the audit record of the granted restore", |r| {
        r.program == "ckpt-verify"
            && r.get("event") == Some("restore")
            && r.get("pid") == Some(pid_s.as_str())
            && r.get("grants") == Some("exe-link:e2e-pipes")
    });
    let result = ask(&mut restored, &wdir, &dir.work.join("pipes.log"));
    assert_eq!(
        result, "OK\n",
        "pipes after a privileged restore reported: {result}"
    );
    drop(guard);
}

/// `python3` holding a pipe with data it has not read (os.pipe), and a
/// socketpair: after restore it reads both and reports. (It first closes
/// what it inherited from the test harness, such as cargo's jobserver
/// pipe, whose other end is outside and would rightly be refused.)
#[test]
fn python_keeps_its_pipe_and_socketpair() {
    let env = Env::require();
    let dir = TestDir::new(&env, "pipes-python");
    let wdir = user_dir(&env, &dir, "py");
    let script = wdir.join("p.py");
    fs::write(
        &script,
        "import os, socket, sys, time\n\
         os.closerange(3, 65536)\n\
         d = sys.argv[1]\n\
         r, w = os.pipe()\n\
         os.write(w, b'from-python' * 1000)\n\
         a, b = socket.socketpair()\n\
         a.send(b'sock-msg')\n\
         open(d + '/ready', 'w').write('ready\\n')\n\
         while not os.path.exists(d + '/go'):\n\
         \x20   time.sleep(0.02)\n\
         got = os.read(r, 11000)\n\
         msg = b.recv(100)\n\
         os.write(w, b'after')\n\
         after = os.read(r, 100)\n\
         ok = got == b'from-python' * 1000 and msg == b'sock-msg' and after == b'after'\n\
         open(d + '/result', 'w').write('OK\\n' if ok else 'FAIL: %r %r %r\\n' % (len(got), msg, after))\n",
    )
    .unwrap();
    // The exe link names the interpreter itself, not the python3 symlink.
    let python = fs::canonicalize("/usr/bin/python3").unwrap();
    let mut orig = Proc::spawn(
        &env,
        Who::User(&env.user),
        &python,
        &[path_str(&script), path_str(&wdir)],
        &wdir,
        &[],
        &dir.work.join("py.log"),
    );
    wait_ready(&wdir, "python");
    let image = dir.work.join("py.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let result = ask(&mut restored, &wdir, &dir.work.join("py.log"));
    assert_eq!(result, "OK\n", "python after restore reported: {result}");
}

/// Starts the `unsupported` workload in `mode` and returns the stderr of
/// its refused dump, checked to leave no image and the target untouched.
fn refused(mode: &str) -> String {
    let env = Env::require();
    let dir = TestDir::new(&env, &format!("pipes-refused-{mode}"));
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
    if let Some(other) = fs::read_to_string(&ready).unwrap().lines().nth(1) {
        p.kill_also(other.parse().unwrap());
    }
    let image = dir.work.join("u.ckpt");
    let run = env.sign(
        &dir,
        &["dump", "--pid", &p.pid.to_string(), "-o", path_str(&image)],
    );
    run.assert_code(exit::DUMP_FAILED, &format!("dump of {mode}"));
    assert!(!image.exists(), "a refused dump left an image");
    p.assert_untouched("after a refused dump");
    run.stderr
}

/// The `unsupported` workload in `mode` holds fd 3 connected to another
/// process (which it started): the dump takes it as connected outside the
/// image, with a notice naming fd 3; the dump's stderr.
fn dumped_as_external(mode: &str) -> String {
    let env = Env::require();
    let dir = TestDir::new(&env, &format!("pipes-external-{mode}"));
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
    if let Some(other) = fs::read_to_string(&ready).unwrap().lines().nth(1) {
        p.kill_also(other.parse().unwrap());
    }
    let image = dir.work.join("u.ckpt");
    let run = env.dump_ok(&dir, p.pid, &image, &[]);
    p.wait_gone("dump kills the target");
    run.stderr
}

#[test]
fn a_pipe_whose_other_end_is_outside_is_dumped_as_external_naming_the_fd() {
    let err = dumped_as_external("pipe");
    assert!(
        err.contains("notice: fd 3 is connected outside the process (pipe:[")
            && err.contains("--inherit-fd 3"),
        "{err}"
    );
}

#[test]
fn a_socket_connected_outside_is_dumped_as_external_naming_the_fd() {
    let err = dumped_as_external("unix");
    assert!(
        err.contains("notice: fd 3 is connected outside the process (socket:[")
            && err.contains("--inherit-fd 3"),
        "{err}"
    );
}

#[test]
fn a_listening_unix_socket_with_a_connection_waiting_is_refused_naming_the_fd() {
    let err = refused("listen");
    assert!(
        err.contains("fd 3 (socket:[")
            && err.contains("a listening unix stream socket on @ckpt-test-")
            && err.contains("with 1 connections waiting to be accepted"),
        "{err}"
    );
}

/// A bound datagram socket with a datagram queued from a socket since
/// closed is saved with its queue (the queue belongs to the receiver; the
/// sender was unbound, so restore sends it again from an unbound socket).
#[test]
fn a_bound_datagram_socket_with_a_datagram_queued_is_saved_with_it() {
    let env = Env::require();
    let dir = TestDir::new(&env, "pipes-bound");
    let program = dir.compile(&env, "unsupported");
    let ready = dir.work.join("ready");
    let mut p = Proc::spawn(
        &env,
        Who::User(&env.user),
        &program,
        &["bound", path_str(&ready)],
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
    let inspect = env.verify(&dir, &["inspect", path_str(&image)]);
    assert!(
        inspect.stdout.contains("datagram, bound to @ckpt-test-")
            && inspect.stdout.contains("1 datagrams (1 bytes) queued"),
        "the image holds the bound socket and its datagram\n{inspect}"
    );
}

#[test]
fn fds_in_flight_are_refused_naming_the_fd() {
    let err = refused("scm");
    assert!(
        err.contains("(socket:[") && err.contains("with 1 file descriptors in flight (SCM_RIGHTS)"),
        "{err}"
    );
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

/// `m` with `key` set to `value` in the first description of kind `kind`.
fn with_edit(m: &Value, kind: &str, key: &str, value: Value) -> Vec<u8> {
    let mut m = m.clone();
    let Some(Value::Array(ds)) = entry(&mut m, "files") else {
        panic!("no file table")
    };
    let inner = ds
        .iter_mut()
        .find_map(|d| entry(entry(d, "kind")?, kind))
        .unwrap_or_else(|| panic!("no {kind} description"));
    *entry(inner, key).unwrap_or_else(|| panic!("no {key}")) = value;
    let mut out = Vec::new();
    ciborium::ser::into_writer(&m, &mut out).unwrap();
    out
}

/// An image whose pipe claims an absurd size, whose pipe holds more than
/// its size, or whose socket names a peer that is not in it, is malformed:
/// verify, inspect and restore refuse it naming the field, and nothing
/// runs.
#[test]
fn an_image_with_an_absurd_pipe_or_a_missing_peer_is_malformed() {
    let env = Env::require();
    let dir = TestDir::new(&env, "pipes-malformed");
    let (mut orig, _wdir) = start(&env, &dir);
    let unsigned = dir.work.join("u.ckpt");
    env.dump_ok(&dir, orig.pid, &unsigned, &["--unsigned"]);
    orig.wait_gone("dump kills the target");
    let bytes = fs::read(&unsigned).unwrap();
    let l = Layout::parse(&bytes).unwrap();
    let m: Value =
        ciborium::de::from_reader(&bytes[l.manifest.start as usize..l.manifest.end as usize])
            .unwrap();
    // The control: re-encoding without an edit is a well-formed image.
    let control = dir.work.join("control.ckpt");
    write_owned(
        &control,
        &with_manifest(
            &bytes,
            &with_edit(&m, "Pipe", "size", Value::Integer(262_144.into())),
        )
        .unwrap(),
        &env.user,
    );
    env.verify(&dir, &["verify", path_str(&control)])
        .assert_code(exit::UNSIGNED, "the unedited image");

    for (name, kind, key, value, field) in [
        (
            "huge",
            "Pipe",
            "size",
            Value::Integer(u64::from(u32::MAX).into()),
            "kind.size",
        ),
        (
            "small",
            "Pipe",
            "size",
            Value::Integer(4096.into()),
            "kind.size",
        ),
        (
            "peer",
            "UnixPair",
            "peer_ino",
            Value::Integer(1.into()),
            "kind.peer_ino",
        ),
        (
            "type",
            "UnixPair",
            "sock_type",
            Value::Integer(3.into()),
            "kind.sock_type",
        ),
    ] {
        let bad = dir.work.join(format!("{name}.ckpt"));
        write_owned(
            &bad,
            &with_manifest(&bytes, &with_edit(&m, kind, key, value)).unwrap(),
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
