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
            format!("dump: no such process: pid {pid}"),
        ),
        e => Fail::with(
            Exit::DumpFailed,
            format!("dump: cannot check access to pid {pid}"),
            e,
        ),
    }
}

fn denied(pid: i32) -> Fail {
    Fail::new(
        Exit::AccessDenied,
        format!("dump: permission denied: caller may not ptrace-attach to pid {pid}"),
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
    pub lines: Vec<String>,
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
        .ok_or_else(|| Fail::new(Exit::Usage, format!("dump: invalid pid {}", args.pid)))?;

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
        return Err(denied(pid));
    }
    if !pidfd_alive(&pidfd) {
        return Err(Fail::new(
            Exit::DumpFailed,
            format!("dump: pid {pid} exited"),
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
            " (use --force to replace it)"
        } else {
            ""
        };
        Fail::with(exit, format!("dump: cannot create the image{hint}"), e)
    })?;

    shield.check().map_err(|i| interrupted(i, untouched))?;

    // 4. Freeze, then check again. A terminal signal from here on rolls
    // back at the next step (dropping `frozen` resumes the target).
    let watch = pidfd
        .try_clone()
        .map_err(|e| Fail::with(Exit::DumpFailed, "dump: cannot duplicate the pidfd", e))?;
    let frozen_at = std::time::Instant::now();
    let seized = if args.tree {
        FrozenTree::seize(pidfd, pid)
    } else {
        FrozenTree::seize_process(pidfd, pid)
    };
    let mut frozen = seized.map_err(|e| {
        Fail::with(
            Exit::DumpFailed,
            format!("dump: cannot freeze pid {pid}"),
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
    if !pidfd_alive(&watch) {
        return Err(Fail::new(
            Exit::DumpFailed,
            format!("dump: pid {pid} exited"),
        ));
    }
    if !caller_may_ptrace_attach(caller, pid).map_err(|e| access_fail(pid, e))? {
        // Dropping `frozen` resumes the target untouched.
        drop(frozen);
        return Err(Fail::new(
            Exit::AccessDenied,
            format!(
                "dump: permission denied: caller may not ptrace-attach to pid {pid} \
                 (its credentials changed while it was being frozen)"
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
                    "dump: permission denied: pid {p}, a descendant of pid {pid}, is a process \
                     the caller may not ptrace-attach to (another user's, or running a set-id \
                     program); only root or its owner can dump it"
                ),
            ));
        }
    }
    let frozen_creds = frozen.status_creds().map_err(|e| {
        Fail::with(
            Exit::DumpFailed,
            format!("dump: cannot read the credentials of pid {pid}"),
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
    // A target left running is released once its memory is captured:
    // write through the page cache so that the capture does not wait for
    // the disk (the image is made durable after the release).
    let writer = if args.leave_running {
        ImageWriter::new_buffered(image_file)
    } else {
        ImageWriter::new(image_file)
    };
    let mut writer =
        writer.map_err(|e| Fail::with(Exit::DumpFailed, "dump: cannot start the image", e))?;
    if args.compress {
        writer.compress_with(ckpt_core::image::Compression::Lz4);
    }
    let result = frozen.dump(&mut writer).map_err(|e| match e {
        ckpt_core::dump::DumpError::Cancelled { .. } => match shield.check() {
            Err(i) => interrupted(i, rolled_back),
            Ok(()) => Fail::with(Exit::DumpFailed, "dump", e),
        },
        e => Fail::with(Exit::DumpFailed, "dump", e),
    })?;
    let root_task = result.process().ok_or_else(|| {
        Fail::new(
            Exit::DumpFailed,
            format!("dump: pid {pid}: no process was captured"),
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
                report.lines.push(format!(
                    "notice: {} is a UDP socket with {n} datagrams queued; they are not kept \
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
                report.lines.push(format!(
                    "notice: {whose} is connected outside the process ({}); restore connects it \
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
                report.lines.push(format!(
                    "notice: the pseudo-terminal /dev/pts/{index} held {} queued bytes ({} unread \
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
            format!("dump: pid {pid}: credentials changed during the dump"),
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

    shield.check().map_err(|i| interrupted(i, rolled_back))?;

    // 6. Metadata, signature.
    let meta = image_meta(caller, &result)?;
    let mut signed_with = String::new();
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
            signed_with = format!(" ({})", h.describe);
        }
        let finished = writer
            .finish(meta, result.into_content(), signer)
            .map_err(|e| Fail::with(Exit::DumpFailed, "dump: cannot finish the image", e))?;
        // `key` and `host` are dropped (zeroized, TPM closed) here, before
        // any further fork.
        (finished, key_id)
    };
    drop(finished.file);
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
    pending
        .commit()
        .map_err(|e| Fail::with(Exit::DumpFailed, "dump: cannot put the image in place", e))?;
    let signed = match key_id {
        Some(id) => format!("signed by key {id}{signed_with}"),
        None => "unsigned".to_owned(),
    };
    report.lines.push(format!(
        "wrote {}: image {image_id}, {signed}, {} bytes",
        args.output.display(),
        finished.size
    ));
    if let Some(ms) = frozen_ms {
        report
            .lines
            .push(format!("pid {pid} was frozen for {ms:.1} ms"));
    }
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
                    "dump: --key tpm: permission denied: only root may choose the TPM host key                      (you are uid {}; for a key file named tpm, use --key ./tpm)",
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
            Fail::with(exit, "dump: cannot open the key file", e)
        })?;
        let mut bytes = zeroize::Zeroizing::new(Vec::new());
        file.take(MAX_KEY_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Fail::with(Exit::Other, "dump: cannot read the key file", e))?;
        if bytes.len() as u64 > MAX_KEY_FILE {
            return Err(Fail::new(
                Exit::Other,
                format!("dump: {}: too large for a key file", path.display()),
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
