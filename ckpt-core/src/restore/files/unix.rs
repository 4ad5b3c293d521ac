//! Unix socket pairs: created anew by the stub (`socketpair`, no path, its
//! credentials), each end given its saved `SO_SNDBUF`, then each end's
//! queue sent to it from its peer, one `sendto` per datagram or packet so
//! their boundaries are kept, then `SO_PASSCRED`, the shutdown bits and
//! the status flags. The peer's description is handed out when its turn
//! comes. A socket whose peer was closed before the dump (`peer_ino` 0)
//! is made the same way, its queue sent by the other end, which is then
//! closed: the kernel marks the survivor shut down as it did at first.
//!
//! Trusts: the image's validation (each end's peer is in the image,
//! connected back, of the same type; queues within the limits).
//! Credentials that came with queued messages are not kept: a receiver
//! with `SO_PASSCRED` sees the restorer's.

use crate::model::OpenFileKind;
use crate::restore::{Builder, RestoreError};

/// One end as the image saved it.
struct End<'m> {
    index: Option<usize>,
    queue: &'m [crate::model::ByteString],
    shutdown: u8,
    sndbuf: u32,
    passcred: bool,
    flags: i32,
}

impl Builder<'_> {
    /// The stub's fd for unix socket description `i`, above `top`; its
    /// peer is kept for its own description.
    pub(super) fn open_unix_pair(&mut self, i: usize, top: i32) -> Result<u64, RestoreError> {
        if let Some(fd) = self.take_prepared(i) {
            return Ok(fd);
        }
        let m = self.m;
        let ds = &m.files;
        let end = |index: usize| -> Result<(End<'_>, i32, u64), RestoreError> {
            match ds.get(index).map(|d| (&d.kind, d)) {
                Some((
                    OpenFileKind::UnixPair {
                        sock_type,
                        peer_ino,
                        queue,
                        shutdown,
                        sndbuf,
                        passcred,
                    },
                    d,
                )) => Ok((
                    End {
                        index: Some(index),
                        queue,
                        shutdown: *shutdown,
                        sndbuf: *sndbuf,
                        passcred: *passcred,
                        flags: d.flags as i32,
                    },
                    *sock_type,
                    *peer_ino,
                )),
                _ => Err(RestoreError::Invalid(format!(
                    "description {index}: not a unix socket"
                ))),
            }
        };
        let (a, sock_type, peer_ino) = end(i)?;
        // The peer's description, or none: its peer was closed.
        let j = if peer_ino == 0 {
            None
        } else {
            Some(
                ds.iter()
                    .position(|e| {
                        matches!(e.kind, OpenFileKind::UnixPair { .. }) && e.ino == peer_ino
                    })
                    .ok_or_else(|| {
                        RestoreError::Invalid(format!("{}: its peer is missing", ds[i].path))
                    })?,
            )
        };
        let b = match j {
            Some(j) => end(j)?.0,
            None => End {
                index: None,
                queue: &[],
                shutdown: 0,
                sndbuf: 0,
                passcred: false,
                flags: 0,
            },
        };
        let at = self.inj.alloc(8, 8, "socketpair fds")?;
        let ty = sock_type | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
        self.sys(
            "socketpair",
            libc::SYS_socketpair,
            [libc::AF_UNIX as u64, ty as u64, 0, at, 0, 0],
        )?;
        let v = self.inj.read(at, 8, "socketpair fds")?;
        let fa = u64::from(u32::from_ne_bytes([v[0], v[1], v[2], v[3]]));
        let fb = u64::from(u32::from_ne_bytes([v[4], v[5], v[6], v[7]]));
        for (e, fd) in [(&a, fa), (&b, fb)] {
            if e.sndbuf > 0 {
                self.set_int_opt(fd, libc::SO_SNDBUF, e.sndbuf / 2)?;
            }
        }
        let longest = a
            .queue
            .iter()
            .chain(b.queue)
            .map(|q| q.0.len())
            .max()
            .unwrap_or(0);
        if longest > 0 {
            let s = self.map_staging(longest)?;
            // Each end's queue is sent by its peer.
            for (to, from) in [(&a, fb), (&b, fa)] {
                let what = &ds[to.index.unwrap_or(i)].path;
                for q in to.queue {
                    if sock_type == libc::SOCK_STREAM {
                        self.write_all(&s, from, &q.0, what)?;
                    } else {
                        self.send_message(&s, from, &q.0, what)?;
                    }
                }
            }
            self.unmap_staging(s)?;
        }
        let Some(j) = j else {
            // Closed, as the peer was at dump: the kernel shuts the
            // survivor down (a stream or packet socket) before its own
            // shutdown bits are put back.
            self.sys("close", libc::SYS_close, [fb, 0, 0, 0, 0, 0])?;
            self.finish_end(&a, fa)?;
            return self.move_above(fa, top);
        };
        for (e, fd) in [(&a, fa), (&b, fb)] {
            self.finish_end(e, fd)?;
        }
        let fa = self.move_above(fa, top)?;
        let fb = self.move_above(fb, top)?;
        self.prepared.push((j, fb));
        Ok(fa)
    }

    /// `SO_PASSCRED`, the shutdown bits and `O_NONBLOCK` of one end.
    fn finish_end(&mut self, e: &End<'_>, fd: u64) -> Result<(), RestoreError> {
        {
            if e.passcred {
                self.set_int_opt(fd, libc::SO_PASSCRED, 1)?;
            }
            if e.shutdown & 1 != 0 {
                self.sys(
                    "shutdown",
                    libc::SYS_shutdown,
                    [fd, libc::SHUT_RD as u64, 0, 0, 0, 0],
                )?;
            }
            if e.shutdown & 2 != 0 {
                self.sys(
                    "shutdown",
                    libc::SYS_shutdown,
                    [fd, libc::SHUT_WR as u64, 0, 0, 0, 0],
                )?;
            }
            self.set_status_flags(fd, e.flags & libc::O_NONBLOCK)?;
        }
        Ok(())
    }

    /// `setsockopt(fd, SOL_SOCKET, opt, value)` in the stub.
    pub(super) fn set_int_opt(
        &mut self,
        fd: u64,
        opt: i32,
        value: u32,
    ) -> Result<(), RestoreError> {
        let v = self
            .inj
            .put_bytes(&value.to_ne_bytes(), "a socket option")?;
        self.sys(
            "setsockopt",
            libc::SYS_setsockopt,
            [fd, libc::SOL_SOCKET as u64, opt as u64, v, 4, 0],
        )?;
        Ok(())
    }
}
