//! Loading the policy from disk, with ownership and mode checks.
//!
//! A policy file must be a regular file (opened with `O_NOFOLLOW`), owned by
//! root, and not writable by group or others; the directory holding it must
//! be owned by root and not writable by group or others; every directory
//! above that must be owned by root and, if group- or world-writable, sticky
//! (like `/tmp`). Only then can nobody but root change what the path names.
//! The checks are made on the open file (`fstat`), not on the path.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::parse::{check_references, parse_one};
use crate::{Policy, PolicyError};

/// Largest policy file accepted.
pub const MAX_POLICY_LEN: u64 = 1 << 20;
/// Most drop-in files accepted.
const MAX_DROPINS: usize = 1000;

fn io(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> PolicyError {
    let path = path.to_owned();
    move |source| PolicyError::Io { path, op, source }
}

/// Check a directory and its ancestors (see the module documentation).
fn check_dir_chain(dir: &Path) -> Result<PathBuf, PolicyError> {
    let canonical = std::fs::canonicalize(dir).map_err(io(dir, "resolve"))?;
    let meta = std::fs::symlink_metadata(&canonical).map_err(io(&canonical, "inspect"))?;
    if !meta.is_dir() {
        return Err(PolicyError::WrongType {
            path: canonical,
            expected: "directory",
        });
    }
    check_owner_mode(&canonical, &meta, false)?;
    let mut cur = canonical.parent();
    while let Some(p) = cur {
        let meta = std::fs::symlink_metadata(p).map_err(io(p, "inspect"))?;
        check_owner_mode(p, &meta, true)?;
        cur = p.parent();
    }
    Ok(canonical)
}

fn check_owner_mode(
    path: &Path,
    meta: &std::fs::Metadata,
    sticky_ok: bool,
) -> Result<(), PolicyError> {
    if meta.uid() != 0 {
        return Err(PolicyError::BadOwner {
            path: path.to_owned(),
            uid: meta.uid(),
        });
    }
    let mode = meta.mode() & 0o7777;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !(sticky_ok && sticky) {
        return Err(PolicyError::BadMode {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Open and read one policy file in an already checked directory.
/// `Ok(None)` when it does not exist.
fn read_checked(path: &Path) -> Result<Option<String>, PolicyError> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(PolicyError::Symlink {
                path: path.to_owned(),
            })
        }
        Err(e) => return Err(io(path, "open")(e)),
    };
    let meta = file.metadata().map_err(io(path, "inspect"))?;
    if !meta.is_file() {
        return Err(PolicyError::WrongType {
            path: path.to_owned(),
            expected: "regular file",
        });
    }
    check_owner_mode(path, &meta, false)?;
    if meta.len() > MAX_POLICY_LEN {
        return Err(PolicyError::TooLarge {
            path: path.to_owned(),
            len: meta.len(),
            cap: MAX_POLICY_LEN,
        });
    }
    read_text(file, path).map(Some)
}

fn read_text(file: File, path: &Path) -> Result<String, PolicyError> {
    let mut bytes = Vec::new();
    file.take(MAX_POLICY_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io(path, "read"))?;
    if bytes.len() as u64 > MAX_POLICY_LEN {
        return Err(PolicyError::TooLarge {
            path: path.to_owned(),
            len: bytes.len() as u64,
            cap: MAX_POLICY_LEN,
        });
    }
    String::from_utf8(bytes).map_err(|_| PolicyError::NotUtf8 {
        path: path.to_owned(),
    })
}

/// Load one policy file with the ownership and mode checks. A missing file
/// (or a missing directory) is the empty policy.
pub fn load_file(path: &Path) -> Result<Policy, PolicyError> {
    load(path, None)
}

/// Load the policy: `file`, then every `*.toml` in `dropin_dir` (if given
/// and present), merged in byte order of their names. Everything is checked
/// for ownership and mode; a missing file or directory contributes nothing.
pub fn load(file: &Path, dropin_dir: Option<&Path>) -> Result<Policy, PolicyError> {
    let mut policy = Policy::default();
    let (dir, name) = match (file.parent(), file.file_name()) {
        (Some(d), Some(n)) => (
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            },
            n,
        ),
        _ => {
            return Err(PolicyError::WrongType {
                path: file.to_owned(),
                expected: "file path",
            })
        }
    };
    match check_dir_chain(dir) {
        Ok(canonical) => {
            let path = canonical.join(name);
            if let Some(text) = read_checked(&path)? {
                policy = parse_one(&text, file)?;
            }
        }
        Err(PolicyError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dropins) = dropin_dir {
        let canonical = match check_dir_chain(dropins) {
            Ok(c) => Some(c),
            Err(PolicyError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Some(canonical) = canonical {
            let mut names: Vec<std::ffi::OsString> = Vec::new();
            for entry in std::fs::read_dir(&canonical).map_err(io(&canonical, "list"))? {
                let entry = entry.map_err(io(&canonical, "list"))?;
                let n = entry.file_name();
                let s = n.to_string_lossy();
                if s.ends_with(".toml") && !s.starts_with('.') {
                    names.push(n);
                }
                if names.len() > MAX_DROPINS {
                    return Err(PolicyError::TooLarge {
                        path: canonical,
                        len: names.len() as u64,
                        cap: MAX_DROPINS as u64,
                    });
                }
            }
            names.sort();
            for n in names {
                let shown = dropins.join(&n);
                let Some(text) = read_checked(&canonical.join(&n))? else {
                    continue;
                };
                let part = parse_one(&text, &shown)?;
                policy.merge(part).map_err(|reason| PolicyError::Invalid {
                    path: shown.clone(),
                    line: 1,
                    what: "merge".to_owned(),
                    reason,
                })?;
            }
        }
    }
    check_references(&policy)?;
    Ok(policy)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Tmp(PathBuf);
    impl Tmp {
        fn new() -> Tmp {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "ckpt-policy-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            fs::create_dir(&p).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
            Tmp(p)
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn require_root() {
        assert!(
            nix_is_root(),
            "policy permission tests need root (files must be root-owned)"
        );
    }

    fn nix_is_root() -> bool {
        fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false)
    }

    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    const RULE: &str =
        "[[rule]]\nname = \"r\"\nsigned_by = [\"this-host\"]\ngrant = [\"same-pid\"]\n";

    #[test]
    fn missing_is_empty() {
        let t = Tmp::new();
        assert_eq!(
            load(&t.0.join("policy.toml"), Some(&t.0.join("policy.d"))).unwrap(),
            Policy::default()
        );
        assert_eq!(
            load_file(&t.0.join("nodir/policy.toml")).unwrap(),
            Policy::default()
        );
    }

    #[test]
    fn good_file_loads() {
        require_root();
        let t = Tmp::new();
        let f = t.0.join("policy.toml");
        fs::write(&f, RULE).unwrap();
        chmod(&f, 0o644);
        assert_eq!(load_file(&f).unwrap().rules.len(), 1);
    }

    #[test]
    fn writable_file_refused() {
        require_root();
        let t = Tmp::new();
        let f = t.0.join("policy.toml");
        fs::write(&f, RULE).unwrap();
        for mode in [0o664, 0o646] {
            chmod(&f, mode);
            let e = load_file(&f).unwrap_err();
            assert!(matches!(e, PolicyError::BadMode { .. }), "{e}");
            assert!(e.to_string().contains("policy.toml"), "{e}");
        }
    }

    #[test]
    fn foreign_owner_refused() {
        require_root();
        let t = Tmp::new();
        let f = t.0.join("policy.toml");
        fs::write(&f, RULE).unwrap();
        chmod(&f, 0o644);
        std::os::unix::fs::chown(&f, Some(65534), None).unwrap();
        assert!(matches!(
            load_file(&f),
            Err(PolicyError::BadOwner { uid: 65534, .. })
        ));
        // Also the directory.
        std::os::unix::fs::chown(&f, Some(0), None).unwrap();
        std::os::unix::fs::chown(&t.0, Some(65534), None).unwrap();
        assert!(matches!(load_file(&f), Err(PolicyError::BadOwner { .. })));
    }

    #[test]
    fn writable_dir_refused() {
        require_root();
        let t = Tmp::new();
        let f = t.0.join("policy.toml");
        fs::write(&f, RULE).unwrap();
        chmod(&f, 0o644);
        chmod(&t.0, 0o777);
        assert!(matches!(load_file(&f), Err(PolicyError::BadMode { .. })));
        // Sticky does not excuse the policy's own directory.
        chmod(&t.0, 0o1777);
        assert!(matches!(load_file(&f), Err(PolicyError::BadMode { .. })));
    }

    #[test]
    fn symlink_refused() {
        require_root();
        let t = Tmp::new();
        let real = t.0.join("real.toml");
        fs::write(&real, RULE).unwrap();
        chmod(&real, 0o644);
        std::os::unix::fs::symlink(&real, t.0.join("policy.toml")).unwrap();
        assert!(matches!(
            load_file(&t.0.join("policy.toml")),
            Err(PolicyError::Symlink { .. })
        ));
    }

    #[test]
    fn dropins_merge_in_name_order() {
        require_root();
        let t = Tmp::new();
        let d = t.0.join("policy.d");
        fs::create_dir(&d).unwrap();
        chmod(&d, 0o755);
        fs::write(t.0.join("policy.toml"), "").unwrap();
        fs::write(
            d.join("20-b.toml"),
            RULE.replace("name = \"r\"", "name = \"b\""),
        )
        .unwrap();
        fs::write(
            d.join("10-a.toml"),
            RULE.replace("name = \"r\"", "name = \"a\""),
        )
        .unwrap();
        fs::write(d.join("ignored.txt"), "garbage").unwrap();
        let pol = load(&t.0.join("policy.toml"), Some(&d)).unwrap();
        let names: Vec<&str> = pol.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);

        // Same rule name twice across files: refused, naming the file.
        fs::write(
            d.join("30-c.toml"),
            RULE.replace("name = \"r\"", "name = \"a\""),
        )
        .unwrap();
        let e = load(&t.0.join("policy.toml"), Some(&d)).unwrap_err();
        assert!(e.to_string().contains("30-c.toml"), "{e}");
        fs::remove_file(d.join("30-c.toml")).unwrap();

        // A writable drop-in is refused.
        chmod(&d.join("10-a.toml"), 0o666);
        let e = load(&t.0.join("policy.toml"), Some(&d)).unwrap_err();
        assert!(matches!(e, PolicyError::BadMode { .. }), "{e}");
    }
}
