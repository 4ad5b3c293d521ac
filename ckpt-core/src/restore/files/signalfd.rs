//! signalfd: created anew by the stub (`signalfd4`, nothing opened by
//! path) for the saved set of signals. The blocked mask and the queued
//! signals are restored with the signal state.
//!
//! Trusts: nothing; the image's flags are masked to `O_NONBLOCK` (the
//! kernel ignores SIGKILL and SIGSTOP in the set).

use crate::model::OpenFile;
use crate::restore::{Builder, RestoreError};

impl Builder<'_> {
    /// A new signalfd for `sigmask`, above `top`, close-on-exec.
    pub(super) fn create_signalfd(
        &mut self,
        d: &OpenFile,
        sigmask: u64,
        top: i32,
    ) -> Result<u64, RestoreError> {
        let flags = (libc::SFD_CLOEXEC | (d.flags as i32 & libc::O_NONBLOCK)) as u64;
        let mask = self
            .inj
            .put_bytes(&sigmask.to_ne_bytes(), "writing signalfd mask")?;
        let fd = self.sys(
            "signalfd4",
            libc::SYS_signalfd4,
            [u64::MAX, mask, 8, flags, 0, 0],
        )?;
        self.move_above(fd, top)
    }
}
