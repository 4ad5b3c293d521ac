//! The TPM key record under `<sysconfdir>/keys/`.
//!
//! * `tpm.key` (root, 0600): which persistent handles hold the keys, their
//!   authorization values, and the ids of the public keys expected there:
//!
//!   ```text
//!   ckpt-tpm-key-v1
//!   signing 0x81000c70 <base64 of the 32-byte auth value> <key id>
//!   attestation 0x81000c71 <base64 of the 32-byte auth value> <key id>
//!   ```
//!
//! * `tpm.pub` (0644): the signing key's line, as `ckpt-sign pubkey --tpm`
//!   prints it (`ckpt-ecdsa-p256 <base64 SEC1 point> <key id>`);
//! * `tpm-ak.pub` (0644): the attestation key's line, which a policy names
//!   as the `attestation_key` of the signing key's `[[key]]` entry.
//!
//! Checks (owner, mode, no symlinks, size) are those of
//! [`ckpt_keys::store`]. The key ids let a reader notice that a handle now
//! holds another object (a TPM that was cleared and re-provisioned).

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ckpt_keys::{KeyError, KeyId, PublicKey};
use zeroize::Zeroizing;

/// The record of the TPM keys.
pub const TPM_KEY_FILE: &str = "tpm.key";
pub use ckpt_keys::store::{TPM_AK_PUB_FILE, TPM_PUB_FILE};

const HEADER: &str = "ckpt-tpm-key-v1";
const WHAT: &str = "TPM key file";

/// Length of an authorization value.
pub const AUTH_LEN: usize = 32;

/// One key in the TPM: where it is, how to authorize its use, which key it
/// must be.
pub struct KeyRef {
    /// Persistent handle.
    pub handle: u32,
    /// Authorization value (zeroized on drop).
    pub auth: Zeroizing<[u8; AUTH_LEN]>,
    /// Id of the public key expected at `handle`.
    pub key_id: KeyId,
}

impl std::fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRef")
            .field("handle", &format_args!("{:#x}", self.handle))
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The content of `tpm.key`.
#[derive(Debug)]
pub struct TpmKeyRecord {
    /// The signing key.
    pub signing: KeyRef,
    /// The attestation key.
    pub attestation: KeyRef,
}

impl TpmKeyRecord {
    /// Parses `tpm.key` (see the module doc).
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyError> {
        let malformed = |reason| KeyError::Malformed { what: WHAT, reason };
        let text = std::str::from_utf8(bytes).map_err(|_| malformed("not text"))?;
        let body = text
            .strip_suffix('\n')
            .ok_or(malformed("must end with a newline"))?;
        let mut lines = body.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(malformed("first line must be \"ckpt-tpm-key-v1\""));
        }
        let (Some(a), Some(b), None) = (lines.next(), lines.next(), lines.next()) else {
            return Err(malformed("must have exactly three lines"));
        };
        Ok(TpmKeyRecord {
            signing: parse_line(a, "signing")?,
            attestation: parse_line(b, "attestation")?,
        })
    }

    /// The content of `tpm.key` for this record.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(512));
        out.extend_from_slice(HEADER.as_bytes());
        out.push(b'\n');
        for (name, k) in [
            ("signing", &self.signing),
            ("attestation", &self.attestation),
        ] {
            let auth = Zeroizing::new(BASE64.encode(k.auth.as_slice()));
            out.extend_from_slice(format!("{name} {:#010x} ", k.handle).as_bytes());
            out.extend_from_slice(auth.as_bytes());
            out.extend_from_slice(format!(" {}\n", k.key_id).as_bytes());
        }
        out
    }
}

fn parse_line(line: &str, name: &'static str) -> Result<KeyRef, KeyError> {
    let malformed = |reason| KeyError::Malformed { what: WHAT, reason };
    let mut f = line.split(' ');
    let (Some(n), Some(h), Some(a), Some(id), None) =
        (f.next(), f.next(), f.next(), f.next(), f.next())
    else {
        return Err(malformed(
            "a key line must be: <role> <handle> <base64 auth> <key id>",
        ));
    };
    if n != name {
        return Err(malformed(
            "key lines must be \"signing\" then \"attestation\"",
        ));
    }
    let handle = h
        .strip_prefix("0x")
        .filter(|d| d.len() == 8)
        .and_then(|d| u32::from_str_radix(d, 16).ok())
        .filter(|h| (0x8100_0000..0x8180_0000).contains(h))
        .ok_or(malformed(
            "handle must be a persistent handle such as 0x81000c70",
        ))?;
    let mut buf = Zeroizing::new([0u8; 48]);
    let n = BASE64
        .decode_slice(a, buf.as_mut_slice())
        .map_err(|_| malformed("auth value is not canonical base64"))?;
    if n != AUTH_LEN {
        return Err(malformed("auth value must be 32 bytes"));
    }
    let mut auth = Zeroizing::new([0u8; AUTH_LEN]);
    auth.copy_from_slice(&buf[..AUTH_LEN]);
    Ok(KeyRef {
        handle,
        auth,
        key_id: id.parse()?,
    })
}

/// Reads `dir/tpm.key` (root-owned, mode 0600 or stricter).
pub fn load_record(dir: &Path) -> Result<TpmKeyRecord, KeyError> {
    let bytes = ckpt_keys::store::read_key_file(dir, TPM_KEY_FILE, true)?;
    TpmKeyRecord::parse(&bytes).map_err(|e| KeyError::InFile {
        path: dir.join(TPM_KEY_FILE),
        source: Box::new(e),
    })
}

/// Whether `dir/tpm.key` exists (it may still be unusable).
pub fn record_exists(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(TPM_KEY_FILE)).is_ok()
}

/// Writes `tpm.key` (0600, replacing), `tpm.pub` and `tpm-ak.pub` (0644).
pub fn write_record(
    dir: &Path,
    record: &TpmKeyRecord,
    signing: &PublicKey,
    ak: &PublicKey,
) -> Result<(), KeyError> {
    use ckpt_keys::store::write_key_file;
    write_key_file(dir, TPM_KEY_FILE, &record.to_bytes(), 0o600, true)?;
    write_key_file(
        dir,
        TPM_PUB_FILE,
        format!("{}\n", signing.to_line()).as_bytes(),
        0o644,
        true,
    )?;
    write_key_file(
        dir,
        TPM_AK_PUB_FILE,
        format!("{}\n", ak.to_line()).as_bytes(),
        0o644,
        true,
    )
}

/// Reads `dir/tpm.pub`.
pub fn load_signing_public(dir: &Path) -> Result<PublicKey, KeyError> {
    ckpt_keys::store::load_public_file(dir, TPM_PUB_FILE)
}

/// Reads `dir/tpm-ak.pub`.
pub fn load_attestation_public(dir: &Path) -> Result<PublicKey, KeyError> {
    ckpt_keys::store::load_public_file(dir, TPM_AK_PUB_FILE)
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record() -> TpmKeyRecord {
        TpmKeyRecord {
            signing: KeyRef {
                handle: 0x8100_0c70,
                auth: Zeroizing::new([1; 32]),
                key_id: KeyId([2; 16]),
            },
            attestation: KeyRef {
                handle: 0x8100_0c71,
                auth: Zeroizing::new([3; 32]),
                key_id: KeyId([4; 16]),
            },
        }
    }

    #[test]
    fn roundtrip() {
        let bytes = record().to_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with("ckpt-tpm-key-v1\nsigning 0x81000c70 "));
        let back = TpmKeyRecord::parse(&bytes).unwrap();
        assert_eq!(back.signing.handle, 0x8100_0c70);
        assert_eq!(*back.attestation.auth, [3; 32]);
        assert_eq!(back.attestation.key_id, KeyId([4; 16]));
        assert!(!format!("{back:?}").contains("AQEB"), "no auth in Debug");
    }

    #[test]
    fn damage_is_refused() {
        let good = record().to_bytes().to_vec();
        for n in 0..good.len() {
            assert!(TpmKeyRecord::parse(&good[..n]).is_err(), "truncated at {n}");
        }
        let text = String::from_utf8(good).unwrap();
        for bad in [
            text.replace("signing", "sign"),
            text.replace("0x81000c70", "0x80000c70"),
            text.replace("0x81000c70", "81000c70"),
            text.replace("attestation", "signing"),
            format!("{text}extra\n"),
            text.replacen(' ', "  ", 1),
        ] {
            assert!(
                TpmKeyRecord::parse(bad.as_bytes()).is_err(),
                "accepted {bad:?}"
            );
        }
    }
}
