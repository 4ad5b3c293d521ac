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

use super::compress::compress;
use super::error::ImageError;
use super::manifest::Compression;

/// Most compression threads, whatever the number of CPUs.
const MAX_PACKERS: usize = 4;

/// A chunk on its way through a compression thread.
pub(super) struct Packed {
    seq: u64,
    raw: Vec<u8>,
    packed: Vec<u8>,
    /// Bytes of `packed` that hold the compressed chunk, when fewer than
    /// the chunk's.
    packed_len: Option<usize>,
}

impl Packed {
    /// The compressed bytes, when they are fewer than the chunk's.
    pub(super) fn compressed(&self) -> Option<&[u8]> {
        self.packed_len.and_then(|n| self.packed.get(..n))
    }

    /// The chunk as it was read.
    pub(super) fn raw(&self) -> &[u8] {
        &self.raw
    }
}

/// The compression threads, and the chunks given to them and not taken
/// back yet.
pub(super) struct Packer {
    jobs: Option<SyncSender<Packed>>,
    done: Receiver<Packed>,
    threads: Vec<JoinHandle<()>>,
    /// Buffers of chunks taken back, for the next ones.
    free: Vec<(Vec<u8>, Vec<u8>)>,
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
                    job.packed_len = compress(alg, &job.raw, &mut job.packed);
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
    /// a compression thread. An error from `fill` is returned (nothing is
    /// given).
    pub(super) fn give<E: From<ImageError>>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.full() {
            return Err(ImageError::InvalidInput("too many chunks in compression").into());
        }
        let (mut raw, packed) = self.free.pop().unwrap_or_default();
        // Every byte is written by `fill`: no need to clear it first.
        raw.resize(len, 0);
        fill(&mut raw)?;
        let job = Packed {
            seq: self.given,
            raw,
            packed,
            packed_len: None,
        };
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
        self.free.push((p.raw, p.packed));
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
