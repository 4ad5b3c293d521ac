//! ckpt-keys: key generation, loading, key ids, the public-key text form,
//! signing and signature verification.
//!
//! What this crate owns:
//!
//! * [`Algorithm`], [`KeyId`] and [`PublicKey`]: the public half of a signing
//!   key, its text form (one line, as `ckpt-sign pubkey` prints it and as the
//!   policy file quotes it) and its id.
//! * [`SigningKey`]: an ed25519 secret key held in memory. It is neither
//!   `Clone` nor `Debug`, and it is zeroized on drop.
//! * [`signed_message`]: the exact, domain-separated bytes that are signed for
//!   an image. Nothing else is ever signed with a host key.
//! * [`store`]: the host key files under a directory the caller names.
//! * [`ecdsa`]: ECDSA P-256 verification (TPM-resident keys sign with it).
//! * [`quote`]: TPM2 quotes, parsed and verified in pure software.
//!
//! What it trusts: nothing it parses. A public-key line must carry the id of
//! the key it holds; a secret-key file must be consistent with itself; the
//! host key files must be root-owned regular files that nobody else can write
//! (and, for the secret, read). Verification is pure software
//! (`ed25519-dalek`, `verify_strict`: no small-order keys, no malleable
//! signatures).
//!
//! ```compile_fail
//! // A signing key cannot be copied...
//! fn copy(k: &ckpt_keys::SigningKey) -> ckpt_keys::SigningKey { k.clone() }
//! ```
//!
//! ```compile_fail
//! // ...nor printed.
//! fn show(k: &ckpt_keys::SigningKey) -> String { format!("{k:?}") }
//! ```
#![forbid(unsafe_code)]

pub mod ecdsa;
mod error;
mod public;
pub mod quote;
mod secret;
pub mod store;

pub use error::{KeyError, VerifyError};
pub use public::{signed_message, signed_message_v1, Algorithm, KeyId, PublicKey};
pub use secret::SigningKey;

/// Context string of key ids (followed by the algorithm name and the key).
pub const KEY_ID_CONTEXT: &[u8] = b"ckpt-key-id-v1\0";

/// Context string of image signatures (see [`signed_message`]): images of
/// format version 2, the only ones written.
pub const IMAGE_SIGNATURE_CONTEXT: &[u8] = b"ckpt-image-v2\0";

/// Context string of the signatures of format-version-1 images (see
/// [`signed_message_v1`]), which are still read and verified. A version in
/// the signed message means a signature made for one version's manifest
/// can never verify as another's.
pub const IMAGE_SIGNATURE_CONTEXT_V1: &[u8] = b"ckpt-image-v1\0";
