//! Access: dumping a process the caller may not ptrace-attach to (another
//! user's, root's, a setuid program's, a process that made itself
//! non-dumpable) is refused with exit 3 and leaves the target
//! running, not stopped, not traced, still doing its work, and writes no image.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ckpt_tests::{
    exit, path_str, procfs, status_ids, wait_until, Counter, Env, Proc, TestDir, Who, WAIT,
};

/// Dumps `target` as the test user and checks the refusal and its absence of effect.
fn assert_dump_denied(env: &Env, dir: &TestDir, target: &mut Proc, what: &str) {
    let before = TestDir::list(&dir.work);
    let image = dir.work.join("denied.ckpt");
    let run = env.sign(
        dir,
        &[
            "dump",
            "--pid",
            &target.pid.to_string(),
            "-o",
            path_str(&image),
        ],
    );
    run.assert_code(exit::ACCESS_DENIED, &format!("dump of {what}"));
    assert!(
        !run.stderr.trim().is_empty(),
        "access denied without a message\n{run}"
    );
    assert!(!image.exists(), "dump of {what} left an image");
    assert_eq!(
        TestDir::list(&dir.work),
        before,
        "dump of {what} left files in the output directory"
    );
    target.assert_untouched(&format!("after a refused dump of {what}"));
}

#[test]
fn dump_of_another_users_process_is_denied() {
    let env = Env::require();
    let dir = TestDir::new(&env, "foreign-user");
    let odir = dir.dir("other", 0o755, Some(&env.other));
    let mut c = Counter::start(&env, &dir, Who::User(&env.other), &odir, "other");
    assert_dump_denied(&env, &dir, &mut c.proc, "another user's process");
    let n = c.lines().last().unwrap().0;
    c.wait_for(c.proc.pid, n + 5);
    c.assert_continuous(&[c.proc.pid]);
}

#[test]
fn dump_of_a_root_process_is_denied() {
    let env = Env::require();
    let dir = TestDir::new(&env, "foreign-root");
    let rdir = dir.dir("rootwork", 0o755, None);
    let mut c = Counter::start(&env, &dir, Who::Root, &rdir, "root");
    assert_dump_denied(&env, &dir, &mut c.proc, "a root process");
    let n = c.lines().last().unwrap().0;
    c.wait_for(c.proc.pid, n + 5);
    c.assert_continuous(&[c.proc.pid]);
}

fn setuid_sleeper(env: &Env, dir: &TestDir, drop_privs: bool) -> Proc {
    let program = dir.compile(env, "setuid_sleeper");
    // compile() leaves it root:root; now make it setuid root.
    fs::set_permissions(&program, fs::Permissions::from_mode(0o4755)).unwrap();
    let ready = dir
        .work
        .join(if drop_privs { "ready-drop" } else { "ready" });
    let mut args = vec![path_str(&ready)];
    if drop_privs {
        args.push("drop");
    }
    let proc = Proc::spawn(
        env,
        Who::User(&env.user),
        &program,
        &args,
        &dir.work,
        &[],
        &dir.work.join("sleeper.log"),
    );
    wait_until(WAIT, "the setuid sleeper is ready", || ready.exists());
    let st = procfs::status(proc.pid).expect("status");
    let uids = status_ids(&st, "Uid");
    let u = u64::from(env.user.uid);
    let want = if drop_privs {
        vec![u; 4]
    } else {
        vec![u, 0, 0, 0]
    };
    assert_eq!(
        uids,
        want,
        "setuid_sleeper credentials (is {} on a nosuid mount?)",
        dir.bin.display()
    );
    proc
}

#[test]
fn dump_of_a_setuid_process_is_denied() {
    let env = Env::require();
    let dir = TestDir::new(&env, "setuid-target");
    let mut p = setuid_sleeper(&env, &dir, false);
    assert_dump_denied(&env, &dir, &mut p, "a running setuid-root program");
}

#[test]
fn dump_of_a_setuid_process_that_dropped_its_privileges_is_denied() {
    // Same uids as the caller now, but the kernel marks it non-dumpable:
    // only the kernel's own check (not a uid comparison) gets this right.
    let env = Env::require();
    let dir = TestDir::new(&env, "setuid-dropped");
    let mut p = setuid_sleeper(&env, &dir, true);
    assert_dump_denied(
        &env,
        &dir,
        &mut p,
        "a setuid program that dropped to the caller's uid",
    );
}

#[test]
fn dump_of_a_same_user_process_that_made_itself_non_dumpable_is_denied() {
    // PR_SET_DUMPABLE 0 in a program the caller started themself: same
    // uids, gids and groups as the caller, no set-id bit. The kernel refuses
    // the caller ptrace-attach (and process_vm_readv), so the dump must be
    // refused too.
    let env = Env::require();
    let dir = TestDir::new(&env, "undumpable");
    let program = dir.compile(&env, "undumpable");
    let ready = dir.work.join("ready");
    let mut p = Proc::spawn(
        &env,
        Who::User(&env.user),
        &program,
        &[path_str(&ready)],
        &dir.work,
        &[],
        &dir.work.join("undumpable.log"),
    );
    wait_until(WAIT, "the non-dumpable sleeper is ready", || ready.exists());
    let st = procfs::status(p.pid).expect("status");
    let u = u64::from(env.user.uid);
    assert_eq!(status_ids(&st, "Uid"), vec![u; 4], "the target's uids");
    assert_dump_denied(
        &env,
        &dir,
        &mut p,
        "a same-user process that is non-dumpable",
    );
}

#[test]
fn dump_of_a_pid_that_does_not_exist_fails_cleanly() {
    let env = Env::require();
    let dir = TestDir::new(&env, "no-such-pid");
    let pid_max: i32 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let image = dir.work.join("none.ckpt");
    let run = env.sign(
        &dir,
        &[
            "dump",
            "--pid",
            &(pid_max + 1).to_string(),
            "-o",
            path_str(&image),
        ],
    );
    run.assert_refused("dump of a pid that cannot exist");
    run.assert_code(
        exit::DUMP_FAILED,
        "dump of a pid that cannot exist (SECURITY.md §6)",
    );
    assert!(!Path::new(&image).exists());
    assert!(
        TestDir::list(&dir.work).is_empty(),
        "files left in the output directory"
    );
}
