//! The helper during a privileged operation (a dump, a restore): the caller
//! can no longer kill, stop or time it out, and a terminal's signals are
//! acted upon only where the operation can still be undone.
//!
//! Owns: the helper's real and saved uid, the dispositions of the
//! terminal signals, and the interval timers, from [`Shield::raise`] until
//! [`Shield::lower`] (or drop). Trusts: the kernel's signal permission
//! rules.
//!
//! Why: `kill(2)` is allowed when the sender's real or effective uid is the
//! target's real or saved uid. A setuid helper starts with the caller's
//! real uid, so the caller could `SIGKILL` or `SIGSTOP` it at any instant:
//! in the middle of a syscall injected into a dump target (which then runs
//! on with borrowed registers), between an effect and its audit record, or
//! while a half-built root process waits for its tracer.
//!
//! What [`Shield::raise`] does, in order:
//!
//! 1. Disarms the three interval timers (`ITIMER_REAL`, `_VIRTUAL`,
//!    `_PROF`): they survive `execve`, so a caller could arm `SIGALRM`
//!    (default action: terminate) to fire at an instant of their choosing.
//! 2. When the helper is setuid (effective uid 0, caller not root): refuses
//!    a finite hard `RLIMIT_CPU` or `RLIMIT_RTTIME` (the kernel sends
//!    `SIGKILL` when it is reached, and the helper has no `CAP_SYS_RESOURCE`
//!    to lift it), then `setresuid(0, 0, 0)`: the caller's uid is then
//!    neither the real nor the saved uid, and `kill(2)` from the caller
//!    fails with `EPERM`. The one exception the kernel makes, `SIGCONT`
//!    within a session, is harmless (the helper is never stopped).
//!    Everything done as the caller already sets the caller's ids
//!    explicitly ([`crate::Caller`] was captured at start-up), so nothing
//!    depends on the real uid after this.
//! 3. `SIGINT`, `SIGTERM`, `SIGHUP`, `SIGQUIT` and `SIGTSTP` (what a
//!    terminal sends to its foreground process group, whoever owns it) are
//!    caught into a flag instead of ending or stopping the helper; one the
//!    caller had ignored stays ignored (`nohup`). The operation polls
//!    [`Shield::check`] at its safe points and, while its effect has not
//!    happened yet, rolls back and exits with [`crate::report::Exit::Interrupted`].
//!    After the effect the flag is not acted upon: the operation completes.
//!    `SIGTTIN` and `SIGTTOU` are ignored, so writing to the terminal from
//!    the background neither stops the helper nor loops.
//!
//! [`Shield::lower`] gives the real uid back to the caller
//! (`setresuid(caller, 0, 0)`, as the helper started) and restores the
//! signal dispositions: once the effect and its audit record are done, what
//! is left (printing) may be killed again like any process of the caller.
//!
//! Without the setuid bit (a plain user run) step 2 does not happen: the
//! caller can still kill the helper, and only what the kernel does for a
//! dying tracer holds (see `SECURITY.md`).

use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::sys::resource::{Resource, RLIM_INFINITY};
use nix::sys::signal::{SigAction, Signal};
use nix::unistd::Uid;

use crate::caller::Caller;
use crate::sys;

/// The first terminal signal received while shielded (0: none).
static PENDING: AtomicI32 = AtomicI32::new(0);

/// Signals a terminal sends that are caught into [`PENDING`].
const CAUGHT: [Signal; 5] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGTSTP,
];

/// Job-control signals for background terminal I/O: ignored.
const IGNORED: [Signal; 2] = [Signal::SIGTTIN, Signal::SIGTTOU];

/// The signal handler: remember the first signal, nothing else
/// (async-signal-safe: one atomic compare-and-swap).
extern "C" fn note_signal(sig: libc::c_int) {
    let _ = PENDING.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
}

/// Why [`Shield::raise`] failed: the operation must not start.
#[derive(Debug, thiserror::Error)]
pub enum ShieldError {
    /// Disarming an interval timer failed.
    #[error("cannot disarm the interval timers")]
    Timers(#[source] Errno),
    /// A hard limit would let the kernel kill the helper half-way.
    #[error(
        "resource limit {resource} has a finite hard limit ({hard}): the kernel would kill \
         the helper when it is reached; run without it"
    )]
    KillingLimit { resource: &'static str, hard: u64 },
    /// Reading a resource limit failed.
    #[error("cannot read resource limit {resource}")]
    Rlimit {
        resource: &'static str,
        #[source]
        errno: Errno,
    },
    /// Installing a signal disposition failed.
    #[error("cannot set up signal handling for {signal}")]
    Signal {
        signal: Signal,
        #[source]
        errno: Errno,
    },
    /// `setresuid(0, 0, 0)` failed or did not stick.
    #[error("cannot take the real uid away from the caller")]
    RealUid(#[source] Errno),
}

/// A terminal signal asked the helper to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {signal}")]
pub struct Interrupted {
    pub signal: Signal,
}

/// While alive, the helper is shielded (see the module documentation).
#[derive(Debug)]
pub struct Shield {
    caller_uid: u32,
    /// The real and saved uid were switched to 0 (and are given back).
    switched: bool,
    /// Dispositions to put back.
    saved: Vec<(Signal, SigAction)>,
    lowered: bool,
}

impl Shield {
    /// Shield the helper for an operation done on behalf of `caller`.
    pub fn raise(caller: &Caller) -> Result<Shield, ShieldError> {
        sys::disarm_interval_timers().map_err(ShieldError::Timers)?;
        let setuid = caller.privileged && caller.uid != 0;
        if setuid {
            for (resource, name) in [
                (Resource::RLIMIT_CPU, "RLIMIT_CPU"),
                (Resource::RLIMIT_RTTIME, "RLIMIT_RTTIME"),
            ] {
                let (_, hard) = nix::sys::resource::getrlimit(resource).map_err(|errno| {
                    ShieldError::Rlimit {
                        resource: name,
                        errno,
                    }
                })?;
                if hard != RLIM_INFINITY {
                    return Err(ShieldError::KillingLimit {
                        resource: name,
                        hard,
                    });
                }
            }
        }
        let mut shield = Shield {
            caller_uid: caller.uid,
            switched: false,
            saved: Vec::new(),
            lowered: false,
        };
        for signal in CAUGHT {
            let old = sys::catch_signal(signal, note_signal)
                .map_err(|errno| ShieldError::Signal { signal, errno })?;
            shield.saved.push((signal, old));
            if old.handler() == nix::sys::signal::SigHandler::SigIgn {
                // Ignored by the caller (nohup, a background job): keep it so.
                sys::restore_signal(signal, &old)
                    .map_err(|errno| ShieldError::Signal { signal, errno })?;
            }
        }
        for signal in IGNORED {
            let old = sys::ignore_signal(signal)
                .map_err(|errno| ShieldError::Signal { signal, errno })?;
            shield.saved.push((signal, old));
        }
        if setuid {
            let root = Uid::from_raw(0);
            nix::unistd::setresuid(root, root, root).map_err(ShieldError::RealUid)?;
            shield.switched = true;
            let now = nix::unistd::getresuid().map_err(ShieldError::RealUid)?;
            if !(now.real.is_root() && now.effective.is_root() && now.saved.is_root()) {
                return Err(ShieldError::RealUid(Errno::EPERM));
            }
        }
        Ok(shield)
    }

    /// The terminal signal received since the shield was raised, if any.
    pub fn check(&self) -> Result<(), Interrupted> {
        match pending() {
            Some(signal) => Err(Interrupted { signal }),
            None => Ok(()),
        }
    }

    /// Whether the caller can no longer signal the helper (setuid run).
    pub fn unkillable(&self) -> bool {
        self.switched
    }

    /// Give the real uid back to the caller and restore the signal
    /// dispositions. Done once the effect and its audit record are in place.
    pub fn lower(mut self) {
        self.lower_now();
    }

    fn lower_now(&mut self) {
        if self.lowered {
            return;
        }
        self.lowered = true;
        if self.switched {
            let root = Uid::from_raw(0);
            // Best effort: failing leaves the helper unkillable by the
            // caller until it exits, which is safe.
            let _ = nix::unistd::setresuid(Uid::from_raw(self.caller_uid), root, root);
        }
        for (signal, old) in self.saved.drain(..).rev() {
            let _ = sys::restore_signal(signal, &old);
        }
    }
}

impl Drop for Shield {
    fn drop(&mut self) {
        self.lower_now();
    }
}

/// The first terminal signal received while shielded, if any (for engine
/// loops that poll it between steps).
pub fn pending() -> Option<Signal> {
    match PENDING.load(Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}

/// [`pending`] as a plain function pointer for the engine's polling hooks.
pub fn interrupted() -> bool {
    pending().is_some()
}
