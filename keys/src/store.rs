//! The host key files, in a directory the caller names (the helpers pass
//! `<sysconfdir>/keys`, fixed at build time).
//!
//! * `host.key`: the secret, in the format of
//!   [`SigningKey::to_secret_file_bytes`]. Mode 0600, owned by root.
//! * `host.pub`: [`PublicKey::to_line`] and a newline. Mode 0644.
//! * other key files (the TPM key record of `ckpt-tpm`) through
//!   [`read_key_file`], [`write_key_file`] and [`load_public_file`].
//!
//! Files are written atomically: a temporary file created in the same
//! directory with `O_CREAT|O_EXCL|O_NOFOLLOW`, written, fsynced, then moved
//! to its name (by `link(2)`, which never replaces anything, unless the
//! caller forces a replacement, then by `rename(2)`), and the directory is
//! fsynced. Files are read with `O_NOFOLLOW` and checked on the open file
//! descriptor: a regular file, owned by root, not writable by group or
//! others (and, for the secret, not readable by them either); the directory
//! must be owned by root and not writable by group or others.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::KeyError;
use crate::public::PublicKey;
use crate::secret::SigningKey;

/// File name of the secret key.
pub const HOST_KEY_FILE: &str = "host.key";
/// File name of the public key line.
pub const HOST_PUB_FILE: &str = "host.pub";
/// File name of the TPM signing key's public line (written by `ckpt-tpm`).
pub const TPM_PUB_FILE: &str = "tpm.pub";
/// File name of the TPM attestation key's public line (`ckpt-tpm`).
pub const TPM_AK_PUB_FILE: &str = "tpm-ak.pub";

/// Largest key file accepted (either kind; real ones are ~150 bytes).
const MAX_KEY_FILE_LEN: usize = 4096;

/// The owner key files and their directory must have.
const ROOT_UID: u32 = 0;

/// Mode of a newly created key directory.
const DIR_MODE: u32 = 0o755;
/// Mode of the secret key file.
const SECRET_MODE: u32 = 0o600;
/// Mode of the public key file.
const PUBLIC_MODE: u32 = 0o644;

/// Writes `host.key` and `host.pub` into `dir`, creating `dir` (mode 0755)
/// if it is missing. Refuses to replace an existing `host.key` unless
/// `force`. `host.pub` is derived from the key and is always replaced. An
/// existing `dir` must not be writable by group or others.
pub fn write_host_key(dir: &Path, key: &SigningKey, force: bool) -> Result<(), KeyError> {
    ensure_dir(dir)?;
    let key_path = dir.join(HOST_KEY_FILE);
    if !force {
        match fs::symlink_metadata(&key_path) {
            Ok(_) => return Err(KeyError::AlreadyExists { path: key_path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(io_err("inspect", &key_path, source)),
        }
    }
    let secret = key.to_secret_file_bytes();
    write_atomic(dir, HOST_KEY_FILE, &secret, SECRET_MODE, force)?;
    let mut line = key.public_key().to_line();
    line.push('\n');
    write_atomic(dir, HOST_PUB_FILE, line.as_bytes(), PUBLIC_MODE, true)?;
    sync_dir(dir)
}

/// Loads the secret host key from `dir/host.key`.
pub fn load_host_key(dir: &Path) -> Result<SigningKey, KeyError> {
    load_host_key_owned_by(dir, ROOT_UID)
}

/// Loads the public host key from `dir/host.pub`.
pub fn load_host_public(dir: &Path) -> Result<PublicKey, KeyError> {
    load_host_public_owned_by(dir, ROOT_UID)
}

fn load_host_key_owned_by(dir: &Path, owner: u32) -> Result<SigningKey, KeyError> {
    check_dir(dir, owner)?;
    let path = dir.join(HOST_KEY_FILE);
    let bytes = read_checked(
        &path,
        owner,
        0o077,
        "must not be accessible to group or others",
    )?;
    SigningKey::from_secret_file_bytes(&bytes).map_err(|e| KeyError::InFile {
        path,
        source: Box::new(e),
    })
}

/// Loads a public key line from `dir/name` (for example `tpm.pub`), with the
/// same checks as [`load_host_public`].
pub fn load_public_file(dir: &Path, name: &str) -> Result<PublicKey, KeyError> {
    load_public_owned_by(dir, name, ROOT_UID)
}

/// Reads `dir/name`, a key file of another kind (the TPM key record), with
/// the checks of the module doc: `secret` files must not be accessible to
/// group or others at all, other files not writable by them.
pub fn read_key_file(dir: &Path, name: &str, secret: bool) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    check_dir(dir, ROOT_UID)?;
    let (forbidden, rule) = if secret {
        (0o077, "must not be accessible to group or others")
    } else {
        (0o022, "must not be writable by group or others")
    };
    read_checked(&dir.join(name), ROOT_UID, forbidden, rule)
}

/// Writes `dir/name` atomically with `mode` (creating `dir` as
/// [`write_host_key`] does), replacing an existing file only when
/// `replace`; then fsyncs the directory.
pub fn write_key_file(
    dir: &Path,
    name: &str,
    content: &[u8],
    mode: u32,
    replace: bool,
) -> Result<(), KeyError> {
    ensure_dir(dir)?;
    write_atomic(dir, name, content, mode, replace)?;
    sync_dir(dir)
}

fn load_host_public_owned_by(dir: &Path, owner: u32) -> Result<PublicKey, KeyError> {
    load_public_owned_by(dir, HOST_PUB_FILE, owner)
}

fn load_public_owned_by(dir: &Path, name: &str, owner: u32) -> Result<PublicKey, KeyError> {
    check_dir(dir, owner)?;
    let path = dir.join(name);
    let bytes = read_checked(
        &path,
        owner,
        0o022,
        "must not be writable by group or others",
    )?;
    let in_file = |e| KeyError::InFile {
        path: path.clone(),
        source: Box::new(e),
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        in_file(KeyError::Malformed {
            what: "public key file",
            reason: "not UTF-8 text",
        })
    })?;
    PublicKey::from_line(text).map_err(in_file)
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> KeyError {
    KeyError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Checks that `dir` is a directory (not a symlink) owned by `owner` and not
/// writable by group or others.
fn check_dir(dir: &Path, owner: u32) -> Result<(), KeyError> {
    let meta = fs::symlink_metadata(dir).map_err(|e| io_err("inspect", dir, e))?;
    if !meta.file_type().is_dir() {
        return Err(KeyError::WrongFileType {
            path: dir.to_path_buf(),
            expected: "directory",
        });
    }
    check_owner_mode(
        dir,
        &meta,
        owner,
        0o022,
        "must not be writable by group or others",
    )
}

fn check_owner_mode(
    path: &Path,
    meta: &fs::Metadata,
    owner: u32,
    forbidden: u32,
    rule: &'static str,
) -> Result<(), KeyError> {
    if meta.uid() != owner {
        return Err(KeyError::BadOwner {
            path: path.to_path_buf(),
            uid: meta.uid(),
            required: owner,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & forbidden != 0 {
        return Err(KeyError::BadMode {
            path: path.to_path_buf(),
            mode,
            rule,
        });
    }
    Ok(())
}

/// Opens `path` without following a symlink (and without blocking on a
/// FIFO), checks the open file, and reads at most [`MAX_KEY_FILE_LEN`]
/// bytes into a buffer that is zeroized on drop.
fn read_checked(
    path: &Path,
    owner: u32,
    forbidden: u32,
    rule: &'static str,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| io_err("open", path, e))?;
    let meta = file.metadata().map_err(|e| io_err("inspect", path, e))?;
    if !meta.file_type().is_file() {
        return Err(KeyError::WrongFileType {
            path: path.to_path_buf(),
            expected: "regular file",
        });
    }
    check_owner_mode(path, &meta, owner, forbidden, rule)?;
    // Fixed-size buffer, read once to the end: no reallocation copies.
    let mut buf = Zeroizing::new(vec![0u8; MAX_KEY_FILE_LEN + 1]);
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err("read", path, e)),
        }
    }
    if len > MAX_KEY_FILE_LEN {
        return Err(KeyError::TooLarge {
            path: path.to_path_buf(),
            len: len as u64,
            cap: MAX_KEY_FILE_LEN as u64,
        });
    }
    buf.truncate(len);
    Ok(buf)
}

/// Creates `dir` (and missing parents) when it does not exist; the last
/// component gets mode 0755 whatever the umask. An existing `dir` must not
/// be writable by group or others.
fn ensure_dir(dir: &Path) -> Result<(), KeyError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_dir() => {
            let mode = meta.mode() & 0o7777;
            if mode & 0o022 != 0 {
                return Err(KeyError::BadMode {
                    path: dir.to_path_buf(),
                    mode,
                    rule: "must not be writable by group or others",
                });
            }
            Ok(())
        }
        Ok(_) => Err(KeyError::WrongFileType {
            path: dir.to_path_buf(),
            expected: "directory",
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(|e| io_err("create directory", dir, e))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
                .map_err(|e| io_err("set the mode of", dir, e))
        }
        Err(e) => Err(io_err("inspect", dir, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), KeyError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("fsync", dir, e))
}

/// Writes `dir/name` atomically with `mode` (see the module doc).
fn write_atomic(
    dir: &Path,
    name: &str,
    content: &[u8],
    mode: u32,
    replace: bool,
) -> Result<(), KeyError> {
    let final_path = dir.join(name);
    let mut suffix = [0u8; 8];
    getrandom::getrandom(&mut suffix).map_err(KeyError::Randomness)?;
    let tmp_path = dir.join(format!(".{name}.tmp-{}", hex::encode(suffix)));
    let result = write_then_publish(&tmp_path, &final_path, content, mode, replace);
    if result.is_err() {
        // Best effort: the temporary name may not exist (or may be already
        // renamed); either way there is nothing better to do here.
        let _ = fs::remove_file(&tmp_path);
    }
    result
}

fn write_then_publish(
    tmp_path: &Path,
    final_path: &Path,
    content: &[u8],
    mode: u32,
    replace: bool,
) -> Result<(), KeyError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(tmp_path)
        .map_err(|e| io_err("create", tmp_path, e))?;
    // The umask may have removed bits (0644 under umask 077): set exactly.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| io_err("set the mode of", tmp_path, e))?;
    file.write_all(content)
        .map_err(|e| io_err("write", tmp_path, e))?;
    file.sync_all().map_err(|e| io_err("fsync", tmp_path, e))?;
    drop(file);
    if replace {
        fs::rename(tmp_path, final_path).map_err(|e| io_err("rename into place", final_path, e))
    } else {
        fs::hard_link(tmp_path, final_path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                KeyError::AlreadyExists {
                    path: final_path.to_path_buf(),
                }
            } else {
                io_err("link into place", final_path, e)
            }
        })?;
        fs::remove_file(tmp_path).map_err(|e| io_err("remove", tmp_path, e))
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let mut r = [0u8; 8];
            getrandom::getrandom(&mut r).expect("randomness");
            let p = std::env::temp_dir().join(format!("ckpt-keys-{tag}-{}", hex::encode(r)));
            fs::create_dir(&p).expect("create temp dir");
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
            TempDir(p)
        }
        fn owner(&self) -> u32 {
            fs::metadata(&self.0).expect("stat").uid()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn mode_of(p: &Path) -> u32 {
        fs::symlink_metadata(p).expect("stat").mode() & 0o7777
    }

    #[test]
    fn write_then_load() {
        let t = TempDir::new("rw");
        let dir = t.0.join("keys");
        let k = SigningKey::generate().expect("randomness");
        write_host_key(&dir, &k, false).expect("write");
        assert_eq!(mode_of(&dir), 0o755);
        assert_eq!(mode_of(&dir.join(HOST_KEY_FILE)), 0o600);
        assert_eq!(mode_of(&dir.join(HOST_PUB_FILE)), 0o644);
        let pub_text = fs::read_to_string(dir.join(HOST_PUB_FILE)).expect("read");
        assert_eq!(pub_text, format!("{}\n", k.public_key().to_line()));
        let owner = t.owner();
        let back = load_host_key_owned_by(&dir, owner).expect("load key");
        assert_eq!(back.public_key(), k.public_key());
        let pk = load_host_public_owned_by(&dir, owner).expect("load pub");
        assert_eq!(pk, k.public_key());
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn no_overwrite_unless_forced() {
        let t = TempDir::new("force");
        let k1 = SigningKey::generate().expect("randomness");
        let k2 = SigningKey::generate().expect("randomness");
        write_host_key(&t.0, &k1, false).expect("write");
        assert!(matches!(
            write_host_key(&t.0, &k2, false),
            Err(KeyError::AlreadyExists { .. })
        ));
        let owner = t.owner();
        let loaded = load_host_key_owned_by(&t.0, owner).expect("load");
        assert_eq!(loaded.public_key(), k1.public_key());
        write_host_key(&t.0, &k2, true).expect("forced write");
        let loaded = load_host_key_owned_by(&t.0, owner).expect("load");
        assert_eq!(loaded.public_key(), k2.public_key());
        assert_eq!(
            load_host_public_owned_by(&t.0, owner).expect("pub"),
            k2.public_key()
        );
    }

    #[test]
    fn existing_symlink_is_not_followed_or_replaced() {
        let t = TempDir::new("symlink-w");
        let target = t.0.join("elsewhere");
        symlink(&target, t.0.join(HOST_KEY_FILE)).expect("symlink");
        let k = SigningKey::generate().expect("randomness");
        assert!(matches!(
            write_host_key(&t.0, &k, false),
            Err(KeyError::AlreadyExists { .. })
        ));
        assert!(!target.exists());
    }

    #[test]
    fn bad_permissions_are_refused() {
        let t = TempDir::new("perm");
        let k = SigningKey::generate().expect("randomness");
        write_host_key(&t.0, &k, false).expect("write");
        let owner = t.owner();
        let key_path = t.0.join(HOST_KEY_FILE);
        for mode in [0o640, 0o604, 0o660, 0o644, 0o606] {
            fs::set_permissions(&key_path, fs::Permissions::from_mode(mode)).expect("chmod");
            let err = load_host_key_owned_by(&t.0, owner).err();
            assert!(
                matches!(&err, Some(KeyError::BadMode { path, .. }) if *path == key_path),
                "mode {mode:o}: {err:?}"
            );
            assert!(err
                .map(|e| e.to_string())
                .unwrap_or_default()
                .contains("host.key"));
        }
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).expect("chmod");
        load_host_key_owned_by(&t.0, owner).expect("0600 is fine");
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o400)).expect("chmod");
        load_host_key_owned_by(&t.0, owner).expect("0400 is fine");

        let pub_path = t.0.join(HOST_PUB_FILE);
        fs::set_permissions(&pub_path, fs::Permissions::from_mode(0o664)).expect("chmod");
        assert!(matches!(
            load_host_public_owned_by(&t.0, owner),
            Err(KeyError::BadMode { .. })
        ));

        fs::set_permissions(&t.0, fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(matches!(
            load_host_key_owned_by(&t.0, owner),
            Err(KeyError::BadMode { path, .. }) if path == t.0
        ));
        assert!(matches!(
            write_host_key(&t.0, &k, true),
            Err(KeyError::BadMode { path, .. }) if path == t.0
        ));
    }

    #[test]
    fn wrong_owner_is_refused() {
        let t = TempDir::new("owner");
        let k = SigningKey::generate().expect("randomness");
        write_host_key(&t.0, &k, false).expect("write");
        let other = t.owner().wrapping_add(1);
        assert!(matches!(
            load_host_key_owned_by(&t.0, other),
            Err(KeyError::BadOwner { .. })
        ));
        assert!(matches!(
            load_host_public_owned_by(&t.0, other),
            Err(KeyError::BadOwner { .. })
        ));
    }

    #[test]
    fn symlinked_or_special_key_file_is_refused() {
        let t = TempDir::new("symlink-r");
        let k = SigningKey::generate().expect("randomness");
        let real = TempDir::new("real");
        write_host_key(&real.0, &k, false).expect("write");
        symlink(real.0.join(HOST_KEY_FILE), t.0.join(HOST_KEY_FILE)).expect("symlink");
        let err = load_host_key_owned_by(&t.0, t.owner()).err();
        assert!(
            matches!(err, Some(KeyError::Io { op: "open", .. })),
            "{err:?}"
        );

        let d = TempDir::new("dir");
        fs::create_dir(d.0.join(HOST_KEY_FILE)).expect("mkdir");
        assert!(matches!(
            load_host_key_owned_by(&d.0, d.owner()),
            Err(KeyError::WrongFileType { .. })
        ));
    }

    #[test]
    fn garbage_and_oversized_files_are_refused() {
        let t = TempDir::new("garbage");
        let key_path = t.0.join(HOST_KEY_FILE);
        fs::write(&key_path, b"not a key\n").expect("write");
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(matches!(
            load_host_key_owned_by(&t.0, t.owner()),
            Err(KeyError::InFile { .. })
        ));
        fs::write(&key_path, vec![b'a'; MAX_KEY_FILE_LEN + 10]).expect("write");
        assert!(matches!(
            load_host_key_owned_by(&t.0, t.owner()),
            Err(KeyError::TooLarge { .. })
        ));
        assert!(matches!(
            load_host_public_owned_by(&t.0, t.owner()),
            Err(KeyError::Io { .. })
        ));
    }
}
