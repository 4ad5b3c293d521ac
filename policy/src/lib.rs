//! The admin policy of ckpt: parse, validate, decide.
//!
//! The policy lives at `<sysconfdir>/policy.toml`, plus
//! `<sysconfdir>/policy.d/*.toml` merged in name order (the helpers pass
//! these build-time paths; nothing at run time can name another policy for
//! them). Its shape is the example of DESIGN §3:
//!
//! ```toml
//! revoked = []                                  # key ids (32 hex)
//!
//! [[key]]
//! name = "build-42"
//! public = "ckpt-ed25519 <base64> <key id>"     # as `ckpt-sign pubkey` prints
//! not_after = 2027-12-31                        # optional, inclusive, UTC
//! map_uid = ["1500:1001:1"]                     # image id : local id : count
//! map_gid = ["1500:1001:1"]
//!
//! [[rule]]
//! name = "resume-passwd"
//! signed_by = ["this-host"]
//! requester = ["uid:0"]                         # who ran dump
//! caller = ["uid:1001", "group:staff"]          # who runs restore
//! exe = "/usr/bin/passwd"
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
//! In this version the policy decides *trust* ([`Policy::trust`]); rules are
//! parsed and validated so that policies written now stay valid, and the
//! grant decision comes with the restore-with-grants work.
#![forbid(unsafe_code)]

mod date;
mod error;
mod load;
mod parse;

use ckpt_keys::{KeyId, PublicKey};

pub use date::Date;
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
    /// Last day (UTC, inclusive) on which the key is trusted.
    pub not_after: Option<Date>,
    /// Uid mapping from ids in images signed by this key to local ids.
    pub map_uid: Vec<IdMap>,
    /// Gid mapping, likewise.
    pub map_gid: Vec<IdMap>,
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

/// A privilege a rule can grant (DESIGN §3).
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
/// Names are resolved when a decision is made, not when the policy is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Uid(u32),
    User(String),
    Gid(u32),
    Group(String),
}

/// A condition on the target's saved credentials: `ruid:N`, `euid:N`,
/// `suid:N`, `rgid:N`, `egid:N`, `sgid:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetCred {
    Ruid(u32),
    Euid(u32),
    Suid(u32),
    Rgid(u32),
    Egid(u32),
    Sgid(u32),
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
    pub target: Vec<TargetCred>,
    /// Absolute path of the executable.
    pub exe: Option<String>,
    /// Content digest of the executable: `sha256:<64 hex>`, stored as bytes.
    pub exe_digest: Option<Vec<u8>>,
    /// Host identities (machine ids, 32 hex) the image may come from.
    pub host: Vec<String>,
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
}

impl Trust {
    /// True only for [`Trust::Trusted`].
    pub fn is_trusted(&self) -> bool {
        matches!(self, Trust::Trusted { .. })
    }

    /// The name the policy gives the key, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Trust::Trusted { name } | Trust::Expired { name, .. } => Some(name),
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
