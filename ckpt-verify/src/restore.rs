//! `ckpt-verify restore`: verify everything first, then restore with the
//! caller's own credentials (the only mode in this version).
//!
//! Order: open the image as the caller; open and check structure and
//! signature; verify every chunk; ask the policy about the signer; apply
//! `--require-saved-creds`; create the pid file's temporary file as the
//! caller; restore; print the pid; put the pid file in place. Nothing is
//! created before the image has been verified.

use std::io::Write;
use std::path::Path;

use ckpt_core::restore::{RestoreCredentials, RestoreOptions};
use ckpt_policy::Trust;
use ckpt_privsep::as_caller::create_output;
use ckpt_privsep::report::Exit;
use ckpt_privsep::Caller;

use crate::checked::{examine, Integrity};
use crate::{show, Fail, PROG};

pub(crate) fn restore(
    caller: &Caller,
    path: &Path,
    pidfile: Option<&Path>,
    require_saved_creds: bool,
) -> Result<Exit, Fail> {
    let facts = examine(caller, path, true)?;
    if let Integrity::Tampered(e) = &facts.integrity {
        return Err(Fail::new(
            Exit::Tampered,
            format!(
                "{}: refusing to restore: {e}",
                show(&path.to_string_lossy())
            ),
        ));
    }
    let Some(reader) = facts.reader.as_ref() else {
        return Err(Fail::new(Exit::Tampered, "the image could not be read"));
    };

    // The decision. In this version no privilege is ever granted.
    let why = match (&facts.signer, &facts.trust) {
        (None, _) => "the image is unsigned".to_owned(),
        (Some(k), Some(Trust::Trusted { name })) => format!(
            "the image is signed by trusted key {} ({}), but no policy grant applies",
            k.key_id(),
            show(name)
        ),
        (Some(k), Some(t)) => format!("the signer {} is {t}", k.key_id()),
        (Some(k), None) => format!("the signer {} is not trusted", k.key_id()),
    };
    let saved = &reader.manifest().process.creds;
    let mine = RestoreCredentials {
        uid: [caller.uid; 4],
        gid: [caller.gid; 4],
        groups: caller.groups.clone(),
    };
    let mut saved_groups = saved.groups.clone();
    saved_groups.sort_unstable();
    saved_groups.dedup();
    let same_as_saved =
        saved.uid == mine.uid && saved.gid == mine.gid && saved_groups == mine.groups;
    if require_saved_creds && !same_as_saved {
        return Err(Fail::new(
            Exit::PolicyRefusal,
            format!(
                "policy refusal: --require-saved-creds: the image's credentials \
                 (uid {:?}, gid {:?}) differ from yours and no policy rule grants \
                 `credentials` ({why})",
                saved.uid, saved.gid
            ),
        ));
    }
    let mut notices = vec![format!(
        "{why}: restoring with your own credentials (uid {})",
        caller.uid
    )];

    // The pid file's temporary file, before anything runs.
    let pending = match pidfile {
        None => None,
        Some(p) => Some(create_output(caller, p, false).map_err(|e| {
            let exit = if e.is_access_denied() {
                Exit::AccessDenied
            } else {
                Exit::Other
            };
            Fail::with(exit, "cannot create the pid file", e)
        })?),
    };

    // Only SIGKILL/SIGSTOP can interrupt the restore itself.
    let signals = ckpt_privsep::startup::block_signals()
        .map_err(|e| Fail::with(Exit::RestoreFailed, "restore", e))?;
    let restored = ckpt_core::restore::restore(reader, &RestoreOptions::caller(mine));
    drop(signals);
    let restored = restored.map_err(|e| Fail::with(Exit::RestoreFailed, "restore failed", e))?;
    notices.extend(restored.notices);
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
