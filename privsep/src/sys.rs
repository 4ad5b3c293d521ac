//! The few raw system calls privsep needs that `nix` does not wrap, each in a
//! small function. Every `unsafe` block of this crate's library lives here.
//! A call whose soundness depends on its caller is an `unsafe fn` with a
//! `# Safety` section; the others check what they need themselves.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// `fork(2)`.
///
/// Returns `Ok(None)` in the child and `Ok(Some(pid))` in the parent.
///
/// # Safety
/// The child must only do what [`crate::as_caller`] does: drop credentials,
/// make a few system calls, send one message (the worker: one per request
/// it reads, until its socket ends) and leave with [`exit_child`] (or, in
/// [`crate::agent`], set up fds and credentials and `exec`),
/// never returning into the caller's stack frames (so no object it shares
/// with the parent is dropped twice). In a multi-threaded process it may
/// only use what glibc keeps usable in a forked child (raw system calls,
/// malloc, which glibc's fork handlers reset).
pub(crate) unsafe fn fork() -> Result<Option<nix::unistd::Pid>, Errno> {
    // SAFETY: the contract above is this function's own contract, passed
    // on to the caller: it is exactly `nix::unistd::fork`'s.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => Ok(None),
        nix::unistd::ForkResult::Parent { child } => Ok(Some(child)),
    }
}

/// `_exit(2)`: leave a forked child without running atexit handlers or
/// flushing stdio buffers that belong to the parent.
pub(crate) fn exit_child(code: i32) -> ! {
    // SAFETY: `_exit` takes no pointers and never returns; skipping atexit
    // handlers and stdio flushing is exactly what a forked child wants.
    unsafe { libc::_exit(code) }
}

/// How many threads this process has (`/proc/self/task`).
pub(crate) fn thread_count() -> Result<usize, Errno> {
    let errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let mut n = 0;
    for entry in std::fs::read_dir("/proc/self/task").map_err(errno)? {
        entry.map_err(errno)?;
        n += 1;
    }
    Ok(n)
}

/// Why [`clear_environment`] did not clear the environment.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ClearEnvError {
    /// Other threads exist: one of them could be reading the environment.
    Threaded(usize),
    /// Counting the threads or `clearenv` failed.
    Failed(Errno),
}

/// `clearenv(3)`. `std::env::remove_var` cannot remove every entry a hostile
/// caller can put in `envp` (names that contain `=` or are empty make it
/// panic), so the whole table is dropped at once.
///
/// Refused unless this process has exactly one thread: `clearenv` frees the
/// table other threads' `getenv` could be reading.
pub(crate) fn clear_environment() -> Result<(), ClearEnvError> {
    match thread_count().map_err(ClearEnvError::Failed)? {
        1 => {}
        n => return Err(ClearEnvError::Threaded(n)),
    }
    // SAFETY: checked just above that this thread is the only one, so no
    // other thread can be reading the table being freed; std's `env`
    // functions copy what they read, so nothing holds a pointer into it.
    let rc = unsafe { libc::clearenv() };
    if rc == 0 {
        Ok(())
    } else {
        Err(ClearEnvError::Failed(Errno::last()))
    }
}

/// Set `signal` to `SIG_IGN` or `SIG_DFL`.
pub(crate) fn set_signal_disposition(
    signal: nix::sys::signal::Signal,
    ignore: bool,
) -> Result<(), Errno> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet};
    let handler = if ignore {
        SigHandler::SigIgn
    } else {
        SigHandler::SigDfl
    };
    let action = SigAction::new(handler, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_IGN or SIG_DFL runs no code of ours in signal
    // context, so no async-signal-safety requirement can be broken.
    unsafe { nix::sys::signal::sigaction(signal, &action) }.map(drop)
}

/// `pidfd_open(pid, 0)`: a pidfd for `pid` (close-on-exec).
pub(crate) fn pidfd_open(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if rc < 0 {
        return Err(Errno::last());
    }
    let fd = RawFd::try_from(rc).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing
    // else owns; OwnedFd takes sole ownership of it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `poll` on one fd for `POLLIN` (a pidfd: the process exited), up to
/// `timeout_ms`; `Ok(false)` on timeout. Retried on `EINTR`.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> Result<bool, Errno> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `p` is one valid pollfd that lives for the call, as the
        // count says; the fd is borrowed and open.
        let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        match rc {
            0 => return Ok(false),
            n if n > 0 => return Ok(true),
            _ if Errno::last() == Errno::EINTR => continue,
            _ => return Err(Errno::last()),
        }
    }
}

/// `pidfd_send_signal(fd, sig, NULL, 0)`; `sig == 0` checks existence only.
pub(crate) fn pidfd_send_signal(fd: BorrowedFd<'_>, sig: i32) -> Result<(), Errno> {
    // SAFETY: the fd is borrowed and valid for the call; a null siginfo is
    // allowed by the system call and means "as kill(2) would".
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// `process_vm_readv(pid, [one byte here], 1, [one byte at addr], 1, 0)`:
/// copy one byte of `pid`'s memory at `addr`. Returns the number of bytes
/// copied.
///
/// The kernel decides access first, for the whole address space
/// (`mm_access(task, PTRACE_MODE_ATTACH_REALCREDS)`, answering `EPERM`),
/// and only then pins the remote page (answering `EFAULT` if `addr` is not
/// readable there). A zero-length request returns before the access check,
/// which is why exactly one byte is asked for.
pub(crate) fn process_vm_read_byte(pid: i32, addr: u64) -> Result<usize, Errno> {
    let mut byte = 0u8;
    let local = libc::iovec {
        iov_base: std::ptr::addr_of_mut!(byte).cast(),
        iov_len: 1,
    };
    let remote = libc::iovec {
        // An address in the other process, never dereferenced here.
        iov_base: addr as usize as *mut libc::c_void,
        iov_len: 1,
    };
    // SAFETY: `local` describes one writable byte (`byte`) that lives for
    // the whole call; `remote` is only interpreted by the kernel in the
    // other process's address space. Both iovec arrays have exactly one
    // element, as the counts say.
    let rc = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if rc < 0 {
        Err(Errno::last())
    } else {
        usize::try_from(rc).map_err(|_| Errno::EINVAL)
    }
}

/// `close_range(first, last, 0)`.
///
/// # Safety
/// Closing an fd that an `OwnedFd`, `File` or other owner still holds breaks
/// that owner (its later use or drop acts on whatever reuses the number).
/// The caller guarantees that no fd in `first..=last` is used or dropped
/// through an owner afterwards: in practice, only a forked child that then
/// leaves with `_exit` may call this.
pub(crate) unsafe fn close_range(first: u32, last: u32) -> Result<(), Errno> {
    if first > last {
        return Ok(());
    }
    // SAFETY: the system call takes integers only; what closing the fds
    // means for their owners is this function's contract, upheld by the
    // caller.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// `close_range(first, ~0, CLOSE_RANGE_CLOEXEC)`: marks every fd from
/// `first` up close-on-exec. Safe: the fds stay open and owned as they
/// were; only an `exec` closes them.
pub(crate) fn cloexec_from(first: u32) -> Result<(), Errno> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: the system call takes integers only, and with this flag it
    // closes nothing: it sets FD_CLOEXEC on the range.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// `renameat2(olddir, old, newdir, new, flags)` with raw flags (nix only
/// wraps it for glibc builds, and we want a stable errno for EINVAL).
pub(crate) fn renameat2(
    dir: BorrowedFd<'_>,
    old: &std::ffi::CStr,
    new: &std::ffi::CStr,
    flags: u32,
) -> Result<(), Errno> {
    // SAFETY: both names are valid NUL-terminated strings borrowed for the
    // duration of the call; the dirfd is borrowed and open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            dir.as_raw_fd(),
            old.as_ptr(),
            dir.as_raw_fd(),
            new.as_ptr(),
            flags,
        )
    };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Take ownership of an fd that `recvmsg` just installed (SCM_RIGHTS).
///
/// # Safety
/// `fd` must be open and owned by nothing else, and be passed here once:
/// the fd numbers of an `SCM_RIGHTS` message the kernel has just delivered
/// to this process qualify.
pub(crate) unsafe fn own_received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: by this function's contract `fd` is open and has no other
    // owner, so OwnedFd becomes its only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Install `handler` for `signal` (`SA_RESTART`, nothing else blocked while
/// it runs); returns the previous action.
pub(crate) fn catch_signal(
    signal: nix::sys::signal::Signal,
    handler: extern "C" fn(libc::c_int),
) -> Result<nix::sys::signal::SigAction, Errno> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet};
    let action = SigAction::new(
        SigHandler::Handler(handler),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the only handler installed through this function is
    // `shield::note_signal`, which does one atomic compare-and-swap: it is
    // async-signal-safe and touches no state the interrupted code holds.
    unsafe { nix::sys::signal::sigaction(signal, &action) }
}

/// Set `signal` to `SIG_IGN`; returns the previous action.
pub(crate) fn ignore_signal(
    signal: nix::sys::signal::Signal,
) -> Result<nix::sys::signal::SigAction, Errno> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet};
    let action = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_IGN runs no code of ours in signal context.
    unsafe { nix::sys::signal::sigaction(signal, &action) }
}

/// Put back an action returned by [`catch_signal`] or [`ignore_signal`].
pub(crate) fn restore_signal(
    signal: nix::sys::signal::Signal,
    old: &nix::sys::signal::SigAction,
) -> Result<(), Errno> {
    // SAFETY: `old` is an action this process had installed before (the
    // default, SIG_IGN, or a handler of ours); reinstalling it restores a
    // state that was already valid.
    unsafe { nix::sys::signal::sigaction(signal, old) }.map(drop)
}

/// Disarm `ITIMER_REAL`, `ITIMER_VIRTUAL` and `ITIMER_PROF` (they survive
/// `execve`, so the caller may have armed them).
pub(crate) fn disarm_interval_timers() -> Result<(), Errno> {
    let zero = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
    };
    for which in [libc::ITIMER_REAL, libc::ITIMER_VIRTUAL, libc::ITIMER_PROF] {
        // SAFETY: `zero` is a valid itimerval borrowed for the call; a null
        // old-value pointer is allowed.
        let rc = unsafe { libc::setitimer(which, &zero, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(Errno::last());
        }
    }
    Ok(())
}
