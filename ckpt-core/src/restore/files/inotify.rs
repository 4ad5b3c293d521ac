//! inotify: a new instance created by the stub, its watches added again
//! by the stub (the restored process, with its credentials: a watch needs
//! read permission on the watched file) so that each gets its old watch
//! descriptor. The kernel hands wds out in turn (1, 2, 3, ..., never
//! reusing a freed one until it wraps), so watches are added in wd order
//! and every gap is filled by adding and removing a throw-away watch (on
//! the stub's own `/proc/self`); the `IN_IGNORED` events those removals
//! queue are read away before the instance is handed over, so it starts
//! with an empty queue, as at dump (a dump with unread events is refused).
//!
//! Each watched path is opened `O_PATH` with [`Builder::open_in_stub`]
//! (so a root-built stub follows no symbolic link the caller could swap
//! in) and watched through `/proc/self/fd/N`, with `IN_MASK_CREATE`: a
//! path that now leads to an already watched inode is an error, not a
//! silently merged watch.
//!
//! Trusts: nothing; wds are checked by validation (increasing, at most
//! [`crate::limits::MAX_INOTIFY_WD`]), and each wd the kernel returns is
//! compared with the saved one.

use crate::inject::errno_of;
use crate::model::{InotifyWatch, OpenFile};
use crate::restore::{Builder, RestoreError};

/// `IN_MASK_CREATE`: fail with `EEXIST` rather than change an existing
/// watch.
const IN_MASK_CREATE: u32 = 0x1000_0000;
/// `IN_ATTRIB`, what the throw-away watches wait for.
const IN_ATTRIB: u32 = 0x4;
/// Where throw-away watches go.
const SPARE: &str = "/proc/self";
/// Bytes read at a time when emptying the queue.
const DRAIN: u64 = 2048;

impl Builder<'_> {
    /// A new inotify instance with `watches`, above `top`, close-on-exec.
    pub(super) fn create_inotify(
        &mut self,
        d: &OpenFile,
        watches: &[InotifyWatch],
        top: i32,
    ) -> Result<u64, RestoreError> {
        let fd = self.sys(
            "inotify_init1",
            libc::SYS_inotify_init1,
            [(libc::IN_CLOEXEC | libc::IN_NONBLOCK) as u64, 0, 0, 0, 0, 0],
        )?;
        let mut next: i32 = 1;
        for w in watches {
            while next < w.wd {
                let spare = self.inj.put_cstr(SPARE, "writing a path")?;
                let r = self.sys(
                    "inotify_add_watch",
                    libc::SYS_inotify_add_watch,
                    [fd, spare, u64::from(IN_ATTRIB | IN_MASK_CREATE), 0, 0, 0],
                )?;
                if r != next as u64 {
                    return Err(RestoreError::Invalid(format!(
                        "inotify: a throw-away watch got wd {r}, not {next}"
                    )));
                }
                self.sys(
                    "inotify_rm_watch",
                    libc::SYS_inotify_rm_watch,
                    [fd, r, 0, 0, 0, 0],
                )?;
                next += 1;
            }
            let target = self.open_in_stub(&w.path, libc::O_PATH | libc::O_NOFOLLOW)?;
            let name = self
                .inj
                .put_cstr(&format!("/proc/self/fd/{target}"), "writing a path")?;
            let r = self.sys_raw(
                libc::SYS_inotify_add_watch,
                [fd, name, u64::from(w.mask | IN_MASK_CREATE), 0, 0, 0],
            )?;
            self.sys("close", libc::SYS_close, [target, 0, 0, 0, 0, 0])?;
            if r < 0 {
                return Err(RestoreError::Open {
                    path: format!("{} (inotify watch {})", w.path, w.wd),
                    errno: errno_of(r),
                });
            }
            if r != i64::from(w.wd) {
                return Err(RestoreError::Invalid(format!(
                    "inotify watch on {} got wd {r}, not {}",
                    w.path, w.wd
                )));
            }
            next = w.wd.saturating_add(1);
        }
        // Read away the IN_IGNORED events of the throw-away watches.
        let buf = self.inj.alloc(DRAIN, 8, "inotify events")?;
        loop {
            let n = self.sys_raw(libc::SYS_read, [fd, buf, DRAIN, 0, 0, 0])?;
            if n <= 0 {
                break;
            }
        }
        if d.flags & libc::O_NONBLOCK as u32 == 0 {
            self.sys(
                "fcntl(F_SETFL)",
                libc::SYS_fcntl,
                [fd, libc::F_SETFL as u64, 0, 0, 0, 0],
            )?;
        }
        self.move_above(fd, top)
    }
}
