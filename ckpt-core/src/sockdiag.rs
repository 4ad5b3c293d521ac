//! What the kernel says about one unix socket, by inode: `NETLINK_SOCK_DIAG`
//! with a `unix_diag_req` for exactly that inode (its type, state, bound
//! name, peer and shutdown bits). This is how a dump learns which socket an
//! fd's socket is connected to, which nothing in `/proc/PID/fdinfo` says.
//!
//! Owns: one netlink socket per question, closed before returning. Trusts:
//! nothing in the answer is used unchecked: every length is checked
//! against the buffer, an answer for another inode is an error.

use nix::errno::Errno;
use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use std::os::fd::AsRawFd;

/// `SOCK_DIAG_BY_FAMILY`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
/// `UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS |
/// UDIAG_SHOW_RQLEN`.
const SHOW: u32 = 0x01 | 0x02 | 0x04 | 0x08 | 0x10;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;

/// One unix socket as `sock_diag` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnixSocket {
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub sock_type: i32,
    /// The kernel's `TCP_*` state: 1 connected, 7 unconnected, 10 listening.
    pub state: u8,
    /// The bound address (a path, or `@name` for the abstract namespace).
    pub name: Option<String>,
    /// Inode of the socket it is connected to.
    pub peer: Option<u64>,
    /// Bytes (stream) or the first message's length (datagram) queued to be
    /// read, and the bytes its sent data still takes.
    pub rqlen: Option<(u32, u32)>,
    /// `sk_shutdown`: 1 no more reading, 2 no more writing.
    pub shutdown: u8,
    /// The socket file a path name is bound to: its inode and device (as
    /// `stat` shows `st_dev`).
    pub vfs: Option<(u64, u64)>,
    /// A listener's connections waiting to be accepted: the inode of each
    /// connecting socket, in the order they will be accepted.
    pub icons: Vec<u64>,
}

/// The state value of a connected socket (`TCP_ESTABLISHED`).
pub const STATE_CONNECTED: u8 = 1;
/// The state value of a listening socket (`TCP_LISTEN`).
pub const STATE_LISTEN: u8 = 10;

/// Ask the kernel about the unix socket with inode `ino` (in the caller's
/// network namespace).
pub fn unix_socket(ino: u64) -> Result<UnixSocket, Errno> {
    let ino32 = u32::try_from(ino).map_err(|_| Errno::ENOENT)?;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid
    req.push(libc::AF_UNIX as u8);
    req.push(0); // protocol
    req.extend_from_slice(&0u16.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&ino32.to_ne_bytes());
    req.extend_from_slice(&SHOW.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // no cookie
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    sendto(
        fd.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut buf = vec![0u8; 8192];
    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    parse(buf.get(..n).ok_or(Errno::EPROTO)?, ino32)
}

/// Whether some unix socket of this network namespace is bound to the
/// socket file `(ino, dev)` under the name `name` (a path, or a relative
/// name, as `/proc/self/net/unix` spells it): each socket bound to that
/// name is asked for its socket file. A socket that cannot be asked
/// counts as bound.
pub fn file_bound(name: &str, ino: u64, dev: u64) -> Result<bool, std::io::Error> {
    let text = std::fs::read_to_string("/proc/self/net/unix")?;
    Ok(text.lines().skip(1).any(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        if cols.get(7..).map(|p| p.join(" ")).as_deref() != Some(name) {
            return false;
        }
        let Some(sock) = cols.get(6).and_then(|i| i.parse::<u64>().ok()) else {
            return true;
        };
        unix_socket(sock).map_or(true, |s| s.vfs == Some((ino, dev)))
    }))
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, Errno> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_ne_bytes)
        .ok_or(Errno::EPROTO)
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, Errno> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_ne_bytes)
        .ok_or(Errno::EPROTO)
}

/// One answer: a netlink header, then `unix_diag_msg`, then attributes.
fn parse(b: &[u8], ino: u32) -> Result<UnixSocket, Errno> {
    let len = u32_at(b, 0)? as usize;
    let ty = u16_at(b, 4)?;
    let msg = b.get(16..len).ok_or(Errno::EPROTO)?;
    if ty == NLMSG_ERROR {
        let e = i32::from_ne_bytes(
            msg.get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or(Errno::EPROTO)?,
        );
        return Err(Errno::from_raw(-e));
    }
    if ty != SOCK_DIAG_BY_FAMILY || msg.len() < 16 {
        return Err(Errno::EPROTO);
    }
    if msg[0] != libc::AF_UNIX as u8 || u32_at(msg, 4)? != ino {
        return Err(Errno::EPROTO);
    }
    let mut s = UnixSocket {
        sock_type: i32::from(msg[1]),
        state: msg[2],
        ..UnixSocket::default()
    };
    let mut at = 16;
    while at + 4 <= msg.len() {
        let alen = u16_at(msg, at)? as usize;
        let aty = u16_at(msg, at + 2)?;
        if alen < 4 {
            return Err(Errno::EPROTO);
        }
        let data = msg.get(at + 4..at + alen).ok_or(Errno::EPROTO)?;
        match aty {
            UNIX_DIAG_NAME => {
                let name = match data.split_first() {
                    Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest)),
                    _ => String::from_utf8_lossy(data)
                        .trim_end_matches('\0')
                        .to_string(),
                };
                s.name = Some(name);
            }
            UNIX_DIAG_PEER => s.peer = Some(u64::from(u32_at(data, 0)?)),
            UNIX_DIAG_VFS => {
                // The kernel's dev_t: major above bit 20.
                let dev = u32_at(data, 4)?;
                let st_dev = libc::makedev(dev >> 20, dev & 0xf_ffff);
                s.vfs = Some((u64::from(u32_at(data, 0)?), st_dev));
            }
            UNIX_DIAG_ICONS => {
                s.icons = data
                    .chunks_exact(4)
                    .map(|c| u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
                    .collect();
            }
            UNIX_DIAG_RQLEN => s.rqlen = Some((u32_at(data, 0)?, u32_at(data, 4)?)),
            UNIX_DIAG_SHUTDOWN => s.shutdown = *data.first().ok_or(Errno::EPROTO)?,
            _ => {}
        }
        at += (alen + 3) & !3;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    fn ino(fd: &impl AsRawFd) -> u64 {
        std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .ino()
    }

    #[test]
    fn a_socketpair_names_its_peer_and_shutdown() {
        let (a, b) = nix::sys::socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        nix::sys::socket::shutdown(a.as_raw_fd(), nix::sys::socket::Shutdown::Write).unwrap();
        let sa = unix_socket(ino(&a)).unwrap();
        let sb = unix_socket(ino(&b)).unwrap();
        assert_eq!(sa.sock_type, libc::SOCK_SEQPACKET);
        assert_eq!(sa.state, STATE_CONNECTED);
        assert_eq!(sa.peer, Some(ino(&b)));
        assert_eq!(sb.peer, Some(ino(&a)));
        assert_eq!(sa.name, None);
        assert_eq!(sa.shutdown, 2);
        assert_eq!(sb.shutdown, 1);
    }

    #[test]
    fn an_unknown_inode_is_an_error() {
        assert!(unix_socket(u64::from(u32::MAX) + 5).is_err());
        assert!(parse(&[0; 8], 1).is_err());
    }
}
