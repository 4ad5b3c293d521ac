//! Feeds arbitrary bytes to the image reader and the manifest validation:
//! see `ckpt_core::image::fuzzing::image_reader` for the invariants. The
//! body is that plain function, so `cargo test -p ckpt-core` replays the
//! seeds and corpus with exactly what the fuzzer ran.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ckpt_core::image::fuzzing::image_reader(data));
