//! fds 0-2 that were connected outside the image at dump (a terminal, pipe
//! or socket, [`OpenFileKind::External`]) become the restore caller's own
//! fd of the same number: the stub inherited the helper's fds 0-2, which
//! are the caller's (start-up reopens a closed one on `/dev/null`), and
//! [`Builder::restore_fds`] keeps them open.
//!
//! Owns: the close-on-exec flag of those fds, and the notice that says
//! what each was connected to. Trusts: the image's validation (External
//! only on fds 0-2), checked again here. The file status flags
//! (`O_NONBLOCK`, `O_APPEND`) belong to the caller's open file description,
//! shared with the caller, and are left as the caller has them.

use super::{Builder, RestoreError};
use crate::model::{FdState, OpenFileKind};

impl Builder<'_> {
    /// Connect external fd `f` to the caller's fd of that number.
    pub(super) fn reconnect_external(&mut self, f: &FdState) -> Result<(), RestoreError> {
        let m = self.m;
        let Some((OpenFileKind::External { connected_to }, saved)) = m
            .files
            .get(f.description as usize)
            .map(|d| (&d.kind, d.flags))
        else {
            return Err(RestoreError::Invalid(format!("fd {}", f.fd)));
        };
        let fd = u64::try_from(f.fd)
            .ok()
            .filter(|&n| n <= 2)
            .ok_or_else(|| RestoreError::Invalid(format!("external fd {}", f.fd)))?;
        let mine = self.sys(
            "fcntl(F_GETFL)",
            libc::SYS_fcntl,
            [fd, libc::F_GETFL as u64, 0, 0, 0, 0],
        )?;
        let cloexec = if f.cloexec { libc::FD_CLOEXEC } else { 0 };
        self.sys(
            "fcntl(F_SETFD)",
            libc::SYS_fcntl,
            [fd, libc::F_SETFD as u64, cloexec as u64, 0, 0, 0],
        )?;
        let mut notice = format!(
            "fd {fd} was connected to {connected_to} at dump; it is now connected to your fd {fd}"
        );
        let differ: Vec<String> = [
            (libc::O_NONBLOCK, "O_NONBLOCK"),
            (libc::O_APPEND, "O_APPEND"),
        ]
        .into_iter()
        .filter(|&(bit, _)| (mine ^ u64::from(saved)) & bit as u64 != 0)
        .map(|(bit, name)| {
            let on = mine & bit as u64 != 0;
            format!("{name} {}", if on { "on" } else { "off" })
        })
        .collect();
        if !differ.is_empty() {
            notice.push_str(&format!(
                " (its file status flags are yours, not the dump's: {})",
                differ.join(", ")
            ));
        }
        self.notices.push(notice);
        Ok(())
    }
}
