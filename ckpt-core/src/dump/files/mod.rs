//! The file table and the filesystem context: every fd, each open file
//! description once (two fds share one when `kcmp` says so), captured by
//! the module for its kind; and the working directory.
//!
//! Trusts: nothing read from `/proc` (paths may hold any bytes; fdinfo is
//! parsed strictly). What restore cannot reopen is refused here, naming
//! the fd: file locks, anything that is not a path (pipes, sockets,
//! anonymous inodes other than eventfd, signalfd and timerfd), other
//! devices. A memfd or a file unlinked while open is [`saved`] with its
//! content.
//!
//! A new kind of description: a variant of
//! [`OpenFileKind`](crate::model::OpenFileKind), a module here that
//! recognises and captures it, and one arm where `kind` is decided below.
//! fds 0-2 connected outside the image are [`external`].

mod eventfd;
mod external;
mod regular;
pub(super) mod saved;
mod signalfd;
mod timerfd;

use std::os::unix::fs::MetadataExt;

use super::{proc_path, DumpError, Frozen};
use crate::model::{FdState, OpenFile};
use crate::procfs;
use crate::sys;

impl Frozen {
    /// The working directory; a deleted one is refused.
    pub(super) fn cwd(&self) -> Result<String, DumpError> {
        let pid = self.pid;
        let cwd = std::fs::read_link(proc_path(pid, "cwd"))
            .map_err(|source| DumpError::Proc {
                pid,
                what: "cwd".into(),
                source,
            })?
            .to_string_lossy()
            .into_owned();
        if cwd.ends_with(" (deleted)") {
            return Err(self.unsupported(format!("a deleted working directory {cwd}")));
        }
        Ok(cwd)
    }

    /// Every fd, in number order, and the descriptions they refer to
    /// (indexed by `FdState::description`); refuses what restore cannot
    /// reopen, naming the fd.
    /// A memfd or unlinked file is added to `saved` (its content is
    /// written after the memory).
    pub(super) fn dump_fds(
        &self,
        saved: &mut saved::SavedFiles,
    ) -> Result<(Vec<FdState>, Vec<OpenFile>), DumpError> {
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
            let kind = match external::classify(pid, fd, &link, &meta, &mut outside)? {
                Some(kind) => Some(kind),
                None => saved.capture(self, fd, &link, &meta)?,
            };
            let kind = match kind {
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
