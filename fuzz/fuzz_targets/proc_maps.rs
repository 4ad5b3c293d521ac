//! Fuzz target `proc_maps`: the body is `ckpt_fuzz::proc_maps` (see `src/lib.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ckpt_fuzz::proc_maps(data));
