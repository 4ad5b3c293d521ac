//! Credentials and the namespaces they are relative to.
//!
//! Trusts nothing: what an image claims about credentials is only acted on
//! through the policy's decision, never directly.

use serde::{Deserialize, Serialize};

/// Full credentials, as in `/proc/PID/status` plus securebits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
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
    pub no_new_privs: bool,
    /// 0 disabled, 1 strict, 2 filter.
    pub seccomp_mode: u32,
}

/// The namespaces a process ran in, as the dumping host saw them.
///
/// The capability sets in `/proc/PID/status` are relative to the process's
/// own user namespace: a process that is "root" in a user namespace it
/// created holds every capability there and none on the host. Dump refuses
/// a target outside its own user or pid namespace; this record lets the
/// verifier tell the initial user namespace (the only one whose
/// capabilities are host capabilities) from any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespaces {
    /// `/proc/PID/ns/user`.
    pub user: NsId,
    /// `/proc/PID/ns/pid`.
    pub pid: NsId,
}

/// A namespace: the device and inode of its nsfs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

impl NsId {
    /// Inode number the kernel gives the initial user namespace
    /// (`PROC_USER_INIT_INO`, fixed since Linux 3.8; namespaces created
    /// later get inode numbers from 0xF0000000 up).
    pub const INITIAL_USER_INO: u64 = 0xEFFF_FFFD;
    /// Inode number of the initial pid namespace (`PROC_PID_INIT_INO`).
    pub const INITIAL_PID_INO: u64 = 0xEFFF_FFFC;

    /// True for the initial user namespace of whichever host wrote it.
    pub fn is_initial_user(&self) -> bool {
        self.ino == Self::INITIAL_USER_INO
    }
}

impl std::fmt::Display for NsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}]", self.ino)
    }
}

/// One seccomp filter of the process's chain (`SECCOMP_SET_MODE_FILTER`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompFilter {
    /// The classic BPF program, one `struct sock_filter` per word, as the
    /// kernel's bytes read as a little-endian `u64`: `code` in bits 0..16,
    /// `jt` in 16..24, `jf` in 24..32, `k` in 32..64.
    pub program: Vec<u64>,
    /// Installed with `SECCOMP_FILTER_FLAG_LOG`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub log: bool,
}

/// `SECCOMP_RET_USER_NOTIF`: a filter action that hands the syscall to a
/// supervisor holding the filter's listener fd.
pub const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;

impl SeccompFilter {
    /// Whether an instruction returns `SECCOMP_RET_USER_NOTIF` (`BPF_RET |
    /// BPF_K` with that action).
    pub fn notifies_a_supervisor(&self) -> bool {
        self.program.iter().any(|&insn| {
            let code = insn & 0xffff;
            let k = (insn >> 32) as u32;
            code == 0x06 && k & 0xffff_0000 == SECCOMP_RET_USER_NOTIF
        })
    }
}
