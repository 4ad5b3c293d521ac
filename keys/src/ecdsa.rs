//! ECDSA over NIST P-256 with SHA-256: verification in pure software
//! (`p256`), for keys that live in a TPM.
//!
//! Encodings:
//!
//! * public key: a SEC1 point, uncompressed (`04 || x || y`, 65 bytes) or
//!   compressed (33 bytes);
//! * signature: `r || s`, each a 32-byte big-endian integer (64 bytes).
//!
//! An image signature must have a low `s` (at most n/2): `ckpt-sign`
//! normalises the TPM's output ([`normalize_signature`]), and
//! [`verify_message`] refuses the high-S twin, so that a signature is not
//! malleable (as ed25519's `verify_strict`). [`verify_prehash_any_s`], used
//! for TPM quotes, accepts either: the quote's own bytes are what it binds.

use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};

use crate::error::VerifyError;

/// Length of an `r || s` signature.
pub const SIGNATURE_LEN: usize = 64;

/// Length of one coordinate or scalar.
pub const SCALAR_LEN: usize = 32;

/// Whether `bytes` is a valid SEC1 encoding of a P-256 point (on the curve,
/// not the identity).
pub(crate) fn is_valid_point(bytes: &[u8]) -> bool {
    VerifyingKey::from_sec1_bytes(bytes).is_ok()
}

fn parse(key: &[u8], signature: &[u8]) -> Result<(VerifyingKey, Signature), VerifyError> {
    if signature.len() != SIGNATURE_LEN {
        return Err(VerifyError::BadLength {
            len: signature.len(),
            expected: SIGNATURE_LEN,
        });
    }
    let vk = VerifyingKey::from_sec1_bytes(key).map_err(|_| VerifyError::BadSignature)?;
    let sig = Signature::from_slice(signature).map_err(|_| VerifyError::BadSignature)?;
    Ok((vk, sig))
}

/// Verifies an ECDSA-SHA256 signature over `message`: the signature must be
/// `r || s` with a low `s`.
pub fn verify_message(key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
    let (vk, sig) = parse(key, signature)?;
    if sig.normalize_s().is_some() {
        // `s` is in the upper half: the malleable twin of a valid signature.
        return Err(VerifyError::BadSignature);
    }
    vk.verify(message, &sig)
        .map_err(|_| VerifyError::BadSignature)
}

/// Verifies an ECDSA signature over a SHA-256 digest, accepting either `s`.
pub fn verify_prehash_any_s(
    key: &[u8],
    digest: &[u8; 32],
    signature: &[u8],
) -> Result<(), VerifyError> {
    let (vk, sig) = parse(key, signature)?;
    let sig = sig.normalize_s().unwrap_or(sig);
    vk.verify_prehash(digest, &sig)
        .map_err(|_| VerifyError::BadSignature)
}

/// `r || s` from the two big-endian integers a TPM returns (which may be
/// shorter than 32 bytes, or carry leading zeros), with `s` normalised to
/// the lower half. `None` when they are not a well-formed signature.
pub fn normalize_signature(r: &[u8], s: &[u8]) -> Option<[u8; SIGNATURE_LEN]> {
    let r = fixed(r)?;
    let s = fixed(s)?;
    let sig = Signature::from_scalars(r, s).ok()?;
    let sig = sig.normalize_s().unwrap_or(sig);
    let mut out = [0u8; SIGNATURE_LEN];
    out.copy_from_slice(&sig.to_bytes());
    Some(out)
}

/// A big-endian integer as exactly 32 bytes (leading zeros added or
/// removed). `None` when it does not fit.
pub fn fixed(v: &[u8]) -> Option<[u8; SCALAR_LEN]> {
    let first = v.iter().position(|&b| b != 0).unwrap_or(v.len());
    let v = &v[first..];
    if v.len() > SCALAR_LEN {
        return None;
    }
    let mut out = [0u8; SCALAR_LEN];
    out[SCALAR_LEN - v.len()..].copy_from_slice(v);
    Some(out)
}

/// The uncompressed SEC1 point `04 || x || y` from a TPM's coordinates.
/// `None` when they are not a point on the curve.
pub fn point_from_coordinates(x: &[u8], y: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(65);
    out.push(0x04);
    out.extend_from_slice(&fixed(x)?);
    out.extend_from_slice(&fixed(y)?);
    is_valid_point(&out).then_some(out)
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner as _;
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::SigningKey;
    use sha2::{Digest as _, Sha256};

    fn key() -> (SigningKey, Vec<u8>) {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).unwrap();
        seed[0] = 1;
        let sk = SigningKey::from_slice(&seed).unwrap();
        let pk = sk
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        (sk, pk)
    }

    /// The high-S twin of a low-S signature.
    fn high_s(sig: &Signature) -> [u8; 64] {
        let (r, s) = (sig.r(), sig.s());
        let neg = -*s;
        let twin = Signature::from_scalars(r.to_bytes(), neg.to_bytes()).unwrap();
        assert!(twin.normalize_s().is_some(), "twin is high-S");
        let mut out = [0u8; 64];
        out.copy_from_slice(&twin.to_bytes());
        out
    }

    #[test]
    fn message_signatures_verify_low_s_only() {
        let (sk, pk) = key();
        let msg = b"ckpt-image-v1\0ecdsa-p256\0...";
        let sig: Signature = sk.sign(msg);
        let sig = sig.normalize_s().unwrap_or(sig);
        verify_message(&pk, msg, &sig.to_bytes()).expect("verifies");
        assert_eq!(
            verify_message(&pk, msg, &high_s(&sig)),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify_message(&pk, b"other", &sig.to_bytes()),
            Err(VerifyError::BadSignature)
        );
        assert!(matches!(
            verify_message(&pk, msg, &sig.to_bytes()[..63]),
            Err(VerifyError::BadLength { .. })
        ));
        let (_, other) = key();
        assert!(verify_message(&other, msg, &sig.to_bytes()).is_err());
        // Normalising the high-S twin gives the low-S signature back.
        let twin = high_s(&sig);
        let n = normalize_signature(&twin[..32], &twin[32..]).unwrap();
        assert_eq!(n[..], sig.to_bytes()[..]);
        verify_message(&pk, msg, &n).expect("normalised verifies");
    }

    #[test]
    fn prehash_accepts_either_s() {
        let (sk, pk) = key();
        let digest: [u8; 32] = Sha256::digest(b"attest bytes").into();
        let sig: Signature = sk.sign_prehash(&digest).unwrap();
        let sig = sig.normalize_s().unwrap_or(sig);
        verify_prehash_any_s(&pk, &digest, &sig.to_bytes()).expect("low");
        verify_prehash_any_s(&pk, &digest, &high_s(&sig)).expect("high");
        assert!(verify_prehash_any_s(&pk, &[0; 32], &sig.to_bytes()).is_err());
    }

    #[test]
    fn coordinates_and_scalars() {
        assert_eq!(fixed(&[0, 0, 1]).unwrap()[31], 1);
        assert!(fixed(&[1u8; 33]).is_none());
        let mut padded = vec![0u8; 3];
        padded.extend_from_slice(&[7u8; 32]);
        assert_eq!(fixed(&padded).unwrap(), [7u8; 32]);
        let (_, pk) = key();
        let p = point_from_coordinates(&pk[1..33], &pk[33..]).unwrap();
        assert_eq!(p, pk);
        assert!(point_from_coordinates(&[1u8; 32], &[2u8; 32]).is_none());
        assert!(normalize_signature(&[0u8; 32], &[1u8; 32]).is_none());
    }
}
