//! Driving a helper while it runs: what its caller (or the caller's
//! terminal) can do to it at any instant.
//!
//! [`Running`] is one helper started as a user in its own process group
//! (as a shell starts a foreground job), with stdout and stderr on pipes
//! the test holds. [`Running::act`] does one [`Action`] to it:
//!
//! * what the **caller** can do: `kill(2)` as the caller's uid (from a
//!   `setpriv`'ed `kill`, so the kernel's permission check is the real
//!   one), including `SIGSTOP` followed by `SIGCONT`, or closing the pipes;
//! * what the caller's **terminal** does: a signal to the whole foreground
//!   process group, which the tty sends whoever owns the processes in it
//!   (modelled here by root signalling the group; `SIGTSTP` is followed by
//!   `SIGCONT`, as a shell's `fg` would).

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::{Env, Who};

/// One thing done to a running helper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `kill(pid, sig)` by the caller (their uid).
    CallerSignal(Signal),
    /// `SIGSTOP` by the caller, then `SIGCONT` 50 ms later.
    CallerStopCont,
    /// The terminal: `sig` to the helper's process group.
    Terminal(Signal),
    /// The terminal's `^Z`: `SIGTSTP` to the group, `SIGCONT` 50 ms later.
    TerminalStopCont,
    /// The caller closes the read ends of stdout and stderr.
    ClosePipes,
}

/// The actions the kill tests cycle through.
pub const ACTIONS: [Action; 10] = [
    Action::CallerSignal(Signal::SIGKILL),
    Action::Terminal(Signal::SIGINT),
    Action::CallerSignal(Signal::SIGTERM),
    Action::Terminal(Signal::SIGHUP),
    Action::CallerStopCont,
    Action::ClosePipes,
    Action::Terminal(Signal::SIGTERM),
    Action::TerminalStopCont,
    Action::CallerSignal(Signal::SIGINT),
    Action::Terminal(Signal::SIGQUIT),
];

/// `kill -s SIG PID` run as `who`; true when the kernel allowed it.
pub fn kill_as(env: &Env, who: Who, pid: i32, sig: Signal) -> bool {
    let name = sig.as_str().trim_start_matches("SIG");
    let mut cmd = env.command(who, Path::new("/bin/kill"));
    cmd.args(["-s", name, "--", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.status()
        .unwrap_or_else(|e| panic!("cannot run /bin/kill: {e}"))
        .success()
}

/// A helper running as a user, in its own process group.
#[derive(Debug)]
pub struct Running {
    pub child: Child,
    pub pid: i32,
    out: Option<std::process::ChildStdout>,
    err: Option<std::process::ChildStderr>,
    /// What the test read from stdout and stderr so far.
    pub stdout: String,
    pub stderr: String,
}

impl Running {
    /// Starts `program ARGS` as `who` in `cwd`, in a new process group,
    /// with stdout and stderr on pipes.
    pub fn start(env: &Env, who: Who, program: &Path, args: &[&str], cwd: &Path) -> Running {
        let mut cmd = env.command(who, program);
        cmd.args(args)
            .current_dir(cwd)
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let pid = i32::try_from(child.id()).expect("pid fits i32");
        Running {
            out: child.stdout.take(),
            err: child.stderr.take(),
            child,
            pid,
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    /// Starts `program ARGS` as `who` with stdout and stderr both on the
    /// write end `pipe` (for example a full one).
    pub fn start_on(
        env: &Env,
        who: Who,
        program: &Path,
        args: &[&str],
        cwd: &Path,
        pipe: &OwnedFd,
    ) -> Running {
        let mut cmd = env.command(who, program);
        let out = File::from(pipe.try_clone().expect("dup pipe"));
        let err = File::from(pipe.try_clone().expect("dup pipe"));
        cmd.args(args)
            .current_dir(cwd)
            .process_group(0)
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let pid = i32::try_from(child.id()).expect("pid fits i32");
        Running {
            child,
            pid,
            out: None,
            err: None,
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    /// Does `action` to the helper (as `who` for the caller's actions).
    pub fn act(&mut self, env: &Env, who: Who, action: Action) {
        let group = Pid::from_raw(-self.pid);
        match action {
            Action::CallerSignal(sig) => {
                kill_as(env, who, self.pid, sig);
            }
            Action::CallerStopCont => {
                if kill_as(env, who, self.pid, Signal::SIGSTOP) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                kill_as(env, who, self.pid, Signal::SIGCONT);
            }
            Action::Terminal(sig) => {
                let _ = nix::sys::signal::kill(group, sig);
            }
            Action::TerminalStopCont => {
                let _ = nix::sys::signal::kill(group, Signal::SIGTSTP);
                std::thread::sleep(Duration::from_millis(50));
                let _ = nix::sys::signal::kill(group, Signal::SIGCONT);
            }
            Action::ClosePipes => {
                self.out = None;
                self.err = None;
            }
        }
    }

    /// Waits for the helper to end (reading what is left on its pipes);
    /// panics after `timeout`, killing it. A helper stopped by a job-control
    /// signal is continued, as a shell's `fg` would.
    pub fn wait(&mut self, timeout: Duration, what: &str) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("wait for the helper") {
                self.drain();
                return st;
            }
            if crate::procfs::stat(self.pid).is_some_and(|s| s.state == 'T') {
                let _ = nix::sys::signal::kill(Pid::from_raw(-self.pid), Signal::SIGCONT);
            }
            if start.elapsed() > timeout {
                let _ = nix::sys::signal::kill(Pid::from_raw(self.pid), Signal::SIGKILL);
                let _ = self.child.wait();
                self.drain();
                panic!(
                    "{what}: the helper (pid {}) did not end within {timeout:?}\n--- stderr:\n{}",
                    self.pid, self.stderr
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn drain(&mut self) {
        if let Some(mut o) = self.out.take() {
            let mut b = Vec::new();
            let _ = o.read_to_end(&mut b);
            self.stdout.push_str(&String::from_utf8_lossy(&b));
        }
        if let Some(mut e) = self.err.take() {
            let mut b = Vec::new();
            let _ = e.read_to_end(&mut b);
            self.stderr.push_str(&String::from_utf8_lossy(&b));
        }
    }
}

/// A pipe whose buffer is full: (read end, write end). The write end is
/// blocking, so the next write to it blocks until the read end is drained
/// or closed.
pub fn full_pipe() -> (OwnedFd, OwnedFd) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
    fcntl(w.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("O_NONBLOCK");
    let chunk = [b'x'; 4096];
    loop {
        match nix::unistd::write(&w, &chunk) {
            Ok(_) => continue,
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(e) => panic!("filling the pipe: {e}"),
        }
    }
    // One byte at a time, until not even one fits.
    while nix::unistd::write(&w, b"x").is_ok() {}
    fcntl(w.as_raw_fd(), FcntlArg::F_SETFL(OFlag::empty())).expect("clear O_NONBLOCK");
    (r, w)
}

/// A small deterministic generator (xorshift64*), seeded from the clock and
/// printed, so a failing run can be told apart from another.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(what: &str) -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        eprintln!("{what}: random seed {seed}");
        Rng(seed)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}
