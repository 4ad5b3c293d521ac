//! Memory: every mapping ([`Vma`], [`VmaKind`]) and the mm layout
//! (`PR_SET_MM_MAP`). Memory contents are not here: they are the image's
//! chunks, each naming the address it belongs at.
//!
//! Trusts nothing: plain data, checked by [`crate::image::validate`].

use std::fmt;

use serde::de::{SeqAccess, Visitor};
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

/// A mapping's `VmFlags` mnemonics, in the order smaps lists them (`rd wr
/// mr mw me gd ac`).
///
/// Held as one string, each mnemonic followed by a space, rather than as a
/// `Vec` of two-byte `String`s: a tree of processes has thousands of
/// mappings, and the `Vec` cost ~370 bytes of heap each, the largest part
/// of a decoded manifest. Encoded as a CBOR array of text strings, as it
/// always was. An entry that is not 1 to [`MAX_VM_FLAG_LEN`] ASCII letters
/// and digits is not stored: it is counted, and
/// [`crate::image::validate`] refuses the mapping.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct VmFlags {
    /// The valid mnemonics, each followed by one space.
    text: String,
    /// Entries, valid or not.
    entries: usize,
    /// Whether an entry was not a mnemonic.
    malformed: bool,
}

impl VmFlags {
    /// The flags `flags`, in order.
    pub fn new<'a>(flags: impl IntoIterator<Item = &'a str>) -> VmFlags {
        let mut f = VmFlags::default();
        for flag in flags {
            f.push(flag);
        }
        f.text.shrink_to_fit();
        f
    }

    fn push(&mut self, flag: &str) {
        self.entries += 1;
        let mnemonic = !flag.is_empty()
            && flag.len() <= MAX_VM_FLAG_LEN
            && flag.bytes().all(|b| b.is_ascii_alphanumeric());
        if mnemonic {
            self.text.push_str(flag);
            self.text.push(' ');
        } else {
            self.malformed = true;
        }
    }

    /// The mnemonics, in order (entries that were not are left out).
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.text.split_terminator(' ')
    }

    /// Whether `flag` is one of them.
    pub fn contains(&self, flag: &str) -> bool {
        self.iter().any(|f| f == flag)
    }

    /// How many entries the flags had, mnemonics or not.
    pub fn len(&self) -> usize {
        self.entries
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

impl<'de> Deserialize<'de> for VmFlags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = VmFlags;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of VmFlags mnemonics")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<VmFlags, A::Error> {
                let mut flags = VmFlags::default();
                // Each entry is decoded as a `String`, one at a time: the
                // decoder's memory budget charges it as a `Vec<String>`
                // entry, more than it takes here.
                while let Some(flag) = seq.next_element::<String>()? {
                    flags.push(&flag);
                }
                flags.text.shrink_to_fit();
                Ok(flags)
            }
        }
        d.deserialize_seq(V)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(v, &mut out).expect("encode");
        out
    }

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
