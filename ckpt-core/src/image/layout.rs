//! Header and trailer encoding, and the consistency rules of the layout.

use super::error::ImageError;
use crate::limits::{MAX_MANIFEST_LEN, MAX_SIGBLOCK_LEN};

/// Header magic.
pub const MAGIC: [u8; 8] = *b"CKPTIMG\0";
/// Trailer magic.
pub const END_MAGIC: [u8; 8] = *b"CKPTEND\0";
/// The format version this build writes (and reads).
pub const FORMAT_VERSION: u32 = 2;
/// The older format version this build still reads (see [`super::v1`]).
pub const FORMAT_VERSION_1: u32 = 1;
/// Length of the header.
pub const HEADER_LEN: u64 = 32;
/// Length of the trailer.
pub const TRAILER_LEN: u64 = 48;

/// The header of an image of [`FORMAT_VERSION`].
pub(crate) fn encode_header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

/// Checks a header: magic, a version this build reads (1 or 2), zero
/// reserved bytes. Returns the version. The header and trailer are the
/// same in both versions.
pub(crate) fn check_header(h: &[u8; HEADER_LEN as usize]) -> Result<u32, ImageError> {
    if h[..8] != MAGIC {
        return Err(ImageError::BadMagic { region: "header" });
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version != FORMAT_VERSION && version != FORMAT_VERSION_1 {
        return Err(ImageError::UnsupportedVersion(version));
    }
    if h[12..].iter().any(|&b| b != 0) {
        return Err(ImageError::Malformed("header reserved bytes are not zero"));
    }
    Ok(version)
}

/// The trailer's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trailer {
    pub manifest_offset: u64,
    pub manifest_len: u64,
    pub sig_offset: u64,
    pub sig_len: u64,
    pub data_len: u64,
}

impl Trailer {
    pub(crate) fn encode(&self) -> [u8; TRAILER_LEN as usize] {
        let mut t = [0u8; TRAILER_LEN as usize];
        let fields = [
            self.manifest_offset,
            self.manifest_len,
            self.sig_offset,
            self.sig_len,
            self.data_len,
        ];
        for (slot, v) in t.chunks_exact_mut(8).zip(fields) {
            slot.copy_from_slice(&v.to_le_bytes());
        }
        t[40..].copy_from_slice(&END_MAGIC);
        t
    }

    pub(crate) fn decode(t: &[u8; TRAILER_LEN as usize]) -> Result<Trailer, ImageError> {
        if t[40..] != END_MAGIC {
            return Err(ImageError::BadMagic { region: "trailer" });
        }
        let field = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&t[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        Ok(Trailer {
            manifest_offset: field(0),
            manifest_len: field(1),
            sig_offset: field(2),
            sig_len: field(3),
            data_len: field(4),
        })
    }

    /// Checks the trailer against the caps and the file's length (see the
    /// module doc for the rules).
    pub(crate) fn check(&self, file_len: u64) -> Result<(), ImageError> {
        if self.manifest_len > MAX_MANIFEST_LEN {
            return Err(ImageError::TooLarge {
                what: "manifest",
                len: self.manifest_len,
                cap: MAX_MANIFEST_LEN,
            });
        }
        if self.manifest_len == 0 {
            return Err(ImageError::Malformed("manifest_len is zero"));
        }
        if self.sig_len > MAX_SIGBLOCK_LEN {
            return Err(ImageError::TooLarge {
                what: "signature block",
                len: self.sig_len,
                cap: MAX_SIGBLOCK_LEN,
            });
        }
        let overflow = ImageError::Malformed("trailer offsets overflow");
        let data_end = HEADER_LEN.checked_add(self.data_len).ok_or(overflow)?;
        if self.manifest_offset != data_end {
            return Err(ImageError::Malformed(
                "manifest_offset is not the end of the chunk data",
            ));
        }
        let manifest_end = self
            .manifest_offset
            .checked_add(self.manifest_len)
            .ok_or(ImageError::Malformed("trailer offsets overflow"))?;
        let end = if self.sig_len == 0 {
            if self.sig_offset != 0 {
                return Err(ImageError::Malformed(
                    "sig_offset is set but sig_len is zero",
                ));
            }
            manifest_end
        } else {
            if self.sig_offset != manifest_end {
                return Err(ImageError::Malformed(
                    "sig_offset is not the end of the manifest",
                ));
            }
            self.sig_offset
                .checked_add(self.sig_len)
                .ok_or(ImageError::Malformed("trailer offsets overflow"))?
        };
        let expected_len = end
            .checked_add(TRAILER_LEN)
            .ok_or(ImageError::Malformed("trailer offsets overflow"))?;
        if expected_len > file_len {
            return Err(ImageError::Truncated { offset: file_len });
        }
        if expected_len < file_len {
            return Err(ImageError::Malformed(
                "file has bytes the trailer does not account for",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(data: u64, man: u64, sig: u64) -> Trailer {
        Trailer {
            manifest_offset: HEADER_LEN + data,
            manifest_len: man,
            sig_offset: if sig == 0 { 0 } else { HEADER_LEN + data + man },
            sig_len: sig,
            data_len: data,
        }
    }

    #[test]
    fn header_roundtrip_and_checks() {
        let h = encode_header();
        assert_eq!(check_header(&h).expect("valid"), 2);
        let mut v1 = h;
        v1[8] = 1;
        assert_eq!(check_header(&v1).expect("v1 is read"), 1);
        let mut bad = h;
        bad[0] ^= 1;
        assert!(matches!(
            check_header(&bad),
            Err(ImageError::BadMagic { .. })
        ));
        for v in [0u8, 3] {
            let mut other = h;
            other[8] = v;
            assert!(matches!(
                check_header(&other),
                Err(ImageError::UnsupportedVersion(n)) if n == u32::from(v)
            ));
        }
        let mut reserved = h;
        reserved[31] = 1;
        assert!(matches!(
            check_header(&reserved),
            Err(ImageError::Malformed(_))
        ));
    }

    #[test]
    fn trailer_roundtrip() {
        let tr = t(4096, 100, 200);
        assert_eq!(Trailer::decode(&tr.encode()).expect("decode"), tr);
        tr.check(32 + 4096 + 100 + 200 + 48).expect("consistent");
        t(0, 1, 0).check(32 + 1 + 48).expect("consistent");
    }

    #[test]
    fn trailer_inconsistencies() {
        let len = 32 + 4096 + 100 + 200 + 48;
        let good = t(4096, 100, 200);
        let mut cases = Vec::new();
        for f in 0..5 {
            for delta in [1u64, u64::MAX, 1 << 63] {
                let mut x = good;
                let field = match f {
                    0 => &mut x.manifest_offset,
                    1 => &mut x.manifest_len,
                    2 => &mut x.sig_offset,
                    3 => &mut x.sig_len,
                    _ => &mut x.data_len,
                };
                *field = field.wrapping_add(delta);
                cases.push(x);
            }
        }
        for x in cases {
            assert!(x.check(len).is_err(), "{x:?}");
        }
        assert!(good.check(len - 1).is_err());
        assert!(good.check(len + 1).is_err());
        assert!(t(0, 0, 0).check(32 + 48).is_err());
        let mut unsigned_with_offset = t(10, 10, 0);
        unsigned_with_offset.sig_offset = 52;
        assert!(unsigned_with_offset.check(32 + 10 + 10 + 48).is_err());
        assert!(matches!(
            t(0, MAX_MANIFEST_LEN + 1, 0).check(u64::MAX),
            Err(ImageError::TooLarge { .. })
        ));
        assert!(matches!(
            t(0, 1, MAX_SIGBLOCK_LEN + 1).check(u64::MAX),
            Err(ImageError::TooLarge { .. })
        ));
        assert!(matches!(
            t(u64::MAX - 40, 1, 0).check(u64::MAX),
            Err(ImageError::Malformed(_))
        ));
    }
}
