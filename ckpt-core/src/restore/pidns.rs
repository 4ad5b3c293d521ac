//! A pid namespace of its own for a restore (`--pid-namespace`): the
//! restored processes get exactly their saved pids and tids, inside a new
//! pid namespace, without anyone choosing pids in the machine's own.
//!
//! The namespaces are made the way the caller could make them without
//! privilege (`unshare --user --map-current-user --pid --mount-proc`), so
//! the kernel applies the caller's own limits (a machine that forbids
//! unprivileged user namespaces refuses this too):
//!
//! 1. a child that has dropped to the caller's credentials unshares a user
//!    namespace, maps its own uid and gid there (one id each, setgroups
//!    denied), then unshares a mount and a pid namespace, and exits once
//!    the restorer holds the namespaces;
//! 2. the restorer forks the namespace's init, its *keeper* (pid 1 inside):
//!    it joins the user and mount namespaces as the caller, mounts a
//!    `/proc` of the new pid namespace, and, while the restore is built,
//!    sets `ns_last_pid` on request so each injected `clone` gets its saved
//!    pid (the only thing it holds capabilities for, and only in the
//!    caller's user namespace). When the restorer closes the control
//!    socket it drops every capability, waits for the restorer to exit and
//!    then reaps the namespace's orphans until none is left;
//! 3. the stubs are forked into the pid namespace and join the user and
//!    mount namespaces before they take the caller's ids; they drop every
//!    capability at once (see `stub`).
//!
//! Inside the user namespace only the caller's uid and gid are mapped,
//! uid 0 is not: a set-user-id-root program executed there runs with the
//! caller's ids, and capabilities held there reach only what that
//! namespace owns (the pid and mount namespaces made here).
//!
//! Owns: the namespace fds, the keeper (killed if the restore fails), the
//! translation between the pids the processes see and the restorer's.
//! Trusts: the kernel; the decided credentials (the caller's).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use super::{RestoreCredentials, RestoreError};
use crate::sys;

/// `_LINUX_CAPABILITY_VERSION_3`.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The namespaces of one restore and their keeper.
pub(super) struct PidNamespace {
    user: OwnedFd,
    mnt: OwnedFd,
    /// The new pid namespace (the maker's `pid_for_children`).
    pid: OwnedFd,
    /// The restorer's own pid namespace, to go back to after a fork.
    own_pid: OwnedFd,
    /// The keeper's end is in the keeper; ours asks for pids.
    control: Option<OwnedFd>,
    keeper: OwnedFd,
    keeper_pid: i32,
}

impl std::fmt::Debug for PidNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PidNamespace")
            .field("keeper_pid", &self.keeper_pid)
            .finish_non_exhaustive()
    }
}

fn failed(step: &'static str) -> impl Fn(Errno) -> RestoreError {
    move |errno| RestoreError::PidNamespace { step, errno }
}

/// The steps of the namespace maker, as it reports them.
const MAKER_STEPS: [&str; 9] = [
    "taking your credentials",
    "unshare(CLONE_NEWUSER) as you (are user namespaces allowed for you?)",
    "writing uid_map",
    "writing setgroups",
    "writing gid_map",
    "unshare(CLONE_NEWNS | CLONE_NEWPID)",
    "making the mounts private",
    "the restorer went away",
    "forking the keeper",
];

impl PidNamespace {
    /// Make the namespaces for a restore with `creds` (the caller's) and
    /// start their keeper. The restorer must be single-threaded.
    pub(super) fn create(creds: &RestoreCredentials) -> Result<PidNamespace, RestoreError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(RestoreError::Unsupported(
                "a pid namespace without the installed (setuid) helper".into(),
            ));
        }
        match sys::settled_thread_count().map_err(RestoreError::Spawn)? {
            1 => {}
            n => return Err(RestoreError::Threaded(n)),
        }
        let own_pid = open_ns("/proc/self/ns/pid", "opening our own pid namespace")?;
        let (ours, theirs) = seqpacket_pair().map_err(failed("a control socket"))?;
        let made = make_namespaces(creds, ours, theirs)?;
        let ns = PidNamespace {
            user: made.user,
            mnt: made.mnt,
            pid: made.pid,
            own_pid,
            control: Some(made.control),
            keeper: made.keeper,
            keeper_pid: made.keeper_pid,
        };
        match ns.read_reply() {
            Ok(0) => Ok(ns),
            Ok(code) => {
                let (_, errno) = split_code(code);
                ns.kill();
                Err(RestoreError::PidNamespace {
                    step: "mounting /proc for the new pid namespace",
                    errno: Errno::from_raw(errno),
                })
            }
            Err(e) => {
                ns.kill();
                Err(e)
            }
        }
    }

    /// The keeper's pid in the restorer's pid namespace.
    pub(super) fn keeper_pid(&self) -> i32 {
        self.keeper_pid
    }

    /// The user and mount namespace fds a stub joins.
    pub(super) fn join_fds(&self) -> (RawFd, RawFd) {
        (self.user.as_raw_fd(), self.mnt.as_raw_fd())
    }

    /// Fork the next child of the restorer into the new pid namespace.
    pub(super) fn enter(&self) -> Result<(), RestoreError> {
        enter_pid_ns(&self.pid)
    }

    /// Fork children of the restorer in its own pid namespace again.
    pub(super) fn leave(&self) -> Result<(), RestoreError> {
        leave_pid_ns(&self.own_pid)
    }

    /// Make `want` the next pid the new namespace hands out (the keeper
    /// writes `ns_last_pid` there).
    pub(super) fn reserve(&self, want: i32) -> Result<(), RestoreError> {
        if want <= 1 {
            return Err(RestoreError::PidTaken(want));
        }
        let control = self.control.as_ref().ok_or_else(|| {
            RestoreError::Invalid("the pid namespace's keeper was released".into())
        })?;
        let sent = nix::sys::socket::send(
            control.as_raw_fd(),
            &want.to_ne_bytes(),
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        )
        .map_err(failed("asking the keeper for a pid"))?;
        if sent != 4 {
            return Err(failed("asking the keeper for a pid")(Errno::EIO));
        }
        match self.read_reply()? {
            0 => Ok(()),
            e => Err(RestoreError::PidNamespace {
                step: "setting ns_last_pid",
                errno: Errno::from_raw(e),
            }),
        }
    }

    fn read_reply(&self) -> Result<i32, RestoreError> {
        let control = self.control.as_ref().ok_or_else(|| {
            RestoreError::Invalid("the pid namespace's keeper was released".into())
        })?;
        let mut buf = [0u8; 4];
        let n = loop {
            match nix::unistd::read(control.as_raw_fd(), &mut buf) {
                Err(Errno::EINTR) => continue,
                r => break r.map_err(failed("reading the keeper's answer"))?,
            }
        };
        if n != 4 {
            return Err(RestoreError::PidNamespace {
                step: "the keeper exited",
                errno: Errno::EPIPE,
            });
        }
        Ok(i32::from_ne_bytes(buf))
    }

    /// The restore is complete (its root is `root` in the namespace): the
    /// keeper drops its capabilities and only reaps from now on; it stays,
    /// as the namespace's init, until no other process is left there.
    pub(super) fn release(mut self, root: i32) {
        if let Some(control) = &self.control {
            let _ = nix::sys::socket::send(
                control.as_raw_fd(),
                &root.saturating_neg().to_ne_bytes(),
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            );
        }
        self.control = None;
    }

    /// The restore failed: the keeper, and with it everything in the
    /// namespace, is killed.
    /// (The keeper is not our child: the outer init reaps it.)
    pub(super) fn kill(self) {
        let _ = sys::pidfd_send_signal(&self.keeper, libc::SIGKILL);
    }
}

/// The pid, in the restorer's namespace, of the child `inner` (its pid in
/// the new namespace) that the thread `parent` just forked.
pub(super) fn outer_child(parent: i32, inner: i32) -> Result<i32, RestoreError> {
    let list = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .map_err(|e| io_failed("reading the children of the forking process", e))?;
    // Only a child in a namespace nested in ours: another child of the
    // restorer (its caller-credential worker, say) could have the same
    // number in ours.
    let ours = nspid(&format!("/proc/{}/status", std::process::id())).map_or(1, |p| p.len());
    for c in list
        .split_whitespace()
        .filter_map(|s| s.parse::<i32>().ok())
    {
        let pids = nspid(&format!("/proc/{c}/status")).unwrap_or_default();
        if pids.len() > ours && pids.last() == Some(&inner) {
            return Ok(c);
        }
    }
    Err(RestoreError::PidNamespace {
        step: "finding the new child in the restorer's pid namespace",
        errno: Errno::ESRCH,
    })
}

/// The tid, in the restorer's namespace, of the thread `inner` (its tid in
/// the new namespace) of process `leader`.
pub(super) fn outer_thread(leader: i32, inner: i32) -> Result<i32, RestoreError> {
    let dir = std::fs::read_dir(format!("/proc/{leader}/task"))
        .map_err(|e| io_failed("listing the threads of the cloning process", e))?;
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if innermost(&format!("/proc/{leader}/task/{tid}/status")) == Some(inner) {
            return Ok(tid);
        }
    }
    Err(RestoreError::PidNamespace {
        step: "finding the new thread in the restorer's pid namespace",
        errno: Errno::ESRCH,
    })
}

fn io_failed(step: &'static str, e: std::io::Error) -> RestoreError {
    RestoreError::PidNamespace {
        step,
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// The last (innermost) id of the `NSpid:` line of a status file.
fn innermost(status: &str) -> Option<i32> {
    nspid(status)?.last().copied()
}

/// The `NSpid:` line of a `status` file: the pid in each pid namespace,
/// outermost first.
fn nspid(status: &str) -> Option<Vec<i32>> {
    let text = std::fs::read_to_string(status).ok()?;
    let line = text.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace()
        .skip(1)
        .map(|w| w.parse().ok())
        .collect()
}

fn open_ns(path: &str, step: &'static str) -> Result<OwnedFd, RestoreError> {
    let fd = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(failed(step))?;
    // SAFETY: `open` just returned this new descriptor; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn enter_pid_ns(fd: &OwnedFd) -> Result<(), RestoreError> {
    // SAFETY: a namespace fd we own and a constant flag.
    let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWPID) };
    Errno::result(r)
        .map(drop)
        .map_err(failed("setns(CLONE_NEWPID)"))
}

fn leave_pid_ns(own: &OwnedFd) -> Result<(), RestoreError> {
    // SAFETY: as in `enter_pid_ns`; our own (active) pid namespace.
    let r = unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWPID) };
    Errno::result(r)
        .map(drop)
        .map_err(failed("setns(CLONE_NEWPID) back"))
}

fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd), Errno> {
    nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
}

/// A step number and an errno in one reported word.
fn split_code(code: i32) -> (usize, i32) {
    let step = usize::try_from(code >> 16).unwrap_or(usize::MAX);
    (step, code & 0xffff)
}

/// The namespaces the maker made (fds of the restorer), and their keeper.
struct Made {
    user: OwnedFd,
    mnt: OwnedFd,
    pid: OwnedFd,
    control: OwnedFd,
    keeper: OwnedFd,
    keeper_pid: i32,
}

/// Fork the maker (step 1 of the module doc), write its id maps, let it
/// fork the keeper, take the keeper's namespaces, let the maker exit and
/// reap it. `ours`/`theirs`: the two ends of the control socket.
fn make_namespaces(
    creds: &RestoreCredentials,
    ours: OwnedFd,
    theirs: OwnedFd,
) -> Result<Made, RestoreError> {
    let uid = creds.uid[1];
    let gid = creds.gid[1];
    let groups: Vec<libc::gid_t> = creds.groups.clone();
    let parent = nix::unistd::getpid().as_raw();
    let me = sys::pidfd_open(parent).map_err(failed("pidfd_open(restorer)"))?;
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(failed("a pipe for the namespace maker"))?;
    let (hold_r, hold_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(failed("a pipe for the namespace maker"))?;
    let fds = MakerFds {
        report: report_w.as_raw_fd(),
        hold: hold_r.as_raw_fd(),
        control: theirs.as_raw_fd(),
        restorer: me.as_raw_fd(),
    };
    // SAFETY: the restorer is single-threaded (checked by `create`); the
    // child makes only raw, async-signal-safe system calls on memory
    // prepared above and ends in `_exit` (so does its own child, the
    // keeper).
    let forked = unsafe { libc::fork() };
    if forked == 0 {
        // SAFETY: in the forked child, see above.
        unsafe { maker(creds, &groups, parent, fds) }
    }
    drop(report_w);
    drop(hold_r);
    drop(theirs);
    drop(me);
    let maker_pid = Errno::result(forked).map_err(failed("forking the namespace maker"))?;
    // The maker never reaps the keeper: while the maker has not exited,
    // the keeper's pid (alive or a zombie) cannot name another process.
    // The maker is our child, so its exit is seen here without reaping it.
    let maker_running = || {
        matches!(
            nix::sys::wait::waitid(
                nix::sys::wait::Id::Pid(nix::unistd::Pid::from_raw(maker_pid)),
                nix::sys::wait::WaitPidFlag::WEXITED
                    | nix::sys::wait::WaitPidFlag::WNOHANG
                    | nix::sys::wait::WaitPidFlag::WNOWAIT,
            ),
            Ok(nix::sys::wait::WaitStatus::StillAlive)
        )
    };
    let mut keeper_seen = None;
    let made = (|| {
        expect_ok(&report_r)?;
        // Its maps, written by us (it cannot open its own /proc files: it
        // is not dumpable), exactly what it could write itself: its own
        // uid and gid, setgroups denied.
        let write = |file: &str, text: String, step: &'static str| {
            std::fs::write(format!("/proc/{maker_pid}/{file}"), text)
                .map_err(|e| io_failed(step, e))
        };
        write("setgroups", "deny".into(), MAKER_STEPS[3])?;
        write("uid_map", format!("{uid} {uid} 1\n"), MAKER_STEPS[2])?;
        write("gid_map", format!("{gid} {gid} 1\n"), MAKER_STEPS[4])?;
        nix::unistd::write(&hold_w, b"m").map_err(failed(MAKER_STEPS[7]))?;
        expect_ok(&report_r)?;
        let keeper_pid = read_word(&report_r)?;
        keeper_seen = Some(keeper_pid);
        let keeper = sys::pidfd_open(keeper_pid).map_err(failed("pidfd_open(keeper)"))?;
        let ns = |name: &str, step| open_ns(&format!("/proc/{keeper_pid}/ns/{name}"), step);
        let (user, mnt, pid) = (
            ns("user", "opening the new user namespace")?,
            ns("mnt", "opening the new mount namespace")?,
            ns("pid", "opening the new pid namespace")?,
        );
        // The pidfd and the namespaces are the keeper's only if its pid
        // still named it all along (a caller may kill the maker and the
        // keeper and race for the pid): checked once they are open.
        if !maker_running() {
            return Err(RestoreError::PidNamespace {
                step: "the namespace maker exited before its namespaces were taken",
                errno: Errno::ESRCH,
            });
        }
        Ok::<_, RestoreError>(Made {
            user,
            mnt,
            pid,
            control: ours,
            keeper,
            keeper_pid,
        })
    })();
    if made.is_err() {
        // Kill the keeper (by pid, safe only while the maker runs) and the
        // maker; a keeper left alone sees the control socket close, drops
        // its capabilities and exits once we did.
        if let Some(k) = keeper_seen {
            if maker_running() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(k),
                    nix::sys::signal::SIGKILL,
                );
            }
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(maker_pid),
            nix::sys::signal::SIGKILL,
        );
    }
    // Its end of the hold pipe sees EOF: it exits (the keeper stays).
    drop(hold_w);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(maker_pid), None);
    made
}

/// Read one word the maker reported.
fn read_word(report: &OwnedFd) -> Result<i32, RestoreError> {
    let mut buf = [0u8; 4];
    match nix::unistd::read(report.as_raw_fd(), &mut buf) {
        Ok(4) => Ok(i32::from_ne_bytes(buf)),
        _ => Err(RestoreError::PidNamespace {
            step: "the namespace maker exited",
            errno: Errno::EPIPE,
        }),
    }
}

/// Read one report word of the maker: 0, or its failed step and errno.
fn expect_ok(report: &OwnedFd) -> Result<(), RestoreError> {
    let code = read_word(report)?;
    if code == 0 {
        return Ok(());
    }
    let (step, errno) = split_code(code);
    Err(RestoreError::PidNamespace {
        step: MAKER_STEPS
            .get(step)
            .copied()
            .unwrap_or("making the namespaces"),
        errno: Errno::from_raw(errno),
    })
}

/// Report `step`'s failure (`errno`) on `fd` and exit.
///
/// # Safety
/// Only in a forked child of a single-threaded process.
unsafe fn fail(fd: RawFd, step: i32, code: i32) -> ! {
    let word: i32 = (step << 16) | (code & 0xffff);
    // SAFETY: a 4-byte buffer on our stack; `_exit` never returns.
    unsafe {
        libc::write(fd, (&word as *const i32).cast(), 4);
        libc::_exit(125)
    }
}

fn errno() -> i32 {
    Errno::last_raw()
}

/// Write all of `data` to the file at `path` (a NUL-terminated C string):
/// one `write`, as `/proc` files want.
///
/// # Safety
/// Only in a forked child; `path` is NUL-terminated.
unsafe fn write_file(path: &std::ffi::CStr, data: &[u8]) -> bool {
    // SAFETY: valid C string and buffer; raw syscalls.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        libc::close(fd);
        usize::try_from(n).is_ok_and(|n| n == data.len())
    }
}

/// Take the caller's groups and ids (groups first, while still root in the
/// restorer's user namespace), joining `join` (user, mount namespace fds)
/// between the two. Returns the failed step (0 groups/ids, 1 user
/// namespace, 2 mount namespace).
///
/// # Safety
/// Only in a forked, single-threaded child.
pub(super) unsafe fn take_creds(
    creds: &RestoreCredentials,
    groups: &[libc::gid_t],
    join: Option<(RawFd, RawFd)>,
) -> Result<(), i32> {
    // SAFETY: buffers prepared before the fork; raw syscalls.
    unsafe {
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
            return Err(0);
        }
        if let Some((user, mnt)) = join {
            if libc::setns(user, libc::CLONE_NEWUSER) != 0 {
                return Err(1);
            }
            if libc::setns(mnt, libc::CLONE_NEWNS) != 0 {
                return Err(2);
            }
        }
        if libc::setresgid(creds.gid[0], creds.gid[1], creds.gid[2]) != 0
            || libc::setresuid(creds.uid[0], creds.uid[1], creds.uid[2]) != 0
            || libc::setfsgid(creds.gid[3]) < 0
            || libc::setfsuid(creds.uid[3]) < 0
        {
            return Err(0);
        }
    }
    Ok(())
}

/// Drop every capability of the calling thread (those a joined user
/// namespace gave: uid 0 is not mapped there, so taking the caller's ids
/// did not clear them).
///
/// # Safety
/// Raw syscall on stack memory; fork-safe.
pub(super) unsafe fn drop_all_caps() -> bool {
    let header: [u32; 2] = [CAPABILITY_VERSION_3, 0];
    let data = [0u32; 6];
    // SAFETY: a version-3 header and two zeroed data structs on our stack.
    unsafe {
        libc::syscall(libc::SYS_capset, header.as_ptr(), data.as_ptr()) == 0
            && libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            ) == 0
    }
}

/// The fds the maker (and the keeper) use, numbers in the restorer.
#[derive(Clone, Copy)]
struct MakerFds {
    /// The maker reports here (0, or its failed step and errno).
    report: RawFd,
    /// A byte when its maps are written; EOF when it may exit.
    hold: RawFd,
    /// The keeper's end of the control socket.
    control: RawFd,
    /// A pidfd of the restorer (the keeper waits for it to exit).
    restorer: RawFd,
}

/// The namespace maker (forked child): step 1 of the module doc. Reports
/// 0 (or its failed step) once its user namespace exists; once its maps
/// are written, makes the mount and pid namespaces, forks the keeper and
/// reports 0 and the keeper's pid; exits at EOF on `hold`.
///
/// # Safety
/// Only in a forked child of a single-threaded process; never returns.
unsafe fn maker(
    creds: &RestoreCredentials,
    groups: &[libc::gid_t],
    parent: i32,
    fds: MakerFds,
) -> ! {
    let report = fds.report;
    // SAFETY: raw syscalls on memory prepared before the fork.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        let mut keep = [fds.report, fds.hold, fds.control, fds.restorer];
        keep.sort_unstable();
        close_all_but(&keep);
        if take_creds(creds, groups, None).is_err() {
            fail(report, 0, errno());
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0
            || libc::getppid() != parent
        {
            fail(report, 7, libc::ESRCH);
        }
        if libc::unshare(libc::CLONE_NEWUSER) != 0 {
            fail(report, 1, errno());
        }
        let ok: i32 = 0;
        libc::write(report, (&ok as *const i32).cast(), 4);
        let mut b = 0u8;
        loop {
            let n = libc::read(fds.hold, (&mut b as *mut u8).cast(), 1);
            if n == 1 {
                break;
            }
            if n == 0 || errno() != libc::EINTR {
                libc::_exit(0);
            }
        }
        if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWPID) != 0 {
            fail(report, 5, errno());
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            fail(report, 6, errno());
        }
        let keeper = libc::fork();
        if keeper == 0 {
            keeper_main(fds);
        }
        if keeper < 0 {
            fail(report, 8, errno());
        }
        libc::write(report, (&ok as *const i32).cast(), 4);
        libc::write(report, (&keeper as *const i32).cast(), 4);
        // Until the restorer holds the namespaces (EOF). The keeper is not
        // waited for: it outlives us.
        while libc::read(fds.hold, (&mut b as *mut u8).cast(), 1) < 0 && errno() == libc::EINTR {}
        libc::_exit(0)
    }
}

/// The namespace's init (the maker's child, pid 1 there): step 2 of the
/// module doc.
///
/// # Safety
/// Only in a forked child of a single-threaded process; never returns.
unsafe fn keeper_main(fds: MakerFds) -> ! {
    let control = fds.control;
    let restorer = fds.restorer;
    // SAFETY: raw syscalls on memory prepared before the fork.
    unsafe {
        // Nothing of the restorer's stays open here but the pidfd to wait
        // for it and the control socket.
        let mut keep = [control, restorer];
        keep.sort_unstable();
        close_all_but(&keep);
        // Out of the caller's session and terminal, and named for `ps`.
        libc::setsid();
        libc::prctl(libc::PR_SET_NAME, c"ckpt-ns-init".as_ptr(), 0, 0, 0);
        if libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ) != 0
        {
            fail(control, 0, errno());
        }
        let ok: i32 = 0;
        libc::write(control, (&ok as *const i32).cast(), 4);
        let root = serve(control);
        drop_all_caps();
        libc::close(control);
        // Until the restorer is gone.
        let mut pfd = libc::pollfd {
            fd: restorer,
            events: libc::POLLIN,
            revents: 0,
        };
        while libc::poll(&mut pfd, 1, -1) < 0 && errno() == libc::EINTR {}
        libc::close(restorer);
        reap_until_alone(root);
    }
}

/// The keeper's last phase: reap every child (orphans of the namespace
/// become its children) until no other process is left in the namespace,
/// then exit (which would kill any process still in it). The restored
/// root's parent was the restorer, outside the namespace: the kernel gives
/// such an orphan to the outer init, not to us, so we watch it through a
/// pidfd; anything else not our child (a process a user moved in with
/// `setns`) is noticed by a look at /proc every ten seconds.
///
/// # Safety
/// Only in the keeper; raw syscalls on stack memory.
unsafe fn reap_until_alone(root: i32) -> ! {
    // SAFETY: raw syscalls on stack memory.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        let sfd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        let mut root_fd = if root > 1 {
            libc::syscall(libc::SYS_pidfd_open, root, 0) as i32
        } else {
            -1
        };
        loop {
            while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG | libc::__WALL) > 0 {}
            if alone() {
                libc::_exit(0);
            }
            let mut fds = [
                libc::pollfd {
                    fd: sfd,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: root_fd,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            libc::poll(fds.as_mut_ptr(), 2, 10_000);
            if fds[0].revents != 0 {
                let mut info = [0u8; 128];
                while libc::read(sfd, info.as_mut_ptr().cast(), info.len()) > 0 {}
            }
            if root_fd >= 0 && fds[1].revents != 0 {
                libc::close(root_fd);
                root_fd = -1;
            }
        }
    }
}

/// Whether /proc/NAME is a zombie (one whose parent is outside the
/// namespace waits there for that parent; it runs nothing).
///
/// # Safety
/// Raw syscalls on stack memory.
unsafe fn zombie(name: &[u8]) -> bool {
    let mut path = [0u8; 32];
    let (head, tail) = (b"/proc/", b"/stat\0");
    if head.len() + name.len() + tail.len() > path.len() {
        return false;
    }
    path[..head.len()].copy_from_slice(head);
    path[head.len()..head.len() + name.len()].copy_from_slice(name);
    path[head.len() + name.len()..head.len() + name.len() + tail.len()].copy_from_slice(tail);
    let mut stat = [0u8; 512];
    // SAFETY: a NUL-terminated path and a buffer on our stack.
    let n = unsafe {
        let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let n = libc::read(fd, stat.as_mut_ptr().cast(), stat.len());
        libc::close(fd);
        n
    };
    let Ok(n) = usize::try_from(n) else {
        return false;
    };
    let text = &stat[..n.min(stat.len())];
    // "PID (COMM) S ...": the state follows the last ')'.
    text.iter()
        .rposition(|&b| b == b')')
        .and_then(|i| text.get(i + 2))
        .is_some_and(|&s| s == b'Z')
}

/// No process but us (pid 1) in our pid namespace, by our /proc (zombies
/// aside).
///
/// # Safety
/// Raw syscalls on stack memory.
unsafe fn alone() -> bool {
    // SAFETY: a directory fd we open and close; a stack buffer the kernel
    // fills with `linux_dirent64` records, read within the length returned.
    unsafe {
        let dir = libc::open(
            c"/proc".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if dir < 0 {
            return false;
        }
        let mut buf = [0u8; 4096];
        let mut others = false;
        loop {
            let n = libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len());
            if n <= 0 {
                break;
            }
            let n = n as usize;
            let mut at = 0usize;
            while at + 19 < n {
                let reclen = usize::from(u16::from_ne_bytes([buf[at + 16], buf[at + 17]]));
                if reclen == 0 {
                    break;
                }
                let name = &buf[at + 19..(at + reclen).min(n)];
                let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                let name = &name[..len];
                if !name.is_empty()
                    && name.iter().all(u8::is_ascii_digit)
                    && name != b"1"
                    && !zombie(name)
                {
                    others = true;
                }
                at += reclen;
            }
            if others {
                break;
            }
        }
        libc::close(dir);
        !others
    }
}

/// Close every fd but those in `keep` (sorted).
///
/// # Safety
/// Raw syscalls; fork-safe.
unsafe fn close_all_but(keep: &[RawFd]) {
    let mut next = 0u32;
    for &k in keep {
        let Ok(k) = u32::try_from(k) else { continue };
        if k > next {
            // SAFETY: close_range on this process's own fd table.
            unsafe { libc::syscall(libc::SYS_close_range, next, k - 1, 0u32) };
        }
        next = k.saturating_add(1);
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, next, u32::MAX, 0u32) };
}

/// Answer the restorer's pid requests until it closes the socket: each is
/// a pid (4 bytes); the answer is 0 once `ns_last_pid` is one below it, or
/// an errno. A negative word names the restored root (its negated pid
/// here), unanswered; returned (0: none named).
///
/// # Safety
/// Only in the keeper; raw syscalls on stack memory.
unsafe fn serve(control: RawFd) -> i32 {
    let path = c"/proc/sys/kernel/ns_last_pid";
    let mut root = 0;
    loop {
        let mut want = [0u8; 4];
        // SAFETY: stack buffers; raw syscalls.
        unsafe {
            let n = libc::read(control, want.as_mut_ptr().cast(), 4);
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            if n != 4 {
                return root;
            }
            let want = i32::from_ne_bytes(want);
            if want < 0 {
                root = want.saturating_neg();
                continue;
            }
            let mut text = [0u8; 12];
            let len = decimal(want.saturating_sub(1), &mut text);
            let answer: i32 = if write_file(path, &text[..len]) {
                0
            } else {
                errno()
            };
            libc::write(control, (&answer as *const i32).cast(), 4);
        }
    }
}

/// `n` (non-negative) in decimal into `out`; returns the length.
fn decimal(n: i32, out: &mut [u8; 12]) -> usize {
    let mut digits = [0u8; 12];
    let mut len = 0;
    let mut v = n.max(0).unsigned_abs();
    loop {
        digits[len] = b'0' + (v % 10) as u8;
        len += 1;
        v /= 10;
        if v == 0 || len == digits.len() {
            break;
        }
    }
    for i in 0..len {
        out[i] = digits[len - 1 - i];
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_writes_pids() {
        let mut out = [0u8; 12];
        for n in [0, 7, 10, 4_194_303, i32::MAX] {
            let len = decimal(n, &mut out);
            assert_eq!(
                std::str::from_utf8(&out[..len]).ok(),
                Some(n.to_string().as_str())
            );
        }
    }

    #[test]
    fn codes_carry_step_and_errno() {
        assert_eq!(split_code((3 << 16) | libc::EPERM), (3, libc::EPERM));
        assert_eq!(split_code(0), (0, 0));
    }
}
