//! The seccomp filter chain and the scheduling attributes.
//!
//! Seccomp: the saved chain is installed last, oldest filter first, so
//! that none of the restore's own injected syscalls runs under it: after
//! everything else, the stub switches from the trampoline to the
//! `syscall` instruction of its (restored) vdso, unmaps the trampoline,
//! and only then calls `seccomp(SECCOMP_SET_MODE_FILTER)` once per
//! filter; the registers are set at the last one's exit. The programs
//! cannot live in the trampoline's scratch page (it is gone by then): they
//! are written below the saved stack pointer, past the red zone, and the
//! bytes that were there are put back once the chain is installed.
//!
//! Every filter is installed with `SECCOMP_FILTER_FLAG_TSYNC`, so it
//! applies to every thread of the process: threads must exist before this
//! step (they are created earlier in the build), and a thread the kernel
//! cannot synchronise fails the restore. The saved `SECCOMP_FILTER_FLAG_LOG`
//! is kept.
//!
//! Installing a filter needs `no_new_privs` or `CAP_SYS_ADMIN` in the
//! stub. `no_new_privs` was restored before (a process that installed its
//! filter without `CAP_SYS_ADMIN` had it); when the image has a filter but
//! not `no_new_privs` (its installer had `CAP_SYS_ADMIN`) and the restored
//! credentials lack that capability, restore sets `no_new_privs`, which
//! only takes privilege away, with a notice: the filter is never dropped.
//!
//! Scheduling: `sched_setattr` with the saved policy, priority, nice value
//! and reset-on-fork flag, by the stub with its final credentials (an
//! unprivileged caller may lower the priority, not raise it); what the
//! kernel refuses is kept as the stub had it, with a notice naming it.
//!
//! Trusts: nothing; the chain and the attributes were checked by
//! `image::validate`, and the kernel checks each program.

use nix::errno::Errno;

use super::plan::Plan;
use super::{Builder, RestoreError};
use crate::inject::errno_of;
use crate::model::VmaKind;
use crate::ptrace::find_syscall_insn;
use crate::sys::{self, SchedAttr};

/// `SECCOMP_SET_MODE_FILTER`.
const SET_MODE_FILTER: u64 = 1;
/// `SECCOMP_FILTER_FLAG_TSYNC`, `SECCOMP_FILTER_FLAG_LOG`.
const FLAG_TSYNC: u64 = 1;
const FLAG_LOG: u64 = 2;
/// `SCHED_FLAG_RESET_ON_FORK`.
const RESET_ON_FORK: u64 = 1;
/// The x86_64 red zone below the stack pointer, never touched.
const RED_ZONE: u64 = 128;

impl Builder<'_> {
    /// Unmap the trampoline at `tramp` (2 pages) and, when the image has a
    /// seccomp chain, install it; the stub is then at the exit of its last
    /// syscall.
    pub(super) fn unmap_trampoline_and_install_seccomp(
        &mut self,
        plan: &Plan,
        tramp: u64,
    ) -> Result<(), RestoreError> {
        let filters = &self.p.seccomp_filters;
        if filters.is_empty() {
            // Its `int3` goes with it: this one ends at the syscall exit.
            self.inj.tracee().stop_at_syscall_exit();
            self.sys(
                "munmap(trampoline)",
                libc::SYS_munmap,
                [tramp, 2 * super::mm::PAGE, 0, 0, 0, 0],
            )?;
            return Ok(());
        }
        let pid = self.pid();
        // The programs and their sock_fprog headers, below the red zone.
        let mut blob = Vec::new();
        let mut progs = Vec::new();
        for f in filters {
            let at = blob.len() as u64;
            for insn in &f.program {
                blob.extend_from_slice(&insn.to_le_bytes());
            }
            progs.push((at, f.program.len() as u64, f.log));
        }
        let mut headers = Vec::new();
        while blob.len() % 16 != 0 {
            blob.push(0);
        }
        for (at, len, _) in &progs {
            headers.push(blob.len() as u64);
            blob.extend_from_slice(&len.to_ne_bytes());
            blob.extend_from_slice(&at.to_ne_bytes()); // relocated below
        }
        let end = plan.thread.regs.rsp.saturating_sub(RED_ZONE) & !15;
        let start = end.saturating_sub(blob.len() as u64) & !15;
        let room = self
            .p
            .vmas
            .iter()
            .any(|v| v.start <= start && end <= v.end && v.prot & libc::PROT_WRITE as u32 != 0);
        if !room || start == 0 {
            return Err(RestoreError::Unsupported(format!(
                "a seccomp chain of {} bytes that does not fit in the stack below {:#x}",
                blob.len(),
                plan.thread.regs.rsp
            )));
        }
        for (h, (at, _, _)) in headers.iter().zip(&progs) {
            let o = *h as usize + 8;
            blob[o..o + 8].copy_from_slice(&(start + at).to_ne_bytes());
        }
        // sock_fprog.len is an unsigned short followed by padding.
        for (h, (_, len, _)) in headers.iter().zip(&progs) {
            let o = *h as usize;
            let short = u16::try_from(*len).unwrap_or(0);
            blob[o..o + 8].copy_from_slice(&[0; 8]);
            blob[o..o + 2].copy_from_slice(&short.to_ne_bytes());
        }
        let was = self.inj.read(start, blob.len(), "reading the stack")?;
        self.inj
            .write(start, &blob, "writing the seccomp filters")?;

        // From the vdso's syscall instruction from now on.
        let vdso = self
            .p
            .vmas
            .iter()
            .find(|v| v.kind == VmaKind::Vdso)
            .ok_or_else(|| RestoreError::Invalid("a seccomp chain but no [vdso]".into()))?;
        let code = self.inj.read(
            vdso.start,
            usize::try_from(vdso.end - vdso.start).unwrap_or(0),
            "reading the vdso",
        )?;
        let site = find_syscall_insn(&code, vdso.start).ok_or_else(|| {
            RestoreError::Incompatible("no syscall instruction in the vdso".into())
        })?;
        let template = self.inj.tracee().regs().map_err(self.tr())?;
        self.inj.tracee().set_syscall_site(site, template);
        self.sys(
            "munmap(trampoline)",
            libc::SYS_munmap,
            [tramp, 2 * super::mm::PAGE, 0, 0, 0, 0],
        )?;

        for (i, (h, (_, _, log))) in headers.iter().zip(&progs).enumerate() {
            let flags = FLAG_TSYNC | if *log { FLAG_LOG } else { 0 };
            let fprog = start + h;
            let mut r = self
                .inj
                .syscall_raw(libc::SYS_seccomp, [SET_MODE_FILTER, flags, fprog, 0, 0, 0])?;
            if r < 0 && errno_of(r) == Errno::EACCES && i == 0 && !self.p.creds.no_new_privs {
                self.sys(
                    "prctl(PR_SET_NO_NEW_PRIVS)",
                    libc::SYS_prctl,
                    [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0],
                )?;
                self.notices.push(
                    "no_new_privs set (it was not): the restored credentials may install the \
                     seccomp filter only with it"
                        .into(),
                );
                r = self
                    .inj
                    .syscall_raw(libc::SYS_seccomp, [SET_MODE_FILTER, flags, fprog, 0, 0, 0])?;
            }
            if r != 0 {
                let why = if r < 0 {
                    errno_of(r).to_string()
                } else {
                    format!("thread {r} could not be synchronised")
                };
                return Err(RestoreError::Incompatible(format!(
                    "installing seccomp filter {} of {} in restored process {pid}: {why}",
                    i + 1,
                    progs.len()
                )));
            }
        }
        self.inj.write(start, &was, "putting the stack back")?;
        Ok(())
    }

    /// `sched_setattr` with the saved attributes when they differ from the
    /// stub's; a refusal is a notice.
    pub(super) fn restore_sched(&mut self) -> Result<(), RestoreError> {
        let Some(s) = self.p.sched else {
            return Ok(());
        };
        let want = SchedAttr {
            policy: s.policy,
            flags: if s.reset_on_fork { RESET_ON_FORK } else { 0 },
            nice: s.nice,
            priority: s.priority,
            runtime: s.runtime_ns,
            deadline: s.deadline_ns,
            period: s.period_ns,
        };
        let now = sys::sched_getattr(self.pid()).ok();
        if now == Some(want) {
            return Ok(());
        }
        let attr = self.inj.put_bytes(&want.encode(), "writing sched_attr")?;
        let r = self.sys_raw(libc::SYS_sched_setattr, [0, attr, 0, 0, 0, 0])?;
        if r < 0 {
            let errno = errno_of(r);
            if !matches!(
                errno,
                Errno::EPERM | Errno::EACCES | Errno::EBUSY | Errno::EINVAL
            ) {
                return Err(RestoreError::Incompatible(format!(
                    "sched_setattr in restored process {}: {errno}",
                    self.pid()
                )));
            }
            let kept = now.map_or_else(
                || "the restorer's".to_string(),
                |n| {
                    format!(
                        "policy {} priority {} nice {}",
                        n.policy, n.priority, n.nice
                    )
                },
            );
            self.notices.push(format!(
                "scheduling policy {} priority {} nice {}{} not restored ({errno}): the \
                 restored credentials may not set it; kept {kept}",
                s.policy,
                s.priority,
                s.nice,
                if s.reset_on_fork {
                    " (reset on fork)"
                } else {
                    ""
                }
            ));
        }
        Ok(())
    }
}
