//! Freezing: seize the target with `PTRACE_SEIZE`, stop it with
//! `PTRACE_INTERRUPT` (held by a pidfd so a recycled pid is refused), and
//! let it go again: resume it exactly as it was, or kill it once the image
//! is safe.
//!
//! Owns: the ptrace relationship with the target ([`Frozen`] resumes it
//! when dropped). A target already traced by another process is refused,
//! naming the tracer. While syscalls are injected the task has every signal
//! blocked, so that none is delivered then; its own mask is put back once
//! the queries are done. Trusts: the kernel.

use std::os::fd::OwnedFd;

use super::{DumpError, Frozen};
use crate::arch::x86_64::{self as arch, ResumeIn};
use crate::ptrace::{PtraceError, Tracee};
use crate::sys;

impl Frozen {
    /// Seize and stop `pid`. `pidfd` must refer to the same process; it is
    /// checked again once the task is stopped, so a recycled pid is refused.
    pub fn seize(pidfd: OwnedFd, pid: i32) -> Result<Frozen, DumpError> {
        let tracee = match Tracee::seize(pid) {
            Ok(t) => t,
            Err(source) => {
                // Someone else's tracee cannot be seized: name the tracer.
                if let Some(tracer) = tracer_of(pid) {
                    return Err(DumpError::Unsupported {
                        pid,
                        resource: format!(
                            "a process traced by another process (TracerPid {tracer}): \
                             detach the debugger or tracer first"
                        ),
                    });
                }
                return Err(DumpError::Freeze { pid, source });
            }
        };
        if sys::pidfd_send_signal(&pidfd, 0).is_err() {
            let _ = tracee.detach();
            return Err(DumpError::Gone { pid });
        }
        let saved = match tracee.regs() {
            Ok(r) => r,
            Err(source) => {
                let _ = tracee.detach();
                return Err(DumpError::Trace { pid, source });
            }
        };
        Ok(Frozen {
            pid,
            pidfd,
            tracee: Some(tracee),
            saved,
            sigmask: None,
            cancel: None,
            path_opener: None,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Poll `cancelled` between the steps of [`Frozen::dump`] (and between
    /// memory chunks): when it returns `true` the dump stops with
    /// [`DumpError::Cancelled`] and dropping `self` resumes the target.
    pub fn set_cancel(&mut self, cancelled: fn() -> bool) {
        self.cancel = Some(cancelled);
    }

    pub(super) fn check_cancel(&self) -> Result<(), DumpError> {
        match self.cancel {
            Some(f) if f() => Err(DumpError::Cancelled { pid: self.pid }),
            _ => Ok(()),
        }
    }

    /// Put the target's own registers back (with the syscall-restart
    /// fix-up when syscalls were injected), leaving it stopped.
    pub(super) fn put_back_registers(&mut self) -> Result<(), DumpError> {
        let pid = self.pid;
        let mut regs = self.saved;
        let Some(tracee) = self.tracee.as_mut() else {
            return Err(DumpError::Gone { pid });
        };
        if tracee.was_injected() {
            arch::restart_fixup(&mut regs, ResumeIn::Original);
        }
        tracee
            .set_regs(&regs)
            .map_err(|source| DumpError::Trace { pid, source })?;
        self.put_back_sigmask()
    }

    /// Block every signal until [`Frozen::put_back_registers`] (or the
    /// release), so that none is delivered while syscalls are injected:
    /// none has to be taken off the task and sent again, losing its
    /// siginfo (a POSIX timer's value, a `sigqueue` payload); they wait,
    /// queued with their siginfo. Called right before the first injection
    /// (until then the task is not resumed, so nothing is delivered).
    pub(super) fn block_signals(&mut self) -> Result<(), DumpError> {
        let pid = self.pid;
        let err = |errno| DumpError::Trace {
            pid,
            source: PtraceError::Request {
                op: "SETSIGMASK",
                pid,
                errno,
            },
        };
        let mask = sys::get_sigmask(pid).map_err(err)?;
        sys::set_sigmask(pid, !0).map_err(err)?;
        self.sigmask = Some(mask);
        Ok(())
    }

    /// The task's own signal mask, if [`Frozen::block_signals`] blocked it.
    fn put_back_sigmask(&mut self) -> Result<(), DumpError> {
        let pid = self.pid;
        match self.sigmask.take() {
            Some(mask) => sys::set_sigmask(pid, mask).map_err(|errno| DumpError::Trace {
                pid,
                source: PtraceError::Request {
                    op: "SETSIGMASK",
                    pid,
                    errno,
                },
            }),
            None => Ok(()),
        }
    }

    /// Let the target continue as if nothing happened (the registers are put
    /// back with the kernel's syscall-restart fix-up) and stop tracing it.
    pub fn resume(mut self) -> Result<(), DumpError> {
        self.release()
    }

    fn release(&mut self) -> Result<(), DumpError> {
        let pid = self.pid;
        let Some(mut tracee) = self.tracee.take() else {
            return Ok(());
        };
        let mut regs = self.saved;
        // After injections the task sits at a syscall-exit stop, where the
        // kernel applies no restart logic of its own: apply it here. Without
        // injections it is still at its interrupt stop and the kernel does.
        if tracee.was_injected() {
            arch::restart_fixup(&mut regs, ResumeIn::Original);
        }
        let mut res = tracee.set_regs(&regs);
        if let Some(mask) = self.sigmask.take() {
            res = res.and(
                sys::set_sigmask(pid, mask).map_err(|errno| PtraceError::Request {
                    op: "SETSIGMASK",
                    pid,
                    errno,
                }),
            );
        }
        let stolen = tracee.take_stolen_signals();
        let det = tracee.detach();
        for sig in stolen {
            let _ = sys::pidfd_send_signal(&self.pidfd, sig);
        }
        res.and(det)
            .map_err(|source| DumpError::Trace { pid, source })
    }

    /// Kill the target (the image is safely on disk).
    pub fn kill(mut self) -> Result<(), DumpError> {
        let pid = self.pid;
        let r = sys::pidfd_send_signal(&self.pidfd, libc::SIGKILL);
        // Dropping the tracee without detaching is fine: the task dies.
        self.tracee = None;
        r.map_err(|errno| DumpError::Trace {
            pid,
            source: PtraceError::Request {
                op: "pidfd_send_signal(SIGKILL)",
                pid,
                errno,
            },
        })
    }
}

/// The pid of the process tracing `pid` (`TracerPid` in its status), if
/// one is.
fn tracer_of(pid: i32) -> Option<i32> {
    let text = std::fs::read_to_string(super::proc_path(pid, "status")).ok()?;
    let status = crate::procfs::status::parse_status(&text).ok()?;
    (status.tracer_pid != 0).then_some(status.tracer_pid)
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = self.release();
    }
}
