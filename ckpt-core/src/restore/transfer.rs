//! Open file descriptions shared between the processes of a tree: each is
//! created once, by the first process that holds it, and handed to every
//! other holder as that very description (one offset, one set of flags,
//! one pipe).
//!
//! The restorer keeps a copy of each description another process still
//! needs (`pidfd_getfd` from the process that created it) and passes it
//! over a unix datagram socket pair with `SCM_RIGHTS`: one end is the
//! restorer's; the other was inherited by the first stub and, through
//! `fork`, by every other one, moved above every fd number of the image so
//! that nothing the image restores lands on it. The receiving stub takes
//! the message with an injected `recvmsg`; only one message is ever in
//! flight, and only the stub being built reads, so the description reaches
//! the process it is meant for. Each stub closes its end once its fds are
//! in place.
//!
//! Owns: the restorer's end of the pair and the copies. Trusts: nothing
//! from the stubs (the received fd number is checked to be one).

use std::collections::HashMap;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};

use super::{Builder, RestoreError};

/// What is handed between the processes of the image: an open file
/// description, or the file behind a content space (a memfd, a file
/// unlinked while open, shared anonymous memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Key {
    Description(usize),
    Space(u32),
}

/// The descriptions and files handed between the processes of the image.
pub(super) struct Shared {
    /// The restorer's end.
    ours: OwnedFd,
    /// The stubs' end, until the first stub is created with it.
    theirs: Option<OwnedFd>,
    /// The number of the stubs' end in every stub (its number here until
    /// the first stub moves it).
    pub(super) stub_fd: u64,
    /// The restorer's copy of each.
    copies: HashMap<Key, OwnedFd>,
    /// The tasks that hold each (fds, mappings).
    holders: HashMap<Key, Vec<usize>>,
}

impl Shared {
    /// The socket pair, and who holds each description and space of `m`.
    pub(super) fn new(m: &crate::image::Manifest) -> Result<Shared, RestoreError> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Datagram,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(RestoreError::Spawn)?;
        let mut holders: HashMap<Key, Vec<usize>> = HashMap::new();
        let mut note = |k: Key, t: usize| {
            let v = holders.entry(k).or_default();
            if !v.contains(&t) {
                v.push(t);
            }
        };
        for (t, p) in m.tasks.iter().enumerate() {
            for f in &p.fds {
                note(Key::Description(f.description as usize), t);
                if let Some(
                    crate::model::OpenFileKind::Memfd { space }
                    | crate::model::OpenFileKind::Unlinked { space },
                ) = m.files.get(f.description as usize).map(|d| &d.kind)
                {
                    note(Key::Space(*space), t);
                }
            }
            for v in &p.vmas {
                if let Some(s) = v.space {
                    note(Key::Space(s), t);
                }
            }
        }
        Ok(Shared {
            stub_fd: u64::try_from(theirs.as_raw_fd()).unwrap_or(u64::MAX),
            ours,
            theirs: Some(theirs),
            copies: HashMap::new(),
            holders,
        })
    }

    /// The stubs' end, for the first stub to inherit (then closed here).
    pub(super) fn stub_end(&self) -> Option<i32> {
        self.theirs.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// The first stub holds it now.
    pub(super) fn stub_created(&mut self) {
        self.theirs = None;
    }

    /// Whether a task after `task` holds `k`.
    pub(super) fn needed_after(&self, k: Key, task: usize) -> bool {
        self.holders
            .get(&k)
            .is_some_and(|ts| ts.iter().any(|&t| t > task))
    }

    /// Whether task `task` holds `k`.
    pub(super) fn held_by(&self, k: Key, task: usize) -> bool {
        self.holders.get(&k).is_some_and(|ts| ts.contains(&task))
    }

    /// Whether the restorer has a copy of `k` (an earlier process made it).
    pub(super) fn has(&self, k: Key) -> bool {
        self.copies.contains_key(&k)
    }

    pub(super) fn keep(&mut self, k: Key, copy: OwnedFd) {
        self.copies.insert(k, copy);
    }

    /// Send the copy of `k` to the stubs' end.
    fn send(&self, k: Key) -> Result<(), RestoreError> {
        let copy = self
            .copies
            .get(&k)
            .ok_or_else(|| RestoreError::Invalid(format!("{k:?} was never created")))?;
        send_fd(&self.ours, copy)
    }

    /// Send `fd` itself to the stubs' end.
    pub(super) fn send_own(&self, fd: &OwnedFd) -> Result<(), RestoreError> {
        send_fd(&self.ours, fd)
    }
}

fn send_fd(ours: &OwnedFd, fd: &OwnedFd) -> Result<(), RestoreError> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(b"d")];
    sendmsg::<()>(ours.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(RestoreError::Spawn)?;
    Ok(())
}

/// `struct msghdr` (56 bytes), one `iovec` (16), and room for one
/// `SCM_RIGHTS` fd (`CMSG_SPACE(4)` = 24).
const MSGHDR: u64 = 56;
const IOVEC: u64 = 16;
const CMSG: u64 = 24;

impl Builder<'_> {
    /// Take `k` (made by an earlier process of the image) into the stub:
    /// the restorer sends its copy, the stub receives it; the stub's new
    /// fd number.
    pub(super) fn receive_shared(&mut self, k: Key) -> Result<u64, RestoreError> {
        self.shared.send(k)?;
        self.receive_sent(&format!("{k:?}"))
    }

    /// Receive in the stub the fd the restorer just sent; its number.
    pub(super) fn receive_sent(&mut self, what: &str) -> Result<u64, RestoreError> {
        let base = self.inj.alloc(MSGHDR + IOVEC + CMSG + 8, 8, "recvmsg")?;
        let (iov, cmsg, byte) = (
            base + MSGHDR,
            base + MSGHDR + IOVEC,
            base + MSGHDR + IOVEC + CMSG,
        );
        let mut msg = Vec::with_capacity(MSGHDR as usize);
        msg.extend_from_slice(&0u64.to_ne_bytes()); // msg_name
        msg.extend_from_slice(&0u64.to_ne_bytes()); // msg_namelen + pad
        msg.extend_from_slice(&iov.to_ne_bytes()); // msg_iov
        msg.extend_from_slice(&1u64.to_ne_bytes()); // msg_iovlen
        msg.extend_from_slice(&cmsg.to_ne_bytes()); // msg_control
        msg.extend_from_slice(&CMSG.to_ne_bytes()); // msg_controllen
        msg.extend_from_slice(&0u64.to_ne_bytes()); // msg_flags + pad
        msg.extend_from_slice(&byte.to_ne_bytes()); // iov_base
        msg.extend_from_slice(&1u64.to_ne_bytes()); // iov_len
        msg.extend_from_slice(&[0u8; CMSG as usize]);
        self.inj.write(base, &msg, "writing a msghdr")?;
        let n = self.sys(
            "recvmsg(description)",
            libc::SYS_recvmsg,
            [
                self.shared.stub_fd,
                base,
                (libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT) as u64,
                0,
                0,
                0,
            ],
        )?;
        let c = self.inj.read(cmsg, CMSG as usize, "reading a cmsg")?;
        let word = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&c[at..at + 4]);
            u32::from_ne_bytes(b)
        };
        let len = u64::from(word(0)) | (u64::from(word(4)) << 32);
        let (level, kind, fd) = (word(8), word(12), word(16));
        if n != 1
            || len != 20
            || level != libc::SOL_SOCKET as u32
            || kind != libc::SCM_RIGHTS as u32
            || fd > i32::MAX as u32
        {
            return Err(RestoreError::Invalid(format!(
                "{what} did not reach process {}",
                self.pid()
            )));
        }
        Ok(u64::from(fd))
    }

    /// Keep a copy of the stub's `fd` (`k`) for the processes after this
    /// one that hold it too.
    pub(super) fn share_if_needed(&mut self, k: Key, fd: u64) -> Result<(), RestoreError> {
        if self.shared.has(k) || !self.shared.needed_after(k, self.task) {
            return Ok(());
        }
        let pid = self.pid();
        let copy = crate::sys::pidfd_getfd(self.pidfd, i32::try_from(fd).unwrap_or(-1)).map_err(
            |errno| RestoreError::Memory {
                pid,
                what: "taking a copy of a shared description",
                addr: fd,
                errno,
            },
        )?;
        self.shared.keep(k, copy);
        Ok(())
    }
}
