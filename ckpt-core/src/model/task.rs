//! Tasks: the process as a whole and each of its threads (registers,
//! xsave, rseq, robust list, pending thread-directed signals).
//!
//! Owns the shape of [`ProcessState`], the root of the saved state, and of
//! [`ThreadState`]. Trusts nothing: plain data, checked by
//! [`crate::image::validate`] before use.

use serde::{Deserialize, Serialize};

use super::{
    Credentials, FdState, FileIdentity, ITimer, MmLayout, Namespaces, PendingSignal, PosixTimer,
    Rlimit, SeccompFilter, SigActions, Vma, XsaveArea,
};

/// Everything about one process except memory contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessState {
    /// Pid in the dumped pid namespace.
    pub pid: i32,
    /// Parent pid at dump time (informational).
    pub ppid: i32,
    /// Session id and process group id at dump time.
    pub sid: i32,
    pub pgid: i32,
    /// `/proc/PID/comm`.
    pub comm: String,
    /// `/proc/PID/exe`, with identity and digest.
    pub exe: FileIdentity,
    /// Credentials of the target at dump time.
    pub creds: Credentials,
    /// The user and pid namespaces the process ran in. Its capability sets
    /// are relative to `user` (see [`Namespaces`]). `None` in images written
    /// before namespaces were recorded: nothing is granted from the
    /// credentials of such an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Namespaces>,
    /// Working directory (absolute path).
    pub cwd: String,
    /// File mode creation mask.
    pub umask: u32,
    /// `personality(2)` flags.
    pub personality: u32,
    /// Resource limits, by `RLIMIT_*` number.
    #[serde(deserialize_with = "super::shrunk")]
    pub rlimits: Vec<Rlimit>,
    /// mm layout fields for `PR_SET_MM_MAP`.
    pub mm: MmLayout,
    /// Every mapping, in address order.
    #[serde(deserialize_with = "super::shrunk")]
    pub vmas: Vec<Vma>,
    /// Every file the process maps (including the executable), once each.
    /// `Vma::file` indexes this list.
    #[serde(deserialize_with = "super::shrunk")]
    pub mapped_files: Vec<FileIdentity>,
    /// Threads; the first is the thread-group leader.
    #[serde(deserialize_with = "super::shrunk")]
    pub threads: Vec<ThreadState>,
    /// Signal dispositions for signals 1..=64 (SIGKILL and SIGSTOP omitted).
    pub sigactions: SigActions,
    /// Open file descriptors. Each names an open file description in the
    /// image's file table (`Manifest::files`), where two fds that share a
    /// description (dup, or inherited by another task) share an entry.
    #[serde(deserialize_with = "super::shrunk")]
    pub fds: Vec<FdState>,
    /// Its fd table is its parent's (it was made by `clone` with
    /// `CLONE_FILES`): `fds` is empty, the parent's fds are this process's
    /// too, and restore makes it share its parent's table again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fds_of_parent: bool,
    /// itimers (ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF): interval and value in µs.
    pub itimers: Vec<ITimer>,
    /// `/proc/PID/oom_score_adj` (-1000..=1000); 0, the default, is left
    /// out of the encoding (images from before it was recorded decode as
    /// 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub oom_score_adj: i32,
    /// `PR_GET_CHILD_SUBREAPER`: whether the process adopts its orphaned
    /// descendants.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub child_subreaper: bool,
    /// `PR_GET_PDEATHSIG`: the signal the process gets when its parent
    /// thread dies (0: none). Recorded, never restored: the parent it
    /// refers to is not part of the image (see `restore::task`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pdeathsig: i32,
    /// POSIX timers (`timer_create`), in id order; none is left out of the
    /// encoding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub posix_timers: Vec<PosixTimer>,
    /// The seccomp filter chain (`creds.seccomp_mode` 2), oldest first:
    /// the order restore installs them in. Every thread runs under this
    /// one chain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seccomp_filters: Vec<SeccompFilter>,
    /// Scheduling policy, priority and nice value of the main thread
    /// (`sched_getattr`); `None` in images from before it was recorded
    /// (restore then leaves the restorer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sched: Option<Sched>,
    /// The working directory had been removed (`cwd` is its path then,
    /// without the kernel's ` (deleted)`): restore makes a directory there,
    /// enters it and removes it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cwd_deleted: bool,
    /// Stopped by a signal (job control) at dump time: restore stops it
    /// again (`SIGSTOP`) once it is released.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

/// A child that had exited but was not reaped yet: restore makes a
/// process that exits the same way under the same parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zombie {
    pub pid: i32,
    /// Its parent, one of the image's tasks.
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    /// The wait status its parent will read (`exit_code` of
    /// `/proc/PID/stat`): the exit code in bits 8-15, or the signal that
    /// ended it in bits 0-6 (bit 7: it dumped core).
    pub exit_status: i32,
    /// Its name (`/proc/PID/comm`), given back before it exits. Empty in
    /// images from before zombies kept their name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comm: String,
}

/// Scheduling attributes (`struct sched_attr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sched {
    /// `SCHED_OTHER` (0), `FIFO` (1), `RR` (2), `BATCH` (3), `IDLE` (5),
    /// `DEADLINE` (6).
    pub policy: u32,
    /// `SCHED_FLAG_RESET_ON_FORK`.
    pub reset_on_fork: bool,
    /// Nice value, -20..=19 (for `OTHER` and `BATCH`).
    pub nice: i32,
    /// Real-time priority, 1..=99 for `FIFO` and `RR`, else 0.
    pub priority: u32,
    /// `SCHED_DEADLINE` runtime, deadline and period in nanoseconds (0
    /// otherwise).
    pub runtime_ns: u64,
    pub deadline_ns: u64,
    pub period_ns: u64,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// x86_64 general registers, in `struct user_regs_struct` order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

/// An rseq registration (`PTRACE_GET_RSEQ_CONFIGURATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rseq {
    pub abi_pointer: u64,
    pub abi_size: u32,
    pub signature: u32,
}

/// Per-thread state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadState {
    pub tid: i32,
    /// Registers as seen at the freeze, before any syscall-restart fix-up.
    pub regs: GpRegs,
    /// `NT_X86_XSTATE` regset, exactly as large as the kernel reported.
    pub xsave: XsaveArea,
    /// Blocked signal mask.
    pub sigmask: u64,
    /// sigaltstack: (ss_sp, ss_flags, ss_size).
    pub altstack: (u64, i32, u64),
    pub rseq: Option<Rseq>,
    /// `set_tid_address` pointer is not readable; recorded as 0.
    pub clear_child_tid: u64,
    /// `set_robust_list` registration: (head, len); (0, 0) when none.
    #[serde(default)]
    pub robust_list: (u64, u64),
    /// Signals queued to this thread; the leader (`threads[0]`) also holds
    /// those queued to the whole process (`shared`), once.
    pub pending: Vec<PendingSignal>,
    /// The thread's name (`/proc/PID/task/TID/comm`). Empty in images from
    /// before threads were saved (the leader's name is
    /// [`ProcessState::comm`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Address of the thread runtime's cached copy of the tid (glibc:
    /// `struct pthread`'s `tid` at `fs_base + 0x2d0`), verified at dump to
    /// hold exactly this tid; 0 when not verified (another runtime, or an
    /// image from before it was recorded). Restore keeps it equal to the
    /// new tid and registers it as the thread's `clear_child_tid`.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub cached_tid_at: u64,
    /// Lock words of robust futexes this thread owned at dump (found on
    /// its robust list, with the owner bits equal to `tid`). Restore
    /// rewrites their owner to the new tid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub robust_futexes: Vec<RobustFutex>,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// A robust futex owned by a thread: the lock word's address, and whether
/// the word 8 bytes after it is glibc's `__owner` field (the list's
/// `futex_offset` was glibc's and the field held the tid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobustFutex {
    pub lock: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub glibc_owner: bool,
}
