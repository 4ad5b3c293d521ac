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
//! give (another architecture, several threads, a CPU feature) is not
//! malformation: restore decides that, later.

use std::fmt;

use super::manifest::{DigestAlgorithm, Manifest};
use crate::limits::{
    MAX_AUXV_WORDS, MAX_EPOLL_TARGETS, MAX_FDS, MAX_FILE_LOCKS, MAX_GROUPS, MAX_IMAGE_STRING_LEN,
    MAX_INOTIFY_WATCHES, MAX_INOTIFY_WD, MAX_ITIMERS, MAX_LISTEN_BACKLOG, MAX_PENDING_SIGNALS,
    MAX_PIPE_SIZE, MAX_POSIX_TIMERS, MAX_QUEUED_BYTES, MAX_RLIMITS, MAX_SECCOMP_INSNS,
    MAX_SECCOMP_INSNS_PER_FILTER, MAX_SIGACTIONS, MAX_SOCKET_MESSAGES, MAX_SOCKET_QUEUE,
    MAX_THREADS, MAX_UNIX_NAME, MAX_VMAS, MAX_VM_FLAGS, MAX_XSAVE_LEN, MIN_MAP_ADDR, MIN_XSAVE_LEN,
    PIPE_PACKET_MAX,
};
use crate::model::{
    EpollTarget, InotifyWatch, LockKind, OpenFile, OpenFileKind, ProcessState, ThreadState,
    VmaKind, INOTIFY_MASK_BITS, POSIX_TIMER_CLOCKS, POSIX_TIMER_NOTIFY, SIGEV_THREAD_ID,
    TIMERFD_CLOCKS,
};
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
    if p.cwd_deleted && p.cwd.trim_end_matches('/').is_empty() {
        return Err(invalid(
            "process.cwd",
            "a removed working directory needs a parent",
        ));
    }
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

/// Why restore could not bind a unix socket to `name` again, if it could
/// not: an absolute path or `@` and an abstract name, printable text
/// without NUL, at most [`MAX_UNIX_NAME`] bytes besides the `@`. The dump
/// refuses such a socket with the same words.
pub fn unix_name_problem(name: &str) -> Option<String> {
    let (body, abstract_) = match name.strip_prefix('@') {
        Some(rest) => (rest, true),
        None => (name, false),
    };
    if !abstract_ && !name.starts_with('/') {
        return Some("not an absolute path".into());
    }
    if body.contains('\0') || body.contains('\u{fffd}') {
        return Some("holds a NUL or bytes that are not UTF-8".into());
    }
    if body.len() > MAX_UNIX_NAME || body.is_empty() {
        return Some(format!(
            "{} bytes long, not 1 to {MAX_UNIX_NAME}",
            body.len()
        ));
    }
    if !abstract_ && (name.contains("/../") || name.ends_with("/..")) {
        return Some("a path with ..".into());
    }
    None
}

/// A unix socket connected to nothing: a known type, a name restore can
/// bind again, a backlog only on a listening type and within
/// [`MAX_LISTEN_BACKLOG`].
fn unix_socket(
    i: usize,
    sock_type: i32,
    name: Option<&str>,
    backlog: Option<u32>,
) -> Result<(), Invalid> {
    let at = |f: &str| format!("process.descriptions[{i}].kind.{f}");
    if ![libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_SEQPACKET].contains(&sock_type) {
        return Err(invalid(
            at("sock_type"),
            format!("is {sock_type}, not SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET"),
        ));
    }
    if let Some(problem) = name.and_then(unix_name_problem) {
        return Err(invalid(at("name"), problem));
    }
    if let Some(b) = backlog {
        if sock_type == libc::SOCK_DGRAM {
            return Err(invalid(at("backlog"), "is set on a datagram socket"));
        }
        if b > MAX_LISTEN_BACKLOG {
            return Err(invalid(
                at("backlog"),
                format!("is {b}, above {MAX_LISTEN_BACKLOG}"),
            ));
        }
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
            OpenFileKind::Epoll { targets } => {
                anonymous(i, &d.path)?;
                epoll_targets(i, targets, p.descriptions.len())?;
            }
            OpenFileKind::Inotify { watches } => {
                anonymous(i, &d.path)?;
                inotify_watches(i, watches)?;
            }
            OpenFileKind::Pipe { .. } | OpenFileKind::UnixPair { .. } => {
                anonymous(i, &d.path)?;
                queued(p, i)?;
            }
            OpenFileKind::UnixSocket {
                sock_type,
                name,
                backlog,
                ..
            } => {
                anonymous(i, &d.path)?;
                unix_socket(i, *sock_type, name.as_deref(), *backlog)?;
            }
            OpenFileKind::Fifo { .. } => {
                path(format_args!("process.descriptions[{i}].path"), &d.path)?;
                queued(p, i)?;
            }
            _ => path(format_args!("process.descriptions[{i}].path"), &d.path)?,
        }
        file_locks(i, d)?;
    }
    let total = |f: fn(&OpenFile) -> usize| p.descriptions.iter().map(f).sum::<usize>();
    count(
        "process.descriptions[*].kind.targets",
        total(|d| match &d.kind {
            OpenFileKind::Epoll { targets } => targets.len(),
            _ => 0,
        }),
        MAX_EPOLL_TARGETS,
    )?;
    count(
        "process.descriptions[*].kind.watches",
        total(|d| match &d.kind {
            OpenFileKind::Inotify { watches } => watches.len(),
            _ => 0,
        }),
        MAX_INOTIFY_WATCHES,
    )?;
    count(
        "process.descriptions[*].locks",
        total(|d| d.locks.len()),
        MAX_FILE_LOCKS,
    )?;
    queued_total(p)?;
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
    }
    Ok(())
}

/// An epoll's entries: each names another description, under an fd
/// number.
fn epoll_targets(i: usize, targets: &[EpollTarget], n: usize) -> Result<(), Invalid> {
    count(
        &format!("process.descriptions[{i}].kind.targets"),
        targets.len(),
        MAX_EPOLL_TARGETS,
    )?;
    for (j, t) in targets.iter().enumerate() {
        let at = || format!("process.descriptions[{i}].kind.targets[{j}]");
        if t.fd < 0 {
            return Err(invalid(at(), format!("fd {} is negative", t.fd)));
        }
        if t.description as usize >= n {
            return Err(invalid(
                at(),
                format!("names description {}, but there are {n}", t.description),
            ));
        }
        if t.description as usize == i {
            return Err(invalid(at(), "names the epoll itself"));
        }
    }
    Ok(())
}

/// A pipe, FIFO or unix socket pair description `i`: sizes within the
/// limits, and the other descriptions it is restored with consistent
/// (one read and one write end per pipe; a socket's peer in the image,
/// connected back, of the same type).
fn queued(p: &ProcessState, i: usize) -> Result<(), Invalid> {
    let ds = &p.descriptions;
    let d = &ds[i];
    let at = |what: &str| format!("process.descriptions[{i}].{what}");
    let mode = d.flags as i32 & libc::O_ACCMODE;
    match &d.kind {
        OpenFileKind::Pipe { size, data, .. } | OpenFileKind::Fifo { size, data } => {
            let fifo = matches!(d.kind, OpenFileKind::Fifo { .. });
            if *size as usize > MAX_PIPE_SIZE || (*size as usize) < data.0.len() {
                return Err(invalid(
                    at("kind.size"),
                    format!(
                        "is {size} bytes, holding {} (at most {MAX_PIPE_SIZE}, and at least \
                         what it holds)",
                        data.0.len()
                    ),
                ));
            }
            if fifo {
                return Ok(());
            }
            if mode != libc::O_RDONLY && mode != libc::O_WRONLY {
                return Err(invalid(
                    at("flags"),
                    "is neither a pipe's read nor write end",
                ));
            }
            if mode == libc::O_WRONLY && !data.0.is_empty() {
                return Err(invalid(at("kind.data"), "is on a pipe's write end"));
            }
            if let OpenFileKind::Pipe { packets, .. } = &d.kind {
                let page = PIPE_PACKET_MAX as u32;
                let sum: u64 = packets.iter().map(|&n| u64::from(n)).sum();
                if !packets.is_empty()
                    && (packets.iter().any(|&n| n == 0 || n > page) || sum != data.0.len() as u64)
                {
                    return Err(invalid(
                        at("kind.packets"),
                        format!(
                            "are not packets of 1 to {page} bytes adding up to the {} bytes \
                             queued",
                            data.0.len()
                        ),
                    ));
                }
            }
        }
        OpenFileKind::UnixPair {
            sock_type,
            queue,
            shutdown,
            ..
        } => {
            if ![libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_SEQPACKET].contains(sock_type) {
                return Err(invalid(
                    at("kind.sock_type"),
                    format!("is {sock_type}, not SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET"),
                ));
            }
            if *shutdown > 3 {
                return Err(invalid(
                    at("kind.shutdown"),
                    format!("is {shutdown}, above 3"),
                ));
            }
            count(&at("kind.queue"), queue.len(), MAX_SOCKET_MESSAGES)?;
            let bytes: usize = queue.iter().map(|q| q.0.len()).sum();
            if bytes > MAX_SOCKET_QUEUE {
                return Err(invalid(
                    at("kind.queue"),
                    format!("holds {bytes} bytes, at most {MAX_SOCKET_QUEUE}"),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// An inotify's watches: wds increasing from 1, a mask of events and the
/// two flags the kernel keeps, an absolute path.
fn inotify_watches(i: usize, watches: &[InotifyWatch]) -> Result<(), Invalid> {
    count(
        &format!("process.descriptions[{i}].kind.watches"),
        watches.len(),
        MAX_INOTIFY_WATCHES,
    )?;
    let mut prev = 0;
    for (j, w) in watches.iter().enumerate() {
        let at = || format!("process.descriptions[{i}].kind.watches[{j}]");
        if w.wd <= prev || w.wd > MAX_INOTIFY_WD {
            return Err(invalid(
                at(),
                format!(
                    "wd {} is not above the previous one ({prev}) and at most {MAX_INOTIFY_WD}",
                    w.wd
                ),
            ));
        }
        prev = w.wd;
        if w.mask & !INOTIFY_MASK_BITS != 0 || w.mask & 0xfff == 0 {
            return Err(invalid(
                at(),
                format!(
                    "mask {:#x} is not a set of inotify events and flags",
                    w.mask
                ),
            ));
        }
        path(format!("{}.path", at()), &w.path)?;
    }
    Ok(())
}

/// Locks: only on files and directories; a range within `off_t`; flock
/// on the whole file.
fn file_locks(i: usize, d: &OpenFile) -> Result<(), Invalid> {
    if d.locks.is_empty() {
        return Ok(());
    }
    count(
        &format!("process.descriptions[{i}].locks"),
        d.locks.len(),
        MAX_FILE_LOCKS,
    )?;
    if !matches!(d.kind, OpenFileKind::Regular | OpenFileKind::Directory) {
        return Err(invalid(
            format!("process.descriptions[{i}].locks"),
            "locks on a description that is not a file or directory",
        ));
    }
    let max = i64::MAX as u64;
    for (j, l) in d.locks.iter().enumerate() {
        let at = || format!("process.descriptions[{i}].locks[{j}]");
        let ok = match (l.kind, l.end) {
            (LockKind::Flock, end) => l.start == 0 && end.is_none(),
            (_, None) => l.start <= max,
            (_, Some(end)) => l.start <= end && end <= max,
        };
        if !ok {
            return Err(invalid(
                at(),
                format!("range {}..{:?} is not a lock's", l.start, l.end),
            ));
        }
    }
    Ok(())
}

/// All bytes queued in pipes, FIFOs and sockets together; each pipe end
/// held by one description; each socket by one description, its peer one
/// other socket of the same type in the image, connected back to it.
fn queued_total(p: &ProcessState) -> Result<(), Invalid> {
    use std::collections::HashMap;
    let ds = &p.descriptions;
    let mut ends = HashMap::new();
    let mut sockets = HashMap::new();
    for (i, d) in ds.iter().enumerate() {
        let at = |what: &str| format!("process.descriptions[{i}].{what}");
        match &d.kind {
            OpenFileKind::Pipe { .. } => {
                let mode = d.flags as i32 & libc::O_ACCMODE;
                if ends.insert((d.dev, d.ino, mode), i).is_some() {
                    return Err(invalid(
                        at("flags"),
                        "names the same end of a pipe as another description",
                    ));
                }
            }
            OpenFileKind::UnixPair { .. } if sockets.insert(d.ino, i).is_some() => {
                return Err(invalid(
                    at("ino"),
                    "names a socket held by two descriptions",
                ));
            }
            _ => {}
        }
    }
    for (i, d) in ds.iter().enumerate() {
        let OpenFileKind::UnixPair {
            sock_type,
            peer_ino,
            ..
        } = &d.kind
        else {
            continue;
        };
        if *peer_ino == 0 {
            // Its peer was closed before the dump.
            continue;
        }
        let back = sockets.get(peer_ino).and_then(|&j| {
            let e = ds.get(j)?;
            match &e.kind {
                OpenFileKind::UnixPair {
                    sock_type: t,
                    peer_ino: back,
                    ..
                } if j != i && t == sock_type && *back == d.ino => Some(()),
                _ => None,
            }
        });
        if back.is_none() {
            return Err(invalid(
                format!("process.descriptions[{i}].kind.peer_ino"),
                "does not name one other socket of the same type in the image connected back \
                 to it",
            ));
        }
    }
    let total: usize = p
        .descriptions
        .iter()
        .map(|d| match &d.kind {
            OpenFileKind::Pipe { data, .. } | OpenFileKind::Fifo { data, .. } => data.0.len(),
            OpenFileKind::UnixPair { queue, .. } => queue.iter().map(|q| q.0.len()).sum(),
            _ => 0,
        })
        .sum();
    if total > MAX_QUEUED_BYTES {
        return Err(invalid(
            "process.descriptions",
            format!("hold {total} queued bytes in pipes and sockets, at most {MAX_QUEUED_BYTES}"),
        ));
    }
    Ok(())
}

fn threads(m: &Manifest) -> Result<(), Invalid> {
    let p = &m.process;
    if p.threads.is_empty() {
        return Err(invalid("process.threads", "no thread"));
    }
    count("process.threads", p.threads.len(), MAX_THREADS)?;
    for (i, t) in p.threads.iter().enumerate() {
        thread(i, t, m.cpu.xsave_size)?;
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
    posix_timers(p)?;
    seccomp(p)?;
    sched(p)
}

/// The seccomp chain matches the mode: filters exactly in filter mode (2),
/// strict mode (1) never (dump refuses it); each program 1..=4096
/// instructions, the chain within the kernel's 32768 (4 counted per
/// filter).
fn seccomp(p: &ProcessState) -> Result<(), Invalid> {
    let filters = &p.seccomp_filters;
    match (p.creds.seccomp_mode, filters.is_empty()) {
        (0, true) | (2, false) => {}
        (mode, _) => {
            return Err(invalid(
                "process.seccomp_filters",
                format!(
                    "{} filters with seccomp mode {mode} (filters go with mode 2 only)",
                    filters.len()
                ),
            ))
        }
    }
    let mut total = 0usize;
    for (i, f) in filters.iter().enumerate() {
        let n = f.program.len();
        if n == 0 || n > MAX_SECCOMP_INSNS_PER_FILTER {
            return Err(invalid(
                format_args!("process.seccomp_filters[{i}]"),
                format!("{n} instructions, not within 1..={MAX_SECCOMP_INSNS_PER_FILTER}"),
            ));
        }
        total = total.saturating_add(n).saturating_add(4);
        if total > MAX_SECCOMP_INSNS {
            return Err(invalid(
                format_args!("process.seccomp_filters[{i}]"),
                format!("the chain exceeds {MAX_SECCOMP_INSNS} instructions"),
            ));
        }
    }
    Ok(())
}

/// Scheduling attributes `sched_setattr` can take.
fn sched(p: &ProcessState) -> Result<(), Invalid> {
    let Some(s) = &p.sched else { return Ok(()) };
    let ok = match s.policy {
        0 | 3 | 5 => s.priority == 0,
        1 | 2 => (1..=99).contains(&s.priority),
        6 => s.priority == 0 && s.runtime_ns <= s.deadline_ns,
        _ => false,
    } && (-20..=19).contains(&s.nice);
    if !ok {
        return Err(invalid(
            "process.sched",
            format!(
                "policy {} with priority {} and nice {} is not a scheduling setting",
                s.policy, s.priority, s.nice
            ),
        ));
    }
    Ok(())
}

/// POSIX timers: ids increasing (each once), a clock and notification
/// `timer_create` takes, a signal number, and a thread of the process for
/// one that signals a thread.
fn posix_timers(p: &ProcessState) -> Result<(), Invalid> {
    count(
        "process.posix_timers",
        p.posix_timers.len(),
        MAX_POSIX_TIMERS,
    )?;
    let mut last: Option<i32> = None;
    for (i, t) in p.posix_timers.iter().enumerate() {
        let at = || format!("process.posix_timers[{i}] (timer {})", t.id);
        if t.id < 0 || last.is_some_and(|l| t.id <= l) {
            return Err(invalid(at(), "ids must be non-negative and increasing"));
        }
        last = Some(t.id);
        if !POSIX_TIMER_CLOCKS.contains(&t.clockid) {
            return Err(invalid(at(), format!("clock {} is not allowed", t.clockid)));
        }
        if !POSIX_TIMER_NOTIFY.contains(&t.notify) {
            return Err(invalid(
                at(),
                format!("sigev_notify {} is not allowed", t.notify),
            ));
        }
        let signals = t.notify != 1;
        if !(0..=64).contains(&t.signo) || (signals && t.signo == 0) {
            return Err(invalid(at(), format!("signal {} is not a signal", t.signo)));
        }
        let to_thread = t.notify & SIGEV_THREAD_ID != 0;
        if to_thread != (t.tid != 0) {
            return Err(invalid(
                at(),
                "a thread is named exactly when the signal goes to a thread",
            ));
        }
        if to_thread && !p.threads.iter().any(|th| th.tid == t.tid) {
            return Err(invalid(
                at(),
                format!("signals thread {}, which is not in the image", t.tid),
            ));
        }
        if t.overrun < 0 {
            return Err(invalid(at(), format!("overrun {} is negative", t.overrun)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::image::tests::sample_manifest;
    use crate::model::{FdState, FileLock, PendingSignal, SigAction, Vma};

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
    fn posix_timers() {
        use crate::model::PosixTimer;
        let tid = sample().process.threads[0].tid;
        let timer = |id| PosixTimer {
            id,
            clockid: 1,
            notify: 4,
            signo: 34,
            value: 7,
            tid,
            value_ns: 5,
            interval_ns: 0,
            overrun: 0,
        };
        let mut m = sample();
        m.process.posix_timers = vec![timer(0), timer(3)];
        validate(&m).unwrap();
        let with = |edit: fn(&mut Vec<PosixTimer>)| {
            move |m: &mut Manifest| {
                m.process.posix_timers = vec![timer(0), timer(3)];
                edit(&mut m.process.posix_timers);
            }
        };
        refused(with(|t| t[1].id = 0), "process.posix_timers[1]");
        refused(with(|t| t[0].id = -1), "process.posix_timers[0]");
        refused(with(|t| t[0].clockid = 4), "process.posix_timers[0]");
        refused(with(|t| t[0].clockid = -14), "process.posix_timers[0]");
        refused(with(|t| t[0].notify = 2), "process.posix_timers[0]");
        refused(with(|t| t[0].signo = 65), "process.posix_timers[0]");
        refused(with(|t| t[0].tid = 0), "process.posix_timers[0]");
        refused(with(|t| t[0].tid += 1), "process.posix_timers[0]");
        refused(with(|t| t[0].notify = 0), "process.posix_timers[0]");
        refused(with(|t| t[1].overrun = -1), "process.posix_timers[1]");
        refused(
            |m| m.process.posix_timers = (0..=MAX_POSIX_TIMERS as i32).map(timer).collect(),
            "process.posix_timers",
        );
    }

    #[test]
    fn seccomp_and_sched() {
        use crate::model::{Sched, SeccompFilter};
        let allow = SeccompFilter {
            program: vec![0x7fff_0000_0000_0006],
            log: false,
        };
        let mut m = sample();
        m.process.creds.seccomp_mode = 2;
        m.process.seccomp_filters = vec![allow.clone(), allow.clone()];
        m.process.sched = Some(Sched {
            policy: 3,
            reset_on_fork: true,
            nice: 7,
            priority: 0,
            runtime_ns: 0,
            deadline_ns: 0,
            period_ns: 0,
        });
        validate(&m).unwrap();
        let a = allow.clone();
        refused(
            move |m| m.process.seccomp_filters = vec![a],
            "process.seccomp_filters",
        );
        refused(
            |m| {
                m.process.creds.seccomp_mode = 2;
                m.process.seccomp_filters = vec![SeccompFilter {
                    program: vec![],
                    log: false,
                }];
            },
            "process.seccomp_filters[0]",
        );
        let a = allow.clone();
        refused(
            move |m| {
                m.process.creds.seccomp_mode = 2;
                m.process.seccomp_filters = vec![a; MAX_SECCOMP_INSNS / 5 + 1];
            },
            "process.seccomp_filters[",
        );
        refused(
            |m| {
                m.process.creds.seccomp_mode = 1;
            },
            "process.seccomp_filters",
        );
        let sched = |policy, priority, nice| {
            move |m: &mut Manifest| {
                m.process.sched = Some(Sched {
                    policy,
                    reset_on_fork: false,
                    nice,
                    priority,
                    runtime_ns: 0,
                    deadline_ns: 0,
                    period_ns: 0,
                })
            }
        };
        refused(sched(4, 0, 0), "process.sched");
        refused(sched(1, 0, 0), "process.sched");
        refused(sched(0, 5, 0), "process.sched");
        refused(sched(0, 0, 20), "process.sched");
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

    /// The sample with `kinds` as its descriptions (dev 1, ino from the
    /// tuple), each held by one fd from 3 up.
    fn with_descriptions(kinds: Vec<(OpenFileKind, u32, u64)>) -> Manifest {
        let mut m = sample();
        m.process.fds.clear();
        m.process.descriptions.clear();
        for (i, (kind, flags, ino)) in kinds.into_iter().enumerate() {
            m.process.descriptions.push(crate::model::OpenFile {
                kind,
                path: format!("pipe:[{ino}]"),
                flags,
                offset: 0,
                dev: 1,
                ino,
                locks: Vec::new(),
            });
            m.process.fds.push(FdState {
                fd: 3 + i as i32,
                description: i as u32,
                cloexec: false,
            });
        }
        m
    }

    #[test]
    fn pipes_and_socket_pairs() {
        use crate::model::ByteString;
        let pipe = |size: u32, data: &[u8]| OpenFileKind::Pipe {
            size,
            data: ByteString(data.to_vec()),
            packets: Vec::new(),
        };
        let packets = |p: Vec<u32>| OpenFileKind::Pipe {
            size: 65536,
            data: ByteString(b"abcd".to_vec()),
            packets: p,
        };
        validate(&with_descriptions(vec![(packets(vec![1, 3]), 0, 7)])).unwrap();
        for bad in [vec![4, 0], vec![1, 2], vec![5000]] {
            assert_eq!(
                validate(&with_descriptions(vec![(packets(bad), 0, 7)]))
                    .unwrap_err()
                    .field,
                "process.descriptions[0].kind.packets"
            );
        }
        let unix = |ty: i32, peer: u64, queue: Vec<Vec<u8>>| OpenFileKind::UnixPair {
            sock_type: ty,
            peer_ino: peer,
            queue: queue.into_iter().map(ByteString).collect(),
            shutdown: 0,
            sndbuf: 0,
            passcred: false,
        };
        let check = |kinds| validate(&with_descriptions(kinds));
        // Good: a pipe with its data on the read end, a stream pair.
        check(vec![
            (pipe(65536, b"abc"), 0, 7),
            (pipe(65536, b""), 1, 7),
            (unix(libc::SOCK_STREAM, 9, vec![b"x".to_vec()]), 2, 8),
            (unix(libc::SOCK_STREAM, 8, vec![]), 2, 9),
        ])
        .unwrap();
        let field = |kinds| check(kinds).unwrap_err().field;
        // More data than the pipe holds, an absurd size, data on the write end.
        assert_eq!(
            field(vec![(pipe(2, b"abc"), 0, 7)]),
            "process.descriptions[0].kind.size"
        );
        assert_eq!(
            field(vec![(pipe(u32::MAX, b""), 0, 7)]),
            "process.descriptions[0].kind.size"
        );
        assert_eq!(
            field(vec![(pipe(4096, b"a"), 1, 7)]),
            "process.descriptions[0].kind.data"
        );
        // Two read ends of one pipe; a pipe end opened read-write.
        assert_eq!(
            field(vec![(pipe(4096, b""), 0, 7), (pipe(4096, b""), 0, 7)]),
            "process.descriptions[1].flags"
        );
        assert_eq!(
            field(vec![(pipe(4096, b""), 2, 7)]),
            "process.descriptions[0].flags"
        );
        // A socket whose peer was closed (peer_ino 0) needs no peer.
        check(vec![(
            unix(libc::SOCK_STREAM, 0, vec![b"x".to_vec()]),
            2,
            8,
        )])
        .unwrap();
        // Sockets connected to nothing: good ones, then a bad type, an
        // absurd backlog, a backlog on a datagram socket, names too long,
        // relative, with a NUL.
        let lone = |ty: i32, name: Option<&str>, backlog: Option<u32>| OpenFileKind::UnixSocket {
            sock_type: ty,
            name: name.map(str::to_string),
            backlog,
            sndbuf: 0,
            passcred: false,
        };
        check(vec![
            (
                lone(libc::SOCK_STREAM, Some("/run/app.sock"), Some(4096)),
                2,
                8,
            ),
            (lone(libc::SOCK_SEQPACKET, Some("@app"), Some(0)), 2, 9),
            (lone(libc::SOCK_DGRAM, Some("/tmp/d"), None), 2, 10),
            (lone(libc::SOCK_DGRAM, None, None), 2, 11),
            (
                lone(
                    libc::SOCK_STREAM,
                    Some(&format!("/{}", "a".repeat(106))),
                    None,
                ),
                2,
                12,
            ),
        ])
        .unwrap();
        let long = format!("/{}", "a".repeat(107));
        let long_abstract = format!("@{}", "a".repeat(108));
        for (bad, at) in [
            (lone(libc::SOCK_RAW, None, None), "sock_type"),
            (lone(99, Some("/x"), None), "sock_type"),
            (
                lone(libc::SOCK_STREAM, Some("/x"), Some(u32::MAX)),
                "backlog",
            ),
            (lone(libc::SOCK_DGRAM, Some("/x"), Some(1)), "backlog"),
            (lone(libc::SOCK_STREAM, Some(&long), None), "name"),
            (lone(libc::SOCK_STREAM, Some(&long_abstract), None), "name"),
            (lone(libc::SOCK_STREAM, Some("@"), None), "name"),
            (lone(libc::SOCK_STREAM, Some("run/app.sock"), None), "name"),
            (lone(libc::SOCK_STREAM, Some("/a\0b"), None), "name"),
            (lone(libc::SOCK_STREAM, Some("/a/../b"), None), "name"),
        ] {
            assert_eq!(
                field(vec![(bad, 2, 8)]),
                format!("process.descriptions[0].kind.{at}")
            );
        }
        // A socket whose peer is missing, of another type, not connected
        // back, or itself; an unknown type; two descriptions of one socket.
        assert_eq!(
            field(vec![(unix(libc::SOCK_STREAM, 9, vec![]), 2, 8)]),
            "process.descriptions[0].kind.peer_ino"
        );
        assert_eq!(
            field(vec![
                (unix(libc::SOCK_STREAM, 9, vec![]), 2, 8),
                (unix(libc::SOCK_DGRAM, 8, vec![]), 2, 9)
            ]),
            "process.descriptions[0].kind.peer_ino"
        );
        assert_eq!(
            field(vec![
                (unix(libc::SOCK_DGRAM, 9, vec![]), 2, 8),
                (unix(libc::SOCK_DGRAM, 10, vec![]), 2, 9),
                (unix(libc::SOCK_DGRAM, 9, vec![]), 2, 10)
            ]),
            "process.descriptions[0].kind.peer_ino"
        );
        assert_eq!(
            field(vec![(unix(libc::SOCK_DGRAM, 8, vec![]), 2, 8)]),
            "process.descriptions[0].kind.peer_ino"
        );
        assert_eq!(
            field(vec![(unix(libc::SOCK_RAW, 9, vec![]), 2, 8)]),
            "process.descriptions[0].kind.sock_type"
        );
        assert_eq!(
            field(vec![
                (unix(libc::SOCK_DGRAM, 9, vec![]), 2, 8),
                (unix(libc::SOCK_DGRAM, 8, vec![]), 2, 9),
                (unix(libc::SOCK_DGRAM, 8, vec![]), 2, 9)
            ]),
            "process.descriptions[2].ino"
        );
        // Queues above the limits.
        assert_eq!(
            field(vec![
                (
                    unix(libc::SOCK_DGRAM, 9, vec![vec![]; MAX_SOCKET_MESSAGES + 1]),
                    2,
                    8
                ),
                (unix(libc::SOCK_DGRAM, 8, vec![]), 2, 9)
            ]),
            "process.descriptions[0].kind.queue"
        );
        assert_eq!(
            field(vec![
                (
                    unix(libc::SOCK_STREAM, 9, vec![vec![0; MAX_SOCKET_QUEUE + 1]]),
                    2,
                    8
                ),
                (unix(libc::SOCK_STREAM, 8, vec![]), 2, 9)
            ]),
            "process.descriptions[0].kind.queue"
        );
        let full = || vec![0u8; MAX_SOCKET_QUEUE];
        assert_eq!(
            field(vec![
                (unix(libc::SOCK_STREAM, 9, vec![full()]), 2, 8),
                (unix(libc::SOCK_STREAM, 8, vec![full()]), 2, 9),
                (pipe(MAX_PIPE_SIZE as u32, &[0u8; 64]), 0, 7)
            ]),
            "process.descriptions"
        );
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
            |m| {
                m.process.cwd = "/".into();
                m.process.cwd_deleted = true;
            },
            "process.cwd",
        );
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

    /// The sample with a second description: an epoll at fd 1 watching
    /// the first (a regular file here; restore would fail on it, which is
    /// not malformation), or an inotify.
    fn with_second(m: &mut Manifest, kind: OpenFileKind) {
        let mut d = m.process.descriptions[0].clone();
        d.kind = kind;
        d.path = "anon_inode:[eventpoll]".into();
        m.process.descriptions.push(d);
        m.process.fds.push(FdState {
            fd: 1,
            description: 1,
            cloexec: false,
        });
    }

    fn epoll(fd: i32, description: u32) -> OpenFileKind {
        OpenFileKind::Epoll {
            targets: vec![EpollTarget {
                fd,
                description,
                events: 0x4000_0000,
                data: 7,
            }],
        }
    }

    fn inotify(watches: &[(i32, u32, &str)]) -> OpenFileKind {
        OpenFileKind::Inotify {
            watches: watches
                .iter()
                .map(|&(wd, mask, path)| InotifyWatch {
                    wd,
                    mask,
                    path: path.into(),
                })
                .collect(),
        }
    }

    #[test]
    fn epoll_inotify_and_locks_are_checked() {
        let mut m = sample();
        with_second(&mut m, epoll(9, 0));
        assert_eq!(validate(&m).map_err(|e| e.field), Ok(()));
        let mut m = sample();
        with_second(&mut m, inotify(&[(1, 0x100, "/a"), (5, 0x8000_0002, "/b")]));
        assert_eq!(validate(&m).map_err(|e| e.field), Ok(()));
        refused(
            |m| with_second(m, epoll(-1, 0)),
            "process.descriptions[1].kind.targets[0]",
        );
        refused(
            |m| with_second(m, epoll(3, 2)),
            "process.descriptions[1].kind.targets[0]",
        );
        refused(
            |m| with_second(m, epoll(3, 1)),
            "process.descriptions[1].kind.targets[0]",
        );
        for bad in [
            inotify(&[(0, 0x100, "/a")]),
            inotify(&[(2, 0x100, "/a"), (2, 0x100, "/b")]),
            inotify(&[(3, 0x100, "/a"), (2, 0x100, "/b")]),
            inotify(&[(MAX_INOTIFY_WD + 1, 0x100, "/a")]),
            inotify(&[(1, 0, "/a")]),
            inotify(&[(1, 0x0100_0100, "/a")]),
            inotify(&[(1, 0x8000_0000, "/a")]),
        ] {
            refused(
                |m| with_second(m, bad.clone()),
                "process.descriptions[1].kind.watches[",
            );
        }
        refused(
            |m| with_second(m, inotify(&[(1, 0x100, "relative")])),
            "process.descriptions[1].kind.watches[0].path",
        );

        let lock = |kind, start, end| FileLock {
            kind,
            write: true,
            start,
            end,
        };
        let with_lock = |m: &mut Manifest, l: FileLock| {
            m.process.descriptions[0].kind = OpenFileKind::Regular;
            m.process.descriptions[0].locks = vec![l];
        };
        for ok in [
            lock(LockKind::Flock, 0, None),
            lock(LockKind::Posix, 10, Some(19)),
            lock(LockKind::Ofd, 5, Some(5)),
            lock(LockKind::Posix, i64::MAX as u64, None),
        ] {
            let mut m = sample();
            with_lock(&mut m, ok);
            assert_eq!(validate(&m).map_err(|e| e.field), Ok(()), "{ok:?}");
        }
        for bad in [
            lock(LockKind::Flock, 1, None),
            lock(LockKind::Flock, 0, Some(9)),
            lock(LockKind::Posix, 10, Some(9)),
            lock(LockKind::Ofd, 0, Some(u64::MAX)),
            lock(LockKind::Posix, u64::MAX, None),
        ] {
            refused(|m| with_lock(m, bad), "process.descriptions[0].locks[0]");
        }
        // Locks only on what restore reopens as a file or directory.
        refused(
            |m| m.process.descriptions[0].locks = vec![lock(LockKind::Flock, 0, None)],
            "process.descriptions[0].locks",
        );
    }

    #[test]
    fn external_descriptors_on_any_fd_with_a_printable_name() {
        let external = |m: &mut Manifest, fd: i32| {
            m.process.descriptions[0].kind = OpenFileKind::External {
                connected_to: "pipe:[12345]".into(),
            };
            m.process.descriptions[0].path = "pipe:[12345]".into();
            m.process.fds[0].fd = fd;
        };
        // Any fd: 0-2 become the caller's, others the caller's inherited
        // fd or /dev/null.
        for fd in [0, 1, 2, 3, 5, 251] {
            let mut m = sample();
            external(&mut m, fd);
            assert_eq!(validate(&m).map_err(|e| e.field), Ok(()), "fd {fd}");
        }
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
        let t = other.process.threads[0].clone();
        other.process.threads.push(t);
        validate(&other).unwrap();
    }

    #[test]
    fn limits_agree_with_the_dump() {
        assert_eq!(MAX_PENDING_SIGNALS, 2 * crate::dump::MAX_PENDING);
    }
}
