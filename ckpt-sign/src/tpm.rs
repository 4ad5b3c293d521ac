//! The host's signing keys as `dump`, `keygen --tpm` and `pubkey --tpm` use
//! them: the ed25519 file key (`keys/host.key`) or the TPM-resident ECDSA
//! P-256 key (`keys/tpm.key`), and the TPM attestation key that quotes every
//! host-signed dump (see `ckpt_tpm`).
//!
//! Which key signs comes from the root-owned `<sysconfdir>/ckpt.toml`
//! (`[signing] key = "file" | "tpm"`), or from `dump --key tpm` when the
//! caller is root. The TCTI comes from the same file, never from the
//! environment.
//!
//! `ckpt-sign` does not link libtss2: every TPM operation goes to the TPM
//! agent (`ckpt-tpm-agent` in the build-time `CKPT_LIBEXECDIR`), which
//! [`connect`] starts as root, only when a TPM is needed, with exactly the
//! environment `TSS2_LOG=all+none` (`ckpt_privsep::agent` checks the file
//! and starts it; `ckpt_tpm::remote` talks to it). The agent exits when its
//! connection is dropped; a dump's probe keeps its agent, with the TPM
//! connection closed, for the signer, so a dump starts one agent.
//!
//! Order in a dump, as for the file key: before the target is touched, the
//! plan checks that the keys are there and that the TPM answers (a TPM that
//! does not fails the dump then, target untouched, unless `fallback =
//! "file"`); the TPM is used again only after the dump, to sign and quote
//! the finished manifest; the connection is closed before the image is
//! renamed into place.

use std::cell::RefCell;

use ckpt_core::image::{AttestationBlock, ManifestSigner, SignError};
use ckpt_keys::{PublicKey, SigningKey};
use ckpt_privsep::report::{error_chain, Exit};
use ckpt_tpm::config::{self, HostConfig, KeySource};
use ckpt_tpm::remote::{AgentLink, LoadedKey, Tpm, TpmError};
use ckpt_tpm::store::{self, TpmKeyRecord};

use crate::{Fail, PROG};

/// The connection to a TPM agent this process started.
#[cfg(feature = "tpm")]
struct Link(ckpt_privsep::agent::Agent);

#[cfg(feature = "tpm")]
impl std::io::Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

#[cfg(feature = "tpm")]
impl std::io::Write for Link {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(feature = "tpm")]
impl AgentLink for Link {
    fn ended(&mut self) -> String {
        self.0.ended()
    }
}

/// Connects to the TPM through `tcti`, with the agent `reuse` (one the
/// plan's probe disconnected) or a new one: started as root (see
/// `ckpt_privsep::agent`) with only libtss2's logging switch in its
/// environment (the TCTI travels in the request; libtss2 needs nothing
/// else).
#[cfg(feature = "tpm")]
fn connect(tcti: &str, reuse: Option<Box<dyn AgentLink>>) -> Result<Tpm, TpmError> {
    let link = match reuse {
        Some(l) => l,
        None => Box::new(Link(
            ckpt_privsep::agent::Agent::start(
                &ckpt_core::paths::tpm_agent(),
                &[ckpt_tpm::TSS2_LOG_QUIET],
            )
            .map_err(|e| TpmError::Start(Box::new(e)))?,
        )),
    };
    Tpm::connect(link, tcti)
}

/// Built without TPM support: always [`TpmError::NotBuilt`].
#[cfg(not(feature = "tpm"))]
fn connect(_tcti: &str, _reuse: Option<Box<dyn AgentLink>>) -> Result<Tpm, TpmError> {
    Err(TpmError::NotBuilt)
}

fn keys_dir() -> std::path::PathBuf {
    ckpt_core::paths::keys_dir()
}

fn load_config(what: &str) -> Result<HostConfig, Fail> {
    config::load(&ckpt_core::paths::host_config_file()).map_err(|e| {
        Fail::with(
            Exit::Other,
            format!("{what}: unusable host configuration"),
            e,
        )
    })
}

/// `keygen --tpm`: create (or reuse) the TPM keys and record them.
pub(crate) fn keygen(force: bool, json: bool) -> Result<(), Fail> {
    let cfg = load_config("keygen --tpm")?;
    let dir = keys_dir();
    let existing = if store::record_exists(&dir) {
        match store::load_record(&dir) {
            Ok(r) => Some(r),
            Err(_) if force => None,
            Err(e) => return Err(Fail::with(
                Exit::Other,
                "keygen --tpm: the existing TPM key record is unusable (use --force to replace it)",
                e,
            )),
        }
    } else {
        None
    };
    let mut tpm = connect(&cfg.tcti, None).map_err(|e| tpm_fail("keygen --tpm", e))?;
    let out = tpm
        .provision(
            cfg.signing_handle,
            cfg.attestation_handle,
            existing.as_ref(),
            force,
        )
        .map_err(|e| tpm_fail("keygen --tpm", e))?;
    drop(tpm);
    store::write_record(&dir, &out.record, &out.signing, &out.attestation).map_err(|e| {
        Fail::with(
            Exit::Other,
            format!(
                "keygen --tpm: cannot write the TPM key record in {}",
                dir.display()
            ),
            e,
        )
    })?;
    errln!(
        "{PROG}: {} TPM signing key {} (handle {:#x}) and attestation key {} (handle {:#x}) in {}",
        if out.reused { "kept" } else { "created" },
        out.signing.key_id(),
        out.record.signing.handle,
        out.attestation.key_id(),
        out.record.attestation.handle,
        dir.display()
    );
    errln!(
        "{PROG}: attestation key (for a policy's attestation_key): {}",
        out.attestation.to_line()
    );
    if json {
        let ak = serde_json::json!({
            "algorithm": out.attestation.algorithm().name(),
            "key_id": out.attestation.key_id().to_string(),
            "public_key": out.attestation.to_line(),
        });
        outln!(
            "{}",
            crate::key_json(&out.signing, "tpm-signing", Some(("attestation", ak)))
        );
    } else {
        outln!("{}", out.signing.to_line());
    }
    Ok(())
}

/// `pubkey --tpm [--attestation]`: the TPM signing key's line (or the
/// attestation key's).
pub(crate) fn pubkey(attestation: bool, json: bool) -> Result<(), Fail> {
    let dir = keys_dir();
    let key = if attestation {
        store::load_attestation_public(&dir)
    } else {
        store::load_signing_public(&dir)
    };
    let key = key.map_err(|e| {
        Fail::with(
            Exit::Other,
            "pubkey --tpm: no usable TPM key (root can create one with `ckpt-sign keygen --tpm`)",
            e,
        )
    })?;
    if json {
        let role = if attestation {
            "tpm-attestation"
        } else {
            "tpm-signing"
        };
        outln!("{}", crate::key_json(&key, role, None));
    } else {
        outln!("{}", key.to_line());
    }
    Ok(())
}

fn tpm_fail(what: &str, e: TpmError) -> Fail {
    let exit = Exit::Other;
    Fail::with(exit, format!("{what}: TPM"), e)
}

/// How a host-signed dump will be signed, decided before the target is
/// touched.
pub(crate) struct HostPlan {
    cfg: HostConfig,
    key: KeySource,
    /// Quote with the attestation key.
    attest: bool,
    /// Why the plan already fell back to the file key.
    fell_back: Option<String>,
    /// The TPM agent of the probe, its TPM connection closed, kept for
    /// the signer (starting one costs a few ms).
    agent: RefCell<Option<Box<dyn AgentLink>>>,
}

/// Opens the TPM and loads the keys the plan needs.
fn open_keys(
    cfg: &HostConfig,
    record: &TpmKeyRecord,
    signing: bool,
    attest: bool,
    reuse: Option<Box<dyn AgentLink>>,
) -> Result<(Tpm, Option<LoadedKey>, Option<LoadedKey>), TpmError> {
    let mut tpm = connect(&cfg.tcti, reuse)?;
    let s = if signing {
        Some(tpm.load(&record.signing, false)?)
    } else {
        None
    };
    let a = if attest {
        Some(tpm.load(&record.attestation, true)?)
    } else {
        None
    };
    Ok((tpm, s, a))
}

/// Plans host signing: `force_tpm` is `dump --key tpm` (root only, checked
/// by the caller). Fails with exit 6 when the TPM is needed and does not
/// answer, unless the configuration allows the file key as a fallback.
pub(crate) fn plan(force_tpm: bool) -> Result<HostPlan, Fail> {
    let cfg = load_config("dump")?;
    let key = if force_tpm { KeySource::Tpm } else { cfg.key };
    let dir = keys_dir();
    let have_record = store::record_exists(&dir);
    let mut plan = HostPlan {
        key,
        attest: cfg.attest && have_record,
        fell_back: None,
        agent: RefCell::new(None),
        cfg,
    };
    let needs_tpm = plan.key == KeySource::Tpm || plan.attest;
    if needs_tpm {
        let probe = (|| {
            let record = store::load_record(&dir).map_err(|e| {
                Fail::with(
                    Exit::Other,
                    "dump: no usable TPM key record (root can create one with `ckpt-sign keygen --tpm`)",
                    e,
                )
            })?;
            open_keys(
                &plan.cfg,
                &record,
                plan.key == KeySource::Tpm,
                plan.attest,
                None,
            )
            .map(|(tpm, _, _)| tpm)
            .map_err(|e| {
                Fail::with(
                    Exit::DumpFailed,
                    "dump: the TPM is not usable (nothing was done to the process)",
                    e,
                )
            })
        })();
        match probe {
            // The TPM answers: close its connection (as before, it is
            // opened again to sign), keep the agent.
            Ok(tpm) => *plan.agent.get_mut() = tpm.disconnect().ok(),
            Err(f) => {
                if !plan.cfg.fallback_to_file {
                    return Err(f);
                }
                let why = match &f.source {
                    Some(e) => format!("{}: {}", f.what, error_chain(e.as_ref())),
                    None => f.what.clone(),
                };
                plan.fell_back = Some(why);
                plan.key = KeySource::File;
                plan.attest = false;
            }
        }
    }
    if plan.key == KeySource::File {
        // The public half must be there now; the secret is read after the dump.
        ckpt_keys::store::load_host_public(&dir).map_err(|e| {
            Fail::with(
                Exit::Other,
                "dump: no usable host key (root can create one with `ckpt-sign keygen`; \
                 or dump with --unsigned)",
                e,
            )
        })?;
    }
    if let Some(why) = &plan.fell_back {
        errln!("{PROG}: warning: {why}; signing with the file host key instead (fallback = \"file\"), without a TPM quote");
    }
    Ok(plan)
}

/// The host signer: the file key or the TPM key, and the attestation key
/// when dumps are quoted.
pub(crate) struct HostSigner {
    file: Option<Box<SigningKey>>,
    tpm: Option<RefCell<Tpm>>,
    signing: Option<LoadedKey>,
    ak: Option<LoadedKey>,
    pcrs: Vec<u8>,
    public: PublicKey,
    /// For the dump's message: which key, quoted or not, fallback.
    pub(crate) describe: String,
}

impl HostPlan {
    /// Loads the keys (as root, after the dump). A TPM that stopped
    /// answering since the plan fails the dump (exit 6; the target is
    /// resumed), or falls back to the file key when so configured.
    pub(crate) fn signer(&self) -> Result<HostSigner, Fail> {
        let mut fell_back = self.fell_back.clone();
        if self.key == KeySource::Tpm || self.attest {
            let opened = store::load_record(&keys_dir())
                .map_err(|e| {
                    Fail::with(
                        Exit::DumpFailed,
                        "dump: the TPM key record became unusable",
                        e,
                    )
                })
                .and_then(|record| {
                    open_keys(
                        &self.cfg,
                        &record,
                        self.key == KeySource::Tpm,
                        self.attest,
                        self.agent.borrow_mut().take(),
                    )
                    .map_err(|e| Fail::with(Exit::DumpFailed, "dump: the TPM is not usable", e))
                });
            match opened {
                Ok((tpm, signing, ak)) => {
                    let file = match self.key {
                        KeySource::File => Some(load_host_key()?),
                        KeySource::Tpm => None,
                    };
                    let public = match (&signing, &file) {
                        (Some(s), _) => s.public().clone(),
                        (None, Some(f)) => f.public_key(),
                        (None, None) => {
                            return Err(Fail::new(Exit::DumpFailed, "dump: no signing key"))
                        }
                    };
                    let describe = format!(
                        "{} key{}",
                        if signing.is_some() {
                            "TPM"
                        } else {
                            "file host"
                        },
                        if ak.is_some() {
                            format!(", TPM quote over sha256 PCRs {}", pcr_list(&self.cfg.pcrs))
                        } else {
                            String::new()
                        }
                    );
                    return Ok(HostSigner {
                        file,
                        tpm: Some(RefCell::new(tpm)),
                        signing,
                        ak,
                        pcrs: self.cfg.pcrs.clone(),
                        public,
                        describe,
                    });
                }
                Err(f) if self.cfg.fallback_to_file => {
                    let why = match &f.source {
                        Some(e) => format!("{}: {}", f.what, error_chain(e.as_ref())),
                        None => f.what.clone(),
                    };
                    errln!("{PROG}: warning: {why}; signing with the file host key instead (fallback = \"file\"), without a TPM quote");
                    fell_back = Some(why);
                }
                Err(f) => return Err(f),
            }
        }
        let file = load_host_key()?;
        let public = file.public_key();
        Ok(HostSigner {
            file: Some(file),
            tpm: None,
            signing: None,
            ak: None,
            pcrs: Vec::new(),
            public,
            describe: match fell_back {
                Some(_) => "file host key (TPM fallback), no TPM quote".to_owned(),
                None => "file host key".to_owned(),
            },
        })
    }
}

fn pcr_list(p: &[u8]) -> String {
    p.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
}

fn load_host_key() -> Result<Box<SigningKey>, Fail> {
    ckpt_keys::store::load_host_key(&keys_dir())
        .map(Box::new)
        .map_err(|e| Fail::with(Exit::Other, "dump: cannot load the host key", e))
}

fn backend(e: TpmError) -> SignError {
    SignError::Backend {
        backend: "TPM",
        source: Box::new(e),
    }
}

impl ManifestSigner for HostSigner {
    fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    fn sign_manifest_digest(&self, digest: &[u8; 32]) -> Result<Vec<u8>, SignError> {
        if let Some(k) = &self.file {
            return Ok(k.sign_manifest_digest(digest));
        }
        match (&self.tpm, &self.signing) {
            (Some(tpm), Some(key)) => tpm
                .borrow_mut()
                .sign_manifest_digest(key, digest)
                .map_err(backend),
            _ => Err(backend(TpmError::Unexpected("no signing key loaded"))),
        }
    }

    fn attest_manifest_digest(
        &self,
        digest: &[u8; 32],
    ) -> Result<Option<AttestationBlock>, SignError> {
        let (Some(tpm), Some(ak)) = (&self.tpm, &self.ak) else {
            return Ok(None);
        };
        let q = tpm
            .borrow_mut()
            .quote(ak, digest, &self.pcrs)
            .map_err(backend)?;
        Ok(Some(AttestationBlock::tpm2_quote(
            ak.public(),
            q.attest,
            q.signature,
            &q.pcrs,
        )))
    }
}
