//! The helpers' own configuration, broken: the host key missing,
//! unreadable, loosely owned or moded, a symbolic link; the public key
//! missing or wrong; the policy unparseable or writable by others;
//! `ckpt.toml` unparseable; the caller's `--key` file unreadable, missing,
//! not a key or a directory; and the audit socket gone or not read. Dumps
//! refuse cleanly (exit 1, or 3 for a path the kernel refused the caller)
//! with the target untouched and no file written; a signed image is never
//! trusted (exit 9) when the trust configuration is unusable.
//!
//! Each case changes `<sysconfdir>` under the exclusive lock (and the
//! policy lock shared with the other test binaries) and puts it back.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ckpt_tests::policy::PolicyGuard;
use ckpt_tests::{exit, path_str, write_owned, Counter, FileSnapshot, TestDir, Who};

use crate::{new_entries, outcome, setup_exclusive, strays_except, Cases};

/// Saves a file's bytes, mode and owner and puts them back when dropped.
struct Saved {
    path: PathBuf,
    snap: FileSnapshot,
}

impl Saved {
    fn new(path: &Path) -> Saved {
        Saved {
            path: path.to_path_buf(),
            snap: FileSnapshot::of(path),
        }
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        let _ = fs::remove_dir_all(&self.path);
        fs::write(&self.path, &self.snap.content).expect("put the file back");
        fs::set_permissions(
            &self.path,
            fs::Permissions::from_mode(self.snap.mode & 0o7777),
        )
        .expect("chmod back");
        std::os::unix::fs::chown(&self.path, Some(self.snap.uid), Some(self.snap.gid))
            .expect("chown back");
    }
}

#[test]
fn broken_keys_policy_and_configuration() {
    let (_g, env) = setup_exclusive();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "config");
    let etc = env.sysconfdir.clone();
    let keys = etc.join("keys");
    let (host_key, host_pub) = (keys.join("host.key"), keys.join("host.pub"));
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let pid = c.proc.pid.to_string();
    let image = dir.work.join("good.ckpt");
    env.dump_ok(&dir, c.proc.pid, &image, &["--leave-running"]);
    let other_key = ckpt_keys::SigningKey::generate().expect("key");
    let mut cases = Cases::default();

    let dump_refused =
        |cases: &mut Cases, c: &mut Counter, name: &str, want: i32, extra: &[&str]| {
            let before = TestDir::list(&dir.work);
            let out = dir.work.join(format!("{name}.ckpt"));
            let mut args = vec![
                "dump",
                "--pid",
                &pid,
                "-o",
                path_str(&out),
                "--leave-running",
            ];
            args.extend_from_slice(extra);
            let r = env.sign(&dir, &args);
            cases.check(name, outcome(&r, want, None).map(|e| format!("dump: {e}")));
            let new = new_entries(&dir.work, &before);
            if !new.is_empty() {
                cases.fail(name, format!("new files: {new:?}"));
            }
            c.proc.assert_untouched(name);
        };
    let verify_is = |cases: &mut Cases, name: &str, want: i32| {
        let r = env.verify(&dir, &["verify", path_str(&image)]);
        cases.check(
            name,
            outcome(&r, want, None).map(|e| format!("verify: {e}")),
        );
    };

    // The host secret key.
    {
        let name = "host-key-missing";
        cases.start(name);
        let _s = Saved::new(&host_key);
        fs::remove_file(&host_key).unwrap();
        dump_refused(&mut cases, &mut c, name, exit::OTHER, &[]);
    }
    for (name, mode) in [
        ("host-key-mode-0644", 0o644),
        ("host-key-mode-0000-group-writable", 0o620),
    ] {
        cases.start(name);
        let _s = Saved::new(&host_key);
        fs::set_permissions(&host_key, fs::Permissions::from_mode(mode)).unwrap();
        dump_refused(&mut cases, &mut c, name, exit::OTHER, &[]);
    }
    {
        let name = "host-key-owned-by-the-user";
        cases.start(name);
        let _s = Saved::new(&host_key);
        std::os::unix::fs::chown(&host_key, Some(env.user.uid), Some(env.user.gid)).unwrap();
        dump_refused(&mut cases, &mut c, name, exit::OTHER, &[]);
    }
    {
        let name = "host-key-a-symlink";
        cases.start(name);
        let _s = Saved::new(&host_key);
        let copy = dir.root.join("host.key.copy");
        fs::copy(&host_key, &copy).unwrap();
        fs::remove_file(&host_key).unwrap();
        symlink(&copy, &host_key).unwrap();
        dump_refused(&mut cases, &mut c, name, exit::OTHER, &[]);
    }
    {
        let name = "host-key-empty";
        cases.start(name);
        let _s = Saved::new(&host_key);
        fs::write(&host_key, b"").unwrap();
        dump_refused(&mut cases, &mut c, name, exit::OTHER, &[]);
    }
    {
        let name = "keys-dir-group-writable";
        cases.start(name);
        let mode = fs::metadata(&keys).unwrap().permissions().mode();
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o775)).unwrap();
        dump_refused(&mut cases, &mut c, name, exit::OTHER, &[]);
        fs::set_permissions(&keys, fs::Permissions::from_mode(mode & 0o7777)).unwrap();
    }
    // The host public key: a signed image is never trusted without it.
    {
        let name = "host-pub-missing";
        cases.start(name);
        let _s = Saved::new(&host_pub);
        fs::remove_file(&host_pub).unwrap();
        verify_is(&mut cases, name, exit::UNTRUSTED);
    }
    {
        let name = "host-pub-another-key";
        cases.start(name);
        let _s = Saved::new(&host_pub);
        fs::write(&host_pub, format!("{}\n", other_key.public_key().to_line())).unwrap();
        verify_is(&mut cases, name, exit::UNTRUSTED);
    }
    {
        let name = "host-pub-garbage";
        cases.start(name);
        let _s = Saved::new(&host_pub);
        fs::write(&host_pub, b"ckpt-ed25519 !!!! not-a-key\n").unwrap();
        verify_is(&mut cases, name, exit::UNTRUSTED);
    }
    // The policy.
    let policy = etc.join("policy.toml");
    for (name, text, mode, user_owned) in [
        ("policy-unparseable", "this is [not toml", 0o644, false),
        ("policy-world-writable", "revoked = []\n", 0o666, false),
        ("policy-owned-by-the-user", "revoked = []\n", 0o644, true),
    ] {
        cases.start(name);
        fs::write(&policy, text).unwrap();
        fs::set_permissions(&policy, fs::Permissions::from_mode(mode)).unwrap();
        if user_owned {
            std::os::unix::fs::chown(&policy, Some(env.user.uid), Some(env.user.gid)).unwrap();
        }
        verify_is(&mut cases, name, exit::UNTRUSTED);
        fs::remove_file(&policy).unwrap();
    }
    {
        let name = "policy-d-a-regular-file";
        cases.start(name);
        let d = etc.join("policy.d");
        let had_dir = d.is_dir();
        if had_dir {
            fs::remove_dir_all(&d).unwrap();
        }
        fs::write(&d, "not a directory\n").unwrap();
        verify_is(&mut cases, name, exit::UNTRUSTED);
        fs::remove_file(&d).unwrap();
        if had_dir {
            fs::create_dir(&d).unwrap();
            fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    // ckpt.toml.
    {
        let name = "ckpt-toml-unparseable";
        cases.start(name);
        let p = etc.join("ckpt.toml");
        assert!(
            !p.exists(),
            "{} exists: this test expects the default configuration",
            p.display()
        );
        fs::write(&p, "[tpm\nsign = maybe\n").unwrap();
        dump_refused(&mut cases, &mut c, name, exit::OTHER, &[]);
        fs::remove_file(&p).unwrap();
    }
    // The caller's own --key file.
    let theirs = dir.dir("theirs", 0o755, Some(&env.other));
    let k = theirs.join("their.key");
    write_owned(&k, &other_key.to_secret_file_bytes(), &env.other);
    let garbage = dir.work.join("garbage.key");
    write_owned(&garbage, b"ckpt-ed25519-secret not really\n", &env.user);
    let missing = dir.work.join("missing.key");
    let keydir = dir.work.clone();
    for (name, key, want) in [
        ("user-key-of-another-user", &k, exit::ACCESS_DENIED),
        ("user-key-missing", &missing, exit::OTHER),
        ("user-key-garbage", &garbage, exit::OTHER),
        ("user-key-a-directory", &keydir, exit::OTHER),
    ] {
        cases.start(name);
        dump_refused(&mut cases, &mut c, name, want, &["--key", path_str(key)]);
    }
    cases.check("user-key-a-directory", strays_except(&dir, &[c.proc.pid]));
    drop(guard);
    cases.finish("keys, policy and configuration");
}

/// The audit socket gone, or bound by something that never reads: dumps
/// and plain restores (no grant) still complete, promptly, with a warning.
#[test]
fn audit_socket_down_or_blocking() {
    let (_g, env) = setup_exclusive();
    let dir = TestDir::new(&env, "audit-down");
    let sock = PathBuf::from(match option_env!("CKPT_SYSLOG_SOCKET") {
        Some(p) => p,
        None => panic!("built without CKPT_SYSLOG_SOCKET (scripts/test.sh sets it)"),
    });
    let aside = sock.with_extension("aside");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let pid = c.proc.pid.to_string();
    let mut cases = Cases::default();
    for name in ["audit-socket-missing", "audit-socket-never-read"] {
        cases.start(name);
        fs::rename(&sock, &aside).expect("move the capture socket aside");
        let blocker = (name == "audit-socket-never-read").then(|| {
            let s = UnixDatagram::bind(&sock).expect("bind a socket that is never read");
            fs::set_permissions(&sock, fs::Permissions::from_mode(0o666)).unwrap();
            let filler = UnixDatagram::unbound().unwrap();
            filler.set_nonblocking(true).unwrap();
            while filler.send_to(&[b'x'; 1024], &sock).is_ok() {}
            s
        });
        let image = dir.work.join(format!("{name}.ckpt"));
        let t = Instant::now();
        let r = env.sign(
            &dir,
            &[
                "dump",
                "--pid",
                &pid,
                "-o",
                path_str(&image),
                "--leave-running",
            ],
        );
        cases.check(
            name,
            outcome(&r, exit::OK, None).map(|e| format!("dump: {e}")),
        );
        if !r.stderr.contains("audit") {
            cases.fail(
                name,
                format!(
                    "the dump did not warn that the audit log is unavailable: {:?}",
                    r.stderr
                ),
            );
        }
        let (r2, p) = env.restore(&dir, &image, None);
        cases.check(
            name,
            outcome(&r2, exit::OK, None).map(|e| format!("restore: {e}")),
        );
        if let Some(p) = &p {
            cases.check(name, crate::caller_creds_only(p.pid, &env.user));
        }
        drop(p);
        if t.elapsed() > Duration::from_secs(20) {
            cases.fail(
                name,
                format!(
                    "a dump and a restore took {:?} against a stuck audit socket",
                    t.elapsed()
                ),
            );
        }
        c.proc.assert_untouched(name);
        drop(blocker);
        let _ = fs::remove_file(&sock);
        fs::rename(&aside, &sock).expect("put the capture socket back");
    }
    cases.finish("audit socket");
}
