//! The caller-credential worker (`as_caller::worker`): every operation
//! run through it gives what a forked child gives, with the caller's
//! credentials; the worker holds exactly those, is not dumpable and is in
//! a process group of its own; a killed worker fails the operation under
//! way, and later operations fork their own children again; a stopped one
//! does not hold up its end.
//!
//! One test: the worker is global to the process. Runs as root (it drops
//! to uid/gid 65534, `nobody`); as another user it fails, never passes.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use ckpt_privsep::access::caller_may_ptrace_attach;
use ckpt_privsep::as_caller::{create_output, open_for_read, worker, CreateError};
use ckpt_privsep::Caller;

const NOBODY: u32 = 65534;

struct TempDir(PathBuf);

impl TempDir {
    fn new(mode: u32) -> TempDir {
        let p = std::env::temp_dir().join(format!("ckpt-worker-test-{}", std::process::id()));
        fs::create_dir(&p).expect("mkdir");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// This process's children, from `/proc/self/task/*/children`.
fn children() -> Vec<i32> {
    let mut out = Vec::new();
    for t in fs::read_dir("/proc/self/task").expect("tasks") {
        let p = t.expect("task").path().join("children");
        if let Ok(s) = fs::read_to_string(p) {
            out.extend(s.split_whitespace().filter_map(|w| w.parse::<i32>().ok()));
        }
    }
    out
}

fn status_field(pid: i32, key: &str) -> String {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .expect("field")
        .trim()
        .to_string()
}

#[test]
fn operations_through_the_worker_hold_the_callers_credentials() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: it drops to uid {NOBODY}"
    );
    let nobody = Caller {
        uid: NOBODY,
        gid: NOBODY,
        groups: Vec::new(),
        privileged: true,
    };
    let before = children();
    worker::start(&nobody).expect("start the worker");
    let new: Vec<i32> = children()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(new.len(), 1, "one worker child: {new:?}");
    let w = new[0];
    // Exactly nobody's ids, no capability, its own process group, and not
    // dumpable (its /proc files other than the directory then belong to
    // root).
    assert_eq!(status_field(w, "Uid:"), "65534\t65534\t65534\t65534");
    assert_eq!(status_field(w, "Gid:"), "65534\t65534\t65534\t65534");
    assert_eq!(status_field(w, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(w, "CapPrm:"), "0000000000000000");
    assert_eq!(
        nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(w)))
            .unwrap()
            .as_raw(),
        w
    );
    assert_eq!(fs::metadata(format!("/proc/{w}/environ")).unwrap().uid(), 0);

    let d = TempDir::new(0o1777);
    // Denied what nobody may not read; allowed what it may.
    fs::write(d.0.join("secret"), b"root only").unwrap();
    fs::set_permissions(d.0.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    let e = open_for_read(&nobody, &d.0.join("secret")).expect_err("denied");
    assert!(e.is_access_denied(), "{e:?}");
    fs::write(d.0.join("public"), b"hello").unwrap();
    fs::set_permissions(d.0.join("public"), fs::Permissions::from_mode(0o644)).unwrap();
    let mut s = String::new();
    open_for_read(&nobody, &d.0.join("public"))
        .expect("open")
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "hello");
    // The probe: nobody may not read this (root) process.
    let me = i32::try_from(std::process::id()).unwrap();
    assert!(!caller_may_ptrace_attach(&nobody, me).expect("probe"));
    // Create, write, commit: the file is nobody's, mode 0600.
    let mut p = create_output(&nobody, &d.0.join("out"), false).expect("create");
    p.file.write_all(b"image").unwrap();
    p.commit().expect("commit");
    let meta = fs::symlink_metadata(d.0.join("out")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (NOBODY, NOBODY, 0o600)
    );
    assert!(matches!(
        create_output(&nobody, &d.0.join("out"), false),
        Err(CreateError::Exists { .. })
    ));
    // A dropped output is removed (named fallback or unnamed: no trace).
    drop(create_output(&nobody, &d.0.join("out2"), false).expect("create"));
    let mut names: Vec<String> = fs::read_dir(&d.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["out", "public", "secret"]);
    // Still the same worker: nothing forked for these.
    let now: Vec<i32> = children()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(now, vec![w], "only the worker");

    // Killed by the caller (who may signal it): the next operation fails
    // naming the helper, and later ones fork their own children again.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(w),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let e = open_for_read(&nobody, &d.0.join("public")).expect_err("the worker is gone");
    assert!(
        matches!(e, ckpt_privsep::as_caller::OpenError::Helper(_)),
        "{e:?}"
    );
    open_for_read(&nobody, &d.0.join("public")).expect("a forked child again");
    assert!(!children().contains(&w), "the dead worker was reaped");

    // Stopped by the caller (SIGSTOP): ending it does not wait for it, so
    // the helper can still write its audit record.
    let before = children();
    worker::start(&nobody).expect("start a second worker");
    let w2 = children()
        .into_iter()
        .find(|p| !before.contains(p))
        .expect("the second worker");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(w2),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        worker::stop();
        let _ = tx.send(());
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("stopping a stopped worker returns");
    assert!(
        !children().contains(&w2),
        "the stopped worker was killed and reaped"
    );
}
