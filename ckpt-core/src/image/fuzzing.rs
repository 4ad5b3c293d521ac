//! The image fuzz oracle: one function, run by the cargo-fuzz target
//! (`fuzz/fuzz_targets/image_reader.rs`) and, over the committed seeds and
//! corpus, by `cargo test` (so CI replays every input the fuzzer kept).
//!
//! Owns: the invariants an image reader must keep on any input. It panics
//! when one breaks: that is how a fuzzer learns of a bug. Trusts: nothing.

use super::manifest::{decode, encode, Manifest};
use super::validate::validate;
use super::{ChunkStreamError, ImageReader};

/// Feeds `data` to the reader as a whole image, and to the manifest decoder
/// and validation as a bare manifest. Nothing may panic or abort; an image
/// that opens passes validation, its manifest re-encodes to a value that
/// decodes the same, and the chunk reading paths agree (whole chunks and
/// streamed pieces give the same bytes, and verification accepts exactly
/// what reading does).
pub fn image_reader(data: &[u8]) {
    // As a bare manifest: decoding is bounded, validation total.
    if let Ok(m) = decode::<Manifest>(data, "manifest") {
        let _ = validate(&m);
    }

    let Ok(reader) = ImageReader::from_source(data) else {
        return;
    };
    let m = reader.manifest();
    assert!(validate(m).is_ok(), "an image opened that fails validation");
    let again: Option<Manifest> = encode(m)
        .ok()
        .and_then(|bytes| decode(&bytes, "manifest").ok());
    assert!(
        again.as_ref() == Some(m),
        "the manifest does not survive re-encoding"
    );

    let verified = reader.verify_chunks().is_ok();
    let mut total = 0u64;
    // Each chunk read whole, then streamed in small pieces (a compressed
    // chunk a block at a time): the same bytes, or both refused.
    let mut piece = vec![0u8; 1000];
    let mut index = 0;
    let streamed = reader.for_each_chunk(|entry, chunk| {
        assert_eq!(entry.len, chunk.len() as u64);
        let mut again = Vec::new();
        let pieces = reader.stream_chunk(index, &mut piece, |off, bytes| {
            assert_eq!(off, again.len() as u64, "pieces out of order");
            again.extend_from_slice(bytes);
            Ok::<(), ()>(())
        });
        assert!(
            matches!(pieces, Ok(e) if std::ptr::eq(e, entry)) && again == chunk,
            "stream_chunk disagrees with for_each_chunk"
        );
        index += 1;
        total += entry.len;
        Ok::<(), ()>(())
    });
    match streamed {
        Ok(()) => {
            assert!(
                verified,
                "for_each_chunk accepted what verify_chunks refused"
            );
            let listed: u64 = m.chunks.iter().map(|c| c.len).sum();
            assert_eq!(total, listed);
        }
        Err(ChunkStreamError::Image(_)) => {
            assert!(
                !verified,
                "verify_chunks accepted what for_each_chunk refused"
            );
        }
        Err(ChunkStreamError::Callback(())) => {
            panic!("the callback never fails")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use std::path::Path;

    /// Replays every committed seed and corpus input of the fuzz target.
    /// The seeds must exist: a missing directory fails the test.
    #[test]
    fn replay_image_reader_seeds_and_corpus() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut n = 0;
        for (dir, required) in [("seeds/image_reader", true), ("corpus/image_reader", false)] {
            let dir = fuzz.join(dir);
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("{}: {e}", dir.display()),
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                super::image_reader(&data);
                n += 1;
            }
        }
        assert!(n >= 3, "only {n} inputs replayed");
        println!("replayed {n} image_reader inputs");
    }
}
