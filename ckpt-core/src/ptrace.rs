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
use nix::sys::wait::WaitStatus;
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
    stolen: Vec<(i32, Option<libc::siginfo_t>)>,
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

    /// The next stop (or end) of the task. A signal-delivery stop of a
    /// signal nix has no name for (a real-time signal, such as glibc's
    /// timer signal 32) is stolen here like any other (recorded,
    /// suppressed) and the task resumed with `how`.
    fn wait(&mut self, how: Resume) -> Result<WaitStatus, PtraceError> {
        loop {
            let status = sys::waitpid_raw(self.pid).map_err(req("waitpid", self.pid))?;
            match WaitStatus::from_raw(self.npid(), status) {
                Ok(s) => return Ok(s),
                Err(_) if libc::WIFSTOPPED(status) && status >> 16 == 0 => {
                    self.steal(libc::WSTOPSIG(status));
                    self.resume(how)?;
                }
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
            let s = self.wait(how)?;
            if wanted(&s) {
                return Ok(());
            }
            match s {
                WaitStatus::Stopped(_, sig) => {
                    self.steal(sig as i32);
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

    /// The `syscall` instruction injections use now, and the register
    /// template that goes with it (`None` before one is set).
    pub fn syscall_site(&self) -> (u64, Option<libc::user_regs_struct>) {
        (self.syscall_at, self.template)
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
        self.run_to(self.syscall_at + 2)
    }

    /// Resume with `PTRACE_CONT` until the trap of the `int3` at `int3_at`
    /// (see [`Tracee::run_to_trap`]).
    fn run_to(&mut self, int3_at: u64) -> Result<libc::user_regs_struct, PtraceError> {
        let after = int3_at + 1;
        self.resume(Resume::Cont)?;
        loop {
            let s = self.wait(Resume::Cont)?;
            match s {
                WaitStatus::Stopped(_, Signal::SIGTRAP) => {
                    let r = self.regs()?;
                    if r.rip == after {
                        return Ok(r);
                    }
                    self.steal(libc::SIGTRAP);
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
                    self.steal(sig as i32);
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

    /// Inject `calls` in order and return their raw results (a negative
    /// errno on failure), stopping after the first that fails: the result
    /// list is then shorter than `calls` and ends with that failure.
    ///
    /// From a trampoline ([`Tracee::set_trap_site`]) up to
    /// [`BATCH_MAX`] calls run in one `PTRACE_CONT`: a short program is
    /// written after the trampoline's `syscall; int3` (in the same page,
    /// which only we write), that loads each call's registers, makes it,
    /// stores its result at the end of the page and jumps to its final
    /// `int3` as soon as one fails. Elsewhere they are injected one by one.
    pub fn syscall_batch(
        &mut self,
        calls: &[(libc::c_long, [u64; 6])],
    ) -> Result<Vec<i64>, PtraceError> {
        let mut out = Vec::with_capacity(calls.len());
        if !self.traps_after || calls.len() < 2 {
            for &(nr, args) in calls {
                let r = self.syscall_raw(nr, args)?;
                out.push(r);
                if (-4095..0).contains(&r) {
                    break;
                }
            }
            return Ok(out);
        }
        for part in calls.chunks(BATCH_MAX) {
            let results = self.run_batch(part)?;
            let failed = results.last().is_some_and(|r| (-4095..0).contains(r));
            out.extend(results);
            if failed {
                break;
            }
        }
        Ok(out)
    }

    /// One [`Tracee::syscall_batch`] program of at most [`BATCH_MAX`] calls.
    fn run_batch(&mut self, calls: &[(libc::c_long, [u64; 6])]) -> Result<Vec<i64>, PtraceError> {
        let page = self.syscall_at;
        let code_at = page + BATCH_CODE_OFFSET;
        let results_at = page + BATCH_RESULTS_OFFSET;
        let code = batch_program(calls, results_at);
        let end = code_at + code.len() as u64;
        let mut sentinels = Vec::with_capacity(calls.len() * 8);
        for _ in calls {
            sentinels.extend_from_slice(&BATCH_NOT_RUN.to_ne_bytes());
        }
        let write = |addr: u64, bytes: &[u8]| match sys::vm_write(self.pid, addr, bytes) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(_) => Err(PtraceError::Request {
                op: "writing a syscall batch",
                pid: self.pid,
                errno: Errno::EFAULT,
            }),
            Err(errno) => Err(PtraceError::Request {
                op: "writing a syscall batch",
                pid: self.pid,
                errno,
            }),
        };
        write(code_at, &code)?;
        write(results_at, &sentinels)?;
        let mut r = match self.template {
            Some(t) => t,
            None => self.regs()?,
        };
        r.rip = code_at;
        r.orig_rax = u64::MAX;
        self.set_regs(&r)?;
        self.injected = true;
        self.run_to(end - 1)?;
        let mut raw = vec![0u8; sentinels.len()];
        match sys::vm_read(self.pid, results_at, &mut raw) {
            Ok(n) if n == raw.len() => {}
            Ok(_) => {
                return Err(PtraceError::Request {
                    op: "reading a syscall batch's results",
                    pid: self.pid,
                    errno: Errno::EFAULT,
                })
            }
            Err(errno) => {
                return Err(PtraceError::Request {
                    op: "reading a syscall batch's results",
                    pid: self.pid,
                    errno,
                })
            }
        }
        let mut out = Vec::with_capacity(calls.len());
        for w in raw.chunks_exact(8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            let v = u64::from_ne_bytes(b);
            if v == BATCH_NOT_RUN {
                break;
            }
            out.push(v as i64);
        }
        Ok(out)
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
        self.take_stolen().into_iter().map(|(sig, _)| sig).collect()
    }

    /// Signals that arrived while we drove the task, each with the
    /// `siginfo` the kernel reported at its stop (when it could be read).
    pub fn take_stolen(&mut self) -> Vec<(i32, Option<libc::siginfo_t>)> {
        std::mem::take(&mut self.stolen)
    }

    /// Record signal `sig`, at whose delivery stop the task is, with its
    /// `siginfo`; the caller resumes the task without it.
    fn steal(&mut self, sig: i32) {
        let info = ptrace::getsiginfo(self.npid()).ok();
        self.stolen.push((sig, info));
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

/// Calls per [`Tracee::syscall_batch`] program.
pub const BATCH_MAX: usize = 32;
/// Where a batch program starts in the trampoline's page.
const BATCH_CODE_OFFSET: u64 = 64;
/// Where its results are stored: the last `8 * BATCH_MAX` bytes of the page.
const BATCH_RESULTS_OFFSET: u64 = 4096 - 8 * BATCH_MAX as u64;
/// A result no syscall returns (an address in the kernel's half, below the
/// errno range): the call did not run.
const BATCH_NOT_RUN: u64 = 0xffff_ffff_ffff_f000;

/// The x86-64 program of a syscall batch: for each call, load `rax` and
/// the six argument registers (`movabs`), `syscall`, store `rax` at its
/// result slot (`movabs [moffs64], rax`), and go to the final `int3` if it
/// is an error (`cmp rax, -4095; jae`). 94 bytes a call, then `int3`.
fn batch_program(calls: &[(libc::c_long, [u64; 6])], results_at: u64) -> Vec<u8> {
    const STEP: usize = 94;
    let mut code = Vec::with_capacity(calls.len() * STEP + 1);
    let total = calls.len() * STEP;
    for (i, &(nr, a)) in calls.iter().enumerate() {
        // movabs rax, rdi, rsi, rdx, r10, r8, r9
        for (prefix, value) in [
            ([0x48, 0xb8], nr as u64),
            ([0x48, 0xbf], a[0]),
            ([0x48, 0xbe], a[1]),
            ([0x48, 0xba], a[2]),
            ([0x49, 0xba], a[3]),
            ([0x49, 0xb8], a[4]),
            ([0x49, 0xb9], a[5]),
        ] {
            code.extend_from_slice(&prefix);
            code.extend_from_slice(&value.to_le_bytes());
        }
        code.extend_from_slice(&[0x0f, 0x05]); // syscall
        code.extend_from_slice(&[0x48, 0xa3]); // movabs [results + 8i], rax
        code.extend_from_slice(&(results_at + 8 * i as u64).to_le_bytes());
        code.extend_from_slice(&[0x48, 0x3d]); // cmp rax, -4095
        code.extend_from_slice(&(-4095i32).to_le_bytes());
        // jae to the int3: rel32 from the end of this instruction.
        let next = (i + 1) * STEP;
        let rel = i32::try_from(total - next).unwrap_or(0);
        code.extend_from_slice(&[0x0f, 0x83]);
        code.extend_from_slice(&rel.to_le_bytes());
    }
    code.push(0xcc); // int3
    code
}

/// Find a `syscall` instruction (0f 05) in `code`, which was read from
/// address `base`.
pub fn find_syscall_insn(code: &[u8], base: u64) -> Option<u64> {
    code.windows(2)
        .position(|w| w == [0x0f, 0x05])
        .map(|i| base + i as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_program_stores_each_result_and_jumps_to_its_int3_on_error() {
        let calls = [(9, [1, 2, 3, 4, 5, 6]), (10, [0; 6]), (11, [7; 6])];
        let results = 0x7000_0f00;
        let code = batch_program(&calls, results);
        assert_eq!(code.len(), 3 * 94 + 1);
        assert_eq!(code.last(), Some(&0xcc));
        for i in 0..calls.len() {
            let step = &code[i * 94..(i + 1) * 94];
            assert_eq!(&step[0..2], &[0x48, 0xb8]);
            assert_eq!(step[2..10], (calls[i].0 as u64).to_le_bytes());
            assert_eq!(&step[70..72], &[0x0f, 0x05], "syscall");
            assert_eq!(step[74..82], (results + 8 * i as u64).to_le_bytes());
            assert_eq!(&step[88..90], &[0x0f, 0x83], "jae");
            let mut rel = [0u8; 4];
            rel.copy_from_slice(&step[90..94]);
            let target = (i + 1) * 94 + i32::from_le_bytes(rel) as usize;
            assert_eq!(target, code.len() - 1, "jae lands on the int3");
        }
        assert!(BATCH_CODE_OFFSET as usize + BATCH_MAX * 94 < BATCH_RESULTS_OFFSET as usize);
    }
}
