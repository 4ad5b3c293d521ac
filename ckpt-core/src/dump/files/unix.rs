//! Unix sockets connected to each other inside the process (a
//! `socketpair`), or connected to a socket since closed (`peer_ino` 0: a
//! socketpair whose other end was closed): type, peer, shutdown bits, `SO_SNDBUF`, `SO_PASSCRED`,
//! and the messages queued on each end, read without consuming them. What
//! a socket is connected to comes from `sock_diag` ([`crate::sockdiag`]);
//! the queue is peeked on a duplicate taken with `pidfd_getfd` (the
//! kernel's own ptrace-attach check, after the dump's), at `SO_PEEK_OFF`
//! offsets, and the socket's peek offset is put back as it was.
//!
//! Trusts: the kernel. A socket connected to a socket outside the process
//! is left to [`super::external`]. A socket connected to nothing
//! (unbound, bound to a name, listening), or connected by name to a
//! socket of the process (a datagram socket connected one way to a bound
//! one, or to itself; a stream or seqpacket connection waiting in the
//! accept queue of a listener of the process, which `sock_diag` lists),
//! becomes [`OpenFileKind::UnixSocket`], with the datagrams queued on it
//! and their senders' names. A relative name is recorded with the
//! working directory, where its socket file must be (the inode
//! `sock_diag` names). The name an accepted socket shares with its
//! listener, and the name of a bound stream socket that connected, are
//! not kept (the pair is recreated with `socketpair`). Refuses, naming
//! the fd: a socket that is not a unix socket, a listener with
//! connections waiting from outside the process, a waiting connection
//! that already sent data, one with file descriptors
//! in flight (`SCM_RIGHTS`, which cannot be peeked without receiving
//! them), and a queue above [`MAX_SOCKET_QUEUE`] bytes or
//! [`MAX_SOCKET_MESSAGES`] messages, except on fd 0-2, where anything
//! not connected inside the process is left to [`super::external`].
//!
//! Not kept: credentials that came with queued messages (`SCM_CREDENTIALS`),
//! and a datagram or packet of no bytes anywhere but at the head of the
//! queue (the kernel skips those when peeking at an offset).

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use nix::errno::Errno;

use super::DumpError;
use crate::limits::{MAX_SOCKET_MESSAGES, MAX_SOCKET_QUEUE};
use crate::model::{ByteString, Datagram, OpenFileKind, SocketFile};
use crate::sockdiag;
use crate::sys;

/// `SO_PEEK_OFF`.
const SO_PEEK_OFF: libc::c_int = 42;

/// The socket inodes the process holds (from each fd's link).
#[derive(Debug, Default)]
pub(super) struct Held(HashSet<u64>);

impl Held {
    /// Note fd's socket, if it is one (`link` is `socket:[INO]`).
    pub(super) fn note(&mut self, link: &str, ino: u64) {
        if link.starts_with("socket:[") {
            self.0.insert(ino);
        }
    }

    /// The listener of the process in whose accept queue the connection
    /// of socket `ino` waits.
    fn listener_of(&self, ino: u64) -> Option<u64> {
        self.0.iter().copied().find(|&l| {
            sockdiag::unix_socket(l)
                .is_ok_and(|s| s.state == sockdiag::STATE_LISTEN && s.icons.contains(&ino))
        })
    }
}

fn err(pid: i32, what: String) -> impl Fn(Errno) -> DumpError {
    move |e| DumpError::Proc {
        pid,
        what: what.clone(),
        source: e.into(),
    }
}

/// `Some(UnixPair)` for a unix socket connected to another socket of the
/// process; `None` for a socket on fd 0-2 that is not (then
/// [`super::external`]'s) and for anything that is not a socket.
pub(super) fn classify(
    pid: i32,
    pidfd: &OwnedFd,
    fd: i32,
    link: &str,
    meta: &std::fs::Metadata,
    info: &str,
    held: &Held,
) -> Result<Option<OpenFileKind>, DumpError> {
    if !meta.file_type().is_socket() {
        return Ok(None);
    }
    let refuse = |what: String| -> Result<Option<OpenFileKind>, DumpError> {
        if fd <= 2 {
            return Ok(None);
        }
        Err(DumpError::Unsupported {
            pid,
            resource: format!("fd {fd} ({link}), {what}"),
        })
    };
    let s = match sockdiag::unix_socket(meta.ino()) {
        Ok(s) => s,
        Err(Errno::ENOENT) => {
            return refuse(
                "a socket that is not a unix socket of this network namespace (TCP, UDP, \
                 netlink and other sockets cannot be checkpointed yet)"
                    .into(),
            )
        }
        Err(e) => return Err(err(pid, format!("fd {fd} ({link}): sock_diag"))(e)),
    };
    let kind = match s.sock_type {
        libc::SOCK_STREAM => "stream",
        libc::SOCK_DGRAM => "datagram",
        libc::SOCK_SEQPACKET => "seqpacket",
        _ => "unknown-type",
    };
    let me = meta.ino();
    let lone = |connect_to: Option<u64>| {
        unconnected(pid, pidfd, fd, link, &s, kind, held, info, connect_to).or_else(|e| match e {
            DumpError::Unsupported { .. } if fd <= 2 => Ok(None),
            e => Err(e),
        })
    };
    if s.state == sockdiag::STATE_LISTEN || (s.peer.is_none() && kind != "unknown-type") {
        return lone(None);
    }
    let Some(peer) = s.peer.filter(|_| s.state == sockdiag::STATE_CONNECTED) else {
        return refuse(format!(
            "an unconnected unix {kind} socket (only sockets connected to each other inside \
             the process can be checkpointed yet)"
        ));
    };
    // A datagram socket connected to itself.
    if peer == me && s.sock_type == libc::SOCK_DGRAM {
        return lone(Some(me));
    }
    // A stream or seqpacket socket whose connection waits in the accept
    // queue of a listener of the process (its peer, the socket the
    // listener will hand out, has no inode yet: `peer` is 0).
    if !held.0.contains(&peer) && s.sock_type != libc::SOCK_DGRAM {
        if let Some(listener) = held.listener_of(me) {
            let sock =
                sys::pidfd_getfd(pidfd, fd).map_err(err(pid, format!("fd {fd} ({link})")))?;
            if sys::bytes_unsent(&sock).unwrap_or(1) > 0 {
                return refuse(format!(
                    "a unix {kind} socket whose connection waits to be accepted, with data \
                     sent on it before the accept (not restored: accept it or read the data \
                     before the dump)"
                ));
            }
            return lone(Some(listener));
        }
    }
    // peer 0: the other end was closed (the kernel keeps the link to a
    // socket that has no inode any more). Restored as a pair whose other
    // end is closed again.
    if peer != 0 && !held.0.contains(&peer) {
        // Connected outside the image (see `external`).
        return Ok(None);
    }
    let back = if peer == 0 {
        None
    } else {
        Some(
            sockdiag::unix_socket(peer)
                .map_err(err(pid, format!("fd {fd} ({link}): sock_diag of its peer")))?,
        )
    };
    // A datagram socket connected one way (to a bound socket that is not
    // connected back), or connected both ways while bound: connected
    // again by name at restore.
    if s.sock_type == libc::SOCK_DGRAM {
        if let Some(back) = &back {
            if back.peer != Some(me) || back.name.is_some() || s.name.is_some() {
                if back.name.is_none() {
                    return refuse(format!(
                        "a unix {kind} socket connected to socket:[{peer}], which is not \
                         bound to a name and not connected back to it"
                    ));
                }
                return lone(Some(peer));
            }
        }
    }
    if back.as_ref().is_some_and(|back| back.peer != Some(me)) {
        return refuse(format!(
            "a unix {kind} socket connected to socket:[{peer}], which is not connected back \
             to it"
        ));
    }
    match scm_fds(info) {
        Some(0) => {}
        Some(n) => {
            return refuse(format!(
                "a unix {kind} socket with {n} file descriptors in flight (SCM_RIGHTS), \
                 which cannot be read without receiving them"
            ))
        }
        None => {
            return Err(err(pid, format!("fdinfo/{fd}: no scm_fds line"))(
                Errno::EPROTO,
            ))
        }
    }
    let sock = sys::pidfd_getfd(pidfd, fd).map_err(err(pid, format!("fd {fd} ({link})")))?;
    let sndbuf = sys::sock_opt(&sock, libc::SO_SNDBUF)
        .map_err(err(pid, format!("fd {fd} ({link}): SO_SNDBUF")))?;
    let passcred = sys::sock_opt(&sock, libc::SO_PASSCRED)
        .map_err(err(pid, format!("fd {fd} ({link}): SO_PASSCRED")))?;
    let queue = peek_queue(&sock, s.sock_type, s.shutdown)
        .map_err(err(pid, format!("fd {fd} ({link}): its queue")))?;
    let Some(queue) = queue else {
        return refuse(format!(
            "a unix {kind} socket holding more than {MAX_SOCKET_QUEUE} bytes or \
             {MAX_SOCKET_MESSAGES} messages"
        ));
    };
    Ok(Some(OpenFileKind::UnixPair {
        sock_type: s.sock_type,
        peer_ino: peer,
        queue,
        shutdown: s.shutdown,
        sndbuf: u32::try_from(sndbuf).unwrap_or(0),
        passcred: passcred != 0,
    }))
}

/// A unix socket restored on its own (`s.state`): unbound, bound,
/// listening, or connected by name to another socket of the image
/// (`connect_to`: a datagram socket's receiver, or the listener a stream
/// connection waits on). Refused, naming the fd: a listener with
/// connections waiting from sockets outside the image, a stream socket
/// with data queued, a name restore could not bind again (not UTF-8, too
/// long, with a NUL; a relative name with a `/`, or whose socket file is
/// not in the working directory).
#[allow(clippy::too_many_arguments)]
fn unconnected(
    pid: i32,
    pidfd: &OwnedFd,
    fd: i32,
    link: &str,
    s: &sockdiag::UnixSocket,
    kind: &str,
    held: &Held,
    info: &str,
    connect_to: Option<u64>,
) -> Result<Option<OpenFileKind>, DumpError> {
    let refuse = |what: String| -> Result<Option<OpenFileKind>, DumpError> {
        Err(DumpError::Unsupported {
            pid,
            resource: format!("fd {fd} ({link}), {what}"),
        })
    };
    let on = s
        .name
        .as_deref()
        .map(|n| format!(" on {n}"))
        .unwrap_or_default();
    let mut dir = None;
    let mut file = None;
    if let Some(name) = &s.name {
        if !name.starts_with('/') && !name.starts_with('@') {
            // A relative name: its socket file must be in the working
            // directory, where restore binds it again.
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
                .map_err(|e| DumpError::Proc {
                    pid,
                    what: "cwd".into(),
                    source: e,
                })?
                .to_string_lossy()
                .into_owned();
            if name.contains('/') || name == "." || name == ".." {
                return refuse(format!(
                    "a unix {kind} socket bound to {name:?}, a relative name with more than \
                     one component (restore binds a relative name only from one directory)"
                ));
            }
            let found = std::fs::symlink_metadata(format!("{cwd}/{name}"))
                .ok()
                .filter(|m| m.file_type().is_socket())
                .map(|m| (m.ino(), m.dev()));
            if found.is_none() || found != s.vfs {
                return refuse(format!(
                    "a unix {kind} socket bound to the relative name {name:?}, whose socket \
                     file is not {cwd}/{name} (bound from another directory, or the file was \
                     removed or replaced): restore could not bind it again"
                ));
            }
            if let Some(problem) = crate::image::validate::unix_relative_name_problem(&cwd, name) {
                return refuse(format!(
                    "a unix {kind} socket bound to {name:?} in {cwd:?}, a directory restore \
                     cannot bind in ({problem})"
                ));
            }
            dir = Some(cwd);
        } else if let Some(problem) = crate::image::validate::unix_name_problem(name) {
            return refuse(format!(
                "a unix {kind} socket bound to {name:?}, a name restore cannot bind again \
                 ({problem})"
            ));
        }
        if !name.starts_with('@') {
            let path = match &dir {
                Some(d) => format!("{d}/{name}"),
                None => name.clone(),
            };
            file = std::fs::symlink_metadata(path)
                .ok()
                .filter(|m| m.file_type().is_socket() && Some((m.ino(), m.dev())) == s.vfs)
                .map(|m| SocketFile {
                    ino: m.ino(),
                    dev: m.dev(),
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                });
        }
    }
    let listening = s.state == sockdiag::STATE_LISTEN;
    let (queued, backlog) = s.rqlen.unwrap_or((0, 0));
    let waiting = if listening {
        s.icons.clone()
    } else {
        Vec::new()
    };
    if listening && queued > 0 {
        if let Some(out) = s.icons.iter().find(|i| !held.0.contains(i)) {
            return refuse(format!(
                "a listening unix {kind} socket{on} with {queued} connections waiting to be \
                 accepted, one from socket:[{out}] outside the image (accept them or close the \
                 socket before the dump)"
            ));
        }
    }
    let sock = sys::pidfd_getfd(pidfd, fd).map_err(err(pid, format!("fd {fd} ({link})")))?;
    let mut queue = Vec::new();
    if !listening && sys::bytes_queued(&sock).unwrap_or(0) > 0 {
        if s.sock_type != libc::SOCK_DGRAM {
            return refuse(format!(
                "an unconnected unix {kind} socket{on} with data queued"
            ));
        }
        if scm_fds(info) != Some(0) {
            return refuse(format!(
                "a unix {kind} socket{on} with file descriptors in flight (SCM_RIGHTS), \
                 which cannot be read without receiving them"
            ));
        }
        let peeked =
            peek_datagrams(&sock).map_err(err(pid, format!("fd {fd} ({link}): its queue")))?;
        let Some(q) = peeked else {
            return refuse(format!(
                "a unix {kind} socket{on} holding more than {MAX_SOCKET_QUEUE} bytes or \
                 {MAX_SOCKET_MESSAGES} messages"
            ));
        };
        queue = q;
    }
    let sndbuf = sys::sock_opt(&sock, libc::SO_SNDBUF)
        .map_err(err(pid, format!("fd {fd} ({link}): SO_SNDBUF")))?;
    let passcred = sys::sock_opt(&sock, libc::SO_PASSCRED)
        .map_err(err(pid, format!("fd {fd} ({link}): SO_PASSCRED")))?;
    Ok(Some(OpenFileKind::UnixSocket {
        sock_type: s.sock_type,
        name: s.name.clone(),
        backlog: listening.then_some(backlog),
        sndbuf: u32::try_from(sndbuf).unwrap_or(0),
        passcred: passcred != 0,
        dir,
        file,
        connect_to,
        queue,
        waiting,
    }))
}

/// The datagrams queued on a datagram socket, each with its sender's
/// name, left in place (`None`: more than the limits).
fn peek_datagrams(sock: &OwnedFd) -> Result<Option<Vec<Datagram>>, Errno> {
    let old = sys::sock_opt(sock, SO_PEEK_OFF)?;
    sys::set_sock_opt(sock, SO_PEEK_OFF, 0)?;
    let r = peek_datagrams_from_zero(sock);
    let back = sys::set_sock_opt(sock, SO_PEEK_OFF, old);
    let q = r?;
    back?;
    Ok(q)
}

fn peek_datagrams_from_zero(sock: &OwnedFd) -> Result<Option<Vec<Datagram>>, Errno> {
    let mut queue = Vec::new();
    let mut total = 0usize;
    let mut offset = 0usize;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let (n, from) = match sys::recv_peek_from(sock, &mut buf) {
            Err(Errno::EAGAIN) => break,
            r => r?,
        };
        if n > buf.len() {
            if n > MAX_SOCKET_QUEUE {
                return Ok(None);
            }
            buf.resize(n, 0);
            let off = i32::try_from(offset).map_err(|_| Errno::EOVERFLOW)?;
            sys::set_sock_opt(sock, SO_PEEK_OFF, off)?;
            continue;
        }
        if n == 0 && !queue.is_empty() {
            break;
        }
        let from = match from.split_first() {
            None => None,
            Some((0, rest)) => Some(format!("@{}", String::from_utf8_lossy(rest))),
            Some(_) => Some(
                String::from_utf8_lossy(&from)
                    .trim_end_matches('\0')
                    .to_string(),
            ),
        };
        total += n;
        offset += n;
        queue.push(Datagram {
            data: ByteString(buf[..n].to_vec()),
            from,
        });
        if total > MAX_SOCKET_QUEUE || queue.len() > MAX_SOCKET_MESSAGES {
            return Ok(None);
        }
    }
    Ok(Some(queue))
}

/// The `scm_fds:` count of a socket's fdinfo.
fn scm_fds(info: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix("scm_fds:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Every message queued on `sock`, in order, left in place (`None`: more
/// than the limits). The socket's peek offset is put back as it was,
/// whatever happens.
fn peek_queue(
    sock: &OwnedFd,
    sock_type: i32,
    shutdown: u8,
) -> Result<Option<Vec<ByteString>>, Errno> {
    let old = sys::sock_opt(sock, SO_PEEK_OFF)?;
    sys::set_sock_opt(sock, SO_PEEK_OFF, 0)?;
    let r = peek_from_zero(sock, sock_type, shutdown);
    let back = sys::set_sock_opt(sock, SO_PEEK_OFF, old);
    let q = r?;
    back?;
    Ok(q)
}

fn peek_from_zero(
    sock: &OwnedFd,
    sock_type: i32,
    shutdown: u8,
) -> Result<Option<Vec<ByteString>>, Errno> {
    let mut queue = Vec::new();
    let mut total = 0usize;
    let mut offset = 0usize;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match sys::recv_peek(sock, &mut buf) {
            Err(Errno::EAGAIN) => break,
            r => r?,
        };
        if n > buf.len() {
            // A datagram longer than the buffer: peek it again whole.
            if n > MAX_SOCKET_QUEUE {
                return Ok(None);
            }
            buf.resize(n, 0);
            let off = i32::try_from(offset).map_err(|_| Errno::EOVERFLOW)?;
            sys::set_sock_opt(sock, SO_PEEK_OFF, off)?;
            continue;
        }
        if n == 0 {
            // End of a stream, or of a socket shut down for reading; a
            // datagram or packet of no bytes at the head of the queue
            // otherwise (the kernel then skips it on the next peek).
            if sock_type == libc::SOCK_STREAM || shutdown & 1 != 0 || !queue.is_empty() {
                break;
            }
        }
        total += n;
        offset += n;
        queue.push(ByteString(buf[..n].to_vec()));
        if total > MAX_SOCKET_QUEUE || queue.len() > MAX_SOCKET_MESSAGES {
            return Ok(None);
        }
    }
    if sock_type == libc::SOCK_STREAM {
        // One entry for the whole stream.
        let all: Vec<u8> = queue.into_iter().flat_map(|b| b.0).collect();
        if sys::bytes_queued(sock)? != all.len() {
            return Err(Errno::EBUSY);
        }
        return Ok(Some(if all.is_empty() {
            Vec::new()
        } else {
            vec![ByteString(all)]
        }));
    }
    Ok(Some(queue))
}
