//! eventfd: created anew by the stub (`eventfd2`, with its credentials,
//! nothing opened by path), then the saved counter written into it (the
//! counter may exceed `eventfd2`'s 32-bit initial value).
//!
//! Trusts: nothing; the image's flags are masked to `O_NONBLOCK`.

use crate::model::OpenFile;
use crate::restore::{Builder, RestoreError};

/// `EFD_SEMAPHORE`.
const EFD_SEMAPHORE: u64 = 1;

impl Builder<'_> {
    /// A new eventfd holding `count`, above `top`, close-on-exec.
    pub(super) fn create_eventfd(
        &mut self,
        d: &OpenFile,
        count: u64,
        semaphore: bool,
        top: i32,
    ) -> Result<u64, RestoreError> {
        let mut flags = (libc::EFD_CLOEXEC | (d.flags as i32 & libc::O_NONBLOCK)) as u64;
        if semaphore {
            flags |= EFD_SEMAPHORE;
        }
        let fd = self.sys("eventfd2", libc::SYS_eventfd2, [0, flags, 0, 0, 0, 0])?;
        if count != 0 {
            let buf = self
                .inj
                .put_bytes(&count.to_ne_bytes(), "writing eventfd count")?;
            let n = self.sys("write(eventfd)", libc::SYS_write, [fd, buf, 8, 0, 0, 0])?;
            if n != 8 {
                return Err(RestoreError::Invalid(format!(
                    "eventfd count {count}: short write ({n})"
                )));
            }
        }
        self.move_above(fd, top)
    }
}
