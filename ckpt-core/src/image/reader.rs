//! Bounded image reader and chunk verification.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};

use ckpt_keys::{Algorithm, PublicKey, VerifyError};
use sha2::{Digest as _, Sha256};

use super::attest::{self, Attestation};
use super::compress::{self, BLOCK_HEADER_LEN, MAX_BLOCK_LEN};
use super::digest::{ChunkHasher, CHUNK_DIGEST_LEN};
use super::error::{sanitize, ChunkStreamError, ImageError, Tamper};
use super::hashed_region::HashedRegion;
use super::layout::{check_header, Trailer, FORMAT_VERSION_1, HEADER_LEN, TRAILER_LEN};
use super::manifest::{
    decode, decode_item, trailing_bytes, ChunkEntry, Compression, Manifest, SignatureBlock,
};
use crate::limits::{MAX_CHUNKS, MAX_CHUNK_LEN};
use crate::progress::Observer;

/// Threads used by [`ImageReader::verify_chunks`].
const VERIFY_THREADS: usize = 2;
/// Block size in which [`ImageReader::verify_chunks`] reads and hashes.
/// (512 KiB: a read of that size costs the disk no more requests than a
/// larger one with read-ahead, and it holds a stored and a decoded block
/// of a compressed chunk, which verification decodes too.)
const VERIFY_BLOCK_LEN: usize = 2 * MAX_BLOCK_LEN;

/// Where an image is read from: positional reads, shared between threads.
/// Implemented for [`File`] and for in-memory images.
pub trait ImageSource: Sync {
    /// Fills `buf` from `offset`; an `UnexpectedEof` error if the source
    /// ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Current length of the source.
    fn source_len(&self) -> io::Result<u64>;
    /// A hint that `len` bytes from `offset` will be read soon (a file
    /// starts reading them from disk). Nothing for a source in memory.
    fn will_need(&self, _offset: u64, _len: u64) {}
}

impl ImageSource for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
    fn source_len(&self) -> io::Result<u64> {
        self.metadata().map(|m| m.len())
    }
    fn will_need(&self, offset: u64, len: u64) {
        use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
        use std::os::fd::AsRawFd;
        if let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) {
            // Only a hint: an error changes nothing but speed.
            let _ = posix_fadvise(
                self.as_raw_fd(),
                offset,
                len,
                PosixFadviseAdvice::POSIX_FADV_WILLNEED,
            );
        }
    }
}

fn slice_read_exact_at(src: &[u8], buf: &mut [u8], offset: u64) -> io::Result<()> {
    let range = usize::try_from(offset)
        .ok()
        .and_then(|start| Some(start..start.checked_add(buf.len())?))
        .and_then(|r| src.get(r))
        .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    buf.copy_from_slice(range);
    Ok(())
}

impl ImageSource for &[u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        slice_read_exact_at(self, buf, offset)
    }
    fn source_len(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

impl ImageSource for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        slice_read_exact_at(self, buf, offset)
    }
    fn source_len(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

/// Whether an opened image is signed, and by which key. A signed image's
/// signature has been verified by [`ImageReader::open`]; whether the key is
/// trusted is the policy's question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureStatus {
    /// No signature block.
    Unsigned,
    /// Signed by `key`, and the signature verifies.
    Signed {
        /// The signer's public key (from the signature block).
        key: PublicKey,
    },
}

/// An opened image: header, trailer, manifest and signature checked; chunk
/// data not yet read. See the module doc for what is trusted when.
pub struct ImageReader<S = File> {
    src: S,
    manifest: Manifest,
    manifest_digest: [u8; 32],
    signature: SignatureStatus,
    signature_block: Option<SignatureBlock>,
    /// The verified TPM quote, when the signature block has one.
    attestation: Option<Attestation>,
    /// File offset of each chunk, in manifest order.
    chunk_offsets: Vec<u64>,
    /// Told of the bytes of chunk data read and checked.
    progress: Option<Observer>,
}

/// Reads `buf.len()` bytes at `offset`, mapping a short source to
/// [`ImageError::Truncated`].
pub(super) fn read_at<S: ImageSource + ?Sized>(
    src: &S,
    buf: &mut [u8],
    offset: u64,
    op: &'static str,
) -> Result<(), ImageError> {
    src.read_exact_at(buf, offset).map_err(|source| {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            ImageError::Truncated { offset }
        } else {
            ImageError::Io { op, source }
        }
    })
}

/// A length already checked against a cap and the file's length, as usize.
fn to_usize(len: u64) -> Result<usize, ImageError> {
    usize::try_from(len).map_err(|_| ImageError::Malformed("length does not fit in memory"))
}

impl ImageReader<File> {
    /// Opens an image file: see [`ImageReader::from_source`].
    pub fn open(file: File) -> Result<Self, ImageError> {
        Self::from_source(file)
    }
}

impl<S: ImageSource> ImageReader<S> {
    /// Reads and checks the header and trailer, reads the manifest and the
    /// signature block (bounded by the caps), verifies the signature when
    /// there is one, then decodes the manifest (within its memory budget)
    /// and checks it against the layout and [`super::validate`]. Chunk data
    /// is not read.
    pub fn from_source(src: S) -> Result<Self, ImageError> {
        let file_len = src.source_len().map_err(|source| ImageError::Io {
            op: "get the image length",
            source,
        })?;
        if file_len < HEADER_LEN + TRAILER_LEN {
            return Err(ImageError::Truncated { offset: file_len });
        }
        let mut header = [0u8; HEADER_LEN as usize];
        read_at(&src, &mut header, 0, "read the header")?;
        let version = check_header(&header)?;
        let mut trailer_bytes = [0u8; TRAILER_LEN as usize];
        read_at(
            &src,
            &mut trailer_bytes,
            file_len - TRAILER_LEN,
            "read the trailer",
        )?;
        let trailer = Trailer::decode(&trailer_bytes)?;
        trailer.check(file_len)?;

        // Both lengths are now within their caps and within the file.
        let signature_block = if trailer.sig_len == 0 {
            None
        } else {
            let mut sig_bytes = vec![0u8; to_usize(trailer.sig_len)?];
            read_at(
                &src,
                &mut sig_bytes,
                trailer.sig_offset,
                "read the signature block",
            )?;
            Some(decode::<SignatureBlock>(&sig_bytes, "signature block")?)
        };

        // The manifest is decoded as it is read and hashed (one pass, never
        // held whole). Nothing acts on it before the signature over that
        // hash verifies: a manifest that does not decode under a signature
        // that does not verify is reported as tampered, like any other.
        let (decoded, manifest_digest) = if version == FORMAT_VERSION_1 {
            let mut manifest_bytes = vec![0u8; to_usize(trailer.manifest_len)?];
            read_at(
                &src,
                &mut manifest_bytes,
                trailer.manifest_offset,
                "read the manifest",
            )?;
            let digest: [u8; 32] = Sha256::digest(&manifest_bytes).into();
            (super::v1::decode_v1(&manifest_bytes), digest)
        } else {
            let mut region = HashedRegion::new(
                &src,
                trailer.manifest_offset,
                trailer.manifest_len,
                "read the manifest",
            );
            let decoded = decode_item::<Manifest>(&mut region, "manifest");
            let decoded = match region.unconsumed() {
                0 => decoded,
                left => decoded.and(Err(trailing_bytes("manifest", left))),
            };
            let decoded = match decoded {
                // Unsigned: no signature to check the rest of the bytes against.
                Err(e) if signature_block.is_none() => {
                    return Err(region.take_failure().unwrap_or(e))
                }
                d => d,
            };
            (decoded, region.finish()?)
        };

        let signature = match &signature_block {
            None => SignatureStatus::Unsigned,
            Some(block) => SignatureStatus::Signed {
                key: verify_signature(block, &manifest_digest, version)?,
            },
        };
        let attestation = match signature_block
            .as_ref()
            .and_then(|b| b.attestation.as_ref())
        {
            None => None,
            Some(a) => Some(
                attest::verify_block(a, &manifest_digest)
                    .map_err(|e| ImageError::Tampered(Tamper::Attestation(e)))?,
            ),
        };

        let manifest = decoded?;
        let chunk_offsets = check_manifest(&manifest, trailer.data_len, version)?;
        super::validate::validate(&manifest)?;
        Ok(ImageReader {
            src,
            manifest,
            manifest_digest,
            signature,
            signature_block,
            attestation,
            chunk_offsets,
            progress: None,
        })
    }

    /// The manifest. Signed (if [`signature`](Self::signature) says so), but
    /// chunk data is only known good after verification.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// SHA-256 of the exact manifest bytes.
    pub fn manifest_digest(&self) -> [u8; 32] {
        self.manifest_digest
    }

    /// Whether the image is signed, and by which key (already verified).
    pub fn signature(&self) -> SignatureStatus {
        self.signature.clone()
    }

    /// The signature block as read (for logs and later attestation data).
    pub fn signature_block(&self) -> Option<&SignatureBlock> {
        self.signature_block.as_ref()
    }

    /// The image's TPM quote, verified by [`open`](ImageReader::open): bound
    /// to this manifest and signed by the attestation key it names. Whether
    /// that key is trusted is the policy's question.
    pub fn attestation(&self) -> Option<&Attestation> {
        self.attestation.as_ref()
    }

    /// Tells `observer` the bytes of chunk data read and checked from now
    /// on ([`verify_chunks`](Self::verify_chunks) and
    /// [`read_chunk`](Self::read_chunk)), from the thread that read them.
    pub fn observe(&mut self, observer: Observer) {
        self.progress = Some(observer);
    }

    /// The total length of the chunk data.
    pub fn data_len(&self) -> u64 {
        self.manifest
            .chunks
            .iter()
            .fold(0u64, |n, c| n.saturating_add(c.len))
    }

    fn advance(&self, bytes: u64) {
        if let Some(observe) = &self.progress {
            observe(bytes);
        }
    }

    /// The source the image is read from.
    pub fn source(&self) -> &S {
        &self.src
    }

    /// Gives the source back.
    pub fn into_source(self) -> S {
        self.src
    }

    /// Reads every chunk and checks its digest, on two threads (each reads
    /// its own contiguous half of the data in 512 KiB blocks). A
    /// compressed chunk's blocks are decoded too: an image that verifies
    /// is one whose every chunk reads. Memory used
    /// does not depend on the image size.
    pub fn verify_chunks(&self) -> Result<(), ImageError> {
        let chunks = &self.manifest.chunks;
        let split = split_point(chunks, VERIFY_THREADS);
        let stop = AtomicBool::new(false);
        let ranges: Vec<(usize, usize)> = split
            .windows(2)
            .map(|w| (w[0], w[1]))
            .filter(|(a, b)| a < b)
            .collect();
        let results: Vec<Result<(), ImageError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = ranges
                .iter()
                .map(|&(first, end)| {
                    let stop = &stop;
                    scope.spawn(move || {
                        let r = self.verify_range(first, end, stop);
                        if r.is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        r
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or(Err(ImageError::Malformed("a verification thread panicked")))
                })
                .collect()
        });
        // Report the first failing chunk in file order; a thread that
        // stopped because another failed returns Ok.
        results.into_iter().collect()
    }

    /// Verifies chunks `first..end`, stopping early when `stop` is set.
    fn verify_range(&self, first: usize, end: usize, stop: &AtomicBool) -> Result<(), ImageError> {
        let mut buf = vec![0u8; VERIFY_BLOCK_LEN];
        for index in first..end {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let (entry, offset) = self.chunk(index)?;
            if entry.stored.is_some() && self.manifest.compression == Some(Compression::Lz4) {
                self.load_compressed(index, entry, offset)?;
                continue;
            }
            if entry.stored.is_some() && self.manifest.compression == Some(Compression::Lz4Blocks) {
                let decoded = self.stream_blocks(index, entry, offset, &mut buf, |_, _| {
                    Ok::<(), std::convert::Infallible>(())
                });
                match decoded {
                    Ok(_) => continue,
                    Err(ChunkStreamError::Image(e)) => return Err(e),
                    Err(ChunkStreamError::Callback(never)) => match never {},
                }
            }
            let mut hasher = ChunkHasher::for_manifest(&self.manifest);
            let mut done = 0u64;
            let stored = entry.file_len();
            while done < stored {
                let n = to_usize((stored - done).min(VERIFY_BLOCK_LEN as u64))?;
                let block = &mut buf[..n];
                read_at(&self.src, block, offset + done, "read chunk data")?;
                hasher.update(&*block);
                done += n as u64;
                self.advance(n as u64);
            }
            if hasher.finalize_reset()[..] != entry.digest[..] {
                return Err(ImageError::Tampered(Tamper::Chunk {
                    index,
                    vaddr: entry.addr,
                }));
            }
        }
        Ok(())
    }

    fn chunk(&self, index: usize) -> Result<(&ChunkEntry, u64), ImageError> {
        match (
            self.manifest.chunks.get(index),
            self.chunk_offsets.get(index),
        ) {
            (Some(e), Some(&o)) => Ok((e, o)),
            _ => Err(ImageError::InvalidInput("chunk index out of range")),
        }
    }

    /// A compressed chunk: reads its stored bytes, checks their digest,
    /// and returns them decompressed (exactly `entry.len` bytes). Memory:
    /// its stored and its decompressed length, each at most
    /// [`MAX_CHUNK_LEN`] (checked when the image was opened).
    fn load_compressed(
        &self,
        index: usize,
        entry: &ChunkEntry,
        offset: u64,
    ) -> Result<Vec<u8>, ImageError> {
        let alg = self.manifest.compression.ok_or(ImageError::Malformed(
            "a chunk is compressed, but the manifest names no compression",
        ))?;
        let mut stored = vec![0u8; to_usize(entry.file_len())?];
        read_at(&self.src, &mut stored, offset, "read chunk data")?;
        let mut hasher = ChunkHasher::for_manifest(&self.manifest);
        hasher.update(&stored);
        if hasher.finalize_reset()[..] != entry.digest[..] {
            return Err(ImageError::Tampered(Tamper::Chunk {
                index,
                vaddr: entry.addr,
            }));
        }
        let mut raw = vec![0u8; to_usize(entry.len)?];
        match alg {
            Compression::Lz4 => compress::decompress(alg, &stored, &mut raw)?,
            // Read a block at a time by `stream_blocks`, never here.
            Compression::Lz4Blocks => {
                return Err(ImageError::InvalidInput(
                    "an lz4-blocks chunk is read a block at a time",
                ))
            }
        }
        Ok(raw)
    }

    /// Reads chunk `index` into `buf` (resized to its length) and checks its
    /// digest (and decompresses it). Returns its entry.
    pub fn read_chunk(&self, index: usize, buf: &mut Vec<u8>) -> Result<&ChunkEntry, ImageError> {
        let (entry, offset) = self.chunk(index)?;
        if entry.stored.is_some() && self.manifest.compression == Some(Compression::Lz4Blocks) {
            // Decoded into `buf` a block at a time (the one block parser,
            // `stream_blocks`); `buf` is only good once that returns Ok.
            buf.clear();
            buf.resize(to_usize(entry.len)?, 0);
            let mut scratch = vec![0u8; 2 * MAX_BLOCK_LEN];
            let filled = self.stream_blocks(index, entry, offset, &mut scratch, |off, bytes| {
                let at = usize::try_from(off).map_err(|_| ())?;
                buf.get_mut(at..at + bytes.len())
                    .ok_or(())?
                    .copy_from_slice(bytes);
                Ok(())
            });
            return match filled {
                Ok(e) => Ok(e),
                Err(ChunkStreamError::Image(e)) => Err(e),
                Err(ChunkStreamError::Callback(())) => Err(blocks_short()),
            };
        }
        if entry.stored.is_some() {
            *buf = self.load_compressed(index, entry, offset)?;
            self.advance(entry.len);
            return Ok(entry);
        }
        buf.clear();
        buf.resize(to_usize(entry.len)?, 0);
        read_at(&self.src, buf, offset, "read chunk data")?;
        let mut hasher = ChunkHasher::for_manifest(&self.manifest);
        hasher.update(&buf[..]);
        if hasher.finalize_reset()[..] != entry.digest[..] {
            return Err(ImageError::Tampered(Tamper::Chunk {
                index,
                vaddr: entry.addr,
            }));
        }
        self.advance(entry.len);
        Ok(entry)
    }

    /// Starts reading chunk `index`'s stored bytes from disk ahead of
    /// [`Self::stream_chunk`] (a hint: nothing is checked or handed out;
    /// an index out of range is ignored). Cold, the disk then has the next
    /// chunks' requests queued while this one is hashed and written.
    pub fn prefetch_chunk(&self, index: usize) {
        if let Ok((entry, offset)) = self.chunk(index) {
            self.src.will_need(offset, entry.file_len());
        }
    }

    /// Reads chunk `index` in pieces of at most `buf.len()` bytes, hands
    /// each piece to `f` (its offset in the chunk and its bytes) as soon as
    /// it is read, and checks the chunk's digest at the end: each byte is
    /// read and hashed once, in memory of `buf`'s size whatever the
    /// chunk's. `f` sees bytes *before* the digest is checked: it must
    /// write them only where a digest failure throws them away (a stopped
    /// process that is killed when this returns an error). Returns the
    /// chunk's entry.
    pub fn stream_chunk<E>(
        &self,
        index: usize,
        buf: &mut [u8],
        mut f: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<&ChunkEntry, ChunkStreamError<E>> {
        let (entry, offset) = self.chunk(index).map_err(ChunkStreamError::Image)?;
        if buf.is_empty() {
            return Err(ChunkStreamError::Image(ImageError::InvalidInput(
                "empty chunk buffer",
            )));
        }
        if entry.stored.is_some() && self.manifest.compression == Some(Compression::Lz4Blocks) {
            return self.stream_blocks(index, entry, offset, buf, f);
        }
        if entry.stored.is_some() {
            // A chunk compressed whole is checked whole, then
            // decompressed: nothing unchecked is decompressed or handed
            // over.
            let raw = self
                .load_compressed(index, entry, offset)
                .map_err(ChunkStreamError::Image)?;
            f(0, &raw).map_err(ChunkStreamError::Callback)?;
            self.advance(entry.len);
            return Ok(entry);
        }
        let mut hasher = ChunkHasher::for_manifest(&self.manifest);
        let mut done = 0u64;
        while done < entry.len {
            let n = to_usize((entry.len - done).min(buf.len() as u64))
                .map_err(ChunkStreamError::Image)?;
            let block = &mut buf[..n];
            read_at(&self.src, block, offset + done, "read chunk data")
                .map_err(ChunkStreamError::Image)?;
            hasher.update(block);
            f(done, block).map_err(ChunkStreamError::Callback)?;
            done += n as u64;
            self.advance(n as u64);
        }
        if hasher.finalize_reset()[..] != entry.digest[..] {
            return Err(ChunkStreamError::Image(ImageError::Tampered(
                Tamper::Chunk {
                    index,
                    vaddr: entry.addr,
                },
            )));
        }
        Ok(entry)
    }

    /// [`stream_chunk`](Self::stream_chunk) for a chunk of
    /// [`Compression::Lz4Blocks`]: each block is read, hashed, decoded
    /// and handed to `f` (its offset in the chunk and its bytes) in turn;
    /// the digest is checked at the end. A block that does not decode, or
    /// headers that do not add up to the entry's lengths, are reported as
    /// tampered when the chunk's digest does not match either (the rest
    /// of its bytes are then hashed first), else as malformed. Memory: one
    /// stored and one decoded block, in `buf` when it holds both, else
    /// allocated for the chunk.
    fn stream_blocks<'s, E>(
        &'s self,
        index: usize,
        entry: &'s ChunkEntry,
        offset: u64,
        buf: &mut [u8],
        mut f: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<&'s ChunkEntry, ChunkStreamError<E>> {
        let mut own = Vec::new();
        let scratch: &mut [u8] = if buf.len() >= 2 * MAX_BLOCK_LEN {
            buf
        } else {
            own.resize(2 * MAX_BLOCK_LEN, 0);
            &mut own
        };
        let (stored_buf, out_buf) = scratch.split_at_mut(MAX_BLOCK_LEN);
        let mut hasher = ChunkHasher::for_manifest(&self.manifest);
        let total = entry.file_len();
        let (mut pos, mut done) = (0u64, 0u64);
        let tampered = || {
            ChunkStreamError::Image(ImageError::Tampered(Tamper::Chunk {
                index,
                vaddr: entry.addr,
            }))
        };
        while pos < total {
            let got = read_block(
                &self.src,
                (offset, &mut pos, total),
                entry.len - done,
                &mut hasher,
                stored_buf,
                out_buf,
            );
            match got {
                Ok(bytes) => {
                    f(done, bytes).map_err(ChunkStreamError::Callback)?;
                    done += bytes.len() as u64;
                    self.advance(bytes.len() as u64);
                }
                Err(e @ ImageError::Io { .. }) => return Err(ChunkStreamError::Image(e)),
                Err(e) => {
                    // Tampered, or written so? The digest says.
                    self.hash_rest(&mut hasher, offset + pos, total - pos, out_buf)
                        .map_err(ChunkStreamError::Image)?;
                    if hasher.finalize_reset()[..] != entry.digest[..] {
                        return Err(tampered());
                    }
                    return Err(ChunkStreamError::Image(e));
                }
            }
        }
        if hasher.finalize_reset()[..] != entry.digest[..] {
            return Err(tampered());
        }
        if done != entry.len {
            return Err(ChunkStreamError::Image(blocks_short()));
        }
        Ok(entry)
    }

    /// Hashes `len` bytes of the file from `offset`, read in pieces of
    /// `buf`'s length.
    fn hash_rest(
        &self,
        hasher: &mut ChunkHasher,
        offset: u64,
        len: u64,
        buf: &mut [u8],
    ) -> Result<(), ImageError> {
        let mut done = 0u64;
        while done < len {
            let n = to_usize((len - done).min(buf.len() as u64))?;
            let piece = buf.get_mut(..n).unwrap_or_default();
            read_at(&self.src, piece, offset + done, "read chunk data")?;
            hasher.update(&*piece);
            done += n as u64;
        }
        Ok(())
    }

    /// Calls `f` with each chunk's entry and data, in order. Each chunk is
    /// read into one reused buffer and its digest checked before `f` sees
    /// it, so a file changed after [`verify_chunks`](Self::verify_chunks)
    /// is still caught. Memory: one chunk (at most 8 MiB).
    pub fn for_each_chunk<E>(
        &self,
        mut f: impl FnMut(&ChunkEntry, &[u8]) -> Result<(), E>,
    ) -> Result<(), ChunkStreamError<E>> {
        let mut buf = Vec::new();
        for index in 0..self.manifest.chunks.len() {
            let entry = self
                .read_chunk(index, &mut buf)
                .map_err(ChunkStreamError::Image)?;
            f(entry, &buf).map_err(ChunkStreamError::Callback)?;
        }
        Ok(())
    }
}

fn blocks_short() -> ImageError {
    ImageError::Malformed("a compressed chunk's blocks do not add up to its length")
}

/// Reads the next block of a [`Compression::Lz4Blocks`] chunk at
/// `offset` (the chunk's), `pos` (the block's offset in it, moved past
/// it) of the chunk's `total` bytes in the file, with at most `left`
/// bytes of the chunk still to come: hashes its header and stored bytes
/// (read into `stored_buf`) and returns its bytes of the chunk (decoded
/// into `out_buf` when compressed).
fn read_block<'a, S: ImageSource>(
    src: &S,
    (offset, pos, total): (u64, &mut u64, u64),
    left: u64,
    hasher: &mut ChunkHasher,
    stored_buf: &'a mut [u8],
    out_buf: &'a mut [u8],
) -> Result<&'a [u8], ImageError> {
    let mut head = [0u8; BLOCK_HEADER_LEN];
    if total - *pos < BLOCK_HEADER_LEN as u64 {
        return Err(blocks_short());
    }
    read_at(src, &mut head, offset + *pos, "read chunk data")?;
    hasher.update(&head);
    *pos += BLOCK_HEADER_LEN as u64;
    let (len, n) = compress::parse_block_header(head)?;
    if total - *pos < n as u64 || left < len as u64 {
        return Err(blocks_short());
    }
    let stored = stored_buf.get_mut(..n).ok_or_else(blocks_short)?;
    read_at(src, stored, offset + *pos, "read chunk data")?;
    hasher.update(&*stored);
    *pos += n as u64;
    let out = out_buf.get_mut(..len).ok_or_else(blocks_short)?;
    compress::decode_block(Compression::Lz4Blocks, stored, out)
}

/// Checks the signature block and the signature over the manifest digest
/// (in the signed message of the header's format `version`); returns the
/// signer's key.
fn verify_signature(
    block: &SignatureBlock,
    digest: &[u8; 32],
    version: u32,
) -> Result<PublicKey, ImageError> {
    let alg: Algorithm = block
        .algorithm
        .parse()
        .map_err(|_| ImageError::UnsupportedSignature {
            algorithm: sanitize(&block.algorithm),
        })?;
    if block.key_id.len() != 16 {
        return Err(ImageError::Malformed(
            "signature block key_id is not 16 bytes",
        ));
    }
    let key = PublicKey::from_parts(alg, &block.public_key)
        .map_err(|_| ImageError::Tampered(Tamper::PublicKey))?;
    if key.key_id().0[..] != block.key_id[..] {
        return Err(ImageError::Tampered(Tamper::KeyId));
    }
    let verified = if version == FORMAT_VERSION_1 {
        key.verify_manifest_digest_v1(digest, &block.signature)
    } else {
        key.verify_manifest_digest(digest, &block.signature)
    };
    match verified {
        Ok(()) => Ok(key),
        Err(VerifyError::UnsupportedAlgorithm(a)) => Err(ImageError::UnsupportedSignature {
            algorithm: a.name().to_owned(),
        }),
        Err(_) => Err(ImageError::Tampered(Tamper::Signature)),
    }
}

/// Checks the decoded manifest against the header (its `version`) and
/// trailer and the caps; returns each chunk's file offset.
fn check_manifest(m: &Manifest, data_len: u64, version: u32) -> Result<Vec<u64>, ImageError> {
    if m.format_version != version {
        return Err(ImageError::Malformed(
            "manifest format_version differs from the header",
        ));
    }
    let count = m.chunks.len() as u64;
    if count > MAX_CHUNKS {
        return Err(ImageError::TooLarge {
            what: "chunk count",
            len: count,
            cap: MAX_CHUNKS,
        });
    }
    let digest_len = CHUNK_DIGEST_LEN;
    let mut offsets = Vec::with_capacity(m.chunks.len());
    let mut offset = HEADER_LEN;
    for c in &m.chunks {
        if c.len == 0 {
            return Err(ImageError::Malformed("a chunk has length zero"));
        }
        if c.len > MAX_CHUNK_LEN {
            return Err(ImageError::TooLarge {
                what: "chunk",
                len: c.len,
                cap: MAX_CHUNK_LEN,
            });
        }
        if c.digest.len() != digest_len {
            return Err(ImageError::Malformed(
                "a chunk digest has the wrong length for the digest algorithm",
            ));
        }
        if c.addr.checked_add(c.len).is_none() {
            return Err(ImageError::Malformed("a chunk's address range overflows"));
        }
        if let Some(stored) = c.stored.map(|s| u64::from(s.get())) {
            if m.compression.is_none() {
                return Err(ImageError::Malformed(
                    "a chunk is compressed, but the manifest names no compression",
                ));
            }
            if stored > MAX_CHUNK_LEN {
                return Err(ImageError::TooLarge {
                    what: "compressed chunk",
                    len: stored,
                    cap: MAX_CHUNK_LEN,
                });
            }
        }
        offsets.push(offset);
        offset = offset
            .checked_add(c.file_len())
            .ok_or(ImageError::Malformed("chunk lengths overflow"))?;
    }
    if offset - HEADER_LEN != data_len {
        return Err(ImageError::Malformed(
            "chunk lengths do not add up to data_len",
        ));
    }
    Ok(offsets)
}

/// Splits chunk indices into `parts` contiguous ranges of about equal byte
/// counts; returns the `parts + 1` boundaries.
fn split_point(chunks: &[ChunkEntry], parts: usize) -> Vec<usize> {
    let total: u64 = chunks.iter().map(|c| c.file_len()).sum();
    let parts = parts.max(1);
    let mut bounds = vec![0usize];
    let mut acc = 0u64;
    let mut next = 1usize;
    for (i, c) in chunks.iter().enumerate() {
        while next < parts && acc >= total / parts as u64 * next as u64 {
            bounds.push(i);
            next += 1;
        }
        acc += c.file_len();
    }
    while bounds.len() <= parts {
        bounds.push(chunks.len());
    }
    bounds
}
