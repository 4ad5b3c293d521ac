//! What the TPM hands back from provisioning and quoting, the same
//! whether it came from the device (`device.rs`, in the agent) or over the
//! agent's socket (`remote.rs`, in `ckpt-sign`).
//!
//! Owns: nothing (plain data). Trusts: whoever built it (the device
//! connection, or the agent's validated answer).

use ckpt_keys::quote::PcrValue;
use ckpt_keys::PublicKey;

use crate::store::TpmKeyRecord;

/// A quote and the PCR values it covers.
#[derive(Debug, Clone)]
pub struct TpmQuote {
    /// The exact `TPMS_ATTEST` bytes the attestation key signed.
    pub attest: Vec<u8>,
    /// The signature: `r || s`, low `s`.
    pub signature: Vec<u8>,
    /// The quoted sha256 PCR values, ascending.
    pub pcrs: Vec<PcrValue>,
}

/// What provisioning the keys did.
#[derive(Debug)]
pub struct ProvisionOutcome {
    /// The record to write to `tpm.key`.
    pub record: TpmKeyRecord,
    /// The signing key.
    pub signing: PublicKey,
    /// The attestation key.
    pub attestation: PublicKey,
    /// True when existing keys were reused.
    pub reused: bool,
}
