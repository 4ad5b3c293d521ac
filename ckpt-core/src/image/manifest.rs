//! The manifest and the signature block: their types, CBOR encoding and
//! bounded decoding.

use std::num::NonZeroU32;

use serde::de::{self, DeserializeOwned, IgnoredAny, SeqAccess, Visitor};
use serde::ser::SerializeTuple as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::budget::{Budgeted, OVER_BUDGET, TOO_MANY_ENTRIES};
use super::digest::ChunkDigest;
use super::error::{sanitize, ImageError};
use crate::host::HostIdentity;
use crate::limits::{MAX_CBOR_COLLECTION_LEN, MAX_CBOR_DEPTH, MAX_MANIFEST_DECODED};
use crate::model::{OpenFile, ProcessState, Zombie};

/// Everything an image says about itself and the processes in it; signed.
///
/// Format version 2 (see the [module doc](super) for the layout): the
/// processes are `tasks`, their open file descriptions one shared file
/// table `files`, and each chunk names the byte space it fills (`spaces`:
/// a task's memory, later also a file's content). An image of version 1
/// (one `process` holding its own descriptions, chunks by address) is read
/// into this same form by [`super::v1`], with `format_version` 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version; equals the header's.
    pub format_version: u32,
    /// Random id of this image (for one-shot restore and logs).
    #[serde(with = "byte_array")]
    pub image_id: [u8; 16],
    /// When the image was written, seconds since the Unix epoch.
    pub created_unix: u64,
    /// The host that wrote it.
    pub host: HostIdentity,
    /// `uname -r` of the kernel the process ran on.
    pub kernel_release: String,
    /// `uname -m`, e.g. `x86_64`.
    pub arch: String,
    /// CPU features restore depends on.
    pub cpu: CpuFeatures,
    /// Digest of the vdso the process had mapped (by `digest_algorithm`).
    #[serde(with = "bytes")]
    pub vdso_digest: Vec<u8>,
    /// Who ran the dump (real credentials).
    pub requester: Requester,
    /// The algorithm of the vdso digest and of file digests in the
    /// process state, and of every chunk digest unless `chunk_digest`
    /// names another.
    pub digest_algorithm: DigestAlgorithm,
    /// The byte spaces chunks fill; a chunk's `space` indexes this list.
    pub spaces: Vec<Space>,
    /// The chunks, in file order: sorted by space, then by address.
    #[serde(deserialize_with = "crate::model::shrunk")]
    pub chunks: Vec<ChunkEntry>,
    /// The file table: every open file description of every task, once.
    /// `FdState::description` of any task indexes this list, so a
    /// description shared between tasks is one entry.
    #[serde(deserialize_with = "crate::model::shrunk")]
    pub files: Vec<OpenFile>,
    /// The processes (at least one): the root of the dumped tree first,
    /// every other task after its parent (`ProcessState::ppid`).
    #[serde(deserialize_with = "crate::model::shrunk")]
    pub tasks: Vec<ProcessState>,
    /// Children of the image's tasks that had exited and were not reaped
    /// yet; none is left out of the encoding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zombies: Vec<Zombie>,
    /// The algorithm of the chunk digests, when it is not
    /// `digest_algorithm` (images written before this field existed have
    /// none: their chunks are SHA-256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_digest: Option<ChunkDigest>,
    /// How the chunks that say so (`ChunkEntry::stored`) are compressed;
    /// `None`: no chunk is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
}

impl Manifest {
    /// The first task: the only one in every image this version dumps or
    /// restores. `None` only for a manifest that fails
    /// [`validate`](super::validate::validate).
    pub fn first_task(&self) -> Option<&ProcessState> {
        self.tasks.first()
    }
}

/// A byte-addressed object whose content the image carries as chunks.
/// Encoded as a one-entry CBOR map naming the variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Space {
    /// The memory of `tasks[task]`: a chunk's `addr` is a virtual address
    /// in it, inside a mapping whose memory is saved.
    Memory {
        /// Index into [`Manifest::tasks`].
        task: u32,
    },
    /// The content of a memfd: a chunk's `addr` is an offset in the file.
    /// Descriptions (`OpenFileKind::Memfd`) and mappings (`Vma::space`)
    /// of it name this space.
    Memfd {
        /// The name given to `memfd_create` (without `memfd:`).
        name: String,
        /// Its size in bytes.
        size: u64,
        /// `F_GET_SEALS`, added once the content is written
        /// (`F_SEAL_SEAL` alone: created without `MFD_ALLOW_SEALING`).
        seals: u32,
        /// Its permission bits (`fchmod` on a memfd changes them); `None`
        /// in images written before they were recorded (left as created).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
    },
    /// The content of a regular file that was unlinked while open: a
    /// chunk's `addr` is an offset in the file. Recreated as an unnamed
    /// file (`O_TMPFILE`) in the directory `path` was in.
    Unlinked {
        /// Its path when it was unlinked (the kernel's, without
        /// ` (deleted)`).
        path: String,
        /// Its size in bytes.
        size: u64,
        /// Its permission bits.
        mode: u32,
        /// Its owner (uid, gid); `None` in images written before it was
        /// recorded (left as created). Given back only when the restore
        /// may (see `restore/files/saved.rs`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<(u32, u32)>,
    },
    /// Shared anonymous memory (`MAP_SHARED|MAP_ANONYMOUS`, the kernel's
    /// `/dev/zero (deleted)`) mapped by more than one process of the
    /// image: a chunk's `addr` is an offset in the object. Mappings
    /// (`Vma::space`) of it name this space; restore creates it once and
    /// every process maps that one object.
    Shmem {
        /// The object's size in bytes.
        size: u64,
    },
}

impl Space {
    /// The size of a file's content space; `None` for a task's memory.
    pub fn file_size(&self) -> Option<u64> {
        match self {
            Space::Memory { .. } => None,
            Space::Memfd { size, .. } | Space::Unlinked { size, .. } | Space::Shmem { size } => {
                Some(*size)
            }
        }
    }
}

/// CPU features restore depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuFeatures {
    /// XCR0: the xsave feature mask the state was saved with.
    pub xsave_features: u64,
    /// Size of the xsave area for those features.
    pub xsave_size: u32,
}

/// Real credentials of whoever ran the dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

/// A digest algorithm for chunk (and file) contents. Serialised as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DigestAlgorithm {
    /// SHA-256, 32-byte digests.
    #[serde(rename = "sha256")]
    Sha256,
}

impl DigestAlgorithm {
    /// Length of a digest.
    pub fn digest_len(&self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 32,
        }
    }

    /// The algorithm's name as written in the manifest.
    pub fn name(&self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
        }
    }
}

/// One chunk of data: the space and address it belongs at, how long it
/// is, its digest. Its offset in the file is implied by the order of the
/// chunk list. Encoded as a 4-element CBOR array `[space, addr, len,
/// digest]` to keep large chunk lists small, or 5 elements `[space, addr,
/// len, digest, stored]` for a compressed chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkEntry {
    /// Index into [`Manifest::spaces`].
    pub space: u32,
    /// Where in that space it belongs: a virtual address for
    /// [`Space::Memory`].
    pub addr: u64,
    /// Length in bytes in its space (1 ..=
    /// [`MAX_CHUNK_LEN`](crate::limits::MAX_CHUNK_LEN)): decompressed.
    pub len: u64,
    /// Digest of the bytes in the file (the compressed bytes of a
    /// compressed chunk), by the manifest's chunk digest algorithm.
    pub digest: Vec<u8>,
    /// A compressed chunk (by [`Manifest::compression`]): its length in
    /// the file (1 ..= `MAX_CHUNK_LEN`; 32 bits keep the entry, and the
    /// decoding budget of a full chunk list, as small as before).
    /// `None`: stored as it is.
    pub stored: Option<NonZeroU32>,
}

impl ChunkEntry {
    /// Bytes the chunk takes in the file.
    pub fn file_len(&self) -> u64 {
        self.stored.map_or(self.len, |s| u64::from(s.get()))
    }
}

/// How compressed chunks are compressed. Serialised as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Compression {
    /// The LZ4 block format, one block per chunk (chunks of at most
    /// 256 KiB). Read, never written since `lz4-blocks`.
    #[serde(rename = "lz4")]
    Lz4,
    /// Each compressed chunk is a run of blocks, each of at most
    /// [`MAX_BLOCK_LEN`](super::MAX_BLOCK_LEN) bytes of the
    /// chunk: an 8-byte header (the block's length in the chunk, then its
    /// length in the file, each a little-endian u32), then its bytes in
    /// the file, in the LZ4 block format when shorter, else as they are.
    /// A chunk of any length is one entry, and one digest over its bytes
    /// in the file (headers included), and is read a block at a time.
    #[serde(rename = "lz4-blocks")]
    Lz4Blocks,
}

impl Compression {
    /// The name as written in the manifest.
    pub fn name(&self) -> &'static str {
        match self {
            Compression::Lz4 => "lz4",
            Compression::Lz4Blocks => "lz4-blocks",
        }
    }
}

impl Serialize for ChunkEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(if self.stored.is_some() { 5 } else { 4 })?;
        t.serialize_element(&self.space)?;
        t.serialize_element(&self.addr)?;
        t.serialize_element(&self.len)?;
        t.serialize_element(&Bytes(&self.digest))?;
        if let Some(stored) = &self.stored {
            t.serialize_element(stored)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for ChunkEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ChunkEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a chunk entry [space, addr, len, digest] or [space, addr, len, digest, stored]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ChunkEntry, A::Error> {
                let space = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let addr = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let len = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?;
                let digest: ByteBuf = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(3, &self))?;
                let stored: Option<NonZeroU32> = seq.next_element()?;
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(6, &self));
                }
                Ok(ChunkEntry {
                    space,
                    addr,
                    len,
                    digest: digest.0,
                    stored,
                })
            }
        }
        d.deserialize_tuple(4, V)
    }
}

/// What the caller supplies when finishing an image; the writer adds the
/// format version, image id, creation time, digest algorithm and chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMeta {
    /// The host that writes the image.
    pub host: HostIdentity,
    /// `uname -r`.
    pub kernel_release: String,
    /// `uname -m`.
    pub arch: String,
    /// CPU features the saved state depends on.
    pub cpu: CpuFeatures,
    /// Digest (SHA-256) of the vdso the process had mapped.
    pub vdso_digest: Vec<u8>,
    /// Who ran the dump.
    pub requester: Requester,
}

/// The signature block: who signed, and the signature over
/// [`ckpt_keys::signed_message`] for the manifest digest.
///
/// Fields added later (a TPM quote, for example) will be
/// `#[serde(default)] Option<..>`, so that images without them stay valid;
/// unknown fields are ignored by this version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureBlock {
    /// Algorithm name ([`ckpt_keys::Algorithm::name`]).
    pub algorithm: String,
    /// Key id of `public_key` (16 bytes).
    #[serde(with = "bytes")]
    pub key_id: Vec<u8>,
    /// The signer's public key.
    #[serde(with = "bytes")]
    pub public_key: Vec<u8>,
    /// The signature.
    #[serde(with = "bytes")]
    pub signature: Vec<u8>,
    /// A TPM2 quote bound to the manifest digest, with the PCR values it
    /// covers (see [`super::attest`]). Absent when the dumping host has no
    /// attestation key (and then not written at all, so such images are
    /// byte-for-byte what earlier versions wrote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<super::attest::AttestationBlock>,
}

/// CBOR-encodes a value (manifest or signature block).
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out)
        .map_err(|_| ImageError::InvalidInput("the manifest cannot be encoded as CBOR"))?;
    Ok(out)
}

/// Decodes exactly one CBOR item of type `T` filling all of `bytes`, with
/// nesting limited to [`MAX_CBOR_DEPTH`], every list to
/// [`MAX_CBOR_COLLECTION_LEN`](crate::limits::MAX_CBOR_COLLECTION_LEN)
/// entries and the memory the value takes to
/// [`MAX_MANIFEST_DECODED`] (see [`super::budget`]).
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    region: &'static str,
) -> Result<T, ImageError> {
    let mut rest = bytes;
    let value = decode_item(&mut rest, region)?;
    if !rest.is_empty() {
        return Err(trailing_bytes(region, rest.len() as u64));
    }
    Ok(value)
}

/// Decodes one CBOR item of type `T` from `reader`, within the same limits
/// as [`decode`]; whatever follows the item is left unread (the caller
/// checks that nothing does). An error of `reader` comes back as
/// [`ImageError::Decode`]: a reader that fails should keep its own error
/// for the caller to prefer.
///
/// The reader is a trait object so that the decoder of each type is
/// compiled once for every kind of reader (the manifest's decoder is a
/// large part of the helpers' code, which counts in their memory).
pub(crate) fn decode_item<T: DeserializeOwned>(
    reader: &mut dyn std::io::Read,
    region: &'static str,
) -> Result<T, ImageError> {
    ciborium::de::from_reader_with_recursion_limit::<Budgeted<T>, _>(reader, MAX_CBOR_DEPTH)
        .map(|v| v.0)
        .map_err(|e| match e {
            ciborium::de::Error::Semantic(_, m) if m == OVER_BUDGET => ImageError::DecodeLimit {
                region,
                what: format!(
                    "needs more than {} MiB of memory to decode",
                    MAX_MANIFEST_DECODED >> 20
                ),
            },
            ciborium::de::Error::Semantic(_, m) if m == TOO_MANY_ENTRIES => {
                ImageError::DecodeLimit {
                    region,
                    what: format!("has a list of more than {MAX_CBOR_COLLECTION_LEN} entries"),
                }
            }
            e => ImageError::Decode {
                region,
                detail: sanitize(&e.to_string()),
            },
        })
}

/// The error for `len` bytes left over after a region's CBOR item.
pub(crate) fn trailing_bytes(region: &'static str, len: u64) -> ImageError {
    ImageError::Decode {
        region,
        detail: format!("{len} bytes after the CBOR item"),
    }
}

/// What the dump engine hands the writer besides the chunks: the byte
/// spaces the chunks named, the file table and the processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageContent {
    /// See [`Manifest::spaces`].
    pub spaces: Vec<Space>,
    /// See [`Manifest::files`].
    pub files: Vec<OpenFile>,
    /// See [`Manifest::tasks`].
    pub tasks: Vec<ProcessState>,
    /// See [`Manifest::zombies`].
    pub zombies: Vec<Zombie>,
}

/// A byte string (CBOR major type 2), borrowed for serialising.
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// A byte string, owned, for deserialising. Only CBOR byte strings are
/// accepted (not arrays of integers).
pub(super) struct ByteBuf(pub(super) Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// `#[serde(with = "bytes")]` for `Vec<u8>` fields: a CBOR byte string.
pub(super) mod bytes {
    use super::{ByteBuf, Bytes};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        Bytes(v).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        ByteBuf::deserialize(d).map(|b| b.0)
    }
}

/// `#[serde(with = "byte_array")]` for `[u8; N]` fields: a CBOR byte string
/// of exactly N bytes.
pub(super) mod byte_array {
    use super::{ByteBuf, Bytes};
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        Bytes(v).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let b = ByteBuf::deserialize(d)?;
        let len = b.0.len();
        b.0.try_into()
            .map_err(|_| D::Error::invalid_length(len, &"a fixed-length byte string"))
    }
}
