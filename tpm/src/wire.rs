//! The messages between `ckpt-sign` ([`crate::remote`]) and the TPM agent
//! (`ckpt-tpm-agent`, [`crate::serve`]): one request, one response, each a
//! frame of a 4-byte big-endian length and that many bytes of CBOR.
//!
//! Both sides cap what they read ([`MAX_REQUEST`], [`MAX_RESPONSE`]) before
//! allocating, and decode into fixed types: nothing else is accepted. The
//! frames that carry authorization values (`Load`, `Provision` and its
//! answer) are read and written through zeroized buffers, and the decoded
//! values are zeroized on drop ([`Auth`], [`crate::store::KeyRef`]).

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::store::AUTH_LEN;

/// Largest request the agent reads (the largest real one, `Provision` with
/// an existing record, is about 400 bytes).
pub const MAX_REQUEST: u32 = 4096;
/// Largest response `ckpt-sign` reads (a quote of 24 PCRs is under 2 KiB).
pub const MAX_RESPONSE: u32 = 16 * 1024;
/// Most keys one agent keeps loaded (a dump loads two).
pub const MAX_LOADED: usize = 4;
/// Longest TCTI string (the configuration's own limit).
pub const MAX_TCTI: usize = 256;
/// PCR indices are below this (the sha256 bank of a PC TPM).
pub const PCR_COUNT: u8 = 24;
/// Longest error text, per link of a chain, and most links.
pub const MAX_ERROR_TEXT: usize = 1024;
/// Most links of an error chain.
pub const MAX_ERROR_LINKS: usize = 8;

/// An authorization value on the wire: zeroized on drop, never printed.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct Auth(pub [u8; AUTH_LEN]);

impl Drop for Auth {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.0.zeroize();
    }
}

/// A key to load: its persistent handle, authorization value and the id of
/// the public key expected there.
#[derive(Serialize, Deserialize)]
pub struct KeyToLoad {
    pub handle: u32,
    pub auth: Auth,
    pub key_id: String,
}

/// What `ckpt-sign` asks the agent.
#[derive(Serialize, Deserialize)]
pub enum Request {
    /// Connect through this TCTI (from the root-owned `ckpt.toml`). Must be
    /// the first request, and comes once per connection.
    Connect { tcti: String },
    /// Close the TPM connection and forget the loaded keys; the agent
    /// stays, and the next request must be `Connect` (a dump probes the TPM
    /// before it touches the target, then connects again to sign).
    Disconnect,
    /// Load a key; the answer names a slot for `Sign` and `Quote`.
    Load { key: KeyToLoad, restricted: bool },
    /// Create or reuse the two keys (`keygen --tpm`); `existing` is the
    /// text of `tpm.key`.
    Provision {
        signing_handle: u32,
        ak_handle: u32,
        existing: Option<Vec<u8>>,
        force: bool,
    },
    /// Sign for the unrestricted key in `slot`.
    Sign {
        slot: u32,
        manifest_digest: [u8; 32],
    },
    /// Read sha256 PCRs (ascending indices).
    PcrRead { pcrs: Vec<u8> },
    /// Quote with the restricted key in `slot`.
    Quote {
        slot: u32,
        qualifying: [u8; 32],
        pcrs: Vec<u8>,
    },
    /// Extend a sha256 PCR.
    PcrExtend { index: u8, digest: [u8; 32] },
}

impl Request {
    /// The step's name, for errors ("the TPM agent ended during Quote").
    pub fn step(&self) -> &'static str {
        match self {
            Request::Connect { .. } => "Connect",
            Request::Disconnect => "Disconnect",
            Request::Load { .. } => "Load",
            Request::Provision { .. } => "Provision",
            Request::Sign { .. } => "Sign",
            Request::PcrRead { .. } => "PCR_Read",
            Request::Quote { .. } => "Quote",
            Request::PcrExtend { .. } => "PCR_Extend",
        }
    }
}

/// A sha256 PCR value.
#[derive(Serialize, Deserialize)]
pub struct Pcr {
    pub index: u8,
    pub value: [u8; 32],
}

/// What the agent answers.
#[derive(Serialize, Deserialize)]
pub enum Response {
    Connected,
    Disconnected,
    Loaded {
        slot: u32,
        /// The key's line (`ckpt-ecdsa-p256 <point> <key id>`).
        public: String,
    },
    Provisioned {
        /// The text of the new `tpm.key`.
        record: Vec<u8>,
        signing: String,
        attestation: String,
        reused: bool,
    },
    Signature(Vec<u8>),
    Pcrs(Vec<Pcr>),
    Quote {
        attest: Vec<u8>,
        signature: Vec<u8>,
        pcrs: Vec<Pcr>,
    },
    Extended,
    /// The request failed: the error's text, then each of its sources.
    Failed(Vec<String>),
}

impl Drop for Response {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        if let Response::Provisioned { record, .. } = self {
            record.zeroize();
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        if let Request::Provision {
            existing: Some(r), ..
        } = self
        {
            r.zeroize();
        }
    }
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The other side closed the connection before a whole frame.
    #[error("connection closed")]
    Closed,
    /// Reading or writing failed.
    #[error("I/O error")]
    Io(#[source] io::Error),
    /// A frame longer than the cap.
    #[error("a message of {len} bytes (at most {max})")]
    TooLarge { len: u32, max: u32 },
    /// Not CBOR of the expected type.
    #[error("a malformed message")]
    Malformed,
    /// Encoding failed.
    #[error("cannot encode a message")]
    Encode,
}

/// Writes `msg` as one frame.
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), FrameError> {
    let mut buf = Zeroizing::new(vec![0u8; 4]);
    ciborium::into_writer(msg, &mut *buf).map_err(|_| FrameError::Encode)?;
    let len = u32::try_from(buf.len() - 4).map_err(|_| FrameError::Encode)?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    w.write_all(&buf).map_err(FrameError::Io)?;
    w.flush().map_err(FrameError::Io)
}

/// Reads one frame of at most `max` bytes and decodes it. `Ok(None)` when
/// the other side closed the connection at a frame boundary.
pub fn read_frame<T: for<'de> Deserialize<'de>>(
    r: &mut impl Read,
    max: u32,
) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Closed),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(len);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let size = usize::try_from(len).map_err(|_| FrameError::TooLarge { len, max })?;
    let mut buf = Zeroizing::new(vec![0u8; size]);
    r.read_exact(&mut buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Closed,
        _ => FrameError::Io(e),
    })?;
    ciborium::from_reader(&buf[..])
        .map(Some)
        .map_err(|_| FrameError::Malformed)
}

/// Whether `pcrs` is a valid selection: 1 to 24 indices below
/// [`PCR_COUNT`], strictly ascending.
pub fn valid_pcrs(pcrs: &[u8]) -> bool {
    !pcrs.is_empty()
        && pcrs.len() <= usize::from(PCR_COUNT)
        && pcrs.iter().all(|&i| i < PCR_COUNT)
        && pcrs.windows(2).all(|w| w[0] < w[1])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn frames_round_trip_and_caps_hold() {
        let mut buf = Vec::new();
        write_frame(
            &mut buf,
            &Request::PcrRead {
                pcrs: vec![0, 1, 7],
            },
        )
        .unwrap();
        let got: Request = read_frame(&mut &buf[..], MAX_REQUEST).unwrap().unwrap();
        assert!(matches!(got, Request::PcrRead { ref pcrs } if pcrs == &[0, 1, 7]));
        // A truncated frame is an error; an empty stream is a clean end.
        assert!(matches!(
            read_frame::<Request>(&mut &buf[..buf.len() - 1], MAX_REQUEST),
            Err(FrameError::Closed)
        ));
        assert!(read_frame::<Request>(&mut &[][..], MAX_REQUEST)
            .unwrap()
            .is_none());
        // A length over the cap is refused before anything is allocated.
        let huge = [0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame::<Request>(&mut &huge[..], MAX_REQUEST),
            Err(FrameError::TooLarge { .. })
        ));
        // Well-framed garbage is malformed.
        let junk = [0, 0, 0, 2, 0xff, 0x00];
        assert!(matches!(
            read_frame::<Request>(&mut &junk[..], MAX_REQUEST),
            Err(FrameError::Malformed)
        ));
    }

    #[test]
    fn pcr_selections_are_checked() {
        assert!(valid_pcrs(&[0, 1, 2, 23]));
        assert!(!valid_pcrs(&[]));
        assert!(!valid_pcrs(&[24]));
        assert!(!valid_pcrs(&[3, 1]));
        assert!(!valid_pcrs(&[1, 1]));
    }
}
