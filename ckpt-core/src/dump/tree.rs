//! A process tree frozen as a whole (`dump --tree`): the root and every
//! descendant, each frozen like one process ([`Frozen`]), and the children
//! that had exited but were not reaped (zombies, which cannot be traced:
//! their exit status is read from `/proc`).
//!
//! The freeze is atomic for the tree: a process's children are listed
//! (every thread's `children` file) only once it is stopped, when it can
//! fork no more, and each child found is frozen in turn, so a fork during
//! the dump is caught. The scan is repeated until a whole pass finds
//! nothing new: an orphan reparented to a frozen subreaper meanwhile shows
//! up in the next pass.
//!
//! Owns: every [`Frozen`] of the tree (each resumes its process when
//! dropped). Trusts: the kernel. Who may dump the tree is decided by the
//! caller (the setuid helper), for every pid of [`FrozenTree::pids`].

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;

use nix::errno::Errno;

use super::files::{saved::SavedFiles, FileTable};
use super::{proc_path, DumpError, DumpResult, Frozen, PathOpener};
use crate::image::ImageWriter;
use crate::limits::MAX_TASKS;
use crate::model::Zombie;
use crate::procfs;
use crate::sys;

/// Passes over the tree before giving up on one that keeps changing.
const TREE_ROUNDS: usize = 1000;

/// A frozen process tree. Dropping it resumes every process.
pub struct FrozenTree {
    /// The root first; every other process after its parent.
    procs: Vec<Frozen>,
    zombies: Vec<Zombie>,
    /// Frozen with [`FrozenTree::seize_process`]: children are refused.
    one_process: bool,
}

impl std::fmt::Debug for FrozenTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrozenTree")
            .field("pids", &self.pids())
            .field("zombies", &self.zombies)
            .finish()
    }
}

impl Frozen {
    /// The children of this (stopped) process: every thread's list.
    fn children(&self) -> Result<Vec<i32>, DumpError> {
        let tids = std::iter::once(self.pid).chain(self.threads.iter().map(|t| t.tracee.pid()));
        let mut out = Vec::new();
        for tid in tids {
            let text = self.read_proc(&format!("task/{tid}/children"))?;
            out.extend(
                procfs::children::parse_children(&text).map_err(self.parse_err("children"))?,
            );
        }
        Ok(out)
    }
}

/// `pid` as a zombie, if it is one.
fn zombie(pid: i32) -> Option<Zombie> {
    let text = std::fs::read_to_string(proc_path(pid, "stat")).ok()?;
    let st = procfs::stat::parse_stat(&text).ok()?;
    (st.state == 'Z').then_some(Zombie {
        pid,
        ppid: st.ppid,
        pgid: st.pgrp,
        sid: st.session,
        exit_status: st.exit_code,
        comm: st.comm,
    })
}

/// The shared anonymous memory objects (dev, ino) that more than one of
/// `pids` maps, and the deleted files they map, each with the parts of it
/// they map (offset, length; sorted, merged).
fn shared_memory(pids: &[i32]) -> HashMap<(u64, u64), Vec<(u64, u64)>> {
    /// Who maps an object, which parts of it, and whether it is shared
    /// anonymous memory (else a deleted file).
    type Seen = (HashSet<i32>, Vec<(u64, u64)>, bool);
    let mut seen: HashMap<(u64, u64), Seen> = HashMap::new();
    for &pid in pids {
        let Ok(text) = std::fs::read_to_string(proc_path(pid, "maps")) else {
            continue;
        };
        let Ok(maps) = procfs::maps::parse_maps(&text) else {
            continue;
        };
        for m in maps {
            let zero = m
                .path
                .as_deref()
                .is_some_and(|p| p.starts_with("/dev/zero"));
            let shmem = m.shared && m.inode != 0 && zero;
            let deleted_file = m.inode != 0 && m.deleted && !zero;
            if !(shmem || deleted_file) {
                continue;
            }
            let key = (libc::makedev(m.dev_major, m.dev_minor), m.inode);
            let e = seen.entry(key).or_default();
            e.0.insert(pid);
            e.1.push((m.offset, m.end - m.start));
            e.2 = shmem;
        }
    }
    seen.into_iter()
        .filter(|(_, (who, _, shmem))| who.len() > 1 || !shmem)
        .map(|(k, (_, mut ranges, _))| {
            ranges.sort_unstable();
            let mut merged: Vec<(u64, u64)> = Vec::new();
            for (off, len) in ranges {
                match merged.last_mut() {
                    Some((o, l)) if off <= *o + *l => *l = (*l).max(off + len - *o),
                    _ => merged.push((off, len)),
                }
            }
            (k, merged)
        })
        .collect()
}

impl FrozenTree {
    /// Freeze the process `root` (`pidfd` must refer to it) and all its
    /// descendants. On failure every process frozen so far is resumed.
    pub fn seize(pidfd: OwnedFd, root: i32) -> Result<FrozenTree, DumpError> {
        let mut tree = FrozenTree {
            procs: vec![Frozen::seize(pidfd, root)?],
            zombies: Vec::new(),
            one_process: false,
        };
        for _ in 0..TREE_ROUNDS {
            if !tree.freeze_new_children()? {
                return Ok(tree);
            }
        }
        Err(DumpError::Unsupported {
            pid: root,
            resource: "a process tree that kept changing during the freeze".into(),
        })
    }

    /// Freeze the one process `pid` (`pidfd` must refer to it): its dump
    /// refuses children, naming the first.
    pub fn seize_process(pidfd: OwnedFd, pid: i32) -> Result<FrozenTree, DumpError> {
        Ok(FrozenTree {
            procs: vec![Frozen::seize(pidfd, pid)?],
            zombies: Vec::new(),
            one_process: true,
        })
    }

    /// One pass: every child of every frozen process not yet held is
    /// frozen (or noted as a zombie). `true` if anything was added.
    fn freeze_new_children(&mut self) -> Result<bool, DumpError> {
        let mut added = false;
        let mut i = 0;
        while i < self.procs.len() {
            for kid in self.procs[i].children()? {
                if self.holds(kid) {
                    continue;
                }
                if self.procs.len() + self.zombies.len() >= MAX_TASKS {
                    return Err(DumpError::Unsupported {
                        pid: self.procs[0].pid,
                        resource: format!("a tree of more than {MAX_TASKS} processes"),
                    });
                }
                if let Some(z) = zombie(kid) {
                    self.zombies.push(z);
                    added = true;
                    continue;
                }
                let pidfd = match sys::pidfd_open(kid) {
                    Ok(fd) => fd,
                    // Gone: its parent is frozen, so it was not reaped: it
                    // is a zombie the next pass sees.
                    Err(Errno::ESRCH) => {
                        added = true;
                        continue;
                    }
                    Err(errno) => {
                        return Err(DumpError::Proc {
                            pid: kid,
                            what: "pidfd_open".into(),
                            source: errno.into(),
                        })
                    }
                };
                match Frozen::seize(pidfd, kid) {
                    Ok(f) => self.procs.push(f),
                    // It exited meanwhile: a zombie, seen next pass.
                    Err(DumpError::Gone { .. }) => {}
                    Err(e) => return Err(e),
                }
                added = true;
            }
            i += 1;
        }
        Ok(added)
    }

    fn holds(&self, pid: i32) -> bool {
        self.procs.iter().any(|p| p.pid == pid) || self.zombies.iter().any(|z| z.pid == pid)
    }

    /// The pid of every frozen process of the tree, the root first: whom
    /// the caller must be allowed to dump. (A zombie has no memory left;
    /// what the image keeps of it, its exit status, is what its parent,
    /// one of these, reads by waiting for it.)
    pub fn pids(&self) -> Vec<i32> {
        self.procs.iter().map(|p| p.pid).collect()
    }

    /// The root's credentials, read again now that it is stopped.
    pub fn status_creds(&self) -> Result<crate::model::Credentials, DumpError> {
        match self.procs.first() {
            Some(p) => p.status_creds(),
            None => Err(DumpError::Gone { pid: 0 }),
        }
    }

    /// The frozen processes, the root first.
    pub fn processes(&self) -> &[Frozen] {
        &self.procs
    }

    /// See [`Frozen::set_cancel`]; for every process.
    pub fn set_cancel(&mut self, cancelled: fn() -> bool) {
        for p in &mut self.procs {
            p.set_cancel(cancelled);
        }
    }

    /// See [`Frozen::set_path_opener`]; for every process.
    pub fn set_path_opener(&mut self, opener: PathOpener) {
        for p in &mut self.procs {
            p.set_path_opener(opener.clone());
        }
    }

    /// See [`Frozen::set_digest_cache`]; one cache for every process.
    pub fn set_digest_cache(&mut self, cache: super::DigestCache) {
        for p in &mut self.procs {
            p.set_digest_cache(cache.clone());
        }
    }

    /// See [`Frozen::set_fd_reader`]; for every process.
    pub fn set_fd_reader(&mut self, reader: super::FdReader) {
        for p in &mut self.procs {
            p.set_fd_reader(reader.clone());
        }
    }

    /// Capture every process, in order, streaming each one's memory into
    /// `writer`. Descriptions shared between processes are one entry of
    /// the file table; a pipe or socket whose other end another process
    /// of the tree holds is inside the image.
    pub fn dump(&mut self, writer: &mut ImageWriter) -> Result<DumpResult, DumpError> {
        let pids: Vec<i32> = self.procs.iter().map(|p| p.pid).collect();
        let root = pids.first().copied().unwrap_or(0);
        let mut saved = SavedFiles::default();
        saved.set_shared_memory(shared_memory(&pids));
        if self.one_process {
            for p in &self.procs {
                p.refuse_children()?;
            }
        }
        let of_parent = self.refuse_shared_tables()?;
        for (p, &shares) in self.procs.iter_mut().zip(&of_parent) {
            p.fds_of_parent = shares;
        }
        // Whose fds hold the descriptions: a process sharing its parent's
        // fd table holds them through its parent.
        let holders: Vec<i32> = self
            .procs
            .iter()
            .filter(|p| !p.fds_of_parent)
            .map(|p| p.pid)
            .collect();
        let mut table = FileTable::default();
        table.survey(&holders);
        let mut tasks = Vec::with_capacity(self.procs.len());
        let mut first = None;
        for (i, p) in self.procs.iter_mut().enumerate() {
            let task = u32::try_from(i).unwrap_or(u32::MAX);
            let t = p.dump_task(writer, task, &mut saved, &mut table)?;
            match &first {
                None => first = Some((t.cpu, t.vdso_digest.clone())),
                Some((_, vdso)) if *vdso != t.vdso_digest => {
                    return Err(DumpError::Unsupported {
                        pid: p.pid,
                        resource: "a vdso that differs from the root process's".into(),
                    })
                }
                Some(_) => {}
            }
            tasks.push(t.process);
        }
        let Some((cpu, vdso_digest)) = first else {
            return Err(DumpError::Gone { pid: root });
        };
        Ok(DumpResult {
            tasks,
            files: table.finish()?,
            spaces: saved.into_spaces(),
            zombies: self.zombies.clone(),
            cpu,
            vdso_digest,
        })
    }

    /// Processes that share what only threads share (an fd table, the
    /// filesystem context, signal handlers or a whole address space:
    /// `clone` with `CLONE_FILES`, `CLONE_FS`, `CLONE_SIGHAND` or
    /// `CLONE_VM` but not `CLONE_THREAD`): each is compared with the
    /// process before it and with its parent. Sharing its parent's fd
    /// table is recorded (restore makes the child share it again): the
    /// result says, for each process, whether it does. Anything else is
    /// refused, naming both.
    fn refuse_shared_tables(&self) -> Result<Vec<bool>, DumpError> {
        const KINDS: [(libc::c_long, &str); 4] = [
            (sys::KCMP_FILES, "their fd table (CLONE_FILES)"),
            (sys::KCMP_FS, "their working directory and umask (CLONE_FS)"),
            (sys::KCMP_SIGHAND, "their signal handlers (CLONE_SIGHAND)"),
            (
                sys::KCMP_VM,
                "their address space (CLONE_VM without CLONE_THREAD)",
            ),
        ];
        let mut of_parent = vec![false; self.procs.len()];
        for (i, p) in self.procs.iter().enumerate().skip(1) {
            let ppid = procfs::stat::parse_stat(&p.read_proc("stat")?)
                .map(|st| st.ppid)
                .unwrap_or(0);
            let parent_here = ppid != p.pid && self.procs.iter().any(|q| q.pid == ppid);
            of_parent[i] =
                parent_here && sys::kcmp_shared(ppid, p.pid, sys::KCMP_FILES).unwrap_or(false);
            let others = [Some(self.procs[i - 1].pid), Some(ppid)];
            for other in others.into_iter().flatten() {
                if other == p.pid || !self.procs.iter().any(|q| q.pid == other) {
                    continue;
                }
                for (kind, what) in KINDS {
                    // Another process with the parent's table has it
                    // through the parent.
                    if kind == sys::KCMP_FILES && of_parent[i] {
                        continue;
                    }
                    if sys::kcmp_shared(other, p.pid, kind).unwrap_or(false) {
                        return Err(DumpError::Unsupported {
                            pid: p.pid,
                            resource: format!("processes {other} and {} that share {what}", p.pid),
                        });
                    }
                }
            }
        }
        Ok(of_parent)
    }

    /// Let every process continue as if nothing happened (children first).
    pub fn resume(mut self) -> Result<(), DumpError> {
        let mut first_err = Ok(());
        while let Some(p) = self.procs.pop() {
            let r = p.resume();
            if first_err.is_ok() {
                first_err = r;
            }
        }
        first_err
    }

    /// Kill every process of the tree (the image is safely on disk); the
    /// zombies go with their parents.
    pub fn kill(mut self) -> Result<(), DumpError> {
        let mut first_err = Ok(());
        while let Some(p) = self.procs.pop() {
            let r = p.kill();
            if first_err.is_ok() {
                first_err = r;
            }
        }
        first_err
    }
}
