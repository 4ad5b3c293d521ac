//! One region of an image source, read front to back through a small
//! buffer, each byte hashed (SHA-256) as it is read. The manifest is
//! decoded from it, and the digest its signature covers comes out of the
//! same pass, so the manifest's bytes are never held whole: the helpers'
//! memory does not grow with the manifest's encoded size.
//!
//! Owns: the buffer, the read position and the hash. Trusts nothing: the
//! source may end early or fail, which is kept and reported as the image's
//! error (truncated at an offset, or an I/O error), before any decoding
//! error it caused.

use std::io;

use sha2::{Digest as _, Sha256};

use super::error::ImageError;
use super::reader::{read_at, ImageSource};

/// Bytes read from the source at a time.
const BUF_LEN: usize = 64 * 1024;

/// The region `offset..offset + len` of `src` as an [`io::Read`].
pub(super) struct HashedRegion<'a, S: ?Sized> {
    src: &'a S,
    /// File offset of the next byte to fetch.
    next: u64,
    /// File offset just past the region.
    end: u64,
    buf: Vec<u8>,
    /// Next byte of `buf` to hand out, and how much of `buf` holds data.
    pos: usize,
    filled: usize,
    hasher: Sha256,
    /// The first failure to read the source.
    failed: Option<ImageError>,
    op: &'static str,
}

impl<'a, S: ImageSource + ?Sized> HashedRegion<'a, S> {
    /// The region of `len` bytes at `offset` (already checked to lie within
    /// the source); `op` names the read in an I/O error.
    pub(super) fn new(src: &'a S, offset: u64, len: u64, op: &'static str) -> Self {
        HashedRegion {
            src,
            next: offset,
            end: offset.saturating_add(len),
            buf: Vec::new(),
            pos: 0,
            filled: 0,
            hasher: Sha256::new(),
            failed: None,
            op,
        }
    }

    /// Reads (and hashes) the next piece of the region into the buffer.
    fn fill(&mut self) -> Result<(), ImageError> {
        let n = (self.end - self.next).min(BUF_LEN as u64) as usize;
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        read_at(self.src, &mut self.buf[..n], self.next, self.op)?;
        self.hasher.update(&self.buf[..n]);
        self.next += n as u64;
        self.pos = 0;
        self.filled = n;
        Ok(())
    }

    /// Bytes of the region not handed out yet.
    pub(super) fn unconsumed(&self) -> u64 {
        (self.filled - self.pos) as u64 + (self.end - self.next)
    }

    /// The failure to read the source, if one happened.
    pub(super) fn take_failure(&mut self) -> Option<ImageError> {
        self.failed.take()
    }

    /// Reads and hashes what is left of the region; returns the SHA-256 of
    /// the whole region, or the first failure to read it.
    pub(super) fn finish(mut self) -> Result<[u8; 32], ImageError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        while self.next < self.end {
            self.fill()?;
        }
        Ok(self.hasher.finalize().into())
    }
}

impl<S: ImageSource + ?Sized> io::Read for HashedRegion<'_, S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.filled {
            if self.failed.is_some() {
                return Err(io::Error::other("the image could not be read"));
            }
            if self.next == self.end {
                return Ok(0);
            }
            if let Err(e) = self.fill() {
                self.failed = Some(e);
                return Err(io::Error::other("the image could not be read"));
            }
        }
        let n = out.len().min(self.filled - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
