//! Fuzz target `ckpt_toml`: the body is `ckpt_fuzz::ckpt_toml` (see `src/lib.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ckpt_fuzz::ckpt_toml(data));
