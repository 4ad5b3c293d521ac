//! The dump engine: freeze a process, capture its state, stream its memory
//! into an image, then resume or kill it.
//!
//! Owns: the ptrace relationship with the target while it is frozen (a
//! [`Frozen`] resumes the target when dropped, so any failure leaves it
//! running as it was). Trusts: the kernel; nothing the target wrote into its
//! memory is interpreted except as opaque bytes. Access control is not
//! decided here: the caller (the setuid helper) asks the kernel whether the
//! real user may ptrace-attach to the target before and after the freeze.
//!
//! Anything the restore engine cannot rebuild makes `dump` fail with
//! [`DumpError::Unsupported`] naming the resource.
//!
//! Layout: this module holds the order of the steps ([`Frozen::dump`]);
//! each kind of state is captured by its own module, the same split as
//! [`crate::model`] and [`crate::restore`]: [`freeze`] (the atomic freeze
//! of every thread, resume, kill), [`refuse`] (what the engine cannot
//! rebuild, refused naming the resource), [`task`] (per thread: registers,
//! xsave, rseq, robust list and the robust futexes it owns, name, glibc's
//! cached tid),
//! [`mm`] (mappings, `PAGEMAP_SCAN`, memory streaming), [`files`] (the fd
//! table, one module per kind of description), [`identity`] (file
//! identities and digests), [`creds`], [`seccomp`] (the filter chain,
//! and scheduling), [`signals`], [`timers`] (POSIX timers and resource
//! limits). What only the task itself can report is asked through
//! the typed [`Injector`](crate::inject::Injector).

mod creds;
mod files;
mod freeze;
mod identity;
mod mm;
mod refuse;
mod seccomp;
mod signals;
mod task;
mod timers;
mod tree;

use std::os::fd::OwnedFd;

use nix::errno::Errno;

use crate::arch::x86_64 as arch;
use crate::image::{CpuFeatures, ImageContent, ImageError, ImageWriter, Space};
use crate::inject::{InjectError, Injector};
use crate::model::*;
use crate::procfs;
use crate::ptrace::{PtraceError, Tracee};

pub use identity::digest_file;
pub use tree::FrozenTree;

/// Largest piece of memory written as one image chunk.
pub const CHUNK_BYTES: usize = 4 << 20;
const PAGE: u64 = 4096;
/// At most this many queued signals are saved per queue.
pub(crate) const MAX_PENDING: usize = 4096;

/// Why a dump failed. The target is left running, untouched, in every case.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("cannot freeze pid {pid}: {source}")]
    Freeze { pid: i32, source: PtraceError },
    #[error("pid {pid}: {source}")]
    Trace { pid: i32, source: PtraceError },
    #[error("pid {pid}: reading {what}: {source}")]
    Proc {
        pid: i32,
        what: String,
        source: std::io::Error,
    },
    #[error("pid {pid}: parsing {what}: {source}")]
    Parse {
        pid: i32,
        what: String,
        source: procfs::ParseError,
    },
    #[error("pid {pid}: cannot checkpoint {resource}: not supported yet")]
    Unsupported { pid: i32, resource: String },
    #[error("pid {pid}: reading memory at {addr:#x}: {errno}")]
    Memory { pid: i32, addr: u64, errno: Errno },
    #[error("pid {pid}: mapped file {path}: {reason}")]
    MappedFile {
        pid: i32,
        path: String,
        reason: String,
    },
    #[error("pid {pid} went away during the dump")]
    Gone { pid: i32 },
    /// The cancellation hook ([`Frozen::set_cancel`]) asked to stop.
    #[error("pid {pid}: the dump was called off")]
    Cancelled { pid: i32 },
    #[error("writing the image: {0}")]
    Image(#[from] ImageError),
    /// The scratch area in the target had no room for a query.
    #[error("{0}")]
    Inject(InjectError),
}

/// What a dump produced besides the memory chunks: every task of the
/// image (the root first), their file table and the spaces the chunks fill.
#[derive(Debug, Clone)]
pub struct DumpResult {
    pub tasks: Vec<ProcessState>,
    /// The image's file table (`FdState::description` indexes it).
    pub files: Vec<OpenFile>,
    /// The byte spaces the chunks written fill: for each task its memory,
    /// then the files first captured from it.
    pub spaces: Vec<Space>,
    /// Children that had exited and were not reaped yet.
    pub zombies: Vec<Zombie>,
    pub cpu: CpuFeatures,
    /// SHA-256 of the `[vdso]` bytes (restore needs the same kernel's vdso).
    pub vdso_digest: Vec<u8>,
}

impl DumpResult {
    /// The root task of the image.
    pub fn process(&self) -> Option<&ProcessState> {
        self.tasks.first()
    }

    /// What the image writer needs besides the chunks: the tasks, the file
    /// table and the spaces.
    pub fn into_content(self) -> ImageContent {
        ImageContent {
            spaces: self.spaces,
            files: self.files,
            tasks: self.tasks,
            zombies: self.zombies,
        }
    }
}

/// What one task's dump adds to the image, besides its chunks.
struct TaskDump {
    process: ProcessState,
    cpu: CpuFeatures,
    vdso_digest: Vec<u8>,
}

/// A target stopped under our control. Dropping it resumes the target.
///
/// The target's own registers are put back as soon as the injected queries
/// are done, before its memory is read: should the tracer die after that
/// (the kernel then detaches), the target carries on exactly as on a normal
/// release. Only while the queries run does it hold borrowed registers.
pub struct Frozen {
    pid: i32,
    pidfd: OwnedFd,
    tracee: Option<Tracee>,
    /// Registers at the freeze, before any fix-up.
    saved: libc::user_regs_struct,
    /// The task's own signal mask while [`Frozen::block_signals`] has
    /// every signal blocked (during the injected queries); `None` otherwise.
    sigmask: Option<u64>,
    /// Every other thread, stopped, in tid order.
    threads: Vec<FrozenThread>,
    /// Polled between steps; `true` makes [`Frozen::dump`] stop with
    /// [`DumpError::Cancelled`].
    cancel: Option<fn() -> bool>,
    /// Opens a path (`O_PATH`) as the caller the image is for; see
    /// [`Frozen::set_path_opener`]. `None`: as this process.
    path_opener: Option<PathOpener>,
    /// It was stopped by a signal (job control) when it was seized.
    stopped: bool,
    /// Opens the target's fd N again for reading as the caller; see
    /// [`Frozen::set_fd_reader`]. `None`: as this process.
    fd_reader: Option<FdReader>,
    /// Its fd table is its parent's (`CLONE_FILES`): its fds are recorded
    /// with the parent's (see [`ProcessState::fds_of_parent`]).
    fds_of_parent: bool,
    /// Where mapped files' digests are remembered between runs; see
    /// [`Frozen::set_digest_cache`]. `None`: every file is hashed.
    digest_cache: Option<DigestCache>,
}

/// The persistent file digest cache a dump shares between the processes
/// of a tree (single-threaded).
pub type DigestCache = std::rc::Rc<std::cell::RefCell<crate::filedigests::FileDigestCache>>;

/// How [`Frozen`] looks a path up as the caller: an `O_PATH` fd, or
/// `None` when the caller cannot reach it.
pub type PathOpener = std::rc::Rc<dyn Fn(&str) -> Option<OwnedFd>>;

/// How [`Frozen`] opens fd N of process PID (its arguments) again,
/// read-only, as the caller (through `/proc/PID/fd/N`): the fd, or why
/// the caller may not.
pub type FdReader = std::rc::Rc<dyn Fn(i32, i32) -> Result<OwnedFd, String>>;
/// A thread other than the leader, stopped under our control.
struct FrozenThread {
    tracee: Tracee,
    /// Registers at the freeze, before any fix-up.
    saved: libc::user_regs_struct,
}

impl std::fmt::Debug for Frozen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frozen").field("pid", &self.pid).finish()
    }
}

fn proc_path(pid: i32, rest: &str) -> String {
    format!("/proc/{pid}/{rest}")
}

impl Frozen {
    /// Credentials read again from `/proc` now that the task is stopped.
    pub fn status_creds(&self) -> Result<Credentials, DumpError> {
        let status = self.status()?;
        Ok(creds::creds_from_status(&status, 0))
    }

    /// Read a /proc file of the target. Names and paths in there may hold
    /// any bytes; invalid UTF-8 is replaced (such a path then fails to
    /// reopen at restore, naming itself, rather than failing the dump).
    fn read_proc(&self, rest: &str) -> Result<String, DumpError> {
        std::fs::read(proc_path(self.pid, rest))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|source| DumpError::Proc {
                pid: self.pid,
                what: rest.to_string(),
                source,
            })
    }

    fn status(&self) -> Result<procfs::status::Status, DumpError> {
        let text = self.read_proc("status")?;
        procfs::status::parse_status(&text).map_err(|source| DumpError::Parse {
            pid: self.pid,
            what: "status".into(),
            source,
        })
    }

    fn unsupported(&self, resource: String) -> DumpError {
        DumpError::Unsupported {
            pid: self.pid,
            resource,
        }
    }

    fn parse_err(&self, what: &str) -> impl Fn(procfs::ParseError) -> DumpError {
        let pid = self.pid;
        let what = what.to_string();
        move |source| DumpError::Parse {
            pid,
            what: what.clone(),
            source,
        }
    }

    /// Capture everything of this one process and stream its memory into
    /// `writer`: an image of one task (children refused).
    pub fn dump(&mut self, writer: &mut ImageWriter) -> Result<DumpResult, DumpError> {
        let mut saved = files::saved::SavedFiles::default();
        let mut table = files::FileTable::default();
        table.survey(&[self.pid]);
        self.refuse_children()?;
        let t = self.dump_task(writer, 0, &mut saved, &mut table)?;
        Ok(DumpResult {
            tasks: vec![t.process],
            files: table.finish()?,
            spaces: saved.into_spaces(),
            zombies: Vec::new(),
            cpu: t.cpu,
            vdso_digest: t.vdso_digest,
        })
    }

    /// Capture everything of this process, task `task` of the image, and
    /// stream its memory into `writer`: its memory space is the next of
    /// `saved`, its descriptions go into `table`.
    fn dump_task(
        &mut self,
        writer: &mut ImageWriter,
        task: u32,
        saved: &mut files::saved::SavedFiles,
        table: &mut files::FileTable,
    ) -> Result<TaskDump, DumpError> {
        let pid = self.pid;
        let memory_space = saved.memory_space(task);

        self.check_cancel()?;
        let status = self.status()?;
        let namespaces = self.namespaces()?;
        // The seccomp filter chain (strict mode refused) and scheduling.
        let seccomp_filters = self.seccomp_filters(status.seccomp)?;
        let sched = self.sched()?;
        let stat =
            procfs::stat::parse_stat(&self.read_proc("stat")?).map_err(self.parse_err("stat"))?;
        let comm = self.read_proc("comm")?.trim_end_matches('\n').to_string();
        let (cwd, cwd_deleted) = self.cwd()?;
        let auxv = self.auxv()?;

        // File descriptors (first: a mapping of a memfd or an unlinked
        // file names the space an fd's capture gave its content).
        let fds = if self.fds_of_parent {
            Vec::new()
        } else {
            self.dump_fds(saved, table)?
        };

        // Mappings and the files behind them.
        let mut files = identity::MappedFiles::with_cache(self.digest_cache.clone());
        let exe = files.identity_of_exe(pid)?;
        let (vmas, vdso) = self.mappings(&mut files, saved)?;

        // POSIX timers as /proc lists them (the task reports their times).
        let mut posix_timers = self.posix_timers()?;

        // Per-thread state and what only the task can tell us.
        self.refuse_thread_creds(&status)?;
        let (vdso_digest, syscall_at) = self.read_vdso(vdso, &vmas)?;
        self.check_cancel()?;
        self.block_signals()?;
        let template = self.saved;
        let mut others: Vec<(&mut Tracee, libc::user_regs_struct)> = Vec::new();
        let Frozen {
            tracee: Some(leader),
            threads,
            ..
        } = self
        else {
            return Err(DumpError::Gone { pid });
        };
        leader.set_syscall_site(syscall_at, template);
        for t in threads.iter_mut() {
            t.tracee.set_syscall_site(syscall_at, t.saved);
            others.push((&mut t.tracee, t.saved));
        }
        let (injected, altstacks) = query_task(leader, &mut posix_timers, &mut others)?;
        // From here on a dying tracer leaves the target as a release would.
        self.put_back_registers()?;
        self.check_cancel()?;
        let mut thread_states = Vec::with_capacity(1 + self.threads.len());
        thread_states.push(self.capture_thread(pid, &self.saved, injected.altstack)?);
        for (t, altstack) in self.threads.iter().zip(altstacks) {
            thread_states.push(self.capture_thread(t.tracee.pid(), &t.saved, altstack)?);
        }
        // The signals queued to the whole process, once, with the leader.
        thread_states[0]
            .pending
            .extend(self.shared_pending_signals()?);
        self.check_cancel()?;

        let mut creds = creds::creds_from_status(&status, injected.securebits);
        creds.no_new_privs = status.no_new_privs;

        // Memory, streamed; then the content of memfds and unlinked files.
        self.dump_memory(&vmas, memory_space, writer)?;
        saved.write_contents(self, writer)?;

        let xsave = &thread_states[0].xsave;
        let xsave_features = arch::xsave_enabled_features(&xsave.to_vec()).unwrap_or(0);
        let cpu = CpuFeatures {
            xsave_features,
            xsave_size: u32::try_from(xsave.len()).unwrap_or(0),
        };
        let process = ProcessState {
            pid,
            ppid: stat.ppid,
            sid: stat.session,
            pgid: stat.pgrp,
            comm,
            exe,
            creds,
            namespaces: Some(namespaces),
            cwd,
            umask: status.umask.unwrap_or(0o022),
            personality: injected.personality,
            rlimits: injected.rlimits,
            mm: mm::layout(&stat, injected.brk, auxv),
            vmas,
            mapped_files: files.list,
            threads: thread_states,
            sigactions: SigActions::new(injected.sigactions),
            fds,
            fds_of_parent: self.fds_of_parent,
            itimers: injected.itimers,
            oom_score_adj: self.oom_score_adj()?,
            child_subreaper: injected.child_subreaper,
            pdeathsig: injected.pdeathsig,
            posix_timers,
            seccomp_filters,
            sched: Some(sched),
            cwd_deleted,
            stopped: self.stopped,
        };
        Ok(TaskDump {
            process,
            cpu,
            vdso_digest,
        })
    }
}

fn ptrace_err(pid: i32, op: &'static str, errno: Errno) -> DumpError {
    DumpError::Trace {
        pid,
        source: PtraceError::Request { op, pid, errno },
    }
}

impl From<InjectError> for DumpError {
    fn from(e: InjectError) -> DumpError {
        match e {
            InjectError::Trace { pid, source } => DumpError::Trace { pid, source },
            InjectError::Memory {
                pid, addr, errno, ..
            } => DumpError::Memory { pid, addr, errno },
            e @ InjectError::ScratchFull { .. } => DumpError::Inject(e),
        }
    }
}

/// A thread's alternate signal stack: (ss_sp, ss_flags, ss_size).
type AltStack = (u64, i32, u64);

/// What the task itself reports through injected syscalls.
struct Injected {
    sigactions: Vec<SigAction>,
    altstack: (u64, i32, u64),
    brk: u64,
    rlimits: Vec<Rlimit>,
    itimers: Vec<ITimer>,
    personality: u32,
    securebits: u32,
    child_subreaper: bool,
    pdeathsig: i32,
}

/// Run the read-only queries inside the task, with a scratch page mapped
/// for them and unmapped again (also when a query fails); and ask every
/// other thread (`others`, each with its own registers to put back) for its
/// alternate stack, through the same scratch page.
fn query_task(
    t: &mut Tracee,
    posix_timers: &mut [PosixTimer],
    others: &mut [(&mut Tracee, libc::user_regs_struct)],
) -> Result<(Injected, Vec<AltStack>), DumpError> {
    let mut inj = Injector::new(t);
    // A trampoline when the target allows one: the queries below are
    // some ninety syscalls, most of them in batches.
    let trampoline = inj.map_trampoline()?;
    let base = match trampoline {
        Some(tramp) => tramp + PAGE,
        None => inj.map_scratch(PAGE)?,
    };
    let altstacks: Result<Vec<AltStack>, InjectError> = (|| {
        let mut out = Vec::with_capacity(others.len());
        for (tracee, saved) in others.iter_mut() {
            let site = tracee.syscall_site().0;
            if let Some(tramp) = trampoline {
                tracee.set_trap_site(tramp, *saved);
            }
            let mut tinj = Injector::new(tracee);
            tinj.use_scratch(base, PAGE);
            let r = signals::query_altstack(&mut tinj);
            // Back to the site that outlives the trampoline.
            tinj.tracee().set_syscall_site(site, *saved);
            // The thread's own registers back at once (the same thread
            // keeps its restart block).
            let mut regs = *saved;
            arch::restart_fixup(&mut regs, arch::ResumeIn::Original);
            let put = tinj
                .tracee()
                .set_regs(&regs)
                .map_err(|source| InjectError::Trace {
                    pid: tinj.pid(),
                    source,
                });
            out.push(r?);
            put?;
        }
        Ok(out)
    })();
    let altstacks = match altstacks {
        Ok(a) => a,
        Err(e) => {
            let _ = inj.unmap_scratch();
            return Err(DumpError::from(e));
        }
    };
    let result = (|| {
        let injected = Injected {
            sigactions: signals::query_sigactions(&mut inj)?,
            altstack: signals::query_altstack(&mut inj)?,
            brk: mm::query_brk(&mut inj)?,
            rlimits: timers::query_rlimits(&mut inj)?,
            itimers: timers::query_itimers(&mut inj)?,
            personality: task::query_personality(&mut inj)?,
            securebits: creds::query_securebits(&mut inj)?,
            child_subreaper: task::query_child_subreaper(&mut inj)?,
            pdeathsig: task::query_pdeathsig(&mut inj)?,
        };
        timers::query_posix_timers(&mut inj, posix_timers)?;
        Ok(injected)
    })();
    let unmapped = inj.unmap_scratch();
    let injected: Injected = result.map_err(|e: InjectError| DumpError::from(e))?;
    unmapped?;
    Ok((injected, altstacks))
}
