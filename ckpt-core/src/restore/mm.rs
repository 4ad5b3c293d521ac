//! Memory: the stub's own mappings cleared away, the trampoline and
//! scratch page, the vdso family moved to its saved place, every saved
//! mapping recreated (files opened in the stub and checked against their
//! signed digests), memory filled from the image with every chunk hashed
//! as it streams in, the final protections and madvise flags, and memory locks
//! (`mlock`, after the credentials drop).
//!
//! Owns: the stub's address space while it is built. Trusts: nothing in
//! the image (the reader re-hashes chunks as they stream; the vdso must be
//! byte-identical to the recorded one; mapped files must match their
//! digests where the saved code relies on them).

use std::collections::HashMap;

use nix::errno::Errno;
use sha2::{Digest, Sha256};

use super::{Builder, RestoreCredentials, RestoreError, StubMode};
use crate::image::{ChunkStreamError, ImageReader, Manifest};
use crate::inject::errno_of;
use crate::model::{ProcessState, VmaKind};
use crate::procfs;
use crate::ptrace::find_syscall_insn;
use crate::sys;

pub(super) const PAGE: u64 = 4096;
/// Threads that read, check and write memory chunks.
const FILL_THREADS: usize = 2;
/// Below this much memory a process is filled by one thread.
const FILL_ALONE_BELOW: u64 = 8 << 20;
/// Bytes each of them reads, hashes and writes at a time.
const FILL_BLOCK: usize = 512 << 10;
/// The piece size when one thread fills less than [`FILL_ALONE_BELOW`]:
/// each page of the buffer is a fresh page to fault in (a host fault on
/// a VM that returns freed memory), which for a small process cost more
/// than the extra reads of smaller pieces.
const FILL_BLOCK_SMALL: usize = 64 << 10;
/// How many chunks (of up to 4 MiB) ahead of the ones being filled are
/// asked from the disk (`POSIX_FADV_WILLNEED`): page cache, not the
/// helper's memory.
const PREFETCH_CHUNKS: usize = 8;

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

impl Builder<'_> {
    pub(super) fn stub_maps(&self) -> Result<Vec<procfs::maps::MapsEntry>, RestoreError> {
        let text = std::fs::read_to_string(format!("/proc/{}/maps", self.pid())).map_err(|e| {
            RestoreError::Spawn(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        })?;
        procfs::maps::parse_maps(&text)
            .map_err(|e| RestoreError::Invalid(format!("stub maps: {e}")))
    }

    /// Check that the stub's vdso is the one the image was dumped with and
    /// inject through its `syscall` instruction until the trampoline is
    /// mapped. Returns the registers injections start from.
    pub(super) fn inject_through_vdso(
        &mut self,
        stub_maps: &[procfs::maps::MapsEntry],
    ) -> Result<libc::user_regs_struct, RestoreError> {
        let m = self.m;
        let pid = self.pid();
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
        let template = self.inj.tracee().regs().map_err(self.tr())?;
        self.inj.tracee().set_syscall_site(syscall_at, template);
        Ok(template)
    }

    /// Map the trampoline (`syscall; int3`) and the scratch page after it
    /// at an address free both now and in the image's layout, and inject
    /// from there. Returns its address and the occupied ranges.
    pub(super) fn place_trampoline(
        &mut self,
        stub_maps: &[procfs::maps::MapsEntry],
        template: libc::user_regs_struct,
    ) -> Result<(u64, Vec<(u64, u64)>), RestoreError> {
        let p = self.p;
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
        self.inj
            .write(tramp, &[0x0f, 0x05, 0xcc], "writing trampoline")?;
        self.inj.tracee().set_trap_site(tramp, template);
        self.inj.use_scratch(tramp + PAGE, PAGE);
        occupied.push((tramp, tramp + 2 * PAGE));
        Ok((tramp, occupied))
    }

    /// Unmap every mapping of the stub but the trampoline and the vdso
    /// family.
    pub(super) fn unmap_stub(
        &mut self,
        stub_maps: &[procfs::maps::MapsEntry],
    ) -> Result<(), RestoreError> {
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
        Ok(())
    }

    /// The saved protections, and the madvise flags restore keeps. A
    /// mapping [`Builder::map_all`] mapped with its saved protection
    /// already (it received no chunk, or was writable anyway) needs no
    /// `mprotect`.
    pub(super) fn set_protections(&mut self) -> Result<(), RestoreError> {
        let p = self.p;
        let has_chunks = chunked_vmas(self.m, self.p, self.memory);
        let rw = (libc::PROT_READ | libc::PROT_WRITE) as u32;
        // The mappings written with write access get their own protection
        // back, in one batch.
        let mut protects = Vec::new();
        for (i, v) in p.vmas.iter().enumerate() {
            if matches!(
                v.kind,
                VmaKind::Anonymous | VmaKind::SharedAnonymous | VmaKind::File
            ) {
                if has_chunks.contains(&i) && v.prot & rw != rw {
                    protects.push((
                        "mprotect",
                        libc::SYS_mprotect,
                        [v.start, v.end - v.start, u64::from(v.prot), 0, 0, 0],
                    ));
                }
                // `hint`: advice this kernel may not offer (THP or KSM
                // compiled out or disabled): refused, the restore goes on
                // with a notice. The others always apply to such a mapping.
                for (flag, advice, name, hint) in [
                    ("dd", libc::MADV_DONTDUMP, "MADV_DONTDUMP", false),
                    ("dc", libc::MADV_DONTFORK, "MADV_DONTFORK", false),
                    ("wf", libc::MADV_WIPEONFORK, "MADV_WIPEONFORK", false),
                    ("sr", libc::MADV_SEQUENTIAL, "MADV_SEQUENTIAL", false),
                    ("rr", libc::MADV_RANDOM, "MADV_RANDOM", false),
                    ("hg", libc::MADV_HUGEPAGE, "MADV_HUGEPAGE", true),
                    ("nh", libc::MADV_NOHUGEPAGE, "MADV_NOHUGEPAGE", true),
                    ("mg", libc::MADV_MERGEABLE, "MADV_MERGEABLE", true),
                ] {
                    if !v.vm_flags.contains(flag) {
                        continue;
                    }
                    let args = [v.start, v.end - v.start, advice as u64, 0, 0, 0];
                    if !hint {
                        self.sys(name, libc::SYS_madvise, args)?;
                        continue;
                    }
                    let r = self.sys_raw(libc::SYS_madvise, args)?;
                    if r < 0 {
                        self.notices.push(format!(
                            "{name} not restored on {:#x}..{:#x}: {}",
                            v.start,
                            v.end,
                            errno_of(r)
                        ));
                    }
                }
            }
        }
        self.sys_batch(&protects)?;
        Ok(())
    }

    /// Mappings that were locked (`VmFlags` `lo`: `mlock`, `MAP_LOCKED`)
    /// are locked again with an injected `mlock`, once the stub holds its
    /// final credentials and resource limits, so the kernel counts them
    /// against the restored process's own `RLIMIT_MEMLOCK` (a root-built
    /// stub would otherwise lock without limit). Refused, the mapping
    /// stays as it is and a notice names it.
    pub(super) fn lock_mappings(&mut self) -> Result<(), RestoreError> {
        let p = self.p;
        for v in &p.vmas {
            if !matches!(
                v.kind,
                VmaKind::Anonymous | VmaKind::SharedAnonymous | VmaKind::File
            ) || !v.vm_flags.contains("lo")
            {
                continue;
            }
            let r = self.sys_raw(libc::SYS_mlock, [v.start, v.end - v.start, 0, 0, 0, 0])?;
            if r < 0 {
                self.notices.push(format!(
                    "mapping {:#x}..{:#x} not locked in memory again (mlock: {}; RLIMIT_MEMLOCK?)",
                    v.start,
                    v.end,
                    errno_of(r)
                ));
            }
        }
        Ok(())
    }

    pub(super) fn move_vdso(
        &mut self,
        stub_maps: &[procfs::maps::MapsEntry],
        occupied: &[(u64, u64)],
    ) -> Result<(), RestoreError> {
        let p = self.p;
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
        // A process that had unmapped its vdso: the stub's goes too (the
        // trampoline is what syscalls are injected through now).
        if family(VmaKind::Vdso).is_none() {
            for (now, then, _) in pairs {
                if let (Some((s, e)), None) = (now, then) {
                    self.sys("munmap(vdso)", libc::SYS_munmap, [s, e - s, 0, 0, 0, 0])?;
                }
            }
            return Ok(());
        }
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
        // First to a spot free in both layouts, then to the saved place;
        // all in one batch.
        let mut steps = Vec::new();
        for ((ns, ne), _) in &moves {
            steps.push((*ns, ne - ns, tmp + (ns - lo)));
        }
        for ((ns, ne), (ts, _)) in &moves {
            let src = tmp + (ns - lo);
            if src != *ts {
                steps.push((src, ne - ns, *ts));
            }
        }
        let calls: Vec<_> = steps
            .iter()
            .map(|&(from, len, to)| {
                let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
                (
                    "mremap(vdso)",
                    libc::SYS_mremap,
                    [from, len, len, flags, to, 0],
                )
            })
            .collect();
        let got = self.sys_batch(&calls)?;
        if got.iter().zip(&steps).any(|(g, s)| *g != s.2) {
            return Err(RestoreError::Invalid("vdso moved elsewhere".into()));
        }
        Ok(())
    }

    /// Map every saved region at its address: anonymous memory, and files
    /// opened once each in the stub and checked against their digests.
    pub(super) fn map_all(&mut self) -> Result<(), RestoreError> {
        let p = self.p;
        let has_chunks = chunked_vmas(self.m, self.p, self.memory);
        // Open each mapped file once, in the stub, and check its content.
        let mut file_fds: HashMap<u32, u64> = HashMap::new();
        // Files are opened (and checked) first; then every mapping is made
        // in one batch of injected `mmap`s.
        let mut maps: Vec<(u64, [u64; 6])> = Vec::new();
        for (i, v) in p.vmas.iter().enumerate() {
            let flags = match v.kind {
                VmaKind::Anonymous => libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                // Shared with another process of the image: its object.
                VmaKind::SharedAnonymous if v.space.is_some() => libc::MAP_SHARED,
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
            let grows = if v.vm_flags.contains("gd") {
                libc::MAP_GROWSDOWN
            } else {
                0
            };
            // `nr` (VM_NORESERVE): mapped with MAP_NORESERVE, not charged
            // against the commit limit (glibc's per-thread malloc arenas,
            // a JVM's heap and code cache reservations). Without it a
            // large reservation would be charged in full again.
            let noreserve = if v.vm_flags.contains("nr") {
                libc::MAP_NORESERVE
            } else {
                0
            };
            let mut prot = v.prot;
            if has_chunks.contains(&i) {
                prot |= (libc::PROT_READ | libc::PROT_WRITE) as u32;
            }
            let fd = match (v.kind, v.file) {
                (VmaKind::File, Some(fi)) => match file_fds.get(&fi) {
                    Some(&fd) => fd,
                    None => {
                        let fd = self.open_mapped_file_for(fi)?;
                        file_fds.insert(fi, fd);
                        fd
                    }
                },
                (VmaKind::File | VmaKind::SharedAnonymous, None) if v.space.is_some() => {
                    match v.space.and_then(|s| self.saved_file(s)) {
                        Some(fd) => fd,
                        None => {
                            return Err(RestoreError::Invalid(format!(
                                "mapping {:#x}: no file to map",
                                v.start
                            )))
                        }
                    }
                }
                _ => u64::MAX,
            };
            maps.push((
                v.start,
                [
                    v.start,
                    v.end - v.start,
                    u64::from(prot),
                    (flags | grows | noreserve | libc::MAP_FIXED_NOREPLACE) as u64,
                    fd,
                    v.offset,
                ],
            ));
        }
        let calls: Vec<(libc::c_long, [u64; 6])> = maps
            .iter()
            .map(|&(_, args)| (libc::SYS_mmap, args))
            .collect();
        let pid = self.pid();
        let results = self.inj.syscall_batch(&calls)?;
        for (&(start, _), &r) in maps.iter().zip(&results) {
            if (-4095..0).contains(&r) {
                return Err(RestoreError::Memory {
                    pid,
                    what: "mapping",
                    addr: start,
                    errno: errno_of(r),
                });
            }
            if r as u64 != start {
                return Err(RestoreError::Invalid(format!(
                    "mapping {start:#x} landed at {:#x}",
                    r as u64
                )));
            }
        }
        if results.len() != maps.len() {
            return Err(RestoreError::Invalid(format!(
                "{} of {} mappings made",
                results.len(),
                maps.len()
            )));
        }
        let exe = &p.exe;
        let exe_index = p
            .mapped_files
            .iter()
            .position(|f| f.path == exe.path && f.dev == exe.dev && f.ino == exe.ino)
            .and_then(|i| u32::try_from(i).ok());
        let mut closes = Vec::new();
        for (fi, fd) in file_fds {
            if self.mode == StubMode::Root && self.opts.exe_link && Some(fi) == exe_index {
                self.exe_fd = Some(fd);
            } else {
                closes.push(("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0]));
            }
        }
        self.sys_batch(&closes)?;
        if self.mode == StubMode::Root && self.opts.exe_link && self.exe_fd.is_none() {
            return Err(RestoreError::Invalid(format!(
                "the executable {} is not among the process's mapped files",
                exe.path
            )));
        }
        Ok(())
    }

    fn file_needs_write(&self, fi: u32) -> bool {
        self.p
            .vmas
            .iter()
            .any(|v| v.file == Some(fi) && v.shared && v.prot & libc::PROT_WRITE as u32 != 0)
    }

    /// Whether a shared mapping of file `fi` may be made writable later
    /// (VmFlags `mw`, `VM_MAYWRITE`: the file was opened read-write, so a
    /// `PROT_READ` mapping can be `mprotect`ed to `PROT_WRITE`).
    fn file_may_write(&self, fi: u32) -> bool {
        self.p
            .vmas
            .iter()
            .any(|v| v.file == Some(fi) && v.shared && v.vm_flags.contains("mw"))
    }

    /// Open mapped file `fi` read-write when a shared mapping of it is
    /// writable, or may become so (`VM_MAYWRITE`); read-only otherwise.
    /// When only `VM_MAYWRITE` asked for write access and the restored
    /// credentials may not have it, the file is mapped read-only with a
    /// notice (the mapping can then not be made writable).
    fn open_mapped_file_for(&mut self, fi: u32) -> Result<u64, RestoreError> {
        if self.file_needs_write(fi) {
            return self.open_mapped_file(fi, true);
        }
        if !self.file_may_write(fi) {
            return self.open_mapped_file(fi, false);
        }
        match self.open_mapped_file(fi, true) {
            Err(RestoreError::Open { path, errno })
                if matches!(errno, Errno::EACCES | Errno::EPERM | Errno::EROFS) =>
            {
                self.notices.push(format!(
                    "{path}: mapped shared read-only; the restored credentials may not open it \
                     for writing ({errno}), so the mapping can no longer be made writable"
                ));
                self.open_mapped_file(fi, false)
            }
            r => r,
        }
    }

    /// Open mapped file `fi` in the stub and check that its content is what
    /// was dumped (the same bytes are what the restored code will run).
    fn open_mapped_file(&mut self, fi: u32, write: bool) -> Result<u64, RestoreError> {
        let f = self
            .p
            .mapped_files
            .get(fi as usize)
            .cloned()
            .ok_or_else(|| RestoreError::Invalid("file index".into()))?;
        let mode = if write { libc::O_RDWR } else { libc::O_RDONLY };
        let fd = self.open_in_stub(&f.path, mode)?;
        let local =
            sys::pidfd_getfd(self.pidfd, i32::try_from(fd).unwrap_or(-1)).map_err(|errno| {
                RestoreError::Open {
                    path: f.path.clone(),
                    errno,
                }
            })?;
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
                || self.p.vmas.iter().any(|v| {
                    v.file == Some(fi) && (!v.shared || v.prot & libc::PROT_EXEC as u32 != 0)
                });
        let changed = if std::os::unix::fs::MetadataExt::size(&meta) != f.size {
            Some("size differs")
        } else {
            let digest = self
                .digests
                .of(&file, &meta)
                .map_err(|e| RestoreError::Open {
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
}

/// What filling one process's memory needs, apart from its builder: the
/// fill of one process of a tree runs on a thread of its own while the
/// restorer goes on with the others (see `tree`), and touches nothing but
/// that process's memory, through `process_vm_writev`.
pub(super) struct MemoryFill<'a> {
    pub(super) reader: &'a ImageReader,
    pub(super) m: &'a Manifest,
    /// The task's memory space (`None`: nothing to fill).
    pub(super) memory: Option<u32>,
    /// The stub, stopped and traced by the restorer's main thread, which
    /// does not run it until the fill is over.
    pub(super) pid: i32,
    pub(super) pinned: Option<&'a super::affinity::Pinned>,
}

impl MemoryFill<'_> {
    /// Stream every chunk into the stub. For 8 MiB or more, two threads
    /// each take every other chunk (less is filled by this thread alone:
    /// two threads cost more to start than a few chunks take) and stream
    /// it in pieces of [`FILL_BLOCK`] bytes: each piece is read, hashed and
    /// written into the stub at once, and the chunk's digest is checked
    /// when its last piece is in. A chunk that does not match fails the
    /// restore, and the stub, which has not run any of that memory, is
    /// killed. Each byte is read and hashed once; memory: one piece per
    /// thread, whatever the chunk size.
    pub(super) fn run(&self) -> Result<(), RestoreError> {
        let (reader, pid) = (self.reader, self.pid);
        // The chunks of the task's memory space (others hold file
        // contents, written where those files are created).
        let memory = self.memory;
        if memory.is_none() {
            return Ok(());
        }
        let chunks: Vec<usize> = (0..self.m.chunks.len())
            .filter(|&i| self.m.chunks.get(i).map(|c| Some(c.space)) == Some(memory))
            .collect();
        // A small process (most of a tree's) is filled by this thread: two
        // threads cost more to start than its few chunks take to hash.
        let bytes: u64 = chunks
            .iter()
            .filter_map(|&i| self.m.chunks.get(i))
            .map(|c| c.len)
            .sum();
        let threads = if bytes < FILL_ALONE_BELOW {
            1
        } else {
            FILL_THREADS
        };
        let chunks = &chunks;
        // Read ahead: the first chunks now, then each worker, as it starts
        // a chunk, the one PREFETCH_CHUNKS further on (of its own share
        // or the other's): with a cold cache the disk always has that much
        // queued, where reads of FILL_BLOCK alone left it mostly idle.
        for &index in chunks.iter().take(PREFETCH_CHUNKS) {
            reader.prefetch_chunk(index);
        }
        let worker = |first: usize| -> Result<(), RestoreError> {
            let mut buf = vec![
                0u8;
                if threads == 1 {
                    FILL_BLOCK_SMALL
                } else {
                    FILL_BLOCK
                }
            ];
            for (pos, &index) in chunks.iter().enumerate().skip(first).step_by(threads) {
                for ahead in chunks.iter().skip(pos + PREFETCH_CHUNKS).take(threads) {
                    reader.prefetch_chunk(*ahead);
                }
                let base = self.m.chunks.get(index).map_or(0, |c| c.addr);
                reader
                    .stream_chunk(index, &mut buf, |off, piece| {
                        let addr = base + off;
                        let n = sys::vm_write(pid, addr, piece).map_err(|errno| {
                            RestoreError::Memory {
                                pid,
                                what: "filling memory",
                                addr,
                                errno,
                            }
                        })?;
                        if n != piece.len() {
                            return Err(RestoreError::Memory {
                                pid,
                                what: "filling memory",
                                addr: addr + n as u64,
                                errno: Errno::EFAULT,
                            });
                        }
                        Ok(())
                    })
                    .map_err(|e| match e {
                        ChunkStreamError::Image(e) => RestoreError::from(e),
                        ChunkStreamError::Callback(e) => e,
                    })?;
            }
            Ok(())
        };
        if threads == 1 {
            return worker(0);
        }
        // Started while the restorer is pinned to one CPU: each gives
        // itself every CPU back.
        let pinned = self.pinned;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|i| {
                    scope.spawn(move || {
                        if let Some(p) = pinned {
                            p.release_thread();
                        }
                        worker(i)
                    })
                })
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
}

/// The digests of the mapped files one restore has checked, by identity
/// and change times (device, inode, size, mtime, ctime): every process of
/// a tree maps the same libraries, and each was hashed whole for each
/// process. A file written since it was hashed has a new ctime (the kernel
/// sets it on every write, `mmap` writes included, and no one can set it
/// back), so it is hashed again. Root's unchanged files are also looked up
/// in, and added to, the persistent cache of [`crate::filedigests`].
/// Single-threaded: used by the restorer's main thread only.
pub(super) struct FileDigests {
    seen: std::cell::RefCell<HashMap<FileKey, Vec<u8>>>,
    cache: std::cell::RefCell<crate::filedigests::FileDigestCache>,
}

/// (dev, ino, size, mtime s, mtime ns, ctime s, ctime ns).
type FileKey = (u64, u64, u64, i64, i64, i64, i64);

impl FileDigests {
    /// With the persistent cache of state directory `statedir`, if any.
    pub(super) fn new(statedir: Option<&std::path::Path>) -> FileDigests {
        use crate::filedigests::FileDigestCache;
        FileDigests {
            seen: Default::default(),
            cache: std::cell::RefCell::new(
                statedir.map_or_else(FileDigestCache::disabled, FileDigestCache::new),
            ),
        }
    }

    /// Write the persistent cache back (best effort).
    pub(super) fn save(&self) {
        self.cache.borrow_mut().save();
    }

    /// The digest of `file`, whose metadata is `meta` (taken from the
    /// same open file).
    fn of(&self, file: &std::fs::File, meta: &std::fs::Metadata) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::MetadataExt;
        let key = (
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
        );
        if let Some(d) = self.seen.borrow().get(&key) {
            return Ok(d.clone());
        }
        let d = self.cache.borrow_mut().digest(file, meta)?;
        self.seen.borrow_mut().insert(key, d.clone());
        Ok(d)
    }
}

/// Indexes of the mappings that receive memory chunks.
fn chunked_vmas(
    m: &Manifest,
    p: &ProcessState,
    memory: Option<u32>,
) -> std::collections::HashSet<usize> {
    let mut out = std::collections::HashSet::new();
    let vmas = &p.vmas;
    let mut vi = 0;
    for c in m.chunks.iter().filter(|c| Some(c.space) == memory) {
        while vi < vmas.len() && vmas[vi].end <= c.addr {
            vi += 1;
        }
        if vi < vmas.len() {
            out.insert(vi);
        }
    }
    out
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
