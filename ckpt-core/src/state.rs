//! The saved state of one process: what dump captures and restore rebuilds.
//!
//! These types are plain data, serialised into the image manifest (CBOR).
//! They own no resources and trust nothing: a `ProcessState` read from an
//! image is attacker-controlled until the image's signature has been checked,
//! and restore still validates every field it acts on (addresses, sizes,
//! counts) against the limits in [`crate::limits`].
//!
//! Memory contents are not here: they are the image's bulk chunks, each
//! naming the address it belongs at.

use serde::{Deserialize, Serialize};

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
    pub rlimits: Vec<Rlimit>,
    /// mm layout fields for `PR_SET_MM_MAP`.
    pub mm: MmLayout,
    /// Every mapping, in address order.
    pub vmas: Vec<Vma>,
    /// Every file the process maps (including the executable), once each.
    /// `Vma::file` indexes this list.
    pub mapped_files: Vec<FileIdentity>,
    /// Threads; the first is the thread-group leader.
    pub threads: Vec<ThreadState>,
    /// Signal dispositions for signals 1..=64 (SIGKILL and SIGSTOP omitted).
    pub sigactions: Vec<SigAction>,
    /// Open file descriptors.
    pub fds: Vec<FdState>,
    /// Open file descriptions, referenced by `FdState::description`.
    /// Two fds that share a description (dup) share an entry here.
    pub descriptions: Vec<OpenFile>,
    /// itimers (ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF): interval and value in µs.
    pub itimers: Vec<ITimer>,
}

/// Identity of a file at dump time, and the digest of its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    /// Absolute path as the kernel reported it.
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// Digest of the whole file content, by the image's digest algorithm.
    pub digest: Vec<u8>,
}

/// Full credentials, as in `/proc/PID/status` plus securebits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// real, effective, saved, filesystem
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub groups: Vec<u32>,
    pub cap_inheritable: u64,
    pub cap_permitted: u64,
    pub cap_effective: u64,
    pub cap_bounding: u64,
    pub cap_ambient: u64,
    pub securebits: u32,
    pub no_new_privs: bool,
    /// 0 disabled, 1 strict, 2 filter.
    pub seccomp_mode: u32,
}

/// The namespaces a process ran in, as the dumping host saw them.
///
/// The capability sets in `/proc/PID/status` are relative to the process's
/// own user namespace: a process that is "root" in a user namespace it
/// created holds every capability there and none on the host. Dump refuses
/// a target outside its own user or pid namespace; this record lets the
/// verifier tell the initial user namespace (the only one whose
/// capabilities are host capabilities) from any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespaces {
    /// `/proc/PID/ns/user`.
    pub user: NsId,
    /// `/proc/PID/ns/pid`.
    pub pid: NsId,
}

/// A namespace: the device and inode of its nsfs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

impl NsId {
    /// Inode number the kernel gives the initial user namespace
    /// (`PROC_USER_INIT_INO`, fixed since Linux 3.8; namespaces created
    /// later get inode numbers from 0xF0000000 up).
    pub const INITIAL_USER_INO: u64 = 0xEFFF_FFFD;
    /// Inode number of the initial pid namespace (`PROC_PID_INIT_INO`).
    pub const INITIAL_PID_INO: u64 = 0xEFFF_FFFC;

    /// True for the initial user namespace of whichever host wrote it.
    pub fn is_initial_user(&self) -> bool {
        self.ino == Self::INITIAL_USER_INO
    }
}

impl std::fmt::Display for NsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}]", self.ino)
    }
}

/// One resource limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

/// Memory-descriptor layout (see `prctl(PR_SET_MM_MAP)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmLayout {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// Raw auxiliary vector, as `u64` words (pairs of type, value).
    pub auxv: Vec<u64>,
}

/// What backs a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmaKind {
    /// Private anonymous memory (including `[heap]` and `[stack]`).
    Anonymous,
    /// Shared anonymous memory (shmem): contents are dumped.
    SharedAnonymous,
    /// A file, private (copy-on-write) or shared; `Vma::file` names it.
    File,
    /// `[vdso]`
    Vdso,
    /// `[vvar]`
    Vvar,
    /// `[vvar_vclock]`
    VvarVclock,
    /// `[vsyscall]` (fixed by the kernel; not restored).
    Vsyscall,
}

/// One mapping from `/proc/PID/maps` and `smaps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// `PROT_*` bits.
    pub prot: u32,
    /// True for `MAP_SHARED`.
    pub shared: bool,
    /// File offset in bytes (file mappings).
    pub offset: u64,
    pub kind: VmaKind,
    /// Index into `ProcessState::mapped_files` for `VmaKind::File`.
    pub file: Option<u32>,
    /// Name in maps for anonymous special areas (`[heap]`, `[stack]`, `[anon:...]`).
    pub name: String,
    /// Two-letter `VmFlags` from smaps (`gd`, `dc`, `dd`, `wf`, `lo`, ...).
    pub vm_flags: Vec<String>,
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

/// A signal waiting to be delivered (from `PTRACE_PEEKSIGINFO`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignal {
    /// True when queued to the whole process, false when to this thread.
    pub shared: bool,
    /// Raw 128-byte `siginfo_t`.
    pub siginfo: Vec<u8>,
}

/// Per-thread state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadState {
    pub tid: i32,
    /// Registers as seen at the freeze, before any syscall-restart fix-up.
    pub regs: GpRegs,
    /// `NT_X86_XSTATE` regset, exactly as large as the kernel reported.
    pub xsave: Vec<u8>,
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
    pub pending: Vec<PendingSignal>,
}

/// One signal's disposition (kernel `struct sigaction` layout on x86_64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAction {
    pub signal: u32,
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// One interval timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ITimer {
    pub which: u32,
    pub interval_us: u64,
    pub value_us: u64,
}

/// One file descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdState {
    pub fd: i32,
    /// Index into `ProcessState::descriptions`.
    pub description: u32,
    pub cloexec: bool,
}

/// What an open file description refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpenFileKind {
    /// A regular file, reopened by path.
    Regular,
    /// A directory, reopened by path.
    Directory,
    /// `/dev/null`, `/dev/zero`, `/dev/full`, `/dev/random`, `/dev/urandom`.
    CharDevice,
    /// A terminal, pipe, FIFO or socket on fd 0, 1 or 2 whose other end is
    /// outside the image (a shell's terminal or pipe, journald's socket):
    /// not saved, but connected at restore to the restore caller's own fd
    /// of the same number. `connected_to` says what it was at dump time
    /// (`/dev/pts/3`, `pipe:[12345]`, `socket:[678]`), for the user only.
    External { connected_to: String },
}

/// An open file description (shared by all fds that dup'ed it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFile {
    pub kind: OpenFileKind,
    /// The path reopened at restore; for `External`, the same text as
    /// `connected_to` (never opened).
    pub path: String,
    /// `O_*` status flags from fdinfo (without `O_CLOEXEC`).
    pub flags: u32,
    pub offset: u64,
    /// Identity at dump time (dev, ino) for a check on reopen.
    pub dev: u64,
    pub ino: u64,
}
