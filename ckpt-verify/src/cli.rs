//! The command line of `ckpt-verify`: its clap definitions, nothing else.
//!
//! Kept apart from `main.rs` so that the man page and shell completion
//! generator (`man/`, `ckpt-man`) builds from the very same definitions;
//! it may use only `clap` and `std`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Verify, inspect and restore checkpoint images.
#[derive(Debug, Parser)]
#[command(name = "ckpt-verify", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check integrity, signature and trust (exit 0 only when all hold).
    Verify {
        /// The image file (opened as you).
        image: PathBuf,
        /// Print one JSON object on stdout (docs/JSON.md).
        #[arg(long)]
        json: bool,
    },
    /// Show what an image holds (an untrusted view).
    Inspect {
        /// The image file (opened as you).
        image: PathBuf,
        /// Print one JSON object on stdout (docs/JSON.md).
        #[arg(long)]
        json: bool,
    },
    /// Show what a restore of this image would do, and why.
    Explain {
        /// The image file (opened as you).
        image: PathBuf,
        /// Print one JSON object on stdout (docs/JSON.md).
        #[arg(long)]
        json: bool,
    },
    /// Restore a process from an image; prints its pid.
    Restore {
        /// The image file (opened as you).
        image: PathBuf,
        /// Also write the pid to FILE (created by you; never overwritten).
        #[arg(long, value_name = "FILE")]
        pidfile: Option<PathBuf>,
        /// Fail instead of falling back to your own credentials.
        #[arg(long)]
        require_saved_creds: bool,
        /// Hand your own fd N (3 to 1023, open when you started the
        /// command) to the restored process in place of its fd N that was
        /// connected outside the image at dump (a pipe, socket or
        /// terminal it inherited). Repeatable. Without it such an fd is
        /// /dev/null, with a notice.
        #[arg(long = "inherit-fd", value_name = "N")]
        inherit_fd: Vec<i32>,
        /// Restore into a new pid namespace (with a user and a mount
        /// namespace of your own, as `unshare --user --pid --mount-proc`
        /// would make them), where every process keeps its saved pid; the
        /// pid printed is the one outside it. Your own credentials only;
        /// not for root.
        #[arg(long)]
        pid_namespace: bool,
        /// Print one JSON object on stdout (pid, grants, notices;
        /// docs/JSON.md) instead of the pid line.
        #[arg(long)]
        json: bool,
    },
    /// Policy commands.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Validate a policy file (default: the installed policy, with its
    /// ownership and mode checks).
    Check {
        /// A policy draft to check (opened as you; only parsed and
        /// validated, never trusted).
        file: Option<PathBuf>,
        /// Print one JSON object on stdout (valid, error, rules, warnings;
        /// docs/JSON.md) instead of the `OK`/`invalid` line.
        #[arg(long)]
        json: bool,
    },
}
