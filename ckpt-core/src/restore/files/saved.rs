//! Files whose content is in the image (a memfd, a file unlinked while
//! open): created by the stub before the mappings, filled with their
//! content, sealed, so that shared mappings and every description of one
//! file share one object, as they did.
//!
//! A memfd is made with `memfd_create` (its name, `MFD_ALLOW_SEALING`); an
//! unlinked file is created again under its name and unlinked at once, or
//! made with `O_TMPFILE` in the directory it was in when that name exists
//! again (see [`Builder::unlinked_file`]), by the stub, with its
//! credentials (failing that, the restore fails naming the path). The restorer takes a copy of the stub's fd (`pidfd_getfd`,
//! the stub is its tracee) and writes the content through it: no path is
//! involved. Seals are added once the content is written: before the
//! mappings when they forbid writing (a writable shared mapping cannot
//! exist then, and a read-only one must be made after the seal), after
//! them otherwise (`F_SEAL_FUTURE_WRITE` leaves existing writable shared
//! mappings alone). Each description is then a new open of the stub's
//! `/proc/self/fd/N` with its saved flags and offset; the permission bits
//! of an unlinked file are set last, by the stub.
//!
//! Owns: the stub's fd of each such file until the fd table is rebuilt.
//! Trusts: nothing in the image (spaces, sizes and chunks are checked by
//! `validate`; chunk data is re-hashed as it is streamed into the file,
//! which is the stub's alone and goes with it when a digest fails).

use std::os::unix::fs::FileExt as _;

use super::super::transfer::Key;
use super::super::{Builder, RestoreError, StubMode};
use crate::image::{ChunkStreamError, ImageReader, Space};
use crate::inject::errno_of;
use crate::inject::structs::OpenHow;
use crate::inject::KernelStruct;
use crate::model::OpenFile;
use crate::sys;

const MFD_CLOEXEC: u64 = 1;
const MFD_ALLOW_SEALING: u64 = 2;
/// `F_SEAL_WRITE`.
const SEAL_WRITE: u32 = 0x8;

/// A file created for a content space, in the stub.
#[derive(Debug, Clone, Copy)]
pub(in crate::restore) struct SavedFd {
    pub(in crate::restore) space: u32,
    /// The stub's fd.
    pub(in crate::restore) fd: u64,
    /// Seals still to add after the mappings.
    seals_later: u32,
    /// Permission bits to set at the end (unlinked files).
    mode: Option<u32>,
    /// The saved owner to give back at the end, when the restore may
    /// (unlinked files; see [`Builder::give_owner`]).
    owner: Option<(u32, u32)>,
}

impl Builder<'_> {
    /// Creates every memfd and unlinked file of the image in the stub, above
    /// every fd number the process had, with its content.
    pub(in crate::restore) fn create_saved_files(
        &mut self,
        reader: &ImageReader,
    ) -> Result<(), RestoreError> {
        let top = self.p.fds.iter().map(|f| f.fd).max().unwrap_or(2).max(2);
        let m = self.m;
        for (i, space) in m.spaces.iter().enumerate() {
            let Some(size) = space.file_size() else {
                continue;
            };
            let index = u32::try_from(i).map_err(|_| RestoreError::Invalid("space".into()))?;
            // Only what this process holds; made by an earlier process of
            // the image, it is handed over (see `transfer`).
            let key = Key::Space(index);
            if !self.shared.held_by(key, self.task) {
                continue;
            }
            if self.shared.has(key) {
                let got = self.receive_shared(key)?;
                let fd = self.move_above(got, top)?;
                self.saved_fds.push(SavedFd {
                    space: index,
                    fd,
                    seals_later: 0,
                    mode: None,
                    owner: None,
                });
                continue;
            }
            let (fd, seals, mode, owner) = match space {
                Space::Memfd {
                    name, seals, mode, ..
                } => {
                    let at = self.inj.put_cstr(name, "writing a memfd name")?;
                    let fd = self.sys(
                        "memfd_create",
                        libc::SYS_memfd_create,
                        [at, MFD_CLOEXEC | MFD_ALLOW_SEALING, 0, 0, 0, 0],
                    )?;
                    (fd, *seals, *mode, None)
                }
                Space::Unlinked {
                    path, mode, owner, ..
                } => (self.unlinked_file(path)?, 0, Some(*mode), *owner),
                Space::Shmem { size } => (self.shared_memory(*size)?, 0, None, None),
                _ => continue,
            };
            let fd = self.move_above(fd, top)?;
            self.fill_file(reader, index, fd, size)?;
            self.share_if_needed(key, fd)?;
            let seals_later = if seals & SEAL_WRITE != 0 {
                self.add_seals(fd, seals)?;
                0
            } else {
                seals
            };
            self.saved_fds.push(SavedFd {
                space: index,
                fd,
                seals_later,
                mode,
                owner,
            });
        }
        Ok(())
    }

    /// A file unlinked while open, again: created by the stub in the
    /// directory it was in (opened once, `O_PATH`, without symlinks in a
    /// root-built stub) under its old name (`O_CREAT|O_EXCL|O_NOFOLLOW`,
    /// mode 0600 until the end) and unlinked at once from that same
    /// directory fd, so that its fds name `path (deleted)` as they did.
    /// Whatever the unlink removes is an entry of a directory pinned by
    /// fd: only someone who may delete entries there could have replaced
    /// the new file, so it is never something the caller could not have
    /// removed. When `path` exists again, the file is made unnamed
    /// (`O_TMPFILE`) in that directory instead, with a notice.
    fn unlinked_file(&mut self, path: &str) -> Result<u64, RestoreError> {
        super::check_path(path)?;
        let (dir, name) = match path.rsplit_once('/') {
            Some(("", name)) => ("/", name),
            Some((dir, name)) => (dir, name),
            None => ("/", path),
        };
        let dirfd = self.open_in_stub(dir, libc::O_PATH | libc::O_DIRECTORY)?;
        let at = self.inj.put_cstr(name, "writing a file name")?;
        let flags =
            (libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC)
                as u64;
        let r = self.sys_raw(libc::SYS_openat, [dirfd, at, flags, 0o600, 0, 0])?;
        let fd = if r >= 0 {
            let u = self.sys_raw(libc::SYS_unlinkat, [dirfd, at, 0, 0, 0, 0])?;
            if u < 0 {
                return Err(RestoreError::Open {
                    path: format!("{path} (unlinking the file made for it)"),
                    errno: errno_of(u),
                });
            }
            r as u64
        } else if errno_of(r) == nix::errno::Errno::EEXIST {
            let fd = self.tmpfile_in(dir)?;
            self.notices.push(format!(
                "{path}, unlinked while open, is restored as an unnamed file in {dir}: that name exists again (its fds no longer show it)"
            ));
            fd
        } else {
            return Err(RestoreError::Open {
                path: format!("{path} (recreating a file unlinked while open)"),
                errno: errno_of(r),
            });
        };
        self.sys("close", libc::SYS_close, [dirfd, 0, 0, 0, 0, 0])?;
        Ok(fd)
    }

    /// Shared anonymous memory of `size` bytes, made by the stub
    /// (`mmap(MAP_SHARED|MAP_ANONYMOUS)`, so it is the kernel's
    /// `/dev/zero (deleted)` object as before); the restorer opens it
    /// through the stub's `/proc/PID/map_files` and hands that fd to the
    /// stub (see `transfer`), which unmaps its temporary mapping. The
    /// stub's fd of it.
    fn shared_memory(&mut self, size: u64) -> Result<u64, RestoreError> {
        let pid = self.pid();
        let addr = self.sys(
            "mmap(shared memory)",
            libc::SYS_mmap,
            [
                0,
                size,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_SHARED | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )?;
        let link = format!("/proc/{pid}/map_files/{addr:x}-{:x}", addr + size);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&link)
            .map_err(|e| RestoreError::Memory {
                pid,
                what: "opening the shared memory made for the image",
                addr,
                errno: errno_io(&e),
            })?;
        self.sys("munmap", libc::SYS_munmap, [addr, size, 0, 0, 0, 0])?;
        self.shared.send_own(&std::os::fd::OwnedFd::from(file))?;
        self.receive_sent("shared memory")
    }

    /// An unnamed file in `dir`, opened by the stub (`O_TMPFILE`, mode
    /// 0600 until the end).
    fn tmpfile_in(&mut self, dir: &str) -> Result<u64, RestoreError> {
        super::check_path(dir)?;
        let at = self.inj.put_cstr(dir, "writing a path")?;
        let flags = (libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC) as u64;
        let r = if self.mode == StubMode::Root {
            let how = self.inj.put_struct(&OpenHow {
                flags,
                mode: 0o600,
                resolve: crate::inject::structs::RESOLVE_NO_SYMLINKS,
            })?;
            self.sys_raw(
                libc::SYS_openat2,
                [libc::AT_FDCWD as u64, at, how, OpenHow::SIZE as u64, 0, 0],
            )?
        } else {
            self.sys_raw(
                libc::SYS_openat,
                [libc::AT_FDCWD as u64, at, flags, 0o600, 0, 0],
            )?
        };
        if r < 0 {
            return Err(RestoreError::Open {
                path: format!("{dir} (an unnamed file for a file unlinked while open)"),
                errno: errno_of(r),
            });
        }
        Ok(r as u64)
    }

    /// Sizes the stub's file `fd` and writes the chunks of space `space`
    /// into it through a copy of the fd.
    fn fill_file(
        &mut self,
        reader: &ImageReader,
        space: u32,
        fd: u64,
        size: u64,
    ) -> Result<(), RestoreError> {
        let pid = self.pid();
        let err = |what: &'static str| {
            move |errno| RestoreError::Memory {
                pid,
                what,
                addr: 0,
                errno,
            }
        };
        let copy = sys::pidfd_getfd(self.pidfd, i32::try_from(fd).unwrap_or(-1))
            .map_err(err("taking a copy of a restored file"))?;
        let file = std::fs::File::from(copy);
        file.set_len(size)
            .map_err(|e| err("sizing a restored file")(errno_io(&e)))?;
        // Streamed a piece (a compressed block) at a time: the file is
        // the stub's, and dies with it should a digest not match.
        let mut buf = vec![0u8; 2 * crate::image::MAX_BLOCK_LEN];
        for (index, c) in self.m.chunks.iter().enumerate() {
            if c.space != space {
                continue;
            }
            let base = c.addr;
            reader
                .stream_chunk(index, &mut buf, |off, piece| {
                    file.write_all_at(piece, base + off)
                        .map_err(|e| RestoreError::Memory {
                            pid,
                            what: "writing a restored file's content",
                            addr: base + off,
                            errno: errno_io(&e),
                        })
                })
                .map_err(|e| match e {
                    ChunkStreamError::Image(e) => RestoreError::from(e),
                    ChunkStreamError::Callback(e) => e,
                })?;
        }
        Ok(())
    }

    fn add_seals(&mut self, fd: u64, seals: u32) -> Result<(), RestoreError> {
        if seals != 0 {
            self.sys(
                "fcntl(F_ADD_SEALS)",
                libc::SYS_fcntl,
                [fd, libc::F_ADD_SEALS as u64, u64::from(seals), 0, 0, 0],
            )?;
        }
        Ok(())
    }

    /// The seals left for after the mappings.
    pub(in crate::restore) fn seal_saved_files(&mut self) -> Result<(), RestoreError> {
        for s in self.saved_fds.clone() {
            self.add_seals(s.fd, s.seals_later)?;
        }
        Ok(())
    }

    /// The stub's fd of the file of space `space` (for a mapping of it).
    pub(in crate::restore) fn saved_file(&self, space: u32) -> Option<u64> {
        self.saved_fds
            .iter()
            .find(|s| s.space == space)
            .map(|s| s.fd)
    }

    /// A new description of the file of space `space` for `d` (its flags
    /// and offset), above `top`.
    pub(super) fn saved_file_fd(
        &mut self,
        d: &OpenFile,
        space: u32,
        top: i32,
    ) -> Result<u64, RestoreError> {
        let Some(fd) = self.saved_file(space) else {
            return Err(RestoreError::Invalid(format!(
                "{}: no file was created for space {space}",
                d.path
            )));
        };
        let path = format!("/proc/self/fd/{fd}");
        let at = self.inj.put_cstr(&path, "writing a path")?;
        let flags = ((d.flags as i32)
            & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY))
            | libc::O_CLOEXEC;
        let r = self.sys_raw(
            libc::SYS_openat,
            [libc::AT_FDCWD as u64, at, flags as u64, 0, 0, 0],
        )?;
        if r < 0 {
            return Err(RestoreError::Open {
                path: d.path.clone(),
                errno: errno_of(r),
            });
        }
        let high = self.move_above(r as u64, top)?;
        if d.offset != 0 {
            self.sys(
                "lseek",
                libc::SYS_lseek,
                [high, d.offset, libc::SEEK_SET as u64, 0, 0, 0],
            )?;
        }
        Ok(high)
    }

    /// Sets the permission bits of unlinked files (by the stub) and closes
    /// the stub's fds of every saved file: the fds and mappings of the
    /// process hold them now.
    pub(in crate::restore) fn close_saved_files(&mut self) -> Result<(), RestoreError> {
        for s in std::mem::take(&mut self.saved_fds) {
            if let Some(mode) = s.mode {
                self.sys(
                    "fchmod",
                    libc::SYS_fchmod,
                    [s.fd, u64::from(mode), 0, 0, 0, 0],
                )?;
            }
            if let Some(owner) = s.owner {
                self.give_owner(&s, owner)?;
            }
            self.sys("close", libc::SYS_close, [s.fd, 0, 0, 0, 0, 0])?;
        }
        Ok(())
    }
}

/// `CAP_CHOWN`, `CAP_FOWNER`, `CAP_FSETID`.
const CAP_CHOWN: u64 = 1 << caps::Capability::CAP_CHOWN as u64;
const CAP_FOWNER: u64 = 1 << caps::Capability::CAP_FOWNER as u64;
const CAP_FSETID: u64 = 1 << caps::Capability::CAP_FSETID as u64;

impl Builder<'_> {
    /// Gives the unlinked file `s` (made by the stub, owned by its file
    /// credentials) its saved `owner` back, as far as the restore caller
    /// or the granted file credentials may:
    /// * a caller who could chown it themselves (`CAP_CHOWN` among the
    ///   capabilities it can hold: root) has the restorer `fchown` a copy
    ///   of the stub's fd (`pidfd_getfd`, no path), and put back the
    ///   set-id bits that chown clears when it could set them (`CAP_FSETID`
    ///   and `CAP_FOWNER`);
    /// * otherwise, when the owner is the stub's file uid and the group one
    ///   of its file groups, the stub itself changes the group (`fchown`
    ///   with its credentials: the kernel's own rule);
    /// * otherwise the file stays the stub's, with a notice.
    fn give_owner(&mut self, s: &SavedFd, (uid, gid): (u32, u32)) -> Result<(), RestoreError> {
        let fc = &self.opts.file_creds;
        if uid == fc.uid[3] && gid == fc.gid[3] {
            return Ok(());
        }
        let what = self
            .m
            .spaces
            .get(s.space as usize)
            .and_then(|sp| match sp {
                Space::Unlinked { path, .. } => Some(path.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let caps = self.opts.caller_caps;
        if caps & CAP_CHOWN != 0 {
            let pid = self.pid();
            let copy = sys::pidfd_getfd(self.pidfd, i32::try_from(s.fd).unwrap_or(-1)).map_err(
                |errno| RestoreError::Memory {
                    pid,
                    what: "taking a copy of a restored file",
                    addr: 0,
                    errno,
                },
            )?;
            let owned = |e: nix::errno::Errno| RestoreError::Open {
                path: format!("{what} (giving it its owner {uid}:{gid})"),
                errno: e,
            };
            nix::unistd::fchown(
                std::os::fd::AsRawFd::as_raw_fd(&copy),
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(owned)?;
            let setid = s.mode.unwrap_or(0) & 0o6000;
            if setid != 0 && caps & (CAP_FSETID | CAP_FOWNER) == CAP_FSETID | CAP_FOWNER {
                let mode = nix::sys::stat::Mode::from_bits_truncate(s.mode.unwrap_or(0) & 0o7777);
                nix::sys::stat::fchmod(std::os::fd::AsRawFd::as_raw_fd(&copy), mode)
                    .map_err(owned)?;
            }
            return Ok(());
        }
        let member = gid == fc.gid[3] || fc.groups.contains(&gid);
        if uid == fc.uid[3] && member {
            let r = self.sys_raw(
                libc::SYS_fchown,
                [s.fd, u64::from(u32::MAX), u64::from(gid), 0, 0, 0],
            )?;
            if r >= 0 {
                return Ok(());
            }
        }
        self.notices.push(format!(
            "{what}, unlinked while open, is restored owned by {}:{} (it was {uid}:{gid}; \
             only a caller who may chown files gives it back)",
            fc.uid[3], fc.gid[3]
        ));
        Ok(())
    }
}

fn errno_io(e: &std::io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}
