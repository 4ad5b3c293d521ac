//! Credentials: the file credentials a root-built stub opens files with,
//! and the drop to the decided final credentials, groups, securebits and
//! capabilities, done last; `no_new_privs`, which only ever takes
//! privilege away and is always restored.
//!
//! Owns: the order of the credential changes (see
//! [`Builder::drop_to_final_creds`]). Trusts: the decided
//! [`RestoreOptions`](super::RestoreOptions), never the image's own
//! credentials (except `no_new_privs`).

use super::{Builder, RestoreError};
use crate::inject::structs::CapSet;

/// Securebits (`linux/securebits.h`).
const SECBIT_NOROOT: u64 = 1 << 0;
const SECBIT_NOROOT_LOCKED: u64 = 1 << 1;
const SECBIT_KEEP_CAPS: u64 = 1 << 4;

impl Builder<'_> {
    /// Root-built stub: use `file_creds` as filesystem ids and groups.
    pub(super) fn set_fs_creds(&mut self) -> Result<(), RestoreError> {
        let fc = self.opts.file_creds.clone();
        self.set_groups(&fc.groups)?;
        self.sys(
            "setfsgid",
            libc::SYS_setfsgid,
            [u64::from(fc.gid[3]), 0, 0, 0, 0, 0],
        )?;
        self.sys(
            "setfsuid",
            libc::SYS_setfsuid,
            [u64::from(fc.uid[3]), 0, 0, 0, 0, 0],
        )?;
        Ok(())
    }

    fn set_groups(&mut self, groups: &[u32]) -> Result<(), RestoreError> {
        if groups.len() > 65_536 {
            return Err(RestoreError::Invalid("too many groups".into()));
        }
        let bytes: Vec<u8> = groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
        if bytes.len() > 2048 {
            // Larger than the scratch page leaves room for: map a page.
            return Err(RestoreError::Unsupported(format!(
                "{} supplementary groups",
                groups.len()
            )));
        }
        let list = self.inj.put_bytes(&bytes, "writing groups")?;
        self.sys(
            "setgroups",
            libc::SYS_setgroups,
            [groups.len() as u64, list, 0, 0, 0, 0],
        )?;
        Ok(())
    }

    /// Root-built stub: become exactly the decided credentials and
    /// capabilities. Order matters: the bounding set and securebits need
    /// CAP_SETPCAP (root still has it); keep-caps carries the permitted set
    /// across the uid change; capset then trims it to the saved sets; the
    /// ambient set is raised last (it needs permitted and inheritable).
    ///
    /// Without capability sets (no `capabilities` grant) the process holds
    /// none, and one with uid 0 as its real, effective or saved uid also
    /// gets `SECBIT_NOROOT | SECBIT_NOROOT_LOCKED`: exec does not give it
    /// every capability back for being uid 0 (set-user-id-root programs
    /// included); only file capabilities still apply, as for any user.
    pub(super) fn drop_to_final_creds(&mut self) -> Result<(), RestoreError> {
        // Every bit up to 63, not only the capabilities the `caps` crate
        // names: a capability of a newer kernel is dropped from the
        // bounding set too (EINVAL past the kernel's last one is ignored).
        const CAP_LAST: u64 = 63;
        let c = self.opts.creds.clone();
        let caps = self.opts.caps.clone();
        if let Some(k) = &caps {
            for cap in 0..=CAP_LAST {
                if k.bounding & (1 << cap) == 0 {
                    // EINVAL for numbers past the kernel's last capability.
                    let _ = self.inj.syscall_raw(
                        libc::SYS_prctl,
                        [libc::PR_CAPBSET_DROP as u64, cap, 0, 0, 0, 0],
                    );
                }
            }
            self.sys(
                "prctl(PR_SET_SECUREBITS)",
                libc::SYS_prctl,
                [
                    libc::PR_SET_SECUREBITS as u64,
                    u64::from(k.securebits) | SECBIT_KEEP_CAPS,
                    0,
                    0,
                    0,
                    0,
                ],
            )?;
        } else if c.uid[..3].contains(&0) {
            self.sys(
                "prctl(PR_SET_SECUREBITS)",
                libc::SYS_prctl,
                [
                    libc::PR_SET_SECUREBITS as u64,
                    SECBIT_NOROOT | SECBIT_NOROOT_LOCKED,
                    0,
                    0,
                    0,
                    0,
                ],
            )?;
        }
        self.set_groups(&c.groups)?;
        self.sys(
            "setresgid",
            libc::SYS_setresgid,
            [
                u64::from(c.gid[0]),
                u64::from(c.gid[1]),
                u64::from(c.gid[2]),
                0,
                0,
                0,
            ],
        )?;
        self.sys(
            "setfsgid",
            libc::SYS_setfsgid,
            [u64::from(c.gid[3]), 0, 0, 0, 0, 0],
        )?;
        self.sys(
            "setresuid",
            libc::SYS_setresuid,
            [
                u64::from(c.uid[0]),
                u64::from(c.uid[1]),
                u64::from(c.uid[2]),
                0,
                0,
                0,
            ],
        )?;
        self.sys(
            "setfsuid",
            libc::SYS_setfsuid,
            [u64::from(c.uid[3]), 0, 0, 0, 0, 0],
        )?;
        let (eff, prm, inh) = caps
            .as_ref()
            .map_or((0, 0, 0), |k| (k.effective, k.permitted, k.inheritable));
        let set = self.inj.put_struct(&CapSet {
            effective: eff,
            permitted: prm,
            inheritable: inh,
        })?;
        self.sys(
            "capset",
            libc::SYS_capset,
            [set, set + CapSet::DATA_OFFSET, 0, 0, 0, 0],
        )?;
        if let Some(k) = &caps {
            for cap in 0..=CAP_LAST {
                if k.ambient & (1 << cap) != 0 {
                    self.sys(
                        "prctl(PR_CAP_AMBIENT_RAISE)",
                        libc::SYS_prctl,
                        [
                            libc::PR_CAP_AMBIENT as u64,
                            libc::PR_CAP_AMBIENT_RAISE as u64,
                            cap,
                            0,
                            0,
                            0,
                        ],
                    )?;
                }
            }
            if u64::from(k.securebits) & SECBIT_KEEP_CAPS == 0 {
                self.sys(
                    "prctl(PR_SET_KEEPCAPS)",
                    libc::SYS_prctl,
                    [libc::PR_SET_KEEPCAPS as u64, 0, 0, 0, 0, 0],
                )?;
            }
        }
        // A process whose ids all agree and that holds no capability is
        // dumpable, as the kernel would make it after exec.
        let uniform = c.uid.iter().all(|&u| u == c.uid[0]) && c.gid.iter().all(|&g| g == c.gid[0]);
        if uniform && prm == 0 {
            self.sys(
                "prctl(PR_SET_DUMPABLE)",
                libc::SYS_prctl,
                [libc::PR_SET_DUMPABLE as u64, 1, 0, 0, 0, 0],
            )?;
        }
        Ok(())
    }

    /// `no_new_privs` only ever takes privilege away: always restored.
    pub(super) fn restore_no_new_privs(&mut self) -> Result<(), RestoreError> {
        if self.p.creds.no_new_privs {
            self.sys(
                "prctl(PR_SET_NO_NEW_PRIVS)",
                libc::SYS_prctl,
                [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0],
            )?;
        }
        Ok(())
    }
}
