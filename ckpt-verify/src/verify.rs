//! `ckpt-verify verify`, and the facts it prints (shared with `explain`).

use std::path::Path;

use ckpt_policy::Trust;
use ckpt_privsep::report::Exit;
use ckpt_privsep::Caller;
use serde_json::{json, Value};

use crate::checked::{examine, Facts, Integrity};
use crate::{hex, show, Fail, PROG};

fn trust_word(t: &Trust) -> &'static str {
    match t {
        Trust::Trusted { .. } => "trusted",
        Trust::Untrusted => "untrusted",
        Trust::Revoked { .. } => "revoked",
        Trust::Expired { .. } => "expired",
        Trust::NotYetValid { .. } => "not-yet-valid",
    }
}

/// The common JSON fields: integrity, signed, key_id, trusted, signer.
pub(crate) fn facts_json(path: &Path, f: &Facts) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("schema".into(), json!(1));
    m.insert("image".into(), json!(path.to_string_lossy()));
    let ok = matches!(f.integrity, Integrity::Ok);
    m.insert(
        "integrity".into(),
        json!(if ok { "ok" } else { "tampered" }),
    );
    if let Integrity::Tampered(e) = &f.integrity {
        m.insert("error".into(), json!(e));
    }
    if let Some(r) = &f.reader {
        m.insert("image_id".into(), json!(hex(&r.manifest().image_id)));
    }
    m.insert("signed".into(), json!(f.signer.is_some()));
    m.insert(
        "key_id".into(),
        json!(f.signer.as_ref().map(|k| k.key_id().to_string())),
    );
    m.insert("trusted".into(), json!(ok && f.trusted()));
    m.insert(
        "trust".into(),
        json!(f
            .trust
            .as_ref()
            .map(trust_word)
            .unwrap_or(if f.signer.is_some() {
                "unknown"
            } else {
                "unsigned"
            })),
    );
    m.insert(
        "signer".into(),
        json!(f.trust.as_ref().and_then(|t| t.name().map(str::to_owned))),
    );
    if let Some(e) = &f.policy_error {
        m.insert("policy_error".into(), json!(e));
    }
    let attestation = f.reader.as_ref().filter(|_| ok).map(crate::attest::fact);
    m.insert(
        "attestation".into(),
        attestation
            .as_ref()
            .map_or(Value::Null, crate::attest::to_json),
    );
    m
}

fn exit_for(f: &Facts) -> Exit {
    match (&f.integrity, &f.signer) {
        (Integrity::Tampered(_), _) => Exit::Tampered,
        (Integrity::Ok, None) => Exit::Unsigned,
        (Integrity::Ok, Some(_)) if f.trusted() => Exit::Ok,
        (Integrity::Ok, Some(_)) => Exit::Untrusted,
    }
}

pub(crate) fn print_facts(path: &Path, f: &Facts) {
    outln!("image: {}", show(&path.to_string_lossy()));
    match &f.integrity {
        Integrity::Ok => outln!("integrity: ok"),
        Integrity::Tampered(e) => {
            outln!("integrity: tampered");
            errln!("{PROG}: {}: {e}", show(&path.to_string_lossy()));
            return;
        }
    }
    match &f.signer {
        None => {
            outln!("signed: no");
            outln!("trusted: no (unsigned)");
        }
        Some(k) => {
            outln!("signed: yes");
            outln!("key id: {}", k.key_id());
            match &f.trust {
                Some(Trust::Trusted { name }) => outln!("trusted: yes (signer: {})", show(name)),
                Some(t) => outln!("trusted: no ({t})"),
                None => outln!("trusted: no"),
            }
        }
    }
    if let Some(a) = f.reader.as_ref().map(crate::attest::fact) {
        outln!("attestation: {}", crate::attest::summary(&a));
        for line in crate::attest::pcr_lines(&a) {
            outln!("{line}");
        }
    }
}

/// `verify IMAGE [--json]`: exit 0 only when integrity is ok, the image is
/// signed and the signer trusted; 4 tampered, 8 unsigned, 9 untrusted.
pub(crate) fn verify(caller: &Caller, path: &Path, json: bool) -> Result<Exit, Fail> {
    let facts = examine(caller, path, true)?;
    if json {
        outln!("{}", Value::Object(facts_json(path, &facts)));
        if let Integrity::Tampered(e) = &facts.integrity {
            errln!("{PROG}: {}: {e}", show(&path.to_string_lossy()));
        }
    } else {
        print_facts(path, &facts);
    }
    Ok(exit_for(&facts))
}
