//! Unix sockets connected to nothing ([`OpenFileKind::UnixSocket`]):
//! created anew by the stub (`socket`, its credentials), given their saved
//! `SO_SNDBUF` and `SO_PASSCRED`, bound to their name again, and put back
//! to listening with their backlog.
//!
//! A path name whose socket file is still there (the dump killed the
//! process that had bound it) fails `bind` with `EADDRINUSE`. In a restore
//! as the caller, when no socket of this network namespace is bound to
//! that path any more (`/proc/self/net/unix`, read by the helper; not by
//! connecting, which would hand a live server an empty connection), the
//! stub, with the caller's credentials, checks that the path is a socket
//! (`newfstatat` without following a symlink), unlinks it and binds
//! again: nothing the caller could not do. A path in use (the original left running with
//! `--leave-running`) fails the restore naming it. A root-built
//! (privileged) restore never unlinks: the path could be swapped between
//! the check and the unlink, so a stale socket file fails the restore with
//! a message naming it, to be removed by whoever may.
//!
//! Trusts: the image's validation (type, name, backlog). Not kept: the
//! socket file's mode and owner (it is created with the stub's umask and
//! credentials).

use crate::model::{OpenFile, OpenFileKind};
use crate::restore::{Builder, RestoreError, StubMode};

/// One such socket as the image saved it.
pub(super) struct Lone<'m> {
    pub sock_type: i32,
    pub name: Option<&'m str>,
    pub backlog: Option<u32>,
    pub sndbuf: u32,
    pub passcred: bool,
}

/// `sockaddr_un` bytes for `name` (a path, or `@` and an abstract name),
/// and their length as `bind` takes it.
fn sockaddr(name: &str) -> Vec<u8> {
    let mut a = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
    match name.strip_prefix('@') {
        Some(abstract_) => {
            a.push(0);
            a.extend_from_slice(abstract_.as_bytes());
        }
        None => {
            a.extend_from_slice(name.as_bytes());
            a.push(0);
        }
    }
    a
}

impl Builder<'_> {
    /// The stub's fd for unix socket `s` of description `d`, above `top`.
    pub(super) fn open_unix_socket(
        &mut self,
        d: &OpenFile,
        s: &Lone<'_>,
        top: i32,
    ) -> Result<u64, RestoreError> {
        debug_assert!(matches!(d.kind, OpenFileKind::UnixSocket { .. }));
        let fd = self.new_socket(s.sock_type)?;
        if s.sndbuf > 0 {
            self.set_int_opt(fd, libc::SO_SNDBUF, s.sndbuf / 2)?;
        }
        if s.passcred {
            self.set_int_opt(fd, libc::SO_PASSCRED, 1)?;
        }
        if let Some(name) = s.name {
            self.bind_again(fd, name, &d.path)?;
        }
        if let Some(backlog) = s.backlog {
            self.sys(
                "listen",
                libc::SYS_listen,
                [fd, u64::from(backlog), 0, 0, 0, 0],
            )?;
        }
        self.set_status_flags(fd, d.flags as i32 & libc::O_NONBLOCK)?;
        self.move_above(fd, top)
    }

    /// `socket(AF_UNIX, ty, 0)` in the stub, close-on-exec, non-blocking.
    fn new_socket(&mut self, ty: i32) -> Result<u64, RestoreError> {
        self.sys(
            "socket",
            libc::SYS_socket,
            [
                libc::AF_UNIX as u64,
                (ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) as u64,
                0,
                0,
                0,
                0,
            ],
        )
    }

    /// `bind` or `connect` (`nr`) of the stub's `fd` to `name`: the raw
    /// result.
    fn at_name(&mut self, nr: libc::c_long, fd: u64, name: &str) -> Result<i64, RestoreError> {
        let a = sockaddr(name);
        let at = self.inj.put_bytes(&a, "a socket address")?;
        self.sys_raw(nr, [fd, at, a.len() as u64, 0, 0, 0])
    }

    /// Bind `fd` to `name`, replacing a stale socket file (see the module
    /// documentation).
    fn bind_again(&mut self, fd: u64, name: &str, what: &str) -> Result<(), RestoreError> {
        let fail = |reason: String| RestoreError::Bind {
            fd: what.to_string(),
            name: name.to_string(),
            reason,
        };
        let r = self.at_name(libc::SYS_bind, fd, name)?;
        if r >= 0 {
            return Ok(());
        }
        let e = crate::inject::errno_of(r);
        if e != nix::errno::Errno::EADDRINUSE {
            return Err(fail(e.to_string()));
        }
        if name.starts_with('@') {
            return Err(fail(
                "the abstract name is in use (is the original still running?)".into(),
            ));
        }
        // Is anybody there? (Not by connecting: that would hand a live
        // server an empty connection.)
        if crate::sockdiag::path_bound(name).unwrap_or(true) {
            return Err(fail(
                "a socket listens there (is the original still running?)".into(),
            ));
        }
        if self.mode == StubMode::Root {
            return Err(fail(
                "a socket file nobody listens on is in the way; a privileged restore does \
                 not remove it: remove it and restore again"
                    .into(),
            ));
        }
        // A socket inode, not followed through a symlink.
        let st = self.inj.alloc(256, 8, "a stat buffer")?;
        let path = self.inj.put_cstr(name, "a socket path")?;
        let r = self.sys_raw(
            libc::SYS_newfstatat,
            [
                libc::AT_FDCWD as u64,
                path,
                st,
                libc::AT_SYMLINK_NOFOLLOW as u64,
                0,
                0,
            ],
        )?;
        // st_mode is at offset 24 of x86-64's struct stat.
        let mode = self
            .inj
            .read(st + 24, 4, "a stat buffer")
            .ok()
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes);
        if r < 0 || mode.map(|m| m & libc::S_IFMT) != Some(libc::S_IFSOCK) {
            return Err(fail("something that is not a socket is in the way".into()));
        }
        let path = self.inj.put_cstr(name, "a socket path")?;
        let r = self.sys_raw(
            libc::SYS_unlinkat,
            [libc::AT_FDCWD as u64, path, 0, 0, 0, 0],
        )?;
        if r < 0 {
            return Err(fail(format!(
                "cannot remove the stale socket file: {}",
                crate::inject::errno_of(r)
            )));
        }
        self.notices.push(format!(
            "{what}: removed the stale socket file {name} (nobody listened on it) and bound \
             it again"
        ));
        let r = self.at_name(libc::SYS_bind, fd, name)?;
        if r < 0 {
            return Err(fail(crate::inject::errno_of(r).to_string()));
        }
        Ok(())
    }
}
