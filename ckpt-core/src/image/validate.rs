//! Semantic validation of a decoded manifest: the one definition of a
//! well-formed image, used by every reader.
//!
//! Owns: the rules a manifest must follow beyond decoding: addresses,
//! alignment and order of mappings, where each chunk lands, indexes between
//! lists, counts, sizes of saved registers and signal data, and strings that
//! become C strings. Trusts: nothing; pure (no I/O, no allocation beyond the
//! error message).
//!
//! [`ImageReader`](super::ImageReader) runs it on every image it opens, so
//! `verify`, `inspect`, `explain` and `restore` accept exactly the same
//! images, and a manifest that breaks a rule is "tampered or malformed"
//! everywhere. What an image needs that this machine or this version cannot
//! give (another architecture, a CPU feature) is not
//! malformation: restore decides that, later.

use std::fmt;

use super::manifest::{DigestAlgorithm, Manifest};
use crate::limits::{
    MAX_AUXV_WORDS, MAX_FDS, MAX_GROUPS, MAX_IMAGE_STRING_LEN, MAX_ITIMERS, MAX_PENDING_SIGNALS,
    MAX_RLIMITS, MAX_ROBUST_FUTEXES, MAX_SIGACTIONS, MAX_THREADS, MAX_VMAS, MAX_VM_FLAGS,
    MAX_XSAVE_LEN, MIN_MAP_ADDR, MIN_XSAVE_LEN,
};
use crate::model::{OpenFileKind, ProcessState, ThreadState, VmaKind, TIMERFD_CLOCKS};
use crate::sys::{SIGINFO_SIZE, USER_ADDR_END};

const PAGE: u64 = 4096;
/// `PROT_READ | PROT_WRITE | PROT_EXEC`.
const PROT_MASK: u32 = 0x7;
/// The comm name the kernel keeps is 16 bytes; allow some room.
const MAX_COMM_LEN: usize = 64;
/// Longest `VmFlags` mnemonic (the kernel's are two letters).
const MAX_VM_FLAG_LEN: usize = 8;

/// A manifest that breaks a rule: which field (a path into the manifest,
/// with the address where there is one) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Invalid {
    /// Where, e.g. `process.vmas[3] 0x7f00..0x7f10`.
    pub field: String,
    /// What, e.g. `overlaps the previous mapping`.
    pub problem: String,
}

fn invalid(field: impl fmt::Display, problem: impl fmt::Display) -> Invalid {
    Invalid {
        field: field.to_string(),
        problem: problem.to_string(),
    }
}

/// Checks every rule; the first broken one is the error.
pub fn validate(m: &Manifest) -> Result<(), Invalid> {
    let digest_len = match m.digest_algorithm {
        DigestAlgorithm::Sha256 => DigestAlgorithm::Sha256.digest_len(),
    };
    text("kernel_release", &m.kernel_release, MAX_COMM_LEN * 4)?;
    text("arch", &m.arch, MAX_COMM_LEN)?;
    text("host.hostname", &m.host.hostname, MAX_COMM_LEN * 4)?;
    digest("vdso_digest", &m.vdso_digest, digest_len)?;
    count("requester.groups", m.requester.groups.len(), MAX_GROUPS)?;
    let p = &m.process;
    process(p, digest_len)?;
    vmas(p)?;
    chunks(m)?;
    files(p, digest_len)?;
    threads(m)?;
    signals_and_limits(p)
}

fn count(field: &str, n: usize, max: usize) -> Result<(), Invalid> {
    if n > max {
        return Err(invalid(field, format!("{n} entries, at most {max}")));
    }
    Ok(())
}

/// A string that is printed or passed to the kernel as a C string.
fn text(field: impl fmt::Display, s: &str, max: usize) -> Result<(), Invalid> {
    if s.len() > max {
        return Err(invalid(
            field,
            format!("{} bytes long, at most {max}", s.len()),
        ));
    }
    if s.as_bytes().contains(&0) {
        return Err(invalid(field, "contains a NUL byte"));
    }
    Ok(())
}

/// An absolute path.
fn path(field: impl fmt::Display, s: &str) -> Result<(), Invalid> {
    text(&field, s, MAX_IMAGE_STRING_LEN)?;
    if !s.starts_with('/') {
        return Err(invalid(field, "is not an absolute path"));
    }
    Ok(())
}

fn digest(field: impl fmt::Display, d: &[u8], len: usize) -> Result<(), Invalid> {
    if d.len() != len {
        return Err(invalid(
            field,
            format!("digest is {} bytes, the algorithm's are {len}", d.len()),
        ));
    }
    Ok(())
}

fn process(p: &ProcessState, digest_len: usize) -> Result<(), Invalid> {
    if p.pid <= 0 {
        return Err(invalid("process.pid", format!("{} is not a pid", p.pid)));
    }
    text("process.comm", &p.comm, MAX_COMM_LEN)?;
    path("process.cwd", &p.cwd)?;
    path("process.exe.path", &p.exe.path)?;
    digest("process.exe.digest", &p.exe.digest, digest_len)?;
    count("process.creds.groups", p.creds.groups.len(), MAX_GROUPS)?;
    if p.creds.seccomp_mode > 2 {
        return Err(invalid(
            "process.creds.seccomp_mode",
            format!("{} is not a seccomp mode", p.creds.seccomp_mode),
        ));
    }
    if !(-1000..=1000).contains(&p.oom_score_adj) {
        return Err(invalid(
            "process.oom_score_adj",
            format!("{} is outside -1000..=1000", p.oom_score_adj),
        ));
    }
    if !(0..=64).contains(&p.pdeathsig) {
        return Err(invalid(
            "process.pdeathsig",
            format!("{} is not a signal number (0..=64)", p.pdeathsig),
        ));
    }
    let auxv = p.mm.auxv.len();
    if auxv > MAX_AUXV_WORDS || !auxv.is_multiple_of(2) {
        return Err(invalid(
            "process.mm.auxv",
            format!("{auxv} words: not pairs, or more than {MAX_AUXV_WORDS}"),
        ));
    }
    Ok(())
}

fn vmas(p: &ProcessState) -> Result<(), Invalid> {
    count("process.vmas", p.vmas.len(), MAX_VMAS)?;
    let mut prev_end = MIN_MAP_ADDR;
    let mut specials = [false; 3];
    for (i, v) in p.vmas.iter().enumerate() {
        let at = || format!("process.vmas[{i}] {:#x}..{:#x}", v.start, v.end);
        if v.start % PAGE != 0 || v.end % PAGE != 0 || v.offset % PAGE != 0 {
            return Err(invalid(at(), "start, end or offset is not page-aligned"));
        }
        if v.start >= v.end {
            return Err(invalid(at(), "is empty or ends before it starts"));
        }
        if v.start < prev_end {
            return Err(invalid(
                at(),
                if prev_end == MIN_MAP_ADDR {
                    format!("starts below {MIN_MAP_ADDR:#x}")
                } else {
                    format!("overlaps or precedes the previous mapping (ending at {prev_end:#x})")
                },
            ));
        }
        if v.kind != VmaKind::Vsyscall && v.end > USER_ADDR_END {
            return Err(invalid(at(), "lies outside user address space"));
        }
        if v.prot & !PROT_MASK != 0 {
            return Err(invalid(
                at(),
                format!("protection {:#x} is not rwx", v.prot),
            ));
        }
        match (v.kind, v.file) {
            (VmaKind::File, Some(f)) if (f as usize) < p.mapped_files.len() => {}
            (VmaKind::File, Some(f)) => {
                return Err(invalid(
                    at(),
                    format!(
                        "names mapped file {f}, but there are {}",
                        p.mapped_files.len()
                    ),
                ))
            }
            (VmaKind::File, None) => return Err(invalid(at(), "is a file mapping with no file")),
            (_, Some(_)) => return Err(invalid(at(), "names a file but is not a file mapping")),
            (_, None) => {}
        }
        let special = match v.kind {
            VmaKind::Vdso => Some(0),
            VmaKind::Vvar => Some(1),
            VmaKind::VvarVclock => Some(2),
            _ => None,
        };
        if let Some(s) = special {
            if std::mem::replace(&mut specials[s], true) {
                return Err(invalid(at(), format!("a second {:?} mapping", v.kind)));
            }
        }
        text(format_args!("{}.name", at()), &v.name, MAX_IMAGE_STRING_LEN)?;
        count(
            &format!("{}.vm_flags", at()),
            v.vm_flags.len(),
            MAX_VM_FLAGS,
        )?;
        for f in &v.vm_flags {
            let ok = !f.is_empty()
                && f.len() <= MAX_VM_FLAG_LEN
                && f.bytes().all(|b| b.is_ascii_alphanumeric());
            if !ok {
                return Err(invalid(
                    format_args!("{}.vm_flags", at()),
                    "a flag is not a short alphanumeric mnemonic",
                ));
            }
        }
        prev_end = v.end;
    }
    Ok(())
}

/// Every chunk lands inside one mapping whose memory restore fills (private
/// or shared anonymous, or a private file mapping), page-aligned, in
/// increasing address order without overlap.
fn chunks(m: &Manifest) -> Result<(), Invalid> {
    let vmas = &m.process.vmas;
    let mut vi = 0;
    let mut prev_end = 0u64;
    for (i, c) in m.chunks.iter().enumerate() {
        let at = || format!("chunks[{i}] at {:#x} ({} bytes)", c.vaddr, c.len);
        let end = c
            .vaddr
            .checked_add(c.len)
            .ok_or_else(|| invalid(at(), "address range overflows"))?;
        if c.vaddr % PAGE != 0 || c.len % PAGE != 0 {
            return Err(invalid(at(), "is not page-aligned"));
        }
        if c.vaddr < prev_end {
            return Err(invalid(at(), "overlaps or precedes the previous chunk"));
        }
        while vi < vmas.len() && vmas[vi].end <= c.vaddr {
            vi += 1;
        }
        let fits = vmas.get(vi).is_some_and(|v| {
            v.start <= c.vaddr
                && end <= v.end
                && matches!(
                    v.kind,
                    VmaKind::Anonymous | VmaKind::SharedAnonymous | VmaKind::File
                )
                && !(v.kind == VmaKind::File && v.shared)
        });
        if !fits {
            return Err(invalid(
                at(),
                "lies outside every mapping whose memory is saved",
            ));
        }
        prev_end = end;
    }
    Ok(())
}

/// The name of a description created anew at restore (never opened).
fn anonymous(i: usize, name: &str) -> Result<(), Invalid> {
    text(
        format_args!("process.descriptions[{i}].path"),
        name,
        MAX_IMAGE_STRING_LEN,
    )
}

fn files(p: &ProcessState, digest_len: usize) -> Result<(), Invalid> {
    count("process.mapped_files", p.mapped_files.len(), MAX_VMAS)?;
    for (i, f) in p.mapped_files.iter().enumerate() {
        path(format_args!("process.mapped_files[{i}].path"), &f.path)?;
        digest(
            format_args!("process.mapped_files[{i}].digest"),
            &f.digest,
            digest_len,
        )?;
    }
    count("process.fds", p.fds.len(), MAX_FDS)?;
    count("process.descriptions", p.descriptions.len(), MAX_FDS)?;
    for (i, d) in p.descriptions.iter().enumerate() {
        match &d.kind {
            // Not a path: what the fd was connected to, shown to the user.
            OpenFileKind::External { connected_to } => {
                text(
                    format_args!("process.descriptions[{i}].kind.connected_to"),
                    connected_to,
                    MAX_IMAGE_STRING_LEN,
                )?;
                text(
                    format_args!("process.descriptions[{i}].path"),
                    &d.path,
                    MAX_IMAGE_STRING_LEN,
                )?;
            }
            // Created anew at restore: the path is the kernel's name of
            // it, shown to the user, never opened.
            OpenFileKind::Eventfd { count, .. } => {
                anonymous(i, &d.path)?;
                if *count == u64::MAX {
                    return Err(invalid(
                        format!("process.descriptions[{i}].kind.count"),
                        "is above an eventfd's largest value",
                    ));
                }
            }
            OpenFileKind::Signalfd { .. } => anonymous(i, &d.path)?,
            OpenFileKind::Timerfd { clockid, .. } => {
                anonymous(i, &d.path)?;
                if !TIMERFD_CLOCKS.contains(clockid) {
                    return Err(invalid(
                        format!("process.descriptions[{i}].kind.clockid"),
                        format!("is clock {clockid}, not REALTIME, MONOTONIC or BOOTTIME"),
                    ));
                }
            }
            _ => path(format_args!("process.descriptions[{i}].path"), &d.path)?,
        }
    }
    let mut seen = std::collections::HashSet::with_capacity(p.fds.len());
    for (i, fd) in p.fds.iter().enumerate() {
        let at = || format!("process.fds[{i}] (fd {})", fd.fd);
        if fd.fd < 0 {
            return Err(invalid(at(), "is negative"));
        }
        if !seen.insert(fd.fd) {
            return Err(invalid(at(), "appears twice"));
        }
        if fd.description as usize >= p.descriptions.len() {
            return Err(invalid(
                at(),
                format!(
                    "names description {}, but there are {}",
                    fd.description,
                    p.descriptions.len()
                ),
            ));
        }
        let external = p
            .descriptions
            .get(fd.description as usize)
            .is_some_and(|d| matches!(d.kind, OpenFileKind::External { .. }));
        if external && fd.fd > 2 {
            return Err(invalid(
                at(),
                "is connected outside the image (External), which only fds 0-2 may be",
            ));
        }
    }
    Ok(())
}

/// The thread list: at least one, at most [`MAX_THREADS`]; the first is
/// the leader, whose tid is the pid; the others follow in increasing tid
/// order (so every tid is unique), each positive and not the leader's.
fn threads(m: &Manifest) -> Result<(), Invalid> {
    let p = &m.process;
    if p.threads.is_empty() {
        return Err(invalid("process.threads", "no thread"));
    }
    count("process.threads", p.threads.len(), MAX_THREADS)?;
    let mut prev = 0;
    for (i, t) in p.threads.iter().enumerate() {
        let at = || format!("process.threads[{i}] (tid {})", t.tid);
        if i == 0 && t.tid != p.pid {
            return Err(invalid(
                at(),
                format!("the leader's tid is not the pid {}", p.pid),
            ));
        }
        if i > 0 && (t.tid <= prev || t.tid == p.pid) {
            return Err(invalid(
                at(),
                "tids must be positive, unique, and in increasing order after the leader's",
            ));
        }
        if i > 0 {
            prev = t.tid;
        }
        thread(i, t, m.cpu.xsave_size)?;
        thread_addresses(i, t, p)?;
    }
    Ok(())
}

/// Whether `len` bytes at `addr` lie in one writable mapping (`vmas` are
/// sorted and disjoint: checked before).
fn in_writable_vma(p: &ProcessState, addr: u64, len: u64) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    let i = p.vmas.partition_point(|v| v.end <= addr);
    p.vmas
        .get(i)
        .is_some_and(|v| v.start <= addr && end <= v.end && v.prot & 0x2 != 0)
}

/// The addresses restore writes a new tid to: the cached tid and the
/// robust futexes' lock words (and glibc's `__owner` after them), each
/// 4-byte aligned in a writable mapping.
fn thread_addresses(i: usize, t: &ThreadState, p: &ProcessState) -> Result<(), Invalid> {
    text(format_args!("process.threads[{i}].name"), &t.name, 15)?;
    if t.cached_tid_at != 0
        && (!t.cached_tid_at.is_multiple_of(4) || !in_writable_vma(p, t.cached_tid_at, 4))
    {
        return Err(invalid(
            format_args!("process.threads[{i}].cached_tid_at {:#x}", t.cached_tid_at),
            "is not an aligned word of a writable mapping",
        ));
    }
    count(
        &format!("process.threads[{i}].robust_futexes"),
        t.robust_futexes.len(),
        MAX_ROBUST_FUTEXES,
    )?;
    for (j, f) in t.robust_futexes.iter().enumerate() {
        let len = if f.glibc_owner { 12 } else { 4 };
        if !f.lock.is_multiple_of(4) || !in_writable_vma(p, f.lock, len) {
            return Err(invalid(
                format_args!("process.threads[{i}].robust_futexes[{j}] {:#x}", f.lock),
                "is not an aligned lock word of a writable mapping",
            ));
        }
    }
    if i > 0 && t.pending.iter().any(|s| s.shared) {
        return Err(invalid(
            format_args!("process.threads[{i}].pending"),
            "holds a signal queued to the whole process (only the leader's may)",
        ));
    }
    Ok(())
}

fn thread(i: usize, t: &ThreadState, xsave_size: u32) -> Result<(), Invalid> {
    let n = t.xsave.len();
    if !(MIN_XSAVE_LEN..=MAX_XSAVE_LEN).contains(&n) {
        return Err(invalid(
            format_args!("process.threads[{i}].xsave"),
            format!("{n} bytes, not within {MIN_XSAVE_LEN}..={MAX_XSAVE_LEN}"),
        ));
    }
    if n as u64 != u64::from(xsave_size) {
        return Err(invalid(
            format_args!("process.threads[{i}].xsave"),
            format!("{n} bytes, but cpu.xsave_size says {xsave_size}"),
        ));
    }
    count(
        &format!("process.threads[{i}].pending"),
        t.pending.len(),
        MAX_PENDING_SIGNALS,
    )?;
    for (j, s) in t.pending.iter().enumerate() {
        let at = || format!("process.threads[{i}].pending[{j}]");
        if s.siginfo.len() != SIGINFO_SIZE {
            return Err(invalid(
                at(),
                format!("siginfo is {} bytes, not {SIGINFO_SIZE}", s.siginfo.len()),
            ));
        }
        let signo = u32::from_ne_bytes([s.siginfo[0], s.siginfo[1], s.siginfo[2], s.siginfo[3]]);
        if signo == 0 || signo > 64 {
            return Err(invalid(at(), format!("signal {signo} is not a signal")));
        }
    }
    Ok(())
}

fn signals_and_limits(p: &ProcessState) -> Result<(), Invalid> {
    count("process.sigactions", p.sigactions.len(), MAX_SIGACTIONS)?;
    let mut seen = 0u64;
    for (i, a) in p.sigactions.iter().enumerate() {
        let at = || format!("process.sigactions[{i}] (signal {})", a.signal);
        // SIGKILL (9) and SIGSTOP (19) cannot have a disposition.
        if a.signal == 0 || a.signal > 64 || a.signal == 9 || a.signal == 19 {
            return Err(invalid(at(), "is not a signal that can be caught"));
        }
        let bit = 1u64 << (a.signal - 1);
        if seen & bit != 0 {
            return Err(invalid(at(), "appears twice"));
        }
        seen |= bit;
    }
    count("process.rlimits", p.rlimits.len(), MAX_RLIMITS)?;
    count("process.itimers", p.itimers.len(), MAX_ITIMERS)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::image::tests::sample_manifest;
    use crate::model::{FdState, PendingSignal, SigAction, Vma};

    fn sample() -> Manifest {
        sample_manifest()
    }

    /// `edit` makes the sample invalid, and the error names `field`.
    fn refused(edit: impl FnOnce(&mut Manifest), field: &str) {
        let mut m = sample();
        edit(&mut m);
        match validate(&m) {
            Ok(()) => panic!("accepted; expected a complaint about {field}"),
            Err(e) => assert!(
                e.field.starts_with(field),
                "complaint about {:?} ({}), expected {field}",
                e.field,
                e.problem
            ),
        }
    }

    fn vma(m: &mut Manifest, i: usize) -> &mut Vma {
        &mut m.process.vmas[i]
    }

    #[test]
    fn the_sample_is_valid() {
        validate(&sample()).unwrap();
    }

    #[test]
    fn process_settings() {
        refused(|m| m.process.oom_score_adj = 1001, "process.oom_score_adj");
        refused(|m| m.process.oom_score_adj = -1001, "process.oom_score_adj");
        refused(|m| m.process.pdeathsig = 65, "process.pdeathsig");
        refused(|m| m.process.pdeathsig = -1, "process.pdeathsig");
        let mut m = sample();
        m.process.oom_score_adj = -1000;
        m.process.pdeathsig = 64;
        m.process.child_subreaper = true;
        validate(&m).unwrap();
    }

    #[test]
    fn mappings() {
        let heap = "process.vmas[1] 0x500000..0x521000";
        refused(|m| vma(m, 1).start = 0x400000, "process.vmas[1] 0x400000");
        refused(|m| vma(m, 1).start = 0x500800, "process.vmas[1] 0x500800");
        refused(
            |m| vma(m, 1).end = 0x500000,
            "process.vmas[1] 0x500000..0x500000",
        );
        refused(|m| vma(m, 1).offset = 12, heap);
        refused(|m| vma(m, 0).start = 0x1000, "process.vmas[0] 0x1000");
        refused(
            |m| vma(m, 2).end = 0x8000_0000_0000,
            "process.vmas[2] 0x7ffc00000000..0x800000000000",
        );
        refused(|m| vma(m, 1).prot = 0x10, heap);
        refused(|m| vma(m, 0).file = Some(1), "process.vmas[0]");
        refused(|m| vma(m, 0).file = None, "process.vmas[0]");
        refused(|m| vma(m, 1).file = Some(0), heap);
        refused(
            |m| {
                vma(m, 1).kind = VmaKind::Vdso;
                vma(m, 2).kind = VmaKind::Vdso;
            },
            "process.vmas[2]",
        );
        refused(|m| vma(m, 1).name = "a\0b".into(), heap);
        refused(|m| vma(m, 1).vm_flags = vec!["rd".into(); 65], heap);
        refused(|m| vma(m, 1).vm_flags = vec![String::new()], heap);
        refused(|m| vma(m, 1).vm_flags = vec!["r\0".into()], heap);
        refused(
            |m| m.process.vmas = vec![m.process.vmas[0].clone(); MAX_VMAS + 1],
            "process.vmas",
        );
        // Swapped order is an overlap too.
        refused(|m| m.process.vmas.swap(1, 2), "process.vmas[2]");
    }

    #[test]
    fn chunks_must_land_in_a_saved_mapping() {
        refused(|m| m.chunks[1].vaddr = 0x600000, "chunks[1] at 0x600000");
        refused(|m| m.chunks[1].vaddr = 0x520000 + 4096, "chunks[1]");
        refused(|m| m.chunks[1].len = 0x22000, "chunks[1]");
        refused(|m| m.chunks[1].vaddr = 0x500010, "chunks[1]");
        refused(|m| m.chunks[1].len = 100, "chunks[1]");
        refused(|m| m.chunks[2].vaddr = u64::MAX - 4095, "chunks[2]");
        refused(|m| m.chunks.swap(1, 2), "chunks[2]");
        refused(
            |m| {
                let c = m.chunks[1].clone();
                m.chunks.insert(1, c);
            },
            "chunks[2]",
        );
        // Not into a shared file mapping (its content is the file's).
        refused(|m| vma(m, 0).shared = true, "chunks[0]");
        // Not into the vdso.
        refused(|m| vma(m, 1).kind = VmaKind::Vdso, "chunks[1]");
    }

    #[test]
    fn files_and_descriptors() {
        refused(
            |m| m.process.mapped_files[0].path = "relative".into(),
            "process.mapped_files[0].path",
        );
        refused(
            |m| m.process.mapped_files[0].digest = vec![1; 31],
            "process.mapped_files[0].digest",
        );
        refused(
            |m| m.process.exe.path = "/bin/\0x".into(),
            "process.exe.path",
        );
        refused(|m| m.process.exe.digest.clear(), "process.exe.digest");
        refused(|m| m.process.cwd = "/".repeat(5000), "process.cwd");
        refused(
            |m| m.process.descriptions[0].path = String::new(),
            "process.descriptions[0].path",
        );
        refused(|m| m.process.fds[0].fd = -1, "process.fds[0] (fd -1)");
        refused(
            |m| m.process.fds[0].description = 1,
            "process.fds[0] (fd 0)",
        );
        refused(
            |m| {
                m.process.fds.push(FdState {
                    fd: 0,
                    description: 0,
                    cloexec: true,
                })
            },
            "process.fds[1] (fd 0)",
        );
    }

    #[test]
    fn anonymous_descriptors_are_checked() {
        let set = |m: &mut Manifest, kind: OpenFileKind| {
            m.process.descriptions[0].kind = kind;
            m.process.descriptions[0].path = "anon_inode:[timerfd]".into();
        };
        let timer = |clockid| OpenFileKind::Timerfd {
            clockid,
            value_ns: 1,
            interval_ns: 0,
            ticks: 0,
            settime_flags: 0,
        };
        for kind in [
            OpenFileKind::Eventfd {
                count: u64::MAX - 1,
                semaphore: true,
            },
            OpenFileKind::Signalfd { sigmask: u64::MAX },
            timer(libc::CLOCK_MONOTONIC),
            timer(libc::CLOCK_BOOTTIME),
        ] {
            let mut m = sample();
            set(&mut m, kind.clone());
            assert_eq!(validate(&m).map_err(|e| e.field), Ok(()), "{kind:?}");
        }
        refused(
            |m| {
                set(
                    m,
                    OpenFileKind::Eventfd {
                        count: u64::MAX,
                        semaphore: false,
                    },
                )
            },
            "process.descriptions[0].kind.count",
        );
        for clock in [
            libc::CLOCK_REALTIME_ALARM,
            libc::CLOCK_PROCESS_CPUTIME_ID,
            -1,
        ] {
            refused(
                |m| set(m, timer(clock)),
                "process.descriptions[0].kind.clockid",
            );
        }
        refused(
            |m| {
                set(m, OpenFileKind::Signalfd { sigmask: 0 });
                m.process.descriptions[0].path = "a".repeat(5000);
            },
            "process.descriptions[0].path",
        );
    }

    #[test]
    fn external_descriptors_only_on_fds_0_to_2() {
        let external = |m: &mut Manifest, fd: i32| {
            m.process.descriptions[0].kind = OpenFileKind::External {
                connected_to: "pipe:[12345]".into(),
            };
            m.process.descriptions[0].path = "pipe:[12345]".into();
            m.process.fds[0].fd = fd;
        };
        for fd in 0..=2 {
            let mut m = sample();
            external(&mut m, fd);
            assert_eq!(validate(&m).map_err(|e| e.field), Ok(()), "fd {fd}");
        }
        refused(|m| external(m, 3), "process.fds[0] (fd 3)");
        refused(|m| external(m, 5), "process.fds[0] (fd 5)");
        refused(
            |m| {
                external(m, 1);
                m.process.descriptions[0].kind = OpenFileKind::External {
                    connected_to: "a\0b".into(),
                };
            },
            "process.descriptions[0].kind.connected_to",
        );
        // Not External: the path must still be absolute.
        refused(
            |m| m.process.descriptions[0].path = "pipe:[1]".into(),
            "process.descriptions[0].path",
        );
    }

    #[test]
    fn threads_registers_and_signals() {
        refused(|m| m.process.threads.clear(), "process.threads");
        refused(
            |m| m.process.threads[0].xsave = vec![0; 64],
            "process.threads[0].xsave",
        );
        refused(|m| m.cpu.xsave_size = 1024, "process.threads[0].xsave");
        refused(
            |m| {
                m.process.threads[0].xsave = vec![0; MAX_XSAVE_LEN + 1];
                m.cpu.xsave_size = (MAX_XSAVE_LEN + 1) as u32;
            },
            "process.threads[0].xsave",
        );
        let pending = |siginfo: Vec<u8>| PendingSignal {
            shared: false,
            siginfo,
        };
        refused(
            |m| m.process.threads[0].pending = vec![pending(vec![10; 64])],
            "process.threads[0].pending[0]",
        );
        refused(
            |m| m.process.threads[0].pending = vec![pending(vec![0; 128])],
            "process.threads[0].pending[0]",
        );
        let mut ok = sample();
        let mut info = vec![0; 128];
        info[0] = 10;
        ok.process.threads[0].pending = vec![pending(info)];
        validate(&ok).unwrap();

        let action = |signal| SigAction {
            signal,
            handler: 0,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        for bad in [0, 9, 19, 65] {
            refused(
                |m| m.process.sigactions = vec![action(bad)],
                "process.sigactions[0]",
            );
        }
        refused(
            |m| m.process.sigactions = vec![action(10), action(10)],
            "process.sigactions[1] (signal 10)",
        );
        refused(
            |m| m.process.rlimits = vec![m.process.rlimits[0]; 17],
            "process.rlimits",
        );
    }

    #[test]
    fn other_fields() {
        refused(|m| m.process.pid = 0, "process.pid");
        refused(|m| m.process.comm = "c".repeat(65), "process.comm");
        refused(|m| m.process.mm.auxv.push(1), "process.mm.auxv");
        refused(
            |m| m.process.creds.seccomp_mode = 3,
            "process.creds.seccomp_mode",
        );
        refused(
            |m| m.process.creds.groups = vec![1; MAX_GROUPS + 1],
            "process.creds.groups",
        );
        refused(
            |m| {
                m.vdso_digest.pop();
            },
            "vdso_digest",
        );
        refused(|m| m.kernel_release.push('\0'), "kernel_release");
        // Another architecture or several threads are not malformation:
        // restore decides whether it can run them.
        let mut other = sample();
        other.arch = "aarch64".into();
        let mut t = other.process.threads[0].clone();
        t.tid += 1;
        t.name = "worker".into();
        other.process.threads.push(t);
        validate(&other).unwrap();
    }

    #[test]
    fn thread_list() {
        let two = |m: &mut Manifest| {
            let mut t = m.process.threads[0].clone();
            t.tid += 10;
            m.process.threads.push(t);
        };
        refused(|m| m.process.threads[0].tid += 1, "process.threads[0]");
        refused(
            |m| {
                two(m);
                m.process.threads[1].tid = m.process.pid;
            },
            "process.threads[1]",
        );
        refused(
            |m| {
                two(m);
                let t = m.process.threads[1].clone();
                m.process.threads.push(t);
            },
            "process.threads[2]",
        );
        refused(
            |m| {
                two(m);
                m.process.threads[1].tid = -5;
            },
            "process.threads[1]",
        );
        refused(
            |m| {
                two(m);
                m.process.threads[1].xsave.push(0);
            },
            "process.threads[1].xsave",
        );
        refused(
            |m| m.process.threads[0].name = "sixteen-bytes-xx".into(),
            "process.threads[0].name",
        );
        refused(
            |m| m.process.threads[0].cached_tid_at = 0x10,
            "process.threads[0].cached_tid_at",
        );
        refused(
            |m| {
                m.process.threads[0].robust_futexes = vec![crate::model::RobustFutex {
                    lock: 0x10,
                    glibc_owner: false,
                }]
            },
            "process.threads[0].robust_futexes[0]",
        );
        refused(
            |m| {
                two(m);
                m.process.threads[1].pending = vec![crate::model::PendingSignal {
                    shared: true,
                    siginfo: {
                        let mut b = vec![0u8; 128];
                        b[0] = 10;
                        b
                    },
                }];
            },
            "process.threads[1].pending",
        );
    }

    #[test]
    fn limits_agree_with_the_dump() {
        assert_eq!(MAX_PENDING_SIGNALS, 2 * crate::dump::MAX_PENDING);
    }
}
