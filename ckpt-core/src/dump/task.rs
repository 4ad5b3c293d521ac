//! The task: registers as seen at the freeze, the full xsave area (its
//! size is the kernel's), the signal mask, the rseq registration, and the
//! personality (asked of the task).
//!
//! Trusts: the kernel.

use super::{ptrace_err, DumpError, Frozen};
use crate::arch::x86_64 as arch;
use crate::inject::{InjectError, Injector};
use crate::model::{GpRegs, Rseq};
use crate::sys;

impl Frozen {
    /// Registers (before any fix-up), xsave area, blocked mask and rseq
    /// registration of the thread.
    pub(super) fn thread_registers(
        &self,
    ) -> Result<(GpRegs, Vec<u8>, u64, Option<Rseq>), DumpError> {
        let pid = self.pid;
        let regs = arch::from_user_regs(&self.saved);
        let xsave =
            sys::get_xstate(pid).map_err(|errno| ptrace_err(pid, "GETREGSET(XSTATE)", errno))?;
        let sigmask =
            sys::get_sigmask(pid).map_err(|errno| ptrace_err(pid, "GETSIGMASK", errno))?;
        let rseq = sys::get_rseq(pid)
            .map_err(|errno| ptrace_err(pid, "GET_RSEQ_CONFIGURATION", errno))?
            .map(|(abi_pointer, abi_size, signature)| Rseq {
                abi_pointer,
                abi_size,
                signature,
            });
        Ok((regs, xsave, sigmask, rseq))
    }
}

/// `personality(0xffffffff)`: the current personality, asked of the task.
pub(super) fn query_personality(inj: &mut Injector<'_>) -> Result<u32, InjectError> {
    Ok(inj.syscall(
        "personality",
        libc::SYS_personality,
        [0xffff_ffff, 0, 0, 0, 0, 0],
    )? as u32)
}
