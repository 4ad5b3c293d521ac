//! Feeds arbitrary bytes to the image reader: `open` (header, trailer,
//! caps, signature block, signature, manifest), then chunk verification
//! both ways. Nothing may panic, and the two verification paths must agree.
#![no_main]

use ckpt_core::image::{ChunkStreamError, ImageReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = ImageReader::from_source(data) else {
        return;
    };
    let verified = reader.verify_chunks().is_ok();
    let mut total = 0u64;
    let streamed = reader.for_each_chunk(|entry, chunk| {
        assert_eq!(entry.len, chunk.len() as u64);
        total += entry.len;
        Ok::<(), ()>(())
    });
    match streamed {
        Ok(()) => {
            assert!(
                verified,
                "for_each_chunk accepted what verify_chunks refused"
            );
            let listed: u64 = reader.manifest().chunks.iter().map(|c| c.len).sum();
            assert_eq!(total, listed);
        }
        Err(ChunkStreamError::Image(_)) => {
            assert!(
                !verified,
                "verify_chunks accepted what for_each_chunk refused"
            );
        }
        Err(ChunkStreamError::Callback(())) => unreachable!("the callback never fails"),
    }
});
