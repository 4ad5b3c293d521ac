//! Real programs nobody here wrote, dumped and restored through the
//! installed helpers as an unprivileged user, each checked to carry on:
//!
//! * `python3` running a `ThreadPoolExecutor` workload that keeps state
//!   (tests/workloads/py_pool.py);
//! * a multi-threaded Rust program, a std thread pool fed through
//!   channels, built by cargo as a bin of this crate
//!   (tests/workloads/rust_pool/main.rs);
//! * a Go HTTP server on a unix socket, built here with Debian's
//!   `golang-go` (tests/workloads/go/server.go), which must still answer,
//!   with its request count carried on, after restore;
//! * `sqlite3` holding an open database with an exclusive lock and an
//!   open transaction, driven through its stdin; the restored shell still
//!   holds the lock and commits;
//! * a JVM on Debian's `default-jre-headless` (tests/workloads/java/
//!   Warm.java, run by the single-file source launcher): warmed up, dumped,
//!   restored, and carrying on on the same thread pool;
//! * `sleep` started on a terminal: still asleep after restore, and a
//!   shorter one finishes after the time it had left.
//!
//! Every workload checks its own state after restore and reports "OK" or
//! what differs. Each program also has a control test, run without any
//! checkpoint, which proves the workload and its self-check work on their
//! own. docs/REAL-PROGRAMS.md lists what each program holds and which
//! engine feature each item needs; a restore test the engine cannot pass
//! yet is `#[ignore]`d with the feature it needs and the refusal it gets.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ckpt_tests::{
    exit, path_str, procfs, wait_until, workload_result, Env, Proc, Run, TestDir, Who,
    HELPER_TIMEOUT, WAIT,
};

/// How long a JVM or a freshly built program may take to get ready on a
/// loaded CI machine.
const SLOW_START: Duration = Duration::from_secs(90);

fn workloads() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads")
}

/// A directory under `work` owned by the test user.
fn user_dir(env: &Env, dir: &TestDir, name: &str) -> PathBuf {
    let p = dir.work.join(name);
    fs::create_dir(&p).unwrap();
    std::os::unix::fs::chown(&p, Some(env.user.uid), Some(env.user.gid)).unwrap();
    p
}

/// Copies `src` into the test's `bin` (root-owned 0755), so the program's
/// argv names the test directory (the harness's safety net kills by it).
fn install(dir: &TestDir, src: &Path, name: &str) -> PathBuf {
    let dst = dir.bin.join(name);
    fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {} to bin: {e}", src.display()));
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).unwrap();
    dst
}

fn threads(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------
// Workloads that write DIR/ready, wait for DIR/go, check themselves and
// write DIR/result (python3, the Rust pool, the JVM).
// ---------------------------------------------------------------------

struct SelfCheck {
    proc: Proc,
    wdir: PathBuf,
    log: PathBuf,
    what: &'static str,
}

impl SelfCheck {
    fn start(
        env: &Env,
        dir: &TestDir,
        what: &'static str,
        program: &Path,
        args: &[&str],
    ) -> SelfCheck {
        let wdir = user_dir(env, dir, "state");
        let log = dir.work.join(format!("{what}.log"));
        let mut full: Vec<&str> = args.to_vec();
        full.push(path_str(&wdir));
        let mut proc = Proc::spawn(env, Who::User(&env.user), program, &full, &wdir, &[], &log);
        let ready = wdir.join("ready");
        wait_until(SLOW_START, &format!("{what} has written ready"), || {
            fs::read_to_string(&ready).is_ok_and(|s| s == "ready\n") || !proc.is_alive()
        });
        assert!(
            proc.is_alive(),
            "{what} exited before it was ready; log:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        SelfCheck {
            proc,
            wdir,
            log,
            what,
        }
    }

    /// Lets `proc` (the original or the restored one) carry on and
    /// returns what it reported about itself.
    fn go(wdir: &Path, log: &Path, what: &str, proc: &mut Proc) -> String {
        fs::write(wdir.join("go"), b"go\n").unwrap();
        workload_result(proc, &wdir.join("result"), log, what)
    }

    /// The control run: no checkpoint at all.
    fn control(mut self) {
        let result = SelfCheck::go(&self.wdir, &self.log, self.what, &mut self.proc);
        assert_eq!(
            result,
            "OK\n",
            "{} (no checkpoint) reported: {result}\nlog:\n{}",
            self.what,
            fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Dump with `--leave-running`: the original carries on and checks
    /// itself; then the image, restored, does the same from the dump point.
    fn leave_running_then_restore(mut self, env: &Env, dir: &TestDir) {
        let pid = self.proc.pid;
        let nthreads = threads(pid);
        let image = dir.work.join(format!("{}.ckpt", self.what));
        env.dump_ok(dir, pid, &image, &["--leave-running"]);
        self.proc.assert_untouched("--leave-running");
        assert_eq!(threads(pid), nthreads, "the original kept its threads");
        let result = SelfCheck::go(&self.wdir, &self.log, self.what, &mut self.proc);
        assert_eq!(
            result,
            "OK\n",
            "{} left running reported: {result}\nlog:\n{}",
            self.what,
            fs::read_to_string(&self.log).unwrap_or_default()
        );
        // The restored copy waits for its go file again.
        fs::remove_file(self.wdir.join("go")).unwrap();
        fs::remove_file(self.wdir.join("result")).unwrap();

        let (_run, mut restored) = env.restore_ok(dir, &image, None);
        assert_eq!(
            threads(restored.pid),
            nthreads,
            "the restored {} has as many threads as at dump",
            self.what
        );
        let result = SelfCheck::go(&self.wdir, &self.log, self.what, &mut restored);
        assert_eq!(
            result,
            "OK\n",
            "{} restored from a --leave-running image reported: {result}\nlog:\n{}",
            self.what,
            fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Dump (which kills the original), restore, let it carry on.
    fn dump_restore_carry_on(mut self, env: &Env, dir: &TestDir) {
        let pid = self.proc.pid;
        let nthreads = threads(pid);
        let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        let image = dir.work.join(format!("{}.ckpt", self.what));
        env.dump_ok(dir, pid, &image, &[]);
        self.proc.wait_gone("dump kills the target");
        env.verify(dir, &["verify", path_str(&image)])
            .assert_code(exit::OK, "verify");

        let (_run, mut restored) = env.restore_ok(dir, &image, None);
        let rpid = restored.pid;
        assert_eq!(
            fs::read_link(format!("/proc/{rpid}/exe")).unwrap(),
            exe,
            "the restored {} runs the same executable",
            self.what
        );
        assert_eq!(
            threads(rpid),
            nthreads,
            "the restored {} has as many threads as at dump",
            self.what
        );
        let result = SelfCheck::go(&self.wdir, &self.log, self.what, &mut restored);
        assert_eq!(
            result,
            "OK\n",
            "{} after restore reported: {result}\nlog:\n{}",
            self.what,
            fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

fn python3() -> PathBuf {
    fs::canonicalize("/usr/bin/python3").expect("python3 is installed (scripts/test.sh)")
}

fn start_python(env: &Env, dir: &TestDir) -> SelfCheck {
    let script = install(dir, &workloads().join("py_pool.py"), "py_pool.py");
    SelfCheck::start(env, dir, "python3", &python3(), &[path_str(&script)])
}

#[test]
fn python_thread_pool_checks_itself_without_checkpoint() {
    let env = Env::require();
    let dir = TestDir::new(&env, "rp-py-control");
    start_python(&env, &dir).control();
}

#[test]
fn python_thread_pool_carries_on_after_restore() {
    let env = Env::require();
    let dir = TestDir::new(&env, "rp-py");
    start_python(&env, &dir).dump_restore_carry_on(&env, &dir);
}

#[test]
fn python_thread_pool_left_running_and_its_image_both_carry_on() {
    let env = Env::require();
    let dir = TestDir::new(&env, "rp-py-lr");
    start_python(&env, &dir).leave_running_then_restore(&env, &dir);
}

fn start_rust_pool(env: &Env, dir: &TestDir) -> SelfCheck {
    let program = install(dir, Path::new(env!("CARGO_BIN_EXE_rust_pool")), "rust_pool");
    SelfCheck::start(env, dir, "rust_pool", &program, &[])
}

#[test]
fn rust_thread_pool_checks_itself_without_checkpoint() {
    let env = Env::require();
    let dir = TestDir::new(&env, "rp-rust-control");
    start_rust_pool(&env, &dir).control();
}

#[test]
fn rust_thread_pool_carries_on_after_restore() {
    let env = Env::require();
    let dir = TestDir::new(&env, "rp-rust");
    start_rust_pool(&env, &dir).dump_restore_carry_on(&env, &dir);
}

#[test]
fn rust_thread_pool_left_running_and_its_image_both_carry_on() {
    let env = Env::require();
    let dir = TestDir::new(&env, "rp-rust-lr");
    start_rust_pool(&env, &dir).leave_running_then_restore(&env, &dir);
}

fn java() -> PathBuf {
    fs::canonicalize("/usr/lib/jvm/default-java/bin/java")
        .expect("a JRE at /usr/lib/jvm/default-java (default-jre-headless, scripts/test.sh)")
}

fn start_java(env: &Env, dir: &TestDir) -> SelfCheck {
    let source = install(dir, &workloads().join("java/Warm.java"), "Warm.java");
    // A bounded heap, as a service would run with; everything else default.
    SelfCheck::start(env, dir, "java", &java(), &["-Xmx128m", path_str(&source)])
}

#[test]
fn jvm_warms_up_and_checks_itself_without_checkpoint() {
    let env = Env::require();
    let dir = TestDir::new(&env, "rp-java-control");
    start_java(&env, &dir).control();
}

#[test]
fn warmed_up_jvm_carries_on_after_restore() {
    let env = Env::require();
    let dir = TestDir::new(&env, "rp-java");
    start_java(&env, &dir).dump_restore_carry_on(&env, &dir);
}

// ---------------------------------------------------------------------
// Go: an HTTP server on a unix socket.
// ---------------------------------------------------------------------

/// Builds tests/workloads/go/server.go once per test run (offline: the
/// standard library only, GOPROXY=off, no modules; a static binary, as Go
/// services are usually deployed), with the build cache kept in cargo's
/// target tmp dir so later runs are fast, and copies it into `dir`.
fn go_server(env: &Env, dir: &TestDir) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let go = Path::new("/usr/bin/go");
        assert!(
            go.is_file(),
            "go is not installed (golang-go, scripts/test.sh)"
        );
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go");
        fs::create_dir_all(&base).unwrap();
        // Overwritten by each run; tests run copies of it (`install`).
        let out = base.join("server");
        let mut cmd = env.command(Who::Root, go);
        cmd.args(["build", "-o", path_str(&out)])
            .arg(workloads().join("go/server.go"))
            .current_dir(&base)
            .env("HOME", &base)
            .env("GOCACHE", base.join("cache"))
            .env("GOPATH", base.join("path"))
            .env("GO111MODULE", "off")
            .env("GOPROXY", "off")
            .env("CGO_ENABLED", "0");
        // The first build compiles the standard library into the empty
        // cache: minutes on a loaded 2-core machine, more than a helper
        // run may take.
        let log = base.join("build.log");
        let log_file = fs::File::create(&log).unwrap();
        cmd.stdout(log_file.try_clone().unwrap()).stderr(log_file);
        let start = Instant::now();
        let mut child = cmd.spawn().expect("start go build");
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if start.elapsed() > Duration::from_secs(600) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("go build did not finish within 600 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "go build server.go: {status}\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        eprintln!("go build took {:?}", start.elapsed());
        out
    });
    install(dir, built, "server")
}

/// One HTTP/1.0 GET over the unix socket; returns the body of a 200.
fn get(sock: &Path, path: &str) -> String {
    let mut s =
        UnixStream::connect(sock).unwrap_or_else(|e| panic!("connect to {}: {e}", sock.display()));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: ckpt\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("read the answer to GET {path}: {e}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path}: not an HTTP answer: {text:?}"));
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "GET {path}: {head}"
    );
    body.to_string()
}

struct GoServer {
    sock: PathBuf,
    wdir: PathBuf,
    log: PathBuf,
}

fn start_go(env: &Env, dir: &TestDir) -> (GoServer, Proc) {
    let program = go_server(env, dir);
    let wdir = user_dir(env, dir, "go");
    let sock = wdir.join("http.sock");
    let log = dir.work.join("server.log");
    let mut proc = Proc::spawn(
        env,
        Who::User(&env.user),
        &program,
        &[path_str(&sock), path_str(&wdir)],
        &wdir,
        &[],
        &log,
    );
    wait_until(SLOW_START, "the Go server is listening", || {
        wdir.join("ready").exists() || !proc.is_alive()
    });
    assert!(
        proc.is_alive(),
        "the Go server exited at start; log:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    for n in 1..=3 {
        assert_eq!(get(&sock, "/count"), format!("{n}\n"), "request {n}");
    }
    (GoServer { sock, wdir, log }, proc)
}

impl GoServer {
    /// The server (`proc`: the original or the restored one) answers,
    /// counts on from `next`, checks itself, and quits.
    fn carry_on(&self, proc: &mut Proc, next: u32) {
        assert_eq!(
            get(&self.sock, "/count"),
            format!("{next}\n"),
            "the request count goes on"
        );
        let check = get(&self.sock, "/check");
        assert_eq!(
            check,
            "OK\n",
            "the server's own check: {check}\nlog:\n{}",
            fs::read_to_string(&self.log).unwrap_or_default()
        );
        assert_eq!(
            fs::read_to_string(self.wdir.join("result")).unwrap(),
            "OK\n",
            "the server's result file"
        );
        assert_eq!(get(&self.sock, "/quit"), "bye\n");
        proc.wait_gone("the server exits after /quit");
    }
}

#[test]
fn go_http_server_answers_on_its_unix_socket_without_checkpoint() {
    let env = Env::require();
    let dir = TestDir::new(&env, "rp-go-control");
    let (server, mut proc) = start_go(&env, &dir);
    server.carry_on(&mut proc, 4);
}

#[test]
fn go_http_server_still_answers_after_restore() {
    let env = Env::require();
    let dir = TestDir::new(&env, "rp-go");
    let (server, mut orig) = start_go(&env, &dir);
    let image = dir.work.join("server.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the server");
    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    server.carry_on(&mut restored, 4);
}

// ---------------------------------------------------------------------
// sqlite3: an open database, an exclusive lock, an open transaction.
// ---------------------------------------------------------------------

/// Runs `sqlite3 DB SQL` as the test user (another connection).
fn sqlite(env: &Env, dir: &TestDir, db: &Path, sql: &str) -> Run {
    let mut cmd = env.command(Who::User(&env.user), Path::new("/usr/bin/sqlite3"));
    cmd.arg(db).arg(sql).current_dir(&dir.work);
    dir.run(cmd)
}

/// Another connection cannot even read: the database is locked.
fn assert_locked(env: &Env, dir: &TestDir, db: &Path, when: &str) {
    let run = sqlite(
        env,
        dir,
        db,
        "PRAGMA busy_timeout=0; SELECT count(*) FROM t;",
    );
    assert!(
        run.code != Some(0) && run.stderr.contains("database is locked"),
        "{when}: another connection must find the database locked\n{run}"
    );
}

/// A pipe whose read end becomes a program's stdin; the test writes SQL.
fn pipe() -> (OwnedFd, fs::File) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2");
    (r, fs::File::from(w))
}

struct Sqlite {
    child: Child,
    proc: Proc,
    sql: fs::File,
    db: PathBuf,
    out: PathBuf,
}

fn start_sqlite(env: &Env, dir: &TestDir) -> Sqlite {
    let sqlite3 = Path::new("/usr/bin/sqlite3");
    assert!(
        sqlite3.is_file(),
        "sqlite3 is not installed (scripts/test.sh)"
    );
    let wdir = user_dir(env, dir, "sq");
    let db = wdir.join("data.db");
    sqlite(
        env,
        dir,
        &db,
        "CREATE TABLE t(x INTEGER); INSERT INTO t VALUES(1);",
    )
    .assert_code(0, "create the database");

    let out = dir.work.join("sqlite.out");
    let out_file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(&out)
        .unwrap();
    std::os::unix::fs::chown(&out, Some(env.user.uid), Some(env.user.gid)).unwrap();
    let (stdin, mut sql) = pipe();
    let mut cmd = env.command(Who::User(&env.user), Path::new("/usr/bin/setsid"));
    cmd.arg(sqlite3)
        .arg(&db)
        .current_dir(&wdir)
        .stdin(Stdio::from(stdin))
        .stdout(out_file.try_clone().unwrap())
        .stderr(out_file);
    let child = cmd.spawn().expect("start sqlite3");
    drop(cmd);
    let pid = i32::try_from(child.id()).unwrap();
    wait_until(WAIT, "sqlite3 runs", || {
        fs::read_link(format!("/proc/{pid}/exe")).ok().as_deref() == Some(sqlite3)
    });
    let proc = Proc::adopt(pid, "sqlite3").expect("sqlite3 runs");
    sql.write_all(b"BEGIN EXCLUSIVE;\nINSERT INTO t VALUES(2);\nSELECT 'ready';\n")
        .unwrap();
    wait_until(WAIT, "sqlite3 is in its transaction", || {
        fs::read_to_string(&out).is_ok_and(|s| s.contains("ready\n"))
    });
    assert_locked(env, dir, &db, "in the transaction");
    Sqlite {
        child,
        proc,
        sql,
        db,
        out,
    }
}

/// The rest of the session: one more row, commit, and sqlite3's own view
/// of the result (the rows, and its integrity check); then end of input.
const FINISH: &[u8] = b"INSERT INTO t VALUES(3);\nCOMMIT;\n\
    SELECT 'rows=' || group_concat(x) FROM (SELECT x FROM t ORDER BY x);\n\
    SELECT 'integrity=' || integrity_check FROM pragma_integrity_check;\n";

fn assert_finished(env: &Env, dir: &TestDir, db: &Path, out: &Path) {
    let text = fs::read_to_string(out).unwrap();
    assert!(
        text.contains("rows=1,2,3\n") && text.contains("integrity=ok\n"),
        "sqlite3 must see rows 1,2,3 and an intact database after its commit:\n{text}"
    );
    let run = sqlite(
        env,
        dir,
        db,
        "SELECT group_concat(x) FROM (SELECT x FROM t ORDER BY x);",
    );
    run.assert_code(0, "read after the commit");
    assert_eq!(run.stdout, "1,2,3\n", "another connection sees the commit");
}

#[test]
fn sqlite3_commits_its_locked_transaction_without_checkpoint() {
    let env = Env::require();
    let dir = TestDir::new(&env, "rp-sqlite-control");
    let mut s = start_sqlite(&env, &dir);
    s.sql.write_all(FINISH).unwrap();
    drop(s.sql);
    s.proc.wait_gone("sqlite3 ends at the end of its input");
    let status = s.child.wait().unwrap();
    assert!(status.success(), "sqlite3 exit status {status}");
    assert_finished(&env, &dir, &s.db, &s.out);
}

/// Runs `ckpt-verify restore IMAGE` as the test user with `stdin` as its
/// fd 0 (which the restored process's fd 0 is connected to).
fn restore_with_stdin(env: &Env, dir: &TestDir, image: &Path, stdin: OwnedFd) -> (Run, Proc) {
    let out = dir.root.join("restore.out");
    let err = dir.root.join("restore.err");
    let mut cmd: Command = env.command(Who::User(&env.user), &env.verify_path());
    cmd.args(["restore", path_str(image)])
        .current_dir(&dir.work)
        .stdin(Stdio::from(stdin))
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap());
    let mut child = cmd.spawn().expect("start restore");
    drop(cmd);
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > HELPER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("restore did not finish within {HELPER_TIMEOUT:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let run = Run {
        cmd: format!("ckpt-verify restore {} (stdin on a pipe)", image.display()),
        code: status.code(),
        status,
        stdout: fs::read_to_string(&out).unwrap_or_default(),
        stderr: fs::read_to_string(&err).unwrap_or_default(),
    };
    run.assert_code(exit::OK, "restore");
    let pid: i32 = run
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("restore must print the new pid\n{run}"));
    let proc = Proc::adopt(pid, "restored sqlite3").expect("the restored sqlite3 runs");
    (run, proc)
}

#[test]
fn sqlite3_keeps_its_lock_and_commits_after_restore() {
    let env = Env::require();
    let dir = TestDir::new(&env, "rp-sqlite");
    let mut s = start_sqlite(&env, &dir);
    let image = dir.work.join("sqlite.ckpt");
    env.dump_ok(&dir, s.proc.pid, &image, &[]);
    s.proc.wait_gone("dump kills sqlite3");
    let _ = s.child.wait();
    drop(s.sql);

    let (stdin, mut sql) = pipe();
    let (run, mut restored) = restore_with_stdin(&env, &dir, &image, stdin);
    assert!(
        run.stderr.contains("fd 0 was connected to pipe:["),
        "restore says fd 0 (a pipe at dump) is now the caller's fd 0\n{run}"
    );
    assert_locked(&env, &dir, &s.db, "after restore");
    sql.write_all(FINISH).unwrap();
    drop(sql);
    restored.wait_gone("the restored sqlite3 ends at the end of its input");
    assert_finished(&env, &dir, &s.db, &s.out);
}

// ---------------------------------------------------------------------
// sleep, started on a terminal.
// ---------------------------------------------------------------------

/// `sleep SECONDS` as the test user, leading its own session with a pty
/// as controlling terminal and as fds 0-2 (as a shell in a terminal would
/// start it). Returns the sleeper, its reaper, and the master side (kept
/// open: closing it would hang the terminal up).
fn sleep_on_pty(
    env: &Env,
    dir: &TestDir,
    seconds: &str,
) -> (Proc, Child, nix::pty::PtyMaster, String) {
    use nix::fcntl::OFlag;
    // Both sides close-on-exec from the start: no program the tests start
    // (in parallel) may inherit them; the sleeper gets the terminal on
    // fds 0-2 only.
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .expect("posix_openpt");
    nix::pty::grantpt(&master).expect("grantpt");
    nix::pty::unlockpt(&master).expect("unlockpt");
    let tty = nix::pty::ptsname_r(&master).expect("ptsname");
    let slave: OwnedFd = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&tty)
        .unwrap_or_else(|e| panic!("open {tty}: {e}"))
        .into();
    let sleep = fs::canonicalize("/usr/bin/sleep").unwrap();
    let mut cmd = env.command(Who::User(&env.user), Path::new("/usr/bin/setsid"));
    cmd.arg("--ctty")
        .arg(&sleep)
        .arg(seconds)
        .current_dir(&dir.work)
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    let child = cmd.spawn().expect("start sleep on a pty");
    drop(cmd);
    let pid = i32::try_from(child.id()).unwrap();
    wait_until(WAIT, "sleep runs", || {
        fs::read_link(format!("/proc/{pid}/exe")).ok().as_deref() == Some(sleep.as_path())
            && in_nanosleep(pid)
    });
    let proc = Proc::adopt(pid, "sleep on a pty").expect("sleep runs");
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/fd/1"))
            .unwrap()
            .to_string_lossy(),
        tty,
        "sleep's stdout is its terminal"
    );
    assert_ne!(tty_nr(pid), 0, "sleep has a controlling terminal");
    (proc, child, master, tty)
}

fn tty_nr(pid: i32) -> i64 {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &text[text.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(4).unwrap().parse().unwrap()
}

/// The process is blocked in clock_nanosleep (/proc/PID/syscall names the
/// syscall a blocked task is in).
fn in_nanosleep(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/syscall"))
        .is_ok_and(|s| s.split_whitespace().next() == Some(&libc::SYS_clock_nanosleep.to_string()))
}

#[test]
fn sleep_1000_started_on_a_pty_is_still_asleep_after_restore() {
    let env = Env::require();
    let dir = TestDir::new(&env, "rp-sleep");
    let (mut orig, mut child, _master, tty) = sleep_on_pty(&env, &dir, "1000");
    let cmdline = procfs::cmdline(orig.pid).unwrap();
    assert_eq!(cmdline.last().map(String::as_str), Some("1000"));
    let image = dir.work.join("sleep.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills sleep");
    let _ = child.wait();

    let (run, mut restored) = env.restore_ok(&dir, &image, None);
    let pid = restored.pid;
    for fd in 0..=2 {
        assert!(
            run.stderr
                .contains(&format!("fd {fd} was connected to {tty} at dump")),
            "restore says fd {fd} (the terminal {tty}) is now the caller's\n{run}"
        );
    }
    assert_eq!(
        procfs::cmdline(pid).unwrap(),
        cmdline,
        "the restored process is the same sleep"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(restored.is_alive(), "the restored sleep is still running");
    assert!(
        in_nanosleep(pid),
        "the restored sleep is asleep in clock_nanosleep (state {:?}, syscall {:?})",
        restored.state(),
        fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default()
    );
}

#[test]
fn sleep_4_dumped_after_2_s_sleeps_only_what_it_had_left_and_exits_0() {
    let env = Env::require();
    // The restored sleep is not the test's child: make this test process
    // the subreaper of its descendants so it can collect the exit status.
    // (Process-wide; other tests' restored processes, killed at their end,
    // are then reaped only when this test binary exits, which is harmless.)
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let dir = TestDir::new(&env, "rp-sleep4");
    let started = Instant::now();
    let (mut orig, mut child, _master, _tty) = sleep_on_pty(&env, &dir, "4");
    while started.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let image = dir.work.join("sleep.ckpt");
    let dump_start = started.elapsed();
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills sleep");
    let _ = child.wait();

    let restore_start = Instant::now();
    let (_run, restored) = env.restore_ok(&dir, &image, None);
    // The restored sleep runs from some point during the restore call.
    let restore_end = Instant::now();
    let pid = nix::unistd::Pid::from_raw(restored.pid);
    let status = nix::sys::wait::waitpid(pid, None).expect("wait for the restored sleep");
    let (with_restore, after_restore) = (restore_start.elapsed(), restore_end.elapsed());
    assert_eq!(
        status,
        nix::sys::wait::WaitStatus::Exited(pid, 0),
        "the restored sleep exits 0"
    );
    // When the dump froze it, it had about `left` to sleep: a little more
    // (it started just after `started`), a little less (the dump freezes it
    // a moment after it is started). A sleep restarted from scratch would
    // sleep 4 s again; one cut short would end at once.
    let left = Duration::from_secs(4).saturating_sub(dump_start);
    eprintln!(
        "dumped {dump_start:?} into sleep 4; after restore it slept {after_restore:?} \
         ({with_restore:?} counting the restore)"
    );
    assert!(
        after_restore <= left + Duration::from_millis(800),
        "the restored sleep slept {after_restore:?} after the restore; it had {left:?} left"
    );
    assert!(
        with_restore + Duration::from_millis(700) >= left,
        "the restored sleep ended {with_restore:?} after the restore began; it had {left:?} left"
    );
}
