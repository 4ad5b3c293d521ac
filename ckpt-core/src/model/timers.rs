//! Timers and resource limits: interval timers, POSIX timers
//! (`timer_create`) and `RLIMIT_*` values, the process-wide settings
//! restored within what the restored credentials may set.
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

/// The clocks a POSIX timer may be on in an image: `CLOCK_REALTIME` (0),
/// `MONOTONIC` (1), `PROCESS_CPUTIME_ID` (2), `THREAD_CPUTIME_ID` (3),
/// `BOOTTIME` (7), `REALTIME_ALARM` (8), `BOOTTIME_ALARM` (9), `TAI` (11),
/// and the kernel's own encoding of the calling process's (-8, -7, -6) and
/// the calling thread's (-4, -3, -2) CPU clocks (profiling, virtual,
/// scheduler time), which is what `/proc/PID/timers` shows for a timer on
/// a CPU clock and what `timer_create` accepts back.
pub const POSIX_TIMER_CLOCKS: [i32; 14] = [0, 1, 2, 3, 7, 8, 9, 11, -8, -7, -6, -4, -3, -2];

/// `sigev_notify` values a POSIX timer may have in an image: `SIGEV_SIGNAL`
/// (0), `SIGEV_NONE` (1), `SIGEV_SIGNAL | SIGEV_THREAD_ID` (4). (glibc's
/// `SIGEV_THREAD` is a `SIGEV_THREAD_ID` timer aimed at its helper thread
/// by the time the kernel sees it.)
pub const POSIX_TIMER_NOTIFY: [i32; 3] = [0, 1, 4];

/// `SIGEV_THREAD_ID`.
pub const SIGEV_THREAD_ID: i32 = 4;

/// One POSIX timer (`timer_create(2)`), recreated with the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixTimer {
    /// The timer id the program holds.
    pub id: i32,
    /// The clock, one of [`POSIX_TIMER_CLOCKS`].
    pub clockid: i32,
    /// `sigev_notify`, one of [`POSIX_TIMER_NOTIFY`].
    pub notify: i32,
    /// `sigev_signo` (kept as the kernel had it, also for `SIGEV_NONE`).
    pub signo: i32,
    /// `sigev_value` (the int or pointer the signal carries).
    pub value: u64,
    /// With `SIGEV_THREAD_ID`: the tid, at dump, of the thread the signal
    /// goes to; restore aims it at the restored thread that had that tid
    /// (one of `ProcessState::threads`). 0 otherwise.
    pub tid: i32,
    /// Time left until the next expiration at dump (0: disarmed), and the
    /// period (0: one-shot), in nanoseconds. Restore arms the timer
    /// relative to the time left: the time the process spent checkpointed
    /// does not count.
    pub value_ns: u64,
    pub interval_ns: u64,
    /// `timer_getoverrun` at dump: recorded, not restored (no kernel
    /// interface sets it; restore gives a notice when it is not 0).
    pub overrun: i32,
}
