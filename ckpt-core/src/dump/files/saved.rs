//! Files that have no path to reopen, whose content goes into the image: a
//! memfd, and a regular file unlinked while open. Each becomes one image
//! space (`Space::Memfd`, `Space::Unlinked`), named by every description
//! (`OpenFileKind::Memfd`, `OpenFileKind::Unlinked`) and every mapping
//! (`Vma::space`) of it; its content is written as chunks of that space
//! after the memory.
//!
//! Owns: a duplicate of one of the target's descriptions of each such file,
//! taken with `pidfd_getfd` (the kernel allows it only if the *real*
//! credentials — the caller's — may ptrace-attach the target, the check the
//! caller would face), and read with `pread` through that description (so
//! it must be readable: a write-only description is refused). The helper
//! never opens the file by a path, and so never reads a file the caller
//! could not read through the target. Trusts: the kernel.

use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::fs::FileExt as _;
use std::os::unix::fs::OpenOptionsExt as _;

use super::super::{DumpError, FdReader, Frozen, CHUNK_BYTES, MEMORY_SPACE};
use crate::image::{ImageWriter, Space};
use crate::model::OpenFileKind;
use crate::sys;

/// `HUGETLBFS_MAGIC`: a memfd created with `MFD_HUGETLB`.
const HUGETLBFS_MAGIC: libc::__fsword_t = 0x9584_58f6;

impl Frozen {
    /// Read the content of a file the target holds write-only through
    /// `reader` (a read-only open of `/proc/PID/fd/N` done with the
    /// caller's credentials). Without one, this process opens it itself
    /// (right when it runs as the caller).
    pub fn set_fd_reader(&mut self, reader: FdReader) {
        self.fd_reader = Some(reader);
    }

    /// The target's fd `fd` opened again read-only, as the caller.
    fn reopen_for_read(&self, fd: i32) -> Result<OwnedFd, String> {
        match &self.fd_reader {
            Some(open) => open(fd),
            None => std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(format!("/proc/{}/fd/{fd}", self.pid))
                .map(OwnedFd::from)
                .map_err(|e| e.to_string()),
        }
    }
}

/// One file whose content is saved.
struct Saved {
    dev: u64,
    ino: u64,
    space: Space,
    /// A duplicate of a readable description of it.
    fd: OwnedFd,
}

/// The files whose content is saved, in space order (the first is space
/// `MEMORY_SPACE + 1`).
#[derive(Default)]
pub(in crate::dump) struct SavedFiles {
    list: Vec<Saved>,
}

impl SavedFiles {
    fn space_of(&self, dev: u64, ino: u64) -> Option<u32> {
        self.list
            .iter()
            .position(|s| s.dev == dev && s.ino == ino)
            .and_then(|i| u32::try_from(i + 1).ok())
            .map(|i| i + MEMORY_SPACE)
    }

    /// The space of the memfd or unlinked file `(dev, ino)` if one of the
    /// target's fds holds it (for a mapping of it).
    pub(in crate::dump) fn mapped(&self, dev: u64, ino: u64) -> Option<u32> {
        self.space_of(dev, ino)
    }

    /// Every space after the memory's, in order.
    pub(in crate::dump) fn spaces(&self) -> impl Iterator<Item = Space> + '_ {
        self.list.iter().map(|s| s.space.clone())
    }

    /// fd `fd` of the target, whose link is `link`, if it is a memfd or an
    /// unlinked regular file: its kind (naming its space).
    pub(in crate::dump) fn capture(
        &mut self,
        frozen: &Frozen,
        fd: i32,
        link: &str,
        meta: &std::fs::Metadata,
    ) -> Result<Option<OpenFileKind>, DumpError> {
        use std::os::unix::fs::MetadataExt;
        let memfd = link.starts_with("/memfd:");
        let unlinked = !memfd && link.ends_with(" (deleted)") && meta.is_file();
        if !memfd && !unlinked {
            return Ok(None);
        }
        let kind = |space| {
            if memfd {
                OpenFileKind::Memfd { space }
            } else {
                OpenFileKind::Unlinked { space }
            }
        };
        if let Some(space) = self.space_of(meta.dev(), meta.ino()) {
            return Ok(Some(kind(space)));
        }
        let pid = frozen.pid;
        let what = if memfd { "memfd" } else { "unlinked file" };
        let refuse = |why: String| DumpError::Unsupported {
            pid,
            resource: format!("fd {fd} ({what} {link}): {why}"),
        };
        let dup = sys::pidfd_getfd(&frozen.pidfd, fd)
            .map_err(|e| refuse(format!("cannot take a copy of it: {e}")))?;
        let flags = sys::status_flags(&dup).map_err(|e| refuse(e.to_string()))?;
        let dup = if flags & libc::O_ACCMODE == libc::O_WRONLY {
            // Its content is read through a new read-only open of the
            // target's fd link, made as the caller: only if the caller may
            // read the file itself.
            let again = frozen.reopen_for_read(fd).map_err(|why| {
                refuse(format!(
                    "open write-only, and its content cannot be read as you through \
                     /proc/{pid}/fd/{fd}: {why}"
                ))
            })?;
            let same = std::fs::metadata(format!("/proc/self/fd/{}", again.as_raw_fd()))
                .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
            if !same {
                return Err(refuse(
                    "open write-only, and the file reopened to read it is another one".into(),
                ));
            }
            again
        } else {
            dup
        };
        let size = meta.len();
        let space = if memfd {
            if sys::fs_magic(&dup).ok() == Some(HUGETLBFS_MAGIC) {
                return Err(refuse("a hugetlb memfd (not supported yet)".into()));
            }
            let seals = sys::get_seals(&dup).map_err(|e| refuse(format!("F_GET_SEALS: {e}")))?;
            let name = link
                .strip_prefix("/memfd:")
                .unwrap_or(link)
                .strip_suffix(" (deleted)")
                .unwrap_or(link)
                .to_string();
            Space::Memfd {
                name,
                size,
                seals,
                mode: Some(meta.mode() & 0o7777),
            }
        } else {
            let path = link.strip_suffix(" (deleted)").unwrap_or(link).to_string();
            Space::Unlinked {
                path,
                size,
                mode: meta.mode() & 0o7777,
                owner: Some((meta.uid(), meta.gid())),
            }
        };
        self.list.push(Saved {
            dev: meta.dev(),
            ino: meta.ino(),
            space,
            fd: dup,
        });
        let space = self
            .space_of(meta.dev(), meta.ino())
            .ok_or_else(|| refuse("too many files".into()))?;
        Ok(Some(kind(space)))
    }

    /// Writes the content of every saved file as chunks of its space, in
    /// space order, after the memory. Pieces that are all zero are left
    /// out (restore creates each file at its size, so holes read as zero).
    pub(in crate::dump) fn write_contents(
        &self,
        frozen: &Frozen,
        writer: &mut ImageWriter,
    ) -> Result<(), DumpError> {
        let pid = frozen.pid;
        let mut buf = vec![0u8; CHUNK_BYTES];
        for (i, s) in self.list.iter().enumerate() {
            let space = u32::try_from(i + 1).unwrap_or(u32::MAX) + MEMORY_SPACE;
            let size = s.space.file_size().unwrap_or(0);
            let file = std::fs::File::from(s.fd.try_clone().map_err(|e| DumpError::Proc {
                pid,
                what: format!("a copy of the file of space {space}"),
                source: e,
            })?);
            let mut off = 0u64;
            while off < size {
                frozen.check_cancel()?;
                let len =
                    usize::try_from((size - off).min(CHUNK_BYTES as u64)).unwrap_or(CHUNK_BYTES);
                let piece = &mut buf[..len];
                file.read_exact_at(piece, off)
                    .map_err(|source| DumpError::Proc {
                        pid,
                        what: format!("the content of {:?} at offset {off}", s.space),
                        source,
                    })?;
                if piece.iter().any(|&b| b != 0) {
                    writer.write_chunk(space, off, piece)?;
                }
                off += len as u64;
            }
        }
        Ok(())
    }
}
