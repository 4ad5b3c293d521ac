//! Signals: dispositions (process-wide) and queued signals (per thread or
//! shared). The mask and alternate stack are per thread
//! ([`super::ThreadState`]).
//!
//! Trusts nothing: plain data, checked by [`crate::image::validate`].

use serde::{Deserialize, Serialize};

/// One signal's disposition (kernel `struct sigaction` layout on x86_64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAction {
    pub signal: u32,
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// A signal waiting to be delivered (from `PTRACE_PEEKSIGINFO`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignal {
    /// True when queued to the whole process, false when to this thread.
    pub shared: bool,
    /// Raw 128-byte `siginfo_t`.
    pub siginfo: Vec<u8>,
}
