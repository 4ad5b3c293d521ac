//! Starting a root-owned agent program (the TPM agent, `ckpt-tpm-agent`)
//! as root, connected to the helper by a socket.
//!
//! Owns: the agent process from [`Agent::start`] until it is reaped (when
//! the [`Agent`] is dropped, or [`Agent::ended`]), and the helper's end of
//! its socket. Trusts: the kernel, and the program file only once it has
//! passed the checks below.
//!
//! [`Agent::start`], in order:
//!
//! 1. opens the program's path (fixed at build time by the caller, never
//!    from `PATH`, `argv[0]` or `/proc/self/exe`) with `O_PATH |
//!    O_NOFOLLOW`, and checks on that fd that it is a regular file, owned
//!    by root, not writable by group or others; it also checks that its
//!    directory is owned by root and not writable by group or others.
//!    Anything else is refused with an error naming the file;
//! 2. makes a `socketpair` (stream) and a close-on-exec pipe that only
//!    reports a failure to start;
//! 3. forks; the child puts the socket on fds 0 and 1 and `/dev/null` on
//!    fd 2, marks every other fd close-on-exec, drops every supplementary
//!    group, `setresgid(0, 0, 0)`, `setresuid(0, 0, 0)` (the caller's uid
//!    is then none of its ids: `kill(2)` and `ptrace(2)` from the caller
//!    fail), `setsid()` (no controlling terminal: the caller's terminal
//!    cannot send it `SIGINT` or `SIGHUP` either), `chdir("/")`, and
//!    executes the opened fd itself
//!    (`execveat(fd, "", AT_EMPTY_PATH)`, so the file checked is the file
//!    run; a script could not be run this way, the agent is an ELF
//!    program) with exactly the given arguments and environment;
//! 4. the parent reads the pipe: end-of-file means the program runs; a
//!    step number and errno mean the child failed at that step.
//!
//! stderr is `/dev/null`: the agent reports every failure over the socket
//! and the helper prints it; the caller's stderr (perhaps a pipe nobody
//! reads, which would block a root process) is never handed on.
//!
//! When the agent ends, the helper sees end-of-file on the socket (never a
//! hang); dropping the [`Agent`] closes the socket, which makes the agent
//! exit, and reaps it (killing it if it has not exited within 5 s, as one
//! stuck on a TPM that stopped answering would not).

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};

use crate::sys;

/// Why the agent could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The program (or its directory) cannot be opened or inspected.
    #[error("{}: cannot open", path.display())]
    Open {
        path: PathBuf,
        #[source]
        errno: Errno,
    },
    /// Not a regular file (or its directory not a directory).
    #[error("{}: is not a {expected} (refusing to run it)", path.display())]
    WrongType {
        path: PathBuf,
        expected: &'static str,
    },
    /// Not owned by root.
    #[error("{}: owned by uid {uid}, must be owned by root (refusing to run it)", path.display())]
    BadOwner { path: PathBuf, uid: u32 },
    /// Writable by group or others.
    #[error(
        "{}: mode {mode:04o} is writable by group or others (refusing to run it)",
        path.display()
    )]
    BadMode { path: PathBuf, mode: u32 },
    /// The path cannot be passed to the kernel.
    #[error("{}: invalid path", path.display())]
    BadPath { path: PathBuf },
    /// `socketpair`, `pipe` or opening `/dev/null` failed.
    #[error("cannot set up the connection to {}", path.display())]
    Setup {
        path: PathBuf,
        #[source]
        errno: Errno,
    },
    /// `fork` failed.
    #[error("cannot fork to start {}", path.display())]
    Fork {
        path: PathBuf,
        #[source]
        errno: Errno,
    },
    /// The child failed before the program ran.
    #[error("cannot start {} ({step} failed)", path.display())]
    Child {
        path: PathBuf,
        step: &'static str,
        #[source]
        errno: Errno,
    },
}

/// How long a dropped agent may take to exit before it is killed.
const EXIT_GRACE_MS: i32 = 5000;

/// A running agent: read its answers and write requests through it.
#[derive(Debug)]
pub struct Agent {
    sock: Option<UnixStream>,
    pid: Option<Pid>,
    status: Option<String>,
}

// What the child reports on the pipe when a step fails before exec.
const STEPS: [&str; 9] = [
    "dup2",
    "close-on-exec",
    "setgroups",
    "setresgid",
    "setresuid",
    "chdir",
    "execveat",
    "signal mask",
    "setsid",
];

fn check_file(path: &Path, st: &std::fs::Metadata, dir: bool) -> Result<(), AgentError> {
    use std::os::unix::fs::MetadataExt as _;
    let (ok, expected) = if dir {
        (st.is_dir(), "directory")
    } else {
        (st.is_file(), "regular file")
    };
    if !ok {
        return Err(AgentError::WrongType {
            path: path.to_owned(),
            expected,
        });
    }
    if st.uid() != 0 {
        return Err(AgentError::BadOwner {
            path: path.to_owned(),
            uid: st.uid(),
        });
    }
    if st.mode() & 0o022 != 0 {
        return Err(AgentError::BadMode {
            path: path.to_owned(),
            mode: st.mode() & 0o7777,
        });
    }
    Ok(())
}

/// Opens `path` for execution and checks it (step 1 of the module doc).
pub fn open_checked(path: &Path) -> Result<OwnedFd, AgentError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let open = |p: &Path, flags: i32| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | flags)
            .open(p)
            .and_then(|f| f.metadata().map(|m| (OwnedFd::from(f), m)))
            .map_err(|e| AgentError::Open {
                path: p.to_owned(),
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })
    };
    let Some(dir) = path.parent().filter(|_| path.file_name().is_some()) else {
        return Err(AgentError::BadPath {
            path: path.to_owned(),
        });
    };
    let (_, st) = open(dir, libc::O_DIRECTORY)?;
    check_file(dir, &st, true)?;
    let (fd, st) = open(path, libc::O_NOFOLLOW)?;
    check_file(path, &st, false)?;
    Ok(fd)
}

/// Reports a failed step on the start-up pipe and leaves the child.
fn child_fail(report: &OwnedFd, step: u32, e: Errno) -> ! {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&step.to_ne_bytes());
    msg[4..].copy_from_slice(&(e as i32).to_ne_bytes());
    let _ = nix::unistd::write(report, &msg);
    sys::exit_child(127)
}

impl Agent {
    /// Starts the program at `path` as root (see the module doc), with
    /// argv `[path]` and exactly the environment `env`.
    pub fn start(path: &Path, env: &[(&str, &str)]) -> Result<Agent, AgentError> {
        let exe = open_checked(path)?;
        let bad_path = || AgentError::BadPath {
            path: path.to_owned(),
        };
        let argv = [CString::new(path.as_os_str().as_bytes()).map_err(|_| bad_path())?];
        let envp = env
            .iter()
            .map(|(k, v)| CString::new(format!("{k}={v}")).map_err(|_| bad_path()))
            .collect::<Result<Vec<_>, _>>()?;
        let setup = |errno| AgentError::Setup {
            path: path.to_owned(),
            errno,
        };
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(setup)?;
        let (report_r, report_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(setup)?;
        let devnull = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|e| setup(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;

        // SAFETY: the child branch below makes raw system calls only
        // (dup2, close_range, setgroups, setresgid, setresuid, setsid,
        // chdir, sigprocmask, execveat, write) and leaves with `exec` or
        // `exit_child`, never returning into the caller's frames.
        match unsafe { sys::fork() }.map_err(|errno| AgentError::Fork {
            path: path.to_owned(),
            errno,
        })? {
            None => {
                let sock = theirs.as_raw_fd();
                if let Err(e) = nix::unistd::dup2(sock, 0)
                    .and_then(|_| nix::unistd::dup2(sock, 1))
                    .and_then(|_| nix::unistd::dup2(devnull.as_raw_fd(), 2))
                {
                    child_fail(&report_w, 0, e);
                }
                if let Err(e) = sys::cloexec_from(3) {
                    child_fail(&report_w, 1, e);
                }
                if let Err(e) = nix::unistd::setgroups(&[]) {
                    child_fail(&report_w, 2, e);
                }
                let root_g = Gid::from_raw(0);
                if let Err(e) = nix::unistd::setresgid(root_g, root_g, root_g) {
                    child_fail(&report_w, 3, e);
                }
                let root = Uid::from_raw(0);
                if let Err(e) = nix::unistd::setresuid(root, root, root) {
                    child_fail(&report_w, 4, e);
                }
                // A session of its own: no controlling terminal, so the
                // caller's terminal (^C, hang-up) cannot signal it either.
                if let Err(e) = nix::unistd::setsid() {
                    child_fail(&report_w, 8, e);
                }
                if let Err(e) = nix::unistd::chdir("/") {
                    child_fail(&report_w, 5, e);
                }
                if let Err(e) = nix::sys::signal::sigprocmask(
                    nix::sys::signal::SigmaskHow::SIG_SETMASK,
                    Some(&nix::sys::signal::SigSet::empty()),
                    None,
                ) {
                    child_fail(&report_w, 7, e);
                }
                let e = match nix::unistd::execveat(
                    Some(exe.as_raw_fd()),
                    c"",
                    &argv,
                    &envp,
                    AtFlags::AT_EMPTY_PATH,
                ) {
                    Err(e) => e,
                    Ok(never) => match never {},
                };
                child_fail(&report_w, 6, e)
            }
            Some(pid) => {
                drop(theirs);
                drop(report_w);
                let mut agent = Agent {
                    sock: Some(UnixStream::from(ours)),
                    pid: Some(pid),
                    status: None,
                };
                let mut msg = [0u8; 8];
                let mut got = 0;
                let mut report = std::fs::File::from(report_r);
                while got < msg.len() {
                    match report.read(&mut msg[got..]) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                if got == msg.len() {
                    let mut a = [0u8; 4];
                    a.copy_from_slice(&msg[..4]);
                    let step = STEPS
                        .get(u32::from_ne_bytes(a) as usize)
                        .copied()
                        .unwrap_or("an unknown step");
                    a.copy_from_slice(&msg[4..]);
                    let errno = Errno::from_raw(i32::from_ne_bytes(a));
                    let _ = agent.ended();
                    return Err(AgentError::Child {
                        path: path.to_owned(),
                        step,
                        errno,
                    });
                }
                Ok(agent)
            }
        }
    }

    /// The agent's pid (while it has not been reaped).
    pub fn pid(&self) -> Option<i32> {
        self.pid.map(Pid::as_raw)
    }

    /// Closes the connection, waits for the agent to exit and says how it
    /// ended (`exit status 0`, `killed by SIGKILL`). Idempotent.
    pub fn ended(&mut self) -> String {
        if let Some(s) = self.sock.take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        if let Some(pid) = self.pid.take() {
            // It exits at end-of-file; one stuck in a TPM that stopped
            // answering is killed after a grace period, so the helper
            // never waits forever for it.
            if let Ok(fd) = sys::pidfd_open(pid.as_raw()) {
                if matches!(sys::poll_readable(fd.as_fd(), EXIT_GRACE_MS), Ok(false)) {
                    let _ = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
                }
            }
            let status = loop {
                match waitpid(pid, None) {
                    Ok(WaitStatus::Exited(_, code)) => break format!("exit status {code}"),
                    Ok(WaitStatus::Signaled(_, sig, _)) => break format!("killed by {sig}"),
                    Ok(_) | Err(Errno::EINTR) => continue,
                    Err(e) => break format!("cannot wait for it: {e}"),
                }
            };
            self.status = Some(status);
        }
        self.status.clone().unwrap_or_else(|| "ended".to_owned())
    }

    fn stream(&mut self) -> io::Result<&mut UnixStream> {
        self.sock
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl Read for Agent {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream()?.read(buf)
    }
}

impl Write for Agent {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream()?.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream()?.flush()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.ended();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// The owner and mode checks, on real files (the tests run as root).
    #[test]
    fn only_a_root_owned_file_nobody_else_can_write_is_accepted() {
        let dir = std::env::temp_dir().join(format!("ckpt-agent-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let prog = dir.join("prog");
        std::fs::write(&prog, b"\x7fELF").unwrap();
        let root = nix::unistd::geteuid().is_root();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        if root {
            open_checked(&prog).expect("a root-owned 0755 file is accepted");
        }
        for mode in [0o775, 0o757, 0o777] {
            std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = open_checked(&prog).expect_err("a writable file is refused");
            assert!(
                matches!(e, AgentError::BadMode { .. } | AgentError::BadOwner { .. }),
                "{e}"
            );
        }
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&prog, &link).unwrap();
        // O_PATH | O_NOFOLLOW opens the link itself: not a regular file.
        assert!(matches!(
            open_checked(&link),
            Err(AgentError::WrongType { .. })
        ));
        let sub = dir.join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert!(matches!(
            open_checked(&sub),
            Err(AgentError::WrongType { .. }) | Err(AgentError::BadOwner { .. })
        ));
        if root {
            nix::unistd::chown(&prog, Some(Uid::from_raw(65534)), None).unwrap();
            let e = open_checked(&prog).expect_err("a file not owned by root is refused");
            assert!(e.to_string().contains("owned by uid 65534"), "{e}");
            nix::unistd::chown(&prog, Some(Uid::from_raw(0)), None).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            let e = open_checked(&prog).expect_err("a writable directory is refused");
            assert!(matches!(e, AgentError::BadMode { .. }), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
