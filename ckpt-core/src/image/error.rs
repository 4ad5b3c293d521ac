//! What can go wrong reading or writing an image.

use std::fmt;
use std::io;

use super::sign::SignError;

/// Why an image could not be written, read or verified.
///
/// Toward a user every variant but [`ImageError::Io`] means "tampered or
/// malformed"; the variants and their payloads name the region for logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The header or trailer magic is wrong: not an image (or the trailer
    /// is not where it should be, e.g. after truncation or appended bytes).
    #[error("not a ckpt image: bad magic in the {region}")]
    BadMagic {
        /// `"header"` or `"trailer"`.
        region: &'static str,
    },
    /// The header names a format version this build does not read.
    #[error("unsupported image format version {0}")]
    UnsupportedVersion(u32),
    /// The file ends before a region the trailer (or the manifest) says it
    /// has.
    #[error("image truncated: data missing at byte offset {offset}")]
    Truncated {
        /// Where the missing data starts.
        offset: u64,
    },
    /// A field or the layout is inconsistent; the text names the field.
    #[error("malformed image: {0}")]
    Malformed(&'static str),
    /// The manifest or signature block is not valid CBOR of its type.
    #[error("malformed image: cannot decode the {region}: {detail}")]
    Decode {
        /// `"manifest"` or `"signature block"`.
        region: &'static str,
        /// The decoder's message (printable ASCII, at most 160 characters).
        detail: String,
    },
    /// The manifest decodes but breaks a rule of
    /// [`validate`](super::validate::validate); names the field.
    #[error("malformed image: manifest {0}")]
    Invalid(#[from] super::validate::Invalid),
    /// Decoding the manifest or signature block would exceed a limit of
    /// [`crate::limits`]: a list's entries, or the memory the decoded value
    /// may take. Nothing past the limit was allocated.
    #[error("malformed image: the {region} {what}")]
    DecodeLimit {
        /// `"manifest"` or `"signature block"`.
        region: &'static str,
        /// Which limit, e.g. "has a list of more than 1048576 entries".
        what: String,
    },
    /// A length exceeds its cap (see [`crate::limits`]).
    #[error("{what} too large: {len} bytes or items, at most {cap}")]
    TooLarge {
        /// What was too large ("manifest", "chunk 12", ...).
        what: &'static str,
        /// Its length.
        len: u64,
        /// The cap.
        cap: u64,
    },
    /// The signature, the signature block, or a chunk's data does not match
    /// what was signed.
    #[error("image tampered: {0}")]
    Tampered(Tamper),
    /// The image is signed with an algorithm this build cannot verify. Not
    /// treated as unsigned.
    #[error("image signed with unsupported algorithm {algorithm:?}")]
    UnsupportedSignature {
        /// The algorithm name from the signature block (sanitised).
        algorithm: String,
    },
    /// The signer failed (writing only).
    #[error("cannot sign the image")]
    Sign(#[source] SignError),
    /// The writer was used wrongly (writing only): the text says how.
    #[error("invalid image writer use: {0}")]
    InvalidInput(&'static str),
    /// Reading or writing the file failed.
    #[error("image I/O failed: {op}")]
    Io {
        /// What was being done ("read the trailer", "write a chunk", ...).
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// Which part of an image did not match what was signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tamper {
    /// The TPM quote in the signature block is not bound to this image or
    /// does not verify (see [`super::attest`]).
    Attestation(ckpt_keys::quote::QuoteError),
    /// The signature does not verify over the manifest digest.
    Signature,
    /// The signature block's public key is not a valid key.
    PublicKey,
    /// The signature block's key id is not the id of its public key.
    KeyId,
    /// A chunk's data does not match its digest in the manifest.
    Chunk {
        /// Its index in the manifest's chunk list.
        index: usize,
        /// The address it belongs at.
        vaddr: u64,
    },
}

impl fmt::Display for Tamper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tamper::Signature => f.write_str("the signature does not verify"),
            Tamper::Attestation(e) => write!(f, "TPM attestation: {e}"),
            Tamper::PublicKey => f.write_str("the signature block's public key is invalid"),
            Tamper::KeyId => f.write_str("the signature block's key id does not match its key"),
            Tamper::Chunk { index, vaddr } => {
                write!(
                    f,
                    "chunk {index} (address {vaddr:#x}) does not match its digest"
                )
            }
        }
    }
}

/// Error of [`ImageReader::for_each_chunk`](super::ImageReader::for_each_chunk):
/// either the image or the callback failed.
#[derive(Debug, thiserror::Error)]
pub enum ChunkStreamError<E> {
    /// Reading or verifying a chunk failed; the callback was not called for
    /// that chunk.
    #[error(transparent)]
    Image(ImageError),
    /// The callback returned an error; streaming stopped there.
    #[error("chunk consumer failed")]
    Callback(#[source] E),
}

/// At most 160 printable ASCII characters of untrusted text (decoder
/// messages can quote attacker-chosen names).
pub(crate) fn sanitize(text: &str) -> String {
    text.chars()
        .take(160)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}
