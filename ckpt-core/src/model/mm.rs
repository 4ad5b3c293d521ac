//! Memory: every mapping ([`Vma`], [`VmaKind`]) and the mm layout
//! (`PR_SET_MM_MAP`). Memory contents are not here: they are the image's
//! chunks, each naming the address it belongs at.
//!
//! Trusts nothing: plain data, checked by [`crate::image::validate`].

use std::fmt;

use serde::ser::SerializeSeq as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Memory-descriptor layout (see `prctl(PR_SET_MM_MAP)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmLayout {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// Raw auxiliary vector, as `u64` words (pairs of type, value).
    #[serde(deserialize_with = "super::shrunk")]
    pub auxv: Vec<u64>,
}

/// What backs a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmaKind {
    /// Private anonymous memory (including `[heap]` and `[stack]`).
    Anonymous,
    /// Shared anonymous memory (shmem): contents are dumped.
    SharedAnonymous,
    /// A file, private (copy-on-write) or shared; `Vma::file` names it.
    File,
    /// `[vdso]`
    Vdso,
    /// `[vvar]`
    Vvar,
    /// `[vvar_vclock]`
    VvarVclock,
    /// `[vsyscall]` (fixed by the kernel; not restored).
    Vsyscall,
}

/// One mapping from `/proc/PID/maps` and `smaps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// `PROT_*` bits.
    pub prot: u32,
    /// True for `MAP_SHARED`.
    pub shared: bool,
    /// File offset in bytes (file mappings).
    pub offset: u64,
    pub kind: VmaKind,
    /// Index into `ProcessState::mapped_files` for `VmaKind::File`.
    pub file: Option<u32>,
    /// Name in maps for anonymous special areas (`[heap]`, `[stack]`, `[anon:...]`).
    pub name: String,
    /// Two-letter `VmFlags` from smaps (`gd`, `dc`, `dd`, `wf`, `lo`, ...).
    pub vm_flags: VmFlags,
    /// For a `VmaKind::File` mapping of a file whose content is in the
    /// image (a memfd, an unlinked file): the image space of that content
    /// (then `file` is `None`). A shared mapping maps the restored file
    /// itself; a private one gets its private pages from the chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<u32>,
}

/// The longest `VmFlags` mnemonic accepted (the kernel's are two letters).
pub const MAX_VM_FLAG_LEN: usize = 8;

/// The mnemonics smaps prints, in the order it prints them (the order of
/// the kernel's `vm_flags` bits, `show_smap_vma_flags`). Flags listed in
/// this order are held as a bit set; anything else (a newer kernel's flag,
/// another order, a flag twice) as text.
const KNOWN_VM_FLAGS: [&str; 37] = [
    "rd", "wr", "ex", "sh", "mr", "mw", "me", "ms", "gd", "pf", "dw", "lo", "io", "sr", "rr", "dc",
    "de", "lf", "ac", "nr", "ht", "sf", "ar", "wf", "dd", "bt", "sd", "mm", "hg", "nh", "mg", "um",
    "uw", "mt", "ui", "ss", "sl",
];

/// A mapping's `VmFlags` mnemonics, in the order smaps lists them (`rd wr
/// mr mw me gd ac`).
///
/// A tree of processes has thousands of mappings, each with five to eight
/// flags. Flags that follow the kernel's own order ([`KNOWN_VM_FLAGS`],
/// every mapping smaps shows on current kernels) are held as a bit set, in
/// the mapping itself; any others as one string, each mnemonic followed by
/// a space. Encoded as a CBOR array of text strings, as it always was, in
/// the order they came. An entry that is not 1 to [`MAX_VM_FLAG_LEN`]
/// ASCII letters and digits is not stored: it is counted, and
/// [`crate::image::validate`] refuses the mapping.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct VmFlags {
    /// Bit `i` for `KNOWN_VM_FLAGS[i]`, when `text` is `None`.
    known: u64,
    /// The valid mnemonics, each followed by one space, when they are not
    /// known ones in the known order.
    text: Option<Box<str>>,
    /// Entries, valid or not.
    entries: u32,
    /// Whether an entry was not a mnemonic.
    malformed: bool,
}

/// Flags being read one entry at a time.
#[derive(Default)]
struct Building {
    flags: VmFlags,
    /// The text once the flags are not a bit set.
    text: Option<String>,
    /// The index in `KNOWN_VM_FLAGS` of the last flag set.
    last: Option<usize>,
}

impl Building {
    fn push(&mut self, flag: &str) {
        self.flags.entries = self.flags.entries.saturating_add(1);
        let mnemonic = !flag.is_empty()
            && flag.len() <= MAX_VM_FLAG_LEN
            && flag.bytes().all(|b| b.is_ascii_alphanumeric());
        if !mnemonic {
            self.flags.malformed = true;
            return;
        }
        if self.text.is_none() {
            let at = KNOWN_VM_FLAGS.iter().position(|k| *k == flag);
            match at {
                Some(i) if self.last.is_none_or(|l| i > l) => {
                    self.flags.known |= 1 << i;
                    self.last = Some(i);
                    return;
                }
                _ => {
                    let mut text = String::new();
                    for f in self.flags.iter() {
                        text.push_str(f);
                        text.push(' ');
                    }
                    self.flags.known = 0;
                    self.text = Some(text);
                }
            }
        }
        if let Some(text) = self.text.as_mut() {
            text.push_str(flag);
            text.push(' ');
        }
    }

    fn finish(mut self) -> VmFlags {
        self.flags.text = self.text.map(String::into_boxed_str);
        self.flags
    }
}

impl VmFlags {
    /// The flags `flags`, in order.
    pub fn new<'a>(flags: impl IntoIterator<Item = &'a str>) -> VmFlags {
        let mut b = Building::default();
        for flag in flags {
            b.push(flag);
        }
        b.finish()
    }

    /// The mnemonics, in order (entries that were not are left out).
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let text = self.text.as_deref().map(|t| t.split_terminator(' '));
        let known = self.text.is_none().then(|| {
            KNOWN_VM_FLAGS
                .iter()
                .enumerate()
                .filter(|(i, _)| self.known & (1 << i) != 0)
                .map(|(_, f)| *f)
        });
        text.into_iter()
            .flatten()
            .chain(known.into_iter().flatten())
    }

    /// Whether `flag` is one of them.
    pub fn contains(&self, flag: &str) -> bool {
        self.iter().any(|f| f == flag)
    }

    /// How many entries the flags had, mnemonics or not.
    pub fn len(&self) -> usize {
        self.entries as usize
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Whether every entry was a mnemonic.
    pub fn all_mnemonics(&self) -> bool {
        !self.malformed
    }
}

impl fmt::Debug for VmFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()?;
        if self.malformed {
            write!(f, " (and entries that are not mnemonics)")?;
        }
        Ok(())
    }
}

impl Serialize for VmFlags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.iter().count()))?;
        for flag in self.iter() {
            seq.serialize_element(flag)?;
        }
        seq.end()
    }
}

impl super::ListBuilder<String> for Building {
    type Built = VmFlags;
    fn push_entry(&mut self, flag: String) {
        self.push(&flag);
    }
    fn build(self) -> VmFlags {
        self.finish()
    }
}

impl<'de> Deserialize<'de> for VmFlags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::deserialize_list::<D, String, Building>(d, "a list of VmFlags mnemonics")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::super::cbor;
    use super::*;

    #[test]
    fn vm_flags_encode_as_the_list_of_strings_they_were() {
        let list = ["rd", "wr", "mr", "mw", "me", "gd", "ac"];
        let flags = VmFlags::new(list);
        assert_eq!(cbor(&flags), cbor(&list.to_vec()));
        let back: VmFlags = ciborium::de::from_reader(&cbor(&list.to_vec())[..]).expect("decode");
        assert_eq!(back, flags);
        assert_eq!(back.iter().collect::<Vec<_>>(), list);
        assert_eq!(back.len(), 7);
        assert!(back.contains("gd") && !back.contains("lo") && !back.contains("g"));
        assert!(back.all_mnemonics());
        let none: VmFlags =
            ciborium::de::from_reader(&cbor(&Vec::<String>::new())[..]).expect("decode");
        assert!(none.is_empty() && none.all_mnemonics());
    }

    #[test]
    fn flags_in_the_kernels_order_are_a_bit_set_and_any_others_text() {
        let usual = VmFlags::new(["rd", "wr", "mr", "mw", "me", "ac", "nh"]);
        assert!(usual.text.is_none());
        // Another order, a flag twice, a flag this table does not know:
        // kept as they came, and encoded as they came.
        for odd in [
            vec!["wr", "rd"],
            vec!["rd", "rd"],
            vec!["rd", "zz", "wr"],
            vec!["rd", "pk0"],
        ] {
            let f = VmFlags::new(odd.iter().copied());
            assert!(f.text.is_some(), "{odd:?}");
            assert_eq!(f.iter().collect::<Vec<_>>(), odd);
            assert_eq!(f.len(), odd.len());
            assert_eq!(cbor(&f), cbor(&odd));
            let back: VmFlags = ciborium::de::from_reader(&cbor(&odd)[..]).expect("decode");
            assert_eq!(back, f);
        }
        // Every known flag, in order, is a bit set.
        let all = VmFlags::new(KNOWN_VM_FLAGS);
        assert!(all.text.is_none());
        assert_eq!(all.iter().collect::<Vec<_>>(), KNOWN_VM_FLAGS);
        assert!(std::mem::size_of::<VmFlags>() <= 32);
    }

    #[test]
    fn entries_that_are_not_mnemonics_are_counted_not_kept() {
        for bad in ["", "r d", "abcdefghi", "r\0", "é"] {
            let list = vec!["rd".to_string(), bad.to_string(), "wr".to_string()];
            let f: VmFlags = ciborium::de::from_reader(&cbor(&list)[..]).expect("decode");
            assert_eq!(f.len(), 3, "{bad:?}");
            assert!(!f.all_mnemonics(), "{bad:?}");
            assert_eq!(f.iter().collect::<Vec<_>>(), ["rd", "wr"], "{bad:?}");
            assert!(!f.contains(bad), "{bad:?}");
        }
        // Not a list of strings at all.
        assert!(ciborium::de::from_reader::<VmFlags, _>(&cbor(&vec![1u8])[..]).is_err());
        assert!(ciborium::de::from_reader::<VmFlags, _>(&cbor(&"rd")[..]).is_err());
    }
}
