//! Fuzz target `proc_limits`: the body is `ckpt_fuzz::proc_limits` (see `src/lib.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ckpt_fuzz::proc_limits(data));
