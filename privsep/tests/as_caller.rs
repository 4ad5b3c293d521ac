//! Tests for acting as the caller and for the kernel access check.
//!
//! These run as root (CI and the development machines do) and fork children
//! that drop to uid/gid 65534 (`nobody`) to test denials. Run as another user
//! they fail: they never silently pass.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};

use ckpt_privsep::access::{caller_may_ptrace_read, open_pidfd, pidfd_alive, AccessError};
use ckpt_privsep::as_caller::{create_output, open_for_read, CommitError, CreateError, OpenError};
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

#[test]
fn root_may_read_any_process() {
    let child = sleeper(None);
    let pid = i32::try_from(child.0.id()).expect("pid");
    assert!(caller_may_ptrace_read(&root(), pid).expect("kcmp"));
}

#[test]
fn other_user_may_not_read_root_process() {
    let child = sleeper(None);
    let pid = i32::try_from(child.0.id()).expect("pid");
    assert!(!caller_may_ptrace_read(&nobody(), pid).expect("kcmp"));
    // And not this (root) test process either.
    let me = i32::try_from(std::process::id()).expect("pid");
    assert!(!caller_may_ptrace_read(&nobody(), me).expect("kcmp"));
}

#[test]
fn user_may_read_own_process() {
    let child = sleeper(Some(NOBODY));
    let pid = i32::try_from(child.0.id()).expect("pid");
    // Give exec a moment to finish so the target runs `sleep` as nobody.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(caller_may_ptrace_read(&nobody(), pid).expect("kcmp"));
}

#[test]
fn missing_process_is_an_error() {
    assert!(matches!(
        caller_may_ptrace_read(&root(), i32::MAX),
        Err(AccessError::NoSuchProcess(_))
    ));
    assert!(matches!(
        caller_may_ptrace_read(&root(), 0),
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
