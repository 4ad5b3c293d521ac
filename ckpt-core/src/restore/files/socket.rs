//! Unix sockets not in a pair ([`OpenFileKind::UnixSocket`]): created
//! anew by the stub (`socket`, its credentials), given their saved
//! `SO_SNDBUF` and `SO_PASSCRED`, bound to their name again (a relative
//! name from its saved directory, which the stub enters: the working
//! directory is restored after the files), their socket file given its
//! saved mode and owner, and put back to listening with their backlog.
//! Once every socket exists, each one connected by name to another is
//! connected to it again (a stream connection then waits in its
//! listener's queue again, in the listener's saved accept order), and the
//! datagrams queued on each are sent to it again, from the socket bound to
//! the sender's name when the image has it (else from an unbound one).
//!
//! A path name whose socket file is still there (the dump killed the
//! process that had bound it) fails `bind` with `EADDRINUSE`. In a restore
//! as the caller, when no socket of this network namespace is bound to
//! that path any more (`/proc/self/net/unix` and `sock_diag`: no socket bound to that very
//! file, asked by the helper; not by
//! connecting, which would hand a live server an empty connection), the
//! stub, with the caller's credentials, checks that the path is a socket
//! (`newfstatat` without following a symlink), unlinks it and binds
//! again: nothing the caller could not do. A path in use (the original left running with
//! `--leave-running`) fails the restore naming it. A root-built
//! (privileged) restore unlinks only the original's own socket file (its
//! device and inode are in the signed image), looked at and removed in
//! its directory entered without symlinks; any other stale file fails the
//! restore with a message naming it, to be removed by whoever may.
//!
//! Trusts: the image's validation (type, name, backlog, connections).
//! Not kept: the credentials that came with queued datagrams.

use crate::model::{OpenFile, OpenFileKind, SocketFile};
use crate::restore::{Builder, RestoreError, StubMode};

/// One such socket as the image saved it.
pub(super) struct Lone<'m> {
    pub sock_type: i32,
    pub name: Option<&'m str>,
    pub backlog: Option<u32>,
    pub sndbuf: u32,
    pub passcred: bool,
    pub dir: Option<&'m str>,
    pub file: Option<SocketFile>,
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
            if let Some(dir) = s.dir {
                // A relative name: bound from its directory (the working
                // directory is restored after the files).
                self.change_dir(dir)?;
            }
            self.bind_again(fd, name, &d.path, s.file)?;
            if let Some(file) = s.file {
                self.set_socket_file(fd, name, &file, &d.path)?;
            }
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
    /// documentation). For a relative name the stub is in its directory.
    fn bind_again(
        &mut self,
        fd: u64,
        name: &str,
        what: &str,
        file: Option<SocketFile>,
    ) -> Result<(), RestoreError> {
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
        if self.mode == StubMode::Root && file.is_none() {
            return Err(fail(
                "a socket file nobody listens on is in the way; a privileged restore does \
                 not remove it: remove it and restore again"
                    .into(),
            ));
        }
        // The stale file is looked at and removed in its directory, entered
        // without following a symlink in a root-built stub.
        let leaf = match name.rsplit_once('/') {
            Some((parent, leaf)) => {
                self.change_dir(if parent.is_empty() { "/" } else { parent })?;
                leaf
            }
            None => name,
        };
        // A socket inode, not followed through a symlink.
        let st = self.inj.alloc(256, 8, "a stat buffer")?;
        let path = self.inj.put_cstr(leaf, "a socket path")?;
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
        // x86-64's struct stat: st_dev at 0, st_ino at 8, st_mode at 24.
        let b = self.inj.read(st, 32, "a stat buffer").unwrap_or_default();
        let u64_at = |at: usize| {
            b.get(at..at + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_ne_bytes)
        };
        let mode = b
            .get(24..28)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_ne_bytes);
        if r < 0 || mode.map(|m| m & libc::S_IFMT) != Some(libc::S_IFSOCK) {
            return Err(fail("something that is not a socket is in the way".into()));
        }
        // Is anybody bound to that very file? (Not by connecting: that
        // would hand a live server an empty connection.)
        let (Some(dev), Some(ino)) = (u64_at(0), u64_at(8)) else {
            return Err(fail("its socket file could not be looked at".into()));
        };
        if crate::sockdiag::file_bound(name, ino, dev).unwrap_or(true) {
            return Err(fail(
                "a socket listens there (is the original still running?)".into(),
            ));
        }
        // A root-built stub removes only the socket file the original
        // process bound (its inode recorded in the signed image).
        if self.mode == StubMode::Root
            && file.map(|f| (Some(f.dev), Some(f.ino))) != Some((u64_at(0), u64_at(8)))
        {
            return Err(fail(
                "a socket file nobody listens on, not the one saved at dump, is in the way; \
                 a privileged restore does not remove it: remove it and restore again"
                    .into(),
            ));
        }
        let path = self.inj.put_cstr(leaf, "a socket path")?;
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

    /// Give the socket file the stub's socket `sock` just bound to `name`
    /// the mode and owner saved at dump. Opened `O_PATH | O_NOFOLLOW`
    /// (without any symlink in a root-built stub) and changed through that
    /// fd, only if it is the very file the socket is bound to (its inode
    /// from `sock_diag`); an owner or mode this stub may not give is left,
    /// with a notice.
    fn set_socket_file(
        &mut self,
        sock: u64,
        name: &str,
        file: &SocketFile,
        what: &str,
    ) -> Result<(), RestoreError> {
        let fd = self.open_in_stub(name, libc::O_PATH | libc::O_NOFOLLOW)?;
        let r = self.socket_file_attrs(sock, fd, file, name, what);
        self.sys("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
        r
    }

    /// The socket file the stub's socket `fd` is bound to, as `sock_diag`
    /// names it: (inode, device).
    fn bound_file(&self, fd: u64) -> Option<(u64, u64)> {
        let link = std::fs::read_link(format!("/proc/{}/fd/{fd}", self.pid())).ok()?;
        let ino = link
            .to_str()?
            .strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse()
            .ok()?;
        crate::sockdiag::unix_socket(ino).ok()?.vfs
    }

    /// `fstat` of the stub's `fd`: (inode, device, mode, uid, gid).
    fn stat_fd(&mut self, fd: u64) -> Result<Option<FileStat>, RestoreError> {
        let empty = self.inj.put_cstr("", "an empty path")?;
        let st = self.inj.alloc(256, 8, "a stat buffer")?;
        let r = self.sys_raw(
            libc::SYS_newfstatat,
            [fd, empty, st, libc::AT_EMPTY_PATH as u64, 0, 0],
        )?;
        if r < 0 {
            return Ok(None);
        }
        // x86-64's struct stat: st_dev at 0, st_ino at 8, st_mode at 24,
        // st_uid at 28, st_gid at 32.
        let b = self.inj.read(st, 36, "a stat buffer").unwrap_or_default();
        let u64_at = |at: usize| {
            b.get(at..at + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_ne_bytes)
        };
        let u32_at = |at: usize| {
            b.get(at..at + 4)
                .and_then(|s| s.try_into().ok())
                .map(u32::from_ne_bytes)
        };
        Ok(
            match (u64_at(8), u64_at(0), u32_at(24), u32_at(28), u32_at(32)) {
                (Some(ino), Some(dev), Some(mode), Some(uid), Some(gid)) => {
                    Some((ino, dev, mode, uid, gid))
                }
                _ => None,
            },
        )
    }

    fn socket_file_attrs(
        &mut self,
        sock: u64,
        fd: u64,
        file: &SocketFile,
        name: &str,
        what: &str,
    ) -> Result<(), RestoreError> {
        let fail = |reason: String| RestoreError::Bind {
            fd: what.to_string(),
            name: name.to_string(),
            reason,
        };
        let Some((ino, dev, mode, uid, gid)) = self.stat_fd(fd)? else {
            return Err(fail("its socket file could not be looked at".into()));
        };
        if self.bound_file(sock) != Some((ino, dev)) {
            return Err(fail(
                "the file at that path is not the socket file just bound (replaced \
                 meanwhile?)"
                    .into(),
            ));
        }
        if (uid, gid) != (file.uid, file.gid) {
            let empty = self.inj.put_cstr("", "an empty path")?;
            let r = self.sys_raw(
                libc::SYS_fchownat,
                [
                    fd,
                    empty,
                    u64::from(file.uid),
                    u64::from(file.gid),
                    libc::AT_EMPTY_PATH as u64,
                    0,
                ],
            )?;
            if r < 0 {
                self.notices.push(format!(
                    "{what}: the socket file {name} keeps the restorer's owner, not {}:{} ({})",
                    file.uid,
                    file.gid,
                    crate::inject::errno_of(r)
                ));
            }
        }
        if mode & 0o7777 != file.mode & 0o777 {
            let empty = self.inj.put_cstr("", "an empty path")?;
            let r = self.sys_raw(
                SYS_FCHMODAT2,
                [
                    fd,
                    empty,
                    u64::from(file.mode & 0o777),
                    libc::AT_EMPTY_PATH as u64,
                    0,
                    0,
                ],
            )?;
            if r < 0 {
                self.notices.push(format!(
                    "{what}: the socket file {name} keeps mode {:o}, not {:o} ({})",
                    mode & 0o7777,
                    file.mode & 0o777,
                    crate::inject::errno_of(r)
                ));
            }
        }
        Ok(())
    }

    /// The address by which the stub reaches the socket `target` (its fd
    /// in the stub), bound to `name`. As the caller: the name itself. In a
    /// root-built stub, a path name is opened `O_PATH | O_NOFOLLOW` without
    /// any symlink, checked to be the very file `target` is bound to, and
    /// reached through `/proc/self/fd/N` (that fd is returned, to be
    /// closed), so a path swapped meanwhile cannot send the stub's
    /// connection or datagram anywhere else.
    fn reach(
        &mut self,
        target: u64,
        name: &str,
        what: &str,
    ) -> Result<(String, Option<u64>), RestoreError> {
        if self.mode != StubMode::Root || name.starts_with('@') {
            return Ok((name.to_string(), None));
        }
        let fd = self.open_in_stub(name, libc::O_PATH | libc::O_NOFOLLOW)?;
        let st = self.stat_fd(fd)?;
        if st.map(|s| (s.0, s.1)).is_none() || st.map(|s| (s.0, s.1)) != self.bound_file(target) {
            self.sys("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
            return Err(RestoreError::Connect {
                fd: what.to_string(),
                name: name.to_string(),
                reason: "the file at that path is not its socket file (replaced meanwhile?)".into(),
            });
        }
        Ok((format!("/proc/self/fd/{fd}"), Some(fd)))
    }

    /// After every description exists: each socket connected to another
    /// one of the image is connected to it again by name (a stream
    /// connection then waits in its listener's queue again, in the
    /// listener's saved accept order);
    /// then each datagram queued on a socket is sent to it again, by the
    /// socket of the image bound to its sender's name, or by an unbound
    /// socket when there is none.
    pub(super) fn connect_unix_sockets(
        &mut self,
        temp: &[Option<u64>],
    ) -> Result<(), RestoreError> {
        let files = &self.m.files;
        let bound = |ino: u64| {
            files.iter().enumerate().find_map(|(j, e)| match &e.kind {
                OpenFileKind::UnixSocket {
                    name: Some(name),
                    dir,
                    ..
                } if e.ino == ino => Some((j, name.as_str(), dir.as_deref())),
                _ => None,
            })
        };
        // The connections waiting on one listener, in its accept order.
        let rank = |d: &crate::model::OpenFile, to: u64| {
            files
                .iter()
                .find_map(|e| match &e.kind {
                    OpenFileKind::UnixSocket { waiting, .. } if e.ino == to => {
                        waiting.iter().position(|&w| w == d.ino)
                    }
                    _ => None,
                })
                .unwrap_or(0)
        };
        let mut order: Vec<(usize, u64)> = files
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match &d.kind {
                OpenFileKind::UnixSocket {
                    connect_to: Some(to),
                    ..
                } => Some((i, *to)),
                _ => None,
            })
            .collect();
        order.sort_by_key(|&(i, to)| rank(&files[i], to));
        for (i, to) in order {
            let d = &files[i];
            let to = &to;
            let (Some((j, name, dir)), Some(Some(fd))) = (bound(*to), temp.get(i)) else {
                return Err(RestoreError::Invalid(format!(
                    "{}: the socket it was connected to is not in the image",
                    d.path
                )));
            };
            let Some(Some(target)) = temp.get(j) else {
                return Err(RestoreError::Invalid(format!(
                    "{}: the socket it was connected to is not in the image",
                    d.path
                )));
            };
            if let Some(dir) = dir {
                self.change_dir(dir)?;
            }
            let (addr, held) = self.reach(*target, name, &d.path)?;
            let r = self.at_name(libc::SYS_connect, *fd, &addr)?;
            if let Some(h) = held {
                self.sys("close", libc::SYS_close, [h, 0, 0, 0, 0, 0])?;
            }
            if r < 0 {
                return Err(RestoreError::Connect {
                    fd: d.path.clone(),
                    name: name.to_string(),
                    reason: crate::inject::errno_of(r).to_string(),
                });
            }
        }
        let longest = files
            .iter()
            .flat_map(|d| match &d.kind {
                OpenFileKind::UnixSocket { queue, .. } => {
                    queue.iter().map(|q| q.data.0.len()).max()
                }
                _ => None,
            })
            .max();
        let Some(longest) = longest else {
            return Ok(());
        };
        let staging = self.map_staging(longest)?;
        let mut unbound = None;
        for (i, d) in files.iter().enumerate() {
            let OpenFileKind::UnixSocket {
                queue,
                name: Some(name),
                dir,
                ..
            } = &d.kind
            else {
                continue;
            };
            for q in queue {
                let by_name = q.from.as_deref().and_then(|from| {
                    files.iter().enumerate().find_map(|(j, e)| match &e.kind {
                        OpenFileKind::UnixSocket {
                            name: Some(n),
                            dir: dj,
                            sock_type: libc::SOCK_DGRAM,
                            ..
                        } if n == from && (dj == dir || from.starts_with(['/', '@'])) => {
                            temp.get(j).copied().flatten()
                        }
                        _ => None,
                    })
                });
                let from = match (by_name, unbound) {
                    (Some(fd), _) | (None, Some(fd)) => fd,
                    (None, None) => {
                        let fd = self.new_socket(libc::SOCK_DGRAM)?;
                        unbound = Some(fd);
                        fd
                    }
                };
                if let Some(dir) = dir {
                    self.change_dir(dir)?;
                }
                let Some(Some(receiver)) = temp.get(i) else {
                    continue;
                };
                let (addr, held) = self.reach(*receiver, name, &files[i].path)?;
                self.inj
                    .write(staging.addr(), &q.data.0, "writing a queued datagram")?;
                let a = sockaddr(&addr);
                let at = self.inj.put_bytes(&a, "a socket address")?;
                let r = self.sys_raw(
                    libc::SYS_sendto,
                    [
                        from,
                        staging.addr(),
                        q.data.0.len() as u64,
                        (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u64,
                        at,
                        a.len() as u64,
                    ],
                )?;
                if let Some(h) = held {
                    self.sys("close", libc::SYS_close, [h, 0, 0, 0, 0, 0])?;
                }
                if r != q.data.0.len() as i64 {
                    return Err(RestoreError::Connect {
                        fd: files[i].path.clone(),
                        name: name.clone(),
                        reason: format!(
                            "a queued datagram of {} bytes could not be sent to it ({})",
                            q.data.0.len(),
                            if r < 0 {
                                crate::inject::errno_of(r).to_string()
                            } else {
                                format!("{r} bytes sent")
                            }
                        ),
                    });
                }
            }
        }
        if let Some(fd) = unbound {
            self.sys("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
        }
        self.unmap_staging(staging)
    }
}

/// What `fstat` says of a file: (inode, device, mode, uid, gid).
type FileStat = (u64, u64, u32, u32, u32);

/// `fchmodat2` (Linux 6.6), which takes `AT_EMPTY_PATH`.
const SYS_FCHMODAT2: libc::c_long = 452;
