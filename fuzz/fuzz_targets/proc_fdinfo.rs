//! Fuzz target `proc_fdinfo`: the body is `ckpt_fuzz::proc_fdinfo` (see `src/lib.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ckpt_fuzz::proc_fdinfo(data));
