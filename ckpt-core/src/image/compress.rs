//! Chunk compression (`dump --compress`): each chunk compressed on its
//! own, so that it is read, checked and decompressed on its own.
//!
//! Owns: the codec calls. Trusts: nothing in compressed input: a block
//! must decompress to exactly the length the signed manifest gives, into
//! a buffer of that length (at most `MAX_CHUNK_LEN`, checked before any
//! allocation), or the image is malformed.

use super::error::ImageError;
use super::manifest::Compression;

/// Compresses `input` into `out` (cleared first). Returns `false` when
/// the result would not be smaller than `input` (`out` is then
/// meaningless, and the chunk is stored as it is).
pub(crate) fn compress(alg: Compression, input: &[u8], out: &mut Vec<u8>) -> bool {
    match alg {
        Compression::Lz4 => {
            out.clear();
            out.resize(lz4_flex::block::get_maximum_output_size(input.len()), 0);
            match lz4_flex::block::compress_into(input, out) {
                Ok(n) if n < input.len() => {
                    out.truncate(n);
                    true
                }
                _ => false,
            }
        }
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
