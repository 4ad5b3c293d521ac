//! Freezing: seize every thread of the target with `PTRACE_SEIZE` and stop
//! it with `PTRACE_INTERRUPT` (held by a pidfd so a recycled pid is
//! refused), and let them go again: resume each exactly as it was, or kill
//! the process once the image is safe.
//!
//! The freeze is atomic: the loop in [`freeze_all`] seizes every tid listed
//! in `/proc/PID/task`, waits until each is stopped, and ends only when a
//! fresh listing shows no tid it does not hold *and* the kernel's thread
//! count (`Threads:` in `/proc/PID/status`) equals the number of threads it
//! holds stopped. A stopped thread cannot create another, so the count
//! check closes the one gap left: `readdir` of `/proc/PID/task` can skip
//! live entries while other threads exit concurrently.
//!
//! Owns: the ptrace relationship with every thread ([`Frozen`] resumes
//! them when dropped). A target already traced by another process is
//! refused, naming the tracer. While syscalls are injected the leader has
//! every signal blocked, so that none is delivered then; its own mask is
//! put back once the queries are done. Trusts: the kernel.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{proc_path, DumpError, Frozen, FrozenThread};
use crate::arch::x86_64::{self as arch, ResumeIn};
use crate::limits::MAX_THREADS;
use crate::procfs;
use crate::ptrace::{PtraceError, Tracee};
use crate::sys;

/// `PTRACE_EVENT_STOP`.
const PTRACE_EVENT_STOP: i32 = 128;
/// Rounds of the freeze loop before giving up on a thread set that keeps
/// changing (each round seizes everything new it sees).
const FREEZE_ROUNDS: usize = 10_000;

/// Every tid listed in `/proc/PID/task`.
pub(super) fn task_ids(pid: i32) -> std::io::Result<Vec<i32>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(proc_path(pid, "task"))? {
        if let Some(t) = e?.file_name().to_str().and_then(|s| s.parse().ok()) {
            out.push(t);
        }
    }
    Ok(out)
}

fn freeze_err(pid: i32, op: &'static str, errno: Errno) -> DumpError {
    DumpError::Freeze {
        pid,
        source: PtraceError::Request { op, pid, errno },
    }
}

/// Wait until the seized, interrupted thread `tid` is in a stop we hold.
/// `Ok(false)`: it exited. A signal that arrives meanwhile is delivered as
/// it would have been (the thread runs its handler), and the thread is
/// interrupted again.
fn wait_stopped(tid: i32) -> Result<bool, Errno> {
    loop {
        match waitpid(Pid::from_raw(tid), Some(WaitPidFlag::__WALL)) {
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return Ok(false),
            Err(e) => return Err(e),
            Ok(WaitStatus::PtraceEvent(_, _, PTRACE_EVENT_STOP)) => return Ok(true),
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return Ok(false),
            Ok(WaitStatus::Stopped(_, sig)) => {
                match ptrace::cont(Pid::from_raw(tid), sig) {
                    Ok(()) => {}
                    Err(Errno::ESRCH) => continue,
                    Err(e) => return Err(e),
                }
                match ptrace::interrupt(Pid::from_raw(tid)) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(_) => {
                // Any other stop (none is asked for): let it go on and
                // interrupt it again.
                let _ = ptrace::cont(Pid::from_raw(tid), None);
                let _ = ptrace::interrupt(Pid::from_raw(tid));
            }
        }
    }
}

/// Why a tid could not be seized: it is exiting (skip it), or another
/// tracer holds it (refuse).
fn seize_refused(pid: i32, tid: i32) -> Result<(), DumpError> {
    let text = std::fs::read_to_string(proc_path(pid, &format!("task/{tid}/status")));
    let Ok(text) = text else {
        return Ok(()); // gone
    };
    match procfs::status::parse_status(&text) {
        Ok(st) if matches!(st.state, 'Z' | 'X') => Ok(()),
        Ok(st) if st.tracer_pid != 0 => Err(DumpError::Unsupported {
            pid,
            resource: format!(
                "{}traced by another process (TracerPid {}): detach the debugger or tracer \
                 first",
                if tid == pid {
                    "a process ".to_string()
                } else {
                    format!("thread {tid}, ")
                },
                st.tracer_pid
            ),
        }),
        _ => Err(freeze_err(tid, "SEIZE", Errno::EPERM)),
    }
}

/// Seize and stop every thread of `pid`, atomically (see the module doc).
/// Returns the stopped tids, the leader first. On failure every thread
/// seized so far is let go.
fn freeze_all(pid: i32) -> Result<Vec<i32>, DumpError> {
    let mut stopped: BTreeMap<i32, ()> = BTreeMap::new();
    let result = (|| {
        for _ in 0..FREEZE_ROUNDS {
            let listed = task_ids(pid).map_err(|_| DumpError::Gone { pid })?;
            let mut fresh = Vec::new();
            for tid in listed.iter().copied().filter(|t| !stopped.contains_key(t)) {
                match sys::seize(tid, libc::PTRACE_O_TRACESYSGOOD) {
                    Ok(()) => {}
                    Err(Errno::ESRCH) => continue,
                    Err(Errno::EPERM) => {
                        // Another tracer (named), or a thread exiting.
                        seize_refused(pid, tid)?;
                        if tid == pid {
                            return Err(freeze_err(tid, "SEIZE", Errno::EPERM));
                        }
                        continue;
                    }
                    Err(e) => return Err(freeze_err(tid, "SEIZE", e)),
                }
                match ptrace::interrupt(Pid::from_raw(tid)) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => return Err(freeze_err(tid, "INTERRUPT", e)),
                }
                fresh.push(tid);
            }
            for tid in fresh {
                if wait_stopped(tid).map_err(|e| freeze_err(tid, "waitpid", e))? {
                    stopped.insert(tid, ());
                } else if tid == pid {
                    return Err(DumpError::Gone { pid });
                }
            }
            if !stopped.contains_key(&pid) {
                return Err(DumpError::Gone { pid });
            }
            if stopped.len() > MAX_THREADS {
                return Err(DumpError::Unsupported {
                    pid,
                    resource: format!("{} threads (at most {MAX_THREADS})", stopped.len()),
                });
            }
            let again = task_ids(pid).map_err(|_| DumpError::Gone { pid })?;
            if again.iter().any(|t| !stopped.contains_key(t)) {
                continue;
            }
            let text = std::fs::read_to_string(proc_path(pid, "status"))
                .map_err(|_| DumpError::Gone { pid })?;
            let count = procfs::status::parse_status(&text)
                .map_err(|source| DumpError::Parse {
                    pid,
                    what: "status".into(),
                    source,
                })?
                .threads as usize;
            if count == stopped.len() && again.len() == count {
                return Ok(());
            }
            // A thread on its way out (or one readdir skipped): look again.
            std::thread::yield_now();
        }
        Err(DumpError::Unsupported {
            pid,
            resource: "a set of threads that kept changing during the freeze".into(),
        })
    })();
    match result {
        Ok(()) => {
            let mut tids: Vec<i32> = stopped.keys().copied().filter(|t| *t != pid).collect();
            tids.insert(0, pid);
            Ok(tids)
        }
        Err(e) => {
            for tid in stopped.keys() {
                let _ = ptrace::detach(Pid::from_raw(*tid), None);
            }
            Err(e)
        }
    }
}

impl Frozen {
    /// Seize and stop every thread of `pid`. `pidfd` must refer to the same
    /// process; it is checked again once the threads are stopped, so a
    /// recycled pid is refused.
    pub fn seize(pidfd: OwnedFd, pid: i32) -> Result<Frozen, DumpError> {
        // Stopped by job control before we came (the state the freeze
        // itself shows is a trace stop).
        let stopped = std::fs::read_to_string(proc_path(pid, "stat"))
            .ok()
            .and_then(|t| procfs::stat::parse_stat(&t).ok())
            .is_some_and(|st| st.state == 'T');
        let tids = freeze_all(pid)?;
        let detach_all = |tids: &[i32]| {
            for t in tids {
                let _ = ptrace::detach(Pid::from_raw(*t), None);
            }
        };
        if sys::pidfd_send_signal(&pidfd, 0).is_err() {
            detach_all(&tids);
            return Err(DumpError::Gone { pid });
        }
        let mut regs = Vec::with_capacity(tids.len());
        for &tid in &tids {
            match sys::get_regs(tid) {
                Ok(r) => regs.push(r),
                Err(errno) => {
                    detach_all(&tids);
                    return Err(DumpError::Trace {
                        pid,
                        source: PtraceError::Request {
                            op: "GETREGS",
                            pid: tid,
                            errno,
                        },
                    });
                }
            }
        }
        let saved = regs[0];
        let threads = tids[1..]
            .iter()
            .zip(&regs[1..])
            .map(|(&tid, &saved)| FrozenThread {
                tracee: Tracee::attached(tid),
                saved,
            })
            .collect();
        Ok(Frozen {
            pid,
            pidfd,
            tracee: Some(Tracee::attached(pid)),
            saved,
            sigmask: None,
            threads,
            cancel: None,
            path_opener: None,
            stopped,
            fd_reader: None,
            fds_of_parent: false,
            digest_cache: None,
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
        // Every other thread first, then the leader. After injections a
        // thread sits at a syscall-exit stop, where the kernel applies no
        // restart logic of its own: apply it here (the same thread keeps
        // its restart block, so -ERESTART_RESTARTBLOCK goes through
        // restart_syscall). Without injections it is still at its
        // interrupt stop and the kernel does.
        let mut first_err = None;
        let mut stolen = Vec::new();
        for mut t in std::mem::take(&mut self.threads) {
            let mut regs = t.saved;
            let res = if t.tracee.was_injected() {
                arch::restart_fixup(&mut regs, ResumeIn::Original);
                t.tracee.set_regs(&regs)
            } else {
                Ok(())
            };
            stolen.extend(t.tracee.take_stolen_signals());
            let det = t.tracee.detach();
            if let Err(e) = res.and(det) {
                first_err.get_or_insert(e);
            }
        }
        let mut regs = self.saved;
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
        stolen.extend(tracee.take_stolen_signals());
        let det = tracee.detach();
        for sig in stolen {
            let _ = sys::pidfd_send_signal(&self.pidfd, sig);
        }
        match (res.and(det), first_err) {
            (Err(source), _) | (Ok(()), Some(source)) => Err(DumpError::Trace { pid, source }),
            (Ok(()), None) => Ok(()),
        }
    }

    /// Kill the target (the image is safely on disk).
    pub fn kill(mut self) -> Result<(), DumpError> {
        let pid = self.pid;
        let r = sys::pidfd_send_signal(&self.pidfd, libc::SIGKILL);
        // Dropping the tracees without detaching is fine: the tasks die.
        self.tracee = None;
        self.threads.clear();
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

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = self.release();
    }
}
