//! The task: registers as seen at the freeze, the full xsave area (its
//! size is the kernel's), the signal mask, the rseq registration, the
//! personality, the child-subreaper flag and the parent-death signal
//! (asked of the task), and `oom_score_adj` (read from `/proc`).
//!
//! Trusts: the kernel.

use super::{ptrace_err, DumpError, Frozen};
use crate::arch::x86_64 as arch;
use crate::inject::{InjectError, Injector};
use crate::model::{RobustFutex, Rseq, ThreadState, XsaveArea};
use crate::sys;

/// Offset of glibc's cached tid (`struct pthread`'s `tid`) from the
/// thread pointer (`fs_base`), x86_64, glibc 2.36 (the engine's measured
/// facts). Used only where the word there is verified to hold the tid.
pub(crate) const GLIBC_TID_OFFSET: u64 = 0x2d0;
/// glibc's robust list `futex_offset`: the lock word is 24 bytes before the
/// list entry in a `pthread_mutex_t`, and `__owner` 8 bytes after the lock.
const GLIBC_FUTEX_OFFSET: i64 = -24;
const GLIBC_OWNER_AFTER_LOCK: u64 = 8;
/// The kernel's `ROBUST_LIST_LIMIT`: it walks no more entries than this.
pub(crate) const ROBUST_LIST_LIMIT: usize = 2048;
/// `FUTEX_TID_MASK`.
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;

impl Frozen {
    /// One thread's state: registers (before any fix-up), xsave area,
    /// blocked mask, rseq registration, robust list and the robust futexes
    /// it owns, name, its own queued signals, and where its runtime caches
    /// its tid. `altstack` was asked of the thread itself.
    pub(super) fn capture_thread(
        &self,
        tid: i32,
        saved: &libc::user_regs_struct,
        altstack: (u64, i32, u64),
    ) -> Result<ThreadState, DumpError> {
        let regs = arch::from_user_regs(saved);
        let xsave = XsaveArea::new(
            &sys::get_xstate(tid).map_err(|errno| ptrace_err(tid, "GETREGSET(XSTATE)", errno))?,
        );
        let sigmask =
            sys::get_sigmask(tid).map_err(|errno| ptrace_err(tid, "GETSIGMASK", errno))?;
        let rseq = sys::get_rseq(tid)
            .map_err(|errno| ptrace_err(tid, "GET_RSEQ_CONFIGURATION", errno))?
            .map(|(abi_pointer, abi_size, signature)| Rseq {
                abi_pointer,
                abi_size,
                signature,
            });
        let robust_list = sys::get_robust_list(tid).unwrap_or((0, 0));
        let mut name = self
            .read_proc(&format!("task/{tid}/comm"))?
            .trim_end_matches('\n')
            .to_string();
        // At most 15 bytes (the kernel's); a byte that was not UTF-8 became
        // a 3-byte replacement character.
        while name.len() > 15 {
            name.pop();
        }
        let cached_tid_at = self.cached_tid_at(tid, regs.fs_base);
        let robust_futexes = self.owned_robust_futexes(tid, robust_list);
        Ok(ThreadState {
            tid,
            regs,
            xsave,
            sigmask,
            altstack,
            rseq,
            clear_child_tid: 0,
            robust_list,
            pending: self.thread_pending_signals(tid)?,
            name,
            cached_tid_at,
            robust_futexes,
        })
    }

    fn read_u32(&self, addr: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        matches!(sys::vm_read(self.pid, addr, &mut b), Ok(4)).then(|| u32::from_ne_bytes(b))
    }

    fn read_u64(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        matches!(sys::vm_read(self.pid, addr, &mut b), Ok(8)).then(|| u64::from_ne_bytes(b))
    }

    /// `fs_base + 0x2d0` when the word there is exactly `tid` (glibc's
    /// cached tid); 0 otherwise (another runtime, no TLS).
    fn cached_tid_at(&self, tid: i32, fs_base: u64) -> u64 {
        if fs_base == 0 {
            return 0;
        }
        let Some(at) = fs_base.checked_add(GLIBC_TID_OFFSET) else {
            return 0;
        };
        match self.read_u32(at) {
            Some(v) if i64::from(v) == i64::from(tid) => at,
            _ => 0,
        }
    }

    /// Walk the thread's robust list as the kernel would at its death
    /// (at most [`ROBUST_LIST_LIMIT`] entries, bit 0 of each pointer
    /// masked, the pending entry included) and return the lock words whose
    /// owner bits are `tid`. An unreadable entry ends the walk, as in the
    /// kernel.
    fn owned_robust_futexes(&self, tid: i32, (head, len): (u64, u64)) -> Vec<RobustFutex> {
        let mut out: Vec<RobustFutex> = Vec::new();
        if head == 0 || len != 24 {
            return out;
        }
        let (Some(first), Some(offset), Some(pending)) = (
            self.read_u64(head),
            self.read_u64(head + 8),
            self.read_u64(head + 16),
        ) else {
            return out;
        };
        let offset = offset as i64;
        let mut owned = |entry: u64| {
            let Some(lock) = entry.checked_add_signed(offset) else {
                return;
            };
            if !lock.is_multiple_of(4) || out.iter().any(|f| f.lock == lock) {
                return;
            }
            let Some(word) = self.read_u32(lock) else {
                return;
            };
            if i64::from(word & FUTEX_TID_MASK) != i64::from(tid) {
                return;
            }
            let glibc_owner = offset == GLIBC_FUTEX_OFFSET
                && self.read_u32(lock + GLIBC_OWNER_AFTER_LOCK) == Some(word & FUTEX_TID_MASK);
            out.push(RobustFutex { lock, glibc_owner });
        };
        let mut entry = first & !1;
        let mut n = 0;
        while entry != head && entry != 0 && n < ROBUST_LIST_LIMIT {
            owned(entry);
            n += 1;
            match self.read_u64(entry) {
                Some(next) => entry = next & !1,
                None => break,
            }
        }
        if pending & !1 != 0 {
            owned(pending & !1);
        }
        out
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
