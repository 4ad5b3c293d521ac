//! Opening an image as the caller and establishing the facts in order
//! (docs/DESIGN.md §4): integrity, signer, trust, attestation, caller, freshness;
//! the mapping is applied by `ckpt_policy::decide`.

use std::fs::File;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ckpt_core::image::{ImageError, ImageReader, SignatureStatus};
use ckpt_keys::PublicKey;
use ckpt_policy::{Exe, Ids, ImageCreds, Names, OneShot, Policy, Signer, Trust, UserNs};
use ckpt_privsep::as_caller::open_image_for_read;
use ckpt_privsep::ledger::Ledger;
use ckpt_privsep::report::{error_chain, Exit};
use ckpt_privsep::Caller;

use crate::{hex, Fail, PROG};

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
    /// The signer is this host's own key.
    pub signer_is_host_key: bool,
    /// The policy's view of the signer (only when integrity is ok).
    pub trust: Option<Trust>,
    /// The policy (the empty policy when it is unusable).
    pub policy: Policy,
    /// Why the policy could not be used, if it could not.
    pub policy_error: Option<String>,
    /// When the facts were established (seconds since the epoch).
    pub now: u64,
}

impl Facts {
    pub fn trusted(&self) -> bool {
        self.trust.as_ref().is_some_and(Trust::is_trusted)
    }

    /// The image id in hex, when the image could be read.
    pub fn image_id(&self) -> Option<String> {
        self.reader.as_ref().map(|r| hex(&r.manifest().image_id))
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

/// Seconds since the epoch.
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Open the image as the caller and establish integrity (all chunks when
/// `all_chunks`, otherwise structure and signature only), signer and trust.
pub(crate) fn examine(caller: &Caller, path: &Path, all_chunks: bool) -> Result<Facts, Fail> {
    examine_with(caller, path, all_chunks, None)
}

/// [`examine`], telling `bar` of the chunk data read: its total is the
/// image's data, twice with `all_chunks` (verified here, read again by
/// the restore).
pub(crate) fn examine_with(
    caller: &Caller,
    path: &Path,
    all_chunks: bool,
    bar: Option<&ckpt_privsep::progress::Bar>,
) -> Result<Facts, Fail> {
    let file = open_as_caller(caller, path)?;
    let mut facts = Facts {
        integrity: Integrity::Ok,
        reader: None,
        signer: None,
        signer_is_host_key: false,
        trust: None,
        policy: Policy::empty(),
        policy_error: None,
        now: now_unix(),
    };
    let mut reader = match ImageReader::open(file) {
        Ok(r) => r,
        Err(e) => {
            facts.integrity = image_fail(e)?;
            return Ok(facts);
        }
    };
    if let SignatureStatus::Signed { key } = reader.signature() {
        facts.signer = Some(key);
    }
    if let Some(bar) = bar {
        // Read once here and once by a restore when every chunk is checked
        // first; otherwise once, as the restore streams it.
        let passes = if all_chunks { 2 } else { 1 };
        bar.set_total(reader.data_len().saturating_mul(passes));
        if let Some(observer) = bar.observer() {
            reader.observe(observer);
        }
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
        facts.policy = policy;
        facts.policy_error = error;
        let host = ckpt_keys::store::load_host_public(&ckpt_core::paths::keys_dir()).ok();
        // This host's TPM key (`keys/tpm.pub`) is its own key too.
        let host = match crate::attest::host_tpm_key() {
            Some(tpm) if tpm == *key => Some(tpm),
            _ => host,
        };
        facts.signer_is_host_key = host.as_ref() == Some(key);
        facts.trust = Some(match &facts.policy_error {
            // An unusable policy makes every image untrusted.
            Some(_) => Trust::Untrusted,
            None => facts.policy.trust_at(key, host.as_ref(), facts.now),
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

/// The local users and groups the policy names.
fn resolve_names(policy: &Policy) -> Names {
    let (users, groups) = policy.names();
    let mut names = Names::default();
    for u in users {
        if let Ok(Some(user)) = nix::unistd::User::from_name(&u) {
            names.users.insert(u, user.uid.as_raw());
        }
    }
    for g in groups {
        if let Ok(Some(group)) = nix::unistd::Group::from_name(&g) {
            names.groups.insert(g, group.gid.as_raw());
        }
    }
    names
}

/// What the one-shot ledger says about `image_id`. The ledger is looked at
/// only when a one-shot rule could apply.
pub(crate) fn one_shot_state(facts: &Facts, caller: &Caller, image_id: &str) -> OneShot {
    if !facts.policy.rules.iter().any(|r| r.one_shot) {
        return OneShot::NotRestored;
    }
    if !caller.privileged {
        return OneShot::Unavailable("ckpt-verify is not running setuid root".to_owned());
    }
    match Ledger::open(std::path::Path::new(ckpt_core::paths::STATEDIR), false)
        .and_then(|l| l.contains(image_id))
    {
        Ok(true) => OneShot::AlreadyRestored,
        Ok(false) => OneShot::NotRestored,
        Err(e) => OneShot::Unavailable(error_chain(&e)),
    }
}

/// The facts for `ckpt_policy::decide`. `None` when the image could not be
/// read (there is nothing to decide about).
pub(crate) fn policy_facts(
    facts: &Facts,
    caller: &Caller,
    one_shot: OneShot,
) -> Option<ckpt_policy::Facts> {
    let reader = facts.reader.as_ref()?;
    let m = reader.manifest();
    // The first process: the only one of an image this version restores
    // (the engine refuses an image of several before creating anything;
    // deciding for several is the next version's).
    let p = m.first_task()?;
    let c = &p.creds;
    Some(ckpt_policy::Facts {
        integrity: match &facts.integrity {
            Integrity::Ok => ckpt_policy::Integrity::Ok,
            Integrity::Tampered(e) => ckpt_policy::Integrity::Tampered(e.clone()),
        },
        signer: match &facts.signer {
            None => Signer::Unsigned,
            Some(key) => Signer::Signed {
                key: key.clone(),
                host_key: facts.signer_is_host_key,
            },
        },
        trust: facts.trust.clone(),
        attestation: crate::attest::fact(reader),
        helper_privileged: caller.privileged,
        caller: Ids {
            uid: caller.uid,
            gid: caller.gid,
            groups: caller.groups.clone(),
        },
        requester: Ids {
            uid: m.requester.uid,
            gid: m.requester.gid,
            groups: m.requester.groups.clone(),
        },
        target: ImageCreds {
            uid: c.uid,
            gid: c.gid,
            groups: c.groups.clone(),
            cap_inheritable: c.cap_inheritable,
            cap_permitted: c.cap_permitted,
            cap_effective: c.cap_effective,
            cap_bounding: c.cap_bounding,
            cap_ambient: c.cap_ambient,
            securebits: c.securebits,
            // Only the initial user namespace's capabilities are host
            // ones; an image without the record gets no grant from them.
            user_ns: match &p.namespaces {
                Some(ns) if ns.user.is_initial_user() => UserNs::Initial,
                Some(ns) => UserNs::Other(ns.user.ino),
                None => UserNs::Unrecorded,
            },
        },
        exe: Exe {
            path: p.exe.path.clone(),
            digest_algorithm: m.digest_algorithm.name().to_owned(),
            digest: p.exe.digest.clone(),
        },
        machine_id: m.host.machine_id.clone(),
        hostname: m.host.hostname.clone(),
        created_unix: m.created_unix,
        now: facts.now,
        image_id: hex(&m.image_id),
        one_shot,
        names: resolve_names(&facts.policy),
    })
}
