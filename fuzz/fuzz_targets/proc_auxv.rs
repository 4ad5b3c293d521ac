//! Fuzz target `proc_auxv`: the body is `ckpt_fuzz::proc_auxv` (see `src/lib.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ckpt_fuzz::proc_auxv(data));
