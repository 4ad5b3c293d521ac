//! Output paths: the image is created by the caller, without following a
//! symlink, never over an existing file unless --force, and never in a
//! place only root may write. A refused dump leaves the target running.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use ckpt_tests::{exit, path_str, processes_mentioning, Counter, Env, FileSnapshot, TestDir, Who};

fn dump_args<'a>(pid: &'a str, out: &'a Path, force: bool) -> Vec<&'a str> {
    let mut v = vec!["dump", "--pid", pid, "-o", path_str(out)];
    if force {
        v.push("--force");
    }
    v
}

#[test]
fn symlinked_output_is_refused_and_its_target_untouched() {
    let env = Env::require();
    let dir = TestDir::new(&env, "out-symlink");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let pid = c.proc.pid.to_string();

    let mine = dir.work.join("mine.txt");
    dir.file(&mine, b"the user's own file\n", 0o644, Some(&env.user));
    let roots = dir.root.join("roots.txt");
    dir.file(&roots, b"root's file\n", 0o644, None);
    let missing = dir.work.join("not-there-yet");

    let cases = [
        ("link-to-mine.ckpt", &mine),
        ("link-to-root.ckpt", &roots),
        ("dangling.ckpt", &missing),
    ];
    for (name, target) in cases {
        let link = dir.work.join(name);
        symlink(target, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(env.user.uid), Some(env.user.gid)).unwrap();
    }
    let snap_mine = FileSnapshot::of(&mine);
    let snap_roots = FileSnapshot::of(&roots);

    for (name, target) in cases {
        let link = dir.work.join(name);
        let run = env.sign(&dir, &dump_args(&pid, &link, false));
        run.assert_refused(&format!(
            "dump -o {name} (a symlink to {})",
            target.display()
        ));
        run.assert_code(
            exit::DUMP_FAILED,
            &format!("dump -o {name}: a symlink (SECURITY.md §6)"),
        );
        assert_eq!(
            fs::read_link(&link).unwrap(),
            *target,
            "{name} is still the same symlink"
        );
        assert_eq!(
            FileSnapshot::of(&mine),
            snap_mine,
            "{} changed",
            mine.display()
        );
        assert_eq!(
            FileSnapshot::of(&roots),
            snap_roots,
            "{} changed",
            roots.display()
        );
        assert!(
            !missing.exists(),
            "a dump through a dangling symlink created its target"
        );
        c.proc
            .assert_untouched(&format!("after a refused dump to {name}"));
    }
    // --force allows replacing a file, never writing through a link.
    for (name, _) in cases {
        let link = dir.work.join(name);
        let _ = env.sign(&dir, &dump_args(&pid, &link, true));
        assert_eq!(
            FileSnapshot::of(&mine),
            snap_mine,
            "dump --force -o {name} wrote through the link"
        );
        assert_eq!(
            FileSnapshot::of(&roots),
            snap_roots,
            "dump --force -o {name} wrote through the link"
        );
        assert!(
            !missing.exists(),
            "dump --force through a dangling symlink created its target"
        );
        if !c.proc.is_alive() {
            break; // that --force dump replaced the link itself and killed the target
        }
    }
    let listing = TestDir::list(&dir.work);
    assert!(
        listing
            .iter()
            .all(|n| !n.starts_with('.') && !n.contains(".tmp")),
        "temporary files left behind: {listing:?}"
    );
}

#[test]
fn existing_output_is_kept_without_force_and_replaced_with_force() {
    let env = Env::require();
    let dir = TestDir::new(&env, "out-exists");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let pid = c.proc.pid.to_string();
    let out = dir.work.join("exists.ckpt");
    dir.file(&out, b"precious\n", 0o644, Some(&env.user));
    let before = FileSnapshot::of(&out);

    let run = env.sign(&dir, &dump_args(&pid, &out, false));
    run.assert_refused("dump over an existing file without --force");
    run.assert_code(
        exit::DUMP_FAILED,
        "dump over an existing file (SECURITY.md §6)",
    );
    assert_eq!(
        FileSnapshot::of(&out),
        before,
        "existing file changed without --force"
    );
    c.proc
        .assert_untouched("after a dump refused because the output exists");
    let listing = TestDir::list(&dir.work);
    assert_eq!(
        listing,
        vec!["c.count", "c.log", "exists.ckpt"],
        "files left behind"
    );

    env.dump_ok(&dir, c.proc.pid, &out, &["--force"]);
    c.proc.wait_gone("dump --force kills the target");
    env.verify(&dir, &["verify", path_str(&out)])
        .assert_code(exit::OK, "verify of the image written with --force");
    let (_r, p2) = env.restore_ok(&dir, &out, None);
    let n = c.lines().last().unwrap().0;
    c.wait_for(p2.pid, n + 5);
}

#[test]
fn output_where_only_root_may_write_is_refused_even_with_force() {
    let env = Env::require();
    let dir = TestDir::new(&env, "out-rootdir");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let pid = c.proc.pid.to_string();
    let rdir = dir.dir("root-only", 0o755, None);
    let victim = rdir.join("victim.ckpt");
    dir.file(&victim, b"root's\n", 0o644, None);
    let before = FileSnapshot::of(&victim);

    for (out, force) in [
        (rdir.join("new.ckpt"), false),
        (rdir.join("new.ckpt"), true),
        (victim.clone(), true),
    ] {
        let run = env.sign(&dir, &dump_args(&pid, &out, force));
        run.assert_refused(&format!(
            "dump -o {} (root-only directory, force {force})",
            out.display()
        ));
        run.assert_code(
            exit::ACCESS_DENIED,
            &format!(
                "dump -o {}: the kernel refuses the caller (SECURITY.md §6)",
                out.display()
            ),
        );
        assert_eq!(
            TestDir::list(&rdir),
            vec!["victim.ckpt"],
            "files created in a root-only directory"
        );
        assert_eq!(FileSnapshot::of(&victim), before, "root's file changed");
        c.proc
            .assert_untouched("after a dump refused for its output path");
    }
}

#[test]
fn pidfile_is_written_as_the_caller() {
    let env = Env::require();
    let dir = TestDir::new(&env, "pidfile");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let image = dir.work.join("c.ckpt");
    env.dump_ok(&dir, c.proc.pid, &image, &[]);
    c.proc.wait_gone("dump kills the target");

    let rdir = dir.dir("root-only", 0o755, None);
    let roots = rdir.join("roots.pid");
    dir.file(&roots, b"root's\n", 0o644, None);
    let before = FileSnapshot::of(&roots);
    let link = dir.work.join("link.pid");
    symlink(&roots, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(env.user.uid), Some(env.user.gid)).unwrap();

    for pidfile in [rdir.join("new.pid"), roots.clone(), link.clone()] {
        let (run, proc) = env.restore(&dir, &image, Some(&pidfile));
        drop(proc);
        for pid in processes_mentioning(path_str(&dir.root)) {
            drop(ckpt_tests::Proc::adopt(pid, "restored counter"));
        }
        assert_eq!(
            TestDir::list(&rdir),
            vec!["roots.pid"],
            "restore --pidfile {} created a file in a root-only directory\n{run}",
            pidfile.display()
        );
        assert_eq!(
            FileSnapshot::of(&roots),
            before,
            "restore --pidfile {} changed root's file\n{run}",
            pidfile.display()
        );
        assert!(
            fs::read_link(&link).is_ok(),
            "the pidfile symlink was replaced"
        );
    }
}
