//! The operations a caller-credential child runs: one in a child forked
//! for it, or one after the other in the [worker](super::worker). Each is a
//! few system calls made with the caller's credentials already in place,
//! on paths and fds the helper chose; and the wire form of a request to
//! the worker.
//!
//! Owns: each operation's system calls and checks, and the encoding of a
//! request. Trusts: a request's content (the helper made it; the worker
//! still refuses a malformed one); the kernel for every permission.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};

use super::{
    check_existing, is_type, link_unnamed, ChildFail, ChildOk, OP_CREATE, OP_EXISTS,
    OP_NOT_REGULAR, OP_OPEN, OP_OPEN_DIR, OP_PROBE, OP_RENAME,
};
use crate::sys;

/// One operation, with everything it needs but its fds.
#[derive(Debug)]
pub(crate) enum Op {
    /// `open(path, flags)`; with `regular_only` the fd must be a regular
    /// file (`fstat`). Answers the fd.
    Open {
        path: CString,
        flags: OFlag,
        regular_only: bool,
    },
    /// May the caller read `pid`'s memory (one byte at `addr`)? Answers 1
    /// or 0 (a denial).
    Probe { pid: i32, addr: u64 },
    /// Open directory `dir`, check the final `name` there, and create the
    /// output: unnamed (`O_TMPFILE`, answers 1) or named `tmp` (answers
    /// 0). Answers the directory's fd and the file's.
    Create {
        dir: CString,
        name: CString,
        tmp: CString,
        force: bool,
    },
    /// Give the file (fds: the directory, the file) its final `name`:
    /// linked when `unnamed`, else renamed from `tmp`.
    Put {
        name: CString,
        tmp: CString,
        force: bool,
        unnamed: bool,
    },
    /// Remove `tmp` from the directory (fds: the directory).
    Unlink { tmp: CString },
}

/// How many fds each operation takes.
impl Op {
    pub(crate) fn fd_count(&self) -> usize {
        match self {
            Op::Open { .. } | Op::Probe { .. } | Op::Create { .. } => 0,
            Op::Put { .. } => 2,
            Op::Unlink { .. } => 1,
        }
    }

    /// Run the operation, with the caller's credentials already in place;
    /// `fds` are the ones it takes ([`Op::fd_count`]).
    pub(crate) fn run(&self, fds: &[BorrowedFd<'_>]) -> Result<ChildOk, ChildFail> {
        if fds.len() != self.fd_count() {
            return Err(ChildFail::new(OP_OPEN, Errno::EBADF));
        }
        match self {
            Op::Open {
                path,
                flags,
                regular_only,
            } => {
                let fd = nix::fcntl::open(path.as_c_str(), *flags, Mode::empty())
                    .map_err(|e| ChildFail::new(OP_OPEN, e))?;
                if *regular_only {
                    let st = nix::sys::stat::fstat(fd).map_err(|e| {
                        let _ = nix::unistd::close(fd);
                        ChildFail::new(OP_OPEN, e)
                    })?;
                    if !is_type(st.st_mode, SFlag::S_IFREG) {
                        let _ = nix::unistd::close(fd);
                        return Err(ChildFail {
                            code: OP_NOT_REGULAR,
                            errno: 0,
                            value: i64::from(st.st_mode),
                        });
                    }
                }
                Ok(ChildOk {
                    value: 0,
                    fds: vec![fd],
                })
            }
            Op::Probe { pid, addr } => {
                let allowed = match sys::process_vm_read_byte(*pid, *addr) {
                    Ok(_) | Err(Errno::EFAULT) => true,
                    Err(Errno::EPERM) | Err(Errno::EACCES) => false,
                    Err(e) => return Err(ChildFail::new(OP_PROBE, e)),
                };
                Ok(ChildOk {
                    value: i64::from(allowed),
                    fds: Vec::new(),
                })
            }
            Op::Create {
                dir,
                name,
                tmp,
                force,
            } => create(dir, name, tmp, *force),
            Op::Put {
                name,
                tmp,
                force,
                unnamed,
            } => {
                let (dir, file) = (fds[0], fds[1]);
                let dirfd = dir.as_raw_fd();
                check_existing(dirfd, name, *force)?;
                if *unnamed {
                    link_unnamed(dir, file.as_raw_fd(), tmp, name, *force)?;
                } else if *force {
                    sys::renameat2(dir, tmp, name, 0).map_err(|e| ChildFail::new(OP_RENAME, e))?;
                } else {
                    rename_noreplace(dir, tmp, name)?;
                }
                Ok(ChildOk {
                    value: 0,
                    fds: Vec::new(),
                })
            }
            Op::Unlink { tmp } => {
                nix::unistd::unlinkat(
                    Some(fds[0].as_raw_fd()),
                    tmp.as_c_str(),
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                )
                .map_err(|e| ChildFail::new(OP_RENAME, e))?;
                Ok(ChildOk {
                    value: 0,
                    fds: Vec::new(),
                })
            }
        }
    }
}

/// [`Op::Create`].
fn create(dir: &CString, name: &CString, tmp: &CString, force: bool) -> Result<ChildOk, ChildFail> {
    let dirfd = nix::fcntl::open(
        dir.as_c_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ChildFail::new(OP_OPEN_DIR, e))?;
    let close_dir = |e: ChildFail| {
        let _ = nix::unistd::close(dirfd);
        e
    };
    check_existing(dirfd, name, force).map_err(close_dir)?;
    // An unnamed file first: nothing to leave behind if we die.
    match nix::fcntl::openat(
        Some(dirfd),
        c".",
        OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    ) {
        Ok(fd) => {
            return Ok(ChildOk {
                value: 1,
                fds: vec![dirfd, fd],
            })
        }
        // The file system (or kernel) has no O_TMPFILE: a named one.
        Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL | Errno::ENOENT) => {}
        Err(e) => return Err(close_dir(ChildFail::new(OP_CREATE, e))),
    }
    let fd = nix::fcntl::openat(
        Some(dirfd),
        tmp.as_c_str(),
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| close_dir(ChildFail::new(OP_CREATE, e)))?;
    Ok(ChildOk {
        value: 0,
        fds: vec![dirfd, fd],
    })
}

/// Rename `tmp` to `name` in `dir` without replacing anything.
fn rename_noreplace(dir: BorrowedFd<'_>, tmp: &CString, name: &CString) -> Result<(), ChildFail> {
    let dirfd = dir.as_raw_fd();
    match sys::renameat2(dir, tmp, name, libc::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) | Err(Errno::ENOSYS) => {
            // File system without RENAME_NOREPLACE: link (which never
            // replaces) then unlink the temporary name.
            nix::unistd::linkat(
                Some(dirfd),
                tmp.as_c_str(),
                Some(dirfd),
                name.as_c_str(),
                AtFlags::empty(),
            )
            .map_err(|e| {
                if e == Errno::EEXIST {
                    ChildFail::new(OP_EXISTS, e)
                } else {
                    ChildFail::new(OP_RENAME, e)
                }
            })?;
            let _ = nix::unistd::unlinkat(
                Some(dirfd),
                tmp.as_c_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
            Ok(())
        }
        Err(Errno::EEXIST) => Err(ChildFail::new(OP_EXISTS, Errno::EEXIST)),
        Err(e) => Err(ChildFail::new(OP_RENAME, e)),
    }
}

// ---------------------------------------------------------------------------
// Wire form (helper → worker): a fixed header, then up to three byte
// strings, each a u32 length and its bytes (no NUL).

/// Most bytes of one request: three paths of `PATH_MAX`, and the header.
pub(crate) const REQUEST_MAX: usize = HEADER + 3 * (4 + 4096);
const HEADER: usize = 24;

const KIND_OPEN: u32 = 1;
const KIND_PROBE: u32 = 2;
const KIND_CREATE: u32 = 3;
const KIND_PUT: u32 = 4;
const KIND_UNLINK: u32 = 5;

const FLAG_FORCE: u32 = 1;
const FLAG_UNNAMED: u32 = 2;
const FLAG_REGULAR_ONLY: u32 = 4;

impl Op {
    /// The request's bytes, or `None` when it would exceed
    /// [`REQUEST_MAX`].
    pub(crate) fn encode(&self) -> Option<Vec<u8>> {
        let (kind, flags, a, b, strings): (u32, u32, i32, u64, Vec<&CString>) = match self {
            Op::Open {
                path,
                flags,
                regular_only,
            } => (
                KIND_OPEN,
                if *regular_only { FLAG_REGULAR_ONLY } else { 0 },
                flags.bits(),
                0,
                vec![path],
            ),
            Op::Probe { pid, addr } => (KIND_PROBE, 0, *pid, *addr, Vec::new()),
            Op::Create {
                dir,
                name,
                tmp,
                force,
            } => (
                KIND_CREATE,
                if *force { FLAG_FORCE } else { 0 },
                0,
                0,
                vec![dir, name, tmp],
            ),
            Op::Put {
                name,
                tmp,
                force,
                unnamed,
            } => (
                KIND_PUT,
                (if *force { FLAG_FORCE } else { 0 }) | if *unnamed { FLAG_UNNAMED } else { 0 },
                0,
                0,
                vec![name, tmp],
            ),
            Op::Unlink { tmp } => (KIND_UNLINK, 0, 0, 0, vec![tmp]),
        };
        let mut out = Vec::with_capacity(HEADER + 64);
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&a.to_ne_bytes());
        out.extend_from_slice(&u32::try_from(strings.len()).ok()?.to_ne_bytes());
        out.extend_from_slice(&b.to_ne_bytes());
        for s in strings {
            let bytes = s.as_bytes();
            out.extend_from_slice(&u32::try_from(bytes.len()).ok()?.to_ne_bytes());
            out.extend_from_slice(bytes);
        }
        (out.len() <= REQUEST_MAX).then_some(out)
    }

    /// A request from its bytes; `None` if malformed.
    pub(crate) fn decode(buf: &[u8]) -> Option<Op> {
        let u32_at = |at: usize| -> Option<u32> {
            let b = buf.get(at..at + 4)?;
            Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        let kind = u32_at(0)?;
        let flags = u32_at(4)?;
        let a = i32::from_ne_bytes(u32_at(8)?.to_ne_bytes());
        let count = usize::try_from(u32_at(12)?).ok()?;
        let b = buf.get(16..24)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(b);
        let b = u64::from_ne_bytes(word);
        let mut strings = Vec::new();
        let mut at = HEADER;
        for _ in 0..count.min(3) {
            let len = usize::try_from(u32_at(at)?).ok()?;
            let bytes = buf.get(at + 4..at.checked_add(4 + len)?)?;
            strings.push(CString::new(bytes).ok()?);
            at += 4 + len;
        }
        if count > 3 || at != buf.len() {
            return None;
        }
        let mut strings = strings.into_iter();
        let mut next = || strings.next();
        let force = flags & FLAG_FORCE != 0;
        let op = match (kind, count) {
            (KIND_OPEN, 1) => Op::Open {
                path: next()?,
                flags: OFlag::from_bits(a)?,
                regular_only: flags & FLAG_REGULAR_ONLY != 0,
            },
            (KIND_PROBE, 0) => Op::Probe { pid: a, addr: b },
            (KIND_CREATE, 3) => Op::Create {
                dir: next()?,
                name: next()?,
                tmp: next()?,
                force,
            },
            (KIND_PUT, 2) => Op::Put {
                name: next()?,
                tmp: next()?,
                force,
                unnamed: flags & FLAG_UNNAMED != 0,
            },
            (KIND_UNLINK, 1) => Op::Unlink { tmp: next()? },
            _ => return None,
        };
        Some(op)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn requests_decode_to_what_was_encoded() {
        let ops = [
            Op::Open {
                path: c("/some/path"),
                flags: OFlag::O_PATH | OFlag::O_NOFOLLOW,
                regular_only: true,
            },
            Op::Probe {
                pid: 1234,
                addr: 0x7fff_0000_1000,
            },
            Op::Create {
                dir: c("/tmp/d"),
                name: c("img"),
                tmp: c(".img.tmp.00"),
                force: true,
            },
            Op::Put {
                name: c("img"),
                tmp: c(".img.tmp.00"),
                force: false,
                unnamed: true,
            },
            Op::Unlink { tmp: c(".x") },
        ];
        for op in ops {
            let bytes = op.encode().unwrap();
            let back = Op::decode(&bytes).unwrap();
            assert_eq!(format!("{op:?}"), format!("{back:?}"));
            // Any truncation is refused.
            for n in 0..bytes.len() {
                assert!(Op::decode(&bytes[..n]).is_none(), "{op:?} cut at {n}");
            }
            // So is a trailing byte.
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Op::decode(&longer).is_none());
        }
    }

    #[test]
    fn a_path_over_the_limit_is_not_encoded() {
        let long = CString::new(vec![b'a'; REQUEST_MAX]).unwrap();
        let op = Op::Unlink { tmp: long };
        assert!(op.encode().is_none());
    }
}
