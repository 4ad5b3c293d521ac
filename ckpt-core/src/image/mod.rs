//! The image format (`.ckpt`, version 2): write, read (versions 1 and 2),
//! stream-verify.
//!
//! An image is one file: a fixed header, the chunks (memory pages, and the
//! content of files that have no path to reopen), a CBOR manifest that
//! describes the processes and lists every chunk with its digest, an
//! optional signature block over the manifest's digest, and a fixed trailer
//! that locates everything. The writer streams: chunks are hashed as they are
//! appended, and the manifest is written once they are all known. The
//! signature covers the manifest's exact bytes, so checking the signature and
//! then each chunk's digest as it streams by verifies the whole image without
//! holding it in memory.
//!
//! # Byte layout
//!
//! All integers are little-endian.
//!
//! ```text
//! offset                      size          content
//! 0                           32            header
//!   0                           8             magic  b"CKPTIMG\0"
//!   8                           4             version (u32) = 2 (1 read)
//!   12                          20            reserved, must be zero
//! 32                          data_len      chunks: the raw bytes of every
//!                                           chunk, back to back, in
//!                                           manifest order
//! manifest_offset             manifest_len  manifest: CBOR of `Manifest`
//!                                           (version 1: see [`v1`])
//! sig_offset                  sig_len       signature block (only when
//!                                           signed): CBOR of `SignatureBlock`
//! file_len - 48               48            trailer
//!   +0                          8             manifest_offset (u64)
//!   +8                          8             manifest_len (u64)
//!   +16                         8             sig_offset (u64), 0 if unsigned
//!   +24                         8             sig_len (u64), 0 if unsigned
//!   +32                         8             data_len (u64)
//!   +40                         8             magic  b"CKPTEND\0"
//! ```
//!
//! Every byte of the file belongs to exactly one region, with no gap:
//! `manifest_offset == 32 + data_len`; when signed,
//! `sig_offset == manifest_offset + manifest_len`, otherwise `sig_offset`
//! and `sig_len` are both 0; the file is exactly 48 bytes longer than the end
//! of the last region; the chunk lengths listed in the manifest add up to
//! `data_len`, and the offset of each chunk is implied by their order.
//! Anything else is malformed, including trailing bytes after the trailer
//! and trailing bytes after the CBOR item inside the manifest or signature
//! block region.
//!
//! # The manifest
//!
//! [`Manifest`]: metadata (version, image id, time, host, kernel, CPU
//! features, requester, digest algorithm), then
//!
//! * `spaces`: the byte spaces chunks fill ([`Space`]): a task's memory,
//!   and (later) a file's content;
//! * `chunks`: each `[space, addr, len, digest]` ([`ChunkEntry`], a CBOR
//!   array), sorted by space, then address, without overlap;
//! * `chunk_digest`: the chunk digest algorithm ([`ChunkDigest`]: BLAKE3
//!   in every image written now); absent, the chunks are SHA-256 like the
//!   rest (`digest_algorithm`);
//! * `files`: the file table, every open file description once; the fds of
//!   every task index it;
//! * `tasks`: the processes ([`ProcessState`](crate::model::ProcessState)),
//!   each with its threads. This version dumps and restores one.
//!
//! Version 1 had one `process` holding its own `descriptions` and chunks
//! `[vaddr, len, digest]`; [`v1`] reads it into this form.
//!
//! # What is signed
//!
//! The signature block names the algorithm, the key id and the public key,
//! and holds a signature over [`ckpt_keys::signed_message`]: the context
//! `"ckpt-image-v2\0"` (`"ckpt-image-v1\0"` for a version-1 image,
//! [`ckpt_keys::signed_message_v1`]: the header's version picks the
//! context, and a manifest of one version does not decode as the other's),
//! the algorithm name, `"\0"`, the key id and the SHA-256 digest of the
//! manifest bytes. The block may also carry a TPM2 quote over the manifest
//! digest ([`attest`]). The manifest carries the header's version again and
//! everything listed above. The header and trailer are
//! not signed but are fully determined by the manifest (version, lengths), so
//! changing them is detected as malformed. The chunk digest algorithm is
//! named in the manifest (`"sha256"`), so another can be added later without
//! changing the layout.
//!
//! # Limits
//!
//! Checked before anything is allocated or decoded (see [`crate::limits`]):
//!
//! | what | cap |
//! |---|---|
//! | manifest | 64 MiB ([`MAX_MANIFEST_LEN`](crate::limits::MAX_MANIFEST_LEN)) |
//! | signature block | 64 KiB ([`MAX_SIGBLOCK_LEN`](crate::limits::MAX_SIGBLOCK_LEN)) |
//! | one chunk | 8 MiB ([`MAX_CHUNK_LEN`](crate::limits::MAX_CHUNK_LEN)) |
//! | number of chunks | 2^20 ([`MAX_CHUNKS`](crate::limits::MAX_CHUNKS)) |
//! | CBOR nesting depth | 32 ([`MAX_CBOR_DEPTH`](crate::limits::MAX_CBOR_DEPTH)) |
//! | entries in one CBOR array or map | 2^20 ([`MAX_CBOR_COLLECTION_LEN`](crate::limits::MAX_CBOR_COLLECTION_LEN)) |
//! | memory of the decoded manifest | 256 MiB ([`MAX_MANIFEST_DECODED`](crate::limits::MAX_MANIFEST_DECODED)), charged before each allocation |
//! | strings, byte strings | bounded by the manifest length: CBOR is decoded from the in-memory manifest, never from the file |
//!
//! Every length and offset in the trailer is checked against the file's
//! length, with overflow-checked arithmetic, before it is used. A decoded
//! manifest is then checked by [`validate::validate`] (mappings, chunks and
//! their spaces, indexes between tasks, the file table and spaces, unique
//! pids and thread ids, counts, sizes, strings): an image that opens is one
//! restore accepts as well-formed. Tasks are capped at 4096
//! ([`MAX_TASKS`](crate::limits::MAX_TASKS)), the file table at 65,536
//! entries ([`MAX_FILES`](crate::limits::MAX_FILES)).
//!
//! # Trust
//!
//! Nothing in an image is trusted until [`ImageReader::open`] has
//! established its signature (or its absence), and chunk data is trusted
//! only once its digest has been checked: [`ImageReader::for_each_chunk`]
//! checks each chunk's digest after reading it into memory and before
//! handing it on, because the file may change between a first verification
//! and a restore. A signed image whose signature or any digest does not
//! verify is reported as tampered; there is no fallback to "unsigned".
//!
//! Errors are deliberately coarse toward the caller (the binaries report
//! every [`ImageError`] but [`ImageError::Io`] as "tampered or malformed"),
//! while each variant names the region for the audit log.
//!
//! # Writing atomically
//!
//! [`ImageWriter`] writes into a file the caller created (empty, under a
//! temporary name in the target directory) and fsyncs it in
//! [`ImageWriter::finish`]. The caller then renames it into place and
//! fsyncs the directory; on any error it removes the temporary file.

pub mod attest;
mod budget;
mod compress;
pub mod digest;
mod error;
pub mod fuzzing;
mod hashed_region;
mod layout;
mod manifest;
mod packer;
mod reader;
mod sign;
pub mod v1;
pub mod validate;
mod writer;
mod zeros;

#[cfg(test)]
mod tests;

pub use attest::{Attestation, AttestationBlock};
pub use compress::MAX_BLOCK_LEN;
pub use digest::{ChunkDigest, ChunkHasher};
pub use error::{ChunkStreamError, ImageError, Tamper};
pub use layout::{END_MAGIC, FORMAT_VERSION, FORMAT_VERSION_1, HEADER_LEN, MAGIC, TRAILER_LEN};
pub use manifest::{
    ChunkEntry, Compression, CpuFeatures, DigestAlgorithm, ImageContent, ImageMeta, Manifest,
    Requester, SignatureBlock, Space,
};
pub use reader::{ImageReader, ImageSource, SignatureStatus};
pub use sign::{ManifestSigner, SignError};
pub use writer::{FinishedImage, ImageWriter};

pub use crate::host::HostIdentity;
