//! ckpt-tpm: the host's TPM-resident keys, and the host signing
//! configuration (`<sysconfdir>/ckpt.toml`).
//!
//! Only the TPM agent `ckpt-tpm-agent` links libtss2 (through [`Tpm`], the
//! `device` feature, and [`serve`]). `ckpt-sign` uses the TPM through
//! [`remote`], which sends each operation to an agent it starts as root
//! only when a TPM is needed, so the setuid helper neither links nor loads
//! libtss2 or libcrypto. Verification never needs a TPM (`ckpt-keys`
//! checks ECDSA signatures and quotes in pure software), so `ckpt-verify`
//! does not link libtss2 at all.
//!
//! * [`remote`] and [`wire`]: the agent's client and its protocol (typed
//!   CBOR requests, length-prefixed, with size caps on both sides).
//!
//! * [`config`]: `[signing]` (file or TPM key, optional fallback to the file
//!   key) and `[tpm]` (TCTI, PCR selection, persistent handles). The TCTI
//!   comes from this root-owned file only, never from the environment.
//! * [`store`]: `keys/tpm.key` (root, 0600: handles, random authorization
//!   values and key ids), `keys/tpm.pub` and `keys/tpm-ak.pub` (public lines).
//! * [`Tpm`]: a connection; creates or reuses the two persistent keys, signs
//!   digests, quotes PCRs, reads and extends PCRs.
//!
//! Two keys, both ECDSA P-256 primaries under the owner hierarchy, made
//! persistent:
//!
//! * the **signing key**, unrestricted: it signs SHA-256 of
//!   [`ckpt_keys::signed_message`] for an image, nothing else;
//! * the **attestation key** (AK), *restricted*: the TPM only lets it sign
//!   data the TPM made itself (quotes), so it cannot be made to sign a
//!   forged attestation, and the signing key cannot produce a quote.
//!
//! Both have a random 32-byte authorization value (kept in `tpm.key`, root
//! only) and `noDA`: a process that can open the TPM device but cannot read
//! `tpm.key` cannot use them.
//!
//! Feature `device` (default): the real connection through tss-esapi
//! (libtss2), `Tpm`, and the agent's server side. Without it nothing links
//! libtss2: the crate is the agent's client (`remote`), the key record
//! and the configuration, which is all `ckpt-sign` uses.
//!
//! Environment: libtss2 reads `TSS2_LOG`, `TSS2_LOGFILE` and others with
//! `getenv`. [`Tpm::connect`] refuses to run unless the environment holds
//! no `TSS2_*` variable other than `TSS2_LOG=all+none`: `ckpt-sign` starts
//! the agent with exactly that environment, whatever its caller's was.
#![forbid(unsafe_code)]

pub mod config;
#[cfg(feature = "device")]
mod device;
mod outcome;
pub mod remote;
#[cfg(feature = "device")]
pub mod serve;
pub mod store;
pub mod wire;

#[cfg(feature = "device")]
pub use device::{LoadedKey, Tpm, TpmError};
pub use outcome::{ProvisionOutcome, TpmQuote};

/// The only `TSS2_*` variable allowed in the environment when libtss2 runs,
/// and its only allowed value (all modules, no messages).
pub const TSS2_LOG_QUIET: (&str, &str) = ("TSS2_LOG", "all+none");
