//! The `attested` rule condition: the image carries a TPM quote, signed by
//! an attestation key the policy trusts for the image's signer, whose PCR
//! values match one of the allowed sets.
//!
//! ```toml
//! [[key]]
//! name = "db-1"
//! public = "ckpt-ecdsa-p256 <base64> <key id>"           # ckpt-sign pubkey --tpm
//! attestation_key = "ckpt-ecdsa-p256 <base64> <key id>"  # keys/tpm-ak.pub of db-1
//!
//! [[rule]]
//! name = "known-good-boot"
//! signed_by = ["db-1"]
//! # Any one set must match exactly (one set per kernel or firmware the
//! # host may be booted with). Keys are sha256 PCR indices, values 64 hex.
//! attested = [
//!   { 0 = "3d45…", 4 = "…", 7 = "…" },                    # kernel 6.1.0-20
//!   { 0 = "3d45…", 4 = "…", 7 = "…" },                    # kernel 6.1.0-21
//! ]
//! grant = ["credentials"]
//! ```
//!
//! `attested = true` asks for a valid quote from a trusted attestation key
//! whatever the PCR values; `attested = false` is the same as leaving it
//! out. Which attestation key is trusted for a signer: the `attestation_key`
//! of the signer's `[[key]]` entry; for this host's own keys
//! (`keys/host.pub`, `keys/tpm.pub`) without one, this host's attestation
//! key (`keys/tpm-ak.pub`).
//!
//! The quote itself (its binding to the image's manifest, its signature by
//! the key it names, the PCR digest) is checked by the image reader; a quote
//! that fails those checks makes the image tampered before any rule runs.

use std::collections::BTreeMap;

use ckpt_keys::quote::{PcrValue, MAX_PCRS};
use ckpt_keys::PublicKey;

/// The `attested` condition of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttestedCond {
    /// A trusted quote, any PCR values.
    Any,
    /// A trusted quote whose values match one of these sets.
    Sets(Vec<PcrSet>),
}

/// Allowed sha256 PCR values: every listed PCR must be quoted with exactly
/// this value (PCRs not listed are not looked at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSet(pub BTreeMap<u8, [u8; 32]>);

/// A quote the image reader verified: bound to the image, signed by `ak`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The attestation key that signed it.
    pub ak: PublicKey,
    /// `ak` is this host's own attestation key (`keys/tpm-ak.pub`).
    pub host_ak: bool,
    /// The quoted sha256 PCR values, ascending.
    pub pcrs: Vec<PcrValue>,
}

/// Parses the TOML value of `attested`: `true`, `false` (no condition) or
/// an array of inline tables `{ <pcr index> = "<64 hex>" }`, at least one,
/// each with at least one PCR.
pub fn parse_attested(v: &toml::Value) -> Result<Option<AttestedCond>, String> {
    match v {
        toml::Value::Boolean(true) => Ok(Some(AttestedCond::Any)),
        toml::Value::Boolean(false) => Ok(None),
        toml::Value::Array(sets) => {
            if sets.is_empty() {
                return Err(
                    "an empty list allows nothing; write `attested = true` for any PCR values"
                        .to_owned(),
                );
            }
            let mut out = Vec::new();
            for (i, s) in sets.iter().enumerate() {
                let n = i + 1;
                let toml::Value::Table(t) = s else {
                    return Err(format!(
                        "set {n}: expected a table such as {{ 7 = \"<64 hex>\" }}"
                    ));
                };
                if t.is_empty() {
                    return Err(format!("set {n}: names no PCR"));
                }
                let mut set = BTreeMap::new();
                for (k, val) in t {
                    let index = k
                        .parse::<u8>()
                        .ok()
                        .filter(|&i| i < MAX_PCRS && k == &i.to_string())
                        .ok_or_else(|| format!("set {n}: {k:?} is not a PCR index (0-23)"))?;
                    let toml::Value::String(h) = val else {
                        return Err(format!(
                            "set {n}: PCR {index}: expected a string of 64 hex digits"
                        ));
                    };
                    set.insert(
                        index,
                        parse_value(h).map_err(|e| format!("set {n}: PCR {index}: {e}"))?,
                    );
                }
                out.push(PcrSet(set));
            }
            Ok(Some(AttestedCond::Sets(out)))
        }
        _ => Err(
            "expected true, false or a list of PCR sets such as [{ 7 = \"<64 hex>\" }]".to_owned(),
        ),
    }
}

/// A sha256 PCR value: 64 hex digits, either case, optionally after
/// `sha256:` or `0x` (as `tpm2_pcrread` prints it).
fn parse_value(s: &str) -> Result<[u8; 32], String> {
    let h = s
        .strip_prefix("sha256:")
        .or_else(|| s.strip_prefix("0x"))
        .unwrap_or(s);
    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{s:?} is not 64 hex digits"));
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(h.get(2 * i..2 * i + 2).unwrap_or("zz"), 16)
            .map_err(|_| format!("{s:?} is not hex"))?;
    }
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Short form of a PCR value for messages: the first 16 hex digits.
fn short(v: &[u8; 32]) -> String {
    format!("{}…", &hex(v)[..16])
}

/// Checks `cond` against the image's quote. `signer_ak` is the
/// `attestation_key` of the signer's `[[key]]` entry; `signer_is_host` says
/// the signer is one of this host's own keys. `Err` says why not, naming
/// the PCR that differs.
pub fn check(
    cond: &AttestedCond,
    quote: Option<&Quote>,
    signer_ak: Option<&PublicKey>,
    signer_is_host: bool,
) -> Result<(), String> {
    let Some(q) = quote else {
        return Err(
            "the image has no TPM quote (it was not dumped on a host with an attestation key)"
                .to_owned(),
        );
    };
    let trusted = match signer_ak {
        Some(ak) => *ak == q.ak,
        None => signer_is_host && q.host_ak,
    };
    if !trusted {
        return Err(match signer_ak {
            Some(ak) => format!(
                "the quote is signed by attestation key {}, not by the signer's attestation key {}",
                q.ak.key_id(),
                ak.key_id()
            ),
            None => format!(
                "the quote is signed by attestation key {}, and the policy names no attestation_key for the signer",
                q.ak.key_id()
            ),
        });
    }
    let AttestedCond::Sets(sets) = cond else {
        return Ok(());
    };
    let mut misses = Vec::new();
    for (i, set) in sets.iter().enumerate() {
        match first_difference(set, &q.pcrs) {
            None => return Ok(()),
            Some(why) if sets.len() == 1 => misses.push(why),
            Some(why) => misses.push(format!("set {}: {why}", i + 1)),
        }
    }
    Err(misses.join("; "))
}

/// The first PCR of `set` whose quoted value differs (or that is not
/// quoted), described; `None` when the set matches.
fn first_difference(set: &PcrSet, quoted: &[PcrValue]) -> Option<String> {
    for (&index, want) in &set.0 {
        match quoted.iter().find(|p| p.index == index) {
            None => return Some(format!("PCR {index} is not in the quote")),
            Some(p) if p.value != *want => {
                return Some(format!(
                    "PCR {index} is {} in the quote, the policy allows {}",
                    short(&p.value),
                    short(want)
                ))
            }
            Some(_) => {}
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use ckpt_keys::SigningKey;

    fn parse(text: &str) -> Result<Option<AttestedCond>, String> {
        let t: toml::Table = toml::from_str(text).unwrap();
        parse_attested(&t["attested"])
    }

    fn quote(ak: &PublicKey, host_ak: bool) -> Quote {
        Quote {
            ak: ak.clone(),
            host_ak,
            pcrs: (0..8)
                .map(|i| PcrValue {
                    index: i,
                    value: [i; 32],
                })
                .collect(),
        }
    }

    fn h(b: u8) -> String {
        hex(&[b; 32])
    }

    #[test]
    fn parsing() {
        assert_eq!(parse("attested = true").unwrap(), Some(AttestedCond::Any));
        assert_eq!(parse("attested = false").unwrap(), None);
        let c = parse(&format!(
            "attested = [{{ 0 = \"{}\", 7 = \"sha256:{}\" }}, {{ 7 = \"0x{}\" }}]",
            h(0),
            h(7),
            h(9).to_uppercase()
        ))
        .unwrap()
        .unwrap();
        let AttestedCond::Sets(sets) = c else {
            panic!()
        };
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].0[&7], [7; 32]);
        assert_eq!(sets[1].0[&7], [9; 32]);
        for bad in [
            "attested = []".to_owned(),
            "attested = [{}]".to_owned(),
            "attested = 1".to_owned(),
            "attested = [1]".to_owned(),
            format!("attested = [{{ 24 = \"{}\" }}]", h(0)),
            format!("attested = [{{ 07 = \"{}\" }}]", h(0)),
            format!("attested = [{{ x = \"{}\" }}]", h(0)),
            "attested = [{ 7 = \"abcd\" }]".to_owned(),
            "attested = [{ 7 = 5 }]".to_owned(),
        ] {
            assert!(parse(&bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn checking() {
        let ak = SigningKey::generate().unwrap().public_key();
        let other = SigningKey::generate().unwrap().public_key();
        let q = quote(&ak, false);
        // No quote.
        let e = check(&AttestedCond::Any, None, Some(&ak), false).unwrap_err();
        assert!(e.contains("no TPM quote"), "{e}");
        // Trusted AK: named by the policy, or this host's own for its keys.
        check(&AttestedCond::Any, Some(&q), Some(&ak), false).unwrap();
        let e = check(&AttestedCond::Any, Some(&q), Some(&other), true).unwrap_err();
        assert!(e.contains("not by the signer's attestation key"), "{e}");
        assert!(check(&AttestedCond::Any, Some(&q), None, true).is_err());
        check(&AttestedCond::Any, Some(&quote(&ak, true)), None, true).unwrap();
        assert!(check(&AttestedCond::Any, Some(&quote(&ak, true)), None, false).is_err());
        // PCR sets.
        let set = |pairs: &[(u8, u8)]| PcrSet(pairs.iter().map(|&(i, v)| (i, [v; 32])).collect());
        let good = AttestedCond::Sets(vec![set(&[(0, 0), (7, 7)])]);
        check(&good, Some(&q), Some(&ak), false).unwrap();
        let bad = AttestedCond::Sets(vec![set(&[(0, 0), (7, 8)])]);
        let e = check(&bad, Some(&q), Some(&ak), false).unwrap_err();
        assert!(
            e.starts_with("PCR 7 is 0707070707070707… in the quote"),
            "{e}"
        );
        let two = AttestedCond::Sets(vec![set(&[(4, 1)]), set(&[(0, 0), (7, 7)])]);
        check(&two, Some(&q), Some(&ak), false).unwrap();
        let none = AttestedCond::Sets(vec![set(&[(4, 1)]), set(&[(9, 0)])]);
        let e = check(&none, Some(&q), Some(&ak), false).unwrap_err();
        assert_eq!(
            e,
            "set 1: PCR 4 is 0404040404040404… in the quote, the policy allows 0101010101010101…; \
             set 2: PCR 9 is not in the quote"
        );
    }
}
