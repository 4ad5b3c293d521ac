//! Descriptions reopened by path at restore: regular files, directories
//! and the harmless character devices (`/dev/null`, `/dev/zero`,
//! `/dev/full`, `/dev/random`, `/dev/urandom`). The path, flags and offset
//! are all restore needs.
//!
//! Trusts: the kernel's `stat` of the fd (not the path, which may have
//! changed since it was opened).

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

use crate::model::OpenFileKind;

/// The kind of the description behind an fd whose `/proc/PID/fd` link is
/// `path`, if it is one reopened by path.
pub(super) fn kind_of(path: &str, meta: &Metadata) -> Option<OpenFileKind> {
    let ft = meta.file_type();
    if ft.is_file() {
        Some(OpenFileKind::Regular)
    } else if ft.is_dir() {
        Some(OpenFileKind::Directory)
    } else if is_simple_char_device(path, meta.rdev()) {
        Some(OpenFileKind::CharDevice)
    } else {
        None
    }
}

pub(super) fn is_simple_char_device(path: &str, rdev: u64) -> bool {
    let major = nix::sys::stat::major(rdev);
    let minor = nix::sys::stat::minor(rdev);
    major == 1
        && matches!(
            (path, minor),
            ("/dev/null", 3)
                | ("/dev/zero", 5)
                | ("/dev/full", 7)
                | ("/dev/random", 8)
                | ("/dev/urandom", 9)
        )
}
