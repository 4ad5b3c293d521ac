//! fds that were connected outside the image at dump (a terminal, pipe
//! or socket, [`OpenFileKind::External`]). fds 0-2 become the restore
//! caller's own fd of the same number: the stub inherited the helper's fds
//! 0-2, which are the caller's (start-up reopens a closed one on
//! `/dev/null`). An fd above 2 becomes the caller's fd of that number when
//! the caller handed it on (`--inherit-fd N`: the helper checked it was
//! open when it started, and the stub kept it through its exec), and
//! otherwise `/dev/null`, opened read-write by the stub. In both cases
//! [`Builder::restore_fds`] keeps it open.
//!
//! Owns: the close-on-exec flag of those fds, and the notice that says
//! what each was connected to and what it is now. Trusts: the image's
//! validation. The file status flags (`O_NONBLOCK`, `O_APPEND`) of a
//! caller's fd belong to the caller's open file description, shared with
//! the caller, and are left as the caller has them.

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
            .map_err(|_| RestoreError::Invalid(format!("external fd {}", f.fd)))?;
        if fd > 2 && !self.opts.inherit_fds.contains(&f.fd) {
            return self.external_on_dev_null(fd, f.cloexec, connected_to);
        }
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
        if fd > 2 {
            notice.push_str(" (--inherit-fd)");
        }
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

    /// External fd `fd` (above 2) the caller did not hand on: `/dev/null`,
    /// opened read-write by the stub.
    fn external_on_dev_null(
        &mut self,
        fd: u64,
        cloexec: bool,
        connected_to: &str,
    ) -> Result<(), RestoreError> {
        let null = self.open_in_stub("/dev/null", libc::O_RDWR)?;
        let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
        if null == fd {
            self.sys(
                "fcntl(F_SETFD)",
                libc::SYS_fcntl,
                [fd, libc::F_SETFD as u64, u64::from(cloexec), 0, 0, 0],
            )?;
        } else {
            self.sys("dup3", libc::SYS_dup3, [null, fd, flags as u64, 0, 0, 0])?;
            self.sys("close", libc::SYS_close, [null, 0, 0, 0, 0, 0])?;
        }
        self.notices.push(format!(
            "fd {fd} was connected to {connected_to} at dump; it is /dev/null now (pass \
             --inherit-fd {fd} to hand over yours)"
        ));
        Ok(())
    }
}
