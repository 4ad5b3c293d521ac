//! One-shot replay.
//!
//! A `one_shot = true` rule grants the passwd case's credentials to the
//! first restore of an image id only: the helper records the id in the
//! root-only ledger (`<statedir>/one-shot/<image id>`) before restoring; a
//! second restore finds it, the rule no longer applies (explain: "already
//! restored (one-shot)"), `--require-saved-creds` refuses (exit 5) and
//! other rules still apply. A restore that fails releases the entry; of
//! two concurrent restores exactly one wins.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ckpt_tests::policy::{
    assert_denied, assert_granted, assert_record, explain, owner_mode, toml_str, wait_new,
    PolicyGuard, RESTORE_FIELDS,
};
use ckpt_tests::reporter::{dump_as_root, Reporter};
use ckpt_tests::syslog::Syslog;
use ckpt_tests::{
    exit, path_str, processes_mentioning, procfs, status_ids, write_owned, Env, Proc, Run, TestDir,
    Who,
};

struct Dumped {
    reporter: Reporter,
    image: PathBuf,
    image_id: String,
    last_count: u64,
}

fn dump_passwd_case(env: &Env, dir: &TestDir) -> Dumped {
    let mut reporter = Reporter::start(env, dir, "p");
    let pid = reporter.proc.pid;
    let (_run, image) = dump_as_root(env, dir, pid, "p", &[]);
    reporter.proc.wait_gone("the dump kills the target");
    let last_count = reporter.last(pid).expect("reported").count;
    let (_run, v) = explain(env, dir, Who::User(&env.user), &image);
    Dumped {
        image_id: v["image_id"].as_str().expect("image id").to_string(),
        reporter,
        image,
        last_count,
    }
}

fn once_rule(env: &Env, program: &Path) -> String {
    format!(
        "[[rule]]\nname = \"e2e-once\"\nsigned_by = [\"this-host\"]\n\
         requester = [\"uid:0\"]\ncaller = [\"uid:{u}\"]\n\
         target = {{ ruid = [{u}], euid = [0] }}\nexe = {exe}\n\
         one_shot = true\ngrant = [\"credentials\", \"exe-link\"]\n",
        u = env.user.uid,
        exe = toml_str(path_str(program)),
    )
}

fn restore(env: &Env, dir: &TestDir, image: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["restore", path_str(image)];
    args.extend_from_slice(extra);
    env.verify(dir, &args)
}

fn adopt(run: &Run) -> Proc {
    let pid: i32 = run
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("restore prints the pid\n{run}"));
    Proc::adopt(pid, "restored resuid_report")
        .unwrap_or_else(|| panic!("restored pid {pid} does not run\n{run}"))
}

fn uids(pid: i32) -> Vec<u64> {
    status_ids(&procfs::status(pid).expect("status"), "Uid")
}

#[test]
fn one_shot_rule_grants_the_first_restore_only() {
    let env = Env::require();
    let log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "one-shot");
    let d = dump_passwd_case(&env, &dir);
    let u = env.user.uid;
    let program = d.reporter.program.clone();
    guard.policy(&format!(
        "{}\n[[rule]]\nname = \"e2e-exe\"\nsigned_by = [\"this-host\"]\n\
         caller = [\"uid:{u}\"]\ngrant = [\"exe-link\"]\n",
        once_rule(&env, &program)
    ));
    let entry = guard.ledger_entry(&d.image_id);
    assert!(!entry.exists(), "no ledger entry before the first restore");

    let (run, v) = explain(&env, &dir, Who::User(&env.user), &d.image);
    assert_eq!(v["freshness"]["one_shot"], "not-restored", "{run}");
    assert!(v["freshness"]["one_shot_detail"].is_null(), "{run}");
    assert_granted(&v, &run, "credentials", "e2e-once");
    assert_granted(&v, &run, "exe-link", "e2e-once");
    assert_eq!(v["grants"]["credentials"]["one_shot"], true, "{run}");
    assert!(
        run.stdout.contains("\"one_shot\":true"),
        "explain --json marks the one-shot grant\n{run}"
    );

    // First restore: granted, and recorded.
    let run = restore(&env, &dir, &d.image, &["--require-saved-creds"]);
    run.assert_code(exit::OK, "first restore under a one-shot rule");
    let first = adopt(&run);
    assert_eq!(uids(first.pid), vec![u64::from(u), 0, 0, 0], "{run}");
    let rep = d.reporter.wait_for(first.pid, d.last_count + 3);
    assert_eq!(rep.uid, [u, 0, 0], "{rep:?}");
    assert_eq!(
        owner_mode(&entry),
        (0, 0, 0o600),
        "ledger entry {}",
        entry.display()
    );
    let note = fs::read_to_string(&entry).expect("read the ledger entry");
    assert!(
        note.contains(&d.image_id) && note.contains(&format!("caller_uid={u}")),
        "the entry says which image and who: {note:?}"
    );
    let ledger = entry.parent().unwrap();
    assert_eq!(
        owner_mode(ledger).2,
        0o700,
        "the ledger directory is root-only"
    );
    let run = env.verify(&dir, &["explain", path_str(&d.image)]);
    run.assert_code(exit::OK, "explain");
    assert!(run.stdout.contains("one-shot: already restored"), "{run}");

    // Second look: the one-shot rule no longer applies; the other rule does.
    let (run, v) = explain(&env, &dir, Who::User(&env.user), &d.image);
    assert_eq!(v["freshness"]["one_shot"], "already-restored", "{run}");
    assert_denied(
        &v,
        &run,
        "credentials",
        "one_shot",
        Some("e2e-once"),
        &["already restored (one-shot)"],
    );
    assert_granted(&v, &run, "exe-link", "e2e-exe");
    assert_eq!(v["grants"]["exe-link"]["one_shot"], false, "{run}");
    assert_eq!(
        v["restore"]["credentials"]["uid"],
        serde_json::json!([u, u, u, u]),
        "{run}"
    );

    // Second restore: refused with --require-saved-creds.
    let before = log.raw().len();
    let run = restore(&env, &dir, &d.image, &["--require-saved-creds"]);
    run.assert_code(exit::POLICY, "second restore of a one-shot image");
    assert!(
        run.stderr.contains("already restored (one-shot)"),
        "the refusal says why\n{run}"
    );
    assert!(run.stdout.trim().is_empty(), "{run}");
    let mine = processes_mentioning(path_str(&program));
    assert_eq!(mine, vec![first.pid], "only the first restore runs");
    let rec = wait_new(log, before, "the refused replay", |r| {
        r.program == "ckpt-verify" && r.get("image_id") == Some(d.image_id.as_str())
    });
    assert_eq!(rec.priority, 84, "{}", rec.raw);
    assert_record(
        &rec,
        &RESTORE_FIELDS,
        &[
            ("caller_uid", &u.to_string()),
            ("trusted", "yes"),
            ("grants", "exe-link:e2e-exe"),
            (
                "denied",
                "credentials,capabilities,same-pid,privileged-files",
            ),
            ("outcome", "refused"),
            ("pid", "-"),
        ],
    );
    assert!(
        rec.get("reason")
            .unwrap()
            .contains("one_shot: already restored (one-shot)"),
        "{}",
        rec.raw
    );

    // Without the option: the caller's credentials (a notice says why),
    // still with the exe link of the other rule.
    let run = restore(&env, &dir, &d.image, &[]);
    run.assert_code(exit::OK, "second restore without --require-saved-creds");
    let second = adopt(&run);
    assert_eq!(uids(second.pid), vec![u64::from(u); 4], "{run}");
    let rep = d.reporter.wait_for(second.pid, d.last_count + 3);
    assert_eq!(rep.uid, [u, u, u], "{rep:?}");
    assert!(
        run.stderr.contains("restoring with your own credentials")
            && run.stderr.contains("already restored (one-shot)"),
        "{run}"
    );
    assert_eq!(
        fs::read_link(format!("/proc/{}/exe", second.pid)).ok(),
        Some(program.clone()),
        "exe-link granted by the other rule\n{run}"
    );
    drop(second);
    drop(first);

    // The admin removes the entry: allowed once more.
    guard.forget(&d.image_id);
    let (run, v) = explain(&env, &dir, Who::User(&env.user), &d.image);
    assert_eq!(v["freshness"]["one_shot"], "not-restored", "{run}");
    assert_granted(&v, &run, "credentials", "e2e-once");
}

/// Puts a file's bytes back (root-owned, 0755) when dropped.
struct FileBack(PathBuf, Vec<u8>);

impl Drop for FileBack {
    fn drop(&mut self) {
        let tmp = self.0.with_extension("orig-tmp");
        fs::write(&tmp, &self.1).expect("write the original");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::rename(&tmp, &self.0).expect("put the original back");
    }
}

#[test]
fn a_failed_restore_releases_the_one_shot_entry() {
    let env = Env::require();
    let _log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "one-shot-release");
    let d = dump_passwd_case(&env, &dir);
    let u = env.user.uid;
    guard.policy(&once_rule(&env, &d.reporter.program));
    let entry = guard.ledger_entry(&d.image_id);

    // The pid file exists: refused after the reservation, before anything
    // runs.
    let pidfile = dir.work.join("taken.pid");
    write_owned(&pidfile, b"1\n", &env.user);
    let run = restore(&env, &dir, &d.image, &["--pidfile", path_str(&pidfile)]);
    run.assert_refused("restore with an existing pid file");
    assert!(
        !entry.exists(),
        "a refused restore leaves no ledger entry\n{run}"
    );
    assert!(
        processes_mentioning(path_str(&dir.root)).is_empty(),
        "{run}"
    );

    // The engine refuses (the library changed): the entry is released.
    {
        let lib = d.reporter.library.clone();
        let _back = FileBack(lib.clone(), fs::read(&lib).unwrap());
        let mut bytes = fs::read(&lib).unwrap();
        bytes.extend_from_slice(b"changed");
        fs::write(&lib, bytes).unwrap();
        let run = restore(&env, &dir, &d.image, &["--require-saved-creds"]);
        run.assert_code(exit::RESTORE_FAILED, "restore with the library changed");
        assert!(
            !entry.exists(),
            "a failed restore releases the ledger entry\n{run}"
        );
        assert!(
            processes_mentioning(path_str(&dir.root)).is_empty(),
            "{run}"
        );
    }
    let (run, v) = explain(&env, &dir, Who::User(&env.user), &d.image);
    assert_eq!(v["freshness"]["one_shot"], "not-restored", "{run}");

    // So the image still gets its one restore.
    let run = restore(&env, &dir, &d.image, &["--require-saved-creds"]);
    run.assert_code(exit::OK, "the one granted restore");
    let p = adopt(&run);
    assert_eq!(uids(p.pid), vec![u64::from(u), 0, 0, 0], "{run}");
    assert!(entry.exists(), "recorded once it was used");
}

#[test]
fn concurrent_restores_of_a_one_shot_image_grant_once() {
    let env = Env::require();
    let _log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "one-shot-race");
    let d = dump_passwd_case(&env, &dir);
    let u = env.user.uid;
    guard.policy(&once_rule(&env, &d.reporter.program));
    // All restores leave the barrier together, so each one's check of the
    // ledger falls inside the others' restores: a ledger that checked first
    // and recorded only after restoring would let several win. The timings
    // prove they overlapped.
    const N: usize = 4;
    let barrier = std::sync::Barrier::new(N);
    let timed: Vec<(Run, Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let start = Instant::now();
                    let run = restore(&env, &dir, &d.image, &["--require-saved-creds"]);
                    (run, start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("restore thread"))
            .collect()
    });
    let last_start = timed.iter().map(|t| t.1).max().unwrap();
    let first_end = timed.iter().map(|t| t.2).min().unwrap();
    assert!(
        last_start < first_end,
        "the restores did not overlap: the last started {:?} after the first ended",
        last_start - first_end
    );
    let runs: Vec<Run> = timed.into_iter().map(|t| t.0).collect();
    let won: Vec<&Run> = runs.iter().filter(|r| r.code == Some(exit::OK)).collect();
    let refused = runs.iter().filter(|r| r.code == Some(exit::POLICY)).count();
    let all: Vec<String> = runs.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        (won.len(), refused),
        (1, N - 1),
        "exactly one of {N} concurrent restores is granted:\n{}",
        all.join("\n")
    );
    let p = adopt(won[0]);
    assert_eq!(uids(p.pid), vec![u64::from(u), 0, 0, 0]);
    assert_eq!(
        processes_mentioning(path_str(&d.reporter.program)),
        vec![p.pid],
        "only the winner runs"
    );
    for r in runs.iter().filter(|r| r.code == Some(exit::POLICY)) {
        assert!(r.stderr.contains("already restored (one-shot)"), "{r}");
    }
    assert!(guard.ledger_entry(&d.image_id).exists());
}

#[test]
fn an_unusable_ledger_makes_one_shot_rules_match_nothing() {
    let env = Env::require();
    let _log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "one-shot-ledger");
    let d = dump_passwd_case(&env, &dir);
    guard.policy(&once_rule(&env, &d.reporter.program));
    // The helper creates the ledger directory (root, 0700) when missing.
    let run = restore(&env, &dir, &d.image, &["--require-saved-creds"]);
    run.assert_code(exit::OK, "restore under a one-shot rule");
    drop(adopt(&run));
    let ledger = guard
        .ledger_entry(&d.image_id)
        .parent()
        .unwrap()
        .to_path_buf();
    assert_eq!(owner_mode(&ledger), (0, 0, 0o700), "{}", ledger.display());
    guard.forget(&d.image_id);

    // Group-writable, then owned by the user: unusable, so one-shot rules
    // grant nothing (fail closed), and explain says why.
    for (what, mode, owner) in [
        ("group-writable", 0o770, 0),
        ("owned by the user", 0o700, env.user.uid),
    ] {
        fs::set_permissions(&ledger, fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&ledger, Some(owner), None).unwrap();
        let (run, v) = explain(&env, &dir, Who::User(&env.user), &d.image);
        assert_eq!(v["freshness"]["one_shot"], "unavailable", "{what}\n{run}");
        let detail = v["freshness"]["one_shot_detail"]
            .as_str()
            .unwrap_or_default();
        assert!(
            detail.contains(path_str(&ledger)),
            "{what}: the detail names the directory\n{run}"
        );
        assert_denied(
            &v,
            &run,
            "credentials",
            "one_shot",
            Some("e2e-once"),
            &["the one-shot ledger is unavailable"],
        );
        let run = restore(&env, &dir, &d.image, &["--require-saved-creds"]);
        run.assert_code(exit::POLICY, &format!("restore with the ledger {what}"));
        assert!(
            run.stderr.contains("ledger is unavailable"),
            "{what}\n{run}"
        );
        assert!(
            processes_mentioning(path_str(&dir.root)).is_empty(),
            "{run}"
        );
        assert!(
            !guard.ledger_entry(&d.image_id).exists(),
            "{what}: nothing recorded"
        );
    }
    fs::set_permissions(&ledger, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&ledger, Some(0), Some(0)).unwrap();
    let (run, v) = explain(&env, &dir, Who::User(&env.user), &d.image);
    assert_eq!(v["freshness"]["one_shot"], "not-restored", "{run}");
}
