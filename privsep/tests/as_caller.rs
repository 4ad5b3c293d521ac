//! Tests for acting as the caller and for the kernel access check.
//!
//! These run as root (CI and the development machines do) and fork children
//! that drop to uid/gid 65534 (`nobody`) to test denials. Run as another user
//! they fail: they never silently pass.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};

use ckpt_privsep::access::{caller_may_ptrace_attach, open_pidfd, pidfd_alive, AccessError};
use ckpt_privsep::as_caller::{
    create_output, open_fd_for_read, open_for_read, CommitError, CreateError, OpenError,
};
use ckpt_privsep::Caller;

const NOBODY: u32 = 65534;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root: they drop to uid {NOBODY} to test denials"
    );
}

fn root() -> Caller {
    require_root();
    Caller::current().expect("caller")
}

fn nobody() -> Caller {
    require_root();
    Caller {
        uid: NOBODY,
        gid: NOBODY,
        groups: Vec::new(),
        privileged: true,
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(mode: u32) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "ckpt-privsep-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir(&p).expect("mkdir");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.0)
            .expect("readdir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sleeper(uid: Option<u32>) -> Kill {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new("sleep");
    c.arg("60");
    if let Some(u) = uid {
        c.uid(u).gid(u);
    }
    Kill(c.spawn().expect("spawn sleep"))
}

// ---- access -------------------------------------------------------------

/// Runs `sh -c 'echo ready; exec sleep 60'` (as `uid` if given) and returns
/// once the shell has printed: it has exec'ed, so the kernel has made it
/// dumpable again after the uid change (until then it is not, and a check
/// would race with exec).
fn ready_sleeper(uid: Option<u32>) -> Kill {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let mut c = Command::new("sh");
    c.args(["-c", "echo ready; exec sleep 60"])
        .stdout(std::process::Stdio::piped());
    if let Some(u) = uid {
        c.uid(u).gid(u);
    }
    let mut child = c.spawn().expect("spawn sh");
    let out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .expect("read the readiness line");
    assert_eq!(line, "ready\n", "the sleeper did not start");
    Kill(child)
}

#[test]
fn root_may_attach_to_any_process() {
    let child = ready_sleeper(None);
    let pid = i32::try_from(child.0.id()).expect("pid");
    assert!(caller_may_ptrace_attach(&root(), pid).expect("access check"));
}

#[test]
fn other_user_may_not_attach_to_a_root_process() {
    let child = ready_sleeper(None);
    let pid = i32::try_from(child.0.id()).expect("pid");
    assert!(!caller_may_ptrace_attach(&nobody(), pid).expect("access check"));
    // And not this (root) test process either.
    let me = i32::try_from(std::process::id()).expect("pid");
    assert!(!caller_may_ptrace_attach(&nobody(), me).expect("access check"));
}

#[test]
fn user_may_attach_to_own_process() {
    let child = ready_sleeper(Some(NOBODY));
    let pid = i32::try_from(child.0.id()).expect("pid");
    assert!(caller_may_ptrace_attach(&nobody(), pid).expect("access check"));
}

/// A forked child of this test that drops to `nobody` without exec'ing and
/// marks itself non-dumpable, then, when told, dumpable again. Each step is
/// acknowledged over a pipe, so the checks below never race with it.
struct Undumpable {
    pid: nix::unistd::Pid,
    go: Option<std::fs::File>,
    ack: std::fs::File,
}

impl Undumpable {
    fn start() -> Undumpable {
        require_root();
        // Close-on-exec: children other tests spawn meanwhile must not
        // inherit these.
        let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
        let (ack_r, ack_w) = nix::unistd::pipe2(cloexec).expect("pipe");
        let (go_r, go_w) = nix::unistd::pipe2(cloexec).expect("pipe");
        // SAFETY: the child below only makes raw system calls (setgroups,
        // setresgid, setresuid, prctl, read, write) on values prepared
        // before the fork, and leaves with `_exit`; it never returns into
        // the test harness.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                drop(ack_r);
                drop(go_w);
                let id = nix::unistd::Uid::from_raw(NOBODY);
                let gid = nix::unistd::Gid::from_raw(NOBODY);
                let set_dumpable = |on: libc::c_ulong| {
                    // SAFETY: PR_SET_DUMPABLE takes integer arguments only.
                    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, on, 0, 0, 0) == 0 }
                };
                let dropped = nix::unistd::setgroups(&[]).is_ok()
                    && nix::unistd::setresgid(gid, gid, gid).is_ok()
                    && nix::unistd::setresuid(id, id, id).is_ok()
                    && set_dumpable(0);
                let mut byte = [0u8; 1];
                let ok = dropped
                    && nix::unistd::write(&ack_w, b"1") == Ok(1)
                    && nix::unistd::read(go_r.as_raw_fd(), &mut byte) == Ok(1)
                    && set_dumpable(1)
                    && nix::unistd::write(&ack_w, b"2") == Ok(1);
                // Wait for the parent to close `go` (end of file) or kill us.
                let _ = nix::unistd::read(go_r.as_raw_fd(), &mut byte);
                // SAFETY: `_exit` never returns and runs no atexit handler
                // of the test process this is a copy of.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let mut u = Undumpable {
                    pid: child,
                    go: Some(std::fs::File::from(go_w)),
                    ack: std::fs::File::from(ack_r),
                };
                u.expect_ack(b'1', "dropped to nobody, non-dumpable");
                u
            }
        }
    }

    fn expect_ack(&mut self, want: u8, what: &str) {
        let mut byte = [0u8; 1];
        self.ack.read_exact(&mut byte).expect(what);
        assert_eq!(byte[0], want, "{what}");
    }

    fn make_dumpable(&mut self) {
        self.go
            .as_mut()
            .expect("go pipe")
            .write_all(b"g")
            .expect("tell the child");
        self.expect_ack(b'2', "dumpable again");
    }
}

impl Drop for Undumpable {
    fn drop(&mut self) {
        drop(self.go.take());
        let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

#[test]
fn user_may_not_attach_to_own_non_dumpable_process() {
    // Same uid, gid and (empty) groups as the caller: only the kernel's
    // dumpable rule tells the two cases apart.
    let mut child = Undumpable::start();
    let pid = child.pid.as_raw();
    assert!(
        !caller_may_ptrace_attach(&nobody(), pid).expect("access check"),
        "a non-dumpable process of the caller must be refused"
    );
    child.make_dumpable();
    assert!(
        caller_may_ptrace_attach(&nobody(), pid).expect("access check"),
        "the same process, dumpable again, must be allowed"
    );
}

#[test]
fn missing_process_is_an_error() {
    assert!(matches!(
        caller_may_ptrace_attach(&root(), i32::MAX),
        Err(AccessError::NoSuchProcess(_))
    ));
    assert!(matches!(
        caller_may_ptrace_attach(&root(), 0),
        Err(AccessError::InvalidPid(0))
    ));
    assert!(matches!(
        open_pidfd(i32::MAX),
        Err(AccessError::NoSuchProcess(_))
    ));
}

#[test]
fn pidfd_tracks_exit() {
    let mut child = sleeper(None);
    let pid = i32::try_from(child.0.id()).expect("pid");
    let fd = open_pidfd(pid).expect("pidfd");
    assert!(pidfd_alive(&fd));
    child.0.kill().expect("kill");
    child.0.wait().expect("wait");
    assert!(!pidfd_alive(&fd));
}

// ---- open_for_read -------------------------------------------------------

#[test]
fn open_fd_for_read_reads_a_write_only_unlinked_file_as_the_caller() {
    let d = TempDir::new(0o755);
    let path = d.path("wo");
    let mut w = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("create");
    w.write_all(b"content").expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::remove_file(&path).expect("unlink");
    let me = std::process::id() as i32;
    let mut f = open_fd_for_read(&root(), me, w.as_raw_fd()).expect("reopen as root");
    let mut s = String::new();
    f.read_to_string(&mut s).expect("read");
    assert_eq!(s, "content");
    let same = f.metadata().expect("stat");
    assert_eq!(same.ino(), w.metadata().expect("stat").ino());
    // nobody may neither read root's fds nor a 0600 file of root's.
    let e = open_fd_for_read(&nobody(), me, w.as_raw_fd()).expect_err("must be denied");
    assert!(e.is_access_denied(), "{e}");
    // A directory is not a regular file.
    let dir = fs::File::open(&d.0).expect("open dir");
    assert!(matches!(
        open_fd_for_read(&root(), me, dir.as_raw_fd()),
        Err(OpenError::NotRegular { .. })
    ));
}

#[test]
fn open_regular_file() {
    let d = TempDir::new(0o755);
    fs::write(d.path("img"), b"hello").expect("write");
    let mut f = open_for_read(&root(), &d.path("img")).expect("open");
    let mut s = String::new();
    f.read_to_string(&mut s).expect("read");
    assert_eq!(s, "hello");
}

#[test]
fn open_refuses_symlink_dir_fifo() {
    let d = TempDir::new(0o755);
    fs::write(d.path("img"), b"x").expect("write");
    std::os::unix::fs::symlink(d.path("img"), d.path("link")).expect("symlink");
    fs::create_dir(d.path("dir")).expect("mkdir");
    nix::unistd::mkfifo(
        &d.path("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .expect("mkfifo");
    let c = root();
    assert!(matches!(
        open_for_read(&c, &d.path("link")),
        Err(OpenError::Symlink { .. })
    ));
    assert!(matches!(
        open_for_read(&c, &d.path("dir")),
        Err(OpenError::NotRegular {
            kind: "directory",
            ..
        })
    ));
    // Must not block waiting for a writer.
    assert!(matches!(
        open_for_read(&c, &d.path("fifo")),
        Err(OpenError::NotRegular { kind: "fifo", .. })
    ));
    let e = open_for_read(&c, &d.path("missing")).expect_err("missing");
    assert!(matches!(e, OpenError::Open { .. }) && !e.is_access_denied());
}

#[test]
fn open_is_done_with_callers_credentials() {
    let d = TempDir::new(0o755);
    fs::write(d.path("secret"), b"root only").expect("write");
    fs::set_permissions(d.path("secret"), fs::Permissions::from_mode(0o600)).expect("chmod");
    let e = open_for_read(&nobody(), &d.path("secret")).expect_err("must be denied");
    assert!(e.is_access_denied(), "{e:?}");
    // Root can.
    open_for_read(&root(), &d.path("secret")).expect("root opens");
}

// ---- create_output -------------------------------------------------------

#[test]
fn create_commit_and_mode() {
    let d = TempDir::new(0o755);
    let target = d.path("out.ckpt");
    let mut p = create_output(&root(), &target, false).expect("create");
    p.file.write_all(b"image").expect("write");
    // The test directory supports O_TMPFILE: no name until the commit.
    assert!(d.names().is_empty(), "{:?}", d.names());
    p.commit().expect("commit");
    assert_eq!(d.names(), vec!["out.ckpt".to_owned()]);
    assert_eq!(fs::read(&target).expect("read"), b"image");
    let meta = fs::symlink_metadata(&target).expect("stat");
    assert_eq!(meta.mode() & 0o7777, 0o600);
}

#[test]
fn drop_removes_temporary() {
    let d = TempDir::new(0o755);
    let p = create_output(&root(), &d.path("out"), false).expect("create");
    drop(p);
    assert!(d.names().is_empty(), "{:?}", d.names());
}

#[test]
fn existing_symlink_directory_refused() {
    let d = TempDir::new(0o755);
    fs::write(d.path("exists"), b"old").expect("write");
    std::os::unix::fs::symlink("/etc/passwd", d.path("link")).expect("symlink");
    std::os::unix::fs::symlink(d.path("nowhere"), d.path("dangling")).expect("symlink");
    fs::create_dir(d.path("dir")).expect("mkdir");
    let c = root();
    assert!(matches!(
        create_output(&c, &d.path("exists"), false),
        Err(CreateError::Exists { .. })
    ));
    for force in [false, true] {
        assert!(matches!(
            create_output(&c, &d.path("link"), force),
            Err(CreateError::Symlink { .. })
        ));
        assert!(matches!(
            create_output(&c, &d.path("dangling"), force),
            Err(CreateError::Symlink { .. })
        ));
        assert!(matches!(
            create_output(&c, &d.path("dir"), force),
            Err(CreateError::Directory { .. })
        ));
    }
    assert!(matches!(
        create_output(&c, Path::new("/tmp/"), false),
        Err(CreateError::BadName { .. })
    ));
    assert!(matches!(
        create_output(&c, Path::new("a/.."), false),
        Err(CreateError::BadName { .. })
    ));
    assert_eq!(fs::read(d.path("exists")).expect("read"), b"old");
    assert!(!d.names().iter().any(|n| n.contains(".tmp.")));
}

#[test]
fn force_overwrites_regular_file() {
    let d = TempDir::new(0o755);
    fs::write(d.path("exists"), b"old").expect("write");
    let mut p = create_output(&root(), &d.path("exists"), true).expect("create");
    p.file.write_all(b"new").expect("write");
    p.commit().expect("commit");
    assert_eq!(fs::read(d.path("exists")).expect("read"), b"new");
    assert_eq!(d.names(), vec!["exists".to_owned()]);
}

#[test]
fn commit_never_replaces_a_name_that_appeared() {
    let d = TempDir::new(0o755);
    let p = create_output(&root(), &d.path("late"), false).expect("create");
    fs::write(d.path("late"), b"someone else's").expect("write");
    assert!(matches!(p.commit(), Err(CommitError::Exists { .. })));
    assert_eq!(fs::read(d.path("late")).expect("read"), b"someone else's");
    assert_eq!(d.names(), vec!["late".to_owned()], "temporary removed");

    let p = create_output(&root(), &d.path("late2"), true).expect("create");
    std::os::unix::fs::symlink("/etc/passwd", d.path("late2")).expect("symlink");
    assert!(matches!(p.commit(), Err(CommitError::Symlink { .. })));
    assert!(fs::symlink_metadata(d.path("late2"))
        .expect("stat")
        .file_type()
        .is_symlink());
}

#[test]
fn create_is_done_with_callers_credentials() {
    // A root-owned 0755 directory: nobody cannot create there.
    let d = TempDir::new(0o755);
    let e = create_output(&nobody(), &d.path("out"), false).expect_err("denied");
    assert!(e.is_access_denied(), "{e:?}");
    assert!(d.names().is_empty());

    // A world-writable sticky directory: the file belongs to nobody.
    let d = TempDir::new(0o1777);
    let mut p = create_output(&nobody(), &d.path("out"), false).expect("create");
    p.file.write_all(b"x").expect("write");
    p.commit().expect("commit");
    let meta = fs::symlink_metadata(d.path("out")).expect("stat");
    assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY));
    assert_eq!(meta.mode() & 0o7777, 0o600);

    // A dropped temp owned by nobody is removed by nobody.
    let p = create_output(&nobody(), &d.path("out2"), false).expect("create");
    drop(p);
    assert_eq!(d.names(), vec!["out".to_owned()]);
}
