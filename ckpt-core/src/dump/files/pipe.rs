//! Pipes and FIFOs: which end each fd is, the pipe's size, and the bytes
//! queued in it, read without consuming them. The pipe is duplicated out of
//! the target with `pidfd_getfd` (the kernel's own ptrace-attach check,
//! after the dump's; the duplicate never leaves this function) and `tee`d
//! into a private pipe of the same size, which is then drained.
//!
//! Trusts: the kernel. Refuses, naming the fd and the pipe: one end of a
//! pipe on fd 3 or above whose other end is open outside the image (fds
//! 0-2 are [`super::external`]'s), a pipe end opened read-write (through
//! `/proc`), and a pipe larger than [`MAX_PIPE_SIZE`]. Any number of read
//! and write descriptions of one pipe (ends reopened through `/proc`) are
//! kept, the queued data by one of them. A packet-mode
//! (`O_DIRECT`) pipe keeps its packet boundaries.
//! A FIFO on fd 0-2 is left to [`super::external`] as before.
//! A FIFO held only for writing keeps no data (what is queued in it is its
//! reader's, outside the image; restore reopens it by path, and the
//! process finds whatever reader opens it then).

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;

use nix::errno::Errno;

use super::DumpError;
use crate::limits::{MAX_PIPE_SIZE, PIPE_PACKET_MAX};
use crate::model::{ByteString, OpenFile, OpenFileKind};
use crate::sys;

/// The pipe inodes with both a read and a write description in the
/// process (from each fd's link and fdinfo flags): both ends are inside.
#[derive(Debug, Default)]
pub(super) struct Ends {
    read: HashSet<u64>,
    write: HashSet<u64>,
    /// Pipes whose write end is in packet mode (`O_DIRECT`).
    packet: HashSet<u64>,
}

impl Ends {
    /// Note fd's pipe end, if it is one (`link` is `pipe:[INO]`).
    pub(super) fn note(&mut self, link: &str, ino: u64, flags: u32) {
        if !link.starts_with("pipe:[") {
            return;
        }
        match flags as i32 & libc::O_ACCMODE {
            libc::O_RDONLY => {
                self.read.insert(ino);
            }
            libc::O_WRONLY => {
                self.write.insert(ino);
                if flags as i32 & libc::O_DIRECT != 0 {
                    self.packet.insert(ino);
                }
            }
            _ => {
                self.read.insert(ino);
                self.write.insert(ino);
            }
        }
    }

    fn both(&self, ino: u64) -> bool {
        self.read.contains(&ino) && self.write.contains(&ino)
    }
}

fn proc_err(pid: i32, what: String) -> impl Fn(Errno) -> DumpError {
    move |e| DumpError::Proc {
        pid,
        what: what.clone(),
        source: e.into(),
    }
}

/// `Some(Pipe)` for an end of a pipe held inside the image, `Some(Fifo)`
/// for a FIFO on fd 3 or above; `None` for anything else (fds 0-2
/// connected outside the image are then [`super::external`]'s).
pub(super) fn classify(
    pid: i32,
    pidfd: &OwnedFd,
    fd: i32,
    link: &str,
    meta: &std::fs::Metadata,
    flags: u32,
    ends: &Ends,
) -> Result<Option<OpenFileKind>, DumpError> {
    use std::os::unix::fs::MetadataExt;
    if !meta.file_type().is_fifo() {
        return Ok(None);
    }
    let refuse = |resource: String| Err(DumpError::Unsupported { pid, resource });
    let anonymous = link.starts_with("pipe:[");
    if !anonymous && !link.starts_with('/') {
        return Ok(None);
    }
    if anonymous && (flags as i32 & libc::O_ACCMODE) == libc::O_RDWR {
        return refuse(format!(
            "fd {fd} ({link}), a pipe opened for reading and writing (through /proc)"
        ));
    }
    if !anonymous && fd <= 2 {
        return Ok(None);
    }
    let end = sys::pidfd_getfd(pidfd, fd).map_err(proc_err(pid, format!("fd {fd} ({link})")))?;
    let reads = (flags as i32 & libc::O_ACCMODE) != libc::O_WRONLY;
    if anonymous && !ends.both(meta.ino()) {
        // One end only: restorable if the other end is closed everywhere
        // (no writer: POLLHUP on a read end; no reader: POLLERR on a write
        // end), since then the image holds all there is of it.
        let revents = sys::poll_now(&end, 0).map_err(proc_err(pid, format!("fd {fd} ({link})")))?;
        let closed = if reads {
            revents & libc::POLLHUP != 0
        } else {
            revents & libc::POLLERR != 0
        };
        if !closed {
            // Its other end is outside the process: connected outside the
            // image (see `external`).
            return Ok(None);
        }
    }
    let size = sys::pipe_size(&end).map_err(proc_err(pid, format!("fd {fd} ({link})")))?;
    if size as usize > MAX_PIPE_SIZE {
        return refuse(format!(
            "fd {fd} ({link}), a pipe of {size} bytes (at most {MAX_PIPE_SIZE} can be saved)"
        ));
    }
    let (data, packets) = if reads {
        queued(&end, size, ends.packet.contains(&meta.ino()))
            .map_err(proc_err(pid, format!("fd {fd} ({link}): its data")))?
    } else {
        (Vec::new(), Vec::new())
    };
    let data = ByteString(data);
    Ok(Some(if anonymous {
        OpenFileKind::Pipe {
            size,
            data,
            packets,
        }
    } else {
        OpenFileKind::Fifo { size, data }
    }))
}

/// The bytes queued in the pipe whose read end is `end`, left in place:
/// one `tee` into a private pipe with as many slots, then drained a page
/// at a time. A read of the private pipe stops at the end of a packet
/// (`tee` keeps the packet marks), so packets show as short reads: their
/// lengths are returned when `packet` (the write end is in packet mode)
/// or when a short read came before the end; otherwise none.
fn queued(end: &OwnedFd, size: u32, packet: bool) -> Result<(Vec<u8>, Vec<u32>), Errno> {
    let want = sys::bytes_queued(end)?;
    if want == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let (r, w) = sys::scratch_pipe()?;
    if sys::pipe_size(&w)? < size {
        sys::set_pipe_size(&w, size)?;
    }
    let copied = match sys::tee(end, &w, usize::MAX >> 1) {
        Err(Errno::EAGAIN) => 0,
        r => r?,
    };
    if copied != want {
        // Someone else reads or writes it: the process is frozen, so
        // only a holder outside the image can.
        return Err(Errno::EBUSY);
    }
    drop(w);
    let mut data = vec![0u8; copied];
    let mut reads = Vec::new();
    let mut at = 0;
    while at < copied {
        let upto = (at + PIPE_PACKET_MAX).min(copied);
        let n = nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&r), &mut data[at..upto])?;
        if n == 0 {
            return Err(Errno::EIO);
        }
        reads.push(u32::try_from(n).map_err(|_| Errno::EINVAL)?);
        at += n;
    }
    let short = reads
        .split_last()
        .is_some_and(|(_, rest)| rest.iter().any(|&n| (n as usize) < PIPE_PACKET_MAX));
    if !(packet || short) {
        reads.clear();
    }
    Ok((data, reads))
}

/// After the table is built: the queued data of a pipe or FIFO held by
/// its first description only (every read description of one pipe saw the
/// same bytes; restore writes them once). A pipe may have any number of
/// read and write descriptions (an end reopened through `/proc`).
pub(super) fn check(descriptions: &mut [OpenFile]) {
    let mut pipes: HashSet<(u64, u64)> = HashSet::new();
    let mut fifos: HashSet<(u64, u64)> = HashSet::new();
    for d in descriptions.iter_mut() {
        match &mut d.kind {
            OpenFileKind::Pipe { data, packets, .. }
                if !data.0.is_empty() && !pipes.insert((d.dev, d.ino)) =>
            {
                *data = ByteString::default();
                packets.clear();
            }
            OpenFileKind::Fifo { data, .. } if !fifos.insert((d.dev, d.ino)) => {
                *data = ByteString::default();
            }
            _ => {}
        }
    }
}
