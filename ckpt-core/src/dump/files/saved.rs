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

use std::collections::HashMap;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::fs::FileExt as _;
use std::os::unix::fs::OpenOptionsExt as _;

use super::super::{DumpError, FdReader, Frozen, CHUNK_BYTES};
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
            Some(open) => open(self.pid, fd),
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
    /// Its index in the image's spaces.
    index: u32,
    /// A duplicate of a readable description of it.
    fd: OwnedFd,
    /// Shared memory: the parts of it the image's processes map (offset,
    /// length; sorted, disjoint), the only parts saved. `None`: a file,
    /// saved whole.
    ranges: Option<Vec<(u64, u64)>>,
}

/// The image's spaces, in the order their chunks are written: for each
/// task of the image its memory, then the files first captured from it
/// (a file several tasks hold is one space, written once, with the first).
#[derive(Default)]
pub(in crate::dump) struct SavedFiles {
    list: Vec<Saved>,
    spaces: Vec<Space>,
    /// How many of `list` have had their content written.
    written: usize,
    /// Shared anonymous memory objects (dev, ino) that more than one
    /// process of the image maps, and deleted files the image's processes
    /// map, with the parts they map.
    shared_memory: HashMap<(u64, u64), Vec<(u64, u64)>>,
}

impl SavedFiles {
    fn space_of(&self, dev: u64, ino: u64) -> Option<u32> {
        self.list
            .iter()
            .find(|s| s.dev == dev && s.ino == ino)
            .map(|s| s.index)
    }

    /// The shared anonymous memory objects mapped by more than one process
    /// of the image and the deleted files they map, with the parts mapped.
    pub(in crate::dump) fn set_shared_memory(
        &mut self,
        objects: HashMap<(u64, u64), Vec<(u64, u64)>>,
    ) {
        self.shared_memory = objects;
    }

    /// The space of the shared anonymous memory mapped at `start..end`
    /// (object `dev`, `ino`) by `frozen`, when another process of the
    /// image maps it too; its content is read through
    /// `/proc/PID/map_files/START-END` (only the parts the image's
    /// processes map, all of which the caller may read through them).
    pub(in crate::dump) fn shared_memory(
        &mut self,
        frozen: &Frozen,
        start: u64,
        end: u64,
        dev: u64,
        ino: u64,
    ) -> Result<Option<u32>, DumpError> {
        let Some(ranges) = self.shared_memory.get(&(dev, ino)).cloned() else {
            return Ok(None);
        };
        if let Some(i) = self.space_of(dev, ino) {
            return Ok(Some(i));
        }
        let pid = frozen.pid;
        let link = format!("/proc/{pid}/map_files/{start:x}-{end:x}");
        let file = std::fs::File::open(&link).map_err(|source| DumpError::Proc {
            pid,
            what: format!("map_files/{start:x}-{end:x} (shared memory)"),
            source,
        })?;
        let size = file
            .metadata()
            .map_err(|source| DumpError::Proc {
                pid,
                what: format!("map_files/{start:x}-{end:x} (shared memory)"),
                source,
            })?
            .len()
            .div_ceil(4096)
            * 4096;
        let index = self.push(Space::Shmem { size });
        self.list.push(Saved {
            dev,
            ino,
            index,
            fd: OwnedFd::from(file),
            ranges: Some(ranges),
        });
        Ok(Some(index))
    }

    /// The space of a regular file that was unlinked while mapped at
    /// `start..end` by `frozen` and that no fd of the image holds (a
    /// POSIX semaphore or shared memory object removed right after it was
    /// mapped): its content is read through `/proc/PID/map_files`, only
    /// the parts the image's processes map (`ranges`).
    pub(in crate::dump) fn deleted_mapping(
        &mut self,
        frozen: &Frozen,
        start: u64,
        end: u64,
        path: &str,
        ranges: Vec<(u64, u64)>,
    ) -> Result<u32, DumpError> {
        use std::os::unix::fs::MetadataExt;
        let pid = frozen.pid;
        let what = || format!("map_files/{start:x}-{end:x} ({path})");
        let link = format!("/proc/{pid}/map_files/{start:x}-{end:x}");
        let file = std::fs::File::open(&link).map_err(|source| DumpError::Proc {
            pid,
            what: what(),
            source,
        })?;
        let meta = file.metadata().map_err(|source| DumpError::Proc {
            pid,
            what: what(),
            source,
        })?;
        if let Some(i) = self.space_of(meta.dev(), meta.ino()) {
            return Ok(i);
        }
        if !meta.is_file() {
            return Err(DumpError::Unsupported {
                pid,
                resource: format!("mapping of deleted {path} at {start:#x} (not a regular file)"),
            });
        }
        let index = self.push(Space::Unlinked {
            path: path.to_string(),
            size: meta.len(),
            mode: meta.mode() & 0o7777,
            owner: Some((meta.uid(), meta.gid())),
        });
        self.list.push(Saved {
            dev: meta.dev(),
            ino: meta.ino(),
            index,
            fd: OwnedFd::from(file),
            ranges: Some(ranges),
        });
        Ok(index)
    }

    /// A new space for the memory of task `task`; its index.
    pub(in crate::dump) fn memory_space(&mut self, task: u32) -> u32 {
        self.push(Space::Memory { task })
    }

    fn push(&mut self, space: Space) -> u32 {
        self.spaces.push(space);
        u32::try_from(self.spaces.len() - 1).unwrap_or(u32::MAX)
    }

    /// Every space, in index order.
    pub(in crate::dump) fn into_spaces(self) -> Vec<Space> {
        self.spaces
    }

    /// The space of the memfd or unlinked file `(dev, ino)` if one of the
    /// target's fds holds it (for a mapping of it).
    pub(in crate::dump) fn mapped(&self, dev: u64, ino: u64) -> Option<u32> {
        self.space_of(dev, ino)
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
        let index = self.push(space);
        self.list.push(Saved {
            dev: meta.dev(),
            ino: meta.ino(),
            index,
            fd: dup,
            ranges: None,
        });
        Ok(Some(kind(index)))
    }

    /// Writes the content of every saved file not written yet as chunks of
    /// its space, in space order, after the memory of the task they were
    /// first captured from. Pieces that are all zero are left out, and so
    /// are runs of zero pages (restore creates each file at its size, so
    /// holes read as zero).
    pub(in crate::dump) fn write_contents(
        &mut self,
        frozen: &Frozen,
        writer: &mut ImageWriter,
    ) -> Result<(), DumpError> {
        let pid = frozen.pid;
        let chunk = CHUNK_BYTES;
        let fresh = self.list.get(self.written..).unwrap_or_default();
        for s in fresh {
            let space = s.index;
            let size = self
                .spaces
                .get(space as usize)
                .and_then(Space::file_size)
                .unwrap_or(0);
            let file = std::fs::File::from(s.fd.try_clone().map_err(|e| DumpError::Proc {
                pid,
                what: format!("a copy of the file of space {space}"),
                source: e,
            })?);
            let whole = [(0, size)];
            let ranges = s.ranges.as_deref().unwrap_or(&whole);
            for &(from, len) in ranges {
                let upto = from.saturating_add(len).min(size);
                let mut off = from;
                while off < upto {
                    frozen.check_cancel()?;
                    let n = (upto - off).min(chunk as u64);
                    // Read straight into the writer's buffers; pages of
                    // zeros are left out there (a chunk of nothing but
                    // zeros leaves nothing).
                    let at = off;
                    let fill = |o: u64, piece: &mut [u8]| {
                        file.read_exact_at(piece, at + o)
                            .map_err(|source| DumpError::Proc {
                                pid,
                                what: format!("the content of space {space} at offset {}", at + o),
                                source,
                            })
                    };
                    writer.write_zero_sparse_chunk_with(space, off, n, fill)?;
                    off += n;
                }
            }
        }
        self.written = self.list.len();
        Ok(())
    }
}

impl SavedFiles {
    /// The parts of object (dev, ino) the image's processes map.
    pub(in crate::dump) fn mapped_ranges(&self, dev: u64, ino: u64) -> Vec<(u64, u64)> {
        self.shared_memory
            .get(&(dev, ino))
            .cloned()
            .unwrap_or_default()
    }
}
