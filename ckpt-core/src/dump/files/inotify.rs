//! inotify: each watch (its `wd`, mask and the path of the watched file),
//! from fdinfo; restore adds them again as the restored process.
//!
//! fdinfo names a watched inode only by device, inode number and a file
//! handle. Its path is found as follows: the handle is opened with
//! `open_by_handle_at` on a mount of that device (this needs
//! `CAP_DAC_READ_SEARCH`: it works when the dump runs as root, as the
//! setuid helper does, and fails harmlessly otherwise), and the path of the
//! result is a candidate; the target's working directory, the paths of its
//! fds and their parent directories, and the entries of the watched
//! directories and of the working directory are the other candidates. A
//! candidate is accepted only when the *caller's* look-up of it (see
//! [`Frozen::set_path_opener`]) gives the very inode of the watch (same
//! device and the same file handle), so the image never holds a path the
//! caller could not have found itself.
//!
//! Trusts: fdinfo, parsed strictly, and the kernel's handles. Refuses,
//! naming the fd and the wd: unread events (restore cannot queue them
//! again, and dropping them silently would lose what the program waits
//! for), a watch with no path the caller can see (its file deleted, or in
//! a directory the caller cannot search), and a wd above
//! [`MAX_INOTIFY_WD`].

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{DirEntryExt, MetadataExt, OpenOptionsExt};

use super::super::{Frozen, PathOpener};
use super::DumpError;
use crate::limits::MAX_INOTIFY_WD;
use crate::model::{InotifyWatch, OpenFileKind, INOTIFY_MASK_BITS};
use crate::procfs::watches::{parse_inotify, InotifyMark};
use crate::sys;

/// The kernel's name of an inotify instance in `/proc/PID/fd`.
pub(super) const LINK: &str = "anon_inode:inotify";

/// Most directory entries looked at per directory when searching for a
/// watched file.
const MAX_ENTRIES_PER_DIR: usize = 4096;

/// A mount's device (`MAJ:MIN`) and mount point from one line of
/// `/proc/PID/mountinfo`.
fn mount_of(line: &str) -> Option<(u64, u64, String)> {
    let mut f = line.split(' ');
    let (_id, _parent, dev, _root, point) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    let (maj, min) = dev.split_once(':')?;
    Some((maj.parse().ok()?, min.parse().ok()?, unescape(point)?))
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let oct = std::str::from_utf8(b.get(i + 1..i + 4)?).ok()?;
            out.push(u8::from_str_radix(oct, 8).ok()?);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The candidate path the kernel gives for `mark`'s handle, opened on a
/// mount of its device (needs `CAP_DAC_READ_SEARCH`; `None` without it).
fn path_from_handle(mountinfo: &str, mark: &InotifyMark) -> Option<String> {
    let (kind, bytes) = mark.handle.as_ref()?;
    let (major, minor) = (u64::from(mark.sdev >> 20), u64::from(mark.sdev & 0xf_ffff));
    for (maj, min, point) in mountinfo.lines().filter_map(mount_of) {
        if (maj, min) != (major, minor) {
            continue;
        }
        let Ok(mount) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&point)
        else {
            continue;
        };
        let Ok(fd) = sys::open_by_handle(mount.as_fd(), *kind, bytes) else {
            continue;
        };
        let Ok(path) = std::fs::read_link(format!("/proc/self/fd/{}", fd_no(&fd))) else {
            continue;
        };
        let path = path.to_string_lossy().into_owned();
        if path.starts_with('/') && !path.ends_with(" (deleted)") {
            return Some(path);
        }
    }
    None
}

fn fd_no(fd: &OwnedFd) -> i32 {
    fd.as_raw_fd()
}

impl Frozen {
    /// Look paths up with `opener` (an `O_PATH | O_NOFOLLOW` open done with
    /// the caller's credentials) wherever the dump decides what the caller
    /// may learn: the paths of inotify watches. Without one, this process
    /// looks them up itself (right when it runs as the caller).
    pub fn set_path_opener(&mut self, opener: PathOpener) {
        self.path_opener = Some(opener);
    }

    /// `path` opened `O_PATH | O_NOFOLLOW` as the caller.
    fn open_as_caller(&self, path: &str) -> Option<OwnedFd> {
        match &self.path_opener {
            Some(open) => open(path),
            None => std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
                .open(path)
                .ok()
                .map(OwnedFd::from),
        }
    }

    /// Is `path`, looked up as the caller, the inode `mark` watches?
    fn caller_sees(&self, path: &str, mark: &InotifyMark) -> bool {
        let Some((kind, bytes)) = mark.handle.as_ref() else {
            return false;
        };
        let Some(fd) = self.open_as_caller(path) else {
            return false;
        };
        let Ok(meta) = std::fs::metadata(format!("/proc/self/fd/{}", fd_no(&fd))) else {
            return false;
        };
        let dev = meta.dev();
        let kdev = (nix::sys::stat::major(dev) << 20) | nix::sys::stat::minor(dev);
        if meta.ino() != mark.ino || kdev != u64::from(mark.sdev) {
            return false;
        }
        matches!(sys::fid_handle_of(fd.as_fd()), Ok((k, b)) if k == *kind && &b == bytes)
    }

    /// The path of the file `mark` watches, as the caller sees it.
    fn watch_path(&self, mark: &InotifyMark, near: &[String], mountinfo: &str) -> Option<String> {
        if let Some(p) = path_from_handle(mountinfo, mark) {
            if self.caller_sees(&p, mark) {
                return Some(p);
            }
        }
        // Cheap check as the dumper first (same inode number), then as the
        // caller.
        let same_ino = |p: &str| std::fs::symlink_metadata(p).is_ok_and(|m| m.ino() == mark.ino);
        let mut tried = HashSet::new();
        for p in near {
            if tried.insert(p.clone()) && same_ino(p) && self.caller_sees(p, mark) {
                return Some(p.clone());
            }
        }
        for dir in near {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.take(MAX_ENTRIES_PER_DIR).flatten() {
                if e.ino() != mark.ino {
                    continue;
                }
                let p = e.path().to_string_lossy().into_owned();
                if self.caller_sees(&p, mark) {
                    return Some(p);
                }
            }
        }
        None
    }

    /// Capture the inotify instance at `fd`: every watch with its path.
    /// `near` are paths the target uses (cwd, its fds' paths and their
    /// parent directories), candidates for the watched files.
    pub(super) fn capture_inotify(
        &self,
        fd: i32,
        info: &str,
        near: &[String],
    ) -> Result<OpenFileKind, DumpError> {
        let pid = self.pid;
        let refuse = |resource: String| DumpError::Unsupported { pid, resource };
        let mut marks = parse_inotify(info).map_err(|source| DumpError::Parse {
            pid,
            what: format!("fdinfo/{fd} (inotify)"),
            source,
        })?;
        // Unread events cannot be queued again.
        let copy = sys::pidfd_getfd(&self.pidfd, fd).map_err(|e| DumpError::Proc {
            pid,
            what: format!("fd {fd} (inotify) through pidfd_getfd"),
            source: e.into(),
        })?;
        let queued = sys::bytes_readable(copy.as_fd()).map_err(|e| DumpError::Proc {
            pid,
            what: format!("fd {fd} (inotify): FIONREAD"),
            source: e.into(),
        })?;
        drop(copy);
        if queued > 0 {
            return Err(refuse(format!(
                "fd {fd} ({LINK}) with {queued} bytes of unread events (restore cannot queue \
                 them again: checkpoint when the program has read them)"
            )));
        }
        marks.sort_by_key(|m| m.wd);
        let mountinfo = self.read_proc("mountinfo")?;
        let mut near: Vec<String> = near.to_vec();
        let mut watches = Vec::with_capacity(marks.len());
        for m in &marks {
            if m.wd < 1 || m.wd > MAX_INOTIFY_WD {
                return Err(refuse(format!(
                    "fd {fd} ({LINK}): watch descriptor {} (at most {MAX_INOTIFY_WD} can be \
                     recreated)",
                    m.wd
                )));
            }
            let Some(path) = self.watch_path(m, &near, &mountinfo) else {
                return Err(refuse(format!(
                    "fd {fd} ({LINK}): watch {} on inode {:#x} of device {}:{}: no path to it \
                     that the caller can see (the watched file or directory was removed, or is \
                     out of the caller's reach)",
                    m.wd,
                    m.ino,
                    m.sdev >> 20,
                    m.sdev & 0xf_ffff
                )));
            };
            // A watched directory is a good place to look for the next
            // watched files.
            near.push(path.clone());
            watches.push(InotifyWatch {
                wd: m.wd,
                mask: m.mask & INOTIFY_MASK_BITS,
                path,
            });
        }
        Ok(OpenFileKind::Inotify { watches })
    }
}
