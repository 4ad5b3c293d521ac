//! `ckpt-sign`: checkpoint a process the caller could already ptrace-attach to,
//! and sign the image with the host key. Installed setuid root.
//!
//! Thin: start-up hardening, argument parsing, library calls, exit codes
//! (see `SECURITY.md`). Every path the caller names is opened as the caller
//! (`ckpt_privsep::as_caller`); the host key is read as root from the
//! build-time key directory, used once, and dropped (zeroized). Every dump
//! (done, refused or failed) is logged as one audit line (syslog, authpriv).
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

mod cli;
mod dump;
mod tpm;

use std::process::ExitCode;

use ckpt_privsep::report::{error_chain, Exit};
use ckpt_privsep::startup::{self, StartupError};
use ckpt_privsep::Caller;
use clap::Parser;
pub(crate) use cli::DumpArgs;
use cli::{Cli, Command};

const PROG: &str = "ckpt-sign";

pub(crate) use ckpt_privsep::report::Fail;

fn main() -> ExitCode {
    let startup = match startup::harden() {
        Ok(s) => s,
        Err(StartupError::EmptyArgv) => {
            errln!("usage: {PROG} <keygen|pubkey|dump> ... (started without argv[0])");
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
            // --help and --version are successes; everything else is usage.
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage.into()
            } else {
                Exit::Ok.into()
            };
        }
    };
    match run(&startup.caller, cli) {
        Ok(()) => Exit::Ok.into(),
        Err(f) => {
            errln!("{PROG}: {}", f.message());
            f.exit.into()
        }
    }
}

fn run(caller: &Caller, cli: Cli) -> Result<(), Fail> {
    match cli.command {
        Command::Keygen { tpm, force, json } => keygen(caller, tpm, force, json),
        Command::Pubkey {
            tpm,
            attestation,
            json,
        } => pubkey(tpm, attestation, json),
        Command::Dump(args) => {
            let mut audit = dump::Audit::new(caller, &args);
            let mut report = dump::Report::default();
            let result = match ckpt_privsep::shield::Shield::raise(caller) {
                Ok(shield) => {
                    // One child at the caller's credentials for every step
                    // taken as the caller, forked now (single-threaded, no
                    // key loaded yet); without it each step forks its own.
                    let _ = ckpt_privsep::as_caller::worker::start(caller);
                    let r = dump::run(caller, &args, &mut audit, &shield, &mut report);
                    ckpt_privsep::as_caller::worker::stop();
                    audit.finish(&r, &mut report.warnings);
                    // The image and its record are in place: the caller may
                    // kill us again, and a full stdout changes nothing.
                    shield.lower();
                    r
                }
                Err(e) => {
                    let r = Err(Fail::with(Exit::Other, "dump: cannot start", e));
                    audit.finish(&r, &mut report.warnings);
                    r
                }
            };
            for w in &report.warnings {
                errln!("{PROG}: {w}");
            }
            if args.json {
                if result.is_ok() {
                    outln!("{}", report.json());
                }
            } else {
                for l in report.lines() {
                    errln!("{PROG}: {l}");
                }
            }
            result
        }
    }
}

/// A public key as `keygen --json` and `pubkey --json` print it
/// (docs/JSON.md, "ckpt-sign pubkey").
pub(crate) fn key_json(
    key: &ckpt_keys::PublicKey,
    role: &str,
    extra: Option<(&str, serde_json::Value)>,
) -> String {
    let mut m = serde_json::json!({
        "schema": 1,
        "role": role,
        "algorithm": key.algorithm().name(),
        "key_id": key.key_id().to_string(),
        "public_key": key.to_line(),
    });
    if let (Some((k, v)), Some(obj)) = (extra, m.as_object_mut()) {
        obj.insert(k.to_owned(), v);
    }
    m.to_string()
}

fn keygen(caller: &Caller, tpm: bool, force: bool, json: bool) -> Result<(), Fail> {
    if !caller.is_root() || !caller.privileged {
        return Err(Fail::new(
            Exit::AccessDenied,
            format!(
                "keygen: permission denied: only root may create the host key (you are uid {})",
                caller.uid
            ),
        ));
    }
    if tpm {
        return tpm::keygen(force, json);
    }
    let dir = ckpt_core::paths::keys_dir();
    let key = ckpt_keys::SigningKey::generate()
        .map_err(|e| Fail::with(Exit::Other, "keygen: cannot generate a key", e))?;
    ckpt_keys::store::write_host_key(&dir, &key, force).map_err(|e| {
        let hint = if matches!(e, ckpt_keys::KeyError::AlreadyExists { .. }) {
            " (use --force to replace it)"
        } else {
            ""
        };
        Fail::with(
            Exit::Other,
            format!(
                "keygen: cannot write the host key in {}{hint}",
                dir.display()
            ),
            e,
        )
    })?;
    let public = key.public_key();
    drop(key);
    errln!(
        "{PROG}: created host key {} in {}",
        public.key_id(),
        dir.display()
    );
    if json {
        outln!("{}", key_json(&public, "host", None));
    } else {
        outln!("{}", public.to_line());
    }
    Ok(())
}

fn pubkey(tpm: bool, attestation: bool, json: bool) -> Result<(), Fail> {
    if tpm {
        return tpm::pubkey(attestation, json);
    }
    let dir = ckpt_core::paths::keys_dir();
    let public = ckpt_keys::store::load_host_public(&dir).map_err(|e| {
        Fail::with(
            Exit::Other,
            "pubkey: no usable host key (root can create one with `ckpt-sign keygen`)",
            e,
        )
    })?;
    if json {
        outln!("{}", key_json(&public, "host", None));
    } else {
        outln!("{}", public.to_line());
    }
    Ok(())
}
