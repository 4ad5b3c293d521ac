//! Compression threads of the image writer (`dump --compress`): chunks
//! are compressed on one thread per CPU (at most [`MAX_PACKERS`]) while
//! the caller reads the next ones, and are taken back in the order they
//! were given, so the image is the same as if one thread had compressed
//! them all.
//!
//! Owns: the threads and the buffers of the chunks in flight (at most as
//! many chunks as threads, whatever the image's size). Trusts: nothing in
//! the chunk bytes (opaque input to the compressor).

use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::compress::{bound, compress};
use super::error::ImageError;
use super::manifest::Compression;
use super::zeros;

/// Most compression threads, whatever the number of CPUs.
const MAX_PACKERS: usize = 4;

/// Most pieces a chunk given with its zero pages to drop becomes (each is
/// a chunk of the image): more runs of data are joined across their
/// shortest stretches of zeros. Bounds the chunk count to this many times
/// what it would be without dropping.
pub(super) const MAX_PIECES: usize = 16;

/// Bytes at the start of a piece compressed first, to tell whether the
/// rest is worth compressing.
const PROBE_LEN: usize = 4 << 10;

/// Whether `input`, of at least four times [`PROBE_LEN`], does not look
/// worth compressing: its first [`PROBE_LEN`] bytes (compressed into
/// `out`) do not shrink by a sixteenth. Random or already compressed data
/// then costs the codec a probe, not a whole chunk; a wrong guess only
/// stores a chunk as it is.
fn looks_incompressible(alg: Compression, input: &[u8], out: &mut [u8]) -> bool {
    let Some(probe) = input
        .get(..PROBE_LEN)
        .filter(|_| input.len() >= 4 * PROBE_LEN)
    else {
        return false;
    };
    match compress(alg, probe, out) {
        Some(n) => n > PROBE_LEN - PROBE_LEN / 16,
        None => true,
    }
}

/// A chunk on its way through a compression thread.
pub(super) struct Packed {
    seq: u64,
    raw: Vec<u8>,
    packed: Vec<u8>,
    /// Drop the pages of `raw` that hold only zeros.
    drop_zeros: bool,
    /// Whether `raw` is not at the start, and not at the end, of the
    /// chunk it is a block of: zeros there are left out only in a
    /// stretch of [`zeros::MIN_GAP`].
    inner: (bool, bool),
    /// The parts of `raw` to store, in order: offset and length in `raw`,
    /// and where in `packed` its compressed bytes are (when fewer than
    /// its own). The whole chunk, unless zero pages were dropped.
    pieces: Vec<Piece>,
    /// Scratch for the runs of data.
    runs: Vec<(usize, usize)>,
}

/// A part of a chunk to store.
#[derive(Debug, Clone, Copy)]
struct Piece {
    off: usize,
    len: usize,
    /// `(start, n)`: its compressed bytes are `packed[start..start + n]`.
    packed: Option<(usize, usize)>,
}

impl Packed {
    /// The parts of the chunk to store, in order: each one's offset in
    /// the chunk, its length, and the bytes to store for it (compressed
    /// when that makes them fewer; then the length of those bytes too).
    /// `None` for a piece outside the buffers (never: they are made
    /// together), which the caller must treat as an error.
    pub(super) fn pieces(
        &self,
    ) -> impl Iterator<Item = Option<(u64, u64, &[u8], Option<usize>)>> + '_ {
        self.pieces.iter().map(|p| {
            let (bytes, stored) = match p.packed {
                Some((start, n)) => (self.packed.get(start..start + n)?, Some(n)),
                None => (self.raw.get(p.off..p.off + p.len)?, None),
            };
            Some((p.off as u64, p.len as u64, bytes, stored))
        })
    }

    /// Compresses the chunk (its runs of data, when dropping zero pages).
    fn pack(&mut self, alg: Compression) {
        self.pieces.clear();
        if self.drop_zeros {
            zeros::nonzero_runs(
                &self.raw,
                zeros::MIN_GAP,
                MAX_PIECES,
                self.inner,
                &mut self.runs,
            );
        } else {
            self.runs.clear();
            self.runs.push((0, self.raw.len()));
        }
        let room: usize = self.runs.iter().map(|&(_, len)| bound(alg, len)).sum();
        if self.packed.len() < room {
            // Grown once to what the largest chunk needs, never shrunk: no
            // clearing for every chunk.
            self.packed.resize(room, 0);
        }
        let mut at = 0;
        for &(off, len) in &self.runs {
            let input = self.raw.get(off..off + len).unwrap_or_default();
            let out = self
                .packed
                .get_mut(at..at + bound(alg, len))
                .unwrap_or_default();
            let packed = if looks_incompressible(alg, input, out) {
                None
            } else {
                compress(alg, input, out).map(|n| (at, n))
            };
            if let Some((_, n)) = packed {
                at += n;
            }
            self.pieces.push(Piece { off, len, packed });
        }
    }
}

/// The compression threads, and the chunks given to them and not taken
/// back yet.
pub(super) struct Packer {
    jobs: Option<SyncSender<Packed>>,
    done: Receiver<Packed>,
    threads: Vec<JoinHandle<()>>,
    /// Buffers of chunks taken back, for the next ones.
    free: Vec<Packed>,
    /// Chunks that came back before an older one.
    early: Vec<Packed>,
    /// Chunks given, and taken back.
    given: u64,
    taken: u64,
    /// Most chunks in flight.
    limit: usize,
}

fn stopped() -> ImageError {
    ImageError::InvalidInput("an image compression thread stopped")
}

impl Packer {
    /// Starts the threads, compressing with `alg`.
    pub(super) fn spawn(alg: Compression) -> Result<Packer, ImageError> {
        let n = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_PACKERS);
        // The caller reads the next chunk while the threads compress the
        // ones before: as many in flight as threads keeps them all busy
        // but while a chunk is handed over.
        let limit = n;
        let (jobs, jobs_rx) = sync_channel::<Packed>(limit);
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let (done_tx, done) = channel::<Packed>();
        let mut packer = Packer {
            jobs: Some(jobs),
            done,
            threads: Vec::with_capacity(n),
            free: Vec::new(),
            early: Vec::new(),
            given: 0,
            taken: 0,
            limit,
        };
        for _ in 0..n {
            let (rx, tx) = (Arc::clone(&jobs_rx), done_tx.clone());
            let thread = std::thread::Builder::new()
                .name("ckpt-image-pack".into())
                .spawn(move || loop {
                    // One thread waits for the next chunk while holding
                    // the lock, the others for the lock.
                    let next = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(mut job) = next else { return };
                    job.pack(alg);
                    if tx.send(job).is_err() {
                        return;
                    }
                })
                .map_err(|source| ImageError::Io {
                    op: "start an image compression thread",
                    source,
                })?;
            packer.threads.push(thread);
        }
        Ok(packer)
    }

    /// Whether as many chunks as allowed are in flight: the oldest must be
    /// taken back before another is given.
    pub(super) fn full(&self) -> bool {
        self.given - self.taken >= self.limit as u64
    }

    /// Gives a chunk of `len` bytes, which `fill` writes into a buffer, to
    /// a compression thread; with `drop_zeros`, its pages that hold only
    /// zeros are not stored (`inner`: see [`zeros::nonzero_runs`]). An
    /// error from `fill` is returned (nothing is given).
    pub(super) fn give<E: From<ImageError>>(
        &mut self,
        len: usize,
        drop_zeros: bool,
        inner: (bool, bool),
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.full() {
            return Err(ImageError::InvalidInput("too many chunks in compression").into());
        }
        let mut job = self.free.pop().unwrap_or_else(|| Packed {
            seq: 0,
            raw: Vec::new(),
            packed: Vec::new(),
            drop_zeros: false,
            inner: (false, false),
            pieces: Vec::new(),
            runs: Vec::new(),
        });
        // Every byte is written by `fill`: no need to clear it first.
        job.raw.resize(len, 0);
        if let Err(e) = fill(&mut job.raw) {
            self.free.push(job);
            return Err(e);
        }
        job.seq = self.given;
        job.drop_zeros = drop_zeros;
        job.inner = inner;
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(job).map_err(|_| stopped())?;
        self.given += 1;
        Ok(())
    }

    /// Takes back the oldest chunk given, once it is compressed; `None`
    /// when none is in flight.
    pub(super) fn take(&mut self) -> Result<Option<Packed>, ImageError> {
        if self.taken == self.given {
            return Ok(None);
        }
        let want = self.taken;
        let found = match self.early.iter().position(|p| p.seq == want) {
            Some(i) => self.early.swap_remove(i),
            None => loop {
                let p = self.done.recv().map_err(|_| stopped())?;
                if p.seq == want {
                    break p;
                }
                self.early.push(p);
            },
        };
        self.taken += 1;
        Ok(Some(found))
    }

    /// Keeps a taken chunk's buffers for the next chunks.
    pub(super) fn recycle(&mut self, p: Packed) {
        self.free.push(p);
    }
}

impl Drop for Packer {
    /// Stops the threads: each returns once no chunk is left to take.
    fn drop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn packed(raw: Vec<u8>, drop_zeros: bool) -> Packed {
        let mut p = Packed {
            seq: 0,
            raw,
            packed: Vec::new(),
            drop_zeros,
            inner: (false, false),
            pieces: Vec::new(),
            runs: Vec::new(),
        };
        p.pack(Compression::Lz4);
        p
    }

    /// (offset, length, compressed) of each piece.
    fn shape(p: &Packed) -> Vec<(u64, u64, bool)> {
        p.pieces()
            .map(|x| x.expect("in its buffers"))
            .map(|(off, len, _, stored)| (off, len, stored.is_some()))
            .collect()
    }

    fn noise(len: usize, mut x: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn random_data_is_stored_as_it_is_and_text_compressed() {
        let len = 64 * zeros::PAGE;
        let p = packed(noise(len, 7), false);
        assert_eq!(shape(&p), vec![(0, len as u64, false)]);
        assert_eq!(p.pieces().next().flatten().map(|x| x.2), Some(&p.raw[..]));
        let text: Vec<u8> = b"the kernel restores a signed image of the process "
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect();
        let p = packed(text.clone(), false);
        assert_eq!(shape(&p), vec![(0, len as u64, true)]);
        let (_, _, bytes, _) = p.pieces().next().flatten().expect("one piece");
        let mut back = vec![0u8; len];
        super::super::compress::decompress(Compression::Lz4, bytes, &mut back).expect("decodes");
        assert_eq!(back, text);
    }

    #[test]
    fn zero_pages_are_dropped_only_when_asked() {
        let page = zeros::PAGE;
        // Data in pages 2-3 and 40-63 of 64; zeros elsewhere.
        let mut raw = vec![0u8; 64 * page];
        raw[2 * page..4 * page].copy_from_slice(&noise(2 * page, 3));
        raw[40 * page..].fill(b'x');
        let p = packed(raw.clone(), true);
        assert_eq!(
            shape(&p),
            vec![
                (2 * page as u64, 2 * page as u64, false),
                (40 * page as u64, 24 * page as u64, true)
            ]
        );
        let p = packed(raw, false);
        assert_eq!(shape(&p), vec![(0, 64 * page as u64, true)]);
        // All zeros: nothing to store.
        assert!(shape(&packed(vec![0u8; 64 * page], true)).is_empty());
    }
}
