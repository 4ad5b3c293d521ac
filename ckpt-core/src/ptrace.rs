//! A traced task and syscall injection into it.
//!
//! Owns: the ptrace relationship with one task (seized for dump, or created
//! with `PTRACE_TRACEME` for restore). Trusts: the kernel's stop reports.
//! Signals that reach the task while we drive it are recorded, suppressed,
//! and handed back to the caller (`stolen_signals`) so they can be re-sent
//! once the task runs on its own: never silently dropped.
//!
//! Injection (`Tracee::syscall`) points the task at a `syscall` instruction
//! with the arguments in registers and runs it from syscall-entry to
//! syscall-exit stop. The caller saves the task's own registers first and
//! puts them back last; `orig_rax` is always -1 in injected state so the
//! kernel never applies its restart logic to our registers.

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::sys;

/// An error driving a traced task.
#[derive(Debug, thiserror::Error)]
pub enum PtraceError {
    #[error("ptrace {op} on pid {pid}: {errno}")]
    Request {
        op: &'static str,
        pid: i32,
        errno: Errno,
    },
    #[error("pid {pid} exited or was killed while being traced ({status})")]
    Gone { pid: i32, status: String },
    #[error("pid {pid}: unexpected stop {status} during {during}")]
    UnexpectedStop {
        pid: i32,
        status: String,
        during: &'static str,
    },
    #[error("pid {pid}: injected {name} failed: {errno}")]
    Syscall {
        pid: i32,
        name: &'static str,
        errno: Errno,
    },
}

/// `PTRACE_EVENT_STOP`.
const PTRACE_EVENT_STOP: i32 = 128;

/// How to resume a task after a stop we do not want.
#[derive(Debug, Clone, Copy)]
enum Resume {
    Cont,
    Syscall,
}

/// A task under our ptrace control, currently stopped.
pub struct Tracee {
    pid: i32,
    /// Address of a `syscall` instruction in the task.
    syscall_at: u64,
    /// Register template for injections (segment selectors etc.).
    template: Option<libc::user_regs_struct>,
    /// Signals that arrived while we drove the task.
    stolen: Vec<i32>,
    /// Whether any syscall was injected (the task then sits at a
    /// syscall-exit stop rather than where it was stopped).
    injected: bool,
    /// Whether the `syscall` at `syscall_at` is followed by an `int3` (a
    /// trampoline we wrote): then an injection runs to that trap with one
    /// `PTRACE_CONT` instead of stopping at syscall entry and exit.
    traps_after: bool,
}

impl std::fmt::Debug for Tracee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracee").field("pid", &self.pid).finish()
    }
}

fn req(op: &'static str, pid: i32) -> impl Fn(Errno) -> PtraceError {
    move |errno| PtraceError::Request { op, pid, errno }
}

impl Tracee {
    /// Wrap a task that is already traced by us and stopped.
    pub fn attached(pid: i32) -> Tracee {
        Tracee {
            pid,
            syscall_at: 0,
            template: None,
            stolen: Vec::new(),
            injected: false,
            traps_after: false,
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn npid(&self) -> Pid {
        Pid::from_raw(self.pid)
    }

    /// `PTRACE_SEIZE` + `PTRACE_INTERRUPT`, then wait until the task is in
    /// its interrupt stop.
    pub fn seize(pid: i32) -> Result<Tracee, PtraceError> {
        let opts = libc::PTRACE_O_TRACESYSGOOD;
        sys::seize(pid, opts).map_err(req("SEIZE", pid))?;
        let mut t = Tracee::attached(pid);
        ptrace::interrupt(t.npid()).map_err(req("INTERRUPT", pid))?;
        t.wait_event_stop()?;
        Ok(t)
    }

    fn wait(&self) -> Result<WaitStatus, PtraceError> {
        loop {
            match waitpid(self.npid(), Some(WaitPidFlag::__WALL)) {
                Ok(s) => return Ok(s),
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    return Err(PtraceError::Request {
                        op: "waitpid",
                        pid: self.pid,
                        errno,
                    })
                }
            }
        }
    }

    fn gone(&self, s: WaitStatus) -> PtraceError {
        PtraceError::Gone {
            pid: self.pid,
            status: format!("{s:?}"),
        }
    }

    /// How a stolen signal is suppressed and the task resumed while
    /// waiting for the stop we want.
    fn resume(&self, how: Resume) -> Result<(), PtraceError> {
        match how {
            Resume::Cont => ptrace::cont(self.npid(), None).map_err(req("CONT", self.pid)),
            Resume::Syscall => ptrace::syscall(self.npid(), None).map_err(req("SYSCALL", self.pid)),
        }
    }

    /// Wait until `wanted` accepts a stop. Signal-delivery stops on the way
    /// are stolen (recorded, suppressed) and the task resumed with `how`;
    /// stray `PTRACE_EVENT_STOP`s are resumed too when `skip_event_stops`.
    fn wait_for(
        &mut self,
        during: &'static str,
        how: Resume,
        skip_event_stops: bool,
        wanted: impl Fn(&WaitStatus) -> bool,
    ) -> Result<(), PtraceError> {
        loop {
            let s = self.wait()?;
            if wanted(&s) {
                return Ok(());
            }
            match s {
                WaitStatus::Stopped(_, sig) => {
                    self.stolen.push(sig as i32);
                    self.resume(how)?;
                }
                WaitStatus::PtraceEvent(_, _, PTRACE_EVENT_STOP) if skip_event_stops => {
                    self.resume(how)?;
                }
                WaitStatus::Exited(..) | WaitStatus::Signaled(..) => return Err(self.gone(s)),
                other => {
                    return Err(PtraceError::UnexpectedStop {
                        pid: self.pid,
                        status: format!("{other:?}"),
                        during,
                    })
                }
            }
        }
    }

    /// Wait for the `PTRACE_EVENT_STOP` that follows `PTRACE_INTERRUPT`.
    fn wait_event_stop(&mut self) -> Result<(), PtraceError> {
        self.wait_for("interrupt", Resume::Cont, false, |s| {
            matches!(s, WaitStatus::PtraceEvent(_, _, PTRACE_EVENT_STOP))
        })
    }

    /// Resume with `PTRACE_SYSCALL` and wait for the next syscall stop.
    pub fn next_syscall_stop(&mut self) -> Result<(), PtraceError> {
        self.resume(Resume::Syscall)?;
        self.wait_for("syscall", Resume::Syscall, true, |s| {
            matches!(s, WaitStatus::PtraceSyscall(_))
        })
    }

    /// Resume with `PTRACE_CONT` and wait for an exec event stop.
    pub fn cont_until_exec(&mut self) -> Result<(), PtraceError> {
        self.resume(Resume::Cont)?;
        self.wait_for(
            "exec",
            Resume::Cont,
            false,
            |s| matches!(s, WaitStatus::PtraceEvent(_, _, ev) if *ev == libc::PTRACE_EVENT_EXEC),
        )
    }

    /// Wait for the initial `SIGSTOP` of a `PTRACE_TRACEME` child.
    pub fn wait_initial_sigstop(&mut self) -> Result<(), PtraceError> {
        self.wait_for("start", Resume::Cont, false, |s| {
            matches!(s, WaitStatus::Stopped(_, Signal::SIGSTOP))
        })
    }

    pub fn set_options(&self, opts: ptrace::Options) -> Result<(), PtraceError> {
        ptrace::setoptions(self.npid(), opts).map_err(req("SETOPTIONS", self.pid))
    }

    pub fn regs(&self) -> Result<libc::user_regs_struct, PtraceError> {
        sys::get_regs(self.pid).map_err(req("GETREGS", self.pid))
    }

    pub fn set_regs(&self, r: &libc::user_regs_struct) -> Result<(), PtraceError> {
        sys::set_regs(self.pid, r).map_err(req("SETREGS", self.pid))
    }

    /// Use the `syscall` instruction at `addr` for injections, with `template`
    /// supplying the registers injections do not set.
    pub fn set_syscall_site(&mut self, addr: u64, template: libc::user_regs_struct) {
        self.syscall_at = addr;
        self.template = Some(template);
        self.traps_after = false;
    }

    /// Use the trampoline at `addr` (`syscall; int3`, written by us into
    /// memory only we write) for injections: each one is a single
    /// `PTRACE_CONT` that ends at the `int3`'s trap, one round trip
    /// instead of two.
    pub fn set_trap_site(&mut self, addr: u64, template: libc::user_regs_struct) {
        self.set_syscall_site(addr, template);
        self.traps_after = true;
    }

    /// Inject from the same site, but stop at syscall entry and exit: for
    /// a syscall after which the `int3` is gone (unmapping the trampoline).
    pub fn stop_at_syscall_exit(&mut self) {
        self.traps_after = false;
    }

    /// Resume with `PTRACE_CONT` until the trap of the `int3` that follows
    /// the syscall site, and return the registers there. Other signals on
    /// the way are stolen, as in [`Tracee::wait_for`]; a `SIGTRAP` stop
    /// anywhere but right after that `int3` (one sent by someone) is too.
    /// A syscall interrupted by a stolen signal is restarted by the kernel
    /// (the signal is suppressed, so no handler runs).
    fn run_to_trap(&mut self) -> Result<libc::user_regs_struct, PtraceError> {
        let after = self.syscall_at + 3;
        self.resume(Resume::Cont)?;
        loop {
            let s = self.wait()?;
            match s {
                WaitStatus::Stopped(_, Signal::SIGTRAP) => {
                    let r = self.regs()?;
                    if r.rip == after {
                        return Ok(r);
                    }
                    self.stolen.push(libc::SIGTRAP);
                    self.resume(Resume::Cont)?;
                }
                // A fault at the site (the trampoline gone) would only
                // repeat: fail instead of resuming into it again.
                WaitStatus::Stopped(
                    _,
                    sig @ (Signal::SIGSEGV | Signal::SIGBUS | Signal::SIGILL),
                ) => {
                    return Err(PtraceError::UnexpectedStop {
                        pid: self.pid,
                        status: format!("{sig:?}"),
                        during: "an injected syscall",
                    })
                }
                WaitStatus::Stopped(_, sig) => {
                    self.stolen.push(sig as i32);
                    self.resume(Resume::Cont)?;
                }
                WaitStatus::PtraceEvent(_, _, PTRACE_EVENT_STOP) => {
                    self.resume(Resume::Cont)?;
                }
                WaitStatus::Exited(..) | WaitStatus::Signaled(..) => return Err(self.gone(s)),
                other => {
                    return Err(PtraceError::UnexpectedStop {
                        pid: self.pid,
                        status: format!("{other:?}"),
                        during: "syscall",
                    })
                }
            }
        }
    }

    /// Inject one syscall and return its raw result (negative errno on
    /// failure). Ends at the syscall-exit stop.
    pub fn syscall_raw(&mut self, nr: libc::c_long, args: [u64; 6]) -> Result<i64, PtraceError> {
        let template = match self.template {
            Some(t) => t,
            None => self.regs()?,
        };
        let mut r = template;
        r.rip = self.syscall_at;
        r.rax = nr as u64;
        r.orig_rax = u64::MAX;
        r.rdi = args[0];
        r.rsi = args[1];
        r.rdx = args[2];
        r.r10 = args[3];
        r.r8 = args[4];
        r.r9 = args[5];
        self.set_regs(&r)?;
        self.injected = true;
        if self.traps_after {
            return Ok(self.run_to_trap()?.rax as i64);
        }
        self.next_syscall_stop()?; // entry
        self.next_syscall_stop()?; // exit
        let out = self.regs()?;
        Ok(out.rax as i64)
    }

    /// Inject one syscall; a negative result becomes [`PtraceError::Syscall`].
    pub fn syscall(
        &mut self,
        name: &'static str,
        nr: libc::c_long,
        args: [u64; 6],
    ) -> Result<u64, PtraceError> {
        let r = self.syscall_raw(nr, args)?;
        if (-4095..0).contains(&r) {
            let errno = Errno::from_raw(i32::try_from(-r).unwrap_or(libc::EINVAL));
            return Err(PtraceError::Syscall {
                pid: self.pid,
                name,
                errno,
            });
        }
        Ok(r as u64)
    }

    /// Whether any syscall has been injected.
    pub fn was_injected(&self) -> bool {
        self.injected
    }

    /// Signals that arrived while we drove the task.
    pub fn take_stolen_signals(&mut self) -> Vec<i32> {
        std::mem::take(&mut self.stolen)
    }

    /// Detach, letting the task run.
    pub fn detach(self) -> Result<(), PtraceError> {
        ptrace::detach(self.npid(), None).map_err(req("DETACH", self.pid))
    }

    /// Detach with signal `sig` delivered as the task resumes (before it
    /// runs any instruction of its own).
    pub fn detach_with(self, sig: i32) -> Result<(), PtraceError> {
        let sig =
            nix::sys::signal::Signal::try_from(sig).map_err(|errno| PtraceError::Request {
                op: "DETACH",
                pid: self.pid,
                errno,
            })?;
        ptrace::detach(self.npid(), Some(sig)).map_err(req("DETACH", self.pid))
    }
}

/// Find a `syscall` instruction (0f 05) in `code`, which was read from
/// address `base`.
pub fn find_syscall_insn(code: &[u8], base: u64) -> Option<u64> {
    code.windows(2)
        .position(|w| w == [0x0f, 0x05])
        .map(|i| base + i as u64)
}
