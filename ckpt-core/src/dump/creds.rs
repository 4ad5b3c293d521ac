//! Credentials: the target's ids, groups and capability sets from
//! `/proc/PID/status`, its securebits (asked of the task), and the user
//! and pid namespaces those are relative to (a target outside the dumping
//! process's own is refused).
//!
//! Trusts: nothing read from `/proc` to be well formed (the parsers check).

use std::os::unix::fs::MetadataExt;

use super::{DumpError, Frozen};
use crate::inject::{InjectError, Injector};
use crate::model::{Credentials, Namespaces, NsId};
use crate::procfs;

impl Frozen {
    /// The target's user and pid namespaces, refused unless they are the
    /// dumping process's own: capability sets read from `/proc` are
    /// relative to the target's user namespace (a user who created one is
    /// "root" with every capability in it), and pids to its pid namespace.
    /// Namespaces are not supported, so a target in another one is
    /// [`DumpError::Unsupported`], naming the namespace.
    pub fn namespaces(&self) -> Result<Namespaces, DumpError> {
        let pid = self.pid;
        let target = read_namespaces(&format!("/proc/{pid}"), pid)?;
        let own = read_namespaces("/proc/self", pid)?;
        for (kind, theirs, ours) in [
            ("user", target.user, own.user),
            ("pid", target.pid, own.pid),
        ] {
            if theirs != ours {
                return Err(DumpError::Unsupported {
                    pid,
                    resource: format!(
                        "a process in another {kind} namespace ({kind}:{theirs}; \
                         the dump runs in {kind}:{ours}; namespaces are not supported)"
                    ),
                });
            }
        }
        Ok(target)
    }
}

/// The user and pid namespaces of `proc_dir` (`/proc/PID` or
/// `/proc/self`); errors name `pid`, the target.
fn read_namespaces(proc_dir: &str, pid: i32) -> Result<Namespaces, DumpError> {
    let id = |kind: &str| {
        let path = format!("{proc_dir}/ns/{kind}");
        std::fs::metadata(&path)
            .map(|m| NsId {
                dev: m.dev(),
                ino: m.ino(),
            })
            .map_err(|source| DumpError::Proc {
                pid,
                what: path,
                source,
            })
    };
    Ok(Namespaces {
        user: id("user")?,
        pid: id("pid")?,
    })
}

pub(super) fn creds_from_status(s: &procfs::status::Status, securebits: u32) -> Credentials {
    Credentials {
        uid: s.uid,
        gid: s.gid,
        groups: s.groups.clone(),
        cap_inheritable: s.cap_inh,
        cap_permitted: s.cap_prm,
        cap_effective: s.cap_eff,
        cap_bounding: s.cap_bnd,
        cap_ambient: s.cap_amb,
        securebits,
        no_new_privs: s.no_new_privs,
        seccomp_mode: s.seccomp,
    }
}

/// `PR_GET_SECUREBITS`, asked of the task.
pub(super) fn query_securebits(inj: &mut Injector<'_>) -> Result<u32, InjectError> {
    Ok(inj.syscall(
        "prctl(PR_GET_SECUREBITS)",
        libc::SYS_prctl,
        [libc::PR_GET_SECUREBITS as u64, 0, 0, 0, 0, 0],
    )? as u32)
}
