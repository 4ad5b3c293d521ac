//! Streaming image writer.
//!
//! Owns: the image file while it is written, and the buffers the chunk
//! data passes through. Trusts: nothing the chunk data says (opaque
//! bytes); the caller for the order of chunks (checked by every reader).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Seek as _, SeekFrom, Write as _};
use std::os::fd::AsFd as _;
use std::os::unix::fs::FileExt as _;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use super::attest;
use super::compress::{block_header, BLOCK_HEADER_LEN, MAX_BLOCK_LEN};
use super::digest::{ChunkHasher, CHUNK_DIGEST_LEN, WRITE_CHUNK_DIGEST};
use super::error::ImageError;
use super::layout::{encode_header, Trailer, FORMAT_VERSION, HEADER_LEN, TRAILER_LEN};
use super::manifest::{
    encode, ChunkEntry, Compression, DigestAlgorithm, ImageContent, ImageMeta, Manifest,
    SignatureBlock,
};
use super::packer::{Packer, MAX_PIECES};
use super::sign::{ManifestSigner, SignError};
use crate::limits::{MAX_CHUNKS, MAX_CHUNK_LEN, MAX_MANIFEST_LEN, MAX_SIGBLOCK_LEN};
use crate::progress::Observer;

/// Size of each write buffer handed to the I/O thread: the size of
/// every write but the last, and of those before a chunk whose zero pages
/// are left out (`append_sparse` sends a buffer short rather than cut a
/// page in two). Each is written at the running offset.
const WRITE_BUFFER_LEN: usize = 256 << 10;
/// Alignment of the buffers in memory (a page: copies to and from whole
/// pages).
const BUFFER_ALIGN: usize = 4096;
/// Data written between two starts of writeback, at most.
const SYNC_STEP: u64 = 32 << 20;
/// Data written before the first start of writeback; the step doubles
/// from there up to [`SYNC_STEP`], so that a small image is on its way to
/// the disk while the dump finishes, and a large one is written back in
/// large steps.
const FIRST_SYNC_STEP: u64 = WRITE_BUFFER_LEN as u64;
/// Number of write buffers (memory used: this many times
/// [`WRITE_BUFFER_LEN`]).
const WRITE_BUFFERS: usize = 4;
/// Number of write buffers when compressing: the compressed bytes come
/// several times slower than the buffers are hashed and written, and the
/// chunks in compression hold memory of their own.
const COMPRESSED_WRITE_BUFFERS: usize = 2;

/// Writes an image: [`new`](ImageWriter::new) starts it with the header,
/// [`write_chunk`](ImageWriter::write_chunk) and
/// [`write_chunk_with`](ImageWriter::write_chunk_with) append and hash
/// chunks, [`finish`](ImageWriter::finish) writes the manifest, signature
/// block and trailer and fsyncs. After an error the writer refuses further
/// use; the caller removes the file.
///
/// Three stages overlap: the caller's thread fills 256 KiB page-aligned
/// buffers (with `write_chunk_with`, straight from the target's memory), a
/// hashing thread computes each chunk's digest, and an I/O thread writes
/// the full buffers to the file through the page cache, starting their
/// writeback as it goes (after [`FIRST_SYNC_STEP`] bytes, then in steps
/// doubling up to [`SYNC_STEP`]) so that the disk works while the capture
/// goes on. At most [`WRITE_BUFFERS`] buffers exist, whatever the
/// image's size.
pub struct ImageWriter {
    io: Option<Pipeline>,
    /// The buffer being filled; the first one starts with the header.
    current: Block,
    /// How `current` divides into pieces of chunks (after `current_skip`).
    spans: Vec<Span>,
    /// Bytes at the start of `current` that are no chunk's (the header).
    current_skip: usize,
    /// Buffers allocated so far (at most `max_buffers`).
    allocated: usize,
    /// [`WRITE_BUFFERS`], or [`COMPRESSED_WRITE_BUFFERS`] when compressing.
    max_buffers: usize,
    /// Chunk entries; digests are filled in from the hashing thread.
    chunks: Vec<ChunkEntry>,
    /// Bytes of chunk data in the file.
    data_len: u64,
    /// Set by [`compress_with`](ImageWriter::compress_with).
    compression: Option<Compression>,
    /// The compression threads, when compressing.
    packer: Option<Packer>,
    /// Blocks given to `packer` and not appended yet, in order.
    pending: VecDeque<PendingBlock>,
    /// With [`Compression::Lz4Blocks`]: the last entry of `chunks` is a
    /// chunk whose blocks are still being appended (its digest not ended
    /// yet).
    open_chunk: bool,
    /// Told of each chunk's bytes as it is taken.
    progress: Option<Observer>,
}

/// A block of a chunk given to the compression threads: where it
/// belongs, and whether it is the chunk's last.
#[derive(Debug, Clone, Copy)]
struct PendingBlock {
    space: u32,
    addr: u64,
    len: u64,
    last: bool,
}

/// A write buffer: [`WRITE_BUFFER_LEN`] bytes at a page-aligned address
/// inside `raw`, of which `len` are filled.
struct Block {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl Block {
    fn new() -> Block {
        let raw = vec![0u8; WRITE_BUFFER_LEN + BUFFER_ALIGN];
        let start = raw.as_ptr().align_offset(BUFFER_ALIGN).min(BUFFER_ALIGN);
        Block { raw, start, len: 0 }
    }

    /// A block that holds nothing and never will (before the first
    /// [`Block::new`] or after a failure).
    fn empty() -> Block {
        Block {
            raw: Vec::new(),
            start: 0,
            len: 0,
        }
    }

    fn filled(&self) -> &[u8] {
        self.raw
            .get(self.start..self.start + self.len)
            .unwrap_or_default()
    }

    /// The unfilled rest of the block.
    fn spare(&mut self) -> &mut [u8] {
        let from = self.start + self.len;
        let to = self.start + WRITE_BUFFER_LEN;
        self.raw.get_mut(from..to).unwrap_or_default()
    }

    fn room(&self) -> usize {
        WRITE_BUFFER_LEN - self.len
    }
}

/// A piece of one chunk inside a buffer.
#[derive(Debug, Clone, Copy)]
struct Span {
    len: usize,
    /// The chunk ends with this piece.
    ends_chunk: bool,
}

/// A full buffer on its way: the block, the bytes at its start that are
/// no chunk's, and its pieces of chunks.
type Filled = (Block, usize, Vec<Span>);

/// The hashing and I/O threads.
struct Pipeline {
    full: SyncSender<Filled>,
    empty: Receiver<Block>,
    digests: Receiver<[u8; CHUNK_DIGEST_LEN]>,
    hasher: JoinHandle<()>,
    handle: JoinHandle<io::Result<File>>,
}

impl Pipeline {
    fn spawn(file: File) -> Result<Pipeline, ImageError> {
        let (full, full_rx) = sync_channel::<Filled>(WRITE_BUFFERS);
        let (hashed, hashed_rx) = sync_channel::<Block>(WRITE_BUFFERS);
        let (empty_tx, empty) = sync_channel::<Block>(WRITE_BUFFERS);
        // Fixed-size digests: the channel holds every chunk's until the
        // end, without an allocation each.
        let (digest_tx, digests) = std::sync::mpsc::channel::<[u8; CHUNK_DIGEST_LEN]>();
        let hasher = std::thread::Builder::new()
            .name("ckpt-image-hash".into())
            .spawn(move || {
                let mut h = ChunkHasher::new(WRITE_CHUNK_DIGEST);
                for (block, skip, spans) in full_rx {
                    let buf = block.filled();
                    let mut off = skip.min(buf.len());
                    for span in spans {
                        let end = off.saturating_add(span.len).min(buf.len());
                        h.update(&buf[off..end]);
                        off = end;
                        if span.ends_chunk && digest_tx.send(h.finalize_reset()).is_err() {
                            return;
                        }
                    }
                    if hashed.send(block).is_err() {
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
    fn join(self) -> Result<(File, Vec<[u8; CHUNK_DIGEST_LEN]>), ImageError> {
        drop(self.full);
        drop(self.empty);
        let hashed = self.hasher.join();
        let digests: Vec<[u8; CHUNK_DIGEST_LEN]> = self.digests.try_iter().collect();
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

/// Body of the I/O thread: writes the hashed buffers in order at their
/// offsets, through the page cache, and hands each back. After
/// [`FIRST_SYNC_STEP`] bytes, then after steps doubling up to
/// [`SYNC_STEP`], and once more when the last buffer is written, it asks a
/// helper thread to start the writeback of what was written since the
/// last time (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`), so the disk
/// works while the capture goes on (and, for a small image, while the
/// dump thaws the process and writes the manifest) and the final fsync in
/// [`ImageWriter::finish`] has little left to do.
/// Starting writeback waits for nothing (the writing and the capture
/// never wait for the disk, only for free buffers) and makes nothing
/// durable: that is the final fsync's job, which also reports any write
/// error (starting writeback does not consume one). The helper thread
/// exists because starting writeback can block while the device queue is
/// full.
fn write_loop(file: &File, full: Receiver<Block>, empty: SyncSender<Block>) -> io::Result<()> {
    let (tick, ticks) = sync_channel::<u64>(1);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut from = 0u64;
            for upto in ticks {
                // (A length of 0 would mean "to the end of the file".)
                if upto > from {
                    // A hint only: a failure here changes nothing the
                    // final fsync does not see.
                    let _ = crate::sys::start_writeback(file.as_fd(), from, upto - from);
                    from = upto;
                }
            }
        });
        // Dropped when this closure returns, which ends the helper's loop.
        let tick = tick;
        let mut offset = 0u64;
        let mut step = FIRST_SYNC_STEP;
        let mut next = step;
        for mut block in full {
            file.write_all_at(block.filled(), offset)?;
            offset += block.len as u64;
            if offset >= next {
                // Full: the helper is busy, and its next range covers
                // this one too.
                let _ = tick.try_send(offset);
                step = step.saturating_mul(2).min(SYNC_STEP);
                next = offset.saturating_add(step);
            }
            block.len = 0;
            // The writer may be gone (dropped after an error, or finished).
            let _ = empty.send(block);
        }
        // The rest of the chunk data, while the manifest is written.
        let _ = tick.send(offset);
        Ok(())
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

/// The stretches of `piece` (the bytes of a chunk of `chunk_len` bytes
/// from offset `at` in it) to leave out, as offsets in the chunk, in
/// order: runs of whole pages (counted from the chunk's start) that hold
/// only zeros and either touch an end of the chunk or are at least
/// [`MIN_GAP`](super::zeros::MIN_GAP) long. A run is looked for within the
/// piece only: one cut in two by the buffers' boundaries may stay.
fn zero_gaps(piece: &[u8], at: u64, chunk_len: u64, gaps: &mut Vec<(u64, u64)>) {
    use super::zeros::{is_zero, MIN_GAP, PAGE};
    let page = PAGE as u64;
    gaps.clear();
    let end = at + piece.len() as u64;
    let mut p = at.div_ceil(page) * page;
    let mut zeros_from: Option<u64> = None;
    let close = |from: u64, to: u64, gaps: &mut Vec<(u64, u64)>| {
        if to - from >= MIN_GAP as u64 || from == 0 || to == chunk_len {
            gaps.push((from, to));
        }
    };
    // Whole pages, and a chunk's last page when it is short (it ends the
    // chunk, so zeros up to it may go too when it is zero).
    loop {
        let to = if p + page <= end {
            p + page
        } else if p < end && end == chunk_len {
            end
        } else {
            break;
        };
        let zero = piece
            .get((p - at) as usize..(to - at) as usize)
            .is_some_and(is_zero);
        match (zero, zeros_from) {
            (true, None) => zeros_from = Some(p),
            (false, Some(from)) => {
                close(from, p, gaps);
                zeros_from = None;
            }
            _ => {}
        }
        p = to;
    }
    if let Some(from) = zeros_from {
        close(from, p, gaps);
    }
}

/// Where the manifest is encoded: the image file (through a buffer),
/// hashed and counted as it goes, refusing to go past
/// [`MAX_MANIFEST_LEN`].
struct ManifestOut<'f> {
    file: io::BufWriter<&'f File>,
    hasher: Sha256,
    len: u64,
    too_long: bool,
}

impl io::Write for ManifestOut<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.len + buf.len() as u64 > MAX_MANIFEST_LEN {
            self.too_long = true;
            return Err(io::Error::other("the manifest is too long"));
        }
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Encodes `manifest` into `file` at its position; returns the length
/// and SHA-256 of the bytes written.
fn write_manifest(file: &File, manifest: &Manifest) -> Result<(u64, [u8; 32]), ImageError> {
    let mut out = ManifestOut {
        file: io::BufWriter::with_capacity(64 << 10, file),
        hasher: Sha256::new(),
        len: 0,
        too_long: false,
    };
    let encoded = ciborium::ser::into_writer(manifest, &mut out);
    if out.too_long {
        return Err(ImageError::TooLarge {
            what: "manifest",
            len: MAX_MANIFEST_LEN + 1,
            cap: MAX_MANIFEST_LEN,
        });
    }
    match encoded {
        Ok(()) => {}
        Err(ciborium::ser::Error::Io(source)) => {
            return Err(ImageError::Io {
                op: "write the manifest",
                source,
            })
        }
        Err(_) => {
            return Err(ImageError::InvalidInput(
                "the manifest cannot be encoded as CBOR",
            ))
        }
    }
    out.flush().map_err(io_err("write the manifest"))?;
    Ok((out.len, out.hasher.finalize().into()))
}

/// A `fill` for the writer that copies from `data`: the piece at each
/// offset.
fn copy_from(data: &[u8]) -> impl FnMut(u64, &mut [u8]) -> Result<(), ImageError> + '_ {
    move |off, dst| {
        let from = usize::try_from(off).unwrap_or(usize::MAX);
        match data.get(from..).and_then(|d| d.get(..dst.len())) {
            Some(src) => {
                dst.copy_from_slice(src);
                Ok(())
            }
            None => Err(ImageError::InvalidInput("chunk piece out of range")),
        }
    }
}

impl ImageWriter {
    /// Starts an image in `file`, which must be empty and positioned at its
    /// start (a file the caller just created, under a temporary name).
    /// Writes go through the page cache, with writeback started as they
    /// go: the capture waits for memory copies, not for the disk, and
    /// [`finish`](Self::finish) waits for what is left.
    pub fn new(file: File) -> Result<Self, ImageError> {
        Self::start(file)
    }

    fn start(mut file: File) -> Result<Self, ImageError> {
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
        // The header goes out with the first buffer, so that every full
        // buffer is written at a multiple of its size.
        let mut current = Block::new();
        let header = encode_header();
        current.spare()[..header.len()].copy_from_slice(&header);
        current.len = header.len();
        Ok(ImageWriter {
            io: Some(Pipeline::spawn(file)?),
            current,
            spans: Vec::new(),
            current_skip: HEADER_LEN as usize,
            allocated: 1,
            max_buffers: WRITE_BUFFERS,
            chunks: Vec::new(),
            data_len: 0,
            compression: None,
            packer: None,
            pending: VecDeque::new(),
            open_chunk: false,
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
        self.write_chunk_with(space, addr, data.len() as u64, copy_from(data))
    }

    /// Appends a chunk like [`write_chunk`](Self::write_chunk), of memory
    /// that reads as zeros wherever the image holds nothing for it: its
    /// zero pages may be left out (see
    /// [`write_zero_sparse_chunk_with`](Self::write_zero_sparse_chunk_with)).
    pub fn write_zero_sparse_chunk(
        &mut self,
        space: u32,
        addr: u64,
        data: &[u8],
    ) -> Result<(), ImageError> {
        self.write_zero_sparse_chunk_with(space, addr, data.len() as u64, copy_from(data))
    }

    /// Appends a chunk of `len` bytes, like [`write_chunk`](Self::write_chunk),
    /// whose bytes `fill` writes straight into the write buffers: it is
    /// called with the offset in the chunk and the piece to fill, in order,
    /// until the chunk is complete. An error from `fill` is returned, and
    /// the writer fails (the image is unusable).
    pub fn write_chunk_with<E: From<ImageError>>(
        &mut self,
        space: u32,
        addr: u64,
        len: u64,
        fill: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.write_with(space, addr, len, false, fill)
    }

    /// Appends a chunk of memory that reads as zeros wherever the image
    /// holds nothing for it (anonymous memory, which restore maps fresh;
    /// a saved file, which restore creates at its size), like
    /// [`write_chunk_with`](Self::write_chunk_with). When compressing, its
    /// pages (4 KiB, from `addr`, which must be page aligned) that hold
    /// only zeros are not stored: those at either end of the chunk, and
    /// runs of at least [`MIN_GAP`](super::zeros::MIN_GAP) bytes of them
    /// inside each block (at most [`MAX_PIECES`](super::packer::MAX_PIECES)
    /// runs of data a block); the chunk becomes one chunk of the image per
    /// run of the other pages, and none when it is all zeros. Without
    /// compression, the zero pages at either end of the
    /// chunk and runs of at least [`MIN_GAP`](super::zeros::MIN_GAP) bytes
    /// of them inside each write buffer's piece of it are left out the
    /// same way (see `append_sparse`).
    pub fn write_zero_sparse_chunk_with<E: From<ImageError>>(
        &mut self,
        space: u32,
        addr: u64,
        len: u64,
        fill: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let aligned = addr.is_multiple_of(super::zeros::PAGE as u64);
        self.write_with(space, addr, len, aligned, fill)
    }

    fn write_with<E: From<ImageError>>(
        &mut self,
        space: u32,
        addr: u64,
        len: u64,
        drop_zeros: bool,
        mut fill: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.io.is_none() {
            return Err(ImageError::InvalidInput("the writer failed earlier").into());
        }
        if len == 0 {
            return Err(ImageError::InvalidInput("empty chunk").into());
        }
        if len > MAX_CHUNK_LEN {
            return Err(ImageError::TooLarge {
                what: "chunk",
                len,
                cap: MAX_CHUNK_LEN,
            }
            .into());
        }
        let count = (self.chunks.len() + self.pending.len()) as u64;
        if count >= MAX_CHUNKS {
            return Err(ImageError::TooLarge {
                what: "chunk count",
                len: count + 1,
                cap: MAX_CHUNKS,
            }
            .into());
        }
        if addr.checked_add(len).is_none() {
            return Err(ImageError::InvalidInput("chunk address range overflows").into());
        }
        if self.compression.is_some() {
            // Compressed a block at a time on other threads; appended, in
            // order, once compressed (here when as many blocks as allowed
            // are in flight, else by `finish`).
            let mut off = 0u64;
            while off < len {
                let n = (len - off).min(MAX_BLOCK_LEN as u64);
                if self.packer.as_ref().is_some_and(Packer::full) {
                    self.take_packed()?;
                }
                // Each block given may become a chunk of the image of its
                // own: counted against the cap like one.
                let count = (self.chunks.len() + self.pending.len()) as u64;
                if count >= MAX_CHUNKS {
                    self.abandon();
                    return Err(ImageError::TooLarge {
                        what: "chunk count",
                        len: count + 1,
                        cap: MAX_CHUNKS,
                    }
                    .into());
                }
                let Some(packer) = self.packer.as_mut() else {
                    return Err(ImageError::InvalidInput("the writer failed earlier").into());
                };
                // Dropping zero pages turns a block into up to MAX_PIECES
                // chunks: only while that cannot bring the count near its
                // cap (past half of it, each block is one at most).
                let in_flight = (self.pending.len() as u64 + 1) * MAX_PIECES as u64;
                let drop_zeros = drop_zeros && count + in_flight < MAX_CHUNKS / 2;
                // Blocks of one chunk of the image: zeros where one meets
                // the next are a stretch like any other.
                let inner = match self.compression {
                    Some(Compression::Lz4Blocks) => (off > 0, off + n < len),
                    _ => (false, false),
                };
                if let Err(e) = packer.give(n as usize, drop_zeros, inner, |raw| fill(off, raw)) {
                    self.abandon();
                    return Err(e);
                }
                self.pending.push_back(PendingBlock {
                    space,
                    addr: addr + off,
                    len: n,
                    last: off + n == len,
                });
                off += n;
            }
            return Ok(());
        }
        if drop_zeros && count < MAX_CHUNKS / 2 {
            self.append_sparse(space, addr, len, fill)?;
            if let Some(observe) = &self.progress {
                observe(len);
            }
            return Ok(());
        }
        self.append(len, true, fill)?;
        self.data_len += len;
        self.chunks.push(ChunkEntry {
            space,
            addr,
            len,
            digest: Vec::new(),
            stored: None,
        });
        if let Some(observe) = &self.progress {
            observe(len);
        }
        Ok(())
    }

    /// Appends `len` bytes of chunk data that `fill` writes into the
    /// buffers and, with `ends_chunk`, marks the chunk's end for the
    /// hashing thread.
    fn append<E: From<ImageError>>(
        &mut self,
        len: u64,
        ends_chunk: bool,
        mut fill: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        // The hashing thread hashes exactly the bytes that go to the file.
        let mut done = 0u64;
        while done < len {
            let n = usize::try_from(len - done)
                .unwrap_or(usize::MAX)
                .min(self.current.room());
            if let Err(e) = fill(done, &mut self.current.spare()[..n]) {
                self.abandon();
                return Err(e);
            }
            self.current.len += n;
            done += n as u64;
            self.spans.push(Span {
                len: n,
                ends_chunk: ends_chunk && done == len,
            });
            if self.current.room() == 0 {
                self.send_current()?;
            }
        }
        Ok(())
    }

    /// Appends a chunk of memory that reads as zeros wherever the image
    /// holds nothing for it, without compression, leaving out its zero
    /// pages (pages counted from the chunk's start, which is page aligned):
    /// those at either end of the chunk, and runs of at least
    /// [`MIN_GAP`](super::zeros::MIN_GAP) bytes of them inside it. `fill`
    /// writes whole pages into a buffer, each piece looked at once it is
    /// there; what is left out is squeezed out of the buffer before it
    /// goes to the hashing thread. Pushes one chunk entry per run of
    /// stored bytes (none for a chunk of zeros), each ended for the
    /// hashing thread by an empty span.
    fn append_sparse<E: From<ImageError>>(
        &mut self,
        space: u32,
        addr: u64,
        len: u64,
        mut fill: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut done = 0u64;
        // The run of stored bytes under way: its offset in the chunk, and
        // its length so far.
        let mut run: Option<(u64, u64)> = None;
        let mut gaps: Vec<(u64, u64)> = Vec::new();
        let page = super::zeros::PAGE;
        while done < len {
            // Whole pages at a time, so that every page is looked at
            // whole: a buffer with less than a page of room left goes out
            // short (its writer writes at the running offset), unless the
            // rest of the chunk fits.
            let left = usize::try_from(len - done).unwrap_or(usize::MAX);
            let room = self.current.room();
            if room < page && left > room {
                self.send_current()?;
                continue;
            }
            let n = if left <= room {
                left
            } else {
                room - room % page
            };
            let start = self.current.start + self.current.len;
            if let Err(e) = fill(done, &mut self.current.spare()[..n]) {
                self.abandon();
                return Err(e);
            }
            let filled = self.current.raw.get(start..start + n).unwrap_or_default();
            zero_gaps(filled, done, len, &mut gaps);
            // Keep what is between the gaps, moved down over them.
            let mut to = start;
            let mut at = done;
            let end = done + n as u64;
            for &(gap_from, gap_to) in gaps.iter().chain(std::iter::once(&(end, end))) {
                if gap_from > at {
                    let keep = (gap_from - at) as usize;
                    let from = start + (at - done) as usize;
                    if from != to {
                        self.current.raw.copy_within(from..from + keep, to);
                    }
                    to += keep;
                    self.spans.push(Span {
                        len: keep,
                        ends_chunk: false,
                    });
                    run = Some(run.map_or((at, keep as u64), |(off, l)| (off, l + keep as u64)));
                }
                if gap_to > gap_from {
                    self.end_run(space, addr, run.take());
                }
                at = gap_to;
            }
            self.current.len = to - self.current.start;
            done = end;
            if self.current.room() == 0 {
                self.send_current()?;
            }
        }
        self.end_run(space, addr, run.take());
        Ok(())
    }

    /// Ends a run of stored bytes of a chunk at `addr` (see
    /// [`append_sparse`](Self::append_sparse)): its entry, and an empty
    /// span that ends its digest.
    fn end_run(&mut self, space: u32, addr: u64, run: Option<(u64, u64)>) {
        let Some((off, len)) = run else { return };
        self.spans.push(Span {
            len: 0,
            ends_chunk: true,
        });
        self.data_len += len;
        self.chunks.push(ChunkEntry {
            space,
            addr: addr + off,
            len,
            digest: Vec::new(),
            stored: None,
        });
    }

    /// Takes the oldest chunk back from the compression threads and
    /// appends it: its compressed bytes when they are fewer, else the
    /// chunk as it was read.
    fn take_packed(&mut self) -> Result<(), ImageError> {
        let Some(packer) = self.packer.as_mut() else {
            return Err(ImageError::InvalidInput("the writer failed earlier"));
        };
        let taken = match packer.take() {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(()),
            Err(e) => {
                self.abandon();
                return Err(e);
            }
        };
        let Some(PendingBlock {
            space,
            addr,
            len,
            last,
        }) = self.pending.pop_front()
        else {
            return Err(ImageError::InvalidInput("a compressed chunk nobody gave"));
        };
        let blocks = self.compression == Some(Compression::Lz4Blocks);
        for piece in taken.pieces() {
            let Some((off, piece_len, bytes, stored)) = piece else {
                self.abandon();
                return Err(ImageError::InvalidInput(
                    "a compressed chunk's piece is out of its buffer",
                ));
            };
            if blocks {
                self.append_block(space, addr + off, piece_len, bytes)?;
                continue;
            }
            let stored = stored
                .and_then(|n| u32::try_from(n).ok())
                .and_then(std::num::NonZeroU32::new);
            self.append(bytes.len() as u64, true, copy_from(bytes))?;
            self.data_len += bytes.len() as u64;
            self.chunks.push(ChunkEntry {
                space,
                addr: addr + off,
                len: piece_len,
                digest: Vec::new(),
                stored,
            });
        }
        if last {
            self.close_chunk();
        }
        if let Some(observe) = &self.progress {
            observe(len);
        }
        if let Some(packer) = self.packer.as_mut() {
            packer.recycle(taken);
        }
        Ok(())
    }

    /// Appends a block of a [`Compression::Lz4Blocks`] chunk: `len`
    /// bytes at `addr` in `space`, stored as `bytes` (compressed when
    /// fewer), after its header. It goes in the open chunk when it
    /// continues it and the chunk stays within [`MAX_CHUNK_LEN`] both in
    /// its space and in the file; else it starts a chunk.
    fn append_block(
        &mut self,
        space: u32,
        addr: u64,
        len: u64,
        bytes: &[u8],
    ) -> Result<(), ImageError> {
        let add = (BLOCK_HEADER_LEN + bytes.len()) as u64;
        let continues = self.open_chunk
            && self.chunks.last().is_some_and(|c| {
                c.space == space
                    && c.addr + c.len == addr
                    && c.len + len <= MAX_CHUNK_LEN
                    && c.file_len() + add <= MAX_CHUNK_LEN
            });
        if !continues {
            self.close_chunk();
            self.chunks.push(ChunkEntry {
                space,
                addr,
                len: 0,
                digest: Vec::new(),
                stored: None,
            });
            self.open_chunk = true;
        }
        let header = block_header(len as usize, bytes.len());
        self.append(header.len() as u64, false, copy_from(&header))?;
        self.append(bytes.len() as u64, false, copy_from(bytes))?;
        self.data_len += add;
        let Some(c) = self.chunks.last_mut() else {
            return Err(ImageError::InvalidInput(
                "a compressed block without its chunk",
            ));
        };
        let stored = c.stored.map_or(0, |s| u64::from(s.get())) + add;
        c.len += len;
        c.stored = u32::try_from(stored)
            .ok()
            .and_then(std::num::NonZeroU32::new);
        Ok(())
    }

    /// Ends the open [`Compression::Lz4Blocks`] chunk, if any: an empty
    /// span ends its digest.
    fn close_chunk(&mut self) {
        if std::mem::take(&mut self.open_chunk) {
            self.spans.push(Span {
                len: 0,
                ends_chunk: true,
            });
        }
    }

    /// Compresses every chunk written from now on with `alg`, a block of
    /// at most [`MAX_BLOCK_LEN`] bytes at a time (a block that does not
    /// get smaller is stored as it is), and names it in the manifest.
    /// With [`Compression::Lz4Blocks`] a chunk's blocks make one chunk of
    /// the image (cut where zero pages are left out); with
    /// [`Compression::Lz4`], each block is one. Starts one compression
    /// thread per CPU (at most 4); costs two buffers of a block per block
    /// in flight (as many as the threads).
    pub fn compress_with(&mut self, alg: Compression) -> Result<(), ImageError> {
        self.packer = Some(Packer::spawn(alg)?);
        self.compression = Some(alg);
        self.max_buffers = COMPRESSED_WRITE_BUFFERS;
        Ok(())
    }

    /// Hands the current buffer to the I/O thread and takes an empty one.
    fn send_current(&mut self) -> Result<(), ImageError> {
        let Some(io) = self.io.as_ref() else {
            return Err(ImageError::InvalidInput("the writer failed earlier"));
        };
        let full = std::mem::replace(&mut self.current, Block::empty());
        let spans = std::mem::take(&mut self.spans);
        let skip = std::mem::take(&mut self.current_skip);
        let sent = io.full.send((full, skip, spans)).is_ok();
        let next = if !sent {
            None
        } else if self.allocated < self.max_buffers {
            self.allocated += 1;
            Some(Block::new())
        } else {
            io.empty.recv().ok()
        };
        match next {
            Some(block) => {
                self.current = block;
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

    /// Stops the threads after the caller failed mid-chunk: the image is
    /// unusable.
    fn abandon(&mut self) {
        self.current = Block::empty();
        self.packer = None;
        self.pending.clear();
        self.open_chunk = false;
        if let Some(io) = self.io.take() {
            let _ = io.join();
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
        while !self.pending.is_empty() {
            self.take_packed()?;
        }
        self.close_chunk();
        // Joins the compression threads.
        self.packer = None;
        // An empty buffer may still end a chunk (an empty span).
        if self.current.len != 0 || !self.spans.is_empty() {
            self.send_current()?;
        }
        let (mut file, digests) = match self.io.take() {
            Some(io) => io.join()?,
            None => return Err(ImageError::InvalidInput("the writer failed earlier")),
        };
        // The buffers were written at their offsets: the manifest follows
        // the data.
        file.seek(SeekFrom::Start(HEADER_LEN + self.data_len))
            .map_err(io_err("position the image file"))?;
        if digests.len() != self.chunks.len() {
            return Err(ImageError::InvalidInput(
                "the image hash thread stopped early",
            ));
        }
        for (chunk, digest) in self.chunks.iter_mut().zip(digests) {
            chunk.digest = digest.to_vec();
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
            chunk_digest: Some(WRITE_CHUNK_DIGEST),
            compression: self.compression,
        };
        // Encoded straight into the file after the data, hashed as it
        // goes: no copy of it in memory (a tree of 200 processes has a
        // manifest of 2 MB).
        let (manifest_len, manifest_digest) = write_manifest(&file, &manifest)?;
        drop(manifest);

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
        // The last buffer went out partly filled: the manifest follows it.
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
