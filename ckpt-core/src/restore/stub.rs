//! The stub: the task that becomes the restored process. Created with the
//! decided credentials (fork, or `clone3` with `set_tid` for a granted same
//! pid), in a new session with every signal blocked, a parent-death signal
//! and then `PTRACE_O_EXITKILL` so it never outlives the restorer, and
//! exec'ing the saved executable when that gains nothing.
//!
//! Owns: the stub from its creation until it is released ([`Stub::finish`])
//! or killed ([`Stub::kill`]); the only unsafe code of the restore engine
//! (the child side of the fork). Trusts: the kernel.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::unistd::{ForkResult, Pid};

use super::pidns::{self, PidNamespace};
use super::{RestoreCredentials, RestoreError};
use crate::ptrace::Tracee;
use crate::sys;

/// The half-built task.
pub(super) struct Stub {
    pub(super) tracee: Tracee,
    /// Its pid as it sees it (in a restore into a pid namespace of its
    /// own, not the restorer's [`Stub::pid`]).
    pub(super) ns_pid: i32,
    pub(super) pidfd: OwnedFd,
    /// Whether the stub exec'ed the saved executable (so `/proc/PID/exe`
    /// names it).
    pub(super) exec: bool,
    /// The other threads, once re-created (stopped, traced by us).
    pub(super) threads: Vec<Tracee>,
    /// Its signal dispositions are as `execve` leaves them: each
    /// `SIG_DFL` or `SIG_IGN`, with no flags, no restorer and an empty
    /// mask (it exec'ed, or was forked from a blank stub that had). The
    /// saved dispositions that are the same need no injected syscall.
    pub(super) exec_dispositions: bool,
}

impl Stub {
    pub(super) fn pid(&self) -> i32 {
        self.tracee.pid()
    }

    pub(super) fn kill(self) {
        let _ = sys::pidfd_send_signal(&self.pidfd, libc::SIGKILL);
        // Traced threads are reaped by us, then the leader.
        for t in &self.threads {
            let _ = nix::sys::wait::waitpid(
                Pid::from_raw(t.pid()),
                Some(nix::sys::wait::WaitPidFlag::__WALL),
            );
        }
        let _ = nix::sys::wait::waitpid(
            Pid::from_raw(self.pid()),
            Some(nix::sys::wait::WaitPidFlag::__WALL),
        );
    }

    /// Let the process run: its other threads first, the leader last;
    /// `stopped`: it was stopped by a signal at dump time, and stops again
    /// (`SIGSTOP` delivered as the leader is detached, before it runs any
    /// instruction; its threads, detached after it, join the stop).
    pub(super) fn finish(mut self, stopped: bool) -> Result<(), RestoreError> {
        let pid = self.pid();
        if stopped {
            return self.finish_stopped();
        }
        let stolen = self.tracee.take_stolen_signals();
        // A signal stolen from another thread goes back to that thread,
        // with its siginfo (a timer's signal is for the thread it names).
        let mut stolen_by_threads = Vec::new();
        // The other threads first (each is complete), the leader last.
        let mut detached = Ok(());
        for mut t in std::mem::take(&mut self.threads) {
            let tid = t.pid();
            stolen_by_threads.extend(
                t.take_stolen()
                    .into_iter()
                    .map(|(sig, info)| (tid, sig, info)),
            );
            if let Err(source) = t.detach() {
                detached = Err(RestoreError::Trace { pid: tid, source });
                break;
            }
        }
        if let Err(e) = detached {
            let _ = sys::pidfd_send_signal(&self.pidfd, libc::SIGKILL);
            let _ = nix::sys::wait::waitpid(
                Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::__WALL),
            );
            return Err(e);
        }
        if let Err(source) = self.tracee.detach() {
            // Not released: it must not run half-finished.
            let _ = sys::pidfd_send_signal(&self.pidfd, libc::SIGKILL);
            let _ = nix::sys::wait::waitpid(
                Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::__WALL),
            );
            return Err(RestoreError::Trace { pid, source });
        }
        for sig in stolen {
            let _ = sys::pidfd_send_signal(&self.pidfd, sig);
        }
        for (tid, sig, info) in stolen_by_threads {
            let _ = sys::resend_signal(pid, tid, sig, info.as_ref());
        }
        Ok(())
    }

    fn finish_stopped(mut self) -> Result<(), RestoreError> {
        let pid = self.pid();
        let mut stolen = self.tracee.take_stolen_signals();
        let threads = std::mem::take(&mut self.threads);
        if let Err(source) = self.tracee.detach_with(libc::SIGSTOP) {
            let _ = sys::pidfd_send_signal(&self.pidfd, libc::SIGKILL);
            for t in &threads {
                let _ = nix::sys::wait::waitpid(
                    Pid::from_raw(t.pid()),
                    Some(nix::sys::wait::WaitPidFlag::__WALL),
                );
            }
            let _ = nix::sys::wait::waitpid(
                Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::__WALL),
            );
            return Err(RestoreError::Trace { pid, source });
        }
        let mut first_err = Ok(());
        for mut t in threads {
            stolen.extend(t.take_stolen_signals());
            let tid = t.pid();
            if let Err(source) = t.detach() {
                first_err = Err(RestoreError::Trace { pid: tid, source });
            }
        }
        for sig in stolen {
            let _ = sys::pidfd_send_signal(&self.pidfd, sig);
        }
        first_err
    }
}

/// Who the stub is while it is being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StubMode {
    /// The final credentials from the start (an unprivileged restore): the
    /// kernel checks everything the stub does as if the caller did it.
    Final,
    /// Root (ruid, euid, suid 0, no groups), not dumpable, until the last
    /// injected syscalls drop it to the final credentials: the caller can
    /// neither signal nor trace nor read it while it is built, and files
    /// are opened with `file_creds` as the filesystem ids.
    Root,
}

/// Create the stub: a child in a new session, all signals blocked, traced
/// by us and stopped, with `creds` (mode `Final`) or as root (mode `Root`).
/// In mode `Final`, when the saved executable may be run with those
/// credentials without gaining any (no set-id bit for anyone else, no file
/// capabilities), the stub execs it so that `/proc/PID/exe` is right;
/// otherwise it stays a copy of this program until its memory is replaced.
/// With `pid`, the stub gets that pid (`clone3` `set_tid`) or restore fails.
/// With `ns` (mode `Final` only), it is forked into that pid namespace
/// (`pid` is then its pid there), joins its user and mount namespaces
/// before it takes the caller's ids, and drops the capabilities joining
/// gave it.
pub(super) fn spawn_stub(
    exe: &CString,
    creds: &RestoreCredentials,
    mode: StubMode,
    pid: Option<i32>,
    inherit: &[i32],
    transfer: Option<i32>,
    ns: Option<&PidNamespace>,
) -> Result<Stub, RestoreError> {
    // The caller's fds above 2 handed to the restored process
    // (`--inherit-fd`), and the end of the pair shared descriptions come
    // through (`super::transfer`), sorted: kept open through the stub's
    // exec, every other fd above 2 closed by it.
    let mut keep: Vec<u32> = inherit
        .iter()
        .copied()
        .chain(transfer)
        .filter_map(|n| u32::try_from(n).ok().filter(|&n| n > 2))
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let groups: Vec<libc::gid_t> = creds.groups.clone();
    let argv: [*const libc::c_char; 2] = [exe.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let empty = c"";
    let cap_xattr = c"security.capability";
    let privileged_restorer = nix::unistd::geteuid().is_root();
    // The stub dies with us until it is traced with PTRACE_O_EXITKILL.
    let parent = nix::unistd::getpid().as_raw();
    if mode == StubMode::Root && !privileged_restorer {
        return Err(RestoreError::Unsupported(
            "a privileged restore without root".into(),
        ));
    }
    if mode == StubMode::Root && ns.is_some() {
        return Err(RestoreError::Unsupported(
            "a pid namespace for a restore with other credentials than yours".into(),
        ));
    }
    let join = ns.map(PidNamespace::join_fds);
    let asked_pid = pid;
    // Outside a new pid namespace the stub checks its parent is still us;
    // inside it, its parent (us) is not visible: getppid() is 0 while we
    // live (1, its keeper, once we died).
    let expected_parent = if ns.is_some() { 0 } else { parent };
    // The child tells us (one byte) whether it will exec the executable.
    let (decision_r, decision_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(RestoreError::Spawn)?;
    let decision_fd = decision_w.as_raw_fd();
    // The child body below is only sound in a copy of a single-threaded
    // process (no lock another thread held at the fork can be needed in it).
    // Threads that were joined just before (chunk verification) may still
    // be listed for a moment: wait for them to be gone.
    match sys::settled_thread_count().map_err(RestoreError::Spawn)? {
        1 => {}
        n => return Err(RestoreError::Threaded(n)),
    }
    if let Some(ns) = ns {
        ns.enter()?;
    }
    let forked = match pid {
        // SAFETY: this process has one thread (checked just above, and
        // nothing between the check and here starts one); the child only
        // makes raw, async-signal-safe system calls on memory prepared
        // above and then stops, execs or `_exit`s.
        None => unsafe { nix::unistd::fork() }.map_err(RestoreError::Spawn),
        // SAFETY: as for fork above; that is `fork_with_pid`'s contract.
        Some(want) => match unsafe { sys::fork_with_pid(want) } {
            Ok(0) => Ok(ForkResult::Child),
            Ok(child) => Ok(ForkResult::Parent {
                child: Pid::from_raw(child),
            }),
            Err(Errno::EEXIST) => Err(RestoreError::PidTaken(want)),
            Err(e) => Err(RestoreError::Spawn(e)),
        },
    };
    let forked = match (forked, ns) {
        (Ok(ForkResult::Child), _) => ForkResult::Child,
        (forked, None) => forked?,
        (forked, Some(ns)) => {
            let back = ns.leave();
            let forked = forked?;
            if let (Err(e), ForkResult::Parent { child }) = (back, forked) {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(child, None);
                return Err(e);
            }
            forked
        }
    };
    match forked {
        ForkResult::Child => {
            // SAFETY: everything passed is prepared before fork and lives
            // until exec/_exit; only async-signal-safe calls are made.
            unsafe {
                let mut all: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&mut all);
                libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
                libc::setsid();
                let mut exec_ok = false;
                let mut fd = -1;
                if mode == StubMode::Root {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setresgid(0, 0, 0) != 0
                        || libc::setresuid(0, 0, 0) != 0
                    {
                        libc::_exit(120);
                    }
                    libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
                } else if let Some(join) = join {
                    // Groups as root here, then the namespaces, then the
                    // caller's ids (mapped there); joining gave every
                    // capability in the caller's user namespace: dropped.
                    if pidns::take_creds(creds, &groups, Some(join)).is_err()
                        || !pidns::drop_all_caps()
                    {
                        libc::_exit(121);
                    }
                } else {
                    // Without privilege the stub already has the caller's
                    // groups, and may not call setgroups at all.
                    let groups_ok =
                        !privileged_restorer || libc::setgroups(groups.len(), groups.as_ptr()) == 0;
                    if !groups_ok
                        || libc::setresgid(creds.gid[0], creds.gid[1], creds.gid[2]) != 0
                        || libc::setresuid(creds.uid[0], creds.uid[1], creds.uid[2]) != 0
                        || libc::setfsgid(creds.gid[3]) < 0
                        || libc::setfsuid(creds.uid[3]) < 0
                    {
                        libc::_exit(121);
                    }
                    if !privileged_restorer {
                        libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
                    }
                }
                if mode == StubMode::Final {
                    fd = libc::open(exe.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                    if fd >= 0 {
                        let mut st: libc::stat = std::mem::zeroed();
                        if libc::fstat(fd, &mut st) == 0
                            && (st.st_mode & libc::S_IFMT) == libc::S_IFREG
                        {
                            let suid_foreign =
                                st.st_mode & libc::S_ISUID != 0 && st.st_uid != creds.uid[1];
                            let sgid_foreign =
                                st.st_mode & libc::S_ISGID != 0 && st.st_gid != creds.gid[1];
                            let has_caps =
                                libc::fgetxattr(fd, cap_xattr.as_ptr(), std::ptr::null_mut(), 0)
                                    >= 0;
                            exec_ok = !suid_foreign && !sgid_foreign && !has_caps;
                        }
                    }
                }
                // Set only now: changing credentials clears it. A parent
                // that died before it was set is seen by getppid.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0
                    || libc::getppid() != expected_parent
                {
                    libc::_exit(124);
                }
                let decision: u8 = if exec_ok { b'E' } else { b'F' };
                libc::write(decision_fd, (&decision as *const u8).cast(), 1);
                // Every fd above 2 close-on-exec, except the inherited
                // ones, which lose the flag.
                let mut next = 3u32;
                for &k in &keep {
                    if k > next {
                        libc::syscall(
                            libc::SYS_close_range,
                            next,
                            k - 1,
                            4u32, /* CLOSE_RANGE_CLOEXEC */
                        );
                    }
                    libc::fcntl(k as libc::c_int, libc::F_SETFD, 0);
                    next = k.saturating_add(1);
                }
                libc::syscall(
                    libc::SYS_close_range,
                    next,
                    u32::MAX,
                    4u32, /* CLOSE_RANGE_CLOEXEC */
                );
                if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                    libc::_exit(122);
                }
                libc::kill(libc::getpid(), libc::SIGSTOP);
                if exec_ok {
                    libc::syscall(
                        libc::SYS_execveat,
                        fd,
                        empty.as_ptr(),
                        argv.as_ptr(),
                        envp.as_ptr(),
                        libc::AT_EMPTY_PATH,
                    );
                    libc::_exit(123);
                }
                loop {
                    libc::pause();
                }
            }
        }
        ForkResult::Parent { child } => {
            drop(decision_w);
            let mut decision = [0u8; 1];
            let execs = matches!(nix::unistd::read(decision_r.as_raw_fd(), &mut decision), Ok(1) if decision[0] == b'E');
            let pid = child.as_raw();
            let pidfd = match sys::pidfd_open(pid) {
                Ok(fd) => fd,
                Err(e) => {
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(child, None);
                    return Err(RestoreError::Spawn(e));
                }
            };
            let mut stub = Stub {
                tracee: Tracee::attached(pid),
                // In a pid namespace of its own, it got the pid asked for there.
                ns_pid: match (ns, asked_pid) {
                    (Some(_), Some(w)) => w,
                    _ => pid,
                },
                pidfd,
                exec: execs,
                threads: Vec::new(),
                exec_dispositions: execs,
            };
            match prepare_stub(&mut stub) {
                Ok(()) => Ok(stub),
                Err(e) => {
                    stub.kill();
                    Err(e)
                }
            }
        }
    }
}

/// Bring a freshly forked stub to a syscall-exit stop from which we inject.
fn prepare_stub(stub: &mut Stub) -> Result<(), RestoreError> {
    let pid = stub.pid();
    let tr = |source| RestoreError::Trace { pid, source };
    stub.tracee.wait_initial_sigstop().map_err(tr)?;
    let opts = ptrace::Options::PTRACE_O_TRACESYSGOOD
        | ptrace::Options::PTRACE_O_TRACEEXEC
        | ptrace::Options::PTRACE_O_EXITKILL;
    stub.tracee.set_options(opts).map_err(tr)?;
    if !stub.exec {
        // It stays in its signal-delivery stop; injections start from there.
        return Ok(());
    }
    stub.tracee.cont_until_exec().map_err(tr)?;
    // Step from the exec event (inside execve) to its syscall-exit stop.
    stub.tracee.next_syscall_stop().map_err(tr)
}
