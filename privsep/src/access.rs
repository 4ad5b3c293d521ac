//! Dump access: the kernel decides, with the rule the dump itself needs.
//!
//! A dump reads the target's memory and injects system calls into it: that
//! is ptrace *attach*-level access, so the question asked of the kernel is
//! the attach one, `PTRACE_MODE_ATTACH_REALCREDS`, the very check
//! `process_vm_readv` makes. It is asked from a forked child that holds
//! exactly the caller's credentials, by reading one byte of the target's
//! memory:
//!
//! * the address is the target's vDSO, or failing that a string on its
//!   initial stack, taken from `/proc/PID/auxv` by the helper itself before
//!   the fork (only a hint: whatever the address, the answer is the
//!   kernel's access decision, see the next point; when the file cannot be
//!   read, address 0 is probed);
//! * the kernel checks access to the whole address space before touching
//!   any page (`mm_access`): `EPERM` is its refusal, and a copied byte or an
//!   `EFAULT` (the page was unmapped in the meantime) both mean the check
//!   passed. A zero-length read returns before the check, so one byte is
//!   always asked for.
//!
//! The older read-mode question (`kcmp`, `PTRACE_MODE_READ_REALCREDS`) is
//! not enough: Yama (`ptrace_scope` >= 1) and LSMs that tell reading apart
//! from tracing can refuse an attach they allow a read for. Nothing here
//! re-implements either rule from `/proc/PID/status`.
//!
//! Targets are held by pidfd: [`open_pidfd`] pins the process, and
//! [`pidfd_alive`] after a check proves the pid still named the same
//! process while the check ran (a pid is not reused while a process that
//! held it has not been reaped).

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;

use crate::as_caller::{run_op, HelperError, Op, RunError};
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
    /// Reading one byte of the target's memory failed for a reason other
    /// than a denial: the helper refuses rather than guess.
    #[error("cannot ask the kernel whether pid {pid} may be attached to (process_vm_readv)")]
    Probe {
        pid: i32,
        #[source]
        errno: Errno,
    },
}

/// `AT_SYSINFO_EHDR`: the address of the vDSO.
const AT_SYSINFO_EHDR: u64 = 33;
/// `AT_EXECFN`: the executable's name, a string on the initial stack.
const AT_EXECFN: u64 = 31;

/// An address worth reading one byte of, from a raw `auxv` (native-endian
/// `(type, value)` pairs of machine words): the vDSO, else the `execve`
/// file name on the stack, else 0 (then only the access check is answered,
/// by `EFAULT`).
fn probe_address(auxv: &[u8]) -> u64 {
    let mut vdso = None;
    let mut execfn = None;
    for pair in auxv.chunks_exact(16) {
        let (mut k, mut v) = ([0u8; 8], [0u8; 8]);
        k.copy_from_slice(&pair[..8]);
        v.copy_from_slice(&pair[8..]);
        let (key, value) = (u64::from_ne_bytes(k), u64::from_ne_bytes(v));
        match key {
            0 => break,
            AT_SYSINFO_EHDR if value != 0 => vdso = Some(value),
            AT_EXECFN if value != 0 => execfn = Some(value),
            _ => {}
        }
    }
    vdso.or(execfn).unwrap_or(0)
}

/// May the real caller ptrace-attach to `pid`, that is read its memory with
/// `process_vm_readv` (`PTRACE_MODE_ATTACH_REALCREDS`)?
///
/// `Ok(false)` is a denial by the kernel. The question is asked in a forked
/// child that holds exactly the caller's credentials (see the module
/// documentation for how).
pub fn caller_may_ptrace_attach(caller: &Caller, pid: i32) -> Result<bool, AccessError> {
    if pid <= 0 {
        return Err(AccessError::InvalidPid(pid));
    }
    // A hint only (see the module documentation): any failure means 0.
    let address = std::fs::read(format!("/proc/{pid}/auxv"))
        .map(|auxv| probe_address(&auxv))
        .unwrap_or(0);
    let reply = run_op(caller, Op::Probe { pid, addr: address }, &[]);
    match reply {
        Ok(r) => Ok(r.value == 1),
        Err(RunError::Helper(h)) => Err(h.into()),
        Err(RunError::Op(f)) if f.errno() == Errno::ESRCH => Err(AccessError::NoSuchProcess(pid)),
        Err(RunError::Op(f)) => Err(AccessError::Probe {
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

#[cfg(test)]
mod tests {
    use super::probe_address;

    fn auxv(pairs: &[(u64, u64)]) -> Vec<u8> {
        pairs
            .iter()
            .flat_map(|(k, v)| k.to_ne_bytes().into_iter().chain(v.to_ne_bytes()))
            .collect()
    }

    #[test]
    fn prefers_the_vdso_then_the_stack() {
        assert_eq!(
            probe_address(&auxv(&[(31, 0x7ff0), (33, 0x7000), (0, 0)])),
            0x7000
        );
        assert_eq!(probe_address(&auxv(&[(31, 0x7ff0), (0, 0)])), 0x7ff0);
        assert_eq!(probe_address(&auxv(&[(0, 0), (33, 0x7000)])), 0);
        assert_eq!(probe_address(&[]), 0);
        assert_eq!(probe_address(&[1, 2, 3]), 0);
    }
}
