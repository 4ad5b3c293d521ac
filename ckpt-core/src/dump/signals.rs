//! Signals: every disposition and the alternate stack (asked of the task
//! through injected `rt_sigaction` and `sigaltstack`), and the queued
//! signals, per thread and shared (`PTRACE_PEEKSIGINFO`).
//!
//! Trusts: the kernel; siginfo is kept as opaque bytes.

use super::{ptrace_err, DumpError, Frozen, MAX_PENDING};
use crate::inject::structs::{KSigAction, StackT};
use crate::inject::{InjectError, Injector, KernelStruct};
use crate::model::{PendingSignal, SigAction};
use crate::sys;

impl Frozen {
    /// The signals queued to thread `tid` itself.
    pub(super) fn thread_pending_signals(&self, tid: i32) -> Result<Vec<PendingSignal>, DumpError> {
        self.peek_pending(tid, false)
    }

    /// The signals queued to the whole process (read once, through the
    /// leader).
    pub(super) fn shared_pending_signals(&self) -> Result<Vec<PendingSignal>, DumpError> {
        self.peek_pending(self.pid, true)
    }

    fn peek_pending(&self, tid: i32, shared: bool) -> Result<Vec<PendingSignal>, DumpError> {
        Ok(sys::peek_siginfo(tid, shared, MAX_PENDING)
            .map_err(|errno| ptrace_err(tid, "PEEKSIGINFO", errno))?
            .into_iter()
            .map(|siginfo| PendingSignal { shared, siginfo })
            .collect())
    }
}

/// Every signal's disposition (SIGKILL and SIGSTOP have none to save).
pub(super) fn query_sigactions(inj: &mut Injector<'_>) -> Result<Vec<SigAction>, InjectError> {
    let mut sigactions = Vec::new();
    for sig in 1u32..=64 {
        if sig == libc::SIGKILL as u32 || sig == libc::SIGSTOP as u32 {
            continue;
        }
        let old = inj.alloc(KSigAction::SIZE as u64, 8, KSigAction::WHAT)?;
        let r = inj.syscall_raw(libc::SYS_rt_sigaction, [sig as u64, 0, old, 8, 0, 0])?;
        if r < 0 {
            continue; // signals the kernel does not know (none on x86_64)
        }
        let a: KSigAction = inj.get_struct(old)?;
        sigactions.push(SigAction {
            signal: sig,
            handler: a.handler,
            flags: a.flags,
            restorer: a.restorer,
            mask: a.mask,
        });
    }
    Ok(sigactions)
}

/// The alternate signal stack: (ss_sp, ss_flags, ss_size).
pub(super) fn query_altstack(inj: &mut Injector<'_>) -> Result<(u64, i32, u64), InjectError> {
    let old = inj.alloc(StackT::SIZE as u64, 8, StackT::WHAT)?;
    inj.syscall("sigaltstack", libc::SYS_sigaltstack, [0, old, 0, 0, 0, 0])?;
    let s: StackT = inj.get_struct(old)?;
    Ok((s.sp, s.flags, s.size))
}
