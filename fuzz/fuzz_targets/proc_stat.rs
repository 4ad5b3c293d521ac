//! Fuzz target `proc_stat`: the body is `ckpt_fuzz::proc_stat` (see `src/lib.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ckpt_fuzz::proc_stat(data));
