//! eventfd: its counter and whether it counts as a semaphore, from fdinfo
//! (`O_NONBLOCK` is in the description's flags). Restore creates a new one.
//!
//! Trusts: fdinfo, parsed strictly.

use super::DumpError;
use crate::model::OpenFileKind;
use crate::procfs;

/// The kernel's name of an eventfd in `/proc/PID/fd`.
pub(super) const LINK: &str = "anon_inode:[eventfd]";

/// Capture the eventfd `fd` from its fdinfo text.
pub(super) fn capture(pid: i32, fd: i32, info: &str) -> Result<OpenFileKind, DumpError> {
    let e = procfs::fdinfo::parse_eventfd(info).map_err(|source| DumpError::Parse {
        pid,
        what: format!("fdinfo/{fd} (eventfd)"),
        source,
    })?;
    Ok(OpenFileKind::Eventfd {
        count: e.count,
        semaphore: e.semaphore,
    })
}
