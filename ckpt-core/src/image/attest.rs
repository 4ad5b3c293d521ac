//! TPM attestation of an image: a TPM2 quote whose qualifying data is the
//! manifest digest, stored in the signature block with the PCR values it
//! covers.
//!
//! The quote cannot be inside the manifest (it is made over the manifest's
//! digest), so it sits in the signature block, which the image signature
//! does not cover. That is safe because a quote carries its own proof: the
//! attestation key's signature over TPM-made bytes that name this
//! manifest's digest. [`verify_block`] checks it against the attestation
//! key recorded next to it; whether *that* key is one the admin trusts to
//! attest for the signer is the policy's question. A block that does not
//! verify makes the image tampered (a quote copied from another image, PCR
//! values edited); a block that is removed makes the image unattested.

use ckpt_keys::quote::{self, PcrValue, QuoteError};
use ckpt_keys::{Algorithm, PublicKey};
use serde::{Deserialize, Serialize};

use super::manifest::bytes;

/// [`AttestationBlock::kind`] of a TPM 2.0 quote.
pub const KIND_TPM2_QUOTE: &str = "tpm2-quote";
/// The only PCR bank recorded.
pub const PCR_BANK_SHA256: &str = "sha256";
/// Most PCR values an attestation may record.
const MAX_RECORDED_PCRS: usize = quote::MAX_PCRS as usize;

/// A quote as stored in the signature block (untrusted until
/// [`verify_block`] checks it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationBlock {
    /// What kind of attestation: [`KIND_TPM2_QUOTE`].
    pub kind: String,
    /// The attestation key's algorithm ([`Algorithm::name`]).
    pub algorithm: String,
    /// The attestation key (SEC1 point).
    #[serde(with = "bytes")]
    pub ak_public: Vec<u8>,
    /// The exact `TPMS_ATTEST` bytes the TPM signed.
    #[serde(with = "bytes")]
    pub attest: Vec<u8>,
    /// The attestation key's signature over SHA-256 of `attest`: `r || s`.
    #[serde(with = "bytes")]
    pub signature: Vec<u8>,
    /// The PCR bank of `pcrs`: [`PCR_BANK_SHA256`].
    pub pcr_bank: String,
    /// The quoted PCRs and their values, in ascending index order.
    pub pcrs: Vec<PcrEntry>,
}

/// One recorded PCR value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcrEntry {
    /// PCR index.
    pub index: u8,
    /// Its value (32 bytes for sha256).
    #[serde(with = "bytes")]
    pub value: Vec<u8>,
}

/// A verified attestation: the quote is bound to this image's manifest and
/// signed by `ak`; the PCR values are the ones the TPM quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// The attestation key that signed the quote.
    pub ak: PublicKey,
    /// The quoted PCR values (sha256 bank), ascending.
    pub pcrs: Vec<PcrValue>,
    /// The TPM's clock when it quoted (milliseconds since its last clear).
    pub clock: u64,
}

impl AttestationBlock {
    /// A block from a quote and the PCR values it covers.
    pub fn tpm2_quote(
        ak: &PublicKey,
        attest: Vec<u8>,
        signature: Vec<u8>,
        pcrs: &[PcrValue],
    ) -> Self {
        AttestationBlock {
            kind: KIND_TPM2_QUOTE.to_owned(),
            algorithm: ak.algorithm().name().to_owned(),
            ak_public: ak.bytes().to_vec(),
            attest,
            signature,
            pcr_bank: PCR_BANK_SHA256.to_owned(),
            pcrs: pcrs
                .iter()
                .map(|p| PcrEntry {
                    index: p.index,
                    value: p.value.to_vec(),
                })
                .collect(),
        }
    }
}

/// Checks an attestation block against the manifest digest: its shape, the
/// quote's signature under the recorded attestation key, the qualifying
/// data, the PCR selection and the PCR digest.
pub fn verify_block(
    block: &AttestationBlock,
    manifest_digest: &[u8; 32],
) -> Result<Attestation, QuoteError> {
    if block.kind != KIND_TPM2_QUOTE {
        return Err(QuoteError::Malformed("unknown attestation kind"));
    }
    let alg: Algorithm = block
        .algorithm
        .parse()
        .map_err(|_| QuoteError::KeyAlgorithm)?;
    let ak = PublicKey::from_parts(alg, &block.ak_public)
        .map_err(|_| QuoteError::Malformed("invalid attestation key"))?;
    if block.pcr_bank != PCR_BANK_SHA256 {
        return Err(QuoteError::BadPcrList("the PCR bank is not sha256"));
    }
    if block.pcrs.len() > MAX_RECORDED_PCRS {
        return Err(QuoteError::BadPcrList("too many PCRs"));
    }
    let pcrs = block
        .pcrs
        .iter()
        .map(|e| {
            let value: [u8; 32] = e
                .value
                .as_slice()
                .try_into()
                .map_err(|_| QuoteError::BadPcrList("a PCR value is not 32 bytes"))?;
            Ok(PcrValue {
                index: e.index,
                value,
            })
        })
        .collect::<Result<Vec<_>, QuoteError>>()?;
    let info = quote::verify_quote(&ak, &block.attest, &block.signature, manifest_digest, &pcrs)?;
    Ok(Attestation {
        ak,
        pcrs,
        clock: info.clock,
    })
}

/// A software stand-in for a TPM's attestation key, for the format tests
/// (the real TPM is exercised end to end against swtpm in `tests/`).
#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
pub(crate) mod fake {
    use super::*;

    /// A software "TPM" for the format tests: a P-256 AK and its quotes.
    pub(crate) struct FakeAk(p256::ecdsa::SigningKey);

    impl FakeAk {
        pub(crate) fn new(seed: u8) -> FakeAk {
            let mut s = [seed; 32];
            s[0] = 1;
            FakeAk(p256::ecdsa::SigningKey::from_slice(&s).unwrap())
        }
        pub(crate) fn public(&self) -> PublicKey {
            let pt = self.0.verifying_key().to_encoded_point(false);
            PublicKey::from_parts(Algorithm::EcdsaP256, pt.as_bytes()).unwrap()
        }
        pub(crate) fn quote(&self, digest: &[u8; 32], pcrs: &[PcrValue]) -> AttestationBlock {
            use p256::ecdsa::signature::hazmat::PrehashSigner as _;
            use sha2::Digest as _;
            let attest = quote::build_attest_for_tests(digest, pcrs);
            let h: [u8; 32] = sha2::Sha256::digest(&attest).into();
            let sig: p256::ecdsa::Signature = self.0.sign_prehash(&h).unwrap();
            AttestationBlock::tpm2_quote(&self.public(), attest, sig.to_bytes().to_vec(), pcrs)
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::fake::FakeAk;
    use super::*;

    fn pcrs() -> Vec<PcrValue> {
        (0..8)
            .map(|i| PcrValue {
                index: i,
                value: [i; 32],
            })
            .collect()
    }

    #[test]
    fn block_roundtrip_and_checks() {
        let ak = FakeAk::new(3);
        let digest = [4u8; 32];
        let block = ak.quote(&digest, &pcrs());
        let a = verify_block(&block, &digest).expect("verifies");
        assert_eq!(a.ak, ak.public());
        assert_eq!(a.pcrs, pcrs());
        assert_eq!(
            verify_block(&block, &[5u8; 32]),
            Err(QuoteError::WrongQualifyingData)
        );
        let mut b = block.clone();
        b.pcrs[3].value[0] ^= 1;
        assert_eq!(
            verify_block(&b, &digest),
            Err(QuoteError::PcrDigestMismatch)
        );
        let mut b = block.clone();
        b.pcrs[3].value.push(0);
        assert!(matches!(
            verify_block(&b, &digest),
            Err(QuoteError::BadPcrList(_))
        ));
        let mut b = block.clone();
        b.pcr_bank = "sha1".into();
        assert!(verify_block(&b, &digest).is_err());
        let mut b = block.clone();
        b.kind = "tpm1-quote".into();
        assert!(verify_block(&b, &digest).is_err());
        let mut b = block.clone();
        b.ak_public = FakeAk::new(9).public().bytes().to_vec();
        assert_eq!(verify_block(&b, &digest), Err(QuoteError::Signature));
        let mut b = block;
        b.pcrs.pop();
        assert_eq!(
            verify_block(&b, &digest),
            Err(QuoteError::SelectionMismatch)
        );
    }
}
