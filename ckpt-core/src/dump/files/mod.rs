//! The file table and the filesystem context: every fd, each open file
//! description once (two fds share one when `kcmp` says so), captured by
//! the module for its kind; and the working directory.
//!
//! Trusts: nothing read from `/proc` (paths may hold any bytes; fdinfo is
//! parsed strictly). What restore cannot reopen is refused here, naming
//! the fd: file locks, anything that is not a path (pipes, sockets,
//! anonymous inodes other than eventfd, signalfd and timerfd), deleted
//! files; network sockets, devices and the kernel objects nobody restores
//! are named by [`refused`].
//!
//! A new kind of description: a variant of
//! [`OpenFileKind`](crate::model::OpenFileKind), a module here that
//! recognises and captures it, and one arm where `kind` is decided below.
//! fds 0-2 connected outside the image are [`external`].

mod eventfd;
mod external;
mod refused;
mod regular;
mod signalfd;
mod timerfd;

use std::os::unix::fs::MetadataExt;

use super::{proc_path, DumpError, Frozen};
use crate::model::{FdState, OpenFile};
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
    pub(super) fn dump_fds(&self) -> Result<(Vec<FdState>, Vec<OpenFile>), DumpError> {
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
        let mut fds = Vec::new();
        let mut descriptions: Vec<OpenFile> = Vec::new();
        // description index -> one fd holding it (for kcmp)
        let mut holders: Vec<i32> = Vec::new();
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
            if info_text.lines().any(|l| l.starts_with("lock:")) {
                return Err(unsupported(format!("fd {fd} ({link}) holds a file lock")));
            }
            let meta =
                std::fs::metadata(proc_path(pid, &format!("fd/{fd}"))).map_err(|source| {
                    DumpError::Proc {
                        pid,
                        what: format!("fd/{fd}"),
                        source,
                    }
                })?;
            if let Some(resource) = refused::refusal(&self.pidfd, fd, &link, &meta) {
                return Err(unsupported(resource));
            }
            let kind = match external::classify(pid, fd, &link, &meta, &mut outside)? {
                Some(kind) => kind,
                None if link == eventfd::LINK => eventfd::capture(pid, fd, &info_text)?,
                None if link == signalfd::LINK => signalfd::capture(pid, fd, &info_text)?,
                None if link == timerfd::LINK => timerfd::capture(pid, fd, &info_text)?,
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
            let mut found = None;
            for (i, d) in descriptions.iter().enumerate() {
                if d.dev == meta.dev() && d.ino == meta.ino() && d.flags == flags {
                    let holder = holders.get(i).copied().unwrap_or(-1);
                    if sys::kcmp_same_file(pid, holder, fd).unwrap_or(false) {
                        found = Some(i);
                        break;
                    }
                }
            }
            let description = match found {
                Some(i) => i,
                None => {
                    descriptions.push(OpenFile {
                        kind,
                        path: link,
                        flags,
                        offset: info.pos,
                        dev: meta.dev(),
                        ino: meta.ino(),
                    });
                    holders.push(fd);
                    descriptions.len() - 1
                }
            };
            fds.push(FdState {
                fd,
                description: u32::try_from(description).unwrap_or(u32::MAX),
                cloexec,
            });
        }
        Ok((fds, descriptions))
    }
}
