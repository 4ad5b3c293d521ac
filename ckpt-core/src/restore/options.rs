//! What a restore may give: the decided credentials, capabilities, pid and
//! exe link ([`RestoreOptions`]), and the two questions derived from them,
//! never passed in: is the result more than the caller already has
//! ([`RestoreOptions::privileged`]), and is it exactly the caller starting
//! the program ([`RestoreOptions::is_plain`]).
//!
//! Owns: those derivations. Trusts: the caller of the engine (the policy
//! decision) for the values themselves.

/// Credentials the restored process gets (decided by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreCredentials {
    /// real, effective, saved, filesystem
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub groups: Vec<u32>,
}

/// Capability state to give the restored process (the `capabilities` grant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreCapabilities {
    pub inheritable: u64,
    pub permitted: u64,
    pub effective: u64,
    pub bounding: u64,
    pub ambient: u64,
    pub securebits: u32,
}

/// How to restore: what the policy decided. [`RestoreOptions::caller`]
/// gives the unprivileged default.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Who asked for the restore (real ids of the caller).
    pub caller: RestoreCredentials,
    /// Final credentials of the restored process.
    pub creds: RestoreCredentials,
    /// Capability sets; `None` means none at all.
    pub caps: Option<RestoreCapabilities>,
    /// Credentials used to reopen files (the caller's unless the policy
    /// granted `privileged-files`).
    pub file_creds: RestoreCredentials,
    /// Recreate the original pid with `clone3(set_tid)` (`same-pid`).
    pub same_pid: bool,
    /// Restore into a new pid namespace (with a user and a mount namespace
    /// of the caller's), where every process gets its saved pid: needs
    /// the caller's own credentials ([`RestoreOptions::is_plain`]).
    pub pid_namespace: bool,
    /// Point `/proc/PID/exe` at the saved executable even when the caller
    /// could not exec it unchanged (`exe-link`).
    pub exe_link: bool,
    /// The capabilities the caller can already hold: for a caller whose
    /// real uid is 0, what exec gives it (the permitted set the setuid
    /// helper got at exec: its bounding set, none under `SECBIT_NOROOT`);
    /// 0 for anyone else. [`RestoreOptions::privileged`] compares against it.
    pub caller_caps: u64,
    /// The caller's own fds above 2 (`--inherit-fd N`) that take the place
    /// of the image's fds of the same numbers that were connected outside
    /// it; the engine's caller checks each was open before the helper
    /// opened anything. An external fd not listed becomes `/dev/null`.
    pub inherit_fds: Vec<i32>,
    /// The root-owned state directory whose file digest cache
    /// ([`crate::filedigests`]) spares hashing root's unchanged mapped
    /// files (libc, the loader) on every restore; `None`: every mapped
    /// file is hashed.
    pub digest_cache: Option<std::path::PathBuf>,
}

/// `CAP_SETGID`, `CAP_SETUID`: with both, any ids are the caller's to take.
const CAP_SETGID: u64 = 1 << caps::Capability::CAP_SETGID as u64;
const CAP_SETUID: u64 = 1 << caps::Capability::CAP_SETUID as u64;

impl RestoreOptions {
    /// Restore exactly as if `caller` had started the program.
    pub fn caller(caller: RestoreCredentials) -> RestoreOptions {
        RestoreOptions {
            file_creds: caller.clone(),
            creds: caller.clone(),
            caller,
            caps: None,
            same_pid: false,
            pid_namespace: false,
            exe_link: false,
            caller_caps: 0,
            inherit_fds: Vec::new(),
            digest_cache: None,
        }
    }

    /// Every process gets its saved pid: by the `same-pid` grant in this
    /// pid namespace, or in a new one.
    pub fn keeps_pids(&self) -> bool {
        self.same_pid || self.pid_namespace
    }

    /// The result exceeds what the caller already has: ids (final or for
    /// reopening files) that are not the caller's, unless the caller holds
    /// `CAP_SETUID` and `CAP_SETGID` (root); or a capability the caller
    /// cannot hold. Such a restore is built as an untouchable root task,
    /// every mapped file must match its signed digest and must not be
    /// writable by the caller, nothing is opened through a symlink, and the
    /// stub drops to `creds` last. Derived from the options, never set.
    pub fn privileged(&self) -> bool {
        let ids_free = self.caller_caps & (CAP_SETUID | CAP_SETGID) == CAP_SETUID | CAP_SETGID;
        let foreign = |c: &RestoreCredentials| !same_creds(c, &self.caller);
        let ids = !ids_free && (foreign(&self.creds) || foreign(&self.file_creds));
        let caps = self.caps.as_ref().is_some_and(|k| {
            (k.permitted | k.effective | k.inheritable | k.ambient) & !self.caller_caps != 0
        });
        ids || caps
    }

    /// The restore is exactly the caller starting the program: the caller's
    /// ids for everything, no capability sets to set, no exe link. Only
    /// then is the stub created with the final credentials from the start
    /// (and for a root caller gets what exec gives root); anything else is
    /// built as root and dropped to exactly `creds` and `caps` last.
    pub fn is_plain(&self) -> bool {
        same_creds(&self.creds, &self.caller)
            && same_creds(&self.file_creds, &self.caller)
            && self.caps.is_none()
            && !self.exe_link
    }
}

/// Equal ids, and the same set of supplementary groups.
fn same_creds(a: &RestoreCredentials, b: &RestoreCredentials) -> bool {
    let set = |g: &[u32]| {
        g.iter()
            .copied()
            .collect::<std::collections::BTreeSet<u32>>()
    };
    a.uid == b.uid && a.gid == b.gid && set(&a.groups) == set(&b.groups)
}
