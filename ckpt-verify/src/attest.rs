//! The image's TPM attestation, as the verifier sees it.
//!
//! The image reader has already checked the quote (bound to this manifest,
//! signed by the attestation key it names, PCR digest); a quote that fails
//! makes the image tampered. What is left is whose attestation key it is:
//! this host's own (`<sysconfdir>/keys/tpm-ak.pub`) is recognised here; a
//! policy names others per signer (`attestation_key`), and `attested` rules
//! decide (`ckpt_policy::decide`). Nothing here needs a TPM.

use ckpt_core::image::ImageReader;
use ckpt_keys::quote::PcrValue;
use ckpt_keys::PublicKey;
use serde_json::{json, Value};

use crate::hex;

/// This host's attestation key, if it has one.
pub(crate) fn host_ak() -> Option<PublicKey> {
    ckpt_keys::store::load_public_file(
        &ckpt_core::paths::keys_dir(),
        ckpt_keys::store::TPM_AK_PUB_FILE,
    )
    .ok()
}

/// This host's TPM signing key, if it has one.
pub(crate) fn host_tpm_key() -> Option<PublicKey> {
    ckpt_keys::store::load_public_file(
        &ckpt_core::paths::keys_dir(),
        ckpt_keys::store::TPM_PUB_FILE,
    )
    .ok()
}

/// The attestation fact for the policy.
pub(crate) fn fact(reader: &ImageReader) -> ckpt_policy::Attestation {
    match reader.attestation() {
        None => ckpt_policy::Attestation::None,
        Some(a) => ckpt_policy::Attestation::Quote(ckpt_policy::Quote {
            host_ak: host_ak().as_ref() == Some(&a.ak),
            ak: a.ak.clone(),
            pcrs: a.pcrs.clone(),
        }),
    }
}

fn indices(pcrs: &[PcrValue]) -> String {
    pcrs.iter()
        .map(|p| p.index.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// One line: `none`, or who quoted which PCRs.
pub(crate) fn summary(a: &ckpt_policy::Attestation) -> String {
    match a {
        ckpt_policy::Attestation::Quote(q) => format!(
            "TPM quote by attestation key {}{}, sha256 PCRs {}",
            q.ak.key_id(),
            if q.host_ak { " (this host's)" } else { "" },
            indices(&q.pcrs)
        ),
        _ => "none".to_owned(),
    }
}

/// The PCR values, one per line, indented.
pub(crate) fn pcr_lines(a: &ckpt_policy::Attestation) -> Vec<String> {
    match a {
        ckpt_policy::Attestation::Quote(q) => q
            .pcrs
            .iter()
            .map(|p| format!("  PCR {:>2}: {}", p.index, hex(&p.value)))
            .collect(),
        _ => Vec::new(),
    }
}

/// JSON: `null`, or the key, whether it is this host's, and the values.
pub(crate) fn to_json(a: &ckpt_policy::Attestation) -> Value {
    match a {
        ckpt_policy::Attestation::Quote(q) => json!({
            "kind": "tpm2-quote",
            "attestation_key": q.ak.key_id().to_string(),
            "host_attestation_key": q.host_ak,
            "pcr_bank": "sha256",
            "pcrs": q.pcrs.iter().map(|p| (p.index.to_string(), Value::from(hex(&p.value)))).collect::<serde_json::Map<_, _>>(),
        }),
        _ => Value::Null,
    }
}

/// The quoted values as a policy line (`attested = [{ 0 = "…", … }]`), for
/// an admin who wants to allow exactly this boot state.
pub(crate) fn policy_line(pcrs: &[PcrValue]) -> String {
    let inner: Vec<String> = pcrs
        .iter()
        .map(|p| format!("{} = \"{}\"", p.index, hex(&p.value)))
        .collect();
    format!("attested = [{{ {} }}]", inner.join(", "))
}
