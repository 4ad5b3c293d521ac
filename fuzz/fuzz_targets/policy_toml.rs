//! Fuzz target `policy_toml`: the body is `ckpt_fuzz::policy_toml` (see `src/lib.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ckpt_fuzz::policy_toml(data));
