//! Built without TPM support (`ckpt-tpm`'s `device` feature off, so
//! libtss2 is not linked): the same API as the real connection, and
//! [`Tpm::connect`] always fails with [`TpmError::NotBuilt`]. Every other
//! operation needs a connection, so none is ever reached. The file key,
//! `ckpt.toml` and the key record work as with TPM support.

use ckpt_keys::quote::PcrValue;
use ckpt_keys::PublicKey;

use crate::store::{KeyRef, TpmKeyRecord};

/// Why a TPM operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TpmError {
    /// This build has no TPM support.
    #[error(
        "this ckpt-sign was built without TPM support (cargo feature `tpm`); \
         use the file host key (`[signing] key = \"file\"` in ckpt.toml)"
    )]
    NotBuilt,
    /// The TPM returned something this crate cannot use.
    #[error("unexpected TPM output: {0}")]
    Unexpected(&'static str),
}

/// A key loaded from its persistent handle (never made in this build).
#[derive(Debug)]
pub struct LoadedKey {
    public: PublicKey,
}

impl LoadedKey {
    /// The key's public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }
}

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

/// What [`Tpm::provision`] did.
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

/// A connection to the TPM (none can be made in this build).
#[derive(Debug)]
pub struct Tpm {
    never: std::convert::Infallible,
}

impl Tpm {
    /// Always [`TpmError::NotBuilt`].
    pub fn connect(_tcti: &str) -> Result<Tpm, TpmError> {
        Err(TpmError::NotBuilt)
    }

    pub fn load(&mut self, _key: &KeyRef, _restricted: bool) -> Result<LoadedKey, TpmError> {
        match self.never {}
    }

    pub fn provision(
        &mut self,
        _signing_handle: u32,
        _ak_handle: u32,
        _existing: Option<&TpmKeyRecord>,
        _force: bool,
    ) -> Result<ProvisionOutcome, TpmError> {
        match self.never {}
    }

    pub fn sign_manifest_digest(
        &mut self,
        _key: &LoadedKey,
        _manifest_digest: &[u8; 32],
    ) -> Result<Vec<u8>, TpmError> {
        match self.never {}
    }

    pub fn pcr_read(&mut self, _pcrs: &[u8]) -> Result<Vec<PcrValue>, TpmError> {
        match self.never {}
    }

    pub fn quote(
        &mut self,
        _ak: &LoadedKey,
        _qualifying: &[u8; 32],
        _pcrs: &[u8],
    ) -> Result<TpmQuote, TpmError> {
        match self.never {}
    }

    pub fn pcr_extend(&mut self, _index: u8, _digest: &[u8; 32]) -> Result<(), TpmError> {
        match self.never {}
    }
}
