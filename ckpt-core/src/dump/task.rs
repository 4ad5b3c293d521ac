//! The task: registers as seen at the freeze, the full xsave area (its
//! size is the kernel's), the signal mask, the rseq registration, the
//! personality, the child-subreaper flag and the parent-death signal
//! (asked of the task), and `oom_score_adj` (read from `/proc`).
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

    /// `/proc/PID/oom_score_adj`.
    pub(super) fn oom_score_adj(&self) -> Result<i32, DumpError> {
        let text = self.read_proc("oom_score_adj")?;
        text.trim().parse().map_err(|_| DumpError::Proc {
            pid: self.pid,
            what: "oom_score_adj".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a number: {:?}", text.trim()),
            ),
        })
    }
}

/// `prctl(PR_GET_CHILD_SUBREAPER, &int)`, asked of the task.
pub(super) fn query_child_subreaper(inj: &mut Injector<'_>) -> Result<bool, InjectError> {
    Ok(query_prctl_int(
        inj,
        "prctl(PR_GET_CHILD_SUBREAPER)",
        libc::PR_GET_CHILD_SUBREAPER,
    )? != 0)
}

/// `prctl(PR_GET_PDEATHSIG, &int)`, asked of the task.
pub(super) fn query_pdeathsig(inj: &mut Injector<'_>) -> Result<i32, InjectError> {
    query_prctl_int(inj, "prctl(PR_GET_PDEATHSIG)", libc::PR_GET_PDEATHSIG)
}

/// A `prctl` that stores one `int` through its second argument.
fn query_prctl_int(
    inj: &mut Injector<'_>,
    name: &'static str,
    option: libc::c_int,
) -> Result<i32, InjectError> {
    let at = inj.alloc(4, 4, "prctl int")?;
    inj.write(at, &[0; 4], "prctl int")?;
    inj.syscall(name, libc::SYS_prctl, [option as u64, at, 0, 0, 0, 0])?;
    let b = inj.read(at, 4, "prctl int")?;
    Ok(i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// `personality(0xffffffff)`: the current personality, asked of the task.
pub(super) fn query_personality(inj: &mut Injector<'_>) -> Result<u32, InjectError> {
    Ok(inj.syscall(
        "personality",
        libc::SYS_personality,
        [0xffff_ffff, 0, 0, 0, 0, 0],
    )? as u32)
}
