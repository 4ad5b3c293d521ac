//! Descriptions reopened by path: regular files (with their offset),
//! directories, and the harmless character devices (`/dev/null` and
//! friends). The stub opens the path itself, with its file credentials.
//!
//! Trusts: nothing; the path is the kernel's canonical one at dump time and
//! is opened without following symlinks in a root-built stub.

use crate::model::{OpenFile, OpenFileKind};
use crate::restore::{Builder, RestoreError};

impl Builder<'_> {
    /// Open `d` by its path in the stub, move it above `top` and seek to
    /// its saved offset.
    pub(super) fn reopen_by_path(&mut self, d: &OpenFile, top: i32) -> Result<u64, RestoreError> {
        let mut flags =
            (d.flags as i32) & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY);
        if d.kind == OpenFileKind::Directory {
            flags |= libc::O_DIRECTORY;
        }
        let fd = self.open_in_stub(&d.path, flags)?;
        let high = self.move_above(fd, top)?;
        if d.kind == OpenFileKind::Regular && d.offset != 0 {
            self.sys(
                "lseek",
                libc::SYS_lseek,
                [high, d.offset, libc::SEEK_SET as u64, 0, 0, 0],
            )?;
        }
        Ok(high)
    }
}
