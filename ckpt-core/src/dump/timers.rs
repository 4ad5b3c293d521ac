//! Interval timers and resource limits, asked of the task through
//! injected `getitimer` and `prlimit64`.
//!
//! Trusts: the kernel.

use crate::inject::structs::{ITimerVal, Rlimit64};
use crate::inject::{InjectError, Injector, KernelStruct};
use crate::model::{ITimer, Rlimit};

/// `RLIMIT_*` 0..16, soft and hard.
pub(super) fn query_rlimits(inj: &mut Injector<'_>) -> Result<Vec<Rlimit>, InjectError> {
    let mut rlimits = Vec::new();
    for res in 0u32..16 {
        let old = inj.alloc(Rlimit64::SIZE as u64, 8, Rlimit64::WHAT)?;
        inj.syscall(
            "prlimit64",
            libc::SYS_prlimit64,
            [0, res as u64, 0, old, 0, 0],
        )?;
        let l: Rlimit64 = inj.get_struct(old)?;
        rlimits.push(Rlimit {
            resource: res,
            soft: l.cur,
            hard: l.max,
        });
    }
    Ok(rlimits)
}

/// `ITIMER_REAL`, `ITIMER_VIRTUAL`, `ITIMER_PROF`: interval and value in µs.
pub(super) fn query_itimers(inj: &mut Injector<'_>) -> Result<Vec<ITimer>, InjectError> {
    let mut itimers = Vec::new();
    for which in 0u32..3 {
        let old = inj.alloc(ITimerVal::SIZE as u64, 8, ITimerVal::WHAT)?;
        inj.syscall(
            "getitimer",
            libc::SYS_getitimer,
            [which as u64, old, 0, 0, 0, 0],
        )?;
        let t: ITimerVal = inj.get_struct(old)?;
        itimers.push(ITimer {
            which,
            interval_us: t.interval_us,
            value_us: t.value_us,
        });
    }
    Ok(itimers)
}
