//! Strict parsing and validation of one policy file.
//!
//! Structure errors (unknown keys, wrong types, unknown privileges) come
//! from the TOML decoder with the line and column; content errors (a bad
//! public-key line, a mapping range that overflows, a rule naming a key that
//! does not exist) name the entry, the field and the line of the entry.

use std::path::Path;

use ckpt_keys::{KeyId, PublicKey};
use serde::Deserialize;
use toml::Spanned;

use crate::{cap_number, CredField, HostSpec, IdSpec, TargetCond};
use crate::{Date, IdMap, Origin, Policy, PolicyError, Principal, Privilege, Rule};
use crate::{TrustedKey, THIS_HOST};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    revoked: Vec<Spanned<String>>,
    #[serde(default, rename = "key")]
    keys: Vec<Spanned<RawKey>>,
    #[serde(default, rename = "rule")]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: String,
    public: String,
    #[serde(default)]
    attestation_key: Option<String>,
    #[serde(default)]
    not_before: Option<toml::value::Datetime>,
    #[serde(default)]
    not_after: Option<toml::value::Datetime>,
    #[serde(default)]
    map_uid: Option<Vec<String>>,
    #[serde(default)]
    map_gid: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default)]
    signed_by: Vec<String>,
    #[serde(default)]
    requester: Vec<String>,
    #[serde(default)]
    caller: Vec<String>,
    #[serde(default)]
    target: Option<toml::Value>,
    #[serde(default)]
    exe: Option<String>,
    #[serde(default)]
    exe_digest: Option<String>,
    #[serde(default)]
    host: Vec<String>,
    #[serde(default)]
    max_age: Option<String>,
    #[serde(default)]
    attested: Option<toml::Value>,
    #[serde(default)]
    one_shot: bool,
    grant: Vec<Privilege>,
}

/// `target = { ... }`: conditions on the image's saved credentials.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    uid: Option<Vec<RawId>>,
    ruid: Option<Vec<RawId>>,
    euid: Option<Vec<RawId>>,
    suid: Option<Vec<RawId>>,
    fsuid: Option<Vec<RawId>>,
    gid: Option<Vec<RawId>>,
    rgid: Option<Vec<RawId>>,
    egid: Option<Vec<RawId>>,
    sgid: Option<Vec<RawId>>,
    fsgid: Option<Vec<RawId>>,
    caps_within: Option<Vec<String>>,
}

/// An id in a target condition: `0`, `"uid:0"`, `"user:root"`, ...
#[derive(Deserialize)]
#[serde(untagged)]
enum RawId {
    Num(i64),
    Text(String),
}

/// Line (1-based) and column (1-based) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        line_col(self.text, offset).0
    }
    fn invalid(&self, offset: usize, what: String, reason: impl Into<String>) -> PolicyError {
        PolicyError::Invalid {
            path: self.path.to_owned(),
            line: self.line(offset),
            what,
            reason: reason.into(),
        }
    }
}

/// Parse and validate one policy file's text. `origin` names the file in
/// errors. Every rule's `signed_by` must name a key of this file (or
/// `this-host`); use [`crate::load`] for a policy split over several files.
pub fn parse_str(text: &str, origin: &Path) -> Result<Policy, PolicyError> {
    let policy = parse_one(text, origin)?;
    check_references(&policy)?;
    Ok(policy)
}

/// Parse one file without checking references to keys in other files.
pub(crate) fn parse_one(text: &str, origin: &Path) -> Result<Policy, PolicyError> {
    let raw: RawPolicy = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
        PolicyError::Syntax {
            path: origin.to_owned(),
            line,
            column,
            message: e.message().trim_end().to_owned(),
        }
    })?;
    let cx = Ctx { text, path: origin };
    let mut policy = Policy::default();

    for id in &raw.revoked {
        let parsed: KeyId = id.get_ref().parse().map_err(|e: ckpt_keys::KeyError| {
            cx.invalid(id.span().start, "revoked".to_owned(), e.to_string())
        })?;
        if !policy.revoked.contains(&parsed) {
            policy.revoked.push(parsed);
        }
    }

    for spanned in &raw.keys {
        let at = spanned.span().start;
        let k = spanned.get_ref();
        let what = |field: &str| format!("key {:?}: {field}", k.name);
        if k.name.trim().is_empty() {
            return Err(cx.invalid(at, "key".to_owned(), "name must not be empty"));
        }
        let public = PublicKey::from_line(&k.public)
            .map_err(|e| cx.invalid(at, what("public"), error_chain(&e)))?;
        let day = |field: &str, v: &Option<toml::value::Datetime>| match v {
            None => Ok(None),
            Some(dt) => date_only(dt).map(Some).ok_or_else(|| {
                cx.invalid(at, what(field), "must be a plain date such as 2027-12-31")
            }),
        };
        let not_before = day("not_before", &k.not_before)?;
        let not_after = day("not_after", &k.not_after)?;
        if let (Some(b), Some(a)) = (not_before, not_after) {
            if b > a {
                return Err(cx.invalid(
                    at,
                    what("not_before"),
                    format!("{b} is after not_after {a}"),
                ));
            }
        }
        let maps = |field: &str, v: &Option<Vec<String>>| match v {
            None => Ok(None),
            Some(v) => parse_maps(v)
                .map(Some)
                .map_err(|r| cx.invalid(at, what(field), r)),
        };
        let map_uid = maps("map_uid", &k.map_uid)?;
        let map_gid = maps("map_gid", &k.map_gid)?;
        let attestation_key = match &k.attestation_key {
            None => None,
            Some(line) => {
                let ak = PublicKey::from_line(line)
                    .map_err(|e| cx.invalid(at, what("attestation_key"), error_chain(&e)))?;
                if ak.algorithm() != ckpt_keys::Algorithm::EcdsaP256 {
                    return Err(cx.invalid(
                        at,
                        what("attestation_key"),
                        "must be a TPM attestation key (ckpt-ecdsa-p256, keys/tpm-ak.pub)",
                    ));
                }
                Some(ak)
            }
        };
        let entry = TrustedKey {
            name: k.name.clone(),
            public,
            attestation_key,
            not_before,
            not_after,
            map_uid,
            map_gid,
            origin: Origin {
                path: origin.to_owned(),
                line: cx.line(at),
            },
        };
        let mut one = Policy::default();
        one.keys.push(entry);
        policy
            .merge(one)
            .map_err(|reason| cx.invalid(at, "key".to_owned(), reason))?;
    }

    for spanned in &raw.rules {
        let at = spanned.span().start;
        let r = spanned.get_ref();
        let rule = parse_rule(
            r,
            Origin {
                path: origin.to_owned(),
                line: cx.line(at),
            },
        )
        .map_err(|(field, reason)| cx.invalid(at, format!("rule {:?}: {field}", r.name), reason))?;
        let mut one = Policy::default();
        one.rules.push(rule);
        policy
            .merge(one)
            .map_err(|reason| cx.invalid(at, "rule".to_owned(), reason))?;
    }
    Ok(policy)
}

/// Every rule's `signed_by` names a key of `policy` or `this-host`.
pub(crate) fn check_references(policy: &Policy) -> Result<(), PolicyError> {
    for rule in &policy.rules {
        for name in &rule.signed_by {
            if name != THIS_HOST && policy.key_named(name).is_none() {
                return Err(PolicyError::Invalid {
                    path: rule.origin.path.clone(),
                    line: rule.origin.line,
                    what: format!("rule {:?}: signed_by", rule.name),
                    reason: format!("no [[key]] is named {name:?}"),
                });
            }
        }
    }
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn date_only(dt: &toml::value::Datetime) -> Option<Date> {
    if dt.time.is_some() || dt.offset.is_some() {
        return None;
    }
    let d = dt.date?;
    Date::new(i32::from(d.year), u32::from(d.month), u32::from(d.day))
}

fn parse_maps(entries: &[String]) -> Result<Vec<IdMap>, String> {
    let mut maps: Vec<IdMap> = Vec::new();
    for e in entries {
        let bad = || format!("{e:?}: expected \"image-id:local-id:count\"");
        let mut parts = e.split(':');
        let (Some(a), Some(b), Some(c), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let num = |s: &str| s.parse::<u32>().map_err(|_| bad());
        let m = IdMap {
            image: num(a)?,
            local: num(b)?,
            count: num(c)?,
        };
        if m.count == 0 {
            return Err(format!("{e:?}: count must be at least 1"));
        }
        let end = |first: u32| u64::from(first) + u64::from(m.count);
        // u32::MAX is (uid_t)-1, never a valid id.
        if end(m.image) > u64::from(u32::MAX) || end(m.local) > u64::from(u32::MAX) {
            return Err(format!("{e:?}: range runs past the largest id"));
        }
        if let Some(o) = maps.iter().find(|o| {
            m.image < o.image.saturating_add(o.count) && o.image < m.image.saturating_add(m.count)
        }) {
            return Err(format!(
                "{e:?}: image ids overlap the range starting at {}",
                o.image
            ));
        }
        maps.push(m);
    }
    Ok(maps)
}

fn parse_principal(s: &str) -> Result<Principal, String> {
    let (kind, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected uid:N, user:NAME, gid:N or group:NAME"))?;
    let num = || {
        value
            .parse::<u32>()
            .ok()
            .filter(|&v| v != u32::MAX)
            .ok_or_else(|| format!("{s:?}: not a valid id"))
    };
    let name = || {
        if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == ':') {
            Err(format!("{s:?}: not a valid name"))
        } else {
            Ok(value.to_owned())
        }
    };
    match kind {
        "uid" => Ok(Principal::Uid(num()?)),
        "gid" => Ok(Principal::Gid(num()?)),
        "user" => Ok(Principal::User(name()?)),
        "group" => Ok(Principal::Group(name()?)),
        _ => Err(format!(
            "{s:?}: expected uid:N, user:NAME, gid:N or group:NAME"
        )),
    }
}

/// One target id: a number, `uid:N`/`user:NAME` (uid fields) or
/// `gid:N`/`group:NAME` (gid fields).
fn parse_id(field: CredField, raw: &RawId) -> Result<IdSpec, String> {
    let (num_kind, name_kind) = if field.is_gid() {
        ("gid", "group")
    } else {
        ("uid", "user")
    };
    let valid = |n: i64| {
        u32::try_from(n)
            .ok()
            .filter(|&v| v != u32::MAX)
            .ok_or_else(|| format!("{n}: not a valid id"))
    };
    match raw {
        RawId::Num(n) => valid(*n).map(IdSpec::Id),
        RawId::Text(s) => {
            let bad =
                || format!("{s:?}: expected a number, \"{num_kind}:N\" or \"{name_kind}:NAME\"");
            let (kind, value) = s.split_once(':').ok_or_else(bad)?;
            if kind == num_kind {
                let n: i64 = value.parse().map_err(|_| bad())?;
                valid(n).map(IdSpec::Id)
            } else if kind == name_kind {
                if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == ':') {
                    Err(format!("{s:?}: not a valid name"))
                } else {
                    Ok(IdSpec::Name(value.to_owned()))
                }
            } else {
                Err(bad())
            }
        }
    }
}

fn parse_target(value: &toml::Value) -> Result<TargetCond, String> {
    if !value.is_table() {
        return Err(
            "expected a table of conditions on the saved credentials, such as \
             target = { ruid = [\"user:alice\"], euid = [0] }"
                .to_owned(),
        );
    }
    let raw: RawTarget = value
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| e.message().trim_end().to_owned())?;
    let mut cond = TargetCond::default();
    for field in CredField::ALL {
        let list = match field {
            CredField::Uid => &raw.uid,
            CredField::Ruid => &raw.ruid,
            CredField::Euid => &raw.euid,
            CredField::Suid => &raw.suid,
            CredField::Fsuid => &raw.fsuid,
            CredField::Gid => &raw.gid,
            CredField::Rgid => &raw.rgid,
            CredField::Egid => &raw.egid,
            CredField::Sgid => &raw.sgid,
            CredField::Fsgid => &raw.fsgid,
        };
        let Some(list) = list else { continue };
        if list.is_empty() {
            return Err(format!("{}: list at least one id", field.name()));
        }
        let specs = list
            .iter()
            .map(|r| parse_id(field, r).map_err(|e| format!("{}: {e}", field.name())))
            .collect::<Result<Vec<_>, _>>()?;
        cond.ids.push((field, specs));
    }
    if let Some(names) = &raw.caps_within {
        let mut mask = 0u64;
        for n in names {
            let bit = cap_number(n)
                .ok_or_else(|| format!("caps_within: {n:?} is not a capability name"))?;
            mask |= 1u64 << bit;
        }
        cond.caps_within = Some(mask);
    }
    Ok(cond)
}

fn parse_host(h: &str) -> Result<HostSpec, String> {
    let hex32 = h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit());
    if hex32 {
        return if h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(HostSpec::MachineId(h.to_owned()))
        } else {
            Err(format!("{h:?}: machine ids are written in lowercase hex"))
        };
    }
    let name_ok = !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if name_ok {
        Ok(HostSpec::Hostname(h.to_owned()))
    } else {
        Err(format!(
            "{h:?}: expected a machine id (32 lowercase hex) or a host name"
        ))
    }
}

/// `30s`, `15m`, `1h`, `2d`, `1w` (one number, one unit) to seconds.
fn parse_age(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?}: expected a number and a unit (s, m, h, d, w), e.g. \"1h\"");
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = s.split_at(unit_at);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).filter(|&v| v > 0).ok_or_else(bad)
}

fn parse_rule(r: &RawRule, origin: Origin) -> Result<Rule, (&'static str, String)> {
    if r.name.trim().is_empty() {
        return Err(("name", "must not be empty".to_owned()));
    }
    if r.signed_by.is_empty() {
        return Err((
            "signed_by",
            "at least one key name is required (a grant needs a trusted signer)".to_owned(),
        ));
    }
    if r.grant.is_empty() {
        return Err(("grant", "at least one privilege is required".to_owned()));
    }
    let list = |field: &'static str, v: &[String]| {
        v.iter()
            .map(|s| parse_principal(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| (field, e))
    };
    let requester = list("requester", &r.requester)?;
    let caller = list("caller", &r.caller)?;
    let target = match &r.target {
        None => TargetCond::default(),
        Some(v) => parse_target(v).map_err(|e| ("target", e))?,
    };
    if let Some(exe) = &r.exe {
        if !exe.starts_with('/') {
            return Err(("exe", format!("{exe:?}: must be an absolute path")));
        }
    }
    let exe_digest = match &r.exe_digest {
        None => None,
        Some(d) => {
            let hex = d
                .strip_prefix("sha256:")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or((
                    "exe_digest",
                    format!("{d:?}: expected sha256:<64 hex digits>"),
                ))?;
            let bytes: Option<Vec<u8>> = (0..32)
                .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                .collect();
            Some(bytes.ok_or(("exe_digest", format!("{d:?}: not hex")))?)
        }
    };
    let host = r
        .host
        .iter()
        .map(|h| parse_host(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ("host", e))?;
    let max_age = match &r.max_age {
        None => None,
        Some(a) => Some(parse_age(a).map_err(|e| ("max_age", e))?),
    };
    let attested = match &r.attested {
        None => None,
        Some(v) => crate::attest::parse_attested(v).map_err(|e| ("attested", e))?,
    };
    let mut grant = Vec::new();
    for g in &r.grant {
        if !grant.contains(g) {
            grant.push(*g);
        }
    }
    Ok(Rule {
        name: r.name.clone(),
        signed_by: r.signed_by.clone(),
        requester,
        caller,
        target,
        exe: r.exe.clone(),
        exe_digest,
        host,
        attested,
        max_age,
        one_shot: r.one_shot,
        grant,
        origin,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::{Trust, THIS_HOST};
    use ckpt_keys::SigningKey;

    fn key_line() -> (SigningKey, String) {
        let k = SigningKey::generate().unwrap();
        let line = k.public_key().to_line();
        (k, line)
    }

    fn p() -> &'static Path {
        Path::new("policy.toml")
    }

    /// The example policy of docs/DESIGN.md §4, with real key lines: it must stay valid.
    #[test]
    fn design_example_parses() {
        let (_a, a) = key_line();
        let (_b, b) = key_line();
        let text = format!(
            r#"# <sysconfdir>/policy.toml  — root-owned, not group/world-writable
revoked = []                                  # key ids

[[key]]
name = "this-host"
public = "{a}"

[[key]]
name = "build-42"
public = "{b}"
not_after = 2027-12-31
map_uid = ["1500:1001:1"]                     # image id : local id : count
map_gid = ["1500:1001:1"]

[[rule]]
name = "resume-passwd"
signed_by = ["this-host"]
requester = ["uid:0"]                         # who ran dump
caller = ["uid:1001", "group:staff"]          # who runs restore
exe = "/usr/bin/passwd"
max_age = "1h"
one_shot = true
grant = ["credentials", "exe-link"]
"#
        );
        let pol = parse_str(&text, p()).unwrap();
        assert_eq!(pol.keys.len(), 2);
        assert_eq!(pol.keys[1].not_after, Date::new(2027, 12, 31));
        assert_eq!(
            pol.keys[1].map_uid,
            Some(vec![IdMap {
                image: 1500,
                local: 1001,
                count: 1
            }])
        );
        assert_eq!(pol.keys[0].map_uid, None);
        assert_eq!(pol.keys[1].origin.line, 8);
        let r = &pol.rules[0];
        assert_eq!(r.name, "resume-passwd");
        assert_eq!(r.requester, vec![Principal::Uid(0)]);
        assert_eq!(
            r.caller,
            vec![Principal::Uid(1001), Principal::Group("staff".into())]
        );
        assert_eq!(r.max_age, Some(3600));
        assert!(r.one_shot);
        assert_eq!(r.grant, vec![Privilege::Credentials, Privilege::ExeLink]);
        assert_eq!(r.origin.line, 15);
    }

    #[test]
    fn empty_policy() {
        assert_eq!(parse_str("", p()).unwrap(), Policy::default());
        assert_eq!(parse_str("# nothing\n", p()).unwrap(), Policy::default());
    }

    fn err(text: &str) -> String {
        parse_str(text, p()).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_are_rejected_with_line() {
        let e = err("revoked = []\nfoo = 1\n");
        assert!(e.starts_with("policy.toml:2:"), "{e}");
        assert!(e.contains("foo"), "{e}");

        let (_k, line) = key_line();
        let e = err(&format!(
            "[[key]]\nname = \"a\"\npublic = \"{line}\"\ntrusted = true\n"
        ));
        assert!(e.starts_with("policy.toml:4:"), "{e}");
        assert!(e.contains("trusted"), "{e}");

        let e = err("[[rule]]\nname = \"r\"\nsigned_by = [\"this-host\"]\ngrant = [\"root\"]\n");
        assert!(e.starts_with("policy.toml:4:"), "{e}");
        assert!(e.contains("root"), "{e}");

        let e = err("[[rules]]\nname = \"r\"\n");
        assert!(e.contains("rules"), "{e}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = err("revoked = [\n\"abc\"\n\n[[key]\n");
        assert!(e.starts_with("policy.toml:"), "{e}");
        let e = err("\n\nrevoked = 3\n");
        assert!(e.starts_with("policy.toml:3:"), "{e}");
    }

    #[test]
    fn content_errors_name_entry_field_and_line() {
        let e = err("\n[[key]]\nname = \"k\"\npublic = \"ckpt-ed25519 AAAA 00\"\n");
        assert!(e.starts_with("policy.toml:2: key \"k\": public:"), "{e}");

        let (_k, line) = key_line();
        let e = err(&format!(
            "[[key]]\nname = \"k\"\npublic = \"{line}\"\nmap_uid = [\"1:2\"]\n"
        ));
        assert!(e.contains("key \"k\": map_uid"), "{e}");
        let e = err(&format!(
            "[[key]]\nname = \"k\"\npublic = \"{line}\"\nmap_uid = [\"4294967000:1:1000\"]\n"
        ));
        assert!(e.contains("past the largest id"), "{e}");
        let e = err(&format!(
            "[[key]]\nname = \"k\"\npublic = \"{line}\"\nmap_uid = [\"10:1:10\", \"15:100:1\"]\n"
        ));
        assert!(e.contains("overlap"), "{e}");
        let e = err(&format!(
            "[[key]]\nname = \"k\"\npublic = \"{line}\"\nnot_after = 2027-12-31T10:00:00Z\n"
        ));
        assert!(e.contains("not_after"), "{e}");

        let e = err("revoked = [\"xyz\"]\n");
        assert!(e.starts_with("policy.toml:1: revoked:"), "{e}");

        let e = err("[[rule]]\nname = \"r\"\nsigned_by = [\"nobody\"]\ngrant = [\"same-pid\"]\n");
        assert!(
            e.contains("rule \"r\": signed_by: no [[key]] is named"),
            "{e}"
        );
        let e = err("[[rule]]\nname = \"r\"\ngrant = [\"same-pid\"]\n");
        assert!(e.contains("signed_by"), "{e}");
        let e = err("[[rule]]\nname = \"r\"\nsigned_by = [\"this-host\"]\ngrant = []\n");
        assert!(e.contains("grant"), "{e}");
        let e = err(
            "[[rule]]\nname = \"r\"\nsigned_by = [\"this-host\"]\ncaller = [\"uid:x\"]\ngrant = [\"same-pid\"]\n",
        );
        assert!(e.contains("rule \"r\": caller"), "{e}");
        let e = err(
            "[[rule]]\nname = \"r\"\nsigned_by = [\"this-host\"]\nmax_age = \"1y\"\ngrant = [\"same-pid\"]\n",
        );
        assert!(e.contains("max_age"), "{e}");
        let e = err(
            "[[rule]]\nname = \"r\"\nsigned_by = [\"this-host\"]\nexe = \"passwd\"\ngrant = [\"same-pid\"]\n",
        );
        assert!(e.contains("exe"), "{e}");
    }

    #[test]
    fn duplicates_are_rejected() {
        let (_k, a) = key_line();
        let (_l, b) = key_line();
        let e = err(&format!(
            "[[key]]\nname = \"k\"\npublic = \"{a}\"\n[[key]]\nname = \"k\"\npublic = \"{b}\"\n"
        ));
        assert!(e.contains("already defined"), "{e}");
        let e = err(&format!(
            "[[key]]\nname = \"k\"\npublic = \"{a}\"\n[[key]]\nname = \"l\"\npublic = \"{a}\"\n"
        ));
        assert!(e.contains("already listed"), "{e}");
    }

    #[test]
    fn all_privileges_and_conditions() {
        let text = r#"
[[rule]]
name = "everything"
signed_by = ["this-host"]
requester = ["user:alice", "gid:10"]
caller = ["uid:1001"]
target = { euid = [0], ruid = [1001, "user:alice"], sgid = ["gid:0", "group:root"], caps_within = ["cap_chown", "CAP_SETUID"] }
exe = "/usr/bin/passwd"
exe_digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
host = ["0123456789abcdef0123456789abcdef", "build-42.example.org"]
max_age = "2d"
grant = ["credentials", "capabilities", "same-pid", "exe-link", "privileged-files", "same-pid"]
"#;
        let pol = parse_str(text, p()).unwrap();
        let r = &pol.rules[0];
        assert_eq!(r.grant, Privilege::ALL.to_vec());
        assert_eq!(
            r.target.ids,
            vec![
                (
                    CredField::Ruid,
                    vec![IdSpec::Id(1001), IdSpec::Name("alice".into())]
                ),
                (CredField::Euid, vec![IdSpec::Id(0)]),
                (
                    CredField::Sgid,
                    vec![IdSpec::Id(0), IdSpec::Name("root".into())]
                ),
            ]
        );
        assert_eq!(r.target.caps_within, Some(1 | (1 << 7)));
        assert_eq!(
            r.host,
            vec![
                HostSpec::MachineId("0123456789abcdef0123456789abcdef".into()),
                HostSpec::Hostname("build-42.example.org".into())
            ]
        );
        assert_eq!(r.exe_digest.as_ref().map(Vec::len), Some(32));
        assert_eq!(r.max_age, Some(2 * 86_400));
        assert!(!r.one_shot);
    }

    #[test]
    fn target_host_and_validity_errors() {
        let r = |body: &str| {
            err(&format!(
                "[[rule]]\nname = \"r\"\nsigned_by = [\"this-host\"]\n{body}\ngrant = [\"same-pid\"]\n"
            ))
        };
        let e = r("target = [\"euid:0\"]");
        assert!(e.contains("rule \"r\": target: expected a table"), "{e}");
        let e = r("target = { euidd = [0] }");
        assert!(e.contains("euidd"), "{e}");
        let e = r("target = { euid = [] }");
        assert!(e.contains("euid: list at least one id"), "{e}");
        let e = r("target = { euid = [-1] }");
        assert!(e.contains("not a valid id"), "{e}");
        let e = r("target = { euid = [4294967295] }");
        assert!(e.contains("not a valid id"), "{e}");
        let e = r("target = { euid = [\"group:staff\"] }");
        assert!(e.contains("expected a number, \"uid:N\" or"), "{e}");
        let e = r("target = { rgid = [\"user:alice\"] }");
        assert!(e.contains("rgid"), "{e}");
        let e = r("target = { caps_within = [\"cap_root\"] }");
        assert!(
            e.contains("caps_within: \"cap_root\" is not a capability"),
            "{e}"
        );
        let e = r("host = [\"0123456789ABCDEF0123456789ABCDEF\"]");
        assert!(e.contains("lowercase"), "{e}");
        let e = r("host = [\"bad host\"]");
        assert!(e.contains("rule \"r\": host"), "{e}");
        let e = r("exe_digest = \"md5:00\"");
        assert!(e.contains("exe_digest"), "{e}");

        let (_k, line) = key_line();
        let e = err(&format!(
            "[[key]]\nname = \"k\"\npublic = \"{line}\"\nnot_before = 2027-01-01\nnot_after = 2026-01-01\n"
        ));
        assert!(e.contains("key \"k\": not_before"), "{e}");
        let pol = parse_str(
            &format!("[[key]]\nname = \"k\"\npublic = \"{line}\"\nnot_before = 2026-01-01\nmap_gid = []\n"),
            p(),
        )
        .unwrap();
        assert_eq!(pol.keys[0].not_before, Date::new(2026, 1, 1));
        assert_eq!(pol.keys[0].map_gid, Some(vec![]));
    }

    #[test]
    fn not_before_and_not_after() {
        let (_k, line) = key_line();
        let key = PublicKey::from_line(&line).unwrap();
        let pol = parse_str(
            &format!(
                "[[key]]\nname = \"k\"\npublic = \"{line}\"\nnot_before = 2026-01-01\nnot_after = 2026-12-31\n"
            ),
            p(),
        )
        .unwrap();
        let on = |y, m, d| pol.trust_on(&key, None, Date::new(y, m, d).unwrap());
        assert!(matches!(on(2025, 12, 31), Trust::NotYetValid { .. }));
        assert!(on(2026, 1, 1).is_trusted());
        assert!(on(2026, 12, 31).is_trusted());
        assert!(matches!(on(2027, 1, 1), Trust::Expired { .. }));
        // 2026-01-01T00:00:00Z
        assert!(pol.trust_at(&key, None, 1_767_225_600).is_trusted());
        assert!(matches!(
            pol.trust_at(&key, None, 1_767_225_599),
            Trust::NotYetValid { .. }
        ));
    }

    #[test]
    fn names_used_by_rules() {
        let pol = parse_str(
            "[[rule]]\nname = \"r\"\nsigned_by = [\"this-host\"]\nrequester = [\"user:root\", \"group:wheel\"]\n\
             caller = [\"user:alice\", \"uid:5\"]\ntarget = { ruid = [\"user:alice\"], egid = [\"group:shadow\"] }\n\
             grant = [\"same-pid\"]\n",
            p(),
        )
        .unwrap();
        let (users, groups) = pol.names();
        assert_eq!(users, vec!["root".to_owned(), "alice".to_owned()]);
        assert_eq!(groups, vec!["wheel".to_owned(), "shadow".to_owned()]);
    }

    #[test]
    fn trust_decisions() {
        let (_h, host_line) = key_line();
        let host = PublicKey::from_line(&host_line).unwrap();
        let (_o, other_line) = key_line();
        let other = PublicKey::from_line(&other_line).unwrap();
        let (_s, stranger_line) = key_line();
        let stranger = PublicKey::from_line(&stranger_line).unwrap();
        let today = Date::new(2026, 6, 1).unwrap();

        // Empty policy: only the host key.
        let empty = Policy::default();
        assert_eq!(
            empty.trust_on(&host, Some(&host), today),
            Trust::Trusted {
                name: THIS_HOST.into()
            }
        );
        assert_eq!(empty.trust_on(&host, None, today), Trust::Untrusted);
        assert_eq!(empty.trust_on(&other, Some(&host), today), Trust::Untrusted);

        let text = format!(
            r#"revoked = ["{}"]
[[key]]
name = "builder"
public = "{other_line}"
not_after = 2026-06-01
[[key]]
name = "local"
public = "{host_line}"
"#,
            stranger.key_id()
        );
        let pol = parse_str(&text, p()).unwrap();
        assert_eq!(
            pol.trust_on(&host, Some(&host), today),
            Trust::Trusted {
                name: "local".into()
            }
        );
        assert_eq!(
            pol.trust_on(&other, Some(&host), today),
            Trust::Trusted {
                name: "builder".into()
            }
        );
        let tomorrow = Date::new(2026, 6, 2).unwrap();
        assert!(matches!(
            pol.trust_on(&other, Some(&host), tomorrow),
            Trust::Expired { .. }
        ));
        assert!(matches!(
            pol.trust_on(&stranger, Some(&host), today),
            Trust::Revoked { name: None, .. }
        ));

        // Revoking the host key withdraws the default trust.
        let pol = parse_str(&format!("revoked = [\"{}\"]\n", host.key_id()), p()).unwrap();
        assert!(matches!(
            pol.trust_on(&host, Some(&host), today),
            Trust::Revoked { .. }
        ));
    }

    #[test]
    fn id_map() {
        let m = IdMap {
            image: 1500,
            local: 1001,
            count: 2,
        };
        assert_eq!(m.map(1500), Some(1001));
        assert_eq!(m.map(1501), Some(1002));
        assert_eq!(m.map(1502), None);
        assert_eq!(m.map(0), None);
    }
}
