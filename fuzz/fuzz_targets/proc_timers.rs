//! Fuzz target `proc_timers`: the body is `ckpt_fuzz::proc_timers` (see `src/lib.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ckpt_fuzz::proc_timers(data));
