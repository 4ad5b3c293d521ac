//! The command-line contract: verify --json, inspect, explain, pubkey,
//! keygen, usage errors.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt;

use ckpt_tests::{exit, path_str, Counter, Env, FileSnapshot, TestDir, Who};
use serde_json::Value;

/// A signed image of a counter (the counter is gone afterwards).
fn signed_image(env: &Env, dir: &TestDir) -> (std::path::PathBuf, Counter) {
    let mut c = Counter::start(env, dir, Who::User(&env.user), &dir.work, "c");
    let image = dir.work.join("c.ckpt");
    env.dump_ok(dir, c.proc.pid, &image, &[]);
    c.proc.wait_gone("dump kills the target");
    (image, c)
}

#[test]
fn verify_json_reports_integrity_signer_and_trust() {
    let env = Env::require();
    let dir = TestDir::new(&env, "cli-verify");
    let (image, _c) = signed_image(&env, &dir);
    let (_line, host_id) = env.host_key_id(&dir);
    let (run, json) = env.verify_json(&dir, &image);
    run.assert_code(exit::OK, "verify --json of a fresh signed image");
    assert!(json.is_object(), "verify --json prints an object\n{run}");
    assert_eq!(json["integrity"], "ok", "{run}");
    assert_eq!(json["signed"], true, "{run}");
    assert_eq!(json["key_id"], Value::String(host_id), "{run}");
    assert_eq!(json["trusted"], true, "{run}");
}

#[test]
fn inspect_is_labelled_untrusted_and_shows_the_process() {
    let env = Env::require();
    let dir = TestDir::new(&env, "cli-inspect");
    let (image, c) = signed_image(&env, &dir);
    let run = env.verify(&dir, &["inspect", path_str(&image)]);
    run.assert_code(exit::OK, "inspect");
    assert!(
        run.stdout.to_lowercase().contains("untrusted"),
        "inspect output must be labelled as an untrusted view\n{run}"
    );
    for what in [path_str(&c.program), path_str(&c.file)] {
        assert!(
            run.stdout.contains(what),
            "inspect should show {what} (executable, fds)\n{run}"
        );
    }
    let run = env.verify(&dir, &["inspect", path_str(&image), "--json"]);
    run.assert_code(exit::OK, "inspect --json");
    let json: Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("inspect --json is not JSON ({e})\n{run}"));
    assert!(json.is_object(), "{run}");
    assert!(
        json.to_string().to_lowercase().contains("untrusted"),
        "inspect --json must be labelled as untrusted too\n{run}"
    );
}

#[test]
fn explain_prints_the_decision() {
    let env = Env::require();
    let dir = TestDir::new(&env, "cli-explain");
    let (image, _c) = signed_image(&env, &dir);
    let run = env.verify(&dir, &["explain", path_str(&image)]);
    run.assert_code(exit::OK, "explain");
    assert!(
        !run.stdout.trim().is_empty(),
        "explain prints its decision\n{run}"
    );
    let run = env.verify(&dir, &["explain", path_str(&image), "--json"]);
    run.assert_code(exit::OK, "explain --json");
    serde_json::from_str::<Value>(run.stdout.trim())
        .unwrap_or_else(|e| panic!("explain --json is not JSON ({e})\n{run}"));
}

#[test]
fn pubkey_prints_one_line_with_a_key_id_and_the_key_files_are_protected() {
    let env = Env::require();
    let dir = TestDir::new(&env, "cli-pubkey");
    let run = env.sign(&dir, &["pubkey"]);
    run.assert_code(exit::OK, "pubkey as the user");
    assert_eq!(
        run.stdout.lines().count(),
        1,
        "pubkey prints one line\n{run}"
    );
    let f: Vec<&str> = run.stdout.split_whitespace().collect();
    assert_eq!(
        f.len(),
        3,
        "pubkey line is `ckpt-ed25519 <base64> <key id>`\n{run}"
    );
    assert_eq!(f[0], "ckpt-ed25519", "{run}");
    assert!(
        f[1].len() == 44
            && f[1].ends_with('=')
            && f[1]
                .trim_end_matches('=')
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/'),
        "public key field is 32 bytes of standard base64\n{run}"
    );
    assert!(
        f[2].len() == 32
            && f[2]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "key id is 32 lowercase hex digits\n{run}"
    );

    let keys = env.sysconfdir.join("keys");
    let secret = std::fs::metadata(keys.join("host.key")).unwrap();
    assert_eq!(
        (secret.uid(), secret.mode() & 0o7777),
        (0, 0o600),
        "host.key must be root's, 0600"
    );
    let public = std::fs::metadata(keys.join("host.pub")).unwrap();
    assert_eq!(public.uid(), 0, "host.pub is root's");
    assert_eq!(
        public.mode() & 0o022,
        0,
        "host.pub is not group/world writable"
    );
    assert_eq!(public.mode() & 0o004, 0o004, "host.pub is world readable");
}

#[test]
fn keygen_is_root_only_and_never_overwrites_without_force() {
    let env = Env::require();
    let dir = TestDir::new(&env, "cli-keygen");
    let keys = env.sysconfdir.join("keys");
    let (k, p) = (keys.join("host.key"), keys.join("host.pub"));
    let (sk, sp) = (FileSnapshot::of(&k), FileSnapshot::of(&p));
    let run = env.sign(&dir, &["keygen"]);
    run.assert_code(exit::ACCESS_DENIED, "keygen as an unprivileged user");
    let run = env.sign(&dir, &["keygen", "--force"]);
    run.assert_code(
        exit::ACCESS_DENIED,
        "keygen --force as an unprivileged user",
    );
    let run = env.sign_as(Who::Root, &dir, &["keygen"]);
    run.assert_refused("keygen as root over an existing key without --force");
    assert_eq!(FileSnapshot::of(&k), sk, "host.key changed");
    assert_eq!(FileSnapshot::of(&p), sp, "host.pub changed");
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::require();
    let dir = TestDir::new(&env, "cli-usage");
    let sign: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["dump"],
        &["dump", "--pid", "not-a-pid", "-o", "x.ckpt"],
        &["dump", "--pid", "1"],
        &[
            "dump",
            "--pid",
            "1",
            "-o",
            "x.ckpt",
            "--config",
            "/tmp/evil",
        ],
    ];
    for args in sign {
        env.sign(&dir, args)
            .assert_code(exit::USAGE, &format!("ckpt-sign {}", args.join(" ")));
    }
    let verify: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["verify"],
        &["restore"],
        &["verify", "a", "b"],
    ];
    for args in verify {
        env.verify(&dir, args)
            .assert_code(exit::USAGE, &format!("ckpt-verify {}", args.join(" ")));
    }
    assert!(
        TestDir::list(&dir.work).is_empty(),
        "a usage error created files"
    );
}

#[test]
fn policy_check_accepts_the_design_example_and_names_the_line_of_an_error() {
    let env = Env::require();
    let dir = TestDir::new(&env, "cli-policy");
    let (line, _id) = env.host_key_id(&dir);
    let good = dir.work.join("good.toml");
    let text = format!(
        "revoked = []\n\n[[key]]\nname = \"this-host\"\npublic = \"{line}\"\n\n\
         [[rule]]\nname = \"resume-passwd\"\nsigned_by = [\"this-host\"]\nrequester = [\"uid:0\"]\n\
         caller = [\"uid:1001\", \"group:staff\"]\nexe = \"/usr/bin/passwd\"\nmax_age = \"1h\"\n\
         one_shot = true\ngrant = [\"credentials\", \"exe-link\"]\n"
    );
    dir.file(&good, text.as_bytes(), 0o644, Some(&env.user));
    env.verify(&dir, &["policy", "check", path_str(&good)])
        .assert_code(exit::OK, "policy check of the DESIGN.md example");

    let bad = dir.work.join("bad.toml");
    dir.file(
        &bad,
        b"revoked = []\n\n[[key]]\nname = \"x\"\npublic = 42\n",
        0o644,
        Some(&env.user),
    );
    let run = env.verify(&dir, &["policy", "check", path_str(&bad)]);
    run.assert_refused("policy check of an invalid policy");
    assert!(
        run.stderr.contains("bad.toml:5") || run.stdout.contains("bad.toml:5"),
        "the error names the file and line 5\n{run}"
    );
}
