//! The TPM as `ckpt-sign` uses it: the same operations as the in-process
//! connection ([`crate::Tpm`]), each sent as one request to the TPM agent
//! (`ckpt-tpm-agent`, which links libtss2 and serves them with the real
//! device, see [`crate::serve`]) over a connection the caller provides
//! ([`AgentLink`]: in `ckpt-sign`, a socket to an agent it started as root).
//! This module links nothing of libtss2, so neither does `ckpt-sign`.
//!
//! Trusts: the agent (a root-owned program it started itself) for the TPM's
//! answers, as the in-process connection trusted libtss2. Still, every
//! answer is read with a size cap and decoded into fixed types, and what
//! can be checked here is: the type of each answer, public keys that parse
//! and have the ids asked for, signatures of 64 bytes, PCR values for the
//! indices asked for, a `tpm.key` record that parses.
//!
//! An agent that dies or answers nothing usable gives an error naming the
//! step (`the TPM agent ended during Quote (killed by SIGKILL)`), never a
//! hang: the link is a socket, so its end is seen as end-of-file.

use std::io::{Read, Write};

use ckpt_keys::quote::PcrValue;
use ckpt_keys::PublicKey;
use zeroize::Zeroizing;

use crate::store::{KeyRef, TpmKeyRecord};
use crate::wire::{self, FrameError, KeyToLoad, Request, Response};
use crate::{ProvisionOutcome, TpmQuote};

/// The connection to a running agent.
pub trait AgentLink: Read + Write {
    /// After the connection broke: ends the agent if it is still there,
    /// waits for it, and says how it ended (`exit status 1`).
    fn ended(&mut self) -> String;
}

/// An error the agent reported: its text, then its sources, as the
/// in-process connection's error would print.
#[derive(Debug)]
pub struct AgentReported {
    text: String,
    source: Option<Box<AgentReported>>,
}

impl AgentReported {
    fn from_chain(chain: &[String]) -> Option<AgentReported> {
        let (last, rest) = chain.split_last()?;
        let mut e = AgentReported {
            text: last.clone(),
            source: None,
        };
        for t in rest.iter().rev() {
            e = AgentReported {
                text: t.clone(),
                source: Some(Box::new(e)),
            };
        }
        Some(e)
    }
}

impl std::fmt::Display for AgentReported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for AgentReported {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Why a TPM operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TpmError {
    /// This build has no TPM support.
    #[error(
        "this ckpt-sign was built without TPM support (cargo feature `tpm`); \
         use the file host key (`[signing] key = \"file\"` in ckpt.toml)"
    )]
    NotBuilt,
    /// The agent could not be started.
    #[error("cannot start the TPM agent")]
    Start(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The agent's connection ended while a step was in flight.
    #[error("the TPM agent ended during {step} ({status})")]
    Ended { step: &'static str, status: String },
    /// Talking to the agent failed.
    #[error("cannot talk to the TPM agent during {step}")]
    Link {
        step: &'static str,
        #[source]
        source: FrameError,
    },
    /// The agent answered something that does not fit the request.
    #[error("the TPM agent's answer to {step} is unusable: {what}")]
    BadAnswer {
        step: &'static str,
        what: &'static str,
    },
    /// The TPM operation failed in the agent.
    #[error(transparent)]
    Device(AgentReported),
    /// The TPM returned something this crate cannot use.
    #[error("unexpected TPM output: {0}")]
    Unexpected(&'static str),
}

/// A key the agent loaded.
#[derive(Debug)]
pub struct LoadedKey {
    slot: u32,
    public: PublicKey,
}

impl LoadedKey {
    /// The key's public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }
}

/// A connection to the TPM through the agent.
pub struct Tpm {
    link: Box<dyn AgentLink>,
}

impl std::fmt::Debug for Tpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tpm (agent)")
    }
}

fn pcrs_from_wire(
    step: &'static str,
    asked: &[u8],
    got: &[wire::Pcr],
) -> Result<Vec<PcrValue>, TpmError> {
    if got.len() != asked.len() || got.iter().zip(asked).any(|(p, &i)| p.index != i) {
        return Err(TpmError::BadAnswer {
            step,
            what: "PCR values for other indices",
        });
    }
    Ok(got
        .iter()
        .map(|p| PcrValue {
            index: p.index,
            value: p.value,
        })
        .collect())
}

fn public_from_wire(step: &'static str, line: &str) -> Result<PublicKey, TpmError> {
    PublicKey::from_line(line).map_err(|_| TpmError::BadAnswer {
        step,
        what: "not a public key line",
    })
}

fn signature_from_wire(step: &'static str, sig: &[u8]) -> Result<Vec<u8>, TpmError> {
    if sig.len() != 64 {
        return Err(TpmError::BadAnswer {
            step,
            what: "a signature that is not 64 bytes",
        });
    }
    Ok(sig.to_vec())
}

impl Tpm {
    /// Asks the agent on `link` to connect through `tcti` (from the
    /// root-owned configuration).
    pub fn connect(link: Box<dyn AgentLink>, tcti: &str) -> Result<Tpm, TpmError> {
        let mut tpm = Tpm { link };
        match tpm.call(Request::Connect {
            tcti: tcti.to_owned(),
        })? {
            Response::Connected => Ok(tpm),
            _ => Err(TpmError::BadAnswer {
                step: "Connect",
                what: "another kind of answer",
            }),
        }
    }

    /// Closes the TPM connection but keeps the agent: the link to
    /// [`Tpm::connect`] again later without starting another agent.
    pub fn disconnect(mut self) -> Result<Box<dyn AgentLink>, TpmError> {
        match self.call(Request::Disconnect)? {
            Response::Disconnected => Ok(self.link),
            _ => Err(TpmError::BadAnswer {
                step: "Disconnect",
                what: "another kind of answer",
            }),
        }
    }

    /// Sends `req`, reads its answer; an agent-reported failure is an error.
    fn call(&mut self, req: Request) -> Result<Response, TpmError> {
        let step = req.step();
        let sent = wire::write_frame(&mut self.link, &req);
        drop(req);
        let got = match sent {
            Ok(()) => wire::read_frame::<Response>(&mut self.link, wire::MAX_RESPONSE),
            Err(e) => Err(e),
        };
        match got {
            Ok(Some(Response::Failed(ref chain))) => Err(match AgentReported::from_chain(chain) {
                Some(e) => TpmError::Device(e),
                None => TpmError::BadAnswer {
                    step,
                    what: "an empty error",
                },
            }),
            Ok(Some(r)) => Ok(r),
            Ok(None) | Err(FrameError::Closed) => Err(TpmError::Ended {
                step,
                status: self.link.ended(),
            }),
            Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                Err(TpmError::Ended {
                    step,
                    status: self.link.ended(),
                })
            }
            Err(source) => Err(TpmError::Link { step, source }),
        }
    }

    /// Loads the key `key` names and checks it is the recorded key.
    pub fn load(&mut self, key: &KeyRef, restricted: bool) -> Result<LoadedKey, TpmError> {
        let req = Request::Load {
            key: KeyToLoad {
                handle: key.handle,
                auth: wire::Auth(*key.auth),
                key_id: key.key_id.to_string(),
            },
            restricted,
        };
        match self.call(req)? {
            Response::Loaded { slot, ref public } => {
                let public = public_from_wire("Load", public)?;
                if public.key_id() != key.key_id {
                    return Err(TpmError::BadAnswer {
                        step: "Load",
                        what: "a key other than the recorded one",
                    });
                }
                Ok(LoadedKey { slot, public })
            }
            _ => Err(TpmError::BadAnswer {
                step: "Load",
                what: "another kind of answer",
            }),
        }
    }

    /// Creates (or reuses) the signing and attestation keys; see
    /// [`crate::Tpm::provision`].
    pub fn provision(
        &mut self,
        signing_handle: u32,
        ak_handle: u32,
        existing: Option<&TpmKeyRecord>,
        force: bool,
    ) -> Result<ProvisionOutcome, TpmError> {
        let req = Request::Provision {
            signing_handle,
            ak_handle,
            existing: existing.map(|r| r.to_bytes().to_vec()),
            force,
        };
        let step = "Provision";
        match self.call(req)? {
            Response::Provisioned {
                ref record,
                ref signing,
                ref attestation,
                reused,
            } => {
                let bad = |what| TpmError::BadAnswer { step, what };
                let record = TpmKeyRecord::parse(&Zeroizing::new(record.clone()))
                    .map_err(|_| bad("a key record that does not parse"))?;
                let signing = public_from_wire(step, signing)?;
                let attestation = public_from_wire(step, attestation)?;
                if record.signing.handle != signing_handle
                    || record.attestation.handle != ak_handle
                    || record.signing.key_id != signing.key_id()
                    || record.attestation.key_id != attestation.key_id()
                {
                    return Err(bad("a key record for other handles or keys"));
                }
                Ok(ProvisionOutcome {
                    record,
                    signing,
                    attestation,
                    reused,
                })
            }
            _ => Err(TpmError::BadAnswer {
                step,
                what: "another kind of answer",
            }),
        }
    }

    /// Signs for `key` (see [`crate::Tpm::sign_manifest_digest`]).
    pub fn sign_manifest_digest(
        &mut self,
        key: &LoadedKey,
        manifest_digest: &[u8; 32],
    ) -> Result<Vec<u8>, TpmError> {
        match self.call(Request::Sign {
            slot: key.slot,
            manifest_digest: *manifest_digest,
        })? {
            Response::Signature(ref s) => signature_from_wire("Sign", s),
            _ => Err(TpmError::BadAnswer {
                step: "Sign",
                what: "another kind of answer",
            }),
        }
    }

    /// Reads the sha256 values of `pcrs` (ascending indices).
    pub fn pcr_read(&mut self, pcrs: &[u8]) -> Result<Vec<PcrValue>, TpmError> {
        match self.call(Request::PcrRead {
            pcrs: pcrs.to_vec(),
        })? {
            Response::Pcrs(ref got) => pcrs_from_wire("PCR_Read", pcrs, got),
            _ => Err(TpmError::BadAnswer {
                step: "PCR_Read",
                what: "another kind of answer",
            }),
        }
    }

    /// Quotes `pcrs` with the attestation key (see [`crate::Tpm::quote`]).
    pub fn quote(
        &mut self,
        ak: &LoadedKey,
        qualifying: &[u8; 32],
        pcrs: &[u8],
    ) -> Result<TpmQuote, TpmError> {
        match self.call(Request::Quote {
            slot: ak.slot,
            qualifying: *qualifying,
            pcrs: pcrs.to_vec(),
        })? {
            Response::Quote {
                ref attest,
                ref signature,
                pcrs: ref got,
            } => Ok(TpmQuote {
                attest: attest.clone(),
                signature: signature_from_wire("Quote", signature)?,
                pcrs: pcrs_from_wire("Quote", pcrs, got)?,
            }),
            _ => Err(TpmError::BadAnswer {
                step: "Quote",
                what: "another kind of answer",
            }),
        }
    }

    /// Extends sha256 PCR `index` with `digest`.
    pub fn pcr_extend(&mut self, index: u8, digest: &[u8; 32]) -> Result<(), TpmError> {
        match self.call(Request::PcrExtend {
            index,
            digest: *digest,
        })? {
            Response::Extended => Ok(()),
            _ => Err(TpmError::BadAnswer {
                step: "PCR_Extend",
                what: "another kind of answer",
            }),
        }
    }
}
