//! Interval timers, POSIX timers and resource limits: process-wide
//! settings restored within what the restored credentials may set (a limit
//! the user may not raise is kept at the user's own, with a notice).
//!
//! POSIX timers get their saved ids back: with
//! `PR_TIMER_CREATE_RESTORE_IDS` on (Linux 6.15 and later) `timer_create`
//! takes the id it is given; restore fails, naming the timer, on a kernel
//! without it. Each is armed relative to the time it had left at dump.
//! The overrun count cannot be set (a notice says so when it was not 0);
//! an alarm clock the restored credentials may not use
//! (`CAP_WAKE_ALARM`) or this machine lacks (no RTC) becomes its plain
//! clock, with a notice. A timer signalling a thread signals the restored
//! thread that had its tid (today the main thread; timers are created
//! after the threads, so every thread they name exists).
//!
//! Trusts: nothing; unknown itimers and limits are skipped, POSIX timers
//! were checked by `image::validate`.

use nix::errno::Errno;

use super::{Builder, RestoreError};
use crate::inject::errno_of;
use crate::inject::structs::{ITimerSpec, ITimerVal, Rlimit64, SigEvent};
use crate::model::{PosixTimer, SIGEV_THREAD_ID};

/// `prctl(PR_TIMER_CREATE_RESTORE_IDS, ...)` (Linux 6.15).
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
const PR_TIMER_CREATE_RESTORE_IDS_OFF: u64 = 0;
const PR_TIMER_CREATE_RESTORE_IDS_ON: u64 = 1;

impl Builder<'_> {
    /// `prlimit64` for every saved limit the stub does not already have
    /// (its `/proc` limits, inherited from the caller, usually match most
    /// of them; each injected syscall is two ptrace stops); failures
    /// become notices.
    pub(super) fn restore_rlimits(&mut self) -> Result<(), RestoreError> {
        let p = self.p;
        let current = std::fs::read_to_string(format!("/proc/{}/limits", self.pid()))
            .ok()
            .and_then(|t| crate::procfs::limits::parse_limits(&t).ok())
            .unwrap_or_default();
        for l in &p.rlimits {
            if l.resource >= 16 {
                continue;
            }
            if current
                .iter()
                .any(|c| c.resource == l.resource && c.soft == l.soft && c.hard == l.hard)
            {
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

    /// Every POSIX timer, with its id, clock, notification and the time it
    /// had left.
    pub(super) fn restore_posix_timers(&mut self) -> Result<(), RestoreError> {
        let timers = &self.p.posix_timers;
        if timers.is_empty() {
            return Ok(());
        }
        let r = self.sys_raw(
            libc::SYS_prctl,
            [
                PR_TIMER_CREATE_RESTORE_IDS,
                PR_TIMER_CREATE_RESTORE_IDS_ON,
                0,
                0,
                0,
                0,
            ],
        )?;
        if r < 0 {
            return Err(RestoreError::Incompatible(format!(
                "POSIX timer {} cannot get its id back: this kernel lacks \
                 PR_TIMER_CREATE_RESTORE_IDS (Linux 6.15 or later) ({})",
                timers.first().map_or(0, |t| t.id),
                errno_of(r)
            )));
        }
        for t in timers {
            self.create_posix_timer(t)?;
        }
        self.sys(
            "prctl(PR_TIMER_CREATE_RESTORE_IDS, OFF)",
            libc::SYS_prctl,
            [
                PR_TIMER_CREATE_RESTORE_IDS,
                PR_TIMER_CREATE_RESTORE_IDS_OFF,
                0,
                0,
                0,
                0,
            ],
        )?;
        Ok(())
    }

    /// `timer_create` with the saved id, then `timer_settime` when armed.
    fn create_posix_timer(&mut self, t: &PosixTimer) -> Result<(), RestoreError> {
        let tid = if t.notify & SIGEV_THREAD_ID != 0 {
            self.restored_tid(t.tid).ok_or_else(|| {
                RestoreError::Unsupported(format!(
                    "POSIX timer {} signalling thread {}, which is not restored",
                    t.id, t.tid
                ))
            })?
        } else {
            0
        };
        let mut clock = t.clockid;
        let mut r = self.timer_create(t, clock, tid)?;
        // An alarm clock needs CAP_WAKE_ALARM and an RTC: fall back to the
        // clock it is an alarm on.
        let plain = match clock {
            libc::CLOCK_REALTIME_ALARM => Some(libc::CLOCK_REALTIME),
            libc::CLOCK_BOOTTIME_ALARM => Some(libc::CLOCK_BOOTTIME),
            _ => None,
        };
        if let (true, Some(plain)) = (r < 0, plain) {
            if matches!(errno_of(r), Errno::EPERM | Errno::EOPNOTSUPP) {
                self.notices.push(format!(
                    "POSIX timer {}: alarm clock {clock} not available to the restored \
                     process ({}): restored on clock {plain}, which does not wake the \
                     machine from suspend",
                    t.id,
                    errno_of(r)
                ));
                clock = plain;
                r = self.timer_create(t, clock, tid)?;
            }
        }
        if r < 0 {
            return Err(self.timer_err("timer_create", t, errno_of(r)));
        }
        if t.value_ns != 0 {
            let id = u64::from(t.id as u32);
            let spec = self.inj.put_struct(&ITimerSpec {
                interval_ns: t.interval_ns,
                value_ns: t.value_ns,
            })?;
            let r = self.sys_raw(libc::SYS_timer_settime, [id, 0, spec, 0, 0, 0])?;
            if r < 0 {
                return Err(self.timer_err("timer_settime", t, errno_of(r)));
            }
        }
        if t.overrun != 0 {
            self.notices.push(format!(
                "POSIX timer {}: overrun count {} not restored (no kernel interface sets it; \
                 timer_getoverrun reads 0 until the timer next expires)",
                t.id, t.overrun
            ));
        }
        Ok(())
    }

    /// `timer_create(clock, &sigevent, &id)` with `id` preset to the saved
    /// one; the raw result, after checking the kernel kept the id.
    fn timer_create(&mut self, t: &PosixTimer, clock: i32, tid: i32) -> Result<i64, RestoreError> {
        let ev = self.inj.put_struct(&SigEvent {
            value: t.value,
            signo: t.signo,
            notify: t.notify,
            tid,
        })?;
        let idp = self
            .inj
            .put_bytes(&t.id.to_ne_bytes(), "writing a timer id")?;
        let r = self.sys_raw(
            libc::SYS_timer_create,
            [i64::from(clock) as u64, ev, idp, 0, 0, 0],
        )?;
        if r < 0 {
            return Ok(r);
        }
        let b = self.inj.read(idp, 4, "reading back a timer id")?;
        let got = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        if got != t.id {
            return Err(RestoreError::Incompatible(format!(
                "POSIX timer {} was created with id {got}",
                t.id
            )));
        }
        Ok(r)
    }

    /// A timer this machine or these credentials cannot recreate.
    fn timer_err(&self, name: &'static str, t: &PosixTimer, errno: Errno) -> RestoreError {
        RestoreError::Incompatible(format!(
            "POSIX timer {} on clock {} (restored process {}): {name}: {errno}",
            t.id,
            t.clockid,
            self.pid()
        ))
    }

    /// The tid, in the restored process, of the thread that had `saved`
    /// at dump (the leader is the stub itself; the others are in the map
    /// [`Builder::restore_threads`] made).
    pub(super) fn restored_tid(&self, saved: i32) -> Option<i32> {
        if let Some(&(_, new)) = self.tid_map.iter().find(|(old, _)| *old == saved) {
            return Some(new);
        }
        let main = self.p.threads.first().map(|t| t.tid);
        (Some(saved) == main).then_some(self.ns_pid)
    }
}
