//! Error types of this crate: one enum for handling keys, one for verifying.

use std::io;
use std::path::PathBuf;

use crate::public::{Algorithm, KeyId};

/// Why a key could not be parsed, generated, written or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Text or bytes that should hold a key do not have the expected shape.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being parsed ("public key line", "secret key file").
        what: &'static str,
        /// Which part of it is wrong.
        reason: &'static str,
    },
    /// An algorithm name that this build does not know.
    #[error("unknown key algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// Key bytes that are not a valid key of their algorithm.
    #[error("invalid {alg} public key: {reason}")]
    InvalidKey {
        /// The algorithm the bytes were given as.
        alg: Algorithm,
        /// What is wrong with them.
        reason: &'static str,
    },
    /// A key id written next to a key is not the id of that key.
    #[error("key id {stated} does not match the key, whose id is {computed}")]
    KeyIdMismatch {
        /// The id that was written down.
        stated: KeyId,
        /// The id computed from the key.
        computed: KeyId,
    },
    /// The operation needs a different algorithm than the key has.
    #[error("operation not supported for {0} keys")]
    UnsupportedAlgorithm(Algorithm),
    /// The operating system's random number generator failed.
    #[error("cannot get random bytes from the operating system")]
    Randomness(#[source] getrandom::Error),
    /// An I/O operation on a key file or directory failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// The operation ("open", "read", "create", "rename", ...).
        op: &'static str,
        /// The path it acted on.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A key file exists and replacing it was not asked for.
    #[error("{} already exists; refusing to overwrite it", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A path that must be a regular file (or a directory) is something else.
    #[error("{} is not a {expected}", path.display())]
    WrongFileType {
        /// The path.
        path: PathBuf,
        /// What it should have been ("regular file", "directory").
        expected: &'static str,
    },
    /// A key file or directory is not owned by the required user.
    #[error("{} is owned by uid {uid}, must be owned by uid {required}", path.display())]
    BadOwner {
        /// The path.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// The owner it must have.
        required: u32,
    },
    /// A key file or directory is accessible to users it must not be.
    #[error("{} has mode {mode:04o}: {rule}", path.display())]
    BadMode {
        /// The path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A key file is larger than any valid one.
    #[error("{} is too large ({len} bytes or more, at most {cap})", path.display())]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// Its length (at least).
        len: u64,
        /// The largest valid length.
        cap: u64,
    },
    /// A key file could be read but its content is not a valid key.
    #[error("invalid key file {}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// Why its content was rejected.
        #[source]
        source: Box<KeyError>,
    },
}

/// Why a signature did not verify. Callers should treat every variant as
/// "not signed by this key" (the detail is for logs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// This build cannot verify signatures of the algorithm.
    #[error("cannot verify {0} signatures")]
    UnsupportedAlgorithm(Algorithm),
    /// The signature has the wrong length for its algorithm.
    #[error("signature is {len} bytes long, expected {expected}")]
    BadLength {
        /// Its length.
        len: usize,
        /// The length of a signature of the algorithm.
        expected: usize,
    },
    /// The signature does not verify under the key.
    #[error("signature does not verify")]
    BadSignature,
}
