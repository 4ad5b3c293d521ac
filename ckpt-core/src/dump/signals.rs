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

/// Every signal's disposition (SIGKILL and SIGSTOP have none to save),
/// asked in batches ([`Injector::syscall_batch`]) into one array.
pub(super) fn query_sigactions(inj: &mut Injector<'_>) -> Result<Vec<SigAction>, InjectError> {
    let signals: Vec<u32> = (1u32..=64)
        .filter(|&s| s != libc::SIGKILL as u32 && s != libc::SIGSTOP as u32)
        .collect();
    let size = KSigAction::SIZE as u64;
    let mut sigactions = Vec::with_capacity(signals.len());
    let mut next = 0;
    while let Some(rest) = signals.get(next..).filter(|r| !r.is_empty()) {
        let area = inj.alloc(size * rest.len() as u64, 8, KSigAction::WHAT)?;
        let calls: Vec<(libc::c_long, [u64; 6])> = rest
            .iter()
            .zip(0u64..)
            .map(|(&sig, k)| {
                (
                    libc::SYS_rt_sigaction,
                    [u64::from(sig), 0, area + k * size, 8, 0, 0],
                )
            })
            .collect();
        let results = inj.syscall_batch(&calls)?;
        // The batch stops after a failure (a signal the kernel does not
        // know: none on x86_64), which is skipped.
        let ran = results.len();
        let bytes = inj.read(area, KSigAction::SIZE * ran, "reading back sigactions")?;
        for ((&sig, r), b) in rest
            .iter()
            .zip(&results)
            .zip(bytes.chunks_exact(KSigAction::SIZE))
        {
            if *r < 0 {
                continue;
            }
            let a = KSigAction::decode(b);
            sigactions.push(SigAction {
                signal: sig,
                handler: a.handler,
                flags: a.flags,
                restorer: a.restorer,
                mask: a.mask,
            });
        }
        next += ran.max(1);
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
