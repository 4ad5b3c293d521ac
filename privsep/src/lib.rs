//! Privilege separation for the setuid helpers `ckpt-sign` and `ckpt-verify`.
//!
//! * [`startup`]: make the process safe before anything else runs
//!   (docs/HARDENING.md, rules 1-7) and capture the [`Caller`].
//! * [`as_caller`]: open, create and rename caller-named paths in a forked
//!   child that holds exactly the caller's credentials, passing fds back
//!   (docs/HARDENING.md, rules 10 and 11).
//! * [`shield`]: while a dump or restore runs, the caller can no longer
//!   kill or stop the helper, and terminal signals roll the operation back
//!   at safe points instead of cutting it short.
//! * [`progress`]: the progress bar of a long dump or restore, drawn only
//!   on a terminal.
//! * [`agent`]: start a root-owned agent program (the TPM agent) as root,
//!   after checking its file, connected by a socket.
//! * [`access`]: ask the kernel whether the caller may ptrace-attach to a
//!   target (read its memory), and hold targets by pidfd.
//!
//! Trust: this crate trusts the kernel and nothing the caller supplies. It
//! never resolves a caller-supplied path with elevated credentials.
//!
//! Unsafe code is confined to `sys`, one small function per raw call, each
//! with a `// SAFETY:` comment. Those whose soundness depends on the caller
//! (`fork`, `close_range`, taking ownership of a received fd) are `unsafe
//! fn`s; their one user, `as_caller`, says at each call why the contract
//! holds there.

pub mod access;
pub mod agent;
pub mod as_caller;
pub mod audit;
pub mod caller;
pub mod ledger;
pub mod progress;
pub mod report;
pub mod shield;
pub mod startup;
mod sys;

pub use caller::Caller;
