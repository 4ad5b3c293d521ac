//! `ckpt-verify inspect`: what an image holds. An untrusted view: it needs
//! only a well-formed image (chunks are not read, trust is not asked).

use std::path::Path;

use ckpt_core::image::{ImageReader, Manifest, SignatureStatus, Space};
use ckpt_core::state::{OpenFileKind, ProcessState, Vma, VmaKind};
use ckpt_privsep::report::{error_chain, Exit};
use ckpt_privsep::Caller;
use serde_json::{json, Value};

use crate::checked::open_as_caller;
use crate::{hex, show, Fail, PROG};

/// The first line of the text view.
pub(crate) const BANNER: &str = "UNTRUSTED VIEW: nothing here has been verified";

fn prot(v: &Vma) -> String {
    let p = v.prot;
    let bit = |mask: u32, c: char| if p & mask != 0 { c } else { '-' };
    format!(
        "{}{}{}{}",
        bit(0x1, 'r'),
        bit(0x2, 'w'),
        bit(0x4, 'x'),
        if v.shared { 's' } else { 'p' }
    )
}

fn kind(k: VmaKind) -> &'static str {
    match k {
        VmaKind::Anonymous => "anonymous",
        VmaKind::SharedAnonymous => "shared-anonymous",
        VmaKind::File => "file",
        VmaKind::Vdso => "vdso",
        VmaKind::Vvar => "vvar",
        VmaKind::VvarVclock => "vvar_vclock",
        VmaKind::Vsyscall => "vsyscall",
    }
}

fn file_kind(k: &OpenFileKind) -> &'static str {
    match k {
        OpenFileKind::Regular => "regular",
        OpenFileKind::Directory => "directory",
        OpenFileKind::CharDevice => "char-device",
        OpenFileKind::External { .. } => "external",
        OpenFileKind::Eventfd { .. } => "eventfd",
        OpenFileKind::Signalfd { .. } => "signalfd",
        OpenFileKind::Timerfd { .. } => "timerfd",
        OpenFileKind::Epoll { .. } => "epoll",
        OpenFileKind::Inotify { .. } => "inotify",
        OpenFileKind::Pipe { .. } => "pipe",
        OpenFileKind::Fifo { .. } => "fifo",
        OpenFileKind::UnixPair { .. } => "unix-socket",
        OpenFileKind::Memfd { .. } => "memfd",
        OpenFileKind::Unlinked { .. } => "unlinked-file",
        OpenFileKind::UnixSocket { .. } => "unix-socket",
        OpenFileKind::InetSocket { .. } => "inet-socket",
        OpenFileKind::PtyMaster { .. } => "pty-master",
        OpenFileKind::PtySlave { .. } => "pty-slave",
    }
}

/// What restore does with fd `fd` if it was connected outside the image.
fn external_note(k: &OpenFileKind, fd: i32) -> &'static str {
    match k {
        OpenFileKind::External { .. } if fd <= 2 => {
            ", restore connects it to the caller's fd of that number"
        }
        OpenFileKind::External { .. } => {
            ", restore connects it to the caller's fd of that number with --inherit-fd, \
             otherwise to /dev/null"
        }
        _ => "",
    }
}

/// The file locks held through a description, or "".
fn locks_note(d: &ckpt_core::state::OpenFile) -> String {
    if d.locks.is_empty() {
        return String::new();
    }
    let list: Vec<String> = d
        .locks
        .iter()
        .map(|l| {
            let end = l.end.map_or_else(|| "EOF".to_string(), |e| e.to_string());
            format!(
                "{:?} {} {}-{end}",
                l.kind,
                if l.write { "write" } else { "read" },
                l.start
            )
        })
        .collect();
    format!(", locks [{}]", list.join("; "))
}

/// The saved state of a description restore creates anew, or "".
fn anonymous_state(k: &OpenFileKind) -> String {
    match k {
        OpenFileKind::Eventfd { count, semaphore } => format!(
            ", count {count}{}",
            if *semaphore { ", semaphore" } else { "" }
        ),
        OpenFileKind::Signalfd { sigmask } => format!(", sigmask {sigmask:#018x}"),
        OpenFileKind::Timerfd {
            clockid,
            value_ns,
            interval_ns,
            ticks,
            ..
        } => format!(
            ", clock {clockid}, next in {}.{:09} s, every {}.{:09} s, {ticks} unread",
            value_ns / 1_000_000_000,
            value_ns % 1_000_000_000,
            interval_ns / 1_000_000_000,
            interval_ns % 1_000_000_000
        ),
        OpenFileKind::Epoll { targets } => {
            let list: Vec<String> = targets
                .iter()
                .map(|t| format!("fd {} events {:#x} data {:#x}", t.fd, t.events, t.data))
                .collect();
            format!(", watching [{}]", list.join("; "))
        }
        OpenFileKind::Inotify { watches } => {
            let list: Vec<String> = watches
                .iter()
                .map(|w| format!("wd {} mask {:#x} {}", w.wd, w.mask, show(&w.path)))
                .collect();
            format!(", watches [{}]", list.join("; "))
        }
        OpenFileKind::Pipe {
            size,
            data,
            packets,
        } if !packets.is_empty() => format!(
            ", size {size}, {} bytes queued in {} packets",
            data.0.len(),
            packets.len()
        ),
        OpenFileKind::Pipe { size, data, .. } | OpenFileKind::Fifo { size, data } => {
            format!(", size {size}, {} bytes queued", data.0.len())
        }
        OpenFileKind::UnixPair {
            sock_type,
            peer_ino,
            queue,
            shutdown,
            ..
        } => format!(
            ", {}, {}, {} messages ({} bytes) queued{}",
            match *sock_type {
                1 => "stream",
                2 => "datagram",
                _ => "seqpacket",
            },
            if *peer_ino == 0 {
                "peer closed".to_string()
            } else {
                format!("peer socket:[{peer_ino}]")
            },
            queue.len(),
            queue.iter().map(|q| q.0.len()).sum::<usize>(),
            match shutdown {
                0 => "",
                1 => ", shut down for reading",
                2 => ", shut down for writing",
                _ => ", shut down",
            }
        ),
        OpenFileKind::UnixSocket {
            sock_type,
            name,
            backlog,
            dir,
            connect_to,
            queue,
            ..
        } => format!(
            ", {}, {}{}{}{}{}",
            match *sock_type {
                1 => "stream",
                2 => "datagram",
                _ => "seqpacket",
            },
            name.as_deref()
                .map_or_else(|| "unbound".to_string(), |n| format!("bound to {n}")),
            backlog
                .map(|b| format!(", listening (backlog {b})"))
                .unwrap_or_default(),
            dir.as_deref()
                .map(|d| format!(", relative to {d}"))
                .unwrap_or_default(),
            connect_to
                .map(|c| format!(", connected to socket:[{c}]"))
                .unwrap_or_default(),
            if queue.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} datagrams ({} bytes) queued",
                    queue.len(),
                    queue.iter().map(|q| q.data.0.len()).sum::<usize>()
                )
            }
        ),
        OpenFileKind::InetSocket {
            family,
            sock_type,
            local,
            peer,
            backlog,
            options,
            dropped,
        } => {
            let mut s = format!(
                ", {} {}, {}",
                if *sock_type == 1 { "TCP" } else { "UDP" },
                if *family == 10 { "IPv6" } else { "IPv4" },
                local
                    .as_ref()
                    .map_or_else(|| "unbound".to_string(), |a| format!("bound to {a}"))
            );
            if let Some(p) = peer {
                s.push_str(&format!(", connected to {p}"));
            }
            match backlog {
                Some(b) => s.push_str(&format!(", listening (backlog {b})")),
                None if *sock_type == 1 => s.push_str(", not listening"),
                None => {}
            }
            let mut set = Vec::new();
            for (on, name) in [
                (options.reuseaddr, "SO_REUSEADDR"),
                (options.reuseport, "SO_REUSEPORT"),
                (options.keepalive, "SO_KEEPALIVE"),
                (options.broadcast, "SO_BROADCAST"),
                (options.v6only, "IPV6_V6ONLY"),
                (options.nodelay, "TCP_NODELAY"),
                (options.freebind, "IP_FREEBIND"),
            ] {
                if on {
                    set.push(name.to_string());
                }
            }
            if options.defer_accept != 0 {
                set.push(format!("TCP_DEFER_ACCEPT {}", options.defer_accept));
            }
            if options.rcvbuf != 0 {
                set.push(format!("SO_RCVBUF {}", options.rcvbuf));
            }
            if options.sndbuf != 0 {
                set.push(format!("SO_SNDBUF {}", options.sndbuf));
            }
            if let Some(dev) = &options.bind_device {
                set.push(format!("SO_BINDTODEVICE {dev}"));
            }
            if !set.is_empty() {
                s.push_str(&format!(" [{}]", set.join(", ")));
            }
            if *dropped != 0 {
                s.push_str(&format!(", {dropped} queued datagrams not kept"));
            }
            s
        }
        OpenFileKind::PtyMaster { index, tty } => {
            let w = tty.winsize;
            let mut out = format!(
                ", /dev/pts/{index} ({}x{}), termios iflag {:#o} oflag {:#o} cflag {:#o} lflag \
                 {:#o}",
                w.rows,
                w.cols,
                tty.termios.iflag,
                tty.termios.oflag,
                tty.termios.cflag,
                tty.termios.lflag
            );
            for (on, what) in [
                (tty.packet, "packet mode"),
                (tty.locked, "locked"),
                (tty.master_exclusive, "master exclusive"),
                (tty.slave_exclusive, "slave exclusive"),
            ] {
                if on {
                    out.push_str(&format!(", {what}"));
                }
            }
            if tty.slave_closed {
                out.push_str(", slave closed (the master sees a hang-up)");
            }
            if let Some(mode) = tty.slave_mode {
                out.push_str(&format!(", slave mode {mode:04o}"));
            }
            if let Some(sid) = tty.session {
                out.push_str(&format!(", controlling terminal of session {sid}"));
            }
            if let Some(pgrp) = tty.foreground {
                out.push_str(&format!(", foreground group {pgrp}"));
            }
            if tty.lost.total() != 0 {
                out.push_str(&format!(", {} queued bytes not saved", tty.lost.total()));
            }
            out
        }
        OpenFileKind::PtySlave { index, dev_tty } => format!(
            ", slave of /dev/pts/{index}{}",
            if *dev_tty {
                " (opened as /dev/tty, its controlling terminal)"
            } else {
                ""
            }
        ),
        _ => String::new(),
    }
}

/// A file whose content is in the image, in one line (`None` for a
/// task's memory).
fn file_space(s: &Space) -> Option<String> {
    match s {
        Space::Memfd {
            name,
            size,
            seals,
            mode,
        } => Some(format!(
            "memfd {}, {size} bytes, seals {seals:#x}{}",
            show(name),
            mode.map(|m| format!(", mode {m:04o}")).unwrap_or_default()
        )),
        Space::Unlinked {
            path,
            size,
            mode,
            owner,
        } => Some(format!(
            "file unlinked while open {}, {size} bytes, mode {mode:04o}{}",
            show(path),
            owner
                .map(|(u, g)| format!(", owner {u}:{g}"))
                .unwrap_or_default()
        )),
        Space::Shmem { size } => Some(format!(
            "shared anonymous memory of several processes, {size} bytes"
        )),
        _ => None,
    }
}

fn vma_label(p: &ProcessState, v: &Vma) -> String {
    match v.file.and_then(|i| p.mapped_files.get(i as usize)) {
        Some(f) => f.path.clone(),
        None => v.name.clone(),
    }
}

/// `YYYY-MM-DD hh:mm:ss UTC`.
pub(crate) fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let d = ckpt_policy::Date::from_days_since_epoch(days);
    let t = secs % 86_400;
    format!("{d} {:02}:{:02}:{:02} UTC", t / 3600, t / 60 % 60, t % 60)
}

fn signer(reader: &ImageReader) -> Option<String> {
    match reader.signature() {
        SignatureStatus::Signed { key } => Some(key.key_id().to_string()),
        SignatureStatus::Unsigned => None,
    }
}

pub(crate) fn inspect(caller: &Caller, path: &Path, json: bool) -> Result<Exit, Fail> {
    let file = open_as_caller(caller, path)?;
    let reader = match ImageReader::open(file) {
        Ok(r) => r,
        Err(e @ ckpt_core::image::ImageError::Io { .. }) => {
            return Err(Fail::with(Exit::Other, "cannot read the image", e))
        }
        Err(e) => {
            if json {
                outln!(
                    "{}",
                    json!({"schema": 1, "untrusted_view": true, "integrity": "tampered", "error": error_chain(&e)})
                );
            }
            errln!(
                "{PROG}: {}: {}",
                show(&path.to_string_lossy()),
                error_chain(&e)
            );
            return Ok(Exit::Tampered);
        }
    };
    if json {
        outln!("{}", to_json(&reader));
    } else {
        print_text(path, &reader);
    }
    Ok(Exit::Ok)
}

fn to_json(reader: &ImageReader) -> Value {
    let m = reader.manifest();
    let Some(p) = m.first_task() else {
        // The reader validated the manifest: it has a task.
        return Value::Null;
    };
    let total: u64 = m.chunks.iter().map(|c| c.len).sum();
    let vmas: Vec<Value> = p
        .vmas
        .iter()
        .map(|v| {
            json!({
                "start": format!("{:#x}", v.start),
                "end": format!("{:#x}", v.end),
                "size": v.end.saturating_sub(v.start),
                "prot": prot(v),
                "kind": kind(v.kind),
                "offset": v.offset,
                "name": vma_label(p, v),
            })
        })
        .collect();
    let fds: Vec<Value> = p
        .fds
        .iter()
        .map(|fd| {
            let d = m.files.get(fd.description as usize);
            json!({
                "fd": fd.fd,
                "cloexec": fd.cloexec,
                "kind": d.map(|d| file_kind(&d.kind)),
                "path": d.map(|d| d.path.clone()),
                "flags": d.map(|d| format!("{:#o}", d.flags)),
                "offset": d.map(|d| d.offset),
                "connected_to": d.and_then(|d| match &d.kind {
                    OpenFileKind::External { connected_to } => Some(connected_to.clone()),
                    _ => None,
                }),
                "state": d.map(|d| anonymous_state(&d.kind).trim_start_matches(", ").to_string()),
                "locks": d.map(|d| d.locks.iter().map(|l| json!({
                    "kind": format!("{:?}", l.kind).to_lowercase(),
                    "write": l.write,
                    "start": l.start,
                    "end": l.end,
                })).collect::<Vec<_>>()),
            })
        })
        .collect();
    let files: Vec<Value> = p
        .mapped_files
        .iter()
        .map(|f| json!({"path": f.path, "size": f.size, "mode": format!("{:o}", f.mode), "uid": f.uid, "gid": f.gid, "digest": hex(&f.digest)}))
        .collect();
    let mut v = json!({
        "schema": 1,
        "untrusted_view": true,
        "note": BANNER,
        "image_id": hex(&m.image_id),
        "format_version": m.format_version,
        "created_unix": m.created_unix,
        "host": {"hostname": m.host.hostname, "machine_id": m.host.machine_id, "boot_id": m.host.boot_id},
        "kernel_release": m.kernel_release,
        "arch": m.arch,
        "cpu": {"xsave_features": format!("{:#x}", m.cpu.xsave_features), "xsave_size": m.cpu.xsave_size},
        "requester": {"uid": m.requester.uid, "gid": m.requester.gid, "groups": m.requester.groups},
        "signed": signer(reader).is_some(),
        "key_id": signer(reader),
        "attestation": reader.attestation().map(|a| json!({
            "kind": "tpm2-quote",
            "attestation_key": a.ak.to_line(),
            "pcr_bank": "sha256",
            "pcrs": a.pcrs.iter().map(|p| (p.index.to_string(), Value::from(hex(&p.value)))).collect::<serde_json::Map<_, _>>(),
            "policy": crate::attest::policy_line(&a.pcrs),
        })),
        "digest_algorithm": m.digest_algorithm.name(),
        "chunks": m.chunks.len(),
        "memory_bytes": total,
        "processes": m.tasks.len(),
        "file_table": m.files.len(),
        "spaces": m.spaces.len(),
        "file_spaces": m
            .spaces
            .iter()
            .enumerate()
            .filter_map(|(i, s)| file_space(s).map(|t| json!({"space": i, "content": t})))
            .collect::<Vec<_>>(),
        "process": {
            "pid": p.pid, "ppid": p.ppid, "sid": p.sid, "pgid": p.pgid,
            "comm": p.comm,
            "exe": {"path": p.exe.path, "size": p.exe.size, "digest": hex(&p.exe.digest)},
            "cwd": p.cwd,
            "umask": format!("{:04o}", p.umask),
            "threads": p.threads.len(),
            "thread_list": p.threads.iter().map(|t| serde_json::json!({
                "tid": t.tid,
                "name": t.name,
                "cached_tid": t.cached_tid_at != 0,
                "robust_futexes": t.robust_futexes.len(),
                "pending": t.pending.len(),
            })).collect::<Vec<_>>(),
            "oom_score_adj": p.oom_score_adj,
            "child_subreaper": p.child_subreaper,
            "pdeathsig": p.pdeathsig,
            "posix_timers": p.posix_timers,
            "seccomp_filters": p.seccomp_filters.iter().map(|f| json!({
                "instructions": f.program.len(), "log": f.log,
            })).collect::<Vec<_>>(),
            "sched": p.sched,
        },
        "credentials": p.creds,
        "mappings": vmas,
        "fds": fds,
        "mapped_files": files,
    });
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "chunk_digest".into(),
            ckpt_core::image::digest::chunk_digest_name(m).into(),
        );
        o.insert("compression".into(), m.compression.map(|c| c.name()).into());
        o.insert(
            "stored_bytes".into(),
            m.chunks.iter().map(|c| c.file_len()).sum::<u64>().into(),
        );
    }
    v
}

fn print_text(path: &Path, reader: &ImageReader) {
    let m = reader.manifest();
    let total: u64 = m.chunks.iter().map(|c| c.len).sum();
    outln!("{BANNER}");
    outln!("image: {}", show(&path.to_string_lossy()));
    outln!("image id: {}", hex(&m.image_id));
    outln!("format version: {}", m.format_version);
    outln!("created: {} (unix {})", utc(m.created_unix), m.created_unix);
    outln!(
        "host: {} (machine id {}, boot id {})",
        show(&m.host.hostname),
        show(&m.host.machine_id),
        show(&m.host.boot_id)
    );
    outln!("kernel: {} ({})", show(&m.kernel_release), show(&m.arch));
    outln!(
        "cpu: xsave features {:#x}, xsave size {}",
        m.cpu.xsave_features,
        m.cpu.xsave_size
    );
    outln!(
        "requester: uid {} gid {} groups {:?}",
        m.requester.uid,
        m.requester.gid,
        m.requester.groups
    );
    match signer(reader) {
        Some(id) => outln!("signature: key id {id} (trust not checked here)"),
        None => outln!("signature: none (unsigned)"),
    }
    match reader.attestation() {
        None => outln!("attestation: none"),
        Some(a) => {
            outln!(
                "attestation: TPM quote by attestation key {} over sha256 PCRs (trust not checked here):",
                a.ak.key_id()
            );
            for p in &a.pcrs {
                outln!("  PCR {:>2}: {}", p.index, hex(&p.value));
            }
            outln!(
                "  as a policy condition: {}",
                crate::attest::policy_line(&a.pcrs)
            );
        }
    }
    let stored: u64 = m.chunks.iter().map(|c| c.file_len()).sum();
    outln!(
        "memory: {} chunks, {} bytes ({}{})",
        m.chunks.len(),
        total,
        ckpt_core::image::digest::chunk_digest_name(m),
        match m.compression {
            Some(c) => format!(", {} to {stored} bytes", c.name()),
            None => String::new(),
        }
    );
    outln!(
        "processes: {}, open file descriptions: {}, spaces: {}",
        m.tasks.len(),
        m.files.len(),
        m.spaces.len()
    );
    for (i, space) in m.spaces.iter().enumerate() {
        if let Some(text) = file_space(space) {
            outln!("  space {i}: {text}");
        }
    }
    for (i, p) in m.tasks.iter().enumerate() {
        outln!();
        if m.tasks.len() > 1 {
            outln!("task {i}:");
        }
        print_task(m, p);
    }
}

fn print_task(m: &Manifest, p: &ProcessState) {
    let c = &p.creds;
    outln!("process:");
    outln!(
        "  pid {} (ppid {}, sid {}, pgid {}), comm {:?}",
        p.pid,
        p.ppid,
        p.sid,
        p.pgid,
        show(&p.comm)
    );
    outln!(
        "  exe: {} ({} bytes, {} {})",
        show(&p.exe.path),
        p.exe.size,
        m.digest_algorithm.name(),
        hex(&p.exe.digest)
    );
    outln!("  cwd: {}", show(&p.cwd));
    outln!("  umask: {:04o}", p.umask);
    outln!("  threads: {}", p.threads.len());
    for t in p.threads.iter().skip(1) {
        outln!(
            "    thread {} {:?}{}{}",
            t.tid,
            show(&t.name),
            if t.robust_futexes.is_empty() {
                String::new()
            } else {
                format!(", owns {} robust futexes", t.robust_futexes.len())
            },
            if t.pending.is_empty() {
                String::new()
            } else {
                format!(", {} signals queued", t.pending.len())
            }
        );
    }
    outln!("  oom_score_adj: {}", p.oom_score_adj);
    outln!(
        "  child subreaper: {}",
        if p.child_subreaper { "yes" } else { "no" }
    );
    if p.pdeathsig != 0 {
        outln!(
            "  parent-death signal: {} (recorded; not restored)",
            p.pdeathsig
        );
    }
    if let Some(s) = &p.sched {
        outln!(
            "  scheduling: policy {}, priority {}, nice {}{}",
            s.policy,
            s.priority,
            s.nice,
            if s.reset_on_fork {
                ", reset on fork"
            } else {
                ""
            }
        );
    }
    for (i, f) in p.seccomp_filters.iter().enumerate() {
        outln!(
            "  seccomp filter {}: {} instructions{}",
            i + 1,
            f.program.len(),
            if f.log { ", log" } else { "" }
        );
    }
    for t in &p.posix_timers {
        outln!(
            "  POSIX timer {}: clock {}, notify {}, signal {}, value {:#x}, {} ns left, period {} ns",
            t.id,
            t.clockid,
            t.notify,
            t.signo,
            t.value,
            t.value_ns,
            t.interval_ns
        );
    }
    outln!("credentials:");
    outln!(
        "  uid: real {}, effective {}, saved {}, fs {}",
        c.uid[0],
        c.uid[1],
        c.uid[2],
        c.uid[3]
    );
    outln!(
        "  gid: real {}, effective {}, saved {}, fs {}",
        c.gid[0],
        c.gid[1],
        c.gid[2],
        c.gid[3]
    );
    outln!("  groups: {:?}", c.groups);
    outln!(
        "  capabilities: permitted {:#x}, effective {:#x}, inheritable {:#x}, bounding {:#x}, ambient {:#x}",
        c.cap_permitted, c.cap_effective, c.cap_inheritable, c.cap_bounding, c.cap_ambient
    );
    outln!(
        "  securebits {:#x}, no_new_privs {}, seccomp mode {}",
        c.securebits,
        c.no_new_privs,
        c.seccomp_mode
    );
    outln!("mappings ({}):", p.vmas.len());
    for v in &p.vmas {
        outln!(
            "  {:#014x}-{:#014x} {} {:>10} {:<16} {}",
            v.start,
            v.end,
            prot(v),
            v.end.saturating_sub(v.start),
            kind(v.kind),
            show(&vma_label(p, v))
        );
    }
    outln!("fds ({}):", p.fds.len());
    for fd in &p.fds {
        match m.files.get(fd.description as usize) {
            Some(d) => outln!(
                "  {:>4}: {} {} (flags {:#o}, offset {}{}{}{}{})",
                fd.fd,
                file_kind(&d.kind),
                show(&d.path),
                d.flags,
                d.offset,
                anonymous_state(&d.kind),
                locks_note(d),
                if fd.cloexec { ", close-on-exec" } else { "" },
                external_note(&d.kind, fd.fd)
            ),
            None => outln!("  {:>4}: (invalid description {})", fd.fd, fd.description),
        }
    }
}
