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
//!
//! Layout: this module holds the order of the steps (`Builder::blank`,
//! `Builder::fill_before_memory`, `Builder::fill_after_memory`);
//! each kind of state is restored by its own module, the same split as
//! [`crate::model`] and [`crate::dump`]: [`options`] (what was decided),
//! [`plan`] (checks before anything is created), [`stub`] (creating the
//! task), [`mm`] (vdso, mappings, memory), [`files`] (the fd table, one
//! module per kind of description), [`creds`], [`seccomp`] (the filter
//! chain, installed last, and scheduling), [`signals`], [`timers`]
//! (POSIX timers and resource limits), [`task`] (registers, rseq, name,
//! mm layout), [`threads`] (the other threads, cloned after the
//! credentials drop, and the tids memory holds). All
//! syscalls go through the typed [`Injector`](crate::inject::Injector).

mod affinity;
mod creds;
mod files;
mod mm;
mod options;
mod pidns;
mod plan;
mod seccomp;
mod signals;
mod stub;
mod task;
mod threads;
mod timers;
mod transfer;
mod tree;

use std::ffi::CString;
use std::os::fd::OwnedFd;

use nix::errno::Errno;

use crate::image::{ImageError, ImageReader, Manifest};
use crate::inject::{InjectError, Injector};
use crate::model::ProcessState;
use crate::ptrace::{PtraceError, Tracee};

pub use options::{RestoreCapabilities, RestoreCredentials, RestoreOptions};
use plan::Plan;
use stub::StubMode;

/// A restored, running process.
#[derive(Debug, Clone)]
pub struct Restored {
    pub pid: i32,
    /// For a restore into a new pid namespace: the root's pid there (its
    /// saved one) and the pid, in the restorer's namespace, of that
    /// namespace's init.
    pub pid_namespace: Option<NamespacePids>,
    /// Things the user should know (what was not restored exactly).
    pub notices: Vec<String>,
}

/// Where a restore into a new pid namespace put the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespacePids {
    /// The root's pid inside the namespace (the saved one).
    pub root: i32,
    /// The namespace's init (pid 1 there), by its pid outside.
    pub init: i32,
}

/// Why a restore failed. No restored process is left behind in any case.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the image cannot be restored: {0}")]
    Invalid(String),
    #[error("the image needs {0}, which restore does not support yet")]
    Unsupported(String),
    /// The image holds several processes; this version restores one.
    #[error("images with {0} processes are not supported by this version")]
    Processes(usize),
    #[error("this machine cannot run the image: {0}")]
    Incompatible(String),
    #[error("{path} changed since the dump ({what}); refusing to restore")]
    FileChanged { path: String, what: String },
    #[error("cannot open {path} with the restored process's credentials: {errno}")]
    Open { path: String, errno: Errno },
    /// A file lock the process held could not be taken again.
    #[error("cannot take the {lock} on {path} again: {reason}")]
    Locked {
        path: String,
        lock: String,
        reason: String,
    },
    #[error("creating the process: {0}")]
    Spawn(Errno),
    /// The restorer has other threads: forking the stub would not be sound.
    #[error("creating the process: the restorer must be single-threaded ({0} threads)")]
    Threaded(usize),
    #[error("pid {0} is in use: cannot restore the original pid")]
    PidTaken(i32),
    /// The pid namespace of a `--pid-namespace` restore could not be made.
    #[error("cannot make a pid namespace for the restore ({step}): {errno}")]
    PidNamespace { step: &'static str, errno: Errno },
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
    /// The scratch area in the stub had no room for an argument.
    #[error("restored process: {0}")]
    Inject(InjectError),
    /// A unix socket could not be bound to its name again.
    #[error("cannot bind fd {fd}'s unix socket to {name} again: {reason}")]
    Bind {
        fd: String,
        name: String,
        reason: String,
    },
    /// A TCP or UDP socket could not be bound (or connected) again.
    #[error("cannot {op} fd {fd}'s {proto} socket to {addr} again: {reason}")]
    Inet {
        op: &'static str,
        fd: String,
        proto: &'static str,
        addr: String,
        reason: String,
    },
    /// A unix socket could not be connected again to the socket of the
    /// image it was connected to, or given its queued datagrams.
    #[error("cannot connect fd {fd}'s unix socket to {name} again: {reason}")]
    Connect {
        fd: String,
        name: String,
        reason: String,
    },
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

/// Restore the process (or process tree) described by `reader` (whose
/// integrity the caller has established) with `opts.creds`.
pub fn restore(reader: &ImageReader, opts: &RestoreOptions) -> Result<Restored, RestoreError> {
    restore_with(reader, opts, &mut GoAhead)
}

/// [`restore`], with `release` consulted before anything is created and
/// again right before the finished processes are released to run.
pub fn restore_with(
    reader: &ImageReader,
    opts: &RestoreOptions,
    release: &mut dyn Release,
) -> Result<Restored, RestoreError> {
    tree::restore_tree(reader, opts, release)
}

fn cstring(s: &str) -> Result<CString, RestoreError> {
    CString::new(s).map_err(|_| RestoreError::Invalid(format!("path with a NUL byte: {s:?}")))
}

impl From<InjectError> for RestoreError {
    fn from(e: InjectError) -> RestoreError {
        match e {
            InjectError::Trace { pid, source } => RestoreError::Trace { pid, source },
            InjectError::Memory {
                pid,
                what,
                addr,
                errno,
            } => RestoreError::Memory {
                pid,
                what,
                addr,
                errno,
            },
            e @ InjectError::ScratchFull { .. } => RestoreError::Inject(e),
        }
    }
}

/// Drives the stub from a blank task to the saved process. Each module of
/// the restore engine adds the steps for its kind of state to it.
struct Builder<'a> {
    /// Injects into the stub; its scratch area is the page after the
    /// trampoline once that is mapped.
    inj: Injector<'a>,
    /// The stub's pidfd (to take copies of fds it opened).
    pidfd: &'a OwnedFd,
    m: &'a Manifest,
    /// The one task of the image (`Plan::check`).
    p: &'a ProcessState,
    /// The index of its memory in the image's spaces (`None`: no chunk
    /// is its memory).
    memory: Option<u32>,
    notices: Vec<String>,
    opts: &'a RestoreOptions,
    mode: StubMode,
    /// The stub's fd of the saved executable, kept for `PR_SET_MM_MAP`
    /// when the exe link is to be set.
    exe_fd: Option<u64>,
    /// Descriptions created together with an earlier one (the other end
    /// of a pipe or socket pair): (description index, the stub's fd).
    prepared: Vec<(usize, u64)>,
    /// The memfds and unlinked files created in the stub, until the fd
    /// table is rebuilt.
    saved_fds: Vec<files::saved::SavedFd>,
    /// Threads re-created so far (besides the leader), stopped.
    threads: Vec<Tracee>,
    /// The restorer's pin to one CPU for the build, and the mask to give
    /// back (see [`affinity`]).
    pinned: Option<&'a affinity::Pinned>,
    /// Saved tid -> tid in the restored process, for every thread (the
    /// leader first), once the threads exist.
    tid_map: Vec<(i32, i32)>,
    /// This process's index in the image's tasks.
    task: usize,
    /// The descriptions shared with the image's other processes.
    shared: &'a mut transfer::Shared,
    /// The stub's signal dispositions are as `execve` leaves them
    /// ([`stub::Stub::exec_dispositions`]).
    exec_dispositions: bool,
    /// Digests of the mapped files checked so far in this restore
    /// ([`mm::FileDigests`]).
    digests: &'a mm::FileDigests,
    /// The stub's pid as it sees it ([`stub::Stub::ns_pid`]): what the
    /// syscalls injected into it name it by.
    ns_pid: i32,
    /// The new pid namespace restored into, if any.
    pidns: Option<&'a pidns::PidNamespace>,
}

/// A builder's state between [`Builder::fill_before_memory`] and
/// [`Builder::fill_after_memory`] (see [`Builder::park`]).
struct Parked {
    exe_fd: Option<u64>,
    prepared: Vec<(usize, u64)>,
    saved_fds: Vec<files::saved::SavedFd>,
}

/// What [`Builder::blank`] leaves for the fill: the stub emptied
/// down to its trampoline and vdso.
struct Blank {
    tramp: u64,
    occupied: Vec<(u64, u64)>,
    stub_maps: Vec<crate::procfs::maps::MapsEntry>,
}

impl Builder<'_> {
    fn pid(&self) -> i32 {
        self.inj.pid()
    }

    fn tr(&self) -> impl Fn(PtraceError) -> RestoreError {
        let pid = self.pid();
        move |source| RestoreError::Trace { pid, source }
    }

    /// Inject a syscall; failure names it.
    fn sys(
        &mut self,
        name: &'static str,
        nr: libc::c_long,
        args: [u64; 6],
    ) -> Result<u64, RestoreError> {
        Ok(self.inj.syscall(name, nr, args)?)
    }

    /// Inject `calls` (each with the name its error gives) in one round
    /// trip where the trampoline allows; the first failure fails like
    /// [`Builder::sys`].
    fn sys_batch(
        &mut self,
        calls: &[(&'static str, libc::c_long, [u64; 6])],
    ) -> Result<Vec<u64>, RestoreError> {
        let raw: Vec<(libc::c_long, [u64; 6])> =
            calls.iter().map(|&(_, nr, args)| (nr, args)).collect();
        let results = self.inj.syscall_batch(&raw)?;
        let pid = self.pid();
        let mut out = Vec::with_capacity(results.len());
        for (r, &(name, _, _)) in results.into_iter().zip(calls) {
            if (-4095..0).contains(&r) {
                return Err(RestoreError::Trace {
                    pid,
                    source: PtraceError::Syscall {
                        pid,
                        name,
                        errno: crate::inject::errno_of(r),
                    },
                });
            }
            out.push(r as u64);
        }
        if out.len() != calls.len() {
            return Err(RestoreError::Invalid(format!(
                "{} of {} injected calls ran",
                out.len(),
                calls.len()
            )));
        }
        Ok(out)
    }

    /// Inject a syscall; its raw result (negative errno on failure).
    fn sys_raw(&mut self, nr: libc::c_long, args: [u64; 6]) -> Result<i64, RestoreError> {
        Ok(self.inj.syscall_raw(nr, args)?)
    }

    /// The first steps: the stub emptied down to a trampoline and the
    /// vdso, ready to fork the image's children (each a blank stub too)
    /// and then to be filled ([`Builder::fill_before_memory`]).
    fn blank(&mut self, plan: &Plan) -> Result<Blank, RestoreError> {
        // 1. The stub as it is: its mappings, vdso, registers, xsave size.
        let stub_maps = self.stub_maps()?;
        let template = self.inject_through_vdso(&stub_maps)?;
        self.check_xsave(plan)?;

        // 2. A trampoline (`syscall; int3`) and a scratch page, free both now
        //    and in the image's layout.
        let (tramp, occupied) = self.place_trampoline(&stub_maps, template)?;

        // 3. Drop the stub's own rseq registration and every mapping but the
        //    trampoline and the vdso family.
        self.unregister_stub_rseq()?;
        self.unmap_stub(&stub_maps)?;

        // A root-built stub opens files with the file credentials as its
        // filesystem ids (the kernel then drops its filesystem capabilities).
        if self.mode == StubMode::Root {
            self.set_fs_creds()?;
        }
        // What is left of the stub's own mappings: the vdso family, which
        // the fill moves (the trampoline is `tramp`). Every process of a
        // tree keeps its blank until it is filled.
        let mut stub_maps = stub_maps;
        stub_maps.retain(|e| {
            matches!(
                e.path.as_deref(),
                Some("[vdso]" | "[vvar]" | "[vvar_vclock]")
            )
        });
        stub_maps.shrink_to_fit();
        Ok(Blank {
            tramp,
            occupied,
            stub_maps,
        })
    }

    /// The remaining steps, in order, on a blank stub. Each later step may
    /// rely on the earlier ones (files are opened with the file
    /// credentials set in step 3, the final credentials are dropped to
    /// only after everything that needs privilege, the registers are set
    /// at the very last syscall's exit).
    ///
    /// This first part ends with every mapping made, writable; the stub
    /// is not run again until its memory is filled ([`mm::MemoryFill`],
    /// which a tree's restorer runs on a thread of its own while it goes
    /// on with the next process), and [`Builder::fill_after_memory`] takes
    /// it from there.
    fn fill_before_memory(
        &mut self,
        reader: &ImageReader,
        blank: &Blank,
    ) -> Result<(), RestoreError> {
        let (tramp, occupied, stub_maps) = (blank.tramp, &blank.occupied, &blank.stub_maps);
        self.inj.use_scratch(tramp + mm::PAGE, mm::PAGE);

        // 4. Move the vdso family where the image had it, keeping its layout.
        self.move_vdso(stub_maps, occupied)?;

        // 5. Files whose content is in the image (their mappings map
        //    them), mappings, then (`MemoryFill`) memory.
        self.create_saved_files(reader)?;
        self.map_all()?;
        self.seal_saved_files()
    }

    /// What the steps before the memory fill leave for the steps after it,
    /// while the builder is set aside (a tree's restorer fills one
    /// process's memory on another thread while it builds the next).
    fn park(&mut self) -> Parked {
        Parked {
            exe_fd: self.exe_fd.take(),
            prepared: std::mem::take(&mut self.prepared),
            saved_fds: std::mem::take(&mut self.saved_fds),
        }
    }

    /// Takes back what [`Builder::park`] set aside.
    fn unpark(&mut self, parked: Parked) {
        self.exe_fd = parked.exe_fd;
        self.prepared = parked.prepared;
        self.saved_fds = parked.saved_fds;
    }

    /// The steps after the memory fill, which must be complete:
    /// protections first.
    fn fill_after_memory(&mut self, plan: &Plan, blank: &Blank) -> Result<(), RestoreError> {
        let p = self.p;
        let tramp = blank.tramp;
        self.inj.use_scratch(tramp + mm::PAGE, mm::PAGE);
        self.set_protections()?;

        // The mm layout (brk, arg/env areas, auxv, exe link), while the
        // executable's fd is still open in the stub.
        self.set_mm_map()?;

        // 6. Files, cwd, umask, name, personality. A process that shares
        //    its parent's fd table got its fds with the parent's.
        if p.fds_of_parent {
            self.close_saved_files()?;
            if self.closes_transport() {
                self.close_transport()?;
            }
        } else {
            self.restore_fds()?;
            self.close_saved_files()?;
        }
        if p.cwd_deleted {
            self.recreate_removed_cwd(&p.cwd)?;
        } else {
            self.change_dir(&p.cwd)?;
        }
        self.set_umask()?;
        self.set_name_and_personality()?;

        // 7. Signal dispositions and the alternate stack.
        self.restore_sigactions()?;
        self.restore_altstack(plan)?;

        // 8. Resource limits: what the restored credentials may set.
        self.restore_rlimits()?;

        // 9. robust futex list, rseq, queued signals, interval timers.
        self.restore_robust_list_and_rseq(plan)?;
        self.queue_pending_signals(plan)?;
        self.restore_itimers()?;

        // 10. The final credentials, last, for a root-built stub; then
        //     no_new_privs, which only ever takes privilege away.
        if self.mode == StubMode::Root {
            self.drop_to_final_creds()?;
        }
        self.restore_no_new_privs()?;

        // 11. What the restored credentials' own rights decide: memory
        //     locks (within its RLIMIT_MEMLOCK), oom_score_adj (raising is
        //     free, lowering below the inherited floor needs
        //     CAP_SYS_RESOURCE); then the
        //     child-subreaper flag. The stub's parent-death signal is
        //     cleared and a saved one is only reported, never set: its
        //     parent would be this restorer, which exits (see
        //     `Builder::note_pdeathsig`).
        self.lock_mappings()?;
        self.restore_oom_score_adj()?;
        self.restore_sched()?;
        self.give_back_cpus()?;
        self.restore_child_subreaper()?;
        self.clear_pdeathsig()?;
        self.note_pdeathsig()?;

        // 12. The other threads, cloned by the leader now that it holds its
        //     final credentials (credentials are per thread; a new thread
        //     copies its creator's), each given its own state, registers
        //     last; then the tids memory holds (robust futex owners, the
        //     leader's cached tid and clear_child_tid).
        self.restore_threads(plan, tramp)?;

        // POSIX timers, with the final credentials (an alarm clock needs
        // CAP_WAKE_ALARM) and once every thread a timer may signal exists.
        self.restore_posix_timers()?;

        // 13. Last syscalls: unmap the trampoline and install the seccomp
        //     chain (through the vdso, so that no restore syscall runs
        //     under the filter; after the threads exist, with TSYNC). At
        //     the last exit stop, put the saved registers, FPU state and
        //     signal mask in place.
        self.finish_thread(plan, tramp)
    }
}
