//! timerfd: clock, time left, period and unread expirations, from fdinfo
//! (the kernel prints the time left relative to now even for a timer set
//! with `TFD_TIMER_ABSTIME`). Restore creates a new one and arms it
//! relative to the time left.
//!
//! Trusts: fdinfo, parsed strictly. Refuses, naming the fd: a clock other
//! than REALTIME, MONOTONIC and BOOTTIME (the alarm clocks need
//! `CAP_WAKE_ALARM`), and `TFD_TIMER_CANCEL_ON_SET`, which a relative
//! timer cannot keep.

use super::DumpError;
use crate::model::{OpenFileKind, TIMERFD_CLOCKS};
use crate::procfs;

/// The kernel's name of a timerfd in `/proc/PID/fd`.
pub(super) const LINK: &str = "anon_inode:[timerfd]";

/// `TFD_TIMER_CANCEL_ON_SET`.
const CANCEL_ON_SET: u32 = 2;

/// Capture the timerfd `fd` from its fdinfo text.
pub(super) fn capture(pid: i32, fd: i32, info: &str) -> Result<OpenFileKind, DumpError> {
    let t = procfs::fdinfo::parse_timerfd(info).map_err(|source| DumpError::Parse {
        pid,
        what: format!("fdinfo/{fd} (timerfd)"),
        source,
    })?;
    let refuse = |resource: String| Err(DumpError::Unsupported { pid, resource });
    if !TIMERFD_CLOCKS.contains(&t.clockid) {
        return refuse(format!(
            "fd {fd} ({LINK}) on clock {} (only REALTIME, MONOTONIC and BOOTTIME timerfds \
             can be restored)",
            t.clockid
        ));
    }
    if t.settime_flags & CANCEL_ON_SET != 0 {
        return refuse(format!("fd {fd} ({LINK}) set with TFD_TIMER_CANCEL_ON_SET"));
    }
    Ok(OpenFileKind::Timerfd {
        clockid: t.clockid,
        value_ns: t.value_ns,
        interval_ns: t.interval_ns,
        ticks: t.ticks,
        settime_flags: t.settime_flags,
    })
}
