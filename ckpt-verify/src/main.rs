//! `ckpt-verify`: verify, inspect, explain and restore checkpoint images;
//! check the admin policy. Installed setuid root.
//!
//! Thin: start-up hardening, argument parsing, library calls, exit codes
//! (see `SECURITY.md`). The image is always opened as the caller; a restore
//! gets more than the caller's credentials only through a trusted signature
//! and a grant of the admin's policy (`ckpt_policy::decide`).
#![forbid(unsafe_code)]

/// `println!` that does not panic when stdout is closed or a broken pipe
/// (SIGPIPE is ignored by the start-up hardening).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that does not panic when stderr is a broken pipe.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod attest;
mod checked;
mod explain;
mod inspect;
mod plan;
mod policy_cmd;
mod restore;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use ckpt_privsep::report::{error_chain, Exit};
use ckpt_privsep::startup::{self, StartupError};
use ckpt_privsep::Caller;
use clap::{Parser, Subcommand};

pub(crate) const PROG: &str = "ckpt-verify";

/// Verify, inspect and restore checkpoint images.
#[derive(Debug, Parser)]
#[command(name = "ckpt-verify", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
enum PolicyCommand {
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

pub(crate) use ckpt_privsep::report::Fail;

fn main() -> ExitCode {
    let startup = match startup::harden() {
        Ok(s) => s,
        Err(StartupError::EmptyArgv) => {
            errln!(
                "usage: {PROG} <verify|inspect|explain|restore|policy> ... (started without argv[0])"
            );
            return Exit::Usage.into();
        }
        Err(e) => {
            errln!("{PROG}: refusing to start: {}", error_chain(&e));
            return Exit::Other.into();
        }
    };
    let cli = match Cli::try_parse_from(&startup.args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage.into()
            } else {
                Exit::Ok.into()
            };
        }
    };
    match run(&startup.caller, &startup.open_fds, cli) {
        Ok(exit) => exit.into(),
        Err(f) => {
            errln!("{PROG}: {}", f.message());
            f.exit.into()
        }
    }
}

fn run(caller: &Caller, open_fds: &[i32], cli: Cli) -> Result<Exit, Fail> {
    match cli.command {
        Command::Verify { image, json } => verify::verify(caller, &image, json),
        Command::Inspect { image, json } => inspect::inspect(caller, &image, json),
        Command::Explain { image, json } => explain::explain(caller, &image, json),
        Command::Restore {
            image,
            pidfile,
            require_saved_creds,
            inherit_fd,
            json,
        } => {
            check_inherit_fds(&inherit_fd, open_fds)?;
            restore::restore(
                caller,
                &image,
                pidfile.as_deref(),
                require_saved_creds,
                &inherit_fd,
                json,
            )
        }
        Command::Policy {
            command: PolicyCommand::Check { file, json },
        } => policy_cmd::check(caller, file.as_deref(), json),
    }
}

/// `--inherit-fd`: each N above 2, at most [`startup::MAX_INHERIT_FD`],
/// and open when the helper started (so the caller's, never one the
/// helper opened).
fn check_inherit_fds(fds: &[i32], open_fds: &[i32]) -> Result<(), Fail> {
    for &n in fds {
        if n <= 2 {
            return Err(Fail::new(
                Exit::Usage,
                format!(
                    "restore: --inherit-fd {n}: fds 0-2 are always connected to yours; \
                     give a number from 3 to {}",
                    startup::MAX_INHERIT_FD
                ),
            ));
        }
        if n > startup::MAX_INHERIT_FD {
            return Err(Fail::new(
                Exit::Usage,
                format!(
                    "restore: --inherit-fd {n}: above {}, the highest fd that can be inherited",
                    startup::MAX_INHERIT_FD
                ),
            ));
        }
        if !open_fds.contains(&n) {
            return Err(Fail::new(
                Exit::Usage,
                format!("restore: --inherit-fd {n}: fd {n} is not open in your shell or program"),
            ));
        }
    }
    Ok(())
}

/// Untrusted text for a terminal: control characters escaped.
pub(crate) fn show(s: &str) -> String {
    ckpt_privsep::report::escape_controls(s)
}

/// Bytes as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
