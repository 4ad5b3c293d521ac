//! A thread's xsave area (the `NT_X86_XSTATE` regset), held without its
//! all-zero lines.
//!
//! An area is 2-3 KiB on current CPUs (more with AVX-512 or AMX), and most
//! of it is zero: the state of the features a thread never used, which the
//! kernel reports in their initial, zero, form. A tree's helpers hold the
//! area of every thread of every process for as long as they hold the
//! manifest, so it is kept here as its 64-byte lines that are not all
//! zeros, with their positions. The image encodes it as before, every
//! byte (a CBOR array of integers), so this changes no image.
//!
//! Owns: the area's bytes. Trusts nothing: its length is checked by
//! [`crate::image::validate`] like any other field.

use std::fmt;

use serde::ser::SerializeSeq as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes of a line.
const LINE: usize = 64;

/// An xsave area; see the [module doc](self).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct XsaveArea {
    /// Its length in bytes.
    len: usize,
    /// The index (offset / [`LINE`]) of each line that is not all zeros,
    /// ascending.
    lines: Vec<u32>,
    /// Those lines, [`LINE`] bytes each (the area's last line, when it is
    /// shorter, padded with zeros).
    data: Vec<u8>,
}

impl XsaveArea {
    /// The area `bytes`.
    pub fn new(bytes: &[u8]) -> XsaveArea {
        let mut area = Building::default();
        for &b in bytes {
            area.push(b);
        }
        area.finish()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its bytes, every one.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.len];
        for (&line, bytes) in self.lines.iter().zip(self.data.chunks_exact(LINE)) {
            let at = line as usize * LINE;
            if let Some(dst) = out.get_mut(at..) {
                let n = dst.len().min(LINE);
                dst[..n].copy_from_slice(&bytes[..n]);
            }
        }
        out
    }
}

/// An area being read a byte at a time.
struct Building {
    area: XsaveArea,
    line: [u8; LINE],
    /// Bytes in `line`.
    filled: usize,
}

impl Default for Building {
    fn default() -> Building {
        Building {
            area: XsaveArea::default(),
            line: [0; LINE],
            filled: 0,
        }
    }
}

impl Building {
    fn push(&mut self, b: u8) {
        self.line[self.filled] = b;
        self.filled += 1;
        self.area.len += 1;
        if self.filled == LINE {
            self.end_line();
        }
    }

    fn end_line(&mut self) {
        if self.line.iter().any(|&b| b != 0) {
            // Lines are counted from 0; an area of more than u32::MAX
            // lines cannot be decoded (the decoder's budget stops it long
            // before) and is never captured.
            let index = (self.area.len - 1) / LINE;
            self.area
                .lines
                .push(u32::try_from(index).unwrap_or(u32::MAX));
            self.area.data.extend_from_slice(&self.line);
        }
        self.line = [0; LINE];
        self.filled = 0;
    }

    fn finish(mut self) -> XsaveArea {
        if self.filled > 0 {
            self.end_line();
        }
        self.area.lines.shrink_to_fit();
        self.area.data.shrink_to_fit();
        self.area
    }
}

impl fmt::Debug for XsaveArea {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "XsaveArea({} bytes, {} non-zero lines)",
            self.len,
            self.lines.len()
        )
    }
}

impl Serialize for XsaveArea {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len))?;
        for b in self.to_vec() {
            seq.serialize_element(&b)?;
        }
        seq.end()
    }
}

impl super::ListBuilder<u8> for Building {
    type Built = XsaveArea;
    fn push_entry(&mut self, b: u8) {
        self.push(b);
    }
    fn build(self) -> XsaveArea {
        self.finish()
    }
}

impl<'de> Deserialize<'de> for XsaveArea {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::deserialize_list::<D, u8, Building>(d, "an xsave area (a list of bytes)")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::super::cbor;
    use super::*;

    /// An area like a real one: mostly zeros, a few lines of state, a
    /// last line shorter than the others (2440 bytes, PKRU at the end).
    fn sample() -> Vec<u8> {
        let mut bytes = vec![0u8; 2440];
        for (i, b) in bytes.iter_mut().enumerate().take(200) {
            *b = (i * 7 + 1) as u8;
        }
        bytes[512] = 2;
        bytes[2432] = 0x54;
        bytes[2435] = 0x55;
        bytes
    }

    #[test]
    fn keeps_every_byte_and_only_the_lines_that_are_not_zero() {
        let bytes = sample();
        let area = XsaveArea::new(&bytes);
        assert_eq!(area.len(), 2440);
        assert_eq!(area.to_vec(), bytes);
        // Lines 0-3 (the first 200 bytes), 8 (offset 512), 38 (the short
        // last line).
        assert_eq!(area.lines, vec![0, 1, 2, 3, 8, 38]);
        assert_eq!(area.data.len(), 6 * LINE);
        assert_eq!(XsaveArea::new(&[]).to_vec(), Vec::<u8>::new());
        assert_eq!(XsaveArea::new(&[0; 100]).lines, Vec::<u32>::new());
    }

    #[test]
    fn encodes_as_the_list_of_bytes_it_was() {
        let bytes = sample();
        let area = XsaveArea::new(&bytes);
        assert_eq!(cbor(&area), cbor(&bytes));
        let back: XsaveArea = ciborium::de::from_reader(&cbor(&bytes)[..]).expect("decode");
        assert_eq!(back, area);
        assert_eq!(back.to_vec(), bytes);
    }

    #[test]
    fn refuses_what_is_not_a_list_of_bytes() {
        for bad in [cbor(&vec![1u32, 300]), cbor(&"text"), cbor(&vec![-1i32])] {
            assert!(ciborium::de::from_reader::<XsaveArea, _>(&bad[..]).is_err());
        }
    }
}
