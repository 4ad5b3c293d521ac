//! A working directory that had been removed at dump: the stub makes a
//! directory at its path (mode 0700), enters it and removes it again, so
//! the restored process works in a removed directory under the same name,
//! as it did (`/proc/PID/cwd` shows `PATH (deleted)`; nothing can be
//! created in it). When something else has that name now, a sibling named
//! `NAME.ckpt-PID` is used instead, with a notice.
//!
//! Only in a restore the caller could have done themselves: a stub built
//! as root (other credentials, exe link) refuses it, so that no directory
//! is ever made with credentials other than the caller's at a path the
//! caller chose. The parent is opened without following symlinks in its
//! last component (`O_NOFOLLOW`), the directory made and entered relative
//! to that fd.
//!
//! Trusts: nothing; the path was checked by `image::validate`.

use nix::errno::Errno;

use crate::inject::errno_of;
use crate::restore::{Builder, RestoreError, StubMode};

impl Builder<'_> {
    /// Make, enter and remove a directory at `path`.
    pub(in crate::restore) fn recreate_removed_cwd(
        &mut self,
        path: &str,
    ) -> Result<(), RestoreError> {
        if self.mode == StubMode::Root {
            return Err(RestoreError::Unsupported(format!(
                "a removed working directory ({path}) in a restore built as root"
            )));
        }
        let trimmed = path.trim_end_matches('/');
        let (parent, name) = match trimmed.rsplit_once('/') {
            Some(("", name)) => ("/", name),
            Some((parent, name)) => (parent, name),
            None => return Err(RestoreError::Invalid(format!("working directory {path}"))),
        };
        let open_err = |errno| RestoreError::Open {
            path: path.to_string(),
            errno,
        };
        let dir = self.open_in_stub(parent, libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)?;
        let pid = self.pid();
        let mut made = None;
        for candidate in [name.to_string(), format!("{name}.ckpt-{pid}")] {
            let at = self.inj.put_cstr(&candidate, "writing a path")?;
            let r = self.sys_raw(libc::SYS_mkdirat, [dir, at, 0o700, 0, 0, 0])?;
            if r == 0 {
                made = Some(candidate);
                break;
            }
            if errno_of(r) != Errno::EEXIST {
                self.sys("close", libc::SYS_close, [dir, 0, 0, 0, 0, 0])?;
                return Err(open_err(errno_of(r)));
            }
        }
        let Some(made) = made else {
            self.sys("close", libc::SYS_close, [dir, 0, 0, 0, 0, 0])?;
            return Err(open_err(Errno::EEXIST));
        };
        let at = self.inj.put_cstr(&made, "writing a path")?;
        let fd = self.sys_raw(
            libc::SYS_openat,
            [
                dir,
                at,
                (libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64,
                0,
                0,
                0,
            ],
        )?;
        let entered = if fd < 0 {
            fd
        } else {
            let r = self.sys_raw(libc::SYS_fchdir, [fd as u64, 0, 0, 0, 0, 0])?;
            self.sys("close", libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
            r
        };
        let at = self.inj.put_cstr(&made, "writing a path")?;
        let removed = self.sys_raw(
            libc::SYS_unlinkat,
            [dir, at, libc::AT_REMOVEDIR as u64, 0, 0, 0],
        )?;
        self.sys("close", libc::SYS_close, [dir, 0, 0, 0, 0, 0])?;
        if entered < 0 {
            return Err(open_err(errno_of(entered)));
        }
        if removed < 0 {
            return Err(open_err(errno_of(removed)));
        }
        if made != name {
            self.notices.push(format!(
                "the working directory {path} had been removed; {name} exists now, so the \
                 process works in a removed directory named {made} instead"
            ));
        }
        Ok(())
    }
}
