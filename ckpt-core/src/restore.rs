//! The restore engine: build a process from an image, from the outside, with
//! ptrace, and let it continue where it stopped.
//!
//! Owns: the stub task from its creation until it is detached. The stub is
//! created with exactly the credentials the caller of this module decided
//! ([`RestoreCredentials`]), before it does anything else; every file it
//! reopens is opened *by the stub itself* through an injected `openat`, so
//! the kernel applies those credentials. Trusts: nothing in the image beyond
//! what its reader verified — every address, size and count is checked again
//! before it is acted on (by [`crate::image::validate`], the rules every
//! reader applies, then against what this restore supports); memory chunks
//! are re-hashed as they stream (the caller owns the image file and could
//! change it under us).
//!
//! If anything fails, the half-built stub is killed: a process is either
//! fully restored or not there at all. Should the restorer die instead, the
//! kernel kills the stub: from its creation until it is traced with
//! `PTRACE_O_EXITKILL` it holds a parent-death signal (`SIGKILL`, set after
//! its credentials are changed, which would clear it, and checked against a
//! parent that died before it was set); from then on `PTRACE_O_EXITKILL`
//! does. The parent-death signal is cleared again just before release, so
//! the restored process does not die with the restorer.
//!
//! [`restore_with`] lets the caller act at the last moment before the
//! process is released to run (the audit record of a granted restore must
//! be durable before its effect) and call the restore off instead.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::unistd::{ForkResult, Pid};
use sha2::{Digest, Sha256};

use crate::arch::x86_64::{self as arch, ResumeIn};
use crate::image::validate::validate;
use crate::image::{ImageError, ImageReader, Manifest};
use crate::procfs;
use crate::ptrace::{find_syscall_insn, PtraceError, Tracee};
use crate::state::*;
use crate::sys;

const PAGE: u64 = 4096;
/// Longest path we write into the stub.
const MAX_PATH: usize = 3900;
/// Where in the scratch page an `open_how` goes (paths start at 0).
const OPEN_HOW_OFFSET: u64 = 4096 - 64;
/// Threads that read, check and write memory chunks.
const FILL_THREADS: usize = 2;

/// Credentials the restored process gets (decided by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreCredentials {
    /// real, effective, saved, filesystem
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub groups: Vec<u32>,
}

/// Capability state to give the restored process (the `capabilities` grant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreCapabilities {
    pub inheritable: u64,
    pub permitted: u64,
    pub effective: u64,
    pub bounding: u64,
    pub ambient: u64,
    pub securebits: u32,
}

/// How to restore: what the policy decided. [`RestoreOptions::caller`]
/// gives the unprivileged default.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Who asked for the restore (real ids of the caller).
    pub caller: RestoreCredentials,
    /// Final credentials of the restored process.
    pub creds: RestoreCredentials,
    /// Capability sets; `None` means none at all.
    pub caps: Option<RestoreCapabilities>,
    /// Credentials used to reopen files (the caller's unless the policy
    /// granted `privileged-files`).
    pub file_creds: RestoreCredentials,
    /// Recreate the original pid with `clone3(set_tid)` (`same-pid`).
    pub same_pid: bool,
    /// Point `/proc/PID/exe` at the saved executable even when the caller
    /// could not exec it unchanged (`exe-link`).
    pub exe_link: bool,
    /// The capabilities the caller can already hold: for a caller whose
    /// real uid is 0, what exec gives it (the permitted set the setuid
    /// helper got at exec: its bounding set, none under `SECBIT_NOROOT`);
    /// 0 for anyone else. [`RestoreOptions::privileged`] compares against it.
    pub caller_caps: u64,
}

/// `CAP_SETGID`, `CAP_SETUID`: with both, any ids are the caller's to take.
const CAP_SETGID: u64 = 1 << 6;
const CAP_SETUID: u64 = 1 << 7;
/// Securebits (`linux/securebits.h`).
const SECBIT_NOROOT: u64 = 1 << 0;
const SECBIT_NOROOT_LOCKED: u64 = 1 << 1;
const SECBIT_KEEP_CAPS: u64 = 1 << 4;

impl RestoreOptions {
    /// Restore exactly as if `caller` had started the program.
    pub fn caller(caller: RestoreCredentials) -> RestoreOptions {
        RestoreOptions {
            file_creds: caller.clone(),
            creds: caller.clone(),
            caller,
            caps: None,
            same_pid: false,
            exe_link: false,
            caller_caps: 0,
        }
    }

    /// The result exceeds what the caller already has: ids (final or for
    /// reopening files) that are not the caller's, unless the caller holds
    /// `CAP_SETUID` and `CAP_SETGID` (root); or a capability the caller
    /// cannot hold. Such a restore is built as an untouchable root task,
    /// every mapped file must match its signed digest and must not be
    /// writable by the caller, nothing is opened through a symlink, and the
    /// stub drops to `creds` last. Derived from the options, never set.
    pub fn privileged(&self) -> bool {
        let ids_free = self.caller_caps & (CAP_SETUID | CAP_SETGID) == CAP_SETUID | CAP_SETGID;
        let foreign = |c: &RestoreCredentials| !same_creds(c, &self.caller);
        let ids = !ids_free && (foreign(&self.creds) || foreign(&self.file_creds));
        let caps = self.caps.as_ref().is_some_and(|k| {
            (k.permitted | k.effective | k.inheritable | k.ambient) & !self.caller_caps != 0
        });
        ids || caps
    }

    /// The restore is exactly the caller starting the program: the caller's
    /// ids for everything, no capability sets to set, no exe link. Only
    /// then is the stub created with the final credentials from the start
    /// (and for a root caller gets what exec gives root); anything else is
    /// built as root and dropped to exactly `creds` and `caps` last.
    pub fn is_plain(&self) -> bool {
        same_creds(&self.creds, &self.caller)
            && same_creds(&self.file_creds, &self.caller)
            && self.caps.is_none()
            && !self.exe_link
    }
}

/// Equal ids, and the same set of supplementary groups.
fn same_creds(a: &RestoreCredentials, b: &RestoreCredentials) -> bool {
    let set = |g: &[u32]| {
        g.iter()
            .copied()
            .collect::<std::collections::BTreeSet<u32>>()
    };
    a.uid == b.uid && a.gid == b.gid && set(&a.groups) == set(&b.groups)
}

/// A restored, running process.
#[derive(Debug, Clone)]
pub struct Restored {
    pub pid: i32,
    /// Things the user should know (what was not restored exactly).
    pub notices: Vec<String>,
}

/// Why a restore failed. No restored process is left behind in any case.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the image cannot be restored: {0}")]
    Invalid(String),
    #[error("the image needs {0}, which restore does not support yet")]
    Unsupported(String),
    #[error("this machine cannot run the image: {0}")]
    Incompatible(String),
    #[error("{path} changed since the dump ({what}); refusing to restore")]
    FileChanged { path: String, what: String },
    #[error("cannot open {path} with the restored process's credentials: {errno}")]
    Open { path: String, errno: Errno },
    #[error("creating the process: {0}")]
    Spawn(Errno),
    /// The restorer has other threads: forking the stub would not be sound.
    #[error("creating the process: the restorer must be single-threaded ({0} threads)")]
    Threaded(usize),
    #[error("pid {0} is in use: cannot restore the original pid")]
    PidTaken(i32),
    #[error("{path} can be modified by the caller: it cannot become part of a process with more privilege than the caller")]
    CallerWritable { path: String },
    #[error("restored process {pid}: {source}")]
    Trace { pid: i32, source: PtraceError },
    #[error("restored process {pid}: {what} at {addr:#x}: {errno}")]
    Memory {
        pid: i32,
        what: &'static str,
        addr: u64,
        errno: Errno,
    },
    #[error("reading the image: {0}")]
    Image(#[from] ImageError),
    /// The caller's [`Release`] hook called the restore off; the process
    /// was killed before it ran.
    #[error("the restore of process {pid} was called off before it was released")]
    CalledOff { pid: i32 },
}

/// What the caller of [`restore_with`] decides about the release.
pub trait Release {
    /// Polled before the stub is created and before release: `true` calls
    /// the restore off.
    fn cancelled(&self) -> bool {
        false
    }

    /// Called once the process is complete and stopped, right before it is
    /// released to run. `false` calls the restore off (the process is
    /// killed, [`RestoreError::CalledOff`]).
    fn before_release(&mut self, restored: &Restored) -> bool;
}

/// The [`Release`] of [`restore`]: always go ahead.
struct GoAhead;

impl Release for GoAhead {
    fn before_release(&mut self, _restored: &Restored) -> bool {
        true
    }
}

/// Restore the process described by `reader` (whose integrity the caller
/// has established) with `opts.creds`.
pub fn restore(reader: &ImageReader, opts: &RestoreOptions) -> Result<Restored, RestoreError> {
    restore_with(reader, opts, &mut GoAhead)
}

/// [`restore`], with `release` consulted before anything is created and
/// again right before the finished process is released to run.
pub fn restore_with(
    reader: &ImageReader,
    opts: &RestoreOptions,
    release: &mut dyn Release,
) -> Result<Restored, RestoreError> {
    let m = reader.manifest();
    let plan = Plan::check(m)?;
    let exe_path = cstring(&m.process.exe.path)?;
    let mode = if opts.is_plain() {
        StubMode::Final
    } else {
        StubMode::Root
    };
    let want_pid = opts.same_pid.then_some(m.process.pid);
    if release.cancelled() {
        return Err(RestoreError::CalledOff { pid: 0 });
    }
    let stub = spawn_stub(&exe_path, &opts.creds, mode, want_pid)?;
    let pid = stub.tracee.pid();
    let mut notices = Vec::new();
    if !opts.same_pid && pid != m.process.pid {
        notices.push(format!(
            "the process gets a new pid {pid} (it was {})",
            m.process.pid
        ));
    }
    if mode == StubMode::Root && !opts.exe_link {
        notices.push(format!(
            "/proc/{pid}/exe will not name {} (no exe-link grant)",
            m.process.exe.path
        ));
    } else if mode == StubMode::Final && !stub.exec {
        notices.push(format!(
            "{} cannot be executed with your credentials without changing them (set-id or file capabilities), or is gone: /proc/{}/exe will not name it",
            m.process.exe.path,
            stub.tracee.pid()
        ));
    }
    let mut builder = Builder {
        stub,
        m,
        notices,
        opts,
        mode,
        exe_fd: None,
    };
    match builder.build(reader, &plan) {
        Ok(()) => {
            let Builder { stub, notices, .. } = builder;
            let restored = Restored { pid, notices };
            if release.cancelled() || !release.before_release(&restored) {
                stub.kill();
                return Err(RestoreError::CalledOff { pid });
            }
            stub.finish()?;
            Ok(restored)
        }
        Err(e) => {
            builder.stub.kill();
            Err(e)
        }
    }
}

fn cstring(s: &str) -> Result<CString, RestoreError> {
    CString::new(s).map_err(|_| RestoreError::Invalid(format!("path with a NUL byte: {s:?}")))
}

/// Checked facts about the image, derived before anything is created.
struct Plan {
    thread: ThreadState,
}

impl Plan {
    /// The image is well-formed ([`validate`], the same check every reader
    /// ran when opening it), and this restore can build it.
    fn check(m: &Manifest) -> Result<Plan, RestoreError> {
        validate(m).map_err(|e| RestoreError::Image(ImageError::Invalid(e)))?;
        let p = &m.process;
        if m.arch != "x86_64" {
            return Err(RestoreError::Incompatible(format!(
                "image is for {}",
                m.arch
            )));
        }
        let thread = match p.threads.as_slice() {
            [t] => t.clone(),
            // `validate` refuses an image without threads.
            [] => return Err(RestoreError::Invalid("no thread".into())),
            _ => {
                return Err(RestoreError::Unsupported(format!(
                    "{} threads",
                    p.threads.len()
                )))
            }
        };
        // The groups are written into the scratch page.
        if p.creds.groups.len() > 512 {
            return Err(RestoreError::Unsupported(format!(
                "{} supplementary groups",
                p.creds.groups.len()
            )));
        }
        Ok(Plan { thread })
    }
}

/// The half-built task.
struct Stub {
    tracee: Tracee,
    pidfd: OwnedFd,
    /// Whether the stub exec'ed the saved executable (so `/proc/PID/exe`
    /// names it).
    exec: bool,
}

impl Stub {
    fn pid(&self) -> i32 {
        self.tracee.pid()
    }

    fn kill(self) {
        let _ = sys::pidfd_send_signal(&self.pidfd, libc::SIGKILL);
        let _ = nix::sys::wait::waitpid(
            Pid::from_raw(self.pid()),
            Some(nix::sys::wait::WaitPidFlag::__WALL),
        );
    }

    fn finish(mut self) -> Result<(), RestoreError> {
        let pid = self.pid();
        let stolen = self.tracee.take_stolen_signals();
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
        Ok(())
    }
}

/// Who the stub is while it is being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StubMode {
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
fn spawn_stub(
    exe: &CString,
    creds: &RestoreCredentials,
    mode: StubMode,
    pid: Option<i32>,
) -> Result<Stub, RestoreError> {
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
    // The child tells us (one byte) whether it will exec the executable.
    let (decision_r, decision_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(RestoreError::Spawn)?;
    let decision_fd = decision_w.as_raw_fd();
    // The child body below is only sound in a copy of a single-threaded
    // process (no lock another thread held at the fork can be needed in it).
    match sys::thread_count().map_err(RestoreError::Spawn)? {
        1 => {}
        n => return Err(RestoreError::Threaded(n)),
    }
    let forked = match pid {
        // SAFETY: this process has one thread (checked just above, and
        // nothing between the check and here starts one); the child only
        // makes raw, async-signal-safe system calls on memory prepared
        // above and then stops, execs or `_exit`s.
        None => unsafe { nix::unistd::fork() }.map_err(RestoreError::Spawn)?,
        // SAFETY: as for fork above; that is `fork_with_pid`'s contract.
        Some(want) => match unsafe { sys::fork_with_pid(want) } {
            Ok(0) => ForkResult::Child,
            Ok(child) => ForkResult::Parent {
                child: Pid::from_raw(child),
            },
            Err(Errno::EEXIST) => {
                return Err(RestoreError::PidTaken(want));
            }
            Err(e) => return Err(RestoreError::Spawn(e)),
        },
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
                    || libc::getppid() != parent
                {
                    libc::_exit(124);
                }
                let decision: u8 = if exec_ok { b'E' } else { b'F' };
                libc::write(decision_fd, (&decision as *const u8).cast(), 1);
                libc::syscall(
                    libc::SYS_close_range,
                    3u32,
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
                pidfd,
                exec: execs,
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

/// Drives the stub from a blank task to the saved process.
struct Builder<'m> {
    stub: Stub,
    m: &'m Manifest,
    notices: Vec<String>,
    opts: &'m RestoreOptions,
    mode: StubMode,
    /// The stub's fd of the saved executable, kept for `PR_SET_MM_MAP`
    /// when the exe link is to be set.
    exe_fd: Option<u64>,
}

/// Occupied address ranges, for picking free spots.
fn free_spot(occupied: &[(u64, u64)], len: u64) -> Option<u64> {
    let mut candidate: u64 = 0x1_0000_0000;
    while candidate + len < sys::USER_ADDR_END {
        let clash = occupied
            .iter()
            .find(|&&(s, e)| candidate < e && s < candidate + len);
        match clash {
            None => return Some(candidate),
            Some(&(_, e)) => candidate = (e + (1 << 20)) & !((1 << 20) - 1),
        }
    }
    None
}

impl<'m> Builder<'m> {
    fn pid(&self) -> i32 {
        self.stub.pid()
    }

    fn tr(&self) -> impl Fn(PtraceError) -> RestoreError {
        let pid = self.pid();
        move |source| RestoreError::Trace { pid, source }
    }

    fn sys(
        &mut self,
        name: &'static str,
        nr: libc::c_long,
        args: [u64; 6],
    ) -> Result<u64, RestoreError> {
        let pid = self.pid();
        self.stub
            .tracee
            .syscall(name, nr, args)
            .map_err(|source| RestoreError::Trace { pid, source })
    }

    fn write_mem(&self, addr: u64, data: &[u8], what: &'static str) -> Result<(), RestoreError> {
        let pid = self.pid();
        let n = sys::vm_write(pid, addr, data).map_err(|errno| RestoreError::Memory {
            pid,
            what,
            addr,
            errno,
        })?;
        if n != data.len() {
            return Err(RestoreError::Memory {
                pid,
                what,
                addr: addr + n as u64,
                errno: Errno::EFAULT,
            });
        }
        Ok(())
    }

    fn stub_maps(&self) -> Result<Vec<procfs::maps::MapsEntry>, RestoreError> {
        let text = std::fs::read_to_string(format!("/proc/{}/maps", self.pid())).map_err(|e| {
            RestoreError::Spawn(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        })?;
        procfs::maps::parse_maps(&text)
            .map_err(|e| RestoreError::Invalid(format!("stub maps: {e}")))
    }

    fn build(&mut self, reader: &ImageReader, plan: &Plan) -> Result<(), RestoreError> {
        let m = self.m;
        let p = &m.process;
        let pid = self.pid();

        // 1. The stub as it is: its mappings, vdso, registers, xsave size.
        let stub_maps = self.stub_maps()?;
        let find = |name: &str| {
            stub_maps
                .iter()
                .find(|e| e.path.as_deref() == Some(name))
                .map(|e| (e.start, e.end))
        };
        let vdso = find("[vdso]")
            .ok_or_else(|| RestoreError::Incompatible("no [vdso] in the new process".into()))?;
        let mut vdso_bytes = vec![0u8; usize::try_from(vdso.1 - vdso.0).unwrap_or(0)];
        let n =
            sys::vm_read(pid, vdso.0, &mut vdso_bytes).map_err(|errno| RestoreError::Memory {
                pid,
                what: "reading vdso",
                addr: vdso.0,
                errno,
            })?;
        if n != vdso_bytes.len()
            || Sha256::digest(&vdso_bytes).as_slice() != m.vdso_digest.as_slice()
        {
            return Err(RestoreError::Incompatible("the kernel's vdso differs from the one the image was dumped with (another kernel build)".into()));
        }
        let syscall_at = find_syscall_insn(&vdso_bytes, vdso.0).ok_or_else(|| {
            RestoreError::Incompatible("no syscall instruction in the vdso".into())
        })?;
        let template = self.stub.tracee.regs().map_err(self.tr())?;
        self.stub.tracee.set_syscall_site(syscall_at, template);

        let xsave_now = sys::get_xstate(pid).map_err(|errno| RestoreError::Trace {
            pid,
            source: PtraceError::Request {
                op: "GETREGSET",
                pid,
                errno,
            },
        })?;
        if xsave_now.len() != plan.thread.xsave.len() {
            return Err(RestoreError::Incompatible(format!(
                "xsave area is {} bytes here, {} in the image",
                xsave_now.len(),
                plan.thread.xsave.len()
            )));
        }
        let enabled = arch::xsave_enabled_features(&xsave_now).unwrap_or(0);
        let used = arch::xsave_features_in_use(&plan.thread.xsave).unwrap_or(u64::MAX);
        if used & !enabled != 0 {
            return Err(RestoreError::Incompatible(format!(
                "CPU lacks xsave features {:#x} the process uses",
                used & !enabled
            )));
        }

        // 2. A trampoline (`syscall; int3`) and a scratch page, free both now
        //    and in the image's layout.
        let mut occupied: Vec<(u64, u64)> = stub_maps.iter().map(|e| (e.start, e.end)).collect();
        occupied.extend(p.vmas.iter().map(|v| (v.start, v.end)));
        let tramp = free_spot(&occupied, 2 * PAGE)
            .ok_or_else(|| RestoreError::Invalid("no free address for the trampoline".into()))?;
        let got = self.sys(
            "mmap(trampoline)",
            libc::SYS_mmap,
            [
                tramp,
                2 * PAGE,
                (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64,
                u64::MAX,
                0,
            ],
        )?;
        if got != tramp {
            return Err(RestoreError::Invalid("trampoline landed elsewhere".into()));
        }
        self.write_mem(tramp, &[0x0f, 0x05, 0xcc], "writing trampoline")?;
        self.stub.tracee.set_syscall_site(tramp, template);
        let scratch = tramp + PAGE;
        occupied.push((tramp, tramp + 2 * PAGE));

        // 3. Drop the stub's own rseq registration and every mapping but the
        //    trampoline and the vdso family.
        if let Some((ptr, len, sig)) = sys::get_rseq(pid).ok().flatten() {
            self.sys(
                "rseq(unregister)",
                libc::SYS_rseq,
                [ptr, u64::from(len), 1, u64::from(sig), 0, 0],
            )?;
        }
        let keep = |e: &procfs::maps::MapsEntry| {
            matches!(
                e.path.as_deref(),
                Some("[vdso]" | "[vvar]" | "[vvar_vclock]" | "[vsyscall]")
            )
        };
        for e in stub_maps.iter().filter(|e| !keep(e)) {
            self.sys(
                "munmap(stub)",
                libc::SYS_munmap,
                [e.start, e.end - e.start, 0, 0, 0, 0],
            )?;
        }

        // A root-built stub opens files with the file credentials as its
        // filesystem ids (the kernel then drops its filesystem capabilities).
        if self.mode == StubMode::Root {
            self.set_fs_creds(scratch)?;
        }

        // 4. Move the vdso family where the image had it, keeping its layout.
        self.move_vdso(&stub_maps, &occupied)?;

        // 5. Mappings, memory, protections.
        self.map_all(scratch)?;
        self.fill_memory(reader)?;
        for v in &p.vmas {
            if matches!(
                v.kind,
                VmaKind::Anonymous | VmaKind::SharedAnonymous | VmaKind::File
            ) {
                self.sys(
                    "mprotect",
                    libc::SYS_mprotect,
                    [v.start, v.end - v.start, u64::from(v.prot), 0, 0, 0],
                )?;
                for (flag, advice) in [
                    ("dd", libc::MADV_DONTDUMP),
                    ("dc", libc::MADV_DONTFORK),
                    ("wf", libc::MADV_WIPEONFORK),
                ] {
                    if v.vm_flags.iter().any(|f| f == flag) {
                        self.sys(
                            "madvise",
                            libc::SYS_madvise,
                            [v.start, v.end - v.start, advice as u64, 0, 0, 0],
                        )?;
                    }
                }
            }
        }

        // The mm layout (brk, arg/env areas, auxv, exe link), while the
        // executable's fd is still open in the stub.
        self.set_mm_map(scratch)?;

        // 6. Files, cwd, umask, name, personality.
        self.restore_fds(scratch)?;
        self.change_dir(scratch, &p.cwd)?;
        self.sys(
            "umask",
            libc::SYS_umask,
            [u64::from(p.umask & 0o777), 0, 0, 0, 0, 0],
        )?;
        let comm: String = p.comm.chars().take(15).collect();
        self.put_string(scratch, &comm)?;
        self.sys(
            "prctl(PR_SET_NAME)",
            libc::SYS_prctl,
            [libc::PR_SET_NAME as u64, scratch, 0, 0, 0, 0],
        )?;
        self.sys(
            "personality",
            libc::SYS_personality,
            [u64::from(p.personality), 0, 0, 0, 0, 0],
        )?;

        // 7. Signal dispositions and the alternate stack.
        for a in &p.sigactions {
            if a.signal == 0
                || a.signal > 64
                || a.signal == libc::SIGKILL as u32
                || a.signal == libc::SIGSTOP as u32
            {
                return Err(RestoreError::Invalid(format!(
                    "signal {} in the image",
                    a.signal
                )));
            }
            let bytes = words_to_bytes(&[a.handler, a.flags, a.restorer, a.mask]);
            self.write_mem(scratch, &bytes, "writing sigaction")?;
            self.sys(
                "rt_sigaction",
                libc::SYS_rt_sigaction,
                [u64::from(a.signal), scratch, 0, 8, 0, 0],
            )?;
        }
        let (ss_sp, ss_flags, ss_size) = plan.thread.altstack;
        if ss_flags & libc::SS_DISABLE == 0 {
            let flags = (ss_flags & !libc::SS_ONSTACK) as u32 as u64;
            self.write_mem(
                scratch,
                &words_to_bytes(&[ss_sp, flags, ss_size]),
                "writing sigaltstack",
            )?;
            self.sys(
                "sigaltstack",
                libc::SYS_sigaltstack,
                [scratch, 0, 0, 0, 0, 0],
            )?;
        }

        // 9. Resource limits: what the restored credentials may set.
        for l in &p.rlimits {
            if l.resource >= 16 {
                continue;
            }
            self.write_mem(
                scratch,
                &words_to_bytes(&[l.soft, l.hard]),
                "writing rlimit",
            )?;
            let r = self
                .stub
                .tracee
                .syscall_raw(
                    libc::SYS_prlimit64,
                    [0, u64::from(l.resource), scratch, 0, 0, 0],
                )
                .map_err(self.tr())?;
            if r < 0 {
                self.notices.push(format!(
                    "resource limit {} not restored to {}/{} ({}): kept this user's limit",
                    l.resource,
                    l.soft,
                    l.hard,
                    Errno::from_raw(i32::try_from(-r).unwrap_or(0))
                ));
            }
        }

        // 10. robust futex list, rseq, queued signals, interval timers.
        let (head, len) = plan.thread.robust_list;
        if head != 0 {
            self.sys(
                "set_robust_list",
                libc::SYS_set_robust_list,
                [head, len, 0, 0, 0, 0],
            )?;
        }
        if let Some(r) = plan.thread.rseq {
            self.sys(
                "rseq",
                libc::SYS_rseq,
                [
                    r.abi_pointer,
                    u64::from(r.abi_size),
                    0,
                    u64::from(r.signature),
                    0,
                    0,
                ],
            )?;
        }
        for s in &plan.thread.pending {
            if s.siginfo.len() != sys::SIGINFO_SIZE {
                return Err(RestoreError::Invalid("pending signal of wrong size".into()));
            }
            let signo =
                u32::from_ne_bytes([s.siginfo[0], s.siginfo[1], s.siginfo[2], s.siginfo[3]]);
            if signo == 0 || signo > 64 {
                return Err(RestoreError::Invalid(format!("pending signal {signo}")));
            }
            self.write_mem(scratch, &s.siginfo, "writing siginfo")?;
            if s.shared {
                self.sys(
                    "rt_sigqueueinfo",
                    libc::SYS_rt_sigqueueinfo,
                    [pid as u64, u64::from(signo), scratch, 0, 0, 0],
                )?;
            } else {
                self.sys(
                    "rt_tgsigqueueinfo",
                    libc::SYS_rt_tgsigqueueinfo,
                    [pid as u64, pid as u64, u64::from(signo), scratch, 0, 0],
                )?;
            }
        }
        for t in &p.itimers {
            if t.which > 2 || (t.value_us == 0 && t.interval_us == 0) {
                continue;
            }
            let sec_usec = |us: u64| [us / 1_000_000, us % 1_000_000];
            let [is, iu] = sec_usec(t.interval_us);
            let [vs, vu] = sec_usec(t.value_us);
            self.write_mem(
                scratch,
                &words_to_bytes(&[is, iu, vs, vu]),
                "writing itimer",
            )?;
            self.sys(
                "setitimer",
                libc::SYS_setitimer,
                [u64::from(t.which), scratch, 0, 0, 0, 0],
            )?;
        }

        // The final credentials, last, for a root-built stub.
        if self.mode == StubMode::Root {
            self.drop_to_final_creds(scratch)?;
        }
        // no_new_privs only ever takes privilege away: always restored.
        if p.creds.no_new_privs {
            self.sys(
                "prctl(PR_SET_NO_NEW_PRIVS)",
                libc::SYS_prctl,
                [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0],
            )?;
        }

        // No parent-death signal in the released process (EXITKILL
        // covers the stub until it is detached).
        self.sys(
            "prctl(PR_SET_PDEATHSIG, 0)",
            libc::SYS_prctl,
            [libc::PR_SET_PDEATHSIG as u64, 0, 0, 0, 0, 0],
        )?;

        // 11. Last syscall: unmap the trampoline. At its exit stop, put the
        //     saved registers, FPU state and signal mask in place.
        self.sys(
            "munmap(trampoline)",
            libc::SYS_munmap,
            [tramp, 2 * PAGE, 0, 0, 0, 0],
        )?;
        let current = self.stub.tracee.regs().map_err(self.tr())?;
        let mut regs = arch::to_user_regs(&plan.thread.regs, &current);
        arch::restart_fixup(&mut regs, ResumeIn::Restored);
        self.stub.tracee.set_regs(&regs).map_err(self.tr())?;
        sys::set_xstate(pid, &plan.thread.xsave).map_err(|errno| RestoreError::Trace {
            pid,
            source: PtraceError::Request {
                op: "SETREGSET",
                pid,
                errno,
            },
        })?;
        sys::set_sigmask(pid, plan.thread.sigmask).map_err(|errno| RestoreError::Trace {
            pid,
            source: PtraceError::Request {
                op: "SETSIGMASK",
                pid,
                errno,
            },
        })?;
        Ok(())
    }

    fn put_string(&self, at: u64, s: &str) -> Result<(), RestoreError> {
        if s.len() > MAX_PATH || s.as_bytes().contains(&0) {
            return Err(RestoreError::Invalid(format!(
                "path too long or with NUL: {s:?}"
            )));
        }
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.write_mem(at, &b, "writing a path")
    }

    fn move_vdso(
        &mut self,
        stub_maps: &[procfs::maps::MapsEntry],
        occupied: &[(u64, u64)],
    ) -> Result<(), RestoreError> {
        let p = &self.m.process;
        let family = |kind: VmaKind| {
            p.vmas
                .iter()
                .find(|v| v.kind == kind)
                .map(|v| (v.start, v.end))
        };
        let live = |name: &str| {
            stub_maps
                .iter()
                .find(|e| e.path.as_deref() == Some(name))
                .map(|e| (e.start, e.end))
        };
        let pairs = [
            (live("[vdso]"), family(VmaKind::Vdso), "[vdso]"),
            (live("[vvar]"), family(VmaKind::Vvar), "[vvar]"),
            (
                live("[vvar_vclock]"),
                family(VmaKind::VvarVclock),
                "[vvar_vclock]",
            ),
        ];
        let mut moves = Vec::new();
        for (now, then, name) in pairs {
            match (now, then) {
                (None, None) => {}
                (Some(n), Some(t)) if n.1 - n.0 == t.1 - t.0 => moves.push((n, t)),
                _ => {
                    return Err(RestoreError::Incompatible(format!(
                        "{name} differs from the image's"
                    )))
                }
            }
        }
        let (Some(lo), Some(hi)) = (
            moves.iter().map(|m| m.0 .0).min(),
            moves.iter().map(|m| m.0 .1).max(),
        ) else {
            return Ok(());
        };
        let tmp = free_spot(occupied, hi - lo)
            .ok_or_else(|| RestoreError::Invalid("no room to move the vdso".into()))?;
        // First to a spot free in both layouts, then to the saved place.
        for ((ns, ne), _) in &moves {
            let dst = tmp + (ns - lo);
            self.mremap(*ns, ne - ns, dst)?;
        }
        for ((ns, ne), (ts, _)) in &moves {
            let src = tmp + (ns - lo);
            if src != *ts {
                self.mremap(src, ne - ns, *ts)?;
            }
        }
        Ok(())
    }

    fn mremap(&mut self, from: u64, len: u64, to: u64) -> Result<(), RestoreError> {
        let got = self.sys(
            "mremap(vdso)",
            libc::SYS_mremap,
            [
                from,
                len,
                len,
                (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64,
                to,
                0,
            ],
        )?;
        if got != to {
            return Err(RestoreError::Invalid("vdso moved elsewhere".into()));
        }
        Ok(())
    }

    /// Open `path` inside the stub (so its credentials apply) and return the
    /// stub's fd number.
    fn open_in_stub(&mut self, scratch: u64, path: &str, flags: i32) -> Result<u64, RestoreError> {
        self.put_string(scratch, path)?;
        let flags = (flags | libc::O_CLOEXEC) as u64;
        let r = if self.mode == StubMode::Root {
            // No symlink anywhere in the path (the paths in an image are
            // the kernel's canonical ones), nothing the caller can swap in.
            const RESOLVE_NO_SYMLINKS: u64 = 0x04;
            let how = scratch + OPEN_HOW_OFFSET;
            self.write_mem(
                how,
                &words_to_bytes(&[flags, 0, RESOLVE_NO_SYMLINKS]),
                "writing open_how",
            )?;
            self.stub
                .tracee
                .syscall_raw(
                    libc::SYS_openat2,
                    [libc::AT_FDCWD as u64, scratch, how, 24, 0, 0],
                )
                .map_err(self.tr())?
        } else {
            self.stub
                .tracee
                .syscall_raw(
                    libc::SYS_openat,
                    [libc::AT_FDCWD as u64, scratch, flags, 0, 0, 0],
                )
                .map_err(self.tr())?
        };
        if r < 0 {
            let errno = Errno::from_raw(i32::try_from(-r).unwrap_or(libc::EIO));
            return Err(RestoreError::Open {
                path: path.to_string(),
                errno,
            });
        }
        Ok(r as u64)
    }

    fn map_all(&mut self, scratch: u64) -> Result<(), RestoreError> {
        let p = &self.m.process;
        let has_chunks = chunked_vmas(self.m);
        // Open each mapped file once, in the stub, and check its content.
        let mut file_fds: HashMap<u32, u64> = HashMap::new();
        for (i, v) in p.vmas.iter().enumerate() {
            let flags = match v.kind {
                VmaKind::Anonymous => libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                VmaKind::SharedAnonymous => libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                VmaKind::File => {
                    if v.shared {
                        libc::MAP_SHARED
                    } else {
                        libc::MAP_PRIVATE
                    }
                }
                _ => continue,
            };
            let grows = if v.vm_flags.iter().any(|f| f == "gd") {
                libc::MAP_GROWSDOWN
            } else {
                0
            };
            let mut prot = v.prot;
            if has_chunks.contains(&i) {
                prot |= (libc::PROT_READ | libc::PROT_WRITE) as u32;
            }
            let fd = match (v.kind, v.file) {
                (VmaKind::File, Some(fi)) => {
                    let want_write = v.shared && v.prot & libc::PROT_WRITE as u32 != 0;
                    match file_fds.get(&fi) {
                        Some(&fd) => fd,
                        None => {
                            let fd = self.open_mapped_file(
                                scratch,
                                fi,
                                want_write || self.file_needs_write(fi),
                            )?;
                            file_fds.insert(fi, fd);
                            fd
                        }
                    }
                }
                _ => u64::MAX,
            };
            let got = self.sys(
                "mmap",
                libc::SYS_mmap,
                [
                    v.start,
                    v.end - v.start,
                    u64::from(prot),
                    (flags | grows | libc::MAP_FIXED_NOREPLACE) as u64,
                    fd,
                    v.offset,
                ],
            );
            match got {
                Ok(a) if a == v.start => {}
                Ok(a) => {
                    return Err(RestoreError::Invalid(format!(
                        "mapping {:#x} landed at {a:#x}",
                        v.start
                    )));
                }
                Err(RestoreError::Trace {
                    source: PtraceError::Syscall { errno, .. },
                    pid,
                }) => {
                    return Err(RestoreError::Memory {
                        pid,
                        what: "mapping",
                        addr: v.start,
                        errno,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        let exe = &p.exe;
        let exe_index = p
            .mapped_files
            .iter()
            .position(|f| f.path == exe.path && f.dev == exe.dev && f.ino == exe.ino)
            .and_then(|i| u32::try_from(i).ok());
        for (fi, fd) in file_fds {
            if self.mode == StubMode::Root && self.opts.exe_link && Some(fi) == exe_index {
                self.exe_fd = Some(fd);
            } else {
                self.sys("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
            }
        }
        if self.mode == StubMode::Root && self.opts.exe_link && self.exe_fd.is_none() {
            return Err(RestoreError::Invalid(format!(
                "the executable {} is not among the process's mapped files",
                exe.path
            )));
        }
        Ok(())
    }

    /// `chdir` in the stub: with the file credentials and no symlinks for a
    /// root-built stub.
    fn change_dir(&mut self, scratch: u64, dir: &str) -> Result<(), RestoreError> {
        let fd = self.open_in_stub(scratch, dir, libc::O_PATH | libc::O_DIRECTORY)?;
        let r = self
            .stub
            .tracee
            .syscall_raw(libc::SYS_fchdir, [fd, 0, 0, 0, 0, 0])
            .map_err(self.tr())?;
        self.sys("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
        if r < 0 {
            let errno = Errno::from_raw(i32::try_from(-r).unwrap_or(libc::EIO));
            return Err(RestoreError::Open {
                path: dir.to_string(),
                errno,
            });
        }
        Ok(())
    }

    /// Root-built stub: use `file_creds` as filesystem ids and groups.
    fn set_fs_creds(&mut self, scratch: u64) -> Result<(), RestoreError> {
        let fc = self.opts.file_creds.clone();
        self.set_groups(scratch, &fc.groups)?;
        self.sys(
            "setfsgid",
            libc::SYS_setfsgid,
            [u64::from(fc.gid[3]), 0, 0, 0, 0, 0],
        )?;
        self.sys(
            "setfsuid",
            libc::SYS_setfsuid,
            [u64::from(fc.uid[3]), 0, 0, 0, 0, 0],
        )?;
        Ok(())
    }

    fn set_groups(&mut self, scratch: u64, groups: &[u32]) -> Result<(), RestoreError> {
        if groups.len() > 65_536 {
            return Err(RestoreError::Invalid("too many groups".into()));
        }
        let bytes: Vec<u8> = groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
        if bytes.len() > 2048 {
            // Larger than the scratch page leaves room for: map a page.
            return Err(RestoreError::Unsupported(format!(
                "{} supplementary groups",
                groups.len()
            )));
        }
        self.write_mem(scratch, &bytes, "writing groups")?;
        self.sys(
            "setgroups",
            libc::SYS_setgroups,
            [groups.len() as u64, scratch, 0, 0, 0, 0],
        )?;
        Ok(())
    }

    /// Root-built stub: become exactly the decided credentials and
    /// capabilities. Order matters: the bounding set and securebits need
    /// CAP_SETPCAP (root still has it); keep-caps carries the permitted set
    /// across the uid change; capset then trims it to the saved sets; the
    /// ambient set is raised last (it needs permitted and inheritable).
    ///
    /// Without capability sets (no `capabilities` grant) the process holds
    /// none, and one with uid 0 as its real, effective or saved uid also
    /// gets `SECBIT_NOROOT | SECBIT_NOROOT_LOCKED`: exec does not give it
    /// every capability back for being uid 0 (set-user-id-root programs
    /// included); only file capabilities still apply, as for any user.
    fn drop_to_final_creds(&mut self, scratch: u64) -> Result<(), RestoreError> {
        const CAP_LAST: u64 = 63;
        let c = self.opts.creds.clone();
        let caps = self.opts.caps.clone();
        if let Some(k) = &caps {
            for cap in 0..=CAP_LAST {
                if k.bounding & (1 << cap) == 0 {
                    // EINVAL for numbers past the kernel's last capability.
                    let _ = self.stub.tracee.syscall_raw(
                        libc::SYS_prctl,
                        [libc::PR_CAPBSET_DROP as u64, cap, 0, 0, 0, 0],
                    );
                }
            }
            self.sys(
                "prctl(PR_SET_SECUREBITS)",
                libc::SYS_prctl,
                [
                    libc::PR_SET_SECUREBITS as u64,
                    u64::from(k.securebits) | SECBIT_KEEP_CAPS,
                    0,
                    0,
                    0,
                    0,
                ],
            )?;
        } else if c.uid[..3].contains(&0) {
            self.sys(
                "prctl(PR_SET_SECUREBITS)",
                libc::SYS_prctl,
                [
                    libc::PR_SET_SECUREBITS as u64,
                    SECBIT_NOROOT | SECBIT_NOROOT_LOCKED,
                    0,
                    0,
                    0,
                    0,
                ],
            )?;
        }
        self.set_groups(scratch, &c.groups)?;
        self.sys(
            "setresgid",
            libc::SYS_setresgid,
            [
                u64::from(c.gid[0]),
                u64::from(c.gid[1]),
                u64::from(c.gid[2]),
                0,
                0,
                0,
            ],
        )?;
        self.sys(
            "setfsgid",
            libc::SYS_setfsgid,
            [u64::from(c.gid[3]), 0, 0, 0, 0, 0],
        )?;
        self.sys(
            "setresuid",
            libc::SYS_setresuid,
            [
                u64::from(c.uid[0]),
                u64::from(c.uid[1]),
                u64::from(c.uid[2]),
                0,
                0,
                0,
            ],
        )?;
        self.sys(
            "setfsuid",
            libc::SYS_setfsuid,
            [u64::from(c.uid[3]), 0, 0, 0, 0, 0],
        )?;
        let (eff, prm, inh) = caps
            .as_ref()
            .map_or((0, 0, 0), |k| (k.effective, k.permitted, k.inheritable));
        // struct __user_cap_header_struct { u32 version; i32 pid } + 2 x
        // struct __user_cap_data_struct { u32 effective, permitted, inheritable }
        let mut buf = Vec::with_capacity(32);
        buf.extend_from_slice(&0x2008_0522u32.to_ne_bytes());
        buf.extend_from_slice(&0i32.to_ne_bytes());
        for half in [0, 32] {
            for set in [eff, prm, inh] {
                buf.extend_from_slice(&((set >> half) as u32).to_ne_bytes());
            }
        }
        self.write_mem(scratch, &buf, "writing capabilities")?;
        self.sys(
            "capset",
            libc::SYS_capset,
            [scratch, scratch + 8, 0, 0, 0, 0],
        )?;
        if let Some(k) = &caps {
            for cap in 0..=CAP_LAST {
                if k.ambient & (1 << cap) != 0 {
                    self.sys(
                        "prctl(PR_CAP_AMBIENT_RAISE)",
                        libc::SYS_prctl,
                        [
                            libc::PR_CAP_AMBIENT as u64,
                            libc::PR_CAP_AMBIENT_RAISE as u64,
                            cap,
                            0,
                            0,
                            0,
                        ],
                    )?;
                }
            }
            if u64::from(k.securebits) & SECBIT_KEEP_CAPS == 0 {
                self.sys(
                    "prctl(PR_SET_KEEPCAPS)",
                    libc::SYS_prctl,
                    [libc::PR_SET_KEEPCAPS as u64, 0, 0, 0, 0, 0],
                )?;
            }
        }
        // A process whose ids all agree and that holds no capability is
        // dumpable, as the kernel would make it after exec.
        let uniform = c.uid.iter().all(|&u| u == c.uid[0]) && c.gid.iter().all(|&g| g == c.gid[0]);
        if uniform && prm == 0 {
            self.sys(
                "prctl(PR_SET_DUMPABLE)",
                libc::SYS_prctl,
                [libc::PR_SET_DUMPABLE as u64, 1, 0, 0, 0, 0],
            )?;
        }
        Ok(())
    }

    fn file_needs_write(&self, fi: u32) -> bool {
        self.m
            .process
            .vmas
            .iter()
            .any(|v| v.file == Some(fi) && v.shared && v.prot & libc::PROT_WRITE as u32 != 0)
    }

    /// Open mapped file `fi` in the stub and check that its content is what
    /// was dumped (the same bytes are what the restored code will run).
    fn open_mapped_file(
        &mut self,
        scratch: u64,
        fi: u32,
        write: bool,
    ) -> Result<u64, RestoreError> {
        let f = self
            .m
            .process
            .mapped_files
            .get(fi as usize)
            .cloned()
            .ok_or_else(|| RestoreError::Invalid("file index".into()))?;
        let mode = if write { libc::O_RDWR } else { libc::O_RDONLY };
        let fd = self.open_in_stub(scratch, &f.path, mode)?;
        let local = sys::pidfd_getfd(&self.stub.pidfd, i32::try_from(fd).unwrap_or(-1)).map_err(
            |errno| RestoreError::Open {
                path: f.path.clone(),
                errno,
            },
        )?;
        let file = std::fs::File::from(local);
        let meta = file.metadata().map_err(|e| RestoreError::Open {
            path: f.path.clone(),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        if !meta.is_file() {
            return Err(RestoreError::FileChanged {
                path: f.path,
                what: "no longer a regular file".into(),
            });
        }
        // A file mapped privately or executably is code or initial data the
        // saved memory relies on: it must be exactly what was dumped. A file
        // only mapped shared is live data the process shares with the file
        // system; its current content is what the process will see.
        if self.opts.privileged() && caller_may_write(&meta, &self.opts.caller) {
            return Err(RestoreError::CallerWritable { path: f.path });
        }
        let strict =
            self.mode == StubMode::Root
                || self.m.process.vmas.iter().any(|v| {
                    v.file == Some(fi) && (!v.shared || v.prot & libc::PROT_EXEC as u32 != 0)
                });
        let changed = if std::os::unix::fs::MetadataExt::size(&meta) != f.size {
            Some("size differs")
        } else {
            let digest = crate::dump::digest_file(&file).map_err(|e| RestoreError::Open {
                path: f.path.clone(),
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
            (digest != f.digest).then_some("content digest differs")
        };
        match changed {
            Some(what) if strict => {
                return Err(RestoreError::FileChanged { path: f.path, what: what.into() });
            }
            Some(what) => self.notices.push(format!(
                "{} changed since the dump ({what}); it is mapped shared, so the process sees its current content",
                f.path
            )),
            None => {}
        }
        Ok(fd)
    }

    /// Stream every chunk into the stub. Two threads each take every other
    /// chunk, read it, check its digest and write it: SHA-256 is the cost,
    /// and this spreads it over both cores. Memory: one chunk per thread.
    fn fill_memory(&mut self, reader: &ImageReader) -> Result<(), RestoreError> {
        let pid = self.pid();
        let count = self.m.chunks.len();
        let worker = |first: usize| -> Result<(), RestoreError> {
            let mut buf = Vec::new();
            for index in (first..count).step_by(FILL_THREADS) {
                let c = reader.read_chunk(index, &mut buf)?;
                let n =
                    sys::vm_write(pid, c.vaddr, &buf).map_err(|errno| RestoreError::Memory {
                        pid,
                        what: "filling memory",
                        addr: c.vaddr,
                        errno,
                    })?;
                if n != buf.len() {
                    return Err(RestoreError::Memory {
                        pid,
                        what: "filling memory",
                        addr: c.vaddr + n as u64,
                        errno: Errno::EFAULT,
                    });
                }
            }
            Ok(())
        };
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..FILL_THREADS)
                .map(|i| scope.spawn(move || worker(i)))
                .collect();
            let mut first_err = Ok(());
            for h in handles {
                let r = h.join().unwrap_or_else(|_| {
                    Err(RestoreError::Invalid("a fill thread panicked".into()))
                });
                if first_err.is_ok() {
                    first_err = r;
                }
            }
            first_err
        })
    }

    fn restore_fds(&mut self, scratch: u64) -> Result<(), RestoreError> {
        let p = &self.m.process;
        // Everything the stub inherited goes, except the caller's fds 0-2
        // that external fds take over (see `reconnect_external`); then each
        // description is opened once above every target number and dup'ed
        // into place.
        let external = |f: &FdState| {
            p.descriptions
                .get(f.description as usize)
                .is_some_and(|d| matches!(d.kind, OpenFileKind::External { .. }))
        };
        let keep: Vec<u64> = p
            .fds
            .iter()
            .filter(|f| external(f))
            .filter_map(|f| u64::try_from(f.fd).ok())
            .collect();
        let first_closed = if keep.is_empty() { 0 } else { 3 };
        for n in (0..first_closed).filter(|n| !keep.contains(n)) {
            self.sys("close_range", libc::SYS_close_range, [n, n, 0, 0, 0, 0])?;
        }
        self.sys(
            "close_range",
            libc::SYS_close_range,
            [first_closed, u64::from(u32::MAX), 0, 0, 0, 0],
        )?;
        if p.fds.is_empty() {
            return Ok(());
        }
        let top = p.fds.iter().map(|f| f.fd).max().unwrap_or(0);
        // Room for the temporary copies.
        let need = u64::try_from(top).unwrap_or(0) + 1 + p.descriptions.len() as u64 + 1;
        self.write_mem(scratch, &[0u8; 16], "writing rlimit")?;
        self.sys(
            "prlimit64(get)",
            libc::SYS_prlimit64,
            [0, libc::RLIMIT_NOFILE as u64, 0, scratch, 0, 0],
        )?;
        let mut cur = [0u8; 16];
        sys::vm_read(self.pid(), scratch, &mut cur).map_err(|errno| RestoreError::Memory {
            pid: self.pid(),
            what: "reading rlimit",
            addr: scratch,
            errno,
        })?;
        let hard = u64::from_ne_bytes(cur[8..16].try_into().unwrap_or([0; 8]));
        if need > hard {
            return Err(RestoreError::Unsupported(format!(
                "fd {top} (above this user's open-file limit {hard})"
            )));
        }
        self.write_mem(scratch, &words_to_bytes(&[hard, hard]), "writing rlimit")?;
        self.sys(
            "prlimit64(set)",
            libc::SYS_prlimit64,
            [0, libc::RLIMIT_NOFILE as u64, scratch, 0, 0, 0],
        )?;

        let mut temp = Vec::with_capacity(p.descriptions.len());
        for d in &p.descriptions {
            if matches!(d.kind, OpenFileKind::External { .. }) {
                temp.push(None);
                continue;
            }
            let mut flags =
                (d.flags as i32) & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY);
            if d.kind == OpenFileKind::Directory {
                flags |= libc::O_DIRECTORY;
            }
            let fd = self.open_in_stub(scratch, &d.path, flags)?;
            let high = self.sys(
                "fcntl(F_DUPFD_CLOEXEC)",
                libc::SYS_fcntl,
                [
                    fd,
                    libc::F_DUPFD_CLOEXEC as u64,
                    u64::try_from(top).unwrap_or(0) + 1,
                    0,
                    0,
                    0,
                ],
            )?;
            self.sys("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
            if d.kind == OpenFileKind::Regular && d.offset != 0 {
                self.sys(
                    "lseek",
                    libc::SYS_lseek,
                    [high, d.offset, libc::SEEK_SET as u64, 0, 0, 0],
                )?;
            }
            temp.push(Some(high));
        }
        for f in &p.fds {
            let Some(src) = temp[f.description as usize] else {
                self.reconnect_external(f)?;
                continue;
            };
            let flags = if f.cloexec { libc::O_CLOEXEC } else { 0 };
            self.sys(
                "dup3",
                libc::SYS_dup3,
                [src, f.fd as u64, flags as u64, 0, 0, 0],
            )?;
        }
        for fd in temp.into_iter().flatten() {
            self.sys("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
        }
        Ok(())
    }

    /// An fd connected outside the image at dump (a terminal, pipe or
    /// socket on fd 0-2, [`OpenFileKind::External`]) becomes the restore
    /// caller's own fd of the same number: the stub inherited the helper's
    /// fds 0-2, which are the caller's (start-up reopens a closed one on
    /// `/dev/null`), and `restore_fds` kept it open. Only the close-on-exec
    /// flag is set as saved: the file status flags (`O_NONBLOCK`,
    /// `O_APPEND`) belong to the caller's open file description, shared
    /// with the caller, and are left as the caller has them.
    fn reconnect_external(&mut self, f: &FdState) -> Result<(), RestoreError> {
        let m = self.m;
        let Some((OpenFileKind::External { connected_to }, saved)) = m
            .process
            .descriptions
            .get(f.description as usize)
            .map(|d| (&d.kind, d.flags))
        else {
            return Err(RestoreError::Invalid(format!("fd {}", f.fd)));
        };
        let fd = u64::try_from(f.fd)
            .ok()
            .filter(|&n| n <= 2)
            .ok_or_else(|| RestoreError::Invalid(format!("external fd {}", f.fd)))?;
        let mine = self.sys(
            "fcntl(F_GETFL)",
            libc::SYS_fcntl,
            [fd, libc::F_GETFL as u64, 0, 0, 0, 0],
        )?;
        let cloexec = if f.cloexec { libc::FD_CLOEXEC } else { 0 };
        self.sys(
            "fcntl(F_SETFD)",
            libc::SYS_fcntl,
            [fd, libc::F_SETFD as u64, cloexec as u64, 0, 0, 0],
        )?;
        let mut notice = format!(
            "fd {fd} was connected to {connected_to} at dump; it is now connected to your fd {fd}"
        );
        let differ: Vec<String> = [
            (libc::O_NONBLOCK, "O_NONBLOCK"),
            (libc::O_APPEND, "O_APPEND"),
        ]
        .into_iter()
        .filter(|&(bit, _)| (mine ^ u64::from(saved)) & bit as u64 != 0)
        .map(|(bit, name)| {
            let on = mine & bit as u64 != 0;
            format!("{name} {}", if on { "on" } else { "off" })
        })
        .collect();
        if !differ.is_empty() {
            notice.push_str(&format!(
                " (its file status flags are yours, not the dump's: {})",
                differ.join(", ")
            ));
        }
        self.notices.push(notice);
        Ok(())
    }

    fn set_mm_map(&mut self, scratch: u64) -> Result<(), RestoreError> {
        let mm = &self.m.process.mm;
        if mm.auxv.len() > 128 || !mm.auxv.len().is_multiple_of(2) {
            return Err(RestoreError::Invalid("auxv".into()));
        }
        let auxv_at = scratch + 256;
        let auxv_bytes = words_to_bytes(&mm.auxv);
        let mut head = words_to_bytes(&[
            mm.start_code,
            mm.end_code,
            mm.start_data,
            mm.end_data,
            mm.start_brk,
            mm.brk,
            mm.start_stack,
            mm.arg_start,
            mm.arg_end,
            mm.env_start,
            mm.env_end,
            auxv_at,
        ]);
        head.extend_from_slice(&(auxv_bytes.len() as u32).to_ne_bytes());
        // exe_fd: the saved executable (exe-link), or -1 to keep the link.
        let exe_fd = self
            .exe_fd
            .and_then(|fd| u32::try_from(fd).ok())
            .unwrap_or(u32::MAX);
        head.extend_from_slice(&exe_fd.to_ne_bytes());
        self.write_mem(scratch, &head, "writing mm map")?;
        self.write_mem(auxv_at, &auxv_bytes, "writing auxv")?;
        self.sys(
            "prctl(PR_SET_MM_MAP)",
            libc::SYS_prctl,
            [
                libc::PR_SET_MM as u64,
                libc::PR_SET_MM_MAP as u64,
                scratch,
                head.len() as u64,
                0,
                0,
            ],
        )?;
        if let Some(fd) = self.exe_fd.take() {
            self.sys("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
        }
        Ok(())
    }
}

/// Indexes of the mappings that receive memory chunks.
fn chunked_vmas(m: &Manifest) -> std::collections::HashSet<usize> {
    let mut out = std::collections::HashSet::new();
    let vmas = &m.process.vmas;
    let mut vi = 0;
    for c in &m.chunks {
        while vi < vmas.len() && vmas[vi].end <= c.vaddr {
            vi += 1;
        }
        if vi < vmas.len() {
            out.insert(vi);
        }
    }
    out
}

fn words_to_bytes(w: &[u64]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

/// Whether the caller could write to the file behind `meta` (owner, group
/// or other write permission that applies to them).
fn caller_may_write(meta: &std::fs::Metadata, caller: &RestoreCredentials) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode();
    let uid = caller.uid[0];
    if meta.uid() == uid {
        // The owner can always chmod and write.
        return true;
    }
    let in_group = meta.gid() == caller.gid[0] || caller.groups.contains(&meta.gid());
    (in_group && mode & 0o020 != 0) || mode & 0o002 != 0
}
