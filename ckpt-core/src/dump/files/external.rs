//! Descriptors connected outside the image (what CRIU's `--shell-job`
//! and `--inherit-fd` handle): a terminal, a pipe whose other end is
//! open outside the process, a FIFO on fd 0-2, or a socket connected to
//! one outside the process (any socket on fd 0-2) is recorded as
//! [`OpenFileKind::External`]. Restore connects fds 0-2 to the restore
//! caller's own fd of that number, and any other fd to the caller's fd of
//! that number when the caller passes `--inherit-fd N`, or to `/dev/null`.
//!
//! Trusts: `/proc/PID/fd` metadata and `kcmp`. Refuses, naming the fds:
//! one pipe or socket held through two different open file descriptions
//! (both ends of a pipe: the other end is inside the image). fds that dup
//! one description, or that opened one terminal separately, are fine.
//! What is truly unsupported (TCP, UDP, netlink sockets above fd 2) is
//! refused before this module is asked (see [`super::unix`]).

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::DumpError;
use crate::model::OpenFileKind;
use crate::sys;

/// An fd recorded as connected outside the image.
pub(super) struct Outside {
    fd: i32,
    dev: u64,
    ino: u64,
}

/// `Some(External)` for a terminal, or a pipe, FIFO or socket the other
/// classifiers left (connected outside); `None` for anything else, which
/// the caller classifies as before. `outside` collects the fds so
/// recorded; fds are classified in increasing order.
pub(super) fn classify(
    pid: i32,
    fd: i32,
    link: &str,
    meta: &std::fs::Metadata,
    outside: &mut Vec<Outside>,
) -> Result<Option<OpenFileKind>, DumpError> {
    let ft = meta.file_type();
    let terminal = ft.is_char_device() && is_terminal(meta.rdev());
    if !(terminal || ft.is_fifo() || ft.is_socket()) {
        return Ok(None);
    }
    let what = if terminal {
        "terminal"
    } else if ft.is_socket() {
        "socket"
    } else {
        "pipe"
    };
    let same = outside
        .iter()
        .find(|o| o.dev == meta.dev() && o.ino == meta.ino());
    let refuse = |resource: String| Err(DumpError::Unsupported { pid, resource });
    if let Some(o) = same {
        if !terminal && !sys::kcmp_same_file(pid, o.fd, fd).unwrap_or(false) {
            return refuse(format!(
                "fd {} and fd {fd} ({link}), two ends of one {what} held by the process (its \
                 other end would be inside the image)",
                o.fd
            ));
        }
    }
    outside.push(Outside {
        fd,
        dev: meta.dev(),
        ino: meta.ino(),
    });
    Ok(Some(OpenFileKind::External {
        connected_to: link.to_string(),
    }))
}

/// A terminal: a virtual console or serial line (major 4), `/dev/tty` or
/// `/dev/console` (5:0, 5:1), a pseudo-terminal's terminal side (majors
/// 136-143). Not a pseudo-terminal's master (`/dev/ptmx`, 5:2).
pub(super) fn is_terminal(rdev: u64) -> bool {
    let major = nix::sys::stat::major(rdev);
    let minor = nix::sys::stat::minor(rdev);
    major == 4 || (major == 5 && minor <= 1) || (136..=143).contains(&major)
}
