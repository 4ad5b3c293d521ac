//! Images from another host's key, with uid/gid mapping.
//!
//! "Another host" is a second ed25519 key made with the library: ckpt-other
//! dumps its own counter signing with `--key FILE` (that key's secret), so
//! the image's ids, requester and saved credentials, are ckpt-other's, as
//! they would be on the other host. The policy names that key in a
//! `[[key]]` entry; ckpt-user restores:
//! * mapped (`map_uid`/`map_gid` send ckpt-other's ids to ckpt-user's): the
//!   rule's conditions see local ids, `credentials` is granted and the
//!   process comes back as the caller's own, counting on;
//! * unmapped (no mapping at all, or ranges that miss the ids): no
//!   `credentials` (explain says "mapping" and which id), conditions on the
//!   ids fail, `same-pid` still granted; `--require-saved-creds` refuses;
//! * revoked key, expired key, not yet valid key, unknown key: untrusted
//!   (`verify` exit 9) and nothing granted (explain says why).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use ckpt_tests::policy::{
    assert_denied, assert_granted, assert_record, explain, toml_str, wait_new, PolicyGuard,
    DUMP_FIELDS, PRIVILEGES, RESTORE_FIELDS,
};
use ckpt_tests::syslog::Syslog;
use ckpt_tests::{
    exit, path_str, procfs, status_ids, write_owned, Counter, Env, Run, TestDir, Who,
};
use serde_json::json;

const KEY: &str = "e2e-foreign";

/// ckpt-other's counter, dumped by ckpt-other with the foreign key.
struct Foreign {
    counter: Counter,
    /// The original pid (the dump killed it).
    pid: i32,
    /// The image, a copy owned by ckpt-user.
    image: PathBuf,
    image_id: String,
    /// `ckpt-ed25519 <base64> <key id>`.
    public_line: String,
    key_id: String,
    last_count: u64,
}

fn foreign_image(env: &Env, dir: &TestDir, log: &Syslog) -> Foreign {
    let key = ckpt_keys::SigningKey::generate().expect("generate the other host's key");
    let public = key.public_key();
    let theirs = dir.dir("other-host", 0o755, Some(&env.other));
    let key_file = theirs.join("host.key");
    write_owned(&key_file, &key.to_secret_file_bytes(), &env.other);
    // The counter's files must stay writable once its ids are the test
    // user's: created 0666 before it starts, its log made 0666 after.
    let count = theirs.join("f.count");
    write_owned(&count, b"", &env.other);
    fs::set_permissions(&count, fs::Permissions::from_mode(0o666)).unwrap();
    let mut counter = Counter::start(env, dir, Who::User(&env.other), &theirs, "f");
    fs::set_permissions(theirs.join("f.log"), fs::Permissions::from_mode(0o666)).unwrap();
    let pid = counter.proc.pid;
    let their_image = theirs.join("f.ckpt");
    let pid_s = pid.to_string();
    let run = env.sign_as(
        Who::User(&env.other),
        dir,
        &[
            "dump",
            "--pid",
            &pid_s,
            "-o",
            path_str(&their_image),
            "--key",
            path_str(&key_file),
        ],
    );
    run.assert_code(exit::OK, "dump by ckpt-other with the foreign key");
    counter.proc.wait_gone("the dump kills the target");
    let last_count = counter.lines().last().expect("counted").0;
    let image = dir.work.join("foreign.ckpt");
    write_owned(&image, &fs::read(&their_image).unwrap(), &env.user);
    let key_id = public.key_id().to_string();

    // Default policy: intact, signed, not trusted.
    let (run, v) = env.verify_json(dir, &image);
    run.assert_code(
        exit::UNTRUSTED,
        "verify of an image signed by an unknown key",
    );
    assert_eq!(v["key_id"], key_id.as_str(), "{run}");
    assert_eq!(v["trust"], "untrusted", "{run}");
    let image_id = v["image_id"].as_str().expect("image id").to_string();

    let dump = log.wait_for("ckpt-other's dump", |r| {
        r.program == "ckpt-sign"
            && r.get("event") == Some("dump")
            && r.get("image_id") == Some(image_id.as_str())
    });
    assert_eq!(dump.priority, 85, "{}", dump.raw);
    assert_record(
        &dump,
        &DUMP_FIELDS,
        &[
            ("caller_uid", &env.other.uid.to_string()),
            ("pid", &pid_s),
            ("signer", &key_id),
            ("signer_name", "caller-key"),
            ("outcome", "ok"),
            ("reason", "-"),
        ],
    );
    Foreign {
        counter,
        pid,
        image,
        image_id,
        public_line: public.to_line(),
        key_id,
        last_count,
    }
}

/// A `[[key]]` entry for the foreign key with `extra` lines.
fn key_entry(f: &Foreign, extra: &str) -> String {
    format!(
        "[[key]]\nname = {}\npublic = {}\n{extra}",
        toml_str(KEY),
        toml_str(&f.public_line)
    )
}

/// Maps ckpt-other's uid and gid to ckpt-user's.
fn mapping(env: &Env) -> String {
    assert_eq!(
        env.other.groups,
        vec![env.other.gid],
        "ckpt-other has only its own group"
    );
    format!(
        "map_uid = [\"{}:{}:1\"]\nmap_gid = [\"{}:{}:1\"]\n",
        env.other.uid, env.user.uid, env.other.gid, env.user.gid
    )
}

/// The migration rule: the conditions are on local (mapped) ids.
fn migrate_rule(env: &Env) -> String {
    format!(
        "[[rule]]\nname = \"e2e-migrate\"\nsigned_by = [{KEY:?}]\n\
         requester = [\"uid:{u}\"]\ncaller = [\"user:{name}\"]\n\
         target = {{ uid = [{u}], gid = [\"gid:{g}\"], caps_within = [] }}\n\
         max_age = \"1h\"\ngrant = [\"credentials\"]\n",
        u = env.user.uid,
        g = env.user.gid,
        name = env.user.name
    )
}

fn verify_trust(env: &Env, dir: &TestDir, f: &Foreign, trust: &str) -> Run {
    let (run, v) = env.verify_json(dir, &f.image);
    run.assert_code(
        exit::UNTRUSTED,
        &format!("verify of an image signed by a {trust} key"),
    );
    assert_eq!(v["integrity"], "ok", "{run}");
    assert_eq!(v["key_id"], f.key_id.as_str(), "{run}");
    assert_eq!(v["trusted"], false, "{run}");
    assert_eq!(v["trust"], trust, "{run}");
    run
}

/// Every privilege denied for the whole image (condition `trust`) with a
/// reason holding `words`; no mapping; `--require-saved-creds` refuses.
fn assert_untrusted_grants_nothing(env: &Env, dir: &TestDir, f: &Foreign, words: &[&str]) {
    let (run, v) = explain(env, dir, Who::User(&env.user), &f.image);
    assert_eq!(v["trusted"], false, "{run}");
    assert_eq!(v["decision"], "restore-as-caller", "{run}");
    assert!(
        v["mapping"]["key"].is_null(),
        "no mapping without trust\n{run}"
    );
    assert!(v["target"]["local"].is_null(), "{run}");
    for p in PRIVILEGES {
        assert_denied(&v, &run, p, "trust", None, words);
    }
    let run = env.verify(
        dir,
        &["restore", path_str(&f.image), "--require-saved-creds"],
    );
    run.assert_code(
        exit::POLICY,
        "restore --require-saved-creds of an untrusted foreign image",
    );
    assert!(
        run.stderr.contains("--require-saved-creds") && run.stderr.contains("not all mapped"),
        "{run}"
    );
}

#[test]
fn foreign_image_with_mapped_ids_restores_as_the_callers_own() {
    let env = Env::require();
    let log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "foreign-mapped");
    let f = foreign_image(&env, &dir, log);
    let (u, g, o, og) = (env.user.uid, env.user.gid, env.other.uid, env.other.gid);
    guard.policy(&format!(
        "{}\n{}",
        key_entry(&f, &mapping(&env)),
        migrate_rule(&env)
    ));
    env.verify_as(Who::Root, &dir, &["policy", "check"])
        .assert_code(exit::OK, "policy check");

    let (run, v) = env.verify_json(&dir, &f.image);
    run.assert_code(
        exit::OK,
        "verify of an image signed by a trusted foreign key",
    );
    assert_eq!(v["signer"], KEY, "{run}");

    let (run, v) = explain(&env, &dir, Who::User(&env.user), &f.image);
    assert_eq!(v["signer"], KEY, "{run}");
    assert_eq!(
        v["mapping"],
        json!({"key": KEY, "uid": [format!("{o}:{u}:1")], "gid": [format!("{og}:{g}:1")]}),
        "{run}"
    );
    assert_eq!(v["requester"]["image"]["uid"], o, "{run}");
    assert_eq!(v["requester"]["local"]["uid"], u, "{run}");
    assert_eq!(v["requester"]["unmapped"], json!([]), "{run}");
    assert_eq!(v["target"]["image"]["uid"], json!([o, o, o, o]), "{run}");
    assert_eq!(
        v["target"]["local"],
        json!({"uid": [u, u, u, u], "gid": [g, g, g, g], "groups": [g]}),
        "{run}"
    );
    assert_eq!(v["target"]["unmapped"], json!([]), "{run}");
    assert_granted(&v, &run, "credentials", "e2e-migrate");
    for p in ["capabilities", "same-pid", "exe-link", "privileged-files"] {
        assert_denied(&v, &run, p, "no-rule", None, &[]);
    }
    assert_eq!(
        v["restore"]["credentials"]["uid"],
        json!([u, u, u, u]),
        "{run}"
    );
    assert_eq!(
        v["restore"]["privileged"], false,
        "the mapped ids are the caller's: nothing more than the caller\n{run}"
    );
    let notice = v["notices"][0].as_str().unwrap_or_default();
    assert!(
        notice.contains(&format!("ids mapped by key \"{KEY}\"")),
        "{run}"
    );

    let run = env.verify(
        &dir,
        &["restore", path_str(&f.image), "--require-saved-creds"],
    );
    run.assert_code(exit::OK, "restore of a mapped foreign image");
    let pid: i32 = run.stdout.trim().parse().expect("pid");
    let mut p = ckpt_tests::Proc::adopt(pid, "restored foreign counter").expect("runs");
    let st = procfs::status(pid).expect("status");
    assert_eq!(status_ids(&st, "Uid"), vec![u64::from(u); 4], "{run}");
    assert_eq!(status_ids(&st, "Gid"), vec![u64::from(g); 4], "{run}");
    f.counter.wait_for(pid, f.last_count + 10);
    f.counter.assert_continuous(&[f.pid, pid]);
    p.assert_untouched("restored");

    let pid_s = pid.to_string();
    let rec = log.wait_for("the mapped restore", |r| {
        r.program == "ckpt-verify"
            && r.get("image_id") == Some(f.image_id.as_str())
            && r.get("outcome") == Some("ok")
    });
    assert_eq!(rec.priority, 85, "{}", rec.raw);
    assert_record(
        &rec,
        &RESTORE_FIELDS,
        &[
            ("event", "restore"),
            ("caller_uid", &u.to_string()),
            ("image_id", &f.image_id),
            ("signer", &f.key_id),
            ("signer_name", KEY),
            ("trusted", "yes"),
            ("grants", "credentials:e2e-migrate"),
            ("denied", "capabilities,same-pid,exe-link,privileged-files"),
            ("outcome", "ok"),
            ("pid", &pid_s),
            ("reason", "-"),
        ],
    );
}

#[test]
fn foreign_image_with_unmapped_ids_gets_no_grant_that_needs_them() {
    let env = Env::require();
    let log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "foreign-unmapped");
    let f = foreign_image(&env, &dir, log);
    let (u, o, og) = (env.user.uid, env.other.uid, env.other.gid);
    let rules = format!(
        "[[rule]]\nname = \"e2e-any\"\nsigned_by = [{KEY:?}]\ncaller = [\"uid:{u}\"]\n\
         grant = [\"credentials\", \"same-pid\"]\n\n\
         [[rule]]\nname = \"e2e-target\"\nsigned_by = [{KEY:?}]\n\
         target = {{ uid = [{u}] }}\ngrant = [\"exe-link\"]\n\n\
         [[rule]]\nname = \"e2e-requester\"\nsigned_by = [{KEY:?}]\n\
         requester = [\"uid:{u}\"]\ngrant = [\"privileged-files\"]\n"
    );

    // A foreign key without map_uid/map_gid: no id maps at all; then
    // ranges that miss ckpt-other's ids.
    let partial = format!("map_uid = [\"0:0:{o}\"]\nmap_gid = [\"0:0:{og}\"]\n");
    for (what, extra, uid_map) in [
        ("no mapping", String::new(), json!([])),
        (
            "ranges that miss the ids",
            partial,
            json!([format!("0:0:{o}")]),
        ),
    ] {
        guard.policy(&format!("{}\n{rules}", key_entry(&f, &extra)));
        let (run, v) = explain(&env, &dir, Who::User(&env.user), &f.image);
        assert_eq!(v["trusted"], true, "{what}\n{run}");
        assert_eq!(v["mapping"]["key"], KEY, "{what}\n{run}");
        assert_eq!(v["mapping"]["uid"], uid_map, "{what}\n{run}");
        assert!(
            v["target"]["local"].is_null(),
            "{what}: not every id maps\n{run}"
        );
        let unmapped: Vec<&str> = v["target"]["unmapped"]
            .as_array()
            .expect("unmapped list")
            .iter()
            .filter_map(|x| x.as_str())
            .collect();
        for want in [
            format!("real uid {o}"),
            format!("effective uid {o}"),
            format!("real gid {og}"),
        ] {
            assert!(
                unmapped.contains(&want.as_str()),
                "{what}: {want} unmapped\n{run}"
            );
        }
        assert!(v["requester"]["local"]["uid"].is_null(), "{what}\n{run}");
        let req_unmapped = v["requester"]["unmapped"].to_string();
        assert!(
            req_unmapped.contains(&format!("\"uid {o}\"")),
            "{what}\n{run}"
        );
        assert!(
            req_unmapped.contains(&format!("\"gid {og}\"")),
            "{what}\n{run}"
        );
        // The rule matches, but credentials need every id mapped.
        assert_denied(
            &v,
            &run,
            "credentials",
            "mapping",
            Some("e2e-any"),
            &[
                &format!("real uid {o}"),
                "no local id",
                &format!("not mapped by key \"{KEY}\""),
            ],
        );
        // same-pid does not depend on the ids.
        assert_granted(&v, &run, "same-pid", "e2e-any");
        // Conditions on an unmapped id fail, saying which.
        assert_denied(
            &v,
            &run,
            "exe-link",
            "target",
            Some("e2e-target"),
            &[&format!("the saved real uid {o} has no local id")],
        );
        assert_denied(
            &v,
            &run,
            "privileged-files",
            "requester",
            Some("e2e-requester"),
            &[],
        );
        assert_eq!(
            v["restore"]["credentials"]["uid"],
            json!([u, u, u, u]),
            "{what}\n{run}"
        );
        assert_eq!(v["restore"]["same_pid"], true, "{what}\n{run}");

        let before = log.raw().len();
        let run = env.verify(
            &dir,
            &["restore", path_str(&f.image), "--require-saved-creds"],
        );
        run.assert_code(exit::POLICY, &format!("--require-saved-creds, {what}"));
        assert!(
            run.stderr.contains("not all mapped to local ids") && run.stderr.contains("mapping"),
            "{what}\n{run}"
        );
        let rec = wait_new(log, before, &format!("the refused restore ({what})"), |r| {
            r.program == "ckpt-verify"
                && r.get("image_id") == Some(f.image_id.as_str())
                && r.get("outcome") == Some("refused")
                && r.get("grants") == Some("same-pid:e2e-any")
        });
        assert_eq!(rec.priority, 84, "{}", rec.raw);
        assert_record(
            &rec,
            &RESTORE_FIELDS,
            &[
                ("signer_name", KEY),
                ("trusted", "yes"),
                (
                    "denied",
                    "credentials,capabilities,exe-link,privileged-files",
                ),
                ("pid", "-"),
            ],
        );
        if what == "no mapping" {
            continue;
        }
        // Without the option: the caller's credentials, the original pid
        // (same-pid granted and free: the dump killed the original).
        let run = env.verify(&dir, &["restore", path_str(&f.image)]);
        run.assert_code(exit::OK, &format!("restore, {what}"));
        let pid: i32 = run.stdout.trim().parse().expect("pid");
        let mut p = ckpt_tests::Proc::adopt(pid, "restored foreign counter").expect("runs");
        assert_eq!(pid, f.pid, "same-pid granted: the original pid\n{run}");
        let st = procfs::status(pid).expect("status");
        assert_eq!(status_ids(&st, "Uid"), vec![u64::from(u); 4], "{run}");
        assert!(
            run.stderr
                .contains(&format!("restoring with your own credentials (uid {u})"))
                && run.stderr.contains("no local id"),
            "the notice says why\n{run}"
        );
        f.counter.wait_for(pid, f.last_count + 10);
        f.counter.assert_continuous(&[f.pid]);
        p.assert_untouched("restored");
    }
}

#[test]
fn revoked_foreign_key_is_untrusted() {
    let env = Env::require();
    let log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "foreign-revoked");
    let f = foreign_image(&env, &dir, log);
    guard.policy(&format!(
        "revoked = [{}]\n\n{}\n{}",
        toml_str(&f.key_id),
        key_entry(&f, &mapping(&env)),
        migrate_rule(&env)
    ));
    let run = env.verify_as(Who::Root, &dir, &["policy", "check"]);
    run.assert_code(exit::OK, "policy check");
    assert!(
        run.stdout
            .contains("OK (1 trusted keys, 1 revoked, 1 rules)"),
        "{run}"
    );
    let run = verify_trust(&env, &dir, &f, "revoked");
    let text = env.verify(&dir, &["verify", path_str(&f.image)]);
    text.assert_code(exit::UNTRUSTED, "verify");
    assert!(
        text.stdout
            .contains(&format!("trusted: no (revoked ({KEY}))")),
        "{text}\n{run}"
    );
    assert_untrusted_grants_nothing(&env, &dir, &f, &[&f.key_id, "revoked"]);
    let rec = log.wait_for("the refused restore", |r| {
        r.program == "ckpt-verify"
            && r.get("image_id") == Some(f.image_id.as_str())
            && r.get("outcome") == Some("refused")
    });
    assert_record(
        &rec,
        &RESTORE_FIELDS,
        &[
            ("signer", &f.key_id),
            ("trusted", "no"),
            ("grants", "-"),
            (
                "denied",
                "credentials,capabilities,same-pid,exe-link,privileged-files",
            ),
        ],
    );
}

#[test]
fn expired_not_yet_valid_and_unknown_foreign_keys_are_untrusted() {
    let env = Env::require();
    let log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "foreign-expired");
    let f = foreign_image(&env, &dir, log);
    let cases = [
        (
            "expired",
            "not_after = 2020-12-31\n",
            "expired (e2e-foreign, not after 2020-12-31)",
        ),
        (
            "not-yet-valid",
            "not_before = 2999-01-01\n",
            "not yet valid (e2e-foreign, not before 2999-01-01)",
        ),
    ];
    for (trust, dates, why) in cases {
        guard.policy(&format!(
            "{}\n{}",
            key_entry(&f, &format!("{dates}{}", mapping(&env))),
            migrate_rule(&env)
        ));
        env.verify_as(Who::Root, &dir, &["policy", "check"])
            .assert_code(exit::OK, "policy check");
        let run = verify_trust(&env, &dir, &f, trust);
        let (_, v) = env.verify_json(&dir, &f.image);
        assert_eq!(v["signer"], KEY, "the policy's name is still shown\n{run}");
        assert_untrusted_grants_nothing(&env, &dir, &f, &[why]);
    }
    // Valid dates around today: trusted again (the dates were the reason).
    guard.policy(&format!(
        "{}\n{}",
        key_entry(
            &f,
            &format!(
                "not_before = 2020-01-01\nnot_after = 2999-12-31\n{}",
                mapping(&env)
            )
        ),
        migrate_rule(&env)
    ));
    let (run, v) = explain(&env, &dir, Who::User(&env.user), &f.image);
    assert_eq!(v["trust"], "trusted", "{run}");
    assert_granted(&v, &run, "credentials", "e2e-migrate");
    // A key the policy does not name at all.
    guard.policy(&migrate_rule(&env).replace(&format!("{KEY:?}"), "\"this-host\""));
    verify_trust(&env, &dir, &f, "untrusted");
    let before = log.raw().len();
    assert_untrusted_grants_nothing(&env, &dir, &f, &[&f.key_id, "not trusted"]);
    let rec = wait_new(
        log,
        before,
        "the refused restore of an unknown key's image",
        |r| r.program == "ckpt-verify" && r.get("image_id") == Some(f.image_id.as_str()),
    );
    assert_record(
        &rec,
        &RESTORE_FIELDS,
        &[
            ("signer", &f.key_id),
            ("signer_name", "-"),
            ("trusted", "no"),
            ("grants", "-"),
            ("outcome", "refused"),
        ],
    );
}

#[test]
fn revoking_this_hosts_own_key_withdraws_its_default_trust() {
    let env = Env::require();
    let log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "host-revoked");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let image = dir.work.join("c.ckpt");
    env.dump_ok(&dir, c.proc.pid, &image, &[]);
    c.proc.wait_gone("the dump kills the target");
    let (_line, host_id) = env.host_key_id(&dir);
    let rule = format!(
        "[[rule]]\nname = \"e2e-own\"\nsigned_by = [\"this-host\"]\n\
         caller = [\"uid:{}\"]\ngrant = [\"same-pid\"]\n",
        env.user.uid
    );
    guard.policy(&rule);
    let (run, v) = explain(&env, &dir, Who::User(&env.user), &image);
    assert_granted(&v, &run, "same-pid", "e2e-own");

    guard.policy(&format!("revoked = [{}]\n\n{rule}", toml_str(&host_id)));
    let (run, v) = env.verify_json(&dir, &image);
    run.assert_code(
        exit::UNTRUSTED,
        "verify of a host-signed image, host key revoked",
    );
    assert_eq!(v["trust"], "revoked", "{run}");
    let (run, v) = explain(&env, &dir, Who::User(&env.user), &image);
    for p in PRIVILEGES {
        assert_denied(&v, &run, p, "trust", None, &[&host_id, "revoked"]);
    }
    let before = log.raw().len();
    let run = env.verify(&dir, &["restore", path_str(&image)]);
    run.assert_code(exit::OK, "restore as the caller");
    let pid: i32 = run.stdout.trim().parse().expect("pid");
    let _p = ckpt_tests::Proc::adopt(pid, "restored counter").expect("runs");
    assert!(run.stderr.contains("same-pid not granted"), "{run}");
    let rec = wait_new(log, before, "the restore under a revoked host key", |r| {
        r.program == "ckpt-verify" && r.get("pid") == Some(pid.to_string().as_str())
    });
    assert_record(
        &rec,
        &RESTORE_FIELDS,
        &[
            ("signer", &host_id),
            ("trusted", "no"),
            ("grants", "-"),
            ("outcome", "ok"),
        ],
    );
}
