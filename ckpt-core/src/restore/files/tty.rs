//! Pseudo-terminal pairs ([`OpenFileKind::PtyMaster`] and its
//! [`OpenFileKind::PtySlave`] descriptions): created by the stub with its
//! credentials when the first of them is needed. The stub opens the
//! multiplexer `/dev/ptmx` (its fixed path; `RESOLVE_NO_SYMLINKS` for a
//! root-built stub, as for any file; `O_NOCTTY`) and checks it is the
//! multiplexer (character device 5:2), unlocks the new slave, and takes
//! each slave description from the master with `TIOCGPTPEER` (no path is
//! looked up, so there is nothing a caller could swap). The terminal's
//! settings are given back through the master: termios (`TCSETS2`), window
//! size, packet mode; then the controlling terminal (`TIOCSCTTY` on a
//! slave, by the stub, a session leader without one, when the terminal was
//! the controlling terminal of the process's session; `TIOCSPGRP` when its
//! foreground group was the process's group; then the descriptions that
//! were opened as `/dev/tty` are opened so again, checked to be 5:0), the
//! slave's permission bits (`fchmodat2` on an `O_PATH` description of the
//! slave, which opens no terminal: the new slave is the stub's, whose
//! owner is not changed), the exclusive modes and the lock. No slave is
//! opened beyond its descriptions (closing the last open slave hangs the
//! master up), except once, to hang the master up again, when every slave
//! had been closed at dump. The new slave has the number the kernel gave it: a notice names
//! the old and the new `/dev/pts` name, and the bytes that were queued at
//! dump and are lost (see the dump side).
//!
//! For a process tree (not done here): the pair is made once, by the
//! process that holds the master description; each slave description is a
//! `TIOCGPTPEER` of that master, which may be taken in that process and
//! handed to the one holding it. `PtyTerminal::session` and `foreground`
//! are ids at dump: the session leader whose saved sid they name takes the
//! slave as its controlling terminal (its own `TIOCSCTTY`, after its
//! `setsid`, before any `/dev/tty` description of it is opened), and the
//! foreground group is the restored group that had that saved id.
//!
//! Trusts: the image's validation (one master per index, every slave's
//! master present, `cc` of the right length).

use crate::model::{OpenFileKind, PtyTerminal};
use crate::restore::transfer::Key;
use crate::restore::{Builder, RestoreError};
use crate::sys::tty_ioctl as t;

/// `fchmodat2` (Linux 6.6), which takes `AT_EMPTY_PATH`.
const SYS_FCHMODAT2: libc::c_long = 452;

/// Status flags a restore gives back to a terminal description.
const STATUS: i32 = libc::O_NONBLOCK | libc::O_APPEND;

impl Builder<'_> {
    /// The stub's fd for pseudo-terminal description `i` (either side),
    /// above `top`; the pair is created with all its descriptions the
    /// first time one of them is asked for.
    pub(super) fn open_pty_end(&mut self, i: usize, top: i32) -> Result<u64, RestoreError> {
        if let Some(fd) = self.take_prepared(i) {
            return Ok(fd);
        }
        let m = self.m;
        let ds = &m.files;
        let index = match ds.get(i).map(|d| &d.kind) {
            Some(OpenFileKind::PtyMaster { index, .. } | OpenFileKind::PtySlave { index, .. }) => {
                *index
            }
            _ => return Err(RestoreError::Invalid(format!("files[{i}]: not a pty"))),
        };
        let master = ds
            .iter()
            .position(
                |d| matches!(&d.kind, OpenFileKind::PtyMaster { index: x, .. } if *x == index),
            )
            .ok_or_else(|| {
                RestoreError::Invalid(format!("/dev/pts/{index}: its master is not in the image"))
            })?;
        self.create_pty(master, index, top)?;
        self.take_prepared(i)
            .ok_or_else(|| RestoreError::Invalid(format!("files[{i}]: not part of its pty")))
    }

    /// An `ioctl` on the stub's `fd` with an integer argument.
    fn tty_ioctl(
        &mut self,
        name: &'static str,
        fd: u64,
        request: u64,
        arg: u64,
    ) -> Result<u64, RestoreError> {
        self.sys(name, libc::SYS_ioctl, [fd, request, arg, 0, 0, 0])
    }

    /// An `ioctl` on the stub's `fd` whose argument points at an `int`
    /// holding `value`; the int afterwards.
    fn tty_ioctl_ptr(
        &mut self,
        name: &'static str,
        fd: u64,
        request: u64,
        value: i32,
    ) -> Result<i32, RestoreError> {
        let at = self.inj.put_bytes(&value.to_ne_bytes(), "an ioctl int")?;
        self.sys(name, libc::SYS_ioctl, [fd, request, at, 0, 0, 0])?;
        let b = self.inj.read(at, 4, "an ioctl int")?;
        Ok(i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A new description of the slave of the stub's `master`.
    fn pty_peer(&mut self, master: u64, flags: i32) -> Result<u64, RestoreError> {
        let flags = flags | libc::O_NOCTTY | libc::O_CLOEXEC;
        self.tty_ioctl("ioctl(TIOCGPTPEER)", master, t::TIOCGPTPEER, flags as u64)
    }

    /// `fstat` in the stub: (mode, rdev).
    fn stat_rdev(&mut self, fd: u64) -> Result<(u32, u64), RestoreError> {
        let (mode, rdev, _) = self.stat_tty(fd)?;
        Ok((mode, rdev))
    }

    /// `fstat` in the stub: (mode, rdev, (uid, gid)).
    fn stat_tty(&mut self, fd: u64) -> Result<(u32, u64, (u32, u32)), RestoreError> {
        const STAT_SIZE: u64 = 144;
        let at = self.inj.alloc(STAT_SIZE, 8, "struct stat")?;
        self.sys("fstat", libc::SYS_fstat, [fd, at, 0, 0, 0, 0])?;
        let b = self.inj.read(at, STAT_SIZE as usize, "struct stat")?;
        let word = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let mut rdev = [0u8; 8];
        rdev.copy_from_slice(&b[40..48]);
        Ok((word(24), u64::from_ne_bytes(rdev), (word(28), word(32))))
    }

    /// Create the pair of master description `mi` (index `index` at
    /// dump): every description of it is left in `prepared`.
    fn create_pty(&mut self, mi: usize, index: u32, top: i32) -> Result<(), RestoreError> {
        let m = self.m;
        let p = self.p;
        let ds = &m.files;
        let d = &ds[mi];
        let OpenFileKind::PtyMaster { tty, .. } = &d.kind else {
            return Err(RestoreError::Invalid(format!(
                "files[{mi}]: not a pty master"
            )));
        };
        let tty: &PtyTerminal = tty;
        let access = d.flags as i32 & libc::O_ACCMODE;
        let master = self.open_in_stub("/dev/ptmx", access | libc::O_NOCTTY)?;
        let (mode, rdev) = self.stat_rdev(master)?;
        if mode & libc::S_IFMT != libc::S_IFCHR || rdev != libc::makedev(5, 2) {
            return Err(RestoreError::Invalid(
                "/dev/ptmx is not the pseudo-terminal multiplexer (character device 5:2)".into(),
            ));
        }
        self.tty_ioctl_ptr("ioctl(TIOCSPTLCK)", master, t::TIOCSPTLCK, 0)?;
        let new_index = self.tty_ioctl_ptr("ioctl(TIOCGPTN)", master, t::TIOCGPTN, 0)?;

        // The terminal's settings, through the master.
        let tio = &tty.termios;
        let mut raw = Vec::with_capacity(t::TERMIOS2_SIZE);
        for w in [tio.iflag, tio.oflag, tio.cflag, tio.lflag] {
            raw.extend_from_slice(&w.to_ne_bytes());
        }
        raw.push(tio.line);
        raw.extend_from_slice(&tio.cc.0);
        raw.extend_from_slice(&tio.ispeed.to_ne_bytes());
        raw.extend_from_slice(&tio.ospeed.to_ne_bytes());
        if raw.len() != t::TERMIOS2_SIZE {
            return Err(RestoreError::Invalid(format!(
                "/dev/pts/{index}: termios of the wrong size"
            )));
        }
        let at = self.inj.put_bytes(&raw, "struct termios2")?;
        self.tty_ioctl("ioctl(TCSETS2)", master, t::TCSETS2, at)?;
        let w = tty.winsize;
        let mut ws = Vec::with_capacity(8);
        for v in [w.rows, w.cols, w.xpixel, w.ypixel] {
            ws.extend_from_slice(&v.to_ne_bytes());
        }
        let at = self.inj.put_bytes(&ws, "struct winsize")?;
        self.tty_ioctl("ioctl(TIOCSWINSZ)", master, t::TIOCSWINSZ, at)?;
        if tty.packet {
            self.tty_ioctl_ptr("ioctl(TIOCPKT)", master, t::TIOCPKT, 1)?;
        }

        // Every slave description, from the master.
        let mut first_slave = None;
        for (j, e) in ds.iter().enumerate() {
            if !matches!(e.kind, OpenFileKind::PtySlave { index: x, dev_tty: false } if x == index)
            {
                continue;
            }
            let flags = e.flags as i32;
            let fd = self.pty_peer(master, (flags & libc::O_ACCMODE) | libc::O_NONBLOCK)?;
            self.set_status_flags(fd, flags & STATUS)?;
            let fd = self.move_above(fd, top)?;
            first_slave.get_or_insert(fd);
            self.prepared.push((j, fd));
        }
        // Every slave had been closed at dump (the master saw a hang-up):
        // so again, by opening the slave once and closing it. Otherwise no
        // slave is opened beyond its descriptions (closing the last one
        // would hang the master up).
        if tty.slave_closed && first_slave.is_none() {
            let fd = self.pty_peer(master, libc::O_RDWR | libc::O_NONBLOCK)?;
            self.sys("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
        }
        // The terminal to act on: a slave description, or the master (a
        // master's TIOCSCTTY and TIOCSPGRP act on its slave).
        let slave = first_slave.unwrap_or(master);
        let mut notice = format!(
            "the pseudo-terminal /dev/pts/{index} (its master in the image) is \
             /dev/pts/{new_index} now"
        );
        if tty.session.is_some() && tty.session == Some(p.sid) {
            let s = slave;
            self.tty_ioctl("ioctl(TIOCSCTTY)", s, t::TIOCSCTTY, 0)?;
            notice.push_str("; it is the controlling terminal again");
            if tty.foreground.is_some() && tty.foreground == Some(p.pgid) {
                let pgrp = self.sys("getpgid", libc::SYS_getpgid, [0, 0, 0, 0, 0, 0])?;
                let pgrp = i32::try_from(pgrp).unwrap_or(0);
                self.tty_ioctl_ptr("ioctl(TIOCSPGRP)", s, t::TIOCSPGRP, pgrp)?;
                notice.push_str(", with the process's group in the foreground");
            }
            // Descriptions opened as /dev/tty: again, now that it is the
            // controlling terminal.
            for (j, e) in ds.iter().enumerate() {
                if !matches!(e.kind, OpenFileKind::PtySlave { index: x, dev_tty: true } if x == index)
                    || !self.shared.held_by(Key::Description(j), self.task)
                {
                    continue;
                }
                let fd = self.open_dev_tty(e.flags as i32, top)?;
                self.prepared.push((j, fd));
            }
        } else if ds.iter().enumerate().any(|(j, e)| {
            matches!(e.kind, OpenFileKind::PtySlave { index: x, dev_tty: true } if x == index)
                && self.shared.held_by(Key::Description(j), self.task)
        }) {
            return Err(RestoreError::Invalid(format!(
                "/dev/tty opened on /dev/pts/{index}, which was not the controlling terminal of \
                 the process's session"
            )));
        } else if tty.session.is_some() && !m.tasks.iter().any(|q| Some(q.sid) == tty.session) {
            notice.push_str(
                "; it was the controlling terminal of another session, which is not in the \
                 image",
            );
        }
        // The slave's permission bits, through an O_PATH description of
        // it (which opens no terminal); its owner is the stub's.
        if tty.slave_mode.is_some() || tty.slave_owner.is_some() {
            let s = self.pty_peer(master, libc::O_PATH)?;
            if let Some(mode) = tty.slave_mode {
                let empty = self.inj.put_cstr("", "an empty path")?;
                let r = self.sys_raw(
                    SYS_FCHMODAT2,
                    [
                        s,
                        empty,
                        u64::from(mode & 0o777),
                        libc::AT_EMPTY_PATH as u64,
                        0,
                        0,
                    ],
                )?;
                if r < 0 {
                    notice.push_str(&format!(
                        "; its permission bits {mode:#o} could not be set ({})",
                        crate::inject::errno_of(r)
                    ));
                }
            }
            let (_, _, owner) = self.stat_tty(s)?;
            self.sys("close", libc::SYS_close, [s, 0, 0, 0, 0, 0])?;
            if let Some(was) = tty.slave_owner.filter(|&was| was != owner) {
                notice.push_str(&format!(
                    "; it belongs to uid {} gid {} (at dump: uid {} gid {})",
                    owner.0, owner.1, was.0, was.1
                ));
            }
        }
        // Exclusive mode is per side: a slave description's (the dump
        // learnt it from one).
        if let (true, Some(s)) = (tty.slave_exclusive, first_slave) {
            self.tty_ioctl("ioctl(TIOCEXCL)", s, t::TIOCEXCL, 0)?;
        }
        if tty.master_exclusive {
            self.tty_ioctl("ioctl(TIOCEXCL)", master, t::TIOCEXCL, 0)?;
        }
        if tty.locked {
            self.tty_ioctl_ptr("ioctl(TIOCSPTLCK)", master, t::TIOCSPTLCK, 1)?;
        }
        self.set_status_flags(master, d.flags as i32 & STATUS)?;
        let master = self.move_above(master, top)?;
        self.prepared.push((mi, master));

        let lost = tty.lost;
        if lost.total() != 0 {
            notice.push_str(&format!(
                "; {} bytes queued in it at dump were not saved ({} unread by the master, {} \
                 unread by the slave, {} and {} not yet delivered from the slave and the master)",
                lost.total(),
                lost.master_in,
                lost.slave_in,
                lost.slave_out,
                lost.master_out
            ));
        }
        self.notices.push(notice);
        Ok(())
    }
}

impl Builder<'_> {
    /// In a tree, the pseudo-terminal is made by the process holding its
    /// master (see `create_pty`); a session leader of the image whose
    /// controlling terminal it was, holding a slave handed over to it
    /// (`temp`, by description), takes it as its controlling terminal
    /// again (`TIOCSCTTY`, `TIOCSPGRP` when its group was in the
    /// foreground), then opens its `/dev/tty` descriptions (`deferred`,
    /// checked to be 5:0) into `temp`.
    pub(in crate::restore) fn adopt_controlling_terminal(
        &mut self,
        temp: &mut [Option<u64>],
        deferred: &[usize],
        top: i32,
    ) -> Result<(), RestoreError> {
        let p = self.p;
        let ds = &self.m.files;
        for (mi, d) in ds.iter().enumerate() {
            let OpenFileKind::PtyMaster { index, tty } = &d.kind else {
                continue;
            };
            if p.sid != p.pid
                || tty.session != Some(p.sid)
                || self.shared.held_by(Key::Description(mi), self.task)
            {
                continue;
            }
            let slave = ds.iter().enumerate().find_map(|(j, e)| match e.kind {
                OpenFileKind::PtySlave {
                    index: x,
                    dev_tty: false,
                } if x == *index => temp.get(j).copied().flatten(),
                _ => None,
            });
            let Some(s) = slave else {
                continue;
            };
            self.tty_ioctl("ioctl(TIOCSCTTY)", s, t::TIOCSCTTY, 0)?;
            if tty.foreground.is_some() && tty.foreground == Some(p.pgid) {
                let pgrp = self.sys("getpgid", libc::SYS_getpgid, [0, 0, 0, 0, 0, 0])?;
                let pgrp = i32::try_from(pgrp).unwrap_or(0);
                self.tty_ioctl_ptr("ioctl(TIOCSPGRP)", s, t::TIOCSPGRP, pgrp)?;
            }
            for &j in deferred {
                let Some(e) = ds.get(j) else {
                    continue;
                };
                if !matches!(e.kind, OpenFileKind::PtySlave { index: x, dev_tty: true } if x == *index)
                {
                    continue;
                }
                let fd = self.open_dev_tty(e.flags as i32, top)?;
                if let Some(slot) = temp.get_mut(j) {
                    *slot = Some(fd);
                }
            }
        }
        if let Some(&j) = deferred
            .iter()
            .find(|&&j| temp.get(j).copied().flatten().is_none())
        {
            return Err(RestoreError::Invalid(format!(
                "files[{j}]: /dev/tty of a pseudo-terminal that was not this process's \
                 controlling terminal"
            )));
        }
        Ok(())
    }
}

impl Builder<'_> {
    /// A description of `/dev/tty` with the saved `flags`, opened by the
    /// stub (now that its terminal is the controlling one), checked to be
    /// the controlling terminal device (5:0), above `top`.
    fn open_dev_tty(&mut self, flags: i32, top: i32) -> Result<u64, RestoreError> {
        let fd = self.open_in_stub(
            "/dev/tty",
            (flags & libc::O_ACCMODE) | libc::O_NOCTTY | libc::O_NONBLOCK,
        )?;
        let (mode, rdev) = self.stat_rdev(fd)?;
        if mode & libc::S_IFMT != libc::S_IFCHR || rdev != libc::makedev(5, 0) {
            return Err(RestoreError::Invalid(
                "/dev/tty is not the controlling terminal device (character device 5:0)".into(),
            ));
        }
        self.set_status_flags(fd, flags & STATUS)?;
        self.move_above(fd, top)
    }
}
