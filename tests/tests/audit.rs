//! The audit log: every dump and restore, refused or not, is one syslog
//! record (facility authpriv) that names the caller, and a value the caller
//! controls cannot forge a field or a second line.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;

use ckpt_tests::syslog::Syslog;
use ckpt_tests::{exit, path_str, Counter, Env, TestDir, Who};

/// authpriv (10) * 8 + notice (5) / warning (4).
const NOTICE: u8 = 85;
const WARNING: u8 = 84;

#[test]
fn dump_and_restore_are_audited_with_the_caller_and_the_image() {
    let env = Env::require();
    let log = Syslog::start();
    let dir = TestDir::new(&env, "audit-ok");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let p1 = c.proc.pid;
    let image = dir.work.join("c.ckpt");
    env.dump_ok(&dir, p1, &image, &[]);
    c.proc.wait_gone("dump kills the target");
    let (run, json) = env.verify_json(&dir, &image);
    run.assert_code(exit::OK, "verify");
    let image_id = json["image_id"]
        .as_str()
        .unwrap_or_else(|| panic!("verify --json has no image_id\n{run}"));
    let uid = env.user.uid.to_string();
    let pid = p1.to_string();

    let dump = log.wait_for("the dump", |r| {
        r.program == "ckpt-sign" && r.get("event") == Some("dump") && r.get("pid") == Some(&pid)
    });
    assert_eq!(
        dump.priority, NOTICE,
        "a successful dump is authpriv.notice: {}",
        dump.raw
    );
    assert_eq!(dump.get("caller_uid"), Some(uid.as_str()), "{}", dump.raw);
    assert_eq!(dump.get("outcome"), Some("ok"), "{}", dump.raw);
    assert_eq!(dump.get("image_id"), Some(image_id), "{}", dump.raw);

    let (_run, p2) = env.restore_ok(&dir, &image, None);
    let pid2 = p2.pid.to_string();
    let restore = log.wait_for("the restore", |r| {
        r.program == "ckpt-verify"
            && r.get("event") == Some("restore")
            && r.get("image_id") == Some(image_id)
    });
    assert_eq!(restore.priority, NOTICE, "{}", restore.raw);
    assert_eq!(
        restore.get("caller_uid"),
        Some(uid.as_str()),
        "{}",
        restore.raw
    );
    assert_eq!(restore.get("outcome"), Some("ok"), "{}", restore.raw);
    assert_eq!(restore.get("pid"), Some(pid2.as_str()), "{}", restore.raw);
}

#[test]
fn refusals_are_audited_as_warnings() {
    let env = Env::require();
    let log = Syslog::start();
    let dir = TestDir::new(&env, "audit-refused");
    let odir = dir.dir("other", 0o755, Some(&env.other));
    let mut foreign = Counter::start(&env, &dir, Who::User(&env.other), &odir, "other");
    let pid = foreign.proc.pid.to_string();
    env.sign(
        &dir,
        &[
            "dump",
            "--pid",
            &pid,
            "-o",
            path_str(&dir.work.join("x.ckpt")),
        ],
    )
    .assert_code(exit::ACCESS_DENIED, "dump of another user's process");
    foreign.proc.assert_untouched("refused dump");
    let r = log.wait_for("the refused dump", |r| {
        r.program == "ckpt-sign" && r.get("event") == Some("dump") && r.get("pid") == Some(&pid)
    });
    assert_eq!(
        r.priority, WARNING,
        "a refused dump is authpriv.warning: {}",
        r.raw
    );
    assert_eq!(r.get("outcome"), Some("refused"), "{}", r.raw);
    assert_eq!(
        r.get("caller_uid"),
        Some(env.user.uid.to_string().as_str()),
        "{}",
        r.raw
    );

    // A tampered image: the restore refusal is audited too.
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let image = dir.work.join("c.ckpt");
    env.dump_ok(&dir, c.proc.pid, &image, &[]);
    c.proc.wait_gone("dump kills the target");
    let mut bytes = fs::read(&image).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let bad = dir.work.join("bad-audit-marker.ckpt");
    ckpt_tests::write_owned(&bad, &bytes, &env.user);
    let before = log.raw().len();
    let (run, _p) = env.restore(&dir, &bad, None);
    run.assert_code(exit::TAMPERED, "restore of a tampered image");
    let r = log.wait_for("the refused restore", |r| {
        r.program == "ckpt-verify"
            && r.get("event") == Some("restore")
            && r.get("outcome") != Some("ok")
    });
    assert_eq!(r.priority, WARNING, "{}", r.raw);
    assert!(log.raw().len() > before);
}

#[test]
fn caller_controlled_text_cannot_forge_a_field_or_a_line() {
    let env = Env::require();
    let log = Syslog::start();
    let dir = TestDir::new(&env, "audit-forge");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let pid = c.proc.pid.to_string();
    // An output name full of syslog-significant characters, in a directory
    // the caller cannot write: the dump fails and the reason quotes the path.
    let rdir = dir.dir("root-only", 0o755, None);
    let evil =
        rdir.join("x\" outcome=ok caller_uid=0 \n<85>ckpt-sign[1]: event=dump outcome=ok\t\\");
    let run = env.sign(&dir, &["dump", "--pid", &pid, "-o", path_str(&evil)]);
    run.assert_refused("dump to a root-only directory");
    c.proc.assert_untouched("refused dump");
    let r = log.wait_for("the failed dump", |r| {
        r.program == "ckpt-sign" && r.get("event") == Some("dump") && r.get("pid") == Some(&pid)
    });
    assert!(!r.raw.contains('\n'), "one record is one line: {:?}", r.raw);
    assert_ne!(r.get("outcome"), Some("ok"), "{}", r.raw);
    assert_eq!(
        r.get("caller_uid"),
        Some(env.user.uid.to_string().as_str()),
        "{}",
        r.raw
    );
    // The text shows up quoted inside `reason`; it must never start a record.
    let forged: Vec<String> = log
        .raw()
        .into_iter()
        .filter(|r| r.lines().any(|l| l.starts_with("<85>ckpt-sign[1]")))
        .collect();
    assert!(forged.is_empty(), "a forged record appeared: {forged:?}");
}
