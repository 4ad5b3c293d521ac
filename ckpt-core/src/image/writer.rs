//! Streaming image writer.

use std::fs::File;
use std::io::{self, Seek as _, Write as _};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use super::attest;
use super::error::ImageError;
use super::layout::{encode_header, Trailer, FORMAT_VERSION, HEADER_LEN, TRAILER_LEN};
use super::manifest::{
    encode, ChunkEntry, DigestAlgorithm, ImageContent, ImageMeta, Manifest, SignatureBlock,
};
use super::sign::{ManifestSigner, SignError};
use crate::limits::{MAX_CHUNKS, MAX_CHUNK_LEN, MAX_MANIFEST_LEN, MAX_SIGBLOCK_LEN};
use crate::progress::Observer;

/// Size of each write buffer handed to the I/O thread.
const WRITE_BUFFER_LEN: usize = 4 << 20;
/// Data written between two background fsyncs.
const SYNC_STEP: usize = 64 << 20;
/// Number of write buffers (memory used: this many times
/// [`WRITE_BUFFER_LEN`]).
const WRITE_BUFFERS: usize = 4;

/// Writes an image: [`new`](ImageWriter::new) writes the header,
/// [`write_chunk`](ImageWriter::write_chunk) appends and hashes memory
/// chunks, [`finish`](ImageWriter::finish) writes the manifest, signature
/// block and trailer and fsyncs. After an error the writer refuses further
/// use; the caller removes the file.
///
/// Three stages overlap: the caller's thread copies chunk data into 4 MiB
/// buffers, a hashing thread computes each chunk's digest, and an I/O thread
/// writes the buffers to the file. SHA-256 and the page-cache writes then
/// run on different cores. At most [`WRITE_BUFFERS`] buffers exist.
pub struct ImageWriter {
    io: Option<Pipeline>,
    /// The buffer being filled (capacity [`WRITE_BUFFER_LEN`]).
    current: Vec<u8>,
    /// How `current` divides into pieces of chunks.
    spans: Vec<Span>,
    /// Buffers allocated so far (at most [`WRITE_BUFFERS`]).
    allocated: usize,
    /// Chunk entries; digests are filled in from the hashing thread.
    chunks: Vec<ChunkEntry>,
    data_len: u64,
    /// Told of each chunk's bytes as it is taken.
    progress: Option<Observer>,
}

/// A piece of one chunk inside a buffer.
#[derive(Debug, Clone, Copy)]
struct Span {
    len: usize,
    /// The chunk ends with this piece.
    ends_chunk: bool,
}

/// The hashing and I/O threads.
struct Pipeline {
    full: SyncSender<(Vec<u8>, Vec<Span>)>,
    empty: Receiver<Vec<u8>>,
    digests: Receiver<Vec<u8>>,
    hasher: JoinHandle<()>,
    handle: JoinHandle<io::Result<File>>,
}

impl Pipeline {
    fn spawn(file: File) -> Result<Pipeline, ImageError> {
        let (full, full_rx) = sync_channel::<(Vec<u8>, Vec<Span>)>(WRITE_BUFFERS);
        let (hashed, hashed_rx) = sync_channel::<Vec<u8>>(WRITE_BUFFERS);
        let (empty_tx, empty) = sync_channel::<Vec<u8>>(WRITE_BUFFERS);
        let (digest_tx, digests) = std::sync::mpsc::channel::<Vec<u8>>();
        let hasher = std::thread::Builder::new()
            .name("ckpt-image-hash".into())
            .spawn(move || {
                let mut h = Sha256::new();
                for (buf, spans) in full_rx {
                    let mut off = 0usize;
                    for span in spans {
                        let end = off.saturating_add(span.len).min(buf.len());
                        h.update(&buf[off..end]);
                        off = end;
                        if span.ends_chunk && digest_tx.send(h.finalize_reset().to_vec()).is_err() {
                            return;
                        }
                    }
                    if hashed.send(buf).is_err() {
                        return;
                    }
                }
            })
            .map_err(io_err("start the image hash thread"))?;
        let handle = std::thread::Builder::new()
            .name("ckpt-image-write".into())
            .spawn(move || {
                write_loop(&file, hashed_rx, empty_tx)?;
                Ok(file)
            })
            .map_err(io_err("start the image write thread"))?;
        Ok(Pipeline {
            full,
            empty,
            digests,
            hasher,
            handle,
        })
    }

    /// Waits for both threads; returns the file and the digests in chunk
    /// order, or the error that stopped the writing.
    fn join(self) -> Result<(File, Vec<Vec<u8>>), ImageError> {
        drop(self.full);
        let hashed = self.hasher.join();
        let digests: Vec<Vec<u8>> = self.digests.try_iter().collect();
        let file = match self.handle.join() {
            Ok(Ok(file)) => file,
            Ok(Err(source)) => {
                return Err(ImageError::Io {
                    op: "write chunk data",
                    source,
                })
            }
            Err(_) => return Err(ImageError::InvalidInput("the image write thread panicked")),
        };
        if hashed.is_err() {
            return Err(ImageError::InvalidInput("the image hash thread panicked"));
        }
        Ok((file, digests))
    }
}

/// Body of the I/O thread: writes each full buffer and hands it back. A
/// helper thread fsyncs the data written so far every [`SYNC_STEP`] bytes,
/// so the disk works while hashing and writing go on and the final fsync
/// in [`ImageWriter::finish`] has little left to do. Both use the same open
/// file description, so an error the helper's fsync consumes is returned
/// here rather than lost.
fn write_loop(file: &File, full: Receiver<Vec<u8>>, empty: SyncSender<Vec<u8>>) -> io::Result<()> {
    let (tick, ticks) = sync_channel::<()>(1);
    std::thread::scope(|scope| {
        let syncer = scope.spawn(move || -> io::Result<()> {
            for () in ticks {
                file.sync_data()?;
            }
            Ok(())
        });
        let mut since_tick = 0usize;
        let written = (|| -> io::Result<()> {
            for mut buf in full {
                let mut out = file;
                out.write_all(&buf)?;
                since_tick += buf.len();
                if since_tick >= SYNC_STEP {
                    since_tick = 0;
                    // Full: a sync is already pending. Gone: it failed,
                    // and its error is collected below.
                    let _ = tick.try_send(());
                }
                buf.clear();
                // The writer may be gone (dropped after an error).
                let _ = empty.send(buf);
            }
            Ok(())
        })();
        drop(tick);
        let synced = syncer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the image sync thread panicked")));
        written.and(synced)
    })
}

/// A finished, fsynced image, still under the caller's temporary name.
#[derive(Debug)]
pub struct FinishedImage {
    /// The image file (its position is at the end).
    pub file: File,
    /// The random image id written in the manifest.
    pub image_id: [u8; 16],
    /// SHA-256 of the manifest bytes (what the signature covers).
    pub manifest_digest: [u8; 32],
    /// Total size of the image in bytes.
    pub size: u64,
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> ImageError {
    move |source| ImageError::Io { op, source }
}

impl ImageWriter {
    /// Starts an image in `file`, which must be empty and positioned at its
    /// start (a file the caller just created, under a temporary name).
    pub fn new(mut file: File) -> Result<Self, ImageError> {
        let len = file
            .metadata()
            .map_err(io_err("inspect the image file"))?
            .len();
        let pos = file
            .stream_position()
            .map_err(io_err("inspect the image file"))?;
        if len != 0 || pos != 0 {
            return Err(ImageError::InvalidInput("the image file is not empty"));
        }
        file.write_all(&encode_header())
            .map_err(io_err("write the header"))?;
        Ok(ImageWriter {
            io: Some(Pipeline::spawn(file)?),
            current: Vec::with_capacity(WRITE_BUFFER_LEN),
            spans: Vec::new(),
            allocated: 1,
            chunks: Vec::new(),
            data_len: 0,
            progress: None,
        })
    }

    /// Tells `observer` the length of every chunk from now on, once it is
    /// taken (copied for hashing and writing).
    pub fn observe(&mut self, observer: Observer) {
        self.progress = Some(observer);
    }

    /// Appends a chunk that belongs at `addr` in byte space `space` (an
    /// index into the [`ImageContent::spaces`] given to
    /// [`finish`](Self::finish)): 1 to [`MAX_CHUNK_LEN`] bytes, at most
    /// [`MAX_CHUNKS`] chunks in all. Chunks go in order of space, then of
    /// address (the reader refuses anything else).
    pub fn write_chunk(&mut self, space: u32, addr: u64, data: &[u8]) -> Result<(), ImageError> {
        if self.io.is_none() {
            return Err(ImageError::InvalidInput("the writer failed earlier"));
        }
        let len = data.len() as u64;
        if len == 0 {
            return Err(ImageError::InvalidInput("empty chunk"));
        }
        if len > MAX_CHUNK_LEN {
            return Err(ImageError::TooLarge {
                what: "chunk",
                len,
                cap: MAX_CHUNK_LEN,
            });
        }
        if self.chunks.len() as u64 >= MAX_CHUNKS {
            return Err(ImageError::TooLarge {
                what: "chunk count",
                len: self.chunks.len() as u64 + 1,
                cap: MAX_CHUNKS,
            });
        }
        if addr.checked_add(len).is_none() {
            return Err(ImageError::InvalidInput("chunk address range overflows"));
        }
        // The hashing thread hashes exactly the bytes that go to the file:
        // the copy.
        let mut rest = data;
        while !rest.is_empty() {
            let start = self.current.len();
            let n = (WRITE_BUFFER_LEN - start).min(rest.len());
            let (head, tail) = rest.split_at(n);
            self.current.extend_from_slice(head);
            rest = tail;
            self.spans.push(Span {
                len: n,
                ends_chunk: rest.is_empty(),
            });
            if self.current.len() == WRITE_BUFFER_LEN {
                self.send_current()?;
            }
        }
        self.data_len += len;
        self.chunks.push(ChunkEntry {
            space,
            addr,
            len,
            digest: Vec::new(),
        });
        if let Some(observe) = &self.progress {
            observe(len);
        }
        Ok(())
    }

    /// Hands the current buffer to the I/O thread and takes an empty one.
    fn send_current(&mut self) -> Result<(), ImageError> {
        let Some(io) = self.io.as_ref() else {
            return Err(ImageError::InvalidInput("the writer failed earlier"));
        };
        let next = if self.allocated < WRITE_BUFFERS {
            self.allocated += 1;
            Ok(Vec::with_capacity(WRITE_BUFFER_LEN))
        } else {
            Err(())
        };
        let full = std::mem::take(&mut self.current);
        let spans = std::mem::take(&mut self.spans);
        let sent = io.full.send((full, spans)).is_ok();
        let next = match (sent, next) {
            (false, _) => None,
            (true, Ok(buf)) => Some(buf),
            (true, Err(())) => io.empty.recv().ok(),
        };
        match next {
            Some(buf) => {
                self.current = buf;
                Ok(())
            }
            // The thread stopped: it has the error.
            None => Err(self.fail()),
        }
    }

    /// Stops the I/O thread after a failure and returns its error.
    fn fail(&mut self) -> ImageError {
        match self.io.take().map(Pipeline::join) {
            Some(Err(e)) => e,
            _ => ImageError::InvalidInput("the image write thread stopped"),
        }
    }

    /// Writes the manifest (with `meta`, `content`, the chunk list, a new
    /// random image id and the current time), the signature block when a
    /// signer is given, and the trailer; then flushes and fsyncs the file.
    pub fn finish(
        mut self,
        meta: ImageMeta,
        content: ImageContent,
        signer: Option<&dyn ManifestSigner>,
    ) -> Result<FinishedImage, ImageError> {
        if !self.current.is_empty() {
            self.send_current()?;
        }
        let (mut file, digests) = match self.io.take() {
            Some(io) => io.join()?,
            None => return Err(ImageError::InvalidInput("the writer failed earlier")),
        };
        if digests.len() != self.chunks.len() {
            return Err(ImageError::InvalidInput(
                "the image hash thread stopped early",
            ));
        }
        for (chunk, digest) in self.chunks.iter_mut().zip(digests) {
            chunk.digest = digest;
        }
        let mut image_id = [0u8; 16];
        getrandom::getrandom(&mut image_id).map_err(|e| ImageError::Io {
            op: "get random bytes for the image id",
            source: e
                .raw_os_error()
                .map(io::Error::from_raw_os_error)
                .unwrap_or_else(|| io::Error::other(e.to_string())),
        })?;
        let created_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            image_id,
            created_unix,
            host: meta.host,
            kernel_release: meta.kernel_release,
            arch: meta.arch,
            cpu: meta.cpu,
            vdso_digest: meta.vdso_digest,
            requester: meta.requester,
            digest_algorithm: DigestAlgorithm::Sha256,
            spaces: content.spaces,
            chunks: std::mem::take(&mut self.chunks),
            files: content.files,
            tasks: content.tasks,
            zombies: content.zombies,
        };
        let manifest_bytes = encode(&manifest)?;
        let manifest_len = manifest_bytes.len() as u64;
        if manifest_len > MAX_MANIFEST_LEN {
            return Err(ImageError::TooLarge {
                what: "manifest",
                len: manifest_len,
                cap: MAX_MANIFEST_LEN,
            });
        }
        let manifest_digest: [u8; 32] = Sha256::digest(&manifest_bytes).into();

        let sig_bytes = match signer {
            None => Vec::new(),
            Some(signer) => {
                let public_key = signer.public_key();
                let signature = signer
                    .sign_manifest_digest(&manifest_digest)
                    .map_err(ImageError::Sign)?;
                public_key
                    .verify_manifest_digest(&manifest_digest, &signature)
                    .map_err(|e| ImageError::Sign(SignError::SelfCheck(e)))?;
                let attestation = signer
                    .attest_manifest_digest(&manifest_digest)
                    .map_err(ImageError::Sign)?;
                if let Some(a) = &attestation {
                    attest::verify_block(a, &manifest_digest)
                        .map_err(|e| ImageError::Sign(SignError::AttestationSelfCheck(e)))?;
                }
                let block = SignatureBlock {
                    algorithm: public_key.algorithm().name().to_owned(),
                    key_id: public_key.key_id().0.to_vec(),
                    public_key: public_key.bytes().to_vec(),
                    signature,
                    attestation,
                };
                encode(&block)?
            }
        };
        let sig_len = sig_bytes.len() as u64;
        if sig_len > MAX_SIGBLOCK_LEN {
            return Err(ImageError::TooLarge {
                what: "signature block",
                len: sig_len,
                cap: MAX_SIGBLOCK_LEN,
            });
        }

        let manifest_offset = HEADER_LEN + self.data_len;
        let sig_offset = if sig_len == 0 {
            0
        } else {
            manifest_offset + manifest_len
        };
        let trailer = Trailer {
            manifest_offset,
            manifest_len,
            sig_offset,
            sig_len,
            data_len: self.data_len,
        };
        let size = manifest_offset + manifest_len + sig_len + TRAILER_LEN;

        file.write_all(&manifest_bytes)
            .map_err(io_err("write the manifest"))?;
        file.write_all(&sig_bytes)
            .map_err(io_err("write the signature block"))?;
        file.write_all(&trailer.encode())
            .map_err(io_err("write the trailer"))?;
        file.sync_all().map_err(io_err("fsync the image"))?;
        Ok(FinishedImage {
            file,
            image_id,
            manifest_digest,
            size,
        })
    }
}
