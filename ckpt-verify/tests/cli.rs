//! Exit codes and output of `ckpt-verify` on inputs that need no engine:
//! malformed images, refused paths, policy drafts. (End-to-end tests with
//! real images, through the installed setuid binary, live in `tests/`.)
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ckpt-verify"))
}

struct Tmp(PathBuf);
impl Tmp {
    fn new() -> Tmp {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "ckpt-verify-cli-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir(&p).unwrap();
        Tmp(p)
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = bin().args(args).output().expect("run ckpt-verify");
    (
        status.code().expect("exit code"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn garbage_is_tampered() {
    let t = Tmp::new();
    let img = t.0.join("garbage.ckpt");
    fs::write(&img, vec![0x41u8; 4096]).unwrap();
    let (code, out, err) = run(&["verify".as_ref(), "--json".as_ref(), img.as_os_str()]);
    assert_eq!(code, 4, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["integrity"], "tampered");
    assert_eq!(v["signed"], false);
    assert_eq!(v["trusted"], false);
    assert!(v["key_id"].is_null());
    assert!(v["error"].is_string());

    let (code, out, _) = run(&["verify".as_ref(), img.as_os_str()]);
    assert_eq!(code, 4);
    assert!(out.contains("integrity: tampered"), "{out}");

    let (code, _, _) = run(&["inspect".as_ref(), img.as_os_str()]);
    assert_eq!(code, 4);
    let (code, _, _) = run(&["explain".as_ref(), img.as_os_str()]);
    assert_eq!(code, 4);

    // restore refuses before creating anything.
    let pidfile = t.0.join("pid");
    let (code, out, err) = run(&[
        "restore".as_ref(),
        img.as_os_str(),
        "--pidfile".as_ref(),
        pidfile.as_os_str(),
    ]);
    assert_eq!(code, 4, "{out}{err}");
    assert!(out.is_empty());
    assert_eq!(fs::read_dir(&t.0).unwrap().count(), 1, "only the image");
}

#[test]
fn symlinks_fifos_and_missing_files_are_refused() {
    let t = Tmp::new();
    let img = t.0.join("img");
    fs::write(&img, b"x").unwrap();
    let link = t.0.join("link");
    std::os::unix::fs::symlink(&img, &link).unwrap();
    let (code, _, err) = run(&["verify".as_ref(), link.as_os_str()]);
    assert_eq!(code, 1);
    assert!(err.contains("symbolic link"), "{err}");

    let fifo = t.0.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (code, _, err) = run(&["verify".as_ref(), fifo.as_os_str()]);
    assert_eq!(code, 1);
    assert!(err.contains("not a regular file"), "{err}");

    let (code, _, _) = run(&["verify".as_ref(), t.0.join("missing").as_os_str()]);
    assert_eq!(code, 1);
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["frobnicate".as_ref()]).0, 2);
    assert_eq!(run(&["verify".as_ref()]).0, 2);
    assert_eq!(
        run(&["restore".as_ref(), "x".as_ref(), "--bogus".as_ref()]).0,
        2
    );
    assert_eq!(run(&["--help".as_ref()]).0, 0);
}

#[test]
fn policy_check_of_a_draft() {
    let t = Tmp::new();
    let good = t.0.join("good.toml");
    fs::write(
        &good,
        "revoked = []\n[[rule]]\nname = \"r\"\nsigned_by = [\"this-host\"]\ngrant = [\"credentials\"]\n",
    )
    .unwrap();
    let (code, out, err) = run(&["policy".as_ref(), "check".as_ref(), good.as_os_str()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("OK"), "{out}");

    let bad = t.0.join("bad.toml");
    fs::write(&bad, "revoked = []\n\nunknown_key = true\n").unwrap();
    let (code, out, err) = run(&["policy".as_ref(), "check".as_ref(), bad.as_os_str()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("bad.toml:3:"), "{err}");
    assert!(err.contains("unknown_key"), "{err}");
}
