//! The `/bin/passwd` case (a set-uid-root process dumped by root, restored by a user under a grant), end to end.
//!
//! `resuid_report` (root-owned, setuid, linked against a library in a
//! root-owned directory) is started by the test user, so it runs with
//! ruid = the user and euid = 0; root dumps it (signed with the host key,
//! requester uid 0); the user restores it:
//! * with a matching rule (`credentials`, `exe-link`): the saved ids come
//!   back (`Uid: U 0 0 0`, the process itself reports euid 0), and
//!   `/proc/PID/exe` names the program;
//! * without a rule, or with a rule that does not match: the caller's
//!   credentials and a notice; `--require-saved-creds` refuses (exit 5);
//! * with the image tampered: refused (exit 4), nothing created;
//! * with a trusted signature but the library changed on disk (or made
//!   writable by the caller): refused (exit 7), nothing left running.
//!
//! Each case also checks `explain --json` (test 7) and the audit records
//! of the dump and of the restore, field by field (test 6).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ckpt_tests::image::Layout;
use ckpt_tests::policy::{
    assert_denied, assert_granted, assert_keys, assert_record, explain, toml_str, PolicyGuard,
    DUMP_FIELDS, EXPLAIN_KEYS, PRIVILEGES, RESTORE_FIELDS,
};
use ckpt_tests::reporter::{dump_as_root, Reporter};
use ckpt_tests::syslog::{Record, Syslog};
use ckpt_tests::{
    exit, path_str, processes_mentioning, procfs, status_ids, write_owned, Env, Proc, Run, TestDir,
    Who,
};
use serde_json::Value;

/// authpriv.notice / authpriv.warning.
const NOTICE: u8 = 85;
const WARNING: u8 = 84;

/// What the user gets back from a root dump of the setuid reporter.
struct Dumped {
    reporter: Reporter,
    image: PathBuf,
    /// Last count the original wrote before the dump killed it.
    last_count: u64,
    image_id: String,
    host_key_id: String,
    /// From `explain --json` under the default policy.
    exe_digest: String,
    machine_id: String,
    /// The original's /proc/PID/status just before the dump.
    status: std::collections::BTreeMap<String, String>,
}

/// Starts the reporter as the user, dumps it as root and checks what the
/// default policy says about the image: signed by this host, trusted,
/// nothing granted.
fn dump_passwd_case(env: &Env, dir: &TestDir, name: &str) -> Dumped {
    dump_passwd_case_holding(env, dir, name, None)
}

fn dump_passwd_case_holding(env: &Env, dir: &TestDir, name: &str, hold: Option<&Path>) -> Dumped {
    let mut reporter = Reporter::start_holding(env, dir, name, hold);
    let pid = reporter.proc.pid;
    let status = procfs::status(pid).expect("status of the reporter");
    let (run, image) = dump_as_root(env, dir, pid, name, &[]);
    reporter
        .proc
        .wait_gone("the dump kills the target once the image is on disk");
    let last_count = reporter.last(pid).expect("reported").count;
    let (_line, host_key_id) = env.host_key_id(dir);
    assert!(
        run.stderr.contains(&host_key_id),
        "signed by the host key\n{run}"
    );

    let (run, v) = explain(env, dir, Who::User(&env.user), &image);
    let u = env.user.uid;
    assert_eq!(v["integrity"], "ok", "{run}");
    assert_eq!(v["signed"], true, "{run}");
    assert_eq!(v["key_id"], host_key_id.as_str(), "{run}");
    assert_eq!(v["trusted"], true, "{run}");
    assert_eq!(v["trust"], "trusted", "{run}");
    assert_eq!(v["signer"], "this-host", "{run}");
    assert_eq!(v["requester"]["image"]["uid"], 0, "root ran dump\n{run}");
    assert_eq!(
        v["target"]["image"]["uid"],
        serde_json::json!([u, 0, 0, 0]),
        "the saved ids are ruid = the user, euid = suid = fsuid = 0\n{run}"
    );
    assert_eq!(
        v["target"]["local"]["uid"],
        serde_json::json!([u, 0, 0, 0]),
        "{run}"
    );
    assert_eq!(v["mapping"]["key"], "this-host", "{run}");
    assert_eq!(v["mapping"]["uid"], "identity", "{run}");
    assert_eq!(v["exe"]["path"], path_str(&reporter.program), "{run}");
    assert_eq!(v["decision"], "restore-as-caller", "{run}");
    for p in PRIVILEGES {
        assert_denied(
            &v,
            &run,
            p,
            "no-rule",
            None,
            &[&format!("no rule grants {p}")],
        );
    }
    let exe_digest = v["exe"]["digest"].as_str().expect("exe digest").to_string();
    assert!(exe_digest.starts_with("sha256:"), "{run}");
    Dumped {
        image_id: v["image_id"].as_str().expect("image id").to_string(),
        machine_id: v["host"]["machine_id"]
            .as_str()
            .expect("machine id")
            .to_string(),
        exe_digest,
        host_key_id,
        image,
        last_count,
        reporter,
        status,
    }
}

/// The seed's rule, every condition set, for the test user.
fn passwd_rule(env: &Env, d: &Dumped, name: &str) -> String {
    format!(
        "[[rule]]\n\
         name = {name}\n\
         signed_by = [\"this-host\"]\n\
         requester = [\"uid:0\"]\n\
         caller = [{caller}, \"group:{group}\"]\n\
         target = {{ ruid = [{caller}], euid = [0] }}\n\
         exe = {exe}\n\
         exe_digest = {digest}\n\
         host = [{host}]\n\
         max_age = \"1h\"\n\
         grant = [\"credentials\", \"exe-link\"]\n",
        name = toml_str(name),
        caller = toml_str(&format!("user:{}", env.user.name)),
        group = env.user.name,
        exe = toml_str(path_str(&d.reporter.program)),
        digest = toml_str(&d.exe_digest),
        host = toml_str(&d.machine_id),
    )
}

fn restore_record(log: &Syslog, image_id: &str, outcome: &str) -> Record {
    log.wait_for(&format!("restore of {image_id} ({outcome})"), |r| {
        r.program == "ckpt-verify"
            && r.get("event") == Some("restore")
            && r.get("image_id") == Some(image_id)
            && r.get("outcome") == Some(outcome)
    })
}

/// Asserts nothing runs with `dir`'s paths in its command line (a refused
/// or failed restore leaves nothing behind).
fn assert_nothing_left(dir: &TestDir, what: &str) {
    let left = processes_mentioning(path_str(&dir.root));
    assert!(left.is_empty(), "{what}: processes left running: {left:?}");
}

fn restore_args<'a>(image: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["restore", path_str(image)];
    args.extend_from_slice(extra);
    args
}

/// Restores as the user, expects exit 0; the restored process.
fn restore_ok(env: &Env, dir: &TestDir, image: &Path, extra: &[&str]) -> (Run, Proc) {
    let run = env.verify(dir, &restore_args(image, extra));
    run.assert_code(exit::OK, "restore");
    let pid: i32 = run
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("restore prints the pid\n{run}"));
    let proc = Proc::adopt(pid, "restored resuid_report")
        .unwrap_or_else(|| panic!("restored pid {pid} does not run\n{run}"));
    (run, proc)
}

#[test]
fn passwd_case_with_a_matching_rule_gets_euid_0_and_the_exe_link_back() {
    let env = Env::require();
    let log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "passwd-granted");
    let d = dump_passwd_case(&env, &dir, "p");
    let (u, g) = (env.user.uid, env.user.gid);
    let orig_pid = d.reporter.proc.pid;

    // The dump by root, in the audit log.
    let dump = log.wait_for("root's dump", |r| {
        r.program == "ckpt-sign"
            && r.get("event") == Some("dump")
            && r.get("image_id") == Some(d.image_id.as_str())
    });
    assert_eq!(dump.priority, NOTICE, "{}", dump.raw);
    let orig_s = orig_pid.to_string();
    assert_record(
        &dump,
        &DUMP_FIELDS,
        &[
            ("event", "dump"),
            ("caller_uid", "0"),
            ("pid", &orig_s),
            ("image_id", &d.image_id),
            ("signer", &d.host_key_id),
            ("signer_name", "host-key"),
            ("outcome", "ok"),
            ("reason", "-"),
        ],
    );

    guard.policy(&passwd_rule(&env, &d, "e2e-passwd"));
    env.verify_as(Who::Root, &dir, &["policy", "check"])
        .assert_code(exit::OK, "the rule is a valid policy");

    // explain: credentials and exe-link granted by the rule, at its line.
    let (run, v) = explain(&env, &dir, Who::User(&env.user), &d.image);
    assert_keys(&v, &EXPLAIN_KEYS, &run);
    assert_keys(
        &v["restore"],
        &[
            "credentials",
            "capabilities",
            "file_credentials",
            "same_pid",
            "exe_link",
            "privileged",
        ],
        &run,
    );
    assert_keys(
        &v["freshness"],
        &[
            "created_unix",
            "now",
            "age_seconds",
            "one_shot",
            "one_shot_detail",
        ],
        &run,
    );
    assert_keys(&v["grants"], &PRIVILEGES, &run);
    assert_eq!(
        v["caller"],
        serde_json::json!({"uid": u, "gid": g, "groups": env.user.groups}),
        "{run}"
    );
    assert_eq!(v["decision"], "restore-with-grants", "{run}");
    assert_granted(&v, &run, "credentials", "e2e-passwd");
    assert_granted(&v, &run, "exe-link", "e2e-passwd");
    let origin = v["grants"]["credentials"]["origin"].as_str().unwrap();
    assert_eq!(
        origin,
        format!("{}:2", guard.policy_path().display()),
        "the rule starts on line 2 (after the marker line)\n{run}"
    );
    assert_eq!(v["grants"]["credentials"]["one_shot"], false, "{run}");
    for p in ["capabilities", "same-pid", "privileged-files"] {
        assert_denied(&v, &run, p, "no-rule", None, &[]);
    }
    let r = &v["restore"];
    assert_eq!(
        r["credentials"]["uid"],
        serde_json::json!([u, 0, 0, 0]),
        "{run}"
    );
    assert_eq!(
        r["credentials"]["gid"],
        serde_json::json!([g, g, g, g]),
        "{run}"
    );
    assert_eq!(
        r["file_credentials"]["uid"],
        serde_json::json!([u, u, u, u]),
        "{run}"
    );
    assert!(r["capabilities"].is_null(), "{run}");
    assert_eq!(r["exe_link"], true, "{run}");
    assert_eq!(r["same_pid"], false, "{run}");
    assert_eq!(r["privileged"], true, "{run}");
    assert!(
        v["notices"][0]
            .as_str()
            .unwrap_or_default()
            .contains("granted by rule \"e2e-passwd\""),
        "{run}"
    );
    // The text form says the same.
    let text = env.verify(&dir, &["explain", path_str(&d.image)]);
    text.assert_code(exit::OK, "explain");
    assert!(
        text.stdout
            .contains("credentials: granted by rule \"e2e-passwd\""),
        "{text}"
    );

    // Another user is not the caller the rule names.
    let theirs = dir.dir("other", 0o755, Some(&env.other));
    let their_image = theirs.join("p.ckpt");
    write_owned(&their_image, &fs::read(&d.image).unwrap(), &env.other);
    let (run, v) = explain(&env, &dir, Who::User(&env.other), &their_image);
    assert_eq!(v["decision"], "restore-as-caller", "{run}");
    assert_denied(
        &v,
        &run,
        "credentials",
        "caller",
        Some("e2e-passwd"),
        &[&format!("you (uid {}", env.other.uid)],
    );
    env.verify_as(
        Who::User(&env.other),
        &dir,
        &["restore", path_str(&their_image), "--require-saved-creds"],
    )
    .assert_code(exit::POLICY, "restore by a caller the rule does not name");

    // The restore: euid 0 is back, and the exe link.
    let (run, mut p) = restore_ok(&env, &dir, &d.image, &["--require-saved-creds"]);
    let st = procfs::status(p.pid).expect("status of the restored process");
    assert_eq!(
        status_ids(&st, "Uid"),
        vec![u64::from(u), 0, 0, 0],
        "Uid: real = the user, effective = saved = fs = 0\n{run}"
    );
    assert_eq!(status_ids(&st, "Gid"), vec![u64::from(g); 4], "{run}");
    assert_eq!(
        status_ids(&st, "CapEff"),
        vec![0],
        "credentials alone restore no capability\n{run}"
    );
    let rep = d.reporter.wait_for(p.pid, d.last_count + 5);
    assert_eq!(
        rep.uid,
        [u, 0, 0],
        "the process reports euid 0 itself: {rep:?}"
    );
    assert_eq!(rep.gid, [g, g, g], "{rep:?}");
    assert_eq!(rep.mark, 42, "{rep:?}");
    let first = d
        .reporter
        .lines()
        .into_iter()
        .find(|l| l.pid == p.pid)
        .unwrap();
    assert_eq!(
        first.count,
        d.last_count + 1,
        "the restored process goes on counting where the original stopped"
    );
    assert_eq!(
        fs::read_link(format!("/proc/{}/exe", p.pid)).expect("exe link"),
        d.reporter.program,
        "exe-link granted: /proc/PID/exe names the program\n{run}"
    );
    assert!(
        run.stderr.contains("granted by rule \"e2e-passwd\""),
        "the notice names the rule\n{run}"
    );
    assert!(
        run.stderr.contains(&format!("new pid {}", p.pid)),
        "same-pid was not granted: a new pid, and a notice\n{run}"
    );
    let pid_s = p.pid.to_string();
    let rec = restore_record(log, &d.image_id, "ok");
    assert_eq!(rec.priority, NOTICE, "{}", rec.raw);
    assert_record(
        &rec,
        &RESTORE_FIELDS,
        &[
            ("event", "restore"),
            ("caller_uid", &u.to_string()),
            ("image_id", &d.image_id),
            ("signer", &d.host_key_id),
            ("signer_name", "this-host"),
            ("trusted", "yes"),
            ("grants", "credentials:e2e-passwd,exe-link:e2e-passwd"),
            ("denied", "capabilities,same-pid,privileged-files"),
            ("outcome", "ok"),
            ("pid", &pid_s),
            ("reason", "-"),
        ],
    );
    // Not dumpable, as the kernel makes a set-id process: the user cannot
    // ptrace-attach to it, so cannot checkpoint it either.
    let run = env.sign(
        &dir,
        &[
            "dump",
            "--pid",
            &pid_s,
            "-o",
            path_str(&dir.work.join("stolen.ckpt")),
        ],
    );
    run.assert_code(
        exit::ACCESS_DENIED,
        "the user's dump of the restored euid-0 process",
    );
    p.assert_untouched("the restored process runs on, untraced");
}

#[test]
fn passwd_case_without_a_rule_restores_the_callers_credentials() {
    let env = Env::require();
    let log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "passwd-norule");
    let d = dump_passwd_case(&env, &dir, "p");
    let (u, g) = (env.user.uid, env.user.gid);

    // No rule at all: --require-saved-creds refuses, nothing is created.
    let run = env.verify(&dir, &restore_args(&d.image, &["--require-saved-creds"]));
    run.assert_code(exit::POLICY, "--require-saved-creds without a rule");
    assert!(
        run.stderr.contains("--require-saved-creds")
            && run.stderr.contains("no rule grants credentials"),
        "{run}"
    );
    assert!(run.stdout.trim().is_empty(), "no pid printed\n{run}");
    assert_nothing_left(&dir, "a refused restore");
    let rec = restore_record(log, &d.image_id, "refused");
    assert_eq!(rec.priority, WARNING, "{}", rec.raw);
    assert_record(
        &rec,
        &RESTORE_FIELDS,
        &[
            ("event", "restore"),
            ("caller_uid", &u.to_string()),
            ("image_id", &d.image_id),
            ("signer", &d.host_key_id),
            ("signer_name", "this-host"),
            ("trusted", "yes"),
            ("grants", "-"),
            (
                "denied",
                "credentials,capabilities,same-pid,exe-link,privileged-files",
            ),
            ("outcome", "refused"),
            ("pid", "-"),
        ],
    );
    let reason = rec.get("reason").unwrap();
    assert!(
        reason.starts_with("policy refusal: --require-saved-creds")
            && reason.contains("no rule grants credentials"),
        "{}",
        rec.raw
    );

    // Without the option: the caller's credentials, and a notice.
    let (run, mut p) = restore_ok(&env, &dir, &d.image, &[]);
    let st = procfs::status(p.pid).expect("status");
    assert_eq!(status_ids(&st, "Uid"), vec![u64::from(u); 4], "{run}");
    assert_eq!(status_ids(&st, "Gid"), vec![u64::from(g); 4], "{run}");
    let rep = d.reporter.wait_for(p.pid, d.last_count + 5);
    assert_eq!(
        rep.uid,
        [u, u, u],
        "the process reports the caller's ids: {rep:?}"
    );
    assert!(
        run.stderr.contains(&format!(
            "notice: restoring with your own credentials (uid {u}): no rule grants credentials"
        )),
        "{run}"
    );
    assert!(
        run.stderr.contains("exe-link not granted"),
        "the exe link of a setuid program is not restored without the grant\n{run}"
    );
    assert_ne!(
        fs::read_link(format!("/proc/{}/exe", p.pid)).ok(),
        Some(d.reporter.program.clone()),
        "without exe-link, /proc/PID/exe does not name a setuid program the caller \
         could not run unchanged\n{run}"
    );
    let pid_s = p.pid.to_string();
    let rec = restore_record(log, &d.image_id, "ok");
    assert_record(
        &rec,
        &RESTORE_FIELDS,
        &[
            ("trusted", "yes"),
            ("grants", "-"),
            (
                "denied",
                "credentials,capabilities,same-pid,exe-link,privileged-files",
            ),
            ("pid", &pid_s),
        ],
    );
    p.assert_untouched("restored as the caller");
    drop(p);

    // A rule that does not match (the requester is not root): explain
    // names the rule and the failing condition; the restore falls back.
    let rule = passwd_rule(&env, &d, "e2e-passwd-other-requester").replace(
        "requester = [\"uid:0\"]",
        &format!("requester = [\"uid:{}\"]", env.other.uid),
    );
    guard.policy(&rule);
    let (run, v) = explain(&env, &dir, Who::User(&env.user), &d.image);
    assert_eq!(v["decision"], "restore-as-caller", "{run}");
    for p in ["credentials", "exe-link"] {
        assert_denied(
            &v,
            &run,
            p,
            "requester",
            Some("e2e-passwd-other-requester"),
            &[&format!("uid:{}", env.other.uid)],
        );
    }
    assert_eq!(
        v["restore"]["credentials"]["uid"],
        serde_json::json!([u, u, u, u]),
        "{run}"
    );
    assert_eq!(v["restore"]["privileged"], false, "{run}");
    let run = env.verify(&dir, &restore_args(&d.image, &["--require-saved-creds"]));
    run.assert_code(
        exit::POLICY,
        "--require-saved-creds with a rule that does not match",
    );
    assert!(
        run.stderr
            .contains("rule \"e2e-passwd-other-requester\": requester:"),
        "the refusal names the rule and the condition\n{run}"
    );
    assert_nothing_left(&dir, "a refused restore");
}

#[test]
fn passwd_case_tampered_image_is_refused() {
    let env = Env::require();
    let log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "passwd-tampered");
    let d = dump_passwd_case(&env, &dir, "p");
    guard.policy(&passwd_rule(&env, &d, "e2e-passwd"));
    let bytes = fs::read(&d.image).unwrap();
    let layout = Layout::parse(&bytes).expect("image layout");
    for (region, range) in [
        ("chunk data", layout.data.clone()),
        ("manifest", layout.manifest.clone()),
    ] {
        let mut bad = bytes.clone();
        let at = (range.start + (range.end - range.start) / 2) as usize;
        bad[at] ^= 0x01;
        let image = dir
            .work
            .join(format!("tampered-{}.ckpt", region.replace(' ', "-")));
        write_owned(&image, &bad, &env.user);

        let run = env.verify(&dir, &["explain", "--json", path_str(&image)]);
        run.assert_code(
            exit::TAMPERED,
            &format!("explain of an image with its {region} changed"),
        );
        let v: Value = serde_json::from_str(run.stdout.trim()).expect("explain --json prints JSON");
        assert_eq!(v["integrity"], "tampered", "{run}");
        assert_eq!(v["decision"], "refuse", "{run}");
        assert_eq!(v["trusted"], false, "{run}");
        assert!(
            v.get("grants").is_none(),
            "no grant is even considered\n{run}"
        );

        for extra in [&[][..], &["--require-saved-creds"][..]] {
            let before = log.raw().len();
            let run = env.verify(&dir, &restore_args(&image, extra));
            run.assert_code(
                exit::TAMPERED,
                &format!("restore of an image with its {region} changed"),
            );
            assert!(run.stdout.trim().is_empty(), "{run}");
            assert_nothing_left(&dir, "a tampered image");
            let rec = log.wait_for("the tampered restore", |r| {
                r.program == "ckpt-verify"
                    && r.get("event") == Some("restore")
                    && r.get("outcome") == Some("refused")
                    && r.get("caller_uid") == Some(env.user.uid.to_string().as_str())
                    && r.get("reason")
                        .is_some_and(|t| t.contains(path_str(&image)))
            });
            assert!(log.raw().len() > before);
            assert_eq!(rec.priority, WARNING, "{}", rec.raw);
            assert_record(
                &rec,
                &RESTORE_FIELDS,
                &[("trusted", "no"), ("grants", "-"), ("pid", "-")],
            );
        }
    }
}

/// Puts a file's original bytes, mode and owner back when dropped.
struct FileBack {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl FileBack {
    fn keep(path: &Path) -> FileBack {
        FileBack {
            path: path.to_path_buf(),
            bytes: fs::read(path).expect("read the library"),
        }
    }

    fn put_back(&self) {
        let tmp = self.path.with_extension("orig-tmp");
        fs::write(&tmp, &self.bytes).expect("write the original library");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod");
        std::os::unix::fs::chown(&tmp, Some(0), Some(0)).expect("chown");
        fs::rename(&tmp, &self.path).expect("put the library back");
    }
}

impl Drop for FileBack {
    fn drop(&mut self) {
        self.put_back();
    }
}

#[test]
fn passwd_case_changed_library_is_refused() {
    let env = Env::require();
    let log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "passwd-library");
    let d = dump_passwd_case(&env, &dir, "p");
    guard.policy(&passwd_rule(&env, &d, "e2e-passwd"));
    let lib = d.reporter.library.clone();
    let original = FileBack::keep(&lib);
    let u = env.user.uid;

    // Same size, one byte different (a new file put in place by root, as
    // a package upgrade would), then a different size.
    let mut changed = original.bytes.clone();
    let last = changed.len() - 1;
    changed[last] ^= 0xff;
    let mut longer = original.bytes.clone();
    longer.extend_from_slice(b"\0changed");
    for (what, bytes, why) in [
        ("one byte changed", &changed, "content digest differs"),
        ("grown", &longer, "size differs"),
    ] {
        let tmp = lib.with_extension("new");
        fs::write(&tmp, bytes).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
        fs::rename(&tmp, &lib).unwrap();

        let (run, v) = explain(&env, &dir, Who::User(&env.user), &d.image);
        assert_granted(&v, &run, "credentials", "e2e-passwd");
        assert_eq!(
            v["restore"]["privileged"], true,
            "a privileged restore checks every mapped file\n{run}"
        );
        let run = env.verify(&dir, &restore_args(&d.image, &[]));
        run.assert_code(
            exit::RESTORE_FAILED,
            &format!("restore with the library {what}"),
        );
        assert!(
            run.stderr.contains(path_str(&lib)) && run.stderr.contains(why),
            "the refusal names the library and what changed\n{run}"
        );
        assert!(
            run.stderr.contains("signed digest"),
            "the refusal says a privileged restore needs the signed content\n{run}"
        );
        assert!(run.stdout.trim().is_empty(), "no pid printed\n{run}");
        assert_nothing_left(&dir, &format!("a restore refused for a library {what}"));
        let rec = log.wait_for(&format!("the restore with the library {what}"), |r| {
            r.program == "ckpt-verify"
                && r.get("image_id") == Some(d.image_id.as_str())
                && r.get("outcome") == Some("failed")
                && r.get("reason").is_some_and(|t| t.contains(why))
        });
        assert_eq!(rec.priority, WARNING, "{}", rec.raw);
        assert_record(
            &rec,
            &RESTORE_FIELDS,
            &[
                ("event", "restore"),
                ("caller_uid", &u.to_string()),
                ("trusted", "yes"),
                ("grants", "credentials:e2e-passwd,exe-link:e2e-passwd"),
                ("denied", "capabilities,same-pid,privileged-files"),
                ("outcome", "failed"),
                ("pid", "-"),
            ],
        );
    }

    // The right content, but a file the caller could rewrite: refused too.
    original.put_back();
    std::os::unix::fs::chown(&lib, Some(u), Some(env.user.gid)).unwrap();
    let run = env.verify(&dir, &restore_args(&d.image, &[]));
    run.assert_code(exit::RESTORE_FAILED, "restore with a caller-owned library");
    assert!(
        run.stderr.contains(path_str(&lib)) && run.stderr.contains("modified by the caller"),
        "{run}"
    );
    assert_nothing_left(&dir, "a restore refused for a caller-writable library");

    // Put back exactly as dumped: the same image restores with euid 0, so
    // the refusals above were about the library.
    original.put_back();
    let (run, p) = restore_ok(&env, &dir, &d.image, &["--require-saved-creds"]);
    let st = procfs::status(p.pid).expect("status");
    assert_eq!(status_ids(&st, "Uid"), vec![u64::from(u), 0, 0, 0], "{run}");
    let rep = d.reporter.wait_for(p.pid, d.last_count + 3);
    assert_eq!(rep.uid, [u, 0, 0], "{rep:?}");
    assert_eq!(rep.mark, 42, "{rep:?}");
}

/// A library the helpers remembered the digest of (root's, unchanged for
/// longer than the file digest cache's settling time: see SECURITY.md, "The
/// file digest cache") is changed in place by root afterwards: same inode,
/// same size, one byte different. The restore must hash it again and
/// refuse it; the original byte written back (in place again) restores.
#[test]
fn passwd_case_library_changed_in_place_after_caching_is_refused() {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let env = Env::require();
    let _log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "passwd-library-in-place");
    let (_, lib) = ckpt_tests::reporter::build(&env, &dir);
    // Older than the cache's settling time (2 s) when the dump hashes it.
    std::thread::sleep(std::time::Duration::from_millis(3100));
    let d = dump_passwd_case(&env, &dir, "p");
    guard.policy(&passwd_rule(&env, &d, "e2e-passwd"));

    // The dump remembered the library: a record of its device and inode.
    let meta = fs::metadata(&lib).unwrap();
    let cache = fs::read(ckpt_tests::policy::statedir().join("file-digests"))
        .expect("the dump wrote the file digest cache");
    let (magic, records) = cache.split_at(8);
    assert_eq!(magic, b"CKPTFD01");
    let remembered = records
        .chunks_exact(96)
        .any(|r| r[8..16] == meta.dev().to_le_bytes() && r[16..24] == meta.ino().to_le_bytes());
    assert!(remembered, "the cache holds {}", lib.display());

    // Changed in place by root: the same inode and size.
    let file = fs::OpenOptions::new().write(true).open(&lib).unwrap();
    let last = meta.len() - 1;
    let mut byte = [0u8; 1];
    fs::File::open(&lib)
        .unwrap()
        .read_exact_at(&mut byte, last)
        .unwrap();
    file.write_all_at(&[byte[0] ^ 0xff], last).unwrap();
    let changed = fs::metadata(&lib).unwrap();
    assert_eq!((changed.ino(), changed.len()), (meta.ino(), meta.len()));
    let run = env.verify(&dir, &restore_args(&d.image, &[]));
    run.assert_code(
        exit::RESTORE_FAILED,
        "restore with the library changed in place",
    );
    assert!(
        run.stderr.contains(path_str(&lib)) && run.stderr.contains("content digest differs"),
        "the refusal names the library and what changed\n{run}"
    );
    assert!(run.stdout.trim().is_empty(), "no pid printed\n{run}");
    assert_nothing_left(&dir, "a restore refused for a library changed in place");

    // The original byte back, in place: the same image restores.
    file.write_all_at(&byte, last).unwrap();
    drop(file);
    let (run, p) = restore_ok(&env, &dir, &d.image, &["--require-saved-creds"]);
    let rep = d.reporter.wait_for(p.pid, d.last_count + 3);
    assert_eq!(rep.mark, 42, "{rep:?}\n{run}");
}

/// Moves the audit socket away (the capture keeps its socket, but the
/// helpers can no longer reach it) and puts it back when dropped. Only
/// under the configuration lock: every test of this binary that looks at
/// the audit log holds it.
struct AuditAway {
    path: PathBuf,
    away: PathBuf,
}

impl AuditAway {
    fn new() -> AuditAway {
        let Some(sock) = option_env!("CKPT_SYSLOG_SOCKET") else {
            panic!("this build has no CKPT_SYSLOG_SOCKET (scripts/test.sh sets it)");
        };
        let path = PathBuf::from(sock);
        let away = path.with_extension("sock.e2e-away");
        fs::rename(&path, &away).expect("move the audit socket away");
        AuditAway { path, away }
    }
}

impl Drop for AuditAway {
    fn drop(&mut self) {
        let _ = fs::rename(&self.away, &self.path);
    }
}

#[test]
fn granted_restore_is_refused_when_the_audit_log_is_unreachable() {
    let env = Env::require();
    let log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "passwd-no-audit");
    let d = dump_passwd_case(&env, &dir, "p");
    let u = env.user.uid;
    guard.policy(&passwd_rule(&env, &d, "e2e-passwd"));
    {
        let _away = AuditAway::new();
        let run = env.verify(&dir, &restore_args(&d.image, &[]));
        run.assert_code(exit::POLICY, "a granted restore without the audit log");
        assert!(
            run.stderr.contains("the audit log is unavailable"),
            "the refusal says why\n{run}"
        );
        assert_nothing_left(&dir, "a restore refused for want of an audit log");

        // Without a grant the restore carries on, with a warning.
        guard.clear();
        let (run, mut p) = restore_ok(&env, &dir, &d.image, &[]);
        assert!(
            run.stderr.contains("warning: audit log unavailable"),
            "{run}"
        );
        let st = procfs::status(p.pid).expect("status");
        assert_eq!(status_ids(&st, "Uid"), vec![u64::from(u); 4], "{run}");
        p.assert_untouched("restored as the caller");
    }
    // The log is back: the same granted restore goes through and is logged.
    guard.policy(&passwd_rule(&env, &d, "e2e-passwd"));
    let before = log.raw().len();
    let (run, p) = restore_ok(&env, &dir, &d.image, &["--require-saved-creds"]);
    let st = procfs::status(p.pid).expect("status");
    assert_eq!(status_ids(&st, "Uid"), vec![u64::from(u), 0, 0, 0], "{run}");
    let rec = ckpt_tests::policy::wait_new(log, before, "the granted restore", |r| {
        r.get("image_id") == Some(d.image_id.as_str())
    });
    assert_eq!(rec.get("outcome"), Some("ok"), "{}", rec.raw);
}

/// `CapXxx` of a status map, as a number.
fn cap(status: &std::collections::BTreeMap<String, String>, key: &str) -> u64 {
    status_ids(status, key)[0]
}

#[test]
fn passwd_case_with_capabilities_gets_the_saved_capability_sets() {
    let env = Env::require();
    let log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "passwd-caps");
    let d = dump_passwd_case(&env, &dir, "p");
    let u = env.user.uid;
    let prm = cap(&d.status, "CapPrm");
    assert_ne!(prm, 0, "a setuid-root program holds capabilities");
    guard.policy(&passwd_rule(&env, &d, "e2e-root").replace(
        "grant = [\"credentials\", \"exe-link\"]",
        "grant = [\"credentials\", \"capabilities\", \"exe-link\"]",
    ));
    let (run, v) = explain(&env, &dir, Who::User(&env.user), &d.image);
    assert_granted(&v, &run, "capabilities", "e2e-root");
    let c = &v["restore"]["capabilities"];
    assert_eq!(c["permitted"], format!("{prm:#x}"), "{run}");
    assert_eq!(
        c["effective"],
        format!("{:#x}", cap(&d.status, "CapEff")),
        "{run}"
    );
    assert_eq!(
        c["bounding"],
        format!("{:#x}", cap(&d.status, "CapBnd")),
        "{run}"
    );
    let names = v["target"]["capabilities"]["permitted"].to_string();
    assert!(
        names.contains("cap_setuid") && names.contains("cap_sys_admin"),
        "{run}"
    );

    let (run, p) = restore_ok(&env, &dir, &d.image, &["--require-saved-creds"]);
    let st = procfs::status(p.pid).expect("status");
    assert_eq!(status_ids(&st, "Uid"), vec![u64::from(u), 0, 0, 0], "{run}");
    for k in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            cap(&st, k),
            cap(&d.status, k),
            "{k} of the restored process is the original's\n{run}"
        );
    }
    assert!(
        run.stderr.contains("restoring the image's capabilities"),
        "{run}"
    );
    let rec = restore_record(log, &d.image_id, "ok");
    assert_record(
        &rec,
        &RESTORE_FIELDS,
        &[
            (
                "grants",
                "credentials:e2e-root,capabilities:e2e-root,exe-link:e2e-root",
            ),
            ("denied", "same-pid,privileged-files"),
        ],
    );
}

#[test]
fn passwd_case_root_only_file_needs_privileged_files() {
    let env = Env::require();
    let _log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "passwd-files");
    let hold = dir.root.join("root-only.secret");
    dir.file(&hold, b"only root may read this\n", 0o600, None);
    let d = dump_passwd_case_holding(&env, &dir, "p", Some(&hold));
    let u = env.user.uid;
    let holds = |pid: i32| {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("fd dir")
            .flatten()
            .any(|e| fs::read_link(e.path()).ok().as_deref() == Some(hold.as_path()))
    };

    // Without privileged-files (no rule, then credentials only): the
    // restore fails naming the file and the missing grant.
    for policy in [None, Some(passwd_rule(&env, &d, "e2e-passwd"))] {
        match &policy {
            Some(text) => {
                guard.policy(text);
            }
            None => guard.clear(),
        }
        let (run, v) = explain(&env, &dir, Who::User(&env.user), &d.image);
        assert_denied(&v, &run, "privileged-files", "no-rule", None, &[]);
        assert_eq!(
            v["restore"]["file_credentials"]["uid"],
            serde_json::json!([u, u, u, u]),
            "{run}"
        );
        let run = env.verify(&dir, &restore_args(&d.image, &[]));
        run.assert_code(
            exit::RESTORE_FAILED,
            "restore of a process holding a root-only file",
        );
        assert!(
            run.stderr.contains(path_str(&hold)) && run.stderr.contains("`privileged-files` grant"),
            "the failure names the file and the grant\n{run}"
        );
        assert_nothing_left(&dir, "a restore that cannot reopen a file");
    }

    // With it: the file is reopened with the saved credentials.
    guard.policy(&passwd_rule(&env, &d, "e2e-files").replace(
        "grant = [\"credentials\", \"exe-link\"]",
        "grant = [\"credentials\", \"exe-link\", \"privileged-files\"]",
    ));
    let (run, v) = explain(&env, &dir, Who::User(&env.user), &d.image);
    assert_granted(&v, &run, "privileged-files", "e2e-files");
    assert_eq!(
        v["restore"]["file_credentials"]["uid"],
        serde_json::json!([u, 0, 0, 0]),
        "{run}"
    );
    let (run, p) = restore_ok(&env, &dir, &d.image, &[]);
    assert!(
        holds(p.pid),
        "the restored process holds {} again\n{run}",
        hold.display()
    );
    d.reporter.wait_for(p.pid, d.last_count + 3);
}

#[test]
fn passwd_case_explain_names_the_failing_condition() {
    let env = Env::require();
    let _log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "passwd-conditions");
    let d = dump_passwd_case(&env, &dir, "p");
    let base = passwd_rule(&env, &d, "e2e-cond");
    let other_key = ckpt_keys::SigningKey::generate().unwrap().public_key();
    let exe_line = format!("exe = {}", toml_str(path_str(&d.reporter.program)));
    let zero_digest = format!("sha256:{}", "0".repeat(64));
    let mut cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "signed_by",
            format!(
                "[[key]]\nname = \"e2e-elsewhere\"\npublic = {}\n\n{}",
                toml_str(&other_key.to_line()),
                base.replace(
                    "signed_by = [\"this-host\"]",
                    "signed_by = [\"e2e-elsewhere\"]"
                )
            ),
            vec!["e2e-elsewhere".into()],
        ),
        (
            "caller",
            base.replace(
                &format!("caller = [\"user:{0}\", \"group:{0}\"]", env.user.name),
                &format!("caller = [\"group:{}\"]", env.other.name),
            ),
            vec![format!("group:{}", env.other.name)],
        ),
        (
            "target",
            base.replace("euid = [0]", "euid = [1]"),
            vec!["euid".into(), "is 0".into()],
        ),
        (
            "exe",
            base.replace(&exe_line, "exe = \"/usr/bin/passwd\""),
            vec!["/usr/bin/passwd".into()],
        ),
        (
            "exe_digest",
            base.replace(&d.exe_digest, &zero_digest),
            vec![zero_digest[7..19].to_string()],
        ),
        (
            "host",
            base.replace(&d.machine_id, "00000000000000000000000000000001"),
            vec!["00000000000000000000000000000001".into()],
        ),
    ];
    cases.push((
        "caller",
        base.replace(
            &format!("caller = [\"user:{0}\", \"group:{0}\"]", env.user.name),
            "caller = [\"user:no-such-user-e2e\"]",
        ),
        vec!["no user \"no-such-user-e2e\" on this host".into()],
    ));
    cases.push((
        "target",
        base.replace("euid = [0] }", "euid = [0], caps_within = [] }"),
        vec!["caps_within: the process holds".into(), "cap_setuid".into()],
    ));
    for (condition, text, words) in &cases {
        guard.policy(text);
        env.verify_as(Who::Root, &dir, &["policy", "check"])
            .assert_code(
                exit::OK,
                &format!("the {condition} variant is a valid policy"),
            );
        let (run, v) = explain(&env, &dir, Who::User(&env.user), &d.image);
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        for p in ["credentials", "exe-link"] {
            assert_denied(&v, &run, p, condition, Some("e2e-cond"), &words);
        }
        assert_eq!(v["decision"], "restore-as-caller", "{run}");
    }
    // Host names match case-insensitively; a list is alternatives.
    let (_run, v) = explain(&env, &dir, Who::User(&env.user), &d.image);
    let hostname = v["host"]["hostname"]
        .as_str()
        .expect("hostname")
        .to_uppercase();
    guard.policy(&base.replace(
        &format!("host = [{}]", toml_str(&d.machine_id)),
        &format!("host = [\"no-such-host.example\", {}]", toml_str(&hostname)),
    ));
    let (run, v) = explain(&env, &dir, Who::User(&env.user), &d.image);
    assert_granted(&v, &run, "credentials", "e2e-cond");

    // max_age: wait until the image is older than a second.
    guard.policy(&base.replace("max_age = \"1h\"", "max_age = \"1s\""));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (run, v) = explain(&env, &dir, Who::User(&env.user), &d.image);
    assert_denied(
        &v,
        &run,
        "credentials",
        "max_age",
        Some("e2e-cond"),
        &["more than 1s"],
    );
    let run = env.verify(&dir, &restore_args(&d.image, &["--require-saved-creds"]));
    run.assert_code(exit::POLICY, "restore of an image older than max_age");
    assert!(run.stderr.contains("max_age"), "{run}");
    let text = env.verify(&dir, &["explain", path_str(&d.image)]);
    assert!(
        text.stdout
            .contains("credentials: not granted: rule \"e2e-cond\": max_age:"),
        "{text}"
    );
}

#[test]
fn privileged_files_do_not_follow_a_symlink_the_caller_swapped_in() {
    let env = Env::require();
    let _log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "passwd-symlink");
    // Root-only files in directories the user owns: after the dump the
    // user replaces the file (then a directory above it) with a symbolic
    // link to another root-only file.
    let decoy_dir = dir.dir("decoy", 0o700, None);
    let decoy = decoy_dir.join("held");
    dir.file(
        &decoy,
        b"the decoy: never to be opened for the user\n",
        0o600,
        None,
    );
    let sub = dir.work.join("sub");
    fs::create_dir(&sub).unwrap();
    std::os::unix::fs::chown(&sub, Some(env.user.uid), Some(env.user.gid)).unwrap();
    let hold = sub.join("held");
    dir.file(&hold, b"the file the process opened\n", 0o600, None);
    let d = dump_passwd_case_holding(&env, &dir, "p", Some(&hold));
    guard.policy(&passwd_rule(&env, &d, "e2e-files").replace(
        "grant = [\"credentials\", \"exe-link\"]",
        "grant = [\"credentials\", \"exe-link\", \"privileged-files\"]",
    ));
    let points_at_decoy = |pid: i32| {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|rd| {
                rd.flatten()
                    .any(|e| fs::read_link(e.path()).ok().as_deref() == Some(decoy.as_path()))
            })
            .unwrap_or(false)
    };

    // The file itself becomes a link.
    let kept = sub.join("held.orig");
    fs::rename(&hold, &kept).unwrap();
    std::os::unix::fs::symlink(&decoy, &hold).unwrap();
    std::os::unix::fs::lchown(&hold, Some(env.user.uid), Some(env.user.gid)).unwrap();
    let run = env.verify(&dir, &restore_args(&d.image, &[]));
    if run.code == Some(exit::OK) {
        let pid: i32 = run.stdout.trim().parse().unwrap_or(0);
        let _p = Proc::adopt(pid, "restored through a symlink");
        panic!(
            "a privileged restore reopened {} through a symbolic link (holds the decoy: {})\n{run}",
            hold.display(),
            points_at_decoy(pid)
        );
    }
    run.assert_code(
        exit::RESTORE_FAILED,
        "privileged restore through a swapped-in symlink",
    );
    assert!(
        run.stderr.contains(path_str(&hold)),
        "the failure names the file\n{run}"
    );
    assert_nothing_left(&dir, "a restore refused for a symbolic link");
    fs::remove_file(&hold).unwrap();
    fs::rename(&kept, &hold).unwrap();

    // A directory above it becomes a link (to a copy of the layout).
    let fake = dir.dir("fake-sub", 0o755, None);
    fs::hard_link(&decoy, fake.join("held")).unwrap();
    let sub_kept = dir.work.join("sub.orig");
    fs::rename(&sub, &sub_kept).unwrap();
    std::os::unix::fs::symlink(&fake, &sub).unwrap();
    std::os::unix::fs::lchown(&sub, Some(env.user.uid), Some(env.user.gid)).unwrap();
    let run = env.verify(&dir, &restore_args(&d.image, &[]));
    if run.code == Some(exit::OK) {
        let pid: i32 = run.stdout.trim().parse().unwrap_or(0);
        let _p = Proc::adopt(pid, "restored through a symlink");
        panic!(
            "a privileged restore reopened {} through a symbolic link in its path (holds the \
             decoy: {})\n{run}",
            hold.display(),
            points_at_decoy(pid)
        );
    }
    run.assert_code(
        exit::RESTORE_FAILED,
        "privileged restore through a symlinked directory",
    );
    assert_nothing_left(&dir, "a restore refused for a symbolic link");
    fs::remove_file(&sub).unwrap();
    fs::rename(&sub_kept, &sub).unwrap();

    // Put back: the restore goes through and holds the right file.
    let (run, p) = restore_ok(&env, &dir, &d.image, &[]);
    assert!(!points_at_decoy(p.pid), "{run}");
    let holds_it = fs::read_dir(format!("/proc/{}/fd", p.pid))
        .unwrap()
        .flatten()
        .any(|e| fs::read_link(e.path()).ok().as_deref() == Some(hold.as_path()));
    assert!(holds_it, "{run}");
}
