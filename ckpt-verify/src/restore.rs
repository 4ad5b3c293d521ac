//! `ckpt-verify restore`: verify everything, decide, restore, audit.
//!
//! Order: open the image as the caller; check structure and signature;
//! verify every chunk; ask the policy about the signer (trust); establish
//! the caller, freshness and one-shot facts; decide (the mapping is applied
//! first); build the restore options; apply `--require-saved-creds`; make
//! sure the audit log is reachable when any grant is used; reserve the
//! one-shot ledger entry when a one-shot rule granted something; create the
//! pid file's temporary file as the caller; restore; print the pid; put the
//! pid file in place; send the audit line. Nothing is created before the
//! image has been verified and the decision made.
//!
//! The one-shot entry is reserved *before* the restore (an `O_EXCL` create),
//! not recorded after it: of two concurrent restores of one image only one
//! can win the reservation, and a helper killed between restore and record
//! cannot leave a replayable image behind. A restore that fails (the engine
//! leaves no process behind) releases the reservation; a helper killed
//! mid-restore leaves it in place (fail closed: the admin can remove the
//! entry).

use std::io::Write;
use std::path::Path;

use ckpt_core::image::ImageError;
use ckpt_core::restore::RestoreError;
use ckpt_policy::{decide, Decision, OneShot, Privilege};
use ckpt_privsep::as_caller::create_output;
use ckpt_privsep::audit::{AuditLog, Record, Severity};
use ckpt_privsep::ledger::{Ledger, LedgerError, Reservation};
use ckpt_privsep::report::{error_chain, Exit};
use ckpt_privsep::Caller;

use crate::checked::{examine, one_shot_state, policy_facts, Integrity};
use crate::plan::{plan, reason, saved_is_mine, show_creds, Plan};
use crate::{show, Fail, PROG};

/// The audit record of this restore, sent once at the end.
struct Audit {
    record: Record,
    log: Option<AuditLog>,
    /// Connecting already failed (and was reported).
    unavailable: bool,
    /// The process was restored: later errors do not change the outcome.
    restored: bool,
}

impl Audit {
    fn new(caller: &Caller) -> Audit {
        let mut record = Record::new("restore");
        record
            .set("caller_uid", caller.uid.to_string())
            .set("image_id", "")
            .set("signer", "")
            .set("signer_name", "")
            .set("trusted", "no")
            .set("grants", "")
            .set("denied", "")
            .set("outcome", "")
            .set("pid", "")
            .set("reason", "");
        Audit {
            record,
            log: None,
            unavailable: false,
            restored: false,
        }
    }

    fn decision(&mut self, d: &Decision) {
        let grants: Vec<String> = d
            .grants()
            .iter()
            .map(|(p, rule)| format!("{}:{rule}", p.name()))
            .collect();
        let denied: Vec<&str> = d
            .verdicts
            .iter()
            .filter(|(_, v)| !v.is_granted())
            .map(|(p, _)| p.name())
            .collect();
        self.record
            .set("grants", grants.join(","))
            .set("denied", denied.join(","));
    }

    /// Connect now: a restore that uses a grant needs the audit log.
    fn require(&mut self) -> Result<(), Fail> {
        if self.log.is_some() {
            return Ok(());
        }
        match AuditLog::connect() {
            Ok(l) => {
                self.log = Some(l);
                Ok(())
            }
            Err(e) => {
                self.unavailable = true;
                Err(Fail::with(
                    Exit::PolicyRefusal,
                    "policy refusal: the audit log is unavailable, and a restore that uses a \
                     policy grant must be audited",
                    e,
                ))
            }
        }
    }

    fn failed(&mut self, f: &Fail) {
        let text = match &f.source {
            Some(e) => format!("{}: {}", f.what, error_chain(e.as_ref())),
            None => f.what.clone(),
        };
        if self.restored {
            self.record.set("reason", text);
            return;
        }
        let outcome = match f.exit {
            Exit::PolicyRefusal | Exit::Tampered | Exit::AccessDenied | Exit::Usage => "refused",
            _ => "failed",
        };
        self.record.set("outcome", outcome).set("reason", text);
    }

    fn finish(mut self) {
        let severity = if self.record.get("outcome") == Some("ok") {
            Severity::Notice
        } else {
            Severity::Warning
        };
        if self.log.is_none() {
            if self.unavailable {
                return;
            }
            match AuditLog::connect() {
                Ok(l) => self.log = Some(l),
                Err(e) => {
                    errln!(
                        "{PROG}: warning: audit log unavailable: {}",
                        error_chain(&e)
                    );
                    return;
                }
            }
        }
        if let Some(log) = &self.log {
            if let Err(e) = log.send(PROG, &self.record, severity) {
                errln!(
                    "{PROG}: warning: audit log unavailable: {}",
                    error_chain(&e)
                );
            }
        }
    }
}

pub(crate) fn restore(
    caller: &Caller,
    path: &Path,
    pidfile: Option<&Path>,
    require_saved_creds: bool,
) -> Result<Exit, Fail> {
    let mut audit = Audit::new(caller);
    let result = run(caller, path, pidfile, require_saved_creds, &mut audit);
    if let Err(f) = &result {
        audit.failed(f);
    }
    audit.finish();
    result
}

fn release(reservation: Option<Reservation>) {
    if let Some(r) = reservation {
        if let Err(e) = r.release() {
            errln!(
                "{PROG}: warning: cannot release the one-shot ledger entry: {}",
                error_chain(&e)
            );
        }
    }
}

fn run(
    caller: &Caller,
    path: &Path,
    pidfile: Option<&Path>,
    require_saved_creds: bool,
    audit: &mut Audit,
) -> Result<Exit, Fail> {
    let facts = examine(caller, path, true)?;
    if let Some(id) = facts.image_id() {
        audit.record.set("image_id", id);
    }
    match &facts.signer {
        None => audit.record.set("signer", "unsigned"),
        Some(k) => audit.record.set("signer", k.key_id().to_string()),
    };
    if let Some(name) = facts.trust.as_ref().and_then(|t| t.name()) {
        audit.record.set("signer_name", name);
    }
    let trusted = matches!(facts.integrity, Integrity::Ok) && facts.trusted();
    audit
        .record
        .set("trusted", if trusted { "yes" } else { "no" });
    if let Integrity::Tampered(e) = &facts.integrity {
        return Err(Fail::new(
            Exit::Tampered,
            format!(
                "{}: refusing to restore: {e}",
                show(&path.to_string_lossy())
            ),
        ));
    }
    let (Some(reader), Some(image_id)) = (facts.reader.as_ref(), facts.image_id()) else {
        return Err(Fail::new(Exit::Tampered, "the image could not be read"));
    };

    // Decide; reserve the one-shot entry if a one-shot rule granted
    // something (decide again if another restore got there first).
    let mut one_shot = one_shot_state(&facts, caller, &image_id);
    let (decision, plan, reservation) = loop {
        let Some(pf) = policy_facts(&facts, caller, one_shot.clone()) else {
            return Err(Fail::new(Exit::Tampered, "the image could not be read"));
        };
        let d = decide(&facts.policy, &pf);
        let p = plan(&d, &pf, caller);
        audit.decision(&d);
        if require_saved_creds && !d.granted(Privilege::Credentials) && !saved_is_mine(&p, caller) {
            let theirs = match &p.saved {
                Some(s) => show_creds(s),
                None => format!(
                    "uid {:?} gid {:?} in the image, not all mapped to local ids",
                    pf.target.uid, pf.target.gid
                ),
            };
            return Err(Fail::new(
                Exit::PolicyRefusal,
                format!(
                    "policy refusal: --require-saved-creds: the image's credentials ({theirs}) \
                     differ from yours and `credentials` is not granted: {}",
                    show(&reason(&d, Privilege::Credentials))
                ),
            ));
        }
        if !d.grants().is_empty() {
            audit.require()?;
        }
        if !d.uses_one_shot() {
            break (d, p, None);
        }
        let note = format!(
            "image_id={image_id} caller_uid={} restored_unix={}",
            caller.uid, pf.now
        );
        match Ledger::open(Path::new(ckpt_core::paths::STATEDIR), true)
            .and_then(|l| l.reserve(&image_id, &note))
        {
            Ok(r) => break (d, p, Some(r)),
            Err(LedgerError::AlreadyRecorded { .. }) => one_shot = OneShot::AlreadyRestored,
            Err(e) => one_shot = OneShot::Unavailable(error_chain(&e)),
        }
    };

    // The pid file's temporary file, before anything runs.
    let pending = match pidfile {
        None => None,
        Some(p) => match create_output(caller, p, false) {
            Ok(pending) => Some(pending),
            Err(e) => {
                release(reservation);
                let exit = if e.is_access_denied() {
                    Exit::AccessDenied
                } else {
                    Exit::Other
                };
                return Err(Fail::with(exit, "cannot create the pid file", e));
            }
        },
    };

    // Only SIGKILL/SIGSTOP can interrupt the restore itself.
    let signals = match ckpt_privsep::startup::block_signals() {
        Ok(s) => s,
        Err(e) => {
            release(reservation);
            return Err(Fail::with(Exit::RestoreFailed, "restore", e));
        }
    };
    let restored = ckpt_core::restore::restore(reader, &plan.opts);
    drop(signals);
    let restored = match restored {
        Ok(r) => r,
        Err(e) => {
            // The engine leaves no process behind: the image was not used.
            release(reservation);
            return Err(restore_fail(e, &decision, &plan));
        }
    };
    audit.restored = true;
    audit
        .record
        .set("outcome", "ok")
        .set("pid", restored.pid.to_string());

    let mut notices = plan.notices;
    // The engine says what it could not restore; say why it was not granted.
    let exe_lost = restored
        .notices
        .iter()
        .any(|n| n.contains("/exe will not name"));
    notices.extend(restored.notices);
    if !plan.opts.same_pid && restored.pid != reader.manifest().process.pid {
        notices.push(format!(
            "same-pid not granted: {}",
            reason(&decision, Privilege::SamePid)
        ));
    }
    if !plan.opts.exe_link && exe_lost {
        notices.push(format!(
            "exe-link not granted: {}",
            reason(&decision, Privilege::ExeLink)
        ));
    }
    for n in &notices {
        errln!("{PROG}: notice: {}", show(n));
    }
    outln!("{}", restored.pid);
    let _ = std::io::stdout().flush();

    if let Some(mut pending) = pending {
        let written = writeln!(pending.file, "{}", restored.pid);
        let result = written
            .map_err(|e| Fail::with(Exit::Other, "cannot write the pid file", e))
            .and_then(|()| {
                pending
                    .commit()
                    .map_err(|e| Fail::with(Exit::Other, "cannot put the pid file in place", e))
            });
        if let Err(mut f) = result {
            f.what = format!(
                "process {} is restored and running, but {}",
                restored.pid, f.what
            );
            return Err(f);
        }
    }
    Ok(Exit::Ok)
}

/// A restore failure, naming the missing grant where one would have helped.
/// An image found tampered or malformed while restoring (a chunk changed
/// since it was verified) is exit 4, as it is everywhere else.
fn restore_fail(e: RestoreError, d: &Decision, p: &Plan) -> Fail {
    if let RestoreError::Image(ie) = &e {
        if !matches!(ie, ImageError::Io { .. }) {
            return Fail::with(Exit::Tampered, "refusing to restore", e);
        }
    }
    if let RestoreError::Open { path, errno } = &e {
        let saved_differs = p.saved.as_ref() != Some(&p.opts.file_creds);
        if saved_differs && !d.granted(Privilege::PrivilegedFiles) {
            let saved = p
                .saved
                .as_ref()
                .map_or_else(|| "its saved credentials".to_owned(), show_creds);
            return Fail::new(
                Exit::RestoreFailed,
                format!(
                    "restore failed: cannot open {} with {} ({errno}); the process had it open \
                     as {saved}, and reopening it with those needs the `privileged-files` \
                     grant: {}",
                    show(path),
                    show_creds(&p.opts.file_creds),
                    show(&reason(d, Privilege::PrivilegedFiles))
                ),
            );
        }
    }
    if matches!(e, RestoreError::FileChanged { .. }) && p.opts.privileged {
        return Fail::with(
            Exit::RestoreFailed,
            "restore refused (a privileged restore needs every mapped file to match its \
             signed digest)",
            e,
        );
    }
    Fail::with(Exit::RestoreFailed, "restore failed", e)
}
