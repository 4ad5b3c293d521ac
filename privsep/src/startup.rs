//! Start-up hardening for a setuid helper (docs/HARDENING.md, rules 1-7).
//!
//! [`harden`] is the first thing `main` calls, before argument parsing and
//! before any library that might consult the environment runs.
//!
//! In order it: captures the caller's real ids; makes sure fds 0, 1 and 2 are
//! open (std reopens closed ones on `/dev/null` before `main`; this checks it
//! and repairs it if not); clears the whole environment and sets a fixed
//! `PATH`; makes the process non-dumpable with a soft `RLIMIT_CORE` of 0; sets umask
//! 077; raises soft resource limits to their hard limits and refuses hard
//! limits that would make the helper fail half-way; ignores `SIGPIPE` and
//! `SIGXFSZ` (so that write errors are errors, not deaths), restores the
//! default `SIGCHLD` (an inherited `SIG_IGN` would auto-reap our children)
//! and unblocks all signals; and finally collects `argv`, refusing an empty
//! one (argc == 0). Before anything is opened it also notes which fds from
//! 3 to [`MAX_INHERIT_FD`] the caller left open ([`Startup::open_fds`]):
//! the only fds `ckpt-verify restore --inherit-fd N` may hand on, so that
//! no fd the helper opened itself can ever be.

use std::ffi::OsString;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag};
use nix::sys::resource::{Resource, RLIM_INFINITY};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;

use crate::caller::Caller;
use crate::sys;

/// The fixed `PATH` the helpers run with.
pub const SAFE_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// The highest fd number `--inherit-fd` accepts (and [`harden`] notes).
pub const MAX_INHERIT_FD: i32 = 1023;

/// What [`harden`] hands back to `main`.
#[derive(Debug)]
pub struct Startup {
    /// The real caller, captured before anything else.
    pub caller: Caller,
    /// `argv`, never empty (argv\[0\] is present).
    pub args: Vec<OsString>,
    /// The fds from 3 to [`MAX_INHERIT_FD`] that were open when the helper
    /// started, before it opened anything: the caller's.
    pub open_fds: Vec<i32>,
}

/// Why start-up hardening failed. Every variant means the helper must stop
/// before doing anything else.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// argc was 0: no program name, no arguments.
    #[error("started with an empty argument vector (argc == 0)")]
    EmptyArgv,
    /// Reading our own ids failed.
    #[error("cannot read process credentials")]
    Credentials(#[source] Errno),
    /// fd 0, 1 or 2 was closed and could not be reopened on /dev/null.
    #[error("standard fd {fd} is closed and /dev/null could not be opened on it")]
    StdFd {
        fd: i32,
        #[source]
        errno: Errno,
    },
    /// The environment could not be cleared.
    #[error("cannot clear the environment")]
    Environment(#[source] Errno),
    /// Hardening must run before any other thread exists (clearing the
    /// environment under another thread's `getenv` is undefined behaviour).
    #[error("start-up hardening must run before any other thread exists ({threads} threads)")]
    Threaded { threads: usize },
    /// `prctl(PR_SET_DUMPABLE, 0)` failed.
    #[error("cannot make the process non-dumpable")]
    Dumpable(#[source] Errno),
    /// Reading or setting a resource limit failed.
    #[error("cannot adjust resource limit {resource}")]
    Rlimit {
        resource: &'static str,
        #[source]
        errno: Errno,
    },
    /// The caller lowered a hard limit below what the helper needs to finish
    /// its work; the helper cannot raise it back (no CAP_SYS_RESOURCE).
    #[error(
        "resource limit {resource} is too low (hard limit {hard}, need at least {needed}); \
         raise it and try again"
    )]
    LimitTooLow {
        resource: &'static str,
        hard: String,
        needed: String,
    },
    /// The process runs in a user namespace in which one of its ids is
    /// another number than in the initial user namespace (`unshare -r`
    /// makes the caller "root" there): who called would be misreported.
    #[error(
        "{kind} {inside} here is {outside} outside this user namespace: run the helper \
         outside the user namespace, or in one that maps your ids to themselves"
    )]
    ForeignIds {
        kind: &'static str,
        inside: u32,
        /// `"unmapped"` or the id outside.
        outside: String,
    },
    /// `/proc/self/uid_map` or `gid_map` could not be read.
    #[error("cannot read {path}")]
    IdMap {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Setting a signal disposition or the signal mask failed.
    #[error("cannot set up signal handling for {signal}")]
    Signal {
        signal: &'static str,
        #[source]
        errno: Errno,
    },
}

/// In a user namespace other than the initial one, the ids a process sees
/// are translations (`/proc/self/uid_map`: `inside outside count`). The
/// helpers report and decide by the caller's ids, so each of its real,
/// effective and saved uids and gids must be the same number outside:
/// true in the initial namespace (`0 0 4294967295`) and in one that maps
/// the caller to itself (a `restore --pid-namespace` tree's, where the
/// kernel ignores the set-user-id bit and the helper runs unprivileged).
fn ids_are_their_own() -> Result<(), StartupError> {
    let uids = nix::unistd::getresuid().map_err(StartupError::Credentials)?;
    let gids = nix::unistd::getresgid().map_err(StartupError::Credentials)?;
    let check = |path: &'static str, kind: &'static str, ids: [u32; 3]| {
        let text =
            std::fs::read_to_string(path).map_err(|source| StartupError::IdMap { path, source })?;
        for id in ids {
            let outside = id_outside(&text, id);
            if outside != Some(id) {
                return Err(StartupError::ForeignIds {
                    kind,
                    inside: id,
                    outside: outside.map_or_else(|| "unmapped".to_string(), |o| o.to_string()),
                });
            }
        }
        Ok(())
    };
    check(
        "/proc/self/uid_map",
        "uid",
        [
            uids.real.as_raw(),
            uids.effective.as_raw(),
            uids.saved.as_raw(),
        ],
    )?;
    check(
        "/proc/self/gid_map",
        "gid",
        [
            gids.real.as_raw(),
            gids.effective.as_raw(),
            gids.saved.as_raw(),
        ],
    )
}

/// The id outside the namespace of `id` inside it, by a `uid_map` or
/// `gid_map` text.
fn id_outside(map: &str, id: u32) -> Option<u32> {
    map.lines().find_map(|line| {
        let mut f = line.split_whitespace().map(|w| w.parse::<u64>().ok());
        let (Some(Some(inside)), Some(Some(outside)), Some(Some(count))) =
            (f.next(), f.next(), f.next())
        else {
            return None;
        };
        let id = u64::from(id);
        (inside <= id && id < inside.saturating_add(count))
            .then(|| u32::try_from(outside + (id - inside)).ok())
            .flatten()
    })
}

/// Harden the process. See the module documentation for what it does.
pub fn harden() -> Result<Startup, StartupError> {
    // 1. Who called us, before anything can change it.
    let caller = Caller::current().map_err(StartupError::Credentials)?;
    // ... and that those ids are what the kernel knows them as.
    ids_are_their_own()?;
    // 2. fds 0-2; which others the caller left open (nothing of ours is
    // open yet).
    ensure_std_fds()?;
    let open_fds = caller_fds();
    // 3. Environment.
    sys::clear_environment().map_err(|e| match e {
        sys::ClearEnvError::Threaded(threads) => StartupError::Threaded { threads },
        sys::ClearEnvError::Failed(errno) => StartupError::Environment(errno),
    })?;
    std::env::set_var("PATH", SAFE_PATH);
    // 4. Not dumpable, no core.
    nix::sys::prctl::set_dumpable(false).map_err(StartupError::Dumpable)?;
    // Soft limit 0 stops core dumps; the hard limit is kept so that a
    // restored process (forked from us) can get its own limit back.
    let core_err = |errno| StartupError::Rlimit {
        resource: "RLIMIT_CORE",
        errno,
    };
    let (_, core_hard) = nix::sys::resource::getrlimit(Resource::RLIMIT_CORE).map_err(core_err)?;
    nix::sys::resource::setrlimit(Resource::RLIMIT_CORE, 0, core_hard).map_err(core_err)?;
    // 5. Signals, before the limits are checked: a refusal of a tiny
    // `RLIMIT_FSIZE` is reported on a stderr that may be a file, and that
    // write must fail with EFBIG, not kill us with the caller's SIGXFSZ.
    reset_signals()?;
    // 6. umask and the other limits.
    nix::sys::stat::umask(Mode::from_bits_truncate(0o077));
    reset_rlimits()?;
    // 7. argv.
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.is_empty() {
        return Err(StartupError::EmptyArgv);
    }
    Ok(Startup {
        caller,
        args,
        open_fds,
    })
}

/// The fds from 3 to [`MAX_INHERIT_FD`] that are open (the caller's: the
/// helper has opened nothing yet). Listed from `/proc/self/fd`, one
/// directory read, when that is procfs; otherwise each fd is probed with
/// `F_GETFD` (1021 system calls: a measurable part of a small dump's
/// start-up).
fn caller_fds() -> Vec<i32> {
    listed_fds().unwrap_or_else(|| {
        (3..=MAX_INHERIT_FD)
            .filter(|&fd| nix::fcntl::fcntl(fd, FcntlArg::F_GETFD).is_ok())
            .collect()
    })
}

/// The open fds in range as `/proc/self/fd` lists them. The listing's own
/// fd is in the list too; it is closed again before each listed fd is
/// checked with `F_GETFD`, which leaves it out (a handful of calls, not
/// 1021). `None` when `/proc/self/fd` is not on procfs or cannot be read.
fn listed_fds() -> Option<Vec<i32>> {
    const FD_DIR: &str = "/proc/self/fd";
    let fs = nix::sys::statfs::statfs(FD_DIR).ok()?;
    if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return None;
    }
    let mut listed = Vec::new();
    for entry in std::fs::read_dir(FD_DIR).ok()? {
        let name = entry.ok()?.file_name();
        let fd: i32 = name.to_str()?.parse().ok()?;
        if (3..=MAX_INHERIT_FD).contains(&fd) {
            listed.push(fd);
        }
    }
    // The directory is closed here: only the caller's fds are still open.
    let mut fds: Vec<i32> = listed
        .into_iter()
        .filter(|&fd| nix::fcntl::fcntl(fd, FcntlArg::F_GETFD).is_ok())
        .collect();
    fds.sort_unstable();
    Some(fds)
}

/// Make sure fds 0, 1 and 2 are open; open `/dev/null` on any that is not.
fn ensure_std_fds() -> Result<(), StartupError> {
    for fd in 0..=2 {
        match nix::fcntl::fcntl(fd, FcntlArg::F_GETFD) {
            Ok(_) => continue,
            Err(Errno::EBADF) => {}
            Err(errno) => return Err(StartupError::StdFd { fd, errno }),
        }
        // The lowest free fd is `fd` itself because all lower ones are open.
        let opened = nix::fcntl::open("/dev/null", OFlag::O_RDWR | OFlag::O_NOCTTY, Mode::empty())
            .map_err(|errno| StartupError::StdFd { fd, errno })?;
        if opened != fd {
            nix::unistd::dup2(opened, fd).map_err(|errno| StartupError::StdFd { fd, errno })?;
            nix::unistd::close(opened).map_err(|errno| StartupError::StdFd { fd, errno })?;
        }
    }
    Ok(())
}

/// Minimum hard limits, below which the helper refuses to run. `None` means
/// the limit must be unlimited.
const MINIMUMS: &[(Resource, &str, Option<u64>)] = &[
    // Images are arbitrarily large; a finite file-size limit would cut an
    // image or a ledger write short half-way.
    (Resource::RLIMIT_FSIZE, "RLIMIT_FSIZE", None),
    (Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE", Some(64)),
    (Resource::RLIMIT_AS, "RLIMIT_AS", Some(1 << 30)),
    (Resource::RLIMIT_DATA, "RLIMIT_DATA", Some(1 << 30)),
    (Resource::RLIMIT_STACK, "RLIMIT_STACK", Some(1 << 20)),
];

/// Every limit whose soft value is raised to its hard value.
const RAISED: &[(Resource, &str)] = &[
    (Resource::RLIMIT_AS, "RLIMIT_AS"),
    (Resource::RLIMIT_CPU, "RLIMIT_CPU"),
    (Resource::RLIMIT_DATA, "RLIMIT_DATA"),
    (Resource::RLIMIT_FSIZE, "RLIMIT_FSIZE"),
    (Resource::RLIMIT_LOCKS, "RLIMIT_LOCKS"),
    (Resource::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
    (Resource::RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"),
    (Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
    (Resource::RLIMIT_NPROC, "RLIMIT_NPROC"),
    (Resource::RLIMIT_RTTIME, "RLIMIT_RTTIME"),
    (Resource::RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"),
    (Resource::RLIMIT_STACK, "RLIMIT_STACK"),
];

fn show_limit(value: u64) -> String {
    if value == RLIM_INFINITY {
        "unlimited".to_owned()
    } else {
        value.to_string()
    }
}

fn reset_rlimits() -> Result<(), StartupError> {
    for &(resource, name, needed) in MINIMUMS {
        let (_, hard) =
            nix::sys::resource::getrlimit(resource).map_err(|errno| StartupError::Rlimit {
                resource: name,
                errno,
            })?;
        let enough = match needed {
            None => hard == RLIM_INFINITY,
            Some(min) => hard == RLIM_INFINITY || hard >= min,
        };
        if !enough {
            return Err(StartupError::LimitTooLow {
                resource: name,
                hard: show_limit(hard),
                needed: show_limit(needed.unwrap_or(RLIM_INFINITY)),
            });
        }
    }
    for &(resource, name) in RAISED {
        let err = |errno| StartupError::Rlimit {
            resource: name,
            errno,
        };
        let (soft, hard) = nix::sys::resource::getrlimit(resource).map_err(err)?;
        if soft != hard {
            nix::sys::resource::setrlimit(resource, hard, hard).map_err(err)?;
        }
    }
    Ok(())
}

fn reset_signals() -> Result<(), StartupError> {
    let set = |signal: Signal, ignore: bool, name: &'static str| {
        sys::set_signal_disposition(signal, ignore).map_err(|errno| StartupError::Signal {
            signal: name,
            errno,
        })
    };
    set(Signal::SIGPIPE, true, "SIGPIPE")?;
    set(Signal::SIGXFSZ, true, "SIGXFSZ")?;
    set(Signal::SIGCHLD, false, "SIGCHLD")?;
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    )
    .map_err(|errno| StartupError::Signal {
        signal: "signal mask",
        errno,
    })
}

#[cfg(test)]
mod tests {
    use super::id_outside;

    #[test]
    fn ids_translate_through_the_map() {
        let initial = "         0          0 4294967295\n";
        assert_eq!(id_outside(initial, 0), Some(0));
        assert_eq!(id_outside(initial, 1001), Some(1001));
        // `unshare -r` as uid 1001: root inside is 1001 outside.
        let as_root = "         0       1001          1\n";
        assert_eq!(id_outside(as_root, 0), Some(1001));
        assert_eq!(id_outside(as_root, 1001), None);
        // A `--pid-namespace` restore's: the caller mapped to itself.
        let own = "      1001       1001          1\n";
        assert_eq!(id_outside(own, 1001), Some(1001));
        assert_eq!(id_outside("garbage\n", 5), None);
    }
}
