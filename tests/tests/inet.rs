//! TCP and UDP sockets, IPv4 and IPv6: a server's listeners (on
//! 127.0.0.1, on ::1 with IPV6_V6ONLY, on :: dual stack), bound and
//! connected UDP sockets and TCP sockets not connected, dumped and
//! restored through the installed helpers by the test user, as the caller
//! and in a root-built (granted) restore; the workload checks its sockets
//! itself and then serves connections and datagrams the test sends from
//! outside. `python3 -m http.server` is dumped and restored and answers a
//! GET. Refused: an established connection (named with its peer, the
//! process left running); a port another process took before the restore
//! fails the restore naming the address and port, leaving no process; a
//! port below 1024 of a root process's image is bound in a granted
//! restore only with the `capabilities` grant; an image with a bad
//! address, backlog or type is malformed.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ciborium::Value;
use ckpt_tests::image::{with_manifest, Layout};
use ckpt_tests::policy::PolicyGuard;
use ckpt_tests::syslog::Syslog;
use ckpt_tests::{
    exit, path_str, processes_mentioning, wait_until, workload_result, write_owned, Env, Proc,
    TestDir, Who, WAIT,
};

/// The workload's ports: TCP listeners on 127.0.0.1, [::1] and [::], the
/// UDP socket on 127.0.0.1.
struct Ports {
    v4: u16,
    v6: u16,
    dual: u16,
    udp: u16,
}

fn start(env: &Env, dir: &TestDir) -> (Proc, PathBuf, Ports) {
    start_as(env, dir, Who::User(&env.user), None)
}

/// The workload run by `who`, its IPv4 listener on `port` when given.
fn start_as(env: &Env, dir: &TestDir, who: Who, port: Option<u16>) -> (Proc, PathBuf, Ports) {
    let program = dir.compile(env, "inet");
    let wdir = dir.work.join("w");
    fs::create_dir(&wdir).unwrap();
    std::os::unix::fs::chown(&wdir, Some(env.user.uid), Some(env.user.gid)).unwrap();
    // The log, the user's even for a root workload: a restore as the user
    // reopens it.
    let log = dir.work.join("inet.log");
    ckpt_tests::write_owned(&log, b"", &env.user);
    let port_s = port.map(|p| p.to_string());
    let mut args = vec![path_str(&wdir)];
    args.extend(port_s.as_deref());
    let proc = Proc::spawn(env, who, &program, &args, &wdir, &[], &log);
    let ready = wdir.join("ready");
    wait_until(WAIT, "inet has written ready", || {
        fs::read_to_string(&ready)
            .is_ok_and(|s| s.starts_with("ready\n") && s.ends_with('\n') && s.lines().count() == 2)
    });
    let text = fs::read_to_string(&ready).unwrap();
    let p: Vec<u16> = text
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let ports = Ports {
        v4: p[0],
        v6: p[1],
        dual: p[2],
        udp: p[3],
    };
    (proc, wdir, ports)
}

/// One line to `addr` and its echo back.
fn echo(addr: SocketAddr, line: &str) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(line.as_bytes()).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .unwrap_or_else(|e| panic!("echo from {addr}: {e}"));
    assert_eq!(
        String::from_utf8_lossy(&got),
        line,
        "the restored listener on {addr} echoes the line"
    );
}

/// Tells the restored workload to go, uses every socket from outside, and
/// returns what it reported.
fn serve(proc: &mut Proc, wdir: &Path, log: &Path, ports: &Ports) -> String {
    fs::write(wdir.join("go"), b"go\n").unwrap();
    echo(
        SocketAddr::from(([127, 0, 0, 1], ports.v4)),
        "to the IPv4 listener\n",
    );
    echo(
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, ports.v6)),
        "to the IPv6 listener\n",
    );
    // IPV6_V6ONLY off: the [::] listener takes IPv4 connections too.
    echo(
        SocketAddr::from(([127, 0, 0, 1], ports.dual)),
        "to the dual-stack listener, over IPv4\n",
    );
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    u.send_to(b"late", ("127.0.0.1", ports.udp)).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = u
        .recv_from(&mut buf)
        .expect("an answer from the UDP socket");
    assert_eq!(&buf[..n], b"pong");
    assert_eq!(from, SocketAddr::from(([127, 0, 0, 1], ports.udp)));
    workload_result(proc, &wdir.join("result"), log, "inet")
}

#[test]
fn tcp_listeners_and_udp_sockets_are_restored_and_serve() {
    let env = Env::require();
    // The default policy (a restore as the caller) while this test runs.
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "inet");
    let (mut orig, wdir, ports) = start(&env, &dir);
    // A datagram queued at dump: not kept, and the dump says so.
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"early", ("127.0.0.1", ports.udp))
        .unwrap();
    let image = dir.work.join("i.ckpt");
    let dump = env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    assert!(
        format!("{}{}", dump.stdout, dump.stderr)
            .contains("fd 13 is a UDP socket with 1 datagrams queued; they are not kept"),
        "the dump tells the queued datagram is not kept\n{dump}"
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
    let l10 = line("10:");
    assert!(
        l10.contains(&format!(
            "TCP IPv4, bound to 127.0.0.1:{}, listening (backlog 7)",
            ports.v4
        )) && l10.contains("SO_REUSEADDR")
            && l10.contains("SO_KEEPALIVE")
            && l10.contains("TCP_NODELAY")
            && l10.contains("SO_RCVBUF"),
        "inspect shows fd 10's family, address, port, backlog and options\n{inspect}"
    );
    assert!(
        line("11:").contains(&format!(
            "TCP IPv6, bound to [::1]:{}, listening (backlog 3) [SO_REUSEPORT, IPV6_V6ONLY]",
            ports.v6
        )),
        "{inspect}"
    );
    assert!(
        line("12:").contains(&format!("TCP IPv6, bound to [::]:{}", ports.dual))
            && !line("12:").contains("IPV6_V6ONLY"),
        "{inspect}"
    );
    assert!(
        line("13:").contains(&format!("UDP IPv4, bound to 127.0.0.1:{}", ports.udp))
            && line("13:").contains("1 queued datagrams not kept"),
        "{inspect}"
    );
    assert!(
        line("14:").contains("UDP IPv6, bound to [::1]:")
            && line("14:").contains(", connected to [::1]:"),
        "{inspect}"
    );
    assert!(
        line("16:").contains("TCP IPv4, unbound, not listening"),
        "{inspect}"
    );
    assert!(
        line("17:").contains("TCP IPv4, bound to 127.0.0.1:")
            && line("17:").contains("not listening"),
        "{inspect}"
    );

    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let result = serve(&mut restored, &wdir, &dir.work.join("inet.log"), &ports);
    assert_eq!(result, "OK\n", "inet after restore reported: {result}");
}

/// Another process took the IPv4 listener's port after the dump: the
/// restore fails naming the address and port and saying it is taken, and
/// leaves no process behind; once the port is free, the same image
/// restores and serves.
#[test]
fn a_port_taken_at_restore_fails_naming_it_and_leaves_no_process() {
    let env = Env::require();
    // The default policy (a restore as the caller) while this test runs.
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "inet-taken");
    let (mut orig, wdir, ports) = start(&env, &dir);
    let image = dir.work.join("i.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");

    let squatter = TcpListener::bind(("127.0.0.1", ports.v4)).expect("take the port");
    let before = processes_mentioning(path_str(&wdir));
    let (run, restored) = env.restore(&dir, &image, None);
    assert!(restored.is_none(), "the restore must fail\n{run}");
    run.assert_code(exit::RESTORE_FAILED, "restore while the port is taken");
    assert!(
        run.stderr
            .contains(&format!("TCP socket to 127.0.0.1:{} again", ports.v4))
            && run.stderr.contains(&format!("port {} is taken", ports.v4)),
        "the failure names the address and port and says it is taken\n{run}"
    );
    assert_eq!(
        processes_mentioning(path_str(&wdir)),
        before,
        "the failed restore left no process behind"
    );
    drop(squatter);

    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let result = serve(&mut restored, &wdir, &dir.work.join("inet.log"), &ports);
    assert_eq!(result, "OK\n", "inet after the second restore: {result}");
}

/// A restore built as root (an `exe-link` grant): the stub creates and
/// binds the sockets with the restored process's rights, and they serve.
#[test]
fn a_root_built_granted_restore_recreates_the_sockets() {
    let env = Env::require();
    let syslog = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    guard.grant_exe_link("e2e-inet", &env.user.name);
    let dir = TestDir::new(&env, "inet-root");
    let (mut orig, wdir, ports) = start(&env, &dir);
    let image = dir.work.join("i.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let pid_s = restored.pid.to_string();
    syslog.wait_for("the audit record of the granted restore", |r| {
        r.program == "ckpt-verify"
            && r.get("event") == Some("restore")
            && r.get("pid") == Some(pid_s.as_str())
            && r.get("grants") == Some("exe-link:e2e-inet")
    });
    let status = ckpt_tests::procfs::status(restored.pid).expect("status");
    let uid = env.user.uid.to_string();
    assert!(
        status
            .get("Uid")
            .is_some_and(|u| u.split_whitespace().all(|x| x == uid)),
        "the restored process runs as the user: {status:?}"
    );
    let result = serve(&mut restored, &wdir, &dir.work.join("inet.log"), &ports);
    assert_eq!(result, "OK\n", "inet after a granted restore: {result}");
    drop(guard);
}

/// A root process listening on a port below 1024, its image restored by
/// the user with its credentials (uid 0) granted: without the
/// `capabilities` grant the restored process holds no capability, and the
/// root-built stub binds with exactly those rights, so the restore fails
/// naming the port; with the grant (CAP_NET_BIND_SERVICE among the saved
/// capabilities) the same image restores and serves.
#[test]
fn a_granted_restore_binds_a_low_port_only_with_the_capability_to() {
    let env = Env::require();
    let syslog = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "inet-low");
    let low = (900..1000)
        .rev()
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 1000");
    let (mut orig, wdir, ports) = start_as(&env, &dir, Who::Root, Some(low));
    assert_eq!(ports.v4, low);
    let (_dump, image) = ckpt_tests::reporter::dump_as_root(&env, &dir, orig.pid, "low", &[]);
    orig.wait_gone("dump kills the target");
    let rule = |grants: &str| {
        format!(
            "[[rule]]\n\
             name = \"e2e-inet-low\"\n\
             signed_by = [\"this-host\"]\n\
             requester = [\"uid:0\"]\n\
             caller = [{}]\n\
             grant = [{grants}]\n",
            ckpt_tests::policy::toml_str(&format!("user:{}", env.user.name))
        )
    };
    guard.policy(&rule("\"credentials\", \"exe-link\""));
    let before = processes_mentioning(path_str(&wdir));
    let (run, restored) = env.restore(&dir, &image, None);
    assert!(restored.is_none(), "the restore must fail\n{run}");
    run.assert_code(
        exit::RESTORE_FAILED,
        "restore of a low port without capabilities",
    );
    assert!(
        run.stderr
            .contains(&format!("TCP socket to 127.0.0.1:{low} again"))
            && run
                .stderr
                .contains("may not bind it (it needs CAP_NET_BIND_SERVICE)"),
        "the failure names the address and port and says why\n{run}"
    );
    assert_eq!(
        processes_mentioning(path_str(&wdir)),
        before,
        "the failed restore left no process behind"
    );

    guard.policy(&rule("\"credentials\", \"capabilities\", \"exe-link\""));
    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let pid_s = restored.pid.to_string();
    syslog.wait_for("the audit record of the granted restore", |r| {
        r.program == "ckpt-verify"
            && r.get("event") == Some("restore")
            && r.get("pid") == Some(pid_s.as_str())
    });
    let result = serve(&mut restored, &wdir, &dir.work.join("inet.log"), &ports);
    assert_eq!(
        result, "OK\n",
        "inet restored with its capabilities: {result}"
    );
    drop(guard);
}

fn python3() -> PathBuf {
    fs::canonicalize("/usr/bin/python3").expect("python3 is installed (scripts/test.sh)")
}

/// `python3 -u -m http.server PORT --bind 127.0.0.1` serving DIR/site (a
/// port the test found free), once it says it serves.
fn http_server(env: &Env, dir: &TestDir) -> (Proc, u16, PathBuf) {
    let site = dir.work.join("site");
    fs::create_dir(&site).unwrap();
    fs::write(site.join("hello-from-ckpt.txt"), b"hello\n").unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.work.join("http.log");
    let port_s = port.to_string();
    let proc = Proc::spawn(
        env,
        Who::User(&env.user),
        &python3(),
        &["-u", "-m", "http.server", &port_s, "--bind", "127.0.0.1"],
        &site,
        &[],
        &log,
    );
    wait_until(WAIT, "http.server says it serves", || {
        fs::read_to_string(&log).is_ok_and(|s| s.contains(&format!("port {port}")))
    });
    (proc, port, log)
}

fn get(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn python_http_server_is_restored_and_answers_a_get() {
    let env = Env::require();
    // The default policy (a restore as the caller) while this test runs.
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "inet-http");
    let (mut orig, port, _log) = http_server(&env, &dir);
    let image = dir.work.join("http.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens on {port} once the server is dumped"
    );
    let (_run, restored) = env.restore_ok(&dir, &image, None);
    let answer = get(port);
    assert!(
        answer.starts_with("HTTP/1.0 200 OK") && answer.contains("hello-from-ckpt.txt"),
        "the restored http.server answers 200 with the directory listing:\n{answer}"
    );
    // And again: it carries on serving.
    assert!(get(port).starts_with("HTTP/1.0 200 OK"));
    drop(restored);
}

/// A connection the server accepted and is still reading from: the dump
/// is refused naming the fd, the server's address and the peer (the
/// test's own end), and the server is left running and answers.
#[test]
fn an_established_connection_is_refused_naming_the_peer() {
    let env = Env::require();
    let dir = TestDir::new(&env, "inet-established");
    let (mut orig, port, _log) = http_server(&env, &dir);
    let mut held = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let me = held.local_addr().unwrap();
    // The server has accepted it once a handler thread waits on it.
    wait_until(WAIT, "http.server accepted the connection", || {
        fs::read_dir(format!("/proc/{}/task", orig.pid))
            .map(|d| d.count() > 1)
            .unwrap_or(false)
    });
    let image = dir.work.join("e.ckpt");
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
    run.assert_code(exit::DUMP_FAILED, "dump of a server holding a connection");
    assert!(
        run.stderr.contains(&format!(
            "a TCP socket (local 127.0.0.1:{port}, peer {me}) established"
        )) && run.stderr.contains("fd "),
        "the refusal names the fd, the local address and the peer\n{run}"
    );
    assert!(!image.exists(), "a refused dump left an image");
    orig.assert_untouched("a refused dump");
    held.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    held.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut got = Vec::new();
    held.read_to_end(&mut got).unwrap();
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.0 200 OK"),
        "the server still serves the connection after the refused dump"
    );
}

/// A listener with a connection the server has not accepted yet: the
/// dump is refused naming the fd, the listener's address and the waiting
/// peer (the test's own end), and the workload is left running.
#[test]
fn a_listener_with_a_connection_waiting_is_refused_naming_the_peer() {
    let env = Env::require();
    let dir = TestDir::new(&env, "inet-waiting");
    let (mut orig, _wdir, ports) = start(&env, &dir);
    let waiting = TcpStream::connect(("127.0.0.1", ports.v4)).unwrap();
    let me = waiting.local_addr().unwrap();
    let image = dir.work.join("w.ckpt");
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
    run.assert_code(
        exit::DUMP_FAILED,
        "dump of a listener with a connection waiting",
    );
    assert!(
        run.stderr.contains("fd 10 (socket:[")
            && run.stderr.contains(&format!(
                "a TCP socket (local 127.0.0.1:{}, peer none) listening with 1 connections \
                 waiting to be accepted (from {me})",
                ports.v4
            )),
        "the refusal names the fd, the listener and the waiting peer\n{run}"
    );
    assert!(!image.exists(), "a refused dump left an image");
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

/// A change to an `InetSocket` description of a manifest.
type Edit = Box<dyn Fn(&mut Value)>;

/// `m` with `edit` applied to the first `InetSocket` description (fd 10,
/// the IPv4 listener).
fn with_edit(m: &Value, edit: impl Fn(&mut Value)) -> Vec<u8> {
    let mut m = m.clone();
    let Some(Value::Array(ds)) = entry(&mut m, "files") else {
        panic!("no file table")
    };
    let inner = ds
        .iter_mut()
        .find_map(|d| entry(entry(d, "kind")?, "InetSocket"))
        .expect("an InetSocket description");
    edit(inner);
    let mut out = Vec::new();
    ciborium::ser::into_writer(&m, &mut out).unwrap();
    out
}

/// An image whose TCP socket claims an address of the other family, a
/// port 0, an absurd backlog or an unknown type is malformed: verify,
/// inspect and restore refuse it naming the field, and nothing runs.
#[test]
fn an_image_with_a_bad_address_backlog_or_type_is_malformed() {
    let env = Env::require();
    let dir = TestDir::new(&env, "inet-malformed");
    let (mut orig, _wdir, _ports) = start(&env, &dir);
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
        &with_manifest(&bytes, &with_edit(&m, |_| {})).unwrap(),
        &env.user,
    );
    env.verify(&dir, &["verify", path_str(&control)])
        .assert_code(exit::UNSIGNED, "the unedited image");

    let set = |key: &'static str, v: Value| {
        move |s: &mut Value| *entry(s, key).unwrap_or_else(|| panic!("no {key}")) = v.clone()
    };
    let local = |key: &'static str, v: Value| {
        move |s: &mut Value| {
            *entry(entry(s, "local").expect("a local address"), key)
                .unwrap_or_else(|| panic!("no local.{key}")) = v.clone()
        }
    };
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "family",
            Box::new(local("ip", Value::Text("::1".into()))),
            "kind.local",
        ),
        (
            "port",
            Box::new(local("port", Value::Integer(0.into()))),
            "kind.local",
        ),
        (
            "backlog",
            Box::new(set("backlog", Value::Integer(u64::from(u32::MAX).into()))),
            "kind.backlog",
        ),
        (
            "type",
            Box::new(set("sock_type", Value::Integer(3.into()))),
            "kind.sock_type",
        ),
    ];
    for (name, edit, field) in cases {
        let bad = dir.work.join(format!("{name}.ckpt"));
        write_owned(
            &bad,
            &with_manifest(&bytes, &with_edit(&m, edit)).unwrap(),
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
