//! Chunk compression (`dump --compress`): each chunk compressed on its
//! own, so that it is read, checked and decompressed on its own.
//!
//! Owns: the codec calls. Trusts: nothing in compressed input: a block
//! must decompress to exactly the length the signed manifest gives, into
//! a buffer of that length (at most `MAX_CHUNK_LEN`, checked before any
//! allocation), or the image is malformed.

use super::error::ImageError;
use super::manifest::Compression;

/// The most bytes [`compress`] may write for `len` bytes of input.
pub(crate) fn bound(alg: Compression, len: usize) -> usize {
    match alg {
        Compression::Lz4 => lz4_flex::block::get_maximum_output_size(len),
    }
}

/// Compresses `input` into the start of `out`, which must hold
/// [`bound`] bytes for it. Returns the compressed length when it is
/// smaller than `input`, else `None` (`out` is then meaningless, and the
/// bytes are stored as they are).
pub(crate) fn compress(alg: Compression, input: &[u8], out: &mut [u8]) -> Option<usize> {
    match alg {
        Compression::Lz4 => match lz4_flex::block::compress_into(input, out) {
            Ok(n) if n < input.len() => Some(n),
            _ => None,
        },
    }
}

/// Decompresses `input` into all of `out`: exactly `out.len()` bytes, or
/// an error.
pub(crate) fn decompress(alg: Compression, input: &[u8], out: &mut [u8]) -> Result<(), ImageError> {
    match alg {
        Compression::Lz4 => match lz4_flex::block::decompress_into(input, out) {
            Ok(n) if n == out.len() => Ok(()),
            _ => Err(ImageError::Malformed(
                "a compressed chunk does not decompress to its length",
            )),
        },
    }
}
