//! Signing backends, as the writer sees them.

use ckpt_keys::quote::QuoteError;
use ckpt_keys::{PublicKey, SigningKey, VerifyError};

use super::attest::AttestationBlock;

/// Something that can sign a manifest digest: the ed25519 file key, or a
/// TPM-resident key (implemented by `ckpt-sign`), optionally with a TPM
/// quote over the digest.
pub trait ManifestSigner {
    /// The public key that verifies this signer's signatures.
    fn public_key(&self) -> PublicKey;

    /// Signs [`ckpt_keys::signed_message`] for this key and `digest`.
    fn sign_manifest_digest(&self, digest: &[u8; 32]) -> Result<Vec<u8>, SignError>;

    /// A TPM2 quote whose qualifying data is `digest`, when this signer
    /// attests the images it signs. The default attests nothing.
    fn attest_manifest_digest(
        &self,
        _digest: &[u8; 32],
    ) -> Result<Option<AttestationBlock>, SignError> {
        Ok(None)
    }
}

/// Why signing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The signing backend (a TPM, for example) failed.
    #[error("{backend} signing backend failed")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// Its error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The signer produced a signature that does not verify under its own
    /// public key (checked by the writer before it is written).
    #[error("the signer's signature does not verify under its public key")]
    SelfCheck(#[source] VerifyError),
    /// The signer produced an attestation that does not verify (checked by
    /// the writer before it is written).
    #[error("the signer's TPM quote does not verify")]
    AttestationSelfCheck(#[source] QuoteError),
}

impl ManifestSigner for SigningKey {
    fn public_key(&self) -> PublicKey {
        SigningKey::public_key(self)
    }

    fn sign_manifest_digest(&self, digest: &[u8; 32]) -> Result<Vec<u8>, SignError> {
        Ok(SigningKey::sign_manifest_digest(self, digest))
    }
}
