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

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;
use sha2::{Digest, Sha256};

use crate::arch::x86_64::{self as arch, ResumeIn};
use crate::image::{CpuFeatures, ImageError, ImageWriter};
use crate::procfs;
use crate::ptrace::{find_syscall_insn, PtraceError, Tracee};
use crate::state::*;
use crate::sys;

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
}

/// What [`Frozen::dump`] produced besides the memory chunks.
#[derive(Debug, Clone)]
pub struct DumpResult {
    pub process: ProcessState,
    pub cpu: CpuFeatures,
    /// SHA-256 of the `[vdso]` bytes (restore needs the same kernel's vdso).
    pub vdso_digest: Vec<u8>,
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
    /// Polled between steps; `true` makes [`Frozen::dump`] stop with
    /// [`DumpError::Cancelled`].
    cancel: Option<fn() -> bool>,
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
    /// Seize and stop `pid`. `pidfd` must refer to the same process; it is
    /// checked again once the task is stopped, so a recycled pid is refused.
    pub fn seize(pidfd: OwnedFd, pid: i32) -> Result<Frozen, DumpError> {
        let tracee = Tracee::seize(pid).map_err(|source| DumpError::Freeze { pid, source })?;
        if sys::pidfd_send_signal(&pidfd, 0).is_err() {
            let _ = tracee.detach();
            return Err(DumpError::Gone { pid });
        }
        let saved = match tracee.regs() {
            Ok(r) => r,
            Err(source) => {
                let _ = tracee.detach();
                return Err(DumpError::Trace { pid, source });
            }
        };
        Ok(Frozen {
            pid,
            pidfd,
            tracee: Some(tracee),
            saved,
            cancel: None,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Poll `cancelled` between the steps of [`Frozen::dump`] (and between
    /// memory chunks): when it returns `true` the dump stops with
    /// [`DumpError::Cancelled`] and dropping `self` resumes the target.
    pub fn set_cancel(&mut self, cancelled: fn() -> bool) {
        self.cancel = Some(cancelled);
    }

    fn check_cancel(&self) -> Result<(), DumpError> {
        match self.cancel {
            Some(f) if f() => Err(DumpError::Cancelled { pid: self.pid }),
            _ => Ok(()),
        }
    }

    /// Put the target's own registers back (with the syscall-restart
    /// fix-up when syscalls were injected), leaving it stopped.
    fn put_back_registers(&mut self) -> Result<(), DumpError> {
        let pid = self.pid;
        let mut regs = self.saved;
        let Some(tracee) = self.tracee.as_mut() else {
            return Err(DumpError::Gone { pid });
        };
        if tracee.was_injected() {
            arch::restart_fixup(&mut regs, ResumeIn::Original);
        }
        tracee
            .set_regs(&regs)
            .map_err(|source| DumpError::Trace { pid, source })
    }

    /// Credentials read again from `/proc` now that the task is stopped.
    pub fn status_creds(&self) -> Result<Credentials, DumpError> {
        let status = self.status()?;
        Ok(creds_from_status(&status, 0))
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

    /// The target's user and pid namespaces, refused unless they are the
    /// dumping process's own: capability sets read from `/proc` are
    /// relative to the target's user namespace (a user who created one is
    /// "root" with every capability in it), and pids to its pid namespace.
    /// Namespaces are not supported, so a target in another one is
    /// [`DumpError::Unsupported`], naming the namespace.
    pub fn namespaces(&self) -> Result<Namespaces, DumpError> {
        let pid = self.pid;
        let target = read_namespaces(&format!("/proc/{pid}"), pid)?;
        let own = read_namespaces("/proc/self", pid)?;
        for (kind, theirs, ours) in [
            ("user", target.user, own.user),
            ("pid", target.pid, own.pid),
        ] {
            if theirs != ours {
                return Err(DumpError::Unsupported {
                    pid,
                    resource: format!(
                        "a process in another {kind} namespace ({kind}:{theirs}; \
                         the dump runs in {kind}:{ours}; namespaces are not supported)"
                    ),
                });
            }
        }
        Ok(target)
    }

    fn tracee(&mut self) -> Result<&mut Tracee, DumpError> {
        self.tracee
            .as_mut()
            .ok_or(DumpError::Gone { pid: self.pid })
    }

    /// Capture everything and stream memory into `writer`.
    pub fn dump(&mut self, writer: &mut ImageWriter) -> Result<DumpResult, DumpError> {
        let pid = self.pid;
        let unsupported = |resource: String| DumpError::Unsupported { pid, resource };
        let parse_err = |what: &str| {
            let what = what.to_string();
            move |source| DumpError::Parse { pid, what, source }
        };

        self.check_cancel()?;
        let status = self.status()?;
        let namespaces = self.namespaces()?;
        if status.threads != 1 {
            let tids = task_ids(pid).unwrap_or_default();
            let other = tids.into_iter().find(|t| *t != pid).unwrap_or(0);
            return Err(unsupported(format!(
                "thread {other} (process has {} threads)",
                status.threads
            )));
        }
        if status.seccomp != 0 {
            return Err(unsupported("a seccomp filter".into()));
        }
        let children =
            procfs::children::parse_children(&self.read_proc(&format!("task/{pid}/children"))?)
                .map_err(parse_err("children"))?;
        if let Some(child) = children.first() {
            return Err(unsupported(format!("child process {child}")));
        }
        if let Ok(text) = std::fs::read_to_string(proc_path(pid, "timers")) {
            if procfs::timers::count_posix_timers(&text).map_err(parse_err("timers"))? > 0 {
                return Err(unsupported("a POSIX timer (timer_create)".into()));
            }
        }
        let stat = procfs::stat::parse_stat(&self.read_proc("stat")?).map_err(parse_err("stat"))?;
        let comm = self.read_proc("comm")?.trim_end_matches('\n').to_string();
        let cwd = std::fs::read_link(proc_path(pid, "cwd"))
            .map_err(|source| DumpError::Proc {
                pid,
                what: "cwd".into(),
                source,
            })?
            .to_string_lossy()
            .into_owned();
        if cwd.ends_with(" (deleted)") {
            return Err(unsupported(format!("a deleted working directory {cwd}")));
        }
        let auxv_bytes =
            std::fs::read(proc_path(pid, "auxv")).map_err(|source| DumpError::Proc {
                pid,
                what: "auxv".into(),
                source,
            })?;
        let auxv = procfs::auxv::parse_auxv(&auxv_bytes).map_err(parse_err("auxv"))?;

        // Mappings and the files behind them.
        let maps = procfs::maps::parse_maps(&self.read_proc("maps")?).map_err(parse_err("maps"))?;
        let vmflags: HashMap<u64, Vec<String>> =
            procfs::smaps::parse_smaps_vmflags(&self.read_proc("smaps")?)
                .map_err(parse_err("smaps"))?
                .into_iter()
                .collect();
        let mut files = FileTable::default();
        let exe = files.identity_of_exe(pid)?;
        let mut vmas = Vec::with_capacity(maps.len());
        let mut vdso_range = None;
        for m in &maps {
            let prot = (if m.read { libc::PROT_READ } else { 0 })
                | (if m.write { libc::PROT_WRITE } else { 0 })
                | (if m.exec { libc::PROT_EXEC } else { 0 });
            let (kind, file, name) = match m.path.as_deref() {
                Some("[vdso]") => {
                    vdso_range = Some((m.start, m.end));
                    (VmaKind::Vdso, None, "[vdso]".to_string())
                }
                Some("[vvar]") => (VmaKind::Vvar, None, "[vvar]".to_string()),
                Some("[vvar_vclock]") => (VmaKind::VvarVclock, None, "[vvar_vclock]".to_string()),
                Some("[vsyscall]") => (VmaKind::Vsyscall, None, "[vsyscall]".to_string()),
                Some(p) if p.starts_with('[') && m.inode == 0 => {
                    let kind = if m.shared {
                        VmaKind::SharedAnonymous
                    } else {
                        VmaKind::Anonymous
                    };
                    (kind, None, p.to_string())
                }
                None if m.inode == 0 => {
                    let kind = if m.shared {
                        VmaKind::SharedAnonymous
                    } else {
                        VmaKind::Anonymous
                    };
                    (kind, None, String::new())
                }
                Some(p) if p.starts_with("/dev/zero") || p.starts_with("/SYSV") => {
                    // Shared anonymous memory shows up as a deleted /dev/zero;
                    // a private mapping of /dev/zero is plain anonymous memory.
                    let kind = if m.shared {
                        VmaKind::SharedAnonymous
                    } else {
                        VmaKind::Anonymous
                    };
                    (kind, None, p.to_string())
                }
                Some(p) if p.starts_with("/memfd:") => {
                    return Err(unsupported(format!("memfd mapping {p} at {:#x}", m.start)));
                }
                Some(p) => {
                    if m.deleted {
                        return Err(unsupported(format!(
                            "mapping of deleted file {p} at {:#x}",
                            m.start
                        )));
                    }
                    let idx = files.identity_of_mapping(pid, m)?;
                    (VmaKind::File, Some(idx), String::new())
                }
                None => {
                    return Err(unsupported(format!(
                        "unnamed mapping of inode {} at {:#x}",
                        m.inode, m.start
                    )))
                }
            };
            vmas.push(Vma {
                start: m.start,
                end: m.end,
                prot: prot as u32,
                shared: m.shared,
                offset: m.offset,
                kind,
                file,
                name,
                vm_flags: vmflags.get(&m.start).cloned().unwrap_or_default(),
            });
        }
        let Some((vdso_start, vdso_end)) = vdso_range else {
            return Err(unsupported("a process without [vdso]".into()));
        };

        // File descriptors.
        let (fds, descriptions) = self.dump_fds()?;

        // Per-thread state and what only the task can tell us.
        let regs = arch::from_user_regs(&self.saved);
        let xsave =
            sys::get_xstate(pid).map_err(|errno| ptrace_err(pid, "GETREGSET(XSTATE)", errno))?;
        let sigmask =
            sys::get_sigmask(pid).map_err(|errno| ptrace_err(pid, "GETSIGMASK", errno))?;
        let rseq = sys::get_rseq(pid)
            .map_err(|errno| ptrace_err(pid, "GET_RSEQ_CONFIGURATION", errno))?
            .map(|(abi_pointer, abi_size, signature)| Rseq {
                abi_pointer,
                abi_size,
                signature,
            });
        let mut pending = Vec::new();
        for shared in [false, true] {
            for siginfo in sys::peek_siginfo(pid, shared, MAX_PENDING)
                .map_err(|errno| ptrace_err(pid, "PEEKSIGINFO", errno))?
            {
                pending.push(PendingSignal { shared, siginfo });
            }
        }

        let mut vdso = vec![0u8; usize::try_from(vdso_end - vdso_start).unwrap_or(0)];
        let n = sys::vm_read(pid, vdso_start, &mut vdso).map_err(|errno| DumpError::Memory {
            pid,
            addr: vdso_start,
            errno,
        })?;
        if n != vdso.len() {
            return Err(DumpError::Memory {
                pid,
                addr: vdso_start + n as u64,
                errno: Errno::EFAULT,
            });
        }
        let vdso_digest = Sha256::digest(&vdso).to_vec();
        let syscall_at = find_syscall_insn(&vdso, vdso_start)
            .ok_or_else(|| unsupported("a vdso without a syscall instruction".into()))?;
        self.check_cancel()?;
        let template = self.saved;
        let tracee = self.tracee()?;
        tracee.set_syscall_site(syscall_at, template);
        let injected = inject_queries(tracee).map_err(|source| DumpError::Trace { pid, source })?;
        // From here on a dying tracer leaves the target as a release would.
        self.put_back_registers()?;
        self.check_cancel()?;

        let securebits = injected.securebits;
        let mut creds = creds_from_status(&status, securebits);
        creds.no_new_privs = status.no_new_privs;

        // Memory, streamed.
        self.dump_memory(&vmas, writer)?;

        let xsave_features = arch::xsave_enabled_features(&xsave).unwrap_or(0);
        let cpu = CpuFeatures {
            xsave_features,
            xsave_size: u32::try_from(xsave.len()).unwrap_or(0),
        };
        let thread = ThreadState {
            tid: pid,
            regs,
            xsave,
            sigmask,
            altstack: injected.altstack,
            rseq,
            clear_child_tid: 0,
            robust_list: sys::get_robust_list(pid).unwrap_or((0, 0)),
            pending,
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
            mm: MmLayout {
                start_code: stat.start_code,
                end_code: stat.end_code,
                start_data: stat.start_data,
                end_data: stat.end_data,
                start_brk: stat.start_brk,
                brk: injected.brk,
                start_stack: stat.start_stack,
                arg_start: stat.arg_start,
                arg_end: stat.arg_end,
                env_start: stat.env_start,
                env_end: stat.env_end,
                auxv,
            },
            vmas,
            mapped_files: files.list,
            threads: vec![thread],
            sigactions: injected.sigactions,
            fds,
            descriptions,
            itimers: injected.itimers,
        };
        Ok(DumpResult {
            process,
            cpu,
            vdso_digest,
        })
    }

    fn dump_fds(&self) -> Result<(Vec<FdState>, Vec<OpenFile>), DumpError> {
        let pid = self.pid;
        let unsupported = |resource: String| DumpError::Unsupported { pid, resource };
        let dir = std::fs::read_dir(proc_path(pid, "fd")).map_err(|source| DumpError::Proc {
            pid,
            what: "fd".into(),
            source,
        })?;
        let mut numbers = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|source| DumpError::Proc {
                pid,
                what: "fd".into(),
                source,
            })?;
            if let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        let mut fds = Vec::new();
        let mut descriptions: Vec<OpenFile> = Vec::new();
        // description index -> one fd holding it (for kcmp)
        let mut holders: Vec<i32> = Vec::new();
        // fds 0-2 recorded as connected outside the image.
        let mut outside: Vec<Outside> = Vec::new();
        for fd in numbers {
            let link = std::fs::read_link(proc_path(pid, &format!("fd/{fd}")))
                .map_err(|source| DumpError::Proc {
                    pid,
                    what: format!("fd/{fd}"),
                    source,
                })?
                .to_string_lossy()
                .into_owned();
            let info_text = self.read_proc(&format!("fdinfo/{fd}"))?;
            let info =
                procfs::fdinfo::parse_fdinfo(&info_text).map_err(|source| DumpError::Parse {
                    pid,
                    what: format!("fdinfo/{fd}"),
                    source,
                })?;
            if info_text.lines().any(|l| l.starts_with("lock:")) {
                return Err(unsupported(format!("fd {fd} ({link}) holds a file lock")));
            }
            let meta =
                std::fs::metadata(proc_path(pid, &format!("fd/{fd}"))).map_err(|source| {
                    DumpError::Proc {
                        pid,
                        what: format!("fd/{fd}"),
                        source,
                    }
                })?;
            let ft = meta.file_type();
            let kind = if let Some(kind) = external_fd(pid, fd, &link, &meta, &mut outside)? {
                kind
            } else if !link.starts_with('/') {
                return Err(unsupported(format!("fd {fd} ({link})")));
            } else if link.ends_with(" (deleted)") {
                return Err(unsupported(format!("fd {fd}: deleted file {link}")));
            } else if ft.is_file() {
                OpenFileKind::Regular
            } else if ft.is_dir() {
                OpenFileKind::Directory
            } else if is_simple_char_device(&link, meta.rdev()) {
                OpenFileKind::CharDevice
            } else {
                return Err(unsupported(format!("fd {fd} ({link})")));
            };
            let cloexec = info.flags & (libc::O_CLOEXEC as u32) != 0;
            let flags = info.flags & !(libc::O_CLOEXEC as u32);
            // Same description as an earlier fd?
            let mut found = None;
            for (i, d) in descriptions.iter().enumerate() {
                if d.dev == meta.dev() && d.ino == meta.ino() && d.flags == flags {
                    let holder = holders.get(i).copied().unwrap_or(-1);
                    if sys::kcmp_same_file(pid, holder, fd).unwrap_or(false) {
                        found = Some(i);
                        break;
                    }
                }
            }
            let description = match found {
                Some(i) => i,
                None => {
                    descriptions.push(OpenFile {
                        kind,
                        path: link,
                        flags,
                        offset: info.pos,
                        dev: meta.dev(),
                        ino: meta.ino(),
                    });
                    holders.push(fd);
                    descriptions.len() - 1
                }
            };
            fds.push(FdState {
                fd,
                description: u32::try_from(description).unwrap_or(u32::MAX),
                cloexec,
            });
        }
        Ok((fds, descriptions))
    }

    fn dump_memory(&self, vmas: &[Vma], writer: &mut ImageWriter) -> Result<(), DumpError> {
        let pid = self.pid;
        let pagemap = File::open(proc_path(pid, "pagemap")).map_err(|source| DumpError::Proc {
            pid,
            what: "pagemap".into(),
            source,
        })?;
        let mem = File::open(proc_path(pid, "mem")).map_err(|source| DumpError::Proc {
            pid,
            what: "mem".into(),
            source,
        })?;
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut ranges = Vec::new();
        for vma in vmas {
            let filter = match vma.kind {
                VmaKind::Anonymous => sys::PageFilter {
                    exclude: sys::PAGE_IS_PFNZERO,
                    any_of: sys::PAGE_IS_PRESENT | sys::PAGE_IS_SWAPPED,
                },
                VmaKind::File if !vma.shared => sys::PageFilter {
                    exclude: sys::PAGE_IS_PFNZERO | sys::PAGE_IS_FILE,
                    any_of: sys::PAGE_IS_PRESENT | sys::PAGE_IS_SWAPPED,
                },
                VmaKind::SharedAnonymous => sys::PageFilter {
                    exclude: 0,
                    any_of: sys::PAGE_IS_PRESENT | sys::PAGE_IS_SWAPPED,
                },
                _ => continue,
            };
            ranges.clear();
            sys::pagemap_scan(&pagemap, vma.start, vma.end, filter, &mut ranges).map_err(
                |errno| DumpError::Memory {
                    pid,
                    addr: vma.start,
                    errno,
                },
            )?;
            let readable = vma.prot & (libc::PROT_READ as u32) != 0;
            for &(start, end) in &ranges {
                let mut addr = start.max(vma.start);
                let end = end.min(vma.end);
                while addr < end {
                    self.check_cancel()?;
                    let len = usize::try_from((end - addr).min(CHUNK_BYTES as u64))
                        .unwrap_or(CHUNK_BYTES);
                    let piece = &mut buf[..len];
                    if readable {
                        let n = sys::vm_read(pid, addr, piece)
                            .map_err(|errno| DumpError::Memory { pid, addr, errno })?;
                        if n != len {
                            return Err(DumpError::Memory {
                                pid,
                                addr: addr + n as u64,
                                errno: Errno::EFAULT,
                            });
                        }
                    } else {
                        sys::mem_read(&mem, addr, piece).map_err(|e| DumpError::Memory {
                            pid,
                            addr,
                            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                        })?;
                    }
                    writer.write_chunk(addr, piece)?;
                    addr += len as u64;
                }
            }
        }
        Ok(())
    }

    /// Let the target continue as if nothing happened (the registers are put
    /// back with the kernel's syscall-restart fix-up) and stop tracing it.
    pub fn resume(mut self) -> Result<(), DumpError> {
        self.release()
    }

    fn release(&mut self) -> Result<(), DumpError> {
        let pid = self.pid;
        let Some(mut tracee) = self.tracee.take() else {
            return Ok(());
        };
        let mut regs = self.saved;
        // After injections the task sits at a syscall-exit stop, where the
        // kernel applies no restart logic of its own: apply it here. Without
        // injections it is still at its interrupt stop and the kernel does.
        if tracee.was_injected() {
            arch::restart_fixup(&mut regs, ResumeIn::Original);
        }
        let res = tracee.set_regs(&regs);
        let stolen = tracee.take_stolen_signals();
        let det = tracee.detach();
        for sig in stolen {
            let _ = sys::pidfd_send_signal(&self.pidfd, sig);
        }
        res.and(det)
            .map_err(|source| DumpError::Trace { pid, source })
    }

    /// Kill the target (the image is safely on disk).
    pub fn kill(mut self) -> Result<(), DumpError> {
        let pid = self.pid;
        let r = sys::pidfd_send_signal(&self.pidfd, libc::SIGKILL);
        // Dropping the tracee without detaching is fine: the task dies.
        self.tracee = None;
        r.map_err(|errno| DumpError::Trace {
            pid,
            source: PtraceError::Request {
                op: "pidfd_send_signal(SIGKILL)",
                pid,
                errno,
            },
        })
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// The user and pid namespaces of `proc_dir` (`/proc/PID` or
/// `/proc/self`); errors name `pid`, the target.
fn read_namespaces(proc_dir: &str, pid: i32) -> Result<Namespaces, DumpError> {
    let id = |kind: &str| {
        let path = format!("{proc_dir}/ns/{kind}");
        std::fs::metadata(&path)
            .map(|m| NsId {
                dev: m.dev(),
                ino: m.ino(),
            })
            .map_err(|source| DumpError::Proc {
                pid,
                what: path,
                source,
            })
    };
    Ok(Namespaces {
        user: id("user")?,
        pid: id("pid")?,
    })
}

fn ptrace_err(pid: i32, op: &'static str, errno: Errno) -> DumpError {
    DumpError::Trace {
        pid,
        source: PtraceError::Request { op, pid, errno },
    }
}

fn task_ids(pid: i32) -> std::io::Result<Vec<i32>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(proc_path(pid, "task"))? {
        if let Some(t) = e?.file_name().to_str().and_then(|s| s.parse().ok()) {
            out.push(t);
        }
    }
    Ok(out)
}

/// An fd 0-2 recorded as connected outside the image.
struct Outside {
    fd: i32,
    dev: u64,
    ino: u64,
}

/// Descriptors connected outside the image (what CRIU's `--shell-job`
/// handles): fd 0, 1 or 2 on a terminal, a pipe or FIFO, or a socket is
/// [`OpenFileKind::External`] (restore connects it to the restore caller's
/// own fd of that number). `None` for anything else, which the caller
/// classifies as before. Refused: such an object on any other fd (it would
/// need restoring, not reconnecting), and one pipe or socket held through
/// two different open file descriptions (both ends of a pipe: the other end
/// is inside the image). fds 0-2 that dup one description, or that opened
/// one terminal separately, are fine. `outside` collects fds 0-2 so
/// recorded; fds are classified in increasing order.
fn external_fd(
    pid: i32,
    fd: i32,
    link: &str,
    meta: &std::fs::Metadata,
    outside: &mut Vec<Outside>,
) -> Result<Option<OpenFileKind>, DumpError> {
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    let terminal = ft.is_char_device() && is_terminal(meta.rdev());
    if !(terminal || ft.is_fifo() || ft.is_socket()) {
        return Ok(None);
    }
    let what = if terminal {
        "terminal"
    } else if ft.is_socket() {
        "socket"
    } else {
        "pipe"
    };
    let same = outside
        .iter()
        .find(|o| o.dev == meta.dev() && o.ino == meta.ino());
    let refuse = |resource: String| Err(DumpError::Unsupported { pid, resource });
    if fd > 2 {
        return match same {
            Some(o) => refuse(format!(
                "fd {fd} ({link}), the same {what} as fd {} (only fds 0-2 may be a terminal, pipe or socket, which restore connects to the caller's own: close fd {fd} before the dump, or start the program with it closed)",
                o.fd
            )),
            None => refuse(format!(
                "fd {fd} ({link}), a {what} (only fds 0-2 may be a terminal, pipe or socket, which restore connects to the caller's own: close it before the dump, or start the program with it closed)"
            )),
        };
    }
    if let Some(o) = same {
        if !terminal && !sys::kcmp_same_file(pid, o.fd, fd).unwrap_or(false) {
            return refuse(format!(
                "fd {} and fd {fd} ({link}), two ends of one {what} held by the process (its other end would be inside the image)",
                o.fd
            ));
        }
    }
    outside.push(Outside {
        fd,
        dev: meta.dev(),
        ino: meta.ino(),
    });
    Ok(Some(OpenFileKind::External {
        connected_to: link.to_string(),
    }))
}

/// A terminal: a virtual console or serial line (major 4), `/dev/tty` or
/// `/dev/console` (5:0, 5:1), a pseudo-terminal's terminal side (majors
/// 136-143). Not a pseudo-terminal's master (`/dev/ptmx`, 5:2).
fn is_terminal(rdev: u64) -> bool {
    let major = nix::sys::stat::major(rdev);
    let minor = nix::sys::stat::minor(rdev);
    major == 4 || (major == 5 && minor <= 1) || (136..=143).contains(&major)
}

fn is_simple_char_device(path: &str, rdev: u64) -> bool {
    let major = nix::sys::stat::major(rdev);
    let minor = nix::sys::stat::minor(rdev);
    major == 1
        && matches!(
            (path, minor),
            ("/dev/null", 3)
                | ("/dev/zero", 5)
                | ("/dev/full", 7)
                | ("/dev/random", 8)
                | ("/dev/urandom", 9)
        )
}

fn creds_from_status(s: &procfs::status::Status, securebits: u32) -> Credentials {
    Credentials {
        uid: s.uid,
        gid: s.gid,
        groups: s.groups.clone(),
        cap_inheritable: s.cap_inh,
        cap_permitted: s.cap_prm,
        cap_effective: s.cap_eff,
        cap_bounding: s.cap_bnd,
        cap_ambient: s.cap_amb,
        securebits,
        no_new_privs: s.no_new_privs,
        seccomp_mode: s.seccomp,
    }
}

/// What the task itself reports through injected syscalls.
struct Injected {
    sigactions: Vec<SigAction>,
    altstack: (u64, i32, u64),
    brk: u64,
    rlimits: Vec<Rlimit>,
    itimers: Vec<ITimer>,
    personality: u32,
    securebits: u32,
}

/// Run the read-only queries inside the task, using a scratch page we map
/// and unmap again.
fn inject_queries(t: &mut Tracee) -> Result<Injected, PtraceError> {
    let pid = t.pid();
    let scratch = t.syscall(
        "mmap",
        libc::SYS_mmap,
        [
            0,
            PAGE,
            (libc::PROT_READ | libc::PROT_WRITE) as u64,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
            u64::MAX,
            0,
        ],
    )?;
    let result = (|| {
        let read = |len: usize| -> Result<Vec<u8>, PtraceError> {
            let mut b = vec![0u8; len];
            match sys::vm_read(pid, scratch, &mut b) {
                Ok(n) if n == len => Ok(b),
                Ok(_) => Err(PtraceError::Request {
                    op: "process_vm_readv(scratch)",
                    pid,
                    errno: Errno::EFAULT,
                }),
                Err(errno) => Err(PtraceError::Request {
                    op: "process_vm_readv(scratch)",
                    pid,
                    errno,
                }),
            }
        };
        let mut sigactions = Vec::new();
        for sig in 1u32..=64 {
            if sig == libc::SIGKILL as u32 || sig == libc::SIGSTOP as u32 {
                continue;
            }
            let r = t.syscall_raw(libc::SYS_rt_sigaction, [sig as u64, 0, scratch, 8, 0, 0])?;
            if r < 0 {
                continue; // signals the kernel does not know (none on x86_64)
            }
            let b = read(32)?;
            let w = words(&b);
            sigactions.push(SigAction {
                signal: sig,
                handler: w[0],
                flags: w[1],
                restorer: w[2],
                mask: w[3],
            });
        }
        t.syscall(
            "sigaltstack",
            libc::SYS_sigaltstack,
            [0, scratch, 0, 0, 0, 0],
        )?;
        let b = read(24)?;
        let w = words(&b);
        let altstack = (w[0], w[1] as u32 as i32, w[2]);
        let brk = t.syscall("brk", libc::SYS_brk, [0; 6])?;
        let mut rlimits = Vec::new();
        for res in 0u32..16 {
            t.syscall(
                "prlimit64",
                libc::SYS_prlimit64,
                [0, res as u64, 0, scratch, 0, 0],
            )?;
            let w = words(&read(16)?);
            rlimits.push(Rlimit {
                resource: res,
                soft: w[0],
                hard: w[1],
            });
        }
        let mut itimers = Vec::new();
        for which in 0u32..3 {
            t.syscall(
                "getitimer",
                libc::SYS_getitimer,
                [which as u64, scratch, 0, 0, 0, 0],
            )?;
            let w = words(&read(32)?);
            let us = |sec: u64, usec: u64| sec.saturating_mul(1_000_000).saturating_add(usec);
            itimers.push(ITimer {
                which,
                interval_us: us(w[0], w[1]),
                value_us: us(w[2], w[3]),
            });
        }
        let personality = t.syscall(
            "personality",
            libc::SYS_personality,
            [0xffff_ffff, 0, 0, 0, 0, 0],
        )? as u32;
        let securebits = t.syscall(
            "prctl(PR_GET_SECUREBITS)",
            libc::SYS_prctl,
            [libc::PR_GET_SECUREBITS as u64, 0, 0, 0, 0, 0],
        )? as u32;
        Ok(Injected {
            sigactions,
            altstack,
            brk,
            rlimits,
            itimers,
            personality,
            securebits,
        })
    })();
    let unmapped = t.syscall("munmap", libc::SYS_munmap, [scratch, PAGE, 0, 0, 0, 0]);
    let injected = result?;
    unmapped?;
    Ok(injected)
}

fn words(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            u64::from_ne_bytes(a)
        })
        .collect()
}

/// The mapped files of a process, each identified and hashed once.
#[derive(Default)]
struct FileTable {
    list: Vec<FileIdentity>,
    by_inode: HashMap<(u64, u64), u32>,
}

impl FileTable {
    fn identity_of_exe(&mut self, pid: i32) -> Result<FileIdentity, DumpError> {
        let link = std::fs::read_link(proc_path(pid, "exe"))
            .map_err(|source| DumpError::Proc {
                pid,
                what: "exe".into(),
                source,
            })?
            .to_string_lossy()
            .into_owned();
        if link.ends_with(" (deleted)") {
            return Err(DumpError::Unsupported {
                pid,
                resource: format!("a deleted executable {link}"),
            });
        }
        let file = File::open(proc_path(pid, "exe")).map_err(|source| DumpError::Proc {
            pid,
            what: "exe".into(),
            source,
        })?;
        let id = identify(pid, &link, &file)?;
        // The executable is mapped too: its mappings find it here instead
        // of hashing the file a second time.
        let idx = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        self.by_inode.insert((id.dev, id.ino), idx);
        self.list.push(id.clone());
        Ok(id)
    }

    fn identity_of_mapping(
        &mut self,
        pid: i32,
        m: &procfs::maps::MapsEntry,
    ) -> Result<u32, DumpError> {
        let path = m.path.clone().unwrap_or_default();
        let dev = nix::sys::stat::makedev(u64::from(m.dev_major), u64::from(m.dev_minor));
        if let Some(&i) = self.by_inode.get(&(dev, m.inode)) {
            return Ok(i);
        }
        let file = match File::open(proc_path(
            pid,
            &format!("map_files/{:x}-{:x}", m.start, m.end),
        )) {
            Ok(f) => f,
            // Without CAP_SYS_ADMIN map_files is closed: open the path the
            // kernel reported (no symlink, no blocking on a fifo) and check
            // below that it is the mapped inode.
            Err(_) => open_nofollow(&path).map_err(|e| DumpError::MappedFile {
                pid,
                path: path.clone(),
                reason: format!("cannot open: {e}"),
            })?,
        };
        let id = identify(pid, &path, &file)?;
        if id.dev != dev || id.ino != m.inode {
            return Err(DumpError::MappedFile {
                pid,
                path,
                reason: "replaced on disk since it was mapped".into(),
            });
        }
        let idx = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        self.list.push(id);
        self.by_inode.insert((dev, m.inode), idx);
        Ok(idx)
    }
}

/// Identity and content digest of an open file.
pub(crate) fn identify(pid: i32, path: &str, file: &File) -> Result<FileIdentity, DumpError> {
    let meta = file.metadata().map_err(|e| DumpError::MappedFile {
        pid,
        path: path.to_string(),
        reason: format!("fstat: {e}"),
    })?;
    if !meta.is_file() {
        return Err(DumpError::Unsupported {
            pid,
            resource: format!("mapping of non-regular file {path}"),
        });
    }
    let digest = digest_file(file).map_err(|e| DumpError::MappedFile {
        pid,
        path: path.to_string(),
        reason: format!("reading: {e}"),
    })?;
    Ok(FileIdentity {
        path: path.to_string(),
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        digest,
    })
}

/// SHA-256 of a whole file, read from its start.
pub fn digest_file(file: &File) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let n = file.read_at(&mut buf, off)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        off += n as u64;
    }
    Ok(h.finalize().to_vec())
}

fn open_nofollow(path: &str) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}
