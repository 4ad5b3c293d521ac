//! A hostile start: the caller execs the helper with a poisoned
//! environment, fds 0-2 closed, tiny or lowered resource limits, umask 000
//! or 777, and signals ignored or blocked (through the `hostile_start`
//! workload, which sets that state and then execs the helper). The helper
//! either works exactly as usual (host-signed image, mode 0600, the
//! restored process with the caller's credentials and the image's own
//! signal state) or refuses with exit 1 and a message naming the limit.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ckpt_tests::{exit, path_str, procfs, Counter, Env, FileSnapshot, Proc, Run, TestDir, Who};

use crate::{
    caller_creds_only, new_entries, outcome, outcome_any, run_wrapped, setup, strays_except, Cases,
};

struct Fixture {
    counter: Counter,
    /// A host-signed image of the counter.
    image: PathBuf,
    /// A copy with a flipped chunk byte.
    tampered: PathBuf,
    host_id: String,
    markers: PathBuf,
}

fn fixture(env: &Env, dir: &TestDir) -> Fixture {
    let counter = Counter::start(env, dir, Who::User(&env.user), &dir.work, "c");
    let image = dir.work.join("good.ckpt");
    env.dump_ok(dir, counter.proc.pid, &image, &["--leave-running"]);
    let bytes = fs::read(&image).unwrap();
    let l = ckpt_tests::image::Layout::parse(&bytes).unwrap();
    let tampered = dir.work.join("bad.ckpt");
    ckpt_tests::write_owned(
        &tampered,
        &ckpt_tests::image::flipped(&bytes, l.data.start + 1),
        &env.user,
    );
    let (_line, host_id) = env.host_key_id(dir);
    let markers = dir.dir("markers", 0o777, None);
    fs::set_permissions(&markers, fs::Permissions::from_mode(0o777)).unwrap();
    Fixture {
        counter,
        image,
        tampered,
        host_id,
        markers,
    }
}

impl Fixture {
    /// Dumps the counter (left running) through the wrapper; checks the
    /// image is host-signed, 0600, the caller's, and nothing else appeared.
    fn dump(
        &mut self,
        env: &Env,
        dir: &TestDir,
        cases: &mut Cases,
        name: &str,
        wrapper: &[&str],
    ) -> Option<PathBuf> {
        let image = dir.work.join(format!("{name}.ckpt"));
        let before = TestDir::list(&dir.work);
        let pid = self.counter.proc.pid.to_string();
        let r = run_wrapped(
            env,
            dir,
            Who::User(&env.user),
            wrapper,
            &env.sign_path(),
            &[
                "dump",
                "--pid",
                &pid,
                "-o",
                path_str(&image),
                "--leave-running",
            ],
        );
        cases.check(
            name,
            outcome(&r, exit::OK, None).map(|e| format!("dump: {e}")),
        );
        self.counter.proc.assert_untouched(name);
        let extra: Vec<String> = new_entries(&dir.work, &before)
            .into_iter()
            .filter(|n| *n != format!("{name}.ckpt"))
            .collect();
        if !extra.is_empty() {
            cases.fail(name, format!("dump left other files: {extra:?}"));
        }
        let md = fs::symlink_metadata(&image).ok()?;
        if md.mode() & 0o7777 != 0o600 || md.uid() != env.user.uid {
            cases.fail(
                name,
                format!(
                    "image mode {:o} owner {}, expected 0600 and the caller",
                    md.mode() & 0o7777,
                    md.uid()
                ),
            );
        }
        let (v, json) = env.verify_json(dir, &image);
        if v.code != Some(exit::OK) || json["key_id"] != self.host_id.as_str() {
            cases.fail(
                name,
                format!(
                    "the image is not signed by the build-time host key: {}",
                    v.stdout.trim()
                ),
            );
        }
        Some(image)
    }

    fn markers_empty(&self, cases: &mut Cases, name: &str) {
        let found = TestDir::list(&self.markers);
        if !found.is_empty() {
            cases.fail(name, format!("the environment took effect: {found:?}"));
            for f in found {
                let _ = fs::remove_file(self.markers.join(f));
            }
        }
    }
}

/// Restores `image` through the wrapper; returns the restored process.
fn restore(
    env: &Env,
    dir: &TestDir,
    cases: &mut Cases,
    name: &str,
    wrapper: &[&str],
    image: &Path,
) -> Option<Proc> {
    let r: Run = run_wrapped(
        env,
        dir,
        Who::User(&env.user),
        wrapper,
        &env.verify_path(),
        &["restore", path_str(image)],
    );
    cases.check(
        name,
        outcome(&r, exit::OK, None).map(|e| format!("restore: {e}")),
    );
    let pid: i32 = r.stdout.trim().parse().ok()?;
    let p = Proc::adopt(pid, "restored counter")?;
    cases.check(name, caller_creds_only(pid, &env.user));
    Some(p)
}

#[test]
fn poisoned_environment_variables() {
    let (_g, env) = setup();
    let dir = TestDir::new(&env, "start-env");
    let mut f = fixture(&env, &dir);
    let m = f.markers.display().to_string();
    let define = format!("-DMARKER_DIR=\"{m}\"");
    let so = dir.compile_with(
        &env,
        "evil_preload",
        "evil.so",
        &["-shared", "-fPIC", &define],
    );
    let evil_etc = dir.dir("evil-etc", 0o755, Some(&env.user));
    fs::create_dir(evil_etc.join("keys")).unwrap();
    fs::write(evil_etc.join("keys/host.key"), [7u8; 32]).unwrap();
    let so = so.display().to_string();
    let table: Vec<(&str, Vec<String>)> = vec![
        ("env-ld-preload", vec![format!("LD_PRELOAD={so}")]),
        ("env-ld-audit", vec![format!("LD_AUDIT={so}")]),
        ("env-ld-library-path", vec![format!("LD_LIBRARY_PATH={m}")]),
        (
            "env-tss2-logfile",
            vec![
                format!("TSS2_LOGFILE={m}/tss2.log"),
                "TSS2_LOG=all+trace".into(),
            ],
        ),
        (
            "env-tss2-tcti",
            vec![
                format!("TSS2_TCTI=swtpm:path={m}/tcti"),
                format!("TPM2TOOLS_TCTI=device:{m}/tpm"),
            ],
        ),
        ("env-path", vec![format!("PATH={m}")]),
        (
            "env-ckpt-sysconfdir",
            vec![
                format!("CKPT_SYSCONFDIR={}", evil_etc.display()),
                format!("CKPT_STATEDIR={m}/state"),
            ],
        ),
        (
            "env-home-tmpdir",
            vec![
                format!("HOME={m}"),
                format!("TMPDIR={m}"),
                format!("XDG_RUNTIME_DIR={m}"),
            ],
        ),
        (
            "env-gconv-locale",
            vec![
                format!("GCONV_PATH={m}"),
                format!("LOCPATH={m}"),
                "LANG=xx_XX.EVIL".into(),
            ],
        ),
        (
            "env-rust-debug",
            vec![
                "RUST_BACKTRACE=full".into(),
                "RUST_LOG=trace".into(),
                "RUST_MIN_STACK=1".into(),
            ],
        ),
        (
            "env-malformed-entries",
            vec![
                "=value".into(),
                "NOEQUALS".into(),
                "A=\u{1}\u{2}".into(),
                format!("MALLOC_CHECK_=3"),
            ],
        ),
        (
            "env-huge-variable",
            vec![format!("X={}", "A".repeat(120_000))],
        ),
    ];
    let mut cases = Cases::default();
    for (name, vars) in &table {
        cases.start(name);
        let mut wrapper: Vec<&str> = Vec::new();
        for v in vars {
            wrapper.push("--env");
            wrapper.push(v);
        }
        let img = f.dump(&env, &dir, &mut cases, name, &wrapper);
        let v = run_wrapped(
            &env,
            &dir,
            Who::User(&env.user),
            &wrapper,
            &env.verify_path(),
            &["verify", path_str(&f.tampered)],
        );
        cases.check(
            name,
            outcome(&v, exit::TAMPERED, None).map(|e| format!("verify of a tampered image: {e}")),
        );
        if let Some(i) = img {
            let _ = fs::remove_file(i);
        }
        f.markers_empty(&mut cases, name);
    }
    cases.finish("poisoned environment");
}

#[test]
fn closed_standard_fds() {
    let (_g, env) = setup();
    let dir = TestDir::new(&env, "start-fds");
    let mut f = fixture(&env, &dir);
    let mut cases = Cases::default();

    let name = "fd0-closed-dump";
    cases.start(name);
    if let Some(i) = f.dump(&env, &dir, &mut cases, name, &["--close", "0"]) {
        let _ = fs::remove_file(i);
    }

    let name = "fd1-closed-verify-tampered";
    cases.start(name);
    let snap = FileSnapshot::of(&f.tampered);
    let r = run_wrapped(
        &env,
        &dir,
        Who::User(&env.user),
        &["--close", "1"],
        &env.verify_path(),
        &["verify", path_str(&f.tampered)],
    );
    cases.check(name, outcome(&r, exit::TAMPERED, None));
    if FileSnapshot::of(&f.tampered) != snap {
        cases.fail(name, "the image changed");
    }

    let name = "fd2-closed-verify-tampered";
    cases.start(name);
    let r = run_wrapped(
        &env,
        &dir,
        Who::User(&env.user),
        &["--close", "2"],
        &env.verify_path(),
        &["verify", path_str(&f.tampered)],
    );
    if r.code != Some(exit::TAMPERED) {
        cases.fail(name, format!("expected exit 4, got {}", r.describe_exit()));
    }
    if FileSnapshot::of(&f.tampered) != snap {
        cases.fail(
            name,
            "the image changed (a message written into a file that took fd 2?)",
        );
    }

    let name = "fds-0-1-2-closed-restore";
    cases.start(name);
    let n = f.counter.lines().last().unwrap().0;
    let r = run_wrapped(
        &env,
        &dir,
        Who::User(&env.user),
        &["--close", "0", "--close", "1", "--close", "2"],
        &env.verify_path(),
        &[
            "restore",
            path_str(&f.image),
            "--pidfile",
            path_str(&dir.work.join("fds.pid")),
        ],
    );
    if r.code != Some(exit::OK) {
        cases.fail(name, format!("expected exit 0, got {}", r.describe_exit()));
    }
    let restored = fs::read_to_string(dir.work.join("fds.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .and_then(|p| Proc::adopt(p, "restored"));
    match restored {
        Some(p) => {
            cases.check(name, caller_creds_only(p.pid, &env.user));
            f.counter.wait_for(p.pid, n + 5);
        }
        None => cases.fail(name, "no restored process"),
    }
    cases.finish("closed standard fds");
}

#[test]
fn resource_limits_at_start() {
    let (_g, env) = setup();
    let dir = TestDir::new(&env, "start-rlimits");
    let mut f = fixture(&env, &dir);
    let mut cases = Cases::default();
    let half_gib = (512u64 << 20).to_string();
    // Hard limits below what a helper needs: refused up front, exit 1,
    // naming the limit; the target untouched, nothing written.
    let refused: Vec<(&str, String, &str)> = vec![
        ("hard-fsize-0", "fsize:0:0".into(), "RLIMIT_FSIZE"),
        (
            "hard-fsize-1mib",
            "fsize:1048576:1048576".into(),
            "RLIMIT_FSIZE",
        ),
        ("hard-nofile-16", "nofile:16:16".into(), "RLIMIT_NOFILE"),
        (
            "hard-as-512mib",
            format!("as:{half_gib}:{half_gib}"),
            "RLIMIT_AS",
        ),
        (
            "hard-data-512mib",
            format!("data:{half_gib}:{half_gib}"),
            "RLIMIT_DATA",
        ),
        (
            "hard-stack-256kib",
            "stack:262144:262144".into(),
            "RLIMIT_STACK",
        ),
    ];
    for (name, lim, needle) in &refused {
        cases.start(name);
        let before = TestDir::list(&dir.work);
        let pid = f.counter.proc.pid.to_string();
        let out = dir.work.join(format!("{name}.ckpt"));
        let r = run_wrapped(
            &env,
            &dir,
            Who::User(&env.user),
            &["--rlimit", lim],
            &env.sign_path(),
            &[
                "dump",
                "--pid",
                &pid,
                "-o",
                path_str(&out),
                "--leave-running",
            ],
        );
        // With a file-size limit of 0 the message cannot be written to a
        // stderr that is a file (EFBIG): only the exit code is checked.
        let needle = (*name != "hard-fsize-0").then_some(*needle);
        let check = |r: &ckpt_tests::Run| match needle {
            Some(n) => outcome(r, exit::OTHER, Some(n)),
            None => (r.code != Some(exit::OTHER))
                .then(|| format!("expected exit 1, got {}", r.describe_exit())),
        };
        cases.check(name, check(&r).map(|e| format!("dump: {e}")));
        let r = run_wrapped(
            &env,
            &dir,
            Who::User(&env.user),
            &["--rlimit", lim],
            &env.verify_path(),
            &["restore", path_str(&f.image)],
        );
        cases.check(name, check(&r).map(|e| format!("restore: {e}")));
        cases.check(name, strays_except(&dir, &[f.counter.proc.pid]));
        let new = new_entries(&dir.work, &before);
        if !new.is_empty() {
            cases.fail(name, format!("new files: {new:?}"));
        }
        f.counter.proc.assert_untouched(name);
    }
    // Soft limits lowered, hard ones left: raised at start, all works.
    for (name, lim) in [
        ("soft-fsize-0", "fsize:0:inf"),
        ("soft-nofile-4", "nofile:4:1024"),
        ("soft-cpu-1s", "cpu:1:inf"),
    ] {
        cases.start(name);
        if let Some(i) = f.dump(&env, &dir, &mut cases, name, &["--rlimit", lim]) {
            let p = restore(&env, &dir, &mut cases, name, &["--rlimit", lim], &i);
            drop(p);
            let _ = fs::remove_file(i);
        }
    }
    // A process limit already reached: the helpers may fail (exit 1) but
    // never half-way, and what runs has the caller's credentials.
    let name = "hard-nproc-1";
    cases.start(name);
    let pid = f.counter.proc.pid.to_string();
    let out = dir.work.join("nproc.ckpt");
    let r = run_wrapped(
        &env,
        &dir,
        Who::User(&env.user),
        &["--rlimit", "nproc:1:1"],
        &env.sign_path(),
        &[
            "dump",
            "--pid",
            &pid,
            "-o",
            path_str(&out),
            "--leave-running",
        ],
    );
    cases.check(
        name,
        outcome_any(&r, &[exit::OK, exit::OTHER, exit::DUMP_FAILED], None),
    );
    f.counter.proc.assert_untouched(name);
    let r = run_wrapped(
        &env,
        &dir,
        Who::User(&env.user),
        &["--rlimit", "nproc:1:1"],
        &env.verify_path(),
        &["restore", path_str(&f.image)],
    );
    cases.check(
        name,
        outcome_any(&r, &[exit::OK, exit::OTHER, exit::RESTORE_FAILED], None),
    );
    if let Some(p) = r
        .stdout
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(|p| Proc::adopt(p, "restored"))
    {
        cases.check(name, caller_creds_only(p.pid, &env.user));
    }
    cases.check(name, strays_except(&dir, &[f.counter.proc.pid]));
    cases.finish("resource limits");
}

#[test]
fn umask_and_signal_state_at_start() {
    let (_g, env) = setup();
    let dir = TestDir::new(&env, "start-signals");
    let mut f = fixture(&env, &dir);
    let mut cases = Cases::default();
    for (name, mask) in [("umask-000", "000"), ("umask-777", "777")] {
        cases.start(name);
        let w = ["--umask", mask];
        if let Some(i) = f.dump(&env, &dir, &mut cases, name, &w) {
            let pidfile = dir.work.join(format!("{name}.pid"));
            let r = run_wrapped(
                &env,
                &dir,
                Who::User(&env.user),
                &w,
                &env.verify_path(),
                &["restore", path_str(&i), "--pidfile", path_str(&pidfile)],
            );
            cases.check(name, outcome(&r, exit::OK, None));
            let p = r
                .stdout
                .trim()
                .parse::<i32>()
                .ok()
                .and_then(|p| Proc::adopt(p, "restored"));
            match fs::symlink_metadata(&pidfile) {
                Ok(md) if md.mode() & 0o022 != 0 || md.uid() != env.user.uid => cases.fail(
                    name,
                    format!("pid file mode {:o} owner {}", md.mode() & 0o7777, md.uid()),
                ),
                Ok(_) => {}
                Err(e) => cases.fail(name, format!("no pid file: {e}")),
            }
            drop(p);
            let _ = fs::remove_file(i);
            let _ = fs::remove_file(pidfile);
        }
    }
    // Signals: ignored or blocked in the caller. Dumps work, and the
    // restored process has the image's dispositions and mask (the counter
    // ignores and blocks nothing), not the caller's.
    let original = procfs::status(f.counter.proc.pid).expect("status of the counter");
    let table: Vec<(&str, Vec<&str>)> = vec![
        ("ignore-sigchld", vec!["--ignore", "17"]),
        (
            "ignore-sigterm-sigint-sighup",
            vec!["--ignore", "15", "--ignore", "2", "--ignore", "1"],
        ),
        (
            "ignore-sigpipe-sigxfsz-sigalrm",
            vec!["--ignore", "13", "--ignore", "25", "--ignore", "14"],
        ),
        ("block-all-signals", vec!["--block-all"]),
        (
            "block-all-and-ignore-sigchld",
            vec!["--block-all", "--ignore", "17"],
        ),
    ];
    for (name, w) in &table {
        cases.start(name);
        if let Some(i) = f.dump(&env, &dir, &mut cases, name, w) {
            if let Some(p) = restore(&env, &dir, &mut cases, name, w, &i) {
                let st = procfs::status(p.pid).expect("status of the restored process");
                for key in ["SigBlk", "SigIgn"] {
                    if st.get(key) != original.get(key) {
                        cases.fail(
                            name,
                            format!(
                                "the restored counter has {key} {:?}, the dumped one had {:?}",
                                st.get(key),
                                original.get(key)
                            ),
                        );
                    }
                }
                drop(p);
            }
            let _ = fs::remove_file(i);
        }
    }
    cases.check(
        "block-all-and-ignore-sigchld",
        strays_except(&dir, &[f.counter.proc.pid]),
    );
    cases.finish("umask and signals");
}
