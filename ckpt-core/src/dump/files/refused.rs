//! Descriptions the engine does not restore, refused at dump with a message
//! that names the fd and the resource: network sockets other than the TCP
//! and UDP ones [`super::inet`] keeps (SCTP, MPTCP, UDP-Lite, ping with
//! their local and peer addresses; raw, netlink, packet and any other
//! family), devices other than the harmless character devices
//! (`/dev/null`, `/dev/zero`, `/dev/full`, `/dev/random`, `/dev/urandom`)
//! and terminals (a pseudo-terminal master, 5:2, is left to
//! [`super::tty`]), and the anonymous kernel objects nobody rebuilds yet:
//! io_uring, userfaultfd, perf events, BPF maps, programs and links,
//! fanotify groups and pidfds.
//!
//! A socket on fd 0-2 is left to [`super::external`] (it is connected
//! outside the image, as a service manager's socket is); unix sockets are
//! left to the module that captures them.
//!
//! Trusts: the kernel's `stat` of the fd and, for a socket, the kernel's
//! answers about a duplicate of it taken with `pidfd_getfd` (its family,
//! type and addresses; the duplicate is closed at once and the socket is
//! not otherwise touched).

use std::fs::Metadata;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use nix::sys::socket::{self, sockopt, AddressFamily, SockaddrLike, SockaddrStorage};

use super::{external, regular};
use crate::sys;

/// Anonymous kernel objects refused, by their `/proc/PID/fd` link.
const ANON: [(&str, &str); 9] = [
    ("anon_inode:[io_uring]", "an io_uring instance"),
    ("anon_inode:[userfaultfd]", "a userfaultfd"),
    ("anon_inode:[perf_event]", "a perf event (perf_event_open)"),
    ("anon_inode:bpf-map", "a BPF map"),
    ("anon_inode:bpf-prog", "a BPF program"),
    ("anon_inode:bpf_link", "a BPF link"),
    ("anon_inode:bpf_iter", "a BPF iterator"),
    ("anon_inode:[fanotify]", "a fanotify group"),
    (
        "anon_inode:[pidfd]",
        "a pidfd (it refers to a process that is not part of the image)",
    ),
];

/// The refusal for `fd` (whose `/proc/PID/fd` link is `link`), if it is a
/// resource the engine does not restore; `None` lets the caller classify
/// it as usual.
pub(super) fn refusal(pidfd: &OwnedFd, fd: i32, link: &str, meta: &Metadata) -> Option<String> {
    if let Some((_, what)) = ANON.iter().find(|(name, _)| link == *name) {
        return Some(format!("fd {fd} ({link}), {what}"));
    }
    if link.starts_with("pidfd:") {
        return Some(format!(
            "fd {fd} ({link}), a pidfd (it refers to a process that is not part of the image)"
        ));
    }
    let ft = meta.file_type();
    if ft.is_socket() && fd > 2 {
        return socket_refusal(pidfd, fd, link);
    }
    let rdev = meta.rdev();
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    let device = if ft.is_block_device() {
        "a block device"
    } else if ft.is_char_device()
        && !external::is_terminal(rdev)
        && !regular::is_simple_char_device(link, rdev)
    {
        if major == 5 && minor == 2 {
            // A pseudo-terminal master: [`super::tty`]'s.
            return None;
        }
        "a character device"
    } else {
        return None;
    };
    Some(format!(
        "fd {fd} ({link}), {device} {major}:{minor} (only /dev/null, /dev/zero, /dev/full, \
         /dev/random, /dev/urandom and terminals are restored)"
    ))
}

/// A socket on `fd` that is not a unix socket, named by family, type and
/// addresses. A socket the dump cannot look at is refused too.
fn socket_refusal(pidfd: &OwnedFd, fd: i32, link: &str) -> Option<String> {
    let dup = match sys::pidfd_getfd(pidfd, fd) {
        Ok(d) => d,
        Err(errno) => {
            return Some(format!(
                "fd {fd} ({link}), a socket the dump cannot examine ({errno})"
            ))
        }
    };
    let raw = dup.as_raw_fd();
    let local = socket::getsockname::<SockaddrStorage>(raw).ok();
    let family = local.as_ref().and_then(|a| a.family());
    if family == Some(AddressFamily::Unix) {
        return None;
    }
    let ty = socket::getsockopt(&dup, sockopt::SockType).ok();
    let peer = socket::getpeername::<SockaddrStorage>(raw).ok();
    let addr = |a: &Option<SockaddrStorage>| {
        let a = a.as_ref();
        if let Some(v4) = a.and_then(|a| a.as_sockaddr_in()) {
            v4.to_string()
        } else if let Some(v6) = a.and_then(|a| a.as_sockaddr_in6()) {
            v6.to_string()
        } else {
            "none".to_string()
        }
    };
    let protocol = sys::sock_opt_at(&dup, libc::SOL_SOCKET, libc::SO_PROTOCOL).unwrap_or(-1);
    let proto = match protocol {
        libc::IPPROTO_TCP => "TCP".to_string(),
        libc::IPPROTO_UDP => "UDP".to_string(),
        libc::IPPROTO_SCTP => "SCTP".to_string(),
        libc::IPPROTO_MPTCP => "MPTCP".to_string(),
        libc::IPPROTO_UDPLITE => "UDP-Lite".to_string(),
        libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6 => "ICMP (ping)".to_string(),
        p => format!("protocol {p}"),
    };
    let what = match (family, ty) {
        (
            Some(AddressFamily::Inet | AddressFamily::Inet6),
            Some(socket::SockType::Stream | socket::SockType::Datagram),
        ) => {
            format!(
                "a {proto} socket (local {}, peer {}; only TCP and UDP sockets are restored)",
                addr(&local),
                addr(&peer)
            )
        }
        (Some(AddressFamily::Inet | AddressFamily::Inet6), _) => {
            format!("a raw IP socket (local {})", addr(&local))
        }
        (Some(AddressFamily::Netlink), _) => "a netlink socket".to_string(),
        (Some(AddressFamily::Packet), _) => "a packet socket".to_string(),
        (Some(f), _) => format!("a socket of family {f:?}"),
        (None, _) => "a socket of an unknown family".to_string(),
    };
    Some(format!("fd {fd} ({link}), {what}"))
}
