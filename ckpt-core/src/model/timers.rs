//! Timers and resource limits: interval timers and `RLIMIT_*` values, the
//! process-wide settings restored within what the restored credentials may
//! set.
//!
//! Trusts nothing: plain data.

use serde::{Deserialize, Serialize};

/// One interval timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ITimer {
    pub which: u32,
    pub interval_us: u64,
    pub value_us: u64,
}

/// One resource limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}
