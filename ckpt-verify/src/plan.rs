//! From the policy's decision to the engine's `RestoreOptions`.
//!
//! * `credentials` granted: the saved real/effective/saved/fs uids and gids
//!   and the supplementary groups, after mapping; otherwise the caller's.
//! * `capabilities` granted: the saved capability sets (inheritable,
//!   permitted, effective, ambient) and securebits, when the image holds
//!   any capability or securebits, and a bounding set limited to what it
//!   holds (so that no exec gives it more than was granted); otherwise none
//!   at all (and the engine locks `SECBIT_NOROOT` on a process with uid 0).
//!   Nothing is granted from an image whose user namespace is not the
//!   initial one (`ckpt_policy::decide` denies it).
//! * `privileged-files` granted: files are reopened with the saved (mapped)
//!   credentials; otherwise with the caller's.
//! * `same-pid`, `exe-link`: as granted.
//! * `caller_caps`: what the caller can already hold (for a root caller,
//!   the permitted set exec gave this helper; otherwise nothing). Whether
//!   the restore is privileged (exceeds the caller) is derived from the
//!   options by `RestoreOptions::privileged`, never decided here.

use ckpt_core::restore::{RestoreCapabilities, RestoreCredentials, RestoreOptions};
use ckpt_policy::{cap_mask_summary, Decision, Facts, Mapping, Privilege, Verdict};
use ckpt_privsep::Caller;

/// What the restore will do, and what to tell the user.
pub(crate) struct Plan {
    pub opts: RestoreOptions,
    /// Notices known before the restore.
    pub notices: Vec<String>,
    /// The saved credentials after mapping, when every id maps.
    pub saved: Option<RestoreCredentials>,
}

/// The caller's own credentials.
pub(crate) fn caller_creds(caller: &Caller) -> RestoreCredentials {
    RestoreCredentials {
        uid: [caller.uid; 4],
        gid: [caller.gid; 4],
        groups: caller.groups.clone(),
    }
}

fn normalized(mut c: RestoreCredentials) -> RestoreCredentials {
    c.groups.sort_unstable();
    c.groups.dedup();
    c
}

/// Why `p` is not granted (empty if it is).
pub(crate) fn reason(d: &Decision, p: Privilege) -> String {
    match d.verdict(p) {
        Verdict::Denied { reason, .. } => reason.clone(),
        Verdict::Granted { .. } => String::new(),
    }
}

fn rule(d: &Decision, p: Privilege) -> String {
    match d.verdict(p) {
        Verdict::Granted { rule, .. } => rule.clone(),
        Verdict::Denied { .. } => String::new(),
    }
}

/// `uid 1001/0/0/0 gid 1001/1001/1001/1001 groups [1001, 27]`.
pub(crate) fn show_creds(c: &RestoreCredentials) -> String {
    let j = |v: &[u32], sep: &str| v.iter().map(u32::to_string).collect::<Vec<_>>().join(sep);
    format!(
        "uid {} gid {} groups [{}]",
        j(&c.uid, "/"),
        j(&c.gid, "/"),
        j(&c.groups, ", ")
    )
}

/// Build the plan.
pub(crate) fn plan(d: &Decision, f: &Facts, caller: &Caller) -> Plan {
    let mine = normalized(caller_creds(caller));
    let saved = d
        .local_target()
        .map(|(uid, gid, groups)| normalized(RestoreCredentials { uid, gid, groups }));
    let granted = |p| d.granted(p);
    let caller_caps = caller_caps(caller);
    let mut notices = Vec::new();

    let creds = match (&saved, granted(Privilege::Credentials)) {
        (Some(s), true) => {
            let mut n = format!(
                "restoring with the image's credentials ({}), granted by rule {:?}",
                show_creds(s),
                rule(d, Privilege::Credentials)
            );
            if let Mapping::Key { key, .. } = &d.mapping {
                if *s != normalized(image_creds(f)) {
                    n.push_str(&format!(" (ids mapped by key {key:?})"));
                }
            }
            notices.push(n);
            s.clone()
        }
        _ => {
            notices.push(format!(
                "restoring with your own credentials (uid {}): {}",
                caller.uid,
                reason(d, Privilege::Credentials)
            ));
            match own_groups_kept(saved.as_ref(), &mine, caller_caps) {
                Some(groups) => {
                    notices.push(format!(
                        "keeping the image's supplementary groups [{}]: its ids are yours \
                         and you may set any groups",
                        groups
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    RestoreCredentials {
                        groups,
                        ..mine.clone()
                    }
                }
                None => mine.clone(),
            }
        }
    };

    let t = &f.target;
    let holds_caps = t.caps_held() != 0 || t.securebits != 0;
    let caps = if granted(Privilege::Capabilities) && holds_caps {
        notices.push(format!(
            "restoring the image's capabilities ({}), granted by rule {:?}",
            cap_mask_summary(t.cap_permitted | t.cap_effective | t.cap_ambient),
            rule(d, Privilege::Capabilities)
        ));
        Some(saved_caps(t))
    } else if holds_caps
        && own_caps_kept(saved.as_ref(), &creds, &mine, t.caps_held(), caller_caps)
        && !(t.cap_permitted == caller_caps
            && t.cap_effective == caller_caps
            && t.cap_inheritable == 0
            && t.cap_ambient == 0
            && t.securebits == 0)
    {
        // (Exactly what exec gives the caller is what a plain restore
        // gives anyway: then no sets are applied, and no build as root.)
        notices.push(format!(
            "keeping the image's capabilities ({}): its ids are yours and you hold every one of them",
            cap_mask_summary(t.cap_permitted | t.cap_effective | t.cap_ambient)
        ));
        Some(saved_caps(t))
    } else {
        if t.cap_permitted | t.cap_effective | t.cap_ambient != 0 {
            notices.push(format!(
                "the image's capabilities are not restored: {}",
                reason(d, Privilege::Capabilities)
            ));
        }
        None
    };

    let file_creds = match (&saved, granted(Privilege::PrivilegedFiles)) {
        (Some(s), true) => s.clone(),
        _ => mine.clone(),
    };
    Plan {
        opts: RestoreOptions {
            caller: mine.clone(),
            creds,
            caps,
            file_creds,
            same_pid: granted(Privilege::SamePid),
            pid_namespace: false,
            exe_link: granted(Privilege::ExeLink),
            caller_caps,
            inherit_fds: Vec::new(),
            digest_cache: Some(ckpt_core::paths::STATEDIR.into()),
        },
        notices,
        saved,
    }
}

/// `CAP_SYS_ADMIN`, `CAP_CHECKPOINT_RESTORE`: either lets a process choose
/// the pid of the next process it creates (`ns_last_pid`).
const CAP_SYS_ADMIN: u64 = 1 << 21;
const CAP_CHECKPOINT_RESTORE: u64 = 1 << 40;

/// Without the `same-pid` grant, a caller who can already choose pids
/// (root: `CAP_SYS_ADMIN` or `CAP_CHECKPOINT_RESTORE` among what exec gives
/// it) keeps the image's pids and tids when every one of them is free now,
/// as it could by writing `ns_last_pid` itself; the restore then fails,
/// naming the pid, only if one is taken in between. When one is in use,
/// every process gets a new pid, and the notice names the pid. Nobody else
/// gets a pid they did not have: the grant is what lets them.
pub(crate) fn keep_own_pids(p: &mut Plan, m: &ckpt_core::image::Manifest) {
    if p.opts.same_pid || p.opts.caller_caps & (CAP_SYS_ADMIN | CAP_CHECKPOINT_RESTORE) == 0 {
        return;
    }
    let ids = m
        .tasks
        .iter()
        .flat_map(|t| std::iter::once(t.pid).chain(t.threads.iter().map(|th| th.tid)))
        .chain(m.zombies.iter().map(|z| z.pid));
    let mut busy = None;
    for id in ids {
        if id <= 0 || std::fs::symlink_metadata(format!("/proc/{id}")).is_ok() {
            busy = Some(id);
            break;
        }
    }
    match busy {
        None => {
            p.opts.same_pid = true;
            p.notices.push(
                "keeping the image's pids: they are free, and you may choose pids (root)"
                    .to_string(),
            );
        }
        Some(id) => p.notices.push(format!(
            "pid {id} is in use: every process gets a new pid (you may choose pids, but not one that is taken)"
        )),
    }
}

/// The capabilities the caller can already hold. A caller whose real uid
/// is 0 gets, from any exec, the permitted set this setuid-root helper got
/// at its own exec (its bounding set; nothing under `SECBIT_NOROOT`); that
/// set is read back from `/proc/self/status`. Anyone else: none (what a
/// non-root caller may gain from file capabilities or set-id programs is
/// not theirs to hand to another process).
///
/// The set is read with `capget` on this process's main thread (the
/// `caps` crate; the thread `/proc/self/status` describes), so no thread
/// that changed its own sets can change the answer. Bits the crate does not
/// name are not in it: a kernel capability without a name is never counted
/// as one the caller holds (the policy's test `names_cover_the_running_kernel`
/// checks the crate names every capability of the running kernel).
pub(crate) fn caller_caps(caller: &Caller) -> u64 {
    if !caller.is_root() || !caller.privileged {
        return 0;
    }
    let main = i32::try_from(std::process::id()).ok();
    caps::read(main, caps::CapSet::Permitted)
        .map_or(0, |set| set.iter().fold(0, |m, c| m | c.bitmask()))
}

/// The image's capability sets as restore applies them: the bounding set
/// limited to the capabilities it holds, so that no exec gives more.
fn saved_caps(t: &ckpt_policy::ImageCreds) -> RestoreCapabilities {
    RestoreCapabilities {
        inheritable: t.cap_inheritable,
        permitted: t.cap_permitted,
        effective: t.cap_effective,
        bounding: t.cap_bounding & t.caps_held(),
        ambient: t.cap_ambient,
        securebits: t.securebits,
    }
}

/// `CAP_SETGID`: setting any list of supplementary groups.
const CAP_SETGID: u64 = 1 << caps::Capability::CAP_SETGID as u64;

/// In a restore with the caller's own credentials, the image's
/// supplementary groups are kept when nothing else differs and the caller
/// could set any groups itself (`CAP_SETGID` among what it can already
/// hold, i.e. root): the saved (mapped) uids and gids are exactly the
/// caller's and only the groups differ. Root restoring its own process
/// then gets the groups the process had, which root could give any process
/// it starts; no one else gets a group they do not hold.
fn own_groups_kept(
    saved: Option<&RestoreCredentials>,
    mine: &RestoreCredentials,
    caller_caps: u64,
) -> Option<Vec<u32>> {
    let s = saved?;
    (caller_caps & CAP_SETGID != 0
        && s.uid == mine.uid
        && s.gid == mine.gid
        && s.groups != mine.groups)
        .then(|| s.groups.clone())
}

/// Without the `capabilities` grant, the image's capability sets are
/// kept when the restore gives the caller's own ids, those are the saved
/// ids (after mapping), and the caller can already hold every capability
/// the image holds (root): root restoring its own process gives it what it
/// had, never more than root holds; no one else gets any.
fn own_caps_kept(
    saved: Option<&RestoreCredentials>,
    creds: &RestoreCredentials,
    mine: &RestoreCredentials,
    held: u64,
    caller_caps: u64,
) -> bool {
    let Some(s) = saved else {
        return false;
    };
    creds.uid == mine.uid
        && creds.gid == mine.gid
        && s.uid == mine.uid
        && s.gid == mine.gid
        && caller_caps != 0
        && held & !caller_caps == 0
}

/// The image's credentials as they are recorded (not mapped).
fn image_creds(f: &Facts) -> RestoreCredentials {
    RestoreCredentials {
        uid: f.target.uid,
        gid: f.target.gid,
        groups: f.target.groups.clone(),
    }
}

/// True when the saved credentials (mapped) are exactly the caller's, so
/// restoring with the caller's loses nothing.
pub(crate) fn saved_is_mine(p: &Plan, caller: &Caller) -> bool {
    p.saved.as_ref() == Some(&normalized(caller_creds(caller)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use ckpt_policy::{
        decide, Attestation, Exe, Ids, ImageCreds, Integrity, Names, OneShot, Signer, Trust,
    };

    fn caller(uid: u32) -> Caller {
        Caller {
            uid,
            gid: uid,
            groups: vec![uid],
            privileged: true,
        }
    }

    fn facts(target_uid: [u32; 4], caps: u64) -> Facts {
        let key = ckpt_keys::SigningKey::generate().unwrap().public_key();
        Facts {
            integrity: Integrity::Ok,
            signer: Signer::Signed {
                key,
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
                groups: vec![1001],
            },
            requester: Ids {
                uid: 0,
                gid: 0,
                groups: vec![0],
            },
            target: ImageCreds {
                uid: target_uid,
                gid: [1001; 4],
                groups: vec![1001],
                cap_inheritable: 0,
                cap_permitted: caps,
                cap_effective: caps,
                cap_bounding: u64::MAX >> 23,
                cap_ambient: 0,
                securebits: 0,
                user_ns: ckpt_policy::UserNs::Initial,
            },
            exe: Exe {
                path: "/bin/x".into(),
                digest_algorithm: "sha256".into(),
                digest: vec![0; 32],
            },
            machine_id: "0".repeat(32),
            hostname: "h".into(),
            created_unix: 1,
            now: 2,
            image_id: "0".repeat(32),
            one_shot: OneShot::NotRestored,
            names: Names::default(),
        }
    }

    fn policy(grant: &str) -> ckpt_policy::Policy {
        ckpt_policy::parse_str(
            &format!("[[rule]]\nname = \"r\"\nsigned_by = [\"this-host\"]\ngrant = [{grant}]\n"),
            std::path::Path::new("p.toml"),
        )
        .unwrap()
    }

    #[test]
    fn no_grant_is_the_caller() {
        let f = facts([1001, 0, 0, 0], 0x1ff);
        let d = decide(&ckpt_policy::Policy::empty(), &f);
        let p = plan(&d, &f, &caller(1001));
        let mine = caller_creds(&caller(1001));
        assert_eq!(p.opts.creds, mine);
        assert_eq!(p.opts.file_creds, mine);
        assert!(p.opts.caps.is_none());
        assert!(!p.opts.privileged() && !p.opts.same_pid && !p.opts.exe_link);
        assert!(
            p.notices[0]
                == "restoring with your own credentials (uid 1001): no rule grants credentials",
            "{:?}",
            p.notices
        );
        assert!(p.notices[1].contains("capabilities are not restored"));
        assert!(!saved_is_mine(&p, &caller(1001)));
    }

    #[test]
    fn own_groups_are_kept_only_for_a_caller_that_may_set_any() {
        let root = caller_creds(&caller(0));
        let saved = RestoreCredentials {
            groups: vec![0, 4242, 4243],
            ..root.clone()
        };
        let setgid = CAP_SETGID;
        assert_eq!(
            own_groups_kept(Some(&saved), &root, setgid),
            Some(vec![0, 4242, 4243])
        );
        // Without CAP_SETGID, or other ids, or no saved ids: the caller's.
        assert_eq!(own_groups_kept(Some(&saved), &root, 0), None);
        let other = RestoreCredentials {
            uid: [1001; 4],
            ..saved.clone()
        };
        assert_eq!(own_groups_kept(Some(&other), &root, setgid), None);
        assert_eq!(own_groups_kept(None, &root, setgid), None);
        // The same groups: nothing to keep.
        assert_eq!(own_groups_kept(Some(&root), &root, setgid), None);
        // A user (who holds nothing) never gets the image's groups.
        let user = caller_creds(&caller(1001));
        let more = RestoreCredentials {
            groups: vec![1001, 27],
            ..user.clone()
        };
        assert_eq!(own_groups_kept(Some(&more), &user, 0), None);
    }

    #[test]
    fn own_caps_are_kept_only_for_a_caller_that_holds_them() {
        let root = caller_creds(&caller(0));
        let all = u64::MAX >> 23;
        // Root, its own ids, fewer capabilities than it holds: kept.
        assert!(own_caps_kept(Some(&root), &root, &root, 0x1ff, all));
        // A capability the caller cannot hold, other ids, or a user: not.
        assert!(!own_caps_kept(Some(&root), &root, &root, 0x1ff, 0xff));
        let other = RestoreCredentials {
            uid: [1001; 4],
            ..root.clone()
        };
        assert!(!own_caps_kept(Some(&other), &root, &root, 0x1ff, all));
        assert!(!own_caps_kept(None, &root, &root, 0x1ff, all));
        let user = caller_creds(&caller(1001));
        assert!(!own_caps_kept(Some(&user), &user, &user, 0x1, 0));
    }

    #[test]
    fn passwd_case_credentials_only() {
        let f = facts([1001, 0, 0, 0], 0x1ff);
        let d = decide(&policy("\"credentials\", \"exe-link\""), &f);
        let p = plan(&d, &f, &caller(1001));
        assert_eq!(p.opts.creds.uid, [1001, 0, 0, 0]);
        assert_eq!(p.opts.creds.gid, [1001; 4]);
        assert!(p.opts.caps.is_none());
        assert_eq!(p.opts.file_creds, caller_creds(&caller(1001)));
        assert!(p.opts.privileged() && p.opts.exe_link && !p.opts.same_pid);
    }

    #[test]
    fn all_grants() {
        let f = facts([1001, 0, 0, 0], 0x1ff);
        let d = decide(
            &policy("\"credentials\", \"capabilities\", \"same-pid\", \"exe-link\", \"privileged-files\""),
            &f,
        );
        let p = plan(&d, &f, &caller(1001));
        let caps = p.opts.caps.clone().unwrap();
        assert_eq!(caps.permitted, 0x1ff);
        assert_eq!(
            caps.bounding, 0x1ff,
            "the saved bounding set, limited to the grant"
        );
        assert_eq!(p.opts.file_creds.uid, [1001, 0, 0, 0]);
        assert!(p.opts.privileged() && p.opts.same_pid);
    }

    #[test]
    fn same_creds_and_no_caps_is_not_privileged() {
        let f = facts([1001; 4], 0);
        let d = decide(
            &policy("\"credentials\", \"capabilities\", \"privileged-files\""),
            &f,
        );
        let p = plan(&d, &f, &caller(1001));
        assert!(!p.opts.privileged());
        assert!(p.opts.caps.is_none());
        assert!(saved_is_mine(&p, &caller(1001)));
    }

    #[test]
    fn bounding_set_is_limited_to_the_granted_capabilities() {
        let mut f = facts([1001, 0, 0, 0], 1 << 10);
        f.target.cap_bounding = u64::MAX >> 23;
        let d = decide(&policy("\"credentials\", \"capabilities\""), &f);
        let p = plan(&d, &f, &caller(1001));
        let caps = p.opts.caps.clone().unwrap();
        assert_eq!(caps.permitted, 1 << 10);
        assert_eq!(
            caps.bounding,
            1 << 10,
            "exec can give no more than was granted"
        );
    }

    #[test]
    fn privileged_is_what_exceeds_the_caller() {
        // Root, holding every capability, restoring someone else's ids and
        // groups: nothing it could not do itself.
        let f = facts([1001; 4], 1 << 10);
        let d = decide(
            &policy("\"credentials\", \"capabilities\", \"same-pid\", \"privileged-files\""),
            &f,
        );
        let mut p = plan(&d, &f, &caller(0));
        p.opts.caller_caps = u64::MAX >> 23;
        assert_ne!(p.opts.creds, p.opts.caller);
        assert!(!p.opts.privileged(), "root already has all of it");
        assert!(
            !p.opts.is_plain(),
            "still built as root, to set the ids and sets"
        );
        // Root without CAP_SETUID/CAP_SETGID (or anyone else): privileged.
        p.opts.caller_caps = 1 << 10;
        assert!(p.opts.privileged());
        // A capability root does not hold is privileged too.
        p.opts.caller_caps = (u64::MAX >> 23) & !(1 << 10);
        assert!(p.opts.privileged());
    }

    #[test]
    fn capabilities_alone_are_privileged() {
        let f = facts([1001; 4], 1 << 10);
        let d = decide(&policy("\"capabilities\""), &f);
        let p = plan(&d, &f, &caller(1001));
        assert_eq!(p.opts.creds, caller_creds(&caller(1001)));
        assert!(p.opts.privileged());
        assert!(
            p.notices[1].contains("cap_net_bind_service"),
            "{:?}",
            p.notices
        );
    }
}
