//! signalfd: the set of signals it reads, from fdinfo (`O_NONBLOCK` is in
//! the description's flags). Restore creates a new one; the signals
//! themselves (blocked mask, queued signals) are the signal state's.
//!
//! Trusts: fdinfo, parsed strictly.

use super::DumpError;
use crate::model::OpenFileKind;
use crate::procfs;

/// The kernel's name of a signalfd in `/proc/PID/fd`.
pub(super) const LINK: &str = "anon_inode:[signalfd]";

/// Capture the signalfd `fd` from its fdinfo text.
pub(super) fn capture(pid: i32, fd: i32, info: &str) -> Result<OpenFileKind, DumpError> {
    let sigmask = procfs::fdinfo::parse_signalfd(info).map_err(|source| DumpError::Parse {
        pid,
        what: format!("fdinfo/{fd} (signalfd)"),
        source,
    })?;
    Ok(OpenFileKind::Signalfd { sigmask })
}
