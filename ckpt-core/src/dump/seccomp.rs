//! The seccomp filter chain and the scheduling attributes.
//!
//! Seccomp: every filter of the chain, read with
//! `PTRACE_SECCOMP_GET_FILTER` and `PTRACE_SECCOMP_GET_METADATA`. Those
//! need `CAP_SYS_ADMIN` in the tracer: the dump helper holds it, and reads
//! only the filters of the target it has frozen, which the caller was
//! allowed to ptrace-attach to (checked before and after the freeze). The
//! filters only restrict the process; they are recorded, never
//! interpreted beyond the refusals below.
//!
//! Refused, naming the filter: strict mode (`SECCOMP_MODE_STRICT`), a
//! filter that hands syscalls to a supervisor (`SECCOMP_RET_USER_NOTIF`:
//! the listener is outside the image) and one with a flag the kernel
//! reports that restore does not know. `SECCOMP_FILTER_FLAG_LOG` is kept.
//!
//! While a target under a filter is frozen, its filters are suspended
//! (`PTRACE_O_SUSPEND_SECCOMP`, also `CAP_SYS_ADMIN`) so that the
//! dump's injected queries are not denied (or the target killed) by them;
//! the suspension ends when the dump detaches.
//!
//! Scheduling: `sched_getattr` of the main thread, from the outside.
//!
//! Trusts: the kernel.

use super::{ptrace_err, DumpError, Frozen};
use crate::model::{Sched, SeccompFilter};
use crate::sys;

/// `SECCOMP_FILTER_FLAG_LOG`.
const FLAG_LOG: u64 = 2;
/// `SCHED_FLAG_RESET_ON_FORK`.
const RESET_ON_FORK: u64 = 1;
/// Most filters read from one chain (the kernel bounds a chain by its
/// total instruction count, 32768 with 4 counted per filter).
pub(crate) const MAX_FILTERS: usize = 8192;

impl Frozen {
    /// The filter chain, oldest first; empty without a filter. Strict mode
    /// and what restore cannot rebuild are refused.
    pub(super) fn seccomp_filters(&self, mode: u32) -> Result<Vec<SeccompFilter>, DumpError> {
        let pid = self.pid;
        match mode {
            0 => return Ok(Vec::new()),
            2 => {}
            1 => {
                return Err(self.unsupported(
                    "seccomp strict mode (SECCOMP_MODE_STRICT: only read, write, exit and \
                     sigreturn are allowed, so nothing can be restored into it)"
                        .into(),
                ))
            }
            m => return Err(self.unsupported(format!("seccomp mode {m}"))),
        }
        let mut newest_first = Vec::new();
        for index in 0..MAX_FILTERS {
            let bytes = match sys::seccomp_filter(pid, index) {
                Ok(b) => b,
                Err(nix::errno::Errno::ENOENT) if index > 0 => break,
                Err(errno) => return Err(ptrace_err(pid, "SECCOMP_GET_FILTER", errno)),
            };
            let flags = sys::seccomp_filter_flags(pid, index)
                .map_err(|errno| ptrace_err(pid, "SECCOMP_GET_METADATA", errno))?;
            // Counted from the oldest, as the user installed them.
            let filter = SeccompFilter {
                program: bytes
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
                log: flags & FLAG_LOG != 0,
            };
            if flags & !FLAG_LOG != 0 {
                return Err(self.unsupported(format!(
                    "a seccomp filter with flags {flags:#x} (the {}th newest; only \
                     SECCOMP_FILTER_FLAG_LOG is restored)",
                    index + 1
                )));
            }
            if filter.notifies_a_supervisor() {
                return Err(self.unsupported(format!(
                    "a seccomp filter that hands syscalls to a supervisor \
                     (SECCOMP_RET_USER_NOTIF; the {}th newest filter): its listener is \
                     not part of the image",
                    index + 1
                )));
            }
            newest_first.push(filter);
        }
        newest_first.reverse();
        sys::suspend_seccomp(pid)
            .map_err(|errno| ptrace_err(pid, "SETOPTIONS(SUSPEND_SECCOMP)", errno))?;
        Ok(newest_first)
    }

    /// Scheduling policy, priority and nice value of the main thread.
    pub(super) fn sched(&self) -> Result<Sched, DumpError> {
        let pid = self.pid;
        let a = sys::sched_getattr(pid).map_err(|errno| DumpError::Proc {
            pid,
            what: "sched_getattr".into(),
            source: std::io::Error::from(errno),
        })?;
        Ok(Sched {
            policy: a.policy,
            reset_on_fork: a.flags & RESET_ON_FORK != 0,
            nice: a.nice,
            priority: a.priority,
            runtime_ns: a.runtime,
            deadline_ns: a.deadline,
            period_ns: a.period,
        })
    }
}
