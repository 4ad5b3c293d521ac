//! Dump access: the kernel decides (`SETUID.md` items 8 and 9).
//!
//! Whether the real caller may ptrace-read a target is asked of the kernel
//! from a child running with exactly the caller's credentials:
//! `kcmp(getpid(), pid, KCMP_VM, 0, 0)` performs the
//! `PTRACE_MODE_READ_REALCREDS` check (`__ptrace_may_access`) on both pids
//! before comparing anything. Nothing here re-implements that rule from
//! `/proc/PID/status`.
//!
//! Targets are held by pidfd: [`open_pidfd`] pins the process, and
//! [`pidfd_alive`] after a check proves the pid still named the same
//! process while the check ran (a pid is not reused while a process that
//! held it has not been reaped).

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;

use crate::as_caller::{run_as_caller, ChildFail, ChildOk, HelperError, RunError};
use crate::caller::Caller;
use crate::sys;

/// Asking whether the caller may access a process.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Helper(#[from] HelperError),
    /// The pid names no process.
    #[error("no such process: pid {0}")]
    NoSuchProcess(i32),
    /// The pid is not a valid process id.
    #[error("invalid pid {0}")]
    InvalidPid(i32),
    /// `pidfd_open` failed for another reason.
    #[error("cannot open a pidfd for pid {pid}")]
    Pidfd {
        pid: i32,
        #[source]
        errno: Errno,
    },
    /// `pidfd_send_signal` failed.
    #[error("cannot signal pid {pid} through its pidfd")]
    Signal {
        pid: i32,
        #[source]
        errno: Errno,
    },
    /// `kcmp` failed for a reason other than a denial (for example a kernel
    /// built without `CONFIG_KCMP`): the helper refuses rather than guess.
    #[error("cannot ask the kernel whether pid {pid} may be read (kcmp)")]
    Kcmp {
        pid: i32,
        #[source]
        errno: Errno,
    },
}

const OP_KCMP: u32 = 1;

/// May the real caller ptrace-read `pid` (`PTRACE_MODE_READ_REALCREDS`)?
///
/// `Ok(false)` is a denial by the kernel. The question is asked in a forked
/// child that holds exactly the caller's credentials.
pub fn caller_may_ptrace_read(caller: &Caller, pid: i32) -> Result<bool, AccessError> {
    if pid <= 0 {
        return Err(AccessError::InvalidPid(pid));
    }
    let reply = run_as_caller(caller, &[], || {
        let me = nix::unistd::getpid().as_raw();
        match sys::kcmp_vm(me, pid) {
            Ok(_) => Ok(ChildOk {
                value: 1,
                fds: Vec::new(),
            }),
            Err(Errno::EPERM) | Err(Errno::EACCES) => Ok(ChildOk {
                value: 0,
                fds: Vec::new(),
            }),
            Err(e) => Err(ChildFail::new(OP_KCMP, e)),
        }
    });
    match reply {
        Ok(r) => Ok(r.value == 1),
        Err(RunError::Helper(h)) => Err(h.into()),
        Err(RunError::Op(f)) if f.errno() == Errno::ESRCH => Err(AccessError::NoSuchProcess(pid)),
        Err(RunError::Op(f)) => Err(AccessError::Kcmp {
            pid,
            errno: f.errno(),
        }),
    }
}

/// Open a pidfd for `pid`.
pub fn open_pidfd(pid: i32) -> Result<OwnedFd, AccessError> {
    if pid <= 0 {
        return Err(AccessError::InvalidPid(pid));
    }
    sys::pidfd_open(pid).map_err(|errno| match errno {
        Errno::ESRCH => AccessError::NoSuchProcess(pid),
        errno => AccessError::Pidfd { pid, errno },
    })
}

/// Is the process behind `pidfd` still there (not yet exited)?
///
/// Sends signal 0: `ESRCH` means it has exited; `EPERM` means it exists but
/// we may not signal it (only possible when not privileged).
pub fn pidfd_alive(pidfd: &impl AsFd) -> bool {
    match sys::pidfd_send_signal(pidfd.as_fd(), 0) {
        Ok(()) | Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// Send `SIGKILL` to the process behind `pidfd`.
pub fn pidfd_kill(pidfd: &impl AsFd, pid: i32) -> Result<(), AccessError> {
    sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL)
        .map_err(|errno| AccessError::Signal { pid, errno })
}
