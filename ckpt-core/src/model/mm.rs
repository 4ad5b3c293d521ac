//! Memory: every mapping ([`Vma`], [`VmaKind`]) and the mm layout
//! (`PR_SET_MM_MAP`). Memory contents are not here: they are the image's
//! chunks, each naming the address it belongs at.
//!
//! Trusts nothing: plain data, checked by [`crate::image::validate`].

use serde::{Deserialize, Serialize};

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
    pub vm_flags: Vec<String>,
    /// For a `VmaKind::File` mapping of a file whose content is in the
    /// image (a memfd, an unlinked file): the image space of that content
    /// (then `file` is `None`). A shared mapping maps the restored file
    /// itself; a private one gets its private pages from the chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<u32>,
}
