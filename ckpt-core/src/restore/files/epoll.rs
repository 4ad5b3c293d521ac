//! epoll: a new instance created by the stub, and its interest list added
//! back once every description exists (targets first, then each epoll,
//! then `EPOLL_CTL_ADD`), each entry under the fd number it had, with the
//! same events and data. An entry whose fd number is no longer the
//! target's (closed since, or reused) is added through a temporary copy of
//! the target at that number, closed again afterwards (the kernel keeps an
//! entry as long as its file lives).
//!
//! A disarmed `EPOLLONESHOT` entry (only the private bits left) is kept
//! disarmed: it is added armed for every event and, if its target is
//! ready, collected once with `epoll_wait(0)` on the still otherwise empty
//! instance, which disarms it as the kernel does; a target ready for
//! nothing keeps it armed for errors and hang-ups only (`EPOLL_CTL_ADD`
//! always adds those), which eventfds, timerfds and signalfds never
//! report.
//!
//! Not kept: readiness already reported for an edge-triggered entry whose
//! target is still ready (it is reported once more), `EPOLLWAKEUP` without
//! `CAP_BLOCK_SUSPEND` (the kernel drops it, as it did for the original).
//!
//! Trusts: nothing; target indexes are checked by validation.

use crate::inject::structs::EpollEvent;
use crate::model::{EpollTarget, OpenFile, EPOLL_PRIVATE_BITS};
use crate::restore::{Builder, RestoreError};

/// `EPOLL_CTL_ADD`, `EPOLL_CTL_MOD`.
const CTL_ADD: u64 = 1;
const CTL_MOD: u64 = 3;
/// Every readiness bit an entry can wait for.
const ALL_EVENTS: u32 = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x2000;
/// `EPOLLONESHOT`.
const ONESHOT: u32 = 1 << 30;

/// Is `events` a disarmed one-shot entry?
fn disarmed(events: u32) -> bool {
    events & ONESHOT != 0 && events & !EPOLL_PRIVATE_BITS == 0
}

impl Builder<'_> {
    /// A new, empty epoll instance above `top`, close-on-exec.
    pub(super) fn create_epoll(&mut self, d: &OpenFile, top: i32) -> Result<u64, RestoreError> {
        let fd = self.sys(
            "epoll_create1",
            libc::SYS_epoll_create1,
            [libc::EPOLL_CLOEXEC as u64, 0, 0, 0, 0, 0],
        )?;
        if d.flags & libc::O_NONBLOCK as u32 != 0 {
            self.sys(
                "fcntl(F_SETFL)",
                libc::SYS_fcntl,
                [fd, libc::F_SETFL as u64, libc::O_NONBLOCK as u64, 0, 0, 0],
            )?;
        }
        self.move_above(fd, top)
    }

    /// Add `targets` to the epoll at the stub's `ep`. `source(t)` is a
    /// stub fd of target `t`'s description, `placed(n)` the description
    /// already at fd number `n` for good (the caller's fds kept in place).
    pub(super) fn add_epoll_targets(
        &mut self,
        ep: u64,
        targets: &[EpollTarget],
        source: &dyn Fn(u32) -> Option<u64>,
        placed: &dyn Fn(i32) -> Option<u32>,
    ) -> Result<(), RestoreError> {
        // Disarmed one-shot entries first, while nothing else can be
        // collected by the epoll_wait that disarms them.
        let (first, rest): (Vec<&EpollTarget>, Vec<&EpollTarget>) =
            targets.iter().partition(|t| disarmed(t.events));
        for t in first.into_iter().chain(rest) {
            let Some(src) = source(t.description) else {
                return Err(RestoreError::Invalid(format!(
                    "epoll entry for fd {}: description {} has no fd",
                    t.fd, t.description
                )));
            };
            let n = u64::try_from(t.fd).unwrap_or(u64::MAX);
            // The target under its own fd number.
            let temporary = match placed(t.fd) {
                Some(d) if d == t.description => false,
                Some(_) => {
                    return Err(RestoreError::Unsupported(format!(
                        "an epoll entry for fd {} whose number is now one of the caller's fds",
                        t.fd
                    )))
                }
                None => {
                    self.sys(
                        "dup3",
                        libc::SYS_dup3,
                        [src, n, libc::O_CLOEXEC as u64, 0, 0, 0],
                    )?;
                    true
                }
            };
            let events = if disarmed(t.events) {
                t.events | ALL_EVENTS
            } else {
                t.events
            };
            let ev = self.inj.put_struct(&EpollEvent {
                events,
                data: t.data,
            })?;
            self.sys(
                "epoll_ctl(ADD)",
                libc::SYS_epoll_ctl,
                [ep, CTL_ADD, n, ev, 0, 0],
            )?;
            if disarmed(t.events) {
                let out = self.inj.alloc_struct::<EpollEvent>()?;
                let got = self.sys("epoll_wait", libc::SYS_epoll_wait, [ep, out, 1, 0, 0, 0])?;
                if got == 0 {
                    // Ready for nothing now: armed for errors and hang-ups
                    // only.
                    let ev = self.inj.put_struct(&EpollEvent {
                        events: t.events,
                        data: t.data,
                    })?;
                    self.sys(
                        "epoll_ctl(MOD)",
                        libc::SYS_epoll_ctl,
                        [ep, CTL_MOD, n, ev, 0, 0],
                    )?;
                }
            }
            if temporary {
                self.sys("close", libc::SYS_close, [n, 0, 0, 0, 0, 0])?;
            }
        }
        Ok(())
    }
}
