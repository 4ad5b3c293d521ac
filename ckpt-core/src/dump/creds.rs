//! Credentials: the target's ids, groups and capability sets from
//! `/proc/PID/status`, its securebits (asked of the task), and the user
//! and pid namespaces those are relative to (a target outside the dumping
//! process's own is refused, as is one in another mount, network, IPC,
//! UTS, cgroup or time namespace).
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
        let mut differ = Vec::new();
        for (kind, theirs, ours) in [
            ("user", target.user, own.user),
            ("pid", target.pid, own.pid),
        ] {
            if theirs != ours {
                differ.push((kind, theirs, ours));
            }
        }
        // The others are not recorded: they must simply be the dump's own.
        for kind in OTHER_NAMESPACES {
            let theirs = ns_id(&format!("/proc/{pid}"), kind, pid)?;
            let ours = ns_id("/proc/self", kind, pid)?;
            if theirs != ours {
                differ.push((kind, theirs, ours));
            }
        }
        if !differ.is_empty() {
            let each: Vec<String> = differ
                .iter()
                .map(|(kind, theirs, ours)| {
                    format!("{kind} namespace {kind}:{theirs}, the dump runs in {kind}:{ours}")
                })
                .collect();
            let kinds: Vec<String> = differ
                .iter()
                .map(|(kind, ..)| format!("another {kind} namespace"))
                .collect();
            return Err(DumpError::Unsupported {
                pid,
                resource: format!(
                    "a process in {} ({}; namespaces are not supported)",
                    kinds.join(" and "),
                    each.join("; ")
                ),
            });
        }
        Ok(target)
    }
}

/// The namespaces besides user and pid that a target must share with the
/// dump (a process in its own mount, network, IPC, UTS, cgroup or time
/// namespace sees a world the restore would not give it back).
const OTHER_NAMESPACES: [&str; 6] = ["mnt", "net", "ipc", "uts", "cgroup", "time"];

/// The identity of namespace `kind` of `proc_dir`; errors name `pid`.
fn ns_id(proc_dir: &str, kind: &str, pid: i32) -> Result<NsId, DumpError> {
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
}

/// The user and pid namespaces of `proc_dir` (`/proc/PID` or
/// `/proc/self`); errors name `pid`, the target.
fn read_namespaces(proc_dir: &str, pid: i32) -> Result<Namespaces, DumpError> {
    Ok(Namespaces {
        user: ns_id(proc_dir, "user", pid)?,
        pid: ns_id(proc_dir, "pid", pid)?,
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
