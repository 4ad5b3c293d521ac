//! Threads other than the leader: each is re-created by a `clone` injected
//! into the leader, once the leader holds its final credentials (a new
//! thread's credentials are a copy of its creator's, so every thread ends
//! up with exactly the decided credentials: nothing is created before the
//! drop), then given its own state by syscalls injected into the new
//! thread itself; and the tids the saved memory holds are made right.
//!
//! Per new thread, in this order: `clone(CLONE_VM|FS|FILES|SIGHAND|THREAD|
//! SYSVSEM|PTRACE [|PARENT_SETTID|CHILD_CLEARTID])` in the leader (with the
//! two tid flags pointing at the runtime's cached tid when the dump
//! verified it: the kernel writes the new tid there and registers it as
//! `clear_child_tid`, as `pthread_create` does); wait for the child's first
//! stop (`CLONE_PTRACE` makes it ours, with a `SIGSTOP` that is
//! suppressed); in the child, `set_robust_list`, `rseq`, `sigaltstack`,
//! `prctl(PR_SET_NAME)` and its own queued signals (`rt_tgsigqueueinfo` to
//! itself: only the target thread may queue `SI_USER`/`SI_TKILL` codes);
//! then, last, the signal mask, the xsave state and the registers (with
//! the syscall-restart fix-up of a restored task). Every thread blocks
//! every signal until its mask is set, so nothing is delivered while it is
//! being built.
//!
//! Then, with the old → new tid map: the owner bits of every robust futex
//! a thread held (and glibc's `__owner`) are rewritten, and the leader
//! registers its cached tid with `set_tid_address` and stores its new tid
//! there (or clears the stub's `clear_child_tid` when none was verified).
//! With a `same-pid` grant every tid is the saved one (the helper sets
//! `/proc/sys/kernel/ns_last_pid` just before each `clone` and checks the
//! tid it got), so nothing needs rewriting.
//!
//! Not rewritten: the owner tid of a non-robust ERRORCHECK, RECURSIVE or
//! PI mutex, or of a write-locked rwlock, held across the dump (they are
//! on no list; a heuristic scan of memory could find them, but a false
//! match would corrupt data, so restore does not guess). Unlocking such a
//! lock in a thread with a new tid fails (`EPERM`), as documented in
//! ENGINE-FACTS.md; the same-pid grant avoids it.
//!
//! Owns: the new threads until release (they are handed to the stub).
//! Trusts: nothing in the image beyond `validate` (tids, addresses and
//! counts are checked there); a lock word is rewritten only when it still
//! holds the saved owner.

use super::mm::PAGE;
use super::plan::Plan;
use super::{Builder, RestoreError};
use crate::arch::x86_64::{self as arch, ResumeIn};
use crate::inject::structs::StackT;
use crate::inject::{InjectError, Injector};
use crate::model::ThreadState;
use crate::ptrace::{PtraceError, Tracee};
use crate::sys;

/// `FUTEX_TID_MASK`.
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
/// glibc's `__owner` is 8 bytes after the lock word.
const GLIBC_OWNER_AFTER_LOCK: u64 = 8;
/// Where the next pid of this pid namespace is set (`same-pid`).
const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";
/// How long a saved tid held by another process is waited for.
const TID_FREE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Clones tried for one saved tid (`same-pid`) before giving up.
pub(super) const SAME_TID_ATTEMPTS: usize = 8;
/// Most tids listed in the notice naming the new tids.
const TID_MAP_NOTICE_MAX: usize = 16;

fn clone_flags(cached_tid: bool) -> u64 {
    let mut f = libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_PTRACE;
    if cached_tid {
        f |= libc::CLONE_PARENT_SETTID | libc::CLONE_CHILD_CLEARTID;
    }
    f as u64
}

impl Builder<'_> {
    /// Re-create every thread but the leader, then fix the tids memory
    /// holds. Called once the leader has its final credentials, with the
    /// trampoline at `tramp` still mapped.
    pub(super) fn restore_threads(&mut self, plan: &Plan, tramp: u64) -> Result<(), RestoreError> {
        let mut map: Vec<(i32, i32)> = vec![(plan.thread.tid, self.ns_pid)];
        for t in plan.others {
            let new = self.clone_thread(t, tramp)?;
            map.push((t.tid, new));
        }
        self.patch_robust_futexes(plan, &map)?;
        self.set_leader_tid_address(plan)?;
        self.tid_map = map.clone();
        let moved: Vec<String> = map
            .iter()
            .skip(1)
            .filter(|(old, new)| old != new)
            .map(|(old, new)| format!("{old}->{new}"))
            .collect();
        if !moved.is_empty() {
            let more = moved.len().saturating_sub(TID_MAP_NOTICE_MAX);
            let mut list = moved
                .into_iter()
                .take(TID_MAP_NOTICE_MAX)
                .collect::<Vec<_>>()
                .join(" ");
            if more > 0 {
                list.push_str(&format!(" and {more} more"));
            }
            self.notices
                .push(format!("the threads get new tids: {list}"));
        }
        Ok(())
    }

    /// With `same-pid`: make `want` the next tid the kernel hands out, if
    /// it is free. A tid held by a process elsewhere is waited for up to
    /// [`TID_FREE_WAIT`] (a short-lived process that took it during an
    /// earlier attempt), then refused.
    fn reserve_tid(&self, want: i32) -> Result<(), RestoreError> {
        self.reserve_pid(want)
    }

    /// [`reserve_pid`] in the pid namespace this restore makes its
    /// processes in (a new one's keeper sets its `ns_last_pid`).
    pub(super) fn reserve_pid(&self, want: i32) -> Result<(), RestoreError> {
        match self.pidns {
            Some(ns) => ns.reserve(want),
            None => reserve_pid(want),
        }
    }
}

/// With `same-pid`: make `want` the next pid or tid the kernel hands out,
/// if it is free. One held by a process elsewhere is waited for up to
/// [`TID_FREE_WAIT`], then refused.
pub(super) fn reserve_pid(want: i32) -> Result<(), RestoreError> {
    {
        let taken = || std::path::Path::new(&format!("/proc/{want}")).exists();
        let deadline = std::time::Instant::now() + TID_FREE_WAIT;
        while want > 1 && taken() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if want <= 1 || taken() {
            return Err(RestoreError::PidTaken(want));
        }
        std::fs::write(NS_LAST_PID, format!("{}", want - 1)).map_err(|e| {
            RestoreError::Unsupported(format!("the saved pid or tid {want} ({NS_LAST_PID}: {e})"))
        })
    }
}

impl Builder<'_> {
    /// Clone one thread in the leader, wait for its first stop, and build
    /// it. Returns its tid. With `same-pid`, a clone that got another tid
    /// (a process elsewhere took the saved one between the `ns_last_pid`
    /// write and the clone) is undone and tried again, a few times.
    fn clone_thread(&mut self, t: &ThreadState, tramp: u64) -> Result<i32, RestoreError> {
        let want = self.opts.keeps_pids().then_some(t.tid);
        let mut attempts = 0;
        loop {
            attempts += 1;
            if let Some(w) = want {
                self.reserve_tid(w)?;
            }
            let stack = tramp + 2 * PAGE;
            let cached = t.cached_tid_at;
            let r = self.sys(
                "clone(thread)",
                libc::SYS_clone,
                [clone_flags(cached != 0), stack, cached, cached, 0, 0],
            )?;
            let ns_tid = i32::try_from(r).map_err(|_| {
                RestoreError::Invalid(format!("clone returned {r}, which is not a tid"))
            })?;
            // In a new pid namespace clone returned the tid there; we trace
            // the thread by its tid here.
            let tid = match self.pidns {
                Some(_) => super::pidns::outer_thread(self.pid(), ns_tid)?,
                None => ns_tid,
            };
            let tgid = self.ns_pid;
            // From here on the thread is the stub's: killed and reaped with it.
            self.threads.push(Tracee::attached(tid));
            let Some(tracee) = self.threads.last_mut() else {
                return Err(RestoreError::Invalid("no thread".into()));
            };
            tracee
                .wait_initial_sigstop()
                .map_err(|source| RestoreError::Trace { pid: tid, source })?;
            if let Some(w) = want.filter(|w| *w != ns_tid) {
                if attempts >= SAME_TID_ATTEMPTS {
                    return Err(RestoreError::PidTaken(w));
                }
                discard_thread(tracee, tramp)?;
                self.threads.pop();
                continue;
            }
            build_thread(tracee, t, (tgid, ns_tid), tramp)?;
            return Ok(ns_tid);
        }
    }

    /// Rewrite the owner of every robust futex a thread held at dump from
    /// its old tid to its new one (the lock word's TID bits, keeping the
    /// WAITERS and OWNER_DIED bits, and glibc's `__owner`), only where the
    /// word still holds the old owner.
    fn patch_robust_futexes(
        &mut self,
        plan: &Plan,
        map: &[(i32, i32)],
    ) -> Result<(), RestoreError> {
        let threads = std::iter::once(plan.thread).chain(plan.others.iter());
        for (t, &(old, new)) in threads.zip(map) {
            if old == new {
                continue;
            }
            let (old, new) = (old as u32, new as u32);
            for f in &t.robust_futexes {
                let word = self.read_u32(f.lock)?;
                if word & FUTEX_TID_MASK != old {
                    continue;
                }
                self.write_u32(f.lock, (word & !FUTEX_TID_MASK) | new)?;
                if f.glibc_owner {
                    let at = f.lock + GLIBC_OWNER_AFTER_LOCK;
                    if self.read_u32(at)? == old {
                        self.write_u32(at, new)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The leader's `clear_child_tid`: the runtime's cached tid when the
    /// dump verified it (and the new tid stored there), otherwise none (the
    /// stub's own pointed into memory that is now the image's).
    fn set_leader_tid_address(&mut self, plan: &Plan) -> Result<(), RestoreError> {
        let at = plan.thread.cached_tid_at;
        let tid = self.sys(
            "set_tid_address",
            libc::SYS_set_tid_address,
            [at, 0, 0, 0, 0, 0],
        )?;
        if at != 0 {
            self.write_u32(at, tid as u32)?;
        }
        Ok(())
    }

    fn read_u32(&self, addr: u64) -> Result<u32, RestoreError> {
        let b = self.inj.read(addr, 4, "reading a tid")?;
        Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn write_u32(&self, addr: u64, v: u32) -> Result<(), RestoreError> {
        Ok(self.inj.write(addr, &v.to_ne_bytes(), "writing a tid")?)
    }
}

/// Make a freshly cloned thread that got the wrong tid exit (an injected
/// `exit(0)`; nothing of it ran) and reap it.
fn discard_thread(tracee: &mut Tracee, tramp: u64) -> Result<(), RestoreError> {
    let tid = tracee.pid();
    let tr = |source| RestoreError::Trace { pid: tid, source };
    let mut regs = tracee.regs().map_err(tr)?;
    regs.rip = tramp;
    regs.rax = libc::SYS_exit as u64;
    regs.rdi = 0;
    regs.orig_rax = u64::MAX;
    tracee.set_regs(&regs).map_err(tr)?;
    let pid = nix::unistd::Pid::from_raw(tid);
    nix::sys::ptrace::cont(pid, None).map_err(|errno| RestoreError::Trace {
        pid: tid,
        source: PtraceError::Request {
            op: "CONT",
            pid: tid,
            errno,
        },
    })?;
    loop {
        match nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::__WALL)) {
            Ok(
                nix::sys::wait::WaitStatus::Exited(..) | nix::sys::wait::WaitStatus::Signaled(..),
            ) => return Ok(()),
            Ok(_) => {
                let _ = nix::sys::ptrace::cont(pid, None);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => {
                return Err(RestoreError::Trace {
                    pid: tid,
                    source: PtraceError::Request {
                        op: "waitpid",
                        pid: tid,
                        errno,
                    },
                })
            }
        }
    }
}

/// Give a freshly cloned thread (stopped, injecting through the trampoline
/// at `tramp`, its scratch page after it; its process's pid and its own
/// tid as they see them) its saved state; the registers
/// are the last thing set: nothing may be injected into it afterwards.
fn build_thread(
    tracee: &mut Tracee,
    t: &ThreadState,
    (tgid, ns_tid): (i32, i32),
    tramp: u64,
) -> Result<(), RestoreError> {
    let tid = tracee.pid();
    let tr = |source| RestoreError::Trace { pid: tid, source };
    let template = tracee.regs().map_err(tr)?;
    tracee.set_trap_site(tramp, template);
    let mut inj = Injector::new(tracee);
    inj.use_scratch(tramp + PAGE, PAGE);
    inject_thread_state(&mut inj, t, tgid, ns_tid)?;
    let current = inj.tracee().regs().map_err(tr)?;
    let mut regs = arch::to_user_regs(&t.regs, &current);
    arch::restart_fixup(&mut regs, ResumeIn::Restored);
    let req = |op: &'static str| {
        move |errno| RestoreError::Trace {
            pid: tid,
            source: PtraceError::Request {
                op,
                pid: tid,
                errno,
            },
        }
    };
    sys::set_sigmask(tid, t.sigmask).map_err(req("SETSIGMASK"))?;
    sys::set_xstate(tid, &t.xsave.to_vec()).map_err(req("SETREGSET"))?;
    inj.tracee().set_regs(&regs).map_err(tr)?;
    Ok(())
}

/// The syscalls a thread must make for itself.
fn inject_thread_state(
    inj: &mut Injector<'_>,
    t: &ThreadState,
    tgid: i32,
    tid: i32,
) -> Result<(), InjectError> {
    let (head, len) = t.robust_list;
    if head != 0 {
        inj.syscall(
            "set_robust_list",
            libc::SYS_set_robust_list,
            [head, len, 0, 0, 0, 0],
        )?;
    }
    if let Some(r) = t.rseq {
        inj.syscall(
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
        )?;
    }
    let (ss_sp, ss_flags, ss_size) = t.altstack;
    if ss_flags & libc::SS_DISABLE == 0 {
        let ss = inj.put_struct(&StackT {
            sp: ss_sp,
            flags: ss_flags & !libc::SS_ONSTACK,
            size: ss_size,
        })?;
        inj.syscall("sigaltstack", libc::SYS_sigaltstack, [ss, 0, 0, 0, 0, 0])?;
    }
    if !t.name.is_empty() {
        // `validate` limits the name to 15 bytes without NUL.
        let name = inj.put_cstr(&t.name, "thread name")?;
        inj.syscall(
            "prctl(PR_SET_NAME)",
            libc::SYS_prctl,
            [libc::PR_SET_NAME as u64, name, 0, 0, 0, 0],
        )?;
    }
    for s in t.pending.iter().filter(|s| !s.shared) {
        // `validate` checked the size and the signal number.
        let signo = u32::from_ne_bytes([s.siginfo[0], s.siginfo[1], s.siginfo[2], s.siginfo[3]]);
        let info = inj.put_bytes(&s.siginfo, "writing siginfo")?;
        inj.syscall(
            "rt_tgsigqueueinfo(own thread)",
            libc::SYS_rt_tgsigqueueinfo,
            [tgid as u64, tid as u64, u64::from(signo), info, 0, 0],
        )?;
    }
    Ok(())
}
