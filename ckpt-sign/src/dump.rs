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
//! 7. Rename into place as the caller; only then kill the target (default).
//!
//! Any failure before step 7 resumes the target (dropping `Frozen` does)
//! and removes the temporary file (dropping `PendingOutput` does).
//!
//! Whatever the outcome, one audit line is sent at the end
//! (`ckpt_privsep::audit`): `event=dump caller_uid= pid= image_id= signer=
//! signer_name= outcome=ok|refused|failed reason=`. When the audit log is
//! unreachable the dump carries on, with a warning on stderr.

use std::io::Read;

use ckpt_core::dump::Frozen;
use ckpt_core::image::{ImageMeta, ImageWriter, ManifestSigner, Requester};
use ckpt_keys::SigningKey;
use ckpt_privsep::access::{caller_may_ptrace_attach, open_pidfd, pidfd_alive, AccessError};
use ckpt_privsep::as_caller::{create_output, open_for_read, CreateError};
use ckpt_privsep::audit::{AuditLog, Record, Severity};
use ckpt_privsep::report::{error_chain, Exit};
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

/// The audit record of a dump, before anything is known.
pub(crate) fn audit_record(caller: &Caller, args: &DumpArgs) -> Record {
    let mut r = Record::new("dump");
    r.set("caller_uid", caller.uid.to_string())
        .set("pid", args.pid.to_string())
        .set("image_id", "")
        .set("signer", "")
        .set("signer_name", "")
        .set("outcome", "")
        .set("reason", "");
    r
}

/// Complete the record with the outcome and send it. A dump does not
/// depend on the audit log: failures are warnings.
pub(crate) fn audit(record: &mut Record, result: &Result<(), Fail>) {
    let severity = match result {
        Ok(()) => {
            record.set("outcome", "ok");
            Severity::Notice
        }
        Err(f) => {
            let outcome = match f.exit {
                Exit::AccessDenied | Exit::Usage | Exit::PolicyRefusal => "refused",
                _ => "failed",
            };
            record.set("outcome", outcome).set("reason", f.text());
            Severity::Warning
        }
    };
    if let Err(e) = AuditLog::connect().and_then(|log| log.send(PROG, record, severity)) {
        errln!(
            "{PROG}: warning: audit log unavailable: {}",
            error_chain(&e)
        );
    }
}

pub(crate) fn run(caller: &Caller, args: &DumpArgs, record: &mut Record) -> Result<(), Fail> {
    if args.tree {
        return Err(Fail::new(Exit::Usage, "dump --tree: not supported yet"));
    }
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

    // 4. Freeze, then check again. From here until the target is released
    // or killed, only SIGKILL/SIGSTOP can interrupt us (declared before
    // `frozen`, so it is dropped after it: the target is resumed first).
    let _signals = ckpt_privsep::startup::block_signals()
        .map_err(|e| Fail::with(Exit::DumpFailed, "dump", e))?;
    let watch = pidfd
        .try_clone()
        .map_err(|e| Fail::with(Exit::DumpFailed, "dump: cannot duplicate the pidfd", e))?;
    let mut frozen = Frozen::seize(pidfd, pid).map_err(|e| {
        Fail::with(
            Exit::DumpFailed,
            format!("dump: cannot freeze pid {pid}"),
            e,
        )
    })?;
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
    let mut writer = ImageWriter::new(image_file)
        .map_err(|e| Fail::with(Exit::DumpFailed, "dump: cannot start the image", e))?;
    let result = frozen
        .dump(&mut writer)
        .map_err(|e| Fail::with(Exit::DumpFailed, "dump", e))?;
    let c = &result.process.creds;
    if c.uid != frozen_creds.uid || c.gid != frozen_creds.gid || c.groups != frozen_creds.groups {
        return Err(Fail::new(
            Exit::DumpFailed,
            format!("dump: pid {pid}: credentials changed during the dump"),
        ));
    }
    let frozen = if args.leave_running {
        frozen.resume().map_err(|e| {
            Fail::with(
                Exit::DumpFailed,
                format!("dump: cannot resume pid {pid}"),
                e,
            )
        })?;
        None
    } else {
        Some(frozen)
    };

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
            .finish(meta, result.process, signer)
            .map_err(|e| Fail::with(Exit::DumpFailed, "dump: cannot finish the image", e))?;
        // `key` and `host` are dropped (zeroized, TPM closed) here, before
        // any further fork.
        (finished, key_id)
    };
    drop(finished.file);

    // 7. Into place, then the target goes.
    pending
        .commit()
        .map_err(|e| Fail::with(Exit::DumpFailed, "dump: cannot put the image in place", e))?;
    let image_id: String = finished
        .image_id
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    record.set("image_id", image_id.clone());
    let signed = match key_id {
        Some(id) => format!("signed by key {id}{signed_with}"),
        None => "unsigned".to_owned(),
    };
    errln!(
        "{PROG}: wrote {}: image {image_id}, {signed}, {} bytes",
        args.output.display(),
        finished.size
    );
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
