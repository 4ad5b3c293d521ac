//! TCP and UDP sockets ([`OpenFileKind::InetSocket`]): created anew by the
//! stub itself (`socket`), given their saved options, bound to their
//! address and port again, connected to their default peer (UDP) and put
//! back to listening with their backlog (TCP). Nothing is opened by path.
//!
//! Rights: the kernel decides every step with the stub's credentials. In a
//! restore as the caller they are the caller's: a port below
//! `net.ipv4.ip_unprivileged_port_start` fails unless the caller may bind
//! it. A root-built stub (a granted restore) still holds root's
//! capabilities at this point of the build, so its effective set is
//! narrowed, for the socket calls only, to the effective set the restored
//! process will end with (none without a `capabilities` grant) and put
//! back right after: a granted restore binds exactly the ports the
//! restored process could bind itself. The socket is owned (`sk_uid`) by
//! the stub's filesystem uid then, the file credentials' uid.
//!
//! A port another socket holds fails the restore, naming the address and
//! saying the port is taken; so does an address this host does not have.
//!
//! Trusts: the image's validation (family, type, addresses, backlog,
//! options). Not kept: queued UDP datagrams (the dump counted them).

use crate::inject::errno_of;
use crate::inject::structs::CapSet;
use crate::model::{InetAddr, InetOptions, OpenFile, OpenFileKind};
use crate::restore::{Builder, RestoreError, StubMode};
use nix::errno::Errno;

/// `sockaddr_in` or `sockaddr_in6` bytes for `a` in `family` (validated:
/// the address parses and is of that family).
fn sockaddr(family: i32, a: &InetAddr) -> Result<Vec<u8>, RestoreError> {
    let bad = || RestoreError::Invalid(format!("{a}: not an address of family {family}"));
    let ip: std::net::IpAddr = a.ip.parse().map_err(|_| bad())?;
    let mut b = (family as u16).to_ne_bytes().to_vec();
    b.extend_from_slice(&a.port.to_be_bytes());
    match ip {
        std::net::IpAddr::V4(v4) if family == libc::AF_INET => {
            b.extend_from_slice(&v4.octets());
            b.extend_from_slice(&[0; 8]);
        }
        std::net::IpAddr::V6(v6) if family == libc::AF_INET6 => {
            b.extend_from_slice(&0u32.to_ne_bytes()); // flow info
            b.extend_from_slice(&v6.octets());
            b.extend_from_slice(&a.scope_id.to_ne_bytes());
        }
        _ => return Err(bad()),
    }
    Ok(b)
}

/// Why `bind` of `a` failed with `e`, in words.
fn bind_reason(e: Errno, a: &InetAddr) -> String {
    match e {
        Errno::EADDRINUSE => format!(
            "port {} is taken (another socket is bound to it; is the original still running?)",
            a.port
        ),
        Errno::EACCES => format!(
            "port {} is below net.ipv4.ip_unprivileged_port_start and the restored process \
             may not bind it (it needs CAP_NET_BIND_SERVICE)",
            a.port
        ),
        Errno::EADDRNOTAVAIL => format!("{} is not an address of this host", a.ip),
        e => e.to_string(),
    }
}

impl Builder<'_> {
    /// The stub's fd for the TCP or UDP socket of description `d` (held by
    /// fd `fd`), above `top`.
    pub(super) fn open_inet_socket(
        &mut self,
        d: &OpenFile,
        fd: i32,
        top: i32,
    ) -> Result<u64, RestoreError> {
        let narrowed = if self.mode == StubMode::Root {
            Some(self.narrow_caps()?)
        } else {
            None
        };
        let made = self.make_inet_socket(d, fd);
        if let Some(saved) = narrowed {
            self.put_caps(&saved)?;
        }
        let sock = made?;
        self.set_status_flags(sock, d.flags as i32 & libc::O_NONBLOCK)?;
        self.move_above(sock, top)
    }

    fn make_inet_socket(&mut self, d: &OpenFile, fd: i32) -> Result<u64, RestoreError> {
        let OpenFileKind::InetSocket {
            family,
            sock_type,
            local,
            peer,
            backlog,
            options,
            dropped: _,
        } = &d.kind
        else {
            return Err(RestoreError::Invalid(format!(
                "{}: not a TCP or UDP socket",
                d.path
            )));
        };
        let (family, sock_type) = (*family, *sock_type);
        let proto = if sock_type == libc::SOCK_STREAM {
            "TCP"
        } else {
            "UDP"
        };
        let sock = self.sys(
            "socket",
            libc::SYS_socket,
            [
                family as u64,
                (sock_type | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) as u64,
                0,
                0,
                0,
                0,
            ],
        )?;
        self.set_inet_options(sock, family, options)?;
        let fail = |op: &'static str, a: &InetAddr, reason: String| RestoreError::Inet {
            op,
            fd: format!("{fd} ({})", d.path),
            proto,
            addr: a.to_string(),
            reason,
        };
        if let Some(a) = local {
            let sa = sockaddr(family, a)?;
            let at = self.inj.put_bytes(&sa, "a socket address")?;
            let r = self.sys_raw(libc::SYS_bind, [sock, at, sa.len() as u64, 0, 0, 0])?;
            if r < 0 {
                return Err(fail("bind", a, bind_reason(errno_of(r), a)));
            }
        }
        if let Some(a) = peer {
            let sa = sockaddr(family, a)?;
            let at = self.inj.put_bytes(&sa, "a socket address")?;
            let r = self.sys_raw(libc::SYS_connect, [sock, at, sa.len() as u64, 0, 0, 0])?;
            if r < 0 {
                return Err(fail("connect", a, errno_of(r).to_string()));
            }
        }
        if let Some(b) = backlog {
            self.sys(
                "listen",
                libc::SYS_listen,
                [sock, u64::from(*b), 0, 0, 0, 0],
            )?;
        }
        Ok(sock)
    }

    /// The saved options, before `bind` (`IPV6_V6ONLY`, `SO_REUSE*`,
    /// `IP_FREEBIND` and the device decide what `bind` may do).
    fn set_inet_options(
        &mut self,
        sock: u64,
        family: i32,
        o: &InetOptions,
    ) -> Result<(), RestoreError> {
        let sol = libc::SOL_SOCKET;
        let flags = [
            (
                sol,
                libc::SO_REUSEADDR,
                o.reuseaddr,
                "setsockopt(SO_REUSEADDR)",
            ),
            (
                sol,
                libc::SO_REUSEPORT,
                o.reuseport,
                "setsockopt(SO_REUSEPORT)",
            ),
            (
                sol,
                libc::SO_KEEPALIVE,
                o.keepalive,
                "setsockopt(SO_KEEPALIVE)",
            ),
            (
                sol,
                libc::SO_BROADCAST,
                o.broadcast,
                "setsockopt(SO_BROADCAST)",
            ),
            (
                libc::SOL_IP,
                libc::IP_FREEBIND,
                o.freebind,
                "setsockopt(IP_FREEBIND)",
            ),
            (
                libc::SOL_TCP,
                libc::TCP_NODELAY,
                o.nodelay,
                "setsockopt(TCP_NODELAY)",
            ),
        ];
        for (level, opt, on, name) in flags {
            if on {
                self.set_opt(sock, level, opt, 1, name)?;
            }
        }
        if family == libc::AF_INET6 {
            // Always set: the default comes from a sysctl.
            self.set_opt(
                sock,
                libc::SOL_IPV6,
                libc::IPV6_V6ONLY,
                u32::from(o.v6only),
                "setsockopt(IPV6_V6ONLY)",
            )?;
        }
        if o.defer_accept != 0 {
            self.set_opt(
                sock,
                libc::SOL_TCP,
                libc::TCP_DEFER_ACCEPT,
                o.defer_accept,
                "setsockopt(TCP_DEFER_ACCEPT)",
            )?;
        }
        // The kernel doubles what is set; the image holds what was read.
        if o.rcvbuf != 0 {
            self.set_opt(
                sock,
                sol,
                libc::SO_RCVBUF,
                o.rcvbuf / 2,
                "setsockopt(SO_RCVBUF)",
            )?;
        }
        if o.sndbuf != 0 {
            self.set_opt(
                sock,
                sol,
                libc::SO_SNDBUF,
                o.sndbuf / 2,
                "setsockopt(SO_SNDBUF)",
            )?;
        }
        if let Some(dev) = &o.bind_device {
            let at = self.inj.put_bytes(dev.as_bytes(), "an interface name")?;
            self.sys(
                "setsockopt(SO_BINDTODEVICE)",
                libc::SYS_setsockopt,
                [
                    sock,
                    sol as u64,
                    libc::SO_BINDTODEVICE as u64,
                    at,
                    dev.len() as u64,
                    0,
                ],
            )?;
        }
        Ok(())
    }

    /// `setsockopt(sock, level, opt, &value, 4)` in the stub.
    fn set_opt(
        &mut self,
        sock: u64,
        level: i32,
        opt: i32,
        value: u32,
        name: &'static str,
    ) -> Result<(), RestoreError> {
        let v = self
            .inj
            .put_bytes(&value.to_ne_bytes(), "a socket option")?;
        self.sys(
            name,
            libc::SYS_setsockopt,
            [sock, level as u64, opt as u64, v, 4, 0],
        )?;
        Ok(())
    }

    /// A root-built stub: its effective capabilities narrowed to the
    /// effective set the restored process ends with; the sets as they
    /// were, for [`Self::put_caps`].
    fn narrow_caps(&mut self) -> Result<CapSet, RestoreError> {
        // The header's version is what `capget` reads; encode a zero set.
        let hdr = self.inj.put_struct(&CapSet {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        })?;
        self.sys(
            "capget",
            libc::SYS_capget,
            [hdr, hdr + CapSet::DATA_OFFSET, 0, 0, 0, 0],
        )?;
        let saved = self.inj.get_struct::<CapSet>(hdr)?;
        let final_eff = self.opts.caps.as_ref().map_or(0, |k| k.effective);
        self.put_caps(&CapSet {
            effective: saved.effective & final_eff,
            ..saved
        })?;
        Ok(saved)
    }

    /// `capset` of the stub's own sets.
    fn put_caps(&mut self, c: &CapSet) -> Result<(), RestoreError> {
        let set = self.inj.put_struct(c)?;
        self.sys(
            "capset",
            libc::SYS_capset,
            [set, set + CapSet::DATA_OFFSET, 0, 0, 0, 0],
        )?;
        Ok(())
    }
}
