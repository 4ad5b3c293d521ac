//! The one-shot ledger: the image ids that were restored under a one-shot
//! policy rule, so that a second restore of the same image id does not get
//! that rule's grants again.
//!
//! Layout: `<statedir>/one-shot/<image id>` (32 lowercase hex), one file
//! per image id, created with `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600,
//! holding one informational line (time, caller, rule). Creating the file is
//! the atomic "test and set": of two restores racing for the same image id,
//! exactly one creates it. The file is fsynced, then the directory.
//!
//! `<statedir>` is fixed at build time (`ckpt_core::paths::STATEDIR`). It and
//! `one-shot/` are created mode 0700 by the (setuid-root) helper when
//! missing. Both must be directories owned by root and not writable by group
//! or others, and every directory above them must be owned by root and not
//! group/world-writable unless sticky (like `/tmp`): then only root can
//! change what the paths name, and plain path operations are safe. Anything
//! else makes the ledger unavailable, and one-shot rules then grant nothing.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The ledger's subdirectory of the state directory.
pub const ONE_SHOT_DIR: &str = "one-shot";

/// Why the ledger cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A file system operation failed.
    #[error("{}: cannot {op}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A ledger directory (or one above it) is not owned by root.
    #[error("{}: owned by uid {uid}, must be owned by root", path.display())]
    BadOwner { path: PathBuf, uid: u32 },
    /// A ledger directory (or one above it) is writable by group or others.
    #[error("{}: mode {mode:04o} is writable by group or others", path.display())]
    BadMode { path: PathBuf, mode: u32 },
    /// A ledger path is not a directory (or an entry is not a regular file).
    #[error("{}: is not a {expected}", path.display())]
    WrongType {
        path: PathBuf,
        expected: &'static str,
    },
    /// The image id is not 32 lowercase hex characters.
    #[error("{id:?} is not an image id")]
    BadImageId { id: String },
    /// The image id is already in the ledger.
    #[error("image {id} was already restored under a one-shot rule")]
    AlreadyRecorded { id: String },
}

fn io(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> LedgerError {
    let path = path.to_owned();
    move |source| LedgerError::Io { path, op, source }
}

fn check_dir(path: &Path, meta: &std::fs::Metadata, sticky_ok: bool) -> Result<(), LedgerError> {
    if !meta.is_dir() {
        return Err(LedgerError::WrongType {
            path: path.to_owned(),
            expected: "directory",
        });
    }
    if meta.uid() != 0 {
        return Err(LedgerError::BadOwner {
            path: path.to_owned(),
            uid: meta.uid(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 && !(sticky_ok && mode & 0o1000 != 0) {
        return Err(LedgerError::BadMode {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Check (and with `create`, make) one ledger directory. `Ok(false)` when
/// it is missing and `create` is false.
fn ensure_dir(path: &Path, create: bool) -> Result<bool, LedgerError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound && !create => return Ok(false),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            match DirBuilder::new().mode(0o700).create(path) {
                // Setuid root keeps the caller's gid: give it to root.
                Ok(()) => std::os::unix::fs::lchown(path, Some(0), Some(0))
                    .map_err(io(path, "change the owner of"))?,
                // Created by a concurrent helper: fine, checked below.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(path, "create")(e)),
            }
            std::fs::symlink_metadata(path).map_err(io(path, "inspect"))?
        }
        Err(e) => return Err(io(path, "inspect")(e)),
    };
    if meta.file_type().is_symlink() {
        return Err(LedgerError::WrongType {
            path: path.to_owned(),
            expected: "directory (it is a symbolic link)",
        });
    }
    check_dir(path, &meta, false)?;
    Ok(true)
}

fn valid_id(id: &str) -> Result<(), LedgerError> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(LedgerError::BadImageId { id: id.to_owned() })
    }
}

/// The one-shot ledger in a state directory.
#[derive(Debug)]
pub struct Ledger {
    /// `<statedir>/one-shot`, canonical; `None` when it does not exist
    /// (opened without `create`): an empty ledger.
    dir: Option<PathBuf>,
}

impl Ledger {
    /// Open the ledger under `statedir`. With `create`, the state directory
    /// (not its parents) and `one-shot/` are created (0700) when missing;
    /// without it, a missing ledger is an empty one.
    pub fn open(statedir: &Path, create: bool) -> Result<Ledger, LedgerError> {
        let parent = match statedir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("/"),
        };
        let name = statedir.file_name().ok_or_else(|| LedgerError::WrongType {
            path: statedir.to_owned(),
            expected: "directory path",
        })?;
        let parent = match std::fs::canonicalize(parent) {
            Ok(p) => p,
            Err(e) if e.kind() == ErrorKind::NotFound && !create => {
                return Ok(Ledger { dir: None })
            }
            Err(e) => return Err(io(parent, "resolve")(e)),
        };
        let mut cur = Some(parent.as_path());
        while let Some(p) = cur {
            let meta = std::fs::symlink_metadata(p).map_err(io(p, "inspect"))?;
            check_dir(p, &meta, true)?;
            cur = p.parent();
        }
        let state = parent.join(name);
        if !ensure_dir(&state, create)? {
            return Ok(Ledger { dir: None });
        }
        let dir = state.join(ONE_SHOT_DIR);
        if !ensure_dir(&dir, create)? {
            return Ok(Ledger { dir: None });
        }
        Ok(Ledger { dir: Some(dir) })
    }

    /// The ledger directory, if it exists.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// True when `image_id` is recorded.
    pub fn contains(&self, image_id: &str) -> Result<bool, LedgerError> {
        valid_id(image_id)?;
        let Some(dir) = &self.dir else {
            return Ok(false);
        };
        let path = dir.join(image_id);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&path, "inspect")(e)),
        }
    }

    /// Record `image_id`, atomically: fails with
    /// [`LedgerError::AlreadyRecorded`] when it is there already. `note`
    /// (one line) is written into the entry for the administrator.
    pub fn reserve(&self, image_id: &str, note: &str) -> Result<Reservation, LedgerError> {
        valid_id(image_id)?;
        let Some(dir) = &self.dir else {
            return Err(LedgerError::WrongType {
                path: PathBuf::from(ONE_SHOT_DIR),
                expected: "ledger opened for writing",
            });
        };
        let path = dir.join(image_id);
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(LedgerError::AlreadyRecorded {
                    id: image_id.to_owned(),
                })
            }
            Err(e) => return Err(io(&path, "create")(e)),
        };
        let line: String = note.chars().filter(|c| !c.is_control()).collect();
        let done = std::os::unix::fs::fchown(&file, Some(0), Some(0))
            .and_then(|()| writeln!(file, "{line}"))
            .and_then(|()| file.sync_all())
            .and_then(|()| File::open(dir)?.sync_all());
        if let Err(e) = done {
            let _ = std::fs::remove_file(&path);
            return Err(io(&path, "write")(e));
        }
        Ok(Reservation { path: Some(path) })
    }
}

/// A ledger entry just created. It stays unless [`Reservation::release`]
/// is called: a helper killed mid-restore leaves the image id recorded
/// (fail closed).
#[derive(Debug)]
pub struct Reservation {
    path: Option<PathBuf>,
}

impl Reservation {
    /// Remove the entry again (the restore it was made for created
    /// nothing).
    pub fn release(mut self) -> Result<(), LedgerError> {
        match self.path.take() {
            Some(p) => std::fs::remove_file(&p).map_err(io(&p, "remove")),
            None => Ok(()),
        }
    }

    /// The entry's path.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("ckpt-ledger-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn require_root() {
        assert!(
            fs::metadata("/proc/self")
                .map(|m| m.uid() == 0)
                .unwrap_or(false),
            "ledger tests need root (the ledger must be root-owned)"
        );
    }

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn create_reserve_contains_release() {
        require_root();
        let t = tmp("basic");
        let state = t.join("state");
        // Without create: missing is empty, nothing is created.
        let l = Ledger::open(&state, false).unwrap();
        assert!(!l.contains(ID).unwrap());
        assert!(!state.exists());

        let l = Ledger::open(&state, true).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join(ONE_SHOT_DIR)), 0o700);
        assert!(!l.contains(ID).unwrap());
        let r = l.reserve(ID, "caller_uid=1001 rule=r\nforged").unwrap();
        assert!(l.contains(ID).unwrap());
        let text = fs::read_to_string(state.join(ONE_SHOT_DIR).join(ID)).unwrap();
        assert_eq!(text, "caller_uid=1001 rule=rforged\n");
        assert_eq!(mode(r.path().unwrap()), 0o600);
        let meta = fs::metadata(r.path().unwrap()).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, 0));
        assert!(matches!(
            l.reserve(ID, ""),
            Err(LedgerError::AlreadyRecorded { .. })
        ));
        // A second opener sees it.
        assert!(Ledger::open(&state, false).unwrap().contains(ID).unwrap());
        r.release().unwrap();
        assert!(!l.contains(ID).unwrap());
        assert!(matches!(
            l.contains("../../etc/passwd"),
            Err(LedgerError::BadImageId { .. })
        ));
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn unsafe_directories_are_refused() {
        require_root();
        let t = tmp("unsafe");
        let state = t.join("state");
        fs::create_dir(&state).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            Ledger::open(&state, true),
            Err(LedgerError::BadMode { .. })
        ));
        fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&state, Some(65534), None).unwrap();
        assert!(matches!(
            Ledger::open(&state, true),
            Err(LedgerError::BadOwner { .. })
        ));
        fs::remove_dir_all(&state).unwrap();

        // A symbolic link as the state directory.
        let real = t.join("real");
        fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, &state).unwrap();
        assert!(matches!(
            Ledger::open(&state, true),
            Err(LedgerError::WrongType { .. })
        ));
        fs::remove_file(&state).unwrap();

        // A writable parent without the sticky bit.
        fs::set_permissions(&t, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            Ledger::open(&state, true),
            Err(LedgerError::BadMode { .. })
        ));
        // Sticky (like /tmp) is fine.
        fs::set_permissions(&t, fs::Permissions::from_mode(0o1777)).unwrap();
        Ledger::open(&state, true).unwrap();
        fs::remove_dir_all(&t).unwrap();
    }
}
