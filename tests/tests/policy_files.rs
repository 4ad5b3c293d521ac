//! Policy file permissions and syntax errors.
//!
//! A valid drop-in grants `same-pid` to the test user; then, one at a time,
//! the installed policy is broken: a group- or world-writable `policy.toml`
//! or drop-in, one not owned by root, a writable `policy.d`, a symbolic
//! link, a syntax error, an unknown key (top level and in a rule), an
//! unknown privilege, an unknown key name in `signed_by`, the same rule
//! name in two files. Each is a clear refusal:
//! * `ckpt-verify policy check` exits 1 naming the file (and the line and
//!   key for parse errors);
//! * `verify` warns that the policy is unusable and exits 9 for the
//!   host-signed image; `verify --json` and `explain --json` carry
//!   `policy_error` and `trust: "untrusted"`; nothing is granted (condition
//!   `trust`); a restore gets a new pid, not the granted one.
//!
//! `policy check FILE` validates a draft as any user, without trusting it.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use ckpt_tests::policy::{assert_denied, assert_granted, explain, PolicyGuard, PRIVILEGES};
use ckpt_tests::syslog::Syslog;
use ckpt_tests::{exit, path_str, write_owned, Counter, Env, Proc, TestDir, Who};

const DROPIN: &str = "10-e2e-grant.toml";

fn grant_rule(env: &Env) -> String {
    format!(
        "[[rule]]\nname = \"e2e-grant\"\nsigned_by = [\"this-host\"]\n\
         caller = [\"uid:{}\"]\ngrant = [\"same-pid\"]\n",
        env.user.uid
    )
}

/// How a case breaks the installed policy.
enum Break {
    /// Write `policy.toml` with this text (after the marker line), then
    /// apply `how` to it.
    Policy(&'static str, Tweak),
    /// Apply `how` to the valid drop-in.
    Dropin(Tweak),
    /// Write a second drop-in `NAME` with this text.
    SecondDropin(&'static str, String),
    /// chmod `policy.d`.
    DropinDirMode(u32),
}

#[derive(Clone, Copy)]
enum Tweak {
    None,
    Mode(u32),
    OwnedByUser,
    Symlink,
}

fn tweak(env: &Env, dir: &TestDir, path: &Path, how: Tweak) {
    match how {
        Tweak::None => {}
        Tweak::Mode(m) => fs::set_permissions(path, fs::Permissions::from_mode(m)).unwrap(),
        Tweak::OwnedByUser => {
            std::os::unix::fs::chown(path, Some(env.user.uid), Some(env.user.gid)).unwrap()
        }
        Tweak::Symlink => {
            // A root-owned, 0644 file elsewhere, linked to.
            let real = dir.root.join("real-policy.toml");
            fs::rename(path, &real).unwrap();
            symlink(&real, path).unwrap();
        }
    }
}

struct Case {
    what: &'static str,
    brk: Break,
    /// The file the error must name.
    names: PathBuf,
    /// Further text the error must contain.
    words: Vec<String>,
}

#[test]
fn broken_policy_files_are_refused_and_make_every_image_untrusted() {
    let env = Env::require();
    let _log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "policy-files");
    let u = env.user.uid;
    let policy = guard.policy_path();
    let dropin = guard.dropin_dir().join(DROPIN);
    let dropins = guard.dropin_dir();

    // The image: the user's counter, left running (so a restore with the
    // grant would be refused as "pid in use", and one without it gets a
    // new pid).
    let c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let image = dir.work.join("c.ckpt");
    env.dump_ok(&dir, c.proc.pid, &image, &["--leave-running"]);

    // Baseline: valid, trusted, granted.
    guard.dropin(DROPIN, &grant_rule(&env));
    let run = env.verify(&dir, &["policy", "check"]);
    run.assert_code(exit::OK, "policy check of a valid policy");
    assert!(
        run.stdout
            .contains("OK (0 trusted keys, 0 revoked, 1 rules)"),
        "{run}"
    );
    let (run, v) = explain(&env, &dir, Who::User(&env.user), &image);
    assert_granted(&v, &run, "same-pid", "e2e-grant");
    assert_eq!(
        v["grants"]["same-pid"]["origin"],
        format!("{}:2", dropin.display()),
        "{run}"
    );
    assert!(v.get("policy_error").is_none(), "{run}");

    // Drop-ins merge in name order (the first rule granting a privilege is
    // the one named); names not ending in .toml, or starting with a dot,
    // are not read at all (these two would not even parse).
    guard.dropin(
        "20-e2e-later.toml",
        &grant_rule(&env).replace("e2e-grant", "e2e-later"),
    );
    guard.dropin("30-e2e-notes.txt", "this is not TOML [[[\n");
    guard.dropin(".40-e2e-hidden.toml", "this is not TOML [[[\n");
    let run = env.verify(&dir, &["policy", "check"]);
    run.assert_code(exit::OK, "policy check with two drop-ins and ignored files");
    assert!(
        run.stdout
            .contains("OK (0 trusted keys, 0 revoked, 2 rules)"),
        "{run}"
    );
    let (run, v) = explain(&env, &dir, Who::User(&env.user), &image);
    assert_granted(&v, &run, "same-pid", "e2e-grant");

    let cases = vec![
        Case {
            what: "a group-writable policy.toml",
            brk: Break::Policy("revoked = []\n", Tweak::Mode(0o664)),
            names: policy.clone(),
            words: vec!["mode 0664 is writable by group or others".into()],
        },
        Case {
            what: "a world-writable policy.toml",
            brk: Break::Policy("revoked = []\n", Tweak::Mode(0o646)),
            names: policy.clone(),
            words: vec!["mode 0646 is writable by group or others".into()],
        },
        Case {
            what: "a policy.toml not owned by root",
            brk: Break::Policy("revoked = []\n", Tweak::OwnedByUser),
            names: policy.clone(),
            words: vec![format!("owned by uid {u}, must be owned by root")],
        },
        Case {
            what: "a policy.toml that is a symbolic link",
            brk: Break::Policy("revoked = []\n", Tweak::Symlink),
            names: policy.clone(),
            words: vec!["symbolic link".into()],
        },
        Case {
            what: "a group-writable drop-in",
            brk: Break::Dropin(Tweak::Mode(0o664)),
            names: dropin.clone(),
            words: vec!["mode 0664 is writable by group or others".into()],
        },
        Case {
            what: "a world-writable drop-in",
            brk: Break::Dropin(Tweak::Mode(0o666)),
            names: dropin.clone(),
            words: vec!["mode 0666".into()],
        },
        Case {
            what: "a drop-in not owned by root",
            brk: Break::Dropin(Tweak::OwnedByUser),
            names: dropin.clone(),
            words: vec![format!("owned by uid {u}, must be owned by root")],
        },
        Case {
            what: "a world-writable policy.d",
            brk: Break::DropinDirMode(0o777),
            names: dropins.clone(),
            words: vec!["mode 0777 is writable by group or others".into()],
        },
        Case {
            what: "a group-writable policy.d",
            brk: Break::DropinDirMode(0o775),
            names: dropins.clone(),
            words: vec!["mode 0775".into()],
        },
        Case {
            what: "a syntax error",
            brk: Break::Policy("revoked = []\n[[rule]\nname = \"x\"\n", Tweak::None),
            names: policy.clone(),
            // The marker is line 1: the bad header is line 3.
            words: vec![format!("{}:3:", policy.display()), "table header".into()],
        },
        Case {
            what: "an unknown top-level key",
            brk: Break::Policy("revoked = []\ntrusted_keys = []\n", Tweak::None),
            names: policy.clone(),
            words: vec![
                format!("{}:3:", policy.display()),
                "unknown field `trusted_keys`".into(),
            ],
        },
        Case {
            what: "an unknown key in a rule of a drop-in",
            brk: Break::SecondDropin(
                "20-e2e-typo.toml",
                "[[rule]]\nname = \"e2e-typo\"\nsigned_by = [\"this-host\"]\n\
                 grant = [\"same-pid\"]\nmax_agee = \"1h\"\n"
                    .into(),
            ),
            names: dropins.join("20-e2e-typo.toml"),
            words: vec![
                format!("{}:6:", dropins.join("20-e2e-typo.toml").display()),
                "unknown field `max_agee`".into(),
            ],
        },
        Case {
            what: "an unknown privilege",
            brk: Break::Policy(
                "[[rule]]\nname = \"e2e-bad-grant\"\nsigned_by = [\"this-host\"]\n\
                 grant = [\"root-shell\"]\n",
                Tweak::None,
            ),
            names: policy.clone(),
            words: vec![
                format!("{}:5:", policy.display()),
                "unknown variant `root-shell`".into(),
            ],
        },
        Case {
            what: "a rule naming a key that is not in the policy",
            brk: Break::Policy(
                "[[rule]]\nname = \"e2e-no-key\"\nsigned_by = [\"no-such-key\"]\n\
                 grant = [\"same-pid\"]\n",
                Tweak::None,
            ),
            names: policy.clone(),
            words: vec!["no [[key]] is named \"no-such-key\"".into()],
        },
        Case {
            what: "the same rule name in two files",
            brk: Break::SecondDropin("20-e2e-dup.toml", grant_rule(&env)),
            names: dropins.join("20-e2e-dup.toml"),
            words: vec!["e2e-grant".into()],
        },
    ];

    for case in &cases {
        let what = case.what;
        guard.clear();
        guard.dropin(DROPIN, &grant_rule(&env));
        match &case.brk {
            Break::Policy(text, how) => {
                let p = guard.policy(text);
                tweak(&env, &dir, &p, *how);
            }
            Break::Dropin(how) => tweak(&env, &dir, &dropin, *how),
            Break::SecondDropin(name, text) => {
                guard.dropin(name, text);
            }
            Break::DropinDirMode(m) => {
                fs::set_permissions(&dropins, fs::Permissions::from_mode(*m)).unwrap()
            }
        }
        let named = path_str(&case.names);
        let says = |text: &str| text.contains(named) && case.words.iter().all(|w| text.contains(w));

        // policy check: exit 1, naming the file (line and key).
        for who in [Who::Root, Who::User(&env.user)] {
            let run = env.verify_as(who, &dir, &["policy", "check"]);
            run.assert_code(exit::OTHER, &format!("policy check with {what}"));
            assert!(
                says(&run.stderr),
                "policy check with {what}: the error must name {named} and {:?}\n{run}",
                case.words
            );
            assert!(
                run.stdout
                    .contains(&format!("{}: invalid", policy.display())),
                "{what}\n{run}"
            );
        }

        // verify: untrusted, with the warning.
        let run = env.verify(&dir, &["verify", path_str(&image)]);
        run.assert_code(exit::UNTRUSTED, &format!("verify with {what}"));
        assert!(
            run.stderr
                .contains("warning: policy unusable, treating every image as untrusted")
                && says(&run.stderr),
            "verify with {what}: the warning names the problem\n{run}"
        );
        let (run, v) = env.verify_json(&dir, &image);
        run.assert_code(exit::UNTRUSTED, &format!("verify --json with {what}"));
        assert_eq!(v["trusted"], false, "{what}\n{run}");
        assert_eq!(v["trust"], "untrusted", "{what}\n{run}");
        assert!(
            says(v["policy_error"].as_str().unwrap_or_default()),
            "{what}: policy_error\n{run}"
        );

        // explain: nothing granted, because of trust.
        let (run, v) = explain(&env, &dir, Who::User(&env.user), &image);
        assert!(
            says(v["policy_error"].as_str().unwrap_or_default()),
            "{what}\n{run}"
        );
        assert_eq!(v["decision"], "restore-as-caller", "{what}\n{run}");
        for p in PRIVILEGES {
            assert_denied(&v, &run, p, "trust", None, &["not trusted"]);
        }
        assert!(run.stderr.contains("policy unusable"), "{what}\n{run}");
        let text = env.verify(&dir, &["explain", path_str(&image)]);
        text.assert_code(exit::OK, "explain");
        assert!(text.stdout.contains("policy: unusable ("), "{what}\n{text}");
    }

    // One restore under a broken policy: no same-pid (the original still
    // runs, so a granted same-pid would have failed with exit 7).
    guard.clear();
    guard.dropin(DROPIN, &grant_rule(&env));
    let run = env.verify(&dir, &["restore", path_str(&image)]);
    run.assert_code(
        exit::RESTORE_FAILED,
        "restore with same-pid granted while the pid is taken",
    );
    fs::set_permissions(&dropin, fs::Permissions::from_mode(0o666)).unwrap();
    let run = env.verify(&dir, &["restore", path_str(&image)]);
    run.assert_code(exit::OK, "restore with an unusable policy");
    assert!(run.stderr.contains("policy unusable"), "{run}");
    let pid: i32 = run.stdout.trim().parse().expect("pid");
    let _p = Proc::adopt(pid, "restored counter").expect("runs");
    assert_ne!(pid, c.proc.pid, "{run}");
    assert!(
        run.stderr.contains("same-pid not granted: the signer key"),
        "{run}"
    );
}

#[test]
fn policy_check_of_a_draft_names_file_line_and_key() {
    let env = Env::require();
    let dir = TestDir::new(&env, "policy-draft");
    let draft = dir.work.join("draft.toml");
    // A draft is any user's file: parsed, never trusted, no ownership check.
    write_owned(
        &draft,
        b"[[rule]]\nname = \"r\"\nsigned_by = [\"this-host\"]\ngrant = [\"same-pid\"]\n\
          caller = [\"user:no-such-user-e2e\"]\n",
        &env.user,
    );
    let run = env.verify(&dir, &["policy", "check", path_str(&draft)]);
    run.assert_code(exit::OK, "policy check of a valid draft");
    assert!(
        run.stdout.contains(&format!(
            "{}: OK (0 trusted keys, 0 revoked, 1 rules)",
            draft.display()
        )),
        "{run}"
    );
    assert!(
        run.stderr.contains("warning: ")
            && run
                .stderr
                .contains("no user \"no-such-user-e2e\" on this host"),
        "unknown names are warned about\n{run}"
    );
    for (text, line, words) in [
        (
            "[[rule]]\nname = \"r\"\nsigned_by = [\"this-host\"]\ngrant = [\"same-pid\"]\nbogus_key = 1\n",
            5,
            "unknown field `bogus_key`",
        ),
        ("[[key]]\nname = \"k\"\npublic = \"not a key\"\n", 0, "k"),
        ("x = \n", 1, "x"),
    ] {
        write_owned(&draft, text.as_bytes(), &env.user);
        let run = env.verify(&dir, &["policy", "check", path_str(&draft)]);
        run.assert_code(exit::OTHER, &format!("policy check of {text:?}"));
        let at = if line > 0 {
            format!("{}:{line}:", draft.display())
        } else {
            format!("{}:", draft.display())
        };
        assert!(
            run.stderr.contains(&at) && run.stderr.contains(words),
            "the error names {at} and {words:?}\n{run}"
        );
        assert!(run.stdout.contains(&format!("{}: invalid", draft.display())), "{run}");
    }
    // A file the user cannot read is not read for them.
    let secret = dir.root.join("secret.toml");
    dir.file(&secret, b"revoked = []\n", 0o600, None);
    env.verify(&dir, &["policy", "check", path_str(&secret)])
        .assert_code(exit::ACCESS_DENIED, "policy check of a root-only file");
}
