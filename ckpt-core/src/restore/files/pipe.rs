//! Pipes and FIFOs. A pipe is created anew by the stub (`pipe2`, no path,
//! its credentials), sized with `F_SETPIPE_SZ`, filled with the saved
//! bytes (a packet-mode pipe one `write` per packet, in packet mode), and its ends handed to the descriptions that held them (an end
//! no description held is closed: its pipe had no reader or no writer left
//! at dump). A FIFO is reopened by its path in the stub, like a regular
//! file ([`Builder::open_in_stub`]: the stub's credentials, and
//! `RESOLVE_NO_SYMLINKS` for a root-built stub), never blocking: a
//! non-blocking read-only open first, which always succeeds, keeps a
//! reader while every saved description is opened non-blocking and the
//! data is written; then each gets its saved status flags. The first open
//! must be a FIFO, and every later one the same FIFO (`fstat` in the
//! stub), so a path swapped meanwhile is refused.
//!
//! A pipe with more than one read or write description (an end reopened
//! through `/proc/PID/fd`, each with its own status flags) is created once:
//! the first description of each end takes the end `pipe2` made, every
//! further one is a new open by the stub of its own `/proc/self/fd/N` of
//! that end, so all of them are descriptions of the one pipe, and fds that
//! shared a description share it again.
//!
//! Trusts: the image's validation (pipe ends read-only or write-only, the
//! queued data held by one description of a pipe, within the size).

use crate::model::{OpenFile, OpenFileKind};
use crate::restore::{Builder, RestoreError};

/// Status flags a restore gives back to a pipe or FIFO description.
const STATUS: i32 = libc::O_NONBLOCK | libc::O_DIRECT;

impl Builder<'_> {
    /// The stub's fd for pipe description `i`, above `top`; its other end
    /// is kept for its own description.
    pub(super) fn open_pipe_end(&mut self, i: usize, top: i32) -> Result<u64, RestoreError> {
        if let Some(fd) = self.take_prepared(i) {
            return Ok(fd);
        }
        let m = self.m;
        let ds = &m.files;
        let d = &ds[i];
        let group: Vec<usize> = ds
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                matches!(e.kind, OpenFileKind::Pipe { .. }) && e.dev == d.dev && e.ino == d.ino
            })
            .map(|(j, _)| j)
            .collect();
        let at = self.inj.alloc(8, 8, "pipe2 fds")?;
        self.sys(
            "pipe2",
            libc::SYS_pipe2,
            [at, (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64, 0, 0, 0, 0],
        )?;
        let b = self.inj.read(at, 8, "pipe2 fds")?;
        let r = u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        let w = u64::from(u32::from_ne_bytes([b[4], b[5], b[6], b[7]]));
        let size = group
            .iter()
            .find_map(|&j| match &ds[j].kind {
                OpenFileKind::Pipe { size, .. } => Some(*size),
                _ => None,
            })
            .unwrap_or(0);
        let data = group
            .iter()
            .find_map(|&j| match &ds[j].kind {
                OpenFileKind::Pipe { data, .. } if !data.0.is_empty() => Some(&data.0),
                _ => None,
            })
            .unwrap_or(&EMPTY);
        let packets = group.iter().find_map(|&j| match &ds[j].kind {
            OpenFileKind::Pipe { packets, .. } if !packets.is_empty() => Some(packets),
            _ => None,
        });
        self.size_pipe(r, size, &d.path)?;
        if !data.is_empty() {
            let s = self.map_staging(data.len().min(1 << 20))?;
            match packets {
                // One write per packet, in packet mode.
                Some(packets) => {
                    self.set_status_flags(w, libc::O_NONBLOCK | libc::O_DIRECT)?;
                    let mut at = 0usize;
                    for &n in packets {
                        let end = at + n as usize;
                        let packet = data.get(at..end).ok_or_else(|| {
                            RestoreError::Invalid(format!("{}: packets beyond the data", d.path))
                        })?;
                        self.write_all(&s, w, packet, &d.path)?;
                        at = end;
                    }
                }
                None => self.write_all(&s, w, data, &d.path)?,
            }
            self.unmap_staging(s)?;
        }
        // The first read and the first write description take the ends
        // pipe2 made; every further one is a new open of that end through
        // the stub's own /proc/self/fd (as it was made: reopened through
        // /proc), while both ends are still at their numbers.
        let mut fds = Vec::with_capacity(group.len());
        let (mut r_used, mut w_used) = (false, false);
        for &j in &group {
            let reads = ds[j].flags as i32 & libc::O_ACCMODE == libc::O_RDONLY;
            let fd = match (reads, r_used, w_used) {
                (true, false, _) => {
                    r_used = true;
                    r
                }
                (false, _, false) => {
                    w_used = true;
                    w
                }
                (true, true, _) => self.reopen_pipe_end(r, libc::O_RDONLY, &d.path)?,
                (false, _, true) => self.reopen_pipe_end(w, libc::O_WRONLY, &d.path)?,
            };
            fds.push((j, fd));
        }
        for (used, fd) in [(r_used, r), (w_used, w)] {
            if !used {
                self.sys("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
            }
        }
        let mut mine = None;
        for (j, fd) in fds {
            self.set_status_flags(fd, ds[j].flags as i32 & STATUS)?;
            let fd = self.move_above(fd, top)?;
            if j == i {
                mine = Some(fd);
            } else {
                self.prepared.push((j, fd));
            }
        }
        mine.ok_or_else(|| RestoreError::Invalid(format!("{}: not a pipe end", d.path)))
    }

    /// A new open file description of the pipe end the stub holds as
    /// `fd`: the stub opens its own `/proc/self/fd/N` (a path made here, not
    /// from the image) with `mode`, non-blocking (both ends are open, so
    /// neither direction waits or fails for want of the other); its saved
    /// status flags are set afterwards.
    fn reopen_pipe_end(&mut self, fd: u64, mode: i32, what: &str) -> Result<u64, RestoreError> {
        let path = format!("/proc/self/fd/{fd}");
        let at = self.inj.put_cstr(&path, "writing a path")?;
        let flags = (mode | libc::O_NONBLOCK | libc::O_CLOEXEC) as u64;
        let r = self.sys_raw(
            libc::SYS_openat,
            [libc::AT_FDCWD as u64, at, flags, 0, 0, 0],
        )?;
        if r < 0 {
            return Err(RestoreError::Open {
                path: format!(
                    "{what} (reopening its {} end through /proc)",
                    if mode == libc::O_RDONLY {
                        "read"
                    } else {
                        "write"
                    }
                ),
                errno: crate::inject::errno_of(r),
            });
        }
        Ok(r as u64)
    }

    /// `fstat` in the stub: (mode, device, inode).
    fn fstat_in_stub(&mut self, fd: u64) -> Result<(u32, u64, u64), RestoreError> {
        const STAT_SIZE: u64 = 144;
        let at = self.inj.alloc(STAT_SIZE, 8, "struct stat")?;
        self.sys("fstat", libc::SYS_fstat, [fd, at, 0, 0, 0, 0])?;
        let b = self.inj.read(at, STAT_SIZE as usize, "struct stat")?;
        let word = |o: usize| {
            u64::from_ne_bytes([
                b[o],
                b[o + 1],
                b[o + 2],
                b[o + 3],
                b[o + 4],
                b[o + 5],
                b[o + 6],
                b[o + 7],
            ])
        };
        let mode = u32::from_ne_bytes([b[24], b[25], b[26], b[27]]);
        Ok((mode, word(0), word(8)))
    }

    /// Give the stub's pipe `fd` the saved size.
    fn size_pipe(&mut self, fd: u64, size: u32, what: &str) -> Result<(), RestoreError> {
        let now = self.sys(
            "fcntl(F_GETPIPE_SZ)",
            libc::SYS_fcntl,
            [fd, libc::F_GETPIPE_SZ as u64, 0, 0, 0, 0],
        )?;
        if now == u64::from(size) || size == 0 {
            return Ok(());
        }
        let r = self.sys_raw(
            libc::SYS_fcntl,
            [fd, libc::F_SETPIPE_SZ as u64, u64::from(size), 0, 0, 0],
        )?;
        if r < 0 {
            return Err(RestoreError::Unsupported(format!(
                "{what} of {size} bytes (F_SETPIPE_SZ: {}; a user's pipes are limited by \
                 /proc/sys/fs/pipe-max-size and pipe-user-pages-soft)",
                crate::inject::errno_of(r)
            )));
        }
        Ok(())
    }

    /// The stub's fd for FIFO description `i`, above `top`; the other
    /// descriptions of the same FIFO are opened with it.
    pub(super) fn open_fifo(&mut self, i: usize, top: i32) -> Result<u64, RestoreError> {
        if let Some(fd) = self.take_prepared(i) {
            return Ok(fd);
        }
        let m = self.m;
        let ds = &m.files;
        let d: &OpenFile = &ds[i];
        let group: Vec<usize> = ds
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                matches!(e.kind, OpenFileKind::Fifo { .. }) && e.dev == d.dev && e.ino == d.ino
            })
            .map(|(j, _)| j)
            .collect();
        let keeper = self.open_in_stub(&d.path, libc::O_RDONLY | libc::O_NONBLOCK)?;
        let fifo = self.fstat_in_stub(keeper)?;
        if fifo.0 & libc::S_IFMT != libc::S_IFIFO {
            return Err(RestoreError::Invalid(format!(
                "{}: not a FIFO any more (mode {:o})",
                d.path, fifo.0
            )));
        }
        let mut opened = Vec::with_capacity(group.len());
        for &j in &group {
            let e = &ds[j];
            let mode = e.flags as i32 & libc::O_ACCMODE;
            let fd = self.open_in_stub(&d.path, mode | libc::O_NONBLOCK)?;
            // The same FIFO as the first open, even if the path changed.
            if self.fstat_in_stub(fd)? != fifo {
                return Err(RestoreError::Invalid(format!(
                    "{}: the FIFO was replaced while it was reopened",
                    d.path
                )));
            }
            opened.push((j, fd, mode));
        }
        let (size, data) = group
            .iter()
            .find_map(|&j| match &ds[j].kind {
                OpenFileKind::Fifo { size, data } => Some((*size, &data.0)),
                _ => None,
            })
            .unwrap_or((0, &EMPTY));
        self.size_pipe(keeper, size, &d.path)?;
        if !data.is_empty() {
            let writer = match opened.iter().find(|o| o.2 != libc::O_RDONLY) {
                Some(o) => o.1,
                None => self.open_in_stub(&d.path, libc::O_WRONLY | libc::O_NONBLOCK)?,
            };
            let s = self.map_staging(data.len().min(1 << 20))?;
            self.write_all(&s, writer, data, &d.path)?;
            self.unmap_staging(s)?;
            if !opened.iter().any(|o| o.1 == writer) {
                self.sys("close", libc::SYS_close, [writer, 0, 0, 0, 0, 0])?;
            }
        }
        let mut mine = None;
        for (j, fd, _) in opened {
            self.set_status_flags(fd, ds[j].flags as i32 & STATUS)?;
            let fd = self.move_above(fd, top)?;
            if j == i {
                mine = Some(fd);
            } else {
                self.prepared.push((j, fd));
            }
        }
        self.sys("close", libc::SYS_close, [keeper, 0, 0, 0, 0, 0])?;
        mine.ok_or_else(|| RestoreError::Invalid(format!("{}: not a FIFO", d.path)))
    }
}

static EMPTY: Vec<u8> = Vec::new();
