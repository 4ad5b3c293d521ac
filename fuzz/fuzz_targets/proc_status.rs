//! Fuzz target `proc_status`: the body is `ckpt_fuzz::proc_status` (see `src/lib.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ckpt_fuzz::proc_status(data));
