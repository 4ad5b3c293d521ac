//! Harness for the end-to-end tests of ckpt.
//!
//! The tests in `tests/tests/` drive the *installed* setuid helpers
//! (`$CKPT_TEST_BIN/ckpt-sign`, `$CKPT_TEST_BIN/ckpt-verify`, root-owned,
//! mode 4755) as a real unprivileged user, against real workloads compiled
//! from `tests/workloads/*.c`. Nothing is mocked: the setuid transition, the
//! kernel's ptrace access check and the restored process are all real.
//!
//! Every test starts with [`Env::require`], which panics (never skips) when
//! the run cannot be what the test claims: not root, `CKPT_TEST_BIN` unset,
//! helpers missing, not setuid root, on a nosuid mount, users missing, no
//! host key. `scripts/test.sh` sets all of that up.
//!
//! Environment read by the harness (never by the helpers):
//! * `CKPT_TEST_BIN`: directory holding the installed helpers (required);
//! * `CKPT_TEST_USER`, `CKPT_TEST_OTHER`: the unprivileged user running the
//!   helpers and a second, foreign user (default `ckpt-user`, `ckpt-other`);
//! * `CKPT_TEST_KEEP`: keep every test directory (they are always kept when
//!   the test panics, and their path is printed).
//!
//! Panicking with a message is how a test reports a failure, so `expect` is
//! allowed in this crate.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod image;
pub mod lifecycle;
pub mod policy;
pub mod procfs;
pub mod reporter;
pub mod swtpm;
pub mod syslog;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a condition may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(15);
/// How long one helper invocation may take before it is killed and the test fails.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(90);

/// Exit codes of both helpers (docs/TEAM-NOTES.md).
pub mod exit {
    pub const OK: i32 = 0;
    pub const OTHER: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const ACCESS_DENIED: i32 = 3;
    pub const TAMPERED: i32 = 4;
    pub const POLICY: i32 = 5;
    pub const DUMP_FAILED: i32 = 6;
    pub const RESTORE_FAILED: i32 = 7;
    pub const UNSIGNED: i32 = 8;
    pub const UNTRUSTED: i32 = 9;
    pub const INTERRUPTED: i32 = 10;
}

/// A local account the tests act as.
#[derive(Clone, Debug)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups as `initgroups` sets them (includes `gid`).
    pub groups: Vec<u32>,
}

/// Who runs a command.
#[derive(Clone, Copy, Debug)]
pub enum Who<'a> {
    Root,
    User(&'a Account),
}

/// What the end-to-end tests run against; see the crate doc.
#[derive(Clone, Debug)]
pub struct Env {
    pub bin: PathBuf,
    pub user: Account,
    pub other: Account,
    /// The configuration directory the tests were built for (the helpers are
    /// built in the same cargo invocation with the same `CKPT_SYSCONFDIR`).
    pub sysconfdir: PathBuf,
    setpriv: PathBuf,
    setsid: PathBuf,
    gcc: PathBuf,
}

impl Env {
    /// Checks that this run can do what the tests claim, and panics with
    /// the reason when it cannot. Call it first in every test.
    pub fn require() -> Env {
        static ENV: OnceLock<Result<Env, String>> = OnceLock::new();
        match ENV.get_or_init(Env::probe) {
            Ok(env) => env.clone(),
            Err(why) => panic!(
                "end-to-end test cannot run: {why}\n\
                 (run `sudo scripts/test.sh`, which builds and installs the helpers, \
                 creates the users and the host key; this test never skips)"
            ),
        }
    }

    fn probe() -> Result<Env, String> {
        let (ruid, euid) = (nix::unistd::getuid(), nix::unistd::geteuid());
        if !ruid.is_root() || !euid.is_root() {
            return Err(format!(
                "must run as root (real uid {ruid}, effective uid {euid}) to set up users, \
                 setuid workloads and foreign processes"
            ));
        }
        let bin = PathBuf::from(
            std::env::var_os("CKPT_TEST_BIN")
                .ok_or("CKPT_TEST_BIN is not set (directory of the installed setuid helpers)")?,
        );
        for tool in ["ckpt-sign", "ckpt-verify"] {
            let path = bin.join(tool);
            let md =
                fs::metadata(&path).map_err(|e| format!("{} is missing: {e}", path.display()))?;
            if !md.is_file() {
                return Err(format!("{} is not a regular file", path.display()));
            }
            if md.uid() != 0 || md.gid() != 0 {
                return Err(format!(
                    "{} is owned by {}:{}, must be root:root",
                    path.display(),
                    md.uid(),
                    md.gid()
                ));
            }
            if md.mode() & 0o7777 != 0o4755 {
                return Err(format!(
                    "{} has mode {:04o}, must be 4755 (setuid root)",
                    path.display(),
                    md.mode() & 0o7777
                ));
            }
        }
        let vfs = nix::sys::statvfs::statvfs(&bin)
            .map_err(|e| format!("statvfs {}: {e}", bin.display()))?;
        if vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID) {
            return Err(format!(
                "{} is on a nosuid file system: the setuid bit would be ignored",
                bin.display()
            ));
        }
        let user =
            account(&std::env::var("CKPT_TEST_USER").unwrap_or_else(|_| "ckpt-user".into()))?;
        let other =
            account(&std::env::var("CKPT_TEST_OTHER").unwrap_or_else(|_| "ckpt-other".into()))?;
        if user.uid == other.uid {
            return Err(format!(
                "CKPT_TEST_USER ({}) and CKPT_TEST_OTHER ({}) have the same uid",
                user.name, other.name
            ));
        }
        let sysconfdir = PathBuf::from(option_env!("CKPT_SYSCONFDIR").unwrap_or("/etc/ckpt"));
        let pubkey = sysconfdir.join("keys/host.pub");
        if !pubkey.exists() {
            return Err(format!(
                "no host key at {} (the tests were built for sysconfdir {}): run `ckpt-sign keygen` as root",
                pubkey.display(),
                sysconfdir.display()
            ));
        }
        Ok(Env {
            bin,
            user,
            other,
            sysconfdir,
            setpriv: tool("setpriv")?,
            setsid: tool("setsid")?,
            gcc: tool("gcc")?,
        })
    }

    pub fn sign_path(&self) -> PathBuf {
        self.bin.join("ckpt-sign")
    }

    pub fn verify_path(&self) -> PathBuf {
        self.bin.join("ckpt-verify")
    }

    /// A command that runs `program` as `who` with a minimal environment:
    /// for a user through `setpriv --reuid --regid --init-groups`.
    pub fn command(&self, who: Who, program: &Path) -> Command {
        let mut cmd = match who {
            Who::Root => Command::new(program),
            Who::User(a) => {
                let mut c = Command::new(&self.setpriv);
                c.arg(format!("--reuid={}", a.uid))
                    .arg(format!("--regid={}", a.gid))
                    .arg("--init-groups")
                    .arg("--")
                    .arg(program);
                c
            }
        };
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `ckpt-sign ARGS` as the test user in `dir.work`.
    pub fn sign(&self, dir: &TestDir, args: &[&str]) -> Run {
        self.sign_as(Who::User(&self.user), dir, args)
    }

    pub fn sign_as(&self, who: Who, dir: &TestDir, args: &[&str]) -> Run {
        let mut cmd = self.command(who, &self.sign_path());
        cmd.args(args).current_dir(&dir.work);
        dir.run(cmd)
    }

    /// Runs `ckpt-verify ARGS` as the test user in `dir.work`.
    pub fn verify(&self, dir: &TestDir, args: &[&str]) -> Run {
        self.verify_as(Who::User(&self.user), dir, args)
    }

    pub fn verify_as(&self, who: Who, dir: &TestDir, args: &[&str]) -> Run {
        let mut cmd = self.command(who, &self.verify_path());
        cmd.args(args).current_dir(&dir.work);
        dir.run(cmd)
    }

    /// `ckpt-sign pubkey` as the test user: (the whole line, the key id).
    pub fn host_key_id(&self, dir: &TestDir) -> (String, String) {
        let run = self.sign(dir, &["pubkey"]);
        run.assert_code(exit::OK, "ckpt-sign pubkey");
        let line = run.stdout.trim_end_matches('\n').to_string();
        let id = line
            .split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("pubkey line has no key id field: {line:?}"))
            .to_string();
        (line, id)
    }

    /// Dumps `pid` as the test user to `image` with `extra` flags; asserts
    /// exit 0 and that the image is a regular file, mode 0600, owned by the user.
    pub fn dump_ok(&self, dir: &TestDir, pid: i32, image: &Path, extra: &[&str]) -> Run {
        let pid_s = pid.to_string();
        let mut args = vec!["dump", "--pid", &pid_s, "-o", path_str(image)];
        args.extend_from_slice(extra);
        let run = self.sign(dir, &args);
        run.assert_code(exit::OK, "dump of the user's own process");
        let md = fs::symlink_metadata(image).unwrap_or_else(|e| {
            panic!(
                "dump exited 0 but {} is missing: {e}\n{run}",
                image.display()
            )
        });
        assert!(md.is_file(), "{} is not a regular file", image.display());
        assert_eq!(
            md.mode() & 0o7777,
            0o600,
            "image {} has mode {:04o}, expected 0600",
            image.display(),
            md.mode() & 0o7777
        );
        assert_eq!(
            (md.uid(), md.gid()),
            (self.user.uid, self.user.gid),
            "image {} must be owned by the caller",
            image.display()
        );
        run
    }

    /// Restores `image` as the test user. On exit 0 returns the restored
    /// process (killed when dropped) after checking the printed pid (and the
    /// pidfile, when given) names a live process.
    pub fn restore(
        &self,
        dir: &TestDir,
        image: &Path,
        pidfile: Option<&Path>,
    ) -> (Run, Option<Proc>) {
        self.restore_with(dir, image, pidfile, &[])
    }

    /// [`Env::restore`] with `extra` arguments (`--pid-namespace`, ...).
    pub fn restore_with(
        &self,
        dir: &TestDir,
        image: &Path,
        pidfile: Option<&Path>,
        extra: &[&str],
    ) -> (Run, Option<Proc>) {
        let mut args = vec!["restore", path_str(image)];
        if let Some(p) = pidfile {
            args.extend(["--pidfile", path_str(p)]);
        }
        args.extend_from_slice(extra);
        let run = self.verify(dir, &args);
        if run.code != Some(exit::OK) {
            return (run, None);
        }
        let pid: i32 =
            run.stdout.trim().parse().unwrap_or_else(|_| {
                panic!("restore must print the new pid (alone) on stdout\n{run}")
            });
        if let Some(p) = pidfile {
            let text = fs::read_to_string(p)
                .unwrap_or_else(|e| panic!("pidfile {} not written: {e}\n{run}", p.display()));
            assert_eq!(
                text.trim().parse::<i32>().ok(),
                Some(pid),
                "pidfile {} holds {text:?}, restore printed {pid}",
                p.display()
            );
        }
        let proc = Proc::adopt(pid, "restored process")
            .unwrap_or_else(|| panic!("restore printed pid {pid} but no such process runs\n{run}"));
        (run, Some(proc))
    }

    /// Like [`Env::restore`] but asserts exit 0.
    pub fn restore_ok(&self, dir: &TestDir, image: &Path, pidfile: Option<&Path>) -> (Run, Proc) {
        let (run, proc) = self.restore(dir, image, pidfile);
        run.assert_code(exit::OK, "restore");
        (run, proc.expect("restore exit 0 yields a process"))
    }

    /// `ckpt-verify verify --json IMAGE` as the test user: (run, parsed JSON).
    pub fn verify_json(&self, dir: &TestDir, image: &Path) -> (Run, serde_json::Value) {
        let run = self.verify(dir, &["verify", path_str(image), "--json"]);
        let json = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| {
            panic!("verify --json must print one JSON object on stdout ({e})\n{run}")
        });
        (run, json)
    }
}

fn account(name: &str) -> Result<Account, String> {
    let user = nix::unistd::User::from_name(name)
        .map_err(|e| format!("looking up user {name}: {e}"))?
        .ok_or_else(|| {
            format!("user {name} does not exist (scripts/test.sh creates it with useradd -m)")
        })?;
    if user.uid.is_root() {
        return Err(format!(
            "user {name} is root; the tests need an unprivileged user"
        ));
    }
    let cname = CString::new(name).map_err(|_| format!("bad user name {name:?}"))?;
    let mut groups: Vec<u32> = nix::unistd::getgrouplist(&cname, user.gid)
        .map_err(|e| format!("groups of {name}: {e}"))?
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    groups.sort_unstable();
    groups.dedup();
    Ok(Account {
        name: name.to_string(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
    })
}

fn tool(name: &str) -> Result<PathBuf, String> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{name} is not installed (scripts/test.sh installs it)"))
}

/// A path as `&str` (all test paths are UTF-8).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// A directory `dir.work/NAME` owned by the test user: a self-checking
/// workload's own (it writes `ready` and its result there).
pub fn user_dir(env: &Env, dir: &TestDir, name: &str) -> PathBuf {
    let wdir = dir.work.join(name);
    fs::create_dir(&wdir).unwrap_or_else(|e| panic!("create {}: {e}", wdir.display()));
    std::os::unix::fs::chown(&wdir, Some(env.user.uid), Some(env.user.gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", wdir.display()));
    wdir
}

/// Waits until `wdir/ready` holds exactly `ready\n`, what every
/// self-checking workload writes once it is set up (`what` names it).
pub fn wait_ready(wdir: &Path, what: &str) {
    let ready = wdir.join("ready");
    wait_until(WAIT, &format!("{what} has written ready"), || {
        fs::read_to_string(&ready).is_ok_and(|s| s == "ready\n")
    });
}

/// Waits until `cond` holds, polling every 10 ms; panics after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The result of one command.
#[derive(Debug)]
pub struct Run {
    pub cmd: String,
    /// Exit code, `None` if killed by a signal.
    pub code: Option<i32>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_code(&self, want: i32, what: &str) {
        assert!(
            self.code == Some(want),
            "{what}: expected exit code {want}, got {}\n{self}",
            self.describe_exit()
        );
    }

    /// Asserts the command failed cleanly: a non-zero exit code (not a
    /// signal, not a crash) and a message on stderr.
    pub fn assert_refused(&self, what: &str) {
        assert!(
            matches!(self.code, Some(c) if c != 0 && c < 126),
            "{what}: expected a refusal (non-zero exit code), got {}\n{self}",
            self.describe_exit()
        );
        assert!(
            !self.stderr.trim().is_empty(),
            "{what}: refused without a message on stderr\n{self}"
        );
    }

    pub fn describe_exit(&self) -> String {
        match self.code {
            Some(c) => format!("exit code {c}"),
            None => format!("{} (killed by a signal)", self.status),
        }
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "--- command: {}", self.cmd)?;
        writeln!(f, "--- {}", self.describe_exit())?;
        writeln!(f, "--- stdout:\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr:\n{}", self.stderr.trim_end())
    }
}

static DIR_SEQ: AtomicU32 = AtomicU32::new(0);

/// A test's own directory tree under /tmp, removed when dropped (kept when
/// the test panics, or with `CKPT_TEST_KEEP`). Dropping it also kills any
/// process still running with its path in its argv.
///
/// * `root`: root-owned 0755;
/// * `bin`: root-owned 0755, compiled workloads;
/// * `work`: owned by the test user, 0755: images, counter files, logs of
///   the user's processes;
/// * `logs`: root-only, stdout/stderr of every command run.
#[derive(Debug)]
pub struct TestDir {
    pub root: PathBuf,
    pub bin: PathBuf,
    pub work: PathBuf,
    logs: PathBuf,
    runs: AtomicU32,
}

impl TestDir {
    pub fn new(env: &Env, name: &str) -> TestDir {
        let root = PathBuf::from(format!(
            "/tmp/ckpt-e2e-{name}-{}-{}",
            std::process::id(),
            DIR_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        if root.exists() {
            fs::remove_dir_all(&root).expect("remove stale test dir");
        }
        let dir = TestDir {
            bin: root.join("bin"),
            work: root.join("work"),
            logs: root.join("logs"),
            root,
            runs: AtomicU32::new(0),
        };
        mkdir(&dir.root, 0o755, None);
        mkdir(&dir.bin, 0o755, None);
        mkdir(&dir.logs, 0o700, None);
        mkdir(&dir.work, 0o755, Some(&env.user));
        dir
    }

    /// A directory `root/NAME` owned by `owner` (root when `None`) with `mode`.
    pub fn dir(&self, name: &str, mode: u32, owner: Option<&Account>) -> PathBuf {
        let p = self.root.join(name);
        mkdir(&p, mode, owner);
        p
    }

    /// Creates `path` with `content`, owned by `owner` (root when `None`), with `mode`.
    pub fn file(&self, path: &Path, content: &[u8], mode: u32, owner: Option<&Account>) {
        fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
        if let Some(a) = owner {
            std::os::unix::fs::chown(path, Some(a.uid), Some(a.gid)).expect("chown");
        }
    }

    /// Compiles `tests/workloads/NAME.c` into `bin/NAME` (mode 0755).
    pub fn compile(&self, env: &Env, name: &str) -> PathBuf {
        self.compile_with(env, name, name, &[])
    }

    /// Compiles `tests/workloads/SRC.c` into `bin/OUT` with extra gcc flags.
    pub fn compile_with(&self, env: &Env, src: &str, out: &str, flags: &[&str]) -> PathBuf {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("workloads")
            .join(format!("{src}.c"));
        let output = self.bin.join(out);
        let mut cmd = Command::new(&env.gcc);
        cmd.args([
            "-O1",
            "-g",
            "-frounding-math",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pthread",
        ])
        .args(flags)
        .arg("-o")
        .arg(&output)
        .arg(&source);
        let run = self.run(cmd);
        run.assert_code(0, &format!("compiling {}", source.display()));
        fs::set_permissions(&output, fs::Permissions::from_mode(0o755)).expect("chmod workload");
        output
    }

    /// Runs `cmd` to completion with stdout/stderr captured in files (never
    /// pipes: a restored process must not be able to hold the test up), and
    /// kills it after [`HELPER_TIMEOUT`].
    pub fn run(&self, mut cmd: Command) -> Run {
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        let out_path = self.logs.join(format!("{n}.out"));
        let err_path = self.logs.join(format!("{n}.err"));
        let out = fs::File::create(&out_path).expect("create stdout log");
        let err = fs::File::create(&err_path).expect("create stderr log");
        let desc = describe(&cmd);
        cmd.stdout(out).stderr(err);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait for command") {
                break st;
            }
            if start.elapsed() > HELPER_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{desc} did not finish within {HELPER_TIMEOUT:?}; killed\n--- stderr so far:\n{}",
                    fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Run {
            cmd: desc,
            code: status.code(),
            status,
            stdout: String::from_utf8_lossy(&fs::read(&out_path).unwrap_or_default()).into_owned(),
            stderr: String::from_utf8_lossy(&fs::read(&err_path).unwrap_or_default()).into_owned(),
        }
    }

    /// Names of the entries of `dir`, sorted.
    pub fn list(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        v.sort();
        v
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        // Safety net for panic paths: every workload (and every process
        // restored from one) has this directory's unique path in its argv.
        for pid in processes_mentioning(path_str(&self.root)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if std::thread::panicking() || std::env::var_os("CKPT_TEST_KEEP").is_some() {
            eprintln!("kept test directory {}", self.root.display());
        } else {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

fn mkdir(p: &Path, mode: u32, owner: Option<&Account>) {
    fs::create_dir(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod dir");
    if let Some(a) = owner {
        std::os::unix::fs::chown(p, Some(a.uid), Some(a.gid)).expect("chown dir");
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// A process the test started or was told about; killed (SIGKILL) and, if
/// it is the test's child, reaped when dropped. Identified by pid plus start
/// time, so a reused pid is never killed by mistake.
#[derive(Debug)]
pub struct Proc {
    pub pid: i32,
    pub what: String,
    start_time: u64,
    child: Option<Child>,
    /// Further pids to kill at drop (e.g. a workload's own child).
    pub also_kill: Vec<(i32, u64)>,
}

impl Proc {
    /// Starts `program ARGS` as `who` in its own session (setsid), in `cwd`,
    /// with stdin on /dev/null and stdout/stderr appended to `log` (which is
    /// created owned by `who`, so a restore as that user can reopen it).
    pub fn spawn(
        env: &Env,
        who: Who,
        program: &Path,
        args: &[&str],
        cwd: &Path,
        vars: &[(&str, &str)],
        log: &Path,
    ) -> Proc {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(log)
            .unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        if let Who::User(a) = who {
            std::os::unix::fs::chown(log, Some(a.uid), Some(a.gid)).expect("chown log");
        }
        let mut cmd = env.command(who, &env.setsid);
        cmd.arg(program)
            .args(args)
            .current_dir(cwd)
            .envs(vars.iter().copied())
            .stdout(file.try_clone().expect("dup log fd"))
            .stderr(file);
        let desc = describe(&cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
        let pid = i32::try_from(child.id()).expect("pid fits i32");
        // setpriv and setsid exec in place; wait until the workload itself runs.
        let mut proc = Proc {
            pid,
            what: program.display().to_string(),
            start_time: 0,
            child: Some(child),
            also_kill: Vec::new(),
        };
        wait_until(WAIT, &format!("{desc} has exec'ed (pid {pid})"), || {
            fs::read_link(format!("/proc/{pid}/exe")).ok().as_deref() == Some(program)
                || proc.reap_if_exited()
        });
        assert!(
            !proc.reap_if_exited(),
            "{desc} exited at start; its log {}:\n{}",
            log.display(),
            fs::read_to_string(log).unwrap_or_default()
        );
        let stat = procfs::stat(pid).expect("stat of a running workload");
        proc.start_time = stat.start_time;
        assert_eq!(
            stat.session, pid,
            "{desc}: workload is not the leader of its own session"
        );
        proc
    }

    /// Takes charge of a running process that is not the test's child.
    pub fn adopt(pid: i32, what: &str) -> Option<Proc> {
        let stat = procfs::stat(pid)?;
        if matches!(stat.state, 'Z' | 'X') {
            return None;
        }
        Some(Proc {
            pid,
            what: what.to_string(),
            start_time: stat.start_time,
            child: None,
            also_kill: Vec::new(),
        })
    }

    fn reap_if_exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(Some(_))),
            None => false,
        }
    }

    /// The process still exists (same start time) and is not a zombie.
    pub fn is_alive(&mut self) -> bool {
        if self.reap_if_exited() {
            return false;
        }
        match procfs::stat(self.pid) {
            Some(s) => s.start_time == self.start_time && !matches!(s.state, 'Z' | 'X'),
            None => false,
        }
    }

    /// Scheduler state letter from /proc/PID/stat (None when gone).
    pub fn state(&self) -> Option<char> {
        procfs::stat(self.pid)
            .filter(|s| s.start_time == self.start_time)
            .map(|s| s.state)
    }

    /// Waits until the process has gone (exited or killed; reaped if ours).
    pub fn wait_gone(&mut self, why: &str) {
        let pid = self.pid;
        wait_until(
            WAIT,
            &format!("process {pid} ({}) is gone: {why}", self.what),
            || !self.is_alive(),
        );
    }

    /// Asserts the process runs and was left untouched: alive, not stopped
    /// or traced (state not t/T, TracerPid 0).
    pub fn assert_untouched(&mut self, why: &str) {
        assert!(
            self.is_alive(),
            "{} (pid {}) is gone: {why}",
            self.what,
            self.pid
        );
        let state = self.state().unwrap_or('?');
        assert!(
            !matches!(state, 't' | 'T'),
            "{} (pid {}) is left stopped (state {state}): {why}",
            self.what,
            self.pid
        );
        let status = procfs::status(self.pid).expect("status of a live process");
        assert_eq!(
            status.get("TracerPid").map(String::as_str),
            Some("0"),
            "{} (pid {}) is still traced: {why}",
            self.what,
            self.pid
        );
    }

    /// Also kill `pid` (if it still has the same start time) when dropped.
    pub fn kill_also(&mut self, pid: i32) {
        if let Some(s) = procfs::stat(pid) {
            self.also_kill.push((pid, s.start_time));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let mut targets = self.also_kill.clone();
        targets.push((self.pid, self.start_time));
        for (pid, start) in targets {
            if procfs::stat(pid).is_some_and(|s| s.start_time == start) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
            return;
        }
        // Not our child (adopted): we cannot reap it, but wait until the
        // kill took effect, so that a check for leftover processes right
        // after the drop does not see it still running.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && procfs::stat(self.pid)
                .is_some_and(|s| s.start_time == self.start_time && !matches!(s.state, 'Z' | 'X'))
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The result a self-checking workload wrote to `result` after being asked
/// (a signal, a file): waits until the file exists or the process is gone,
/// fails the test (with the workload's log) when it wrote nothing, then
/// waits for the workload to exit, as they all do after reporting.
pub fn workload_result(proc: &mut Proc, result: &Path, log: &Path, what: &str) -> String {
    // A workload may create the file before it writes into it: wait for
    // some text (or the workload's end), then a moment for the rest of a
    // line still being written.
    wait_until(WAIT, &format!("{what} has written its result"), || {
        fs::read_to_string(result).is_ok_and(|t| !t.is_empty()) || !proc.is_alive()
    });
    let settle = Instant::now() + Duration::from_secs(1);
    while Instant::now() < settle
        && proc.is_alive()
        && !fs::read_to_string(result).is_ok_and(|t| t.ends_with('\n'))
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let text = fs::read_to_string(result).unwrap_or_default();
    assert!(
        !text.is_empty(),
        "{what} (pid {}) wrote no result; state: {:?}; log:\n{}",
        proc.pid,
        proc.state(),
        fs::read_to_string(log).unwrap_or_default()
    );
    proc.wait_gone(&format!("{what} exits after reporting"));
    text
}

/// The `counter` workload: appends `"<count> <pid>"` lines to a file.
#[derive(Debug)]
pub struct Counter {
    pub proc: Proc,
    pub file: PathBuf,
    pub program: PathBuf,
}

impl Counter {
    /// Compiles and starts a counter as `who`, writing `dir/NAME.count`
    /// (`dir` must be writable by `who`), and waits until it has counted to 10.
    pub fn start(env: &Env, tdir: &TestDir, who: Who, dir: &Path, name: &str) -> Counter {
        let program = if tdir.bin.join("counter").exists() {
            tdir.bin.join("counter")
        } else {
            tdir.compile(env, "counter")
        };
        let file = dir.join(format!("{name}.count"));
        let proc = Proc::spawn(
            env,
            who,
            &program,
            &[path_str(&file)],
            dir,
            &[],
            &dir.join(format!("{name}.log")),
        );
        let c = Counter {
            proc,
            file,
            program,
        };
        c.wait_for(c.proc.pid, 10);
        c
    }

    /// All complete lines: (count, pid).
    pub fn lines(&self) -> Vec<(u64, i32)> {
        counter_lines(&self.file)
    }

    /// Waits until `pid` has written a count of at least `at_least`.
    pub fn wait_for(&self, pid: i32, at_least: u64) {
        wait_until(
            WAIT,
            &format!(
                "pid {pid} has counted to {at_least} in {}",
                self.file.display()
            ),
            || self.lines().iter().any(|&(c, p)| p == pid && c >= at_least),
        );
    }

    /// Asserts the whole file is one unbroken count 1, 2, 3, ... (no
    /// restart, no gap, no repeat), written by `pids` in that order, each
    /// taking over from the previous. Returns the last count of each pid.
    pub fn assert_continuous(&self, pids: &[i32]) -> Vec<u64> {
        let lines = self.lines();
        let mut last = vec![0u64; pids.len()];
        let mut seg = 0usize;
        for (i, &(count, pid)) in lines.iter().enumerate() {
            assert_eq!(
                count,
                i as u64 + 1,
                "count broken at line {} of {}: {:?} (neighbourhood {:?})",
                i + 1,
                self.file.display(),
                (count, pid),
                &lines[i.saturating_sub(3)..(i + 3).min(lines.len())]
            );
            while seg < pids.len() && pids[seg] != pid {
                seg += 1;
            }
            assert!(
                seg < pids.len(),
                "line {} of {} was written by pid {pid}, expected the pids {pids:?} in order",
                i + 1,
                self.file.display()
            );
            last[seg] = count;
        }
        last
    }
}

/// Parses a counter file; an incomplete last line is ignored.
pub fn counter_lines(path: &Path) -> Vec<(u64, i32)> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete
        .lines()
        .map(|l| {
            let mut it = l.split_whitespace();
            let c = it.next().and_then(|s| s.parse().ok());
            let p = it.next().and_then(|s| s.parse().ok());
            match (c, p) {
                (Some(c), Some(p)) => (c, p),
                _ => panic!("malformed counter line {l:?} in {}", path.display()),
            }
        })
        .collect()
}

/// Pids of live processes whose command line mentions `needle` (used to
/// check that a refused restore created nothing: test paths are unique).
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    procfs::pids()
        .into_iter()
        .filter(|&pid| pid != std::process::id() as i32)
        .filter(|&pid| procfs::stat(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X')))
        .filter(|&pid| procfs::cmdline(pid).is_some_and(|c| c.iter().any(|a| a.contains(needle))))
        .collect()
}

/// Sends `sig` to `pid`.
pub fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
        .unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
}

/// Snapshot of a file for "unchanged" assertions: content, mode, owner.
#[derive(Debug, PartialEq, Eq)]
pub struct FileSnapshot {
    pub content: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl FileSnapshot {
    pub fn of(path: &Path) -> FileSnapshot {
        let md =
            fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        FileSnapshot {
            content: fs::read(path).unwrap_or_default(),
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
        }
    }
}

/// Writes `bytes` to `path` as a file owned by `owner`, mode 0600.
pub fn write_owned(path: &Path, bytes: &[u8], owner: &Account) {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(bytes).expect("write file");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod");
    std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid)).expect("chown");
}

/// `/proc/PID/status` credential lines as numbers.
pub fn status_ids(status: &BTreeMap<String, String>, key: &str) -> Vec<u64> {
    status
        .get(key)
        .unwrap_or_else(|| panic!("/proc status has no {key} line"))
        .split_whitespace()
        .map(|v| {
            if key.starts_with("Cap") {
                u64::from_str_radix(v, 16).expect("hex capability mask")
            } else {
                v.parse().expect("numeric id")
            }
        })
        .collect()
}

/// Kills a whole process tree when dropped: every process found then under
/// the root (a restored tree's members are not the test's children), if
/// the root is still the process it was (same start time: pids are reused
/// quickly here).
pub struct TreeGuard(i32, u64);

impl TreeGuard {
    pub fn new(root: i32) -> TreeGuard {
        let start = procfs::stat(root).map_or(0, |s| s.start_time);
        TreeGuard(root, start)
    }
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        for _ in 0..3 {
            if procfs::stat(self.0).is_none_or(|s| s.start_time != self.1) {
                return;
            }
            for pid in procfs::descendants(self.0).into_iter().rev() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
