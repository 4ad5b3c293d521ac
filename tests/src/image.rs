//! The image layout as far as the tests need it, to tamper with each region.
//!
//! A `.ckpt` file is: a 32-byte header (magic `CKPTIMG\0`), the chunk data,
//! the CBOR manifest, an optional CBOR signature block, and a 48-byte
//! trailer: `manifest_offset`, `manifest_len`, `sig_offset`, `sig_len`,
//! `data_len` (each u64 little-endian), then the magic `CKPTEND\0`.
//! The regions are located from the trailer, not assumed.

use std::ops::Range;

pub const HEADER_LEN: u64 = 32;
pub const TRAILER_LEN: u64 = 48;
pub const HEADER_MAGIC: &[u8; 8] = b"CKPTIMG\0";
pub const TRAILER_MAGIC: &[u8; 8] = b"CKPTEND\0";

/// The fields of the trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    pub manifest_offset: u64,
    pub manifest_len: u64,
    pub sig_offset: u64,
    pub sig_len: u64,
    pub data_len: u64,
}

impl Trailer {
    pub fn encode(&self) -> [u8; TRAILER_LEN as usize] {
        let mut out = [0u8; TRAILER_LEN as usize];
        for (i, v) in [
            self.manifest_offset,
            self.manifest_len,
            self.sig_offset,
            self.sig_len,
            self.data_len,
        ]
        .iter()
        .enumerate()
        {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        out[40..48].copy_from_slice(TRAILER_MAGIC);
        out
    }
}

/// Where each region of an image is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub len: u64,
    pub trailer: Trailer,
    pub header: Range<u64>,
    pub data: Range<u64>,
    pub manifest: Range<u64>,
    /// Empty for an unsigned image.
    pub sig: Range<u64>,
    pub tail: Range<u64>,
}

impl Layout {
    /// Reads the layout from an image's bytes; `Err` says what contradicts
    /// the documented format.
    pub fn parse(bytes: &[u8]) -> Result<Layout, String> {
        let len = bytes.len() as u64;
        if len < HEADER_LEN + TRAILER_LEN {
            return Err(format!("image is only {len} bytes"));
        }
        if &bytes[..8] != HEADER_MAGIC {
            return Err(format!("header magic is {:?}", &bytes[..8]));
        }
        let t = &bytes[(len - TRAILER_LEN) as usize..];
        if &t[40..48] != TRAILER_MAGIC {
            return Err(format!("trailer magic is {:?}", &t[40..48]));
        }
        let field = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&t[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        let trailer = Trailer {
            manifest_offset: field(0),
            manifest_len: field(1),
            sig_offset: field(2),
            sig_len: field(3),
            data_len: field(4),
        };
        let tail = len - TRAILER_LEN..len;
        let data = HEADER_LEN
            ..HEADER_LEN
                .checked_add(trailer.data_len)
                .ok_or("data_len overflows")?;
        let manifest = trailer.manifest_offset
            ..trailer
                .manifest_offset
                .checked_add(trailer.manifest_len)
                .ok_or("manifest range overflows")?;
        let sig = if trailer.sig_len == 0 {
            manifest.end..manifest.end
        } else {
            trailer.sig_offset
                ..trailer
                    .sig_offset
                    .checked_add(trailer.sig_len)
                    .ok_or("signature range overflows")?
        };
        if data.end > manifest.start
            || manifest.end > sig.start
            || sig.end > tail.start
            || manifest.is_empty()
        {
            return Err(format!(
                "regions out of order or overlapping: data {data:?}, manifest {manifest:?}, \
                 signature {sig:?}, trailer {tail:?}"
            ));
        }
        Ok(Layout {
            len,
            trailer,
            header: 0..HEADER_LEN,
            data,
            manifest,
            sig,
            tail,
        })
    }

    /// The regions by name, each non-empty.
    pub fn regions(&self) -> Vec<(&'static str, Range<u64>)> {
        [
            ("header", self.header.clone()),
            ("chunk data", self.data.clone()),
            ("manifest", self.manifest.clone()),
            ("signature block", self.sig.clone()),
            ("trailer", self.tail.clone()),
        ]
        .into_iter()
        .filter(|(_, r)| !r.is_empty())
        .collect()
    }
}

/// First, middle and last offset of a region.
pub fn probe_offsets(r: &Range<u64>) -> Vec<u64> {
    let mut v = vec![r.start, r.start + (r.end - r.start) / 2, r.end - 1];
    v.dedup();
    v
}

/// A copy of `bytes` with the byte at `offset` inverted.
pub fn flipped(bytes: &[u8], offset: u64) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v[offset as usize] ^= 0xff;
    v
}

/// A copy of `bytes` with its trailer replaced by `t`.
pub fn with_trailer(bytes: &[u8], t: &Trailer) -> Vec<u8> {
    let mut v = bytes[..bytes.len() - TRAILER_LEN as usize].to_vec();
    v.extend_from_slice(&t.encode());
    v
}

/// An unsigned image `bytes` with its manifest replaced by `manifest` (the
/// trailer's lengths follow; chunk data is kept).
pub fn with_manifest(bytes: &[u8], manifest: &[u8]) -> Result<Vec<u8>, String> {
    let l = Layout::parse(bytes)?;
    if !l.sig.is_empty() {
        return Err("with_manifest needs an unsigned image".into());
    }
    let mut v = bytes[..l.manifest.start as usize].to_vec();
    v.extend_from_slice(manifest);
    let t = Trailer {
        manifest_len: manifest.len() as u64,
        ..l.trailer
    };
    v.extend_from_slice(&t.encode());
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic(signed: bool) -> Vec<u8> {
        let mut v = HEADER_MAGIC.to_vec();
        v.resize(32, 0);
        v.extend_from_slice(&[1u8; 100]); // data
        let mo = v.len() as u64;
        v.extend_from_slice(&[2u8; 50]); // manifest
        let so = v.len() as u64;
        if signed {
            v.extend_from_slice(&[3u8; 80]);
        }
        let t = Trailer {
            manifest_offset: mo,
            manifest_len: 50,
            sig_offset: if signed { so } else { 0 },
            sig_len: if signed { 80 } else { 0 },
            data_len: 100,
        };
        v.extend_from_slice(&t.encode());
        v
    }

    #[test]
    fn parses_signed_and_unsigned() {
        let l = Layout::parse(&synthetic(true)).expect("signed parses");
        assert_eq!(l.data, 32..132);
        assert_eq!(l.manifest, 132..182);
        assert_eq!(l.sig, 182..262);
        assert_eq!(l.tail, 262..310);
        assert_eq!(l.regions().len(), 5);
        let u = Layout::parse(&synthetic(false)).expect("unsigned parses");
        assert!(u.sig.is_empty());
        assert_eq!(u.regions().len(), 4);
    }

    #[test]
    fn trailer_round_trip_and_flip() {
        let img = synthetic(true);
        let l = Layout::parse(&img).expect("parses");
        assert_eq!(with_trailer(&img, &l.trailer), img);
        assert!(Layout::parse(&flipped(&img, l.tail.end - 1)).is_err());
        assert_eq!(probe_offsets(&(10..11)), vec![10]);
        assert_eq!(probe_offsets(&(10..20)), vec![10, 15, 19]);
    }
}
