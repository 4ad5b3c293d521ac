//! The counter workload through dump → verify → restore, as the test user.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use ckpt_tests::{exit, procfs, status_ids, Counter, Env, TestDir, Who};

#[test]
fn counter_continues_where_it_stopped_after_restore() {
    let env = Env::require();
    let dir = TestDir::new(&env, "counter");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let p1 = c.proc.pid;
    let image = dir.work.join("c.ckpt");

    env.dump_ok(&dir, p1, &image, &[]);
    c.proc
        .wait_gone("dump without --leave-running kills the target once the image is on disk");
    let n_dump = c.lines().last().expect("counted before the dump").0;

    env.verify(&dir, &["verify", image.to_str().unwrap()])
        .assert_code(exit::OK, "verify of a fresh signed image");
    assert_eq!(
        c.lines().last().map(|l| l.0),
        Some(n_dump),
        "nothing may write the count between dump and restore"
    );

    let pidfile = dir.work.join("c.pid");
    let (_run, restored) = env.restore_ok(&dir, &image, Some(&pidfile));
    assert_ne!(restored.pid, p1, "the restored process gets a new pid");
    c.wait_for(restored.pid, n_dump + 20);
    let last = c.assert_continuous(&[p1, restored.pid]);
    assert_eq!(last[0], n_dump);
    assert!(
        last[1] >= n_dump + 20,
        "restored counter advances: {last:?}"
    );
}

#[test]
fn restored_process_has_the_callers_credentials_and_no_capabilities() {
    let env = Env::require();
    let dir = TestDir::new(&env, "creds");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let image = dir.work.join("c.ckpt");
    env.dump_ok(&dir, c.proc.pid, &image, &[]);
    c.proc.wait_gone("dump kills the target");
    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    c.wait_for(restored.pid, c.lines().last().unwrap().0 + 1);
    assert!(restored.is_alive());

    let st = procfs::status(restored.pid).expect("status of the restored process");
    let (u, g) = (u64::from(env.user.uid), u64::from(env.user.gid));
    assert_eq!(
        status_ids(&st, "Uid"),
        vec![u; 4],
        "Uid (real, effective, saved, fs)"
    );
    assert_eq!(
        status_ids(&st, "Gid"),
        vec![g; 4],
        "Gid (real, effective, saved, fs)"
    );
    let mut groups = status_ids(&st, "Groups");
    groups.sort_unstable();
    let want: Vec<u64> = env.user.groups.iter().map(|&g| u64::from(g)).collect();
    assert_eq!(groups, want, "supplementary groups are the caller's");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(
            status_ids(&st, cap),
            vec![0],
            "{cap} of the restored process"
        );
    }
    let stat = procfs::stat(restored.pid).expect("stat");
    assert_ne!(stat.state, 'T', "restored process runs, it is not stopped");
    assert_ne!(stat.state, 't', "restored process is not left traced");
    assert_eq!(
        st.get("TracerPid").map(String::as_str),
        Some("0"),
        "restored process is detached"
    );
}

#[test]
fn restored_counter_can_be_checkpointed_again() {
    let env = Env::require();
    let dir = TestDir::new(&env, "twice");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let p1 = c.proc.pid;
    let first = dir.work.join("first.ckpt");
    env.dump_ok(&dir, p1, &first, &[]);
    c.proc.wait_gone("dump kills the target");
    let (_r, mut p2) = env.restore_ok(&dir, &first, None);
    let n1 = c.lines().last().unwrap().0;
    c.wait_for(p2.pid, n1 + 10);

    let second = dir.work.join("second.ckpt");
    env.dump_ok(&dir, p2.pid, &second, &[]);
    p2.wait_gone("dump kills the restored target");
    let (_r, p3) = env.restore_ok(&dir, &second, None);
    let n2 = c.lines().last().unwrap().0;
    c.wait_for(p3.pid, n2 + 10);
    c.assert_continuous(&[p1, p2.pid, p3.pid]);
}
