//! `ckpt-sign dump`: the order of the privileged steps.
//!
//! 1. Decide how to sign before touching the target: `--unsigned`; `--key
//!    FILE` (read as the caller); or the host key, whose public half must be
//!    present (its secret is read only after the dump).
//! 2. `pidfd_open`, then ask the kernel, as the caller, whether the caller
//!    may ptrace-attach to the pid (a one-byte `process_vm_readv`, the
//!    `PTRACE_MODE_ATTACH_REALCREDS` check); the pidfd still being alive
//!    proves the pid named the same process during the check.
//! 3. Create the output's temporary file as the caller.
//! 4. Freeze the target; check the pidfd again; ask the kernel again now
//!    that the target cannot exec any more (a target that exec'ed a set-id
//!    program in between is refused); read its credentials.
//! 5. Dump, then (with `--leave-running`) resume at once.
//! 6. Read the host key as root, finish (sign) the image, drop the key.
//! 7. Send the audit line of the finished image (`outcome=ok`, its image
//!    id and signer), then rename into place as the caller; only then kill
//!    the target (default).
//!
//! Any failure before step 7 resumes the target (dropping `Frozen` does)
//! and removes the temporary file (dropping `PendingOutput` does).
//!
//! The whole dump runs under a [`Shield`] (raised by `main`): the caller
//! cannot kill or stop the helper (setuid run), and a terminal signal
//! received before step 7 rolls the dump back (target resumed untouched,
//! temporary file removed, exit 10); from step 7 on the dump completes.
//! No result is printed until the dump is over and the shield lowered.
//!
//! One audit line per dump (`ckpt_privsep::audit`): `event=dump caller_uid=
//! pid= image_id= signer= signer_name= outcome=ok|refused|failed reason=`,
//! sent before the image gets its final name when the dump succeeds, at the
//! end otherwise; a second line (`outcome=failed`) follows only when a step
//! after the first line fails (the rename, or killing the target). When the
//! audit log is unreachable the dump carries on, with a warning on stderr.

use std::io::Read;

use ckpt_core::dump::FrozenTree;
use ckpt_core::image::{ImageMeta, ImageWriter, ManifestSigner, Requester};
use ckpt_keys::SigningKey;
use ckpt_privsep::access::{caller_may_ptrace_attach, open_pidfd, pidfd_alive, AccessError};
use ckpt_privsep::as_caller::{
    create_output, open_fd_for_read, open_for_read, open_path, CreateError,
};
use ckpt_privsep::audit::{AuditLog, Record, Severity};
use ckpt_privsep::report::{error_chain, Exit};
use ckpt_privsep::shield::{Interrupted, Shield};
use ckpt_privsep::Caller;

use crate::{DumpArgs, Fail, PROG};

/// Largest key file read for `--key`.
const MAX_KEY_FILE: u64 = 4096;

/// How the image will be signed.
enum SignWith {
    Unsigned,
    /// The caller's own key, already loaded.
    UserKey(Box<SigningKey>),
    /// The host key (file or TPM, see `crate::tpm`), loaded (as root)
    /// after the dump.
    HostKey(Box<crate::tpm::HostPlan>),
}

fn access_fail(pid: i32, e: AccessError) -> Fail {
    match e {
        AccessError::NoSuchProcess(_) => Fail::new(
            Exit::DumpFailed,
            format!("cannot dump pid {pid}: no such process; check the pid (`ps -p {pid}`)"),
        ),
        e => Fail::with(
            Exit::DumpFailed,
            format!("cannot dump pid {pid}: cannot check whether you may trace it"),
            e,
        ),
    }
}

/// Why the caller may not ptrace-attach to `pid`, as far as `/proc` tells
/// (the kernel's answer was no; this only names the likely reason). The
/// status file is read as the caller: under `hidepid` the caller learns
/// nothing about the process from this message that it could not read.
fn why_denied(caller: &Caller, pid: i32) -> String {
    let path = std::path::PathBuf::from(format!("/proc/{pid}/status"));
    let status = open_for_read(caller, &path)
        .ok()
        .and_then(|f| {
            let mut text = String::new();
            f.take(64 * 1024).read_to_string(&mut text).ok()?;
            Some(text)
        })
        .and_then(|t| ckpt_core::procfs::status::parse_status(&t).ok());
    match status {
        Some(s) if s.uid.iter().any(|&u| u != caller.uid) && s.uid[0] != caller.uid => format!(
            "it belongs to another user (uid {}); only root or that user can dump it",
            s.uid[0]
        ),
        Some(s)
            if s.uid.iter().any(|&u| u != caller.uid) || s.gid.iter().any(|&g| g != caller.gid) =>
        {
            "it runs with other ids than yours (a set-user-id or set-group-id program); \
             only root can dump it"
                .to_owned()
        }
        _ => "the kernel does not let you trace it (it made itself non-dumpable, or the \
              Yama ptrace_scope setting allows tracing only of your own children); \
              only root can dump it"
            .to_owned(),
    }
}

fn denied(caller: &Caller, pid: i32) -> Fail {
    Fail::new(
        Exit::AccessDenied,
        format!("cannot dump pid {pid}: {}", why_denied(caller, pid)),
    )
}

/// The audit record of a dump and whether it was sent already.
pub(crate) struct Audit {
    pub record: Record,
    /// Sent before the rename (`outcome=ok`).
    sent: bool,
    /// Sending before the rename failed (and was warned about).
    unreachable: bool,
}

impl Audit {
    /// The record of a dump, before anything is known.
    pub(crate) fn new(caller: &Caller, args: &DumpArgs) -> Audit {
        let mut r = Record::new("dump");
        r.set("caller_uid", caller.uid.to_string())
            .set("pid", args.pid.to_string())
            .set("image_id", "")
            .set("signer", "")
            .set("signer_name", "")
            .set("outcome", "")
            .set("reason", "");
        Audit {
            record: r,
            sent: false,
            unreachable: false,
        }
    }

    fn send(&self, severity: Severity) -> Result<(), String> {
        AuditLog::connect()
            .and_then(|log| log.send(PROG, &self.record, severity))
            .map_err(|e| error_chain(&e))
    }

    /// Right before the image gets its final name. A dump does not depend
    /// on the audit log: a failure is a warning.
    fn before_commit(&mut self, warnings: &mut Vec<String>) {
        self.record.set("outcome", "ok");
        match self.send(Severity::Notice) {
            Ok(()) => self.sent = true,
            Err(why) => {
                self.unreachable = true;
                warnings.push(format!("warning: audit log unavailable: {why}"));
            }
        }
    }

    /// At the end: send the outcome unless the record sent before the
    /// rename already tells it. Returns the warnings to print.
    pub(crate) fn finish(mut self, result: &Result<(), Fail>, warnings: &mut Vec<String>) {
        let severity = match result {
            Ok(()) if self.sent => return,
            // Tried right before the rename, and already warned about.
            Ok(()) if self.unreachable => return,
            Ok(()) => {
                self.record.set("outcome", "ok");
                Severity::Notice
            }
            Err(f) => {
                let outcome = match f.exit {
                    Exit::AccessDenied | Exit::Usage | Exit::PolicyRefusal => "refused",
                    _ => "failed",
                };
                self.record.set("outcome", outcome).set("reason", f.text());
                Severity::Warning
            }
        };
        if let Err(why) = self.send(severity) {
            warnings.push(format!("warning: audit log unavailable: {why}"));
        }
    }
}

/// What `main` prints once the dump is over.
#[derive(Default)]
pub(crate) struct Report {
    pub warnings: Vec<String>,
    /// What the image does not keep, or keeps differently (`notice: ...`
    /// on stderr; `notices` in the JSON).
    pub notices: Vec<String>,
    /// The image written, when the dump succeeded.
    pub done: Option<Done>,
}

/// The image a successful dump wrote.
pub(crate) struct Done {
    pub path: std::path::PathBuf,
    pub image_id: String,
    pub size: u64,
    /// The signing key's id (`None`: unsigned).
    pub key_id: Option<String>,
    /// `host-key` or `caller-key` (`None`: unsigned).
    pub signer: Option<&'static str>,
    /// How the host key signed (`file host key`, `TPM key, TPM quote ...`).
    pub signed_with: Option<String>,
    pub pid: i32,
    pub processes: usize,
    pub left_running: bool,
    /// With `--leave-running`: how long the target was stopped.
    pub frozen_ms: Option<f64>,
}

impl Report {
    /// The text lines of a successful dump: notices, then `wrote ...`.
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .notices
            .iter()
            .map(|n| format!("notice: {n}"))
            .collect();
        if let Some(d) = &self.done {
            let signed = match (&d.key_id, &d.signed_with) {
                (Some(id), Some(with)) => format!("signed by key {id} ({with})"),
                (Some(id), None) => format!("signed by key {id}"),
                (None, _) => "unsigned".to_owned(),
            };
            out.push(format!(
                "wrote {}: image {}, {signed}, {} bytes",
                d.path.display(),
                d.image_id,
                d.size
            ));
            if let Some(ms) = d.frozen_ms {
                out.push(format!("pid {} was frozen for {ms:.1} ms", d.pid));
            }
        }
        out
    }

    /// `dump --json`: one object (docs/JSON.md, "ckpt-sign dump").
    pub(crate) fn json(&self) -> serde_json::Value {
        let d = self.done.as_ref();
        serde_json::json!({
            "schema": 1,
            "image": d.map(|d| d.path.to_string_lossy().into_owned()),
            "image_id": d.map(|d| d.image_id.clone()),
            "size": d.map(|d| d.size),
            "signed": d.is_some_and(|d| d.key_id.is_some()),
            "key_id": d.and_then(|d| d.key_id.clone()),
            "signer": d.and_then(|d| d.signer),
            "signed_with": d.and_then(|d| d.signed_with.clone()),
            "pid": d.map(|d| d.pid),
            "processes": d.map(|d| d.processes),
            "left_running": d.is_some_and(|d| d.left_running),
            "frozen_ms": d.and_then(|d| d.frozen_ms),
            "notices": self.notices,
            "warnings": self.warnings,
        })
    }
}

fn interrupted(i: Interrupted, what: &str) -> Fail {
    Fail::new(Exit::Interrupted, format!("dump: {i}; {what}"))
}

pub(crate) fn run(
    caller: &Caller,
    args: &DumpArgs,
    audit: &mut Audit,
    shield: &Shield,
    report: &mut Report,
) -> Result<(), Fail> {
    let untouched = "nothing was done";
    let rolled_back = "the target was resumed untouched and no image was written";
    let record = &mut audit.record;
    let pid = i32::try_from(args.pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| {
            Fail::new(
                Exit::Usage,
                format!(
                    "dump: invalid pid {}: give the pid of a running process (a number from 1)",
                    args.pid
                ),
            )
        })?;

    // 1. How to sign.
    let sign_with = plan_signing(caller, args)?;
    match &sign_with {
        SignWith::Unsigned => record.set("signer", "unsigned"),
        SignWith::UserKey(k) => record
            .set("signer", k.public_key().key_id().to_string())
            .set("signer_name", "caller-key"),
        SignWith::HostKey(_) => record.set("signer_name", "host-key"),
    };

    shield.check().map_err(|i| interrupted(i, untouched))?;

    // 2. Access, as the caller, on a pidfd.
    let pidfd = open_pidfd(pid).map_err(|e| access_fail(pid, e))?;
    if !caller_may_ptrace_attach(caller, pid).map_err(|e| access_fail(pid, e))? {
        return Err(denied(caller, pid));
    }
    if !pidfd_alive(&pidfd) {
        return Err(Fail::new(
            Exit::DumpFailed,
            format!(
                "cannot dump pid {pid}: it exited before it could be frozen; nothing was written"
            ),
        ));
    }

    // 3. The output, as the caller.
    let pending = create_output(caller, &args.output, args.force).map_err(|e| {
        let exit = if e.is_access_denied() {
            Exit::AccessDenied
        } else {
            Exit::DumpFailed
        };
        let hint = if matches!(e, CreateError::Exists { .. }) {
            "; use --force to replace it"
        } else {
            ""
        };
        Fail::new(
            exit,
            format!(
                "cannot dump pid {pid}: cannot create the image: {}{hint}; the process was \
                 not touched",
                error_chain(&e)
            ),
        )
    })?;

    shield.check().map_err(|i| interrupted(i, untouched))?;

    // 4. Freeze, then check again. A terminal signal from here on rolls
    // back at the next step (dropping `frozen` resumes the target).
    let watch = pidfd
        .try_clone()
        .map_err(|e| Fail::with(Exit::DumpFailed, "dump: cannot duplicate the pidfd", e))?;
    let frozen_at = std::time::Instant::now();
    if args.tree {
        // A tree's capture reads and frees many blocks of 16 KiB to a few
        // hundred (/proc files, lists) for each process: mapped on their
        // own, they are given back when freed instead of staying in the
        // heap (peak RSS of a 50-process dump 9.9 → 7.5 MiB, for ~25 %
        // more time; a single process is not affected).
        let _ = ckpt_core::sys::map_allocations_from(16 << 10);
    }
    let seized = if args.tree {
        FrozenTree::seize(pidfd, pid)
    } else {
        FrozenTree::seize_process(pidfd, pid)
    };
    let mut frozen = seized.map_err(|e| {
        Fail::with(
            Exit::DumpFailed,
            format!("cannot dump pid {pid}: cannot freeze it (it was left running untouched)"),
            e,
        )
    })?;
    frozen.set_cancel(ckpt_privsep::shield::interrupted);
    // Paths the dump finds with privilege (inotify watches) are kept only
    // if the caller can look them up itself.
    let as_caller = caller.clone();
    frozen.set_path_opener(std::rc::Rc::new(move |p| {
        open_path(&as_caller, std::path::Path::new(p)).ok()
    }));
    // The content of a file the target holds write-only (and unlinked) is
    // read only through an open the caller could make themselves.
    let reader = caller.clone();
    frozen.set_fd_reader(std::rc::Rc::new(move |owner, fd| {
        open_fd_for_read(&reader, owner, fd)
            .map(std::os::fd::OwnedFd::from)
            .map_err(|e| match e {
                ckpt_privsep::as_caller::OpenError::Open { errno, .. } => errno.desc().to_string(),
                e => e.to_string(),
            })
    }));
    // Digests of root's unchanged mapped files (libc, the loader) are
    // remembered in the state directory instead of hashed on every dump.
    let digest_cache = std::rc::Rc::new(std::cell::RefCell::new(
        ckpt_core::filedigests::FileDigestCache::new(std::path::Path::new(
            ckpt_core::paths::STATEDIR,
        )),
    ));
    frozen.set_digest_cache(digest_cache.clone());
    if !pidfd_alive(&watch) {
        return Err(Fail::new(
            Exit::DumpFailed,
            format!(
                "cannot dump pid {pid}: it exited before it could be frozen; nothing was written"
            ),
        ));
    }
    if !caller_may_ptrace_attach(caller, pid).map_err(|e| access_fail(pid, e))? {
        // Dropping `frozen` resumes the target untouched.
        drop(frozen);
        return Err(Fail::new(
            Exit::AccessDenied,
            format!(
                "cannot dump pid {pid}: its credentials changed while it was being frozen \
                 (it ran a set-id program), and you may no longer trace it; it was resumed \
                 untouched"
            ),
        ));
    }
    // Every other process of the tree, now that none can exec or fork.
    for &p in frozen.pids().iter().skip(1) {
        if !caller_may_ptrace_attach(caller, p).map_err(|e| access_fail(p, e))? {
            drop(frozen);
            return Err(Fail::new(
                Exit::AccessDenied,
                format!(
                    "cannot dump the tree of pid {pid}: its descendant pid {p}: {}; \
                     the tree was resumed untouched",
                    why_denied(caller, p)
                ),
            ));
        }
    }
    let frozen_creds = frozen.status_creds().map_err(|e| {
        Fail::with(
            Exit::DumpFailed,
            format!("cannot dump pid {pid}: cannot read its credentials"),
            e,
        )
    })?;

    // 5. Dump. The writer starts its hashing and I/O threads only now, after
    // the last as-caller child has been forked and reaped: no fork happens
    // while they run (`finish` joins them before the commit forks again).
    let image_file = pending
        .file
        .try_clone()
        .map_err(|e| Fail::with(Exit::DumpFailed, "dump: cannot use the image file", e))?;
    // The writer goes through the page cache and starts writeback as it
    // goes: the capture waits for memory copies, not for the disk (a
    // target left running is released before the image is made durable).
    let writer = ImageWriter::new(image_file);
    let mut writer =
        writer.map_err(|e| Fail::with(Exit::DumpFailed, "dump: cannot start the image", e))?;
    if args.compress {
        writer
            .compress_with(ckpt_core::image::Compression::Lz4Blocks)
            .map_err(|e| Fail::with(Exit::DumpFailed, "dump: cannot start the image", e))?;
    }
    // A bar on the caller's terminal when the dump lasts (cleared when
    // `bar` is dropped, before anything is printed); its total is the
    // frozen processes' resident anonymous memory, an estimate.
    let bar = ckpt_privsep::progress::Bar::new(
        "dump",
        frozen
            .pids()
            .iter()
            .filter_map(|&p| ckpt_core::progress::resident_anon_bytes(p))
            .sum(),
    );
    if let Some(observer) = bar.observer() {
        writer.observe(observer);
    }
    let result = frozen.dump(&mut writer).map_err(|e| match e {
        ckpt_core::dump::DumpError::Cancelled { .. } => match shield.check() {
            Err(i) => interrupted(i, rolled_back),
            Ok(()) => Fail::with(Exit::DumpFailed, format!("cannot dump pid {pid}"), e),
        },
        e => Fail::with(Exit::DumpFailed, format!("cannot dump pid {pid}"), e),
    })?;
    let root_task = result.process().ok_or_else(|| {
        Fail::new(
            Exit::DumpFailed,
            format!("cannot dump pid {pid}: no process was captured"),
        )
    })?;
    for task in &result.tasks {
        for f in &task.fds {
            let connected = result
                .files
                .get(f.description as usize)
                .and_then(|d| match &d.kind {
                    ckpt_core::state::OpenFileKind::External { connected_to } if f.fd > 2 => {
                        Some(connected_to)
                    }
                    _ => None,
                });
            let dropped = result
                .files
                .get(f.description as usize)
                .and_then(|d| match &d.kind {
                    ckpt_core::state::OpenFileKind::InetSocket { dropped, .. } if *dropped > 0 => {
                        Some(*dropped)
                    }
                    _ => None,
                });
            if let Some(n) = dropped {
                report.notices.push(format!(
                    "{} is a UDP socket with {n} datagrams queued; they are not kept \
                     (UDP does not promise delivery, and their senders are outside the image)",
                    if result.tasks.len() > 1 {
                        format!("pid {}'s fd {}", task.pid, f.fd)
                    } else {
                        format!("fd {}", f.fd)
                    }
                ));
            }
            if let Some(to) = connected {
                let fd = f.fd;
                let whose = if result.tasks.len() > 1 {
                    format!("pid {}'s fd {fd}", task.pid)
                } else {
                    format!("fd {fd}")
                };
                report.notices.push(format!(
                    "{whose} is connected outside the process ({}); restore connects it \
                     to /dev/null, or to the restore caller's fd {fd} with --inherit-fd {fd}",
                    ckpt_privsep::report::escape_controls(to)
                ));
            }
        }
    }
    // Bytes queued in a pseudo-terminal inside the image are not saved.
    for d in &result.files {
        if let ckpt_core::state::OpenFileKind::PtyMaster { index, tty } = &d.kind {
            let lost = tty.lost;
            if lost.total() != 0 {
                report.notices.push(format!(
                    "the pseudo-terminal /dev/pts/{index} held {} queued bytes ({} unread \
                     by the master, {} unread by the slave); a terminal's queues cannot be read \
                     without consuming them, so they are not in the image",
                    lost.total(),
                    u64::from(lost.master_in) + u64::from(lost.slave_out),
                    u64::from(lost.slave_in) + u64::from(lost.master_out),
                ));
            }
        }
    }
    let c = &root_task.creds;
    if c.uid != frozen_creds.uid || c.gid != frozen_creds.gid || c.groups != frozen_creds.groups {
        return Err(Fail::new(
            Exit::DumpFailed,
            format!(
                "cannot dump pid {pid}: its credentials changed during the dump; it was \
                 resumed untouched, try again"
            ),
        ));
    }
    let mut frozen_ms = None;
    let frozen = if args.leave_running {
        frozen.resume().map_err(|e| {
            Fail::with(
                Exit::DumpFailed,
                format!("dump: cannot resume pid {pid}"),
                e,
            )
        })?;
        // Its memory is captured: it runs again while the image is
        // signed and made durable (said once the image is in place).
        frozen_ms = Some(frozen_at.elapsed().as_secs_f64() * 1000.0);
        None
    } else {
        Some(frozen)
    };
    digest_cache.borrow_mut().save();

    shield.check().map_err(|i| interrupted(i, rolled_back))?;

    // 6. Metadata, signature.
    let meta = image_meta(caller, &result)?;
    let mut signed_with = None;
    let signer_name = match &sign_with {
        SignWith::UserKey(_) => "caller-key",
        _ => "host-key",
    };
    let processes = result.tasks.len();
    let (finished, key_id) = {
        // Kept boxed, never moved out: dropping the box zeroizes the key
        // where it lives. The host signer holds the file key the same way,
        // or a TPM connection (closed when it is dropped).
        let host = match &sign_with {
            SignWith::HostKey(plan) => Some(plan.signer()?),
            _ => None,
        };
        let key: Option<Box<SigningKey>> = match sign_with {
            SignWith::Unsigned | SignWith::HostKey(_) => None,
            SignWith::UserKey(k) => Some(k),
        };
        let signer: Option<&dyn ManifestSigner> = match (&host, &key) {
            (Some(h), _) => Some(h as &dyn ManifestSigner),
            (None, Some(k)) => Some(k.as_ref() as &dyn ManifestSigner),
            (None, None) => None,
        };
        let key_id = signer.map(|s| s.public_key().key_id());
        if let Some(id) = &key_id {
            record.set("signer", id.to_string());
        }
        if let Some(h) = &host {
            signed_with = Some(h.describe.clone());
        }
        let finished = writer
            .finish(meta, result.into_content(), signer)
            .map_err(|e| Fail::with(Exit::DumpFailed, "dump: cannot finish the image", e))?;
        // `key` and `host` are dropped (zeroized, TPM closed) here, before
        // any further fork.
        (finished, key_id)
    };
    drop(finished.file);
    bar.clear();
    let image_id: String = finished
        .image_id
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    record.set("image_id", image_id.clone());

    // The last point where a terminal signal rolls back.
    shield.check().map_err(|i| interrupted(i, rolled_back))?;

    // 7. The audit record, then into place, then the target goes.
    audit.before_commit(&mut report.warnings);
    // `finish` fsynced the image (through a clone of this fd).
    pending
        .commit_synced()
        .map_err(|e| Fail::with(Exit::DumpFailed, "dump: cannot put the image in place", e))?;
    report.done = Some(Done {
        path: args.output.clone(),
        image_id,
        size: finished.size,
        signer: key_id.as_ref().map(|_| signer_name),
        key_id: key_id.map(|id| id.to_string()),
        signed_with,
        pid,
        processes,
        left_running: args.leave_running,
        frozen_ms,
    });
    if let Some(frozen) = frozen {
        frozen.kill().map_err(|e| {
            Fail::with(
                Exit::DumpFailed,
                format!("dump: the image is written, but pid {pid} could not be killed"),
                e,
            )
        })?;
    }
    Ok(())
}

fn plan_signing(caller: &Caller, args: &DumpArgs) -> Result<SignWith, Fail> {
    if args.unsigned {
        return Ok(SignWith::Unsigned);
    }
    if args.key.as_deref() == Some(std::path::Path::new("tpm")) {
        // `--key tpm`: the TPM host key, for root only (a key file of
        // yours named `tpm` is `--key ./tpm`).
        if !caller.is_root() || !caller.privileged {
            return Err(Fail::new(
                Exit::AccessDenied,
                format!(
                    "dump: --key tpm: permission denied: only root may sign with the TPM host key \
                     (you are uid {}); for a key file of yours named tpm, use --key ./tpm",
                    caller.uid
                ),
            ));
        }
        return Ok(SignWith::HostKey(Box::new(crate::tpm::plan(true)?)));
    }
    if let Some(path) = &args.key {
        // The caller's own key, opened as the caller, never as root.
        let file = open_for_read(caller, path).map_err(|e| {
            let exit = if e.is_access_denied() {
                Exit::AccessDenied
            } else {
                Exit::Other
            };
            Fail::with(exit, "dump: cannot open the key file (--key)", e)
        })?;
        let mut bytes = zeroize::Zeroizing::new(Vec::new());
        file.take(MAX_KEY_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| {
                Fail::with(
                    Exit::Other,
                    format!("dump: cannot read the key file {}", path.display()),
                    e,
                )
            })?;
        if bytes.len() as u64 > MAX_KEY_FILE {
            return Err(Fail::new(
                Exit::Other,
                format!(
                    "dump: {}: too large for a key file (at most {MAX_KEY_FILE} bytes); \
                     --key takes a ckpt secret key file",
                    path.display()
                ),
            ));
        }
        let key = SigningKey::from_secret_file_bytes(&bytes).map_err(|e| {
            Fail::with(
                Exit::Other,
                format!("dump: {}: not a usable key file", path.display()),
                e,
            )
        })?;
        return Ok(SignWith::UserKey(Box::new(key)));
    }
    if !caller.privileged {
        return Err(Fail::new(
            Exit::Other,
            "dump: cannot sign with the host key: ckpt-sign is not running setuid root; \
             use --key FILE (a key of yours) or --unsigned",
        ));
    }
    // The keys must be there (and the TPM answer) now; secrets are used
    // after the dump.
    Ok(SignWith::HostKey(Box::new(crate::tpm::plan(false)?)))
}

fn image_meta(caller: &Caller, result: &ckpt_core::dump::DumpResult) -> Result<ImageMeta, Fail> {
    let host_fail = |e| Fail::with(Exit::DumpFailed, "dump: cannot identify this host", e);
    Ok(ImageMeta {
        host: ckpt_core::host::HostIdentity::current().map_err(host_fail)?,
        kernel_release: ckpt_core::host::kernel_release().map_err(host_fail)?,
        arch: ckpt_core::host::arch().map_err(host_fail)?,
        cpu: result.cpu,
        vdso_digest: result.vdso_digest.clone(),
        requester: Requester {
            uid: caller.uid,
            gid: caller.gid,
            groups: caller.groups.clone(),
        },
    })
}
