//! What a restore may give a process, and what it must not.
//!
//! * A process in a user namespace its owner created is "root" with every
//!   capability there, and none on the host: dumping it is refused (exit 6,
//!   the namespace named), so no image can carry those capabilities into a
//!   grant. A process in another pid namespace is refused the same way.
//! * `credentials` without `capabilities` on the passwd-style case (ruid =
//!   the user, euid = 0): the restored process holds no capability, and a
//!   program it execs gets none either (`SECBIT_NOROOT`, locked).
//! * `no_new_privs` is restored, for a restore as the caller and for a
//!   root-built one.
//! * Root, restoring another user's process with its credentials and its
//!   pid, is not refused as an "escalation": it already holds all of it.
//! * Root restoring its own process with no grant keeps the process's
//!   supplementary groups (root may set any); a user never gets groups
//!   the user does not hold.
//!
//! Every case goes through the installed setuid helpers, as the test user
//! unless the case is about root.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use ckpt_tests::policy::PolicyGuard;
use ckpt_tests::reporter::dump_as_root;
use ckpt_tests::syslog::Syslog;
use ckpt_tests::{
    exit, path_str, procfs, signal, status_ids, wait_until, write_owned, Counter, Env, Proc, Run,
    TestDir, Who, WAIT,
};

/// `bin/creds_probe` (0755), or a root-owned set-user-id copy
/// `bin/creds_probe_suid` (4755).
fn probe(env: &Env, dir: &TestDir, setuid: bool) -> PathBuf {
    let (out, mode) = if setuid {
        ("creds_probe_suid", 0o4755)
    } else {
        ("creds_probe", 0o755)
    };
    let program = dir.bin.join(out);
    if !program.exists() {
        dir.compile_with(env, "creds_probe", out, &[]);
        fs::set_permissions(&program, fs::Permissions::from_mode(mode)).expect("chmod probe");
    }
    let md = fs::metadata(&program).expect("stat probe");
    assert_eq!(
        (md.uid(), md.mode() & 0o7777),
        (0, mode),
        "probe owner/mode"
    );
    program
}

/// A probe's report file.
struct Probe {
    report: PathBuf,
}

/// Starts the probe as `who` with `opts`, its report `work/NAME.report`
/// owned by the test user; waits until it counts.
fn start(
    env: &Env,
    dir: &TestDir,
    who: Who,
    setuid: bool,
    name: &str,
    opts: &[&str],
) -> (Proc, Probe) {
    let program = probe(env, dir, setuid);
    let report = dir.work.join(format!("{name}.report"));
    write_owned(&report, b"", &env.user);
    fs::set_permissions(&report, fs::Permissions::from_mode(0o644)).expect("chmod report");
    let mut args = vec![path_str(&report)];
    args.extend_from_slice(opts);
    let proc = Proc::spawn(
        env,
        who,
        &program,
        &args,
        &dir.work,
        &[],
        &dir.work.join(format!("{name}.log")),
    );
    let p = Probe { report };
    // In a pid namespace of its own the counting child is pid 1 there.
    let counting = if opts.contains(&"pidns") { 1 } else { proc.pid };
    p.wait_count(counting, 3);
    (proc, p)
}

impl Probe {
    /// Complete `<count> <pid>` lines.
    fn counts(&self) -> Vec<(u64, i32)> {
        ckpt_tests::counter_lines(&self.report)
    }

    fn wait_count(&self, pid: i32, at_least: u64) {
        wait_until(
            WAIT,
            &format!(
                "pid {pid} counts to {at_least} in {}",
                self.report.display()
            ),
            || {
                self.counts()
                    .iter()
                    .any(|&(c, p)| p == pid && c >= at_least)
            },
        );
    }

    /// Sends SIGUSR1 to `pid` (the probe then execs `cat
    /// /proc/self/status` into its report) and returns that status.
    fn exec_status(&self, pid: i32) -> std::collections::BTreeMap<String, String> {
        signal(pid, nix::sys::signal::Signal::SIGUSR1);
        let marker = format!("exec {pid}\n");
        let block = || {
            let text = fs::read_to_string(&self.report).unwrap_or_default();
            let at = text.find(&marker)?;
            let rest = &text[at + marker.len()..];
            rest.contains("\nSeccomp:").then(|| rest.to_string())
        };
        wait_until(
            WAIT,
            &format!("pid {pid} has exec'ed cat /proc/self/status"),
            || block().is_some(),
        );
        block()
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect()
    }
}

fn cap(status: &std::collections::BTreeMap<String, String>, key: &str) -> u64 {
    status_ids(status, key)[0]
}

fn ns_link(pid: &str, kind: &str) -> PathBuf {
    fs::read_link(format!("/proc/{pid}/ns/{kind}")).expect("namespace link")
}

fn restored(run: &Run) -> Proc {
    let pid: i32 = run
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("restore prints the pid\n{run}"));
    Proc::adopt(pid, "restored probe")
        .unwrap_or_else(|| panic!("restored pid {pid} does not run\n{run}"))
}

/// The passwd-style rule: `credentials` (only) for the test user's own
/// Starts `groups_probe` as root in `dir` (its directory `g`), waits until
/// it has set its groups and is ready. Returns it, its directory and log.
fn start_root_groups_probe(env: &Env, dir: &TestDir) -> (Proc, PathBuf, PathBuf) {
    let program = dir.compile(env, "groups_probe");
    let gdir = dir.root.join("g");
    fs::create_dir(&gdir).unwrap();
    let log = dir.root.join("groups_probe.log");
    let mut orig = Proc::spawn(
        env,
        Who::Root,
        &program,
        &[path_str(&gdir)],
        &gdir,
        &[],
        &log,
    );
    wait_until(WAIT, "groups_probe has written ready", || {
        gdir.join("ready").exists() || !orig.is_alive()
    });
    assert!(
        orig.is_alive(),
        "groups_probe could not set its groups; log:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    (orig, gdir, log)
}

/// set-user-id-root process.
fn credentials_rule(env: &Env, extra_grants: &str) -> String {
    let u = env.user.uid;
    format!(
        "[[rule]]\nname = \"e2e-creds\"\nsigned_by = [\"this-host\"]\n\
         caller = [\"uid:{u}\"]\ntarget = {{ ruid = [{u}], euid = [0] }}\n\
         grant = [\"credentials\"{extra_grants}]\n"
    )
}

#[test]
fn a_process_in_its_own_user_namespace_is_not_dumped() {
    let env = Env::require();
    let _log = Syslog::start();
    let dir = TestDir::new(&env, "userns-dump");
    let (mut target, p) = start(&env, &dir, Who::User(&env.user), false, "u", &["userns"]);
    let pid = target.pid;
    // The attack's premise: in its own namespace it holds every capability.
    let st = procfs::status(pid).expect("status");
    assert_ne!(cap(&st, "CapEff"), 0, "root in its own user namespace");
    let theirs = ns_link(&pid.to_string(), "user");
    assert_ne!(
        theirs,
        ns_link("self", "user"),
        "a user namespace of its own"
    );
    let ino = path_str(&theirs).trim_start_matches("user:").to_string();

    for extra in [&[][..], &["--leave-running"][..]] {
        let image = dir.work.join("u.ckpt");
        let pid_s = pid.to_string();
        let mut args = vec!["dump", "--pid", &pid_s, "-o", path_str(&image)];
        args.extend_from_slice(extra);
        let run = env.sign(&dir, &args);
        run.assert_code(exit::DUMP_FAILED, "dump of a process in a user namespace");
        assert!(
            run.stderr.contains("another user namespace") && run.stderr.contains(&ino),
            "the refusal names the user namespace {ino}\n{run}"
        );
        assert_eq!(run.stderr.trim_end().lines().count(), 1, "one line\n{run}");
        assert!(!image.exists(), "no image is written\n{run}");
        let left: Vec<String> = TestDir::list(&dir.work)
            .into_iter()
            .filter(|n| n.contains("ckpt"))
            .collect();
        assert!(left.is_empty(), "no partial file: {left:?}\n{run}");
        target.assert_untouched("a refused dump leaves the target running");
        let n = p.counts().last().unwrap().0;
        p.wait_count(pid, n + 3);
    }
}

#[test]
fn a_process_in_another_pid_namespace_is_not_dumped() {
    let env = Env::require();
    let _log = Syslog::start();
    let dir = TestDir::new(&env, "pidns-dump");
    let (mut parent, _p) = start(&env, &dir, Who::Root, false, "p", &["pidns"]);
    let pp = parent.pid;
    let children = fs::read_to_string(format!("/proc/{pp}/task/{pp}/children")).expect("children");
    let child: i32 = children
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("the probe's child in its pid namespace: {children:?}"));
    let start_time = procfs::stat(child).expect("child stat").start_time;
    parent.also_kill.push((child, start_time));
    let theirs = ns_link(&child.to_string(), "pid");
    assert_ne!(theirs, ns_link("self", "pid"), "a pid namespace of its own");
    let ino = path_str(&theirs).trim_start_matches("pid:").to_string();

    let image = dir.root.join("p.ckpt");
    let child_s = child.to_string();
    let run = env.sign_as(
        Who::Root,
        &dir,
        &["dump", "--pid", &child_s, "-o", path_str(&image)],
    );
    run.assert_code(exit::DUMP_FAILED, "dump of a process in a pid namespace");
    assert!(
        run.stderr.contains("another pid namespace") && run.stderr.contains(&ino),
        "the refusal names the pid namespace {ino}\n{run}"
    );
    assert!(!image.exists(), "no image is written\n{run}");
    let mut child_proc = Proc::adopt(child, "probe in its pid namespace").expect("child runs");
    child_proc.assert_untouched("a refused dump leaves the target running");
}

#[test]
fn credentials_without_capabilities_gain_none_by_exec() {
    let env = Env::require();
    let _log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "creds-noroot");
    let u = u64::from(env.user.uid);
    let (mut original, p) = start(&env, &dir, Who::User(&env.user), true, "s", &[]);
    let orig = procfs::status(original.pid).expect("status");
    assert_eq!(status_ids(&orig, "Uid"), vec![u, 0, 0, 0], "passwd-style");
    assert_ne!(
        cap(&orig, "CapPrm"),
        0,
        "set-user-id root holds capabilities"
    );
    let (_run, image) = dump_as_root(&env, &dir, original.pid, "s", &[]);
    original.wait_gone("the dump kills the target");

    guard.policy(&credentials_rule(&env, ""));
    let run = env.verify(&dir, &["restore", path_str(&image)]);
    run.assert_code(exit::OK, "restore with credentials granted");
    let r = restored(&run);
    let st = procfs::status(r.pid).expect("status of the restored process");
    assert_eq!(status_ids(&st, "Uid"), vec![u, 0, 0, 0], "{run}");
    for k in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(
            cap(&st, k),
            0,
            "{k}: no capability without the grant\n{run}"
        );
    }
    p.wait_count(r.pid, 3);

    // The restored process execs a program: euid 0 must not bring the
    // capabilities back (on a plain euid-0 process exec gives them all).
    let after = p.exec_status(r.pid);
    assert_eq!(
        status_ids(&after, "Uid")[1],
        0,
        "the exec'ed program still has euid 0"
    );
    for k in ["CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(
            cap(&after, k),
            0,
            "{k} after exec: credentials without capabilities must not gain any\n{after:?}"
        );
    }
}

#[test]
fn no_new_privs_is_restored_in_every_mode() {
    let env = Env::require();
    let _log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "nnp");
    let u = u64::from(env.user.uid);

    // As the caller (no policy): the user's own process, dumped by the user.
    let (original, p) = start(&env, &dir, Who::User(&env.user), false, "n", &["nnp"]);
    let st = procfs::status(original.pid).expect("status");
    assert_eq!(st.get("NoNewPrivs").map(String::as_str), Some("1"));
    let image = dir.work.join("n.ckpt");
    env.dump_ok(&dir, original.pid, &image, &[]);
    let (run, r) = env.restore_ok(&dir, &image, None);
    let st = procfs::status(r.pid).expect("status of the restored process");
    assert_eq!(
        st.get("NoNewPrivs").map(String::as_str),
        Some("1"),
        "restored as the caller\n{run}"
    );
    p.wait_count(r.pid, 3);
    drop(r);

    // Root-built: the passwd-style process with credentials granted.
    let (original, s) = start(&env, &dir, Who::User(&env.user), true, "s", &["nnp"]);
    let (_run, image) = dump_as_root(&env, &dir, original.pid, "s", &[]);
    guard.policy(&credentials_rule(&env, ""));
    let run = env.verify(&dir, &["restore", path_str(&image)]);
    run.assert_code(exit::OK, "restore with credentials granted");
    let r = restored(&run);
    let st = procfs::status(r.pid).expect("status of the restored process");
    assert_eq!(status_ids(&st, "Uid"), vec![u, 0, 0, 0], "{run}");
    assert_eq!(
        st.get("NoNewPrivs").map(String::as_str),
        Some("1"),
        "restored by a root-built stub\n{run}"
    );
    s.wait_count(r.pid, 3);
}

#[test]
fn root_restoring_with_credentials_and_same_pid_is_not_an_escalation() {
    let env = Env::require();
    let _log = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "root-same-pid");
    let u = env.user.uid;
    let c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let p1 = c.proc.pid;
    let orig = procfs::status(p1).expect("status");
    let groups = orig.get("Groups").cloned().expect("Groups");
    assert!(
        !groups.is_empty(),
        "the user's process has supplementary groups"
    );
    let image = dir.work.join("c.ckpt");
    env.dump_ok(&dir, p1, &image, &[]);
    let mut c = c;
    c.proc.wait_gone("the dump kills the target");
    let n = c.lines().last().unwrap().0;

    guard.policy(&format!(
        "[[rule]]\nname = \"e2e-root\"\nsigned_by = [\"this-host\"]\n\
         caller = [\"uid:0\"]\ntarget = {{ uid = [{u}] }}\n\
         grant = [\"credentials\", \"same-pid\"]\n"
    ));
    let run = env.verify_as(Who::Root, &dir, &["restore", path_str(&image)]);
    run.assert_code(exit::OK, "root's restore with credentials and same-pid");
    let r = restored(&run);
    assert_eq!(r.pid, p1, "the original pid\n{run}");
    let st = procfs::status(r.pid).expect("status of the restored process");
    assert_eq!(status_ids(&st, "Uid"), vec![u64::from(u); 4], "{run}");
    assert_eq!(st.get("Groups"), Some(&groups), "the saved groups\n{run}");
    assert_eq!(cap(&st, "CapEff"), 0, "no capability was granted\n{run}");
    c.wait_for(p1, n + 5);
    c.assert_continuous(&[p1]);
    let mut r = r;
    assert!(r.is_alive());
    let explain = env.verify_as(Who::Root, &dir, &["explain", path_str(&image), "--json"]);
    let v: serde_json::Value = serde_json::from_str(explain.stdout.trim())
        .unwrap_or_else(|e| panic!("explain --json ({e})\n{explain}"));
    assert_eq!(
        v["restore"]["privileged"], false,
        "root already holds every id it restored\n{explain}"
    );
}

/// Root, with no policy at all, restores a root process that set its own
/// supplementary groups: the groups come back (root could give them to any
/// process it starts), with a notice naming them. The workload checks its
/// groups itself.
#[test]
fn root_restoring_its_own_process_keeps_its_supplementary_groups() {
    let env = Env::require();
    let guard = PolicyGuard::lock(&env);
    guard.policy("");
    let dir = TestDir::new(&env, "root-groups");
    let (mut orig, gdir, log) = start_root_groups_probe(&env, &dir);
    let st = procfs::status(orig.pid).expect("status");
    assert_eq!(
        st.get("Groups").map(String::as_str),
        Some("0 4242 4243"),
        "the probe set its groups"
    );
    // dump_as_root leaves root's own image in dir.root (and a copy for
    // the user, unused here).
    let (_dump, _user_copy) = dump_as_root(&env, &dir, orig.pid, "g", &[]);
    orig.wait_gone("the dump kills the target");

    let image = dir.root.join("g.ckpt");
    let run = env.verify_as(Who::Root, &dir, &["restore", path_str(&image)]);
    run.assert_code(exit::OK, "root's restore of its own process");
    assert!(
        run.stderr
            .contains("keeping the image's supplementary groups [0, 4242, 4243]"),
        "the notice names the kept groups\n{run}"
    );
    let mut r = restored(&run);
    let st = procfs::status(r.pid).expect("status of the restored process");
    assert_eq!(status_ids(&st, "Uid"), vec![0; 4], "{run}");
    signal(r.pid, nix::sys::signal::Signal::SIGUSR1);
    let result = ckpt_tests::workload_result(&mut r, &gdir.join("result"), &log, "groups_probe");
    assert_eq!(result, "OK\n", "the restored probe's own check\n{run}");
}

#[test]
fn root_restoring_its_own_process_keeps_its_pid_when_it_is_free() {
    let env = Env::require();
    let guard = PolicyGuard::lock(&env);
    guard.policy("");
    let dir = TestDir::new(&env, "root-pid");
    let (mut orig, gdir, log) = start_root_groups_probe(&env, &dir);
    let (_dump, _user_copy) = dump_as_root(&env, &dir, orig.pid, "g", &["--leave-running"]);
    assert!(orig.is_alive(), "--leave-running leaves it running");
    let image = dir.root.join("g.ckpt");

    // The original still runs: its pid is taken, so a new one, and the
    // notice names the pid in use.
    let run = env.verify_as(Who::Root, &dir, &["restore", path_str(&image)]);
    run.assert_code(exit::OK, "root's restore while the original runs");
    let copy = restored(&run);
    assert_ne!(copy.pid, orig.pid, "{run}");
    assert!(
        run.stderr.contains(&format!(
            "pid {} is in use: every process gets a new pid",
            orig.pid
        )),
        "the notice names the pid in use\n{run}"
    );
    drop(copy);
    let orig_pid = orig.pid;
    signal(orig_pid, nix::sys::signal::Signal::SIGKILL);
    orig.wait_gone("the original is killed");

    // Free now: root gets the image's pid back without any grant.
    let run = env.verify_as(Who::Root, &dir, &["restore", path_str(&image)]);
    run.assert_code(exit::OK, "root's restore of its own process");
    let mut r = restored(&run);
    assert_eq!(r.pid, orig_pid, "root keeps its own pid\n{run}");
    assert!(
        run.stderr.contains("keeping the image's pids"),
        "the notice says so\n{run}"
    );
    assert!(!run.stderr.contains("same-pid not granted"), "{run}");
    signal(r.pid, nix::sys::signal::Signal::SIGUSR1);
    let result = ckpt_tests::workload_result(&mut r, &gdir.join("result"), &log, "groups_probe");
    assert_eq!(result, "OK\n", "the restored probe's own check\n{run}");
}
