//! Feeds arbitrary bytes to the image reader and the manifest validation:
//! see `ckpt_core::image::fuzzing::image_reader` for the invariants. The
//! body is that plain function, so `cargo test -p ckpt-core` replays the
//! seeds and corpus with exactly what the fuzzer ran.
//!
//! The seed images are about 19 KB, above libFuzzer's default input size:
//!
//!     cargo fuzz run image_reader fuzz/corpus/image_reader fuzz/seeds/image_reader -- -max_len=65536
//!
//! On a stable toolchain, `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none -O ...`
//! builds it without the (nightly-only) address sanitizer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ckpt_core::image::fuzzing::image_reader(data));
