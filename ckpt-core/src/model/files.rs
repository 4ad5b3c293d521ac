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
    /// A memfd. Its name, seals, size and content are the image's space
    /// `space` (`Space::Memfd`): every description and mapping of the same
    /// memfd names the same space, and restore creates it once.
    Memfd { space: u32 },
    /// A regular file unlinked while open. Its directory, mode, size and
    /// content are the image's space `space` (`Space::Unlinked`).
    Unlinked { space: u32 },
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
    /// signalfd or timerfd. `path` holds the kernel's name of it
    /// (`anon_inode:[eventfd]`), for the user only.
    pub fn is_anonymous(&self) -> bool {
        matches!(
            self,
            Self::Eventfd { .. } | Self::Signalfd { .. } | Self::Timerfd { .. }
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
}
