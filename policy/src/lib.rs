//! The admin policy of ckpt: parse, validate, decide.
//!
//! The policy lives at `<sysconfdir>/policy.toml`, plus
//! `<sysconfdir>/policy.d/*.toml` merged in name order (the helpers pass
//! these build-time paths; nothing at run time can name another policy for
//! them). Its shape extends the example in docs/DESIGN.md (`docs/POLICY.md` is
//! the admin's documentation):
//!
//! ```toml
//! revoked = []                                  # key ids (32 hex)
//!
//! [[key]]
//! name = "build-42"
//! public = "ckpt-ed25519 <base64> <key id>"     # as `ckpt-sign pubkey` prints
//! not_before = 2026-01-01                       # optional, inclusive, UTC
//! not_after = 2027-12-31                        # optional, inclusive, UTC
//! map_uid = ["1500:1001:1"]                     # image id : local id : count
//! map_gid = ["1500:1001:1"]
//!
//! [[rule]]
//! name = "resume-passwd"
//! signed_by = ["this-host"]
//! requester = ["uid:0"]                         # who ran dump
//! caller = ["uid:1001", "group:staff"]          # who runs restore
//! target = { ruid = ["user:alice"], euid = [0] } # the image's saved credentials
//! exe = "/usr/bin/passwd"
//! exe_digest = "sha256:<64 hex>"
//! host = ["<machine id>", "build-42.example.org"]
//! max_age = "1h"
//! one_shot = true
//! grant = ["credentials", "exe-link"]
//! ```
//!
//! Defaults: an absent policy file is an empty policy. With an empty policy
//! only this host's own key (`<sysconfdir>/keys/host.pub`) is trusted, under
//! the name `this-host` (unless a `[[key]]` entry names it otherwise), and
//! nothing is granted: every restore uses the caller's credentials.
//!
//! What this crate trusts: the policy files only after [`load`] has checked
//! that they (and their directories) are owned by root and not writable by
//! group or others; anything else is refused with a [`PolicyError`], and the
//! helpers then treat every image as untrusted. Parsing is strict: unknown
//! keys are errors that name the file, line and key.
//!
//! The decision is [`decide`]: a pure function of the policy and the
//! [`Facts`] the verifier established (in the order of docs/DESIGN.md §4), which says
//! for each [`Privilege`] whether it is granted and by which rule, or why not.
#![forbid(unsafe_code)]

mod attest;
mod capnames;
mod date;
mod decide;
mod error;
mod load;
mod parse;

use ckpt_keys::{KeyId, PublicKey};

pub use attest::{AttestedCond, PcrSet, Quote};
pub use capnames::{
    cap_mask_names, cap_mask_summary, cap_name, cap_number, capability, known_caps, known_caps_mask,
};
pub use date::Date;
pub use decide::{
    decide, human_duration, Attestation, Decision, Exe, Facts, Ids, ImageCreds, Integrity, Map,
    Mapped, MappedCreds, MappedIds, Mapping, Names, OneShot, Signer, UserNs, Verdict,
    MAX_CLOCK_SKEW,
};
pub use error::PolicyError;
pub use load::{load, load_file, MAX_POLICY_LEN};
pub use parse::parse_str;

/// The name under which this host's own key is trusted when the policy does
/// not name it.
pub const THIS_HOST: &str = "this-host";

/// A parsed, validated policy (possibly merged from several files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Revoked key ids: never trusted, whatever else says so.
    pub revoked: Vec<KeyId>,
    /// Trusted keys.
    pub keys: Vec<TrustedKey>,
    /// Grant rules, in file order.
    pub rules: Vec<Rule>,
}

/// A trusted signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// The name rules refer to it by.
    pub name: String,
    /// The key.
    pub public: PublicKey,
    /// The TPM attestation key whose quotes are trusted for images signed
    /// by this key (`attested` rules; see `attest.rs`).
    pub attestation_key: Option<PublicKey>,
    /// First day (UTC, inclusive) on which the key is trusted.
    pub not_before: Option<Date>,
    /// Last day (UTC, inclusive) on which the key is trusted.
    pub not_after: Option<Date>,
    /// Uid mapping from ids in images signed by this key to local ids.
    /// `None` when the entry has no `map_uid`: identity for this host's
    /// own key, nothing mapped for any other key.
    pub map_uid: Option<Vec<IdMap>>,
    /// Gid mapping, likewise.
    pub map_gid: Option<Vec<IdMap>>,
    /// Where the entry was written.
    pub origin: Origin,
}

/// Where a policy entry was written: file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub path: std::path::PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// One mapping range, `image:local:count` (like `/etc/subuid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// First id as it appears in the image.
    pub image: u32,
    /// First local id it maps to.
    pub local: u32,
    /// Number of ids in the range (at least 1).
    pub count: u32,
}

impl IdMap {
    /// The local id for `id`, if `id` is in this range.
    pub fn map(&self, id: u32) -> Option<u32> {
        let off = id.checked_sub(self.image)?;
        if off < self.count {
            self.local.checked_add(off)
        } else {
            None
        }
    }
}

/// A privilege a rule can grant (docs/DESIGN.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Privilege {
    /// Restore the saved uid/gid/groups instead of the caller's.
    Credentials,
    /// Restore saved capability sets and securebits.
    Capabilities,
    /// Restore the original pid.
    SamePid,
    /// Restore `/proc/PID/exe` to the original executable.
    ExeLink,
    /// Reopen files the caller cannot open, on the saved credentials' behalf.
    PrivilegedFiles,
}

impl Privilege {
    /// All privileges, in documentation order.
    pub const ALL: [Privilege; 5] = [
        Privilege::Credentials,
        Privilege::Capabilities,
        Privilege::SamePid,
        Privilege::ExeLink,
        Privilege::PrivilegedFiles,
    ];

    /// The name used in the policy file.
    pub fn name(&self) -> &'static str {
        match self {
            Privilege::Credentials => "credentials",
            Privilege::Capabilities => "capabilities",
            Privilege::SamePid => "same-pid",
            Privilege::ExeLink => "exe-link",
            Privilege::PrivilegedFiles => "privileged-files",
        }
    }
}

/// A user or group condition: `uid:N`, `user:NAME`, `gid:N`, `group:NAME`.
/// Names are resolved when a decision is made (see [`Names`]), not when the
/// policy is read. A gid or group matches the primary gid or any
/// supplementary group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Uid(u32),
    User(String),
    Gid(u32),
    Group(String),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Uid(n) => write!(f, "uid:{n}"),
            Principal::User(n) => write!(f, "user:{n}"),
            Principal::Gid(n) => write!(f, "gid:{n}"),
            Principal::Group(n) => write!(f, "group:{n}"),
        }
    }
}

/// One id in a `target` condition: a number, or a name resolved on this
/// host (`user:NAME` in uid fields, `group:NAME` in gid fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdSpec {
    Id(u32),
    Name(String),
}

/// Which saved id a `target` condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredField {
    /// All four uids (real, effective, saved, filesystem).
    Uid,
    Ruid,
    Euid,
    Suid,
    Fsuid,
    /// All four gids.
    Gid,
    Rgid,
    Egid,
    Sgid,
    Fsgid,
}

impl CredField {
    /// Every field, in the order conditions are evaluated.
    pub const ALL: [CredField; 10] = [
        CredField::Uid,
        CredField::Ruid,
        CredField::Euid,
        CredField::Suid,
        CredField::Fsuid,
        CredField::Gid,
        CredField::Rgid,
        CredField::Egid,
        CredField::Sgid,
        CredField::Fsgid,
    ];

    /// The key used in the policy file.
    pub fn name(self) -> &'static str {
        match self {
            CredField::Uid => "uid",
            CredField::Ruid => "ruid",
            CredField::Euid => "euid",
            CredField::Suid => "suid",
            CredField::Fsuid => "fsuid",
            CredField::Gid => "gid",
            CredField::Rgid => "rgid",
            CredField::Egid => "egid",
            CredField::Sgid => "sgid",
            CredField::Fsgid => "fsgid",
        }
    }

    /// True for the gid fields.
    pub fn is_gid(self) -> bool {
        matches!(
            self,
            CredField::Gid | CredField::Rgid | CredField::Egid | CredField::Sgid | CredField::Fsgid
        )
    }

    /// Indexes into `[real, effective, saved, fs]` that must match.
    pub fn slots(self) -> &'static [usize] {
        match self {
            CredField::Uid | CredField::Gid => &[0, 1, 2, 3],
            CredField::Ruid | CredField::Rgid => &[0],
            CredField::Euid | CredField::Egid => &[1],
            CredField::Suid | CredField::Sgid => &[2],
            CredField::Fsuid | CredField::Fsgid => &[3],
        }
    }
}

/// Conditions on the image's saved credentials (after mapping). Every field
/// present must hold; each field lists alternatives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetCond {
    /// Id conditions, in [`CredField::ALL`] order.
    pub ids: Vec<(CredField, Vec<IdSpec>)>,
    /// The saved permitted, effective, inheritable and ambient capability
    /// sets may hold only these capabilities (a bit mask).
    pub caps_within: Option<u64>,
}

impl TargetCond {
    /// True when the rule sets no target condition.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.caps_within.is_none()
    }
}

/// A `host` condition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSpec {
    /// A machine id (32 lowercase hex), compared with the image's.
    MachineId(String),
    /// A host name, compared (ASCII case-insensitively) with the image's.
    Hostname(String),
}

impl std::fmt::Display for HostSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostSpec::MachineId(s) | HostSpec::Hostname(s) => f.write_str(s),
        }
    }
}

/// A grant rule. Every condition that is present must hold for the rule to
/// grant; lists are alternatives (any one entry matching is enough).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Unique name, quoted in decisions and the audit log.
    pub name: String,
    /// Names of trusted keys (or `this-host`); at least one.
    pub signed_by: Vec<String>,
    /// Who ran dump.
    pub requester: Vec<Principal>,
    /// Who runs restore.
    pub caller: Vec<Principal>,
    /// The target's saved credentials.
    pub target: TargetCond,
    /// Absolute path of the executable.
    pub exe: Option<String>,
    /// Content digest of the executable: `sha256:<64 hex>`, stored as bytes.
    pub exe_digest: Option<Vec<u8>>,
    /// Hosts (machine ids or host names) the image may come from.
    pub host: Vec<HostSpec>,
    /// A TPM quote from a trusted attestation key, with allowed PCR values.
    pub attested: Option<AttestedCond>,
    /// Maximum age of the image, in seconds.
    pub max_age: Option<u64>,
    /// A second restore of the same image id is refused.
    pub one_shot: bool,
    /// Privileges granted when every condition holds.
    pub grant: Vec<Privilege>,
    /// Where the rule was written.
    pub origin: Origin,
}

/// What the policy says about a signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Trusted, under this name.
    Trusted { name: String },
    /// Not named by the policy, and not this host's key.
    Untrusted,
    /// Listed in `revoked` (with its name, if the policy also lists it).
    Revoked { key_id: KeyId, name: Option<String> },
    /// Named by the policy, but past its `not_after` day.
    Expired { name: String, not_after: Date },
    /// Named by the policy, but before its `not_before` day.
    NotYetValid { name: String, not_before: Date },
}

impl Trust {
    /// True only for [`Trust::Trusted`].
    pub fn is_trusted(&self) -> bool {
        matches!(self, Trust::Trusted { .. })
    }

    /// The name the policy gives the key, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Trust::Trusted { name }
            | Trust::Expired { name, .. }
            | Trust::NotYetValid { name, .. } => Some(name),
            Trust::Revoked { name, .. } => name.as_deref(),
            Trust::Untrusted => None,
        }
    }
}

impl std::fmt::Display for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trust::Trusted { name } => write!(f, "trusted ({name})"),
            Trust::Untrusted => f.write_str("not trusted (key not in policy)"),
            Trust::Revoked { name: Some(n), .. } => write!(f, "revoked ({n})"),
            Trust::Revoked { name: None, .. } => f.write_str("revoked"),
            Trust::Expired { name, not_after } => {
                write!(f, "expired ({name}, not after {not_after})")
            }
            Trust::NotYetValid { name, not_before } => {
                write!(f, "not yet valid ({name}, not before {not_before})")
            }
        }
    }
}

impl Policy {
    /// An empty policy: only this host's key is trusted, nothing granted.
    pub fn empty() -> Policy {
        Policy::default()
    }

    /// The trusted key entry with this name.
    pub fn key_named(&self, name: &str) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| k.name == name)
    }

    /// How far the policy trusts `key` today (UTC). `host_key` is this
    /// host's own public key, if there is one: it is trusted as
    /// [`THIS_HOST`] unless the policy names or revokes it.
    pub fn trust(&self, key: &PublicKey, host_key: Option<&PublicKey>) -> Trust {
        self.trust_on(key, host_key, Date::today())
    }

    /// [`Policy::trust`] as of `now` (seconds since the epoch, UTC).
    pub fn trust_at(&self, key: &PublicKey, host_key: Option<&PublicKey>, now: u64) -> Trust {
        let days = i64::try_from(now / 86_400).unwrap_or(i64::MAX);
        self.trust_on(key, host_key, Date::from_days_since_epoch(days))
    }

    /// Every user name and every group name the rules mention (in
    /// `requester`, `caller` and `target`), for [`Names`] to resolve.
    pub fn names(&self) -> (Vec<String>, Vec<String>) {
        let mut users: Vec<String> = Vec::new();
        let mut groups: Vec<String> = Vec::new();
        let add = |list: &mut Vec<String>, n: &String| {
            if !list.contains(n) {
                list.push(n.clone());
            }
        };
        for r in &self.rules {
            for p in r.requester.iter().chain(&r.caller) {
                match p {
                    Principal::User(n) => add(&mut users, n),
                    Principal::Group(n) => add(&mut groups, n),
                    Principal::Uid(_) | Principal::Gid(_) => {}
                }
            }
            for (field, specs) in &r.target.ids {
                for s in specs {
                    if let IdSpec::Name(n) = s {
                        if field.is_gid() {
                            add(&mut groups, n);
                        } else {
                            add(&mut users, n);
                        }
                    }
                }
            }
        }
        (users, groups)
    }

    /// [`Policy::trust`] as of `today`.
    pub fn trust_on(&self, key: &PublicKey, host_key: Option<&PublicKey>, today: Date) -> Trust {
        let id = key.key_id();
        let entry = self.keys.iter().find(|k| k.public == *key);
        if self.revoked.contains(&id) {
            return Trust::Revoked {
                key_id: id,
                name: entry.map(|k| k.name.clone()),
            };
        }
        if let Some(k) = entry {
            if let Some(first) = k.not_before.filter(|&first| today < first) {
                return Trust::NotYetValid {
                    name: k.name.clone(),
                    not_before: first,
                };
            }
            return match k.not_after {
                Some(last) if today > last => Trust::Expired {
                    name: k.name.clone(),
                    not_after: last,
                },
                _ => Trust::Trusted {
                    name: k.name.clone(),
                },
            };
        }
        if host_key == Some(key) {
            return Trust::Trusted {
                name: THIS_HOST.to_owned(),
            };
        }
        Trust::Untrusted
    }

    /// Append `other` (a later file) to this policy, refusing duplicate key
    /// or rule names and keys listed twice.
    pub(crate) fn merge(&mut self, other: Policy) -> Result<(), String> {
        for k in &other.keys {
            if self.key_named(&k.name).is_some() {
                return Err(format!("key name {:?} is already defined", k.name));
            }
            if self.keys.iter().any(|e| e.public == k.public) {
                return Err(format!(
                    "key {:?}: the same public key is already listed",
                    k.name
                ));
            }
        }
        for r in &other.rules {
            if self.rules.iter().any(|e| e.name == r.name) {
                return Err(format!("rule name {:?} is already defined", r.name));
            }
        }
        for id in other.revoked {
            if !self.revoked.contains(&id) {
                self.revoked.push(id);
            }
        }
        self.keys.extend(other.keys);
        self.rules.extend(other.rules);
        Ok(())
    }
}
