//! Chunk digests: which algorithm an image's chunks are hashed with, and
//! one hasher type for all of them.
//!
//! Owns: the choice of chunk digest. Trusts: nothing; the algorithm comes
//! from the signed manifest ([`Manifest::chunk_digest`]), and an image
//! without that field (every image written before it existed) has SHA-256
//! chunk digests. Only chunk digests change: the manifest digest that the
//! signature covers, the vdso digest and the digests of mapped and saved
//! files stay SHA-256.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::manifest::{DigestAlgorithm, Manifest};

/// A chunk digest algorithm other than the manifest's `digest_algorithm`.
/// Serialised as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ChunkDigest {
    /// BLAKE3, 32-byte digests (several times faster than SHA-256 on one
    /// core, without special CPU instructions).
    #[serde(rename = "blake3")]
    Blake3,
}

impl ChunkDigest {
    /// The algorithm's name as written in the manifest.
    pub fn name(&self) -> &'static str {
        match self {
            ChunkDigest::Blake3 => "blake3",
        }
    }
}

/// The chunk digest algorithm images are written with.
pub const WRITE_CHUNK_DIGEST: ChunkDigest = ChunkDigest::Blake3;

/// Length of every chunk digest (SHA-256 and BLAKE3 alike).
pub const CHUNK_DIGEST_LEN: usize = 32;

/// The name of the algorithm `m`'s chunks are hashed with.
pub fn chunk_digest_name(m: &Manifest) -> &'static str {
    match m.chunk_digest {
        Some(d) => d.name(),
        None => m.digest_algorithm.name(),
    }
}

/// An incremental hasher of chunk data, by the manifest's algorithm.
#[derive(Clone)]
pub enum ChunkHasher {
    /// An image without `chunk_digest`: SHA-256.
    Sha256(Sha256),
    /// `chunk_digest = "blake3"`.
    Blake3(Box<blake3::Hasher>),
}

impl ChunkHasher {
    /// A hasher for the chunks of `m`.
    pub fn for_manifest(m: &Manifest) -> ChunkHasher {
        match (m.chunk_digest, m.digest_algorithm) {
            (Some(d), _) => ChunkHasher::new(d),
            (None, DigestAlgorithm::Sha256) => ChunkHasher::Sha256(Sha256::new()),
        }
    }

    /// A hasher of algorithm `d`.
    pub fn new(d: ChunkDigest) -> ChunkHasher {
        match d {
            ChunkDigest::Blake3 => ChunkHasher::Blake3(Box::default()),
        }
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            ChunkHasher::Sha256(h) => h.update(data),
            ChunkHasher::Blake3(h) => {
                h.update(data);
            }
        }
    }

    /// The digest of everything added since the last reset, and starts
    /// again.
    pub fn finalize_reset(&mut self) -> [u8; CHUNK_DIGEST_LEN] {
        match self {
            ChunkHasher::Sha256(h) => h.finalize_reset().into(),
            ChunkHasher::Blake3(h) => {
                let d = *h.finalize().as_bytes();
                h.reset();
                d
            }
        }
    }
}
