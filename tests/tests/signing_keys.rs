//! Signing keys: an image signed with the caller's own key (`--key`) is
//! intact but untrusted (exit 9) and still restores with the caller's
//! credentials; `--key` can never name a key the caller cannot read, such
//! as the host key itself.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::os::unix::fs::symlink;
use std::path::PathBuf;

use ckpt_tests::{exit, path_str, write_owned, Counter, Env, TestDir, Who};

/// A fresh ed25519 key file owned by the test user: (path, key id).
fn user_key(env: &Env, dir: &TestDir) -> (PathBuf, String) {
    let key = ckpt_keys::SigningKey::generate().expect("generate a key");
    let path = dir.work.join("my.key");
    write_owned(&path, &key.to_secret_file_bytes(), &env.user);
    (path, key.public_key().key_id().to_string())
}

#[test]
fn image_signed_with_the_callers_own_key_is_intact_but_untrusted() {
    let env = Env::require();
    let dir = TestDir::new(&env, "user-key");
    let (key, key_id) = user_key(&env, &dir);
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let p1 = c.proc.pid;
    let image = dir.work.join("mine.ckpt");
    env.dump_ok(&dir, p1, &image, &["--key", path_str(&key)]);
    c.proc.wait_gone("dump kills the target");

    let (run, json) = env.verify_json(&dir, &image);
    run.assert_code(
        exit::UNTRUSTED,
        "verify of an image signed with the user's own key",
    );
    assert_eq!(json["integrity"], "ok", "{run}");
    assert_eq!(json["signed"], true, "{run}");
    assert_eq!(json["key_id"], key_id.as_str(), "{run}");
    assert_eq!(json["trusted"], false, "{run}");

    let n = c.lines().last().unwrap().0;
    let (_run, p2) = env.restore_ok(&dir, &image, None);
    c.wait_for(p2.pid, n + 10);
    c.assert_continuous(&[p1, p2.pid]);
}

#[test]
fn key_option_cannot_reach_the_host_key() {
    let env = Env::require();
    let dir = TestDir::new(&env, "host-key-option");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let pid = c.proc.pid.to_string();
    let host_key = env.sysconfdir.join("keys/host.key");
    let link = dir.work.join("link.key");
    symlink(&host_key, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(env.user.uid), Some(env.user.gid)).unwrap();

    for key in [&host_key, &link] {
        let image = dir.work.join("stolen.ckpt");
        let run = env.sign(
            &dir,
            &[
                "dump",
                "--pid",
                &pid,
                "-o",
                path_str(&image),
                "--key",
                path_str(key),
            ],
        );
        run.assert_refused(&format!("dump --key {} (root's secret key)", key.display()));
        if key == &host_key {
            run.assert_code(
                exit::ACCESS_DENIED,
                "dump --key <host key>: opened as the caller (SECURITY.md §6)",
            );
        }
        assert!(
            !image.exists(),
            "dump --key {} wrote an image",
            key.display()
        );
        c.proc.assert_untouched("after a refused dump --key");
    }
    env.sign(
        &dir,
        &[
            "dump",
            "--pid",
            &pid,
            "-o",
            "x.ckpt",
            "--key",
            path_str(&host_key),
            "--unsigned",
        ],
    )
    .assert_code(exit::USAGE, "--key with --unsigned");
}
