//! Acting as the caller (docs/HARDENING.md, rules 10 and 11).
//!
//! Every path the caller names (the input image, the output image, a pid
//! file, the caller's own key) is opened by a forked child that first drops
//! to exactly the caller's credentials: `setgroups`, `setresgid`,
//! `setresuid` (all three ids), then proves that it cannot get root back.
//! The child closes every fd it does not need before dropping, does one
//! operation, and passes the resulting fd back over a `socketpair` with
//! `SCM_RIGHTS`, together with a small status word. The privileged parent
//! never resolves a caller-supplied path itself; it only `fstat`s and uses
//! the fds it is handed.
//!
//! When the helper is not setuid, dropping to the caller's ids is a no-op and
//! the same code runs.
//!
//! The operations themselves are in [`op`]; a helper that takes several
//! steps as the caller may instead start the [`worker`], one such child that
//! runs them one after the other on request.
//!
//! The child is a copy of the (non-dumpable) parent; the kernel keeps it
//! non-dumpable after the uid change, so the caller cannot ptrace it or read
//! its memory, and it holds no fd other than the ones named here. No key is
//! ever loaded in the parent while one of these children runs.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, FcntlArg, OFlag};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::stat::SFlag;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{Gid, Uid};

use crate::caller::Caller;
use crate::sys;

pub(crate) mod op;
pub mod worker;

pub(crate) use op::Op;

/// Failures of the fork-and-drop machinery itself.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// `socketpair` failed.
    #[error("cannot create a socket pair for the caller-credential helper")]
    Socket(#[source] Errno),
    /// `fork` failed (for example `RLIMIT_NPROC`).
    #[error("cannot fork the caller-credential helper")]
    Fork(#[source] Errno),
    /// Receiving the helper's answer failed.
    #[error("cannot receive the caller-credential helper's answer")]
    Receive(#[source] Errno),
    /// The helper exited (or was killed) without answering.
    #[error("the caller-credential helper died without answering ({status})")]
    Died { status: String },
    /// The helper's answer was malformed.
    #[error("the caller-credential helper sent a malformed answer")]
    BadReply,
    /// The helper could not drop to the caller's credentials.
    #[error("cannot drop to the caller's credentials ({step})")]
    Drop {
        step: &'static str,
        #[source]
        errno: Errno,
    },
    /// After dropping, the helper could still regain root or capabilities.
    #[error("dropped credentials could be regained; refusing to continue")]
    Regained,
}

/// Opening a caller-named file for reading.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Helper(#[from] HelperError),
    /// The path is a symbolic link (never followed).
    #[error("{path}: is a symbolic link (not followed)")]
    Symlink { path: PathBuf },
    /// `open` failed with the caller's credentials.
    #[error("{path}: cannot open")]
    Open {
        path: PathBuf,
        #[source]
        errno: Errno,
    },
    /// The path is not a regular file.
    #[error("{path}: not a regular file ({kind})")]
    NotRegular { path: PathBuf, kind: &'static str },
    /// The path cannot be passed to the kernel (contains NUL).
    #[error("{path}: invalid path")]
    BadPath { path: PathBuf },
}

impl OpenError {
    /// True when the kernel refused the caller access (EACCES/EPERM).
    pub fn is_access_denied(&self) -> bool {
        matches!(self, OpenError::Open { errno, .. } if is_denial(*errno))
    }
}

/// Creating a caller-named output file.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Helper(#[from] HelperError),
    /// The path does not name a file (empty, ends in `/`, `.` or `..`).
    #[error("{path}: not a valid output file name")]
    BadName { path: PathBuf },
    /// The directory that should hold the file cannot be opened.
    #[error("{path}: cannot open the output directory")]
    OpenDir {
        path: PathBuf,
        #[source]
        errno: Errno,
    },
    /// The output already exists and overwriting was not asked for.
    #[error("{path}: already exists (refusing to overwrite it)")]
    Exists { path: PathBuf },
    /// The output is a symbolic link: refused even with `--force`.
    #[error("{path}: is a symbolic link (refusing to write through or over it)")]
    Symlink { path: PathBuf },
    /// The output is a directory.
    #[error("{path}: is a directory")]
    Directory { path: PathBuf },
    /// The output exists and is not a regular file.
    #[error("{path}: exists and is not a regular file ({kind})")]
    NotRegular { path: PathBuf, kind: &'static str },
    /// Looking at the existing output failed.
    #[error("{path}: cannot check the output path")]
    Stat {
        path: PathBuf,
        #[source]
        errno: Errno,
    },
    /// Creating the temporary file failed.
    #[error("{path}: cannot create the temporary file")]
    Create {
        path: PathBuf,
        #[source]
        errno: Errno,
    },
    /// The created file is not what was asked for (type, owner, links).
    #[error("{path}: the created temporary file is not a fresh regular file of the caller")]
    Unexpected { path: PathBuf },
}

impl CreateError {
    /// True when the kernel refused the caller access (EACCES/EPERM).
    pub fn is_access_denied(&self) -> bool {
        match self {
            CreateError::OpenDir { errno, .. }
            | CreateError::Stat { errno, .. }
            | CreateError::Create { errno, .. } => is_denial(*errno),
            _ => false,
        }
    }
}

/// Putting a finished output under its final name.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Helper(#[from] HelperError),
    /// fsync of the file or its directory failed.
    #[error("{path}: cannot sync to disk")]
    Sync {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The final name appeared in the meantime and overwriting was not asked for.
    #[error("{path}: already exists (refusing to overwrite it)")]
    Exists { path: PathBuf },
    /// The final name is now a symbolic link.
    #[error("{path}: is a symbolic link (refusing to write over it)")]
    Symlink { path: PathBuf },
    /// The final name is now a directory.
    #[error("{path}: is a directory")]
    Directory { path: PathBuf },
    /// The final name exists and is not a regular file.
    #[error("{path}: exists and is not a regular file ({kind})")]
    NotRegular { path: PathBuf, kind: &'static str },
    /// The rename failed.
    #[error("{path}: cannot rename the temporary file into place")]
    Rename {
        path: PathBuf,
        #[source]
        errno: Errno,
    },
}

fn is_denial(errno: Errno) -> bool {
    matches!(errno, Errno::EACCES | Errno::EPERM | Errno::EROFS)
}

// ---------------------------------------------------------------------------
// The fork / drop / answer machinery.

/// What a child sends back on success.
pub(crate) struct Reply {
    pub value: i64,
    pub fds: Vec<OwnedFd>,
}

/// What a child sends back on failure: an operation-specific code, an errno
/// and a value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildFail {
    pub code: u32,
    pub errno: i32,
    pub value: i64,
}

impl ChildFail {
    pub(crate) fn new(code: u32, errno: Errno) -> ChildFail {
        ChildFail {
            code,
            errno: errno as i32,
            value: 0,
        }
    }
    pub(crate) fn errno(&self) -> Errno {
        Errno::from_raw(self.errno)
    }
}

/// Result of a child's operation, before being sent.
pub(crate) struct ChildOk {
    pub value: i64,
    pub fds: Vec<RawFd>,
}

pub(crate) enum RunError {
    Helper(HelperError),
    Op(ChildFail),
}

impl From<HelperError> for RunError {
    fn from(e: HelperError) -> Self {
        RunError::Helper(e)
    }
}

// Reserved child codes (operation codes start at 1).
const CODE_DROP_GROUPS: u32 = 1001;
const CODE_DROP_GID: u32 = 1002;
const CODE_DROP_UID: u32 = 1003;
const CODE_DROP_VERIFY: u32 = 1004;
const CODE_REGAINED: u32 = 1005;
/// The worker could not read a request.
const CODE_BAD_REQUEST: u32 = 1006;

pub(crate) const STATUS_OK: u32 = 0;
pub(crate) const STATUS_FAIL: u32 = 1;
const MSG_LEN: usize = 24;
pub(crate) const MAX_FDS: usize = 2;

pub(crate) fn encode(status: u32, code: u32, errno: i32, value: i64) -> [u8; MSG_LEN] {
    let mut buf = [0u8; MSG_LEN];
    buf[0..4].copy_from_slice(&status.to_ne_bytes());
    buf[4..8].copy_from_slice(&code.to_ne_bytes());
    buf[8..12].copy_from_slice(&errno.to_ne_bytes());
    buf[16..24].copy_from_slice(&value.to_ne_bytes());
    buf
}

fn decode(buf: &[u8; MSG_LEN]) -> (u32, u32, i32, i64) {
    let word = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&buf[r]);
        b
    };
    let mut v = [0u8; 8];
    v.copy_from_slice(&buf[16..24]);
    (
        u32::from_ne_bytes(word(0..4)),
        u32::from_ne_bytes(word(4..8)),
        i32::from_ne_bytes(word(8..12)),
        i64::from_ne_bytes(v),
    )
}

/// Fork a child, drop it to `caller`'s credentials, run `op` in it and
/// collect its answer. `keep` are the parent's fds the child may use; every
/// other fd above 2 is closed in the child before it drops credentials.
pub(crate) fn run_as_caller<F>(caller: &Caller, keep: &[RawFd], op: F) -> Result<Reply, RunError>
where
    F: FnOnce() -> Result<ChildOk, ChildFail>,
{
    // Everything the child needs is computed before the fork.
    let groups: Vec<Gid> = caller.groups.iter().map(|&g| Gid::from_raw(g)).collect();
    let child = fork_for_caller(keep, |sock| {
        let answer = child_drop(caller, &groups).and_then(|()| op());
        if send_answer(sock, &answer).is_ok() {
            0
        } else {
            126
        }
    })?;
    let answer = receive(&child.sock);
    let status = wait_child(child.pid);
    match answer {
        Ok(Some(reply)) => reply,
        Ok(None) => Err(RunError::Helper(HelperError::Died {
            status: status.unwrap_or_else(|e| format!("wait failed: {e}")),
        })),
        Err(e) => Err(RunError::Helper(e)),
    }
}

/// A child forked to act as the caller, and the helper's end of the
/// `SOCK_SEQPACKET` pair between them.
pub(crate) struct CallerChild {
    pub(crate) sock: OwnedFd,
    pub(crate) pid: nix::unistd::Pid,
}

/// Forks a child with a socket pair to it. In the child, every fd above 2
/// but `keep` and its end of the pair is closed, then `body` runs with
/// that end (a panic in it exits with 127) and the child exits with the
/// code `body` returns: it never returns into the caller's frames. `body`
/// must drop to the caller's credentials (`child_drop`) before it does
/// anything as the caller, and should only make a few system calls (the
/// parent may have had other threads at the fork).
pub(crate) fn fork_for_caller(
    keep: &[RawFd],
    body: impl FnOnce(RawFd) -> i32,
) -> Result<CallerChild, HelperError> {
    let (parent_sock, child_sock) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(HelperError::Socket)?;
    let mut keep_sorted: Vec<RawFd> = keep.to_vec();
    keep_sorted.push(child_sock.as_raw_fd());
    keep_sorted.sort_unstable();
    keep_sorted.dedup();
    // SAFETY: the child branch below closes fds, runs `body` (a few system
    // calls, by this function's contract) inside `catch_unwind` and always
    // leaves with `exit_child` (`_exit`), never returning into the
    // caller's frames.
    match unsafe { sys::fork() }.map_err(HelperError::Fork)? {
        None => {
            // Child. Never returns.
            drop(parent_sock);
            let sock = child_sock.as_raw_fd();
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // SAFETY: this is the forked child, which leaves with
                // `exit_child` and never touches the owners of closed fds.
                unsafe { child_close_fds(&keep_sorted) };
                body(sock)
            }))
            .unwrap_or(127);
            sys::exit_child(code)
        }
        Some(pid) => {
            drop(child_sock);
            Ok(CallerChild {
                sock: parent_sock,
                pid,
            })
        }
    }
}

fn wait_child(child: nix::unistd::Pid) -> Result<String, Errno> {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(format!("exit status {code}")),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(format!("killed by {sig}")),
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Receive one answer. `Ok(None)` means the child closed the socket without
/// answering.
#[allow(clippy::type_complexity)]
pub(crate) fn receive(sock: &OwnedFd) -> Result<Option<Result<Reply, RunError>>, HelperError> {
    let mut buf = [0u8; MSG_LEN];
    let (bytes, fds, truncated) =
        recv_with_fds(sock.as_raw_fd(), &mut buf).map_err(HelperError::Receive)?;
    if bytes == 0 {
        return Ok(None);
    }
    if bytes != MSG_LEN || truncated {
        return Err(HelperError::BadReply);
    }
    let (status, code, errno, value) = decode(&buf);
    let fail = ChildFail { code, errno, value };
    Ok(Some(match (status, code) {
        (STATUS_OK, _) => Ok(Reply { value, fds }),
        (STATUS_FAIL, CODE_DROP_GROUPS) => Err(drop_error("setgroups", fail)),
        (STATUS_FAIL, CODE_DROP_GID) => Err(drop_error("setresgid", fail)),
        (STATUS_FAIL, CODE_DROP_UID) => Err(drop_error("setresuid", fail)),
        (STATUS_FAIL, CODE_DROP_VERIFY) => Err(drop_error("verification", fail)),
        (STATUS_FAIL, CODE_REGAINED) => Err(RunError::Helper(HelperError::Regained)),
        (STATUS_FAIL, _) => Err(RunError::Op(fail)),
        _ => return Err(HelperError::BadReply),
    }))
}

/// Send an operation's answer on `sock`: the status word, and the fds of
/// a success (still ours to close).
pub(crate) fn send_answer(
    sock: RawFd,
    answer: &Result<ChildOk, ChildFail>,
) -> Result<usize, Errno> {
    match answer {
        Ok(ok) => {
            let msg = encode(STATUS_OK, 0, 0, ok.value);
            let iov = [IoSlice::new(&msg)];
            if ok.fds.is_empty() {
                sendmsg::<()>(sock, &iov, &[], MsgFlags::empty(), None)
            } else {
                let cmsg = [ControlMessage::ScmRights(&ok.fds)];
                sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::empty(), None)
            }
        }
        Err(fail) => {
            let msg = encode(STATUS_FAIL, fail.code, fail.errno, fail.value);
            sendmsg::<()>(sock, &[IoSlice::new(&msg)], &[], MsgFlags::empty(), None)
        }
    }
}

/// One message from `sock` into `buf`, with the fds it carries (at most
/// [`MAX_FDS`], owned now, close-on-exec): its length, the fds, and
/// whether it or its fds were cut short. Retries on `EINTR`.
pub(crate) fn recv_with_fds(
    sock: RawFd,
    buf: &mut [u8],
) -> Result<(usize, Vec<OwnedFd>, bool), Errno> {
    let mut cmsg_space = nix::cmsg_space!([RawFd; MAX_FDS]);
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        match recvmsg::<()>(
            sock,
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            // SAFETY: these fd numbers were installed in
                            // our table by the recvmsg call that returned
                            // them just now; nothing else owns them, and
                            // each is taken once.
                            fds.extend(
                                raw.into_iter()
                                    .map(|fd| unsafe { sys::own_received_fd(fd) }),
                            );
                        }
                    }
                }
                let truncated = msg
                    .flags
                    .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                return Ok((msg.bytes, fds, truncated));
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn drop_error(step: &'static str, fail: ChildFail) -> RunError {
    RunError::Helper(HelperError::Drop {
        step,
        errno: fail.errno(),
    })
}

/// Close every fd above 2 except `keep` (sorted).
///
/// # Safety
/// Only for the forked child of [`run_as_caller`], which never uses or
/// drops an owner of the closed fds afterwards (it leaves with `_exit`).
pub(crate) unsafe fn child_close_fds(keep: &[RawFd]) {
    let mut next: u32 = 3;
    for &fd in keep {
        let Ok(fd) = u32::try_from(fd) else { continue };
        if fd < next {
            continue;
        }
        // Errors are impossible for valid ranges; a failure leaves fds open,
        // which the dropped child does not use.
        // SAFETY: this function's contract: no owner of these fds is used
        // or dropped afterwards in this process.
        let _ = unsafe { sys::close_range(next, fd - 1) };
        next = fd + 1;
    }
    // SAFETY: as above.
    let _ = unsafe { sys::close_range(next, u32::MAX) };
}

/// Drop to exactly the caller's credentials and prove they stick.
pub(crate) fn child_drop(caller: &Caller, groups: &[Gid]) -> Result<(), ChildFail> {
    let uid = Uid::from_raw(caller.uid);
    let gid = Gid::from_raw(caller.gid);
    let current_groups = sorted_groups().map_err(|e| ChildFail::new(CODE_DROP_GROUPS, e))?;
    if current_groups != caller.groups {
        nix::unistd::setgroups(groups).map_err(|e| ChildFail::new(CODE_DROP_GROUPS, e))?;
    }
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| ChildFail::new(CODE_DROP_GID, e))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| ChildFail::new(CODE_DROP_UID, e))?;

    // Verify what the kernel now says.
    let verify = |ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(ChildFail::new(CODE_DROP_VERIFY, Errno::EPERM))
        }
    };
    let u = nix::unistd::getresuid().map_err(|e| ChildFail::new(CODE_DROP_VERIFY, e))?;
    let g = nix::unistd::getresgid().map_err(|e| ChildFail::new(CODE_DROP_VERIFY, e))?;
    verify(u.real == uid && u.effective == uid && u.saved == uid)?;
    verify(g.real == gid && g.effective == gid && g.saved == gid)?;
    verify(sorted_groups().map_err(|e| ChildFail::new(CODE_DROP_VERIFY, e))? == caller.groups)?;

    if caller.uid != 0 {
        // Prove that root cannot be regained (OpenSSH permanently_set_uid).
        let root_u = Uid::from_raw(0);
        let root_g = Gid::from_raw(0);
        if nix::unistd::setresuid(root_u, root_u, root_u).is_ok()
            || nix::unistd::setresgid(root_g, root_g, root_g).is_ok()
        {
            return Err(ChildFail::new(CODE_REGAINED, Errno::EPERM));
        }
        if caller.privileged && !capabilities_empty() {
            return Err(ChildFail::new(CODE_REGAINED, Errno::EPERM));
        }
    }
    Ok(())
}

fn sorted_groups() -> Result<Vec<u32>, Errno> {
    let mut g: Vec<u32> = nix::unistd::getgroups()?
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    g.sort_unstable();
    g.dedup();
    Ok(g)
}

/// True when the permitted, effective and ambient capability sets are empty.
fn capabilities_empty() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let mut seen = 0;
    for line in status.lines() {
        for key in ["CapPrm:", "CapEff:", "CapAmb:"] {
            if let Some(rest) = line.strip_prefix(key) {
                if u64::from_str_radix(rest.trim(), 16) != Ok(0) {
                    return false;
                }
                seen += 1;
            }
        }
    }
    seen == 3
}

fn file_kind(mode: u32) -> &'static str {
    match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => "regular file",
        SFlag::S_IFDIR => "directory",
        SFlag::S_IFLNK => "symbolic link",
        SFlag::S_IFIFO => "fifo",
        SFlag::S_IFSOCK => "socket",
        SFlag::S_IFCHR => "character device",
        SFlag::S_IFBLK => "block device",
        _ => "unknown file type",
    }
}

pub(crate) fn is_type(mode: u32, t: SFlag) -> bool {
    mode & SFlag::S_IFMT.bits() == t.bits()
}

fn cstring(path: &OsStr) -> Option<CString> {
    CString::new(path.as_bytes()).ok()
}

// ---------------------------------------------------------------------------
// Operations.

pub(crate) const OP_OPEN: u32 = 1;
pub(crate) const OP_NOT_REGULAR: u32 = 2;
pub(crate) const OP_OPEN_DIR: u32 = 3;
pub(crate) const OP_EXISTS: u32 = 4;
const OP_SYMLINK: u32 = 5;
const OP_DIRECTORY: u32 = 6;
const OP_STAT: u32 = 7;
pub(crate) const OP_CREATE: u32 = 8;
pub(crate) const OP_RENAME: u32 = 9;
/// The ptrace-read probe ([`crate::access::caller_may_ptrace_attach`]).
pub(crate) const OP_PROBE: u32 = 10;

/// Run `op` with the caller's credentials: in the [worker](worker) when one
/// runs for `caller`, else in a child forked for it. `fds` are the fds it
/// takes ([`Op::fd_count`]).
pub(crate) fn run_op(caller: &Caller, op: Op, fds: &[BorrowedFd<'_>]) -> Result<Reply, RunError> {
    if let Some(answer) = worker::call(caller, &op, fds) {
        return answer;
    }
    let keep: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    run_as_caller(caller, &keep, || op.run(fds))
}

/// Open `path` with `flags` as the caller (in the worker or a forked
/// child) and take the one fd passed back; with `regular_only` the child
/// refuses anything but a regular file. A symbolic link refused by
/// `O_NOFOLLOW` is [`OpenError::Symlink`].
fn open_as_caller(
    caller: &Caller,
    path: &Path,
    flags: OFlag,
    regular_only: bool,
) -> Result<OwnedFd, OpenError> {
    let c_path = cstring(path.as_os_str()).ok_or_else(|| OpenError::BadPath {
        path: path.to_owned(),
    })?;
    let reply = run_op(
        caller,
        Op::Open {
            path: c_path,
            flags,
            regular_only,
        },
        &[],
    );
    let path_buf = || path.to_owned();
    let mut reply = match reply {
        Ok(r) => r,
        Err(RunError::Helper(h)) => return Err(h.into()),
        Err(RunError::Op(f)) => {
            return Err(match f.code {
                OP_OPEN if f.errno() == Errno::ELOOP && flags.contains(OFlag::O_NOFOLLOW) => {
                    OpenError::Symlink { path: path_buf() }
                }
                OP_NOT_REGULAR => OpenError::NotRegular {
                    path: path_buf(),
                    kind: file_kind(u32::try_from(f.value).unwrap_or(0)),
                },
                _ => OpenError::Open {
                    path: path_buf(),
                    errno: f.errno(),
                },
            })
        }
    };
    match (reply.fds.pop(), reply.fds.is_empty()) {
        (Some(fd), true) => Ok(fd),
        _ => Err(HelperError::BadReply.into()),
    }
}

/// Check again, on the fd we actually hold, that it is a regular file.
fn require_regular(fd: &OwnedFd, path: &Path) -> Result<(), OpenError> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|errno| OpenError::Open {
        path: path.to_owned(),
        errno,
    })?;
    if !is_type(st.st_mode, SFlag::S_IFREG) {
        return Err(OpenError::NotRegular {
            path: path.to_owned(),
            kind: file_kind(st.st_mode),
        });
    }
    Ok(())
}

/// Open `path` for reading as the caller: `O_RDONLY | O_NOFOLLOW |
/// O_CLOEXEC | O_NONBLOCK` (so a fifo cannot block us), then `fstat` on the
/// fd: only a regular file is accepted.
pub fn open_for_read(caller: &Caller, path: &Path) -> Result<File, OpenError> {
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_CLOEXEC
        | OFlag::O_NOCTTY
        | OFlag::O_NONBLOCK;
    let fd = open_as_caller(caller, path, flags, true)?;
    require_regular(&fd, path)?;
    nix::fcntl::fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_RDONLY)).map_err(|errno| {
        OpenError::Open {
            path: path.to_owned(),
            errno,
        }
    })?;
    Ok(File::from(fd))
}

/// Look `path` up as the caller: an `O_PATH | O_NOFOLLOW` fd for it, which
/// the caller could have opened itself (every directory on the way
/// searchable by the caller). Nothing is read through it; the dump uses it
/// to confirm that a path it found with privilege (an inotify watch's) is
/// one the caller can see, and is the very file.
pub fn open_path(caller: &Caller, path: &Path) -> Result<OwnedFd, OpenError> {
    open_as_caller(
        caller,
        path,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        false,
    )
}

/// Open the file that process `pid` holds as fd `fd` again, for reading,
/// as the caller: a child holding exactly the caller's credentials opens
/// the magic link `/proc/PID/fd/FD` (a path made here from two numbers,
/// never from the caller) `O_RDONLY | O_NONBLOCK`, which the kernel allows
/// only if the caller may read the target's fds (ptrace read access) *and*
/// may read the file itself (its permission bits against the caller's ids
/// and groups); only a regular file is accepted, and the fd is passed
/// back. The dump uses it to read the content of a file the target holds
/// open write-only and unlinked: the caller could have read it through
/// the same path themselves.
pub fn open_fd_for_read(caller: &Caller, pid: i32, fd: i32) -> Result<File, OpenError> {
    let path = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
    // Following the magic link is the point: it names the file the target
    // holds, whatever its (gone) path was.
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
    let fd = open_as_caller(caller, &path, flags, true)?;
    require_regular(&fd, &path)?;
    Ok(File::from(fd))
}

/// Open a caller-named image for reading (see [`open_for_read`]).
pub fn open_image_for_read(caller: &Caller, path: &Path) -> Result<File, OpenError> {
    open_for_read(caller, path)
}

/// Split `path` into (directory, final component), refusing names that do
/// not designate a file.
fn split_output(path: &Path) -> Option<(OsString, OsString)> {
    let bytes = path.as_os_str().as_bytes();
    let (dir, name): (&[u8], &[u8]) = match bytes.iter().rposition(|&b| b == b'/') {
        Some(0) => (b"/", &bytes[1..]),
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (b".", bytes),
    };
    if name.is_empty() || name == b"." || name == b".." || name.contains(&0) || dir.contains(&0) {
        return None;
    }
    Some((
        OsStr::from_bytes(dir).to_owned(),
        OsStr::from_bytes(name).to_owned(),
    ))
}

fn temp_name(name: &OsStr) -> Result<OsString, Errno> {
    let mut random = [0u8; 8];
    getrandom::getrandom(&mut random).map_err(|_| Errno::EIO)?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let mut tmp = OsString::from(".");
    if name.len() <= 200 {
        tmp.push(name);
    } else {
        tmp.push("ckpt-output");
    }
    tmp.push(".tmp.");
    tmp.push(suffix);
    Ok(tmp)
}

/// An output file being written: an unnamed (`O_TMPFILE`) or temporary
/// file in the final directory, created by the caller, mode 0600.
/// [`PendingOutput::commit`] links or renames it into place; dropping it
/// uncommitted removes it (as the caller; an unnamed file just vanishes).
#[derive(Debug)]
pub struct PendingOutput {
    /// The temporary file, open read-write.
    pub file: File,
    dir: OwnedFd,
    /// The file has no name yet (`O_TMPFILE`): `tmp_name` is used only
    /// for a `--force` replacement.
    unnamed: bool,
    tmp_name: CString,
    final_name: CString,
    final_path: PathBuf,
    force: bool,
    caller: Caller,
    committed: bool,
}

/// Create the temporary file for `final_path`, as the caller.
///
/// The directory is opened as the caller; if the final name exists it is
/// refused unless `force` (and refused even with `force` when it is a
/// symbolic link, a directory or not a regular file). The temporary file is
/// `.<name>.tmp.<random>` created with `O_CREAT | O_EXCL | O_NOFOLLOW`, mode
/// 0600, in the same directory.
///
/// Where the file system supports it the file is first created without a
/// name (`O_TMPFILE`, mode 0600): a helper that dies before the commit then
/// leaves nothing at all; the named temporary file is the fallback.
pub fn create_output(
    caller: &Caller,
    final_path: &Path,
    force: bool,
) -> Result<PendingOutput, CreateError> {
    let bad = || CreateError::BadName {
        path: final_path.to_owned(),
    };
    let (dir, name) = split_output(final_path).ok_or_else(bad)?;
    let tmp = temp_name(&name).map_err(|errno| CreateError::Create {
        path: final_path.to_owned(),
        errno,
    })?;
    let c_dir = cstring(&dir).ok_or_else(bad)?;
    let c_name = cstring(&name).ok_or_else(bad)?;
    let c_tmp = cstring(&tmp).ok_or_else(bad)?;

    let reply = run_op(
        caller,
        Op::Create {
            dir: c_dir,
            name: c_name.clone(),
            tmp: c_tmp.clone(),
            force,
        },
        &[],
    );
    let path = || final_path.to_owned();
    let reply = match reply {
        Ok(r) => r,
        Err(RunError::Helper(h)) => return Err(h.into()),
        Err(RunError::Op(f)) => {
            let errno = f.errno();
            return Err(match f.code {
                OP_OPEN_DIR => CreateError::OpenDir {
                    path: PathBuf::from(&dir),
                    errno,
                },
                OP_EXISTS => CreateError::Exists { path: path() },
                OP_SYMLINK => CreateError::Symlink { path: path() },
                OP_DIRECTORY => CreateError::Directory { path: path() },
                OP_NOT_REGULAR => CreateError::NotRegular {
                    path: path(),
                    kind: file_kind(u32::try_from(f.value).unwrap_or(0)),
                },
                OP_STAT => CreateError::Stat {
                    path: path(),
                    errno,
                },
                _ => CreateError::Create {
                    path: path(),
                    errno,
                },
            });
        }
    };
    let unnamed = reply.value == 1;
    let mut fds = reply.fds.into_iter();
    let (Some(dirfd), Some(fd), None) = (fds.next(), fds.next(), fds.next()) else {
        return Err(HelperError::BadReply.into());
    };
    let pending = PendingOutput {
        file: File::from(fd),
        dir: dirfd,
        unnamed,
        tmp_name: c_tmp,
        final_name: c_name,
        final_path: final_path.to_owned(),
        force,
        caller: caller.clone(),
        committed: false,
    };
    // From here on, dropping `pending` removes the temporary file.
    let st =
        nix::sys::stat::fstat(pending.file.as_raw_fd()).map_err(|errno| CreateError::Create {
            path: path(),
            errno,
        })?;
    let dst =
        nix::sys::stat::fstat(pending.dir.as_raw_fd()).map_err(|errno| CreateError::OpenDir {
            path: PathBuf::from(&dir),
            errno,
        })?;
    if !is_type(st.st_mode, SFlag::S_IFREG)
        || !is_type(dst.st_mode, SFlag::S_IFDIR)
        || st.st_uid != caller.uid
        || st.st_nlink != u64::from(!pending.unnamed)
        || st.st_mode & 0o7777 != 0o600
    {
        return Err(CreateError::Unexpected { path: path() });
    }
    Ok(pending)
}

/// In the child: refuse an existing final name according to the rules.
pub(crate) fn check_existing(dirfd: RawFd, name: &CString, force: bool) -> Result<(), ChildFail> {
    match nix::sys::stat::fstatat(Some(dirfd), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => {
            let mode = st.st_mode;
            let fail = |code| ChildFail {
                code,
                errno: 0,
                value: i64::from(mode),
            };
            if is_type(mode, SFlag::S_IFLNK) {
                Err(fail(OP_SYMLINK))
            } else if is_type(mode, SFlag::S_IFDIR) {
                Err(fail(OP_DIRECTORY))
            } else if !is_type(mode, SFlag::S_IFREG) {
                Err(fail(OP_NOT_REGULAR))
            } else if !force {
                Err(fail(OP_EXISTS))
            } else {
                Ok(())
            }
        }
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(ChildFail::new(OP_STAT, e)),
    }
}

/// In the commit child: give the unnamed file `fd` its final `name` in
/// `dirfd`, through `/proc/self/fd` (`linkat` with `AT_EMPTY_PATH` would
/// need `CAP_DAC_READ_SEARCH`). Without `force` the link never replaces
/// anything; with it, an existing name is replaced by linking under `tmp`
/// and renaming over it.
pub(crate) fn link_unnamed(
    dir: BorrowedFd<'_>,
    fd: RawFd,
    tmp: &CString,
    name: &CString,
    force: bool,
) -> Result<(), ChildFail> {
    let dirfd = dir.as_raw_fd();
    let Ok(proc_path) = CString::new(format!("/proc/self/fd/{fd}")) else {
        return Err(ChildFail::new(OP_RENAME, Errno::EINVAL));
    };
    let link = |to: &CString| {
        nix::unistd::linkat(
            None,
            proc_path.as_c_str(),
            Some(dirfd),
            to.as_c_str(),
            AtFlags::AT_SYMLINK_FOLLOW,
        )
    };
    match link(name) {
        Ok(()) => Ok(()),
        Err(Errno::EEXIST) if force => {
            link(tmp).map_err(|e| ChildFail::new(OP_RENAME, e))?;
            sys::renameat2(dir, tmp, name, 0).map_err(|e| {
                let _ = nix::unistd::unlinkat(
                    Some(dirfd),
                    tmp.as_c_str(),
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                );
                ChildFail::new(OP_RENAME, e)
            })
        }
        Err(Errno::EEXIST) => Err(ChildFail::new(OP_EXISTS, Errno::EEXIST)),
        Err(e) => Err(ChildFail::new(OP_RENAME, e)),
    }
}

/// What [`PendingOutput::put_in_place`] fsyncs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Neither the file nor the directory.
    None,
    /// The directory only (the file is already durable).
    Directory,
    /// The file, then the directory.
    FileAndDirectory,
}

impl PendingOutput {
    /// The final path this output will be committed to.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// fsync the file, put it into place as the caller (an unnamed file
    /// with `linkat`, which never replaces, or with `force` by linking it
    /// under the temporary name and renaming that over; a named one with
    /// `RENAME_NOREPLACE` unless `force`; never onto a symbolic link or a
    /// directory), then fsync the directory.
    pub fn commit(self) -> Result<(), CommitError> {
        self.put_in_place(Durability::FileAndDirectory)
    }

    /// [`Self::commit`] for a file whose content the caller has already
    /// fsynced (through any fd of the same file, as the image writer
    /// does): puts it into place and fsyncs the directory, without a
    /// second fsync of the file (which costs a disk cache flush even when
    /// nothing is dirty).
    pub fn commit_synced(self) -> Result<(), CommitError> {
        self.put_in_place(Durability::Directory)
    }

    /// Put the file into place exactly as [`Self::commit`] does, but
    /// without either fsync: for a file that means nothing after a crash
    /// (a pid file names a process that a crash ends). Every reader still
    /// sees the whole content under the final name, never part of it (it
    /// is written before it is linked in); only after a crash may the name
    /// be missing or name an empty file.
    pub fn commit_unsynced(self) -> Result<(), CommitError> {
        self.put_in_place(Durability::None)
    }

    fn put_in_place(mut self, durable: Durability) -> Result<(), CommitError> {
        let path = self.final_path.clone();
        if durable == Durability::FileAndDirectory {
            self.file.sync_all().map_err(|source| CommitError::Sync {
                path: path.clone(),
                source,
            })?;
        }
        let reply = run_op(
            &self.caller,
            Op::Put {
                name: self.final_name.clone(),
                tmp: self.tmp_name.clone(),
                force: self.force,
                unnamed: self.unnamed,
            },
            &[self.dir.as_fd(), self.file.as_fd()],
        );
        match reply {
            Ok(_) => {}
            Err(RunError::Helper(h)) => return Err(h.into()),
            Err(RunError::Op(f)) => {
                return Err(match f.code {
                    OP_EXISTS => CommitError::Exists { path },
                    OP_SYMLINK => CommitError::Symlink { path },
                    OP_DIRECTORY => CommitError::Directory { path },
                    OP_NOT_REGULAR => CommitError::NotRegular {
                        path,
                        kind: file_kind(u32::try_from(f.value).unwrap_or(0)),
                    },
                    _ => CommitError::Rename {
                        path,
                        errno: f.errno(),
                    },
                })
            }
        }
        self.committed = true;
        if durable == Durability::None {
            return Ok(());
        }
        nix::unistd::fsync(self.dir.as_raw_fd()).map_err(|errno| CommitError::Sync {
            path,
            source: std::io::Error::from(errno),
        })
    }
}

impl Drop for PendingOutput {
    fn drop(&mut self) {
        if self.committed || self.unnamed {
            // An unnamed file vanishes with its last fd.
            return;
        }
        // Best effort: if this fails the temporary file stays behind under
        // its dot-name; it never appears under the final name.
        let _ = run_op(
            &self.caller,
            Op::Unlink {
                tmp: self.tmp_name.clone(),
            },
            &[self.dir.as_fd()],
        );
    }
}
