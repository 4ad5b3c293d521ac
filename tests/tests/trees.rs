//! Process trees (`dump --tree`), dumped and restored through the installed
//! helpers by the unprivileged test user.
//!
//! * The `tree` workload (a parent, two children, a grandchild, a zombie, a
//!   stopped child, a child leading its own process group, a pipe between
//!   two children, a shared file description, shared anonymous memory with
//!   a process-shared mutex and semaphores in it) checks itself after
//!   restore; the test checks from outside what only the outside sees (the
//!   shape of the tree, states, credentials, no tracer left, the new
//!   session), and with a `same-pid` grant that every pid is back.
//! * Real programs nobody here wrote carry on after restore: a shell
//!   pipeline, a python `multiprocessing.Pool`, `make -j2`, a tmux server.
//!   make waits for its jobs by pid, so its test uses a `same-pid` grant.
//! * What a tree may not hold: a set-id program (root's or another user's)
//!   among the descendants is refused at dump naming its pid, and the tree
//!   is left running untouched; a process with children dumped without
//!   `--tree` is refused naming the child; root's tree whose child had
//!   dropped capabilities is refused at restore rather than given the
//!   root's capabilities.
//!
//! Every test holds the configuration lock: one of them installs a
//! same-pid grant for the test user, which would change every other
//! restore made meanwhile.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ckpt_tests::image::{flipped, Layout};
use ckpt_tests::policy::PolicyGuard;
use ckpt_tests::syslog::Syslog;
use ckpt_tests::{
    exit, path_str, processes_mentioning, procfs, wait_ready, wait_until, workload_result,
    write_owned, Env, Proc, TestDir, TreeGuard, Who, WAIT,
};

fn workdir(env: &Env, dir: &TestDir, name: &str) -> PathBuf {
    let wdir = dir.work.join(name);
    fs::create_dir(&wdir).unwrap();
    std::os::unix::fs::chown(&wdir, Some(env.user.uid), Some(env.user.gid)).unwrap();
    wdir
}

/// One member of a live tree as seen from outside.
#[derive(Clone, Debug)]
struct Member {
    pid: i32,
    comm: String,
    stat: procfs::Stat,
}

/// `root` and every descendant, parents before children.
fn tree(root: i32) -> Vec<Member> {
    procfs::descendants(root)
        .into_iter()
        .filter_map(|pid| {
            Some(Member {
                pid,
                comm: procfs::comm(pid),
                stat: procfs::stat(pid)?,
            })
        })
        .collect()
}

/// The tree's structure by name, independent of pids: for each member
/// (named uniquely by the `tree` workload), its parent's name, whether it
/// leads its process group, the name of its group's leader, and its state
/// (zombie Z, stopped T, otherwise S); every member must be in the root's
/// session.
fn shape(members: &[Member]) -> BTreeMap<String, (String, String, char)> {
    let by_pid: BTreeMap<i32, &Member> = members.iter().map(|m| (m.pid, m)).collect();
    let root = &members[0];
    let name_of = |pid: i32| -> String {
        by_pid
            .get(&pid)
            .map_or_else(|| format!("outside({pid})"), |m| m.comm.clone())
    };
    for m in members {
        assert_eq!(
            m.stat.session, root.stat.session,
            "{} is in another session than the root: {members:#?}",
            m.comm
        );
    }
    members
        .iter()
        .map(|m| {
            let parent = if m.pid == root.pid {
                "-".to_string()
            } else {
                name_of(m.stat.ppid)
            };
            // Running and sleeping are one: which one is a matter of
            // the moment.
            let state = match m.stat.state {
                s @ ('Z' | 'T' | 't') => s,
                _ => 'S',
            };
            (m.comm.clone(), (parent, name_of(m.stat.pgrp), state))
        })
        .collect()
}

/// Every running member of the tree is the test user, with no capability,
/// and no longer traced.
fn assert_members_are_the_user(env: &Env, members: &[Member]) {
    for m in members {
        if m.stat.state == 'Z' {
            continue;
        }
        let st = procfs::status(m.pid).expect("status of a tree member");
        let uid = u64::from(env.user.uid);
        assert_eq!(
            ckpt_tests::status_ids(&st, "Uid"),
            vec![uid; 4],
            "{} ({})",
            m.comm,
            m.pid
        );
        assert_eq!(
            ckpt_tests::status_ids(&st, "Gid"),
            vec![u64::from(env.user.gid); 4],
            "{} ({})",
            m.comm,
            m.pid
        );
        assert_eq!(ckpt_tests::status_ids(&st, "CapEff"), vec![0], "{}", m.comm);
        assert_eq!(
            st.get("TracerPid").map(String::as_str),
            Some("0"),
            "{} ({}) is still traced",
            m.comm,
            m.pid
        );
    }
}

/// The `tree` workload as the test user (with `args`), once it is ready.
fn start_tree(env: &Env, dir: &TestDir, name: &str, args: &[&str]) -> (Proc, PathBuf) {
    let program = dir.compile(env, "tree");
    let wdir = workdir(env, dir, name);
    let mut all = vec![path_str(&wdir)];
    all.extend_from_slice(args);
    let proc = Proc::spawn(
        env,
        Who::User(&env.user),
        &program,
        &all,
        &wdir,
        &[],
        &dir.work.join(format!("{name}.log")),
    );
    wait_ready(&wdir, "tree");
    (proc, wdir)
}

/// Tells every member of the tree to check itself; the root's report.
fn ask(dir: &TestDir, proc: &mut Proc, wdir: &Path, name: &str) -> String {
    fs::write(wdir.join("go"), b"go\n").unwrap();
    workload_result(
        proc,
        &wdir.join("result"),
        &dir.work.join(format!("{name}.log")),
        "tree",
    )
}

fn dump_tree(env: &Env, dir: &TestDir, pid: i32, image: &Path) -> ckpt_tests::Run {
    env.dump_ok(dir, pid, image, &["--tree"])
}

/// Waits until none of `pids` exists any more (the dump killed them and
/// their reaper, the harness or init, collected them).
fn wait_pids_gone(pids: &[i32], what: &str) {
    wait_until(WAIT, what, || {
        pids.iter()
            .all(|p| !Path::new(&format!("/proc/{p}")).exists())
    });
}

/// Grants `same-pid` to the test user for its own images signed by this
/// host (a granted restore must be audited: `syslog` must be listening).
fn grant_same_pid(env: &Env, guard: &PolicyGuard, _syslog: &Syslog) {
    guard.policy(&format!(
        "[[rule]]\nname = \"e2e-trees-same-pid\"\nsigned_by = [\"this-host\"]\n\
         caller = [\"uid:{0}\"]\ntarget = {{ uid = [{0}] }}\n\
         grant = [\"same-pid\"]\n",
        env.user.uid
    ));
}

/// A same-pid restore of `image`, whose tree held `pids`: `None` when it
/// failed because an unrelated process took one of those pids meanwhile
/// (pid_max is small here and other tests start processes all the time;
/// the restore must then fail naming that pid: every pid or none), and
/// `attempt` allows another try.
fn restore_same_pid(
    env: &Env,
    dir: &TestDir,
    image: &Path,
    pids: &[i32],
    attempt: u32,
) -> Option<(ckpt_tests::Run, Proc)> {
    wait_pids_gone(pids, "every pid of the dumped tree is free");
    let (run, restored) = env.restore(dir, image, None);
    let taken_by_another = run.code == Some(exit::RESTORE_FAILED)
        && pids
            .iter()
            .any(|p| run.stderr.contains(&format!("pid {p} is in use")));
    if taken_by_another && attempt < 3 {
        eprintln!("attempt {attempt}: a pid was taken meanwhile, again\n{run}");
        return None;
    }
    run.assert_code(exit::OK, "restore of the tree with same-pid");
    let restored = restored.expect("restore exit 0 yields a process");
    assert!(!run.stderr.contains("new pid"), "{run}");
    Some((run, restored))
}

#[test]
fn a_tree_checks_itself_after_restore() {
    let env = Env::require();
    // The default policy: the same-pid test of this file installs a grant.
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "tree");
    let (mut orig, wdir) = start_tree(&env, &dir, "t", &[]);
    let before = tree(orig.pid);
    assert_eq!(before.len(), 6, "the tree as started: {before:#?}");
    let shape_before = shape(&before);
    let image = dir.work.join("t.ckpt");
    dump_tree(&env, &dir, orig.pid, &image);
    orig.wait_gone("dump kills the root");
    wait_until(WAIT, "the dump has killed every member of the tree", || {
        processes_mentioning(path_str(&wdir)).is_empty()
    });

    // restore_ok checks the pidfile names the pid it printed: the root's.
    let pidfile = dir.work.join("t.pid");
    let (run, mut restored) = env.restore_ok(&dir, &image, Some(&pidfile));
    let _kill = TreeGuard::new(restored.pid);
    // A stopped member stops once released, when it next runs: give it
    // that moment (a member that never stops fails below).
    let settled = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut after = tree(restored.pid);
    while shape(&after) != shape_before && std::time::Instant::now() < settled {
        std::thread::sleep(std::time::Duration::from_millis(20));
        after = tree(restored.pid);
    }
    // The restorer builds the processes pinned to one CPU, and each gives
    // itself the restorer's mask back (a zombie before it exits): every
    // thread of every member may run on every CPU the caller (this test,
    // whose mask the restore inherits) may.
    let mine = cpus_allowed(std::process::id() as i32)
        .into_iter()
        .next()
        .map(|(_, l)| l)
        .unwrap();
    for m in &after {
        for (task, allowed) in cpus_allowed(m.pid) {
            assert_eq!(
                allowed, mine,
                "thread {task} ({}) may run on CPUs {allowed}, the caller on {mine}",
                m.comm
            );
        }
    }
    assert_eq!(
        shape(&after),
        shape_before,
        "the tree's shape after restore (parent, group leader, state by name)\n{run}"
    );
    let root = &after[0];
    assert_eq!(
        (root.stat.session, root.stat.pgrp),
        (root.pid, root.pid),
        "in caller mode the restored tree is a new session led by its root\n{run}"
    );
    assert_members_are_the_user(&env, &after);
    let result = ask(&dir, &mut restored, &wdir, "t");
    assert_eq!(result, "OK\n", "the tree after restore reported: {result}");
}

/// `dump --tree --compress`: the shared anonymous memory the tree's
/// processes map (a space of its own, its zero pages left out) and every
/// process's memory come back, and the tree checks itself as after a
/// plain dump.
/// A chunk that does not match in the memory of a process built after
/// others (the middle of the image's data, and its last byte: the last
/// process's memory). Each process's memory is filled while the restorer
/// goes on with the next one, and the processes before it are finished
/// (credentials and all) by the time its fill fails: the restore must
/// still be refused as tampered (exit 4) and leave no process and no pid
/// file.
#[test]
fn a_tampered_chunk_of_a_later_process_leaves_nothing_behind() {
    let env = Env::require();
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "tree-tamper");
    let (mut orig, wdir) = start_tree(&env, &dir, "t", &[]);
    let image = dir.work.join("t.ckpt");
    dump_tree(&env, &dir, orig.pid, &image);
    orig.wait_gone("dump kills the root");
    wait_until(WAIT, "the dump has killed every member of the tree", || {
        processes_mentioning(path_str(&wdir)).is_empty()
    });
    let bytes = fs::read(&image).unwrap();
    let l = Layout::parse(&bytes).unwrap();
    assert!(
        l.data.end > l.data.start,
        "the tree's image holds memory: {l:?}"
    );
    for off in [
        l.data.start + (l.data.end - l.data.start) / 2,
        l.data.end - 1,
    ] {
        let bad = dir.work.join(format!("flip-{off}.ckpt"));
        write_owned(&bad, &flipped(&bytes, off), &env.user);
        let pidfile = dir.work.join(format!("flip-{off}.pid"));
        let (run, proc) = env.restore(&dir, &bad, Some(&pidfile));
        drop(proc);
        let strays = processes_mentioning(path_str(&wdir));
        for pid in &strays {
            drop(Proc::adopt(*pid, "a process left by a refused restore"));
        }
        assert_eq!(
            run.code,
            Some(exit::TAMPERED),
            "byte {off} of the data flipped: restore must be refused as tampered; got {}; stderr: {}",
            run.describe_exit(),
            run.stderr.trim()
        );
        assert!(
            strays.is_empty(),
            "byte {off} flipped: the refused restore left processes {strays:?}"
        );
        assert!(
            !pidfile.exists(),
            "byte {off} flipped: the refused restore wrote its pid file"
        );
    }
}

#[test]
fn a_tree_checks_itself_after_restore_from_a_compressed_image() {
    let env = Env::require();
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "tree-compress");
    let (mut orig, wdir) = start_tree(&env, &dir, "tc", &[]);
    let image = dir.work.join("tc.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &["--tree", "--compress"]);
    orig.wait_gone("dump kills the root");
    wait_until(WAIT, "the dump has killed every member of the tree", || {
        processes_mentioning(path_str(&wdir)).is_empty()
    });
    let pidfile = dir.work.join("tc.pid");
    let (_run, mut restored) = env.restore_ok(&dir, &image, Some(&pidfile));
    let _kill = TreeGuard::new(restored.pid);
    let result = ask(&dir, &mut restored, &wdir, "tc");
    assert_eq!(
        result, "OK\n",
        "the tree restored from a compressed image reported: {result}"
    );
}

/// With a `same-pid` grant every pid of the tree comes back (zombie and
/// stopped child included), and the workload checks that each member has
/// its old pid.
#[test]
fn same_pid_restores_every_pid_of_the_tree() {
    let env = Env::require();
    let syslog = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    grant_same_pid(&env, &guard, syslog);
    for attempt in 1..=3 {
        let dir = TestDir::new(&env, &format!("tree-same-pid-{attempt}"));
        let (mut orig, wdir) = start_tree(&env, &dir, "sp", &["same-pid"]);
        let before = tree(orig.pid);
        assert_eq!(before.len(), 6, "{before:#?}");
        let saved: BTreeMap<String, i32> = before.iter().map(|m| (m.comm.clone(), m.pid)).collect();
        let pids: Vec<i32> = saved.values().copied().collect();
        let image = dir.work.join("sp.ckpt");
        dump_tree(&env, &dir, orig.pid, &image);
        orig.wait_gone("dump kills the root");
        let Some((run, mut restored)) = restore_same_pid(&env, &dir, &image, &pids, attempt) else {
            continue;
        };
        let _kill = TreeGuard::new(restored.pid);
        let after: BTreeMap<String, i32> = tree(restored.pid)
            .into_iter()
            .map(|m| (m.comm, m.pid))
            .collect();
        assert_eq!(after, saved, "every member has its pid back\n{run}");
        let result = ask(&dir, &mut restored, &wdir, "sp");
        assert_eq!(
            result, "OK\n",
            "the tree with its own pids reported: {result}"
        );
        break;
    }
    drop(guard);
}

/// `/bin/sh` as the kernel sees it (the file /proc/PID/exe names).
fn real(path: &str) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|e| panic!("{path} is needed for this test: {e}"))
}

/// Complete lines of `path` (an unfinished last line left out).
fn complete_lines(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    match text.rfind('\n') {
        Some(i) => text[..i].lines().map(str::to_string).collect(),
        None => Vec::new(),
    }
}

/// `LINE 1`, `LINE 2`, ... in order, none lost, none twice; the last number.
fn assert_numbered(lines: &[String], path: &Path) -> u64 {
    for (i, l) in lines.iter().enumerate() {
        let want = format!("LINE {}", i + 1);
        assert_eq!(
            l,
            &want,
            "line {} of {} (neighbourhood {:?})",
            i + 1,
            path.display(),
            &lines[i.saturating_sub(3)..(i + 3).min(lines.len())]
        );
    }
    lines.len() as u64
}

/// `sh -c 'producer | filter > file'`: a loop echoing numbered lines with a
/// short sleep (a `sleep` child is forked for each), through `sed -u`,
/// into a file. Dumped with --tree mid-stream and restored, it carries on
/// from the next line: none lost, none twice.
#[test]
fn a_shell_pipeline_continues_mid_stream() {
    let env = Env::require();
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "tree-pipeline");
    let wdir = workdir(&env, &dir, "pipe");
    let out = wdir.join("out");
    let script = format!(
        "i=0; while :; do i=$((i+1)); echo line $i; sleep 0.05; done \
         | sed -u 's/^line/LINE/' > {}",
        path_str(&out)
    );
    let sh = real("/bin/sh");
    let mut orig = Proc::spawn(
        &env,
        Who::User(&env.user),
        &sh,
        &["-c", &script],
        &wdir,
        &[],
        &dir.work.join("pipe.log"),
    );
    wait_until(WAIT, "the pipeline has written 20 lines", || {
        complete_lines(&out).len() >= 20
    });
    let members = tree(orig.pid);
    assert!(
        members.len() >= 3,
        "sh, the loop's subshell, sed: {members:#?}"
    );
    let image = dir.work.join("pipe.ckpt");
    dump_tree(&env, &dir, orig.pid, &image);
    orig.wait_gone("dump kills the root");
    let pids: Vec<i32> = members.iter().map(|m| m.pid).collect();
    wait_pids_gone(&pids, "every member of the dumped pipeline is gone");
    let at_dump = assert_numbered(&complete_lines(&out), &out);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        complete_lines(&out).len() as u64,
        at_dump,
        "nothing writes while the pipeline is dumped"
    );

    let (run, restored) = env.restore_ok(&dir, &image, None);
    let _kill = TreeGuard::new(restored.pid);
    wait_until(WAIT, "the restored pipeline writes 40 more lines", || {
        complete_lines(&out).len() as u64 >= at_dump + 40
    });
    drop(_kill);
    drop(restored);
    let total = assert_numbered(&complete_lines(&out), &out);
    assert!(total >= at_dump + 40, "{total} lines\n{run}");
}

const POOL_SCRIPT: &str = r#"
import multiprocessing, os, sys, time

CHUNK = 20000
CHUNKS = 60

def part(k):
    time.sleep(0.08)
    return sum(i * i for i in range(k * CHUNK, (k + 1) * CHUNK))

if __name__ == "__main__":
    out = sys.argv[1]
    # Only stdio: nothing inherited from the test harness.
    os.closerange(3, 1024)
    total = 0
    with multiprocessing.Pool(2) as pool:
        for n, s in enumerate(pool.imap_unordered(part, range(CHUNKS)), 1):
            total += s
            with open(out + "/progress.tmp", "w") as f:
                f.write(str(n) + "\n")
            os.rename(out + "/progress.tmp", out + "/progress")
    with open(out + "/result.tmp", "w") as f:
        f.write(str(total) + "\n")
    os.rename(out + "/result.tmp", out + "/result")
"#;

/// python3 with `multiprocessing.Pool(2)` summing squares in 60 chunks
/// (a few seconds), dumped with --tree in the middle and restored: it
/// finishes with the right sum.
#[test]
fn a_python_multiprocessing_pool_finishes_after_restore() {
    let env = Env::require();
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "tree-pool");
    let wdir = workdir(&env, &dir, "pool");
    let script = wdir.join("pool.py");
    fs::write(&script, POOL_SCRIPT).unwrap();
    let python = real("/usr/bin/python3");
    let mut orig = Proc::spawn(
        &env,
        Who::User(&env.user),
        &python,
        &[path_str(&script), path_str(&wdir)],
        &wdir,
        &[],
        &dir.work.join("pool.log"),
    );
    let progress = || -> u64 {
        fs::read_to_string(wdir.join("progress"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    wait_until(WAIT, "the pool has finished 6 chunks", || progress() >= 6);
    let members = tree(orig.pid);
    assert!(members.len() >= 3, "python and two workers: {members:#?}");
    let image = dir.work.join("pool.ckpt");
    dump_tree(&env, &dir, orig.pid, &image);
    orig.wait_gone("dump kills the root");
    let at_dump = progress();
    assert!(
        at_dump < 60 && !wdir.join("result").exists(),
        "dumped before the end ({at_dump} chunks)"
    );
    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let _kill = TreeGuard::new(restored.pid);
    wait_until(
        Duration::from_secs(60),
        "the restored pool finishes",
        || wdir.join("result").exists() || !restored.is_alive(),
    );
    let n: u128 = 60 * 20000;
    let want = (n - 1) * n * (2 * n - 1) / 6;
    let got = fs::read_to_string(wdir.join("result")).unwrap_or_else(|_| {
        panic!(
            "no result; log:\n{}",
            fs::read_to_string(dir.work.join("pool.log")).unwrap_or_default()
        )
    });
    assert_eq!(got.trim(), want.to_string(), "the sum of squares below {n}");
    assert_eq!(progress(), 60, "every chunk counted once");
}

/// A small C project: `main.c` and five units, each recipe sleeping a
/// little before compiling, so a `make -j2` lasts a few seconds.
fn make_project(env: &Env, dir: &TestDir, name: &str) -> PathBuf {
    let p = workdir(env, dir, name);
    let units = ["one", "two", "three", "four", "five"];
    let mut main = String::from("#include <stdio.h>\n");
    for (i, u) in units.iter().enumerate() {
        fs::write(
            p.join(format!("{u}.c")),
            format!("int {u}(int x) {{ return x * {} + {}; }}\n", i + 2, i * 3),
        )
        .unwrap();
        main.push_str(&format!("int {u}(int);\n"));
    }
    main.push_str("int main(void) {\n");
    for u in &units {
        main.push_str(&format!("    printf(\"{u} %d\\n\", {u}(7));\n"));
    }
    main.push_str("    return 0;\n}\n");
    fs::write(p.join("main.c"), main).unwrap();
    let objs: Vec<String> = units
        .iter()
        .chain(std::iter::once(&"main"))
        .map(|u| format!("{u}.o"))
        .collect();
    fs::write(
        p.join("Makefile"),
        format!(
            "OBJS = {}\n\
             prog: $(OBJS)\n\
             \tsleep 0.3\n\
             \tgcc -o $@ $(OBJS)\n\
             %.o: %.c\n\
             \tsleep 0.6\n\
             \tgcc -O1 -c -o $@ $<\n",
            objs.join(" ")
        ),
    )
    .unwrap();
    for e in fs::read_dir(&p).unwrap() {
        std::os::unix::fs::chown(e.unwrap().path(), Some(env.user.uid), Some(env.user.gid))
            .unwrap();
    }
    p
}

/// Runs `make -j2` in `p` as the test user to completion: its output.
fn make_uninterrupted(env: &Env, dir: &TestDir, p: &Path) -> String {
    let mut cmd = env.command(Who::User(&env.user), &real("/usr/bin/make"));
    cmd.args(["-j2"]).current_dir(p);
    let run = dir.run(cmd);
    run.assert_code(0, "make -j2, uninterrupted");
    run.stdout
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// `make -j2` of a small project, dumped with --tree while it builds and
/// restored: it finishes, and its output (the commands it ran, in any
/// order -j2 allows), the object files, the program and what the program
/// prints are those of an uninterrupted build.
///
/// With a `same-pid` grant: make waits for its jobs by pid (`waitpid(-1)`
/// and a lookup in its list of jobs), so jobs that come back with new pids
/// are "unknown children" to it and it stops with "wait: No child
/// processes" (as it would under CRIU without its pid namespace).
#[test]
fn make_j2_resumes_and_builds_the_same() {
    let env = Env::require();
    let syslog = Syslog::start();
    let guard = PolicyGuard::lock(&env);
    grant_same_pid(&env, &guard, syslog);
    let dir = TestDir::new(&env, "tree-make");
    make_j2_case(&env, &dir, &|image, pids, attempt| {
        restore_same_pid(&env, &dir, image, pids, attempt)
    });
    drop(guard);
}

/// The same build, without any grant: `restore --pid-namespace` gives
/// make's jobs their pids back inside a pid namespace of the user's.
#[test]
fn make_j2_resumes_in_a_pid_namespace_without_a_grant() {
    let env = Env::require();
    let guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "tree-make-pidns");
    make_j2_case(&env, &dir, &|image, _pids, _attempt| {
        let (run, restored) = env.restore_with(&dir, image, None, &["--pid-namespace"]);
        run.assert_code(exit::OK, "restore --pid-namespace of make -j2");
        assert!(
            run.stderr.contains("restored in a new pid namespace"),
            "{run}"
        );
        Some((run, restored.expect("restore exit 0 yields a process")))
    });
    drop(guard);
}

/// A restore for [`make_j2_case`]: (image, the dumped tree's pids,
/// attempt) -> the restore, or `None` to try again with a new build.
type MakeRestore<'a> = dyn Fn(&Path, &[i32], u32) -> Option<(ckpt_tests::Run, Proc)> + 'a;

/// Builds a project with `make -j2` uninterrupted, then again dumped with
/// --tree mid-build and restored by `restore`: the resumed build's output,
/// objects and program are the uninterrupted one's.
fn make_j2_case(env: &Env, dir: &TestDir, restore: &MakeRestore<'_>) {
    let clean = make_project(env, dir, "clean");
    let want_out = make_uninterrupted(env, dir, &clean);
    let objs = ["one.o", "two.o", "three.o", "four.o", "five.o", "main.o"];

    for attempt in 1..=3 {
        let p = make_project(env, dir, &format!("resumed-{attempt}"));
        let log = dir.work.join(format!("make-{attempt}.log"));
        let mut orig = Proc::spawn(
            env,
            Who::User(&env.user),
            &real("/usr/bin/make"),
            &["-j2"],
            &p,
            &[],
            &log,
        );
        wait_until(WAIT, "make has built two objects", || {
            objs.iter().filter(|o| p.join(o).exists()).count() >= 2
        });
        let members = tree(orig.pid);
        assert!(members.len() >= 2, "make and a job: {members:#?}");
        let image = dir.work.join(format!("make-{attempt}.ckpt"));
        dump_tree(env, dir, orig.pid, &image);
        orig.wait_gone("dump kills the root");
        assert!(!p.join("prog").exists(), "dumped before the end");
        let pids: Vec<i32> = members.iter().map(|m| m.pid).collect();
        let Some((_run, mut restored)) = restore(&image, &pids, attempt) else {
            continue;
        };
        let _kill = TreeGuard::new(restored.pid);
        wait_until(
            Duration::from_secs(60),
            "the restored make finishes",
            || !restored.is_alive(),
        );
        let got_out = fs::read_to_string(&log).unwrap();
        assert_eq!(
            sorted_lines(&got_out),
            sorted_lines(&want_out),
            "make's output, interrupted and resumed vs uninterrupted"
        );
        for o in objs.iter().chain(std::iter::once(&"prog")) {
            assert_eq!(
                fs::read(p.join(o)).unwrap_or_else(|e| panic!("{o} of the resumed build: {e}")),
                fs::read(clean.join(o)).unwrap(),
                "{o}: the resumed build's is the uninterrupted build's"
            );
        }
        let run_prog = |at: &Path| {
            let mut cmd = env.command(Who::User(&env.user), &at.join("prog"));
            cmd.current_dir(at);
            let r = dir.run(cmd);
            r.assert_code(0, "the built program");
            r.stdout
        };
        assert_eq!(run_prog(&p), run_prog(&clean));
        return;
    }
    panic!("no attempt of the resumed build got its pids back");
}

/// `tmux new-session -d` running a counter in its one pane. The server
/// daemonizes (its parent is the nearest subreaper or init), so the tree
/// dumped is the server's: it, the pane's shell and the shell's `sleep`.
/// After restore the counter carries on and the server answers a client
/// on its (restored, listening) socket.
#[test]
fn tmux_with_a_counter_carries_on() {
    let env = Env::require();
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "tree-tmux");
    let wdir = workdir(&env, &dir, "tmux");
    let sock = wdir.join("sock");
    let count = wdir.join("count");
    let tmux = real("/usr/bin/tmux");
    let pane = format!(
        "i=0; while :; do i=$((i+1)); echo LINE $i >> {}; sleep 0.05; done",
        path_str(&count)
    );
    let tmux_cmd = |args: &[&str]| {
        let mut cmd = env.command(Who::User(&env.user), &tmux);
        cmd.arg("-S")
            .arg(&sock)
            .args(args)
            .current_dir(&wdir)
            .env("HOME", &wdir)
            .env("TERM", "xterm");
        dir.run(cmd)
    };
    tmux_cmd(&["new-session", "-d", "-x", "80", "-y", "24", &pane])
        .assert_code(0, "tmux new-session -d");
    let server = || {
        processes_mentioning(path_str(&sock))
            .into_iter()
            .find(|&p| procfs::stat(p).is_some_and(|s| s.session == p))
    };
    wait_until(WAIT, "the tmux server runs", || server().is_some());
    let spid = server().unwrap();
    let _kill_orig = TreeGuard::new(spid);
    wait_until(WAIT, "the pane counts to 20", || {
        complete_lines(&count).len() >= 20
    });
    let members = tree(spid);
    let image = dir.work.join("tmux.ckpt");
    let pid_s = spid.to_string();
    let run = env.sign(
        &dir,
        &["dump", "--tree", "--pid", &pid_s, "-o", path_str(&image)],
    );
    run.assert_code(exit::OK, "dump --tree of the tmux server");
    let pids: Vec<i32> = members.iter().map(|m| m.pid).collect();
    wait_pids_gone(&pids, "the dumped tmux tree is gone");
    let at_dump = assert_numbered(&complete_lines(&count), &count);
    let (_run, restored) = env.restore_ok(&dir, &image, None);
    let _kill = TreeGuard::new(restored.pid);
    wait_until(WAIT, "the restored pane counts on", || {
        complete_lines(&count).len() as u64 >= at_dump + 20
    });
    let ls = tmux_cmd(&["list-sessions"]);
    ls.assert_code(0, "tmux list-sessions against the restored server");
    assert!(ls.stdout.contains("1 windows"), "{ls}");
    drop(_kill);
    drop(restored);
    assert_numbered(&complete_lines(&count), &count);
}

/// A user's shell whose child is a set-uid program owned by `owner` (so
/// it runs as that user): the dump of the tree is refused with the
/// access-denied code naming the child's pid, and both are left running,
/// untouched.
fn setuid_child_refuses_the_tree(name: &str, owner: Option<&ckpt_tests::Account>) {
    let env = Env::require();
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, name);
    let program = dir.compile(&env, "setuid_sleeper");
    let owner_uid = owner.map_or(0, |a| a.uid);
    if let Some(a) = owner {
        std::os::unix::fs::chown(&program, Some(a.uid), Some(a.gid)).unwrap();
    }
    fs::set_permissions(&program, fs::Permissions::from_mode(0o4755)).unwrap();
    // Writable by the sleeper whoever it runs as.
    let ready = dir.dir("ready", 0o1777, None).join("ready");
    let script = format!("{} {} & wait", path_str(&program), path_str(&ready));
    let mut sh = Proc::spawn(
        &env,
        Who::User(&env.user),
        &real("/bin/sh"),
        &["-c", &script],
        &dir.work,
        &[],
        &dir.work.join("sh.log"),
    );
    wait_until(WAIT, "the setuid sleeper is ready", || ready.exists());
    let kids = procfs::children(sh.pid);
    assert_eq!(kids.len(), 1, "sh has one child, the sleeper");
    let mut child = Proc::adopt(kids[0], "setuid sleeper").unwrap();
    let st = procfs::status(child.pid).unwrap();
    assert_eq!(
        ckpt_tests::status_ids(&st, "Uid")[1],
        u64::from(owner_uid),
        "the sleeper runs with its owner's euid (is {} on a nosuid mount?)",
        dir.bin.display()
    );
    let image = dir.work.join("t.ckpt");
    let pid_s = sh.pid.to_string();
    let run = env.sign(
        &dir,
        &["dump", "--tree", "--pid", &pid_s, "-o", path_str(&image)],
    );
    run.assert_code(exit::ACCESS_DENIED, "dump --tree with a setuid child");
    assert!(
        run.stderr.contains(&format!("pid {}", child.pid)),
        "the refusal names the setuid child\n{run}"
    );
    assert!(!image.exists(), "no image after a refusal\n{run}");
    sh.assert_untouched("the root of a refused tree");
    child.assert_untouched("the setuid child of a refused tree");
    assert_eq!(
        procfs::stat(child.pid).unwrap().ppid,
        sh.pid,
        "still the shell's child"
    );
}

#[test]
fn a_setuid_root_child_in_the_tree_is_refused() {
    setuid_child_refuses_the_tree("tree-setuid-root", None);
}

/// The child runs as another user (ckpt-other): another user's process.
#[test]
fn another_users_process_in_the_tree_is_refused() {
    let env = Env::require();
    setuid_child_refuses_the_tree("tree-setuid-other", Some(&env.other));
}

/// Without --tree a process with a child is refused, naming the child;
/// the whole tree runs on untouched (and still passes its own checks).
#[test]
fn a_process_with_children_needs_tree() {
    let env = Env::require();
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "tree-needed");
    let (mut orig, wdir) = start_tree(&env, &dir, "t", &[]);
    let before = tree(orig.pid);
    let image = dir.work.join("t.ckpt");
    let pid_s = orig.pid.to_string();
    let run = env.sign(&dir, &["dump", "--pid", &pid_s, "-o", path_str(&image)]);
    run.assert_code(exit::DUMP_FAILED, "dump without --tree of a parent");
    let kids = procfs::children(orig.pid);
    assert!(
        kids.iter()
            .any(|k| run.stderr.contains(&format!("child process {k}")))
            && run.stderr.contains("--tree"),
        "the refusal names a child and --tree\n{run}"
    );
    assert!(!image.exists(), "no image after a refusal\n{run}");
    orig.assert_untouched("a refused parent");
    let now = tree(orig.pid);
    assert_eq!(
        shape(&now),
        shape(&before),
        "the tree is as it was (the stopped child still stopped, the zombie a zombie)"
    );
    for m in now.iter().filter(|m| !matches!(m.stat.state, 'Z' | 'T')) {
        let st = procfs::status(m.pid).unwrap();
        assert_eq!(st.get("TracerPid").map(String::as_str), Some("0"), "{m:?}");
    }
    // The tree itself still works.
    let result = ask(&dir, &mut orig, &wdir, "t");
    assert_eq!(result, "OK\n", "the refused tree reported: {result}");
}

/// Root's tree whose child dropped a capability from its bounding set:
/// root's restore would give every process the root's capabilities, so
/// the child would get back what it gave up. Refused (exit 7) naming the
/// child, nothing restored.
#[test]
fn a_child_that_dropped_capabilities_is_not_given_them_back() {
    let env = Env::require();
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "tree-caps");
    let rdir = dir.dir("root", 0o755, None);
    let marker = path_str(&rdir).to_string();
    let counter = dir.compile(&env, "counter");
    let script = format!(
        "setpriv --bounding-set -chown -- {} {marker}/c.count & wait",
        path_str(&counter)
    );
    let mut sh = Proc::spawn(
        &env,
        Who::Root,
        &real("/bin/sh"),
        &["-c", &script],
        &rdir,
        &[],
        &rdir.join("sh.log"),
    );
    wait_until(WAIT, "the child has dropped CAP_CHOWN", || {
        procfs::children(sh.pid).iter().any(|&k| {
            procfs::comm(k) == "counter"
                && procfs::status(k)
                    .is_some_and(|st| ckpt_tests::status_ids(&st, "CapBnd")[0] & 1 == 0)
        })
    });
    let child = procfs::children(sh.pid)[0];
    let image = rdir.join("caps.ckpt");
    let pid_s = sh.pid.to_string();
    let run = env.sign_as(
        Who::Root,
        &dir,
        &["dump", "--tree", "--pid", &pid_s, "-o", path_str(&image)],
    );
    run.assert_code(exit::OK, "root's dump --tree of its own tree");
    sh.wait_gone("dump kills the root");
    let run = env.verify_as(Who::Root, &dir, &["restore", path_str(&image)]);
    run.assert_code(exit::RESTORE_FAILED, "root's restore of the tree");
    assert!(
        run.stderr
            .contains(&format!("pid {child}'s ids or capabilities differ")),
        "the refusal names the child\n{run}"
    );
    assert!(run.stdout.trim().is_empty(), "{run}");
    assert!(
        processes_mentioning(&marker).is_empty(),
        "nothing restored\n{run}"
    );
}

/// A child made with `clone(CLONE_FILES)` shares its parent's fd table;
/// another child (`fork`) has a copy. After a restore (in a pid namespace:
/// the parent waits for its children by pid) an fd the sharing child opens
/// is in the parent's table and not in the other child's; the workload
/// checks it and reports.
#[test]
fn a_child_sharing_its_parents_fd_table_shares_it_after_restore() {
    let env = Env::require();
    let _guard = PolicyGuard::lock(&env);
    let dir = TestDir::new(&env, "tree-fdtable");
    let program = dir.compile(&env, "fdtable");
    let wdir = workdir(&env, &dir, "f");
    let log = dir.work.join("f.log");
    let mut orig = Proc::spawn(
        &env,
        Who::User(&env.user),
        &program,
        &[path_str(&wdir)],
        &wdir,
        &[],
        &log,
    );
    wait_ready(&wdir, "fdtable");
    assert_eq!(tree(orig.pid).len(), 3, "the parent and its two children");
    let image = dir.work.join("f.ckpt");
    dump_tree(&env, &dir, orig.pid, &image);
    orig.wait_gone("dump kills the root");
    let (run, restored) = env.restore_with(&dir, &image, None, &["--pid-namespace"]);
    run.assert_code(exit::OK, "restore of a tree with a shared fd table");
    let mut restored = restored.unwrap();
    let _kill = TreeGuard::new(restored.pid);
    assert_eq!(tree(restored.pid).len(), 3, "{run}");
    fs::write(wdir.join("go"), b"go\n").unwrap();
    let result = workload_result(&mut restored, &wdir.join("result"), &log, "fdtable");
    assert_eq!(result, "OK\n", "the restored tree reported: {result}");
}

/// The CPUs each thread may run on, from `/proc/PID/task/TID/status`.
fn cpus_allowed(pid: i32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    for t in tasks {
        let t = t.unwrap();
        let status = fs::read_to_string(t.path().join("status")).unwrap();
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_string();
        out.push((format!("{pid}/{}", t.file_name().to_string_lossy()), line));
    }
    out
}
