//! File locks: taken again by the restored process itself, without
//! waiting, on its recreated descriptions: `flock` and OFD locks on the
//! description, POSIX locks (`F_SETLK`) by the process, which is why this
//! runs in the stub (the restored process) and only once every fd is in
//! its place: closing *any* fd of a file drops the process's POSIX locks
//! on it, and the temporary copies are closed by then.
//!
//! A lock someone else now holds fails the restore, naming the file and
//! the range; the stub is killed with the failed restore.
//!
//! Trusts: nothing; ranges are checked by validation (start <= end, both
//! within `off_t`).

use crate::inject::errno_of;
use crate::inject::structs::Flock;
use crate::model::{FileLock, LockKind, OpenFile};
use crate::restore::{Builder, RestoreError};

/// `F_OFD_SETLK`.
const F_OFD_SETLK: u64 = 37;

/// How a lock is named in errors: `POSIX write lock on bytes 10-19`.
pub(in crate::restore) fn describe(l: &FileLock) -> String {
    let kind = match l.kind {
        LockKind::Flock => "flock",
        LockKind::Posix => "POSIX",
        LockKind::Ofd => "OFD",
    };
    let mode = if l.write { "write" } else { "read" };
    match (l.kind, l.end) {
        (LockKind::Flock, _) => format!("{kind} {mode} lock"),
        (_, Some(end)) => format!("{kind} {mode} lock on bytes {}-{end}", l.start),
        (_, None) => format!("{kind} {mode} lock on bytes {}-EOF", l.start),
    }
}

impl Builder<'_> {
    /// Take every lock of description `d` through the stub's fd `fd`.
    pub(super) fn take_locks(&mut self, d: &OpenFile, fd: u64) -> Result<(), RestoreError> {
        for l in &d.locks {
            // A POSIX lock is its owner's, taken by that task only.
            if l.kind == LockKind::Posix && l.owner.is_some_and(|o| o != self.p.pid) {
                continue;
            }
            let r = match l.kind {
                LockKind::Flock => {
                    let op = if l.write {
                        libc::LOCK_EX
                    } else {
                        libc::LOCK_SH
                    } | libc::LOCK_NB;
                    self.sys_raw(libc::SYS_flock, [fd, op as u64, 0, 0, 0, 0])?
                }
                LockKind::Posix | LockKind::Ofd => {
                    let start = i64::try_from(l.start).unwrap_or(i64::MAX);
                    let len = match l.end {
                        None => 0,
                        Some(end) => end
                            .checked_sub(l.start)
                            .and_then(|n| n.checked_add(1))
                            .and_then(|n| i64::try_from(n).ok())
                            .unwrap_or(i64::MAX),
                    };
                    let kind = if l.write {
                        libc::F_WRLCK
                    } else {
                        libc::F_RDLCK
                    } as i16;
                    let at = self.inj.put_struct(&Flock { kind, start, len })?;
                    let cmd = if l.kind == LockKind::Posix {
                        libc::F_SETLK as u64
                    } else {
                        F_OFD_SETLK
                    };
                    self.sys_raw(libc::SYS_fcntl, [fd, cmd, at, 0, 0, 0])?
                }
            };
            if r < 0 {
                let errno = errno_of(r);
                let reason = match errno {
                    nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES => {
                        "another process holds a conflicting lock".to_string()
                    }
                    e => e.to_string(),
                };
                return Err(RestoreError::Locked {
                    path: d.path.clone(),
                    lock: describe(l),
                    reason,
                });
            }
        }
        Ok(())
    }
}
