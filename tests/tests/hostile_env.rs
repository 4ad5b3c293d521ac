//! Hostile start-up: LD_PRELOAD, TSS2_LOGFILE/TSS2_LOG, a poisoned PATH, a
//! runtime CKPT_SYSCONFDIR and friends, fds 0-2 closed, an empty argv. The
//! helpers must still work (or fail cleanly), sign with the host key of the
//! build-time configuration directory, and run or create nothing on the
//! environment's say-so.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ckpt_tests::{exit, path_str, Counter, Env, Proc, Run, TestDir, Who};

/// Names a helper might look up in PATH; each is a script leaving a marker.
const PATH_NAMES: &[&str] = &[
    "sh",
    "bash",
    "dash",
    "env",
    "cat",
    "ls",
    "ps",
    "id",
    "getent",
    "ldconfig",
    "ldd",
    "kill",
    "sleep",
    "true",
    "false",
    "uname",
    "setpriv",
    "setsid",
    "su",
    "sudo",
    "logger",
    "systemd-cat",
    "journalctl",
    "tpm2",
    "tpm2_getcap",
    "tpm2_startup",
    "swtpm",
    "criu",
    "gdb",
    "gcc",
    "cc",
    "ld",
    "mount",
    "ip",
    "cp",
    "mv",
    "rm",
    "chmod",
    "chown",
    "sync",
    "sha256sum",
    "ckpt-sign",
    "ckpt-verify",
];

struct Hostile {
    markers: PathBuf,
    vars: Vec<String>,
    launcher: PathBuf,
}

fn hostile(env: &Env, dir: &TestDir) -> Hostile {
    let markers = dir.dir("markers", 0o777, None);
    fs::set_permissions(&markers, fs::Permissions::from_mode(0o777)).unwrap();
    let define = format!("-DMARKER_DIR=\"{}\"", markers.display());
    let so = dir.compile_with(
        env,
        "evil_preload",
        "evil.so",
        &["-shared", "-fPIC", &define],
    );
    let launcher = dir.compile(env, "hostile_exec");
    let pathdir = dir.dir("evil-path", 0o755, None);
    for name in PATH_NAMES {
        let p = pathdir.join(name);
        fs::write(
            &p,
            format!(
                "#!/bin/sh\necho \"$0 $*\" > '{}/path-{name}-'$$\nexit 127\n",
                markers.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    // A configuration directory the caller controls, with a key of its own.
    let etc = dir.dir("evil-etc", 0o755, Some(&env.user));
    let keys = etc.join("keys");
    fs::create_dir(&keys).unwrap();
    fs::write(keys.join("host.key"), [7u8; 32]).unwrap();
    fs::write(
        keys.join("host.pub"),
        "ckpt-ed25519 AAAA 00000000000000000000000000000000\n",
    )
    .unwrap();
    fs::write(etc.join("policy.toml"), "revoked = []\n").unwrap();
    let m = markers.display();
    let vars = vec![
        format!("LD_PRELOAD={}", so.display()),
        format!("LD_AUDIT={}", so.display()),
        format!("LD_LIBRARY_PATH={}", pathdir.display()),
        format!("TSS2_LOGFILE={m}/tss2.log"),
        "TSS2_LOG=all+trace".to_string(),
        format!("TSS2_TCTI=swtpm:path={m}/tcti"),
        format!("PATH={}", pathdir.display()),
        format!("CKPT_SYSCONFDIR={}", etc.display()),
        format!("CKPT_STATEDIR={m}/state"),
        format!("HOME={}", etc.display()),
        format!("TMPDIR={m}"),
        format!("GCONV_PATH={}", pathdir.display()),
        format!("RUST_LOG=trace"),
        "RUST_BACKTRACE=full".to_string(),
        "MALLOC_CHECK_=3".to_string(),
        "IFS=/".to_string(),
        format!("SSL_CERT_FILE={m}/cert"),
    ];
    Hostile {
        markers,
        vars,
        launcher,
    }
}

impl Hostile {
    /// Runs a helper as the test user through the launcher, with exactly
    /// the hostile environment and, with `close_std`, fds 0-2 closed.
    fn run(&self, env: &Env, dir: &TestDir, helper: &Path, close_std: bool, args: &[&str]) -> Run {
        let mut cmd = env.command(Who::User(&env.user), &self.launcher);
        if close_std {
            cmd.arg("--close-std");
        }
        for v in &self.vars {
            cmd.arg("--env").arg(v);
        }
        cmd.arg("--").arg(helper).args(args).current_dir(&dir.work);
        dir.run(cmd)
    }

    fn assert_no_markers(&self, after: &str) {
        let found = TestDir::list(&self.markers);
        assert!(
            found.is_empty(),
            "{after}: the hostile environment took effect, files in {}: {found:?}",
            self.markers.display()
        );
    }
}

/// The image is valid and signed with the real host key.
fn assert_signed_by_host(env: &Env, dir: &TestDir, image: &Path) {
    let (_line, host_id) = env.host_key_id(dir);
    let (run, json) = env.verify_json(dir, image);
    run.assert_code(
        exit::OK,
        "verify (clean environment) of the image dumped in a hostile one",
    );
    assert_eq!(
        json["key_id"], host_id,
        "the image must be signed by the build-time host key, not one named by the environment\n{run}"
    );
}

#[test]
fn helpers_ignore_a_poisoned_environment() {
    let env = Env::require();
    let dir = TestDir::new(&env, "hostile-env");
    let h = hostile(&env, &dir);
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let p1 = c.proc.pid;
    let image = dir.work.join("h.ckpt");

    let pid = p1.to_string();
    let run = h.run(
        &env,
        &dir,
        &env.sign_path(),
        false,
        &["dump", "--pid", &pid, "-o", path_str(&image)],
    );
    run.assert_code(exit::OK, "dump with a poisoned environment");
    h.assert_no_markers("dump");
    c.proc.wait_gone("dump kills the target");
    assert_signed_by_host(&env, &dir, &image);

    let run = h.run(
        &env,
        &dir,
        &env.verify_path(),
        false,
        &["verify", path_str(&image)],
    );
    run.assert_code(exit::OK, "verify with a poisoned environment");
    h.assert_no_markers("verify");

    let n = c.lines().last().unwrap().0;
    let run = h.run(
        &env,
        &dir,
        &env.verify_path(),
        false,
        &["restore", path_str(&image)],
    );
    let restored = run
        .stdout
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(|p| Proc::adopt(p, "restored counter"));
    run.assert_code(exit::OK, "restore with a poisoned environment");
    let p2 = restored.unwrap_or_else(|| panic!("restore printed no live pid\n{run}"));
    c.wait_for(p2.pid, n + 10);
    c.assert_continuous(&[p1, p2.pid]);
    h.assert_no_markers("restore (and the restored process)");
}

#[test]
fn helpers_work_with_fds_0_1_2_closed() {
    let env = Env::require();
    let dir = TestDir::new(&env, "hostile-fds");
    let h = hostile(&env, &dir);
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let p1 = c.proc.pid;
    let image = dir.work.join("h.ckpt");
    let pid = p1.to_string();

    let run = h.run(
        &env,
        &dir,
        &env.sign_path(),
        true,
        &["dump", "--pid", &pid, "-o", path_str(&image)],
    );
    run.assert_code(
        exit::OK,
        "dump with fds 0-2 closed and a poisoned environment",
    );
    h.assert_no_markers("dump with fds 0-2 closed");
    c.proc.wait_gone("dump kills the target");
    assert_signed_by_host(&env, &dir, &image);
    let mut listing = TestDir::list(&dir.work);
    listing.retain(|n| n != "c.count" && n != "c.log" && n != "h.ckpt");
    assert!(
        listing.is_empty(),
        "stray files next to the image: {listing:?}"
    );

    let run = h.run(
        &env,
        &dir,
        &env.verify_path(),
        true,
        &["verify", path_str(&image)],
    );
    run.assert_code(exit::OK, "verify with fds 0-2 closed");

    let n = c.lines().last().unwrap().0;
    let pidfile = dir.work.join("h.pid");
    let run = h.run(
        &env,
        &dir,
        &env.verify_path(),
        true,
        &["restore", path_str(&image), "--pidfile", path_str(&pidfile)],
    );
    let restored = fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .and_then(|p| Proc::adopt(p, "restored counter"));
    run.assert_code(exit::OK, "restore with fds 0-2 closed");
    let p2 =
        restored.unwrap_or_else(|| panic!("restore wrote no live pid to {}", pidfile.display()));
    c.wait_for(p2.pid, n + 10);
    c.assert_continuous(&[p1, p2.pid]);
    h.assert_no_markers("restore with fds 0-2 closed");
}

#[test]
fn helpers_started_with_an_empty_argv_fail_cleanly() {
    let env = Env::require();
    let dir = TestDir::new(&env, "hostile-argv");
    let h = hostile(&env, &dir);
    for helper in [env.sign_path(), env.verify_path()] {
        let mut cmd = env.command(Who::User(&env.user), &h.launcher);
        cmd.arg("--no-argv");
        for v in &h.vars {
            cmd.arg("--env").arg(v);
        }
        cmd.arg("--").arg(&helper).current_dir(&dir.work);
        let run = dir.run(cmd);
        run.assert_code(
            exit::USAGE,
            &format!(
                "{} with argc == 0 (SECURITY.md §4: usage)",
                helper.display()
            ),
        );
        h.assert_no_markers("argc == 0");
    }
}

/// A user namespace in which the caller is "root" (`unshare -r`): the
/// helpers would see uid 0 as their caller, so they refuse to start,
/// naming the translation, and touch nothing (the counter the dump names
/// keeps counting; no image).
#[test]
fn helpers_refuse_a_user_namespace_that_renumbers_the_caller() {
    let env = Env::require();
    let dir = TestDir::new(&env, "hostile-userns");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let image = dir.work.join("u.ckpt");
    let pid = c.proc.pid.to_string();
    let unshare = Path::new("/usr/bin/unshare");
    for (helper, args) in [
        (
            env.sign_path(),
            vec!["dump", "--pid", pid.as_str(), "-o", path_str(&image)],
        ),
        (env.verify_path(), vec!["policy", "check"]),
    ] {
        let mut cmd = env.command(Who::User(&env.user), unshare);
        cmd.arg("-r")
            .arg(&helper)
            .args(&args)
            .current_dir(&dir.work);
        let run = dir.run(cmd);
        run.assert_code(
            exit::OTHER,
            "a helper in a user namespace that makes the caller root",
        );
        assert!(
            run.stderr.contains(&format!(
                "uid 0 here is {} outside this user namespace",
                env.user.uid
            )),
            "the refusal names the translation\n{run}"
        );
    }
    assert!(!image.exists(), "no image");
    assert!(c.proc.is_alive(), "the counter was not touched");
}
