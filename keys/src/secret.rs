//! The ed25519 signing key and its file form.
//!
//! Secret file format (text, ASCII, exactly two lines, each ending in `\n`):
//!
//! ```text
//! ckpt-secret-key-v1
//! ed25519 <base64 of the 32-byte secret seed> <key id of the public key>
//! ```
//!
//! The key id lets a reader catch a damaged file: it must be the id of the
//! public key derived from the seed. Every buffer that holds secret bytes,
//! in either direction, is zeroized when dropped.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use zeroize::Zeroizing;

use crate::error::KeyError;
use crate::public::{signed_message, Algorithm, KeyId, PublicKey};

/// First line of a secret key file (without its newline).
const SECRET_HEADER: &[u8] = b"ckpt-secret-key-v1";

/// Length of a base64-encoded 32-byte seed (with padding).
const SEED_B64_LEN: usize = 44;

/// What a malformed secret file is reported as.
const WHAT: &str = "secret key file";

/// An ed25519 signing key. Not `Clone`, not `Debug`; the secret is zeroized
/// when the key is dropped.
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
}

impl SigningKey {
    /// Generates a new key from the operating system's randomness.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(seed.as_mut_slice()).map_err(KeyError::Randomness)?;
        Ok(SigningKey {
            inner: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        // ed25519-dalek has already checked that this is a valid point, and
        // a key derived from a secret is never of small order.
        PublicKey::from_ed25519_unchecked(self.inner.verifying_key().to_bytes())
    }

    /// Signs [`signed_message`] for this key and `digest`; returns the
    /// 64-byte ed25519 signature.
    pub fn sign_manifest_digest(&self, digest: &[u8; 32]) -> Vec<u8> {
        let msg = signed_message(Algorithm::Ed25519, &self.public_key().key_id(), digest);
        self.inner.sign(&msg).to_bytes().to_vec()
    }

    /// Parses the content of a secret key file (see the module doc).
    pub fn from_secret_file_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let malformed = |reason| KeyError::Malformed { what: WHAT, reason };
        let rest = bytes
            .strip_prefix(SECRET_HEADER)
            .and_then(|r| r.strip_prefix(b"\n"))
            .ok_or(malformed("first line must be \"ckpt-secret-key-v1\""))?;
        let line = rest
            .strip_suffix(b"\n")
            .ok_or(malformed("must end with a newline"))?;
        if line.contains(&b'\n') {
            return Err(malformed("must have exactly two lines"));
        }
        let mut fields = line.split(|&b| b == b' ');
        let (Some(alg), Some(seed_b64), Some(id), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(malformed(
                "second line must be: <algorithm> <base64 secret> <key id>",
            ));
        };
        if alg != Algorithm::Ed25519.name().as_bytes() {
            return Err(malformed("algorithm must be ed25519"));
        }
        if seed_b64.len() != SEED_B64_LEN {
            return Err(malformed("secret must be 32 bytes in base64"));
        }
        // Room for the decoder's worst-case estimate; zeroized on drop.
        let mut buf = Zeroizing::new([0u8; 48]);
        let n = BASE64
            .decode_slice(seed_b64, buf.as_mut_slice())
            .map_err(|_| malformed("secret is not canonical base64"))?;
        let seed: &[u8; 32] = buf
            .get(..n)
            .and_then(|s| s.try_into().ok())
            .ok_or(malformed("secret must be 32 bytes"))?;
        let key = SigningKey {
            inner: ed25519_dalek::SigningKey::from_bytes(seed),
        };
        let stated: KeyId = std::str::from_utf8(id)
            .map_err(|_| malformed("key id is not text"))?
            .parse()?;
        let computed = key.public_key().key_id();
        if stated != computed {
            return Err(KeyError::KeyIdMismatch { stated, computed });
        }
        Ok(key)
    }

    /// The content of a secret key file for this key (see the module doc).
    pub fn to_secret_file_bytes(&self) -> Zeroizing<Vec<u8>> {
        let id = self.public_key().key_id().to_string();
        let name = Algorithm::Ed25519.name().as_bytes();
        // Allocated once at its final size, so no reallocation leaves a
        // stray copy of the secret behind.
        let len = SECRET_HEADER.len() + 1 + name.len() + 1 + SEED_B64_LEN + 1 + id.len() + 1;
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        out.extend_from_slice(SECRET_HEADER);
        out.push(b'\n');
        out.extend_from_slice(name);
        out.push(b' ');
        let mut b64 = Zeroizing::new([0u8; SEED_B64_LEN]);
        // 32 bytes always encode to exactly 44 characters; a failure here
        // would be a bug in the encoder, and yields an unparsable file.
        if let Ok(n) = BASE64.encode_slice(self.inner.as_bytes(), b64.as_mut_slice()) {
            out.extend_from_slice(&b64[..n]);
        }
        out.push(b' ');
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::VerifyError;

    fn gen() -> SigningKey {
        SigningKey::generate().expect("randomness")
    }

    #[test]
    fn sign_verify() {
        let k = gen();
        let digest = [42u8; 32];
        let sig = k.sign_manifest_digest(&digest);
        assert_eq!(sig.len(), 64);
        k.public_key()
            .verify_manifest_digest(&digest, &sig)
            .expect("verifies");
    }

    #[test]
    fn wrong_digest_key_or_context_fails() {
        let k = gen();
        let digest = [42u8; 32];
        let sig = k.sign_manifest_digest(&digest);
        let pk = k.public_key();
        assert_eq!(
            pk.verify_manifest_digest(&[43u8; 32], &sig),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            gen().public_key().verify_manifest_digest(&digest, &sig),
            Err(VerifyError::BadSignature)
        );
        let mut flipped = sig.clone();
        flipped[10] ^= 1;
        assert!(pk.verify_manifest_digest(&digest, &flipped).is_err());
        assert!(matches!(
            pk.verify_manifest_digest(&digest, &sig[..63]),
            Err(VerifyError::BadLength { .. })
        ));

        // A signature over the bare digest, or over the message with another
        // context or key id, must not verify.
        let vk = ed25519_dalek::VerifyingKey::from_bytes(pk.bytes().try_into().expect("32 bytes"))
            .expect("valid key");
        let raw = k.inner.sign(&digest).to_bytes();
        assert!(pk.verify_manifest_digest(&digest, &raw).is_err());
        let mut other_ctx = b"ckpt-other-v1\0ed25519\0".to_vec();
        other_ctx.extend_from_slice(&pk.key_id().0);
        other_ctx.extend_from_slice(&digest);
        let s = k.inner.sign(&other_ctx).to_bytes();
        assert!(vk
            .verify_strict(&other_ctx, &ed25519_dalek::Signature::from_bytes(&s))
            .is_ok());
        assert!(pk.verify_manifest_digest(&digest, &s).is_err());
        let wrong_id = signed_message(Algorithm::Ed25519, &KeyId([0; 16]), &digest);
        let s = k.inner.sign(&wrong_id).to_bytes();
        assert!(pk.verify_manifest_digest(&digest, &s).is_err());
    }

    #[test]
    fn secret_file_roundtrip() {
        let k = gen();
        let bytes = k.to_secret_file_bytes();
        let text = std::str::from_utf8(&bytes).expect("ascii");
        assert!(text.starts_with("ckpt-secret-key-v1\ned25519 "));
        assert!(text.ends_with(&format!(" {}\n", k.public_key().key_id())));
        assert_eq!(bytes.len(), bytes.capacity());
        let back = SigningKey::from_secret_file_bytes(&bytes).expect("parse");
        assert_eq!(back.public_key(), k.public_key());
    }

    #[test]
    fn secret_file_damage_is_refused() {
        let k = gen();
        let good = k.to_secret_file_bytes().to_vec();
        // Every single-byte change must be refused (the id catches changes
        // in the secret, strict parsing catches everything else)...
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(
                SigningKey::from_secret_file_bytes(&bad).is_err(),
                "accepted a change at byte {i}"
            );
        }
        // ...and so must every truncation and extension.
        for n in 0..good.len() {
            assert!(SigningKey::from_secret_file_bytes(&good[..n]).is_err());
        }
        let mut longer = good.clone();
        longer.extend_from_slice(b"x\n");
        assert!(SigningKey::from_secret_file_bytes(&longer).is_err());
        let mut id_of_other = good.clone();
        let other = gen().public_key().key_id().to_string();
        let start = good.len() - 33;
        id_of_other[start..start + 32].copy_from_slice(other.as_bytes());
        assert!(matches!(
            SigningKey::from_secret_file_bytes(&id_of_other),
            Err(KeyError::KeyIdMismatch { .. })
        ));
    }
}
