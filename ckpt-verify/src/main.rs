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
mod cli;
mod explain;
mod inspect;
mod plan;
mod policy_cmd;
mod restore;
mod verify;

use std::process::ExitCode;

use ckpt_privsep::report::{error_chain, Exit};
use ckpt_privsep::startup::{self, StartupError};
use ckpt_privsep::Caller;
use clap::Parser;
use cli::{Cli, Command, PolicyCommand};

pub(crate) const PROG: &str = "ckpt-verify";

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
            pid_namespace,
            json,
        } => {
            check_inherit_fds(&inherit_fd, open_fds)?;
            restore::restore(
                caller,
                &image,
                pidfile.as_deref(),
                restore::Asked {
                    require_saved_creds,
                    inherit_fds: &inherit_fd,
                    pid_namespace,
                },
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
