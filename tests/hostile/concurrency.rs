//! Concurrency: three users (`CKPT_TEST_USER`, `CKPT_TEST_OTHER`,
//! `CKPT_TEST_THIRD`) dump and restore 50 counters at once. Every dump and
//! restore succeeds; each image is owned by the user who made it; each
//! restored process runs with its user's credentials only and continues
//! its own count (not another counter's); no user can read or restore
//! another's image; nothing is left behind.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};

use ckpt_tests::{counter_lines, exit, path_str, Account, Counter, Proc, TestDir, Who};

use crate::{caller_creds_only, outcome, setup, strays, Cases};

fn account(name: &str) -> Account {
    let u = nix::unistd::User::from_name(name)
        .expect("user lookup")
        .unwrap_or_else(|| panic!("user {name} does not exist (scripts/test.sh creates it)"));
    let cname = CString::new(name).unwrap();
    let mut groups: Vec<u32> = nix::unistd::getgrouplist(&cname, u.gid)
        .unwrap()
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    groups.sort_unstable();
    groups.dedup();
    Account {
        name: name.to_string(),
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        groups,
    }
}

const N: usize = 50;

/// One counter's dump and restore: (old pid, new pid, the restored
/// process, the image), or what went wrong.
type Outcome = Result<(i32, i32, Proc, PathBuf), String>;

#[test]
fn fifty_dumps_and_restores_by_three_users() {
    let (_g, env) = setup();
    let third = account(&std::env::var("CKPT_TEST_THIRD").unwrap_or_else(|_| "ckpt-third".into()));
    let users = [env.user.clone(), env.other.clone(), third];
    assert!(
        users[2].uid != users[0].uid && users[2].uid != users[1].uid,
        "three distinct users"
    );
    let dir = Arc::new(TestDir::new(&env, "concurrency"));
    dir.compile(&env, "counter");
    let homes: Vec<PathBuf> = users
        .iter()
        .map(|u| dir.dir(&format!("home-{}", u.name), 0o700, Some(u)))
        .collect();
    let counters: Vec<(usize, Counter)> = (0..N)
        .map(|i| {
            let u = i % 3;
            (
                u,
                Counter::start(
                    &env,
                    &dir,
                    Who::User(&users[u]),
                    &homes[u],
                    &format!("n{i}"),
                ),
            )
        })
        .collect();
    let barrier = Arc::new(Barrier::new(N));
    let results: Vec<(usize, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = counters
            .iter()
            .enumerate()
            .map(|(i, (u, c))| {
                let (env, dir, users, homes, barrier) =
                    (&env, &dir, &users, &homes, Arc::clone(&barrier));
                let (u, pid) = (*u, c.proc.pid);
                s.spawn(move || {
                    let who = Who::User(&users[u]);
                    let image = homes[u].join(format!("n{i}.ckpt"));
                    let pid_s = pid.to_string();
                    barrier.wait();
                    let r =
                        env.sign_as(who, dir, &["dump", "--pid", &pid_s, "-o", path_str(&image)]);
                    if let Some(e) = outcome(&r, exit::OK, None) {
                        return (
                            i,
                            Err(format!("dump of counter {i} (user {}): {e}", users[u].name)),
                        );
                    }
                    let r = env.verify_as(who, dir, &["restore", path_str(&image)]);
                    if let Some(e) = outcome(&r, exit::OK, None) {
                        return (
                            i,
                            Err(format!(
                                "restore of counter {i} (user {}): {e}",
                                users[u].name
                            )),
                        );
                    }
                    let Some(p) = r
                        .stdout
                        .trim()
                        .parse::<i32>()
                        .ok()
                        .and_then(|n| Proc::adopt(n, "restored counter"))
                    else {
                        return (
                            i,
                            Err(format!(
                                "restore of counter {i} printed no live pid: {:?}",
                                r.stdout
                            )),
                        );
                    };
                    (i, Ok((pid, p.pid, p, image)))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut cases = Cases::default();
    let name = "fifty-concurrent-dumps-and-restores";
    cases.start(name);
    let mut restored = Vec::new();
    for (i, res) in results {
        let (u, c) = &counters[i];
        match res {
            Err(e) => cases.fail(name, e),
            Ok((old, new, p, image)) => {
                let md = fs::metadata(&image).unwrap();
                if (md.uid(), md.gid(), md.mode() & 0o7777) != (users[*u].uid, users[*u].gid, 0o600)
                {
                    cases.fail(
                        name,
                        format!(
                            "image {} is {}:{} mode {:o}",
                            image.display(),
                            md.uid(),
                            md.gid(),
                            md.mode() & 0o7777
                        ),
                    );
                }
                cases.check(
                    name,
                    caller_creds_only(new, &users[*u]).map(|e| format!("counter {i}: {e}")),
                );
                let seen_old = counter_lines(&c.file).last().map(|l| l.0).unwrap_or(0);
                c.wait_for(new, seen_old + 3);
                c.assert_continuous(&[old, new]);
                restored.push((i, p, image));
            }
        }
    }
    // Each counter file was written by its own two pids only.
    for (i, (_, c)) in counters.iter().enumerate() {
        let pids: std::collections::BTreeSet<i32> = c.lines().iter().map(|l| l.1).collect();
        if pids.len() > 2 {
            cases.fail(
                name,
                format!("counter {i} was written by {pids:?}: a mixup"),
            );
        }
    }
    // No user reads or restores another's image.
    let name2 = "restore-of-another-users-image";
    cases.start(name2);
    for (i, _, image) in restored.iter().take(6) {
        let owner = counters[*i].0;
        let intruder = &users[(owner + 1) % 3];
        let r = env.verify_as(Who::User(intruder), &dir, &["restore", path_str(image)]);
        cases.check(
            name2,
            outcome(&r, exit::ACCESS_DENIED, None)
                .map(|e| format!("{} restoring counter {i}: {e}", intruder.name)),
        );
    }
    let live: Vec<i32> = restored.iter().map(|r| r.1.pid).collect();
    drop(restored);
    drop(counters);
    let _ = live;
    cases.check(name2, strays(&dir));
    cases.finish("concurrency");
}
