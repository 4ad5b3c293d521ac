//! The TPM agent's side of [`crate::wire`]: reads requests from
//! `ckpt-sign`, runs them on the real device ([`crate::Tpm`], libtss2), and
//! answers each one. Built with the `device` feature only; the
//! `ckpt-tpm-agent` program is a thin `main` around [`serve`].
//!
//! Owns: one TPM connection and up to [`wire::MAX_LOADED`] loaded keys.
//! Trusts: nothing in the requests. Every request is checked before the
//! TPM sees it: `Connect` first and once per connection (`Disconnect`
//! ends one), a TCTI of at most
//! [`wire::MAX_TCTI`] printable characters, handles in the owner's
//! persistent range, PCR selections of ascending indices below 24, key
//! slots that exist, an unrestricted key for `Sign` and a restricted one
//! for `Quote`. A request that breaks these rules ends the agent (after an
//! answer saying why): only a confused or hostile client sends one.

use std::io::{Read, Write};

use zeroize::Zeroizing;

use crate::store::{KeyRef, TpmKeyRecord};
use crate::wire::{self, FrameError, Request, Response};
use crate::{LoadedKey, Tpm};

/// Why the agent stopped serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Reading a request or writing an answer failed.
    #[error("the connection to ckpt-sign failed")]
    Link(#[source] FrameError),
    /// A request broke the protocol's rules.
    #[error("refused a request: {0}")]
    Refused(&'static str),
}

/// The owner range of persistent handles (what `tpm.key` accepts).
fn persistent(handle: u32) -> bool {
    (0x8100_0000..0x8180_0000).contains(&handle)
}

fn chain(e: &dyn std::error::Error) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = Some(e);
    while let Some(e) = cur {
        if out.len() == wire::MAX_ERROR_LINKS {
            break;
        }
        out.push(e.to_string().chars().take(wire::MAX_ERROR_TEXT).collect());
        cur = e.source();
    }
    out
}

struct Agent {
    tpm: Option<Tpm>,
    keys: Vec<(LoadedKey, bool)>,
}

impl Agent {
    fn tpm(&mut self) -> Result<&mut Tpm, ServeError> {
        self.tpm
            .as_mut()
            .ok_or(ServeError::Refused("the first request must be Connect"))
    }

    /// Checks `req` and runs it: `Err` ends the agent, `Ok(Failed)` is a
    /// TPM failure reported to `ckpt-sign`.
    fn handle(&mut self, req: &Request) -> Result<Response, ServeError> {
        let failed = |e: crate::TpmError| Response::Failed(chain(&e));
        Ok(match req {
            Request::Connect { tcti } => {
                if self.tpm.is_some() {
                    return Err(ServeError::Refused("Connect came twice"));
                }
                if tcti.is_empty()
                    || tcti.len() > wire::MAX_TCTI
                    || tcti.chars().any(char::is_control)
                {
                    return Err(ServeError::Refused("an invalid TCTI"));
                }
                match Tpm::connect(tcti) {
                    Ok(t) => {
                        self.tpm = Some(t);
                        Response::Connected
                    }
                    Err(e) => failed(e),
                }
            }
            Request::Disconnect => {
                self.tpm()?;
                self.keys.clear();
                self.tpm = None;
                Response::Disconnected
            }
            Request::Load { key, restricted } => {
                if self.keys.len() >= wire::MAX_LOADED {
                    return Err(ServeError::Refused("too many keys loaded"));
                }
                if !persistent(key.handle) {
                    return Err(ServeError::Refused("not a persistent handle"));
                }
                let key_id = key
                    .key_id
                    .parse()
                    .map_err(|_| ServeError::Refused("not a key id"))?;
                let kref = KeyRef {
                    handle: key.handle,
                    auth: Zeroizing::new(key.auth.0),
                    key_id,
                };
                let restricted = *restricted;
                match self.tpm()?.load(&kref, restricted) {
                    Ok(k) => {
                        let public = k.public().to_line();
                        let slot = u32::try_from(self.keys.len())
                            .map_err(|_| ServeError::Refused("too many keys loaded"))?;
                        self.keys.push((k, restricted));
                        Response::Loaded { slot, public }
                    }
                    Err(e) => failed(e),
                }
            }
            Request::Provision {
                signing_handle,
                ak_handle,
                existing,
                force,
            } => {
                if !persistent(*signing_handle)
                    || !persistent(*ak_handle)
                    || signing_handle == ak_handle
                {
                    return Err(ServeError::Refused("invalid persistent handles"));
                }
                let existing = match existing {
                    Some(text) => Some(TpmKeyRecord::parse(text).map_err(|_| {
                        ServeError::Refused("an existing record that does not parse")
                    })?),
                    None => None,
                };
                match self
                    .tpm()?
                    .provision(*signing_handle, *ak_handle, existing.as_ref(), *force)
                {
                    Ok(out) => Response::Provisioned {
                        record: out.record.to_bytes().to_vec(),
                        signing: out.signing.to_line(),
                        attestation: out.attestation.to_line(),
                        reused: out.reused,
                    },
                    Err(e) => failed(e),
                }
            }
            Request::Sign {
                slot,
                manifest_digest,
            } => {
                self.tpm()?;
                let (tpm, keys) = (&mut self.tpm, &self.keys);
                let key = Agent::slot(keys, *slot, false)?;
                match tpm
                    .as_mut()
                    .map(|t| t.sign_manifest_digest(key, manifest_digest))
                {
                    Some(Ok(sig)) => Response::Signature(sig),
                    Some(Err(e)) => failed(e),
                    None => return Err(ServeError::Refused("the first request must be Connect")),
                }
            }
            Request::PcrRead { pcrs } => {
                if !wire::valid_pcrs(pcrs) {
                    return Err(ServeError::Refused("an invalid PCR selection"));
                }
                match self.tpm()?.pcr_read(pcrs) {
                    Ok(v) => Response::Pcrs(to_wire(&v)),
                    Err(e) => failed(e),
                }
            }
            Request::Quote {
                slot,
                qualifying,
                pcrs,
            } => {
                if !wire::valid_pcrs(pcrs) {
                    return Err(ServeError::Refused("an invalid PCR selection"));
                }
                self.tpm()?;
                let (tpm, keys) = (&mut self.tpm, &self.keys);
                let ak = Agent::slot(keys, *slot, true)?;
                match tpm.as_mut().map(|t| t.quote(ak, qualifying, pcrs)) {
                    Some(Ok(q)) => Response::Quote {
                        pcrs: to_wire(&q.pcrs),
                        attest: q.attest,
                        signature: q.signature,
                    },
                    Some(Err(e)) => failed(e),
                    None => return Err(ServeError::Refused("the first request must be Connect")),
                }
            }
            Request::PcrExtend { index, digest } => {
                if *index >= wire::PCR_COUNT {
                    return Err(ServeError::Refused("a PCR index out of range"));
                }
                match self.tpm()?.pcr_extend(*index, digest) {
                    Ok(()) => Response::Extended,
                    Err(e) => failed(e),
                }
            }
        })
    }

    fn slot(
        keys: &[(LoadedKey, bool)],
        slot: u32,
        restricted: bool,
    ) -> Result<&LoadedKey, ServeError> {
        match usize::try_from(slot).ok().and_then(|i| keys.get(i)) {
            Some((k, r)) if *r == restricted => Ok(k),
            Some(_) => Err(ServeError::Refused(
                "a key of the wrong kind for the request",
            )),
            None => Err(ServeError::Refused("no key is loaded in that slot")),
        }
    }
}

fn to_wire(v: &[ckpt_keys::quote::PcrValue]) -> Vec<wire::Pcr> {
    v.iter()
        .map(|p| wire::Pcr {
            index: p.index,
            value: p.value,
        })
        .collect()
}

/// Serves requests from `input`, answering on `output`, until `input`
/// ends (`Ok`) or a request is refused or the connection fails (`Err`).
pub fn serve(input: &mut impl Read, output: &mut impl Write) -> Result<(), ServeError> {
    let mut agent = Agent {
        tpm: None,
        keys: Vec::new(),
    };
    loop {
        let req: Request = match wire::read_frame(input, wire::MAX_REQUEST) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => return Err(ServeError::Link(e)),
        };
        match agent.handle(&req) {
            Ok(resp) => wire::write_frame(output, &resp).map_err(ServeError::Link)?,
            Err(refused) => {
                let _ = wire::write_frame(output, &Response::Failed(chain(&refused)));
                return Err(refused);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Serves `reqs` (no TPM is reached: each is refused before that) and
    /// returns the outcome and the answers.
    fn run(reqs: &[Request]) -> (Result<(), ServeError>, Vec<Response>) {
        let mut input = Vec::new();
        for r in reqs {
            wire::write_frame(&mut input, r).unwrap();
        }
        let mut output = Vec::new();
        let out = serve(&mut &input[..], &mut output);
        let mut answers = Vec::new();
        let mut rd = &output[..];
        while let Some(a) = wire::read_frame(&mut rd, wire::MAX_RESPONSE).unwrap() {
            answers.push(a);
        }
        (out, answers)
    }

    #[test]
    fn requests_breaking_the_rules_end_the_agent_before_the_tpm() {
        for (req, why) in [
            (Request::PcrRead { pcrs: vec![0, 99] }, "PCR selection"),
            (Request::PcrRead { pcrs: vec![] }, "PCR selection"),
            (
                Request::PcrExtend {
                    index: 24,
                    digest: [0; 32],
                },
                "PCR index",
            ),
            (
                Request::Sign {
                    slot: 0,
                    manifest_digest: [0; 32],
                },
                "Connect",
            ),
            (
                Request::Connect {
                    tcti: "device:/dev/tpmrm0\n".to_owned(),
                },
                "TCTI",
            ),
            (
                Request::Connect {
                    tcti: "x".repeat(wire::MAX_TCTI + 1),
                },
                "TCTI",
            ),
        ] {
            let (out, answers) = run(&[req, Request::PcrRead { pcrs: vec![0] }]);
            let e = out.expect_err("refused");
            assert!(e.to_string().contains(why), "{e}");
            // One answer saying why, then nothing more is served.
            assert_eq!(answers.len(), 1);
            assert!(matches!(&answers[0], Response::Failed(c) if c[0].contains(why)));
        }
    }

    #[test]
    fn an_oversized_request_is_refused_unread_and_eof_ends_cleanly() {
        let mut input = (wire::MAX_REQUEST + 1).to_be_bytes().to_vec();
        input.extend(std::iter::repeat_n(0u8, 16));
        let out = serve(&mut &input[..], &mut Vec::new());
        assert!(matches!(
            out,
            Err(ServeError::Link(FrameError::TooLarge { .. }))
        ));
        assert!(serve(&mut &[][..], &mut Vec::new()).is_ok());
    }
}
