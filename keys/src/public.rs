//! Public keys, key ids, their text form, and signature verification.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::error::{KeyError, VerifyError};
use crate::{IMAGE_SIGNATURE_CONTEXT, IMAGE_SIGNATURE_CONTEXT_V1, KEY_ID_CONTEXT};

/// Longest public-key line accepted by [`PublicKey::from_line`].
const MAX_LINE_LEN: usize = 1024;

/// Prefix of the first field of a public-key line (`ckpt-ed25519`).
const LINE_PREFIX: &str = "ckpt-";

/// Length of an ed25519 signature.
const ED25519_SIGNATURE_LEN: usize = 64;

/// A signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Ed25519 (RFC 8032), verified with `verify_strict`.
    Ed25519,
    /// ECDSA over NIST P-256 with SHA-256 (for TPM-resident keys), verified
    /// in software (`p256`); signatures are `r || s` with a low `s`.
    EcdsaP256,
}

impl Algorithm {
    /// The algorithm's name, as used in key ids, signed messages, the
    /// public-key line (after `ckpt-`) and the image's signature block.
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::EcdsaP256 => "ecdsa-p256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "ed25519" => Ok(Algorithm::Ed25519),
            "ecdsa-p256" => Ok(Algorithm::EcdsaP256),
            other => Err(KeyError::UnknownAlgorithm(printable_prefix(other))),
        }
    }
}

/// At most 64 characters of untrusted text, for an error message.
fn printable_prefix(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A key id: the first 16 bytes of
/// `SHA-256("ckpt-key-id-v1\0" || algorithm name || "\0" || key bytes)`.
/// Written as 32 lowercase hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for KeyId {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        let malformed = |reason| KeyError::Malformed {
            what: "key id",
            reason,
        };
        if s.len() != 32 {
            return Err(malformed("must be 32 hex characters"));
        }
        if !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(malformed("must be lowercase hex"));
        }
        let mut id = [0u8; 16];
        hex::decode_to_slice(s, &mut id).map_err(|_| malformed("must be lowercase hex"))?;
        Ok(KeyId(id))
    }
}

/// A public key: an algorithm and the key's bytes (32 bytes for ed25519;
/// a SEC1 point, compressed or not, for ECDSA P-256).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    alg: Algorithm,
    bytes: Vec<u8>,
}

impl PublicKey {
    /// A public key from its algorithm and bytes. Ed25519 keys must be valid,
    /// non-small-order curve points.
    pub fn from_parts(alg: Algorithm, bytes: &[u8]) -> Result<Self, KeyError> {
        match alg {
            Algorithm::Ed25519 => {
                let arr: &[u8; 32] = bytes.try_into().map_err(|_| KeyError::InvalidKey {
                    alg,
                    reason: "must be 32 bytes",
                })?;
                let vk = ed25519_dalek::VerifyingKey::from_bytes(arr).map_err(|_| {
                    KeyError::InvalidKey {
                        alg,
                        reason: "not a curve point",
                    }
                })?;
                if vk.is_weak() {
                    return Err(KeyError::InvalidKey {
                        alg,
                        reason: "small-order point",
                    });
                }
            }
            Algorithm::EcdsaP256 => {
                let shape_ok = match bytes.first() {
                    Some(0x04) => bytes.len() == 65,
                    Some(0x02 | 0x03) => bytes.len() == 33,
                    _ => false,
                };
                if !shape_ok {
                    return Err(KeyError::InvalidKey {
                        alg,
                        reason: "must be a SEC1 point (33 or 65 bytes)",
                    });
                }
                if !crate::ecdsa::is_valid_point(bytes) {
                    return Err(KeyError::InvalidKey {
                        alg,
                        reason: "not a point on the P-256 curve",
                    });
                }
            }
        }
        Ok(PublicKey {
            alg,
            bytes: bytes.to_vec(),
        })
    }

    /// An ed25519 key already known to be a valid, non-small-order point.
    pub(crate) fn from_ed25519_unchecked(bytes: [u8; 32]) -> Self {
        PublicKey {
            alg: Algorithm::Ed25519,
            bytes: bytes.to_vec(),
        }
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The key's id (see [`KeyId`]).
    pub fn key_id(&self) -> KeyId {
        let mut h = Sha256::new();
        h.update(KEY_ID_CONTEXT);
        h.update(self.alg.name().as_bytes());
        h.update([0u8]);
        h.update(&self.bytes);
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        KeyId(id)
    }

    /// The key as one line of text, without a newline:
    /// `ckpt-<algorithm> <base64 key> <key id>`.
    pub fn to_line(&self) -> String {
        format!(
            "{LINE_PREFIX}{} {} {}",
            self.alg.name(),
            BASE64.encode(&self.bytes),
            self.key_id()
        )
    }

    /// Parses a line written by [`PublicKey::to_line`]. Surrounding
    /// whitespace (a trailing newline) is ignored; otherwise the line must
    /// have exactly three fields separated by single spaces, canonical
    /// padded base64, and the id of the key it holds.
    pub fn from_line(line: &str) -> Result<Self, KeyError> {
        let malformed = |reason| KeyError::Malformed {
            what: "public key line",
            reason,
        };
        if line.len() > MAX_LINE_LEN {
            return Err(malformed("too long"));
        }
        let mut fields = line.trim().split(' ');
        let (Some(alg), Some(key), Some(id), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(malformed(
                "expected three fields: ckpt-<algorithm> <base64 key> <key id>",
            ));
        };
        let alg = alg
            .strip_prefix(LINE_PREFIX)
            .ok_or(malformed("first field must start with \"ckpt-\""))?
            .parse::<Algorithm>()?;
        let bytes = BASE64
            .decode(key)
            .map_err(|_| malformed("key is not canonical base64"))?;
        let stated: KeyId = id.parse()?;
        let key = PublicKey::from_parts(alg, &bytes)?;
        let computed = key.key_id();
        if stated != computed {
            return Err(KeyError::KeyIdMismatch { stated, computed });
        }
        Ok(key)
    }

    /// Verifies `signature` over [`signed_message`] for this key and
    /// `digest` (ed25519 `verify_strict`; ECDSA P-256 with SHA-256 over the
    /// message, low `s` only).
    pub fn verify_manifest_digest(
        &self,
        digest: &[u8; 32],
        signature: &[u8],
    ) -> Result<(), VerifyError> {
        self.verify_message(&signed_message(self.alg, &self.key_id(), digest), signature)
    }

    /// [`verify_manifest_digest`](Self::verify_manifest_digest) for an
    /// image of format version 1: over [`signed_message_v1`].
    pub fn verify_manifest_digest_v1(
        &self,
        digest: &[u8; 32],
        signature: &[u8],
    ) -> Result<(), VerifyError> {
        self.verify_message(
            &signed_message_v1(self.alg, &self.key_id(), digest),
            signature,
        )
    }

    fn verify_message(&self, msg: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
        match self.alg {
            Algorithm::Ed25519 => {
                let sig = ed25519_dalek::Signature::from_slice(signature).map_err(|_| {
                    VerifyError::BadLength {
                        len: signature.len(),
                        expected: ED25519_SIGNATURE_LEN,
                    }
                })?;
                let arr: &[u8; 32] = self
                    .bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| VerifyError::BadSignature)?;
                let vk = ed25519_dalek::VerifyingKey::from_bytes(arr)
                    .map_err(|_| VerifyError::BadSignature)?;
                vk.verify_strict(msg, &sig)
                    .map_err(|_| VerifyError::BadSignature)
            }
            Algorithm::EcdsaP256 => crate::ecdsa::verify_message(&self.bytes, msg, signature),
        }
    }
}

/// The exact bytes signed for an image (format version 2):
/// `"ckpt-image-v2\0" || algorithm name || "\0" || key id (16 bytes) ||
/// manifest digest (32 bytes)`.
///
/// Naming the context (with the format version), the algorithm and the key
/// makes a signature useless for anything else: it cannot be replayed as a
/// signature by another key, of another algorithm, over another kind of
/// object, or over an image of another format version.
pub fn signed_message(alg: Algorithm, key_id: &KeyId, manifest_digest: &[u8; 32]) -> Vec<u8> {
    message(IMAGE_SIGNATURE_CONTEXT, alg, key_id, manifest_digest)
}

/// The bytes signed for an image of format version 1: as
/// [`signed_message`], with the context `"ckpt-image-v1\0"`. Only verified
/// (old images), never signed.
pub fn signed_message_v1(alg: Algorithm, key_id: &KeyId, manifest_digest: &[u8; 32]) -> Vec<u8> {
    message(IMAGE_SIGNATURE_CONTEXT_V1, alg, key_id, manifest_digest)
}

fn message(context: &[u8], alg: Algorithm, key_id: &KeyId, manifest_digest: &[u8; 32]) -> Vec<u8> {
    let name = alg.name().as_bytes();
    let mut msg = Vec::with_capacity(context.len() + name.len() + 1 + 16 + 32);
    msg.extend_from_slice(context);
    msg.extend_from_slice(name);
    msg.push(0);
    msg.extend_from_slice(&key_id.0);
    msg.extend_from_slice(manifest_digest);
    msg
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::SigningKey;

    fn key() -> PublicKey {
        SigningKey::generate().expect("randomness").public_key()
    }

    #[test]
    fn algorithm_names_roundtrip() {
        for alg in [Algorithm::Ed25519, Algorithm::EcdsaP256] {
            assert_eq!(alg.name().parse::<Algorithm>().expect("parse"), alg);
        }
        assert!("rsa".parse::<Algorithm>().is_err());
        assert!("Ed25519".parse::<Algorithm>().is_err());
    }

    #[test]
    fn key_id_text_roundtrip_and_strictness() {
        let id = KeyId([0xab; 16]);
        let s = id.to_string();
        assert_eq!(s, "ab".repeat(16));
        assert_eq!(s.parse::<KeyId>().expect("parse"), id);
        assert!(s.to_uppercase().parse::<KeyId>().is_err());
        assert!(s[..30].parse::<KeyId>().is_err());
        assert!(format!("{s}00").parse::<KeyId>().is_err());
        assert!(format!("{}zz", &s[..30]).parse::<KeyId>().is_err());
    }

    #[test]
    fn key_id_matches_definition() {
        let pk = PublicKey::from_parts(Algorithm::Ed25519, &key().bytes).expect("key");
        let mut h = Sha256::new();
        h.update(b"ckpt-key-id-v1\0ed25519\0");
        h.update(pk.bytes());
        assert_eq!(pk.key_id().0[..], h.finalize()[..16]);
    }

    #[test]
    fn line_roundtrip() {
        let pk = key();
        let line = pk.to_line();
        assert!(line.starts_with("ckpt-ed25519 "));
        assert!(!line.contains('\n'));
        assert_eq!(line.split(' ').count(), 3);
        assert!(line.ends_with(&pk.key_id().to_string()));
        assert_eq!(PublicKey::from_line(&line).expect("parse"), pk);
        assert_eq!(
            PublicKey::from_line(&format!("{line}\n")).expect("parse"),
            pk
        );
    }

    #[test]
    fn tampered_line_id_is_refused() {
        let pk = key();
        let line = pk.to_line();
        let other = key().key_id().to_string();
        let (head, _) = line.rsplit_once(' ').expect("three fields");
        let tampered = format!("{head} {other}");
        assert!(matches!(
            PublicKey::from_line(&tampered),
            Err(KeyError::KeyIdMismatch { .. })
        ));
    }

    #[test]
    fn tampered_line_key_is_refused() {
        let pk = key();
        let (_, id) = pk
            .to_line()
            .rsplit_once(' ')
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .expect("fields");
        let other = key();
        let line = format!("ckpt-ed25519 {} {id}", BASE64.encode(other.bytes()));
        assert!(PublicKey::from_line(&line).is_err());
    }

    #[test]
    fn malformed_lines_are_refused() {
        let pk = key();
        let line = pk.to_line();
        let b64 = BASE64.encode(pk.bytes());
        let id = pk.key_id();
        for bad in [
            String::new(),
            "ckpt-ed25519".to_owned(),
            format!("ckpt-ed25519 {b64}"),
            format!("ed25519 {b64} {id}"),
            format!("ckpt-rsa {b64} {id}"),
            format!("ckpt-ed25519  {b64} {id}"),
            format!("ckpt-ed25519 {b64} {id} extra"),
            format!("ckpt-ed25519 {} {id}", b64.trim_end_matches('=')),
            format!("ckpt-ed25519 {b64}AAAA {id}"),
            format!("{line}{}", " ".repeat(2000)).replace(' ', "\t"),
        ] {
            assert!(PublicKey::from_line(&bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn small_order_ed25519_key_is_refused() {
        // The identity point: small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(PublicKey::from_parts(Algorithm::Ed25519, &identity).is_err());
        assert!(PublicKey::from_parts(Algorithm::Ed25519, &[1u8; 31]).is_err());
    }

    #[test]
    fn ecdsa_keys_parse_and_verify() {
        use p256::ecdsa::signature::Signer as _;
        let mut seed = [7u8; 32];
        seed[0] = 1;
        let sk = p256::ecdsa::SigningKey::from_slice(&seed).expect("scalar");
        let point = sk.verifying_key().to_encoded_point(false);
        let pk = PublicKey::from_parts(Algorithm::EcdsaP256, point.as_bytes()).expect("point");
        let line = pk.to_line();
        assert!(line.starts_with("ckpt-ecdsa-p256 "));
        assert_eq!(PublicKey::from_line(&line).expect("parse"), pk);
        let digest = [5u8; 32];
        let msg = signed_message(Algorithm::EcdsaP256, &pk.key_id(), &digest);
        let sig: p256::ecdsa::Signature = sk.sign(&msg);
        let sig = sig.normalize_s().unwrap_or(sig).to_bytes();
        pk.verify_manifest_digest(&digest, &sig).expect("verifies");
        assert_eq!(
            pk.verify_manifest_digest(&[6u8; 32], &sig),
            Err(VerifyError::BadSignature)
        );
        // A signature over the bare digest is not an image signature.
        let bare: p256::ecdsa::Signature = sk.sign(&digest);
        let bare = bare.normalize_s().unwrap_or(bare).to_bytes();
        assert!(pk.verify_manifest_digest(&digest, &bare).is_err());
        // Shape and curve checks.
        assert!(PublicKey::from_parts(Algorithm::EcdsaP256, &point.as_bytes()[..64]).is_err());
        let mut off_curve = point.as_bytes().to_vec();
        off_curve[64] ^= 1;
        assert!(PublicKey::from_parts(Algorithm::EcdsaP256, &off_curve).is_err());
    }

    #[test]
    fn a_signature_verifies_for_its_format_version_only() {
        let k = SigningKey::generate().expect("randomness");
        let pk = k.public_key();
        let sig = k.sign_manifest_digest(&[3; 32]);
        pk.verify_manifest_digest(&[3; 32], &sig).expect("v2");
        assert_eq!(
            pk.verify_manifest_digest_v1(&[3; 32], &sig),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn signed_message_layout() {
        let id = KeyId([9; 16]);
        let msg = signed_message(Algorithm::Ed25519, &id, &[7; 32]);
        let mut expected = b"ckpt-image-v2\0ed25519\0".to_vec();
        expected.extend_from_slice(&[9; 16]);
        expected.extend_from_slice(&[7; 32]);
        assert_eq!(msg, expected);
        let v1 = signed_message_v1(Algorithm::Ed25519, &id, &[7; 32]);
        assert_eq!(&v1[..14], b"ckpt-image-v1\0");
        assert_eq!(v1[14..], expected[14..]);
    }
}
