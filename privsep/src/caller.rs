//! Who ran the helper: the real ids the kernel gave us at exec time.

use std::fmt;

/// The real user who ran the helper, captured by [`crate::startup::harden`]
/// before anything else happens.
///
/// For a setuid-root helper the real uid/gid and the supplementary groups
/// are the caller's own (exec of a setuid file changes only the effective
/// and saved ids); `privileged` says whether the effective uid is 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Supplementary groups, sorted and without duplicates.
    pub groups: Vec<u32>,
    /// True when the helper runs with effective uid 0 (setuid root, or run
    /// by root). False when installed without the setuid bit.
    pub privileged: bool,
}

impl Caller {
    /// Capture the current process's real ids, groups and privilege.
    pub fn current() -> Result<Caller, nix::errno::Errno> {
        let uids = nix::unistd::getresuid()?;
        let gids = nix::unistd::getresgid()?;
        let mut groups: Vec<u32> = nix::unistd::getgroups()?
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        groups.sort_unstable();
        groups.dedup();
        Ok(Caller {
            uid: uids.real.as_raw(),
            gid: gids.real.as_raw(),
            groups,
            privileged: uids.effective.is_root(),
        })
    }

    /// True when the real caller is root.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid {} gid {}", self.uid, self.gid)
    }
}
