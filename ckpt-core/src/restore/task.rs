//! The task itself: the xsave area this CPU must be able to hold, the
//! stub's own rseq registration dropped and the saved one registered, the
//! robust futex list, the name and personality, the mm layout
//! (`PR_SET_MM_MAP`: brk, argument and environment areas, auxv, exe link),
//! `oom_score_adj` and the child-subreaper flag (a saved parent-death
//! signal is recorded but deliberately not restored, with a notice), and
//! last the registers, xsave state and signal mask at the final syscall's
//! exit.
//!
//! Owns: the very end of the build (after [`Builder::finish_thread`] the
//! stub only waits to be released). Trusts: nothing; the registers pass
//! through the same syscall-restart fix-up a signal return would apply.

use nix::errno::Errno;

use super::files::check_path;
use super::plan::Plan;
use super::{Builder, RestoreError};
use crate::arch::x86_64::{self as arch, ResumeIn};
use crate::inject::structs::{words_to_bytes, PrctlMmMap};
use crate::inject::{errno_of, KernelStruct};
use crate::ptrace::PtraceError;
use crate::sys;

impl Builder<'_> {
    /// The xsave area here is as large as the saved one, and this CPU has
    /// every feature the process used.
    pub(super) fn check_xsave(&self, plan: &Plan) -> Result<(), RestoreError> {
        let pid = self.pid();
        let xsave_now = sys::get_xstate(pid).map_err(|errno| RestoreError::Trace {
            pid,
            source: PtraceError::Request {
                op: "GETREGSET",
                pid,
                errno,
            },
        })?;
        if xsave_now.len() != plan.thread.xsave.len() {
            return Err(RestoreError::Incompatible(format!(
                "xsave area is {} bytes here, {} in the image",
                xsave_now.len(),
                plan.thread.xsave.len()
            )));
        }
        let enabled = arch::xsave_enabled_features(&xsave_now).unwrap_or(0);
        let used = arch::xsave_features_in_use(&plan.thread.xsave.to_vec()).unwrap_or(u64::MAX);
        if used & !enabled != 0 {
            return Err(RestoreError::Incompatible(format!(
                "CPU lacks xsave features {:#x} the process uses",
                used & !enabled
            )));
        }
        Ok(())
    }

    /// Unregister the stub's own rseq area (glibc registered it) before
    /// the memory it lives in goes away.
    pub(super) fn unregister_stub_rseq(&mut self) -> Result<(), RestoreError> {
        if let Some((ptr, len, sig)) = sys::get_rseq(self.pid()).ok().flatten() {
            self.sys(
                "rseq(unregister)",
                libc::SYS_rseq,
                [ptr, u64::from(len), 1, u64::from(sig), 0, 0],
            )?;
        }
        Ok(())
    }

    /// The thread name (15 bytes at most) and the personality.
    pub(super) fn set_name_and_personality(&mut self) -> Result<(), RestoreError> {
        let p = self.p;
        let comm: String = p.comm.chars().take(15).collect();
        check_path(&comm)?;
        let name = self.inj.put_cstr(&comm, "writing a path")?;
        self.sys_batch(&[
            (
                "prctl(PR_SET_NAME)",
                libc::SYS_prctl,
                [libc::PR_SET_NAME as u64, name, 0, 0, 0, 0],
            ),
            (
                "personality",
                libc::SYS_personality,
                [u64::from(p.personality), 0, 0, 0, 0, 0],
            ),
        ])?;
        Ok(())
    }

    /// The robust futex list and the rseq registration of the thread.
    pub(super) fn restore_robust_list_and_rseq(&mut self, plan: &Plan) -> Result<(), RestoreError> {
        let (head, len) = plan.thread.robust_list;
        let mut calls = Vec::new();
        if head != 0 {
            calls.push((
                "set_robust_list",
                libc::SYS_set_robust_list,
                [head, len, 0, 0, 0, 0],
            ));
        }
        if let Some(r) = plan.thread.rseq {
            calls.push((
                "rseq",
                libc::SYS_rseq,
                [
                    r.abi_pointer,
                    u64::from(r.abi_size),
                    0,
                    u64::from(r.signature),
                    0,
                    0,
                ],
            ));
        }
        self.sys_batch(&calls)?;
        Ok(())
    }

    /// The mm layout in one `PR_SET_MM_MAP`, with the exe link when it is
    /// to be set (the executable's fd is then closed).
    pub(super) fn set_mm_map(&mut self) -> Result<(), RestoreError> {
        let mm = &self.p.mm;
        if mm.auxv.len() > 128 || !mm.auxv.len().is_multiple_of(2) {
            return Err(RestoreError::Invalid("auxv".into()));
        }
        let auxv_bytes = words_to_bytes(&mm.auxv);
        let auxv = self.inj.put_bytes(&auxv_bytes, "writing auxv")?;
        // exe_fd: the saved executable (exe-link), or -1 to keep the link.
        let exe_fd = self
            .exe_fd
            .and_then(|fd| u32::try_from(fd).ok())
            .unwrap_or(u32::MAX);
        let map = self.inj.put_struct(&PrctlMmMap {
            fields: [
                mm.start_code,
                mm.end_code,
                mm.start_data,
                mm.end_data,
                mm.start_brk,
                mm.brk,
                mm.start_stack,
                mm.arg_start,
                mm.arg_end,
                mm.env_start,
                mm.env_end,
            ],
            auxv,
            auxv_size: auxv_bytes.len() as u32,
            exe_fd,
        })?;
        self.sys(
            "prctl(PR_SET_MM_MAP)",
            libc::SYS_prctl,
            [
                libc::PR_SET_MM as u64,
                libc::PR_SET_MM_MAP as u64,
                map,
                PrctlMmMap::SIZE as u64,
                0,
                0,
            ],
        )?;
        if let Some(fd) = self.exe_fd.take() {
            self.sys("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
        }
        Ok(())
    }

    /// No parent-death signal in the released process (EXITKILL covers the
    /// stub until it is detached).
    pub(super) fn clear_pdeathsig(&mut self) -> Result<(), RestoreError> {
        self.sys(
            "prctl(PR_SET_PDEATHSIG, 0)",
            libc::SYS_prctl,
            [libc::PR_SET_PDEATHSIG as u64, 0, 0, 0, 0, 0],
        )?;
        Ok(())
    }

    /// The last syscalls unmap the trampoline at `tramp` and install the
    /// seccomp chain (`super::seccomp`); at the last exit stop the saved
    /// registers (with the syscall-restart fix-up), xsave state
    /// and signal mask are put in place.
    pub(super) fn finish_thread(&mut self, plan: &Plan, tramp: u64) -> Result<(), RestoreError> {
        let pid = self.pid();
        self.unmap_trampoline_and_install_seccomp(plan, tramp)?;
        let current = self.inj.tracee().regs().map_err(self.tr())?;
        let mut regs = arch::to_user_regs(&plan.thread.regs, &current);
        arch::restart_fixup(&mut regs, ResumeIn::Restored);
        self.inj.tracee().set_regs(&regs).map_err(self.tr())?;
        sys::set_xstate(pid, &plan.thread.xsave.to_vec()).map_err(|errno| RestoreError::Trace {
            pid,
            source: PtraceError::Request {
                op: "SETREGSET",
                pid,
                errno,
            },
        })?;
        sys::set_sigmask(pid, plan.thread.sigmask).map_err(|errno| RestoreError::Trace {
            pid,
            source: PtraceError::Request {
                op: "SETSIGMASK",
                pid,
                errno,
            },
        })?;
        Ok(())
    }
}

/// Process-wide settings kept by `prctl` and `/proc`: `oom_score_adj`, the
/// child-subreaper flag, and what becomes of a saved parent-death signal.
impl Builder<'_> {
    /// `oom_score_adj`, written by the stub itself to
    /// `/proc/self/oom_score_adj` once it holds its final credentials, so
    /// the kernel applies *those* rights: raising the value is always
    /// allowed, lowering it below the floor the stub inherited (where a
    /// process holding `CAP_SYS_RESOURCE` last set it; 0 unless one did)
    /// needs `CAP_SYS_RESOURCE`. Refused (`EACCES`/`EPERM`), the restore goes on
    /// with a notice naming the value.
    ///
    /// The stub inherits the restorer's value (the caller's, unless the
    /// caller is itself adjusted, e.g. by a service manager); nothing is
    /// written when that is already the saved one (the usual 0, and every
    /// image from before the value was recorded).
    pub(super) fn restore_oom_score_adj(&mut self) -> Result<(), RestoreError> {
        let want = self.p.oom_score_adj;
        let now = std::fs::read_to_string(format!("/proc/{}/oom_score_adj", self.pid()))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        if now == Some(want) {
            return Ok(());
        }
        let path = "/proc/self/oom_score_adj";
        let at = self.inj.put_cstr(path, "oom_score_adj path")?;
        let fd = self.sys_raw(
            libc::SYS_openat,
            [
                libc::AT_FDCWD as u64,
                at,
                (libc::O_WRONLY | libc::O_CLOEXEC) as u64,
                0,
                0,
                0,
            ],
        )?;
        let (r, name) = if fd < 0 {
            (fd, "openat(/proc/self/oom_score_adj)")
        } else {
            let text = want.to_string();
            let buf = self.inj.put_bytes(text.as_bytes(), "oom_score_adj value")?;
            let w = self.sys_raw(
                libc::SYS_write,
                [fd as u64, buf, text.len() as u64, 0, 0, 0],
            )?;
            self.sys("close", libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
            (w, "write(/proc/self/oom_score_adj)")
        };
        if r >= 0 {
            return Ok(());
        }
        let errno = errno_of(r);
        if matches!(errno, Errno::EACCES | Errno::EPERM) {
            self.notices.push(format!(
                "oom_score_adj {want} not restored: the restored credentials may not set it ({errno})"
            ));
            return Ok(());
        }
        Err(RestoreError::Trace {
            pid: self.pid(),
            source: PtraceError::Syscall {
                name,
                pid: self.pid(),
                errno,
            },
        })
    }

    /// `PR_SET_CHILD_SUBREAPER`: needs no privilege.
    pub(super) fn restore_child_subreaper(&mut self) -> Result<(), RestoreError> {
        if self.p.child_subreaper {
            self.sys(
                "prctl(PR_SET_CHILD_SUBREAPER)",
                libc::SYS_prctl,
                [libc::PR_SET_CHILD_SUBREAPER as u64, 1, 0, 0, 0, 0],
            )?;
        }
        Ok(())
    }

    /// A saved parent-death signal is **not** restored; a notice says so.
    ///
    /// It is tied to the parent *thread* of the dumped process, which is
    /// not in the image. The restored process's parent is this restorer,
    /// which exits right after the release: set on the stub, the signal
    /// would fire at once and (for the usual `SIGKILL`/`SIGTERM`) kill the
    /// process just restored. After the restorer exits the process is
    /// reparented (to init or a subreaper), but by then it is no longer
    /// traced and nothing can be injected into it. So the only honest
    /// outcomes are "not set" or "fires at once"; restore leaves it unset
    /// (the stub's own is cleared by [`Builder::clear_pdeathsig`]).
    pub(super) fn note_pdeathsig(&mut self) -> Result<(), RestoreError> {
        let sig = self.p.pdeathsig;
        // A child of another process of the image watches that parent
        // again (set now, after the credentials changed, which clears it).
        if sig != 0 && self.task > 0 {
            self.sys(
                "prctl(PR_SET_PDEATHSIG)",
                libc::SYS_prctl,
                [libc::PR_SET_PDEATHSIG as u64, sig as u64, 0, 0, 0, 0],
            )?;
            return Ok(());
        }
        if sig != 0 {
            self.notices.push(format!(
                "parent-death signal {sig} not restored: the parent it watched is not part of the image (the restored process's parent is the restorer, which exits)"
            ));
        }
        Ok(())
    }
}
