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
    /// Index into `ProcessState::descriptions`.
    pub description: u32,
    pub cloexec: bool,
}

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
}

/// An open file description (shared by all fds that dup'ed it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFile {
    pub kind: OpenFileKind,
    /// The path reopened at restore; for `External`, the same text as
    /// `connected_to` (never opened).
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
