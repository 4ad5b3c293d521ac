//! Fuzz target `proc_children`: the body is `ckpt_fuzz::proc_children` (see `src/lib.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ckpt_fuzz::proc_children(data));
