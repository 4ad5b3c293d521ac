//! A full file system: the image (or the pid file) goes to a small tmpfs
//! the test mounts as root and gives to the caller. The dump fails with
//! exit 6, leaves no file under the final name and no temporary file, and
//! the target carries on (with or without `--leave-running`); a pid file
//! that cannot be written fails the restore with nothing left running.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ckpt_tests::{exit, path_str, Counter, Env, TestDir, Who};

use crate::{outcome, setup, strays_except, Cases};

/// A tmpfs mounted at `dir/NAME` with `opts`, owned by the test user;
/// unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(env: &Env, dir: &TestDir, name: &str, opts: &str) -> Tmpfs {
        let p = dir.dir(name, 0o755, Some(&env.user));
        let o = format!("{opts},uid={},gid={},mode=0755", env.user.uid, env.user.gid);
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &o, "ckpt-hostile-full"])
            .arg(&p)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mount -t tmpfs -o {o} {} failed: the full-disk test cannot run",
            p.display()
        );
        Tmpfs(p)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn fill(path: &Path) {
    // Write until ENOSPC.
    let block = vec![0x5au8; 4096];
    let mut n = 0;
    while fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &block))
        .is_ok()
    {
        n += 1;
        assert!(n < 100_000, "the tmpfs never filled up");
    }
}

#[test]
fn full_disk() {
    let (_g, env) = setup();
    let dir = TestDir::new(&env, "full-disk");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let pid = c.proc.pid.to_string();
    let mut cases = Cases::default();
    let table = [
        ("full-disk-64k-leave-running", "size=64k", true),
        ("full-disk-64k-default-mode", "size=64k", false),
        ("full-disk-no-inodes", "size=16m,nr_inodes=1", true),
    ];
    for (name, opts, leave) in table {
        cases.start(name);
        let fs_ = Tmpfs::mount(&env, &dir, name, opts);
        let out = fs_.0.join("img.ckpt");
        let mut args = vec!["dump", "--pid", &pid, "-o", path_str(&out)];
        if leave {
            args.push("--leave-running");
        }
        let r = env.sign(&dir, &args);
        cases.check(name, outcome(&r, exit::DUMP_FAILED, None));
        let left = TestDir::list(&fs_.0);
        if !left.is_empty() {
            cases.fail(
                name,
                format!("files left on the full file system: {left:?}"),
            );
        }
        if !c.proc.is_alive() {
            cases.fail(name, "a failed dump killed its target");
            break;
        }
        c.proc.assert_untouched(name);
    }
    // The pid file on a file system with no space left.
    let name = "full-disk-pidfile";
    cases.start(name);
    let image = dir.work.join("c.ckpt");
    env.dump_ok(&dir, c.proc.pid, &image, &["--leave-running"]);
    let fs_ = Tmpfs::mount(&env, &dir, name, "size=8k");
    fill(&fs_.0.join("filler"));
    let pidfile = fs_.0.join("pid");
    let r = env.verify(
        &dir,
        &["restore", path_str(&image), "--pidfile", path_str(&pidfile)],
    );
    cases.check(name, outcome(&r, exit::OTHER, None));
    cases.check(name, strays_except(&dir, &[c.proc.pid]));
    if pidfile.exists() {
        cases.fail(name, "a pid file was left");
    }
    cases.finish("full disk");
}
