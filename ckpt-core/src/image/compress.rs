//! Chunk compression (`dump --compress`): each chunk compressed on its
//! own, so that it is read, checked and decompressed on its own; with
//! [`Compression::Lz4Blocks`], as a run of blocks of at most
//! [`MAX_BLOCK_LEN`] bytes, each with a header, so that a chunk of any
//! length is read a block at a time.
//!
//! Owns: the codec calls and the block headers. Trusts: nothing in
//! compressed input: a block must decompress to exactly the length its
//! header gives (at most [`MAX_BLOCK_LEN`], into a buffer of that
//! length), the headers must add up to the lengths the signed manifest
//! gives, and a chunk compressed whole must decompress to exactly its
//! length (at most `MAX_CHUNK_LEN`, checked before any allocation), or
//! the image is malformed.

use super::error::ImageError;
use super::manifest::Compression;

/// The most bytes [`compress`] may write for `len` bytes of input.
pub(crate) fn bound(alg: Compression, len: usize) -> usize {
    match alg {
        Compression::Lz4 | Compression::Lz4Blocks => lz4_flex::block::get_maximum_output_size(len),
    }
}

/// Compresses `input` into the start of `out`, which must hold
/// [`bound`] bytes for it. Returns the compressed length when it is
/// smaller than `input`, else `None` (`out` is then meaningless, and the
/// bytes are stored as they are).
pub(crate) fn compress(alg: Compression, input: &[u8], out: &mut [u8]) -> Option<usize> {
    match alg {
        Compression::Lz4 | Compression::Lz4Blocks => {
            match lz4_flex::block::compress_into(input, out) {
                Ok(n) if n < input.len() => Some(n),
                _ => None,
            }
        }
    }
}

/// Decompresses `input` into all of `out`: exactly `out.len()` bytes, or
/// an error.
pub(crate) fn decompress(alg: Compression, input: &[u8], out: &mut [u8]) -> Result<(), ImageError> {
    match alg {
        Compression::Lz4 | Compression::Lz4Blocks => {
            match lz4_flex::block::decompress_into(input, out) {
                Ok(n) if n == out.len() => Ok(()),
                _ => Err(ImageError::Malformed(
                    "a compressed chunk does not decompress to its length",
                )),
            }
        }
    }
}

/// Most bytes of a chunk in one block of a [`Compression::Lz4Blocks`]
/// chunk (what the writer compresses at a time).
pub const MAX_BLOCK_LEN: usize = 256 << 10;

/// Bytes of a block's header: its length in the chunk, then its length in
/// the file, each a little-endian u32.
pub(crate) const BLOCK_HEADER_LEN: usize = 8;

/// The header of a block of `len` bytes of a chunk stored in `stored`
/// bytes (fewer: compressed; as many: as they are).
pub(crate) fn block_header(len: usize, stored: usize) -> [u8; BLOCK_HEADER_LEN] {
    let mut h = [0u8; BLOCK_HEADER_LEN];
    let (a, b) = h.split_at_mut(4);
    a.copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    b.copy_from_slice(&u32::try_from(stored).unwrap_or(u32::MAX).to_le_bytes());
    h
}

/// A block's header, checked: its length in the chunk (1 ..=
/// [`MAX_BLOCK_LEN`]) and in the file (1 ..= that).
pub(crate) fn parse_block_header(h: [u8; BLOCK_HEADER_LEN]) -> Result<(usize, usize), ImageError> {
    let [a, b, c, d, e, f, g, i] = h;
    let len = u32::from_le_bytes([a, b, c, d]) as usize;
    let stored = u32::from_le_bytes([e, f, g, i]) as usize;
    if len == 0 || len > MAX_BLOCK_LEN || stored == 0 || stored > len {
        return Err(ImageError::Malformed(
            "a compressed chunk has a block header out of range",
        ));
    }
    Ok((len, stored))
}

/// Decodes one block whose `stored` bytes were read: into `out` (exactly
/// its length in the chunk), unless they are stored as they are; returns
/// the block's bytes of the chunk.
pub(crate) fn decode_block<'a>(
    alg: Compression,
    stored: &'a [u8],
    out: &'a mut [u8],
) -> Result<&'a [u8], ImageError> {
    if stored.len() == out.len() {
        return Ok(stored);
    }
    decompress(alg, stored, out)?;
    Ok(out)
}
