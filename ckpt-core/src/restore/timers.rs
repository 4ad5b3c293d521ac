//! Interval timers and resource limits: process-wide settings restored
//! within what the restored credentials may set (a limit the user may not
//! raise is kept at the user's own, with a notice).
//!
//! Trusts: nothing; unknown timers and limits are skipped.

use super::{Builder, RestoreError};
use crate::inject::errno_of;
use crate::inject::structs::{ITimerVal, Rlimit64};

impl Builder<'_> {
    /// `prlimit64` for every saved limit; failures become notices.
    pub(super) fn restore_rlimits(&mut self) -> Result<(), RestoreError> {
        let p = self.p;
        for l in &p.rlimits {
            if l.resource >= 16 {
                continue;
            }
            let lim = self.inj.put_struct(&Rlimit64 {
                cur: l.soft,
                max: l.hard,
            })?;
            let r = self.sys_raw(
                libc::SYS_prlimit64,
                [0, u64::from(l.resource), lim, 0, 0, 0],
            )?;
            if r < 0 {
                self.notices.push(format!(
                    "resource limit {} not restored to {}/{} ({}): kept this user's limit",
                    l.resource,
                    l.soft,
                    l.hard,
                    errno_of(r)
                ));
            }
        }
        Ok(())
    }

    /// `setitimer` for every armed interval timer.
    pub(super) fn restore_itimers(&mut self) -> Result<(), RestoreError> {
        let p = self.p;
        for t in &p.itimers {
            if t.which > 2 || (t.value_us == 0 && t.interval_us == 0) {
                continue;
            }
            let val = self.inj.put_struct(&ITimerVal {
                interval_us: t.interval_us,
                value_us: t.value_us,
            })?;
            self.sys(
                "setitimer",
                libc::SYS_setitimer,
                [u64::from(t.which), val, 0, 0, 0, 0],
            )?;
        }
        Ok(())
    }
}
