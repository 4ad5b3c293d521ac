//! Fuzz target `proc_smaps`: the body is `ckpt_fuzz::proc_smaps` (see `src/lib.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ckpt_fuzz::proc_smaps(data));
