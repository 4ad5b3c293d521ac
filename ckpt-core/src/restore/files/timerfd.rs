//! timerfd: created anew by the stub (`timerfd_create`, nothing opened by
//! path) on the saved clock, armed relative to the time it had left at
//! dump (the time the process spent checkpointed does not count), with its
//! period, and its unread expirations put back with `TFD_IOC_SET_TICKS`.
//!
//! A periodic timer that expired and was not read since shows no time
//! left (the kernel re-arms it on read): it is armed for one period.
//!
//! Trusts: nothing; the clock is one of [`crate::model::TIMERFD_CLOCKS`]
//! (checked by validation), the flags are masked to `O_NONBLOCK`.

use crate::inject::structs::ITimerSpec;
use crate::model::OpenFile;
use crate::restore::{Builder, RestoreError};

/// `TFD_IOC_SET_TICKS`, `_IOW('T', 0, u64)`.
const TFD_IOC_SET_TICKS: u64 = 0x4008_5400;

/// What a timerfd was at dump.
pub(in crate::restore) struct Timer {
    pub clockid: i32,
    pub value_ns: u64,
    pub interval_ns: u64,
    pub ticks: u64,
}

impl Builder<'_> {
    /// A new timerfd as `t` was, above `top`, close-on-exec.
    pub(super) fn create_timerfd(
        &mut self,
        d: &OpenFile,
        t: &Timer,
        top: i32,
    ) -> Result<u64, RestoreError> {
        let flags = (libc::TFD_CLOEXEC | (d.flags as i32 & libc::O_NONBLOCK)) as u64;
        let clock = u64::try_from(t.clockid)
            .map_err(|_| RestoreError::Invalid(format!("timerfd clock {}", t.clockid)))?;
        let fd = self.sys(
            "timerfd_create",
            libc::SYS_timerfd_create,
            [clock, flags, 0, 0, 0, 0],
        )?;
        let value_ns = if t.value_ns == 0 && t.ticks != 0 {
            t.interval_ns
        } else {
            t.value_ns
        };
        if value_ns != 0 {
            let spec = self.inj.put_struct(&ITimerSpec {
                interval_ns: t.interval_ns,
                value_ns,
            })?;
            self.sys(
                "timerfd_settime",
                libc::SYS_timerfd_settime,
                [fd, 0, spec, 0, 0, 0],
            )?;
        }
        if t.ticks != 0 {
            let buf = self
                .inj
                .put_bytes(&t.ticks.to_ne_bytes(), "writing timerfd ticks")?;
            self.sys(
                "ioctl(TFD_IOC_SET_TICKS)",
                libc::SYS_ioctl,
                [fd, TFD_IOC_SET_TICKS, buf, 0, 0, 0],
            )?;
        }
        self.move_above(fd, top)
    }
}
