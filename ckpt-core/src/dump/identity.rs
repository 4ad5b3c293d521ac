//! File identity: the executable and every mapped file, each opened once,
//! identified (device, inode, size, mode, owner, mtime) and hashed, so a
//! privileged restore can check that what runs is what was signed.
//!
//! Owns: the list that `Vma::file` indexes. Trusts: nothing; a file
//! replaced on disk since it was mapped is refused.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;

use sha2::{Digest, Sha256};

use super::{proc_path, DumpError};
use crate::model::FileIdentity;
use crate::procfs;

/// The mapped files of a process, each identified and hashed once.
#[derive(Default)]
pub(super) struct MappedFiles {
    pub(super) list: Vec<FileIdentity>,
    by_inode: HashMap<(u64, u64), u32>,
    /// Digests remembered between runs (root's unchanged files only).
    cache: Option<super::DigestCache>,
}

impl super::Frozen {
    /// Take mapped files' digests from `cache`, and remember new ones in
    /// it, instead of hashing every file (see [`crate::filedigests`] for
    /// which files it holds). The caller saves it after the dump.
    pub fn set_digest_cache(&mut self, cache: super::DigestCache) {
        self.digest_cache = Some(cache);
    }
}

impl MappedFiles {
    pub(super) fn with_cache(cache: Option<super::DigestCache>) -> MappedFiles {
        MappedFiles {
            cache,
            ..MappedFiles::default()
        }
    }

    pub(super) fn identity_of_exe(&mut self, pid: i32) -> Result<FileIdentity, DumpError> {
        let link = std::fs::read_link(proc_path(pid, "exe"))
            .map_err(|source| DumpError::Proc {
                pid,
                what: "exe".into(),
                source,
            })?
            .to_string_lossy()
            .into_owned();
        if link.ends_with(" (deleted)") {
            return Err(DumpError::Unsupported {
                pid,
                resource: format!("a deleted executable {link}"),
            });
        }
        let file = File::open(proc_path(pid, "exe")).map_err(|source| DumpError::Proc {
            pid,
            what: "exe".into(),
            source,
        })?;
        let id = identify(pid, &link, &file, self.cache.as_ref())?;
        // The executable is mapped too: its mappings find it here instead
        // of hashing the file a second time.
        let idx = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        self.by_inode.insert((id.dev, id.ino), idx);
        self.list.push(id.clone());
        Ok(id)
    }

    pub(super) fn identity_of_mapping(
        &mut self,
        pid: i32,
        m: &procfs::maps::MapsEntry,
    ) -> Result<u32, DumpError> {
        let path = m.path.clone().unwrap_or_default();
        let dev = nix::sys::stat::makedev(u64::from(m.dev_major), u64::from(m.dev_minor));
        if let Some(&i) = self.by_inode.get(&(dev, m.inode)) {
            return Ok(i);
        }
        let file = match File::open(proc_path(
            pid,
            &format!("map_files/{:x}-{:x}", m.start, m.end),
        )) {
            Ok(f) => f,
            // Without CAP_SYS_ADMIN map_files is closed: open the path the
            // kernel reported (no symlink, no blocking on a fifo) and check
            // below that it is the mapped inode.
            Err(_) => open_nofollow(&path).map_err(|e| DumpError::MappedFile {
                pid,
                path: path.clone(),
                reason: format!("cannot open: {e}"),
            })?,
        };
        let id = identify(pid, &path, &file, self.cache.as_ref())?;
        if id.dev != dev || id.ino != m.inode {
            return Err(DumpError::MappedFile {
                pid,
                path,
                reason: "replaced on disk since it was mapped".into(),
            });
        }
        let idx = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        self.list.push(id);
        self.by_inode.insert((dev, m.inode), idx);
        Ok(idx)
    }
}

/// Identity and content digest of an open file.
fn identify(
    pid: i32,
    path: &str,
    file: &File,
    cache: Option<&super::DigestCache>,
) -> Result<FileIdentity, DumpError> {
    let meta = file.metadata().map_err(|e| DumpError::MappedFile {
        pid,
        path: path.to_string(),
        reason: format!("fstat: {e}"),
    })?;
    if !meta.is_file() {
        return Err(DumpError::Unsupported {
            pid,
            resource: format!("mapping of non-regular file {path}"),
        });
    }
    let digest = match cache {
        Some(c) => c.borrow_mut().digest(file, &meta),
        None => digest_file(file),
    };
    let digest = digest.map_err(|e| DumpError::MappedFile {
        pid,
        path: path.to_string(),
        reason: format!("reading: {e}"),
    })?;
    Ok(FileIdentity {
        path: path.to_string(),
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        digest,
    })
}

/// SHA-256 of a whole file, read from its start.
pub fn digest_file(file: &File) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let n = file.read_at(&mut buf, off)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        off += n as u64;
    }
    Ok(h.finalize().to_vec())
}

fn open_nofollow(path: &str) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}
