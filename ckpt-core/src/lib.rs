//! ckpt-core: the image format, the /proc parsers, the ptrace and
//! syscall-injection layer, x86_64 register state, and the dump and restore
//! engines.
//!
//! Trust: nothing read from an image is trusted before the image's signature
//! (or its absence) is established by [`image`]; nothing read from `/proc` or
//! from the target's memory is trusted to be well-formed either. Unsafe code
//! lives only in the modules that talk to the kernel (`sys`, `restore::stub`),
//! each block with a `// SAFETY:` comment.

pub mod arch;
pub mod dump;
pub mod filedigests;
pub mod host;
pub mod image;
pub mod inject;
pub mod limits;
pub mod model;
pub mod paths;
pub mod procfs;
pub mod progress;
pub mod ptrace;
pub mod restore;
pub mod sockdiag;
pub mod state;
pub mod sys;
