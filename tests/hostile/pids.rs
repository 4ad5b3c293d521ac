//! Pid races: a target that dies or exits while it is being dumped, a pid
//! that no longer exists or is a zombie, and a pid that was the caller's
//! but now belongs to another user or to root (recycled on purpose by
//! writing `ns_last_pid` as root). The dump of a pid that is no longer the
//! caller's is refused (exit 3) and the new owner's process is untouched;
//! a dump that loses its target fails (exit 6) with no file left.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use std::time::Duration;

use ckpt_tests::{exit, path_str, procfs, signal, Counter, Env, Proc, TestDir, Who};
use nix::sys::signal::Signal;

use crate::{exclusive, new_entries, outcome, outcome_any, setup, strays, Cases};

/// Dumps `pid` to `image`; checks `codes` and that either the image is
/// complete (exit 0: it verifies) or nothing was left in the work dir.
fn dump_checked(
    env: &Env,
    dir: &TestDir,
    cases: &mut Cases,
    name: &str,
    pid: i32,
    image: &Path,
    codes: &[i32],
    needle: Option<&str>,
) -> Option<i32> {
    let before = TestDir::list(&dir.work);
    let pid_s = pid.to_string();
    let r = env.sign(dir, &["dump", "--pid", &pid_s, "-o", path_str(image)]);
    cases.check(name, outcome_any(&r, codes, needle));
    if r.code == Some(exit::OK) {
        let v = env.verify(dir, &["verify", path_str(image)]);
        cases.check(
            name,
            outcome(&v, exit::OK, None).map(|e| format!("the image of a dump that exited 0: {e}")),
        );
        let _ = fs::remove_file(image);
    } else {
        let left = new_entries(&dir.work, &before);
        if !left.is_empty() {
            cases.fail(name, format!("a failed dump left files: {left:?}"));
        }
    }
    r.code
}

#[test]
fn targets_that_die_during_the_dump() {
    let (_g, env) = setup();
    let dir = TestDir::new(&env, "pid-dies");
    let mut cases = Cases::default();
    let image = dir.work.join("x.ckpt");

    // Gone and reaped before the call.
    {
        let name = "pid-exited-and-reaped";
        cases.start(name);
        let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, name);
        let pid = c.proc.pid;
        signal(pid, Signal::SIGKILL);
        c.proc.wait_gone("killed by its owner");
        dump_checked(
            &env,
            &dir,
            &mut cases,
            name,
            pid,
            &image,
            &[exit::DUMP_FAILED],
            Some(&pid.to_string()),
        );
    }
    // A zombie of the caller's (its parent never reaps it).
    {
        let name = "pid-zombie";
        cases.start(name);
        let mut parent = env
            .command(Who::User(&env.user), Path::new("/bin/sh"))
            .arg("-c")
            .arg("/bin/true & exec /bin/sleep 30")
            .spawn()
            .expect("start the zombie's parent");
        let ppid = parent.id() as i32;
        let mut zombie = None;
        ckpt_tests::wait_until(ckpt_tests::WAIT, "the shell's child is a zombie", || {
            zombie = procfs::pids()
                .into_iter()
                .find(|&q| procfs::stat(q).is_some_and(|s| s.ppid == ppid && s.state == 'Z'));
            zombie.is_some()
        });
        let zombie = zombie.unwrap();
        dump_checked(
            &env,
            &dir,
            &mut cases,
            name,
            zombie,
            &image,
            &[exit::DUMP_FAILED],
            Some(&zombie.to_string()),
        );
        let _ = parent.kill();
        let _ = parent.wait();
    }
    // Killed by its owner at a given delay into the dump.
    for delay_ms in [0u64, 3, 10, 25] {
        let name = format!("pid-killed-{delay_ms}ms-into-the-dump");
        cases.start(&name);
        let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, &name);
        let pid = c.proc.pid;
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(delay_ms));
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        });
        let code = dump_checked(
            &env,
            &dir,
            &mut cases,
            &name,
            pid,
            &image,
            &[exit::OK, exit::DUMP_FAILED],
            None,
        );
        killer.join().unwrap();
        c.proc.wait_gone("killed by its owner or by the dump");
        cases.check(&name, strays(&dir));
        eprintln!("{name}: exit {code:?}");
    }
    // A short-lived process that exits by itself while the dump starts.
    {
        let name = "pid-exits-by-itself";
        cases.start(name);
        let mut short = env
            .command(Who::User(&env.user), Path::new("/bin/sleep"))
            .arg("0.02")
            .spawn()
            .expect("start a short sleep");
        let pid = short.id() as i32;
        dump_checked(
            &env,
            &dir,
            &mut cases,
            name,
            pid,
            &image,
            &[exit::OK, exit::DUMP_FAILED],
            None,
        );
        let _ = short.wait();
    }
    cases.check("pid-exits-by-itself", strays(&dir));
    cases.finish("targets that die during the dump");
}

/// Starts `argv` with the next pid being `want` (`ns_last_pid` = want-1),
/// retrying while other processes take it first.
fn spawn_at_pid(want: i32, mut make: impl FnMut() -> Command) -> Option<Child> {
    for _ in 0..200 {
        fs::write("/proc/sys/kernel/ns_last_pid", (want - 1).to_string())
            .expect("write ns_last_pid as root");
        let mut child = make()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        if child.id() as i32 == want {
            return Some(child);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    None
}

#[test]
fn reused_pid_now_belongs_to_someone_else() {
    // Exclusive: no other test of this binary forks while pids are cycled.
    let _g = exclusive();
    let env = Env::require();
    ckpt_tests::syslog::Syslog::start();
    let dir = TestDir::new(&env, "pid-reuse");
    let mut cases = Cases::default();
    let image = dir.work.join("x.ckpt");
    let other = env.other.clone();
    let tag = format!("# {}", dir.root.display());
    for (name, who) in [
        ("pid-reused-by-another-user", Some(other)),
        ("pid-reused-by-root", None),
    ] {
        cases.start(name);
        let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, name);
        let pid = c.proc.pid;
        signal(pid, Signal::SIGKILL);
        c.proc.wait_gone("killed by its owner");
        let sh_cmd = format!("exec /bin/sleep 60 {tag}");
        let child = spawn_at_pid(pid, || {
            let mut cmd = match &who {
                Some(a) => env.command(Who::User(a), Path::new("/bin/sh")),
                None => env.command(Who::Root, Path::new("/bin/sh")),
            };
            cmd.arg("-c").arg(&sh_cmd);
            cmd
        });
        let Some(mut child) = child else {
            cases.fail(
                name,
                format!("could not recycle pid {pid} within 200 tries"),
            );
            continue;
        };
        ckpt_tests::wait_until(ckpt_tests::WAIT, "the new owner's sleep runs", || {
            fs::read_link(format!("/proc/{pid}/exe")).ok().as_deref()
                == Some(Path::new("/usr/bin/sleep"))
                || fs::read_link(format!("/proc/{pid}/exe")).ok().as_deref()
                    == Some(Path::new("/bin/sleep"))
        });
        let mut theirs = Proc::adopt(pid, "the pid's new owner").expect("the new process runs");
        dump_checked(
            &env,
            &dir,
            &mut cases,
            name,
            pid,
            &image,
            &[exit::ACCESS_DENIED],
            Some(&pid.to_string()),
        );
        theirs.assert_untouched("the dump of a recycled pid was refused");
        drop(theirs);
        let _ = child.wait();
    }
    cases.check("pid-reused-by-root", strays(&dir));
    cases.finish("reused pids");
}

/// A target inside a user namespace the caller made (root mapped to the
/// caller, a full capability set relative to that namespace): its
/// capabilities are not host capabilities, so the dump refuses it (exit 6,
/// naming the namespace) and writes nothing.
#[test]
fn target_in_a_user_namespace() {
    let (_g, env) = setup();
    let dir = TestDir::new(&env, "pid-userns");
    let mut cases = Cases::default();
    let name = "target-in-a-user-namespace";
    cases.start(name);
    // The counter closes every inherited fd above 2 (a pipe it cannot
    // checkpoint would be refused for another reason).
    let counter = dir.compile(&env, "counter");
    let count = dir.work.join("userns.count");
    let mut child = env
        .command(Who::User(&env.user), Path::new("/usr/bin/unshare"))
        .arg("-Ur")
        .arg(&counter)
        .arg(&count)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start unshare -Ur counter");
    let pid = child.id() as i32;
    ckpt_tests::wait_until(
        ckpt_tests::WAIT,
        "the counter runs in its user namespace",
        || {
            fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == counter)
                && ckpt_tests::counter_lines(&count).len() > 2
        },
    );
    let host_ns = fs::read_link("/proc/self/ns/user").unwrap();
    assert_ne!(
        fs::read_link(format!("/proc/{pid}/ns/user")).unwrap(),
        host_ns,
        "the target runs in a user namespace of its own"
    );
    let mut target = Proc::adopt(pid, "counter in a user namespace").expect("target runs");
    let image = dir.work.join("userns.ckpt");
    let code = dump_checked(
        &env,
        &dir,
        &mut cases,
        name,
        pid,
        &image,
        &[exit::DUMP_FAILED],
        Some("namespace"),
    );
    if code != Some(exit::OK) {
        if target.is_alive() {
            target.assert_untouched("a refused dump");
        } else {
            cases.fail(name, "a refused dump killed its target");
        }
    }
    drop(target);
    let _ = child.wait();
    cases.finish("user namespaces");
}
