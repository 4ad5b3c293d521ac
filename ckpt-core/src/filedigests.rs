//! The persistent cache of mapped files' SHA-256 digests, kept by the
//! setuid helpers in `<statedir>/file-digests`.
//!
//! Every dump hashes each file a process maps (the executable, libc, the
//! loader) and every restore hashes them again to check that they are
//! unchanged: for a small process that is most of the work. This cache
//! remembers the digest of a file by its identity and change times, so
//! that an unchanged file is not read again.
//!
//! Owns: the cache file. Trusts: the kernel's inode metadata, and only for
//! files that no one but root can change. A file is cached only when all
//! of these hold (see SECURITY.md, "The file digest cache"):
//!
//! * it is a regular file owned by root and not writable by group or
//!   others (only root can change its content in place, or its times);
//! * it lives on ext2/3/4, XFS or btrfs (file systems the kernel keeps the
//!   metadata of: not FUSE, whose server reports whatever it likes, nor an
//!   overlay or tmpfs a user can mount in a user namespace), on a mount
//!   without `nosuid` (removable media and images that users mount through
//!   udisks or fstab's `user` option are always `nosuid`);
//! * its ctime is at least [`SETTLE_SECS`] old when it is hashed, and its
//!   metadata was the same before and after hashing.
//!
//! The key is (file system id, device, inode, size, mtime, ctime). Every
//! change of content, `mmap` writes included, sets the ctime to the current
//! time, and nothing can set it back (not even root, short of setting the
//! clock back). Because the cached ctime is already [`SETTLE_SECS`] in the
//! past, a later change gets a different ctime even where the file system
//! keeps coarse timestamps: a changed file never matches its old entry and
//! is hashed again.
//!
//! The cache file must be a regular file owned by root, mode 0600 or
//! stricter, in the root-owned state directory (the same rules as the
//! one-shot ledger's). It ends with a SHA-256 of its contents; a file that
//! does not check out (torn by a crash, hand-edited) is ignored and
//! replaced. Writes are best effort and never fail a dump or restore: a
//! temporary file is written and renamed over the old one (not fsynced: a
//! lost or torn cache only costs a hash). At most [`MAX_ENTRIES`] entries
//! are kept.

use std::collections::HashMap;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The cache file's name in the state directory.
pub const CACHE_FILE: &str = "file-digests";

/// Entries kept at most (the file stays under 50 KiB).
pub const MAX_ENTRIES: usize = 512;

/// How old a file's ctime must be, in seconds, before its digest is
/// cached.
pub const SETTLE_SECS: i64 = 2;

const MAGIC: &[u8; 8] = b"CKPTFD01";
const RECORD: usize = 8 * 8 + 32;
const TRAILER: usize = 32;

/// What identifies one version of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    fsid: u64,
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Key {
    fn of(fsid: u64, meta: &Metadata) -> Key {
        Key {
            fsid,
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn encode(&self, digest: &[u8; 32], out: &mut Vec<u8>) {
        for v in [self.fsid, self.dev, self.ino, self.size] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.mtime.0, self.mtime.1, self.ctime.0, self.ctime.1] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(digest);
    }

    fn decode(rec: &[u8]) -> Option<(Key, [u8; 32])> {
        let word = |i: usize| -> Option<[u8; 8]> { rec.get(i * 8..i * 8 + 8)?.try_into().ok() };
        let u = |i| word(i).map(u64::from_le_bytes);
        let s = |i| word(i).map(i64::from_le_bytes);
        let key = Key {
            fsid: u(0)?,
            dev: u(1)?,
            ino: u(2)?,
            size: u(3)?,
            mtime: (s(4)?, s(5)?),
            ctime: (s(6)?, s(7)?),
        };
        let digest: [u8; 32] = rec.get(64..96)?.try_into().ok()?;
        Some((key, digest))
    }
}

/// The cache, loaded on first use. Not thread-safe: one per dump or
/// restore, used by the thread that identifies mapped files.
#[derive(Debug, Default)]
pub struct FileDigestCache {
    /// The state directory; `None`: the cache is not used at all.
    dir: Option<PathBuf>,
    loaded: bool,
    entries: HashMap<Key, [u8; 32]>,
    /// Entries added since loading, to be written by [`Self::save`].
    added: bool,
}

impl FileDigestCache {
    /// The cache kept in `statedir` (normally [`crate::paths::STATEDIR`]).
    pub fn new(statedir: &Path) -> FileDigestCache {
        FileDigestCache {
            dir: Some(statedir.to_owned()),
            ..FileDigestCache::default()
        }
    }

    /// A cache that remembers nothing (every file is hashed).
    pub fn disabled() -> FileDigestCache {
        FileDigestCache::default()
    }

    /// The SHA-256 of `file` (metadata `meta`, from the same open file):
    /// from the cache when the file may be cached and is unchanged,
    /// otherwise hashed (and remembered if it may be cached).
    pub fn digest(&mut self, file: &File, meta: &Metadata) -> std::io::Result<Vec<u8>> {
        let key = match &self.dir {
            Some(_) => cacheable(file, meta),
            None => None,
        };
        if let Some(key) = key {
            self.load();
            if let Some(d) = self.entries.get(&key) {
                return Ok(d.to_vec());
            }
        }
        let digest = crate::dump::digest_file(file)?;
        if let Some(key) = key {
            let settled = now_secs().is_some_and(|now| settled(&key, now));
            let same_after = file
                .metadata()
                .is_ok_and(|after| Key::of(key.fsid, &after) == key);
            if let (true, true, Ok(d)) =
                (settled, same_after, <[u8; 32]>::try_from(digest.as_slice()))
            {
                if self.entries.len() >= MAX_ENTRIES {
                    self.entries.clear();
                }
                self.entries.insert(key, d);
                self.added = true;
            }
        }
        Ok(digest)
    }

    /// Write the cache back if entries were added. Best effort: a cache
    /// that cannot be written only costs hashing next time.
    pub fn save(&mut self) {
        if !self.added {
            return;
        }
        self.added = false;
        if let Some(dir) = &self.dir {
            let _ = write_cache(dir, &self.entries);
        }
    }

    fn load(&mut self) {
        if self.loaded {
            return;
        }
        self.loaded = true;
        if let Some(dir) = &self.dir {
            self.entries = read_cache(dir).unwrap_or_default();
        }
    }
}

/// The key of `file` if it may be cached (see the module documentation).
fn cacheable(file: &File, meta: &Metadata) -> Option<Key> {
    use nix::sys::statfs::{BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC};
    use nix::sys::statvfs::FsFlags;
    if !meta.is_file() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return None;
    }
    let fs = nix::sys::statfs::fstatfs(file).ok()?;
    let t = fs.filesystem_type();
    if t != EXT4_SUPER_MAGIC && t != XFS_SUPER_MAGIC && t != BTRFS_SUPER_MAGIC {
        return None;
    }
    let vfs = nix::sys::statvfs::fstatvfs(file).ok()?;
    if vfs.flags().contains(FsFlags::ST_NOSUID) {
        return None;
    }
    Some(Key::of(vfs.filesystem_id(), meta))
}

/// Whether a file of key `key` changed long enough before `now` (seconds
/// since the epoch) that any later change gets a different ctime.
fn settled(key: &Key, now: i64) -> bool {
    key.ctime.0.saturating_add(SETTLE_SECS) <= now
}

fn now_secs() -> Option<i64> {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    i64::try_from(d.as_secs()).ok()
}

/// Whether `meta` is a directory only root can change the entries of.
fn root_dir(meta: &Metadata) -> bool {
    meta.is_dir() && meta.uid() == 0 && (meta.mode() & 0o022 == 0 || meta.mode() & 0o1000 != 0)
}

/// The state directory, if it and every directory above it are root's
/// (as the one-shot ledger requires): then only root can change what its
/// paths name. With `create`, a missing state directory is made (0700).
fn state_dir(dir: &Path, create: bool) -> Option<PathBuf> {
    if !dir.is_absolute() {
        return None;
    }
    let mut cur = dir.parent();
    while let Some(p) = cur {
        if !root_dir(&std::fs::symlink_metadata(p).ok()?) {
            return None;
        }
        cur = p.parent();
    }
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if create && e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().mode(0o700).create(dir).ok()?;
            std::fs::symlink_metadata(dir).ok()?
        }
        Err(_) => return None,
    };
    // The state directory itself must not be writable by group or others,
    // sticky or not.
    (root_dir(&meta) && meta.mode() & 0o022 == 0).then(|| dir.to_owned())
}

fn read_cache(dir: &Path) -> Option<HashMap<Key, [u8; 32]>> {
    let dir = state_dir(dir, false)?;
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(dir.join(CACHE_FILE))
        .ok()?;
    let meta = file.metadata().ok()?;
    let max = MAGIC.len() + MAX_ENTRIES * RECORD + TRAILER;
    if !meta.is_file() || meta.uid() != 0 || meta.mode() & 0o077 != 0 {
        return None;
    }
    if usize::try_from(meta.len()).ok()? > max {
        return None;
    }
    let mut bytes = Vec::with_capacity(max);
    Read::by_ref(&mut file)
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    decode(&bytes)
}

fn decode(bytes: &[u8]) -> Option<HashMap<Key, [u8; 32]>> {
    let body_len = bytes.len().checked_sub(TRAILER)?;
    let (body, trailer) = bytes.split_at(body_len);
    if Sha256::digest(body).as_slice() != trailer {
        return None;
    }
    let records = body.strip_prefix(MAGIC.as_slice())?;
    if records.len() % RECORD != 0 || records.len() / RECORD > MAX_ENTRIES {
        return None;
    }
    records.chunks_exact(RECORD).map(Key::decode).collect()
}

fn encode(entries: &HashMap<Key, [u8; 32]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + entries.len() * RECORD + TRAILER);
    out.extend_from_slice(MAGIC);
    for (k, d) in entries.iter().take(MAX_ENTRIES) {
        k.encode(d, &mut out);
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

fn write_cache(dir: &Path, entries: &HashMap<Key, [u8; 32]>) -> std::io::Result<()> {
    let not_root = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
    let dir = state_dir(dir, true).ok_or_else(not_root)?;
    let tmp = dir.join(format!(".{CACHE_FILE}.{}", std::process::id()));
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
    };
    // A temporary file left by a helper of the same pid that died.
    let mut file = match open() {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&tmp)?;
            open()?
        }
        Err(e) => return Err(e),
    };
    let done = std::os::unix::fs::fchown(&file, Some(0), Some(0))
        .and_then(|()| file.write_all(&encode(entries)))
        .and_then(|()| std::fs::rename(&tmp, dir.join(CACHE_FILE)));
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn key(n: u64) -> Key {
        Key {
            fsid: 1,
            dev: 2,
            ino: n,
            size: 4,
            mtime: (5, 6),
            ctime: (7, 8),
        }
    }

    #[test]
    fn entries_round_trip() {
        let mut m = HashMap::new();
        m.insert(key(1), [1u8; 32]);
        m.insert(key(2), [2u8; 32]);
        let bytes = encode(&m);
        assert_eq!(bytes.len(), MAGIC.len() + 2 * RECORD + TRAILER);
        assert_eq!(decode(&bytes).unwrap(), m);
    }

    #[test]
    fn a_damaged_cache_is_ignored() {
        let mut m = HashMap::new();
        m.insert(key(1), [1u8; 32]);
        let bytes = encode(&m);
        for cut in [0, 1, MAGIC.len(), bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        for i in [0, MAGIC.len() + 3, MAGIC.len() + 70, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode(&bad).is_none(), "byte {i} flipped");
        }
    }

    #[test]
    fn files_a_user_can_change_are_not_cached() {
        let path = std::env::temp_dir().join(format!("ckpt-fd-cache-{}", std::process::id()));
        std::fs::write(&path, b"content").unwrap();
        if nix::unistd::geteuid().is_root() {
            // Owned by a user: they could change it.
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        }
        let file = File::open(&path).unwrap();
        let meta = file.metadata().unwrap();
        assert_ne!(meta.uid(), 0);
        assert!(cacheable(&file, &meta).is_none());
        let mut cache = FileDigestCache::new(Path::new("/nonexistent/ckpt-state"));
        let d = cache.digest(&file, &meta).unwrap();
        assert_eq!(d, Sha256::digest(b"content").to_vec());
        assert!(cache.entries.is_empty());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn only_settled_files_are_remembered() {
        let k = key(1);
        assert!(!settled(&k, k.ctime.0));
        assert!(!settled(&k, k.ctime.0 + SETTLE_SECS - 1));
        assert!(settled(&k, k.ctime.0 + SETTLE_SECS));
    }
}
