//! Interval timers, POSIX timers and resource limits. Interval timers and
//! limits are asked of the task through injected `getitimer` and
//! `prlimit64`; POSIX timers are listed by `/proc/PID/timers` (id, clock,
//! notification) and the task is asked for the time each has left and its
//! overrun count (`timer_gettime`, `timer_getoverrun`).
//!
//! A timer on the CPU clock of another process, or one whose signal goes
//! to a thread or process outside the target, is refused, naming it.
//!
//! Trusts: the kernel; `/proc/PID/timers` is parsed strictly.

use nix::errno::Errno;

use super::{proc_path, DumpError, Frozen};
use crate::inject::structs::{ITimerSpec, ITimerVal, Rlimit64};
use crate::inject::{errno_of, InjectError, Injector, KernelStruct};
use crate::model::{ITimer, PosixTimer, Rlimit, SIGEV_THREAD_ID};
use crate::procfs;
use crate::ptrace::PtraceError;

impl Frozen {
    /// The POSIX timers as `/proc/PID/timers` lists them, in id order;
    /// their times are filled in by [`query_posix_timers`].
    pub(super) fn posix_timers(&self) -> Result<Vec<PosixTimer>, DumpError> {
        let pid = self.pid;
        let text = self.read_proc("timers")?;
        let listed = procfs::timers::parse_posix_timers(&text).map_err(self.parse_err("timers"))?;
        let mut out = Vec::with_capacity(listed.len());
        for t in listed {
            let clockid = own_clock(t.clock, pid).ok_or_else(|| {
                self.unsupported(format!(
                    "POSIX timer {} on the CPU clock of another process or thread \
                     (clock id {})",
                    t.id, t.clock
                ))
            })?;
            if t.notify == 2 {
                return Err(self.unsupported(format!(
                    "POSIX timer {} with SIGEV_THREAD notification",
                    t.id
                )));
            }
            let (notify, tid) = if t.to_thread {
                if !std::path::Path::new(&proc_path(pid, &format!("task/{}", t.target))).exists() {
                    return Err(self.unsupported(format!(
                        "POSIX timer {} signalling thread {}, which is not one of the \
                         process's threads",
                        t.id, t.target
                    )));
                }
                (t.notify | SIGEV_THREAD_ID, t.target)
            } else {
                if t.target != pid {
                    return Err(self.unsupported(format!(
                        "POSIX timer {} signalling process {}, not the process itself",
                        t.id, t.target
                    )));
                }
                (t.notify, 0)
            };
            out.push(PosixTimer {
                id: t.id,
                clockid,
                notify,
                signo: t.signo,
                value: t.value,
                tid,
                value_ns: 0,
                interval_ns: 0,
                overrun: 0,
            });
        }
        out.sort_by_key(|t| t.id);
        Ok(out)
    }
}

/// The clock id restore passes to `timer_create` for a timer the kernel
/// shows on `clock`: a fixed clock as it is; a CPU clock of the calling
/// process or thread in the kernel's pid-0 encoding as it is; one naming
/// the target's own pid (the process, or its main thread) in the pid-0
/// encoding; `None` for a CPU clock of anyone else.
fn own_clock(clock: i32, pid: i32) -> Option<i32> {
    if clock >= 0 {
        return Some(clock);
    }
    // CPU clocks: ((~pid) << 3) | (thread ? 4 : 0) | which (0..=2).
    let owner = !(clock >> 3);
    let low = clock & 7;
    if low & 3 == 3 {
        return None;
    }
    if owner == 0 || owner == pid {
        Some((!0i32 << 3) | low)
    } else {
        None
    }
}

/// The time left, period and overrun count of each timer, asked of the
/// task (`timer_gettime`, `timer_getoverrun`).
pub(super) fn query_posix_timers(
    inj: &mut Injector<'_>,
    timers: &mut [PosixTimer],
) -> Result<(), InjectError> {
    for t in timers.iter_mut() {
        let id = u64::from(t.id as u32);
        let at = inj.alloc_struct::<ITimerSpec>()?;
        inj.syscall(
            "timer_gettime",
            libc::SYS_timer_gettime,
            [id, at, 0, 0, 0, 0],
        )?;
        let spec: ITimerSpec = inj.get_struct(at)?;
        t.value_ns = spec.value_ns;
        t.interval_ns = spec.interval_ns;
        let overrun = inj.syscall(
            "timer_getoverrun",
            libc::SYS_timer_getoverrun,
            [id, 0, 0, 0, 0, 0],
        )?;
        t.overrun = i32::try_from(overrun).unwrap_or(i32::MAX);
    }
    Ok(())
}

/// `RLIMIT_*` 0..16, soft and hard, asked in one batch.
pub(super) fn query_rlimits(inj: &mut Injector<'_>) -> Result<Vec<Rlimit>, InjectError> {
    let bytes = query_array::<Rlimit64>(inj, "prlimit64", 16, |k, at| {
        (libc::SYS_prlimit64, [0, k, 0, at, 0, 0])
    })?;
    Ok(bytes
        .chunks_exact(Rlimit64::SIZE)
        .zip(0u32..)
        .map(|(b, resource)| {
            let l = Rlimit64::decode(b);
            Rlimit {
                resource,
                soft: l.cur,
                hard: l.max,
            }
        })
        .collect())
}

/// `ITIMER_REAL`, `ITIMER_VIRTUAL`, `ITIMER_PROF`: interval and value in
/// µs, asked in one batch.
pub(super) fn query_itimers(inj: &mut Injector<'_>) -> Result<Vec<ITimer>, InjectError> {
    let bytes = query_array::<ITimerVal>(inj, "getitimer", 3, |k, at| {
        (libc::SYS_getitimer, [k, at, 0, 0, 0, 0])
    })?;
    Ok(bytes
        .chunks_exact(ITimerVal::SIZE)
        .zip(0u32..)
        .map(|(b, which)| {
            let t = ITimerVal::decode(b);
            ITimer {
                which,
                interval_us: t.interval_us,
                value_us: t.value_us,
            }
        })
        .collect())
}

/// Run `n` calls in one batch, call `k` (made by `call(k, address)`)
/// storing a `T` at the `k`-th place of an array in the scratch area; the
/// array's bytes. Any failure is an error naming `name`.
fn query_array<T: KernelStruct>(
    inj: &mut Injector<'_>,
    name: &'static str,
    n: u64,
    call: impl Fn(u64, u64) -> (libc::c_long, [u64; 6]),
) -> Result<Vec<u8>, InjectError> {
    let size = T::SIZE as u64;
    let area = inj.alloc(size * n, 8, T::WHAT)?;
    let calls: Vec<_> = (0..n).map(|k| call(k, area + k * size)).collect();
    let results = inj.syscall_batch(&calls)?;
    let failed = results.iter().copied().find(|&r| r < 0);
    if failed.is_some() || results.len() < calls.len() {
        let pid = inj.pid();
        return Err(InjectError::Trace {
            pid,
            source: PtraceError::Syscall {
                pid,
                name,
                errno: failed.map_or(Errno::EIO, errno_of),
            },
        });
    }
    inj.read(area, T::SIZE * calls.len(), T::WHAT)
}

#[cfg(test)]
mod tests {
    use super::own_clock;

    #[test]
    fn cpu_clocks_of_the_process_itself_are_kept() {
        // Fixed clocks as they are.
        assert_eq!(own_clock(0, 100), Some(0));
        assert_eq!(own_clock(7, 100), Some(7));
        // The kernel's pid-0 encodings (process: -8..=-6, thread: -4..=-2).
        for c in [-8, -7, -6, -4, -3, -2] {
            assert_eq!(own_clock(c, 100), Some(c));
        }
        // The process's own pid becomes the pid-0 encoding.
        let own = (!100i32 << 3) | 2;
        assert_eq!(own_clock(own, 100), Some(-6));
        // Another process's CPU clock, or an invalid clock kind, is not.
        assert_eq!(own_clock((!101i32 << 3) | 2, 100), None);
        assert_eq!(own_clock(-5, 100), None);
        assert_eq!(own_clock(-1, 100), None);
    }
}
