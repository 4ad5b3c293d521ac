//! `ckpt-verify restore`: verify everything, decide, restore, audit.
//!
//! Order: open the image as the caller; check structure and signature
//! (every chunk's digest is checked later, once, as it streams into the
//! stopped process; a restore that uses a grant, and a refusal, check them
//! all first, so that a tampered image is always exit 4 and never gets a
//! grant); ask the policy about the signer (trust); establish
//! the caller, freshness and one-shot facts; decide (the mapping is applied
//! first); build the restore options; apply `--require-saved-creds`; make
//! sure the audit log is reachable when any grant is used; reserve the
//! one-shot ledger entry when a one-shot rule granted something; create the
//! pid file's temporary file as the caller; restore; send the audit line
//! while the restored process is still stopped (for a restore that uses a
//! grant, a line that cannot be sent calls the restore off: exit 5, the
//! process is killed before it ran); put the pid file in place, still
//! before release (a pid file that cannot be put in place, say because the
//! caller planted a name there meanwhile, calls the restore off too: exit
//! 1, a second audit line records the failure); release the process; give
//! the real uid back to the caller; print the pid. Nothing
//! is created before the signature has been verified and the decision
//! made, and nothing runs before every chunk it holds has been checked.
//!
//! The whole operation runs under a [`Shield`]: the caller cannot kill or
//! stop the helper (setuid run), and a terminal signal (`SIGINT`,
//! `SIGTERM`, `SIGHUP`, `SIGQUIT`, `SIGTSTP`) received before the audit
//! line was sent calls the restore off (exit 10, nothing left running,
//! ledger entry released); after that the restore completes. No notice or
//! pid is written before the process is released, the pid file is in place
//! and the audit line is sent: a full or closed stdout cannot change the
//! outcome or its record.
//!
//! The one-shot entry is reserved *before* the restore (an `O_EXCL` create),
//! not recorded after it: of two concurrent restores of one image only one
//! can win the reservation, and a helper killed between restore and record
//! cannot leave a replayable image behind. A restore that fails (the engine
//! leaves no process behind) releases the reservation; a helper killed
//! mid-restore leaves it in place (fail closed: the admin can remove the
//! entry).

use std::io::Write;
use std::os::fd::AsRawFd as _;
use std::path::Path;

use ckpt_core::image::ImageError;
use ckpt_core::restore::{Release, RestoreError, Restored};
use ckpt_policy::{decide, Decision, OneShot, Privilege};
use ckpt_privsep::as_caller::{create_output, PendingOutput};
use ckpt_privsep::audit::{AuditLog, Record, Severity};
use ckpt_privsep::ledger::{Ledger, LedgerError, Reservation};
use ckpt_privsep::report::{error_chain, Exit};
use ckpt_privsep::shield::{Interrupted, Shield};
use ckpt_privsep::Caller;

use crate::checked::{examine_with, one_shot_state, policy_facts, Integrity};
use crate::plan::{keep_own_pids, plan, reason, saved_is_mine, show_creds, Plan};
use crate::{show, Fail, PROG};

/// The audit record of this restore: sent right before the process is
/// released (a successful restore), or at the end (a refusal or failure).
/// A second record follows only when something fails after the first was
/// sent (the release itself, or the pid file).
struct Audit {
    record: Record,
    log: Option<AuditLog>,
    /// Connecting already failed (and was reported).
    unavailable: bool,
    /// The process was restored: later errors do not change the outcome.
    restored: bool,
    /// The record was sent before the release.
    sent: bool,
    /// A grant is used: the record must be sent before the release.
    required: bool,
    /// Warnings for stderr, printed once the restore is over.
    warnings: Vec<String>,
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
            sent: false,
            required: false,
            warnings: Vec::new(),
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
        self.required = true;
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

    /// Send the record as it is now. `Err` says why it could not be.
    fn send(&mut self) -> Result<(), String> {
        let severity = if self.record.get("outcome") == Some("ok") {
            Severity::Notice
        } else {
            Severity::Warning
        };
        if self.log.is_none() {
            if self.unavailable {
                return Err("unreachable".into());
            }
            match AuditLog::connect() {
                Ok(l) => self.log = Some(l),
                Err(e) => {
                    self.unavailable = true;
                    return Err(error_chain(&e));
                }
            }
        }
        match &self.log {
            Some(log) => log
                .send(PROG, &self.record, severity)
                .map_err(|e| error_chain(&e)),
            None => Err("unreachable".into()),
        }
    }

    /// Right before release: the record of the successful restore.
    /// `Err` (only when a grant is used) calls the restore off.
    fn before_release(&mut self, pid: i32) -> Result<(), Fail> {
        self.record.set("outcome", "ok").set("pid", pid.to_string());
        match self.send() {
            Ok(()) => {
                self.sent = true;
                Ok(())
            }
            Err(why) if self.required => {
                self.record.set("outcome", "").set("pid", "");
                Err(Fail::new(
                    Exit::PolicyRefusal,
                    format!(
                        "policy refusal: the audit log is unavailable ({why}), and a restore \
                         that uses a policy grant must be audited before it runs"
                    ),
                ))
            }
            Err(why) => {
                self.warnings
                    .push(format!("warning: audit log unavailable: {why}"));
                Ok(())
            }
        }
    }

    /// At the end: send the record unless it was sent before the release
    /// and nothing changed since (a failure after that is sent again).
    fn finish(mut self) -> Vec<String> {
        let changed = self.record.get("reason").is_some_and(|r| !r.is_empty())
            || self.record.get("outcome") != Some("ok");
        if self.sent && !changed {
            return self.warnings;
        }
        if self.unavailable && !self.sent {
            // Already reported (a refusal) or warned about.
            if self.warnings.is_empty() && !self.required {
                self.warnings
                    .push("warning: audit log unavailable".to_owned());
            }
            return self.warnings;
        }
        if let Err(why) = self.send() {
            self.warnings
                .push(format!("warning: audit log unavailable: {why}"));
        }
        self.warnings
    }
}

/// The restored process, once released: printed after everything else.
struct Done {
    pid: i32,
    notices: Vec<String>,
    image_id: String,
    key_id: Option<String>,
    trusted: bool,
    saved_pid: Option<i32>,
    /// `--pid-namespace`: the root's pid there, and the namespace's init.
    pid_namespace: Option<ckpt_core::restore::NamespacePids>,
    /// Each granted privilege and the rule that granted it.
    grants: Vec<(String, String)>,
}

impl Done {
    /// `restore --json`: one object (docs/JSON.md, "ckpt-verify restore").
    fn json(&self, path: &Path, warnings: &[String]) -> serde_json::Value {
        serde_json::json!({
            "schema": 1,
            "image": path.to_string_lossy(),
            "image_id": self.image_id,
            "key_id": self.key_id,
            "trusted": self.trusted,
            "pid": self.pid,
            "saved_pid": self.saved_pid,
            "pid_namespace": self.pid_namespace.map(|n| serde_json::json!({"pid_inside": n.root, "init_pid": n.init})),
            "grants": self.grants.iter().map(|(p, r)| serde_json::json!({"privilege": p, "rule": r})).collect::<Vec<_>>(),
            "notices": self.notices,
            "warnings": warnings,
        })
    }
}

/// The engine's [`Release`]: a terminal signal calls the restore off until
/// the audit record is sent; sending it, then putting the pid file in
/// place, are the last steps before release. A pid file that cannot be put
/// in place (a name the caller planted meanwhile, a full disk) calls the
/// restore off: no process runs unless its pid file is there.
struct Gate<'a> {
    audit: &'a mut Audit,
    shield: &'a Shield,
    /// The pid file, not yet under its final name.
    pidfile: Option<PendingOutput>,
    /// Why the restore was called off.
    fail: Option<Fail>,
    /// Cleared before release: the restored process may write to the
    /// same terminal.
    bar: &'a ckpt_privsep::progress::Bar,
}

impl Gate<'_> {
    fn put_pidfile(&mut self, pid: i32) -> Result<(), Fail> {
        let Some(mut pending) = self.pidfile.take() else {
            return Ok(());
        };
        writeln!(pending.file, "{pid}")
            .map_err(|e| Fail::with(Exit::Other, "cannot write the pid file", e))?;
        // Not fsynced: the pid of a process means nothing after a crash,
        // and waiting for the disk here kept the restored process stopped
        // (SECURITY.md §5).
        pending.commit_unsynced().map_err(|e| {
            Fail::with(
                Exit::Other,
                "cannot put the pid file in place; nothing was restored (the process was \
                 killed before it ran)",
                e,
            )
        })
    }
}

impl Release for Gate<'_> {
    fn cancelled(&self) -> bool {
        self.shield.check().is_err()
    }

    fn before_release(&mut self, restored: &Restored) -> bool {
        self.bar.clear();
        if let Err(i) = self.shield.check() {
            self.fail = Some(interrupted(i));
            return false;
        }
        let ready = self
            .audit
            .before_release(restored.pid)
            .and_then(|()| self.put_pidfile(restored.pid));
        match ready {
            Ok(()) => true,
            Err(f) => {
                self.fail = Some(f);
                false
            }
        }
    }
}

fn interrupted(i: Interrupted) -> Fail {
    Fail::new(
        Exit::Interrupted,
        format!(
            "restore: {i}; nothing was restored (the half-built process was killed before it ran)"
        ),
    )
}

pub(crate) fn restore(
    caller: &Caller,
    path: &Path,
    pidfile: Option<&Path>,
    asked: Asked<'_>,
    json: bool,
) -> Result<Exit, Fail> {
    let mut audit = Audit::new(caller);
    let shield = match Shield::raise(caller) {
        Ok(s) => s,
        Err(e) => {
            let f = Fail::with(Exit::Other, "restore: cannot start", e);
            audit.failed(&f);
            for w in audit.finish() {
                errln!("{PROG}: {w}");
            }
            return Err(f);
        }
    };
    // One child at the caller's credentials for the steps taken as the
    // caller (the image, the pid file), forked now (single-threaded, no key
    // loaded); without it each step forks its own.
    let _ = ckpt_privsep::as_caller::worker::start(caller);
    let mut done = None;
    let result = run(caller, path, pidfile, asked, &mut audit, &shield, &mut done);
    ckpt_privsep::as_caller::worker::stop();
    if let Err(f) = &result {
        audit.failed(f);
    }
    let warnings = audit.finish();
    // Everything is in place: from here the caller may kill us again, and
    // a full or closed stdout changes nothing.
    shield.lower();
    for w in &warnings {
        errln!("{PROG}: {w}");
    }
    if let Some(done) = done {
        if json {
            outln!("{}", done.json(path, &warnings));
        } else {
            for n in &done.notices {
                errln!("{PROG}: notice: {}", show(n));
            }
            outln!("{}", done.pid);
        }
        let _ = std::io::stdout().flush();
    }
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

/// What the caller asked of the restore besides the image.
#[derive(Clone, Copy)]
pub(crate) struct Asked<'a> {
    /// `--require-saved-creds`.
    pub(crate) require_saved_creds: bool,
    /// `--inherit-fd`, each checked at start-up.
    pub(crate) inherit_fds: &'a [i32],
    /// `--pid-namespace`.
    pub(crate) pid_namespace: bool,
}

fn run(
    caller: &Caller,
    path: &Path,
    pidfile: Option<&Path>,
    asked: Asked<'_>,
    audit: &mut Audit,
    shield: &Shield,
    done: &mut Option<Done>,
) -> Result<Exit, Fail> {
    // Structure and signature only: every chunk is hashed once, as it
    // streams into the stopped stub, and a bad digest calls the restore
    // off with nothing left behind (exit 4). A restore that uses a grant
    // checks every chunk first, and so does a refusal for any other
    // reason, so that a tampered image is reported as tampered whatever
    // else is wrong with it.
    // A bar on the caller's terminal when verifying and restoring last
    // (cleared when `bar` is dropped, before anything is printed).
    let bar = ckpt_privsep::progress::Bar::new("restore", 0);
    let facts = examine_with(caller, path, false, Some(&bar))?;
    let result = run_examined(
        caller, path, pidfile, asked, audit, shield, done, &facts, &bar,
    );
    match (result, &facts.reader) {
        (Err(f), Some(reader)) if !matches!(f.exit, Exit::Tampered | Exit::Interrupted) => {
            match reader.verify_chunks() {
                Err(e) if !matches!(e, ImageError::Io { .. }) => Err(Fail::new(
                    Exit::Tampered,
                    format!(
                        "{}: refusing to restore: {}",
                        show(&path.to_string_lossy()),
                        error_chain(&e)
                    ),
                )),
                _ => Err(f),
            }
        }
        (result, _) => result,
    }
}

/// `--pid-namespace`: the restore is the caller's own (the processes keep
/// their pids in a namespace the caller could have made without us); a
/// decision that gives more than the caller's credentials cannot be held
/// there, and root keeps its pids without it.
fn in_pid_namespace(p: &mut crate::plan::Plan, caller: &Caller) -> Result<(), Fail> {
    if caller.uid == 0 {
        return Err(Fail::new(
            Exit::Usage,
            "--pid-namespace is for unprivileged callers: root restores keep their pids when they are free",
        ));
    }
    if !p.opts.is_plain() {
        return Err(Fail::new(
            Exit::RestoreFailed,
            "--pid-namespace restores with your own credentials only, and the policy decided \
             more for this image (credentials, capabilities or exe-link); restore it without \
             --pid-namespace",
        ));
    }
    p.opts.same_pid = false;
    p.opts.pid_namespace = true;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_examined(
    caller: &Caller,
    path: &Path,
    pidfile: Option<&Path>,
    asked: Asked<'_>,
    audit: &mut Audit,
    shield: &Shield,
    done: &mut Option<Done>,
    facts: &crate::checked::Facts,
    bar: &ckpt_privsep::progress::Bar,
) -> Result<Exit, Fail> {
    shield.check().map_err(interrupted)?;
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
    let mut one_shot = one_shot_state(facts, caller, &image_id);
    let (decision, plan, reservation) = loop {
        let Some(pf) = policy_facts(facts, caller, one_shot.clone()) else {
            return Err(Fail::new(Exit::Tampered, "the image could not be read"));
        };
        let d = decide(&facts.policy, &pf);
        let mut p = plan(&d, &pf, caller);
        p.opts.inherit_fds = asked.inherit_fds.to_vec();
        if asked.pid_namespace {
            in_pid_namespace(&mut p, caller)?;
            audit.record.set("pid_namespace", "yes");
        } else {
            keep_own_pids(&mut p, reader.manifest());
        }
        audit.decision(&d);
        if asked.require_saved_creds
            && !d.granted(Privilege::Credentials)
            && !saved_is_mine(&p, caller)
        {
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

    // A restore that uses a grant (built as root) checks every chunk
    // before anything is created for it: a tampered image is refused as
    // untrusted, with no grant recorded, as if it had been found so first.
    if !decision.grants().is_empty() {
        if let Err(e) = reader.verify_chunks() {
            release(reservation);
            if matches!(e, ImageError::Io { .. }) {
                return Err(Fail::with(Exit::Other, "cannot read the image", e));
            }
            audit
                .record
                .set("trusted", "no")
                .set("grants", "")
                .set("denied", "");
            return Err(Fail::new(
                Exit::Tampered,
                format!(
                    "{}: refusing to restore: {}",
                    show(&path.to_string_lossy()),
                    error_chain(&e)
                ),
            ));
        }
    }

    if let Err(i) = shield.check() {
        release(reservation);
        return Err(interrupted(i));
    }
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
    // And its blocks (a pid is at most 11 bytes; KEEP_SIZE leaves the file
    // empty): on a full file system the restore fails here, before anything
    // runs, not once the process is running.
    if let (Some(pending), Some(p)) = (&pending, pidfile) {
        match nix::fcntl::fallocate(
            pending.file.as_raw_fd(),
            nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
            0,
            64,
        ) {
            Ok(()) | Err(nix::errno::Errno::EOPNOTSUPP) => {}
            Err(e) => {
                release(reservation);
                return Err(Fail::with(
                    Exit::Other,
                    format!("cannot create the pid file {}", p.display()),
                    e,
                ));
            }
        }
    }

    // The restore; the audit record is sent right before the release.
    let mut gate = Gate {
        audit: &mut *audit,
        shield,
        pidfile: pending,
        fail: None,
        bar,
    };
    let restored = ckpt_core::restore::restore_with(reader, &plan.opts, &mut gate);
    let called_off = gate.fail.take();
    let restored = match restored {
        Ok(r) => r,
        Err(e) => {
            // The engine leaves no process behind: the image was not used.
            release(reservation);
            // Had the record gone out already (the release itself failed),
            // `finish` sends a second one with the failure.
            return Err(match (e, called_off) {
                (RestoreError::CalledOff { .. }, Some(f)) => f,
                (RestoreError::CalledOff { .. }, None) => match shield.check() {
                    Err(i) => interrupted(i),
                    Ok(()) => Fail::new(Exit::RestoreFailed, "restore: called off"),
                },
                (e, _) => restore_fail(e, &decision, &plan),
            });
        }
    };
    audit.restored = true;
    audit
        .record
        .set("outcome", "ok")
        .set("pid", restored.pid.to_string());
    // The reservation (if any) stays: the image was used.
    drop(reservation);

    let mut notices = plan.notices;
    // The engine says what it could not restore; say why it was not granted.
    let exe_lost = restored
        .notices
        .iter()
        .any(|n| n.contains("/exe will not name"));
    notices.extend(restored.notices);
    let saved_pid = reader.manifest().first_task().map(|p| p.pid);
    if !plan.opts.keeps_pids() && Some(restored.pid) != saved_pid && plan.opts.caller_caps == 0 {
        notices.push(format!(
            "same-pid not granted: {}",
            reason(&decision, Privilege::SamePid)
        ));
        // A tree's processes often know each other's pids (make, a shell
        // waiting for a job, a pool's manager).
        if reader.manifest().tasks.len() > 1 {
            notices.push(
                "restore --pid-namespace keeps every pid, without a grant, inside a new \
                 pid namespace of yours"
                    .into(),
            );
        }
    }
    if !plan.opts.exe_link && exe_lost {
        notices.push(format!(
            "exe-link not granted: {}",
            reason(&decision, Privilege::ExeLink)
        ));
    }
    *done = Some(Done {
        pid: restored.pid,
        notices,
        image_id,
        key_id: facts.signer.as_ref().map(|k| k.key_id().to_string()),
        trusted,
        saved_pid,
        pid_namespace: restored.pid_namespace,
        grants: decision
            .grants()
            .iter()
            .map(|(p, rule)| (p.name().to_owned(), rule.to_string()))
            .collect(),
    });

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
    if matches!(e, RestoreError::FileChanged { .. }) && !p.opts.is_plain() {
        return Fail::with(
            Exit::RestoreFailed,
            "restore refused (a restore built as root needs every mapped file to match its \
             signed digest)",
            e,
        );
    }
    Fail::with(Exit::RestoreFailed, "restore failed", e)
}
