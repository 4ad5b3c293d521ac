//! Putting saved bytes into a pipe or socket the stub created: a
//! temporary anonymous mapping in the stub (the scratch page is too small
//! for a datagram), filled from here, passed to injected `write` or
//! `sendto` calls, and unmapped again. Descriptions created together (the
//! two ends of a pipe or socket pair) are handed out here one at a time.
//!
//! Trusts: the image's validation (sizes bounded by
//! [`crate::limits::MAX_QUEUED_BYTES`]); every write must take all it is
//! given, on a non-blocking fd, or the restore fails naming it.

use crate::restore::{Builder, RestoreError};

/// A temporary mapping in the stub.
pub(super) struct Staging {
    addr: u64,
    len: u64,
}

const PAGE: u64 = 4096;

impl Staging {
    /// Its address in the stub.
    pub(super) fn addr(&self) -> u64 {
        self.addr
    }
}

impl Builder<'_> {
    /// Map `len` bytes (at least one page) in the stub.
    pub(super) fn map_staging(&mut self, len: usize) -> Result<Staging, RestoreError> {
        let len = (len.max(1) as u64).div_ceil(PAGE) * PAGE;
        let addr = self.sys(
            "mmap(staging)",
            libc::SYS_mmap,
            [
                0,
                len,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )?;
        Ok(Staging { addr, len })
    }

    /// Unmap a staging area.
    pub(super) fn unmap_staging(&mut self, s: Staging) -> Result<(), RestoreError> {
        self.sys(
            "munmap(staging)",
            libc::SYS_munmap,
            [s.addr, s.len, 0, 0, 0, 0],
        )?;
        Ok(())
    }

    /// Write all of `data` to the stub's non-blocking `fd` (a pipe or a
    /// stream socket), through `s`.
    pub(super) fn write_all(
        &mut self,
        s: &Staging,
        fd: u64,
        data: &[u8],
        what: &str,
    ) -> Result<(), RestoreError> {
        for chunk in data.chunks(usize::try_from(s.len).unwrap_or(usize::MAX)) {
            self.inj.write(s.addr, chunk, "writing queued data")?;
            let mut at = 0usize;
            while at < chunk.len() {
                let r = self.sys_raw(
                    libc::SYS_sendto,
                    [
                        fd,
                        s.addr + at as u64,
                        (chunk.len() - at) as u64,
                        libc::MSG_NOSIGNAL as u64,
                        0,
                        0,
                    ],
                )?;
                // Not a socket: a pipe.
                let r = if r == -i64::from(libc::ENOTSOCK) {
                    self.sys_raw(
                        libc::SYS_write,
                        [fd, s.addr + at as u64, (chunk.len() - at) as u64, 0, 0, 0],
                    )?
                } else {
                    r
                };
                if r <= 0 {
                    return Err(RestoreError::Invalid(format!(
                        "{what}: {} of its {} queued bytes do not fit ({})",
                        data.len() - at,
                        data.len(),
                        if r < 0 {
                            crate::inject::errno_of(r).to_string()
                        } else {
                            "nothing written".into()
                        }
                    )));
                }
                at += r as usize;
            }
        }
        Ok(())
    }

    /// Send `msg` as one datagram or packet on the stub's non-blocking
    /// socket `fd`, through `s` (at least `msg.len()` long).
    pub(super) fn send_message(
        &mut self,
        s: &Staging,
        fd: u64,
        msg: &[u8],
        what: &str,
    ) -> Result<(), RestoreError> {
        if msg.len() as u64 > s.len {
            return Err(RestoreError::Invalid(format!("{what}: message too long")));
        }
        self.inj.write(s.addr, msg, "writing a queued message")?;
        let r = self.sys_raw(
            libc::SYS_sendto,
            [
                fd,
                s.addr,
                msg.len() as u64,
                (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u64,
                0,
                0,
            ],
        )?;
        if r != msg.len() as i64 {
            return Err(RestoreError::Invalid(format!(
                "{what}: a queued message of {} bytes could not be sent ({})",
                msg.len(),
                if r < 0 {
                    crate::inject::errno_of(r).to_string()
                } else {
                    format!("{r} bytes sent")
                }
            )));
        }
        Ok(())
    }

    /// The stub's fd for description `i` if it was created with another
    /// one; taken, so each is handed out once.
    pub(super) fn take_prepared(&mut self, i: usize) -> Option<u64> {
        let at = self.prepared.iter().position(|&(j, _)| j == i)?;
        Some(self.prepared.swap_remove(at).1)
    }

    /// `F_SETFL` on the stub's `fd`.
    pub(super) fn set_status_flags(&mut self, fd: u64, flags: i32) -> Result<(), RestoreError> {
        self.sys(
            "fcntl(F_SETFL)",
            libc::SYS_fcntl,
            [fd, libc::F_SETFL as u64, flags as u64, 0, 0, 0],
        )?;
        Ok(())
    }
}
