//! TPM2 quotes: parsing a `TPMS_ATTEST` structure and verifying a quote in
//! pure software (no TPM needed).
//!
//! A quote is what the TPM's attestation key (AK), a *restricted* signing
//! key, signs: a `TPMS_ATTEST` of type `TPM_ST_ATTEST_QUOTE` that starts
//! with the `TPM_GENERATED` magic (which a restricted key never signs for
//! data that came from outside the TPM), carries the caller's qualifying
//! data (`extraData`) and the digest of the selected PCR values.
//!
//! [`verify_quote`] checks, in order: the AK's ECDSA P-256 signature over
//! SHA-256 of the exact attest bytes; the magic and type; that the whole
//! structure is consumed (no trailing bytes); that `extraData` is the
//! expected qualifying data; that the PCR selection is exactly the sha256
//! bank with the recorded PCR indices; and that `pcrDigest` is SHA-256 of
//! the recorded values, in index order. The firmware version and the reset
//! and restart counters are obfuscated for keys outside the endorsement
//! hierarchy, so nothing relies on them.
//!
//! Byte layout (big-endian), as TPM 2.0 Part 2 defines it:
//!
//! ```text
//! magic u32 | type u16 | qualifiedSigner TPM2B_NAME | extraData TPM2B_DATA
//! | clockInfo { clock u64, resetCount u32, restartCount u32, safe u8 }
//! | firmwareVersion u64
//! | TPMS_QUOTE_INFO { pcrSelect TPML_PCR_SELECTION, pcrDigest TPM2B_DIGEST }
//! ```

use sha2::{Digest as _, Sha256};

use crate::ecdsa;
use crate::public::{Algorithm, PublicKey};

/// `TPM_GENERATED_VALUE`: the first four bytes of every TPM-made attest.
pub const TPM_GENERATED: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
pub const ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_ALG_SHA256`.
pub const ALG_SHA256: u16 = 0x000b;
/// Number of PCRs a selection may name (TPM 2.0 PC client: 24).
pub const MAX_PCRS: u8 = 24;
/// Largest attest structure accepted (a real quote is ~150 bytes).
pub const MAX_ATTEST_LEN: usize = 1024;

/// One PCR of the sha256 bank and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PcrValue {
    /// The PCR index (0..24).
    pub index: u8,
    /// Its SHA-256 value.
    pub value: [u8; 32],
}

/// The fields of a parsed quote this crate uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteInfo {
    /// The TPM's clock (milliseconds) when it quoted.
    pub clock: u64,
    /// The qualifying data.
    pub extra_data: Vec<u8>,
    /// PCR selection: hash algorithm and the selected indices, ascending.
    pub selection: Vec<(u16, Vec<u8>)>,
    /// Digest of the selected PCR values.
    pub pcr_digest: Vec<u8>,
}

/// Why a quote does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteError {
    /// The attestation key is not an ECDSA P-256 key.
    #[error("the attestation key is not an ECDSA P-256 key")]
    KeyAlgorithm,
    /// The AK's signature over the attest bytes does not verify.
    #[error("the quote's signature does not verify under the attestation key")]
    Signature,
    /// The attest structure cannot be parsed; the text says where.
    #[error("malformed quote: {0}")]
    Malformed(&'static str),
    /// It was not made by a TPM (magic) or is not a quote (type).
    #[error("not a TPM quote: {0}")]
    NotAQuote(&'static str),
    /// `extraData` is not the expected qualifying data: the quote was made
    /// for something else (another image).
    #[error("the quote is bound to other data, not to this image")]
    WrongQualifyingData,
    /// The recorded PCR values are not a valid list (order, range).
    #[error("recorded PCR values: {0}")]
    BadPcrList(&'static str),
    /// The quote's PCR selection is not the recorded PCRs of the sha256 bank.
    #[error("the quote's PCR selection differs from the recorded PCRs")]
    SelectionMismatch,
    /// The quote's PCR digest is not the digest of the recorded values.
    #[error("the recorded PCR values do not match the quote's PCR digest")]
    PcrDigestMismatch,
}

/// Digest of PCR values as a TPM computes `pcrDigest` for a single-bank
/// sha256 selection: SHA-256 of the values in ascending index order.
pub fn pcr_digest(pcrs: &[PcrValue]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in pcrs {
        h.update(p.value);
    }
    h.finalize().into()
}

/// Checks that `pcrs` is a strictly ascending list of valid, distinct PCR
/// indices, at least one.
pub fn check_pcr_list(pcrs: &[PcrValue]) -> Result<(), QuoteError> {
    if pcrs.is_empty() {
        return Err(QuoteError::BadPcrList("empty"));
    }
    if pcrs.iter().any(|p| p.index >= MAX_PCRS) {
        return Err(QuoteError::BadPcrList("PCR index out of range"));
    }
    if pcrs.windows(2).any(|w| w[0].index >= w[1].index) {
        return Err(QuoteError::BadPcrList("not in strictly ascending order"));
    }
    Ok(())
}

/// Verifies a quote: see the module doc. Returns the parsed quote.
pub fn verify_quote(
    ak: &PublicKey,
    attest: &[u8],
    signature: &[u8],
    qualifying_data: &[u8],
    pcrs: &[PcrValue],
) -> Result<QuoteInfo, QuoteError> {
    if ak.algorithm() != Algorithm::EcdsaP256 {
        return Err(QuoteError::KeyAlgorithm);
    }
    if attest.len() > MAX_ATTEST_LEN {
        return Err(QuoteError::Malformed("too long"));
    }
    let digest: [u8; 32] = Sha256::digest(attest).into();
    ecdsa::verify_prehash_any_s(ak.bytes(), &digest, signature)
        .map_err(|_| QuoteError::Signature)?;
    let info = parse_quote(attest)?;
    if info.extra_data != qualifying_data {
        return Err(QuoteError::WrongQualifyingData);
    }
    check_pcr_list(pcrs)?;
    let indices: Vec<u8> = pcrs.iter().map(|p| p.index).collect();
    if info.selection != [(ALG_SHA256, indices)] {
        return Err(QuoteError::SelectionMismatch);
    }
    if info.pcr_digest[..] != pcr_digest(pcrs)[..] {
        return Err(QuoteError::PcrDigestMismatch);
    }
    Ok(info)
}

/// Parses a `TPMS_ATTEST` of type quote; the whole input must be consumed.
/// Does not check any signature.
pub fn parse_quote(attest: &[u8]) -> Result<QuoteInfo, QuoteError> {
    let mut r = Reader(attest);
    if r.u32()? != TPM_GENERATED {
        return Err(QuoteError::NotAQuote("magic is not TPM_GENERATED"));
    }
    if r.u16()? != ST_ATTEST_QUOTE {
        return Err(QuoteError::NotAQuote("type is not TPM_ST_ATTEST_QUOTE"));
    }
    let _qualified_signer = r.sized()?;
    let extra_data = r.sized()?.to_vec();
    let clock = r.u64()?;
    let _reset_count = r.u32()?;
    let _restart_count = r.u32()?;
    let safe = r.u8()?;
    if safe > 1 {
        return Err(QuoteError::Malformed("clockInfo.safe is not a boolean"));
    }
    let _firmware_version = r.u64()?;
    let count = r.u32()?;
    if count > 16 {
        return Err(QuoteError::Malformed("too many PCR selections"));
    }
    let mut selection = Vec::new();
    for _ in 0..count {
        let alg = r.u16()?;
        let size = r.u8()?;
        if size > 4 {
            return Err(QuoteError::Malformed("PCR bitmap longer than 4 bytes"));
        }
        let bits = r.take(usize::from(size))?;
        let mut indices = Vec::new();
        for (byte, b) in bits.iter().enumerate() {
            for bit in 0..8u8 {
                if b & (1 << bit) != 0 {
                    // byte < 4, so the index is < 32.
                    indices.push(byte as u8 * 8 + bit);
                }
            }
        }
        selection.push((alg, indices));
    }
    let pcr_digest = r.sized()?.to_vec();
    if !r.0.is_empty() {
        return Err(QuoteError::Malformed("trailing bytes after the quote"));
    }
    Ok(QuoteInfo {
        clock,
        extra_data,
        selection,
        pcr_digest,
    })
}

/// A cursor over big-endian TPM data.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], QuoteError> {
        if self.0.len() < n {
            return Err(QuoteError::Malformed("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], QuoteError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, QuoteError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, QuoteError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, QuoteError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, QuoteError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    /// A TPM2B: a u16 size, then that many bytes.
    fn sized(&mut self) -> Result<&'a [u8], QuoteError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// Builds a quote's attest bytes (for tests here and in other crates that
/// cannot run a TPM): `extra` as qualifying data, a sha256 selection of
/// `pcrs`' indices and their digest.
#[doc(hidden)]
pub fn build_attest_for_tests(extra: &[u8], pcrs: &[PcrValue]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&TPM_GENERATED.to_be_bytes());
    v.extend_from_slice(&ST_ATTEST_QUOTE.to_be_bytes());
    // qualifiedSigner: sha256 name of some key.
    v.extend_from_slice(&34u16.to_be_bytes());
    v.extend_from_slice(&ALG_SHA256.to_be_bytes());
    v.extend_from_slice(&[0x5a; 32]);
    v.extend_from_slice(&(extra.len() as u16).to_be_bytes());
    v.extend_from_slice(extra);
    v.extend_from_slice(&123_456u64.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 1]);
    v.extend_from_slice(&[0x11; 8]);
    v.extend_from_slice(&1u32.to_be_bytes());
    v.extend_from_slice(&ALG_SHA256.to_be_bytes());
    v.push(3);
    let mut bits = [0u8; 3];
    for p in pcrs {
        if let Some(b) = bits.get_mut(usize::from(p.index / 8)) {
            *b |= 1 << (p.index % 8);
        }
    }
    v.extend_from_slice(&bits);
    v.extend_from_slice(&32u16.to_be_bytes());
    v.extend_from_slice(&pcr_digest(pcrs));
    v
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner as _;
    use p256::ecdsa::{Signature, SigningKey};

    fn ak() -> (SigningKey, PublicKey) {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).unwrap();
        seed[0] = 1;
        let sk = SigningKey::from_slice(&seed).unwrap();
        let pt = sk.verifying_key().to_encoded_point(false);
        let pk = PublicKey::from_parts(Algorithm::EcdsaP256, pt.as_bytes()).unwrap();
        (sk, pk)
    }

    fn sign(sk: &SigningKey, attest: &[u8]) -> Vec<u8> {
        let d: [u8; 32] = Sha256::digest(attest).into();
        let s: Signature = sk.sign_prehash(&d).unwrap();
        s.to_bytes().to_vec()
    }

    fn pcrs() -> Vec<PcrValue> {
        (0..8)
            .map(|i| PcrValue {
                index: i,
                value: [i * 3 + 1; 32],
            })
            .collect()
    }

    #[test]
    fn a_good_quote_verifies() {
        let (sk, pk) = ak();
        let extra = [9u8; 32];
        let attest = build_attest_for_tests(&extra, &pcrs());
        assert_eq!(attest.len(), 145, "the size docs/TPM.md measured");
        let sig = sign(&sk, &attest);
        let info = verify_quote(&pk, &attest, &sig, &extra, &pcrs()).expect("verifies");
        assert_eq!(info.clock, 123_456);
        assert_eq!(info.selection, vec![(ALG_SHA256, (0..8).collect())]);
    }

    #[test]
    fn every_binding_is_checked() {
        let (sk, pk) = ak();
        let extra = [9u8; 32];
        let good = build_attest_for_tests(&extra, &pcrs());
        let sig = sign(&sk, &good);
        // Another image's digest.
        assert_eq!(
            verify_quote(&pk, &good, &sig, &[8u8; 32], &pcrs()),
            Err(QuoteError::WrongQualifyingData)
        );
        // Another AK.
        let (_, other) = ak();
        assert_eq!(
            verify_quote(&other, &good, &sig, &extra, &pcrs()),
            Err(QuoteError::Signature)
        );
        // A changed recorded PCR value.
        let mut changed = pcrs();
        changed[7].value[0] ^= 1;
        assert_eq!(
            verify_quote(&pk, &good, &sig, &extra, &changed),
            Err(QuoteError::PcrDigestMismatch)
        );
        // A recorded list that is not the selection.
        assert_eq!(
            verify_quote(&pk, &good, &sig, &extra, &pcrs()[..7]),
            Err(QuoteError::SelectionMismatch)
        );
        let mut unordered = pcrs();
        unordered.swap(0, 1);
        assert!(matches!(
            verify_quote(&pk, &good, &sig, &extra, &unordered),
            Err(QuoteError::BadPcrList(_))
        ));
        // Every flipped byte of the attest breaks the signature.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert_eq!(
                verify_quote(&pk, &bad, &sig, &extra, &pcrs()),
                Err(QuoteError::Signature),
                "byte {i}"
            );
        }
    }

    #[test]
    fn structure_is_strict_even_when_signed() {
        let (sk, pk) = ak();
        let extra = [9u8; 32];
        let good = build_attest_for_tests(&extra, &pcrs());
        let check = |attest: &[u8]| verify_quote(&pk, attest, &sign(&sk, attest), &extra, &pcrs());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(check(&trailing), Err(QuoteError::Malformed(_))));
        for n in 0..good.len() {
            assert!(check(&good[..n]).is_err(), "truncated at {n}");
        }
        let mut magic = good.clone();
        magic[0] = 0;
        assert!(matches!(check(&magic), Err(QuoteError::NotAQuote(_))));
        let mut kind = good.clone();
        kind[5] = 0x17; // TPM_ST_ATTEST_CERTIFY
        assert!(matches!(check(&kind), Err(QuoteError::NotAQuote(_))));
        let ed = crate::SigningKey::generate().unwrap().public_key();
        assert_eq!(
            verify_quote(&ed, &good, &sign(&sk, &good), &extra, &pcrs()),
            Err(QuoteError::KeyAlgorithm)
        );
    }
}
