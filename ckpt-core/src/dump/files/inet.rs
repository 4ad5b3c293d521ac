//! TCP and UDP sockets, IPv4 and IPv6, that need nothing outside the
//! image: a TCP socket unbound, bound or listening (with no connection
//! waiting to be accepted), a UDP socket unbound, bound and/or connected
//! (a UDP `connect` only sets the default destination). Captured as
//! [`OpenFileKind::InetSocket`]: family, type, local address and port,
//! the UDP peer, the listen backlog, and the options a server sets and
//! relies on (`SO_REUSEADDR`, `SO_REUSEPORT`, `SO_KEEPALIVE`,
//! `SO_BROADCAST`, `IPV6_V6ONLY`, `TCP_NODELAY`, `TCP_DEFER_ACCEPT`,
//! `IP_FREEBIND`, `SO_BINDTODEVICE` by name, and `SO_RCVBUF`/`SO_SNDBUF`
//! when they differ from a new socket's).
//!
//! Everything is read from a duplicate of the process's own socket taken
//! with `pidfd_getfd` (the kernel's own ptrace-attach check, after the
//! dump's): `getsockname`, `getpeername`, `getsockopt`, and `TCP_INFO`
//! for a TCP socket's state, its accept queue (`tcpi_unacked`) and backlog
//! (`tcpi_sacked`, the kernel's `sk_max_ack_backlog`). The socket is not
//! changed, except that a UDP socket's peek offset is used to count the
//! datagrams it holds and put back as it was.
//!
//! Refused, naming the fd and its local and peer addresses: an
//! established TCP connection (or one being set up or shut down: its peer
//! is outside the image, and restoring it would need TCP repair), a
//! listener with connections waiting to be accepted (their peers, from
//! `/proc/net/tcp` and `tcp6`, are named), `IP_TRANSPARENT` (it needs
//! `CAP_NET_ADMIN`) and `SO_MARK` (same). Queued UDP datagrams are not
//! kept: their number is recorded (`dropped`) and the dump says so.
//!
//! Trusts: the kernel's answers about the duplicate. A socket that is not
//! TCP or UDP (raw, SCTP, MPTCP, UDP-Lite, ping, ...) is left to
//! [`super::refused`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;

use nix::errno::Errno;
use nix::sys::socket::{self, SockaddrStorage};

use super::DumpError;
use crate::model::{InetAddr, InetOptions, OpenFileKind};
use crate::sys;

/// `SO_PEEK_OFF`.
const SO_PEEK_OFF: libc::c_int = 42;
/// Datagrams counted at most (the receive buffer bounds them anyway).
const MAX_COUNTED: u32 = 1 << 16;
/// `TCP_LISTEN`, `TCP_CLOSE` (the kernel's `tcp_states.h`).
const TCP_LISTEN: u8 = 10;
const TCP_CLOSE: u8 = 7;

/// The kernel's name of TCP state `s`, for messages.
fn state_name(s: u8) -> &'static str {
    match s {
        1 => "established",
        2 => "connecting (SYN sent)",
        3 => "connecting (SYN received)",
        4 => "closing (FIN wait 1)",
        5 => "closing (FIN wait 2)",
        6 => "closing (TIME wait)",
        7 => "closed",
        8 => "closing (peer closed its side, CLOSE_WAIT)",
        9 => "closing (LAST_ACK)",
        10 => "listening",
        11 => "closing (CLOSING)",
        _ => "in an unknown state",
    }
}

fn err(pid: i32, what: String) -> impl Fn(Errno) -> DumpError {
    move |e| DumpError::Proc {
        pid,
        what: what.clone(),
        source: e.into(),
    }
}

/// `addr` as the model keeps it; `None` for no address or port 0 (an
/// unbound socket reports the wildcard address and port 0).
fn inet_addr(a: Option<SockaddrStorage>) -> Option<InetAddr> {
    let a = a?;
    let sa = if let Some(v4) = a.as_sockaddr_in() {
        SocketAddr::from(std::net::SocketAddrV4::from(*v4))
    } else if let Some(v6) = a.as_sockaddr_in6() {
        SocketAddr::from(std::net::SocketAddrV6::from(*v6))
    } else {
        return None;
    };
    if sa.port() == 0 {
        return None;
    }
    Some(InetAddr {
        ip: sa.ip().to_string(),
        port: sa.port(),
        scope_id: match sa {
            SocketAddr::V6(v6) => v6.scope_id(),
            SocketAddr::V4(_) => 0,
        },
    })
}

fn shown(a: &Option<InetAddr>) -> String {
    a.as_ref()
        .map_or_else(|| "none".to_string(), ToString::to_string)
}

/// `Some(InetSocket)` for a TCP or UDP socket restore can recreate on fd
/// `fd` (above 2: fds 0-2 are [`super::external`]'s); `None` for anything
/// else. Refuses, naming the fd and the addresses, what needs a peer
/// outside the image or privilege.
pub(super) fn classify(
    pid: i32,
    pidfd: &OwnedFd,
    fd: i32,
    link: &str,
    meta: &std::fs::Metadata,
) -> Result<Option<OpenFileKind>, DumpError> {
    if !meta.file_type().is_socket() || fd <= 2 {
        return Ok(None);
    }
    // A socket the dump cannot look at is refused by `refused`, named.
    let Ok(sock) = sys::pidfd_getfd(pidfd, fd) else {
        return Ok(None);
    };
    let opt = |level, name| sys::sock_opt_at(&sock, level, name);
    let (Ok(family), Ok(sock_type), Ok(protocol)) = (
        opt(libc::SOL_SOCKET, libc::SO_DOMAIN),
        opt(libc::SOL_SOCKET, libc::SO_TYPE),
        opt(libc::SOL_SOCKET, libc::SO_PROTOCOL),
    ) else {
        return Ok(None);
    };
    let tcp = match (family, sock_type, protocol) {
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_STREAM, libc::IPPROTO_TCP) => true,
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_DGRAM, libc::IPPROTO_UDP) => false,
        _ => return Ok(None),
    };
    let proto = if tcp { "TCP" } else { "UDP" };
    let raw = sock.as_raw_fd();
    let local = inet_addr(socket::getsockname::<SockaddrStorage>(raw).ok());
    let peer = inet_addr(socket::getpeername::<SockaddrStorage>(raw).ok());
    let refuse = |what: String| -> Result<Option<OpenFileKind>, DumpError> {
        Err(DumpError::Unsupported {
            pid,
            resource: format!(
                "fd {fd} ({link}), a {proto} socket (local {}, peer {}) {what}",
                shown(&local),
                shown(&peer)
            ),
        })
    };
    let mut backlog = None;
    if tcp {
        let (state, waiting, max_backlog) =
            tcp_info(&sock).map_err(err(pid, format!("fd {fd} ({link}): TCP_INFO")))?;
        match state {
            TCP_LISTEN if waiting > 0 => {
                let from = local
                    .as_ref()
                    .map(waiting_peers)
                    .filter(|p| !p.is_empty())
                    .map(|p| format!(" (from {})", p.join(", ")))
                    .unwrap_or_default();
                return refuse(format!(
                    "listening with {waiting} connections waiting to be accepted{from}: their \
                     peers are outside the image (accept them or close the socket before the \
                     dump)"
                ));
            }
            TCP_LISTEN => backlog = Some(max_backlog),
            TCP_CLOSE if peer.is_none() => {}
            s => {
                return refuse(format!(
                    "{}: a TCP connection cannot be checkpointed (its peer is outside the \
                     image)",
                    state_name(s)
                ))
            }
        }
    }
    let flag = |level, name, what: &str| -> Result<bool, DumpError> {
        opt(level, name)
            .map(|v| v != 0)
            .map_err(err(pid, format!("fd {fd} ({link}): {what}")))
    };
    if flag(libc::SOL_IP, libc::IP_TRANSPARENT, "IP_TRANSPARENT")? {
        return refuse(
            "with IP_TRANSPARENT set (setting it needs CAP_NET_ADMIN, which a restore does not \
             use)"
                .into(),
        );
    }
    if opt(libc::SOL_SOCKET, libc::SO_MARK).unwrap_or(0) != 0 {
        return refuse(
            "with SO_MARK set (setting it needs CAP_NET_ADMIN, which a restore does not use)"
                .into(),
        );
    }
    let (rcvbuf, sndbuf) = buffers(&sock, family, sock_type, protocol)
        .map_err(err(pid, format!("fd {fd} ({link}): SO_RCVBUF/SO_SNDBUF")))?;
    let options = InetOptions {
        reuseaddr: flag(libc::SOL_SOCKET, libc::SO_REUSEADDR, "SO_REUSEADDR")?,
        reuseport: flag(libc::SOL_SOCKET, libc::SO_REUSEPORT, "SO_REUSEPORT")?,
        keepalive: flag(libc::SOL_SOCKET, libc::SO_KEEPALIVE, "SO_KEEPALIVE")?,
        broadcast: !tcp && flag(libc::SOL_SOCKET, libc::SO_BROADCAST, "SO_BROADCAST")?,
        v6only: family == libc::AF_INET6 && flag(libc::SOL_IPV6, libc::IPV6_V6ONLY, "IPV6_V6ONLY")?,
        nodelay: tcp && flag(libc::SOL_TCP, libc::TCP_NODELAY, "TCP_NODELAY")?,
        freebind: flag(libc::SOL_IP, libc::IP_FREEBIND, "IP_FREEBIND")?,
        defer_accept: if tcp {
            let v = opt(libc::SOL_TCP, libc::TCP_DEFER_ACCEPT)
                .map_err(err(pid, format!("fd {fd} ({link}): TCP_DEFER_ACCEPT")))?;
            u32::try_from(v).unwrap_or(0)
        } else {
            0
        },
        rcvbuf,
        sndbuf,
        bind_device: bind_device(&sock)
            .map_err(err(pid, format!("fd {fd} ({link}): SO_BINDTODEVICE")))?,
    };
    if let Some(dev) = &options.bind_device {
        if let Some(problem) = crate::image::validate::device_name_problem(dev) {
            return refuse(format!(
                "bound to device {dev:?}, a name restore cannot use ({problem})"
            ));
        }
    }
    let dropped = if tcp { 0 } else { count_datagrams(&sock) };
    Ok(Some(OpenFileKind::InetSocket {
        family,
        sock_type,
        local,
        // A TCP socket kept here has no peer.
        peer: if tcp { None } else { peer },
        backlog,
        options,
        dropped,
    }))
}

/// `TCP_INFO`: the state, and for a listener the connections waiting to
/// be accepted (`tcpi_unacked`) and its backlog (`tcpi_sacked`).
fn tcp_info(sock: &OwnedFd) -> Result<(u8, u32, u32), Errno> {
    let mut b = [0u8; 104];
    let n = sys::sock_opt_bytes(sock, libc::SOL_TCP, libc::TCP_INFO, &mut b)?;
    let word = |at: usize| {
        b.get(at..at + 4)
            .filter(|_| at + 4 <= n)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_ne_bytes)
            .ok_or(Errno::EPROTO)
    };
    Ok((b[0], word(24)?, word(28)?))
}

/// `SO_RCVBUF` and `SO_SNDBUF` as read back, each 0 when it is what a new
/// socket of the same kind gets in this network namespace (nothing set).
fn buffers(sock: &OwnedFd, family: i32, ty: i32, proto: i32) -> Result<(u32, u32), Errno> {
    let rcv = sys::sock_opt(sock, libc::SO_RCVBUF)?;
    let snd = sys::sock_opt(sock, libc::SO_SNDBUF)?;
    let fresh = socket::socket(
        socket::AddressFamily::from_i32(family).ok_or(Errno::EAFNOSUPPORT)?,
        if ty == libc::SOCK_STREAM {
            socket::SockType::Stream
        } else {
            socket::SockType::Datagram
        },
        socket::SockFlag::SOCK_CLOEXEC,
        if proto == libc::IPPROTO_TCP {
            socket::SockProtocol::Tcp
        } else {
            socket::SockProtocol::Udp
        },
    )?;
    let keep = |v: i32, default: i32| {
        if v == default {
            0
        } else {
            u32::try_from(v).unwrap_or(0)
        }
    };
    Ok((
        keep(rcv, sys::sock_opt(&fresh, libc::SO_RCVBUF)?),
        keep(snd, sys::sock_opt(&fresh, libc::SO_SNDBUF)?),
    ))
}

/// The interface `SO_BINDTODEVICE` names, if any.
fn bind_device(sock: &OwnedFd) -> Result<Option<String>, Errno> {
    let mut b = [0u8; libc::IFNAMSIZ];
    let n = sys::sock_opt_bytes(sock, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, &mut b)?;
    let name = b.get(..n).unwrap_or_default();
    let name = name.split(|&c| c == 0).next().unwrap_or_default();
    Ok((!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned()))
}

/// How many datagrams a UDP socket holds, peeked at `SO_PEEK_OFF` offsets
/// (at most [`MAX_COUNTED`]); the peek offset is put back as it was. A
/// kernel that cannot peek at an offset: 1 if anything is queued.
fn count_datagrams(sock: &OwnedFd) -> u32 {
    if sys::bytes_queued(sock).unwrap_or(0) == 0 && sys::recv_peek(sock, &mut [0u8; 1]).is_err() {
        return 0;
    }
    let Ok(old) = sys::sock_opt(sock, SO_PEEK_OFF) else {
        return 1;
    };
    if sys::set_sock_opt(sock, SO_PEEK_OFF, 0).is_err() {
        return 1;
    }
    let mut buf = vec![0u8; 64 << 10];
    let mut n = 0;
    while n < MAX_COUNTED {
        match sys::recv_peek(sock, &mut buf) {
            Ok(_) => n += 1,
            Err(_) => break,
        }
    }
    let _ = sys::set_sock_opt(sock, SO_PEEK_OFF, old);
    n.max(1)
}

/// The peers of the connections waiting on a listener bound to `local`,
/// from `/proc/net/tcp` and `/proc/net/tcp6` (sockets no fd holds yet,
/// on the listener's port, established or half-open), each once: at
/// most four, for the message.
fn waiting_peers(local: &InetAddr) -> Vec<String> {
    let Ok(ip) = local.ip.parse::<IpAddr>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(l), Some(r), Some(st), Some(ino)) = (f.get(1), f.get(2), f.get(3), f.get(9))
            else {
                continue;
            };
            let (Some((lip, lport)), Some(rem)) = (proc_addr(l), proc_addr(r)) else {
                continue;
            };
            let waiting = *ino == "0" && (*st == "01" || *st == "03");
            let peer = SocketAddr::new(rem.0, rem.1).to_string();
            // A connection caught between its half-open request and its
            // place in the accept queue is listed in both states: once.
            if waiting
                && lport == local.port
                && (ip.is_unspecified() || lip == ip)
                && !out.contains(&peer)
            {
                out.push(peer);
            }
        }
    }
    if out.len() > 4 {
        let more = out.len() - 4;
        out.truncate(4);
        out.push(format!("and {more} more"));
    }
    out
}

/// An address of `/proc/net/tcp{,6}`: `%08X:%04X` (the 32-bit words as the
/// kernel holds them, the port in host order).
fn proc_addr(s: &str) -> Option<(IpAddr, u16)> {
    let (a, p) = s.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let h = a.get(8 * i..8 * i + 8)?;
        Some(u32::from_str_radix(h, 16).ok()?.to_ne_bytes())
    };
    let ip = match a.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[4 * i..4 * i + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some((ip, port))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn proc_net_tcp_addresses_are_read_as_the_kernel_prints_them() {
        let (ip, port) = proc_addr("0100007F:1F90").unwrap();
        assert_eq!(ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(port, 8080);
        let (ip, _) = proc_addr("00000000000000000000000001000000:0050").unwrap();
        assert_eq!(ip, "::1".parse::<IpAddr>().unwrap());
        assert!(proc_addr("0100007F").is_none());
        assert!(proc_addr("zz:1").is_none());
    }

    #[test]
    fn a_listener_reports_its_backlog_and_an_empty_queue() {
        use nix::sys::socket::{
            bind, listen, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn,
        };
        let fd = socket::socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
        listen(&fd, Backlog::new(7).unwrap()).unwrap();
        let (state, waiting, backlog) = tcp_info(&fd).unwrap();
        assert_eq!(state, TCP_LISTEN);
        assert_eq!(waiting, 0);
        assert_eq!(backlog, 7);
    }
}
