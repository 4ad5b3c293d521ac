//! Signals: every disposition, the alternate stack, and the signals that
//! were queued (to the process or to the thread) at dump time. The mask is
//! set with the registers, last ([`super::task`]).
//!
//! Trusts: nothing; signal numbers and siginfo sizes are checked again.

use super::plan::Plan;
use super::{Builder, RestoreError};
use crate::inject::structs::{KSigAction, StackT};
use crate::sys;

impl Builder<'_> {
    /// `rt_sigaction` for every saved disposition, except those the stub
    /// already has: when its dispositions are as `execve` left them, a
    /// saved `SIG_DFL` or `SIG_IGN` with no flags, restorer or mask that
    /// matches the stub's (`SigIgn` in its `/proc` status) is skipped. Most
    /// of a process's 62 dispositions are such defaults. The others are
    /// set in one batch.
    pub(super) fn restore_sigactions(&mut self) -> Result<(), RestoreError> {
        let p = self.p;
        let ignored = if self.exec_dispositions {
            self.stub_ignored_signals()
        } else {
            None
        };
        let mut calls = Vec::new();
        for a in p.sigactions.iter() {
            if a.signal == 0
                || a.signal > 64
                || a.signal == libc::SIGKILL as u32
                || a.signal == libc::SIGSTOP as u32
            {
                return Err(RestoreError::Invalid(format!(
                    "signal {} in the image",
                    a.signal
                )));
            }
            if let Some(ign) = ignored {
                let now = if ign & (1u64 << (a.signal - 1)) != 0 {
                    libc::SIG_IGN as u64
                } else {
                    libc::SIG_DFL as u64
                };
                if a.handler == now && a.flags == 0 && a.restorer == 0 && a.mask == 0 {
                    continue;
                }
            }
            let act = self.inj.put_struct(&KSigAction {
                handler: a.handler,
                flags: a.flags,
                restorer: a.restorer,
                mask: a.mask,
            })?;
            calls.push((
                "rt_sigaction",
                libc::SYS_rt_sigaction,
                [u64::from(a.signal), act, 0, 8, 0, 0],
            ));
        }
        self.sys_batch(&calls)?;
        Ok(())
    }

    /// The signals the stub ignores (`SigIgn`), if its status says it
    /// catches none (`SigCgt` empty, as after `execve`); `None` when that
    /// cannot be read or does not hold (then every disposition is set).
    fn stub_ignored_signals(&self) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let st = crate::procfs::status::parse_status(&text).ok()?;
        (st.sig_cgt == 0).then_some(st.sig_ign)
    }

    /// The alternate signal stack, unless it was disabled.
    pub(super) fn restore_altstack(&mut self, plan: &Plan) -> Result<(), RestoreError> {
        let (ss_sp, ss_flags, ss_size) = plan.thread.altstack;
        if ss_flags & libc::SS_DISABLE == 0 {
            let ss = self.inj.put_struct(&StackT {
                sp: ss_sp,
                flags: ss_flags & !libc::SS_ONSTACK,
                size: ss_size,
            })?;
            self.sys("sigaltstack", libc::SYS_sigaltstack, [ss, 0, 0, 0, 0, 0])?;
        }
        Ok(())
    }

    /// Queue again the signals that were pending, each to the process or
    /// to the thread as it was.
    pub(super) fn queue_pending_signals(&mut self, plan: &Plan) -> Result<(), RestoreError> {
        let pid = self.ns_pid;
        for s in &plan.thread.pending {
            if s.siginfo.len() != sys::SIGINFO_SIZE {
                return Err(RestoreError::Invalid("pending signal of wrong size".into()));
            }
            let signo =
                u32::from_ne_bytes([s.siginfo[0], s.siginfo[1], s.siginfo[2], s.siginfo[3]]);
            if signo == 0 || signo > 64 {
                return Err(RestoreError::Invalid(format!("pending signal {signo}")));
            }
            let info = self.inj.put_bytes(&s.siginfo, "writing siginfo")?;
            if s.shared {
                self.sys(
                    "rt_sigqueueinfo",
                    libc::SYS_rt_sigqueueinfo,
                    [pid as u64, u64::from(signo), info, 0, 0, 0],
                )?;
            } else {
                self.sys(
                    "rt_tgsigqueueinfo",
                    libc::SYS_rt_tgsigqueueinfo,
                    [pid as u64, pid as u64, u64::from(signo), info, 0, 0],
                )?;
            }
        }
        Ok(())
    }
}
