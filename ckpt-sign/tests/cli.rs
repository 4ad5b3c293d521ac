//! Exit codes of `ckpt-sign` for refusals that happen before any target is
//! touched. (End-to-end dumps through the installed setuid binary live in
//! `tests/`.)
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

fn code(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ckpt-sign"))
        .args(args)
        .output()
        .expect("run ckpt-sign");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn usage() {
    assert_eq!(code(&[]).0, 2);
    assert_eq!(code(&["dump", "--pid", "0", "-o", "/tmp/x"]).0, 2);
    assert_eq!(code(&["dump", "--pid=-3", "-o", "/tmp/x"]).0, 2);
    assert_eq!(code(&["dump", "--pid", "abc", "-o", "/tmp/x"]).0, 2);
    // `--tree` is an ordinary option now (not a usage error); an
    // invalid pid with it still is.
    assert_eq!(code(&["dump", "--pid", "0", "-o", "/tmp/x", "--tree"]).0, 2);
    assert_eq!(
        code(&[
            "dump",
            "--pid",
            "1",
            "-o",
            "/tmp/x",
            "--unsigned",
            "--key",
            "k"
        ])
        .0,
        2
    );
}

#[test]
fn missing_process_is_a_dump_failure() {
    let (c, err) = code(&[
        "dump",
        "--pid",
        "2147483647",
        "-o",
        "/tmp/never",
        "--unsigned",
    ]);
    assert_eq!(c, 6, "{err}");
    assert!(err.contains("no such process"), "{err}");
}

/// `--attestation` names the TPM attestation key: without `--tpm` it is a
/// usage error. (`pubkey --tpm` itself depends on the installed TPM key; it
/// is tested end to end, against a software TPM, in `tests/tests/tpm.rs`.)
#[test]
fn pubkey_attestation_needs_tpm() {
    let (c, err) = code(&["pubkey", "--attestation"]);
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("--tpm"), "{err}");
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("ckpt-sign-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir(&p).unwrap();
    p
}

#[test]
fn output_refusals_leave_target_and_files_untouched() {
    let d = tmpdir("refuse");
    let child = Child(
        Command::new("sleep")
            .arg("60")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id().to_string();
    std::fs::write(d.join("exists.ckpt"), b"keep me").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", d.join("link.ckpt")).unwrap();
    for (name, force) in [
        ("exists.ckpt", false),
        ("link.ckpt", false),
        ("link.ckpt", true),
    ] {
        let out = d.join(name);
        let mut args = vec![
            "dump",
            "--pid",
            &pid,
            "-o",
            out.to_str().unwrap(),
            "--unsigned",
        ];
        if force {
            args.push("--force");
        }
        let (c, err) = code(&args);
        assert_eq!(c, 6, "{name} force={force}: {err}");
    }
    assert_eq!(std::fs::read(d.join("exists.ckpt")).unwrap(), b"keep me");
    let names: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    // The target was never touched: still running, not traced.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("TracerPid:\t0"), "{status}");
    assert!(!status.contains("State:\tZ"), "{status}");
    let _ = std::fs::remove_dir_all(&d);
}
