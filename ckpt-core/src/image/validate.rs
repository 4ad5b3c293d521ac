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

use super::digest::ChunkDigest;
use super::manifest::{Compression, DigestAlgorithm, Manifest, Space};
use crate::limits::{
    MAX_AUXV_WORDS, MAX_EPOLL_TARGETS, MAX_FDS, MAX_FILES, MAX_FILE_LOCKS, MAX_GROUPS,
    MAX_IMAGE_STRING_LEN, MAX_INOTIFY_WATCHES, MAX_INOTIFY_WD, MAX_ITIMERS, MAX_LISTEN_BACKLOG,
    MAX_PENDING_SIGNALS, MAX_PIPE_SIZE, MAX_POSIX_TIMERS, MAX_QUEUED_BYTES, MAX_RLIMITS,
    MAX_ROBUST_FUTEXES, MAX_SECCOMP_INSNS, MAX_SECCOMP_INSNS_PER_FILTER, MAX_SIGACTIONS,
    MAX_SOCKET_MESSAGES, MAX_SOCKET_QUEUE, MAX_SPACES, MAX_TASKS, MAX_THREADS, MAX_UNIX_NAME,
    MAX_VMAS, MAX_VM_FLAGS, MAX_XSAVE_LEN, MIN_MAP_ADDR, MIN_XSAVE_LEN, PIPE_PACKET_MAX,
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
    // Every chunk digest algorithm has 32-byte digests; the reader checks
    // each chunk's digest length against it before this runs.
    match m.chunk_digest {
        None | Some(ChunkDigest::Blake3) => {}
    }
    text("kernel_release", &m.kernel_release, MAX_COMM_LEN * 4)?;
    text("arch", &m.arch, MAX_COMM_LEN)?;
    text("host.hostname", &m.host.hostname, MAX_COMM_LEN * 4)?;
    digest("vdso_digest", &m.vdso_digest, digest_len)?;
    count("requester.groups", m.requester.groups.len(), MAX_GROUPS)?;
    tasks(m)?;
    for (i, p) in m.tasks.iter().enumerate() {
        let t = format!("tasks[{i}]");
        let t = t.as_str();
        process(t, p, digest_len)?;
        vmas(t, p, &m.spaces)?;
        mapped_files(t, p, digest_len)?;
        fds(t, p, &m.files)?;
        fds_of_parent(t, i, p, m)?;
        threads(t, p, m.cpu.xsave_size)?;
        signals_and_limits(t, p)?;
    }
    files(&m.files, &m.spaces)?;
    spaces(m)?;
    chunks(m)
}

/// The task list: at least one, pids and thread ids unique across all.
fn tasks(m: &Manifest) -> Result<(), Invalid> {
    if m.tasks.is_empty() {
        return Err(invalid("tasks", "no process"));
    }
    count("tasks", m.tasks.len(), MAX_TASKS)?;
    let mut pids = std::collections::HashSet::with_capacity(m.tasks.len());
    let mut tids = std::collections::HashSet::new();
    for (i, p) in m.tasks.iter().enumerate() {
        if !pids.insert(p.pid) {
            return Err(invalid(
                format_args!("tasks[{i}].pid"),
                format!("{} is the pid of an earlier task", p.pid),
            ));
        }
        for (j, th) in p.threads.iter().enumerate() {
            if !tids.insert(th.tid) {
                return Err(invalid(
                    format_args!("tasks[{i}].threads[{j}].tid"),
                    format!("{} appears twice", th.tid),
                ));
            }
        }
        // Every task but the root comes after its parent.
        if i > 0 && !m.tasks[..i].iter().any(|q| q.pid == p.ppid) {
            return Err(invalid(
                format_args!("tasks[{i}].ppid"),
                format!("{} is not the pid of an earlier task", p.ppid),
            ));
        }
    }
    count("zombies", m.tasks.len() + m.zombies.len(), MAX_TASKS)?;
    for (i, z) in m.zombies.iter().enumerate() {
        if z.pid <= 0 || !pids.insert(z.pid) || tids.contains(&z.pid) {
            return Err(invalid(
                format_args!("zombies[{i}].pid"),
                format!("{} is not a pid of its own", z.pid),
            ));
        }
        if !m.tasks.iter().any(|q| q.pid == z.ppid) {
            return Err(invalid(
                format_args!("zombies[{i}].ppid"),
                format!("{} is not the pid of a task", z.ppid),
            ));
        }
        if !(0..=0xffff).contains(&z.exit_status) || (z.exit_status & 0x7f) >= 65 {
            return Err(invalid(
                format_args!("zombies[{i}].exit_status"),
                format!("{:#x} is not a wait status", z.exit_status),
            ));
        }
        text(format_args!("zombies[{i}].comm"), &z.comm, MAX_COMM_LEN)?;
    }
    Ok(())
}

/// The byte spaces: each names something that exists, none twice.
fn spaces(m: &Manifest) -> Result<(), Invalid> {
    count("spaces", m.spaces.len(), MAX_SPACES)?;
    let mut memory_of = vec![false; m.tasks.len()];
    for (i, s) in m.spaces.iter().enumerate() {
        match s {
            Space::Memory { task } => {
                let seen = memory_of.get_mut(*task as usize).ok_or_else(|| {
                    invalid(
                        format_args!("spaces[{i}]"),
                        format!(
                            "is the memory of task {task}, but there are {}",
                            m.tasks.len()
                        ),
                    )
                })?;
                if std::mem::replace(seen, true) {
                    return Err(invalid(
                        format_args!("spaces[{i}]"),
                        format!("is the memory of task {task} a second time"),
                    ));
                }
            }
            Space::Memfd {
                name, seals, mode, ..
            } => {
                text(format_args!("spaces[{i}].name"), name, MAX_MEMFD_NAME)?;
                if mode.is_some_and(|m| m & !0o7777 != 0) {
                    return Err(invalid(
                        format_args!("spaces[{i}].mode"),
                        "has bits beyond the permission bits",
                    ));
                }
                if seals & !KNOWN_SEALS != 0 {
                    return Err(invalid(
                        format_args!("spaces[{i}].seals"),
                        format!("{seals:#x} has seals this version does not know"),
                    ));
                }
            }
            Space::Unlinked {
                path: p,
                mode,
                owner,
                ..
            } => {
                if owner.is_some_and(|(u, g)| u == u32::MAX || g == u32::MAX) {
                    return Err(invalid(
                        format_args!("spaces[{i}].owner"),
                        "is not a uid and gid (-1)",
                    ));
                }
                path(format_args!("spaces[{i}].path"), p)?;
                if p.len() < 2 || p.ends_with('/') {
                    return Err(invalid(
                        format_args!("spaces[{i}].path"),
                        "does not name a file in a directory",
                    ));
                }
                if mode & !0o7777 != 0 {
                    return Err(invalid(
                        format_args!("spaces[{i}].mode"),
                        format!("{mode:#o} is not permission bits"),
                    ));
                }
            }
            Space::Shmem { size } => {
                if size % PAGE != 0 || *size == 0 {
                    return Err(invalid(
                        format_args!("spaces[{i}].size"),
                        format!("{size} is not a positive number of pages"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE |
/// F_SEAL_FUTURE_WRITE | F_SEAL_EXEC`.
pub const KNOWN_SEALS: u32 = 0x3f;
/// Longest memfd name (the kernel's limit: 249 bytes).
const MAX_MEMFD_NAME: usize = 249;

fn count(field: impl fmt::Display, n: usize, max: usize) -> Result<(), Invalid> {
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

fn process(t: &str, p: &ProcessState, digest_len: usize) -> Result<(), Invalid> {
    if p.pid <= 0 {
        return Err(invalid(
            format_args!("{t}.pid"),
            format!("{} is not a pid", p.pid),
        ));
    }
    text(format_args!("{t}.comm"), &p.comm, MAX_COMM_LEN)?;
    path(format_args!("{t}.cwd"), &p.cwd)?;
    if p.cwd_deleted && p.cwd.trim_end_matches('/').is_empty() {
        return Err(invalid(
            format_args!("{t}.cwd"),
            "a removed working directory needs a parent",
        ));
    }
    path(format_args!("{t}.exe.path"), &p.exe.path)?;
    digest(format_args!("{t}.exe.digest"), &p.exe.digest, digest_len)?;
    count(
        format_args!("{t}.creds.groups"),
        p.creds.groups.len(),
        MAX_GROUPS,
    )?;
    if p.creds.seccomp_mode > 2 {
        return Err(invalid(
            format_args!("{t}.creds.seccomp_mode"),
            format!("{} is not a seccomp mode", p.creds.seccomp_mode),
        ));
    }
    if !(-1000..=1000).contains(&p.oom_score_adj) {
        return Err(invalid(
            format_args!("{t}.oom_score_adj"),
            format!("{} is outside -1000..=1000", p.oom_score_adj),
        ));
    }
    if !(0..=64).contains(&p.pdeathsig) {
        return Err(invalid(
            format_args!("{t}.pdeathsig"),
            format!("{} is not a signal number (0..=64)", p.pdeathsig),
        ));
    }
    let auxv = p.mm.auxv.len();
    if auxv > MAX_AUXV_WORDS || !auxv.is_multiple_of(2) {
        return Err(invalid(
            format_args!("{t}.mm.auxv"),
            format!("{auxv} words: not pairs, or more than {MAX_AUXV_WORDS}"),
        ));
    }
    Ok(())
}

fn vmas(t: &str, p: &ProcessState, spaces: &[Space]) -> Result<(), Invalid> {
    count(format_args!("{t}.vmas"), p.vmas.len(), MAX_VMAS)?;
    let mut prev_end = MIN_MAP_ADDR;
    let mut specials = [false; 3];
    for (i, v) in p.vmas.iter().enumerate() {
        let at = || format!("{t}.vmas[{i}] {:#x}..{:#x}", v.start, v.end);
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
            (VmaKind::File, None) => match v.space {
                Some(s)
                    if spaces
                        .get(s as usize)
                        .is_some_and(|s| s.file_size().is_some()) => {}
                Some(s) => {
                    return Err(invalid(
                        at(),
                        format!("names space {s}, which is not a file's content"),
                    ))
                }
                None => return Err(invalid(at(), "is a file mapping with no file")),
            },
            (_, Some(_)) => return Err(invalid(at(), "names a file but is not a file mapping")),
            (VmaKind::SharedAnonymous, None) => match v.space {
                None => {}
                Some(s) => match spaces.get(s as usize) {
                    Some(Space::Shmem { size })
                        if v.offset.saturating_add(v.end - v.start) <= *size => {}
                    _ => {
                        return Err(invalid(
                            at(),
                            format!("names space {s}, which is not shared memory it fits in"),
                        ))
                    }
                },
            },
            (_, None) if v.space.is_some() => {
                return Err(invalid(
                    at(),
                    "names a space but holds no file or shared memory",
                ))
            }
            (_, None) => {}
        }
        if v.file.is_some() && v.space.is_some() {
            return Err(invalid(at(), "names both a mapped file and a space"));
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
            format_args!("{}.vm_flags", at()),
            v.vm_flags.len(),
            MAX_VM_FLAGS,
        )?;
        if !v.vm_flags.all_mnemonics() {
            return Err(invalid(
                format_args!("{}.vm_flags", at()),
                "a flag is not a short alphanumeric mnemonic",
            ));
        }
        prev_end = v.end;
    }
    Ok(())
}

/// Chunks are sorted by space, then by address, without overlap; each
/// names a space that exists, and lands where that space's content is
/// saved: for a task's memory, inside one mapping whose memory restore
/// fills (private or shared anonymous, or a private file mapping),
/// page-aligned.
fn chunks(m: &Manifest) -> Result<(), Invalid> {
    let mut vi = 0;
    let mut prev: Option<(u32, u64)> = None;
    for (i, c) in m.chunks.iter().enumerate() {
        let at = || format!("chunks[{i}] at {}:{:#x} ({} bytes)", c.space, c.addr, c.len);
        let end = c
            .addr
            .checked_add(c.len)
            .ok_or_else(|| invalid(at(), "address range overflows"))?;
        match (c.stored, m.compression) {
            (None, _) => {}
            (Some(_), None) => {
                return Err(invalid(
                    at(),
                    "is compressed, but the manifest names no compression",
                ))
            }
            (Some(stored), Some(Compression::Lz4 | Compression::Lz4Blocks)) => {
                if u64::from(stored.get()) > crate::limits::MAX_CHUNK_LEN {
                    return Err(invalid(
                        at(),
                        format!("has a compressed length of {stored} bytes"),
                    ));
                }
            }
        }
        match prev {
            Some((space, _)) if c.space < space => {
                return Err(invalid(at(), "precedes the previous chunk's space"))
            }
            Some((space, prev_end)) if c.space == space && c.addr < prev_end => {
                return Err(invalid(at(), "overlaps or precedes the previous chunk"))
            }
            Some((space, _)) if c.space != space => vi = 0,
            _ => {}
        }
        let space = m.spaces.get(c.space as usize).ok_or_else(|| {
            invalid(
                at(),
                format!("names space {}, but there are {}", c.space, m.spaces.len()),
            )
        })?;
        match space {
            Space::Memory { task } => {
                if c.addr % PAGE != 0 || c.len % PAGE != 0 {
                    return Err(invalid(at(), "is not page-aligned"));
                }
                // `spaces` checked the task exists.
                let vmas = m
                    .tasks
                    .get(*task as usize)
                    .map(|p| p.vmas.as_slice())
                    .unwrap_or_default();
                while vi < vmas.len() && vmas[vi].end <= c.addr {
                    vi += 1;
                }
                let fits = vmas.get(vi).is_some_and(|v| {
                    v.start <= c.addr
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
            }
            Space::Memfd { size, .. } | Space::Unlinked { size, .. } | Space::Shmem { size } => {
                if end > *size {
                    return Err(invalid(at(), format!("ends past the file's size {size}")));
                }
            }
        }
        prev = Some((c.space, end));
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

/// Why restore could not bind a unix socket to the relative `name` from
/// the directory `dir` again, if it could not: one component of at most
/// [`MAX_UNIX_NAME`] bytes without NUL, in an absolute directory without
/// `..`. The dump refuses such a socket with the same words.
pub fn unix_relative_name_problem(dir: &str, name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_UNIX_NAME {
        return Some(format!(
            "{} bytes long, not 1 to {MAX_UNIX_NAME}",
            name.len()
        ));
    }
    if name.contains(['/', '\0', '\u{fffd}'])
        || name == "."
        || name == ".."
        || name.starts_with('@')
    {
        return Some("a relative name of more than one component, or with a NUL".into());
    }
    if !dir.starts_with('/')
        || dir.contains(['\0', '\u{fffd}'])
        || dir.len() > MAX_IMAGE_STRING_LEN
        || dir.split('/').any(|c| c == "..")
    {
        return Some(format!("bound in {dir:?}, not a plain absolute directory"));
    }
    None
}

/// A unix socket restored on its own: a known type, a name restore can
/// bind again (relative only with its directory), a backlog only on a
/// listening type and within [`MAX_LISTEN_BACKLOG`], a connection only to
/// a bound socket of the image (see [`unix_connections`]), datagrams
/// queued only on a datagram socket, within the limits.
fn unix_socket(
    i: usize,
    sock_type: i32,
    name: Option<&str>,
    backlog: Option<u32>,
    dir: Option<&str>,
    queue: &[crate::model::Datagram],
) -> Result<(), Invalid> {
    let at = |f: &str| format!("files[{i}].kind.{f}");
    match (dir, name) {
        (Some(_), None) => return Err(invalid(at("dir"), "is set on an unbound socket")),
        (Some(dir), Some(name)) => {
            if let Some(problem) = unix_relative_name_problem(dir, name) {
                return Err(invalid(at("name"), problem));
            }
        }
        _ => {
            if let Some(problem) = name.and_then(unix_name_problem) {
                return Err(invalid(at("name"), problem));
            }
        }
    }
    if !queue.is_empty() && (sock_type != libc::SOCK_DGRAM || name.is_none()) {
        return Err(invalid(
            at("queue"),
            "is set on a socket that is not a bound datagram socket",
        ));
    }
    count(at("queue"), queue.len(), MAX_SOCKET_MESSAGES)?;
    let bytes: usize = queue.iter().map(|q| q.data.0.len()).sum();
    if bytes > MAX_SOCKET_QUEUE {
        return Err(invalid(
            at("queue"),
            format!("holds {bytes} bytes, at most {MAX_SOCKET_QUEUE}"),
        ));
    }
    for (j, q) in queue.iter().enumerate() {
        if let Some(from) = &q.from {
            text(
                format!("files[{i}].kind.queue[{j}].from"),
                from,
                MAX_IMAGE_STRING_LEN,
            )?;
        }
    }
    unix_socket_type(i, sock_type, name, backlog)
}

/// A known type, a backlog only on a listening type.
fn unix_socket_type(
    i: usize,
    sock_type: i32,
    name: Option<&str>,
    backlog: Option<u32>,
) -> Result<(), Invalid> {
    let at = |f: &str| format!("files[{i}].kind.{f}");
    if ![libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_SEQPACKET].contains(&sock_type) {
        return Err(invalid(
            at("sock_type"),
            format!("is {sock_type}, not SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET"),
        ));
    }
    let _ = name;
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

/// What is wrong with `name` as an interface name for `SO_BINDTODEVICE`
/// (the kernel's `dev_valid_name`), if anything.
pub fn device_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Some(format!(
            "{} bytes long, not 1 to {}",
            name.len(),
            libc::IFNAMSIZ - 1
        ));
    }
    if name == "." || name == ".." || name.contains(['/', ':', '\0', '\u{fffd}']) {
        return Some("not a valid interface name".into());
    }
    if name.chars().any(char::is_whitespace) {
        return Some("holds white space".into());
    }
    None
}

/// A TCP or UDP socket: a known family and type, addresses of that
/// family with a port, a peer only for UDP, a backlog only for a bound
/// TCP socket and within [`MAX_LISTEN_BACKLOG`], each option only where
/// it applies, buffer sizes and `TCP_DEFER_ACCEPT` an int can hold.
fn inet_socket(i: usize, k: &OpenFileKind) -> Result<(), Invalid> {
    let OpenFileKind::InetSocket {
        family,
        sock_type,
        local,
        peer,
        backlog,
        options: o,
        dropped: _,
    } = k
    else {
        return Ok(());
    };
    let at = |f: &str| format!("files[{i}].kind.{f}");
    if ![libc::AF_INET, libc::AF_INET6].contains(family) {
        return Err(invalid(
            at("family"),
            format!("is {family}, not AF_INET or AF_INET6"),
        ));
    }
    let tcp = match *sock_type {
        libc::SOCK_STREAM => true,
        libc::SOCK_DGRAM => false,
        t => {
            return Err(invalid(
                at("sock_type"),
                format!("is {t}, not SOCK_STREAM (TCP) or SOCK_DGRAM (UDP)"),
            ))
        }
    };
    for (name, a) in [("local", local), ("peer", peer)] {
        let Some(a) = a else { continue };
        let ip =
            a.ip.parse::<std::net::IpAddr>()
                .map_err(|_| invalid(at(name), format!("{:?} is not an IP address", a.ip)))?;
        if ip.is_ipv4() != (*family == libc::AF_INET) {
            return Err(invalid(
                at(name),
                format!("{ip} is not an address of the socket's family"),
            ));
        }
        if a.port == 0 {
            return Err(invalid(at(name), "has port 0"));
        }
        if a.scope_id != 0 && ip.is_ipv4() {
            return Err(invalid(at(name), "has a scope id on an IPv4 address"));
        }
    }
    if tcp && peer.is_some() {
        return Err(invalid(at("peer"), "is set on a TCP socket"));
    }
    if let Some(b) = backlog {
        if !tcp || local.is_none() {
            return Err(invalid(
                at("backlog"),
                "is set on a UDP socket or one bound to no port",
            ));
        }
        if *b > MAX_LISTEN_BACKLOG {
            return Err(invalid(
                at("backlog"),
                format!("is {b}, above {MAX_LISTEN_BACKLOG}"),
            ));
        }
    }
    if o.v6only && *family != libc::AF_INET6 {
        return Err(invalid(at("options.v6only"), "is set on an IPv4 socket"));
    }
    if !tcp && (o.nodelay || o.defer_accept != 0) {
        return Err(invalid(at("options"), "TCP options on a UDP socket"));
    }
    if tcp && o.broadcast {
        return Err(invalid(at("options.broadcast"), "is set on a TCP socket"));
    }
    for (name, v) in [
        ("defer_accept", o.defer_accept),
        ("rcvbuf", o.rcvbuf),
        ("sndbuf", o.sndbuf),
    ] {
        if v > i32::MAX as u32 {
            return Err(invalid(at(&format!("options.{name}")), "is above INT_MAX"));
        }
    }
    if let Some(problem) = o.bind_device.as_deref().and_then(device_name_problem) {
        return Err(invalid(at("options.bind_device"), problem));
    }
    Ok(())
}

/// The name of a description created anew at restore (never opened).
fn anonymous(i: usize, name: &str) -> Result<(), Invalid> {
    text(format_args!("files[{i}].path"), name, MAX_IMAGE_STRING_LEN)
}

fn mapped_files(t: &str, p: &ProcessState, digest_len: usize) -> Result<(), Invalid> {
    count(
        format_args!("{t}.mapped_files"),
        p.mapped_files.len(),
        MAX_VMAS,
    )?;
    for (i, f) in p.mapped_files.iter().enumerate() {
        path(format_args!("{t}.mapped_files[{i}].path"), &f.path)?;
        digest(
            format_args!("{t}.mapped_files[{i}].digest"),
            &f.digest,
            digest_len,
        )?;
    }
    Ok(())
}

/// The file table: every open file description.
fn files(files: &[OpenFile], spaces: &[Space]) -> Result<(), Invalid> {
    count("files", files.len(), MAX_FILES)?;
    for (i, d) in files.iter().enumerate() {
        match &d.kind {
            // Not a path: what the fd was connected to, shown to the user.
            OpenFileKind::External { connected_to } => {
                text(
                    format_args!("files[{i}].kind.connected_to"),
                    connected_to,
                    MAX_IMAGE_STRING_LEN,
                )?;
                text(
                    format_args!("files[{i}].path"),
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
                        format!("files[{i}].kind.count"),
                        "is above an eventfd's largest value",
                    ));
                }
            }
            OpenFileKind::Signalfd { .. } => anonymous(i, &d.path)?,
            OpenFileKind::Timerfd { clockid, .. } => {
                anonymous(i, &d.path)?;
                if !TIMERFD_CLOCKS.contains(clockid) {
                    return Err(invalid(
                        format!("files[{i}].kind.clockid"),
                        format!("is clock {clockid}, not REALTIME, MONOTONIC or BOOTTIME"),
                    ));
                }
            }
            OpenFileKind::Epoll { targets } => {
                anonymous(i, &d.path)?;
                epoll_targets(i, targets, files.len())?;
            }
            OpenFileKind::Inotify { watches } => {
                anonymous(i, &d.path)?;
                inotify_watches(i, watches)?;
            }
            OpenFileKind::Pipe { .. } | OpenFileKind::UnixPair { .. } => {
                anonymous(i, &d.path)?;
                queued(files, i)?;
            }
            OpenFileKind::UnixSocket {
                sock_type,
                name,
                backlog,
                dir,
                queue,
                ..
            } => {
                anonymous(i, &d.path)?;
                unix_socket(
                    i,
                    *sock_type,
                    name.as_deref(),
                    *backlog,
                    dir.as_deref(),
                    queue,
                )?;
            }
            OpenFileKind::InetSocket { .. } => {
                anonymous(i, &d.path)?;
                inet_socket(i, &d.kind)?;
            }
            OpenFileKind::Fifo { .. } => {
                path(format_args!("files[{i}].path"), &d.path)?;
                queued(files, i)?;
            }
            // The content is in the image: the path is the kernel's name
            // of it, shown to the user, never opened.
            OpenFileKind::Memfd { space } | OpenFileKind::Unlinked { space } => {
                anonymous(i, &d.path)?;
                let fits = matches!(
                    (&d.kind, spaces.get(*space as usize)),
                    (OpenFileKind::Memfd { .. }, Some(Space::Memfd { .. }))
                        | (OpenFileKind::Unlinked { .. }, Some(Space::Unlinked { .. }))
                );
                if !fits {
                    return Err(invalid(
                        format_args!("files[{i}].kind.space"),
                        format!("space {space} is not a file of this kind"),
                    ));
                }
            }
            // Created from the multiplexer at restore: the path is the
            // kernel's name at dump, shown to the user, never opened.
            OpenFileKind::PtyMaster { .. } | OpenFileKind::PtySlave { .. } => {
                anonymous(i, &d.path)?;
                pty(files, i)?;
            }
            _ => path(format_args!("files[{i}].path"), &d.path)?,
        }
        file_locks(i, d)?;
    }
    let total = |f: fn(&OpenFile) -> usize| files.iter().map(f).sum::<usize>();
    count(
        "files[*].kind.targets",
        total(|d| match &d.kind {
            OpenFileKind::Epoll { targets } => targets.len(),
            _ => 0,
        }),
        MAX_EPOLL_TARGETS,
    )?;
    count(
        "files[*].kind.watches",
        total(|d| match &d.kind {
            OpenFileKind::Inotify { watches } => watches.len(),
            _ => 0,
        }),
        MAX_INOTIFY_WATCHES,
    )?;
    count("files[*].locks", total(|d| d.locks.len()), MAX_FILE_LOCKS)?;
    queued_total(files)?;
    Ok(())
}

/// A task that shares its parent's fd table has no fds of its own, and a
/// parent in the image (an earlier task).
fn fds_of_parent(t: &str, i: usize, p: &ProcessState, m: &Manifest) -> Result<(), Invalid> {
    if !p.fds_of_parent {
        return Ok(());
    }
    let field = format!("{t}.fds_of_parent");
    if !p.fds.is_empty() {
        return Err(invalid(&field, "set, but the task lists fds of its own"));
    }
    if !m.tasks[..i].iter().any(|q| q.pid == p.ppid) {
        return Err(invalid(
            &field,
            "set, but its parent is not an earlier task",
        ));
    }
    Ok(())
}

/// A task's fds: unique, naming a description in the file table.
fn fds(t: &str, p: &ProcessState, files: &[OpenFile]) -> Result<(), Invalid> {
    count(format_args!("{t}.fds"), p.fds.len(), MAX_FDS)?;
    let mut seen = std::collections::HashSet::with_capacity(p.fds.len());
    for (i, fd) in p.fds.iter().enumerate() {
        let at = || format!("{t}.fds[{i}] (fd {})", fd.fd);
        if fd.fd < 0 {
            return Err(invalid(at(), "is negative"));
        }
        if !seen.insert(fd.fd) {
            return Err(invalid(at(), "appears twice"));
        }
        if fd.description as usize >= files.len() {
            return Err(invalid(
                at(),
                format!(
                    "names file table entry {}, but there are {}",
                    fd.description,
                    files.len()
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
        format!("files[{i}].kind.targets"),
        targets.len(),
        MAX_EPOLL_TARGETS,
    )?;
    for (j, t) in targets.iter().enumerate() {
        let at = || format!("files[{i}].kind.targets[{j}]");
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
fn thread_addresses(
    task: &str,
    i: usize,
    t: &ThreadState,
    p: &ProcessState,
) -> Result<(), Invalid> {
    text(format_args!("{task}.threads[{i}].name"), &t.name, 15)?;
    if t.cached_tid_at != 0
        && (!t.cached_tid_at.is_multiple_of(4) || !in_writable_vma(p, t.cached_tid_at, 4))
    {
        return Err(invalid(
            format_args!("{task}.threads[{i}].cached_tid_at {:#x}", t.cached_tid_at),
            "is not an aligned word of a writable mapping",
        ));
    }
    count(
        format!("{task}.threads[{i}].robust_futexes"),
        t.robust_futexes.len(),
        MAX_ROBUST_FUTEXES,
    )?;
    for (j, f) in t.robust_futexes.iter().enumerate() {
        let len = if f.glibc_owner { 12 } else { 4 };
        if !f.lock.is_multiple_of(4) || !in_writable_vma(p, f.lock, len) {
            return Err(invalid(
                format_args!("{task}.threads[{i}].robust_futexes[{j}] {:#x}", f.lock),
                "is not an aligned lock word of a writable mapping",
            ));
        }
    }
    if i > 0 && t.pending.iter().any(|s| s.shared) {
        return Err(invalid(
            format_args!("{task}.threads[{i}].pending"),
            "holds a signal queued to the whole process (only the leader's may)",
        ));
    }
    Ok(())
}

/// A pipe, FIFO or unix socket pair description `i`: sizes within the
/// limits, and the other descriptions it is restored with consistent
/// (a pipe description reads or writes, not both; a socket's peer in the image,
/// connected back, of the same type).
fn queued(ds: &[OpenFile], i: usize) -> Result<(), Invalid> {
    let d = &ds[i];
    let at = |what: &str| format!("files[{i}].{what}");
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
            count(at("kind.queue"), queue.len(), MAX_SOCKET_MESSAGES)?;
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
        format!("files[{i}].kind.watches"),
        watches.len(),
        MAX_INOTIFY_WATCHES,
    )?;
    let mut prev = 0;
    for (j, w) in watches.iter().enumerate() {
        let at = || format!("files[{i}].kind.watches[{j}]");
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
    count(format!("files[{i}].locks"), d.locks.len(), MAX_FILE_LOCKS)?;
    if !matches!(d.kind, OpenFileKind::Regular | OpenFileKind::Directory) {
        return Err(invalid(
            format!("files[{i}].locks"),
            "locks on a description that is not a file or directory",
        ));
    }
    let max = i64::MAX as u64;
    for (j, l) in d.locks.iter().enumerate() {
        let at = || format!("files[{i}].locks[{j}]");
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

/// Each unix socket connected by name to another socket of the image
/// (`connect_to`) names exactly one bound socket of the image: for a
/// datagram socket, a datagram socket (itself too); for a stream or
/// seqpacket socket that is not listening, a listener of the same type.
fn unix_connections(ds: &[OpenFile]) -> Result<(), Invalid> {
    for (i, d) in ds.iter().enumerate() {
        let OpenFileKind::UnixSocket {
            sock_type,
            backlog,
            connect_to,
            waiting,
            ..
        } = &d.kind
        else {
            continue;
        };
        count(
            format!("files[{i}].kind.waiting"),
            waiting.len(),
            MAX_LISTEN_BACKLOG as usize + 1,
        )?;
        let waits_here = |w: &u64| {
            ds.iter().any(|e| {
                e.ino == *w
                    && matches!(&e.kind, OpenFileKind::UnixSocket { connect_to: Some(t), .. } if *t == d.ino)
            })
        };
        if !waiting.is_empty() && (backlog.is_none() || !waiting.iter().all(waits_here)) {
            return Err(invalid(
                format!("files[{i}].kind.waiting"),
                "names a socket that is not a connection of the image to this listener",
            ));
        }
        let Some(to) = connect_to else {
            continue;
        };
        let targets: Vec<(i32, bool)> = ds
            .iter()
            .filter(|e| e.ino == *to)
            .filter_map(|e| match &e.kind {
                OpenFileKind::UnixSocket {
                    sock_type,
                    name: Some(_),
                    backlog,
                    ..
                } => Some((*sock_type, backlog.is_some())),
                _ => None,
            })
            .collect();
        let ok = match targets.as_slice() {
            [(t, listening)] => {
                t == sock_type
                    && backlog.is_none()
                    && (*sock_type == libc::SOCK_DGRAM || *listening)
            }
            _ => false,
        };
        if !ok {
            return Err(invalid(
                format!("files[{i}].kind.connect_to"),
                "does not name one bound socket of the image it could be connected to",
            ));
        }
    }
    Ok(())
}

/// Largest pseudo-terminal number the kernel gives (`NR_UNIX98_PTY_MAX`).
const MAX_PTY_INDEX: u32 = 1 << 20;

/// A pseudo-terminal description: one master per pty number, a slave's
/// master in the image, the saved terminal state well-formed.
fn pty(ds: &[OpenFile], i: usize) -> Result<(), Invalid> {
    let at = |what: &str| format!("files[{i}].kind.{what}");
    let index = match &ds[i].kind {
        OpenFileKind::PtyMaster { index, .. } | OpenFileKind::PtySlave { index, .. } => *index,
        _ => return Ok(()),
    };
    if index >= MAX_PTY_INDEX {
        return Err(invalid(
            at("index"),
            "is above the kernel's largest pty number",
        ));
    }
    let masters = ds
        .iter()
        .filter(|d| matches!(&d.kind, OpenFileKind::PtyMaster { index: x, .. } if *x == index))
        .count();
    if masters != 1 {
        return Err(invalid(
            at("index"),
            format!("names a pseudo-terminal with {masters} master descriptions (not one)"),
        ));
    }
    if let OpenFileKind::PtySlave { dev_tty: true, .. } = &ds[i].kind {
        let ctty = ds.iter().any(|d| {
            matches!(&d.kind, OpenFileKind::PtyMaster { index: x, tty } if *x == index && tty.session.is_some())
        });
        if !ctty {
            return Err(invalid(
                at("dev_tty"),
                "is a /dev/tty of a pseudo-terminal that was nobody's controlling terminal",
            ));
        }
    }
    let OpenFileKind::PtyMaster { tty, .. } = &ds[i].kind else {
        return Ok(());
    };
    if tty.termios.cc.0.len() != crate::model::TERMIOS_NCCS {
        return Err(invalid(
            at("tty.termios.cc"),
            format!(
                "has {} control characters, not {}",
                tty.termios.cc.0.len(),
                crate::model::TERMIOS_NCCS
            ),
        ));
    }
    if tty.slave_mode.is_some_and(|m| m & !0o777 != 0) {
        return Err(invalid(
            at("tty.slave_mode"),
            "has bits beyond the permission bits",
        ));
    }
    for (what, id) in [("session", tty.session), ("foreground", tty.foreground)] {
        if id.is_some_and(|v| v <= 0) {
            return Err(invalid(at(&format!("tty.{what}")), "is not a process id"));
        }
    }
    Ok(())
}

/// All bytes queued in pipes, FIFOs and sockets together; a pipe's bytes
/// held by one of its descriptions; each socket by one description, its peer one
/// other socket of the same type in the image, connected back to it.
fn queued_total(ds: &[OpenFile]) -> Result<(), Invalid> {
    use std::collections::HashMap;
    unix_connections(ds)?;
    let mut ends = HashMap::new();
    let mut sockets = HashMap::new();
    for (i, d) in ds.iter().enumerate() {
        let at = |what: &str| format!("files[{i}].{what}");
        match &d.kind {
            // Any number of descriptions of one pipe; its bytes once.
            OpenFileKind::Pipe { data, .. }
                if !data.0.is_empty() && ends.insert((d.dev, d.ino), i).is_some() =>
            {
                return Err(invalid(
                    at("kind.data"),
                    "holds a pipe's queued bytes that another description holds",
                ));
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
                format!("files[{i}].kind.peer_ino"),
                "does not name one other socket of the same type in the image connected back \
                 to it",
            ));
        }
    }
    let total: usize = ds
        .iter()
        .map(|d| match &d.kind {
            OpenFileKind::Pipe { data, .. } | OpenFileKind::Fifo { data, .. } => data.0.len(),
            OpenFileKind::UnixPair { queue, .. } => queue.iter().map(|q| q.0.len()).sum(),
            OpenFileKind::UnixSocket { queue, .. } => queue.iter().map(|q| q.data.0.len()).sum(),
            _ => 0,
        })
        .sum();
    if total > MAX_QUEUED_BYTES {
        return Err(invalid(
            "files",
            format!("hold {total} queued bytes in pipes and sockets, at most {MAX_QUEUED_BYTES}"),
        ));
    }
    Ok(())
}

fn threads(t: &str, p: &ProcessState, xsave_size: u32) -> Result<(), Invalid> {
    if p.threads.is_empty() {
        return Err(invalid(format_args!("{t}.threads"), "no thread"));
    }
    count(format_args!("{t}.threads"), p.threads.len(), MAX_THREADS)?;
    // The first is the leader, whose tid is the pid; the others follow in
    // increasing tid order (so every tid is unique), each positive and not
    // the leader's.
    let mut prev = 0;
    for (i, th) in p.threads.iter().enumerate() {
        let at = || format!("{t}.threads[{i}] (tid {})", th.tid);
        if i == 0 && th.tid != p.pid {
            return Err(invalid(
                at(),
                format!("the leader's tid is not the pid {}", p.pid),
            ));
        }
        if i > 0 && (th.tid <= prev || th.tid == p.pid) {
            return Err(invalid(
                at(),
                "tids must be positive, unique, and in increasing order after the leader's",
            ));
        }
        if i > 0 {
            prev = th.tid;
        }
        thread(t, i, th, xsave_size)?;
        thread_addresses(t, i, th, p)?;
    }
    Ok(())
}

fn thread(t: &str, i: usize, th: &ThreadState, xsave_size: u32) -> Result<(), Invalid> {
    let n = th.xsave.len();
    if !(MIN_XSAVE_LEN..=MAX_XSAVE_LEN).contains(&n) {
        return Err(invalid(
            format_args!("{t}.threads[{i}].xsave"),
            format!("{n} bytes, not within {MIN_XSAVE_LEN}..={MAX_XSAVE_LEN}"),
        ));
    }
    if n as u64 != u64::from(xsave_size) {
        return Err(invalid(
            format_args!("{t}.threads[{i}].xsave"),
            format!("{n} bytes, but cpu.xsave_size says {xsave_size}"),
        ));
    }
    count(
        format!("{t}.threads[{i}].pending"),
        th.pending.len(),
        MAX_PENDING_SIGNALS,
    )?;
    for (j, s) in th.pending.iter().enumerate() {
        let at = || format!("{t}.threads[{i}].pending[{j}]");
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

fn signals_and_limits(t: &str, p: &ProcessState) -> Result<(), Invalid> {
    count(
        format_args!("{t}.sigactions"),
        p.sigactions.len(),
        MAX_SIGACTIONS,
    )?;
    // Not a signal that can be caught, or one listed twice.
    if let Some((i, signal, why)) = p.sigactions.first_invalid() {
        return Err(invalid(
            format!("{t}.sigactions[{i}] (signal {signal})"),
            why,
        ));
    }
    count(format_args!("{t}.rlimits"), p.rlimits.len(), MAX_RLIMITS)?;
    count(format_args!("{t}.itimers"), p.itimers.len(), MAX_ITIMERS)?;
    posix_timers(t, p)?;
    seccomp(t, p)?;
    sched(t, p)
}

/// The seccomp chain matches the mode: filters exactly in filter mode (2),
/// strict mode (1) never (dump refuses it); each program 1..=4096
/// instructions, the chain within the kernel's 32768 (4 counted per
/// filter).
fn seccomp(t: &str, p: &ProcessState) -> Result<(), Invalid> {
    let filters = &p.seccomp_filters;
    match (p.creds.seccomp_mode, filters.is_empty()) {
        (0, true) | (2, false) => {}
        (mode, _) => {
            return Err(invalid(
                format_args!("{t}.seccomp_filters"),
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
                format_args!("{t}.seccomp_filters[{i}]"),
                format!("{n} instructions, not within 1..={MAX_SECCOMP_INSNS_PER_FILTER}"),
            ));
        }
        total = total.saturating_add(n).saturating_add(4);
        if total > MAX_SECCOMP_INSNS {
            return Err(invalid(
                format_args!("{t}.seccomp_filters[{i}]"),
                format!("the chain exceeds {MAX_SECCOMP_INSNS} instructions"),
            ));
        }
    }
    Ok(())
}

/// Scheduling attributes `sched_setattr` can take.
fn sched(t: &str, p: &ProcessState) -> Result<(), Invalid> {
    let Some(s) = &p.sched else { return Ok(()) };
    let ok = match s.policy {
        0 | 3 | 5 => s.priority == 0,
        1 | 2 => (1..=99).contains(&s.priority),
        6 => s.priority == 0 && s.runtime_ns <= s.deadline_ns,
        _ => false,
    } && (-20..=19).contains(&s.nice);
    if !ok {
        return Err(invalid(
            format_args!("{t}.sched"),
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
fn posix_timers(task: &str, p: &ProcessState) -> Result<(), Invalid> {
    count(
        format_args!("{task}.posix_timers"),
        p.posix_timers.len(),
        MAX_POSIX_TIMERS,
    )?;
    let mut last: Option<i32> = None;
    for (i, t) in p.posix_timers.iter().enumerate() {
        let at = || format!("{task}.posix_timers[{i}] (timer {})", t.id);
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
    use crate::model::{
        FdState, FileLock, OpenFile, PendingSignal, SigAction, SigActions, VmFlags, Vma, XsaveArea,
    };

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
        &mut m.tasks[0].vmas[i]
    }

    #[test]
    fn the_sample_is_valid() {
        validate(&sample()).unwrap();
    }

    #[test]
    fn process_settings() {
        refused(
            |m| m.tasks[0].oom_score_adj = 1001,
            "tasks[0].oom_score_adj",
        );
        refused(
            |m| m.tasks[0].oom_score_adj = -1001,
            "tasks[0].oom_score_adj",
        );
        refused(|m| m.tasks[0].pdeathsig = 65, "tasks[0].pdeathsig");
        refused(|m| m.tasks[0].pdeathsig = -1, "tasks[0].pdeathsig");
        let mut m = sample();
        m.tasks[0].oom_score_adj = -1000;
        m.tasks[0].pdeathsig = 64;
        m.tasks[0].child_subreaper = true;
        validate(&m).unwrap();
    }

    #[test]
    fn posix_timers() {
        use crate::model::PosixTimer;
        let tid = sample().tasks[0].threads[0].tid;
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
        m.tasks[0].posix_timers = vec![timer(0), timer(3)];
        validate(&m).unwrap();
        let with = |edit: fn(&mut Vec<PosixTimer>)| {
            move |m: &mut Manifest| {
                m.tasks[0].posix_timers = vec![timer(0), timer(3)];
                edit(&mut m.tasks[0].posix_timers);
            }
        };
        refused(with(|t| t[1].id = 0), "tasks[0].posix_timers[1]");
        refused(with(|t| t[0].id = -1), "tasks[0].posix_timers[0]");
        refused(with(|t| t[0].clockid = 4), "tasks[0].posix_timers[0]");
        refused(with(|t| t[0].clockid = -14), "tasks[0].posix_timers[0]");
        refused(with(|t| t[0].notify = 2), "tasks[0].posix_timers[0]");
        refused(with(|t| t[0].signo = 65), "tasks[0].posix_timers[0]");
        refused(with(|t| t[0].tid = 0), "tasks[0].posix_timers[0]");
        refused(with(|t| t[0].tid += 1), "tasks[0].posix_timers[0]");
        refused(with(|t| t[0].notify = 0), "tasks[0].posix_timers[0]");
        refused(with(|t| t[1].overrun = -1), "tasks[0].posix_timers[1]");
        refused(
            |m| m.tasks[0].posix_timers = (0..=MAX_POSIX_TIMERS as i32).map(timer).collect(),
            "tasks[0].posix_timers",
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
        m.tasks[0].creds.seccomp_mode = 2;
        m.tasks[0].seccomp_filters = vec![allow.clone(), allow.clone()];
        m.tasks[0].sched = Some(Sched {
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
            move |m| m.tasks[0].seccomp_filters = vec![a],
            "tasks[0].seccomp_filters",
        );
        refused(
            |m| {
                m.tasks[0].creds.seccomp_mode = 2;
                m.tasks[0].seccomp_filters = vec![SeccompFilter {
                    program: vec![],
                    log: false,
                }];
            },
            "tasks[0].seccomp_filters[0]",
        );
        let a = allow.clone();
        refused(
            move |m| {
                m.tasks[0].creds.seccomp_mode = 2;
                m.tasks[0].seccomp_filters = vec![a; MAX_SECCOMP_INSNS / 5 + 1];
            },
            "tasks[0].seccomp_filters[",
        );
        refused(
            |m| {
                m.tasks[0].creds.seccomp_mode = 1;
            },
            "tasks[0].seccomp_filters",
        );
        let sched = |policy, priority, nice| {
            move |m: &mut Manifest| {
                m.tasks[0].sched = Some(Sched {
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
        refused(sched(4, 0, 0), "tasks[0].sched");
        refused(sched(1, 0, 0), "tasks[0].sched");
        refused(sched(0, 5, 0), "tasks[0].sched");
        refused(sched(0, 0, 20), "tasks[0].sched");
    }

    #[test]
    fn mappings() {
        let heap = "tasks[0].vmas[1] 0x500000..0x521000";
        refused(|m| vma(m, 1).start = 0x400000, "tasks[0].vmas[1] 0x400000");
        refused(|m| vma(m, 1).start = 0x500800, "tasks[0].vmas[1] 0x500800");
        refused(
            |m| vma(m, 1).end = 0x500000,
            "tasks[0].vmas[1] 0x500000..0x500000",
        );
        refused(|m| vma(m, 1).offset = 12, heap);
        refused(|m| vma(m, 0).start = 0x1000, "tasks[0].vmas[0] 0x1000");
        refused(
            |m| vma(m, 2).end = 0x8000_0000_0000,
            "tasks[0].vmas[2] 0x7ffc00000000..0x800000000000",
        );
        refused(|m| vma(m, 1).prot = 0x10, heap);
        refused(|m| vma(m, 0).file = Some(1), "tasks[0].vmas[0]");
        refused(|m| vma(m, 0).file = None, "tasks[0].vmas[0]");
        refused(|m| vma(m, 1).file = Some(0), heap);
        refused(
            |m| {
                vma(m, 1).kind = VmaKind::Vdso;
                vma(m, 2).kind = VmaKind::Vdso;
            },
            "tasks[0].vmas[2]",
        );
        refused(|m| vma(m, 1).name = "a\0b".into(), heap);
        refused(|m| vma(m, 1).vm_flags = VmFlags::new(["rd"; 65]), heap);
        refused(|m| vma(m, 1).vm_flags = VmFlags::new([""]), heap);
        refused(
            |m| vma(m, 1).vm_flags = VmFlags::new(["rd", "abcdefghi"]),
            heap,
        );
        refused(|m| vma(m, 1).vm_flags = VmFlags::new(["r\0"]), heap);
        refused(
            |m| m.tasks[0].vmas = vec![m.tasks[0].vmas[0].clone(); MAX_VMAS + 1],
            "tasks[0].vmas",
        );
        // Swapped order is an overlap too.
        refused(|m| m.tasks[0].vmas.swap(1, 2), "tasks[0].vmas[2]");
    }

    #[test]
    fn chunks_must_land_in_a_saved_mapping() {
        refused(|m| m.chunks[1].addr = 0x600000, "chunks[1] at 0:0x600000");
        refused(|m| m.chunks[1].addr = 0x520000 + 4096, "chunks[1]");
        refused(|m| m.chunks[1].len = 0x22000, "chunks[1]");
        refused(|m| m.chunks[1].addr = 0x500010, "chunks[1]");
        refused(|m| m.chunks[1].len = 100, "chunks[1]");
        refused(|m| m.chunks[2].addr = u64::MAX - 4095, "chunks[2]");
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
        m.tasks[0].fds.clear();
        m.files.clear();
        for (i, (kind, flags, ino)) in kinds.into_iter().enumerate() {
            m.files.push(crate::model::OpenFile {
                kind,
                path: format!("pipe:[{ino}]"),
                flags,
                offset: 0,
                dev: 1,
                ino,
                locks: Vec::new(),
            });
            m.tasks[0].fds.push(FdState {
                fd: 3 + i as i32,
                description: i as u32,
                cloexec: false,
            });
        }
        m
    }

    #[test]
    fn inet_sockets() {
        use crate::model::{InetAddr, InetOptions};
        let addr = |ip: &str, port: u16| {
            Some(InetAddr {
                ip: ip.into(),
                port,
                scope_id: 0,
            })
        };
        let sock = |family: i32,
                    ty: i32,
                    local: Option<InetAddr>,
                    peer: Option<InetAddr>,
                    backlog: Option<u32>| {
            OpenFileKind::InetSocket {
                family,
                sock_type: ty,
                local,
                peer,
                backlog,
                options: InetOptions::default(),
                dropped: 0,
            }
        };
        let (v4, v6, tcp, udp) = (
            libc::AF_INET,
            libc::AF_INET6,
            libc::SOCK_STREAM,
            libc::SOCK_DGRAM,
        );
        let with = |k: OpenFileKind, f: &dyn Fn(&mut InetOptions)| match k {
            OpenFileKind::InetSocket {
                family,
                sock_type,
                local,
                peer,
                backlog,
                mut options,
                dropped,
            } => {
                f(&mut options);
                OpenFileKind::InetSocket {
                    family,
                    sock_type,
                    local,
                    peer,
                    backlog,
                    options,
                    dropped,
                }
            }
            k => k,
        };
        let field = |k: OpenFileKind| {
            validate(&with_descriptions(vec![(k, 2, 8)]))
                .unwrap_err()
                .field
        };
        // Good ones: listeners on v4 and v6 (dual stack on a mapped
        // address too), a connected UDP socket, an unbound TCP socket.
        for good in [
            sock(v4, tcp, addr("127.0.0.1", 8000), None, Some(128)),
            with(sock(v6, tcp, addr("::1", 8000), None, Some(5)), &|o| {
                o.v6only = true;
                o.nodelay = true;
                o.defer_accept = 5;
                o.bind_device = Some("lo".into());
            }),
            sock(v6, udp, addr("::ffff:10.0.0.1", 53), addr("::1", 9), None),
            with(sock(v4, udp, addr("0.0.0.0", 5353), None, None), &|o| {
                o.broadcast = true
            }),
            sock(v4, tcp, None, None, None),
        ] {
            validate(&with_descriptions(vec![(good, 2, 8)])).unwrap();
        }
        for (bad, at) in [
            (sock(libc::AF_UNIX, tcp, None, None, None), "family"),
            (sock(v4, libc::SOCK_RAW, None, None, None), "sock_type"),
            (sock(v4, tcp, addr("::1", 80), None, None), "local"),
            (sock(v6, tcp, addr("127.0.0.1", 80), None, None), "local"),
            (sock(v4, tcp, addr("localhost", 80), None, None), "local"),
            (sock(v4, tcp, addr("127.0.0.1", 0), None, None), "local"),
            (
                sock(v4, tcp, addr("127.0.0.1", 80), addr("127.0.0.1", 81), None),
                "peer",
            ),
            (
                sock(v4, udp, addr("127.0.0.1", 80), None, Some(1)),
                "backlog",
            ),
            (sock(v4, tcp, None, None, Some(1)), "backlog"),
            (
                sock(v4, tcp, addr("127.0.0.1", 80), None, Some(u32::MAX)),
                "backlog",
            ),
            (
                with(sock(v4, tcp, None, None, None), &|o| o.v6only = true),
                "options.v6only",
            ),
            (
                with(sock(v4, udp, None, None, None), &|o| o.nodelay = true),
                "options",
            ),
            (
                with(sock(v4, tcp, None, None, None), &|o| o.broadcast = true),
                "options.broadcast",
            ),
            (
                with(sock(v4, tcp, None, None, None), &|o| o.rcvbuf = u32::MAX),
                "options.rcvbuf",
            ),
            (
                with(sock(v4, tcp, None, None, None), &|o| {
                    o.bind_device = Some("a/b".into())
                }),
                "options.bind_device",
            ),
            (
                with(sock(v4, tcp, None, None, None), &|o| {
                    o.bind_device = Some("x".repeat(16))
                }),
                "options.bind_device",
            ),
        ] {
            assert_eq!(field(bad), format!("files[0].kind.{at}"));
        }
        let scoped = OpenFileKind::InetSocket {
            family: v4,
            sock_type: tcp,
            local: Some(InetAddr {
                ip: "127.0.0.1".into(),
                port: 1,
                scope_id: 2,
            }),
            peer: None,
            backlog: None,
            options: InetOptions::default(),
            dropped: 0,
        };
        assert_eq!(field(scoped), "files[0].kind.local");
    }

    #[test]
    fn pseudo_terminals() {
        use crate::model::{ByteString, PtyQueues, PtyTerminal, Termios, WinSize};
        let tty = |cc: usize, session: Option<i32>| PtyTerminal {
            termios: Termios {
                iflag: 0,
                oflag: 0,
                cflag: 0o277,
                lflag: 0,
                line: 0,
                cc: ByteString(vec![0; cc]),
                ispeed: 38400,
                ospeed: 38400,
            },
            winsize: WinSize {
                rows: 37,
                cols: 101,
                xpixel: 0,
                ypixel: 0,
            },
            packet: false,
            locked: false,
            master_exclusive: false,
            slave_exclusive: false,
            session,
            foreground: None,
            lost: PtyQueues::default(),
            slave_mode: Some(0o620),
            slave_owner: Some((1000, 5)),
            slave_closed: false,
        };
        let master = |index: u32, cc: usize, session: Option<i32>| OpenFileKind::PtyMaster {
            index,
            tty: tty(cc, session),
        };
        let slave = |index: u32| OpenFileKind::PtySlave {
            index,
            dev_tty: false,
        };
        let check = |kinds| validate(&with_descriptions(kinds));
        // A master and two slaves; a master alone.
        check(vec![
            (master(3, 19, Some(40)), 2, 7),
            (slave(3), 2, 8),
            (slave(3), 2, 8),
        ])
        .unwrap();
        check(vec![(master(3, 19, None), 2, 7)]).unwrap();
        let field = |kinds| check(kinds).unwrap_err().field;
        // A slave whose master is not in the image; two masters of one
        // pty; a bad termios; an absurd index or session.
        assert_eq!(field(vec![(slave(4), 2, 8)]), "files[0].kind.index");
        assert_eq!(
            field(vec![
                (master(3, 19, None), 2, 7),
                (master(3, 19, None), 2, 8)
            ]),
            "files[0].kind.index"
        );
        assert_eq!(
            field(vec![(master(3, 18, None), 2, 7)]),
            "files[0].kind.tty.termios.cc"
        );
        assert_eq!(
            field(vec![(master(1 << 20, 19, None), 2, 7)]),
            "files[0].kind.index"
        );
        assert_eq!(
            field(vec![(master(3, 19, Some(-1)), 2, 7)]),
            "files[0].kind.tty.session"
        );
        // /dev/tty of a pty that was nobody's controlling terminal.
        let dev_tty = OpenFileKind::PtySlave {
            index: 3,
            dev_tty: true,
        };
        check(vec![
            (master(3, 19, Some(40)), 2, 7),
            (dev_tty.clone(), 2, 8),
        ])
        .unwrap();
        assert_eq!(
            field(vec![(master(3, 19, None), 2, 7), (dev_tty, 2, 8)]),
            "files[1].kind.dev_tty"
        );
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
                "files[0].kind.packets"
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
        assert_eq!(field(vec![(pipe(2, b"abc"), 0, 7)]), "files[0].kind.size");
        assert_eq!(
            field(vec![(pipe(u32::MAX, b""), 0, 7)]),
            "files[0].kind.size"
        );
        assert_eq!(field(vec![(pipe(4096, b"a"), 1, 7)]), "files[0].kind.data");
        // Two read descriptions of one pipe (one reopened through /proc)
        // are fine; its bytes held by both are not. A pipe end opened
        // read-write.
        check(vec![
            (pipe(4096, b"abc"), 0, 7),
            (pipe(4096, b""), 0, 7),
            (pipe(4096, b""), 1, 7),
            (pipe(4096, b""), 1, 7),
        ])
        .unwrap();
        assert_eq!(
            field(vec![(pipe(4096, b"abc"), 0, 7), (pipe(4096, b"abc"), 0, 7)]),
            "files[1].kind.data"
        );
        assert_eq!(field(vec![(pipe(4096, b""), 2, 7)]), "files[0].flags");
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
            dir: None,
            file: None,
            connect_to: None,
            queue: Vec::new(),
            waiting: Vec::new(),
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
            assert_eq!(field(vec![(bad, 2, 8)]), format!("files[0].kind.{at}"));
        }
        // Relative names with their directory; connections by name to a
        // bound socket of the image; datagrams queued on a bound datagram
        // socket. Then: a relative name of two components or in a
        // relative directory, a connection to nothing, to a socket of
        // another type, to a stream socket that does not listen, a queue
        // on a stream socket.
        let with = |k: OpenFileKind,
                    dir: Option<&str>,
                    to: Option<u64>,
                    q: Vec<crate::model::Datagram>| match k {
            OpenFileKind::UnixSocket {
                sock_type,
                name,
                backlog,
                ..
            } => OpenFileKind::UnixSocket {
                sock_type,
                name,
                backlog,
                sndbuf: 0,
                passcred: false,
                dir: dir.map(str::to_string),
                file: None,
                connect_to: to,
                queue: q,
                waiting: Vec::new(),
            },
            k => k,
        };
        let dgram = |data: &[u8], from: Option<&str>| crate::model::Datagram {
            data: ByteString(data.to_vec()),
            from: from.map(str::to_string),
        };
        let srv = with(
            lone(libc::SOCK_DGRAM, Some("srv"), None),
            Some("/tmp"),
            None,
            vec![dgram(b"one", Some("/tmp/cl")), dgram(b"two", None)],
        );
        let listener = lone(libc::SOCK_STREAM, Some("/l"), Some(3));
        check(vec![
            (srv.clone(), 2, 8),
            (
                with(
                    lone(libc::SOCK_DGRAM, Some("/tmp/cl"), None),
                    None,
                    Some(8),
                    vec![],
                ),
                2,
                9,
            ),
            (
                with(lone(libc::SOCK_DGRAM, None, None), None, Some(8), vec![]),
                2,
                10,
            ),
            (listener.clone(), 2, 11),
            (
                with(lone(libc::SOCK_STREAM, None, None), None, Some(11), vec![]),
                2,
                12,
            ),
        ])
        .unwrap();
        for (bad, at) in [
            (
                with(
                    lone(libc::SOCK_DGRAM, Some("a/b"), None),
                    Some("/tmp"),
                    None,
                    vec![],
                ),
                "files[0].kind.name",
            ),
            (
                with(
                    lone(libc::SOCK_DGRAM, Some("b"), None),
                    Some("tmp"),
                    None,
                    vec![],
                ),
                "files[0].kind.name",
            ),
            (
                with(lone(libc::SOCK_DGRAM, None, None), None, Some(77), vec![]),
                "files[0].kind.connect_to",
            ),
            (
                with(lone(libc::SOCK_STREAM, None, None), None, Some(8), vec![]),
                "files[0].kind.connect_to",
            ),
            (
                with(
                    lone(libc::SOCK_STREAM, Some("/s"), None),
                    None,
                    None,
                    vec![dgram(b"x", None)],
                ),
                "files[0].kind.queue",
            ),
        ] {
            assert_eq!(field(vec![(bad, 2, 9), (srv.clone(), 2, 8)]), at);
        }
        assert_eq!(
            field(vec![
                (
                    with(lone(libc::SOCK_STREAM, None, None), None, Some(8), vec![]),
                    2,
                    9
                ),
                (lone(libc::SOCK_STREAM, Some("/s"), None), 2, 8),
            ]),
            "files[0].kind.connect_to"
        );
        // A listener's waiting connections: clients of the image connected
        // to it; not a socket connected elsewhere or missing.
        let waiting = |k: OpenFileKind, w: Vec<u64>| match k {
            OpenFileKind::UnixSocket {
                sock_type,
                name,
                backlog,
                ..
            } => OpenFileKind::UnixSocket {
                sock_type,
                name,
                backlog,
                sndbuf: 0,
                passcred: false,
                dir: None,
                file: None,
                connect_to: None,
                queue: Vec::new(),
                waiting: w,
            },
            k => k,
        };
        let client = with(lone(libc::SOCK_STREAM, None, None), None, Some(11), vec![]);
        check(vec![
            (waiting(listener.clone(), vec![12]), 2, 11),
            (client.clone(), 2, 12),
        ])
        .unwrap();
        for w in [vec![13], vec![12, 99]] {
            assert_eq!(
                field(vec![
                    (waiting(listener.clone(), w), 2, 11),
                    (client.clone(), 2, 12),
                    (lone(libc::SOCK_STREAM, None, None), 2, 13),
                ]),
                "files[0].kind.waiting"
            );
        }
        // A socket whose peer is missing, of another type, not connected
        // back, or itself; an unknown type; two descriptions of one socket.
        assert_eq!(
            field(vec![(unix(libc::SOCK_STREAM, 9, vec![]), 2, 8)]),
            "files[0].kind.peer_ino"
        );
        assert_eq!(
            field(vec![
                (unix(libc::SOCK_STREAM, 9, vec![]), 2, 8),
                (unix(libc::SOCK_DGRAM, 8, vec![]), 2, 9)
            ]),
            "files[0].kind.peer_ino"
        );
        assert_eq!(
            field(vec![
                (unix(libc::SOCK_DGRAM, 9, vec![]), 2, 8),
                (unix(libc::SOCK_DGRAM, 10, vec![]), 2, 9),
                (unix(libc::SOCK_DGRAM, 9, vec![]), 2, 10)
            ]),
            "files[0].kind.peer_ino"
        );
        assert_eq!(
            field(vec![(unix(libc::SOCK_DGRAM, 8, vec![]), 2, 8)]),
            "files[0].kind.peer_ino"
        );
        assert_eq!(
            field(vec![(unix(libc::SOCK_RAW, 9, vec![]), 2, 8)]),
            "files[0].kind.sock_type"
        );
        assert_eq!(
            field(vec![
                (unix(libc::SOCK_DGRAM, 9, vec![]), 2, 8),
                (unix(libc::SOCK_DGRAM, 8, vec![]), 2, 9),
                (unix(libc::SOCK_DGRAM, 8, vec![]), 2, 9)
            ]),
            "files[2].ino"
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
            "files[0].kind.queue"
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
            "files[0].kind.queue"
        );
        let full = || vec![0u8; MAX_SOCKET_QUEUE];
        assert_eq!(
            field(vec![
                (unix(libc::SOCK_STREAM, 9, vec![full()]), 2, 8),
                (unix(libc::SOCK_STREAM, 8, vec![full()]), 2, 9),
                (pipe(MAX_PIPE_SIZE as u32, &[0u8; 64]), 0, 7)
            ]),
            "files"
        );
    }

    #[test]
    fn files_and_descriptors() {
        refused(
            |m| m.tasks[0].mapped_files[0].path = "relative".into(),
            "tasks[0].mapped_files[0].path",
        );
        refused(
            |m| m.tasks[0].mapped_files[0].digest = vec![1; 31],
            "tasks[0].mapped_files[0].digest",
        );
        refused(
            |m| m.tasks[0].exe.path = "/bin/\0x".into(),
            "tasks[0].exe.path",
        );
        refused(|m| m.tasks[0].exe.digest.clear(), "tasks[0].exe.digest");
        refused(|m| m.tasks[0].cwd = "/".repeat(5000), "tasks[0].cwd");
        refused(|m| m.files[0].path = String::new(), "files[0].path");
        refused(|m| m.tasks[0].fds[0].fd = -1, "tasks[0].fds[0] (fd -1)");
        refused(
            |m| {
                m.tasks[0].cwd = "/".into();
                m.tasks[0].cwd_deleted = true;
            },
            "tasks[0].cwd",
        );
        refused(
            |m| m.tasks[0].fds[0].description = 1,
            "tasks[0].fds[0] (fd 0)",
        );
        refused(
            |m| {
                m.tasks[0].fds.push(FdState {
                    fd: 0,
                    description: 0,
                    cloexec: true,
                })
            },
            "tasks[0].fds[1] (fd 0)",
        );
    }

    #[test]
    fn anonymous_descriptors_are_checked() {
        let set = |m: &mut Manifest, kind: OpenFileKind| {
            m.files[0].kind = kind;
            m.files[0].path = "anon_inode:[timerfd]".into();
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
            "files[0].kind.count",
        );
        for clock in [
            libc::CLOCK_REALTIME_ALARM,
            libc::CLOCK_PROCESS_CPUTIME_ID,
            -1,
        ] {
            refused(|m| set(m, timer(clock)), "files[0].kind.clockid");
        }
        refused(
            |m| {
                set(m, OpenFileKind::Signalfd { sigmask: 0 });
                m.files[0].path = "a".repeat(5000);
            },
            "files[0].path",
        );
    }

    /// The sample with a second description: an epoll at fd 1 watching
    /// the first (a regular file here; restore would fail on it, which is
    /// not malformation), or an inotify.
    fn with_second(m: &mut Manifest, kind: OpenFileKind) {
        let mut d = m.files[0].clone();
        d.kind = kind;
        d.path = "anon_inode:[eventpoll]".into();
        m.files.push(d);
        m.tasks[0].fds.push(FdState {
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
        refused(|m| with_second(m, epoll(-1, 0)), "files[1].kind.targets[0]");
        refused(|m| with_second(m, epoll(3, 2)), "files[1].kind.targets[0]");
        refused(|m| with_second(m, epoll(3, 1)), "files[1].kind.targets[0]");
        for bad in [
            inotify(&[(0, 0x100, "/a")]),
            inotify(&[(2, 0x100, "/a"), (2, 0x100, "/b")]),
            inotify(&[(3, 0x100, "/a"), (2, 0x100, "/b")]),
            inotify(&[(MAX_INOTIFY_WD + 1, 0x100, "/a")]),
            inotify(&[(1, 0, "/a")]),
            inotify(&[(1, 0x0100_0100, "/a")]),
            inotify(&[(1, 0x8000_0000, "/a")]),
        ] {
            refused(|m| with_second(m, bad.clone()), "files[1].kind.watches[");
        }
        refused(
            |m| with_second(m, inotify(&[(1, 0x100, "relative")])),
            "files[1].kind.watches[0].path",
        );

        let lock = |kind, start, end| FileLock {
            owner: None,
            kind,
            write: true,
            start,
            end,
        };
        let with_lock = |m: &mut Manifest, l: FileLock| {
            m.files[0].kind = OpenFileKind::Regular;
            m.files[0].locks = vec![l];
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
            refused(|m| with_lock(m, bad), "files[0].locks[0]");
        }
        // Locks only on what restore reopens as a file or directory.
        refused(
            |m| m.files[0].locks = vec![lock(LockKind::Flock, 0, None)],
            "files[0].locks",
        );
    }

    #[test]
    fn external_descriptors_on_any_fd_with_a_printable_name() {
        let external = |m: &mut Manifest, fd: i32| {
            m.files[0].kind = OpenFileKind::External {
                connected_to: "pipe:[12345]".into(),
            };
            m.files[0].path = "pipe:[12345]".into();
            m.tasks[0].fds[0].fd = fd;
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
                m.files[0].kind = OpenFileKind::External {
                    connected_to: "a\0b".into(),
                };
            },
            "files[0].kind.connected_to",
        );
        // Not External: the path must still be absolute.
        refused(|m| m.files[0].path = "pipe:[1]".into(), "files[0].path");
    }

    #[test]
    fn threads_registers_and_signals() {
        refused(|m| m.tasks[0].threads.clear(), "tasks[0].threads");
        refused(
            |m| m.tasks[0].threads[0].xsave = XsaveArea::new(&[0; 64]),
            "tasks[0].threads[0].xsave",
        );
        refused(|m| m.cpu.xsave_size = 1024, "tasks[0].threads[0].xsave");
        refused(
            |m| {
                m.tasks[0].threads[0].xsave = XsaveArea::new(&vec![0; MAX_XSAVE_LEN + 1]);
                m.cpu.xsave_size = (MAX_XSAVE_LEN + 1) as u32;
            },
            "tasks[0].threads[0].xsave",
        );
        let pending = |siginfo: Vec<u8>| PendingSignal {
            shared: false,
            siginfo,
        };
        refused(
            |m| m.tasks[0].threads[0].pending = vec![pending(vec![10; 64])],
            "tasks[0].threads[0].pending[0]",
        );
        refused(
            |m| m.tasks[0].threads[0].pending = vec![pending(vec![0; 128])],
            "tasks[0].threads[0].pending[0]",
        );
        let mut ok = sample();
        let mut info = vec![0; 128];
        info[0] = 10;
        ok.tasks[0].threads[0].pending = vec![pending(info)];
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
                |m| m.tasks[0].sigactions = SigActions::new([action(bad)]),
                "tasks[0].sigactions[0]",
            );
        }
        refused(
            |m| m.tasks[0].sigactions = SigActions::new([action(10), action(10)]),
            "tasks[0].sigactions[1] (signal 10)",
        );
        refused(
            |m| m.tasks[0].rlimits = vec![m.tasks[0].rlimits[0]; 17],
            "tasks[0].rlimits",
        );
    }

    #[test]
    fn other_fields() {
        refused(|m| m.tasks[0].pid = 0, "tasks[0].pid");
        refused(|m| m.tasks[0].comm = "c".repeat(65), "tasks[0].comm");
        refused(
            |m| {
                m.zombies.push(crate::model::Zombie {
                    pid: m.tasks[0].pid + 1000,
                    ppid: m.tasks[0].pid,
                    pgid: m.tasks[0].pid,
                    sid: m.tasks[0].pid,
                    exit_status: 7 << 8,
                    comm: "z".repeat(65),
                })
            },
            "zombies[0].comm",
        );
        refused(|m| m.tasks[0].mm.auxv.push(1), "tasks[0].mm.auxv");
        refused(
            |m| m.tasks[0].creds.seccomp_mode = 3,
            "tasks[0].creds.seccomp_mode",
        );
        refused(
            |m| m.tasks[0].creds.groups = vec![1; MAX_GROUPS + 1],
            "tasks[0].creds.groups",
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
        let mut t = other.tasks[0].threads[0].clone();
        t.tid += 1;
        t.name = "worker".into();
        other.tasks[0].threads.push(t);
        validate(&other).unwrap();
    }

    /// A second process (pid and thread id 5000) with its memory as space 1.
    fn two_tasks() -> Manifest {
        let mut m = sample();
        let mut t = m.tasks[0].clone();
        t.pid = 5000;
        t.ppid = m.tasks[0].pid;
        t.threads[0].tid = 5000;
        m.tasks.push(t);
        m.spaces.push(Space::Memory { task: 1 });
        m
    }

    #[test]
    fn tasks_spaces_and_the_file_table() {
        refused(|m| m.tasks.clear(), "tasks");
        refused(
            |m| {
                let t = m.tasks[0].clone();
                m.tasks.push(t);
            },
            "tasks[1].pid",
        );
        refused(
            |m| {
                let mut t = m.tasks[0].clone();
                t.pid = 5000;
                m.tasks.push(t);
            },
            "tasks[1].threads[0].tid",
        );
        // Several processes are well-formed: restore decides.
        let mut two = two_tasks();
        validate(&two).unwrap();
        // Each task's fds name the one file table.
        two.tasks[1].fds[0].description = 0;
        validate(&two).unwrap();
        two.tasks[1].fds[0].description = 1;
        assert_eq!(
            validate(&two).map_err(|e| e.field),
            Err("tasks[1].fds[0] (fd 0)".into())
        );
        refused(|m| m.spaces.push(Space::Memory { task: 1 }), "spaces[1]");
        refused(|m| m.spaces.push(Space::Memory { task: 0 }), "spaces[1]");
        refused(|m| m.chunks[1].space = 1, "chunks[1] at 1:0x500000");
        refused(
            |m| m.files = vec![m.files[0].clone(); crate::limits::MAX_FILES + 1],
            "files",
        );
        // Chunks of the second task's memory, after the first's, land in
        // its own mappings.
        let mut m = two_tasks();
        let mut c = m.chunks[1].clone();
        c.space = 1;
        m.chunks.push(c.clone());
        validate(&m).unwrap();
        // Not before the first space's.
        m.chunks.insert(0, c);
        assert_eq!(
            validate(&m).map_err(|e| e.field),
            Err("chunks[1] at 0:0x400000 (4096 bytes)".into())
        );
        // Nor into a mapping only the other task has.
        let mut m = two_tasks();
        m.tasks[1].vmas.remove(1);
        let mut c = m.chunks[1].clone();
        c.space = 1;
        m.chunks.push(c);
        assert_eq!(
            validate(&m).map_err(|e| e.field),
            Err("chunks[3] at 1:0x500000 (4096 bytes)".into())
        );
    }

    /// The sample with a memfd (space 1) on fd 0 and a shared mapping of
    /// it, and an unlinked file (space 2), each with a chunk of content.
    fn with_saved_files() -> Manifest {
        let mut m = sample();
        m.spaces.push(Space::Memfd {
            name: "buf".into(),
            size: 10_000,
            seals: 0xf,
            mode: None,
        });
        m.spaces.push(Space::Unlinked {
            path: "/tmp/gone".into(),
            size: 100,
            mode: 0o640,
            owner: Some((1000, 1000)),
        });
        m.files[0].kind = OpenFileKind::Memfd { space: 1 };
        m.files[0].path = "/memfd:buf (deleted)".into();
        m.files.push(OpenFile {
            kind: OpenFileKind::Unlinked { space: 2 },
            path: "/tmp/gone (deleted)".into(),
            ..m.files[0].clone()
        });
        let mut v = m.tasks[0].vmas[1].clone();
        v.start = 0x600000;
        v.end = 0x603000;
        v.kind = VmaKind::File;
        v.shared = true;
        v.space = Some(1);
        v.name = "/memfd:buf (deleted)".into();
        m.tasks[0].vmas.insert(2, v);
        for (space, addr, len) in [(1, 4096, 5904), (2, 0, 100)] {
            m.chunks.push(crate::image::ChunkEntry {
                space,
                addr,
                len,
                digest: vec![0; 32],
                stored: None,
            });
        }
        m
    }

    #[test]
    fn memfds_and_unlinked_files() {
        validate(&with_saved_files()).unwrap();
        let refused_saved = |edit: &dyn Fn(&mut Manifest), field: &str| {
            let mut m = with_saved_files();
            edit(&mut m);
            match validate(&m) {
                Ok(()) => panic!("accepted; expected a complaint about {field}"),
                Err(e) => assert!(e.field.starts_with(field), "{e:?}, want {field}"),
            }
        };
        // Content past the file's size; chunks out of space order.
        refused_saved(&|m| m.chunks[3].len = 6000, "chunks[3] at 1:0x1000");
        refused_saved(&|m| m.chunks.swap(3, 4), "chunks[4]");
        // A description or mapping naming the wrong kind of space.
        refused_saved(
            &|m| m.files[0].kind = OpenFileKind::Unlinked { space: 1 },
            "files[0].kind.space",
        );
        refused_saved(
            &|m| m.files[0].kind = OpenFileKind::Memfd { space: 0 },
            "files[0].kind.space",
        );
        refused_saved(&|m| m.tasks[0].vmas[2].space = Some(0), "tasks[0].vmas[2]");
        refused_saved(&|m| m.tasks[0].vmas[2].file = Some(0), "tasks[0].vmas[2]");
        // Unknown seals, a name or path the kernel would not take.
        refused_saved(
            &|m| {
                m.spaces[1] = Space::Memfd {
                    name: "buf".into(),
                    size: 10_000,
                    seals: 0x40,
                    mode: None,
                }
            },
            "spaces[1].seals",
        );
        refused_saved(
            &|m| {
                m.spaces[1] = Space::Memfd {
                    name: "b".repeat(250),
                    size: 10_000,
                    seals: 0,
                    mode: None,
                }
            },
            "spaces[1].name",
        );
        for bad in ["relative", "/", "/tmp/"] {
            refused_saved(
                &|m| {
                    m.spaces[2] = Space::Unlinked {
                        path: bad.into(),
                        size: 100,
                        mode: 0o640,
                        owner: None,
                    }
                },
                "spaces[2].path",
            );
        }
        refused_saved(
            &|m| {
                m.spaces[2] = Space::Unlinked {
                    path: "/tmp/gone".into(),
                    size: 100,
                    mode: 0o10644,
                    owner: None,
                }
            },
            "spaces[2].mode",
        );
        refused_saved(
            &|m| {
                m.spaces[2] = Space::Unlinked {
                    path: "/tmp/gone".into(),
                    size: 100,
                    mode: 0o644,
                    owner: Some((u32::MAX, 0)),
                }
            },
            "spaces[2].owner",
        );
    }

    #[test]
    fn thread_list() {
        let two = |m: &mut Manifest| {
            let mut t = m.tasks[0].threads[0].clone();
            t.tid += 10;
            m.tasks[0].threads.push(t);
        };
        refused(|m| m.tasks[0].threads[0].tid += 1, "tasks[0].threads[0]");
        refused(
            |m| {
                two(m);
                m.tasks[0].threads[1].tid = m.tasks[0].pid;
            },
            "tasks[0].threads[1]",
        );
        refused(
            |m| {
                two(m);
                let t = m.tasks[0].threads[1].clone();
                m.tasks[0].threads.push(t);
            },
            "tasks[0].threads[2]",
        );
        refused(
            |m| {
                two(m);
                m.tasks[0].threads[1].tid = -5;
            },
            "tasks[0].threads[1]",
        );
        refused(
            |m| {
                two(m);
                let mut bytes = m.tasks[0].threads[1].xsave.to_vec();
                bytes.push(0);
                m.tasks[0].threads[1].xsave = XsaveArea::new(&bytes);
            },
            "tasks[0].threads[1].xsave",
        );
        refused(
            |m| m.tasks[0].threads[0].name = "sixteen-bytes-xx".into(),
            "tasks[0].threads[0].name",
        );
        refused(
            |m| m.tasks[0].threads[0].cached_tid_at = 0x10,
            "tasks[0].threads[0].cached_tid_at",
        );
        refused(
            |m| {
                m.tasks[0].threads[0].robust_futexes = vec![crate::model::RobustFutex {
                    lock: 0x10,
                    glibc_owner: false,
                }]
            },
            "tasks[0].threads[0].robust_futexes[0]",
        );
        refused(
            |m| {
                two(m);
                m.tasks[0].threads[1].pending = vec![crate::model::PendingSignal {
                    shared: true,
                    siginfo: {
                        let mut b = vec![0u8; 128];
                        b[0] = 10;
                        b
                    },
                }];
            },
            "tasks[0].threads[1].pending",
        );
    }

    #[test]
    fn limits_agree_with_the_dump() {
        assert_eq!(MAX_PENDING_SIGNALS, 2 * crate::dump::MAX_PENDING);
    }
}
