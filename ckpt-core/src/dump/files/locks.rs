//! File locks held through a description: flock and OFD locks belong to
//! the description, POSIX record locks to the process (the kernel lists
//! them under the description they were taken through). All are read from
//! the description's fdinfo `lock:` lines and taken again at restore by
//! the restored process itself.
//!
//! Trusts: fdinfo, parsed strictly. Refuses, naming the fd: a lease or
//! any other kind of lock, and a lock on a description that is not
//! reopened by path (restore has no file to lock).

use super::DumpError;
use crate::model::{FileLock, LockKind, OpenFileKind};
use crate::procfs::watches::{parse_locks, LockClass};

/// The locks shown in `info` (the fdinfo text of `fd`, which refers to a
/// description of `kind`).
pub(super) fn capture(
    pid: i32,
    fd: i32,
    link: &str,
    kind: &OpenFileKind,
    info: &str,
) -> Result<Vec<FileLock>, DumpError> {
    let lines = parse_locks(info).map_err(|source| DumpError::Parse {
        pid,
        what: format!("fdinfo/{fd} (locks)"),
        source,
    })?;
    if lines.is_empty() {
        return Ok(Vec::new());
    }
    let refuse = |resource: String| DumpError::Unsupported { pid, resource };
    if !matches!(kind, OpenFileKind::Regular | OpenFileKind::Directory) {
        return Err(refuse(format!(
            "fd {fd} ({link}) holds a file lock, and only locks on files and \
             directories can be restored"
        )));
    }
    let mut out = Vec::with_capacity(lines.len());
    for l in lines {
        let kind = match l.class {
            LockClass::Posix => LockKind::Posix,
            LockClass::Ofd => LockKind::Ofd,
            LockClass::Flock => LockKind::Flock,
            LockClass::Other(what) => {
                return Err(refuse(format!(
                    "fd {fd} ({link}) holds a {what} lock (only flock, POSIX and OFD \
                     locks can be restored)"
                )));
            }
        };
        out.push(FileLock {
            owner: (kind == LockKind::Posix).then_some(l.pid),
            kind,
            write: l.write,
            start: l.start,
            end: l.end,
        });
    }
    Ok(out)
}
