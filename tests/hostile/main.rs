//! The hostile suite: the installed setuid helpers attacked by an
//! unprivileged caller, one distinct input or mutation per case.
//!
//! Every case runs `ckpt-sign` or `ckpt-verify` (from `CKPT_TEST_BIN`) as
//! the test user and asserts the exit code documented in SECURITY.md §6, a
//! one-line message on stderr that names what failed, and no effect: no new
//! file in the caller's directories (no image, no temporary file, no pid
//! file), no root-owned file where the caller pointed, no process left (no
//! restored process, no stub), and no credentials beyond the caller's for
//! anything that does run. Cases are table-driven: each has its own name,
//! and a failing test lists every failing case by name.
//!
//! Cases by theme (module, count):
//!
//! | module | theme | cases |
//! |---|---|---|
//! | [`images`] | header, trailer and framing fields | 25 |
//! | [`images`] | manifest fields, re-encoded structurally (unsigned images) | 39 |
//! | [`images`] | manifests claiming root (unsigned, re-signed by the caller) and a 64 MiB flood | 4 |
//! | [`images`] | manifest fields changed under a valid signature | 16 |
//! | [`images`] | signature block fields | 15 |
//! | [`images`] | chunks, manifests, signatures and trailers swapped between images | 10 |
//! | [`paths`] | a name flipped between a file and a symlink during the call | 4 |
//! | [`pids`] | targets that die during the dump, reused pids, a user-namespace target | 10 |
//! | [`start`] | poisoned environment (12), closed fds (4), rlimits (10), umask (2), signals (5) | 33 |
//! | [`disk`] | a full file system | 4 |
//! | [`config`] | host keys (10), policy (4), `ckpt.toml` (1), `--key` files (4), audit socket (2) | 21 |
//! | [`concurrency`] | three users dumping and restoring at once | 2 |
//!
//! 183 cases in all.
//!
//! Tests that change the helpers' configuration directory or the audit
//! socket hold [`exclusive`]; every other test holds [`shared`], so none of
//! them sees a configuration a case broke on purpose.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::too_many_arguments)]

mod concurrency;
mod config;
mod disk;
mod images;
mod paths;
mod pids;
mod start;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use ckpt_tests::{processes_mentioning, procfs, status_ids, Env, Proc, Run, TestDir, Who};

static CONFIG: RwLock<()> = RwLock::new(());

/// Held by every test that relies on the default configuration.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    CONFIG.read().unwrap_or_else(|p| p.into_inner())
}

/// Held by a test that changes the configuration directory or the audit
/// socket (no other test of this binary runs meanwhile).
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    CONFIG.write().unwrap_or_else(|p| p.into_inner())
}

/// Every test starts here: the shared side of the configuration lock, the
/// environment, and the audit capture (so the helpers' audit records have
/// a reader and a refusal prints its one line, not a warning too).
pub fn setup() -> (RwLockReadGuard<'static, ()>, Env) {
    let g = shared();
    let env = Env::require();
    ckpt_tests::syslog::Syslog::start();
    (g, env)
}

/// Like [`setup`] with the exclusive side of the lock.
pub fn setup_exclusive() -> (RwLockWriteGuard<'static, ()>, Env) {
    let g = exclusive();
    let env = Env::require();
    ckpt_tests::syslog::Syslog::start();
    (g, env)
}

/// The problems found by a table of cases; panics at the end listing each
/// failing case by name.
#[derive(Default)]
pub struct Cases {
    total: usize,
    names: BTreeSet<String>,
    problems: Vec<String>,
}

impl Cases {
    /// Starts a case; names must be unique within a table.
    pub fn start(&mut self, name: &str) {
        self.total += 1;
        assert!(
            self.names.insert(name.to_string()),
            "duplicate case name {name}"
        );
    }

    pub fn fail(&mut self, name: &str, what: impl Into<String>) {
        self.problems.push(format!("[{name}] {}", what.into()));
    }

    /// Records `problem` (if any) against case `name`.
    pub fn check(&mut self, name: &str, problem: Option<String>) {
        if let Some(p) = problem {
            self.fail(name, p);
        }
    }

    pub fn finish(self, theme: &str) {
        assert!(self.total > 0, "{theme}: no case ran");
        assert!(
            self.problems.is_empty(),
            "{theme}: {} problem(s) in {} case(s):\n  {}",
            self.problems.len(),
            self.total,
            self.problems.join("\n  ")
        );
        eprintln!("{theme}: {} cases passed", self.total);
    }
}

/// The non-empty lines of stderr.
fn stderr_lines(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// `None` when `run` exited `want` and, for a failure, said why in exactly
/// one line on stderr that starts with the helper's name and mentions
/// `needle` (when given); otherwise what is wrong.
pub fn outcome(run: &Run, want: i32, needle: Option<&str>) -> Option<String> {
    if run.code != Some(want) {
        return Some(format!(
            "expected exit {want}, got {}; stderr: {:?}",
            run.describe_exit(),
            run.stderr.trim()
        ));
    }
    if want == 0 || want == 8 || want == 9 {
        return None;
    }
    one_line(run, needle)
}

/// Like [`outcome`] but accepts any of `codes`.
pub fn outcome_any(run: &Run, codes: &[i32], needle: Option<&str>) -> Option<String> {
    match run.code {
        Some(c) if codes.contains(&c) => outcome(run, c, needle),
        _ => Some(format!(
            "expected exit in {codes:?}, got {}; stderr: {:?}",
            run.describe_exit(),
            run.stderr.trim()
        )),
    }
}

/// The message is one line, names the helper and (when given) `needle`.
pub fn one_line(run: &Run, needle: Option<&str>) -> Option<String> {
    let lines = stderr_lines(run);
    if lines.len() != 1 {
        return Some(format!(
            "expected a one-line message on stderr, got {} lines: {:?}",
            lines.len(),
            run.stderr
        ));
    }
    let line = lines[0];
    if !(line.starts_with("ckpt-sign: ") || line.starts_with("ckpt-verify: ")) || line.len() < 20 {
        return Some(format!(
            "the message does not say which helper failed and why: {line:?}"
        ));
    }
    if let Some(n) = needle {
        if !line.contains(n) {
            return Some(format!("the message does not name {n:?}: {line:?}"));
        }
    }
    None
}

/// Kills (and reports) every process still running with `dir`'s path in
/// its command line: a refused call must leave none.
pub fn strays(dir: &TestDir) -> Option<String> {
    let pids = processes_mentioning(ckpt_tests::path_str(&dir.root));
    if pids.is_empty() {
        return None;
    }
    let described: Vec<String> = pids
        .iter()
        .map(|&p| {
            let uid = procfs::status(p)
                .map(|s| status_ids(&s, "Uid")[0].to_string())
                .unwrap_or_default();
            format!("{p} (uid {uid})")
        })
        .collect();
    for pid in pids {
        drop(Proc::adopt(pid, "stray process"));
    }
    Some(format!("processes left running: {described:?}"))
}

/// Strays other than the listed processes (which the test still runs).
pub fn strays_except(dir: &TestDir, keep: &[i32]) -> Option<String> {
    let pids: Vec<i32> = processes_mentioning(ckpt_tests::path_str(&dir.root))
        .into_iter()
        .filter(|p| !keep.contains(p))
        .collect();
    if pids.is_empty() {
        return None;
    }
    for &pid in &pids {
        drop(Proc::adopt(pid, "stray process"));
    }
    Some(format!("processes left running: {pids:?}"))
}

/// Entries of `dir` not in `before`.
pub fn new_entries(dir: &Path, before: &[String]) -> Vec<String> {
    TestDir::list(dir)
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect()
}

/// Every path under `top` (inclusive of `top` when `include_top`) owned
/// by root.
pub fn root_owned_under(top: &Path, include_top: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![top.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = fs::symlink_metadata(&p) else {
            continue;
        };
        if md.uid() == 0 && (include_top || p != top) {
            out.push(p.clone());
        }
        if md.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    out
}

/// `None` when `pid` runs with exactly `who`'s uids and gids and no
/// capability; otherwise what is wrong.
pub fn caller_creds_only(pid: i32, who: &ckpt_tests::Account) -> Option<String> {
    let st = procfs::status(pid)?;
    let uids = status_ids(&st, "Uid");
    let gids = status_ids(&st, "Gid");
    if uids.iter().any(|&u| u != u64::from(who.uid))
        || gids.iter().any(|&g| g != u64::from(who.gid))
    {
        return Some(format!(
            "pid {pid} runs with uids {uids:?} gids {gids:?}, not the caller's"
        ));
    }
    for cap in ["CapPrm", "CapEff", "CapAmb", "CapInh"] {
        if status_ids(&st, cap)[0] != 0 {
            return Some(format!(
                "pid {pid} holds capabilities: {cap} {:x}",
                status_ids(&st, cap)[0]
            ));
        }
    }
    None
}

/// Runs `program ARGS` as `who` through the `hostile_start` wrapper with
/// `wrapper` options, in `dir.work`.
pub fn run_wrapped(
    env: &Env,
    dir: &TestDir,
    who: Who,
    wrapper: &[&str],
    program: &Path,
    args: &[&str],
) -> Run {
    let launcher = dir.bin.join("hostile_start");
    if !launcher.exists() {
        dir.compile(env, "hostile_start");
    }
    let mut cmd = env.command(who, &launcher);
    cmd.args(wrapper)
        .arg("--")
        .arg(program)
        .args(args)
        .current_dir(&dir.work);
    dir.run(cmd)
}
