//! The decision: for each privilege, granted (by which rule) or denied (and
//! why), given the policy and the facts the verifier established.
//!
//! [`decide`] is a pure function: it reads no file, no clock and no user
//! database. Everything it needs is in [`Facts`], which the verifier fills
//! in the order of docs/DESIGN.md §4: integrity, signer, trust, attestation, caller,
//! freshness (time, one-shot ledger). Uid/gid mapping is applied here, to
//! the image's ids (target credentials and requester), *before* any rule is
//! evaluated, with the mapping rules of the key that signed the image.
//!
//! A rule grants its privileges when every condition it sets holds; lists
//! are alternatives. Rules are tried in file order and the first that grants
//! a privilege is the one named for it. A privilege nobody grants is denied
//! with the reason of the *closest* rule that would have granted it (the one
//! that passed the most conditions, in evaluation order), or "no rule".
//! `credentials` and `privileged-files` also need every saved uid, gid and
//! group of the image to have a local id under the signer's mapping.
//! `credentials`, `capabilities` and `privileged-files` are never granted
//! from an image whose process was not in the initial user namespace of
//! the host that dumped it, or that does not record its namespace (images
//! written before it was recorded): capability sets are relative to the
//! process's own user namespace, so such facts say nothing about the host.

use std::collections::BTreeMap;

use ckpt_keys::PublicKey;

use crate::{
    cap_mask_names, HostSpec, IdMap, IdSpec, Origin, Policy, Principal, Privilege, Rule, Trust,
};

/// How far in the future (seconds) an image's creation time may be before a
/// `max_age` condition refuses it (clock skew between hosts).
pub const MAX_CLOCK_SKEW: u64 = 300;

/// Whether every digest and the signature matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    Ok,
    /// Tampered or malformed, with the reason.
    Tampered(String),
}

/// Who signed the image (the signature has been verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    Unsigned,
    Signed {
        key: PublicKey,
        /// The key is this host's own key (`<sysconfdir>/keys/host.pub`).
        host_key: bool,
    },
}

/// Attestation evidence bound to the image: a TPM quote and its PCR
/// values, already verified by the image reader (see `attest.rs` for the
/// `attested` rule condition that looks at it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attestation {
    /// No attestation.
    None,
    /// A quote bound to this image.
    Quote(crate::Quote),
}

/// A user's ids: uid, primary gid, supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// The saved credentials of the process, as the image records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageCreds {
    /// real, effective, saved, filesystem
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub groups: Vec<u32>,
    pub cap_inheritable: u64,
    pub cap_permitted: u64,
    pub cap_effective: u64,
    pub cap_bounding: u64,
    pub cap_ambient: u64,
    pub securebits: u32,
    /// The user namespace all of the above is relative to.
    pub user_ns: UserNs,
}

/// The user namespace an image records for its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserNs {
    /// The initial user namespace of the host that made the image: its
    /// capabilities are host capabilities.
    Initial,
    /// Another user namespace (the inode of its nsfs file).
    Other(u64),
    /// The image does not say (written before namespaces were recorded).
    Unrecorded,
}

impl UserNs {
    /// Why nothing may be granted from the image's credentials (None for
    /// the initial user namespace).
    pub fn refusal(&self) -> Option<String> {
        match self {
            UserNs::Initial => None,
            UserNs::Other(ino) => Some(format!(
                "the process ran in user namespace user:[{ino}], not the host's initial one: \
                 its ids and capabilities are not host ones"
            )),
            UserNs::Unrecorded => Some(
                "the image does not record the process's user namespace (made by an older \
                 version): its capabilities cannot be taken as host ones"
                    .to_owned(),
            ),
        }
    }
}

impl ImageCreds {
    /// Union of the capability sets a process can use (permitted, effective,
    /// inheritable, ambient).
    pub fn caps_held(&self) -> u64 {
        self.cap_permitted | self.cap_effective | self.cap_inheritable | self.cap_ambient
    }
}

/// The executable, as the image records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exe {
    pub path: String,
    /// The image's digest algorithm name (`sha256`).
    pub digest_algorithm: String,
    pub digest: Vec<u8>,
}

/// What the one-shot ledger says about this image id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OneShot {
    /// Not restored under a one-shot rule before.
    NotRestored,
    /// Already restored under a one-shot rule.
    AlreadyRestored,
    /// The ledger cannot be read (one-shot rules then never match).
    Unavailable(String),
}

/// User and group names of this host, resolved by the verifier for the
/// names the policy mentions ([`Policy::names`]). A name missing here does
/// not exist on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub users: BTreeMap<String, u32>,
    pub groups: BTreeMap<String, u32>,
}

/// Everything the decision depends on.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Integrity of the whole image (1).
    pub integrity: Integrity,
    /// The signer (2).
    pub signer: Signer,
    /// Trust (3): the policy's view of the signer (`None` when unsigned).
    pub trust: Option<Trust>,
    /// Attestation (4).
    pub attestation: Attestation,
    /// The helper runs with effective uid 0 (setuid root): without that it
    /// has nothing to grant.
    pub helper_privileged: bool,
    /// The caller (5): who runs the restore (real ids).
    pub caller: Ids,
    /// Who ran dump, as the image records it (image ids).
    pub requester: Ids,
    /// The saved credentials (image ids).
    pub target: ImageCreds,
    /// The executable.
    pub exe: Exe,
    /// The host the image was made on.
    pub machine_id: String,
    pub hostname: String,
    /// Freshness (6): when the image was made and the time now, in seconds
    /// since the epoch; the image id and what the one-shot ledger says.
    pub created_unix: u64,
    pub now: u64,
    pub image_id: String,
    pub one_shot: OneShot,
    /// Local user and group names.
    pub names: Names,
}

/// How one kind of id (uids or gids) is translated for the signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Map {
    /// Every id is itself (this host's own key).
    Identity,
    /// Only the ids in these ranges have a local id (empty: none).
    Ranges(Vec<IdMap>),
}

impl Map {
    fn apply(&self, id: u32) -> Option<u32> {
        match self {
            Map::Identity => Some(id),
            Map::Ranges(r) => r.iter().find_map(|m| m.map(id)),
        }
    }
}

/// The mapping applied to the image's ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// No trusted signer: the image's ids have no local meaning.
    None { reason: String },
    /// The mapping rules of the trusted key `key`.
    Key { key: String, uid: Map, gid: Map },
}

impl Mapping {
    fn uid(&self, id: u32) -> Option<u32> {
        match self {
            Mapping::None { .. } => None,
            Mapping::Key { uid, .. } => uid.apply(id),
        }
    }
    fn gid(&self, id: u32) -> Option<u32> {
        match self {
            Mapping::None { .. } => None,
            Mapping::Key { gid, .. } => gid.apply(id),
        }
    }
    /// Why an id has no local value, for messages.
    fn why_unmapped(&self) -> String {
        match self {
            Mapping::None { reason } => format!("ids are not mapped ({reason})"),
            Mapping::Key { key, .. } => format!("not mapped by key {key:?}"),
        }
    }
}

/// An image id and its local id, if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    pub image: u32,
    pub local: Option<u32>,
}

/// The requester's ids after mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedIds {
    pub uid: Mapped,
    pub gid: Mapped,
    pub groups: Vec<Mapped>,
}

/// The saved credentials' ids after mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedCreds {
    pub uid: [Mapped; 4],
    pub gid: [Mapped; 4],
    pub groups: Vec<Mapped>,
}

const SLOT: [&str; 4] = ["real", "effective", "saved", "fs"];

impl MappedCreds {
    /// The local credentials, when every id has a local value.
    pub fn local(&self) -> Option<([u32; 4], [u32; 4], Vec<u32>)> {
        let uid = [
            self.uid[0].local?,
            self.uid[1].local?,
            self.uid[2].local?,
            self.uid[3].local?,
        ];
        let gid = [
            self.gid[0].local?,
            self.gid[1].local?,
            self.gid[2].local?,
            self.gid[3].local?,
        ];
        let groups = self
            .groups
            .iter()
            .map(|g| g.local)
            .collect::<Option<Vec<u32>>>()?;
        Some((uid, gid, groups))
    }

    /// The ids that have no local value, as `"effective uid 1600"`.
    pub fn unmapped(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, m) in self.uid.iter().enumerate() {
            if m.local.is_none() {
                out.push(format!("{} uid {}", SLOT[i], m.image));
            }
        }
        for (i, m) in self.gid.iter().enumerate() {
            if m.local.is_none() {
                out.push(format!("{} gid {}", SLOT[i], m.image));
            }
        }
        for g in &self.groups {
            if g.local.is_none() {
                out.push(format!("group {}", g.image));
            }
        }
        out
    }
}

impl MappedIds {
    /// The ids that have no local value.
    pub fn unmapped(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.uid.local.is_none() {
            out.push(format!("uid {}", self.uid.image));
        }
        if self.gid.local.is_none() {
            out.push(format!("gid {}", self.gid.image));
        }
        for g in &self.groups {
            if g.local.is_none() {
                out.push(format!("group {}", g.image));
            }
        }
        out
    }
}

/// The decision for one privilege.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Granted by `rule`.
    Granted {
        rule: String,
        origin: Origin,
        /// The rule is one-shot: restoring with this grant records the
        /// image id in the ledger.
        one_shot: bool,
    },
    /// Denied. `condition` names what failed (`"signer"`, `"trust"`,
    /// `"no-rule"`, or a rule condition such as `"caller"`); `rule` is the
    /// closest rule, if one was tried.
    Denied {
        reason: String,
        condition: &'static str,
        rule: Option<String>,
    },
}

impl Verdict {
    /// True when granted.
    pub fn is_granted(&self) -> bool {
        matches!(self, Verdict::Granted { .. })
    }
}

/// The decision for a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// One verdict per privilege, in [`Privilege::ALL`] order.
    pub verdicts: Vec<(Privilege, Verdict)>,
    /// The mapping applied.
    pub mapping: Mapping,
    /// The saved credentials, mapped.
    pub target: MappedCreds,
    /// The requester, mapped.
    pub requester: MappedIds,
    /// Age of the image in seconds (0 when created in the future).
    pub age: u64,
}

impl Decision {
    /// The verdict for `p`.
    pub fn verdict(&self, p: Privilege) -> &Verdict {
        // Every privilege has a verdict (decide fills all of them).
        self.verdicts
            .iter()
            .find(|(q, _)| *q == p)
            .map_or(&NO_VERDICT, |(_, v)| v)
    }

    /// True when `p` is granted.
    pub fn granted(&self, p: Privilege) -> bool {
        self.verdict(p).is_granted()
    }

    /// The granted privileges and the rule that granted each.
    pub fn grants(&self) -> Vec<(Privilege, &str)> {
        self.verdicts
            .iter()
            .filter_map(|(p, v)| match v {
                Verdict::Granted { rule, .. } => Some((*p, rule.as_str())),
                Verdict::Denied { .. } => None,
            })
            .collect()
    }

    /// True when a granted privilege comes from a one-shot rule.
    pub fn uses_one_shot(&self) -> bool {
        self.verdicts
            .iter()
            .any(|(_, v)| matches!(v, Verdict::Granted { one_shot: true, .. }))
    }

    /// The local saved credentials, when every id maps.
    pub fn local_target(&self) -> Option<([u32; 4], [u32; 4], Vec<u32>)> {
        self.target.local()
    }
}

static NO_VERDICT: Verdict = Verdict::Denied {
    reason: String::new(),
    condition: "no-rule",
    rule: None,
};

/// `1h 5m`, `30s`, `2d 3h`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m"), (s, "s")]
        .iter()
        .filter(|(v, _)| *v > 0)
        .take(2)
        .map(|(v, u)| format!("{v}{u}"))
        .collect();
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The mapping for the signer, or why there is none.
fn mapping_for(policy: &Policy, facts: &Facts) -> Mapping {
    let none = |reason: String| Mapping::None { reason };
    if let Integrity::Tampered(_) = facts.integrity {
        return none("the image is tampered".to_owned());
    }
    let host_key = match &facts.signer {
        Signer::Unsigned => return none("the image is unsigned".to_owned()),
        Signer::Signed { host_key, .. } => *host_key,
    };
    let name = match &facts.trust {
        Some(Trust::Trusted { name }) => name.clone(),
        Some(t) => return none(format!("the signer is {t}")),
        None => return none("the signer is not trusted".to_owned()),
    };
    let entry = policy.key_named(&name);
    let pick = |maps: Option<&Vec<IdMap>>| match maps {
        Some(r) => Map::Ranges(r.clone()),
        None if host_key => Map::Identity,
        None => Map::Ranges(Vec::new()),
    };
    Mapping::Key {
        key: name,
        uid: pick(entry.and_then(|k| k.map_uid.as_ref())),
        gid: pick(entry.and_then(|k| k.map_gid.as_ref())),
    }
}

/// Why a rule did not grant: how far it got and the first failing
/// condition.
struct Miss {
    passed: usize,
    condition: &'static str,
    reason: String,
}

struct Ctx<'a> {
    policy_names: &'a Names,
    facts: &'a Facts,
    mapping: &'a Mapping,
    target: &'a MappedCreds,
    requester: &'a MappedIds,
    signer_name: Option<&'a str>,
    /// The `attestation_key` of the signer's `[[key]]` entry.
    signer_ak: Option<&'a PublicKey>,
    age: u64,
}

/// Does a principal list match these (local) ids? `Err` carries why not.
fn match_principals(
    list: &[Principal],
    uid: Option<u32>,
    gid: Option<u32>,
    groups: &[u32],
    names: &Names,
) -> Result<(), String> {
    let mut unknown: Vec<String> = Vec::new();
    let in_groups = |g: u32| gid == Some(g) || groups.contains(&g);
    for p in list {
        let hit = match p {
            Principal::Uid(n) => uid == Some(*n),
            Principal::Gid(n) => in_groups(*n),
            Principal::User(name) => match names.users.get(name) {
                Some(n) => uid == Some(*n),
                None => {
                    unknown.push(format!("no user {name:?} on this host"));
                    false
                }
            },
            Principal::Group(name) => match names.groups.get(name) {
                Some(n) => in_groups(*n),
                None => {
                    unknown.push(format!("no group {name:?} on this host"));
                    false
                }
            },
        };
        if hit {
            return Ok(());
        }
    }
    let want: Vec<String> = list.iter().map(ToString::to_string).collect();
    let mut why = format!("not {}", want.join(" or "));
    if !unknown.is_empty() {
        why.push_str(&format!(" ({})", unknown.join(", ")));
    }
    Err(why)
}

fn show_ids(uid: Option<u32>, gid: Option<u32>, groups: &[u32]) -> String {
    let o = |v: Option<u32>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
    let g: Vec<String> = groups.iter().map(u32::to_string).collect();
    format!("uid {} gid {} groups [{}]", o(uid), o(gid), g.join(", "))
}

fn id_spec_value(spec: &IdSpec, gid: bool, names: &Names) -> Option<u32> {
    match spec {
        IdSpec::Id(n) => Some(*n),
        IdSpec::Name(n) if gid => names.groups.get(n).copied(),
        IdSpec::Name(n) => names.users.get(n).copied(),
    }
}

fn show_spec(spec: &IdSpec, gid: bool) -> String {
    match spec {
        IdSpec::Id(n) => n.to_string(),
        IdSpec::Name(n) if gid => format!("group:{n}"),
        IdSpec::Name(n) => format!("user:{n}"),
    }
}

impl Ctx<'_> {
    /// Evaluate every condition of `rule`, in order.
    fn eval(&self, rule: &Rule) -> Result<(), Miss> {
        let mut passed = 0usize;
        let mut step = |condition: &'static str, r: Result<(), String>| match r {
            Ok(()) => {
                passed += 1;
                Ok(())
            }
            Err(reason) => Err(Miss {
                passed,
                condition,
                reason,
            }),
        };
        let f = self.facts;

        // Signer (trust has been established before any rule is tried).
        step(
            "signed_by",
            match self.signer_name {
                Some(n) if rule.signed_by.iter().any(|s| s == n) => Ok(()),
                Some(n) => Err(format!(
                    "signed by {n:?}, not {}",
                    rule.signed_by
                        .iter()
                        .map(|s| format!("{s:?}"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                )),
                None => Err("no trusted signer".to_owned()),
            },
        )?;

        // Attestation: a quote from the signer's attestation key, with
        // allowed PCR values.
        if let Some(cond) = &rule.attested {
            let quote = match &f.attestation {
                Attestation::Quote(q) => Some(q),
                Attestation::None => None,
            };
            let host = matches!(f.signer, Signer::Signed { host_key: true, .. });
            step(
                "attested",
                crate::attest::check(cond, quote, self.signer_ak, host),
            )?;
        }

        // Caller.
        if !rule.caller.is_empty() {
            let c = &f.caller;
            step(
                "caller",
                match_principals(
                    &rule.caller,
                    Some(c.uid),
                    Some(c.gid),
                    &c.groups,
                    self.policy_names,
                )
                .map_err(|why| {
                    format!(
                        "you ({}) are {why}",
                        show_ids(Some(c.uid), Some(c.gid), &c.groups)
                    )
                }),
            )?;
        }

        // Requester (mapped).
        if !rule.requester.is_empty() {
            let r = self.requester;
            let groups: Vec<u32> = r.groups.iter().filter_map(|g| g.local).collect();
            let needs_uid = rule
                .requester
                .iter()
                .any(|p| matches!(p, Principal::Uid(_) | Principal::User(_)));
            let res = match_principals(
                &rule.requester,
                r.uid.local,
                r.gid.local,
                &groups,
                self.policy_names,
            )
            .map_err(|why| {
                let mut s = format!(
                    "the requester ({}) is {why}",
                    show_ids(r.uid.local, r.gid.local, &groups)
                );
                if needs_uid && r.uid.local.is_none() {
                    s = format!(
                        "the requester's image uid {} has no local id: {}",
                        r.uid.image,
                        self.mapping.why_unmapped()
                    );
                }
                s
            });
            step("requester", res)?;
        }

        // Target credentials (mapped).
        if !rule.target.is_empty() {
            step("target", self.eval_target(rule))?;
        }

        if let Some(path) = &rule.exe {
            step(
                "exe",
                if *path == f.exe.path {
                    Ok(())
                } else {
                    Err(format!("the executable is {:?}, not {path:?}", f.exe.path))
                },
            )?;
        }
        if let Some(d) = &rule.exe_digest {
            step(
                "exe_digest",
                if f.exe.digest_algorithm == "sha256" && f.exe.digest == *d {
                    Ok(())
                } else {
                    Err(format!(
                        "the executable's digest is {}:{}, not sha256:{}",
                        f.exe.digest_algorithm,
                        hex(&f.exe.digest),
                        hex(d)
                    ))
                },
            )?;
        }
        if !rule.host.is_empty() {
            let hit = rule.host.iter().any(|h| match h {
                HostSpec::MachineId(m) => *m == f.machine_id,
                HostSpec::Hostname(n) => n.eq_ignore_ascii_case(&f.hostname),
            });
            step(
                "host",
                if hit {
                    Ok(())
                } else {
                    Err(format!(
                        "the image was made on {:?} (machine id {}), not {}",
                        f.hostname,
                        f.machine_id,
                        rule.host
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ))
                },
            )?;
        }
        if let Some(max) = rule.max_age {
            let res = if f.created_unix > f.now.saturating_add(MAX_CLOCK_SKEW) {
                Err(format!(
                    "the image was made {} in the future",
                    human_duration(f.created_unix - f.now)
                ))
            } else if self.age > max {
                Err(format!(
                    "the image is {} old, more than {}",
                    human_duration(self.age),
                    human_duration(max)
                ))
            } else {
                Ok(())
            };
            step("max_age", res)?;
        }
        if rule.one_shot {
            step(
                "one_shot",
                match &f.one_shot {
                    OneShot::NotRestored => Ok(()),
                    OneShot::AlreadyRestored => Err("already restored (one-shot)".to_owned()),
                    OneShot::Unavailable(why) => {
                        Err(format!("the one-shot ledger is unavailable: {why}"))
                    }
                },
            )?;
        }
        Ok(())
    }

    fn eval_target(&self, rule: &Rule) -> Result<(), String> {
        let t = self.target;
        for (field, specs) in &rule.target.ids {
            let gid = field.is_gid();
            let ids = if gid { &t.gid } else { &t.uid };
            for &slot in field.slots() {
                let m = ids[slot];
                let kind = if gid { "gid" } else { "uid" };
                let Some(local) = m.local else {
                    return Err(format!(
                        "the saved {} {kind} {} has no local id: {}",
                        SLOT[slot],
                        m.image,
                        self.mapping.why_unmapped()
                    ));
                };
                let hit = specs
                    .iter()
                    .any(|s| id_spec_value(s, gid, self.policy_names) == Some(local));
                if !hit {
                    let want: Vec<String> = specs.iter().map(|s| show_spec(s, gid)).collect();
                    return Err(format!(
                        "{}: the saved {} {kind} is {local}, not {}",
                        field.name(),
                        SLOT[slot],
                        want.join(" or ")
                    ));
                }
            }
        }
        if let Some(allowed) = rule.target.caps_within {
            let extra = self.facts.target.caps_held() & !allowed;
            if extra != 0 {
                return Err(format!(
                    "caps_within: the process holds {}",
                    cap_mask_names(extra).join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// Privileges that need every saved id to have a local id.
fn needs_mapped_ids(p: Privilege) -> bool {
    matches!(p, Privilege::Credentials | Privilege::PrivilegedFiles)
}

/// Privileges computed from the image's credentials or capability sets,
/// which need them to be relative to the initial user namespace.
fn needs_initial_user_ns(p: Privilege) -> bool {
    matches!(
        p,
        Privilege::Credentials | Privilege::Capabilities | Privilege::PrivilegedFiles
    )
}

/// The decision. Pure: see the module documentation.
pub fn decide(policy: &Policy, facts: &Facts) -> Decision {
    let mapping = mapping_for(policy, facts);
    let m = |id: u32, gid: bool| Mapped {
        image: id,
        local: if gid {
            mapping.gid(id)
        } else {
            mapping.uid(id)
        },
    };
    let t = &facts.target;
    let target = MappedCreds {
        uid: t.uid.map(|u| m(u, false)),
        gid: t.gid.map(|g| m(g, true)),
        groups: t.groups.iter().map(|&g| m(g, true)).collect(),
    };
    let r = &facts.requester;
    let requester = MappedIds {
        uid: m(r.uid, false),
        gid: m(r.gid, true),
        groups: r.groups.iter().map(|&g| m(g, true)).collect(),
    };
    let age = facts.now.saturating_sub(facts.created_unix);

    // Facts that refuse everything, in the order they were established.
    let global: Option<(&'static str, String)> = match (&facts.integrity, &facts.signer) {
        (Integrity::Tampered(_), _) => {
            Some(("integrity", "the image is tampered or malformed".to_owned()))
        }
        (Integrity::Ok, Signer::Unsigned) => Some(("signer", "the image is unsigned".to_owned())),
        (Integrity::Ok, Signer::Signed { key, .. }) => match &facts.trust {
            Some(Trust::Trusted { .. }) => None,
            Some(t) => Some(("trust", format!("the signer key {} is {t}", key.key_id()))),
            None => Some((
                "trust",
                format!("the signer key {} is not trusted", key.key_id()),
            )),
        },
    };
    let global = global.or_else(|| {
        (!facts.helper_privileged).then(|| {
            (
                "setuid",
                "ckpt-verify is not running setuid root, so it has no privilege to grant"
                    .to_owned(),
            )
        })
    });

    let signer_name = match &facts.trust {
        Some(Trust::Trusted { name }) => Some(name.as_str()),
        _ => None,
    };
    let cx = Ctx {
        policy_names: &facts.names,
        facts,
        mapping: &mapping,
        target: &target,
        requester: &requester,
        signer_name,
        signer_ak: signer_name
            .and_then(|n| policy.key_named(n))
            .and_then(|k| k.attestation_key.as_ref()),
        age,
    };
    // Each rule evaluated once.
    let results: Vec<Result<(), Miss>> = if global.is_some() {
        Vec::new()
    } else {
        policy.rules.iter().map(|r| cx.eval(r)).collect()
    };
    let unmapped = target.unmapped();
    let foreign_ns = facts.target.user_ns.refusal();

    let verdicts = Privilege::ALL
        .iter()
        .map(|&p| {
            let v = match (&global, &foreign_ns) {
                (Some((condition, reason)), _) => Verdict::Denied {
                    reason: reason.clone(),
                    condition,
                    rule: None,
                },
                (None, Some(reason)) if needs_initial_user_ns(p) => Verdict::Denied {
                    reason: reason.clone(),
                    condition: "user-namespace",
                    rule: None,
                },
                (None, _) => verdict_for(p, policy, &results, &unmapped, &mapping),
            };
            (p, v)
        })
        .collect();
    Decision {
        verdicts,
        mapping,
        target,
        requester,
        age,
    }
}

fn verdict_for(
    p: Privilege,
    policy: &Policy,
    results: &[Result<(), Miss>],
    unmapped: &[String],
    mapping: &Mapping,
) -> Verdict {
    // (passed, condition, reason, rule) of the closest miss so far.
    let mut closest: Option<(usize, &'static str, String, &Rule)> = None;
    for (rule, res) in policy.rules.iter().zip(results) {
        if !rule.grant.contains(&p) {
            continue;
        }
        let miss = match res {
            Ok(()) if needs_mapped_ids(p) && !unmapped.is_empty() => (
                usize::MAX,
                "mapping",
                format!(
                    "the saved {} {} no local id: {}",
                    unmapped.join(", "),
                    if unmapped.len() == 1 { "has" } else { "have" },
                    mapping.why_unmapped()
                ),
            ),
            Ok(()) => {
                return Verdict::Granted {
                    rule: rule.name.clone(),
                    origin: rule.origin.clone(),
                    one_shot: rule.one_shot,
                }
            }
            Err(m) => (m.passed, m.condition, m.reason.clone()),
        };
        let closer = match &closest {
            None => true,
            Some(c) => miss.0 > c.0,
        };
        if closer {
            closest = Some((miss.0, miss.1, miss.2, rule));
        }
    }
    match closest {
        Some((_, condition, reason, rule)) => Verdict::Denied {
            reason: format!("rule {:?}: {condition}: {reason}", rule.name),
            condition,
            rule: Some(rule.name.clone()),
        },
        None => Verdict::Denied {
            reason: format!("no rule grants {}", p.name()),
            condition: "no-rule",
            rule: None,
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::parse_str;
    use ckpt_keys::SigningKey;
    use std::path::Path;

    struct World {
        host: PublicKey,
        host_line: String,
        other: PublicKey,
        other_line: String,
    }

    fn world() -> World {
        let h = SigningKey::generate().unwrap().public_key();
        let o = SigningKey::generate().unwrap().public_key();
        World {
            host_line: h.to_line(),
            other_line: o.to_line(),
            host: h,
            other: o,
        }
    }

    const NOW: u64 = 1_780_000_000; // 2026-05-28

    /// The seed's passwd case: ruid 1001, euid 0, signed by this host,
    /// dumped by root, restored by uid 1001.
    fn facts(w: &World) -> Facts {
        let mut names = Names::default();
        names.users.insert("alice".into(), 1001);
        names.users.insert("root".into(), 0);
        names.groups.insert("staff".into(), 50);
        Facts {
            integrity: Integrity::Ok,
            signer: Signer::Signed {
                key: w.host.clone(),
                host_key: true,
            },
            trust: Some(Trust::Trusted {
                name: "this-host".into(),
            }),
            attestation: Attestation::None,
            helper_privileged: true,
            caller: Ids {
                uid: 1001,
                gid: 1001,
                groups: vec![1001, 50],
            },
            requester: Ids {
                uid: 0,
                gid: 0,
                groups: vec![0],
            },
            target: ImageCreds {
                uid: [1001, 0, 0, 0],
                gid: [1001, 1001, 1001, 1001],
                groups: vec![1001, 50],
                cap_inheritable: 0,
                cap_permitted: 0x1ff_ffff_ffff,
                cap_effective: 0x1ff_ffff_ffff,
                cap_bounding: 0x1ff_ffff_ffff,
                cap_ambient: 0,
                securebits: 0,
                user_ns: UserNs::Initial,
            },
            exe: Exe {
                path: "/usr/bin/passwd".into(),
                digest_algorithm: "sha256".into(),
                digest: vec![0xab; 32],
            },
            machine_id: "0123456789abcdef0123456789abcdef".into(),
            hostname: "build-1".into(),
            created_unix: NOW - 600,
            now: NOW,
            image_id: "00".repeat(16),
            one_shot: OneShot::NotRestored,
            names,
        }
    }

    fn policy(text: &str) -> Policy {
        parse_str(text, Path::new("policy.toml")).unwrap()
    }

    fn rule(body: &str) -> Policy {
        policy(&format!(
            "[[rule]]\nname = \"r\"\nsigned_by = [\"this-host\"]\n{body}\ngrant = [\"credentials\", \"exe-link\"]\n"
        ))
    }

    fn denied(d: &Decision, p: Privilege) -> (String, &'static str) {
        match d.verdict(p) {
            Verdict::Denied {
                reason, condition, ..
            } => (reason.clone(), condition),
            v => panic!("{p:?} granted: {v:?}"),
        }
    }

    fn granted_by(d: &Decision, p: Privilege) -> String {
        match d.verdict(p) {
            Verdict::Granted { rule, .. } => rule.clone(),
            v => panic!("{p:?} denied: {v:?}"),
        }
    }

    #[test]
    fn design_rule_grants() {
        let w = world();
        let p = rule(
            "requester = [\"uid:0\"]\ncaller = [\"uid:1001\", \"group:staff\"]\nexe = \"/usr/bin/passwd\"\nmax_age = \"1h\"\none_shot = true",
        );
        let d = decide(&p, &facts(&w));
        assert_eq!(granted_by(&d, Privilege::Credentials), "r");
        assert_eq!(granted_by(&d, Privilege::ExeLink), "r");
        assert!(d.uses_one_shot());
        let (why, cond) = denied(&d, Privilege::SamePid);
        assert_eq!(cond, "no-rule");
        assert_eq!(why, "no rule grants same-pid");
        assert_eq!(
            d.local_target(),
            Some(([1001, 0, 0, 0], [1001; 4], vec![1001, 50]))
        );
        assert_eq!(d.mapping, rule_mapping_identity());
        assert_eq!(d.age, 600);
    }

    #[test]
    fn another_user_namespace_grants_nothing_from_credentials() {
        let w = world();
        let p = policy(
            "[[rule]]\nname = \"r\"\nsigned_by = [\"this-host\"]\n\
             grant = [\"credentials\", \"capabilities\", \"privileged-files\", \"same-pid\", \"exe-link\"]\n",
        );
        for (ns, want) in [
            (
                UserNs::Other(4026532001),
                "user namespace user:[4026532001]",
            ),
            (
                UserNs::Unrecorded,
                "does not record the process's user namespace",
            ),
        ] {
            let mut f = facts(&w);
            f.target.user_ns = ns;
            let d = decide(&p, &f);
            for priv_ in [
                Privilege::Credentials,
                Privilege::Capabilities,
                Privilege::PrivilegedFiles,
            ] {
                let (why, cond) = denied(&d, priv_);
                assert_eq!(cond, "user-namespace", "{ns:?} {priv_:?}");
                assert!(why.contains(want), "{why}");
            }
            assert_eq!(granted_by(&d, Privilege::SamePid), "r");
            assert_eq!(granted_by(&d, Privilege::ExeLink), "r");
        }
        let d = decide(&p, &facts(&w));
        assert_eq!(granted_by(&d, Privilege::Capabilities), "r");
    }

    fn rule_mapping_identity() -> Mapping {
        Mapping::Key {
            key: "this-host".into(),
            uid: Map::Identity,
            gid: Map::Identity,
        }
    }

    #[test]
    fn empty_policy_grants_nothing() {
        let w = world();
        let d = decide(&Policy::default(), &facts(&w));
        for p in Privilege::ALL {
            assert_eq!(denied(&d, p).1, "no-rule");
        }
        assert!(d.grants().is_empty());
    }

    #[test]
    fn global_facts_come_first() {
        let w = world();
        let p = rule("");
        let mut f = facts(&w);
        f.integrity = Integrity::Tampered("x".into());
        assert_eq!(
            denied(&decide(&p, &f), Privilege::Credentials).1,
            "integrity"
        );

        let mut f = facts(&w);
        f.signer = Signer::Unsigned;
        f.trust = None;
        let d = decide(&p, &f);
        assert_eq!(
            denied(&d, Privilege::Credentials),
            ("the image is unsigned".to_owned(), "signer")
        );
        assert!(matches!(d.mapping, Mapping::None { .. }));
        assert_eq!(d.local_target(), None);

        for t in [
            Trust::Untrusted,
            Trust::Revoked {
                key_id: w.host.key_id(),
                name: Some("this-host".into()),
            },
            Trust::Expired {
                name: "this-host".into(),
                not_after: crate::Date::new(2020, 1, 1).unwrap(),
            },
            Trust::NotYetValid {
                name: "this-host".into(),
                not_before: crate::Date::new(2030, 1, 1).unwrap(),
            },
        ] {
            let mut f = facts(&w);
            f.trust = Some(t.clone());
            let (why, cond) = denied(&decide(&p, &f), Privilege::Credentials);
            assert_eq!(cond, "trust");
            assert!(why.contains(&t.to_string()), "{why}");
        }

        let mut f = facts(&w);
        f.helper_privileged = false;
        assert_eq!(denied(&decide(&p, &f), Privilege::ExeLink).1, "setuid");
    }

    #[test]
    fn signed_by() {
        let w = world();
        let p = policy(&format!(
            "[[key]]\nname = \"builder\"\npublic = \"{}\"\n[[rule]]\nname = \"r\"\nsigned_by = [\"builder\"]\ngrant = [\"same-pid\"]\n",
            w.other_line
        ));
        let d = decide(&p, &facts(&w));
        let (why, cond) = denied(&d, Privilege::SamePid);
        assert_eq!(cond, "signed_by");
        assert_eq!(
            why,
            "rule \"r\": signed_by: signed by \"this-host\", not \"builder\""
        );
        let mut f = facts(&w);
        f.signer = Signer::Signed {
            key: w.other.clone(),
            host_key: false,
        };
        f.trust = Some(p.trust_at(&w.other, Some(&w.host), NOW));
        assert_eq!(granted_by(&decide(&p, &f), Privilege::SamePid), "r");
    }

    #[test]
    fn caller() {
        let w = world();
        for (cond, ok) in [
            ("uid:1001", true),
            ("user:alice", true),
            ("gid:1001", true),
            ("gid:50", true),
            ("group:staff", true),
            ("uid:1002", false),
            ("user:root", false),
            ("gid:51", false),
            ("group:wheel", false),
            ("user:nosuch", false),
        ] {
            let p = rule(&format!("caller = [\"{cond}\"]"));
            let d = decide(&p, &facts(&w));
            if ok {
                granted_by(&d, Privilege::Credentials);
            } else {
                let (why, c) = denied(&d, Privilege::Credentials);
                assert_eq!(c, "caller", "{cond}");
                assert!(why.contains(cond), "{why}");
                assert!(why.contains("uid 1001 gid 1001"), "{why}");
            }
        }
        let p = rule("caller = [\"user:ghost\", \"group:ghosts\"]");
        let (why, _) = denied(&decide(&p, &facts(&w)), Privilege::Credentials);
        assert!(why.contains("no user \"ghost\" on this host"), "{why}");
        assert!(why.contains("no group \"ghosts\" on this host"), "{why}");
    }

    #[test]
    fn requester() {
        let w = world();
        for (cond, ok) in [
            ("uid:0", true),
            ("user:root", true),
            ("gid:0", true),
            ("uid:1001", false),
            ("group:staff", false),
        ] {
            let p = rule(&format!("requester = [\"{cond}\"]"));
            let d = decide(&p, &facts(&w));
            if ok {
                granted_by(&d, Privilege::Credentials);
            } else {
                let (why, c) = denied(&d, Privilege::Credentials);
                assert_eq!(c, "requester", "{cond}");
                assert!(why.contains("requester (uid 0 gid 0"), "{why}");
            }
        }
    }

    #[test]
    fn target() {
        let w = world();
        for (cond, ok) in [
            ("{ euid = [0] }", true),
            ("{ ruid = [\"user:alice\"], euid = [\"uid:0\"] }", true),
            ("{ ruid = [1001], suid = [0], fsuid = [0] }", true),
            ("{ gid = [\"group:alice\", 1001] }", true),
            (
                "{ rgid = [\"gid:1001\"], egid = [1001], sgid = [1001], fsgid = [1001] }",
                true,
            ),
            ("{ euid = [1001] }", false),
            ("{ uid = [0] }", false),
            ("{ ruid = [\"user:root\"] }", false),
            ("{ egid = [0] }", false),
            ("{ caps_within = [] }", false),
            ("{ caps_within = [\"cap_chown\"] }", false),
        ] {
            let p = rule(&format!("target = {cond}"));
            let d = decide(&p, &facts(&w));
            if ok {
                granted_by(&d, Privilege::Credentials);
            } else {
                let (why, c) = denied(&d, Privilege::Credentials);
                assert_eq!(c, "target", "{cond}: {why}");
            }
        }
        let p = rule("target = { euid = [1001] }");
        let (why, _) = denied(&decide(&p, &facts(&w)), Privilege::Credentials);
        assert_eq!(
            why,
            "rule \"r\": target: euid: the saved effective uid is 0, not 1001"
        );
        let p = rule("target = { caps_within = [\"cap_chown\"] }");
        let (why, _) = denied(&decide(&p, &facts(&w)), Privilege::Credentials);
        assert!(why.contains("cap_dac_override"), "{why}");
        assert!(!why.contains("cap_chown"), "{why}");
        let mut f = facts(&w);
        f.target.cap_permitted = 1 << 10;
        f.target.cap_effective = 0;
        let p = rule("target = { caps_within = [\"cap_net_bind_service\"] }");
        granted_by(&decide(&p, &f), Privilege::Credentials);
    }

    #[test]
    fn exe_and_digest() {
        let w = world();
        let good = format!("sha256:{}", "ab".repeat(32));
        let bad = format!("sha256:{}", "cd".repeat(32));
        let p = rule(&format!(
            "exe = \"/usr/bin/passwd\"\nexe_digest = \"{good}\""
        ));
        granted_by(&decide(&p, &facts(&w)), Privilege::Credentials);
        let p = rule("exe = \"/usr/bin/chsh\"");
        let (why, c) = denied(&decide(&p, &facts(&w)), Privilege::Credentials);
        assert_eq!(c, "exe");
        assert!(
            why.contains("\"/usr/bin/passwd\", not \"/usr/bin/chsh\""),
            "{why}"
        );
        let p = rule(&format!("exe_digest = \"{bad}\""));
        let (why, c) = denied(&decide(&p, &facts(&w)), Privilege::Credentials);
        assert_eq!(c, "exe_digest");
        assert!(why.contains(&"ab".repeat(32)), "{why}");
    }

    #[test]
    fn host() {
        let w = world();
        for (cond, ok) in [
            ("0123456789abcdef0123456789abcdef", true),
            ("BUILD-1", true),
            ("build-2", false),
            ("ffffffffffffffffffffffffffffffff", false),
        ] {
            let p = rule(&format!("host = [\"{cond}\"]"));
            let d = decide(&p, &facts(&w));
            if ok {
                granted_by(&d, Privilege::Credentials);
            } else {
                let (why, c) = denied(&d, Privilege::Credentials);
                assert_eq!(c, "host");
                assert!(why.contains("\"build-1\""), "{why}");
            }
        }
    }

    #[test]
    fn attested() {
        use ckpt_keys::quote::PcrValue;
        let w = world();
        let p256 = |seed: u8| {
            let sk = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
            let pt = sk.verifying_key().to_encoded_point(false);
            PublicKey::from_parts(ckpt_keys::Algorithm::EcdsaP256, pt.as_bytes()).unwrap()
        };
        let ak = p256(3);
        let quote = |host_ak: bool| {
            Attestation::Quote(crate::Quote {
                ak: ak.clone(),
                host_ak,
                pcrs: (0..8)
                    .map(|i| PcrValue {
                        index: i,
                        value: [i; 32],
                    })
                    .collect(),
            })
        };
        let hex7 = "07".repeat(32);
        let p = rule(&format!(
            "attested = [{{ 0 = \"{}\", 7 = \"{hex7}\" }}]",
            "00".repeat(32)
        ));
        // No quote: denied, naming the condition.
        let (why, c) = denied(&decide(&p, &facts(&w)), Privilege::Credentials);
        assert_eq!(c, "attested");
        assert!(why.contains("no TPM quote"), "{why}");
        // This host's key, quoted by this host's AK: granted.
        let mut f = facts(&w);
        f.attestation = quote(true);
        granted_by(&decide(&p, &f), Privilege::Credentials);
        // Another AK, not named for the signer: denied.
        f.attestation = quote(false);
        let (why, _) = denied(&decide(&p, &f), Privilege::Credentials);
        assert!(why.contains("names no attestation_key"), "{why}");
        // A PCR that differs is named.
        f.attestation = quote(true);
        let p = rule(&format!("attested = [{{ 7 = \"{}\" }}]", "08".repeat(32)));
        let (why, c) = denied(&decide(&p, &f), Privilege::Credentials);
        assert_eq!(c, "attested");
        assert!(
            why.contains("PCR 7 is 0707070707070707… in the quote"),
            "{why}"
        );
        // A key entry naming its AK: only that AK's quotes count.
        let p = policy(&format!(
            "[[key]]\nname = \"tpm\"\npublic = \"{}\"\nattestation_key = \"{}\"\n\
             map_uid = [\"0:0:2000\"]\nmap_gid = [\"0:0:2000\"]\n\
             [[rule]]\nname = \"r\"\nsigned_by = [\"tpm\"]\nattested = true\ngrant = [\"credentials\"]\n",
            w.other_line,
            ak.to_line()
        ));
        let mut f = facts(&w);
        f.signer = Signer::Signed {
            key: w.other.clone(),
            host_key: false,
        };
        f.trust = Some(Trust::Trusted { name: "tpm".into() });
        f.attestation = quote(false);
        let d = decide(&p, &f);
        assert_eq!(granted_by(&d, Privilege::Credentials), "r");
        let other_ak = p256(4);
        f.attestation = Attestation::Quote(crate::Quote {
            ak: other_ak,
            host_ak: true,
            pcrs: vec![],
        });
        let (why, _) = denied(&decide(&p, &f), Privilege::Credentials);
        assert!(why.contains("not by the signer's attestation key"), "{why}");
    }

    #[test]
    fn max_age() {
        let w = world();
        let p = rule("max_age = \"10m\"");
        granted_by(&decide(&p, &facts(&w)), Privilege::Credentials);
        let p = rule("max_age = \"9m\"");
        let (why, c) = denied(&decide(&p, &facts(&w)), Privilege::Credentials);
        assert_eq!(c, "max_age");
        assert_eq!(
            why,
            "rule \"r\": max_age: the image is 10m old, more than 9m"
        );
        let mut f = facts(&w);
        f.created_unix = NOW + MAX_CLOCK_SKEW;
        granted_by(&decide(&p, &f), Privilege::Credentials);
        f.created_unix = NOW + 3600;
        let (why, _) = denied(&decide(&p, &f), Privilege::Credentials);
        assert!(why.contains("1h in the future"), "{why}");
    }

    #[test]
    fn one_shot() {
        let w = world();
        let p = policy(
            "[[rule]]\nname = \"once\"\nsigned_by = [\"this-host\"]\none_shot = true\ngrant = [\"credentials\"]\n\
             [[rule]]\nname = \"always\"\nsigned_by = [\"this-host\"]\ngrant = [\"exe-link\"]\n",
        );
        let d = decide(&p, &facts(&w));
        assert_eq!(granted_by(&d, Privilege::Credentials), "once");
        assert!(d.uses_one_shot());
        let mut f = facts(&w);
        f.one_shot = OneShot::AlreadyRestored;
        let d = decide(&p, &f);
        assert_eq!(
            denied(&d, Privilege::Credentials),
            (
                "rule \"once\": one_shot: already restored (one-shot)".to_owned(),
                "one_shot"
            )
        );
        // Other rules still apply.
        assert_eq!(granted_by(&d, Privilege::ExeLink), "always");
        assert!(!d.uses_one_shot());
        f.one_shot = OneShot::Unavailable("bad owner".into());
        let (why, _) = denied(&decide(&p, &f), Privilege::Credentials);
        assert!(why.contains("ledger is unavailable: bad owner"), "{why}");
    }

    fn foreign(w: &World, maps: &str) -> (Policy, Facts) {
        let p = policy(&format!(
            "[[key]]\nname = \"build-42\"\npublic = \"{}\"\n{maps}\n\
             [[rule]]\nname = \"foreign\"\nsigned_by = [\"build-42\"]\nrequester = [\"uid:1001\"]\n\
             grant = [\"credentials\", \"privileged-files\", \"same-pid\"]\n",
            w.other_line
        ));
        let mut f = facts(&w_clone(w));
        f.signer = Signer::Signed {
            key: w.other.clone(),
            host_key: false,
        };
        f.trust = Some(p.trust_at(&w.other, Some(&w.host), NOW));
        f.requester = Ids {
            uid: 1500,
            gid: 1500,
            groups: vec![1500],
        };
        f.target.uid = [1500; 4];
        f.target.gid = [1500; 4];
        f.target.groups = vec![1500];
        (p, f)
    }

    fn w_clone(w: &World) -> World {
        World {
            host: w.host.clone(),
            host_line: w.host_line.clone(),
            other: w.other.clone(),
            other_line: w.other_line.clone(),
        }
    }

    #[test]
    fn mapping_before_rules() {
        let w = world();
        let (p, f) = foreign(
            &w,
            "map_uid = [\"1500:1001:1\"]\nmap_gid = [\"1500:1001:1\"]",
        );
        let d = decide(&p, &f);
        assert_eq!(granted_by(&d, Privilege::Credentials), "foreign");
        assert_eq!(granted_by(&d, Privilege::PrivilegedFiles), "foreign");
        assert_eq!(d.local_target(), Some(([1001; 4], [1001; 4], vec![1001])));
        assert_eq!(d.requester.uid.local, Some(1001));

        // A group that does not map refuses what depends on it, and only that.
        let (p, mut f) = foreign(
            &w,
            "map_uid = [\"1500:1001:1\"]\nmap_gid = [\"1500:1001:1\"]",
        );
        f.target.groups = vec![1500, 1600];
        let d = decide(&p, &f);
        let (why, c) = denied(&d, Privilege::Credentials);
        assert_eq!(c, "mapping");
        assert!(why.contains("group 1600 has no local id"), "{why}");
        assert!(why.contains("not mapped by key \"build-42\""), "{why}");
        assert_eq!(denied(&d, Privilege::PrivilegedFiles).1, "mapping");
        assert_eq!(granted_by(&d, Privilege::SamePid), "foreign");

        // A requester that does not map fails a requester condition.
        let (p, mut f) = foreign(
            &w,
            "map_uid = [\"1500:1001:1\"]\nmap_gid = [\"1500:1001:1\"]",
        );
        f.requester.uid = 1501;
        let (why, c) = denied(&decide(&p, &f), Privilege::SamePid);
        assert_eq!(c, "requester");
        assert!(why.contains("image uid 1501 has no local id"), "{why}");

        // A foreign key without map rules maps nothing.
        let (p, f) = foreign(&w, "");
        let d = decide(&p, &f);
        assert_eq!(d.local_target(), None);
        assert_eq!(denied(&d, Privilege::SamePid).1, "requester");

        // An identity range written out maps everything.
        let (p, f) = foreign(
            &w,
            "map_uid = [\"0:0:4294967295\"]\nmap_gid = [\"0:0:4294967295\"]",
        );
        let d = decide(&p, &f);
        assert_eq!(d.local_target(), Some(([1500; 4], [1500; 4], vec![1500])));
    }

    #[test]
    fn host_key_entry_maps_identity_unless_told() {
        let w = world();
        let p = policy(&format!(
            "[[key]]\nname = \"local\"\npublic = \"{}\"\nmap_gid = [\"1001:2001:1\"]\n\
             [[rule]]\nname = \"r\"\nsigned_by = [\"local\"]\ngrant = [\"credentials\"]\n",
            w.host_line
        ));
        let mut f = facts(&w);
        f.trust = Some(p.trust_at(&w.host, Some(&w.host), NOW));
        f.target.groups = vec![1001];
        let d = decide(&p, &f);
        assert_eq!(
            d.local_target(),
            Some(([1001, 0, 0, 0], [2001; 4], vec![2001]))
        );
    }

    #[test]
    fn closest_rule_is_reported() {
        let w = world();
        let p = policy(
            "[[rule]]\nname = \"far\"\nsigned_by = [\"this-host\"]\ncaller = [\"uid:5\"]\ngrant = [\"credentials\"]\n\
             [[rule]]\nname = \"near\"\nsigned_by = [\"this-host\"]\ncaller = [\"uid:1001\"]\nexe = \"/bin/x\"\ngrant = [\"credentials\"]\n\
             [[rule]]\nname = \"other\"\nsigned_by = [\"this-host\"]\ncaller = [\"uid:5\"]\ngrant = [\"same-pid\"]\n",
        );
        let d = decide(&p, &facts(&w));
        match d.verdict(Privilege::Credentials) {
            Verdict::Denied {
                rule, condition, ..
            } => {
                assert_eq!(rule.as_deref(), Some("near"));
                assert_eq!(*condition, "exe");
            }
            v => panic!("{v:?}"),
        }
        match d.verdict(Privilege::SamePid) {
            Verdict::Denied { rule, .. } => assert_eq!(rule.as_deref(), Some("other")),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn first_granting_rule_wins() {
        let w = world();
        let p = policy(
            "[[rule]]\nname = \"a\"\nsigned_by = [\"this-host\"]\ncaller = [\"uid:5\"]\ngrant = [\"credentials\"]\n\
             [[rule]]\nname = \"b\"\nsigned_by = [\"this-host\"]\ngrant = [\"credentials\"]\n\
             [[rule]]\nname = \"c\"\nsigned_by = [\"this-host\"]\ngrant = [\"credentials\", \"capabilities\"]\n",
        );
        let d = decide(&p, &facts(&w));
        assert_eq!(granted_by(&d, Privilege::Credentials), "b");
        assert_eq!(granted_by(&d, Privilege::Capabilities), "c");
        assert_eq!(
            d.grants(),
            vec![
                (Privilege::Credentials, "b"),
                (Privilege::Capabilities, "c")
            ]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(3600), "1h");
        assert_eq!(human_duration(3661), "1h 1m");
        assert_eq!(human_duration(90_061), "1d 1h");
    }
}
