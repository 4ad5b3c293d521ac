//! Files: the identity of files the process maps or runs
//! ([`FileIdentity`]), its file descriptors ([`FdState`]) and the open file
//! descriptions they refer to ([`OpenFile`], one per description, shared by
//! dup'ed fds). A new kind of fd is a new [`OpenFileKind`] variant here.
//!
//! Trusts nothing: plain data, checked by [`crate::image::validate`].

use serde::{Deserialize, Serialize};

/// Identity of a file at dump time, and the digest of its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    /// Absolute path as the kernel reported it.
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// Digest of the whole file content, by the image's digest algorithm.
    pub digest: Vec<u8>,
}

/// One file descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdState {
    pub fd: i32,
    /// Index into the image's file table (`Manifest::files`).
    pub description: u32,
    pub cloexec: bool,
}

/// The clocks a timerfd may be on in an image (REALTIME, MONOTONIC,
/// BOOTTIME): any user can create a timerfd on them.
pub const TIMERFD_CLOCKS: [i32; 3] = [0, 1, 7];

/// What an open file description refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpenFileKind {
    /// A regular file, reopened by path.
    Regular,
    /// A directory, reopened by path.
    Directory,
    /// `/dev/null`, `/dev/zero`, `/dev/full`, `/dev/random`, `/dev/urandom`.
    CharDevice,
    /// A terminal, pipe, FIFO or socket on fd 0, 1 or 2 whose other end is
    /// outside the image (a shell's terminal or pipe, journald's socket):
    /// not saved, but connected at restore to the restore caller's own fd
    /// of the same number. `connected_to` says what it was at dump time
    /// (`/dev/pts/3`, `pipe:[12345]`, `socket:[678]`), for the user only.
    External { connected_to: String },
    /// An eventfd, created anew by the stub with this counter value.
    /// `flags` keep `O_NONBLOCK`.
    Eventfd { count: u64, semaphore: bool },
    /// A signalfd for the signals in `sigmask` (bit `n - 1` is signal `n`).
    Signalfd { sigmask: u64 },
    /// A timerfd on `clockid`, with the time left until it next fires and
    /// its period (nanoseconds, 0 = disarmed / one-shot), and the
    /// expirations not yet read. `settime_flags` are kept for the record:
    /// restore arms it relative to the remaining time.
    Timerfd {
        clockid: i32,
        value_ns: u64,
        interval_ns: u64,
        ticks: u64,
        settime_flags: u32,
    },
    /// An epoll instance and its interest list, in the kernel's order.
    /// Restore creates it after every other description and adds each
    /// target with the same fd number, events and data.
    Epoll { targets: Vec<EpollTarget> },
    /// An inotify instance and its watches, in `wd` order. Restore adds
    /// them again, as the restored process, so that each gets its `wd`.
    Inotify { watches: Vec<InotifyWatch> },
    /// One end of a pipe whose ends are both in the image (or whose other
    /// end was closed), recreated with `pipe2`. The end is the access mode
    /// in the description's flags (`O_RDONLY` reads, `O_WRONLY` writes);
    /// the other end is the description of the same kind with the same
    /// `(dev, ino)`. `size` is `F_GETPIPE_SZ`; `data` the bytes queued, in
    /// order, held by the read end (empty on the write end). For a
    /// packet-mode pipe (`O_DIRECT` on its write end), `packets` holds the
    /// length of each packet in `data`, in order (empty otherwise).
    Pipe {
        size: u32,
        data: ByteString,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        packets: Vec<u32>,
    },
    /// A FIFO (named pipe) opened by the process, reopened by `path` at
    /// restore without blocking; `size` and `data` as for [`Self::Pipe`],
    /// the data held by the first description of that FIFO (same
    /// `(dev, ino)`) in the table.
    Fifo { size: u32, data: ByteString },
    /// One end of a connected pair of unix sockets (a `socketpair`, or two
    /// sockets connected to each other), both ends in the image: recreated
    /// with `socketpair`. `sock_type` is `SOCK_STREAM`, `SOCK_DGRAM` or
    /// `SOCK_SEQPACKET`; the peer is the description whose `ino` is
    /// `peer_ino`; `peer_ino` 0: the peer was closed before the dump (the
    /// survivor is recreated as a pair whose other end is closed again).
    /// `queue` is what this end has to read, in order, one
    /// entry per datagram or packet (a stream's bytes in any number of
    /// entries). `shutdown` holds the kernel's bits (1: no more reading, 2:
    /// no more writing). `sndbuf` is `SO_SNDBUF` as read back (the kernel
    /// doubles what was set); `passcred` is `SO_PASSCRED`.
    UnixPair {
        sock_type: i32,
        peer_ino: u64,
        queue: Vec<ByteString>,
        shutdown: u8,
        sndbuf: u32,
        passcred: bool,
    },
    /// A memfd. Its name, seals, size and content are the image's space
    /// `space` (`Space::Memfd`): every description and mapping of the same
    /// memfd names the same space, and restore creates it once.
    Memfd { space: u32 },
    /// A regular file unlinked while open. Its directory, mode, size and
    /// content are the image's space `space` (`Space::Unlinked`).
    Unlinked { space: u32 },
    /// A unix socket connected to nothing: unbound, or bound to `name`
    /// (an absolute path, or `@name` in the abstract namespace), and
    /// listening with `backlog` when that is set (a listener with
    /// connections waiting is refused at dump: their peers are outside
    /// the image; so is a socket with datagrams queued). Recreated by the
    /// stub: `socket`, `bind`, `listen`. `sndbuf`, `passcred` as for
    /// [`OpenFileKind::UnixPair`].
    UnixSocket {
        sock_type: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backlog: Option<u32>,
        sndbuf: u32,
        passcred: bool,
        /// For a relative `name` (one component, no `/`): the absolute
        /// directory it was bound in, where the dump found its socket
        /// file. Restore binds the same relative name from there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dir: Option<String>,
        /// The socket file of a path name as the dump found it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<SocketFile>,
        /// The socket (by `ino`, a [`OpenFileKind::UnixSocket`] of the
        /// image) it is connected to: a bound datagram socket (connected
        /// one way, or itself), or the listener in whose queue the
        /// connection of this stream or seqpacket socket waits to be
        /// accepted. Connected again at restore once every socket is bound.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        connect_to: Option<u64>,
        /// The datagrams queued on a datagram socket, in order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        queue: Vec<Datagram>,
        /// A listener's connections waiting to be accepted, in accept
        /// order: the `ino` of each client (a socket of the image whose
        /// `connect_to` is this listener). Restore connects them in this
        /// order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        waiting: Vec<u64>,
    },
    /// A TCP or UDP socket (IPv4 or IPv6) that needs nothing outside the
    /// image: TCP unbound, bound or listening with `backlog` (no connection
    /// waiting: those and established connections are refused at dump);
    /// UDP unbound, bound, and connected to `peer` (its default
    /// destination). Recreated by the stub: `socket`, the options, `bind`
    /// to `local`, `connect` to `peer` (UDP), `listen`. `family` is
    /// `AF_INET` or `AF_INET6`, `sock_type` `SOCK_STREAM` (TCP) or
    /// `SOCK_DGRAM` (UDP). `dropped` is the number of datagrams a UDP
    /// socket had queued at dump, not kept (UDP does not promise
    /// delivery; their senders are outside the image).
    InetSocket {
        family: i32,
        sock_type: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        local: Option<InetAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<InetAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backlog: Option<u32>,
        #[serde(default, skip_serializing_if = "InetOptions::is_default")]
        options: InetOptions,
        #[serde(default, skip_serializing_if = "is_zero")]
        dropped: u32,
    },
    /// The master side of a pseudo-terminal (`/dev/ptmx`) whose pair is
    /// inside the image: recreated by the stub (it opens the multiplexer,
    /// unlocks it and takes its slaves with `TIOCGPTPEER`), with the
    /// terminal's settings in `tty`. `index` is its number at dump
    /// (`/dev/pts/N`), which names the pair; the new pair gets whatever
    /// number the kernel gives.
    PtyMaster { index: u32, tty: PtyTerminal },
    /// A description of the slave side (`/dev/pts/N`) of the
    /// pseudo-terminal whose master is the [`OpenFileKind::PtyMaster`]
    /// with the same `index` (a slave whose master is outside the image
    /// is [`OpenFileKind::External`]). Opened at restore from its new
    /// master, never by path. `dev_tty`: the description was opened as
    /// `/dev/tty` while this slave was the process's controlling terminal
    /// (reopened as `/dev/tty` once the new slave is the controlling
    /// terminal again).
    PtySlave {
        index: u32,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dev_tty: bool,
    },
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// An IPv4 or IPv6 address and port. `ip` is the address in its usual
/// text form (`127.0.0.1`, `::1`, `::ffff:10.0.0.1`); `scope_id` the
/// interface index of a link-local IPv6 address (0 otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InetAddr {
    pub ip: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub scope_id: u32,
}

impl std::fmt::Display for InetAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ip.contains(':') {
            if self.scope_id != 0 {
                write!(f, "[{}%{}]:{}", self.ip, self.scope_id, self.port)
            } else {
                write!(f, "[{}]:{}", self.ip, self.port)
            }
        } else {
            write!(f, "{}:{}", self.ip, self.port)
        }
    }
}

/// The options of an [`OpenFileKind::InetSocket`] a server sets and
/// relies on. `rcvbuf` and `sndbuf` are the values read back (the kernel
/// doubles what was set), kept only when they differ from what a new
/// socket of the same kind gets (0: the default). `defer_accept` is
/// `TCP_DEFER_ACCEPT` in seconds as read back; `bind_device` the
/// interface named by `SO_BINDTODEVICE`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InetOptions {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reuseaddr: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reuseport: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keepalive: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub broadcast: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub v6only: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nodelay: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub freebind: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub defer_accept: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rcvbuf: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sndbuf: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_device: Option<String>,
}

impl InetOptions {
    /// Every option at its default (then not written at all).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The socket file a unix socket was bound to, at dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketFile {
    pub ino: u64,
    pub dev: u64,
    /// Permission bits (`& 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// One datagram queued on a unix datagram socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Datagram {
    pub data: ByteString,
    /// The sender's bound name (as `UnixSocket::name` spells it), if it
    /// was bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// A pseudo-terminal's state at dump, read through its master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyTerminal {
    /// The terminal's settings (the slave's: a master shows its slave's).
    pub termios: Termios,
    /// `TIOCGWINSZ`.
    pub winsize: WinSize,
    /// Packet mode (`TIOCPKT`) on the master.
    pub packet: bool,
    /// The slave was locked (`TIOCSPTLCK`; nobody could open it).
    pub locked: bool,
    /// Exclusive mode (`TIOCEXCL`) on the master and on the slave.
    pub master_exclusive: bool,
    pub slave_exclusive: bool,
    /// The session this terminal was the controlling terminal of
    /// (`TIOCGSID`; `None`: of none), and its foreground process group
    /// (`TIOCGPGRP`), as ids at dump time. Restore makes it the
    /// controlling terminal of the restored process when `session` was
    /// that process's session, and the process's group the foreground
    /// group when `foreground` was its group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreground: Option<i32>,
    /// Bytes that were queued in the terminal at dump and are not in the
    /// image (a terminal's queues cannot be read without consuming them):
    /// unread by the master (`TIOCINQ`), not yet sent by the slave
    /// (`TIOCOUTQ`), unread by the slave (`TIOCINQ` on the slave), not yet
    /// sent by the master (`TIOCOUTQ`). Restore names them in a notice.
    pub lost: PtyQueues,
    /// The slave's permission bits (`mesg` turns group write on and off),
    /// owner and group at dump. Restore gives the new slave the bits; it
    /// belongs to whoever the restore runs as (a notice says when that
    /// differs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slave_mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slave_owner: Option<(u32, u32)>,
    /// Every description of the slave had been closed (the master reported
    /// a hang-up: its reads fail with `EIO`). Restore opens the new slave
    /// once and closes it, so that the master reports the same.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub slave_closed: bool,
}

/// A terminal's `struct termios2` (`TCGETS2`), field by field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Termios {
    pub iflag: u32,
    pub oflag: u32,
    pub cflag: u32,
    pub lflag: u32,
    /// The line discipline (`N_TTY` is 0).
    pub line: u8,
    /// The control characters ([`TERMIOS_NCCS`] of them).
    pub cc: ByteString,
    pub ispeed: u32,
    pub ospeed: u32,
}

/// Number of control characters in a `struct termios2`.
pub const TERMIOS_NCCS: usize = 19;

/// A terminal's window size (`struct winsize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WinSize {
    pub rows: u16,
    pub cols: u16,
    pub xpixel: u16,
    pub ypixel: u16,
}

/// Byte counts of a pseudo-terminal's queues (see [`PtyTerminal::lost`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyQueues {
    pub master_in: u32,
    pub slave_out: u32,
    pub slave_in: u32,
    pub master_out: u32,
}

impl PtyQueues {
    /// Total bytes.
    pub fn total(&self) -> u64 {
        [
            self.master_in,
            self.slave_out,
            self.slave_in,
            self.master_out,
        ]
        .iter()
        .map(|&n| u64::from(n))
        .sum()
    }
}

/// One entry of an epoll interest list: the kernel keys it by the file
/// *and* the fd number it was added under (`fd` may since have been
/// closed or reused; `description` is the file it watches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollTarget {
    /// The fd number the target was added under.
    pub fd: i32,
    /// Index into `ProcessState::descriptions` of the watched file.
    pub description: u32,
    /// `EPOLL*` bits as the kernel holds them (a disarmed `EPOLLONESHOT`
    /// entry has only the private bits left).
    pub events: u32,
    pub data: u64,
}

/// `EPOLLONESHOT | EPOLLET | EPOLLWAKEUP | EPOLLEXCLUSIVE`: the bits an
/// epoll entry keeps once an `EPOLLONESHOT` event disarmed it.
pub const EPOLL_PRIVATE_BITS: u32 = (1 << 30) | (1 << 31) | (1 << 29) | (1 << 28);

/// The mask bits an inotify watch keeps (`IN_ALL_EVENTS`,
/// `IN_EXCL_UNLINK`, `IN_ONESHOT`): what fdinfo shows.
pub const INOTIFY_MASK_BITS: u32 = 0xfff | 0x0400_0000 | 0x8000_0000;

/// One inotify watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InotifyWatch {
    /// The watch descriptor the program knows it by.
    pub wd: i32,
    /// `IN_*` events and flags (`IN_ONESHOT`, `IN_EXCL_UNLINK`).
    pub mask: u32,
    /// The watched file or directory, confirmed at dump to be the watched
    /// inode and visible to the dump's caller.
    pub path: String,
}

/// Which kind of file lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    /// `flock(2)`: the whole file, held by the description.
    Flock,
    /// A POSIX record lock (`F_SETLK`): held by the process.
    Posix,
    /// An open file description lock (`F_OFD_SETLK`): held by the
    /// description.
    Ofd,
}

/// A file lock the process held through a description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLock {
    pub kind: LockKind,
    /// A write (exclusive) lock; otherwise a read (shared) one.
    pub write: bool,
    /// First byte (0 for `flock`).
    pub start: u64,
    /// Last byte, inclusive; `None` is "to the end of the file, however
    /// long it grows" (always for `flock`).
    pub end: Option<u64>,
    /// A POSIX lock's owner, the pid of one of the image's tasks (the
    /// kernel lists it under every description of that file the lock was
    /// taken through, which other tasks may share); `None` in images from
    /// before it was recorded: the first task holding the description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<i32>,
}

/// Bytes saved in the manifest as one CBOR byte string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ByteString(pub Vec<u8>);

impl Serialize for ByteString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for ByteString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteString;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteString, E> {
                Ok(ByteString(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<ByteString, E> {
                Ok(ByteString(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// What an open file description refers to (continued): files that have
/// no path to reopen, whose content is in the image.
impl OpenFileKind {
    /// The image space holding the file's content, for a memfd or an
    /// unlinked file.
    pub fn content_space(&self) -> Option<u32> {
        match self {
            Self::Memfd { space } | Self::Unlinked { space } => Some(*space),
            _ => None,
        }
    }
}

impl OpenFileKind {
    /// Created anew by the stub (never opened by a path): an eventfd,
    /// signalfd, timerfd, epoll or inotify instance, pipe or unix socket
    /// pair, or either side of a pseudo-terminal (the multiplexer is
    /// opened by its fixed path, the slave taken from it). `path` holds the kernel's name of it (`anon_inode:[eventfd]`,
    /// `pipe:[123]`), for the user only.
    pub fn is_anonymous(&self) -> bool {
        matches!(
            self,
            Self::Eventfd { .. }
                | Self::Signalfd { .. }
                | Self::Timerfd { .. }
                | Self::Epoll { .. }
                | Self::Inotify { .. }
                | Self::Pipe { .. }
                | Self::UnixPair { .. }
                | Self::UnixSocket { .. }
                | Self::InetSocket { .. }
                | Self::PtyMaster { .. }
                | Self::PtySlave { .. }
        )
    }
}

/// An open file description (shared by all fds that dup'ed it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFile {
    pub kind: OpenFileKind,
    /// The path reopened at restore; for `External`, the same text as
    /// `connected_to` (never opened); for an anonymous kind
    /// ([`OpenFileKind::is_anonymous`]), the kernel's name of it (never
    /// opened).
    pub path: String,
    /// `O_*` status flags from fdinfo (without `O_CLOEXEC`).
    pub flags: u32,
    pub offset: u64,
    /// Identity at dump time (dev, ino): used at dump to find descriptions
    /// shared between fds, kept for the record. Not checked on reopen (a
    /// restore may run on another host, or after the file was replaced).
    pub dev: u64,
    pub ino: u64,
    /// File locks held through this description (flock and OFD locks
    /// belong to it; POSIX locks to the process, taken through it), taken
    /// again by the restored process itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<FileLock>,
}
