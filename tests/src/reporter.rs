//! The seed's `/bin/passwd` case as a workload: `resuid_report`, a
//! root-owned setuid program of ours (mode 4755) linked against
//! `libckptmark.so` in the same root-owned directory, started by the test
//! user (ruid = the user, euid = suid = 0), and dumped by root.
//!
//! It appends `<count> <pid> <ruid> <euid> <suid> <rgid> <egid> <sgid>
//! <mark>` to a report file every 10 ms (`tests/workloads/resuid_report.c`),
//! so a test reads the credentials a restored process sees itself.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{exit, path_str, procfs, status_ids, wait_until, Env, Proc, Run, TestDir, Who, WAIT};

/// One line of the report file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub count: u64,
    pub pid: i32,
    /// real, effective, saved (getresuid)
    pub uid: [u32; 3],
    pub gid: [u32; 3],
    /// `ckpt_mark()` of the library (42).
    pub mark: i32,
}

/// A running `resuid_report` of the test user.
#[derive(Debug)]
pub struct Reporter {
    pub proc: Proc,
    /// `bin/resuid_report`, root:root 4755.
    pub program: PathBuf,
    /// `bin/libckptmark.so`, root:root 0755.
    pub library: PathBuf,
    /// The report file (owned by the user, 0644).
    pub report: PathBuf,
}

/// Builds `libckptmark.so` and `resuid_report` (setuid root) into
/// `dir.bin` once: (program, library).
pub fn build(env: &Env, dir: &TestDir) -> (PathBuf, PathBuf) {
    let program = dir.bin.join("resuid_report");
    let library = dir.bin.join("libckptmark.so");
    if program.exists() {
        return (program, library);
    }
    dir.compile_with(env, "ckpt_mark", "libckptmark.so", &["-shared", "-fPIC"]);
    let bin = path_str(&dir.bin).to_string();
    dir.compile_with(
        env,
        "resuid_report",
        "resuid_report",
        &[
            &format!("-L{bin}"),
            "-Wl,--no-as-needed",
            "-lckptmark",
            &format!("-Wl,-rpath,{bin}"),
        ],
    );
    fs::set_permissions(&program, fs::Permissions::from_mode(0o4755)).expect("chmod 4755");
    let md = fs::metadata(&program).expect("stat resuid_report");
    assert_eq!(
        (md.uid(), md.mode() & 0o7777),
        (0, 0o4755),
        "resuid_report must be root-owned setuid"
    );
    (program, library)
}

impl Reporter {
    /// Starts `resuid_report` as the test user in `dir.work`, writing
    /// `work/NAME.report`; waits for its first lines and checks it runs
    /// with ruid = the user, euid = suid = fsuid = 0 and has the library
    /// mapped.
    pub fn start(env: &Env, dir: &TestDir, name: &str) -> Reporter {
        Reporter::start_holding(env, dir, name, None)
    }

    /// Like [`Reporter::start`]; with `hold`, the program also keeps that
    /// file open (read-only, opened with euid 0).
    pub fn start_holding(env: &Env, dir: &TestDir, name: &str, hold: Option<&Path>) -> Reporter {
        let (program, library) = build(env, dir);
        let report = dir.work.join(format!("{name}.report"));
        crate::write_owned(&report, b"", &env.user);
        fs::set_permissions(&report, fs::Permissions::from_mode(0o644)).expect("chmod report");
        let proc = Proc::spawn(
            env,
            Who::User(&env.user),
            &program,
            &[path_str(&report)]
                .into_iter()
                .chain(hold.map(path_str))
                .collect::<Vec<_>>(),
            &dir.work,
            &[],
            &dir.work.join(format!("{name}.log")),
        );
        let r = Reporter {
            proc,
            program,
            library,
            report,
        };
        let pid = r.proc.pid;
        r.wait_for(pid, 5);
        let u = env.user.uid;
        let st = procfs::status(pid).expect("status of the setuid reporter");
        assert_eq!(
            status_ids(&st, "Uid"),
            vec![u64::from(u), 0, 0, 0],
            "resuid_report must run with ruid = the user and euid 0 (is {} on a nosuid mount?)",
            dir.bin.display()
        );
        let last = r.last(pid).expect("a report line");
        assert_eq!(last.uid, [u, 0, 0], "{last:?}");
        assert_eq!(last.mark, 42, "{last:?}");
        let maps = fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
        assert!(
            maps.contains(path_str(&r.library)),
            "resuid_report must map {}:\n{maps}",
            r.library.display()
        );
        r
    }

    /// Every complete report line.
    pub fn lines(&self) -> Vec<Report> {
        report_lines(&self.report)
    }

    /// The last line written by `pid`.
    pub fn last(&self, pid: i32) -> Option<Report> {
        self.lines().into_iter().rev().find(|r| r.pid == pid)
    }

    /// Waits until `pid` has reported a count of at least `at_least`;
    /// returns that line.
    pub fn wait_for(&self, pid: i32, at_least: u64) -> Report {
        wait_until(
            WAIT,
            &format!(
                "pid {pid} has reported count {at_least} in {}",
                self.report.display()
            ),
            || self.last(pid).is_some_and(|r| r.count >= at_least),
        );
        self.last(pid).expect("reported")
    }
}

/// Parses a report file; an incomplete last line is ignored.
pub fn report_lines(path: &Path) -> Vec<Report> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete
        .lines()
        .map(|l| {
            let v: Vec<&str> = l.split_whitespace().collect();
            let n = |i: usize| -> u64 {
                v.get(i)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("malformed report line {l:?} in {}", path.display()))
            };
            assert_eq!(v.len(), 9, "malformed report line {l:?}");
            Report {
                count: n(0),
                pid: n(1) as i32,
                uid: [n(2) as u32, n(3) as u32, n(4) as u32],
                gid: [n(5) as u32, n(6) as u32, n(7) as u32],
                mark: n(8) as i32,
            }
        })
        .collect()
}

/// `ckpt-sign dump --pid PID -o root/NAME.ckpt` as root (signed with the
/// host key, requester uid 0), then a copy `work/NAME.ckpt` owned by the
/// test user, mode 0600, for the user to restore. Returns (the dump run,
/// the user's copy).
pub fn dump_as_root(
    env: &Env,
    dir: &TestDir,
    pid: i32,
    name: &str,
    extra: &[&str],
) -> (Run, PathBuf) {
    let root_image = dir.root.join(format!("{name}.ckpt"));
    let pid_s = pid.to_string();
    let mut args = vec!["dump", "--pid", &pid_s, "-o", path_str(&root_image)];
    args.extend_from_slice(extra);
    let run = env.sign_as(Who::Root, dir, &args);
    run.assert_code(exit::OK, "dump as root");
    let md = fs::metadata(&root_image).expect("the image root dumped");
    assert_eq!((md.uid(), md.mode() & 0o7777), (0, 0o600), "root's image");
    let image = dir.work.join(format!("{name}.ckpt"));
    crate::write_owned(&image, &fs::read(&root_image).expect("read"), &env.user);
    (run, image)
}
