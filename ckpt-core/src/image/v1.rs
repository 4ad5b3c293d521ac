//! Reading images of format version 1, into the version-2 [`Manifest`].
//!
//! Owns: the version-1 manifest's shape and its conversion. Trusts: nothing
//! (the bytes are decoded within the same budget as a version-2 manifest,
//! and the result goes through the same [`validate`](super::validate) as
//! any other).
//!
//! Version 1 differs from version 2 only in the manifest: one `process`
//! (not a list of `tasks`) holding its own open file descriptions as
//! `process.descriptions` (not a top-level `files` table), and chunks
//! encoded `[vaddr, len, digest]` (no space). Its signature is over the
//! context `"ckpt-image-v1\0"` ([`ckpt_keys::signed_message_v1`]). The
//! conversion is exact: the one process becomes `tasks[0]`, its
//! descriptions the file table (indexes unchanged), and every chunk goes
//! to space 0, the memory of task 0. `format_version` stays 1, so
//! `inspect` and the audit show what the file is. Nothing writes version 1.

use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::error::ImageError;
use super::manifest::{
    byte_array, bytes, decode, ByteBuf, ChunkEntry, CpuFeatures, DigestAlgorithm, Manifest,
    Requester, Space,
};
use crate::host::HostIdentity;
use crate::model::{OpenFile, ProcessState};

/// The version-1 manifest, but for the process's descriptions (decoded
/// separately by [`DescriptionsV1`]; the version-2 [`ProcessState`] has
/// no such field, and ignores it).
#[derive(Deserialize)]
struct ManifestV1 {
    format_version: u32,
    #[serde(with = "byte_array")]
    image_id: [u8; 16],
    created_unix: u64,
    host: HostIdentity,
    kernel_release: String,
    arch: String,
    cpu: CpuFeatures,
    #[serde(with = "bytes")]
    vdso_digest: Vec<u8>,
    requester: Requester,
    digest_algorithm: DigestAlgorithm,
    chunks: Vec<ChunkEntryV1>,
    process: ProcessState,
}

/// `process.descriptions` of a version-1 manifest (every other field is
/// skipped, not stored).
#[derive(Deserialize)]
struct DescriptionsV1 {
    process: ProcessDescriptionsV1,
}

#[derive(Deserialize)]
struct ProcessDescriptionsV1 {
    descriptions: Vec<OpenFile>,
}

/// A version-1 chunk entry, `[vaddr, len, digest]`.
struct ChunkEntryV1 {
    vaddr: u64,
    len: u64,
    digest: Vec<u8>,
}

impl<'de> Deserialize<'de> for ChunkEntryV1 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ChunkEntryV1;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a version-1 chunk entry [vaddr, len, digest]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ChunkEntryV1, A::Error> {
                let vaddr = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let len = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let digest: ByteBuf = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?;
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(4, &self));
                }
                Ok(ChunkEntryV1 {
                    vaddr,
                    len,
                    digest: digest.0,
                })
            }
        }
        d.deserialize_tuple(3, V)
    }
}

/// Decodes a version-1 manifest (each of its two passes within the
/// decoding budget) and converts it to the version-2 form.
pub(super) fn decode_v1(bytes: &[u8]) -> Result<Manifest, ImageError> {
    let m: ManifestV1 = decode(bytes, "manifest")?;
    let files = decode::<DescriptionsV1>(bytes, "manifest")?
        .process
        .descriptions;
    Ok(Manifest {
        format_version: m.format_version,
        image_id: m.image_id,
        created_unix: m.created_unix,
        host: m.host,
        kernel_release: m.kernel_release,
        arch: m.arch,
        cpu: m.cpu,
        vdso_digest: m.vdso_digest,
        requester: m.requester,
        digest_algorithm: m.digest_algorithm,
        spaces: vec![Space::Memory { task: 0 }],
        chunks: m
            .chunks
            .into_iter()
            .map(|c| ChunkEntry {
                space: 0,
                addr: c.vaddr,
                len: c.len,
                digest: c.digest,
                stored: None,
            })
            .collect(),
        files,
        tasks: vec![m.process],
        zombies: Vec::new(),
        chunk_digest: None,
        compression: None,
    })
}
