//! Pseudo-terminal pairs inside the image: a master (`/dev/ptmx` or
//! `/dev/pts/ptmx`, device 5:2) the process holds, and every description
//! of *that* pty's slave (`/dev/pts/N`). Each is its own description
//! ([`OpenFileKind::PtyMaster`], [`OpenFileKind::PtySlave`]), so that the
//! two sides may later be held by different processes; the terminal's
//! state is kept once, with the master.
//!
//! Which slave belongs to which master: the master's index (`TIOCGPTN` on
//! a `pidfd_getfd` copy) must be the slave's number (from its device
//! numbers), and the slave must live on the master's devpts instance (the
//! `st_dev` of a slave opened `O_PATH` through `TIOCGPTPEER` on the copy:
//! no tty is opened, nothing changes). A slave with no such master in the
//! process is left to [`super::external`]: that is the user's terminal.
//! A `/dev/tty` description is a description of the process's controlling
//! terminal: when that is the slave of a master the process holds (its
//! `TIOCGDEV` is the slave's device and the terminal's session is the
//! process's), it is a slave description too, marked to be reopened as
//! `/dev/tty`; otherwise it stays external.
//!
//! Captured through the master copy (a master answers for its slave):
//! termios (`TCGETS2`), window size, packet mode, the slave's lock, the
//! exclusive mode of each side, and the session and foreground process
//! group the terminal is the controlling terminal of (`TIOCGSID`,
//! `TIOCGPGRP`: these work on a master from any process). Nothing is
//! written to the terminal and nothing is read from it.
//!
//! Not captured: the bytes queued in the terminal. A tty has no way to
//! peek at its queues (CRIU reads them, which consumes them, and writes
//! them back through the other side, where the line discipline processes
//! them a second time: echo, `ICRNL`, `ONLCR` apply again). Here they are
//! counted (`TIOCINQ` and `TIOCOUTQ` on the master and on a slave the
//! process holds) and the counts recorded as lost, so that the dump and
//! the restore both name them.
//!
//! Trusts: the kernel's answers on the copies (each closed at once).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use nix::errno::Errno;

use super::DumpError;
use crate::model::{
    ByteString, OpenFile, OpenFileKind, PtyQueues, PtyTerminal, Termios, WinSize, TERMIOS_NCCS,
};
use crate::sys::{self, tty_ioctl as t};

/// The first major number of Unix98 pty slaves (eight majors of 256).
const PTS_MAJOR: u64 = 136;
const PTS_MAJORS: u64 = 8;

/// A pty master the process holds: its index and devpts instance.
struct Master {
    index: u32,
    /// `st_dev` of its slave (its devpts instance); `None` if unknown.
    devpts: Option<u64>,
    /// The session the terminal is the controlling terminal of.
    session: Option<i32>,
}

/// The pty masters the process holds (found before the fds are
/// classified) and what was learnt from their slaves.
#[derive(Default)]
pub(super) struct Ptys {
    /// The process's session.
    sid: i32,
    masters: Vec<Master>,
    /// index -> (slave exclusive, slave's TIOCINQ, slave's TIOCOUTQ)
    slaves: HashMap<u32, (bool, u32, u32)>,
}

/// A pty master: character device 5:2.
fn is_master(meta: &std::fs::Metadata) -> bool {
    let rdev = meta.rdev();
    meta.file_type().is_char_device()
        && nix::sys::stat::major(rdev) == 5
        && nix::sys::stat::minor(rdev) == 2
}

/// `/dev/tty`: character device 5:0.
fn is_dev_tty(meta: &std::fs::Metadata) -> bool {
    let rdev = meta.rdev();
    meta.file_type().is_char_device()
        && nix::sys::stat::major(rdev) == 5
        && nix::sys::stat::minor(rdev) == 0
}

/// The pty number of a slave device, if `meta` is one.
fn slave_index(meta: &std::fs::Metadata) -> Option<u32> {
    let rdev = meta.rdev();
    let major = nix::sys::stat::major(rdev);
    if !meta.file_type().is_char_device() || !(PTS_MAJOR..PTS_MAJOR + PTS_MAJORS).contains(&major) {
        return None;
    }
    u32::try_from((major - PTS_MAJOR) * 256 + nix::sys::stat::minor(rdev)).ok()
}

impl Ptys {
    /// The session of the process whose fds are classified next.
    pub(super) fn set_session(&mut self, sid: i32) {
        self.sid = sid;
    }

    /// Note fd `fd` (with `meta`) if it is a pty master; a master the
    /// dump cannot examine is left to [`classify`] to refuse.
    pub(super) fn note(&mut self, pidfd: &OwnedFd, fd: i32, meta: &std::fs::Metadata) {
        if !is_master(meta) {
            return;
        }
        let Ok(copy) = sys::pidfd_getfd(pidfd, fd) else {
            return;
        };
        let Ok(index) = sys::ioctl_get_int(copy.as_fd(), t::TIOCGPTN) else {
            return;
        };
        let devpts = sys::pty_peer(
            copy.as_fd(),
            libc::O_PATH | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
        .ok()
        .and_then(|p| nix::sys::stat::fstat(p.as_raw_fd()).ok())
        .map(|st| st.st_dev);
        let session = sys::ioctl_get_int(copy.as_fd(), t::TIOCGSID).ok();
        if let Ok(index) = u32::try_from(index) {
            self.masters.push(Master {
                index,
                devpts,
                session,
            });
        }
    }

    /// The master of the slave `meta` describes, if the process holds it.
    fn master_of(&self, meta: &std::fs::Metadata) -> Option<u32> {
        let index = slave_index(meta)?;
        self.masters
            .iter()
            .find(|m| m.index == index && m.devpts.is_none_or(|d| d == meta.dev()))
            .map(|m| m.index)
    }

    /// `Some(PtyMaster)` or `Some(PtySlave)` for a pty master, or a slave
    /// whose master the process holds; `None` for anything else.
    pub(super) fn classify(
        &mut self,
        pid: i32,
        pidfd: &OwnedFd,
        fd: i32,
        link: &str,
        meta: &std::fs::Metadata,
    ) -> Result<Option<OpenFileKind>, DumpError> {
        let refuse = |what: String| DumpError::Unsupported {
            pid,
            resource: format!("fd {fd} ({link}), a pseudo-terminal {what}"),
        };
        if is_master(meta) {
            let copy = sys::pidfd_getfd(pidfd, fd)
                .map_err(|e| refuse(format!("master the dump cannot examine ({e})")))?;
            let tty = capture(&copy)
                .map_err(|e| refuse(format!("master whose state cannot be read ({e})")))?;
            let mut tty = tty;
            // The slave's inode (an O_PATH peer opens no terminal).
            if let Some(st) = sys::pty_peer(
                copy.as_fd(),
                libc::O_PATH | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
            .ok()
            .and_then(|p| nix::sys::stat::fstat(p.as_raw_fd()).ok())
            {
                tty.slave_mode = Some(st.st_mode & 0o777);
                tty.slave_owner = Some((st.st_uid, st.st_gid));
            }
            let index = sys::ioctl_get_int(copy.as_fd(), t::TIOCGPTN)
                .ok()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| refuse("master without an index".into()))?;
            return Ok(Some(OpenFileKind::PtyMaster { index, tty }));
        }
        if is_dev_tty(meta) {
            return Ok(self.dev_tty_slave(pidfd, fd));
        }
        let Some(index) = self.master_of(meta) else {
            return Ok(None);
        };
        // What only the slave side tells: its exclusive mode and queues.
        if let Ok(copy) = sys::pidfd_getfd(pidfd, fd) {
            let get = |req| sys::ioctl_get_int(copy.as_fd(), req).unwrap_or(0);
            let facts = (
                get(t::TIOCGEXCL) != 0,
                u32::try_from(get(t::TIOCINQ)).unwrap_or(0),
                u32::try_from(get(t::TIOCOUTQ)).unwrap_or(0),
            );
            let e = self.slaves.entry(index).or_default();
            *e = (e.0 || facts.0, e.1.max(facts.1), e.2.max(facts.2));
        }
        Ok(Some(OpenFileKind::PtySlave {
            index,
            dev_tty: false,
        }))
    }

    /// A `/dev/tty` description whose terminal (`TIOCGDEV` on a copy) is
    /// the slave of a master the process holds, while that slave is the
    /// controlling terminal of the process's session; `None` otherwise
    /// (it is then connected outside the image, as before).
    fn dev_tty_slave(&self, pidfd: &OwnedFd, fd: i32) -> Option<OpenFileKind> {
        let copy = sys::pidfd_getfd(pidfd, fd).ok()?;
        let dev = u32::try_from(sys::ioctl_get_int(copy.as_fd(), t::TIOCGDEV).ok()?).ok()?;
        // The kernel's `new_encode_dev`.
        let major = u64::from((dev & 0xfff00) >> 8);
        let minor = u64::from((dev & 0xff) | ((dev >> 12) & 0xfff00));
        if !(PTS_MAJOR..PTS_MAJOR + PTS_MAJORS).contains(&major) {
            return None;
        }
        let index = u32::try_from((major - PTS_MAJOR) * 256 + minor).ok()?;
        self.masters
            .iter()
            .find(|m| m.index == index && m.session == Some(self.sid))
            .map(|m| OpenFileKind::PtySlave {
                index: m.index,
                dev_tty: true,
            })
    }

    /// Once every fd is classified: each master gets what its slaves
    /// told (exclusive mode, their queues).
    pub(super) fn finish(&self, descriptions: &mut [OpenFile]) {
        for d in descriptions {
            if let OpenFileKind::PtyMaster { index, tty } = &mut d.kind {
                if let Some(&(exclusive, inq, outq)) = self.slaves.get(index) {
                    tty.slave_exclusive = exclusive;
                    tty.lost.slave_in = inq;
                    tty.lost.slave_out = outq;
                }
            }
        }
    }
}

/// The terminal's state, read through a copy of its master.
fn capture(master: &OwnedFd) -> Result<PtyTerminal, Errno> {
    let fd = master.as_fd();
    let raw = sys::tty_termios2(fd)?;
    let word = |at: usize| u32::from_ne_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
    let termios = Termios {
        iflag: word(0),
        oflag: word(4),
        cflag: word(8),
        lflag: word(12),
        line: raw[16],
        cc: ByteString(raw[17..17 + TERMIOS_NCCS].to_vec()),
        ispeed: word(36),
        ospeed: word(40),
    };
    let [rows, cols, xpixel, ypixel] = sys::tty_winsize(fd)?;
    let get = |req| sys::ioctl_get_int(fd, req);
    // No session: ENOTTY; no foreground group: 0.
    let id = |r: Result<i32, Errno>| r.ok().filter(|&v| v > 0);
    let count = |req| u32::try_from(get(req).unwrap_or(0)).unwrap_or(0);
    Ok(PtyTerminal {
        termios,
        winsize: WinSize {
            rows,
            cols,
            xpixel,
            ypixel,
        },
        packet: get(t::TIOCGPKT)? != 0,
        locked: get(t::TIOCGPTLCK)? != 0,
        master_exclusive: get(t::TIOCGEXCL)? != 0,
        slave_exclusive: false,
        session: id(get(t::TIOCGSID)),
        foreground: id(get(t::TIOCGPGRP)),
        lost: PtyQueues {
            master_in: count(t::TIOCINQ),
            master_out: count(t::TIOCOUTQ),
            slave_in: 0,
            slave_out: 0,
        },
        slave_mode: None,
        slave_owner: None,
        // A master whose slave was opened and closed again reports a
        // hang-up (n_tty's poll: TTY_OTHER_CLOSED).
        slave_closed: sys::poll_now(master, libc::POLLIN)? & libc::POLLHUP != 0,
    })
}
