//! The few raw system calls privsep needs that `nix` does not wrap, each in a
//! small safe function. Every `unsafe` block of this crate lives here.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// `fork(2)`.
///
/// Returns `Ok(None)` in the child and `Ok(Some(pid))` in the parent.
///
/// The child must only do what [`crate::as_caller`] does: drop credentials,
/// make a few system calls, send one message and leave with [`exit_child`].
/// It never returns into the caller's stack frames (the caller wraps the
/// child's work in `catch_unwind` and always ends with `_exit`).
pub(crate) fn fork() -> Result<Option<nix::unistd::Pid>, Errno> {
    // SAFETY: the child branch of every caller of this function runs a
    // bounded piece of code and ends in `exit_child` (`_exit`), never
    // returning into code that assumes it is the original process. The
    // helpers are single-threaded; in multi-threaded test processes the
    // child only uses glibc functions that glibc keeps usable after fork
    // (malloc is reset by glibc's fork handlers) and raw system calls.
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

/// `clearenv(3)`. `std::env::remove_var` cannot remove every entry a hostile
/// caller can put in `envp` (names that contain `=` or are empty make it
/// panic), so the whole table is dropped at once.
pub(crate) fn clear_environment() -> Result<(), Errno> {
    // SAFETY: called once from `startup::harden`, before any other thread
    // exists and before anything holds a pointer into the environment
    // (std's own `env` functions copy what they read).
    let rc = unsafe { libc::clearenv() };
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::last())
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

/// `kcmp(pid1, pid2, KCMP_VM, 0, 0)`. The kernel checks
/// `PTRACE_MODE_READ_REALCREDS` access to both processes before comparing.
pub(crate) fn kcmp_vm(pid1: i32, pid2: i32) -> Result<i64, Errno> {
    const KCMP_VM: libc::c_int = 1;
    // SAFETY: kcmp with KCMP_VM takes only integers and dereferences nothing.
    let rc = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_VM, 0, 0) };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

/// `close_range(first, last, 0)`.
pub(crate) fn close_range(first: u32, last: u32) -> Result<(), Errno> {
    if first > last {
        return Ok(());
    }
    // SAFETY: close_range takes integers only. It is called in a forked child
    // that owns no Rust objects wrapping the fds it closes except those the
    // caller explicitly keeps outside the range.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
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
pub(crate) fn own_received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was installed in our fd table by the recvmsg call that
    // returned it a moment ago; no other object refers to it, so OwnedFd
    // becomes its only owner.
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
