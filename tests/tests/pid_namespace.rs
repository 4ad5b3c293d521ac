//! `ckpt-verify restore --pid-namespace`, through the installed helpers, by
//! the unprivileged test user without any grant:
//!
//! * a tree (the `tree` workload in its same-pid mode, which checks that
//!   every member has its saved pid and that its children answer to the
//!   pids it saved) comes back with every saved pid inside a new pid
//!   namespace; from outside: each member's innermost pid is its saved
//!   one, the user namespace maps only the user's own uid and gid, no
//!   member holds a capability, `/proc` there is that namespace's, and the
//!   namespace's init goes away once the tree is gone;
//! * a set-user-id-root program run inside the namespace runs with the
//!   user's ids (outside, the same file gives euid 0);
//! * the namespaces are the user's own: the user can enter them with
//!   nsenter(1), which needs CAP_SYS_ADMIN in the user namespace, held from
//!   outside only by its owner;
//! * a tree restored that way is checkpointed again from inside its
//!   namespaces (the helper runs there without privilege: unsigned) and
//!   restored into a new namespace, with the same pid inside;
//! * refused, with nothing left behind: root asking for it.
//!
//! (A machine where the administrator disabled user namespaces refuses
//! the restore too, since the helper makes them as the user; that is not
//! tested here: root lacks CAP_SYS_RESOURCE on this machine and cannot
//! change `user.max_user_namespaces`.)
//!
//! The tests of this file run one at a time and hold the configuration
//! lock (the default policy, no grant).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ckpt_tests::policy::PolicyGuard;
use ckpt_tests::{
    exit, path_str, processes_mentioning, procfs, wait_ready, wait_until, workload_result, Env,
    Proc, TestDir, TreeGuard, Who, WAIT,
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn workdir(env: &Env, dir: &TestDir, name: &str) -> PathBuf {
    let wdir = dir.work.join(name);
    fs::create_dir(&wdir).unwrap();
    std::os::unix::fs::chown(&wdir, Some(env.user.uid), Some(env.user.gid)).unwrap();
    wdir
}

/// A field of /proc/PID/status, its value trimmed.
fn status(pid: i32, field: &str) -> Option<String> {
    procfs::status(pid)?.remove(field)
}

/// The pid as the process sees it (the innermost `NSpid`).
fn ns_pid(pid: i32) -> Option<i32> {
    status(pid, "NSpid")?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// The namespace's init, from the restore's notice ("its init (pid 1
/// there) is pid K outside it").
fn keeper(stderr: &str) -> i32 {
    let tail = stderr
        .split("its init (pid 1 there) is pid ")
        .nth(1)
        .unwrap_or_else(|| panic!("no notice names the namespace's init:\n{stderr}"));
    tail.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no pid in the notice:\n{stderr}"))
}

#[test]
fn a_tree_keeps_every_pid_in_a_namespace_of_its_own() {
    let _serial = serial();
    let env = Env::require();
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "pidns-tree");
    let program = dir.compile(&env, "tree");
    let wdir = workdir(&env, &dir, "t");
    let mut orig = Proc::spawn(
        &env,
        Who::User(&env.user),
        &program,
        &[path_str(&wdir), "same-pid"],
        &wdir,
        &[],
        &dir.work.join("t.log"),
    );
    wait_ready(&wdir, "tree");
    let saved: BTreeMap<String, i32> = procfs::descendants(orig.pid)
        .into_iter()
        .map(|p| (procfs::comm(p), p))
        .collect();
    assert_eq!(saved.len(), 6, "the tree as started: {saved:?}");
    let image = dir.work.join("t.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &["--tree"]);
    orig.wait_gone("dump kills the root");

    let pidfile = dir.work.join("t.pid");
    let (run, restored) = env.restore_with(&dir, &image, Some(&pidfile), &["--pid-namespace"]);
    run.assert_code(exit::OK, "restore --pid-namespace of the user's tree");
    let mut restored = restored.unwrap();
    let _kill = TreeGuard::new(restored.pid);
    assert!(
        run.stderr.contains("restored in a new pid namespace"),
        "the restore says where the processes are\n{run}"
    );
    let init = keeper(&run.stderr);

    let after = procfs::descendants(restored.pid);
    let inside: BTreeMap<String, i32> = after
        .iter()
        .map(|&p| (procfs::comm(p), ns_pid(p).unwrap_or(0)))
        .collect();
    assert_eq!(
        inside, saved,
        "every member has its saved pid in the namespace\n{run}"
    );
    assert_ne!(
        restored.pid, orig.pid,
        "outside the namespace the root has a pid of the machine's own namespace"
    );
    // The namespaces are the user's own: the user may enter them (joining
    // a user namespace takes CAP_SYS_ADMIN there, which only its owner
    // holds from outside), and sees the saved root's pid in there.
    let entered = env
        .command(Who::User(&env.user), Path::new("/usr/bin/nsenter"))
        .args([
            "-t",
            &restored.pid.to_string(),
            "-U",
            "-m",
            "-p",
            "--preserve-credentials",
        ])
        .args(["/bin/cat", &format!("/proc/{}/comm", orig.pid)])
        .output()
        .unwrap();
    assert!(
        entered.status.success(),
        "the user enters the namespaces: {}",
        String::from_utf8_lossy(&entered.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&entered.stdout).trim(),
        procfs::comm(restored.pid)
    );
    let uid = env.user.uid;
    for &p in &after {
        assert_eq!(
            status(p, "CapEff").as_deref(),
            Some("0000000000000000"),
            "pid {p} holds no capability"
        );
        let ids = status(p, "Uid").unwrap_or_default();
        assert!(
            ids.split_whitespace().all(|u| u == uid.to_string()),
            "pid {p} has the user's ids: {ids}"
        );
    }
    let map = |f: &str| {
        fs::read_to_string(format!("/proc/{}/{f}", restored.pid))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        map("uid_map"),
        format!("{uid} {uid} 1"),
        "only the user's uid is mapped"
    );
    let gid = env.user.gid;
    assert_eq!(
        map("gid_map"),
        format!("{gid} {gid} 1"),
        "only the user's gid is mapped"
    );
    assert_eq!(
        fs::read_to_string(format!("/proc/{}/setgroups", restored.pid))
            .unwrap()
            .trim(),
        "deny"
    );
    // /proc there is the new namespace's: it lists the saved pids.
    let their_proc = PathBuf::from(format!("/proc/{}/root/proc", restored.pid));
    for (name, pid) in &saved {
        assert!(
            their_proc.join(pid.to_string()).join("status").exists(),
            "{name}'s saved pid {pid} is in the namespace's /proc"
        );
    }
    assert_eq!(
        ns_pid(init),
        Some(1),
        "the namespace's init is pid 1 there\n{run}"
    );
    assert_eq!(status(init, "CapEff").as_deref(), Some("0000000000000000"));

    let result = workload_result_after_go(&mut restored, &wdir, &dir);
    assert_eq!(
        result, "OK\n",
        "the tree in its namespace reported: {result}"
    );
    drop(_kill);
    wait_until(
        WAIT + Duration::from_secs(11),
        "the namespace's init exits once the tree is gone",
        || {
            !Path::new(&format!("/proc/{init}")).exists()
                || status(init, "State").is_some_and(|s| s.starts_with('Z'))
        },
    );
}

fn workload_result_after_go(restored: &mut Proc, wdir: &Path, dir: &TestDir) -> String {
    fs::write(wdir.join("go"), b"go\n").unwrap();
    workload_result(
        restored,
        &wdir.join("result"),
        &dir.work.join("t.log"),
        "tree",
    )
}

#[test]
fn a_set_user_id_program_in_the_namespace_gains_nothing() {
    let _serial = serial();
    let env = Env::require();
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "pidns-suid");
    // A root-owned set-user-id copy of id(1), in a root-owned directory.
    let bin = dir.work.join("suid-bin");
    fs::create_dir(&bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let id = bin.join("id");
    fs::copy("/usr/bin/id", &id).expect("/usr/bin/id is needed for this test");
    std::os::unix::fs::chown(&id, Some(0), Some(0)).unwrap();
    fs::set_permissions(&id, fs::Permissions::from_mode(0o4755)).unwrap();
    let wdir = workdir(&env, &dir, "s");
    let control = env
        .command(Who::User(&env.user), &id)
        .arg("-u")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&control.stdout).trim(),
        "0",
        "outside, the set-user-id copy runs with euid 0"
    );

    let script = format!(
        "while [ ! -e go ]; do sleep 0.1; done; {0} -u > euid.tmp; mv euid.tmp euid",
        path_str(&id)
    );
    // The file /proc/PID/exe names (Proc::spawn waits for it).
    let sh = fs::canonicalize("/bin/sh").expect("/bin/sh is needed for this test");
    let mut orig = Proc::spawn(
        &env,
        Who::User(&env.user),
        &sh,
        &["-c", &script],
        &wdir,
        &[],
        &dir.work.join("s.log"),
    );
    wait_until(
        WAIT,
        "the script waits in its loop (with a sleep child)",
        || procfs::descendants(orig.pid).len() >= 2,
    );
    let image = dir.work.join("s.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &["--tree"]);
    orig.wait_gone("dump kills the script");
    let (run, restored) = env.restore_with(&dir, &image, None, &["--pid-namespace"]);
    run.assert_code(exit::OK, "restore --pid-namespace of the script");
    let restored = restored.unwrap();
    let _kill = TreeGuard::new(restored.pid);
    fs::write(wdir.join("go"), b"").unwrap();
    let euid = wdir.join("euid");
    wait_until(
        WAIT,
        "the restored script ran the set-user-id program",
        || euid.exists(),
    );
    assert_eq!(
        fs::read_to_string(&euid).unwrap().trim(),
        env.user.uid.to_string(),
        "in the namespace the set-user-id-root program runs as the user\n{run}"
    );
}

#[test]
fn refused_for_root() {
    let _serial = serial();
    let env = Env::require();
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "pidns-refused");
    let program = dir.compile(&env, "counter");
    let wdir = workdir(&env, &dir, "c");
    let out = wdir.join("count");
    let mut orig = Proc::spawn(
        &env,
        Who::User(&env.user),
        &program,
        &[path_str(&out)],
        &wdir,
        &[],
        &dir.work.join("c.log"),
    );
    wait_until(WAIT, "the counter counts", || out.exists());
    let image = dir.work.join("c.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the counter");
    let leftovers = || processes_mentioning(path_str(&program));

    let run = env.verify_as(
        Who::Root,
        &dir,
        &["restore", path_str(&image), "--pid-namespace"],
    );
    run.assert_code(exit::USAGE, "root asking for --pid-namespace");
    assert!(
        run.stderr
            .contains("--pid-namespace is for unprivileged callers"),
        "{run}"
    );
    assert!(leftovers().is_empty(), "nothing restored\n{run}");

    // The user's own restore of the same image works; --json says where
    // the tree is.
    let run = env.verify(
        &dir,
        &["restore", path_str(&image), "--pid-namespace", "--json"],
    );
    run.assert_code(exit::OK, "restore --pid-namespace --json by the user");
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("restore --json prints one JSON object: {e}\n{run}"));
    let pid = i32::try_from(v["pid"].as_i64().expect("pid")).unwrap();
    let _kill = TreeGuard::new(pid);
    assert_eq!(ns_pid(pid), Some(orig.pid), "{run}");
    assert_eq!(
        v["pid_namespace"]["pid_inside"].as_i64(),
        Some(i64::from(orig.pid)),
        "{run}"
    );
    let init = i32::try_from(v["pid_namespace"]["init_pid"].as_i64().expect("init_pid")).unwrap();
    assert_eq!(
        ns_pid(init),
        Some(1),
        "init_pid names the namespace's init\n{run}"
    );
    assert_eq!(v["saved_pid"].as_i64(), Some(i64::from(orig.pid)));

    // Checkpointed again from inside its namespaces (the helper runs there
    // without privilege: an unsigned image) and restored into a new
    // namespace: the same pid, and the count goes on.
    let count = |p: &Path| {
        fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .last()
            .and_then(|l| l.split_whitespace().next().map(str::to_string))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let again = dir.work.join("again.ckpt");
    let inside = env
        .command(Who::User(&env.user), Path::new("/usr/bin/nsenter"))
        .args([
            "-t",
            &pid.to_string(),
            "-U",
            "-m",
            "-p",
            "--preserve-credentials",
        ])
        .arg(env.bin.join("ckpt-sign"))
        .args(["dump", "--unsigned", "--pid", &orig.pid.to_string(), "-o"])
        .arg(&again)
        .current_dir(&dir.work)
        .output()
        .unwrap();
    assert!(
        inside.status.success(),
        "dump from inside the namespaces: {}",
        String::from_utf8_lossy(&inside.stderr)
    );
    wait_until(WAIT, "the dumped process is gone", || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || status(pid, "State").is_some_and(|s| s.starts_with('Z'))
    });
    let before = count(&out);
    let (run, restored) = env.restore_with(&dir, &again, None, &["--pid-namespace"]);
    run.assert_code(
        exit::OK,
        "restore --pid-namespace of the image dumped inside",
    );
    let restored = restored.unwrap();
    let _kill_again = TreeGuard::new(restored.pid);
    assert_eq!(ns_pid(restored.pid), Some(orig.pid), "{run}");
    wait_until(WAIT, "the count goes on after the second restore", || {
        count(&out) > before
    });
    let last = fs::read_to_string(&out).unwrap_or_default();
    let getpid = last
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.parse::<i32>().ok());
    assert_eq!(
        getpid,
        Some(orig.pid),
        "getpid() in the namespace is the saved pid"
    );
}
