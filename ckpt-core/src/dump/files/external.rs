//! Descriptors connected outside the image (what CRIU's `--shell-job`
//! handles): fd 0, 1 or 2 on a terminal, a pipe or FIFO, or a socket is
//! recorded as [`OpenFileKind::External`], which restore connects to the
//! restore caller's own fd of that number.
//!
//! Trusts: `/proc/PID/fd` metadata and `kcmp`. Refuses, naming the fds:
//! such an object on any other fd (it would need restoring, not
//! reconnecting), and one pipe or socket held through two different open
//! file descriptions (both ends of a pipe: the other end is inside the
//! image). fds 0-2 that dup one description, or that opened one terminal
//! separately, are fine.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::DumpError;
use crate::model::OpenFileKind;
use crate::sys;

/// An fd 0-2 recorded as connected outside the image.
pub(super) struct Outside {
    fd: i32,
    dev: u64,
    ino: u64,
}

/// `Some(External)` for fd 0-2 on a terminal, pipe, FIFO or socket; `None`
/// for anything else, which the caller classifies as before. `outside`
/// collects the fds 0-2 so recorded; fds are classified in increasing
/// order.
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
    if fd > 2 {
        return match same {
            Some(o) => refuse(format!(
                "fd {fd} ({link}), the same {what} as fd {} (only fds 0-2 may be a terminal, \
                 pipe or socket, which restore connects to the caller's own: close fd {fd} \
                 before the dump, or start the program with it closed)",
                o.fd
            )),
            None => refuse(format!(
                "fd {fd} ({link}), a {what} (only fds 0-2 may be a terminal, pipe or socket, \
                 which restore connects to the caller's own: close it before the dump, or \
                 start the program with it closed)"
            )),
        };
    }
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
