//! Memory: every mapping from `/proc/PID/maps` and `smaps` (with the file
//! behind it, identified and hashed once), the vdso's digest, the mm
//! layout, and the memory worth saving, found with the `PAGEMAP_SCAN`
//! ioctl and streamed into the image with `process_vm_readv` (or
//! `/proc/PID/mem` for pages without read permission).
//!
//! Owns: the chunk stream. Trusts: nothing the target wrote into its
//! memory (copied as opaque bytes); nothing from `/proc` to be well formed.

use std::collections::HashMap;
use std::fs::File;

use nix::errno::Errno;
use sha2::{Digest, Sha256};

use super::identity::MappedFiles;
use super::{proc_path, DumpError, Frozen, CHUNK_BYTES};
use crate::image::ImageWriter;
use crate::inject::{InjectError, Injector};
use crate::model::{MmLayout, VmFlags, Vma, VmaKind};
use crate::procfs;
use crate::ptrace::find_syscall_insn;
use crate::sys;

/// `start..end` of a mapping.
type AddrRange = (u64, u64);

impl Frozen {
    /// The raw auxiliary vector.
    pub(super) fn auxv(&self) -> Result<Vec<u64>, DumpError> {
        let pid = self.pid;
        let auxv_bytes =
            std::fs::read(proc_path(pid, "auxv")).map_err(|source| DumpError::Proc {
                pid,
                what: "auxv".into(),
                source,
            })?;
        procfs::auxv::parse_auxv(&auxv_bytes).map_err(self.parse_err("auxv"))
    }

    /// Every mapping, in address order, with mapped files added to
    /// `files`; and where the vdso is. Refuses what restore cannot map
    /// again (memfd, deleted or unnamed files).
    pub(super) fn mappings(
        &self,
        files: &mut MappedFiles,
        saved: &mut super::files::saved::SavedFiles,
    ) -> Result<(Vec<Vma>, Option<AddrRange>), DumpError> {
        let pid = self.pid;
        let maps =
            procfs::maps::parse_maps(&self.read_proc("maps")?).map_err(self.parse_err("maps"))?;
        let mut vmflags: HashMap<u64, VmFlags> =
            procfs::smaps::parse_smaps_vmflags(&self.read_proc("smaps")?)
                .map_err(self.parse_err("smaps"))?
                .into_iter()
                .collect();
        let mut vm_flags_at = |start: u64| vmflags.remove(&start).unwrap_or_default();
        let mut vmas = Vec::with_capacity(maps.len());
        let mut vdso_range = None;
        for m in &maps {
            let prot = (if m.read { libc::PROT_READ } else { 0 })
                | (if m.write { libc::PROT_WRITE } else { 0 })
                | (if m.exec { libc::PROT_EXEC } else { 0 });
            // A memfd or unlinked file an fd holds: its content is saved.
            let dev = libc::makedev(m.dev_major, m.dev_minor);
            let shared_zero = m.shared
                && m.inode != 0
                && m.path
                    .as_deref()
                    .is_some_and(|p| p.starts_with("/dev/zero"));
            // Shared anonymous memory another process of the image maps
            // too: its content is a space of its own, saved once.
            let shmem = if shared_zero {
                saved.shared_memory(self, m.start, m.end, dev, m.inode)?
            } else {
                None
            };
            let content = if m.inode != 0 && !shared_zero {
                saved.mapped(dev, m.inode)
            } else {
                None
            };
            let (kind, file, name) = match m.path.as_deref() {
                Some(p) if content.is_some() => (VmaKind::File, None, p.to_string()),
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
                    return Err(self.unsupported(format!(
                        "memfd mapping {p} at {:#x} (only a memfd one of the process's fds holds is saved)",
                        m.start
                    )));
                }
                Some(p) => {
                    if m.deleted {
                        // No fd holds it: its content is saved from the
                        // mapping itself.
                        let ranges = saved.mapped_ranges(dev, m.inode);
                        let path = p.strip_suffix(" (deleted)").unwrap_or(p);
                        let space = saved.deleted_mapping(self, m.start, m.end, path, ranges)?;
                        vmas.push(Vma {
                            start: m.start,
                            end: m.end,
                            prot: prot as u32,
                            shared: m.shared,
                            offset: m.offset,
                            kind: VmaKind::File,
                            file: None,
                            name: p.to_string(),
                            vm_flags: vm_flags_at(m.start),
                            space: Some(space),
                        });
                        continue;
                    }
                    let idx = files.identity_of_mapping(pid, m)?;
                    (VmaKind::File, Some(idx), String::new())
                }
                None => {
                    return Err(self.unsupported(format!(
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
                vm_flags: vm_flags_at(m.start),
                space: content.or(shmem),
            });
        }
        Ok((vmas, vdso_range))
    }

    /// SHA-256 of the vdso (restore needs the same kernel's), and the
    /// address of a `syscall` instruction in it to inject through.
    pub(super) fn read_vdso(
        &self,
        vdso: Option<AddrRange>,
        vmas: &[Vma],
    ) -> Result<(Vec<u8>, u64), DumpError> {
        match vdso {
            Some((start, end)) => self.read_vdso_at(start, end),
            None => self.without_vdso(vmas),
        }
    }

    /// A process that unmapped its vdso: the image records the digest of
    /// this kernel's vdso (the dumper's own: restore still needs the same
    /// kernel build, and unmaps it again), and syscalls are injected
    /// through a `syscall` instruction found in one of its executable file
    /// mappings (its C library has many).
    fn without_vdso(&self, vmas: &[Vma]) -> Result<(Vec<u8>, u64), DumpError> {
        let pid = self.pid;
        let own = std::fs::read_to_string("/proc/self/maps")
            .ok()
            .and_then(|t| procfs::maps::parse_maps(&t).ok())
            .and_then(|m| {
                m.iter()
                    .find(|e| e.path.as_deref() == Some("[vdso]"))
                    .map(|e| (e.start, e.end))
            })
            .ok_or_else(|| {
                self.unsupported("a process without [vdso], dumped by a process without one".into())
            })?;
        let mut bytes = vec![0u8; usize::try_from(own.1 - own.0).unwrap_or(0)];
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        let n = sys::vm_read(me, own.0, &mut bytes).map_err(|errno| DumpError::Memory {
            pid: me,
            addr: own.0,
            errno,
        })?;
        if n != bytes.len() {
            return Err(self.unsupported("a process without [vdso] (reading this kernel's)".into()));
        }
        let digest = Sha256::digest(&bytes).to_vec();
        let mut code = vec![0u8; 1 << 16];
        for v in vmas
            .iter()
            .filter(|v| v.kind == VmaKind::File && v.prot & libc::PROT_EXEC as u32 != 0)
        {
            let mut at = v.start;
            while at < v.end {
                let len = usize::try_from((v.end - at).min(code.len() as u64)).unwrap_or(0);
                let Ok(n) = sys::vm_read(pid, at, &mut code[..len]) else {
                    break;
                };
                if let Some(site) = find_syscall_insn(&code[..n], at) {
                    return Ok((digest, site));
                }
                // Overlap by one byte so an instruction across two reads counts.
                at += (n as u64).max(2) - 1;
            }
        }
        Err(self.unsupported(
            "a process without [vdso] and without a syscall instruction in its executable mappings"
                .into(),
        ))
    }

    fn read_vdso_at(&self, vdso_start: u64, vdso_end: u64) -> Result<(Vec<u8>, u64), DumpError> {
        let pid = self.pid;
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
            .ok_or_else(|| self.unsupported("a vdso without a syscall instruction".into()))?;
        Ok((vdso_digest, syscall_at))
    }

    pub(super) fn dump_memory(
        &self,
        vmas: &[Vma],
        space: u32,
        writer: &mut ImageWriter,
    ) -> Result<(), DumpError> {
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
        let mut ranges = Vec::new();
        let chunk_len = CHUNK_BYTES as u64;
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
                // Saved once, as a space of its own.
                VmaKind::SharedAnonymous if vma.space.is_some() => continue,
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
            // Anonymous memory is mapped fresh at restore, and reads as
            // zeros where the image holds nothing: its zero pages need not
            // be stored. A private file mapping's must (without them the
            // file's content would show through).
            let zero_sparse = matches!(vma.kind, VmaKind::Anonymous | VmaKind::SharedAnonymous);
            for &(start, end) in &ranges {
                let mut addr = start.max(vma.start);
                let end = end.min(vma.end);
                while addr < end {
                    self.check_cancel()?;
                    let len = (end - addr).min(chunk_len);
                    // Read straight into the writer's buffers, piece by
                    // piece.
                    let chunk = addr;
                    let fill = |off: u64, piece: &mut [u8]| {
                        let addr = chunk + off;
                        let n = piece.len();
                        if readable {
                            let got = sys::vm_read(pid, addr, piece)
                                .map_err(|errno| DumpError::Memory { pid, addr, errno })?;
                            if got != n {
                                return Err(DumpError::Memory {
                                    pid,
                                    addr: addr + got as u64,
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
                        Ok(())
                    };
                    if zero_sparse {
                        writer.write_zero_sparse_chunk_with(space, chunk, len, fill)?;
                    } else {
                        writer.write_chunk_with(space, chunk, len, fill)?;
                    }
                    addr += len;
                }
            }
        }
        Ok(())
    }
}

/// The mm layout for `PR_SET_MM_MAP`: `/proc/PID/stat`'s fields, the
/// current break (asked of the task) and the auxv.
pub(super) fn layout(stat: &procfs::stat::Stat, brk: u64, auxv: Vec<u64>) -> MmLayout {
    MmLayout {
        start_code: stat.start_code,
        end_code: stat.end_code,
        start_data: stat.start_data,
        end_data: stat.end_data,
        start_brk: stat.start_brk,
        brk,
        start_stack: stat.start_stack,
        arg_start: stat.arg_start,
        arg_end: stat.arg_end,
        env_start: stat.env_start,
        env_end: stat.env_end,
        auxv,
    }
}

/// The current program break, asked of the task.
pub(super) fn query_brk(inj: &mut Injector<'_>) -> Result<u64, InjectError> {
    inj.syscall("brk", libc::SYS_brk, [0; 6])
}
