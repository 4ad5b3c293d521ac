//! The file table and the filesystem context: every fd, each open file
//! description once (two fds share one when `kcmp` says so), captured by
//! the module for its kind; and the working directory.
//!
//! Trusts: nothing read from `/proc` (paths may hold any bytes; fdinfo is
//! parsed strictly). What restore cannot reopen is refused here, naming
//! the fd: anything that is not a path (unix sockets other than socket
//! pairs, pipes with an end outside the image, anonymous inodes other than
//! eventfd, signalfd, timerfd, epoll and inotify), deleted files, locks
//! other than flock, POSIX and OFD ones; network sockets, devices and the
//! kernel objects nobody restores are named by [`refused`]; TCP and UDP
//! sockets that need no peer are [`inet`]'s. Pipes, FIFOs
//! and unix socket pairs are [`pipe`]'s and [`unix`]'s; pseudo-terminal
//! pairs (a master and its slaves) [`tty`]'s. A memfd or a file
//! unlinked while open is [`saved`] with its content.
//!
//! An epoll's entries name other descriptions, so they are resolved
//! ([`epoll::resolve`]) once the whole table is known.
//!
//! A new kind of description: a variant of
//! [`OpenFileKind`](crate::model::OpenFileKind), a module here that
//! recognises and captures it, and one arm where `kind` is decided below.
//! fds 0-2 connected outside the image are [`external`].

mod epoll;
mod eventfd;
mod external;
mod inet;
mod inotify;
mod locks;
mod pipe;
mod refused;
mod regular;
pub(super) mod saved;
mod signalfd;
mod timerfd;
mod tty;
mod unix;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use super::{proc_path, DumpError, Frozen};
use crate::model::{FdState, OpenFile, OpenFileKind};
use crate::procfs;
use crate::sys;

impl Frozen {
    /// The working directory, and whether it was removed (the kernel
    /// shows `PATH (deleted)` and its link count is 0; the path returned is
    /// without the suffix). A removed one whose path is the root is refused.
    pub(super) fn cwd(&self) -> Result<(String, bool), DumpError> {
        let pid = self.pid;
        let err = |source| DumpError::Proc {
            pid,
            what: "cwd".into(),
            source,
        };
        let cwd = std::fs::read_link(proc_path(pid, "cwd"))
            .map_err(err)?
            .to_string_lossy()
            .into_owned();
        let removed = std::fs::metadata(proc_path(pid, "cwd"))
            .map_err(err)?
            .nlink()
            == 0;
        match cwd.strip_suffix(" (deleted)") {
            Some(path) if removed => {
                if path == "/" || !path.starts_with('/') {
                    return Err(self.unsupported(format!("a deleted working directory {cwd}")));
                }
                Ok((path.to_string(), true))
            }
            _ => Ok((cwd, false)),
        }
    }

    /// Every fd, in number order, and the descriptions they refer to
    /// (indexed by `FdState::description`); refuses what restore cannot
    /// reopen, naming the fd.
    /// A memfd or unlinked file is added to `saved` (its content is
    /// written after the memory).
    pub(super) fn dump_fds(
        &self,
        saved: &mut saved::SavedFiles,
        table: &mut FileTable,
    ) -> Result<Vec<FdState>, DumpError> {
        let pid = self.pid;
        let unsupported = |resource: String| DumpError::Unsupported { pid, resource };
        let dir = std::fs::read_dir(proc_path(pid, "fd")).map_err(|source| DumpError::Proc {
            pid,
            what: "fd".into(),
            source,
        })?;
        let mut numbers = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|source| DumpError::Proc {
                pid,
                what: "fd".into(),
                source,
            })?;
            if let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        // Paths the target uses: where the files an inotify watches are
        // looked for first (see `inotify`).
        let mut near = vec![self.cwd()?.0];
        for &fd in &numbers {
            if let Ok(l) = std::fs::read_link(proc_path(pid, &format!("fd/{fd}"))) {
                let l = l.to_string_lossy().into_owned();
                if l.starts_with('/') {
                    if let Some((parent, _)) = l.rsplit_once('/') {
                        near.push(if parent.is_empty() {
                            "/".into()
                        } else {
                            parent.into()
                        });
                    }
                    near.push(l);
                }
            }
        }
        let stat =
            procfs::stat::parse_stat(&self.read_proc("stat")?).map_err(self.parse_err("stat"))?;
        table.ptys.set_session(stat.session);
        let mut fds = Vec::new();
        // Epoll descriptions and their raw entries, resolved at the end.
        let mut epolls = Vec::new();
        // fd number -> description index.
        let mut by_fd = HashMap::new();
        // fds 0-2 recorded as connected outside the image.
        let mut outside = Vec::new();
        for fd in numbers {
            let link = std::fs::read_link(proc_path(pid, &format!("fd/{fd}")))
                .map_err(|source| DumpError::Proc {
                    pid,
                    what: format!("fd/{fd}"),
                    source,
                })?
                .to_string_lossy()
                .into_owned();
            let info_text = self.read_proc(&format!("fdinfo/{fd}"))?;
            let info =
                procfs::fdinfo::parse_fdinfo(&info_text).map_err(|source| DumpError::Parse {
                    pid,
                    what: format!("fdinfo/{fd}"),
                    source,
                })?;
            let meta =
                std::fs::metadata(proc_path(pid, &format!("fd/{fd}"))).map_err(|source| {
                    DumpError::Proc {
                        pid,
                        what: format!("fd/{fd}"),
                        source,
                    }
                })?;
            // TCP and UDP sockets restore can recreate; other network
            // sockets are refused.
            let inet = inet::classify(pid, &self.pidfd, fd, &link, &meta)?;
            if inet.is_none() {
                if let Some(resource) = refused::refusal(&self.pidfd, fd, &link, &meta) {
                    return Err(unsupported(resource));
                }
            }
            // Pipes, FIFOs and unix sockets held inside the image first.
            let inside = match inet {
                Some(kind) => Some(kind),
                None => match pipe::classify(
                    pid,
                    &self.pidfd,
                    fd,
                    &link,
                    &meta,
                    info.flags,
                    &table.ends,
                )? {
                    Some(kind) => Some(kind),
                    None => {
                        unix::classify(pid, &self.pidfd, fd, &link, &meta, &info_text, &table.held)?
                    }
                },
            };
            // A pseudo-terminal master, or a slave whose master is held.
            let inside = match inside {
                Some(kind) => Some(kind),
                None => table.ptys.classify(pid, &self.pidfd, fd, &link, &meta)?,
            };
            let kind = match inside {
                Some(kind) => Some(kind),
                None => external::classify(pid, fd, &link, &meta, &mut outside)?,
            };
            let kind = match kind {
                Some(kind) => Some(kind),
                None => saved.capture(self, fd, &link, &meta)?,
            };
            let kind = match kind {
                Some(kind) => kind,
                None if link == eventfd::LINK => eventfd::capture(pid, fd, &info_text)?,
                None if link == signalfd::LINK => signalfd::capture(pid, fd, &info_text)?,
                None if link == timerfd::LINK => timerfd::capture(pid, fd, &info_text)?,
                None if link == epoll::LINK => {
                    epolls.push((fd, epoll::capture(pid, fd, &info_text)?));
                    OpenFileKind::Epoll {
                        targets: Vec::new(),
                    }
                }
                None if link == inotify::LINK => self.capture_inotify(fd, &info_text, &near)?,
                None if !link.starts_with('/') => {
                    return Err(unsupported(format!("fd {fd} ({link})")));
                }
                None if link.ends_with(" (deleted)") => {
                    return Err(unsupported(format!("fd {fd}: deleted file {link}")));
                }
                None => regular::kind_of(&link, &meta)
                    .ok_or_else(|| unsupported(format!("fd {fd} ({link})")))?,
            };
            let cloexec = info.flags & (libc::O_CLOEXEC as u32) != 0;
            let flags = info.flags & !(libc::O_CLOEXEC as u32);
            // Same description as an earlier fd?
            // Same description as an earlier fd, of this task or another?
            let mut found = None;
            for (i, d) in table.descriptions.iter().enumerate() {
                if d.dev == meta.dev() && d.ino == meta.ino() && d.flags == flags {
                    let (hpid, hfd) = table.holders.get(i).copied().unwrap_or((pid, -1));
                    if sys::kcmp_same_file_in(hpid, hfd, pid, fd).unwrap_or(false) {
                        found = Some(i);
                        break;
                    }
                }
            }
            let description = match found {
                Some(i) => i,
                None => {
                    let locks = locks::capture(pid, fd, &link, &kind, &info_text)?;
                    table.descriptions.push(OpenFile {
                        kind,
                        path: link,
                        flags,
                        offset: info.pos,
                        dev: meta.dev(),
                        ino: meta.ino(),
                        locks,
                    });
                    table.holders.push((pid, fd));
                    table.descriptions.len() - 1
                }
            };
            by_fd.insert(fd, description);
            fds.push(FdState {
                fd,
                description: u32::try_from(description).unwrap_or(u32::MAX),
                cloexec,
            });
        }
        for (efd, entries) in epolls {
            let targets = epoll::resolve(
                pid,
                efd,
                &entries,
                &table.descriptions,
                &table.holders,
                &by_fd,
            )?;
            if let Some(&i) = by_fd.get(&efd) {
                if let Some(d) = table.descriptions.get_mut(i) {
                    d.kind = OpenFileKind::Epoll { targets };
                }
            }
        }
        Ok(fds)
    }
}

/// The image's file table while its tasks are dumped: every open file
/// description once, with one (pid, fd) that holds it (for `kcmp`), and
/// what the whole image holds (pipe ends, sockets), so that "inside the
/// image" means held by any of its tasks.
#[derive(Default)]
pub(super) struct FileTable {
    descriptions: Vec<OpenFile>,
    holders: Vec<(i32, i32)>,
    ends: pipe::Ends,
    held: unix::Held,
    /// The pseudo-terminal masters the image holds.
    ptys: tty::Ptys,
}

impl FileTable {
    /// Notes the pipe ends and sockets of every fd of `pids` (every task
    /// of the image), before any task's fds are captured.
    pub(super) fn survey(&mut self, pids: &[i32]) {
        for &pid in pids {
            let numbers: Vec<i32> = std::fs::read_dir(proc_path(pid, "fd"))
                .map(|dir| {
                    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            survey(pid, &numbers, &mut self.ends, &mut self.held);
            if let Ok(pidfd) = sys::pidfd_open(pid) {
                for &fd in &numbers {
                    if let Ok(meta) = std::fs::metadata(proc_path(pid, &format!("fd/{fd}"))) {
                        self.ptys.note(&pidfd, fd, &meta);
                    }
                }
            }
        }
    }

    /// The finished table, once every task's fds are captured: at most
    /// one read and one write description per pipe, a FIFO's data held by
    /// its first description only.
    pub(super) fn finish(mut self) -> Result<Vec<OpenFile>, DumpError> {
        pipe::check(&mut self.descriptions);
        self.ptys.finish(&mut self.descriptions);
        Ok(self.descriptions)
    }
}

/// Which pipes have both ends in the image, and which sockets it holds
/// (fds that cannot be read are left to the main pass to report).
fn survey(pid: i32, numbers: &[i32], ends: &mut pipe::Ends, held: &mut unix::Held) {
    for fd in numbers {
        let path = proc_path(pid, &format!("fd/{fd}"));
        let (Ok(link), Ok(meta)) = (std::fs::read_link(&path), std::fs::metadata(&path)) else {
            continue;
        };
        let link = link.to_string_lossy();
        held.note(&link, meta.ino());
        let flags = std::fs::read_to_string(proc_path(pid, &format!("fdinfo/{fd}")))
            .ok()
            .and_then(|t| procfs::fdinfo::parse_fdinfo(&t).ok())
            .map(|i| i.flags);
        if let Some(flags) = flags {
            ends.note(&link, meta.ino(), flags);
        }
    }
}
