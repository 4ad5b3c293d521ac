//! Chunk compression (`dump --compress`): each chunk compressed on its
//! own, so that it is read, checked and decompressed on its own.
//!
//! Owns: the codec calls. Trusts: nothing in compressed input: a block
//! must decompress to exactly the length the signed manifest gives, into
//! a buffer of that length (at most `MAX_CHUNK_LEN`, checked before any
//! allocation), or the image is malformed.

use super::error::ImageError;
use super::manifest::Compression;

/// Compresses `input` into the start of `out`, which it grows to the
/// codec's bound for `input` (and never shrinks: a buffer reused for
/// chunks of one length is zeroed once, not for every chunk). Returns the
/// compressed length when it is smaller than `input`, else `None` (`out`
/// is then meaningless, and the chunk is stored as it is).
pub(crate) fn compress(alg: Compression, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    match alg {
        Compression::Lz4 => {
            let bound = lz4_flex::block::get_maximum_output_size(input.len());
            if out.len() < bound {
                out.resize(bound, 0);
            }
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
        Compression::Lz4 => match lz4_flex::block::decompress_into(input, out) {
            Ok(n) if n == out.len() => Ok(()),
            _ => Err(ImageError::Malformed(
                "a compressed chunk does not decompress to its length",
            )),
        },
    }
}
