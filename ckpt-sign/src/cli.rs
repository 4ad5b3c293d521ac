//! The command line of `ckpt-sign`: its clap definitions, nothing else.
//!
//! Kept apart from `main.rs` so that the man page and shell completion
//! generator (`man/`, `ckpt-man`) builds from the very same definitions;
//! it may use only `clap` and `std`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Checkpoint a process and sign the image with this host's key.
#[derive(Debug, Parser)]
#[command(name = "ckpt-sign", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create the host signing key (root only).
    Keygen {
        /// Create (or keep) the TPM signing and attestation keys instead,
        /// with the TCTI and handles of <sysconfdir>/ckpt.toml.
        #[arg(long)]
        tpm: bool,
        /// Replace an existing host key.
        #[arg(long)]
        force: bool,
        /// Print one JSON object on stdout (the key; docs/JSON.md) instead
        /// of its line.
        #[arg(long)]
        json: bool,
    },
    /// Print the host public key as one line (for another host's policy).
    Pubkey {
        /// The TPM signing key.
        #[arg(long)]
        tpm: bool,
        /// With --tpm: the TPM attestation key (a policy's attestation_key).
        #[arg(long, requires = "tpm")]
        attestation: bool,
        /// Print one JSON object on stdout (algorithm, key id, line;
        /// docs/JSON.md) instead of the line.
        #[arg(long)]
        json: bool,
    },
    /// Checkpoint a process into a signed image.
    Dump(DumpArgs),
}

/// Arguments of `ckpt-sign dump`.
#[derive(Debug, Args)]
pub(crate) struct DumpArgs {
    /// The process to checkpoint.
    #[arg(long, value_name = "PID", allow_negative_numbers = true)]
    pub pid: i64,
    /// Where to write the image (created by you, mode 0600).
    #[arg(short = 'o', long = "output", value_name = "IMAGE")]
    pub output: PathBuf,
    /// Checkpoint the process and all its descendants (children, zombies, their own children).
    #[arg(long)]
    pub tree: bool,
    /// Let the process continue after the dump instead of killing it.
    #[arg(long)]
    pub leave_running: bool,
    /// Compress the memory and file contents in the image (LZ4, chunk by
    /// chunk; named in the signed manifest, each chunk's digest covers its
    /// compressed bytes). Without it too, runs of pages of anonymous
    /// memory that hold only zeros are not stored (restore maps that
    /// memory fresh, which reads as zeros).
    #[arg(long)]
    pub compress: bool,
    /// Do not sign the image.
    #[arg(long, conflicts_with = "key")]
    pub unsigned: bool,
    /// Overwrite IMAGE if it exists (never through a symbolic link).
    #[arg(long)]
    pub force: bool,
    /// Sign with this secret key file of yours (opened as you) instead of
    /// the host key. Root only: `--key tpm` signs with the TPM host key.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Print one JSON object on stdout (image id, size, signer, key id,
    /// notices; docs/JSON.md) instead of the `wrote ...` line on stderr.
    #[arg(long)]
    pub json: bool,
}
