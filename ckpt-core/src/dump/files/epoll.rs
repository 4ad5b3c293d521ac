//! epoll: the interest list, from fdinfo (`tfd`, `events`, `data` of each
//! entry). The kernel keys an entry by the watched *file* and the fd
//! number it was added under; that fd may since have been closed (the
//! entry lives as long as the file does) or even reused for another file.
//! So each entry's file is found among the process's descriptions with
//! `kcmp(KCMP_EPOLL_TFD)`, which compares the entry's file with an fd's,
//! and the fd number is kept as well: restore adds the file under that
//! same number.
//!
//! Trusts: fdinfo, parsed strictly, and `kcmp`. Refuses, naming both fds:
//! an entry whose file is not in the process's fd table any more (held
//! only by another process, or by a queued message).

use std::collections::HashMap;

use super::DumpError;
use crate::model::{EpollTarget, OpenFile};
use crate::procfs::watches::{parse_epoll, EpollEntry};
use crate::sys;

/// The kernel's name of an epoll instance in `/proc/PID/fd`.
pub(super) const LINK: &str = "anon_inode:[eventpoll]";

/// The raw entries of the epoll `fd`, resolved once the whole table is
/// known ([`resolve`]).
pub(super) fn capture(pid: i32, fd: i32, info: &str) -> Result<Vec<EpollEntry>, DumpError> {
    parse_epoll(info).map_err(|source| DumpError::Parse {
        pid,
        what: format!("fdinfo/{fd} (epoll)"),
        source,
    })
}

/// The kernel's device encoding (`major << 20 | minor`) of a `st_dev`.
fn kernel_dev(st_dev: u64) -> u64 {
    let major = nix::sys::stat::major(st_dev);
    let minor = nix::sys::stat::minor(st_dev);
    (major << 20) | minor
}

/// The description each of `entries` (of the epoll at fd `efd`) watches:
/// `descriptions` with `holders[i]`, an fd of description `i`, and
/// `by_fd`, the description of each open fd.
pub(super) fn resolve(
    pid: i32,
    efd: i32,
    entries: &[EpollEntry],
    descriptions: &[OpenFile],
    holders: &[(i32, i32)],
    by_fd: &HashMap<i32, usize>,
) -> Result<Vec<EpollTarget>, DumpError> {
    let mut out = Vec::with_capacity(entries.len());
    // How many earlier entries had the same fd number (kcmp's `toff`).
    let mut seen: HashMap<i32, u32> = HashMap::new();
    for e in entries {
        let toff = seen.entry(e.tfd).or_insert(0);
        let same = |i: usize| -> bool {
            let Some(&(hpid, hfd)) = holders.get(i) else {
                return false;
            };
            sys::kcmp_epoll_target_in(hpid, hfd, pid, efd, e.tfd, *toff).unwrap_or(false)
        };
        // The fd it was added under first, then every description of the
        // same inode.
        let mut found = by_fd.get(&e.tfd).copied().filter(|&i| same(i));
        if found.is_none() {
            found = descriptions
                .iter()
                .enumerate()
                .filter(|(_, d)| d.ino == e.ino && kernel_dev(d.dev) == u64::from(e.sdev))
                .map(|(i, _)| i)
                .find(|&i| same(i));
        }
        *toff += 1;
        let Some(description) = found else {
            return Err(DumpError::Unsupported {
                pid,
                resource: format!(
                    "fd {efd} (epoll): its entry for fd {} (inode {:#x}) watches a file that \
                     is no longer open in the process (fd {} was closed while another \
                     process or a queued message kept the file alive)",
                    e.tfd, e.ino, e.tfd
                ),
            });
        };
        out.push(EpollTarget {
            fd: e.tfd,
            description: u32::try_from(description).unwrap_or(u32::MAX),
            events: e.events,
            data: e.data,
        });
    }
    Ok(out)
}
