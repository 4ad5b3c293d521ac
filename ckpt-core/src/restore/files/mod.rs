//! The file table and the filesystem context: every fd the process had,
//! each open file description recreated once (by the module for its kind)
//! and dup'ed to every fd number that shared it; the working directory and
//! the umask.
//!
//! Owns: opening files *in the stub* ([`Builder::open_in_stub`]), so the
//! kernel applies the stub's (file) credentials; for a root-built stub
//! with `openat2(RESOLVE_NO_SYMLINKS)`, so nothing the caller can swap in
//! is followed. Trusts: nothing in the image (paths are checked for
//! length and NUL bytes; fd numbers against the open-file limit).
//!
//! A new kind of description: a variant of
//! [`OpenFileKind`](crate::model::OpenFileKind), a module here that
//! recreates it in the stub, and one arm in
//! [`Builder::open_description`]. fds 0-2 that were connected outside the
//! image are handed the caller's own ([`external`]). eventfds, signalfds
//! and timerfds are created by the stub itself ([`eventfd`], [`signalfd`],
//! [`timerfd`]): no path, the stub's credentials; so are epoll and
//! inotify instances ([`epoll`], [`inotify`]), TCP and UDP sockets
//! ([`inet`]: socket, options, bind, listen), pipes and unix socket pairs
//! ([`pipe`], [`unix`]: both ends at once, filled with their saved data,
//! [`queued`]); FIFOs are reopened by path ([`pipe`]); a pseudo-terminal
//! pair is created from the multiplexer with all its descriptions
//! ([`tty`]). Descriptions are
//! opened in dependency order: every description first, then each epoll's
//! entries are added (they name other descriptions), then the fds are put
//! in place, and last the file locks are taken ([`locks`]: closing any fd
//! of a file drops the process's POSIX locks on it, so nothing may be
//! closed after them). memfds and unlinked files are created with their
//! content before the mappings ([`saved`]).

mod cwd;
mod epoll;
mod eventfd;
mod external;
mod inet;
mod inotify;
mod locks;
mod pipe;
mod queued;
mod regular;
pub(super) mod saved;
mod signalfd;
mod socket;
mod timerfd;
mod tty;
mod unix;

use super::transfer::Key;
use super::{Builder, RestoreError, StubMode};
use crate::inject::errno_of;
use crate::inject::structs::{OpenHow, Rlimit64, RESOLVE_NO_SYMLINKS};
use crate::inject::KernelStruct;
use crate::model::{OpenFile, OpenFileKind};

/// Longest path we write into the stub.
const MAX_PATH: usize = 3900;

/// A path the stub may be given: not too long, no NUL byte.
pub(super) fn check_path(s: &str) -> Result<(), RestoreError> {
    if s.len() > MAX_PATH || s.as_bytes().contains(&0) {
        return Err(RestoreError::Invalid(format!(
            "path too long or with NUL: {s:?}"
        )));
    }
    Ok(())
}

impl Builder<'_> {
    /// Open `path` inside the stub (so its credentials apply) and return the
    /// stub's fd number.
    pub(super) fn open_in_stub(&mut self, path: &str, flags: i32) -> Result<u64, RestoreError> {
        check_path(path)?;
        let at = self.inj.put_cstr(path, "writing a path")?;
        let flags = (flags | libc::O_CLOEXEC) as u64;
        let r = if self.mode == StubMode::Root {
            // No symlink anywhere in the path (the paths in an image are
            // the kernel's canonical ones), nothing the caller can swap in.
            let how = self.inj.put_struct(&OpenHow {
                flags,
                mode: 0,
                resolve: RESOLVE_NO_SYMLINKS,
            })?;
            self.sys_raw(
                libc::SYS_openat2,
                [libc::AT_FDCWD as u64, at, how, OpenHow::SIZE as u64, 0, 0],
            )?
        } else {
            self.sys_raw(
                libc::SYS_openat,
                [libc::AT_FDCWD as u64, at, flags, 0, 0, 0],
            )?
        };
        if r < 0 {
            return Err(RestoreError::Open {
                path: path.to_string(),
                errno: errno_of(r),
            });
        }
        Ok(r as u64)
    }

    /// `chdir` in the stub: with the file credentials and no symlinks for a
    /// root-built stub.
    pub(super) fn change_dir(&mut self, dir: &str) -> Result<(), RestoreError> {
        let fd = self.open_in_stub(dir, libc::O_PATH | libc::O_DIRECTORY)?;
        let r = self.sys_raw(libc::SYS_fchdir, [fd, 0, 0, 0, 0, 0])?;
        self.sys("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
        if r < 0 {
            return Err(RestoreError::Open {
                path: dir.to_string(),
                errno: errno_of(r),
            });
        }
        Ok(())
    }

    /// The file mode creation mask.
    pub(super) fn set_umask(&mut self) -> Result<(), RestoreError> {
        let umask = self.p.umask;
        self.sys(
            "umask",
            libc::SYS_umask,
            [u64::from(umask & 0o777), 0, 0, 0, 0, 0],
        )?;
        Ok(())
    }

    /// Recreate description `d` (number `i` in the table) in the stub, at
    /// a number above `top` (the highest fd to restore), close-on-exec; the
    /// stub's fd.
    fn open_description(&mut self, i: usize, d: &OpenFile, top: i32) -> Result<u64, RestoreError> {
        match d.kind.clone() {
            // Created with their other end, filled with their data.
            OpenFileKind::Pipe { .. } => self.open_pipe_end(i, top),
            OpenFileKind::Fifo { .. } => self.open_fifo(i, top),
            OpenFileKind::UnixPair { .. } => self.open_unix_pair(i, top),
            // A pseudo-terminal pair, created with all its descriptions.
            OpenFileKind::PtyMaster { .. } | OpenFileKind::PtySlave { .. } => {
                self.open_pty_end(i, top)
            }
            OpenFileKind::UnixSocket {
                sock_type,
                name,
                backlog,
                sndbuf,
                passcred,
                dir,
                file,
                ..
            } => self.open_unix_socket(
                d,
                &socket::Lone {
                    sock_type,
                    name: name.as_deref(),
                    backlog,
                    sndbuf,
                    passcred,
                    dir: dir.as_deref(),
                    file,
                },
                top,
            ),
            OpenFileKind::InetSocket { .. } => {
                let fd = self
                    .p
                    .fds
                    .iter()
                    .find(|f| f.description as usize == i)
                    .map_or(-1, |f| f.fd);
                self.open_inet_socket(d, fd, top)
            }
            OpenFileKind::Regular | OpenFileKind::Directory | OpenFileKind::CharDevice => {
                self.reopen_by_path(d, top)
            }
            // Created by the stub itself, with its credentials.
            OpenFileKind::Eventfd { count, semaphore } => {
                self.create_eventfd(d, count, semaphore, top)
            }
            OpenFileKind::Signalfd { sigmask } => self.create_signalfd(d, sigmask, top),
            OpenFileKind::Timerfd {
                clockid,
                value_ns,
                interval_ns,
                ticks,
                settime_flags: _,
            } => self.create_timerfd(
                d,
                &timerfd::Timer {
                    clockid,
                    value_ns,
                    interval_ns,
                    ticks,
                },
                top,
            ),
            OpenFileKind::Epoll { .. } => self.create_epoll(d, top),
            OpenFileKind::Inotify { watches } => self.create_inotify(d, &watches, top),
            // Created with its content before the mappings.
            OpenFileKind::Memfd { space } | OpenFileKind::Unlinked { space } => {
                self.saved_file_fd(d, space, top)
            }
            // Never opened: the caller's fd takes its place (`restore_fds`).
            OpenFileKind::External { .. } => Err(RestoreError::Invalid(format!(
                "{}: an external description cannot be opened",
                d.path
            ))),
        }
    }

    /// Move the stub's `fd` to the lowest free number above `top`,
    /// close-on-exec; the new number.
    pub(super) fn move_above(&mut self, fd: u64, top: i32) -> Result<u64, RestoreError> {
        let above = u64::try_from(top).unwrap_or(0) + 1;
        let got = self.sys_batch(&[
            (
                "fcntl(F_DUPFD_CLOEXEC)",
                libc::SYS_fcntl,
                [fd, libc::F_DUPFD_CLOEXEC as u64, above, 0, 0, 0],
            ),
            ("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0]),
        ])?;
        got.first()
            .copied()
            .ok_or_else(|| RestoreError::Invalid("fcntl(F_DUPFD_CLOEXEC) gave nothing".into()))
    }

    /// Close everything the stub inherited, except the caller's fds 0-2
    /// that external fds take over (see [`external`]); then open each
    /// description once above every target number and dup it into place.
    pub(super) fn restore_fds(&mut self) -> Result<(), RestoreError> {
        let p = self.p;
        let files = &self.m.files;
        let external = |f: &&crate::model::FdState| {
            files
                .get(f.description as usize)
                .is_some_and(|d| matches!(d.kind, OpenFileKind::External { .. }))
        };
        // The caller's fds the external fds take over: fds 0-2, and those
        // above 2 the caller handed on (`--inherit-fd`); the others are
        // opened on /dev/null (see `external`).
        let opts = self.opts;
        let inherit = &opts.inherit_fds;
        let mut keep: Vec<u64> = p
            .fds
            .iter()
            .filter(external)
            .filter(|f| f.fd <= 2 || inherit.contains(&f.fd))
            .filter_map(|f| u64::try_from(f.fd).ok())
            .collect();
        // The memfds and unlinked files created for the mappings stay open
        // too (see [`saved`]), and the end of the socket pair shared
        // descriptions come through (see `transfer`): every other number
        // is closed.
        keep.extend(self.saved_fds.iter().map(|s| s.fd));
        keep.push(self.shared.stub_fd);
        keep.sort_unstable();
        keep.dedup();
        let mut next = 0u64;
        let mut ranges = Vec::new();
        for &k in &keep {
            if k > next {
                ranges.push((
                    "close_range",
                    libc::SYS_close_range,
                    [next, k - 1, 0, 0, 0, 0],
                ));
            }
            next = k + 1;
        }
        ranges.push((
            "close_range",
            libc::SYS_close_range,
            [next, u64::from(u32::MAX), 0, 0, 0, 0],
        ));
        self.sys_batch(&ranges)?;
        if p.fds.is_empty() {
            return if self.closes_transport() {
                self.close_transport()
            } else {
                Ok(())
            };
        }
        // Above every fd and every fd number an epoll entry was added
        // under (see `epoll`).
        let top = p
            .fds
            .iter()
            .map(|f| f.fd)
            .chain(files.iter().flat_map(|d| match &d.kind {
                OpenFileKind::Epoll { targets } => targets.iter().map(|t| t.fd).collect(),
                _ => Vec::new(),
            }))
            .max()
            .unwrap_or(0);
        // Room for the temporary copies.
        let need = u64::try_from(top).unwrap_or(0) + 1 + files.len() as u64 + 1;
        self.raise_open_file_limit(need, u64::try_from(top).unwrap_or(0))?;

        // Each description this process holds: created here (and a copy
        // kept when a later process holds it too), or handed over from the
        // earlier process that created it (see `transfer`).
        let mut temp = Vec::with_capacity(files.len());
        // /dev/tty descriptions of a pseudo-terminal another process of
        // the image makes: opened once it is the controlling terminal.
        let mut deferred = Vec::new();
        for (i, d) in files.iter().enumerate() {
            let key = Key::Description(i);
            if matches!(d.kind, OpenFileKind::External { .. })
                || !self.shared.held_by(key, self.task)
            {
                temp.push(None);
                continue;
            }
            if let OpenFileKind::PtySlave {
                index,
                dev_tty: true,
            } = d.kind
            {
                let master_here = files.iter().enumerate().any(|(j, e)| {
                    matches!(e.kind, OpenFileKind::PtyMaster { index: x, .. } if x == index)
                        && self.shared.held_by(Key::Description(j), self.task)
                });
                if !master_here {
                    deferred.push(i);
                    temp.push(None);
                    continue;
                }
            }
            let fd = if self.shared.has(key) {
                let got = self.receive_shared(key)?;
                self.move_above(got, top)?
            } else {
                let fd = self.open_description(i, d, top)?;
                self.share_if_needed(key, fd)?;
                fd
            };
            temp.push(Some(fd));
        }
        self.adopt_controlling_terminal(&mut temp, &deferred, top)?;
        // The other ends created with a description this process holds
        // (a pipe's, a socket pair's) that only later processes hold.
        for (j, fd) in std::mem::take(&mut self.prepared) {
            self.share_if_needed(Key::Description(j), fd)?;
            self.sys("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
        }
        // Every socket is bound: the connections between them, then the
        // datagrams queued on them (see `socket`).
        self.connect_unix_sockets(&temp)?;
        // Every description exists: the epoll entries.
        let external_at = |n: i32| {
            p.fds
                .iter()
                .find(|f| f.fd == n && keep.contains(&(n as u64)))
                .map(|f| f.description)
        };
        let source = |t: u32| -> Option<u64> {
            match temp.get(t as usize) {
                Some(Some(fd)) => Some(*fd),
                _ => p
                    .fds
                    .iter()
                    .find(|f| f.description == t && keep.contains(&(f.fd as u64)))
                    .map(|f| f.fd as u64),
            }
        };
        for (i, d) in files.iter().enumerate() {
            if let (OpenFileKind::Epoll { targets }, Some(Some(ep))) = (&d.kind, temp.get(i)) {
                self.add_epoll_targets(*ep, targets, &source, &external_at)?;
            }
        }
        // Each fd in place (batches of `dup3`, in order), then the
        // temporary fds and the transfer end closed in one batch.
        let mut dups = Vec::new();
        for f in &p.fds {
            let Some(src) = temp[f.description as usize] else {
                self.sys_batch(&std::mem::take(&mut dups))?;
                self.reconnect_external(f)?;
                continue;
            };
            let flags = if f.cloexec { libc::O_CLOEXEC } else { 0 };
            dups.push((
                "dup3",
                libc::SYS_dup3,
                [src, f.fd as u64, flags as u64, 0, 0, 0],
            ));
        }
        self.sys_batch(&dups)?;
        let mut closes: Vec<_> = temp
            .into_iter()
            .flatten()
            .map(|fd| ("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0]))
            .collect();
        if self.closes_transport() {
            closes.push((
                "close(transfer)",
                libc::SYS_close,
                [self.shared.stub_fd, 0, 0, 0, 0, 0],
            ));
        }
        self.sys_batch(&closes)?;
        // Last: the locks, through each description's first fd.
        for (i, d) in files.iter().enumerate() {
            if d.locks.is_empty() {
                continue;
            }
            if let Some(f) = p.fds.iter().find(|f| f.description as usize == i) {
                self.take_locks(d, f.fd as u64)?;
            }
        }
        Ok(())
    }

    /// Raise the stub's open-file limit to its hard limit, so that fd
    /// numbers below `need` can be used; an fd `fd` above the hard limit
    /// is refused (its own rights: the restored limits are set later).
    pub(in crate::restore) fn raise_open_file_limit(
        &mut self,
        need: u64,
        fd: u64,
    ) -> Result<(), RestoreError> {
        let cur = self.inj.alloc_struct::<Rlimit64>()?;
        self.sys(
            "prlimit64(get)",
            libc::SYS_prlimit64,
            [0, libc::RLIMIT_NOFILE as u64, 0, cur, 0, 0],
        )?;
        let hard = self.inj.get_struct::<Rlimit64>(cur)?.max;
        if need > hard {
            return Err(RestoreError::Unsupported(format!(
                "fd {fd} (above this user's open-file limit {hard})"
            )));
        }
        let new = self.inj.put_struct(&Rlimit64 {
            cur: hard,
            max: hard,
        })?;
        self.sys(
            "prlimit64(set)",
            libc::SYS_prlimit64,
            [0, libc::RLIMIT_NOFILE as u64, new, 0, 0, 0],
        )?;
        Ok(())
    }

    /// Whether this process closes its end of the transport pair once it
    /// has its descriptions: not while a later process of the image that
    /// shares its fd table (`fds_of_parent`) is still to be filled (the end
    /// is in that same table); the last of them closes it.
    pub(in crate::restore) fn closes_transport(&self) -> bool {
        let mine = fd_table_of(self.m, self.task);
        !(self.task + 1..self.m.tasks.len()).any(|j| fd_table_of(self.m, j) == mine)
    }

    /// This process has every description it holds: its end of the pair
    /// descriptions come through is closed.
    pub(in crate::restore) fn close_transport(&mut self) -> Result<(), RestoreError> {
        self.sys(
            "close(transfer)",
            libc::SYS_close,
            [self.shared.stub_fd, 0, 0, 0, 0, 0],
        )?;
        Ok(())
    }
}

/// The task whose fd table task `i` uses: itself, or (`fds_of_parent`) its
/// parent's, followed up.
fn fd_table_of(m: &crate::image::Manifest, mut i: usize) -> usize {
    while let Some(p) = m.tasks.get(i).filter(|p| p.fds_of_parent) {
        match m.tasks[..i].iter().position(|q| q.pid == p.ppid) {
            Some(j) => i = j,
            None => break,
        }
    }
    i
}
