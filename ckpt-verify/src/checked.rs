//! Opening an image as the caller and establishing the facts in order:
//! integrity, signer, trust (DESIGN §3).

use std::fs::File;
use std::path::Path;

use ckpt_core::image::{ImageError, ImageReader, SignatureStatus};
use ckpt_keys::PublicKey;
use ckpt_policy::{Policy, Trust};
use ckpt_privsep::as_caller::open_image_for_read;
use ckpt_privsep::report::{error_chain, Exit};
use ckpt_privsep::Caller;

use crate::{Fail, PROG};

/// Whether every digest and the signature matched.
pub(crate) enum Integrity {
    Ok,
    /// The reason (coarse: tampered or malformed is all the caller needs).
    Tampered(String),
}

/// What is known about an image.
pub(crate) struct Facts {
    pub integrity: Integrity,
    /// The opened image (None when it could not be opened).
    pub reader: Option<ImageReader>,
    /// The signer, when the image is signed and its signature verifies.
    pub signer: Option<PublicKey>,
    /// The policy's view of the signer (only when integrity is ok).
    pub trust: Option<Trust>,
    /// Why the policy could not be used, if it could not.
    pub policy_error: Option<String>,
}

impl Facts {
    pub fn trusted(&self) -> bool {
        self.trust.as_ref().is_some_and(Trust::is_trusted)
    }
}

/// Open `path` (an image, or `what`) for reading as the caller.
pub(crate) fn open_as_caller(caller: &Caller, path: &Path) -> Result<File, Fail> {
    open_file_as_caller(caller, path, "the image")
}

/// Open `path` for reading as the caller; `what` names it in errors.
pub(crate) fn open_file_as_caller(caller: &Caller, path: &Path, what: &str) -> Result<File, Fail> {
    open_image_for_read(caller, path).map_err(|e| {
        let exit = if e.is_access_denied() {
            Exit::AccessDenied
        } else {
            Exit::Other
        };
        Fail::with(exit, format!("cannot open {what}"), e)
    })
}

fn image_fail(e: ImageError) -> Result<Integrity, Fail> {
    match e {
        ImageError::Io { .. } => Err(Fail::with(Exit::Other, "cannot read the image", e)),
        e => Ok(Integrity::Tampered(error_chain(&e))),
    }
}

/// Open the image as the caller and establish integrity (all chunks when
/// `all_chunks`, otherwise structure and signature only), signer and trust.
pub(crate) fn examine(caller: &Caller, path: &Path, all_chunks: bool) -> Result<Facts, Fail> {
    let file = open_as_caller(caller, path)?;
    let mut facts = Facts {
        integrity: Integrity::Ok,
        reader: None,
        signer: None,
        trust: None,
        policy_error: None,
    };
    let reader = match ImageReader::open(file) {
        Ok(r) => r,
        Err(e) => {
            facts.integrity = image_fail(e)?;
            return Ok(facts);
        }
    };
    if let SignatureStatus::Signed { key } = reader.signature() {
        facts.signer = Some(key);
    }
    if all_chunks {
        if let Err(e) = reader.verify_chunks() {
            facts.integrity = image_fail(e)?;
            facts.reader = Some(reader);
            return Ok(facts);
        }
    }
    facts.reader = Some(reader);
    if let Some(key) = &facts.signer {
        let (policy, error) = load_policy();
        facts.policy_error = error;
        let host = ckpt_keys::store::load_host_public(&ckpt_core::paths::keys_dir()).ok();
        facts.trust = Some(match &facts.policy_error {
            // An unusable policy makes every image untrusted.
            Some(_) => Trust::Untrusted,
            None => policy.trust(key, host.as_ref()),
        });
    }
    Ok(facts)
}

/// The installed policy, or the empty policy and why it is unusable. An
/// unusable policy is reported on stderr once.
pub(crate) fn load_policy() -> (Policy, Option<String>) {
    match ckpt_policy::load(
        &ckpt_core::paths::policy_file(),
        Some(&ckpt_core::paths::policy_dropin_dir()),
    ) {
        Ok(p) => (p, None),
        Err(e) => {
            let text = error_chain(&e);
            errln!("{PROG}: warning: policy unusable, treating every image as untrusted: {text}");
            (Policy::empty(), Some(text))
        }
    }
}
