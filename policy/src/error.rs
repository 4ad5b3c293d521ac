//! Why a policy could not be loaded.

use std::path::PathBuf;

/// A policy that cannot be used. The helpers then treat every image as
/// untrusted (and grant nothing).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Opening, reading or inspecting a policy file or directory failed.
    #[error("{}: cannot {op}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A policy path is a symbolic link where none is allowed.
    #[error("{}: is a symbolic link (not followed)", path.display())]
    Symlink { path: PathBuf },
    /// A policy path has the wrong type.
    #[error("{}: is not a {expected}", path.display())]
    WrongType {
        path: PathBuf,
        expected: &'static str,
    },
    /// A policy file or directory is not owned by root.
    #[error("{}: owned by uid {uid}, must be owned by root", path.display())]
    BadOwner { path: PathBuf, uid: u32 },
    /// A policy file or directory can be written by group or others.
    #[error("{}: mode {mode:04o} is writable by group or others", path.display())]
    BadMode { path: PathBuf, mode: u32 },
    /// A policy file is larger than any sensible policy.
    #[error("{}: too large ({len} bytes, at most {cap})", path.display())]
    TooLarge { path: PathBuf, len: u64, cap: u64 },
    /// A policy file is not UTF-8 text.
    #[error("{}: not UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },
    /// TOML syntax or structure error (unknown key, wrong type, ...).
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// Well-formed TOML whose content is not a valid policy.
    #[error("{}:{line}: {what}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        what: String,
        reason: String,
    },
}
